package cqltest

import (
	"strings"

	"github.com/datastax/go-cassandra-native-protocol/frame"
	"github.com/datastax/go-cassandra-native-protocol/message"
)

// The handshake: OPTIONS is answered with SUPPORTED (CQL version, protocol
// versions, compression names in lower case as Cassandra sends them); STARTUP
// picks the compression and is answered with an uncompressed READY, after which
// every frame in both directions may be compressed. No authentication.

func (s *Server) supported() *message.Supported {
	return &message.Supported{Options: map[string][]string{
		"CQL_VERSION":       {s.cfg.CQLVersion},
		"PROTOCOL_VERSIONS": {"3/v3", "4/v4"},
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
	if name != "" {
		bc := newBodyCodec(name, c.s.cfg.MaxFrameBytes)
		if bc == nil {
			c.protocolError(stream, "Unknown compression algorithm: "+name, false)
			return
		}
		c.zcodec = frame.NewRawCodecWithCompression(bc)
		c.zbody = bc
	} else {
		name = "none"
	}
	c.s.stats.update(func(s *Stats) { s.Compression[name]++ })
	c.respond(stream, &message.Ready{}) // before started: READY goes uncompressed
	c.started = true
}
