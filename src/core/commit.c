/*
 * Transactions and the committer thread (commit.h has the contract).
 *
 * A transaction is an array of ops and one byte buffer holding their keys
 * and bodies (offsets, so the buffer may grow): building one costs a few
 * reallocations, not one per record. The committer applies the queued
 * transactions in order within one store transaction: later ops win, as
 * they would across separate commits, since every op is a put or a delete
 * of whole keys.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include "core/commit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "util/alloc.h"
#include "util/error.h"
#include "util/map.h"
#include "util/plan.h"

enum { OP_PUT, OP_DEL, OP_DEL_BELOW, OP_DEL_KEY };

#define NO_K2 ((size_t)-1)

typedef struct txop {
    unsigned char op;
    unsigned char kind;
    int64_t n;
    size_t k1, k2; /* offsets in bytes; k2 NO_K2: NULL */
    size_t body, len;
} txop;

struct tp__txn {
    uint64_t seq;
    txop *ops;
    size_t nops, cap;
    char *bytes;
    size_t used, bcap;
    struct tp__txn *next;
};

struct tp__committer {
    tp_store *st;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t work; /* to the committer: something queued, a retry, stop */
    pthread_cond_t done; /* to waiters: an attempt ended */
    tp__txn *head, *tail;
    int busy;   /* the committer is using the store */
    int failed; /* the last attempt failed: no new one until asked */
    int stop;
    int gate; /* test hook: attempts wait while closed */
    uint64_t attempts, commits, failures, max_group;
    uint64_t skipped; /* ops a later op of their group made pointless (plan) */
    tp__plan plan;    /* plan's table and buffers (the committer's thread) */
    struct gop *plan_ops;
    tp__plan_op *marks;
    size_t plan_cap;
    uint64_t tried;      /* attempts ended */
    uint64_t last_tried; /* the last sequence the last attempt held */
    char why[sizeof(((tp_error *)0)->message)];
    _Atomic uint64_t durable;
    atomic_int failing;
    void (*wake)(void *user);
    void *wake_user;
};

/* ---- Transactions ---- */

tp__txn *
tp__txn_new(uint64_t seq)
{
    tp__txn *t = tp__calloc(1, sizeof *t);
    if (t != NULL)
        t->seq = seq;
    return t;
}

void
tp__txn_free(tp__txn *t)
{
    if (t == NULL)
        return;
    tp__free(t->ops);
    tp__free(t->bytes);
    tp__free(t);
}

uint64_t
tp__txn_seq(const tp__txn *t)
{
    return t->seq;
}

size_t
tp__txn_ops(const tp__txn *t)
{
    return t->nops;
}

/* Appends bytes (and a NUL); returns their offset or NO_K2 on failure. */
static size_t
append(tp__txn *t, const char *p, size_t len)
{
    if (t->bcap - t->used < len + 1) {
        size_t cap = t->bcap ? t->bcap : 1024;
        while (cap - t->used < len + 1)
            cap *= 2;
        char *b = tp__realloc(t->bytes, cap);
        if (b == NULL)
            return NO_K2;
        t->bytes = b;
        t->bcap = cap;
    }
    size_t at = t->used;
    if (len > 0)
        memcpy(t->bytes + at, p, len);
    t->bytes[at + len] = '\0';
    t->used += len + 1;
    return at;
}

static int
add(tp__txn *t, int op, tp__rec_kind kind, const char *k1, const char *k2, int64_t n,
    const char *body, size_t len, tp_error *err)
{
    if (t->nops == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        txop *ops = tp__reallocarray(t->ops, cap, sizeof *ops);
        if (ops == NULL)
            return tp__error_set(err, TP_ENOMEM, "out of memory");
        t->ops = ops;
        t->cap = cap;
    }
    txop o = {(unsigned char)op, (unsigned char)kind, n, 0, NO_K2, 0, 0};
    o.k1 = append(t, k1, strlen(k1));
    if (o.k1 == NO_K2 || (k2 != NULL && (o.k2 = append(t, k2, strlen(k2))) == NO_K2) ||
        (body != NULL && (o.body = append(t, body, len)) == NO_K2))
        return tp__error_set(err, TP_ENOMEM, "out of memory");
    o.len = len;
    t->ops[t->nops++] = o;
    return TP_OK;
}

