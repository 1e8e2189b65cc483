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

	// The log, the log by tag (every event is tagged "all") and a tag query,
	// each read by a reader of its own.
	reader := storetest.NewStoreOn(t, s)
	reads := []func(after int64) ([]store.Event, int64, error){
		func(after int64) ([]store.Event, int64, error) {
			page, err := reader.ReadEvents(ctx, store.ReadQuery{After: after, Limit: 7})
			return page, after, err
		},
		func(after int64) ([]store.Event, int64, error) {
			page, err := reader.ReadEvents(ctx, store.ReadQuery{After: after, Limit: 7, Tags: []string{"all"}})
			return page, after, err
		},
		func(after int64) ([]store.Event, int64, error) {
			res, err := reader.QueryEvents(ctx, store.Query{Items: []store.QueryItem{{Tags: []string{"all"}}}}, after, 7)
			return res.Events, res.Position, err
		},
	}
	results := make([][]store.Event, len(reads))
	var readers sync.WaitGroup
	for i, read := range reads {
		readers.Go(func() { results[i] = readUntilDone(t, &done, read) })
	}
	readers.Wait()

	var committed int
	require.NoError(t, connect(t, s).QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&committed))
	for i, seen := range results {
		ids := map[uuid.UUID]bool{}
		for _, e := range seen {
			assert.False(t, ids[e.EventID], "reader %d: event %s seen twice", i, e.EventID)
			ids[e.EventID] = true
		}
		assert.Equal(t, committed, len(ids), "reader %d: every committed event seen exactly once", i)
	}
	assert.Greater(t, committed, writers*txPerWriter/2)
}

// readUntilDone pages with read (which returns a page and the position it
// covers) in offset order until a page read after done is empty.
func readUntilDone(t *testing.T, done *atomic.Bool, read func(after int64) ([]store.Event, int64, error)) []store.Event {
	var seen []store.Event
	after := int64(0)
	for {
		finished := done.Load() // read before the page: a page after the end sees everything
		page, next, err := read(after)
		if err != nil {
			t.Error(err)
			return seen
		}
		for _, e := range page {
			if e.Offset <= after {
				t.Errorf("offset %d after cursor %d: out of order", e.Offset, after)
			}
			after = e.Offset
		}
		seen = append(seen, page...)
		if finished && len(page) == 0 {
			return seen
		}
		after = max(after, next)
	}
}

// writeTx appends 1..3 events, tagged "all", to a new stream in a transaction that stays
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
		if _, err := tx.Exec(ctx, `SELECT append_event('created', $1, 'order', $2, '{}', gen_random_uuid(), $3, v_tags => '{all}')`,
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
