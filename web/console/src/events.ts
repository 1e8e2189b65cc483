// One event, readably: a line to scan, and on opening its ids, tags, data
// and metadata. Used by the log and the stream pages.
import { facts } from "./app";
import { h, link } from "./dom";
import { json, when } from "./format";
import { Event } from "./types";

export function streamRoute(decider: string, id: string): string {
  return `/stream/${encodeURIComponent(decider)}/${encodeURIComponent(id)}`;
}

export function eventItem(e: Event): HTMLLIElement {
  const tags = e.tags ?? [];
  return h("li", { "data-offset": e.offset },
    h("details", {},
      h("summary", {},
        h("span", { class: "off" }, `#${e.offset}`), " ",
        h("strong", {}, e.event), " ",
        h("span", { class: "muted" }, `${e.decider}/${e.decider_id}`), " ",
        tags.map((t) => [h("span", { class: "tag" }, t), " "]),
        e.final ? h("span", { class: "pill" }, "final") : null,
        h("time", { datetime: e.created_at }, when(e.created_at))),
      h("div", { class: "event" },
        facts([
          ["Stream", link(streamRoute(e.decider, e.decider_id), `${e.decider}/${e.decider_id}`)],
          ["Type", `${e.event} v${e.event_version}`],
          ["Event id", h("code", {}, e.event_id)],
          ["Command id", h("code", {}, e.command_id)],
          ["Previous id", e.previous_id ? h("code", {}, e.previous_id) : "none: the stream's first event"],
          ["Created", when(e.created_at)],
          ["Tags", tags.length ? tags.map((t) => [h("span", { class: "tag" }, t), " "]) : "none"],
        ]),
        h("h3", {}, "data"), h("pre", { tabindex: "0" }, json(e.data)),
        h("h3", {}, "metadata"), h("pre", { tabindex: "0" }, json(e.metadata ?? {})))));
}

export function eventList(label: string, events: Event[]): HTMLOListElement {
  return h("ol", { class: "events", "aria-label": label }, events.map(eventItem));
}
