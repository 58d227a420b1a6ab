#include "support.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

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

tpt_alloc_stats tpt_alloc;
static long fail_at;  /* 0: disarmed */
static int fail_once; /* tpt_fail_only: just the fail_at-th */

static int
should_fail(void)
{
    tpt_alloc.calls++;
    if (fail_at <= 0)
        return 0;
    long n = ++tpt_alloc.attempts;
    int fail = fail_once ? n == fail_at : n >= fail_at;
    tpt_alloc.tripped |= fail;
    return fail;
}

static void *
chaos_malloc(size_t size)
{
    if (should_fail())
        return NULL;
    void *p = malloc(size);
    if (p != NULL) {
        tpt_alloc.live++;
        tpt_alloc.mallocs++;
    }
    return p;
}

static void *
chaos_realloc(void *ptr, size_t size)
{
    if (should_fail())
        return NULL;
    void *p = realloc(ptr, size);
    if (p != NULL) {
        tpt_alloc.reallocs++;
        tpt_alloc.live += ptr == NULL;
    }
    return p;
}

static void
chaos_free(void *ptr)
{
    tpt_alloc.live -= ptr != NULL;
    free(ptr);
}

void
tpt_alloc_install(void)
{
    static const tp_allocator chaos = {chaos_malloc, chaos_realloc, chaos_free};
    tp_set_allocator(&chaos);
    /* jansson's allocator is the host program's (the library leaves it):
     * set as a host would, so that failures reach jansson's values too. */
    json_set_alloc_funcs(chaos_malloc, chaos_free);
    memset(&tpt_alloc, 0, sizeof tpt_alloc);
    fail_at = 0;
}

void
tpt_fail_after(long n)
{
    tpt_alloc.attempts = 0;
    tpt_alloc.tripped = 0;
    fail_once = 0;
    fail_at = n;
}

void
tpt_fail_only(long n)
{
    tpt_fail_after(n);
    fail_once = 1;
}

void
tpt_fail_disarm(void)
{
    fail_at = 0;
}

long
tpt_alloc_count(void)
{
    return tpt_alloc.attempts;
}

/* ---- Protocol helpers ---- */

json_t *
tpt_drain(tp_conn *c)
{
    json_t *out = json_array();
    const char *frame;
    size_t len;
    while ((frame = tp_conn_next_frame(c, &len)) != NULL) {
        json_error_t jerr;
        json_t *v = json_loadb(frame, len, 0, &jerr);
        cr_assert_not_null(v, "frame is not JSON: %s: %.*s", jerr.text, (int)len, frame);
        if (json_is_array(v)) {
            cr_assert_leq(len, 64 * 1024, "a batch frame of %zu bytes", len);
            json_array_extend(out, v);
        } else {
            json_array_append(out, v);
        }
        json_decref(v);
    }
    return out;
}

size_t
tpt_drain_all(tp_hub *hub)
{
    size_t n = 0;
    tp_conn *c;
    while ((c = tp_hub_next_ready(hub)) != NULL) {
        const char *frame;
        size_t len;
        while ((frame = tp_conn_next_frame(c, &len)) != NULL)
            n++;
    }
    return n;
}

int
tpt_feed(tp_conn *c, const char *text)
{
    return tp_conn_feed(c, text, strlen(text));
}

json_t *
tpt_find(json_t *msgs, const char *type)
{
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        if (strcmp(json_string_value(json_object_get(m, "type")), type) == 0)
            return m;
    }
    return NULL;
}

size_t
tpt_count(json_t *msgs, const char *type)
{
    size_t i, n = 0;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        n += strcmp(json_string_value(json_object_get(m, "type")), type) == 0;
    }
    return n;
}

int64_t
tpt_clock(void *user)
{
    return *(int64_t *)user;
}

/* ---- A directory of the test's own ---- */

static char temp_dir[4096];
static char old_dir[4096];

void
tpt_chdir_temp(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(temp_dir, sizeof temp_dir, "%s/tp-test-XXXXXX", base && *base ? base : "/tmp");
    cr_assert_not_null(getcwd(old_dir, sizeof old_dir));
    cr_assert_not_null(mkdtemp(temp_dir), "mkdtemp %s", temp_dir);
    cr_assert_eq(chdir(temp_dir), 0);
}

void
tpt_chdir_back(void)
{
    if (temp_dir[0] == '\0')
        return;
    DIR *dir = opendir(temp_dir);
    struct dirent *e;
    while (dir != NULL && (e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", temp_dir, e->d_name);
        unlink(path);
    }
    if (dir != NULL)
        closedir(dir);
    if (chdir(old_dir) != 0)
        cr_log_warn("cannot go back to %s", old_dir);
    rmdir(temp_dir);
    temp_dir[0] = '\0';
}
