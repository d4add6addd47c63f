package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/job"
)

func genCommand(args []string) error {
	c := gen.DefaultConfig()
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	out := fs.String("o", "events.ndjson", "output file; .gz or .zst compresses; - is stdout")
	events := fs.Int("events", 1_000_000, "number of raw events")
	fromCSV := fs.String("from-csv", "", "convert real pickups instead (the NYC TLC sample in ../shared/data: Date/Time,Lat,Lon,Base; gzip ok): rider nyc-<row>, product from Base; -events and city flags are ignored")
	start := fs.String("start", c.Start.Format(time.RFC3339), "event time of the first event (RFC 3339)")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "random seed: the same flags make the same file")
	fs.IntVar(&c.EventsPerMinute, "rate", c.EventsPerMinute, "raw events per minute of event time")
	fs.IntVar(&c.Riders, "riders", c.Riders, "rider population")
	fs.IntVar(&c.Products, "products", c.Products, "number of product types")
	fs.IntVar(&c.Hotspots, "hotspots", c.Hotspots, "moving demand centres")
	fs.Float64Var(&c.RadiusKm, "radius-km", c.RadiusKm, "city radius in km")
	fs.Float64Var(&c.CenterLat, "lat", c.CenterLat, "city centre latitude")
	fs.Float64Var(&c.CenterLng, "lng", c.CenterLng, "city centre longitude")
	fs.Float64Var(&c.EventsPerSession, "events-per-session", c.EventsPerSession, "mean events per rider session (~3 a minute): drives the duplicate share")
	fs.IntVar(&c.JitterMs, "jitter-ms", c.JitterMs, "arrival jitter: ts is up to this much older than arrival")
	fs.Float64Var(&c.LateFraction, "late", c.LateFraction, "fraction of events arriving 2-6 minutes late")
	fs.Float64Var(&c.MalformedFraction, "malformed", c.MalformedFraction, "fraction of broken lines (truncated, not JSON, bad lat, bad product, bad ts, missing rider_id)")
	if err := parse(fs, args, "demandpipe gen [flags]: write a synthetic city's raw rider events as NDJSON.", ""); err != nil {
		return err
	}
	t, err := time.Parse(time.RFC3339, *start)
	if err != nil {
		return fmt.Errorf("-start: %v", err)
	}
	c.Start = t
	if *events < 0 {
		return fmt.Errorf("-events=%d: must be >= 0", *events)
	}
	o := *out
	if o == "-" {
		o = ""
	}
	if err := job.CheckOutputs([]job.Path{{Flag: "-from-csv=" + *fromCSV, Path: *fromCSV}}, []job.Path{{Flag: "-o=" + *out, Path: o}}); err != nil {
		return err
	}
	var pickups []gen.Pickup
	if *fromCSV != "" {
		f, err := os.Open(*fromCSV)
		if err != nil {
			return err
		}
		pickups, err = gen.ReadPickups(f)
		f.Close()
		if err != nil {
			return err
		}
		*events = len(pickups)
	}
	g, err := gen.New(c)
	if err != nil {
		return err
	}
	w, finish, err := createGenOutput(*out)
	if err != nil {
		return err
	}
	term := isTerminal(os.Stderr)
	var buf []byte
	var bytes int64
	begin := time.Now()
	for i := range *events {
		if pickups != nil {
			buf = gen.AppendPickupEvent(buf, i, pickups[i])
		} else {
			buf = g.Append(buf)
		}
		if len(buf) > 256<<10 || i == *events-1 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			bytes += int64(len(buf))
			buf = buf[:0]
			if term && i%(1<<18) < 600 {
				fmt.Fprintf(os.Stderr, "demandpipe gen: %d/%d events\x1b[K\r", i+1, *events)
			}
		}
	}
	if err := finish(); err != nil {
		return err
	}
	first, last := c.Start, time.UnixMilli(g.NextArrival()).UTC()
	if len(pickups) > 0 {
		first, last = time.UnixMilli(pickups[0].TS).UTC(), time.UnixMilli(pickups[len(pickups)-1].TS).UTC()
	}
	fmt.Fprintf(os.Stderr, "demandpipe gen: wrote %d events (%.1f MB raw, %.0f bytes/event) to %s in %.1fs; event time %s .. %s\n",
		*events, float64(bytes)/1e6, float64(bytes)/float64(max(*events, 1)), *out, time.Since(begin).Seconds(),
		first.Format(time.RFC3339), last.Format(time.RFC3339))
	return nil
}

// createGenOutput opens gen's output: path ("-" is stdout), buffered,
// compressed by its suffix (.gz, .zst). finish flushes and closes it, in
// order: the compressor, the buffer, the file.
func createGenOutput(path string) (w io.Writer, finish func() error, err error) {
	var f *os.File
	if path != "-" {
		if f, err = os.Create(path); err != nil {
			return nil, nil, err
		}
	}
	var dst io.Writer = os.Stdout
	if f != nil {
		dst = f
	}
	bw := bufio.NewWriterSize(dst, 1<<20)
	var zw io.WriteCloser
	switch {
	case strings.HasSuffix(path, ".gz"):
		zw, _ = gzip.NewWriterLevel(bw, gzip.BestSpeed)
	case strings.HasSuffix(path, ".zst"):
		if zw, err = zstd.NewWriter(bw, zstd.WithEncoderLevel(zstd.SpeedFastest)); err != nil {
			if f != nil {
				f.Close()
			}
			return nil, nil, err
		}
	}
	finish = func() error {
		var errs []error
		if zw != nil {
			errs = append(errs, zw.Close())
		}
		errs = append(errs, bw.Flush())
		if f != nil {
			errs = append(errs, f.Close())
		}
		return errors.Join(errs...)
	}
	if zw != nil {
		return zw, finish, nil
	}
	return bw, finish, nil
}
