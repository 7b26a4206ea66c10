/* libFuzzer target for the agent's control socket (agent/ctl.c): what a
 * client writes is cut into lines at '\n' as the socket's reader does, and
 * each line goes through ctl_request_parse, which the socket answers by.
 * Whatever the bytes: no crash, leak or out-of-bounds access; a request
 * for a dataset (ready, pull, rm) comes with its name, a pull of a source
 * with the source, any other with none, and a line that
 * is not a JSON object with a string "op" is malformed. */
#include "tests/fuzz/fuzz_util.h"

#include <jansson.h>

#include "agent/ctl.h"

static void line(const char *s)
{
	char *name = (char *)1;
	enum ctl_op op = ctl_request_parse(s, &name);
	json_t *j = json_loads(s, 0, NULL);
	const char *want = json_string_value(json_object_get(j, "op"));
	const char *n = json_string_value(json_object_get(j, "name"));
	switch (op) {
	case CTL_OP_READY:
	case CTL_OP_PULL:
		fuzz_check(name && n && !strcmp(name, n), "dataset request without its name");
		fuzz_check(!strcmp(want, op == CTL_OP_READY ? "ready" : "pull"), "wrong op");
		free(name);
		break;
	case CTL_OP_RM:
		fuzz_check(name && n && n[0] && !strcmp(name, n) && !strcmp(want, "rm"),
			   "rm without its name");
		free(name);
		break;
	case CTL_OP_PULL_SOURCE: {
		const char *src = json_string_value(json_object_get(j, "source"));
		fuzz_check(name && src && src[0] && !strcmp(name, src) && !strcmp(want, "pull"),
			   "pull of a source without the source");
		free(name);
		break;
	}
	case CTL_OP_STATUS:
		fuzz_check(name == NULL && want && !strcmp(want, "status"), "status");
		break;
	case CTL_OP_MALFORMED:
		fuzz_check(name == NULL && !want, "a request with an op is malformed");
		break;
	case CTL_OP_UNKNOWN:
		fuzz_check(name == NULL && want, "unknown op");
		break;
	default:
		fuzz_check(0, "op out of range");
	}
	json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl || (size_t)(nl - p) > CTL_LINE_MAX)
			break; /* the socket waits for the rest, or hangs up */
		char *s = fuzz_cstr((const uint8_t *)p, (size_t)(nl - p));
		line(s);
		free(s);
		p = nl + 1;
	}
	return 0;
}
