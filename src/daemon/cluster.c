/*
 * A cluster node: the hub's shared order (core/order.h) on Redis, through the
 * model change log (cluster/clog.h) on the Redis link (cluster/redis.h).
 *
 * The hub asks (append, read, follow) and this file answers through the
 * tp__order_* calls, on the loop's thread. Every answer names the model by
 * (owner, id): the request's strings are copied into a small record per
 * call, which lives until its answer (or until tp__cluster_stop, after which
 * the log runs no callback: the records still waiting are freed there). The
 * followed models are kept in a map from their channel to (owner, id), so a
 * published entry finds its model without parsing the channel's layout.
 */
#include "daemon/cluster.h"

#include <stdio.h>
#include <string.h>

#include "cluster/clog.h"
#include "cluster/redis.h"
#include "core/order.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/map.h"

/* How often the order's tick runs (tp__order_tick): the 5 s wait is kept
 * within this much. */
#define TICK_MS 250
/* Outcomes kept per client in Redis: protocol.md's exactly-once window. */
#define OUTCOME_KEEP 256
/* The Redis link's own connect timeout (per attempt) at most: the start's
 * bound (connect_timeout_ms) spans several attempts. */
#define LINK_CONNECT_MS 2000

/* One call waiting for its answer. */
typedef struct call {
    struct tp__cluster *c;
    struct call *prev, *next;
    char *owner, *id; /* into the same block */
    /* A shared write's outcome, recorded once the append is in (or NULL). */
    char *tenant, *client, *outcome; /* into the same block */
    size_t outcome_len;
    int64_t ref;
    /* A batch: the records of its shared writes' outcomes to record after it. */
    struct call **later;
    size_t nlater;
} call;

/* A followed model: its channel (the map's key) and name. */
typedef struct follow {
    char *channel, *owner, *id; /* into the same block */
} follow;

struct tp__cluster {
    tp_hub *hub;
    uv_loop_t *loop;
    tp__redis *link;
    tp__clog *log;
    tp__daemon_options opt;
    char *node;
    unsigned history, connect_timeout_ms;
    char where[300];      /* HOST:PORT, for messages */
    char reason[512];     /* the link's last failure, or the last failed call's */
    int up, lost;         /* the link is up; it was lost (or never came) since the last up */
    call *calls;          /* waiting for an answer */
    tp__map follows;      /* channel -> follow */
    uv_timer_t *deadline; /* tp__cluster_sync's bound (freed by its close callback) */
    int timed_out;
    uint64_t bad_messages;
    uint64_t retries; /* failed attempts since the link was last up */
};

static const tp__order_ops ops;

/* ---- Calls ---- */

/* call_new keeps (owner, id) for the answer and, for a shared write with an
 * outcome (a != NULL), what tp__clog_outcome_put records after the append. */
static call *
call_new(tp__cluster *c, const char *owner, const char *id, const tp__order_append *a,
         tp_error *err)
{
    size_t on = strlen(owner) + 1, in = strlen(id) + 1;
    size_t tn = a != NULL ? strlen(a->tenant) + 1 : 0, cn = a != NULL ? strlen(a->client) + 1 : 0;
    size_t ol = a != NULL ? a->outcome_len : 0;
    call *k = tp__malloc(sizeof *k + on + in + tn + cn + ol);
    if (k == NULL) {
        tp__error_set(err, TP_ENOMEM, "cluster: out of memory");
        return NULL;
    }
    k->c = c;
    k->owner = (char *)(k + 1);
    k->id = k->owner + on;
    memcpy(k->owner, owner, on);
    memcpy(k->id, id, in);
    k->tenant = k->client = k->outcome = NULL;
    k->outcome_len = 0;
    k->ref = 0;
    if (a != NULL) {
        k->tenant = k->id + in;
        k->client = k->tenant + tn;
        k->outcome = k->client + cn;
        memcpy(k->tenant, a->tenant, tn);
        memcpy(k->client, a->client, cn);
        memcpy(k->outcome, a->outcome, ol);
        k->outcome_len = ol;
        k->ref = a->ref;
    }
    k->later = NULL;
    k->nlater = 0;
    k->prev = NULL;
    k->next = c->calls;
    if (c->calls != NULL)
        c->calls->prev = k;
    c->calls = k;
    return k;
}

