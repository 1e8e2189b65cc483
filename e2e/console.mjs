// Walks the operator console (/console) in headless Chromium against a real
// API and dispatcher (scripts/e2e.sh starts both, with FSTORE_API_KEYS set)
// and a receiver here that fails until told otherwise:
//   the key prompt; the overview lists the views; the log's live tail shows
//   an event appended during the test; the parked partition shows with its
//   attempts; skip and retry work and the partition drains; a read-only key
//   sees no actions; no console errors; no request leaves the API; axe-core
//   finds no serious or critical violation on any page; keyboard focus is
//   visible. Screenshots at 1280×800 and 390×844 go to docs/.
//   API=http://127.0.0.1:8080 RW_KEY=… RO_KEY=… RECEIVER_PORT=… node console.mjs
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const api = process.env.API ?? "http://127.0.0.1:8080";
const rwKey = process.env.RW_KEY, roKey = process.env.RO_KEY;
const receiverPort = Number(process.env.RECEIVER_PORT);
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const sizes = { desktop: { width: 1280, height: 800 }, mobile: { width: 390, height: 844 } };
const view = "orders-hook";

// The receiver: answers 500 with a short body until healthy.
let healthy = false;
const received = [];
const receiver = createServer((req, res) => {
  let body = "";
  req.on("data", (c) => { body += c; });
  req.on("end", () => {
    if (!healthy) { res.writeHead(500, { "content-type": "text/plain" }); res.end("receiver down for maintenance"); return; }
    received.push(JSON.parse(body));
    res.writeHead(204); res.end();
  });
});
await new Promise((ok) => receiver.listen(receiverPort, "127.0.0.1", ok));

