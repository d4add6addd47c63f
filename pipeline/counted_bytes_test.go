package pipeline

import (
	"context"
	"strings"
	"testing"

	"github.com/demandpipe/demandpipe/aggregate"
	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/testsize"
)

// encodingRouter is the dedup side of the internal topic without a broker:
// each Counted call becomes one message per region reached (halo copies
// included), as the transport will send it; it counts the bytes.
type encodingRouter struct {
	maxK, res int
	perRegion map[uint64][]aggregate.Counted
	regions   []uint64
	buf       []byte
	msg       aggregate.CountedMessage
	bytes     int
	events    int // counted events, before halo copies
	sent      int // events in messages
	messages  int
}

func (r *encodingRouter) Product(byte, encode.UUID) error { return nil }
func (r *encodingRouter) Watermark(int64, int64) error    { return nil }
func (r *encodingRouter) Counted(evs []aggregate.Counted) error {
	clear(r.perRegion)
	for _, c := range evs {
		var err error
		if r.regions, err = aggregate.Regions(c.Cell, r.maxK, r.res, r.regions[:0]); err != nil {
			return err
		}
		for _, g := range r.regions {
			r.perRegion[g] = append(r.perRegion[g], c)
		}
	}
	r.events += len(evs)
	for _, part := range r.perRegion {
		// The header as a restarted dedup process sends it: an epoch
		// from its clock, a start minute and a message number.
		r.msg.Events, r.msg.Epoch, r.msg.Start = part, 1_796_456_698_035_938_190, 28_620_600
		r.msg.Seq++
		r.buf = aggregate.AppendCountedMessage(r.buf[:0], &r.msg)
		r.bytes += len(r.buf)
		r.sent += len(part)
		r.messages++
	}
	return nil
}

// TestCountedBytesPerEvent measures the internal topic's bytes per counted
// event on a generated metro stream (SCALEOUT.md quotes it): per region
// message, headers included.
func TestCountedBytesPerEvent(t *testing.T) {
	t.Parallel()
	gc := gen.DefaultConfig()
	lines, _ := genWith(t, gc, testsize.Pick(10_000, 60_000))
	cfg := DefaultConfig()
	cfg.Def, cfg.Parallelism = feature.Default(), 2
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &encodingRouter{maxK: 20, res: 3, perRegion: map[uint64][]aggregate.Counted{}}
	e.Emit = r
	if err := e.Run(context.Background(), strings.NewReader(strings.Join(lines, "\n")), nil); err != nil {
		t.Fatal(err)
	}
	perEvent := float64(r.bytes) / float64(r.sent)
	if r.events == 0 || perEvent > 6 || r.sent > r.events*5/4 {
		t.Fatalf("%d events, %.2f bytes per event sent", r.events, perEvent)
	}
	t.Logf("%d counted events sent as %d (regions at res %d, k=20: +%.0f%% halo) in %d messages, %d bytes: %.2f bytes per event sent, %.2f per counted event",
		r.events, r.sent, r.res, 100*float64(r.sent-r.events)/float64(r.events), r.messages, r.bytes, perEvent, float64(r.bytes)/float64(r.events))
}
