/* libFuzzer target for what Triton answers to a model load (POST
 * /v2/repository/models/NAME/load), read by layout_triton_reply
 * (agent/layout_triton.c): the first two input bytes are the HTTP status,
 * the rest the body. Whatever the bytes: no crash, leak or out-of-bounds
 * access; 200 is success with nothing to say, any other status an error
 * code of its class with a one-line message naming the status. */
#include "tests/fuzz/fuzz_util.h"

#include "agent/layout.h"
#include "common/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	long status = (long)(data[0] << 8 | data[1]) % 1000;
	char *detail = (char *)1;
	int rc = layout_triton_reply(status, data + 2, size - 2, &detail);
	if (status == 200) {
		fuzz_check(rc == 0 && detail == NULL, "200 is not success");
		return 0;
	}
	fuzz_check(rc == (status >= 500	  ? SB_EHTTP5XX
			  : status >= 400 ? SB_EHTTP4XX
					  : SB_EHTTP),
		   "error code not of the status's class");
	char head[32];
	snprintf(head, sizeof head, "HTTP %ld: ", status);
	fuzz_check(detail && !strncmp(detail, head, strlen(head)),
		   "message does not name the status");
	fuzz_check(fuzz_no_control(detail), "message not one line");
	free(detail);
	return 0;
}
