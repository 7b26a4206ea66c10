/* syncbit verify, gc, rm and cache ls: the local cache of standalone
 * pulls. A pull pins the objects of the version it published; rm forgets
 * a pull (unpins it), gc evicts what nothing pins. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/cache.h"
#include "agent/verify.h"
#include "cli/cli.h"
#include "common/err.h"
#include "common/jsonfmt.h"
#include "common/progress.h"

const struct config_key cli_verify_keys[] = {
    CLI_COMMON_KEYS,
    {"json", "false", 1, "print a JSON summary as the last line", NULL, 0},
    {NULL, NULL, 0, NULL, NULL, 0},
};

const struct config_key cli_gc_keys[] = {
    CLI_COMMON_KEYS,
    {"json", "false", 1, "print a JSON summary as the last line", NULL, 0},
    {"cache-size", NULL, 0,
     "evict unpinned objects until the cache is this small (0: no limit, nothing to evict; "
     "not given: every unpinned object)",
     "SIZE", 0},
    {"stale", "false", 1, "first drop the pins of pulls whose target is gone or empty", NULL, 0},
    {NULL, NULL, 0, NULL, NULL, 0},
};

const struct config_key cli_rm_keys[] = {
    CLI_COMMON_KEYS,
    {"socket", NULL, 0,
     "the local agent's unix socket (default DATA/agent.sock): while an agent runs, rm goes "
     "through it",
     "PATH", 0},
    {"purge", "false", 1, "also evict the objects it pinned that nothing else pins", NULL, 0},
    {"json", "false", 1, "print a JSON summary as the last line", NULL, 0},
    {NULL, NULL, 0, NULL, NULL, 0},
};

const struct config_key cli_cache_ls_keys[] = {
    CLI_COMMON_KEYS,
    {"json", "false", 1, "print JSON as the last line", NULL, 0},
    {NULL, NULL, 0, NULL, NULL, 0},
};

static void print_json(json_t *o)
{
	char *s = jsonfmt_dumps(o);
	printf("%s\n", s);
	free(s);
	json_decref(o);
}

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

/* The cache of cfg's data directory for a maintenance command. These must
 * not wait, silent, for a daemon that holds the data directory for as long
 * as it runs: they say who holds it and what to do (advice). 0, or
 * EXIT_FAIL after the message. */
static int open_cache(const char *what, const char *advice, struct config *cfg, char **data,
		      struct cache **c)
{
	int holder = 0;
	*data = cli_data_dir(cfg);
	int err = cache_open_nowait(*data, 0, c, &holder);
	if (err == 0)
		return 0;
	if (err != -EBUSY) {
		cli_error("%s: cache %s: %s", what, *data, sb_strerror(err));
		return EXIT_FAIL;
	}
	char line[256], pid[32] = "";
	cmdline_of(holder, line, sizeof line);
	if (holder)
		snprintf(pid, sizeof pid, " (pid %d)", holder);
	const char *sub = strchr(line, ' ');
	if (sub && !strncmp(sub + 1, "daemon", 6) && (sub[7] == ' ' || !sub[7]))
		cli_error("%s: %s is in use by a running agent%s; %s", what, *data, pid, advice);
	else
		cli_error("%s: %s is in use by another syncbit process%s%s%s; run %s again once "
			  "it is done",
			  what, *data, pid, line[0] ? ": " : "", line, what);
	return EXIT_FAIL;
}

/* The dataset named arg, else the one published at the directory arg
 * (which may be gone). 1 when found. */
static int find_dataset(struct cache *c, const char *arg, struct cache_dataset *d)
{
	int found = cache_dataset_get(c, arg, d);
	if (found > 0)
		return 1;
	char *abs = cli_abs_path(arg);
	found = cache_dataset_find_target(c, abs, d);
	free(abs);
	return found > 0;
}

/* ---- verify ------------------------------------------------------------------ */

static void verify_report(const struct cache_dataset *d, const struct verify_result *r, int err,
			  int json)
{
	if (json) {
		json_t *probs = json_array();
		for (size_t i = 0; i < r->nproblems; i++)
			json_array_append_new(probs, json_string(r->problems[i]));
		print_json(json_pack("{s:s,s:I,s:I,s:I,s:b,s:o}", "dataset", d->name, "files",
				     (json_int_t)r->files, "bytes", (json_int_t)r->bytes,
				     "bad_files", (json_int_t)r->bad_files, "ok", err == 0,
				     "problems", probs));
	} else {
		for (size_t i = 0; i < r->nproblems; i++)
			printf("bad  %s\n", r->problems[i]);
	}
	if (err == 0 && !json) {
		char b[32];
		printf("verified %llu %s, %s: all blocks match\n", (unsigned long long)r->files,
		       progress_noun(r->files, "file", "files"),
		       progress_fmt_bytes(r->bytes, b, sizeof b));
	} else if (err == SB_ECORRUPT) {
		cli_error("verify %s: %llu bad %s of %llu; dropped from the cache, the next pull "
			  "fetches %s again",
			  d->name, (unsigned long long)r->bad_files,
			  progress_noun(r->bad_files, "file", "files"),
			  (unsigned long long)r->files, progress_noun(r->bad_files, "it", "them"));
	} else if (err < 0) {
		cli_error("verify %s: %s", d->name, sb_strerror(err));
	}
}

