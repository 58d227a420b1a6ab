/*
 * The catalog (catalog.h): what exists on every node of a cluster.
 *
 * A node's hub is its catalog: its sessions' models, its shared models,
 * their subscriptions and the host API's named schemas. The log keeps the
 * same as items (catalog.h) under a version; each change is one atomic
 * put of some items, published to every node with the version it made.
 *
 * - A host change here (hostops.c) is made here at once, then queued as an
 *   op and put, one at a time, in order; its ticket ends when the log has
 *   it, so the host API answers only then. A put that cannot reach the log
 *   stays queued and is put again when it can (a structure change is kept,
 *   as on one node when a commit fails); its ticket fails after the wait.
 * - An op of any node (this one's too) comes back as a message: at the next
 *   version it is applied, item by item, as a difference with the hub (an
 *   item the hub has already changes nothing); after a gap, or when the
 *   link was lost, the node loads the whole catalog and applies that.
 * - A model the catalog has and the hub does not is made from its log: the
 *   node reads its record (retried while the log does not have it yet: the
 *   node that made it appends the model and announces it independently)
 *   and makes it with that value and rev, then its subscriptions.
 * - The first node to load an empty catalog (version 0) seeds it with what
 *   its config made, on the condition that it is still empty.
 */
#include "core/catalog.h"

#include <string.h>

#include "core/conn_int.h"
#include "core/hub.h"
#include "core/json.h"
#include "core/merge.h"
#include "core/model.h"
#include "core/names.h"
#include "core/order_int.h"
#include "core/schema.h"
#include "core/session.h"
#include "core/ticket.h"
#include "util/alloc.h"
#include "util/error.h"

#define CAT_RETRY_MS 250
/* A barrier the log could not answer (tp__order_barrier). */
#define BAR_AWAY "cluster: the shared log cannot be reached; retry"

typedef struct cat_item {
    char *field, *body; /* body NULL: deleted */
} cat_item;

typedef struct cat_op {
    struct cat_op *next;
    char *text; /* the published op */
    cat_item *items;
    size_t n;
    int64_t expect; /* -1, or 0 for the seed */
    int64_t at;     /* hub clock ms when it was queued */
    uint64_t ticket;
    uint64_t after; /* put once this ticket ended (a model made: in its log first) */
} cat_op;

/* A model the catalog has and the hub does not: read from its log. */
typedef struct pend {
    char *field; /* the map's key */
    int shared;
    char *owner, *id, *schema, *merge;
    int reading;
    int answered; /* a read answered (until then a starting node waits for it) */
    int64_t retry_at;
    int64_t delay; /* before the next read when the log has no record: doubles to 30 s */
} pend;

/* A subscription to a shared model the hub does not hold yet. */
typedef struct wsub {
    char *field; /* the map's key */
    char *sid, *tenant;
    tp_access access;
} wsub;

struct tp__catalog {
    int64_t version;  /* of what the hub holds */
    int64_t seen;     /* the highest version a message announced */
    int loaded;       /* loaded at least once */
    int loading;      /* a load in flight */
    int need_load;    /* a gap, or the link was lost */
    int busy;         /* a put in flight */
    int64_t tried_at; /* when the head was last put */
    cat_op *head, *tail;
    /* Barriers (tp__order_barrier): tickets waiting for the version to be
     * asked, for its answer, and for the node to reach it. */
    tp__vec bar_new, bar_asked;
    struct bar *bars;
    size_t nbars, capbars;
    int asking;
    tp__map pending;   /* field -> pend * */
    size_t unanswered; /* of them: never answered */
    tp__map subs;      /* field -> wsub * */
    /* The change being built (tp__catalog_begin .. _end). */
    int depth;
    uint64_t after;
    cat_item *batch;
    size_t bn, bcap;
};

/* ---- Items ---- */

static char *
field_text(char kind, const char *a, const char *b)
{
    char k[2] = {kind, '\0'};
    json_t *f = b != NULL ? json_pack("[sss]", k, a, b) : json_pack("[ss]", k, a);
    char *t = f ? tp__json_dumps(f, JSON_COMPACT) : NULL;
    json_decref(f);
    return t;
}

static const char *
access_name(tp_access a)
{
    return a == TP_WRITE ? "write" : "read";
}

static const char *
merge_name(const tp__model *m)
{
    return m->merge_name ? m->merge_name : m->kind == TP__LWW_MAP ? "lww-map" : "lww";
}

/* The body of a model's item as the hub holds it, or NULL (not here, or
 * its schema has no name: not announced). */
