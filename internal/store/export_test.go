package store

// Hooks for the external tests (package store_test); compiled only in tests.

// PauseAppends replaces s's coalescer with one whose only worker starts when
// start is called, so that the single appends queued meanwhile (queued
// counts them) are stored as one group.
func PauseAppends(s *Store) (queued func() int, start func()) {
	s.appends.close()
	c := &coalescer{s: s, queue: make(chan *pendingAppend, coalescerMaxGroup), max: coalescerMaxGroup,
		quit: make(chan struct{})}
	s.appends = c
	return func() int { return len(c.queue) }, func() { c.wg.Go(c.run) }
}

// Closing reports whether s.Close has begun.
func Closing(s *Store) bool {
	s.appends.mu.RLock()
	defer s.appends.mu.RUnlock()
	return s.appends.closed
}

// Queries counts the statements s has sent: each takes a connection from
// the pool once.
func Queries(s *Store) int64 { return s.pool.Stat().AcquireCount() }