int
tp__txn_put(tp__txn *t, const tp__rec *rec, tp_error *err)
{
    return add(t, OP_PUT, rec->kind, rec->k1, rec->k2, rec->n, rec->body, rec->body_len, err);
}

int
tp__txn_del(tp__txn *t, tp__rec_kind kind, const char *k1, const char *k2, int64_t n, tp_error *err)
{
    return add(t, OP_DEL, kind, k1, k2, n, NULL, 0, err);
}

int
tp__txn_del_below(tp__txn *t, tp__rec_kind kind, const char *k1, const char *k2, int64_t n,
                  tp_error *err)
{
    return add(t, OP_DEL_BELOW, kind, k1, k2, n, NULL, 0, err);
}

int
tp__txn_del_key(tp__txn *t, tp__rec_kind kind, const char *k1, const char *k2, tp_error *err)
{
    return add(t, OP_DEL_KEY, kind, k1, k2, 0, NULL, 0, err);
}

static int
apply(tp_store *st, const tp__txn *t, const txop *o, tp_error *err)
{
    const char *k1 = t->bytes + o->k1;
    const char *k2 = o->k2 == NO_K2 ? NULL : t->bytes + o->k2;
    switch (o->op) {
    case OP_PUT: {
        tp__rec r = {(tp__rec_kind)o->kind, k1, k2 ? k2 : "", o->n, t->bytes + o->body, o->len};
        return st->ops->put(st, &r, err);
    }
    case OP_DEL: return st->ops->del(st, (tp__rec_kind)o->kind, k1, k2 ? k2 : "", o->n, err);
    case OP_DEL_BELOW:
        return st->ops->del_below(st, (tp__rec_kind)o->kind, k1, k2 ? k2 : "", o->n, err);
    default: return st->ops->del_key(st, (tp__rec_kind)o->kind, k1, k2, err);
    }
}

/* ---- A group's plan: the ops a later op of the group makes pointless ---- */

/* An op of the group, in order. */
struct gop {
    const tp__txn *t;
    const txop *o;
};
typedef struct gop gop;

/*
 * plan lists the ops of the transactions first..last in order in c->plan_ops
 * and marks in c->marks those a later op of the same group makes pointless
 * (util/plan.h: a put a later put replaces, a del_below a later one covers).
 * Under load, a model's record and a client's record are then written once
 * per store commit instead of once per loop iteration the commit groups.
 * Returns NULL when out of memory (then every op is applied).
 */
static gop *
plan(tp__committer *c, const tp__txn *first, const tp__txn *last, size_t *count)
{
    size_t n = 0;
    for (const tp__txn *t = first;; t = t->next) {
        n += t->nops;
        if (t == last)
            break;
    }
    /* Kept from one commit to the next, grown only: a buffer allocated and
     * freed per commit made the allocator grow and shrink the thread's heap
     * (an mprotect each time) dozens of times a commit. */
    if (n > c->plan_cap) {
        gop *ops = tp__reallocarray(c->plan_ops, n, sizeof *ops);
        if (ops == NULL)
            return NULL;
        c->plan_ops = ops;
        tp__plan_op *marks = tp__reallocarray(c->marks, n, sizeof *marks);
        if (marks == NULL)
            return NULL;
        c->marks = marks;
        c->plan_cap = n;
    }
    gop *ops = c->plan_ops;
    size_t k = 0;
    for (const tp__txn *t = first;; t = t->next) {
        for (size_t i = 0; i < t->nops; i++, k++) {
            const txop *o = &t->ops[i];
            ops[k] = (gop){t, o};
            tp__plan_op *m = &c->marks[k];
            *m = (tp__plan_op){TP__PLAN_OTHER, o->kind, 0, o->n, NULL, 0, 0};
            if ((o->op == OP_PUT || o->op == OP_DEL_BELOW) && o->k2 != NO_K2) {
                /* k1 and k2 are appended one after the other, with their
                 * NULs (add()): the key is k1 NUL k2 NUL. */
                m->what = o->op == OP_PUT ? TP__PLAN_PUT : TP__PLAN_DEL_BELOW;
                m->key = t->bytes + o->k1;
                m->split = o->k2 - o->k1;
                m->len = m->split + strlen(t->bytes + o->k2) + 1;
            }
        }
        if (t == last)
            break;
    }
    if (tp__plan_mark(&c->plan, c->marks, n) < 0)
        return NULL;
    *count = n;
    return ops;
}

