package httpapi_test

import (
	"encoding/base64"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	httpapi "github.com/fstore/fstore/internal/http"
	"github.com/fstore/fstore/internal/store/storetest"
)

func TestViewRegistration(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	r := a.do("PUT", "/v1/views/orders", map[string]any{"lock_timeout_s": 60})
	require.Equal(t, 201, r.Status, "%s", r.Raw)
	assert.Equal(t, "orders", r.Body["view"])
	assert.EqualValues(t, 60, r.Body["lock_timeout_s"])
	assert.Contains(t, r.Body, "status")
	r = a.do("PUT", "/v1/views/orders", map[string]any{"lock_timeout_s": 30})
	assert.Equal(t, 200, r.Status)
	assert.EqualValues(t, 30, r.Body["lock_timeout_s"])

	r = a.do("GET", "/v1/views", nil)
	require.Equal(t, 200, r.Status)
	assert.Len(t, r.Body["views"], 1)
	r = a.do("GET", "/v1/views/orders", nil)
	require.Equal(t, 200, r.Status)
	status := r.Body["status"].(map[string]any)
	for _, k := range []string{"partitions", "partitions_behind", "events_pending", "partitions_leased", "partitions_parked", "last_error"} {
		assert.Contains(t, status, k)
	}
	requireProblem(t, a.do("GET", "/v1/views/nope", nil), 404, "not-found")

	for name, body := range map[string]any{
		"lock timeout zero":     map[string]any{"lock_timeout_s": 0},
		"lock timeout too long": map[string]any{"lock_timeout_s": 86401},
		"negative pooling":      map[string]any{"pooling_delay_s": -1},
		"zero polling delay":    map[string]any{"polling_delay_s": 0},
		"both names, differing": map[string]any{"polling_delay_s": 5, "pooling_delay_s": 6},
		"not a URL":             map[string]any{"edge_function_url": "nope"},
		"ftp URL":               map[string]any{"edge_function_url": "ftp://example.com/x"},
		"start in the future":   map[string]any{"start_at": time.Now().Add(time.Hour).Format(time.RFC3339)},
		"start not a time":      map[string]any{"start_at": "yesterday"},
		"unknown field":         map[string]any{"colour": "red"},
		"malformed":             `{"lock_timeout_s":`,
	} {
		t.Run(name, func(t *testing.T) {
			requireProblem(t, a.do("PUT", "/v1/views/orders", body), 400, "invalid-request")
		})
	}
	requireProblem(t, a.do("PUT", "/v1/views/"+strings.Repeat("v", 256), map[string]any{}), 400, "invalid-request")

	// polling_delay_s, and fstore-sql's misspelt pooling_delay_s as an alias.
	r = a.do("PUT", "/v1/views/orders", map[string]any{"polling_delay_s": 5})
	require.Equal(t, 200, r.Status, "%s", r.Raw)
	assert.EqualValues(t, 5, r.Body["polling_delay_s"])
	assert.NotContains(t, r.Body, "pooling_delay_s", "only the right name is answered")
	r = a.do("PUT", "/v1/views/orders", map[string]any{"pooling_delay_s": 7})
	require.Equal(t, 200, r.Status, "%s", r.Raw)
	assert.EqualValues(t, 7, r.Body["polling_delay_s"])

	assert.Equal(t, 204, a.do("DELETE", "/v1/views/orders", nil).Status)
	requireProblem(t, a.do("DELETE", "/v1/views/orders", nil), 404, "not-found")
}

