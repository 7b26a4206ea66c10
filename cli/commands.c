/* The command table and what every command shares: parsing its flags,
 * its usage line, the one-line error, the data directory. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/path.h"
#include "common/uri.h"

#define CONN "--scheduler HOST:PORT --token-file FILE [--json]"

const struct cli_cmd cli_commands[] = {
    {"pull",
     "pull SOURCE [-o|--to DIR] [--data DIR] [--json] [-j|--jobs N] [--block-size SIZE] "
     "[--cache-size SIZE] [--include PATTERN] [--exclude PATTERN] [-q] [--socket PATH] "
     "[--standalone]\n"
     "  syncbit pull NAME [--socket PATH] [--no-wait] [--json]",
     "copy a source into DIR (through the local agent when one runs, else through the "
     "local cache), or wait for dataset NAME from the local agent",
     cli_pull_keys, cmd_pull},
    {"sync",
     "sync SRC DST [--schedule CRON] [--run-on-start] [--once] [--delete] [--data DIR] "
     "[--include PATTERN] [--exclude PATTERN] [--layout plain|hf-cache|triton] [--json]\n"
     "  syncbit sync --list FILE DST [...]  "
     "(env SRC, DST, CRON_SCHEDULE, RUN_ON_START, CRONTAB, CRONTAB_FILE)\n"
     "  syncbit sync oci://REGISTRY/REPO oci://REGISTRY/REPO[:TAG] [--tag-regex ERE] "
     "[--platform OS/ARCH|all]... [--all] [--schedule CRON] [--once] [--json]",
     "pull SRC into DST on a cron schedule, one run at a time (or copy images between "
     "registries)",
     cli_sync_keys, cmd_sync},
    {"daemon",
     "daemon --scheduler HOST:PORT[,...] --listen HOST:PORT --data DIR --target DIR --node NAME "
     "--labels k=v[,k=v] --token-file FILE [--socket PATH] [--http HOST:PORT] "
     "[--scheduler-grace SECONDS] [--no-encrypt] [--registry-mirror HOST:PORT] "
     "[--registry-mirror-wait SECONDS] [--registry-mirror-pull [--registry-mirror-pull-from "
     "REGISTRY[,...]] [--registry-mirror-pull-wait SECONDS] [--registry-mirror-platform "
     "OS/ARCH]] [SOURCE FLAGS]",
     "the agent of a node: fetches its datasets from peers and the origin", cli_daemon_keys,
     cmd_daemon},
    {"scheduler",
     "scheduler --listen HOST:PORT --data DIR [--http HOST:PORT] [--refresh SECONDS] "
     "[--no-encrypt] [--etcd URL[,URL...] [--etcd-lease SECONDS] [ETCD TLS/AUTH FLAGS]] "
     "[SOURCE FLAGS]",
     "the cluster's scheduler: nodes, datasets, assignments", cli_scheduler_keys, cmd_scheduler},
    {"dataset add",
     "dataset add NAME SOURCE [--selector k=v[,k=v]] [--block-size SIZE] [--platform OS/ARCH]... "
     "[--tag-regex ERE] [--include PATTERN] [--exclude PATTERN] [--replace] " CONN,
     "define a dataset; an existing NAME is changed only with --replace", cli_dataset_add_keys,
     cmd_dataset_add},
    {"dataset update",
     "dataset update NAME [--source SOURCE] [--selector k=v[,k=v]] [--block-size SIZE] "
     "[--include PATTERN] [--exclude PATTERN] [--no-filters] " CONN,
     "change what is given of a dataset's definition", cli_dataset_update_keys, cmd_dataset_update},
    {"dataset wait",
     "dataset wait NAME [--nodes N|--all] [--timeout DURATION] --scheduler HOST:PORT "
     "--token-file FILE [--json]",
     "wait until NAME's current version is ready on its nodes", cli_dataset_wait_keys,
     cmd_dataset_wait},
    {"dataset ls", "dataset ls " CONN, "list the datasets", cli_admin_keys, cmd_dataset_ls},
    {"dataset rm", "dataset rm NAME " CONN, "remove a dataset from every node", cli_admin_keys,
     cmd_dataset_rm},
    {"node ls", "node ls " CONN, "list the nodes", cli_admin_keys, cmd_node_ls},
    {"node rm", "node rm NAME " CONN, "forget a node that left for good", cli_admin_keys,
     cmd_node_rm},
    {"status",
     "status [--socket PATH] [-w|--watch [--interval SECONDS]] [--json]\n"
     "  syncbit status --scheduler HOST:PORT --token-file FILE [NAME] [-w|--watch "
     "[--interval SECONDS]] [--json]",
     "this node's agent and datasets, or with --scheduler the cluster's", cli_status_keys,
     cmd_status},
    {"ready", "ready NAME [--socket PATH] [--wait [--timeout SECONDS]] [--json]",
     "exit 0 when dataset NAME is complete and verified on this node", cli_ready_keys, cmd_ready},
    {"verify", "verify DIR|NAME [--data DIR] [--json]",
     "re-hash a pulled dataset against its manifest", cli_verify_keys, cmd_verify},
    {"rm", "rm NAME|DIR [--purge] [--socket PATH] [--data DIR] [--json]",
     "forget a pull (through the running agent, or in the data directory): unpin its objects "
     "(--purge: evict them too)",
     cli_rm_keys, cmd_rm},
    {"cache ls", "cache ls [--data DIR] [--json]",
     "the pulls a data directory holds, their pins, and what gc would free", cli_cache_ls_keys,
     cmd_cache_ls},
    {"gc", "gc [--cache-size SIZE] [--stale] [--data DIR] [--json]",
     "evict unpinned objects (all of them without --cache-size)", cli_gc_keys, cmd_gc},
    {"containerd-hosts",
     "containerd-hosts --dir DIR --mirror URL[,URL] [--insecure-registry HOST[:PORT],...] "
     "REGISTRY...",
     "write containerd hosts.toml files pointing at the agent's registry mirror", cli_hosts_keys,
     cmd_containerd_hosts},
    {"version", "version", "the version, git commit and libraries", NULL, cmd_version},
    {"completion", "completion bash|zsh", "a shell completion script", NULL, cmd_completion},
    {"man", "man", "the manual page (roff)", NULL, cmd_man},
    {"help", "help [COMMAND]", "this list, or a command's flags", NULL, cmd_help},
    {NULL, NULL, NULL, NULL, NULL},
};

const struct cli_cmd *cli_command(const char *name)
{
	for (const struct cli_cmd *c = cli_commands; c->name; c++)
		if (!strcmp(c->name, name))
			return c;
	return NULL;
}

int cli_is_group(const char *name)
{
	size_t n = strlen(name);
	for (const struct cli_cmd *c = cli_commands; c->name; c++)
		if (!strncmp(c->name, name, n) && c->name[n] == ' ')
			return 1;
	return 0;
}

/* One line on stderr: prefix, then the message with the credentials of
 * URLs redacted and control characters escaped (names from sources and
 * peers may hold any byte). */
