/*
 * The SQLite store: one table per record kind, (k1, k2, n) the primary key
 * of a WITHOUT ROWID table, so that records are clustered in key order and a
 * scan is a walk of the primary key's b-tree. WAL mode; the file's schema
 * version is PRAGMA user_version, brought up to date by the migrations
 * below, all in one transaction. docs/internals/store.md has the why.
 *
 * A commit does not write the tables. It appends the transaction's ops, as
 * one row of bytes, to a second database beside the first, "<db>-log", and
 * syncs that: an append at the end of one b-tree, a few pages whatever the
 * transaction touched. A thread of the store's own (`tp-fold`) applies what
 * was logged to the tables about once a second, in one transaction, with
 * the number of the last row it applied; rows the tables hold for good are
 * then deleted from the log. Writes spread over thousands of models dirty a
 * table page each per write when each commit writes the tables (the WAL
 * then carries ~16 KiB per write); folded a second at a time, a page takes
 * every write to it that second at once. Opening applies whatever the log
 * holds past the tables' number, so a crash between the two loses nothing.
 * A scan first folds what is logged (or, when that fails, applies it in a
 * transaction it rolls back after the scan), so it reads every committed
 * record.
 *
 * Statements are prepared once per kind and operation, on first use, and
 * kept. Every statement is reset as soon as its result is read, so none
 * holds a read transaction open between calls.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/map.h"
#include "util/plan.h"

#define TP__SQLITE_CACHE_KIB "16384" /* the page cache, KiB */
/* Pages the WAL may hold before a commit checkpoints it into the database
 * (SQLite's default is 1000). A checkpoint writes every page changed since
 * the last one and syncs the database; rarer checkpoints write a page once
 * for many folds. */
#define TP__SQLITE_CHECKPOINT_PAGES "8192"
/* The WAL file is cut back to this after a checkpoint resets it. */
#define TP__SQLITE_WAL_LIMIT "33554432"

/* The log's pages: its rows are blobs of whole transactions. Larger pages
 * than SQLite's 4 KiB take one in fewer WAL frames (a write or two each);
 * much larger ones rewrite a whole page for the last bytes of each commit.
 * tp-commit's CPU at W2, 2000 tenants: 0.91, 0.61 and 0.82 s per 4 s with
 * 4, 16 and 64 KiB pages. */
#define TP__SQLITE_LOG_PAGE "16384"
/* Logged bytes are folded into the tables at the latest this long after the
 * first of them was logged, or as soon as this many are waiting. */
#define TP__SQLITE_FOLD_MS 1000
#define TP__SQLITE_FOLD_BYTES (16u << 20)
/* After a failed fold, the next try waits this long. */
#define TP__SQLITE_FOLD_RETRY_MS 100
/* Logged bytes not yet folded that a commit may add to: past it, commits
 * wait for the fold thread, or fail while folds fail (memory holds them). */
#define TP__SQLITE_PENDING_MAX (256u << 20)
/* A log row holds at most this many bytes of ops (more only for one op). */
#define TP__SQLITE_ROW_BYTES (64u << 20)
/* A commit deletes at most this many folded rows from the log. A second of
 * rows deleted in one commit (W2, 2000 tenants: about 1600 rows, 4 MiB)
 * made that commit take 25 to 200 ms; a commit adds a row or a few, so
 * slices this size keep up. */
#define TP__SQLITE_TRIM_ROWS 32
#define LOG_SUFFIX "-log"

/* "tpst": the file's PRAGMA application_id, so that `file` and this code
 * can tell a transports store from another program's database. */
#define APPLICATION_ID 0x74707374

/* ------------------------------------------------------------------------ */
/* Migrations                                                                */
/* ------------------------------------------------------------------------ */

#define TABLE(name)                                                                                \
    "CREATE TABLE " name " ("                                                                      \
    "k1 TEXT NOT NULL COLLATE BINARY, "                                                            \
    "k2 TEXT NOT NULL COLLATE BINARY, "                                                            \
    "n INTEGER NOT NULL, "                                                                         \
    "body BLOB NOT NULL, "                                                                         \
    "PRIMARY KEY (k1, k2, n)) WITHOUT ROWID;\n"

/*
 * migrations[i] brings a file from user_version i to i + 1. Append only:
 * never edit one that has shipped, since files out there are at its version.
 * A file newer than the last one is refused (TP_EARG), never downgraded.
 */
static const char *const migrations[] = {
    /* 1: the tables, one per kind (tp__store_kind_name). */
    TABLE("meta") TABLE("tenants") TABLE("models") TABLE("history") TABLE("subscriptions")
        TABLE("clients") TABLE("outcomes"),
    /* 2: the number of the last log row the tables hold (one row). */
    "CREATE TABLE folded (id INTEGER PRIMARY KEY CHECK (id = 0), seq INTEGER NOT NULL);\n"
    "INSERT INTO folded (id, seq) VALUES (0, 0);\n",
};

#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* The log's one table: a row per committed transaction, its ops as bytes
 * (log_op has the layout). */
#define LOG_TABLE "CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, ops BLOB NOT NULL)"

/* ------------------------------------------------------------------------ */
/* The store                                                                 */
/* ------------------------------------------------------------------------ */

typedef enum {
    OP_PUT = 0,
    OP_DEL,
    OP_DEL_BELOW,
    OP_DEL_K2,  /* del_key with k2 */
    OP_DEL_K1,  /* del_key without */
    OP_SCAN,    /* every record of the kind */
    OP_SCAN_K1, /* of (k1) */
    OP_SCAN_K2, /* of (k1, k2) */
    OP_COUNT
} op;

/* The statements, with %s for the table. ORDER BY names the primary key's
 * columns, so SQLite walks the key's b-tree and sorts nothing. */
static const char *const op_sql[OP_COUNT] = {
    [OP_PUT] = "INSERT OR REPLACE INTO %s (k1, k2, n, body) VALUES (?1, ?2, ?3, ?4)",
    [OP_DEL] = "DELETE FROM %s WHERE k1 = ?1 AND k2 = ?2 AND n = ?3",
    [OP_DEL_BELOW] = "DELETE FROM %s WHERE k1 = ?1 AND k2 = ?2 AND n < ?3",
    [OP_DEL_K2] = "DELETE FROM %s WHERE k1 = ?1 AND k2 = ?2",
    [OP_DEL_K1] = "DELETE FROM %s WHERE k1 = ?1",
    [OP_SCAN] = "SELECT k1, k2, n, body FROM %s ORDER BY k1, k2, n",
    [OP_SCAN_K1] = "SELECT k1, k2, n, body FROM %s WHERE k1 = ?1 ORDER BY k1, k2, n",
    [OP_SCAN_K2] = "SELECT k1, k2, n, body FROM %s WHERE k1 = ?1 AND k2 = ?2 ORDER BY k1, k2, n",
};

/* A logged transaction on its way to the tables. */
typedef struct group {
    uint64_t seq;
    unsigned char *ops;
    size_t len;
    struct group *next;
} group;

typedef struct sql_store {
    struct tp_store base; /* first: a tp_store * is a sql_store * */
    /* The tables: the fold thread's, and the scans' (one at a time: dbmu). */
    sqlite3 *db;
    sqlite3_stmt *stmt[TP__REC_KINDS][OP_COUNT];
    sqlite3_stmt *begin, *commit, *rollback, *set_folded;
    pthread_mutex_t dbmu;
    /* The log: the committing thread's. NULL for an in-memory database,
     * whose commits write the tables themselves. */
    sqlite3 *log;
    sqlite3 *logck; /* the fold thread's, for the log's checkpoints */
    sqlite3_stmt *log_begin, *log_commit, *log_rollback, *log_insert, *log_trim;
    tp_sync sync;
    int busy_ms; /* busy timeout, both files */
    /* The open transaction: its ops, as they will be logged. */
    unsigned char *tx;
    size_t tx_len, tx_cap;
    size_t tx_hint; /* the last logged transaction's size */
    int in_txn;
    int doomed;   /* a call failed inside the transaction */
    int scanning; /* scans under way (a callback may scan again) */
    int overlay;  /* the outermost scan's savepoint is open (scan_enter) */
    struct covered {
        tp__rec_kind kind;
        char *k1;  /* NULL: the whole kind */
    } covered[16]; /* what the savepoint holds the unfolded ops of */
    size_t ncovered;
    uint64_t next_seq;
    uint64_t trimmed; /* log rows up to this one are deleted */
    int lock_fd;      /* the lock file's descriptor (lock_database), or -1 */
    /* The fold's plan and its buffers (whoever holds dbmu). */
    tp__plan plan;
    struct lop *fold_ops;
    tp__plan_op *fold_marks;
    size_t fold_cap;
    /* Shared with the fold thread, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t fold_cv; /* to the fold thread: a group, or stop */
    pthread_cond_t room_cv; /* to committers: a fold ended */
    group *head, *tail;     /* logged, not folded, in order */
    size_t pending;         /* their bytes, those being folded included */
    int64_t fold_ms;        /* TP__SQLITE_FOLD_MS, ... (tp__store_sqlite_limits) */
    size_t fold_bytes, pending_max;
    size_t row_bytes;                           /* TP__SQLITE_ROW_BYTES */
    uint64_t folded;                            /* the last row the tables hold */
    int64_t due_ns;                             /* when the oldest group is folded at the latest */
    int failing;                                /* the last fold failed */
    int log_copied;                             /* the fold thread checkpointed the log */
    char why[sizeof(((tp_error *)0)->message)]; /* and why */
    int stop;
    int started;
    pthread_t thread;
} sql_store;

