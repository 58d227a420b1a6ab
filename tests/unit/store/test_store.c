/*
 * The store backends (src/store/): one conformance suite run against both
 * (suites "memory" and "sqlite"), a differential test that feeds both the
 * same random operations, what only SQLite has (the file: versions, WAL,
 * synchronous, refusals), failure injection on the memory store and the
 * failing allocator, and I/O faults injected under SQLite through the
 * faultvfs shim, at every N of a scripted workload.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "faultvfs.h"
#include "store/store.h"
#include "support.h"
#include "transports.h"

/* ------------------------------------------------------------------------ */
/* Fixtures                                                                  */
/* ------------------------------------------------------------------------ */

static char dir[64];
static char path[128];
static tp_store *st;
static int is_sqlite;
static tp_store_options opts;
static tp_error err;

static void
make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/tp-store-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp");
    snprintf(path, sizeof path, "%s/store.db", dir);
}

static void
remove_dir(void)
{
    if (dir[0] == '\0')
        return;
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
    dir[0] = '\0';
}

static tp_store *
open_sqlite(void)
{
    tp_store *s = tp_store_sqlite(path, &opts, &err);
    cr_assert_not_null(s, "open: %s", err.message);
    return s;
}

static void
setup_memory(void)
{
    is_sqlite = 0;
    st = tp_store_memory();
    cr_assert_not_null(st);
}

static void
setup_sqlite(void)
{
    is_sqlite = 1;
    make_dir();
    cr_assert_eq(tpt_faultvfs_register(), SQLITE_OK);
    tpt_fault_clear();
    opts = (tp_store_options){0};
    opts.vfs = TPT_FAULTVFS;
    st = open_sqlite();
}

static void
teardown(void)
{
    tp_store_free(st);
    st = NULL;
    remove_dir();
}

/* reopen closes and opens the store again (SQLite); the memory store is
 * the same object across hubs, so there is nothing to do. */
