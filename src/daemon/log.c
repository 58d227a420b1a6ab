/*
 * The daemon's log: one line per event on stderr, "<UTC time> <level>
 * <event>", so that a line can be grepped and sorted without knowing the
 * machine's time zone. The events themselves (connect, disconnect, refused
 * handshakes and writes) are formatted by the hub and its server.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/daemon.h"
#include "util/log.h"

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int
tp__daemon_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

const char *
tp__daemon_log_level_name(int level)
{
    if (level < TP_LOG_ERROR)
        level = TP_LOG_ERROR;
    if (level > TP_LOG_DEBUG)
        level = TP_LOG_DEBUG;
    return level_names[level];
}

int
tp__daemon_log_format(char *out, size_t size, const struct timespec *when, int level,
                      const char *line)
{
    struct tm tm;
    time_t secs = when->tv_sec;
    char stamp[32] = "0000-00-00T00:00:00";
    if (gmtime_r(&secs, &tm) != NULL)
        strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    return snprintf(out, size, "%s.%03ldZ %s %s", stamp, (long)(when->tv_nsec / 1000000),
                    tp__daemon_log_level_name(level), line);
}

void
tp__daemon_log_stderr(int level, const char *line, void *user)
{
    FILE *f = user != NULL ? user : stderr;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char small[1024];
    int n = tp__daemon_log_format(small, sizeof small, &now, level, line);
    if (n < 0)
        return;
    char *text = small;
    /* A long line (a refused write quoting a message) gets a buffer of its
     * own rather than being cut: the log is where an operator looks. */
    if ((size_t)n + 2 > sizeof small) {
        text = malloc((size_t)n + 2);
        if (text == NULL) {
            text = small;
            n = (int)sizeof small - 2;
        } else {
            tp__daemon_log_format(text, (size_t)n + 1, &now, level, line);
        }
    }
    text[n] = '\n';
    fwrite(text, 1, (size_t)n + 1, f);
    fflush(f);
    if (text != small)
        free(text);
}

void
tp__daemon_log(const tp__daemon_options *opt, int level, const char *fmt, ...)
{
    /* The library's logger: the same sink, level and scrubbing as the
     * hub's and the server's lines. */
    const tp__logger lg = {opt->log, opt->log_user, opt->log_level};
    if (!tp__log_on(&lg, level))
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    tp__log(&lg, level, "%s", line);
}
