package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsStream is a JetStream stream of a run's own on a NATS server, with a subscriber of its
// subjects.
type natsStream struct {
	// subject is the prefix of the stream's subjects (subject.>); name is the stream's name.
	subject, name string
	nc            *natsgo.Conn
	js            jetstream.JetStream
	sub           *natsgo.Subscription
}

// openNATSStream connects to the NATS server at url under the client name client, creates a
// stream for the subjects prefix<now>.> and subscribes handle to them. The subscription has
// no pending limits: messages pile up in it while handle runs, and the default limits would
// drop them at a fraction of the rates the benchmarks measure. close undoes it all.
func openNATSStream(ctx context.Context, url, client, prefix string, handle natsgo.MsgHandler) (s *natsStream, err error) {
	nc, err := natsgo.Connect(url, natsgo.Name(client))
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", url, err)
	}
	defer func() {
		if err != nil {
			nc.Close()
		}
	}()
	s = &natsStream{nc: nc, subject: fmt.Sprintf("%s%d", prefix, time.Now().UnixNano())}
	s.name = strings.ToUpper(s.subject)
	if s.js, err = jetstream.New(nc); err != nil {
		return nil, fmt.Errorf("nats %s: %w", url, err)
	}
	if _, err := s.js.CreateStream(ctx, jetstream.StreamConfig{Name: s.name, Subjects: []string{s.subject + ".>"}}); err != nil {
		return nil, fmt.Errorf("create stream %s: %w", s.name, err)
	}
	if s.sub, err = nc.Subscribe(s.subject+".>", handle); err == nil {
		err = s.sub.SetPendingLimits(-1, -1)
	}
	if err != nil {
		err = fmt.Errorf("subscribe to %s.>: %w", s.subject, err)
		if delErr := s.js.DeleteStream(context.WithoutCancel(ctx), s.name); delErr != nil {
			err = errors.Join(err, fmt.Errorf("delete stream %s: %w", s.name, delErr))
		}
		return nil, err
	}
	return s, nil
}

// close unsubscribes, deletes the stream and disconnects.
func (s *natsStream) close(ctx context.Context) error {
	_ = s.sub.Unsubscribe() // the connection closes next in any case
	err := s.js.DeleteStream(context.WithoutCancel(ctx), s.name)
	s.nc.Close()
	if err != nil {
		return fmt.Errorf("delete stream %s: %w", s.name, err)
	}
	return nil
}
