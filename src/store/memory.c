/*
 * The memory store: records in one AVL tree per kind, ordered by (k1, k2, n)
 * bytewise, so put and del cost O(log n) and a scan walks its range in order.
 *
 * Transactions write straight into the trees and keep an undo log: a put
 * records the node it added and the node it replaced, a delete the node it
 * removed. Nodes are intrusive (key and body live in the node), so putting
 * a removed node back into its tree allocates nothing: rollback cannot fail,
 * and commit, which only frees the removed nodes, cannot fail either. Every
 * allocation a write needs (its node, its undo entries) is made before the
 * write changes anything, so a write that fails for want of memory changes
 * nothing. Scans inside a transaction see its writes for free.
 */
#include <stdint.h>
#include <string.h>

#include "store/store.h"
#include "util/alloc.h"
#include "util/error.h"

typedef struct node {
    struct node *left, *right;
    int height;
    int64_t n;
    const char *k2;   /* points into data, after k1 */
    const char *body; /* points into data, after k2 */
    size_t body_len;
    char k1[]; /* k1 NUL k2 NUL body */
} node;

typedef struct key {
    const char *k1, *k2;
    int64_t n;
} key;

/* One entry of the undo log: a put has added (and maybe removed the record
 * it replaced); a delete has removed only. */
typedef struct undo {
    node *added;
    node *removed;
    tp__rec_kind kind;
} undo;

typedef struct mem_store {
    struct tp_store base; /* first: a tp_store * is a mem_store * */
    node *root[TP__REC_KINDS];
    size_t count[TP__REC_KINDS];
    int in_txn;
    int doomed;   /* a call failed inside the transaction */
    int implicit; /* the transaction is a write outside begin/commit */
    int scanning; /* scans under way (a callback may scan again) */
    undo *log;
    size_t log_len, log_cap;
    /* Failure injection (tp__store_memory_fail). */
    unsigned fail_ops;
    long fail_after, fail_count;
} mem_store;

/* ---- The tree ---- */

static int
cmp_key(const key *a, const node *b)
{
    int c = strcmp(a->k1, b->k1); /* strcmp compares as unsigned char: bytewise */
    if (c != 0)
        return c;
    c = strcmp(a->k2, b->k2);
    if (c != 0)
        return c;
    return a->n < b->n ? -1 : a->n > b->n;
}

static int
height(const node *t)
{
    return t != NULL ? t->height : 0;
}

static void
fix_height(node *t)
{
    int hl = height(t->left), hr = height(t->right);
    t->height = (hl > hr ? hl : hr) + 1;
}

static node *
rotate_right(node *t)
{
    node *l = t->left;
    t->left = l->right;
    l->right = t;
    fix_height(t);
    fix_height(l);
    return l;
}

static node *
rotate_left(node *t)
{
    node *r = t->right;
    t->right = r->left;
    r->left = t;
    fix_height(t);
    fix_height(r);
    return r;
}

static node *
balance(node *t)
{
    fix_height(t);
    int bf = height(t->left) - height(t->right);
    if (bf > 1) {
        if (height(t->left->left) < height(t->left->right))
            t->left = rotate_left(t->left);
        return rotate_right(t);
    }
    if (bf < -1) {
        if (height(t->right->right) < height(t->right->left))
            t->right = rotate_right(t->right);
        return rotate_left(t);
    }
    return t;
}

/* insert links x into the tree; a node with x's key must not be there. */
static node *
insert(node *t, node *x)
{
    if (t == NULL) {
        x->left = x->right = NULL;
        x->height = 1;
        return x;
    }
    key k = {x->k1, x->k2, x->n};
    if (cmp_key(&k, t) < 0)
        t->left = insert(t->left, x);
    else
        t->right = insert(t->right, x);
    return balance(t);
}

static node *
unlink_min(node *t, node **min)
{
    if (t->left == NULL) {
        *min = t;
        return t->right;
    }
    t->left = unlink_min(t->left, min);
    return balance(t);
}

/* unlink takes the node with key k out of the tree, into *out (NULL when
 * there is none), and returns the new root. */
static node *
unlink_key(node *t, const key *k, node **out)
{
    if (t == NULL)
        return NULL;
    int c = cmp_key(k, t);
    if (c < 0)
        t->left = unlink_key(t->left, k, out);
    else if (c > 0)
        t->right = unlink_key(t->right, k, out);
    else {
        *out = t;
        node *l = t->left, *r = t->right;
        if (r == NULL)
            return l;
        node *m;
        r = unlink_min(r, &m);
        m->left = l;
        m->right = r;
        return balance(m);
    }
    return balance(t);
}

