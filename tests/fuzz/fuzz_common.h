/*
 * Helpers shared by the fuzz targets (tests/fuzz/fuzz_*.c). They are
 * written against jansson alone, never against the library's internals, so
 * that a target checks the library rather than agreeing with it.
 */
#ifndef TP_TESTS_FUZZ_FUZZ_COMMON_H
#define TP_TESTS_FUZZ_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* The entry point every target defines (libFuzzer's, or replay.c's caller). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * tpf_fail reports a broken invariant on stderr and aborts, so that
 * libFuzzer (or the replay test) reports the input. Never returns.
 */
#if defined(__GNUC__)
#define TPF_NORETURN_PRINTF __attribute__((noreturn, format(printf, 1, 2)))
#else
#define TPF_NORETURN_PRINTF
#endif
void tpf_fail(const char *fmt, ...) TPF_NORETURN_PRINTF;

#define TPF_CHECK(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond))                                                                               \
            tpf_fail(__VA_ARGS__);                                                                 \
    } while (0)

/* The separator between the parts of an input: a line holding "%%". */
#define TPF_SEP "\n%%\n"
#define TPF_SEP_LEN 4

/*
 * tpf_split returns the length of the part of [data, data+size) before the
 * first separator, and sets *next to the first byte after it (NULL when
 * there is no separator: the part runs to the end).
 */
size_t tpf_split(const uint8_t *data, size_t size, const uint8_t **next);

/* tpf_strndup copies n bytes and a NUL (the input may hold NULs: C calls see
 * the text up to the first one). Aborts when out of memory. */
char *tpf_strndup(const uint8_t *data, size_t n);

/* tpf_has_null_member: an object anywhere in v (arrays searched too) has a
 * member whose value is null. */
int tpf_has_null_member(const json_t *v);

/* tpf_strip_nulls returns a deep copy of v without null object members, at
 * any depth (null array elements stay). Returns new; NULL for NULL. */
json_t *tpf_strip_nulls(const json_t *v);

/* tpf_diff returns a merge patch turning a into b (b without null object
 * members), written here independently of the library's diff. Returns new. */
json_t *tpf_diff(const json_t *a, const json_t *b);

/* tpf_dump returns v as compact JSON text (malloc'd; free()). Aborts when
 * out of memory. */
char *tpf_dump(const json_t *v);

/* tpf_valid_utf8 tells whether n bytes are UTF-8 (jansson's own check). */
int tpf_valid_utf8(const char *s, size_t n);

#endif
