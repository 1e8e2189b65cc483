package store_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// The book-lending example of docs/dcb.md: a copy is lent to a reader when
// the copy is available and the reader has fewer than 2 loans.
var libraryTypes = []string{"copy_added", "copy_lent", "copy_returned", "reader_registered"}

func lib(event, stream string, data string) store.NewEvent {
	return store.NewEvent{Event: event, EventID: uuid.New(), EventVersion: 1, Decider: "library", DeciderID: stream,
		Data: json.RawMessage(data), CommandID: uuid.New()}
}

func bookQuery(copyID string) store.Query {
	return store.Query{Items: []store.QueryItem{{
		Types:   []string{"copy_lent", "copy_returned"},
		Matches: []json.RawMessage{json.RawMessage(fmt.Sprintf(`{"copy_id":%q}`, copyID))},
	}}}
}

func offsets(evs []store.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Offset
	}
	return out
}

func TestQueryEvents(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "library", libraryTypes...)
	res, err := s.AppendEvents(ctx, []store.NewEvent{
		lib("copy_added", "c-1", `{"copy_id":"c-1","title":"Dune"}`),
		lib("copy_added", "c-2", `{"copy_id":"c-2","title":"Emma"}`),
		lib("reader_registered", "r-1", `{"reader_id":"r-1","tags":["vip","kid"]}`),
		lib("copy_lent", "l-1", `{"copy_id":"c-1","reader_id":"r-1","n":1.0}`),
		lib("copy_lent", "l-2", `{"copy_id":"c-2","reader_id":"r-2"}`),
	})
	require.NoError(t, err)
	o := offsets(res.Events)

	q := func(items ...store.QueryItem) store.Query { return store.Query{Items: items} }
	m := func(s string) json.RawMessage { return json.RawMessage(s) }
	cases := []struct {
		name  string
		query store.Query
		want  []int64
	}{
		{"types OR-ed", q(store.QueryItem{Types: []string{"copy_added", "reader_registered"}}), o[:3]},
		{"matches AND-ed", q(store.QueryItem{Matches: []json.RawMessage{m(`{"copy_id":"c-1"}`), m(`{"reader_id":"r-1"}`)}}), o[3:4]},
		{"type and match", q(store.QueryItem{Types: []string{"copy_added"}, Matches: []json.RawMessage{m(`{"copy_id":"c-1"}`)}}), o[:1]},
		{"items OR-ed", q(store.QueryItem{Types: []string{"reader_registered"}}, store.QueryItem{Matches: []json.RawMessage{m(`{"copy_id":"c-2"}`)}}), []int64{o[1], o[2], o[4]}},
		{"containment in arrays", q(store.QueryItem{Matches: []json.RawMessage{m(`{"tags":["kid"]}`)}}), o[2:3]},
		{"numbers by value", q(store.QueryItem{Matches: []json.RawMessage{m(`{"n":1}`)}}), o[3:4]},
		{"empty item matches all", q(store.QueryItem{}), o},
		{"no match", q(store.QueryItem{Types: []string{"nope"}}), []int64{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := s.QueryEvents(ctx, c.query, 0, 100)
			require.NoError(t, err)
			assert.Equal(t, c.want, offsets(got.Events))
			assert.GreaterOrEqual(t, got.Position, o[4], "the position covers every committed event")
			assert.False(t, got.More)
		})
	}

	t.Run("paging", func(t *testing.T) {
		all := q(store.QueryItem{})
		page, err := s.QueryEvents(ctx, all, 0, 2)
		require.NoError(t, err)
		assert.Equal(t, o[:2], offsets(page.Events))
		assert.True(t, page.More)
		assert.Equal(t, o[1], page.Position, "a full page's position is its last offset")
		var seen []int64
		after := int64(0)
		for {
			page, err := s.QueryEvents(ctx, all, after, 2)
			require.NoError(t, err)
			seen = append(seen, offsets(page.Events)...)
			after = page.Position
			if !page.More {
				break
			}
		}
		assert.Equal(t, o, seen)
	})

	t.Run("invalid", func(t *testing.T) {
		for _, bad := range []store.Query{
			{},
			q(store.QueryItem{Matches: []json.RawMessage{m(`{}`)}}),
			q(store.QueryItem{Matches: []json.RawMessage{m(`[1]`)}}),
		} {
			_, err := s.QueryEvents(ctx, bad, 0, 10)
			assert.ErrorIs(t, err, store.ErrInvalid, "%+v", bad)
		}
	})
}

