package store_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// typed builds an event of the given type on a stream.
func typed(decider, deciderID, event string, previous *uuid.UUID) store.NewEvent {
	e := ev(decider, deciderID, previous)
	e.Event = event
	return e
}

// stream appends events of the given types to one stream, in order.
func stream(t *testing.T, s *store.Store, decider, deciderID string, types ...string) []store.Event {
	t.Helper()
	var prev *uuid.UUID
	out := make([]store.Event, len(types))
	for i, ty := range types {
		out[i] = appendOne(t, s, typed(decider, deciderID, ty, prev))
		prev = &out[i].EventID
	}
	return out
}

func scoped(t *testing.T, s *store.Store, name string, start *time.Time, deciders, events []string) store.View {
	t.Helper()
	v, _, err := s.RegisterView(ctx, store.ViewRegistration{View: name, StartAt: start, LockTimeoutS: 60,
		Deciders: deciders, Events: events})
	require.NoError(t, err)
	return v
}

func offsetsOf(evs []store.LeasedEvent) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Offset
	}
	return out
}

// drain leases and acks until nothing is left; it returns the offsets
// handed out, per stream key, in order.
func drain(t *testing.T, s *store.Store, view string) map[string][]int64 {
	t.Helper()
	out := map[string][]int64{}
	for {
		evs := lease(t, s, view, 100, 100)
		if len(evs) == 0 {
			return out
		}
		for _, batch := range byStream(evs) {
			last := batch[len(batch)-1]
			_, err := s.Ack(ctx, view, last.Decider, last.DeciderID, last.Offset, last.LeaseID)
			require.NoError(t, err)
			out[last.Decider+"/"+last.DeciderID] = append(out[last.Decider+"/"+last.DeciderID], offsetsOf(batch)...)
		}
	}
}

func byStream(evs []store.LeasedEvent) [][]store.LeasedEvent {
	index := map[string]int{}
	var out [][]store.LeasedEvent
	for _, e := range evs {
		k := e.Decider + "/" + e.DeciderID
		i, ok := index[k]
		if !ok {
			i = len(out)
			index[k] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], e)
	}
	return out
}

func TestScopedViewHandsOutMatchingEventsOnly(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created", "paid")
	register(t, s, "invoice", "created")
	o := stream(t, s, "order", "o1", "created", "paid", "created", "paid", "created")
	stream(t, s, "invoice", "i1", "created", "created")
	stream(t, s, "order", "o2", "created")
	v := scoped(t, s, "paid", past(), []string{"order", "order"}, []string{"paid"})
	assert.Equal(t, []string{"order"}, v.Deciders, "sorted, without duplicates")
	assert.Equal(t, []string{"paid"}, v.Events)

	v, err := s.GetView(ctx, "paid")
	require.NoError(t, err)
	assert.Equal(t, int64(1), v.Status.Partitions, "only o1 holds a matching event")
	assert.Equal(t, int64(2), v.Status.EventsPending, "matching events only")

	got := lease(t, s, "paid", 10, 1)
	require.Len(t, got, 1)
	assert.Equal(t, o[1].Offset, got[0].Offset, "the first paid event; the created before it is not handed out")
	// The ack settles the non-matching event before it.
	p, err := s.Ack(ctx, "paid", "order", "o1", got[0].Offset, got[0].LeaseID)
	require.NoError(t, err)
	assert.Equal(t, o[1].Offset, p.AckedOffset)
	got = lease(t, s, "paid", 10, 10)
	assert.Equal(t, []int64{o[3].Offset}, offsetsOf(got), "consecutive matching events only, never o2's or i1's")
	_, err = s.Ack(ctx, "paid", "order", "o1", got[0].Offset, got[0].LeaseID)
	require.NoError(t, err)
	v, err = s.GetView(ctx, "paid")
	require.NoError(t, err)
	assert.Zero(t, v.Status.PartitionsBehind, "the created event after the last paid one is not work")
	assert.Zero(t, v.Status.EventsPending)
	assert.Empty(t, lease(t, s, "paid", 10, 10))

	// Only events: every decider that publishes the type.
	scoped(t, s, "created", past(), nil, []string{"created"})
	handed := drain(t, s, "created")
	assert.Len(t, handed["order/o1"], 3)
	assert.Len(t, handed["invoice/i1"], 2)
	assert.Len(t, handed["order/o2"], 1)
}

