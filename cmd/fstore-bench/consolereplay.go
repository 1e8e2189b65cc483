package main

import (
	"context"
	"net/http"

	"github.com/jackc/pgx/v5"
)

// consoleReplay adds the pages an operator opens while a view replays the
// whole log: a second view from the log's start, every stream discovered
// and none acked (every partition behind, every event pending). A
// status costs its partitions behind and its pending events, so these
// figures show what the console's first figures do not. 10 loads each:
// a load takes seconds.
func consoleReplay(ctx context.Context, c *client, dbURL string, f *consoleFigures) error {
	const view = "console_replay"
	if _, err := c.do("PUT", "/v1/views/"+view, []byte(`{"start_at":"2000-01-01T00:00:00Z"}`), http.StatusCreated); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if err := discoverAll(ctx, conn, view); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE view_partitions`); err != nil {
		return err
	}
	return f.time(c, []consolePage{
		{name: "overview, while a second view replays the whole log (all its partitions behind)",
			calls: []string{"/v1/status", "/v1/views"}, parallel: true},
		{name: "view, partitions behind, of the view replaying the whole log",
			calls: []string{"/v1/views/" + view, "/v1/views/" + view + "/partitions?state=behind&limit=50"}},
	}, 10)
}
