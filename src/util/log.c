#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>

void
tp__log(const tp__logger *lg, int level, const char *fmt, ...)
{
    if (!tp__log_on(lg, level))
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One event, one line: nothing a client sent may break it. */
    for (char *p = line; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    tp__utf8_repair(line);
    lg->fn(level, line, lg->user);
}
