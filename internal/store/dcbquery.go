package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Limits of a query, as fstore_query_sql (0003, 0007) has them.
const maxItemTags = 100

// check refuses, wrapping ErrInvalid, a query that fstore_query_sql would
// refuse: a conditional append is checked in a group with others (see
// dcbgroup.go), where a malformed query would fail the group's statement.
func (q Query) check() error {
	if len(q.Items) == 0 {
		return fmt.Errorf("%w: a query has at least one item", ErrInvalid)
	}
	for i, it := range q.Items {
		if it.Types != nil && len(it.Types) == 0 {
			return fmt.Errorf("%w: query item %d: types must not be empty", ErrInvalid, i)
		}
		if it.Tags != nil && (len(it.Tags) == 0 || len(it.Tags) > maxItemTags) {
			return fmt.Errorf("%w: query item %d: tags must be 1 to %d tags", ErrInvalid, i, maxItemTags)
		}
		for _, t := range it.Tags {
			if !ValidName(t) {
				return fmt.Errorf("%w: query item %d: tag %q must be 1 to 255 characters, with no control characters",
					ErrInvalid, i, t)
			}
		}
		if it.Matches != nil && len(it.Matches) == 0 {
			return fmt.Errorf("%w: query item %d: matches must not be empty", ErrInvalid, i)
		}
		for _, m := range it.Matches {
			var fields map[string]json.RawMessage
			if !bytes.HasPrefix(bytes.TrimSpace(m), []byte("{")) || json.Unmarshal(m, &fields) != nil || len(fields) == 0 {
				return fmt.Errorf("%w: query item %d: every match must be an object with at least one field", ErrInvalid, i)
			}
		}
	}
	return nil
}

// ValidName reports whether t is 1 to 255 characters without control
// characters: the rule of every name, key and tag in fstore (the API checks
// requests by it), and of fstore_tags (0004).
func ValidName(t string) bool {
	n := utf8.RuneCountInString(t)
	if n < 1 || n > 255 || !utf8.ValidString(t) {
		return false
	}
	for _, r := range t {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// tagQuery is a query whose every item has tags and no matches (the query
// of the DCB specification), flattened as fstore_tag_events (0007) takes it:
// item i's tags are tags[tagsFrom[i]-1 : tagsTo[i]], its types likewise (an
// empty slice: any type). SQL arrays count from 1.
type tagQuery struct {
	tags, types                          []string
	tagsFrom, tagsTo, typesFrom, typesTo []int64
}

// tagQuery flattens q; false when q is not a tag query. Each item's tags are
// normalised, so its first is its least, the tag whose lock key it takes.
func (q Query) tagQuery() (tagQuery, bool) {
	t := tagQuery{tags: []string{}, types: []string{}}
	for _, it := range q.Items {
		if len(it.Tags) == 0 || it.Matches != nil {
			return tagQuery{}, false
		}
		t.tagsFrom = append(t.tagsFrom, int64(len(t.tags)+1))
		t.tags = append(t.tags, NormalizeTags(it.Tags)...)
		t.tagsTo = append(t.tagsTo, int64(len(t.tags)))
		t.typesFrom = append(t.typesFrom, int64(len(t.types)+1))
		t.types = append(t.types, it.Types...)
		t.typesTo = append(t.typesTo, int64(len(t.types)))
	}
	return t, len(q.Items) > 0
}

// tagQueryParams are t.args() as $1 to $6, cast to what fstore_tag_events
// takes (a query mode that sends parameters by their Go type would send
// []int64 as bigint[]).
const tagQueryParams = `$1::text[], $2::int[], $3::int[], $4::text[], $5::int[], $6::int[]`

// args are the six arrays, in fstore_tag_events's order.
func (t tagQuery) args() []any {
	return []any{t.tags, t.tagsFrom, t.tagsTo, t.types, t.typesFrom, t.typesTo}
}
