/* Commands that keep looking: status --watch (the local agent's view or the
 * scheduler's) and dataset wait NAME (until the dataset's current version
 * is ready on its nodes). Both ask again every few seconds over short
 * connections and stop on SIGINT or SIGTERM. */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/jsonfmt.h"
#include "common/log.h"
#include "common/progress.h"

#define WATCH_INTERVAL_MAX 3600
#define WAIT_POLL_MS	   1000
/* Longest wait for one answer of the scheduler while waiting. */
#define WAIT_CALL_MS	30000
#define NAP_SLICE_MS	100
#define WAIT_REASON_MAX 4096

const struct config_key cli_dataset_wait_keys[] = {
    CLI_COMMON_KEYS,
    {"scheduler", NULL, 0,
     "the scheduler's address; with several schedulers on etcd, all of them, comma-separated (the "
     "leader is followed)",
     "HOST:PORT[,...]", 0},
    {"token-file", NULL, 0, "the cluster's join token (DATA/join-token)", "FILE", 0},
    {"json", "false", 1, "print the dataset's status as JSON as the last line", NULL, 0},
    {"no-encrypt", "false", 1, "authenticate but send in the clear", NULL, 0},
    {"nodes", NULL, 0, "ready once this many of its nodes have it (default: --all)", "N", 0},
    {"all", "false", 1, "ready once every node it is assigned to has it (the default)", NULL, 0},
    {"timeout", "0", 0, "give up after this long: SECONDS, or with a unit (90s, 10m, 2h; 0: never)",
     "DURATION", 0},
    {NULL, NULL, 0, NULL, NULL, 0},
};

/* ---- stopping on a signal ---------------------------------------------------- */

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
	stop_signal = sig;
}

int cli_stop_requested(void)
{
	return stop_signal != 0;
}

void cli_catch_stop(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop; /* no SA_RESTART: a sleep ends at once */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* Sleep ms, or less when a stop arrives. */
static void nap(uint64_t ms)
{
	uint64_t end = progress_now_ns() + ms * 1000000ull;
	while (!cli_stop_requested()) {
		uint64_t now = progress_now_ns();
		if (now >= end)
			return;
		uint64_t left = (end - now) / 1000000ull;
		poll(NULL, 0, (int)(left < NAP_SLICE_MS ? left : NAP_SLICE_MS));
	}
}

/* ---- status --watch ---------------------------------------------------------- */

/* Counters of elapsed time change on every look, and the disk's free
 * space with whatever else writes to it: they alone are no change. */
static void drop_clocks(json_t *j)
{
	static const char *const clocks[] = {"seconds_connected", "seconds_disconnected",
					     "seconds_since_heartbeat", "disk_free"};
	size_t i;
	const char *k;
	json_t *v;
	if (json_is_object(j)) {
		for (i = 0; i < sizeof clocks / sizeof *clocks; i++)
			json_object_del(j, clocks[i]);
		json_object_foreach(j, k, v)
		{
			drop_clocks(v);
		}
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, v)
		{
			drop_clocks(v);
		}
	}
}

static void print_json_line(const json_t *doc)
{
	char *s = jsonfmt_dumps(doc);
	printf("%s\n", s);
	free(s);
}

struct watch {
	struct config *cfg;
	const char *name;
	int cluster, json, tty;
	uint64_t interval_s, call_ms;
};

/* One look: 0 with *doc, or a negative code with *error. */
static int watch_look(const struct watch *w, json_t **doc, char **error)
{
	int permanent;
	if (w->cluster)
		return cli_admin_status(w->cfg, w->name, w->call_ms, doc, error, &permanent);
	return cli_agent_status(w->cfg, doc, error);
}

