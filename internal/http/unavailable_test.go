package httpapi_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	httpapi "github.com/fstore/fstore/internal/http"
	"github.com/fstore/fstore/internal/store/storetest"
)

// A connection lost mid-request (the server died, a failover) answers 503
// problem+json with Retry-After, like every other unavailable case: never a
// 500, and never a 404 for a stream that is there.
func TestLostConnectionAnswers503(t *testing.T) {
	t.Parallel()
	dbURL := storetest.NewDatabase(t)
	proxy := storetest.NewProxy(t, dbURL)
	a := newAPIOver(t, storetest.OpenStore(t, proxy.URL), httpapi.Options{})
	a.register("order", "created")
	first := a.appendOK(event("order", "o-1", ""))

	calls := []struct {
		name, sql, method, path string
		body                    any
	}{
		{"last event", `DESC LIMIT 1`, "GET", "/v1/events/last?decider=order&decider_id=o-1", nil},
		{"one event", `WHERE event_id = $1`, "GET", "/v1/events/" + first["event_id"].(string), nil},
		{"the log", `read_events`, "GET", "/v1/events?after=0", nil},
		{"a query", `query_events`, "POST", "/v1/events/query", map[string]any{"query": map[string]any{"items": []any{map[string]any{}}}}},
		{"an append", `INSERT INTO events`, "POST", "/v1/events", event("order", "o-1", first["event_id"].(string))},
	}
	for _, c := range calls {
		proxy.CutAnswerTo(c.sql)
		r := a.do(c.method, c.path, c.body)
		requireProblem(t, r, 503, "unavailable")
		assert.Equal(t, "1", r.Header.Get("Retry-After"), c.name)
	}
	assert.Equal(t, 200, a.do("GET", "/v1/events/last?decider=order&decider_id=o-1", nil).Status, "served again")
}
