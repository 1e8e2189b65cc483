package store

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// Live follows of a query test new events against its matches in Go, once
// per event and process, instead of asking PostgreSQL once per subscriber.
// jsonContains is PostgreSQL's jsonb @> (JsonbDeepContains in
// src/backend/utils/adt/jsonb_util.c); the tests compare the two on
// thousands of random pairs against a real database.

// parseJSON decodes a JSON document for jsonContains: objects become
// map[string]any (a repeated key keeps its last value, as in jsonb), numbers
// json.Number (compared as decimals, not floats).
func parseJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// jsonContains reports whether val @> tmpl. At the top level a scalar is
// PostgreSQL's one-element "raw scalar" array: an array may contain a
// scalar, a scalar never contains an array, and an object only an object.
func jsonContains(val, tmpl any) bool {
	_, valObject := val.(map[string]any)
	_, tmplObject := tmpl.(map[string]any)
	if valObject != tmplObject {
		return false
	}
	if valObject {
		return deepContains(val, tmpl)
	}
	valArray, isArray := val.([]any)
	tmplArray, tmplIsArray := tmpl.([]any)
	if !isArray {
		if tmplIsArray {
			return false
		}
		valArray = []any{val}
	}
	if !tmplIsArray {
		tmplArray = []any{tmpl}
	}
	return arrayContains(valArray, tmplArray)
}

// deepContains compares two containers below the top level, where an object
// contains only an object and an array only an array.
func deepContains(val, tmpl any) bool {
	switch t := tmpl.(type) {
	case map[string]any:
		v, ok := val.(map[string]any)
		if !ok {
			return false
		}
		for key, tv := range t {
			vv, ok := v[key]
			if !ok || isContainer(vv) != isContainer(tv) {
				return false
			}
			if isContainer(tv) {
				if !deepContains(vv, tv) {
					return false
				}
			} else if !scalarEqual(vv, tv) {
				return false
			}
		}
		return true
	case []any:
		v, ok := val.([]any)
		return ok && arrayContains(v, t)
	}
	return false
}

// arrayContains: every element of tmpl is in val (order and repeats do not
// matter); a scalar equals one of val's scalars, a container is contained
// in one of val's containers.
func arrayContains(val, tmpl []any) bool {
	for _, te := range tmpl {
		found := false
		for _, ve := range val {
			if isContainer(te) {
				found = isContainer(ve) && deepContains(ve, te)
			} else {
				found = !isContainer(ve) && scalarEqual(ve, te)
			}
			if found {
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func isContainer(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return true
	}
	return false
}

// scalarEqual is jsonb's equality of scalars: same kind, and for numbers
// the same decimal value (1.0 = 1 = 1e0, -0 = 0).
func scalarEqual(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case json.Number:
		y, ok := b.(json.Number)
		return ok && decimalOf(string(x)) == decimalOf(string(y))
	}
	return false
}

// decimal is a number in a canonical form: digits without leading or
// trailing zeros, times ten to exp. Zero is the empty form, whatever its sign.
type decimal struct {
	negative bool
	digits   string
	exp      int64
	raw      string // set only for an exponent beyond int32: compared as text
}

// decimalOf canonicalises a JSON number (valid by construction: it comes
// from encoding/json).
func decimalOf(s string) decimal {
	var d decimal
	if strings.HasPrefix(s, "-") {
		d.negative, s = true, s[1:]
	}
	mantissa, expText, hasExp := strings.Cut(strings.ToLower(s), "e")
	if hasExp {
		e, err := strconv.ParseInt(expText, 10, 32)
		if err != nil {
			return decimal{negative: d.negative, raw: s}
		}
		d.exp = e
	}
	whole, frac, _ := strings.Cut(mantissa, ".")
	digits := strings.TrimLeft(whole+frac, "0")
	d.exp -= int64(len(frac))
	trimmed := strings.TrimRight(digits, "0")
	d.exp += int64(len(digits) - len(trimmed))
	d.digits = trimmed
	if d.digits == "" {
		return decimal{}
	}
	return d
}
