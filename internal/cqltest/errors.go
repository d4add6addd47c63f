package cqltest

import (
	"errors"
	"fmt"
	"net"

	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// errCode picks the protocol ERROR a request failure becomes.
type errCode uint8

const (
	codeInvalid errCode = iota
	codeConfig
	codeAlreadyExists
	codeUnprepared
	codeProtocol
	codeServer
	codeUnavailable
	codeReadFailure
)

// reqError is a request failure that is answered with an ERROR message; the
// connection stays usable.
type reqError struct {
	code      errCode
	msg       string
	ks, table string // AlreadyExists
	id        []byte // Unprepared
	// Unavailable: the level asked for and the replicas it needs and has.
	cl              primitive.ConsistencyLevel
	required, alive int32
}

func (e *reqError) Error() string { return e.msg }

func invalidf(format string, args ...any) error {
	return &reqError{code: codeInvalid, msg: fmt.Sprintf(format, args...)}
}

// errorMessage converts an execution error to the protocol ERROR message.
func errorMessage(err error) message.Message {
	var se *syntaxError
	if errors.As(err, &se) {
		return &message.SyntaxError{ErrorMessage: se.msg}
	}
	var re *reqError
	if !errors.As(err, &re) {
		return &message.ServerError{ErrorMessage: err.Error()}
	}
	switch re.code {
	case codeConfig:
		return &message.ConfigError{ErrorMessage: re.msg}
	case codeAlreadyExists:
		return &message.AlreadyExists{ErrorMessage: re.msg, Keyspace: re.ks, Table: re.table}
	case codeUnprepared:
		return &message.Unprepared{ErrorMessage: re.msg, Id: re.id}
	case codeProtocol:
		return &message.ProtocolError{ErrorMessage: re.msg}
	case codeServer:
		return &message.ServerError{ErrorMessage: re.msg}
	case codeUnavailable:
		return &message.Unavailable{ErrorMessage: re.msg, Consistency: re.cl, Required: re.required, Alive: re.alive}
	case codeReadFailure:
		// One replica (this node) failed: v4 counts it, v5 names it
		// with its reason (TombstoneOverwhelmingException).
		return &message.ReadFailure{ErrorMessage: re.msg, Consistency: re.cl, Received: 0, BlockFor: 1, NumFailures: 1,
			FailureReasons: []*primitive.FailureReason{{Endpoint: net.IPv4(127, 0, 0, 1), Code: primitive.FailureCodeTooManyTombstonesRead}}}
	}
	return &message.Invalid{ErrorMessage: re.msg}
}