func TestConditionalAppend(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "library", libraryTypes...)
	appendOne(t, s, lib("copy_added", "c-1", `{"copy_id":"c-1"}`))

	read, err := s.QueryEvents(ctx, bookQuery("c-1"), 0, 100)
	require.NoError(t, err)
	require.Empty(t, read.Events)
	cond := store.Condition{Query: bookQuery("c-1"), After: read.Position}

	lend := lib("copy_lent", "loan-1", `{"copy_id":"c-1","reader_id":"r-1"}`)
	res, err := s.AppendEventsIf(ctx, []store.NewEvent{lend}, cond)
	require.NoError(t, err)
	require.True(t, res.Created)
	lent := res.Events[0]

	// A retry of what went through is answered as stored, unchecked.
	again, err := s.AppendEventsIf(ctx, []store.NewEvent{lend}, cond)
	require.NoError(t, err)
	assert.False(t, again.Created)
	assert.Equal(t, res.Events, again.Events)

	// A second decision from the same read: the copy was lent since.
	before := countEvents(t, s)
	other := lib("copy_lent", "loan-2", `{"copy_id":"c-1","reader_id":"r-2"}`)
	unrelated := lib("copy_added", "c-9", `{"copy_id":"c-9"}`)
	_, err = s.AppendEventsIf(ctx, []store.NewEvent{unrelated, other}, cond)
	require.ErrorIs(t, err, store.ErrConditionFailed)
	var condErr *store.ConditionError
	require.ErrorAs(t, err, &condErr)
	assert.Equal(t, lent.Offset, condErr.Offset)
	assert.Equal(t, before, countEvents(t, s), "nothing of the batch is stored")

	// Reading again gives a position past the loan: the decision may go on.
	read, err = s.QueryEvents(ctx, bookQuery("c-1"), 0, 100)
	require.NoError(t, err)
	require.Len(t, read.Events, 1)
	_, err = s.AppendEventsIf(ctx, []store.NewEvent{other}, store.Condition{Query: bookQuery("c-1"), After: read.Position})
	require.NoError(t, err)

	// The condition holds but a previous_id does not: both must hold.
	stale := lib("copy_returned", "loan-1", `{"copy_id":"c-9"}`)
	_, err = s.AppendEventsIf(ctx, []store.NewEvent{stale}, store.Condition{Query: bookQuery("c-9"), After: 0})
	require.ErrorIs(t, err, store.ErrConcurrencyConflict)
	var appendErr *store.AppendError
	require.ErrorAs(t, err, &appendErr)
	assert.Equal(t, lend.EventID, *appendErr.LastEventID)

	_, err = s.AppendEventsIf(ctx, []store.NewEvent{lib("copy_added", "c-3", `{}`)}, store.Condition{})
	assert.ErrorIs(t, err, store.ErrInvalid)
}

func countEvents(t *testing.T, s *store.Store) int {
	t.Helper()
	evs, err := s.ReadEvents(ctx, store.ReadQuery{Limit: 10000})
	require.NoError(t, err)
	return len(evs)
}

// Two decisions to lend the same copy, from the same read, start at the same
// moment on separate connections: exactly one is stored, every round. Each
// appends to a stream of its own, so only the condition can refuse one.
func TestOverlappingConditionalAppendsOneWins(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "library", libraryTypes...)
	racers := []*store.Store{storetest.NewStoreOn(t, s), storetest.NewStoreOn(t, s)}

	for round := range 100 {
		copyID := fmt.Sprintf("c-%d", round)
		read, err := s.QueryEvents(ctx, bookQuery(copyID), 0, 100)
		require.NoError(t, err)
		cond := store.Condition{Query: bookQuery(copyID), After: read.Position}

		errs := make([]error, len(racers))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, r := range racers {
			e := lib("copy_lent", fmt.Sprintf("loan-%d-%d", round, i), fmt.Sprintf(`{"copy_id":%q,"reader_id":"r-%d"}`, copyID, i))
			wg.Go(func() {
				<-start
				_, errs[i] = r.AppendEventsIf(ctx, []store.NewEvent{e}, cond)
			})
		}
		close(start)
		wg.Wait()

		won := 0
		for _, err := range errs {
			if err == nil {
				won++
			} else {
				require.ErrorIs(t, err, store.ErrConditionFailed, "round %d", round)
			}
		}
		require.Equal(t, 1, won, "round %d: %v", round, errs)
		got, err := s.QueryEvents(ctx, bookQuery(copyID), 0, 100)
		require.NoError(t, err)
		require.Len(t, got.Events, 1, "round %d", round)
	}
}

