/*
 * jansson glue. jansson's allocator is the host program's business (the
 * library never replaces it), so text the library hands over or frees with
 * tp__free is encoded here, into memory from the library's allocator.
 */
#ifndef TP_CORE_JSON_H
#define TP_CORE_JSON_H

#include <stddef.h>

#include <jansson.h>

/* tp__json_dumps is json_dumps into memory from tp__malloc (free it with
 * tp__free, or tp_free when it goes to the host). NULL: out of memory, or
 * a value the flags do not encode. */
char *tp__json_dumps(const json_t *v, size_t flags);

#endif /* TP_CORE_JSON_H */
