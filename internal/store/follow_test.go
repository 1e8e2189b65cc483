package store_test

import (
	"encoding/json"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// follow starts a follower closed at cleanup.
func follow(t *testing.T, s *store.Store, f store.Filter, after int64) *store.Follower {
	t.Helper()
	fl, err := s.Follow(ctx, f, after)
	require.NoError(t, err)
	t.Cleanup(fl.Close)
	return fl
}

// next calls Next until n events came, decoding them; it fails the test
// after a generous deadline.
func next(t *testing.T, fl *store.Follower, n int) []store.Event {
	t.Helper()
	var out []store.Event
	deadline := time.Now().Add(30 * time.Second)
	for len(out) < n {
		require.True(t, time.Now().Before(deadline), "%d of %d events came", len(out), n)
		evs, err := fl.Next(ctx, 100*time.Millisecond)
		require.NoError(t, err)
		for _, le := range evs {
			var e store.Event
			require.NoError(t, json.Unmarshal(le.JSON, &e))
			require.Equal(t, le.Offset, e.Offset)
			out = append(out, e)
		}
	}
	require.Len(t, out, n, "no more than expected")
	return out
}

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// quiet checks that no event comes for a while.
func quiet(t *testing.T, fl *store.Follower) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
		evs, err := fl.Next(ctx, 300*time.Millisecond)
		require.NoError(t, err)
		require.Empty(t, evs)
	}
}

func TestFollowCatchesUpThenGoesLive(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created", "shipped")
	register(t, s, "invoice", "created")
	o1 := appendOne(t, s, ev("order", "o-1", nil))
	i1 := appendOne(t, s, ev("invoice", "i-1", nil))
	shipped := ev("order", "o-1", &o1.EventID)
	shipped.Event = "shipped"
	shipped.Data = json.RawMessage(`{"carrier": "ups", "n": 2}`)
	o2 := appendOne(t, s, shipped)

	all := follow(t, s, store.Filter{}, 0)
	orders := follow(t, s, store.Filter{Decider: "order"}, 0)
	stream := follow(t, s, store.Filter{Decider: "invoice", DeciderID: "i-1"}, 0)
	types := follow(t, s, store.Filter{Events: []string{"shipped"}}, 0)
	query := follow(t, s, store.Filter{Query: &store.Query{Items: []store.QueryItem{
		{Types: []string{"created"}, Matches: []json.RawMessage{json.RawMessage(`{"n": 1.0}`)}},
		{Matches: []json.RawMessage{json.RawMessage(`{"carrier": "dhl"}`)}},
	}}}, 0)
	fromO1 := follow(t, s, store.Filter{}, o1.Offset)

	offsets := func(evs []store.Event) (out []int64) {
		for _, e := range evs {
			out = append(out, e.Offset)
		}
		return out
	}
	// Catch-up: what is stored already.
	assert.Equal(t, []int64{o1.Offset, i1.Offset, o2.Offset}, offsets(next(t, all, 3)))
	assert.Equal(t, []int64{o1.Offset, o2.Offset}, offsets(next(t, orders, 2)))
	assert.Equal(t, []int64{i1.Offset}, offsets(next(t, stream, 1)))
	assert.Equal(t, []int64{o2.Offset}, offsets(next(t, types, 1)))
	assert.Equal(t, []int64{o1.Offset, i1.Offset}, offsets(next(t, query, 2)))
	assert.Equal(t, []int64{i1.Offset, o2.Offset}, offsets(next(t, fromO1, 2)))

	// Live: what comes next, filtered in Go as the SQL did.
	i2 := appendOne(t, s, ev("invoice", "i-1", &i1.EventID))
	dhl := ev("order", "o-3", nil)
	dhl.Data = json.RawMessage(`{"carrier": "dhl", "extra": [1]}`)
	o3 := appendOne(t, s, dhl)
	got := next(t, all, 2)
	assert.Equal(t, []int64{i2.Offset, o3.Offset}, offsets(got))
	assert.JSONEq(t, mustMarshal(t, o3), mustMarshal(t, got[1]), "a live event is the stored event")
	assert.Equal(t, []int64{o3.Offset}, offsets(next(t, orders, 1)))
	assert.Equal(t, []int64{i2.Offset}, offsets(next(t, stream, 1)))
	assert.Equal(t, []int64{i2.Offset, o3.Offset}, offsets(next(t, query, 2)))
	quiet(t, types)
	quiet(t, orders)
}

// Followers wait without a database connection: a thousand of them, idle,
// hold none, and all of them get the next event.
func TestIdleFollowersHoldNoConnection(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	const n = 1000
	var idle, done sync.WaitGroup
	idle.Add(n)
	got := make([]uuid.UUID, n)
	for i := range n {
		fl := follow(t, s, store.Filter{}, 0)
		done.Go(func() {
			for !store.Live(fl) {
				quiet(t, fl)
			}
			idle.Done()
			evs, err := fl.Next(ctx, 30*time.Second)
			if assert.NoError(t, err) && assert.Len(t, evs, 1) {
				var e store.Event
				assert.NoError(t, json.Unmarshal(evs[0].JSON, &e))
				got[i] = e.EventID
			}
		})
	}
	idle.Wait()
	most := int32(0)
	for range 50 {
		most = max(most, store.AcquiredConns(s))
		time.Sleep(5 * time.Millisecond)
	}
	assert.LessOrEqual(t, most, int32(1), "at most the watcher's one read at a time")
	e := appendOne(t, s, ev("order", "o-1", nil))
	done.Wait()
	for i := range n {
		assert.Equal(t, e.EventID, got[i], "follower %d", i)
	}
}

