/* syncbit pull SOURCE [--to DIR]: standalone pull into the local cache. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/cache.h"
#include "agent/layout.h"
#include "agent/pull.h"
#include "cli/cli.h"
#include "common/err.h"
#include "common/source/filter.h"
#include "common/jsonfmt.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/progress.h"
#include "common/uri.h"

const struct config_key cli_pull_keys[] = {
    CLI_COMMON_KEYS,
    {"to", NULL, 0, "directory to publish into", "DIR", 'o'},
    {"name", NULL, 0, "dataset name in the cache", "NAME", 0},
    {"json", "false", 1, "print a JSON summary as the last line", NULL, 0},
    {"quiet", "false", 1, "no progress output", NULL, 'q'},
    {"jobs", "8", 0, "parallel block transfers", "N", 'j'},
    {"block-size", "4MiB", 0,
     "block size (power of two, 4KiB-256MiB; at most 4194304 blocks per dataset)", "SIZE", 0},
    {"cache-size", "0", 0, "evict unpinned objects above this size (0: no limit)", "SIZE", 0},
    {"retries", "5", 0, "retries per request", "N", 0},
    {"stall-timeout", "30", 0, "seconds without progress before a retry", "SECONDS", 0},
    {"socket", NULL, 0,
     "the local agent's unix socket (default DATA/agent.sock): pull NAME waits for it, pull "
     "SOURCE goes through it when it answers",
     "PATH", 0},
    {"standalone", "false", 1, "pull SOURCE in this process, not through the local agent", NULL, 0},
    {"no-wait", "false", 1, "pull NAME: report the state and return", NULL, 0},
    CLI_SOURCE_ACCESS_KEYS,
    CLI_SOURCE_LIMIT_KEYS,
    CLI_SOURCE_DATASET_KEYS,
    CLI_SOURCE_FILTER_KEYS,
    CLI_LAYOUT_KEYS,
    {NULL, NULL, 0, NULL, NULL, 0},
};

static void print_json(const struct pull_result *r, const char *target)
{
	char hex[HASH_HEX_LEN + 1];
	hash_to_hex(&r->manifest_id, hex);
	json_t *o = json_object();
	char *shown = uri_redact(r->source ? r->source : "");
	json_object_set_new(o, "source", json_string(shown));
	free(shown);
	json_object_set_new(o, "target", target ? json_string(target) : json_null());
	json_object_set_new(o, "files", json_integer((json_int_t)r->files));
	json_object_set_new(o, "bytes", json_integer((json_int_t)r->bytes));
	json_object_set_new(o, "bytes_from_source", json_integer((json_int_t)r->bytes_from_source));
	json_object_set_new(o, "bytes_from_peers", json_integer((json_int_t)r->bytes_from_peers));
	json_object_set_new(o, "bytes_reused", json_integer((json_int_t)r->bytes_reused));
	json_object_set_new(o, "bytes_read", json_integer((json_int_t)r->bytes_read));
	json_object_set_new(o, "seconds", jsonfmt_seconds(r->seconds));
	json_object_set_new(o, "manifest", json_string(hex));
	json_object_set_new(o, "dataset", json_string(r->name ? r->name : ""));
	char *s = jsonfmt_dumps(o);
	printf("%s\n", s);
	free(s);
	json_decref(o);
}

static void print_human(const struct pull_result *r, const char *target)
{
	char b[32], x[32], y[32], z[32], peers[64] = "";
	if (r->bytes_from_peers)
		snprintf(peers, sizeof peers, ", %s from peers",
			 progress_fmt_bytes(r->bytes_from_peers, y, sizeof y));
	printf("pulled %llu %s, %s (%s from source%s, %s reused) %s%s in %.2fs\n",
	       (unsigned long long)r->files, progress_noun(r->files, "file", "files"),
	       progress_fmt_bytes(r->bytes, b, sizeof b),
	       progress_fmt_bytes(r->bytes_from_source, x, sizeof x), peers,
	       progress_fmt_bytes(r->bytes_reused, z, sizeof z),
	       target ? "into " : "into the cache", target ? target : "", r->seconds);
}

static uint64_t json_u64(const json_t *o, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(o, key));
	return v > 0 ? (uint64_t)v : 0;
}

/* The summary the agent sent, as a standalone pull's result. */
static void result_from_json(const json_t *o, struct pull_result *r)
{
	memset(r, 0, sizeof *r);
	r->source = xstrdup(json_string_value(json_object_get(o, "source")) ?: "");
	r->name = xstrdup(json_string_value(json_object_get(o, "dataset")) ?: "");
	r->files = json_u64(o, "files");
	r->bytes = json_u64(o, "bytes");
	r->bytes_from_source = json_u64(o, "bytes_from_source");
	r->bytes_from_peers = json_u64(o, "bytes_from_peers");
	r->bytes_reused = json_u64(o, "bytes_reused");
	r->bytes_read = json_u64(o, "bytes_read");
	r->seconds = json_number_value(json_object_get(o, "seconds"));
	const char *hex = json_string_value(json_object_get(o, "manifest"));
	if (hex)
		hash_from_hex(hex, &r->manifest_id);
}

