/*
 * The shared order (src/core/order.c) against a log kept in memory by this
 * test: several hubs, each with its own backend over one log, as nodes over
 * one Redis. The log does what order.h asks of a backend (an append is
 * atomic and conditional on the rev; a read returns entries or the
 * snapshot; a follower gets every append), and its answers and messages
 * reach each node later, in an order the test chooses: per node, answers in
 * call order and messages in publication order (two connections), the two
 * streams interleaved at random, as Redis's command and pub/sub connections
 * are. The real backend (src/daemon/cluster.c on src/cluster/clog.c) has
 * its own tests against redis-server.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hostops.h"
#include "core/hubapi.h"
#include "core/order.h"
#include "support.h"
#include "transports.h"

#define DOC                                                                                        \
    "{\"title\":\"Doc\",\"type\":\"object\",\"properties\":{\"title\":{\"type\":\"string\"},"      \
    "\"n\":{\"type\":\"integer\"},\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"integer\"},"      \
    "\"c\":{\"type\":\"integer\"}},\"required\":[\"title\"]}"

#define NODES 3
#define MAXM 16
#define MAXQ 4096

/* ---- The log ---- */

typedef struct lentry {
    int64_t rev;
    char kind;
    char *bytes;
    size_t len;
} lentry;

typedef struct lmodel {
    char owner[32], id[32];
    int64_t rev;
    char *record;
    size_t record_len;
    lentry *entries;
    size_t n;
} lmodel;

/* Something a node gets later: an answer or a message. */
typedef struct delivery {
    int kind; /* 'a' appended, 'r' read, 'm' message, 'o' outcomes, 'c' catalog put, 'l' catalog
                 load, 'k' catalog message */
    char *op; /* 'k' */
    size_t op_len;
    tp__order_item *citems; /* 'l' (fields and bodies owned) */
    size_t n_citems;
    int64_t version;
    tp__order_outcome *items;
    tp__order_outcomes out;
    tp__order_append req; /* 'x': an append the log runs when it is delivered */
    char *req_entry, *req_record, *req_tenant, *req_client, *req_outcome;
    char owner[32], id[32];
    int conflict, failed;
    int64_t rev;
    char *was; /* conflict 2: the outcome recorded */
    size_t was_len;
    size_t dup; /* a batch's conflict 2: the change whose outcome was recorded */
    tp__order_read res;
    tp__order_entry *entries; /* res.entries or the message's one entry */
    size_t n;
    char *record;
} delivery;

typedef struct node {
    struct flog *log;
    tp_hub *hub;
    int follows[MAXM]; /* by the log's model index */
    delivery answers[MAXQ], messages[MAXQ];
    size_t a_head, a_len, m_head, m_len;
    int fail_calls;    /* appends and reads fail at the call */
    int fail_answers;  /* appends run, and their answers say the link failed */
    int fail_outcomes; /* outcome lookups are answered with an error */
    int defer;         /* appends run in the log only when their answer is delivered */
    int hide_outcomes; /* outcome lookups find nothing (the client's record lacks them) */
    int give_was;      /* a conflict 2 carries the outcome the log recorded */
    unsigned batches;  /* appends of several changes */
    tp__host *host;    /* the host API's operations on this node (catalog tests) */
} node;

/* A client's outcomes: (tenant, client, ref) -> bytes. */
typedef struct loutcome {
    char tenant[32], client[32];
    int64_t ref;
    char *bytes;
    size_t len;
} loutcome;

/* The catalog: fields and bodies (NULL: free slot), its version. */
#define MAXC 64
typedef struct citem {
    char *field, *body;
} citem;

typedef struct flog {
    citem catalog[MAXC];
    int64_t version;
    lmodel models[MAXM];
    size_t n;
    loutcome outcomes[MAXQ];
    size_t n_outcomes;
    node nodes[NODES];
    size_t keep;
    uint64_t appends;
} flog;

static flog L;

static lmodel *
lfind(const char *owner, const char *id, int make)
{
    for (size_t i = 0; i < L.n; i++)
        if (strcmp(L.models[i].owner, owner) == 0 && strcmp(L.models[i].id, id) == 0)
            return &L.models[i];
    if (!make)
        return NULL;
    cr_assert(L.n < MAXM);
    lmodel *m = &L.models[L.n++];
    snprintf(m->owner, sizeof m->owner, "%s", owner);
    snprintf(m->id, sizeof m->id, "%s", id);
    return m;
}

static char *
dup_bytes(const char *p, size_t n)
{
    char *d = malloc(n + 1);
    memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

static delivery *
push(node *nd, int answer)
{
    delivery *q = answer ? nd->answers : nd->messages;
    size_t *head = answer ? &nd->a_head : &nd->m_head, *len = answer ? &nd->a_len : &nd->m_len;
    cr_assert(*len < MAXQ);
    delivery *d = &q[(*head + (*len)++) % MAXQ];
    memset(d, 0, sizeof *d);
    return d;
}

static void
name(delivery *d, const char *owner, const char *id)
{
    snprintf(d->owner, sizeof d->owner, "%s", owner);
    snprintf(d->id, sizeof d->id, "%s", id);
}

/* Runs an append in the log, as Redis runs the script: its answer in d. */
static void
exec_append(const tp__order_append *a, delivery *d)
{
    lmodel *m = lfind(a->owner, a->id, 1);
    /* The writer's ref has an outcome already: the same write, appended before. */
    for (size_t i = 0; a->outcome != NULL && i < L.n_outcomes; i++)
        if (strcmp(L.outcomes[i].tenant, a->tenant) == 0 &&
            strcmp(L.outcomes[i].client, a->client) == 0 && L.outcomes[i].ref == a->ref) {
            d->conflict = 2;
            d->rev = m->rev;
            d->was = dup_bytes(L.outcomes[i].bytes, L.outcomes[i].len);
            d->was_len = L.outcomes[i].len;
            return;
        }
    if (m->rev != a->base_rev) {
        d->conflict = 1;
        d->rev = m->rev;
        return;
    }
    L.appends++;
    m->rev = a->base_rev + 1;
    free(m->record);
    m->record = dup_bytes(a->record, a->record_len);
    m->record_len = a->record_len;
    m->entries = realloc(m->entries, (m->n + 1) * sizeof *m->entries);
    m->entries[m->n++] = (lentry){m->rev, 'a', dup_bytes(a->entry, a->entry_len), a->entry_len};
    d->rev = m->rev;
    if (a->outcome != NULL) {
        cr_assert(L.n_outcomes < MAXQ);
        loutcome *o = &L.outcomes[L.n_outcomes++];
        snprintf(o->tenant, sizeof o->tenant, "%s", a->tenant);
        snprintf(o->client, sizeof o->client, "%s", a->client);
        o->ref = a->ref;
        o->bytes = dup_bytes(a->outcome, a->outcome_len);
        o->len = a->outcome_len;
    }
    /* Published to every follower, this node included. */
    size_t mi = (size_t)(m - L.models);
    for (int k = 0; k < NODES; k++) {
        node *f = &L.nodes[k];
        if (f->hub == NULL || !f->follows[mi])
            continue;
        delivery *msg = push(f, 0);
        msg->kind = 'm';
        name(msg, a->owner, a->id);
        msg->entries = malloc(sizeof *msg->entries);
        msg->entries[0] =
            (tp__order_entry){m->rev, 'a', dup_bytes(a->entry, a->entry_len), a->entry_len};
        msg->n = 1;
    }
}

static int
be_append(void *be, const tp__order_append *a, tp_error *err)
{
    node *nd = be;
    if (nd->fail_calls) {
        err->code = TP_ECLOSED;
        snprintf(err->message, sizeof err->message, "the link is down");
        return TP_ECLOSED;
    }
    delivery *d = push(nd, 1);
    d->kind = 'a';
    name(d, a->owner, a->id);
    d->failed = nd->fail_answers;
    if (!nd->defer) {
        exec_append(a, d);
        return TP_OK;
    }
    /* Runs when its answer is delivered: the log gets it late. */
    d->kind = 'x';
    d->req = *a;
    d->req.owner = d->owner;
    d->req.id = d->id;
    d->req.entry = d->req_entry = dup_bytes(a->entry, a->entry_len);
    d->req.record = d->req_record = dup_bytes(a->record, a->record_len);
    d->req.tenant = d->req_tenant = a->tenant ? dup_bytes(a->tenant, strlen(a->tenant)) : NULL;
    d->req.client = d->req_client = a->client ? dup_bytes(a->client, strlen(a->client)) : NULL;
    d->req.outcome = d->req_outcome = a->outcome ? dup_bytes(a->outcome, a->outcome_len) : NULL;
    return TP_OK;
}

static int
be_read(void *be, const char *owner, const char *id, int64_t after, tp_error *err)
{
    node *nd = be;
    if (nd->fail_calls) {
        err->code = TP_ECLOSED;
        snprintf(err->message, sizeof err->message, "the link is down");
        return TP_ECLOSED;
    }
    lmodel *m = lfind(owner, id, 0);
    delivery *d = push(nd, 1);
    d->kind = 'r';
    name(d, owner, id);
    if (m == NULL || m->rev == 0) {
        d->res.state = TP__ORDER_ABSENT;
        return TP_OK;
    }
    d->res.rev = m->rev;
    if (m->record == NULL) {
        d->res.state = TP__ORDER_DELETED;
        return TP_OK;
    }
    /* The log keeps the newest `keep` entries: older readers get the snapshot. */
    size_t kept = m->n < L.keep ? m->n : L.keep;
    if (after == 0 || after > m->rev || m->rev - after > (int64_t)kept) {
        d->res.state = TP__ORDER_SNAPSHOT;
        d->record = dup_bytes(m->record, m->record_len);
        d->res.record = d->record;
        d->res.record_len = m->record_len;
        return TP_OK;
    }
    d->res.state = TP__ORDER_ENTRIES;
    d->n = (size_t)(m->rev - after);
    d->entries = calloc(d->n + 1, sizeof *d->entries);
    for (size_t i = 0; i < d->n; i++) {
        const lentry *e = &m->entries[m->n - d->n + i];
        d->entries[i] = (tp__order_entry){e->rev, e->kind, dup_bytes(e->bytes, e->len), e->len};
    }
    d->res.entries = d->entries;
    d->res.n = d->n;
    return TP_OK;
}

static int
be_follow(void *be, const char *owner, const char *id, int on, tp_error *err)
{
    (void)err;
    node *nd = be;
    lmodel *m = lfind(owner, id, 1);
    nd->follows[m - L.models] = on;
    return TP_OK;
}

static int
be_outcomes(void *be, const char *tenant, const char *client, tp_error *err)
{
    (void)err;
    node *nd = be;
    delivery *d = push(nd, 1);
    d->kind = 'o';
    name(d, tenant, client);
    d->failed = nd->fail_outcomes;
    d->items = calloc(L.n_outcomes + 1, sizeof *d->items);
    for (size_t i = 0; i < L.n_outcomes && !nd->hide_outcomes; i++) {
        const loutcome *o = &L.outcomes[i];
        if (strcmp(o->tenant, tenant) != 0 || strcmp(o->client, client) != 0)
            continue;
        d->items[d->out.n++] = (tp__order_outcome){o->ref, dup_bytes(o->bytes, o->len), o->len};
        if (o->ref > d->out.highest)
            d->out.highest = o->ref;
    }
    d->out.items = d->items;
    return TP_OK;
}

/* Several changes of one model at once (the order's batches): atomic, each
 * as an append at the rev the one before it left. */
static int
be_append_many(void *be, const tp__order_append *a, size_t n, tp_error *err)
{
    node *nd = be;
    if (nd->fail_calls)
        return tp__error_set(err, TP_ECLOSED, "the link is down");
    lmodel *m = lfind(a[0].owner, a[0].id, 1);
    delivery *d = push(nd, 1);
    d->kind = 'a';
    name(d, a[0].owner, a[0].id);
    d->failed = nd->fail_answers;
    nd->batches++;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; a[i].outcome != NULL && j < L.n_outcomes; j++)
            if (strcmp(L.outcomes[j].tenant, a[i].tenant) == 0 &&
                strcmp(L.outcomes[j].client, a[i].client) == 0 && L.outcomes[j].ref == a[i].ref) {
                d->conflict = 2;
                d->dup = i;
                d->rev = m->rev;
                d->was = dup_bytes(L.outcomes[j].bytes, L.outcomes[j].len);
                d->was_len = L.outcomes[j].len;
                return TP_OK;
            }
    if (m->rev != a[0].base_rev) {
        d->conflict = 1;
        d->rev = m->rev;
        return TP_OK;
    }
    for (size_t i = 0; i < n; i++) {
        tp__order_append one = a[i];
        one.base_rev = m->rev;
        delivery scratch = {0};
        exec_append(&one, &scratch);
        cr_assert_eq(scratch.conflict, 0);
    }
    d->rev = m->rev;
    return TP_OK;
}

