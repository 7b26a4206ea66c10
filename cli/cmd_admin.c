/* The admin commands that talk to the scheduler: dataset add|update|ls|rm,
 * node ls|rm, and status --scheduler (the cluster view). Each dials the
 * scheduler with the join token on a short-lived loop, sends one Admin
 * message and prints the reply: a table, or with --json the reply's JSON
 * document as the last line. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/admin_call.h"
#include "cli/cli.h"
#include "common/buf.h"
#include "common/net/conn.h"
#include "common/err.h"
#include "common/jsonfmt.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/progress.h"
#include "common/net/wire.h"
#include "cli/dataset_filter.h"

#define ADMIN_KEYS                                                                             \
	CLI_COMMON_KEYS,                                                                       \
	    {"scheduler",                                                                      \
	     NULL,                                                                             \
	     0,                                                                                \
	     "the scheduler's address; with several schedulers on etcd, all of them, "         \
	     "comma-separated (the leader is followed)",                                       \
	     "HOST:PORT[,...]",                                                                \
	     0},                                                                               \
	    {"token-file", NULL, 0, "the cluster's join token (DATA/join-token)", "FILE", 0},  \
	    {"json", "false", 1, "print the JSON reply as the last line", NULL, 0},            \
	    {"timeout", "120", 0, "seconds to wait for the scheduler's answer", "SECONDS", 0}, \
	{                                                                                      \
		"no-encrypt", "false", 1, "authenticate but send in the clear", NULL, 0        \
	}

/* --include/--exclude of a dataset: kept with its definition. */
#define DATASET_FILTER_KEYS                                                                    \
	{"include",                                                                            \
	 NULL,                                                                                 \
	 CONFIG_LIST,                                                                          \
	 "take the paths matching this glob (repeatable; first matching rule wins, as rsync)", \
	 "PATTERN",                                                                            \
	 0},                                                                                   \
	{                                                                                      \
		"exclude", NULL, CONFIG_LIST,                                                  \
		    "leave out the paths matching this glob "                                  \
		    "(repeatable)",                                                            \
		    "PATTERN", 0                                                               \
	}

const struct config_key cli_admin_keys[] = {
    ADMIN_KEYS,
    {NULL, NULL, 0, NULL, NULL, 0},
};

const struct config_key cli_dataset_add_keys[] = {
    ADMIN_KEYS,
    {"selector", "", 0, "the nodes whose labels match get the dataset (empty: every node)",
     "k=v[,k=v]", 0},
    {"block-size", "4MiB", 0,
     "block size (power of two, 4KiB-256MiB; at most 4194304 blocks per dataset)", "SIZE", 0},
    {"replace", "false", 1, "redefine a dataset of that NAME (without: refused)", NULL, 0},
    CLI_SOURCE_DATASET_KEYS,
    DATASET_FILTER_KEYS,
    {NULL, NULL, 0, NULL, NULL, 0},
};

const struct config_key cli_dataset_update_keys[] = {
    ADMIN_KEYS,
    {"source", NULL, 0, "a new source", "SOURCE", 0},
    {"selector", NULL, 0, "a new selector (\"\": every node)", "k=v[,k=v]", 0},
    {"block-size", NULL, 0, "a new block size (power of two, 4KiB-256MiB)", "SIZE", 0},
    DATASET_FILTER_KEYS,
    {"no-filters", "false", 1, "drop the dataset's --include/--exclude rules", NULL, 0},
    {NULL, NULL, 0, NULL, NULL, 0},
};

/* ---- output ------------------------------------------------------------------ */

/* A table printed with columns padded to their widest cell. */
struct table {
	size_t ncols;
	struct buf cells; /* char * per cell, row after row */
};

static void table_add(struct table *t, const char *cell)
{
	char *c = xstrdup(cell ? cell : "");
	buf_append(&t->cells, &c, sizeof c);
}

static void table_print(struct table *t)
{
	char **cells = (char **)t->cells.ptr;
	size_t n = t->cells.len / sizeof *cells, width[16] = {0};
	for (size_t i = 0; i < n; i++)
		if (strlen(cells[i]) > width[i % t->ncols])
			width[i % t->ncols] = strlen(cells[i]);
	for (size_t i = 0; i < n; i++) {
		int last = i % t->ncols == t->ncols - 1;
		printf("%-*s%s", last ? 0 : (int)width[i % t->ncols], cells[i], last ? "\n" : "  ");
		free(cells[i]);
	}
	buf_close(&t->cells);
}

static const char *jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

static uint64_t jnum(const json_t *o, const char *key)
{
	return (uint64_t)json_integer_value(json_object_get(o, key));
}