int cmd_verify(int argc, char **argv)
{
	struct config cfg;
	char **pos = NULL;
	int npos = 0, json = 0, rc;
	char *data = NULL;
	struct cache *c = NULL;
	struct cache_dataset d = {0};
	if ((rc = cli_parse(&cfg, "verify", argc, argv, &pos, &npos)))
		goto out;
	rc = EXIT_USAGE;
	if (npos != 1 || config_get_bool(&cfg, "json", &json) < 0) {
		cli_error("verify takes one DIR or dataset NAME");
		goto out;
	}
	if ((rc = open_cache("verify", "stop it, then run verify", &cfg, &data, &c)))
		goto out;
	rc = EXIT_FAIL;
	if (!find_dataset(c, pos[0], &d)) {
		cli_error("verify: %s: no dataset of that name or published there (cache %s)",
			  pos[0], data);
		goto out;
	}
	struct verify_result r;
	int err = verify_dataset(c, &d, &r);
	verify_report(&d, &r, err, json);
	rc = err == 0 ? EXIT_OK : EXIT_FAIL;
	verify_result_close(&r);
out:
	cache_dataset_close(&d);
	cache_free(c);
	free(data);
	free(pos);
	config_close(&cfg);
	return rc;
}

/* ---- rm ---------------------------------------------------------------------- */

static void print_rm(const char *name, const char *source, const char *target, int purge,
		     uint64_t n, uint64_t bytes, int json)
{
	if (json) {
		print_json(json_pack("{s:s,s:s,s:s,s:I,s:I}", "name", name, "source", source,
				     "target", target, "evicted_objects", (json_int_t)n,
				     "evicted_bytes", (json_int_t)bytes));
		return;
	}
	char b[32];
	printf("forgot %s%s%s%s%s%s; its objects are unpinned", name, source[0] ? " (" : "", source,
	       target[0] ? " -> " : "", target, source[0] ? ")" : "");
	if (purge)
		printf(", %llu %s evicted (%s)", (unsigned long long)n,
		       progress_noun(n, "object", "objects"),
		       progress_fmt_bytes(bytes, b, sizeof b));
	printf("%s\n", target[0] ? "; the files in its target stay" : "");
}

