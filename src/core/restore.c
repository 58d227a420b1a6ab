/*
 * Restoring a hub from what its store holds: the hub's records and the
 * shared models at start (tp__hub_restore), each tenant when it is first
 * needed (tp__session_load), and tenants leaving memory again
 * (tp_hub_evict).
 *
 * Reads run on the loop thread while the committer is idle: a tenant's
 * load first seals what is noted and waits until every transaction sealed
 * so far is durable (tp__store_read_begin), so it never reads the store
 * behind memory. That wait is the one place the loop waits for an fsync;
 * it is rare (a tenant evicted, then used again). While commits fail, a
 * load fails (internal) rather than read stale records.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hub.h"
#include "core/journal.h"
#include "core/model.h"
#include "core/notes.h"
#include "core/restore.h"
#include "core/schema.h"
#include "core/session.h"
#include "util/alloc.h"
#include "util/error.h"

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
    m->kind = mg->merge == tp_lww_map_crdt.merge      ? TP__LWW_MAP
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
        if (rc == TP_OK && tp__map_put(s ? &s->models : &hub->shared, m->id, m) != 0)
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
    if (tp__store_read_begin(hub, err) != TP_OK) {
        session_unload(s);
        return TP_EINTERNAL;
    }
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        int rc = st->ops->scan(st, order[i].kind, s->tenant, NULL, order[i].fn, &c, err);
        if (rc != TP_OK) {
            tp__store_read_end(hub);
            session_unload(s);
            return rc < 0 ? rc : TP_EINTERNAL;
        }
    }
    tp__store_read_end(hub);
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

/* Whether a session can leave memory now: no connection, nothing pending,
 * and every change of it durable. */
static int
evictable(const tp_session *s)
{
    if (!s->loaded || s->conns.len > 0 || s->jepoch > s->hub->released || s->jdirty)
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
    if (hub->store == NULL)
        return 0;
    tp__hub_commit_for_frames(hub); /* without a loop of ours: commits first */
    tp__hub_collect(hub);
    if (tp__hub_store_state(hub) == TP__STORE_FAILING)
        return 0; /* a tenant evicted now could not be loaded again */
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