static void watch_show(const struct watch *w, const json_t *doc, const char *error)
{
	char when[16];
	time_t now = time(NULL);
	struct tm tm;
	strftime(when, sizeof when, "%H:%M:%S", localtime_r(&now, &tm));
	if (w->json) {
		if (doc)
			print_json_line(doc);
		else
			cli_error("status: %s", error);
	} else if (w->tty) {
		/* Home and clear, as watch(1) does: the view replaces itself. */
		printf("\033[H\033[2J%s  every %llus, Ctrl-C to stop\n\n", when,
		       (unsigned long long)w->interval_s);
		if (doc && w->cluster)
			cli_print_cluster_status(doc);
		else if (doc)
			cli_print_agent_status(doc);
		else
			printf("%s\n", error);
	} else if (doc) {
		printf("-- %s\n", when);
		if (w->cluster)
			cli_print_cluster_status(doc);
		else
			cli_print_agent_status(doc);
	} else {
		cli_error("status: %s", error);
	}
	fflush(stdout);
}

static int watch_run(struct watch *w)
{
	json_t *last = NULL;
	char *last_error = NULL;
	int first = 1;
	cli_catch_stop();
	while (!cli_stop_requested()) {
		json_t *doc = NULL;
		char *error = NULL;
		int rc = watch_look(w, &doc, &error);
		if (cli_stop_requested()) {
			json_decref(doc);
			free(error);
			break;
		}
		if (rc < 0 && first) {
			/* Nothing to watch yet: most likely a wrong address or socket. */
			cli_error("status: %s", error);
			free(error);
			return EXIT_FAIL;
		}
		first = 0;
		json_t *key = doc ? json_deep_copy(doc) : NULL;
		if (key)
			drop_clocks(key);
		int changed = doc ? !last || !json_equal(key, last)
				  : !last_error || strcmp(error, last_error);
		if (w->tty && !w->json)
			changed = 1;
		if (changed)
			watch_show(w, doc, error);
		if (doc) {
			json_decref(last);
			last = key;
			free(last_error);
			last_error = NULL;
		} else {
			free(last_error);
			last_error = error;
			error = NULL;
		}
		json_decref(doc);
		free(error);
		nap(w->interval_s * 1000);
	}
	json_decref(last);
	free(last_error);
	return EXIT_OK;
}

int cli_status_watch(struct config *cfg, const char *name, int json, int cluster)
{
	int on = 0;
	uint64_t timeout = 120;
	struct watch w = {.cfg = cfg, .name = name, .cluster = cluster, .json = json};
	if (config_get_bool(cfg, "watch", &on) < 0 ||
	    config_get_u64(cfg, "interval", 1, WATCH_INTERVAL_MAX, &w.interval_s) < 0 ||
	    config_get_u64(cfg, "timeout", 1, 86400, &timeout) < 0) {
		cli_error("%s", cfg->error);
		return EXIT_USAGE;
	}
	if (!on) {
		if (config_origin_of(cfg, "interval") != CONFIG_DEFAULT) {
			cli_error("status: --interval goes with --watch");
			return EXIT_USAGE;
		}
		return CLI_NO_WATCH;
	}
	w.call_ms = timeout * 1000;
	w.tty = isatty(STDOUT_FILENO);
	return watch_run(&w);
}

/* ---- dataset wait ------------------------------------------------------------ */

/* "90", "90s", "10m", "2h", "1d", "1h30m" into seconds; 0 or SB_ECONFIG. */
static int parse_duration(const char *s, uint64_t *out)
{
	uint64_t total = 0;
	if (!s || !*s)
		return SB_ECONFIG;
	while (*s) {
		char *end;
		if (*s < '0' || *s > '9')
			return SB_ECONFIG;
		errno = 0;
		unsigned long long n = strtoull(s, &end, 10);
		uint64_t unit; /* seconds */
		switch (*end) {
		case 'd':
			unit = 86400;
			break;
		case 'h':
			unit = 3600;
			break;
		case 'm':
			unit = 60;
			break;
		case 's':
			unit = 1;
			break;
		case '\0':
			if (total)
				return SB_ECONFIG; /* "1h30": 30 what? */
			unit = 1;
			break;
		default:
			return SB_ECONFIG;
		}
		if (*end)
			end++;
		if (errno || n > UINT32_MAX || total + n * unit > UINT32_MAX)
			return SB_ECONFIG;
		total += n * unit;
		s = end;
	}
	*out = total;
	return 0;
}

