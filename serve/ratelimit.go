package serve

import (
	"net/netip"
	"sync"
	"time"
)

// maxRateClients bounds the rate limiter's table: 65,536 clients of ~60
// bytes (a 24-byte key, a 16-byte bucket, the map's overhead) are ~4 MB.
// Far more clients than one feature server has; past it, under a flood
// from many addresses, the table stays at the bound (see rateLimiter).
const maxRateClients = 1 << 16

// rateSweepEvery is how often the table drops idle clients: at most a
// minute after its bucket is full again, a client's entry is released.
// A sweep of a full table is ~1 ms under the lock, once a minute.
const rateSweepEvery = time.Minute

// rateLimiter is a token bucket per client: a client may make burst
// requests at once and rate per second after that. One mutex over one
// map: a request holds it for ~50 ns, against a request's ~100 us.
//
// Its state has a size it can state: at most max entries. A client whose
// bucket has filled up again is the same as one never seen, so dropping
// it loses nothing; sweeps do that every rateSweepEvery, and whenever a
// new client finds the table full. If a sweep frees nothing (more than
// max clients active at once, a flood from many addresses), the new
// client takes the place of an arbitrary one, which starts over with a
// full bucket when it comes back: a burst more for it, memory still
// bounded.
type rateLimiter struct {
	rate, burst float64
	max         int

	mu        sync.Mutex
	clients   map[netip.Addr]bucket
	lastSweep time.Time
	fullSweep time.Time // of the last sweep forced by a full table
}

type bucket struct {
	tokens float64
	last   int64 // unix ns when tokens was computed
}

func newRateLimiter(rate float64, burst, max int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), max: max, clients: map[netip.Addr]bucket{}}
}

// allow takes a token from client's bucket; if there is none, it says how
// long until there is one.
func (l *rateLimiter) allow(client netip.Addr, now time.Time) (ok bool, wait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= rateSweepEvery {
		l.sweep(now)
	}
	t := now.UnixNano()
	b, seen := l.clients[client]
	if !seen {
		if len(l.clients) >= l.max {
			l.makeRoom(now)
		}
		b = bucket{tokens: l.burst, last: t}
	} else if d := t - b.last; d > 0 {
		b.tokens = min(l.burst, b.tokens+float64(d)/1e9*l.rate)
		b.last = t
	}
	if b.tokens >= 1 {
		b.tokens--
		l.clients[client] = b
		return true, 0
	}
	l.clients[client] = b
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// sweep drops the clients whose bucket is full by now.
func (l *rateLimiter) sweep(now time.Time) {
	l.lastSweep = now
	t := now.UnixNano()
	for c, b := range l.clients {
		if b.tokens+float64(t-b.last)/1e9*l.rate >= l.burst {
			delete(l.clients, c)
		}
	}
}

// makeRoom frees an entry of a full table: a sweep, at most once a second
// (under a flood a sweep per new client would cost O(max) each), else an
// arbitrary entry (map order is random).
func (l *rateLimiter) makeRoom(now time.Time) {
	if now.Sub(l.fullSweep) >= time.Second {
		l.fullSweep = now
		l.sweep(now)
	}
	for c := range l.clients {
		if len(l.clients) < l.max {
			return
		}
		delete(l.clients, c)
	}
}

// size is the number of clients in the table.
func (l *rateLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}
