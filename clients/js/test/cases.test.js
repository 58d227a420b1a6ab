// The protocol cases of tests/cases/proto (the ones the C tests run against the
// core), replayed on the client's side. A case states what the server sends
// each connection; here one Client per connection receives exactly that, and
// the writes the case sends are the client's own pending writes. The client
// must then:
// - never take a valid server stream for a protocol violation (no drop);
// - settle each of its writes as the server's answer says: resolved with the
//   ack's rev, or rejected with the error's code (rate_limited: held, kept);
// - hold, for every model at a rev, the value every other client of the same
//   model holds at that rev, and the host's value when a case's expect_value
//   names that rev;
// - show the confirmed value once no write is pending (rollbacks complete).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Client } from "../src/index.js";
import { FakeClock, fakeWebSocket, tick } from "./fakes.js";

const dir = fileURLToPath(new URL("../../../tests/cases/proto/", import.meta.url));
const cases = readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();

// Expected messages with their placeholders made concrete ($unordered in the
// order written: the protocol leaves the order open, the client must not care).
function concrete(v) {
  if (Array.isArray(v)) return v.flatMap((x) => (x && x.$unordered ? x.$unordered.map(concrete) : [concrete(x)]));
  if (v && typeof v === "object") {
    if ("$prefix" in v) return v.$prefix;
    if ("$any" in v) return null;
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, concrete(x)]));
  }
  return v;
}

function frameMessages(step) {
  if (!("frame" in step)) return [];
  const n = step.repeat || 1;
  const out = [];
  for (let i = 0; i < n; i++) {
    const f = step.frame;
    const list = Array.isArray(f) ? f : [f];
    for (const m of list) if (m && typeof m === "object") out.push(i && Number.isInteger(m.ref) ? { ...m, ref: m.ref + i } : m);
  }
  return out;
}

const stats = { settled: 0, crossChecked: 0, hostChecked: 0, messages: 0 };