/* The error of a pull, naming the source once: most errors start with it
 * already ("SOURCE: why"). */
static void pull_error(const char *arg, const char *source, const char *error)
{
	size_t a = strlen(arg), s = strlen(source);
	if ((!strncmp(error, arg, a) && error[a] == ':') ||
	    (!strncmp(error, source, s) && error[s] == ':'))
		cli_error("pull %s", error);
	else
		cli_error("pull %s: %s", arg, error);
}

/* pull SOURCE through the local agent when one answers: an exit status, or
 * CLI_NO_AGENT. */
static int pull_through_agent(const struct config *cfg, const char *arg, const char *source,
			      const char *target, uint32_t bs, int json, int quiet)
{
	struct cli_agent_pull ap = {
	    .source = source, .target = target, .block_size = bs, .progress = !quiet};
	json_t *res = NULL;
	char *why = NULL;
	int rc = cli_pull_source_agent(cfg, &ap, &res, &why);
	if (rc == EXIT_OK) {
		struct pull_result r;
		result_from_json(res, &r);
		if (json)
			print_json(&r, target);
		else if (!quiet)
			print_human(&r, target);
		pull_result_close(&r);
	} else if (rc != CLI_NO_AGENT) {
		pull_error(arg, source, why);
	}
	json_decref(res);
	free(why);
	return rc;
}

/* A dataset NAME rather than a SOURCE: no scheme, no '/', and not a file
 * or directory in the current directory. */
static int is_dataset_name(const char *s)
{
	if (!s[0] || s[0] == '.' || strchr(s, '/') || strchr(s, ':'))
		return 0;
	return access(s, F_OK) != 0;
}

