#include "util/map.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <time.h>

#include "util/alloc.h"
#include "util/siphash.h"

/* The 64-bit finaliser of MurmurHash3: a strong, cheap bit mixer. */
static uint64_t
mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* The process's SipHash key, drawn from getrandom(2) at the first use of
 * a map: a hash flooding client would have to guess 128 random bits, not a
 * clock reading and an address. */
static uint64_t sip_key[2];
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static atomic_int key_ready; /* set once the key is drawn: the common case skips pthread_once */

static void
key_draw(void)
{
    unsigned char k[16];
    size_t got = 0;
    while (got < sizeof k) {
        ssize_t n = getrandom(k + got, sizeof k - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got < sizeof k) {
        /* No getrandom (a kernel before 3.17): the clock and an address,
         * the seed the maps had before, rather than no map at all. */
        sip_key[0] = tp__seed(&sip_key);
        sip_key[1] = tp__seed(k);
    } else {
        memcpy(sip_key, k, sizeof sip_key);
    }
    atomic_store_explicit(&key_ready, 1, memory_order_release);
}

uint64_t
tp__hash(uint64_t seed, const void *s, size_t n)
{
    if (!atomic_load_explicit(&key_ready, memory_order_acquire))
        pthread_once(&key_once, key_draw);
    /* The map's own seed goes into the key: maps of one process still hash
     * differently (an iteration order tells nothing of another map's). */
    return tp__siphash13(sip_key[0] ^ seed, sip_key[1], s, n);
}

uint64_t
tp__seed(const void *addr)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return mix((uint64_t)(uintptr_t)addr ^ mix((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32)));
}

void
tp__map_init(tp__map *map, uint64_t seed)
{
    map->slots = NULL;
    map->cap = 0;
    map->len = 0;
    map->seed = seed;
}

void
tp__map_free(tp__map *map)
{
    tp__free(map->slots);
    map->slots = NULL;
    map->cap = map->len = 0;
}

static tp__map_slot *
find(const tp__map *map, const char *key, size_t n, uint64_t h)
{
    if (map->cap == 0)
        return NULL;
    size_t mask = map->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        tp__map_slot *s = &map->slots[i];
        if (s->key == NULL)
            return NULL;
        if (s->hash == h && strncmp(s->key, key, n) == 0 && s->key[n] == '\0')
            return s;
    }
}

void *
tp__map_getn(const tp__map *map, const char *key, size_t n)
{
    tp__map_slot *s = find(map, key, n, tp__hash(map->seed, key, n));
    return s ? s->value : NULL;
}

void *
tp__map_get(const tp__map *map, const char *key)
{
    return tp__map_getn(map, key, strlen(key));
}

static void
place(tp__map_slot *slots, size_t cap, const char *key, void *value, uint64_t h)
{
    size_t mask = cap - 1;
    size_t i = h & mask;
    while (slots[i].key != NULL)
        i = (i + 1) & mask;
    slots[i].key = key;
    slots[i].value = value;
    slots[i].hash = h;
}

static int
resize(tp__map *map, size_t cap)
{
    tp__map_slot *slots = tp__calloc(cap, sizeof *slots);
    if (slots == NULL)
        return -1;
    for (size_t i = 0; i < map->cap; i++) {
        tp__map_slot *s = &map->slots[i];
        if (s->key != NULL)
            place(slots, cap, s->key, s->value, s->hash);
    }
    tp__free(map->slots);
    map->slots = slots;
    map->cap = cap;
    return 0;
}

int
tp__map_reserve(tp__map *map, size_t n)
{
    /* Keep the load factor at or below 3/4. */
    if (n > SIZE_MAX / 8 / sizeof(tp__map_slot) - map->len)
        return -1; /* (len + n) * 4 would overflow, or the table could never be made */
    /* Small first: most maps (a tenant's models, its subscriptions) hold one
     * or two keys, and every idle connection's tenant has some. */
    size_t cap = map->cap ? map->cap : 2;
    while ((map->len + n) * 4 > cap * 3) {
        if (cap > SIZE_MAX / 2 / sizeof(tp__map_slot))
            return -1;
        cap *= 2;
    }
    return cap == map->cap ? 0 : resize(map, cap);
}

int
tp__map_put(tp__map *map, const char *key, void *value)
{
    size_t n = strlen(key);
    uint64_t h = tp__hash(map->seed, key, n);
    tp__map_slot *s = find(map, key, n, h);
    if (s != NULL) {
        s->key = key;
        s->value = value;
        return 0;
    }
    if (tp__map_reserve(map, 1) != 0)
        return -1;
    place(map->slots, map->cap, key, value, h);
    map->len++;
    return 0;
}

void *
tp__map_del(tp__map *map, const char *key)
{
    size_t n = strlen(key);
    tp__map_slot *s = find(map, key, n, tp__hash(map->seed, key, n));
    if (s == NULL)
        return NULL;
    void *value = s->value;
    size_t mask = map->cap - 1;
    size_t hole = (size_t)(s - map->slots);
    /* Backward-shift deletion: move every following entry of the probe run
     * that may live in the hole back into it, so no tombstone is needed. */
    for (size_t i = (hole + 1) & mask; map->slots[i].key != NULL; i = (i + 1) & mask) {
        size_t home = map->slots[i].hash & mask;
        /* The entry at i may move to the hole when its home is not in the
         * cyclic range (hole, i]. */
        int in_range = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
        if (!in_range) {
            map->slots[hole] = map->slots[i];
            hole = i;
        }
    }
    map->slots[hole].key = NULL;
    map->slots[hole].value = NULL;
    map->len--;
    return value;
}

int
tp__map_next(const tp__map *map, size_t *iter, const char **key, void **value)
{
    for (size_t i = *iter; i < map->cap; i++) {
        if (map->slots[i].key != NULL) {
            if (key != NULL)
                *key = map->slots[i].key;
            if (value != NULL)
                *value = map->slots[i].value;
            *iter = i + 1;
            return 1;
        }
    }
    *iter = map->cap;
    return 0;
}
