/* Shell completion scripts for bash and zsh, generated from the command
 * table and the flag tables: commands, subcommands, each command's flags,
 * and values where the metavar tells what they are (DIR: directories,
 * FILE or PATH: files, a|b|c: those words). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "common/err.h"

enum value_kind { VALUE_NONE, VALUE_DIR, VALUE_FILE, VALUE_WORDS, VALUE_OTHER };

static enum value_kind value_kind(const struct config_key *k)
{
	if (!k->metavar)
		return VALUE_NONE;
	if (!strcmp(k->metavar, "DIR"))
		return VALUE_DIR;
	if (!strcmp(k->metavar, "FILE") || !strcmp(k->metavar, "PATH"))
		return VALUE_FILE;
	if (strchr(k->metavar, '|') && !strpbrk(k->metavar, "[]:. "))
		return VALUE_WORDS;
	return VALUE_OTHER;
}

/* The first word of each command name, once, space-separated; with group
 * set, the second words of that group's commands. */
static void command_words(struct buf *b, const char *group)
{
	size_t n = group ? strlen(group) : 0;
	for (const struct cli_cmd *c = cli_commands; c->name; c++) {
		const char *sp = strchr(c->name, ' ');
		if (group) {
			if (!strncmp(c->name, group, n) && c->name[n] == ' ')
				buf_printf(b, "%s%s", b->len ? " " : "", c->name + n + 1);
			continue;
		}
		size_t len = sp ? (size_t)(sp - c->name) : strlen(c->name);
		int seen = 0;
		for (const struct cli_cmd *p = cli_commands; p < c && !seen; p++)
			seen = !strncmp(p->name, c->name, len) &&
			       (p->name[len] == ' ' || !p->name[len]);
		if (!seen)
			buf_printf(b, "%s%.*s", b->len ? " " : "", (int)len, c->name);
	}
}

/* ---- bash ------------------------------------------------------------------ */

static void bash_values(struct buf *b, enum value_kind kind, const char *action)
{
	struct buf seen = BUF_INIT;
	buf_append_str(&seen, " ");
	for (const struct cli_cmd *c = cli_commands; c->name; c++)
		for (const struct config_key *k = c->keys; k && k->name; k++) {
			char flag[96];
			snprintf(flag, sizeof flag, " --%s ", k->name);
			if (value_kind(k) != kind || strstr(buf_cstr(&seen), flag))
				continue;
			buf_printf(b, "%s--%s", seen.len > 1 ? "|" : "\t\t", k->name);
			if (k->short_name)
				buf_printf(b, "|-%c", k->short_name);
			buf_append_str(&seen, flag + 1);
		}
	if (seen.len > 1)
		buf_printf(b, ")\n\t\t\t%s\n\t\t\treturn ;;\n", action);
	buf_close(&seen);
}

static void bash_words(struct buf *b)
{
	for (const struct cli_cmd *c = cli_commands; c->name; c++)
		for (const struct config_key *k = c->keys; k && k->name; k++) {
			char flag[96];
			snprintf(flag, sizeof flag, "\t\t--%s)", k->name);
			if (value_kind(k) != VALUE_WORDS || strstr(buf_cstr(b), flag))
				continue;
			struct buf w = BUF_INIT;
			buf_append_str(&w, k->metavar);
			for (size_t i = 0; i < w.len; i++)
				if (w.ptr[i] == '|')
					w.ptr[i] = ' ';
			buf_printf(b,
				   "%s\n\t\t\tCOMPREPLY=($(compgen -W \"%s\" -- \"$cur\"))\n"
				   "\t\t\treturn ;;\n",
				   flag, buf_cstr(&w));
			buf_close(&w);
		}
}

static void bash_flags(struct buf *b)
{
	for (const struct cli_cmd *c = cli_commands; c->name; c++) {
		buf_printf(b, "\t\"%s\") flags=\"", c->name);
		for (const struct config_key *k = c->keys; k && k->name; k++) {
			buf_printf(b, "--%s ", k->name);
			if (k->short_name)
				buf_printf(b, "-%c ", k->short_name);
		}
		buf_append_str(b, "--help -h\" ;;\n");
	}
}

