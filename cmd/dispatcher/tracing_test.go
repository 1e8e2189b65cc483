package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/otlptest"
	"github.com/fstore/fstore/internal/store/storetest"
)

// The real API and dispatcher export their spans over OTLP/HTTP to a real
// receiver, which decodes them: the append's request span continues the
// caller's trace, its store call is under it, the push is under the append,
// and the webhook receiver is told the push's span, so its own trace goes
// on from there.
func TestTracesCrossTheDispatcher(t *testing.T) {
	dir := t.TempDir()
	bins := map[string]string{}
	for name, pkg := range map[string]string{"api": "../api", "dispatcher": "."} {
		bins[name] = filepath.Join(dir, name)
		build := exec.Command("go", "build", "-o", bins[name], pkg)
		build.Stderr = os.Stderr
		require.NoError(t, build.Run())
	}
	otlp := otlptest.New()
	defer otlp.Close()
	var mu sync.Mutex
	var pushed http.Header
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		pushed = r.Header.Clone()
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()

	db := storetest.NewDatabase(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	otel := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + otlp.URL(), "OTEL_BSP_SCHEDULE_DELAY=50", "FSTORE_LOG_LEVEL=warn",
		"DATABASE_URL=" + db}
	start := func(bin string, env ...string) *exec.Cmd {
		cmd := exec.Command(bin)
		cmd.Env = append(append(os.Environ(), otel...), env...)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	api := start(bins["api"], "FSTORE_ADDR="+addr, "FSTORE_ALLOW_PRIVATE_URLS=true")
	base := "http://" + addr
	call := func(method, path, body string, headers ...string) int {
		req, err := http.NewRequest(method, base+path, bytes.NewBufferString(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitUntil(t, "the API ready", func() bool { return call("GET", "/readyz", "") == 200 })
	require.Equal(t, 201, call("POST", "/v1/deciders/order/events", `{"event": "placed"}`))
	require.Equal(t, 201, call("PUT", "/v1/views/hooks", `{"start_at": "2020-01-01T00:00:00Z", "edge_function_url": "`+hook.URL+`"}`))
	dispatcher := start(bins["dispatcher"], "FSTORE_METRICS_ADDR=127.0.0.1:0", "FSTORE_ALLOW_PRIVATE_URLS=true")

	const caller, callerSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	require.Equal(t, 201, call("POST", "/v1/events", `{"event": "placed", "event_id": "`+uuid.NewString()+`",
		"decider": "order", "decider_id": "o-1", "data": {}, "command_id": "`+uuid.NewString()+`", "previous_id": null}`,
		"traceparent", "00-"+caller+"-"+callerSpan+"-01"))
	waitUntil(t, "the push", func() bool { mu.Lock(); defer mu.Unlock(); return pushed != nil })
	require.NoError(t, dispatcher.Process.Signal(syscall.SIGTERM))
	require.NoError(t, api.Process.Signal(syscall.SIGTERM))
	_ = dispatcher.Wait()
	_ = api.Wait()

	byName := func(service, name string) otlptest.Span {
		t.Helper()
		var found otlptest.Span
		waitUntil(t, service+" span "+name, func() bool {
			for _, s := range otlp.Spans() {
				if s.Service == service && s.Name == name && s.TraceID == caller {
					found = s
					return true
				}
			}
			return false
		})
		return found
	}
	request := byName("fstore-api", "POST /v1/events")
	assert.Equal(t, callerSpan, request.Parent)
	assert.Equal(t, "/v1/events", request.Attributes["http.route"])
	assert.Equal(t, request.SpanID, byName("fstore-api", "store.AppendEvents").Parent)
	push := byName("fstore-dispatcher", "push hooks")
	assert.Equal(t, request.SpanID, push.Parent, "the push is under the append's request")
	assert.Equal(t, "204", push.Attributes["http.response.status_code"])
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, "00-"+caller+"-"+push.SpanID+"-01", pushed.Get("traceparent"))
	assert.False(t, strings.Contains(pushed.Get("traceparent"), callerSpan))
}
