/* JSON as Syncbit prints it: compact, with real numbers rounded to what
 * they mean (seconds to the millisecond) and printed without binary
 * noise (0.321, not 0.32100000000000001). Thread-safe. */
#ifndef SYNCBIT_JSONFMT_H
#define SYNCBIT_JSONFMT_H

#include <jansson.h>

/* Significant digits of a printed real: plenty for milliseconds of a
 * century, few enough that a rounded value prints as written. */
#define JSONFMT_REAL_DIGITS 15
#define JSONFMT_FLAGS	    (JSON_COMPACT | JSON_REAL_PRECISION(JSONFMT_REAL_DIGITS))

/* A duration in seconds, rounded to the millisecond (new reference). */
json_t *jsonfmt_seconds(double seconds);
/* A ratio or other real, rounded to three decimals (new reference). */
json_t *jsonfmt_real3(double v);
/* json_dumps with JSONFMT_FLAGS (heap string, NULL on failure). */
char *jsonfmt_dumps(const json_t *o);

#endif
