package store_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// Concurrent single appends are stored in groups; each caller must still get
// exactly the answer of an append of its own, whatever else is in its group.
func TestGroupedAppendsAnswerEachCaller(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	storedNew := tagged("order", "stored", nil) // sent again below, as a retry does
	stored := appendOne(t, s, storedNew)
	reordered := storedNew
	reordered.Tags = wantTags("stored")

	for round := range 5 {
		type call struct {
			kind string
			e    store.NewEvent
		}
		var calls []call
		for i := range 40 {
			fresh := ev("order", fmt.Sprintf("r%d-fresh-%d", round, i), nil)
			if i%2 == 0 { // metadata and tags go through the grouped statement
				fresh = tagged("order", fresh.DeciderID, nil)
			}
			calls = append(calls, call{"fresh", fresh})
		}
		hot := fmt.Sprintf("r%d-hot", round)
		for range 10 {
			calls = append(calls, call{"contended", ev("order", hot, nil)})
		}
		for i := range 5 {
			calls = append(calls, call{"retry", []store.NewEvent{storedNew, reordered}[i%2]})
		}
		for i := range 5 {
			dup := storedNew
			if i%2 == 0 {
				dup.Data = json.RawMessage(`{"other":true}`)
			} else {
				dup.Tags = []string{"other"}
			}
			calls = append(calls, call{"duplicate", dup})
		}
		twin := ev("order", fmt.Sprintf("r%d-twin", round), nil)
		calls = append(calls, call{"twin", twin}, call{"twin", twin})

		results := make([]store.AppendResult, len(calls))
		errs := make([]error, len(calls))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, c := range calls {
			wg.Go(func() {
				<-start
				results[i], errs[i] = s.AppendEvents(ctx, []store.NewEvent{c.e})
			})
		}
		close(start)
		wg.Wait()

		contendedWins, twinCreated, twinReplayed := 0, 0, 0
		for i, c := range calls {
			switch c.kind {
			case "fresh":
				require.NoError(t, errs[i])
				assert.True(t, results[i].Created)
				assert.Equal(t, c.e.EventID, results[i].Events[0].EventID)
				if c.e.Tags != nil {
					requireExtras(t, c.e, results[i].Events[0])
				}
			case "contended":
				if errs[i] == nil {
					contendedWins++
				} else {
					require.ErrorIs(t, errs[i], store.ErrConcurrencyConflict)
				}
			case "retry":
				require.NoError(t, errs[i])
				assert.False(t, results[i].Created)
				assert.Equal(t, stored, results[i].Events[0])
			case "duplicate":
				assert.ErrorIs(t, errs[i], store.ErrDuplicateEventID)
			case "twin":
				require.NoError(t, errs[i])
				if results[i].Created {
					twinCreated++
				} else {
					twinReplayed++
				}
			}
		}
		assert.Equal(t, 1, contendedWins, "round %d: exactly one first event of the contended stream", round)
		assert.Equal(t, 1, twinCreated, "round %d: a twin is stored once", round)
		assert.Equal(t, 1, twinReplayed, "round %d: and replayed once", round)
	}
	all, err := s.ReadEvents(ctx, store.ReadQuery{Limit: 10000})
	require.NoError(t, err)
	assert.Len(t, all, 1+5*(40+1+1), "nothing stored twice, nothing lost")
}

// Closing the store while appends are under way answers every one of them:
// none is left queued with nobody to run it.
func TestCloseAnswersQueuedAppends(t *testing.T) {
	t.Parallel()
	base := storetest.NewStore(t)
	register(t, base, "order", "created")
	s, err := store.Open(ctx, storetest.URL(t, base))
	require.NoError(t, err)

	const n = 200
	done := make(chan error, n)
	start := make(chan struct{})
	for i := range n {
		go func() {
			<-start
			_, err := s.AppendEvents(ctx, []store.NewEvent{ev("order", fmt.Sprint("c-", i), nil)})
			done <- err
		}()
	}
	close(start)
	s.Close()
	deadline := time.After(time.Minute)
	for i := range n {
		// Each append either made it or failed because the pool closed;
		// none may be left waiting.
		select {
		case err := <-done:
			_ = err // made it, or failed because the pool closed: both are answers
		case <-deadline:
			t.Fatalf("%d of %d appends never answered after Close", n-i, n)
		}
	}
}

// Close finishes the appends under way, including those a failed group
// statement hands back to the single-event path: they must not find the
// pool closed under them. The group here fails because its first event
// waits for an uncommitted transaction that takes the same place in its
// stream, and Close begins while it waits.
func TestCloseFinishesAppendsRetriedAlone(t *testing.T) {
	t.Parallel()
	base := storetest.NewStore(t)
	register(t, base, "order", "created")
	s, err := store.Open(ctx, storetest.URL(t, base))
	require.NoError(t, err)
	first := appendOne(t, s, ev("order", "hot", nil))

	tx := handTx(t, base)
	_, err = tx.Exec(ctx, `SELECT append_event('created', gen_random_uuid(), 'order', 'hot', '{}', gen_random_uuid(), $1)`,
		first.EventID)
	require.NoError(t, err)

	queued, startWorker := store.PauseAppends(s)
	const n = 20
	evs := []store.NewEvent{ev("order", "hot", ptr(first.EventID))}
	for i := 1; i < n; i++ {
		evs = append(evs, ev("order", fmt.Sprint("cold-", i), nil))
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, e := range evs {
		wg.Go(func() { _, errs[i] = s.AppendEvents(ctx, []store.NewEvent{e}) })
	}
	waitFor(t, "all appends queued", func() bool { return queued() == n })
	startWorker()
	waitForLockWait(t, base) // the group's statement waits for tx
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	waitFor(t, "Close under way", func() bool { return store.Closing(s) })
	require.NoError(t, tx.Commit(ctx)) // the group statement now fails: every append goes alone
	<-closed
	wg.Wait()
	assert.ErrorIs(t, errs[0], store.ErrConcurrencyConflict, "the hot event lost its place to the other transaction")
	for i := 1; i < n; i++ {
		assert.NoError(t, errs[i], "append %d was under way when Close began: it must be finished, not cut off", i)
	}
}