static void
call_free(call *k)
{
    tp__cluster *c = k->c;
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        c->calls = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    tp__free(k->later);
    tp__free(k);
}

static void
note_failure(tp__cluster *c, const char *what, const tp_error *err)
{
    snprintf(c->reason, sizeof c->reason, "%s: %s", what, err->message);
}

static int
closed(tp_error *err)
{
    return tp__error_set(err, TP_ECLOSED, "cluster: the node is stopping");
}

/* A call's record, NULL (err set) when the node is stopping or out of memory. */
static call *
call_start(tp__cluster *c, const char *owner, const char *id, const tp__order_append *a,
           tp_error *err)
{
    if (c->log == NULL) {
        closed(err);
        return NULL;
    }
    return call_new(c, owner, id, a, err);
}

/* A call handed to the log (rc): when it failed, its record goes and the failure is noted. */
static int
call_sent(call *k, int rc, const char *what, const tp_error *err)
{
    if (rc != TP_OK) {
        tp__cluster *c = k->c;
        call_free(k);
        note_failure(c, what, err);
    }
    return rc;
}

/* ---- append ---- */

static void
outcome_put(const tp_error *err, void *user)
{
    call *k = user;
    tp__cluster *c = k->c;
    if (err != NULL) {
        /* The write is in the log with its writer: a resend finds it there
         * (tp__clog_writer_in_log), as after a node's crash. */
        note_failure(c, "outcome", err);
        tp__daemon_log(&c->opt, TP_LOG_WARN,
                       "cluster node=%s: a shared write's outcome was not "
                       "recorded: %s",
                       c->node, err->message);
    }
    call_free(k);
}

static void
appended(int conflict, int64_t rev, const char *was, size_t was_len, const tp_error *err,
         void *user)
{
    call *k = user;
    tp__cluster *c = k->c;
    if (err != NULL)
        note_failure(c, "append", err);
    int put = err == NULL && !conflict && k->outcome != NULL;
    tp__order_appended(c->hub, k->owner, k->id, conflict, rev, was, was_len, err);
    if (!put || c->log == NULL) {
        call_free(k);
        return;
    }
    /* A shared write's outcome lives under its writer's tenant, another
     * slot: recorded once the change is in (cluster-log.md, "Exactly
     * once"), a second round trip that the ack does not wait for. */
    tp_error perr = {0, ""};
    if (tp__clog_outcome_put(c->log, k->tenant, k->client, k->ref, k->outcome, k->outcome_len,
                             OUTCOME_KEEP, outcome_put, k, &perr) != TP_OK)
        outcome_put(&perr, k);
}

/* The log's request for one change; returns 1 when its outcome is recorded
 * after it, by a command of its own (a shared write on a Redis Cluster). */
static int
append_req(tp__cluster *c, const tp__order_append *a, tp__clog_append_req *out)
{
    tp__clog_append_req req;
    memset(&req, 0, sizeof req);
    req.owner = a->owner;
    req.id = a->id;
    req.base_rev = a->base_rev;
    req.entry = a->entry;
    req.entry_len = a->entry_len;
    req.record = a->record;
    req.record_len = a->record_len;
    req.keep = c->history;
    req.writer.client = a->client;
    req.writer.ref = a->ref;
    /* A private model's outcome goes in the same script: the change and its
     * outcome are in Redis together or not at all. A shared model's lives
     * under its writer's tenant, another slot (cluster-log.md, "Exactly
     * once"): recorded after the append (appended). */
    int outcome = a->outcome != NULL && a->client != NULL && a->client[0] != '\0';
    /* One Redis (not a cluster) takes a shared write's outcome in the same
     * script too, under the writer's tenant. */
    int one = a->owner[0] != '\0' ||
              (a->tenant != NULL && a->tenant[0] != '\0' && tp__redis_standalone(c->link));
    req.tenant = a->tenant;
    if (outcome && one) {
        req.outcome = a->outcome;
        req.outcome_len = a->outcome_len;
        req.outcome_keep = OUTCOME_KEEP;
    }
    int later = outcome && !one && a->tenant != NULL && a->tenant[0] != '\0';
    if (later) {
        /* A Redis Cluster: a copy of the outcome goes in the model's slot, in the same
         * script, so that a resend through any node finds it even if this node dies before
         * the outcome reaches the client's own record (cluster-log.md, "Exactly once"). */
        req.outcome = a->outcome;
        req.outcome_len = a->outcome_len;
        req.outcome_keep = OUTCOME_KEEP;
        req.outcome_here = 1;
    }
    *out = req;
    return later;
}

