/*
 * The SQLite store: one table per record kind, (k1, k2, n) the primary key
 * of a WITHOUT ROWID table, so that records are clustered in key order and a
 * scan is a walk of the primary key's b-tree. WAL mode; the file's schema
 * version is PRAGMA user_version, brought up to date by the migrations
 * below, all in one transaction. docs/internals/store.md has the why.
 *
 * Statements are prepared once per kind and operation, on first use, and
 * kept. Every statement is reset as soon as its result is read, so none
 * holds a read transaction open between calls.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "store/store.h"
#include "util/alloc.h"
#include "util/error.h"

#define TP__SQLITE_CACHE_KIB "16384" /* the page cache, KiB */
/* Pages the WAL may hold before a commit checkpoints it into the database
 * (SQLite's default is 1000). A checkpoint writes every page changed since
 * the last one and syncs the database: the commit that runs it holds the
 * acks of its transactions that long. W2 at 2000 tenants dirties a few
 * hundred pages per commit, so at 1000 nearly every other commit was a
 * checkpoint (p50 of an ack 104 ms against 6 ms at 16384, bench/run.sh
 * --storage); rarer checkpoints also write a page once for many commits. */
#define TP__SQLITE_CHECKPOINT_PAGES "8192"
/* The WAL file is cut back to this after a checkpoint resets it. */
#define TP__SQLITE_WAL_LIMIT "33554432"

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
};

#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

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

typedef struct sql_store {
    struct tp_store base; /* first: a tp_store * is a sql_store * */
    sqlite3 *db;
    sqlite3_stmt *stmt[TP__REC_KINDS][OP_COUNT];
    sqlite3_stmt *begin, *commit, *rollback;
    int in_txn;
    int doomed;   /* a call failed inside the transaction */
    int scanning; /* scans under way (a callback may scan again) */
    int lock_fd;  /* the lock file's descriptor (lock_database), or -1 */
} sql_store;

/* fail fills err with SQLite's message for the connection's last error and
 * returns the code; inside a transaction, it dooms it (store.h). */
