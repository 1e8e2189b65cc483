package store

import "time"

// Hooks for the external tests (package store_test); compiled only in tests.

// PauseAppends replaces s's coalescer with one whose only worker starts when
// start is called, so that the single appends queued meanwhile (queued
// counts them) are stored as one group.
func PauseAppends(s *Store) (queued func() int, start func()) {
	s.appends.close()
	b := &batcher[*pendingAppend]{queue: make(chan *pendingAppend, coalescerMaxGroup), max: coalescerMaxGroup,
		quit: make(chan struct{}), group: s.appendGroup, alone: s.appendAlone}
	s.appends = &coalescer{s: s, b: b}
	return func() int { return len(b.queue) }, func() { b.wg.Go(b.run) }
}

// Closing reports whether s.Close has begun.
func Closing(s *Store) bool {
	s.appends.b.mu.RLock()
	defer s.appends.b.mu.RUnlock()
	return s.appends.b.closed
}

// Queries counts the statements s has sent: each takes a connection from
// the pool once.
func Queries(s *Store) int64 { return s.pool.Stat().AcquireCount() }

// ConditionalGroups returns how many groups of conditional appends s has
// stored in one statement each.
func ConditionalGroups(s *Store) int64 { return s.conditionals.groups.Load() }

// JSONContains is jsonContains over JSON text, for comparing it with
// PostgreSQL's @>.
func JSONContains(val, tmpl []byte) (bool, error) {
	v, err := parseJSON(val)
	if err != nil {
		return false, err
	}
	t, err := parseJSON(tmpl)
	if err != nil {
		return false, err
	}
	return jsonContains(v, t), nil
}

// AcquiredConns is the number of connections of s's pool in use now.
func AcquiredConns(s *Store) int32 { return s.pool.Stat().AcquiredConns() }

// Live reports whether fl has caught up and takes new events from the feed.
// Call it from the goroutine that calls Next.
func Live(fl *Follower) bool { return fl.live }

// ViewStatusSQL reads the status of one view ($1) or of all (NULL).
var ViewStatusSQL = viewStatusSQL

// PartitionListSQL is ListPartitions' statement for a state: $1 the view,
// ($2, $3) the cursor, ("", "") for the first page, $4 the limit.
func PartitionListSQL(state string) string { return statePages[state] }

// SetCatchUp makes s's catch-up pages at most events events and bytes
// bytes, and drops a page read ahead that waited handOff: small values
// drive many pages, many rounds and the drops of slow followers.
func SetCatchUp(s *Store, events, bytes int, handOff time.Duration) {
	s.catchUp = catchUpBounds{page: events, bytes: bytes, handOff: handOff}
}
