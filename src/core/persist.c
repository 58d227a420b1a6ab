/*
 * Storage as the hub sees it: a journal of what changed since the last
 * commit, written to the store in one transaction (tp__hub_commit), and the
 * restore of a hub from what a store holds (tp__hub_restore).
 *
 * The journal holds no copies, only marks: a model, session or client
 * record that changed is marked dirty, and the commit encodes its state as
 * it is then, once, however often it changed in between. Records to delete
 * (a model deleted, a session or client record gone) are kept by key, since
 * their objects are freed. Deletions are written before puts, so that an id
 * deleted and used again within one iteration ends up stored as its new
 * self. The record layout is in core/journal.h and docs/internals/store.md.
 *
 * Frames wait for the commit: tp__hub_flushable is asked before any frame
 * leaves (tp_hub_next_ready, tp_conn_next_frame, tp__conn_frame_plan), so
 * no `ack` or `patch` reveals a change that a crash could still take back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hub.h"
#include "core/journal.h"
#include "core/schema.h"
#include "util/alloc.h"
#include "util/error.h"

/* A record to delete: (kind, k1, k2), or all of (kind, k1) when k2 is NULL. */
struct tp__jdel {
    tp__rec_kind kind;
    char *k1;
    char *k2;
};

/* A subscription to store again (or delete, when it is gone by then). */
struct tp__jsub {
    char *tenant;
    char *sid;
};

static const char *
owner_of(const tp__model *m)
{
    return m->shared ? "" : m->owner->tenant;
}

/* Out of memory while noting a change: the commit cannot know what to
 * store, so the next commit fails rather than ack what it did not store. */
static void
journal_broken(tp_hub *hub)
{
    hub->commit_failed = 2;
}

static void
mark(tp_hub *hub, tp__vec *v, void *item, int *dirty, size_t *idx)
{
    if (*dirty)
        return;
    if (tp__vec_push(v, item) != 0) {
        journal_broken(hub);
        return;
    }
    *dirty = 1;
    *idx = v->len - 1;
}

/* Takes an item off a journal vector; fix tells the moved item its index. */
static void *
unmark(tp__vec *v, int *dirty, size_t idx)
{
    if (!*dirty)
        return NULL;
    *dirty = 0;
    return tp__vec_swap_remove(v, idx);
}

static void
add_del(tp_hub *hub, tp__rec_kind kind, const char *k1, const char *k2)
{
    struct tp__jdel *d = tp__calloc(1, sizeof *d);
    if (d != NULL) {
        d->kind = kind;
        d->k1 = tp__strdup(k1);
        d->k2 = k2 ? tp__strdup(k2) : NULL;
    }
    if (d == NULL || d->k1 == NULL || (k2 != NULL && d->k2 == NULL) ||
        tp__vec_push(&hub->jdels, d) != 0) {
        if (d != NULL) {
            tp__free(d->k1);
            tp__free(d->k2);
            tp__free(d);
        }
        journal_broken(hub);
    }
}

void
tp__journal_model(tp__model *m)
{
    m->hub->jgen++;
    if (m->hub->store == NULL || m->jdirty)
        return;
    mark(m->hub, &m->hub->jmodels, m, &m->jdirty, &m->jidx);
    if (!m->jdirty)
        return;
    m->base_value = json_incref(m->value);
    m->base_rev = m->rev;
    m->base_bytes = m->bytes;
    m->sundo_len = 0;
}

void
tp__journal_stamp(tp__model *m, tp__stamp_entry *e, int fresh)
{
    m->hub->jgen++;
    if (m->hub->store == NULL)
        return;
    if (m->sundo_len == m->sundo_cap) {
        size_t cap = m->sundo_cap ? 2 * m->sundo_cap : 8;
        struct tp__stamp_undo *u = tp__reallocarray(m->sundo, cap, sizeof *u);
        if (u == NULL) {
            /* The stamp could not be undone: never let a failed commit
             * leave memory ahead of disk; store everything next time. */
            journal_broken(m->hub);
            return;
        }
        m->sundo = u;
        m->sundo_cap = cap;
    }
    m->sundo[m->sundo_len++] = (struct tp__stamp_undo){e, e->st, fresh};
}

void
tp__journal_republish(tp__model *m, json_t *value)
{
    m->hub->jgen++;
    if (m->hub->store == NULL || value == NULL)
        return;
    json_decref(m->republish);
    m->republish = json_incref(value);
}

void
tp__journal_conn(tp_conn *c)
{
    tp_hub *hub = c->hub;
    if (hub->store == NULL)
        return;
    if (!c->jconn) {
        if (tp__vec_push(&hub->jconns, c) != 0) {
            journal_broken(hub);
            return;
        }
        c->jconn = 1;
    }
    c->held++;
}

void
tp__journal_conn_gone(tp_conn *c)
{
    tp_hub *hub = c->hub;
    if (!c->jconn)
        return;
    for (size_t i = 0; i < hub->jconns.len; i++)
        if (hub->jconns.items[i] == c) {
            tp__vec_swap_remove(&hub->jconns, i);
            break;
        }
    c->jconn = 0;
}

/* Forgets the state a model would go back to (a commit is done). */
static void
base_drop(tp__model *m)
{
    json_decref(m->base_value);
    m->base_value = NULL;
    json_decref(m->republish);
    m->republish = NULL;
    m->sundo_len = 0;
}

void
tp__journal_model_free(tp__model *m)
{
    base_drop(m);
    tp__free(m->sundo);
    m->sundo = NULL;
}

void
tp__journal_model_gone(tp__model *m)
{
    tp_hub *hub = m->hub;
    hub->jgen++;
    if (hub->store == NULL)
        return;
    tp__model *moved = unmark(&hub->jmodels, &m->jdirty, m->jidx);
    if (moved != NULL)
        moved->jidx = m->jidx;
    add_del(hub, TP__REC_MODEL, owner_of(m), m->id);
    add_del(hub, TP__REC_HIST, owner_of(m), m->id);
}

void
tp__journal_session(tp_session *s)
{
    s->hub->jgen++;
    if (s->hub->store == NULL)
        return;
    mark(s->hub, &s->hub->jsessions, s, &s->jdirty, &s->jidx);
}

void
tp__journal_client(tp__client *cl)
{
    tp_hub *hub = cl->session->hub;
    hub->jgen++;
    if (hub->store == NULL || cl->jdirty)
        return;
    mark(hub, &hub->jclients, cl, &cl->jdirty, &cl->jidx);
    cl->base_highest = cl->highest;
    cl->base_seq = cl->seq;
}

void
tp__journal_client_gone(tp__client *cl)
{
    tp_hub *hub = cl->session->hub;
    hub->jgen++;
    if (hub->store == NULL)
        return;
    tp__client *moved = unmark(&hub->jclients, &cl->jdirty, cl->jidx);
    if (moved != NULL)
        moved->jidx = cl->jidx;
    add_del(hub, TP__REC_CLIENT, cl->session->tenant, cl->id);
    add_del(hub, TP__REC_OUTCOME, cl->session->tenant, cl->id);
}

