package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
)

// Where a new consumer group starts.
const (
	// StartEarliest starts a group without committed offsets at the start of each
	// partition. The default.
	StartEarliest = "earliest"
	// StartLatest starts it with the records produced after it joined.
	StartLatest = "latest"
)

// The source's poll loop.
const (
	// pollWait bounds one poll, so the loop commits and rewinds while no record arrives.
	pollWait = 250 * time.Millisecond
	// maxPoll bounds the records handed over between two polls, while the group cannot
	// rebalance.
	maxPoll = 1000
	// commitInterval is how often the settled offsets are committed; a source that stops,
	// or loses partitions in a rebalance, commits at once.
	commitInterval = time.Second
	// commitTimeout bounds a commit.
	commitTimeout = 10 * time.Second
)

// SourceConfig is the settings of a Kafka source: a member of a consumer group reading
// topics. It works with Kafka, Redpanda and Event Hubs' Kafka endpoint (brokers
// "<namespace>.servicebus.windows.net:9093", TLS enabled, SASL PLAIN with user
// "$ConnectionString" and the connection string as password; the event hub is the topic).
type SourceConfig struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string `json:"brokers"`
	// Topics are read; each must exist.
	Topics []string `json:"topics"`
	// Group is the consumer group; empty means "twinflow-" and the source's name. Sources on
	// several twinflow nodes with one group share the partitions.
	Group string `json:"group,omitempty"`
	// Start is where a group without committed offsets starts: StartEarliest (default) or
	// StartLatest.
	Start string `json:"start,omitempty"`
	// SASL authenticates the connection, if Mechanism is set.
	SASL SASL `json:"sasl,omitzero"`
	// TLS encrypts the connection if Enabled or any file is set. Event Hubs needs it.
	TLS sink.TLS `json:"tls,omitzero"`
	// ClientID names the consumer to the brokers; empty means "twinflow".
	ClientID string `json:"clientId,omitempty"`

	// policy checks every connection (see WithPolicy); nil allows any.
	policy *netpolicy.Policy
}

// WithPolicy returns c with every connection to a broker checked against p on the address it
// dials, and the TLS files read only where p allows.
func (c SourceConfig) WithPolicy(p *netpolicy.Policy) SourceConfig {
	c.policy = p
	return c
}

// Reach returns the brokers c dials and the files it reads.
func (c SourceConfig) Reach() netpolicy.Reach { return c.connection().reach() }

// Validate reports every problem with c, each naming its field.
func (c SourceConfig) Validate() error {
	errs := c.connection().validate()
	if len(c.Topics) == 0 {
		errs = append(errs, errors.New("topics: at least one required"))
	}
	for i, t := range c.Topics {
		if !validTopic(t) {
			errs = append(errs, fmt.Errorf("topics[%d]: %q is not a valid Kafka topic name", i, t))
		}
	}
	if len(c.Group) > 255 {
		errs = append(errs, errors.New("group: longer than 255 characters"))
	}
	switch c.Start {
	case "", StartEarliest, StartLatest:
	default:
		errs = append(errs, fmt.Errorf("start: %q is not one of %s, %s", c.Start, StartEarliest, StartLatest))
	}
	return errors.Join(errs...)
}

func (c SourceConfig) connection() connection {
	return connection{Brokers: c.Brokers, SASL: c.SASL, TLS: c.TLS, ClientID: c.ClientID, policy: c.policy}
}

// Redacted returns c with the SASL password blanked.
func (c SourceConfig) Redacted() SourceConfig {
	if c.SASL.Password != "" {
		c.SASL.Password = redact.Mask
	}
	return c
}

// GroupName returns the consumer group of the twinflow source called name.
func GroupName(name string) string { return "twinflow-" + name }

