package pulsartest

// Hand-written protobuf for the subset of PulsarApi.proto the test double
// speaks. Field numbers are the real ones from PulsarApi.proto (proto2); only
// the fields this package reads or writes are listed. Encoding goes through
// protowire so there is no generated code and no dependency on the client's
// internal package.
//
// The Go client unmarshals with proto.Unmarshal, which rejects proto2
// messages with a missing required field: every encoder below writes all
// required fields of its message even when the value is zero.

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// cmdType is BaseCommand.Type. In BaseCommand the field number of each
// command's body equals its type value, which the codec relies on.
type cmdType int32

const (
	cmdConnect                     cmdType = 2
	cmdConnected                   cmdType = 3
	cmdSubscribe                   cmdType = 4
	cmdProducer                    cmdType = 5
	cmdSend                        cmdType = 6
	cmdSendReceipt                 cmdType = 7
	cmdSendError                   cmdType = 8
	cmdMessage                     cmdType = 9
	cmdAck                         cmdType = 10
	cmdFlow                        cmdType = 11
	cmdUnsubscribe                 cmdType = 12
	cmdSuccess                     cmdType = 13
	cmdError                       cmdType = 14
	cmdCloseProducer               cmdType = 15
	cmdCloseConsumer               cmdType = 16
	cmdProducerSuccess             cmdType = 17
	cmdPing                        cmdType = 18
	cmdPong                        cmdType = 19
	cmdRedeliverUnacked            cmdType = 20
	cmdPartitionedMetadata         cmdType = 21
	cmdPartitionedMetadataResponse cmdType = 22
	cmdLookup                      cmdType = 23
	cmdLookupResponse              cmdType = 24
	cmdConsumerStats               cmdType = 25
	cmdConsumerStatsResponse       cmdType = 26
	cmdSeek                        cmdType = 28
	cmdGetLastMessageID            cmdType = 29
	cmdGetLastMessageIDResponse    cmdType = 30
	cmdActiveConsumerChange        cmdType = 31
	cmdGetTopicsOfNamespace        cmdType = 32
	cmdGetTopicsOfNamespaceResp    cmdType = 33
	cmdGetSchema                   cmdType = 34
	cmdGetSchemaResponse           cmdType = 35
	cmdAuthResponse                cmdType = 37
	cmdAckResponse                 cmdType = 38
	cmdGetOrCreateSchema           cmdType = 39
	cmdGetOrCreateSchemaResponse   cmdType = 40
)

// serverError is the ServerError enum (only the values used here).
type serverError int32

const (
	errUnknown            serverError = 0
	errAuthentication     serverError = 3
	errServiceNotReady    serverError = 6
	errChecksum           serverError = 9
	errTopicNotFound      serverError = 11
	errSubscriptionNotFnd serverError = 12
	errConsumerNotFound   serverError = 13
	errConsumerBusy       serverError = 5
	errProducerBusy       serverError = 16
	errInvalidTopicName   serverError = 17
	errConsumerAssign     serverError = 19
	errNotAllowed         serverError = 22
)

// Subscription types (CommandSubscribe.SubType).
type subType int32

const (
	subExclusive subType = 0
	subShared    subType = 1
	subFailover  subType = 2
	subKeyShared subType = 3
)

func (t subType) String() string {
	switch t {
	case subExclusive:
		return "Exclusive"
	case subShared:
		return "Shared"
	case subFailover:
		return "Failover"
	case subKeyShared:
		return "Key_Shared"
	}
	return fmt.Sprintf("SubType(%d)", int32(t))
}

var errProto = errors.New("pulsartest: malformed protobuf")

// field is one decoded protobuf field: u holds varint and fixed values, b
// holds length-delimited bytes (aliasing the input).
type field struct {
	num protowire.Number
	typ protowire.Type
	u   uint64
	b   []byte
}

// walk calls fn for each field of the message in b. Unknown fields are
// passed through so callers can ignore them; malformed input is an error,
// never a panic.
func walk(b []byte, fn func(f field) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errProto
		}
		b = b[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.u, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			f.u = uint64(v)
		case protowire.Fixed64Type:
			f.u, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return errProto
		}
		b = b[n:]
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// Encoding helpers. Proto2 int32 values are sign-extended to 64 bits on the
// wire, so negative int32 (e.g. partition -1) take ten bytes, as in Java.

