package main

import (
	"bufio"
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

// SIGTERM ends every live follow at once with a final frame saying so, and
// the API exits cleanly: its shutdown does not wait for them.
func TestSIGTERMEndsFollows(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level test")
	}
	dbURL := storetest.NewDatabase(t)
	bin := filepath.Join(t.TempDir(), "fstore-api")
	require.NoError(t, exec.Command("go", "build", "-o", bin, ".").Run())
	addr := "127.0.0.1:" + freePort(t)
	api := exec.Command(bin)
	api.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "FSTORE_ADDR="+addr, "FSTORE_LOG_LEVEL=error",
		"FSTORE_SHUTDOWN_TIMEOUT=60s")
	api.Stderr = os.Stderr
	require.NoError(t, api.Start())
	t.Cleanup(func() { _ = api.Process.Kill(); _ = api.Wait() })
	base := "http://" + addr
	waitReady(t, http.DefaultClient, base)

	const followers = 20
	finals := make([]string, followers)
	var connected, done sync.WaitGroup
	connected.Add(followers)
	for k := range followers {
		req, err := http.NewRequest("GET", base+"/v1/events", nil)
		require.NoError(t, err)
		req.Header.Set("Accept", []string{"text/event-stream", "application/x-ndjson"}[k%2])
		done.Go(func() {
			resp, err := http.DefaultClient.Do(req)
			connected.Done()
			if !assert.NoError(t, err) {
				return
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if line := sc.Text(); strings.HasPrefix(line, "data: ") || strings.HasPrefix(line, `{"error"`) {
					finals[k] = line // the last such line
				}
			}
		})
	}
	connected.Wait() // each answered 200: its follow is under way
	require.NoError(t, api.Process.Signal(syscall.SIGTERM))
	exited := make(chan error, 1)
	go func() { exited <- api.Wait() }()
	select {
	case err := <-exited:
		require.NoError(t, err, "a clean exit: the shutdown did not wait out its timeout for the follows")
	case <-time.After(50 * time.Second):
		t.Fatal("the API did not stop: its follows kept it waiting")
	}
	done.Wait()
	for k, line := range finals {
		var frame struct {
			Type  string
			Error struct{ Type string }
		}
		require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &frame), "follower %d: %q", k, line)
		assert.Equal(t, "urn:fstore:problem:shutting-down", frame.Type+frame.Error.Type, "follower %d", k)
	}
}
