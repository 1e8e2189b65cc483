// The console's only way out: fetch to this origin's /v1 routes, with the
// key kept in sessionStorage (gone when the tab closes, never in
// localStorage or a cookie). Every non-2xx answer becomes an ApiError that
// carries the problem+json's own words.

export interface FieldError { field: string; message: string }
export interface Problem {
  type?: string; title?: string; status?: number; detail?: string; errors?: FieldError[];
}

export class ApiError extends Error {
  constructor(readonly status: number, readonly problem: Problem) {
    super(problemMessage(problem, status));
  }
}

/** The message a problem carries: its detail, then each field's error. */
export function problemMessage(p: Problem, status: number): string {
  const head = p.detail || p.title || `the API answered ${status}`;
  const fields = (p.errors ?? []).map((e) => `${e.field}: ${e.message}`);
  return fields.length ? `${head} (${fields.join("; ")})` : head;
}

const keyItem = "fstore.console.key";

export function apiKey(): string | null { return sessionStorage.getItem(keyItem); }

export function setAPIKey(key: string | null): void {
  if (key) sessionStorage.setItem(keyItem, key);
  else sessionStorage.removeItem(keyItem);
}

/** Fired on window when the API answers 401: the console asks for a key. */
export const unauthorizedEvent = "fstore:unauthorized";

export type Query = Record<string, string | number | string[] | undefined | null>;

/** path with the query's set values encoded (arrays repeat the name). */
export function withQuery(path: string, q: Query = {}): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) {
    if (v === undefined || v === null || v === "") continue;
    for (const one of Array.isArray(v) ? v : [v]) p.append(k, String(one));
  }
  const s = p.toString();
  return s ? `${path}?${s}` : path;
}

export function seg(s: string): string { return encodeURIComponent(s); }

export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  const key = apiKey();
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let res: Response;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, { detail: "the API does not answer (is fstore-api running?)" });
  }
  if (res.status === 401) window.dispatchEvent(new Event(unauthorizedEvent));
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let json: unknown = undefined;
  try { json = text ? JSON.parse(text) : undefined; } catch { /* not JSON: shown below */ }
  if (!res.ok) throw new ApiError(res.status, (json as Problem) ?? { detail: text.slice(0, 200) });
  return json as T;
}

export const get = <T>(path: string, q?: Query) => call<T>("GET", withQuery(path, q));
export const post = <T>(path: string, body?: unknown) => call<T>("POST", path, body ?? {});
