package httpapi

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store"
)

// The answers that append their own JSON write what encoding/json writes.
func TestAnswersAppendWhatEncodingJSONWrites(t *testing.T) {
	prev := uuid.New()
	ev := func(i int64) store.Event {
		e := store.Event{Event: "placed", EventID: uuid.New(), EventVersion: 1, Decider: "order", DeciderID: "o-<1>",
			Data: json.RawMessage(`{"n":1}`), Metadata: json.RawMessage(`{}`), Tags: []string{"a", "b"},
			CommandID: uuid.New(), CreatedAt: time.Now().UTC(), Offset: i}
		if i%2 == 0 {
			e.PreviousID = &prev
		}
		return e
	}
	next := int64(42)
	evs := []store.Event{ev(1), ev(2)}
	for name, v := range map[string]jsonAppender{
		"one event":  oneEvent{&evs[0]},
		"list":       eventsResponse{Events: evs},
		"empty list": eventsResponse{Events: []store.Event{}},
		"page":       eventsPage{Events: evs, NextAfter: &next},
		"last page":  eventsPage{Events: evs},
		"query page": queryPage{Events: evs, NextAfter: &next, Position: 7},
		"query end":  queryPage{Events: []store.Event{}, Position: 7},
	} {
		var want []byte
		var err error
		if o, ok := v.(oneEvent); ok {
			want, err = json.Marshal(o.e)
		} else {
			want, err = json.Marshal(v)
		}
		require.NoError(t, err)
		require.Equal(t, string(want), string(v.appendJSON(nil)), name)
	}
}
