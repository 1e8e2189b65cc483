package store

import (
	"context"
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

// Bounds of a catch-up.
const (
	// catchUpPage is the most events one catch-up read takes: large pages
	// for throughput, one encoded page of about 1.5 MB in flight.
	catchUpPage = 4000
	// catchUpPages bounds the pages in flight (read, not yet written) over
	// all followers of the process: memory stays bounded however many
	// catch up at once.
	catchUpPages = 16
)

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
	pages  chan page // the catch-up reader's, closed when it ends
	sub    *subscription
	live   bool
	cursor int64 // the last offset handed out, or passed over
	held   func()
	queued []*feedEvent
	out    []LiveEvent
	timer  *time.Timer // Next's wait, reused
}

// page is what the catch-up reader hands over: events, an error, or the
// switch to live (sub registered, cursor caught up to the feed's position).
type page struct {
	events  []LiveEvent
	release func()
	err     error
	live    bool
	cursor  int64
}

// Follow starts following the events f selects with an offset above after:
// call Next for them and Close when done. ctx bounds the follow. The error
// wraps ErrInvalid when f is malformed.
func (s *Store) Follow(ctx context.Context, f Filter, after int64) (*Follower, error) {
	lf, err := f.compile()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	fl := &Follower{s: s, filter: lf, cancel: cancel, pages: make(chan page, 1), cursor: after,
		sub: &subscription{filter: lf, notify: make(chan struct{}, 1)}}
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
	fl.release()
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
			fl.held = p.release
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

// takeLive returns the queued events above the cursor.
func (fl *Follower) takeLive() ([]LiveEvent, error) {
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

func (fl *Follower) release() {
	if fl.held != nil {
		fl.held()
		fl.held = nil
	}
}

// Close ends the follow and frees what it holds.
func (fl *Follower) Close() {
	fl.cancel()
	fl.release()
	for p := range fl.pages { // the reader ends once cancelled
		if p.release != nil {
			p.release()
		}
	}
	fl.s.feed.unregister(fl.sub)
}