static const tp__order_ops ops = {.append = be_append,
                                  .append_many = be_append_many,
                                  .read = be_read,
                                  .follow = be_follow,
                                  .outcomes = be_outcomes};

/* ---- The catalog and deletions (catalog tests) ---- */

/* A call made while the node's link is down fails at once. */
static int
link_down(const node *nd, tp_error *err)
{
    if (nd->fail_calls)
        tp__error_set(err, TP_ECLOSED, "the link is down");
    return nd->fail_calls;
}

static int
be_remove(void *be, const char *owner, const char *id, int64_t base_rev, tp_error *err)
{
    node *nd = be;
    if (link_down(nd, err))
        return TP_ECLOSED;
    lmodel *m = lfind(owner, id, 1);
    delivery *d = push(nd, 1);
    d->kind = 'a';
    name(d, owner, id);
    if (m->rev != base_rev) {
        d->conflict = 1;
        d->rev = m->rev;
        return TP_OK;
    }
    m->rev = base_rev + 1;
    free(m->record);
    m->record = NULL;
    m->record_len = 0;
    for (size_t j = 0; j < m->n; j++)
        free(m->entries[j].bytes);
    m->n = 0;
    d->rev = m->rev;
    /* The log keeps the tombstone alone, and publishes it. */
    m->entries = realloc(m->entries, sizeof *m->entries);
    m->entries[m->n++] = (lentry){m->rev, 'd', dup_bytes("", 0), 0};
    size_t mi = (size_t)(m - L.models);
    for (int k = 0; k < NODES; k++) {
        node *f = &L.nodes[k];
        if (f->hub == NULL || !f->follows[mi])
            continue;
        delivery *msg = push(f, 0);
        msg->kind = 'm';
        name(msg, owner, id);
        msg->entries = malloc(sizeof *msg->entries);
        msg->entries[0] = (tp__order_entry){m->rev, 'd', dup_bytes("", 0), 0};
        msg->n = 1;
    }
    return TP_OK;
}

static citem *
cfind(const char *field, size_t len)
{
    for (size_t i = 0; i < MAXC; i++)
        if (L.catalog[i].field != NULL && strlen(L.catalog[i].field) == len &&
            memcmp(L.catalog[i].field, field, len) == 0)
            return &L.catalog[i];
    return NULL;
}

static int
be_catalog_put(void *be, int64_t expect, const char *op, size_t op_len, const tp__order_item *items,
               size_t n, tp_error *err)
{
    node *nd = be;
    if (link_down(nd, err))
        return TP_ECLOSED;
    delivery *d = push(nd, 1);
    d->kind = 'c';
    if (expect >= 0 && expect != L.version) {
        d->conflict = 1;
        d->version = L.version;
        return TP_OK;
    }
    for (size_t i = 0; i < n; i++) {
        citem *c = cfind(items[i].field, items[i].field_len);
        if (c == NULL && items[i].body != NULL) {
            for (size_t j = 0; c == NULL && j < MAXC; j++)
                if (L.catalog[j].field == NULL)
                    c = &L.catalog[j];
            cr_assert_not_null(c);
            c->field = dup_bytes(items[i].field, items[i].field_len);
        }
        if (c == NULL)
            continue;
        free(c->body);
        c->body = items[i].body ? dup_bytes(items[i].body, items[i].body_len) : NULL;
        if (c->body == NULL) {
            free(c->field);
            c->field = NULL;
        }
    }
    d->version = ++L.version;
    for (int k = 0; k < NODES; k++) {
        if (L.nodes[k].hub == NULL)
            continue;
        delivery *msg = push(&L.nodes[k], 0);
        msg->kind = 'k';
        msg->version = L.version;
        msg->op = dup_bytes(op, op_len);
        msg->op_len = op_len;
    }
    return TP_OK;
}

static int
be_catalog_load(void *be, tp_error *err)
{
    node *nd = be;
    if (link_down(nd, err))
        return TP_ECLOSED;
    delivery *d = push(nd, 1);
    d->kind = 'l';
    d->version = L.version;
    d->citems = calloc(MAXC, sizeof *d->citems);
    for (size_t i = 0; i < MAXC; i++) {
        const citem *c = &L.catalog[i];
        if (c->field == NULL)
            continue;
        d->citems[d->n_citems++] =
            (tp__order_item){dup_bytes(c->field, strlen(c->field)), strlen(c->field),
                             dup_bytes(c->body, strlen(c->body)), strlen(c->body)};
    }
    return TP_OK;
}

static int
be_catalog_version(void *be, tp_error *err)
{
    node *nd = be;
    if (link_down(nd, err))
        return TP_ECLOSED;
    delivery *d = push(nd, 1);
    d->kind = 'v';
    d->version = L.version;
    return TP_OK;
}

static const tp__order_ops cat_ops = {.append = be_append,
                                      .append_many = be_append_many,
                                      .read = be_read,
                                      .follow = be_follow,
                                      .outcomes = be_outcomes,
                                      .remove = be_remove,
                                      .catalog_put = be_catalog_put,
                                      .catalog_load = be_catalog_load,
                                      .catalog_version = be_catalog_version};

static void
delivery_free(delivery *d)
{
    for (size_t i = 0; i < d->n; i++)
        free((char *)d->entries[i].entry);
    free(d->entries);
    free(d->record);
    for (size_t i = 0; d->items != NULL && i < d->out.n; i++)
        free((char *)d->items[i].bytes);
    free(d->items);
    free(d->req_entry);
    free(d->req_record);
    free(d->req_tenant);
    free(d->req_client);
    free(d->req_outcome);
    free(d->op);
    free(d->was);
    for (size_t i = 0; i < d->n_citems; i++) {
        free((char *)d->citems[i].field);
        free((char *)d->citems[i].body);
    }
    free(d->citems);
}

/* Delivers one thing to node k (an answer when answer, else a message). */
static int
deliver(int k, int answer)
{
    node *nd = &L.nodes[k];
    size_t *head = answer ? &nd->a_head : &nd->m_head, *len = answer ? &nd->a_len : &nd->m_len;
    if (*len == 0)
        return 0;
    delivery d = (answer ? nd->answers : nd->messages)[*head];
    *head = (*head + 1) % MAXQ;
    (*len)--;
    tp_error err = {TP_ECLOSED, "connection lost"};
    if (d.kind == 'x') {
        d.req.owner = d.owner;
        d.req.id = d.id;
        exec_append(&d.req, &d);
        d.kind = 'a';
    }
    if (d.kind == 'a')
        tp__order_appended_many(nd->hub, d.owner, d.id, d.conflict, d.rev, d.dup,
                                nd->give_was || d.dup > 0 ? d.was : NULL, d.was_len,
                                d.failed ? &err : NULL);
    else if (d.kind == 'r')
        tp__order_read_done(nd->hub, d.owner, d.id, &d.res, NULL);
    else if (d.kind == 'o')
        tp__order_outcomes_done(nd->hub, d.owner, d.id, &d.out, d.failed ? &err : NULL);
    else if (d.kind == 'c')
        tp__order_catalog_done(nd->hub, d.conflict, d.version, NULL);
    else if (d.kind == 'l')
        tp__order_catalog_loaded(nd->hub, d.version, d.citems, d.n_citems, NULL);
    else if (d.kind == 'k')
        tp__order_catalog_message(nd->hub, d.version, d.op, d.op_len);
    else if (d.kind == 'v')
        tp__order_catalog_version(nd->hub, d.version, NULL);
    else
        tp__order_message(nd->hub, d.owner, d.id, &d.entries[0]);
    delivery_free(&d);
    return 1;
}

/* Delivers one thing, chosen at random; returns 0 when nothing waits. */
static int
pump_one(void)
{
    int choices[2 * NODES], n = 0;
    for (int k = 0; k < NODES; k++) {
        if (L.nodes[k].a_len > 0)
            choices[n++] = 2 * k;
        if (L.nodes[k].m_len > 0)
            choices[n++] = 2 * k + 1;
    }
    if (n == 0)
        return 0;
    int c = choices[rand() % n];
    return deliver(c / 2, c % 2 == 0);
}

static void
pump_all(void)
{
    while (pump_one())
        ;
}

/* ---- Nodes ---- */

static int64_t now = 1700000000000;
static tp_schema *doc;

