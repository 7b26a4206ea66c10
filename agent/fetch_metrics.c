/* The agent's counts for /metrics that outlive one fetch: bytes per dataset
 * by where they came from, and how long blocks took to arrive. */
#include <stdlib.h>
#include <string.h>

#include "agent/fetch.h"
#include "common/metrics.h"

struct dataset_bytes {
	char *name;
	uint64_t bytes[FETCH_FROM_CACHE + 1];
};

static struct dataset_bytes *totals;
static size_t ntotals;
static const double latency_bounds[] = {FETCH_LATENCY_BUCKETS};
static struct metrics_histogram latency[FETCH_FROM_PEER + 1];
static int latency_ready;

static const char *const from_names[] = {
    [FETCH_FROM_ORIGIN] = "origin",
    [FETCH_FROM_PEER] = "peer",
    [FETCH_FROM_CACHE] = "cache",
};

void fetch_metrics_bytes(const char *dataset, enum fetch_from from, uint64_t n)
{
	size_t i = 0;
	while (i < ntotals && strcmp(totals[i].name, dataset))
		i++;
	if (i == ntotals) {
		totals = xrealloc(totals, (ntotals + 1) * sizeof *totals);
		memset(&totals[i], 0, sizeof totals[i]);
		totals[i].name = xstrdup(dataset);
		ntotals++;
	}
	totals[i].bytes[from] += n;
}

static void latency_init(void)
{
	if (latency_ready)
		return;
	for (int k = FETCH_FROM_ORIGIN; k <= FETCH_FROM_PEER; k++)
		metrics_histogram_init(&latency[k], latency_bounds,
				       sizeof latency_bounds / sizeof latency_bounds[0]);
	latency_ready = 1;
}

void fetch_metrics_latency(enum fetch_from from, double seconds)
{
	if (from > FETCH_FROM_PEER)
		return;
	latency_init();
	metrics_histogram_observe(&latency[from], seconds < 0 ? 0 : seconds);
}

void fetch_metrics_write(struct buf *out)
{
	static const struct {
		const char *name, *help;
	} families[] = {
	    [FETCH_FROM_ORIGIN] = {"syncbit_dataset_origin_bytes_total",
				   "Block bytes this node read from the dataset's source and "
				   "stored, every version, since the agent started."},
	    [FETCH_FROM_PEER] = {"syncbit_dataset_peer_bytes_total",
				 "Block bytes this node received from peers and stored, every "
				 "version, since the agent started."},
	    [FETCH_FROM_CACHE] = {"syncbit_dataset_reused_bytes_total",
				  "Bytes a fetch found in this node's cache instead of fetching "
				  "them, every version, since the agent started."},
	};
	for (int k = FETCH_FROM_ORIGIN; k <= FETCH_FROM_CACHE; k++) {
		metrics_family(out, families[k].name, METRICS_COUNTER, families[k].help);
		for (size_t i = 0; i < ntotals; i++)
			metrics_sample(out, families[k].name,
				       METRICS_LABELS("dataset", totals[i].name),
				       totals[i].bytes[k]);
	}
	latency_init();
	metrics_family(out, "syncbit_block_fetch_duration_seconds", METRICS_HISTOGRAM,
		       "Time from asking for a block (a peer, or the origin) until its bytes "
		       "arrived, by where it came from.");
	for (int k = FETCH_FROM_ORIGIN; k <= FETCH_FROM_PEER; k++)
		metrics_histogram_write(out, "syncbit_block_fetch_duration_seconds",
					METRICS_LABELS("from", from_names[k]), &latency[k]);
}

void fetch_metrics_reset(void)
{
	for (size_t i = 0; i < ntotals; i++)
		free(totals[i].name);
	free(totals);
	totals = NULL;
	ntotals = 0;
	latency_ready = 0;
}