func TestConsumeOverHTTP(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	a.register("order", "created")
	first := a.appendOK(event("order", "o-1", ""))
	second := a.appendOK(event("order", "o-1", first["event_id"].(string)))
	r := a.do("PUT", "/v1/views/orders", map[string]any{"start_at": time.Now().Add(-time.Hour).Format(time.RFC3339)})
	require.Equal(t, 201, r.Status, "%s", r.Raw)

	r = a.do("POST", "/v1/views/orders/stream", nil) // the body is optional
	require.Equal(t, 200, r.Status, "%s", r.Raw)
	evs := r.Body["events"].([]any)
	require.Len(t, evs, 1)
	got := evs[0].(map[string]any)
	assert.Equal(t, first["event_id"], got["event_id"])
	lease := got["lease_id"].(string)

	stale := uuid.NewString()
	ack := func(offset any, leaseID string) response {
		return a.do("POST", "/v1/views/orders/ack", map[string]any{"decider": "order", "decider_id": "o-1", "offset": offset, "lease_id": leaseID})
	}
	requireProblem(t, ack(got["offset"], stale), 409, "lease-lost")
	requireProblem(t, ack(second["offset"], lease), 409, "offset-not-handed-out")
	r = ack(got["offset"], lease)
	require.Equal(t, 200, r.Status, "%s", r.Raw)
	assert.Equal(t, got["offset"], r.Body["acked_offset"])

	r = a.do("POST", "/v1/views/orders/stream", map[string]any{"limit": 10, "max_per_partition": 10, "lock_timeout_s": 5})
	require.Equal(t, 200, r.Status)
	next := r.Body["events"].([]any)[0].(map[string]any)
	assert.Equal(t, second["event_id"], next["event_id"])
	r = a.do("POST", "/v1/views/orders/nack", map[string]any{"decider": "order", "decider_id": "o-1", "lease_id": next["lease_id"], "retry_after_ms": 0})
	require.Equal(t, 200, r.Status, "%s", r.Raw)
	assert.EqualValues(t, 1, r.Body["attempts"])
	requireProblem(t, a.do("POST", "/v1/views/orders/nack", map[string]any{"decider": "order", "decider_id": "o-1", "lease_id": next["lease_id"]}), 409, "lease-lost")

	r = a.do("POST", "/v1/views/orders/partitions/order/o-1/retry", nil)
	assert.Equal(t, 200, r.Status, "%s", r.Raw)
	requireProblem(t, a.do("POST", "/v1/views/orders/partitions/order/nope/retry", nil), 404, "not-found")
	requireProblem(t, a.do("POST", "/v1/views/nope/stream", nil), 404, "not-found")
	requireProblem(t, a.do("POST", "/v1/views/nope/ack", map[string]any{"decider": "order", "decider_id": "o-1", "offset": 1, "lease_id": lease}), 404, "not-found")

	for name, body := range map[string]any{
		"limit zero":        map[string]any{"limit": 0},
		"limit too big":     map[string]any{"limit": 1001},
		"per partition 0":   map[string]any{"max_per_partition": 0},
		"wait too long":     map[string]any{"wait_s": 31},
		"negative wait":     map[string]any{"wait_s": -1},
		"lock timeout zero": map[string]any{"lock_timeout_s": 0},
		"wrong type":        map[string]any{"limit": "ten"},
	} {
		t.Run(name, func(t *testing.T) {
			requireProblem(t, a.do("POST", "/v1/views/orders/stream", body), 400, "invalid-request")
		})
	}
	for name, body := range map[string]any{
		"missing lease":   map[string]any{"decider": "order", "decider_id": "o-1", "offset": 1},
		"bad lease":       map[string]any{"decider": "order", "decider_id": "o-1", "offset": 1, "lease_id": "x"},
		"offset zero":     map[string]any{"decider": "order", "decider_id": "o-1", "offset": 0, "lease_id": lease},
		"missing decider": map[string]any{"decider_id": "o-1", "offset": 1, "lease_id": lease},
	} {
		t.Run("ack "+name, func(t *testing.T) {
			requireProblem(t, a.do("POST", "/v1/views/orders/ack", body), 400, "invalid-request")
		})
	}
}

