package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	httpapi "github.com/fstore/fstore/internal/http"
	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

const (
	acceptSSE    = "text/event-stream"
	acceptNDJSON = "application/x-ndjson"
)

// newLiveAPI is newAPI keeping the Server (for StopWaiting), with a short
// heartbeat unless opts sets one; configure adjusts the http.Server.
func newLiveAPI(t *testing.T, opts httpapi.Options, configure func(*http.Server)) (*api, *httpapi.Server) {
	a, srv, _ := newLiveAPIStore(t, opts, configure)
	return a, srv
}

// newLiveAPIStore is newLiveAPI, also returning the API's store.
func newLiveAPIStore(t *testing.T, opts httpapi.Options, configure func(*http.Server)) (*api, *httpapi.Server, *store.Store) {
	t.Helper()
	st := storetest.NewStore(t)
	v, err := st.SchemaVersion(t.Context())
	require.NoError(t, err)
	opts.SchemaVersion = v
	if opts.Heartbeat == 0 {
		opts.Heartbeat = 200 * time.Millisecond
	}
	if opts.Logger.GetLevel() == zerolog.DebugLevel { // the zero Logger: not set by the test
		opts.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	}
	srv := httpapi.NewServer(st, opts)
	ts := httptest.NewUnstartedServer(srv.Handler())
	if configure != nil {
		configure(ts.Config)
	}
	ts.Start()
	t.Cleanup(ts.Close)
	a := &api{t: t, srv: ts}
	if len(opts.APIKeys) > 0 {
		a.key = strings.TrimPrefix(opts.APIKeys[0], httpapi.ReadOnlyPrefix)
	}
	return a, srv, st
}

// stream is a live response being read.
type stream struct {
	t      *testing.T
	resp   *http.Response
	rd     *bufio.Reader
	cancel context.CancelFunc
}

// open sends a live request; header is name, value pairs. The response is
// closed at cleanup; reads fail the test after a minute.
func (a *api) open(method, path, accept string, body any, header ...string) (*stream, response) {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		require.NoError(a.t, err)
		rd = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	req, err := http.NewRequestWithContext(ctx, method, a.srv.URL+path, rd)
	require.NoError(a.t, err)
	req.Header.Set("Accept", accept)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.key != "" {
		req.Header.Set("Authorization", "Bearer "+a.key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(a.t, err)
	r := response{Status: resp.StatusCode, Header: resp.Header}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		r.Raw, _ = io.ReadAll(resp.Body)
		_ = json.Unmarshal(r.Raw, &r.Body)
		return nil, r
	}
	st := &stream{t: a.t, resp: resp, rd: bufio.NewReaderSize(resp.Body, 1<<16), cancel: cancel}
	a.t.Cleanup(st.close)
	return st, r
}

// mustOpen is open, requiring 200.
func (a *api) mustOpen(method, path, accept string, body any, header ...string) *stream {
	a.t.Helper()
	st, r := a.open(method, path, accept, body, header...)
	require.NotNil(a.t, st, "status %d: %s", r.Status, r.Raw)
	return st
}

func (st *stream) close() { st.cancel(); st.resp.Body.Close() }

// sseFrame is one Server-Sent Events block.
type sseFrame struct {
	ID, Event, Data, Comment, Retry string
}

// frame reads the next SSE block; ok is false at the end of the response.
func (st *stream) frame() (f sseFrame, ok bool) {
	st.t.Helper()
	for {
		line, err := st.rd.ReadString('\n')
		if err != nil {
			return f, false
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			return f, true
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			f.Comment = value
		case "id":
			f.ID = value
		case "event":
			f.Event = value
		case "data":
			f.Data = value
		case "retry":
			f.Retry = value
		default:
			st.t.Fatalf("unknown SSE field in %q", line)
		}
	}
}

// event reads SSE blocks up to the next event, skipping heartbeats.
func (st *stream) event() sseFrame {
	st.t.Helper()
	for {
		f, ok := st.frame()
		require.True(st.t, ok, "the stream ended")
		if f.Comment == "" && f.Retry == "" {
			return f
		}
	}
}

// line reads the next NDJSON line, decoded; ok is false at the end.
func (st *stream) line() (raw []byte, v map[string]any, ok bool) {
	st.t.Helper()
	b, err := st.rd.ReadBytes('\n')
	if err != nil {
		return nil, nil, false
	}
	require.NoError(st.t, json.Unmarshal(b, &v), "%s", b)
	return bytes.TrimSuffix(b, []byte("\n")), v, true
}

// eventLine reads NDJSON lines up to the next event, skipping heartbeats.
func (st *stream) eventLine() ([]byte, map[string]any) {
	st.t.Helper()
	for {
		raw, v, ok := st.line()
		require.True(st.t, ok, "the stream ended")
		if _, beat := v["heartbeat"]; !beat {
			return raw, v
		}
	}
}

// rawEvents returns the events of a plain JSON read, each as the API wrote it.
func (a *api) rawEvents(path string) []json.RawMessage {
	a.t.Helper()
	r := a.do("GET", path, nil)
	require.Equal(a.t, 200, r.Status, "%s", r.Raw)
	var page struct{ Events []json.RawMessage }
	require.NoError(a.t, json.Unmarshal(r.Raw, &page))
	return page.Events
}

// get opens a GET stream, requiring 200.
func (a *api) get(path, accept string, header ...string) *stream {
	a.t.Helper()
	return a.mustOpen("GET", path, accept, nil, header...)
}