/* ---- The thread ---- */

static void *
run(void *arg)
{
    tp__committer *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->stop && (c->head == NULL || c->failed))
            pthread_cond_wait(&c->work, &c->mu);
        if (c->head == NULL || c->failed)
            break; /* stopping */
        /* Everything queued now goes in this one store transaction. */
        tp__txn *first = c->head, *last = c->tail;
        c->busy = 1;
        c->attempts++;
        while (c->gate && !c->stop)
            pthread_cond_wait(&c->work, &c->mu);
        pthread_mutex_unlock(&c->mu);

        tp_error err = {0, ""};
        uint64_t group = 0;
        size_t nops = 0, skipped = 0;
        gop *ops = plan(c, first, last, &nops);
        int rc = c->st->ops->begin(c->st, &err);
        for (size_t i = 0; ops != NULL && rc == TP_OK && i < nops; i++) {
            if (c->marks[i].skip)
                skipped++;
            else
                rc = apply(c->st, ops[i].t, ops[i].o, &err);
        }
        for (tp__txn *t = first; rc == TP_OK; t = t->next) {
            for (size_t i = 0; ops == NULL && rc == TP_OK && i < t->nops; i++)
                rc = apply(c->st, t, &t->ops[i], &err);
            group++;
            if (t == last)
                break;
        }
        if (rc == TP_OK)
            rc = c->st->ops->commit(c->st, &err);
        if (rc != TP_OK)
            c->st->ops->rollback(c->st);

        pthread_mutex_lock(&c->mu);
        c->busy = 0;
        c->tried++;
        c->last_tried = last->seq;
        tp__txn *drop = NULL;
        if (rc == TP_OK) {
            drop = c->head;
            c->head = last->next;
            if (c->head == NULL)
                c->tail = NULL;
            last->next = NULL;
            c->commits++;
            c->skipped += skipped;
            if (group > c->max_group)
                c->max_group = group;
            atomic_store(&c->durable, last->seq);
            c->failed = 0;
            atomic_store(&c->failing, 0);
        } else {
            c->failures++;
            c->failed = 1;
            snprintf(c->why, sizeof c->why, "%s", err.message[0] ? err.message : "commit failed");
            atomic_store(&c->failing, 1);
        }
        pthread_cond_broadcast(&c->done);
        if (c->wake != NULL)
            c->wake(c->wake_user);
        pthread_mutex_unlock(&c->mu);
        while (drop != NULL) {
            tp__txn *next = drop->next;
            tp__txn_free(drop);
            drop = next;
        }
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

