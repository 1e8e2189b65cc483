// One stream: its events in order, its last event, and whether it is final.
import { ApiError, get } from "./api";
import { facts, failed, heading, Page } from "./app";
import { fill, h, link } from "./dom";
import { eventItem } from "./events";
import { num, when } from "./format";
import { Event, EventPage } from "./types";

const pageSize = 100;

export async function streamPage(page: Page): Promise<void> {
  const [decider, id] = page.path.slice(1);
  heading(page, h("span", {}, "Stream ", h("code", {}, `${decider}/${id}`)));
  const summary = h("section", { "aria-label": "Summary" });
  const list = h("ol", { class: "events", "aria-label": "The stream's events, oldest first" });
  const more = h("div");
  page.main.append(summary, h("h2", {}, "Events"), list, more);

  let last: Event;
  try {
    last = await get<Event>("/v1/events/last", { decider, decider_id: id });
  } catch (err) {
    fill(summary, err instanceof ApiError && err.status === 404
      ? h("p", {}, "This stream has no events.") : failed(err));
    return;
  }
  if (page.left()) return;
  fill(summary, facts([
    ["Decider", link(`/log?decider=${encodeURIComponent(decider)}`, decider)],
    ["Decider id", h("code", {}, id)],
    ["Last event", h("span", {}, `#${last.offset} ${last.event}, ${when(last.created_at)}`)],
    ["Final", last.final ? h("span", { class: "pill" }, "final: nothing more may be appended") : "no: it takes more events"],
  ]));

  let count = 0;
  const load = async (after: number) => {
    try {
      const res = await get<EventPage>("/v1/events", { decider, decider_id: id, after, limit: pageSize });
      if (page.left()) return;
      list.append(...res.events.map(eventItem));
      count += res.events.length;
      const tail = res.events[res.events.length - 1];
      fill(more, res.next_after !== null && tail
        ? h("button", { type: "button", onclick: () => void load(tail.offset) }, `Show more (${num(count)} shown)`)
        : h("p", { class: "muted" }, `${num(count)} event(s), the whole stream.`));
    } catch (err) {
      fill(more, failed(err));
    }
  };
  await load(0);
}
