/*
 * A model's change log in Redis (issue 18): the Redis side of "one order per model". A node
 * merges a write on a copy of its model at rev r and calls tp__clog_append, which appends the
 * change only if the model is still at rev r, in one Lua script (one round trip), and
 * publishes it on the model's channel; on a conflict the node catches up (tp__clog_read) and
 * merges again. docs/internals/cluster-log.md describes the key layout, each script's contract
 * and what the hub must do with a conflict.
 *
 * Names: a model is (owner, id) as in the journal (src/core/journal.h): owner is a private
 * model's tenant key, or "" for a shared model. Every string is NUL-terminated, 1 to
 * TP__CLOG_KEY_MAX bytes (client ids 1 to TP__CLOG_CLIENT_MAX); entries, records and outcomes
 * are opaque bytes with a length.
 *
 * Callback rule (as libuv's and tp__redis's): when a call fails, its callback never runs;
 * when it succeeds, the callback runs exactly once, later, on the loop's thread. A callback
 * gets err non-NULL when the link failed the command (TP_ECLOSED: connection lost or link
 * freed; TP_EINTERNAL: timeout, redirections) or Redis answered an error (TP_EINTERNAL, the
 * message quoting Redis's); results are then meaningless. Everything a callback is given is
 * borrowed: valid during the call only.
 */
#ifndef TP_CLUSTER_CLOG_H
#define TP_CLUSTER_CLOG_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/redis.h"
#include "transports.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TP__CLOG_KEY_MAX 256                    /* bytes of a tenant key, a model id */
#define TP__CLOG_CLIENT_MAX 64                  /* bytes of a client id (protocol.md) */
#define TP__CLOG_ENTRY_MAX (8u * 1024 * 1024)   /* bytes of one log entry (a patch message) */
#define TP__CLOG_RECORD_MAX (64u * 1024 * 1024) /* bytes of a model record (the snapshot) */
#define TP__CLOG_OUTCOME_MAX (1024u * 1024)     /* bytes of one outcome (an ack or error) */
#define TP__CLOG_KEEP_MAX 100000u               /* log entries kept, entries one read returns */
#define TP__CLOG_OUTCOMES_MAX 4096u             /* outcomes kept per client */
#define TP__CLOG_REV_MAX 9007199254740992LL     /* 2^53: Redis's Lua counts in doubles */

typedef struct tp__clog tp__clog;

/* A write's author: client id and ref. client NULL (or "") means none (a host change). */
typedef struct tp__clog_writer {
    const char *client;
    int64_t ref;
} tp__clog_writer;

/* One log entry, as stored and as published (the same bytes). */
typedef struct tp__clog_entry {
    int64_t rev;
    char kind;         /* 'a': a change (entry = the patch), 'd': the model deleted (entry "") */
    const char *entry; /* borrowed */
    size_t entry_len;
    const char *client; /* borrowed, NOT NUL-terminated; client_len 0: no writer */
    size_t client_len;
    int64_t ref; /* when client_len > 0 */
} tp__clog_entry;

/* ---- Life cycle ---------------------------------------------------------------------- */

/**
 * tp__clog_new registers the log's scripts with the link r (nothing is sent yet).
 * Ownership: borrows r, which must outlive the log (free the log first, or right after the
 * link: calls in flight then end with TP_ECLOSED and reach no callback). Returns new.
 * Errors: NULL with TP_ENOMEM, TP_ECLOSED (link freed), TP_EINTERNAL.
 */
tp__clog *tp__clog_new(tp__redis *r, tp_error *err);

/**
 * tp__clog_free releases the log. Calls still in flight run no callback afterwards (their
 * memory goes when Redis or the link answers them). Accepts NULL.
 */
void tp__clog_free(tp__clog *c);

/* ---- Writing ------------------------------------------------------------------------- */

