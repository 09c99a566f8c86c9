package anomaly

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// stateMagic and stateVersion head a marshalled detector; a later version that changes the state
// gets a new version number and keeps reading the older ones.
const (
	stateMagic   = "TFAD"
	stateVersion = 1
)

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
	if v := data[len(stateMagic)]; v != stateVersion {
		return fmt.Errorf("unmarshal anomaly detector: state version %d, want %d", v, stateVersion)
	}
	if m := data[len(stateMagic)+1]; m != methodCode(d.cfg.Method) {
		return fmt.Errorf("unmarshal anomaly detector: state of method code %d, detector of method %q", m, d.cfg.Method)
	}
	var st state
	if want := binary.Size(&st); len(data)-h != want {
		return fmt.Errorf("unmarshal anomaly detector: state of %d bytes, want %d", len(data)-h, want)
	}
	if err := binary.Read(bytes.NewReader(data[h:]), binary.LittleEndian, &st); err != nil {
		return fmt.Errorf("unmarshal anomaly detector: %w", err)
	}
	d.st = st
	return nil
}
