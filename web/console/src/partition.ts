// One partition of a view: where it stands, the event it waits on, its
// push attempts, and the dead-letter actions: skip the next event (after a
// confirmation), retry now, replay from an offset, un-park the whole view.
import { get, post, seg } from "./api";
import { act, facts, failed, failure, heading, Page, table } from "./app";
import { fill, h, link } from "./dom";
import { ago, num, when } from "./format";
import { eventItem } from "./events";
import { Attempt, PartitionDetail } from "./types";

export async function partitionPage(page: Page): Promise<void> {
  const [, view, , decider, id] = page.path;
  const base = `/v1/views/${seg(view)}/partitions/${seg(decider)}/${seg(id)}`;
  heading(page, h("span", {}, "Partition ", h("code", {}, `${decider}/${id}`)),
    h("span", {}, "of view ", link(`/views/${encodeURIComponent(view)}`, view)));
  const about = h("section", { "aria-labelledby": "p-h" });
  const next = h("section", { "aria-labelledby": "next-h" });
  const actions = h("section", { "aria-labelledby": "act-h", class: "actions-box" });
  const attempts = h("section", { "aria-labelledby": "att-h" });
  page.main.append(h("div", { class: "cards" }, about, next));
  if (page.canWrite) page.main.append(actions);
  page.main.append(attempts);

  const draw = async () => {
    try {
      const [p, a] = await Promise.all([get<PartitionDetail>(base),
        get<{ attempts: Attempt[] }>(`${base}/attempts`, { limit: 50 })]);
      if (page.left()) return;
      drawAbout(about, p);
      // The next event opens on the first draw; later ones keep what the
      // user chose.
      const shown = next.querySelector("details");
      const open = shown === null || shown.open;
      fill(next, h("h2", { id: "next-h" }, "Next event"), p.next_event
        ? h("ol", { class: "events", "aria-label": "The event the partition waits on" }, eventItem(p.next_event))
        : h("p", { class: "good" }, "None: the partition is caught up."));
      if (open) next.querySelector("details")?.setAttribute("open", "");
      drawAttempts(attempts, a.attempts);
      if (page.canWrite) drawActions(actions, view, base, p, draw);
    } catch (err) {
      if (!page.left()) fill(about, h("h2", { id: "p-h" }, "Partition"), failed(err));
    }
  };
  await draw();
  // Follow the partition while it drains or retries; never while an
  // action's form is being filled in (a redraw would lose it).
  const timer = window.setInterval(() => {
    if (document.visibilityState === "visible" && !actions.contains(document.activeElement)) void draw();
  }, 5000);
  page.onLeave(() => window.clearInterval(timer));
}

function drawAbout(el: HTMLElement, p: PartitionDetail): void {
  const leased = p.leased_until && new Date(p.leased_until).getTime() > Date.now();
  fill(el, h("h2", { id: "p-h" }, "State"), facts([
    ["State", p.parked ? h("span", { class: "pill bad" }, "parked: waits for an operator")
      : leased ? h("span", { class: "pill" }, `leased until ${when(p.leased_until)}`)
      : p.events_pending ? `behind by ${num(p.events_pending)} event(s)` : h("span", { class: "good" }, "caught up")],
    ["Acked up to", `#${num(p.acked_offset)}`],
    ["Newest seen", `#${num(p.head_offset)}`],
    ["Failed attempts", num(p.attempts)],
    ["Next try", p.retry_at && !p.parked ? ago(p.retry_at) : undefined],
    ["Last error", p.last_error ? h("span", { class: "err" }, failure(p.last_status, p.last_error)) : "none"],
    ["Last failed", p.last_error_at ? `${when(p.last_error_at)} (${ago(p.last_error_at)})` : undefined],
  ]));
}

function drawAttempts(el: HTMLElement, list: Attempt[]): void {
  fill(el, h("h2", { id: "att-h" }, "Attempts"), list.length ? table("Push attempts, newest first",
    ["When", "Kind", "Offset", "Status", "Took", "Error", "Response"],
    list.map((a) => {
      // Only a push has an answer and a duration; a nack or a skip says why.
      const pushed = (a.kind ?? "push") === "push";
      return [
        h("time", { datetime: a.at, title: when(a.at) }, ago(a.at)), a.kind ?? "push",
        a.offset === null ? "—" : `#${a.offset}`,
        !pushed ? "—" : a.status === null ? h("span", { class: "muted" }, "no answer")
          : h("span", { class: a.status < 300 ? "good" : "bad" }, String(a.status)),
        pushed ? `${a.duration_ms.toFixed(0)} ms` : "—",
        a.error ? h("span", { class: a.kind === "skip" ? "muted" : "err" }, a.error) : "—",
        a.response ? h("pre", { class: "excerpt", tabindex: "0" }, a.response) : "—",
      ];
    }), [2, 3, 4]) : h("p", { class: "muted" }, "No attempt recorded."));
}

function drawActions(el: HTMLElement, view: string, base: string, p: PartitionDetail, redraw: () => Promise<void>): void {
  const after = () => void redraw();
  const skip = h("button", { type: "button", class: "danger", disabled: !p.next_event }, "Skip the next event");
  skip.addEventListener("click", () => {
    const e = p.next_event;
    if (!e) return;
    void act(skip, `Skip event #${e.offset} (${e.event}) of ${p.decider}/${p.decider_id} without delivering it? ` +
      "It is settled for this view for good (the skip is recorded as an attempt).",
    async () => { await post(`${base}/skip`, { offset: e.offset }); return `Event #${e.offset} skipped.`; }, after);
  });
  const retry = h("button", { type: "button", disabled: !p.parked && !p.attempts }, "Retry now");
  retry.addEventListener("click", () => void act(retry, null,
    async () => { await post(`${base}/retry`); return `${p.decider}/${p.decider_id} will be delivered again now.`; }, after));
  const unparkAll = h("button", { type: "button", class: "secondary" }, "Un-park all of this view");
  unparkAll.addEventListener("click", () => void act(unparkAll, `Deliver again the head of every parked partition of ${view}?`,
    async () => `${num((await post<{ retried: number }>(`/v1/views/${seg(view)}/retry`)).retried)} partition(s) un-parked.`, after));

  const input = h("input", { id: "replay-after", type: "number", min: "0", max: String(p.acked_offset), step: "1",
    value: String(Math.max(0, p.acked_offset - 1)), required: true, inputmode: "numeric" });
  const replayButton = h("button", { type: "submit" }, "Replay");
  const replay = h("form", { class: "inline", "aria-label": "Replay from an offset" },
    h("label", { for: "replay-after" }, "Deliver again the events after offset"), input, replayButton);
  replay.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const n = Number(input.value);
    void act(replayButton, `Deliver again every event of ${p.decider}/${p.decider_id} after offset ${n}?`,
      async () => { await post(`${base}/replay`, { after: n }); return `Replaying ${p.decider}/${p.decider_id} after #${n}.`; }, after);
  });
  fill(el, h("h2", { id: "act-h" }, "Actions"), h("div", { class: "actions" }, retry, skip, unparkAll), replay);
}
