/*
 * Log lines for the host's tp_log_fn: one event per line, key=value pairs.
 * Text that came from a client (tenant keys, refused messages) is quoted
 * into the line with its control characters replaced, so a client cannot
 * forge log lines.
 */
#ifndef TP_UTIL_LOG_H
#define TP_UTIL_LOG_H

#include "transports.h"
#include "util/error.h"

typedef struct tp__logger {
    tp_log_fn fn;
    void *user;
    int level;
} tp__logger;

/* tp__log_on says whether a line of this level would be written: callers
 * skip building arguments when it would not. */
static inline int
tp__log_on(const tp__logger *lg, int level)
{
    return lg->fn != NULL && level <= lg->level;
}

/*
 * tp__log_value writes s as the value of a key=value field into out and
 * returns out: as it is when it is made only of letters, digits and
 * ._:/@+-% (a tenant key such as "alice", an address), else between double
 * quotes with '"' and '\\' escaped and control bytes written \xNN, so that a
 * value can never hold a space that starts a forged field ("alice
 * tenant=bob conn=c1"). A value too long for out is cut ("..." before the
 * closing quote). size: at least 16.
 */
const char *tp__log_value(const char *s, char *out, size_t size);

/* Room for a quoted tenant key (256 bytes, every one escaped, is cut). */
#define TP__LOG_VALUE_MAX 320

/* tp__log formats one line (at most 1 KiB, cut beyond) and hands it over. */
void tp__log(const tp__logger *lg, int level, const char *fmt, ...) TP__PRINTF(3, 4);

#endif /* TP_UTIL_LOG_H */
