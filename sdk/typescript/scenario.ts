// The calls of the Go client scenario, typed by the generated fstore.d.ts:
// tsc fails if the document cannot express them.
import createClient from "openapi-fetch";
import type { components, paths } from "./fstore";

type Event = components["schemas"]["Event"];
type Problem = components["schemas"]["Problem"];

export async function scenario(baseUrl: string): Promise<void> {
  // JSON answers: the read operations also answer live streams
  // (text/event-stream, application/x-ndjson), which this client does not read.
  const api = createClient<paths, "application/json" | "application/problem+json">({ baseUrl });

  await api.POST("/v1/deciders/{decider}/events", {
    params: { path: { decider: "order" } },
    body: { event: "placed", description: "an order was placed" },
  });

  const first = crypto.randomUUID();
  const appended = await api.POST("/v1/events", {
    body: {
      event: "placed", event_id: first, decider: "order", decider_id: "o-1",
      data: { total: 42 }, command_id: crypto.randomUUID(), previous_id: null,
      metadata: { user: "ada", schema: 2 }, tags: ["order:o-1", "customer:c-7"],
    },
  });
  const stored: Event | undefined = appended.data;
  const tags: string[] = stored?.tags ?? [];
  console.log("appended at offset", stored?.offset, "tagged", tags.join(","), "by", stored?.metadata.user);

  const conflict = await api.POST("/v1/events", {
    body: {
      event: "placed", event_id: crypto.randomUUID(), decider: "order", decider_id: "o-1",
      data: {}, command_id: crypto.randomUUID(), previous_id: null,
    },
  });
  const problem: Problem | undefined = conflict.error;
  if (problem?.type === "urn:fstore:problem:concurrency-conflict") {
    console.log("re-read from", problem.last_event_id);
  }

  let after: number | undefined;
  for (;;) {
    const page = await api.GET("/v1/events", { params: { query: { after, limit: 100 } } });
    if (!page.data || page.data.next_after === null) break;
    after = page.data.next_after;
  }

  // Read by tags: every event carrying both.
  const tagged = await api.GET("/v1/events", { params: { query: { tag: ["order:o-1", "customer:c-7"] } } });
  console.log("tagged", tagged.data?.events.length);

  // Follow the log live. A browser uses an EventSource (frames carry the
  // offset as their id); any client can read NDJSON, each line a LiveLine.
  const placed = await api.GET("/v1/events", { params: { query: { events: "placed" } } });
  console.log("placed events", placed.data?.events.length);
  const live = await fetch(`${baseUrl}/v1/events?events=placed`, { headers: { accept: "application/x-ndjson" } });
  const lines = live.body!.pipeThrough(new TextDecoderStream()).getReader();
  const chunk = await lines.read();
  for (const text of (chunk.value ?? "").split("\n").filter(Boolean)) {
    const line = JSON.parse(text) as components["schemas"]["LiveLine"];
    if ("event_id" in line) console.log("live event at offset", line.offset);
    else if ("error" in line) console.log("follow again after", line.error.after);
  }
  await lines.cancel();

  // A decision across streams: query, then append on its position.
  const query = { items: [{ types: ["placed"], tags: ["customer:c-7"] }, { types: ["placed"], matches: [{ n: 1 }] }] };
  const read = await api.POST("/v1/events/query", { body: { query, limit: 100 } });
  const position: number = read.data?.position ?? 0;
  const decided = await api.POST("/v1/events/batch", {
    body: {
      events: [{ event: "placed", event_id: crypto.randomUUID(), decider: "order", decider_id: "o-9",
                 data: { n: 1 }, command_id: crypto.randomUUID(), previous_id: null, tags: ["customer:c-7"] }],
      condition: { query, after: position },
    },
  });
  if (decided.error?.type === "urn:fstore:problem:condition-failed") console.log("decide again after", decided.error.offset);

  await api.PUT("/v1/views/{view}", { params: { path: { view: "orders" } }, body: { lock_timeout_s: 30 } });
  const leased = await api.POST("/v1/views/{view}/stream", {
    params: { path: { view: "orders" } },
    body: { limit: 10, max_per_partition: 10, wait_s: 5 },
  });
  for (const e of leased.data?.events ?? []) {
    await api.POST("/v1/views/{view}/ack", {
      params: { path: { view: "orders" } },
      body: { decider: e.decider, decider_id: e.decider_id, offset: e.offset, lease_id: e.lease_id },
    });
  }
  const status = await api.GET("/v1/views/{view}", { params: { path: { view: "orders" } } });
  console.log("events pending", status.data?.status.events_pending);

  // A scoped view, and the dead-letter routes.
  const scoped = await api.PUT("/v1/views/{view}", {
    params: { path: { view: "placements" } },
    body: { deciders: ["order"], events: ["placed"] },
  });
  const lists: (string[] | null)[] = [scoped.data?.deciders ?? null, scoped.data?.events ?? null];
  console.log("scoped to", lists);
  const next = await api.POST("/v1/views/{view}/stream", { params: { path: { view: "placements" } }, body: {} });
  for (const e of next.data?.events ?? []) {
    console.log("failed so far", e.attempts);
    await api.POST("/v1/views/{view}/nack", {
      params: { path: { view: "placements" } },
      body: { decider: e.decider, decider_id: e.decider_id, lease_id: e.lease_id, error: "projection store is down" },
    });
  }
  let cursor: string | undefined;
  for (;;) {
    const page = await api.GET("/v1/views/{view}/partitions", {
      params: { path: { view: "placements" }, query: { state: "failing", after: cursor, limit: 100 } },
    });
    for (const p of page.data?.partitions ?? []) {
      const where = { view: "placements", decider: p.decider, decider_id: p.decider_id };
      const one = await api.GET("/v1/views/{view}/partitions/{decider}/{decider_id}", { params: { path: where } });
      const tried = await api.GET("/v1/views/{view}/partitions/{decider}/{decider_id}/attempts", {
        params: { path: where, query: { limit: 10 } },
      });
      const last: string | null | undefined = tried.data?.attempts[0]?.error;
      console.log(p.last_error, p.last_status, p.events_pending, last);
      const poison = one.data?.next_event;
      if (poison) {
        await api.POST("/v1/views/{view}/partitions/{decider}/{decider_id}/skip", {
          params: { path: where }, body: { offset: poison.offset },
        });
        await api.POST("/v1/views/{view}/partitions/{decider}/{decider_id}/replay", {
          params: { path: where }, body: { after: 0 },
        });
      }
    }
    if (!page.data || page.data.next_after === null) break;
    cursor = page.data.next_after;
  }
  const retried = await api.POST("/v1/views/{view}/retry", { params: { path: { view: "placements" } } });
  const count: number | undefined = retried.data?.retried;
  console.log("un-parked", count);

  const server = await api.GET("/v1/status");
  if (server.data?.access === "read-only") console.log("this key may not write");
  const late = (server.data?.dispatchers ?? []).filter((d) => !d.healthy).map((d) => `${d.host}:${d.pid}`);
  console.log("newest offset", server.data?.log.last_offset, "≈ events", server.data?.log.events_estimate, "late", late);
}
