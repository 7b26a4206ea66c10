/* libFuzzer target for what STS answers to AssumeRoleWithWebIdentity, read
 * by aws_sts_parse (common/source/aws_creds.c) with the bounded XML scanner of
 * common/source/xml.c. Whatever the bytes: no crash, leak or out-of-bounds access;
 * credentials are either all there, non-empty and free of control bytes
 * (they go into request header lines), with an expiry, or refused with a
 * one-line reason and nothing to free. */
#include "tests/fuzz/fuzz_util.h"

#include "common/source/aws_creds.h"
#include "common/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct aws_creds c;
	char *error = NULL;
	int rc = aws_sts_parse((const char *)data, size, &c, &error);
	if (rc == 0) {
		fuzz_check(error == NULL, "error set on success");
		fuzz_check(c.access_key && c.access_key[0] && c.secret_key && c.secret_key[0] &&
			       c.session_token && c.session_token[0],
			   "credentials missing");
		fuzz_check(fuzz_no_control(c.access_key) && fuzz_no_control(c.secret_key) &&
			       fuzz_no_control(c.session_token),
			   "a control byte in credentials that go into header lines");
		aws_creds_close(&c);
	} else {
		fuzz_check(rc == SB_EPROTO, "unexpected error code");
		fuzz_check(error && fuzz_one_line(error), "reason not one line");
		fuzz_check(!c.access_key && !c.secret_key && !c.session_token,
			   "credentials left on failure");
		free(error);
	}
	return 0;
}
