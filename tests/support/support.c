#include "support.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "transports.h"

char *
tpt_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

json_t *
tpt_load_json(const char *path)
{
    json_error_t jerr;
    json_t *v = json_load_file(path, JSON_DECODE_ANY, &jerr);
    if (v == NULL)
        cr_assert_fail("%s:%d: %s", path, jerr.line, jerr.text);
    return v;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t
tpt_case_dirs(const char *topic, char ***dirs)
{
    char base[1024];
    snprintf(base, sizeof base, "%s/%s", TP_CASES_DIR, topic);
    DIR *d = opendir(base);
    size_t n = 0, cap = 16;
    char **out = malloc(cap * sizeof *out);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            if (n == cap) {
                cap *= 2;
                out = realloc(out, cap * sizeof *out);
            }
            size_t len = strlen(base) + strlen(e->d_name) + 2;
            out[n] = malloc(len);
            snprintf(out[n], len, "%s/%s", base, e->d_name);
            n++;
        }
        closedir(d);
    }
    qsort(out, n, sizeof *out, cmp_str);
    *dirs = out;
    return n;
}

void
tpt_free_dirs(char **dirs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(dirs[i]);
    free(dirs);
}

int
tpt_json_text_eq(const char *a, const char *b)
{
    json_t *ja = json_loads(a, JSON_DECODE_ANY, NULL);
    json_t *jb = json_loads(b, JSON_DECODE_ANY, NULL);
    int eq = ja != NULL && jb != NULL && json_equal(ja, jb);
    json_decref(ja);
    json_decref(jb);
    return eq;
}

static long fail_at = -1;
static long count;

static void *
chaos_malloc(size_t size)
{
    if (fail_at > 0 && ++count >= fail_at)
        return NULL;
    return malloc(size);
}

static void *
chaos_realloc(void *ptr, size_t size)
{
    if (fail_at > 0 && ++count >= fail_at)
        return NULL;
    return realloc(ptr, size);
}

void
tpt_alloc_install(void)
{
    static const tp_allocator chaos = {chaos_malloc, chaos_realloc, free};
    tp_set_allocator(&chaos);
}

void
tpt_fail_after(long n)
{
    count = 0;
    fail_at = n;
}

void
tpt_fail_disarm(void)
{
    fail_at = -1;
}

long
tpt_alloc_count(void)
{
    return count;
}
