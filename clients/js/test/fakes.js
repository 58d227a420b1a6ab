// Test doubles: a fake clock (timers that run only when the test advances
// time) and a fake WebSocket whose server side the test plays.

export class FakeClock {
  constructor(start = 1000) {
    this.t = start;
    this.seq = 0;
    this.timers = new Map();
    this.setTimeout = (fn, ms) => {
      const id = ++this.seq;
      this.timers.set(id, { at: this.t + Math.max(0, ms), fn, id });
      return id;
    };
    this.clearTimeout = (id) => this.timers.delete(id);
    this.now = () => this.t;
  }
  // The delays of the timers waiting now, soonest first.
  pending() {
    return [...this.timers.values()].sort((a, b) => a.at - b.at || a.id - b.id).map((x) => x.at - this.t);
  }
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      const next = [...this.timers.values()].sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!next || next.at > end) break;
      this.timers.delete(next.id);
      this.t = next.at;
      next.fn();
    }
    this.t = end;
  }
}

// Each instance is pushed on `FakeWS.made` (use a fresh class per test:
// fakeWebSocket()).
export function fakeWebSocket() {
  class FakeWS {
    static made = [];
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.frames = []; // the texts the client sent
      FakeWS.made.push(this);
    }
    send(text) {
      if (this.readyState !== 1) throw new Error("send on a socket that is not open");
      this.frames.push(text);
    }
    close(code) {
      this.readyState = 3;
      this.closedWith = code ?? 1005;
    }
    // ---- the server's side ----
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }
    recv(msg) {
      this.onmessage?.({ data: typeof msg === "string" ? msg : JSON.stringify(msg) });
    }
    serverClose(code = 1006, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
    fail(message) {
      this.onerror?.({ message });
      this.serverClose(1006);
    }
    // Every message sent so far, batches flattened; `take` empties the list.
    messages() {
      return this.frames.flatMap((f) => {
        const v = JSON.parse(f);
        return Array.isArray(v) ? v : [v];
      });
    }
    take() {
      const m = this.messages();
      this.frames = [];
      return m;
    }
  }
  return FakeWS;
}

// Lets queued microtasks (the client's batched sends, storage) run.
export const tick = () => new Promise((r) => setImmediate(r));
