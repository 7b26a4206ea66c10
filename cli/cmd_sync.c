/* syncbit sync SRC DST: the rsync + cron sidecar. Honours its environment
 * (SRC, DST, CRON_SCHEDULE, RUN_ON_START, CRONTAB, CRONTAB_FILE); flags
 * override it. Also --layout for pull and sync. A DST of oci:// copies
 * images from one registry to another (agent/sync_oci.h). */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "agent/cache.h"
#include "agent/cron.h"
#include "agent/layout.h"
#include "agent/sync.h"
#include "cli/cli.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/source/filter.h"
#include "common/jsonfmt.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/source/oci_push.h"
#include "common/uri.h"
#include "common/version.h"

/* The sidecar's defaults (its README's table). */
#define SIDECAR_SRC	 "/scratch/models/"
#define SIDECAR_DST	 "/raid/models/"
#define SIDECAR_SCHEDULE "0 * * * *"
#define CRONTAB_MAX	 (1u << 20)

const struct config_key cli_sync_keys[] = {
    CLI_SERVICE_COMMON_KEYS,
    {"schedule", NULL, 0, "cron schedule (default $CRON_SCHEDULE, else \"0 * * * *\")", "CRON", 0},
    {"run-on-start", NULL, 1, "run once at start too (default $RUN_ON_START)", NULL, 0},
    {"once", "false", 1, "run once, wait for a running sync first, exit with its status", NULL, 0},
    {"delete", "false", 1, "remove files in DST that the source no longer has", NULL, 0},
    {"list", NULL, 0, "sync every item of a list file under DST", "FILE", 0},
    {"list-platform", "huggingface", 0, "list: platform of bare ORG/NAME lines",
     "huggingface|modelscope", 0},
    {"list-datasets", "false", 1, "list: bare ORG/NAME lines are datasets", NULL, 0},
    {"json", "false", 1, "one JSON object per run line", NULL, 0},
    {"name", NULL, 0, "dataset name in the cache", "NAME", 0},
    {"jobs", "8", 0, "parallel block transfers", "N", 'j'},
    {"block-size", "4MiB", 0,
     "block size (power of two, 4KiB-256MiB; at most 4194304 blocks per dataset)", "SIZE", 0},
    {"cache-size", "0", 0, "evict unpinned objects above this size (0: no limit)", "SIZE", 0},
    {"retries", "5", 0, "retries per request", "N", 0},
    {"stall-timeout", "30", 0, "seconds without progress before a retry", "SECONDS", 0},
    {"dest-registry-user", NULL, 0,
     "oci:// DST: credentials (deprecated: ps shows them; default $DEST_REGISTRY_AUTH, else "
     "auth files, else the source's)",
     "USER:PASSWORD", 0},
    {"push-chunk", "32MiB", 0, "oci:// DST: blobs larger are uploaded in PATCH chunks this large",
     "SIZE", 0},
    {"all", "false", 1,
     "oci:// DST: copy a multi-arch image whole: every platform's manifest, then the index "
     "(byte for byte)",
     NULL, 0},
    CLI_SOURCE_ACCESS_KEYS,
    CLI_SOURCE_LIMIT_KEYS,
    CLI_SOURCE_DATASET_KEYS,
    CLI_SOURCE_FILTER_KEYS,
    CLI_LAYOUT_KEYS,
    {NULL, NULL, 0, NULL, NULL, 0},
};

static volatile sig_atomic_t stop_flag;

/* The first signal asks for a clean stop; a second one ends the process
 * at once (the cache resumes whatever was in flight). */
static void on_signal(int sig)
{
	if (stop_flag) {
		signal(sig, SIG_DFL);
		raise(sig);
	}
	stop_flag = 1;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && v[0] ? v : NULL;
}

