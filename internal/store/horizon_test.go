package store_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// A reader paging the whole log while 8 writers append must see every
// committed event exactly once, in offset order. Writers hold their
// transactions open for a random while (and some roll back), so offsets
// commit out of order: a plain "offset > after" reader skips events here.
func TestWholeLogReaderNeverSkips(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	dbURL := storetest.URL(t, s)

	const writers, txPerWriter = 8, 40
	var done atomic.Bool
	var wg sync.WaitGroup
	for w := range writers {
		conn, err := pgx.Connect(ctx, dbURL)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close(ctx) })
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range txPerWriter {
				if err := writeTx(conn, rng, fmt.Sprintf("w%d-%d", w, i)); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		})
	}
	go func() { wg.Wait(); done.Store(true) }()

	reader := storetest.NewStoreOn(t, s)
	var seen []store.Event
	after := int64(0)
	for {
		finished := done.Load() // read before the page: a page after the end sees everything
		page, err := reader.ReadEvents(ctx, store.ReadQuery{After: after, Limit: 7})
		require.NoError(t, err)
		for _, e := range page {
			require.Greater(t, e.Offset, after, "offset order")
			after = e.Offset
		}
		seen = append(seen, page...)
		if finished && len(page) == 0 {
			break
		}
	}

	var committed int
	require.NoError(t, connect(t, s).QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&committed))
	ids := map[uuid.UUID]bool{}
	for _, e := range seen {
		assert.False(t, ids[e.EventID], "event %s seen twice", e.EventID)
		ids[e.EventID] = true
	}
	assert.Equal(t, committed, len(ids), "every committed event seen exactly once")
	assert.Greater(t, committed, writers*txPerWriter/2)
}

// writeTx appends 1..3 events to a new stream in a transaction that stays
// open for up to 3 ms, and rolls back one transaction in five.
func writeTx(conn *pgx.Conn, rng *rand.Rand, stream string) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	var prev *uuid.UUID
	for range 1 + rng.IntN(3) {
		id := uuid.New()
		if _, err := tx.Exec(ctx, `SELECT append_event('created', $1, 'order', $2, '{}', gen_random_uuid(), $3)`,
			id, stream, prev); err != nil {
			return err
		}
		prev = &id
		if _, err := tx.Exec(ctx, `SELECT pg_sleep($1)`, rng.Float64()*0.003); err != nil {
			return err
		}
	}
	if rng.IntN(5) == 0 {
		return tx.Rollback(ctx)
	}
	return tx.Commit(ctx)
}

func TestDeciderReadSkipsOtherDeciders(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	register(t, s, "invoice", "created")
	for i := range 5 {
		appendOne(t, s, ev("order", fmt.Sprint("o", i), nil))
		appendOne(t, s, ev("invoice", fmt.Sprint("i", i), nil))
	}
	page, err := s.ReadEvents(ctx, store.ReadQuery{Decider: "order", Limit: 3})
	require.NoError(t, err)
	require.Len(t, page, 3)
	rest, err := s.ReadEvents(ctx, store.ReadQuery{Decider: "order", After: page[2].Offset, Limit: 10})
	require.NoError(t, err)
	require.Len(t, rest, 2)
	for _, e := range append(page, rest...) {
		assert.Equal(t, "order", e.Decider)
	}
}
