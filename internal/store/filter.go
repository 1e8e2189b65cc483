package store

import (
	"fmt"
	"slices"
)

// Filter selects the events a Follower receives: the events ReadEvents
// would return for Decider, DeciderID and Events, or, with Query, the
// events QueryEvents would return (the other fields must then be empty).
// The zero Filter selects every event.
type Filter struct {
	// Decider alone: every stream of that decider; with DeciderID: one stream.
	Decider   string
	DeciderID string
	// Events are event types, OR-ed; empty: every type.
	Events []string
	// Tags an event must all carry; empty: any.
	Tags []string
	// Query selects by type, tags and payload (dynamic consistency boundaries).
	Query *Query
}

// liveFilter is a Filter compiled for testing events in Go: new events are
// read once per process for every follower, and each follower keeps those
// its filter selects.
type liveFilter struct {
	decider, deciderID string
	events, tags       []string
	query              []liveItem // nil: no query
}

type liveItem struct {
	types, tags []string
	matches     []any // parsed JSON objects
}

// compile checks f and parses its matches. Its errors wrap ErrInvalid.
func (f Filter) compile() (*liveFilter, error) {
	lf := &liveFilter{decider: f.Decider, deciderID: f.DeciderID, events: f.Events, tags: f.Tags}
	if f.DeciderID != "" && f.Decider == "" {
		return nil, fmt.Errorf("%w: a stream needs its decider", ErrInvalid)
	}
	if f.Query == nil {
		return lf, nil
	}
	if f.Decider != "" || len(f.Events) > 0 || len(f.Tags) > 0 || len(f.Query.Items) == 0 {
		return nil, fmt.Errorf("%w: a query follow has at least one item and no other filter", ErrInvalid)
	}
	lf.query = make([]liveItem, len(f.Query.Items))
	for i, it := range f.Query.Items {
		lf.query[i].types, lf.query[i].tags = it.Types, it.Tags
		for _, m := range it.Matches {
			v, err := parseJSON(m)
			if _, isObject := v.(map[string]any); err != nil || !isObject {
				return nil, fmt.Errorf("%w: query item %d: every match must be a JSON object", ErrInvalid, i)
			}
			lf.query[i].matches = append(lf.query[i].matches, v)
		}
	}
	return lf, nil
}

// selects reports whether the filter selects e, as the SQL of ReadEvents and
// QueryEvents would.
func (lf *liveFilter) selects(e *feedEvent) bool {
	if lf.decider != "" && e.Decider != lf.decider || lf.deciderID != "" && e.DeciderID != lf.deciderID {
		return false
	}
	if len(lf.events) > 0 && !slices.Contains(lf.events, e.Event.Event) || !carries(e, lf.tags) {
		return false
	}
	if lf.query == nil {
		return true
	}
	for _, it := range lf.query {
		if it.selects(e) {
			return true
		}
	}
	return false
}

func (it liveItem) selects(e *feedEvent) bool {
	if len(it.types) > 0 && !slices.Contains(it.types, e.Event.Event) || !carries(e, it.tags) {
		return false
	}
	if len(it.matches) == 0 {
		return true
	}
	data, ok := e.parsedData()
	if !ok {
		return false
	}
	for _, m := range it.matches {
		if !jsonContains(data, m) {
			return false
		}
	}
	return true
}

// carries reports whether e carries every one of tags (SQL's tags @> ...).
func carries(e *feedEvent, tags []string) bool {
	for _, t := range tags {
		if _, found := slices.BinarySearch(e.Tags, t); !found { // stored sorted
			return false
		}
	}
	return true
}
