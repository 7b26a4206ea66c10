/* syncbit verify and gc: local cache maintenance. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/cache.h"
#include "agent/verify.h"
#include "cli/cli.h"
#include "common/err.h"
#include "common/progress.h"

static const struct config_key verify_keys[] = {
    CLI_COMMON_KEYS,
    {"json", "false", 1, "print a JSON summary as the last line"},
    {NULL, NULL, 0, NULL},
};

static const struct config_key gc_keys[] = {
    CLI_COMMON_KEYS,
    {"json", "false", 1, "print a JSON summary as the last line"},
    {"cache-size", "0", 0, "evict unpinned objects until the cache is this small"},
    {NULL, NULL, 0, NULL},
};

/* The command line of process pid, arguments joined by spaces, into out. */
static void cmdline_of(int pid, char *out, size_t cap)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
	out[0] = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t n = read(fd, out, cap - 1);
	close(fd);
	if (n <= 0)
		n = 0;
	while (n > 0 && out[n - 1] == '\0')
		n--;
	out[n] = '\0';
	for (ssize_t i = 0; i < n; i++)
		if (out[i] == '\0')
			out[i] = ' ';
}

/* The cache for a maintenance command. verify and gc must not wait,
 * silent, for a daemon that holds the data directory for as long as it
 * runs: they say who holds it. 0, or EXIT_FAIL after the message. */
static int open_cache_now(const char *cmd, const char *data, uint64_t size, const char *advice,
			  struct cache **c)
{
	int holder = 0;
	int err = cache_open_nowait(data, size, c, &holder);
	if (err == 0)
		return 0;
	if (err != -EBUSY) {
		cli_error("%s: cache %s: %s", cmd, data, sb_strerror(err));
		return EXIT_FAIL;
	}
	char line[256], pid[32] = "";
	cmdline_of(holder, line, sizeof line);
	if (holder)
		snprintf(pid, sizeof pid, " (pid %d)", holder);
	const char *sub = strchr(line, ' ');
	if (sub && !strncmp(sub + 1, "daemon", 6) && (sub[7] == ' ' || !sub[7]))
		cli_error("%s: %s is in use by a running agent%s; %s", cmd, data, pid, advice);
	else
		cli_error("%s: %s is in use by another syncbit process%s%s%s; run %s again once "
			  "it is done",
			  cmd, data, pid, line[0] ? ": " : "", line, cmd);
	return EXIT_FAIL;
}

int cmd_verify(int argc, char **argv)
{
	const char *usage = "verify DIR|NAME [--data DIR] [--json]";
	struct config cfg;
	char **pos = NULL;
	int npos = 0, json = 0, rc;
	char *data = NULL;
	struct cache *c = NULL;
	struct cache_dataset d = {0};
	if ((rc = cli_parse(&cfg, verify_keys, usage, argc, argv, &pos, &npos)))
		goto out;
	rc = EXIT_USAGE;
	if (npos != 1 || config_get_bool(&cfg, "json", &json) < 0) {
		cli_error("verify takes one DIR or dataset NAME");
		goto out;
	}
	rc = EXIT_FAIL;
	data = cli_data_dir(&cfg);
	if (open_cache_now("verify", data, 0, "stop it, then run verify", &c))
		goto out;
	int err;
	struct stat st;
	int found = cache_dataset_get(c, pos[0], &d);
	if (found <= 0 && stat(pos[0], &st) == 0 && S_ISDIR(st.st_mode)) {
		char *abs = cli_abs_path(pos[0]);
		found = cache_dataset_find_target(c, abs, &d);
		free(abs);
	}
	if (found <= 0) {
		cli_error("verify: %s: no dataset of that name or published there (cache %s)",
			  pos[0], data);
		goto out;
	}
	struct verify_result r;
	err = verify_dataset(c, &d, &r);
	if (json) {
		json_t *fixed = json_pack("{s:s,s:I,s:I,s:I,s:b}", "dataset", d.name, "files",
					  (json_int_t)r.files, "bytes", (json_int_t)r.bytes,
					  "bad_files", (json_int_t)r.bad_files, "ok", err == 0);
		char *s = json_dumps(fixed, JSON_COMPACT);
		printf("%s\n", s);
		free(s);
		json_decref(fixed);
	}
	if (err == 0) {
		if (!json) {
			char b[32];
			printf("verified %llu files, %s: all blocks match\n",
			       (unsigned long long)r.files,
			       progress_fmt_bytes(r.bytes, b, sizeof b));
		}
		rc = EXIT_OK;
	} else if (err == SB_ECORRUPT) {
		cli_error("verify: %s (%llu bad files; dropped from the cache, the next pull "
			  "fetches them again)",
			  r.first_problem, (unsigned long long)r.bad_files);
	} else {
		cli_error("verify %s: %s", pos[0], sb_strerror(err));
	}
	verify_result_close(&r);
out:
	cache_dataset_close(&d);
	cache_free(c);
	free(data);
	free(pos);
	config_close(&cfg);
	return rc;
}

int cmd_gc(int argc, char **argv)
{
	const char *usage = "gc [--cache-size SIZE] [--data DIR] [--json]";
	struct config cfg;
	char **pos = NULL;
	int npos = 0, json = 0, rc;
	uint64_t size = 0, n = 0, b = 0;
	char *data = NULL;
	struct cache *c = NULL;
	if ((rc = cli_parse(&cfg, gc_keys, usage, argc, argv, &pos, &npos)))
		goto out;
	rc = EXIT_USAGE;
	if (npos != 0 || config_get_bool(&cfg, "json", &json) < 0 ||
	    config_get_size(&cfg, "cache-size", 0, UINT64_MAX, &size) < 0) {
		cli_error("%s", cfg.error ? cfg.error : "gc takes no arguments");
		goto out;
	}
	rc = EXIT_FAIL;
	data = cli_data_dir(&cfg);
	if (open_cache_now("gc", data, size, "stop it, or let it evict (daemon --cache-size)", &c))
		goto out;
	int err = cache_evict(c, size, &n, &b);
	if (err < 0) {
		cli_error("gc: cache %s: %s", data, sb_strerror(err));
		goto out;
	}
	struct cache_stats st;
	cache_stats(c, &st);
	if (json) {
		printf("{\"evicted_objects\":%llu,\"evicted_bytes\":%llu,\"used\":%llu,\"pinned\":%"
		       "llu}\n",
		       (unsigned long long)n, (unsigned long long)b, (unsigned long long)st.used,
		       (unsigned long long)st.pinned);
	} else {
		char eb[32], ub[32], pb[32];
		printf("evicted %llu objects (%s); cache holds %s, %s pinned\n",
		       (unsigned long long)n, progress_fmt_bytes(b, eb, sizeof eb),
		       progress_fmt_bytes(st.used, ub, sizeof ub),
		       progress_fmt_bytes(st.pinned, pb, sizeof pb));
	}
	rc = EXIT_OK;
out:
	cache_free(c);
	free(data);
	free(pos);
	config_close(&cfg);
	return rc;
}