static int
be_append(void *be, const tp__order_append *a, tp_error *err)
{
    tp__cluster *c = be;
    tp__clog_append_req req;
    int later = c->log != NULL ? append_req(c, a, &req) : 0;
    /* The call's record holds the outcome to record later. */
    call *k = call_start(c, a->owner, a->id, later ? a : NULL, err);
    if (k == NULL)
        return err->code;
    int rc = tp__clog_append(c->log, &req, appended, k, err);
    return call_sent(k, rc, "append", err);
}

static void
appended_many(int conflict, int64_t rev, size_t dup, const char *was, size_t was_len,
              const tp_error *err, void *user)
{
    call *k = user;
    tp__cluster *c = k->c;
    if (err != NULL)
        note_failure(c, "append", err);
    tp__order_appended_many(c->hub, k->owner, k->id, conflict, rev, dup, was, was_len, err);
    /* Its shared writes' outcomes, each by a command of its own (appended). */
    for (size_t i = 0; i < k->nlater; i++) {
        call *o = k->later[i];
        tp_error perr = {0, ""};
        if (err != NULL || conflict || c->log == NULL)
            call_free(o);
        else if (tp__clog_outcome_put(c->log, o->tenant, o->client, o->ref, o->outcome,
                                      o->outcome_len, OUTCOME_KEEP, outcome_put, o, &perr) != TP_OK)
            outcome_put(&perr, o);
    }
    call_free(k);
}

static int
be_append_many(void *be, const tp__order_append *a, size_t n, tp_error *err)
{
    tp__cluster *c = be;
    tp__clog_append_req *reqs = tp__calloc(n, sizeof *reqs);
    call *k = reqs != NULL ? call_start(c, a[0].owner, a[0].id, NULL, err) : NULL;
    if (reqs == NULL)
        tp__error_set(err, TP_ENOMEM, "cluster: out of memory");
    int rc =
        k != NULL && (k->later = tp__calloc(n, sizeof *k->later)) != NULL
            ? TP_OK
            : (k != NULL ? tp__error_set(err, TP_ENOMEM, "cluster: out of memory") : err->code);
    for (size_t i = 0; rc == TP_OK && i < n; i++) {
        if (append_req(c, &a[i], &reqs[i]) &&
            (k->later[k->nlater] = call_new(c, a[i].owner, a[i].id, &a[i], err)) != NULL)
            k->nlater++;
        else if (err->code == TP_ENOMEM)
            rc = TP_ENOMEM;
    }
    if (rc == TP_OK)
        rc = tp__clog_append_many(c->log, reqs, n, appended_many, k, err);
    if (rc != TP_OK && k != NULL) {
        for (size_t i = 0; i < k->nlater; i++)
            call_free(k->later[i]);
        k->nlater = 0;
        (void)call_sent(k, rc, "append", err);
    }
    tp__free(reqs);
    return rc;
}

/* ---- read ---- */

