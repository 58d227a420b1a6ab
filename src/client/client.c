/*
 * The client's protocol, sans-IO (PROTOCOL.md, the client side): replicas
 * and their local views, pending writes, the frames to send, and what every
 * server message does to them. No sockets and no clock here: the transport
 * (transport.c, or the caller's own loop) carries the frames.
 *
 * Invariants:
 * - A replica's confirmed value is the server's value at its rev. Its view is
 *   confirmed with the model's pending writes applied on top, in ref order;
 *   the view is computed lazily (dirty flag) because a burst of acks would
 *   otherwise recompute it once per ack.
 * - Every pending write is in the client's ref-ordered list and in its
 *   replica's list. It leaves both on its ack, on its error (the rollback),
 *   or when its model is removed.
 * - While connected, every pending write has been queued once on this
 *   connection (sent = 1), except those refused with rate_limited, which wait
 *   for the next tp__client_ping or connection.
 * - Callbacks run under c->mu with the state already consistent; the values
 *   they get are held by a reference for the call, so a callback that writes
 *   (and so replaces the view) cannot free what it is reading.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "client/client.h"
#include "core/patch.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"

/* PROTOCOL.md: a frame that batches several messages is at most 64 KiB. */
#define BATCH_MAX (64 * 1024)

typedef struct pending pending;

typedef struct replica {
    char *key;   /* "p/<id>" or "s/<id>": the map's key */
    char *scope; /* "private" or "shared" */
    char *id;
    char *schema;
    json_t *confirmed; /* the server's value at rev */
    int64_t rev;
    tp_access access;
    json_t *view;   /* confirmed + pending, valid unless dirty */
    int dirty;      /* view must be recomputed */
    int gap;        /* a resume for it is under way: its patches are ignored */
    tp__vec writes; /* pending *, in ref order */
} replica;

struct pending {
    int64_t ref;
    replica *r;
    json_t *patch;
    char *msg; /* the encoded write, the same bytes for every resend */
    size_t msg_len;
    int sent; /* queued on the current connection */
};

typedef struct proto {
    tp__map replicas; /* key -> replica * */
    tp__vec writes;   /* pending *, in ref order */
    int64_t next_ref; /* the next write's ref: never reused */
    int64_t pings;    /* pings use negative refs: -1, -2, ... never a write's */
    int connected;    /* between tp_client_opened and tp_client_closed */
    size_t max_message_bytes;
    char *conn_id; /* the server's id of this connection, from hello */
    /* Frames to send: encoded messages from out_head on. */
    char **out;
    size_t *out_lens;
    size_t out_head, out_len, out_cap;
    char *frame; /* the frame tp_client_next_frame last returned */
} proto;

#define P(c) ((proto *)(c)->proto)

/* ---- Small helpers ---- */

static char *
replica_key(const char *scope, const char *id)
{
    size_t n = strlen(id);
    char *k = tp__malloc(n + 3);
    if (k == NULL)
        return NULL;
    k[0] = scope[0] == 's' ? 's' : 'p';
    k[1] = '/';
    memcpy(k + 2, id, n + 1);
    return k;
}

static int
valid_scope(const char *scope)
{
    return scope != NULL && (strcmp(scope, "private") == 0 || strcmp(scope, "shared") == 0);
}

static replica *
replica_find(tp_client *c, const char *scope, const char *id)
{
    if (!valid_scope(scope) || id == NULL)
        return NULL;
    char *k = replica_key(scope, id);
    if (k == NULL)
        return NULL;
    replica *r = tp__map_get(&P(c)->replicas, k);
    tp__free(k);
    return r;
}

static void
pending_free(pending *w)
{
    if (w == NULL)
        return;
    json_decref(w->patch);
    tp__free(w->msg);
    tp__free(w);
}

static void
replica_free(replica *r)
{
    if (r == NULL)
        return;
    tp__free(r->key);
    tp__free(r->scope);
    tp__free(r->id);
    tp__free(r->schema);
    json_decref(r->confirmed);
    json_decref(r->view);
    tp__vec_free(&r->writes);
    tp__free(r);
}

/* Removes item i of a vector, keeping the order of the others. */
static void
vec_remove_at(tp__vec *v, size_t i)
{
    memmove(v->items + i, v->items + i + 1, (v->len - i - 1) * sizeof *v->items);
    v->len--;
}

/* Removes an item by pointer, searching from the front: acks come in order. */
static void
vec_remove(tp__vec *v, const void *item)
{
    for (size_t i = 0; i < v->len; i++)
        if (v->items[i] == item) {
            vec_remove_at(v, i);
            return;
        }
}

/* view returns the replica's local view, recomputing it when dirty, or NULL
 * when out of memory. Borrowed. */
static json_t *
view(replica *r)
{
    if (!r->dirty && r->view != NULL)
        return r->view;
    json_t *v = json_incref(r->confirmed);
    for (size_t i = 0; i < r->writes.len && v != NULL; i++) {
        pending *w = r->writes.items[i];
        json_t *next = tp_merge_patch_apply(v, w->patch);
        json_decref(v);
        v = next;
    }
    if (v == NULL)
        return NULL;
    json_decref(r->view);
    r->view = v;
    r->dirty = 0;
    return v;
}

/* ---- Frames to send ---- */

static int
out_push(tp_client *c, char *msg, size_t len)
{
    proto *p = P(c);
    if (p->out_len == p->out_cap) {
        if (p->out_head > 0) {
            size_t n = p->out_len - p->out_head;
            memmove(p->out, p->out + p->out_head, n * sizeof *p->out);
            memmove(p->out_lens, p->out_lens + p->out_head, n * sizeof *p->out_lens);
            p->out_len = n;
            p->out_head = 0;
        } else {
            size_t cap = p->out_cap ? p->out_cap * 2 : 16;
            char **out = tp__reallocarray(p->out, cap, sizeof *out);
            if (out == NULL) {
                tp__free(msg);
                return TP_ENOMEM;
            }
            p->out = out;
            size_t *lens = tp__reallocarray(p->out_lens, cap, sizeof *lens);
            if (lens == NULL) {
                tp__free(msg);
                return TP_ENOMEM;
            }
            p->out_lens = lens;
            p->out_cap = cap;
        }
    }
    p->out[p->out_len] = msg;
    p->out_lens[p->out_len] = len;
    p->out_len++;
    if (c->wake != NULL)
        c->wake(c);
    return TP_OK;
}

