package job

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// readAll reads every line of src from position at and describes each as
// "section:line:offset:data", ending with the error that stopped the reading ("EOF" or the
// syntax error's text).
func readAll(src string, at Position) []string {
	r := NewReader(strings.NewReader(src), at)
	var out []string
	for {
		l, err := r.Next()
		if errors.Is(err, io.EOF) {
			return append(out, "EOF")
		}
		if err != nil {
			return append(out, "error: "+err.Error())
		}
		data := string(l.Data)
		if l.TooLong {
			data = "(too long)"
		}
		out = append(out, fmt.Sprintf("%s:%d:%d:%s", l.At.Section, l.At.Line, l.At.Offset, data))
	}
}

func TestReader(t *testing.T) {
	const header = `{"Section": "Header"}` + "\n" + `{"fileVersion": "1.0.0"}` + "\n"
	long := strings.Repeat("x", MaxLineBytes+1)
	for _, tc := range []struct {
		name string
		src  string
		at   Position
		want []string
	}{
		{
			name: "every section",
			src: header + `{"Section": "Models"}` + "\n" + `{"@id":"m"}` + "\n" +
				`{"Section":"Twins"}` + "\n" + `{"$dtId":"t"}` + "\n" +
				`{"Section": "Relationships"}` + "\n" + `{"$dtId":"t","$relationshipId":"r"}` + "\n",
			want: []string{`Header:2:47:{"fileVersion": "1.0.0"}`, `Models:4:81:{"@id":"m"}`, `Twins:6:115:{"$dtId":"t"}`,
				`Relationships:8:180:{"$dtId":"t","$relationshipId":"r"}`, "EOF"},
		},
		{
			name: "sections may be left out",
			src:  header + `{"Section": "Relationships"}` + "\n" + `{}`,
			want: []string{`Header:2:47:{"fileVersion": "1.0.0"}`, "Relationships:4:78:{}", "EOF"},
		},
		{
			name: "blank lines, CRLF and a last line without a line break",
			src:  "\n" + `{"Section": "Header"}` + "\r\n   \r\n" + `{"fileVersion": "1.0.0"}` + "\r\n" + `{"a":1}`,
			want: []string{`Header:4:55:{"fileVersion": "1.0.0"}`, `Header:5:62:{"a":1}`, "EOF"},
		},
		{
			name: "a property named Section is data",
			src:  header + `{"Section": "Twins"}` + "\n" + `{"$dtId":"t","Section":"x"}` + "\n" + `{"Section": 5}`,
			want: []string{`Header:2:47:{"fileVersion": "1.0.0"}`, `Twins:4:96:{"$dtId":"t","Section":"x"}`, `Twins:5:110:{"Section": 5}`, "EOF"},
		},
		{
			name: "malformed lines are data for the importer to refuse",
			src:  header + `{"Section": "Twins"}` + "\n" + `{"$dtId":` + "\n" + `not json`,
			want: []string{`Header:2:47:{"fileVersion": "1.0.0"}`, `Twins:4:78:{"$dtId":`, "Twins:5:86:not json", "EOF"},
		},
		{
			name: "a line over the limit",
			src:  header + `{"Section": "Twins"}` + "\n" + long + "\n" + `{"$dtId":"t"}`,
			want: []string{`Header:2:47:{"fileVersion": "1.0.0"}`, fmt.Sprintf("Twins:4:%d:(too long)", 68+len(long)+1),
				fmt.Sprintf(`Twins:5:%d:{"$dtId":"t"}`, 68+len(long)+1+13), "EOF"},
		},
		{
			name: "resume inside a section",
			src:  `{"$dtId":"b"}` + "\n" + `{"Section": "Relationships"}` + "\n" + `{}` + "\n",
			at:   Position{Section: SectionTwins, Line: 10, Offset: 500},
			want: []string{`Twins:11:514:{"$dtId":"b"}`, "Relationships:13:546:{}", "EOF"},
		},
		{
			name: "empty file",
			src:  "",
			want: []string{`error: line 0: the file does not start with the {"Section": "Header"} line`},
		},
		{
			name: "data before the header",
			src:  `{"fileVersion": "1.0.0"}` + "\n" + header,
			want: []string{`error: line 1: data comes before the {"Section": "Header"} line`},
		},
		{
			name: "another section first",
			src:  `{"Section": "Twins"}`,
			want: []string{`error: line 1: the file must start with the {"Section": "Header"} line, not the Twins section`},
		},
		{
			name: "sections out of order",
			src:  header + `{"Section": "Twins"}` + "\n" + `{"Section": "Models"}`,
			want: []string{`Header:2:47:{"fileVersion": "1.0.0"}`,
				"error: line 4: the Models section comes after the Twins section; the sections must come in the order Header, Models, Twins, Relationships, each at most once"},
		},
		{
			name: "a section twice",
			src:  header + `{"Section": "Twins"}` + "\n" + `{"Section": "Twins"}`,
			want: []string{`Header:2:47:{"fileVersion": "1.0.0"}`,
				"error: line 4: the Twins section comes after the Twins section; the sections must come in the order Header, Models, Twins, Relationships, each at most once"},
		},
		{
			name: "an unknown section",
			src:  header + `{"Section": "Routes"}`,
			want: []string{`Header:2:47:{"fileVersion": "1.0.0"}`,
				`error: line 3: "Routes" is not a section; the sections are Header, Models, Twins and Relationships`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := readAll(tc.src, tc.at)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

// TestReaderResumes reads a file once, then again from every line's position, and checks
// that each resumed read returns what the first one returned after that line.
func TestReaderResumes(t *testing.T) {
	src := `{"Section": "Header"}` + "\n" + `{"fileVersion": "1.0.0"}` + "\n\n" +
		`{"Section": "Twins"}` + "\r\n" + `{"$dtId":"a"}` + "\n" + `{"$dtId":"b"}` + "\n" +
		`{"Section": "Relationships"}` + "\n" + `{"$dtId":"a"}`
	var lines []Line
	r := NewReader(strings.NewReader(src), Position{})
	for {
		l, err := r.Next()
		if err != nil {
			break
		}
		l.Data = append([]byte(nil), l.Data...)
		lines = append(lines, l)
	}
	if len(lines) != 4 {
		t.Fatalf("read %d lines", len(lines))
	}
	for i, l := range lines {
		rest := readAll(src[l.At.Offset:], l.At)
		var want []string
		for _, w := range lines[i+1:] {
			want = append(want, fmt.Sprintf("%s:%d:%d:%s", w.At.Section, w.At.Line, w.At.Offset, w.Data))
		}
		want = append(want, "EOF")
		if strings.Join(rest, "\n") != strings.Join(want, "\n") {
			t.Errorf("resumed after line %d:\n  %s\nwant\n  %s", l.At.Line, strings.Join(rest, "\n  "), strings.Join(want, "\n  "))
		}
	}
}
