/* Helpers shared by the unit tests. */
#ifndef TP_TESTS_SUPPORT_H
#define TP_TESTS_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* tpt_read_file returns a file's contents (malloc'd, NUL-terminated) or NULL. */
char *tpt_read_file(const char *path, size_t *len);

/* tpt_load_json parses a file, aborting the test with a message on failure. */
json_t *tpt_load_json(const char *path);

/* tpt_case_dirs lists the directories under TP_CASES_DIR/<topic>, sorted.
 * Returns the count; *dirs is a malloc'd array of malloc'd full paths. */
size_t tpt_case_dirs(const char *topic, char ***dirs);
void tpt_free_dirs(char **dirs, size_t n);

/* tpt_json_eq compares two JSON texts or values structurally. */
int tpt_json_text_eq(const char *a, const char *b);

/*
 * The counting, failing allocator, for every test that watches memory.
 * tpt_alloc_install() installs it (library and jansson) and zeroes the
 * counters. Armed with tpt_fail_after(n), the n-th allocation from then on
 * (counting from 1) and every one after it fails; with tpt_fail_only(n),
 * the n-th alone; tpt_fail_disarm() ends either. `live` counts blocks not
 * yet freed, so a test can assert that nothing leaked in every build.
 */
typedef struct tpt_alloc_stats {
    long live;     /* blocks allocated and not yet freed */
    long calls;    /* malloc and realloc calls, failed ones included */
    long mallocs;  /* successful malloc calls */
    long reallocs; /* successful realloc calls */
    long attempts; /* malloc and realloc calls since arming */
    int tripped;   /* an armed failure has happened since arming */
} tpt_alloc_stats;

extern tpt_alloc_stats tpt_alloc;

void tpt_alloc_install(void);
void tpt_fail_after(long n);
void tpt_fail_only(long n);
void tpt_fail_disarm(void);
/* tpt_alloc_count returns the allocation calls since arming. */
long tpt_alloc_count(void);

/* ---- Protocol helpers (hub and connection tests) ---- */
struct tp_conn;
struct tp_hub;

/*
 * tpt_drain takes every frame from a connection's outbox and returns the
 * messages in order (batches flattened) as a new JSON array. It asserts that
 * every frame is valid JSON and that a batch frame is at most 64 KiB.
 */
json_t *tpt_drain(struct tp_conn *c);

/* tpt_drain_all drains every ready connection of a hub (as a transport
 * would at the end of a loop iteration) and returns how many messages. */
size_t tpt_drain_all(struct tp_hub *hub);

/* tpt_feed feeds a message text to a connection; returns tp_conn_feed's code. */
int tpt_feed(struct tp_conn *c, const char *text);

/* tpt_find returns the first message of `type` in msgs (borrowed) or NULL;
 * tpt_count counts them. */
json_t *tpt_find(json_t *msgs, const char *type);
size_t tpt_count(json_t *msgs, const char *type);

/* tpt_chdir_temp makes a fresh directory under TMPDIR (or /tmp) and enters
 * it, so that files a test makes (a daemon's database) are its own;
 * tpt_chdir_back removes the directory with what is in it and goes back. */
void tpt_chdir_temp(void);
void tpt_chdir_back(void);

/* A fake clock: tpt_clock is a tp_clock_fn reading *(int64_t *)user. */
int64_t tpt_clock(void *user);

#endif