static node *
find(node *t, const key *k)
{
    while (t != NULL) {
        int c = cmp_key(k, t);
        if (c == 0)
            return t;
        t = c < 0 ? t->left : t->right;
    }
    return NULL;
}

/*
 * A range of records: every record of a kind (k1 NULL), of (k1) (k2 NULL),
 * of (k1, k2), or of (k1, k2) with n below `below` (has_below). Ranges are
 * contiguous in the tree's order.
 */
typedef struct range {
    const char *k1, *k2;
    int has_below;
    int64_t below;
} range;

/* Where t lies against the range: < 0 before it, > 0 after it, 0 inside. */
static int
range_cmp(const range *r, const node *t)
{
    if (r->k1 == NULL)
        return 0;
    int c = strcmp(t->k1, r->k1);
    if (c != 0 || r->k2 == NULL)
        return c;
    c = strcmp(t->k2, r->k2);
    if (c != 0 || !r->has_below)
        return c;
    return t->n < r->below ? 0 : 1;
}

typedef int (*visit_fn)(node *t, void *user);

/* visit calls fn on every node of the range in order; stops at the first
 * nonzero return, and returns it. The tree must not change meanwhile. */
static int
visit(node *t, const range *r, visit_fn fn, void *user)
{
    while (t != NULL) {
        int c = range_cmp(r, t);
        int rc;
        if (c >= 0 && (rc = visit(t->left, r, fn, user)) != 0)
            return rc;
        if (c == 0 && (rc = fn(t, user)) != 0)
            return rc;
        if (c > 0)
            return 0;
        t = t->right; /* the right subtree, iteratively: the tail call */
    }
    return 0;
}

static void
free_tree(node *t)
{
    while (t != NULL) {
        free_tree(t->left);
        node *r = t->right;
        tp__free(t);
        t = r;
    }
}

/* ---- Transactions ---- */

/* inject says whether a call of kind op fails by injection. */
static int
inject(mem_store *m, unsigned op)
{
    if ((m->fail_ops & op) == 0)
        return 0;
    if (m->fail_after > 0) {
        m->fail_after--;
        return 0;
    }
    if (m->fail_count == 0)
        return 0;
    if (m->fail_count > 0)
        m->fail_count--;
    return 1;
}

static int
log_reserve(mem_store *m, size_t n)
{
    if (m->log_cap - m->log_len >= n)
        return 0;
    size_t cap = m->log_cap != 0 ? m->log_cap : 16;
    while (cap - m->log_len < n) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    undo *log = tp__reallocarray(m->log, cap, sizeof *log);
    if (log == NULL)
        return -1;
    m->log = log;
    m->log_cap = cap;
    return 0;
}

static void
undo_all(mem_store *m)
{
    while (m->log_len > 0) {
        undo *u = &m->log[--m->log_len];
        if (u->added != NULL) {
            key k = {u->added->k1, u->added->k2, u->added->n};
            node *out = NULL;
            m->root[u->kind] = unlink_key(m->root[u->kind], &k, &out);
            tp__free(out);
            m->count[u->kind]--;
        }
        if (u->removed != NULL) {
            m->root[u->kind] = insert(m->root[u->kind], u->removed);
            m->count[u->kind]++;
        }
    }
}

static void
forget_log(mem_store *m)
{
    for (size_t i = 0; i < m->log_len; i++)
        tp__free(m->log[i].removed);
    m->log_len = 0;
    /* A transaction that held many records gives its log back. */
    if (m->log_cap > 4096) {
        tp__free(m->log);
        m->log = NULL;
        m->log_cap = 0;
    }
}

static void
end_txn(mem_store *m)
{
    m->in_txn = m->doomed = m->implicit = 0;
}

/* fail fills err; inside a transaction, it dooms it. */
static int
fail(mem_store *m, tp_error *err, int code, const char *call, const char *why)
{
    if (m->in_txn)
        m->doomed = 1;
    return tp__error_set(err, code, "memory: %s: %s", call, why);
}

/* write_start opens the implicit transaction of a write outside one and
 * checks what every write checks; returns TP_OK or a failure. */
