package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/rs/zerolog/hlog"
)

// requestLogging gives every request an id (X-Request-Id, echoed back) and
// an access log line. Headers are never logged: they may carry keys.
func requestLogging(logger zerolog.Logger) []func(http.Handler) http.Handler {
	return []func(http.Handler) http.Handler{
		hlog.NewHandler(logger),
		hlog.RequestIDHandler("request_id", "X-Request-Id"),
		hlog.AccessHandler(func(r *http.Request, status, size int, d time.Duration) {
			ev := hlog.FromRequest(r).Info()
			if status >= 500 {
				ev = hlog.FromRequest(r).Warn()
			}
			ev.Str("method", r.Method).Str("path", r.URL.Path).Int("status", status).
				Int("size", size).Dur("duration", d).Msg("request")
		}),
	}
}

// recoverer turns a panic into a logged 500 problem instead of a dropped
// connection.
func recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				writeProblem(w, r, fmt.Errorf("panic: %v\n%s", v, debug.Stack()))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// bearerAuth requires "Authorization: Bearer <key>" with one of keys; with
// no keys it lets everything through. Keys are compared by their SHA-256 in
// constant time, so neither a key's content nor its length leaks by timing.
func bearerAuth(keys []string) func(http.Handler) http.Handler {
	sums := make([][32]byte, 0, len(keys))
	for _, k := range keys {
		sums = append(sums, sha256.Sum256([]byte(k)))
	}
	return func(next http.Handler) http.Handler {
		if len(sums) == 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			scheme, key, _ := strings.Cut(r.Header.Get("Authorization"), " ")
			given := sha256.Sum256([]byte(strings.TrimSpace(key)))
			ok := 0
			for _, sum := range sums {
				ok |= subtle.ConstantTimeCompare(given[:], sum[:])
			}
			if !strings.EqualFold(scheme, "Bearer") || ok != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="fstore"`)
				writeProblem(w, r, newProblem(http.StatusUnauthorized, "unauthorized", "Unauthorized",
					"send Authorization: Bearer <key> with a valid API key"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