// Source reads topics as a member of a consumer group. It implements ingress.Lagger.
//
// A record's Message has the ID "<topic>/<partition>/<offset>", the record's key, headers
// and timestamp, and the Order "<topic>/<partition>". Per partition, the source commits the
// offset after the longest run of records, from the last commit on, whose Settle was called
// with nil: a record settled later than those after it holds their commit back, and a crash
// or a rebalance delivers them all again (to be recognised by their IDs). A record settled
// with an error holds its partition's commit back, and after ingress.RedeliveryDelay the
// partition is read again from its first unsettled record: the records after it, handed over
// meanwhile, come again too. When partitions move to another
// member, and when the source stops, it commits what is settled first.
//
// The client reconnects on its own, reporting Reconnecting while it cannot join the group
// and Running once partitions are assigned. A refused login, a topic that does not exist,
// or refused authorization fail the source.
type Source struct {
	cfg    SourceConfig
	group  string
	opts   []kgo.Opt
	logger *slog.Logger

	mu sync.Mutex
	t  *tracker // of the running session, nil between sessions
}

var _ ingress.Lagger = (*Source)(nil)

// NewSource validates cfg and returns the source of the twinflow source called name. It does
// not connect: Run does.
func NewSource(cfg SourceConfig, name string, logger *slog.Logger) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka source: %w", err)
	}
	group := cfg.Group
	if group == "" {
		group = GroupName(name)
	}
	logger = logger.With("source", name, "group", group)
	opts, err := cfg.connection().options(logger, "kafka source")
	if err != nil {
		return nil, fmt.Errorf("kafka source: %w", err)
	}
	reset := kgo.NewOffset().AtStart()
	if cfg.Start == StartLatest {
		reset = kgo.NewOffset().AtEnd()
	}
	opts = append(opts,
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(cfg.Topics...),
		kgo.ConsumeResetOffset(reset),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
	)
	return &Source{cfg: cfg, group: group, opts: opts, logger: logger}, nil
}

// Lag implements ingress.Lagger: the group lag of the partitions the source holds, from
// each one's high watermark in the last fetch to its first unsettled record.
func (s *Source) Lag() (int64, bool) {
	s.mu.Lock()
	t := s.t
	s.mu.Unlock()
	if t == nil {
		return 0, false
	}
	return t.lag()
}

// Run implements ingress.Source.
func (s *Source) Run(ctx context.Context, h ingress.Handler) error {
	st := &ingress.StateReporter{Handler: h}
	st.Set(ingress.Starting, nil)
	var backoff ingress.Backoff
	for {
		err := s.session(ctx, h, st, &backoff)
		if ctx.Err() != nil {
			st.Set(ingress.Stopped, nil)
			return nil
		}
		if permanent(err) {
			err = fmt.Errorf("kafka source: %w", answer(err))
			st.Set(ingress.Failed, err)
			return err
		}
		s.logger.Warn("kafka source: consuming again after a failure", "err", err)
		st.Set(ingress.Reconnecting, answer(err))
		if !backoff.Wait(ctx) {
			st.Set(ingress.Stopped, nil)
			return nil
		}
	}
}

// session checks the topics, joins the group and hands over records until ctx ends (then it
// returns nil) or consuming fails.
func (s *Source) session(ctx context.Context, h ingress.Handler, st *ingress.StateReporter, backoff *ingress.Backoff) error {
	t := newTracker(s.logger)
	var joined atomic.Bool // set when partitions are assigned; the backoff starts again
	opts := append(s.opts[:len(s.opts):len(s.opts)],
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			st.Set(ingress.Running, nil)
			joined.Store(true)
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
			t.commit(ctx, cl, t.remove(revoked))
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
			t.remove(lost)
		}),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return permanentError{redact.Shown(err)}
	}
	defer cl.Close()
	if err := s.checkTopics(ctx, cl); err != nil {
		return err
	}
	s.mu.Lock()
	s.t = t
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.t = nil
		s.mu.Unlock()
	}()

	lastCommit := time.Now()
	for {
		pctx, cancel := context.WithTimeout(ctx, pollWait)
		fetches := cl.PollRecords(pctx, maxPoll)
		cancel()
		retry, err := s.pollError(fetches)
		if retry != nil {
			s.logger.Warn("kafka source cannot join its group; retrying", "err", retry)
			st.Set(ingress.Reconnecting, answer(retry))
		}
		if joined.Swap(false) {
			backoff.Reset()
		}
		if err == nil {
			err = s.handOver(ctx, h, t, fetches)
		}
		if ctx.Err() != nil || err != nil {
			// Commit what is settled, while the partitions are still ours.
			cctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
			t.commit(cctx, cl, t.close())
			cancel()
			cl.AllowRebalance()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if rewind := t.rewinds(time.Now()); len(rewind) > 0 {
			cl.SetOffsets(rewind)
		}
		if time.Since(lastCommit) >= commitInterval {
			cctx, cancel := context.WithTimeout(ctx, commitTimeout)
			t.commit(cctx, cl, t.dirty())
			cancel()
			lastCommit = time.Now()
		}
		cl.AllowRebalance()
	}
}