/* queue_copy queues a copy of a message (the write's kept text). */
static int
queue_copy(tp_client *c, const char *msg, size_t len)
{
    char *m = tp__strndup(msg, len);
    if (m == NULL)
        return TP_ENOMEM;
    return out_push(c, m, len);
}

/* queue_json queues a message; steals msg's reference. */
static int
queue_json(tp_client *c, json_t *msg)
{
    if (msg == NULL)
        return TP_ENOMEM;
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (text == NULL)
        return TP_ENOMEM;
    /* json_dumps allocates through jansson's allocator, which is ours. */
    return out_push(c, text, strlen(text));
}

static void
out_clear(tp_client *c)
{
    proto *p = P(c);
    for (size_t i = p->out_head; i < p->out_len; i++)
        tp__free(p->out[i]);
    p->out_head = p->out_len = 0;
}

/* Queues a write on the current connection. */
static int
send_write(tp_client *c, pending *w)
{
    int rc = queue_copy(c, w->msg, w->msg_len);
    if (rc == TP_OK)
        w->sent = 1;
    return rc;
}

/* Queues every pending write not yet sent on this connection, in ref order. */
static int
send_unsent(tp_client *c)
{
    proto *p = P(c);
    for (size_t i = 0; i < p->writes.len; i++) {
        pending *w = p->writes.items[i];
        if (!w->sent) {
            int rc = send_write(c, w);
            if (rc != TP_OK)
                return rc;
        }
    }
    return TP_OK;
}

/* Asks the server again for one model (PROTOCOL.md: a rev gap). Its patches
 * are ignored until the answer. */
static int
resync(tp_client *c, replica *r)
{
    r->gap = 1;
    if (!P(c)->connected)
        return TP_OK; /* the next connection's resume covers it */
    tp__log(&c->log, TP_LOG_INFO, "client resync scope=%s id=%s rev=%lld", r->scope, r->id,
            (long long)r->rev);
    return queue_json(c, json_pack("{s:s,s:[{s:s,s:s,s:I}]}", "type", "resume", "models", "scope",
                                   r->scope, "id", r->id, "rev", (json_int_t)r->rev));
}

/* ---- Callbacks (under c->mu) ---- */

static void
cb_snapshot(tp_client *c, replica *r)
{
    if (c->opt.cb.snapshot == NULL)
        return;
    json_t *v = json_incref(view(r));
    if (v == NULL)
        return;
    /* Copies: a callback may drop the replica (a write cannot, but be safe). */
    char *scope = r->scope, *id = r->id;
    c->opt.cb.snapshot(c->opt.cb.user, scope, id, r->rev, r->access, v);
    json_decref(v);
}

static void
cb_error(tp_client *c, int64_t ref, const char *scope, const char *id, int code,
         const char *message, const json_t *value)
{
    if (c->opt.cb.error != NULL)
        c->opt.cb.error(c->opt.cb.user, ref, scope, id, code, message, value);
}

/* ---- Write outcomes ---- */

/* Removes a pending write from both lists; the caller frees it. */
static void
pending_detach(tp_client *c, pending *w)
{
    vec_remove(&P(c)->writes, w);
    vec_remove(&w->r->writes, w);
    w->r->dirty = 1;
}

static pending *
pending_find(tp_client *c, int64_t ref)
{
    proto *p = P(c);
    for (size_t i = 0; i < p->writes.len; i++) {
        pending *w = p->writes.items[i];
        if (w->ref == ref)
            return w;
    }
    return NULL;
}

/* Whether the view differs from old; for the snapshot callback that tells
 * about a view changed by something else than a server patch. */
static int
view_changed(replica *r, const json_t *old)
{
    const json_t *now = view(r);
    return now != NULL && (old == NULL || (now != old && !json_equal(now, old)));
}

/* ---- Incoming messages ---- */

static int
violation(tp_client *c, const char *what, const char *type)
{
    tp__log(&c->log, TP_LOG_WARN, "client protocol violation type=%s: %s", type ? type : "?", what);
    return TP_EBADREQUEST;
}

/* Reads scope and id; returns 0 or -1 when missing or mistyped. */
static int
get_addr(const json_t *msg, const char **scope, const char **id)
{
    *scope = json_string_value(json_object_get(msg, "scope"));
    *id = json_string_value(json_object_get(msg, "id"));
    return valid_scope(*scope) && *id != NULL && (*id)[0] != '\0' ? 0 : -1;
}

static int
get_int(const json_t *msg, const char *key, int64_t *out)
{
    const json_t *v = json_object_get(msg, key);
    if (!json_is_integer(v))
        return -1;
    *out = (int64_t)json_integer_value(v);
    return 0;
}

static int
parse_access(const json_t *msg, tp_access *out)
{
    const char *a = json_string_value(json_object_get(msg, "access"));
    if (a == NULL)
        return -1;
    if (strcmp(a, "write") == 0)
        *out = TP_WRITE;
    else if (strcmp(a, "read") == 0)
        *out = TP_READ;
    else
        return -1;
    return 0;
}

static int
on_hello(tp_client *c, const json_t *msg)
{
    proto *p = P(c);
    int64_t protocol = 1, max = 0;
    if (json_object_get(msg, "protocol") != NULL && get_int(msg, "protocol", &protocol) != 0)
        return violation(c, "protocol: expected an integer", "hello");
    if (protocol != 1)
        return violation(c, "protocol: this client speaks version 1", "hello");
    if (get_int(msg, "max_message_bytes", &max) == 0 && max > 0)
        p->max_message_bytes = (size_t)max;
    const char *conn = json_string_value(json_object_get(msg, "conn"));
    if (conn != NULL) {
        char *copy = tp__strdup(conn);
        if (copy == NULL)
            return TP_ENOMEM;
        tp__free(p->conn_id);
        p->conn_id = copy;
    }
    tp__log(&c->log, TP_LOG_DEBUG, "client hello conn=%s", conn ? conn : "?");
    return TP_OK;
}