struct wait {
	const char *name;
	uint64_t need; /* nodes that must have it; 0: every assigned node */
	struct progress prog;
	uint64_t shown;	  /* bytes counted into prog */
	char *version;	  /* the version prog counts */
	uint64_t ready;	  /* nodes ready at the last look */
	struct buf why;	  /* why it is not ready, one line */
	struct buf state; /* the same without the numbers: a line when it changes */
};

static const char *jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

static uint64_t jnum(const json_t *o, const char *key)
{
	return (uint64_t)json_integer_value(json_object_get(o, key));
}

/* Why node n does not have it yet; coarse: without the numbers, which
 * change on every look. */
static void node_why(struct buf *b, const json_t *n, int coarse)
{
	uint64_t have = jnum(n, "blocks_have"), total = jnum(n, "blocks_total");
	const char *err = json_string_value(json_object_get(n, "error"));
	if (b->len)
		buf_append_str(b, ", ");
	if (b->len > WAIT_REASON_MAX) {
		buf_append_str(b, "...");
		return;
	}
	buf_printf(b, "%s ", jstr(n, "node"));
	if (!json_is_true(json_object_get(n, "connected")))
		buf_append_str(b, "not connected to the scheduler");
	else if (err)
		buf_printf(b, "failing: %s", err);
	else if (coarse)
		buf_append_str(b, "fetching");
	else
		buf_printf(b, "fetching (%llu%%, %llu/%llu blocks)",
			   (unsigned long long)(total ? have * 100 / total : 0),
			   (unsigned long long)have, (unsigned long long)total);
}

/* Bytes the nodes that count have: the `need` most advanced ones. */
static uint64_t bytes_have(const json_t *d, size_t need)
{
	size_t i, n = json_array_size(json_object_get(d, "nodes"));
	uint64_t bytes = jnum(d, "bytes"), sum = 0;
	double *frac = xcalloc(n + 1, sizeof *frac);
	json_t *node;
	json_array_foreach(json_object_get(d, "nodes"), i, node)
	{
		uint64_t total = jnum(node, "blocks_total");
		frac[i] = json_is_true(json_object_get(node, "published")) ? 1.0
			  : total ? (double)jnum(node, "blocks_have") / (double)total
				  : 0.0;
	}
	for (size_t k = 0; k < need && k < n; k++) {
		size_t best = k;
		for (i = k + 1; i < n; i++)
			if (frac[i] > frac[best])
				best = i;
		double t = frac[k];
		frac[k] = frac[best];
		frac[best] = t;
		sum += (uint64_t)(frac[k] * (double)bytes);
	}
	free(frac);
	return sum;
}

/* Ready (1) or not (0) from dataset d's status; w->why says why not. */
static int wait_judge(struct wait *w, const json_t *d)
{
	size_t i, assigned = json_array_size(json_object_get(d, "nodes"));
	uint64_t ready = 0, need = w->need ? w->need : assigned;
	const char *derr = json_string_value(json_object_get(d, "error"));
	json_t *n;
	w->why.len = 0;
	w->state.len = 0;
	if (json_is_null(json_object_get(d, "version"))) {
		buf_printf(&w->why, "the scheduler has no version of it yet%s%s",
			   derr ? ": " : " (listing its source)", derr ? derr : "");
		buf_append_str(&w->state, buf_cstr(&w->why));
		return 0;
	}
	json_array_foreach(json_object_get(d, "nodes"), i, n)
	{
		if (json_is_true(json_object_get(n, "published")))
			ready++;
	}
	if (assigned == 0) {
		buf_append_str(&w->why, "no node matches its selector");
		buf_append_str(&w->state, buf_cstr(&w->why));
		return 0;
	}
	if (ready >= need)
		return 1;
	if (need > assigned)
		buf_printf(&w->why, "%zu of %llu nodes it needs are assigned it; ", assigned,
			   (unsigned long long)need);
	struct buf nodes = BUF_INIT, coarse = BUF_INIT;
	json_array_foreach(json_object_get(d, "nodes"), i, n)
	{
		if (!json_is_true(json_object_get(n, "published"))) {
			node_why(&nodes, n, 0);
			node_why(&coarse, n, 1);
		}
	}
	buf_printf(&w->state, "%s%s", buf_cstr(&w->why), buf_cstr(&coarse));
	buf_printf(&w->why, "ready on %llu of %llu; %s", (unsigned long long)ready,
		   (unsigned long long)need, buf_cstr(&nodes));
	buf_printf(&w->state, " (ready on %llu of %llu)", (unsigned long long)ready,
		   (unsigned long long)need);
	buf_close(&nodes);
	buf_close(&coarse);
	return 0;
}