static const char *str_of(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

/* rm through the running agent, which holds the cache: an exit status, or
 * CLI_NO_AGENT when none answers (or one too old to know rm). */
static int rm_through_agent(const struct config *cfg, const char *arg, int purge, int json)
{
	char *abs = cli_abs_path(arg);
	json_t *req = json_pack("{s:s, s:s, s:s, s:b}", "op", "rm", "name", arg, "path", abs,
				"purge", purge),
	       *reply = NULL;
	free(abs);
	int rc = cli_agent_request(cfg, req, &reply);
	if (rc != 0)
		return rc;
	const char *err = json_string_value(json_object_get(reply, "error"));
	json_t *r = json_object_get(reply, "result");
	if (err && !strcmp(err, "unknown request")) {
		rc = CLI_NO_AGENT; /* an older agent: say it holds the cache */
	} else if (err) {
		cli_error("%s", err);
		rc = EXIT_FAIL;
	} else if (!json_is_object(r)) {
		cli_error("rm %s: the agent answered something else", arg);
		rc = EXIT_FAIL;
	} else {
		print_rm(str_of(r, "name"), str_of(r, "source"), str_of(r, "target"), purge,
			 (uint64_t)json_integer_value(json_object_get(r, "evicted_objects")),
			 (uint64_t)json_integer_value(json_object_get(r, "evicted_bytes")), json);
		rc = EXIT_OK;
	}
	json_decref(reply);
	return rc;
}

int cmd_rm(int argc, char **argv)
{
	struct config cfg;
	char **pos = NULL;
	int npos = 0, json = 0, purge = 0, rc;
	char *data = NULL;
	struct cache *c = NULL;
	struct cache_dataset d = {0};
	uint64_t n = 0, bytes = 0;
	if ((rc = cli_parse(&cfg, "rm", argc, argv, &pos, &npos)))
		goto out;
	rc = EXIT_USAGE;
	if (npos != 1 || !pos[0][0] || config_get_bool(&cfg, "json", &json) < 0 ||
	    config_get_bool(&cfg, "purge", &purge) < 0) {
		cli_error("rm takes one dataset NAME or the DIR it was pulled into");
		cli_usage("rm");
		goto out;
	}
	if ((rc = rm_through_agent(&cfg, pos[0], purge, json)) != CLI_NO_AGENT)
		goto out;
	if ((rc = open_cache("rm", "stop it, then run rm", &cfg, &data, &c)))
		goto out;
	rc = EXIT_FAIL;
	if (!find_dataset(c, pos[0], &d)) {
		cli_error("rm: %s: no pull of that name or into that directory (cache %s; see "
			  "'syncbit cache ls')",
			  pos[0], data);
		goto out;
	}
	int err =
	    purge ? cache_dataset_purge(c, d.name, &n, &bytes) : cache_dataset_remove(c, d.name);
	if (err < 0) {
		cli_error("rm %s: cache %s: %s", d.name, data, sb_strerror(err));
		goto out;
	}
	print_rm(d.name, d.source ? d.source : "", d.target ? d.target : "", purge, n, bytes, json);
	rc = EXIT_OK;
out:
	cache_dataset_close(&d);
	cache_free(c);
	free(data);
	free(pos);
	config_close(&cfg);
	return rc;
}

/* ---- cache ls and gc ------------------------------------------------------------ */

/* Every dataset of c (heap array, *n set); close each with
 * cache_dataset_close. */
static struct cache_dataset *all_datasets(struct cache *c, size_t *n)
{
	char **names;
	size_t count;
	*n = 0;
	if (cache_dataset_list(c, &names, &count) < 0)
		return NULL;
	struct cache_dataset *ds = calloc(count + 1, sizeof *ds);
	for (size_t i = 0; i < count; i++) {
		if (ds && cache_dataset_get(c, names[i], &ds[*n]) == 1)
			(*n)++;
		free(names[i]);
	}
	free(names);
	return ds;
}

static void free_datasets(struct cache_dataset *ds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		cache_dataset_close(&ds[i]);
	free(ds);
}

static json_t *stats_json(struct cache *c)
{
	struct cache_stats st;
	cache_stats(c, &st);
	return json_pack("{s:I,s:I,s:I,s:I}", "used", (json_int_t)st.used, "pinned",
			 (json_int_t)st.pinned, "evictable", (json_int_t)(st.used - st.pinned),
			 "objects", (json_int_t)st.objects);
}

static json_t *dataset_json(struct cache *c, const struct cache_dataset *d)
{
	struct cache_dataset_usage u;
	cache_dataset_usage(c, d, &u);
	json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:b,s:I}", "name", d->name, "source", d->source,
			      "target", d->target, "objects", (json_int_t)u.objects, "bytes",
			      (json_int_t)u.bytes, "stale", cache_dataset_stale(d), "updated_unix",
			      (json_int_t)d->updated_unix);
	return o;
}

static void print_ls(const json_t *doc)
{
	size_t i;
	json_t *d;
	char b[32], p[32], e[32];
	int w = 4;
	json_array_foreach(json_object_get(doc, "datasets"), i, d)
	{
		int n = (int)strlen(json_string_value(json_object_get(d, "name")));
		w = n > w ? n : w;
	}
	printf("%-*s  %10s  %-5s  %s\n", w, "NAME", "SIZE", "STATE", "SOURCE -> TARGET");
	json_array_foreach(json_object_get(doc, "datasets"), i, d)
	{
		const char *target = json_string_value(json_object_get(d, "target"));
		const char *state = !target[0]					? "cache"
				    : json_is_true(json_object_get(d, "stale")) ? "stale"
										: "ok";
		printf("%-*s  %10s  %-5s  %s%s%s\n", w,
		       json_string_value(json_object_get(d, "name")),
		       progress_fmt_bytes(json_integer_value(json_object_get(d, "bytes")), b,
					  sizeof b),
		       state, json_string_value(json_object_get(d, "source")),
		       target[0] ? " -> " : "", target);
	}
	const json_t *t = json_object_get(doc, "cache");
	long long objects = json_integer_value(json_object_get(t, "objects"));
	printf(
	    "cache: %s in %lld %s, %s pinned, %s evictable ('syncbit gc')\n",
	    progress_fmt_bytes(json_integer_value(json_object_get(t, "used")), b, sizeof b),
	    objects, objects == 1 ? "object" : "objects",
	    progress_fmt_bytes(json_integer_value(json_object_get(t, "pinned")), p, sizeof p),
	    progress_fmt_bytes(json_integer_value(json_object_get(t, "evictable")), e, sizeof e));
}

