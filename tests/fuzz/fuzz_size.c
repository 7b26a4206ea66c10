/* libFuzzer target for size strings ("4MiB", "1.5 GB", "512k"): the
 * parser config_parse_size and the checked reader config_get_size of
 * common/config.c, which flags, SYNCBIT_* variables and config files go
 * through. The first 16 input bytes are the bounds given to
 * config_get_size, the rest the string. Whatever the bytes: no crash or
 * undefined arithmetic; a size accepted reads back the same written out in
 * bytes, in KiB when whole, and with surrounding junk refused; a refusal
 * from config_get_size is SB_ECONFIG with a message naming the flag. */
#include "tests/fuzz/fuzz_util.h"

#include <inttypes.h>

#include "common/config.h"
#include "common/err.h"

static const struct config_key keys[] = {
    {"cache-size", NULL, 0, "a size", "SIZE", 0},
    {NULL, NULL, 0, NULL, NULL, 0},
};

static uint64_t u64_at(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void round_trip(uint64_t v)
{
	char s[64];
	uint64_t w = ~v;
	snprintf(s, sizeof s, "%" PRIu64, v);
	fuzz_check(config_parse_size(s, &w) == 0 && w == v, "bytes do not read back");
	snprintf(s, sizeof s, "%" PRIu64 " B", v);
	fuzz_check(config_parse_size(s, &w) == 0 && w == v, "\"N B\" does not read back");
	if (v % 1024 == 0) {
		snprintf(s, sizeof s, "%" PRIu64 "KiB", v / 1024);
		fuzz_check(config_parse_size(s, &w) == 0 && w == v, "KiB do not read back");
	}
	snprintf(s, sizeof s, "x%" PRIu64, v);
	fuzz_check(config_parse_size(s, &w) < 0, "a leading letter accepted");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 16)
		return 0;
	uint64_t min = u64_at(data), max = u64_at(data + 8), v = 0;
	char *s = fuzz_cstr(data + 16, size - 16);
	int rc = config_parse_size(s, &v);
	fuzz_check(rc == 0 || rc == SB_ECONFIG, "unexpected error code");
	if (rc == 0)
		round_trip(v);

	struct config cfg;
	config_init(&cfg, keys);
	fuzz_check(config_set(&cfg, "cache-size", s, CONFIG_FLAG) == 0, "set");
	uint64_t got = 0;
	int rc2 = config_get_size(&cfg, "cache-size", min, max, &got);
	if (rc == 0 && v >= min && v <= max) {
		fuzz_check(rc2 == 0 && got == v, "config_get_size disagrees with the parser");
	} else {
		fuzz_check(rc2 == SB_ECONFIG, "out of bounds accepted");
		fuzz_check(cfg.error && !strncmp(cfg.error, "--cache-size: ", 14),
			   "message does not name the flag");
	}
	config_close(&cfg);
	free(s);
	return 0;
}