// pollError returns the errors of fetches: retry, a failure to join the group, which the
// client retries on its own; failure, one that ends the session. The poll's own timeout and
// ctx's end are neither.
func (s *Source) pollError(fetches kgo.Fetches) (retry, failure error) {
	fetches.EachError(func(topic string, partition int32, err error) {
		_, isGroup := errors.AsType[*kgo.ErrGroupSession](err)
		switch {
		case failure != nil:
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		case isGroup && !permanent(err):
			retry = err
		case topic == "":
			failure = err
		default:
			failure = fmt.Errorf("consume %s/%d: %w", topic, partition, err)
		}
	})
	return retry, failure
}

// handOver hands the records of fetches to h, in order, and returns ctx's error if Handle
// returns it.
func (s *Source) handOver(ctx context.Context, h ingress.Handler, t *tracker, fetches kgo.Fetches) error {
	var err error
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if err != nil {
			return
		}
		tp := topicPartition{fp.Topic, fp.Partition}
		p, gen, ok := t.add(tp, fp)
		if !ok {
			return
		}
		for _, r := range fp.Records {
			if err = h.Handle(ctx, message(p.order, r), t.settler(tp, p, gen, r.Offset)); err != nil {
				return
			}
		}
	})
	return err
}

// message returns the Message of r, of the partition whose Order is order.
func message(order string, r *kgo.Record) ingress.Message {
	var headers map[string]string
	if len(r.Headers) > 0 {
		headers = make(map[string]string, len(r.Headers))
		for _, h := range r.Headers {
			headers[h.Key] = string(h.Value)
		}
	}
	// One string holds the ID and then the key.
	var buf [128]byte
	b := strconv.AppendInt(append(append(buf[:0], order...), '/'), r.Offset, 10)
	n := len(b)
	idKey := string(append(b, r.Key...))
	return ingress.Message{
		ID:      idKey[:n],
		Topic:   r.Topic,
		Key:     idKey[n:],
		Headers: headers,
		Body:    r.Value,
		Time:    r.Timestamp,
		Order:   order,
	}
}

// checkTopics asks the brokers for the topics' metadata: it fails permanently if one does not
// exist, or the login or the topic's access is refused.
func (s *Source) checkTopics(ctx context.Context, cl *kgo.Client) error {
	req := kmsg.NewPtrMetadataRequest()
	for _, name := range s.cfg.Topics {
		t := kmsg.NewMetadataRequestTopic()
		t.Topic = kmsg.StringPtr(name)
		req.Topics = append(req.Topics, t)
	}
	ctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("read the metadata of %v: %w", s.cfg.Topics, err)
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			name := ""
			if t.Topic != nil {
				name = *t.Topic
			}
			if errors.Is(err, kerr.UnknownTopicOrPartition) {
				return permanentError{redact.Shown(fmt.Errorf("topic %q does not exist", name))}
			}
			return fmt.Errorf("read the metadata of topic %q: %w", name, err)
		}
	}
	return nil
}