// Decisions about different copies do not wait for each other: one holds its
// transaction open, uncommitted, while the other goes through. A decision
// about the same copy waits, and then fails.
func TestConditionalAppendsWaitOnlyWhenTheyOverlap(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "library", libraryTypes...)
	// An open conditional append lending c-1, by hand.
	tx := handTx(t, s)
	var err error
	q1, _ := json.Marshal(bookQuery("c-1"))
	_, err = tx.Exec(ctx, `SELECT * FROM append_events_if($1, $2, 0)`,
		fmt.Sprintf(`[{"event":"copy_lent","event_id":%q,"decider":"library","decider_id":"loan-a","data":{"copy_id":"c-1"},"command_id":%q,"previous_id":null}]`,
			uuid.New(), uuid.New()), q1)
	require.NoError(t, err)

	// Both run concurrently with it: c-2 finishes while it is open.
	other := storetest.NewStoreOn(t, s)
	res, err := other.AppendEventsIf(ctx, []store.NewEvent{lib("copy_lent", "loan-b", `{"copy_id":"c-2"}`)},
		store.Condition{Query: bookQuery("c-2"), After: 0})
	require.NoError(t, err)
	require.True(t, res.Created)

	same := make(chan error, 1)
	go func() {
		_, err := other.AppendEventsIf(ctx, []store.NewEvent{lib("copy_lent", "loan-c", `{"copy_id":"c-1"}`)},
			store.Condition{Query: bookQuery("c-1"), After: 0})
		same <- err
	}()
	waitForLockWait(t, s)
	select {
	case err := <-same:
		t.Fatalf("an overlapping conditional append did not wait: %v", err)
	default:
	}
	require.NoError(t, tx.Commit(ctx))
	assert.ErrorIs(t, <-same, store.ErrConditionFailed)
}

// Conditions that cannot be keyed take the global key: a query with an item
// that matches every event, and an append with more than 64 keys. Each waits
// for a pending conditional append it cannot tell apart, then sees its event.
func TestGlobalKeyConditionsWait(t *testing.T) {
	t.Parallel()
	fields := map[string]int{}
	for i := range 70 {
		fields[fmt.Sprintf("f%d", i)] = i
	}
	many, _ := json.Marshal(fields)
	for name, tc := range map[string]struct {
		query store.Query
		data  string
	}{
		"match-all item":    {store.Query{Items: []store.QueryItem{{}}}, `{"copy_id":"c-9"}`},
		"more than 64 keys": {bookQuery("c-1"), string(many)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := storetest.NewStore(t)
			register(t, s, "library", libraryTypes...)
			tx := handTx(t, s)
			q1, _ := json.Marshal(bookQuery("c-1"))
			var pending int64
			require.NoError(t, tx.QueryRow(ctx, `SELECT "offset" FROM append_events_if($1, $2, 0)`,
				fmt.Sprintf(`[{"event":"copy_lent","event_id":%q,"decider":"library","decider_id":"loan-a","data":{"copy_id":"c-1"},"command_id":%q,"previous_id":null}]`,
					uuid.New(), uuid.New()), q1).Scan(&pending))

			done := make(chan error, 1)
			go func() {
				_, err := s.AppendEventsIf(ctx, []store.NewEvent{lib("copy_lent", "loan-b", tc.data)},
					store.Condition{Query: tc.query, After: 0})
				done <- err
			}()
			waitForLockWait(t, s)
			require.NoError(t, tx.Commit(ctx))
			var ce *store.ConditionError
			require.ErrorAs(t, <-done, &ce)
			assert.Equal(t, pending, ce.Offset)
		})
	}
}

// handTx opens a transaction on a connection of its own to s's database,
// for a test to play a writer by hand; rolled back at the end unless committed.
func handTx(t *testing.T, s *store.Store) pgx.Tx {
	t.Helper()
	conn, err := pgx.Connect(ctx, storetest.URL(t, s))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(ctx) })
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	return tx
}

