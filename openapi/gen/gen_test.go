package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The committed document must be what the annotations generate now, and a
// valid OpenAPI 3 document.
func TestCommittedDocumentIsCurrent(t *testing.T) {
	jsonDoc, yamlDoc, err := generate("../..")
	require.NoError(t, err)
	committedJSON, err := os.ReadFile("../openapi.json")
	require.NoError(t, err)
	committedYAML, err := os.ReadFile("../openapi.yaml")
	require.NoError(t, err)
	if string(jsonDoc) != string(committedJSON) || string(yamlDoc) != string(committedYAML) {
		t.Fatal("openapi/openapi.json or openapi.yaml is stale: run 'make openapi' and commit the result")
	}

	doc, err := openapi3.NewLoader().LoadFromData(committedJSON)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(t.Context()))
	for _, path := range []string{"/v1/events", "/v1/events/batch", "/v1/events/last", "/v1/events/{event_id}",
		"/v1/deciders", "/v1/deciders/{decider}", "/v1/deciders/{decider}/events", "/healthz", "/readyz",
		"/v1/views", "/v1/views/{view}", "/v1/views/{view}/stream", "/v1/views/{view}/ack", "/v1/views/{view}/nack",
		"/v1/views/{view}/partitions/{decider}/{decider_id}/retry"} {
		assert.NotNil(t, doc.Paths.Value(path), path)
	}
	conflict := doc.Paths.Value("/v1/events").Post.Responses.Status(409)
	require.NotNil(t, conflict)
	assert.NotNil(t, conflict.Value.Content.Get("application/problem+json"), "errors are problem+json")
}

// The committed test client must be what oapi-codegen makes of the
// committed document.
func TestCommittedClientIsCurrent(t *testing.T) {
	out := filepath.Join(t.TempDir(), "client.gen.go")
	cmd := exec.Command("go", "tool", "oapi-codegen", "-config", "../client/cfg.yaml", "-o", out, "../openapi.yaml")
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Run())
	fresh, err := os.ReadFile(out)
	require.NoError(t, err)
	committed, err := os.ReadFile("../client/client.gen.go")
	require.NoError(t, err)
	if string(fresh) != string(committed) {
		t.Fatal("openapi/client/client.gen.go is stale: run 'make openapi' and commit the result")
	}
}
