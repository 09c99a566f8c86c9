package anomaly

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// stateMagic and stateVersion head a marshalled detector; a later version that changes the state
// gets a new version number and keeps reading the older ones. Version 2 added the peer fields at
// the end: a version 1 state reads as one with them 0.
const (
	stateMagic   = "TFAD"
	stateVersion = 2
)

// stateV1Size is the size of a version 1 state: without PeerVar and PeerN.
var stateV1Size = binary.Size(state{}) - 16

// MarshalBinary encodes the detector's learned state: a header (magic, version, method) and the
// state's fields in little-endian order. Scoring on after UnmarshalBinary gives the same results,
// bit for bit, as scoring on with this detector.
func (d *Detector) MarshalBinary() ([]byte, error) {
	var b bytes.Buffer
	b.Grow(len(stateMagic) + 2 + binary.Size(&d.st))
	b.WriteString(stateMagic)
	b.WriteByte(stateVersion)
	b.WriteByte(methodCode(d.cfg.Method))
	if err := binary.Write(&b, binary.LittleEndian, &d.st); err != nil {
		return nil, fmt.Errorf("marshal anomaly detector: %w", err)
	}
	return b.Bytes(), nil
}

// UnmarshalBinary replaces the detector's learned state with one from MarshalBinary. The state
// must come from a detector of the same method; the sensitivity and warm-up stay this detector's.
// On error the detector is unchanged.
func (d *Detector) UnmarshalBinary(data []byte) error {
	h := len(stateMagic) + 2
	if len(data) < h || string(data[:len(stateMagic)]) != stateMagic {
		return errors.New("unmarshal anomaly detector: not a detector state")
	}
	var st state
	want := binary.Size(&st)
	switch v := data[len(stateMagic)]; v {
	case stateVersion:
	case 1:
		want = stateV1Size
	default:
		return fmt.Errorf("unmarshal anomaly detector: state version %d, want at most %d", v, stateVersion)
	}
	if m := data[len(stateMagic)+1]; m != methodCode(d.cfg.Method) {
		return fmt.Errorf("unmarshal anomaly detector: state of method code %d, detector of method %q", m, d.cfg.Method)
	}
	if len(data)-h != want {
		return fmt.Errorf("unmarshal anomaly detector: state of %d bytes, want %d", len(data)-h, want)
	}
	// An older state is a prefix of the current one; the fields it lacks stay 0.
	body := make([]byte, binary.Size(&st))
	copy(body, data[h:])
	if err := binary.Read(bytes.NewReader(body), binary.LittleEndian, &st); err != nil {
		return fmt.Errorf("unmarshal anomaly detector: %w", err)
	}
	d.st = st
	return nil
}

// LatestValue returns the value of the latest point of the series whose state data holds (a
// MarshalBinary encoding of any version), without decoding the rest; false when the series
// has had no point or data is not a detector state.
func LatestValue(data []byte) (float64, bool) {
	h := len(stateMagic) + 2
	// N, FirstT and LastT come first, then LastV, in every version.
	if len(data) < h+32 || string(data[:len(stateMagic)]) != stateMagic || data[len(stateMagic)] > stateVersion {
		return 0, false
	}
	if n := int64(binary.LittleEndian.Uint64(data[h:])); n == 0 {
		return 0, false
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(data[h+24:])), true
}