static void
read_done(const tp__clog_read_result *res, const tp_error *err, void *user)
{
    call *k = user;
    tp__cluster *c = k->c;
    if (err != NULL) {
        note_failure(c, "read", err);
        tp__order_read_done(c->hub, k->owner, k->id, NULL, err);
        call_free(k);
        return;
    }
    tp__order_read out;
    memset(&out, 0, sizeof out);
    out.rev = res->rev;
    switch (res->state) {
    case TP__CLOG_ABSENT: out.state = TP__ORDER_ABSENT; break;
    case TP__CLOG_ENTRIES: out.state = TP__ORDER_ENTRIES; break;
    case TP__CLOG_SNAPSHOT: out.state = TP__ORDER_SNAPSHOT; break;
    case TP__CLOG_DELETED:
    default: out.state = TP__ORDER_DELETED; break;
    }
    out.record = res->record;
    out.record_len = res->record_len;
    tp__order_entry *entries = NULL;
    if (res->state == TP__CLOG_ENTRIES && res->n > 0) {
        entries = tp__calloc(res->n, sizeof *entries);
        if (entries == NULL) {
            tp_error e;
            tp__error_set(&e, TP_ENOMEM, "cluster: out of memory reading %zu entries", res->n);
            note_failure(c, "read", &e);
            tp__order_read_done(c->hub, k->owner, k->id, NULL, &e);
            call_free(k);
            return;
        }
        for (size_t i = 0; i < res->n; i++) {
            entries[i].rev = res->entries[i].rev;
            entries[i].kind = res->entries[i].kind;
            entries[i].entry = res->entries[i].entry;
            entries[i].entry_len = res->entries[i].entry_len;
        }
        out.entries = entries;
        out.n = res->n;
    }
    tp__order_read_done(c->hub, k->owner, k->id, &out, NULL);
    tp__free(entries);
    call_free(k);
}

static int
be_read(void *be, const char *owner, const char *id, int64_t after_rev, tp_error *err)
{
    tp__cluster *c = be;
    call *k = call_start(c, owner, id, NULL, err);
    if (k == NULL)
        return err->code;
    /* A node with nothing of the model wants its record (one HMGET); one
     * that holds a rev wants the entries after it, up to what the log keeps
     * (more would be a snapshot anyway). */
    int rc = after_rev == 0
                 ? tp__clog_snapshot(c->log, owner, id, read_done, k, err)
                 : tp__clog_read(c->log, owner, id, after_rev, c->history, read_done, k, err);
    return call_sent(k, rc, "read", err);
}

/* ---- follow ---- */

static int
be_follow(void *be, const char *owner, const char *id, int on, tp_error *err)
{
    tp__cluster *c = be;
    if (c->log == NULL)
        return on ? closed(err) : TP_OK;
    char channel[TP__CLOG_NAME_MAX + 1];
    size_t len = 0;
    int rc = tp__clog_channel(owner, id, channel, sizeof channel - 1, &len, err);
    if (rc != TP_OK)
        return rc;
    channel[len] = '\0'; /* owner and id hold no NUL: nor does their channel */
    follow *f = tp__map_get(&c->follows, channel);
    if (!on) {
        if (f == NULL)
            return TP_OK;
        tp__map_del(&c->follows, channel);
        tp__free(f);
        rc = tp__clog_unsubscribe(c->log, owner, id, err);
        return rc == TP_ENOTFOUND ? TP_OK : rc;
    }
    if (f != NULL)
        return TP_OK; /* followed already: one subscription */
    size_t olen = strlen(owner) + 1, ilen = strlen(id) + 1;
    f = tp__malloc(sizeof *f + len + 1 + olen + ilen);
    if (f == NULL)
        return tp__error_set(err, TP_ENOMEM, "cluster: out of memory");
    f->channel = (char *)(f + 1);
    f->owner = f->channel + len + 1;
    f->id = f->owner + olen;
    memcpy(f->channel, channel, len + 1);
    memcpy(f->owner, owner, olen);
    memcpy(f->id, id, ilen);
    if (tp__map_put(&c->follows, f->channel, f) != 0) {
        tp__free(f);
        return tp__error_set(err, TP_ENOMEM, "cluster: out of memory");
    }
    rc = tp__clog_subscribe(c->log, owner, id, err);
    if (rc != TP_OK) {
        tp__map_del(&c->follows, f->channel);
        tp__free(f);
    }
    return rc;
}

/* ---- outcomes ---- */

