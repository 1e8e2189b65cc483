package store_test

import (
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

func TestAppendAndReadStream(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")

	first := appendOne(t, s, ev("order", "o-1", nil))
	second := appendOne(t, s, ev("order", "o-1", &first.EventID))
	appendOne(t, s, ev("order", "o-2", nil))

	got, err := s.ReadEvents(ctx, store.ReadQuery{Decider: "order", DeciderID: "o-1", Limit: 100})
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, first.EventID, got[0].EventID)
	assert.Equal(t, second.EventID, got[1].EventID)
	assert.Equal(t, first.EventID, *got[1].PreviousID)
	assert.Less(t, got[0].Offset, got[1].Offset)
	assert.JSONEq(t, `{"n":1}`, string(got[0].Data))

	last, err := s.LastEvent(ctx, "order", "o-1")
	require.NoError(t, err)
	assert.Equal(t, second.EventID, last.EventID)

	byID, err := s.GetEvent(ctx, second.EventID)
	require.NoError(t, err)
	assert.Equal(t, second, byID)

	_, err = s.GetEvent(ctx, uuid.New())
	assert.ErrorIs(t, err, store.ErrNotFound)
	_, err = s.LastEvent(ctx, "order", "nope")
	assert.ErrorIs(t, err, store.ErrNotFound)
}

func TestAppendRetryIsIdempotent(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	e := ev("order", "o-1", nil)
	e.Data = json.RawMessage(`{"b": 2, "a": 1}`)

	res, err := s.AppendEvents(ctx, []store.NewEvent{e})
	require.NoError(t, err)
	require.True(t, res.Created)

	// The same event again, its JSON spelled differently: the stored one.
	e.Data = json.RawMessage(`{"a":1,"b":2}`)
	again, err := s.AppendEvents(ctx, []store.NewEvent{e})
	require.NoError(t, err)
	assert.False(t, again.Created)
	assert.Equal(t, res.Events, again.Events)

	// Same event_id, other content: refused.
	other := e
	other.Data = json.RawMessage(`{"a":2}`)
	_, err = s.AppendEvents(ctx, []store.NewEvent{other})
	assert.ErrorIs(t, err, store.ErrDuplicateEventID)
	var appendErr *store.AppendError
	require.ErrorAs(t, err, &appendErr)
	assert.Equal(t, e.EventID, appendErr.EventID)
}

func TestAppendConflicts(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	register(t, s, "invoice", "created")
	first := appendOne(t, s, ev("order", "o-1", nil))
	second := appendOne(t, s, ev("order", "o-1", &first.EventID))
	otherStream := appendOne(t, s, ev("invoice", "o-1", nil))

	tests := map[string]struct {
		event    store.NewEvent
		wantLast *uuid.UUID
	}{
		"previous_id not the last event":          {ev("order", "o-1", &first.EventID), &second.EventID},
		"null previous_id on a non-empty stream":  {ev("order", "o-1", nil), &second.EventID},
		"previous_id of another decider's stream": {ev("order", "o-1", &otherStream.EventID), &second.EventID},
		"previous_id that does not exist":         {ev("order", "o-1", ptr(uuid.New())), &second.EventID},
		"previous_id on an empty stream":          {ev("order", "o-9", &first.EventID), nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := s.AppendEvents(ctx, []store.NewEvent{tc.event})
			require.ErrorIs(t, err, store.ErrConcurrencyConflict)
			var appendErr *store.AppendError
			require.ErrorAs(t, err, &appendErr)
			assert.Equal(t, tc.wantLast, appendErr.LastEventID)
		})
	}
}

func TestAppendUnregisteredType(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	e := ev("order", "o-1", nil)
	e.EventVersion = 2
	_, err := s.AppendEvents(ctx, []store.NewEvent{e})
	assert.ErrorIs(t, err, store.ErrNotRegistered)
	_, err = s.AppendEvents(ctx, []store.NewEvent{ev("invoice", "o-1", nil)})
	assert.ErrorIs(t, err, store.ErrNotRegistered)
}

// fstore-sql could not set final through append_event; once set, nothing may follow.
func TestFinalStream(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	first := appendOne(t, s, ev("order", "o-1", nil))
	closing := ev("order", "o-1", &first.EventID)
	closing.Final = true
	last := appendOne(t, s, closing)
	require.True(t, last.Final)

	for name, e := range map[string]store.NewEvent{
		"after the final event": ev("order", "o-1", &last.EventID),
		"with a null previous":  ev("order", "o-1", nil),
	} {
		_, err := s.AppendEvents(ctx, []store.NewEvent{e})
		assert.ErrorIs(t, err, store.ErrStreamFinal, name)
	}
}

