package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store/storetest"
)

// Every shell example of the README and the guides that talks to the API
// runs, in order, against the real binary on a fresh database: each must
// succeed, and no answer may be a problem unless the example shows one on
// purpose (it says so with "# expect problem"). The docs cannot rot.
func TestReadmeExamplesRun(t *testing.T) {
	files := []string{"../../README.md"}
	guides, err := filepath.Glob("../../docs/*.md")
	require.NoError(t, err)
	files = append(files, guides...)
	var blocks []string
	for _, f := range files {
		text, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(text), -1) {
			if strings.Contains(m[1], "$API") {
				blocks = append(blocks, m[1])
			}
		}
	}
	require.GreaterOrEqual(t, len(blocks), 6, "the API examples of the README and the guides")
	// An example's webhook must stay on the reader's machine: after the
	// next append, a running dispatcher really pushes to it.
	for _, b := range blocks {
		for _, m := range regexp.MustCompile(`edge_function_url[^:]*: *\\?"(https?://[^/"\\]+)`).FindAllStringSubmatch(b, -1) {
			assert.Regexp(t, `^https?://(127\.0\.0\.1|localhost)(:\d+)?$`, m[1], "an example pushes off this machine:\n%s", b)
		}
	}

	bin := filepath.Join(t.TempDir(), "fstore-api")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	api := exec.Command(bin)
	api.Env = append(os.Environ(), "DATABASE_URL="+storetest.NewDatabase(t), "FSTORE_ADDR="+addr, "FSTORE_LOG_LEVEL=warn",
		"FSTORE_ALLOW_PRIVATE_URLS=true") // the webhook examples push to a receiver on loopback
	api.Stderr = os.Stderr
	require.NoError(t, api.Start())
	t.Cleanup(func() { _ = api.Process.Kill(); _ = api.Wait() })
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		require.True(t, time.Now().Before(deadline), "the API did not start")
	}

	for i, block := range blocks {
		script := strings.ReplaceAll(block, "http://127.0.0.1:8080", "http://"+addr)
		var out bytes.Buffer
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Env = append(os.Environ(), "API=http://"+addr) // as an earlier block sets it for a reader
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Run(), "README example %d failed:\n%s\n---\n%s", i+1, block, out.String())
		if !strings.Contains(block, "# expect problem") {
			assert.NotContains(t, out.String(), "urn:fstore:problem:", "example %d answered a problem:\n%s", i+1, out.String())
		}
		assert.NotEmpty(t, strings.TrimSpace(out.String()), "README example %d printed nothing", i+1)
	}
}