static char *
model_body(tp_hub *hub, const tp__model *m)
{
    const char *name = tp__names_of(hub->snames, m->schema);
    if (name == NULL)
        return NULL;
    json_t *o = m->shared ? json_pack("{s:s, s:s}", "schema", name, "merge", merge_name(m))
                          : json_pack("{s:s}", "schema", name);
    char *t = o ? tp__json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return t;
}

static tp__model *
find_model(tp_hub *hub, int shared, const char *owner, const char *id)
{
    if (shared)
        return tp__map_get(&hub->shared, id);
    tp_session *s = tp__map_get(&hub->tenants, owner);
    return s ? tp__map_get(&s->models, id) : NULL;
}

/* ---- Building a change ---- */

static int
announcing(const tp_hub *hub)
{
    return hub->order != NULL && hub->cat != NULL && !hub->cat_applying;
}

static void
batch_add(tp_hub *hub, char *field, char *body)
{
    struct tp__catalog *c = hub->cat;
    if (field == NULL) {
        tp__free(body);
        return;
    }
    /* A field set twice in one change: the last body wins. */
    for (size_t i = 0; i < c->bn; i++) {
        if (strcmp(c->batch[i].field, field) == 0) {
            tp__free(c->batch[i].body);
            c->batch[i].body = body;
            tp__free(field);
            return;
        }
    }
    if (c->bn == c->bcap) {
        size_t cap = c->bcap ? c->bcap * 2 : 8;
        cat_item *p = tp__realloc(c->batch, cap * sizeof *p);
        if (p == NULL) {
            tp__free(field);
            tp__free(body);
            tp__log(&hub->log, TP_LOG_ERROR, "cluster: out of memory: a catalog change is lost");
            return;
        }
        c->batch = p;
        c->bcap = cap;
    }
    c->batch[c->bn++] = (cat_item){field, body};
}

void
tp__catalog_begin(tp_hub *hub)
{
    if (announcing(hub))
        hub->cat->depth++;
}

void
tp__catalog_schema(tp_hub *hub, const char *name, const json_t *doc)
{
    if (!announcing(hub))
        return;
    batch_add(hub, field_text('n', name, NULL), tp__json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS));
}

void
tp__catalog_model(tp_hub *hub, int shared, const char *owner, const char *id)
{
    if (!announcing(hub))
        return;
    tp__model *m = find_model(hub, shared, owner, id);
    batch_add(hub, shared ? field_text('s', id, NULL) : field_text('m', owner, id),
              m ? model_body(hub, m) : NULL);
}

void
tp__catalog_sub(tp_hub *hub, const char *sid, const char *tenant)
{
    if (!announcing(hub))
        return;
    tp_session *s = tp__map_get(&hub->tenants, tenant);
    const tp__sub *sub = s ? tp__session_sub(s, sid) : NULL;
    char *body = NULL;
    if (sub != NULL) {
        json_t *o = json_pack("{s:s}", "access", access_name(sub->access));
        body = o ? tp__json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
    }
    batch_add(hub, field_text('u', sid, tenant), body);
}

static void put_next(tp_hub *hub);
static void bars_check(tp_hub *hub);