func TestBatchIsAtomic(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	a1 := ev("order", "a", nil)
	a2 := ev("order", "a", &a1.EventID) // chains within the batch
	b1 := ev("order", "b", nil)
	bad := ev("order", "a", nil) // a second first event of stream a
	_, err := s.AppendEvents(ctx, []store.NewEvent{a1, a2, b1, bad, ev("order", "c", nil)})
	require.ErrorIs(t, err, store.ErrConcurrencyConflict)
	var appendErr *store.AppendError
	require.ErrorAs(t, err, &appendErr)
	assert.Equal(t, 3, appendErr.Index)

	all, err := s.ReadEvents(ctx, store.ReadQuery{Limit: 100})
	require.NoError(t, err)
	assert.Empty(t, all, "a failed batch stores nothing")

	unregistered := ev("order", "d", nil)
	unregistered.Event = "shipped"
	_, err = s.AppendEvents(ctx, []store.NewEvent{ev("order", "c", nil), unregistered})
	require.ErrorIs(t, err, store.ErrNotRegistered)
	require.ErrorAs(t, err, &appendErr)
	assert.Equal(t, 1, appendErr.Index)

	res, err := s.AppendEvents(ctx, []store.NewEvent{a1, a2, b1})
	require.NoError(t, err)
	require.True(t, res.Created)
	require.Len(t, res.Events, 3)
	for i, want := range []uuid.UUID{a1.EventID, a2.EventID, b1.EventID} {
		assert.Equal(t, want, res.Events[i].EventID, "input order")
	}
	assert.Less(t, res.Events[0].Offset, res.Events[1].Offset)

	// The whole batch again: a retry, nothing new.
	again, err := s.AppendEvents(ctx, []store.NewEvent{a1, a2, b1})
	require.NoError(t, err)
	assert.False(t, again.Created)
	assert.Equal(t, res.Events, again.Events)
}

// fstore-sql's get_last_event ignored its decider argument.
func TestLastEventIsPerDecider(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	register(t, s, "invoice", "created")
	order := appendOne(t, s, ev("order", "shared-id", nil))
	invoice := appendOne(t, s, ev("invoice", "shared-id", nil))

	got, err := s.LastEvent(ctx, "order", "shared-id")
	require.NoError(t, err)
	assert.Equal(t, order.EventID, got.EventID)
	got, err = s.LastEvent(ctx, "invoice", "shared-id")
	require.NoError(t, err)
	assert.Equal(t, invoice.EventID, got.EventID)

	// And the SQL function that fstore-sql users call.
	conn := connect(t, s)
	var id uuid.UUID
	require.NoError(t, conn.QueryRow(ctx, `SELECT event_id FROM get_last_event('shared-id', 'order')`).Scan(&id))
	assert.Equal(t, order.EventID, id)
}

// fstore-sql let two concurrent first appends to one stream both commit.
func TestConcurrentFirstAppendsOneWins(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	results := race(t, 20, func(int) store.NewEvent { return ev("order", "new", nil) }, s)
	assertOneWinner(t, s, results, "new")
}

func TestConcurrentAppendsSamePreviousOneWins(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	first := appendOne(t, s, ev("order", "o", nil))
	results := race(t, 10, func(int) store.NewEvent { return ev("order", "o", &first.EventID) }, s)
	assertOneWinner(t, s, results, "o")
}

// race appends n events at once, each from its own connection, after a barrier.
func race(t *testing.T, n int, mk func(int) store.NewEvent, s *store.Store) []error {
	t.Helper()
	stores := make([]*store.Store, n)
	for i := range stores {
		stores[i] = storetest.NewStoreOn(t, s)
	}
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		e := mk(i)
		wg.Go(func() {
			<-start
			_, errs[i] = stores[i].AppendEvents(ctx, []store.NewEvent{e})
		})
	}
	close(start)
	wg.Wait()
	return errs
}

func assertOneWinner(t *testing.T, s *store.Store, errs []error, deciderID string) {
	t.Helper()
	wins := 0
	for _, err := range errs {
		if err == nil {
			wins++
			continue
		}
		require.ErrorIs(t, err, store.ErrConcurrencyConflict)
	}
	assert.Equal(t, 1, wins, "exactly one append may win")
	last, err := s.LastEvent(ctx, "order", deciderID)
	require.NoError(t, err)
	for _, err := range errs {
		var appendErr *store.AppendError
		if errors.As(err, &appendErr) {
			assert.Equal(t, last.EventID, *appendErr.LastEventID, "the conflict names the winner")
		}
	}
}