static void
outcomes_done(const tp__clog_outcomes *res, const tp_error *err, void *user)
{
    call *k = user; /* owner: the tenant, id: the client */
    tp__cluster *c = k->c;
    if (err != NULL) {
        note_failure(c, "outcomes", err);
        tp__order_outcomes_done(c->hub, k->owner, k->id, NULL, err);
        call_free(k);
        return;
    }
    tp__order_outcomes out;
    memset(&out, 0, sizeof out);
    tp__order_outcome *items = NULL;
    if (res->found) {
        out.highest = res->highest;
        out.forgotten = res->forgotten;
        if (res->n > 0 && (items = tp__calloc(res->n, sizeof *items)) == NULL) {
            tp_error e;
            tp__error_set(&e, TP_ENOMEM, "cluster: out of memory reading %zu outcomes", res->n);
            note_failure(c, "outcomes", &e);
            tp__order_outcomes_done(c->hub, k->owner, k->id, NULL, &e);
            call_free(k);
            return;
        }
        for (size_t i = 0; i < res->n; i++) {
            items[i].ref = res->items[i].ref;
            items[i].bytes = res->items[i].bytes;
            items[i].len = res->items[i].len;
        }
        out.items = items;
        out.n = res->n;
    }
    tp__order_outcomes_done(c->hub, k->owner, k->id, &out, NULL);
    tp__free(items);
    call_free(k);
}

static int
be_outcomes(void *be, const char *tenant, const char *client, tp_error *err)
{
    tp__cluster *c = be;
    call *k = call_start(c, tenant, client, NULL, err);
    if (k == NULL)
        return err->code;
    int rc = tp__clog_outcomes_get(c->log, tenant, client, outcomes_done, k, err);
    return call_sent(k, rc, "outcomes", err);
}

/* ---- remove ---- */

static void
removed(int conflict, int64_t rev, const char *was, size_t was_len, const tp_error *err, void *user)
{
    (void)was, (void)was_len;
    call *k = user;
    tp__cluster *c = k->c;
    if (err != NULL || conflict)
        tp__daemon_log(&c->opt, TP_LOG_WARN,
                       "cluster node=%s: the deletion of %s/%s was not logged: %s", c->node,
                       k->owner, k->id, err ? err->message : "the model moved on meanwhile");
    (void)rev;
    call_free(k);
}

static int
be_remove(void *be, const char *owner, const char *id, int64_t base_rev, tp_error *err)
{
    tp__cluster *c = be;
    call *k = call_start(c, owner, id, NULL, err);
    if (k == NULL)
        return err->code;
    int rc = tp__clog_delete(c->log, owner, id, base_rev, NULL, removed, k, err);
    return call_sent(k, rc, "remove", err);
}

/* ---- The catalog ---- */

static void
catalog_put_done(int conflict, int64_t version, const tp_error *err, void *user)
{
    call *k = user;
    tp__cluster *c = k->c;
    call_free(k);
    if (err != NULL)
        note_failure(c, "catalog", err);
    tp__order_catalog_done(c->hub, conflict, version, err);
}

static int
be_catalog_put(void *be, int64_t expect, const char *op, size_t op_len, const tp__order_item *items,
               size_t n, tp_error *err)
{
    tp__cluster *c = be;
    tp__clog_item *its = tp__calloc(n + 1, sizeof *its);
    if (its == NULL)
        return tp__error_set(err, TP_ENOMEM, "cluster: out of memory");
    for (size_t i = 0; i < n; i++)
        its[i] =
            (tp__clog_item){items[i].field, items[i].field_len, items[i].body, items[i].body_len};
    call *k = call_start(c, "", "", NULL, err);
    int rc = k != NULL ? call_sent(k,
                                   tp__clog_catalog_put(c->log, expect, op, op_len, its, n,
                                                        catalog_put_done, k, err),
                                   "catalog", err)
                       : err->code;
    tp__free(its);
    return rc;
}

