// The overview: the log's size and append rate, the dispatchers, and every
// view with its lag. It samples GET /v1/status and GET /v1/views every few
// seconds while shown; the samples (kept for the tab's life) draw each
// view's lag chart and the append rate.
import { get } from "./api";
import { failed, facts, heading, Page, table } from "./app";
import { fill, h, link } from "./dom";
import { ago, num, safeURL, serverTime } from "./format";
import { sparkline } from "./sparkline";
import { Status, View } from "./types";

export const sampleEveryMs = 5000;
const keepMs = 10 * 60 * 1000;

interface Sample { t: number; offset: number; lag: Map<string, number> }
const samples: Sample[] = [];

function record(st: Status, views: View[]): void {
  const t = new Date(st.time).getTime();
  samples.push({ t, offset: st.log.last_offset, lag: new Map(views.map((v) => [v.view, v.status.events_pending])) });
  while (samples.length > 2 && samples[0].t < t - keepMs) samples.shift();
}

/** Appends per second over the last minute of samples; null until two exist. */
function rate(): number | null {
  if (samples.length < 2) return null;
  const last = samples[samples.length - 1];
  const first = samples.find((s) => s.t >= last.t - 60_000 && s !== last) ?? samples[samples.length - 2];
  const dt = (last.t - first.t) / 1000;
  return dt > 0 ? Math.max(0, (last.offset - first.offset) / dt) : null;
}

export async function overview(page: Page): Promise<void> {
  heading(page, "Overview", "The log, the dispatchers and every view, sampled every 5 s while this page is open.");
  const log = h("section", { "aria-labelledby": "log-h" }, h("h2", { id: "log-h" }, "Log"));
  const disp = h("section", { "aria-labelledby": "disp-h" }, h("h2", { id: "disp-h" }, "Dispatchers"));
  const views = h("section", { "aria-labelledby": "views-h" }, h("h2", { id: "views-h" }, "Views"));
  const logBody = h("div", { "aria-live": "off" }), dispBody = h("div"), viewsBody = h("div");
  log.append(logBody); disp.append(dispBody); views.append(viewsBody);
  page.main.append(h("div", { class: "cards" }, log, disp), views);

  const refresh = async () => {
    let st: Status, vs: View[];
    try {
      [st, vs] = await Promise.all([get<Status>("/v1/status"), get<{ views: View[] }>("/v1/views").then((r) => r.views)]);
    } catch (err) {
      if (!page.left()) fill(viewsBody, failed(err));
      return;
    }
    if (page.left()) return;
    serverTime(st.time);
    record(st, vs);
    drawLog(logBody, st);
    drawDispatchers(dispBody, st, vs);
    drawViews(viewsBody, vs);
  };
  await refresh();
  const timer = window.setInterval(() => { if (document.visibilityState === "visible") void refresh(); }, sampleEveryMs);
  page.onLeave(() => window.clearInterval(timer));
}

function drawLog(el: HTMLElement, st: Status): void {
  const r = rate();
  fill(el, facts([
    ["Events", `≈ ${num(st.log.events_estimate)}`],
    ["Newest offset", num(st.log.last_offset)],
    ["Appends", r === null ? "measuring…" : `≈ ${num(Math.round(r))}/s over the last minute`],
  ]), h("p", {}, link("/log", "Browse the log →")));
}

function drawDispatchers(el: HTMLElement, st: Status, views: View[]): void {
  const pushed = views.filter((v) => v.edge_function_url).length;
  const healthy = st.dispatchers.filter((d) => d.healthy).length;
  const summary = st.dispatchers.length === 0
    ? h("p", { class: pushed ? "bad" : "" }, pushed
      ? `No dispatcher has reported in the last day: ${pushed} view(s) with a URL are not being pushed.`
      : "No dispatcher has reported in the last day (no view has a URL to push to).")
    : h("p", { class: healthy ? "good" : "bad" }, `${healthy} of ${st.dispatchers.length} healthy`);
  fill(el, summary, st.dispatchers.length ? table("Dispatcher processes, from their heartbeats",
    ["Process", "Metrics", "Started", "Last seen", "Health"],
    st.dispatchers.map((d) => [
      `${d.host} (pid ${d.pid})`, h("code", {}, d.metrics_addr), ago(d.started_at), ago(d.last_seen_at),
      h("span", { class: d.healthy ? "pill good" : "pill bad" }, d.healthy ? "healthy" : "late"),
    ])) : null);
}

function drawViews(el: HTMLElement, views: View[]): void {
  if (!views.length) {
    fill(el, h("p", {}, "No view is registered. ", h("code", {}, "PUT /v1/views/{view}"), " creates one."));
    return;
  }
  fill(el, table("Views and their lag", ["View", "Delivery", "Lag (events)", "Trend", "Partitions", "Behind",
    "Leased", "Parked", "Last error"],
  views.map((v) => {
    const s = v.status;
    const series = samples.map((x) => x.lag.get(v.view)).filter((n): n is number => n !== undefined);
    return [
      link(`/views/${encodeURIComponent(v.view)}`, v.view),
      v.edge_function_url ? h("span", { title: safeURL(v.edge_function_url) }, "push") : "polled",
      num(s.events_pending),
      sparkline(series, `lag of ${v.view}`),
      num(s.partitions), num(s.partitions_behind), num(s.partitions_leased),
      s.partitions_parked ? link(`/views/${encodeURIComponent(v.view)}?state=parked`,
        h("span", { class: "pill bad" }, num(s.partitions_parked))) : "0",
      s.last_error ? h("span", { class: "err" }, link(partitionRoute(v.view, s.last_error.decider, s.last_error.decider_id),
        `${s.last_error.decider}/${s.last_error.decider_id}`), `: ${s.last_error.error}`) : "—",
    ];
  }), [2, 4, 5, 6, 7]));
}

export function partitionRoute(view: string, decider: string, id: string): string {
  return `/views/${encodeURIComponent(view)}/partitions/${encodeURIComponent(decider)}/${encodeURIComponent(id)}`;
}
