package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/store/storetest"
)

// The logs say what happened in words and units a reader needs: which
// migrations a process applied (or that none were pending), durations with
// their unit, and no colour codes when the console format goes to a pipe.
func TestLogsSayWhatHappened(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level test")
	}
	dbURL := storetest.NewEmptyDatabase(t)
	bin := filepath.Join(t.TempDir(), "fstore-api")
	require.NoError(t, exec.Command("go", "build", "-o", bin, ".").Run())
	client := &http.Client{Timeout: 10 * time.Second}
	run := func(format string) string {
		addr := "127.0.0.1:" + freePort(t)
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "FSTORE_ADDR="+addr, "FSTORE_LOG_FORMAT="+format)
		var out lockedBuffer
		cmd.Stderr = &out // a pipe, not a terminal
		require.NoError(t, cmd.Start())
		waitReady(t, client, "http://"+addr)
		resp, err := client.Get("http://" + addr + "/v1/deciders")
		require.NoError(t, err)
		resp.Body.Close()
		require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
		require.NoError(t, cmd.Wait())
		return out.String()
	}

	console := run("console")
	assert.NotContains(t, console, "\x1b[", "no ANSI colour codes in a pipe")
	assert.Contains(t, console, "migrations applied")
	assert.Contains(t, console, "applied=[1,2,3", "the first process says which migrations it applied")

	second := jsonLines(t, run("json"))
	var migrated, request, shutdown map[string]any
	for _, l := range second {
		switch l["message"] {
		case "migrations applied":
			migrated = l
		case "request":
			if l["path"] == "/v1/deciders" {
				request = l
			}
		case "shutting down: finishing in-flight requests":
			shutdown = l
		}
		if strings.HasPrefix(l["message"].(string), "schema already current") {
			migrated = l
		}
	}
	require.NotNil(t, migrated, "the second process says the schema was current")
	assert.NotContains(t, migrated, "applied")
	require.NotNil(t, request)
	assert.Contains(t, request, "duration_ms", "the access log's duration names its unit")
	require.NotNil(t, shutdown)
	assert.Equal(t, "20s", shutdown["timeout"], "durations carry their unit")
}

func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "a JSON log line: %s", sc.Text())
		out = append(out, m)
	}
	return out
}

// lockedBuffer is a bytes.Buffer written by exec's copying goroutine and
// read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