static int
write_start(mem_store *m, const char *call, unsigned op, tp_error *err)
{
    if (m->scanning)
        return fail(m, err, TP_EINTERNAL, call, "a write during a scan");
    if (m->in_txn && m->doomed)
        return tp__error_set(err, TP_EINTERNAL,
                             "memory: %s: the transaction failed earlier; roll it back", call);
    if (inject(m, op))
        return fail(m, err, TP_EINTERNAL, call, "injected failure");
    if (!m->in_txn) {
        m->in_txn = 1;
        m->implicit = 1;
    }
    return TP_OK;
}

/* write_end commits an implicit transaction, or on failure undoes it. */
static int
write_end(mem_store *m, int rc)
{
    if (m->implicit) {
        if (rc == TP_OK)
            forget_log(m);
        else
            undo_all(m);
        end_txn(m);
    }
    return rc;
}

static int
check_kind(tp__rec_kind kind)
{
    return (int)kind >= 0 && kind < TP__REC_KINDS;
}

static int
mem_begin(tp_store *s, tp_error *err)
{
    mem_store *m = (mem_store *)s;
    if (m->in_txn)
        return tp__error_set(err, TP_EINTERNAL, "memory: begin: a transaction is already open");
    if (inject(m, TP__STORE_OP_BEGIN))
        return tp__error_set(err, TP_EINTERNAL, "memory: begin: injected failure");
    m->in_txn = 1;
    return TP_OK;
}

static int
mem_put(tp_store *s, const tp__rec *rec, tp_error *err)
{
    mem_store *m = (mem_store *)s;
    if (rec == NULL || !check_kind(rec->kind) || rec->k1 == NULL || rec->k2 == NULL ||
        (rec->body == NULL && rec->body_len > 0))
        return fail(m, err, TP_EARG, "put", "bad record (kind, NULL key or body)");
    int rc = write_start(m, "put", TP__STORE_OP_PUT, err);
    if (rc != TP_OK)
        return rc;
    size_t l1 = strlen(rec->k1), l2 = strlen(rec->k2);
    size_t size = sizeof(node) + l1 + 1 + l2 + 1;
    node *x = NULL;
    if (rec->body_len <= SIZE_MAX - size)
        x = tp__malloc(size + rec->body_len);
    if (x == NULL || log_reserve(m, 1) != 0) {
        tp__free(x);
        return write_end(m, fail(m, err, TP_ENOMEM, "put", "out of memory"));
    }
    memcpy(x->k1, rec->k1, l1 + 1);
    char *k2 = x->k1 + l1 + 1;
    memcpy(k2, rec->k2, l2 + 1);
    char *body = k2 + l2 + 1;
    if (rec->body_len > 0)
        memcpy(body, rec->body, rec->body_len);
    x->k2 = k2;
    x->body = body;
    x->body_len = rec->body_len;
    x->n = rec->n;

    key k = {x->k1, x->k2, x->n};
    node *old = NULL;
    m->root[rec->kind] = unlink_key(m->root[rec->kind], &k, &old);
    m->root[rec->kind] = insert(m->root[rec->kind], x);
    if (old == NULL)
        m->count[rec->kind]++;
    m->log[m->log_len++] = (undo){x, old, rec->kind};
    return write_end(m, TP_OK);
}

/* Deletes: collect the nodes of a range into the undo log, then unlink. */
typedef struct collect {
    mem_store *m;
    tp__rec_kind kind;
    size_t n;
} collect;

static int
count_one(node *t, void *user)
{
    (void)t;
    ((collect *)user)->n++;
    return 0;
}

static int
log_one(node *t, void *user)
{
    collect *c = user;
    c->m->log[c->m->log_len++] = (undo){NULL, t, c->kind};
    return 0;
}

static int
delete_range(mem_store *m, tp__rec_kind kind, const range *r, const char *call, tp_error *err)
{
    if (!check_kind(kind) || r->k1 == NULL || (r->has_below && r->k2 == NULL))
        return fail(m, err, TP_EARG, call, "bad kind or NULL key");
    int rc = write_start(m, call, TP__STORE_OP_DEL, err);
    if (rc != TP_OK)
        return rc;
    collect c = {m, kind, 0};
    visit(m->root[kind], r, count_one, &c);
    if (log_reserve(m, c.n) != 0)
        return write_end(m, fail(m, err, TP_ENOMEM, call, "out of memory"));
    size_t first = m->log_len;
    visit(m->root[kind], r, log_one, &c);
    for (size_t i = first; i < m->log_len; i++) {
        node *t = m->log[i].removed, *out = NULL;
        key k = {t->k1, t->k2, t->n};
        m->root[kind] = unlink_key(m->root[kind], &k, &out);
        m->count[kind]--;
    }
    return write_end(m, TP_OK);
}

