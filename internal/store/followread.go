package store

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
)

// The reads of live follows: the catch-up reader of one follower, and the
// two statements every follow read is made of (readHorizon, queryRange),
// which a read replica could serve.

// catchUp reads the backlog for Next, a page ahead of it, then switches
// the follower to the feed (see the top of follow.go). It owns fl.sub
// until it hands over with a live page.
func (fl *Follower) catchUp(ctx context.Context, f Filter, cursor int64) {
	defer close(fl.pages)
	for {
		safe, caughtUp, err := fl.catchUpRounds(ctx, &f, cursor)
		if err != nil {
			fl.send(ctx, page{err: err})
			return
		}
		cursor = caughtUp
		pos := fl.s.feed.register(fl.sub, safe) //nolint:contextcheck // the watcher's poll outlives any follow
		if pos > cursor {
			// Committed: pos is below a horizon the feed read under.
			if _, err := fl.sendAll(ctx, &f, cursor, pos+1); err != nil {
				fl.send(ctx, page{err: err})
				return
			}
			cursor = pos
		}
		if !fl.s.feed.isBehind(fl.sub) {
			fl.send(ctx, page{live: true, cursor: cursor})
			return
		}
		// The log outran the reads of the gap: catch up again from here.
		fl.sub = &subscription{filter: fl.filter, notify: make(chan struct{}, 1)}
	}
}

// catchUpRounds reads everything above cursor below a fresh horizon, round
// after round, until a round finds less than a page. It returns that
// round's horizon minus one and the new cursor (never below it).
func (fl *Follower) catchUpRounds(ctx context.Context, f *Filter, cursor int64) (safe, next int64, err error) {
	for {
		h, err := fl.s.readHorizon(ctx)
		if err != nil {
			return 0, 0, err
		}
		got, err := fl.sendAll(ctx, f, cursor, h)
		if err != nil {
			return 0, 0, err
		}
		cursor = max(got.cursor, h-1)
		if !got.more {
			return h - 1, cursor, nil
		}
	}
}

type sent struct {
	cursor int64
	more   bool // the last page was full: the range may hold more
}

// sendAll sends, page by page, the events above after and below below; it
// returns the last offset sent (after if none) and whether the last page
// was full.
func (fl *Follower) sendAll(ctx context.Context, f *Filter, after, below int64) (sent, error) {
	total := sent{cursor: after}
	for {
		got, err := fl.sendPage(ctx, f, total.cursor, below)
		if err != nil {
			return sent{}, err
		}
		total = got
		if !got.more {
			return total, nil
		}
	}
}

// sendPage sends one page of the events above after and below below. A
// page its follower does not take within its hand-off wait is dropped, and read
// again once the follower asks: the read slot goes to other followers.
func (fl *Follower) sendPage(ctx context.Context, f *Filter, after, below int64) (sent, error) {
	for {
		got, done, err := fl.offerPage(ctx, f, after, below)
		if err != nil || done {
			return got, err
		}
		select { // a slow client: read the page again when it is wanted
		case <-fl.want:
		case <-ctx.Done():
			return sent{}, ctx.Err()
		}
	}
}

// offerPage reads one page in a read slot and offers it to Next for the
// hand-off wait, then gives the slot back. done is false when the follower
// did not take the page in time (it is dropped).
func (fl *Follower) offerPage(ctx context.Context, f *Filter, after, below int64) (got sent, done bool, err error) {
	select {
	case fl.s.pageTokens <- struct{}{}:
	case <-ctx.Done():
		return sent{}, false, ctx.Err()
	}
	defer func() { <-fl.s.pageTokens }()
	evs, more, err := fl.readPage(ctx, f, after, below)
	if err != nil || len(evs) == 0 {
		return sent{cursor: after}, true, err
	}
	wait := time.NewTimer(fl.s.catchUp.handOff)
	defer wait.Stop()
	select {
	case fl.pages <- page{events: evs}:
		return sent{cursor: evs[len(evs)-1].Offset, more: more}, true, nil
	case <-wait.C:
		return sent{}, false, nil
	case <-ctx.Done():
		return sent{}, false, ctx.Err()
	}
}

