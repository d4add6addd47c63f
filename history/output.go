package history

import (
	"bufio"
	"io"
	"strconv"
	"time"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
)

// Writer writes answers as NDJSON or CSV, buffered; Flush at the end.
type Writer struct {
	w   *bufio.Writer
	csv bool
	def feature.Definition
	buf []byte
}

// NewWriter writes answers to w; format is "ndjson" or "csv" (a header
// line, then ts,lat,lng,product,h3,minute,found and one column per
// feature, k<K>_w<W> in the row's order).
func NewWriter(w io.Writer, format string, def feature.Definition) *Writer {
	out := &Writer{w: bufio.NewWriterSize(w, 1<<20), csv: format == "csv", def: def}
	if out.csv {
		out.buf = append(out.buf, "ts,lat,lng,product,h3,minute,found"...)
		for _, k := range def.Rings {
			for _, w := range def.Windows {
				out.buf = append(out.buf, ",k"+strconv.Itoa(k)+"_w"+strconv.Itoa(w)...)
			}
		}
		out.w.Write(append(out.buf, '\n'))
	}
	return out
}

// Write writes one answer.
func (o *Writer) Write(a *Answer) error {
	b := o.buf[:0]
	ts := time.UnixMilli(a.TS).UTC().Format(time.RFC3339Nano)
	minute := ""
	if a.HasMinute {
		minute = encode.MinuteStart(a.Minute).Format(time.RFC3339)
	}
	if o.csv {
		b = append(b, ts...)
		b = append(b, ',')
		b = strconv.AppendFloat(b, a.Lat, 'f', -1, 64)
		b = append(b, ',')
		b = strconv.AppendFloat(b, a.Lng, 'f', -1, 64)
		b = append(b, ',')
		b = append(b, a.Product.String()...)
		b = append(b, ',')
		b = strconv.AppendUint(b, a.Cell, 16)
		b = append(b, ',')
		b = append(b, minute...)
		b = append(b, ',')
		b = strconv.AppendBool(b, a.Found)
		for _, v := range a.Features {
			b = append(b, ',')
			b = strconv.AppendInt(b, int64(v), 10)
		}
	} else {
		b = append(b, `{"ts":"`...)
		b = append(b, ts...)
		b = append(b, `","lat":`...)
		b = strconv.AppendFloat(b, a.Lat, 'f', -1, 64)
		b = append(b, `,"lng":`...)
		b = strconv.AppendFloat(b, a.Lng, 'f', -1, 64)
		b = append(b, `,"product_type":"`...)
		b = append(b, a.Product.String()...)
		b = append(b, `","h3":"`...)
		b = strconv.AppendUint(b, a.Cell, 16)
		b = append(b, '"')
		if a.HasMinute {
			b = append(b, `,"minute":"`...)
			b = append(b, minute...)
			b = append(b, `","found":`...)
			b = strconv.AppendBool(b, a.Found)
			b = append(b, `,"features":[`...)
			for i, v := range a.Features {
				if i > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendInt(b, int64(v), 10)
			}
			b = append(b, ']')
		} else {
			b = append(b, `,"minute":null,"error":"no minute closed yet at ts"`...)
		}
		b = append(b, '}')
	}
	o.buf = append(b, '\n')
	_, err := o.w.Write(o.buf)
	return err
}

// Flush writes what is buffered.
func (o *Writer) Flush() error { return o.w.Flush() }
