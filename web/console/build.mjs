// Builds the console into the directory given (dist, or a scratch one for
// make console-check): one script and one stylesheet, minified, beside
// index.html. esbuild is deterministic, so the same sources and tool
// versions give the same bytes, and a stale dist/ shows as a difference.
//   node build.mjs dist
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";

const out = process.argv[2];
if (!out) throw new Error("usage: node build.mjs OUTDIR");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const common = { bundle: true, minify: true, legalComments: "none", logLevel: "warning", charset: "utf8" };
await build({ ...common, entryPoints: ["src/main.ts"], outfile: join(out, "console.js"),
  format: "iife", target: ["es2022"] });
await build({ ...common, entryPoints: ["src/console.css"], outfile: join(out, "console.css") });
copyFileSync("src/index.html", join(out, "index.html"));
copyFileSync("src/favicon.svg", join(out, "favicon.svg"));

// The whole console stays small: it is loaded on every visit.
const limit = 200 * 1024;
const total = readdirSync(out).reduce((n, f) => n + statSync(join(out, f)).size, 0);
if (total > limit) throw new Error(`the console is ${total} bytes, over its ${limit}-byte budget`);
console.log(`console: ${total} bytes in ${out}/ (budget ${limit})`);