static void
reopen(void)
{
    if (!is_sqlite)
        return;
    tp_store_free(st);
    st = open_sqlite();
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

#define OK(call) cr_assert_eq((call), TP_OK, "%s: %s", #call, err.message)

static int
s_begin(tp_store *s)
{
    return s->ops->begin(s, &err);
}

static int
s_commit(tp_store *s)
{
    return s->ops->commit(s, &err);
}

static int
s_put(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2, int64_t n, const char *body,
      size_t len)
{
    tp__rec r = {kind, k1, k2, n, body, len};
    return s->ops->put(s, &r, &err);
}

static int
s_puts(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2, int64_t n, const char *body)
{
    return s_put(s, kind, k1, k2, n, body, strlen(body));
}

/* A growable string. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void
sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void
sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    cr_assert(n >= 0 && (size_t)n < sizeof tmp);
    sb_add(b, tmp, (size_t)n);
}

/* One line per record: kind|k1|k2|n|hex(body). Checks that body is never
 * NULL, as journal.h promises. */
static int
dump_one(const tp__rec *r, void *user)
{
    sbuf *b = user;
    cr_assert_not_null(r->body);
    sb_printf(b, "%d|", (int)r->kind);
    sb_add(b, r->k1, strlen(r->k1));
    sb_add(b, "|", 1);
    sb_add(b, r->k2, strlen(r->k2));
    sb_printf(b, "|%lld|", (long long)r->n);
    for (size_t i = 0; i < r->body_len; i++)
        sb_printf(b, "%02x", (unsigned char)r->body[i]);
    sb_add(b, "\n", 1);
    return 0;
}

/* dump_kind returns the records of (kind, k1, k2) as text (free it). */
static char *
dump_kind(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2)
{
    sbuf b = {0};
    sb_add(&b, "", 0);
    tp_error e;
    int rc = s->ops->scan(s, kind, k1, k2, dump_one, &b, &e);
    cr_assert_eq(rc, TP_OK, "scan: %s", e.message);
    return b.p;
}

/* dump returns every record of every kind as text (free it). */
static char *
dump(tp_store *s)
{
    sbuf b = {0};
    sb_add(&b, "", 0);
    for (int k = 0; k < TP__REC_KINDS; k++) {
        char *one = dump_kind(s, (tp__rec_kind)k, NULL, NULL);
        sb_add(&b, one, strlen(one));
        free(one);
    }
    return b.p;
}

static void
assert_dump(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2, const char *want)
{
    char *got = dump_kind(s, kind, k1, k2);
    cr_assert_str_eq(got, want, "kind %d k1 %s k2 %s", (int)kind, k1 ? k1 : "(all)",
                     k2 ? k2 : "(all)");
    free(got);
}

static int
count_one(const tp__rec *r, void *user)
{
    (void)r;
    (*(long *)user)++;
    return 0;
}

static long
count(tp_store *s, tp__rec_kind kind, const char *k1, const char *k2)
{
    long n = 0;
    OK(s->ops->scan(s, kind, k1, k2, count_one, &n, &err));
    return n;
}

/* "ab" as the hex a dump shows. */
#define HEX_AB "6162"

/* BOTH defines a test in both suites; its body is check_<name>(). */
#define BOTH(name)                                                                                 \
    static void check_##name(void);                                                                \
    Test(memory, name, .init = setup_memory, .fini = teardown)                                     \
    {                                                                                              \
        check_##name();                                                                            \
    }                                                                                              \
    Test(sqlite, name, .init = setup_sqlite, .fini = teardown)                                     \
    {                                                                                              \
        check_##name();                                                                            \
    }                                                                                              \
    static void check_##name(void)

/* ------------------------------------------------------------------------ */
/* Conformance: both backends                                                */
/* ------------------------------------------------------------------------ */

BOTH(put_replaces)
{
    OK(s_begin(st));
    OK(s_puts(st, TP__REC_MODEL, "alice", "m1", 0, "one"));
    OK(s_puts(st, TP__REC_MODEL, "alice", "m2", 0, "two"));
    OK(s_commit(st));
    OK(s_begin(st));
    OK(s_puts(st, TP__REC_MODEL, "alice", "m1", 0, "ab"));
    OK(s_commit(st));
    assert_dump(st, TP__REC_MODEL, NULL, NULL,
                "2|alice|m1|0|" HEX_AB "\n"
                "2|alice|m2|0|74776f\n");
    /* The same key in another kind is another record. */
    OK(s_puts(st, TP__REC_SUB, "alice", "m1", 0, "x"));
    cr_assert_eq(count(st, TP__REC_MODEL, NULL, NULL), 2);
    cr_assert_eq(count(st, TP__REC_SUB, NULL, NULL), 1);
}

BOTH(del_one)
{
    OK(s_begin(st));
    OK(s_puts(st, TP__REC_HIST, "", "s1", 1, "ab"));
    OK(s_puts(st, TP__REC_HIST, "", "s1", 2, "ab"));
    OK(s_commit(st));
    OK(s_begin(st));
    OK(st->ops->del(st, TP__REC_HIST, "", "s1", 1, &err));
    /* Deleting what is not there is no error. */
    OK(st->ops->del(st, TP__REC_HIST, "", "s1", 1, &err));
    OK(st->ops->del(st, TP__REC_HIST, "", "nothing", 7, &err));
    OK(st->ops->del(st, TP__REC_MODEL, "", "s1", 2, &err));
    OK(s_commit(st));
    assert_dump(st, TP__REC_HIST, NULL, NULL, "3||s1|2|" HEX_AB "\n");
}

BOTH(del_below)
{
    OK(s_begin(st));
    for (int n = 1; n <= 6; n++) {
        OK(s_puts(st, TP__REC_HIST, "a", "x", n, "ab"));
        OK(s_puts(st, TP__REC_HIST, "a", "y", n, "ab"));
        OK(s_puts(st, TP__REC_HIST, "ax", "", n, "ab"));
    }
    OK(s_commit(st));
    OK(st->ops->del_below(st, TP__REC_HIST, "a", "x", 5, &err));
    assert_dump(st, TP__REC_HIST, "a", "x",
                "3|a|x|5|" HEX_AB "\n"
                "3|a|x|6|" HEX_AB "\n");
    cr_assert_eq(count(st, TP__REC_HIST, "a", "y"), 6);
    cr_assert_eq(count(st, TP__REC_HIST, "ax", NULL), 6);
    /* Below the lowest: nothing; below a huge n: everything of the key. */
    OK(st->ops->del_below(st, TP__REC_HIST, "a", "y", 1, &err));
    cr_assert_eq(count(st, TP__REC_HIST, "a", "y"), 6);
    OK(st->ops->del_below(st, TP__REC_HIST, "a", "y", INT64_MAX, &err));
    cr_assert_eq(count(st, TP__REC_HIST, "a", "y"), 0);
    cr_assert_eq(count(st, TP__REC_HIST, NULL, NULL), 8);
}

BOTH(del_key)
{
    OK(s_begin(st));
    const char *k1s[] = {"a", "ab", "b"};
    const char *k2s[] = {"", "c1", "c2"};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            for (int n = 0; n < 3; n++)
                OK(s_puts(st, TP__REC_OUTCOME, k1s[i], k2s[j], n, "ab"));
    OK(s_commit(st));
    /* With k2: that key's records only ("" is a k2 like any other). */
    OK(st->ops->del_key(st, TP__REC_OUTCOME, "a", "c1", &err));
    cr_assert_eq(count(st, TP__REC_OUTCOME, "a", "c1"), 0);
    cr_assert_eq(count(st, TP__REC_OUTCOME, "a", NULL), 6);
    OK(st->ops->del_key(st, TP__REC_OUTCOME, "a", "", &err));
    cr_assert_eq(count(st, TP__REC_OUTCOME, "a", NULL), 3);
    /* Without k2: every record of k1, and not of k1s it is a prefix of. */
    OK(st->ops->del_key(st, TP__REC_OUTCOME, "a", NULL, &err));
    cr_assert_eq(count(st, TP__REC_OUTCOME, "a", NULL), 0);
    cr_assert_eq(count(st, TP__REC_OUTCOME, "ab", NULL), 9);
    cr_assert_eq(count(st, TP__REC_OUTCOME, "b", NULL), 9);
    /* Of a key that has nothing: no error. */
    OK(st->ops->del_key(st, TP__REC_OUTCOME, "zzz", NULL, &err));
    OK(st->ops->del_key(st, TP__REC_CLIENT, "b", "c1", &err));
    cr_assert_eq(count(st, TP__REC_OUTCOME, NULL, NULL), 18);
}

/* Keys in the order scan must return them: k1, then k2, bytewise (so
 * "Z" < "a" < "é", and ("a", "z") < ("ab", "")), then n as a signed
 * integer. */
static const struct {
    const char *k1, *k2;
    int64_t n;
} ordered[] = {
    {"", "", INT64_MIN},
    {"", "", -1},
    {"", "", 0},
    {"", "", 1},
    {"", "", INT64_MAX},
    {"", "a", 0},
    {"A", "", 0},
    {"Z", "", 0},
    {"a", "", 5},
    {"a", "\x01", 0},
    {"a", "B", 0},
    {"a", "b", -3},
    {"a", "b", 2},
    {"a", "b", 10},
    {"a", "b ", 0},
    {"a", "z", 0},
    {"a", "\xc3\xa9", 0},
    {"a", "\xf0\x9f\x98\x80", 0},
    {"a\x01", "", 0},
    {"ab", "", 0},
    {"b", "a", 0},
    {"\xc3\xa9", "", 0},
    {"\xc3\xa9t\xc3\xa9", "", 0},
    {"\xe2\x82\xac", "", 0},
};
#define N_ORDERED (sizeof ordered / sizeof ordered[0])

BOTH(scan_order)
{
    /* Put them in a scrambled order (7 is prime to N_ORDERED). */
    OK(s_begin(st));
    for (size_t i = 0; i < N_ORDERED; i++) {
        size_t j = (i * 7 + 3) % N_ORDERED;
        OK(s_puts(st, TP__REC_HIST, ordered[j].k1, ordered[j].k2, ordered[j].n, "ab"));
    }
    OK(s_commit(st));
    sbuf want = {0};
    sb_add(&want, "", 0);
    for (size_t i = 0; i < N_ORDERED; i++) {
        tp__rec r = {TP__REC_HIST, ordered[i].k1, ordered[i].k2, ordered[i].n, "ab", 2};
        dump_one(&r, &want);
    }
    char *got = dump_kind(st, TP__REC_HIST, NULL, NULL);
    cr_assert_str_eq(got, want.p);
    free(got);
    free(want.p);
    reopen();
    got = dump_kind(st, TP__REC_HIST, NULL, NULL);
    cr_assert_eq(count(st, TP__REC_HIST, NULL, NULL), (long)N_ORDERED);
    free(got);
}

BOTH(scan_filters)
{
    OK(s_begin(st));
    OK(s_puts(st, TP__REC_SUB, "alice", "s1", 0, "ab"));
    OK(s_puts(st, TP__REC_SUB, "alice", "s2", 0, "ab"));
    OK(s_puts(st, TP__REC_SUB, "alicia", "s1", 0, "ab"));
    OK(s_puts(st, TP__REC_SUB, "bob", "s1", 0, "ab"));
    OK(s_puts(st, TP__REC_CLIENT, "alice", "c", 0, "ab"));
    OK(s_commit(st));
    assert_dump(st, TP__REC_SUB, "alice", NULL,
                "4|alice|s1|0|" HEX_AB "\n"
                "4|alice|s2|0|" HEX_AB "\n");
    assert_dump(st, TP__REC_SUB, "alice", "s2", "4|alice|s2|0|" HEX_AB "\n");
    assert_dump(st, TP__REC_SUB, "al", NULL, "");
    assert_dump(st, TP__REC_SUB, "carol", NULL, "");
    assert_dump(st, TP__REC_SUB, "bob", "s2", "");
    assert_dump(st, TP__REC_TENANT, NULL, NULL, "");
    cr_assert_eq(count(st, TP__REC_SUB, NULL, NULL), 4);
    /* k2 without k1 is ignored: the whole kind. */
    cr_assert_eq(count(st, TP__REC_SUB, NULL, "s1"), 4);
    assert_dump(st, TP__REC_CLIENT, NULL, NULL, "5|alice|c|0|" HEX_AB "\n");
}

static int
stop_at_two(const tp__rec *r, void *user)
{
    (void)r;
    return ++*(int *)user == 2 ? 7 : 0;
}

BOTH(scan_stops)
{
    for (int n = 0; n < 5; n++)
        OK(s_puts(st, TP__REC_HIST, "a", "b", n, "ab"));
    int calls = 0;
    cr_assert_eq(st->ops->scan(st, TP__REC_HIST, "a", "b", stop_at_two, &calls, &err), 7);
    cr_assert_eq(calls, 2);
    /* The store is usable after a stopped scan. */
    OK(s_puts(st, TP__REC_HIST, "a", "b", 9, "ab"));
    cr_assert_eq(count(st, TP__REC_HIST, "a", "b"), 6);
}

BOTH(rollback_discards)
{
    OK(s_begin(st));
    OK(s_puts(st, TP__REC_MODEL, "a", "m1", 0, "one"));
    OK(s_puts(st, TP__REC_MODEL, "a", "m2", 0, "two"));
    for (int n = 1; n <= 4; n++)
        OK(s_puts(st, TP__REC_HIST, "a", "m1", n, "h"));
    OK(s_puts(st, TP__REC_OUTCOME, "a", "c", 1, "o"));
    OK(s_commit(st));
    char *before = dump(st);

    OK(s_begin(st));
    OK(s_puts(st, TP__REC_MODEL, "a", "m1", 0, "changed"));
    OK(s_puts(st, TP__REC_MODEL, "a", "m3", 0, "new"));
    OK(st->ops->del(st, TP__REC_MODEL, "a", "m2", 0, &err));
    OK(st->ops->del_below(st, TP__REC_HIST, "a", "m1", 3, &err));
    OK(st->ops->del_key(st, TP__REC_OUTCOME, "a", NULL, &err));
    OK(s_puts(st, TP__REC_MODEL, "a", "m3", 0, "again"));
    OK(st->ops->del(st, TP__REC_MODEL, "a", "m3", 0, &err));
    OK(s_puts(st, TP__REC_MODEL, "a", "m2", 0, "back"));
    st->ops->rollback(st);

    char *after = dump(st);
    cr_assert_str_eq(after, before);
    free(after);
    reopen();
    after = dump(st);
    cr_assert_str_eq(after, before);
    free(after);
    free(before);
    /* A rollback without a transaction does nothing. */
    st->ops->rollback(st);
    OK(s_begin(st));
    OK(s_commit(st));
}

BOTH(transaction_sees_its_writes)
{
    OK(s_puts(st, TP__REC_TENANT, "a", "", 0, "ab"));
    OK(s_begin(st));
    OK(s_puts(st, TP__REC_TENANT, "b", "", 0, "ab"));
    OK(st->ops->del(st, TP__REC_TENANT, "a", "", 0, &err));
    assert_dump(st, TP__REC_TENANT, NULL, NULL, "1|b||0|" HEX_AB "\n");
    OK(s_commit(st));
    assert_dump(st, TP__REC_TENANT, NULL, NULL, "1|b||0|" HEX_AB "\n");
}

BOTH(commit_applies_all)
{
    OK(s_begin(st));
    char k[32], body[64];
    for (int i = 0; i < 500; i++) {
        snprintf(k, sizeof k, "t%03d", i % 17);
        snprintf(body, sizeof body, "{\"i\":%d}", i);
        OK(s_puts(st, (tp__rec_kind)(i % TP__REC_KINDS), k, "x", i, body));
    }
    OK(s_commit(st));
    reopen();
    long total = 0;
    for (int kind = 0; kind < TP__REC_KINDS; kind++)
        total += count(st, (tp__rec_kind)kind, NULL, NULL);
    cr_assert_eq(total, 500);
}

BOTH(empty_strings_and_bodies)
{
    OK(s_put(st, TP__REC_META, "", "", 0, NULL, 0));
    OK(s_put(st, TP__REC_META, "x", "", 0, "", 0));
    reopen();
    assert_dump(st, TP__REC_META, NULL, NULL,
                "0|||0|\n"
                "0|x||0|\n");
    assert_dump(st, TP__REC_META, "", "", "0|||0|\n");
}

BOTH(binary_bodies)
{
    char body[512];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (char)(i * 37 % 256); /* every byte value, NUL included */
    body[0] = body[sizeof body - 1] = '\0';
    OK(s_put(st, TP__REC_HIST, "a", "b", 1, body, sizeof body));
    OK(s_put(st, TP__REC_HIST, "a", "b", 2, "\0", 1));
    reopen();
    sbuf want = {0};
    sb_add(&want, "", 0);
    tp__rec r1 = {TP__REC_HIST, "a", "b", 1, body, sizeof body};
    tp__rec r2 = {TP__REC_HIST, "a", "b", 2, "\0", 1};
    dump_one(&r1, &want);
    dump_one(&r2, &want);
    assert_dump(st, TP__REC_HIST, "a", "b", want.p);
    free(want.p);
}

BOTH(long_keys)
{
    size_t len = 100000;
    char *k1 = malloc(len + 1), *k2 = malloc(len + 1);
    memset(k1, 'k', len);
    memset(k2, 'l', len);
    k1[len] = k2[len] = '\0';
    OK(s_begin(st));
    OK(s_puts(st, TP__REC_CLIENT, k1, k2, 3, "ab"));
    k2[len - 1] = 'm';
    OK(s_puts(st, TP__REC_CLIENT, k1, k2, 3, "ab"));
    OK(s_commit(st));
    reopen();
    cr_assert_eq(count(st, TP__REC_CLIENT, k1, k2), 1);
    cr_assert_eq(count(st, TP__REC_CLIENT, k1, NULL), 2);
    OK(st->ops->del_key(st, TP__REC_CLIENT, k1, k2, &err));
    cr_assert_eq(count(st, TP__REC_CLIENT, NULL, NULL), 1);
    free(k1);
    free(k2);
}

BOTH(reopen_keeps_data)
{
    OK(s_begin(st));
    OK(s_puts(st, TP__REC_META, "hub", "", 0, "{\"n\":1}"));
    OK(s_puts(st, TP__REC_MODEL, "", "s1", 0, "{\"v\":1}"));
    OK(s_puts(st, TP__REC_HIST, "", "s1", 1, "{\"p\":1}"));
    OK(s_commit(st));
    char *before = dump(st);
    reopen();
    reopen();
    char *after = dump(st);
    cr_assert_str_eq(after, before);
    free(before);
    free(after);
}

BOTH(transaction_rules)
{
    /* commit without a transaction, begin within one. */
    cr_assert_eq(s_commit(st), TP_EINTERNAL);
    cr_assert(strstr(err.message, "commit") != NULL, "%s", err.message);
    OK(s_begin(st));
    cr_assert_eq(s_begin(st), TP_EINTERNAL);
    cr_assert(strstr(err.message, st->ops->name) == err.message, "%s", err.message);
    OK(s_commit(st));
    /* A write outside a transaction is one of its own. */
    OK(s_puts(st, TP__REC_TENANT, "t", "", 0, "ab"));
    OK(st->ops->del_key(st, TP__REC_TENANT, "none", NULL, &err));
    reopen();
    cr_assert_eq(count(st, TP__REC_TENANT, NULL, NULL), 1);
}

BOTH(failed_call_dooms_transaction)
{
    OK(s_begin(st));
    OK(s_puts(st, TP__REC_TENANT, "a", "", 0, "ab"));
    cr_assert_eq(s_puts(st, (tp__rec_kind)99, "b", "", 0, "ab"), TP_EARG);
    cr_assert_eq(s_puts(st, TP__REC_TENANT, "c", "", 0, "ab"), TP_EINTERNAL);
    cr_assert(strstr(err.message, "roll it back") != NULL, "%s", err.message);
    cr_assert_eq(st->ops->del(st, TP__REC_TENANT, "a", "", 0, &err), TP_EINTERNAL);
    cr_assert_eq(s_commit(st), TP_EINTERNAL);
    cr_assert(strstr(err.message, "rolled back") != NULL, "%s", err.message);
    /* The commit ended it: nothing stored, the next transaction works. */
    cr_assert_eq(count(st, TP__REC_TENANT, NULL, NULL), 0);
    st->ops->rollback(st);
    OK(s_begin(st));
    OK(s_puts(st, TP__REC_TENANT, "d", "", 0, "ab"));
    OK(s_commit(st));
    assert_dump(st, TP__REC_TENANT, NULL, NULL, "1|d||0|" HEX_AB "\n");
    /* Bad arguments outside a transaction doom nothing. */
    cr_assert_eq(st->ops->del(st, TP__REC_TENANT, NULL, "", 0, &err), TP_EARG);
    cr_assert_eq(st->ops->del_below(st, TP__REC_TENANT, "a", NULL, 0, &err), TP_EARG);
    cr_assert_eq(st->ops->del_key(st, TP__REC_TENANT, NULL, NULL, &err), TP_EARG);
    cr_assert_eq(s_put(st, TP__REC_TENANT, "a", NULL, 0, "", 0), TP_EARG);
    cr_assert_eq(s_put(st, TP__REC_TENANT, "a", "", 0, NULL, 3), TP_EARG);
    cr_assert_eq(st->ops->scan(st, TP__REC_KINDS, NULL, NULL, count_one, NULL, &err), TP_EARG);
    OK(s_puts(st, TP__REC_TENANT, "e", "", 0, "ab"));
    cr_assert_eq(count(st, TP__REC_TENANT, NULL, NULL), 2);
}

typedef struct nest {
    tp_store *s;
    long inner;
    int write_rc;
} nest;

static int
nested(const tp__rec *r, void *user)
{
    nest *x = user;
    /* Scanning again, the same way and another, works. */
    long n = 0;
    tp_error e;
    cr_assert_eq(x->s->ops->scan(x->s, TP__REC_HIST, r->k1, NULL, count_one, &n, &e), TP_OK, "%s",
                 e.message);
    cr_assert_eq(x->s->ops->scan(x->s, TP__REC_MODEL, NULL, NULL, count_one, &n, &e), TP_OK, "%s",
                 e.message);
    x->inner += n;
    /* Writing does not. */
    tp__rec w = {TP__REC_MODEL, "w", "", 0, "", 0};
    x->write_rc = x->s->ops->put(x->s, &w, &e);
    return 0;
}

BOTH(scan_within_scan)
{
    OK(s_puts(st, TP__REC_HIST, "a", "1", 1, "ab"));
    OK(s_puts(st, TP__REC_HIST, "a", "1", 2, "ab"));
    OK(s_puts(st, TP__REC_HIST, "b", "1", 1, "ab"));
    OK(s_puts(st, TP__REC_MODEL, "m", "", 0, "ab"));
    nest x = {st, 0, 0};
    OK(st->ops->scan(st, TP__REC_HIST, NULL, NULL, nested, &x, &err));
    /* Each of 3 records: its k1's HIST records, plus 1 MODEL record. */
    cr_assert_eq(x.inner, (2 + 1) + (2 + 1) + (1 + 1));
    cr_assert_eq(x.write_rc, TP_EINTERNAL);
    cr_assert_eq(count(st, TP__REC_MODEL, NULL, NULL), 1);
    OK(s_puts(st, TP__REC_MODEL, "w", "", 0, "ab"));
}

/* ------------------------------------------------------------------------ */
/* Differential: the same random operations on both backends                 */
/* ------------------------------------------------------------------------ */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static unsigned
rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

Test(store, differential, .fini = teardown)
{
    make_dir();
    opts = (tp_store_options){0};
    opts.synchronous = TP_SYNC_OFF;
    st = open_sqlite();
    tp_store *mem = tp_store_memory();
    tp_store *both[2] = {mem, st};
    static const char *k1s[] = {"", "a", "ab", "b", "\xc3\xa9"};
    static const char *k2s[] = {"", "x", "y", "xy"};
    int in_txn = 0;
    for (int step = 0; step < 4000; step++) {
        unsigned op = rnd(100);
        tp__rec_kind kind = (tp__rec_kind)rnd(3);
        const char *k1 = k1s[rnd(5)], *k2 = k2s[rnd(4)];
        int64_t n = (int64_t)rnd(8) - 2;
        int with_k2 = (int)rnd(2);
        char body[32];
        snprintf(body, sizeof body, "b%d", step);
        /* What to do: open, commit or roll back a transaction now and
         * then; otherwise write (inside one or not). */
        enum { BEGIN, COMMIT, ROLLBACK, PUT, DEL, DEL_BELOW, DEL_KEY, SCAN } act;
        if (op < 8)
            act = !in_txn ? BEGIN : op < 6 ? COMMIT : ROLLBACK;
        else
            act = op < 60 ? PUT : op < 75 ? DEL : op < 85 ? DEL_BELOW : op < 90 ? DEL_KEY : SCAN;
        for (int i = 0; i < 2; i++) {
            tp_store *s = both[i];
            int rc = TP_OK;
            switch (act) {
            case BEGIN: rc = s->ops->begin(s, &err); break;
            case COMMIT: rc = s->ops->commit(s, &err); break;
            case ROLLBACK: s->ops->rollback(s); break;
            case PUT: rc = s_puts(s, kind, k1, k2, n, body); break;
            case DEL: rc = s->ops->del(s, kind, k1, k2, n, &err); break;
            case DEL_BELOW: rc = s->ops->del_below(s, kind, k1, k2, n, &err); break;
            case DEL_KEY: rc = s->ops->del_key(s, kind, k1, with_k2 ? k2 : NULL, &err); break;
            case SCAN: break;
            }
            cr_assert_eq(rc, TP_OK, "step %d op %u: %s", step, op, err.message);
        }
        if (act == BEGIN)
            in_txn = 1;
        else if (act == COMMIT || act == ROLLBACK)
            in_txn = 0;
        if (step % 97 == 0 || act == SCAN) {
            char *a = dump(mem), *b = dump(st);
            cr_assert_str_eq(a, b, "step %d", step);
            free(a);
            free(b);
        }
    }
    if (in_txn) {
        OK(s_commit(mem));
        OK(s_commit(st));
    }
    long total = 0;
    for (int k = 0; k < TP__REC_KINDS; k++) {
        long c = tp__store_memory_count(mem, (tp__rec_kind)k);
        cr_assert_eq(c, count(mem, (tp__rec_kind)k, NULL, NULL));
        total += c;
    }
    cr_assert_gt(total, 20);
    tp_store_free(mem);
    char *a = dump(st);
    reopen();
    char *b = dump(st);
    cr_assert_str_eq(a, b);
    free(a);
    free(b);
}

/* ------------------------------------------------------------------------ */
/* SQLite: the file                                                          */
/* ------------------------------------------------------------------------ */

/* db_long runs a query on db and returns the first column of its row. */
static long
db_long(sqlite3 *db, const char *sql)
{
    cr_assert_not_null(db);
    sqlite3_stmt *stmt;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK, "%s: %s", sql,
                 sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(stmt), SQLITE_ROW);
    long v = (long)sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return v;
}

