/* syncbit: one binary, many commands. */
#include <stdarg.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/version.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/uri.h"
#include "common/path.h"

static int cmd_version(int argc, char **argv)
{
	printf("syncbit %s\n", SYNCBIT_VERSION);
	return EXIT_OK;
}

static int cmd_help(int argc, char **argv);

static const struct cli_cmd commands[] = {
    {"pull",
     "pull SOURCE [--to DIR] [--data DIR] [--json] [--jobs N] [--block-size SIZE] [--cache-size "
     "SIZE]\n  syncbit pull NAME [--socket PATH] [--no-wait] [--json]",
     cmd_pull},
    {"sync",
     "sync SRC DST [--schedule CRON] [--run-on-start] [--once] [--delete] [--data DIR] "
     "[--layout plain|hf-cache|triton] [--json]\n  syncbit sync --list FILE DST [...]  "
     "(env SRC, DST, CRON_SCHEDULE, RUN_ON_START, CRONTAB, CRONTAB_FILE)\n  syncbit sync "
     "oci://REGISTRY/REPO oci://REGISTRY/REPO [--tag-regex ERE] [--platform OS/ARCH] [...]",
     cmd_sync},
    {"daemon",
     "daemon --scheduler HOST:PORT --listen HOST:PORT --data DIR --target DIR --node NAME "
     "--labels k=v[,k=v] --token-file FILE [--socket PATH] [--http HOST:PORT] [--no-encrypt] "
     "[--registry-mirror HOST:PORT] [SOURCE FLAGS]",
     cmd_daemon},
    {"scheduler",
     "scheduler --listen HOST:PORT --data DIR [--http HOST:PORT] [--refresh SECONDS] "
     "[--no-encrypt] [SOURCE FLAGS]",
     cmd_scheduler},
    {"dataset",
     "dataset add NAME SOURCE [--selector k=v[,k=v]] [--block-size SIZE] [--platform OS/ARCH] "
     "[--tag-regex ERE] --scheduler HOST:PORT "
     "--token-file FILE [--json]\n  syncbit dataset ls|rm [NAME] --scheduler HOST:PORT "
     "--token-file FILE [--json]",
     cmd_dataset},
    {"node", "node ls --scheduler HOST:PORT --token-file FILE [--json]", cmd_node},
    {"status",
     "status [--socket PATH] [--json]\n  syncbit status --scheduler HOST:PORT --token-file "
     "FILE [NAME] [--json]",
     cmd_status},
    {"ready", "ready NAME [--socket PATH]", cmd_ready},
    {"containerd-hosts",
     "containerd-hosts --dir DIR --mirror URL[,URL] [--insecure-registry HOST[:PORT],...] "
     "REGISTRY...",
     cmd_containerd_hosts},
    {"verify", "verify DIR|NAME [--data DIR] [--json]", cmd_verify},
    {"gc", "gc [--cache-size SIZE] [--data DIR] [--json]", cmd_gc},
    {"version", "version", cmd_version},
    {"help", "help", cmd_help},
};

static int cmd_help(int argc, char **argv)
{
	printf("usage: syncbit COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		printf("  syncbit %s\n", commands[i].usage);
	printf(
	    "\nSOURCE: /path | file:///path | http(s)://host/path | s3://bucket/prefix/ |\n"
	    "        hf://[datasets/]org/repo[@rev] | ms://org/repo[@rev] |\n"
	    "        oci://registry/repo:tag|@digest\n"
	    "SOURCE FLAGS (pull, sync, scheduler, daemon; the same on every node):\n"
	    "  --s3-endpoint URL --s3-region REGION --[no-]s3-path-style\n"
	    "  --insecure-registry HOST[:PORT],... --registry-user USER:PASSWORD\n"
	    "oci:// dataset flags (pull, sync, dataset add): --platform OS/ARCH --tag-regex ERE\n"
	    "S3 credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, else web identity\n"
	    "  (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE), else ~/.aws/credentials and\n"
	    "  ~/.aws/config (AWS_PROFILE, AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE)\n"
	    "'syncbit COMMAND --help' lists a command's flags. Flags may also come from\n"
	    "--config FILE (YAML) and SYNCBIT_<FLAG> variables.\n");
	return EXIT_OK;
}

/* One line on stderr: prefix, then the message with the credentials of
 * URLs redacted and control characters escaped (names from sources and
 * peers may hold any byte). */
static void print_line(const char *prefix, const char *fmt, va_list ap)
{
	struct buf msg = BUF_INIT, line = BUF_INIT;
	buf_vprintf(&msg, fmt, ap);
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

/* A command's --help: its usage line and every flag it takes. */
static int wants_help(int argc, char **argv)
{
	for (int i = 0; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return 1;
	return 0;
}

static void print_flags(const char *usage, const struct config_key *keys)
{
	printf("usage: syncbit %s\n\nflags (also SYNCBIT_<FLAG> and --config FILE keys):\n", usage);
	for (const struct config_key *k = keys; k->name; k++) {
		char flag[64];
		snprintf(flag, sizeof flag, "--%s%s", k->name, k->is_bool ? "" : " VALUE");
		printf("  %-26s %s", flag, k->help);
		if (k->defval && k->defval[0] && !k->is_bool)
			printf(" [%s]", k->defval);
		printf("\n");
	}
}

int cli_parse(struct config *cfg, const struct config_key *keys, const char *usage, int argc,
	      char **argv, char ***pos, int *npos)
{
	if (wants_help(argc, argv)) {
		print_flags(usage, keys);
		exit(EXIT_OK);
	}
	config_init(cfg, keys);
	if (config_parse_args(cfg, argc, argv, pos, npos) < 0) {
		cli_error("%s", cfg->error ? cfg->error : "bad arguments");
		fprintf(stderr, "usage: syncbit %s\n", usage);
		return EXIT_USAGE;
	}
	enum log_level lvl = LOG_WARN;
	enum log_format fmt = LOG_FORMAT_TEXT;
	const char *l = config_get(cfg, "log-level");
	const char *f = config_get(cfg, "log-format");
	if ((l && log_parse_level(l, &lvl) < 0) || (f && log_parse_format(f, &fmt) < 0)) {
		cli_error("--log-level takes debug|info|warn|error and --log-format text|json");
		return EXIT_USAGE;
	}
	log_setup(lvl, fmt);
	return 0;
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

int main(int argc, char **argv)
{
	/* Blocks (4 MiB by default) move through heap buffers all the time:
	 * keep them out of mmap, whose every fresh mapping is faulted in page
	 * by page and unmapped (with a TLB flush) when freed, and let freed
	 * memory stay for the next block instead of going back to the kernel. */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	if (argc < 2) {
		cmd_help(0, NULL);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))
		return cmd_version(0, NULL);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return cmd_help(0, NULL);
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 2, argv + 2);
	cli_error("unknown command '%s' (see 'syncbit help')", argv[1]);
	return EXIT_USAGE;
}
