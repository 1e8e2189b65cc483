package httpapi_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	httpapi "github.com/fstore/fstore/internal/http"
)

func hourAgo() string { return time.Now().Add(-time.Hour).Format(time.RFC3339) }

// typedEvent is an append body of the given type.
func typedEvent(decider, deciderID, ty, previous string) map[string]any {
	return with(event(decider, deciderID, previous), "event", ty)
}

// leaseOne leases the view's next partition and returns its first event.
func (a *api) leaseOne(view string) map[string]any {
	a.t.Helper()
	r := a.do("POST", "/v1/views/"+view+"/stream", map[string]any{"limit": 1})
	require.Equal(a.t, 200, r.Status, "%s", r.Raw)
	evs := r.Body["events"].([]any)
	require.NotEmpty(a.t, evs, "something to lease")
	return evs[0].(map[string]any)
}

func TestScopedViewOverHTTP(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	a.register("order", "placed", "paid")
	a.register("invoice", "sent")
	placed := a.appendOK(typedEvent("order", "o-1", "placed", ""))
	paid := a.appendOK(typedEvent("order", "o-1", "paid", placed["event_id"].(string)))
	a.appendOK(typedEvent("invoice", "i-1", "sent", ""))

	t.Run("200 and 201", func(t *testing.T) {
		r := a.do("PUT", "/v1/views/paid", map[string]any{"start_at": hourAgo(), "deciders": []string{"order"}, "events": []string{"paid"}})
		require.Equal(t, 201, r.Status, "%s", r.Raw)
		assert.Equal(t, []any{"order"}, r.Body["deciders"])
		assert.Equal(t, []any{"paid"}, r.Body["events"])
		status := r.Body["status"].(map[string]any)
		assert.EqualValues(t, 1, status["partitions"], "only o-1 holds a paid event")
		assert.EqualValues(t, 1, status["events_pending"])
		got := a.leaseOne("paid")
		assert.Equal(t, paid["event_id"], got["event_id"], "the placed event before it is not handed out")
		assert.EqualValues(t, 0, got["attempts"])

		r = a.do("PUT", "/v1/views/paid", map[string]any{"start_at": hourAgo()})
		require.Equal(t, 200, r.Status)
		assert.Nil(t, r.Body["deciders"], "a PUT without lists takes every decider")
		assert.Contains(t, r.Body, "events")
	})
	t.Run("400", func(t *testing.T) {
		long := make([]string, 101)
		for i := range long {
			long[i] = fmt.Sprint("d", i)
		}
		for name, c := range map[string]struct {
			body  map[string]any
			field string
		}{
			"an empty decider list": {map[string]any{"deciders": []string{}}, "deciders"},
			"101 deciders":          {map[string]any{"deciders": long}, "deciders"},
			"a bad name":            {map[string]any{"events": []string{"paid", "a\nb"}}, "events[1]"},
			"not a list":            {map[string]any{"deciders": "order"}, "deciders"},
		} {
			r := a.do("PUT", "/v1/views/bad", c.body)
			requireProblem(t, r, 400, "invalid-request")
			assert.Equal(t, []string{c.field}, fieldNames(r), name)
		}
	})
	t.Run("422 names the unknown name", func(t *testing.T) {
		r := a.do("PUT", "/v1/views/bad", map[string]any{"deciders": []string{"order", "nope"}})
		requireProblem(t, r, 422, "not-registered")
		assert.Equal(t, []string{"deciders[1]"}, fieldNames(r))
		assert.Contains(t, r.Body["detail"], `"nope"`)
		r = a.do("PUT", "/v1/views/bad", map[string]any{"deciders": []string{"order"}, "events": []string{"sent"}})
		requireProblem(t, r, 422, "not-registered")
		assert.Equal(t, []string{"events[0]"}, fieldNames(r), "sent is invoice's, not order's")
		requireProblem(t, a.do("GET", "/v1/views/bad", nil), 404, "not-found")
	})
}