static long
pragma(tp_store *s, const char *sql)
{
    return db_long(tp__store_sqlite_db(s), sql);
}

/* log_pragma reads a number from the store's log (sqlite.c: "<db>-log"). */
static long
log_pragma(tp_store *s, const char *sql)
{
    return db_long(tp__store_sqlite_log(s), sql);
}

/* raw_exec_on runs SQL on a file through a connection of its own. */
static void
raw_exec_on(const char *file, const char *sql)
{
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(file, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
}

/* raw_exec runs SQL on the file through a connection of its own. */
static void
raw_exec(const char *sql)
{
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
}

Test(sqlite, file_schema, .init = setup_sqlite, .fini = teardown)
{
    cr_assert_eq(pragma(st, "PRAGMA user_version"), 2);
    cr_assert_eq(pragma(st, "PRAGMA application_id"), 0x74707374);
    /* The log: WAL, pages of 16 KiB, never checkpointed by the committing
     * connection (the fold thread does it), one table. */
    cr_assert_eq(log_pragma(st, "PRAGMA application_id"), 0x74707374);
    cr_assert_eq(log_pragma(st, "PRAGMA page_size"), 16384);
    cr_assert_eq(log_pragma(st, "PRAGMA wal_autocheckpoint"), 0);
    cr_assert_eq(log_pragma(st, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND "
                                "name = 'log'"),
                 1);
    cr_assert_eq(pragma(st, "SELECT count(*) FROM folded"), 1);
    /* Checkpoints every 8192 WAL pages, not SQLite's 1000 (sqlite.c says why). */
    cr_assert_eq(pragma(st, "PRAGMA wal_autocheckpoint"), 8192);
    cr_assert_eq(pragma(st, "PRAGMA journal_size_limit"), 33554432);
    sqlite3 *db = tp__store_sqlite_db(st);
    sqlite3_stmt *stmt;
    cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(stmt), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(stmt, 0), "wal");
    sqlite3_finalize(stmt);
    /* One WITHOUT ROWID table per kind, named as tp__store_kind_name says. */
    for (int k = 0; k < TP__REC_KINDS; k++) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '%s' "
                 "AND sql LIKE '%%WITHOUT ROWID%%'",
                 tp__store_kind_name((tp__rec_kind)k));
        cr_assert_eq(pragma(st, sql), 1, "%s", tp__store_kind_name((tp__rec_kind)k));
    }
    cr_assert_eq(pragma(st, "SELECT count(*) FROM sqlite_schema WHERE type = 'table'"),
                 TP__REC_KINDS + 1);
    cr_assert_null(tp__store_kind_name(TP__REC_KINDS));
    cr_assert_null(tp__store_sqlite_db(NULL));
    /* WAL is a property of the file: another connection sees it. */
    tp_store_free(st);
    st = NULL;
    sqlite3 *raw;
    cr_assert_eq(sqlite3_open(path, &raw), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &stmt, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(stmt), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(stmt, 0), "wal");
    sqlite3_finalize(stmt);
    sqlite3_close(raw);
}

