package store_test

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
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

// AppendJSON must write exactly what encoding/json writes for an event, for
// payloads as PostgreSQL returns them (read back from jsonb here) and for
// strings that need escaping.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	conn := connect(t, s)
	rng := rand.New(rand.NewPCG(13, 1))
	g := jsonGen{rng}
	names := append([]string{"order", "a<b>&c", "\u2028", "bad\xffutf8", "\x00\x1f\x7f"}, genStrings...)
	for i := range 3000 {
		var data []byte
		require.NoError(t, conn.QueryRow(ctx, `SELECT $1::jsonb`, g.value(4)).Scan(&data))
		e := store.Event{
			Event: names[rng.IntN(len(names))], EventID: uuid.New(), EventVersion: rng.Int64N(1 << 40),
			Decider: names[rng.IntN(len(names))], DeciderID: names[rng.IntN(len(names))], Data: data,
			CommandID: uuid.New(), Final: rng.IntN(2) == 0, Offset: rng.Int64N(1 << 62),
			CreatedAt: time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)*int64(rng.IntN(2))).In(zones[i%len(zones)]),
		}
		if rng.IntN(2) == 0 {
			e.PreviousID = ptr(uuid.New())
		}
		require.NoError(t, conn.QueryRow(ctx, `SELECT $1::jsonb`, g.object(2)).Scan(&e.Metadata))
		e.Tags = []string{}
		for range rng.IntN(4) {
			e.Tags = append(e.Tags, names[rng.IntN(len(names))])
		}
		want, err := json.Marshal(e)
		require.NoError(t, err)
		require.Equal(t, string(want), string(e.AppendJSON(nil)), "data %s", data)
	}
}

var zones = []*time.Location{time.UTC, time.FixedZone("plus", 5*3600+30*60), time.FixedZone("minus", -7*3600)}

// Every field of Event is encoded: the event is filled by reflection, so a
// field added to Event and not to AppendJSON fails here.
func TestAppendJSONCoversEveryField(t *testing.T) {
	t.Parallel()
	var e store.Event
	v := reflect.ValueOf(&e).Elem()
	for i := range v.NumField() {
		fill(t, v.Field(i), v.Type().Field(i).Name)
	}
	want, err := json.Marshal(e)
	require.NoError(t, err)
	require.Equal(t, string(want), string(e.AppendJSON(nil)))
}

// fill sets f to a value that is not its zero value.
func fill(t *testing.T, f reflect.Value, name string) {
	t.Helper()
	switch f.Interface().(type) {
	case string:
		f.SetString(name + " <&> é")
	case int64:
		f.SetInt(1234567)
	case bool:
		f.SetBool(true)
	case uuid.UUID:
		f.Set(reflect.ValueOf(uuid.New()))
	case *uuid.UUID:
		f.Set(reflect.ValueOf(ptr(uuid.New())))
	case time.Time:
		f.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)))
	case json.RawMessage:
		f.Set(reflect.ValueOf(json.RawMessage(`{"k": ["v", 1, {"x": null}]}`)))
	case []string:
		f.Set(reflect.ValueOf([]string{"a:1", "b<2>"}))
	default:
		t.Fatalf("Event.%s is of type %s: teach fill (and Event.AppendJSON) about it", name, f.Type())
	}
}

// go test -run '^$' -bench EventJSON ./internal/store: AppendJSON against
// encoding/json for a typical event (docs/performance.md).
func BenchmarkEventJSON(b *testing.B) {
	e := store.Event{Event: "order_placed", EventID: uuid.New(), EventVersion: 1, Decider: "order",
		DeciderID: uuid.NewString(), Data: json.RawMessage(`{"n": 1, "note": "a typical small payload"}`),
		CommandID: uuid.New(), PreviousID: ptr(uuid.New()), CreatedAt: time.Now(), Offset: 1234567}
	b.Run("AppendJSON", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = e.AppendJSON(buf[:0])
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(e)
		}
	})
}
