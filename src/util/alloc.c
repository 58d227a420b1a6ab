#include "util/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transports.h"

/*
 * The allocator in force. It is the library's only process-wide state: an
 * allocator is by nature global, and it is set once before anything else
 * runs. jansson's own is not touched (transports.h, tp_set_allocator).
 */
static tp_allocator current = {malloc, realloc, free};

void
tp__alloc_set(const tp_allocator *allocator)
{
    if (allocator == NULL) {
        current.malloc_fn = malloc;
        current.realloc_fn = realloc;
        current.free_fn = free;
    } else {
        current = *allocator;
    }
}

TP_API void
tp_free(void *ptr)
{
    current.free_fn(ptr);
}

void *
tp__malloc(size_t size)
{
    return current.malloc_fn(size ? size : 1);
}

void *
tp__calloc(size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    void *p = tp__malloc(n * size);
    if (p != NULL)
        memset(p, 0, n * size);
    return p;
}

void *
tp__realloc(void *ptr, size_t size)
{
    return current.realloc_fn(ptr, size ? size : 1);
}

void *
tp__reallocarray(void *ptr, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    return tp__realloc(ptr, n * size);
}

void
tp__free(void *ptr)
{
    current.free_fn(ptr);
}

char *
tp__strndup(const char *s, size_t n)
{
    char *p = tp__malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *
tp__strdup(const char *s)
{
    return tp__strndup(s, strlen(s));
}
