#include "common/metrics.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/version.h"

static const char *const type_names[] = {
    [METRICS_COUNTER] = "counter",
    [METRICS_GAUGE] = "gauge",
    [METRICS_HISTOGRAM] = "histogram",
};

/* HELP text escapes \ and line breaks; label values also escape ". */
static void put_escaped(struct buf *out, const char *s, int quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			buf_append_str(out, "\\\\");
		else if (*s == '\n')
			buf_append_str(out, "\\n");
		else if (*s == '"' && quote)
			buf_append_str(out, "\\\"");
		else
			buf_append(out, s, 1);
	}
}

void metrics_family(struct buf *out, const char *name, enum metrics_type type, const char *help)
{
	buf_printf(out, "# HELP %s ", name);
	put_escaped(out, help, 0);
	buf_printf(out, "\n# TYPE %s %s\n", name, type_names[type]);
}

/* name{k="v",...,extra_key="extra_value"} with the extra label optional. */
static void put_name(struct buf *out, const char *name, const char *const *labels,
		     const char *extra_key, const char *extra_value)
{
	int first = 1;
	buf_append_str(out, name);
	for (size_t i = 0; labels && labels[i] && labels[i + 1]; i += 2) {
		buf_printf(out, "%s%s=\"", first ? "{" : ",", labels[i]);
		put_escaped(out, labels[i + 1], 1);
		buf_append_str(out, "\"");
		first = 0;
	}
	if (extra_key) {
		buf_printf(out, "%s%s=\"%s\"", first ? "{" : ",", extra_key, extra_value);
		first = 0;
	}
	if (!first)
		buf_append_str(out, "}");
}

void metrics_sample(struct buf *out, const char *name, const char *const *labels, uint64_t value)
{
	put_name(out, name, labels, NULL, NULL);
	buf_printf(out, " %llu\n", (unsigned long long)value);
}

/* Prometheus reads Go's float syntax: +Inf, -Inf, NaN, or a number. */
static void put_real(struct buf *out, double v)
{
	if (isnan(v))
		buf_append_str(out, "NaN");
	else if (isinf(v))
		buf_append_str(out, v > 0 ? "+Inf" : "-Inf");
	else
		buf_printf(out, "%.12g", v);
}

void metrics_sample_real(struct buf *out, const char *name, const char *const *labels, double value)
{
	put_name(out, name, labels, NULL, NULL);
	buf_append_str(out, " ");
	put_real(out, value);
	buf_append_str(out, "\n");
}

void metrics_single(struct buf *out, const char *name, enum metrics_type type, const char *help,
		    uint64_t value)
{
	metrics_family(out, name, type, help);
	metrics_sample(out, name, NULL, value);
}

void metrics_build_info(struct buf *out)
{
	metrics_family(out, "syncbit_build_info", METRICS_GAUGE,
		       "Always 1; the labels say which Syncbit runs.");
	metrics_sample(out, "syncbit_build_info",
		       METRICS_LABELS("version", SYNCBIT_VERSION, "commit", syncbit_commit()), 1);
}

void metrics_histogram_init(struct metrics_histogram *h, const double *bounds, size_t nbounds)
{
	if (nbounds > METRICS_BUCKETS_MAX)
		fatal("metrics: %zu histogram buckets, at most %d", nbounds, METRICS_BUCKETS_MAX);
	memset(h, 0, sizeof *h);
	h->bounds = bounds;
	h->nbounds = nbounds;
}

void metrics_histogram_observe(struct metrics_histogram *h, double value)
{
	size_t i = 0;
	if (isnan(value))
		return;
	while (i < h->nbounds && value > h->bounds[i])
		i++;
	h->counts[i]++;
	h->count++;
	h->sum += value;
}

void metrics_histogram_write(struct buf *out, const char *name, const char *const *labels,
			     const struct metrics_histogram *h)
{
	struct buf n = BUF_INIT;
	char le[64];
	uint64_t cumulative = 0;
	buf_printf(&n, "%s_bucket", name);
	for (size_t i = 0; i <= h->nbounds; i++) {
		cumulative += h->counts[i];
		if (i < h->nbounds)
			snprintf(le, sizeof le, "%g", h->bounds[i]);
		else
			snprintf(le, sizeof le, "+Inf");
		put_name(out, buf_cstr(&n), labels, "le", le);
		buf_printf(out, " %llu\n", (unsigned long long)cumulative);
	}
	buf_reset(&n);
	buf_printf(&n, "%s_sum", name);
	metrics_sample_real(out, buf_cstr(&n), labels, h->sum);
	buf_reset(&n);
	buf_printf(&n, "%s_count", name);
	metrics_sample(out, buf_cstr(&n), labels, h->count);
	buf_close(&n);
}
