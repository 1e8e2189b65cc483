// The log: the newest events, filtered by decider, decider_id, type and
// tag, and a live tail over the SSE route.
import { apiKey, get, Problem, problemMessage, Query, unauthorizedEvent, withQuery } from "./api";
import { errorText, failed, heading, Page } from "./app";
import { fill, h } from "./dom";
import { eventItem, eventList } from "./events";
import { num } from "./format";
import { Event, EventPage, Status } from "./types";

interface Filters { decider: string; decider_id: string; type: string; tag: string[] }

const shown = 50;
const maxTail = 500;

function filtersOf(q: URLSearchParams): Filters {
  return { decider: q.get("decider") ?? "", decider_id: q.get("decider_id") ?? "", type: q.get("type") ?? "",
    tag: q.getAll("tag").filter(Boolean) };
}

function apiQuery(f: Filters): Query {
  return { decider: f.decider, decider_id: f.decider_id, events: f.type, tag: f.tag };
}

/**
 * The newest `want` events at or below offset `below`. The API reads
 * forward from a cursor, so this reads a window of offsets under `below`:
 * it widens the window (×16) while it holds too few events, and narrows
 * it (halving the gap) when one page cannot hold them all. One request for
 * the unfiltered log; a few for a rare filter.
 */
async function newest(f: Filters, below: number, want: number): Promise<{ events: Event[]; more: boolean; from: number }> {
  let lo = 0, hi = Infinity, width = want; // [below-lo, below] holds too few; [below-hi, below] too many
  for (let step = 0; ; step++) {
    const after = Math.max(0, below - width);
    const page = await get<EventPage>("/v1/events", { ...apiQuery(f), after, limit: 1000 });
    const got = page.events.filter((e) => e.offset <= below);
    const last = page.events[page.events.length - 1];
    const full = page.next_after !== null && last !== undefined && last.offset < below;
    if (!full && (got.length >= want || after === 0 || step >= 20)) {
      return { events: got.slice(-want).reverse(), more: after > 0 || got.length > want, from: after };
    }
    if (full) hi = width; else lo = width;
    width = hi === Infinity ? width * 16 : Math.floor((lo + hi) / 2);
    if (full && (hi - lo <= 1 || step >= 20)) return { events: got.slice(-want).reverse(), more: true, from: after };
  }
}

export async function logPage(page: Page): Promise<void> {
  const f = filtersOf(page.query);
  heading(page, "Log", "The newest events first. Open one to read its data, metadata and tags.");
  page.main.append(filterForm(f));
  const tailBox = h("p", { class: "tail", role: "status" });
  const list = h("ol", { class: "events", "aria-label": "Events, newest first" });
  const more = h("div");
  page.main.append(tailBox, list, more);

  let status: Status;
  try {
    status = await get<Status>("/v1/status");
  } catch (err) {
    page.main.append(failed(err));
    return;
  }
  const before = Number(page.query.get("before")) || status.log.last_offset;
  let tailFrom: number;
  try {
    const { events, more: older, from } = await newest(f, before, shown);
    // The tail starts after the newest event read, not after the status's
    // newest offset: an event below that offset may still commit, and the
    // read (and the live route) wait for it, the status does not.
    tailFrom = events.length ? events[0].offset : from;
    if (page.left()) return;
    fill(list, events.map(eventItem));
    if (!events.length) list.before(h("p", { class: "muted" }, "No event matches yet."));
    const oldest = events[events.length - 1];
    if (older && oldest) {
      const q = new URLSearchParams(page.query);
      q.set("before", String(oldest.offset - 1));
      fill(more, h("a", { href: "#/log?" + q.toString(), class: "button" }, "Older events →"));
    }
  } catch (err) {
    list.replaceWith(failed(err));
    return;
  }
  if (!page.query.get("before")) follow(page, f, tailFrom, list, tailBox);
}