static void print_line(const char *prefix, const char *fmt, va_list ap)
{
	struct buf msg = BUF_INIT, line = BUF_INIT;
	buf_vprintf(&msg, fmt, ap);
	if (log_get_format() == LOG_FORMAT_JSON) {
		/* One JSON line like the log's; it redacts and escapes. */
		fflush(stdout);
		log_print(prefix[0] ? LOG_ERROR : LOG_INFO, "cli", NULL, "%s", buf_cstr(&msg));
		buf_close(&msg);
		return;
	}
	char *red = uri_redact(buf_cstr(&msg));
	size_t n = strlen(red);
	buf_append_str(&line, prefix);
	buf_reserve(&line, 4 * n + 2);
	line.len += log_escape((char *)line.ptr + line.len, line.cap - line.len, red, n);
	free(red);
	buf_append_str(&line, "\n");
	fflush(stdout);
	if (write(2, line.ptr, line.len) < 0) {
		/* nothing else to tell */
	}
	buf_close(&msg);
	buf_close(&line);
}

void cli_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	print_line("syncbit: ", fmt, ap);
	va_end(ap);
}

void cli_note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	print_line("", fmt, ap);
	va_end(ap);
}

void cli_usage(const char *cmd)
{
	const struct cli_cmd *c = cli_command(cmd);
	if (log_get_format() == LOG_FORMAT_JSON) {
		log_print(LOG_ERROR, "cli", NULL, "usage: syncbit %s", c ? c->usage : cmd);
		return;
	}
	fprintf(stderr, "usage: syncbit %s\n", c ? c->usage : cmd);
}

/* --help, -h or --version before "--": 'h', 'V' or 0. */
static int wants_info(int argc, char **argv)
{
	for (int i = 0; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return 'h';
		if (!strcmp(argv[i], "--version"))
			return 'V';
	}
	return 0;
}

