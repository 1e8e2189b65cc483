package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-playground/validator/v10"
	"github.com/google/uuid"
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
	// name: 1..255 characters, none of them a control character.
	_ = v.RegisterValidation("name", func(fl validator.FieldLevel) bool { return validName(fl.Field().String()) })
	// key: 1..255 characters, no NUL (PostgreSQL text cannot hold it).
	_ = v.RegisterValidation("key", func(fl validator.FieldLevel) bool { return validKey(fl.Field().String()) })
	// uuid: a UUID in its 36-character form; uuid.Parse is far cheaper than
	// the validator's regular expression, on the append hot path.
	_ = v.RegisterValidation("uuid36", func(fl validator.FieldLevel) bool {
		s := fl.Field().String()
		_, err := uuid.Parse(s)
		return err == nil && len(s) == 36
	})
	return v
}

func validName(s string) bool {
	if !validKey(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func validKey(s string) bool {
	n := utf8.RuneCountInString(s)
	return n >= 1 && n <= 255 && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// messages explain each validation tag in words a client can act on.
func message(fe validator.FieldError) string {
	switch fe.Tag() {
	case "required":
		return "is required"
	case "name":
		return "must be 1 to 255 characters, with no control characters"
	case "key":
		return "must be 1 to 255 characters, with no NUL character"
	case "uuid36":
		return "must be a UUID such as 3f2a7c9e-0b1d-4e5f-8a9b-0c1d2e3f4a5b"
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
