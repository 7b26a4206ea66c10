/* The command line: argument parsing, exit codes and the one-line error
 * messages. Only this layer prints results or exits. */
#ifndef SYNCBIT_CLI_H
#define SYNCBIT_CLI_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "common/config.h"

#define EXIT_OK	   0
#define EXIT_FAIL  1
#define EXIT_USAGE 2

/* A command or subcommand ("dataset add"): its usage (after "syncbit "),
 * one line saying what it does, and its flags. Help, the man page and the
 * shell completions are generated from these. */
struct cli_cmd {
	const char *name;
	const char *usage;
	const char *summary;
	const struct config_key *keys; /* NULL: no flags but -h */
	int (*run)(int argc, char **argv);
};

/* Every command, in the order help lists them; ends with name NULL. */
extern const struct cli_cmd cli_commands[];
/* The command named name ("pull", "dataset add"), or NULL. */
const struct cli_cmd *cli_command(const char *name);
/* 1 when name is a group of subcommands ("dataset", "node", "cache"). */
int cli_is_group(const char *name);

/* Print "syncbit: <msg>" on stderr: one line, control characters escaped
 * (log_escape). */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same without the prefix, for progress lines. */
void cli_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "usage: syncbit <usage of cmd>" on stderr. */
void cli_usage(const char *cmd);
/* Parse argv for command cmd into cfg with the common keys applied (log
 * level/format). --help and -h print the command's flags, --version the
 * version, and exit 0. Returns 0, or EXIT_USAGE after printing the error
 * and usage. */
int cli_parse(struct config *cfg, const char *cmd, int argc, char **argv, char ***pos, int *npos);
/* The data directory: --data, $SYNCBIT_DATA, /var/lib/syncbit for root,
 * else ~/.cache/syncbit. Heap string. */
char *cli_data_dir(const struct config *cfg);
/* Absolute form of a path given on the command line. Heap string. */
char *cli_abs_path(const char *p);

/* Help, the man page and shell completions from cli_commands
 * (cli/help.c). cli_print_* write to f. */
void cli_print_help(FILE *f);
void cli_print_group(FILE *f, const char *group);
void cli_print_flags(FILE *f, const struct cli_cmd *cmd);
void cli_print_man(FILE *f);
/* 0, or SB_ENOTFOUND for a shell other than bash or zsh. */
int cli_print_completion(FILE *f, const char *shell);
/* "syncbit VERSION (COMMIT)" and the libraries' versions (cli/version.c). */
void cli_print_version(FILE *f, int libraries);