int cli_layout(struct config *cfg, const char *source, struct layout *l)
{
	const char *kind = config_get(cfg, "layout");
	const char *repo = config_get(cfg, "repo");
	char *error = NULL;
	memset(l, 0, sizeof *l);
	if (kind && layout_parse_kind(kind, &l->kind) < 0) {
		cli_error("--layout: '%s' is not plain, hf-cache or triton", kind);
		return EXIT_USAGE;
	}
	if (repo && !strncmp(repo, "datasets/", 9)) {
		l->dataset = 1;
		repo += 9;
	}
	l->repo = repo;
	l->model = config_get(cfg, "model");
	l->version = config_get(cfg, "model-version");
	if (config_get(cfg, "triton-url") && l->kind != LAYOUT_TRITON) {
		cli_error("--triton-url goes with --layout triton");
		return EXIT_USAGE;
	}
	/* A list's items supply the repo or model: checked per item. */
	struct layout probe = *l;
	if (!source && !probe.model)
		probe.model = "item";
	if (layout_check(&probe, source ? source : "hf://list/item", &error) < 0) {
		cli_error("%s", error);
		free(error);
		return EXIT_USAGE;
	}
	return 0;
}

static int one_schedule(const char *expr, const char *what, struct cron **out, size_t *n)
{
	char *error = NULL;
	*out = xcalloc(1, sizeof **out);
	*n = 1;
	if (cron_parse(expr, *out, &error) == 0)
		return 0;
	cli_error("%s '%s': %s", what, expr, error);
	free(error);
	free(*out);
	*out = NULL;
	return EXIT_USAGE;
}

/* A crontab's schedules; its commands are not run (sync is the job), and
 * one warning says so, naming what is left out. */
static int crontab_schedules(const char *text, const char *what, struct cron **out, size_t *n)
{
	char *error = NULL;
	size_t ncmd = 0;
	if (cron_parse_crontab(text, out, n, &error) < 0) {
		cli_error("%s: %s", what, error);
		free(error);
		return EXIT_USAGE;
	}
	char *cmd = cron_crontab_commands(text, &ncmd);
	if (cmd)
		log_warn("%s: only the schedules are used, the commands are not run (%s%s): sync "
			 "copies SRC into DST itself; give rsync's --include/--exclude/--delete to "
			 "syncbit sync",
			 what, cmd, ncmd > 1 ? ", and the other lines' commands" : "");
	free(cmd);
	return 0;
}

/* --schedule (flag or SYNCBIT_SCHEDULE), else the sidecar's CRONTAB_FILE,
 * CRONTAB (each replaces CRON_SCHEDULE; the file wins when both are set),
 * CRON_SCHEDULE, else the config file, else hourly. */
static int resolve_schedule(struct config *cfg, struct cron **out, size_t *n)
{
	const char *flag = config_get(cfg, "schedule");
	const char *file = env("CRONTAB_FILE"), *tab = env("CRONTAB");
	if (flag && config_origin_of(cfg, "schedule") >= CONFIG_ENV)
		return one_schedule(flag, "--schedule", out, n);
	if (file) {
		struct buf b = BUF_INIT;
		char *what = xasprintf("CRONTAB_FILE %s", file);
		int rc = buf_read_file(file, CRONTAB_MAX, &b);
		if (rc < 0) {
			cli_error("%s: %s", what, sb_strerror(rc));
			rc = EXIT_USAGE;
		} else {
			if (tab)
				log_warn("CRONTAB_FILE is set: CRONTAB is not used");
			rc = crontab_schedules(buf_cstr(&b), what, out, n);
		}
		buf_close(&b);
		free(what);
		return rc;
	}
	if (tab)
		return crontab_schedules(tab, "CRONTAB", out, n);
	if (env("CRON_SCHEDULE"))
		return one_schedule(env("CRON_SCHEDULE"), "CRON_SCHEDULE", out, n);
	return one_schedule(flag ? flag : SIDECAR_SCHEDULE, "--schedule", out, n);
}

