package httpapi_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	httpapi "github.com/fstore/fstore/internal/http"
	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// statusAPI is a test server whose store the test may also use directly.
func statusAPI(t *testing.T, keys ...string) (*api, *store.Store) {
	st := storetest.NewStore(t)
	srv := httptest.NewServer(httpapi.NewServer(st, httpapi.Options{APIKeys: keys,
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}).Handler())
	t.Cleanup(srv.Close)
	a := &api{t: t, srv: srv}
	if len(keys) > 0 {
		a.key = keys[0]
	}
	return a, st
}

func TestStatusTellsTheLogAndTheDispatchers(t *testing.T) {
	t.Parallel()
	a, st := statusAPI(t)
	r := a.do("GET", "/v1/status", nil)
	require.Equal(t, 200, r.Status, "%s", r.Raw)
	assert.Equal(t, "read-write", r.Body["access"], "no keys: everything is allowed")
	assert.Equal(t, map[string]any{"last_offset": 0.0, "events_estimate": 0.0}, r.Body["log"])
	assert.Equal(t, []any{}, r.Body["dispatchers"])
	_, err := time.Parse(time.RFC3339Nano, r.Body["time"].(string))
	require.NoError(t, err)

	a.register("order", "created")
	last := a.appendOK(event("order", "o-1", ""))
	hb := store.Heartbeat{DispatcherID: uuid.New(), Host: "worker-1", PID: 12, MetricsAddr: "127.0.0.1:9090",
		Version: "0.1", StartedAt: time.Now(), Interval: time.Hour}
	require.NoError(t, st.RecordHeartbeat(t.Context(), hb))

	r = a.do("GET", "/v1/status", nil)
	require.Equal(t, 200, r.Status)
	assert.Equal(t, last["offset"], r.Body["log"].(map[string]any)["last_offset"])
	ds := r.Body["dispatchers"].([]any)
	require.Len(t, ds, 1)
	d := ds[0].(map[string]any)
	assert.Equal(t, hb.DispatcherID.String(), d["dispatcher_id"])
	assert.Equal(t, "worker-1", d["host"])
	assert.Equal(t, "127.0.0.1:9090", d["metrics_addr"])
	assert.Equal(t, true, d["healthy"])
	assert.EqualValues(t, 3_600_000, d["interval_ms"])
}

// The console learns from the status whether to draw actions; the answer
// must agree with what the API then does with a write.
func TestStatusTellsTheKeysAccess(t *testing.T) {
	t.Parallel()
	a, _ := statusAPI(t, "rw-key", "ro:ro-key")
	r := a.do("GET", "/v1/status", nil)
	require.Equal(t, 200, r.Status)
	assert.Equal(t, "read-write", r.Body["access"])
	assert.Equal(t, 201, a.do("POST", "/v1/deciders/order/events", map[string]any{"event": "created"}).Status)

	a.key = "ro-key"
	r = a.do("GET", "/v1/status", nil)
	require.Equal(t, 200, r.Status)
	assert.Equal(t, "read-only", r.Body["access"])
	requireProblem(t, a.do("POST", "/v1/deciders/order/events", map[string]any{"event": "other"}), 403, "forbidden")

	a.key = "nope"
	requireProblem(t, a.do("GET", "/v1/status", nil), 401, "unauthorized")
	a.key = "rw-key"
	r = a.do("GET", "/v1/status?x=1", nil)
	requireProblem(t, r, 400, "invalid-request")
}
