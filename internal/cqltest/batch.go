package cqltest

import (
	"encoding/binary"

	"github.com/datastax/go-cassandra-native-protocol/frame"
	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// A BATCH body decoded straight from its bytes. BATCH frames carry nearly
// every row a client writes, and the protocol library decodes them through
// an io.Reader, one binary.Read, one allocation per value and two copies of
// a compressed body each: a third of the double's CPU under a bulk load,
// on the same cores as the client it measures. fastBatch decodes the same
// message in place (values are sub-slices of the frame's own body, which is
// allocated per frame and never reused) with one allocation per kind of
// object per batch. Anything it does not cover (a custom payload, a body
// that does not parse) goes to the library instead, which then produces the
// answer, error included: the two agree on every body fastBatch accepts
// (TestFastBatchMatchesLibrary, FuzzFastBatch).

// fastBatch returns the BATCH in body, or nil to leave the frame to the
// protocol library.
func (c *conn) fastBatch(h *frame.Header, body []byte) *message.Batch {
	if h.OpCode != primitive.OpCodeBatch || h.Flags&^(primitive.HeaderFlagCompressed|primitive.HeaderFlagTracing) != 0 {
		return nil
	}
	if h.Flags.Contains(primitive.HeaderFlagCompressed) {
		if c.zbody == nil {
			return nil
		}
		var err error
		if body, err = c.zbody.decompress(body); err != nil {
			return nil
		}
	}
	b, ok := decodeBatch(body, h.Version)
	if !ok {
		return nil
	}
	return b
}

// decodeBatch decodes a BATCH body of protocol v3, v4 or v5 as
// message.batchCodec does; ok is false where that would fail.
func decodeBatch(p []byte, v primitive.ProtocolVersion) (_ *message.Batch, ok bool) {
	if v < primitive.ProtocolVersion3 || v > primitive.ProtocolVersion5 || len(p) < 3 {
		return nil, false
	}
	b := &message.Batch{Type: primitive.BatchType(p[0])}
	if !b.Type.IsValid() {
		return nil, false
	}
	n := int(binary.BigEndian.Uint16(p[1:]))
	p = p[3:]
	// Count the values first so that one slab holds them all.
	q, nv := p, 0
	for range n {
		var ok bool
		if q, ok = skipChildHead(q); !ok || len(q) < 2 {
			return nil, false
		}
		k := int(binary.BigEndian.Uint16(q))
		q = q[2:]
		for range k {
			if len(q) < 4 {
				return nil, false
			}
			l := int32(binary.BigEndian.Uint32(q))
			q = q[4:]
			if l > 0 {
				if int64(l) > int64(len(q)) {
					return nil, false
				}
				q = q[l:]
			}
		}
		nv += k
	}
	children := make([]message.BatchChild, n)
	b.Children = make([]*message.BatchChild, n)
	vals := make([]primitive.Value, nv)
	ptrs := make([]*primitive.Value, nv)
	for i := range n {
		ch := &children[i]
		b.Children[i] = ch
		kind := p[0]
		l := int(binary.BigEndian.Uint16(p[1:]))
		if kind == byte(primitive.BatchChildTypeQueryString) {
			l = int(binary.BigEndian.Uint32(p[1:]))
			ch.Query = string(p[5 : 5+l])
			p = p[5+l:]
		} else {
			ch.Id = p[3 : 3+l : 3+l]
			if l == 0 {
				ch.Id = []byte{}
			}
			p = p[3+l:]
		}
		k := int(binary.BigEndian.Uint16(p))
		p = p[2:]
		ch.Values = ptrs[:k:k]
		ptrs = ptrs[k:]
		for j := range k {
			val := &vals[j]
			l := int32(binary.BigEndian.Uint32(p))
			p = p[4:]
			switch {
			case l == -1:
				val.Type = primitive.ValueTypeNull
			case l == -2:
				if v < primitive.ProtocolVersion4 {
					return nil, false
				}
				val.Type = primitive.ValueTypeUnset
			case l < 0:
				return nil, false
			case l == 0:
				val.Type, val.Contents = primitive.ValueTypeRegular, []byte{}
			default:
				val.Type, val.Contents = primitive.ValueTypeRegular, p[:l:l]
				p = p[l:]
			}
			ch.Values[j] = val
		}
		vals = vals[k:]
	}
	if len(p) < 2 {
		return nil, false
	}
	b.Consistency = primitive.ConsistencyLevel(binary.BigEndian.Uint16(p))
	p = p[2:]
	// v3 and v4 have one byte of flags, v5 four.
	var flags primitive.QueryFlag
	if v >= primitive.ProtocolVersion5 {
		if len(p) < 4 {
			return nil, false
		}
		flags = primitive.QueryFlag(int32(binary.BigEndian.Uint32(p)))
		p = p[4:]
	} else {
		if len(p) < 1 {
			return nil, false
		}
		flags = primitive.QueryFlag(p[0])
		p = p[1:]
	}
	if flags.Contains(primitive.QueryFlagValueNames) {
		return nil, false
	}
	if flags.Contains(primitive.QueryFlagSerialConsistency) {
		if len(p) < 2 {
			return nil, false
		}
		sc := primitive.ConsistencyLevel(binary.BigEndian.Uint16(p))
		b.SerialConsistency = &sc
		p = p[2:]
	}
	if flags.Contains(primitive.QueryFlagDefaultTimestamp) {
		if len(p) < 8 {
			return nil, false
		}
		ts := int64(binary.BigEndian.Uint64(p))
		b.DefaultTimestamp = &ts
		p = p[8:]
	}
	if v >= primitive.ProtocolVersion5 && flags.Contains(primitive.QueryFlagWithKeyspace) {
		if len(p) < 2 {
			return nil, false
		}
		l := int(binary.BigEndian.Uint16(p))
		if len(p) < 2+l {
			return nil, false
		}
		b.Keyspace = string(p[2 : 2+l])
		p = p[2+l:]
	}
	if v >= primitive.ProtocolVersion5 && flags.Contains(primitive.QueryFlagNowInSeconds) {
		if len(p) < 4 {
			return nil, false
		}
		now := int32(binary.BigEndian.Uint32(p))
		b.NowInSeconds = &now
	}
	return b, true
}

// skipChildHead skips a batch child's kind and its query string or prepared
// id.
func skipChildHead(p []byte) ([]byte, bool) {
	if len(p) < 1 {
		return nil, false
	}
	switch primitive.BatchChildType(p[0]) {
	case primitive.BatchChildTypeQueryString:
		if len(p) < 5 {
			return nil, false
		}
		l := int32(binary.BigEndian.Uint32(p[1:]))
		if l < 0 || int64(l) > int64(len(p)-5) {
			return nil, false
		}
		return p[5+l:], true
	case primitive.BatchChildTypePreparedId:
		if len(p) < 3 {
			return nil, false
		}
		l := int(binary.BigEndian.Uint16(p[1:]))
		if l > len(p)-3 {
			return nil, false
		}
		return p[3+l:], true
	}
	return nil, false
}