int cmd_pull(int argc, char **argv)
{
	struct config cfg;
	char **pos = NULL;
	int npos = 0, rc, json = 0, quiet = 0;
	uint64_t jobs, bs, cache_size, retries, stall;
	char *data = NULL, *target = NULL, *source = NULL;
	struct cache *c = NULL;
	struct layout layout = {0};
	struct filter filter = {0};
	char *layout_name = NULL;

	if ((rc = cli_parse(&cfg, "pull", argc, argv, &pos, &npos)))
		goto out_cfg;
	rc = EXIT_USAGE;
	if (npos != 1) {
		cli_error("pull takes one SOURCE");
		cli_usage("pull");
		goto out_cfg;
	}
	if (config_get_bool(&cfg, "json", &json) < 0 ||
	    config_get_bool(&cfg, "quiet", &quiet) < 0 ||
	    config_get_u64(&cfg, "jobs", 1, 256, &jobs) < 0 ||
	    config_get_size(&cfg, "block-size", BLOCK_SIZE_MIN, BLOCK_SIZE_MAX, &bs) < 0 ||
	    config_get_size(&cfg, "cache-size", 0, UINT64_MAX, &cache_size) < 0 ||
	    config_get_u64(&cfg, "retries", 0, 100, &retries) < 0 ||
	    config_get_u64(&cfg, "stall-timeout", 1, 3600, &stall) < 0) {
		cli_error("%s", cfg.error);
		goto out_cfg;
	}
	if (manifest_check_block_size(bs) < 0) {
		cli_error("--block-size: must be a power of two from 4KiB to 256MiB");
		goto out_cfg;
	}
	if (is_dataset_name(pos[0]) && !config_get(&cfg, "to")) {
		int nowait = 0;
		config_get_bool(&cfg, "no-wait", &nowait);
		rc = cli_pull_agent(&cfg, pos[0], json, !nowait);
		goto out_cfg;
	}
	struct source_options so;
	source_options_default(&so);
	if ((rc = cli_check_source("pull", pos[0])) || (rc = cli_source_access(&cfg, &so)) ||
	    (rc = cli_source_limits(&cfg, &so)) ||
	    (rc = cli_source_dataset(&cfg, pos[0], &source)) ||
	    (rc = cli_source_filter(&cfg, pos[0], &filter)))
		goto out_cfg;
	so.filter = &filter;
	if ((rc = cli_layout(&cfg, pos[0], &layout)))
		goto out_cfg;
	rc = EXIT_USAGE;
	if (layout.kind != LAYOUT_PLAIN && !config_get(&cfg, "to")) {
		cli_error("--layout %s needs --to DIR", layout_kind_name(layout.kind));
		goto out_cfg;
	}
	data = cli_data_dir(&cfg);
	if (config_get(&cfg, "to"))
		target = cli_abs_path(config_get(&cfg, "to"));
	int standalone = 0;
	config_get_bool(&cfg, "standalone", &standalone);
	/* The agent lists whole sources: a filtered pull, like another layout,
	 * runs here. */
	if (!standalone && filter.n)
		log_info(
		    "pull: --include/--exclude given: pulling standalone, not through the agent");
	if (!standalone && layout.kind == LAYOUT_PLAIN && !filter.n) {
		rc = pull_through_agent(&cfg, pos[0], source ? source : pos[0], target,
					(uint32_t)bs, json, quiet);
		if (rc != CLI_NO_AGENT)
			goto out;
	}
	rc = EXIT_FAIL;
	int err = cache_open(data, cache_size, &c);
	if (err < 0) {
		cli_error("pull: cache %s: %s", data, sb_strerror(err));
		goto out;
	}
	struct pull_options o = {
	    .source = source ? source : pos[0],
	    .target = target,
	    .name = config_get(&cfg, "name"),
	    .block_size = (uint32_t)bs,
	    .progress = !quiet, /* plain lines on stderr when it is not a TTY, --json too */
	};
	config_get_bool(&cfg, "verbose", &o.verbose);
	o.src = so;
	o.src.jobs = (int)jobs;
	o.src.retries = (int)retries;
	o.src.stall_seconds = (unsigned)stall;
	o.src.block_size = bs;
	if (layout.kind != LAYOUT_PLAIN) {
		o.layout = &layout;
		if (!o.name)
			o.name = layout_name = layout_dataset_name(&layout, o.source, target);
	}
	struct pull_result r;
	err = pull_run(c, &o, &r);
	if (err == 0 && layout.kind == LAYOUT_TRITON && config_get(&cfg, "triton-url"))
		err = layout_triton_load(config_get(&cfg, "triton-url"), layout.model, &r.error);
	if (err < 0) {
		pull_error(pos[0], o.source, r.error ? r.error : sb_strerror(err));
	} else {
		if (json)
			print_json(&r, target);
		else if (!quiet)
			print_human(&r, target);
		rc = EXIT_OK;
	}
	pull_result_close(&r);
out:
	cache_free(c);
	free(data);
	free(target);
	free(layout_name);
	layout_close(&layout);
out_cfg:
	filter_close(&filter);
	free(source);
	free(pos);
	config_close(&cfg);
	return rc;
}