/* Progress of the nodes that count, and a line for each that became ready. */
static void wait_progress(struct wait *w, const json_t *d)
{
	size_t i, assigned = json_array_size(json_object_get(d, "nodes"));
	uint64_t need = w->need ? w->need : assigned, ready = 0;
	const char *ver = json_string_value(json_object_get(d, "version"));
	json_t *n;
	if (!ver)
		return;
	if (!w->version || strcmp(w->version, ver)) {
		/* A new version starts over, from what its nodes already have:
		 * that is no rate. */
		free(w->version);
		w->version = xstrdup(ver);
		w->shown = w->prog.done = w->prog.rate_done = bytes_have(d, need);
	}
	json_array_foreach(json_object_get(d, "nodes"), i, n)
	{
		ready += json_is_true(json_object_get(n, "published"));
	}
	/* On a terminal, above the bar (elsewhere the waiting lines say it);
	 * once ready, the result says it. */
	if (ready != w->ready && ready < need && w->prog.tty)
		progress_note(&w->prog, "dataset %s: ready on %llu of %llu %s", w->name,
			      (unsigned long long)ready, (unsigned long long)need,
			      progress_noun(need, "node", "nodes"));
	w->ready = ready;
	char label[64];
	snprintf(label, sizeof label, "%.24s %llu/%llu nodes", w->name, (unsigned long long)ready,
		 (unsigned long long)need);
	progress_set_label(&w->prog, label);
	progress_set_total(&w->prog, jnum(d, "bytes") * need);
	uint64_t have = bytes_have(d, need);
	progress_add(&w->prog, have > w->shown ? have - w->shown : 0);
	if (have > w->shown)
		w->shown = have;
}

/* The dataset named w->name in a status document, or NULL. */
static const json_t *find_dataset(const json_t *doc, const char *name)
{
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(doc, "datasets"), i, d)
	{
		if (!strcmp(jstr(d, "name"), name))
			return d;
	}
	return NULL;
}

static int wait_options(struct config *cfg, int npos, struct wait *w, uint64_t *timeout_s,
			int *json)
{
	int all = 0;
	const char *t = config_get(cfg, "timeout");
	if (npos != 1) {
		cli_error("dataset wait takes one dataset NAME");
		return EXIT_USAGE;
	}
	static const char *const required[] = {"scheduler", "token-file"};
	for (size_t i = 0; i < 2; i++)
		if (!config_get(cfg, required[i]) || !config_get(cfg, required[i])[0]) {
			cli_error("dataset wait: --%s is required", required[i]);
			return EXIT_USAGE;
		}
	if (config_get_bool(cfg, "json", json) < 0 || config_get_bool(cfg, "all", &all) < 0 ||
	    (config_get(cfg, "nodes") &&
	     config_get_u64(cfg, "nodes", 1, UINT32_MAX, &w->need) < 0)) {
		cli_error("%s", cfg->error);
		return EXIT_USAGE;
	}
	if (all && w->need) {
		cli_error("dataset wait: --nodes N and --all exclude each other");
		return EXIT_USAGE;
	}
	if (parse_duration(t, timeout_s) < 0) {
		cli_error("--timeout: '%s' is not a duration (SECONDS, or 90s, 10m, 2h, 1d)", t);
		return EXIT_USAGE;
	}
	return 0;
}

/* One look: 1 ready, 0 not (w->why says why), or -1 on a failure that
 * waiting cannot mend (*fail says it). *last keeps the dataset's last
 * status. */