/* The schedule resolve_schedule takes, for the startup line. Heap string. */
static char *schedule_text(struct config *cfg)
{
	const char *flag = config_get(cfg, "schedule");
	if (flag && config_origin_of(cfg, "schedule") >= CONFIG_ENV)
		return xasprintf("'%s'", flag);
	if (env("CRONTAB_FILE"))
		return xasprintf("CRONTAB_FILE %s", env("CRONTAB_FILE"));
	if (env("CRONTAB"))
		return xstrdup("CRONTAB");
	if (env("CRON_SCHEDULE"))
		return xasprintf("'%s'", env("CRON_SCHEDULE"));
	return xasprintf("'%s'", flag ? flag : SIDECAR_SCHEDULE);
}

/* --run-on-start, else RUN_ON_START ("1" or "true", as the sidecar). */
static int resolve_run_on_start(struct config *cfg, int *out)
{
	*out = 0;
	if (config_get(cfg, "run-on-start") && config_origin_of(cfg, "run-on-start") >= CONFIG_ENV)
		return config_get_bool(cfg, "run-on-start", out);
	const char *v = env("RUN_ON_START");
	if (v) {
		*out = !strcmp(v, "1") || !strcasecmp(v, "true");
		if (!*out && strcmp(v, "0") && strcasecmp(v, "false"))
			log_warn("RUN_ON_START='%s' is neither 1/true nor 0/false: not running at "
				 "start",
				 v);
		return 0;
	}
	return config_get(cfg, "run-on-start") ? config_get_bool(cfg, "run-on-start", out) : 0;
}

static const char *const status_names[] = {"ok", "failed", "skipped", "stopped"};

static void report_json(const struct sync_report *r)
{
	const struct pull_result *p = r->result;
	json_t *o = json_object();
	json_object_set_new(o, "run", json_integer(r->run));
	json_object_set_new(o, "status", json_string(status_names[r->status]));
	if (r->item) {
		char *shown = uri_redact(p && p->source ? p->source : r->item->source);
		json_object_set_new(o, "source", json_string(shown));
		free(shown);
		json_object_set_new(o, "target", json_string(r->item->target));
	}
	if (r->layout && r->layout->path)
		json_object_set_new(o, "path", json_string(r->layout->path));
	if (p) {
		char hex[HASH_HEX_LEN + 1];
		hash_to_hex(&p->manifest_id, hex);
		json_object_set_new(o, "files", json_integer((json_int_t)p->files));
		json_object_set_new(o, "bytes", json_integer((json_int_t)p->bytes));
		json_object_set_new(o, "bytes_from_source",
				    json_integer((json_int_t)p->bytes_from_source));
		json_object_set_new(o, "bytes_from_peers",
				    json_integer((json_int_t)p->bytes_from_peers));
		json_object_set_new(o, "bytes_reused", json_integer((json_int_t)p->bytes_reused));
		json_object_set_new(o, "bytes_read", json_integer((json_int_t)p->bytes_read));
		json_object_set_new(o, "seconds", jsonfmt_seconds(p->seconds));
		if (r->status == SYNC_OK)
			json_object_set_new(o, "manifest", json_string(hex));
	}
	if (r->layout)
		json_object_set_new(o, "deleted", json_integer((json_int_t)r->layout->removed));
	if (r->error) {
		char *shown = uri_redact(r->error);
		json_object_set_new(o, "error", json_string(shown));
		free(shown);
	}
	char *s = jsonfmt_dumps(o);
	printf("%s\n", s);
	free(s);
	json_decref(o);
}

static json_t *oci_tag_json(const struct sync_oci_tag *t)
{
	json_t *o = json_object();
	json_object_set_new(o, "tag", t->tag ? json_string(t->tag) : json_null());
	json_object_set_new(o, "digest", json_string(t->digest));
	json_object_set_new(o, "status", json_string(t->copied ? "copied" : "up_to_date"));
	json_object_set_new(o, "blobs_uploaded", json_integer((json_int_t)t->uploaded));
	json_object_set_new(o, "blobs_mounted", json_integer((json_int_t)t->mounted));
	json_object_set_new(o, "blobs_present", json_integer((json_int_t)t->present));
	json_object_set_new(o, "bytes_uploaded", json_integer((json_int_t)t->bytes));
	return o;
}

