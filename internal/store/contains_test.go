package store_test

import (
	"encoding/json"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// Live follows of a query filter new events by JSON containment in Go; it
// must agree with PostgreSQL's @>, which the catch-up read uses, on every
// pair. Half the templates are derived from their value (parts kept, arrays
// shuffled, numbers rewritten: 1 as 1.0 or 10e-1), so that both answers are
// common; the others are independent.
func TestJSONContainsAgreesWithPostgres(t *testing.T) {
	t.Parallel()
	s := storetest.NewStore(t)
	conn := connect(t, s)
	rng := rand.New(rand.NewPCG(13, 2))
	g := jsonGen{rng}
	const pairs = 20000
	vals, tmpls := make([]string, pairs), make([]string, pairs)
	for i := range pairs {
		vals[i] = g.value(4)
		if rng.IntN(2) == 0 {
			vals[i] = g.object(3) // matches are objects, and so is most data
		}
		if rng.IntN(2) == 0 {
			tmpls[i] = g.value(3)
		} else {
			v, err := parseAny(vals[i])
			require.NoError(t, err)
			tmpls[i] = render(rng, derive(rng, v, true))
		}
	}
	for i := range pairs {
		require.True(t, json.Valid([]byte(vals[i])), vals[i])
		require.True(t, json.Valid([]byte(tmpls[i])), tmpls[i])
	}
	rows, err := conn.Query(ctx, `SELECT v @> t FROM unnest($1::jsonb[], $2::jsonb[]) WITH ORDINALITY AS p(v, t, i) ORDER BY i`,
		vals, tmpls)
	require.NoError(t, err)
	var want []bool
	for rows.Next() {
		var b bool
		require.NoError(t, rows.Scan(&b))
		want = append(want, b)
	}
	require.NoError(t, rows.Err())
	require.Len(t, want, pairs)
	contained := 0
	for i := range pairs {
		got, err := store.JSONContains([]byte(vals[i]), []byte(tmpls[i]))
		require.NoError(t, err)
		if !assert.Equal(t, want[i], got, "%s @> %s", vals[i], tmpls[i]) {
			return
		}
		if got {
			contained++
		}
	}
	assert.Greater(t, contained, pairs/5, "enough pairs are contained for the test to mean something")
	assert.Less(t, contained, pairs*4/5, "enough pairs are not contained")
}

func parseAny(s string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	return v, dec.Decode(&v)
}

// derive returns a part of v that v usually contains: some keys or elements
// kept, sometimes a value changed.
func derive(rng *rand.Rand, v any, top bool) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if rng.IntN(3) > 0 {
				out[k] = derive(rng, e, false)
			}
		}
		if rng.IntN(10) == 0 {
			out["z"] = "not there"
		}
		return out
	case []any:
		var out []any
		for _, e := range x {
			if rng.IntN(3) > 0 {
				out = append(out, derive(rng, e, false))
			}
		}
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		if len(out) > 0 && rng.IntN(4) == 0 {
			out = append(out, out[0]) // a repeat
		}
		if top && len(x) > 0 && rng.IntN(4) == 0 {
			return derive(rng, x[rng.IntN(len(x))], false) // an array contains a scalar at the top
		}
		return out
	}
	if rng.IntN(12) == 0 {
		return "changed"
	}
	return v
}

// render writes v as JSON, numbers sometimes in an equal but other form.
func render(rng *rand.Rand, v any) string {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = quoteJSON(k) + ":" + render(rng, x[k])
		}
		return "{" + strings.Join(parts, ",") + "}"
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = render(rng, e)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case json.Number:
		s := string(x)
		switch rng.IntN(4) {
		case 0:
			if !strings.ContainsAny(s, ".eE") {
				return s + ".000"
			}
		case 1:
			if !strings.ContainsAny(s, "eE") {
				return s + "e0"
			}
		case 2:
			if !strings.ContainsAny(s, ".eE") && strings.TrimPrefix(s, "-") != "0" {
				return s + "0e-1"
			}
		}
		return s
	case string:
		return quoteJSON(x)
	case bool:
		if x {
			return "true"
		}
		return "false"
	}
	return "null"
}
