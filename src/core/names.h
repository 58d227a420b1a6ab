/*
 * Schemas by name (names.c): the host API names a model's schema, and a
 * cluster's catalog names models' schemas the same way; the hub itself knows
 * schemas only by content. The hub owns one registry (hub->snames), made
 * when a name is first given. Thread: the hub's loop thread.
 */
#ifndef TP_CORE_NAMES_H
#define TP_CORE_NAMES_H

#include <stddef.h>

#include "transports.h"

typedef struct tp__names tp__names;

/* tp__names_of_hub returns the hub's registry, made empty if it has none
 * (NULL: out of memory). */
tp__names *tp__names_of_hub(tp_hub *hub);
void tp__names_free(tp__names *n);
/* Gives a schema a name (a reference is taken); TP_OK or TP_ENOMEM. The
 * caller checks that the name is free. */
int tp__names_add(tp__names *n, const char *name, const tp_schema *schema);
/* The schema named (borrowed), or NULL. */
const tp_schema *tp__names_get(const tp__names *n, const char *name);
/* The first name of a schema with the same content, or NULL. */
const char *tp__names_of(const tp__names *n, const tp_schema *schema);
size_t tp__names_count(const tp__names *n);
const tp_schema *tp__names_at(const tp__names *n, size_t i, const char **name);

#endif /* TP_CORE_NAMES_H */