func TestEdgeFunctionURLChecks(t *testing.T) {
	t.Parallel()
	strict := newAPI(t, httpapi.Options{})
	open := newAPI(t, httpapi.Options{AllowPrivateURLs: true})
	t.Run("400", func(t *testing.T) {
		for name, c := range map[string]struct {
			a    *api
			url  string
			want string
		}{
			"cloud metadata":              {open, "http://169.254.169.254/latest/meta-data", "cloud metadata"},
			"cloud metadata over IPv6":    {open, "http://[fd00:ec2::254]/", "cloud metadata"},
			"loopback":                    {strict, "http://127.0.0.1:9000/hook", "FSTORE_ALLOW_PRIVATE_URLS"},
			"localhost":                   {strict, "http://localhost:9000/hook", "FSTORE_ALLOW_PRIVATE_URLS"},
			"a private range":             {strict, "https://10.1.2.3/hook", "not a public address"},
			"mapped loopback":             {strict, "http://[::ffff:127.0.0.1]/", "not a public address"},
			"user-info":                   {open, "https://alice:s3cr3t-pw@hooks.example/x", "user-info"},
			"user-info on a private host": {strict, "https://alice:s3cr3t-pw@127.0.0.1/x", "user-info"},
		} {
			r := c.a.do("PUT", "/v1/views/hook", map[string]any{"edge_function_url": c.url})
			requireProblem(t, r, 400, "invalid-request")
			assert.Equal(t, []string{"edge_function_url"}, fieldNames(r), name)
			assert.Contains(t, string(r.Raw), c.want, name)
			assert.NotContains(t, string(r.Raw), "s3cr3t-pw", "%s: no answer echoes credentials", name)
		}
	})
	t.Run("201", func(t *testing.T) {
		assert.Equal(t, 201, open.do("PUT", "/v1/views/local", map[string]any{"edge_function_url": "http://127.0.0.1:9000/hook"}).Status,
			"private addresses allowed")
		assert.Equal(t, 201, strict.do("PUT", "/v1/views/named", map[string]any{"edge_function_url": "https://hooks.example/x"}).Status,
			"a name is checked by the dispatcher, after DNS")
	})
}

// partitionsFixture: a view "v" with three partitions: o-1 acked, o-2's
// next event nacked with a reason, o-3's without one (both failing).
func partitionsFixture(t *testing.T, opts httpapi.Options) (*api, []map[string]any) {
	a := newAPI(t, opts)
	a.register("order", "created")
	var evs []map[string]any
	for _, id := range []string{"o-1", "o-2", "o-3"} {
		evs = append(evs, a.appendOK(event("order", id, "")))
	}
	evs = append(evs, a.appendOK(event("order", "o-2", evs[1]["event_id"].(string))))
	require.Equal(t, 201, a.do("PUT", "/v1/views/v", map[string]any{"start_at": hourAgo()}).Status)
	r := a.do("POST", "/v1/views/v/stream", map[string]any{"limit": 3})
	require.Equal(t, 200, r.Status)
	for _, e := range r.Body["events"].([]any) {
		e := e.(map[string]any)
		body := map[string]any{"decider": "order", "decider_id": e["decider_id"], "lease_id": e["lease_id"]}
		switch e["decider_id"] {
		case "o-1":
			body["offset"] = e["offset"]
			require.Equal(t, 200, a.do("POST", "/v1/views/v/ack", body).Status)
			continue
		case "o-2":
			body["error"] = "projection table is locked"
		}
		require.Equal(t, 200, a.do("POST", "/v1/views/v/nack", body).Status)
	}
	return a, evs
}

