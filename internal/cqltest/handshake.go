package cqltest

import (
	"strings"

	"github.com/datastax/go-cassandra-native-protocol/frame"
	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// The handshake: OPTIONS is answered with SUPPORTED (CQL version, protocol
// versions, compression names in lower case as Cassandra sends them); STARTUP
// picks the compression and is answered with an uncompressed READY, after which
// every frame in both directions may be compressed (v3, v4) or is carried in
// segments (v5, segment.go). No authentication.

func (s *Server) supported() *message.Supported {
	return &message.Supported{Options: map[string][]string{
		"CQL_VERSION":       {s.cfg.CQLVersion},
		"PROTOCOL_VERSIONS": {"3/v3", "4/v4", "5/v5"},
		"COMPRESSION":       append([]string(nil), supportedCompression...),
	}}
}

func (c *conn) startup(stream int16, m *message.Startup) {
	if c.started {
		c.protocolError(stream, "Unexpected message STARTUP, the connection is already initialised", false)
		return
	}
	// Cassandra lower-cases the name before looking it up, so "LZ4" works too.
	name := strings.ToLower(m.Options[message.StartupOptionCompression])
	v5 := c.version >= primitive.ProtocolVersion5
	if name != "" {
		bc := newBodyCodec(name, c.s.cfg.MaxFrameBytes)
		if bc == nil {
			c.protocolError(stream, "Unknown compression algorithm: "+name, false)
			return
		}
		if v5 && name != "lz4" {
			// transport/messages/StartupMessage.java: v5 segments are lz4
			// or uncompressed.
			c.protocolError(stream, "Snappy compression is not supported in protocol V5", false)
			return
		}
		if v5 {
			c.seg.lz4 = true
		} else {
			c.zcodec = frame.NewRawCodecWithCompression(bc)
			c.zbody = bc
		}
	} else {
		name = "none"
	}
	c.s.stats.update(func(s *Stats) { s.Compression[name]++ })
	c.respond(stream, &message.Ready{}) // before started: READY goes uncompressed
	c.started = true
}
