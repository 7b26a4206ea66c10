/* The command and flag tables, and what is generated from them: help, the
 * manual page, the bash completion. */
#include "tests/unit/testutil.h"

#include "cli/cli.h"
#include "common/err.h"

/* What cmd's --help prints (heap string). */
static char *flags_text(const struct cli_cmd *c)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	cli_print_flags(f, c);
	fclose(f);
	return out;
}

/* Every flag says what its value is: no "VALUE", no metavar on a yes/no
 * flag; names and short names are unique within a command. */
static void test_tables_are_truthful(void **state)
{
	for (const struct cli_cmd *c = cli_commands; c->name; c++) {
		assert_non_null(c->usage);
		assert_non_null(c->summary);
		assert_non_null(c->run);
		for (const struct config_key *k = c->keys; k && k->name; k++) {
			if (k->kind == CONFIG_BOOL && k->metavar)
				fail_msg("%s --%s: a yes/no flag with a metavar", c->name, k->name);
			if (k->kind != CONFIG_BOOL && (!k->metavar || !strcmp(k->metavar, "VALUE")))
				fail_msg("%s --%s: no metavar", c->name, k->name);
			if (!strcmp(k->name, "version") || !strcmp(k->name, "help"))
				fail_msg("%s --%s shadows the program's flag", c->name, k->name);
			for (const struct config_key *o = k + 1; o->name; o++) {
				if (!strcmp(o->name, k->name))
					fail_msg("%s: --%s twice", c->name, k->name);
				if (k->short_name && o->short_name == k->short_name)
					fail_msg("%s: -%c twice", c->name, k->short_name);
			}
		}
	}
}

static const char *default_of(const struct cli_cmd *c, const char *key)
{
	for (const struct config_key *k = c->keys; k && k->name; k++)
		if (!strcmp(k->name, key))
			return k->defval;
	return NULL;
}

/* The long-running commands log at info, the others at warn. */
static void test_log_level_defaults(void **state)
{
	for (const struct cli_cmd *c = cli_commands; c->name; c++) {
		if (!c->keys)
			continue;
		int service = !strcmp(c->name, "daemon") || !strcmp(c->name, "scheduler") ||
			      !strcmp(c->name, "sync");
		assert_string_equal(default_of(c, "log-level"), service ? "info" : "warn");
	}
}

static void test_short_flags_and_metavars_in_help(void **state)
{
	char *pull = flags_text(cli_command("pull"));
	assert_non_null(strstr(pull, "-j, --jobs N "));
	assert_non_null(strstr(pull, "-o, --to DIR "));
	assert_non_null(strstr(pull, "-q, --quiet "));
	assert_non_null(strstr(pull, "-v, --verbose "));
	assert_non_null(strstr(pull, "-h, --help "));
	assert_non_null(strstr(pull, "--model-version N "));
	assert_null(strstr(pull, "VALUE"));
	free(pull);
	char *status = flags_text(cli_command("status"));
	assert_non_null(strstr(status, "--scheduler HOST:PORT"));
	assert_non_null(strstr(status, "--socket PATH"));
	free(status);
}

static void test_help_lists_every_command(void **state)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	cli_print_help(f);
	fclose(f);
	for (const struct cli_cmd *c = cli_commands; c->name; c++) {
		char want[128];
		snprintf(want, sizeof want, "  syncbit %s", c->name);
		if (!strstr(out, want))
			fail_msg("help lacks '%s'", c->name);
	}
	assert_non_null(strstr(out, "syncbit node rm NAME"));
	free(out);
	assert_true(cli_is_group("dataset"));
	assert_true(cli_is_group("node"));
	assert_true(cli_is_group("cache"));
	assert_false(cli_is_group("pull"));
	assert_false(cli_is_group("data"));
}

/* text in a new temp file; its path (heap). */
static char *write_tmp(const char *text)
{
	char *path = strdup("/tmp/syncbit-unit-cli-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

/* Run the shell command fmt with the path of a temp file holding text
 * (and a second file when fmt names two); the exit status. */
static int run_on(const char *text, const char *fmt, const char *text2)
{
	char *path = write_tmp(text), *path2 = text2 ? write_tmp(text2) : NULL, cmd[1024];
	snprintf(cmd, sizeof cmd, fmt, path, path2);
	int rc = system(cmd);
	unlink(path);
	free(path);
	if (path2)
		unlink(path2);
	free(path2);
	return rc;
}

static char *completion(const char *shell)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	assert_int_equal(cli_print_completion(f, shell), 0);
	fclose(f);
	return out;
}

/* The bash script parses, and completes commands, subcommands, flags and
 * the values of DIR and word flags. */
static void test_bash_completion(void **state)
{
	char *s = completion("bash");
	assert_int_equal(run_on(s, "bash -n %s", NULL), 0);
	const char *probe =
	    ". \"$1\"; c() { COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); _syncbit; "
	    "echo \"${COMPREPLY[*]}\"; }; "
	    "[ \"$(c syncbit pu)\" = pull ] && "
	    "[ \"$(c syncbit dataset up)\" = update ] && "
	    "[ \"$(c syncbit dataset update --rep)\" = '' ] && "
	    "[ \"$(c syncbit dataset add --rep)\" = --replace ] && "
	    "[ \"$(c syncbit pull --layout h)\" = hf-cache ] && "
	    "[ \"$(c syncbit pull --model-v)\" = --model-version ] && "
	    "[ \"$(c syncbit gc --st)\" = --stale ] && "
	    "[ \"$(c syncbit cache l)\" = ls ] && "
	    "c syncbit pull --to / | grep -q /tmp";
	assert_int_equal(run_on(probe, "bash %s %s", s), 0);
	free(s);
	char *z = completion("zsh");
	assert_non_null(strstr(z, "#compdef syncbit"));
	assert_non_null(strstr(z, "'--scheduler-grace=["));
	assert_non_null(strstr(z, "HOST\\:PORT"));
	free(z);
	FILE *f = fopen("/dev/null", "w");
	assert_int_equal(cli_print_completion(f, "fish"), SB_ENOTFOUND);
	fclose(f);
}

/* The manual page has every command and flag and groff finds nothing to
 * warn about. */
static void test_man_page(void **state)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	cli_print_man(f);
	fclose(f);
	assert_true(!strncmp(out, ".TH SYNCBIT 1", 13));
	assert_non_null(strstr(out, ".SS \"syncbit node rm\""));
	assert_non_null(strstr(out, "\\fB\\-j\\fR, \\fB\\-\\-jobs\\fR \\fIN\\fR"));
	if (system("command -v groff >/dev/null") == 0)
		assert_int_equal(
		    run_on(out, "groff -man -Tutf8 -ww -z %s 2>&1 | grep . && exit 1; exit 0",
			   NULL),
		    0);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tables_are_truthful),
	    cmocka_unit_test(test_log_level_defaults),
	    cmocka_unit_test(test_short_flags_and_metavars_in_help),
	    cmocka_unit_test(test_help_lists_every_command),
	    cmocka_unit_test(test_bash_completion),
	    cmocka_unit_test(test_man_page),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