// permanentError marks a failure that consuming again cannot fix.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// permanent reports whether consuming again cannot fix err: a refused login, refused
// authorization, a topic that does not exist, options the client refuses.
func permanent(err error) bool {
	if err == nil {
		return false
	}
	if _, ok := errors.AsType[permanentError](err); ok {
		return true
	}
	for _, p := range []error{
		kerr.SaslAuthenticationFailed, kerr.TopicAuthorizationFailed, kerr.GroupAuthorizationFailed,
		kerr.ClusterAuthorizationFailed, kerr.UnknownTopicOrPartition, kerr.InvalidTopicException,
		kerr.UnsupportedSaslMechanism, kerr.InvalidGroupID,
	} {
		if errors.Is(err, p) {
			return true
		}
	}
	return false
}

// tracker keeps, per partition of a session, the records handed over and not yet committed,
// and which of them are settled. Settles come from any goroutine; the rest from the poll loop
// and the group's callbacks, which never run at the same time (BlockRebalanceOnPoll).
type tracker struct {
	logger *slog.Logger

	mu     sync.Mutex
	parts  map[topicPartition]*partition
	closed bool
}

type topicPartition struct {
	topic     string
	partition int32
}

// partition is the state of one partition the session holds.
type partition struct {
	order string // "<topic>/<partition>"
	// gen changes when the partition is rewound or given up: Settles of the records handed
	// over before do nothing then.
	gen uint64
	// handed are the records handed over after the settled prefix, in offset order.
	handed []handed
	// next is the offset to commit: every record before it handed over is settled. Valid
	// once a record is settled.
	next      kgo.EpochOffset
	hasNext   bool
	committed int64 // the offset last committed, -1 for none
	// rewindAt, when not zero, is when the partition is read again from its first unsettled
	// record, because one was settled with an error.
	rewindAt time.Time
	// hwm is the high watermark of the last fetch.
	hwm int64
}

type handed struct {
	offset  int64
	epoch   int32
	settled bool
}

func newTracker(logger *slog.Logger) *tracker {
	return &tracker{logger: logger, parts: map[topicPartition]*partition{}}
}

// add registers the records of fp, about to be handed over in order, and records its high
// watermark. It returns their partition and its generation, and false once the tracker is
// closed. A record registered and never handed over (Handle returned an error) holds the
// partition's commit back: it comes again.
func (t *tracker) add(tp topicPartition, fp kgo.FetchTopicPartition) (p *partition, gen uint64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, 0, false
	}
	p = t.parts[tp]
	if p == nil {
		p = &partition{order: tp.topic + "/" + strconv.Itoa(int(tp.partition)), committed: -1}
		t.parts[tp] = p
	}
	p.hwm = fp.HighWatermark
	for _, r := range fp.Records {
		p.handed = append(p.handed, handed{offset: r.Offset, epoch: r.LeaderEpoch})
	}
	return p, p.gen, true
}

// settler returns the Settle of the record at offset of partition p, registered in
// generation gen.
func (t *tracker) settler(tp topicPartition, p *partition, gen uint64, offset int64) ingress.Settle {
	return func(err error) { t.settle(tp, p, gen, offset, err) }
}

func (t *tracker) settle(tp topicPartition, p *partition, gen uint64, offset int64, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.parts[tp] != p || p.gen != gen {
		return
	}
	i := 0 // records are mostly settled in order
	if len(p.handed) == 0 || p.handed[0].offset != offset {
		i = sort.Search(len(p.handed), func(i int) bool { return p.handed[i].offset >= offset })
	}
	if i == len(p.handed) || p.handed[i].offset != offset || p.handed[i].settled {
		return
	}
	if err != nil {
		if p.rewindAt.IsZero() {
			p.rewindAt = time.Now().Add(ingress.RedeliveryDelay)
		}
		return
	}
	p.handed[i].settled = true
	n := 0
	for n < len(p.handed) && p.handed[n].settled {
		n++
	}
	if n > 0 {
		last := p.handed[n-1]
		p.next, p.hasNext = kgo.EpochOffset{Epoch: last.epoch, Offset: last.offset + 1}, true
		p.handed = p.handed[n:]
	}
}

