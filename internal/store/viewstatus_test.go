package store_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// referenceStatusSQL is a view's status as issue 11 read it, walking every
// partition of every view: what the kept count and the partial indexes
// (0009) must answer, figure for figure.
const referenceStatusSQL = `
SELECT w.view, c.partitions, c.behind, c.pending, c.leased, c.parked, c.failing,
       le.decider, le.decider_id, le.last_error, le.last_error_at
FROM views w
         CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE p.matched) AS partitions,
           count(*) FILTER (WHERE p.head_offset > p.acked_offset) AS behind,
           COALESCE(sum((SELECT count(*)
                          FROM events e
                          WHERE e.decider = p.decider
                            AND e.decider_id = p.decider_id
                            AND e."offset" > p.acked_offset
                            AND (w.events IS NULL OR e.event = ANY (w.events))))
                    FILTER (WHERE p.head_offset > p.acked_offset), 0) AS pending,
           count(*) FILTER (WHERE p.leased_until > now()) AS leased,
           count(*) FILTER (WHERE p.parked) AS parked,
           count(*) FILTER (WHERE p.attempts > 0 OR p.parked) AS failing
    FROM view_partitions p
    WHERE p.view = w.view) c
         LEFT JOIN LATERAL (
    SELECT p.decider, p.decider_id, p.last_error, p.last_error_at
    FROM view_partitions p
    WHERE p.view = w.view
      AND p.last_error IS NOT NULL
    ORDER BY p.last_error_at DESC
    LIMIT 1) le ON TRUE
WHERE $1::text IS NULL OR w.view = $1`

// referenceFilters are the partition states as issue 11 listed them.
var referenceFilters = map[string]string{
	store.StateAll:     `p.matched`,
	store.StateBehind:  `p.head_offset > p.acked_offset`,
	store.StateLeased:  `p.leased_until > now()`,
	store.StateFailing: `(p.attempts > 0 OR p.parked)`,
	store.StateParked:  `p.parked`,
}

// referenceListSQL is issue 11's page of partitions: the cursor a filter
// ("$2 IS NULL OR"), so a page walks the view from its first partition.
func referenceListSQL(state string) string {
	return `SELECT p.decider, p.decider_id, CASE WHEN p.head_offset > p.acked_offset THEN (SELECT count(*) FROM events e
		WHERE e.decider = p.decider AND e.decider_id = p.decider_id AND e."offset" > p.acked_offset
		  AND (w.events IS NULL OR e.event = ANY (w.events))) ELSE 0 END
		FROM views w JOIN view_partitions p ON p.view = w.view
		WHERE w.view = $1 AND ` + referenceFilters[state] + `
		  AND ($2::text IS NULL OR (p.decider, p.decider_id) > ($2, $3))
		ORDER BY p.decider, p.decider_id LIMIT $4`
}

func referenceStatuses(t *testing.T, conn *pgx.Conn) map[string]store.ViewStatus {
	t.Helper()
	rows, err := conn.Query(ctx, referenceStatusSQL, nil)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]store.ViewStatus{}
	for rows.Next() {
		var view string
		var st store.ViewStatus
		var decider, deciderID, lastError *string
		var at *time.Time
		require.NoError(t, rows.Scan(&view, &st.Partitions, &st.PartitionsBehind, &st.EventsPending,
			&st.PartitionsLeased, &st.PartitionsParked, &st.PartitionsFailing, &decider, &deciderID, &lastError, &at))
		if lastError != nil {
			st.LastError = &store.PartitionError{Decider: *decider, DeciderID: *deciderID, Error: *lastError, At: *at}
		}
		out[view] = st
	}
	require.NoError(t, rows.Err())
	return out
}

// listed is a partition as a list shows it: its key and its lag.
type listed struct {
	Key     string
	Pending int64
}

func referenceList(t *testing.T, conn *pgx.Conn, view, state string) []listed {
	t.Helper()
	rows, err := conn.Query(ctx, referenceListSQL(state), view, nil, nil, 1_000_000)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (listed, error) {
		var d, id string
		var l listed
		err := r.Scan(&d, &id, &l.Pending)
		l.Key = d + "/" + id
		return l, err
	})
	require.NoError(t, err)
	return out
}

// pagedList pages through a state's partitions two at a time, following
// the cursor, as a client would.
func pagedList(t *testing.T, s *store.Store, view, state string) []listed {
	t.Helper()
	out := []listed{}
	q := store.PartitionQuery{State: state, Limit: 2}
	for {
		page, err := s.ListPartitions(ctx, view, q)
		require.NoError(t, err)
		for _, p := range page {
			out = append(out, listed{Key: p.Decider + "/" + p.DeciderID, Pending: p.EventsPending})
		}
		if len(page) < q.Limit {
			return out
		}
		last := page[len(page)-1]
		q.AfterDecider, q.AfterDeciderID = &last.Decider, &last.DeciderID
	}
}

// requireExactStatus checks every view's status, listed and read one by
// one, and every state's list of partitions against the full walk.
func requireExactStatus(t *testing.T, s *store.Store, conn *pgx.Conn, step string) {
	t.Helper()
	views, err := s.ListViews(ctx) // discovers: the walk below sees what it found
	require.NoError(t, err)
	ref := referenceStatuses(t, conn)
	require.Len(t, views, len(ref), step)
	for _, v := range views {
		assert.Equal(t, ref[v.View], v.Status, "%s: view %s, listed", step, v.View)
		one, err := s.GetView(ctx, v.View)
		require.NoError(t, err)
		assert.Equal(t, ref[v.View], one.Status, "%s: view %s, read alone", step, v.View)
		for _, state := range store.PartitionStates {
			assert.Equal(t, referenceList(t, conn, v.View, state), pagedList(t, s, v.View, state),
				"%s: view %s, partitions %s", step, v.View, state)
		}
	}
}

