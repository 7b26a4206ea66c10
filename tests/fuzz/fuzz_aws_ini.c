/* libFuzzer target for the AWS shared credentials and config files, read
 * by aws_ini_get (common/source/aws_creds.c). The first input byte picks the kind
 * of file, the profile and the key looked up; the rest is the file. Whatever
 * the bytes: no crash, leak or out-of-bounds access; a value found is one
 * line, non-empty and trimmed; a refusal is SB_ECONFIG with "line N: why"
 * and no value. (A carriage return inside a line is kept: only '\n' ends
 * one, and the files are the user's own.) */
#include "tests/fuzz/fuzz_util.h"

#include <ctype.h>

#include "common/source/aws_creds.h"
#include "common/err.h"

static const char *const profiles[] = {"default", "dev", "team a", "sso"};
static const char *const keys[] = {"aws_access_key_id", "aws_secret_access_key", "region",
				   "endpoint_url"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int config_file = data[0] & 1;
	const char *profile = profiles[(data[0] >> 1) & 3];
	const char *key = keys[(data[0] >> 3) & 3];
	char *text = fuzz_cstr(data + 1, size - 1), *out = (char *)1, *error = NULL;
	int has_profile = -1;
	int rc = aws_ini_get(text, config_file, profile, key, &out, &has_profile, &error);
	if (rc == 0) {
		fuzz_check(error == NULL, "error set on success");
		fuzz_check(has_profile == 0 || has_profile == 1, "has_profile not set");
		fuzz_check(!out || has_profile, "a value outside the profile");
		if (out) {
			size_t n = strlen(out);
			fuzz_check(n > 0, "empty value returned");
			fuzz_check(!strchr(out, '\n'), "value spans lines");
			fuzz_check(out[0] != ' ' && out[0] != '\t' &&
				       !isspace((unsigned char)out[n - 1]),
				   "value not trimmed");
		}
		free(out);
	} else {
		fuzz_check(rc == SB_ECONFIG, "unexpected error code");
		fuzz_check(out == NULL, "value left on failure");
		fuzz_check(error && !strncmp(error, "line ", 5) && fuzz_one_line(error),
			   "reason is not \"line N: why\"");
		free(error);
	}
	free(text);
	return 0;
}
