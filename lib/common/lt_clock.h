/* lt_clock: the clocks the programs read, in one place.
 *
 * Monotonic readings (lt_now_ms, lt_now_s) measure durations and deadlines:
 * they never jump with the wall clock. Wall readings (lt_wall_ms,
 * lt_wall_s) are Unix time, for timestamps shown to people or other
 * programs (a log line, a "last success" gauge). */
#ifndef LT_CLOCK_H
#define LT_CLOCK_H

#include <stdint.h>

/* Monotonic milliseconds (CLOCK_MONOTONIC): durations, deadlines. */
int64_t lt_now_ms(void);
/* Monotonic seconds with a fraction: durations for metrics. */
double lt_now_s(void);
/* Unix time in milliseconds (CLOCK_REALTIME). */
int64_t lt_wall_ms(void);
/* Unix time in seconds with a fraction (CLOCK_REALTIME). */
double lt_wall_s(void);

#endif
