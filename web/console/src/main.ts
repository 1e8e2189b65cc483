// The console's entry: asks for a key when the API wants one, learns from
// GET /v1/status whether it may write, and draws the page the URL's
// fragment names (#/, #/log, #/stream/…, #/deciders, #/views/…).
import { ApiError, apiKey, get, setAPIKey, unauthorizedEvent } from "./api";
import { errorText, heading, Page } from "./app";
import { decidersPage } from "./deciders";
import { fill, h } from "./dom";
import { serverTime } from "./format";
import { logPage } from "./log";
import { overview } from "./overview";
import { partitionPage } from "./partition";
import { streamPage } from "./stream";
import { Status } from "./types";
import { viewPage } from "./view";

const main = document.getElementById("main")!;
const keyBox = document.getElementById("key")!;
let canWrite = false;
let leave: (() => void)[] = [];
let generation = 0;

type Render = (page: Page) => Promise<void>;

function route(path: string[]): Render | null {
  const [first, , third, , , extra] = path;
  if (path.length === 0) return overview;
  if (first === "log" && path.length === 1) return logPage;
  if (first === "deciders" && path.length === 1) return decidersPage;
  if (first === "stream" && path.length === 3) return streamPage;
  if (first === "views" && path.length === 2) return viewPage;
  if (first === "views" && third === "partitions" && path.length === 5 && extra === undefined) return partitionPage;
  return null;
}

function parseHash(): { path: string[]; query: URLSearchParams } {
  const raw = location.hash.replace(/^#\/?/, "");
  const [p, q = ""] = raw.split("?", 2);
  const path = p.split("/").filter(Boolean).map((s) => { try { return decodeURIComponent(s); } catch { return s; } });
  return { path, query: new URLSearchParams(q) };
}

function markNav(path: string[]): void {
  const section = path[0] === "stream" ? "log" : path[0] ?? "";
  for (const a of document.querySelectorAll<HTMLAnchorElement>("header nav a")) {
    if (a.dataset.section === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function show(): Promise<void> {
  for (const fn of leave) fn();
  leave = [];
  const mine = ++generation;
  const { path, query } = parseHash();
  markNav(path);
  main.replaceChildren();
  const page: Page = {
    path, query, main, canWrite,
    onLeave: (fn) => leave.push(fn),
    left: () => mine !== generation,
  };
  const render = route(path);
  if (!render) {
    heading(page, "Not found");
    main.append(h("p", {}, "The console has no such page. ", h("a", { href: "#/" }, "Go to the overview.")));
    return;
  }
  try {
    await render(page);
  } catch (err) {
    if (!page.left()) main.append(h("p", { class: "error", role: "alert" }, errorText(err)));
  }
}

/** Draws who the console acts as: read-only, or with a key it may forget. */
function drawKey(status: Status | null): void {
  const key = apiKey();
  fill(keyBox,
    status?.access === "read-only" ? h("span", { class: "pill warn", title: "Actions are hidden: the API refuses writes with this key." }, "read-only key") : null,
    key ? h("button", { type: "button", class: "link", onclick: () => { setAPIKey(null); location.reload(); } }, "Forget key") : null);
}

/** Asks for a key in place of the page; the key lives in sessionStorage only. */
function askKey(problem: string | null): void {
  for (const fn of leave) fn();
  leave = [];
  generation++;
  main.replaceChildren();
  const input = h("input", { id: "api-key", name: "key", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const form = h("form", { class: "key-form", "aria-labelledby": "key-h" },
    h("h1", { id: "key-h", tabindex: "-1" }, "API key"),
    h("p", {}, "This fstore requires an API key (FSTORE_API_KEYS). It is kept in this tab's session storage only, ",
      "and sent to this API alone."),
    problem ? h("p", { class: "error", role: "alert" }, problem) : null,
    h("div", { class: "field" }, h("label", { for: "api-key" }, "Key"), input),
    h("button", { type: "submit" }, "Use this key"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    setAPIKey(input.value.trim());
    void start();
  });
  main.append(form);
  input.focus();
}

async function start(): Promise<void> {
  // Read before the call: a 401 also reaches the unauthorized handler,
  // which forgets the key before this catch runs.
  const hadKey = apiKey() !== null;
  let status: Status;
  try {
    status = await get<Status>("/v1/status");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      setAPIKey(null);
      drawKey(null);
      askKey(hadKey ? "The API refused that key: " + err.message : null);
      return;
    }
    drawKey(null);
    main.replaceChildren(h("p", { class: "error", role: "alert" }, errorText(err)));
    return;
  }
  serverTime(status.time);
  canWrite = status.access === "read-write";
  document.body.dataset.access = status.access;
  drawKey(status);
  await show();
}

// The skip link focuses the page's content; its href would be a route.
document.getElementById("skip")!.addEventListener("click", (ev) => { ev.preventDefault(); main.focus(); });
window.addEventListener("hashchange", () => void show());
window.addEventListener(unauthorizedEvent, () => { setAPIKey(null); askKey("The API asked for a key again."); });
void start();
