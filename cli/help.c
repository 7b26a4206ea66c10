/* Help, the manual page and the shell completions, all generated from the
 * command table (cli/commands.c) and the flag tables of the commands, so
 * that none of them can drift from what the commands take. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "common/err.h"

#define FLAG_COLUMN 30

static const char *const source_help =
    "SOURCE: /path | file:///path | http(s)://host/path | s3://bucket/prefix/ |\n"
    "        hf://[datasets/]org/repo[@rev] | ms://org/repo[@rev] |\n"
    "        oci://registry/repo:tag|@digest\n"
    "SOURCE FLAGS (pull, sync, scheduler, daemon; the same on every node):\n"
    "  --s3-endpoint URL --s3-region REGION --[no-]s3-path-style\n"
    "  --insecure-registry HOST[:PORT],... --registry-user-file FILE --authfile FILE\n"
    "Registry credentials: --registry-user-file, REGISTRY_AUTH, else the auth files\n"
    "  skopeo reads (REGISTRY_AUTH_FILE or $XDG_RUNTIME_DIR/containers/auth.json,\n"
    "  ~/.config/containers/auth.json, ~/.docker/config.json)\n"
    "oci:// dataset flags (pull, sync, dataset add): --platform OS/ARCH --tag-regex ERE\n"
    "File filters (pull, sync, dataset add|update): --include PATTERN --exclude PATTERN,\n"
    "  rsync's rules\n"
    "S3 credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, else web identity\n"
    "  (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE), else ~/.aws/credentials and\n"
    "  ~/.aws/config (AWS_PROFILE, AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE)\n";

static const char *const flags_help =
    "'syncbit COMMAND --help' lists a command's flags. Flags may also come from\n"
    "SYNCBIT_<FLAG> variables and a YAML file: /etc/syncbit/config.yaml when it exists,\n"
    "or --config FILE / SYNCBIT_CONFIG (keys of other commands are skipped).\n"
    "--cache-size 0 means no limit.\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

void cli_print_help(FILE *f)
{
	fprintf(f, "usage: syncbit COMMAND [ARGS]\n\ncommands:\n");
	for (const struct cli_cmd *c = cli_commands; c->name; c++)
		fprintf(f, "  syncbit %s\n", c->usage);
	fprintf(f, "\n%s%s", source_help, flags_help);
}

void cli_print_group(FILE *f, const char *group)
{
	size_t n = strlen(group);
	fprintf(f, "usage: syncbit %s COMMAND ...\n\ncommands:\n", group);
	for (const struct cli_cmd *c = cli_commands; c->name; c++)
		if (!strncmp(c->name, group, n) && c->name[n] == ' ')
			fprintf(f, "  %-16s %s\n", c->name + n + 1, c->summary);
	fprintf(f, "\n'syncbit %s COMMAND --help' lists a command's flags.\n", group);
}

/* "-j, --jobs N" or "    --to DIR". */
static void flag_text(const struct config_key *k, char *out, size_t len)
{
	char s[8] = "    ";
	if (k->short_name)
		snprintf(s, sizeof s, "-%c, ", k->short_name);
	snprintf(out, len, "%s--%s%s%s", s, k->name, k->metavar ? " " : "",
		 k->metavar ? k->metavar : "");
}

void cli_print_flags(FILE *f, const struct cli_cmd *cmd)
{
	fprintf(f, "usage: syncbit %s\n\n%s\n", cmd->usage, cmd->summary);
	if (cmd->keys)
		fprintf(f, "\nflags (also SYNCBIT_<FLAG> and --config FILE keys):\n");
	for (const struct config_key *k = cmd->keys; k && k->name; k++) {
		char flag[128];
		flag_text(k, flag, sizeof flag);
		if (strlen(flag) < FLAG_COLUMN)
			fprintf(f, "  %-*s %s", FLAG_COLUMN, flag, k->help);
		else
			fprintf(f, "  %s\n  %-*s %s", flag, FLAG_COLUMN, "", k->help);
		if (k->defval && k->defval[0] && k->kind == CONFIG_VALUE)
			fprintf(f, " [%s]", k->defval);
		fprintf(f, "\n");
	}
	fprintf(f, "  %-*s %s\n", FLAG_COLUMN, "-h, --help", "this help");
}

/* ---- the manual page ------------------------------------------------------- */

/* Text for roff: backslashes and dashes escaped, no line starting with a
 * control character. */
static void roff(struct buf *b, const char *s)
{
	if (*s == '.' || *s == '\'')
		buf_append_str(b, "\\&");
	for (; *s; s++) {
		if (*s == '\\')
			buf_append_str(b, "\\e");
		else if (*s == '-')
			buf_append_str(b, "\\-");
		else
			buf_append(b, s, 1);
		if (*s == '\n' && (s[1] == '.' || s[1] == '\''))
			buf_append_str(b, "\\&");
	}
}