int cmd_cache_ls(int argc, char **argv)
{
	struct config cfg;
	char **pos = NULL;
	int npos = 0, json = 0, rc;
	char *data = NULL;
	struct cache *c = NULL;
	if ((rc = cli_parse(&cfg, "cache ls", argc, argv, &pos, &npos)))
		goto out;
	rc = EXIT_USAGE;
	if (npos != 0 || config_get_bool(&cfg, "json", &json) < 0) {
		cli_error("cache ls takes no arguments");
		goto out;
	}
	if ((rc = open_cache("cache ls", "'syncbit status' shows what it holds", &cfg, &data, &c)))
		goto out;
	size_t n;
	struct cache_dataset *ds = all_datasets(c, &n);
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, dataset_json(c, &ds[i]));
	free_datasets(ds, n);
	json_t *doc =
	    json_pack("{s:s,s:o,s:o}", "data", data, "datasets", list, "cache", stats_json(c));
	if (json)
		print_json(doc);
	else {
		print_ls(doc);
		json_decref(doc);
	}
	rc = EXIT_OK;
out:
	cache_free(c);
	free(data);
	free(pos);
	config_close(&cfg);
	return rc;
}

/* The pulls whose target is gone or empty, as a JSON array of names;
 * with drop, their pins go. */
static int stale_pins(struct cache *c, int drop, json_t **names)
{
	size_t n;
	struct cache_dataset *ds = all_datasets(c, &n);
	int rc = 0;
	*names = json_array();
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (!cache_dataset_stale(&ds[i]))
			continue;
		json_array_append_new(*names, json_string(ds[i].name));
		if (drop)
			rc = cache_dataset_remove(c, ds[i].name);
	}
	free_datasets(ds, n);
	return rc;
}

static void gc_report(struct cache *c, uint64_t n, uint64_t b, json_t *stale, int dropped, int json)
{
	json_t *st = stats_json(c);
	if (json) {
		json_object_set_new(st, "evicted_objects", json_integer((json_int_t)n));
		json_object_set_new(st, "evicted_bytes", json_integer((json_int_t)b));
		json_object_set(st, dropped ? "stale_dropped" : "stale", stale);
		print_json(st);
		return;
	}
	char eb[32], ub[32], pb[32];
	size_t ns = json_array_size(stale);
	printf(
	    "evicted %llu %s (%s); cache holds %s, %s pinned\n", (unsigned long long)n,
	    progress_noun(n, "object", "objects"), progress_fmt_bytes(b, eb, sizeof eb),
	    progress_fmt_bytes(json_integer_value(json_object_get(st, "used")), ub, sizeof ub),
	    progress_fmt_bytes(json_integer_value(json_object_get(st, "pinned")), pb, sizeof pb));
	for (size_t i = 0; i < ns; i++)
		printf("%s %s: its target is gone or empty%s\n",
		       dropped ? "dropped the pin of" : "stale pin:",
		       json_string_value(json_array_get(stale, i)),
		       dropped ? "" : " ('syncbit gc --stale' or 'syncbit rm' drops it)");
	json_decref(st);
}

/* --cache-size: not given, evict every unpinned object; 0, no limit;
 * else the size to shrink to. 0 or EXIT_USAGE. */
static int gc_target(struct config *cfg, uint64_t *target)
{
	uint64_t size;
	*target = 0;
	if (!config_get(cfg, "cache-size"))
		return 0;
	if (config_get_size(cfg, "cache-size", 0, UINT64_MAX, &size) < 0) {
		cli_error("%s", cfg->error);
		return EXIT_USAGE;
	}
	*target = size ? size : UINT64_MAX;
	return 0;
}

int cmd_gc(int argc, char **argv)
{
	struct config cfg;
	char **pos = NULL;
	int npos = 0, json = 0, stale = 0, rc;
	uint64_t target = 0, n = 0, b = 0;
	char *data = NULL;
	struct cache *c = NULL;
	json_t *names = NULL;
	if ((rc = cli_parse(&cfg, "gc", argc, argv, &pos, &npos)))
		goto out;
	rc = EXIT_USAGE;
	if (npos != 0 || config_get_bool(&cfg, "json", &json) < 0 ||
	    config_get_bool(&cfg, "stale", &stale) < 0) {
		cli_error("%s", cfg.error ? cfg.error : "gc takes no arguments");
		goto out;
	}
	if ((rc = gc_target(&cfg, &target)) ||
	    (rc = open_cache("gc", "stop it, or let it evict (daemon --cache-size)", &cfg, &data,
			     &c)))
		goto out;
	rc = EXIT_FAIL;
	int err = stale_pins(c, stale, &names);
	if (err == 0)
		err = cache_evict(c, target, &n, &b);
	if (err < 0) {
		cli_error("gc: cache %s: %s", data, sb_strerror(err));
		goto out;
	}
	gc_report(c, n, b, names, stale, json);
	rc = EXIT_OK;
out:
	json_decref(names);
	cache_free(c);
	free(data);
	free(pos);
	config_close(&cfg);
	return rc;
}