// readPage reads one page, in a read slot the caller holds. more: the page
// is full (by count or by size).
func (fl *Follower) readPage(ctx context.Context, f *Filter, after, below int64) ([]LiveEvent, bool, error) {
	rows, err := fl.s.queryRange(ctx, f, after, below, fl.s.catchUp.page)
	if err != nil {
		return nil, false, interpretError(err)
	}
	evs, full, err := encodeRows(rows, fl.s.catchUp.bytes)
	if err != nil {
		return nil, false, interpretError(err)
	}
	return evs, full || len(evs) == fl.s.catchUp.page, nil
}

// send hands p to Next; false when ctx ended first.
func (fl *Follower) send(ctx context.Context, p page) bool {
	select {
	case fl.pages <- p:
		return true
	case <-ctx.Done():
		return false
	}
}

// encodeRows encodes the events of rows into one buffer, and stops early
// (full) once the buffer holds maxBytes.
func encodeRows(rows pgx.Rows, maxBytes int) (evs []LiveEvent, full bool, err error) {
	defer rows.Close()
	var (
		buf     = make([]byte, 0, 64<<10)
		offsets []int64
		ends    []int
	)
	for !full && rows.Next() {
		e, scanErr := scanEvent(rows) // the one mapping of columns to fields
		if scanErr != nil {
			return nil, false, scanErr
		}
		buf = e.AppendJSON(buf)
		offsets = append(offsets, e.Offset)
		ends = append(ends, len(buf))
		full = len(buf) >= maxBytes
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	out := make([]LiveEvent, len(offsets))
	start := 0
	for i, end := range ends {
		out[i] = LiveEvent{Offset: offsets[i], JSON: buf[start:end:end]}
		start = end
	}
	return out, full, nil
}

// readHorizon returns the read horizon: every event below it has committed.
// Read events in a later statement, whose snapshot sees them all.
func (s *Store) readHorizon(ctx context.Context) (int64, error) {
	var h int64
	if err := s.pool.QueryRow(ctx, `SELECT fstore_read_horizon()`).Scan(&h); err != nil {
		return 0, interpretError(err)
	}
	return h, nil
}

// queryRange selects, in offset order, at most limit of the events f
// selects (nil: every event) with after < offset < below. below must be a
// read horizon taken in an earlier statement, or lower.
func (s *Store) queryRange(ctx context.Context, f *Filter, after, below int64, limit int) (pgx.Rows, error) {
	if f != nil && f.Query != nil {
		q, err := queryJSON(*f.Query) // text in every query mode
		if err != nil {
			return nil, err
		}
		return s.pool.Query(ctx, `SELECT `+eventColumns+` FROM query_events($1, $2, $3, $4)`, q, after, limit, below-1)
	}
	sql := `SELECT ` + eventColumns + ` FROM events WHERE "offset" > $1 AND "offset" < $2`
	args := []any{after, below, limit}
	if f != nil && f.Decider != "" {
		args = append(args, f.Decider)
		sql += fmt.Sprintf(` AND decider = $%d`, len(args))
	}
	if f != nil && f.DeciderID != "" {
		args = append(args, f.DeciderID)
		sql += fmt.Sprintf(` AND decider_id = $%d`, len(args))
	}
	if f != nil && len(f.Events) > 0 {
		args = append(args, f.Events)
		sql += fmt.Sprintf(` AND event = ANY ($%d)`, len(args))
	}
	if f != nil && len(f.Tags) > 0 { // "tags <> '{}'": the tags index holds tagged events only
		args = append(args, NormalizeTags(f.Tags))
		sql += fmt.Sprintf(` AND tags <> '{}' AND tags @> $%d::text[]`, len(args))
	}
	return s.pool.Query(ctx, sql+` ORDER BY "offset" LIMIT $3`, args...)
}

// readTypes is ReadEvents with an event type filter.
func (s *Store) readTypes(ctx context.Context, q ReadQuery) ([]Event, error) {
	below := int64(math.MaxInt64) // one stream commits in order: no horizon needed
	if q.DeciderID == "" {
		h, err := s.readHorizon(ctx)
		if err != nil {
			return nil, err
		}
		below = h
	}
	return s.readRange(ctx, &Filter{Decider: q.Decider, DeciderID: q.DeciderID, Events: q.Events, Tags: q.Tags},
		q.After, below, q.Limit)
}

// readRange is queryRange, collected.
func (s *Store) readRange(ctx context.Context, f *Filter, after, below int64, limit int) ([]Event, error) {
	rows, err := s.queryRange(ctx, f, after, below, limit)
	if err != nil {
		return nil, interpretError(err)
	}
	evs, err := collectEvents(rows)
	return evs, interpretError(err)
}
