package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
	fstoresql "github.com/fstore/fstore/sql"
)

// Through PgBouncer in transaction mode, each transaction may run on another
// server connection. Six instances migrating an empty database at once must
// each finish, and apply every migration exactly once: a session-level
// advisory lock would stay behind on a server connection, or be taken and
// released on two different ones.
func TestMigrateThroughPgBouncer(t *testing.T) {
	t.Parallel()
	dbURL := storetest.NewEmptyDatabase(t)
	bouncer := storetest.NewPgBouncer(t, dbURL)
	pooled := bouncer.URL(t, dbURL)

	const instances = 6
	stores := make([]*store.Store, instances)
	for i := range stores {
		stores[i] = storetest.OpenStore(t, pooled)
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second) // a lost lock shows as a hang
	defer cancel()
	applied := make([][]int, instances)
	errs := make([]error, instances)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			<-start
			applied[i], errs[i] = s.Migrate(ctx, fstoresql.Migrations)
		})
	}
	close(start)
	wg.Wait()

	var total []int
	for i := range instances {
		require.NoError(t, errs[i], "instance %d", i)
		total = append(total, applied[i]...)
	}
	ms, err := store.LoadMigrations(fstoresql.Migrations)
	require.NoError(t, err)
	assert.Len(t, total, len(ms), "each migration applied once: %v", applied)
	latest, err := store.LatestVersion(fstoresql.Migrations)
	require.NoError(t, err)
	v, err := stores[0].SchemaVersion(ctx)
	require.NoError(t, err)
	assert.Equal(t, latest, v)
	again, err := stores[1].Migrate(ctx, fstoresql.Migrations)
	require.NoError(t, err)
	assert.Empty(t, again, "a migrated database needs nothing")
}

// The store's paths through PgBouncer in transaction mode, from 8
// goroutines so that statements land on server connections that other
// clients prepared statements on: single appends (coalesced), batches,
// conditional appends (a pipeline in one implicit transaction), the
// one-by-one fallback of a refused batch (a transaction with a pipeline),
// reads of a stream, a decider and the log, queries, leases, acks and nacks.
func TestStoreThroughPgBouncer(t *testing.T) {
	t.Parallel()
	dbURL := storetest.NewDatabase(t)
	s := storetest.OpenStore(t, storetest.NewPgBouncer(t, dbURL).URL(t, dbURL))
	require.Equal(t, "cache_describe", s.QueryExecMode(), "the pooler is told apart")
	register(t, s, "order", "created")
	_, _, err := s.RegisterView(ctx, store.ViewRegistration{View: "pooled", LockTimeoutS: 60,
		StartAt: ptrTime(time.Now().Add(-time.Hour))})
	require.NoError(t, err)

	const workers, rounds = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				if err := pooledRound(s, fmt.Sprintf("w%d-%d", w, i)); err != nil {
					errs <- fmt.Errorf("worker %d round %d: %w", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	consumeThroughPooler(t, s, workers*rounds*5) // 3 events of the stream, 2 decided

}

// Without a pooler, statements are prepared once per connection (the
// fastest); a connection string that names a mode is obeyed.
func TestQueryExecModeDirect(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	assert.Equal(t, "cache_statement", s.QueryExecMode())
	chosen := storetest.OpenStore(t, storetest.URL(t, s)+"&default_query_exec_mode=exec")
	assert.Equal(t, "exec", chosen.QueryExecMode())
}

// Whatever query mode a connection string chooses, every path works: the
// store sends nothing whose meaning depends on the mode (exec and
// simple_protocol send a []byte as bytea, not as JSON text).
func TestStoreInEveryQueryMode(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"cache_statement", "cache_describe", "describe_exec", "exec", "simple_protocol"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			s := storetest.OpenStore(t, storetest.NewDatabase(t)+"&default_query_exec_mode="+mode)
			require.Equal(t, mode, s.QueryExecMode())
			register(t, s, "order", "created")
			_, _, err := s.RegisterView(ctx, store.ViewRegistration{View: "pooled", LockTimeoutS: 60,
				StartAt: ptrTime(time.Now().Add(-time.Hour))})
			require.NoError(t, err)
			for i := range 3 {
				require.NoError(t, pooledRound(s, fmt.Sprint("s", i)))
				// The round's decided event is the one its query matches.
				q := store.Query{Items: []store.QueryItem{{Types: []string{"created"},
					Matches: []json.RawMessage{json.RawMessage(fmt.Sprintf(`{"stream":"s%d"}`, i))}}}}
				require.NoError(t, followRound(s, q, 1))
			}
			consumeThroughPooler(t, s, 3*5)
		})
	}
}

