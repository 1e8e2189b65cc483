package dispatch_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/dispatch"
	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// A scrape reports every view's lag and its partitions behind, failing and
// parked.
func TestViewMetrics(t *testing.T) {
	t.Parallel()
	st := storetest.NewStore(t)
	_, _, err := st.RegisterEventType(ctx, store.EventType{Decider: "order", Event: "created", EventVersion: 1})
	require.NoError(t, err)
	for _, id := range []string{"o-1", "o-2"} {
		e := store.NewEvent{Event: "created", EventID: uuid.New(), EventVersion: 1, Decider: "order",
			DeciderID: id, Data: []byte(`{}`), CommandID: uuid.New()}
		_, err := st.AppendEvents(ctx, []store.NewEvent{e})
		require.NoError(t, err)
	}
	start := time.Now().Add(-time.Hour)
	_, _, err = st.RegisterView(ctx, store.ViewRegistration{View: "v", StartAt: &start, LockTimeoutS: 60})
	require.NoError(t, err)
	got, err := st.LeaseEvents(ctx, "v", store.LeaseRequest{Limit: 1, MaxPerPartition: 1})
	require.NoError(t, err)
	require.Len(t, got, 1)
	_, err = st.Nack(ctx, "v", "order", got[0].DeciderID, got[0].LeaseID, time.Hour, "db down")
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	dispatch.RegisterViewMetrics(reg, st)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP fstore_view_events_pending Events not yet acked (lag).
# TYPE fstore_view_events_pending gauge
fstore_view_events_pending{view="v"} 2
# HELP fstore_view_partitions_behind Partitions with events not yet acked.
# TYPE fstore_view_partitions_behind gauge
fstore_view_partitions_behind{view="v"} 2
# HELP fstore_view_partitions_failing Partitions whose next event failed and has not been delivered since (parked ones included).
# TYPE fstore_view_partitions_failing gauge
fstore_view_partitions_failing{view="v"} 1
# HELP fstore_view_partitions_parked Partitions parked after repeated push failures.
# TYPE fstore_view_partitions_parked gauge
fstore_view_partitions_parked{view="v"} 0
`)))
}