func TestScopeNamesMustBeRegistered(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	register(t, s, "invoice", "sent")
	for name, c := range map[string]struct {
		deciders, events []string
		field            string
	}{
		"an unknown decider":                 {[]string{"order", "nope"}, nil, "deciders[1]"},
		"an unknown type":                    {nil, []string{"created", "nope"}, "events[1]"},
		"a type of an unlisted decider only": {[]string{"order"}, []string{"sent"}, "events[0]"},
		"unknown names, the first one named": {[]string{"nope"}, []string{"nope"}, "deciders[0]"},
	} {
		_, _, err := s.RegisterView(ctx, store.ViewRegistration{View: "v", LockTimeoutS: 60, Deciders: c.deciders, Events: c.events})
		require.ErrorIs(t, err, store.ErrNameNotRegistered, name)
		var fe *store.FieldError
		require.ErrorAs(t, err, &fe, name)
		assert.Equal(t, c.field, fe.Field, name)
		assert.Contains(t, fe.Message, `"`, name)
		assert.Regexp(t, `"(nope|sent)"`, fe.Message, "the message names it: "+name)
	}
	_, err := s.GetView(ctx, "v")
	assert.ErrorIs(t, err, store.ErrNotFound, "nothing written")
}

// Changing the lists: every matching event not yet acked is delivered,
// streams newly in scope from the view's start, nothing acked again.
func TestChangingTheListsKeepsProgress(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created", "paid")
	register(t, s, "invoice", "created")
	o := stream(t, s, "order", "o1", "created", "paid", "created", "paid")
	i := stream(t, s, "invoice", "i1", "created", "created")
	start := past()

	t.Run("widening the types delivers later events, not settled ones", func(t *testing.T) {
		scoped(t, s, "widen", start, []string{"order"}, []string{"paid"})
		got := lease(t, s, "widen", 1, 1)
		require.Equal(t, []int64{o[1].Offset}, offsetsOf(got))
		_, err := s.Ack(ctx, "widen", "order", "o1", o[1].Offset, got[0].LeaseID)
		require.NoError(t, err)
		scoped(t, s, "widen", start, []string{"order"}, nil)
		handed := drain(t, s, "widen")
		assert.Equal(t, []int64{o[2].Offset, o[3].Offset}, handed["order/o1"],
			"o1's first event was settled by the ack of the paid one after it")
	})
	t.Run("a stream newly in scope starts from the view's start", func(t *testing.T) {
		scoped(t, s, "grow", start, []string{"order"}, nil)
		drain(t, s, "grow")
		scoped(t, s, "grow", start, []string{"invoice", "order"}, nil)
		handed := drain(t, s, "grow")
		assert.Equal(t, map[string][]int64{"invoice/i1": {i[0].Offset, i[1].Offset}}, handed,
			"all of invoice, none of order again")
	})
	t.Run("narrowing leaves no stale work behind", func(t *testing.T) {
		scoped(t, s, "narrow", start, nil, nil)
		v, err := s.GetView(ctx, "narrow")
		require.NoError(t, err)
		require.Equal(t, int64(2), v.Status.PartitionsBehind)
		v = scoped(t, s, "narrow", start, []string{"order"}, nil)
		v, err = s.GetView(ctx, "narrow")
		require.NoError(t, err)
		assert.Equal(t, int64(1), v.Status.Partitions, "invoice left the scope")
		assert.Equal(t, int64(1), v.Status.PartitionsBehind)
		assert.Equal(t, int64(4), v.Status.EventsPending)
		handed := drain(t, s, "narrow")
		assert.Equal(t, map[string][]int64{"order/o1": {o[0].Offset, o[1].Offset, o[2].Offset, o[3].Offset}}, handed)
	})
	t.Run("leaving and coming back resumes where it was", func(t *testing.T) {
		scoped(t, s, "back", start, []string{"order"}, nil)
		got := lease(t, s, "back", 1, 2)
		require.Len(t, got, 2)
		_, err := s.Ack(ctx, "back", "order", "o1", got[1].Offset, got[1].LeaseID)
		require.NoError(t, err)
		scoped(t, s, "back", start, []string{"invoice"}, nil)
		assert.Equal(t, map[string][]int64{"invoice/i1": {i[0].Offset, i[1].Offset}}, drain(t, s, "back"))
		scoped(t, s, "back", start, []string{"order"}, nil)
		assert.Equal(t, map[string][]int64{"order/o1": {o[2].Offset, o[3].Offset}}, drain(t, s, "back"),
			"o1's acked events are not delivered again")
	})
	t.Run("a lease held across a change stays good", func(t *testing.T) {
		scoped(t, s, "held", start, []string{"order"}, nil)
		got := lease(t, s, "held", 1, 2)
		require.Len(t, got, 2)
		scoped(t, s, "held", start, []string{"invoice", "order"}, []string{"created"})
		_, err := s.Ack(ctx, "held", "order", "o1", got[1].Offset, got[1].LeaseID)
		require.NoError(t, err, "the consumer's ack of what it was handed")
		handed := drain(t, s, "held")
		assert.Equal(t, []int64{o[2].Offset}, handed["order/o1"], "the next matching event after its progress")
		assert.Equal(t, []int64{i[0].Offset, i[1].Offset}, handed["invoice/i1"])
	})
	t.Run("a new start_at with new lists replays everything matching", func(t *testing.T) {
		scoped(t, s, "restart", start, []string{"order"}, nil)
		drain(t, s, "restart")
		earlier := start.Add(-time.Minute)
		handed := drain2(t, s, "restart", &earlier, []string{"invoice", "order"}, []string{"paid"})
		assert.Equal(t, map[string][]int64{"order/o1": {o[1].Offset, o[3].Offset}}, handed)
	})
}

