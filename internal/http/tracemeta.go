package httpapi

import (
	"bytes"
	"encoding/json"
)

// withTraceContext returns metadata with "traceparent" and "tracestate" set
// to the given values (a tracestate only when not empty), unless the
// metadata sets that key itself: the client's own trace context is kept as
// it sent it. nil metadata is {}. metadata is a JSON object (checkMetadata).
func withTraceContext(metadata json.RawMessage, traceparent, tracestate string) json.RawMessage {
	if traceparent == "" {
		return metadata
	}
	var keys map[string]json.RawMessage
	if len(metadata) > 0 && json.Unmarshal(metadata, &keys) != nil {
		return metadata
	}
	var add []byte
	if _, set := keys["traceparent"]; !set {
		add = append(add, `"traceparent":`...)
		add = appendString(add, traceparent)
	}
	if _, set := keys["tracestate"]; !set && tracestate != "" {
		if len(add) > 0 {
			add = append(add, ',')
		}
		add = append(add, `"tracestate":`...)
		add = appendString(add, tracestate)
	}
	if len(add) == 0 {
		return metadata
	}
	out := append([]byte{'{'}, add...)
	if len(keys) > 0 {
		// The object's members follow: the text after its opening brace.
		out = append(out, ',')
		out = append(out, bytes.TrimSpace(metadata)[1:]...)
		return out
	}
	return append(out, '}')
}

func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}
