package pulsartest

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/demandpipe/demandpipe/internal/leakcheck"
)

// TestMain checks that nothing leaks across the whole package: the
// server's goroutines and the Go client's, since every test closes its
// clients. The client goroutines that v0.21.0 lets outlive Close for a
// bounded time are exempt (leakcheck.PulsarClient says which and why).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leakcheck.PulsarClient...)
}
