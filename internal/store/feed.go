package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// The feed is the process's one reader of new events for every live
// follower. While any follower is registered, the log watcher hands it each
// read horizon it sees; the feed reads the events committed since its last
// read, below that horizon (so none committing late is passed over), encodes
// each once, and queues it for the followers whose filter selects it. A
// thousand followers cost one read per new batch of events, not a thousand,
// and none holds a database connection while it waits.

// Bounds of the feed.
const (
	// feedPage is the most events one read of the feed takes.
	feedPage = 1000
	// MaxBehind is how many new events may wait for one follower before it
	// is ended with ErrFellBehind: its queue is the only memory a slow
	// client costs, and it never blocks the feed.
	MaxBehind = 10000
)

// ErrFellBehind ends a follower that let more than MaxBehind new events
// wait for it. Follow again from the last offset it handed out.
var ErrFellBehind = errors.New("the follower fell too far behind the log")

// feedEvent is a new event as every follower of the process shares it.
type feedEvent struct {
	Event
	json     []byte
	dataOnce sync.Once
	data     any
	dataOK   bool
}

// parsedData returns the event's data parsed for JSON containment, parsing
// it on first use only: only query followers with matches need it.
func (e *feedEvent) parsedData() (any, bool) {
	e.dataOnce.Do(func() {
		v, err := parseJSON(e.Data)
		e.data, e.dataOK = v, err == nil
	})
	return e.data, e.dataOK
}

// subscription is one follower registered with the feed.
type subscription struct {
	filter *liveFilter
	notify chan struct{} // capacity 1: "the queue is not empty, or behind"
	// mu guards the queue, so that a thousand followers taking theirs do
	// not wait for each other; the feed takes it under its own.
	mu     sync.Mutex
	queue  []*feedEvent
	behind bool
}

type feed struct {
	s    *Store
	mu   sync.Mutex
	subs map[*subscription]struct{}
	// pos: every event at or below it was queued for the followers
	// registered at the time. Meaningful only while subs is not empty.
	pos int64
	// gen changes whenever the feed starts anew, so that a read begun for
	// an earlier generation is dropped.
	gen uint64
	// following: subs is not empty; read without f.mu by appends.
	following atomic.Bool
}

func newFeed(s *Store) *feed {
	return &feed{s: s, subs: map[*subscription]struct{}{}}
}

// register adds sub and returns the feed's position: sub is queued every
// selected event above it. safe is a read horizon minus one that the caller
// read everything up to; it starts a feed that has no followers.
func (f *feed) register(sub *subscription, safe int64) int64 {
	f.mu.Lock()
	first := len(f.subs) == 0
	if first {
		f.pos = safe
		f.gen++
	}
	f.subs[sub] = struct{}{}
	if first {
		// The feed waits like a long poll: the watcher polls while it has
		// followers. Lock order: f.mu, then the watcher's.
		f.s.watch.addWaiter()
		f.following.Store(true)
	}
	pos := f.pos
	f.mu.Unlock()
	return pos
}

// unregister removes sub, if it is still registered.
func (f *feed) unregister(sub *subscription) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drop(sub)
}

// drop forgets sub and its queue, and stops the feed's polling with its
// last follower; f.mu is held.
func (f *feed) drop(sub *subscription) {
	if _, ok := f.subs[sub]; !ok {
		return
	}
	delete(f.subs, sub)
	sub.mu.Lock()
	sub.queue = nil
	sub.mu.Unlock()
	if len(f.subs) == 0 {
		f.following.Store(false)
		f.s.watch.removeWaiter()
	}
}

// isBehind reports whether sub was dropped for falling behind.
func (f *feed) isBehind(sub *subscription) bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.behind
}

// take returns sub's queued events and empties its queue; ErrFellBehind
// once it was dropped for falling behind.
func (f *feed) take(sub *subscription, into []*feedEvent) ([]*feedEvent, error) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.behind {
		return into, ErrFellBehind
	}
	into = append(into, sub.queue...)
	clear(sub.queue) // let the events go once every follower wrote them
	if cap(sub.queue) > keptCap {
		sub.queue = nil // a burst's room: not kept by a thousand idle followers
	} else {
		sub.queue = sub.queue[:0]
	}
	return into, nil
}

// advance reads what committed below horizon h since the feed's position
// and queues it for the followers; it reports whether it found events.
// Only the watcher calls it, one call at a time. A failed read is left for
// the next horizon.
func (f *feed) advance(ctx context.Context, h int64) (found bool) {
	for {
		f.mu.Lock()
		from, gen, active := f.pos, f.gen, len(f.subs) > 0
		f.mu.Unlock()
		if !active || from >= h-1 {
			return found
		}
		evs, err := f.s.readRange(ctx, nil, from, h, feedPage)
		if err != nil {
			return found
		}
		found = found || len(evs) > 0
		next := h - 1
		if len(evs) == feedPage {
			next = evs[len(evs)-1].Offset
		}
		batch := encodeBatch(evs)
		f.mu.Lock()
		if f.gen == gen && f.pos == from {
			f.fanOut(batch)
			f.pos = next
		}
		f.mu.Unlock()
	}
}

// fanOut queues batch for every follower whose filter selects its events,
// and ends (without waiting for it) any that would fall more than MaxBehind
// behind; f.mu is held.
func (f *feed) fanOut(batch []*feedEvent) {
	for sub := range f.subs {
		sub.mu.Lock()
		n := len(sub.queue)
		for _, e := range batch {
			if sub.filter.selects(e) {
				sub.queue = append(sub.queue, e)
			}
		}
		added, behind := len(sub.queue) > n, len(sub.queue) > MaxBehind
		if behind {
			sub.behind = true
		}
		sub.mu.Unlock()
		if !added {
			continue
		}
		if behind {
			f.drop(sub)
		}
		select {
		case sub.notify <- struct{}{}:
		default:
		}
	}
}

// encodeBatch encodes each event once, for all followers.
func encodeBatch(evs []Event) []*feedEvent {
	out := make([]*feedEvent, len(evs))
	size := 0
	for i := range evs {
		size += 320 + len(evs[i].Data)
	}
	buf := make([]byte, 0, size)
	for i := range evs {
		start := len(buf)
		buf = evs[i].AppendJSON(buf)
		out[i] = &feedEvent{Event: evs[i], json: buf[start:len(buf):len(buf)]}
	}
	return out
}