async function call(method, path, body, key = rwKey) {
  const res = await fetch(api + path, { method, headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

async function until(what, cond, ms = 60000) {
  for (const deadline = Date.now() + ms; Date.now() < deadline; await new Promise((r) => setTimeout(r, 250))) {
    const v = await cond().catch(() => false); // a 404 until the view discovers a stream
    if (v) return v;
  }
  throw new Error(`timed out waiting for ${what}`);
}

let previous = {};
async function append(deciderId, event, data, tags) {
  const body = { event, event_id: crypto.randomUUID(), decider: "order", decider_id: deciderId,
    data, command_id: crypto.randomUUID(), previous_id: previous[deciderId] ?? null };
  Object.assign(body, { metadata: { source: "e2e" }, tags });
  const e = await call("POST", "/v1/events", body);
  previous[deciderId] = e.event_id;
  return e;
}

// The store: two event types, a pushed view whose receiver fails, a polled view.
for (const event of ["order_placed", "order_shipped"]) await call("POST", "/v1/deciders/order/events", { event });
await call("PUT", `/v1/views/${view}`, { edge_function_url: `http://127.0.0.1:${receiverPort}/hooks/orders?token=hunter2` });
await call("PUT", "/v1/views/orders-report", {});
await append("order-1042", "order_placed", { total: 42 }, ["region:eu", "channel:web"]);
await append("order-1042", "order_shipped", { carrier: "ups" }, ["region:eu"]);
await append("order-1043", "order_placed", { total: 7 }, ["region:us"]);
const partitionPath = `/v1/views/${view}/partitions/order/order-1042`;
await until("order-1042 to be parked", async () => (await call("GET", partitionPath)).parked);
console.log("the failing receiver parked order-1042");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const problems = [];
let failed = false;

async function newPage(size) {
  const context = await browser.newContext({ viewport: sizes[size] });
  const page = await context.newPage();
  page.on("request", (r) => { if (!r.url().startsWith(api + "/")) problems.push(`fetched from elsewhere: ${r.url()}`); });
  page.on("console", (m) => {
    // Before a key is given, the first call's 401 is how the console learns
    // it must ask for one; Chromium logs every 4xx answer as an error.
    if (m.type() !== "error" || (page.asking && /status of 401/.test(m.text()))) return;
    problems.push(`console error: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("dialog", (d) => d.accept());
  return page;
}

async function signIn(page, key, { wrongFirst = false } = {}) {
  page.asking = true;
  await page.goto(`${api}/console/`);
  if (wrongFirst) {
    // A key the API refuses: the prompt comes back and says so.
    await page.getByLabel("Key", { exact: true }).fill("not-a-key");
    await page.getByRole("button", { name: "Use this key" }).click();
    await page.getByRole("alert").getByText(/refused that key/).waitFor({ timeout: 15000 });
    await axe(page, "key prompt");
    console.log("key prompt: a refused key is said so");
  }
  await page.getByLabel("Key", { exact: true }).fill(key);
  page.asking = false;
  await page.getByRole("button", { name: "Use this key" }).click();
}

async function axe(page, name) {
  await page.evaluate(axeSource); // runs in the page, not as a script tag: the page's CSP stays as served
  const result = await page.evaluate(() => globalThis.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  for (const v of bad) problems.push(`axe on ${name}: ${v.id} (${v.impact}): ${v.help}; ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  console.log(`axe on ${name}: ${bad.length} serious or critical violation(s), ${result.violations.length - bad.length} minor`);
}

async function go(page, route, ready) {
  await page.goto(`${api}/console/#${route}`);
  await ready.waitFor({ timeout: 30000 });
}

try {
  // The key prompt, and the overview.
  const page = await newPage("desktop");
  await signIn(page, rwKey, { wrongFirst: true });
  const views = page.getByRole("region", { name: "Views and their lag" });
  await views.getByRole("link", { name: view }).waitFor({ timeout: 30000 });
  await views.getByRole("link", { name: "orders-report" }).waitFor();
  console.log("overview: lists both views");
  // The dispatcher scripts/e2e.sh started beats: it is shown healthy.
  await page.getByText("1 of 1 healthy").waitFor({ timeout: 30000 });
  console.log("overview: the dispatcher is healthy");
  const stored = await page.evaluate(() => ({ session: Object.keys(sessionStorage), local: Object.keys(localStorage) }));
  if (stored.local.length || !stored.session.length) problems.push(`the key must live in sessionStorage only: ${JSON.stringify(stored)}`);
  if ((await page.content()).includes("hunter2")) problems.push("the page shows a URL's credentials");
  // Keyboard: focus is drawn where Tab lands, and the skip link leads to the content.
  await page.keyboard.press("Tab");
  const focus = await page.evaluate(() => {
    const s = getComputedStyle(document.activeElement);
    return { text: document.activeElement.textContent, outline: s.outlineStyle, width: s.outlineWidth };
  });
  if (focus.outline === "none" || focus.width === "0px") problems.push(`keyboard focus is not visible: ${JSON.stringify(focus)}`);
  await page.focus("#skip");
  await page.keyboard.press("Enter");
  if (await page.evaluate(() => document.activeElement?.id) !== "main") problems.push("the skip link does not reach the content");
  await axe(page, "overview");
  await page.getByText(/Appends.*≈/).or(page.getByText("≈ 0/s")).first().waitFor({ timeout: 30000 }).catch(() => {});
  await views.locator("svg.spark").first().waitFor({ timeout: 30000 });
  await page.screenshot({ path: "../docs/console-overview.png" });

  // The log: an event appended now shows in the live tail.
  await go(page, "/log", page.getByRole("list", { name: "Events, newest first" }).locator("li").first());
  await page.getByText(/^Live:/).waitFor({ timeout: 30000 });
  const fresh = await append("order-1044", "order_placed", { total: 99 }, ["region:eu"]);
  const row = page.locator(`li[data-offset="${fresh.offset}"]`);
  await row.waitFor({ timeout: 30000 });
  await row.locator("summary").click();
  await row.getByText('"source": "e2e"').waitFor();
  console.log(`log: the live tail showed event #${fresh.offset} appended during the test`);
  await axe(page, "log");
  await go(page, "/log?tag=region:us", page.locator("li[data-offset]").first());
  if (await page.locator("li[data-offset]").count() !== 1) problems.push("the tag filter should leave order-1043 alone");
  await go(page, "/log?type=order_shipped", page.locator("li[data-offset]").first());
  if (await page.locator("li[data-offset]").count() !== 1) problems.push("the type filter should leave order-1042's shipment alone");
  await go(page, "/log?decider=order&decider_id=order-1043", page.locator("li[data-offset]").first());
  if (await page.locator("li[data-offset]").count() !== 1) problems.push("the decider_id filter should show order-1043's one event");
  await go(page, "/stream/order/order-1042", page.getByText("final", { exact: false }).first());
  await axe(page, "stream");
  await go(page, "/deciders", page.getByRole("link", { name: "order_shipped" }));
  await axe(page, "deciders");

  // The view: the parked partition is listed.
  await go(page, `/views/${view}?state=parked`, page.getByRole("link", { name: /order\/?order-1042/ }));
  if ((await page.content()).includes("hunter2")) problems.push("the view page shows a URL's credentials");
  await axe(page, "view");
  await page.screenshot({ path: "../docs/console-view.png", fullPage: true });
  console.log("view: the parked partition is listed");

  // The partition: its attempts, then skip, then retry: it drains.
  await page.getByRole("link", { name: /order\/?order-1042/ }).click();
  const attempts = page.getByRole("region", { name: "Push attempts, newest first" });
  await attempts.getByText("500").first().waitFor({ timeout: 30000 });
  await page.getByText("receiver down for maintenance").first().waitFor();
  await axe(page, "partition");
  await page.screenshot({ path: "../docs/console-partition.png", fullPage: true });
  console.log(`partition: parked, ${await attempts.locator("tbody tr").count()} attempt(s) shown with status and response`);
  const first = (await call("GET", partitionPath)).next_event.offset;
  await page.getByRole("button", { name: "Skip the next event" }).click();
  await page.getByText(`Event #${first} skipped.`).waitFor({ timeout: 15000 });
  await until("the skip to settle the head", async () => (await call("GET", partitionPath)).acked_offset >= first);
  console.log(`partition: skipped #${first}`);
  // Retry one parked partition from its page: it drains. It must be parked
  // before the receiver recovers, or a backoff's retry would drain it first.
  await until("order-1043 to be parked", async () => (await call("GET", `/v1/views/${view}/partitions/order/order-1043`)).parked);
  healthy = true;
  await go(page, `/views/${view}/partitions/order/order-1043`, page.getByRole("button", { name: "Retry now" }));
  await page.getByRole("button", { name: "Retry now" }).click();
  await page.getByText("will be delivered again now").waitFor({ timeout: 15000 });
  await page.getByText("None: the partition is caught up.").waitFor({ timeout: 60000 });
  console.log("partition: retried order-1043, and it drained");
  // Un-park the rest from the view's page: everything drains.
  await go(page, `/views/${view}`, page.getByRole("button", { name: /Un-park all/ }));
  await until("the others to park", async () => (await call("GET", `/v1/views/${view}`)).status.partitions_parked > 0);
  await page.reload();
  await page.getByRole("button", { name: /Un-park all/ }).click();
  await page.getByText(/partition\(s\) un-parked/).waitFor({ timeout: 15000 });
  await until("the view to drain", async () => (await call("GET", `/v1/views/${view}`)).status.events_pending === 0);
  console.log(`view: un-parked all, drained; the receiver took ${received.length} event(s), #${first} not among them`);
  if (received.some((e) => e.offset === first)) problems.push("the skipped event was delivered");
  // Replay order-1043 from before its first event: it is delivered again.
  const before = received.length;
  await go(page, `/views/${view}/partitions/order/order-1043`, page.getByRole("button", { name: "Replay" }));
  await page.getByLabel(/Deliver again the events after offset/).fill("0");
  await page.getByRole("button", { name: "Replay" }).click();
  await until("the replayed event to be pushed again", async () =>
    received.slice(before).some((e) => e.decider_id === "order-1043"));
  console.log("partition: replayed order-1043 from offset 0, and it was pushed again");

  // The same pages at 390×844.
  const phone = await newPage("mobile");
  await signIn(phone, rwKey);
  await phone.getByRole("region", { name: "Views and their lag" }).getByRole("link", { name: view }).waitFor({ timeout: 30000 });
  await phone.screenshot({ path: "../docs/console-overview-mobile.png", fullPage: true });
  await go(phone, `/views/${view}`, phone.getByRole("link", { name: /order\/?order-1042/ }));
  await phone.screenshot({ path: "../docs/console-view-mobile.png", fullPage: true });
  await go(phone, `/views/${view}/partitions/order/order-1042`, phone.getByRole("region", { name: "Push attempts, newest first" }));
  await axe(phone, "partition at 390×844");
  await phone.screenshot({ path: "../docs/console-partition-mobile.png", fullPage: true });
  const wide = await phone.evaluate(() => document.documentElement.scrollWidth);
  if (wide > 390) problems.push(`at 390 px wide the page scrolls sideways (${wide} px)`);

  // A read-only key: every page, and not one action.
  const ro = await newPage("desktop");
  await signIn(ro, roKey);
  await ro.getByText("read-only key").waitFor({ timeout: 30000 });
  for (const [route, ready] of [["/", "Views and their lag"], [`/views/${view}`, "Partitions (all)"],
    [`/views/${view}/partitions/order/order-1042`, "Push attempts, newest first"]]) {
    await go(ro, route, ro.getByRole("region", { name: ready }));
    const actions = await ro.locator("main button").allInnerTexts();
    if (actions.length) problems.push(`a read-only key sees actions on ${route}: ${actions.join(", ")}`);
    await axe(ro, `${route} with a read-only key`);
  }
  console.log("read-only key: no action on the overview, the view or the partition");
} catch (err) {
  failed = true;
  console.error(err);
  // What each page showed when the walk stopped, for whoever reads the log.
  for (const [i, p] of browser.contexts().flatMap((c) => c.pages()).entries()) {
    await p.screenshot({ path: `/tmp/fstore-e2e-console-${i}.png`, fullPage: true }).catch(() => {});
    console.error(`page ${i} at ${p.url()}: screenshot /tmp/fstore-e2e-console-${i}.png`);
  }
} finally {
  await browser.close();
  receiver.close();
}
for (const p of problems) console.error(p);
if (failed || problems.length) process.exit(1);
console.log("console: every check passed; screenshots in docs/console-*.png");