static void man_flag(struct buf *b, const struct config_key *k)
{
	buf_append_str(b, ".TP\n");
	if (k->short_name)
		buf_printf(b, "\\fB\\-%c\\fR, ", k->short_name);
	buf_printf(b, "\\fB\\-\\-");
	roff(b, k->name);
	buf_append_str(b, "\\fR");
	if (k->metavar) {
		buf_append_str(b, " \\fI");
		roff(b, k->metavar);
		buf_append_str(b, "\\fR");
	}
	buf_append_str(b, "\n");
	roff(b, k->help);
	if (k->defval && k->defval[0] && k->kind == CONFIG_VALUE) {
		buf_append_str(b, " (default ");
		roff(b, k->defval);
		buf_append_str(b, ")");
	}
	buf_append_str(b, "\n");
}

static void man_command(struct buf *b, const struct cli_cmd *c)
{
	buf_append_str(b, ".SS \"syncbit ");
	roff(b, c->name);
	buf_append_str(b, "\"\n.nf\nsyncbit ");
	roff(b, c->usage);
	buf_append_str(b, "\n.fi\n");
	roff(b, c->summary);
	buf_append_str(b, ".\n");
	for (const struct config_key *k = c->keys; k && k->name; k++)
		man_flag(b, k);
}

static const char *const man_head =
    ".TH SYNCBIT 1 \"\" \"syncbit\" \"User Commands\"\n"
    ".SH NAME\nsyncbit \\- peer\\-assisted distribution of large files\n"
    ".SH SYNOPSIS\n.B syncbit\n\\fICOMMAND\\fR [\\fIARGS\\fR]\n"
    ".SH DESCRIPTION\nSyncbit copies datasets (models, trees of files, images) from a source "
    "to many nodes, each byte leaving the source about once while nodes exchange blocks. "
    "Every flag may also be given as a key of the YAML file named by \\fB\\-\\-config\\fR "
    "or as an environment variable SYNCBIT_<FLAG> (upper case, '\\-' as '_'); flags win "
    "over the environment, which wins over the file. A size of 0 for "
    "\\fB\\-\\-cache\\-size\\fR means no limit.\n"
    ".SH COMMANDS\n";

static const char *const man_tail =
    ".SH SOURCES\n.nf\n/path | file:///path | http(s)://host/path | s3://bucket/prefix/ |\n"
    "hf://[datasets/]org/repo[@rev] | ms://org/repo[@rev] | oci://registry/repo:tag|@digest\n"
    ".fi\n"
    ".SH EXIT STATUS\n0 on success, 1 on failure, 2 for a usage error. Errors are one line "
    "on standard error; with \\fB\\-\\-json\\fR the last line of standard output is a JSON "
    "object.\n"
    ".SH SEE ALSO\n\\fBsyncbit completion bash\\fR, README.md, docs/ARCHITECTURE.md\n";

void cli_print_man(FILE *f)
{
	struct buf b = BUF_INIT;
	buf_append_str(&b, man_head);
	for (const struct cli_cmd *c = cli_commands; c->name; c++)
		man_command(&b, c);
	buf_append_str(&b, man_tail);
	fwrite(b.ptr, 1, b.len, f);
	buf_close(&b);
}

int cmd_man(int argc, char **argv)
{
	struct config cfg;
	char **pos = NULL;
	int npos = 0, rc = cli_parse(&cfg, "man", argc, argv, &pos, &npos);
	if (rc == 0 && npos) {
		cli_error("man takes no arguments");
		rc = EXIT_USAGE;
	} else if (rc == 0) {
		cli_print_man(stdout);
	}
	free(pos);
	config_close(&cfg);
	return rc;
}

int cmd_help(int argc, char **argv)
{
	struct config cfg;
	char **pos = NULL;
	int npos = 0, rc = cli_parse(&cfg, "help", argc, argv, &pos, &npos);
	struct buf name = BUF_INIT;
	for (int i = 0; rc == 0 && i < npos; i++)
		buf_printf(&name, "%s%s", i ? " " : "", pos[i]);
	const struct cli_cmd *c = npos ? cli_command(buf_cstr(&name)) : NULL;
	if (rc) {
		/* said why */
	} else if (!npos) {
		cli_print_help(stdout);
	} else if (c) {
		cli_print_flags(stdout, c);
	} else if (npos == 1 && cli_is_group(pos[0])) {
		cli_print_group(stdout, pos[0]);
	} else {
		cli_error("help: no command '%s'", buf_cstr(&name));
		rc = EXIT_USAGE;
	}
	buf_close(&name);
	free(pos);
	config_close(&cfg);
	return rc;
}

int cmd_completion(int argc, char **argv)
{
	struct config cfg;
	char **pos = NULL;
	int npos = 0, rc = cli_parse(&cfg, "completion", argc, argv, &pos, &npos);
	if (rc == 0 && (npos != 1 || cli_print_completion(stdout, pos[0]) < 0)) {
		cli_error("completion takes bash or zsh");
		cli_usage("completion");
		rc = EXIT_USAGE;
	}
	free(pos);
	config_close(&cfg);
	return rc;
}