/* Queues the items (taken) as one op. */
static void
queue_op(tp_hub *hub, cat_item *items, size_t n, const char *close, int code, int64_t expect)
{
    struct tp__catalog *c = hub->cat;
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < n; i++) {
        json_error_t je;
        json_t *f = json_loads(items[i].field, 0, &je);
        json_t *b = items[i].body ? json_loads(items[i].body, 0, &je) : json_null();
        if (f == NULL || b == NULL || json_array_append_new(arr, json_pack("[oo]", f, b)) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    json_t *op = arr ? json_pack("{s:o}", "items", arr) : NULL;
    if (op != NULL && close != NULL)
        json_object_set_new(op, "close", json_pack("[si]", close, code));
    cat_op *o = tp__calloc(1, sizeof *o);
    if (o != NULL)
        o->text = op ? tp__json_dumps(op, JSON_COMPACT) : NULL;
    json_decref(op);
    if (o == NULL || o->text == NULL) {
        if (o != NULL)
            tp__free(o);
        for (size_t i = 0; i < n; i++) {
            tp__free(items[i].field);
            tp__free(items[i].body);
        }
        tp__free(items);
        tp__log(&hub->log, TP_LOG_ERROR, "cluster: out of memory: a catalog change is lost");
        return;
    }
    o->items = items;
    o->n = n;
    o->expect = expect;
    o->at = tp__hub_now(hub);
    o->ticket = expect < 0 ? tp__ticket_open(hub) : 0;
    o->after = c->after;
    c->after = 0;
    if (c->tail != NULL)
        c->tail->next = o;
    else
        c->head = o;
    c->tail = o;
    put_next(hub);
}

void
tp__catalog_after(tp_hub *hub, uint64_t ticket)
{
    if (announcing(hub))
        hub->cat->after = ticket;
}

void
tp__catalog_kick(tp_hub *hub)
{
    if (hub->cat != NULL)
        put_next(hub);
}

void
tp__catalog_end(tp_hub *hub, const char *close, int code)
{
    if (!announcing(hub))
        return;
    struct tp__catalog *c = hub->cat;
    if (c->depth > 0 && --c->depth > 0)
        return;
    if (c->bn == 0 && close == NULL)
        return;
    cat_item *items = c->batch;
    size_t n = c->bn;
    c->batch = NULL;
    c->bn = c->bcap = 0;
    queue_op(hub, items, n, close, code, -1);
}

/* ---- Putting ---- */

static void
op_free(cat_op *o)
{
    for (size_t i = 0; i < o->n; i++) {
        tp__free(o->items[i].field);
        tp__free(o->items[i].body);
    }
    tp__free(o->items);
    tp__free(o->text);
    tp__free(o);
}

static void
put_next(tp_hub *hub)
{
    struct tp__catalog *c = hub->cat;
    if (c->busy || c->head == NULL)
        return;
    cat_op *o = c->head;
    /* A model is announced once its log has it, so that a node making it
     * from the announcement finds its record (tp__catalog_kick). */
    if (o->after != 0 && tp__ticket_state(hub, o->after - 1, o->after, NULL) == 1)
        return;
    tp__order_item *its = tp__calloc(o->n + 1, sizeof *its);
    if (its == NULL)
        return; /* tried again at the tick */
    for (size_t i = 0; i < o->n; i++)
        its[i] = (tp__order_item){o->items[i].field, strlen(o->items[i].field), o->items[i].body,
                                  o->items[i].body ? strlen(o->items[i].body) : 0};
    tp_error err = {0, ""};
    c->tried_at = tp__hub_now(hub);
    if (hub->order->catalog_put(hub->order_be, o->expect, o->text, strlen(o->text), its, o->n,
                                &err) == TP_OK)
        c->busy = 1;
    tp__free(its);
}

static void load(tp_hub *hub);

void
tp__order_catalog_done(tp_hub *hub, int conflict, int64_t version, const tp_error *err)
{
    struct tp__catalog *c = hub->cat;
    if (c == NULL || !c->busy)
        return;
    c->busy = 0;
    if (err != NULL && err->code == TP_ETOOLARGE) {
        /* The catalog is full (its bounds: cluster-log.md): never put. The
         * change stays on this node only; the host is told. */
        cat_op *o = c->head;
        c->head = o->next;
        if (c->head == NULL)
            c->tail = NULL;
        tp__log(&hub->log, TP_LOG_ERROR,
                "cluster: a change is not announced to the other nodes: %s", err->message);
        tp__ticket_end(hub, o->ticket, TP_ETOOLARGE, err->message);
        op_free(o);
        put_next(hub);
        return;
    }
    if (err != NULL) {
        /* Kept: put again at the tick, or when the link is back. */
        tp__log(&hub->log, TP_LOG_WARN, "cluster: a catalog change waits for the log: %s",
                err->message);
        return;
    }
    cat_op *o = c->head;
    c->head = o->next;
    if (c->head == NULL)
        c->tail = NULL;
    if (conflict) {
        /* The seed lost: another node seeded the catalog first. */
        c->need_load = 1;
    } else if (version > c->seen) {
        c->seen = version;
    }
    tp__ticket_end(hub, o->ticket, TP_OK, NULL);
    op_free(o);
    put_next(hub);
    if (c->head == NULL && c->need_load)
        load(hub);
    bars_check(hub);
}

/* ---- Applying ---- */

static void
pend_free(pend *p)
{
    tp__free(p->field);
    tp__free(p->owner);
    tp__free(p->id);
    tp__free(p->schema);
    tp__free(p->merge);
    tp__free(p);
}

static void
pend_drop(tp_hub *hub, const char *field)
{
    pend *p = tp__map_del(&hub->cat->pending, field);
    if (p != NULL && !p->answered) {
        hub->cat->unanswered--;
        bars_check(hub);
    }
    if (p != NULL)
        pend_free(p);
}

static void
adopt_read(tp_hub *hub, pend *p)
{
    tp_error err = {0, ""};
    p->delay = p->delay == 0 ? CAT_RETRY_MS : p->delay < 30000 ? p->delay * 2 : 30000;
    p->retry_at = tp__hub_now(hub) + p->delay;
    if (hub->order->read(hub->order_be, p->owner, p->id, 0, &err) == TP_OK)
        p->reading = 1;
}

static void
pend_add(tp_hub *hub, const char *field, int shared, const char *owner, const char *id,
         const char *schema, const char *merge)
{
    pend_drop(hub, field); /* a newer item replaces it */
    pend *p = tp__calloc(1, sizeof *p);
    if (p == NULL || (p->field = tp__strdup(field)) == NULL ||
        (p->owner = tp__strdup(owner)) == NULL || (p->id = tp__strdup(id)) == NULL ||
        (p->schema = tp__strdup(schema)) == NULL ||
        (p->merge = tp__strdup(merge ? merge : "lww")) == NULL ||
        tp__map_put(&hub->cat->pending, p->field, p) != 0) {
        if (p != NULL)
            pend_free(p);
        tp__log(&hub->log, TP_LOG_ERROR, "cluster: out of memory: model %s/%s is not made here",
                owner, id);
        return;
    }
    p->shared = shared;
    hub->cat->unanswered++;
    adopt_read(hub, p);
}

static void
wsub_drop(tp_hub *hub, const char *field)
{
    wsub *w = tp__map_del(&hub->cat->subs, field);
    if (w != NULL) {
        tp__free(w->field);
        tp__free(w->sid);
        tp__free(w->tenant);
        tp__free(w);
    }
}

static void
wsub_add(tp_hub *hub, const char *field, const char *sid, const char *tenant, tp_access access)
{
    wsub_drop(hub, field);
    wsub *w = tp__calloc(1, sizeof *w);
    if (w == NULL || (w->field = tp__strdup(field)) == NULL || (w->sid = tp__strdup(sid)) == NULL ||
        (w->tenant = tp__strdup(tenant)) == NULL ||
        tp__map_put(&hub->cat->subs, w->field, w) != 0) {
        if (w != NULL) {
            tp__free(w->field);
            tp__free(w->sid);
            tp__free(w->tenant);
        }
        tp__free(w);
        return;
    }
    w->access = access;
}

/* The waiting subscriptions of a shared model that just arrived. */
static void
subs_apply(tp_hub *hub, const char *sid)
{
    struct tp__catalog *c = hub->cat;
    tp__vec found = {0};
    void *v;
    for (size_t it = 0; tp__map_next(&c->subs, &it, NULL, &v);)
        if (strcmp(((wsub *)v)->sid, sid) == 0)
            (void)tp__vec_push(&found, v);
    for (size_t i = 0; i < found.len; i++) {
        wsub *w = found.items[i];
        tp_hub_subscribe(hub, w->tenant, w->sid, w->access);
        wsub_drop(hub, w->field);
    }
    tp__vec_free(&found);
}

/* Makes the hub hold what the item says (body NULL: that it is gone). */
static void
apply_item(tp_hub *hub, const char *field, const json_t *body)
{
    json_error_t je;
    json_t *f = json_loads(field, 0, &je);
    const char *kind = json_string_value(json_array_get(f, 0));
    const char *a = json_string_value(json_array_get(f, 1));
    const char *b = json_string_value(json_array_get(f, 2));
    if (kind == NULL || a == NULL || !tp__valid_key(a) || (b != NULL && !tp__valid_key(b))) {
        json_decref(f);
        return;
    }
    tp__names *names = tp__names_of_hub(hub);
    if (kind[0] == 'n' && body != NULL && names != NULL) {
        if (tp__names_get(names, a) == NULL) {
            char *text = tp__json_dumps(body, JSON_COMPACT);
            tp_error err = {0, ""};
            tp_schema *s = text ? tp_schema_new(text, &err) : NULL;
            if (s != NULL)
                (void)tp__names_add(names, a, s);
            else
                tp__log(&hub->log, TP_LOG_WARN, "cluster: the catalog's schema %s is refused: %s",
                        a, err.message);
            tp_schema_free(s);
            tp__free(text);
        }
    } else if ((kind[0] == 'm' && b != NULL) || (kind[0] == 's' && b == NULL)) {
        int shared = kind[0] == 's';
        const char *owner = shared ? "" : a, *id = shared ? a : b;
        tp__model *m = find_model(hub, shared, owner, id);
        const char *sname = json_string_value(json_object_get(body, "schema"));
        const char *mname = json_string_value(json_object_get(body, "merge"));
        const tp_schema *schema = sname ? tp__names_get(hub->snames, sname) : NULL;
        int same = 0;
        if (m != NULL && schema != NULL)
            same = strcmp(tp__schema_key(m->schema), tp__schema_key(schema)) == 0 &&
                   (!shared || (mname != NULL && strcmp(merge_name(m), mname) == 0));
        if (m != NULL && !same) {
            if (shared)
                tp_hub_unshare(hub, id);
            else
                tp_session_delete(m->owner, id);
        }
        if (body == NULL || same) {
            pend_drop(hub, field);
        } else if (schema == NULL) {
            tp__log(&hub->log, TP_LOG_WARN,
                    "cluster: the catalog's model %s/%s names a schema this node does not know",
                    owner, id);
        } else {
            pend_add(hub, field, shared, owner, id, sname, mname);
        }
    } else if (kind[0] == 'u' && b != NULL) {
        const char *acc = json_string_value(json_object_get(body, "access"));
        tp__model *m = tp__map_get(&hub->shared, a);
        tp_session *s = tp__map_get(&hub->tenants, b);
        tp_access access = acc && strcmp(acc, "write") == 0 ? TP_WRITE : TP_READ;
        if (body == NULL || acc == NULL) {
            wsub_drop(hub, field);
            if (s != NULL && tp__session_sub(s, a) != NULL)
                tp_hub_unsubscribe(hub, b, a);
        } else if (m != NULL) {
            wsub_drop(hub, field);
            tp_hub_subscribe(hub, b, a, access);
        } else {
            wsub_add(hub, field, a, b, access); /* made when the model arrives */
        }
    }
    json_decref(f);
}

/* Applies a published op. */
static void
apply_op(tp_hub *hub, const char *text, size_t len)
{
    json_error_t je;
    json_t *op = json_loadb(text, len, 0, &je);
    json_t *items = json_object_get(op, "items");
    size_t i;
    json_t *it;
    hub->cat_applying++;
    /* Closed first, as on the node that made the change: what follows
     * (removed, ...) is not for them. */
    json_t *close = json_object_get(op, "close");
    const char *t = json_string_value(json_array_get(close, 0));
    int code = (int)json_integer_value(json_array_get(close, 1));
    tp_session *cs = t != NULL ? tp__map_get(&hub->tenants, t) : NULL;
    if (cs != NULL && (code == 4403 || code == 4404))
        tp__session_close(cs, code);
    json_array_foreach(items, i, it)
    {
        json_t *f = json_array_get(it, 0);
        json_t *b = json_array_get(it, 1);
        char *field = json_is_array(f) ? tp__json_dumps(f, JSON_COMPACT) : NULL;
        if (field != NULL)
            apply_item(hub, field, json_is_object(b) ? b : NULL);
        tp__free(field);
    }
    hub->cat_applying--;
    json_decref(op);
}

void
tp__order_catalog_message(tp_hub *hub, int64_t version, const char *op, size_t len)
{
    struct tp__catalog *c = hub->cat;
    if (c == NULL)
        return;
    if (version > c->seen)
        c->seen = version;
    tp__log(&hub->log, TP_LOG_DEBUG, "cluster: catalog version=%lld (holding %lld)%s",
            (long long)version, (long long)c->version, c->loading ? " loading" : "");
    if (!c->loaded || c->loading || version <= c->version)
        return; /* the load in flight covers it, or the node has it */
    if (version != c->version + 1) {
        c->need_load = 1; /* a gap */
        if (c->head == NULL)
            load(hub);
        return;
    }
    c->version = version;
    apply_op(hub, op, len);
    bars_check(hub);
}

/* ---- Loading ---- */

/* Every item the hub holds (the seed, and what a load compares). */
static void
collect(tp_hub *hub, cat_item **out, size_t *n)
{
    struct tp__catalog *c = hub->cat;
    size_t saved_n = c->bn, saved_cap = c->bcap;
    cat_item *saved = c->batch;
    c->batch = NULL;
    c->bn = c->bcap = 0;
    for (size_t i = 0; i < tp__names_count(hub->snames); i++) {
        const char *name;
        const tp_schema *s = tp__names_at(hub->snames, i, &name);
        batch_add(hub, field_text('n', name, NULL),
                  tp__json_dumps(tp__schema_doc(s), JSON_COMPACT | JSON_SORT_KEYS));
    }
    void *v;
    const char *key;
    for (size_t it = 0; tp__map_next(&hub->shared, &it, &key, &v);)
        batch_add(hub, field_text('s', key, NULL), model_body(hub, v));
    for (size_t it = 0; tp__map_next(&hub->tenants, &it, NULL, &v);) {
        tp_session *s = v;
        void *mv;
        const char *id;
        for (size_t jt = 0; tp__map_next(&s->models, &jt, &id, &mv);)
            batch_add(hub, field_text('m', s->tenant, id), model_body(hub, mv));
        for (size_t jt = 0; tp__map_next(&s->subs, &jt, &id, &mv);) {
            json_t *o = json_pack("{s:s}", "access", access_name(((tp__sub *)mv)->access));
            batch_add(hub, field_text('u', id, s->tenant),
                      o ? tp__json_dumps(o, JSON_COMPACT) : NULL);
            json_decref(o);
        }
    }
    /* Items without a body (a schema without a name) are not the
     * catalog's: left out. */
    size_t k = 0;
    for (size_t i = 0; i < c->bn; i++) {
        if (c->batch[i].body != NULL)
            c->batch[k++] = c->batch[i];
        else
            tp__free(c->batch[i].field);
    }
    *out = c->batch;
    *n = k;
    c->batch = saved;
    c->bn = saved_n;
    c->bcap = saved_cap;
}

static void
items_free(cat_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tp__free(items[i].field);
        tp__free(items[i].body);
    }
    tp__free(items);
}

