package dispatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/dispatch"
	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// The heartbeat keeps the process listed and healthy while it runs, and
// removes it when it stops.
func TestHeartbeatListsTheProcessWhileItRuns(t *testing.T) {
	t.Parallel()
	st := storetest.NewStore(t)
	hb := dispatch.NewHeartbeat("127.0.0.1:9191", "test", 20*time.Millisecond)
	require.NotEmpty(t, hb.Host)
	hbCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		dispatch.RunHeartbeat(hbCtx, st, hb, zerolog.Nop())
		close(done)
	}()

	var seen []store.DispatcherStatus
	waitFor(t, 30*time.Second, "the dispatcher to be listed", func() bool {
		var err error
		seen, err = st.ListDispatchers(ctx)
		require.NoError(t, err)
		return len(seen) == 1
	})
	first := seen[0].LastSeenAt
	assert.Equal(t, hb.DispatcherID, seen[0].DispatcherID)
	assert.Equal(t, "127.0.0.1:9191", seen[0].MetricsAddr)
	// It beats again and again: last_seen_at moves, and it stays healthy
	// far longer than three 20 ms intervals.
	waitFor(t, 30*time.Second, "a later heartbeat", func() bool {
		var err error
		seen, err = st.ListDispatchers(ctx)
		require.NoError(t, err)
		return len(seen) == 1 && seen[0].LastSeenAt.After(first)
	})

	stop()
	<-done
	seen, err := st.ListDispatchers(ctx)
	require.NoError(t, err)
	assert.Empty(t, seen, "a clean stop removes the row")
}