/* An append (or a deletion): the model (owner, id) goes from base_rev to base_rev + 1. */
typedef struct tp__clog_append_req {
    const char *owner; /* the tenant of a private model, "" for a shared one */
    const char *id;
    int64_t base_rev;   /* the rev the change was merged at; 0: create (no model yet) */
    const char *entry;  /* the change (the encoded patch message): logged and published */
    size_t entry_len;   /* 0 to TP__CLOG_ENTRY_MAX */
    const char *record; /* the whole model record after the change: the new snapshot */
    size_t record_len;  /* 0 to TP__CLOG_RECORD_MAX */
    uint32_t keep;      /* log entries kept (the history), 1 to TP__CLOG_KEEP_MAX */
    tp__clog_writer writer;
    /* The writer's tenant: a shared model's writer's client record is under it. */
    const char *tenant;
    /* A private model's writer's outcome (the encoded ack), recorded in the same script
     * (a shared model's too when the link reaches one Redis, not a cluster, and tenant is set):
     * NULL for none. Refused for a shared model (its client's keys are in another slot: use
     * tp__clog_outcome_put). Needs writer.client. */
    const char *outcome;
    size_t outcome_len;    /* 0 to TP__CLOG_OUTCOME_MAX */
    uint32_t outcome_keep; /* outcomes kept for the client, 1 to TP__CLOG_OUTCOMES_MAX */
    /* A shared model's writer on a Redis Cluster: the outcome is recorded in the model's own
     * slot too (a copy of the client's record there, "tp:{shared:<id>}:c:<len>:<tenant>:<client>"
     * and ":q:", <len> the tenant's length in bytes, expiring TP__CLOG_HERE_TTL_MS after its last
     * write), in the same script, so that a resend through any node finds it even if the node that
     * appended died before tp__clog_outcome_put. Needs tenant, writer.client and outcome. */
    int outcome_here;
} tp__clog_append_req;

/* How long the copy of a client's outcomes in a shared model's slot is kept after its last
 * write: the window of a resend after its node's crash (tp__clog_outcome_put keeps the
 * client's own record). */
#define TP__CLOG_HERE_TTL_MS 3600000

/* An append's answer: conflict 0 and rev the new rev (== base_rev + 1), or conflict 1 and rev
 * the model's current rev (0: no model): nothing was written; or conflict 2 (only for an
 * append with an outcome): the writer's ref has an outcome recorded already, the write was
 * applied by an earlier append (rev: the model's current rev); nothing was written, and was
 * (was_len bytes, borrowed) is that recorded outcome. */
typedef void (*tp__clog_append_cb)(int conflict, int64_t rev, const char *was, size_t was_len,
                                   const tp_error *err, void *user);

/**
 * tp__clog_append runs, in one script (one round trip), atomically: if the model's rev is
 * base_rev (0 when absent) then rev := base_rev + 1, record := req->record, the log gets the
 * entry with its rev and writer and is trimmed to the newest req->keep, the outcome (if any)
 * is recorded for (owner, writer.client, writer.ref) keeping the newest req->outcome_keep,
 * and the entry is published on the model's channel (tp__clog_channel). Every check comes
 * before the first write, so a failing call (a key of the wrong type...) changes nothing.
 * Ownership: copies req's strings and bytes.
 * Errors: TP_EARG (a bad field, named), TP_ETOOLARGE (a size over its bound, named), else as
 * tp__redis_script_call; cb then never runs.
 */
int tp__clog_append(tp__clog *c, const tp__clog_append_req *req, tp__clog_append_cb cb, void *user,
                    tp_error *err);

/* tp__clog_append_many's answer: as tp__clog_append's; for conflict 2, dup is the index of
 * the change whose writer's ref has an outcome already (was). */
typedef void (*tp__clog_append_many_cb)(int conflict, int64_t rev, size_t dup, const char *was,
                                        size_t was_len, const tp_error *err, void *user);
#define TP__CLOG_BATCH_MAX 64u /* changes one tp__clog_append_many takes */

/**
 * tp__clog_append_many appends n (1 to TP__CLOG_BATCH_MAX) changes of one model in one script
 * (one round trip), atomically: if the model's rev is reqs[0].base_rev, the entries get revs
 * base_rev + 1 .. base_rev + n in order, each with its writer and its outcome (as
 * tp__clog_append records them, outcome_here included), each is published, and the record
 * becomes reqs[n - 1].record; keep is the last request's, outcome_keep the largest. The model (owner,
 * id) is the last request's too; the other requests' base_rev, record and keep are not read.
 * Before anything is written, every writer's ref is checked: one with an outcome answers
 * conflict 2 (dup, was) and nothing is written.
 */
int tp__clog_append_many(tp__clog *c, const tp__clog_append_req *reqs, size_t n,
                         tp__clog_append_many_cb cb, void *user, tp_error *err);

