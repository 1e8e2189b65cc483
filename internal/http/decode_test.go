package httpapi_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	httpapi "github.com/fstore/fstore/internal/http"
)

// Query parameters a route does not take are refused, naming them: a
// misspelt ?afterr=0 must not silently return the whole log.
func TestUnknownQueryParameters(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	a.register("order", "created")
	a.appendOK(event("order", "o-1", ""))
	for _, path := range []string{
		"/v1/events?afterr=0",
		"/v1/events?after=0&limt=5",
		"/v1/events/last?decider=order&decider_id=o-1&x=1",
		"/v1/deciders?verbose=1",
		"/v1/views?all=true",
	} {
		t.Run(path, func(t *testing.T) {
			r := a.do("GET", path, nil)
			requireProblem(t, r, 400, "invalid-request")
			require.Len(t, fieldNames(r), 1, "%s", r.Raw)
		})
	}
	r := a.do("GET", "/v1/events?afterr=0", nil)
	assert.Equal(t, []string{"afterr"}, fieldNames(r))
	assert.Contains(t, string(r.Raw), "after, limit", "the answer says which parameters the route takes")
	r = a.do("POST", "/v1/events?dry_run=1", event("order", "o-2", ""))
	requireProblem(t, r, 400, "invalid-request")
	assert.Equal(t, []string{"dry_run"}, fieldNames(r))
	// Known parameters still work.
	r = a.do("GET", "/v1/events?after=0&limit=5", nil)
	require.Equal(t, 200, r.Status, "%s", r.Raw)
}

// A timestamp that is not RFC 3339 is a 400 naming the field, not
// "malformed JSON" with Go's layout string.
func TestTimestampFieldsNameTheField(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	for _, v := range []string{`"yesterday"`, `"2026-01-02"`, `"2026-01-02T15:04:05"`, `12`, `true`} {
		r := a.do("PUT", "/v1/views/v1", `{"start_at": `+v+`}`)
		requireProblem(t, r, 400, "invalid-request")
		require.Equal(t, []string{"start_at"}, fieldNames(r), "%s", r.Raw)
		msg := r.Body["errors"].([]any)[0].(map[string]any)["message"].(string)
		assert.Contains(t, msg, "RFC 3339")
		assert.NotContains(t, string(r.Raw), "2006-01-02", "Go's layout string stays inside")
		assert.NotContains(t, r.Body["detail"], "malformed")
	}
	r := a.do("PUT", "/v1/views/v1", `{"start_at": "2020-01-01T00:00:00+02:00"}`)
	require.Equal(t, 201, r.Status, "%s", r.Raw)
}

// Path parameters follow the same rule as body fields.
func TestPathParametersFollowTheNameRule(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	for _, path := range []string{"/v1/views/a%0Ab", "/v1/views/a%01b", "/v1/deciders/x%C2%85y"} {
		r := a.do("GET", path, nil)
		requireProblem(t, r, 400, "invalid-request")
	}
}
