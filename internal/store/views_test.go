package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

func past() *time.Time { t := time.Now().Add(-time.Hour).Truncate(time.Microsecond); return &t }

func registerView(t *testing.T, s *store.Store, name string, start *time.Time, lockTimeout int64) store.View {
	t.Helper()
	v, _, err := s.RegisterView(ctx, store.ViewRegistration{View: name, StartAt: start, LockTimeoutS: lockTimeout})
	require.NoError(t, err)
	return v
}

func lease(t *testing.T, s *store.Store, view string, limit, perPartition int) []store.LeasedEvent {
	t.Helper()
	evs, err := s.LeaseEvents(ctx, view, store.LeaseRequest{Limit: limit, MaxPerPartition: perPartition})
	require.NoError(t, err)
	return evs
}

// leaseWithin leases until something comes back or the deadline passes.
func leaseWithin(t *testing.T, s *store.Store, view string, d time.Duration) []store.LeasedEvent {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		if evs := lease(t, s, view, 10, 10); len(evs) > 0 {
			return evs
		}
		time.Sleep(20 * time.Millisecond) // polling for a condition, with a deadline
	}
	t.Fatalf("nothing to lease within %s", d)
	return nil
}

// fstore-sql accepted a stale ack: progress went backwards and the live
// consumer's lease was released. Leases are fenced here.
func TestStaleAckIsRefused(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	e1 := appendOne(t, s, ev("order", "o", nil))
	e2 := appendOne(t, s, ev("order", "o", &e1.EventID))
	other := appendOne(t, s, ev("order", "p", nil))
	registerView(t, s, "v", past(), 1)

	stalled := lease(t, s, "v", 1, 1)
	require.Len(t, stalled, 1)
	require.Equal(t, e1.EventID, stalled[0].EventID)

	// The lease (1 s) expires; another consumer takes the partition.
	var live store.LeasedEvent
	for deadline := time.Now().Add(10 * time.Second); live.LeaseID == uuid.Nil; {
		require.True(t, time.Now().Before(deadline), "the lease never expired")
		for _, e := range lease(t, s, "v", 10, 1) {
			if e.DeciderID == "o" {
				live = e
			}
		}
		time.Sleep(50 * time.Millisecond) // polling for a condition, with a deadline
	}
	require.Equal(t, e1.EventID, live.EventID, "the same event again: nothing was acked")
	require.NotEqual(t, stalled[0].LeaseID, live.LeaseID)

	_, err := s.Ack(ctx, "v", "order", "o", e1.Offset, stalled[0].LeaseID)
	assert.ErrorIs(t, err, store.ErrLeaseLost, "the stalled consumer's late ack")
	_, err = s.Nack(ctx, "v", "order", "o", stalled[0].LeaseID, 0, "")
	assert.ErrorIs(t, err, store.ErrLeaseLost, "and its late nack")

	// Only offsets handed out in the lease can be acked.
	for name, off := range map[string]int64{"a later event": e2.Offset, "another stream's": other.Offset, "before progress": 0} {
		_, err = s.Ack(ctx, "v", "order", "o", off, live.LeaseID)
		assert.ErrorIs(t, err, store.ErrNotHandedOut, name)
	}
	p, err := s.Ack(ctx, "v", "order", "o", e1.Offset, live.LeaseID)
	require.NoError(t, err)
	assert.Equal(t, e1.Offset, p.AckedOffset)
	assert.Nil(t, p.LeaseID, "the ack released the lease")
	again, err := s.Ack(ctx, "v", "order", "o", e1.Offset, live.LeaseID)
	require.NoError(t, err, "a repeated ack is harmless")
	assert.Equal(t, p.AckedOffset, again.AckedOffset)

	next := lease(t, s, "v", 10, 1)
	var ids []uuid.UUID
	for _, e := range next {
		ids = append(ids, e.EventID)
	}
	assert.Contains(t, ids, e2.EventID, "progress moved on by exactly one event")

	_, err = s.Ack(ctx, "nope", "order", "o", e1.Offset, live.LeaseID)
	assert.ErrorIs(t, err, store.ErrNotFound)
	_, err = s.LeaseEvents(ctx, "nope", store.LeaseRequest{Limit: 1, MaxPerPartition: 1})
	assert.ErrorIs(t, err, store.ErrNotFound)
}

