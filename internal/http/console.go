package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// consolePolicy lets the console's page load its own files and call this
// origin, nothing else: the browser itself refuses any other address, so
// the console works offline and cannot leak a key to a third party.
const consolePolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// consoleFile is one built asset, read once at start-up.
type consoleFile struct {
	body        []byte
	contentType string
	etag        string
}

// consoleFiles reads every file of the built console (index.html at its
// root). A nil fsys serves nothing: /console then answers 404.
func consoleFiles(fsys fs.FS) (map[string]consoleFile, error) {
	files := map[string]consoleFile{}
	if fsys == nil {
		return files, nil
	}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		files[p] = consoleFile{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		return map[string]consoleFile{}, err
	}
	return files, nil
}

func redirectToConsole(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/console/", http.StatusMovedPermanently)
}

// serveConsole serves the console's page at /console/ and its assets
// beside it. Every path without a file of its own is the page: the
// console's views are in the URL's fragment, so there are none today, but
// a bookmarked deep link never breaks. Answers revalidate by ETag (the
// files change only with the binary).
func (s *Server) serveConsole(w http.ResponseWriter, r *http.Request) {
	if len(s.console) == 0 {
		writeProblem(w, r, newProblem(http.StatusNotFound, "not-found", "Not found",
			"this build has no console: build it with 'make console'"))
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/console/")
	f, ok := s.console[name]
	if !ok {
		if path.Ext(name) != "" {
			writeProblem(w, r, newProblem(http.StatusNotFound, "not-found", "Not found", "no such console asset"))
			return
		}
		f = s.console["index.html"]
	}
	h := w.Header()
	h.Set("Content-Security-Policy", consolePolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Type", f.contentType)
	h.Set("ETag", f.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}