func putU64(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func putI32(b []byte, num protowire.Number, v int32) []byte {
	return putU64(b, num, uint64(int64(v)))
}

func putBool(b []byte, num protowire.Number, v bool) []byte {
	return putU64(b, num, protowire.EncodeBool(v))
}

func putBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func putString(b []byte, num protowire.Number, v string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, v)
}

// appendBase wraps a command body into a BaseCommand.
func appendBase(dst []byte, t cmdType, body []byte) []byte {
	dst = putU64(dst, 1, uint64(t))
	return putBytes(dst, protowire.Number(t), body)
}

// decodeBase splits a BaseCommand into its type and the body of that type.
func decodeBase(b []byte) (cmdType, []byte, error) {
	var t cmdType
	var haveType bool
	bodies := map[protowire.Number][]byte(nil)
	err := walk(b, func(f field) error {
		switch {
		case f.num == 1 && f.typ == protowire.VarintType:
			t, haveType = cmdType(int32(f.u)), true
		case f.typ == protowire.BytesType:
			if bodies == nil {
				bodies = make(map[protowire.Number][]byte, 1)
			}
			bodies[f.num] = f.b
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	if !haveType {
		return 0, nil, fmt.Errorf("%w: BaseCommand without type", errProto)
	}
	return t, bodies[protowire.Number(t)], nil
}

// msgID is MessageIdData. Ledger and entry are signed because clients use -1
// ("earliest") and math.MaxInt64 ("latest") as sentinels on uint64 fields.
type msgID struct {
	ledger, entry int64
	partition     int32
	batchIndex    int32
	batchSize     int32
	ackSet        []int64
}

func decodeMsgID(b []byte) (msgID, error) {
	id := msgID{partition: -1, batchIndex: -1}
	err := walk(b, func(f field) error {
		switch f.num {
		case 1:
			id.ledger = int64(f.u)
		case 2:
			id.entry = int64(f.u)
		case 3:
			id.partition = int32(f.u)
		case 4:
			id.batchIndex = int32(f.u)
		case 5:
			if f.typ == protowire.BytesType { // packed
				for p := f.b; len(p) > 0; {
					v, n := protowire.ConsumeVarint(p)
					if n < 0 {
						return errProto
					}
					id.ackSet = append(id.ackSet, int64(v))
					p = p[n:]
				}
			} else {
				id.ackSet = append(id.ackSet, int64(f.u))
			}
		case 6:
			id.batchSize = int32(f.u)
		}
		return nil
	})
	return id, err
}

func appendMsgID(b []byte, ledger, entry int64, batchIndex int32) []byte {
	b = putU64(b, 1, uint64(ledger))
	b = putU64(b, 2, uint64(entry))
	if batchIndex >= 0 {
		b = putI32(b, 4, batchIndex)
	}
	return b
}

// --- commands from clients ---

type connectCmd struct {
	clientVersion   string
	authMethodName  string
	authData        []byte // aliases the frame
	protocolVersion int32
}

func decodeConnect(b []byte) (c connectCmd, err error) {
	err = walk(b, func(f field) error {
		switch f.num {
		case 1:
			c.clientVersion = string(f.b)
		case 3:
			c.authData = f.b
		case 4:
			c.protocolVersion = int32(f.u)
		case 5:
			c.authMethodName = string(f.b)
		}
		return nil
	})
	return
}

// topicReq covers LOOKUP and PARTITIONED_METADATA: topic = 1, request_id = 2.
type topicReq struct {
	topic     string
	requestID uint64
}

func decodeTopicReq(b []byte) (r topicReq, err error) {
	err = walk(b, func(f field) error {
		switch f.num {
		case 1:
			r.topic = string(f.b)
		case 2:
			r.requestID = f.u
		}
		return nil
	})
	return
}

type producerCmd struct {
	topic        string
	producerID   uint64
	requestID    uint64
	producerName string
}

func decodeProducer(b []byte) (c producerCmd, err error) {
	err = walk(b, func(f field) error {
		switch f.num {
		case 1:
			c.topic = string(f.b)
		case 2:
			c.producerID = f.u
		case 3:
			c.requestID = f.u
		case 4:
			c.producerName = string(f.b)
		}
		return nil
	})
	return
}

type sendCmd struct {
	producerID        uint64
	sequenceID        uint64
	numMessages       int32
	highestSequenceID uint64
}

func decodeSend(b []byte) (c sendCmd, err error) {
	c.numMessages = 1
	err = walk(b, func(f field) error {
		switch f.num {
		case 1:
			c.producerID = f.u
		case 2:
			c.sequenceID = f.u
		case 3:
			c.numMessages = int32(f.u)
		case 6:
			c.highestSequenceID = f.u
		}
		return nil
	})
	return
}

type hashRange struct{ start, end int32 } // inclusive, like IntRange

type subscribeCmd struct {
	topic           string
	subscription    string
	subType         subType
	consumerID      uint64
	requestID       uint64
	consumerName    string
	durable         bool
	startMessageID  *msgID
	initialEarliest bool
	keySharedSticky bool
	hashRanges      []hashRange
}

func decodeSubscribe(b []byte) (c subscribeCmd, err error) {
	c.durable = true
	err = walk(b, func(f field) error {
		switch f.num {
		case 1:
			c.topic = string(f.b)
		case 2:
			c.subscription = string(f.b)
		case 3:
			c.subType = subType(int32(f.u))
		case 4:
			c.consumerID = f.u
		case 5:
			c.requestID = f.u
		case 6:
			c.consumerName = string(f.b)
		case 8:
			c.durable = f.u != 0
		case 9:
			id, err := decodeMsgID(f.b)
			if err != nil {
				return err
			}
			c.startMessageID = &id
		case 13:
			c.initialEarliest = f.u == 1
		case 17:
			return walk(f.b, func(g field) error {
				switch g.num {
				case 1:
					c.keySharedSticky = g.u == 1
				case 3:
					var r hashRange
					if err := walk(g.b, func(h field) error {
						switch h.num {
						case 1:
							r.start = int32(h.u)
						case 2:
							r.end = int32(h.u)
						}
						return nil
					}); err != nil {
						return err
					}
					c.hashRanges = append(c.hashRanges, r)
				}
				return nil
			})
		}
		return nil
	})
	return
}

type flowCmd struct {
	consumerID uint64
	permits    uint32
}

func decodeFlow(b []byte) (c flowCmd, err error) {
	err = walk(b, func(f field) error {
		switch f.num {
		case 1:
			c.consumerID = f.u
		case 2:
			c.permits = uint32(f.u)
		}
		return nil
	})
	return
}

type ackCmd struct {
	consumerID    uint64
	cumulative    bool
	ids           []msgID
	requestID     uint64
	haveRequestID bool
}

func decodeAck(b []byte) (c ackCmd, err error) {
	err = walk(b, func(f field) error {
		switch f.num {
		case 1:
			c.consumerID = f.u
		case 2:
			c.cumulative = f.u == 1
		case 3:
			id, err := decodeMsgID(f.b)
			if err != nil {
				return err
			}
			c.ids = append(c.ids, id)
		case 8:
			c.requestID, c.haveRequestID = f.u, true
		}
		return nil
	})
	return
}

// consumerReq covers UNSUBSCRIBE, CLOSE_CONSUMER, GET_LAST_MESSAGE_ID and
// CLOSE_PRODUCER: id = 1, request_id = 2.
type consumerReq struct {
	id        uint64
	requestID uint64
}

func decodeConsumerReq(b []byte) (c consumerReq, err error) {
	err = walk(b, func(f field) error {
		switch f.num {
		case 1:
			c.id = f.u
		case 2:
			c.requestID = f.u
		}
		return nil
	})
	return
}

type seekCmd struct {
	consumerID  uint64
	requestID   uint64
	id          *msgID
	publishTime uint64
	haveTime    bool
}

func decodeSeek(b []byte) (c seekCmd, err error) {
	err = walk(b, func(f field) error {
		switch f.num {
		case 1:
			c.consumerID = f.u
		case 2:
			c.requestID = f.u
		case 3:
			id, err := decodeMsgID(f.b)
			if err != nil {
				return err
			}
			c.id = &id
		case 4:
			c.publishTime, c.haveTime = f.u, true
		}
		return nil
	})
	return
}

type redeliverCmd struct {
	consumerID uint64
	ids        []msgID
}

func decodeRedeliver(b []byte) (c redeliverCmd, err error) {
	err = walk(b, func(f field) error {
		switch f.num {
		case 1:
			c.consumerID = f.u
		case 2:
			id, err := decodeMsgID(f.b)
			if err != nil {
				return err
			}
			c.ids = append(c.ids, id)
		}
		return nil
	})
	return
}

// decodeRequestID reads request_id from commands the double does not
// implement but must answer (they all carry it as field 1).
func decodeRequestID(b []byte) (id uint64, err error) {
	err = walk(b, func(f field) error {
		if f.num == 1 && f.typ == protowire.VarintType {
			id = f.u
		}
		return nil
	})
	return
}

type namespaceReq struct {
	requestID uint64
	namespace string
}

func decodeNamespaceReq(b []byte) (c namespaceReq, err error) {
	err = walk(b, func(f field) error {
		switch f.num {
		case 1:
			c.requestID = f.u
		case 2:
			c.namespace = string(f.b)
		}
		return nil
	})
	return
}

// msgMeta is the part of MessageMetadata the broker needs: the publish time
// for seek-by-time, the batch size for permits and batch indexes, and the
// keys for Key_Shared routing.
type msgMeta struct {
	producerName     string
	sequenceID       uint64
	publishTime      uint64
	partitionKey     string
	partitionKeyB64  bool
	orderingKey      []byte
	numMessages      int32
	haveNumMessages  bool
	numChunksFromMsg int32
}

func decodeMsgMeta(b []byte) (m msgMeta, err error) {
	m.numMessages = 1
	err = walk(b, func(f field) error {
		switch f.num {
		case 1:
			m.producerName = string(f.b)
		case 2:
			m.sequenceID = f.u
		case 3:
			m.publishTime = f.u
		case 6:
			m.partitionKey = string(f.b)
		case 11:
			m.numMessages, m.haveNumMessages = int32(f.u), true
		case 17:
			m.partitionKeyB64 = f.u != 0
		case 18:
			m.orderingKey = f.b
		case 27:
			m.numChunksFromMsg = int32(f.u)
		}
		return nil
	})
	return
}

// --- commands to clients ---

func encConnected(serverVersion string, protocolVersion, maxMessageSize int32) []byte {
	var b []byte
	b = putString(b, 1, serverVersion)
	b = putI32(b, 2, protocolVersion)
	b = putI32(b, 3, maxMessageSize)
	return appendBase(nil, cmdConnected, b)
}

func encSuccess(requestID uint64) []byte {
	return appendBase(nil, cmdSuccess, putU64(nil, 1, requestID))
}

func encError(requestID uint64, code serverError, msg string) []byte {
	var b []byte
	b = putU64(b, 1, requestID)
	b = putU64(b, 2, uint64(code))
	b = putString(b, 3, msg)
	return appendBase(nil, cmdError, b)
}

func encProducerSuccess(requestID uint64, name string) []byte {
	var b []byte
	b = putU64(b, 1, requestID)
	b = putString(b, 2, name)
	b = putU64(b, 3, math.MaxUint64) // last_sequence_id = -1: no dedup state
	b = putBool(b, 6, true)          // producer_ready
	return appendBase(nil, cmdProducerSuccess, b)
}

func encSendReceipt(producerID, sequenceID, highestSequenceID uint64, ledger, entry int64) []byte {
	var b []byte
	b = putU64(b, 1, producerID)
	b = putU64(b, 2, sequenceID)
	b = putBytes(b, 3, appendMsgID(nil, ledger, entry, -1))
	if highestSequenceID != 0 {
		b = putU64(b, 4, highestSequenceID)
	}
	return appendBase(nil, cmdSendReceipt, b)
}

func encSendError(producerID, sequenceID uint64, code serverError, msg string) []byte {
	var b []byte
	b = putU64(b, 1, producerID)
	b = putU64(b, 2, sequenceID)
	b = putU64(b, 3, uint64(code))
	b = putString(b, 4, msg)
	return appendBase(nil, cmdSendError, b)
}

func encMessage(consumerID uint64, ledger, entry int64, redeliveryCount uint32) []byte {
	var b []byte
	b = putU64(b, 1, consumerID)
	b = putBytes(b, 2, appendMsgID(nil, ledger, entry, -1))
	if redeliveryCount > 0 {
		b = putU64(b, 3, uint64(redeliveryCount))
	}
	return appendBase(nil, cmdMessage, b)
}

// encLookupResponse answers "connect to brokerURL"; a pulsar+ssl:// URL
// goes in brokerServiceUrlTls, which TLS clients read.
func encLookupResponse(requestID uint64, brokerURL string) []byte {
	var b []byte
	if strings.HasPrefix(brokerURL, "pulsar+ssl://") {
		b = putString(b, 2, brokerURL)
	} else {
		b = putString(b, 1, brokerURL)
	}
	b = putU64(b, 3, 1) // LookupType Connect
	b = putU64(b, 4, requestID)
	b = putBool(b, 5, true) // authoritative
	return appendBase(nil, cmdLookupResponse, b)
}

func encLookupError(requestID uint64, code serverError, msg string) []byte {
	var b []byte
	b = putU64(b, 3, 2) // Failed
	b = putU64(b, 4, requestID)
	b = putU64(b, 6, uint64(code))
	b = putString(b, 7, msg)
	return appendBase(nil, cmdLookupResponse, b)
}

func encPartitionedMetadataResponse(requestID uint64, partitions uint32) []byte {
	var b []byte
	b = putU64(b, 1, uint64(partitions))
	b = putU64(b, 2, requestID)
	b = putU64(b, 3, 0) // Success
	return appendBase(nil, cmdPartitionedMetadataResponse, b)
}

func encPing() []byte { return appendBase(nil, cmdPing, nil) }
func encPong() []byte { return appendBase(nil, cmdPong, nil) }

func encCloseConsumer(consumerID, requestID uint64) []byte {
	var b []byte
	b = putU64(b, 1, consumerID)
	b = putU64(b, 2, requestID)
	return appendBase(nil, cmdCloseConsumer, b)
}

func encCloseProducer(producerID, requestID uint64) []byte {
	var b []byte
	b = putU64(b, 1, producerID)
	b = putU64(b, 2, requestID)
	return appendBase(nil, cmdCloseProducer, b)
}

func encGetLastMessageIDResponse(requestID uint64, ledger, entry int64, batchIndex int32, mdLedger, mdEntry int64) []byte {
	var b []byte
	b = putBytes(b, 1, appendMsgID(nil, ledger, entry, batchIndex))
	b = putU64(b, 2, requestID)
	b = putBytes(b, 3, appendMsgID(nil, mdLedger, mdEntry, -1))
	return appendBase(nil, cmdGetLastMessageIDResponse, b)
}

func encAckResponse(consumerID, requestID uint64) []byte {
	var b []byte
	b = putU64(b, 1, consumerID)
	b = putU64(b, 6, requestID)
	return appendBase(nil, cmdAckResponse, b)
}

func encActiveConsumerChange(consumerID uint64, active bool) []byte {
	var b []byte
	b = putU64(b, 1, consumerID)
	b = putBool(b, 2, active)
	return appendBase(nil, cmdActiveConsumerChange, b)
}

func encTopicsOfNamespace(requestID uint64, topics []string) []byte {
	var b []byte
	b = putU64(b, 1, requestID)
	for _, t := range topics {
		b = putString(b, 2, t)
	}
	return appendBase(nil, cmdGetTopicsOfNamespaceResp, b)
}
