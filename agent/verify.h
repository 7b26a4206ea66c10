/* Verification: re-hash a published dataset (and its cache objects) against
 * its manifest. A corrupt object is dropped from the cache, so the next pull
 * fetches it again. Blocking; CLI use. */
#ifndef SYNCBIT_VERIFY_H
#define SYNCBIT_VERIFY_H

#include <stdint.h>

#include "agent/cache.h"

struct verify_result {
	uint64_t files;
	uint64_t bytes;
	uint64_t bad_files;
	char **problems; /* one line per bad file (heap strings) */
	size_t nproblems;
};

/* Verify dataset d. Returns 0 when every file matches, SB_ECORRUPT when some
 * do not (one line per bad file in r->problems, logged at debug only: the
 * caller reports them), other negative codes when verification could not
 * run. */
int verify_dataset(struct cache *c, const struct cache_dataset *d, struct verify_result *r);
void verify_result_close(struct verify_result *r);

#endif