// A follower that does not take its events is ended once more than
// MaxBehind wait for it; the others go on.
func TestSlowFollowerFallsBehind(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	slow := follow(t, s, store.Filter{}, 0)
	quiet(t, slow) // live, and then it takes nothing
	keeping := follow(t, s, store.Filter{}, 0)
	quiet(t, keeping)
	chain(t, s, "order", "o-1", store.MaxBehind+1)
	next(t, keeping, store.MaxBehind+1) // the feed queued them all for slow too, or dropped it
	_, err := slow.Next(ctx, time.Second)
	assert.ErrorIs(t, err, store.ErrFellBehind)
	e := appendOne(t, s, ev("order", "after", nil))
	assert.Equal(t, e.EventID, next(t, keeping, 1)[0].EventID)
}

// Followers whose clients stopped reading while catching up hold no read
// slot: more of them than the process has slots, and a new follower still
// catches up and goes live.
func TestStuckCatchUpsLeaveOthersAlone(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	store.SetCatchUp(s, 10, 1<<20, 20*time.Millisecond)
	register(t, s, "order", "created")
	chain(t, s, "order", "o-1", 200)
	for range 40 { // more than the 16 read slots; each takes one page, then nothing
		stuck := follow(t, s, store.Filter{}, 0)
		evs, err := stuck.Next(ctx, 5*time.Second)
		require.NoError(t, err)
		require.Len(t, evs, 10)
	}
	time.Sleep(100 * time.Millisecond) // their pages read ahead are dropped
	fresh := follow(t, s, store.Filter{}, 0)
	assert.Len(t, next(t, fresh, 200), 200, "the whole backlog, past the stuck ones")
	quiet(t, fresh)
	e := appendOne(t, s, ev("order", "o-2", nil))
	assert.Equal(t, e.EventID, next(t, fresh, 1)[0].EventID, "and live")
}

// A late-committing writer holds its offset back: a follower never hands
// out an event past it, while catching up or live, and gets it once it
// commits, in offset order.
func TestFollowWaitsForLateCommit(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	writer := connect(t, s)

	held := func() (func(), uuid.UUID) {
		tx, err := writer.Begin(ctx)
		require.NoError(t, err)
		id := uuid.New()
		_, err = tx.Exec(ctx, `SELECT append_event('created', $1, 'order', $2, '{}', gen_random_uuid(), NULL)`,
			id, id.String())
		require.NoError(t, err)
		return func() { require.NoError(t, tx.Commit(ctx)) }, id
	}

	// Catching up.
	commit, lateID := held()
	early := appendOne(t, s, ev("order", "early", nil))
	fl := follow(t, s, store.Filter{}, 0)
	quiet(t, fl)
	commit()
	got := next(t, fl, 2)
	assert.Equal(t, lateID, got[0].EventID, "the late event first: its offset is lower")
	assert.Equal(t, early.EventID, got[1].EventID)

	// Live.
	commit, lateID = held()
	later := appendOne(t, s, ev("order", "later", nil))
	quiet(t, fl)
	commit()
	got = next(t, fl, 2)
	assert.Equal(t, lateID, got[0].EventID)
	assert.Equal(t, later.EventID, got[1].EventID)
	assert.Less(t, got[0].Offset, got[1].Offset)
}

func TestFollowRefusesMalformedFilters(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	for name, f := range map[string]store.Filter{
		"stream without decider": {DeciderID: "o-1"},
		"query and decider":      {Decider: "order", Query: &store.Query{Items: []store.QueryItem{{}}}},
		"query without items":    {Query: &store.Query{}},
		"match not an object":    {Query: &store.Query{Items: []store.QueryItem{{Matches: []json.RawMessage{json.RawMessage(`[1]`)}}}}},
	} {
		_, err := s.Follow(ctx, f, 0)
		assert.ErrorIs(t, err, store.ErrInvalid, name)
	}
}