// rewinds returns the partitions whose rewind is due, each at its first unsettled record,
// and forgets their records handed over.
func (t *tracker) rewinds(now time.Time) map[string]map[int32]kgo.EpochOffset {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out map[string]map[int32]kgo.EpochOffset
	for tp, p := range t.parts {
		if p.rewindAt.IsZero() || now.Before(p.rewindAt) {
			continue
		}
		if out == nil {
			out = map[string]map[int32]kgo.EpochOffset{}
		}
		if out[tp.topic] == nil {
			out[tp.topic] = map[int32]kgo.EpochOffset{}
		}
		at := p.next.Offset
		if len(p.handed) > 0 {
			at = p.handed[0].offset
		}
		// Epoch -1: no data loss detection, which a rewind would trip.
		out[tp.topic][tp.partition] = kgo.EpochOffset{Epoch: -1, Offset: at}
		p.gen++
		p.handed = nil
		p.rewindAt = time.Time{}
	}
	return out
}

// dirty returns the offsets to commit: those of the partitions whose settled prefix moved
// past their last commit.
func (t *tracker) dirty() map[string]map[int32]kgo.EpochOffset {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.offsets(func(topicPartition) bool { return true })
}

// offsets returns the offsets to commit of the partitions keep selects. t.mu is held.
func (t *tracker) offsets(keep func(topicPartition) bool) map[string]map[int32]kgo.EpochOffset {
	var out map[string]map[int32]kgo.EpochOffset
	for tp, p := range t.parts {
		if !keep(tp) || !p.hasNext || p.next.Offset <= p.committed {
			continue
		}
		if out == nil {
			out = map[string]map[int32]kgo.EpochOffset{}
		}
		if out[tp.topic] == nil {
			out[tp.topic] = map[int32]kgo.EpochOffset{}
		}
		out[tp.topic][tp.partition] = p.next
	}
	return out
}

// remove forgets the partitions the session no longer holds and returns their offsets to
// commit; Settles of their records do nothing from now on.
func (t *tracker) remove(parts map[string][]int32) map[string]map[int32]kgo.EpochOffset {
	t.mu.Lock()
	defer t.mu.Unlock()
	gone := map[topicPartition]bool{}
	for topic, ps := range parts {
		for _, p := range ps {
			gone[topicPartition{topic, p}] = true
		}
	}
	out := t.offsets(func(tp topicPartition) bool { return gone[tp] })
	for tp := range gone {
		delete(t.parts, tp)
	}
	return out
}

// close returns the offsets to commit when the session ends; Settles do nothing from now on.
func (t *tracker) close() map[string]map[int32]kgo.EpochOffset {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	return t.offsets(func(topicPartition) bool { return true })
}

// commit commits offsets and records them as committed; a failure is logged, and the
// offsets are committed with the next ones.
func (t *tracker) commit(ctx context.Context, cl *kgo.Client, offsets map[string]map[int32]kgo.EpochOffset) {
	if len(offsets) == 0 {
		return
	}
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			t.logger.Warn("kafka source: commit failed", "err", err)
			return
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		for _, topic := range resp.Topics {
			for _, part := range topic.Partitions {
				if err := kerr.ErrorForCode(part.ErrorCode); err != nil {
					t.logger.Warn("kafka source: commit failed", "topic", topic.Topic, "partition", part.Partition, "err", err)
					continue
				}
				if p := t.parts[topicPartition{topic.Topic, part.Partition}]; p != nil {
					p.committed = max(p.committed, offsets[topic.Topic][part.Partition].Offset)
				}
			}
		}
	})
}

// lag returns the records between each partition's first unsettled one and its high
// watermark, summed, and false before a fetch told a high watermark.
func (t *tracker) lag() (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var sum int64
	known := false
	for _, p := range t.parts {
		var pos int64
		switch {
		case len(p.handed) > 0:
			pos = p.handed[0].offset
		case p.hasNext:
			pos = p.next.Offset
		default:
			continue
		}
		known = true
		sum += max(0, p.hwm-pos)
	}
	return sum, known
}