for (const name of cases) {
  test(`case ${name}`, async () => {
    const c = JSON.parse(readFileSync(dir + name + "/case.json", "utf8"));
    const dirty = new Set(); // models with a host change not yet published
    const conns = new Map(); // label -> {client, WS, clock, ws, tenant, writes: Map(ref -> {state, value})}
    const where = (i, step) => `${name} step ${i} (${Object.keys(step).filter((k) => k !== "comment")[0]})`;

    const open = async (label, tenant, resume) => {
      const prev = conns.get(label);
      if (resume && prev && prev.tenant === tenant) {
        // A reconnecting client: the same Client, its replicas kept.
        prev.clock.advance(60000);
        await tick();
        prev.ws = prev.WS.made.at(-1);
        prev.ws.open();
        prev.drops = 0;
        return;
      }
      if (prev) prev.client.close();
      const clock = new FakeClock();
      const WS = fakeWebSocket();
      const client = new Client(`ws://127.0.0.1/ws/${tenant}`, { WebSocket: WS, timers: clock, random: () => 0.5, clientId: "case-" + label });
      const conn = { client, WS, clock, tenant, writes: new Map(), sends: new Map(), unnamed: new Set(), drops: 0 };
      client.on("status", (s) => {
        if (s === "waiting" && !conn.closing) conn.drops++;
      });
      await tick();
      conn.ws = WS.made[0];
      conn.ws.open();
      conns.set(label, conn);
    };

    // A write the case sends becomes a pending write of the client, made the
    // way the client makes them when it holds the model and may write it, and
    // otherwise put in its queue as sent (the server's answer must settle it).
    const sendWrite = (conn, msg) => {
      const cl = conn.client;
      if (typeof msg.scope !== "string" || typeof msg.id !== "string" || !Number.isInteger(msg.ref) || msg.ref <= 0) return;
      if (cl._pending.some((w) => w.ref === msg.ref)) return; // a resend: the same pending write
      // A ref already settled and sent again: with a client id, the server
      // answers from memory (settled again, alike); without one, or after
      // an outcome it does not record (internal), it is a new write.
      const before = conn.writes.get(msg.ref);
      if (before && before.state === "ack" && !conn.unnamed.has(msg.ref)) return;
      const rec = { state: "pending" };
      conn.writes.set(msg.ref, rec);
      const key = msg.scope + "\n" + msg.id;
      const w = { ref: msg.ref, key, scope: msg.scope, id: msg.id, patch: msg.patch, sent: true, held: false, saved: true };
      const p = new Promise((resolve, reject) => Object.assign(w, { resolve, reject }));
      p.then((r) => Object.assign(rec, { state: "ack", rev: r.rev }), (e) => Object.assign(rec, { state: "error", code: e.code }));
      cl._pending.push(w);
      cl._pending.sort((a, b) => a.ref - b.ref);
      cl._nextRef = Math.max(cl._nextRef, msg.ref + 1);
      const m = cl.model(msg.scope, msg.id);
      if (m) m._update(cl.conn, true);
    };

    const crossCheck = (at) => {
      const byModel = new Map();
      for (const [label, conn] of conns) {
        if (conn.closed) continue;
        for (const { scope, id } of conn.client.models()) {
          const m = conn.client.model(scope, id);
          if (m._gap) continue;
          const k = `${scope}/${scope === "private" ? conn.tenant + "/" : ""}${id}@${m.rev}`;
          const confirmed = JSON.stringify(sortKeys(m._confirmed));
          if (byModel.has(k)) {
            assert.equal(confirmed, byModel.get(k).v, `${at}: ${label} and ${byModel.get(k).label} hold ${k} differently`);
            stats.crossChecked++;
          } else byModel.set(k, { v: confirmed, label });
          if (!conn.client._pending.some((w) => w.key === m._key)) assert.deepEqual(m.value, m._confirmed, `${at}: ${label} ${scope}/${id}: the view is not the confirmed value with nothing pending`);
        }
      }
    };

    for (const [i, step] of c.steps.entries()) {
      const at = where(i, step);
      if ("open" in step) await open(step.open, step.tenant, !!step.resume);
      else if ("send" in step) {
        const conn = conns.get(step.send);
        for (const msg of frameMessages(step)) {
          if (msg.client !== undefined) conn.named = true;
          if (msg.type !== "write") continue;
          conn.sends.set(msg.ref, (conn.sends.get(msg.ref) || 0) + 1);
          if (!conn.named) conn.unnamed.add(msg.ref); // sent before the connection named its client
          sendWrite(conn, msg);
        }
      } else if ("expect" in step || "drain" in step) {
        if ("drain" in step) continue; // the messages are not stated: nothing to replay
        const conn = conns.get(step.expect);
        const msgs = concrete(step.messages);
        stats.messages += msgs.length;
        if (msgs.length) conn.ws.recv(msgs);
        await tick();
        if (step.close_code !== undefined) {
          // The server closes: the client must only wait to reconnect.
          conn.closing = true;
          if (conn.ws.readyState === 1) conn.ws.serverClose(step.close_code);
        }
        assert.equal(conn.drops, 0, `${at}: the client dropped a valid server stream`);
        for (const m of msgs) {
          // A client never sends one ref twice unnamed: such refs (a case of
          // the server's) have no single outcome to check.
          if (conn.unnamed.has(m.ref) && conn.sends.get(m.ref) > 1) continue;
          if ((m.type === "ack" || m.type === "error") && Number.isInteger(m.ref) && conn.writes.has(m.ref)) {
            const rec = conn.writes.get(m.ref);
            if (m.type === "ack") assert.deepEqual([rec.state, rec.rev], ["ack", m.rev], `${at}: ref ${m.ref}`);
            else if (m.code === "rate_limited") assert.equal(rec.state, "pending", `${at}: ref ${m.ref} rate_limited must stay pending`);
            else assert.deepEqual([rec.state, rec.code], ["error", m.code], `${at}: ref ${m.ref}`);
            stats.settled++;
          }
        }
        crossCheck(at);
      } else if ("close" in step) {
        const conn = conns.get(step.close);
        conn.closing = true;
        conn.ws.serverClose(1000);
      } else if ("host_set" in step) {
        dirty.add(step.host_set.scope + "/" + step.host_set.id);
      } else if ("sync" in step) {
        dirty.clear();
      } else if ("expect_value" in step) {
        const e = step.expect_value;
        // The host's value includes a change not yet published at any rev.
        if (e.value === null || e.rev === undefined || dirty.has(e.scope + "/" + e.id)) continue;
        for (const [label, conn] of conns) {
          if (e.tenant !== undefined && conn.tenant !== e.tenant) continue;
          const m = conn.client.model(e.scope, e.id);
          if (!m || m._gap || m.rev !== e.rev) continue;
          assert.deepEqual(sortKeys(m._confirmed), sortKeys(e.value), `${at}: ${label} at rev ${e.rev}`);
          stats.hostChecked++;
        }
      }
    }
    for (const conn of conns.values()) conn.client.close();
  });
}

function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object") return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
  return v;
}

test("the replay checked something in every direction", () => {
  assert.ok(cases.length >= 40, `${cases.length} cases`);
  assert.ok(stats.messages > 300, JSON.stringify(stats));
  assert.ok(stats.settled > 30, JSON.stringify(stats));
  assert.ok(stats.crossChecked > 30, JSON.stringify(stats));
  assert.ok(stats.hostChecked > 10, JSON.stringify(stats));
  console.log("# replay:", JSON.stringify(stats));
});