static tp_hub *
node_start(int k, const char *title)
{
    tp_hub_config cfg = {0};
    cfg.clock = tpt_clock;
    cfg.clock_user = &now;
    tp_hub *hub = tp_hub_new(&cfg, NULL);
    cr_assert_not_null(hub);
    char v[64];
    snprintf(v, sizeof v, "{\"title\":\"%s\"}", title);
    cr_assert_not_null(tp_session_host_as(tp_hub_tenant(hub, "alice"), "notes", doc, v, NULL));
    cr_assert_not_null(tp_hub_share_as(hub, "map", doc, v, &tp_lww_map_crdt, NULL));
    cr_assert_not_null(tp_hub_share_as(hub, "doc", doc, v, NULL, NULL));
    cr_assert_eq(tp_hub_subscribe(hub, "alice", "map", TP_WRITE), TP_OK);
    cr_assert_eq(tp_hub_subscribe(hub, "alice", "doc", TP_WRITE), TP_OK);
    cr_assert_eq(tp_hub_subscribe(hub, "bob", "map", TP_WRITE), TP_OK);
    cr_assert_eq(tp_hub_subscribe(hub, "bob", "doc", TP_WRITE), TP_OK);
    node *nd = &L.nodes[k];
    memset(nd, 0, sizeof *nd);
    nd->log = &L;
    nd->hub = hub;
    tp_error err = {0, ""};
    cr_assert_eq(tp__hub_set_order(hub, &ops, nd, &err), TP_OK, "%s", err.message);
    return hub;
}

static void
node_stop(int k)
{
    node *nd = &L.nodes[k];
    tp__host_free(nd->host);
    nd->host = NULL;
    tp_hub_free(nd->hub);
    nd->hub = NULL;
    while (nd->a_len > 0) {
        delivery_free(&nd->answers[nd->a_head]);
        nd->a_head = (nd->a_head + 1) % MAXQ;
        nd->a_len--;
    }
    while (nd->m_len > 0) {
        delivery_free(&nd->messages[nd->m_head]);
        nd->m_head = (nd->m_head + 1) % MAXQ;
        nd->m_len--;
    }
}

/* start_two starts nodes 0 and 1 with the same config and lets them settle. */
static void
start_two(void)
{
    node_start(0, "t");
    node_start(1, "t");
    pump_all();
}

/* as_client opens a connection of tenant on node k and names its client (a
 * ping carrying "client"), as a page does before it writes. */
static tp_conn *
as_client(int k, const char *tenant, const char *client)
{
    tp_conn *c = tp_conn_open(L.nodes[k].hub, tenant, 0, NULL);
    cr_assert_not_null(c);
    char ping[96];
    snprintf(ping, sizeof ping, "{\"type\":\"ping\",\"ref\":0,\"client\":\"%s\"}", client);
    cr_assert_eq(tpt_feed(c, ping), TP_OK);
    return c;
}

static void
setup(void)
{
    memset(&L, 0, sizeof L);
    L.keep = 64;
    doc = tp_schema_new(DOC, NULL);
    cr_assert_not_null(doc);
}

static void
teardown(void)
{
    for (int k = 0; k < NODES; k++)
        if (L.nodes[k].hub != NULL)
            node_stop(k);
    for (size_t i = 0; i < L.n; i++) {
        for (size_t j = 0; j < L.models[i].n; j++)
            free(L.models[i].entries[j].bytes);
        free(L.models[i].entries);
        free(L.models[i].record);
    }
    for (size_t i = 0; i < L.n_outcomes; i++)
        free(L.outcomes[i].bytes);
    for (size_t i = 0; i < MAXC; i++) {
        free(L.catalog[i].field);
        free(L.catalog[i].body);
    }
    tp_schema_free(doc);
}

TestSuite(order, .init = setup, .fini = teardown);

/* What a client saw of one model: the rev its messages brought it to. */
typedef struct view {
    int64_t rev;
    int gaps; /* a patch whose from was not the rev held */
} view;

/* Drains a connection: acks by ref into acked (rev, 0 when refused), the
 * model's view kept from snapshots and patches. */
static void
drain(tp_conn *c, const char *id, view *v, int64_t *acked, size_t nrefs, size_t *errors)
{
    json_t *msgs = tpt_drain(c);
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        const char *type = json_string_value(json_object_get(m, "type"));
        const char *mid = json_string_value(json_object_get(m, "id"));
        int64_t rev = json_integer_value(json_object_get(m, "rev"));
        if (strcmp(type, "ack") == 0 || strcmp(type, "error") == 0) {
            json_int_t ref = json_integer_value(json_object_get(m, "ref"));
            if (ref >= 1 && (size_t)ref <= nrefs && strcmp(type, "ack") == 0)
                acked[ref - 1] = rev;
            if (strcmp(type, "error") == 0 && errors != NULL)
                (*errors)++;
        }
        if (mid == NULL || strcmp(mid, id) != 0)
            continue;
        if (strcmp(type, "snapshot") == 0)
            v->rev = rev;
        else if (strcmp(type, "patch") == 0) {
            if (json_integer_value(json_object_get(m, "from")) != v->rev)
                v->gaps++;
            v->rev = rev;
        } else if (strcmp(type, "ack") == 0 && json_object_get(m, "from") != NULL) {
            /* A private write's own change: the ack stands for its patch. */
            if (json_integer_value(json_object_get(m, "from")) != v->rev)
                v->gaps++;
            v->rev = rev;
        }
    }
    json_decref(msgs);
}

/* a writes {"n": i} to (scope, id) with ref i, for i from 1 to n; pump: the log
 * answers each before the next. */
static void
write_n(tp_conn *a, const char *scope, const char *id, int n, int pump)
{
    for (int i = 1; i <= n; i++) {
        char w[160];
        snprintf(w, sizeof w,
                 "{\"type\":\"write\",\"ref\":%d,\"scope\":\"%s\",\"id\":\"%s\","
                 "\"patch\":{\"n\":%d}}",
                 i, scope, id, i);
        cr_assert_eq(tpt_feed(a, w), TP_OK);
        if (pump)
            pump_all();
    }
}

/* Two nodes started and synced, alice connected to node 0 and bob to node 1,
 * their first messages drained. */
static void
two_nodes(tp_conn **a, tp_conn **b)
{
    start_two();
    *a = tp_conn_open(L.nodes[0].hub, "alice", 0, NULL);
    *b = tp_conn_open(L.nodes[1].hub, "bob", 0, NULL);
    cr_assert(*a != NULL && *b != NULL);
    pump_all(); /* the models they see are followed from now on: read first */
    tpt_drain_all(L.nodes[0].hub);
    tpt_drain_all(L.nodes[1].hub);
}

Test(order, the_first_node_creates_the_models_the_others_read_them)
{
    node_start(0, "one");
    cr_assert_eq(tp__order_unsynced(L.nodes[0].hub), 3);
    pump_all();
    cr_assert_eq(tp__order_unsynced(L.nodes[0].hub), 0);
    cr_assert_eq(L.n, 3);
    for (size_t i = 0; i < L.n; i++)
        cr_assert_eq(L.models[i].rev, 1, "%s/%s", L.models[i].owner, L.models[i].id);
    /* A node whose config says otherwise takes what the log holds. */
    node_start(1, "two");
    pump_all();
    cr_assert_eq(tp__order_unsynced(L.nodes[1].hub), 0);
    char *v = tp_hub_get_shared(L.nodes[1].hub, "doc");
    cr_assert(tpt_json_text_eq(v, "{\"title\":\"one\"}"), "%s", v);
    tp_free(v);
    v = tp_session_get(tp_hub_tenant(L.nodes[1].hub, "alice"), "notes");
    cr_assert(tpt_json_text_eq(v, "{\"title\":\"one\"}"), "%s", v);
    tp_free(v);
}

Test(order, a_write_is_applied_only_once_the_log_has_it)
{
    tp_conn *a, *b;
    two_nodes(&a, &b);
    cr_assert_eq(tpt_feed(a, "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"doc\","
                             "\"patch\":{\"n\":5}}"),
                 TP_OK);
    /* Nothing yet: not applied, not acked, nothing sent. */
    json_t *msgs = tpt_drain(a);
    cr_assert_eq(json_array_size(msgs), 0);
    json_decref(msgs);
    cr_assert_eq(tp_hub_shared_rev(L.nodes[0].hub, "doc"), 1);
    /* The log took it (this log runs an append when it is called); its
     * answer has not reached the node yet. */
    cr_assert_eq(L.appends, 4, "%llu appends", (unsigned long long)L.appends);
    cr_assert_eq(lfind("", "doc", 0)->rev, 2);
    pump_all();
    cr_assert_eq(L.appends, 4);
    cr_assert_eq(tp_hub_shared_rev(L.nodes[0].hub, "doc"), 2);
    cr_assert_eq(tp_hub_shared_rev(L.nodes[1].hub, "doc"), 2);
    msgs = tpt_drain(a);
    json_t *ack = tpt_find(msgs, "ack");
    cr_assert_not_null(ack);
    cr_assert_eq(json_integer_value(json_object_get(ack, "rev")), 2);
    json_decref(msgs);
    /* The other node's reader gets the very patch, from the log. */
    msgs = tpt_drain(b);
    json_t *p = tpt_find(msgs, "patch");
    cr_assert_not_null(p);
    cr_assert_eq(json_integer_value(json_object_get(p, "rev")), 2);
    cr_assert_str_eq(json_string_value(json_object_get(p, "origin")), tp_conn_id(a));
    json_decref(msgs);
    tp_conn_close(a);
    tp_conn_close(b);
}

Test(order, a_conflict_catches_up_and_merges_again)
{
    tp_conn *a, *b;
    two_nodes(&a, &b);
    /* Both merge at rev 1 before either hears of the other. */
    cr_assert_eq(tpt_feed(a, "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"map\","
                             "\"patch\":{\"a\":1}}"),
                 TP_OK);
    cr_assert_eq(tpt_feed(b, "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"map\","
                             "\"patch\":{\"b\":2}}"),
                 TP_OK);
    pump_all();
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(tp_hub_shared_rev(L.nodes[k].hub, "map"), 3);
        char *v = tp_hub_get_shared(L.nodes[k].hub, "map");
        cr_assert(tpt_json_text_eq(v, "{\"title\":\"t\",\"a\":1,\"b\":2}"), "%s", v);
        tp_free(v);
    }
    int64_t ra[1] = {0}, rb[1] = {0};
    view va = {1, 0}, vb = {1, 0};
    drain(a, "map", &va, ra, 1, NULL);
    drain(b, "map", &vb, rb, 1, NULL);
    cr_assert(ra[0] >= 2 && rb[0] >= 2 && ra[0] != rb[0], "acks at %lld and %lld", (long long)ra[0],
              (long long)rb[0]);
    cr_assert_eq(va.rev, 3);
    cr_assert_eq(vb.rev, 3);
    cr_assert_eq(va.gaps + vb.gaps, 0);
    tp_conn_close(a);
    tp_conn_close(b);
}

static int
cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