static int
on_snapshot(tp_client *c, const json_t *msg)
{
    const char *scope, *id;
    int64_t rev;
    tp_access access;
    json_t *value = json_object_get(msg, "value");
    if (get_addr(msg, &scope, &id) != 0)
        return violation(c, "scope, id: expected strings", "snapshot");
    if (get_int(msg, "rev", &rev) != 0 || parse_access(msg, &access) != 0 || !json_is_object(value))
        return violation(c, "rev, access, value: missing or mistyped", "snapshot");
    const char *schema = json_string_value(json_object_get(msg, "schema"));
    char *schema_copy = tp__strdup(schema ? schema : "");
    if (schema_copy == NULL)
        return TP_ENOMEM;
    replica *r = replica_find(c, scope, id);
    if (r == NULL) {
        r = tp__calloc(1, sizeof *r);
        if (r == NULL) {
            tp__free(schema_copy);
            return TP_ENOMEM;
        }
        r->key = replica_key(scope, id);
        r->scope = tp__strdup(scope);
        r->id = tp__strdup(id);
        if (r->key == NULL || r->scope == NULL || r->id == NULL ||
            tp__map_put(&P(c)->replicas, r->key, r) != 0) {
            replica_free(r);
            tp__free(schema_copy);
            return TP_ENOMEM;
        }
    }
    tp__free(r->schema);
    r->schema = schema_copy;
    json_decref(r->confirmed);
    r->confirmed = json_incref(value);
    r->rev = rev;
    r->access = access;
    r->gap = 0;
    /* The pending writes stay on top of the new confirmed value. */
    r->dirty = 1;
    if (view(r) == NULL)
        return TP_ENOMEM;
    cb_snapshot(c, r);
    return TP_OK;
}

static int
on_patch(tp_client *c, const json_t *msg)
{
    const char *scope, *id;
    int64_t from, rev;
    const json_t *patch = json_object_get(msg, "patch");
    if (get_addr(msg, &scope, &id) != 0)
        return violation(c, "scope, id: expected strings", "patch");
    if (get_int(msg, "from", &from) != 0 || get_int(msg, "rev", &rev) != 0 || rev <= from ||
        !json_is_object(patch))
        return violation(c, "from, rev, patch: missing or mistyped", "patch");
    replica *r = replica_find(c, scope, id);
    if (r == NULL) {
        /* A model removed while this patch was on its way. */
        tp__log(&c->log, TP_LOG_DEBUG, "client patch for unknown model scope=%s id=%s", scope, id);
        return TP_OK;
    }
    if (rev <= r->rev)
        return TP_OK; /* already held (a resume answer may overlap) */
    if (from != r->rev) {
        /* PROTOCOL.md: a patch whose from is not the rev held means a change
         * was missed: resume that model, ignore its patches until the
         * answer (which starts at the rev held). */
        if (r->gap)
            return TP_OK;
        tp__log(&c->log, TP_LOG_WARN, "client rev gap scope=%s id=%s rev=%lld from=%lld", scope, id,
                (long long)r->rev, (long long)from);
        return resync(c, r);
    }
    json_t *next = tp_merge_patch_apply(r->confirmed, patch);
    if (next == NULL)
        return TP_ENOMEM;
    json_decref(r->confirmed);
    r->confirmed = next;
    r->rev = rev;
    r->gap = 0;
    r->dirty = 1;
    if (c->opt.cb.patch != NULL) {
        json_t *v = json_incref(view(r));
        if (v == NULL)
            return TP_ENOMEM;
        const char *origin = json_string_value(json_object_get(msg, "origin"));
        c->opt.cb.patch(c->opt.cb.user, r->scope, r->id, from, rev, patch, origin ? origin : "", v);
        json_decref(v);
    }
    return TP_OK;
}

static int
on_ack(tp_client *c, const json_t *msg)
{
    int64_t ref, rev, from = -1;
    if (get_int(msg, "ref", &ref) != 0 || get_int(msg, "rev", &rev) != 0)
        return violation(c, "ref, rev: expected integers", "ack");
    int has_from = get_int(msg, "from", &from) == 0;
    pending *w = pending_find(c, ref);
    if (w == NULL) {
        /* Not ours any more (its model was removed), or answered twice. */
        tp__log(&c->log, TP_LOG_DEBUG, "client ack for no pending write ref=%lld", (long long)ref);
        return TP_OK;
    }
    replica *r = w->r;
    json_t *old = json_incref(r->view);
    int rc = TP_OK;
    if (has_from && r->scope[0] == 'p') {
        /* PROTOCOL.md: a private write is not echoed; its patch, applied
         * as sent to the value at from, gives the value at rev. */
        if (r->rev == from) {
            json_t *next = tp_merge_patch_apply(r->confirmed, w->patch);
            if (next == NULL) {
                json_decref(old);
                return TP_ENOMEM;
            }
            json_decref(r->confirmed);
            r->confirmed = next;
            r->rev = rev;
        } else if (r->rev < rev && !r->gap) {
            /* Something between our rev and from was missed. */
            rc = resync(c, r);
        }
        /* r->rev >= rev: a resume answer already brought the write. */
    }
    /* A shared write's patch arrived before its ack: confirmed holds it. */
    pending_detach(c, w);
    pending_free(w);
    if (c->opt.cb.ack != NULL)
        c->opt.cb.ack(c->opt.cb.user, ref, r->scope, r->id, rev);
    /* The merge may have made the server's value differ from what the view
     * showed (an lww-map field that lost): tell as a whole value. */
    if (c->opt.cb.snapshot != NULL && view_changed(r, old))
        cb_snapshot(c, r);
    json_decref(old);
    return rc;
}

/* The TP_E... code of a PROTOCOL.md error name (tp_error_name in reverse). */
static int
code_of(const char *name)
{
    static const int codes[] = {TP_EBADREQUEST,  TP_ENOTFOUND,  TP_EFORBIDDEN,
                                TP_EINVALID,     TP_EREJECTED,  TP_ETOOLARGE,
                                TP_ERATELIMITED, TP_EDUPLICATE, TP_EINTERNAL};
    if (name != NULL)
        for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
            if (strcmp(tp_error_name(codes[i]), name) == 0)
                return codes[i];
    return TP_EINTERNAL;
}

