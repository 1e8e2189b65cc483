package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/go-playground/validator/v10"
	"github.com/google/uuid"

	"github.com/fstore/fstore/internal/store"
)

// maxDataDepth bounds the nesting of an event's data: deeper JSON is refused
// with a 400 before it reaches PostgreSQL (whose parser has a stack limit).
const maxDataDepth = 64

var validate = newValidator()

func newValidator() *validator.Validate {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			return ""
		}
		return name
	})
	// name: nameRule, for names and keys alike.
	_ = v.RegisterValidation("name", func(fl validator.FieldLevel) bool { return validName(fl.Field().String()) })
	// uuid: a UUID in its 36-character form; uuid.Parse is far cheaper than
	// the validator's regular expression, on the append hot path.
	_ = v.RegisterValidation("uuid36", func(fl validator.FieldLevel) bool {
		_, ok := parseUUID(fl.Field().String())
		return ok
	})
	return v
}

// nameRule is the one rule for names and keys (decider, event, view,
// decider_id, tags): they end up in URLs, logs and SQL, so they are 1 to 255
// Unicode characters with no control character (U+0000–U+001F,
// U+007F–U+009F: no NUL, newline or escape sequence).
const nameRule = "must be 1 to 255 characters, with no control characters"

// validName reports whether s follows nameRule.
var validName = store.ValidName

// uuidRule is the message for a malformed UUID.
const uuidRule = "must be a UUID such as 3f2a7c9e-0b1d-4e5f-8a9b-0c1d2e3f4a5b"

// parseUUID parses a UUID in its canonical 36-character form only (uuid.Parse
// also takes braces, urn: and 32 hex digits).
func parseUUID(s string) (uuid.UUID, bool) {
	id, err := uuid.Parse(s)
	return id, err == nil && len(s) == 36
}

// messages explain each validation tag in words a client can act on.
func message(fe validator.FieldError) string {
	switch fe.Tag() {
	case "required":
		return "is required"
	case "name":
		return nameRule
	case "uuid36":
		return uuidRule
	case "min":
		if fe.Kind() == reflect.Slice {
			return "must have at least " + fe.Param() + " items"
		}
		return "must be at least " + fe.Param()
	case "max":
		if fe.Kind() == reflect.Slice {
			return "must have at most " + fe.Param() + " items"
		}
		if fe.Kind() == reflect.String {
			return "must be at most " + fe.Param() + " characters"
		}
		return "must be at most " + fe.Param()
	}
	return "is invalid (" + fe.Tag() + ")"
}

// validateStruct runs the validate tags of v and returns the field errors.
func validateStruct(v any) []FieldError {
	err := validate.Struct(v)
	var verrs validator.ValidationErrors
	if !errors.As(err, &verrs) {
		return nil
	}
	out := make([]FieldError, 0, len(verrs))
	for _, fe := range verrs {
		// Namespace is "request.events[2].event_id": drop the struct name.
		_, field, _ := strings.Cut(fe.Namespace(), ".")
		out = append(out, FieldError{Field: field, Message: message(fe)})
	}
	return out
}

// decodeJSON reads the request body (at most maxBytes) into dst: one JSON
// value, no unknown fields, valid UTF-8. Its errors are *Problem.
func decodeJSON(w http.ResponseWriter, r *http.Request, maxBytes int64, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return newProblem(http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type",
				fmt.Sprintf("the body must be application/json, not %q", ct))
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return newProblem(http.StatusRequestEntityTooLarge, "body-too-large", "Request body too large",
			fmt.Sprintf("the body exceeds %d bytes", maxBytes))
	case err != nil:
		return badRequest("the request body could not be read: " + err.Error())
	case len(bytes.TrimSpace(body)) == 0:
		return badRequest("the request body is empty: send a JSON object")
	case !utf8.Valid(body):
		return badRequest("the request body is not valid UTF-8")
	}
	// jsonPathAt needs valid JSON; checking it only when a surrogate is
	// found spares every body a second pass (malformed JSON is answered by
	// the decoder below).
	if at := loneSurrogate(body); at >= 0 && json.Valid(body) {
		return badRequest("a string holds a lone UTF-16 surrogate", FieldError{Field: jsonPathAt(body, at),
			Message: `must not contain half of a UTF-16 surrogate pair (\ud800 to \udfff alone): it is not a character`})
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonProblem(err)
	}
	if dec.More() {
		return badRequest("the request body holds more than one JSON value")
	}
	return nil
}

