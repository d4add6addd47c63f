//go:build integration

package main

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// The Pulsar tests against a real Pulsar instead of the test double:
//
//	DEMANDPIPE_PULSAR=pulsar://localhost:6650 go test -tags integration -run Integration ./cmd/demandpipe/
//
// (e.g. docker run -p 6650:6650 apachepulsar/pulsar bin/pulsar standalone).
// Each run uses fresh topics in public/default; skipped when
// DEMANDPIPE_PULSAR is unset.

func realPulsar(t *testing.T) (url, topic string) {
	url = os.Getenv("DEMANDPIPE_PULSAR")
	if url == "" {
		t.Skip("DEMANDPIPE_PULSAR is unset: set it to a Pulsar service URL, e.g. pulsar://localhost:6650")
	}
	return url, fmt.Sprintf("%s-%d", pulsarTopic(t), time.Now().UnixNano())
}

func TestIntegrationPulsarRunEqualsFile(t *testing.T) {
	url, topic := realPulsar(t)
	testRunEqualsFile(t, url, topic)
}

func TestIntegrationPulsarDeadLetter(t *testing.T) {
	url, topic := realPulsar(t)
	testDeadLetter(t, url, topic)
}

// TestIntegrationRolesEqualOneProcess: the scale-out roles (2 dedup and 3
// aggregate processes, sticky Key_Shared ranges) against a real broker.
func TestIntegrationRolesEqualOneProcess(t *testing.T) {
	url, topic := realPulsar(t)
	testRoles(t, url, topic, 2)
}
