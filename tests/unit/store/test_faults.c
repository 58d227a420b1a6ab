/*
 * A hub on SQLite with I/O errors injected under it (tests/support/faultvfs):
 * a scripted workload of writes from two tenants on a shared lww-map model
 * and private models, with tenants evicted and loaded again, while the N-th
 * write, sync or read of SQLite fails, for every N. Nothing crashes or
 * leaks (ASan), every write a client saw acked is in the database
 * afterwards, nothing is applied twice, and what the hub held at the end is
 * what a new hub restores from the file (memory equal to disk). A failed
 * commit undoes nothing: its frames wait and it is tried again, by the
 * next drain that seals something new, or by tp_hub_commit.
 */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <string.h>

#include "faultvfs.h"
#include "store/store.h"
#include "support.h"
#include "transports.h"

#define MAP                                                                                        \
    "{\"title\":\"Map\",\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}"

static tp_schema *map;
static int64_t now = 1700000000000;

static void
setup(void)
{
    tpt_chdir_temp();
    cr_assert_eq(tpt_faultvfs_register(), SQLITE_OK);
    tp_error err;
    map = tp_schema_new(MAP, &err);
    cr_assert_not_null(map);
}

static void
teardown(void)
{
    tpt_fault_clear();
    tp_schema_free(map);
    tpt_chdir_back();
}

TestSuite(faults, .init = setup, .fini = teardown);

static tp_hub *
open_hub(const char *path, tp_store **store)
{
    tp_store_options so = {0};
    so.vfs = TPT_FAULTVFS;
    tp_error err;
    *store = tp_store_sqlite(path, &so, &err);
    cr_assert_not_null(*store, "%s", err.message);
    tp_hub_config cfg = {0};
    cfg.clock = tpt_clock;
    cfg.clock_user = &now;
    cfg.store = *store;
    cfg.evict_idle_ms = 1;
    tp_hub *hub = tp_hub_new(&cfg, &err);
    cr_assert_not_null(hub, "%s", err.message);
    return hub;
}

/* Every model's value and rev as one text. */
static char *
state(tp_hub *hub)
{
    json_t *o = json_object();
    char *v = tp_hub_get_shared(hub, "map");
    json_object_set_new(o, "map",
                        json_pack("{s:o,s:I}", "value", json_loads(v, 0, NULL), "rev",
                                  (json_int_t)tp_hub_shared_rev(hub, "map")));
    free(v);
    const char *tenants[] = {"ann", "ben"};
    for (int i = 0; i < 2; i++) {
        tp_session *s = tp_hub_tenant(hub, tenants[i]);
        v = tp_session_get(s, "p");
        json_object_set_new(o, tenants[i],
                            json_pack("{s:o,s:I}", "value",
                                      v ? json_loads(v, 0, NULL) : json_null(), "rev",
                                      (json_int_t)tp_session_rev(s, "p")));
        free(v);
    }
    char *text = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(o);
    return text;
}

typedef struct ledger {
    int acked[2][64]; /* [tenant][ref]: the write was acked */
    int errors;       /* writes refused with internal (the store was failing) */
} ledger;

/* One write of a tenant; notes whether it was acked. Feeds and drains as a
 * transport would; a connection the hub cannot open (a read failed while
 * loading its tenant) is skipped. */
static void
write_one(tp_hub *hub, ledger *l, int t, int ref)
{
    static const char *const tenants[] = {"ann", "ben"};
    tp_conn *c = tp_conn_open(hub, tenants[t], 0, NULL);
    if (c == NULL)
        return;
    json_decref(tpt_drain(c));
    char text[256];
    snprintf(text, sizeof text, "{\"type\":\"ping\",\"ref\":0,\"client\":\"%s-1\"}", tenants[t]);
    tpt_feed(c, text);
    json_decref(tpt_drain(c));
    /* Alternately the shared map (one key per write: a double application
     * would not show, the rev would) and the tenant's private model. */
    if (ref % 2)
        snprintf(text, sizeof text,
                 "{\"type\":\"write\",\"ref\":%d,\"scope\":\"shared\",\"id\":\"map\","
                 "\"patch\":{\"%s%d\":%d}}",
                 ref, tenants[t], ref, ref);
    else
        snprintf(text, sizeof text,
                 "{\"type\":\"write\",\"ref\":%d,\"scope\":\"private\",\"id\":\"p\","
                 "\"patch\":{\"w%d\":%d}}",
                 ref, ref, ref);
    tpt_feed(c, text);
    json_t *m = tpt_drain(c);
    for (size_t i = 0; i < json_array_size(m); i++) {
        json_t *e = json_array_get(m, i);
        if (json_integer_value(json_object_get(e, "ref")) != ref)
            continue;
        const char *type = json_string_value(json_object_get(e, "type"));
        if (strcmp(type, "ack") == 0)
            l->acked[t][ref] = 1;
        else if (strcmp(json_string_value(json_object_get(e, "code")), "internal") == 0)
            l->errors++;
    }
    json_decref(m);
    tp_conn_close(c);
    /* Now and then everybody idle leaves memory: the next write loads. */
    now += 5;
    if (ref % 3 == 0)
        tp_hub_evict(hub);
}