function filterForm(f: Filters): HTMLFormElement {
  const field = (name: string, id: string, label: string, value: string, hint: string) => h("div", { class: "field" },
    h("label", { for: id }, label),
    h("input", { id, name, value, autocomplete: "off", spellcheck: "false", placeholder: hint }));
  // One field per tag, and one more left empty: a tag may hold spaces or
  // commas, so no separator could split one field into tags.
  const tags = [...f.tag, ""].map((t, i) =>
    field("tag", `f-tag-${i}`, f.tag.length ? `Tag ${i + 1}` : "Tag", t, i === 0 ? "region:eu" : "and another tag"));
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter the log" },
    field("decider", "f-decider", "Decider", f.decider, "order"),
    field("decider_id", "f-decider_id", "Decider id", f.decider_id, "order-1042"),
    field("type", "f-type", "Type", f.type, "order_placed"),
    tags,
    h("div", { class: "field actions" },
      h("button", { type: "submit" }, "Filter"),
      h("a", { href: "#/log", class: "button secondary" }, "Clear")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const q = new URLSearchParams();
    // Values are sent as typed: a decider_id may begin or end with a space.
    for (const k of ["decider", "decider_id", "type"]) {
      const v = String(data.get(k) ?? "");
      if (v) q.set(k, v);
    }
    for (const t of data.getAll("tag").map(String).filter(Boolean)) q.append("tag", t);
    location.hash = "#/log" + (q.toString() ? "?" + q.toString() : "");
  });
  return form;
}

/** Why the API refused a live tail: EventSource does not say, so ask once. */
async function whyRefused(url: string): Promise<string> {
  const stop = new AbortController();
  try {
    const res = await fetch(url, { headers: { accept: "text/event-stream" }, signal: stop.signal });
    if (res.ok) return "it could not stay connected";
    if (res.status === 401) window.dispatchEvent(new CustomEvent(unauthorizedEvent));
    const p = await res.json().catch(() => null) as Problem | null;
    return p ? problemMessage(p, res.status) : `HTTP ${res.status}`;
  } catch {
    return "the API does not answer";
  } finally {
    stop.abort();
  }
}

/**
 * Follows the log live from `after` through GET /v1/events as Server-Sent
 * Events. EventSource cannot send headers, so the key goes as access_token;
 * it resumes by itself after a drop, from the last id it saw.
 */
function follow(page: Page, f: Filters, after: number, list: HTMLOListElement, box: HTMLElement): void {
  const key = apiKey();
  const url = withQuery("/v1/events", { ...apiQuery(f), after, access_token: key ?? undefined });
  let count = 0;
  const src = new EventSource(url);
  const show = (text: string) => fill(box, h("span", { class: "live-dot", "aria-hidden": "true" }), text);
  const live = () => show(`Live: new events appear at the top as they are appended (${num(count)} so far).`);
  // The box is a live region: a screen reader hears the count at most every
  // few seconds, not once per event.
  let counted = 0;
  const countLater = () => {
    if (counted) return;
    counted = window.setTimeout(() => { counted = 0; if (src.readyState === EventSource.OPEN) live(); }, 3000);
  };
  show("Connecting the live tail…");
  let opened = false;
  src.onopen = () => { opened = true; live(); };
  // A stream that never opened was refused (a key it would not take, the
  // subscriber limit): ask the API why.
  src.onerror = () => {
    if (src.readyState !== EventSource.CLOSED) show("The live tail is reconnecting…");
    else if (opened) show("The live tail stopped: reload the page to follow again.");
    else void whyRefused(url).then((why) => { if (!page.left()) show(`The API refused the live tail: ${why}`); });
  };
  src.onmessage = (msg) => {
    let e: Event;
    try { e = JSON.parse(msg.data) as Event; } catch (err) { show(`An unreadable frame: ${errorText(err)}`); return; }
    if (!e || typeof e.offset !== "number") return;
    count++;
    list.prepend(eventItem(e));
    while (list.children.length > maxTail) list.lastElementChild?.remove();
    countLater();
  };
  page.onLeave(() => { src.close(); window.clearTimeout(counted); });
}

export { eventList };