/* One object per run of an oci:// target: every image, then the sums. */
static void report_oci_json(const struct sync_report *r)
{
	const struct sync_oci_result *x = r->oci;
	const struct pull_result *p = r->result;
	json_t *o = json_object(), *tags = json_array();
	json_object_set_new(o, "run", json_integer(r->run));
	json_object_set_new(o, "status", json_string(status_names[r->status]));
	json_object_set_new(o, "source", json_string(r->item->source));
	json_object_set_new(o, "target", json_string(r->item->target));
	for (size_t i = 0; i < x->ntags; i++)
		json_array_append_new(tags, oci_tag_json(&x->tags[i]));
	json_object_set_new(o, "tags", tags);
	json_object_set_new(o, "copied", json_integer((json_int_t)x->copied));
	json_object_set_new(o, "up_to_date", json_integer((json_int_t)x->up_to_date));
	json_object_set_new(o, "blobs_uploaded", json_integer((json_int_t)x->uploaded));
	json_object_set_new(o, "blobs_mounted", json_integer((json_int_t)x->mounted));
	json_object_set_new(o, "blobs_present", json_integer((json_int_t)x->present));
	json_object_set_new(o, "bytes_uploaded", json_integer((json_int_t)x->bytes));
	json_object_set_new(o, "bytes_from_source",
			    json_integer((json_int_t)(p ? p->bytes_from_source : 0)));
	json_object_set_new(o, "bytes_read", json_integer((json_int_t)(p ? p->bytes_read : 0)));
	json_object_set_new(o, "seconds", jsonfmt_seconds(x->seconds));
	if (r->error)
		json_object_set_new(o, "error", json_string(r->error));
	char *s = jsonfmt_dumps(o);
	printf("%s\n", s);
	free(s);
	json_decref(o);
}

/* A line per image, then the run's sums. */
static void report_oci_text(const struct sync_report *r)
{
	const struct sync_oci_result *x = r->oci;
	const struct pull_result *p = r->result;
	const char *dest = x->dest ? x->dest : r->item->target;
	for (size_t i = 0; i < x->ntags; i++) {
		const struct sync_oci_tag *t = &x->tags[i];
		printf("sync run %u: %s %s -> %s%s%s (%s): blobs uploaded=%llu mounted=%llu "
		       "present=%llu bytes=%llu\n",
		       r->run, t->tag ? t->tag : t->digest, t->copied ? "copied" : "up to date",
		       dest, t->tag ? ":" : "@", t->tag ? t->tag : t->digest, t->digest,
		       (unsigned long long)t->uploaded, (unsigned long long)t->mounted,
		       (unsigned long long)t->present, (unsigned long long)t->bytes);
	}
	if (r->status != SYNC_OK)
		return;
	printf("sync run %u: ok %s -> %s: images=%zu copied=%llu up_to_date=%llu "
	       "blobs_uploaded=%llu blobs_mounted=%llu blobs_present=%llu bytes_uploaded=%llu "
	       "bytes_read=%llu seconds=%.2f\n",
	       r->run, r->item->source, r->item->target, x->ntags, (unsigned long long)x->copied,
	       (unsigned long long)x->up_to_date, (unsigned long long)x->uploaded,
	       (unsigned long long)x->mounted, (unsigned long long)x->present,
	       (unsigned long long)x->bytes, (unsigned long long)(p ? p->bytes_read : 0),
	       x->seconds);
}

