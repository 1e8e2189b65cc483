package httpapi

import (
	"context"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"

	swaggerfiles "github.com/swaggo/files/v2"

	"github.com/fstore/fstore/openapi"
)

// statusResponse is the body of /healthz and /readyz.
type statusResponse struct {
	Status string `json:"status" example:"ok" binding:"required"`
	// The database's schema version (/readyz only).
	SchemaVersion int `json:"schema_version,omitempty" example:"1"`
} //@name Status

// healthz godoc
//
//	@Summary	Liveness: the process is up
//	@Tags		operations
//	@ID			healthz
//	@Produce	json
//	@Success	200	{object}	statusResponse
//	@Router		/healthz [get]
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, statusResponse{Status: "ok"})
}

// readyz godoc
//
//	@Summary	Readiness: the database answers and its schema is current
//	@Tags		operations
//	@ID			readyz
//	@Produce	json
//	@Success	200	{object}	statusResponse
//	@Failure	503	{object}	Problem
//	@Router		/readyz [get]
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.ReadyTimeout)
	defer cancel()
	v, err := s.store.SchemaVersion(ctx)
	if err != nil {
		writeProblem(w, r, newProblem(http.StatusServiceUnavailable, "unavailable", "Not ready",
			"the database does not answer"))
		return
	}
	if v != s.opts.SchemaVersion {
		writeProblem(w, r, newProblem(http.StatusServiceUnavailable, "schema-mismatch", "Not ready",
			fmt.Sprintf("the database schema is at version %d, this build needs %d", v, s.opts.SchemaVersion)))
		return
	}
	writeJSON(w, http.StatusOK, statusResponse{Status: "ready", SchemaVersion: v})
}

// metricsDoc documents GET /metrics, served by the Prometheus handler.
//
//	@Summary	Prometheus metrics
//	@Tags		operations
//	@ID			metrics
//	@Produce	plain
//	@Success	200	{string}	string	"Prometheus text format"
//	@Router		/metrics [get]
func metricsDoc() {}

var _ = metricsDoc

func serveOpenAPIJSON(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openapi.JSON)
}

func serveOpenAPIYAML(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(openapi.YAML)
}

func redirectToDocs(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/docs/", http.StatusMovedPermanently)
}

// docsPage is Swagger UI over /openapi.json, from assets in the binary: the
// docs work offline.
var docsPage = template.Must(template.New("docs").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>fstore API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout"
    });
  </script>
</body>
</html>
`))

var docsAssets = http.FileServer(http.FS(swaggerfiles.FS))

func serveDocs(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/docs/")
	if name == "" || name == "index.html" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = docsPage.Execute(w, nil)
		return
	}
	if _, err := fs.Stat(swaggerfiles.FS, name); err != nil {
		writeProblem(w, r, newProblem(http.StatusNotFound, "not-found", "Not found", "no such docs asset"))
		return
	}
	http.StripPrefix("/docs/", docsAssets).ServeHTTP(w, r)
}
