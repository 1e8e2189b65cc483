package store

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// AppendJSON appends the JSON of e to b: byte for byte what encoding/json
// writes for it (field for field, in the same order; strings escaped as it
// escapes them; data and metadata compacted, with <, >, & and U+2028/9
// escaped as it does), without reflection. Reads, queries, batches and live
// follows answer with events, and encoding them was the largest part of the
// API's work for those (a fifth of its CPU on a query's answer; a catch-up
// encodes a whole log). data and metadata come as PostgreSQL wrote them,
// which is valid JSON: they are compacted, not re-validated. Where
// encoding/json would write null, empty data is null, empty metadata {} and
// nil tags [].
//
// A new field of Event must be added here, in the struct's order: the tests
// compare this with encoding/json on an event filled by reflection, so a
// field left out fails them.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"event":`...)
	b = appendJSONString(b, e.Event)
	b = append(b, `,"event_id":`...)
	b = appendUUID(b, e.EventID)
	b = append(b, `,"event_version":`...)
	b = strconv.AppendInt(b, e.EventVersion, 10)
	b = append(b, `,"decider":`...)
	b = appendJSONString(b, e.Decider)
	b = append(b, `,"decider_id":`...)
	b = appendJSONString(b, e.DeciderID)
	b = append(b, `,"data":`...)
	b = appendCompact(b, e.Data, "null")
	b = append(b, `,"metadata":`...)
	b = appendCompact(b, e.Metadata, "{}")
	b = append(b, `,"tags":[`...)
	for i, t := range e.Tags {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, t)
	}
	b = append(b, `],"command_id":`...)
	b = appendUUID(b, e.CommandID)
	b = append(b, `,"previous_id":`...)
	if e.PreviousID == nil {
		b = append(b, "null"...)
	} else {
		b = appendUUID(b, *e.PreviousID)
	}
	b = append(b, `,"final":`...)
	b = strconv.AppendBool(b, e.Final)
	b = append(b, `,"created_at":"`...)
	b = e.CreatedAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","offset":`...)
	b = strconv.AppendInt(b, e.Offset, 10)
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendUUID writes the canonical quoted form, as uuid.UUID's MarshalText.
func appendUUID(b []byte, id uuid.UUID) []byte {
	b = append(b, '"')
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return append(b, '"')
}

// appendCompact writes valid JSON (PostgreSQL's jsonb output) as
// encoding/json writes a json.RawMessage: without white space between its
// tokens (PostgreSQL writes a space after every ':' and ','), with <, >, &,
// U+2028 and U+2029 escaped; empty is written as the given default.
func appendCompact(b, raw []byte, empty string) []byte {
	if len(raw) == 0 {
		return append(b, empty...)
	}
	inString, start := false, 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case inString && c == '\\':
			i++ // the escaped byte cannot end the string
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			b = append(b, raw[start:i]...)
			start = i + 1
		case c == '<' || c == '>' || c == '&':
			b = append(b, raw[start:i]...)
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			start = i + 1
		case c == 0xe2 && i+2 < len(raw) && raw[i+1] == 0x80 && raw[i+2]&^1 == 0xa8:
			b = append(b, raw[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[raw[i+2]&0xf])
			i += 2
			start = i + 1
		}
	}
	return append(b, raw[start:]...)
}

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it: quotes, backslashes and control characters (\b, \f, \n, \r,
// \t by name); <, > and & (so the answer is safe in HTML); U+2028 and
// U+2029; and invalid UTF-8 as U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			b = appendEscapedByte(b, c)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendEscapedByte(b []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(b, '\\', c)
	case '\b':
		return append(b, '\\', 'b')
	case '\f':
		return append(b, '\\', 'f')
	case '\n':
		return append(b, '\\', 'n')
	case '\r':
		return append(b, '\\', 'r')
	case '\t':
		return append(b, '\\', 't')
	}
	return append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
}