// fstore-sql reset progress on re-registration: acked events came again.
func TestReRegisteringKeepsProgress(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	first := appendOne(t, s, ev("order", "o", nil))
	second := appendOne(t, s, ev("order", "o", &first.EventID))
	start := past()
	registerView(t, s, "v", start, 60)
	got := lease(t, s, "v", 1, 1)
	require.Len(t, got, 1)
	_, err := s.Ack(ctx, "v", "order", "o", got[0].Offset, got[0].LeaseID)
	require.NoError(t, err)

	for name, st := range map[string]*time.Time{"same start_at": start, "no start_at": nil} {
		v, created, err := s.RegisterView(ctx, store.ViewRegistration{View: "v", StartAt: st, LockTimeoutS: 30})
		require.NoError(t, err)
		assert.False(t, created, name)
		assert.Equal(t, int64(30), v.LockTimeoutS, name)
		assert.True(t, v.StartAt.Equal(*start), name)
		assert.Equal(t, int64(1), v.Status.EventsPending, name)
	}
	next := lease(t, s, "v", 1, 1)
	require.Len(t, next, 1)
	assert.Equal(t, second.EventID, next[0].EventID, "the acked event is not delivered again")

	// Another start_at is an explicit replay...
	earlier := start.Add(-time.Hour)
	v := registerView(t, s, "v", &earlier, 30)
	assert.Equal(t, int64(2), v.Status.EventsPending)
	replay := lease(t, s, "v", 1, 5)
	require.Len(t, replay, 2)
	assert.Equal(t, first.EventID, replay[0].EventID)
	// ...or a skip.
	now := time.Now()
	v = registerView(t, s, "v", &now, 30)
	assert.Zero(t, v.Status.EventsPending)
	assert.Empty(t, lease(t, s, "v", 10, 10))
}

// fstore-sql never showed a view a stream whose first event's transaction
// was running while the view was registered.
func TestViewRegisteredDuringFirstAppends(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	var ids []uuid.UUID
	txs := make([]func() error, 0, 5)
	for i := range 5 {
		conn := connect(t, s)
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		id := uuid.New()
		ids = append(ids, id)
		_, err = tx.Exec(ctx, `SELECT append_event('created', $1, 'order', $2, '{}', gen_random_uuid(), NULL)`, id, fmt.Sprint("s", i))
		require.NoError(t, err)
		txs = append(txs, func() error { return tx.Commit(ctx) })
	}
	registerView(t, s, "v", nil, 60) // start_at: now, while the appends are uncommitted
	for _, commit := range txs {
		require.NoError(t, commit())
	}
	got := lease(t, s, "v", 10, 10)
	var seen []uuid.UUID
	for _, e := range got {
		seen = append(seen, e.EventID)
	}
	assert.ElementsMatch(t, ids, seen, "every stream whose first event committed after registration")
}

// fstore-sql keyed partitions by decider_id alone.
func TestPartitionsAreStreams(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	register(t, s, "invoice", "created")
	appendOne(t, s, ev("order", "same-id", nil))
	appendOne(t, s, ev("invoice", "same-id", nil))
	registerView(t, s, "v", past(), 60)
	got := lease(t, s, "v", 10, 10)
	require.Len(t, got, 2, "two partitions, leased at once")
	assert.NotEqual(t, got[0].LeaseID, got[1].LeaseID)
	for _, e := range got {
		_, err := s.Ack(ctx, "v", e.Decider, e.DeciderID, e.Offset, e.LeaseID)
		require.NoError(t, err)
	}
}

// fstore-sql wrote one row per view on every append.
func TestAppendsWriteNothingPerView(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	for i := range 10 {
		registerView(t, s, fmt.Sprint("v", i), nil, 60)
	}
	for i := range 20 {
		appendOne(t, s, ev("order", fmt.Sprint("s", i), nil))
	}
	var n int
	require.NoError(t, connect(t, s).QueryRow(ctx, `SELECT count(*) FROM view_partitions`).Scan(&n))
	assert.Zero(t, n, "appends touch no view; a view scans the log when it is polled")
	assert.Len(t, lease(t, s, "v3", 100, 1), 20)
}

func TestMaxPerPartitionAndPartialAck(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	last := chain(t, s, "order", "o", 10)
	registerView(t, s, "v", past(), 60)
	got := lease(t, s, "v", 1, 5)
	require.Len(t, got, 5)
	for i := 1; i < len(got); i++ {
		assert.Less(t, got[i-1].Offset, got[i].Offset, "offset order")
		assert.Equal(t, got[0].LeaseID, got[i].LeaseID, "one lease for the partition")
	}
	_, err := s.Ack(ctx, "v", "order", "o", got[2].Offset, got[0].LeaseID)
	require.NoError(t, err, "ack part of what was handed out")
	rest := lease(t, s, "v", 1, 100)
	require.Len(t, rest, 7)
	assert.Equal(t, got[3].EventID, rest[0].EventID)
	assert.Equal(t, last.EventID, rest[6].EventID)
}

