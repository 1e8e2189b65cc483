package store_test

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
)

// AppendJSON writes what encoding/json writes for an event: byte for byte
// when data and metadata are compact, the same JSON when PostgreSQL spaced
// them; for any strings, valid or not.
func TestEventAppendJSONIsEncodingJSON(t *testing.T) {
	t.Parallel()
	tricky := []string{"", "plain", `quo"te`, `back\slash`, "new\nline\r\t", "\x00\x01\x1f\x7f", "<b>&amp;</b>",
		"é€𝄞", "\u2028\u2029", "bad \xff utf8", "\xc3", "ünïcödé:ä"}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func() string { return tricky[rng.IntN(len(tricky))] + tricky[rng.IntN(len(tricky))] }
	for i := range 2000 {
		prev := uuid.New()
		e := store.Event{Event: pick(), EventID: uuid.New(), EventVersion: rng.Int64N(1 << 40), Decider: pick(),
			DeciderID: pick(), CommandID: uuid.New(), Final: i%2 == 0, Offset: rng.Int64N(1 << 50),
			CreatedAt: time.Unix(rng.Int64N(1<<31), rng.Int64N(1e9)).UTC(), Tags: []string{}}
		if i%3 == 0 {
			e.PreviousID = &prev
		}
		for range rng.IntN(4) {
			e.Tags = append(e.Tags, pick())
		}
		compact := i%2 == 0
		var data, metadata any = map[string]any{"a": pick(), "n": []any{1.5, true, nil, map[string]any{"k": pick()}}},
			map[string]any{"user": pick()}
		e.Data, e.Metadata = marshal(t, data, !compact), marshal(t, metadata, !compact)
		if i%7 == 0 {
			e.Data = json.RawMessage(`"a string"`)
		}
		want, err := json.Marshal(e)
		require.NoError(t, err)
		got := e.AppendJSON(nil)
		require.True(t, json.Valid(got), "%s", got)
		if compact && !strings.ContainsAny(string(e.Data)+string(e.Metadata), "<>&") {
			require.Equal(t, string(want), string(got))
		}
		var w, g any
		require.NoError(t, json.Unmarshal(want, &w))
		require.NoError(t, json.Unmarshal(got, &g))
		require.Equal(t, w, g)
	}
}

// marshal writes v as JSON, spaced as PostgreSQL writes jsonb when spaced.
func marshal(t *testing.T, v any, spaced bool) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	if spaced {
		b, err = json.MarshalIndent(v, "", " ")
		require.NoError(t, err)
	}
	return b
}

func TestEventAppendJSONDefaults(t *testing.T) {
	t.Parallel()
	e := store.Event{Tags: []string{}}
	var got map[string]any
	require.NoError(t, json.Unmarshal(e.AppendJSON(nil), &got))
	assert.Equal(t, map[string]any{}, got["metadata"])
	assert.Equal(t, []any{}, got["tags"])
	assert.Nil(t, got["data"])
}
