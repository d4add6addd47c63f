package scaleout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/demandpipe/demandpipe/internal/keyshared"
)

// Members: the aggregate processes of a deployment check that their ranges
// cover every slot once. Key_Shared with sticky ranges delivers a slot
// whose key no consumer's range holds to nobody (the broker keeps it in
// the backlog), so a gap in the ranges loses the rows of its regions while
// every process runs and ends as if all were well: 78,493 of 310,965 rows
// of a replay went missing with 0-30000 and 40000-65535, and each process
// exited 0 (issue 22). So each process announces its ranges on the members
// topic (the internal topic's name with "-members") every announceEvery,
// and reads every process's announcements: a slot no live process holds is
// a gap, a slot two hold an overlap. Both are reported as metrics (the
// uncovered_slots and overlapping_slots gauges; DemandpipeScaleoutRangeGap
// alerts) and logged once per change within reportAfter of the start; and
// a process whose input ended (end of stream) while slots were uncovered
// exits with an error naming them, instead of 0 with rows missing.

// announceEvery and liveFor: a process is live while its last announcement
// is at most liveFor old, so a process that died stops counting after
// liveFor (a takeover's overlap with the dead process is then over too).
// reportAfter gives the other processes time to announce before a gap is
// reported (they start within seconds of each other).
const (
	announceEvery = 10 * time.Second
	liveFor       = 35 * time.Second
	reportAfter   = 20 * time.Second
)

// MembersTopic is where a deployment's aggregate processes announce their
// ranges. It needs no durable subscription: each process reads it with a
// non-durable one, so once no aggregate process runs the topic has no
// client and no subscription, and a broker deletes it with its messages
// within a minute or two (brokerDeleteInactiveTopicsEnabled, as for the
// state topic in state.go). That loses nothing: an announcement only
// counts for liveFor, a process that starts announces itself at once, and
// a topic deleted is created again on its first use.
func (c Config) MembersTopic() string { return c.Topic + "-members" }

// announcement is one process's message on the members topic (JSON: any
// client can read the topic to see a deployment's ranges).
type announcement struct {
	ID     string `json:"id"`     // random per process
	Sub    string `json:"sub"`    // the subscription: the deployment
	Ranges string `json:"ranges"` // as -scaleout.ranges
	Slots  int    `json:"slots"`
	At     int64  `json:"at"`    // unix ms
	Ended  bool   `json:"ended"` // the process's input ended: its slots are done
}

// members is one process's view of its deployment's processes.
type members struct {
	cfg  Config
	self announcement
	prod pulsar.Producer
	// cons reads every process's announcements: a non-durable exclusive
	// subscription of its own from the earliest message. (A pulsar.Reader
	// does the same, but v0.21.0's Reader.Next races the reconnect loop on
	// the consumer's last dequeued message: -race failed a test that cuts
	// connections.)
	cons    pulsar.Consumer
	log     *slog.Logger
	started time.Time
	// reportAfter is the constant; a test of a gap shortens it.
	reportAfter time.Duration

	mu    sync.Mutex
	heard map[string]announcement // by ID, the latest of each
	gap   []int                   // uncovered slots at the last check
	over  []int                   // slots held by two or more
	said  string                  // the last report logged
	err   error                   // a deployment error (slot counts differ)

	uncovered, overlapping atomic.Int64
}

func newMembers(client pulsar.Client, cfg Config, sub string, ranges []int, log *slog.Logger) (*members, error) {
	var id [8]byte
	rand.Read(id[:])
	m := &members{cfg: cfg, log: log, heard: map[string]announcement{}, reportAfter: reportAfter,
		self: announcement{ID: hex.EncodeToString(id[:]), Sub: sub, Ranges: formatRanges(ranges), Slots: cfg.Slots}}
	var err error
	if m.prod, err = client.CreateProducer(pulsar.ProducerOptions{Topic: cfg.MembersTopic(), Name: "demandpipe-aggregate-" + m.self.ID}); err != nil {
		return nil, fmt.Errorf("scaleout: members topic %s: %w", cfg.MembersTopic(), err)
	}
	if m.cons, err = client.Subscribe(pulsar.ConsumerOptions{Topic: cfg.MembersTopic(), SubscriptionName: "demandpipe-members-" + m.self.ID,
		Type: pulsar.Exclusive, SubscriptionMode: pulsar.NonDurable, SubscriptionInitialPosition: pulsar.SubscriptionPositionEarliest}); err != nil {
		m.prod.Close()
		return nil, fmt.Errorf("scaleout: members topic %s: %w", cfg.MembersTopic(), err)
	}
	return m, nil
}

func formatRanges(r []int) string {
	var b strings.Builder
	for i := 0; i+1 < len(r); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d-%d", r[i], r[i+1])
	}
	return b.String()
}

