package store_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

func TestHeartbeats(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	list, err := s.ListDispatchers(ctx)
	require.NoError(t, err)
	assert.Empty(t, list)

	started := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	steady := store.Heartbeat{DispatcherID: uuid.New(), Host: "b-host", PID: 42, MetricsAddr: "127.0.0.1:9090",
		Version: "test", StartedAt: started, Interval: time.Hour}
	// A process that promises a beat every millisecond is late at once.
	late := store.Heartbeat{DispatcherID: uuid.New(), Host: "a-host", PID: 7, MetricsAddr: "127.0.0.1:9091",
		StartedAt: started, Interval: time.Millisecond}
	require.NoError(t, s.RecordHeartbeat(ctx, steady))
	require.NoError(t, s.RecordHeartbeat(ctx, steady), "beating again updates the row")
	require.NoError(t, s.RecordHeartbeat(ctx, late))

	waitFor(t, "the 1 ms dispatcher to be late", func() bool {
		list, err = s.ListDispatchers(ctx)
		require.NoError(t, err)
		return len(list) == 2 && !list[1].Healthy
	})
	assert.Equal(t, steady.DispatcherID, list[0].DispatcherID, "healthy first")
	assert.True(t, list[0].Healthy)
	assert.Equal(t, "b-host", list[0].Host)
	assert.Equal(t, 42, list[0].PID)
	assert.Equal(t, "127.0.0.1:9090", list[0].MetricsAddr)
	assert.Equal(t, int64(3_600_000), list[0].IntervalMS)
	assert.True(t, list[0].StartedAt.Equal(started))
	assert.False(t, list[0].LastSeenAt.Before(started))

	require.ErrorIs(t, s.RecordHeartbeat(ctx, store.Heartbeat{DispatcherID: uuid.New(), Host: "h",
		MetricsAddr: "a:1", StartedAt: started}), store.ErrInvalid, "an interval is required")

	// A clean stop removes the row; an unknown id is not an error.
	require.NoError(t, s.RemoveHeartbeat(ctx, late.DispatcherID))
	require.NoError(t, s.RemoveHeartbeat(ctx, uuid.New()))

	// A process unseen for a day is no longer listed, and the next beat prunes it.
	conn, err := pgx.Connect(ctx, storetest.URL(t, s))
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `UPDATE dispatchers SET last_seen_at = now() - interval '25 hours'`)
	require.NoError(t, err)
	list, err = s.ListDispatchers(ctx)
	require.NoError(t, err)
	assert.Empty(t, list)
	other := store.Heartbeat{DispatcherID: uuid.New(), Host: "c", MetricsAddr: "a:1", StartedAt: started, Interval: time.Second}
	require.NoError(t, s.RecordHeartbeat(ctx, other))
	var rows int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM dispatchers`).Scan(&rows))
	assert.Equal(t, 1, rows, "the day-old row was pruned")
}
