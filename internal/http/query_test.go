package httpapi_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	httpapi "github.com/fstore/fstore/internal/http"
)

func libEvent(event, stream string, data map[string]any) map[string]any {
	e := event0(stream)
	e["event"], e["data"] = event, data
	return e
}

func event0(stream string) map[string]any { return event("library", stream, "") }

func copyQuery(copyID string) map[string]any {
	return map[string]any{"items": []any{map[string]any{
		"types": []string{"copy_lent", "copy_returned"}, "matches": []any{map[string]any{"copy_id": copyID}}}}}
}

func offsetsOf(t *testing.T, r response) []float64 {
	t.Helper()
	var out []float64
	for _, e := range r.Body["events"].([]any) {
		out = append(out, e.(map[string]any)["offset"].(float64))
	}
	return out
}

func TestQueryAndConditionalBatch(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	a.register("library", "copy_added", "copy_lent", "copy_returned")
	added := a.appendOK(libEvent("copy_added", "c-1", map[string]any{"copy_id": "c-1"}))

	// The decision reads what it depends on: nothing lent yet.
	read := a.do("POST", "/v1/events/query", map[string]any{"query": copyQuery("c-1")})
	require.Equal(t, 200, read.Status, "%s", read.Raw)
	assert.Empty(t, read.Body["events"])
	assert.Nil(t, read.Body["next_after"])
	position := read.Body["position"].(float64)
	assert.GreaterOrEqual(t, position, added["offset"].(float64))

	lend := func(reader string) map[string]any {
		return map[string]any{
			"events":    []any{libEvent("copy_lent", "loan-"+reader, map[string]any{"copy_id": "c-1", "reader_id": reader})},
			"condition": map[string]any{"query": copyQuery("c-1"), "after": position},
		}
	}
	first := lend("r-1")
	r := a.do("POST", "/v1/events/batch", first)
	require.Equal(t, 201, r.Status, "%s", r.Raw)
	lentAt := r.Body["events"].([]any)[0].(map[string]any)["offset"]

	t.Run("a retry is answered as stored", func(t *testing.T) {
		r := a.do("POST", "/v1/events/batch", first)
		require.Equal(t, 200, r.Status, "%s", r.Raw)
	})

	t.Run("the same read cannot lend the copy twice", func(t *testing.T) {
		r := a.do("POST", "/v1/events/batch", lend("r-2"))
		requireProblem(t, r, 409, "condition-failed")
		assert.Equal(t, lentAt, r.Body["offset"])
		assert.Contains(t, r.Body["detail"], "nothing was stored")
		again := a.do("POST", "/v1/events/query", map[string]any{"query": copyQuery("c-1")})
		assert.Len(t, again.Body["events"], 1)
	})

	t.Run("previous_id still holds", func(t *testing.T) {
		body := lend("r-3")
		body["events"].([]any)[0].(map[string]any)["decider_id"] = "loan-r-1" // not empty
		body["condition"].(map[string]any)["after"] = lentAt
		r := a.do("POST", "/v1/events/batch", body)
		requireProblem(t, r, 409, "concurrency-conflict")
		assert.EqualValues(t, 0, r.Body["index"])
	})

	t.Run("paging", func(t *testing.T) {
		for i := range 3 {
			a.appendOK(libEvent("copy_returned", fmt.Sprintf("ret-%d", i), map[string]any{"copy_id": "c-1"}))
		}
		var seen []float64
		body := map[string]any{"query": copyQuery("c-1"), "limit": 2}
		for {
			r := a.do("POST", "/v1/events/query", body)
			require.Equal(t, 200, r.Status, "%s", r.Raw)
			seen = append(seen, offsetsOf(t, r)...)
			if r.Body["next_after"] == nil {
				break
			}
			assert.Equal(t, r.Body["next_after"], r.Body["position"])
			body["after"] = r.Body["next_after"]
		}
		assert.Len(t, seen, 4)
		assert.IsIncreasing(t, seen)
	})
}