Test(sqlite, newer_version_refused, .init = setup_sqlite, .fini = teardown)
{
    OK(s_puts(st, TP__REC_META, "hub", "", 0, "{}"));
    tp_store_free(st);
    st = NULL;
    raw_exec("PRAGMA user_version = 3");
    cr_assert_null(tp_store_sqlite(path, &opts, &err));
    cr_assert_eq(err.code, TP_EARG);
    cr_assert(strstr(err.message, path) != NULL, "%s", err.message);
    cr_assert(strstr(err.message, "newer") != NULL, "%s", err.message);
    /* Refused without a change: the file keeps its data. */
    raw_exec("PRAGMA user_version = 2");
    st = open_sqlite();
    cr_assert_eq(count(st, TP__REC_META, NULL, NULL), 1);
}

Test(sqlite, old_version_migrated, .init = setup_sqlite, .fini = teardown)
{
    /* A file at version 0 (empty) is brought to the current version; one
     * already there is left as it is. */
    tp_store_free(st);
    st = NULL;
    remove_dir();
    make_dir();
    raw_exec("PRAGMA user_version = 0");
    st = open_sqlite();
    cr_assert_eq(pragma(st, "PRAGMA user_version"), 2);
    reopen();
    cr_assert_eq(pragma(st, "PRAGMA user_version"), 2);
}

Test(sqlite, version_1_file_migrated, .init = setup_sqlite, .fini = teardown)
{
    /* A file an older build wrote (version 1: the tables, no log) keeps its
     * records and gets the log's counter. */
    tp_store_free(st);
    st = NULL;
    remove_dir();
    make_dir();
    raw_exec("CREATE TABLE meta (k1 TEXT NOT NULL COLLATE BINARY, k2 TEXT NOT NULL COLLATE "
             "BINARY, n INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (k1, k2, n)) WITHOUT "
             "ROWID; INSERT INTO meta VALUES ('hub', '', 0, X'6162'); PRAGMA user_version = 1; "
             "PRAGMA application_id = 1953526644");
    st = open_sqlite();
    cr_assert_eq(pragma(st, "PRAGMA user_version"), 2);
    cr_assert_eq(pragma(st, "SELECT seq FROM folded"), 0);
    assert_dump(st, TP__REC_META, NULL, NULL, "0|hub||0|" HEX_AB "\n");
}

Test(sqlite, not_a_database, .init = setup_sqlite, .fini = teardown)
{
    tp_store_free(st);
    st = NULL;
    remove_dir();
    make_dir();
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    for (int i = 0; i < 200; i++)
        fputs("this is not an SQLite database, only text\n", f);
    fclose(f);
    cr_assert_null(tp_store_sqlite(path, &opts, &err));
    cr_assert_eq(err.code, TP_EINTERNAL);
    cr_assert(strstr(err.message, path) != NULL, "%s", err.message);
    cr_assert(strstr(err.message, "not a database") != NULL, "%s", err.message);
    /* Untouched. */
    size_t len;
    char *text = tpt_read_file(path, &len);
    cr_assert_eq(len, 200 * strlen("this is not an SQLite database, only text\n"));
    free(text);
}

Test(sqlite, unreadable_path, .init = setup_sqlite, .fini = teardown)
{
    char bad[256];
    snprintf(bad, sizeof bad, "%s/no/such/dir/store.db", dir);
    cr_assert_null(tp_store_sqlite(bad, &opts, &err));
    cr_assert_eq(err.code, TP_EINTERNAL);
    cr_assert(strstr(err.message, bad) != NULL, "%s", err.message);
    cr_assert(strstr(err.message, "unable to open") != NULL, "%s", err.message);
}

Test(sqlite, another_programs_database, .init = setup_sqlite, .fini = teardown)
{
    tp_store_free(st);
    st = NULL;
    raw_exec("PRAGMA application_id = 42");
    cr_assert_null(tp_store_sqlite(path, &opts, &err));
    cr_assert_eq(err.code, TP_EARG);
    cr_assert(strstr(err.message, "another program") != NULL, "%s", err.message);
}

Test(sqlite, read_only_file, .init = setup_sqlite, .fini = teardown)
{
    tp_store_free(st);
    st = NULL;
    tpt_fault_readonly(1);
    cr_assert_null(tp_store_sqlite(path, &opts, &err));
    cr_assert_eq(err.code, TP_EINTERNAL);
    cr_assert(strstr(err.message, "read-only") != NULL, "%s", err.message);
    tpt_fault_readonly(0);
    st = open_sqlite();
}

Test(sqlite, options, .init = setup_sqlite, .fini = teardown)
{
    /* synchronous as asked; FULL when zero-initialised. */
    static const struct {
        tp_sync sync;
        long pragma;
        long tables; /* the tables' folds: they sync unless OFF */
    } levels[] = {{TP_SYNC_FULL, 2, 2}, {TP_SYNC_NORMAL, 1, 2}, {TP_SYNC_OFF, 0, 0}};
    cr_assert_eq(log_pragma(st, "PRAGMA synchronous"), 2);
    cr_assert_eq(pragma(st, "PRAGMA busy_timeout"), 5000);
    for (size_t i = 0; i < 3; i++) {
        tp_store_free(st);
        opts.synchronous = levels[i].sync;
        opts.busy_timeout_ms = 1234;
        st = open_sqlite();
        /* What the level promises is the log's: a commit is its sync. */
        cr_assert_eq(log_pragma(st, "PRAGMA synchronous"), levels[i].pragma);
        cr_assert_eq(pragma(st, "PRAGMA synchronous"), levels[i].tables);
        cr_assert_eq(pragma(st, "PRAGMA busy_timeout"), 1234);
        cr_assert_eq(log_pragma(st, "PRAGMA busy_timeout"), 1234);
    }
    /* NULL options: the defaults, through the default VFS. */
    tp_store_free(st);
    st = tp_store_sqlite(path, NULL, &err);
    cr_assert_not_null(st, "%s", err.message);
    cr_assert_eq(log_pragma(st, "PRAGMA synchronous"), 2);
    /* Bad ones. */
    tp_store_options bad = {0};
    bad.synchronous = (tp_sync)7;
    cr_assert_null(tp_store_sqlite(path, &bad, &err));
    cr_assert_eq(err.code, TP_EARG);
    bad = (tp_store_options){0};
    bad.vfs = "no-such-vfs";
    cr_assert_null(tp_store_sqlite(path, &bad, &err));
    cr_assert_eq(err.code, TP_EARG);
    cr_assert(strstr(err.message, "no-such-vfs") != NULL, "%s", err.message);
    cr_assert_null(tp_store_sqlite(NULL, NULL, &err));
    cr_assert_eq(err.code, TP_EARG);
    cr_assert_null(tp_store_sqlite(NULL, NULL, NULL));
    tp_store_free(NULL);
}

/* One database, one opener (issue 16): the store holds an exclusive lock on
 * "<db>-lock" for its lifetime; a second open, from this process or another,
 * is refused with the holder's pid and name, and the kernel drops the lock
 * with the holder. */