/* A barrier: its ticket ends once the node applied the catalog's version
 * target (-1: the version could not be asked: what the node holds answers). */
typedef struct bar {
    uint64_t ticket;
    int64_t target, since;
} bar;

/* Barriers the node reached end. */
static void
bars_check(tp_hub *hub)
{
    struct tp__catalog *c = hub->cat;
    size_t k = 0;
    for (size_t i = 0; i < c->nbars; i++) {
        bar *b = &c->bars[i];
        if (b->target < 0)
            tp__ticket_end(hub, b->ticket, TP_EINTERNAL, BAR_AWAY);
        else if (c->loaded && !c->loading && c->version >= b->target && c->unanswered == 0 &&
                 c->head == NULL)
            tp__ticket_end(hub, b->ticket, TP_OK, NULL);
        else
            c->bars[k++] = *b;
    }
    c->nbars = k;
}

static void
ask_version(tp_hub *hub)
{
    struct tp__catalog *c = hub->cat;
    if (c->asking || c->bar_new.len == 0)
        return;
    tp_error err = {0, ""};
    if (hub->order->catalog_version == NULL ||
        hub->order->catalog_version(hub->order_be, &err) != TP_OK) {
        /* The log cannot be asked: the caller decides (a read answers from
         * what the node holds, a change is refused). */
        for (size_t i = 0; i < c->bar_new.len; i++)
            tp__ticket_end(hub, (uintptr_t)c->bar_new.items[i], TP_EINTERNAL, BAR_AWAY);
        c->bar_new.len = 0;
        return;
    }
    c->asking = 1;
    for (size_t i = 0; i < c->bar_new.len; i++)
        if (tp__vec_push(&c->bar_asked, c->bar_new.items[i]) != 0)
            tp__ticket_end(hub, (uintptr_t)c->bar_new.items[i], TP_OK, NULL);
    c->bar_new.len = 0;
}

