package httpapi

import (
	"strconv"
	"sync"

	"github.com/fstore/fstore/internal/store"
)

// Answers holding events write their own JSON (store.Event.AppendJSON), the
// same bytes encoding/json would write, without its reflection: a query's
// or a batch's answer is mostly events, and encoding them was the largest
// part of the API's work for those answers. (Leases, whose events carry
// fields of their own, stay with encoding/json.)

// jsonAppender is a response body that appends its own JSON; writeJSON uses
// it instead of encoding/json.
type jsonAppender interface {
	appendJSON(b []byte) []byte
}

// buffers holds response buffers between requests.
var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// oneEvent is an answer that is one event.
type oneEvent struct{ e *store.Event }

func (o oneEvent) appendJSON(b []byte) []byte { return o.e.AppendJSON(b) }

func appendEvents(b []byte, evs []store.Event) []byte {
	b = append(b, `{"events":[`...)
	for i := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		b = evs[i].AppendJSON(b)
	}
	return append(b, ']')
}

func appendNullableInt(b []byte, v *int64) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	return strconv.AppendInt(b, *v, 10)
}

func (r eventsResponse) appendJSON(b []byte) []byte { return append(appendEvents(b, r.Events), '}') }

func (p eventsPage) appendJSON(b []byte) []byte {
	b = append(appendEvents(b, p.Events), `,"next_after":`...)
	return append(appendNullableInt(b, p.NextAfter), '}')
}

func (p queryPage) appendJSON(b []byte) []byte {
	b = append(appendEvents(b, p.Events), `,"next_after":`...)
	b = append(appendNullableInt(b, p.NextAfter), `,"position":`...)
	return append(strconv.AppendInt(b, p.Position, 10), '}')
}
