// A page whose EventSource follows the log: events appended meanwhile arrive
// in order; the API is then restarted (SIGTERM, start again), and the
// browser reconnects by itself with Last-Event-ID and goes on with no gap
// and no duplicate. Saves a screenshot.
//   API_BIN=bin/fstore-api DATABASE_URL=... ADDR=127.0.0.1:PORT node live.mjs
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { chromium } from "playwright-core";

const addr = process.env.ADDR;
const api = `http://${addr}`;
const writer = "e2e-writer-key";
const reader = "e2e-reader-key"; // read-only: the browser's

function startAPI() {
  const proc = spawn(process.env.API_BIN ?? "../bin/fstore-api", [], {
    env: { ...process.env, FSTORE_ADDR: addr, FSTORE_API_KEYS: `${writer},ro:${reader}`, FSTORE_LOG_LEVEL: "warn" },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const exited = new Promise((resolve) => proc.on("exit", resolve));
  return { proc, exited };
}

async function waitReady() {
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`${api}/readyz`)).ok) return;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("the API did not become ready");
}

async function call(method, path, body) {
  const r = await fetch(api + path, {
    method, body: JSON.stringify(body),
    headers: { authorization: `Bearer ${writer}`, "content-type": "application/json" },
  });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

let previous = null;
async function appendTick(n) {
  const e = await call("POST", "/v1/events", {
    event: "ticked", event_id: randomUUID(), decider: "e2e-clock", decider_id: "clock-1",
    data: { n }, command_id: randomUUID(), previous_id: previous,
  });
  previous = e.event_id;
  return e.offset;
}

async function waitFor(page, n, what) {
  await page.waitForFunction((k) => window.received.length >= k, n, { timeout: 60000 })
    .catch(() => { throw new Error(`the page did not get ${what}`); });
}

// The page: served from the API's origin (intercepted by the browser, so the
// API serves nothing for tests), following the log with the read-only key.
const html = `<!doctype html><meta charset="utf-8"><title>fstore: following the log</title>
<style>body{font:14px system-ui;margin:24px}li{font-family:monospace}.err{color:#a33}</style>
<h1>Following <code>e2e-clock</code> live</h1><p id="state">connecting…</p><ol id="log"></ol>
<script>
  window.received = []; window.opens = 0; window.finals = [];
  const log = new EventSource("/v1/events?decider=e2e-clock&access_token=${reader}");
  log.onopen = () => { window.opens++; document.getElementById("state").textContent = "open (" + window.opens + ")"; };
  log.onmessage = (m) => {
    const e = JSON.parse(m.data);
    window.received.push({ id: m.lastEventId, offset: e.offset, n: e.data.n });
    const li = document.createElement("li");
    li.textContent = "id " + m.lastEventId + ": " + e.event + " n=" + e.data.n + " at " + e.created_at;
    document.getElementById("log").append(li);
  };
  log.addEventListener("error", (m) => {
    if (!m.data) return; // the connection dropped: EventSource retries by itself
    const f = JSON.parse(m.data);
    window.finals.push(f.type);
    const li = document.createElement("li");
    li.className = "err"; li.textContent = f.title + ": " + f.detail;
    document.getElementById("log").append(li);
  });
</script>`;

let server = startAPI();
await waitReady();
await call("POST", "/v1/deciders/e2e-clock/events", { event: "ticked" });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 520 } });
  // The headers Chromium really sent (EventSource adds Last-Event-ID below
  // what Playwright's request events show).
  const lastEventIDs = [];
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  cdp.on("Network.requestWillBeSentExtraInfo", (e) => {
    const h = Object.fromEntries(Object.entries(e.headers).map(([k, v]) => [k.toLowerCase(), v]));
    if (h.accept === "text/event-stream") lastEventIDs.push(h["last-event-id"] ?? null);
  });
  await page.route(`${api}/e2e/live.html`, (route) => route.fulfill({ contentType: "text/html", body: html }));
  await page.goto(`${api}/e2e/live.html`);
  await page.waitForFunction(() => window.opens === 1, null, { timeout: 30000 });

  const offsets = [];
  for (let n = 1; n <= 10; n++) offsets.push(await appendTick(n));
  await waitFor(page, 10, "the first 10 events");
  console.log("live: 10 events appended while the page followed, all arrived");

  // Restart: SIGTERM ends the follow with a final frame; the browser
  // retries after the retry hint, while the API is down and after.
  server.proc.kill("SIGTERM");
  await server.exited;
  server = startAPI();
  await waitReady();
  for (let n = 11; n <= 15; n++) offsets.push(await appendTick(n)); // likely before the reconnect
  await page.waitForFunction(() => window.opens >= 2, null, { timeout: 60000 });
  for (let n = 16; n <= 20; n++) offsets.push(await appendTick(n)); // live again
  await waitFor(page, 20, "all 20 events after the restart");

  const received = await page.evaluate(() => window.received);
  const finals = await page.evaluate(() => window.finals);
  const got = received.map((e) => e.offset);
  if (JSON.stringify(got) !== JSON.stringify(offsets)) {
    throw new Error(`a gap or a duplicate: appended ${offsets}, the page got ${got}`);
  }
  if (received.some((e) => String(e.offset) !== e.id)) throw new Error("an SSE id is not its event's offset");
  if (!finals.includes("urn:fstore:problem:shutting-down")) throw new Error(`no shutting-down frame: ${finals}`);
  const resumedFrom = lastEventIDs.filter((h) => h !== null);
  if (!resumedFrom.includes(String(offsets[9]))) {
    throw new Error(`the browser did not resume with Last-Event-ID ${offsets[9]}: it sent ${lastEventIDs}`);
  }
  console.log(`live: restarted; the browser reconnected with Last-Event-ID ${offsets[9]}, ` +
    `got events 11 to 20 in order, no gap, no duplicate`);
  await page.screenshot({ path: "../docs/live-follow.png", fullPage: false });
  console.log("screenshot: docs/live-follow.png");
} finally {
  await browser.close();
  server.proc.kill("SIGTERM");
  await server.exited;
}