void
tp__order_catalog_version(tp_hub *hub, int64_t version, const tp_error *err)
{
    struct tp__catalog *c = hub->cat;
    if (c == NULL || !c->asking)
        return;
    c->asking = 0;
    int64_t now = tp__hub_now(hub);
    for (size_t i = 0; i < c->bar_asked.len; i++) {
        uint64_t t = (uintptr_t)c->bar_asked.items[i];
        if (c->nbars == c->capbars) {
            size_t cap = c->capbars ? c->capbars * 2 : 8;
            bar *p = tp__realloc(c->bars, cap * sizeof *p);
            if (p == NULL) {
                tp__ticket_end(hub, t, TP_OK, NULL);
                continue;
            }
            c->bars = p;
            c->capbars = cap;
        }
        c->bars[c->nbars++] = (bar){t, err != NULL ? -1 : version, now};
    }
    c->bar_asked.len = 0;
    if (version > c->seen)
        c->seen = version;
    bars_check(hub);
    ask_version(hub); /* barriers opened while this one was asked */
}

static void
load(tp_hub *hub)
{
    struct tp__catalog *c = hub->cat;
    if (c->loading)
        return;
    tp_error err = {0, ""};
    if (hub->order->catalog_load(hub->order_be, &err) == TP_OK) {
        c->loading = 1;
        c->need_load = 0;
    } else {
        c->need_load = 1; /* tried again at the tick */
    }
}

