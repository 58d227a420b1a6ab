/* jansson glue: the library's allocator is jansson's too. */
#include <jansson.h>

#include "transports.h"
#include "util/alloc.h"

static void *
json_malloc(size_t size)
{
    return tp__malloc(size);
}

static void
json_free(void *ptr)
{
    tp__free(ptr);
}

TP_API void
tp_set_allocator(const tp_allocator *allocator)
{
    tp__alloc_set(allocator);
    json_set_alloc_funcs(json_malloc, json_free);
}
