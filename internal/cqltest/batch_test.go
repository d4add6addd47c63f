package cqltest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/datastax/go-cassandra-native-protocol/frame"
	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// libraryBatch decodes body with the protocol library, as readLoop does
// without the fast path.
func libraryBatch(body []byte, v primitive.ProtocolVersion) (message.Message, error) {
	h := &frame.Header{Version: v, OpCode: primitive.OpCodeBatch, BodyLength: int32(len(body))}
	b, err := frame.NewRawCodec().DecodeBody(h, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	return b.Message, nil
}

func encodeBatch(t testing.TB, b *message.Batch, v primitive.ProtocolVersion) []byte {
	var buf bytes.Buffer
	if err := frame.NewRawCodec().EncodeFrame(frame.NewFrame(v, 1, b), &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()[9:] // the v3-v5 header is 9 bytes
}

func randomBatch(rng *rand.Rand, v primitive.ProtocolVersion) *message.Batch {
	b := &message.Batch{Type: primitive.BatchType(rng.IntN(3)), Consistency: primitive.ConsistencyLevel(rng.IntN(11))}
	for range rng.IntN(60) {
		ch := &message.BatchChild{}
		if rng.IntN(3) == 0 {
			ch.Query = fmt.Sprintf("INSERT INTO ks.t (a) VALUES (%d)", rng.IntN(1000))
		} else {
			ch.Id = make([]byte, 1+rng.IntN(16))
			for i := range ch.Id {
				ch.Id[i] = byte(rng.Uint32())
			}
		}
		ch.Values = []*primitive.Value{}
		for range rng.IntN(7) {
			switch r := rng.IntN(10); {
			case r == 0:
				ch.Values = append(ch.Values, primitive.NewNullValue())
			case r == 1 && v >= primitive.ProtocolVersion4:
				ch.Values = append(ch.Values, primitive.NewUnsetValue())
			case r == 2:
				ch.Values = append(ch.Values, primitive.NewValue([]byte{}))
			default:
				c := make([]byte, 1+rng.IntN(80))
				for i := range c {
					c[i] = byte(rng.Uint32())
				}
				ch.Values = append(ch.Values, primitive.NewValue(c))
			}
		}
		b.Children = append(b.Children, ch)
	}
	if rng.IntN(2) == 0 {
		sc := primitive.ConsistencyLevelLocalSerial
		b.SerialConsistency = &sc
	}
	if rng.IntN(2) == 0 {
		ts := rng.Int64()
		b.DefaultTimestamp = &ts
	}
	if v >= primitive.ProtocolVersion5 && rng.IntN(2) == 0 {
		b.Keyspace = fmt.Sprintf("ks%d", rng.IntN(100))
	}
	if v >= primitive.ProtocolVersion5 && rng.IntN(2) == 0 {
		now := rng.Int32()
		b.NowInSeconds = &now
	}
	return b
}

// TestFastBatchMatchesLibrary: on bodies the library encodes, the fast BATCH
// decoder returns exactly the library's message (v3, v4 and v5), and on every
// truncation of them it either agrees or leaves the body to the library.
func TestFastBatchMatchesLibrary(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, v := range []primitive.ProtocolVersion{primitive.ProtocolVersion3, primitive.ProtocolVersion4, primitive.ProtocolVersion5} {
		for i := range 300 {
			body := encodeBatch(t, randomBatch(rng, v), v)
			got, ok := decodeBatch(body, v)
			if !ok {
				t.Fatalf("v%d batch %d: not decoded", v, i)
			}
			want, err := libraryBatch(body, v)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("v%d batch %d:\nfast    %v\nlibrary %v", v, i, got, want)
			}
			cut := rng.IntN(len(body))
			checkAgainstLibrary(t, body[:cut], v)
		}
	}
}

func checkAgainstLibrary(t *testing.T, body []byte, v primitive.ProtocolVersion) {
	t.Helper()
	got, ok := decodeBatch(body, v)
	if !ok {
		return // the library decides
	}
	want, err := libraryBatch(body, v)
	if err != nil {
		t.Fatalf("fast decoded %x, the library fails: %v", body, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%x:\nfast    %v\nlibrary %v", body, got, want)
	}
}

// FuzzFastBatch: whatever the fast decoder accepts, the library decodes to
// the same message.
func FuzzFastBatch(f *testing.F) {
	rng := rand.New(rand.NewPCG(9, 10))
	for range 20 {
		f.Add(encodeBatch(f, randomBatch(rng, primitive.ProtocolVersion4), primitive.ProtocolVersion4), byte(4))
	}
	for range 10 {
		f.Add(encodeBatch(f, randomBatch(rng, primitive.ProtocolVersion5), primitive.ProtocolVersion5), byte(5))
	}
	f.Add([]byte{1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0}, byte(3))
	f.Fuzz(func(t *testing.T, body []byte, v byte) {
		checkAgainstLibrary(t, body, primitive.ProtocolVersion(3+v%3))
	})
}

// BenchmarkDecodeBatch: a BATCH of 50 rows of the sink's INSERT shape
// (16-byte id; uuid, three bigints and a ~64-byte blob), the fast decoder
// against the library's.
//
//	go test ./internal/cqltest -run '^$' -bench DecodeBatch
func BenchmarkDecodeBatch(b *testing.B) {
	v := primitive.ProtocolVersion4
	m := &message.Batch{Type: primitive.BatchTypeUnlogged, Consistency: primitive.ConsistencyLevelLocalQuorum}
	for i := range 50 {
		ch := &message.BatchChild{Id: bytes.Repeat([]byte{7}, 16)}
		for _, n := range []int{16, 8, 8, 8, 64} {
			ch.Values = append(ch.Values, primitive.NewValue(bytes.Repeat([]byte{byte(i)}, n)))
		}
		m.Children = append(m.Children, ch)
	}
	body := encodeBatch(b, m, v)
	b.Run("decoder=fast", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, ok := decodeBatch(body, v); !ok {
				b.Fatal("not decoded")
			}
		}
	})
	b.Run("decoder=library", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := libraryBatch(body, v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
