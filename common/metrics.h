/* Prometheus text exposition (format 0.0.4) for the agent's and the
 * scheduler's /metrics: a family's # HELP and # TYPE lines, samples with
 * escaped label values, and histograms with cumulative buckets. Writing is
 * pure (into a struct buf). A histogram is observed from one thread, the
 * one that owns it. */
#ifndef SYNCBIT_METRICS_H
#define SYNCBIT_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

/* Labels of a sample: key, value pairs ending with NULL. A NULL list is no
 * labels. METRICS_LABELS("dataset", name) builds one in place. */
#define METRICS_LABELS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* "# HELP name help" (help escaped) and "# TYPE name type". */
void metrics_family(struct buf *out, const char *name, enum metrics_type type, const char *help);
/* "name{k="v",...} value"; label values escaped (\\, \", \n). */
void metrics_sample(struct buf *out, const char *name, const char *const *labels, uint64_t value);
void metrics_sample_real(struct buf *out, const char *name, const char *const *labels,
			 double value);
/* A family of one sample without labels. */
void metrics_single(struct buf *out, const char *name, enum metrics_type type, const char *help,
		    uint64_t value);
/* syncbit_build_info{version,commit} 1, with its family lines. */
void metrics_build_info(struct buf *out);

#define METRICS_BUCKETS_MAX 20

struct metrics_histogram {
	const double *bounds;			  /* upper bounds, ascending, +Inf not among them */
	size_t nbounds;				  /* at most METRICS_BUCKETS_MAX */
	uint64_t counts[METRICS_BUCKETS_MAX + 1]; /* per bucket; the last: above every bound */
	uint64_t count;
	double sum;
};

/* bounds must outlive h. */
void metrics_histogram_init(struct metrics_histogram *h, const double *bounds, size_t nbounds);
void metrics_histogram_observe(struct metrics_histogram *h, double value);
/* The samples name_bucket{labels,le="..."} (cumulative, +Inf last),
 * name_sum and name_count; the family lines are the caller's, once for
 * every label set. */
void metrics_histogram_write(struct buf *out, const char *name, const char *const *labels,
			     const struct metrics_histogram *h);

#endif