static void
expect_in_use(const char *p, long pid)
{
    tp_error e = {0, ""};
    cr_assert_null(tp_store_sqlite(p, NULL, &e), "a second open of %s succeeded", p);
    cr_assert_eq(e.code, TP_EINTERNAL);
    char comm[32] = "";
    FILE *f = fopen("/proc/self/comm", "r");
    cr_assert_not_null(f);
    cr_assert_not_null(fgets(comm, sizeof comm, f));
    fclose(f);
    comm[strcspn(comm, "\n")] = '\0';
    char want[512];
    snprintf(want, sizeof want, "database %s is in use by another %s (pid %ld)", path, comm, pid);
    cr_assert_str_eq(e.message, want);
}

Test(sqlite, one_opener_at_a_time, .init = setup_sqlite, .fini = teardown)
{
    OK(s_puts(st, TP__REC_META, "a", "", 0, "ab"));
    /* The same file, by the same path, by the default VFS, and by a relative
     * path: all refused, while st holds it. */
    expect_in_use(path, (long)getpid());
    cr_assert_eq(chdir(dir), 0);
    expect_in_use("store.db", (long)getpid());
    char lockname[160];
    snprintf(lockname, sizeof lockname, "%s-lock", path);
    FILE *f = fopen(lockname, "r");
    cr_assert_not_null(f, "no lock file %s", lockname);
    long held = 0;
    cr_assert_eq(fscanf(f, "%ld", &held), 1);
    fclose(f);
    cr_assert_eq(held, (long)getpid());
    /* The refused opens changed nothing of the holder's: it goes on. */
    OK(s_begin(st));
    OK(s_puts(st, TP__REC_META, "b", "", 0, "ab"));
    OK(s_commit(st));
    cr_assert_eq(count(st, TP__REC_META, NULL, NULL), 2);
    /* Closed: the next open takes it, and sees everything. */
    tp_store_free(st);
    st = open_sqlite();
    cr_assert_eq(count(st, TP__REC_META, NULL, NULL), 2);
    /* In-memory databases have no file, and no lock: any number at once. */
    tp_store *m1 = tp_store_sqlite(":memory:", NULL, &err);
    tp_store *m2 = tp_store_sqlite(":memory:", NULL, &err);
    cr_assert(m1 != NULL && m2 != NULL, "%s", err.message);
    tp_store_free(m1);
    tp_store_free(m2);
}

Test(sqlite, lock_of_a_killed_process_is_gone, .init = setup_sqlite, .fini = teardown)
{
    tp_store_free(st);
    st = NULL;
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t child = fork();
    cr_assert_neq(child, -1);
    if (child == 0) {
        tp_error e = {0, ""};
        tp_store *s = tp_store_sqlite(path, NULL, &e);
        char ok = s != NULL ? 'y' : 'n';
        if (write(fds[1], &ok, 1) != 1)
            _exit(3);
        for (;;)
            pause(); /* holds the store until killed */
    }
    char got = 0;
    cr_assert_eq(read(fds[0], &got, 1), 1);
    close(fds[0]);
    close(fds[1]);
    cr_assert_eq(got, 'y', "the child could not open the store");
    /* Another process holds it: refused, naming that process. */
    expect_in_use(path, (long)child);
    /* SIGKILL: nothing runs in the child, and the kernel drops its lock. */
    cr_assert_eq(kill(child, SIGKILL), 0);
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_assert(WIFSIGNALED(status));
    st = open_sqlite();
    OK(s_puts(st, TP__REC_META, "a", "", 0, "ab"));
}

Test(sqlite, in_memory_file, .init = setup_memory, .fini = teardown)
{
    tp_store *s = tp_store_sqlite(":memory:", NULL, &err);
    cr_assert_not_null(s, "%s", err.message);
    OK(s_puts(s, TP__REC_META, "a", "", 0, "ab"));
    cr_assert_eq(count(s, TP__REC_META, NULL, NULL), 1);
    tp_store_free(s);
}