static void report(const struct sync_report *r, void *arg)
{
	const int *json = arg;
	const struct pull_result *p = r->result;
	if (r->oci) {
		if (*json)
			report_oci_json(r);
		else
			report_oci_text(r);
		if (r->status == SYNC_FAILED)
			cli_error("sync run %u: %s -> %s: %s", r->run, r->item->source,
				  r->item->target, r->error ? r->error : "failed");
		else if (r->status == SYNC_STOPPED && !*json)
			printf("sync run %u: stopped: %s\n", r->run, r->error ? r->error : "");
		fflush(stdout);
		return;
	}
	if (*json)
		report_json(r);
	if (r->status == SYNC_FAILED) {
		cli_error("sync run %u: %s%s%s", r->run, r->item ? r->item->source : "",
			  r->item ? ": " : "", r->error ? r->error : "failed");
	} else if (*json) {
		/* the JSON line says it all */
	} else if (r->status == SYNC_OK) {
		printf("sync run %u: ok %s -> %s: files=%llu bytes=%llu bytes_from_source=%llu "
		       "bytes_from_peers=%llu bytes_reused=%llu deleted=%llu seconds=%.2f\n",
		       r->run, r->item->source, r->layout->path ? r->layout->path : r->item->target,
		       (unsigned long long)p->files, (unsigned long long)p->bytes,
		       (unsigned long long)p->bytes_from_source,
		       (unsigned long long)p->bytes_from_peers, (unsigned long long)p->bytes_reused,
		       (unsigned long long)r->layout->removed, p->seconds);
	} else {
		printf("sync run %u: %s: %s\n", r->run, status_names[r->status],
		       r->error ? r->error : "");
	}
	fflush(stdout);
}

static void catch_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal; /* no SA_RESTART: sleeps end early */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
}

/* Positional arguments and the sidecar's SRC/DST; 0 or EXIT_USAGE. */
static int resolve_paths(int npos, char **pos, const char *list, const char **src, const char **dst)
{
	if (list && npos <= 1) {
		*dst = npos ? pos[0] : env("DST") ? env("DST") : SIDECAR_DST;
		return 0;
	}
	if (!list && (npos == 0 || npos == 2)) {
		*src = npos ? pos[0] : env("SRC") ? env("SRC") : SIDECAR_SRC;
		*dst = npos ? pos[1] : env("DST") ? env("DST") : SIDECAR_DST;
		return 0;
	}
	cli_error(list ? "sync --list FILE takes one DST"
		       : "sync takes SRC and DST (or $SRC, $DST)");
	cli_usage("sync");
	return EXIT_USAGE;
}

static int read_options(struct config *cfg, struct sync_options *so, uint64_t *cache_size)
{
	uint64_t jobs, bs, retries, stall;
	int datasets = 0;
	const char *platform = config_get(cfg, "list-platform");
	if (config_get_bool(cfg, "once", &so->once) < 0 ||
	    config_get_bool(cfg, "delete", &so->layout.prune) < 0 ||
	    config_get_bool(cfg, "list-datasets", &datasets) < 0 ||
	    config_get_u64(cfg, "jobs", 1, 256, &jobs) < 0 ||
	    config_get_size(cfg, "block-size", BLOCK_SIZE_MIN, BLOCK_SIZE_MAX, &bs) < 0 ||
	    config_get_size(cfg, "cache-size", 0, UINT64_MAX, cache_size) < 0 ||
	    config_get_u64(cfg, "retries", 0, 100, &retries) < 0 ||
	    config_get_u64(cfg, "stall-timeout", 1, 3600, &stall) < 0 ||
	    resolve_run_on_start(cfg, &so->run_on_start) < 0) {
		cli_error("%s", cfg->error);
		return EXIT_USAGE;
	}
	if (manifest_check_block_size(bs) < 0) {
		cli_error("--block-size: must be a power of two from 4KiB to 256MiB");
		return EXIT_USAGE;
	}
	if (strcmp(platform, "huggingface") && strcmp(platform, "modelscope")) {
		cli_error("--list-platform: '%s' is neither huggingface nor modelscope", platform);
		return EXIT_USAGE;
	}
	so->list_options.platform =
	    !strcmp(platform, "modelscope") ? SYNC_MODELSCOPE : SYNC_HUGGINGFACE;
	so->list_options.datasets = datasets;
	so->pull.name = config_get(cfg, "name");
	so->pull.block_size = (uint32_t)bs;
	source_options_default(&so->pull.src);
	if (cli_source_access(cfg, &so->pull.src) || cli_source_limits(cfg, &so->pull.src))
		return EXIT_USAGE;
	so->pull.src.jobs = (int)jobs;
	so->pull.src.retries = (int)retries;
	so->pull.src.stall_seconds = (unsigned)stall;
	so->pull.src.block_size = bs;
	return 0;
}

