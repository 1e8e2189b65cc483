// The shell every page renders into: a heading, a message line that reads
// problems aloud, and the cleanups a page registers (timers, live streams)
// that run when the operator moves on.
import { ApiError } from "./api";
import { Child, fill, h } from "./dom";

export interface Page {
  /** The route after "#": path segments, decoded, and the query. */
  path: string[];
  query: URLSearchParams;
  main: HTMLElement;
  /** May the key write? Actions are not drawn when it may not. */
  canWrite: boolean;
  /** Run fn when the page is left. */
  onLeave(fn: () => void): void;
  /** Has the operator left this page? Late answers are then dropped. */
  left(): boolean;
}

/** Draws a page's heading and focuses it, so keyboards and screen readers start there. */
export function heading(page: Page, text: Child, sub?: Child): HTMLHeadingElement {
  const h1 = h("h1", { tabindex: "-1" }, text);
  page.main.append(h1);
  if (sub) page.main.append(h("p", { class: "sub" }, sub));
  document.title = `${h1.textContent} · fstore console`;
  h1.focus({ preventScroll: true });
  return h1;
}

let flashTimer: number | undefined;

/** Shows what an action did, or the problem it met, in the status line. */
export function say(text: string, kind: "ok" | "error" = "ok"): void {
  const box = document.getElementById("flash")!;
  window.clearTimeout(flashTimer);
  box.className = `flash ${kind}`;
  fill(box, h("span", {}, text), h("button", { type: "button", class: "link", "aria-label": "Dismiss",
    onclick: () => { box.className = "flash"; box.replaceChildren(); } }, "×"));
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  if (kind === "ok") flashTimer = window.setTimeout(() => { box.className = "flash"; box.replaceChildren(); }, 8000);
}

export function errorText(err: unknown): string {
  return err instanceof ApiError ? err.message : err instanceof Error ? err.message : String(err);
}

/** A paragraph saying what went wrong, for a section that could not load. */
export function failed(err: unknown): HTMLElement {
  return h("p", { class: "error", role: "alert" }, errorText(err));
}

/** A definition list from pairs, skipping empty ones. */
export function facts(pairs: [string, Child][]): HTMLDListElement {
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== undefined).map(([k, v]) =>
    h("div", {}, h("dt", {}, k), h("dd", {}, v))));
}

/**
 * A table whose header row is given. Below 700 px each row becomes a card
 * of label: value lines (the CSS reads data-label), so no page scrolls
 * sideways on a phone.
 */
export function table(caption: string, head: string[], rows: Child[][], numeric: number[] = []): HTMLElement {
  return h("div", { class: "scroll", role: "region", "aria-label": caption, tabindex: "0" },
    h("table", {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, head.map((c, i) => h("th", { scope: "col", class: numeric.includes(i) ? "num" : "" }, c)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) =>
        h("td", { class: numeric.includes(i) ? "num" : "", "data-label": head[i] }, c)))))));
}

/**
 * Runs an action after an optional confirmation, with its button disabled
 * meanwhile; says what the API answered either way, then redraws.
 */
export async function act(button: HTMLButtonElement, confirmText: string | null, run: () => Promise<string>,
  after: () => void): Promise<void> {
  if (confirmText && !window.confirm(confirmText)) return;
  button.disabled = true;
  try {
    say(await run());
    after();
  } catch (err) {
    say(errorText(err), "error");
  } finally {
    button.disabled = false;
  }
}

/** A partition's failure in words: the status only when the error does not say it already. */
export function failure(status: number | null, error: string): string {
  return status && !error.includes(String(status)) ? `HTTP ${status}: ${error}` : error;
}
