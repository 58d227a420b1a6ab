/*
 * pattern_bench: schema patterns, before and after issue 12.
 *
 *   (a) the worst patterns on strings of n 'a's (n up to 1 MiB): the time
 *       of one check, and its verdict. "before" is glibc's regexec (what
 *       schemas ran on until issue 12: POSIX ERE, C.UTF-8), measured here
 *       on the POSIX form of each pattern, skipped once one size took more
 *       than --cap seconds (its time only grows); "after" is a whole
 *       validation through the schema (PCRE2, JIT, the step budget), wall
 *       time and the thread's CPU time;
 *   (b) ordinary patterns on ordinary strings: nanoseconds per check,
 *       glibc's regexec against a validation of a one-member value.
 *
 * Usage: pattern_bench [--quick] [--cap SECONDS]
 *   --quick  strings up to 40 000 characters, fewer checks in (b), cap 0.5 s
 *   --cap    skip glibc at larger sizes once one check took this long (3 s)
 */
#include <locale.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "core/schema.h"
#include "transports.h"

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static tp_schema *
pattern_schema(const char *pattern)
{
    json_t *doc = json_pack("{s:s, s:{s:{s:s, s:s}}}", "type", "object", "properties", "s", "type",
                            "string", "pattern", pattern);
    char *text = json_dumps(doc, 0);
    tp_error err;
    tp_schema *s = tp_schema_new(text, &err);
    if (s == NULL)
        fprintf(stderr, "%s: %s\n", pattern, err.message);
    free(text);
    json_decref(doc);
    return s;
}

static double
cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One check through the schema: seconds, the thread's CPU seconds in *cpu,
 * and the verdict in *ok. */
static double
time_ours(tp_schema *s, const json_t *v, int iters, int *ok, double *cpu)
{
    tp_error err;
    double c = cpu_now(), t = now();
    for (int i = 0; i < iters; i++)
        *ok = tp__schema_validate(s, v, &err) == TP_OK;
    *cpu = (cpu_now() - c) / iters;
    return (now() - t) / iters;
}

static double
time_glibc(const regex_t *re, const char *str, int iters, int *ok)
{
    double t = now();
    for (int i = 0; i < iters; i++)
        *ok = regexec(re, str, 0, NULL, 0) == 0;
    return (now() - t) / iters;
}

static void
fmt_time(char *buf, size_t cap, double secs)
{
    if (secs >= 1)
        snprintf(buf, cap, "%.2f s", secs);
    else if (secs >= 1e-3)
        snprintf(buf, cap, "%.1f ms", secs * 1e3);
    else
        snprintf(buf, cap, "%.1f us", secs * 1e6);
}

