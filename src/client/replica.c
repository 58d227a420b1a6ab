/*
 * The client's protocol, sans-IO, part two: replicas and their local views,
 * pending writes and their outcomes, and what each server message does
 * (PROTOCOL.md, "Server to client"). client.h states the invariants.
 *
 * Callbacks run under c->mu with the state already consistent; the values
 * they get are held by a reference for the call, so a callback that writes
 * (and so replaces the view) cannot free what it is reading.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "core/json.h"
#include "core/patch.h"
#include "util/alloc.h"
#include "util/error.h"

typedef tp__replica replica;
typedef tp__pending pending;
typedef tp__proto proto;

#define P(c) TP__PROTO(c)

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

void
tp__pending_free(pending *w)
{
    if (w == NULL)
        return;
    json_decref(w->patch);
    tp__free(w->msg);
    tp__free(w);
}

void
tp__replica_free(replica *r)
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
    return tp__client_queue_json(c, json_pack("{s:s,s:[{s:s,s:s,s:I}]}", "type", "resume", "models",
                                              "scope", r->scope, "id", r->id, "rev",
                                              (json_int_t)r->rev));
}

int
tp__client_resync_gaps(tp_client *c)
{
    /* One resume for every model waiting for one. */
    json_t *models = json_array();
    void *v;
    for (size_t it = 0; models != NULL && tp__map_next(&P(c)->replicas, &it, NULL, &v);) {
        replica *r = v;
        if (r->gap &&
            json_array_append_new(models, json_pack("{s:s,s:s,s:I}", "scope", r->scope, "id", r->id,
                                                    "rev", (json_int_t)r->rev)) != 0) {
            json_decref(models);
            models = NULL;
        }
    }
    if (models != NULL && json_array_size(models) == 0) {
        json_decref(models);
        return TP_OK;
    }
    return tp__client_queue_json(
        c, models ? json_pack("{s:s,s:o}", "type", "resume", "models", models) : NULL);
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
            tp__replica_free(r);
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
    if (get_int(msg, "ref", &ref) == 0 && ref < 0 && json_object_get(msg, "rev") == NULL) {
        /* An `auth` accepted (its refs are negative, as pings'). */
        tp__log(&c->log, TP_LOG_DEBUG, "client token renewed");
        return TP_OK;
    }
    if (get_int(msg, "ref", &ref) != 0 || get_int(msg, "rev", &rev) != 0)
        return violation(c, "ref, rev: expected integers", "ack");
    int has_from = get_int(msg, "from", &from) == 0;
    if (has_from && rev <= from)
        return violation(c, "rev: must be above from", "ack"); /* as for a patch */
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
    P(c)->retry_streak = 0; /* the server takes writes again */
    if (P(c)->connected)
        tp__client_send_unsent(c); /* room in the window for the next */
    tp__pending_free(w);
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
    if (w == NULL && ref <= 0 && code == TP_ERATELIMITED && strncmp(message, "presence:", 9) == 0) {
        /* Our presence went over the write rate: the states we set are
         * sent again once tp__client_retry's delay has passed. */
        P(c)->holding = 1;
        P(c)->pres_held = 1;
        return TP_OK;
    }
    if (w == NULL && ref <= 0 && code == TP_ERATELIMITED) {
        /* A resume after a rev gap takes a write token (protocol.md):
         * asked again once tp__client_retry's delay has passed. */
        tp__log(&c->log, TP_LOG_INFO, "client resume rate limited: asked again later");
        P(c)->holding = 1;
        P(c)->resume_held = 1;
        return TP_OK;
    }
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
         * stays pending (and in the view), held until tp__client_retry's
         * delay has passed (or the next connection): acks that make room in
         * the window do not send it. */
        tp__log(&c->log, TP_LOG_INFO, "client write rate limited ref=%lld: resent later",
                (long long)ref);
        w->sent = 0;
        w->held = 1;
        P(c)->holding = 1;
        return TP_OK;
    }
    /* Every other refusal (internal included: the server failed, and the
     * caller decides whether to write again) rolls the write back. */
    replica *r = w->r;
    json_t *old = json_incref(r->view);
    pending_detach(c, w);
    if (P(c)->connected)
        tp__client_send_unsent(c); /* room in the window for the next */
    tp__pending_free(w);
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
    tp__client_presence_removed(c, scope, id);
    for (size_t i = 0; i < r->writes.len; i++)
        vec_remove(&P(c)->writes, r->writes.items[i]);
    for (size_t i = 0; i < r->writes.len; i++) {
        pending *w = r->writes.items[i];
        char m[160];
        snprintf(m, sizeof m, "id: model \"%.64s\" in scope \"%s\" was removed", r->id, r->scope);
        cb_error(c, w->ref, r->scope, r->id, TP_ENOTFOUND, m, NULL);
        tp__pending_free(w);
    }
    r->writes.len = 0;
    if (c->opt.cb.removed != NULL)
        c->opt.cb.removed(c->opt.cb.user, r->scope, r->id);
    tp__replica_free(r);
    return TP_OK;
}

int
tp__client_on_message(tp_client *c, const json_t *msg)
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
    if (strcmp(type, "presence") == 0 || strcmp(type, "presence_snapshot") == 0) {
        int rc = tp__client_on_presence(c, msg, type[8] == '_');
        return rc == TP_EBADREQUEST ? violation(c, "scope, id, conn, state or peers", type) : rc;
    }
    /* A newer server's message: ignored, as a later protocol version may add some. */
    tp__log(&c->log, TP_LOG_DEBUG, "client ignores message type=%.64s", type);
    return TP_OK;
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
    w->msg = m ? tp__json_dumps(m, JSON_COMPACT) : NULL;
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
    /* When it cannot be queued it stays pending, and the connection,
     * marked broken, is replaced by one that sends it. Past the window it
     * waits for answers to earlier writes. */
    if (p->connected)
        tp__client_send_unsent(c);
    int64_t ref = w->ref;
    pthread_mutex_unlock(&c->mu);
    tp__error_clear(err);
    return ref;
nomem:
    rc = tp__error_set(err, TP_ENOMEM, "out of memory");
fail:
    tp__pending_free(w);
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
        text = tp__json_dumps(v, JSON_COMPACT);
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
            text = tp__json_dumps(arr, JSON_COMPACT);
    }
    tp__free(all);
    json_decref(arr);
    pthread_mutex_unlock(&c->mu);
    return text;
}
