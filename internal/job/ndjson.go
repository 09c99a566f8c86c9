package job

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The sections of an import file, in the order they must come. Only Header is required.
const (
	SectionHeader        = "Header"
	SectionModels        = "Models"
	SectionTwins         = "Twins"
	SectionRelationships = "Relationships"
)

// sectionOrder gives each section's rank: a section may only follow one of lower rank.
var sectionOrder = map[string]int{SectionHeader: 1, SectionModels: 2, SectionTwins: 3, SectionRelationships: 4}

// MaxLineBytes is the longest line an import file may hold: a model of ADT's largest size
// (1 MB) with room to spare. A longer line is reported as too long and skipped.
const MaxLineBytes = 4 << 20

// Position is a place in an import file: just after line Line (1-based; 0 is the start),
// which ends Offset bytes into the file (counted in the decompressed stream), in section
// Section ("" before the first section line).
type Position struct {
	Section string `json:"section,omitempty"`
	Line    int    `json:"line,omitempty"`
	Offset  int64  `json:"offset,omitempty"`
}

// Line is one line of an import file that is not a section line.
type Line struct {
	// At is the position just after the line: its section, number and end.
	At Position
	// Data is the line without its line break, valid until the next call to Next.
	Data []byte
	// TooLong reports a line longer than MaxLineBytes; Data is then empty.
	TooLong bool
}

// SyntaxError is an error in the structure of an import file: a section line that names no
// section, comes out of order, or data before the first section. The file cannot be read
// past it.
type SyntaxError struct {
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// Reader reads an import file in ADT's NDJSON format: {"Section": "Header"} and the header
// object, then optionally {"Section": "Models"} with one DTDL interface per line,
// {"Section": "Twins"} with one twin per line and {"Section": "Relationships"} with one
// relationship per line, in that order. It returns the lines of data with the section each
// belongs to, and checks the section lines itself; blank lines are skipped. Lines end with
// "\n" or "\r\n"; the last one need not.
type Reader struct {
	rd *bufio.Reader
	at Position
	// buf holds a line that did not fit the bufio.Reader's buffer.
	buf []byte
}

// NewReader returns a Reader of r, which is at position at of the file: at its start for
// the zero Position, or just after a line a previous Reader returned, so that a job can go
// on where it stopped.
func NewReader(r io.Reader, at Position) *Reader {
	return &Reader{rd: bufio.NewReaderSize(r, 64<<10), at: at}
}

// Next returns the next line of data. At the end of the file it returns io.EOF; a file
// without the Header section, or that ends in it, is a *SyntaxError then. Structure errors
// are *SyntaxError values, after which the Reader must not be used; other errors come from
// the underlying reader.
func (r *Reader) Next() (Line, error) {
	for {
		data, n, tooLong, err := r.readLine()
		if err == io.EOF && n == 0 {
			if r.at.Section == "" {
				return Line{}, &SyntaxError{Line: r.at.Line, Msg: `the file does not start with the {"Section": "Header"} line`}
			}
			return Line{}, io.EOF
		}
		if err != nil && err != io.EOF {
			return Line{}, fmt.Errorf("read line %d: %w", r.at.Line+1, err)
		}
		r.at.Line++
		r.at.Offset += int64(n)
		if !tooLong && len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		if !tooLong {
			if name, ok := sectionLine(data); ok {
				if err := r.enter(name); err != nil {
					return Line{}, err
				}
				continue
			}
		}
		if r.at.Section == "" {
			return Line{}, &SyntaxError{Line: r.at.Line, Msg: `data comes before the {"Section": "Header"} line`}
		}
		if tooLong {
			data = nil
		}
		return Line{At: r.at, Data: data, TooLong: tooLong}, nil
	}
}

// enter moves to section name, checking that it may follow the current one.
func (r *Reader) enter(name string) error {
	rank, known := sectionOrder[name]
	switch {
	case !known:
		return &SyntaxError{Line: r.at.Line, Msg: fmt.Sprintf("%q is not a section; the sections are Header, Models, Twins and Relationships", name)}
	case r.at.Section == "" && name != SectionHeader:
		return &SyntaxError{Line: r.at.Line, Msg: fmt.Sprintf(`the file must start with the {"Section": "Header"} line, not the %s section`, name)}
	case rank <= sectionOrder[r.at.Section]:
		return &SyntaxError{Line: r.at.Line, Msg: fmt.Sprintf("the %s section comes after the %s section; the sections must come in the order Header, Models, Twins, Relationships, each at most once", name, r.at.Section)}
	}
	r.at.Section = name
	return nil
}

// readLine reads the next line and returns it without its line break, the bytes it took
// with the line break, and whether it was longer than MaxLineBytes (then its data is
// dropped).
func (r *Reader) readLine() (data []byte, n int, tooLong bool, err error) {
	line, err := r.rd.ReadSlice('\n')
	n = len(line)
	if errors.Is(err, bufio.ErrBufferFull) {
		r.buf = append(r.buf[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = r.rd.ReadSlice('\n')
			n += len(line)
			if !tooLong {
				r.buf = append(r.buf, line...)
				if len(r.buf) > MaxLineBytes+2 {
					tooLong, r.buf = true, r.buf[:0]
				}
			}
		}
		line = r.buf
	}
	if err != nil && err != io.EOF {
		return nil, n, false, err
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) > MaxLineBytes {
		tooLong = true
	}
	return line, n, tooLong, err
}

// sectionLine reports whether data is a section line, an object whose only member is
// "Section", and the section it names.
func sectionLine(data []byte) (string, bool) {
	if !bytes.Contains(data, []byte(`"Section"`)) {
		return "", false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil || len(m) != 1 {
		return "", false
	}
	raw, ok := m["Section"]
	if !ok {
		return "", false
	}
	var name string
	if json.Unmarshal(raw, &name) != nil {
		return "", false
	}
	return name, true
}