// A long poll returns the event appended while it waits; with nothing
// appended it returns empty when wait_s has passed.
func TestLongPoll(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	a.register("order", "created")
	require.Equal(t, 201, a.do("PUT", "/v1/views/orders", map[string]any{}).Status)

	r := a.do("POST", "/v1/views/orders/stream", map[string]any{"wait_s": 0.3})
	require.Equal(t, 200, r.Status)
	assert.Empty(t, r.Body["events"], "nothing came: empty after wait_s")

	done := make(chan response, 1)
	go func() { done <- a.do("POST", "/v1/views/orders/stream", map[string]any{"wait_s": 30}) }()
	appended := a.appendOK(event("order", "o-1", ""))
	select {
	case r := <-done:
		require.Equal(t, 200, r.Status)
		evs := r.Body["events"].([]any)
		require.Len(t, evs, 1)
		assert.Equal(t, appended["event_id"], evs[0].(map[string]any)["event_id"])
	case <-time.After(30 * time.Second):
		t.Fatal("the long poll did not return the appended event")
	}
}

// Waiting long polls hold no database connection: with 40 of them waiting
// (the pool has 20 connections), an append still goes through before any of
// them gives up, and one of them receives it.
func TestLongPollsHoldNoConnection(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	a.register("order", "created")
	require.Equal(t, 201, a.do("PUT", "/v1/views/orders", map[string]any{}).Status)

	const waiters = 40
	type result struct {
		events int
		at     time.Time
	}
	results := make(chan result, waiters)
	for range waiters {
		go func() {
			r := a.do("POST", "/v1/views/orders/stream", map[string]any{"wait_s": 3})
			evs, _ := r.Body["events"].([]any)
			results <- result{len(evs), time.Now()}
		}()
	}
	// Give the polls time to reach their wait (nothing observable says they
	// have). Were one to arrive late, the assertions below still hold; they
	// only prove less. Waiters that held connections would exhaust the pool
	// of 20, and the append below would wait for them to give up.
	time.Sleep(500 * time.Millisecond)
	a.appendOK(event("order", "o-1", ""))
	appended := time.Now()

	got := 0
	for range waiters {
		r := <-results
		got += r.events
		if r.events == 0 {
			assert.True(t, r.at.After(appended), "an empty long poll returned before the append went through")
		}
	}
	assert.Equal(t, 1, got, "exactly one poll received the event")
}

func TestViewSigningSecret(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	r := a.do("PUT", "/v1/views/hooks", map[string]any{"edge_function_url": "https://example.com/hook"})
	require.Equal(t, 201, r.Status, "%s", r.Raw)
	secret, _ := r.Body["secret"].(string)
	require.True(t, strings.HasPrefix(secret, "whsec_"), "a secret is made: %q", secret)
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	require.NoError(t, err)
	assert.Len(t, key, 32)

	r = a.do("PUT", "/v1/views/hooks", map[string]any{"edge_function_url": "https://example.com/hook2"})
	require.Equal(t, 200, r.Status)
	assert.Equal(t, secret, r.Body["secret"], "kept when not given")
	assert.NotContains(t, a.do("GET", "/v1/views/hooks", nil).Body, "secret", "shown only when registering")

	mine := "whsec_" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	r = a.do("PUT", "/v1/views/hooks", map[string]any{"edge_function_url": "https://example.com/hook", "secret": mine})
	require.Equal(t, 200, r.Status)
	assert.Equal(t, mine, r.Body["secret"])

	for _, bad := range []string{"nope", "whsec_", "whsec_!!!", "whsec_" + base64.StdEncoding.EncodeToString([]byte("short"))} {
		requireProblem(t, a.do("PUT", "/v1/views/hooks", map[string]any{"edge_function_url": "https://example.com/h", "secret": bad}), 400, "invalid-request")
	}
	r = a.do("PUT", "/v1/views/polled", map[string]any{})
	require.Equal(t, 201, r.Status)
	assert.NotContains(t, r.Body, "secret", "a view without a URL has no secret")
}

