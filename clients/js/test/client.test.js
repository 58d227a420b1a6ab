// The client's own behaviour, against a fake server and a fake clock.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Client, TransportsError, mergePatch } from "../src/index.js";
import { FakeClock, fakeWebSocket, tick } from "./fakes.js";

const URL_ = "ws://127.0.0.1:8080/ws/alice";
const hello = { type: "hello", protocol: 1, tenant: "alice", conn: "c00000000000000a1", tick_ms: 50, max_message_bytes: 1048576 };
const snap = (scope, id, rev, value, access = "write") => ({ type: "snapshot", scope, id, schema: "Doc", rev, access, value });

// A client connected and synced with alice's notes (rev 1) and the roadmap.
async function connected(opts = {}) {
  const clock = new FakeClock();
  const WS = fakeWebSocket();
  const c = new Client(URL_, { WebSocket: WS, timers: clock, random: () => 0.5, clientId: "cid", ...opts });
  await tick();
  const ws = WS.made[0];
  ws.open();
  ws.recv([hello, snap("private", "notes", 1, { title: "A", body: "" }), snap("shared", "roadmap", 1, { title: "R", body: "" }, opts.roadmapAccess || "write"), { type: "synced" }]);
  await c.synced();
  await tick();
  return { c, ws, WS, clock };
}

test("merge patch: RFC 7396, inputs untouched", () => {
  const a = { x: { y: 1, z: 2 }, k: [1] };
  const b = mergePatch(a, { x: { y: null, w: 3 }, k: { n: 1 } });
  assert.deepEqual(b, { x: { z: 2, w: 3 }, k: { n: 1 } });
  assert.deepEqual(a, { x: { y: 1, z: 2 }, k: [1] });
});

test("connects with the subprotocol and names itself in a first ping; synced() resolves at synced", async () => {
  const { c, ws } = await connected({ token: "t k" });
  assert.equal(ws.protocols, "transports.v1");
  assert.equal(new URL(ws.url).searchParams.get("token"), "t k");
  assert.equal(new URL(ws.url).searchParams.get("resume"), null);
  const first = ws.messages()[0];
  assert.equal(first.type, "ping");
  assert.equal(first.client, "cid");
  assert.ok(first.ref < 0);
  assert.equal(c.status, "open");
  assert.deepEqual(c.models().map((m) => m.id).sort(), ["notes", "roadmap"]);
  const m = c.model("private", "notes");
  assert.deepEqual(m.value, { title: "A", body: "" });
  assert.equal(m.rev, 1);
  assert.equal(m.schema, "Doc");
  assert.equal(c.model("private", "nope"), undefined);
});

test("a write changes the view at once and resolves {rev} at its ack (private: applied at from)", async () => {
  const { c, ws } = await connected();
  ws.take();
  const m = c.model("private", "notes");
  const seen = [];
  m.subscribe((v, info) => seen.push([v.body, info.local]));
  const p = m.write({ body: "hi" });
  assert.equal(m.value.body, "hi");
  await tick();
  assert.deepEqual(ws.take(), [{ type: "write", scope: "private", id: "notes", patch: { body: "hi" }, ref: 1 }]);
  ws.recv({ type: "ack", ref: 1, scope: "private", id: "notes", rev: 2, from: 1 });
  assert.deepEqual(await p, { rev: 2 });
  assert.equal(m.rev, 2);
  assert.equal(m.value.body, "hi");
  assert.equal(c.pending, 0);
  assert.deepEqual(seen, [["hi", true]]);
});

test("an error rolls the write back and rejects with TransportsError; later writes stay on top", async () => {
  const { c, ws } = await connected();
  const m = c.model("private", "notes");
  const p1 = m.write({ title: "x".repeat(30) });
  const p2 = m.write({ body: "kept" });
  await tick();
  ws.recv({ type: "error", ref: 1, code: "invalid", message: "title: longer than 20" });
  await assert.rejects(p1, (e) => e instanceof TransportsError && e.code === "invalid" && /title/.test(e.message));
  assert.deepEqual(m.value, { title: "A", body: "kept" });
  ws.recv({ type: "ack", ref: 2, scope: "private", id: "notes", rev: 2, from: 1 });
  assert.deepEqual(await p2, { rev: 2 });
  assert.deepEqual(m.value, { title: "A", body: "kept" });
});

