// A small lag chart: one SVG line over the samples, described in words for
// screen readers (the figure itself is decoration to them).
import { h, svg } from "./dom";
import { num } from "./format";

export function sparkline(values: number[], what: string): HTMLElement {
  const w = 120, hgt = 28;
  if (values.length < 2) return h("span", { class: "muted" }, "sampling…");
  const max = Math.max(...values, 1);
  const step = w / (values.length - 1);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(hgt - 2 - (v / max) * (hgt - 4)).toFixed(1)}`).join(" ");
  const label = `${what}: ${num(values[0])} to ${num(values[values.length - 1])} events over the last ${values.length} samples, peak ${num(max)}`;
  const chart = svg("svg", { width: w, height: hgt, viewBox: `0 0 ${w} ${hgt}`, "aria-hidden": "true", class: "spark" },
    svg("polygon", { points: `0,${hgt} ${points} ${w},${hgt}`, class: "area" }),
    svg("polyline", { points, fill: "none", "stroke-width": 1.5 }));
  return h("span", { role: "img", "aria-label": label, title: label }, chart);
}