// waitForLockWait returns once a backend of s's database waits for a lock.
func waitForLockWait(t *testing.T, s *store.Store) {
	t.Helper()
	conn, err := pgx.Connect(ctx, storetest.URL(t, s))
	require.NoError(t, err)
	defer conn.Close(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var waiting bool
		require.NoError(t, conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks l
			JOIN pg_stat_activity a ON a.pid = l.pid WHERE NOT l.granted AND a.datname = current_database())`).Scan(&waiting))
		if waiting {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no backend waits for a lock")
}

// An unconditional append of an event matching a decision's query, racing
// the decision: either the decision fails, or the event lands after the
// decision's events in the log. Never before them unseen. Both outcomes
// occur over the rounds (checked), so the race is real.
func TestUnconditionalAppendIsNeverLostToACondition(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "library", libraryTypes...)
	decider, writer := storetest.NewStoreOn(t, s), storetest.NewStoreOn(t, s)

	var failed, after int
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 150 {
		copyID := fmt.Sprintf("c-%d", round)
		read, err := s.QueryEvents(ctx, bookQuery(copyID), 0, 100)
		require.NoError(t, err)

		var condRes, plainRes store.AppendResult
		var condErr, plainErr error
		start := make(chan struct{})
		var wg sync.WaitGroup
		// Vary which side's statement reaches PostgreSQL first: hold one
		// back by a random 0-2 ms (jitter, not a wait for anything).
		jitter := time.Duration(rng.IntN(2000)) * time.Microsecond
		spin := func(side int) {
			if round%2 == side {
				for t0 := time.Now(); time.Since(t0) < jitter; {
					runtime.Gosched()
				}
			}
		}
		wg.Go(func() {
			<-start
			spin(0)
			condRes, condErr = decider.AppendEventsIf(ctx,
				[]store.NewEvent{lib("copy_lent", "loan-"+copyID, fmt.Sprintf(`{"copy_id":%q}`, copyID))},
				store.Condition{Query: bookQuery(copyID), After: read.Position})
		})
		wg.Go(func() {
			<-start
			spin(1)
			plain := []store.NewEvent{lib("copy_returned", "ret-"+copyID, fmt.Sprintf(`{"copy_id":%q}`, copyID))}
			if round%4 >= 2 { // the batch path as well as the single one
				plain = append(plain, lib("copy_added", "other-"+copyID, `{}`))
			}
			plainRes, plainErr = writer.AppendEvents(ctx, plain)
		})
		close(start)
		wg.Wait()
		require.NoError(t, plainErr)
		unconditional := plainRes.Events[0].Offset
		if condErr != nil {
			require.ErrorIs(t, condErr, store.ErrConditionFailed)
			var ce *store.ConditionError
			require.ErrorAs(t, condErr, &ce)
			assert.Equal(t, unconditional, ce.Offset)
			failed++
			continue
		}
		require.Greater(t, unconditional, condRes.Events[0].Offset,
			"round %d: the unconditional event precedes the decision's, which did not see it", round)
		after++
	}
	t.Logf("decision failed %d times, unconditional event after it %d times", failed, after)
	assert.Positive(t, failed)
	assert.Positive(t, after)
}

// The deterministic form of the race above: an unconditional writer holds an
// uncommitted matching event at a lower offset; the decision waits for it and
// then fails on it.
func TestConditionWaitsForUncommittedWriters(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "library", libraryTypes...)
	tx := handTx(t, s)
	var err error
	var pending int64
	require.NoError(t, tx.QueryRow(ctx, `SELECT "offset" FROM append_event('copy_returned', $1, 'library', 'ret-1',
		'{"copy_id":"c-1"}', $2, NULL)`, uuid.New(), uuid.New()).Scan(&pending))

	done := make(chan error, 1)
	go func() {
		_, err := s.AppendEventsIf(ctx, []store.NewEvent{lib("copy_lent", "loan-1", `{"copy_id":"c-1"}`)},
			store.Condition{Query: bookQuery("c-1"), After: 0})
		done <- err
	}()
	waitForLockWait(t, s)
	require.NoError(t, tx.Commit(ctx))
	err = <-done
	var ce *store.ConditionError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, pending, ce.Offset)
}

// A plain batch that starts a stream a pending conditional append started
// too waits for it, and is answered with a concurrency conflict.
func TestPlainAppendWaitsForConditionalOnOneStream(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "library", libraryTypes...)
	// The conditional append, by hand, up to its check.
	tx := handTx(t, s)
	var err error
	q, _ := json.Marshal(bookQuery("c-1"))
	id := uuid.New()
	_, err = tx.Exec(ctx, `SELECT fstore_condition_lock($1, '{copy_lent}', '{"{\"copy_id\":\"c-1\"}"}')`, q)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SELECT append_event('copy_lent', $1, 'library', 'shared', '{"copy_id":"c-1"}', $2, NULL)`, id, uuid.New())
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() {
		_, err := s.AppendEvents(ctx, []store.NewEvent{
			lib("copy_added", "elsewhere", `{}`), lib("copy_added", "shared", `{}`)})
		done <- err
	}()
	waitForLockWait(t, s)
	var offending *int64
	require.NoError(t, tx.QueryRow(ctx, `SELECT fstore_condition_check($1, 0, $2)`, q, []uuid.UUID{id}).Scan(&offending))
	assert.Nil(t, offending)
	require.NoError(t, tx.Commit(ctx))
	assert.ErrorIs(t, <-done, store.ErrConcurrencyConflict)
}

