/* The command line: argument parsing, exit codes and the one-line error
 * messages. Only this layer prints results or exits. */
#ifndef SYNCBIT_CLI_H
#define SYNCBIT_CLI_H

#include "common/config.h"

#define EXIT_OK	   0
#define EXIT_FAIL  1
#define EXIT_USAGE 2

struct cli_cmd {
	const char *name;
	const char *usage;
	int (*run)(int argc, char **argv);
};

/* Print "syncbit: <msg>" on stderr: one line, control characters escaped
 * (log_escape). */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same without the prefix, for progress lines. */
void cli_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parse argv into cfg with the common keys applied (log level/format).
 * Returns 0, or EXIT_USAGE after printing the error and usage. */
int cli_parse(struct config *cfg, const struct config_key *keys, const char *usage, int argc,
	      char **argv, char ***pos, int *npos);
/* The data directory: --data, $SYNCBIT_DATA, /var/lib/syncbit for root,
 * else ~/.cache/syncbit. Heap string. */
char *cli_data_dir(const struct config *cfg);
/* Absolute form of a path given on the command line. Heap string. */
char *cli_abs_path(const char *p);

int cmd_pull(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_gc(int argc, char **argv);
int cmd_daemon(int argc, char **argv);
int cmd_agent_status(int argc, char **argv);
int cmd_ready(int argc, char **argv);
/* The scheduler and its admin commands (cli/cmd_sched.c, cli/cmd_admin.c).
 * status goes to the scheduler with --scheduler, else to the local agent. */
int cmd_scheduler(int argc, char **argv);
int cmd_dataset(int argc, char **argv);
int cmd_node(int argc, char **argv);
int cmd_status(int argc, char **argv);
/* containerd-hosts: hosts.toml files for the agent's registry mirror
 * (cli/cmd_hosts.c). */
int cmd_containerd_hosts(int argc, char **argv);
/* sync SRC DST: the rsync + cron sidecar (cli/cmd_sync.c). */
int cmd_sync(int argc, char **argv);
/* pull NAME through the local agent (cli/cmd_agent.c); an exit status. */
int cli_pull_agent(const struct config *cfg, const char *name, int json, int wait);

/* Keys every command accepts. */
#define CLI_COMMON_KEYS                                                   \
	{"config", NULL, 0, "YAML file with the same keys as the flags"}, \
	    {"log-level", "warn", 0, "debug|info|warn|error"},            \
	    {"log-format", "text", 0, "text|json"},                       \
	{                                                                 \
		"data", NULL, 0, "data directory (cache and index)"       \
	}

/* --layout and its keys, for pull and sync (cli/cmd_sync.c). */
#define CLI_LAYOUT_KEYS                                                                        \
	{"layout", "plain", 0, "plain|hf-cache|triton: how DIR is laid out for its reader"},   \
	    {"repo", NULL, 0, "hf-cache: [datasets/]ORG/NAME when the source is not hf://"},   \
	    {"model", NULL, 0, "triton: model name (DIR/NAME/config.pbtxt)"},                  \
	    {"version", NULL, 0, "triton: version directory (DIR/NAME/N/, default 1)"},        \
	{                                                                                      \
		"triton-url", NULL, 0, "triton: POST URL/v2/repository/models/NAME/load after" \
	}
/* How to reach S3 and registries: flags of every command that reads a source
 * (pull, sync, scheduler, daemon), read by cli_source_access. */
#define CLI_SOURCE_ACCESS_KEYS                                                                 \
	{"s3-endpoint", NULL, 0,                                                               \
	 "s3://: endpoint URL (default $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, AWS config)"}, \
	    {"s3-region", NULL, 0,                                                             \
	     "s3://: region (default $AWS_REGION, $AWS_DEFAULT_REGION, AWS config, "           \
	     "us-east-1)"},                                                                    \
	    {"s3-path-style", NULL, 1,                                                         \
	     "s3://: bucket in the URL path (default with an endpoint)"},                      \
	    {"insecure-registry", NULL, 0,                                                     \
	     "oci://: hosts allowed over plain HTTP (host[:port],...)"},                       \
	{                                                                                      \
		"registry-user", NULL, 0, "oci://: user:password (default $REGISTRY_AUTH)"     \
	}
/* How much one dataset's source may claim (README "Limits"): flags of
 * pull, sync and scheduler, read by cli_source_limits. */
#define CLI_SOURCE_LIMIT_KEYS                                                                \
	{"max-file-size", "4TiB", 0, "refuse a source that lists a file larger than this"},  \
	    {"max-dataset-size", "64TiB", 0,                                                 \
	     "refuse a source whose files add up to more than this"},                        \
	    {"max-files", "1048576", 0,                                                      \
	     "refuse a source that lists more entries than this (at most 4194304)"},         \
	{                                                                                    \
		"max-unsized-seconds", "1800", 0,                                            \
		    "give up on an HTTP body without a length that goes on longer than this" \
	}
/* Which part of an oci:// source a dataset is: flags of pull, sync and
 * dataset add, read by cli_source_dataset. */
#define CLI_SOURCE_DATASET_KEYS                                                            \
	{"platform", NULL, 0,                                                              \
	 "oci://: os/arch[/variant] taken from an image index (linux/amd64)"},             \
	{                                                                                  \
		"tag-regex", NULL, 0, "oci://: every tag matching this ERE, as one layout" \
	}
struct source_options;
/* Fill o's S3 and registry fields from cfg's CLI_SOURCE_ACCESS_KEYS (the
 * strings stay cfg's). 0, or EXIT_USAGE after printing the error. */
int cli_source_access(struct config *cfg, struct source_options *o);
/* Fill o->limits from cfg's CLI_SOURCE_LIMIT_KEYS. 0, or EXIT_USAGE after
 * printing the error. */
int cli_source_limits(struct config *cfg, struct source_options *o);
/* Check --platform and --tag-regex against source (NULL: a list, which
 * takes neither) and set *with to the source carrying them
 * (?platform=&tag-regex=, heap), or NULL when neither is given. 0, or
 * EXIT_USAGE after printing the error. */
int cli_source_dataset(struct config *cfg, const char *source, char **with);

struct layout;
/* Fill l from cfg's layout keys; with a source, check them against it
 * (NULL: a list's items, checked per item). 0, or EXIT_USAGE after
 * printing the error. */
int cli_layout(struct config *cfg, const char *source, struct layout *l);

#endif
