package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	httpapi "github.com/fstore/fstore/internal/http"
	"github.com/fstore/fstore/web"
)

func TestConsoleServesTheEmbeddedFiles(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{Console: web.Console, APIKeys: []string{"secret"}})
	a.key = "" // the page and its assets need no key: the page asks for one

	req, err := http.NewRequest("GET", a.srv.URL+"/console", nil)
	require.NoError(t, err)
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMovedPermanently, resp.StatusCode)
	assert.Equal(t, "/console/", resp.Header.Get("Location"))

	page := a.do("GET", "/console/", nil)
	require.Equal(t, 200, page.Status)
	assert.Equal(t, "text/html; charset=utf-8", page.Header.Get("Content-Type"))
	assert.Contains(t, string(page.Raw), `<script src="console.js"`)
	csp := page.Header.Get("Content-Security-Policy")
	assert.Contains(t, csp, "connect-src 'self'", "the browser itself refuses any other origin")
	assert.Contains(t, csp, "default-src 'none'")
	assert.Equal(t, "nosniff", page.Header.Get("X-Content-Type-Options"))

	for asset, ctype := range map[string]string{"console.js": "text/javascript", "console.css": "text/css", "favicon.svg": "image/svg+xml"} {
		r := a.do("GET", "/console/"+asset, nil)
		require.Equal(t, 200, r.Status, asset)
		assert.True(t, strings.HasPrefix(r.Header.Get("Content-Type"), ctype), "%s: %s", asset, r.Header.Get("Content-Type"))
		etag := r.Header.Get("ETag")
		require.NotEmpty(t, etag)
		// Revalidation by ETag: unchanged files cost a 304.
		req, err := http.NewRequest("GET", a.srv.URL+"/console/"+asset, nil)
		require.NoError(t, err)
		req.Header.Set("If-None-Match", etag)
		assert.Equal(t, http.StatusNotModified, send(t, req).Status, asset)
	}
	// A deep link without a file is the page (the views are in the fragment).
	assert.Equal(t, 200, a.do("GET", "/console/views/orders", nil).Status)
	requireProblem(t, a.do("GET", "/console/nope.js", nil), 404, "not-found")
	requireProblem(t, a.do("GET", "/v1/status", nil), 401, "unauthorized")
}

func TestConsoleAbsentFromABuildWithout(t *testing.T) {
	t.Parallel()
	a := newAPI(t, httpapi.Options{})
	r := a.do("GET", "/console/", nil)
	requireProblem(t, r, 404, "not-found")
	assert.Contains(t, r.Body["detail"], "no console")
}