static char *labels_text(const json_t *o)
{
	struct buf b = BUF_INIT;
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)o, k, v)
	{
		buf_printf(&b, "%s%s=%s", b.len ? "," : "", k, json_string_value(v));
	}
	return b.len ? buf_steal(&b) : xstrdup("-");
}

static char *short_id(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? xstrndup(s, 12) : xstrdup("-");
}

static void print_datasets(const json_t *doc)
{
	struct table t = {9, BUF_INIT};
	const char *head[] = {"NAME",  "VERSION",  "FILES",  "SIZE",  "KNOWN",
			      "NODES", "SELECTOR", "SOURCE", "FILTER"};
	size_t i;
	json_t *d;
	for (i = 0; i < 9; i++)
		table_add(&t, head[i]);
	json_array_foreach(json_object_get(doc, "datasets"), i, d)
	{
		char num[32], size[32], known[32], nodes[48];
		char *ver = short_id(d, "version"),
		     *sel = labels_text(json_object_get(d, "selector")),
		     *flt = cli_filter_text(json_object_get(d, "filter"));
		uint64_t blocks = jnum(d, "blocks");
		snprintf(num, sizeof num, "%llu", (unsigned long long)jnum(d, "files"));
		snprintf(
		    known, sizeof known, "%llu%%",
		    (unsigned long long)(blocks ? jnum(d, "blocks_known") * 100 / blocks : 100));
		snprintf(nodes, sizeof nodes, "%llu/%llu",
			 (unsigned long long)jnum(d, "nodes_complete"),
			 (unsigned long long)jnum(d, "nodes_assigned"));
		const char *cells[] = {jstr(d, "name"),
				       ver,
				       num,
				       progress_fmt_bytes(jnum(d, "bytes"), size, sizeof size),
				       known,
				       nodes,
				       sel,
				       jstr(d, "source"),
				       flt};
		for (size_t c = 0; c < 9; c++)
			table_add(&t, cells[c]);
		free(ver);
		free(sel);
		free(flt);
	}
	table_print(&t);
}

static void print_nodes(const json_t *doc)
{
	struct table t = {7, BUF_INIT};
	const char *head[] = {"NAME", "STATE", "ADDR", "LABELS", "DISK FREE", "HEARD", "DATASETS"};
	size_t i, j;
	json_t *n, *d;
	for (i = 0; i < 7; i++)
		table_add(&t, head[i]);
	json_array_foreach(json_object_get(doc, "nodes"), i, n)
	{
		char free_s[32], heard[32] = "-";
		char *labels = labels_text(json_object_get(n, "labels"));
		struct buf ds = BUF_INIT;
		json_t *secs = json_object_get(n, "seconds_since_heartbeat");
		if (json_is_number(secs))
			snprintf(heard, sizeof heard, "%.0fs ago", json_number_value(secs));
		json_array_foreach(json_object_get(n, "datasets"), j, d)
		{
			buf_printf(&ds, "%s%s", ds.len ? "," : "", json_string_value(d));
		}
		const char *cells[] = {
		    jstr(n, "name"),
		    json_is_true(json_object_get(n, "connected")) ? "connected" : "gone",
		    jstr(n, "addr"),
		    labels,
		    progress_fmt_bytes(jnum(n, "disk_free"), free_s, sizeof free_s),
		    heard,
		    ds.len ? buf_cstr(&ds) : "-"};
		for (size_t c = 0; c < 7; c++)
			table_add(&t, cells[c]);
		free(labels);
		buf_close(&ds);
	}
	table_print(&t);
}

