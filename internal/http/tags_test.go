package httpapi_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	httpapi "github.com/fstore/fstore/internal/http"
)

func subscribed(course, student string) map[string]any {
	e := event("courses", "sub-"+course+"-"+student, "")
	e["event"], e["data"] = "student_subscribed", map[string]any{"course_id": course, "student_id": student}
	e["tags"] = []string{"course:" + course, "student:" + student}
	return e
}

func TestTagQueriesAndConditions(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	a.register("courses", "course_defined", "student_subscribed")
	defined := with(event("courses", "c-1", ""), "event", "course_defined", "tags", []string{"course:c-1"},
		"data", map[string]any{"capacity": 2})
	a.appendOK(defined)
	s1 := a.appendOK(subscribed("c-1", "s-1"))
	a.appendOK(subscribed("c-2", "s-1"))

	course := map[string]any{"items": []any{map[string]any{"types": []string{"course_defined", "student_subscribed"}, "tags": []string{"course:c-1"}}}}
	read := a.do("POST", "/v1/events/query", map[string]any{"query": course})
	require.Equal(t, 200, read.Status, "%s", read.Raw)
	assert.Len(t, read.Body["events"], 2)

	both := map[string]any{"items": []any{map[string]any{"tags": []string{"student:s-1", "course:c-1"}}}}
	r := a.do("POST", "/v1/events/query", map[string]any{"query": both})
	require.Equal(t, 200, r.Status, "%s", r.Raw)
	assert.Equal(t, []any{s1["event_id"]}, ids(r), "tags are AND-ed within an item")

	t.Run("a condition on tags", func(t *testing.T) {
		body := func(student string) map[string]any {
			return map[string]any{"events": []any{subscribed("c-1", student)},
				"condition": map[string]any{"query": course, "after": read.Body["position"]}}
		}
		require.Equal(t, 201, a.do("POST", "/v1/events/batch", body("s-2")).Status)
		requireProblem(t, a.do("POST", "/v1/events/batch", body("s-3")), 409, "condition-failed")
	})

	t.Run("reading by tag", func(t *testing.T) {
		for query, want := range map[string]int{
			"tag=student:s-1":                               2,
			"tag=student:s-1&tag=course:c-2":                1,
			"tag=course:c-1&decider=courses":                3,
			"tag=course:c-1&decider=courses&limit=1":        1,
			"tag=course:c-1&decider=other":                  0,
			"tag=course:c-1&decider=courses&decider_id=c-1": 1,
			"tag=nobody": 0,
		} {
			r := a.do("GET", "/v1/events?"+strings.ReplaceAll(query, ":", url.QueryEscape(":")), nil)
			require.Equal(t, 200, r.Status, "%s: %s", query, r.Raw)
			assert.Len(t, r.Body["events"], want, query)
		}
		assert.Len(t, readAll(t, a, "tag=course:c-1&limit=1"), 3, "paging by tag")
	})

	bad := map[string]struct {
		path, field string
		body        any
	}{
		"an empty tag":   {"/v1/events/query", "query.items[0].tags[0]", map[string]any{"query": map[string]any{"items": []any{map[string]any{"tags": []string{""}}}}}},
		"no tags":        {"/v1/events/query", "query.items[0].tags", map[string]any{"query": map[string]any{"items": []any{map[string]any{"tags": []string{}}}}}},
		"a control char": {"/v1/events/batch", "condition.query.items[0].tags[1]", map[string]any{"events": []any{subscribed("c-9", "s-9")}, "condition": map[string]any{"after": 0, "query": map[string]any{"items": []any{map[string]any{"tags": []string{"a", "b\u0007"}}}}}}},
		"101 tags":       {"/v1/events/query", "query.items[0].tags", map[string]any{"query": map[string]any{"items": []any{map[string]any{"tags": manyTags(101)}}}}},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			r := a.do("POST", tc.path, tc.body)
			requireProblem(t, r, 400, "invalid-request")
			assert.Contains(t, fieldNames(r), tc.field, "%s", r.Raw)
		})
	}
	for _, q := range []string{"tag=", "tag=a%01b", strings.Repeat("tag=x&", 101) + "limit=1"} {
		r := a.do("GET", "/v1/events?"+q, nil)
		requireProblem(t, r, 400, "invalid-request")
		assert.Equal(t, []string{"tag"}, fieldNames(r), "%.60s", q)
	}
	r = a.do("GET", fmt.Sprintf("/v1/events?decider=courses&decider_id=c-9&tag=%s", "x"), nil)
	assert.Equal(t, 200, r.Status)
}