int
main(int argc, char **argv)
{
    int quick = 0;
    double cap = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--cap") == 0 && i + 1 < argc)
            cap = strtod(argv[++i], NULL);
    }
    if (cap < 0)
        cap = quick ? 0.5 : 3.0;
    locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (utf8 != (locale_t)0)
        uselocale(utf8);

    /* The worst patterns: pydantic writes whatever a model says. NULL: no
     * POSIX form (lookaround), refused at load before issue 12. */
    static const struct {
        const char *pattern, *posix;
    } worst[] = {
        {"a[^\\n]*b", "a[^\n]*b"},
        {"a[^\\n]*[bc]", "a[^\n]*[bc]"},
        {"(a+)+[bc]", "(a+)+[bc]"},
        {"(a|aa)*[bc]", "(a|aa)*[bc]"},
        {"(?:a*)*[bc]", "(a*)*[bc]"},
        {"a.{0,1000}[bc]", "a[^\n]{0,1000}[bc]"},
        {"^(\\w+\\s?)*[!]$", "^([[:alnum:]_]+[[:space:]]?)*[!]$"},
        {"(?=a*[bc])", NULL},
        {"(?=a*a*[bc])", NULL},
        {"(?:(?=a*$)a)*[bc]", NULL},
    };
    static const size_t sizes[] = {1000, 5000, 20000, 40000, 100000, 1048576};
    size_t n_sizes = quick ? 4 : sizeof sizes / sizeof sizes[0];
    char *str = malloc(1048577);
    memset(str, 'a', 1048576);

    printf("(a) the worst patterns on n 'a's: one check (before: glibc regexec; after: a "
           "validation on PCRE2)\n");
    printf("%-22s %9s %14s %14s %14s %s\n", "pattern", "n", "before", "after", "after (cpu)",
           "after's verdict");
    for (size_t p = 0; p < sizeof worst / sizeof worst[0]; p++) {
        tp_schema *s = pattern_schema(worst[p].pattern);
        regex_t re;
        int have_re =
            worst[p].posix != NULL && regcomp(&re, worst[p].posix, REG_EXTENDED | REG_NOSUB) == 0;
        int glibc_on = have_re;
        for (size_t k = 0; k < n_sizes && s != NULL; k++) {
            size_t n = sizes[k];
            char before[32] = "", after[32], after_cpu[32];
            double cpu;
            int ok_before = 0, ok_after = 0;
            str[n] = '\0';
            if (glibc_on) {
                double t = time_glibc(&re, str, 1, &ok_before);
                fmt_time(before, sizeof before, t);
                glibc_on = t < cap;
            } else {
                snprintf(before, sizeof before, have_re ? "skipped" : "refused");
            }
            json_t *v = json_pack("{s:s}", "s", str);
            tp_error err;
            double t = time_ours(s, v, 1, &ok_after, &cpu);
            fmt_time(after, sizeof after, t);
            fmt_time(after_cpu, sizeof after_cpu, cpu);
            if (!ok_after)
                tp__schema_validate(s, v, &err);
            printf("%-22s %9zu %14s %14s %14s %s\n", worst[p].pattern, n, before, after, after_cpu,
                   ok_after                               ? "match"
                   : strstr(err.message, "took too long") ? "refused: step limit"
                                                          : "no match");
            json_decref(v);
            str[n] = 'a';
        }
        if (have_re)
            regfree(&re);
        tp_schema_free(s);
    }

    static const struct {
        const char *pattern, *posix, *str;
    } ordinary[] = {
        {"^[a-z0-9_]+$", "^[a-z0-9_]+$", "hello_world_2024"},
        {"^\\d{3}-\\d{4}$", "^[0-9]{3}-[0-9]{4}$", "555-1234"},
        {"^[+-]?0*\\d*\\.?\\d*$", "^[+-]?0*[0-9]*\\.?[0-9]*$", "12345.678"},
        {"^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", "^[^@[:space:]]+@[^@[:space:]]+\\.[^@[:space:]]+$",
         "someone.name@example.com"},
        {"^[A-Z]{3}-\\d{3}$", "^[A-Z]{3}-[0-9]{3}$", "ABC-123"},
        {"\\d{2}", "[0-9]{2}", "a fairly ordinary sentence with 42 in it"},
    };
    int iters = quick ? 20000 : 200000;
    printf("\n(b) ordinary patterns on ordinary strings: per check (%d checks)\n", iters);
    printf("%-34s %-28s %12s %12s\n", "pattern", "string", "before", "after");
    for (size_t p = 0; p < sizeof ordinary / sizeof ordinary[0]; p++) {
        tp_schema *s = pattern_schema(ordinary[p].pattern);
        regex_t re;
        if (s == NULL || regcomp(&re, ordinary[p].posix, REG_EXTENDED | REG_NOSUB) != 0)
            continue;
        int ok1 = 0, ok2 = 0;
        json_t *v = json_pack("{s:s}", "s", ordinary[p].str);
        double tb = time_glibc(&re, ordinary[p].str, iters, &ok1);
        double cpu;
        double ta = time_ours(s, v, iters, &ok2, &cpu);
        printf("%-34s %-28s %9.0f ns %9.0f ns%s\n", ordinary[p].pattern, ordinary[p].str, tb * 1e9,
               ta * 1e9, ok1 == ok2 ? "" : "  (verdicts differ)");
        json_decref(v);
        regfree(&re);
        tp_schema_free(s);
    }
    free(str);
    if (utf8 != (locale_t)0) {
        uselocale(LC_GLOBAL_LOCALE);
        freelocale(utf8);
    }
    return 0;
}