/**
 * tp__clog_delete deletes the model as an append does a change (same condition and answer):
 * rev := base_rev + 1, the record goes, the log is emptied but for a tombstone entry ('d')
 * at the new rev, which is published. The rev stays, so a model created again under the same
 * id goes on from it (base_rev = the tombstone's rev) and no rev is ever reused.
 */
int tp__clog_delete(tp__clog *c, const char *owner, const char *id, int64_t base_rev,
                    const tp__clog_writer *writer, tp__clog_append_cb cb, void *user,
                    tp_error *err);

/* ---- Reading ------------------------------------------------------------------------- */

typedef enum tp__clog_state {
    TP__CLOG_ABSENT = 0,   /* no model (never created) */
    TP__CLOG_ENTRIES = 1,  /* entries: every entry after after_rev, in rev order, up to rev */
    TP__CLOG_SNAPSHOT = 2, /* record at rev: the log no longer holds all (or too many) */
    TP__CLOG_DELETED = 3   /* deleted at rev (tombstone), and the log cannot say more */
} tp__clog_state;

typedef struct tp__clog_read_result {
    tp__clog_state state;
    int64_t rev; /* the model's current rev */
    const char *record;
    size_t record_len; /* TP__CLOG_SNAPSHOT */
    const tp__clog_entry *entries;
    size_t n; /* TP__CLOG_ENTRIES (0 when the reader is up to date) */
} tp__clog_read_result;

typedef void (*tp__clog_read_cb)(const tp__clog_read_result *res, const tp_error *err, void *user);

/**
 * tp__clog_read returns what a node at after_rev needs to reach the current rev, in one
 * script: the entries after after_rev when the log holds all of them and they are at most
 * max_entries (1 to TP__CLOG_KEEP_MAX), else the snapshot (the record at the current rev:
 * no entry comes after it). A reader ahead of the model (after_rev > rev) gets the snapshot.
 * Errors: as tp__clog_append.
 */
int tp__clog_read(tp__clog *c, const char *owner, const char *id, int64_t after_rev,
                  uint32_t max_entries, tp__clog_read_cb cb, void *user, tp_error *err);

/**
 * tp__clog_snapshot returns the model's record and rev (TP__CLOG_SNAPSHOT), or
 * TP__CLOG_ABSENT or TP__CLOG_DELETED, in one command (HMGET).
 */
int tp__clog_snapshot(tp__clog *c, const char *owner, const char *id, tp__clog_read_cb cb,
                      void *user, tp_error *err);

/* ---- Exactly once -------------------------------------------------------------------- */

typedef void (*tp__clog_done_cb)(const tp_error *err, void *user);

/**
 * tp__clog_outcome_put records a client's outcome (ref → bytes) under its tenant, keeping
 * the newest keep (1 to TP__CLOG_OUTCOMES_MAX), in one script: the shared-model path, after
 * the append succeeded (the two cannot be atomic on a Redis Cluster; see
 * tp__clog_writer_in_log). Recording a ref again replaces its bytes.
 */
int tp__clog_outcome_put(tp__clog *c, const char *tenant, const char *client, int64_t ref,
                         const char *bytes, size_t len, uint32_t keep, tp__clog_done_cb cb,
                         void *user, tp_error *err);

typedef struct tp__clog_outcome {
    int64_t ref;
    const char *bytes; /* borrowed */
    size_t len;
} tp__clog_outcome;

typedef struct tp__clog_outcomes {
    int found;          /* 0: no record for this client */
    int64_t highest;    /* the highest ref with a recorded outcome */
    uint64_t forgotten; /* outcomes dropped by keep: 0 means every one ever recorded is here */
    const tp__clog_outcome *items; /* ascending ref */
    size_t n;
} tp__clog_outcomes;

typedef void (*tp__clog_outcomes_cb)(const tp__clog_outcomes *res, const tp_error *err, void *user);

/** tp__clog_outcomes_get returns a client's record, in one command (HGETALL). */
int tp__clog_outcomes_get(tp__clog *c, const char *tenant, const char *client,
                          tp__clog_outcomes_cb cb, void *user, tp_error *err);

/* A lookup's answer: rev of the entry the writer made (0: none in the retained log), the
 * model's current rev and the oldest rev the log retains (0: empty log). */
typedef void (*tp__clog_writer_cb)(int64_t rev, int64_t current_rev, int64_t oldest_rev,
                                   const tp_error *err, void *user);

