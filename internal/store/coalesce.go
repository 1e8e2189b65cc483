package store

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Single-event appends that arrive together are stored together: PostgreSQL
// spends about 30 µs of CPU per event in a multi-row INSERT and about 170 µs
// in a transaction of its own (measured on the benchmark machine). There is
// no timer: a worker takes the first waiting append and whatever else is
// queued at that moment, so an idle server sends every append at once and a
// busy one fills the next group while the previous one commits.
//
// Two workers: on the benchmark machine 2 workers reached 10.1k appends/s,
// 4 reached 9.0k and 8 reached 7.8k (fewer workers, larger groups, less work
// for PostgreSQL), and a second worker keeps appends moving while one
// group's statement waits on a lock.
const (
	coalescerWorkers  = 2
	coalescerMaxGroup = 100
	// groupTimeout bounds one group's statement: it runs for several
	// callers, so no single caller's context may cancel it.
	groupTimeout = 30 * time.Second
)

// batcher hands whatever is queued when a worker is free to one call of
// group: the grouping shared by single appends and conditional appends.
type batcher[P any] struct {
	queue chan P
	max   int
	quit  chan struct{}
	wg    sync.WaitGroup
	// mu guards closed: nothing is queued once close has begun, so the
	// workers' final drain answers every queued item.
	mu     sync.RWMutex
	closed bool
	// group stores a group and returns what it leaves to alone, which runs
	// in the wait group too: close must wait for it before the pool closes.
	group func([]P) []P
	alone func(P)
}

func newBatcher[P any](workers, maxGroup int, group func([]P) []P, alone func(P)) *batcher[P] {
	b := &batcher[P]{queue: make(chan P, workers*maxGroup), max: maxGroup, quit: make(chan struct{}),
		group: group, alone: alone}
	for range workers {
		b.wg.Go(b.run)
	}
	return b
}

// submit queues p; it returns false when the batcher is closed (the caller
// then runs p alone) or ctx ended first.
func (b *batcher[P]) submit(ctx context.Context, p P) (bool, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return false, nil
	}
	select {
	case b.queue <- p:
		return true, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

func (b *batcher[P]) run() {
	for {
		var first P
		select {
		case first = <-b.queue:
		case <-b.quit:
			b.drain()
			return
		}
		group := []P{first}
	collect:
		for len(group) < b.max {
			select {
			case p := <-b.queue:
				group = append(group, p)
			default:
				break collect
			}
		}
		for _, p := range b.group(group) {
			b.wg.Go(func() { b.alone(p) })
		}
	}
}

// drain answers what is still queued at close, one at a time, alone.
func (b *batcher[P]) drain() {
	for {
		select {
		case p := <-b.queue:
			b.alone(p)
		default:
			return
		}
	}
}

func (b *batcher[P]) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	close(b.quit)
	b.wg.Wait()
}

type pendingAppend struct {
	ctx  context.Context
	ev   NewEvent
	done chan appendOutcome // buffered: a worker never blocks on a caller
}

type appendOutcome struct {
	res AppendResult
	err error
}

// coalescer groups single-event appends.
type coalescer struct {
	s *Store
	b *batcher[*pendingAppend]
}

func newCoalescer(s *Store, workers, maxGroup int) *coalescer {
	return &coalescer{s: s, b: newBatcher(workers, maxGroup, s.appendGroup, s.appendAlone)}
}

// append stores one event, alone or in a group, and answers exactly as an
// append of its own would.
func (c *coalescer) append(ctx context.Context, ev NewEvent) (AppendResult, error) {
	p := &pendingAppend{ctx: ctx, ev: ev, done: make(chan appendOutcome, 1)}
	queued, err := c.b.submit(ctx, p)
	switch {
	case err != nil:
		return AppendResult{}, err
	case !queued:
		return c.s.appendSingle(ctx, ev)
	}
	select {
	case out := <-p.done:
		return out.res, out.err
	case <-ctx.Done():
		return AppendResult{}, ctx.Err()
	}
}

func (c *coalescer) close() { c.b.close() }

func (s *Store) appendAlone(p *pendingAppend) {
	res, err := s.appendSingle(p.ctx, p.ev)
	p.done <- appendOutcome{res, err}
}

// appendGroup stores a group's events in one statement. It settles only the
// plain case itself: every event it inserted is answered as created. An
// event the statement skipped (its event_id is stored: a retry or a
// duplicate), an event_id repeated within the group, or a statement that
// failed (which stored nothing) must go through the single-event path, so
// that each caller gets exactly the answer of an append of its own: those
// are returned, for the caller to run.
func (s *Store) appendGroup(group []*pendingAppend) (alone []*pendingAppend) {
	var live []*pendingAppend
	seen := make(map[uuid.UUID]bool, len(group))
	for _, p := range group {
		switch {
		case p.ctx.Err() != nil:
			p.done <- appendOutcome{err: p.ctx.Err()}
		case seen[p.ev.EventID]:
			alone = append(alone, p)
		default:
			seen[p.ev.EventID] = true
			live = append(live, p)
		}
	}
	if len(live) == 1 {
		s.appendAlone(live[0])
		return alone
	}
	if len(live) == 0 {
		return alone
	}
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	evs := make([]NewEvent, len(live))
	for i, p := range live {
		evs[i] = p.ev
	}
	rows, err := s.pool.Query(ctx, appendSQL, columns(evs)...)
	var inserted []Event
	if err == nil {
		inserted, err = collectEvents(rows)
	}
	if err != nil {
		return append(alone, live...)
	}
	byID := make(map[uuid.UUID]Event, len(inserted))
	for _, e := range inserted {
		byID[e.EventID] = e
	}
	for _, p := range live {
		if e, ok := byID[p.ev.EventID]; ok {
			p.done <- appendOutcome{res: AppendResult{Events: []Event{e}, Created: true}}
		} else {
			alone = append(alone, p)
		}
	}
	return alone
}