func jsonProblem(err error) *Problem {
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntaxErr):
		return badRequest(fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr))
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return badRequest(fmt.Sprintf("the body must be a JSON %s, not %s", "object", typeErr.Value))
		}
		return badRequest("a field has the wrong type",
			FieldError{Field: field, Message: fmt.Sprintf("must be %s, not %s", jsonKind(typeErr.Type), typeErr.Value)})
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("malformed JSON: the body ends too early")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badRequest("the body has an unknown field", FieldError{Field: field, Message: "is not a known field"})
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return badRequest("a field is invalid", *fe)
	}
	return badRequest("malformed JSON: " + err.Error())
}

func (fe *FieldError) Error() string { return fe.Field + " " + fe.Message }

func jsonKind(t reflect.Type) string {
	if t == reflect.TypeFor[timestamp]() {
		return timestampRule
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return "an integer in range"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "of type " + t.String()
}

// checkData checks an event's data: present, not null, nested at most
// maxDataDepth deep, and free of \u0000 (which PostgreSQL's jsonb refuses).
// data was decoded by encoding/json already, so it is well-formed.
func checkData(data json.RawMessage) string {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return "is required: a JSON value such as {} (null is not allowed)"
	}
	depth, inString := 0, false
	for i := 0; i < len(trimmed); i++ {
		c := trimmed[i]
		if inString {
			switch c {
			case '\\':
				if bytes.HasPrefix(trimmed[i+1:], []byte("u0000")) {
					return `must not contain the NUL character (\u0000)`
				}
				i++ // skip the escaped character
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			if depth++; depth > maxDataDepth {
				return fmt.Sprintf("must not be nested deeper than %d levels", maxDataDepth)
			}
		case '}', ']':
			depth--
		}
	}
	return ""
}

// maxMetadataBytes bounds an event's metadata, compacted.
const maxMetadataBytes = 64 << 10

// checkMetadata checks an event's metadata and returns it as stored (nil for
// none: absent or null) or why it is refused. It must be a JSON object of at
// most maxMetadataBytes once its insignificant whitespace is removed, with
// data's limits on nesting and NUL.
func checkMetadata(m json.RawMessage) (json.RawMessage, string) {
	trimmed := bytes.TrimSpace(m)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return nil, ""
	}
	if trimmed[0] != '{' {
		return nil, `must be a JSON object, such as {"user": "ada"}`
	}
	if len(trimmed) > maxMetadataBytes {
		var compact bytes.Buffer
		if json.Compact(&compact, trimmed) != nil || compact.Len() > maxMetadataBytes {
			return nil, fmt.Sprintf("must be at most %d bytes of JSON", maxMetadataBytes)
		}
		trimmed = compact.Bytes()
	}
	if msg := checkData(trimmed); msg != "" {
		return nil, msg
	}
	return trimmed, ""
}

// checkTags appends to errs the tags of an event (its JSON path is prefix)
// that break nameRule (their number is checked by the validator). A loop,
// not the validator's dive: a batch holds up to 100,000 tags.
func checkTags(errs []FieldError, prefix string, tags []string) []FieldError {
	for i, t := range tags {
		if !validName(t) {
			errs = append(errs, FieldError{Field: prefix + "tags[" + strconv.Itoa(i) + "]", Message: nameRule})
		}
	}
	return errs
}

// Read limits of GET /v1/events and POST /v1/events/query, and the size of
// a batch.
const (
	defaultReadLimit = 1000
	maxReadLimit     = 10000
	maxBatchEvents   = 1000
)

// intParam parses an optional integer query parameter within [lo, hi].
func intParam(q url.Values, name string, def, lo, hi int64) (int64, *FieldError) {
	if !q.Has(name) {
		return def, nil
	}
	v, err := strconv.ParseInt(q.Get(name), 10, 64)
	if err != nil || v < lo || v > hi {
		return def, &FieldError{Field: name, Message: fmt.Sprintf("must be an integer from %d to %d", lo, hi)}
	}
	return v, nil
}