/* fail_on fills err with SQLite's message for db's last error and returns
 * the code; inside a transaction, it dooms it (store.h). */
static int
fail_on(sql_store *q, sqlite3 *db, tp_error *err, const char *call, int rc)
{
    if (q->in_txn)
        q->doomed = 1;
    int code = (rc & 0xff) == SQLITE_NOMEM ? TP_ENOMEM : TP_EINTERNAL;
    return tp__error_set(err, code, "sqlite: %s: %s", call, sqlite3_errmsg(db));
}

static int
fail(sql_store *q, tp_error *err, const char *call, int rc)
{
    return fail_on(q, q->db, err, call, rc);
}

static int
fail_msg(sql_store *q, tp_error *err, int code, const char *call, const char *why)
{
    if (q->in_txn)
        q->doomed = 1;
    return tp__error_set(err, code, "sqlite: %s: %s", call, why);
}

/* prepared returns the statement of (kind, op), preparing it on first use. */
static int
prepared(sql_store *q, tp__rec_kind kind, op o, const char *call, sqlite3_stmt **out, tp_error *err)
{
    if (q->stmt[kind][o] == NULL) {
        char sql[160];
        snprintf(sql, sizeof sql, op_sql[o], tp__store_kind_name(kind));
        int rc =
            sqlite3_prepare_v3(q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &q->stmt[kind][o], NULL);
        if (rc != SQLITE_OK)
            return fail(q, err, call, rc);
    }
    *out = q->stmt[kind][o];
    return TP_OK;
}

