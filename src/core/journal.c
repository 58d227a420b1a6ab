/*
 * The journal: what changed since the last transaction was sealed, and the
 * sealing of it into a transaction that the committer makes durable
 * (commit.c), and the release of frames once it is.
 *
 * The journal holds no copies, only marks: a model, session or client
 * record that changed is marked dirty, and sealing encodes its state as it
 * is then, once, however often it changed in between. Records to delete
 * (a model deleted, a session or client record gone) are kept by key, since
 * their objects are freed. Deletions are written before puts, so that an id
 * deleted and used again within one iteration ends up stored as its new
 * self. The record layout is in core/journal.h and docs/internals/store.md.
 *
 * Sealing (tp__hub_seal, at the end of each loop iteration) encodes the
 * marked records into a transaction, clears the marks and counts them as
 * stored: the transaction is stored, or tried again until it is, and memory
 * never goes back. Every message queued for a connection is tagged with
 * the epoch it was queued in (one epoch per seal); a message leaves once
 * every transaction sealed up to its epoch is durable (hub->released).
 * There is no undo: a failed commit leaves memory ahead of the store, its
 * frames held and new writes refused (tp__hub_writable) until a commit
 * succeeds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/commit.h"
#include "core/conn_int.h"
#include "core/hub.h"
#include "core/journal.h"
#include "core/model.h"
#include "core/notes.h"
#include "core/schema.h"
#include "core/session.h"
#include "core/wire.h"
#include "util/alloc.h"
#include "util/error.h"

/*
 * Stored patches the history no longer keeps are deleted once
 * TP__TRIM_EVERY of them, or TP__TRIM_BYTES, have gathered, not one by one:
 * a delete per write was about a fifth of the commit thread's work in W2.
 * The restore keeps only what the history holds, so the extra rows cost
 * only disk, bounded per model by those two. (Outcomes are deleted at once:
 * client_record_bytes bounds them on disk too.)
 */
#define TP__TRIM_EVERY 32
#define TP__TRIM_BYTES (64 * 1024)

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

/* Out of memory while noting a change: sealing cannot know what to store,
 * so the next seal stores everything the hub holds. */
