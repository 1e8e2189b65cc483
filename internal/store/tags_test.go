package store_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// The course subscriptions of the DCB specification's example: a
// subscription is tagged with its course and its student.
var courseTypes = []string{"course_defined", "student_subscribed", "student_unsubscribed"}

func subscription(course, student string) store.NewEvent {
	e := store.NewEvent{Event: "student_subscribed", EventID: uuid.New(), EventVersion: 1, Decider: "courses",
		DeciderID: "sub-" + uuid.NewString(), CommandID: uuid.New(),
		Data: json.RawMessage(fmt.Sprintf(`{"course_id":%q,"student_id":%q}`, course, student)),
		Tags: []string{"course:" + course, "student:" + student}}
	return e
}

func tagItem(tags ...string) store.QueryItem { return store.QueryItem{Tags: tags} }

// Random tagged events and random queries: every query, tag query or not,
// returns exactly the events a plain reading of the rules selects. Tag
// queries and the others are answered by different SQL (0007); this keeps
// them the same query language.
func TestQueriesMatchTheirDefinition(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	types := []string{"a", "b", "c"}
	register(t, s, "q", types...)
	pool := []string{"t:1", "t:2", "t:3", "u:1", "u:2", "Ä"}
	rng := rand.New(rand.NewPCG(7, 8))
	pick := func(from []string, max int) []string {
		var out []string
		for _, i := range rng.Perm(len(from))[:rng.IntN(max+1)] {
			out = append(out, from[i])
		}
		return out
	}
	var evs []store.NewEvent
	for i := range 300 {
		e := ev("q", fmt.Sprint("s-", i), nil)
		e.Event, e.Tags = types[rng.IntN(3)], pick(pool, 3)
		e.Data = json.RawMessage(fmt.Sprintf(`{"k":%d}`, rng.IntN(3)))
		evs = append(evs, e)
	}
	res, err := s.AppendEvents(ctx, evs)
	require.NoError(t, err)

	matches := func(it store.QueryItem, e store.Event) bool {
		if it.Types != nil && !slices.Contains(it.Types, e.Event) {
			return false
		}
		for _, tag := range it.Tags {
			if !slices.Contains(e.Tags, tag) {
				return false
			}
		}
		for _, m := range it.Matches {
			var want, got map[string]int
			require.NoError(t, json.Unmarshal(m, &want))
			require.NoError(t, json.Unmarshal(e.Data, &got))
			if got["k"] != want["k"] {
				return false
			}
		}
		return true
	}
	for round := range 200 {
		var q store.Query
		for range 1 + rng.IntN(3) {
			var it store.QueryItem
			if rng.IntN(3) > 0 {
				it.Types = pick(types, 2)
				if len(it.Types) == 0 {
					it.Types = nil
				}
			}
			if tags := pick(pool, 2); len(tags) > 0 && round%5 != 0 {
				it.Tags = tags
			}
			if rng.IntN(4) == 0 {
				it.Matches = []json.RawMessage{json.RawMessage(fmt.Sprintf(`{"k":%d}`, rng.IntN(3)))}
			}
			q.Items = append(q.Items, it)
		}
		want := []int64{}
		for _, e := range res.Events {
			if slices.ContainsFunc(q.Items, func(it store.QueryItem) bool { return matches(it, e) }) {
				want = append(want, e.Offset)
			}
		}
		got, err := s.QueryEvents(ctx, q, 0, 1000)
		require.NoError(t, err, "%+v", q)
		require.Equal(t, want, offsets(got.Events), "round %d: %+v", round, q)
	}

	for _, bad := range []store.Query{
		{Items: []store.QueryItem{{Tags: []string{}}}},
		{Items: []store.QueryItem{{Tags: []string{"a\tb"}}}},
		{Items: []store.QueryItem{{Tags: []string{""}}}},
	} {
		_, err := s.QueryEvents(ctx, bad, 0, 10)
		assert.ErrorIs(t, err, store.ErrInvalid, "%+v", bad)
		_, err = s.AppendEventsIf(ctx, []store.NewEvent{ev("q", "x", nil)}, store.Condition{Query: bad})
		assert.ErrorIs(t, err, store.ErrInvalid, "%+v", bad)
	}
}

// A decision on tags: the condition holds until an event carrying the
// query's tags is stored after the read.
func TestTagCondition(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "courses", courseTypes...)
	q := store.Query{Items: []store.QueryItem{{Types: []string{"student_subscribed"}, Tags: []string{"course:c-1"}}}}
	read, err := s.QueryEvents(ctx, q, 0, 100)
	require.NoError(t, err)
	first := subscription("c-1", "s-1")
	res, err := s.AppendEventsIf(ctx, []store.NewEvent{first}, store.Condition{Query: q, After: read.Position})
	require.NoError(t, err)
	_, err = s.AppendEventsIf(ctx, []store.NewEvent{subscription("c-1", "s-2")}, store.Condition{Query: q, After: read.Position})
	var ce *store.ConditionError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, res.Events[0].Offset, ce.Offset)
	// Another course's subscription, or the course's other type, is not about it.
	_, err = s.AppendEventsIf(ctx, []store.NewEvent{subscription("c-2", "s-2")},
		store.Condition{Query: store.Query{Items: []store.QueryItem{tagItem("course:c-2")}}, After: read.Position})
	require.NoError(t, err)
	again, err := s.QueryEvents(ctx, q, 0, 100)
	require.NoError(t, err)
	assert.Equal(t, []int64{res.Events[0].Offset}, offsets(again.Events))
}

// Queries share their reads of the position (positions), under concurrent
// appends: a position covers every event at or below it (none is missed),
// and soon covers what its caller appended (a writer still running below it
// may hold it back a moment: the horizon waits for it).
func TestSharedPositionsCoverWhatWasAppended(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "courses", courseTypes...)
	for round := range 10 {
		errs := make(chan error, 16)
		for i := range 16 {
			go func() { errs <- appendThenQuery(s, subscription(fmt.Sprintf("c-%d-%d", round, i), "s-1")) }()
		}
		for range 16 {
			require.NoError(t, <-errs)
		}
	}
}

func appendThenQuery(s *store.Store, e store.NewEvent) error {
	res, err := s.AppendEvents(ctx, []store.NewEvent{e})
	if err != nil {
		return err
	}
	offset := res.Events[0].Offset
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		got, err := s.QueryEvents(ctx, store.Query{Items: []store.QueryItem{tagItem(e.Tags[0])}}, 0, 10)
		switch {
		case err != nil:
			return err
		case got.Position < offset && len(got.Events) > 0:
			return fmt.Errorf("an event above the position %d was returned: %+v", got.Position, got.Events)
		case got.Position < offset:
			continue
		case len(got.Events) != 1 || got.Events[0].Offset != offset:
			return fmt.Errorf("position %d covers offset %d, but the query returned %+v", got.Position, offset, got.Events)
		default:
			return nil
		}
	}
	return fmt.Errorf("the position never reached offset %d", offset)
}