static void
catalog_loaded(const tp__clog_catalog *res, const tp_error *err, void *user)
{
    call *k = user;
    tp__cluster *c = k->c;
    call_free(k);
    if (err != NULL) {
        note_failure(c, "catalog", err);
        tp__order_catalog_loaded(c->hub, 0, NULL, 0, err);
        return;
    }
    tp__order_item *its = tp__calloc(res->n + 1, sizeof *its);
    if (its == NULL) {
        tp_error e;
        tp__error_set(&e, TP_ENOMEM, "cluster: out of memory reading the catalog");
        tp__order_catalog_loaded(c->hub, 0, NULL, 0, &e);
        return;
    }
    for (size_t i = 0; i < res->n; i++)
        its[i] = (tp__order_item){res->items[i].field, res->items[i].field_len, res->items[i].body,
                                  res->items[i].body_len};
    tp__order_catalog_loaded(c->hub, res->version, its, res->n, NULL);
    tp__free(its);
}

static int
be_catalog_load(void *be, tp_error *err)
{
    tp__cluster *c = be;
    call *k = call_start(c, "", "", NULL, err);
    if (k == NULL)
        return err->code;
    int rc = tp__clog_catalog_load(c->log, catalog_loaded, k, err);
    return call_sent(k, rc, "catalog", err);
}

static void
catalog_versioned(int conflict, int64_t version, const tp_error *err, void *user)
{
    call *k = user;
    tp__cluster *c = k->c;
    (void)conflict;
    call_free(k);
    if (err != NULL)
        note_failure(c, "catalog", err);
    tp__order_catalog_version(c->hub, version, err);
}

static int
be_catalog_version(void *be, tp_error *err)
{
    tp__cluster *c = be;
    call *k = call_start(c, "", "", NULL, err);
    if (k == NULL)
        return err->code;
    int rc = tp__clog_catalog_version(c->log, catalog_versioned, k, err);
    return call_sent(k, rc, "catalog", err);
}

static const tp__order_ops ops = {.append = be_append,
                                  .append_many = be_append_many,
                                  .read = be_read,
                                  .follow = be_follow,
                                  .outcomes = be_outcomes,
                                  .remove = be_remove,
                                  .catalog_put = be_catalog_put,
                                  .catalog_load = be_catalog_load,
                                  .catalog_version = be_catalog_version};

/* ---- The link's events ---- */

static void
on_message(const char *channel, size_t channel_len, const char *data, size_t len, void *user)
{
    tp__cluster *c = user;
    tp_error err = {0, ""};
    if (channel_len == sizeof TP__CLOG_CATALOG_CHANNEL - 1 &&
        memcmp(channel, TP__CLOG_CATALOG_CHANNEL, channel_len) == 0) {
        int64_t version;
        const char *op;
        size_t op_len;
        if (tp__clog_catalog_decode(data, len, &version, &op, &op_len, &err) == TP_OK)
            tp__order_catalog_message(c->hub, version, op, op_len);
        else if (c->bad_messages++ == 0)
            tp__daemon_log(&c->opt, TP_LOG_WARN,
                           "cluster: a message on the catalog's channel is not a change, "
                           "ignored: %s",
                           err.message);
        return;
    }
    const follow *f = tp__map_getn(&c->follows, channel, channel_len);
    if (f == NULL)
        return; /* unfollowed while the message was on its way */
    tp__clog_entry e;
    if (tp__clog_decode(data, len, &e, &err) != TP_OK) {
        /* Not one of ours (someone else published on the channel): a node
         * that missed a real entry finds the gap at the next one. */
        if (c->bad_messages++ == 0)
            tp__daemon_log(&c->opt, TP_LOG_WARN,
                           "cluster: a message on a model's channel is not "
                           "a log entry, ignored: %s",
                           err.message);
        return;
    }
    /* The hub may stop following the model while it takes the entry: its
     * name must outlive that, so it is copied first. */
    char owner[TP__CLOG_KEY_MAX + 1], id[TP__CLOG_KEY_MAX + 1];
    snprintf(owner, sizeof owner, "%s", f->owner);
    snprintf(id, sizeof id, "%s", f->id);
    tp__order_entry oe = {e.rev, e.kind, e.entry, e.entry_len};
    tp__order_message(c->hub, owner, id, &oe);
}