static void print_bash(FILE *f)
{
	struct buf b = BUF_INIT, top = BUF_INIT;
	command_words(&top, NULL);
	buf_printf(&b,
		   "# bash completion for syncbit: source <(syncbit completion bash)\n"
		   "_syncbit() {\n"
		   "\tlocal cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n"
		   "\tlocal cmd=${COMP_WORDS[1]} first=2 flags=\n"
		   "\tif [ \"$COMP_CWORD\" -eq 1 ]; then\n"
		   "\t\tCOMPREPLY=($(compgen -W \"%s\" -- \"$cur\"))\n\t\treturn\n\tfi\n"
		   "\tcase $cmd in\n",
		   buf_cstr(&top));
	for (const char *g = buf_cstr(&top); *g;) {
		size_t len = strcspn(g, " ");
		char group[32];
		snprintf(group, sizeof group, "%.*s", (int)len, g);
		if (cli_is_group(group)) {
			struct buf subs = BUF_INIT;
			command_words(&subs, group);
			buf_printf(
			    &b,
			    "\t%s)\n\t\tif [ \"$COMP_CWORD\" -eq 2 ]; then\n"
			    "\t\t\tCOMPREPLY=($(compgen -W \"%s\" -- \"$cur\"))\n"
			    "\t\t\treturn\n\t\tfi\n\t\tcmd=\"$cmd ${COMP_WORDS[2]}\" first=3 ;;\n",
			    group, buf_cstr(&subs));
			buf_close(&subs);
		}
		g += len + (g[len] == ' ');
	}
	buf_append_str(&b, "\tesac\n\tcase $prev in\n");
	bash_values(&b, VALUE_DIR, "COMPREPLY=($(compgen -d -- \"$cur\"))");
	bash_values(&b, VALUE_FILE, "COMPREPLY=($(compgen -f -- \"$cur\"))");
	bash_words(&b);
	bash_values(&b, VALUE_OTHER, "COMPREPLY=()");
	buf_append_str(&b, "\tesac\n\tcase $cmd in\n");
	bash_flags(&b);
	buf_append_str(&b, "\tesac\n"
			   "\tif [[ $cur == -* ]]; then\n"
			   "\t\tCOMPREPLY=($(compgen -W \"$flags\" -- \"$cur\"))\n"
			   "\telse\n\t\tCOMPREPLY=($(compgen -f -- \"$cur\"))\n\tfi\n"
			   "}\ncomplete -F _syncbit syncbit\n");
	fwrite(b.ptr, 1, b.len, f);
	buf_close(&b);
	buf_close(&top);
}

/* ---- zsh ------------------------------------------------------------------- */

/* Text inside a single-quoted _arguments spec: quotes closed and reopened,
 * brackets and colons escaped. */
static void zsh_text(struct buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\'')
			buf_append_str(b, "'\\''");
		else if (strchr("[]:\\", *s))
			buf_printf(b, "\\%c", *s);
		else
			buf_append(b, s, 1);
	}
}

static void zsh_action(struct buf *b, const struct config_key *k)
{
	switch (value_kind(k)) {
	case VALUE_DIR:
		buf_append_str(b, ":_files -/");
		break;
	case VALUE_FILE:
		buf_append_str(b, ":_files");
		break;
	case VALUE_WORDS:
		buf_append_str(b, ":(");
		for (const char *p = k->metavar; *p; p++)
			buf_printf(b, "%c", *p == '|' ? ' ' : *p);
		buf_append_str(b, ")");
		break;
	default:
		buf_append_str(b, ": ");
		break;
	}
}

