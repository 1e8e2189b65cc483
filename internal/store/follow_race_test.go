package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// Followers started at staggered moments while writers append must each
// get every committed event they select above their cursor exactly once,
// in offset order: across their switch from catch-up to live, and across
// writers that hold their transactions open (offsets then commit out of
// order) or roll back. Writers on their own connections play other API
// processes; one appends through the followers' store, whose appends wake
// the feed at once.
func TestFollowNeverSkipsNorRepeats(t *testing.T) {
	t.Parallel()
	followNeverSkipsNorRepeats(t, storetest.NewStore(t), 0)
}

// The same with catch-up pages of a few events and a few hundred bytes, so
// that every follower reads many pages over many rounds while the writers
// go on, and with slow followers (a pause between reads), whose pages read
// ahead are dropped and read again.
func TestFollowNeverSkipsNorRepeatsInSmallPages(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	store.SetCatchUp(s, 7, 2000, 2*time.Millisecond)
	followNeverSkipsNorRepeats(t, s, 5*time.Millisecond)
}

// followNeverSkipsNorRepeats runs the proof on s; every fourth follower
// pauses for pause between its reads (none when 0).
func followNeverSkipsNorRepeats(t *testing.T, s *store.Store, pause time.Duration) {
	register(t, s, "order", "created", "noted")
	register(t, s, "invoice", "created", "noted")
	dbURL := storetest.URL(t, s)

	var committed atomic.Int64
	const writers, txPerWriter = 6, 50
	var wg sync.WaitGroup
	for w := range writers {
		conn, err := pgx.Connect(ctx, dbURL)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close(ctx) })
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 13))
			for i := range txPerWriter {
				n, err := liveWriteTx(conn, rng, w, i)
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				committed.Add(int64(n))
			}
		})
	}
	wg.Go(func() { // through the store: its appends kick the feed
		for i := range 150 {
			e := ev([]string{"order", "invoice"}[i%2], fmt.Sprint("s-", i), nil)
			e.Data = json.RawMessage(fmt.Sprintf(`{"w": %d, "i": %d}`, writers, i))
			if _, err := s.AppendEvents(ctx, []store.NewEvent{e}); err != nil {
				t.Errorf("store writer: %v", err)
				return
			}
			committed.Add(1)
		}
	})

	filters := []store.Filter{
		{},
		{Decider: "order"},
		{Events: []string{"noted"}},
		{Query: &store.Query{Items: []store.QueryItem{{Matches: []json.RawMessage{json.RawMessage(`{"w": 2}`)}}}}},
	}
	const followers = 16
	results := make([]*received, followers)
	followCtx, stop := context.WithCancel(ctx)
	defer stop()
	var fwg sync.WaitGroup
	for k := range followers {
		results[k] = &received{filter: filters[k%len(filters)]}
		fwg.Go(func() {
			// Start once the log has grown some: staggered over the run.
			for committed.Load() < int64(k*40) {
				time.Sleep(time.Millisecond)
			}
			r := results[k]
			if k%3 == 1 {
				r.after = someOffset(t, s)
			}
			fl, err := s.Follow(followCtx, r.filter, r.after)
			if !assert.NoError(t, err) {
				return
			}
			defer fl.Close()
			for {
				evs, err := fl.Next(followCtx, 50*time.Millisecond)
				if err != nil {
					assert.ErrorIs(t, err, context.Canceled)
					return
				}
				r.add(evs)
				if pause > 0 && k%4 == 0 {
					time.Sleep(pause)
				}
			}
		})
	}
	wg.Wait()

	deadline := time.Now().Add(60 * time.Second)
	for k, r := range results {
		want := expectedOffsets(t, s, r.filter, r.after)
		for r.count() < len(want) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		assert.Equal(t, want, r.snapshot(), "follower %d (%+v after %d): every selected committed event once, in order",
			k, r.filter, r.after)
	}
	stop()
	fwg.Wait()
	assert.Greater(t, committed.Load(), int64(writers*txPerWriter))
}

// liveWriteTx appends 1..3 events of a random decider and type in a
// transaction held open up to 3 ms, and rolls back one in five; it returns
// how many events committed.
func liveWriteTx(conn *pgx.Conn, rng *rand.Rand, w, i int) (int, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	decider := []string{"order", "invoice"}[rng.IntN(2)]
	stream := fmt.Sprintf("w%d-%d", w, i)
	var prev *uuid.UUID
	n := 1 + rng.IntN(3)
	for j := range n {
		id := uuid.New()
		if _, err := tx.Exec(ctx, `SELECT append_event($1, $2, $3, $4, $5, gen_random_uuid(), $6)`,
			[]string{"created", "noted"}[rng.IntN(2)], id, decider, stream, fmt.Sprintf(`{"w": %d, "i": %d, "j": %d}`, w, i, j), prev); err != nil {
			return 0, err
		}
		prev = &id
		if _, err := tx.Exec(ctx, `SELECT pg_sleep($1)`, rng.Float64()*0.003); err != nil {
			return 0, err
		}
	}
	if rng.IntN(5) == 0 {
		return 0, tx.Rollback(ctx)
	}
	return n, tx.Commit(ctx)
}

// someOffset returns the offset of a committed event (0 when none).
func someOffset(t *testing.T, s *store.Store) int64 {
	evs, err := s.ReadEvents(ctx, store.ReadQuery{Limit: 10000})
	require.NoError(t, err)
	if len(evs) == 0 {
		return 0
	}
	return evs[rand.IntN(len(evs))].Offset
}

// expectedOffsets asks PostgreSQL which events the filter selects.
func expectedOffsets(t *testing.T, s *store.Store, f store.Filter, after int64) []int64 {
	t.Helper()
	where := "TRUE"
	switch {
	case f.Decider != "":
		where = "decider = '" + f.Decider + "'"
	case len(f.Events) > 0:
		where = "event = '" + f.Events[0] + "'"
	case f.Query != nil:
		where = "data @> '" + string(f.Query.Items[0].Matches[0]) + "'"
	}
	rows, err := connect(t, s).Query(ctx, `SELECT "offset" FROM events WHERE "offset" > $1 AND `+where+` ORDER BY "offset"`, after)
	require.NoError(t, err)
	offsets, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	return append([]int64{}, offsets...)
}

// received is what one follower got.
type received struct {
	filter  store.Filter
	after   int64
	mu      sync.Mutex
	offsets []int64
}

func (r *received) add(evs []store.LiveEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range evs {
		r.offsets = append(r.offsets, e.Offset)
	}
}

func (r *received) count() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.offsets) }

func (r *received) snapshot() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int64{}, r.offsets...)
}