static int wait_look(struct config *cfg, struct wait *w, uint64_t call_ms, json_t **last,
		     char **fail)
{
	json_t *doc = NULL;
	char *error = NULL;
	int permanent = 0, ready = 0;
	int err = cli_admin_status(cfg, w->name, call_ms, &doc, &error, &permanent);
	const json_t *d = doc ? find_dataset(doc, w->name) : NULL;
	if (err < 0 && permanent) {
		*fail = xasprintf("dataset wait %s: %s", w->name, error);
		ready = -1;
	} else if (err < 0 && err == -ETIMEDOUT && call_ms < WAIT_CALL_MS && w->why.len) {
		/* Cut short by the deadline: the last answer still says why. */
	} else if (err < 0) {
		/* The scheduler may be restarting: ask again until the timeout. */
		w->why.len = w->state.len = 0;
		buf_append_str(&w->why, error);
		buf_append_str(&w->state, error);
	} else if (!d) {
		*fail = xasprintf("dataset wait %s: no such dataset%s", w->name,
				  *last ? " (it was removed)" : "");
		ready = -1;
	} else {
		ready = wait_judge(w, d);
		wait_progress(w, d);
		json_decref(*last);
		*last = json_incref((json_t *)d);
	}
	json_decref(doc);
	free(error);
	return ready;
}

/* Ask until ready, the timeout, or a signal. */
static int wait_loop(struct config *cfg, struct wait *w, uint64_t timeout_s, int json)
{
	uint64_t deadline = progress_now_ns() + timeout_s * 1000000000ull;
	json_t *last = NULL;
	char *state_seen = NULL, *fail = NULL;
	int rc = EXIT_FAIL;
	for (;;) {
		uint64_t now = progress_now_ns(), call_ms = WAIT_CALL_MS;
		if (timeout_s && now < deadline && (deadline - now) / 1000000ull < call_ms)
			call_ms = (deadline - now) / 1000000ull + 1;
		int ready = wait_look(cfg, w, call_ms, &last, &fail);
		if (ready) {
			rc = ready > 0 ? EXIT_OK : EXIT_FAIL;
			break;
		}
		/* Off a terminal, a line whenever the state changes. */
		if (!w->prog.tty && (!state_seen || strcmp(state_seen, buf_cstr(&w->state)))) {
			free(state_seen);
			state_seen = xstrdup(buf_cstr(&w->state));
			progress_note(&w->prog, "dataset %s: waiting: %s", w->name,
				      buf_cstr(&w->why));
		}
		if (cli_stop_requested()) {
			fail = xasprintf("dataset wait %s: interrupted: %s", w->name,
					 buf_cstr(&w->why));
			break;
		}
		now = progress_now_ns();
		if (timeout_s && now >= deadline) {
			char dur[32];
			fail = xasprintf("dataset wait %s: not ready after %s: %s", w->name,
					 progress_fmt_duration(timeout_s, dur, sizeof dur),
					 buf_cstr(&w->why));
			break;
		}
		uint64_t left = timeout_s ? (deadline - now) / 1000000ull : WAIT_POLL_MS;
		nap(left < WAIT_POLL_MS ? left : WAIT_POLL_MS);
	}
	progress_close(&w->prog); /* the bar ends its line before anything else */
	if (fail)
		cli_error("%s", fail);
	free(fail);
	if (rc == EXIT_OK && !json) {
		char *ver = xstrndup(jstr(last, "version"), 12);
		printf("dataset %s: version %s ready on %llu %s\n", w->name, ver,
		       (unsigned long long)w->ready, progress_noun(w->ready, "node", "nodes"));
		free(ver);
	}
	if (json && last)
		print_json_line(last);
	json_decref(last);
	free(state_seen);
	return rc;
}

int cmd_dataset_wait(int argc, char **argv)
{
	struct config cfg;
	char **pos = NULL;
	int npos = 0, rc, json = 0;
	uint64_t timeout_s = 0;
	struct wait w = {0};
	if ((rc = cli_parse(&cfg, "dataset wait", argc, argv, &pos, &npos)))
		goto out;
	if ((rc = wait_options(&cfg, npos, &w, &timeout_s, &json))) {
		cli_usage("dataset wait");
		goto out;
	}
	w.name = pos[0];
	cli_catch_stop();
	progress_init(&w.prog, w.name, 0, 1);
	rc = wait_loop(&cfg, &w, timeout_s, json);
	free(w.version);
	buf_close(&w.why);
	buf_close(&w.state);
out:
	free(pos);
	config_close(&cfg);
	return rc;
}