// Reads by event type, of the log, a decider or a stream; the log's and the
// decider's stop below a late-committing writer, as every cursor read does.
func TestReadEventsByType(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created", "shipped")
	register(t, s, "invoice", "created")
	o1 := appendOne(t, s, ev("order", "o-1", nil))
	shipped := ev("order", "o-1", &o1.EventID)
	shipped.Event = "shipped"
	o2 := appendOne(t, s, shipped)
	i1 := appendOne(t, s, ev("invoice", "i-1", nil))

	read := func(q store.ReadQuery) (out []int64) {
		t.Helper()
		q.Limit = 100
		evs, err := s.ReadEvents(ctx, q)
		require.NoError(t, err)
		for _, e := range evs {
			out = append(out, e.Offset)
		}
		return out
	}
	assert.Equal(t, []int64{o1.Offset, i1.Offset}, read(store.ReadQuery{Events: []string{"created"}}))
	assert.Equal(t, []int64{o1.Offset, o2.Offset, i1.Offset}, read(store.ReadQuery{Events: []string{"created", "shipped"}}))
	assert.Equal(t, []int64{o2.Offset}, read(store.ReadQuery{Decider: "order", Events: []string{"shipped"}}))
	assert.Equal(t, []int64{o1.Offset}, read(store.ReadQuery{Decider: "order", DeciderID: "o-1", Events: []string{"created"}}))
	assert.Equal(t, []int64{i1.Offset}, read(store.ReadQuery{After: o1.Offset, Events: []string{"created"}}))
	assert.Empty(t, read(store.ReadQuery{Decider: "invoice", Events: []string{"shipped"}}))

	tx, err := connect(t, s).Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SELECT append_event('created', gen_random_uuid(), 'order', 'late', '{}', gen_random_uuid(), NULL)`)
	require.NoError(t, err)
	appendOne(t, s, ev("order", "o-9", nil))
	assert.Equal(t, []int64{o1.Offset, i1.Offset}, read(store.ReadQuery{Events: []string{"created"}}), "nothing past the late writer")
	assert.Equal(t, []int64{o1.Offset}, read(store.ReadQuery{Decider: "order", Events: []string{"created"}}))
	require.NoError(t, tx.Commit(ctx))
	assert.Len(t, read(store.ReadQuery{Events: []string{"created"}}), 4)
}

// Live followers filter new events in Go (filter.go), as the SQL of
// ReadEvents and QueryEvents does. A new way to select events there must
// be taught to liveFilter too: this test names the fields it knows.
func TestFollowFiltersKnowEveryReadField(t *testing.T) {
	t.Parallel()
	fields := func(v any) (out []string) {
		ty := reflect.TypeOf(v)
		for i := range ty.NumField() {
			out = append(out, ty.Field(i).Name)
		}
		return out
	}
	assert.Equal(t, []string{"Decider", "DeciderID", "Tags", "After", "Limit", "Events"}, fields(store.ReadQuery{}),
		"a new ReadQuery filter: add it to store.Filter and liveFilter.selects, and to the HTTP follow")
	assert.Equal(t, []string{"Types", "Tags", "Matches"}, fields(store.QueryItem{}),
		"a new QueryItem field: teach liveItem.selects to match it as query_events does")
}

// Tags select events while catching up (in SQL) and live (in Go) alike: a
// Filter's tags must all be carried; a query item's too, beside its types.
func TestFollowByTags(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "course", "created", "joined")
	tagged := func(stream, typ string, tags ...string) store.Event {
		e := ev("course", stream, nil)
		e.Event, e.Tags = typ, tags
		return appendOne(t, s, e)
	}
	offsets := func(evs []store.Event) (out []int64) {
		for _, e := range evs {
			out = append(out, e.Offset)
		}
		return out
	}
	a := tagged("a", "created", "course:c-1")
	tagged("b", "created", "course:c-2")
	c := tagged("c", "joined", "student:s-7", "course:c-1")
	byTag := follow(t, s, store.Filter{Tags: []string{"course:c-1"}}, 0)
	both := follow(t, s, store.Filter{Tags: []string{"student:s-7", "course:c-1"}}, 0)
	typed := follow(t, s, store.Filter{Events: []string{"joined"}, Tags: []string{"course:c-1"}}, 0)
	query := follow(t, s, store.Filter{Query: &store.Query{Items: []store.QueryItem{
		{Types: []string{"joined"}, Tags: []string{"student:s-7"}},
	}}}, 0)
	assert.Equal(t, []int64{a.Offset, c.Offset}, offsets(next(t, byTag, 2)))
	assert.Equal(t, []int64{c.Offset}, offsets(next(t, both, 1)))
	assert.Equal(t, []int64{c.Offset}, offsets(next(t, typed, 1)))
	assert.Equal(t, []int64{c.Offset}, offsets(next(t, query, 1)))

	tagged("d", "joined", "student:s-7")            // not course:c-1
	e := tagged("e", "joined", "course:c-1", "x:1") // not student:s-7
	f := tagged("f", "joined", "course:c-1", "student:s-7")
	assert.Equal(t, []int64{e.Offset, f.Offset}, offsets(next(t, byTag, 2)))
	assert.Equal(t, []int64{f.Offset}, offsets(next(t, both, 1)))
	assert.Equal(t, []int64{e.Offset, f.Offset}, offsets(next(t, typed, 2)))
	got := next(t, query, 2)
	assert.Equal(t, "d", got[0].DeciderID)
	assert.Equal(t, f.Offset, got[1].Offset)
	quiet(t, both)

	page, err := s.ReadEvents(ctx, store.ReadQuery{Events: []string{"joined"}, Tags: []string{"course:c-1"}, Limit: 10})
	require.NoError(t, err)
	assert.Equal(t, []int64{c.Offset, e.Offset, f.Offset}, offsets(page), "a read by types and tags")
}
