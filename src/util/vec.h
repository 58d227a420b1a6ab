/* A growable array of pointers. */
#ifndef TP_UTIL_VEC_H
#define TP_UTIL_VEC_H

#include <stddef.h>

typedef struct tp__vec {
    void **items;
    size_t len;
    size_t cap;
} tp__vec;

/* An empty vector, for initialisers. */
// clang-format off
#define TP__VEC_INIT {NULL, 0, 0}
// clang-format on

/* tp__vec_reserve makes room for n more items; returns 0 or -1 (out of memory). */
int tp__vec_reserve(tp__vec *v, size_t n);
/* tp__vec_push appends; returns 0 or -1 (out of memory, v unchanged). */
int tp__vec_push(tp__vec *v, void *item);
/* tp__vec_swap_remove removes item i by moving the last item into its place;
 * returns the moved item (now at i), or NULL when i was the last. */
void *tp__vec_swap_remove(tp__vec *v, size_t i);
void tp__vec_free(tp__vec *v);

#endif /* TP_UTIL_VEC_H */
