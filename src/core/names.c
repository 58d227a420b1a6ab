/* Schemas by name (names.h). */
#include "core/names.h"

#include <string.h>

#include "core/hub.h"
#include "core/schema.h"
#include "util/alloc.h"

typedef struct sname {
    char *name;
    tp_schema *schema;
} sname;

struct tp__names {
    sname *v;
    size_t n, cap;
};

tp__names *
tp__names_of_hub(tp_hub *hub)
{
    if (hub->snames == NULL)
        hub->snames = tp__calloc(1, sizeof *hub->snames);
    return hub->snames;
}

void
tp__names_free(tp__names *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->n; i++) {
        tp__free(n->v[i].name);
        tp_schema_free(n->v[i].schema);
    }
    tp__free(n->v);
    tp__free(n);
}

int
tp__names_add(tp__names *n, const char *name, const tp_schema *schema)
{
    if (n->n == n->cap) {
        size_t cap = n->cap ? n->cap * 2 : 8;
        sname *p = tp__realloc(n->v, cap * sizeof *p);
        if (p == NULL)
            return TP_ENOMEM;
        n->v = p;
        n->cap = cap;
    }
    char *copy = tp__strdup(name);
    if (copy == NULL)
        return TP_ENOMEM;
    n->v[n->n].name = copy;
    n->v[n->n].schema = tp__schema_ref(schema);
    n->n++;
    return TP_OK;
}

const tp_schema *
tp__names_get(const tp__names *n, const char *name)
{
    for (size_t i = 0; n != NULL && i < n->n; i++)
        if (strcmp(n->v[i].name, name) == 0)
            return n->v[i].schema;
    return NULL;
}

const char *
tp__names_of(const tp__names *n, const tp_schema *schema)
{
    const char *key = tp__schema_key(schema);
    for (size_t i = 0; n != NULL && i < n->n; i++)
        if (strcmp(tp__schema_key(n->v[i].schema), key) == 0)
            return n->v[i].name;
    return NULL;
}

size_t
tp__names_count(const tp__names *n)
{
    return n != NULL ? n->n : 0;
}

const tp_schema *
tp__names_at(const tp__names *n, size_t i, const char **name)
{
    *name = n->v[i].name;
    return n->v[i].schema;
}
