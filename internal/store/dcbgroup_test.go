package store_test

import (
	"encoding/json"
	"errors"
	"fmt"
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

// decision is one conditional append of a race.
type decision struct {
	s    *store.Store
	evs  []store.NewEvent
	cond store.Condition
}

// raceDecisions starts the decisions at the same moment and returns their errors.
func raceDecisions(ds []decision) []error {
	errs := make([]error, len(ds))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Go(func() {
			<-start
			_, errs[i] = d.s.AppendEventsIf(ctx, d.evs, d.cond)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// tagDecisions are the racers of a round: each subscribes a student of its
// own to one course, from the same read, half of them deciding on the
// course's subscriptions and half on the student's (whose query the other
// subscriptions match too, through their course tag: they overlap by
// different keys). Two stores of one connection each, six racers on each,
// so racers meet in groups of one and of several: all through the group
// function (fstore_append_if_group); the SQL API's path is raced by
// TestOverlappingTagDecisionsOneWinsInSQL.
func tagDecisions(t *testing.T, stores []*store.Store, round int) []decision {
	t.Helper()
	course := fmt.Sprintf("c-%d", round)
	byCourse := store.Query{Items: []store.QueryItem{{Types: []string{"student_subscribed"}, Tags: []string{"course:" + course}}}}
	read, err := stores[0].QueryEvents(ctx, byCourse, 0, 100)
	require.NoError(t, err)
	var ds []decision
	for i := range 12 {
		student := fmt.Sprintf("s-%d-%d", round, i)
		q := byCourse
		if i%2 == 1 {
			// The student's subscriptions, or any event of the course.
			q = store.Query{Items: []store.QueryItem{tagItem("student:" + student), tagItem("course:" + course)}}
		}
		ds = append(ds, decision{stores[i%len(stores)], []store.NewEvent{subscription(course, student)},
			store.Condition{Query: q, After: read.Position}})
	}
	return ds
}

// winners counts the decisions stored; every other must be refused by its
// condition.
func winners(t *testing.T, errs []error) int {
	t.Helper()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else {
			require.ErrorIs(t, err, store.ErrConditionFailed)
		}
	}
	return won
}

// Decisions on tags overlapping in every way (one course's tag, or a
// student's with the course's), racing alone and in groups from two
// stores: exactly one is stored, every round.
func TestOverlappingTagDecisionsOneWins(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "courses", courseTypes...)
	stores := []*store.Store{storetest.NewStoreOn(t, s), storetest.NewStoreOn(t, s)}
	for round := range 40 {
		require.Equal(t, 1, winners(t, raceDecisions(tagDecisions(t, stores, round))), "round %d", round)
	}
	t.Logf("groups formed: %d and %d", store.ConditionalGroups(stores[0]), store.ConditionalGroups(stores[1]))
}

// The same race with the key locks taken away (fstore_lock_keys, which both
// a lone conditional append and a group call, replaced by a pause): then
// decisions that overlap are stored together. The locks are what keeps it
// to one.
func TestOverlappingTagDecisionsNeedTheLocks(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "courses", courseTypes...)
	conn, err := pgx.Connect(ctx, storetest.URL(t, s))
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `CREATE OR REPLACE FUNCTION fstore_lock_keys(v_qkeys INT[], v_ekeys INT[], v_global BOOLEAN)
		RETURNS VOID LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.005); END $$`)
	require.NoError(t, err)
	stores := []*store.Store{storetest.NewStoreOn(t, s), storetest.NewStoreOn(t, s)}
	for round := range 50 {
		if winners(t, raceDecisions(tagDecisions(t, stores, round))) > 1 {
			return // the race lost without the locks
		}
	}
	t.Fatal("without key locks, 50 rounds of overlapping decisions never stored two: the race test cannot fail")
}