/**
 * tp__clog_writer_in_log says whether an entry of the model's retained log carries the
 * writer (client, ref), and at which rev, in one script (it scans the log: O(keep)). A node
 * answers a resent shared-model write whose outcome is not recorded (the node that appended
 * it died before tp__clog_outcome_put) from it.
 */
int tp__clog_writer_in_log(tp__clog *c, const char *owner, const char *id,
                           const tp__clog_writer *writer, tp__clog_writer_cb cb, void *user,
                           tp_error *err);

/* ---- Following (pub/sub) ------------------------------------------------------------- */

/**
 * tp__clog_channel writes the model's channel name (binary: no NUL added) into out (cap
 * bytes; TP__CLOG_NAME_MAX always suffices) and its length into *len.
 * Errors: TP_EARG (a bad owner or id, named), TP_ETOOLARGE (cap too small).
 */
#define TP__CLOG_NAME_MAX (16 + 3 * TP__CLOG_KEY_MAX + TP__CLOG_KEY_MAX)
int tp__clog_channel(const char *owner, const char *id, char *out, size_t cap, size_t *len,
                     tp_error *err);

/**
 * tp__clog_subscribe / tp__clog_unsubscribe add or remove the model's channel to the link's
 * pub/sub set (tp__redis_subscribe): its messages reach the link's on_message, and
 * tp__clog_decode reads them. Errors: as tp__clog_channel, then as tp__redis_subscribe.
 */
int tp__clog_subscribe(tp__clog *c, const char *owner, const char *id, tp_error *err);
int tp__clog_unsubscribe(tp__clog *c, const char *owner, const char *id, tp_error *err);

/**
 * tp__clog_decode reads a published message (or a log element) into *out, whose pointers
 * are into data. Errors: TP_EINVALID (not a log entry: the message says where it breaks).
 */
int tp__clog_decode(const char *data, size_t len, tp__clog_entry *out, tp_error *err);

/* ---- The catalog --------------------------------------------------------------------- */

/* One Redis hash of opaque fields -> bodies, a version counter and a channel, all in one slot:
 * keys "tp:{%catalog}:items" (hash) and "tp:{%catalog}:v" (decimal), channel "tp:{%catalog}"
 * (a tenant key's '%' is escaped, so no tenant's tag can be "%catalog"). A third key,
 * "tp:{%catalog}:bytes" (decimal), holds the bytes of every field and body, for
 * TP__CLOG_CATALOG_BYTES_MAX. Only the put script writes them. The catalog lives on ONE master
 * of a Redis Cluster, and a load is one reply holding all of it: see
 * docs/internals/cluster-log.md, "The catalog". */
#define TP__CLOG_CATALOG_CHANNEL "tp:{%catalog}"
#define TP__CLOG_FIELD_MAX 2048u                  /* bytes of one item's field */
#define TP__CLOG_BODY_MAX (1024u * 1024)          /* bytes of one item's body */
#define TP__CLOG_OP_MAX (2u * 1024 * 1024)        /* bytes of one op (published) */
#define TP__CLOG_PUT_ITEMS_MAX 1024u              /* items of one put */
#define TP__CLOG_PUT_BYTES_MAX (8u * 1024 * 1024) /* op + fields + bodies of one put */
/* The whole catalog: a load is one script that blocks its Redis shard for the whole reply
 * (about 0.5 s for 100 000 items of 22 MB on this machine, more when it is busy: see
 * docs/internals/cluster-log.md): these keep it inside the link's 5 s command timeout. */
#define TP__CLOG_CATALOG_ITEMS_MAX 100000u             /* fields the catalog may hold */
#define TP__CLOG_CATALOG_BYTES_MAX (32u * 1024 * 1024) /* fields + bodies it may hold */

typedef struct tp__clog_item {
    const char *field; /* opaque bytes, 1 to TP__CLOG_FIELD_MAX */
    size_t field_len;
    const char *body; /* NULL: the field is deleted; else 0 to TP__CLOG_BODY_MAX bytes */
    size_t body_len;
} tp__clog_item;

/* put's answer: conflict 0 and version the new version, or conflict 1 (expect did not match)
 * and version the current one: nothing written. err TP_ETOOLARGE: the catalog would hold more
 * than its bounds (tp__clog_catalog_bound); nothing written. */
typedef void (*tp__clog_catalog_cb)(int conflict, int64_t version, const tp_error *err, void *user);