test("server patches change the confirmed value; pending writes stay on top in ref order", async () => {
  const { c, ws } = await connected();
  const m = c.model("shared", "roadmap");
  m.write({ body: "mine" });
  m.write({ title: "T2" });
  ws.recv({ type: "patch", scope: "shared", id: "roadmap", from: 1, rev: 2, patch: { body: "theirs", n: 3 }, origin: "c2" });
  assert.deepEqual(m.value, { title: "T2", body: "mine", n: 3 });
  assert.equal(m.rev, 2);
});

test("local refusals: read-only, unknown, not an object, too large; nothing is sent", async () => {
  const { c, ws } = await connected({ roadmapAccess: "read" });
  ws.take();
  const m = c.model("shared", "roadmap");
  assert.equal(m.access, "read");
  await assert.rejects(m.write({ body: "x" }), (e) => e.code === "forbidden");
  await assert.rejects(c.model("private", "notes").write([1]), (e) => e.code === "bad_request" && /patch/.test(e.message));
  await assert.rejects(c.model("private", "notes").write({ body: "x".repeat(1048576) }), (e) => e.code === "too_large");
  // Bytes, not characters: 400 000 three-byte characters are 1.2 MB.
  await assert.rejects(c.model("private", "notes").write({ body: "\u20ac".repeat(400000) }), (e) => e.code === "too_large");
  await tick();
  assert.deepEqual(ws.take(), []);
  assert.deepEqual(m.value, { title: "R", body: "" });
});

test("two writes in one turn leave as one batch frame; a batch received is handled in order", async () => {
  const { c, ws } = await connected();
  ws.take();
  const m = c.model("private", "notes");
  m.write({ body: "1" });
  m.write({ body: "2" });
  await tick();
  assert.equal(ws.frames.length, 1);
  assert.equal(JSON.parse(ws.frames[0]).length, 2);
  ws.recv([
    { type: "ack", ref: 1, scope: "private", id: "notes", rev: 2, from: 1 },
    { type: "ack", ref: 2, scope: "private", id: "notes", rev: 3, from: 2 },
  ]);
  assert.equal(m.rev, 3);
  assert.equal(c.pending, 0);
});

test("reconnect: backoff with full jitter, resume=1 with revs and client id, pending writes resent with their refs", async () => {
  const { c, ws, WS, clock } = await connected();
  const m = c.model("private", "notes");
  const p = m.write({ body: "offline?" });
  await tick();
  ws.serverClose(1006);
  assert.equal(c.status, "waiting");
  assert.deepEqual(clock.pending().slice(-1), [125]); // random 0.5 of 250
  clock.advance(125);
  await tick();
  const ws2 = WS.made[1];
  assert.equal(new URL(ws2.url).searchParams.get("resume"), "1");
  ws2.open();
  await tick();
  const sent = ws2.take();
  assert.deepEqual(sent[0], { type: "resume", models: [{ scope: "private", id: "notes", rev: 1 }, { scope: "shared", id: "roadmap", rev: 1 }], client: "cid" });
  assert.deepEqual(sent[1], { type: "write", scope: "private", id: "notes", patch: { body: "offline?" }, ref: 1 });
  // The server had applied it before the cut: the resume brings the patch, the ack comes again.
  ws2.recv([hello, { type: "patch", scope: "private", id: "notes", from: 1, rev: 2, patch: { body: "offline?" }, origin: "c1" }, { type: "synced" }]);
  ws2.recv({ type: "ack", ref: 1, scope: "private", id: "notes", rev: 2, from: 1 });
  assert.deepEqual(await p, { rev: 2 });
  assert.equal(m.rev, 2);
  assert.deepEqual(m.value, { title: "A", body: "offline?" });
});