static void print_dataset_status(const json_t *d)
{
	struct table t = {8, BUF_INIT};
	const char *head[] = {"NODE",	    "STATE",  "BLOCKS",	 "FROM ORIGIN",
			      "FROM PEERS", "REUSED", "REFETCH", "ERROR"};
	const json_t *tot = json_object_get(d, "totals");
	char a[32], b[32], c[32];
	size_t i;
	json_t *n;
	char *ver = short_id(d, "version");
	printf("%s  version %s  hashes %llu/%llu  nodes %llu/%llu complete  origin %s of %s "
	       "(%.2fx)  peers %s\n",
	       jstr(d, "name"), ver, (unsigned long long)jnum(d, "blocks_known"),
	       (unsigned long long)jnum(d, "blocks"), (unsigned long long)jnum(d, "nodes_complete"),
	       (unsigned long long)jnum(d, "nodes_assigned"),
	       progress_fmt_bytes(jnum(tot, "bytes_from_origin"), a, sizeof a),
	       progress_fmt_bytes(jnum(d, "bytes"), b, sizeof b),
	       json_number_value(json_object_get(tot, "origin_copies")),
	       progress_fmt_bytes(jnum(tot, "bytes_from_peers"), c, sizeof c));
	free(ver);
	for (i = 0; i < 8; i++)
		table_add(&t, head[i]);
	json_array_foreach(json_object_get(d, "nodes"), i, n)
	{
		char blocks[48], o[32], p[32], r[32], refetch[48];
		const json_t *rf = json_object_get(n, "refetch");
		snprintf(blocks, sizeof blocks, "%llu/%llu",
			 (unsigned long long)jnum(n, "blocks_have"),
			 (unsigned long long)jnum(n, "blocks_total"));
		snprintf(refetch, sizeof refetch, "%llu/%llu",
			 (unsigned long long)jnum(rf, "bad_peer"),
			 (unsigned long long)jnum(rf, "no_peer"));
		const char *state = json_is_true(json_object_get(n, "published"))   ? "published"
				    : json_is_true(json_object_get(n, "connected")) ? "fetching"
										    : "gone";
		const char *cells[] = {
		    jstr(n, "node"),
		    state,
		    blocks,
		    progress_fmt_bytes(jnum(n, "bytes_from_origin"), o, sizeof o),
		    progress_fmt_bytes(jnum(n, "bytes_from_peers"), p, sizeof p),
		    progress_fmt_bytes(jnum(n, "bytes_reused"), r, sizeof r),
		    refetch,
		    json_is_string(json_object_get(n, "error")) ? jstr(n, "error") : "-"};
		for (size_t col = 0; col < 8; col++)
			table_add(&t, cells[col]);
	}
	if (json_array_size(json_object_get(d, "nodes")))
		table_print(&t);
	else
		printf("  (no node matches its selector)\n");
	for (i = 0; i < t.cells.len / sizeof(char *); i++)
		free(((char **)t.cells.ptr)[i]);
	buf_close(&t.cells);
}

void cli_print_cluster_status(const json_t *doc)
{
	size_t i;
	json_t *d;
	const json_t *nodes = json_object_get(doc, "nodes");
	printf("%llu of %llu nodes connected\n", (unsigned long long)jnum(nodes, "connected"),
	       (unsigned long long)jnum(nodes, "total"));
	json_array_foreach(json_object_get(doc, "datasets"), i, d)
	{
		printf("\n");
		print_dataset_status(d);
	}
}

static void print_add(const json_t *d)
{
	char size[32];
	char *ver = short_id(d, "version");
	size_t n = json_array_size(json_object_get(d, "nodes"));
	uint64_t files = jnum(d, "files");
	printf("dataset %s: version %s%s, %llu %s, %s; assigned to %zu %s\n", jstr(d, "name"), ver,
	       json_is_true(json_object_get(d, "changed")) ? "" : " (unchanged)",
	       (unsigned long long)files, progress_noun(files, "file", "files"),
	       progress_fmt_bytes(jnum(d, "bytes"), size, sizeof size), n,
	       progress_noun(n, "node", "nodes"));
	free(ver);
}

/* A changed value: a string as it is, a block size in bytes as a size. */
static char *change_text(const json_t *v)
{
	char size[32];
	return json_is_string(v) ? xstrdup(json_string_value(v))
				 : xstrdup(progress_fmt_bytes((uint64_t)json_integer_value(v), size,
							      sizeof size));
}

static void print_update(const json_t *d)
{
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(d, "changes"), i, c)
	{
		char *old = change_text(json_object_get(c, "old"));
		char *now = change_text(json_object_get(c, "new"));
		printf("dataset %s: %s %s -> %s\n", jstr(d, "name"),
		       !strcmp(jstr(c, "field"), "block_size") ? "block size" : jstr(c, "field"),
		       old, now);
		free(old);
		free(now);
	}
	if (!json_array_size(json_object_get(d, "changes")))
		printf("dataset %s: unchanged\n", jstr(d, "name"));
	else
		print_add(d);
}

static void print_node_rm(const json_t *d)
{
	printf("node %s removed\n", jstr(d, "name"));
}

static void print_rm(const json_t *d)
{
	size_t n = json_array_size(json_object_get(d, "nodes"));
	printf("dataset %s removed; %zu %s\n", jstr(d, "name"), n,
	       n == 1 ? "node drops it" : "nodes drop it");
}

/* ---- commands ---------------------------------------------------------------- */

struct admin_cmd {
	const char *name; /* in the command table, also for messages */
	int min_pos, max_pos;
	Syncbit__AdminOp op;
	void (*print)(const json_t *doc);
};