/* The rank in which a load applies items: schemas, models, subscriptions. */
static int
rank(const char *field)
{
    return field[2] == 'n' ? 0 : field[2] == 'u' ? 2 : 1;
}

void
tp__order_catalog_loaded(tp_hub *hub, int64_t version, const tp__order_item *items, size_t n,
                         const tp_error *err)
{
    struct tp__catalog *c = hub->cat;
    if (c == NULL || !c->loading)
        return;
    c->loading = 0;
    if (err != NULL) {
        tp__log(&hub->log, TP_LOG_WARN, "cluster: the catalog cannot be read: %s", err->message);
        c->need_load = 1;
        bars_check(hub);
        return;
    }
    if (version == 0 && !c->loaded) {
        /* An empty catalog: this node seeds it with its config, if it is
         * still empty when the put runs. */
        cat_item *mine;
        size_t k;
        collect(hub, &mine, &k);
        c->loaded = 1;
        c->version = 0;
        queue_op(hub, mine, k, NULL, 0, 0);
        return;
    }
    int first = !c->loaded;
    c->loaded = 1;
    c->version = version;
    tp__map there;
    tp__map_init(&there, hub->seed ^ 0x7f4a7c15U);
    char **keys = tp__calloc(n + 1, sizeof *keys);
    hub->cat_applying++;
    for (int r = 0; r < 3; r++) {
        for (size_t i = 0; i < n; i++) {
            char *field = tp__malloc(items[i].field_len + 1);
            if (field == NULL)
                continue;
            memcpy(field, items[i].field, items[i].field_len);
            field[items[i].field_len] = '\0';
            if (rank(field) == r && items[i].body != NULL) {
                json_error_t je;
                json_t *b = json_loadb(items[i].body, items[i].body_len, 0, &je);
                apply_item(hub, field, b);
                json_decref(b);
            }
            if (r == 0 && keys != NULL && tp__map_put(&there, field, field) == 0)
                keys[i] = field;
            else
                tp__free(field);
        }
    }
    /* What the hub holds and the catalog does not: gone (deleted through
     * another node, or a config's model the catalog no longer has). */
    cat_item *mine;
    size_t k;
    collect(hub, &mine, &k);
    for (size_t i = 0; i < k; i++) {
        if (keys != NULL && tp__map_get(&there, mine[i].field) == NULL && mine[i].field[2] != 'n') {
            if (first)
                tp__log(&hub->log, TP_LOG_WARN,
                        "cluster: %s is in this node's config, not in the catalog: left out",
                        mine[i].field);
            apply_item(hub, mine[i].field, NULL);
        }
    }
    items_free(mine, k);
    hub->cat_applying--;
    for (size_t i = 0; keys != NULL && i < n; i++)
        tp__free(keys[i]);
    tp__free(keys);
    tp__map_free(&there);
    bars_check(hub);
    if (c->seen > c->version)
        load(hub); /* messages came while it loaded */
}

