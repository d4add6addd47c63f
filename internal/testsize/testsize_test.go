package testsize

import "testing"

func TestPick(t *testing.T) {
	t.Setenv("DEMANDPIPE_TEST_LONG", "")
	if Long() || Pick(1, 2) != 1 {
		t.Fatal("short form: want the short size")
	}
	t.Setenv("DEMANDPIPE_TEST_LONG", "1")
	if !Long() || Pick(1, 2) != 2 {
		t.Fatal("DEMANDPIPE_TEST_LONG=1: want the long size")
	}
}

func TestSeed(t *testing.T) {
	t.Setenv("DEMANDPIPE_TEST_SEED", "42")
	if s := Seed(t); s != 42 {
		t.Fatalf("seed %d, want 42 from the environment", s)
	}
	t.Setenv("DEMANDPIPE_TEST_SEED", "")
	if a, b := Seed(t), Seed(t); a == b {
		t.Fatalf("two clock seeds equal: %d", a)
	}
}