static void free_selector(Syncbit__Admin *a)
{
	for (size_t i = 0; i < a->n_selector; i++) {
		free(a->selector[i]->key);
		free(a->selector[i]->value);
		free(a->selector[i]);
	}
	free(a->selector);
}

/* "k=v,k=v" into a->selector; 0 or EXIT_USAGE after saying why. */
static int parse_selector(const char *s, Syncbit__Admin *a)
{
	const char *p = s;
	while (p && *p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		if (!eq || eq == p) {
			cli_error("--selector: '%.*s' is not k=v", (int)len, p);
			return EXIT_USAGE;
		}
		Syncbit__Label *l = xcalloc(1, sizeof *l);
		syncbit__label__init(l);
		l->key = xstrndup(p, (size_t)(eq - p));
		l->value = xstrndup(eq + 1, len - (size_t)(eq - p) - 1);
		a->selector = xrealloc(a->selector, (a->n_selector + 1) * sizeof *a->selector);
		a->selector[a->n_selector++] = l;
		p = end ? end + 1 : NULL;
	}
	return 0;
}

/* A relative path means the caller's directory, as for pull. */
static const char *request_source(const char *src, char **abs_source)
{
	size_t head = strcspn(src, "/");
	if (src[0] && src[0] != '/' && !memchr(src, ':', head))
		return *abs_source = cli_abs_path(src);
	return src;
}

static int request_block_size(struct config *cfg, uint32_t *out)
{
	uint64_t bs;
	if (config_get_size(cfg, "block-size", BLOCK_SIZE_MIN, BLOCK_SIZE_MAX, &bs) < 0) {
		cli_error("%s", cfg->error);
		return EXIT_USAGE;
	}
	if (manifest_check_block_size(bs) < 0) {
		cli_error("--block-size: must be a power of two from 4KiB to 256MiB");
		return EXIT_USAGE;
	}
	*out = (uint32_t)bs;
	return 0;
}

/* dataset update: only what is given. */
static int build_update(struct config *cfg, Syncbit__Admin *a, char **abs_source,
			struct cli_dataset_filter *rf)
{
	const char *src = config_get(cfg, "source"), *sel = config_get(cfg, "selector");
	int rc;
	if (src && !src[0]) {
		cli_error("dataset update: --source needs a SOURCE");
		return EXIT_USAGE;
	}
	if (src && (rc = cli_check_source("dataset update", src)))
		return rc;
	if (src)
		a->source = (char *)request_source(src, abs_source);
	if (config_get(cfg, "block-size") && (rc = request_block_size(cfg, &a->block_size)))
		return rc;
	if ((rc = cli_dataset_update_filter(cfg, a, rf)))
		return rc;
	a->set_selector = sel != NULL;
	return parse_selector(sel, a);
}

/* Fill the request from the flags and arguments; 0 or EXIT_USAGE. */
static int build_request(const struct admin_cmd *cmd, struct config *cfg, char **pos, int npos,
			 Syncbit__Admin *a, char **abs_source, struct cli_dataset_filter *rf)
{
	int rc;
	a->op = cmd->op;
	if (npos > 0)
		a->name = pos[0];
	if (cmd->op == SYNCBIT__ADMIN_OP__ADMIN_DATASET_UPDATE)
		return build_update(cfg, a, abs_source, rf);
	if (cmd->op != SYNCBIT__ADMIN_OP__ADMIN_DATASET_ADD)
		return 0;
	int replace = 0;
	if ((rc = cli_check_source("dataset add", pos[1])))
		return rc;
	a->source = (char *)request_source(pos[1], abs_source);
	if ((rc = request_block_size(cfg, &a->block_size)))
		return rc;
	if (config_get_bool(cfg, "replace", &replace) < 0) {
		cli_error("%s", cfg->error);
		return EXIT_USAGE;
	}
	a->replace = replace;
	char *with;
	if ((rc = cli_source_dataset(cfg, a->source, &with)))
		return rc;
	if (with) {
		free(*abs_source);
		a->source = *abs_source = with;
	}
	if ((rc = cli_dataset_filter(cfg, a->source, a, rf)))
		return rc;
	return parse_selector(config_get(cfg, "selector"), a);
}

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
	cli_error(fmt, arg);
	cli_usage(cmd);
	return EXIT_USAGE;
}