func TestQueryValidation(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	a.register("library", "copy_lent")
	item := func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	q := func(items ...any) map[string]any { return map[string]any{"query": map[string]any{"items": items}} }
	bad := map[string]struct {
		body  any
		field string
	}{
		"no query":          {map[string]any{}, "query"},
		"no items":          {q(), "query.items"},
		"empty types":       {q(item("types", []string{})), "query.items[0].types"},
		"bad type":          {q(item("types", []string{""})), "query.items[0].types[0]"},
		"empty matches":     {q(item("matches", []any{})), "query.items[0].matches"},
		"match not object":  {q(item("matches", []any{"c-1"})), "query.items[0].matches[0]"},
		"match empty":       {q(item("matches", []any{map[string]any{}})), "query.items[0].matches[0]"},
		"match with NUL":    {`{"query":{"items":[{"matches":[{"a":"\u0000"}]}]}}`, "query.items[0].matches[0]"},
		"negative after":    {map[string]any{"query": copyQuery("c"), "after": -1}, "after"},
		"limit too large":   {map[string]any{"query": copyQuery("c"), "limit": 10001}, "limit"},
		"unknown item key":  {q(item("tagz", []string{"x"})), ""},
		"types not a list":  {q(item("types", "copy_lent")), ""},
		"too many items":    {q(make([]any, 101)...), "query.items"},
		"unknown top field": {map[string]any{"query": copyQuery("c"), "before": 3}, ""},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			r := a.do("POST", "/v1/events/query", tc.body)
			requireProblem(t, r, 400, "invalid-request")
			if tc.field != "" {
				assert.Contains(t, string(r.Raw), `"field":"`+tc.field+`"`)
			}
		})
	}

	batch := func(cond any) map[string]any {
		return map[string]any{"events": []any{libEvent("copy_lent", "l-1", map[string]any{"copy_id": "c"})}, "condition": cond}
	}
	for name, tc := range map[string]struct {
		cond  any
		field string
	}{
		"condition without after": {map[string]any{"query": copyQuery("c")}, "condition.after"},
		"condition without query": {map[string]any{"after": 0}, "condition.query"},
		"condition bad query":     {map[string]any{"query": map[string]any{"items": []any{}}, "after": 0}, "condition.query.items"},
		"negative after":          {map[string]any{"query": copyQuery("c"), "after": -5}, "condition.after"},
	} {
		t.Run(name, func(t *testing.T) {
			r := a.do("POST", "/v1/events/batch", batch(tc.cond))
			requireProblem(t, r, 400, "invalid-request")
			assert.Contains(t, string(r.Raw), `"field":"`+tc.field+`"`)
		})
	}
	r := a.do("GET", "/v1/events", nil)
	assert.Empty(t, r.Body["events"], "nothing was stored by a refused request")
}

// Overlapping decisions over HTTP, each request on its own connection:
// exactly one of 8 lends the copy.
func TestConcurrentConditionalBatchesOverHTTP(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	a.register("library", "copy_lent")
	for round := range 10 {
		copyID := fmt.Sprintf("c-%d", round)
		read := a.do("POST", "/v1/events/query", map[string]any{"query": copyQuery(copyID)})
		require.Equal(t, 200, read.Status)
		statuses := make([]int, 8)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range statuses {
			body := map[string]any{
				"events":    []any{libEvent("copy_lent", fmt.Sprintf("loan-%d-%d", round, i), map[string]any{"copy_id": copyID})},
				"condition": map[string]any{"query": copyQuery(copyID), "after": read.Body["position"]},
			}
			wg.Go(func() {
				<-start
				statuses[i] = a.do("POST", "/v1/events/batch", body).Status
			})
		}
		close(start)
		wg.Wait()
		assert.Equal(t, 1, strings.Count(fmt.Sprint(statuses), "201"), "round %d: %v", round, statuses)
		assert.Equal(t, 7, strings.Count(fmt.Sprint(statuses), "409"), "round %d: %v", round, statuses)
	}
}
