// One view: its settings (never its secret, never URL credentials), its
// status, its partitions by state and page, and un-park all.
import { get, post, seg } from "./api";
import { act, facts, failed, failure, heading, Page, table } from "./app";
import { Child, fill, h, link } from "./dom";
import { ago, num, safeURL, when } from "./format";
import { partitionRoute } from "./overview";
import { Partition, PartitionPage, View } from "./types";

const states = [["all", "All"], ["behind", "Behind"], ["leased", "Leased"], ["failing", "Failing"], ["parked", "Parked"]];
const pageSize = 50;

export async function viewPage(page: Page): Promise<void> {
  const name = page.path[1];
  const state = page.query.get("state") ?? "all";
  const after = page.query.get("after");
  heading(page, h("span", {}, "View ", h("code", {}, name)));
  const about = h("div", { class: "cards" });
  const actions = h("div", { class: "actions" });
  const parts = h("section", { "aria-labelledby": "parts-h" });
  page.main.append(about, actions, parts);

  const draw = async () => {
    let v: View;
    try {
      v = await get<View>(`/v1/views/${seg(name)}`);
    } catch (err) {
      fill(about, failed(err));
      return;
    }
    if (page.left()) return;
    fill(about, settings(v), status(v));
    if (page.canWrite) {
      const retry = h("button", { type: "button", disabled: v.status.partitions_parked === 0 },
        `Un-park all (${num(v.status.partitions_parked)} parked)`);
      retry.addEventListener("click", () => void act(retry, `Deliver again the head of every parked partition of ${name}?`,
        async () => `${num((await post<{ retried: number }>(`/v1/views/${seg(name)}/retry`)).retried)} partition(s) un-parked.`,
        () => void draw()));
      fill(actions, retry);
    }
  };
  await draw();
  fill(parts, h("h2", { id: "parts-h" }, "Partitions"), stateNav(name, state), await partitions(name, state, after));
}

function settings(v: View): HTMLElement {
  const scope = (list: string[] | null | undefined, all: string): Child =>
    list && list.length ? list.map((x) => [h("code", {}, x), " "]) : h("span", { class: "muted" }, all);
  return h("section", { "aria-labelledby": "settings-h" }, h("h2", { id: "settings-h" }, "Settings"), facts([
    ["Delivery", v.edge_function_url ? h("span", {}, "pushed to ", h("code", {}, safeURL(v.edge_function_url))) : "polled by its consumers"],
    ["Push", v.dispatch_disabled_at ? h("span", { class: "bad" }, `disabled ${ago(v.dispatch_disabled_at)}: ${v.dispatch_disabled_reason ?? ""}`) : undefined],
    ["Deciders", scope(v.deciders, "every decider")],
    ["Event types", scope(v.events, "every type")],
    ["Start", when(v.start_at)],
    ["Lease length", `${num(v.lock_timeout_s)} s`],
    ["Polling delay", (v.polling_delay_s ?? v.pooling_delay_s) != null ? `${v.polling_delay_s ?? v.pooling_delay_s} s` : "the dispatcher's default"],
    ["Registered", when(v.created_at)],
  ]));
}

function status(v: View): HTMLElement {
  const s = v.status;
  return h("section", { "aria-labelledby": "status-h" }, h("h2", { id: "status-h" }, "Status"), facts([
    ["Lag", `${num(s.events_pending)} event(s)`],
    ["Partitions", num(s.partitions)],
    ["Behind", num(s.partitions_behind)],
    ["Leased now", num(s.partitions_leased)],
    ["Failing", s.partitions_failing === undefined ? undefined : num(s.partitions_failing)],
    ["Parked", s.partitions_parked ? h("span", { class: "pill bad" }, num(s.partitions_parked)) : "0"],
    ["Last error", s.last_error ? h("span", {}, link(partitionRoute(v.view, s.last_error.decider, s.last_error.decider_id),
      `${s.last_error.decider}/${s.last_error.decider_id}`), `: ${s.last_error.error} (${ago(s.last_error.at)})`) : "none"],
  ]));
}

function stateNav(name: string, current: string): HTMLElement {
  return h("nav", { class: "tabs", "aria-label": "Partitions by state" }, h("ul", {}, states.map(([s, label]) =>
    h("li", {}, h("a", { href: `#/views/${encodeURIComponent(name)}?state=${s}`, "aria-current": s === current ? "page" : false }, label)))));
}

function stateOf(p: Partition): Child {
  if (p.parked) return h("span", { class: "pill bad" }, "parked");
  if (p.leased_until && new Date(p.leased_until).getTime() > Date.now()) return h("span", { class: "pill" }, "leased");
  if (p.attempts > 0) return h("span", { class: "pill warn" }, `failing, retry ${ago(p.retry_at)}`);
  return p.head_offset > p.acked_offset ? "behind" : "caught up";
}

async function partitions(name: string, state: string, after: string | null): Promise<Child> {
  let res: PartitionPage;
  try {
    res = await get<PartitionPage>(`/v1/views/${seg(name)}/partitions`, { state, after, limit: pageSize });
  } catch (err) {
    return failed(err);
  }
  if (!res.partitions.length) return h("p", { class: "muted" }, after ? "No more partitions." : `No partition is ${state === "all" ? "in this view yet" : state}.`);
  const rows = res.partitions.map((p) => [
    link(partitionRoute(name, p.decider, p.decider_id), h("span", {}, p.decider, "/", h("wbr"), p.decider_id)),
    stateOf(p), num(p.events_pending), num(p.acked_offset), num(p.head_offset), num(p.attempts),
    p.last_error ? h("span", { class: "err" }, failure(p.last_status, p.last_error)) : "—",
    p.last_error_at ? ago(p.last_error_at) : "—",
  ]);
  const q = (a: string | null) => `#/views/${encodeURIComponent(name)}?state=${state}${a ? `&after=${encodeURIComponent(a)}` : ""}`;
  return h("div", {},
    table(`Partitions (${state})`, ["Partition", "State", "Pending", "Acked", "Head", "Attempts", "Last error", "When"], rows, [2, 3, 4, 5]),
    h("nav", { class: "pager", "aria-label": "Pages of partitions" },
      after ? h("a", { href: q(null), class: "button secondary" }, "← First page") : null,
      res.next_after ? h("a", { href: q(res.next_after), class: "button" }, "Next page →") : null));
}
