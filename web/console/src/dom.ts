// A tiny element builder: text always goes in as text (never as HTML), so
// nothing an event or a receiver's answer holds can inject markup.

export type Child = Node | string | number | null | undefined | false | Child[];
type AttrValue = string | number | boolean | null | undefined | ((ev: Event) => void);

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K, attrs: Record<string, AttrValue> = {}, ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (typeof value === "function") el.addEventListener(name.replace(/^on/, ""), value);
    else if (value === true) el.setAttribute(name, "");
    else if (value !== false && value !== null && value !== undefined) el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

export function append(parent: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(parent, c);
    else parent.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const svgNS = "http://www.w3.org/2000/svg";

export function svg(tag: string, attrs: Record<string, string | number>, ...children: Node[]): SVGElement {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.appendChild(c);
  return el;
}

/** A link to a console route: routes live in the URL's fragment. */
export function link(route: string, ...children: Child[]): HTMLAnchorElement {
  return h("a", { href: "#" + route }, ...children);
}

/**
 * Replaces the content of el. Pages redraw every few seconds: when focus was
 * inside el, it moves to the new element with the same link target (or at
 * the same place among el's focusable elements), so a keyboard user is not
 * thrown back to the top of the page by a refresh.
 */
export function fill(el: Element, ...children: Child[]): void {
  const focused = document.activeElement;
  const had = focused instanceof HTMLElement && focused !== el && el.contains(focused)
    ? { href: focused.getAttribute("href"), index: focusables(el).indexOf(focused) } : null;
  el.replaceChildren();
  append(el, children);
  if (!had) return;
  const same = had.href !== null ? el.querySelector<HTMLElement>(`[href="${CSS.escape(had.href)}"]`) : null;
  (same ?? focusables(el)[had.index])?.focus({ preventScroll: true });
}

function focusables(el: Element): HTMLElement[] {
  return Array.from(el.querySelectorAll<HTMLElement>("a[href], button, input, select, textarea, summary, [tabindex]"));
}