Test(order, many_writers_on_every_node_converge)
{
    srand(7);
    for (int k = 0; k < NODES; k++)
        node_start(k, "t");
    pump_all();
    enum { CONNS = 2, WRITES = 300 };
    tp_conn *c[NODES][CONNS];
    view v[NODES][CONNS];
    static int64_t acked[NODES][CONNS][WRITES];
    static int which[NODES][CONNS][WRITES];
    memset(acked, 0, sizeof acked);
    const char *ids[3] = {"map", "doc", "notes"};
    for (int k = 0; k < NODES; k++)
        for (int j = 0; j < CONNS; j++) {
            c[k][j] = tp_conn_open(L.nodes[k].hub, j == 0 ? "alice" : "bob", 0, NULL);
            char hello[80];
            snprintf(hello, sizeof hello, "{\"type\":\"ping\",\"ref\":0,\"client\":\"k%dc%d\"}", k,
                     j);
            cr_assert_eq(tpt_feed(c[k][j], hello), TP_OK);
            v[k][j] = (view){0, 0};
        }
    size_t errors = 0;
    int refs[NODES][CONNS] = {{0}};
    for (int w = 0; w < NODES * CONNS * WRITES * 2; w++) {
        int k = rand() % NODES, j = rand() % CONNS;
        if (refs[k][j] < WRITES) {
            int ref = ++refs[k][j];
            /* alice writes all three; bob the two shared ones. */
            int i = j == 0 ? rand() % 3 : rand() % 2;
            which[k][j][ref - 1] = i;
            const char *field = (const char *[]){"a", "b", "c"}[rand() % 3];
            char text[200];
            snprintf(text, sizeof text,
                     "{\"type\":\"write\",\"ref\":%d,\"scope\":\"%s\",\"id\":\"%s\","
                     "\"patch\":{\"%s\":%d}}",
                     ref, i == 2 ? "private" : "shared", ids[i], field, w);
            cr_assert_eq(tpt_feed(c[k][j], text), TP_OK);
        }
        for (int p = rand() % 4; p > 0; p--)
            pump_one();
        if (rand() % 8 == 0)
            for (int kk = 0; kk < NODES; kk++)
                for (int jj = 0; jj < CONNS; jj++)
                    drain(c[kk][jj], "map", &v[kk][jj], acked[kk][jj], WRITES, &errors);
    }
    pump_all();
    for (int k = 0; k < NODES; k++)
        for (int j = 0; j < CONNS; j++) {
            cr_assert_eq(refs[k][j], WRITES);
            drain(c[k][j], "map", &v[k][j], acked[k][j], WRITES, &errors);
        }
    cr_assert_eq(errors, 0);
    /* Every node holds what the log holds. */
    for (int k = 0; k < NODES; k++) {
        tp_hub *h = L.nodes[k].hub;
        for (int i = 0; i < 2; i++) {
            lmodel *m = lfind("", ids[i], 0);
            cr_assert_eq(tp_hub_shared_rev(h, ids[i]), m->rev, "node %d %s", k, ids[i]);
            char *a = tp_hub_get_shared(h, ids[i]);
            char *b = tp_hub_get_shared(L.nodes[0].hub, ids[i]);
            cr_assert(tpt_json_text_eq(a, b), "node %d %s: %s against %s", k, ids[i], a, b);
            tp_free(a);
            tp_free(b);
        }
        lmodel *m = lfind("alice", "notes", 0);
        cr_assert_eq(tp_session_rev(tp_hub_tenant(h, "alice"), "notes"), m->rev);
    }
    /* Every write acked. Each lww write sets a field to a number no other
     * write uses, so it changes the model: its ack has a rev of its own, and
     * the revs are exactly 2 to the model's rev. (lww-map writes may lose to
     * a later stamp and change nothing: only convergence is asked of them.) */
    for (int i = 1; i < 3; i++) {
        static int64_t revs[NODES * CONNS * WRITES];
        size_t n = 0;
        for (int k = 0; k < NODES; k++)
            for (int j = 0; j < CONNS; j++)
                for (int r = 0; r < WRITES; r++) {
                    cr_assert(acked[k][j][r] >= 1, "node %d conn %d ref %d not acked", k, j, r + 1);
                    if (which[k][j][r] == i)
                        revs[n++] = acked[k][j][r];
                }
        qsort(revs, n, sizeof *revs, cmp64);
        for (size_t r = 0; r < n; r++)
            cr_assert_eq(revs[r], (int64_t)r + 2, "%s: ack %zu at rev %lld", ids[i], r,
                         (long long)revs[r]);
        cr_assert_eq(lfind(i == 2 ? "alice" : "", ids[i], 0)->rev, (int64_t)n + 1);
    }
    /* Writes queued behind an append in flight went in batches. */
    unsigned batches = 0;
    for (int k = 0; k < NODES; k++)
        batches += L.nodes[k].batches;
    cr_assert_gt(batches, 0, "no append took several changes");
    /* Clients saw the shared map's revs in order, without a gap. */
    lmodel *map = lfind("", "map", 0);
    for (int k = 0; k < NODES; k++)
        for (int j = 0; j < CONNS; j++) {
            cr_assert_eq(v[k][j].gaps, 0, "node %d conn %d", k, j);
            cr_assert_eq(v[k][j].rev, map->rev, "node %d conn %d", k, j);
        }
    for (int k = 0; k < NODES; k++)
        for (int j = 0; j < CONNS; j++)
            tp_conn_close(c[k][j]);
}

Test(order, a_resend_while_in_flight_is_applied_once)
{
    node_start(0, "t");
    pump_all();
    tp_conn *a = as_client(0, "alice", "k");
    tpt_drain_all(L.nodes[0].hub);
    const char *w = "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":\"notes\","
                    "\"patch\":{\"n\":1}}";
    cr_assert_eq(tpt_feed(a, w), TP_OK);
    cr_assert_eq(tpt_feed(a, w), TP_OK);
    /* The writer reconnects with the same client id and sends it again. */
    tp_conn_close(a);
    tp_conn *a2 = as_client(0, "alice", "k");
    cr_assert_eq(tpt_feed(a2, w), TP_OK);
    pump_all();
    cr_assert_eq(tp_session_rev(tp_hub_tenant(L.nodes[0].hub, "alice"), "notes"), 2);
    json_t *msgs = tpt_drain(a2);
    cr_assert_eq(tpt_count(msgs, "ack"), 1);
    json_decref(msgs);
    /* After it, a resend is answered from the client's record. */
    cr_assert_eq(tpt_feed(a2, w), TP_OK);
    msgs = tpt_drain(a2);
    cr_assert_eq(tpt_count(msgs, "ack"), 1);
    json_decref(msgs);
    cr_assert_eq(tp_session_rev(tp_hub_tenant(L.nodes[0].hub, "alice"), "notes"), 2);
    tp_conn_close(a2);
}

Test(order, a_log_that_fails_refuses_with_internal_and_is_read_again)
{
    start_two();
    tp_conn *b = tp_conn_open(L.nodes[1].hub, "bob", 0, NULL); /* node 1 follows doc */
    tp_conn *a = as_client(0, "alice", "k");
    pump_all(); /* the client's outcomes, read from the log */
    tpt_drain_all(L.nodes[0].hub);
    /* The link is down: the write waits for it, and past the wait (5 s) it
     * is refused with internal, not recorded (the ref may come again). */
    L.nodes[0].fail_calls = 1;
    cr_assert_eq(tpt_feed(a, "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"doc\","
                             "\"patch\":{\"n\":1}}"),
                 TP_OK);
    json_t *msgs = tpt_drain(a);
    cr_assert_eq(json_array_size(msgs), 0);
    json_decref(msgs);
    now += 4999;
    tp_hub_sync(L.nodes[0].hub);
    msgs = tpt_drain(a);
    cr_assert_eq(json_array_size(msgs), 0);
    json_decref(msgs);
    now += 1;
    tp_hub_sync(L.nodes[0].hub);
    msgs = tpt_drain(a);
    json_t *e = tpt_find(msgs, "error");
    cr_assert_not_null(e);
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "internal");
    cr_assert_not_null(strstr(json_string_value(json_object_get(e, "message")), "cluster"));
    json_decref(msgs);
    cr_assert_eq(lfind("", "doc", 0)->rev, 1);
    /* Sent again while the link is still down, it waits; the link comes
     * back (the backend calls tp__order_resync) and it is applied. */
    cr_assert_eq(tpt_feed(a, "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"doc\","
                             "\"patch\":{\"n\":1}}"),
                 TP_OK);
    pump_all();
    L.nodes[0].fail_calls = 0;
    tp__order_resync(L.nodes[0].hub);
    pump_all();
    msgs = tpt_drain(a);
    json_t *ack = tpt_find(msgs, "ack");
    cr_assert_not_null(ack);
    cr_assert_eq(json_integer_value(json_object_get(ack, "rev")), 2);
    json_decref(msgs);
    /* The append ran but its answer was lost: not acked, and the node reads
     * the log back, so it holds the change the log has. */
    L.nodes[0].fail_answers = 1;
    cr_assert_eq(tpt_feed(a, "{\"type\":\"write\",\"ref\":2,\"scope\":\"shared\",\"id\":\"doc\","
                             "\"patch\":{\"n\":2}}"),
                 TP_OK);
    pump_all();
    L.nodes[0].fail_answers = 0;
    msgs = tpt_drain(a);
    e = tpt_find(msgs, "error");
    cr_assert_not_null(e);
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "internal");
    json_decref(msgs);
    cr_assert_eq(tp_hub_shared_rev(L.nodes[0].hub, "doc"), 3);
    cr_assert_eq(tp_hub_shared_rev(L.nodes[1].hub, "doc"), 3);
    tp_conn_close(a);
    tp_conn_close(b);
}

Test(order, host_changes_go_through_the_log)
{
    start_two();
    tp_conn *b = tp_conn_open(L.nodes[1].hub, "bob", 0, NULL);
    tp_conn *a = tp_conn_open(L.nodes[1].hub, "alice", 0, NULL); /* alice's notes followed */
    pump_all();
    tpt_drain_all(L.nodes[1].hub);
    cr_assert_eq(tp_hub_set_shared(L.nodes[0].hub, "map", "{\"title\":\"h\",\"n\":9}", NULL),
                 TP_OK);
    cr_assert_eq(
        tp_session_set(tp_hub_tenant(L.nodes[0].hub, "alice"), "notes", "{\"title\":\"p\"}", NULL),
        TP_OK);
    tp_hub_sync(L.nodes[0].hub);
    pump_all();
    for (int k = 0; k < 2; k++) {
        char *v = tp_hub_get_shared(L.nodes[k].hub, "map");
        cr_assert(tpt_json_text_eq(v, "{\"title\":\"h\",\"n\":9}"), "node %d: %s", k, v);
        tp_free(v);
        v = tp_session_get(tp_hub_tenant(L.nodes[k].hub, "alice"), "notes");
        cr_assert(tpt_json_text_eq(v, "{\"title\":\"p\"}"), "node %d: %s", k, v);
        tp_free(v);
    }
    json_t *msgs = tpt_drain(b);
    json_t *p = tpt_find(msgs, "patch");
    cr_assert_not_null(p);
    cr_assert_str_eq(json_string_value(json_object_get(p, "origin")), "host");
    json_decref(msgs);
    tp_conn_close(b);
    tp_conn_close(a);
}

/* A node follows a private model only while a connection of its tenant is
 * there: the others' changes cost it nothing, and the first connection
 * catches the model up (a snapshot of what the node held, then the rest). */
