#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int
bare_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == ':' || ch == '/' || ch == '@' || ch == '+' ||
           ch == '-' || ch == '%' || ch >= 0x80;
}

const char *
tp__log_value(const char *s, char *out, size_t size)
{
    if (s == NULL)
        s = "";
    size_t n = strlen(s);
    int bare = n > 0;
    for (size_t i = 0; i < n && bare; i++)
        bare = bare_char((unsigned char)s[i]);
    if (bare && n < size) {
        memcpy(out, s, n + 1);
        tp__utf8_repair(out);
        return out;
    }
    size_t o = 0;
    out[o++] = '"';
    size_t i = 0;
    /* Each byte takes at most 4 (\xNN); room is kept for '...' and '"'. */
    for (; i < n && o + 4 + 5 < size; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            static const char hex[] = "0123456789abcdef";
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        } else {
            out[o++] = (char)ch;
        }
    }
    if (i < n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = '"';
    out[o] = '\0';
    tp__utf8_repair(out); /* a cut inside a UTF-8 sequence */
    return out;
}

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