static int
fail(sql_store *q, tp_error *err, const char *call, int rc)
{
    if (q->in_txn)
        q->doomed = 1;
    int code = (rc & 0xff) == SQLITE_NOMEM ? TP_ENOMEM : TP_EINTERNAL;
    return tp__error_set(err, code, "sqlite: %s: %s", call, sqlite3_errmsg(q->db));
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
step_done(sql_store *q, sqlite3_stmt *st, const char *call, tp_error *err)
{
    int rc = sqlite3_step(st);
    int out = rc == SQLITE_DONE ? TP_OK : fail(q, err, call, rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return out;
}

static int
check_kind(tp__rec_kind kind)
{
    return (int)kind >= 0 && kind < TP__REC_KINDS;
}

/* write_check: what every write checks before it touches SQLite. */
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

/* roll_back ends SQLite's transaction if it has one: SQLite rolls some back
 * by itself after an I/O error, and then has none. */
static void
roll_back(sql_store *q)
{
    if (!sqlite3_get_autocommit(q->db)) {
        sqlite3_step(q->rollback);
        sqlite3_reset(q->rollback);
    }
}

static int
sq_begin(tp_store *s, tp_error *err)
{
    sql_store *q = (sql_store *)s;
    if (q->in_txn)
        return tp__error_set(err, TP_EINTERNAL, "sqlite: begin: a transaction is already open");
    /* A rollback that failed (the disk went away) may have left SQLite's
     * transaction open: end it now, or BEGIN would fail for ever. */
    roll_back(q);
    int rc = sqlite3_step(q->begin);
    int out = rc == SQLITE_DONE ? TP_OK : fail(q, err, "begin", rc);
    sqlite3_reset(q->begin);
    if (out == TP_OK)
        q->in_txn = 1;
    else
        roll_back(q);
    return out;
}

static int
sq_put(tp_store *s, const tp__rec *rec, tp_error *err)
{
    sql_store *q = (sql_store *)s;
    if (rec == NULL || !check_kind(rec->kind) || rec->k1 == NULL || rec->k2 == NULL ||
        (rec->body == NULL && rec->body_len > 0))
        return fail_msg(q, err, TP_EARG, "put", "bad record (kind, NULL key or body)");
    int rc = write_check(q, "put", err);
    sqlite3_stmt *st;
    if (rc != TP_OK || (rc = prepared(q, rec->kind, OP_PUT, "put", &st, err)) != TP_OK)
        return rc;
    sqlite3_bind_text(st, 1, rec->k1, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, rec->k2, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, rec->n);
    /* A NULL pointer would bind NULL, not an empty blob. */
    int brc = rec->body_len > 0
                  ? sqlite3_bind_blob64(st, 4, rec->body, rec->body_len, SQLITE_STATIC)
                  : sqlite3_bind_zeroblob(st, 4, 0);
    if (brc != SQLITE_OK) {
        sqlite3_clear_bindings(st);
        return fail(q, err, "put", brc);
    }
    return step_done(q, st, "put", err);
}

/* del_run runs one of the delete statements with k1, k2 (when not NULL)
 * and n (when has_n). */
static int
del_run(sql_store *q, tp__rec_kind kind, op o, const char *call, const char *k1, const char *k2,
        int has_n, int64_t n, tp_error *err)
{
    if (!check_kind(kind) || k1 == NULL || (o != OP_DEL_K1 && k2 == NULL))
        return fail_msg(q, err, TP_EARG, call, "bad kind or NULL key");
    int rc = write_check(q, call, err);
    sqlite3_stmt *st;
    if (rc != TP_OK || (rc = prepared(q, kind, o, call, &st, err)) != TP_OK)
        return rc;
    sqlite3_bind_text(st, 1, k1, -1, SQLITE_STATIC);
    if (k2 != NULL)
        sqlite3_bind_text(st, 2, k2, -1, SQLITE_STATIC);
    if (has_n)
        sqlite3_bind_int64(st, 3, n);
    return step_done(q, st, call, err);
}

static int
sq_del(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2, int64_t n, tp_error *err)
{
    return del_run((sql_store *)s, kind, OP_DEL, "del", k1, k2, 1, n, err);
}

static int
sq_del_below(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2, int64_t n,
             tp_error *err)
{
    return del_run((sql_store *)s, kind, OP_DEL_BELOW, "del_below", k1, k2, 1, n, err);
}

static int
sq_del_key(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2, tp_error *err)
{
    return del_run((sql_store *)s, kind, k2 != NULL ? OP_DEL_K2 : OP_DEL_K1, "del_key", k1, k2, 0,
                   0, err);
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
    else {
        int rc = sqlite3_step(q->commit);
        out = rc == SQLITE_DONE ? TP_OK : fail(q, err, "commit", rc);
        sqlite3_reset(q->commit);
    }
    /* A failed COMMIT may leave the transaction open (SQLITE_BUSY) or have
     * rolled it back already (an I/O error): either way nothing of it is
     * stored once this returns, and the next begin starts afresh. */
    if (out != TP_OK)
        roll_back(q);
    q->in_txn = q->doomed = 0;
    return out;
}

static void
sq_rollback(tp_store *s)
{
    sql_store *q = (sql_store *)s;
    if (!q->in_txn)
        return;
    roll_back(q);
    q->in_txn = q->doomed = 0;
}

static int
sq_scan(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2, tp__rec_fn fn, void *user,
        tp_error *err)
{
    sql_store *q = (sql_store *)s;
    if (!check_kind(kind) || fn == NULL)
        return fail_msg(q, err, TP_EARG, "scan", "bad kind or NULL callback");
    op o = k1 == NULL ? OP_SCAN : k2 == NULL ? OP_SCAN_K1 : OP_SCAN_K2;
    sqlite3_stmt *st;
    int rc = prepared(q, kind, o, "scan", &st, err);
    if (rc != TP_OK)
        return rc;
    /* A callback scanning the same kind the same way again: the cached
     * statement is under way, so this scan gets one of its own. */
    sqlite3_stmt *own = NULL;
    if (sqlite3_stmt_busy(st)) {
        rc = sqlite3_prepare_v2(q->db, sqlite3_sql(st), -1, &own, NULL);
        if (rc != SQLITE_OK)
            return fail(q, err, "scan", rc);
        st = own;
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
    return out;
}

static void
sq_free(tp_store *s)
{
    sql_store *q = (sql_store *)s;
    if (q->db != NULL) {
        if (q->in_txn && q->rollback != NULL)
            sq_rollback(s);
        for (int k = 0; k < TP__REC_KINDS; k++)
            for (int o = 0; o < OP_COUNT; o++)
                sqlite3_finalize(q->stmt[k][o]);
        sqlite3_finalize(q->begin);
        sqlite3_finalize(q->commit);
        sqlite3_finalize(q->rollback);
        /* The last connection to close checkpoints the WAL into the main
         * file and removes it. */
        sqlite3_close_v2(q->db);
    }
    /* Closing the descriptor drops the lock: only after SQLite is done
     * with the file, so that no other process writes it meanwhile. */
    if (q->lock_fd >= 0)
        close(q->lock_fd);
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

static int
lock_database(sql_store *q, const char *path, tp_error *err)
{
    /* SQLite's own full name of the file: one lock file whatever the path
     * given (relative, a URI). None for an in-memory or temporary one. */
    const char *file = sqlite3_db_filename(q->db, "main");
    if (file == NULL || file[0] == '\0')
        return TP_OK;
    char lock[PATH_MAX + sizeof LOCK_SUFFIX];
    int len = snprintf(lock, sizeof lock, "%s" LOCK_SUFFIX, file);
    if (len < 0 || (size_t)len >= sizeof lock)
        return tp__error_set(err, TP_EARG, "sqlite: open \"%s\": the path is too long", path);
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

/* setup runs everything from the first read to the prepared statements. */
static int
setup(sql_store *q, const char *path, const tp_store_options *o, tp_error *err)
{
    sqlite3 *db = q->db;
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, o->busy_timeout_ms > INT_MAX ? INT_MAX
                             : o->busy_timeout_ms == 0    ? 5000
                                                          : (int)o->busy_timeout_ms);

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
    if (sqlite3_exec(db, sync_sql[o->synchronous], NULL, NULL, NULL) != SQLITE_OK)
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
                                 NULL)) != SQLITE_OK)
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
    /* NOMUTEX: a store is used by one thread at a time (journal.h), so the
     * connection's own mutex would only cost. */
    int rc = sqlite3_open_v2(
        path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, o.vfs);
    if (rc != SQLITE_OK) {
        tp__error_set(err, (rc & 0xff) == SQLITE_NOMEM ? TP_ENOMEM : TP_EINTERNAL,
                      "sqlite: open \"%s\": %s", path,
                      q->db != NULL ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc));
        sq_free(&q->base);
        return NULL;
    }
    /* The lock before the first read: sqlite3_open_v2 reads nothing yet. */
    if (lock_database(q, path, err) != TP_OK || setup(q, path, &o, err) != TP_OK) {
        sq_free(&q->base);
        return NULL;
    }
    tp__error_clear(err);
    return &q->base;
}

struct sqlite3 *
tp__store_sqlite_db(tp_store *s)
{
    if (s == NULL || s->ops != &sqlite_ops)
        return NULL;
    return ((sql_store *)s)->db;
}