func TestPartitionRoutes(t *testing.T) {
	t.Parallel()
	a, evs := partitionsFixture(t, httpapi.Options{})
	base := "/v1/views/v/partitions"

	t.Run("200", func(t *testing.T) {
		r := a.do("GET", base+"?limit=2", nil)
		require.Equal(t, 200, r.Status, "%s", r.Raw)
		page := r.Body["partitions"].([]any)
		require.Len(t, page, 2)
		assert.Equal(t, "o-1", page[0].(map[string]any)["decider_id"])
		next := r.Body["next_after"].(string)
		r = a.do("GET", base+"?limit=2&after="+next, nil)
		require.Equal(t, 200, r.Status)
		require.Len(t, r.Body["partitions"], 1)
		assert.Equal(t, "o-3", r.Body["partitions"].([]any)[0].(map[string]any)["decider_id"])
		assert.Nil(t, r.Body["next_after"], "the last page")

		r = a.do("GET", base+"?state=failing", nil)
		require.Equal(t, 200, r.Status)
		failing := r.Body["partitions"].([]any)
		require.Len(t, failing, 2, "nacked, with or without a reason")
		assert.Nil(t, failing[1].(map[string]any)["last_error"], "o-3's nack said nothing")
		p := failing[0].(map[string]any)
		assert.Equal(t, "o-2", p["decider_id"])
		assert.Equal(t, "projection table is locked", p["last_error"])
		assert.Nil(t, p["last_status"], "a nack has no HTTP status")
		assert.NotNil(t, p["last_error_at"])
		assert.EqualValues(t, 2, p["events_pending"])
		for _, k := range []string{"acked_offset", "head_offset", "leased_until", "retry_at", "attempts", "parked"} {
			assert.Contains(t, p, k)
		}
		assert.Empty(t, a.do("GET", base+"?state=parked", nil).Body["partitions"])
		assert.Len(t, a.do("GET", base+"?state=behind", nil).Body["partitions"], 2, "o-1 is caught up")

		r = a.do("GET", base+"/order/o-2", nil)
		require.Equal(t, 200, r.Status)
		assert.Equal(t, evs[1]["event_id"], r.Body["next_event"].(map[string]any)["event_id"])
		r = a.do("GET", base+"/order/o-2/attempts", nil)
		require.Equal(t, 200, r.Status)
		attempts := r.Body["attempts"].([]any)
		require.Len(t, attempts, 1)
		at := attempts[0].(map[string]any)
		assert.Equal(t, "nack", at["kind"])
		assert.Equal(t, "projection table is locked", at["error"])
		assert.EqualValues(t, evs[1]["offset"], at["offset"])
		assert.Empty(t, a.do("GET", base+"/order/o-3/attempts", nil).Body["attempts"], "a nack without a reason records nothing")
		assert.Nil(t, a.do("GET", base+"/order/o-1", nil).Body["next_event"], "caught up")

		// Skip the poison event: o-2 goes on with its next one.
		r = a.do("POST", base+"/order/o-2/skip", map[string]any{"offset": evs[1]["offset"]})
		require.Equal(t, 200, r.Status, "%s", r.Raw)
		assert.EqualValues(t, evs[1]["offset"], r.Body["acked_offset"])
		assert.Nil(t, r.Body["last_error"], "the failure is over")
		assert.Equal(t, evs[3]["event_id"], r.Body["next_event"].(map[string]any)["event_id"])
		attempts = a.do("GET", base+"/order/o-2/attempts?limit=1", nil).Body["attempts"].([]any)
		assert.Equal(t, "skip", attempts[0].(map[string]any)["kind"], "the skip is recorded")

		// Replay from the start: o-2's first event comes again.
		r = a.do("POST", base+"/order/o-2/replay", map[string]any{"after": 0})
		require.Equal(t, 200, r.Status, "%s", r.Raw)
		assert.Equal(t, evs[1]["event_id"], r.Body["next_event"].(map[string]any)["event_id"])
		assert.EqualValues(t, 2, r.Body["events_pending"])

		r = a.do("POST", "/v1/views/v/retry", nil)
		require.Equal(t, 200, r.Status)
		assert.EqualValues(t, 0, r.Body["retried"], "nothing was parked")
	})
	t.Run("400", func(t *testing.T) {
		for name, c := range map[string]struct {
			method, path string
			body         any
			field        string
		}{
			"an unknown state":     {"GET", base + "?state=sad", nil, "state"},
			"a forged cursor":      {"GET", base + "?after=bm9wZQ", nil, "after"},
			"a limit too high":     {"GET", base + "?limit=1001", nil, "limit"},
			"an unknown parameter": {"GET", base + "?stat=all", nil, "stat"},
			"attempts limit":       {"GET", base + "/order/o-1/attempts?limit=0", nil, "limit"},
			"skip offset zero":     {"POST", base + "/order/o-1/skip", map[string]any{"offset": 0}, "offset"},
			"skip without offset":  {"POST", base + "/order/o-1/skip", map[string]any{}, "offset"},
			"replay without after": {"POST", base + "/order/o-1/replay", map[string]any{}, "after"},
			"replay ahead":         {"POST", base + "/order/o-1/replay", map[string]any{"after": 1 << 40}, "after"},
		} {
			r := a.do(c.method, c.path, c.body)
			requireProblem(t, r, 400, "invalid-request")
			assert.Equal(t, []string{c.field}, fieldNames(r), name)
		}
	})
	t.Run("404", func(t *testing.T) {
		for _, c := range [][2]string{
			{"GET", "/v1/views/nope/partitions"}, {"GET", base + "/order/nope"}, {"GET", base + "/order/nope/attempts"},
			{"POST", base + "/order/nope/skip"}, {"POST", base + "/order/nope/replay"}, {"POST", "/v1/views/nope/retry"},
		} {
			var body any
			switch {
			case strings.HasSuffix(c[1], "/skip"):
				body = map[string]any{"offset": 1}
			case strings.HasSuffix(c[1], "/replay"):
				body = map[string]any{"after": 0}
			}
			requireProblem(t, a.do(c[0], c[1], body), 404, "not-found")
		}
	})
	t.Run("409", func(t *testing.T) {
		r := a.do("POST", base+"/order/o-2/skip", map[string]any{"offset": evs[3]["offset"]})
		requireProblem(t, r, 409, "not-next-event")
		assert.Contains(t, r.Body["detail"], fmt.Sprint(evs[1]["offset"]), "the detail names the next event's offset")
		requireProblem(t, a.do("POST", base+"/order/o-1/skip", map[string]any{"offset": evs[0]["offset"]}), 409, "not-next-event")
		leased := a.leaseOne("v")
		key := base + "/order/" + leased["decider_id"].(string)
		requireProblem(t, a.do("POST", key+"/skip", map[string]any{"offset": leased["offset"]}), 409, "partition-leased")
		requireProblem(t, a.do("POST", key+"/replay", map[string]any{"after": 0}), 409, "partition-leased")
	})
}

// A read-only key reads partitions and attempts; skip, replay and retry
// need a full key.
func TestPartitionRoutesWithReadOnlyKey(t *testing.T) {
	t.Parallel()
	a, evs := partitionsFixture(t, httpapi.Options{APIKeys: []string{"writer", "ro:reader"}})
	a.key = "reader"
	base := "/v1/views/v/partitions"
	for _, get := range []string{base, base + "?state=failing", base + "/order/o-2", base + "/order/o-2/attempts"} {
		assert.Equal(t, 200, a.do("GET", get, nil).Status, get)
	}
	for name, c := range map[string]struct {
		path string
		body any
	}{
		"skip":       {base + "/order/o-2/skip", map[string]any{"offset": evs[1]["offset"]}},
		"replay":     {base + "/order/o-2/replay", map[string]any{"after": 0}},
		"bulk retry": {"/v1/views/v/retry", nil},
	} {
		t.Run(name, func(t *testing.T) { requireProblem(t, a.do("POST", c.path, c.body), 403, "forbidden") })
	}
	a.key = "writer"
	assert.Equal(t, 200, a.do("POST", base+"/order/o-2/skip", map[string]any{"offset": evs[1]["offset"]}).Status,
		"a full key may")
}
