/* jansson glue (core/json.h): text encoded into the library's memory, and
 * the encoded size of a value without encoding it. */
#include "core/json.h"

#include <string.h>

#include <jansson.h>

#include "core/patch.h"

#include "transports.h"
#include "util/alloc.h"

/* The library's allocator only: jansson's is the host program's, which
 * may use jansson for its own ends (transports.h). */
TP_API void
tp_set_allocator(const tp_allocator *allocator)
{
    tp__alloc_set(allocator);
}

char *
tp__json_dumps(const json_t *v, size_t flags)
{
    size_t n = json_dumpb(v, NULL, 0, flags);
    char *text = n != 0 ? tp__malloc(n + 1) : NULL;
    if (text == NULL)
        return NULL;
    /* Encoded again into the room measured: jansson has no way to encode
     * into memory of another allocator in one pass. */
    if (json_dumpb(v, text, n, flags) != n) {
        tp__free(text);
        return NULL;
    }
    text[n] = '\0';
    return text;
}

/* The bytes of a string as jansson encodes it (UTF-8 kept, '/' not escaped). */
static size_t
string_size(const char *s, size_t n)
{
    size_t size = 2;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\' || ch == '\b' || ch == '\f' || ch == '\n' || ch == '\r' ||
            ch == '\t')
            size += 2;
        else if (ch < 0x20)
            size += 6; /* \u00XX */
        else
            size += 1;
    }
    return size;
}

static size_t
integer_size(json_int_t v)
{
    size_t size = v < 0 ? 2 : 1;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    while (u >= 10) {
        u /= 10;
        size++;
    }
    return size;
}

size_t
tp__json_size(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t size = 2, n = 0;
        const char *key;
        json_t *member;
        json_object_foreach((json_t *)v, key, member)
        {
            size += string_size(key, strlen(key)) + 1 + tp__json_size(member);
            n++;
        }
        return size + (n > 0 ? n - 1 : 0);
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v), size = 2 + (n > 0 ? n - 1 : 0);
        for (size_t i = 0; i < n; i++)
            size += tp__json_size(json_array_get(v, i));
        return size;
    }
    case JSON_STRING: return string_size(json_string_value(v), json_string_length(v));
    case JSON_INTEGER: return integer_size(json_integer_value(v));
    case JSON_REAL: return 24; /* at most: "%.17g" with sign, point and exponent */
    case JSON_TRUE: return 4;
    case JSON_FALSE: return 5;
    case JSON_NULL:
    default: return 4;
    }
}