/* --all: the source listed with every platform of its indexes. 0 or
 * EXIT_USAGE. */
static int oci_all(struct config *cfg, struct sync_options *so, const char *src, char **with)
{
	struct source_uri u;
	int all = 0;
	config_get_bool(cfg, "all", &all);
	if (!all)
		return 0;
	if (config_get(cfg, "platform")) {
		cli_error("--all copies every platform: it does not go with --platform");
		return EXIT_USAGE;
	}
	if (uri_parse(src, &u) == 0) {
		int has = u.platform != NULL;
		uri_close(&u);
		if (has) {
			cli_error("--all copies every platform: %s names some", src);
			return EXIT_USAGE;
		}
	}
	so->oci.all = 1;
	free(*with);
	*with = oci_source_with(src, "all", config_get(cfg, "tag-regex"));
	return 0;
}

/* The checks and options of a registry DST (oci://). 0 (also for any
 * other DST) or EXIT_USAGE. */
static int oci_target(struct config *cfg, struct sync_options *so, const char *src, const char *dst,
		      char **with)
{
	struct sync_oci_dest d;
	char *why = NULL;
	const char *user = config_get(cfg, "dest-registry-user");
	int all = 0;
	config_get_bool(cfg, "all", &all);
	if (!sync_oci_is_dest(dst) && all) {
		cli_error("--all takes a registry DST (oci://), not %s", dst);
		return EXIT_USAGE;
	}
	if (!sync_oci_is_dest(dst))
		return 0;
	const char *wrong = so->layout.prune		      ? "--delete"
			    : so->layout.kind != LAYOUT_PLAIN ? "--layout"
			    : config_get(cfg, "triton-url")   ? "--triton-url"
							      : NULL;
	if (so->list) {
		cli_error("--list takes a directory DST, not a registry (%s)", dst);
		return EXIT_USAGE;
	}
	if (!sync_oci_is_dest(src)) {
		cli_error("sync to a registry (%s) takes an oci:// SRC, not %s", dst, src);
		return EXIT_USAGE;
	}
	if (wrong) {
		cli_error("%s is not supported when DST is a registry (oci://)", wrong);
		return EXIT_USAGE;
	}
	if (sync_oci_dest_parse(dst, NULL, &d, &why) < 0) {
		cli_error("%s", why);
		free(why);
		return EXIT_USAGE;
	}
	int tagged = d.tag[0] != '\0';
	sync_oci_dest_close(&d);
	if (tagged && config_get(cfg, "tag-regex")) {
		cli_error("DST %s names a tag: it takes one SRC image, not --tag-regex", dst);
		return EXIT_USAGE;
	}
	if (user && config_origin_of(cfg, "dest-registry-user") == CONFIG_FLAG)
		log_warn("--dest-registry-user is deprecated: other users see it in ps; give "
			 "$DEST_REGISTRY_AUTH or an auth file (REGISTRY_AUTH_FILE, "
			 "~/.docker/config.json)");
	if (!user)
		user = env("DEST_REGISTRY_AUTH");
	if (user && config_get(cfg, "dest-registry-user") && !strchr(user, ':')) {
		cli_error("--dest-registry-user: expected user:password");
		return EXIT_USAGE;
	}
	so->oci.dest_auth = user;
	if (config_get_size(cfg, "push-chunk", PUSH_CHUNK_MIN, UINT32_MAX, &so->oci.chunk) < 0) {
		cli_error("%s", cfg->error);
		return EXIT_USAGE;
	}
	return oci_all(cfg, so, src, with);
}

