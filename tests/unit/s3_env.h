/* Shared by the s3:// source tests (test_source_s3*.c): the environment
 * variables an S3 configuration reads, cleared between cases. */
#ifndef SYNCBIT_S3_ENV_H
#define SYNCBIT_S3_ENV_H

#include <stdlib.h>

static inline void clear_env(void)
{
	static const char *const vars[] = {
	    "AWS_ENDPOINT_URL",	 "AWS_ENDPOINT_URL_S3",	  "AWS_REGION",	       "AWS_DEFAULT_REGION",
	    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	};
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
		unsetenv(vars[i]);
}

#endif