void
tp__journal_session_gone(tp_session *s)
{
    tp_hub *hub = s->hub;
    hub->jgen++;
    if (hub->store == NULL || hub->freeing)
        return;
    tp_session *moved = unmark(&hub->jsessions, &s->jdirty, s->jidx);
    if (moved != NULL)
        moved->jidx = s->jidx;
    void *v;
    for (size_t it = 0; tp__map_next(&s->clients, &it, NULL, &v);) {
        tp__client *cl = v;
        tp__client *cmoved = unmark(&hub->jclients, &cl->jdirty, cl->jidx);
        if (cmoved != NULL)
            cmoved->jidx = cl->jidx;
    }
    add_del(hub, TP__REC_TENANT, s->tenant, "");
    add_del(hub, TP__REC_SUB, s->tenant, NULL);
    add_del(hub, TP__REC_CLIENT, s->tenant, NULL);
    add_del(hub, TP__REC_OUTCOME, s->tenant, NULL);
}

void
tp__journal_sub(tp_session *s, const char *sid)
{
    tp_hub *hub = s->hub;
    hub->jgen++;
    if (hub->store == NULL)
        return;
    struct tp__jsub *j = tp__calloc(1, sizeof *j);
    if (j != NULL) {
        j->tenant = tp__strdup(s->tenant);
        j->sid = tp__strdup(sid);
    }
    if (j == NULL || j->tenant == NULL || j->sid == NULL || tp__vec_push(&hub->jsubs, j) != 0) {
        if (j != NULL) {
            tp__free(j->tenant);
            tp__free(j->sid);
            tp__free(j);
        }
        journal_broken(hub);
    }
}

void
tp__journal_meta(tp_hub *hub)
{
    hub->jgen++;
    if (hub->store != NULL)
        hub->jmeta = 1;
}

/* ---- Encoding records ---- */

/* json_dump_callback target. */
static int
dump_to_sb(const char *buffer, size_t size, void *data)
{
    tp__sb *sb = data;
    tp__sb_append(sb, buffer, size);
    return sb->failed ? -1 : 0;
}

/* Encodes a JSON value into sb (reset first). Returns 0 or TP_ENOMEM. */
static int
encode(tp__sb *sb, json_t *v)
{
    tp__sb_reset(sb);
    if (v == NULL ||
        json_dump_callback(v, dump_to_sb, sb, JSON_COMPACT | JSON_ENCODE_ANY) != 0 ||
        sb->failed)
        return TP_ENOMEM;
    return 0;
}

