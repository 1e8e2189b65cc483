package store_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// handouts counts how often each offset was handed out.
type handouts struct {
	mu sync.Mutex
	n  map[int64]int
}

func (h *handouts) add(evs []store.LeasedEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range evs {
		h.n[e.Offset]++
	}
}

func (h *handouts) covers(want []int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, o := range want {
		if h.n[o] == 0 {
			return false
		}
	}
	return true
}

// Scoped consumers and appenders run together while the lists change: no
// matching event is lost, and none is handed out twice. One view's decider
// list grows and shrinks (a stream is in or out as a whole: at the end,
// with every decider listed, every event must have been handed out once);
// another's type list does (created is always listed: every created event
// once; a paid event settled while it was out of scope stays settled).
func TestScopeChangesUnderLoad(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created", "paid")
	register(t, s, "invoice", "created", "paid")
	start := past()
	scoped(t, s, "by-decider", start, []string{"order"}, nil)
	scoped(t, s, "by-type", start, nil, []string{"created"})

	const appenders, streamsEach, eventsEach, consumers = 3, 8, 16, 3
	begin := make(chan struct{})
	var appended sync.Mutex
	var all, created []int64
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for a := range appenders {
		wg.Go(func() {
			<-begin
			prev := map[string]*uuid.UUID{}
			for n := range streamsEach * eventsEach {
				i := rand.IntN(streamsEach)
				key := fmt.Sprintf("a%d-s%d", a, i)
				decider := []string{"order", "invoice"}[i%2]
				ty := []string{"created", "paid"}[n%2]
				res, err := s.AppendEvents(ctx, []store.NewEvent{typed(decider, key, ty, prev[key])})
				if err != nil {
					errs <- err
					return
				}
				e := res.Events[0]
				prev[key] = &e.EventID
				appended.Lock()
				all = append(all, e.Offset)
				if ty == "created" {
					created = append(created, e.Offset)
				}
				appended.Unlock()
			}
		})
	}
	var appendersDone atomic.Bool
	go func() { wg.Wait(); appendersDone.Store(true) }()

	var toggles sync.WaitGroup
	var changes atomic.Int64
	toggles.Go(func() {
		<-begin
		for i := 0; !appendersDone.Load() || i < 30; i++ {
			changes.Add(1)
			deciders := [][]string{{"order"}, {"invoice", "order"}, {"invoice"}}[i%3]
			types := [][]string{{"created"}, {"created", "paid"}}[i%2]
			if _, _, err := s.RegisterView(ctx, store.ViewRegistration{View: "by-decider", StartAt: start, LockTimeoutS: 300, Deciders: deciders}); err != nil {
				errs <- err
			}
			if _, _, err := s.RegisterView(ctx, store.ViewRegistration{View: "by-type", StartAt: start, LockTimeoutS: 300, Events: types}); err != nil {
				errs <- err
			}
		}
	})

	seen := map[string]*handouts{"by-decider": {n: map[int64]int{}}, "by-type": {n: map[int64]int{}}}
	var stop atomic.Bool
	var consuming sync.WaitGroup
	for view, h := range seen {
		for range consumers {
			consuming.Go(func() {
				<-begin
				for !stop.Load() {
					evs, err := s.LeaseEvents(ctx, view, store.LeaseRequest{Limit: 5, MaxPerPartition: 5})
					if err != nil {
						errs <- err
						return
					}
					h.add(evs)
					for _, batch := range byStream(evs) {
						last := batch[len(batch)-1]
						if _, err := s.Ack(ctx, view, last.Decider, last.DeciderID, last.Offset, last.LeaseID); err != nil {
							errs <- fmt.Errorf("ack: %w", err)
						}
					}
				}
			})
		}
	}
	close(begin)
	toggles.Wait()
	// The final lists: every decider; both types.
	scoped(t, s, "by-decider", start, []string{"invoice", "order"}, nil)
	scoped(t, s, "by-type", start, nil, []string{"created", "paid"})
	deadline := time.Now().Add(90 * time.Second)
	done := func() bool { return seen["by-decider"].covers(all) && seen["by-type"].covers(created) }
	for !done() && time.Now().Before(deadline) && len(errs) == 0 {
		time.Sleep(50 * time.Millisecond) // polling for a condition, with a deadline
	}
	stop.Store(true)
	consuming.Wait()
	close(errs)
	var failures []error
	for err := range errs {
		failures = append(failures, err)
	}
	require.NoError(t, errors.Join(failures...))
	require.Len(t, all, appenders*streamsEach*eventsEach)
	t.Logf("%d events, %d changes of both views' lists", len(all), changes.Load())
	require.GreaterOrEqual(t, changes.Load(), int64(30), "the lists changed while consumers ran")

	for view, want := range map[string][]int64{"by-decider": all, "by-type": created} {
		h := seen[view]
		assert.True(t, h.covers(want), "%s: every matching event handed out", view)
		assert.Empty(t, drain(t, s, view), "%s: nothing left behind", view)
		for offset, n := range h.n {
			assert.Equal(t, 1, n, "%s: offset %d handed out %d times", view, offset, n)
		}
	}
	// The count of partitions kept by discovery and registration raced both.
	requireExactStatus(t, s, connect(t, s), "after the race")
}
