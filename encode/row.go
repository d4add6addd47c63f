package encode

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Batch is a columnar set of feature rows of one closed minute. Row i is
// (Cells[i], Products[i], Features[i*NumFeatures:(i+1)*NumFeatures]).
// Sinks receive Batches; a Batch is only valid during the call that gets it.
type Batch struct {
	Minute      int64 // unix minute: floor(ts/60000)
	NumFeatures int
	Cells       []uint64
	Products    []byte
	Features    []int32
	// Names resolves product codes to UUIDs.
	Names *Products
}

// Len is the number of rows.
func (b *Batch) Len() int { return len(b.Cells) }

// UUID is row i's product UUID (in the batch's minute: codes are reused).
func (b *Batch) UUID(i int) UUID { return b.Names.UUIDAt(b.Products[i], b.Minute) }

// ProductName is row i's product UUID as lower-case text.
func (b *Batch) ProductName(i int) string { return b.Names.NameAt(b.Products[i], b.Minute) }

// Row returns row i's feature vector (aliasing the batch).
func (b *Batch) Row(i int) []int32 {
	return b.Features[i*b.NumFeatures : (i+1)*b.NumFeatures]
}

// Reset empties the batch for reuse, keeping its capacity.
func (b *Batch) Reset(minute int64, numFeatures int) {
	b.Minute = minute
	b.NumFeatures = numFeatures
	b.Cells = b.Cells[:0]
	b.Products = b.Products[:0]
	b.Features = b.Features[:0]
}

// MinuteStart is the start of unix minute m.
func MinuteStart(m int64) time.Time { return time.UnixMilli(m * 60000).UTC() }

// AppendMinute appends the RFC 3339 UTC start of minute m, e.g.
// 2024-06-01T10:07:00Z.
func AppendMinute(dst []byte, m int64) []byte {
	return MinuteStart(m).AppendFormat(dst, time.RFC3339)
}

// AppendCell appends an H3 cell as its 15-character lower-case hex string.
func AppendCell(dst []byte, cell uint64) []byte {
	return strconv.AppendUint(dst, cell, 16)
}

// AppendRowJSON appends row i of b as one ndjson line (with '\n'):
// {"h3":"882a100d65fffff","product_type":"…","minute":"2024-06-01T10:07:00Z","features":[…]}
func AppendRowJSON(dst []byte, b *Batch, i int) []byte {
	dst = append(dst, `{"h3":"`...)
	dst = AppendCell(dst, b.Cells[i])
	dst = append(dst, `","product_type":"`...)
	dst = append(dst, b.ProductName(i)...)
	dst = append(dst, `","minute":"`...)
	dst = AppendMinute(dst, b.Minute)
	dst = append(dst, `","features":[`...)
	for j, v := range b.Row(i) {
		if j > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, int64(v), 10)
	}
	return append(dst, "]}\n"...)
}

// AppendJSONString appends s as a JSON string literal. Control characters,
// quotes and backslashes are escaped; invalid UTF-8 becomes U+FFFD, so the
// output is always valid JSON whatever the input held (a rejected line, a
// client's bad parameter echoed in an error).
func AppendJSONString[S ~string | ~[]byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
			}
			i++
			continue
		}
		// At most 4 bytes: the conversion stays on the stack.
		r, n := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return append(dst, '"')
}