static void
journal_broken(tp_hub *hub)
{
    hub->jbroken = 1;
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

/* The session a change of stored state concerns is not evicted before the
 * epoch it was noted in is durable (restore.c, evictable). */
static void
touch(tp_session *s)
{
    if (s != NULL)
        s->jepoch = s->hub->epoch;
}

void
tp__journal_model(tp__model *m)
{
    if (m->hub->store == NULL)
        return;
    if (!m->shared)
        touch(m->owner);
    mark(m->hub, &m->hub->jmodels, m, &m->jdirty, &m->jidx);
}

void
tp__journal_model_gone(tp__model *m)
{
    tp_hub *hub = m->hub;
    if (hub->store == NULL)
        return;
    if (!m->shared)
        touch(m->owner);
    tp__model *moved = unmark(&hub->jmodels, &m->jdirty, m->jidx);
    if (moved != NULL)
        moved->jidx = m->jidx;
    add_del(hub, TP__REC_MODEL, owner_of(m), m->id);
    add_del(hub, TP__REC_HIST, owner_of(m), m->id);
}

void
tp__journal_session(tp_session *s)
{
    if (s->hub->store == NULL)
        return;
    touch(s);
    mark(s->hub, &s->hub->jsessions, s, &s->jdirty, &s->jidx);
}

void
tp__journal_client(tp__client *cl)
{
    tp_hub *hub = cl->session->hub;
    if (hub->store == NULL)
        return;
    touch(cl->session);
    mark(hub, &hub->jclients, cl, &cl->jdirty, &cl->jidx);
}

void
tp__journal_client_gone(tp__client *cl)
{
    tp_hub *hub = cl->session->hub;
    if (hub->store == NULL)
        return;
    touch(cl->session);
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
    if (hub->store == NULL)
        return;
    touch(s);
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
    if (v == NULL || json_dump_callback(v, dump_to_sb, sb, JSON_COMPACT | JSON_ENCODE_ANY) != 0 ||
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

typedef struct commit_ctx {
    tp_hub *hub;
    tp__txn *tx;
    tp_error *err;
    tp__sb sb;
} commit_ctx;

static int
put(commit_ctx *c, tp__rec_kind kind, const char *k1, const char *k2, int64_t n, const char *body,
    size_t len)
{
    tp__rec r = {kind, k1, k2, n, body, len};
    return tp__txn_put(c->tx, &r, c->err);
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
    /* Known as stored from now on (sealed): the transaction is stored,
     * tried again until it is (sealed_done). */
    return TP_OK;
}

/*
 * The MODEL record, the one record sealed at nearly every write: written
 * piece by piece (the bytes json_pack and jansson's encoder made of
 * {"schema","rev","reborn","value"[,"merge"[,"stamps"]]}, in that order),
 * without a jansson tree or jansson's per-dump costs. test_restore
 * (model_records_are_the_bytes_jansson_wrote_for_them) checks that the two
 * agree.
 */
static void
model_record(tp__sb *sb, const tp__model *m, const char *skey)
{
    tp__sb_reset(sb);
    tp__sb_puts(sb, "{\"schema\":");
    tp__wire_string(sb, skey, strlen(skey));
    tp__sb_puts(sb, ",\"rev\":");
    tp__sb_int(sb, m->rev);
    tp__sb_puts(sb, ",\"reborn\":");
    tp__sb_int(sb, m->reborn);
    tp__sb_puts(sb, ",\"value\":");
    tp__wire_value(sb, m->value);
    if (m->shared) {
        const char *merge = m->merge.name ? m->merge.name : "";
        tp__sb_puts(sb, ",\"merge\":");
        tp__wire_string(sb, merge, strlen(merge));
        if (m->kind == TP__LWW_MAP) {
            /* Each field's stamp: [wall, count, tenant, conn]. */
            tp__sb_puts(sb, ",\"stamps\":{");
            void *v;
            int first = 1;
            for (size_t it = 0; tp__map_next(&m->stamps, &it, NULL, &v);) {
                const tp__stamp_entry *e = v;
                if (!first)
                    tp__sb_append(sb, ",", 1);
                first = 0;
                tp__wire_string(sb, e->field, strlen(e->field));
                tp__sb_puts(sb, ":[");
                tp__sb_int(sb, e->st.wall);
                tp__sb_append(sb, ",", 1);
                tp__sb_int(sb, e->st.count);
                tp__sb_append(sb, ",", 1);
                tp__wire_string(sb, e->st.tenant, strlen(e->st.tenant));
                tp__sb_append(sb, ",", 1);
                tp__sb_int(sb, (int64_t)e->st.conn);
                tp__sb_append(sb, "]", 1);
            }
            tp__sb_append(sb, "}", 1);
        }
    }
    tp__sb_append(sb, "}", 1);
}

static int
store_model(commit_ctx *c, tp__model *m)
{
    const char *skey = tp__schema_key(m->schema);
    /* A model's schema never changes, and hub->schemas only grows. */
    int rc = m->jschema && skey != NULL ? TP_OK : store_schema(c, m->schema, &skey);
    if (rc != TP_OK)
        return rc;
    model_record(&c->sb, m, skey);
    if (c->sb.failed)
        return tp__error_set(c->err, TP_ENOMEM, "out of memory");
    const char *owner = owner_of(m);
    rc = put(c, TP__REC_MODEL, owner, m->id, 0, c->sb.buf->data, c->sb.buf->len);
    /* The patches published since the last commit, then the ones the
     * history no longer keeps. */
    for (unsigned i = 0; rc == TP_OK && i < m->hist_len; i++) {
        const tp__hist *h = &m->hist[(m->hist_start + i) % m->hist_cap];
        if (h->rev > m->hist_saved)
            rc = put(c, TP__REC_HIST, owner, m->id, h->rev, h->msg->data, h->msg->len);
    }
    int64_t oldest = m->hist_len > 0 ? m->hist[m->hist_start].rev : m->rev + 1;
    if (rc == TP_OK && oldest > m->hist_floor &&
        (m->hist_len == 0 || oldest - m->hist_floor >= TP__TRIM_EVERY ||
         m->hist_dropped > TP__TRIM_BYTES)) {
        rc = tp__txn_del_below(c->tx, TP__REC_HIST, owner, m->id, oldest, c->err);
        m->hist_floor = oldest;
        m->hist_dropped = 0;
    }
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
        rc = put(c, TP__REC_OUTCOME, tenant, cl->id, (int64_t)n, c->sb.buf->data, c->sb.buf->len);
    }
    if (rc == TP_OK && cl->len > 0 && first > cl->seq_floor)
        rc = tp__txn_del_below(c->tx, TP__REC_OUTCOME, tenant, cl->id, (int64_t)first, c->err);
    return rc;
}

static int
store_sub(commit_ctx *c, const struct tp__jsub *j)
{
    tp_session *s = tp__map_get(&c->hub->tenants, j->tenant);
    tp__sub *sub = s ? tp__session_sub(s, j->sid) : NULL;
    if (sub == NULL)
        return tp__txn_del(c->tx, TP__REC_SUB, j->tenant, j->sid, 0, c->err);
    json_t *o =
        json_pack("{sisI}", "access", (int)sub->access, "access_rev", (json_int_t)sub->access_rev);
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
           hub->jsubs.len == 0 && hub->jdels.len == 0 && !hub->jmeta && !hub->jbroken &&
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

/* After a transaction is built: what it holds counts as stored. */
static void
sealed_done(tp_hub *hub)
{
    for (size_t i = 0; i < hub->jmodels.len; i++) {
        tp__model *m = hub->jmodels.items[i];
        m->jdirty = 0;
        m->hist_saved = m->rev;
        if (m->jschema)
            continue;
        const char *key = tp__schema_key(m->schema);
        if (key != NULL && tp__map_get(&hub->schemas, key) == NULL) {
            tp_schema *ref = tp__schema_ref(m->schema);
            /* The key lives in the schema, which the map keeps alive. */
            if (tp__map_put(&hub->schemas, tp__schema_key(ref), ref) != 0)
                tp_schema_free(ref); /* stored again next time: harmless */
        }
        m->jschema = key != NULL && tp__map_get(&hub->schemas, key) != NULL;
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
    hub->jbroken = 0;
}

/* A change could not be noted for lack of memory: what to store is
 * unknown. Everything the hub holds is marked, to be stored once. */
static void
mark_everything(tp_hub *hub)
{
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
}

/* Encodes the journal into a transaction; NULL (err filled) when memory
 * ran out, with the journal untouched. */
static tp__txn *
build(tp_hub *hub, uint64_t seq, tp_error *err)
{
    if (hub->jbroken)
        mark_everything(hub);
    tp__txn *tx = tp__txn_new(seq);
    if (tx == NULL) {
        tp__error_set(err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    /* The scratch text is the hub's, kept from seal to seal (a malloc and
     * a free less per seal), unless one record made it large. */
    if (hub->jsb.buf == NULL)
        tp__sb_init(&hub->jsb, 512);
    tp__sb_reset(&hub->jsb);
    commit_ctx c = {hub, tx, err, hub->jsb};
    int rc = TP_OK;
    for (size_t i = 0; rc == TP_OK && i < hub->jdels.len; i++) {
        struct tp__jdel *d = hub->jdels.items[i];
        if (d->kind == TP__REC_MODEL || d->kind == TP__REC_TENANT)
            rc = tp__txn_del(tx, d->kind, d->k1, d->k2, 0, err);
        else
            rc = tp__txn_del_key(tx, d->kind, d->k1, d->k2, err);
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
    /* Last: the observer takes its records as stored once it returns OK. */
    if (rc == TP_OK && hub->observer != NULL)
        rc = hub->observer->journal(hub->observer->user, tx, seq, err);
    if (c.sb.failed || c.sb.buf->cap > 64 * 1024)
        tp__sb_free(&c.sb);
    hub->jsb = c.sb;
    if (rc != TP_OK) {
        tp__txn_free(tx);
        return NULL;
    }
    return tx;
}

/* ---- Holding frames until durable ---- */

static uint64_t
inflight_front(const tp_hub *hub)
{
    return hub->inflight[hub->in_head];
}

static int
inflight_reserve(tp_hub *hub)
{
    if (hub->in_head > 0 && hub->in_head + hub->in_len == hub->in_cap) {
        memmove(hub->inflight, hub->inflight + hub->in_head, hub->in_len * sizeof *hub->inflight);
        hub->in_head = 0;
    }
    if (hub->in_len < hub->in_cap - hub->in_head)
        return 0;
    size_t cap = hub->in_cap ? 2 * hub->in_cap : 16;
    uint64_t *a = tp__reallocarray(hub->inflight, cap, sizeof *a);
    if (a == NULL)
        return -1;
    hub->inflight = a;
    hub->in_cap = cap;
    return 0;
}

/* Connections whose held messages may now leave go on the ready list. */
static void
update_released(tp_hub *hub)
{
    uint64_t r = hub->in_len > 0 ? inflight_front(hub) - 1 : hub->epoch - 1;
    if (r <= hub->released)
        return;
    hub->released = r;
    size_t kept = 0;
    for (size_t i = 0; i < hub->held.len; i++) {
        tp_conn *c = hub->held.items[i];
        if (tp__conn_release(c)) {
            c->held_idx = kept;
            hub->held.items[kept++] = c;
        } else {
            c->in_held = 0;
        }
    }
    hub->held.len = kept;
}

void
tp__journal_conn_gone(tp_conn *c)
{
    tp_hub *hub = c->hub;
    if (!c->in_held)
        return;
    tp_conn *moved = tp__vec_swap_remove(&hub->held, c->held_idx);
    if (moved != NULL)
        moved->held_idx = c->held_idx;
    c->in_held = 0;
}

void
tp__journal_conn_held(tp_conn *c)
{
    if (c->in_held)
        return;
    if (tp__vec_push(&c->hub->held, c) != 0) {
        /* Nothing would tell the transport when its messages may leave:
         * better closed (it can resume) than stalled. */
        tp__conn_send(c, NULL);
        return;
    }
    c->in_held = 1;
    c->held_idx = c->hub->held.len - 1;
}

uint64_t
tp__hub_seal(tp_hub *hub, int *made)
{
    uint64_t seq = hub->epoch;
    if (made != NULL)
        *made = 0;
    if (hub->committer == NULL) {
        /* No store: nothing is held; the observer's records have nowhere
         * to go and count as stored. */
        const tp__observer *ob = hub->observer;
        if (ob != NULL && ob->pending(ob->user)) {
            tp_error err;
            if (ob->journal(ob->user, NULL, seq, &err) == TP_OK)
                ob->committed(ob->user, seq);
        }
        hub->epoch++;
        return seq; /* released is UINT64_MAX: nothing waits */
    }
    if (!journal_empty(hub)) {
        tp_error err = {0, ""};
        tp__txn *tx = inflight_reserve(hub) == 0 ? build(hub, seq, &err) : NULL;
        if (tx == NULL) {
            /* Out of memory: the marks stay, and this epoch's messages wait
             * for a later seal (the epoch does not move on). */
            journal_broken(hub);
            tp__log(&hub->log, TP_LOG_ERROR, "store: changes could not be encoded: %s",
                    err.message[0] ? err.message : "out of memory");
            return seq;
        }
        sealed_done(hub);
        hub->inflight[hub->in_head + hub->in_len++] = seq;
        tp__committer_push(hub->committer, tx);
        if (made != NULL)
            *made = 1;
    }
    hub->epoch++;
    update_released(hub);
    return seq;
}

void
tp__hub_collect(tp_hub *hub)
{
    if (hub->committer == NULL)
        return;
    uint64_t d = tp__committer_durable(hub->committer);
    while (hub->in_len > 0 && inflight_front(hub) <= d) {
        hub->in_head++;
        hub->in_len--;
    }
    if (hub->in_len == 0)
        hub->in_head = 0;
    update_released(hub);
    if (d > hub->observed) {
        hub->observed = d;
        if (hub->observer != NULL)
            hub->observer->committed(hub->observer->user, d);
    }
    int failing = tp__committer_failing(hub->committer, NULL, 0);
    if (failing != hub->was_failing) {
        char why[256] = "";
        tp__committer_failing(hub->committer, why, sizeof why);
        if (failing)
            tp__log(&hub->log, TP_LOG_ERROR,
                    "store commit failed: memory stays ahead, frames are held and writes "
                    "refused until a commit succeeds: %s",
                    why);
        else
            tp__log(&hub->log, TP_LOG_WARN, "store commit works again");
        hub->was_failing = failing;
    }
}

uint64_t
tp__hub_released(const tp_hub *hub)
{
    return hub->released;
}

int
tp__hub_commit(tp_hub *hub, tp_error *err)
{
    int made = 0;
    uint64_t seq = tp__hub_seal(hub, &made);
    if (hub->committer == NULL)
        return TP_OK;
    int rc = TP_OK;
    if (hub->in_len > 0)
        rc = tp__committer_wait(hub->committer, hub->inflight[hub->in_head + hub->in_len - 1],
                                !made, err);
    tp__hub_collect(hub);
    if (rc == TP_OK && hub->released < seq)
        rc = tp__error_set(err, TP_EINTERNAL, "storage: out of memory encoding the changes");
    return rc;
}

/* Frames are asked for by a transport without a loop of ours (no wake
 * registered): what is noted is committed first, as tp_hub_next_ready
 * promises. While commits fail, it is tried again only when something new
 * was sealed (tp_hub_commit always tries). */
void
tp__hub_commit_for_frames(tp_hub *hub)
{
    if (hub->committer == NULL || hub->async)
        return;
    int made = 0;
    tp__hub_seal(hub, &made);
    if (hub->in_len > 0 && (made || !tp__committer_failing(hub->committer, NULL, 0))) {
        tp_error err;
        tp__committer_wait(hub->committer, hub->inflight[hub->in_head + hub->in_len - 1], 0, &err);
    }
    tp__hub_collect(hub);
}

void
tp__hub_set_wake(tp_hub *hub, void (*fn)(void *user), void *user)
{
    hub->async = fn != NULL;
    if (hub->committer != NULL)
        tp__committer_set_wake(hub->committer, fn, user);
}

void
tp__hub_commit_retry(tp_hub *hub)
{
    if (hub->committer != NULL)
        tp__committer_retry(hub->committer);
}

int
tp__hub_commit_pending(const tp_hub *hub)
{
    return hub->committer != NULL && hub->in_len > 0 &&
           tp__committer_failing(hub->committer, NULL, 0);
}

int
tp__hub_store_state(const tp_hub *hub)
{
    if (hub->store == NULL)
        return TP__STORE_NONE;
    return hub->committer != NULL && tp__committer_failing(hub->committer, NULL, 0)
               ? TP__STORE_FAILING
               : TP__STORE_OK;
}

int
tp__hub_writable(tp_hub *hub, tp_error *err)
{
    char why[200];
    if (hub->committer == NULL || !tp__committer_failing(hub->committer, why, sizeof why))
        return TP_OK;
    return tp__error_set(err, TP_EINTERNAL,
                         "storage: the store is failing (%s): changes are refused until a "
                         "commit succeeds",
                         why);
}

int
tp__store_read_begin(tp_hub *hub, tp_error *err)
{
    if (hub->committer == NULL)
        return TP_OK;
    /* What is noted goes first: a read sees every change made before it. */
    tp__hub_seal(hub, NULL);
    return tp__committer_read_begin(hub->committer, err);
}

void
tp__store_read_end(tp_hub *hub)
{
    if (hub->committer != NULL)
        tp__committer_read_end(hub->committer);
}

int
tp__hub_persist_start(tp_hub *hub, tp_error *err)
{
    hub->epoch = 1;
    hub->released = hub->store == NULL ? UINT64_MAX : 0;
    if (hub->store == NULL)
        return TP_OK;
    hub->committer = tp__committer_new(hub->store, err);
    return hub->committer != NULL ? TP_OK : err->code;
}

void
tp__hub_persist_stats(const tp_hub *hub, uint64_t *commits, uint64_t *failures)
{
    uint64_t group;
    *commits = *failures = 0;
    if (hub->committer != NULL)
        tp__committer_stats(hub->committer, commits, failures, &group);
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
    if (hub->committer != NULL) {
        tp_error err;
        if (tp__hub_commit(hub, &err) != TP_OK)
            tp__log(&hub->log, TP_LOG_ERROR, "store: what was not stored is lost: %s", err.message);
        tp__committer_free(hub->committer);
        hub->committer = NULL;
    }
    if (hub->store != NULL)
        hub->store->hub = NULL;
    for (size_t i = 0; i < hub->held.len; i++)
        ((tp_conn *)hub->held.items[i])->in_held = 0;
    hub->held.len = 0;
    jdels_clear(hub);
    tp__sb_free(&hub->jsb);
    tp__vec_free(&hub->jdels);
    tp__vec_free(&hub->jsubs);
    tp__vec_free(&hub->jmodels);
    tp__vec_free(&hub->jsessions);
    tp__vec_free(&hub->jclients);
    tp__vec_free(&hub->held);
    tp__free(hub->inflight);
    hub->inflight = NULL;
    void *v;
    for (size_t it = 0; tp__map_next(&hub->schemas, &it, NULL, &v);)
        tp_schema_free(v);
    tp__map_free(&hub->schemas);
    tp__map_free(&hub->merges);
}