static void
on_resubscribed(void *user)
{
    tp__cluster *c = user;
    tp__daemon_log(&c->opt, TP_LOG_INFO,
                   "cluster node=%s redis=%s resubscribed: every model catches up", c->node,
                   c->where);
    tp__order_resync(c->hub);
}

static void
on_state(tp__redis_event ev, const char *reason, uint32_t retry_ms, void *user)
{
    tp__cluster *c = user;
    switch (ev) {
    case TP__REDIS_UP:
        c->up = 1;
        c->retries = 0;
        tp__daemon_log(&c->opt, TP_LOG_INFO, "cluster node=%s redis=%s up", c->node, c->where);
        /* Calls refused or failed while it was away (a read at start, a
         * catch-up): every model reads what it missed. */
        if (c->lost) {
            c->lost = 0;
            tp__order_resync(c->hub);
        }
        break;
    case TP__REDIS_DOWN:
        c->up = 0;
        c->lost = 1;
        snprintf(c->reason, sizeof c->reason, "%s", reason);
        tp__daemon_log(&c->opt, TP_LOG_WARN,
                       "cluster node=%s redis=%s down: %s (writes wait for it, then get internal; "
                       "what the node holds is still served)",
                       c->node, c->where, reason);
        break;
    case TP__REDIS_RETRY:
    default:
        c->lost = 1;
        snprintf(c->reason, sizeof c->reason, "%s", reason);
        /* Each connection (one per master, one for pub/sub) retries on its
         * own, every 5 s at most: the first failure and every tenth after it
         * are warnings, the others debug lines. */
        tp__daemon_log(&c->opt, c->retries++ % 10 == 0 ? TP_LOG_WARN : TP_LOG_DEBUG,
                       "cluster node=%s redis=%s unreachable: %s; next attempt in %u ms", c->node,
                       c->where, reason, retry_ms);
        break;
    }
}

/* ---- Life cycle ---- */

tp__cluster *
tp__cluster_new(tp_hub *hub, uv_loop_t *loop, const tp__cluster_config *cfg, tp_error *err)
{
    tp__redis_url url;
    if (tp__redis_url_parse(cfg->redis, &url, err) != TP_OK)
        return NULL;
    tp__cluster *c = tp__calloc(1, sizeof *c);
    if (c == NULL || (c->node = tp__strdup(cfg->node)) == NULL) {
        tp__free(c);
        tp__error_set(err, TP_ENOMEM, "cluster: out of memory");
        return NULL;
    }
    c->hub = hub;
    c->loop = loop;
    if (cfg->opt != NULL)
        c->opt = *cfg->opt;
    c->history = cfg->history;
    c->connect_timeout_ms = cfg->connect_timeout_ms;
    tp__map_init(&c->follows, tp__seed(c));
    if (url.path[0] != '\0')
        snprintf(c->where, sizeof c->where, "%s", url.path);
    else if (strchr(url.host, ':') != NULL)
        snprintf(c->where, sizeof c->where, "[%s]:%d", url.host, url.port);
    else
        snprintf(c->where, sizeof c->where, "%s:%d", url.host, url.port);
    snprintf(c->reason, sizeof c->reason, "no answer yet");
    memset(&url, 0, sizeof url); /* the password */

    tp__redis_config rc = {0};
    rc.url = cfg->redis;
    rc.connect_timeout_ms =
        cfg->connect_timeout_ms < LINK_CONNECT_MS ? cfg->connect_timeout_ms : LINK_CONNECT_MS;
    rc.on_state = on_state;
    rc.on_message = on_message;
    rc.on_resubscribed = on_resubscribed;
    rc.user = c;
    if ((c->link = tp__redis_new(loop, &rc, err)) == NULL ||
        (c->log = tp__clog_new(c->link, err)) == NULL) {
        tp__cluster_stop(c);
        tp__cluster_free(c);
        return NULL;
    }
    /* Its own block: the loop closes the handle after tp__cluster_stop,
     * maybe after this struct is gone. */
    if ((c->deadline = tp__malloc(sizeof *c->deadline)) == NULL) {
        tp__error_set(err, TP_ENOMEM, "cluster: out of memory");
        tp__cluster_stop(c);
        tp__cluster_free(c);
        return NULL;
    }
    uv_timer_init(loop, c->deadline);
    c->deadline->data = c;
    /* Last: the hub starts reading (and following) its models at once, and
     * loads the catalog, whose changes it follows from now on. */
    if (tp__clog_catalog_subscribe(c->log, 1, err) != TP_OK ||
        tp__hub_set_order(hub, &ops, c, err) != TP_OK) {
        tp__cluster_stop(c);
        tp__cluster_free(c);
        return NULL;
    }
    return c;
}

