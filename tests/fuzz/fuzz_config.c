/* libFuzzer target for YAML config files (--config), read by
 * config_load_file (common/config.c) with libyaml's event parser: the input
 * is written to a file in a temp dir (the function reads a path; see
 * fuzz_tempdir) and
 * loaded into a config of the kinds of keys the commands have (paths,
 * sizes, numbers, booleans, lists); then every key is read back through
 * the typed readers. Whatever the bytes: no crash, leak or out-of-bounds
 * access; a refusal is SB_ECONFIG with "FILE:LINE: why", and keys set by a
 * higher origin are never overridden by the file. */
#include "tests/fuzz/fuzz_util.h"

#include <unistd.h>

#include "common/config.h"
#include "common/err.h"

static const struct config_key keys[] = {
    {"config", NULL, 0, "the file", "FILE", 'c'},
    {"data", "/var/lib/syncbit", 0, "a path", "DIR", 0},
    {"cache-size", "100GiB", 0, "a size", "SIZE", 0},
    {"jobs", "8", 0, "a number", "N", 'j'},
    {"no-encrypt", "false", 1, "a boolean", NULL, 0},
    {"labels", NULL, 0, "a list", "K=V,...", 0},
    {"log-level", "warn", 0, "a word", "LEVEL", 0},
    {NULL, NULL, 0, NULL, NULL, 0},
};

static char *dir, path[4096];

static void cleanup(void)
{
	unlink(path);
	rmdir(dir);
	free(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	dir = fuzz_tempdir("config");
	snprintf(path, sizeof path, "%s/config.yaml", dir);
	atexit(cleanup);
	return 0;
}

static void write_file(const uint8_t *d, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(d, 1, n, f) != n || fclose(f) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config cfg;
	write_file(data, size);
	config_init(&cfg, keys);
	fuzz_check(config_set(&cfg, "log-level", "debug", CONFIG_FLAG) == 0, "set");
	int rc = config_load_file(&cfg, path);
	if (rc < 0) {
		fuzz_check(rc == SB_ECONFIG, "unexpected error code");
		fuzz_check(cfg.error && !strncmp(cfg.error, path, strlen(path)) &&
			       cfg.error[strlen(path)] == ':',
			   "reason does not name the file");
	}
	fuzz_check(!strcmp(config_get(&cfg, "log-level"), "debug"), "the file overrode a flag");
	fuzz_check(config_get(&cfg, "config") == NULL, "the file set its own path");
	uint64_t v;
	int b;
	config_get_size(&cfg, "cache-size", 0, UINT64_MAX, &v);
	config_get_u64(&cfg, "jobs", 1, 1024, &v);
	config_get_bool(&cfg, "no-encrypt", &b);
	for (const struct config_key *k = keys; k->name; k++) {
		const char *s = config_get(&cfg, k->name);
		fuzz_check(!s || config_origin_of(&cfg, k->name) != CONFIG_ENV, "origin");
	}
	config_close(&cfg);
	return 0;
}
