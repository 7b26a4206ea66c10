/* libFuzzer target for sync list files (agent/sync_list.c): the plain form
 * (repo ids, source URIs, absolute paths, one a line) and the JSON form.
 * The first input byte picks the options (platform of bare repo ids,
 * datasets, flat targets); the rest is the file. Whatever the bytes: no
 * crash, leak or out-of-bounds access; every item accepted has a source
 * that parses, a name, and a target that is the destination itself (flat)
 * or a confined path below it, never twice the same source and target; a
 * refusal is SB_ECONFIG with a one-line reason and an empty list. */
#include "tests/fuzz/fuzz_util.h"

#include "agent/sync.h"
#include "common/err.h"
#include "common/log.h"
#include "common/path.h"
#include "common/uri.h"

#define DST "/models"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_setup(LOG_ERROR, LOG_FORMAT_TEXT); /* repeated lines are warned about */
	return 0;
}

static void check_item(const struct sync_item *it, const struct sync_list_options *o)
{
	struct source_uri u;
	fuzz_check(it->source && it->name && it->target, "item incomplete");
	fuzz_check(uri_parse(it->source, &u) == 0, "source does not parse");
	uri_close(&u);
	if (o->flat) {
		fuzz_check(!strcmp(it->target, DST), "flat target is not the destination");
	} else {
		size_t n = strlen(DST);
		fuzz_check(!strncmp(it->target, DST "/", n + 1),
			   "target not below the destination");
		fuzz_check(path_check_relative(it->target + n + 1) == 0, "target not confined");
	}
	fuzz_check(!it->repo || path_check_relative(it->repo) == 0, "repo not confined");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct sync_list_options o = {
	    .platform = data[0] & 1 ? SYNC_MODELSCOPE : SYNC_HUGGINGFACE,
	    .datasets = (data[0] >> 1) & 1,
	    .flat = (data[0] >> 2) & 1,
	};
	struct sync_list l;
	char *error = NULL;
	int rc = sync_list_parse((const char *)data + 1, size - 1, DST, &o, &l, &error);
	if (rc == 0) {
		fuzz_check(error == NULL, "error set on success");
		for (size_t i = 0; i < l.n; i++) {
			check_item(&l.items[i], &o);
			for (size_t k = 0; k < i; k++)
				fuzz_check(strcmp(l.items[i].source, l.items[k].source) ||
					       strcmp(l.items[i].target, l.items[k].target),
					   "an item twice");
		}
		sync_list_close(&l);
	} else {
		fuzz_check(rc == SB_ECONFIG, "unexpected error code");
		fuzz_check(error && error[0], "no reason");
		fuzz_check(l.n == 0 && !l.items, "items left on failure");
		free(error);
	}
	return 0;
}