// pooledRound runs each append and read path once on stream id.
func pooledRound(s *store.Store, id string) error {
	first := ev("order", id, nil)
	first.Tags, first.Metadata = []string{"t-" + id, "b"}, json.RawMessage(`{"m":1}`)
	res, err := s.AppendEvents(ctx, []store.NewEvent{first})
	if err != nil {
		return fmt.Errorf("single append: %w", err)
	}
	second := ev("order", id, &first.EventID)
	second.Tags, second.Metadata = []string{"t-" + id}, json.RawMessage(`{"m":2}`)
	third := ev("order", id, &second.EventID)
	if _, err := s.AppendEvents(ctx, []store.NewEvent{second, third}); err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	// A batch refused by its second event goes one event at a time.
	_, err = s.AppendEvents(ctx, []store.NewEvent{ev("order", id+"-x", nil), ev("order", id, &first.EventID)})
	if !errors.Is(err, store.ErrConcurrencyConflict) {
		return fmt.Errorf("conflicting batch: %w", err)
	}
	match := json.RawMessage(fmt.Sprintf(`{"stream":%q}`, id))
	q := store.Query{Items: []store.QueryItem{{Types: []string{"created"}, Matches: []json.RawMessage{match}}}}
	read, err := s.QueryEvents(ctx, q, 0, 100)
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	decided := ev("order", id+"-d", nil)
	decided.Data = match
	if _, err := s.AppendEventsIf(ctx, []store.NewEvent{decided}, store.Condition{Query: q, After: read.Position}); err != nil {
		return fmt.Errorf("conditional append: %w", err)
	}
	if _, err := s.AppendEventsIf(ctx, []store.NewEvent{ev("order", id+"-e", nil)}, store.Condition{Query: q, After: read.Position}); !errors.Is(err, store.ErrConditionFailed) {
		return fmt.Errorf("refused conditional append: %w", err)
	}
	if err := taggedRound(s, id); err != nil {
		return err
	}
	stream, err := s.ReadEvents(ctx, store.ReadQuery{Decider: "order", DeciderID: id, Limit: 10})
	if err != nil || len(stream) != 3 || stream[0].Offset != res.Events[0].Offset {
		return fmt.Errorf("stream read: %d events, %w", len(stream), err)
	}
	if _, err := s.ReadEvents(ctx, store.ReadQuery{Decider: "order", Limit: 100}); err != nil {
		return fmt.Errorf("decider read: %w", err)
	}
	if _, err := s.ReadEvents(ctx, store.ReadQuery{Limit: 100}); err != nil {
		return fmt.Errorf("log read: %w", err)
	}
	if _, err := s.LastEvent(ctx, "order", id); err != nil {
		return fmt.Errorf("last event: %w", err)
	}
	_, err = s.GetEvent(ctx, third.EventID)
	return err
}

// taggedRound runs the tag paths once on stream id, whose first two events
// are tagged t-<id>: a tag query, a decision on it (one event) and a refused
// one, and reads by tag of the stream, its decider and the log.
func taggedRound(s *store.Store, id string) error {
	tq := store.Query{Items: []store.QueryItem{{Tags: []string{"t-" + id}}}}
	read, err := s.QueryEvents(ctx, tq, 0, 100)
	if err != nil || len(read.Events) != 2 || read.Events[0].Metadata == nil || !strings.Contains(string(read.Events[1].Metadata), `"m"`) {
		return fmt.Errorf("tag query: %d events (%s), %w", len(read.Events), fmt.Sprint(read.Events), err)
	}
	decided := ev("order", id+"-t", nil)
	decided.Tags = []string{"t-" + id}
	if _, err := s.AppendEventsIf(ctx, []store.NewEvent{decided}, store.Condition{Query: tq, After: read.Position}); err != nil {
		return fmt.Errorf("conditional append on tags: %w", err)
	}
	if _, err := s.AppendEventsIf(ctx, []store.NewEvent{ev("order", id+"-u", nil)}, store.Condition{Query: tq, After: read.Position}); !errors.Is(err, store.ErrConditionFailed) {
		return fmt.Errorf("refused conditional append on tags: %w", err)
	}
	for _, q := range []store.ReadQuery{{Decider: "order", DeciderID: id}, {Decider: "order"}, {}} {
		q.Tags, q.Limit = []string{"t-" + id, "b"}, 100
		if evs, err := s.ReadEvents(ctx, q); err != nil || len(evs) != 1 || evs[0].EventID != read.Events[0].EventID {
			return fmt.Errorf("read by tags %+v: %d events, %w", q, len(evs), err)
		}
	}
	return nil
}

// consumeThroughPooler leases until the view has nothing left, nacking
// each partition's first lease and acking the others, and requires want
// events acked.
func consumeThroughPooler(t *testing.T, s *store.Store, want int) {
	t.Helper()
	nacked := map[string]bool{}
	acked := 0
	for deadline := time.Now().Add(60 * time.Second); ; {
		require.True(t, time.Now().Before(deadline), "acked %d of %d", acked, want)
		evs, err := s.LeaseEvents(ctx, "pooled", store.LeaseRequest{Limit: 100, MaxPerPartition: 10})
		require.NoError(t, err)
		if len(evs) == 0 {
			break
		}
		for _, batch := range byStream(evs) {
			e := batch[len(batch)-1]
			if !nacked[e.DeciderID] {
				nacked[e.DeciderID] = true
				_, err = s.Nack(ctx, "pooled", e.Decider, e.DeciderID, e.LeaseID, 0, "")
			} else {
				_, err = s.Ack(ctx, "pooled", e.Decider, e.DeciderID, e.Offset, e.LeaseID)
				acked += len(batch)
			}
			require.NoError(t, err)
		}
	}
	assert.Equal(t, want, acked)
	v, err := s.GetView(ctx, "pooled")
	require.NoError(t, err)
	assert.Zero(t, v.Status.EventsPending)
}

func ptrTime(t time.Time) *time.Time { return &t }

// followRound follows q live from the start and takes want events: the
// catch-up reads of a query follow, in the store's query mode.
func followRound(s *store.Store, q store.Query, want int) error {
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	fl, err := s.Follow(fctx, store.Filter{Query: &q}, 0)
	if err != nil {
		return fmt.Errorf("query follow: %w", err)
	}
	defer fl.Close()
	for got := 0; got < want; {
		evs, err := fl.Next(fctx, time.Second)
		if err != nil {
			return fmt.Errorf("query follow, after %d of %d events: %w", got, want, err)
		}
		got += len(evs)
	}
	return nil
}
