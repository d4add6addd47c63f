// Package scaleout carries the engine's scale-out roles (pipeline/SCALEOUT.md)
// over Pulsar: a dedup process publishes its counted events to an internal
// topic (Publisher, a pipeline.CountedWriter), one message per key slot
// and batch; aggregate processes consume that topic on a Key_Shared
// subscription with sticky hash ranges (Aggregate) and own the regions
// hashed to the slots of their ranges.
//
// Recovery: with a sink that keeps state per part (store, cassandra) an
// aggregate process commits each slot's counts and checkpoint with its rows,
// acknowledges a message only once its minutes are committed, and restores
// its slots when it starts; a dedup process stores a checkpoint on the state
// topic before each watermark and resumes from it, and a dedup process can
// join a running one (-scaleout.joins, -scaleout.resume-from). Every case
// gives exactly the single process's rows (SCALEOUT.md). The durable
// subscription StateSubscription keeps the state topic and each process's
// latest checkpoint while no dedup process runs, which a broker that
// deletes inactive topics (its default) would otherwise take within a
// minute or two (state.go).
//
// # Metrics
//
// Namespace demandpipe, subsystem scaleout (metrics.go):
// Aggregate.RegisterMetrics, in an aggregate process:
//
//	demandpipe_scaleout_messages_total            internal-topic messages handled
//	demandpipe_scaleout_duplicate_messages_total  messages dropped as copies of ones handled (redelivered after a lost connection)
//	demandpipe_scaleout_replayed_events_total     events dropped because their slot was committed through their minute (restored)
//	demandpipe_scaleout_acked_messages_total      messages acknowledged
//	demandpipe_scaleout_dedup_restarts_total      a dedup process heard starting again on a slot (what it sent after its checkpoint taken back)
//	demandpipe_scaleout_unacked_messages          gauge: messages handled and waiting for their minutes to commit
//	demandpipe_scaleout_owned_slots               gauge: slots this process owns
//	demandpipe_scaleout_restore_seconds           gauge: time restoring the slots from the sink at start
//	demandpipe_scaleout_closed_minute_timestamp_seconds  gauge: start of the last minute closed and committed
//	demandpipe_scaleout_watermark_lag_seconds     gauge: time between the highest and the lowest watermark over (dedup process, owned slot)
//	demandpipe_scaleout_uncovered_slots           gauge: slots no live aggregate process holds (a gap in the ranges; members.go)
//	demandpipe_scaleout_overlapping_slots         gauge: slots two or more live aggregate processes hold
//
// and Publisher.RegisterMetrics, in a dedup process:
//
//	demandpipe_scaleout_sent_messages_total       messages sent to the internal topic
//	demandpipe_scaleout_sent_bytes_total          their payload bytes
//	demandpipe_scaleout_checkpoints_total         checkpoints stored on the state topic
//	demandpipe_scaleout_checkpoint_minute_timestamp_seconds  gauge: start of the minute the last checkpoint is complete through
package scaleout

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/demandpipe/demandpipe/aggregate"

	"github.com/demandpipe/demandpipe/internal/keyshared"
)

// Config is the internal topic's layout, shared by both roles.
type Config struct {
	// Topic is the internal topic (-scaleout.topic).
	Topic string
	// Slots is the number of message keys regions are hashed over (default
	// 64): watermarks go to every slot, so it bounds their cost, and it
	// bounds how finely work can be split.
	Slots int
	// RegionRes is the H3 resolution of the regions (default 3, ~12,400
	// km²: a metro's events reach ~1.06 regions at k=20, SCALEOUT.md).
	RegionRes int
	// Retain is how many minutes an aggregate process keeps each slot's
	// count records past what its windows need (-scaleout.retain, default
	// 60): slots committed by different processes can be restored together
	// while they are at most this far apart (aggregate.PartConfig.Retain).
	Retain int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Slots: 64, RegionRes: 3, Retain: aggregate.DefaultPartRetain}
}

// RegisterFlags binds the fields to -scaleout.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Topic, "scaleout.topic", c.Topic, "the internal topic between the dedup and aggregate roles, e.g. persistent://public/default/demandpipe-counted")
	fs.IntVar(&c.Slots, "scaleout.slots", c.Slots, "message keys regions are hashed over (1..4096): every role of a deployment must use the same")
	fs.IntVar(&c.RegionRes, "scaleout.region-res", c.RegionRes, "H3 resolution of the regions aggregate processes own (0..15; 3: ~12,400 km², an event reaches ~1.06 regions at k=20)")
	fs.IntVar(&c.Retain, "scaleout.retain", c.Retain, "aggregate role: minutes each slot's counts are kept past what its windows need; slots committed by different processes can be taken over together while at most this many minutes apart")
}

// Validate checks the fields.
func (c Config) Validate() error {
	if c.Topic == "" {
		return fmt.Errorf("scaleout.topic: needed (the internal topic, e.g. persistent://public/default/demandpipe-counted)")
	}
	if c.Slots < 1 || c.Slots > 4096 {
		return fmt.Errorf("scaleout.slots=%d: must be in 1..4096", c.Slots)
	}
	if c.RegionRes < 0 || c.RegionRes > 15 {
		return fmt.Errorf("scaleout.region-res=%d: must be in 0..15", c.RegionRes)
	}
	if c.Retain < 1 {
		return fmt.Errorf("scaleout.retain=%d: must be >= 1 (minutes)", c.Retain)
	}
	return nil
}

// StateTopic is where dedup processes keep their checkpoints: the internal
// topic's name with "-state" (keyed by dedup process; the durable
// subscription StateSubscription keeps the latest of each: state.go).
func (c Config) StateTopic() string { return c.Topic + "-state" }

// maxCachedCells bounds the per-cell caches of slots (~100 bytes a cell);
// a cell's slots cost one k-ring disk (~30 us at k=20) to compute again.
const maxCachedCells = 1 << 20

// slotOf is the key slot of a region.
func (c Config) slotOf(region uint64) int {
	return int(xxhash.Sum64String(strconv.FormatUint(region, 16)) % uint64(c.Slots))
}

// cellSlots appends to dst the slots of the regions a source at cell
// reaches within maxK (its halo), each once.
func (c Config) cellSlots(cell uint64, maxK int, regions *[]uint64, dst []int) ([]int, error) {
	var err error
	if *regions, err = aggregate.Regions(cell, maxK, c.RegionRes, (*regions)[:0]); err != nil {
		return dst, err
	}
	for _, g := range *regions {
		if s := c.slotOf(g); !slices.Contains(dst, s) {
			dst = append(dst, s)
		}
	}
	return dst, nil
}

// slotKey is the message key of slot s.
func slotKey(s int) string { return "slot-" + strconv.Itoa(s) }

func parseSlotKey(k string) (int, bool) {
	s, ok := strings.CutPrefix(k, "slot-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// ParseRanges reads sticky hash ranges "a-b,c-d" (inclusive, 0..65535).
func ParseRanges(s string) ([]int, error) {
	r, err := keyshared.ParseRanges(s)
	if err != nil {
		return nil, fmt.Errorf("scaleout.ranges: %w", err)
	}
	return r, nil
}

// owned lists which slots' keys fall in ranges.
func (c Config) owned(ranges []int) []bool {
	own := make([]bool, c.Slots)
	for s := range own {
		own[s] = keyshared.Holds(ranges, []byte(slotKey(s)))
	}
	return own
}
