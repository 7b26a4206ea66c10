#include "common/version.h"

/* Only this file is compiled with the commit, so that a new commit
 * rebuilds one object. */
#ifndef SYNCBIT_COMMIT
#define SYNCBIT_COMMIT "unknown"
#endif

const char *syncbit_commit(void)
{
	return SYNCBIT_COMMIT;
}
