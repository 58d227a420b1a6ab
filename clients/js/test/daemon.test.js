// The client in Node 20 (the ws package's constructor) against the real
// transportsd --demo: sync, live patches between tenants, an ack, a refused
// write rolled back, a refused handshake, and a restart with writes in flight
// applied exactly once. Needs TRANSPORTSD (the daemon's path).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { Client, TransportsError } from "../src/index.js";

const DAEMON = process.env.TRANSPORTSD;
let daemon, port, cwd;
const clients = [];

const freePort = () =>
  new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });

function start() {
  return new Promise((resolve, reject) => {
    const p = spawn(DAEMON, ["--demo", "--listen", `127.0.0.1:${port}`], { cwd, stdio: ["ignore", "ignore", "pipe"] });
    let text = "";
    p.stderr.on("data", (d) => {
      text += d;
      if (/listening addr=/.test(text)) resolve(p);
    });
    p.on("exit", (code) => reject(new Error(`transportsd exited with ${code}:\n${text}`)));
  });
}

function stop() {
  const p = daemon;
  daemon = null;
  return new Promise((resolve) => {
    p.removeAllListeners("exit");
    p.on("exit", (code) => resolve(code));
    p.kill("SIGTERM");
  });
}

const open = (tenant, opts = {}) => {
  const c = new Client(`ws://127.0.0.1:${port}/ws/${tenant}`, { WebSocket, backoffMinMs: 50, backoffMaxMs: 400, ...opts });
  clients.push(c);
  return c;
};
const until = async (pred, ms = 5000) => {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 5));
  }
};

before(async () => {
  assert.ok(DAEMON && existsSync(DAEMON), `TRANSPORTSD must name the daemon (got ${DAEMON})`);
  cwd = mkdtempSync(join(tmpdir(), "tp-js-"));
  port = await freePort();
  daemon = await start();
});

after(async () => {
  for (const c of clients) c.close();
  if (daemon) assert.equal(await stop(), 0);
  rmSync(cwd, { recursive: true, force: true });
});

test("Node 20 with ws: sync, a write acked, a patch to the other tenant, a refusal rolled back", async () => {
  const alice = open("alice");
  const bob = open("bob");
  await Promise.all([alice.synced(), bob.synced()]);
  assert.deepEqual(alice.models().map((m) => `${m.scope}/${m.id}`).sort(), ["private/notes", "shared/roadmap"]);
  const ra = alice.model("shared", "roadmap");
  const rb = bob.model("shared", "roadmap");
  assert.equal(rb.access, "read");
  const seen = [];
  rb.subscribe((v, info) => seen.push([v.body, info.origin, info.local]));
  const { rev } = await ra.write({ body: "from node" });
  await until(() => rb.rev === rev);
  assert.equal(rb.value.body, "from node");
  assert.deepEqual(seen.at(-1), ["from node", alice.conn, false]);
  assert.match(alice.conn, /^c[0-9a-f]{16}$/);
  // The schema refuses a title that is not a string: rolled back, rejected.
  const notes = alice.model("private", "notes");
  const before = notes.value;
  const p = notes.write({ title: 42 });
  assert.equal(notes.value.title, 42);
  await assert.rejects(p, (e) => e instanceof TransportsError && e.code === "invalid" && /title/.test(e.message));
  assert.deepEqual(notes.value, before);
  // bob cannot write the roadmap.
  await assert.rejects(rb.write({ body: "x" }), (e) => e.code === "forbidden");
});

test("a refused handshake (404) closes the client without retrying", async () => {
  const c = new Client(`ws://127.0.0.1:${port}/nowhere/alice`, { WebSocket });
  clients.push(c);
  await assert.rejects(c.synced(), (e) => e instanceof TransportsError && /404/.test(e.message));
  assert.equal(c.status, "closed");
});

test("a restart with writes in flight: every write applied exactly once", async () => {
  const alice = open("alice", { clientId: "node-restart-test" });
  const bob = open("bob");
  await Promise.all([alice.synced(), bob.synced()]);
  const ra = alice.model("shared", "roadmap");
  const rev0 = ra.rev;
  const n = 60;
  const results = [];
  let restart;
  let sawWaiting = false;
  alice.on("status", (s) => (sawWaiting ||= s === "waiting"));
  for (let i = 0; i < n; i++) {
    results.push(ra.write({ body: "line " + i }));
    // The daemon stops with writes on the wire and comes back while more are made.
    if (i === 20) restart = stop().then(async (code) => {
      assert.equal(code, 0);
      await new Promise((r) => setTimeout(r, 100));
      daemon = await start();
    });
    await new Promise((r) => setTimeout(r, 3));
  }
  await restart;
  const revs = (await Promise.all(results)).map((r) => r.rev);
  assert.ok(sawWaiting, "the client never saw the daemon go");
  assert.equal(ra.rev, rev0 + n);
  assert.deepEqual(revs, Array.from({ length: n }, (_, i) => rev0 + 1 + i));
  await until(() => bob.model("shared", "roadmap")?.rev === rev0 + n, 10000);
  assert.equal(bob.model("shared", "roadmap").value.body, "line " + (n - 1));
});