// run announces and listens until ctx is done.
func (m *members) run(ctx context.Context) {
	m.started = time.Now()
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			msg, err := m.cons.Receive(ctx)
			if err != nil {
				return // ctx done, or the consumer closed
			}
			m.cons.Ack(msg)
			var a announcement
			if json.Unmarshal(msg.Payload(), &a) != nil || a.Sub != m.self.Sub || a.ID == "" {
				continue // another deployment's, or not ours to read
			}
			m.mu.Lock()
			if old, ok := m.heard[a.ID]; !ok || a.At >= old.At {
				m.heard[a.ID] = a
			}
			m.mu.Unlock()
		}
	})
	t := time.NewTicker(announceEvery)
	defer t.Stop()
	check := time.NewTicker(time.Second)
	defer check.Stop()
	m.announce(ctx, false)
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
			m.announce(ctx, false)
		case <-check.C:
			m.check(time.Now())
		}
	}
}

func (m *members) announce(ctx context.Context, ended bool) {
	a := m.self
	a.At, a.Ended = time.Now().UnixMilli(), ended
	b, _ := json.Marshal(a)
	if _, err := m.prod.Send(ctx, &pulsar.ProducerMessage{Payload: b, Key: a.ID}); err != nil && ctx.Err() == nil {
		m.log.Warn("scaleout: could not announce this process's ranges", "topic", m.cfg.MembersTopic(), "err", err)
	}
}

// check recomputes the coverage from the live announcements (this
// process's own included) and reports a change.
func (m *members) check(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	self := m.self
	self.At = now.UnixMilli()
	live := []announcement{self}
	for id, a := range m.heard {
		if id == self.ID {
			continue
		}
		// A process that ended with its input has done its slots: it
		// still covers them. One that stopped announcing (killed, cut
		// off, stopped by a signal) no longer does after liveFor.
		if !a.Ended && now.UnixMilli()-a.At > liveFor.Milliseconds() {
			continue
		}
		if a.Slots != m.cfg.Slots {
			m.err = fmt.Errorf("scaleout: an aggregate process of subscription %s uses %d slots, this one %d: every role of a deployment must use the same -scaleout.slots", self.Sub, a.Slots, m.cfg.Slots)
		}
		live = append(live, a)
	}
	slices.SortFunc(live, func(a, b announcement) int { return strings.Compare(a.Ranges, b.Ranges) })
	held := make([]int, m.cfg.Slots)
	for _, a := range live {
		r, err := keyshared.ParseRanges(a.Ranges)
		if err != nil {
			continue
		}
		for s := range held {
			if keyshared.Holds(r, []byte(slotKey(s))) {
				held[s]++
			}
		}
	}
	m.gap, m.over = m.gap[:0], m.over[:0]
	for s, n := range held {
		switch {
		case n == 0:
			m.gap = append(m.gap, s)
		case n > 1:
			m.over = append(m.over, s)
		}
	}
	if now.Sub(m.started) < m.reportAfter {
		return // the others may not have announced yet
	}
	m.uncovered.Store(int64(len(m.gap)))
	m.overlapping.Store(int64(len(m.over)))
	ranges := make([]string, len(live))
	for i, a := range live {
		ranges[i] = a.Ranges
	}
	say := fmt.Sprint(m.gap, m.over, ranges)
	if say == m.said {
		return
	}
	m.said = say
	switch {
	case len(m.gap) > 0:
		m.log.Error("scaleout: the aggregate processes' ranges leave slots uncovered: the rows of their regions are missing until a process takes them (-scaleout.ranges)",
			"uncovered_slots", m.gap, "ranges", ranges, "subscription", self.Sub)
	case len(m.over) > 0:
		m.log.Warn("scaleout: two aggregate processes' ranges hold the same slots (a takeover under way is fine; else fix -scaleout.ranges)",
			"overlapping_slots", m.over, "ranges", ranges, "subscription", self.Sub)
	default:
		m.log.Info("scaleout: the aggregate processes' ranges cover every slot once", "processes", len(live), "ranges", ranges)
	}
}

// errRangeGap: the input ended while slots were uncovered.
var errRangeGap = errors.New("the deployment's ranges leave slots uncovered")

// finish checks the coverage once more at the end of the input and says
// this process has ended. An error if slots were uncovered: their rows are
// missing.
func (m *members) finish(ctx context.Context) error {
	// Wait for the others' announcements while the gap may only be that
	// they have not been heard yet (processes started together are heard
	// within a second or two).
	var gap []int
	var err error
	for {
		m.check(time.Now())
		m.mu.Lock()
		gap, err = slices.Clone(m.gap), m.err
		m.mu.Unlock()
		if len(gap) == 0 || time.Since(m.started) >= m.reportAfter || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	m.announce(ctx, true)
	if err != nil {
		return err
	}
	if len(gap) > 0 {
		return fmt.Errorf("scaleout: the input ended, but %w: slots %v are held by no aggregate process of subscription %s (this one holds %s), so the rows of their regions are missing: run the deployment again with ranges covering 0-65535",
			errRangeGap, gap, m.self.Sub, m.self.Ranges)
	}
	return nil
}

func (m *members) close() {
	m.cons.Close()
	m.prod.Close()
}
