package httpapi_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	httpapi "github.com/fstore/fstore/internal/http"
)

func TestMetadataAndTags(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	a.register("order", "created")

	first := with(event("order", "o-1", ""), "tags", []string{"b:2", "a:1", "b:2"},
		"metadata", map[string]any{"user": "ada", "n": 1})
	stored := a.appendOK(first)
	assert.Equal(t, []any{"a:1", "b:2"}, stored["tags"], "sorted, without duplicates")
	assert.Equal(t, map[string]any{"user": "ada", "n": 1.0}, stored["metadata"])

	t.Run("a retry with the tags in another order is the stored event", func(t *testing.T) {
		r := a.do("POST", "/v1/events", with(first, "tags", []string{"a:1", "b:2"}))
		require.Equal(t, 200, r.Status, "%s", r.Raw)
		assert.Equal(t, stored, r.Body)
		requireProblem(t, a.do("POST", "/v1/events", with(first, "tags", []string{"a:1"})), 409, "duplicate-event-id")
		requireProblem(t, a.do("POST", "/v1/events", with(first, "metadata", map[string]any{})), 409, "duplicate-event-id")
	})

	t.Run("every read returns them", func(t *testing.T) {
		for _, path := range []string{"/v1/events/" + first["event_id"].(string), "/v1/events/last?decider=order&decider_id=o-1"} {
			r := a.do("GET", path, nil)
			require.Equal(t, 200, r.Status)
			assert.Equal(t, stored, r.Body, path)
		}
		r := a.do("GET", "/v1/events?decider=order", nil)
		assert.Equal(t, stored, r.Body["events"].([]any)[0])
	})

	t.Run("absent or null is {} and []", func(t *testing.T) {
		for _, body := range []map[string]any{event("order", "o-2", ""), with(event("order", "o-3", ""), "tags", nil, "metadata", nil)} {
			got := a.appendOK(body)
			assert.Equal(t, []any{}, got["tags"])
			assert.Equal(t, map[string]any{}, got["metadata"])
		}
	})

	t.Run("metadata is measured without its whitespace", func(t *testing.T) {
		padded := fmt.Sprintf(`{"note": %q%s}`, strings.Repeat("x", 60<<10), strings.Repeat(" ", 10<<10))
		body := strings.Replace(mustJSON(event("order", "o-4", "")), `"data":`, `"metadata":`+padded+`, "data":`, 1)
		r := a.do("POST", "/v1/events", body)
		require.Equal(t, 201, r.Status, "%.300s", r.Raw)
	})

	batch := func(evs ...map[string]any) map[string]any { return map[string]any{"events": evs} }
	ok := event("order", "o-9", "")
	bad := map[string]struct {
		path, field string
		body        any
	}{
		"a tag with a control character": {"/v1/events", "tags[2]", with(ok, "tags", []string{"a", "b", "c\td"})},
		"an empty tag":                   {"/v1/events", "tags[0]", with(ok, "tags", []string{""})},
		"a tag too long":                 {"/v1/events", "tags[0]", with(ok, "tags", []string{strings.Repeat("é", 256)})},
		"a tag not a string":             {"/v1/events", "tags", with(ok, "tags", []any{1})},
		"tags not a list":                {"/v1/events", "tags", with(ok, "tags", "a")},
		"101 tags":                       {"/v1/events", "tags", with(ok, "tags", manyTags(101))},
		"metadata a string":              {"/v1/events", "metadata", with(ok, "metadata", "ada")},
		"metadata a list":                {"/v1/events", "metadata", with(ok, "metadata", []any{})},
		"metadata with NUL":              {"/v1/events", "metadata", with(ok, "metadata", map[string]any{"a": "\x00"})},
		"metadata too deep":              {"/v1/events", "metadata", with(ok, "metadata", map[string]any{"a": deep(100)})},
		"metadata too large":             {"/v1/events", "metadata", with(ok, "metadata", map[string]any{"a": strings.Repeat("x", 64<<10)})},
		"a batch's metadata":             {"/v1/events/batch", "events[2].metadata", batch(ok, event("order", "o-8", ""), with(ok, "metadata", 5))},
		"a batch's tag":                  {"/v1/events/batch", "events[1].tags[0]", batch(ok, with(event("order", "o-8", ""), "tags", []string{"a\nb"}))},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			r := a.do("POST", tc.path, tc.body)
			requireProblem(t, r, 400, "invalid-request")
			assert.Contains(t, fieldNames(r), tc.field, "%s", r.Raw)
		})
	}
	for _, stream := range []string{"o-8", "o-9"} {
		r := a.do("GET", "/v1/events?decider=order&decider_id="+stream, nil)
		assert.Empty(t, r.Body["events"], "nothing of a refused request is stored")
	}
	assert.Len(t, a.appendOK(with(ok, "tags", manyTags(100)))["tags"], 100, "100 tags are allowed")
}

func manyTags(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("t:%03d", i)
	}
	return out
}
