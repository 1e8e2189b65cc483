// Loads /docs in headless Chromium, checks that Swagger UI lists the API's
// operations, runs one "Try it out" call, and saves a screenshot.
//   API=http://127.0.0.1:8080 node docs.mjs
import { chromium } from "playwright-core";

const api = process.env.API ?? "http://127.0.0.1:8080";
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1600 } });
  const offline = [];
  page.on("request", (r) => { if (!r.url().startsWith(api)) offline.push(r.url()); });
  await page.goto(`${api}/docs/`);
  await page.waitForSelector(".opblock", { timeout: 30000 });
  const doc = await (await fetch(`${api}/openapi.json`)).json();
  const expected = Object.values(doc.paths).reduce((n, item) => n + Object.keys(item).length, 0);
  const operations = await page.locator(".opblock").count();
  if (operations !== expected) throw new Error(`Swagger UI lists ${operations} operations, the document has ${expected}`);
  console.log(`Swagger UI lists all ${operations} operations of the document`);

  // Try it out: GET /healthz.
  const op = page.locator("#operations-operations-healthz");
  await op.locator(".opblock-summary").click();
  await op.getByRole("button", { name: "Try it out" }).click();
  await op.getByRole("button", { name: "Execute" }).click();
  const status = op.locator(".live-responses-table .response .response-col_status").first();
  await status.waitFor({ timeout: 15000 });
  const code = (await status.innerText()).trim();
  if (code !== "200") throw new Error(`Try it out answered ${code}`);
  console.log(`Try it out: GET /healthz answered ${code}`);
  if (offline.length) throw new Error(`the docs fetched from elsewhere: ${offline.join(", ")}`);
  await page.screenshot({ path: "../docs/swagger-ui.png", fullPage: false });
  console.log("screenshot: docs/swagger-ui.png");
} finally {
  await browser.close();
}
