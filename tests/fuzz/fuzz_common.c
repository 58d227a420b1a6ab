#include "fuzz_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
tpf_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz invariant violated: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    abort();
}

size_t
tpf_split(const uint8_t *data, size_t size, const uint8_t **next)
{
    for (size_t i = 0; i + TPF_SEP_LEN <= size; i++) {
        if (memcmp(data + i, TPF_SEP, TPF_SEP_LEN) == 0) {
            *next = data + i + TPF_SEP_LEN;
            return i;
        }
    }
    *next = NULL;
    return size;
}

char *
tpf_strndup(const uint8_t *data, size_t n)
{
    char *s = malloc(n + 1);
    TPF_CHECK(s != NULL, "out of memory");
    if (n > 0)
        memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

int
tpf_has_null_member(const json_t *v)
{
    if (json_is_object(v)) {
        const char *key;
        json_t *m;
        json_object_foreach((json_t *)v, key, m)
        {
            if (json_is_null(m) || tpf_has_null_member(m))
                return 1;
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (tpf_has_null_member(json_array_get(v, i)))
                return 1;
    }
    return 0;
}

json_t *
tpf_strip_nulls(const json_t *v)
{
    if (v == NULL)
        return NULL;
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *key;
        json_t *m;
        TPF_CHECK(o != NULL, "out of memory");
        json_object_foreach((json_t *)v, key, m)
        {
            if (!json_is_null(m))
                TPF_CHECK(json_object_set_new(o, key, tpf_strip_nulls(m)) == 0, "out of memory");
        }
        return o;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        TPF_CHECK(a != NULL, "out of memory");
        for (size_t i = 0; i < json_array_size(v); i++)
            TPF_CHECK(json_array_append_new(a, tpf_strip_nulls(json_array_get(v, i))) == 0,
                      "out of memory");
        return a;
    }
    json_t *c = json_deep_copy(v);
    TPF_CHECK(c != NULL, "out of memory");
    return c;
}

json_t *
tpf_diff(const json_t *a, const json_t *b)
{
    if (!json_is_object(a) || !json_is_object(b))
        return tpf_strip_nulls(b);
    json_t *d = json_object();
    const char *key;
    json_t *m;
    TPF_CHECK(d != NULL, "out of memory");
    json_object_foreach((json_t *)a, key, m)
    {
        if (json_object_get(b, key) == NULL)
            TPF_CHECK(json_object_set_new(d, key, json_null()) == 0, "out of memory");
    }
    json_object_foreach((json_t *)b, key, m)
    {
        json_t *was = json_object_get(a, key);
        if (was == NULL || !json_equal(was, m))
            TPF_CHECK(json_object_set_new(d, key, tpf_diff(was, m)) == 0, "out of memory");
    }
    return d;
}

char *
tpf_dump(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    TPF_CHECK(s != NULL, "out of memory (or a value jansson cannot encode)");
    return s;
}

int
tpf_valid_utf8(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    int ok = j != NULL;
    json_decref(j);
    return ok;
}
