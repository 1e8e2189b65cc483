package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// A live follow sends every selected event after a cursor, in offset order,
// then every new one as it commits: no gap and no duplicate. It catches up
// by reading pages itself, below a read horizon it took (every event below
// it has committed), until a round finds less than a page. Then it
// registers with the feed, which answers with its position P: the feed
// queues for it every selected event above P. The follower reads what lies
// between its cursor and P (committed: P is below a horizon the feed read
// under), then hands out the queued events above its cursor. Nothing below
// the cursor comes twice, nothing above P is missed, and nothing in between
// is read by both.

// Bounds of a catch-up. A follower holds at most two pages: the one its
// client is being written, and the next, read ahead. A read-ahead page its
// follower does not take within handOff is dropped and read again when
// asked for: a slow client keeps no read slot, and costs only itself.
type catchUpBounds struct {
	// page is the most events one catch-up read takes: large pages for
	// throughput.
	page int
	// bytes ends a page early once its encoded events reach it, however
	// large the events.
	bytes int
	// handOff is how long a page read ahead waits for its follower.
	handOff time.Duration
}

var defaultCatchUp = catchUpBounds{page: 4000, bytes: 2 << 20, handOff: time.Second}

// catchUpReads bounds the catch-up reads under way (from the query to the
// hand-off of the page) over all followers of the process.
const catchUpReads = 16

// LiveEvent is one event a Follower hands out: its offset, and its JSON as
// Event.AppendJSON writes it (shared with other followers: read-only).
type LiveEvent struct {
	Offset int64
	JSON   []byte
}

// Follower follows the log live; see Follow. It is not safe for concurrent use.
type Follower struct {
	s      *Store
	filter *liveFilter
	cancel context.CancelFunc
	pages  chan page     // the catch-up reader's, closed when it ends
	want   chan struct{} // Next asks the catch-up reader for a page it dropped
	sub    *subscription
	live   bool
	cursor int64 // the last offset handed out, or passed over
	queued []*feedEvent
	out    []LiveEvent
	timer  *time.Timer // Next's wait, reused
}

// page is what the catch-up reader hands over: events, an error, or the
// switch to live (sub registered, cursor caught up to the feed's position).
type page struct {
	events []LiveEvent
	err    error
	live   bool
	cursor int64
}

// Follow starts following the events f selects with an offset above after:
// call Next for them and Close when done. ctx bounds the follow. The error
// wraps ErrInvalid when f is malformed.
func (s *Store) Follow(ctx context.Context, f Filter, after int64) (*Follower, error) {
	lf, err := f.compile()
	if err != nil {
		return nil, err
	}
	if err := s.checkMatches(ctx, f.Query); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	// pages is unbuffered: a page read ahead waits in its reader, which
	// can drop it (see catchUpBounds).
	fl := &Follower{s: s, filter: lf, cancel: cancel, pages: make(chan page), want: make(chan struct{}, 1),
		cursor: after, sub: &subscription{filter: lf, notify: make(chan struct{}, 1)}}
	go fl.catchUp(ctx, f, after)
	return fl, nil
}

// Next returns the next events in offset order: pages of the backlog
// first, then new events as they commit. While there are none it waits, at
// most wait, and returns none when the wait is over (time for a heartbeat),
// or at once when the follower has just caught up with the log. The events
// are valid until the next call.
//
// Errors: ErrFellBehind when the caller let more than MaxBehind new events
// wait; a store error (ErrUnavailable, …) when a catch-up read failed;
// ctx's error. After an error the follower is done: follow again from the
// last offset handed out.
func (fl *Follower) Next(ctx context.Context, wait time.Duration) ([]LiveEvent, error) {
	if !fl.live {
		select {
		case fl.want <- struct{}{}:
		default: // asked already
		}
	}
	if fl.timer == nil {
		fl.timer = time.NewTimer(wait)
	} else {
		fl.timer.Reset(wait)
	}
	defer fl.timer.Stop()
	timer := fl.timer
	for !fl.live {
		select {
		case p, ok := <-fl.pages:
			if !ok {
				return nil, context.Canceled
			}
			if p.err != nil {
				return nil, p.err
			}
			if p.live {
				fl.live, fl.cursor = true, p.cursor
				return nil, nil
			}
			fl.cursor = p.events[len(p.events)-1].Offset
			return p.events, nil
		case <-timer.C:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	for {
		evs, err := fl.takeLive()
		if err != nil || len(evs) > 0 {
			return evs, err
		}
		select {
		case <-fl.sub.notify:
		case <-timer.C:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// keptCap is the most room a follower's queues keep between bursts: a
// burst of 10,000 events grows them to hundreds of kilobytes, which a
// thousand idle followers would keep for good.
const keptCap = 1024

// takeLive returns the queued events above the cursor.
func (fl *Follower) takeLive() ([]LiveEvent, error) {
	if cap(fl.queued) > keptCap || cap(fl.out) > keptCap {
		fl.queued, fl.out = nil, nil // the events of the last call are written
	}
	var err error
	fl.queued, err = fl.s.feed.take(fl.sub, fl.queued[:0])
	fl.out = fl.out[:0]
	for _, e := range fl.queued {
		if e.Offset > fl.cursor {
			fl.out = append(fl.out, LiveEvent{Offset: e.Offset, JSON: e.json})
			fl.cursor = e.Offset
		}
	}
	clear(fl.queued)
	if err != nil {
		return nil, err
	}
	return fl.out, nil
}

// Close ends the follow and frees what it holds.
func (fl *Follower) Close() {
	fl.cancel()
	for range fl.pages { // the reader ends once cancelled
	}
	fl.s.feed.unregister(fl.sub)
}

// checkMatches has PostgreSQL parse a query's matches as jsonb, as its
// reads will: a value it refuses (a number beyond numeric's range) is
// refused now, ErrInvalid, rather than by a catch-up read once the answer
// has begun.
func (s *Store) checkMatches(ctx context.Context, q *Query) error {
	if q == nil {
		return nil
	}
	var all []json.RawMessage
	for _, it := range q.Items {
		all = append(all, it.Matches...)
	}
	if len(all) == 0 {
		return nil
	}
	b, err := json.Marshal(all)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	_, err = s.pool.Exec(ctx, `SELECT $1::text::jsonb`, string(b))
	return interpretError(err)
}