static void zsh_spec(struct buf *b, const struct config_key *k, int use_short)
{
	if (use_short)
		buf_printf(b, " \\\n\t\t\t'-%c%s[", k->short_name, k->metavar ? "+" : "");
	else
		buf_printf(b, " \\\n\t\t\t'--%s%s[", k->name, k->metavar ? "=" : "");
	zsh_text(b, k->help);
	buf_append_str(b, "]");
	if (k->metavar) {
		buf_append_str(b, ":");
		zsh_text(b, k->metavar);
		zsh_action(b, k);
	}
	buf_append_str(b, "'");
}

static void zsh_commands(struct buf *b, const char *var, const char *group)
{
	size_t n = group ? strlen(group) : 0;
	buf_printf(b, "\t\t%s=(", var);
	for (const struct cli_cmd *c = cli_commands; c->name; c++) {
		const char *word = c->name, *sp = strchr(c->name, ' ');
		if (group && (strncmp(c->name, group, n) || c->name[n] != ' '))
			continue;
		if (group)
			word += n + 1;
		else if (sp && c != cli_commands && !strncmp(c[-1].name, c->name, sp - c->name + 1))
			continue;
		buf_append_str(b, "\n\t\t\t'");
		if (!group && sp)
			buf_printf(b, "%.*s:%.*s commands", (int)(sp - word), word,
				   (int)(sp - word), word);
		else {
			zsh_text(b, word);
			buf_append_str(b, ":");
			zsh_text(b, c->summary);
		}
		buf_append_str(b, "'");
	}
	buf_append_str(b, ")\n");
}

static void print_zsh(FILE *f)
{
	struct buf b = BUF_INIT;
	buf_append_str(&b, "#compdef syncbit\n# zsh completion for syncbit: syncbit completion zsh "
			   ">\"${fpath[1]}/_syncbit\"\n_syncbit() {\n\tlocal -a cmds subs\n"
			   "\tif (( CURRENT == 2 )); then\n");
	zsh_commands(&b, "cmds", NULL);
	buf_append_str(&b, "\t\t_describe -t commands 'syncbit command' cmds\n\t\treturn\n\tfi\n"
			   "\tlocal cmd=$words[2]\n\tcase $cmd in\n");
	for (const struct cli_cmd *c = cli_commands; c->name; c++) {
		const char *sp = strchr(c->name, ' ');
		if (!sp || (c != cli_commands && !strncmp(c[-1].name, c->name, sp - c->name + 1)))
			continue;
		char group[32];
		snprintf(group, sizeof group, "%.*s", (int)(sp - c->name), c->name);
		buf_printf(&b, "\t%s)\n\t\tif (( CURRENT == 3 )); then\n", group);
		zsh_commands(&b, "subs", group);
		buf_printf(&b,
			   "\t\t\t_describe -t commands 'syncbit %s command' subs\n\t\t\treturn\n"
			   "\t\tfi\n\t\tcmd=\"$cmd $words[3]\"\n\t\tshift words\n"
			   "\t\t(( CURRENT-- )) ;;\n",
			   group);
	}
	buf_append_str(&b, "\tesac\n\tshift words\n\t(( CURRENT-- ))\n\tcase $cmd in\n");
	for (const struct cli_cmd *c = cli_commands; c->name; c++) {
		buf_printf(&b, "\t\"%s\")\n\t\t_arguments -s -S", c->name);
		for (const struct config_key *k = c->keys; k && k->name; k++) {
			zsh_spec(&b, k, 0);
			if (k->short_name)
				zsh_spec(&b, k, 1);
		}
		buf_append_str(&b, " \\\n\t\t\t'(- *)'{-h,--help}'[this help]' \\\n"
				   "\t\t\t'*:argument:_files' ;;\n");
	}
	buf_append_str(&b, "\tesac\n}\n_syncbit \"$@\"\n");
	fwrite(b.ptr, 1, b.len, f);
	buf_close(&b);
}

int cli_print_completion(FILE *f, const char *shell)
{
	if (!strcmp(shell, "bash"))
		print_bash(f);
	else if (!strcmp(shell, "zsh"))
		print_zsh(f);
	else
		return SB_ENOTFOUND;
	return 0;
}
