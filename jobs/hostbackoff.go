package jobs

import (
	"sync"
	"time"
)

// Bounds of hostBackoff.
const (
	// hostBackoffBase is the first wait after a receiver host timed out
	// or could not be reached; each further failure doubles it, up to
	// hostBackoffCap.
	hostBackoffBase = time.Second
	hostBackoffCap  = time.Minute
	// hostBackoffProbeWait is how long a delivery waits while another
	// one tries the host again after its wait.
	hostBackoffProbeWait = time.Second
	// maxBackoffHosts bounds how many hosts are remembered.
	maxBackoffHosts = 1024
)

// hostBackoff remembers, in one process, the receiver hosts that timed
// out or could not be reached (keyed by the caller: the worker keys them
// by tenant and host), so that deliveries to a dead host wait (a
// snooze, which uses no attempt) instead of each holding a worker slot of
// its tenant until CALLBACK_TIMEOUT_SECONDS. After the wait one delivery
// tries the host again while the others keep waiting; it succeeding
// forgets the host, it failing doubles the wait.
type hostBackoff struct {
	mu    sync.Mutex
	hosts map[string]*hostState
}

type hostState struct {
	failures int
	until    time.Time // deliveries wait until then
	probing  bool      // a delivery is trying the host again
}

func newHostBackoff() *hostBackoff { return &hostBackoff{hosts: make(map[string]*hostState)} }

// wait is how long a delivery to host should wait before trying: 0 to go
// now. A delivery told to go must report how it went with done.
func (b *hostBackoff) wait(host string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	h, ok := b.hosts[host]
	switch {
	case !ok:
		return 0
	case now.Before(h.until):
		return h.until.Sub(now)
	case now.Sub(h.until) > hostBackoffCap:
		// Long quiet, or a probe that never reported (its worker died):
		// forgotten, so the host is never held for good.
		delete(b.hosts, host)
		return 0
	case h.probing:
		return hostBackoffProbeWait
	}
	h.probing = true
	return 0
}

// done reports a delivery to host: unreachable when it timed out or could
// not connect, which makes later deliveries wait; any answer forgets it.
func (b *hostBackoff) done(host string, unreachable bool, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !unreachable {
		delete(b.hosts, host)
		return
	}
	h, ok := b.hosts[host]
	switch {
	case !ok:
		if len(b.hosts) >= maxBackoffHosts {
			b.evict(now)
		}
		h = &hostState{}
		b.hosts[host] = h
	case now.Before(h.until) && !h.probing:
		// One that was under way when another failed first: the wait
		// already holds.
		return
	}
	h.failures++
	d := hostBackoffCap
	if h.failures <= 7 {
		d = min(hostBackoffBase<<(h.failures-1), hostBackoffCap)
	}
	h.until, h.probing = now.Add(d), false
}

// evict makes room: it drops the hosts whose wait is over, or else one
// of them all.
func (b *hostBackoff) evict(now time.Time) {
	for host, h := range b.hosts {
		if !now.Before(h.until) && !h.probing {
			delete(b.hosts, host)
		}
	}
	if len(b.hosts) < maxBackoffHosts {
		return
	}
	for host := range b.hosts {
		delete(b.hosts, host)
		return
	}
}

// len is how many hosts are remembered.
func (b *hostBackoff) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.hosts)
}
