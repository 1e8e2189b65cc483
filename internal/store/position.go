package store

import (
	"context"
	"sync"
	"time"
)

// positions shares the reads of query_position() among the queries that
// need one at the same time. Each read scans pg_locks, which takes every
// partition of PostgreSQL's lock table: alone it costs about as much as a
// tag query, and with 32 queries at once they contended for those locks with
// each other and with every conditional append taking its keys (measured:
// 1.3 ms of PostgreSQL's CPU per decision, against 0.4 ms for the statements
// one at a time).
//
// A query may use any position read after it arrived: every event at or
// below it committed before the read, so before the query's own statement
// starts. Callers that arrive while a read is under way wait for the next
// one, which starts after them.
type positions struct {
	s       *Store
	mu      sync.Mutex
	waiting []chan positionRead
	running bool
}

type positionRead struct {
	position int64
	err      error
}

// readTimeout bounds one shared read: it answers several callers, so none of
// their contexts may cancel it.
const readTimeout = 10 * time.Second

// get returns a query position read after the call began.
func (p *positions) get(ctx context.Context) (int64, error) {
	ch := make(chan positionRead, 1)
	p.mu.Lock()
	p.waiting = append(p.waiting, ch)
	if !p.running {
		p.running = true
		go p.run() //nolint:gosec,contextcheck // the read answers several callers: none of their contexts may end it
	}
	p.mu.Unlock()
	select {
	case r := <-ch:
		return r.position, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// run reads positions while anyone waits for one.
func (p *positions) run() {
	for {
		p.mu.Lock()
		batch := p.waiting
		p.waiting = nil
		if len(batch) == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
		var r positionRead
		if err := p.s.pool.QueryRow(ctx, `SELECT query_position()`).Scan(&r.position); err != nil {
			r.err = interpretError(err)
		}
		cancel()
		for _, ch := range batch {
			ch <- r
		}
	}
}
