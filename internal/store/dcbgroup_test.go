package store_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
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
// so racers meet both alone and grouped.
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