static int check_args(const struct admin_cmd *cmd, struct config *cfg, int npos, int *json)
{
	if (npos < cmd->min_pos || npos > cmd->max_pos)
		return usage_error(cmd->name, "%s: wrong number of arguments", cmd->name);
	if (!config_get(cfg, "scheduler") || !config_get(cfg, "scheduler")[0])
		return usage_error(cmd->name, "%s: --scheduler HOST:PORT is required", cmd->name);
	if (!config_get(cfg, "token-file") || !config_get(cfg, "token-file")[0])
		return usage_error(cmd->name, "%s: --token-file FILE is required", cmd->name);
	if (config_get_bool(cfg, "json", json) < 0)
		return usage_error(cmd->name, "%s", cfg->error);
	return 0;
}

static int admin_run(const struct admin_cmd *cmd, int argc, char **argv)
{
	struct config cfg;
	char **pos = NULL;
	int npos = 0, rc, json = 0;
	Syncbit__Admin a = SYNCBIT__ADMIN__INIT;
	struct call k = {.what = cmd->name};
	json_t *doc = NULL;
	char *abs_source = NULL;
	struct cli_dataset_filter rf = {{0}, NULL};
	if ((rc = cli_parse(&cfg, cmd->name, argc, argv, &pos, &npos)) ||
	    (rc = check_args(cmd, &cfg, npos, &json)) ||
	    (rc = build_request(cmd, &cfg, pos, npos, &a, &abs_source, &rf)))
		goto out;
	if (cmd->op == SYNCBIT__ADMIN_OP__ADMIN_STATUS &&
	    (rc = cli_status_watch(&cfg, a.name, json, 1)) != CLI_NO_WATCH)
		goto out;
	k.addr = config_get(&cfg, "scheduler");
	if ((rc = admin_call_scheduler(&k, &cfg, &a)))
		goto out;
	doc = json_loads(k.reply->json ? k.reply->json : "", 0, NULL);
	if (!doc) {
		cli_error("%s: scheduler %s: malformed reply", cmd->name, k.addr);
		rc = EXIT_FAIL;
	} else if ((a.n_filter || a.set_filter) && !json_object_get(doc, "filter")) {
		/* A scheduler from before the rules skips them. */
		cli_error("%s: scheduler %s does not know --include/--exclude; update it (dataset "
			  "%s is defined without them)",
			  cmd->name, k.addr, a.name);
		rc = EXIT_FAIL;
	} else if (json) {
		char *s = jsonfmt_dumps(doc);
		printf("%s\n", s);
		free(s);
	} else {
		cmd->print(doc);
	}
out:
	json_decref(doc);
	admin_call_close(&k);
	free_selector(&a);
	cli_dataset_filter_close(&a, &rf);
	free(abs_source);
	free(pos);
	config_close(&cfg);
	return rc;
}

#define ADMIN_OP(x) SYNCBIT__ADMIN_OP__ADMIN_##x

int cmd_dataset_add(int argc, char **argv)
{
	static const struct admin_cmd c = {"dataset add", 2, 2, ADMIN_OP(DATASET_ADD), print_add};
	return admin_run(&c, argc, argv);
}

int cmd_dataset_update(int argc, char **argv)
{
	static const struct admin_cmd c = {"dataset update", 1, 1, ADMIN_OP(DATASET_UPDATE),
					   print_update};
	return admin_run(&c, argc, argv);
}

int cmd_dataset_ls(int argc, char **argv)
{
	static const struct admin_cmd c = {"dataset ls", 0, 0, ADMIN_OP(DATASET_LS),
					   print_datasets};
	return admin_run(&c, argc, argv);
}

int cmd_dataset_rm(int argc, char **argv)
{
	static const struct admin_cmd c = {"dataset rm", 1, 1, ADMIN_OP(DATASET_RM), print_rm};
	return admin_run(&c, argc, argv);
}

int cmd_node_ls(int argc, char **argv)
{
	static const struct admin_cmd c = {"node ls", 0, 0, ADMIN_OP(NODE_LS), print_nodes};
	return admin_run(&c, argc, argv);
}

int cmd_node_rm(int argc, char **argv)
{
	static const struct admin_cmd c = {"node rm", 1, 1, ADMIN_OP(NODE_RM), print_node_rm};
	return admin_run(&c, argc, argv);
}

/* status with --scheduler on the command line asks the scheduler; without,
 * the local agent (a SYNCBIT_SCHEDULER in a daemon's environment must not
 * send status elsewhere). */
int cmd_status(int argc, char **argv)
{
	static const struct admin_cmd c = {"status", 0, 1, ADMIN_OP(STATUS),
					   cli_print_cluster_status};
	for (int i = 0; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--scheduler") || !strncmp(argv[i], "--scheduler=", 12))
			return admin_run(&c, argc, argv);
	return cmd_agent_status(argc, argv);
}
