package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	httpapi "github.com/fstore/fstore/internal/http"
	"github.com/fstore/fstore/internal/store/storetest"
)

// api is a test server: the real router over a real store.
type api struct {
	t   *testing.T
	srv *httptest.Server
	key string
}

func newAPI(t *testing.T, opts httpapi.Options) *api {
	t.Helper()
	return newAPIOver(t, storetest.NewStore(t), opts)
}

// newAPIOver is newAPI over a store of the test's own.
func newAPIOver(t *testing.T, st httpapi.Store, opts httpapi.Options) *api {
	t.Helper()
	if opts.SchemaVersion == 0 {
		v, err := st.SchemaVersion(t.Context())
		require.NoError(t, err)
		opts.SchemaVersion = v
	}
	opts.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	srv := httptest.NewServer(httpapi.NewServer(st, opts).Handler())
	t.Cleanup(srv.Close)
	a := &api{t: t, srv: srv}
	if len(opts.APIKeys) > 0 {
		a.key = opts.APIKeys[0]
	}
	return a
}

// response is a decoded answer.
type response struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

// do sends body (a string is sent as is, anything else as JSON).
func (a *api) do(method, path string, body any) response {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(a.t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, a.srv.URL+path, rd)
	require.NoError(a.t, err)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.key != "" {
		req.Header.Set("Authorization", "Bearer "+a.key)
	}
	return send(a.t, req)
}

func send(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r := response{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if strings.Contains(resp.Header.Get("Content-Type"), "json") {
		_ = json.Unmarshal(raw, &r.Body)
	}
	return r
}

// requireProblem checks r is an RFC 9457 problem of this status and slug.
func requireProblem(t *testing.T, r response, status int, slug string) {
	t.Helper()
	require.Equal(t, status, r.Status, "body: %s", r.Raw)
	assert.Equal(t, "application/problem+json", r.Header.Get("Content-Type"))
	for _, k := range []string{"type", "title", "status", "detail"} {
		assert.Contains(t, r.Body, k, "problem member %s", k)
	}
	assert.Equal(t, httpapi.ProblemTypePrefix+slug, r.Body["type"])
	assert.NotContains(t, r.Body["detail"], "SQLSTATE", "the detail is for people, not a driver dump")
	assert.EqualValues(t, status, r.Body["status"])
}

func (a *api) register(decider string, events ...string) {
	a.t.Helper()
	for _, e := range events {
		r := a.do("POST", "/v1/deciders/"+decider+"/events", map[string]any{"event": e})
		require.Contains(a.t, []int{200, 201}, r.Status, "%s", r.Raw)
	}
}

// event builds an append body for a stream; previous "" means null.
func event(decider, deciderID, previous string) map[string]any {
	m := map[string]any{
		"event": "created", "event_id": uuid.NewString(), "decider": decider, "decider_id": deciderID,
		"data": map[string]any{"n": 1}, "command_id": uuid.NewString(), "previous_id": nil,
	}
	if previous != "" {
		m["previous_id"] = previous
	}
	return m
}

func (a *api) appendOK(e map[string]any) map[string]any {
	a.t.Helper()
	r := a.do("POST", "/v1/events", e)
	require.Equal(a.t, 201, r.Status, "%s", r.Raw)
	return r.Body
}

func with(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == deleteField {
			delete(out, k)
			continue
		}
		out[k] = kv[i+1]
	}
	return out
}

type deleted struct{}

var deleteField = deleted{}

func fieldNames(r response) []string {
	var out []string
	errs, _ := r.Body["errors"].([]any)
	for _, e := range errs {
		out = append(out, fmt.Sprint(e.(map[string]any)["field"]))
	}
	return out
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