static int
on_error(tp_client *c, const json_t *msg)
{
    const char *name = json_string_value(json_object_get(msg, "code"));
    const char *message = json_string_value(json_object_get(msg, "message"));
    if (name == NULL)
        return violation(c, "code: expected a string", "error");
    if (message == NULL)
        message = "";
    int code = code_of(name);
    int64_t ref = 0;
    pending *w = get_int(msg, "ref", &ref) == 0 && ref > 0 ? pending_find(c, ref) : NULL;
    if (w == NULL) {
        tp__log(&c->log, TP_LOG_WARN, "client error from server ref=%lld code=%s: %s",
                (long long)ref, name, message);
        /* A write's ref that is no longer pending was already reported (its
         * model was removed); anything else (a refused resume, a ping) has
         * nothing to roll back and is reported with ref 0. */
        if (ref <= 0)
            cb_error(c, 0, NULL, NULL, code, message, NULL);
        return TP_OK;
    }
    if (code == TP_ERATELIMITED) {
        /* PROTOCOL.md: not recorded, resend it later with the same ref. It
         * stays pending (and in the view) and is sent again by the next
         * tp__client_ping or on the next connection. */
        tp__log(&c->log, TP_LOG_INFO, "client write rate limited ref=%lld: resent later",
                (long long)ref);
        w->sent = 0;
        return TP_OK;
    }
    /* Every other refusal (internal included: the server failed, and the
     * caller decides whether to write again) rolls the write back. */
    replica *r = w->r;
    json_t *old = json_incref(r->view);
    pending_detach(c, w);
    pending_free(w);
    tp__log(&c->log, TP_LOG_INFO, "client write refused ref=%lld scope=%s id=%s code=%s: %s",
            (long long)ref, r->scope, r->id, name, message);
    json_t *v = json_incref(view(r));
    cb_error(c, ref, r->scope, r->id, code, message, v);
    json_decref(v);
    if (c->opt.cb.snapshot != NULL && view_changed(r, old))
        cb_snapshot(c, r);
    json_decref(old);
    return TP_OK;
}

static int
on_access(tp_client *c, const json_t *msg)
{
    const char *scope, *id;
    tp_access access;
    if (get_addr(msg, &scope, &id) != 0 || parse_access(msg, &access) != 0)
        return violation(c, "scope, id, access: missing or mistyped", "access");
    replica *r = replica_find(c, scope, id);
    if (r == NULL)
        return TP_OK;
    r->access = access;
    if (c->opt.cb.access != NULL)
        c->opt.cb.access(c->opt.cb.user, r->scope, r->id, access);
    return TP_OK;
}

static int
on_removed(tp_client *c, const json_t *msg)
{
    const char *scope, *id;
    if (get_addr(msg, &scope, &id) != 0)
        return violation(c, "scope, id: expected strings", "removed");
    replica *r = replica_find(c, scope, id);
    if (r == NULL)
        return TP_OK;
    /* Detached first: callbacks see a client without the model. */
    tp__map_del(&P(c)->replicas, r->key);
    for (size_t i = 0; i < r->writes.len; i++)
        vec_remove(&P(c)->writes, r->writes.items[i]);
    for (size_t i = 0; i < r->writes.len; i++) {
        pending *w = r->writes.items[i];
        char m[160];
        snprintf(m, sizeof m, "id: model \"%.64s\" in scope \"%s\" was removed", r->id, r->scope);
        cb_error(c, w->ref, r->scope, r->id, TP_ENOTFOUND, m, NULL);
        pending_free(w);
    }
    r->writes.len = 0;
    if (c->opt.cb.removed != NULL)
        c->opt.cb.removed(c->opt.cb.user, r->scope, r->id);
    replica_free(r);
    return TP_OK;
}

static int
on_message(tp_client *c, const json_t *msg)
{
    if (!json_is_object(msg))
        return violation(c, "expected a message object", NULL);
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (type == NULL)
        return violation(c, "type: required, a string", NULL);
    if (strcmp(type, "patch") == 0)
        return on_patch(c, msg);
    if (strcmp(type, "ack") == 0)
        return on_ack(c, msg);
    if (strcmp(type, "snapshot") == 0)
        return on_snapshot(c, msg);
    if (strcmp(type, "error") == 0)
        return on_error(c, msg);
    if (strcmp(type, "hello") == 0)
        return on_hello(c, msg);
    if (strcmp(type, "synced") == 0) {
        tp__client_set_state(c, TP_CLIENT_LIVE, NULL);
        return TP_OK;
    }
    if (strcmp(type, "access") == 0)
        return on_access(c, msg);
    if (strcmp(type, "removed") == 0)
        return on_removed(c, msg);
    if (strcmp(type, "pong") == 0)
        return TP_OK;
    /* A newer server's message: ignored, as a later protocol version may add some. */
    tp__log(&c->log, TP_LOG_DEBUG, "client ignores message type=%.64s", type);
    return TP_OK;
}

/* ---- URL ---- */