static json_t *
gone_list(const tp__map *gone)
{
    json_t *a = json_array();
    const char *k;
    for (size_t it = 0; a != NULL && tp__map_next(gone, &it, &k, NULL);)
        if (json_array_append_new(a, json_string(k)) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *
stamps_json(const tp__model *m)
{
    json_t *o = json_object();
    void *v;
    for (size_t it = 0; o != NULL && tp__map_next(&m->stamps, &it, NULL, &v);) {
        const tp__stamp_entry *e = v;
        json_t *st = json_pack("[IIsI]", (json_int_t)e->st.wall, (json_int_t)e->st.count,
                               e->st.tenant, (json_int_t)e->st.conn);
        if (st == NULL || json_object_set_new(o, e->field, st) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

typedef struct commit_ctx {
    tp_hub *hub;
    tp_store *st;
    tp_error *err;
    tp__sb sb;
} commit_ctx;

static int
put(commit_ctx *c, tp__rec_kind kind, const char *k1, const char *k2, int64_t n,
    const char *body, size_t len)
{
    tp__rec r = {kind, k1, k2, n, body, len};
    return c->st->ops->put(c->st, &r, c->err);
}

static int
put_json(commit_ctx *c, tp__rec_kind kind, const char *k1, const char *k2, json_t *v)
{
    int rc = encode(&c->sb, v);
    json_decref(v);
    if (rc != 0)
        return tp__error_set(c->err, TP_ENOMEM, "out of memory");
    return put(c, kind, k1, k2, 0, c->sb.buf->data, c->sb.buf->len);
}

static int
store_schema(commit_ctx *c, const tp_schema *schema, const char **key)
{
    *key = tp__schema_key(schema);
    if (*key == NULL)
        return tp__error_set(c->err, TP_ENOMEM, "out of memory");
    if (tp__map_get(&c->hub->schemas, *key) != NULL)
        return TP_OK;
    char name[32];
    snprintf(name, sizeof name, "schema:%s", *key);
    int rc = put_json(c, TP__REC_META, name, "", json_incref((json_t *)tp__schema_doc(schema)));
    if (rc != TP_OK)
        return rc;
    /* Known as stored once the commit succeeds (commit_done). */
    return TP_OK;
}

static int
store_model(commit_ctx *c, tp__model *m)
{
    const char *skey;
    int rc = store_schema(c, m->schema, &skey);
    if (rc != TP_OK)
        return rc;
    json_t *o = json_pack("{sssIsIso}", "schema", skey, "rev", (json_int_t)m->rev, "reborn",
                          (json_int_t)m->reborn, "value", json_incref(m->value));
    if (o != NULL && m->shared) {
        if (json_object_set_new(o, "merge", json_string(m->merge.name ? m->merge.name : "")) != 0 ||
            (m->kind == TP__LWW_MAP && json_object_set_new(o, "stamps", stamps_json(m)) != 0)) {
            json_decref(o);
            o = NULL;
        }
    }
    if (o == NULL)
        return tp__error_set(c->err, TP_ENOMEM, "out of memory");
    const char *owner = owner_of(m);
    rc = put_json(c, TP__REC_MODEL, owner, m->id, o);
    /* The patches published since the last commit, then the ones the
     * history no longer keeps. */
    for (unsigned i = 0; rc == TP_OK && i < m->hist_len; i++) {
        const tp__hist *h = &m->hist[(m->hist_start + i) % m->hist_cap];
        if (h->rev > m->hist_saved)
            rc = put(c, TP__REC_HIST, owner, m->id, h->rev, h->msg->data, h->msg->len);
    }
    int64_t oldest = m->hist_len > 0 ? m->hist[m->hist_start].rev : m->rev + 1;
    if (rc == TP_OK && oldest > m->hist_floor)
        rc = c->st->ops->del_below(c->st, TP__REC_HIST, owner, m->id, oldest, c->err);
    return rc;
}

static int
store_session(commit_ctx *c, tp_session *s)
{
    json_t *o = json_pack("{sIsoso}", "next_id", (json_int_t)s->next_id, "gone_ids",
                          gone_list(&s->gone_ids), "gone", gone_list(&s->gone));
    if (o == NULL)
        return tp__error_set(c->err, TP_ENOMEM, "out of memory");
    return put_json(c, TP__REC_TENANT, s->tenant, "", o);
}

static int
store_client(commit_ctx *c, tp__client *cl)
{
    const char *tenant = cl->session->tenant;
    json_t *o = json_pack("{sIsI}", "highest", (json_int_t)cl->highest, "seq", (json_int_t)cl->seq);
    int rc = o ? put_json(c, TP__REC_CLIENT, tenant, cl->id, o)
               : tp__error_set(c->err, TP_ENOMEM, "out of memory");
    /* Outcome k of the ring is number seq - len + 1 + k; its body is the
     * ref, a space, and the message. */
    uint64_t first = cl->seq - cl->len + 1;
    for (unsigned k = 0; rc == TP_OK && k < cl->len; k++) {
        uint64_t n = first + k;
        if (n <= cl->seq_saved)
            continue;
        const tp__buf *msg = cl->outcomes[(cl->start + k) % TP__OUTCOMES].msg;
        tp__sb_reset(&c->sb);
        tp__sb_int(&c->sb, cl->outcomes[(cl->start + k) % TP__OUTCOMES].ref);
        tp__sb_append(&c->sb, " ", 1);
        tp__sb_append(&c->sb, msg->data, msg->len);
        if (c->sb.failed)
            return tp__error_set(c->err, TP_ENOMEM, "out of memory");
        rc = put(c, TP__REC_OUTCOME, tenant, cl->id, (int64_t)n, c->sb.buf->data,
                 c->sb.buf->len);
    }
    if (rc == TP_OK && cl->len > 0 && first > cl->seq_floor)
        rc = c->st->ops->del_below(c->st, TP__REC_OUTCOME, tenant, cl->id, (int64_t)first,
                                   c->err);
    return rc;
}

static int
store_sub(commit_ctx *c, const struct tp__jsub *j)
{
    tp_session *s = tp__map_get(&c->hub->tenants, j->tenant);
    tp__sub *sub = s ? tp__session_sub(s, j->sid) : NULL;
    if (sub == NULL)
        return c->st->ops->del(c->st, TP__REC_SUB, j->tenant, j->sid, 0, c->err);
    json_t *o = json_pack("{sisI}", "access", (int)sub->access, "access_rev",
                          (json_int_t)sub->access_rev);
    if (o == NULL)
        return tp__error_set(c->err, TP_ENOMEM, "out of memory");
    return put_json(c, TP__REC_SUB, j->tenant, j->sid, o);
}

static int
store_meta(commit_ctx *c)
{
    char key[2 * sizeof c->hub->conn_key + 1];
    for (size_t i = 0; i < sizeof c->hub->conn_key; i++)
        snprintf(key + 2 * i, 3, "%02x", c->hub->conn_key[i]);
    json_t *o = json_pack("{sIsIsoss}", "next_sid", (json_int_t)c->hub->next_sid, "conn_bound",
                          (json_int_t)c->hub->conn_bound, "gone_sids",
                          gone_list(&c->hub->gone_sids), "conn_key", key);
    if (o == NULL)
        return tp__error_set(c->err, TP_ENOMEM, "out of memory");
    return put_json(c, TP__REC_META, "hub", "", o);
}

static int
journal_empty(const tp_hub *hub)
{
    return hub->jmodels.len == 0 && hub->jsessions.len == 0 && hub->jclients.len == 0 &&
           hub->jsubs.len == 0 && hub->jdels.len == 0 && !hub->jmeta &&
           (hub->observer == NULL || !hub->observer->pending(hub->observer->user));
}

static void
jdels_clear(tp_hub *hub)
{
    for (size_t i = 0; i < hub->jdels.len; i++) {
        struct tp__jdel *d = hub->jdels.items[i];
        tp__free(d->k1);
        tp__free(d->k2);
        tp__free(d);
    }
    hub->jdels.len = 0;
    for (size_t i = 0; i < hub->jsubs.len; i++) {
        struct tp__jsub *j = hub->jsubs.items[i];
        tp__free(j->tenant);
        tp__free(j->sid);
        tp__free(j);
    }
    hub->jsubs.len = 0;
}

/* Messages queued so far may leave. */
static void
release_held(tp_hub *hub)
{
    for (size_t i = 0; i < hub->jconns.len; i++) {
        tp_conn *c = hub->jconns.items[i];
        c->held = 0;
        c->jconn = 0;
    }
    hub->jconns.len = 0;
}

/* After a successful commit: what was written is what the store holds. */
static void
commit_done(tp_hub *hub)
{
    release_held(hub);
    for (size_t i = 0; i < hub->jmodels.len; i++) {
        tp__model *m = hub->jmodels.items[i];
        m->jdirty = 0;
        base_drop(m);
        m->hist_saved = m->rev;
        m->hist_floor = m->hist_len > 0 ? m->hist[m->hist_start].rev : m->rev + 1;
        const char *key = tp__schema_key(m->schema);
        if (key != NULL && tp__map_get(&hub->schemas, key) == NULL) {
            tp_schema *ref = tp__schema_ref(m->schema);
            /* The key lives in the schema, which the map keeps alive. */
            if (tp__map_put(&hub->schemas, tp__schema_key(ref), ref) != 0)
                tp_schema_free(ref); /* stored again next time: harmless */
        }
    }
    hub->jmodels.len = 0;
    for (size_t i = 0; i < hub->jsessions.len; i++)
        ((tp_session *)hub->jsessions.items[i])->jdirty = 0;
    hub->jsessions.len = 0;
    for (size_t i = 0; i < hub->jclients.len; i++) {
        tp__client *cl = hub->jclients.items[i];
        cl->jdirty = 0;
        cl->seq_saved = cl->seq;
        cl->seq_floor = cl->seq - cl->len + 1;
    }
    hub->jclients.len = 0;
    jdels_clear(hub);
    hub->jmeta = 0;
}

/* ---- A failed commit: back to the last one ---- */

static void
model_rollback(tp__model *m)
{
    tp_hub *hub = m->hub;
    if (m->base_value != NULL) {
        json_decref(m->value);
        m->value = m->base_value; /* the reference moves */
        m->base_value = NULL;
        m->bytes = m->base_bytes;
    }
    while (m->sundo_len > 0) {
        struct tp__stamp_undo *u = &m->sundo[--m->sundo_len];
        if (u->fresh) {
            tp__map_del(&m->stamps, u->e->field);
            tp__free(u->e);
        } else {
            u->e->st = u->old;
        }
    }
    while (m->hist_len > 0 && m->hist[(m->hist_start + m->hist_len - 1) % m->hist_cap].rev >
                                  m->base_rev) {
        tp__hist *h = &m->hist[(m->hist_start + m->hist_len - 1) % m->hist_cap];
        m->hist_bytes -= h->msg->len;
        tp__buf_unref(h->msg);
        m->hist_len--;
    }
    m->rev = m->base_rev;
    for (int w = 0; w < 2; w++) {
        tp__buf_unref(m->snap[w]);
        m->snap[w] = NULL;
    }
    /* A host value published since goes out again with the next sync. */
    if (m->republish != NULL && m->pending == NULL) {
        tp_error err;
        if (tp__set_pending(m, m->republish, &err) == TP_OK)
            m->republish = NULL; /* the reference moved */
    }
    json_decref(m->republish);
    m->republish = NULL;
    /* A model the store already holds is now what it holds; one made since
     * the last commit (by the host) stays to be stored, as it is now. */
    if (m->hist_saved > 0) {
        tp__model *moved = unmark(&hub->jmodels, &m->jdirty, m->jidx);
        if (moved != NULL)
            moved->jidx = m->jidx;
    } else {
        m->base_value = json_incref(m->value);
    }
}

static void
client_rollback(tp__client *cl)
{
    while (cl->seq > cl->base_seq && cl->len > 0) {
        unsigned k = (cl->start + cl->len - 1) % TP__OUTCOMES;
        size_t cost = TP__OUTCOME_COST(cl->outcomes[k].msg->len);
        cl->bytes -= cost;
        cl->session->client_bytes -= cost;
        tp__buf_unref(cl->outcomes[k].msg);
        cl->outcomes[k].msg = NULL;
        cl->len--;
        cl->seq--;
    }
    cl->seq = cl->base_seq;
    cl->highest = cl->base_highest;
    cl->jdirty = 0;
}

static int
has_outcome(const tp__client *cl, json_int_t ref)
{
    for (unsigned i = 0; cl != NULL && i < cl->len; i++)
        if (cl->outcomes[(cl->start + i) % TP__OUTCOMES].ref == ref)
            return 1;
    return 0;
}

static tp__buf *
encode_msg(json_t *msg)
{
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    tp__buf *b = text ? tp__buf_copy(text, strlen(text)) : NULL;
    free(text);
    return b;
}

/*
 * What a message queued since the commit becomes now that the commit
 * failed: itself (a new reference), NULL to drop it, or a replacement. A
 * patch past its model's rev is dropped; a snapshot past it is made again;
 * an ack of a write that is no longer recorded becomes `error` internal;
 * the rest (errors, pongs, acks sent again from earlier commits, messages
 * about host changes) stays. *fail is set when a replacement cannot be made.
 */
static tp__buf *
review(tp_conn *c, tp__buf *msg, const char *why, int *fail)
{
    static const char head[] = "{\"type\":\"";
    if (msg->len < sizeof head || memcmp(msg->data, head, sizeof head - 1) != 0)
        return tp__buf_ref(msg);
    const char *type = msg->data + sizeof head - 1;
    int patch = strncmp(type, "patch\"", 6) == 0, snap = strncmp(type, "snapshot\"", 9) == 0,
        ack = strncmp(type, "ack\"", 4) == 0;
    if (!patch && !snap && !ack)
        return tp__buf_ref(msg);
    json_t *o = json_loadb(msg->data, msg->len, 0, NULL);
    if (o == NULL) {
        *fail = 1;
        return NULL;
    }
    tp__buf *out = NULL;
    if (ack) {
        json_int_t ref = json_integer_value(json_object_get(o, "ref"));
        if (has_outcome(c->client, ref)) {
            out = tp__buf_ref(msg);
        } else {
            char text[256];
            snprintf(text, sizeof text, "the write was not stored (%.180s): not applied, send it again",
                     why);
            tp__utf8_repair(text);
            c->hub->refused[-TP_EINTERNAL]++;
            out = encode_msg(json_pack("{sssIssss}", "type", "error", "ref", ref, "code",
                                       "internal", "message", text));
            *fail |= out == NULL;
        }
        json_decref(o);
        return out;
    }
    const char *scope = json_string_value(json_object_get(o, "scope"));
    const char *id = json_string_value(json_object_get(o, "id"));
    json_int_t rev = json_integer_value(json_object_get(o, "rev"));
    tp__model *m = NULL;
    if (scope != NULL && id != NULL)
        m = strcmp(scope, "shared") == 0 ? tp__map_get(&c->hub->shared, id)
                                          : tp__map_get(&c->session->models, id);
    if (m == NULL || rev <= m->rev) {
        out = tp__buf_ref(msg);
    } else if (snap) {
        const char *access = json_string_value(json_object_get(o, "access"));
        tp_access a = access && strcmp(access, "read") == 0 ? TP_READ : TP_WRITE;
        out = tp__buf_ref(tp__model_snapshot(m, a));
        *fail |= out == NULL;
    }
    json_decref(o);
    return out;
}

/* Rewrites the messages a connection got since the commit. */
static void
conn_review(tp_conn *c, const char *why)
{
    size_t from = c->out_len - c->held, kept = from;
    int fail = 0;
    for (size_t i = from; i < c->out_len; i++) {
        tp__buf *was = c->out[i];
        tp__buf *now = fail ? NULL : review(c, was, why, &fail);
        c->out_bytes -= was->len;
        tp__buf_unref(was);
        if (now != NULL) {
            c->out[kept++] = now;
            c->out_bytes += now->len;
        }
    }
    c->out_len = kept;
    if (c->out_exempt > c->out_bytes)
        c->out_exempt = c->out_bytes;
    if (fail) {
        /* Out of memory: better closed (it can resume) than told wrong. */
        tp__conn_send(c, NULL);
    }
    if (c->out_head == c->out_len)
        c->out_head = c->out_len = 0;
}

/*
 * Puts memory back where the store is: every model changed since the last
 * commit gets its value, rev, stamps and history back, each client record
 * its outcomes, and the messages queued since are reviewed. What the host
 * made or removed since (models, subscriptions, tenants) stays, noted, and
 * is stored with the next commit that succeeds.
 */
static void
rollback(tp_hub *hub, const char *why)
{
    for (size_t i = hub->jmodels.len; i-- > 0;)
        model_rollback(hub->jmodels.items[i]);
    for (size_t i = 0; i < hub->jclients.len; i++)
        client_rollback(hub->jclients.items[i]);
    hub->jclients.len = 0;
    for (size_t i = 0; i < hub->jconns.len; i++) {
        tp_conn *c = hub->jconns.items[i];
        if (c->held > 0 && c->held <= c->out_len - c->out_head)
            conn_review(c, why);
    }
    release_held(hub);
}

int
tp__hub_commit(tp_hub *hub, tp_error *err)
{
    tp_store *st = hub->store;
    if (st == NULL && hub->observer != NULL && hub->observer->pending(hub->observer->user))
        hub->observer->committed(hub->observer->user, 1); /* nothing to store it in */
    if (st == NULL || (journal_empty(hub) && !hub->commit_failed))
        return TP_OK;
    /* After a failure, a retry writes at least the meta record (as it is):
     * an empty transaction succeeds on a full disk, and would clear the
     * failure /healthz reports while writes still cannot commit. */
    if (hub->commit_failed)
        hub->jmeta = 1;
    if (hub->commit_failed == 2) {
        /* A change could not be noted for lack of memory: what to store is
         * unknown. Store everything the hub holds (below), once. */
        for (size_t it = 0; it == 0;) {
            void *v;
            for (size_t i = 0; tp__map_next(&hub->shared, &i, NULL, &v);)
                tp__journal_model(v);
            for (size_t i = 0; tp__map_next(&hub->tenants, &i, NULL, &v);) {
                tp_session *s = v;
                if (!s->loaded)
                    continue; /* what the store holds of it is all there is */
                tp__journal_session(s);
                void *w;
                const char *k;
                for (size_t j = 0; tp__map_next(&s->models, &j, NULL, &w);)
                    tp__journal_model(w);
                for (size_t j = 0; tp__map_next(&s->subs, &j, &k, NULL);)
                    tp__journal_sub(s, k);
                for (size_t j = 0; tp__map_next(&s->clients, &j, NULL, &w);)
                    tp__journal_client(w);
            }
            hub->jmeta = 1;
            it = 1;
        }
    }
    commit_ctx c = {hub, st, err, {0}};
    tp__sb_init(&c.sb, 512);
    int rc = st->ops->begin(st, err);
    for (size_t i = 0; rc == TP_OK && i < hub->jdels.len; i++) {
        struct tp__jdel *d = hub->jdels.items[i];
        if (d->kind == TP__REC_MODEL || d->kind == TP__REC_TENANT)
            rc = st->ops->del(st, d->kind, d->k1, d->k2, 0, err);
        else
            rc = st->ops->del_key(st, d->kind, d->k1, d->k2, err);
    }
    for (size_t i = 0; rc == TP_OK && i < hub->jsessions.len; i++)
        rc = store_session(&c, hub->jsessions.items[i]);
    for (size_t i = 0; rc == TP_OK && i < hub->jmodels.len; i++)
        rc = store_model(&c, hub->jmodels.items[i]);
    for (size_t i = 0; rc == TP_OK && i < hub->jsubs.len; i++)
        rc = store_sub(&c, hub->jsubs.items[i]);
    for (size_t i = 0; rc == TP_OK && i < hub->jclients.len; i++)
        rc = store_client(&c, hub->jclients.items[i]);
    if (rc == TP_OK && hub->jmeta)
        rc = store_meta(&c);
    if (rc == TP_OK && hub->observer != NULL)
        rc = hub->observer->journal(hub->observer->user, st, err);
    if (rc == TP_OK)
        rc = st->ops->commit(st, err);
    if (hub->observer != NULL)
        hub->observer->committed(hub->observer->user, rc == TP_OK);
    else
        st->ops->rollback(st);
    tp__sb_free(&c.sb);
    if (rc != TP_OK) {
        hub->commit_failures++;
        if (hub->commit_failed != 2)
            hub->commit_failed = 1;
        tp__log(&hub->log, TP_LOG_ERROR, "store commit failed, changes since the last commit "
                                         "undone: %s",
                err ? err->message : "(no message)");
        rollback(hub, err ? err->message : "storage failed");
        hub->failed_gen = hub->jgen;
        return TP_EINTERNAL;
    }
    if (hub->commit_failed)
        tp__log(&hub->log, TP_LOG_WARN, "store commit works again");
    hub->commit_failed = 0;
    hub->commits++;
    commit_done(hub);
    return TP_OK;
}

int
tp__hub_flushable(tp_hub *hub)
{
    if (hub->store == NULL) {
        if (hub->observer != NULL && hub->observer->pending(hub->observer->user))
            hub->observer->committed(hub->observer->user, 1); /* nothing to store it in */
        return 1;
    }
    if (journal_empty(hub) && !hub->commit_failed) {
        release_held(hub); /* nothing they reveal is unstored */
        return 1;
    }
    /* Committed, or undone and reviewed: either way what is queued now may
     * leave. After a failure, what is left (the host's changes) is tried
     * again when something new is noted, or by tp_hub_commit (the server
     * calls it on a timer), not at every frame. */
    if (hub->commit_failed && hub->jgen == hub->failed_gen) {
        release_held(hub);
        return 1;
    }
    tp_error err;
    tp__hub_commit(hub, &err);
    return 1;
}

int
tp__hub_commit_pending(const tp_hub *hub)
{
    return hub->store != NULL && (!journal_empty(hub) || hub->commit_failed);
}

int
tp__hub_store_state(const tp_hub *hub)
{
    if (hub->store == NULL)
        return TP__STORE_NONE;
    return hub->commit_failed ? TP__STORE_FAILING : TP__STORE_OK;
}

TP_API int
tp_hub_commit(tp_hub *hub, tp_error *err)
{
    tp_error local;
    int rc = tp__hub_commit(hub, err ? err : &local);
    if (rc == TP_OK)
        tp__error_clear(err);
    return rc;
}

TP_API int
tp_hub_restored(const tp_hub *hub)
{
    return hub->restored;
}

void
tp__hub_persist_free(tp_hub *hub)
{
    if (hub->store != NULL) {
        tp_error err;
        tp__hub_commit(hub, &err); /* logged when it fails */
        hub->store->hub = NULL;
    }
    jdels_clear(hub);
    tp__vec_free(&hub->jdels);
    tp__vec_free(&hub->jsubs);
    tp__vec_free(&hub->jmodels);
    tp__vec_free(&hub->jsessions);
    tp__vec_free(&hub->jclients);
    tp__vec_free(&hub->jconns);
    void *v;
    for (size_t it = 0; tp__map_next(&hub->schemas, &it, NULL, &v);)
        tp_schema_free(v);
    tp__map_free(&hub->schemas);
    tp__map_free(&hub->merges);
}

/* ---- Restoring ---- */

typedef struct restore_ctx {
    tp_hub *hub;
    tp_error *err;
    int found; /* the store held a hub */
} restore_ctx;

static json_t *
load_body(const tp__rec *r, restore_ctx *c, const char *what)
{
    json_error_t jerr;
    json_t *v = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, &jerr);
    if (v == NULL)
        tp__error_set(c->err, TP_EINTERNAL, "store: %s \"%s\" \"%s\": not JSON: %s", what, r->k1,
                      r->k2, jerr.text);
    return v;
}

static int
bad(restore_ctx *c, const tp__rec *r, const char *what, const char *why)
{
    return tp__error_set(c->err, TP_EINTERNAL, "store: %s \"%s\" \"%s\": %s", what, r->k1, r->k2,
                         why);
}

static int
gone_load(tp__map *gone, const json_t *list)
{
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        if (!json_is_string(e))
            return TP_EINTERNAL;
        char *copy = tp__strdup(json_string_value(e));
        if (copy == NULL || tp__map_put(gone, copy, copy) != 0) {
            tp__free(copy);
            return TP_ENOMEM;
        }
    }
    return TP_OK;
}

/* The stored key of connection ids: 32 hex digits. */
static int
load_conn_key(tp_hub *hub, const char *hex)
{
    unsigned char key[sizeof hub->conn_key];
    if (strlen(hex) != 2 * sizeof key)
        return -1;
    for (size_t i = 0; i < 2 * sizeof key; i++) {
        char ch = hex[i];
        int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (v < 0)
            return -1;
        if (i % 2 == 0)
            key[i / 2] = (unsigned char)(v << 4);
        else
            key[i / 2] |= (unsigned char)v;
    }
    memcpy(hub->conn_key, key, sizeof key);
    return 0;
}

static int
load_meta(const tp__rec *r, void *user)
{
    restore_ctx *c = user;
    tp_hub *hub = c->hub;
    json_t *o = load_body(r, c, "meta");
    if (o == NULL)
        return TP_EINTERNAL;
    int rc = TP_OK;
    if (strcmp(r->k1, "hub") == 0) {
        c->found = 1;
        json_int_t next_sid = 0, conn_bound = 0;
        json_t *gone = NULL;
        const char *key = NULL;
        if (json_unpack(o, "{sI s?I so s?s}", "next_sid", &next_sid, "conn_bound", &conn_bound,
                        "gone_sids", &gone, "conn_key", &key) != 0 ||
            !json_is_array(gone))
            rc = bad(c, r, "meta", "expected next_sid and gone_sids");
        else if (key != NULL && load_conn_key(hub, key) != 0)
            rc = bad(c, r, "meta", "conn_key: expected 32 hex digits");
        else {
            hub->next_sid = (uint64_t)next_sid;
            hub->next_conn = hub->conn_bound = (uint64_t)conn_bound;
            /* A store from before connection ids were keyed: the key in
             * use is stored with the next commit (before any id leaves). */
            if (key == NULL)
                hub->jmeta = 1;
            rc = gone_load(&hub->gone_sids, gone);
            if (rc != TP_OK)
                rc = bad(c, r, "meta", "bad gone_sids");
        }
    } else if (strncmp(r->k1, "schema:", 7) == 0) {
        char *text = json_dumps(o, JSON_COMPACT);
        tp_schema *schema = text ? tp_schema_new(text, c->err) : NULL;
        free(text);
        if (schema == NULL)
            rc = TP_EINTERNAL;
        else if (tp__map_put(&hub->schemas, tp__schema_key(schema), schema) != 0) {
            tp_schema_free(schema);
            rc = tp__error_set(c->err, TP_ENOMEM, "out of memory");
        } else if (strcmp(tp__schema_key(schema), r->k1 + 7) != 0) {
            /* Keyed by what it hashes to now: models name the stored key. */
            tp__map_del(&hub->schemas, tp__schema_key(schema));
            tp_schema_free(schema);
            rc = bad(c, r, "meta", "the schema does not hash to its key");
        }
    }
    json_decref(o);
    return rc;
}

static int
load_tenant(const tp__rec *r, void *user)
{
    restore_ctx *c = user;
    json_t *o = load_body(r, c, "tenant");
    if (o == NULL)
        return TP_EINTERNAL;
    json_int_t next_id = 1;
    json_t *gone_ids = NULL, *gone = NULL;
    tp_session *s = NULL;
    int rc = TP_OK;
    if (json_unpack(o, "{sI so so}", "next_id", &next_id, "gone_ids", &gone_ids, "gone", &gone) !=
            0 ||
        !json_is_array(gone_ids) || !json_is_array(gone))
        rc = bad(c, r, "tenant", "expected next_id, gone_ids and gone");
    else if ((s = tp__hub_session(c->hub, r->k1, 0)) == NULL)
        rc = bad(c, r, "tenant", "not a usable tenant key");
    else {
        s->next_id = (uint64_t)next_id;
        if (gone_load(&s->gone_ids, gone_ids) != TP_OK || gone_load(&s->gone, gone) != TP_OK)
            rc = bad(c, r, "tenant", "bad gone lists");
    }
    json_decref(o);
    return rc;
}

static int
load_stamps(restore_ctx *c, const tp__rec *r, tp__model *m, const json_t *stamps)
{
    const char *field;
    json_t *st;
    int64_t max_wall = c->hub->hlc_wall, max_count = c->hub->hlc_count;
    json_object_foreach((json_t *)stamps, field, st)
    {
        json_int_t wall, count, conn;
        const char *tenant;
        if (json_unpack(st, "[IIsI]", &wall, &count, &tenant, &conn) != 0)
            return bad(c, r, "model", "bad stamps");
        const char *t = tenant[0] != '\0' ? tp__hub_intern(c->hub, tenant) : "";
        if (t == NULL)
            return tp__error_set(c->err, TP_ENOMEM, "out of memory");
        size_t len = strlen(field);
        tp__stamp_entry *e = tp__malloc(sizeof(tp__stamp_entry) + len + 1);
        if (e == NULL)
            return tp__error_set(c->err, TP_ENOMEM, "out of memory");
        memcpy(e->field, field, len + 1);
        e->st = (tp__stamp){wall, count, t, (uint64_t)conn};
        if (tp__map_put(&m->stamps, e->field, e) != 0) {
            tp__free(e);
            return tp__error_set(c->err, TP_ENOMEM, "out of memory");
        }
        /* The clock goes on from the greatest stamp: never backwards. */
        if (wall > max_wall || (wall == max_wall && count > max_count)) {
            max_wall = wall;
            max_count = count;
        }
    }
    c->hub->hlc_wall = max_wall;
    c->hub->hlc_count = max_count;
    return TP_OK;
}

static int
set_merge(restore_ctx *c, const tp__rec *r, tp__model *m, const char *name)
{
    const tp_merge *mg = NULL;
    if (strcmp(name, "lww") == 0)
        mg = &tp_last_write_wins;
    else if (strcmp(name, "lww-map") == 0)
        mg = &tp_lww_map_crdt;
    else if ((mg = tp__map_get(&c->hub->merges, name)) == NULL)
        return tp__error_set(c->err, TP_EARG,
                             "store: shared model \"%s\" is merged by \"%s\": no such strategy "
                             "in config.merges",
                             r->k2, name);
    m->merge = *mg;
    m->merge.name = m->merge_name = tp__strdup(name);
    if (m->merge_name == NULL)
        return tp__error_set(c->err, TP_ENOMEM, "out of memory");
    m->kind = mg->merge == tp_lww_map_crdt.merge     ? TP__LWW_MAP
              : mg->merge == tp_last_write_wins.merge ? TP__LWW
                                                      : TP__CUSTOM;
    return TP_OK;
}

static int
load_model(const tp__rec *r, void *user)
{
    restore_ctx *c = user;
    tp_hub *hub = c->hub;
    json_t *o = load_body(r, c, "model");
    if (o == NULL)
        return TP_EINTERNAL;
    const char *skey, *merge = NULL;
    json_int_t rev, reborn;
    json_t *value, *stamps = NULL;
    tp__model *m = NULL;
    tp_session *s = NULL;
    int rc = TP_OK;
    const tp_schema *schema;
    if (json_unpack(o, "{ss sI sI so s?s s?o}", "schema", &skey, "rev", &rev, "reborn", &reborn,
                    "value", &value, "merge", &merge, "stamps", &stamps) != 0 ||
        !json_is_object(value) || rev < 1)
        rc = bad(c, r, "model", "expected schema, rev, reborn and value");
    else if ((schema = tp__map_get(&hub->schemas, skey)) == NULL)
        rc = bad(c, r, "model", "its schema is not stored");
    else if (r->k1[0] != '\0' && (s = tp__hub_session(hub, r->k1, 0)) == NULL)
        rc = bad(c, r, "model", "not a usable tenant key");
    else if ((m = tp__model_new(hub, s == NULL, r->k2, schema, value)) == NULL)
        rc = tp__error_set(c->err, TP_ENOMEM, "out of memory");
    else {
        m->rev = rev;
        m->reborn = reborn;
        m->owner = s;
        m->hist_saved = rev;
        m->hist_floor = rev + 1;
        if (s == NULL && (rc = set_merge(c, r, m, merge ? merge : "lww")) == TP_OK && stamps)
            rc = load_stamps(c, r, m, stamps);
        if (rc == TP_OK &&
            tp__map_put(s ? &s->models : &hub->shared, m->id, m) != 0)
            rc = tp__error_set(c->err, TP_ENOMEM, "out of memory");
        if (rc != TP_OK)
            tp__model_free(m);
    }
    json_decref(o);
    return rc;
}

static tp__model *
find_model(tp_hub *hub, const char *owner, const char *id)
{
    if (owner[0] == '\0')
        return tp__map_get(&hub->shared, id);
    tp_session *s = tp__map_get(&hub->tenants, owner);
    return s ? tp__map_get(&s->models, id) : NULL;
}

static int
load_hist(const tp__rec *r, void *user)
{
    restore_ctx *c = user;
    tp__model *m = find_model(c->hub, r->k1, r->k2);
    if (m == NULL || r->n > m->rev)
        return TP_OK; /* left over: the next commit of the model deletes it */
    tp__buf *msg = tp__buf_copy(r->body, r->body_len);
    if (msg == NULL)
        return tp__error_set(c->err, TP_ENOMEM, "out of memory");
    tp__model_history_push(m, r->n - 1, r->n, msg);
    tp__buf_unref(msg);
    if (m->hist_floor > r->n)
        m->hist_floor = r->n;
    return TP_OK;
}

static int
load_sub(const tp__rec *r, void *user)
{
    restore_ctx *c = user;
    json_t *o = load_body(r, c, "subscription");
    if (o == NULL)
        return TP_EINTERNAL;
    int access;
    json_int_t access_rev;
    int rc = TP_OK;
    tp__model *m = tp__map_get(&c->hub->shared, r->k2);
    tp_session *s = NULL;
    tp__sub *sub = NULL;
    if (json_unpack(o, "{si sI}", "access", &access, "access_rev", &access_rev) != 0 ||
        (access != TP_READ && access != TP_WRITE))
        rc = bad(c, r, "subscription", "expected access and access_rev");
    else if (m == NULL) {
        /* Unshared while the tenant was not in memory: gone now. */
        if ((s = tp__map_get(&c->hub->tenants, r->k1)) != NULL)
            tp__journal_sub(s, r->k2);
    } else if ((s = tp__hub_session(c->hub, r->k1, 0)) == NULL)
        rc = bad(c, r, "subscription", "not a usable tenant key");
    else if ((sub = tp__calloc(1, sizeof *sub)) == NULL || tp__vec_reserve(&m->subs, 1) != 0 ||
             tp__map_put(&s->subs, m->id, sub) != 0) {
        tp__free(sub);
        rc = tp__error_set(c->err, TP_ENOMEM, "out of memory");
    } else {
        sub->session = s;
        sub->model = m;
        sub->access = (tp_access)access;
        sub->access_rev = access_rev;
        sub->idx = m->subs.len;
        tp__vec_push(&m->subs, sub); /* reserved */
    }
    json_decref(o);
    return rc;
}

static int
load_client(const tp__rec *r, void *user)
{
    restore_ctx *c = user;
    json_t *o = load_body(r, c, "client");
    if (o == NULL)
        return TP_EINTERNAL;
    json_int_t highest, seq;
    int rc = TP_OK;
    tp_session *s = tp__map_get(&c->hub->tenants, r->k1);
    tp__client *cl = NULL;
    if (json_unpack(o, "{sI sI}", "highest", &highest, "seq", &seq) != 0 ||
        strlen(r->k2) >= sizeof cl->id || r->k2[0] == '\0')
        rc = bad(c, r, "client", "expected highest and seq");
    else if (s == NULL)
        ; /* its tenant holds nothing else: gone with it */
    else if ((cl = tp__calloc(1, sizeof *cl)) == NULL)
        rc = tp__error_set(c->err, TP_ENOMEM, "out of memory");
    else {
        memcpy(cl->id, r->k2, strlen(r->k2) + 1);
        cl->session = s;
        cl->highest = highest;
        cl->seq = cl->seq_saved = (uint64_t)seq;
        cl->used = ++s->client_uses;
        cl->bytes = TP__CLIENT_COST(strlen(cl->id));
        if (tp__map_put(&s->clients, cl->id, cl) != 0) {
            tp__free(cl);
            rc = tp__error_set(c->err, TP_ENOMEM, "out of memory");
        } else {
            s->client_bytes += cl->bytes;
        }
    }
    json_decref(o);
    return rc;
}

static int
load_outcome(const tp__rec *r, void *user)
{
    restore_ctx *c = user;
    tp_session *s = tp__map_get(&c->hub->tenants, r->k1);
    tp__client *cl = s ? tp__map_get(&s->clients, r->k2) : NULL;
    if (cl == NULL || r->n < 1 || (uint64_t)r->n > cl->seq)
        return TP_OK; /* left over: deleted with its client's next commit */
    char *end;
    char head[32];
    size_t hl = r->body_len < sizeof head - 1 ? r->body_len : sizeof head - 1;
    memcpy(head, r->body, hl);
    head[hl] = '\0';
    long long ref = strtoll(head, &end, 10);
    if (end == head || *end != ' ')
        return bad(c, r, "outcome", "expected a ref and a message");
    size_t skip = (size_t)(end - head) + 1;
    tp__buf *msg = tp__buf_copy(r->body + skip, r->body_len - skip);
    if (msg == NULL)
        return tp__error_set(c->err, TP_ENOMEM, "out of memory");
    /* Outcomes come in order of their number: the ring keeps the last ones. */
    unsigned k;
    if (cl->len == TP__OUTCOMES) {
        k = cl->start;
        size_t cost = TP__OUTCOME_COST(cl->outcomes[k].msg->len);
        cl->bytes -= cost;
        s->client_bytes -= cost;
        tp__buf_unref(cl->outcomes[k].msg);
        cl->start = (cl->start + 1) % TP__OUTCOMES;
    } else {
        k = (cl->start + cl->len++) % TP__OUTCOMES;
    }
    cl->outcomes[k].ref = ref;
    cl->outcomes[k].msg = msg;
    cl->bytes += TP__OUTCOME_COST(msg->len);
    s->client_bytes += TP__OUTCOME_COST(msg->len);
    return TP_OK;
}

int
tp__hub_restore(tp_hub *hub, const tp_merge *const *merges, tp_error *err)
{
    tp__map_init(&hub->schemas, hub->seed ^ 0x7);
    tp__map_init(&hub->merges, hub->seed ^ 0x8);
    for (size_t i = 0; merges != NULL && merges[i] != NULL; i++) {
        const tp_merge *mg = merges[i];
        if (mg->name == NULL || mg->name[0] == '\0' || mg->merge == NULL)
            return tp__error_set(err, TP_EARG, "merges[%zu]: a strategy needs a name and a merge",
                                 i);
        if (tp__map_put(&hub->merges, mg->name, (void *)mg) != 0)
            return tp__error_set(err, TP_ENOMEM, "out of memory");
    }
    tp_store *st = hub->store;
    if (st == NULL)
        return TP_OK;
    /* The hub's own records and the shared models now; each tenant when it
     * is first needed (tp__session_load). */
    restore_ctx c = {hub, err, 0};
    static const struct {
        tp__rec_kind kind;
        tp__rec_fn fn;
    } order[] = {{TP__REC_META, load_meta}, {TP__REC_MODEL, load_model}, {TP__REC_HIST, load_hist}};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        int rc = st->ops->scan(st, order[i].kind, i == 0 ? NULL : "", NULL, order[i].fn, &c, err);
        if (rc != TP_OK)
            return rc < 0 ? rc : TP_EINTERNAL;
    }
    hub->lazy = 1;
    hub->restored = c.found;
    if (!c.found)
        hub->jmeta = 1; /* a new store: the first commit marks it as a hub's */
    return TP_OK;
}

/* ---- Tenants in and out of memory ---- */

/* Frees what a session holds in memory (its stored records stay). */
static void
session_unload(tp_session *s)
{
    tp__session_clear(s);
    s->next_id = 1;
    s->loaded = 0;
}

int
tp__session_load(tp_session *s, tp_error *err)
{
    tp_hub *hub = s->hub;
    s->loaded = 1; /* first: what the scans call finds this session */
    if (hub->store == NULL || !hub->lazy)
        return TP_OK;
    restore_ctx c = {hub, err, 0};
    static const struct {
        tp__rec_kind kind;
        tp__rec_fn fn;
    } order[] = {{TP__REC_TENANT, load_tenant}, {TP__REC_MODEL, load_model},
                 {TP__REC_HIST, load_hist},     {TP__REC_SUB, load_sub},
                 {TP__REC_CLIENT, load_client}, {TP__REC_OUTCOME, load_outcome}};
    tp_store *st = hub->store;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        int rc = st->ops->scan(st, order[i].kind, s->tenant, NULL, order[i].fn, &c, err);
        if (rc != TP_OK) {
            session_unload(s);
            return rc < 0 ? rc : TP_EINTERNAL;
        }
    }
    /* A store written with a larger client_record_bytes (or before there
     * was one) is brought within it: the least recently stored go. */
    tp__client_trim(s, NULL);
    hub->loads++;
    return TP_OK;
}

/* What a session holds, roughly (the budget is an estimate, not a count). */
static size_t
session_bytes(const tp_session *s)
{
    size_t n = sizeof *s + 2 * strlen(s->tenant) + 64;
    void *v;
    for (size_t it = 0; tp__map_next(&s->models, &it, NULL, &v);) {
        const tp__model *m = v;
        n += sizeof *m + 2 * strlen(m->id) + 64 + 3 * m->bytes + m->hist_bytes +
             m->hist_cap * sizeof(tp__hist) + m->hist_len * 48;
    }
    n += s->subs.len * (sizeof(tp__sub) + 64);
    n += s->clients.len * sizeof(tp__client) + 2 * s->client_bytes;
    return n;
}

/* Whether a session can leave memory now: no connection, nothing pending. */
static int
evictable(const tp_session *s)
{
    if (!s->loaded || s->conns.len > 0)
        return 0;
    void *v;
    for (size_t it = 0; tp__map_next(&s->models, &it, NULL, &v);)
        if (((tp__model *)v)->pending != NULL)
            return 0;
    return 1;
}

typedef struct cand {
    tp_session *s;
    size_t bytes;
} cand;

static int
cand_older(const void *a, const void *b)
{
    const tp_session *x = ((const cand *)a)->s, *y = ((const cand *)b)->s;
    return x->idle_since < y->idle_since ? -1 : x->idle_since > y->idle_since;
}

static void
evict(tp_session *s)
{
    tp_hub *hub = s->hub;
    session_unload(s);
    hub->evictions++;
    if (!s->pinned) {
        tp__map_del(&hub->tenants, s->tenant);
        tp__session_free(s);
    }
}

TP_API int
tp_hub_evict(tp_hub *hub)
{
    if (hub->store == NULL || tp_hub_commit(hub, NULL) != TP_OK)
        return 0;
    int64_t now = tp__hub_now(hub);
    size_t total = 0, n = 0, cap = 0;
    cand *cands = NULL;
    void *v;
    for (size_t it = 0; tp__map_next(&hub->tenants, &it, NULL, &v);) {
        tp_session *s = v;
        if (!s->loaded)
            continue;
        size_t bytes = session_bytes(s);
        total += bytes;
        if (!evictable(s))
            continue;
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 64;
            cand *nc = tp__reallocarray(cands, ncap, sizeof *nc);
            if (nc == NULL)
                break;
            cands = nc;
            cap = ncap;
        }
        cands[n++] = (cand){s, bytes};
    }
    if (n > 0)
        qsort(cands, n, sizeof *cands, cand_older);
    /* The idle ones, then the least recently used while over the budget. */
    int evicted = 0;
    for (size_t i = 0; i < n; i++) {
        if (now - cands[i].s->idle_since < (int64_t)hub->evict_idle_ms &&
            total <= hub->memory_budget)
            break;
        total -= cands[i].bytes;
        evict(cands[i].s);
        evicted++;
    }
    tp__free(cands);
    hub->resident_bytes = total;
    return evicted;
}
