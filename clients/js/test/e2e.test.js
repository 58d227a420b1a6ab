// End to end: `transportsd --demo` and its page in Debian's Chromium, driven by
// playwright-core. alice and bob in two browser contexts (two windows: no
// storage shared). Screenshots of each step go to TP_E2E_ARTIFACTS (make test:
// build/e2e/). Needs TRANSPORTSD (the daemon's path) and Chromium
// (CHROMIUM, default /usr/bin/chromium): a missing one fails the test.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const DAEMON = process.env.TRANSPORTSD;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ART = process.env.TP_E2E_ARTIFACTS || fileURLToPath(new URL("../../../build/e2e/", import.meta.url));

let daemon, port, cwd, browser, alice, bob, alicePage, bobPage;
const logs = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
    s.on("error", reject);
  });
}

// Starts the daemon on the fixed port (a restart must come back where the
// pages reconnect) in the same directory (the SQLite file survives).
function startDaemon() {
  return new Promise((resolve, reject) => {
    const p = spawn(DAEMON, ["--demo", "--listen", `127.0.0.1:${port}`], { cwd, stdio: ["ignore", "ignore", "pipe"] });
    let text = "";
    const timer = setTimeout(() => reject(new Error("transportsd did not listen in 10 s:\n" + text)), 10000);
    p.stderr.on("data", (d) => {
      text += d;
      logs.push(String(d));
      if (/listening addr=/.test(text)) {
        clearTimeout(timer);
        resolve(p);
      }
    });
    p.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`transportsd exited with ${code}:\n${text}`));
    });
  });
}

function stopDaemon() {
  const p = daemon;
  if (!p) return Promise.resolve({ code: null, sig: null });
  daemon = null;
  return new Promise((resolve) => {
    p.removeAllListeners("exit");
    p.on("exit", (code, sig) => resolve({ code, sig }));
    p.kill("SIGTERM");
  });
}

const shot = (page, name) => page.screenshot({ path: join(ART, name + ".png"), fullPage: true });
const value = (page, id) => page.$eval("#" + id, (el) => el.value);
const status = (page) => page.evaluate(() => window.transportsClient?.status);
const waitLive = (page, ms = 15000) =>
  page.waitForFunction(() => window.transportsClient?.status === "open" && window.transportsClient.pending === 0, null, { timeout: ms });
const rev = (page, scope, id) => page.evaluate(([s, i]) => window.transportsClient.model(s, i)?.rev, [scope, id]);

async function openAs(ctx, tenant) {
  const page = await ctx.newPage();
  page.on("pageerror", (e) => logs.push(`[${tenant}] pageerror: ${e.message}`));
  await page.goto(`http://127.0.0.1:${port}/?as=${tenant}`);
  await waitLive(page);
  return page;
}

before(async () => {
  assert.ok(DAEMON && existsSync(DAEMON), `TRANSPORTSD must name the daemon (got ${DAEMON})`);
  assert.ok(existsSync(CHROMIUM), `Chromium is missing at ${CHROMIUM} (scripts/install-deps.sh installs Debian's chromium)`);
  mkdirSync(ART, { recursive: true });
  cwd = mkdtempSync(join(tmpdir(), "tp-e2e-"));
  port = await freePort();
  daemon = await startDaemon();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true, // playwright gives each launch a fresh --user-data-dir
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  alice = await browser.newContext({ viewport: { width: 900, height: 620 } });
  bob = await browser.newContext({ viewport: { width: 900, height: 620 } });
});

after(async () => {
  await browser?.close();
  if (daemon) await stopDaemon();
  if (cwd) rmSync(cwd, { recursive: true, force: true });
});

test("alice and bob open the demo page: live, each with private notes and the roadmap", async () => {
  alicePage = await openAs(alice, "alice");
  bobPage = await openAs(bob, "bob");
  assert.equal(await alicePage.textContent("#notes-title"), "Alice notes");
  assert.equal(await bobPage.textContent("#notes-title"), "Bob notes");
  assert.equal(await alicePage.textContent("#roadmap-access"), "you can edit");
  assert.equal(await bobPage.textContent("#roadmap-access"), "read-only");
  assert.match(await bobPage.textContent("#roadmap-why"), /read access/);
  await shot(alicePage, "01-alice-live");
  await shot(bobPage, "01-bob-live");
});

test("alice's roadmap edit reaches bob's window in under a second", async () => {
  await alicePage.click("#roadmap");
  const text = "Q1: ship the JavaScript client";
  await alicePage.keyboard.type(text);
  const t0 = Date.now();
  await bobPage.waitForFunction((t) => document.getElementById("roadmap").value === t, text, { timeout: 1000, polling: 10 });
  const ms = Date.now() - t0;
  console.log(`# roadmap edit seen by bob after ${ms} ms`);
  assert.ok(ms < 1000);
  await shot(bobPage, "02-bob-sees-roadmap");
});

test("presence: bob's page shows alice on the roadmap with her caret; her own page shows bob", async () => {
  await bobPage.waitForFunction(() => /here too: alice \(at \d+\)/.test(document.getElementById("roadmap-here").textContent), null, { timeout: 5000, polling: 20 });
  await alicePage.waitForFunction(() => /here too: bob/.test(document.getElementById("roadmap-here").textContent), null, { timeout: 5000, polling: 20 });
  await alicePage.click("#roadmap");
  await alicePage.keyboard.press("Home");
  await bobPage.waitForFunction(() => document.getElementById("roadmap-here").textContent.includes("alice (at 0)"), null, { timeout: 5000, polling: 20 });
  await shot(bobPage, "02b-bob-sees-alice-here");
});

