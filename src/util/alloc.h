/*
 * Allocation for the whole library. Every allocation of the library's own
 * memory goes through these, so tp_set_allocator() and the failing
 * allocator of the chaos tests reach all of it; memory from these is freed
 * with tp__free, never free(). jansson's values are jansson's allocator's,
 * which the host program sets (the chaos tests set it as a host would).
 */
#ifndef TP_UTIL_ALLOC_H
#define TP_UTIL_ALLOC_H

#include <stddef.h>

#include "transports.h"

/* tp__alloc_set installs an allocator (NULL: libc's); see tp_set_allocator. */
void tp__alloc_set(const tp_allocator *allocator);

void *tp__malloc(size_t size);
/* tp__calloc returns zeroed memory, or NULL when n * size overflows. */
void *tp__calloc(size_t n, size_t size);
void *tp__realloc(void *ptr, size_t size);
/* tp__reallocarray returns NULL when n * size overflows (ptr is then untouched). */
void *tp__reallocarray(void *ptr, size_t n, size_t size);
void tp__free(void *ptr);
char *tp__strdup(const char *s);
char *tp__strndup(const char *s, size_t n);

#endif /* TP_UTIL_ALLOC_H */