static void
workload(tp_hub *hub, ledger *l)
{
    for (int ref = 1; ref <= 24; ref++)
        write_one(hub, l, ref % 2, ref);
    /* Resend every write: each is applied at most once (an acked one gets
     * its outcome again; a refused one is applied now). */
    for (int ref = 1; ref <= 24; ref++)
        write_one(hub, l, ref % 2, ref);
}

static void
check_acked(const ledger *l, const char *st)
{
    json_t *o = json_loads(st, 0, NULL);
    static const char *const tenants[] = {"ann", "ben"};
    for (int t = 0; t < 2; t++)
        for (int ref = 1; ref < 64; ref++) {
            if (!l->acked[t][ref])
                continue;
            char key[32];
            json_t *v;
            if (ref % 2) {
                snprintf(key, sizeof key, "%s%d", tenants[t], ref);
                v = json_object_get(json_object_get(json_object_get(o, "map"), "value"), key);
            } else {
                snprintf(key, sizeof key, "w%d", ref);
                v = json_object_get(json_object_get(json_object_get(o, tenants[t]), "value"), key);
            }
            cr_assert_eq(json_integer_value(v), ref, "acked write %s ref %d is missing: %s",
                         tenants[t], ref, st);
        }
    /* Exactly once: the map's rev counts the writes that changed it. */
    size_t keys = json_object_size(json_object_get(json_object_get(o, "map"), "value"));
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(o, "map"), "rev")),
                 (json_int_t)keys + 1, "%s", st);
    json_decref(o);
}

static void
setup_db(const char *path)
{
    tp_store *store;
    tp_hub *hub = open_hub(path, &store);
    tp_error err;
    cr_assert_not_null(tp_hub_share_as(hub, "map", map, "{}", &tp_lww_map_crdt, &err));
    for (int t = 0; t < 2; t++) {
        const char *tenant = t ? "ben" : "ann";
        cr_assert_eq(tp_hub_subscribe(hub, tenant, "map", TP_WRITE), TP_OK);
        cr_assert_not_null(tp_session_host_as(tp_hub_tenant(hub, tenant), "p", map, "{}", &err));
    }
    cr_assert_eq(tp_hub_commit(hub, &err), TP_OK, "%s", err.message);
    tp_hub_free(hub);
    tp_store_free(store);
}

/* Runs the workload with the N-th call of ops failing, for every N. */
static long
every_n(unsigned ops, int code, long count)
{
    long rounds = 0, injected_total = 0, errors = 0, failures = 0;
    for (long n = 0;; n++) {
        char path[64];
        snprintf(path, sizeof path, "f%ld.db", n);
        tpt_fault_clear();
        setup_db(path);
        tp_store *store;
        tp_hub *hub = open_hub(path, &store);
        ledger l;
        memset(&l, 0, sizeof l);
        tpt_fault(ops, TPT_FILE_ANY, n, count, code);
        workload(hub, &l);
        long injected = tpt_faults.injected;
        tpt_fault_clear();
        /* The disk is back: what is left to store goes now (a retry is
         * just another commit). */
        tp_hub_sync(hub);
        cr_assert_eq(tp_hub_commit(hub, NULL), TP_OK);
        tp_hub_stats hs;
        tp_hub_get_stats(hub, &hs);
        failures += (long)hs.commit_failures;
        char *before = state(hub);
        tp_hub_free(hub);
        tp_store_free(store);

        hub = open_hub(path, &store);
        char *after = state(hub);
        cr_assert_str_eq(after, before, "memory equals disk (fault at call %ld)", n);
        check_acked(&l, after);
        sqlite3_stmt *q;
        cr_assert_eq(
            sqlite3_prepare_v2(tp__store_sqlite_db(store), "PRAGMA integrity_check", -1, &q, NULL),
            SQLITE_OK);
        cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
        cr_assert_str_eq((const char *)sqlite3_column_text(q, 0), "ok");
        sqlite3_finalize(q);
        free(before);
        free(after);
        tp_hub_free(hub);
        tp_store_free(store);
        remove(path);
        char side[80];
        snprintf(side, sizeof side, "%s-wal", path);
        remove(side);
        snprintf(side, sizeof side, "%s-shm", path);
        remove(side);
        rounds++;
        injected_total += injected;
        errors += l.errors;
        if (injected == 0)
            break; /* n is past the workload's last call */
    }
    cr_log_info("%ld rounds, %ld faults injected, %ld commits failed, %ld writes refused with "
                "internal",
                rounds, injected_total, failures, errors);
    cr_assert_gt(rounds, 3);
    return failures;
}

Test(faults, a_failing_write_at_every_n)
{
    cr_assert_gt(every_n(TPT_FAULT_WRITE, SQLITE_IOERR, 1), 0, "some commits failed");
}

Test(faults, a_failing_sync_at_every_n)
{
    cr_assert_gt(every_n(TPT_FAULT_SYNC, SQLITE_IOERR, 1), 0, "some commits failed");
}

Test(faults, a_failing_read_at_every_n)
{
    every_n(TPT_FAULT_READ, SQLITE_IOERR, 1);
}

Test(faults, a_full_disk_for_a_while_at_every_n)
{
    cr_assert_gt(every_n(TPT_FAULT_WRITE | TPT_FAULT_SYNC, SQLITE_FULL, 5), 0);
}
