package store_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
	fstoresql "github.com/fstore/fstore/sql"
)

// Reads from a real hot standby (asynchronous, so it lags as standbys do).
func TestReadsFromStandby(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a primary and a standby")
	}
	t.Parallel()
	primary := storetest.NewCluster(t)
	standby := storetest.NewStandby(t, primary, false)
	s := storetest.OpenStore(t, primary.URL)
	_, err := s.Migrate(ctx, fstoresql.Migrations)
	require.NoError(t, err)
	register(t, s, "order", "created")
	reader := storetest.OpenStore(t, primary.URL, store.WithReadReplica(standby.URL))

	t.Run("whole-log and query readers never skip", func(t *testing.T) { standbyReadersNeverSkip(t, primary, reader) })
	t.Run("SQL on the standby needs a sampled horizon", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, standby.URL)
		require.NoError(t, err)
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, `SELECT * FROM read_events(0, 10)`)
		requireCode(t, err, "FS015")
		_, err = conn.Exec(ctx, `SELECT fstore_use_horizon(ARRAY[1], ARRAY['FFFFFFFF/0']::pg_lsn[])`)
		requireCode(t, err, "FS016")
	})
	t.Run("views' status", func(t *testing.T) {
		_, _, err := s.RegisterView(ctx, store.ViewRegistration{View: "v", LockTimeoutS: 60, StartAt: ptrTime(time.Now().Add(-time.Hour))})
		require.NoError(t, err)
		want, err := s.GetView(ctx, "v")
		require.NoError(t, err)
		require.Positive(t, want.Status.EventsPending)
		served, _ := reader.ReplicaReads()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			got, err := reader.GetView(ctx, "v")
			require.NoError(t, err)
			if got.Status == want.Status {
				break
			}
			require.True(t, time.Now().Before(deadline), "the standby's status %+v never became %+v", got.Status, want.Status)
		}
		after, _ := reader.ReplicaReads()
		assert.Greater(t, after, served, "counted on the standby")
	})
	t.Run("a standby down: reads go to the primary", func(t *testing.T) {
		standby.Stop()
		_, missed := reader.ReplicaReads()
		page, err := reader.ReadEvents(ctx, store.ReadQuery{Limit: 10})
		require.NoError(t, err)
		assert.Len(t, page, 10)
		_, err = reader.QueryEvents(ctx, store.Query{Items: []store.QueryItem{{Types: []string{"created"}}}}, 0, 10)
		require.NoError(t, err)
		_, err = reader.GetView(ctx, "v")
		require.NoError(t, err)
		_, nowMissed := reader.ReplicaReads()
		assert.Equal(t, missed+1, nowMissed, "tried once, then left alone for a while")
	})
}

func requireCode(t *testing.T, err error, code string) {
	t.Helper()
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	assert.Equal(t, code, pgErr.Code, pgErr.Message)
}

// The concurrent reader test of horizon_test.go on the standby: 8 writers
// on the primary hold their transactions open for a while and roll some
// back, so offsets commit out of order; a reader pages the whole log and
// another pages a query, both on the standby. Each sees every committed
// event exactly once, in offset order, and the standby served their pages.
// pg_locks on a standby does not show the primary's writers: these readers
// use horizons sampled on the primary, once the standby has replayed past
// them. (Without that replay check, or with the standby's own horizon, the
// readers skip events here.)
func standbyReadersNeverSkip(t *testing.T, primary *storetest.Cluster, reader *store.Store) {
	const writers, txPerWriter = 8, 40
	var done atomic.Bool
	var wg sync.WaitGroup
	for w := range writers {
		conn, err := pgx.Connect(ctx, primary.URL)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close(ctx) })
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for i := range txPerWriter {
				if err := writeTx(conn, rng, fmt.Sprintf("w%d-%d", w, i)); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		})
	}
	go func() { wg.Wait(); done.Store(true) }()

	var committed atomic.Int64 // known once the writers are done
	committed.Store(-1)
	results := make(chan []store.Event, 4)
	go func() { results <- pageLog(t, reader, &committed, nil) }()
	go func() { results <- pageLog(t, reader, &committed, []string{"all"}) }()
	go func() { results <- pageQuery(t, reader, &committed, store.QueryItem{Types: []string{"created"}}) }()
	go func() { results <- pageQuery(t, reader, &committed, store.QueryItem{Tags: []string{"all"}}) }()
	for !done.Load() {
		time.Sleep(10 * time.Millisecond)
	}
	var n int64
	conn, err := pgx.Connect(ctx, primary.URL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&n))
	committed.Store(n)
	for range 4 {
		seen := <-results
		ids := map[uuid.UUID]bool{}
		for _, e := range seen {
			assert.False(t, ids[e.EventID], "event %s seen twice", e.EventID)
			ids[e.EventID] = true
		}
		assert.EqualValues(t, n, len(ids), "every committed event seen exactly once")
	}
	served, missed := reader.ReplicaReads()
	t.Logf("%d events committed; the standby served %d reads, the primary %d", n, served, missed)
	assert.Greater(t, served, 10*missed, "the standby served the reads")
	assert.Greater(t, n, int64(writers*txPerWriter/2))
}

// pageLog pages the whole log (its events with these tags: writeTx tags
// every one "all") 7 events at a time, in offset order, until it has seen
// the committed events (once known) or a minute has passed.
func pageLog(t *testing.T, r *store.Store, committed *atomic.Int64, tags []string) []store.Event {
	return pageUntil(t, committed, func(after int64) ([]store.Event, int64, error) {
		page, err := r.ReadEvents(ctx, store.ReadQuery{After: after, Limit: 7, Tags: tags})
		next := after
		if len(page) > 0 {
			next = page[len(page)-1].Offset
		}
		return page, next, err
	})
}

// pageQuery does the same with a query (of one item that matches every
// event), its next cursor being the position each read returned.
func pageQuery(t *testing.T, r *store.Store, committed *atomic.Int64, item store.QueryItem) []store.Event {
	all := store.Query{Items: []store.QueryItem{item}}
	return pageUntil(t, committed, func(after int64) ([]store.Event, int64, error) {
		res, err := r.QueryEvents(ctx, all, after, 7)
		return res.Events, res.Position, err
	})
}

func pageUntil(t *testing.T, committed *atomic.Int64, read func(after int64) ([]store.Event, int64, error)) []store.Event {
	var seen []store.Event
	after := int64(0)
	var deadline time.Time
	for {
		n := committed.Load()
		if n >= 0 && int64(len(seen)) >= n {
			return seen
		}
		if n >= 0 && deadline.IsZero() {
			deadline = time.Now().Add(time.Minute) // the standby catches up meanwhile
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			t.Errorf("saw %d of %d committed events: some were skipped", len(seen), n)
			return seen
		}
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
		after = max(after, next)
	}
}
