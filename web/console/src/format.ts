// How numbers, times and URLs read on screen.

const integer = new Intl.NumberFormat("en-US");

export function num(n: number | null | undefined): string {
  return n === null || n === undefined ? "—" : integer.format(n);
}

const zoneName = new Intl.DateTimeFormat("en-US", { timeZoneName: "short" });

/** "2026-12-01 18:14:30 UTC": in the browser's time zone, which it names. */
export function when(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  const p = (n: number) => String(n).padStart(2, "0");
  const zone = zoneName.formatToParts(d).find((x) => x.type === "timeZoneName")?.value;
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}` +
    (zone ? ` ${zone}` : "");
}

// The database's clock less the browser's, from GET /v1/status: the times
// shown as "ago" are the database's, and a browser's clock may be off.
let skew = 0;

/** Takes the server's time of an answer, to tell "ago" by its clock. */
export function serverTime(iso: string): void {
  const t = new Date(iso).getTime();
  if (!Number.isNaN(t)) skew = t - Date.now();
}

/** "12 s ago", "3 min ago", "in 40 s", by the server's clock. */
export function ago(iso: string | null | undefined, now = Date.now() + skew): string {
  if (!iso) return "—";
  const s = Math.round((now - new Date(iso).getTime()) / 1000);
  const abs = Math.abs(s);
  const text = abs < 90 ? `${abs} s` : abs < 5400 ? `${Math.round(abs / 60)} min` :
    abs < 172800 ? `${Math.round(abs / 3600)} h` : `${Math.round(abs / 86400)} d`;
  return s >= 0 ? `${text} ago` : `in ${text}`;
}

/**
 * A webhook URL fit to show: user name, password and query values are
 * replaced by "…" (they are where credentials hide). The view's secret is
 * never in the API's answer to a read, so the console never has it.
 */
export function safeURL(raw: string | null | undefined): string {
  if (!raw) return "—";
  let u: URL;
  try { u = new URL(raw); } catch { return "(an unparsable URL)"; }
  const cred = u.username || u.password ? "…@" : "";
  const query = [...u.searchParams.keys()].map((k) => `${k}=…`).join("&");
  // Long path segments are tokens too (Slack-style hook URLs): their start
  // is kept, to tell URLs apart.
  const path = u.pathname.split("/").map((seg) => seg.length > 16 ? seg.slice(0, 4) + "…" : seg).join("/");
  return `${u.protocol}//${cred}${u.host}${path}${query ? "?" + query : ""}`;
}

export function json(v: unknown): string {
  return JSON.stringify(v, null, 2);
}
