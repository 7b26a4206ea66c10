/* The include/exclude rules of `dataset add` and `dataset update`: built
 * and checked from the flags (a bad pattern is a usage error) and sent to
 * the scheduler in the Admin request as given; and shown by `dataset ls`. */
#ifndef SYNCBIT_CLI_DATASET_FILTER_H
#define SYNCBIT_CLI_DATASET_FILTER_H

#include <jansson.h>

#include "common/config.h"
#include "common/source/filter.h"
#include "proto/wire.pb-c.h"

/* What a request's rules point into; zeroed before use. */
struct cli_dataset_filter {
	struct filter f;
	Syncbit__FilterRule *store;
};

/* dataset add: a's rules from --include/--exclude for source. 0, or
 * EXIT_USAGE after the error (a bad pattern; an oci:// source). */
int cli_dataset_filter(struct config *cfg, const char *source, Syncbit__Admin *a,
		       struct cli_dataset_filter *rf);
/* dataset update: new rules from --include/--exclude, or none with
 * --no-filters (a->set_filter then); neither leaves them as they are. */
int cli_dataset_update_filter(struct config *cfg, Syncbit__Admin *a, struct cli_dataset_filter *rf);
void cli_dataset_filter_close(Syncbit__Admin *a, struct cli_dataset_filter *rf);

/* A dataset document's "filter" as "- *.tmp, + keep/dir" (rsync's short
 * form), or "-" when it has none. Heap string. */
char *cli_filter_text(const json_t *rules);

#endif