// Many conditional appends on one store at once are stored in groups, and
// each caller gets the answer of an append of its own: stored, refused by
// its condition, a retry answered as stored, a conflict, an unregistered
// type, whatever else is in its group.
func TestGroupedConditionalAppendsAnswerEachCaller(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "courses", courseTypes...)
	register(t, s, "library", libraryTypes...)
	taken := appendOne(t, s, subscription("full", "s-0"))
	retried := subscription("retried", "s-0")
	retriedCond := store.Condition{Query: store.Query{Items: []store.QueryItem{tagItem("course:retried")}}}
	_, err := s.AppendEventsIf(ctx, []store.NewEvent{retried}, retriedCond)
	require.NoError(t, err)

	for round := range 10 {
		type call struct {
			kind string
			d    decision
		}
		var calls []call
		for i := range 20 {
			own := subscription(fmt.Sprintf("r%d-own-%d", round, i), "s-1")
			calls = append(calls, call{"stored", decision{s, []store.NewEvent{own},
				store.Condition{Query: store.Query{Items: []store.QueryItem{tagItem(own.Tags[0])}}}}})
		}
		for range 4 { // a course someone subscribed to since position 0
			calls = append(calls, call{"refused", decision{s, []store.NewEvent{subscription("full", "s-9")},
				store.Condition{Query: store.Query{Items: []store.QueryItem{tagItem("course:full")}}}}})
		}
		calls = append(calls, call{"retry", decision{s, []store.NewEvent{retried}, retriedCond}})
		hot := fmt.Sprintf("r%d-hot", round)
		for range 4 { // overlapping in one group: one wins
			calls = append(calls, call{"contended", decision{s, []store.NewEvent{subscription(hot, uuid.NewString())},
				store.Condition{Query: store.Query{Items: []store.QueryItem{tagItem("course:" + hot)}}}}})
		}
		matched := lib("copy_lent", fmt.Sprintf("loan-%d", round), fmt.Sprintf(`{"copy_id":"r%d"}`, round))
		calls = append(calls, call{"stored", decision{s, []store.NewEvent{matched}, store.Condition{Query: bookQuery(fmt.Sprint("r", round))}}})
		stale := subscription("any", "s-1")
		stale.DeciderID, stale.PreviousID = taken.DeciderID, nil // the stream is not empty
		calls = append(calls, call{"conflict", decision{s, []store.NewEvent{stale}, retriedCond}})
		unknown := subscription("any", "s-2")
		unknown.Event = "nope"
		calls = append(calls, call{"unregistered", decision{s, []store.NewEvent{unknown}, retriedCond}})

		ds := make([]decision, len(calls))
		for i, c := range calls {
			ds[i] = c.d
		}
		errs := raceDecisions(ds)
		contended := 0
		for i, c := range calls {
			switch c.kind {
			case "stored":
				require.NoError(t, errs[i], "%s", c.kind)
			case "refused":
				var ce *store.ConditionError
				require.ErrorAs(t, errs[i], &ce)
				assert.Equal(t, taken.Offset, ce.Offset)
			case "retry":
				require.NoError(t, errs[i], "a retry of what went through")
			case "contended":
				if errs[i] == nil {
					contended++
				} else {
					require.ErrorIs(t, errs[i], store.ErrConditionFailed)
				}
			case "conflict":
				require.ErrorIs(t, errs[i], store.ErrConcurrencyConflict)
			case "unregistered":
				require.ErrorIs(t, errs[i], store.ErrNotRegistered)
			}
		}
		assert.Equal(t, 1, contended, "round %d: exactly one of the overlapping appends", round)
	}
	assert.Positive(t, store.ConditionalGroups(s), "no group formed: the grouped path was not tested")
	all, err := s.ReadEvents(ctx, store.ReadQuery{Limit: 10000})
	require.NoError(t, err)
	assert.Len(t, all, 2+10*(20+1+1), "nothing stored twice, nothing refused stored")
}

// raceSQLDecisions runs the decisions at the same moment through the SQL
// API's append_events_if (fstore_condition_lock, not the group function),
// each on a connection of its own, and returns their errors: nil when
// stored, store.ErrConditionFailed when refused by the condition.
func raceSQLDecisions(t *testing.T, conns []*pgx.Conn, ds []decision) []error {
	t.Helper()
	errs := make([]error, len(ds))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, d := range ds {
		events, err := json.Marshal(sqlEvents(d.evs))
		require.NoError(t, err)
		q, err := json.Marshal(d.cond.Query)
		require.NoError(t, err)
		wg.Go(func() {
			<-start
			_, err := conns[i].Exec(ctx, `SELECT * FROM append_events_if($1::text::jsonb, $2::text::jsonb, $3)`,
				string(events), string(q), d.cond.After)
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "FS009" {
				err = store.ErrConditionFailed
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// sqlEvents are evs as the SQL API's event objects.
func sqlEvents(evs []store.NewEvent) []map[string]any {
	out := make([]map[string]any, len(evs))
	for i, e := range evs {
		out[i] = map[string]any{"event": e.Event, "event_id": e.EventID, "decider": e.Decider, "decider_id": e.DeciderID,
			"data": e.Data, "command_id": e.CommandID, "previous_id": e.PreviousID, "tags": e.Tags}
	}
	return out
}

// tagRaceConns opens the connections of the SQL racers, one per racer.
func tagRaceConns(t *testing.T, s *store.Store) []*pgx.Conn {
	t.Helper()
	conns := make([]*pgx.Conn, 12) // tagDecisions' racers
	for i := range conns {
		conn, err := pgx.Connect(ctx, storetest.URL(t, s))
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close(ctx) })
		conns[i] = conn
	}
	return conns
}

// The tag race again, through the SQL API (append_events_if locks by
// fstore_condition_lock and fstore_query_keys, one decision per
// transaction): exactly one is stored, every round.
func TestOverlappingTagDecisionsOneWinsInSQL(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "courses", courseTypes...)
	conns := tagRaceConns(t, s)
	for round := range 30 {
		require.Equal(t, 1, winners(t, raceSQLDecisions(t, conns, tagDecisions(t, []*store.Store{s}, round))), "round %d", round)
	}
}

// And with the key locks taken away, the SQL race stores two: the locks are
// what keeps it to one on that path too.
func TestOverlappingTagDecisionsInSQLNeedTheLocks(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "courses", courseTypes...)
	conns := tagRaceConns(t, s)
	_, err := conns[0].Exec(ctx, `CREATE OR REPLACE FUNCTION fstore_lock_keys(v_qkeys INT[], v_ekeys INT[], v_global BOOLEAN)
		RETURNS VOID LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.005); END $$`)
	require.NoError(t, err)
	for round := range 50 {
		if winners(t, raceSQLDecisions(t, conns, tagDecisions(t, []*store.Store{s}, round))) > 1 {
			return // the race lost without the locks
		}
	}
	t.Fatal("without key locks, 50 rounds of overlapping SQL decisions never stored two: the race test cannot fail")
}
