// transports-client: the JavaScript client of the transports wire protocol
// (docs/protocol.md). One ES module, no runtime dependencies, for browsers and
// Node (Node 20: pass the `ws` package's constructor as `WebSocket`). It
// behaves as the C client does (docs/client.md): an optimistic local view,
// exactly-once writes under a stable client id, reconnect and resume.

const WINDOW = 256; // sent, unanswered writes: the server remembers a client's last 256 outcomes
const BATCH_BYTES = 65536; // a batch frame's bound (protocol)
const FINAL_CLOSES = [4403, 4404]; // access withdrawn, tenant deleted: do not reconnect
const REFUSED = [400, 401, 403, 404]; // a refused handshake that retrying cannot help

export class TransportsError extends Error {
  constructor(code, message, ref) {
    super(message);
    this.name = "TransportsError";
    this.code = code;
    if (ref !== undefined) this.ref = ref;
  }
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

// A value as stored: no object member is null, inside arrays too (null
// array elements stay).
const stored = (v) =>
  Array.isArray(v) ? v.map(stored) : isObject(v) ? mergePatch({}, v) : v;

// RFC 7396 merge patch, without touching its inputs: the result shares the
// members it did not change. Null members are never stored (protocol), so
// they are dropped from objects inside arrays as well.
export function mergePatch(target, patch) {
  if (!isObject(patch)) return stored(patch);
  const out = isObject(target) ? { ...target } : {};
  for (const k of Object.keys(patch)) {
    if (patch[k] === null) delete out[k];
    else out[k] = mergePatch(out[k], patch[k]);
  }
  return out;
}

function randomId() {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

const keyOf = (scope, id) => scope + "\n" + id;

// A JWT's `exp` in ms, read without verification (the server verifies it);
// 0 when it is not a JWT or has no numeric exp: then it is never refreshed.
function tokenExpMs(token) {
  try {
    const b = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const exp = JSON.parse(atob(b + "===".slice((b.length + 3) % 4))).exp;
    return typeof exp === "number" && exp > 0 && exp < 1e13 ? exp * 1000 : 0;
  } catch {
    return 0;
  }
}

const PRESENCE_MAX = 4096; // a presence state's bound, as compact JSON (protocol)

// A model's presence (docs/protocol.md, "Presence: who is here"): this
// client's own state, set again on every connection, and the others' states
// by their connection id, kept from the server's presence messages and
// cleared when the connection ends.
class Presence {
  constructor(model) {
    this._m = model;
    this._mine = null;
    this.others = new Map();
    this._subs = new Set();
  }
  get state() {
    return this._mine;
  }
  // Sets (an object) or clears (null) this client's state on the model. The
  // server coalesces to one state per tick: call it at every cursor move.
  set(state) {
    if (state !== null && !isObject(state)) throw new TransportsError("bad_request", "state: expected an object or null");
    const t = JSON.stringify(state);
    if (new TextEncoder().encode(t).length > PRESENCE_MAX) throw new TransportsError("too_large", `state: over the limit of ${PRESENCE_MAX} bytes`);
    this._mine = JSON.parse(t);
    this._m._c._presence(this._m);
  }
  subscribe(fn) {
    this._subs.add(fn);
    return () => this._subs.delete(fn);
  }
  _put(conn, state) {
    if (state === null) {
      if (!this.others.delete(conn)) return;
    } else this.others.set(conn, state);
    for (const fn of [...this._subs]) fn(this.others, { conn, state });
  }
  _reset(peers) {
    const next = new Map(peers.map((p) => [p.conn, p.state]));
    for (const conn of [...this.others.keys()]) if (!next.has(conn)) this._put(conn, null);
    for (const [conn, state] of next) this._put(conn, state);
  }
}

class Model {
  constructor(client, scope, id) {
    this._c = client;
    this.scope = scope;
    this.id = id;
    this.rev = 0;
    this.access = "read";
    this.schema = "";
    this._confirmed = {};
    this._view = {};
    this._subs = new Set();
    this._gap = false;
    this.presence = new Presence(this);
  }
  get value() {
    return this._view;
  }
  subscribe(fn) {
    this._subs.add(fn);
    return () => this._subs.delete(fn);
  }
  write(patch) {
    return this._c._write(this, patch);
  }
  // Recomputes the view (confirmed + pending writes in ref order) and tells
  // the subscribers when it changed.
  _update(origin, local) {
    let v = this._confirmed;
    for (const w of this._c._pending) if (w.key === this._key) v = mergePatch(v, w.patch);
    const same = JSON.stringify(v) === JSON.stringify(this._view);
    this._view = v;
    if (same) return;
    const info = { rev: this.rev, origin: origin ?? null, local: !!local };
    for (const fn of [...this._subs]) fn(v, info);
  }
  get _key() {
    return keyOf(this.scope, this.id);
  }
}

export class Client {
  constructor(url, options = {}) {
    const o = options;
    this._url = url;
    this._token = o.token;
    this._WS = o.WebSocket || globalThis.WebSocket;
    if (!this._WS) throw new TypeError("WebSocket: no constructor (in Node, pass the ws package's)");
    this._t = o.timers || { setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (h) => clearTimeout(h), now: () => Date.now() };
    this._random = o.random || Math.random;
    this._backoffMin = o.backoffMinMs ?? 250;
    this._backoffMax = o.backoffMaxMs ?? 30000;
    this._pingMs = o.pingIntervalMs ?? 20000;
    this._refreshMs = o.tokenRefreshMs ?? 30000;
    this._storage = o.storage;
    this._clientId = o.clientId;
    if (this._clientId !== undefined && (typeof this._clientId !== "string" || !this._clientId || this._clientId.length > 64))
      throw new TypeError("clientId: a string of 1 to 64 characters");
    this._nextRef = 1;
    this._pingRef = 0;
    this._models = new Map();
    this._pending = []; // {ref, key, scope, id, patch, sent, held, saved, resolve, reject}
    this._handlers = { status: new Set(), model: new Set(), error: new Set() };
    this._status = "closed";
    this._ws = null;
    this._live = false;
    this._outbox = [];
    this._attempt = 0;
    this._streak = 0; // rate_limited answers since the last ack
    this._timers = {};
    this._stopped = false;
    this._everSynced = false;
    this._syncWaiters = [];
    this.conn = null;
    this.maxMessageBytes = 1048576;
    this._ready = this._load();
    this._ready.then(() => this._connect());
  }

  get clientId() {
    return this._clientId;
  }
  get status() {
    return this._status;
  }

  // ---- public API ----

  synced() {
    if (this._everSynced) return Promise.resolve();
    if (this._stopped) return Promise.reject(new TransportsError("closed", "client closed"));
    return new Promise((resolve, reject) => this._syncWaiters.push({ resolve, reject }));
  }

  model(scope, id) {
    return this._models.get(keyOf(scope, id));
  }

  models() {
    return [...this._models.values()].map((m) => ({ scope: m.scope, id: m.id }));
  }

  // Writes not yet confirmed, in ref order (a page shows "saving..." with it).
  get pending() {
    return this._pending.length;
  }

  on(event, fn) {
    const set = this._handlers[event];
    if (!set) throw new TypeError("on: unknown event " + event);
    set.add(fn);
    return () => set.delete(fn);
  }

  close() {
    this._stopped = true;
    if (this._timers.save !== undefined) this._save();
    for (const k of Object.keys(this._timers)) this._clear(k);
    const ws = this._ws;
    this._detach();
    if (ws) try { ws.close(1000); } catch {}
    for (const w of this._syncWaiters) w.reject(new TransportsError("closed", "client closed"));
    this._syncWaiters = [];
    this._setStatus("closed");
  }

  // ---- internals ----

  _emit(event, arg) {
    for (const fn of [...this._handlers[event]]) fn(arg);
  }

  _setStatus(s) {
    if (s === this._status) return;
    this._status = s;
    this._emit("status", s);
  }

  _timer(name, ms, fn) {
    this._clear(name);
    this._timers[name] = this._t.setTimeout(() => {
      delete this._timers[name];
      fn();
    }, ms);
  }

  _clear(name) {
    if (this._timers[name] !== undefined) this._t.clearTimeout(this._timers[name]);
    delete this._timers[name];
  }

  async _load() {
    let st;
    if (this._storage) {
      try {
        st = await this._storage.load();
      } catch (e) {
        st = undefined;
      }
    }
    if (st && typeof st.clientId === "string") {
      // A stored id wins: its pending writes were numbered under it.
      this._clientId = st.clientId;
      this._nextRef = st.nextRef || 1;
      for (const w of st.writes || [])
        this._pending.push({ ref: w.ref, key: keyOf(w.scope, w.id), scope: w.scope, id: w.id, patch: w.patch, sent: false, held: false, saved: true });
      // The replicas as they were: shown at once (offline too), then resumed from their revs.
      for (const r of st.models || []) {
        const m = new Model(this, r.scope, r.id);
        Object.assign(m, { rev: r.rev, access: r.access, schema: r.schema, _confirmed: r.value });
        this._models.set(m._key, m);
        m._update(null, false);
        this._emit("model", { scope: m.scope, id: m.id, event: "added" });
      }
    }
    if (this._clientId === undefined) this._clientId = randomId();
    if (this._storage && !st) await this._save();
  }

  // The replicas changed: saved within 500 ms (not at every patch).
  _saveSoon() {
    if (this._storage && this._timers.save === undefined) this._timer("save", 500, () => this._save());
  }

  // Storage writes are chained: each saves the whole state as it is then.
  _save() {
    if (!this._storage) return Promise.resolve();
    this._clear("save");
    const state = {
      clientId: this._clientId,
      nextRef: this._nextRef,
      writes: this._pending.map((w) => ({ ref: w.ref, scope: w.scope, id: w.id, patch: w.patch })),
      models: [...this._models.values()].map((m) => ({ scope: m.scope, id: m.id, rev: m.rev, access: m.access, schema: m.schema, value: m._confirmed })),
    };
    this._saving = (this._saving || Promise.resolve()).then(() => this._storage.save(state)).catch(() => {});
    return this._saving;
  }

  async _url_() {
    let token = this._token;
    if (typeof token === "function") {
      token = await token();
      this._exp = token ? tokenExpMs(String(token)) : 0;
    }
    const u = new URL(this._url);
    if (token) u.searchParams.set("token", token);
    if (this._models.size > 0) u.searchParams.set("resume", "1");
    return u.toString();
  }

  async _connect() {
    if (this._stopped || this._ws) return;
    this._setStatus("connecting");
    let url;
    try {
      url = await this._url_();
    } catch (e) {
      return this._closed(1006, "token: " + e.message);
    }
    if (this._stopped) return;
    let ws;
    try {
      ws = new this._WS(url, "transports.v1");
    } catch (e) {
      return this._closed(1006, e.message);
    }
    this._ws = ws;
    this._refused = 0;
    ws.onopen = () => this._opened();
    ws.onmessage = (ev) => this._frame(ev.data);
    ws.onerror = (ev) => {
      // The ws package tells a refused handshake's status; browsers do not.
      const m = /Unexpected server response: (\d+)/.exec((ev && (ev.message || (ev.error && ev.error.message))) || "");
      if (m) this._refused = +m[1];
    };
    ws.onclose = (ev) => this._closed(this._refused || ev.code || 1006, ev.reason);
    this._lastRecv = this._t.now();
    this._keepalive(); // also bounds the connection attempt
  }

  _detach() {
    // The others' presence was this connection's: gone with it.
    for (const m of this._models.values()) m.presence._reset([]);
    const ws = this._ws;
    if (ws) ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    this._ws = null;
    this._live = false;
    this._outbox = [];
    this._clear("ping");
    this._clear("flush");
    this._clear("auth");
  }

  // A token function's token is renewed on the live connection (the
  // protocol's `auth`) tokenRefreshMs before its exp, or halfway through
  // what is left of a short-lived one; never sooner than 1 s.
  _authSoon(ms) {
    if (typeof this._token !== "function" || !this._exp) return;
    const left = this._exp - this._t.now();
    const wait = ms ?? Math.max(1000, left - Math.min(this._refreshMs, left / 2));
    this._timer("auth", wait, () => this._auth());
  }

  async _auth() {
    const ws = this._ws;
    let token;
    try {
      token = await this._token();
    } catch {}
    if (ws !== this._ws || this._stopped) return; // the connection went meanwhile: the next one asks again
    if (!token || typeof token !== "string") return this._authSoon(1000); // asked again
    this._exp = tokenExpMs(token);
    this._authRef = --this._pingRef;
    this._queue({ type: "auth", token, ref: this._authRef });
    this._authSoon();
  }

  _opened() {
    this._lastRecv = this._t.now();
    for (const w of this._pending) w.sent = false;
    this._held = false;
    this._authSoon();
    this._clear("retry");
    const revs = [...this._models.values()].map((m) => ({ scope: m.scope, id: m.id, rev: m.rev }));
    for (const m of this._models.values()) m._gap = false;
    if (revs.length > 0) this._queue({ type: "resume", models: revs, client: this._clientId });
    else this._queue({ type: "ping", ref: --this._pingRef, client: this._clientId });
    this._sendUnsent();
    // A state belongs to the connection that set it: each one goes again.
    this._presHeld = false;
    for (const m of this._models.values()) if (m.presence._mine) this._presence(m);
  }

  _presence(m) {
    if (this._models.get(m._key) === m && this._ws && this._ws.readyState === 1 && !this._presHeld)
      this._queue({ type: "presence", scope: m.scope, id: m.id, state: m.presence._mine });
  }

  _on_presence(msg) {
    if (typeof msg.conn !== "string" || !(msg.state === null || isObject(msg.state))) return false;
    const m = this._models.get(keyOf(msg.scope, msg.id));
    if (m) m.presence._put(msg.conn, msg.state);
  }

  _on_presence_snapshot(msg) {
    if (!Array.isArray(msg.peers) || !msg.peers.every((p) => isObject(p) && typeof p.conn === "string" && isObject(p.state))) return false;
    const m = this._models.get(keyOf(msg.scope, msg.id));
    if (m) m.presence._reset(msg.peers);
  }

  _closed(code, why) {
    this._detach();
    for (const w of this._pending) w.sent = false;
    if (this._stopped) return;
    if (FINAL_CLOSES.includes(code) || REFUSED.includes(code)) {
      this._stopped = true;
      const err = new TransportsError(code === 4403 ? "forbidden" : code === 4404 ? "not_found" : "refused", `connection refused (${code}${why ? ": " + why : ""})`);
      for (const w of this._syncWaiters) w.reject(err);
      this._syncWaiters = [];
      this._emit("error", err);
      this._setStatus("closed");
      return;
    }
    // Full jitter: anywhere in [0, d], d doubling from backoffMinMs up to
    // backoffMaxMs, so that clients who lost one server do not come back at once.
    const d = Math.min(this._backoffMax, this._backoffMin * 2 ** this._attempt);
    // The credential expired (4401) on a connection that was synced: again at
    // once, with a fresh token from a token function.
    const now = code === 4401 && this._attempt === 0;
    this._attempt++;
    this._setStatus("waiting");
    this._timer("reconnect", now ? 0 : Math.floor(this._random() * d), () => this._connect());
  }

  // Drops the connection at once (a silent server, a protocol violation).
  _drop(why) {
    const ws = this._ws;
    this._detach();
    if (ws) try { ws.close(); } catch {}
    this._closed(1006, why);
  }

  _keepalive() {
    const now = this._t.now();
    const quiet = now - this._lastRecv;
    if (quiet >= 2 * this._pingMs) return this._drop("no answer for " + quiet + " ms");
    if (quiet >= this._pingMs && this._ws && this._ws.readyState === 1 && !this._pingSent) {
      this._pingSent = true;
      this._queue({ type: "ping", ref: --this._pingRef });
    }
    const next = quiet >= this._pingMs ? 2 * this._pingMs - quiet : this._pingMs - quiet;
    this._timer("ping", next, () => this._keepalive());
  }

  _queue(msg) {
    this._outbox.push(msg);
    if (this._timers.flush === undefined && !this._flushing) {
      this._flushing = true;
      queueMicrotask(() => {
        this._flushing = false;
        this._flush();
      });
    }
  }

  // Everything queued in one turn leaves as one frame (a batch of at most
  // 64 KiB, or one message alone).
  _flush() {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return;
    let batch = [];
    let size = 2;
    const send = () => {
      if (batch.length === 1) ws.send(batch[0]);
      else if (batch.length > 1) ws.send("[" + batch.join(",") + "]");
      batch = [];
      size = 2;
    };
    for (const m of this._outbox) {
      const t = JSON.stringify(m);
      if (batch.length > 0 && size + t.length + 1 > BATCH_BYTES) send();
      batch.push(t);
      size += t.length + 1;
    }
    send();
    this._outbox = [];
  }

  _sendUnsent() {
    if (!this._ws || this._ws.readyState !== 1) return;
    let inflight = this._pending.filter((w) => w.sent).length;
    for (const w of this._pending) {
      if (inflight >= WINDOW) break;
      if (!w.sent && !w.held && w.saved) {
        w.sent = true;
        inflight++;
        this._queue({ type: "write", scope: w.scope, id: w.id, patch: w.patch, ref: w.ref });
      }
    }
  }

  _write(m, patch) {
    const fail = (code, message) => Promise.reject(new TransportsError(code, message));
    if (this._models.get(m._key) !== m) return fail("not_found", `id: model "${m.id}" in scope "${m.scope}" is not held`);
    if (m.access !== "write") return fail("forbidden", `access: model "${m.id}" in scope "${m.scope}" is read-only for this tenant`);
    if (!isObject(patch)) return fail("bad_request", "patch: expected an object");
    let text;
    try {
      text = JSON.stringify(patch);
    } catch (e) {
      return fail("bad_request", "patch: " + e.message);
    }
    // The message's bytes: the patch's UTF-8, plus the envelope (scope, id, ref).
    const bytes = new TextEncoder().encode(text + m.scope + m.id).length + 64;
    if (bytes > this.maxMessageBytes) return fail("too_large", `patch: the write would be over the server's max_message_bytes (${this.maxMessageBytes})`);
    const w = { ref: this._nextRef++, key: m._key, scope: m.scope, id: m.id, patch: JSON.parse(text), sent: false, held: false, saved: !this._storage };
    const p = new Promise((resolve, reject) => Object.assign(w, { resolve, reject }));
    this._pending.push(w);
    m._update(this.conn, true);
    if (this._storage) {
      // A ref is stored before it is sent, so that a reloaded page never reuses it.
      this._save().then(() => {
        w.saved = true;
        this._sendUnsent();
      });
    } else this._sendUnsent();
    return p;
  }

  _settle(w, err, result) {
    const i = this._pending.indexOf(w);
    if (i >= 0) this._pending.splice(i, 1);
    this._save();
    if (err) {
      if (w.reject) w.reject(err);
      else this._emit("error", err); // a write restored from storage: nobody awaits it
    } else if (w.resolve) w.resolve(result);
  }

  _frame(data) {
    this._lastRecv = this._t.now();
    this._pingSent = false;
    let msgs;
    try {
      msgs = JSON.parse(typeof data === "string" ? data : String(data));
    } catch {
      return this._drop("protocol: a frame that is not JSON");
    }
    if (!Array.isArray(msgs)) msgs = [msgs];
    for (const msg of msgs) {
      if (!this._ws) return; // dropped by an earlier message
      if (!isObject(msg) || typeof msg.type !== "string") return this._drop("protocol: a message without a type");
      const h = this["_on_" + msg.type];
      if (h) {
        if (h.call(this, msg) === false) return this._drop("protocol: a malformed " + msg.type);
      }
    }
  }

  _on_hello(msg) {
    if (msg.protocol !== 1) return false;
    this.conn = msg.conn;
    this.tenant = msg.tenant;
    if (Number.isInteger(msg.max_message_bytes)) this.maxMessageBytes = msg.max_message_bytes;
  }

  _on_snapshot(msg) {
    if (typeof msg.scope !== "string" || typeof msg.id !== "string" || !Number.isInteger(msg.rev) || !isObject(msg.value)) return false;
    const key = keyOf(msg.scope, msg.id);
    let m = this._models.get(key);
    const added = !m;
    if (added) {
      m = new Model(this, msg.scope, msg.id);
      this._models.set(key, m);
    }
    m.schema = msg.schema || "";
    m.access = msg.access === "write" ? "write" : "read";
    m._confirmed = msg.value;
    m.rev = msg.rev;
    m._gap = false;
    this._saveSoon();
    m._update(null, false);
    if (added) this._emit("model", { scope: m.scope, id: m.id, event: "added" });
  }

  _on_patch(msg) {
    if (typeof msg.scope !== "string" || typeof msg.id !== "string" || !Number.isInteger(msg.from) || !Number.isInteger(msg.rev) || msg.rev <= msg.from || !isObject(msg.patch)) return false;
    const m = this._models.get(keyOf(msg.scope, msg.id));
    if (!m || msg.rev <= m.rev) return; // removed meanwhile, or already held (a resume answer may overlap)
    if (msg.from !== m.rev) return this._resync(m);
    m._confirmed = mergePatch(m._confirmed, msg.patch);
    m.rev = msg.rev;
    m._gap = false;
    this._saveSoon();
    m._update(msg.origin, msg.origin === this.conn);
  }

  // A rev gap: ask again for this model, ignore its patches until the answer.
  _resync(m) {
    if (m._gap) return;
    m._gap = true;
    if (this._held) return; // a resume refused with rate_limited: after the delay
    this._queue({ type: "resume", models: [{ scope: m.scope, id: m.id, rev: m.rev }] });
  }

  _on_synced() {
    this._live = true;
    this._attempt = 0;
    this._everSynced = true;
    this._setStatus("open");
    for (const w of this._syncWaiters) w.resolve();
    this._syncWaiters = [];
  }

  _on_ack(msg) {
    if (msg.ref < 0 && msg.rev === undefined) return; // an `auth` accepted
    if (!Number.isInteger(msg.ref) || !Number.isInteger(msg.rev)) return false;
    if (msg.from !== undefined && !(Number.isInteger(msg.from) && msg.rev > msg.from)) return false;
    const w = this._pending.find((x) => x.ref === msg.ref);
    if (!w) return; // not ours any more (its model was removed), or answered twice
    const m = this._models.get(w.key);
    if (m && msg.from !== undefined && m.scope === "private") {
      // A private write is not echoed: applied as sent to the value at from, it gives rev.
      if (m.rev === msg.from) {
        m._confirmed = mergePatch(m._confirmed, w.patch);
        m.rev = msg.rev;
      } else if (m.rev < msg.rev) this._resync(m);
    }
    this._streak = 0;
    this._settle(w, null, { rev: msg.rev });
    if (m) m._update(this.conn, true); // an lww-map field that lost shows now
    this._sendUnsent();
  }

  _on_error(msg) {
    if (typeof msg.code !== "string") return false;
    const message = typeof msg.message === "string" ? msg.message : "";
    const w = Number.isInteger(msg.ref) && msg.ref > 0 ? this._pending.find((x) => x.ref === msg.ref) : undefined;
    if (msg.ref !== undefined && msg.ref === this._authRef) {
      // A refused `auth`: sent again in 1 s when the server could not check
      // it now; otherwise the connection goes on until the server closes it
      // with 4401, and the reconnect asks for a fresh token.
      this._authRef = undefined;
      if (msg.code === "rate_limited" || msg.code === "internal") this._authSoon(1000);
      else this._clear("auth");
      return this._emit("error", new TransportsError(msg.code, "auth: " + message, msg.ref));
    }
    if (msg.code === "rate_limited" && (w || !(msg.ref > 0))) {
      // Not recorded by the server: held, then sent again with the same ref
      // after 100 ms doubling per refusal up to 10 s, in the delay's upper half.
      if (w) {
        w.sent = false;
        w.held = true;
      } else if (message.startsWith("presence:")) this._presHeld = true;
      else this._resumeHeld = true;
      this._held = true;
      if (this._timers.retry === undefined) {
        const d = Math.min(10000, 100 * 2 ** this._streak);
        this._streak++;
        this._timer("retry", d / 2 + this._random() * (d / 2), () => this._retry());
      }
      return;
    }
    const err = new TransportsError(msg.code, message, msg.ref);
    if (!w) return this._emit("error", err); // a ping, a resume: nothing to roll back
    this._settle(w, err);
    const m = this._models.get(w.key);
    if (m) m._update(null, true); // rolled back
    this._sendUnsent();
  }

  _retry() {
    this._held = false;
    for (const w of this._pending) w.held = false;
    if (this._presHeld) {
      this._presHeld = false;
      for (const m of this._models.values()) if (m.presence._mine) this._presence(m);
    }
    if (this._resumeHeld) {
      this._resumeHeld = false;
      const models = [...this._models.values()].filter((m) => m._gap).map((m) => ({ scope: m.scope, id: m.id, rev: m.rev }));
      if (models.length && this._ws) this._queue({ type: "resume", models });
    }
    this._sendUnsent();
  }

  _on_access(msg) {
    const m = this._models.get(keyOf(msg.scope, msg.id));
    if (!m) return;
    m.access = msg.access === "write" ? "write" : "read";
    this._saveSoon();
    this._emit("model", { scope: m.scope, id: m.id, event: "access" });
  }

  _on_removed(msg) {
    const key = keyOf(msg.scope, msg.id);
    const m = this._models.get(key);
    if (!m) return;
    this._models.delete(key);
    this._saveSoon();
    for (const w of this._pending.filter((x) => x.key === key))
      this._settle(w, new TransportsError("not_found", `id: model "${m.id}" in scope "${m.scope}" was removed`, w.ref));
    this._emit("model", { scope: m.scope, id: m.id, event: "removed" });
  }
}

// Offline writes that survive a reload: the client id, the next ref and the
// pending writes, kept in IndexedDB under `name` (one name per tab: two
// clients must not share a client id at once).
export function indexedDBStorage(name, idb = globalThis.indexedDB) {
  const open = () =>
    new Promise((resolve, reject) => {
      const r = idb.open("transports-client", 1);
      r.onupgradeneeded = () => r.result.createObjectStore("state");
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
  let db;
  const tx = async (mode, f) => {
    db = db || (await open());
    return new Promise((resolve, reject) => {
      const t = db.transaction("state", mode);
      const req = f(t.objectStore("state"));
      t.oncomplete = () => resolve(req.result);
      t.onerror = t.onabort = () => reject(t.error);
    });
  };
  return {
    load: () => tx("readonly", (s) => s.get(name)),
    save: (state) => tx("readwrite", (s) => s.put(state, name)),
  };
}
