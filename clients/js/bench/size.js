// The client's size as a page would load it: bundled and minified by esbuild,
// then gzipped (level 9) and brotli-compressed. Prints the figures; with
// --check, fails when the gzipped size passes the goal (8 KiB).
import { build } from "esbuild";
import { gzipSync, brotliCompressSync, constants } from "node:zlib";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const GOAL = 8 * 1024;
const entry = fileURLToPath(new URL("../src/index.js", import.meta.url));
const src = readFileSync(entry);
const out = await build({ entryPoints: [entry], bundle: true, minify: true, format: "esm", target: "es2020", write: false });
const min = out.outputFiles[0].contents;
const gz = gzipSync(min, { level: 9 }).length;
const br = brotliCompressSync(min, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
const kib = (n) => (n / 1024).toFixed(2) + " KiB";
console.log(`transports-client size (esbuild ${(await import("esbuild")).version}, es2020 ESM bundle)`);
console.log(`  source          ${String(src.length).padStart(7)} B  ${kib(src.length)}`);
console.log(`  minified        ${String(min.length).padStart(7)} B  ${kib(min.length)}`);
console.log(`  minified+gzip   ${String(gz).padStart(7)} B  ${kib(gz)}   (goal: under ${kib(GOAL)})`);
console.log(`  minified+brotli ${String(br).padStart(7)} B  ${kib(br)}`);
if (process.argv.includes("--check") && gz >= GOAL) {
  console.error(`size: ${gz} B gzipped is over the goal of ${GOAL} B`);
  process.exit(1);
}