/**
 * tp__clog_catalog_put runs one script, atomically: if expect >= 0 and the version (0 when
 * absent) is not expect: answer {1, version}, write nothing. Else, if the catalog after the put
 * would hold more items or bytes than its bounds, fail (TP_ETOOLARGE), write nothing. Else
 * HSET/HDEL every item in order (a field may come twice: the last wins), version := version +
 * 1, PUBLISH on TP__CLOG_CATALOG_CHANNEL "<version>\n<op bytes>", answer {0, version}. Every
 * check comes before the first write. n may be 0 (an op with no item, e.g. an event); op_len
 * 0 to TP__CLOG_OP_MAX. expect: -1 (no condition) or 0 to 2^53 - 1.
 * Ownership: copies op and items. Errors: TP_EARG (a bad argument, named: "items[3].field"),
 * TP_ETOOLARGE (a size over its bound, named), else as tp__redis_script_call; cb then never
 * runs.
 */
int tp__clog_catalog_put(tp__clog *c, int64_t expect, const char *op, size_t op_len,
                         const tp__clog_item *items, size_t n, tp__clog_catalog_cb cb, void *user,
                         tp_error *err);

typedef struct tp__clog_catalog {
    int64_t version;            /* 0: never written */
    const tp__clog_item *items; /* every field with its body (borrowed), any order */
    size_t n;
} tp__clog_catalog;

typedef void (*tp__clog_catalog_load_cb)(const tp__clog_catalog *res, const tp_error *err,
                                         void *user);

/**
 * tp__clog_catalog_load returns the version and every item, atomically (one script, one
 * reply of the whole catalog: at most TP__CLOG_CATALOG_BYTES_MAX plus Redis's framing).
 * Errors: TP_EARG (no callback), else as tp__redis_script_call.
 */
int tp__clog_catalog_load(tp__clog *c, tp__clog_catalog_load_cb cb, void *user, tp_error *err);

/**
 * tp__clog_catalog_version returns the catalog's version (0: never written) in one command
 * (GET); the callback's conflict is always 0. A node waits until it applied that version, so
 * that a host API call through it sees what a call through another node did before.
 */
int tp__clog_catalog_version(tp__clog *c, tp__clog_catalog_cb cb, void *user, tp_error *err);

/**
 * tp__clog_catalog_subscribe follows (on 1) or stops following (on 0) the catalog's channel on
 * the link's pub/sub set, like tp__clog_subscribe; tp__clog_catalog_decode reads its messages.
 */
int tp__clog_catalog_subscribe(tp__clog *c, int on, tp_error *err);

/**
 * tp__clog_catalog_decode reads a message of the channel: its version (1 to 2^53 - 1) and op
 * (pointers into data). Errors: TP_EINVALID when it is not one (the message says where it
 * breaks).
 */
int tp__clog_catalog_decode(const char *data, size_t len, int64_t *version, const char **op,
                            size_t *op_len, tp_error *err);

/**
 * tp__clog_catalog_bound lowers the catalog's bounds for this log's puts: items (1 to
 * TP__CLOG_CATALOG_ITEMS_MAX) and bytes (1 to TP__CLOG_CATALOG_BYTES_MAX), both the maxima
 * by default. Every node should use the same. Errors: TP_EARG (out of range, named).
 */
int tp__clog_catalog_bound(tp__clog *c, uint32_t items, uint32_t bytes, tp_error *err);

/* ---- Figures ------------------------------------------------------------------------- */

typedef struct tp__clog_stats {
    uint64_t calls;             /* calls accepted: each one sends ONE Redis command or script */
    uint64_t appends;           /* of them: appends and deletions */
    uint64_t conflicts;         /* appends answered with a conflict */
    uint64_t reads;             /* reads, snapshots, outcome gets and writer lookups */
    uint64_t outcomes;          /* outcome puts */
    uint64_t catalog_puts;      /* catalog puts */
    uint64_t catalog_conflicts; /* of them, answered with a conflict (expect did not match) */
    uint64_t catalog_loads;     /* catalog loads */
    uint64_t failed;            /* calls answered with err */
    /* Extra round trips, link-wide (tp__redis_stats): a NOSCRIPT answered by EVAL (once per
     * script and master after a restart), and cluster redirections. */
    uint64_t noscript;
    uint64_t redirects;
} tp__clog_stats;

/** tp__clog_stats_get fills *out. */
void tp__clog_stats_get(const tp__clog *c, tp__clog_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* TP_CLUSTER_CLOG_H */
