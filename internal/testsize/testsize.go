// Package testsize sets how much work the project's long tests do.
//
// The README's test command (`go test -race ./...`, what .ci/run runs)
// runs every test in its short form: inputs sized so that the whole suite
// fits in 5 minutes on 2 cores. The same tests at full size, the "long
// set", run with DEMANDPIPE_TEST_LONG=1:
//
//	DEMANDPIPE_TEST_LONG=1 go test -timeout 60m ./...
//
// A long test calls Pick(short, long) for its sizes, so both forms run the
// same code and the same assertions; docs/TESTING.md lists the tests whose
// short form is smaller than their long one.
//
// Randomised tests take their seed from Seed, which logs it, so that a
// failure is reproduced with DEMANDPIPE_TEST_SEED=<seed>.
package testsize

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// Long reports whether the long set runs at full size
// (DEMANDPIPE_TEST_LONG=1, or true).
func Long() bool {
	v, _ := strconv.ParseBool(os.Getenv("DEMANDPIPE_TEST_LONG"))
	return v
}

// Pick returns long in the long set and short otherwise.
func Pick[T any](short, long T) T {
	if Long() {
		return long
	}
	return short
}

// Seed returns DEMANDPIPE_TEST_SEED if it is set, else a seed from the
// clock, and logs it with the command line that reproduces the run.
func Seed(t testing.TB) uint64 {
	t.Helper()
	if s := os.Getenv("DEMANDPIPE_TEST_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("DEMANDPIPE_TEST_SEED=%q: want an unsigned integer", s)
		}
		t.Logf("seed %d (from DEMANDPIPE_TEST_SEED)", v)
		return v
	}
	v := uint64(time.Now().UnixNano())
	t.Logf("seed %d (reproduce: DEMANDPIPE_TEST_SEED=%d go test -run '^%s$')", v, v, t.Name())
	return v
}
