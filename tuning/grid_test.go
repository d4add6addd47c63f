package tuning

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseGrid(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Grid
	}{
		{"1", Grid{1}},
		{"1,50,200", Grid{1, 50, 200}},
		{" 200 , 1,50 ", Grid{1, 50, 200}},  // sorted, spaces ignored
		{"4..64x2", Grid{4, 8, 16, 32, 64}}, // geometric
		{"4..50x2", Grid{4, 8, 16, 32}},     // stops at the last value not above B
		{"1..4", Grid{1, 2, 3, 4}},          // step 1
		{"8..32+8", Grid{8, 16, 24, 32}},    // additive step
		{"1..4,8..32+8", Grid{1, 2, 3, 4, 8, 16, 24, 32}},
		{"2..2x3", Grid{2}},                // a one-value range
		{"1,1,2..4,4", Grid{1, 2, 3, 4}},   // repeats removed
		{"3..1000x10", Grid{3, 30, 300}},   // stops before overflowing the bound
		{"1..1024x1000000000000", Grid{1}}, // a huge factor cannot overflow
	} {
		got, err := ParseGrid("sink.writers", c.in, 1, 1024)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("ParseGrid(%q) = %v, %v; want %v", c.in, got, err, c.want)
			continue
		}
		// String is a plain list that parses back to the same grid.
		if back, err := ParseGrid("x", got.String(), 1, 1024); err != nil || !slices.Equal(back, got) {
			t.Errorf("%q: String %q parses back as %v, %v", c.in, got.String(), back, err)
		}
	}
}

func TestParseGridErrors(t *testing.T) {
	for _, c := range []struct {
		in      string
		want    error
		mention string // in the message, besides the flag's name
	}{
		{"", ErrGridEmpty, `-sink.writers=""`},
		{"  ", ErrGridEmpty, "want e.g."},
		{"a", ErrGridSyntax, `"a" is not an integer`},
		{"1,,2", ErrGridSyntax, `item ""`},
		{"1.5", ErrGridSyntax, `"1.5"`},
		{"4..", ErrGridSyntax, `item "4.."`},
		{"..4", ErrGridSyntax, `item "..4"`},
		{"4..64x", ErrGridSyntax, "step"},
		{"4..64xy", ErrGridSyntax, "step"},
		{"0", ErrGridRange, "0 is not in 1..1024"},
		{"2000", ErrGridRange, "2000 is not in 1..1024"},
		{"1..2000", ErrGridRange, "2000"},
		{"-1", ErrGridRange, "-1"},
		{"64..4", ErrGridBackward, "64..4"},
		{"4..64x1", ErrGridStep, "factor 1"},
		{"4..64x0", ErrGridStep, "factor 0"},
		{"4..64+0", ErrGridStep, "step 0"},
		{"4..64+-2", ErrGridStep, "step -2"},
		{"1..1000", ErrGridTooMany, "at most 64"},
	} {
		_, err := ParseGrid("sink.writers", c.in, 1, 1024)
		if !errors.Is(err, c.want) {
			t.Errorf("ParseGrid(%q): error %v, want %v", c.in, err, c.want)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "-sink.writers=") || !strings.Contains(msg, c.mention) {
			t.Errorf("ParseGrid(%q): message %q should name the flag and %q", c.in, msg, c.mention)
		}
	}
}

// FuzzParseGrid: any input either fails with one of the named errors or
// gives a sorted grid without repeats, in range, that String writes back.
func FuzzParseGrid(f *testing.F) {
	for _, s := range []string{"1,50,200", "4..64x2", "1..4,8..32+8", "64..4", "4..64x1", "1..1000", ""} {
		f.Add(s)
	}
	named := []error{ErrGridEmpty, ErrGridSyntax, ErrGridRange, ErrGridBackward, ErrGridStep, ErrGridTooMany}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := ParseGrid("f", s, 1, 1024)
		if err != nil {
			if !slices.ContainsFunc(named, func(e error) bool { return errors.Is(err, e) }) {
				t.Fatalf("%q: unnamed error %v", s, err)
			}
			return
		}
		if len(g) == 0 || len(g) > MaxGridValues || !slices.IsSorted(g) || len(slices.Compact(slices.Clone(g))) != len(g) || g[0] < 1 || g[len(g)-1] > 1024 {
			t.Fatalf("%q: bad grid %v", s, g)
		}
		if back, err := ParseGrid("f", g.String(), 1, 1024); err != nil || !slices.Equal(back, g) {
			t.Fatalf("%q: %v does not round-trip: %v, %v", s, g, back, err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, c := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no writers", func(c *Config) { c.Writers = nil }, "-sink.writers"},
		{"writers range", func(c *Config) { c.Writers = Grid{0} }, "-sink.writers"},
		{"too many points", func(c *Config) {
			c.Writers, _ = ParseGrid("w", "1..64", 1, 1024)
			c.BatchRows, _ = ParseGrid("b", "1..64", 1, 65535)
		}, "points"},
		{"sink", func(c *Config) { c.Sink = "store:x" }, "-sink="},
		{"service time", func(c *Config) { c.ServiceTime = -1 }, "-tune.service-time"},
		{"events", func(c *Config) { c.Events = 10 }, "-tune.events"},
		{"window", func(c *Config) { c.Window = 0 }, "-tune.window"},
		{"steady windows", func(c *Config) { c.SteadyWindows = 1 }, "-tune.steady-windows"},
		{"tolerance", func(c *Config) { c.Tolerance = 0 }, "-tune.tolerance"},
		{"max point time", func(c *Config) { c.MaxPointTime = c.Window / 2 }, "-tune.max-point-time"},
		{"within", func(c *Config) { c.Within = 1.5 }, "-tune.within"},
		{"max p99", func(c *Config) { c.MaxP99 = 0 }, "-tune.max-p99"},
		{"capacity below a batch", func(c *Config) { c.Cassandra.Queue.Capacity = 100 }, "-sink.queue-capacity"},
		{"engine", func(c *Config) { c.Engine.ChunkBytes = 1 }, "source.chunk-bytes"},
		{"gen", func(c *Config) { c.Gen.EventsPerMinute = 0 }, "gen.rate"},
	} {
		cfg := DefaultConfig()
		c.mod(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate() = %v, want an error naming %s", c.name, err, c.want)
		}
	}
}