int cmd_sync(int argc, char **argv)
{
	struct config cfg;
	struct sync_options so = {.stop = &stop_flag, .report = report};
	struct cron *schedules = NULL;
	struct filter filter = {0};
	char **pos = NULL;
	char *data = NULL, *target = NULL, *lock = NULL, *src_with = NULL, *schedule = NULL;
	const char *src = NULL, *dst = NULL;
	uint64_t cache_size = 0;
	int npos = 0, json = 0, rc;

	if ((rc = cli_parse(&cfg, "sync", argc, argv, &pos, &npos)))
		goto out;
	so.list = config_get(&cfg, "list");
	if ((rc = resolve_paths(npos, pos, so.list, &src, &dst)) ||
	    (src && (rc = cli_check_source("sync", src))) ||
	    (rc = cli_layout(&cfg, so.list ? NULL : src, &so.layout)) ||
	    (rc = read_options(&cfg, &so, &cache_size)) ||
	    (rc = cli_source_dataset(&cfg, so.list ? NULL : src, &src_with)) ||
	    (rc = cli_source_filter(&cfg, so.list ? NULL : src, &filter)) ||
	    (rc = resolve_schedule(&cfg, &schedules, &so.nschedules)) ||
	    (rc = oci_target(&cfg, &so, src, dst, &src_with)))
		goto out;
	/* Each item of a list has its own cache name, repo and model. */
	const char *per_item = !so.list			   ? NULL
			       : config_get(&cfg, "name")  ? "--name"
			       : config_get(&cfg, "repo")  ? "--repo"
			       : config_get(&cfg, "model") ? "--model"
							   : NULL;
	if (per_item) {
		cli_error("%s does not go with --list: each item has its own", per_item);
		rc = EXIT_USAGE;
		goto out;
	}
	config_get_bool(&cfg, "json", &json);
	so.schedules = schedules;
	so.arg = &json;
	so.triton_url = config_get(&cfg, "triton-url");
	/* A bar for one run on a terminal; plain lines every few seconds on
	 * anything else (a sidecar's log), --json or not. */
	so.pull.progress = isatty(2) ? so.once && !json : 1;
	config_get_bool(&cfg, "verbose", &so.pull.verbose);
	target = sync_oci_is_dest(dst) ? xstrdup(dst) : cli_abs_path(dst);
	so.source = src_with ? src_with : src;
	so.target = target;
	so.list_options.flat = so.layout.kind != LAYOUT_PLAIN;
	so.pull.src.filter = &filter;
	so.layout.filter = &filter;
	if (so.list) {
		struct sync_list probe;
		char *error = NULL;
		if (sync_list_load(so.list, target, &so.list_options, &probe, &error) < 0) {
			cli_error("--list %s", error);
			free(error);
			rc = EXIT_USAGE;
			goto out;
		}
		sync_list_close(&probe);
	}
	if (src && !strstr(src, "://") && src[strlen(src) - 1] != '/')
		log_info("sync: %s is copied as its contents into %s (rsync without a trailing "
			 "'/' would make %s/<name>)",
			 src, target, target);
	data = cli_data_dir(&cfg);
	lock = sync_lock_path(data, target);
	so.lock_path = lock;
	catch_signals();
	schedule = schedule_text(&cfg);
	log_info("syncbit %s (%s) sync: %s%s -> %s, %s%s, data %s", SYNCBIT_VERSION,
		 syncbit_commit(), so.list ? "the items of " : "", so.list ? so.list : so.source,
		 target, so.once ? "once" : "schedule ", so.once ? "" : schedule, data);
	int err = sync_run(data, cache_size, &so);
	rc = err < 0 && err != SB_ECANCELED ? EXIT_FAIL : EXIT_OK;
out:
	filter_close(&filter);
	free(schedule);
	free(schedules);
	free(src_with);
	free(lock);
	free(data);
	free(target);
	free(pos);
	config_close(&cfg);
	return rc;
}
