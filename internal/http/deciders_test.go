package httpapi_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	httpapi "github.com/fstore/fstore/internal/http"
)

func TestRegisterEventType(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})

	r := a.do("POST", "/v1/deciders/order/events", map[string]any{"event": "placed", "description": "an order"})
	require.Equal(t, 201, r.Status, "%s", r.Raw)
	assert.Equal(t, map[string]any{"decider": "order", "event": "placed", "event_version": 1.0, "description": "an order"}, r.Body)

	r = a.do("POST", "/v1/deciders/order/events", map[string]any{"event": "placed", "description": "an order"})
	assert.Equal(t, 200, r.Status, "identical registration")

	r = a.do("POST", "/v1/deciders/order/events", map[string]any{"event": "placed", "description": "other"})
	requireProblem(t, r, 409, "registration-conflict")

	r = a.do("POST", "/v1/deciders/order/events", map[string]any{"event": "placed", "event_version": 2})
	assert.Equal(t, 201, r.Status, "a new version")

	r = a.do("POST", "/v1/deciders/a%2Fb/events", map[string]any{"event": "x"})
	require.Equal(t, 201, r.Status, "an escaped slash in a name: %s", r.Raw)
	assert.Equal(t, "a/b", r.Body["decider"])

	bad := map[string]any{
		"empty body":          "",
		"malformed JSON":      `{"event": `,
		"not an object":       `[1,2]`,
		"unknown field":       `{"event": "x", "colour": "red"}`,
		"missing event":       `{}`,
		"event wrong type":    `{"event": 5}`,
		"event too long":      map[string]any{"event": strings.Repeat("x", 256)},
		"control character":   map[string]any{"event": "a\nb"},
		"version zero":        map[string]any{"event": "x", "event_version": 0},
		"version overflowing": `{"event": "x", "event_version": 99999999999999999999}`,
		"version fractional":  `{"event": "x", "event_version": 1.5}`,
		"two values":          `{"event": "x"} {"event": "y"}`,
		"invalid UTF-8":       "{\"event\": \"\xff\xfe\"}",
	}
	for name, body := range bad {
		t.Run(name, func(t *testing.T) {
			requireProblem(t, a.do("POST", "/v1/deciders/order/events", body), 400, "invalid-request")
		})
	}
	requireProblem(t, a.do("POST", "/v1/deciders/"+strings.Repeat("d", 256)+"/events", map[string]any{"event": "x"}), 400, "invalid-request")
	requireProblem(t, a.do("POST", "/v1/deciders/a%00b/events", map[string]any{"event": "x"}), 400, "invalid-request")
}

func TestReadDeciders(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	r := a.do("GET", "/v1/deciders", nil)
	require.Equal(t, 200, r.Status)
	assert.Equal(t, []any{}, r.Body["deciders"], "an empty list, not null")

	a.register("order", "placed", "shipped")
	a.register("invoice", "sent")
	r = a.do("GET", "/v1/deciders", nil)
	require.Equal(t, 200, r.Status)
	ds := r.Body["deciders"].([]any)
	require.Len(t, ds, 2)
	assert.Equal(t, "invoice", ds[0].(map[string]any)["decider"])

	r = a.do("GET", "/v1/deciders/order", nil)
	require.Equal(t, 200, r.Status)
	assert.Equal(t, "order", r.Body["decider"])
	evs := r.Body["events"].([]any)
	require.Len(t, evs, 2)
	assert.Equal(t, map[string]any{"event": "placed", "event_version": 1.0, "description": ""}, evs[0])

	requireProblem(t, a.do("GET", "/v1/deciders/nope", nil), 404, "not-found")
}