int
tp__client_parse_url(const char *url, tp__url *out, tp_error *err)
{
    memset(out, 0, sizeof *out);
    out->port = -1;
    if (url == NULL)
        return tp__error_set(err, TP_EARG, "url: required");
    for (const char *q = url; *q != '\0'; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f)
            return tp__error_set(err, TP_EARG, "url: a space or control character at offset %zu",
                                 (size_t)(q - url));
    const char *s;
    if (strncasecmp(url, "ws://", 5) == 0) {
        s = url + 5;
    } else if (strncasecmp(url, "wss://", 6) == 0) {
        s = url + 6;
        out->tls = 1;
    } else {
        return tp__error_set(err, TP_EARG, "url: expected ws:// or wss://, got \"%.64s\"", url);
    }
    if (strchr(s, '#') != NULL)
        return tp__error_set(err, TP_EARG, "url: a WebSocket URL has no fragment (#)");
    size_t alen = strcspn(s, "/?");
    const char *end = s + alen;
    if (memchr(s, '@', alen) != NULL)
        return tp__error_set(err, TP_EARG, "url: user information (user@) is not supported");
    const char *host = s, *host_end, *port = NULL;
    if (*s == '[') {
        const char *close = memchr(s, ']', alen);
        if (close == NULL)
            return tp__error_set(err, TP_EARG, "url: an IPv6 address without its closing ]");
        host = s + 1;
        host_end = close;
        if (close + 1 < end) {
            if (close[1] != ':')
                return tp__error_set(err, TP_EARG, "url: expected : or / after ]");
            port = close + 2;
        }
        for (const char *q = host; q < host_end; q++)
            if (tp__hex_digit(*q) < 0 && *q != ':' && *q != '.')
                return tp__error_set(err, TP_EARG, "url: not an IPv6 address between [ and ]");
    } else {
        const char *colon = memchr(s, ':', alen);
        host_end = colon ? colon : end;
        if (colon != NULL)
            port = colon + 1;
    }
    if (host_end == host)
        return tp__error_set(err, TP_EARG, "url: no host");
    if (port != NULL) {
        long v = 0;
        if (port == end)
            return tp__error_set(err, TP_EARG, "url: empty port after :");
        for (const char *q = port; q < end; q++) {
            if (*q < '0' || *q > '9')
                return tp__error_set(err, TP_EARG, "url: the port must be a number");
            v = v * 10 + (*q - '0');
            if (v > 65535)
                break;
        }
        if (v < 1 || v > 65535)
            return tp__error_set(err, TP_EARG, "url: port out of range (1 to 65535)");
        out->port = (int)v;
    } else {
        out->port = out->tls ? 443 : 80;
    }
    out->host = tp__strndup(host, (size_t)(host_end - host));
    size_t plen = strlen(end);
    out->path = tp__malloc(plen + 2);
    if (out->host == NULL || out->path == NULL) {
        tp__client_url_free(out);
        return tp__error_set(err, TP_ENOMEM, "out of memory");
    }
    /* "ws://h?x=1" has the path "/" and the query "x=1". */
    size_t o = 0;
    if (*end != '/')
        out->path[o++] = '/';
    memcpy(out->path + o, end, plen + 1);
    return TP_OK;
}

void
tp__client_url_free(tp__url *u)
{
    tp__free(u->host);
    tp__free(u->path);
    u->host = u->path = NULL;
}

/* ---- Life cycle ---- */

static char *
random_id(void)
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got < sizeof b) {
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t n = read(fd, b, sizeof b);
            got = n == (ssize_t)sizeof b ? sizeof b : got;
            close(fd);
        }
    }
    if (got < sizeof b) {
        /* No entropy source: the clock and an address, mixed. */
        uint64_t x = tp__seed(b) ^ (uint64_t)tp__clock_mono_ns();
        for (size_t i = 0; i < sizeof b; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b[i] = (unsigned char)x;
        }
    }
    char *id = tp__malloc(2 * sizeof b + 1);
    if (id == NULL)
        return NULL;
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof b; i++) {
        id[2 * i] = hex[b[i] >> 4];
        id[2 * i + 1] = hex[b[i] & 15];
    }
    id[2 * sizeof b] = '\0';
    return id;
}

static int
copy_str(char **dst, const char *src)
{
    *dst = NULL;
    if (src == NULL)
        return 0;
    *dst = tp__strdup(src);
    return *dst == NULL ? -1 : 0;
}

TP_API tp_client *
tp_client_new(const char *url, const tp_client_options *opts, tp_error *err)
{
    tp__url u;
    int rc = tp__client_parse_url(url, &u, err);
    if (rc != TP_OK)
        return NULL;
    tp_client_options o = {0};
    if (opts != NULL)
        o = *opts;
    if (o.client_id != NULL && (o.client_id[0] == '\0' || strlen(o.client_id) > 64)) {
        tp__client_url_free(&u);
        tp__error_set(err, TP_EARG, "client_id: 1 to 64 characters");
        return NULL;
    }
    if (o.headers != NULL)
        for (size_t i = 0; o.headers[i] != NULL; i++)
            if (strchr(o.headers[i], ':') == NULL || strpbrk(o.headers[i], "\r\n") != NULL) {
                tp__client_url_free(&u);
                tp__error_set(err, TP_EARG, "headers[%zu]: expected one \"Name: value\" line", i);
                return NULL;
            }
    tp_client *c = tp__calloc(1, sizeof *c);
    proto *p = tp__calloc(1, sizeof *p);
    if (c == NULL || p == NULL) {
        tp__free(c);
        tp__free(p);
        tp__client_url_free(&u);
        tp__error_set(err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    c->url = u;
    c->proto = p;
    tp__map_init(&p->replicas, tp__seed(p));
    p->next_ref = 1;
    p->max_message_bytes = 1024 * 1024;
    int bad = copy_str(&c->url_text, url) | copy_str(&c->token, o.token) |
              copy_str(&c->ca_file, o.ca_file) | copy_str(&c->client_id, o.client_id);
    if (c->client_id == NULL && !bad) {
        c->client_id = random_id();
        bad = c->client_id == NULL;
    }
    if (o.headers != NULL && !bad) {
        size_t n = 0;
        while (o.headers[n] != NULL)
            n++;
        c->headers = tp__calloc(n + 1, sizeof *c->headers);
        bad = c->headers == NULL;
        for (size_t i = 0; i < n && !bad; i++)
            bad = copy_str(&c->headers[i], o.headers[i]);
    }
    o.token = c->token;
    o.ca_file = c->ca_file;
    o.client_id = c->client_id;
    o.headers = (const char *const *)c->headers;
    if (o.backoff_min_ms == 0)
        o.backoff_min_ms = 250;
    if (o.backoff_max_ms == 0)
        o.backoff_max_ms = 30000;
    if (o.backoff_max_ms < o.backoff_min_ms)
        o.backoff_max_ms = o.backoff_min_ms;
    if (o.connect_timeout_ms == 0)
        o.connect_timeout_ms = 10000;
    if (o.ping_interval_ms == 0)
        o.ping_interval_ms = 20000;
    c->opt = o;
    c->log = (tp__logger){o.log, o.log_user, o.log_level};
    c->state = TP_CLIENT_IDLE;

    pthread_mutexattr_t ma;
    pthread_condattr_t ca;
    int locks = 0;
    if (!bad && pthread_mutexattr_init(&ma) == 0) {
        if (pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE) == 0 &&
            pthread_mutex_init(&c->mu, &ma) == 0)
            locks = 1;
        pthread_mutexattr_destroy(&ma);
    }
    if (locks && pthread_condattr_init(&ca) == 0) {
        if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
            pthread_cond_init(&c->cv, &ca) == 0)
            locks = 2;
        pthread_condattr_destroy(&ca);
    }
    if (bad || locks != 2) {
        if (locks >= 1)
            pthread_mutex_destroy(&c->mu);
        c->cv = (pthread_cond_t)PTHREAD_COND_INITIALIZER;
        locks = 0;
    }
    if (bad || locks == 0) {
        /* Freed by hand: tp_client_free would lock the mutex. */
        tp__free(c->url_text);
        tp__free(c->token);
        tp__free(c->ca_file);
        tp__free(c->client_id);
        if (c->headers != NULL)
            for (size_t i = 0; c->headers[i] != NULL; i++)
                tp__free(c->headers[i]);
        tp__free(c->headers);
        tp__client_url_free(&c->url);
        tp__free(p);
        tp__free(c);
        tp__error_set(err, bad ? TP_ENOMEM : TP_EINTERNAL,
                      bad ? "out of memory" : "cannot make the client's lock");
        return NULL;
    }
    tp__error_clear(err);
    return c;
}