Test(order, private_models_no_connection_sees_are_not_followed)
{
    start_two();
    size_t notes = (size_t)(lfind("alice", "notes", 0) - L.models);
    cr_assert_eq(L.nodes[1].follows[notes], 0);
    tp_conn *a = tp_conn_open(L.nodes[0].hub, "alice", 0, NULL);
    cr_assert_eq(L.nodes[0].follows[notes], 1);
    write_n(a, "private", "notes", 3, 1);
    tp__order_stats st;
    tp__order_get_stats(L.nodes[1].hub, &st);
    cr_assert_eq(st.applied, 0);
    cr_assert_eq(tp_session_rev(tp_hub_tenant(L.nodes[1].hub, "alice"), "notes"), 1);
    /* alice connects to node 1: it follows notes again and catches up. */
    tp_conn *a2 = tp_conn_open(L.nodes[1].hub, "alice", 0, NULL);
    cr_assert_eq(L.nodes[1].follows[notes], 1);
    pump_all();
    cr_assert_eq(tp_session_rev(tp_hub_tenant(L.nodes[1].hub, "alice"), "notes"), 4);
    view v = {0, 0};
    drain(a2, "notes", &v, NULL, 0, NULL);
    cr_assert_eq(v.rev, 4);
    cr_assert_eq(v.gaps, 0);
    /* Its last connection gone, node 1 stops following it. */
    tp_conn_close(a2);
    cr_assert_eq(L.nodes[1].follows[notes], 0);
    /* A host value set there is patched against the newest state (the log
     * is read first): a member it lacks is deleted, though node 1 never saw
     * it. */
    cr_assert_eq(tpt_feed(a, "{\"type\":\"write\",\"ref\":4,\"scope\":\"private\",\"id\":"
                             "\"notes\",\"patch\":{\"c\":1}}"),
                 TP_OK);
    pump_all();
    cr_assert_eq(tp_session_set(tp_hub_tenant(L.nodes[1].hub, "alice"), "notes",
                                "{\"title\":\"t\",\"n\":3,\"b\":2}", NULL),
                 TP_OK);
    tp_hub_sync(L.nodes[1].hub);
    pump_all();
    cr_assert_eq(lfind("alice", "notes", 0)->rev, 6);
    char *val = tp_session_get(tp_hub_tenant(L.nodes[0].hub, "alice"), "notes");
    cr_assert(tpt_json_text_eq(val, "{\"title\":\"t\",\"n\":3,\"b\":2}"), "%s", val);
    tp_free(val);
    tp_conn_close(a);
}

Test(order, shared_models_no_subscriber_here_sees_are_not_followed)
{
    start_two();
    size_t di = (size_t)(lfind("", "doc", 0) - L.models);
    cr_assert_eq(L.nodes[0].follows[di], 0, "no subscriber of doc is connected to node 0");
    cr_assert_eq(L.nodes[1].follows[di], 0);
    tp_conn *a = tp_conn_open(L.nodes[0].hub, "alice", 0, NULL);
    cr_assert_eq(L.nodes[0].follows[di], 1, "alice, a subscriber, is");
    pump_all();
    write_n(a, "shared", "doc", 3, 1);
    tp__order_stats st;
    tp__order_get_stats(L.nodes[1].hub, &st);
    cr_assert_eq(st.applied, 0, "node 1 hears nothing of doc");
    cr_assert_eq(tp_hub_shared_rev(L.nodes[1].hub, "doc"), 1);
    /* bob, another subscriber, connects to node 1: it follows doc and
     * catches up, and bob's revs only go up. */
    tp_conn *b = tp_conn_open(L.nodes[1].hub, "bob", 0, NULL);
    cr_assert_eq(L.nodes[1].follows[di], 1);
    pump_all();
    cr_assert_eq(tp_hub_shared_rev(L.nodes[1].hub, "doc"), 4);
    view v = {0, 0};
    drain(b, "doc", &v, NULL, 0, NULL);
    cr_assert_eq(v.rev, 4);
    cr_assert_eq(v.gaps, 0);
    /* bob unsubscribed while connected: node 1 stops following doc. */
    cr_assert_eq(tp_hub_unsubscribe(L.nodes[1].hub, "bob", "doc"), TP_OK);
    cr_assert_eq(L.nodes[1].follows[di], 0);
    /* Subscribed again: followed again. */
    cr_assert_eq(tp_hub_subscribe(L.nodes[1].hub, "bob", "doc", TP_READ), TP_OK);
    cr_assert_eq(L.nodes[1].follows[di], 1);
    /* Its last subscriber's connection gone, node 1 stops following it. */
    tp_conn_close(b);
    cr_assert_eq(L.nodes[1].follows[di], 0);
    tp_conn_close(a);
    cr_assert_eq(L.nodes[0].follows[di], 0);
}

Test(order, a_node_far_behind_gets_the_snapshot)
{
    L.keep = 4;
    start_two();
    tp_conn *b = tp_conn_open(L.nodes[1].hub, "bob", 0, NULL);
    tpt_drain_all(L.nodes[1].hub);
    /* Node 1 stops hearing messages (its pub/sub connection is down). */
    L.nodes[1].follows[lfind("", "map", 0) - L.models] = 0;
    tp_conn *a = tp_conn_open(L.nodes[0].hub, "alice", 0, NULL);
    write_n(a, "shared", "map", 10, 1);
    cr_assert_eq(tp_hub_shared_rev(L.nodes[1].hub, "map"), 1);
    L.nodes[1].follows[lfind("", "map", 0) - L.models] = 1;
    tp__order_resync(L.nodes[1].hub);
    pump_all();
    cr_assert_eq(tp_hub_shared_rev(L.nodes[1].hub, "map"), 11);
    char *v = tp_hub_get_shared(L.nodes[1].hub, "map");
    cr_assert(tpt_json_text_eq(v, "{\"title\":\"t\",\"n\":10}"), "%s", v);
    tp_free(v);
    /* Its client is told with a snapshot at the new rev. */
    json_t *msgs = tpt_drain(b);
    json_t *s = tpt_find(msgs, "snapshot");
    cr_assert_not_null(s);
    cr_assert_eq(json_integer_value(json_object_get(s, "rev")), 11);
    json_decref(msgs);
    /* And a write there merges on it. */
    cr_assert_eq(tpt_feed(b, "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"map\","
                             "\"patch\":{\"a\":1}}"),
                 TP_OK);
    pump_all();
    cr_assert_eq(tp_hub_shared_rev(L.nodes[0].hub, "map"), 12);
    tp_conn_close(a);
    tp_conn_close(b);
}

/* A node dies after the log took a write and before its ack left: the
 * client resends it to another node, which answers it from the log's record
 * of the outcome and applies nothing twice. */
Test(order, a_write_resent_to_another_node_after_a_crash_is_applied_once)
{
    start_two();
    const char *w[2] = {"{\"type\":\"write\",\"ref\":7,\"scope\":\"private\",\"id\":\"notes\","
                        "\"patch\":{\"n\":1}}",
                        "{\"type\":\"write\",\"ref\":8,\"scope\":\"shared\",\"id\":\"doc\","
                        "\"patch\":{\"n\":2}}"};
    tp_conn *a = as_client(0, "alice", "k");
    pump_all();
    tpt_drain_all(L.nodes[0].hub);
    cr_assert_eq(tpt_feed(a, w[0]), TP_OK);
    cr_assert_eq(tpt_feed(a, w[1]), TP_OK);
    /* The log has both; node 0 dies before hearing back. */
    cr_assert_eq(lfind("alice", "notes", 0)->rev, 2);
    cr_assert_eq(lfind("", "doc", 0)->rev, 2);
    tp_conn_close(a);
    node_stop(0);
    pump_all();
    /* Others change both models meanwhile: applying the resends again
     * would undo their changes. */
    tp_conn *o = tp_conn_open(L.nodes[1].hub, "alice", 0, NULL);
    cr_assert_eq(tpt_feed(o, "{\"type\":\"write\",\"ref\":1,\"scope\":\"private\",\"id\":"
                             "\"notes\",\"patch\":{\"n\":5}}"),
                 TP_OK);
    cr_assert_eq(tpt_feed(o, "{\"type\":\"write\",\"ref\":2,\"scope\":\"shared\",\"id\":"
                             "\"doc\",\"patch\":{\"n\":5}}"),
                 TP_OK);
    pump_all();
    tp_conn_close(o);
    tp_conn *a2 = as_client(1, "alice", "k");
    /* Sent before the node has read the client's outcomes: they wait. */
    cr_assert_eq(tpt_feed(a2, w[0]), TP_OK);
    cr_assert_eq(tpt_feed(a2, w[1]), TP_OK);
    pump_all();
    json_t *msgs = tpt_drain(a2);
    cr_assert_eq(tpt_count(msgs, "ack"), 2, "%s", json_dumps(msgs, 0));
    cr_assert_eq(tpt_count(msgs, "error"), 0);
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        if (strcmp(json_string_value(json_object_get(m, "type")), "ack") == 0)
            cr_assert_eq(json_integer_value(json_object_get(m, "rev")), 2);
    }
    json_decref(msgs);
    cr_assert_eq(lfind("alice", "notes", 0)->rev, 3);
    cr_assert_eq(lfind("", "doc", 0)->rev, 3);
    char *v = tp_hub_get_shared(L.nodes[1].hub, "doc");
    cr_assert(tpt_json_text_eq(v, "{\"title\":\"t\",\"n\":5}"), "%s", v);
    tp_free(v);
    v = tp_session_get(tp_hub_tenant(L.nodes[1].hub, "alice"), "notes");
    cr_assert(tpt_json_text_eq(v, "{\"title\":\"t\",\"n\":5}"), "%s", v);
    tp_free(v);
    /* A new ref is a new write. */
    cr_assert_eq(tpt_feed(a2, "{\"type\":\"write\",\"ref\":9,\"scope\":\"shared\",\"id\":"
                              "\"doc\",\"patch\":{\"n\":3}}"),
                 TP_OK);
    pump_all();
    cr_assert_eq(tp_hub_shared_rev(L.nodes[1].hub, "doc"), 4);
    tp_conn_close(a2);
}

Test(order, a_client_whose_outcomes_cannot_be_read_is_refused)
{
    node_start(0, "t");
    pump_all();
    L.nodes[0].fail_outcomes = 1;
    tp_conn *a = as_client(0, "alice", "k");
    cr_assert_eq(tpt_feed(a, "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":"
                             "\"doc\",\"patch\":{\"n\":3}}"),
                 TP_OK);
    pump_all();
    json_t *msgs = tpt_drain(a);
    json_t *e = tpt_find(msgs, "error");
    cr_assert_not_null(e);
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "internal");
    json_decref(msgs);
    cr_assert_eq(tp_hub_shared_rev(L.nodes[0].hub, "doc"), 1);
    /* Named again (a reconnection), the client is read and its write goes through. */
    L.nodes[0].fail_outcomes = 0;
    tp_conn_close(a);
    a = as_client(0, "alice", "k");
    cr_assert_eq(tpt_feed(a, "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":"
                             "\"doc\",\"patch\":{\"n\":3}}"),
                 TP_OK);
    pump_all();
    cr_assert_eq(tp_hub_shared_rev(L.nodes[0].hub, "doc"), 2);
    tp_conn_close(a);
}

