/*
 * transports: typed JSON models kept in sync between a server and its clients,
 * for many tenants at once.
 *
 * This is the whole public API. Every long-lived object is opaque; plain
 * configuration and value structs show their fields. Values cross the API as
 * JSON text, and as jansson json_t inside merge callbacks.
 *
 * Conventions (see docs/api.md):
 *   - strings passed in are copied;
 *   - a returned `const char *` (an id) is owned by the hub and lives as long
 *     as the model it names;
 *   - a returned `char *` is the caller's to free() (or to tp_free() when a
 *     custom allocator is set);
 *   - a call that can fail returns NULL or a negative TP_E... code and, when
 *     given one, fills a tp_error whose message names the field.
 *
 * Thread: every call on a hub, its sessions and its connections belongs to
 * one thread at a time (the server's loop thread once a server runs). There
 * are no locks in the core.
 */
#ifndef TP_TRANSPORTS_H
#define TP_TRANSPORTS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TP_BUILDING) && defined(__GNUC__)
#define TP_API __attribute__((visibility("default")))
#else
#define TP_API
#endif

#define TP_VERSION_MAJOR 0
#define TP_VERSION_MINOR 1
#define TP_VERSION_PATCH 0
#define TP_VERSION "0.1.0"

/** tp_version returns the library's version string, "MAJOR.MINOR.PATCH". */
TP_API const char *tp_version(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * The first nine codes map one to one onto PROTOCOL.md's error codes; the
 * rest are errors of the C API that never travel on the wire.
 */
enum {
    TP_OK = 0,
    TP_EBADREQUEST = -1,  /* bad_request */
    TP_ENOTFOUND = -2,    /* not_found */
    TP_EFORBIDDEN = -3,   /* forbidden */
    TP_EINVALID = -4,     /* invalid */
    TP_EREJECTED = -5,    /* rejected */
    TP_ETOOLARGE = -6,    /* too_large */
    TP_ERATELIMITED = -7, /* rate_limited */
    TP_EDUPLICATE = -8,   /* duplicate */
    TP_EINTERNAL = -9,    /* internal */
    TP_ENOMEM = -10,      /* out of memory (internal on the wire) */
    TP_EEXIST = -11,      /* an id is already taken */
    TP_ESCHEMA = -12,     /* a JSON Schema document cannot be loaded */
    TP_EARG = -13,        /* a bad argument to a C call */
    TP_ECLOSED = -14      /* the connection is closed */
};

/** tp_error carries a code and a message that names the field at fault. */
typedef struct tp_error {
    int code;
    char message[256];
} tp_error;

/** tp_strerror returns a short English description of a TP_E... code. */
TP_API const char *tp_strerror(int code);

/**
 * tp_error_name returns PROTOCOL.md's name of a code ("bad_request", ...).
 * Codes that never travel on the wire map to the wire code a client would
 * see: TP_ENOMEM to "internal", TP_EEXIST and TP_EARG to "bad_request",
 * TP_ESCHEMA to "invalid".
 */
TP_API const char *tp_error_name(int code);

/* ------------------------------------------------------------------------ */
/* Allocation                                                                */
/* ------------------------------------------------------------------------ */

/** tp_allocator holds the functions every allocation of the library uses. */
typedef struct tp_allocator {
    void *(*malloc_fn)(size_t size);
    void *(*realloc_fn)(void *ptr, size_t size);
    void (*free_fn)(void *ptr);
} tp_allocator;

/**
 * tp_set_allocator replaces the allocator of the library. Pass NULL to
 * restore malloc, realloc and free. jansson's allocator is left as it is:
 * it is process-wide and the host program's to set (json_set_alloc_funcs),
 * for the jansson values the library builds too.
 * Thread: call it before any other call of the library, never while objects
 * made with another allocator are alive.
 */
TP_API void tp_set_allocator(const tp_allocator *allocator);

/** tp_free frees a `char *` returned by the library. NULL is allowed. */
TP_API void tp_free(void *ptr);

/* ------------------------------------------------------------------------ */
/* Schemas                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct tp_schema tp_schema;

/**
 * tp_schema_new loads a JSON Schema as pydantic's model_json_schema() emits
 * it (v2; v2.0 to 2.8 allOf wrappers; v1 "definitions"). A keyword it does
 * not support is an error, never silently ignored. Patterns are POSIX
 * extended regular expressions (regcomp with REG_EXTENDED), unanchored as in
 * JSON Schema.
 * Ownership: copies the text; returns new (release with tp_schema_free).
 * Errors: NULL with TP_ESCHEMA and the JSON path of the offending keyword.
 */
TP_API tp_schema *tp_schema_new(const char *json_schema, tp_error *err);

/**
 * tp_schema_free releases the caller's reference. A hub keeps its own
 * reference to every schema it uses. NULL is allowed.
 */
TP_API void tp_schema_free(tp_schema *schema);

/** tp_schema_title returns the schema's "title" ("" when it has none). */
TP_API const char *tp_schema_title(const tp_schema *schema);

/**
 * tp_schema_validate checks a JSON text against the schema.
 * Returns TP_OK, or TP_EINVALID (TP_EBADREQUEST when the text is not JSON)
 * with a message such as "items[3].qty: 0 is less than the minimum 1".
 */
TP_API int tp_schema_validate(const tp_schema *schema, const char *value, tp_error *err);

/* ------------------------------------------------------------------------ */
/* Merge patches (RFC 7396)                                                  */
/* ------------------------------------------------------------------------ */

/**
 * tp_merge_patch_apply returns the result of applying the merge patch
 * `patch` to `target` (RFC 7396). Neither argument is changed.
 * Ownership: returns new (json_decref).
 */
TP_API json_t *tp_merge_patch_apply(const json_t *target, const json_t *patch);

/**
 * tp_merge_patch_diff returns the smallest merge patch that turns `a` into
 * `b`: an empty object when they are equal. When b is not an object, the
 * patch is b itself. Ownership: returns new (json_decref).
 */
TP_API json_t *tp_merge_patch_diff(const json_t *a, const json_t *b);

/* ------------------------------------------------------------------------ */
/* Requests (the handshake seen by the key function)                         */
/* ------------------------------------------------------------------------ */

typedef struct tp_request tp_request;

/** tp_request_path_param returns a route parameter, or NULL. Borrowed. */
TP_API const char *tp_request_path_param(const tp_request *req, const char *name);
/** tp_request_query returns a decoded query parameter, or NULL. Borrowed. */
TP_API const char *tp_request_query(const tp_request *req, const char *name);
/** tp_request_header returns a header (name case-insensitive), or NULL. Borrowed. */
TP_API const char *tp_request_header(const tp_request *req, const char *name);
/** tp_request_path returns the request's path without its query. Borrowed. */
TP_API const char *tp_request_path(const tp_request *req);

/**
 * tp_request_new makes an empty request, for transports other than the
 * built-in server and for tests. Ownership: returns new (tp_request_free).
 */
TP_API tp_request *tp_request_new(const char *path);
TP_API void tp_request_free(tp_request *req);
/** tp_request_set_path_param, _set_query, _set_header copy name and value. */
TP_API int tp_request_set_path_param(tp_request *req, const char *name, const char *value);
TP_API int tp_request_set_query(tp_request *req, const char *name, const char *value);
TP_API int tp_request_set_header(tp_request *req, const char *name, const char *value);

/* ------------------------------------------------------------------------ */
/* The hub                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct tp_hub tp_hub;
typedef struct tp_session tp_session;
typedef struct tp_conn tp_conn;

typedef enum { TP_READ = 1, TP_WRITE = 2 } tp_access;

/** tp_key_fn returns the tenant key of a handshake, or NULL to refuse it (403). */
typedef const char *(*tp_key_fn)(const tp_request *req, void *user);

/** tp_clock_fn returns the wall clock in milliseconds since the epoch. */
typedef int64_t (*tp_clock_fn)(void *user);

/** The longest tenant key a credential may name, in bytes. */
#define TP_CREDENTIAL_TENANT_MAX 256

/** tp_credential is what a verifier found in a token. */
typedef struct tp_credential {
    char tenant[TP_CREDENTIAL_TENANT_MAX + 1]; /* the tenant key, NUL-terminated */
    /* From this moment on (hub clock, ms) the credential is refused and
     * the connection closes with 4401; 0: it never expires. */
    int64_t expires_at_ms;
} tp_credential;

/**
 * tp_verify_fn checks a token (len bytes, not NUL-terminated) at now_ms (the
 * hub's clock) and fills *out. Returns TP_OK, or TP_EFORBIDDEN for a token
 * refused (TP_ENOMEM, TP_EINTERNAL when it could not tell) with a message
 * for logs that holds no part of the token: it is a credential. Called on
 * the loop thread, at each handshake and each `auth` message.
 */
typedef int (*tp_verify_fn)(const char *token, size_t len, int64_t now_ms, tp_credential *out,
                            tp_error *err, void *user);

/**
 * tp_limits bounds what a client controls. A zero field takes its default.
 */
typedef struct tp_limits {
    size_t max_message_bytes;   /* default 1 MiB: larger gets too_large and 1009 */
    size_t max_outbox_bytes;    /* default 8 MiB: past it the connection is closed with 1013 */
    unsigned writes_per_second; /* default 1000 per connection (burst of one second) */
    unsigned history_patches;   /* default 256 patches kept per model for resume */
    size_t history_bytes;       /* default 256 KiB of patches kept per model */
    unsigned client_records;    /* default 1024 exactly-once client ids per tenant */
    size_t client_record_bytes; /* default 1 MiB: their outcomes' bytes per tenant */
    unsigned max_skew_ms;       /* default 60000: lww-map ts clamped to now + skew */
} tp_limits;

/* Logging */

enum { TP_LOG_ERROR = 0, TP_LOG_WARN = 1, TP_LOG_INFO = 2, TP_LOG_DEBUG = 3 };

/**
 * tp_log_fn receives one log line: an event, without a trailing newline, such
 * as `write refused tenant=alice conn=c3 ref=7 code=invalid: title: ...`.
 * Ownership: line is borrowed for the call. Thread: the loop thread.
 */
typedef void (*tp_log_fn)(int level, const char *line, void *user);

/* ------------------------------------------------------------------------ */
/* Storage                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * A store keeps a hub's state on disk (SQLite) or in memory, so that a hub
 * made again on the same store (after a restart, a crash or a power cut)
 * holds what the last one acknowledged. Every change a hub accepts is
 * committed before any message that reveals it (its `ack`, its `patch`)
 * leaves: all the changes of one loop iteration in one transaction.
 */
typedef struct tp_store tp_store;

/** How much a commit waits for the disk (SQLite's `synchronous`, WAL mode). */
typedef enum {
    TP_SYNC_FULL = 0,   /* the default: an ack survives kill -9, an OS crash, a power cut */
    TP_SYNC_NORMAL = 1, /* an ack survives kill -9; an OS crash or power cut may take back
                           the last commits (the file stays consistent) */
    TP_SYNC_OFF = 2     /* no fsync: survives kill -9 only; an OS crash may corrupt the file */
} tp_sync;

typedef struct tp_store_options {
    tp_sync synchronous;
    unsigned busy_timeout_ms; /* default 5000: waiting for another process's lock */
    const char *vfs;          /* an SQLite VFS name; NULL: the default one */
} tp_store_options;

/**
 * tp_store_sqlite opens (or creates) an SQLite database file in WAL mode and
 * brings its schema up to date. opts may be NULL (all defaults). The store
 * holds an exclusive lock on "<file>-lock" until tp_store_free: one store per
 * database file at a time, in any process (the kernel drops the lock with a
 * process that dies). Commits are appended to "<file>-log", a second SQLite
 * database that a thread of the store's own ("tp-fold") applies to the tables
 * about once a second; opening applies what a process that died left there,
 * and tp_store_free leaves it empty. Keep the two files together.
 * Ownership: returns new (tp_store_free). Errors: NULL with TP_EINTERNAL (the
 * message names the file and SQLite's reason, or "database FILE is in use by
 * another NAME (pid N)" while another store holds it), TP_EARG (a newer schema
 * than this build knows, or a log that does not follow on from the tables),
 * TP_ENOMEM.
 */
TP_API tp_store *tp_store_sqlite(const char *path, const tp_store_options *opts, tp_error *err);
/**
 * tp_store_memory makes a store in memory: what a hub stores there outlives
 * the hub (not the process), so a test or an embedding program can make a
 * hub again on it. Returns new (tp_store_free), NULL when out of memory.
 */
TP_API tp_store *tp_store_memory(void);
/** tp_store_free closes a store. NULL is allowed. Not while a hub uses it. */
TP_API void tp_store_free(tp_store *store);

typedef struct tp_merge tp_merge; /* a merge strategy (below) */

/** tp_hub_config configures a hub. Zero-initialise it, then set what you need. */
typedef struct tp_hub_config {
    tp_key_fn key; /* NULL: the path parameter "tenant" */
    void *key_user;
    /* Token authentication (docs/api.md, "Authentication"): with a
     * verifier, every handshake needs a token (`Authorization: Bearer` or
     * `?token=`; missing or refused: 401), the tenant is the credential's
     * (the key function is not used; a route's {tenant}, when it has one,
     * must equal it: 403), a connection closes with 4401 when its
     * credential expires, and clients renew it with an `auth` message.
     * NULL: no tokens (the key function names the tenant). */
    tp_verify_fn verify;
    void *verify_user;
    tp_clock_fn clock; /* NULL: the real clock (CLOCK_REALTIME) */
    void *clock_user;
    tp_limits limits;
    unsigned tick_ms; /* announced in `hello`: the autosync period (0: none) */
    tp_log_fn log;    /* NULL: nothing is logged (the hub and its server log here) */
    void *log_user;
    int log_level; /* lines above this level are not formatted; zero-initialised: errors only */
    /* Storage: NULL keeps everything in this hub's memory only. With a store,
     * tp_hub_new restores what the store holds, and every change is
     * committed before a message that reveals it leaves. The store must
     * outlive the hub and serve no other hub at the same time. */
    tp_store *store;
    /* NULL-terminated: the custom merge strategies the hub may find in the
     * store, by name (lww and lww-map are built in). Each must live as long
     * as the hub. */
    const tp_merge *const *merges;
    /* With a store, a tenant with no connection is evicted from memory (its
     * private models, subscriptions and client records; its record stays
     * stored) once idle this long, and earlier, least recently used first,
     * while what the hub holds is over the budget; it is loaded again when
     * a connection or the host needs it. Shared models stay in memory. */
    unsigned evict_idle_ms; /* default 60000 */
    size_t memory_budget;   /* bytes, estimated; default 256 MiB */
    /* The secret behind connection ids: `hello`'s conn is a keyed
     * permutation of the connection's number, so ids never repeat and tell
     * nothing of how many connections there were. Pass 16 random bytes
     * (getrandom; transportsd does). All zero: a key made from the clock and
     * an address, which hides the count from a glance but is no secret.
     * With a store, the key is stored with the hub's state on first use
     * and the stored one is used from then on (ids stay unique). */
    unsigned char conn_key[16];
} tp_hub_config;

/* Life cycle */

/**
 * tp_hub_new makes a hub. config may be NULL (all defaults).
 * Ownership: copies the config; returns new (tp_hub_free).
 */
TP_API tp_hub *tp_hub_new(const tp_hub_config *config, tp_error *err);

/**
 * tp_hub_restored returns 1 when tp_hub_new found a hub's state in the store
 * (then the host's initial state, such as a config's models, is already
 * there and must not be made again), 0 otherwise.
 */
TP_API int tp_hub_restored(const tp_hub *hub);
/**
 * tp_hub_commit makes every change noted so far durable and waits until it
 * is (the store's commit runs on the hub's commit thread, "tp-commit").
 * Transports need not call it: tp_hub_next_ready and tp_conn_next_frame
 * commit before they hand out a frame (the built-in server instead seals
 * each loop iteration's changes and never waits). Host code calls it to
 * know that its own changes are on disk; tp_hub_free calls it. Returns
 * TP_OK (also without a store), or TP_EINTERNAL with the store's reason:
 * nothing in memory is undone, the changes stay queued and are stored by
 * the next commit that succeeds (calling it again retries); meanwhile
 * frames are held and new changes are refused with TP_EINTERNAL.
 */
TP_API int tp_hub_commit(tp_hub *hub, tp_error *err);
/**
 * tp_hub_evict evicts idle tenants (tp_hub_config.evict_idle_ms and
 * memory_budget) whose changes are durable (never while commits fail). The
 * built-in server calls it every second. Returns how many tenants it
 * evicted (0 without a store).
 */
TP_API int tp_hub_evict(tp_hub *hub);
/** tp_hub_free frees the hub, its sessions, models and connections. NULL is allowed.
 * With a store it commits what is not yet stored first. */
TP_API void tp_hub_free(tp_hub *hub);

/**
 * tp_hub_key runs the hub's key function on a handshake.
 * Returns the tenant key (borrowed: valid until req is freed or the next
 * call), or NULL when the connection must be refused.
 */
TP_API const char *tp_hub_key(tp_hub *hub, const tp_request *req);

/* Tenant sessions and private models */

/**
 * tp_hub_tenant returns the session of a tenant, made on first use.
 * Ownership: returns borrowed (lives as long as the hub). NULL on a bad key
 * (empty or longer than 256 bytes) or out of memory.
 */
TP_API tp_session *tp_hub_tenant(tp_hub *hub, const char *tenant);

/** tp_session_tenant returns the session's tenant key. Borrowed. */
TP_API const char *tp_session_tenant(const tp_session *s);

/**
 * tp_session_host hosts a private model with an id assigned by the session
 * ("1", "2", ... skipping ids taken with tp_session_host_as). The value is a
 * JSON object text; defaults are filled in, then it is validated. Every
 * connection of the tenant gets its snapshot.
 * Ownership: copies; returns borrowed id (lives as long as the model).
 * Errors: NULL with TP_EINVALID, TP_EBADREQUEST (not JSON), TP_ENOMEM.
 */
TP_API const char *tp_session_host(tp_session *s, const tp_schema *schema, const char *value,
                                   tp_error *err);

/** tp_session_host_as hosts a private model under a given id (TP_EEXIST when taken). */
TP_API const char *tp_session_host_as(tp_session *s, const char *id, const tp_schema *schema,
                                      const char *value, tp_error *err);

/**
 * tp_session_set replaces a private model's value from the host side. It is
 * validated now and published on the next tp_hub_sync (or before any other
 * change of that model). Returns TP_OK or a negative code.
 */
TP_API int tp_session_set(tp_session *s, const char *id, const char *value, tp_error *err);

/**
 * tp_session_get returns a private model's value as JSON text, the host's
 * pending value when it has one, or NULL when there is no such model.
 * Ownership: returns new (free).
 */
TP_API char *tp_session_get(tp_session *s, const char *id);

/** tp_session_rev returns a private model's rev (published changes), or a negative code. */
TP_API int64_t tp_session_rev(tp_session *s, const char *id);

/**
 * tp_session_delete removes a private model; the tenant's connections get
 * `removed`. The id may be hosted again later (a client resuming with the old
 * model's revs then gets a snapshot). Returns TP_OK, TP_ENOTFOUND or TP_ENOMEM.
 */
TP_API int tp_session_delete(tp_session *s, const char *id);

/* Shared models */

typedef struct tp_origin {
    const char *tenant; /* NULL for the host */
    const char *conn;   /* the connection id, or "host" */
} tp_origin;

/**
 * tp_merge is a merge strategy: merge() returns the new value of a shared
 * model (a new reference) from its current value and a merge patch, or NULL
 * to refuse the write, with a message in err: the writer gets `rejected`
 * with it, or `internal` when err->code is TP_EINTERNAL (the strategy
 * failed rather than refused). The result is validated against the schema
 * afterwards. name identifies the strategy (storage
 * re-attaches custom strategies by name).
 * Thread: called on the hub's thread, never reentrantly.
 */
typedef struct tp_merge {
    const char *name;
    json_t *(*merge)(void *user, const json_t *current, const json_t *patch,
                     const tp_origin *origin, tp_error *err);
    void *user;
} tp_merge;

/** tp_last_write_wins applies each merge patch in arrival order; the default. */
TP_API extern const tp_merge tp_last_write_wins;

/**
 * tp_lww_map_crdt: per top-level field, the write with the greatest
 * (wall, count, tenant, conn) wins whatever the arrival order; deletions are
 * kept as tombstones. A hub recognises it and keeps the field stamps; its
 * merge function called directly (without stamps) applies the patch.
 */
TP_API extern const tp_merge tp_lww_map_crdt;

/**
 * tp_hub_share shares a model with an assigned sid ("s1", "s2", ...).
 * merge NULL means tp_last_write_wins; the struct is copied.
 * Ownership: returns borrowed sid. Errors as tp_session_host.
 */
TP_API const char *tp_hub_share(tp_hub *hub, const tp_schema *schema, const char *value,
                                const tp_merge *merge, tp_error *err);

/** tp_hub_share_as shares a model under a given sid (TP_EEXIST when taken). */
TP_API const char *tp_hub_share_as(tp_hub *hub, const char *sid, const tp_schema *schema,
                                   const char *value, const tp_merge *merge, tp_error *err);

/**
 * tp_hub_subscribe gives a tenant READ or WRITE access to a shared model.
 * Subscribing again changes the access (connections get `access`); a new
 * subscription sends the snapshot to the tenant's connections.
 * Returns TP_OK, TP_ENOTFOUND, TP_EARG or TP_ENOMEM.
 */
TP_API int tp_hub_subscribe(tp_hub *hub, const char *tenant, const char *sid, tp_access access);

/**
 * tp_hub_unsubscribe ends a subscription; the tenant's connections get
 * `removed`. Returns TP_OK, TP_ENOTFOUND or TP_ENOMEM.
 */
TP_API int tp_hub_unsubscribe(tp_hub *hub, const char *tenant, const char *sid);

/**
 * tp_hub_unshare removes a shared model; every subscriber's connections get
 * `removed`. Returns TP_OK, TP_ENOTFOUND or TP_ENOMEM.
 */
TP_API int tp_hub_unshare(tp_hub *hub, const char *sid);

/**
 * tp_hub_set_shared replaces a shared model's value from the host side;
 * validated now, published with origin "host" on the next sync.
 */
TP_API int tp_hub_set_shared(tp_hub *hub, const char *sid, const char *value, tp_error *err);

/** tp_hub_get_shared returns the value (the pending host value if any). Returns new (free). */
TP_API char *tp_hub_get_shared(tp_hub *hub, const char *sid);

/** tp_hub_shared_rev returns a shared model's rev, or a negative code. */
TP_API int64_t tp_hub_shared_rev(tp_hub *hub, const char *sid);

/**
 * tp_hub_sync publishes every pending host-side change. Only models with a
 * pending change are visited. Returns the number of models that published a
 * patch (a pending value equal to the current one publishes none). A pending
 * value that a custom merge strategy refuses is dropped; one that cannot be
 * published for lack of memory stays pending for the next sync.
 */
TP_API int tp_hub_sync(tp_hub *hub);

/* ------------------------------------------------------------------------ */
/* Presence: who is on a model (docs/api.md, "Presence")                     */
/* ------------------------------------------------------------------------ */

/*
 * A client connection may set an ephemeral state (a JSON object: a name, a
 * cursor, a selection) on any model it can see. The hub never stores it; it
 * goes with the connection. With a tick (tp_hub_config.tick_ms > 0, the
 * server's autosync period) a connection's states on a model reach the
 * others at most once per tick_ms, at tp_hub_sync, the latest winning;
 * without one, at once.
 */

/** tp_presence_event is one connection's presence changing on one model. */
typedef struct tp_presence_event {
    const char *tenant;      /* the model's tenant for a private model; NULL: shared */
    const char *id;          /* the private id or the sid */
    const char *conn;        /* the connection's id (`hello`'s conn) */
    const char *conn_tenant; /* the connection's tenant key (clients never see it) */
    const char *state;       /* the state's compact JSON; NULL: the connection left */
} tp_presence_event;

/** tp_presence_fn is told of every presence change the hub delivers. */
typedef void (*tp_presence_fn)(const tp_presence_event *ev, void *user);

/**
 * tp_hub_on_presence sets the callback told of every presence change: a
 * state delivered to the model's other connections (at the tick, once per
 * delivery, whether or not anyone else sees the model), and a connection
 * leaving (closed, unsubscribed, or its client sent `state: null`) after it
 * had a state delivered. Not told: states of a model that is deleted or
 * unshared. fn NULL: no callback.
 * Ownership: the event and its strings are borrowed for the call only.
 * Thread: the loop thread; the callback runs on it, inside the hub's call
 * (tp_conn_feed, tp_hub_sync, tp_conn_close, tp_hub_unsubscribe) and must
 * not call back into the hub.
 */
TP_API void tp_hub_on_presence(tp_hub *hub, tp_presence_fn fn, void *user);

/**
 * tp_hub_presence returns a model's presence as a JSON array of
 * `{"conn": id, "tenant": key, "state": {...}}`, one per connection with a
 * state there (the latest state, delivered or about to be), in no order.
 * tenant NULL: the shared model `id`; else the tenant's private model `id`.
 * Ownership: returns new (free). Errors: NULL when there is no such model
 * (or out of memory). Thread: the loop thread.
 */
TP_API char *tp_hub_presence(tp_hub *hub, const char *tenant, const char *id);

/* ------------------------------------------------------------------------ */
/* Connections: the protocol without sockets                                 */
/* ------------------------------------------------------------------------ */

/*
 * A transport (the built-in WebSocket server, or your own) attaches one
 * tp_conn per client connection, feeds it the text of every frame it
 * receives and sends the frames the connection has to send. The hub decides
 * what each connection gets; it never does I/O.
 */

enum {
    TP_CONN_RESUME = 1 /* the client asked for resume=1: wait for its `resume` */
};

/**
 * tp_conn_open attaches a connection for a tenant. Its outbox starts with
 * `hello`, then (without TP_CONN_RESUME) a snapshot of every model the tenant
 * can see and `synced`.
 * Ownership: returns new, freed by tp_conn_close. Errors: NULL with TP_EARG
 * (bad tenant key) or TP_ENOMEM.
 */
TP_API tp_conn *tp_conn_open(tp_hub *hub, const char *tenant, int flags, tp_error *err);

/** tp_conn_close detaches and frees a connection. NULL is allowed. */
TP_API void tp_conn_close(tp_conn *c);

/** tp_conn_id returns the connection's id ("c1", ...), unique in the hub. Borrowed. */
TP_API const char *tp_conn_id(const tp_conn *c);

/** tp_conn_tenant returns the connection's tenant key. Borrowed. */
TP_API const char *tp_conn_tenant(const tp_conn *c);

/**
 * tp_conn_feed handles the text of one received frame: a message or a batch.
 * Every refused message is answered with `error` in the outbox. A len over
 * max_message_bytes is refused (too_large, then 1009) without reading text,
 * so a transport may refuse a message it did not buffer by passing NULL.
 * Returns TP_OK, or TP_ECLOSED once the connection must be closed
 * (tp_conn_close_code says how).
 */
TP_API int tp_conn_feed(tp_conn *c, const char *text, size_t len);

/**
 * tp_conn_next_frame returns the next frame to send (a message, or a batch
 * of messages as a JSON array of at most 64 KiB), or NULL when the outbox is
 * empty. Ownership: returns borrowed, valid until the next call on c.
 */
TP_API const char *tp_conn_next_frame(tp_conn *c, size_t *len);

/** tp_conn_outbox_bytes returns the bytes waiting in the outbox. */
TP_API size_t tp_conn_outbox_bytes(const tp_conn *c);

/**
 * tp_conn_close_code returns 0 while the connection may stay open, else the
 * WebSocket close code it must be closed with (1009, 1011, 1013), after the
 * frames still in the outbox.
 */
TP_API int tp_conn_close_code(const tp_conn *c);

/**
 * tp_conn_set_expiry sets when the connection's credential expires (hub
 * clock, milliseconds; 0: never). The transport sets it from the handshake's
 * credential; an accepted `auth` message moves it.
 */
TP_API void tp_conn_set_expiry(tp_conn *c, int64_t expires_at_ms);

/** tp_conn_expiry returns when the connection's credential expires (0: never). */
TP_API int64_t tp_conn_expiry(const tp_conn *c);

/**
 * tp_conn_expire tells the connection the time (hub clock, milliseconds).
 * Once its credential has expired it must close with 4401 (returned, and
 * from then on by tp_conn_close_code); else returns 0. The core reads no
 * clock for this itself: the transport calls it from a timer.
 */
TP_API int tp_conn_expire(tp_conn *c, int64_t now_ms);

/** tp_conn_set_user and tp_conn_user keep a pointer for the transport. */
TP_API void tp_conn_set_user(tp_conn *c, void *user);
TP_API void *tp_conn_user(const tp_conn *c);

/* Statistics */

/** tp_hub_stats counts what the hub holds and did, for metrics. */
typedef struct tp_hub_stats {
    uint64_t tenants;        /* sessions alive */
    uint64_t models_private; /* private models, all tenants */
    uint64_t models_shared;
    uint64_t connections; /* tp_conn attached */
    uint64_t writes_accepted;
    uint64_t writes_refused[10]; /* by protocol code: index -TP_EBADREQUEST ... -TP_EINTERNAL */
    uint64_t deliveries;         /* messages put in outboxes (a batch counts each message) */
    uint64_t outbox_bytes;       /* bytes waiting in all outboxes now */
    uint64_t syncs;              /* tp_hub_sync calls that published something */
    uint64_t commits;            /* store transactions committed */
    uint64_t commit_failures;    /* store transactions that failed */
    uint64_t evictions;          /* tenants evicted from memory */
    uint64_t loads;              /* tenants loaded from the store */
    uint64_t resident_bytes;     /* the estimate tp_hub_evict last made of what tenants hold */
} tp_hub_stats;

/** tp_hub_get_stats fills *out. Thread: the loop thread. */
TP_API void tp_hub_get_stats(const tp_hub *hub, tp_hub_stats *out);

/**
 * tp_hub_next_ready returns a connection whose outbox went from empty to
 * non-empty since it was last returned, or NULL. A transport calls it at the
 * end of each loop iteration, so only connections with something to send
 * are visited.
 */
TP_API tp_conn *tp_hub_next_ready(tp_hub *hub);

/* ------------------------------------------------------------------------ */
/* The WebSocket server                                                      */
/* ------------------------------------------------------------------------ */

/*
 * The built-in server speaks PROTOCOL.md over WebSocket (libwebsockets) for
 * one hub, and answers GET /healthz and GET /metrics on the same listener.
 * It runs one event loop on the thread that calls tp_server_run; every hub
 * call belongs to that thread while it runs (use tp_server_post from others).
 */

typedef struct tp_server tp_server;

/** tp_server_config configures a server. Zero-initialise it; a zero field takes its default. */
typedef struct tp_server_config {
    const char *listen;   /* "127.0.0.1:8080"; port 0 picks a free port (tp_server_port) */
    const char *route;    /* "/ws/{tenant}": the WebSocket route, {name} segments are path params */
    unsigned autosync_ms; /* 0: host changes publish only when tp_hub_sync is called; also
                             the hub's tick_ms (in `hello`) when that is 0 */
    unsigned flush_ms;    /* 0: frames leave at the end of each loop iteration; else a patch may
                             wait up to this long so that more leave in one write */
    unsigned max_connections;            /* default 10000 for the server (503 past it) */
    unsigned max_connections_per_tenant; /* default 256 (503 past it) */
    unsigned handshake_timeout_ms;       /* default 10000: the HTTP request must be complete */
    unsigned ping_interval_ms;  /* default 30000: a ping to a connection silent this long */
    unsigned ping_timeout_ms;   /* default 10000: no answer this long after the ping: dropped */
    const char *const *origins; /* NULL-terminated allowed Origin values; NULL: any origin */
    /* Per client address (an IPv4 address, or an IPv6 /64; behind trusted
     * proxies, the address client_address_header names): */
    unsigned max_connections_per_address;        /* default 256 WebSocket connections (429
                                                    past it) */
    unsigned max_pending_handshakes_per_address; /* default 64 TCP connections not yet
                                                    upgraded; past it a new one is closed at
                                                    once, unread */
    unsigned message_timeout_ms;        /* default 10000: a message begun (a first fragment, or a
                                           frame arriving in pieces) must end within this, else the
                                           connection is closed with 1008 */
    size_t max_unfinished_bytes;        /* default 64 MiB: what the whole server buffers of messages
                                           begun and not ended; the connection that would pass it is
                                           closed with 1013 */
    const char *const *trusted_proxies; /* NULL-terminated addresses or CIDR blocks
                                           ("10.0.0.0/8", "::1") whose client_address_header
                                           is believed, and that are not limited per address
                                           themselves; NULL: none */
    const char *client_address_header;  /* with trusted_proxies, e.g. "X-Forwarded-For": the
                                           client is its rightmost address that is not a
                                           trusted proxy */
    const char *static_dir; /* NULL: none; else GET serves this directory's files (`/` is
                               index.html): regular files up to 256 KiB with a known extension,
                               each path segment [A-Za-z0-9._-] and not starting with '.' */
    /* TLS on the listener (wss://, https://): a PEM certificate chain and
     * its private key; both NULL: plain TCP. tp_server_reload_tls reads
     * them again. TLS 1.2 or newer. */
    const char *tls_cert_file;
    const char *tls_key_file;
    /* GET /metrics answers only `Authorization: Bearer <metrics_token>`
     * (401 otherwise); NULL: anyone who reaches the listener. */
    const char *metrics_token;
    /* Called on the loop thread after each tp_server_reload_tls (with or
     * without TLS): transportsd reloads its JWT keys there. NULL: none. */
    void (*on_reload)(void *user);
    void *on_reload_user;
} tp_server_config;

/**
 * tp_server_new binds the listener (so a port of 0 is known at once) for a hub.
 * The hub must outlive the server, and carries only the server's connections
 * while it runs (the server takes every connection tp_hub_next_ready returns
 * for its own).
 * Ownership: copies config; returns new (tp_server_free).
 * Errors: NULL with TP_EARG (bad listen address or route, message names the
 * field), TP_EINTERNAL (the address cannot be bound: the message says why).
 */
TP_API tp_server *tp_server_new(tp_hub *hub, const tp_server_config *config, tp_error *err);

/** tp_server_port returns the bound TCP port. */
TP_API int tp_server_port(const tp_server *server);

/**
 * tp_server_run runs the event loop until tp_server_stop; then every
 * connection gets what is pending, a close with 1001, and run returns TP_OK.
 * Thread: the thread that calls it becomes the hub's loop thread.
 */
TP_API int tp_server_run(tp_server *server);

/**
 * tp_server_stop asks the loop to stop. Thread: any thread, and safe in a
 * signal handler (it only writes one byte to a pipe).
 */
TP_API void tp_server_stop(tp_server *server);

/**
 * tp_server_reload_tls asks the loop to read the certificate and key files
 * again (after a renewal); connections open stay as they are, new ones get
 * the new certificate. A file that cannot be read, or a key that does not
 * match, is logged and the old pair kept. Then config.on_reload runs.
 * Thread: any thread, and safe in a signal handler (it only writes one
 * byte to a pipe).
 */
TP_API void tp_server_reload_tls(tp_server *server);

/** tp_server_free closes the listener and every connection. NULL is allowed. Not while running. */
TP_API void tp_server_free(tp_server *server);

/**
 * tp_server_post runs fn(arg) on the loop thread, soon, in the order of the
 * posts. Returns TP_OK (fn runs exactly once: in the loop, or at
 * tp_server_free if the loop never gets to it) or TP_ENOMEM (fn never runs).
 * Thread: any thread.
 */
TP_API int tp_server_post(tp_server *server, void (*fn)(void *arg), void *arg);

/**
 * tp_server_metrics returns the server's and the hub's metrics in the
 * Prometheus text format (what GET /metrics serves).
 * Ownership: returns new (tp_free). Thread: the loop thread.
 */
TP_API char *tp_server_metrics(tp_server *server);

/* ------------------------------------------------------------------------ */
/* The client                                                                */
/* ------------------------------------------------------------------------ */

/*
 * A client keeps a live replica of every model its tenant can see, over one
 * WebSocket connection to a transports server (protocol.md). Writes are
 * applied to the local view at once (optimistically), sent with increasing
 * refs under a stable client id, confirmed by `ack` or rolled back on
 * `error`. The local view of a model is its confirmed value (the server's,
 * at `rev`) with the pending writes on top, in order. The client reconnects
 * by itself with exponential backoff and jitter, resumes (`resume=1`, its
 * revs and client id), and sends its unacknowledged writes again: the
 * server applies each exactly once. A patch whose `from` is not the rev held
 * makes it resume that model.
 *
 * Two ways to run it:
 *   - tp_client_start: the client runs its own thread (libwebsockets), and
 *     every callback runs on that thread (but the state callback that
 *     tp_client_start and tp_client_stop cause, CONNECTING and STOPPED,
 *     runs on the thread that calls them).
 *   - sans-IO: your code owns the socket. Call tp_client_opened when your
 *     WebSocket is up, tp_client_feed with each text frame received,
 *     send what tp_client_next_frame returns, and tp_client_closed when the
 *     connection ends; tp_client_url says where to connect (with resume=1
 *     once the client holds revs). Callbacks run inside tp_client_feed.
 *
 * Threads: every tp_client_* call is safe from any thread, and callbacks
 * may call tp_client_* functions (the client's lock is recursive), except
 * tp_client_free, which must not run in a callback nor concurrently with
 * another call on the same client.
 */
typedef struct tp_client tp_client;

typedef enum {
    TP_CLIENT_IDLE = 0,       /* made, not started */
    TP_CLIENT_CONNECTING = 1, /* a connection attempt is under way */
    TP_CLIENT_SYNCING = 2,    /* connected, the initial snapshots (or resume answers) arriving */
    TP_CLIENT_LIVE = 3,       /* `synced`: every replica is up to date */
    TP_CLIENT_WAITING = 4,    /* disconnected; the next attempt comes after a backoff */
    TP_CLIENT_REFUSED = 5,    /* the server refused the handshake (400, 401, 403, 404): no retry */
    TP_CLIENT_STOPPED = 6     /* tp_client_stop */
} tp_client_state;

/*
 * Callbacks. Each is optional. `value` is the model's local view after the
 * event (borrowed: valid during the call). Ownership: everything borrowed.
 */
typedef struct tp_client_callbacks {
    /* The whole value of a model, when it arrives (first sight, resync) and
     * whenever the local view changes otherwise than by a server patch (a
     * write rolled back, an ack whose result differs from the view). */
    void (*snapshot)(void *user, const char *scope, const char *id, int64_t rev, tp_access access,
                     const json_t *value);
    /* A change arrived: patch applied to the value at `from` gives `rev`. */
    void (*patch)(void *user, const char *scope, const char *id, int64_t from, int64_t rev,
                  const json_t *patch, const char *origin, const json_t *value);
    void (*access)(void *user, const char *scope, const char *id, tp_access access);
    void (*removed)(void *user, const char *scope, const char *id);
    /* One of our writes is confirmed at rev. */
    void (*ack)(void *user, int64_t ref, const char *scope, const char *id, int64_t rev);
    /* An error from the server: for a write (ref > 0) it is already rolled
     * back from the local view (value: the view after it). code: TP_E*. */
    void (*error)(void *user, int64_t ref, const char *scope, const char *id, int code,
                  const char *message, const json_t *value);
    /* The connection's state changed; why: a reason for humans ("connection refused",
     * "HTTP 403", "closed 1001"), or NULL. */
    void (*state)(void *user, tp_client_state state, const char *why);
    void *user;
    /* Another connection's presence on a model changed (docs/protocol.md,
     * "Presence: who is here"): conn is its id, state its new state, or
     * NULL when it left (it closed, sent null, lost access, or our own
     * connection ended: every state held is then reported gone). */
    void (*presence)(void *user, const char *scope, const char *id, const char *conn,
                     const json_t *state);
} tp_client_callbacks;

/**
 * tp_token_fn gives the client a current token: it writes it, NUL-terminated,
 * into buf (size bytes) and, when it knows it, its expiry into
 * *expires_at_ms (wall clock, ms since the epoch; left at 0, the client
 * reads the JWT's `exp` claim, unverified). Returns 0, or -1 when no token
 * is available now (the client keeps the one it has and asks again later).
 * Called on the client's thread, before every connection attempt and
 * before the current token expires.
 */
typedef int (*tp_token_fn)(void *user, char *buf, size_t size, int64_t *expires_at_ms);

typedef struct tp_client_options {
    const char *token; /* sent as Authorization: Bearer TOKEN, or NULL */
    /* A token source (replaces token): asked before each connection, and
     * before the token expires, when its fresh token is sent in an `auth`
     * message so that the connection is not closed with 4401. */
    tp_token_fn token_fn;
    void *token_user;
    unsigned token_refresh_ms;   /* default 30000: an `auth` goes this long before expiry
                                    (at most half the token's remaining life before) */
    int token_in_query;          /* 1: as ?token=TOKEN instead (what browsers must do) */
    const char *const *headers;  /* NULL-terminated "Name: value" lines, or NULL */
    int tls_insecure;            /* wss: do not verify the server's certificate (tests only) */
    const char *ca_file;         /* wss: trust this PEM bundle instead of the system's */
    const char *client_id;       /* the stable id for exactly-once; NULL: a random one */
    unsigned backoff_min_ms;     /* default 250: the first retry's delay */
    unsigned backoff_max_ms;     /* default 30000: the delay doubles up to this, with jitter */
    unsigned connect_timeout_ms; /* default 10000 */
    unsigned ping_interval_ms;   /* default 20000: a `ping` when the connection is quiet */
    int no_reconnect;            /* 1: no retry; when the connection ends the client is STOPPED */
    tp_client_callbacks cb;
    tp_log_fn log; /* the client's log lines (connects, retries), or NULL */
    void *log_user;
    int log_level;
} tp_client_options;

/**
 * tp_client_new makes a client for a URL (ws:// or wss://, the server's
 * route with the tenant, e.g. "ws://127.0.0.1:8080/ws/alice"). opts may be
 * NULL. Nothing connects until tp_client_start (or the sans-IO calls).
 * Ownership: copies url and opts (strings and headers too); returns new
 * (tp_client_free). Errors: NULL with TP_EARG (a bad URL: the message says
 * what), TP_ENOMEM.
 */
TP_API tp_client *tp_client_new(const char *url, const tp_client_options *opts, tp_error *err);
/** tp_client_start starts the client's thread: it connects, and reconnects until stopped. */
TP_API int tp_client_start(tp_client *c, tp_error *err);
/** tp_client_stop closes the connection and ends the thread (waits for it). Pending writes stay. */
TP_API void tp_client_stop(tp_client *c);
/** tp_client_free stops the client and frees it. NULL is allowed. */
TP_API void tp_client_free(tp_client *c);

/**
 * tp_client_write applies a merge patch (a JSON object text) to the local
 * view of a model at once and sends it. Returns its ref (> 0), or a
 * negative code: TP_ENOTFOUND (no such model in the view), TP_EFORBIDDEN
 * (read-only), TP_EBADREQUEST (not a JSON object), TP_ETOOLARGE (over the
 * server's max_message_bytes from `hello`), TP_ENOMEM. A write made
 * while disconnected is sent when the connection is back.
 */
TP_API int64_t tp_client_write(tp_client *c, const char *scope, const char *id, const char *patch,
                               tp_error *err);
/**
 * tp_client_get returns a model's local view as JSON text, or NULL when the
 * client holds no such model; rev and access are filled when not NULL (rev:
 * the confirmed rev). Ownership: returns new (tp_free).
 */
TP_API char *tp_client_get(tp_client *c, const char *scope, const char *id, int64_t *rev,
                           tp_access *access);
/**
 * tp_client_models lists the models held, as a JSON array of
 * {"scope","id","rev","access"} (new, tp_free).
 */
TP_API char *tp_client_models(tp_client *c);
/**
 * tp_client_set_presence sets this client's presence on a model: state is a
 * JSON object text of at most 4 KiB (compact), or NULL to leave. Sent now
 * when connected, and again on every new connection until changed (a state
 * belongs to the connection that set it). The server coalesces states to
 * one per tick, so calling this at every cursor move is fine.
 * Ownership: copies. Errors: TP_EARG (scope, id), TP_EBADREQUEST (not a
 * JSON object), TP_ETOOLARGE (over 4 KiB), TP_ENOMEM; a refusal by the
 * server (not_found) reaches the error callback with ref 0.
 */
TP_API int tp_client_set_presence(tp_client *c, const char *scope, const char *id,
                                  const char *state, tp_error *err);
/**
 * tp_client_presence returns the others' presence on a model as a JSON
 * object text, {"<conn>": state, ...} ("{}" when nobody else has a state),
 * or NULL when the client holds no such model.
 * Ownership: returns new (tp_free).
 */
TP_API char *tp_client_presence(tp_client *c, const char *scope, const char *id);
TP_API tp_client_state tp_client_get_state(tp_client *c);
/** tp_client_pending counts the writes sent or queued and not yet acknowledged. */
TP_API size_t tp_client_pending(tp_client *c);
/** tp_client_id returns the client id (borrowed, lives as long as the client). */
TP_API const char *tp_client_id(tp_client *c);
/**
 * tp_client_wait blocks until the client is LIVE with no pending write
 * (what=TP_CLIENT_WAIT_IDLE), or LIVE (TP_CLIENT_WAIT_SYNCED), or REFUSED or
 * STOPPED, or timeout_ms passes. Returns TP_OK, TP_ECLOSED (refused or
 * stopped) or TP_EINTERNAL (timed out). Not from a callback.
 */
enum { TP_CLIENT_WAIT_SYNCED = 1, TP_CLIENT_WAIT_IDLE = 2 };
TP_API int tp_client_wait(tp_client *c, int what, unsigned timeout_ms);

/* Sans-IO: your code carries the frames (see above). */
/** tp_client_url returns the URL to connect to now (new, tp_free). */
TP_API char *tp_client_url(tp_client *c);
TP_API void tp_client_opened(tp_client *c);
TP_API int tp_client_feed(tp_client *c, const char *text, size_t len);
/** Returns the next frame to send (borrowed: valid until the next call), or NULL. */
TP_API const char *tp_client_next_frame(tp_client *c, size_t *len);
/**
 * The connection ended. close_code: the WebSocket close code, 1006 when the
 * connection broke or never started, or the HTTP status of a refused
 * handshake. why: what happened, for people ("connection refused", "cannot
 * resolve host x: Name or service not known"), or NULL; the state callback
 * gets it.
 */
TP_API void tp_client_closed(tp_client *c, int close_code, const char *why);

#ifdef __cplusplus
}
#endif

#endif /* TP_TRANSPORTS_H */