func drain2(t *testing.T, s *store.Store, view string, start *time.Time, deciders, events []string) map[string][]int64 {
	t.Helper()
	scoped(t, s, view, start, deciders, events)
	return drain(t, s, view)
}

// fstore-sql users get the lists through register_view's optional arrays;
// the old calls work unchanged.
func TestScopeInSQL(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created", "paid")
	o := stream(t, s, "order", "o1", "created", "paid")
	conn := connect(t, s)
	_, err := conn.Exec(ctx, `SELECT * FROM register_view('old', now() - interval '1 hour', 60)`)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `SELECT * FROM register_view('new', now() - interval '1 hour',
		v_deciders => ARRAY['order'], v_events => ARRAY['paid'])`)
	require.NoError(t, err)
	var offset int64
	var attempts int
	require.NoError(t, conn.QueryRow(ctx, `SELECT "offset", attempts FROM stream_events('new', 10, NULL, 10)`).
		Scan(&offset, &attempts))
	assert.Equal(t, o[1].Offset, offset)
	require.NoError(t, conn.QueryRow(ctx, `SELECT "offset" FROM stream_events('old')`).Scan(&offset))
	assert.Equal(t, o[0].Offset, offset)
	_, err = conn.Exec(ctx, `SELECT * FROM register_view('bad', v_events => ARRAY['nope'])`)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `event type "nope" is not registered`)
}

// A scoped view's discovery reads the events of its deciders (or types)
// through their index, not the log: counted in buffers, not timed. Over a
// log of 60,000 events of which 120 match, the scoped view's first pass
// finds every matching stream and reads a small fraction of what the
// unscoped pass over the same log reads.
func TestScopedDiscoveryCostFollowsMatchingEvents(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "noise", "created")
	register(t, s, "order", "created", "paid")
	conn := connect(t, s)
	_, err := conn.Exec(ctx, `INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
		SELECT CASE WHEN i % 500 = 0 THEN 'paid' ELSE 'created' END, gen_random_uuid(),
		       CASE WHEN i % 500 = 0 THEN 'order' ELSE 'noise' END, 's' || i, '{"pad": "`+strings.Repeat("x", 200)+`"}',
		       gen_random_uuid(), NULL
		FROM generate_series(1, 60000) i;
		ANALYZE events`)
	require.NoError(t, err)
	scoped(t, s, "by-decider", past(), []string{"order"}, nil)
	scoped(t, s, "by-type", past(), nil, []string{"paid"})
	scoped(t, s, "all", past(), nil, nil)
	discover := func(view string) int {
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		defer tx.Rollback(ctx) //nolint:errcheck
		_, err = tx.Exec(ctx, `UPDATE views SET scanned_offset = start_offset WHERE view = $1`, view)
		require.NoError(t, err)
		n := buffersTouched(t, tx, `SELECT fstore_discover($1)`, view)
		var found int
		require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM view_partitions WHERE view = $1`, view).Scan(&found))
		if view != "all" {
			assert.Equal(t, 120, found, "%s: every matching stream in one pass", view)
		}
		return n
	}
	discover("by-decider") // warm caches and plans
	byDecider, byType, all := discover("by-decider"), discover("by-type"), discover("all")
	t.Logf("buffers read by one discovery pass: by decider %d, by type %d, unscoped (50,000 offsets) %d", byDecider, byType, all)
	assert.Less(t, byDecider*100, all)
	assert.Less(t, byType*100, all)
}

// An empty poll reads only the partial index of partitions with work, for a
// scoped view too, and wherever the view's partitions lie in the table:
// before the pick and the lease were two statements, the lease's update
// hashed the view's partitions to update none, reading the table up to the
// view's first row (352 buffers here, for a view whose rows came second).
func TestScopedEmptyPollReadsOnlyWork(t *testing.T) {
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
	registerView(t, s, "first", past(), 60)
	scoped(t, s, "second", past(), []string{"order"}, nil)
	conn := connect(t, s)
	_, err := conn.Exec(ctx, `SELECT fstore_discover('first'); SELECT fstore_discover('second');
		UPDATE view_partitions SET acked_offset = head_offset`)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `VACUUM ANALYZE view_partitions`)
	require.NoError(t, err)
	poll := func(view string) int { return buffersTouched(t, conn, `SELECT * FROM stream_events($1, 100)`, view) }
	poll("first") // warm caches and plans
	poll("second")
	first, second := poll("first"), poll("second")
	t.Logf("buffers read by an empty poll over 5,000 caught-up partitions: unscoped %d, scoped %d", first, second)
	assert.LessOrEqual(t, first, 20)
	assert.LessOrEqual(t, second, 20)
}