/* --log-format json given, so that an error in the other arguments is a
 * JSON line too (the config is not read yet). */
static void early_log_format(int argc, char **argv)
{
	const char *f = getenv("SYNCBIT_LOG_FORMAT");
	for (int i = 0; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--log-format") && i + 1 < argc)
			f = argv[i + 1];
		else if (!strncmp(argv[i], "--log-format=", 13))
			f = argv[i] + 13;
	}
	enum log_format fmt;
	if (f && log_parse_format(f, &fmt) == 0)
		log_setup(log_get_level(), fmt);
}

/* --log-level, else one level above the default with --verbose. */
static int setup_logging(struct config *cfg)
{
	enum log_level lvl = LOG_WARN;
	enum log_format fmt = LOG_FORMAT_TEXT;
	int verbose = 0;
	const char *l = config_get(cfg, "log-level");
	const char *f = config_get(cfg, "log-format");
	if ((l && log_parse_level(l, &lvl) < 0) || (f && log_parse_format(f, &fmt) < 0)) {
		cli_error("--log-level takes debug|info|warn|error and --log-format text|json");
		return EXIT_USAGE;
	}
	if (config_get(cfg, "verbose") && config_get_bool(cfg, "verbose", &verbose) < 0) {
		cli_error("%s", cfg->error);
		return EXIT_USAGE;
	}
	if (verbose && config_origin_of(cfg, "log-level") == CONFIG_DEFAULT && lvl > LOG_DEBUG)
		lvl--;
	log_setup(lvl, fmt);
	return 0;
}

int cli_key_known(const char *key)
{
	for (const struct cli_cmd *c = cli_commands; c->name; c++)
		for (const struct config_key *k = c->keys; k && k->name; k++)
			if (!strcmp(k->name, key))
				return 1;
	return 0;
}

/* Overwrite the values of the credential flags in argv, so that ps and
 * /proc/PID/cmdline stop showing them once they are parsed (cfg holds
 * copies). */
static void scrub_secrets(int argc, char **argv)
{
	static const char *const secret[] = {"--registry-user", "--dest-registry-user"};
	for (int i = 0; i < argc && strcmp(argv[i], "--"); i++) {
		for (size_t k = 0; k < sizeof secret / sizeof *secret; k++) {
			size_t n = strlen(secret[k]);
			char *v;
			if (!strncmp(argv[i], secret[k], n) && argv[i][n] == '=')
				v = argv[i] + n + 1;
			else if (!strcmp(argv[i], secret[k]) && i + 1 < argc)
				v = argv[i + 1];
			else
				continue;
			memset(v, 'x', strlen(v));
		}
	}
}

int cli_parse(struct config *cfg, const char *cmd, int argc, char **argv, char ***pos, int *npos)
{
	static const struct config_key none[] = {{NULL, NULL, 0, NULL, NULL, 0}};
	const struct cli_cmd *c = cli_command(cmd);
	if (!c)
		fatal("cli: no command '%s' in the table", cmd);
	switch (wants_info(argc, argv)) {
	case 'h':
		cli_print_flags(stdout, c);
		exit(EXIT_OK);
	case 'V':
		cli_print_version(stdout, 0);
		exit(EXIT_OK);
	}
	log_set_component(cmd);
	early_log_format(argc, argv);
	config_init(cfg, c->keys ? c->keys : none);
	cfg->known = cli_key_known; /* one node-wide file serves every command */
	if (config_parse_args(cfg, argc, argv, pos, npos) < 0) {
		cli_error("%s", cfg->error ? cfg->error : "bad arguments");
		if (!cfg->file_error) /* the file is wrong, not the command line */
			cli_usage(cmd);
		return EXIT_USAGE;
	}
	scrub_secrets(argc, argv);
	return c->keys ? setup_logging(cfg) : 0;
}

char *cli_data_dir(const struct config *cfg)
{
	const char *d = config_get(cfg, "data");
	if (d && d[0])
		return cli_abs_path(d);
	if (geteuid() == 0)
		return xstrdup("/var/lib/syncbit");
	const char *home = getenv("HOME");
	return xasprintf("%s/.cache/syncbit", home && home[0] ? home : "/tmp");
}

char *cli_abs_path(const char *p)
{
	if (p[0] == '/')
		return path_normalize_abs(p);
	char cwd[4096];
	if (!getcwd(cwd, sizeof cwd))
		return xstrdup(p);
	char *j = path_join(cwd, p);
	char *n = path_normalize_abs(j);
	free(j);
	return n;
}
