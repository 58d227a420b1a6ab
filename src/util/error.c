#include "util/error.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

size_t
tp__utf8_seq(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n > avail || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

int
tp__hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int
tp__utf8_valid_n(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        if (*p < 0x80) { /* ASCII runs, the common case */
            p++;
            continue;
        }
        size_t n = tp__utf8_seq(p, (size_t)(end - p));
        if (n == 0)
            return 0;
        p += n;
    }
    return 1;
}

int
tp__utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        size_t n = tp__utf8_seq(p, SIZE_MAX);
        if (n == 0)
            return 0;
        p += n;
    }
    return 1;
}

void
tp__utf8_repair(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p != '\0') {
        size_t n = tp__utf8_seq(p, SIZE_MAX);
        if (n == 0)
            *p++ = '?';
        else
            p += n;
    }
}

int
tp__error_set(tp_error *err, int code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        /* Messages quote what a client sent, cut to fit: they must stay
         * UTF-8, since they travel in JSON. */
        tp__utf8_repair(err->message);
    }
    return code;
}

void
tp__error_clear(tp_error *err)
{
    if (err != NULL) {
        err->code = TP_OK;
        err->message[0] = '\0';
    }
}

TP_API const char *
tp_strerror(int code)
{
    switch (code) {
    case TP_OK: return "success";
    case TP_EBADREQUEST: return "bad request";
    case TP_ENOTFOUND: return "no such model";
    case TP_EFORBIDDEN: return "forbidden";
    case TP_EINVALID: return "invalid value";
    case TP_EREJECTED: return "rejected by the merge strategy";
    case TP_ETOOLARGE: return "message too large";
    case TP_ERATELIMITED: return "rate limited";
    case TP_EDUPLICATE: return "duplicate ref";
    case TP_EINTERNAL: return "internal error";
    case TP_ENOMEM: return "out of memory";
    case TP_EEXIST: return "id already taken";
    case TP_ESCHEMA: return "bad schema";
    case TP_EARG: return "bad argument";
    case TP_ECLOSED: return "connection closed";
    default: return "unknown error";
    }
}

TP_API const char *
tp_error_name(int code)
{
    switch (code) {
    case TP_EBADREQUEST:
    case TP_EEXIST:
    case TP_EARG: return "bad_request";
    case TP_ENOTFOUND: return "not_found";
    case TP_EFORBIDDEN: return "forbidden";
    case TP_EINVALID:
    case TP_ESCHEMA: return "invalid";
    case TP_EREJECTED: return "rejected";
    case TP_ETOOLARGE: return "too_large";
    case TP_ERATELIMITED: return "rate_limited";
    case TP_EDUPLICATE: return "duplicate";
    case TP_OK: return "ok";
    default: return "internal";
    }
}
