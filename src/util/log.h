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

/* tp__log formats one line (at most 1 KiB, cut beyond) and hands it over. */
void tp__log(const tp__logger *lg, int level, const char *fmt, ...) TP__PRINTF(3, 4);

#endif /* TP_UTIL_LOG_H */
