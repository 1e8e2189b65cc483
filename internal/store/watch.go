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

// logWatcher tells long polls that the log moved. It needs no LISTEN/NOTIFY
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
}

func newLogWatcher(s *Store) *logWatcher {
	return &logWatcher{s: s, changed: make(chan struct{})}
}

// WatchLog returns a channel that is closed when events are appended after
// this call, and a release function to call when done waiting.
func (s *Store) WatchLog() (<-chan struct{}, func()) {
	w := s.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waiters++
	if !w.running {
		w.running = true
		go w.poll()
	}
	var once sync.Once
	return w.changed, func() {
		once.Do(func() {
			w.mu.Lock()
			w.waiters--
			w.mu.Unlock()
		})
	}
}

// bump wakes every waiter: this process appended.
func (w *logWatcher) bump() {
	w.mu.Lock()
	defer w.mu.Unlock()
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *logWatcher) poll() {
	t := time.NewTicker(logWatchInterval)
	defer t.Stop()
	for range t.C {
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
	}
}
