/* Shared by the unit tests: cmocka and temp-directory helpers. */
#ifndef SYNCBIT_TESTUTIL_H
#define SYNCBIT_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Make a fresh temp dir (heap path); removed by testutil_rmtree. */
static inline char *testutil_mkdtemp(void)
{
	char tmpl[] = "/tmp/syncbit-unit-XXXXXX";
	char *d = mkdtemp(tmpl);
	if (!d)
		return NULL;
	char *out = malloc(strlen(d) + 1);
	memcpy(out, d, strlen(d) + 1);
	return out;
}

static inline void testutil_rmtree(char *dir)
{
	if (!dir)
		return;
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	free(dir);
}

#endif
