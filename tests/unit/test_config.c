#include "tests/unit/testutil.h"

#include <errno.h>

#include "common/config.h"
#include "common/err.h"

static const struct config_key keys[] = {
    {"config", NULL, 0, "YAML file", "FILE", 'c'},
    {"block-size", "4MiB", 0, "block size", "SIZE", 0},
    {"jobs", "8", 0, "parallel transfers", "N", 'j'},
    {"resume", "true", 1, "resume partial transfers", NULL, 'r'},
    {"delete", NULL, 1, "delete extra files", NULL, 'd'},
    {"labels", NULL, 0, "k=v list", "k=v[,k=v]", 0},
    {"token", NULL, 0, "secret", "TOKEN", 0},
    {NULL, NULL, 0, NULL, NULL, 0},
};

static const char *const env_vars[] = {
    "SYNCBIT_CONFIG", "SYNCBIT_BLOCK_SIZE", "SYNCBIT_JOBS",  "SYNCBIT_RESUME",
    "SYNCBIT_DELETE", "SYNCBIT_LABELS",	    "SYNCBIT_TOKEN",
};

struct fixture {
	char *dir;
	struct config cfg;
	char **pos;
	int npos;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	for (size_t i = 0; i < sizeof env_vars / sizeof env_vars[0]; i++)
		unsetenv(env_vars[i]);
	f->dir = testutil_mkdtemp();
	config_init(&f->cfg, keys);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof env_vars / sizeof env_vars[0]; i++)
		unsetenv(env_vars[i]);
	config_close(&f->cfg);
	free(f->pos);
	testutil_rmtree(f->dir);
	free(f);
	return 0;
}

