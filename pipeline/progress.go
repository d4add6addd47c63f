package pipeline

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/demandpipe/demandpipe/encode"
)

// Progress prints one status line every interval until ctx is done: lines
// and events per second, rows written, how far the input has been read
// (when its size is known) and the lag of the last closed minute behind the
// largest event time seen. On a terminal (width returns its columns, 0
// elsewhere) the line rewrites itself and is cut to the terminal's width, so
// it never wraps.
func (e *Engine) Progress(ctx context.Context, w io.Writer, size func() (read, total int64), interval time.Duration, width func() int) {
	terminal := width() > 0
	t := time.NewTicker(interval)
	defer t.Stop()
	start := time.Now()
	var lastLines int64
	last := start
	end := "\n"
	if terminal {
		end = "\x1b[K\r"
	}
	for {
		select {
		case <-ctx.Done():
			if terminal {
				fmt.Fprint(w, "\x1b[K")
			}
			return
		case now := <-t.C:
			s := &e.Stats
			lines := s.Lines.Load()
			rate := float64(lines-lastLines) / now.Sub(last).Seconds()
			lastLines, last = lines, now
			pos := ""
			if read, total := size(); total > 0 {
				pos = fmt.Sprintf(" %5.1f%% read,", 100*float64(read)/float64(total))
			}
			lag := "-"
			if closed, maxTS := s.Closed.Load(), s.MaxTS.Load(); s.Minutes.Load() > 0 {
				lag = (time.Duration(maxTS-(closed+1)*60000) * time.Millisecond).Round(time.Second).String()
			}
			event := "-"
			if s.MaxTS.Load() > 0 {
				event = time.UnixMilli(s.MaxTS.Load()).UTC().Format("2006-01-02T15:04:05Z")
			}
			rej := int64(0)
			for r := encode.Reason(1); r < encode.NumReasons; r++ {
				rej += s.Rejected[r].Load()
			}
			line := fmt.Sprintf("demandpipe: %6.0fs%s %9.0f lines/s, %d lines, %d counted, %d dup, %d late, %d rejected, %d rows, %d minutes, event time %s, close lag %s",
				now.Sub(start).Seconds(), pos, rate, lines, s.Counted.Load(), s.Duplicates.Load(), s.Late.Load(), rej, s.Rows.Load(), s.Minutes.Load(), event, lag)
			if n := width(); n > 1 && len(line) >= n {
				line = line[:n-1] // ASCII only: bytes are columns
			}
			fmt.Fprint(w, line, end)
		}
	}
}
