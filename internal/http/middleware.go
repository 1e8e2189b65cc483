package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/rs/zerolog/hlog"
)

// requestLogging gives every request an id (X-Request-Id, echoed back) and
// an access log line. Headers are never logged: they may carry keys; nor is
// the access_token parameter.
func requestLogging(logger zerolog.Logger) []func(http.Handler) http.Handler {
	return []func(http.Handler) http.Handler{
		hlog.NewHandler(logger),
		hlog.RequestIDHandler("request_id", "X-Request-Id"),
		hlog.AccessHandler(func(r *http.Request, status, size int, d time.Duration) {
			ev := hlog.FromRequest(r).Info()
			if status >= 500 {
				ev = hlog.FromRequest(r).Warn()
			}
			ev.Str("method", r.Method).Str("path", r.URL.Path)
			if r.URL.RawQuery != "" {
				ev.Str("query", redactedQuery(r.URL))
			}
			ev.Int("status", status).Int("size", size).Float64("duration_ms", float64(d.Microseconds())/1000).Msg("request")
		}),
	}
}

// accessTokenValue finds the value of access_token in a raw query string,
// in any case and escaped or not, after & or ; (which Go's parser drops
// with its pair, key and all, but the raw string keeps).
var accessTokenValue = regexp.MustCompile(`(?i)((?:^|[&;])access(?:_|%5f)token=)[^&;]*`)

// redactedQuery is the query string with the value of access_token (an
// API key: live follows take it there) replaced. It works on the raw
// string: a pair the parser would drop (a bad escape) is redacted too.
func redactedQuery(u *url.URL) string {
	return accessTokenValue.ReplaceAllString(u.RawQuery, "${1}REDACTED")
}

// recoverer turns a panic into a logged 500 problem instead of a dropped
// connection.
func recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(v) // net/http's own way to abort a response
				}
				writeProblem(w, r, fmt.Errorf("panic: %v\n%s", v, debug.Stack()))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// ReadOnlyPrefix marks a read-only key in FSTORE_API_KEYS: "ro:<key>".
const ReadOnlyPrefix = "ro:"

type accessKey struct{}

// bearerAuth requires "Authorization: Bearer <key>" with one of keys; with
// no keys it lets everything through. A key given as "ro:<key>" is
// read-only: requireWrite refuses it. Keys are compared by their SHA-256 in
// constant time, so neither a key's content nor its length leaks by timing.
func bearerAuth(keys []string) func(http.Handler) http.Handler {
	type entry struct {
		sum      [32]byte
		readOnly bool
	}
	entries := make([]entry, 0, len(keys))
	for _, k := range keys {
		key, ro := strings.CutPrefix(k, ReadOnlyPrefix)
		entries = append(entries, entry{sha256.Sum256([]byte(key)), ro})
	}
	return func(next http.Handler) http.Handler {
		if len(entries) == 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			scheme, key, _ := strings.Cut(r.Header.Get("Authorization"), " ")
			given := sha256.Sum256([]byte(strings.TrimSpace(key)))
			match, readOnly := 0, 1
			for _, e := range entries {
				eq := subtle.ConstantTimeCompare(given[:], e.sum[:])
				match |= eq
				// Read-only unless a matching key is read-write.
				readOnly &= subtle.ConstantTimeSelect(eq, boolInt(e.readOnly), 1)
			}
			if !strings.EqualFold(scheme, "Bearer") || match != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="fstore"`)
				writeProblem(w, r, newProblem(http.StatusUnauthorized, "unauthorized", "Unauthorized",
					"send Authorization: Bearer <key> with a valid API key"))
				return
			}
			if readOnly == 1 {
				r = r.WithContext(context.WithValue(r.Context(), accessKey{}, accessReadOnly))
			}
			next.ServeHTTP(w, r)
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// requireWrite refuses requests made with a read-only key.
func requireWrite(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Context().Value(accessKey{}) == accessReadOnly {
			writeProblem(w, r, newProblem(http.StatusForbidden, "forbidden", "Forbidden",
				"this API key is read-only: it may read and consume, not append or register"))
			return
		}
		next.ServeHTTP(w, r)
	})
}