test("backoff timing: doubles from 250 ms up to 30 s, drawn in [0, d]; back to 250 after synced", async () => {
  let r = 1;
  const clock = new FakeClock();
  const WS = fakeWebSocket();
  const c = new Client(URL_, { WebSocket: WS, timers: clock, random: () => r, clientId: "x" });
  await tick();
  const delays = [];
  for (let i = 0; i < 10; i++) {
    WS.made.at(-1).serverClose(1006);
    const d = clock.pending().at(-1);
    delays.push(d);
    clock.advance(d);
    await tick();
  }
  assert.deepEqual(delays, [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  r = 0.25;
  WS.made.at(-1).serverClose(1006);
  assert.equal(clock.pending().at(-1), 7500);
  clock.advance(7500);
  await tick();
  const ws = WS.made.at(-1);
  ws.open();
  ws.recv([hello, { type: "synced" }]);
  ws.serverClose(1001);
  assert.equal(clock.pending().at(-1), 62.5 - 0.5); // floor(0.25 * 250)
  c.close();
});

test("a rev gap sends resume for that model and ignores its patches until the answer", async () => {
  const { c, ws } = await connected();
  ws.take();
  const m = c.model("shared", "roadmap");
  ws.recv({ type: "patch", scope: "shared", id: "roadmap", from: 2, rev: 3, patch: { body: "b3" }, origin: "host" });
  await tick();
  assert.deepEqual(ws.take(), [{ type: "resume", models: [{ scope: "shared", id: "roadmap", rev: 1 }] }]);
  ws.recv({ type: "patch", scope: "shared", id: "roadmap", from: 3, rev: 4, patch: { body: "b4" }, origin: "host" });
  await tick();
  assert.deepEqual(ws.take(), []); // one resume, not one per patch
  assert.equal(m.rev, 1);
  ws.recv([
    { type: "patch", scope: "shared", id: "roadmap", from: 1, rev: 2, patch: { body: "b2" }, origin: "host" },
    { type: "patch", scope: "shared", id: "roadmap", from: 2, rev: 3, patch: { body: "b3" }, origin: "host" },
    { type: "patch", scope: "shared", id: "roadmap", from: 3, rev: 4, patch: { body: "b4" }, origin: "host" },
    { type: "synced" },
  ]);
  assert.equal(m.rev, 4);
  assert.equal(m.value.body, "b4");
});

test("rate_limited: kept in the view, held, resent with the same ref after 50-100 ms, then 100-200 ms; an ack resets", async () => {
  const { c, ws, clock } = await connected();
  ws.take();
  const m = c.model("private", "notes");
  const p = m.write({ body: "r" });
  await tick();
  ws.take();
  ws.recv({ type: "error", ref: 1, code: "rate_limited", message: "slow down" });
  assert.equal(m.value.body, "r");
  m.write({ n: 1 }); // a later write does not send the held one
  await tick();
  assert.deepEqual(ws.take().map((x) => x.ref), [2]);
  clock.advance(74);
  await tick();
  assert.deepEqual(ws.take(), []);
  clock.advance(1); // 50 + 0.5 * 50
  await tick();
  assert.deepEqual(ws.take().map((x) => x.ref), [1]);
  ws.recv({ type: "error", ref: 1, code: "rate_limited", message: "slow down" });
  clock.advance(149);
  await tick();
  assert.deepEqual(ws.take(), []);
  clock.advance(1); // 100 + 0.5 * 100
  await tick();
  assert.deepEqual(ws.take().map((x) => x.ref), [1]);
  ws.recv({ type: "ack", ref: 1, scope: "private", id: "notes", rev: 2, from: 1 });
  assert.deepEqual(await p, { rev: 2 });
  ws.recv({ type: "error", ref: 2, code: "rate_limited", message: "slow down" });
  clock.advance(75);
  await tick();
  assert.deepEqual(ws.take().map((x) => x.ref), [2]);
});

test("keepalive: a ping after 20 s of silence, the connection dropped after 40 s, then a reconnect", async () => {
  const { c, ws, WS, clock } = await connected();
  ws.take();
  clock.advance(19999);
  await tick();
  assert.deepEqual(ws.take(), []);
  clock.advance(1);
  await tick();
  const pings = ws.take();
  assert.equal(pings.length, 1);
  assert.equal(pings[0].type, "ping");
  assert.ok(pings[0].ref < 0);
  clock.advance(20000);
  assert.equal(c.status, "waiting");
  assert.equal(ws.closedWith, 1005);
  clock.advance(200);
  await tick();
  assert.equal(WS.made.length, 2);
  // Traffic postpones the ping.
  const ws2 = WS.made[1];
  ws2.open();
  ws2.recv([hello, { type: "synced" }]);
  await tick();
  ws2.take();
  clock.advance(15000);
  ws2.recv({ type: "pong", ref: -5 });
  clock.advance(15000);
  await tick();
  assert.deepEqual(ws2.take(), []);
});

test("removed: the model goes, its pending writes reject with not_found; access changes emit a model event", async () => {
  const { c, ws } = await connected();
  const events = [];
  c.on("model", (e) => events.push(e));
  const m = c.model("shared", "roadmap");
  const p = m.write({ body: "lost" });
  ws.recv({ type: "access", scope: "shared", id: "roadmap", access: "read" });
  assert.equal(m.access, "read");
  ws.recv({ type: "removed", scope: "shared", id: "roadmap" });
  await assert.rejects(p, (e) => e.code === "not_found");
  assert.equal(c.model("shared", "roadmap"), undefined);
  assert.deepEqual(events, [
    { scope: "shared", id: "roadmap", event: "access" },
    { scope: "shared", id: "roadmap", event: "removed" },
  ]);
  assert.equal(c.pending, 0);
});

test("storage: the client id, refs and pending writes survive a new client (a reload), resent once", async () => {
  let saved;
  const storage = { load: async () => saved && structuredClone(saved), save: async (s) => void (saved = structuredClone(s)) };
  const a = await connected({ storage, clientId: undefined });
  const m = a.c.model("private", "notes");
  m.write({ body: "typed offline" });
  await tick();
  await tick();
  const id = saved.clientId;
  assert.match(id, /^[0-9a-f]{32}$/);
  assert.deepEqual(saved.writes, [{ ref: 1, scope: "private", id: "notes", patch: { body: "typed offline" } }]);
  assert.equal(saved.nextRef, 2);
  a.c.close();
  // Replicas are kept too: the reloaded page shows them at once, and resumes.
  assert.deepEqual(saved.models.find((m) => m.id === "notes"), { scope: "private", id: "notes", rev: 1, access: "write", schema: "Doc", value: { title: "A", body: "" } });
  saved.models = saved.models.filter((m) => m.id === "notes");
  // The reload: a new client, no replicas, the same storage.
  const clock = new FakeClock();
  const WS = fakeWebSocket();
  const b = new Client(URL_, { WebSocket: WS, timers: clock, random: () => 0.5, storage });
  const errors = [];
  b.on("error", (e) => errors.push(e));
  await tick();
  await tick();
  assert.equal(b.model("private", "notes").value.body, "typed offline"); // offline, before any connection
  const ws = WS.made[0];
  assert.equal(new URL(ws.url).searchParams.get("resume"), "1");
  ws.open();
  await tick();
  const sent = ws.take();
  assert.deepEqual(sent[0], { type: "resume", models: [{ scope: "private", id: "notes", rev: 1 }], client: id });
  assert.deepEqual(sent[1], { type: "write", scope: "private", id: "notes", patch: { body: "typed offline" }, ref: 1 });
  ws.recv([hello, { type: "synced" }]);
  assert.equal(b.model("private", "notes").value.body, "typed offline"); // pending on top
  ws.recv({ type: "ack", ref: 1, scope: "private", id: "notes", rev: 2, from: 1 });
  await tick();
  assert.equal(b.model("private", "notes").rev, 2);
  assert.equal(b.model("private", "notes").value.body, "typed offline");
  assert.deepEqual(saved.writes, []);
  // The next write takes the next ref, never one used before the reload.
  b.model("private", "notes").write({ body: "x" });
  await tick();
  await tick();
  assert.equal(ws.take()[0].ref, 2);
  assert.deepEqual(errors, []);
});

test("token as a function: asked again at every connection", async () => {
  let n = 0;
  const { ws, WS, clock } = await connected({ token: async () => "tok" + ++n });
  assert.equal(new URL(ws.url).searchParams.get("token"), "tok1");
  ws.serverClose(4401);
  clock.advance(250);
  await tick();
  assert.equal(new URL(WS.made[1].url).searchParams.get("token"), "tok2");
});

test("a refused handshake (403) is final: status closed, synced() rejects", async () => {
  const clock = new FakeClock();
  const WS = fakeWebSocket();
  const c = new Client(URL_, { WebSocket: WS, timers: clock });
  const p = c.synced();
  await tick();
  WS.made[0].fail("Unexpected server response: 403");
  await assert.rejects(p, (e) => e instanceof TransportsError && /403/.test(e.message));
  assert.equal(c.status, "closed");
  assert.deepEqual(clock.pending(), []);
});

test("a server that breaks the protocol is dropped and retried", async () => {
  const { c, ws, clock } = await connected();
  ws.recv("not json");
  assert.equal(c.status, "waiting");
  assert.ok(clock.pending().length > 0);
});

// An unsigned JWT whose exp is `s` seconds after the fake clock's start
// (1000 ms): the client reads exp without verifying.
const b64u = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
const jwt = (claims) => b64u({ alg: "HS256", typ: "JWT" }) + "." + b64u({ sub: "alice", ...claims }) + ".sig";
const authsIn = (ws) => ws.take().filter((m) => m.type === "auth");

test("token function: auth sent on the live connection 30 s before exp; the ack keeps it; the next one from the new exp", async () => {
  const toks = [jwt({ exp: 601 }), jwt({ exp: 1201 }), jwt({ exp: 1801 })];
  let n = 0;
  const errors = [];
  const { c, ws, WS, clock } = await connected({ token: () => toks[n++], pingIntervalMs: 1e9 });
  c.on("error", (e) => errors.push(e));
  ws.take();
  clock.advance(570000 - 1); // exp 601 s, now 1 s: renewed at 571 s
  await tick();
  assert.deepEqual(authsIn(ws), []);
  assert.equal(n, 1);
  clock.advance(1);
  await tick();
  const [a] = authsIn(ws);
  assert.equal(a.token, toks[1]);
  assert.ok(Number.isInteger(a.ref) && a.ref < 0);
  assert.equal(n, 2);
  ws.recv({ type: "ack", ref: a.ref });
  assert.equal(c.status, "open");
  assert.equal(WS.made.length, 1);
  // The second token expires at 1201 s: the next auth at 1171 s, 600 s later.
  clock.advance(600000 - 1);
  await tick();
  assert.deepEqual(authsIn(ws), []);
  clock.advance(1);
  await tick();
  assert.equal(authsIn(ws)[0].token, toks[2]);
  assert.deepEqual(errors, []);
  assert.equal(WS.made.length, 1);
});

test("token function: a short-lived token is renewed halfway; an async function; a token without exp never", async () => {
  let n = 0;
  const { ws, clock } = await connected({ token: async () => (++n <= 2 ? jwt({ exp: 21 }) : jwt({})), pingIntervalMs: 1e9 });
  ws.take();
  clock.advance(10000 - 1); // 20 s left: at 10 s
  await tick();
  assert.deepEqual(authsIn(ws), []);
  clock.advance(1);
  await tick();
  await tick();
  assert.equal(authsIn(ws).length, 1);
  assert.equal(n, 2);
  // 10 s left of the same exp: at 5 s; that one has no exp: no more.
  clock.advance(5000);
  await tick();
  await tick();
  assert.equal(authsIn(ws).length, 1);
  assert.equal(n, 3);
  clock.advance(3600000);
  await tick();
  assert.deepEqual(authsIn(ws), []);
  assert.equal(n, 3);
});

test("token: a string or a function without a JWT's exp sends no auth", async () => {
  for (const token of ["opaque", () => "opaque", () => "a.!!!.b"]) {
    const { c, ws, clock } = await connected({ token, pingIntervalMs: 1e9 });
    clock.advance(86400000);
    await tick();
    assert.deepEqual(authsIn(ws), []);
    c.close();
  }
});

test("auth refused: an error event, the connection goes on; the 4401 close reconnects at once with a fresh token", async () => {
  let n = 0;
  const errors = [];
  const { c, ws, WS, clock } = await connected({ token: () => jwt({ exp: 61 + 1000 * n++ }), pingIntervalMs: 1e9 });
  c.on("error", (e) => errors.push(e));
  ws.take();
  clock.advance(30000);
  await tick();
  const [a] = authsIn(ws);
  ws.recv({ type: "error", ref: a.ref, code: "forbidden", message: "token: bad signature" });
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof TransportsError && errors[0].code === "forbidden" && /auth/.test(errors[0].message));
  assert.equal(c.status, "open");
  assert.equal(WS.made.length, 1);
  clock.advance(30000);
  await tick();
  assert.deepEqual(authsIn(ws), []); // not asked again on this connection
  ws.serverClose(4401, "token expired");
  assert.equal(c.status, "waiting");
  assert.deepEqual(clock.pending(), [0]);
  clock.advance(0);
  await tick();
  assert.equal(WS.made.length, 2);
  assert.equal(new URL(WS.made[1].url).searchParams.get("token"), jwt({ exp: 2061 }));
  assert.equal(n, 3);
  assert.equal(errors.length, 1); // 4401 is not a refusal
});

test("auth rate_limited or internal: asked again and sent after 1 s; a connection lost meanwhile gets none", async () => {
  let n = 0;
  let release;
  const { c, ws, WS, clock } = await connected({ token: () => (n++ === 2 ? new Promise((r) => (release = r)) : jwt({ exp: 61 })), pingIntervalMs: 1e9 });
  ws.take();
  clock.advance(30000);
  await tick();
  const [a] = authsIn(ws);
  ws.recv({ type: "error", ref: a.ref, code: "rate_limited", message: "" });
  assert.equal(c.status, "open");
  clock.advance(999);
  await tick();
  assert.equal(n, 2);
  clock.advance(1);
  await tick(); // the third call hangs: the connection goes before it answers
  assert.equal(n, 3);
  ws.serverClose(1006);
  release(jwt({ exp: 61 }));
  await tick();
  assert.deepEqual(authsIn(ws), []);
  assert.equal(WS.made.length, 1);
});

test("presence: set sends a presence message, others fill from presence and presence_snapshot, subscribers told", async () => {
  const { c, ws } = await connected();
  ws.take();
  const m = c.model("shared", "roadmap");
  assert.equal(m.presence.state, null);
  m.presence.set({ name: "Ann", cursor: 3 });
  await tick();
  assert.deepEqual(ws.take(), [{ type: "presence", scope: "shared", id: "roadmap", state: { name: "Ann", cursor: 3 } }]);
  assert.deepEqual(m.presence.state, { name: "Ann", cursor: 3 });
  assert.throws(() => m.presence.set([1]), (e) => e instanceof TransportsError && e.code === "bad_request");
  assert.throws(() => m.presence.set({ s: "x".repeat(4089) }), (e) => e.code === "too_large" && /state/.test(e.message));
  m.presence.set({ s: "x".repeat(4088) }); // exactly 4096 bytes of JSON
  await tick();
  assert.equal(ws.take().length, 1);
  const seen = [];
  m.presence.subscribe((others, ch) => seen.push([others.size, ch.conn, ch.state]));
  ws.recv({ type: "presence", scope: "shared", id: "roadmap", conn: "c2", state: { name: "Bob" } });
  ws.recv({ type: "presence_snapshot", scope: "shared", id: "roadmap", peers: [{ conn: "c3", state: { name: "Cy" } }] });
  assert.deepEqual([...m.presence.others], [["c3", { name: "Cy" }]]);
  ws.recv({ type: "presence", scope: "shared", id: "roadmap", conn: "c3", state: null });
  assert.equal(m.presence.others.size, 0);
  assert.deepEqual(seen, [[1, "c2", { name: "Bob" }], [0, "c2", null], [1, "c3", { name: "Cy" }], [0, "c3", null]]);
  assert.equal(c.model("private", "notes").presence.others.size, 0, "per model");
  ws.recv({ type: "presence", scope: "shared", id: "roadmap", conn: "c4", state: "x" });
  assert.equal(c.status, "waiting", "a malformed presence is a protocol violation");
});

test("presence: the others are cleared when the connection ends; the own state is set again after the reconnect", async () => {
  const { c, ws, WS, clock } = await connected();
  const m = c.model("shared", "roadmap");
  m.presence.set({ cursor: 1 });
  ws.recv({ type: "presence", scope: "shared", id: "roadmap", conn: "c2", state: { name: "Bob" } });
  await tick();
  const seen = [];
  m.presence.subscribe((others, ch) => seen.push([ch.conn, ch.state]));
  ws.serverClose(1006);
  assert.equal(m.presence.others.size, 0);
  assert.deepEqual(seen, [["c2", null]]);
  clock.advance(125);
  await tick();
  const ws2 = WS.made[1];
  ws2.open();
  await tick();
  const sent = ws2.take();
  assert.equal(sent[0].type, "resume");
  assert.deepEqual(sent.filter((x) => x.type === "presence"), [{ type: "presence", scope: "shared", id: "roadmap", state: { cursor: 1 } }]);
  m.presence.set(null);
  await tick();
  assert.deepEqual(ws2.take(), [{ type: "presence", scope: "shared", id: "roadmap", state: null }]);
});

test("presence: rate_limited holds the states and sends the latest again after the backoff", async () => {
  const { c, ws, clock } = await connected();
  ws.take();
  const m = c.model("shared", "roadmap");
  m.presence.set({ x: 1 });
  await tick();
  ws.take();
  ws.recv({ type: "error", code: "rate_limited", message: "presence: messages per second over the limit, resend later" });
  m.presence.set({ x: 2 });
  await tick();
  assert.deepEqual(ws.take(), [], "held until the retry");
  clock.advance(75);
  await tick();
  assert.deepEqual(ws.take(), [{ type: "presence", scope: "shared", id: "roadmap", state: { x: 2 } }]);
});
