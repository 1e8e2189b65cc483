package store_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// jsonGen writes random JSON documents for the tests that compare fstore's
// JSON code with encoding/json and with PostgreSQL: few keys and values, so
// that random pairs often overlap, and the characters that need care.
type jsonGen struct{ rng *rand.Rand }

var (
	genKeys    = []string{"a", "b", "c", "copy_id", "n", "tags", "ä", "<k>"}
	genStrings = []string{"", "x", "y", "c-1", "c-2", "A&B", "<b>", "é", "日本", "line\nbreak", "tab\t", "q\"uote",
		"back\\slash", "\u2028", "\u2029", "\u007f", "\u0001", "😀", "\\u0041"}
	genNumbers = []string{"0", "-0", "1", "1.0", "1.50", "1e2", "100", "-3", "2.5e-3", "0.0025", "123456789012345678901234567890",
		"1E+2", "10e1", "0.1", "1e-1", "-0.0", "7", "3.14159"}
)

// value returns a random JSON value nested at most depth levels.
func (g jsonGen) value(depth int) string {
	kinds := 7
	if depth <= 0 {
		kinds = 5
	}
	switch g.rng.IntN(kinds) {
	case 0:
		return g.str()
	case 1:
		return genNumbers[g.rng.IntN(len(genNumbers))]
	case 2:
		return []string{"true", "false"}[g.rng.IntN(2)]
	case 3:
		return "null"
	case 4:
		return g.str()
	case 5:
		return g.object(depth - 1)
	default:
		return g.array(depth - 1)
	}
}

func (g jsonGen) str() string {
	return quoteJSON(genStrings[g.rng.IntN(len(genStrings))])
}

// object returns a random object; space decides the white space PostgreSQL
// would not write, so the compaction is tested too.
func (g jsonGen) object(depth int) string {
	n := g.rng.IntN(4)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = quoteJSON(genKeys[g.rng.IntN(len(genKeys))]) + g.space() + ":" + g.space() + g.value(depth)
	}
	return "{" + g.space() + strings.Join(parts, ","+g.space()) + "}"
}

func (g jsonGen) array(depth int) string {
	n := g.rng.IntN(4)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = g.value(depth)
	}
	return "[" + strings.Join(parts, ", ") + g.space() + "]"
}

func (g jsonGen) space() string {
	return []string{"", "", " ", "\n\t"}[g.rng.IntN(4)]
}

// quoteJSON writes s as a JSON string, escaping only what JSON requires.
func quoteJSON(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