Test(order, the_writes_waiting_for_the_log_are_bounded)
{
    node_start(0, "t");
    pump_all();
    tp__order_set_wait(L.nodes[0].hub, 5000, 3);
    tp_conn *a = tp_conn_open(L.nodes[0].hub, "alice", 0, NULL);
    tpt_drain_all(L.nodes[0].hub);
    write_n(a, "shared", "doc", 4, 0);
    json_t *msgs = tpt_drain(a);
    cr_assert_eq(json_array_size(msgs), 1, "%s", json_dumps(msgs, 0));
    json_t *e = tpt_find(msgs, "error");
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "rate_limited");
    cr_assert_eq(json_integer_value(json_object_get(e, "ref")), 4);
    json_decref(msgs);
    pump_all();
    msgs = tpt_drain(a);
    cr_assert_eq(tpt_count(msgs, "ack"), 3);
    json_decref(msgs);
    cr_assert_eq(tp_hub_shared_rev(L.nodes[0].hub, "doc"), 4);
    tp_conn_close(a);
}

/* A client that got rev 11 on one node resumes on a node still at rev 1: it
 * is never sent the older snapshot, and it reaches rev 11 and on once the
 * node has read the log. A rev no node ever had costs one read. */
Test(order, a_resume_ahead_of_the_node_waits_for_the_log)
{
    start_two();
    size_t map = (size_t)(lfind("", "map", 0) - L.models);
    L.nodes[1].follows[map] = 0; /* node 1 hears nothing of map */
    tp_conn *a = tp_conn_open(L.nodes[0].hub, "alice", 0, NULL);
    write_n(a, "shared", "map", 10, 1);
    L.nodes[1].follows[map] = 1;
    cr_assert_eq(tp_hub_shared_rev(L.nodes[1].hub, "map"), 1);
    tp_conn *b = tp_conn_open(L.nodes[1].hub, "bob", TP_CONN_RESUME, NULL);
    cr_assert_eq(tpt_feed(b, "{\"type\":\"resume\",\"models\":[{\"scope\":\"shared\",\"id\":"
                             "\"map\",\"rev\":11}]}"),
                 TP_OK);
    json_t *msgs = tpt_drain(b);
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        const char *id = json_string_value(json_object_get(m, "id"));
        cr_assert(id == NULL || strcmp(id, "map") != 0, "map sent before the read: %s",
                  json_dumps(m, 0));
    }
    json_decref(msgs);
    pump_all();
    cr_assert_eq(tp_hub_shared_rev(L.nodes[1].hub, "map"), 11);
    /* What it gets now is at or past rev 11: patches it ignores, or newer. */
    msgs = tpt_drain(b);
    json_array_foreach(msgs, i, m)
    {
        const char *type = json_string_value(json_object_get(m, "type"));
        if (strcmp(type, "snapshot") == 0)
            cr_assert_geq(json_integer_value(json_object_get(m, "rev")), 11);
    }
    json_decref(msgs);
    cr_assert_eq(tpt_feed(a, "{\"type\":\"write\",\"ref\":11,\"scope\":\"shared\",\"id\":\"map\","
                             "\"patch\":{\"n\":11}}"),
                 TP_OK);
    pump_all();
    view v = {11, 0};
    drain(b, "map", &v, NULL, 0, NULL);
    cr_assert_eq(v.rev, 12);
    cr_assert_eq(v.gaps, 0);
    /* A rev the log never had: one read, and the loop ends. */
    tp__order_stats before, after;
    tp__order_get_stats(L.nodes[1].hub, &before);
    tp_conn *b2 = tp_conn_open(L.nodes[1].hub, "bob", TP_CONN_RESUME, NULL);
    cr_assert_eq(tpt_feed(b2, "{\"type\":\"resume\",\"models\":[{\"scope\":\"shared\",\"id\":"
                              "\"map\",\"rev\":1000}]}"),
                 TP_OK);
    pump_all();
    tp__order_get_stats(L.nodes[1].hub, &after);
    cr_assert_eq(after.reads, before.reads + 1);
    tp_conn_close(a);
    tp_conn_close(b);
    tp_conn_close(b2);
}

/* The writer's connection closes while its write is in the log's hands: the
 * outcome is recorded, and a connection of the same client gets it only
 * once, when it sends the ref again. */
Test(order, an_outcome_reaches_another_connection_only_when_it_resends)
{
    node_start(0, "t");
    pump_all();
    tp_conn *a = as_client(0, "alice", "k");
    pump_all();
    const char *w = "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"doc\","
                    "\"patch\":{\"n\":1}}";
    cr_assert_eq(tpt_feed(a, w), TP_OK); /* appended at once: in flight */
    cr_assert_eq(lfind("", "doc", 0)->rev, 2);
    tp_conn *a2 = as_client(0, "alice", "k");
    tp_conn_close(a);
    pump_all();
    json_t *msgs = tpt_drain(a2);
    cr_assert_eq(tpt_count(msgs, "ack"), 0, "%s", json_dumps(msgs, 0));
    json_decref(msgs);
    cr_assert_eq(tpt_feed(a2, w), TP_OK);
    msgs = tpt_drain(a2);
    cr_assert_eq(tpt_count(msgs, "ack"), 1);
    json_decref(msgs);
    /* Sent again while in flight: answered once, on the connection that resent it. */
    tp_conn *a3 = as_client(0, "alice", "k");
    pump_all();
    const char *w2 = "{\"type\":\"write\",\"ref\":2,\"scope\":\"shared\",\"id\":\"doc\","
                     "\"patch\":{\"n\":2}}";
    cr_assert_eq(tpt_feed(a2, w2), TP_OK);
    cr_assert_eq(tpt_feed(a3, w2), TP_OK);
    tp_conn_close(a2);
    pump_all();
    msgs = tpt_drain(a3);
    cr_assert_eq(tpt_count(msgs, "ack"), 1, "%s", json_dumps(msgs, 0));
    json_decref(msgs);
    cr_assert_eq(lfind("", "doc", 0)->rev, 3);
    tp_conn_close(a3);
}

/* A write whose turn has not come when its connection closes is dropped:
 * never applied, never acked, so the client's resend elsewhere is the one. */
Test(order, a_queued_write_of_a_closed_connection_is_dropped)
{
    node_start(0, "t");
    pump_all();
    tp_conn *o = tp_conn_open(L.nodes[0].hub, "bob", 0, NULL);
    tp_conn *a = tp_conn_open(L.nodes[0].hub, "alice", 0, NULL);
    cr_assert_eq(tpt_feed(o, "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"doc\","
                             "\"patch\":{\"n\":1}}"),
                 TP_OK); /* in flight */
    cr_assert_eq(tpt_feed(a, "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"doc\","
                             "\"patch\":{\"c\":1}}"),
                 TP_OK); /* waits behind it */
    tp_conn_close(a);
    pump_all();
    cr_assert_eq(lfind("", "doc", 0)->rev, 2);
    char *v = tp_hub_get_shared(L.nodes[0].hub, "doc");
    cr_assert(tpt_json_text_eq(v, "{\"title\":\"t\",\"n\":1}"), "%s", v);
    tp_free(v);
    tp_conn_close(o);
}

/* Node 0's append of alice's write reaches the log late; meanwhile alice, whose connection to
 * node 0 dropped, resends the write through node 1, which finds no outcome yet and appends it,
 * and bob changes the model after her. When node 0's append runs at last, the log sees the
 * ref's outcome and writes nothing (conflict 2): the write is applied once, bob's change stays. */
Test(order, a_late_append_of_a_write_already_in_the_log_writes_nothing)
{
    start_two();
    tp_conn *a = as_client(0, "alice", "k");
    pump_all();
    L.nodes[0].defer = 1;
    const char *w = "{\"type\":\"write\",\"ref\":5,\"scope\":\"shared\",\"id\":\"doc\","
                    "\"patch\":{\"n\":1}}";
    cr_assert_eq(tpt_feed(a, w), TP_OK);
    tp_conn_close(a); /* in flight: goes on without its connection */
    cr_assert_eq(lfind("", "doc", 0)->rev, 1, "not in the log yet");
    tp_conn *a2 = as_client(1, "alice", "k");
    while (L.nodes[1].a_len > 0) /* node 1's answers only: its outcomes read, then the resend */
        deliver(1, 1);
    cr_assert_eq(tpt_feed(a2, w), TP_OK);
    while (L.nodes[1].a_len > 0)
        deliver(1, 1);
    cr_assert_eq(lfind("", "doc", 0)->rev, 2);
    tp_conn *b = tp_conn_open(L.nodes[1].hub, "bob", 0, NULL);
    cr_assert_eq(tpt_feed(b, "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"doc\","
                             "\"patch\":{\"n\":5}}"),
                 TP_OK);
    while (L.nodes[1].a_len > 0)
        deliver(1, 1);
    cr_assert_eq(lfind("", "doc", 0)->rev, 3);
    pump_all(); /* node 0's append runs now */
    cr_assert_eq(lfind("", "doc", 0)->rev, 3, "applied a second time");
    for (int k = 0; k < 2; k++) {
        char *v = tp_hub_get_shared(L.nodes[k].hub, "doc");
        cr_assert(tpt_json_text_eq(v, "{\"title\":\"t\",\"n\":5}"), "node %d: %s", k, v);
        tp_free(v);
        cr_assert_eq(tp_hub_shared_rev(L.nodes[k].hub, "doc"), 3);
    }
    json_t *msgs = tpt_drain(a2);
    cr_assert_eq(tpt_count(msgs, "ack"), 1);
    json_decref(msgs);
    tp_conn_close(a2);
    tp_conn_close(b);
}

