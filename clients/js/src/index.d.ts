// Type declarations of transports-client (src/index.js). docs/js-client.md explains them.

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export type Scope = "private" | "shared";
export type Access = "read" | "write";
export type Status = "connecting" | "open" | "waiting" | "closed";

/** The protocol's error codes, and the client's own for a refused or ended connection. */
export type ErrorCode =
  | "bad_request"
  | "not_found"
  | "forbidden"
  | "invalid"
  | "rejected"
  | "too_large"
  | "rate_limited"
  | "duplicate"
  | "internal"
  | "refused"
  | "closed";

export class TransportsError extends Error {
  readonly name: "TransportsError";
  readonly code: ErrorCode;
  /** The write's ref, when the error answers a write. */
  readonly ref?: number;
  constructor(code: ErrorCode, message: string, ref?: number);
}

/** What is kept across reloads by `storage`. */
export interface StoredState {
  clientId: string;
  nextRef: number;
  writes: { ref: number; scope: Scope; id: string; patch: JsonObject }[];
  models: { scope: Scope; id: string; rev: number; access: Access; schema: string; value: JsonObject }[];
}

export interface Storage {
  load(): Promise<StoredState | undefined>;
  save(state: StoredState): Promise<void>;
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  now(): number;
}

export interface ClientOptions {
  /**
   * Sent as ?token=. A function is asked again before every connection (a fresh token at
   * reconnect, at once after a 4401 close) and, when its token is a JWT with `exp`, again
   * tokenRefreshMs before that exp: the new token is sent in an `auth` message on the live
   * connection.
   */
  token?: string | (() => string | Promise<string>);
  /** How long before a function token's exp it is renewed (30000); halfway for shorter-lived ones. */
  tokenRefreshMs?: number;
  /** The stable id behind exactly-once writes, 1 to 64 characters (default: random, or the stored one). */
  clientId?: string;
  /** The WebSocket constructor (Node 20: the `ws` package's). Default: globalThis.WebSocket. */
  WebSocket?: unknown;
  /** Keeps pending writes, the client id and the replicas across reloads (indexedDBStorage()). */
  storage?: Storage;
  /** Reconnect delays: from backoffMinMs (250) doubling up to backoffMaxMs (30000), full jitter. */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** A ping after this long without traffic (20000); the connection is dropped after twice that. */
  pingIntervalMs?: number;
  /** For tests: a clock and a random source. */
  timers?: Timers;
  random?: () => number;
}

export interface ChangeInfo {
  /** The confirmed rev. */
  rev: number;
  /** The writing connection's id, "host", or null (a snapshot, a rollback, a local write). */
  origin: string | null;
  /** The change comes from this client (its write, a rollback, its own echo). */
  local: boolean;
}

/** What a presence subscriber is told: which connection changed, and its state (null: it left). */
export interface PresenceChange {
  conn: string;
  state: JsonObject | null;
}

/**
 * A model's presence (docs/protocol.md, "Presence: who is here"): who else is
 * on the model and their state (a name, a cursor), by connection id.
 */
export interface Presence {
  /** This client's state on the model, or null. */
  readonly state: JsonObject | null;
  /**
   * Sets this client's state (an object of at most 4 KiB as JSON), or clears it
   * (null). Sent at once when connected and again after every reconnect; the
   * server coalesces to one state per tick. Throws TransportsError
   * ("bad_request", "too_large").
   */
  set(state: JsonObject | null): void;
  /** The others' states by connection id; empty while disconnected. */
  readonly others: ReadonlyMap<string, JsonObject>;
  /** Called at each change of others. Returns the function that unsubscribes. */
  subscribe(fn: (others: ReadonlyMap<string, JsonObject>, change: PresenceChange) => void): () => void;
}

export interface Model<T extends JsonObject = JsonObject> {
  readonly scope: Scope;
  readonly id: string;
  /** The local view: the confirmed value with the pending writes on top, in ref order. */
  readonly value: T;
  /** The confirmed rev. */
  readonly rev: number;
  readonly access: Access;
  /** The schema's title. */
  readonly schema: string;
  /** Called each time the local view changes. Returns the function that unsubscribes. */
  subscribe(fn: (value: T, info: ChangeInfo) => void): () => void;
  /** Who else is on the model: presence (set yours with presence.set). */
  readonly presence: Presence;
  /** An RFC 7396 merge patch: applied to `value` at once; resolves at the ack, rejects (rolled back) at an error. */
  write(patch: Partial<{ [K in keyof T]: T[K] | null }> & JsonObject): Promise<{ rev: number }>;
}

export interface ModelEvent {
  scope: Scope;
  id: string;
  event: "added" | "removed" | "access";
}

export class Client {
  constructor(url: string, options?: ClientOptions);
  /** Resolves at the first `synced`; rejects if the client is closed or refused first. */
  synced(): Promise<void>;
  /** The model, or undefined until its snapshot arrived (or after it was removed). */
  model<T extends JsonObject = JsonObject>(scope: Scope, id: string): Model<T> | undefined;
  models(): { scope: Scope; id: string }[];
  on(event: "status", fn: (status: Status) => void): () => void;
  on(event: "model", fn: (e: ModelEvent) => void): () => void;
  /** Errors no write awaits: a refused connection, a restored write's refusal, an error without a ref. */
  on(event: "error", fn: (e: TransportsError) => void): () => void;
  close(): void;
  readonly status: Status;
  readonly clientId: string | undefined;
  /** The number of writes not yet acknowledged. */
  readonly pending: number;
  /** This connection's id (hello's conn), or null before the first hello. */
  readonly conn: string | null;
  readonly tenant: string | undefined;
  readonly maxMessageBytes: number;
}

/** Storage in IndexedDB under `name` (one name per tab: two live clients must not share a client id). */
export function indexedDBStorage(name: string, idb?: unknown): Storage;

/** RFC 7396, without touching its inputs; null members are never stored, inside arrays too. */
export function mergePatch(target: Json, patch: Json): Json;
