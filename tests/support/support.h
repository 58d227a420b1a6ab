/* Helpers shared by the unit tests. */
#ifndef TP_TESTS_SUPPORT_H
#define TP_TESTS_SUPPORT_H

#include <stddef.h>

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
 * The failing allocator: once armed with tpt_fail_after(n), the n-th
 * allocation from then on (counting from 1) and every one after it fails,
 * until tpt_fail_disarm(). tpt_alloc_count() counts allocations since arming.
 */
void tpt_alloc_install(void);
void tpt_fail_after(long n);
void tpt_fail_disarm(void);
long tpt_alloc_count(void);

#endif
