// Command webhook-receiver is a minimal receiver of fstore's pushes: it
// verifies each request's Standard Webhooks signature, skips events it has
// seen (delivery is at least once), handles the rest, and answers 204.
//
//	WEBHOOK_SECRET=whsec_... go run ./examples/webhook-receiver
package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

type event struct {
	EventID   string          `json:"event_id"`
	Event     string          `json:"event"`
	Decider   string          `json:"decider"`
	DeciderID string          `json:"decider_id"`
	Offset    int64           `json:"offset"`
	Data      json.RawMessage `json:"data"`
}

func main() {
	wh, err := standardwebhooks.NewWebhook(os.Getenv("WEBHOOK_SECRET"))
	if err != nil {
		log.Fatalf("WEBHOOK_SECRET: %v", err)
	}
	var mu sync.Mutex
	seen := map[string]bool{} // use your database in production
	http.HandleFunc("POST /hook", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
		if err != nil || wh.Verify(body, r.Header) != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized) // retried, then parked
			return
		}
		mu.Lock()
		defer mu.Unlock()
		id := r.Header.Get("webhook-id")
		if seen[id] {
			w.WriteHeader(http.StatusNoContent) // a redelivery: acknowledge again
			return
		}
		var e event
		if err := json.Unmarshal(body, &e); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		log.Printf("%s %s/%s #%d: %s", e.Event, e.Decider, e.DeciderID, e.Offset, e.Data)
		seen[id] = true
		w.WriteHeader(http.StatusNoContent)
	})
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:8090"
	}
	log.Printf("listening on http://%s/hook", addr)
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	log.Fatal(srv.ListenAndServe())
}