static void
deadline_passed(uv_timer_t *t)
{
    tp__cluster *c = t->data;
    c->timed_out = 1;
}

/* Once serving, the same timer is the order's tick: writes that waited too
 * long for Redis are refused even when the config has no sync tick
 * (autosync_ms 0). */
static void
tick(uv_timer_t *t)
{
    tp__cluster *c = t->data;
    tp__order_tick(c->hub);
}

int
tp__cluster_sync(tp__cluster *c, volatile sig_atomic_t *stop, char *why, size_t why_size)
{
    c->timed_out = 0;
    uv_timer_start(c->deadline, deadline_passed, c->connect_timeout_ms, 0);
    /* The listener is bound and listening but nothing accepts yet: clients
     * that come now wait in the backlog until the node serves. */
    while (tp__order_unsynced(c->hub) > 0 && !c->timed_out && (stop == NULL || *stop == 0))
        uv_run(c->loop, UV_RUN_ONCE);
    uv_timer_stop(c->deadline);
    size_t left = tp__order_unsynced(c->hub);
    if (left == 0) {
        uv_timer_start(c->deadline, tick, TICK_MS, TICK_MS);
        tp_hub_stats st;
        tp_hub_get_stats(c->hub, &st);
        tp__daemon_log(&c->opt, TP_LOG_INFO, "cluster node=%s redis=%s synced models=%llu", c->node,
                       c->where, (unsigned long long)(st.models_private + st.models_shared));
        return 0;
    }
    if (stop != NULL && *stop != 0)
        return 1;
    snprintf(why, why_size, "redis at %s did not answer within %u ms: %s%s", c->where,
             c->connect_timeout_ms, c->reason,
             c->up ? " (the link is up: models not read yet)" : "");
    return -1;
}

static void
deadline_closed(uv_handle_t *h)
{
    tp__free(h);
}

void
tp__cluster_stop(tp__cluster *c)
{
    if (c == NULL || c->link == NULL)
        return;
    if (c->log != NULL) {
        tp__clog_stats s;
        tp__clog_stats_get(c->log, &s);
        tp__daemon_log(&c->opt, TP_LOG_INFO,
                       "cluster node=%s stats calls=%llu appends=%llu conflicts=%llu reads=%llu "
                       "failed=%llu noscript=%llu redirects=%llu",
                       c->node, (unsigned long long)s.calls, (unsigned long long)s.appends,
                       (unsigned long long)s.conflicts, (unsigned long long)s.reads,
                       (unsigned long long)s.failed, (unsigned long long)s.noscript,
                       (unsigned long long)s.redirects);
    }
    /* No callback of the log runs after this: the calls waiting are ours to
     * free. The hub gets no answer for them (it is stopping too). */
    tp__clog_free(c->log);
    c->log = NULL;
    tp__redis_free(c->link);
    c->link = NULL;
    while (c->calls != NULL)
        call_free(c->calls);
    if (c->deadline != NULL) {
        uv_close((uv_handle_t *)c->deadline, deadline_closed);
        c->deadline = NULL;
    }
}

void
tp__cluster_free(tp__cluster *c)
{
    if (c == NULL)
        return;
    tp__cluster_stop(c);
    void *v;
    for (size_t it = 0; tp__map_next(&c->follows, &it, NULL, &v);)
        tp__free(v);
    tp__map_free(&c->follows);
    tp__free(c->node);
    tp__free(c);
}

const char *
tp__cluster_where(const tp__cluster *c)
{
    return c->where;
}