TP_API int
tp_client_start(tp_client *c, tp_error *err)
{
    if (c == NULL)
        return tp__error_set(err, TP_EARG, "client: NULL");
    pthread_mutex_lock(&c->mu);
    int busy = c->transport != NULL;
    pthread_mutex_unlock(&c->mu);
    if (busy)
        return tp__error_set(err, TP_EARG, "client: already started");
    return tp__client_transport_start(c, err);
}

TP_API void
tp_client_stop(tp_client *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    int running = c->transport != NULL;
    pthread_mutex_unlock(&c->mu);
    if (running)
        tp__client_transport_stop(c);
    pthread_mutex_lock(&c->mu);
    if (P(c)->connected) {
        /* Sans-IO: the caller's connection is still up; frames for it are
         * dropped, pending writes stay for a later connection. */
        P(c)->connected = 0;
        out_clear(c);
        for (size_t i = 0; i < P(c)->writes.len; i++)
            ((pending *)P(c)->writes.items[i])->sent = 0;
    }
    tp__client_set_state(c, TP_CLIENT_STOPPED, "stopped");
    pthread_mutex_unlock(&c->mu);
}

TP_API void
tp_client_free(tp_client *c)
{
    if (c == NULL)
        return;
    tp_client_stop(c);
    proto *p = P(c);
    for (size_t i = 0; i < p->writes.len; i++)
        pending_free(p->writes.items[i]);
    tp__vec_free(&p->writes);
    const char *k;
    void *v;
    for (size_t it = 0; tp__map_next(&p->replicas, &it, &k, &v);)
        replica_free(v);
    tp__map_free(&p->replicas);
    out_clear(c);
    tp__free(p->out);
    tp__free(p->out_lens);
    tp__free(p->frame);
    tp__free(p->conn_id);
    tp__free(p);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    tp__free(c->url_text);
    tp__free(c->token);
    tp__free(c->ca_file);
    tp__free(c->client_id);
    if (c->headers != NULL)
        for (size_t i = 0; c->headers[i] != NULL; i++)
            tp__free(c->headers[i]);
    tp__free(c->headers);
    tp__client_url_free(&c->url);
    tp__free(c);
}

void
tp__client_set_state(tp_client *c, tp_client_state state, const char *why)
{
    if (c->state == state)
        return;
    c->state = state;
    static const char *const names[] = {"idle",    "connecting", "syncing", "live",
                                        "waiting", "refused",    "stopped"};
    tp__log(&c->log, state == TP_CLIENT_REFUSED ? TP_LOG_WARN : TP_LOG_INFO, "client state=%s%s%s",
            names[state], why ? " why=" : "", why ? why : "");
    pthread_cond_broadcast(&c->cv);
    if (c->opt.cb.state != NULL)
        c->opt.cb.state(c->opt.cb.user, state, why);
}

/* ---- Writing ---- */