// UPDATE, DELETE and TRUNCATE are refused with fstore's own SQLSTATE, not
// silently ignored as in fstore-sql.
func TestEventsAreImmutable(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	appendOne(t, s, ev("order", "o", nil))
	conn := connect(t, s)
	for _, stmt := range []string{
		`UPDATE events SET data = '{}'`, `DELETE FROM events`, `TRUNCATE events`,
		`UPDATE deciders SET description = 'x'`, `DELETE FROM deciders`, `TRUNCATE deciders CASCADE`,
	} {
		_, err := conn.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		require.ErrorAs(t, err, &pgErr, stmt)
		assert.Equal(t, "FS004", pgErr.Code, stmt)
	}
	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&n))
	assert.Equal(t, 1, n)
}

// The SQL functions raise their own SQLSTATEs, so callers never parse messages.
func TestSQLFunctionsRaiseOwnCodes(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	conn := connect(t, s)
	_, err := conn.Exec(ctx, `SELECT register_decider_event('order', 'created')`)
	require.NoError(t, err)
	var firstID uuid.UUID
	require.NoError(t, conn.QueryRow(ctx, `SELECT event_id FROM append_event('created', gen_random_uuid(), 'order', 'o',
		'{}', gen_random_uuid(), NULL, 1, TRUE)`).Scan(&firstID))

	cases := map[string]struct{ sql, code string }{
		"final":          {`SELECT append_event('created', gen_random_uuid(), 'order', 'o', '{}', gen_random_uuid(), '` + firstID.String() + `')`, "FS002"},
		"wrong stream":   {`SELECT append_event('created', gen_random_uuid(), 'order', 'p', '{}', gen_random_uuid(), '` + firstID.String() + `')`, "FS001"},
		"not registered": {`SELECT append_event('deleted', gen_random_uuid(), 'order', 'q', '{}', gen_random_uuid(), NULL)`, "FS005"},
		"duplicate id":   {`SELECT append_event('created', '` + firstID.String() + `', 'order', 'r', '{}', gen_random_uuid(), NULL)`, "FS003"},
		"registration":   {`SELECT register_decider_event('order', 'created', 'other description')`, "23505"},
	}
	for name, tc := range cases {
		_, err := conn.Exec(ctx, tc.sql)
		var pgErr *pgconn.PgError
		require.ErrorAs(t, err, &pgErr, name)
		assert.Equal(t, tc.code, pgErr.Code, name)
	}
}

func connect(t *testing.T, s *store.Store) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, storetest.URL(t, s))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(ctx) })
	return conn
}

// A client that retries while its first attempt is still running sends the
// same event twice at once: both must succeed, one stored and one replayed.
func TestConcurrentIdenticalRetries(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	first := ev("order", "retried", nil)
	errs := race(t, 10, func(int) store.NewEvent { return first }, s)
	for _, err := range errs {
		require.NoError(t, err)
	}

	second := ev("order", "retried", &first.EventID)
	third := ev("order", "retried", &second.EventID)
	batch := []store.NewEvent{second, third}
	stores := make([]*store.Store, 5)
	for i := range stores {
		stores[i] = storetest.NewStoreOn(t, s)
	}
	created := 0
	var mu sync.Mutex
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() {
			<-start
			res, err := stores[i].AppendEvents(ctx, batch)
			assert.NoError(t, err)
			mu.Lock()
			defer mu.Unlock()
			if res.Created {
				created++
			}
		})
	}
	close(start)
	wg.Wait()
	assert.Equal(t, 1, created, "one batch stored, the others replayed")
	got, err := s.ReadEvents(ctx, store.ReadQuery{Decider: "order", DeciderID: "retried", Limit: 10})
	require.NoError(t, err)
	assert.Len(t, got, 3)
}

// The append checks run once per statement (0007): a batch may name an
// earlier event of its own as previous_id, never a later one, which would
// put a stream's events out of offset order.
func TestBatchNamesOnlyEarlierEventsOfItsOwn(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	first := ev("order", "o-1", nil)
	second := ev("order", "o-1", &first.EventID)
	_, err := s.AppendEvents(ctx, []store.NewEvent{second, first})
	var appendErr *store.AppendError
	require.ErrorAs(t, err, &appendErr)
	assert.ErrorIs(t, err, store.ErrConcurrencyConflict)
	assert.Equal(t, 0, appendErr.Index)
	assert.Zero(t, countEvents(t, s), "nothing of the batch is stored")
	res, err := s.AppendEvents(ctx, []store.NewEvent{first, second})
	require.NoError(t, err)
	assert.Less(t, res.Events[0].Offset, res.Events[1].Offset)
}