/* Writes text to DIR/name; returns the path (static buffer per call site). */
static char *write_file(struct fixture *f, const char *name, const char *text)
{
	static char path[8][512];
	static int next;
	char *p = path[next++ % 8];
	FILE *fp;

	snprintf(p, 512, "%s/%s", f->dir, name);
	fp = fopen(p, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	return p;
}

static int parse(struct fixture *f, char **argv)
{
	int argc = 0;

	while (argv[argc])
		argc++;
	free(f->pos);
	f->pos = NULL;
	return config_parse_args(&f->cfg, argc, argv, &f->pos, &f->npos);
}

/* ---- defaults, set, get ---- */

static void test_defaults(void **state)
{
	struct fixture *f = *state;

	assert_string_equal(config_get(&f->cfg, "block-size"), "4MiB");
	assert_string_equal(config_get(&f->cfg, "jobs"), "8");
	assert_null(config_get(&f->cfg, "token"));
	assert_null(config_get(&f->cfg, "nonexistent"));
	assert_int_equal(config_origin_of(&f->cfg, "jobs"), CONFIG_DEFAULT);
	assert_int_equal(f->cfg.n, 7);
	assert_null(f->cfg.error);
}

static void test_set_respects_origin(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(config_set(&f->cfg, "jobs", "3", CONFIG_FLAG), 0);
	assert_int_equal(config_set(&f->cfg, "jobs", "4", CONFIG_ENV), 0);
	assert_string_equal(config_get(&f->cfg, "jobs"), "3");
	assert_int_equal(config_origin_of(&f->cfg, "jobs"), CONFIG_FLAG);
	assert_int_equal(config_set(&f->cfg, "jobs", "5", CONFIG_FLAG), 0);
	assert_string_equal(config_get(&f->cfg, "jobs"), "5");

	assert_int_equal(config_set(&f->cfg, "jbos", "5", CONFIG_FLAG), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "unknown option '--jbos'");
}

static void test_env(void **state)
{
	struct fixture *f = *state;

	setenv("SYNCBIT_BLOCK_SIZE", "1M", 1);
	setenv("SYNCBIT_TOKEN", "", 1);	       /* empty counts as unset */
	setenv("SYNCBIT_block_size", "2M", 1); /* wrong case: not ours */
	assert_int_equal(config_load_env(&f->cfg), 0);
	unsetenv("SYNCBIT_block_size");
	assert_string_equal(config_get(&f->cfg, "block-size"), "1M");
	assert_int_equal(config_origin_of(&f->cfg, "block-size"), CONFIG_ENV);
	assert_null(config_get(&f->cfg, "token"));
	assert_int_equal(config_origin_of(&f->cfg, "token"), CONFIG_DEFAULT);
}

/* ---- precedence ---- */

static void test_precedence_file_env_flag(void **state)
{
	struct fixture *f = *state;
	char *file = write_file(f, "c.yaml",
				"block-size: 8MiB\n"
				"jobs: 3\n"
				"token: from-file\n"
				"labels: [zone=a, gpu=h100]\n");
	char *argv[] = {"--config", file, "--block-size", "16M", "SRC", NULL};

	setenv("SYNCBIT_JOBS", "5", 1);
	setenv("SYNCBIT_BLOCK_SIZE", "12M", 1);
	assert_int_equal(parse(f, argv), 0);
	assert_string_equal(config_get(&f->cfg, "block-size"), "16M");
	assert_int_equal(config_origin_of(&f->cfg, "block-size"), CONFIG_FLAG);
	assert_string_equal(config_get(&f->cfg, "jobs"), "5");
	assert_int_equal(config_origin_of(&f->cfg, "jobs"), CONFIG_ENV);
	assert_string_equal(config_get(&f->cfg, "token"), "from-file");
	assert_int_equal(config_origin_of(&f->cfg, "token"), CONFIG_FILE);
	assert_string_equal(config_get(&f->cfg, "labels"), "zone=a,gpu=h100");
	assert_string_equal(config_get(&f->cfg, "resume"), "true");
	assert_int_equal(config_origin_of(&f->cfg, "resume"), CONFIG_DEFAULT);
	assert_string_equal(config_get(&f->cfg, "config"), file);
	assert_int_equal(f->npos, 1);
	assert_string_equal(f->pos[0], "SRC");
	assert_null(f->pos[1]);
}

/* --config after the flags still loads first: flags keep winning. */
static void test_config_flag_order(void **state)
{
	struct fixture *f = *state;
	char *file = write_file(f, "c.yaml", "jobs: 3\nblock-size: 8M\n");
	char arg[600];
	char *argv[] = {"A", "--jobs", "7", "B", arg, NULL};

	snprintf(arg, sizeof arg, "--config=%s", file);
	assert_int_equal(parse(f, argv), 0);
	assert_string_equal(config_get(&f->cfg, "jobs"), "7");
	assert_string_equal(config_get(&f->cfg, "block-size"), "8M");
	assert_int_equal(f->npos, 2);
	assert_string_equal(f->pos[0], "A");
	assert_string_equal(f->pos[1], "B");
}

static void test_config_from_env(void **state)
{
	struct fixture *f = *state;
	char *file = write_file(f, "env.yaml", "jobs: 11\n");
	char *argv[] = {NULL};

	setenv("SYNCBIT_CONFIG", file, 1);
	assert_int_equal(parse(f, argv), 0);
	assert_string_equal(config_get(&f->cfg, "jobs"), "11");
	assert_int_equal(config_origin_of(&f->cfg, "jobs"), CONFIG_FILE);
	assert_int_equal(f->npos, 0);
}

static void test_config_missing(void **state)
{
	struct fixture *f = *state;
	char *argv[] = {"--config", "/nonexistent/syncbit.yaml", NULL};

	assert_int_equal(parse(f, argv), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "/nonexistent/syncbit.yaml: "
					  "No such file or directory");
	assert_null(f->pos);
	assert_int_equal(f->npos, 0);

	assert_int_equal(config_load_file(&f->cfg, "/nonexistent/x.yaml"), -ENOENT);
	assert_int_equal(config_load_file(&f->cfg, f->dir), -EISDIR);
}

/* A default config file is optional; a named one is not. */
static void test_default_config_file_optional(void **state)
{
	struct fixture *f = *state;
	static const struct config_key dkeys[] = {
	    {"config", "/nonexistent/default.yaml", 0, "", "FILE", 0},
	    {"jobs", "8", 0, "", "N", 0},
	    {NULL, NULL, 0, NULL, NULL, 0},
	};
	struct config cfg;
	char *argv[] = {"--jobs", "2", NULL};
	char **pos = NULL;
	int npos = -1;

	config_init(&cfg, dkeys);
	assert_int_equal(config_parse_args(&cfg, 2, argv, &pos, &npos), 0);
	assert_string_equal(config_get(&cfg, "jobs"), "2");
	assert_int_equal(npos, 0);
	free(pos);
	config_close(&cfg);
	(void)f;
}

static void test_no_config_key_means_plain_flag_error(void **state)
{
	static const struct config_key nkeys[] = {
	    {"jobs", "8", 0, "", "N", 0},
	    {NULL, NULL, 0, NULL, NULL, 0},
	};
	struct config cfg;
	char *argv[] = {"--config", "x.yaml", NULL};
	char **pos = NULL;
	int npos = 0;

	config_init(&cfg, nkeys);
	assert_int_equal(config_parse_args(&cfg, 2, argv, &pos, &npos), SB_ECONFIG);
	assert_string_equal(cfg.error, "unknown option '--config'");
	config_close(&cfg);
}

/* ---- YAML ---- */

static void expect_file_error(struct fixture *f, const char *text, const char *want_suffix)
{
	char *file = write_file(f, "bad.yaml", text);
	char want[1024];

	snprintf(want, sizeof want, "%s:%s", file, want_suffix);
	assert_int_equal(config_load_file(&f->cfg, file), SB_ECONFIG);
	assert_non_null(f->cfg.error);
	if (strncmp(f->cfg.error, want, strlen(want)) != 0)
		fail_msg("error '%s', want prefix '%s'", f->cfg.error, want);
	assert_null(strchr(f->cfg.error, '\n'));
}

static void test_yaml_unknown_key(void **state)
{
	struct fixture *f = *state;
	char *file = write_file(f, "u.yaml", "# settings\njobs: 3\nblok-size: 4MiB\n");
	char want[600];

	assert_int_equal(config_load_file(&f->cfg, file), SB_ECONFIG);
	snprintf(want, sizeof want, "%s:3: unknown key 'blok-size' (did you mean 'block-size'?)",
		 file);
	assert_string_equal(f->cfg.error, want);
	assert_true(f->cfg.file_error);
}

/* Keys other commands read are skipped, values of any shape; others fail. */
static int other_command_key(const char *key)
{
	return !strcmp(key, "listen") || !strcmp(key, "labels-of-daemon");
}

static void test_yaml_keys_of_other_commands(void **state)
{
	struct fixture *f = *state;
	char *file = write_file(f, "o.yaml",
				"listen: 0.0.0.0:7401\njobs: 3\nlabels-of-daemon: [a=b, c=d]\n");
	f->cfg.known = other_command_key;
	assert_int_equal(config_load_file(&f->cfg, file), 0);
	assert_string_equal(config_get(&f->cfg, "jobs"), "3");
	file = write_file(f, "o2.yaml", "listen: x\nlisten-typo: y\n");
	assert_int_equal(config_load_file(&f->cfg, file), SB_ECONFIG);
	assert_non_null(strstr(f->cfg.error, "o2.yaml:2: unknown key 'listen-typo'"));
}

static const struct config_key list_keys[] = {
    {"include", NULL, CONFIG_LIST, "take", "PATTERN", 0},
    {"exclude", NULL, CONFIG_LIST, "leave", "PATTERN", 0},
    {"config", NULL, 0, "YAML file", "FILE", 0},
    {NULL, NULL, 0, NULL, NULL, 0},
};

/* List keys repeat; their ranks interleave two lists as given; a higher
 * origin replaces a lower one's items. */
static void test_list_keys(void **state)
{
	struct fixture *f = *state;
	struct config cfg;
	char *argv[] = {"--include", "a", "--exclude=b", "--include", "c", NULL};
	char **pos = NULL;
	int npos = 0;
	size_t n = 0;
	const unsigned *ri, *re;
	setenv("SYNCBIT_EXCLUDE", "x\ny", 1);
	config_init(&cfg, list_keys);
	assert_int_equal(config_parse_args(&cfg, 5, argv, &pos, &npos), 0);
	char *const *inc = config_get_list(&cfg, "include", &n, &ri);
	assert_int_equal(n, 2);
	assert_string_equal(inc[0], "a");
	assert_string_equal(inc[1], "c");
	char *const *exc = config_get_list(&cfg, "exclude", &n, &re);
	assert_int_equal(n, 1); /* the flag replaced the environment's two */
	assert_string_equal(exc[0], "b");
	assert_true(ri[0] < re[0] && re[0] < ri[1]);
	assert_string_equal(config_get(&cfg, "include"), "a\nc");
	free(pos);
	config_close(&cfg);

	config_init(&cfg, list_keys);
	char *file = write_file(f, "l.yaml", "include: ['*/', '*.json']\n");
	char *argv2[] = {"--config", file, NULL};
	assert_int_equal(config_parse_args(&cfg, 2, argv2, &pos, &npos), 0);
	inc = config_get_list(&cfg, "include", &n, NULL);
	assert_int_equal(n, 2);
	assert_string_equal(inc[1], "*.json");
	exc = config_get_list(&cfg, "exclude", &n, NULL);
	assert_int_equal(n, 2); /* from the environment, one a line */
	assert_string_equal(exc[1], "y");
	unsetenv("SYNCBIT_EXCLUDE");
	free(pos);
	config_close(&cfg);
}

static void test_yaml_malformed_line(void **state)
{
	struct fixture *f = *state;

	expect_file_error(f, "jobs: 3\ntoken: x\nlabels: a: b\n",
			  "3: mapping values are not allowed in this context");
	expect_file_error(f, "jobs: 3\n\n\nlabels: [a, b\n",
			  "5: did not find expected ',' or ']' while parsing a "
			  "flow sequence started on line 4");
	expect_file_error(f, "jobs: \"unterminated\n",
			  "2: found unexpected end of stream while scanning a "
			  "quoted scalar started on line 1");
	expect_file_error(f, "\tjobs: 3\n",
			  "1: found character that cannot "
			  "start any token");
}

static void test_yaml_structure_errors(void **state)
{
	struct fixture *f = *state;

	expect_file_error(f, "- jobs\n- 3\n", "1: expected a mapping");
	expect_file_error(f, "jobs: 3\njobs: 4\n", "2: duplicate key 'jobs'");
	expect_file_error(f, "jobs:\n  max: 3\n", "2: key 'jobs': expected a value or a list");
	expect_file_error(f, "labels:\n  - [a]\n",
			  "2: key 'labels': list items must be plain values");
	expect_file_error(f, "config: other.yaml\n",
			  "1: key 'config' cannot be set in a config file");
	expect_file_error(f, "jobs: 3\n---\njobs: 4\n", "2: only one YAML document is allowed");
	expect_file_error(f, "a: &x 1\njobs: *x\n", "1: unknown key 'a'");
	expect_file_error(f, "token: &x 1\njobs: *x\n", "2: key 'jobs': aliases are not supported");
	expect_file_error(f, "plain words\n", "1: expected a mapping");
}

static void test_yaml_values(void **state)
{
	struct fixture *f = *state;
	char *file = write_file(f, "v.yaml",
				"---\n"
				"# a comment\n"
				"jobs: '12'\n"
				"token:\n" /* null: keep */
				"resume: off\n"
				"labels:\n  - a=1\n  - \"b=2\"\n"
				"block-size: \"1 GiB\"\n"
				"...\n");
	int v = -1;

	assert_int_equal(config_load_file(&f->cfg, file), 0);
	assert_string_equal(config_get(&f->cfg, "jobs"), "12");
	assert_null(config_get(&f->cfg, "token"));
	assert_string_equal(config_get(&f->cfg, "resume"), "off");
	assert_int_equal(config_get_bool(&f->cfg, "resume", &v), 0);
	assert_int_equal(v, 0);
	assert_string_equal(config_get(&f->cfg, "labels"), "a=1,b=2");
	assert_string_equal(config_get(&f->cfg, "block-size"), "1 GiB");
	assert_int_equal(config_origin_of(&f->cfg, "labels"), CONFIG_FILE);
	assert_int_equal(config_origin_of(&f->cfg, "token"), CONFIG_DEFAULT);
}

static void test_yaml_empty_files(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(config_load_file(&f->cfg, write_file(f, "e1.yaml", "")), 0);
	assert_int_equal(config_load_file(&f->cfg, write_file(f, "e2.yaml", "# only a comment\n")),
			 0);
	assert_int_equal(config_load_file(&f->cfg, write_file(f, "e3.yaml", "---\n")), 0);
	assert_int_equal(config_load_file(&f->cfg, write_file(f, "e4.yaml", "{}\n")), 0);
	assert_string_equal(config_get(&f->cfg, "jobs"), "8");
}

/* A file never overrides env or flags already set. */
static void test_yaml_below_env(void **state)
{
	struct fixture *f = *state;
	char *file = write_file(f, "p.yaml", "jobs: 3\ntoken: t\n");

	config_set(&f->cfg, "jobs", "9", CONFIG_ENV);
	assert_int_equal(config_load_file(&f->cfg, file), 0);
	assert_string_equal(config_get(&f->cfg, "jobs"), "9");
	assert_string_equal(config_get(&f->cfg, "token"), "t");
}

/* ---- flags ---- */

static void test_flag_forms(void **state)
{
	struct fixture *f = *state;
	char *argv[] = {"--jobs=4", "--token", "-secret-", "-",	 "--labels=", "--jobs",
			"6",	    "--",      "--delete", "-x", NULL};

	assert_int_equal(parse(f, argv), 0);
	assert_string_equal(config_get(&f->cfg, "jobs"), "6");
	assert_string_equal(config_get(&f->cfg, "token"), "-secret-");
	assert_string_equal(config_get(&f->cfg, "labels"), "");
	assert_null(config_get(&f->cfg, "delete"));
	assert_int_equal(f->npos, 3);
	assert_string_equal(f->pos[0], "-");
	assert_string_equal(f->pos[1], "--delete");
	assert_string_equal(f->pos[2], "-x");
}

static void test_bool_flags(void **state)
{
	struct fixture *f = *state;
	char *a1[] = {"--no-resume", "--delete", NULL};
	char *a2[] = {"--resume=no", "--delete=YES", NULL};
	char *a3[] = {"--delete", "X", NULL};
	int v = -1;

	assert_int_equal(parse(f, a1), 0);
	assert_string_equal(config_get(&f->cfg, "resume"), "false");
	assert_string_equal(config_get(&f->cfg, "delete"), "true");
	assert_int_equal(config_get_bool(&f->cfg, "resume", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(config_get_bool(&f->cfg, "delete", &v), 0);
	assert_int_equal(v, 1);

	assert_int_equal(parse(f, a2), 0);
	assert_string_equal(config_get(&f->cfg, "resume"), "false");
	assert_string_equal(config_get(&f->cfg, "delete"), "true");

	/* a bool flag never swallows the next argument */
	assert_int_equal(parse(f, a3), 0);
	assert_int_equal(f->npos, 1);
	assert_string_equal(f->pos[0], "X");
}

static void test_bool_flag_errors(void **state)
{
	struct fixture *f = *state;
	char *a1[] = {"--resume=maybe", NULL};
	char *a2[] = {"--no-resume=1", NULL};
	char *a3[] = {"--no-jobs", NULL};
	char *a4[] = {"--no-such", NULL};

	assert_int_equal(parse(f, a1), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "--resume: expected true or false, got 'maybe'");
	assert_int_equal(parse(f, a2), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "--no-resume takes no value");
	assert_int_equal(parse(f, a3), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "unknown option '--no-jobs' "
					  "('--jobs' is not a yes/no option)");
	assert_int_equal(parse(f, a4), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "unknown option '--no-such'");
	/* nothing applied by a failed parse */
	assert_string_equal(config_get(&f->cfg, "resume"), "true");
}

static void test_bool_values_from_env(void **state)
{
	struct fixture *f = *state;
	int v = -1;

	setenv("SYNCBIT_DELETE", "On", 1);
	config_load_env(&f->cfg);
	assert_int_equal(config_get_bool(&f->cfg, "delete", &v), 0);
	assert_int_equal(v, 1);
	setenv("SYNCBIT_RESUME", "nope", 1);
	config_load_env(&f->cfg);
	assert_int_equal(config_get_bool(&f->cfg, "resume", &v), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "--resume: expected true or false, got 'nope' "
					  "(from SYNCBIT_RESUME)");
}

static void test_flag_errors(void **state)
{
	struct fixture *f = *state;
	char *a1[] = {"SRC", "--jobs", NULL};
	char *a2[] = {"--blok-size", "4M", NULL};
	char *a3[] = {"--zzzzzz", NULL};
	char *a4[] = {"-z", "4", NULL};
	char *a5[] = {"--=x", NULL};

	assert_int_equal(parse(f, a1), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "--jobs: missing value");
	assert_null(f->pos);
	assert_int_equal(f->npos, 0);
	assert_int_equal(parse(f, a2), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "unknown option '--blok-size' "
					  "(did you mean '--block-size'?)");
	assert_int_equal(parse(f, a3), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "unknown option '--zzzzzz'");
	assert_int_equal(parse(f, a4), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "unknown option '-z'");
	assert_int_equal(parse(f, a5), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "unknown option '--'");
}

/* Short aliases from the key table: -j N, -jN, booleans alone or
 * together, -c for the config file; the same precedence as long flags. */
static void test_short_flags(void **state)
{
	struct fixture *f = *state;
	const char *path = write_file(f, "c.yaml", "jobs: 3\ntoken: fromfile\n");
	char *a1[] = {"-j", "4", "SRC", "-d", NULL};
	char *a2[] = {"-j7", "--no-resume", NULL};
	char *a3[] = {"-dr", "X", NULL};
	char *a4[] = {"-c", (char *)path, "-j", "5", NULL};
	char *a5[] = {"-dj", "9", NULL};
	char *a6[] = {"-dz", NULL};
	char *a7[] = {"-j", NULL};

	assert_int_equal(parse(f, a1), 0);
	assert_string_equal(config_get(&f->cfg, "jobs"), "4");
	assert_string_equal(config_get(&f->cfg, "delete"), "true");
	assert_int_equal(f->npos, 1);
	assert_string_equal(f->pos[0], "SRC");
	assert_int_equal(parse(f, a2), 0);
	assert_string_equal(config_get(&f->cfg, "jobs"), "7");
	assert_int_equal(parse(f, a3), 0);
	assert_string_equal(config_get(&f->cfg, "delete"), "true");
	assert_string_equal(config_get(&f->cfg, "resume"), "true");
	assert_int_equal(f->npos, 1);
	assert_int_equal(parse(f, a4), 0);
	assert_string_equal(config_get(&f->cfg, "jobs"), "5");
	assert_string_equal(config_get(&f->cfg, "token"), "fromfile");
	assert_int_equal(parse(f, a5), 0);
	assert_string_equal(config_get(&f->cfg, "jobs"), "9");
	assert_int_equal(parse(f, a6), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "unknown option '-z' in '-dz'");
	assert_int_equal(parse(f, a7), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "-j (--jobs): missing value");
}

static void test_positional_not_wanted(void **state)
{
	struct fixture *f = *state;
	char *argv[] = {"--jobs", "2", "stray", NULL};
	int npos = 5;

	assert_int_equal(config_parse_args(&f->cfg, 3, argv, NULL, &npos), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "unexpected argument 'stray'");
	assert_int_equal(npos, 0);
	assert_int_equal(config_parse_args(&f->cfg, 2, argv, NULL, NULL), 0);
	assert_string_equal(config_get(&f->cfg, "jobs"), "2");
}

/* ---- typed readers ---- */

static void test_get_u64(void **state)
{
	struct fixture *f = *state;
	static const char *const bad[] = {"x",	"0",	"257", "-1", " 5",
					  "5 ", "0x10", "+5",  "",   "18446744073709551616"};
	uint64_t v = 0;

	assert_int_equal(config_get_u64(&f->cfg, "jobs", 1, 256, &v), 0);
	assert_int_equal(v, 8);
	config_set(&f->cfg, "jobs", "256", CONFIG_FLAG);
	assert_int_equal(config_get_u64(&f->cfg, "jobs", 1, 256, &v), 0);
	assert_int_equal(v, 256);
	config_set(&f->cfg, "jobs", "18446744073709551615", CONFIG_FLAG);
	assert_int_equal(config_get_u64(&f->cfg, "jobs", 0, UINT64_MAX, &v), 0);
	assert_true(v == UINT64_MAX);

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char want[256];

		v = 77;
		config_set(&f->cfg, "jobs", bad[i], CONFIG_FLAG);
		assert_int_equal(config_get_u64(&f->cfg, "jobs", 1, 256, &v), SB_ECONFIG);
		assert_int_equal(v, 77);
		snprintf(want, sizeof want, "--jobs: expected a number from 1 to 256, got '%s'",
			 bad[i]);
		assert_string_equal(f->cfg.error, want);
	}
}

static void test_get_u64_env_hint_and_unset(void **state)
{
	struct fixture *f = *state;
	uint64_t v;

	setenv("SYNCBIT_JOBS", "x", 1);
	config_load_env(&f->cfg);
	assert_int_equal(config_get_u64(&f->cfg, "jobs", 1, 256, &v), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "--jobs: expected a number from 1 "
					  "to 256, got 'x' (from SYNCBIT_JOBS)");
	assert_int_equal(config_get_u64(&f->cfg, "token", 1, 2, &v), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "--token: no value given");
	assert_int_equal(config_get_u64(&f->cfg, "nope", 1, 2, &v), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "unknown option '--nope'");
}

static void test_get_size(void **state)
{
	struct fixture *f = *state;
	uint64_t v = 0;

	assert_int_equal(config_get_size(&f->cfg, "block-size", 4096, 1ull << 30, &v), 0);
	assert_int_equal(v, 4ull << 20);
	config_set(&f->cfg, "block-size", "4X", CONFIG_FLAG);
	assert_int_equal(config_get_size(&f->cfg, "block-size", 4096, 1ull << 30, &v), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "--block-size: expected a size like "
					  "4MiB from 4KiB to 1GiB, got '4X'");
	config_set(&f->cfg, "block-size", "2G", CONFIG_FLAG);
	assert_int_equal(config_get_size(&f->cfg, "block-size", 1000, 1ull << 30, &v), SB_ECONFIG);
	assert_string_equal(f->cfg.error, "--block-size: expected a size like "
					  "4MiB from 1000 to 1GiB, got '2G'");
	config_set(&f->cfg, "block-size", "1K", CONFIG_FLAG);
	assert_int_equal(config_get_size(&f->cfg, "block-size", 4096, 1ull << 30, &v), SB_ECONFIG);
}

struct size_case {
	const char *s;
	uint64_t want;
};

static void test_parse_size_good(void **state)
{
	static const struct size_case cases[] = {
	    {"0", 0},
	    {"4194304", 4194304},
	    {"4MiB", 4ull << 20},
	    {"4M", 4ull << 20},
	    {"4m", 4ull << 20},
	    {"4mib", 4ull << 20},
	    {"4 MiB", 4ull << 20},
	    {"4MB", 4000000},
	    {"4mb", 4000000},
	    {"1K", 1024},
	    {"1k", 1024},
	    {"1KiB", 1024},
	    {"1KB", 1000},
	    {"3G", 3ull << 30},
	    {"3GiB", 3ull << 30},
	    {"3GB", 3000000000ull},
	    {"2T", 2ull << 40},
	    {"2TiB", 2ull << 40},
	    {"2TB", 2000000000000ull},
	    {"512B", 512},
	    {"512b", 512},
	    {"1.5GiB", 3ull << 29},
	    {"1.5K", 1536},
	    {"0.5M", 512 * 1024},
	    {"2.25KB", 2250},
	    {"1.0", 1},
	    {"007", 7},
	    {"18446744073709551615", UINT64_MAX},
	    {"17179869183G", UINT64_MAX - (1ull << 30) + 1},
	    {"16777215.5T", (16777215ull << 40) + (1ull << 39)},
	    {"18446744073709551.6KB", 18446744073709551600ull},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint64_t v = 12345;

		if (config_parse_size(cases[i].s, &v) != 0)
			fail_msg("'%s' rejected", cases[i].s);
		if (v != cases[i].want)
			fail_msg("'%s' = %llu, want %llu", cases[i].s, (unsigned long long)v,
				 (unsigned long long)cases[i].want);
	}
}

static void test_parse_size_bad(void **state)
{
	static const char *const bad[] = {
	    "",
	    "K",
	    "MiB",
	    "-1",
	    "+1",
	    " 4M",
	    "4M ",
	    "4  M",
	    "4X",
	    "4MiBs",
	    "4Mi",
	    "4iB",
	    "4 ",
	    "1.",
	    ".5K",
	    "1.5.5K",
	    "0.1K",
	    "1.5",
	    "1.0000000001K",
	    "16EiB",
	    "4P",
	    "1e6",
	    "0x10",
	    "4,096",
	    "18446744073709551616", /* 2^64 */
	    "99999999999999999999999",
	    "17179869184G",	     /* 2^64 */
	    "16777216T",	     /* 2^64 */
	    "16777215.99999999T",    /* not whole bytes */
	    "18446744073709551.7KB", /* 2^64 + 84 */
	    "18014398509481984K",    /* 2^64 */
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		uint64_t v = 12345;

		if (config_parse_size(bad[i], &v) != SB_ECONFIG)
			fail_msg("'%s' accepted as %llu", bad[i], (unsigned long long)v);
		assert_int_equal(v, 12345);
	}
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_defaults),
	    T(test_set_respects_origin),
	    T(test_env),
	    T(test_precedence_file_env_flag),
	    T(test_config_flag_order),
	    T(test_config_from_env),
	    T(test_config_missing),
	    T(test_default_config_file_optional),
	    T(test_no_config_key_means_plain_flag_error),
	    T(test_yaml_unknown_key),
	    T(test_yaml_keys_of_other_commands),
	    T(test_list_keys),
	    T(test_yaml_malformed_line),
	    T(test_yaml_structure_errors),
	    T(test_yaml_values),
	    T(test_yaml_empty_files),
	    T(test_yaml_below_env),
	    T(test_flag_forms),
	    T(test_bool_flags),
	    T(test_bool_flag_errors),
	    T(test_bool_values_from_env),
	    T(test_flag_errors),
	    T(test_short_flags),
	    T(test_positional_not_wanted),
	    T(test_get_u64),
	    T(test_get_u64_env_hint_and_unset),
	    T(test_get_size),
	    T(test_parse_size_good),
	    T(test_parse_size_bad),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