test("alice's private notes never reach bob's page", async () => {
  await alicePage.click("#notes");
  await alicePage.keyboard.type("alice-only secret plan");
  await bobPage.click("#notes");
  await bobPage.keyboard.type("bob's own notes");
  await waitLive(alicePage);
  await waitLive(bobPage);
  await bobPage.reload();
  await waitLive(bobPage);
  const everything = await bobPage.evaluate(() => {
    const c = window.transportsClient;
    return document.documentElement.outerHTML + JSON.stringify(c.models().map((m) => c.model(m.scope, m.id).value)) +
      [...document.querySelectorAll("textarea")].map((t) => t.value).join("\n");
  });
  assert.ok(!everything.includes("alice-only"), "alice's notes appeared in bob's page");
  assert.equal(await value(bobPage, "notes"), "bob's own notes");
  assert.equal(await value(alicePage, "notes"), "alice-only secret plan");
  await shot(bobPage, "03-bob-own-notes");
});

test("bob's write to the roadmap is refused and rolled back visibly; alice's roadmap is untouched", async () => {
  const before = await value(bobPage, "roadmap");
  await bobPage.click("#roadmap");
  await bobPage.keyboard.press("End");
  await bobPage.keyboard.type("!");
  await bobPage.waitForSelector("#error:not([hidden])", { timeout: 2000 });
  assert.match(await bobPage.textContent("#error"), /forbidden/);
  assert.equal(await value(bobPage, "roadmap"), before);
  await shot(bobPage, "04-bob-refused");
  assert.equal(await value(alicePage, "roadmap"), before);
});

test("the daemon restarted in the middle of typing: nothing typed is lost, each keystroke applied once", async () => {
  await alicePage.click("#roadmap");
  await alicePage.keyboard.press("End");
  const start = await value(alicePage, "roadmap");
  const rev0 = await rev(alicePage, "shared", "roadmap");
  const typed = " / Q2: the demo page in Chromium";
  const typing = alicePage.keyboard.type(typed, { delay: 40 });
  await new Promise((r) => setTimeout(r, 300));
  const { code } = await stopDaemon();
  assert.equal(code, 0);
  await alicePage.waitForFunction(() => window.transportsClient.status !== "open", null, { timeout: 5000 });
  await shot(alicePage, "05-alice-typing-while-down");
  await new Promise((r) => setTimeout(r, 400));
  daemon = await startDaemon();
  await typing;
  await waitLive(alicePage);
  const want = start + typed;
  assert.equal(await value(alicePage, "roadmap"), want);
  await bobPage.waitForFunction((t) => document.getElementById("roadmap").value === t, want, { timeout: 5000 });
  // One rev per keystroke: every write applied, none twice.
  assert.equal(await rev(alicePage, "shared", "roadmap"), rev0 + typed.length);
  await shot(alicePage, "05-alice-after-restart");
  await shot(bobPage, "05-bob-after-restart");
});

test("a write made offline survives a page reload and is applied once", async () => {
  await alicePage.click("#notes");
  await alicePage.keyboard.press("End");
  const start = await value(alicePage, "notes");
  const rev0 = await rev(alicePage, "private", "notes");
  // The page's service worker keeps a copy of the page for an offline reload.
  await alicePage.evaluate(() => navigator.serviceWorker.ready);
  await stopDaemon();
  await alicePage.waitForFunction(() => window.transportsClient.status !== "open", null, { timeout: 5000 });
  const typed = " + typed offline";
  await alicePage.keyboard.type(typed);
  // Stored in IndexedDB before the reload.
  await alicePage.waitForFunction(
    (n) =>
      new Promise((resolve) => {
        const r = indexedDB.open("transports-client", 1);
        r.onsuccess = () => {
          const q = r.result.transaction("state").objectStore("state").getAll();
          q.onsuccess = () => resolve(q.result.some((s) => s.writes.length === n));
        };
        r.onerror = () => resolve(false);
      }),
    typed.length,
    { timeout: 5000 },
  );
  await shot(alicePage, "06-alice-offline-typed");
  await alicePage.reload();
  await alicePage.waitForFunction(() => window.transportsClient?.status === "waiting", null, { timeout: 5000 });
  // The reloaded page shows what was typed at once, from IndexedDB, still offline.
  await alicePage.waitForFunction((t) => document.getElementById("notes").value === t, start + typed, { timeout: 5000 });
  await shot(alicePage, "06-alice-reloaded-offline");
  daemon = await startDaemon();
  await waitLive(alicePage);
  assert.equal(await value(alicePage, "notes"), start + typed);
  assert.equal(await rev(alicePage, "private", "notes"), rev0 + typed.length);
  // A fresh window of alice reads it from the server.
  const other = await browser.newContext();
  const page = await openAs(other, "alice");
  assert.equal(await value(page, "notes"), start + typed);
  await shot(alicePage, "06-alice-after-reconnect");
  await other.close();
  const errors = logs.filter((l) => /pageerror/.test(l));
  assert.deepEqual(errors, []);
});

test("the daemon stops cleanly, with no sanitizer report in its log", async () => {
  const { code, sig } = await stopDaemon();
  assert.deepEqual([code, sig], [0, null]);
  const all = logs.join("");
  assert.doesNotMatch(all, /ERROR: (Leak|Address)Sanitizer|runtime error:/);
});
