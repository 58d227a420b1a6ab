#include "util/vec.h"

#include <stdint.h>

#include "util/alloc.h"

int
tp__vec_reserve(tp__vec *v, size_t n)
{
    if (v->cap - v->len >= n)
        return 0;
    if (n > SIZE_MAX / 2 / sizeof *v->items - v->len)
        return -1; /* the doubling below would overflow */
    size_t cap = v->cap ? v->cap * 2 : 4;
    while (cap - v->len < n)
        cap *= 2;
    void **items = tp__reallocarray(v->items, cap, sizeof *items);
    if (items == NULL)
        return -1;
    v->items = items;
    v->cap = cap;
    return 0;
}

int
tp__vec_push(tp__vec *v, void *item)
{
    if (v->len == v->cap && tp__vec_reserve(v, 1) != 0)
        return -1;
    v->items[v->len++] = item;
    return 0;
}

void *
tp__vec_swap_remove(tp__vec *v, size_t i)
{
    v->len--;
    if (i == v->len)
        return NULL;
    v->items[i] = v->items[v->len];
    return v->items[i];
}

void
tp__vec_free(tp__vec *v)
{
    tp__free(v->items);
    v->items = NULL;
    v->len = v->cap = 0;
}