Test(sqlite, locked_by_another_process, .init = setup_sqlite, .fini = teardown)
{
    tp_store_free(st);
    opts.busy_timeout_ms = 50;
    st = open_sqlite();
    /* Another process holding the tables' write lock delays folds, not
     * commits: the log is what a commit writes. A scan, which must see the
     * commit, fails meanwhile. */
    sqlite3 *other;
    cr_assert_eq(sqlite3_open(path, &other), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    OK(s_begin(st));
    OK(s_puts(st, TP__REC_META, "a", "", 0, "ab"));
    OK(s_commit(st));
    cr_assert_eq(st->ops->scan(st, TP__REC_META, NULL, NULL, count_one, &(long){0}, &err),
                 TP_EINTERNAL);
    cr_assert(strstr(err.message, "database is locked") != NULL, "%s", err.message);
    cr_assert_eq(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    cr_assert_eq(count(st, TP__REC_META, NULL, NULL), 1);
    sqlite3_close(other);
    /* Holding the log's fails a commit at once, with nothing stored. */
    char log[160];
    snprintf(log, sizeof log, "%s-log", path);
    cr_assert_eq(sqlite3_open(log, &other), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    OK(s_begin(st));
    OK(s_puts(st, TP__REC_META, "b", "", 0, "ab"));
    cr_assert_eq(s_commit(st), TP_EINTERNAL);
    cr_assert(strstr(err.message, "sqlite: commit: database is locked") != NULL, "%s", err.message);
    cr_assert_eq(count(st, TP__REC_META, NULL, NULL), 1);
    cr_assert_eq(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    OK(s_begin(st));
    OK(s_puts(st, TP__REC_META, "c", "", 0, "ab"));
    OK(s_commit(st));
    reopen();
    assert_dump(st, TP__REC_META, NULL, NULL,
                "0|a||0|" HEX_AB "\n"
                "0|c||0|" HEX_AB "\n");
}

/* raw_count runs a counting query on a file through a connection of its own
 * (what another process would see). */
static long
raw_count(const char *file, const char *sql)
{
    sqlite3 *db;
    cr_assert_eq(sqlite3_open_v2(file, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    long v = db_long(db, sql);
    sqlite3_close(db);
    return v;
}

/* The child's log rows' size (0: the default). */
static size_t crash_row_bytes;

/* crash_after closes st, then runs commits of transactions 0 to n - 1 of a
 * small script in a child process that then dies without closing the store
 * (as a SIGKILL would leave it: logged, not folded); log gets the log's
 * file name. */
static void
crash_after(int n, char *log, size_t size)
{
    tp_store_free(st);
    st = NULL;
    snprintf(log, size, "%s-log", path);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        tp_error e;
        tp_store *s = tp_store_sqlite(path, &opts, &e);
        if (s == NULL || (crash_row_bytes > 0 &&
                          tp__store_sqlite_limits(s, 60000, 1 << 20, 1 << 20, crash_row_bytes)))
            _exit(3);
        for (int t = 0; t < n; t++) {
            char k[16];
            snprintf(k, sizeof k, "m%d", t);
            tp__rec r = {TP__REC_MODEL, "a", k, 0, "ab", 2};
            if (s->ops->begin(s, &e) != TP_OK || s->ops->put(s, &r, &e) != TP_OK ||
                (t > 0 && s->ops->del(s, TP__REC_MODEL, "a", "m0", 0, &e) != TP_OK) ||
                s->ops->commit(s, &e) != TP_OK)
                _exit(4);
        }
        kill(getpid(), SIGKILL);
        _exit(5);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status %d", status);
}

Test(sqlite, a_crash_before_the_fold_loses_nothing, .init = setup_sqlite, .fini = teardown)
{
    char log[160];
    crash_after(5, log, sizeof log);
    /* Logged, not in the tables: the fold thread had no time to run. */
    cr_assert_eq(raw_count(log, "SELECT count(*) FROM log"), 5);
    cr_assert_eq(raw_count(path, "SELECT count(*) FROM models"), 0);
    st = open_sqlite();
    /* The open replayed it, in order (m0 put, then deleted), and trimmed. */
    assert_dump(st, TP__REC_MODEL, NULL, NULL,
                "2|a|m1|0|" HEX_AB "\n"
                "2|a|m2|0|" HEX_AB "\n"
                "2|a|m3|0|" HEX_AB "\n"
                "2|a|m4|0|" HEX_AB "\n");
    cr_assert_eq(log_pragma(st, "SELECT count(*) FROM log"), 0);
    cr_assert_eq(pragma(st, "SELECT seq FROM folded"), 5);
    /* And numbering goes on after it. */
    OK(s_puts(st, TP__REC_META, "x", "", 0, "ab"));
    cr_assert_eq(log_pragma(st, "SELECT max(seq) FROM log"), 6);
}

Test(sqlite, a_large_transaction_is_logged_in_rows, .init = setup_sqlite, .fini = teardown)
{
    /* Rows of at most 1 KiB of ops (cut between ops): ten ops of about
     * 330 bytes make rows of four, four and two, committed together. */
    cr_assert_eq(tp__store_sqlite_limits(st, 60000, 1 << 20, 1 << 20, 1024), TP_OK);
    char body[300];
    memset(body, 'q', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    OK(s_begin(st));
    for (int i = 0; i < 10; i++) {
        char k2[8];
        snprintf(k2, sizeof k2, "m%d", i);
        OK(s_puts(st, TP__REC_MODEL, "t", k2, 0, body));
    }
    OK(s_commit(st));
    cr_assert_eq(log_pragma(st, "SELECT count(*) FROM log"), 3);
    cr_assert_eq(log_pragma(st, "SELECT max(seq) - min(seq) FROM log"), 2);
    cr_assert_eq(count(st, TP__REC_MODEL, "t", NULL), 10);
    cr_assert_eq(pragma(st, "SELECT seq FROM folded"), 3);
    /* Killed before its fold, a process leaves the rows the next open
     * replays whole: a row per op, so two for each transaction but the
     * first (a put and a delete). */
    crash_row_bytes = 1;
    char log[160];
    crash_after(5, log, sizeof log);
    crash_row_bytes = 0;
    cr_assert_eq(raw_count(log, "SELECT count(*) FROM log"), 9);
    st = open_sqlite();
    cr_assert_eq(count(st, TP__REC_MODEL, "t", NULL), 10);
    cr_assert_eq(count(st, TP__REC_MODEL, "a", NULL), 4);
    cr_assert_eq(log_pragma(st, "SELECT count(*) FROM log"), 0);
}

Test(sqlite, a_log_of_another_copy_is_refused, .init = setup_sqlite, .fini = teardown)
{
    char log[160];
    crash_after(4, log, sizeof log);
    /* Rows 1 and 2 gone: what is left does not follow on from the tables
     * (at 0), so replaying it would store half a history. */
    raw_exec_on(log, "DELETE FROM log WHERE seq < 3");
    cr_assert_null(tp_store_sqlite(path, &opts, &err));
    cr_assert_eq(err.code, TP_EARG);
    cr_assert(strstr(err.message, "holds row 3 after row 0") != NULL, "%s", err.message);
    cr_assert(strstr(err.message, "-log") != NULL, "%s", err.message);
    /* Nothing was changed: the rows are still there. */
    cr_assert_eq(raw_count(log, "SELECT count(*) FROM log"), 2);
    cr_assert_eq(raw_count(path, "SELECT count(*) FROM models"), 0);
    /* Moved away, the tables open as they are. */
    char moved[170];
    snprintf(moved, sizeof moved, "%s.old", log);
    cr_assert_eq(rename(log, moved), 0);
    st = open_sqlite();
    cr_assert_eq(count(st, TP__REC_MODEL, NULL, NULL), 0);
}

Test(sqlite, the_fold_thread_folds_within_a_second_or_two, .init = setup_sqlite, .fini = teardown)
{
    OK(s_puts(st, TP__REC_META, "a", "", 0, "ab"));
    /* Another process sees the tables: the record gets there by itself. */
    long seen = 0;
    for (int i = 0; i < 60 && seen == 0; i++) {
        usleep(50000);
        seen = raw_count(path, "SELECT count(*) FROM meta");
    }
    cr_assert_eq(seen, 1, "not folded after 3 s");
    cr_assert_eq(raw_count(path, "SELECT seq FROM folded"), 1);
    /* The next commit trims what the tables hold from the log. */
    OK(s_puts(st, TP__REC_META, "b", "", 0, "ab"));
    cr_assert_eq(log_pragma(st, "SELECT min(seq) FROM log"), 2);
    cr_assert_eq(log_pragma(st, "SELECT count(*) FROM log"), 1);
}

/* ------------------------------------------------------------------------ */
/* Memory: failure injection and the failing allocator                       */
/* ------------------------------------------------------------------------ */

Test(memory, injected_commit_failure, .init = setup_memory, .fini = teardown)
{
    OK(s_puts(st, TP__REC_META, "kept", "", 0, "ab"));
    /* The second commit from now fails, and only it. */
    OK(tp__store_memory_fail(st, TP__STORE_OP_COMMIT, 1, 1));
    for (int i = 0; i < 3; i++) {
        OK(s_begin(st));
        char k[8];
        snprintf(k, sizeof k, "t%d", i);
        OK(s_puts(st, TP__REC_META, k, "", 0, "ab"));
        OK(st->ops->del(st, TP__REC_META, "kept", "", 0, &err));
        OK(s_puts(st, TP__REC_META, "kept", "", 0, "changed"));
        int rc = s_commit(st);
        if (i == 1) {
            cr_assert_eq(rc, TP_EINTERNAL);
            cr_assert_str_eq(err.message, "memory: commit: injected failure");
        } else
            cr_assert_eq(rc, TP_OK, "%s", err.message);
        if (i == 0)
            OK(s_puts(st, TP__REC_META, "kept", "", 0, "ab"));
    }
    assert_dump(st, TP__REC_META, NULL, NULL,
                "0|kept||0|6368616e676564\n"
                "0|t0||0|" HEX_AB "\n"
                "0|t2||0|" HEX_AB "\n");
}

Test(memory, injected_failures, .init = setup_memory, .fini = teardown)
{
    /* Every call from now on fails, each as its call. */
    OK(tp__store_memory_fail(st, TP__STORE_OP_ALL, 0, -1));
    cr_assert_eq(s_begin(st), TP_EINTERNAL);
    cr_assert_str_eq(err.message, "memory: begin: injected failure");
    cr_assert_eq(s_puts(st, TP__REC_META, "a", "", 0, "ab"), TP_EINTERNAL);
    cr_assert_str_eq(err.message, "memory: put: injected failure");
    cr_assert_eq(st->ops->del_key(st, TP__REC_META, "a", NULL, &err), TP_EINTERNAL);
    cr_assert_eq(st->ops->scan(st, TP__REC_META, NULL, NULL, count_one, NULL, &err), TP_EINTERNAL);
    cr_assert_str_eq(err.message, "memory: scan: injected failure");
    /* A failed put inside a transaction dooms it. */
    OK(tp__store_memory_fail(st, TP__STORE_OP_PUT, 1, 1));
    OK(s_begin(st));
    OK(s_puts(st, TP__REC_META, "a", "", 0, "ab"));
    cr_assert_eq(s_puts(st, TP__REC_META, "b", "", 0, "ab"), TP_EINTERNAL);
    cr_assert_eq(s_puts(st, TP__REC_META, "c", "", 0, "ab"), TP_EINTERNAL);
    cr_assert_eq(s_commit(st), TP_EINTERNAL);
    cr_assert_eq(tp__store_memory_count(st, TP__REC_META), 0);
    /* Disarmed: all is well. */
    OK(tp__store_memory_fail(st, 0, 0, 0));
    OK(s_begin(st));
    OK(s_puts(st, TP__REC_META, "a", "", 0, "ab"));
    OK(s_commit(st));
    cr_assert_eq(tp__store_memory_count(st, TP__REC_META), 1);
    /* Not a memory store. */
    cr_assert_eq(tp__store_memory_fail(NULL, 1, 0, 0), TP_EARG);
    cr_assert_eq(tp__store_memory_count(NULL, TP__REC_META), -1);
}

Test(sqlite, memory_hooks_refuse_sqlite, .init = setup_sqlite, .fini = teardown)
{
    cr_assert_eq(tp__store_memory_fail(st, TP__STORE_OP_ALL, 0, -1), TP_EARG);
    cr_assert_eq(tp__store_memory_count(st, TP__REC_META), -1);
}

/* alloc_script runs a fixed sequence on a new memory store and returns 1
 * when every call succeeded; any failure must leave the store equal to the
 * model of what succeeded, which `model` (a store made before arming)
 * follows. */
static int
alloc_script(void)
{
    tp_store *s = tp_store_memory();
    if (s == NULL)
        return 0;
    int ok = 1;
    for (int t = 0; t < 6; t++) {
        if (s_begin(s) != TP_OK) {
            ok = 0;
            continue;
        }
        int rc = TP_OK;
        char k[16];
        for (int i = 0; i < 8 && rc == TP_OK; i++) {
            snprintf(k, sizeof k, "k%d", (t * 5 + i) % 11);
            rc = s_puts(s, (tp__rec_kind)(i % 3), k, "x", i, "0123456789abcdef");
        }
        if (rc == TP_OK && t % 2 == 1)
            rc = s->ops->del_key(s, TP__REC_META, "k1", NULL, &err);
        if (rc == TP_OK && t % 3 == 2)
            rc = s->ops->del_below(s, TP__REC_TENANT, k, "x", 4, &err);
        if (rc == TP_OK)
            rc = s_commit(s);
        else
            s->ops->rollback(s);
        if (rc != TP_OK) {
            cr_assert_eq(rc, TP_ENOMEM, "%s", err.message);
            ok = 0;
        }
    }
    tp_store_free(s);
    return ok;
}

Test(memory, failing_allocator)
{
    tpt_alloc_install();
    long base = tpt_alloc.live;
    int done = 0;
    for (long n = 1; !done && n < 100000; n++) {
        tpt_fail_after(n);
        done = alloc_script();
        tpt_fail_disarm();
        cr_assert_eq(tpt_alloc.live, base, "leak with allocation %ld failing", n);
    }
    cr_assert(done);
    /* And with a single failure each time (the store goes on after it). */
    done = 0;
    for (long n = 1; !done && n < 100000; n++) {
        tpt_fail_only(n);
        done = alloc_script() && !tpt_alloc.tripped;
        tpt_fail_disarm();
        cr_assert_eq(tpt_alloc.live, base);
    }
    cr_assert(done);
}

/* ------------------------------------------------------------------------ */
/* SQLite under I/O faults                                                   */
/* ------------------------------------------------------------------------ */

static void
put_some(tp_store *s, const char *k1, int n)
{
    OK(s_begin(s));
    for (int i = 0; i < n; i++) {
        char k2[16];
        snprintf(k2, sizeof k2, "m%04d", i);
        OK(s_puts(s, TP__REC_MODEL, k1, k2, 0, "{\"title\":\"a document of some length\"}"));
    }
    OK(s_commit(s));
}

/* A commit that fails on an I/O fault: an error, nothing of it visible (in
 * this process and after reopening), reads work while the fault lasts, and
 * writes work again once it is gone. */
static void
commit_fault(unsigned op, int code, const char *want)
{
    put_some(st, "before", 10);
    char *before = dump(st);
    OK(s_begin(st));
    for (int i = 0; i < 50; i++) {
        char k2[16];
        snprintf(k2, sizeof k2, "h%d", i);
        OK(s_puts(st, TP__REC_HIST, "during", k2, i, "0123456789"));
    }
    OK(st->ops->del_key(st, TP__REC_MODEL, "before", NULL, &err));
    tpt_fault(op, TPT_FILE_ANY, 0, -1, code);
    cr_assert_eq(s_commit(st), TP_EINTERNAL);
    cr_assert(strstr(err.message, want) == err.message, "%s", err.message);
    cr_assert_gt(tpt_faults.injected, 0);
    /* Still faulty: reads work and see nothing of it; writes fail. */
    char *now = dump(st);
    cr_assert_str_eq(now, before);
    free(now);
    cr_assert_neq(s_puts(st, TP__REC_META, "x", "", 0, "ab"), TP_OK);
    cr_assert_neq(s_puts(st, TP__REC_META, "x", "", 0, "ab"), TP_OK);
    /* The disk comes back. */
    tpt_fault_clear();
    now = dump(st);
    cr_assert_str_eq(now, before);
    free(now);
    put_some(st, "after", 3);
    cr_assert_eq(count(st, TP__REC_MODEL, "after", NULL), 3);
    cr_assert_eq(count(st, TP__REC_HIST, NULL, NULL), 0);
    now = dump(st);
    reopen();
    char *again = dump(st);
    cr_assert_str_eq(again, now);
    free(again);
    free(now);
    free(before);
    cr_assert_eq(pragma(st, "SELECT count(*) FROM pragma_integrity_check WHERE "
                            "integrity_check = 'ok'"),
                 1);
}

Test(fault, commit_write_error, .init = setup_sqlite, .fini = teardown)
{
    commit_fault(TPT_FAULT_WRITE, SQLITE_IOERR, "sqlite: commit: disk I/O error");
}

Test(fault, commit_disk_full, .init = setup_sqlite, .fini = teardown)
{
    commit_fault(TPT_FAULT_WRITE, SQLITE_FULL, "sqlite: commit: database or disk is full");
}

Test(fault, commit_sync_error, .init = setup_sqlite, .fini = teardown)
{
    commit_fault(TPT_FAULT_SYNC, SQLITE_IOERR, "sqlite: commit: disk I/O error");
}

Test(fault, tables_failing_commits_go_on, .init = setup_sqlite, .fini = teardown)
{
    put_some(st, "a", 3);
    /* Every write to the tables' file and its WAL fails, not the log's:
     * commits go on (the log holds them), folds fail and wait, and scans see
     * everything committed. */
    tpt_fault(TPT_FAULT_WRITE | TPT_FAULT_SYNC, TPT_FILE_DB | TPT_FILE_WAL, 0, -1, SQLITE_FULL);
    put_some(st, "b", 4);
    OK(st->ops->del_key(st, TP__REC_MODEL, "a", NULL, &err));
    cr_assert_eq(count(st, TP__REC_MODEL, NULL, NULL), 4);
    cr_assert_gt(tpt_faults.injected, 0, "the fold was tried");
    tpt_fault_clear();
    cr_assert_eq(count(st, TP__REC_MODEL, NULL, NULL), 4);
    reopen();
    cr_assert_eq(count(st, TP__REC_MODEL, "b", NULL), 4);
    cr_assert_eq(count(st, TP__REC_MODEL, NULL, NULL), 4);
    cr_assert_eq(pragma(st, "SELECT count(*) FROM pragma_integrity_check WHERE "
                            "integrity_check = 'ok'"),
                 1);
}

/* A transaction of about 1 KiB (one model record). */
static int
kib_txn(int i)
{
    char k2[16], body[1024];
    snprintf(k2, sizeof k2, "m%d", i);
    memset(body, 'a' + i % 26, sizeof body - 1);
    body[sizeof body - 1] = '\0';
    OK(s_begin(st));
    OK(s_puts(st, TP__REC_MODEL, "big", k2, 0, body));
    return s_commit(st);
}

Test(fault, what_waits_for_the_tables_is_bounded, .init = setup_sqlite, .fini = teardown)
{
    /* Folds every 20 ms; at most 4 KiB logged may wait for the tables. */
    cr_assert_eq(tp__store_sqlite_limits(st, 20, 1 << 20, 4096, 1 << 20), TP_OK);
    cr_assert_eq(tp__store_sqlite_limits(st, 0, 1, 1, 1), TP_EARG);
    cr_assert_eq(tp__store_sqlite_limits(NULL, 1, 1, 1, 1), TP_EARG);
    tpt_fault(TPT_FAULT_WRITE | TPT_FAULT_SYNC, TPT_FILE_DB | TPT_FILE_WAL, 0, -1, SQLITE_IOERR);
    /* The log takes commits until 4 KiB wait, then a commit fails, naming
     * the bound and the tables' failure, and stores nothing. */
    int i = 0, rc;
    while ((rc = kib_txn(i)) == TP_OK)
        cr_assert_lt(++i, 100, "the bound was not kept");
    cr_assert_eq(rc, TP_EINTERNAL);
    cr_assert_geq(i, 4);
    cr_assert(strstr(err.message, "logged wait for the tables, which cannot be written") != NULL,
              "%s", err.message);
    cr_assert(strstr(err.message, "disk I/O error") != NULL, "%s", err.message);
    /* Reads see every commit that succeeded. */
    cr_assert_eq(count(st, TP__REC_MODEL, "big", NULL), i);
    /* The disk comes back: the fold thread's next try (within 100 ms)
     * makes room, and commits go on; until then they still fail, as the
     * hub's retries expect. */
    tpt_fault_clear();
    int tries = 0;
    while (kib_txn(1000) != TP_OK) {
        cr_assert_lt(++tries, 100, "no room after 2 s: %s", err.message);
        usleep(20000);
    }
    reopen();
    cr_assert_eq(count(st, TP__REC_MODEL, "big", NULL), i + 1);
}

/* The log's WAL under commits that never pause: it starts over after each
 * fold instead of growing by every commit. Each commit here logs a 48 KiB
 * row (four WAL frames at least); 1200 of them write over 56 MiB of frames. */
Test(sqlite, the_logs_wal_starts_over_under_steady_commits, .init = setup_sqlite, .fini = teardown)
{
    cr_assert_eq(tp__store_sqlite_limits(st, 10, 1 << 20, 256u << 20, 1 << 20), TP_OK);
    static char body[48 * 1024];
    memset(body, 'w', sizeof body - 1);
    char wal[160];
    snprintf(wal, sizeof wal, "%s-log-wal", path);
    off_t most = 0;
    for (int i = 0; i < 1200; i++) {
        char k2[16];
        snprintf(k2, sizeof k2, "m%d", i % 64);
        OK(s_begin(st));
        OK(s_puts(st, TP__REC_MODEL, "big", k2, 0, body));
        OK(s_commit(st));
        struct stat sb;
        if (stat(wal, &sb) == 0 && sb.st_size > most)
            most = sb.st_size;
    }
    /* 32 MiB: the WAL's cut-back size, and about 660 commits' frames; it
     * reached 12 to 18 MiB here (under ASan too), and 183 MB when nothing
     * but the fold thread's checkpoint copied it. */
    cr_assert_lt(most, 32 << 20, "the log's WAL reached %lld bytes", (long long)most);
    cr_assert_gt(most, 0);
    /* Every row folded is trimmed, a slice per commit, and nothing is lost. */
    cr_assert_eq(count(st, TP__REC_MODEL, "big", NULL), 64);
    cr_assert_leq(log_pragma(st, "SELECT count(*) FROM log"), 1200 - 32);
}

Test(sqlite, a_commit_past_the_bound_waits_for_the_fold, .init = setup_sqlite, .fini = teardown)
{
    /* Folds past 2 KiB waiting, at most 4 KiB may wait: commits beyond it
     * wait for the fold thread instead of failing. */
    cr_assert_eq(tp__store_sqlite_limits(st, 60000, 2048, 4096, 1 << 20), TP_OK);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(kib_txn(i), TP_OK, "%d: %s", i, err.message);
    /* The tables got most of it by themselves (another connection sees). */
    cr_assert_geq(raw_count(path, "SELECT count(*) FROM models"), 60);
    cr_assert_eq(count(st, TP__REC_MODEL, "big", NULL), 64);
}

Test(fault, scan_read_error, .init = setup_sqlite, .fini = teardown)
{
    put_some(st, "a", 200);
    reopen(); /* an empty page cache: the scan must read */
    tpt_fault(TPT_FAULT_READ, TPT_FILE_ANY, 0, -1, SQLITE_IOERR);
    cr_assert_eq(st->ops->scan(st, TP__REC_MODEL, NULL, NULL, count_one, &(long){0}, &err),
                 TP_EINTERNAL);
    cr_assert(strstr(err.message, "sqlite: scan: disk I/O error") == err.message, "%s",
              err.message);
    tpt_fault_clear();
    cr_assert_eq(count(st, TP__REC_MODEL, NULL, NULL), 200);
}

Test(fault, reads_failing_during_a_transaction, .init = setup_sqlite, .fini = teardown)
{
    put_some(st, "a", 5);
    reopen();
    OK(s_begin(st));
    OK(s_puts(st, TP__REC_TENANT, "t", "", 0, "ab"));
    /* A transaction's writes read nothing (they are logged whole at
     * commit), so failing reads fail its scans, not the transaction. */
    tpt_fault(TPT_FAULT_READ, TPT_FILE_ANY, 0, -1, SQLITE_IOERR);
    OK(s_puts(st, TP__REC_MODEL, "b", "m", 0, "ab"));
    tpt_fault_clear();
    OK(s_puts(st, TP__REC_MODEL, "c", "m", 0, "ab"));
    tpt_fault(TPT_FAULT_READ, TPT_FILE_ANY, 0, -1, SQLITE_IOERR);
    OK(s_commit(st));
    cr_assert_eq(st->ops->scan(st, TP__REC_MODEL, NULL, NULL, count_one, &(long){0}, &err),
                 TP_EINTERNAL);
    tpt_fault_clear();
    cr_assert_eq(count(st, TP__REC_TENANT, NULL, NULL), 1);
    cr_assert_eq(count(st, TP__REC_MODEL, NULL, NULL), 7);
    reopen();
    cr_assert_eq(count(st, TP__REC_MODEL, NULL, NULL), 7);
}

/*
 * The workload for "fail at every N": transactions over every kind, with
 * replacements, deletes of every sort, a body over several pages (overflow
 * pages) and a transaction large enough to spill SQLite's page cache.
 * Returns TP_OK or the first failure (the transaction is then rolled back).
 */
static int
script_txn(tp_store *s, int t)
{
    static char big[20000];
    if (big[0] == '\0')
        for (size_t i = 0; i < sizeof big; i++)
            big[i] = (char)('a' + i % 26);
    int rc = s->ops->begin(s, &err);
    if (rc != TP_OK)
        return rc;
    char k[32];
    switch (t) {
    case 0:
        rc = s_puts(s, TP__REC_META, "hub", "", 0, "{\"next\":1}");
        for (int i = 0; rc == TP_OK && i < 4; i++) {
            snprintf(k, sizeof k, "tenant%d", i);
            rc = s_puts(s, TP__REC_TENANT, k, "", 0, "{\"next_id\":1}");
        }
        break;
    case 1:
        for (int i = 0; rc == TP_OK && i < 30; i++) {
            snprintf(k, sizeof k, "m%02d", i);
            rc = s_puts(s, TP__REC_MODEL, i % 2 ? "tenant1" : "", k, 0,
                        "{\"schema\":\"Doc\",\"rev\":1,\"value\":{\"title\":\"x\"}}");
            if (rc == TP_OK)
                rc = s_puts(s, TP__REC_HIST, i % 2 ? "tenant1" : "", k, 1, "{\"type\":\"patch\"}");
        }
        break;
    case 2:
        for (int i = 0; rc == TP_OK && i < 10; i++) {
            snprintf(k, sizeof k, "s%d", i);
            rc = s_puts(s, TP__REC_SUB, "tenant2", k, 0, "{\"access\":2}");
            if (rc == TP_OK)
                rc = s_puts(s, TP__REC_CLIENT, "tenant2", k, 0, "{\"ref\":9}");
            for (int n = 0; rc == TP_OK && n < 5; n++)
                rc = s_puts(s, TP__REC_OUTCOME, "tenant2", k, n, "{\"type\":\"ack\"}");
        }
        break;
    case 3:
        rc = s_put(s, TP__REC_MODEL, "", "m00", 0, big, sizeof big);
        for (int n = 2; rc == TP_OK && n < 40; n++)
            rc = s_puts(s, TP__REC_HIST, "", "m00", n, "{\"type\":\"patch\",\"patch\":{}}");
        break;
    case 4:
        rc = s->ops->del_below(s, TP__REC_HIST, "", "m00", 30, &err);
        if (rc == TP_OK)
            rc = s->ops->del_key(s, TP__REC_OUTCOME, "tenant2", "s3", &err);
        if (rc == TP_OK)
            rc = s->ops->del(s, TP__REC_MODEL, "tenant1", "m01", 0, &err);
        break;
    case 5:
        for (int i = 0; rc == TP_OK && i < 100; i++) {
            snprintf(k, sizeof k, "bulk%04d", i);
            rc = s_put(s, TP__REC_HIST, "tenant3", k, i, big, 300 + (size_t)i % 200);
        }
        break;
    case 6:
        rc = s->ops->del_key(s, TP__REC_MODEL, "tenant1", NULL, &err);
        if (rc == TP_OK)
            rc = s->ops->del_key(s, TP__REC_HIST, "tenant3", NULL, &err);
        if (rc == TP_OK)
            rc = s_put(s, TP__REC_MODEL, "", "m00", 0, big, 5000);
        break;
    default:
        for (int i = 0; rc == TP_OK && i < 20; i++) {
            snprintf(k, sizeof k, "t%d-%d", t, i);
            rc = s_puts(s, (tp__rec_kind)(i % TP__REC_KINDS), "tenant0", k, t, "{\"late\":true}");
        }
        if (rc == TP_OK)
            rc = s_puts(s, TP__REC_META, "hub", "", 0, t % 2 ? "{\"next\":2}" : "{\"next\":3}");
        break;
    }
    if (rc != TP_OK) {
        s->ops->rollback(s);
        return rc;
    }
    return s->ops->commit(s, &err);
}

#define SCRIPT_TXNS 10

/* run_script runs the workload on st and on a memory model, which applies
 * a transaction only when st committed it; returns how many failed. */
static int
run_script(tp_store *model)
{
    int failed = 0;
    for (int t = 0; t < SCRIPT_TXNS; t++) {
        int rc = script_txn(st, t);
        if (rc == TP_OK)
            cr_assert_eq(script_txn(model, t), TP_OK, "%s", err.message);
        else {
            cr_assert(rc == TP_EINTERNAL || rc == TP_ENOMEM, "rc %d", rc);
            cr_assert(strncmp(err.message, "sqlite: ", 8) == 0, "%s", err.message);
            failed++;
        }
    }
    return failed;
}

static void
assert_same(tp_store *model, const char *when, unsigned op, long n, int persist)
{
    char *a = dump(model), *b = dump(st);
    cr_assert(strcmp(a, b) == 0, "%s: op %u, fault at %ld, %s: the store differs from the model",
              when, op, n, persist ? "persistent" : "once");
    free(a);
    free(b);
}

/* fresh_store opens st on a new file, set up for the workload: a page
 * cache of a few pages, so that the workload reads (and spills) pages,
 * and checkpoints in the middle of it. */
static void
fresh_store(void)
{
    remove_dir();
    make_dir();
    st = open_sqlite();
    cr_assert_eq(sqlite3_exec(tp__store_sqlite_db(st),
                              "PRAGMA cache_size = 8; PRAGMA wal_autocheckpoint = 40", NULL, NULL,
                              NULL),
                 SQLITE_OK);
}

/* One run: a new file, the fault armed after it opened, the workload, then
 * the checks. */
static void
fault_run(unsigned op, long n, int persist, int code)
{
    fresh_store();
    tp_store *model = tp_store_memory();
    tpt_fault_clear();
    tpt_fault(op, TPT_FILE_ANY, n, persist ? -1 : 1, code);
    int failed = run_script(model);
    /* The log is folded into the tables under the fault too (the fold may
     * fail, and must lose nothing), and a scan overlays what is not. */
    cr_assert_not_null(tp__store_sqlite_db(st));
    int src = st->ops->scan(st, TP__REC_HIST, NULL, NULL, count_one, &(long){0}, &err);
    cr_assert(src == TP_OK || src == TP_EINTERNAL, "rc %d", src);
    long injected = tpt_faults.injected;
    tpt_fault_clear();
    if (!persist && injected > 0)
        cr_assert_leq(failed, 1, "op %u, fault at %ld: one fault failed %d transactions", op, n,
                      failed);
    /* Memory equals disk, in this process... */
    assert_same(model, "after the workload", op, n, persist);
    /* ...it takes writes again by itself... */
    cr_assert_eq(script_txn(st, 7), TP_OK, "op %u, fault at %ld: no recovery: %s", op, n,
                 err.message);
    cr_assert_eq(script_txn(model, 7), TP_OK);
    assert_same(model, "after recovery", op, n, persist);
    /* ...and on the file, which is sound. */
    reopen();
    assert_same(model, "reopened", op, n, persist);
    cr_assert_eq(pragma(st, "SELECT count(*) FROM pragma_integrity_check WHERE "
                            "integrity_check = 'ok'"),
                 1);
    tp_store_free(model);
    tp_store_free(st);
    st = NULL;
}

/* fault_every_n counts the calls of op a clean run of the workload makes,
 * then runs it with the n-th failing, for every n: once (a passing fault)
 * and from then on (until cleared). */
static void
fault_every_n(unsigned op, int code, tp_sync sync)
{
    opts.synchronous = sync;
    tp_store_free(st);
    fresh_store();
    tp_store *model = tp_store_memory();
    tpt_fault_clear();
    cr_assert_eq(run_script(model), 0);
    cr_assert_not_null(tp__store_sqlite_db(st)); /* the fold, as in fault_run */
    count(st, TP__REC_HIST, NULL, NULL);
    long calls = op == TPT_FAULT_WRITE  ? tpt_faults.writes
                 : op == TPT_FAULT_SYNC ? tpt_faults.syncs
                                        : tpt_faults.reads;
    tp_store_free(model);
    tp_store_free(st);
    st = NULL;
    cr_assert_gt(calls, 0);
    cr_log_info("op %u: %ld calls", op, calls);
    for (long n = 0; n <= calls; n++) {
        fault_run(op, n, 0, code);
        fault_run(op, n, 1, code);
    }
}

Test(fault, every_write, .init = setup_sqlite, .fini = teardown, .timeout = 600)
{
    fault_every_n(TPT_FAULT_WRITE, SQLITE_IOERR, TP_SYNC_FULL);
}

Test(fault, every_write_disk_full, .init = setup_sqlite, .fini = teardown, .timeout = 600)
{
    fault_every_n(TPT_FAULT_WRITE, SQLITE_FULL, TP_SYNC_NORMAL);
}

Test(fault, every_sync, .init = setup_sqlite, .fini = teardown, .timeout = 600)
{
    fault_every_n(TPT_FAULT_SYNC, SQLITE_IOERR, TP_SYNC_FULL);
}

Test(fault, every_read, .init = setup_sqlite, .fini = teardown, .timeout = 600)
{
    fault_every_n(TPT_FAULT_READ, SQLITE_IOERR, TP_SYNC_NORMAL);
}
