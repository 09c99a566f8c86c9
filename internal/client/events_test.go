package client

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestReadSSE(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   []Event
	}{
		{
			name: "events and keep-alives",
			stream: ": keep-alive\n\n" +
				"id: 7\nevent: Microsoft.DigitalTwins.Twin.Update\ndata: {\"id\":\"e1\"}\n\n" +
				": keep-alive\n\n" +
				"id: 8\r\nevent: Microsoft.DigitalTwins.Twin.Create\r\ndata: {\"id\":\"e2\"}\r\n\r\n",
			want: []Event{
				{ID: "7", Type: "Microsoft.DigitalTwins.Twin.Update", Data: []byte(`{"id":"e1"}`)},
				{ID: "8", Type: "Microsoft.DigitalTwins.Twin.Create", Data: []byte(`{"id":"e2"}`)},
			},
		},
		{
			name:   "data over lines, no space after the colon, unknown fields",
			stream: "retry: 1000\nid:9\ndata:[1,\ndata: 2]\n\n",
			want:   []Event{{ID: "9", Data: []byte("[1,\n2]")}},
		},
		{name: "an unfinished message is not delivered", stream: "id: 1\ndata: {}\n"},
		{name: "nothing", stream: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []Event
			err := ReadSSE(strings.NewReader(tt.stream), func(e Event) error {
				got = append(got, e)
				return nil
			})
			if !errors.Is(err, io.EOF) {
				t.Errorf("error %v, want io.EOF at the end", err)
			}
			for i := range got {
				got[i].Data = append([]byte(nil), got[i].Data...)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("events %+v, want %+v", got, tt.want)
			}
		})
	}
	stop := errors.New("stop")
	n := 0
	err := ReadSSE(strings.NewReader("data: 1\n\ndata: 2\n\n"), func(Event) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("fn's error: %v after %d events", err, n)
	}
}