func TestNackReleasesOrDelays(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	appendOne(t, s, ev("order", "o", nil))
	registerView(t, s, "v", past(), 60)
	got := lease(t, s, "v", 1, 1)
	require.Len(t, got, 1)
	p, err := s.Nack(ctx, "v", "order", "o", got[0].LeaseID, 0, "")
	require.NoError(t, err)
	assert.Equal(t, 1, p.Attempts)
	again := lease(t, s, "v", 1, 1)
	require.Len(t, again, 1, "released at once")
	assert.Equal(t, got[0].EventID, again[0].EventID)

	p, err = s.Nack(ctx, "v", "order", "o", again[0].LeaseID, 800*time.Millisecond, "")
	require.NoError(t, err)
	require.NotNil(t, p.RetryAt)
	assert.Empty(t, lease(t, s, "v", 1, 1), "not before the delay")
	later := leaseWithin(t, s, "v", 10*time.Second)
	assert.Equal(t, got[0].EventID, later[0].EventID)
}

// A partition with a long backlog must not starve the others.
func TestLeasesAreFair(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	chain(t, s, "order", "busy", 100)
	for i := range 10 {
		appendOne(t, s, ev("order", fmt.Sprint("quiet-", i), nil))
	}
	registerView(t, s, "v", past(), 60)
	served := map[string]bool{}
	for range 11 {
		got := lease(t, s, "v", 1, 1)
		require.Len(t, got, 1)
		served[got[0].DeciderID] = true
		_, err := s.Ack(ctx, "v", "order", got[0].DeciderID, got[0].Offset, got[0].LeaseID)
		require.NoError(t, err)
	}
	assert.Len(t, served, 11, "in 11 leases every partition was served once")
}

// fstore-sql's poll scanned and sorted every partition. Here an empty poll
// reads about as much with 5,000 caught-up partitions as with 5: counted in
// buffers, not timed.
func TestEmptyPollCostDoesNotGrowWithPartitions(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	batch := make([]store.NewEvent, 0, 5000)
	for i := range 5000 {
		batch = append(batch, ev("order", fmt.Sprint("s", i), nil))
	}
	for i := 0; i < len(batch); i += 1000 {
		_, err := s.AppendEvents(ctx, batch[i:i+1000])
		require.NoError(t, err)
	}
	registerView(t, s, "many", past(), 60)
	registerView(t, s, "few", past(), 60)
	conn := connect(t, s)
	_, err := conn.Exec(ctx, `SELECT fstore_discover('many'); SELECT fstore_discover('few');
		DELETE FROM view_partitions WHERE view = 'few' AND decider_id NOT IN ('s1','s2','s3','s4','s5');
		UPDATE view_partitions SET acked_offset = head_offset`)
	require.NoError(t, err)
	pollBuffers := func(view string) int {
		return buffersTouched(t, conn, `SELECT * FROM stream_events($1, 100)`, view)
	}
	pollBuffers("few") // warm caches and plans
	pollBuffers("many")
	few, many := pollBuffers("few"), pollBuffers("many")
	t.Logf("buffers read by an empty poll: 5 partitions %d, 5000 partitions %d", few, many)
	assert.LessOrEqual(t, many, few+10)
}

// A view replaying a log longer than one scan window (50,000 offsets)
// catches up over several polls and delivers every stream.
func TestReplayCatchesUpInWindows(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	conn := connect(t, s)
	// 60,000 first events of 60,000 streams, appended in SQL for speed.
	_, err := conn.Exec(ctx, `INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
		SELECT 'created', gen_random_uuid(), 'order', 's' || i, '{}', gen_random_uuid(), NULL
		FROM generate_series(1, 60000) i`)
	require.NoError(t, err)
	first := registerView(t, s, "v", past(), 60) // its status scans once
	assert.Less(t, first.Status.Partitions, int64(60000), "one window at a time")
	second, err := s.GetView(ctx, "v")
	require.NoError(t, err)
	assert.Equal(t, int64(60000), second.Status.Partitions, "the next poll scans the rest")
	assert.Equal(t, int64(60000), second.Status.EventsPending)
}

// Listing views (GET /v1/views, a metrics scrape) costs the same number of
// statements with 20 views as with one: statuses are read for all at once.
func TestListingViewsCostsConstantQueries(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	appendOne(t, s, ev("order", "o", nil))
	count := func() int64 {
		before := store.Queries(s)
		views, err := s.ListViews(ctx)
		require.NoError(t, err)
		require.NotEmpty(t, views)
		return store.Queries(s) - before
	}
	registerView(t, s, "v0", past(), 60)
	one := count()
	for i := 1; i < 20; i++ {
		registerView(t, s, fmt.Sprint("v", i), past(), 60)
	}
	twenty := count()
	t.Logf("statements to list views: 1 view %d, 20 views %d", one, twenty)
	assert.Equal(t, one, twenty)
	assert.LessOrEqual(t, one, int64(3))
}
