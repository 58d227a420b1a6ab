/*
 * The store layer: durable (SQLite) and in-memory backends behind the
 * operations the core declares in core/journal.h (curl's vtls_int.h:
 * a vtable header, one file per backend).
 *
 * Rules every backend keeps, beyond journal.h (tests/unit/store checks them
 * against both):
 *
 * - A write (put, del, del_below, del_key) outside a transaction is a
 *   transaction of its own, as in SQLite's autocommit mode.
 * - begin inside a transaction, commit outside one: TP_EINTERNAL. rollback
 *   outside a transaction does nothing.
 * - A failed call inside a transaction dooms it: later writes and commit
 *   fail (commit then rolls back), until the caller calls rollback. SQLite
 *   may already have rolled the transaction back itself (I/O errors, disk
 *   full), so no backend lets the caller go on as if nothing had happened.
 * - A failed commit leaves nothing of the transaction stored and ends it:
 *   the next begin works (calling rollback first is harmless).
 * - scan's callback may scan again (any kind) but must not write: a write
 *   during a scan fails with TP_EINTERNAL.
 */
#ifndef TP_STORE_STORE_H
#define TP_STORE_STORE_H

#include "core/journal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Failure injection (memory backend, for the core's tests)                  */
/* ------------------------------------------------------------------------ */

/* The calls failure injection can aim at; OR them together. */
enum {
    TP__STORE_OP_BEGIN = 1 << 0,
    TP__STORE_OP_PUT = 1 << 1,
    TP__STORE_OP_DEL = 1 << 2, /* del, del_below and del_key */
    TP__STORE_OP_COMMIT = 1 << 3,
    TP__STORE_OP_SCAN = 1 << 4,
    TP__STORE_OP_ALL = (1 << 5) - 1
};

/*
 * tp__store_memory_fail arms failure injection on a memory store: of the
 * calls in ops, the first `after` succeed, then the next `count` fail
 * (count < 0: every one from then on), each with TP_EINTERNAL and the
 * message "memory: <call>: injected failure". A failing call behaves as a
 * real failure would: a failed commit stores nothing and ends the
 * transaction; any other failed call inside a transaction dooms it (see
 * above). ops == 0 disarms. Calls outside ops are not counted.
 * Returns TP_OK, or TP_EARG when s is not a memory store.
 *
 * Example: make the third commit from now fail, and only it:
 *     tp__store_memory_fail(s, TP__STORE_OP_COMMIT, 2, 1);
 */
int tp__store_memory_fail(tp_store *s, unsigned ops, long after, long count);

/* tp__store_memory_count returns how many records of kind a memory store
 * holds (its transaction's writes included), or -1 when s is not one. */
long tp__store_memory_count(tp_store *s, tp__rec_kind kind);

/* tp__store_sqlite_db folds what an SQLite store has logged into its tables
 * and returns the tables' connection (borrowed: valid until tp_store_free),
 * or NULL when s is not one: for tests and benchmarks that read PRAGMAs or
 * check integrity. Do not write through it. */
struct sqlite3 *tp__store_sqlite_db(tp_store *s);

/* tp__store_sqlite_log returns the connection to an SQLite store's log
 * ("<db>-log"; borrowed), or NULL when s is not one or its database is in
 * memory: for tests, between commits. Do not write through it. */
struct sqlite3 *tp__store_sqlite_log(tp_store *s);

/* tp__store_sqlite_limits sets an SQLite store's log limits (sqlite.c's
 * TP__SQLITE_FOLD_MS, _FOLD_BYTES, _PENDING_MAX, _ROW_BYTES), for tests that
 * reach them without writing hundreds of MiB. Returns TP_OK, or TP_EARG when
 * s is not an SQLite store or a limit is 0. */
int tp__store_sqlite_limits(tp_store *s, long fold_ms, size_t fold_bytes, size_t pending_max,
                            size_t row_bytes);

/* tp__store_kind_name names a record kind as the SQLite backend names its
 * table ("meta", "tenants", "models", "history", "subscriptions",
 * "clients", "outcomes"), or NULL when kind is out of range. */
const char *tp__store_kind_name(tp__rec_kind kind);

#ifdef __cplusplus
}
#endif

#endif /* TP_STORE_STORE_H */
