/* Clocks. The core never reads one: the hub receives a clock function, and
 * this real one is what it gets by default. */
#ifndef TP_UTIL_CLOCK_H
#define TP_UTIL_CLOCK_H

#include <stdint.h>

/* tp__clock_wall_ms returns CLOCK_REALTIME in milliseconds since the epoch. */
int64_t tp__clock_wall_ms(void *user);
/* tp__clock_mono_ns returns CLOCK_MONOTONIC in nanoseconds. */
int64_t tp__clock_mono_ns(void);

#endif /* TP_UTIL_CLOCK_H */