/* ---- Models made from the log ---- */

void
tp__catalog_read_done(tp_hub *hub, const char *owner, const char *id, const tp__order_read *res,
                      const tp_error *err)
{
    struct tp__catalog *c = hub->cat;
    if (c == NULL)
        return;
    char *field = owner[0] ? field_text('m', owner, id) : field_text('s', id, NULL);
    pend *p = field ? tp__map_get(&c->pending, field) : NULL;
    if (p == NULL || !p->reading) {
        tp__free(field);
        return;
    }
    p->reading = 0;
    tp__log(&hub->log, TP_LOG_DEBUG, "cluster: catalog: %s/%s read: %s", owner, id,
            err != NULL                        ? err->message
            : res->state == TP__ORDER_SNAPSHOT ? "a record"
                                               : "no record yet");
    if (!p->answered) {
        p->answered = 1;
        hub->cat->unanswered--;
        bars_check(hub);
    }
    if (err != NULL || res->state != TP__ORDER_SNAPSHOT) {
        /* Not in the log yet (its node appends it on its own), or the log
         * cannot be read: tried again at the tick. */
        tp__free(field);
        return;
    }
    json_error_t je;
    json_t *rec = json_loadb(res->record, res->record_len, 0, &je);
    char *value = tp__json_dumps(json_object_get(rec, "value"), JSON_COMPACT);
    json_decref(rec);
    tp_error aerr = {0, ""};
    int ok = 0;
    const tp_schema *schema = tp__names_get(hub->snames, p->schema);
    const tp_merge *merge = tp__merge_named(hub, p->merge);
    if (value != NULL && schema != NULL && merge != NULL) {
        hub->cat_applying++;
        hub->adopt_record = res->record;
        hub->adopt_len = res->record_len;
        hub->adopt_rev = res->rev;
        if (p->shared)
            ok = tp_hub_share_as(hub, id, schema, value, merge, &aerr) != NULL;
        else
            ok = tp_session_host_as(tp__hub_session(hub, owner, 0), id, schema, value, &aerr) !=
                 NULL;
        hub->adopt_record = NULL;
        if (ok && p->shared)
            subs_apply(hub, id);
        hub->cat_applying--;
    }
    tp__free(value);
    if (!ok && aerr.code != 0)
        tp__log(&hub->log, TP_LOG_WARN, "cluster: the catalog's model %s/%s cannot be made: %s",
                owner, id, aerr.message);
    pend_drop(hub, field);
    tp__free(field);
}