int cmd_pull(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_gc(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_cache_ls(int argc, char **argv);
int cmd_daemon(int argc, char **argv);
int cmd_agent_status(int argc, char **argv);
int cmd_ready(int argc, char **argv);
/* The scheduler and its admin commands (cli/cmd_sched.c, cli/cmd_admin.c).
 * status goes to the scheduler with --scheduler, else to the local agent. */
int cmd_scheduler(int argc, char **argv);
int cmd_dataset_add(int argc, char **argv);
int cmd_dataset_update(int argc, char **argv);
int cmd_dataset_ls(int argc, char **argv);
int cmd_dataset_rm(int argc, char **argv);
int cmd_node_ls(int argc, char **argv);
int cmd_node_rm(int argc, char **argv);
int cmd_status(int argc, char **argv);
/* containerd-hosts: hosts.toml files for the agent's registry mirror
 * (cli/cmd_hosts.c). */
int cmd_containerd_hosts(int argc, char **argv);
/* sync SRC DST: the rsync + cron sidecar (cli/cmd_sync.c). */
int cmd_sync(int argc, char **argv);
/* version, help, completion, man (cli/help.c, cli/version.c). */
int cmd_version(int argc, char **argv);
int cmd_help(int argc, char **argv);
int cmd_completion(int argc, char **argv);
int cmd_man(int argc, char **argv);
/* dataset wait NAME: until its current version is ready on the nodes
 * (cli/cmd_watch.c). */
int cmd_dataset_wait(int argc, char **argv);
/* status --watch: CLI_NO_WATCH without --watch, else an exit status once
 * a signal stops it (cluster: the scheduler's view of dataset name, or of
 * all with NULL; else the local agent's). */
#define CLI_NO_WATCH (-1)
int cli_status_watch(struct config *cfg, const char *name, int json, int cluster);
/* 1 once SIGINT or SIGTERM arrived after cli_catch_stop(). */
int cli_stop_requested(void);
void cli_catch_stop(void);
/* One status question to the scheduler (cli/cmd_admin.c): 0 with *doc,
 * or a negative code with *error (heap, one line) and *permanent set when
 * asking again cannot help (token, address, authentication, refusal). */
int cli_admin_status(struct config *cfg, const char *name, uint64_t timeout_ms, json_t **doc,
		     char **error, int *permanent);
/* status --scheduler's text from its JSON document. */
void cli_print_cluster_status(const json_t *doc);
/* One status question to the local agent (cli/cmd_agent.c): 0 with *doc,
 * or a negative code with *error (heap, one line). */
int cli_agent_status(const struct config *cfg, json_t **doc, char **error);
/* status's text from the agent's JSON document. */
void cli_print_agent_status(const json_t *st);
/* pull NAME through the local agent (cli/cmd_agent.c); an exit status. */
int cli_pull_agent(const struct config *cfg, const char *name, int json, int wait);
/* pull SOURCE through the local agent (cli/cmd_agent.c). */
struct cli_agent_pull {
	const char *source;
	const char *target; /* absolute, or NULL: into the agent's cache only */
	uint32_t block_size;
	int progress; /* progress on stderr */
};
#define CLI_NO_AGENT (-1) /* no agent answers (or one too old): pull standalone */
/* EXIT_OK with *result (the pull's JSON summary, the caller's), EXIT_FAIL
 * with *error (heap, one line), or CLI_NO_AGENT (said at info level). */
int cli_pull_source_agent(const struct config *cfg, const struct cli_agent_pull *rq,
			  json_t **result, char **error);

/* One request line to the local agent, one reply (cli/cmd_agent.c): 0
 * with *reply (the caller's), CLI_NO_AGENT when no agent answers at its
 * socket (said at info level), EXIT_FAIL after printing why. req is
 * consumed. */
int cli_agent_request(const struct config *cfg, json_t *req, json_t **reply);

/* The flag tables (in the files of their commands). */
extern const struct config_key cli_pull_keys[], cli_sync_keys[], cli_daemon_keys[],
    cli_scheduler_keys[], cli_dataset_add_keys[], cli_dataset_update_keys[], cli_admin_keys[],
    cli_status_keys[], cli_dataset_wait_keys[], cli_ready_keys[], cli_hosts_keys[],
    cli_verify_keys[], cli_gc_keys[], cli_rm_keys[], cli_cache_ls_keys[];

/* 1 when some command has a flag named key: a config file may hold it. */
int cli_key_known(const char *key);

/* The node-wide config file every command reads when it exists (README
 * "Configuration"). */
#define CLI_CONFIG_DEFAULT "/etc/syncbit/config.yaml"

/* Keys every command accepts; the long-running ones (daemon, scheduler,
 * sync) log at info by default, the others at warn. */
#define CLI_COMMON_KEYS_AT(level)                                                             \
	{                                                                                     \
	    "config",                                                                         \
	    CLI_CONFIG_DEFAULT,                                                               \
	    0,                                                                                \
	    "YAML file of flag: value (read when it exists; keys of other commands skipped)", \
	    "FILE",                                                                           \
	    0},                                                                               \
	    {"log-level", level, 0, "what to log", "debug|info|warn|error", 0},               \
	    {"log-format", "text", 0, "log lines as text or JSON", "text|json", 0},           \
	    {"verbose", "false", 1, "log one level more than the default (info, or debug)",   \
	     NULL,	'v'},                                                                 \
	{                                                                                     \
		"data", NULL, 0, "data directory (cache and index)", "DIR", 0                 \
	}
#define CLI_COMMON_KEYS		CLI_COMMON_KEYS_AT("warn")
#define CLI_SERVICE_COMMON_KEYS CLI_COMMON_KEYS_AT("info")

/* --layout and its keys, for pull and sync (cli/cmd_sync.c). */
#define CLI_LAYOUT_KEYS                                                                           \
	{"layout", "plain", 0, "how DIR is laid out for its reader", "plain|hf-cache|triton", 0}, \
	    {"repo",                                                                              \
	     NULL,                                                                                \
	     0,                                                                                   \
	     "hf-cache: the repository when the source is not hf://",                             \
	     "[datasets/]ORG/NAME",                                                               \
	     0},                                                                                  \
	    {"model", NULL, 0, "triton: model name (DIR/NAME/config.pbtxt)", "NAME", 0},          \
	    {"model-version",                                                                     \
	     NULL,                                                                                \
	     0,                                                                                   \
	     "triton: version directory (DIR/NAME/N/, default 1)",                                \
	     "N",                                                                                 \
	     0},                                                                                  \
	{                                                                                         \
		"triton-url", NULL, 0, "triton: POST URL/v2/repository/models/NAME/load after",   \
		    "URL", 0                                                                      \
	}
/* How to reach S3 and registries: flags of every command that reads a source
 * (pull, sync, scheduler, daemon), read by cli_source_access. */
#define CLI_SOURCE_ACCESS_KEYS                                                                    \
	{"s3-endpoint",                                                                           \
	 NULL,                                                                                    \
	 0,                                                                                       \
	 "s3://: endpoint URL (default $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, AWS config)",     \
	 "URL",                                                                                   \
	 0},                                                                                      \
	    {"s3-region",                                                                         \
	     NULL,                                                                                \
	     0,                                                                                   \
	     "s3://: region (default $AWS_REGION, $AWS_DEFAULT_REGION, AWS config, "              \
	     "us-east-1)",                                                                        \
	     "REGION",                                                                            \
	     0},                                                                                  \
	    {"s3-path-style",                                                                     \
	     NULL,                                                                                \
	     1,                                                                                   \
	     "s3://: bucket in the URL path (default with an endpoint)",                          \
	     NULL,                                                                                \
	     0},                                                                                  \
	    {"insecure-registry",                                                                 \
	     NULL,                                                                                \
	     0,                                                                                   \
	     "oci://: hosts allowed over plain HTTP",                                             \
	     "HOST[:PORT][,HOST[:PORT]]...",                                                      \
	     0},                                                                                  \
	    {"registry-user-file",                                                                \
	     NULL,                                                                                \
	     0,                                                                                   \
	     "oci://: a file holding user:password (default $REGISTRY_AUTH, else auth files)",    \
	     "FILE",                                                                              \
	     0},                                                                                  \
	    {"authfile", NULL,                                                                    \
	     0,		 "oci://: containers-auth.json read first (default $REGISTRY_AUTH_FILE)", \
	     "FILE",	 0},                                                                      \
	{                                                                                         \
		"registry-user", NULL, 0,                                                         \
		    "oci://: credentials (deprecated: ps shows them; use --registry-user-file)",  \
		    "USER:PASSWORD", 0                                                            \
	}
/* How much one dataset's source may claim (README "Limits"): flags of
 * pull, sync and scheduler, read by cli_source_limits. */
#define CLI_SOURCE_LIMIT_KEYS                                                                    \
	{"max-file-size", "4TiB", 0, "refuse a source that lists a file larger than this",       \
	 "SIZE",	  0},                                                                    \
	    {"max-dataset-size",                                                                 \
	     "64TiB",                                                                            \
	     0,                                                                                  \
	     "refuse a source whose files add up to more than this",                             \
	     "SIZE",                                                                             \
	     0},                                                                                 \
	    {"max-files", "1048576",                                                             \
	     0,		  "refuse a source that lists more entries than this (at most 4194304)", \
	     "N",	  0},                                                                    \
	{                                                                                        \
		"max-unsized-seconds", "1800", 0,                                                \
		    "give up on an HTTP body without a length that goes on longer than this",    \
		    "SECONDS", 0                                                                 \
	}
/* Which part of an oci:// source a dataset is: flags of pull, sync and
 * dataset add, read by cli_source_dataset. */
#define CLI_SOURCE_DATASET_KEYS                                                                  \
	{"platform",                                                                             \
	 NULL,                                                                                   \
	 CONFIG_LIST,                                                                            \
	 "oci://: the platform taken from an image index (again for several; all: every one)",   \
	 "OS/ARCH[/VARIANT]|all",                                                                \
	 0},                                                                                     \
	{                                                                                        \
		"tag-regex", NULL, 0, "oci://: every tag matching this, as one layout", "ERE", 0 \
	}
/* Which files of a source to take: flags of pull and sync, read by
 * cli_source_filter (common/source/filter.h has the rules). */
#define CLI_SOURCE_FILTER_KEYS                                                                  \
	{"include",                                                                             \
	 NULL,                                                                                  \
	 CONFIG_LIST,                                                                           \
	 "take the paths matching this glob (repeatable; first matching rule wins, as rsync)",  \
	 "PATTERN",                                                                             \
	 0},                                                                                    \
	{                                                                                       \
		"exclude", NULL, CONFIG_LIST,                                                   \
		    "leave out the paths matching this glob (repeatable; --delete keeps them)", \
		    "PATTERN", 0                                                                \
	}
struct filter;
/* Build f from cfg's --include and --exclude in the order they were given
 * (from the environment or a config file: in the file's order, includes
 * before excludes from the environment); source NULL is a list. 0, or
 * EXIT_USAGE after printing the error (an oci:// source takes none). */
int cli_source_filter(struct config *cfg, const char *source, struct filter *f);

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

/* A malformed SOURCE is a usage error: 0, or EXIT_USAGE after a line
 * saying what a source of its scheme looks like. Others (an unknown scheme,
 * a missing path) are left to the source. */
int cli_check_source(const char *what, const char *source);

struct layout;
/* Fill l from cfg's layout keys; with a source, check them against it
 * (NULL: a list's items, checked per item). 0, or EXIT_USAGE after
 * printing the error. */
int cli_layout(struct config *cfg, const char *source, struct layout *l);

#endif