// pathParam returns a URL path parameter, unescaped and checked by nameRule.
func pathParam(r *http.Request, name string) (string, error) {
	v, err := url.PathUnescape(chi.URLParam(r, name))
	if err != nil || !validName(v) {
		return "", badRequest("invalid path parameter", FieldError{Field: name, Message: nameRule})
	}
	return v, nil
}

// queryParams refuses query parameters a route does not take: a misspelt
// one (?afterr=0) would otherwise be ignored and change the answer silently.
// The route table gives each route its parameters.
func queryParams(known ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var errs []FieldError
			for name := range r.URL.Query() {
				if !slices.Contains(known, name) {
					msg := "is not a parameter of this route, which takes none"
					if len(known) > 0 {
						msg = "is not a parameter of this route, which takes " + strings.Join(known, ", ")
					}
					errs = append(errs, FieldError{Field: name, Message: msg})
				}
			}
			if len(errs) > 0 {
				slices.SortFunc(errs, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
				writeProblem(w, r, badRequest("unknown query parameter", errs...))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// decodeAndValidate decodes the body into dst and runs its validate tags.
func decodeAndValidate(w http.ResponseWriter, r *http.Request, maxBytes int64, dst any) error {
	if err := decodeJSON(w, r, maxBytes, dst); err != nil {
		return err
	}
	if errs := validateStruct(dst); len(errs) > 0 {
		return badRequest("the request is invalid", errs...)
	}
	return nil
}

// timestamp is a request field holding an RFC 3339 time with a time zone.
// A value that is not one is refused naming the field (encoding/json fills
// in the path of an *json.UnmarshalTypeError), not as malformed JSON.
type timestamp struct{ time.Time }

// timestampRule describes a valid timestamp.
const timestampRule = "an RFC 3339 timestamp with a time zone, such as 2026-01-02T15:04:05Z"

// UnmarshalJSON parses an RFC 3339 string.
func (t *timestamp) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if parsed, err := time.Parse(time.RFC3339Nano, s); err == nil {
			t.Time = parsed
			return nil
		}
	}
	return &json.UnmarshalTypeError{Value: string(b), Type: reflect.TypeFor[timestamp]()}
}

// loneSurrogate returns the offset of the first \u escape in a JSON string
// of body that is half of a UTF-16 surrogate pair without the other half, or
// -1. encoding/json would turn it into U+FFFD silently, and PostgreSQL's
// jsonb refuses it.
func loneSurrogate(body []byte) int {
	inString := false
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !inString {
			inString = c == '"'
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			if cp, ok := hexEscape(body, i); ok && cp >= 0xD800 && cp <= 0xDFFF {
				if next, ok := hexEscape(body, i+6); cp <= 0xDBFF && ok && next >= 0xDC00 && next <= 0xDFFF {
					i += 11 // a valid pair
					continue
				}
				return i
			}
			i++ // skip the escaped character
		}
	}
	return -1
}

// hexEscape decodes a \uXXXX escape at body[i:].
func hexEscape(body []byte, i int) (int, bool) {
	if i+6 > len(body) || body[i] != '\\' || body[i+1] != 'u' {
		return 0, false
	}
	v, err := strconv.ParseUint(string(body[i+2:i+6]), 16, 16)
	return int(v), err == nil
}

// jsonPathAt returns the path ("events[2].data.note") of the key or value
// of body (valid JSON) that holds byte offset off.
func jsonPathAt(body []byte, off int) string {
	type frame struct {
		array   bool
		index   int
		key     string
		wantKey bool
	}
	var stack []frame
	render := func() string {
		var b strings.Builder
		for _, f := range stack {
			if f.array {
				fmt.Fprintf(&b, "[%d]", f.index)
			} else {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(f.key)
			}
		}
		return b.String()
	}
	consumed := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].array {
				stack[n-1].index++
			} else {
				stack[n-1].wantKey = true
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return render()
		}
		end := int(dec.InputOffset())
		if n := len(stack); n > 0 && !stack[n-1].array && stack[n-1].wantKey {
			if key, ok := tok.(string); ok {
				stack[n-1].key, stack[n-1].wantKey = key, false
				if end > off {
					return render()
				}
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			stack = append(stack, frame{array: tok == json.Delim('['), wantKey: tok == json.Delim('{')})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			consumed()
		default:
			if end > off {
				return render()
			}
			consumed()
		}
	}
}
