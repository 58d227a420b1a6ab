#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>

int
tp__error_set(tp_error *err, int code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
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
