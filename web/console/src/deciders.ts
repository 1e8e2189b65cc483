// Each decider and the event types it may publish.
import { get } from "./api";
import { failed, heading, Page, table } from "./app";
import { h, link } from "./dom";
import { Decider } from "./types";

export async function decidersPage(page: Page): Promise<void> {
  heading(page, "Deciders", "Each kind of entity and the event types registered for it.");
  try {
    const { deciders } = await get<{ deciders: Decider[] }>("/v1/deciders");
    if (page.left()) return;
    if (!deciders.length) {
      page.main.append(h("p", {}, "No event type is registered yet."));
      return;
    }
    page.main.append(table("Deciders and their event types", ["Decider", "Event type", "Version", "Description"],
      deciders.flatMap((d) => d.events.map((e, i) => [
        i === 0 ? link(`/log?decider=${encodeURIComponent(d.decider)}`, d.decider) : "",
        link(`/log?decider=${encodeURIComponent(d.decider)}&type=${encodeURIComponent(e.event)}`, e.event),
        String(e.event_version), e.description || h("span", { class: "muted" }, "—"),
      ])), [2]));
  } catch (err) {
    page.main.append(failed(err));
  }
}
