package httpapi_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	httpapi "github.com/fstore/fstore/internal/http"
	"github.com/fstore/fstore/internal/store"
	"github.com/fstore/fstore/internal/store/storetest"
)

// fuzzServer is the real router over a real store, shared by a fuzz
// target's inputs, with event types and a view to hit.
func fuzzServer(f *testing.F) (*httptest.Server, *store.Store) {
	st := storetest.NewStore(f)
	srv := httptest.NewServer(httpapi.NewServer(st, httpapi.Options{Logger: zerolog.Nop(), MaxBodyBytes: 1 << 20}).Handler())
	f.Cleanup(srv.Close)
	for _, et := range []store.EventType{{Decider: "order", Event: "created", EventVersion: 1}, {Decider: "order", Event: "shipped", EventVersion: 1}} {
		if _, _, err := st.RegisterEventType(f.Context(), et); err != nil {
			f.Fatal(err)
		}
	}
	if _, _, err := st.RegisterView(f.Context(), store.ViewRegistration{View: "v", LockTimeoutS: 60}); err != nil {
		f.Fatal(err)
	}
	return srv, st
}

func send5xx(t *testing.T, srv *httptest.Server, method, path string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
	if err != nil {
		return 0 // not a request a client could send
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		t.Fatalf("%s %s with %q: status %d", method, path, body, resp.StatusCode)
	}
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("%s %s: a %d that is not problem+json", method, path, resp.StatusCode)
	}
	return resp.StatusCode
}