Test(order, a_resend_whose_outcome_only_the_append_finds_gets_it)
{
    /* A Redis Cluster: a shared write's outcome reaches its client's record after the
     * append, and node 0 dies between the two; the copy in the model's slot is all the log
     * has. Resent through node 1, the append finds it and answers with it. */
    start_two();
    tp_conn *a = as_client(0, "alice", "k");
    pump_all();
    const char *w = "{\"type\":\"write\",\"ref\":5,\"scope\":\"shared\",\"id\":\"doc\","
                    "\"patch\":{\"n\":1}}";
    cr_assert_eq(tpt_feed(a, w), TP_OK);
    cr_assert_eq(lfind("", "doc", 0)->rev, 2, "in the log, its answer not delivered");
    uint64_t appends = L.appends;
    node_stop(0); /* its answer is lost */
    L.nodes[1].hide_outcomes = 1;
    L.nodes[1].give_was = 1;
    tp_conn *a2 = as_client(1, "alice", "k");
    pump_all();
    json_decref(tpt_drain(a2));
    cr_assert_eq(tpt_feed(a2, w), TP_OK);
    pump_all();
    cr_assert_eq(L.appends, appends, "applied a second time");
    cr_assert_eq(lfind("", "doc", 0)->rev, 2);
    json_t *msgs = tpt_drain(a2);
    json_t *ack = tpt_find(msgs, "ack");
    cr_assert_not_null(ack, "no answer to the resend");
    cr_assert_eq(json_integer_value(json_object_get(ack, "ref")), 5);
    cr_assert_eq(json_integer_value(json_object_get(ack, "rev")), 2, "the original ack");
    cr_assert_eq(tpt_count(msgs, "ack"), 1);
    json_decref(msgs);
    /* Recorded for the client: sent once more, it is answered from node 1's record. */
    cr_assert_eq(tpt_feed(a2, w), TP_OK);
    pump_all();
    msgs = tpt_drain(a2);
    ack = tpt_find(msgs, "ack");
    cr_assert(ack != NULL && json_integer_value(json_object_get(ack, "rev")) == 2);
    json_decref(msgs);
    cr_assert_eq(L.appends, appends);
    tp_conn_close(a2);
}

Test(order, writes_queued_behind_an_append_go_in_one_and_get_their_own_revs)
{
    tp_conn *a, *b;
    two_nodes(&a, &b);
    uint64_t appends = L.appends;
    unsigned batches = L.nodes[0].batches;
    /* The first write's append is in flight (its answer not delivered):
     * the nine after it wait, then go in one append. */
    write_n(a, "shared", "doc", 10, 0);
    pump_all();
    cr_assert_eq(L.nodes[0].batches, batches + 1, "one batch");
    cr_assert_eq(L.appends - appends, 10, "ten entries in the log");
    cr_assert_eq(lfind("", "doc", 0)->rev, 11);
    int64_t acked[10] = {0};
    view v = {0, 0}, vb = {0, 0};
    drain(a, "doc", &v, acked, 10, NULL);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(acked[i], i + 2, "ref %d acked at rev %lld", i + 1, (long long)acked[i]);
    /* bob, on the other node, got every patch in order. */
    vb.rev = 1;
    drain(b, "doc", &vb, NULL, 0, NULL);
    cr_assert_eq(vb.rev, 11);
    cr_assert_eq(vb.gaps, 0);
    char *v0 = tp_hub_get_shared(L.nodes[0].hub, "doc"),
         *v1 = tp_hub_get_shared(L.nodes[1].hub, "doc");
    cr_assert(tpt_json_text_eq(v0, v1) && tpt_json_text_eq(v0, "{\"title\":\"t\",\"n\":10}"),
              "%s / %s", v0, v1);
    tp_free(v0);
    tp_free(v1);
    tp_conn_close(a);
    tp_conn_close(b);
}

Test(order, a_batch_with_a_write_already_in_the_log_answers_it_and_appends_the_others)
{
    start_two();
    tp_conn *a1 = as_client(1, "alice", "k");
    pump_all();
    const char *w2 = "{\"type\":\"write\",\"ref\":2,\"scope\":\"shared\",\"id\":\"doc\","
                     "\"patch\":{\"b\":2}}";
    cr_assert_eq(tpt_feed(a1, w2), TP_OK);
    pump_all();
    cr_assert_eq(lfind("", "doc", 0)->rev, 2);
    tp_conn_close(a1);
    /* b moves on, so that ref 2 sent again would change the model. */
    tp_conn *b = tp_conn_open(L.nodes[1].hub, "bob", 0, NULL);
    cr_assert_eq(tpt_feed(b, "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"doc\","
                             "\"patch\":{\"b\":9}}"),
                 TP_OK);
    pump_all();
    tp_conn_close(b);
    /* Node 0 does not know ref 2's outcome (its client record lacks it): a
     * batch with ref 2 in it meets it in the log. */
    L.nodes[0].hide_outcomes = 1;
    tp_conn *a = as_client(0, "alice", "k");
    pump_all();
    json_decref(tpt_drain(a));
    L.nodes[0].defer = 1; /* the first append waits: the others queue behind it */
    cr_assert_eq(tpt_feed(a, "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"doc\","
                             "\"patch\":{\"a\":1}}"),
                 TP_OK);
    /* Behind it: ref 3, then ref 2, one batch (ref 2 second in it). */
    cr_assert_eq(tpt_feed(a, "{\"type\":\"write\",\"ref\":3,\"scope\":\"shared\",\"id\":\"doc\","
                             "\"patch\":{\"c\":3}}"),
                 TP_OK);
    cr_assert_eq(tpt_feed(a, w2), TP_OK);
    L.nodes[0].defer = 0;
    pump_all();
    cr_assert_eq(lfind("", "doc", 0)->rev, 5, "ref 2 applied once, refs 1 and 3 once each");
    cr_assert_gt(L.nodes[0].batches, 0, "appends %llu", (unsigned long long)L.appends);
    int64_t acked[3] = {0};
    view v = {0, 0};
    drain(a, "doc", &v, acked, 3, NULL);
    cr_assert_eq(acked[1], 2, "ref 2 answered with its first ack (rev 2)");
    cr_assert(acked[0] >= 4 && acked[2] >= 4 && acked[0] != acked[2], "%lld %lld",
              (long long)acked[0], (long long)acked[2]);
    char *val = tp_hub_get_shared(L.nodes[0].hub, "doc");
    cr_assert(tpt_json_text_eq(val, "{\"title\":\"t\",\"a\":1,\"b\":9,\"c\":3}"), "%s", val);
    tp_free(val);
    tp_conn_close(a);
}

/* ---- The catalog (catalog.c): what exists, the same on every node ---- */

/* A node with a catalog: alice's notes from its config (and one more model of
 * alice when extra), the schema named "Doc", the host API's operations. */
static tp_hub *
cat_node_start(int k, const char *extra)
{
    tp_hub_config cfg = {0};
    cfg.clock = tpt_clock;
    cfg.clock_user = &now;
    tp_hub *hub = tp_hub_new(&cfg, NULL);
    cr_assert_not_null(hub);
    tp_session *alice = tp_hub_tenant(hub, "alice");
    cr_assert_not_null(tp_session_host_as(alice, "notes", doc, "{\"title\":\"config\"}", NULL));
    if (extra != NULL)
        cr_assert_not_null(tp_session_host_as(alice, extra, doc, "{\"title\":\"extra\"}", NULL));
    node *nd = &L.nodes[k];
    memset(nd, 0, sizeof *nd);
    nd->log = &L;
    nd->hub = hub;
    tp_error err = {0, ""};
    nd->host = tp__host_new(hub, &err);
    cr_assert_not_null(nd->host, "%s", err.message);
    cr_assert_eq(tp__host_name_schema(nd->host, "Doc", doc), TP_OK);
    cr_assert_eq(tp__hub_set_order(hub, &cat_ops, nd, &err), TP_OK, "%s", err.message);
    return hub;
}

static json_t *
jtext(const char *t)
{
    json_error_t je;
    json_t *v = json_loads(t, 0, &je);
    cr_assert_not_null(v, "%s: %s", t, je.text);
    return v;
}

/* The host API's PUT of a model on node k; the answer's rev is checked by the caller. */
static void
host_put(int k, int shared, const char *tenant, const char *id, const char *body)
{
    json_t *b = jtext(body), *out = NULL;
    int created = 0;
    tp_error err = {0, ""};
    int rc = tp__host_model_put(L.nodes[k].host, shared, tenant, id, b, -1, &created, &out, &err);
    cr_assert_eq(rc, TP_OK, "PUT %s/%s on node %d: %s", tenant ? tenant : "", id, k, err.message);
    json_decref(b);
    json_decref(out);
}

/* The model as node k holds it ({"id","schema","rev","value",...}), or NULL. */
static json_t *
host_get(int k, int shared, const char *tenant, const char *id)
{
    json_t *out = NULL;
    tp_error err = {0, ""};
    return tp__host_model_get(L.nodes[k].host, shared, tenant, id, &out, &err) == TP_OK ? out
                                                                                        : NULL;
}

static void settle(void);

/* Every running node holds the model as node 0 does (or none holds it), once
 * each read what the log has past its rev (as the host API's GET does: a
 * node follows only the models its connections see). */
static void
assert_same_everywhere(int shared, const char *tenant, const char *id)
{
    for (int k = 0; k < NODES; k++)
        if (L.nodes[k].hub != NULL)
            (void)tp__order_refresh(L.nodes[k].hub, shared ? "" : tenant, id);
    settle();
    json_t *want = host_get(0, shared, tenant, id);
    for (int k = 1; k < NODES; k++) {
        if (L.nodes[k].hub == NULL)
            continue;
        json_t *got = host_get(k, shared, tenant, id);
        cr_assert((want == NULL) == (got == NULL), "%s/%s: node 0 %s it, node %d %s",
                  tenant ? tenant : "", id, want ? "holds" : "lacks", k, got ? "holds" : "lacks");
        if (want != NULL) {
            char *w = json_dumps(want, JSON_SORT_KEYS), *g = json_dumps(got, JSON_SORT_KEYS);
            cr_assert(json_equal(want, got), "%s/%s: node 0 %s, node %d %s", tenant ? tenant : "",
                      id, w, k, g);
            free(w);
            free(g);
        }
        json_decref(got);
    }
    json_decref(want);
}

/* Ticks every node once, `ms` later: retries of the catalog and its reads. */
static void
tick_all(int64_t ms)
{
    now += ms;
    for (int k = 0; k < NODES; k++)
        if (L.nodes[k].hub != NULL)
            tp__order_tick(L.nodes[k].hub);
}

static void
settle(void)
{
    for (int i = 0; i < 8; i++) {
        pump_all();
        tick_all(300);
    }
    pump_all();
}

