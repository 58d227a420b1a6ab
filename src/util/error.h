/* Filling a tp_error: the one place that formats error messages. */
#ifndef TP_UTIL_ERROR_H
#define TP_UTIL_ERROR_H

#include "transports.h"

#if defined(__GNUC__)
#define TP__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TP__PRINTF(a, b)
#endif

/* tp__error_set fills err (when not NULL) and returns code, so that callers
 * can write `return tp__error_set(err, TP_EINVALID, "...", ...)`. */
int tp__error_set(tp_error *err, int code, const char *fmt, ...) TP__PRINTF(3, 4);

/* tp__utf8_repair replaces every byte of s that does not belong to a valid
 * UTF-8 sequence (a sequence cut short by truncation included) with '?'. */
void tp__utf8_repair(char *s);

/* tp__utf8_seq returns the length of the valid UTF-8 sequence at s, of at
 * most avail bytes (RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF), or 0 when it is not one. In a NUL-terminated string
 * avail may be SIZE_MAX: the NUL fails the continuation checks. */
size_t tp__utf8_seq(const unsigned char *s, size_t avail);
/* tp__utf8_valid says whether a NUL-terminated string is all valid UTF-8. */
int tp__utf8_valid(const char *s);
/* tp__utf8_valid_n says whether len bytes at s are all valid UTF-8. */
int tp__utf8_valid_n(const char *s, size_t len);

/* tp__hex_digit returns the value of a hexadecimal digit, or -1. */
int tp__hex_digit(char c);

/* tp__error_clear sets err (when not NULL) to TP_OK with an empty message. */
void tp__error_clear(tp_error *err);

#endif /* TP_UTIL_ERROR_H */