// Every status figure and every list stays what the full walk of issue 11
// says, through everything that changes partitions: discovery, leases,
// acks, nacks, failed pushes and parking, a change of lists under a held
// lease, coming back into scope, skip, replay, new streams, a new start
// and a deleted view.
func TestViewStatusIsExact(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	conn := connect(t, s)
	register(t, s, "order", "created", "paid")
	register(t, s, "invoice", "created")
	var orders [][]store.Event
	for i := range 4 {
		orders = append(orders, stream(t, s, "order", fmt.Sprint("o", i), "created", "paid", "created"))
	}
	for i := range 3 {
		stream(t, s, "invoice", fmt.Sprint("i", i), "created", "created")
	}
	start := past()
	registerView(t, s, "all", start, 60)
	scoped(t, s, "orders", start, []string{"order"}, nil)
	scoped(t, s, "paid", start, nil, []string{"paid"})
	requireExactStatus(t, s, conn, "discovered")

	all := lease(t, s, "all", 2, 1)
	require.Len(t, all, 2)
	held := lease(t, s, "orders", 1, 2)
	require.Len(t, held, 2)
	requireExactStatus(t, s, conn, "leased")

	_, err := s.Ack(ctx, "all", all[0].Decider, all[0].DeciderID, all[0].Offset, all[0].LeaseID)
	require.NoError(t, err)
	down := store.Failure{Error: "HTTP 503", Status: 503, MaxAttempts: 1, MaxAge: time.Hour, RetryAt: time.Now()}
	_, err = s.SettlePush(ctx, "all", all[1].Decider, all[1].DeciderID, all[1].LeaseID,
		store.Settlement{Failure: &down, Attempts: []store.Attempt{failedPush(all[1], 503, "down")}})
	require.NoError(t, err)
	paid := lease(t, s, "paid", 1, 1)
	require.Len(t, paid, 1)
	_, err = s.Nack(ctx, "paid", paid[0].Decider, paid[0].DeciderID, paid[0].LeaseID, time.Hour, "projection down")
	require.NoError(t, err)
	requireExactStatus(t, s, conn, "acked, parked, nacked")

	// Out of scope while leased: leased, not behind, not a partition.
	scoped(t, s, "orders", start, []string{"invoice"}, nil)
	requireExactStatus(t, s, conn, "lists changed under a lease")
	_, err = s.Ack(ctx, "orders", held[1].Decider, held[1].DeciderID, held[1].Offset, held[1].LeaseID)
	require.NoError(t, err)
	requireExactStatus(t, s, conn, "the held lease acked")
	scoped(t, s, "orders", start, []string{"invoice", "order"}, nil)
	requireExactStatus(t, s, conn, "back in scope")

	_, err = s.SkipEvent(ctx, "all", all[1].Decider, all[1].DeciderID, all[1].Offset)
	require.NoError(t, err)
	_, err = s.ReplayPartition(ctx, "all", all[0].Decider, all[0].DeciderID, 0)
	require.NoError(t, err)
	requireExactStatus(t, s, conn, "skipped and replayed")

	stream(t, s, "order", "o-new", "paid", "created")
	appendOne(t, s, typed("order", "o0", "paid", &orders[0][2].EventID))
	requireExactStatus(t, s, conn, "appended")

	drain(t, s, "all")
	drain(t, s, "orders")
	drain(t, s, "paid")
	requireExactStatus(t, s, conn, "drained")

	later := time.Now().Add(-time.Minute)
	scoped(t, s, "paid", &later, nil, []string{"paid"})
	requireExactStatus(t, s, conn, "a new start")
	require.NoError(t, s.DeleteView(ctx, "orders"))
	requireExactStatus(t, s, conn, "deleted")
}

// Discovery runs from every status read and every lease, in many processes
// at once, while appenders open new streams: the kept count of partitions
// counts each stream once. 4 appenders and 8 readers of the status, on
// their own connections, start together.
func TestPartitionCountUnderConcurrentDiscovery(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	register(t, s, "order", "created")
	registerView(t, s, "v", past(), 60)
	scoped(t, s, "orders", past(), []string{"order"}, nil)
	const appenders, streamsEach, readers = 4, 50, 8
	begin := make(chan struct{})
	errs := make(chan error, appenders+readers)
	var appending, reading sync.WaitGroup
	for a := range appenders {
		appending.Go(func() {
			<-begin
			for i := range streamsEach {
				if _, err := s.AppendEvents(ctx, []store.NewEvent{ev("order", fmt.Sprintf("a%d-%d", a, i), nil)}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var done atomic.Bool
	for r := range readers {
		reading.Go(func() {
			<-begin
			for !done.Load() {
				var err error
				if r%2 == 0 {
					_, err = s.GetView(ctx, []string{"v", "orders"}[r%4/2])
				} else {
					_, err = s.LeaseEvents(ctx, "v", store.LeaseRequest{Limit: 1, MaxPerPartition: 1})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	close(begin)
	appending.Wait()
	done.Store(true)
	reading.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for _, view := range []string{"v", "orders"} {
		v, err := s.GetView(ctx, view)
		require.NoError(t, err)
		assert.Equal(t, int64(appenders*streamsEach), v.Status.Partitions, view)
	}
	requireExactStatus(t, s, connect(t, s), "after concurrent discovery")
}
