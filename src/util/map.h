/*
 * A hash map from NUL-terminated string keys to pointers: open addressing
 * with linear probing and backward-shift deletion (no tombstones), so
 * lookups stay short however many keys come and go.
 *
 * Keys are borrowed: the map stores the key pointer it was given, which
 * must stay valid while the entry exists (callers point it into the value,
 * e.g. a model's own id). The hash is SipHash-1-3 under a key drawn from
 * getrandom(2) at the first use of a map (util/siphash.h), mixed with a
 * seed per map, so a client that chooses keys (tenant names, client ids,
 * field names) cannot aim collisions at a map.
 */
#ifndef TP_UTIL_MAP_H
#define TP_UTIL_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct tp__map_slot {
    const char *key; /* NULL: empty */
    void *value;
    uint64_t hash;
} tp__map_slot;

typedef struct tp__map {
    tp__map_slot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t len;
    uint64_t seed;
} tp__map;

/* tp__map_init makes an empty map; it allocates nothing until the first put. */
void tp__map_init(tp__map *map, uint64_t seed);
void tp__map_free(tp__map *map);

void *tp__map_get(const tp__map *map, const char *key);
void *tp__map_getn(const tp__map *map, const char *key, size_t n);
/* tp__map_put inserts or replaces; returns 0, or -1 when out of memory. */
int tp__map_put(tp__map *map, const char *key, void *value);
/* tp__map_reserve makes room for n more keys, so that the next n puts of new
 * keys cannot fail; returns 0 or -1 (out of memory). */
int tp__map_reserve(tp__map *map, size_t n);
/* tp__map_del removes a key and returns its value, or NULL when absent. */
void *tp__map_del(tp__map *map, const char *key);

/* Iteration: for (size_t i = 0; tp__map_next(map, &i, &key, &value);) ...
 * The map must not change during an iteration. */
int tp__map_next(const tp__map *map, size_t *iter, const char **key, void **value);

/* tp__hash is the maps' keyed hash of n bytes under a seed, for tables of
 * other shapes that must resist chosen keys as the maps do. */
uint64_t tp__hash(uint64_t seed, const void *s, size_t n);

/* tp__seed mixes a few sources (an address, the clock) into a hash seed. */
uint64_t tp__seed(const void *addr);

#endif /* TP_UTIL_MAP_H */