/* ---- Life ---- */

int
tp__catalog_start(tp_hub *hub, tp_error *err)
{
    if (hub->cat != NULL || hub->order->catalog_put == NULL || hub->order->catalog_load == NULL)
        return TP_OK; /* a backend without a catalog: every node's config is its catalog */
    struct tp__catalog *c = tp__calloc(1, sizeof *c);
    if (c == NULL)
        return tp__error_set(err, TP_ENOMEM, "out of memory");
    tp__map_init(&c->pending, hub->seed ^ 0x2545f491U);
    tp__map_init(&c->subs, hub->seed ^ 0x9e3779b9U);
    hub->cat = c;
    load(hub);
    return TP_OK;
}

uint64_t
tp__order_barrier(tp_hub *hub)
{
    struct tp__catalog *c = hub->cat;
    if (c == NULL || !c->loaded)
        return 0;
    uint64_t t = tp__ticket_open(hub);
    if (t == 0 || tp__vec_push(&c->bar_new, (void *)(uintptr_t)t) != 0) {
        tp__ticket_end(hub, t, TP_OK, NULL);
        return 0;
    }
    ask_version(hub);
    return t;
}

int
tp__catalog_unsynced(const tp_hub *hub)
{
    return hub->cat != NULL && (!hub->cat->loaded || hub->cat->unanswered > 0);
}

void
tp__catalog_resync(tp_hub *hub)
{
    struct tp__catalog *c = hub->cat;
    if (c == NULL)
        return;
    c->need_load = 1;
    put_next(hub);
    if (c->head == NULL)
        load(hub);
}

void
tp__catalog_tick(tp_hub *hub)
{
    struct tp__catalog *c = hub->cat;
    if (c == NULL)
        return;
    int64_t now = tp__hub_now(hub);
    /* Changes that wait too long: their tickets fail (the host API answers
     * 503), the changes stay queued and are put when the log is back. */
    for (cat_op *o = c->head; o != NULL; o = o->next) {
        if (o->ticket != 0 && now - o->at >= (int64_t)hub->ord_wait_ms) {
            tp__ticket_end(hub, o->ticket, TP_EINTERNAL,
                           "cluster: the shared log cannot be reached; the change is made "
                           "on this node and announced to the others when it can be");
            o->ticket = 0;
        }
    }
    if (!c->busy && c->head != NULL && now - c->tried_at >= 1000)
        put_next(hub);
    /* A barrier the messages do not bring the node to within a second
     * loads the catalog (a message lost); past the wait, what the node
     * holds answers. */
    for (size_t i = 0; i < c->nbars; i++) {
        if (now - c->bars[i].since >= (int64_t)hub->ord_wait_ms)
            c->bars[i].target = -1;
        else if (now - c->bars[i].since >= 1000 && c->version < c->bars[i].target)
            c->need_load = 1;
    }
    bars_check(hub);
    if (c->head == NULL && (c->need_load || !c->loaded) && !c->loading)
        load(hub);
    tp__vec due = {0};
    void *v;
    for (size_t it = 0; tp__map_next(&c->pending, &it, NULL, &v);) {
        pend *p = v;
        if (!p->reading && now >= p->retry_at)
            (void)tp__vec_push(&due, p);
    }
    for (size_t i = 0; i < due.len; i++)
        adopt_read(hub, due.items[i]);
    tp__vec_free(&due);
}

void
tp__catalog_free(tp_hub *hub)
{
    struct tp__catalog *c = hub->cat;
    if (c == NULL)
        return;
    while (c->head != NULL) {
        cat_op *o = c->head;
        c->head = o->next;
        op_free(o);
    }
    void *v;
    for (size_t it = 0; tp__map_next(&c->pending, &it, NULL, &v);)
        pend_free(v);
    tp__map_free(&c->pending);
    for (size_t it = 0; tp__map_next(&c->subs, &it, NULL, &v);) {
        wsub *w = v;
        tp__free(w->field);
        tp__free(w->sid);
        tp__free(w->tenant);
        tp__free(w);
    }
    tp__map_free(&c->subs);
    items_free(c->batch, c->bn);
    tp__vec_free(&c->bar_new);
    tp__vec_free(&c->bar_asked);
    tp__free(c->bars);
    tp__free(c);
    hub->cat = NULL;
}