// A shutdown does not wait for long polls: they answer at once, empty.
func TestStopWaitingEndsLongPolls(t *testing.T) {
	t.Parallel()
	st := storetest.NewStore(t)
	srv := httpapi.NewServer(st, httpapi.Options{SchemaVersion: 2})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	a := &api{t: t, srv: ts}
	require.Equal(t, 201, a.do("PUT", "/v1/views/orders", map[string]any{}).Status)

	done := make(chan response, 1)
	go func() { done <- a.do("POST", "/v1/views/orders/stream", map[string]any{"wait_s": 30}) }()
	time.Sleep(200 * time.Millisecond) // let the poll reach its wait; the assertion holds either way
	srv.StopWaiting()
	select {
	case r := <-done:
		require.Equal(t, 200, r.Status)
		assert.Empty(t, r.Body["events"])
	case <-time.After(20 * time.Second):
		t.Fatal("the long poll kept waiting after StopWaiting")
	}
}

// A problem's detail reads as a sentence in the API's terms: names quoted as
// JSON quotes them, no SQL quoting, no context said twice.
func TestProblemDetailsReadAsSentences(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	a.register("page", "created")
	require.Equal(t, 201, a.do("PUT", "/v1/views/hooks", map[string]any{"start_at": "2020-01-01T00:00:00Z"}).Status)
	a.appendOK(event("page", "hook-1", ""))
	leased := a.do("POST", "/v1/views/hooks/stream", map[string]any{"limit": 1})
	require.Equal(t, 200, leased.Status, "%s", leased.Raw)
	ev := leased.Body["events"].([]any)[0].(map[string]any)
	ack := func(lease any, offset any) map[string]any {
		return map[string]any{"decider": "page", "decider_id": "hook-1", "offset": offset, "lease_id": lease}
	}
	stale := uuid.NewString()
	cases := []struct {
		method, path string
		body         any
		status       int
		detail       string
	}{
		{"POST", "/v1/views/nosuchview/stream", nil, 404, `view "nosuchview" does not exist`},
		{"GET", "/v1/views/nosuchview", nil, 404, `view "nosuchview" does not exist`},
		{"DELETE", "/v1/views/nosuchview", nil, 404, `view "nosuchview" does not exist`},
		{"POST", "/v1/views/nosuchview/ack", ack(ev["lease_id"], ev["offset"]), 404, `view "nosuchview" does not exist`},
		{"POST", "/v1/views/hooks/ack", with(ack(ev["lease_id"], ev["offset"]), "decider_id", "hook-2"), 404,
			`view "hooks" has no partition for decider "page", decider_id "hook-2" (it has not seen an event of that stream)`},
		{"POST", "/v1/views/hooks/partitions/page/hook-2/retry", nil, 404,
			`view "hooks" has no partition for decider "page", decider_id "hook-2" (it has not seen an event of that stream)`},
		{"POST", "/v1/views/hooks/ack", ack(stale, ev["offset"]), 409, "lease " + stale +
			` is no longer the lease of the partition of decider "page", decider_id "hook-1" in view "hooks": it expired or was settled, and another consumer may hold the partition now; lease again`},
		{"POST", "/v1/views/hooks/ack", ack(ev["lease_id"], 999999), 409, "offset 999999 was not handed out in lease " +
			ev["lease_id"].(string) + ` of the partition of decider "page", decider_id "hook-1" in view "hooks": ack an offset from`},
		{"GET", "/v1/events/" + stale, nil, 404, "event " + stale + " does not exist"},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			r := a.do(c.method, c.path, c.body)
			require.Equal(t, c.status, r.Status, "%s", r.Raw)
			detail, _ := r.Body["detail"].(string)
			assert.True(t, strings.HasPrefix(detail, c.detail), "detail: %s", detail)
			assert.NotContains(t, detail, "'", "no SQL quoting")
		})
	}
}