Test(order, the_host_api_on_one_node_changes_every_node)
{
    for (int k = 0; k < NODES; k++)
        cat_node_start(k, NULL);
    settle();
    for (int k = 0; k < NODES; k++)
        cr_assert_eq(tp__order_unsynced(L.nodes[k].hub), 0, "node %d", k);
    /* A model made through node 0, read through 1 and 2. */
    host_put(0, 0, "carol", "m1", "{\"schema\":\"Doc\",\"value\":{\"title\":\"made on 0\"}}");
    settle();
    json_t *m = host_get(2, 0, "carol", "m1");
    cr_assert_not_null(m, "node 2 lacks carol/m1");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(m, "value"), "title")),
                     "made on 0");
    json_decref(m);
    assert_same_everywhere(0, "carol", "m1");
    /* A patch through node 1 goes through the log: every node has it. */
    json_t *p = jtext("{\"n\":7}"), *out = NULL;
    tp_error err = {0, ""};
    uint64_t t0 = tp__ticket_last(L.nodes[1].hub);
    cr_assert_eq(tp__host_model_patch(L.nodes[1].host, 0, "carol", "m1", p, -1, &out, &err), TP_OK,
                 "%s", err.message);
    json_decref(p);
    json_decref(out);
    uint64_t t1 = tp__ticket_last(L.nodes[1].hub);
    cr_assert_gt(t1, t0, "a cluster's host patch has a ticket");
    cr_assert_eq(tp__ticket_state(L.nodes[1].hub, t0, t1, &err), 1, "open until the log has it");
    settle();
    cr_assert_eq(tp__ticket_state(L.nodes[1].hub, t0, t1, &err), 0, "%s", err.message);
    cr_assert_eq(
        lfind("carol", "m1", 0)->rev, 2,
        "the log has the patch"); /* Nodes 0 and 2 do not follow carol's model (no connection of
                                   * carol there): it may be behind, and a refresh reads it. */
    uint64_t t = tp__order_refresh(L.nodes[0].hub, "carol", "m1");
    cr_assert_neq(t, 0, "a model no connection follows is refreshed");
    cr_assert_eq(tp__ticket_state(L.nodes[0].hub, t - 1, t, &err), 1);
    (void)tp__order_refresh(L.nodes[2].hub, "carol", "m1");
    settle();
    cr_assert_eq(tp__ticket_state(L.nodes[0].hub, t - 1, t, &err), 0);
    assert_same_everywhere(0, "carol", "m1");
    /* A shared model through node 0, bob subscribed through node 1. */
    host_put(0, 1, NULL, "board",
             "{\"schema\":\"Doc\",\"merge\":\"lww-map\",\"value\":{\"title\":\"B\"}}");
    settle();
    json_t *acc = jtext("{\"access\":\"write\"}");
    cr_assert_eq(tp__host_subscribe(L.nodes[1].host, "board", "bob", acc, &err), TP_OK, "%s",
                 err.message);
    json_decref(acc);
    settle();
    for (int k = 0; k < NODES; k++) {
        json_t *subs = NULL;
        cr_assert_eq(tp__host_subscribers(L.nodes[k].host, "board", NULL, 10, &subs, &err), TP_OK);
        json_t *items = json_object_get(subs, "items");
        cr_assert_eq(json_array_size(items), 1, "node %d: %zu subscribers", k,
                     json_array_size(items));
        cr_assert_str_eq(json_string_value(json_object_get(json_array_get(items, 0), "tenant")),
                         "bob");
        json_decref(subs);
    }
    assert_same_everywhere(1, NULL, "board");
    /* bob connected to node 2 writes the board it was subscribed to through node 1. */
    tp_conn *bob = tp_conn_open(L.nodes[2].hub, "bob", 0, NULL);
    cr_assert_not_null(bob);
    cr_assert_eq(tpt_feed(bob,
                          "{\"type\":\"write\",\"ref\":1,\"scope\":\"shared\",\"id\":\"board\","
                          "\"patch\":{\"n\":3}}"),
                 TP_OK);
    settle();
    assert_same_everywhere(1, NULL, "board");
    m = host_get(0, 1, NULL, "board");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(m, "value"), "n")), 3);
    json_decref(m);
    /* Unsubscribed through node 0: bob's connection on node 2 is told. */
    tpt_drain_all(L.nodes[2].hub);
    cr_assert_eq(tp__host_unsubscribe(L.nodes[0].host, "board", "bob", &err), TP_OK);
    settle();
    json_t *msgs = tpt_drain(bob);
    cr_assert_not_null(tpt_find(msgs, "removed"), "bob on node 2 was not told");
    json_decref(msgs);
    /* Deleted through node 2: gone everywhere, with a tombstone in the log. */
    cr_assert_eq(tp__host_model_delete(L.nodes[2].host, 0, "carol", "m1", &err), TP_OK);
    settle();
    for (int k = 0; k < NODES; k++)
        cr_assert_null(host_get(k, 0, "carol", "m1"), "node %d still holds carol/m1", k);
    cr_assert_null(lfind("carol", "m1", 0)->record, "no tombstone");
    /* Made again under the same id: from the tombstone's rev on. */
    host_put(1, 0, "carol", "m1", "{\"schema\":\"Doc\",\"value\":{\"title\":\"again\"}}");
    settle();
    assert_same_everywhere(0, "carol", "m1");
    m = host_get(0, 0, "carol", "m1");
    cr_assert_eq(json_integer_value(json_object_get(m, "rev")), 4,
                 "revs go on after the tombstone");
    json_decref(m);
    tp_conn_close(bob);
}

Test(order, a_tenant_deleted_on_one_node_is_closed_and_gone_on_every_node)
{
    for (int k = 0; k < 2; k++)
        cat_node_start(k, NULL);
    settle();
    host_put(0, 0, "carol", "m1", "{\"schema\":\"Doc\",\"value\":{\"title\":\"x\"}}");
    settle();
    tp_conn *c = tp_conn_open(L.nodes[1].hub, "carol", 0, NULL);
    cr_assert_not_null(c);
    settle();
    tpt_drain_all(L.nodes[1].hub);
    tp_error err = {0, ""};
    cr_assert_eq(tp__host_tenant_delete(L.nodes[0].host, "carol", &err), TP_OK, "%s", err.message);
    settle();
    cr_assert_null(host_get(1, 0, "carol", "m1"));
    cr_assert_eq(tp_conn_close_code(c), 4404, "carol's connection on node 1 closes with 4404");
    tp_conn_close(c);
}

Test(order, a_node_that_held_a_model_deleted_elsewhere_never_makes_it_again)
{
    for (int k = 0; k < 2; k++)
        cat_node_start(k, NULL);
    settle();
    host_put(0, 0, "carol", "m1", "{\"schema\":\"Doc\",\"value\":{\"title\":\"x\"}}");
    settle();
    tp_conn *c = tp_conn_open(L.nodes[1].hub, "carol", 0, NULL); /* node 1 follows it */
    settle();
    json_decref(tpt_drain(c));
    tp_error err = {0, ""};
    cr_assert_eq(tp__host_model_delete(L.nodes[0].host, 0, "carol", "m1", &err), TP_OK);
    /* Node 1 hears of the tombstone before the catalog's change: its own
     * copy must not make the model again in the log. */
    cr_assert(L.nodes[1].m_len >= 2, "the tombstone and the catalog's change");
    deliver(1, 0); /* the tombstone */
    while (L.nodes[1].a_len > 0) /* node 1's reads of the log, before the catalog's change */
        deliver(1, 1);
    settle();
    lmodel *lm = lfind("carol", "m1", 0);
    cr_assert_null(lm->record, "made again from node 1's copy, at rev %lld", (long long)lm->rev);
    cr_assert_null(host_get(1, 0, "carol", "m1"));
    json_t *msgs = tpt_drain(c);
    cr_assert_not_null(tpt_find(msgs, "removed"), "carol on node 1 was not told");
    json_decref(msgs);
    tp_conn_close(c);
}

Test(order, a_node_started_later_loads_the_catalog)
{
    cat_node_start(0, NULL);
    settle();
    host_put(0, 0, "carol", "m1", "{\"schema\":\"Doc\",\"value\":{\"title\":\"x\"}}");
    host_put(0, 1, NULL, "board",
             "{\"schema\":\"Doc\",\"merge\":\"lww-map\",\"value\":{\"title\":\"B\"}}");
    json_t *acc = jtext("{\"access\":\"read\"}");
    tp_error err = {0, ""};
    cr_assert_eq(tp__host_subscribe(L.nodes[0].host, "board", "bob", acc, &err), TP_OK);
    json_decref(acc);
    json_t *sch = jtext(DOC);
    int created = 0;
    cr_assert_eq(tp__host_schema_put(L.nodes[0].host, "Other", sch, &created, &err), TP_OK);
    json_decref(sch);
    /* Deleted from the config's models: the catalog no longer has it. */
    cr_assert_eq(tp__host_model_delete(L.nodes[0].host, 0, "alice", "notes", &err), TP_OK);
    settle();
    cat_node_start(1, NULL);
    cr_assert_gt(tp__order_unsynced(L.nodes[1].hub), 0, "not serving before it loaded");
    settle();
    cr_assert_eq(tp__order_unsynced(L.nodes[1].hub), 0);
    assert_same_everywhere(0, "carol", "m1");
    assert_same_everywhere(1, NULL, "board");
    cr_assert_null(host_get(1, 0, "alice", "notes"), "its config's model, deleted, stays gone");
    json_t *subs = NULL;
    cr_assert_eq(tp__host_subscribers(L.nodes[1].host, "board", NULL, 10, &subs, &err), TP_OK);
    cr_assert_eq(json_array_size(json_object_get(subs, "items")), 1);
    json_decref(subs);
    json_t *got = NULL;
    cr_assert_eq(tp__host_schema_get(L.nodes[1].host, "Other", &got, &err), TP_OK,
                 "the named schema reached the new node");
    json_decref(got);
}

Test(order, an_empty_catalog_is_seeded_once_by_the_first_node)
{
    /* Two nodes whose configs differ start together: one seeds, the other
     * takes the catalog (and drops what its config has beyond it). */
    cat_node_start(0, NULL);
    cat_node_start(1, "extra");
    settle();
    cr_assert_eq(L.version >= 1, 1);
    json_t *e0 = host_get(0, 0, "alice", "extra"), *e1 = host_get(1, 0, "alice", "extra");
    cr_assert((e0 == NULL) == (e1 == NULL), "the nodes disagree on alice/extra");
    json_decref(e0);
    json_decref(e1);
    assert_same_everywhere(0, "alice", "notes");
}

Test(order, a_catalog_change_waits_for_the_log_and_lands_when_it_is_back)
{
    for (int k = 0; k < 2; k++)
        cat_node_start(k, NULL);
    settle();
    L.nodes[0].fail_calls = 1;
    uint64_t t0 = tp__ticket_last(L.nodes[0].hub);
    json_t *acc = jtext("{\"access\":\"write\"}");
    tp_error err = {0, ""};
    cr_assert_eq(tp__host_subscribe(L.nodes[0].host, "zzz", "bob", acc, &err), TP_ENOTFOUND);
    host_put(0, 0, "dave", "d1", "{\"schema\":\"Doc\",\"value\":{\"title\":\"while away\"}}");
    json_decref(acc);
    uint64_t t1 = tp__ticket_last(L.nodes[0].hub);
    cr_assert_eq(tp__ticket_state(L.nodes[0].hub, t0, t1, &err), 1);
    tick_all(6000);
    cr_assert_lt(tp__ticket_state(L.nodes[0].hub, t0, t1, &err), 0, "refused after the wait");
    cr_assert(strncmp(err.message, "cluster", 7) == 0, "%s", err.message);
    cr_assert_null(host_get(1, 0, "dave", "d1"));
    /* The link is back: the change, kept, reaches the other node. */
    L.nodes[0].fail_calls = 0;
    tp__order_resync(L.nodes[0].hub);
    settle();
    assert_same_everywhere(0, "dave", "d1");
}