var bodySeeds = []string{
	`{"event":"created","event_id":"5f0e1c3a-8d4b-4c2e-9f6a-1b2c3d4e5f60","decider":"order","decider_id":"o-1","data":{"a":1},"command_id":"0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f","previous_id":null}`,
	`{"event":"created","event_id":"5f0e1c3a-8d4b-4c2e-9f6a-1b2c3d4e5f61","decider":"order","decider_id":"o-1","data":[],"command_id":"0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f","previous_id":"5f0e1c3a-8d4b-4c2e-9f6a-1b2c3d4e5f60","final":true}`,
	`{"event":"created","event_id":"x","decider":"order","decider_id":"o\u0000","data":{"s":"\u0000"},"command_id":"y","previous_id":5}`,
	`{"event":"created","event_id":"5f0e1c3a-8d4b-4c2e-9f6a-1b2c3d4e5f62","decider":"order","decider_id":"o-2","data":{},"command_id":"0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f","previous_id":null,"metadata":{"user":"ada","traceparent":"00-x"},"tags":["b","a","b","\u0085",""]}`,
	`{"event":"created","event_id":"5f0e1c3a-8d4b-4c2e-9f6a-1b2c3d4e5f63","decider":"order","decider_id":"o-3","data":{},"command_id":"0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f","previous_id":null,"metadata":[1],"tags":{"a":1}}`,
	`{"event":1e400,"event_version":99999999999999999999,"data":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
	"{\"event\":\"\xff\xfe\"}", `null`, `[]`, `""`, `{`, `{}{}`, `{"events":[]}`, `{"events":[{},{}]}`,
	`{"limit":0,"wait_s":-1}`, `{"start_at":"2020-01-01T00:00:00Z","edge_function_url":"http://[::1]:1/x","secret":"whsec_"}`,
}

func FuzzAppendEvent(f *testing.F) {
	srv, _ := fuzzServer(f)
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { send5xx(t, srv, "POST", "/v1/events", body) })
}

// A refused batch stores nothing.
func FuzzAppendBatch(f *testing.F) {
	srv, st := fuzzServer(f)
	for _, s := range bodySeeds {
		f.Add([]byte(`{"events":[` + s + `]}`))
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before, err := st.ReadEvents(t.Context(), store.ReadQuery{Limit: 10000})
		if err != nil {
			t.Fatal(err)
		}
		status := send5xx(t, srv, "POST", "/v1/events/batch", body)
		after, err := st.ReadEvents(t.Context(), store.ReadQuery{Limit: 10000})
		if err != nil {
			t.Fatal(err)
		}
		if status >= 400 && len(after) != len(before) {
			t.Fatalf("a refused batch (%d) stored %d events", status, len(after)-len(before))
		}
	})
}

func FuzzViewRequests(f *testing.F) {
	srv, _ := fuzzServer(f)
	for _, s := range bodySeeds {
		f.Add("PUT", "v", []byte(s))
		f.Add("POST", "v/stream", []byte(s))
		f.Add("POST", "v/ack", []byte(s))
		f.Add("POST", "v/nack", []byte(s))
	}
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		if method != "PUT" && method != "POST" {
			method = "POST"
		}
		send5xx(t, srv, method, "/v1/views/"+url.PathEscape(path), body)
		if !strings.Contains(path, "/") {
			send5xx(t, srv, "POST", "/v1/views/"+url.PathEscape(path)+"/stream", body)
		}
	})
}

func FuzzReadQuery(f *testing.F) {
	srv, _ := fuzzServer(f)
	for _, q := range []string{"decider=order&decider_id=o-1", "after=-1&limit=0", "limit=99999999999999999999",
		"decider=%00", "decider_id=x", "decider=" + strings.Repeat("d", 300), "after=1e3", "decider=order&after=5&limit=2",
		"events=created,shipped", "events=", "events=a,,b", "decider=order&events=created&events=x", "events=%00"} {
		f.Add(q, "o-1")
	}
	f.Fuzz(func(t *testing.T, query, id string) {
		// The values a client can send: a raw space in the request line is
		// invalid HTTP, refused by net/http before any handler runs.
		values, _ := url.ParseQuery(query)
		send5xx(t, srv, "GET", "/v1/events?"+values.Encode(), nil)
		send5xx(t, srv, "GET", "/v1/events/last?decider=order&decider_id="+url.QueryEscape(id), nil)
		send5xx(t, srv, "GET", "/v1/events/"+url.PathEscape(id), nil)
		send5xx(t, srv, "GET", "/v1/deciders/"+url.PathEscape(id), nil)
	})
}

// Queries, and batches on a condition: never a 5xx; a refused conditional
// batch stores nothing.
func FuzzQueryAndCondition(f *testing.F) {
	srv, st := fuzzServer(f)
	for _, q := range []string{
		`{"items":[{"types":["created"],"matches":[{"a":1}]}]}`, `{"items":[{}]}`, `{"items":[]}`, `{"items":null}`,
		`{"items":[{"types":[]}]}`, `{"items":[{"matches":[{}]}]}`, `{"items":[{"matches":[[1]]}]}`,
		`{"items":[{"matches":[{"a":{"b":[1,{"c":null}]}}]}]}`, `{"items":[{"types":["\u0000"]}]}`,
		`{"items":[{"matches":[{"\u0000":1}]}]}`, `{"items":[{"types":["x"],"tags":["y"]}]}`, `[]`, `5`,
	} {
		f.Add([]byte(`{"query":`+q+`}`), []byte(q), int64(0))
		f.Add([]byte(`{"query":`+q+`,"after":-3,"limit":0}`), []byte(q), int64(-1))
	}
	f.Fuzz(func(t *testing.T, body, query []byte, after int64) {
		send5xx(t, srv, "POST", "/v1/events/query", body)
		before, err := st.ReadEvents(t.Context(), store.ReadQuery{Limit: 10000})
		if err != nil {
			t.Fatal(err)
		}
		batch := append([]byte(`{"events":[`+bodySeeds[0]+`],"condition":{"query":`), query...)
		batch = append(batch, []byte(`,"after":`+strconv.FormatInt(after, 10)+`}}`)...)
		status := send5xx(t, srv, "POST", "/v1/events/batch", batch)
		after2, err := st.ReadEvents(t.Context(), store.ReadQuery{Limit: 10000})
		if err != nil {
			t.Fatal(err)
		}
		if status >= 400 && len(after2) != len(before) {
			t.Fatalf("a refused conditional batch (%d) stored %d events", status, len(after2)-len(before))
		}
	})
}