tp__committer *
tp__committer_new(tp_store *st, tp_error *err)
{
    tp__committer *c = tp__calloc(1, sizeof *c);
    if (c == NULL) {
        tp__error_set(err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    c->st = st;
    c->plan.seed = tp__seed(c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->work, NULL);
    pthread_cond_init(&c->done, NULL);
    atomic_init(&c->durable, 0);
    atomic_init(&c->failing, 0);
    if (pthread_create(&c->thread, NULL, run, c) != 0) {
        tp__error_set(err, TP_EINTERNAL, "store: cannot start the commit thread");
        tp__committer_free(c);
        return NULL;
    }
    c->started = 1;
    /* The benchmark tells its CPU from the loop's by this name. */
    pthread_setname_np(c->thread, "tp-commit");
    return c;
}

void
tp__committer_free(tp__committer *c)
{
    if (c == NULL)
        return;
    if (c->started) {
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        c->failed = 1; /* no further attempt: the caller committed what it could */
        c->wake = NULL;
        pthread_cond_broadcast(&c->work);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
    }
    while (c->head != NULL) {
        tp__txn *next = c->head->next;
        tp__txn_free(c->head);
        c->head = next;
    }
    pthread_cond_destroy(&c->done);
    pthread_cond_destroy(&c->work);
    pthread_mutex_destroy(&c->mu);
    tp__free(c->plan_ops);
    tp__free(c->marks);
    tp__plan_free(&c->plan);
    tp__free(c);
}

void
tp__committer_push(tp__committer *c, tp__txn *t)
{
    t->next = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->tail != NULL)
        c->tail->next = t;
    else
        c->head = t;
    c->tail = t;
    pthread_cond_signal(&c->work);
    pthread_mutex_unlock(&c->mu);
}

void
tp__committer_set_wake(tp__committer *c, void (*fn)(void *user), void *user)
{
    pthread_mutex_lock(&c->mu);
    c->wake = fn;
    c->wake_user = user;
    pthread_mutex_unlock(&c->mu);
}

uint64_t
tp__committer_durable(tp__committer *c)
{
    return atomic_load(&c->durable);
}

int
tp__committer_failing(tp__committer *c, char *why, size_t n)
{
    if (!atomic_load(&c->failing))
        return 0;
    if (why != NULL) {
        pthread_mutex_lock(&c->mu);
        snprintf(why, n, "%s", c->why);
        pthread_mutex_unlock(&c->mu);
    }
    return 1;
}

void
tp__committer_retry(tp__committer *c)
{
    pthread_mutex_lock(&c->mu);
    if (c->failed && !c->stop) {
        c->failed = 0;
        pthread_cond_signal(&c->work);
    }
    pthread_mutex_unlock(&c->mu);
}

int
tp__committer_wait(tp__committer *c, uint64_t seq, int retry, tp_error *err)
{
    pthread_mutex_lock(&c->mu);
    /* retry: a failure already reported does not count; only one of an
     * attempt made from now on. Without it, any failed attempt that held
     * seq counts (seq was pushed just before: it is this call's). */
    uint64_t tried = 0;
    if (retry) {
        if (c->failed && !c->stop) {
            c->failed = 0;
            pthread_cond_signal(&c->work);
        }
        tried = c->tried;
    }
    int rc = TP_OK;
    while (atomic_load(&c->durable) < seq) {
        if (c->stop) {
            rc = tp__error_set(err, TP_EINTERNAL, "storage: %s", c->why);
            break;
        }
        if (c->failed) {
            if (c->tried > tried && c->last_tried >= seq) {
                rc = tp__error_set(err, TP_EINTERNAL, "storage: %s", c->why);
                break;
            }
            c->failed = 0; /* an older transaction failed: try again with seq */
            pthread_cond_signal(&c->work);
        }
        pthread_cond_wait(&c->done, &c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int
tp__committer_read_begin(tp__committer *c, tp_error *err)
{
    pthread_mutex_lock(&c->mu);
    while ((c->head != NULL || c->busy) && !c->failed)
        pthread_cond_wait(&c->done, &c->mu);
    if (c->failed && c->head != NULL) {
        tp__error_set(err, TP_EINTERNAL, "storage: commits are failing (%s)", c->why);
        pthread_mutex_unlock(&c->mu);
        return TP_EINTERNAL;
    }
    return TP_OK; /* the mutex stays held: the committer cannot start */
}

void
tp__committer_read_end(tp__committer *c)
{
    pthread_mutex_unlock(&c->mu);
}

void
tp__committer_stats(tp__committer *c, uint64_t *commits, uint64_t *failures, uint64_t *max_group)
{
    pthread_mutex_lock(&c->mu);
    *commits = c->commits;
    *failures = c->failures;
    *max_group = c->max_group;
    pthread_mutex_unlock(&c->mu);
}

uint64_t
tp__committer_skipped(tp__committer *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t n = c->skipped;
    pthread_mutex_unlock(&c->mu);
    return n;
}

void
tp__committer_gate(tp__committer *c, int closed)
{
    pthread_mutex_lock(&c->mu);
    c->gate = closed;
    pthread_cond_broadcast(&c->work);
    pthread_mutex_unlock(&c->mu);
}

uint64_t
tp__committer_attempts(tp__committer *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t n = c->attempts;
    pthread_mutex_unlock(&c->mu);
    return n;
}
