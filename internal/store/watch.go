package store

import (
	"context"
	"sync"
	"time"
)

// logWatchInterval is how often a process looks for other processes'
// appends while any request of its own waits for work. Appends made by this
// process wake waiters at once.
const logWatchInterval = 20 * time.Millisecond

// feedBusyInterval is the least time between a read of the feed that found
// events and the next: an append of this process wakes an idle feed at
// once, but under many appends a second the feed reads batches, not single
// events, and each follower gets one write per batch.
const feedBusyInterval = 20 * time.Millisecond

// logWatcher tells long polls that the log moved, and hands live followers'
// feed (feed.go) each new read horizon. It needs no LISTEN/NOTIFY
// (which PgBouncer in transaction mode and some PostgreSQL-compatible
// databases lack) and no connection per waiter: one goroutine per process,
// running only while somebody waits, reads the read horizon.
type logWatcher struct {
	s       *Store
	mu      sync.Mutex
	changed chan struct{} // closed when the log moves, then replaced
	waiters int
	horizon int64
	running bool
	kick    chan struct{} // an append of this process, for the feed
	found   time.Time     // the feed's last read that found events; only poll uses it
}

func newLogWatcher(s *Store) *logWatcher {
	return &logWatcher{s: s, changed: make(chan struct{}), kick: make(chan struct{}, 1)}
}

// WatchLog returns a channel that is closed when events are appended after
// this call, and a release function to call when done waiting.
func (s *Store) WatchLog() (<-chan struct{}, func()) {
	w := s.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	w.addWaiterLocked()
	var once sync.Once
	return w.changed, func() { once.Do(w.removeWaiter) }
}

// addWaiter counts one more waiter (the feed counts as one while it has
// followers), starting the poll if it was stopped.
func (w *logWatcher) addWaiter() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.addWaiterLocked()
}

func (w *logWatcher) addWaiterLocked() {
	w.waiters++
	if !w.running {
		w.running = true
		go w.poll()
	}
}

func (w *logWatcher) removeWaiter() {
	w.mu.Lock()
	w.waiters--
	w.mu.Unlock()
}

// bump wakes every waiter: this process appended.
func (w *logWatcher) bump() {
	w.mu.Lock()
	defer w.mu.Unlock()
	close(w.changed)
	w.changed = make(chan struct{})
	if w.s.feed.following.Load() {
		select {
		case w.kick <- struct{}{}: // live followers: read the feed now
		default:
		}
	}
}

func (w *logWatcher) poll() {
	t := time.NewTicker(logWatchInterval)
	defer t.Stop()
	for {
		w.pace(t)
		w.mu.Lock()
		if w.waiters == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		h, err := w.s.watchHorizon(ctx)
		cancel()
		if err != nil {
			continue
		}
		w.mu.Lock()
		if h != w.horizon {
			w.horizon = h
			close(w.changed)
			w.changed = make(chan struct{})
		}
		w.mu.Unlock()
		ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		if w.s.feed.advance(ctx, h) {
			w.found = time.Now()
		}
		cancel()
	}
}

// pace waits for the next tick, or for an append of this process when live
// followers wait for it, but no less than feedBusyInterval after a read of
// the feed that found events.
func (w *logWatcher) pace(t *time.Ticker) {
	select {
	case <-t.C:
	case <-w.kick:
	}
	if wait := time.Until(w.found.Add(feedBusyInterval)); wait > 0 {
		time.Sleep(wait)
	}
}
