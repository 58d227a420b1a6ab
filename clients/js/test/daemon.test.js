// The client in Node 20 (the ws package's constructor) against the real
// transportsd --demo: sync, live patches between tenants, an ack, a refused
// write rolled back, a refused handshake, a restart with writes in flight
// applied exactly once, and a connection in jwt mode that outlives its first
// token (the client's `auth`). Needs TRANSPORTSD (the daemon's path).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
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

test("presence against the daemon: bob (read) sets his cursor, alice sees it by conn id; it goes when bob closes", async () => {
  const alice = open("alice");
  const bob = open("bob");
  await Promise.all([alice.synced(), bob.synced()]);
  const pa = alice.model("shared", "roadmap").presence;
  const pb = bob.model("shared", "roadmap").presence;
  for (let i = 0; i < 20; i++) pb.set({ name: "Bob", cursor: i }); // coalesced by the server's tick
  await until(() => pa.others.get(bob.conn)?.cursor === 19);
  assert.deepEqual([...pa.others.keys()], [bob.conn]);
  assert.equal(pb.others.size, 0, "no echo");
  // A third client opened now gets the presence_snapshot.
  const alice2 = open("alice");
  await alice2.synced();
  await until(() => alice2.model("shared", "roadmap").presence.others.size === 1);
  assert.deepEqual(alice2.model("shared", "roadmap").presence.others.get(bob.conn), { name: "Bob", cursor: 19 });
  bob.close();
  await until(() => pa.others.size === 0 && alice2.model("shared", "roadmap").presence.others.size === 0);
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

// A daemon in jwt mode (HS256, leeway 0): the client's token function gives
// tokens that live 3 s; the connection must still be the same one after 7 s.
const SECRET = "js-client-test-secret-of-at-least-32-bytes";
const hs256 = (claims) => {
  const b = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = b({ alg: "HS256", typ: "JWT" }) + "." + b(claims);
  return head + "." + createHmac("sha256", SECRET).update(head).digest("base64url");
};

test("jwt mode: a connection outlives its first token (auth before exp), with no 4401", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tp-js-jwt-"));
  const cfg = {
    listen: "127.0.0.1:0",
    storage: { memory: true },
    schemas: { Doc: { title: "Doc", type: "object", properties: { title: { type: "string" }, body: { type: "string" } }, required: ["title"] } },
    tenants: { alice: { models: { notes: { schema: "Doc", value: { title: "A" } } } } },
    auth: { mode: "jwt", leeway_s: 0, keys: [{ alg: "HS256", secret_env: "TP_JS_TEST_SECRET" }] },
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
  const p = spawn(DAEMON, ["--config", join(dir, "config.json")], { cwd: dir, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, TP_JS_TEST_SECRET: SECRET } });
  let log = "";
  const jwtPort = await new Promise((resolve, reject) => {
    p.stderr.on("data", (d) => {
      log += d;
      const m = /listening addr=\S*:(\d+)/.exec(log);
      if (m) resolve(+m[1]);
    });
    p.on("exit", (code) => reject(new Error(`transportsd exited with ${code}:\n${log}`)));
  });
  const tokens = [];
  const c = new Client(`ws://127.0.0.1:${jwtPort}/ws/alice`, {
    WebSocket,
    token: async () => {
      tokens.push(hs256({ sub: "alice", exp: Math.floor(Date.now() / 1000) + 3 }));
      return tokens.at(-1);
    },
  });
  clients.push(c);
  const statuses = [];
  const errors = [];
  c.on("status", (s) => statuses.push(s));
  c.on("error", (e) => errors.push(e));
  try {
    await c.synced();
    const conn = c.conn;
    await new Promise((r) => setTimeout(r, 7000));
    const notes = c.model("private", "notes");
    const { rev } = await notes.write({ body: "after the first token" });
    assert.equal(rev, 2);
    assert.equal(c.conn, conn, "the client reconnected");
    assert.deepEqual(statuses, ["connecting", "open"]);
    assert.deepEqual(errors, []);
    assert.ok(tokens.length >= 3, `tokens asked: ${tokens.length}`);
    assert.doesNotMatch(log, /4401|closed.*expired/);
  } finally {
    c.close();
    p.removeAllListeners("exit");
    const code = await new Promise((resolve) => {
      p.on("exit", resolve);
      p.kill("SIGTERM");
    });
    rmSync(dir, { recursive: true, force: true });
    assert.equal(code, 0, log);
  }
});