/* step_done runs a statement that returns no rows, then resets it. */
static int
step_done(sql_store *q, sqlite3 *db, sqlite3_stmt *st, const char *call, tp_error *err)
{
    int rc = sqlite3_step(st);
    int out = rc == SQLITE_DONE ? TP_OK : fail_on(q, db, err, call, rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return out;
}

static int
check_kind(tp__rec_kind kind)
{
    return (int)kind >= 0 && kind < TP__REC_KINDS;
}

/* roll_back ends the connection's transaction if it has one: SQLite rolls
 * some back by itself after an I/O error, and then has none. */
static void
roll_back(sqlite3 *db, sqlite3_stmt *rollback)
{
    if (!sqlite3_get_autocommit(db)) {
        sqlite3_step(rollback);
        sqlite3_reset(rollback);
    }
}

/* ---- Applying ops to the tables ---- */

static int
apply_put(sql_store *q, tp__rec_kind kind, const char *k1, size_t k1_len, const char *k2,
          size_t k2_len, int64_t n, const void *body, size_t body_len, tp_error *err)
{
    sqlite3_stmt *st;
    int rc = prepared(q, kind, OP_PUT, "put", &st, err);
    if (rc != TP_OK)
        return rc;
    sqlite3_bind_text(st, 1, k1, (int)k1_len, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, k2, (int)k2_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, n);
    /* A NULL pointer would bind NULL, not an empty blob. */
    int brc = body_len > 0 ? sqlite3_bind_blob64(st, 4, body, body_len, SQLITE_STATIC)
                           : sqlite3_bind_zeroblob(st, 4, 0);
    if (brc != SQLITE_OK) {
        sqlite3_clear_bindings(st);
        return fail(q, err, "put", brc);
    }
    return step_done(q, q->db, st, "put", err);
}

/* apply_del runs one of the delete statements with k1, k2 (unless o is
 * OP_DEL_K1) and n (for OP_DEL and OP_DEL_BELOW). */
static int
apply_del(sql_store *q, tp__rec_kind kind, op o, const char *k1, size_t k1_len, const char *k2,
          size_t k2_len, int64_t n, tp_error *err)
{
    static const char *const call[] = {[OP_DEL] = "del",
                                       [OP_DEL_BELOW] = "del_below",
                                       [OP_DEL_K2] = "del_key",
                                       [OP_DEL_K1] = "del_key"};
    sqlite3_stmt *st;
    int rc = prepared(q, kind, o, call[o], &st, err);
    if (rc != TP_OK)
        return rc;
    sqlite3_bind_text(st, 1, k1, (int)k1_len, SQLITE_STATIC);
    if (o != OP_DEL_K1)
        sqlite3_bind_text(st, 2, k2, (int)k2_len, SQLITE_STATIC);
    if (o == OP_DEL || o == OP_DEL_BELOW)
        sqlite3_bind_int64(st, 3, n);
    return step_done(q, q->db, st, call[o], err);
}

/*
 * An op as logged: a header of op (1 byte), kind (1), n (8), the lengths of
 * k1 (4), k2 (4) and the body (8), in this machine's byte order (the log is
 * never moved to another machine while it holds rows: closing empties it),
 * then k1, k2 and the body.
 */
enum { HEAD = 1 + 1 + 8 + 4 + 4 + 8 };

/* log_op appends an op to the open transaction. */
static int
log_op(sql_store *q, op o, tp__rec_kind kind, int64_t n, const char *k1, const char *k2,
       const void *body, size_t body_len, tp_error *err)
{
    size_t l1 = strlen(k1), l2 = k2 != NULL ? strlen(k2) : 0;
    if (l1 > INT_MAX || l2 > INT_MAX || body_len > (size_t)INT_MAX)
        return fail_msg(q, err, TP_EARG, "put", "a key or body over 2 GiB");
    size_t need = HEAD + l1 + l2 + body_len;
    if (q->tx_cap - q->tx_len < need) {
        /* A new buffer starts at the last transaction's size: under load
         * each is about the one before, and grown by doubling from 4 KiB
         * it would be reallocated a dozen times. */
        size_t cap = q->tx_cap ? q->tx_cap : q->tx_hint > 4096 ? q->tx_hint : 4096;
        while (cap - q->tx_len < need)
            cap *= 2;
        unsigned char *p = tp__realloc(q->tx, cap);
        if (p == NULL)
            return fail_msg(q, err, TP_ENOMEM, o == OP_PUT ? "put" : "del", "out of memory");
        q->tx = p;
        q->tx_cap = cap;
    }
    unsigned char *p = q->tx + q->tx_len;
    uint32_t u1 = (uint32_t)l1, u2 = (uint32_t)l2;
    uint64_t ub = body_len;
    p[0] = (unsigned char)o;
    p[1] = (unsigned char)kind;
    memcpy(p + 2, &n, 8);
    memcpy(p + 10, &u1, 4);
    memcpy(p + 14, &u2, 4);
    memcpy(p + 18, &ub, 8);
    p += HEAD;
    memcpy(p, k1, l1);
    if (l2 > 0)
        memcpy(p + l1, k2, l2);
    if (body_len > 0)
        memcpy(p + l1 + l2, body, body_len);
    q->tx_len += need;
    return TP_OK;
}

/* A logged op, decoded (pointers into the row's bytes). */
typedef struct lop {
    op o;
    tp__rec_kind kind;
    int64_t n;
    const char *k1, *k2;
    uint32_t l1, l2;
    const unsigned char *body;
    size_t body_len;
} lop;

/* next_op decodes the op at *p (before end) and moves *p past it; returns
 * TP_OK, or fails naming what is wrong with the bytes. */
static int
next_op(sql_store *q, const unsigned char **p, const unsigned char *end, lop *d, tp_error *err)
{
    const unsigned char *at = *p;
    if ((size_t)(end - at) < HEAD)
        return fail_msg(q, err, TP_EINTERNAL, "fold", "a log row ends inside an op");
    uint64_t lb;
    d->o = (op)at[0];
    d->kind = (tp__rec_kind)at[1];
    memcpy(&d->n, at + 2, 8);
    memcpy(&d->l1, at + 10, 4);
    memcpy(&d->l2, at + 14, 4);
    memcpy(&lb, at + 18, 8);
    at += HEAD;
    if (d->o > OP_DEL_K1 || !check_kind(d->kind) || d->l1 > INT_MAX || d->l2 > INT_MAX ||
        (uint64_t)(end - at) < (uint64_t)d->l1 + d->l2 || (uint64_t)(end - at) - d->l1 - d->l2 < lb)
        return fail_msg(q, err, TP_EINTERNAL, "fold", "a malformed op in the log");
    d->k1 = (const char *)at;
    d->k2 = (const char *)at + d->l1;
    d->body = at + d->l1 + d->l2;
    d->body_len = (size_t)lb;
    *p = d->body + lb;
    return TP_OK;
}

static int
apply_op(sql_store *q, const lop *d, tp_error *err)
{
    return d->o == OP_PUT
               ? apply_put(q, d->kind, d->k1, d->l1, d->k2, d->l2, d->n, d->body, d->body_len, err)
               : apply_del(q, d->kind, d->o, d->k1, d->l1, d->k2, d->l2, d->n, err);
}

/* apply_ops applies a logged transaction's ops to the tables, in order. */
static int
apply_ops(sql_store *q, const unsigned char *p, size_t len, tp_error *err)
{
    const unsigned char *end = p + len;
    while (p < end) {
        lop d;
        int rc = next_op(q, &p, end, &d, err);
        if (rc == TP_OK)
            rc = apply_op(q, &d, err);
        if (rc != TP_OK)
            return rc;
    }
    return TP_OK;
}

/*
 * apply_groups applies the groups of list, in order, skipping what a later
 * op of them makes pointless (util/plan.h): folded a second at a time, a
 * model written in every commit of that second has its record written once.
 * Out of memory for the plan, every op is applied.
 */
static int
apply_groups(sql_store *q, const group *list, tp_error *err)
{
    size_t n = 0;
    for (const group *g = list; g != NULL; g = g->next) {
        const unsigned char *p = g->ops, *end = g->ops + g->len;
        while (p < end) {
            if (n == q->fold_cap) {
                size_t cap = q->fold_cap ? 2 * q->fold_cap : 1024;
                lop *ops = tp__reallocarray(q->fold_ops, cap, sizeof *ops);
                tp__plan_op *marks =
                    ops != NULL ? tp__reallocarray(q->fold_marks, cap, sizeof *marks) : NULL;
                if (ops != NULL)
                    q->fold_ops = ops;
                if (marks == NULL) {
                    for (; list != NULL; list = list->next) {
                        int rc = apply_ops(q, list->ops, list->len, err);
                        if (rc != TP_OK)
                            return rc;
                    }
                    return TP_OK;
                }
                q->fold_marks = marks;
                q->fold_cap = cap;
            }
            lop *d = &q->fold_ops[n];
            int rc = next_op(q, &p, end, d, err);
            if (rc != TP_OK)
                return rc;
            int keyed = d->o == OP_PUT || d->o == OP_DEL_BELOW;
            q->fold_marks[n++] = (tp__plan_op){
                keyed ? (d->o == OP_PUT ? TP__PLAN_PUT : TP__PLAN_DEL_BELOW) : TP__PLAN_OTHER,
                (unsigned char)d->kind,
                0,
                d->n,
                d->k1,
                (size_t)d->l1 + d->l2,
                d->l1};
        }
    }
    long skipped = tp__plan_mark(&q->plan, q->fold_marks, n);
    for (size_t i = 0; i < n; i++) {
        if (skipped > 0 && q->fold_marks[i].skip)
            continue;
        int rc = apply_op(q, &q->fold_ops[i], err);
        if (rc != TP_OK)
            return rc;
    }
    return TP_OK;
}

/* ---- Folding the log into the tables ---- */

static int64_t
ms_from_now(int64_t ms)
{
    return tp__clock_mono_ns() + ms * 1000000;
}

/* set_folded records, in the tables' transaction, the last row they hold. */
static int
set_folded(sql_store *q, uint64_t seq, tp_error *err)
{
    sqlite3_bind_int64(q->set_folded, 1, (sqlite3_int64)seq);
    return step_done(q, q->db, q->set_folded, "fold", err);
}

/*
 * fold applies every group waiting, in one transaction of the tables, and
 * commits it (dbmu held, mu not). On failure the groups wait again, first
 * in line, for the next try. Returns TP_OK or the failure.
 */
static int
fold(sql_store *q, tp_error *err)
{
    pthread_mutex_lock(&q->mu);
    group *list = q->head, *last = q->tail;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->mu);
    if (list == NULL)
        return TP_OK;
    size_t bytes = 0;
    tp_error e;
    int rc = sqlite3_step(q->begin);
    sqlite3_reset(q->begin);
    rc = rc == SQLITE_DONE ? TP_OK : fail(q, &e, "fold", rc);
    for (group *g = list; g != NULL; g = g->next)
        bytes += g->len;
    if (rc == TP_OK)
        rc = apply_groups(q, list, &e);
    if (rc == TP_OK)
        rc = set_folded(q, last->seq, &e);
    if (rc == TP_OK) {
        int src = sqlite3_step(q->commit);
        sqlite3_reset(q->commit);
        if (src != SQLITE_DONE)
            rc = fail(q, &e, "fold", src);
    }
    if (rc != TP_OK)
        roll_back(q->db, q->rollback);
    pthread_mutex_lock(&q->mu);
    if (rc == TP_OK) {
        q->folded = last->seq;
        q->pending -= bytes;
        q->failing = 0;
    } else {
        last->next = q->head;
        q->head = list;
        if (q->tail == NULL)
            q->tail = last;
        q->failing = 1;
        snprintf(q->why, sizeof q->why, "%s", e.message);
        q->due_ns = ms_from_now(TP__SQLITE_FOLD_RETRY_MS);
    }
    pthread_cond_broadcast(&q->room_cv);
    pthread_mutex_unlock(&q->mu);
    if (rc != TP_OK) {
        tp__error_set(err, rc, "%s", e.message);
        return rc;
    }
    while (list != NULL) {
        group *next = list->next;
        tp__free(list->ops);
        tp__free(list);
        list = next;
    }
    /* What the tables now hold for good, the log need not: its rows go
     * with the next commit (log_trim), and its WAL is copied into its file
     * here, off the committing thread. */
    if (q->logck != NULL) {
        sqlite3_wal_checkpoint_v2(q->logck, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&q->mu);
        q->log_copied = 1;
        pthread_mutex_unlock(&q->mu);
    }
    return TP_OK;
}

