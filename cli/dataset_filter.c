#include "cli/dataset_filter.h"

#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "scheduler/ds_filter.h"

int cli_dataset_filter(struct config *cfg, const char *source, Syncbit__Admin *a,
		       struct cli_dataset_filter *rf)
{
	int rc = cli_source_filter(cfg, source, &rf->f);
	if (rc)
		return rc;
	a->filter = ds_filter_to_wire(&rf->f, &rf->store);
	a->n_filter = rf->f.n;
	return 0;
}

int cli_dataset_update_filter(struct config *cfg, Syncbit__Admin *a, struct cli_dataset_filter *rf)
{
	int none = 0;
	size_t ni = 0, ne = 0;
	config_get_list(cfg, "include", &ni, NULL);
	config_get_list(cfg, "exclude", &ne, NULL);
	if (config_get_bool(cfg, "no-filters", &none) < 0) {
		cli_error("%s", cfg->error);
		return EXIT_USAGE;
	}
	if (none && (ni || ne)) {
		cli_error("dataset update: --no-filters and --include/--exclude: give one");
		return EXIT_USAGE;
	}
	a->set_filter = none || ni || ne;
	/* Without --source the dataset's source is the scheduler's: an oci://
	 * one refuses the rules there. */
	return none ? 0 : cli_dataset_filter(cfg, a->source, a, rf);
}

void cli_dataset_filter_close(Syncbit__Admin *a, struct cli_dataset_filter *rf)
{
	free(a->filter);
	a->filter = NULL;
	a->n_filter = 0;
	free(rf->store);
	rf->store = NULL;
	filter_close(&rf->f);
}

char *cli_filter_text(const json_t *rules)
{
	struct buf b = BUF_INIT;
	size_t i;
	json_t *r;
	json_array_foreach(rules, i, r)
	{
		const char *rule = json_string_value(json_object_get(r, "rule"));
		const char *pattern = json_string_value(json_object_get(r, "pattern"));
		buf_printf(&b, "%s%c %s", b.len ? ", " : "",
			   rule && !strcmp(rule, "include") ? '+' : '-', pattern ? pattern : "");
	}
	return b.len ? buf_steal(&b) : xstrdup("-");
}
