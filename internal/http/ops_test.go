package httpapi_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	httpapi "github.com/fstore/fstore/internal/http"
)

func TestOperations(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	r := a.do("GET", "/healthz", nil)
	assert.Equal(t, 200, r.Status)
	r = a.do("GET", "/readyz", nil)
	require.Equal(t, 200, r.Status)
	assert.Equal(t, "ready", r.Body["status"])
	assert.NotEmpty(t, r.Header.Get("X-Request-Id"))

	r = a.do("GET", "/openapi.json", nil)
	require.Equal(t, 200, r.Status)
	assert.Equal(t, "3.0.3", r.Body["openapi"])
	r = a.do("GET", "/openapi.yaml", nil)
	require.Equal(t, 200, r.Status)
	assert.Contains(t, string(r.Raw), "openapi: 3.0.3")

	r = a.do("GET", "/docs/", nil)
	require.Equal(t, 200, r.Status)
	assert.Contains(t, string(r.Raw), "/openapi.json")
	for _, asset := range []string{"/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/docs/swagger-ui-standalone-preset.js"} {
		assert.Equal(t, 200, a.do("GET", asset, nil).Status, asset)
	}
	requireProblem(t, a.do("GET", "/docs/nope.js", nil), 404, "not-found")
	requireProblem(t, a.do("GET", "/v2/nothing", nil), 404, "not-found")
	requireProblem(t, a.do("DELETE", "/v1/events", nil), 405, "method-not-allowed")
}

func TestReadyzSchemaMismatch(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{SchemaVersion: 999})
	r := a.do("GET", "/readyz", nil)
	requireProblem(t, r, 503, "schema-mismatch")
	assert.Equal(t, "1", r.Header.Get("Retry-After"))
}

func TestBearerKeys(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{APIKeys: []string{"k1-secret", "k2-secret"}})
	assert.Equal(t, 200, a.do("GET", "/v1/deciders", nil).Status, "first key")
	a.key = "k2-secret"
	assert.Equal(t, 200, a.do("GET", "/v1/deciders", nil).Status, "second key")
	for _, key := range []string{"", "wrong", "k1-secre", "k1-secret2"} {
		a.key = key
		r := a.do("GET", "/v1/deciders", nil)
		requireProblem(t, r, 401, "unauthorized")
		assert.Contains(t, r.Header.Get("WWW-Authenticate"), "Bearer")
	}
	req, _ := http.NewRequest("GET", a.srv.URL+"/v1/deciders", nil)
	req.Header.Set("Authorization", "Basic azE6c2VjcmV0")
	requireProblem(t, send(t, req), 401, "unauthorized")
	a.key = ""
	assert.Equal(t, 200, a.do("GET", "/healthz", nil).Status, "operations need no key")
}

func TestProblemIsJSON(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	r := a.do("GET", "/v1/events?limit=0", nil)
	var p map[string]any
	require.NoError(t, json.Unmarshal(r.Raw, &p))
	assert.NotEmpty(t, p["request_id"])
	assert.Equal(t, []any{map[string]any{"field": "limit", "message": "must be an integer from 1 to 10000"}}, p["errors"])
}

// A read-only key reads and consumes but may not append or register.
func TestReadOnlyKeys(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{APIKeys: []string{"writer", "ro:reader"}})
	a.register("order", "created")
	require.Equal(t, 201, a.do("PUT", "/v1/views/orders", map[string]any{}).Status)
	a.appendOK(event("order", "o-1", ""))

	a.key = "reader"
	for _, get := range []string{"/v1/deciders", "/v1/events", "/v1/views", "/v1/views/orders"} {
		assert.Equal(t, 200, a.do("GET", get, nil).Status, get)
	}
	assert.Equal(t, 200, a.do("POST", "/v1/views/orders/stream", nil).Status, "consuming is reading")
	assert.Equal(t, 200, a.do("POST", "/v1/events/query", map[string]any{"query": map[string]any{"items": []any{map[string]any{}}}}).Status,
		"a query is a read")
	for name, call := range map[string][2]string{
		"register": {"POST", "/v1/deciders/order/events"}, "append": {"POST", "/v1/events"},
		"batch": {"POST", "/v1/events/batch"}, "view": {"PUT", "/v1/views/other"},
		"delete": {"DELETE", "/v1/views/orders"}, "retry": {"POST", "/v1/views/orders/partitions/order/o-1/retry"},
	} {
		t.Run(name, func(t *testing.T) {
			requireProblem(t, a.do(call[0], call[1], map[string]any{}), 403, "forbidden")
		})
	}
	a.key = "ro:reader"
	requireProblem(t, a.do("GET", "/v1/events", nil), 401, "unauthorized")
}