static void *
fold_main(void *arg)
{
    sql_store *q = arg;
    pthread_setname_np(pthread_self(), "tp-fold");
    pthread_mutex_lock(&q->mu);
    while (!q->stop) {
        int64_t now = tp__clock_mono_ns();
        if (q->head != NULL && (now >= q->due_ns || (q->pending >= q->fold_bytes && !q->failing))) {
            pthread_mutex_unlock(&q->mu);
            pthread_mutex_lock(&q->dbmu);
            fold(q, NULL);
            pthread_mutex_unlock(&q->dbmu);
            pthread_mutex_lock(&q->mu);
            continue;
        }
        if (q->head == NULL)
            pthread_cond_wait(&q->fold_cv, &q->mu);
        else {
            struct timespec ts = {(time_t)(q->due_ns / 1000000000), (long)(q->due_ns % 1000000000)};
            pthread_cond_timedwait(&q->fold_cv, &q->mu, &ts);
        }
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* ---- The operations ---- */

/* write_check: what every write checks before it notes anything. */
static int
write_check(sql_store *q, const char *call, tp_error *err)
{
    if (q->scanning)
        return fail_msg(q, err, TP_EINTERNAL, call, "a write during a scan");
    if (q->in_txn && q->doomed)
        return tp__error_set(err, TP_EINTERNAL,
                             "sqlite: %s: the transaction failed earlier; roll it back", call);
    return TP_OK;
}

static int
sq_begin(tp_store *s, tp_error *err)
{
    sql_store *q = (sql_store *)s;
    if (q->in_txn)
        return tp__error_set(err, TP_EINTERNAL, "sqlite: begin: a transaction is already open");
    q->in_txn = 1;
    q->doomed = 0;
    q->tx_len = 0;
    return TP_OK;
}

static void
sq_rollback(tp_store *s)
{
    sql_store *q = (sql_store *)s;
    q->in_txn = q->doomed = 0;
    q->tx_len = 0;
}

/* commit_direct: an in-memory database has no log; its commit writes the
 * tables. */
static int
commit_direct(sql_store *q, tp_error *err)
{
    pthread_mutex_lock(&q->dbmu);
    int rc = sqlite3_step(q->begin);
    sqlite3_reset(q->begin);
    int out = rc == SQLITE_DONE ? TP_OK : fail(q, err, "commit", rc);
    if (out == TP_OK)
        out = apply_ops(q, q->tx, q->tx_len, err);
    if (out == TP_OK) {
        rc = sqlite3_step(q->commit);
        sqlite3_reset(q->commit);
        if (rc != SQLITE_DONE)
            out = fail(q, err, "commit", rc);
    }
    if (out != TP_OK)
        roll_back(q->db, q->rollback);
    pthread_mutex_unlock(&q->dbmu);
    return out;
}

/* commit_log appends the transaction to the log and syncs it; the fold
 * thread takes it from there. */
static int
commit_log(sql_store *q, tp_error *err)
{
    pthread_mutex_lock(&q->mu);
    while (q->pending > q->pending_max && !q->failing && !q->stop)
        pthread_cond_wait(&q->room_cv, &q->mu);
    if (q->pending > q->pending_max) {
        int out = tp__error_set(err, TP_EINTERNAL,
                                "sqlite: commit: %zu KiB logged wait for the tables, which "
                                "cannot be written: %s",
                                q->pending >> 10, q->why);
        pthread_mutex_unlock(&q->mu);
        return out;
    }
    uint64_t trim = q->folded;
    if (trim > q->trimmed + TP__SQLITE_TRIM_ROWS)
        trim = q->trimmed + TP__SQLITE_TRIM_ROWS;
    int copied = q->log_copied;
    q->log_copied = 0;
    pthread_mutex_unlock(&q->mu);

    /* The log's WAL starts over from its beginning only once every frame
     * in it is in the log's file. The fold thread's checkpoint copies what
     * was there when it started, but commits go on meanwhile, so under a
     * steady load it never copies the last frames, the WAL never starts
     * over, and it grew by every commit (W2, 2000 tenants: 32 MB a second,
     * each commit growing the file, which costs fdatasync a second write).
     * The first commit after that checkpoint copies the few frames left, on
     * the connection that writes, so the next write starts the WAL over. */
    if (copied)
        sqlite3_wal_checkpoint_v2(q->log, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
group *g = tp__calloc(1, sizeof *g);
    if (g == NULL)
        return tp__error_set(err, TP_ENOMEM, "sqlite: commit: out of memory");
    g->seq = q->next_seq;
    int rc = sqlite3_step(q->log_begin);
    sqlite3_reset(q->log_begin);
    int out = rc == SQLITE_DONE ? TP_OK : fail_on(q, q->log, err, "commit", rc);
    if (out == TP_OK && trim > q->trimmed) {
        sqlite3_bind_int64(q->log_trim, 1, (sqlite3_int64)trim);
        out = step_done(q, q->log, q->log_trim, "commit", err);
    }
    /* One row per row_bytes of ops at most, cut between ops: a group that
     * grew while the disk stalled must not meet SQLite's limit on a blob
     * (1e9 bytes), which would fail it for good. The rows of a transaction
     * are committed together and folded together (g->seq is its last). */
    const unsigned char *p = q->tx, *end = q->tx + q->tx_len;
    while (out == TP_OK && p < end) {
        const unsigned char *cut = p;
        while (cut < end && (cut == p || (size_t)(cut - p) < q->row_bytes)) {
            lop d;
            if ((out = next_op(q, &cut, end, &d, err)) != TP_OK)
                break;
        }
        if (out != TP_OK)
            break;
        sqlite3_bind_int64(q->log_insert, 1, (sqlite3_int64)g->seq++);
        sqlite3_bind_blob64(q->log_insert, 2, p, (sqlite3_uint64)(cut - p), SQLITE_STATIC);
        out = step_done(q, q->log, q->log_insert, "commit", err);
        p = cut;
    }
    if (out == TP_OK) {
        rc = sqlite3_step(q->log_commit);
        sqlite3_reset(q->log_commit);
        if (rc != SQLITE_DONE)
            out = fail_on(q, q->log, err, "commit", rc);
    }
    if (out != TP_OK) {
        /* A failed COMMIT may leave the transaction open (SQLITE_BUSY) or
         * have rolled it back already (an I/O error): either way nothing
         * of it is stored once this returns. */
        roll_back(q->log, q->log_rollback);
        tp__free(g);
        return out;
    }
    q->next_seq = g->seq;
    g->seq--; /* its last row */
    if (trim > q->trimmed)
        q->trimmed = trim;
    /* The group takes the transaction's bytes; the next one starts anew. */
    g->ops = q->tx;
    g->len = q->tx_len;
    q->tx_hint = q->tx_len + q->tx_len / 4;
    q->tx = NULL;
    q->tx_len = q->tx_cap = 0;
    pthread_mutex_lock(&q->mu);
    if (q->head == NULL) {
        q->head = g;
        if (!q->failing)
            q->due_ns = ms_from_now(q->fold_ms);
        pthread_cond_signal(&q->fold_cv); /* it sleeps without a deadline */
    } else
        q->tail->next = g;
    q->tail = g;
    q->pending += g->len;
    if (q->pending >= q->fold_bytes)
        pthread_cond_signal(&q->fold_cv);
    pthread_mutex_unlock(&q->mu);
    return TP_OK;
}

static int
sq_commit(tp_store *s, tp_error *err)
{
    sql_store *q = (sql_store *)s;
    if (!q->in_txn)
        return tp__error_set(err, TP_EINTERNAL, "sqlite: commit: no transaction is open");
    int out;
    if (q->doomed)
        out = tp__error_set(err, TP_EINTERNAL,
                            "sqlite: commit: the transaction failed earlier; rolled back");
    else if (q->tx_len == 0)
        out = TP_OK;
    else
        out = q->log != NULL ? commit_log(q, err) : commit_direct(q, err);
    q->in_txn = q->doomed = 0;
    q->tx_len = 0;
    return out;
}

/* write_op notes one op; outside a transaction it is a transaction of its
 * own. */
static int
write_op(sql_store *q, const char *call, op o, tp__rec_kind kind, int64_t n, const char *k1,
         const char *k2, const void *body, size_t body_len, tp_error *err)
{
    int rc = write_check(q, call, err);
    if (rc != TP_OK)
        return rc;
    int own = !q->in_txn;
    if (own)
        sq_begin(&q->base, err);
    rc = log_op(q, o, kind, n, k1, k2, body, body_len, err);
    if (!own)
        return rc;
    if (rc != TP_OK) {
        sq_rollback(&q->base);
        return rc;
    }
    return sq_commit(&q->base, err);
}

static int
sq_put(tp_store *s, const tp__rec *rec, tp_error *err)
{
    sql_store *q = (sql_store *)s;
    if (rec == NULL || !check_kind(rec->kind) || rec->k1 == NULL || rec->k2 == NULL ||
        (rec->body == NULL && rec->body_len > 0))
        return fail_msg(q, err, TP_EARG, "put", "bad record (kind, NULL key or body)");
    return write_op(q, "put", OP_PUT, rec->kind, rec->n, rec->k1, rec->k2, rec->body, rec->body_len,
                    err);
}

static int
del_run(sql_store *q, tp__rec_kind kind, op o, const char *call, const char *k1, const char *k2,
        int64_t n, tp_error *err)
{
    if (!check_kind(kind) || k1 == NULL || (o != OP_DEL_K1 && k2 == NULL))
        return fail_msg(q, err, TP_EARG, call, "bad kind or NULL key");
    return write_op(q, call, o, kind, n, k1, k2, NULL, 0, err);
}

static int
sq_del(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2, int64_t n, tp_error *err)
{
    return del_run((sql_store *)s, kind, OP_DEL, "del", k1, k2, n, err);
}

static int
sq_del_below(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2, int64_t n,
             tp_error *err)
{
    return del_run((sql_store *)s, kind, OP_DEL_BELOW, "del_below", k1, k2, n, err);
}

static int
sq_del_key(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2, tp_error *err)
{
    return del_run((sql_store *)s, kind, k2 != NULL ? OP_DEL_K2 : OP_DEL_K1, "del_key", k1, k2, 0,
                   err);
}

/* apply_matching applies the ops of a logged transaction that touch what a
 * scan of (kind, k1) reads (k1 NULL: the whole kind). */
static int
apply_matching(sql_store *q, const unsigned char *p, size_t len, tp__rec_kind kind, const char *k1,
               tp_error *err)
{
    size_t l1 = k1 != NULL ? strlen(k1) : 0;
    const unsigned char *end = p + len;
    while (p < end) {
        lop d;
        int rc = next_op(q, &p, end, &d, err);
        if (rc == TP_OK && d.kind == kind &&
            (k1 == NULL || (d.l1 == l1 && memcmp(d.k1, k1, l1) == 0)))
            rc = apply_op(q, &d, err);
        if (rc != TP_OK)
            return rc;
    }
    return TP_OK;
}

/* covered says whether the outermost scan's savepoint already holds the
 * unfolded ops a scan of (kind, k1) reads. */
static int
covered(const sql_store *q, tp__rec_kind kind, const char *k1)
{
    for (size_t i = 0; i < q->ncovered; i++)
        if (q->covered[i].kind == kind &&
            (q->covered[i].k1 == NULL || (k1 != NULL && strcmp(q->covered[i].k1, k1) == 0)))
            return 1;
    return 0;
}

/*
 * scan_enter readies the tables for a scan of (kind, k1), the outermost one
 * taking the tables' connection from the fold thread (dbmu) until
 * scan_leave. A scan reads every committed record without folding: the
 * ops not yet folded that touch what it reads (and, inside a transaction,
 * the transaction's) are applied inside a savepoint that the outermost
 * scan rolls back. Only those: at 2000 tenants a tenant's load walks a
 * second of logged ops (a few milliseconds) instead of folding them on the
 * loop thread (a median of 165 ms measured, and every connection's writes
 * waiting behind it). A nested scan whose ops are already applied (its
 * kind's whole range, or its k1) applies nothing again, so an outer scan's
 * rows do not change under it.
 */
static int
scan_enter(sql_store *q, tp__rec_kind kind, const char *k1, int outer, tp_error *err)
{
    if (outer) {
        pthread_mutex_lock(&q->dbmu);
        q->overlay = 0;
        q->ncovered = 0;
    }
    if (covered(q, kind, k1))
        return TP_OK;
    pthread_mutex_lock(&q->mu);
    group *list = q->head;
    pthread_mutex_unlock(&q->mu);
    if (list == NULL && !(q->in_txn && q->tx_len > 0))
        return TP_OK;
    int out = TP_OK;
    if (!q->overlay) {
        int rc = sqlite3_exec(q->db, "SAVEPOINT scan", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            return fail(q, err, "scan", rc);
        q->overlay = 1;
    }
    /* The fold thread waits for dbmu, so the list cannot change under us
     * but at its tail, where the committer (not running during reads)
     * would add. */
    for (group *g = list; out == TP_OK && g != NULL; g = g->next)
        out = apply_matching(q, g->ops, g->len, kind, k1, err);
    if (out == TP_OK && q->in_txn)
        out = apply_matching(q, q->tx, q->tx_len, kind, k1, err);
    if (out == TP_OK && q->ncovered < sizeof q->covered / sizeof q->covered[0]) {
        char *copy = NULL;
        if (k1 != NULL && (copy = tp__strdup(k1)) == NULL)
            return TP_OK; /* not noted: a nested scan applies its ops again */
        q->covered[q->ncovered++] = (struct covered){kind, copy};
    }
    return out;
}

static void
scan_leave(sql_store *q)
{
    if (q->overlay)
        sqlite3_exec(q->db, "ROLLBACK TO scan; RELEASE scan", NULL, NULL, NULL);
    q->overlay = 0;
    for (size_t i = 0; i < q->ncovered; i++)
        tp__free(q->covered[i].k1);
    q->ncovered = 0;
    pthread_mutex_unlock(&q->dbmu);
}

static int
sq_scan(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2, tp__rec_fn fn, void *user,
        tp_error *err)
{
    sql_store *q = (sql_store *)s;
    if (!check_kind(kind) || fn == NULL)
        return fail_msg(q, err, TP_EARG, "scan", "bad kind or NULL callback");
    int outer = q->scanning == 0;
    int erc = scan_enter(q, kind, k1, outer, err);
    if (erc != TP_OK) {
        if (outer)
            scan_leave(q);
        return erc;
    }
    op o = k1 == NULL ? OP_SCAN : k2 == NULL ? OP_SCAN_K1 : OP_SCAN_K2;
    sqlite3_stmt *st;
    int rc = prepared(q, kind, o, "scan", &st, err);
    /* A callback scanning the same kind the same way again: the cached
     * statement is under way, so this scan gets one of its own. */
    sqlite3_stmt *own = NULL;
    if (rc == TP_OK && sqlite3_stmt_busy(st)) {
        int prc = sqlite3_prepare_v2(q->db, sqlite3_sql(st), -1, &own, NULL);
        if (prc != SQLITE_OK)
            rc = fail(q, err, "scan", prc);
        st = own;
    }
    if (rc != TP_OK) {
        if (outer)
            scan_leave(q);
        return rc;
    }
    if (k1 != NULL)
        sqlite3_bind_text(st, 1, k1, -1, SQLITE_STATIC);
    if (k1 != NULL && k2 != NULL)
        sqlite3_bind_text(st, 2, k2, -1, SQLITE_STATIC);
    q->scanning++;
    int out = TP_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *c1 = (const char *)sqlite3_column_text(st, 0);
        const char *c2 = (const char *)sqlite3_column_text(st, 1);
        int64_t n = sqlite3_column_int64(st, 2);
        const char *body = sqlite3_column_blob(st, 3);
        int len = sqlite3_column_bytes(st, 3);
        if (c1 == NULL || c2 == NULL) { /* out of memory converting (or NULL): no record */
            rc = SQLITE_NOMEM;
            break;
        }
        tp__rec rec = {kind, c1, c2, n, body != NULL ? body : "", (size_t)len};
        if ((out = fn(&rec, user)) != 0)
            break;
    }
    q->scanning--;
    if (out == TP_OK && rc != SQLITE_DONE)
        out = fail(q, err, "scan", rc);
    if (own != NULL)
        sqlite3_finalize(own);
    else {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    if (outer)
        scan_leave(q);
    return out;
}

static void
free_groups(group *g)
{
    while (g != NULL) {
        group *next = g->next;
        tp__free(g->ops);
        tp__free(g);
        g = next;
    }
}

static void
sq_free(tp_store *s)
{
    sql_store *q = (sql_store *)s;
    if (q->started) {
        pthread_mutex_lock(&q->mu);
        q->stop = 1;
        pthread_cond_broadcast(&q->fold_cv);
        pthread_cond_broadcast(&q->room_cv);
        pthread_mutex_unlock(&q->mu);
        pthread_join(q->thread, NULL);
    }
    if (q->db != NULL && q->begin != NULL) {
        /* What is logged goes into the tables now, so that the log is empty
         * once closed; if that fails, the next open folds it. */
        pthread_mutex_lock(&q->dbmu);
        fold(q, NULL);
        pthread_mutex_unlock(&q->dbmu);
        if (q->log != NULL && q->log_trim != NULL && q->folded > q->trimmed) {
            sqlite3_bind_int64(q->log_trim, 1, (sqlite3_int64)q->folded);
            sqlite3_step(q->log_trim);
            sqlite3_reset(q->log_trim);
        }
    }
    for (int k = 0; k < TP__REC_KINDS; k++)
        for (int o = 0; o < OP_COUNT; o++)
            sqlite3_finalize(q->stmt[k][o]);
    sqlite3_finalize(q->begin);
    sqlite3_finalize(q->commit);
    sqlite3_finalize(q->rollback);
    sqlite3_finalize(q->set_folded);
    sqlite3_finalize(q->log_begin);
    sqlite3_finalize(q->log_commit);
    sqlite3_finalize(q->log_rollback);
    sqlite3_finalize(q->log_insert);
    sqlite3_finalize(q->log_trim);
    /* The last connection to a file checkpoints its WAL into it and
     * removes it. */
    sqlite3_close_v2(q->logck);
    sqlite3_close_v2(q->log);
    sqlite3_close_v2(q->db);
    /* Closing the descriptor drops the lock: only after SQLite is done
     * with the files, so that no other process writes them meanwhile. */
    if (q->lock_fd >= 0)
        close(q->lock_fd);
    free_groups(q->head);
    tp__free(q->tx);
    tp__free(q->fold_ops);
    tp__free(q->fold_marks);
    tp__plan_free(&q->plan);
    pthread_mutex_destroy(&q->mu);
    pthread_mutex_destroy(&q->dbmu);
    pthread_cond_destroy(&q->fold_cv);
    pthread_cond_destroy(&q->room_cv);
    tp__free(q);
}

static const tp__store_ops sqlite_ops = {
    .name = "sqlite",
    .begin = sq_begin,
    .put = sq_put,
    .del = sq_del,
    .del_below = sq_del_below,
    .del_key = sq_del_key,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .scan = sq_scan,
    .free = sq_free,
};

/* ------------------------------------------------------------------------ */
/* ------------------------------------------------------------------------ */
/* Opening                                                                   */
/* ------------------------------------------------------------------------ */

/* pragma_text runs a statement and copies the first column of its first row
 * into out (empty when there is no row); returns SQLite's code. */
static int
pragma_text(sqlite3 *db, const char *sql, char *out, size_t size)
{
    sqlite3_stmt *st;
    out[0] = '\0';
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(out, size, "%s", t != NULL ? (const char *)t : "");
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE)
        rc = SQLITE_OK;
    sqlite3_finalize(st);
    return rc;
}

static int
pragma_int(sqlite3 *db, const char *sql, long *out)
{
    char text[32];
    int rc = pragma_text(db, sql, text, sizeof text);
    *out = rc == SQLITE_OK ? strtol(text, NULL, 10) : 0;
    return rc;
}

/* migrate brings the file from its user_version to SCHEMA_VERSION in one
 * transaction. BEGIN IMMEDIATE takes the write lock first, so that two
 * processes opening a new file at once do not both create the tables: the
 * second sees the first's version. */
static int
migrate(sqlite3 *db, const char *path, tp_error *err)
{
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return tp__error_set(err, TP_EINTERNAL, "sqlite: open \"%s\": begin: %s", path,
                             sqlite3_errmsg(db));
    long version;
    rc = pragma_int(db, "PRAGMA user_version", &version);
    int out = TP_OK;
    if (rc != SQLITE_OK)
        out = tp__error_set(err, TP_EINTERNAL, "sqlite: open \"%s\": %s", path, sqlite3_errmsg(db));
    else if (version > SCHEMA_VERSION || version < 0)
        out = tp__error_set(err, TP_EARG,
                            "sqlite: open \"%s\": schema version %ld is newer than this build "
                            "knows (%d): use a newer transports",
                            path, version, SCHEMA_VERSION);
    for (long v = version; out == TP_OK && v < SCHEMA_VERSION; v++) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %ld", v + 1);
        if ((rc = sqlite3_exec(db, migrations[v], NULL, NULL, NULL)) != SQLITE_OK ||
            (rc = sqlite3_exec(db, sql, NULL, NULL, NULL)) != SQLITE_OK)
            out = tp__error_set(err, (rc & 0xff) == SQLITE_NOMEM ? TP_ENOMEM : TP_EINTERNAL,
                                "sqlite: open \"%s\": migration to version %ld: %s", path, v + 1,
                                sqlite3_errmsg(db));
    }
    if (out == TP_OK && version < SCHEMA_VERSION) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA application_id = %d", APPLICATION_ID);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
            out = tp__error_set(err, TP_EINTERNAL, "sqlite: open \"%s\": %s", path,
                                sqlite3_errmsg(db));
    }
    if (out == TP_OK && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        out = tp__error_set(err, TP_EINTERNAL, "sqlite: open \"%s\": commit: %s", path,
                            sqlite3_errmsg(db));
    if (out != TP_OK && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return out;
}

/* ------------------------------------------------------------------------ */
/* One database, one process                                                 */
/* ------------------------------------------------------------------------ */

/*
 * Two servers on one database would each keep their own state in memory and
 * overwrite each other's commits: acknowledged writes would be lost between
 * them. So the store holds an exclusive lock for its lifetime on a lock file
 * beside the database, "<db>-lock", taken with flock(): the kernel ties it to
 * the open file description, so a second open conflicts even in the same
 * process, and drops it when the process ends however it ends (a SIGKILL
 * leaves nothing to clean up). Not a lock on the database file itself:
 * SQLite's own locks there are POSIX locks, which closing any descriptor of
 * that file would drop. Not "<db>.lock" either: SQLite's unix-dotfile VFS
 * uses that name for its own lock. The file holds the holder's pid and
 * program name, for the message a second opener gets; it is never removed
 * (removing it would let a third opener lock a new file beside a held one).
 */
#define LOCK_SUFFIX "-lock"

/* holder_text reads who holds the lock from the lock file: "pid name". */
static void
holder_text(int fd, char *out, size_t size)
{
    char buf[64];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    char *end;
    long pid = strtol(buf, &end, 10);
    if (end == buf || pid <= 0) {
        snprintf(out, size, "another process");
        return;
    }
    /* The name, printable characters only: the file is anyone's to write. */
    char name[24];
    size_t k = 0;
    for (const char *p = end + (*end == ' '); *p != '\0' && *p != '\n' && k < sizeof name - 1; p++)
        if (*p > ' ' && *p < 0x7f)
            name[k++] = *p;
    name[k] = '\0';
    snprintf(out, size, "another %s (pid %ld)", k > 0 ? name : "process", pid);
}

/* own_name reads this process's name (/proc/self/comm), or "". */
static void
own_name(char *out, size_t size)
{
    out[0] = '\0';
    int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, out, size - 1);
    close(fd);
    out[n > 0 ? n : 0] = '\0';
    out[strcspn(out, "\n")] = '\0';
}

/* side_file names the file beside the tables' one, with suffix: from
 * SQLite's own full name of the file, so one name whatever the path given
 * (relative, a URI). Returns 1 (out filled), 0 for an in-memory or temporary
 * database (none), or a negative code with err filled. */
static int
side_file(sql_store *q, const char *path, const char *suffix, char *out, size_t size,
          const char **file, tp_error *err)
{
    *file = sqlite3_db_filename(q->db, "main");
    if (*file == NULL || (*file)[0] == '\0')
        return 0;
    int len = snprintf(out, size, "%s%s", *file, suffix);
    if (len < 0 || (size_t)len >= size)
        return tp__error_set(err, TP_EARG, "sqlite: open \"%s\": the path is too long", path);
    return 1;
}

static int
lock_database(sql_store *q, const char *path, tp_error *err)
{
    char lock[PATH_MAX + sizeof LOCK_SUFFIX];
    const char *file;
    int side = side_file(q, path, LOCK_SUFFIX, lock, sizeof lock, &file, err);
    if (side <= 0)
        return side;
    /* O_CLOEXEC: a child process must not inherit the lock and outlive us
     * holding it. */
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return tp__error_set(err, TP_EINTERNAL, "sqlite: open \"%s\": lock file %s: %s", path, lock,
                             strerror(errno));
    int rc;
    while ((rc = flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR)
        ;
    if (rc != 0) {
        int e = errno;
        char who[64];
        holder_text(fd, who, sizeof who);
        close(fd);
        if (e == EWOULDBLOCK)
            return tp__error_set(err, TP_EINTERNAL, "database %s is in use by %s", file, who);
        return tp__error_set(err, TP_EINTERNAL, "sqlite: open \"%s\": lock file %s: %s", path, lock,
                             strerror(e));
    }
    /* Ours: say who holds it. A failure here costs only the message. */
    char name[20], text[48];
    own_name(name, sizeof name);
    int n = snprintf(text, sizeof text, "%ld %s\n", (long)getpid(), name);
    if (ftruncate(fd, 0) == 0 && n > 0 && pwrite(fd, text, (size_t)n, 0) != n) {
        /* a lock file without the holder: a second opener says "another process" */
    }
    q->lock_fd = fd;
    return TP_OK;
}

/* ---- The log ---- */

/* log_setup opens the log beside the tables' file, "<file>-log", and
 * prepares its statements. An in-memory database has none. */
static int
log_setup(sql_store *q, const char *path, const tp_store_options *o, tp_error *err)
{
    char name[PATH_MAX + sizeof LOG_SUFFIX];
    const char *file;
    int side = side_file(q, path, LOG_SUFFIX, name, sizeof name, &file, err);
    if (side <= 0)
        return side;
    for (int i = 0; i < 2; i++) {
        sqlite3 **db = i == 0 ? &q->log : &q->logck;
        int rc = sqlite3_open_v2(name, db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                                     SQLITE_OPEN_NOFOLLOW,
                                 o->vfs);
        if (rc != SQLITE_OK)
            return tp__error_set(err, (rc & 0xff) == SQLITE_NOMEM ? TP_ENOMEM : TP_EINTERNAL,
                                 "sqlite: open \"%s\": %s", name,
                                 *db != NULL ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
        sqlite3_extended_result_codes(*db, 1);
        sqlite3_busy_timeout(*db, q->busy_ms);
        if (i == 1) {
            /* A connection sees WAL mode once it has read the file: until
             * then its checkpoints do nothing. */
            char mode[16];
            rc = pragma_text(*db, "PRAGMA journal_mode", mode, sizeof mode);
            if (rc != SQLITE_OK || strcmp(mode, "wal") != 0)
                return tp__error_set(err, TP_EINTERNAL, "sqlite: open \"%s\": %s", name,
                                     rc != SQLITE_OK ? sqlite3_errmsg(*db) : "not in WAL mode");
            break;
        }
        long app;
        char mode[16];
        rc = pragma_int(*db, "PRAGMA application_id", &app);
        if (rc == SQLITE_OK && app != 0 && app != APPLICATION_ID)
            return tp__error_set(err, TP_EARG,
                                 "sqlite: open \"%s\": another program's database "
                                 "(application_id %ld)",
                                 name, app);
        /* Page size first: it is fixed once the file has a page, and WAL
         * mode keeps it. The committing thread never checkpoints the log;
         * the fold thread does, on its own connection. */
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(*db, "PRAGMA page_size = " TP__SQLITE_LOG_PAGE, NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = pragma_text(*db, "PRAGMA journal_mode = WAL", mode, sizeof mode);
        if (rc == SQLITE_OK && strcmp(mode, "wal") != 0)
            return tp__error_set(err, TP_EINTERNAL,
                                 "sqlite: open \"%s\": journal_mode is \"%s\", not \"wal\"", name,
                                 mode);
        static const char *const sync_sql[] = {
            [TP_SYNC_FULL] = "PRAGMA synchronous = FULL",
            [TP_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
            [TP_SYNC_OFF] = "PRAGMA synchronous = OFF",
        };
        char app_sql[64];
        snprintf(app_sql, sizeof app_sql, "PRAGMA application_id = %d", APPLICATION_ID);
        const char *sql[] = {sync_sql[o->synchronous], "PRAGMA wal_autocheckpoint = 0",
                             "PRAGMA journal_size_limit = " TP__SQLITE_WAL_LIMIT, LOG_TABLE,
                             app_sql};
        for (size_t k = 0; rc == SQLITE_OK && k < sizeof sql / sizeof sql[0]; k++)
            rc = sqlite3_exec(*db, sql[k], NULL, NULL, NULL);
        struct {
            const char *sql;
            sqlite3_stmt **st;
        } stmts[] = {
            {"BEGIN IMMEDIATE", &q->log_begin},
            {"COMMIT", &q->log_commit},
            {"ROLLBACK", &q->log_rollback},
            {"INSERT INTO log (seq, ops) VALUES (?1, ?2)", &q->log_insert},
            {"DELETE FROM log WHERE seq <= ?1", &q->log_trim},
        };
        for (size_t k = 0; rc == SQLITE_OK && k < sizeof stmts / sizeof stmts[0]; k++)
            rc = sqlite3_prepare_v3(*db, stmts[k].sql, -1, SQLITE_PREPARE_PERSISTENT, stmts[k].st,
                                    NULL);
        if (rc != SQLITE_OK)
            return tp__error_set(err, (rc & 0xff) == SQLITE_NOMEM ? TP_ENOMEM : TP_EINTERNAL,
                                 "sqlite: open \"%s\": %s", name, sqlite3_errmsg(*db));
    }
    return TP_OK;
}

/*
 * log_replay applies to the tables the log's rows past the last one they
 * hold (a process that ended before its fold), in one transaction, then
 * deletes the rows they now hold. A log whose rows do not follow on from
 * the tables' is another copy's: refused, both files left as they are.
 */
static int
log_replay(sql_store *q, const char *path, tp_error *err)
{
    long folded;
    int rc = pragma_int(q->db, "SELECT seq FROM folded WHERE id = 0", &folded);
    if (rc != SQLITE_OK)
        return tp__error_set(err, TP_EINTERNAL, "sqlite: open \"%s\": %s", path,
                             sqlite3_errmsg(q->db));
    q->folded = q->trimmed = (uint64_t)folded;
    uint64_t last = q->folded;
    if (q->log != NULL) {
        sqlite3_stmt *st;
        rc = sqlite3_prepare_v2(q->log, "SELECT seq, ops FROM log WHERE seq > ?1 ORDER BY seq", -1,
                                &st, NULL);
        if (rc != SQLITE_OK)
            return tp__error_set(err, TP_EINTERNAL, "sqlite: open \"%s\": log: %s", path,
                                 sqlite3_errmsg(q->log));
        sqlite3_bind_int64(st, 1, folded);
        int began = 0, foreign = 0, out = TP_OK;
        tp_error e;
        while (out == TP_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
            if (seq != last + 1) {
                foreign = 1;
                out = tp__error_set(&e, TP_EARG,
                                    "sqlite: open \"%s\": its log holds row %llu after row %llu: "
                                    "the log is another copy's (move \"%s" LOG_SUFFIX
                                    "\" away to open the tables as they are)",
                                    path, (unsigned long long)seq, (unsigned long long)last, path);
                break;
            }
            if (!began) {
                rc = sqlite3_step(q->begin);
                sqlite3_reset(q->begin);
                if (rc != SQLITE_DONE) {
                    out = fail(q, &e, "open", rc);
                    break;
                }
                began = 1;
            }
            const void *ops = sqlite3_column_blob(st, 1);
            out = apply_ops(q, ops, (size_t)sqlite3_column_bytes(st, 1), &e);
            last = seq;
        }
        if (out == TP_OK && rc != SQLITE_DONE)
            out = tp__error_set(&e, TP_EINTERNAL, "sqlite: log: %s", sqlite3_errmsg(q->log));
        sqlite3_finalize(st);
        if (out == TP_OK && began)
            out = set_folded(q, last, &e);
        if (out == TP_OK && began) {
            rc = sqlite3_step(q->commit);
            sqlite3_reset(q->commit);
            if (rc != SQLITE_DONE)
                out = fail(q, &e, "open", rc);
        }
        if (began && out != TP_OK)
            roll_back(q->db, q->rollback);
        if (out != TP_OK)
            return foreign ? tp__error_set(err, out, "%s", e.message)
                           : tp__error_set(err, out, "sqlite: open \"%s\": replaying the log: %s",
                                           path, e.message);
        q->folded = last;
        long max = 0;
        if (pragma_int(q->log, "SELECT coalesce(max(seq), 0) FROM log", &max) != SQLITE_OK)
            return tp__error_set(err, TP_EINTERNAL, "sqlite: open \"%s\": log: %s", path,
                                 sqlite3_errmsg(q->log));
        if ((uint64_t)max > last)
            last = (uint64_t)max;
        sqlite3_bind_int64(q->log_trim, 1, (sqlite3_int64)q->folded);
        if ((rc = step_done(q, q->log, q->log_trim, "open", &e)) != TP_OK)
            return tp__error_set(err, rc, "sqlite: open \"%s\": log: %s", path, e.message);
        q->trimmed = q->folded;
    }
    q->next_seq = last + 1;
    return TP_OK;
}

/* setup runs everything from the first read to the prepared statements. */
static int
setup(sql_store *q, const char *path, const tp_store_options *o, tp_error *err)
{
    sqlite3 *db = q->db;
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, q->busy_ms);

    /* The first read: a file that is not a database fails here, before
     * anything is written to it. */
    long app, version;
    int rc = pragma_int(db, "PRAGMA application_id", &app);
    if (rc == SQLITE_OK)
        rc = pragma_int(db, "PRAGMA user_version", &version);
    if (rc != SQLITE_OK)
        return tp__error_set(err, (rc & 0xff) == SQLITE_NOMEM ? TP_ENOMEM : TP_EINTERNAL,
                             "sqlite: open \"%s\": %s", path, sqlite3_errmsg(db));
    if (app != 0 && app != APPLICATION_ID)
        return tp__error_set(err, TP_EARG,
                             "sqlite: open \"%s\": another program's database "
                             "(application_id %ld)",
                             path, app);
    if (version > SCHEMA_VERSION || version < 0)
        return tp__error_set(err, TP_EARG,
                             "sqlite: open \"%s\": schema version %ld is newer than this build "
                             "knows (%d): use a newer transports",
                             path, version, SCHEMA_VERSION);
    if (sqlite3_db_readonly(db, "main") == 1)
        return tp__error_set(err, TP_EINTERNAL, "sqlite: open \"%s\": the file is read-only", path);

    /* journal_mode answers with the mode it is in, which is not WAL when
     * the VFS cannot do WAL (no shared memory) or for an in-memory file. */
    char mode[16];
    rc = pragma_text(db, "PRAGMA journal_mode = WAL", mode, sizeof mode);
    if (rc != SQLITE_OK)
        return tp__error_set(err, TP_EINTERNAL, "sqlite: open \"%s\": journal_mode: %s", path,
                             sqlite3_errmsg(db));
    int in_memory = strcmp(path, ":memory:") == 0 || strcmp(path, "") == 0;
    if (strcmp(mode, "wal") != 0 && !(in_memory && strcmp(mode, "memory") == 0) &&
        !(in_memory && strcmp(mode, "delete") == 0))
        return tp__error_set(err, TP_EINTERNAL,
                             "sqlite: open \"%s\": journal_mode is \"%s\", not \"wal\"", path,
                             mode);

    static const char *const sync_sql[] = {
        [TP_SYNC_FULL] = "PRAGMA synchronous = FULL",
        [TP_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
        [TP_SYNC_OFF] = "PRAGMA synchronous = OFF",
    };
    /* The tables' commits (folds) sync at FULL and NORMAL alike: about one
     * a second, and the log's rows they hold are deleted after them. */
    tp_sync level = o->synchronous == TP_SYNC_OFF ? TP_SYNC_OFF : TP_SYNC_FULL;
    if (sqlite3_exec(db, sync_sql[level], NULL, NULL, NULL) != SQLITE_OK)
        return tp__error_set(err, TP_EINTERNAL, "sqlite: open \"%s\": synchronous: %s", path,
                             sqlite3_errmsg(db));

    /* SQLite's page cache: 2 MiB by default, which a few thousand models'
     * pages outgrow, and every page read again is a pread(). */
    if (sqlite3_exec(db, "PRAGMA cache_size = -" TP__SQLITE_CACHE_KIB, NULL, NULL, NULL) !=
        SQLITE_OK)
        return tp__error_set(err, TP_EINTERNAL, "sqlite: open \"%s\": cache_size: %s", path,
                             sqlite3_errmsg(db));

    if (sqlite3_exec(db,
                     "PRAGMA wal_autocheckpoint = " TP__SQLITE_CHECKPOINT_PAGES
                     "; PRAGMA journal_size_limit = " TP__SQLITE_WAL_LIMIT,
                     NULL, NULL, NULL) != SQLITE_OK)
        return tp__error_set(err, TP_EINTERNAL, "sqlite: open \"%s\": wal_autocheckpoint: %s", path,
                             sqlite3_errmsg(db));

    rc = migrate(db, path, err);
    if (rc != TP_OK)
        return rc;

    if ((rc = sqlite3_prepare_v3(db, "BEGIN IMMEDIATE", -1, SQLITE_PREPARE_PERSISTENT, &q->begin,
                                 NULL)) != SQLITE_OK ||
        (rc = sqlite3_prepare_v3(db, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &q->commit, NULL)) !=
            SQLITE_OK ||
        (rc = sqlite3_prepare_v3(db, "ROLLBACK", -1, SQLITE_PREPARE_PERSISTENT, &q->rollback,
                                 NULL)) != SQLITE_OK ||
        (rc = sqlite3_prepare_v3(db, "UPDATE folded SET seq = ?1 WHERE id = 0", -1,
                                 SQLITE_PREPARE_PERSISTENT, &q->set_folded, NULL)) != SQLITE_OK)
        return tp__error_set(err, (rc & 0xff) == SQLITE_NOMEM ? TP_ENOMEM : TP_EINTERNAL,
                             "sqlite: open \"%s\": %s", path, sqlite3_errmsg(db));
    return TP_OK;
}

TP_API tp_store *
tp_store_sqlite(const char *path, const tp_store_options *opts, tp_error *err)
{
    tp_store_options o = {TP_SYNC_FULL, 5000, NULL};
    if (opts != NULL)
        o = *opts;
    if (path == NULL) {
        tp__error_set(err, TP_EARG, "sqlite: path: expected a file name");
        return NULL;
    }
    if ((int)o.synchronous < TP_SYNC_FULL || o.synchronous > TP_SYNC_OFF) {
        tp__error_set(err, TP_EARG, "sqlite: synchronous: expected TP_SYNC_FULL, NORMAL or OFF");
        return NULL;
    }
    if (o.vfs != NULL && sqlite3_vfs_find(o.vfs) == NULL) {
        tp__error_set(err, TP_EARG, "sqlite: vfs: no VFS named \"%s\"", o.vfs);
        return NULL;
    }
    sql_store *q = tp__calloc(1, sizeof *q);
    if (q == NULL) {
        tp__error_set(err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    q->base.ops = &sqlite_ops;
    q->lock_fd = -1;
    q->sync = o.synchronous;
    q->fold_ms = TP__SQLITE_FOLD_MS;
    q->fold_bytes = TP__SQLITE_FOLD_BYTES;
    q->pending_max = TP__SQLITE_PENDING_MAX;
    q->row_bytes = TP__SQLITE_ROW_BYTES;
    q->plan.seed = tp__seed(q);
    q->busy_ms = o.busy_timeout_ms > INT_MAX ? INT_MAX
                 : o.busy_timeout_ms == 0    ? 5000
                                             : (int)o.busy_timeout_ms;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&q->mu, NULL);
    pthread_mutex_init(&q->dbmu, NULL);
    pthread_cond_init(&q->fold_cv, &ca);
    pthread_cond_init(&q->room_cv, NULL);
    pthread_condattr_destroy(&ca);
    /* FULLMUTEX: the fold thread and the scans take turns on the tables'
     * connection (dbmu), and tests read PRAGMAs through it meanwhile. */
    int rc = sqlite3_open_v2(
        path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, o.vfs);
    if (rc != SQLITE_OK) {
        tp__error_set(err, (rc & 0xff) == SQLITE_NOMEM ? TP_ENOMEM : TP_EINTERNAL,
                      "sqlite: open \"%s\": %s", path,
                      q->db != NULL ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc));
        sq_free(&q->base);
        return NULL;
    }
    /* The lock before the first read: sqlite3_open_v2 reads nothing yet. */
    if (lock_database(q, path, err) != TP_OK || setup(q, path, &o, err) != TP_OK ||
        log_setup(q, path, &o, err) != TP_OK || log_replay(q, path, err) != TP_OK) {
        sq_free(&q->base);
        return NULL;
    }
    if (q->log != NULL) {
        if (pthread_create(&q->thread, NULL, fold_main, q) != 0) {
            tp__error_set(err, TP_EINTERNAL, "sqlite: open \"%s\": the fold thread: %s", path,
                          strerror(errno));
            sq_free(&q->base);
            return NULL;
        }
        q->started = 1;
    }
    tp__error_clear(err);
    return &q->base;
}

struct sqlite3 *
tp__store_sqlite_db(tp_store *s)
{
    if (s == NULL || s->ops != &sqlite_ops)
        return NULL;
    sql_store *q = (sql_store *)s;
    pthread_mutex_lock(&q->dbmu);
    fold(q, NULL);
    pthread_mutex_unlock(&q->dbmu);
    return q->db;
}

struct sqlite3 *
tp__store_sqlite_log(tp_store *s)
{
    if (s == NULL || s->ops != &sqlite_ops)
        return NULL;
    return ((sql_store *)s)->log;
}

int
tp__store_sqlite_limits(tp_store *s, long fold_ms, size_t fold_bytes, size_t pending_max,
                        size_t row_bytes)
{
    if (s == NULL || s->ops != &sqlite_ops || fold_ms <= 0 || fold_bytes == 0 || pending_max == 0 ||
        row_bytes == 0)
        return TP_EARG;
    sql_store *q = (sql_store *)s;
    pthread_mutex_lock(&q->mu);
    q->fold_ms = fold_ms;
    q->fold_bytes = fold_bytes;
    q->pending_max = pending_max;
    q->row_bytes = row_bytes;
    pthread_cond_broadcast(&q->fold_cv);
    pthread_mutex_unlock(&q->mu);
    return TP_OK;
}