// A conditional append waiting for an unconditional writer below it, which
// in turn waits for the conditional append's event (both start one stream):
// PostgreSQL breaks the deadlock by cancelling the conditional append, whose
// retry is answered with what happened: a concurrency conflict.
func TestConditionalAppendDeadlockIsRetried(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "library", libraryTypes...)
	// An unconditional writer, by hand, with an event below the decision's.
	tx := handTx(t, s)
	var err error
	_, err = tx.Exec(ctx, `SELECT append_event('copy_added', $1, 'library', 'elsewhere', '{}', $2, NULL)`, uuid.New(), uuid.New())
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() {
		_, err := s.AppendEventsIf(ctx, []store.NewEvent{lib("copy_lent", "shared", `{"copy_id":"c-1"}`)},
			store.Condition{Query: bookQuery("c-1"), After: 0})
		done <- err
	}()
	waitForLockWait(t, s) // the decision waits for the writer
	// The writer now starts the decision's stream, and waits for it: a
	// deadlock. The decision waited first, so it is cancelled first, and
	// retried; its retry may deadlock with the writer again, and then the
	// writer may be the one cancelled. Either way the decision's answer is
	// the truth, never "unavailable".
	_, err = tx.Exec(ctx, `SELECT append_event('copy_added', $1, 'library', 'shared', '{}', $2, NULL)`, uuid.New(), uuid.New())
	if err != nil {
		var pgErr *pgconn.PgError
		require.ErrorAs(t, err, &pgErr)
		require.Equal(t, "40P01", pgErr.Code)
		require.NoError(t, tx.Rollback(ctx))
		assert.NoError(t, <-done, "the writer gave way: the decision goes through")
		return
	}
	require.NoError(t, tx.Commit(ctx))
	err = <-done
	assert.ErrorIs(t, err, store.ErrConcurrencyConflict)
	assert.NotErrorIs(t, err, store.ErrUnavailable)
}

func TestAppendEventsIfSQL(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "library", libraryTypes...)
	conn, err := pgx.Connect(ctx, storetest.URL(t, s))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(ctx) })
	q, _ := json.Marshal(bookQuery("c-1"))
	events := func() string {
		return fmt.Sprintf(`[{"event":"copy_lent","event_id":%q,"decider":"library","decider_id":%q,"data":{"copy_id":"c-1"},"command_id":%q,"previous_id":null}]`,
			uuid.New(), uuid.NewString(), uuid.New())
	}
	var position int64
	require.NoError(t, conn.QueryRow(ctx, `SELECT query_position()`).Scan(&position))
	var first int64
	require.NoError(t, conn.QueryRow(ctx, `SELECT "offset" FROM append_events_if($1, $2, $3)`, events(), q, position).Scan(&first))
	_, err = conn.Exec(ctx, `SELECT * FROM append_events_if($1, $2, $3)`, events(), q, position)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	assert.Equal(t, "FS009", pgErr.Code)
	assert.Contains(t, pgErr.Message, fmt.Sprintf("offset %d", first))

	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM query_events($1)`, q).Scan(&n))
	assert.Equal(t, 1, n)
	_, err = conn.Exec(ctx, `SELECT * FROM query_events('{"items":[{"types":"copy_lent"}]}')`)
	require.ErrorAs(t, err, &pgErr)
	assert.Equal(t, "FS010", pgErr.Code)
}