static int
mem_del(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2, int64_t n, tp_error *err)
{
    mem_store *m = (mem_store *)s;
    if (!check_kind(kind) || k1 == NULL || k2 == NULL)
        return fail(m, err, TP_EARG, "del", "bad kind or NULL key");
    int rc = write_start(m, "del", TP__STORE_OP_DEL, err);
    if (rc != TP_OK)
        return rc;
    key k = {k1, k2, n};
    if (find(m->root[kind], &k) == NULL)
        return write_end(m, TP_OK);
    if (log_reserve(m, 1) != 0)
        return write_end(m, fail(m, err, TP_ENOMEM, "del", "out of memory"));
    node *out = NULL;
    m->root[kind] = unlink_key(m->root[kind], &k, &out);
    m->count[kind]--;
    m->log[m->log_len++] = (undo){NULL, out, kind};
    return write_end(m, TP_OK);
}

static int
mem_del_below(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2, int64_t n,
              tp_error *err)
{
    range r = {k1, k2, 1, n};
    return delete_range((mem_store *)s, kind, &r, "del_below", err);
}

static int
mem_del_key(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2, tp_error *err)
{
    range r = {k1, k2, 0, 0};
    return delete_range((mem_store *)s, kind, &r, "del_key", err);
}

static int
mem_commit(tp_store *s, tp_error *err)
{
    mem_store *m = (mem_store *)s;
    if (!m->in_txn)
        return tp__error_set(err, TP_EINTERNAL, "memory: commit: no transaction is open");
    if (m->doomed || inject(m, TP__STORE_OP_COMMIT)) {
        int doomed = m->doomed;
        undo_all(m);
        end_txn(m);
        return tp__error_set(err, TP_EINTERNAL, "memory: commit: %s",
                             doomed ? "the transaction failed earlier; rolled back"
                                    : "injected failure");
    }
    forget_log(m);
    end_txn(m);
    return TP_OK;
}

static void
mem_rollback(tp_store *s)
{
    mem_store *m = (mem_store *)s;
    if (!m->in_txn)
        return;
    undo_all(m);
    end_txn(m);
}

typedef struct scan_ctx {
    tp__rec_kind kind;
    tp__rec_fn fn;
    void *user;
} scan_ctx;

static int
scan_one(node *t, void *user)
{
    scan_ctx *c = user;
    tp__rec rec = {c->kind, t->k1, t->k2, t->n, t->body, t->body_len};
    return c->fn(&rec, c->user);
}

static int
mem_scan(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2, tp__rec_fn fn, void *user,
         tp_error *err)
{
    mem_store *m = (mem_store *)s;
    if (!check_kind(kind) || fn == NULL)
        return fail(m, err, TP_EARG, "scan", "bad kind or NULL callback");
    if (inject(m, TP__STORE_OP_SCAN))
        return fail(m, err, TP_EINTERNAL, "scan", "injected failure");
    range r = {k1, k1 != NULL ? k2 : NULL, 0, 0};
    scan_ctx c = {kind, fn, user};
    m->scanning++;
    int rc = visit(m->root[kind], &r, scan_one, &c);
    m->scanning--;
    return rc;
}

static void
mem_free(tp_store *s)
{
    mem_store *m = (mem_store *)s;
    mem_rollback(s);
    for (int k = 0; k < TP__REC_KINDS; k++)
        free_tree(m->root[k]);
    tp__free(m->log);
    tp__free(m);
}

static const tp__store_ops mem_ops = {
    .name = "memory",
    .begin = mem_begin,
    .put = mem_put,
    .del = mem_del,
    .del_below = mem_del_below,
    .del_key = mem_del_key,
    .commit = mem_commit,
    .rollback = mem_rollback,
    .scan = mem_scan,
    .free = mem_free,
};

TP_API tp_store *
tp_store_memory(void)
{
    mem_store *m = tp__calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->base.ops = &mem_ops;
    return &m->base;
}

int
tp__store_memory_fail(tp_store *s, unsigned ops, long after, long count)
{
    if (s == NULL || s->ops != &mem_ops)
        return TP_EARG;
    mem_store *m = (mem_store *)s;
    m->fail_ops = ops;
    m->fail_after = after > 0 ? after : 0;
    m->fail_count = count;
    return TP_OK;
}

long
tp__store_memory_count(tp_store *s, tp__rec_kind kind)
{
    if (s == NULL || s->ops != &mem_ops || !check_kind(kind))
        return -1;
    return (long)((mem_store *)s)->count[kind];
}