TP_API int64_t
tp_client_write(tp_client *c, const char *scope, const char *id, const char *patch, tp_error *err)
{
    if (c == NULL || scope == NULL || id == NULL || patch == NULL)
        return tp__error_set(err, TP_EARG, "client, scope, id, patch: required");
    if (!valid_scope(scope))
        return tp__error_set(err, TP_ENOTFOUND, "scope: expected \"private\" or \"shared\"");
    json_error_t jerr;
    json_t *jp = json_loads(patch, JSON_REJECT_DUPLICATES, &jerr);
    if (jp == NULL)
        return tp__error_set(err, TP_EBADREQUEST, "patch: not JSON: %s", jerr.text);
    if (!json_is_object(jp)) {
        json_decref(jp);
        return tp__error_set(err, TP_EBADREQUEST, "patch: expected a JSON object");
    }
    pthread_mutex_lock(&c->mu);
    proto *p = P(c);
    int64_t rc;
    pending *w = NULL;
    replica *r = replica_find(c, scope, id);
    if (r == NULL) {
        rc = tp__error_set(err, TP_ENOTFOUND, "id: no model \"%.64s\" in scope \"%s\"", id, scope);
        goto fail;
    }
    if (r->access != TP_WRITE) {
        rc = tp__error_set(err, TP_EFORBIDDEN, "id: model \"%.64s\" in scope \"%s\" is read-only",
                           id, scope);
        goto fail;
    }
    w = tp__calloc(1, sizeof *w);
    if (w == NULL)
        goto nomem;
    w->ref = p->next_ref;
    w->r = r;
    w->patch = jp;
    jp = NULL;
    json_t *m = json_pack("{s:s,s:I,s:s,s:s,s:O}", "type", "write", "ref", (json_int_t)w->ref,
                          "scope", r->scope, "id", r->id, "patch", w->patch);
    w->msg = m ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    if (w->msg == NULL)
        goto nomem;
    w->msg_len = strlen(w->msg);
    if (w->msg_len > p->max_message_bytes) {
        rc = tp__error_set(err, TP_ETOOLARGE,
                           "patch: the write is %zu bytes, over the server's limit of %zu",
                           w->msg_len, p->max_message_bytes);
        goto fail;
    }
    if (tp__vec_reserve(&p->writes, 1) != 0 || tp__vec_reserve(&r->writes, 1) != 0)
        goto nomem;
    /* Applied to the view at once (optimistically). */
    if (!r->dirty && r->view != NULL) {
        json_t *next = tp_merge_patch_apply(r->view, w->patch);
        if (next == NULL)
            goto nomem;
        json_decref(r->view);
        r->view = next;
    }
    tp__vec_push(&p->writes, w);
    tp__vec_push(&r->writes, w);
    p->next_ref++;
    if (p->connected && send_write(c, w) != TP_OK) {
        /* Stays pending: it is sent with the next connection. The frame
         * queue is short of memory; the transport will see it. */
        tp__log(&c->log, TP_LOG_WARN, "client out of memory queueing ref=%lld", (long long)w->ref);
    }
    pthread_mutex_unlock(&c->mu);
    tp__error_clear(err);
    return w->ref;
nomem:
    rc = tp__error_set(err, TP_ENOMEM, "out of memory");
fail:
    pending_free(w);
    json_decref(jp);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* ---- Reading ---- */

TP_API char *
tp_client_get(tp_client *c, const char *scope, const char *id, int64_t *rev, tp_access *access)
{
    if (c == NULL || scope == NULL || id == NULL)
        return NULL;
    pthread_mutex_lock(&c->mu);
    char *text = NULL;
    replica *r = replica_find(c, scope, id);
    json_t *v = r ? view(r) : NULL;
    if (v != NULL) {
        text = json_dumps(v, JSON_COMPACT);
        if (rev != NULL)
            *rev = r->rev;
        if (access != NULL)
            *access = r->access;
    }
    pthread_mutex_unlock(&c->mu);
    return text;
}

static int
by_key(const void *a, const void *b)
{
    const replica *x = *(replica *const *)a, *y = *(replica *const *)b;
    return strcmp(x->key, y->key);
}

TP_API char *
tp_client_models(tp_client *c)
{
    if (c == NULL)
        return NULL;
    pthread_mutex_lock(&c->mu);
    proto *p = P(c);
    char *text = NULL;
    json_t *arr = json_array();
    replica **all = tp__calloc(p->replicas.len + 1, sizeof *all);
    if (arr != NULL && all != NULL) {
        size_t n = 0;
        const char *k;
        void *v;
        for (size_t it = 0; tp__map_next(&p->replicas, &it, &k, &v);)
            all[n++] = v;
        /* Private models first, then shared ones, each by id. */
        qsort(all, n, sizeof *all, by_key);
        int ok = 1;
        for (size_t i = 0; i < n && ok; i++)
            ok = json_array_append_new(
                     arr, json_pack("{s:s,s:s,s:I,s:s}", "scope", all[i]->scope, "id", all[i]->id,
                                    "rev", (json_int_t)all[i]->rev, "access",
                                    all[i]->access == TP_WRITE ? "write" : "read")) == 0;
        if (ok)
            text = json_dumps(arr, JSON_COMPACT);
    }
    tp__free(all);
    json_decref(arr);
    pthread_mutex_unlock(&c->mu);
    return text;
}

TP_API tp_client_state
tp_client_get_state(tp_client *c)
{
    if (c == NULL)
        return TP_CLIENT_STOPPED;
    pthread_mutex_lock(&c->mu);
    tp_client_state s = c->state;
    pthread_mutex_unlock(&c->mu);
    return s;
}

TP_API size_t
tp_client_pending(tp_client *c)
{
    if (c == NULL)
        return 0;
    pthread_mutex_lock(&c->mu);
    size_t n = P(c)->writes.len;
    pthread_mutex_unlock(&c->mu);
    return n;
}

TP_API const char *
tp_client_id(tp_client *c)
{
    return c ? c->client_id : NULL;
}

TP_API int
tp_client_wait(tp_client *c, int what, unsigned timeout_ms)
{
    if (c == NULL)
        return TP_EARG;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(timeout_ms / 1000);
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mu);
    int rc;
    for (;;) {
        tp_client_state s = c->state;
        if (s == TP_CLIENT_REFUSED || s == TP_CLIENT_STOPPED) {
            rc = TP_ECLOSED;
            break;
        }
        if (s == TP_CLIENT_LIVE && (what != TP_CLIENT_WAIT_IDLE || P(c)->writes.len == 0)) {
            rc = TP_OK;
            break;
        }
        if (pthread_cond_timedwait(&c->cv, &c->mu, &until) == ETIMEDOUT) {
            rc = TP_EINTERNAL;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* ---- Sans-IO ---- */

/* Appends "&name=value" (or "?...") with value percent-encoded. */
static void
query_add(tp__sb *sb, int *has_query, const char *name, const char *value)
{
    tp__sb_puts(sb, *has_query ? "&" : "?");
    *has_query = 1;
    tp__sb_puts(sb, name);
    tp__sb_puts(sb, "=");
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *q = (const unsigned char *)value; *q != '\0'; q++) {
        if ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') ||
            *q == '-' || *q == '.' || *q == '_' || *q == '~') {
            tp__sb_append(sb, (const char *)q, 1);
        } else {
            char e[3] = {'%', hex[*q >> 4], hex[*q & 15]};
            tp__sb_append(sb, e, 3);
        }
    }
}

TP_API char *
tp_client_url(tp_client *c)
{
    if (c == NULL)
        return NULL;
    pthread_mutex_lock(&c->mu);
    tp__sb sb;
    tp__sb_init(&sb, strlen(c->url_text) + 64);
    tp__sb_puts(&sb, c->url_text);
    int has_query = strchr(c->url_text, '?') != NULL;
    /* PROTOCOL.md: a client that holds revs from an earlier connection
     * adds resume=1, and its first message is then `resume`. */
    if (P(c)->replicas.len > 0) {
        tp__sb_puts(&sb, has_query ? "&resume=1" : "?resume=1");
        has_query = 1;
    }
    if (c->token != NULL && c->opt.token_in_query)
        query_add(&sb, &has_query, "token", c->token);
    if (c->state != TP_CLIENT_SYNCING && c->state != TP_CLIENT_LIVE)
        tp__client_set_state(c, TP_CLIENT_CONNECTING, NULL);
    pthread_mutex_unlock(&c->mu);
    tp__buf *b = tp__sb_finish(&sb);
    if (b == NULL)
        return NULL;
    char *s = tp__strndup(b->data, b->len);
    tp__buf_unref(b);
    return s;
}

TP_API void
tp_client_opened(tp_client *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    proto *p = P(c);
    out_clear(c);
    p->connected = 1;
    tp__client_set_state(c, TP_CLIENT_SYNCING, NULL);
    int rc;
    if (p->replicas.len > 0) {
        /* Every held model with its rev; the answer covers the gaps too. */
        json_t *models = json_array();
        const char *k;
        void *v;
        for (size_t it = 0; models != NULL && tp__map_next(&p->replicas, &it, &k, &v);) {
            replica *r = v;
            r->gap = 0;
            if (json_array_append_new(models, json_pack("{s:s,s:s,s:I}", "scope", r->scope, "id",
                                                        r->id, "rev", (json_int_t)r->rev)) != 0) {
                json_decref(models);
                models = NULL;
            }
        }
        rc = queue_json(c, models ? json_pack("{s:s,s:o,s:s}", "type", "resume", "models", models,
                                              "client", c->client_id)
                                  : NULL);
    } else {
        /* Names the client for exactly-once before any write. */
        rc = queue_json(c, json_pack("{s:s,s:I,s:s}", "type", "ping", "ref",
                                     (json_int_t)(-++p->pings), "client", c->client_id));
    }
    for (size_t i = 0; i < p->writes.len; i++)
        ((pending *)p->writes.items[i])->sent = 0;
    if (rc == TP_OK)
        rc = send_unsent(c);
    if (rc != TP_OK)
        tp__log(&c->log, TP_LOG_ERROR, "client out of memory starting a connection");
    pthread_mutex_unlock(&c->mu);
}

TP_API int
tp_client_feed(tp_client *c, const char *text, size_t len)
{
    if (c == NULL || (text == NULL && len > 0))
        return TP_EARG;
    pthread_mutex_lock(&c->mu);
    int rc = TP_OK;
    if (!P(c)->connected) {
        rc = TP_ECLOSED;
        goto out;
    }
    json_error_t jerr;
    json_t *msg = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (msg == NULL) {
        tp__log(&c->log, TP_LOG_WARN, "client bad frame from server: %s at %d", jerr.text,
                jerr.position);
        rc = TP_EBADREQUEST;
        goto out;
    }
    if (json_is_array(msg)) {
        size_t i;
        json_t *m;
        json_array_foreach(msg, i, m)
        {
            rc = on_message(c, m);
            if (rc != TP_OK || !P(c)->connected)
                break;
        }
    } else {
        rc = on_message(c, msg);
    }
    json_decref(msg);
out:
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

TP_API const char *
tp_client_next_frame(tp_client *c, size_t *len)
{
    if (c == NULL)
        return NULL;
    pthread_mutex_lock(&c->mu);
    proto *p = P(c);
    tp__free(p->frame);
    p->frame = NULL;
    if (p->out_head == p->out_len) {
        pthread_mutex_unlock(&c->mu);
        return NULL;
    }
    /* As many queued messages as fit in one batch of 64 KiB; a message
     * larger than that goes alone. */
    size_t n = 1, total = p->out_lens[p->out_head] + 2;
    while (p->out_head + n < p->out_len && total + p->out_lens[p->out_head + n] + 1 <= BATCH_MAX) {
        total += p->out_lens[p->out_head + n] + 1;
        n++;
    }
    size_t flen;
    if (n == 1) {
        p->frame = p->out[p->out_head];
        flen = p->out_lens[p->out_head];
    } else {
        char *f = tp__malloc(total + 1);
        if (f == NULL) {
            n = 1; /* no room to batch: one at a time */
            p->frame = p->out[p->out_head];
            flen = p->out_lens[p->out_head];
        } else {
            size_t o = 0;
            f[o++] = '[';
            for (size_t i = 0; i < n; i++) {
                if (i > 0)
                    f[o++] = ',';
                memcpy(f + o, p->out[p->out_head + i], p->out_lens[p->out_head + i]);
                o += p->out_lens[p->out_head + i];
                tp__free(p->out[p->out_head + i]);
            }
            f[o++] = ']';
            f[o] = '\0';
            p->frame = f;
            flen = o;
        }
    }
    p->out_head += n;
    if (p->out_head == p->out_len)
        p->out_head = p->out_len = 0;
    if (len != NULL)
        *len = flen;
    const char *frame = p->frame;
    pthread_mutex_unlock(&c->mu);
    return frame;
}

TP_API void
tp_client_closed(tp_client *c, int close_code)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    proto *p = P(c);
    p->connected = 0;
    out_clear(c);
    /* Every pending write goes again on the next connection, after its
     * resume: the server answers those it already applied with their
     * original outcome (exactly once). */
    for (size_t i = 0; i < p->writes.len; i++)
        ((pending *)p->writes.items[i])->sent = 0;
    char why[32];
    tp_client_state next;
    if (close_code == 400 || close_code == 401 || close_code == 403 || close_code == 404) {
        snprintf(why, sizeof why, "HTTP %d", close_code);
        next = TP_CLIENT_REFUSED;
    } else {
        if (close_code >= 100 && close_code < 600)
            snprintf(why, sizeof why, "HTTP %d", close_code);
        else
            snprintf(why, sizeof why, "closed %d", close_code);
        next = c->opt.no_reconnect || c->state == TP_CLIENT_STOPPED ? TP_CLIENT_STOPPED
                                                                    : TP_CLIENT_WAITING;
    }
    tp__client_set_state(c, next, why);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void
tp__client_ping(tp_client *c)
{
    pthread_mutex_lock(&c->mu);
    proto *p = P(c);
    if (p->connected) {
        queue_json(c, json_pack("{s:s,s:I}", "type", "ping", "ref", (json_int_t)(-++p->pings)));
        /* Writes refused with rate_limited go again now that time passed. */
        send_unsent(c);
    }
    pthread_mutex_unlock(&c->mu);
}
