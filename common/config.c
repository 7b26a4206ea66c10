#include "common/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"

#define CONFIG_ENV_PREFIX "SYNCBIT_"
#define CONFIG_FILE_KEY	  "config"
/* Suggest a known flag for a misspelt one within this edit distance. */
#define CONFIG_SUGGEST_DIST 2
#define CONFIG_NAME_MAX	    64
/* Digits after the decimal point a size may carry ("1.5GiB"). */
#define CONFIG_SIZE_FRAC_MAX 9

static void config_error(struct config *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void config_error(struct config *cfg, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	free(cfg->error);
	cfg->error = buf_steal(&b);
}

static struct config_entry *config_find(const struct config *cfg, const char *name)
{
	for (int i = 0; i < cfg->n; i++)
		if (strcmp(cfg->entries[i].key->name, name) == 0)
			return &cfg->entries[i];
	return NULL;
}

void config_init(struct config *cfg, const struct config_key *keys)
{
	int n = 0;

	while (keys[n].name)
		n++;
	cfg->entries = xcalloc((size_t)n, sizeof *cfg->entries);
	cfg->n = n;
	cfg->error = NULL;
	for (int i = 0; i < n; i++) {
		cfg->entries[i].key = &keys[i];
		cfg->entries[i].value = keys[i].defval ? xstrdup(keys[i].defval) : NULL;
		cfg->entries[i].origin = CONFIG_DEFAULT;
	}
}

void config_close(struct config *cfg)
{
	for (int i = 0; i < cfg->n; i++)
		free(cfg->entries[i].value);
	free(cfg->entries);
	free(cfg->error);
	cfg->entries = NULL;
	cfg->n = 0;
	cfg->error = NULL;
}

static void entry_set(struct config_entry *e, const char *value, enum config_origin origin)
{
	/* A later source of the same rank wins: the last of repeated flags. */
	if (origin < e->origin)
		return;
	free(e->value);
	e->value = value ? xstrdup(value) : NULL;
	e->origin = origin;
}

int config_set(struct config *cfg, const char *name, const char *value, enum config_origin origin)
{
	struct config_entry *e = config_find(cfg, name);

	if (!e) {
		config_error(cfg, "unknown option '--%s'", name);
		return SB_ECONFIG;
	}
	entry_set(e, value, origin);
	return 0;
}

const char *config_get(const struct config *cfg, const char *name)
{
	const struct config_entry *e = config_find(cfg, name);

	return e ? e->value : NULL;
}

enum config_origin config_origin_of(const struct config *cfg, const char *name)
{
	const struct config_entry *e = config_find(cfg, name);

	return e ? e->origin : CONFIG_DEFAULT;
}

/* ---- environment ---- */

static void env_name(const char *key, char *out, size_t len)
{
	size_t i = 0;
	int n = snprintf(out, len, "%s", CONFIG_ENV_PREFIX);

	for (i = (size_t)n; *key && i + 1 < len; key++, i++)
		out[i] = *key == '-' ? '_' : (char)toupper((unsigned char)*key);
	out[i] = '\0';
}

int config_load_env(struct config *cfg)
{
	char name[sizeof CONFIG_ENV_PREFIX + CONFIG_NAME_MAX];

	for (int i = 0; i < cfg->n; i++) {
		const char *v;

		env_name(cfg->entries[i].key->name, name, sizeof name);
		v = getenv(name);
		/* VAR= in a pod spec or compose file means "not set". */
		if (v && *v)
			entry_set(&cfg->entries[i], v, CONFIG_ENV);
	}
	return 0;
}

/* ---- typed readers ---- */

/* Where a bad value came from, so the user knows what to fix. */
static const char *origin_hint(const struct config_entry *e, char *buf, size_t len)
{
	char name[sizeof CONFIG_ENV_PREFIX + CONFIG_NAME_MAX];

	switch (e->origin) {
	case CONFIG_ENV:
		env_name(e->key->name, name, sizeof name);
		snprintf(buf, len, " (from %s)", name);
		return buf;
	case CONFIG_FILE:
		return " (from the config file)";
	case CONFIG_DEFAULT:
		return " (the default)";
	default:
		return "";
	}
}

static struct config_entry *typed_entry(struct config *cfg, const char *name)
{
	struct config_entry *e = config_find(cfg, name);

	if (!e) {
		config_error(cfg, "unknown option '--%s'", name);
		return NULL;
	}
	if (!e->value) {
		config_error(cfg, "--%s: no value given", name);
		return NULL;
	}
	return e;
}

static int parse_bool(const char *s, int *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};

	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return SB_ECONFIG;
}

int config_get_bool(struct config *cfg, const char *name, int *out)
{
	struct config_entry *e = typed_entry(cfg, name);
	char hint[128];

	if (!e)
		return SB_ECONFIG;
	if (parse_bool(e->value, out) < 0) {
		config_error(cfg, "--%s: expected true or false, got '%s'%s", name, e->value,
			     origin_hint(e, hint, sizeof hint));
		return SB_ECONFIG;
	}
	return 0;
}

/* Plain decimal digits only: strtoull alone would take "-1", " 7" or "0x10". */
static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)*s))
		return SB_ECONFIG;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE || *end != '\0')
		return SB_ECONFIG;
	*out = v;
	return 0;
}

int config_get_u64(struct config *cfg, const char *name, uint64_t min, uint64_t max, uint64_t *out)
{
	struct config_entry *e = typed_entry(cfg, name);
	char hint[128];
	uint64_t v;

	if (!e)
		return SB_ECONFIG;
	if (parse_u64(e->value, &v) < 0 || v < min || v > max) {
		config_error(cfg, "--%s: expected a number from %llu to %llu, got '%s'%s", name,
			     (unsigned long long)min, (unsigned long long)max, e->value,
			     origin_hint(e, hint, sizeof hint));
		return SB_ECONFIG;
	}
	*out = v;
	return 0;
}

struct size_unit {
	const char *suffix;
	uint64_t mult;
};

#define KIB 1024ull
#define KB  1000ull

static const struct size_unit size_units[] = {
    {"", 1},
    {"b", 1},
    {"k", KIB},
    {"kib", KIB},
    {"kb", KB},
    {"m", KIB *KIB},
    {"mib", KIB *KIB},
    {"mb", KB *KB},
    {"g", KIB *KIB *KIB},
    {"gib", KIB *KIB *KIB},
    {"gb", KB *KB *KB},
    {"t", KIB *KIB *KIB *KIB},
    {"tib", KIB *KIB *KIB *KIB},
    {"tb", KB *KB *KB *KB},
};

static int size_multiplier(const char *suffix, uint64_t *mult)
{
	for (size_t i = 0; i < sizeof size_units / sizeof size_units[0]; i++) {
		if (strcasecmp(suffix, size_units[i].suffix) == 0) {
			*mult = size_units[i].mult;
			return 0;
		}
	}
	return SB_ECONFIG;
}

int config_parse_size(const char *s, uint64_t *out)
{
	uint64_t whole = 0, frac = 0, scale = 1, mult, v;
	unsigned __int128 part;

	if (!isdigit((unsigned char)*s))
		return SB_ECONFIG;
	for (; isdigit((unsigned char)*s); s++)
		if (__builtin_mul_overflow(whole, 10, &whole) ||
		    __builtin_add_overflow(whole, (uint64_t)(*s - '0'), &whole))
			return SB_ECONFIG;
	if (*s == '.') {
		s++;
		if (!isdigit((unsigned char)*s))
			return SB_ECONFIG;
		for (int i = 0; isdigit((unsigned char)*s); s++, i++) {
			if (i == CONFIG_SIZE_FRAC_MAX)
				return SB_ECONFIG;
			frac = frac * 10 + (uint64_t)(*s - '0');
			scale *= 10;
		}
	}
	if (*s == ' ' && *++s == '\0')
		return SB_ECONFIG;
	if (size_multiplier(s, &mult) < 0)
		return SB_ECONFIG;
	if (__builtin_mul_overflow(whole, mult, &v))
		return SB_ECONFIG;
	/* A fraction must come out as whole bytes: "1.5K" is 1536, "0.1K" is
	 * not a size. */
	part = (unsigned __int128)frac * mult;
	if (part % scale != 0)
		return SB_ECONFIG;
	if (__builtin_add_overflow(v, (uint64_t)(part / scale), &v))
		return SB_ECONFIG;
	*out = v;
	return 0;
}

/* The shortest exact rendering of a size limit, for error messages. */
static void fmt_size_exact(uint64_t n, char *out, size_t len)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
	int u = -1;

	while (u + 1 < 4 && n >= KIB && n % KIB == 0) {
		n /= KIB;
		u++;
	}
	if (u < 0)
		snprintf(out, len, "%llu", (unsigned long long)n);
	else
		snprintf(out, len, "%llu%s", (unsigned long long)n, units[u]);
}

int config_get_size(struct config *cfg, const char *name, uint64_t min, uint64_t max, uint64_t *out)
{
	struct config_entry *e = typed_entry(cfg, name);
	char hint[128], smin[32], smax[32];
	uint64_t v;

	if (!e)
		return SB_ECONFIG;
	if (config_parse_size(e->value, &v) < 0 || v < min || v > max) {
		fmt_size_exact(min, smin, sizeof smin);
		fmt_size_exact(max, smax, sizeof smax);
		config_error(cfg, "--%s: expected a size like 4MiB from %s to %s, got '%s'%s", name,
			     smin, smax, e->value, origin_hint(e, hint, sizeof hint));
		return SB_ECONFIG;
	}
	*out = v;
	return 0;
}

/* ---- YAML file ---- */

struct yaml_load {
	struct config *cfg;
	const char *path;
	yaml_parser_t parser;
	yaml_event_t ev;
	int have_ev;
	char *seen; /* one flag per entry: duplicate keys are likely mistakes */
};

static int yaml_fail(struct yaml_load *y, const yaml_mark_t *mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int yaml_fail(struct yaml_load *y, const yaml_mark_t *mark, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;

	buf_printf(&b, "%s:%zu: ", y->path, mark->line + 1);
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	free(y->cfg->error);
	y->cfg->error = buf_steal(&b);
	return SB_ECONFIG;
}

static int yaml_next(struct yaml_load *y)
{
	if (y->have_ev)
		yaml_event_delete(&y->ev);
	y->have_ev = 0;
	if (!yaml_parser_parse(&y->parser, &y->ev)) {
		const char *what = y->parser.problem ? y->parser.problem : "malformed YAML";
		const yaml_mark_t *at = &y->parser.problem_mark;
		const yaml_mark_t *from = &y->parser.context_mark;

		if (!y->parser.context)
			return yaml_fail(y, at, "%s", what);
		/* An unclosed '[' or quote is found only at the end of the
		 * file; where it was opened is what the user needs. */
		if (from->line != at->line)
			return yaml_fail(y, at, "%s %s started on line %zu", what,
					 y->parser.context, from->line + 1);
		return yaml_fail(y, at, "%s %s", what, y->parser.context);
	}
	y->have_ev = 1;
	return 0;
}

static const char *yaml_scalar(const yaml_event_t *ev)
{
	return (const char *)ev->data.scalar.value;
}

/* "key:" with nothing after it, "~" or "null" leave the key alone. */
static int yaml_is_null(const yaml_event_t *ev)
{
	const char *v = yaml_scalar(ev);

	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	return *v == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	       strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* Reads a sequence of scalars after SEQUENCE_START into a comma list. */
static int yaml_read_list(struct yaml_load *y, const char *key, char **out)
{
	struct buf b = BUF_INIT;
	int rc;

	while ((rc = yaml_next(y)) == 0) {
		if (y->ev.type == YAML_SEQUENCE_END_EVENT) {
			*out = buf_steal(&b);
			return 0;
		}
		if (y->ev.type != YAML_SCALAR_EVENT) {
			rc = yaml_fail(y, &y->ev.start_mark,
				       "key '%s': list items must be plain values", key);
			break;
		}
		if (b.len)
			buf_append_str(&b, ",");
		buf_append_str(&b, yaml_scalar(&y->ev));
	}
	buf_close(&b);
	return rc;
}

static int yaml_read_pair(struct yaml_load *y)
{
	struct config_entry *e;
	yaml_mark_t key_mark = y->ev.start_mark;
	char *key, *value = NULL;
	int rc;

	if (y->ev.type != YAML_SCALAR_EVENT)
		return yaml_fail(y, &key_mark, "expected a key");
	key = xstrdup(yaml_scalar(&y->ev));
	e = config_find(y->cfg, key);
	if (!e) {
		rc = yaml_fail(y, &key_mark, "unknown key '%s'", key);
		goto out;
	}
	if (strcmp(key, CONFIG_FILE_KEY) == 0) {
		rc = yaml_fail(y, &key_mark, "key '%s' cannot be set in a config file", key);
		goto out;
	}
	if (y->seen[e - y->cfg->entries]) {
		rc = yaml_fail(y, &key_mark, "duplicate key '%s'", key);
		goto out;
	}
	y->seen[e - y->cfg->entries] = 1;
	if ((rc = yaml_next(y)) < 0)
		goto out;
	switch (y->ev.type) {
	case YAML_SCALAR_EVENT:
		if (!yaml_is_null(&y->ev))
			value = xstrdup(yaml_scalar(&y->ev));
		break;
	case YAML_SEQUENCE_START_EVENT:
		if ((rc = yaml_read_list(y, key, &value)) < 0)
			goto out;
		break;
	case YAML_ALIAS_EVENT:
		rc = yaml_fail(y, &y->ev.start_mark, "key '%s': aliases are not supported", key);
		goto out;
	default:
		rc = yaml_fail(y, &y->ev.start_mark, "key '%s': expected a value or a list", key);
		goto out;
	}
	if (value)
		entry_set(e, value, CONFIG_FILE);
	rc = 0;
out:
	free(value);
	free(key);
	return rc;
}

static int yaml_read_document(struct yaml_load *y)
{
	int rc;

	if ((rc = yaml_next(y)) < 0)
		return rc;
	if (y->ev.type == YAML_SCALAR_EVENT && yaml_is_null(&y->ev))
		return yaml_next(y); /* an empty document: comments only */
	if (y->ev.type != YAML_MAPPING_START_EVENT)
		return yaml_fail(y, &y->ev.start_mark, "expected a mapping of key: value");
	for (;;) {
		if ((rc = yaml_next(y)) < 0)
			return rc;
		if (y->ev.type == YAML_MAPPING_END_EVENT)
			break;
		if ((rc = yaml_read_pair(y)) < 0)
			return rc;
	}
	return yaml_next(y);
}

static int yaml_read_stream(struct yaml_load *y)
{
	int rc;

	if ((rc = yaml_next(y)) < 0)
		return rc;
	if (y->ev.type != YAML_STREAM_START_EVENT)
		return yaml_fail(y, &y->ev.start_mark, "malformed YAML");
	if ((rc = yaml_next(y)) < 0)
		return rc;
	if (y->ev.type == YAML_STREAM_END_EVENT)
		return 0; /* an empty file */
	if (y->ev.type != YAML_DOCUMENT_START_EVENT)
		return yaml_fail(y, &y->ev.start_mark, "malformed YAML");
	if ((rc = yaml_read_document(y)) < 0)
		return rc;
	if (y->ev.type != YAML_DOCUMENT_END_EVENT)
		return yaml_fail(y, &y->ev.start_mark, "malformed YAML");
	if ((rc = yaml_next(y)) < 0)
		return rc;
	if (y->ev.type != YAML_STREAM_END_EVENT)
		return yaml_fail(y, &y->ev.start_mark, "only one YAML document is allowed");
	return 0;
}

int config_load_file(struct config *cfg, const char *path)
{
	struct yaml_load y = {.cfg = cfg, .path = path};
	struct stat st;
	FILE *f;
	int rc;

	f = fopen(path, "re");
	if (!f) {
		rc = -errno;
		config_error(cfg, "%s: %s", path, sb_strerror(rc));
		return rc;
	}
	if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(f);
		config_error(cfg, "%s: %s", path, sb_strerror(-EISDIR));
		return -EISDIR;
	}
	if (!yaml_parser_initialize(&y.parser))
		fatal("out of memory initializing the YAML parser");
	yaml_parser_set_input_file(&y.parser, f);
	y.seen = xcalloc((size_t)cfg->n, 1);
	rc = yaml_read_stream(&y);
	if (y.have_ev)
		yaml_event_delete(&y.ev);
	yaml_parser_delete(&y.parser);
	free(y.seen);
	fclose(f);
	return rc;
}

/* ---- command line ---- */

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t row[CONFIG_NAME_MAX + 1];

	if (la > CONFIG_NAME_MAX || lb > CONFIG_NAME_MAX)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);

			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static void unknown_option(struct config *cfg, const char *arg, size_t len)
{
	char *name = xstrndup(arg, len);
	const char *best = NULL;
	size_t best_dist = CONFIG_SUGGEST_DIST + 1;

	for (int i = 0; i < cfg->n; i++) {
		size_t d = edit_distance(name + 2, cfg->entries[i].key->name);

		if (d < best_dist) {
			best_dist = d;
			best = cfg->entries[i].key->name;
		}
	}
	if (best)
		config_error(cfg, "unknown option '%s' (did you mean '--%s'?)", name, best);
	else
		config_error(cfg, "unknown option '%s'", name);
	free(name);
}

struct flag {
	struct config_entry *entry;
	const char *value;
};

/* Splits one "--..." argument into an entry and its value. *i advances when
 * the value is the next argument. */
static int parse_flag(struct config *cfg, int argc, char **argv, int *i, struct flag *out)
{
	const char *arg = argv[*i];
	const char *eq = strchr(arg, '=');
	size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
	char *name = xstrndup(arg + 2, len - 2);
	struct config_entry *e = config_find(cfg, name);
	int negated = 0, rc = SB_ECONFIG, b;

	if (!e && strncmp(name, "no-", 3) == 0) {
		e = config_find(cfg, name + 3);
		negated = e != NULL;
	}
	if (!e) {
		unknown_option(cfg, arg, len);
		goto out;
	}
	out->entry = e;
	if (negated) {
		if (!e->key->is_bool)
			config_error(cfg,
				     "unknown option '--%s' ('--%s' is not "
				     "a yes/no option)",
				     name, e->key->name);
		else if (eq)
			config_error(cfg, "--%s takes no value", name);
		else
			rc = 0;
		out->value = "false";
		goto out;
	}
	if (e->key->is_bool) {
		if (eq && parse_bool(eq + 1, &b) < 0) {
			config_error(cfg, "--%s: expected true or false, got '%s'", name, eq + 1);
			goto out;
		}
		out->value = (!eq || b) ? "true" : "false";
		rc = 0;
		goto out;
	}
	if (eq) {
		out->value = eq + 1;
	} else if (*i + 1 < argc) {
		out->value = argv[++*i];
	} else {
		config_error(cfg, "--%s: missing value", name);
		goto out;
	}
	rc = 0;
out:
	free(name);
	return rc;
}

static struct config_entry *config_find_short(const struct config *cfg, char c)
{
	for (int i = 0; i < cfg->n; i++)
		if (c && cfg->entries[i].key->short_name == c)
			return &cfg->entries[i];
	return NULL;
}

/* Splits one "-x..." argument into flags: booleans may share the dash
 * (-qv); a flag with a value takes the rest of the argument (-j4) or the
 * next one (-j 4). *i advances when the value is the next argument. */
static int parse_short(struct config *cfg, int argc, char **argv, int *i, struct flag *out,
		       int *nout)
{
	const char *arg = argv[*i];
	for (const char *p = arg + 1; *p; p++) {
		struct config_entry *e = config_find_short(cfg, *p);
		if (!e) {
			if (p == arg + 1)
				config_error(cfg, "unknown option '-%c'", *p);
			else
				config_error(cfg, "unknown option '-%c' in '%s'", *p, arg);
			return SB_ECONFIG;
		}
		out[*nout].entry = e;
		if (e->key->is_bool) {
			out[(*nout)++].value = "true";
			continue;
		}
		if (p[1]) {
			out[(*nout)++].value = p + 1;
		} else if (*i + 1 < argc) {
			out[(*nout)++].value = argv[++*i];
		} else {
			config_error(cfg, "-%c (--%s): missing value", *p, e->key->name);
			return SB_ECONFIG;
		}
		return 0;
	}
	return 0;
}

/* The config file named by flag, else env, else the default; a default file
 * that does not exist is not an error. */
static int load_config_file(struct config *cfg, const char *flag_path)
{
	struct config_entry *e = config_find(cfg, CONFIG_FILE_KEY);
	char name[sizeof CONFIG_ENV_PREFIX + CONFIG_NAME_MAX];
	const char *path = flag_path;
	int is_default = 0, rc;

	if (!e)
		return 0;
	if (!path) {
		env_name(CONFIG_FILE_KEY, name, sizeof name);
		path = getenv(name);
	}
	if (!path || !*path) {
		path = e->origin == CONFIG_DEFAULT ? e->key->defval : e->value;
		is_default = e->origin == CONFIG_DEFAULT;
	}
	if (!path || !*path)
		return 0;
	rc = config_load_file(cfg, path);
	if (rc == -ENOENT && is_default) {
		free(cfg->error);
		cfg->error = NULL;
		return 0;
	}
	return rc < 0 ? SB_ECONFIG : 0;
}

int config_parse_args(struct config *cfg, int argc, char **argv, char ***positional, int *npos)
{
	size_t cap = (size_t)argc + 1;
	for (int i = 0; i < argc; i++)
		cap += strlen(argv[i]); /* "-qv" is two flags */
	struct flag *flags = xcalloc(cap, sizeof *flags);
	char **pos = xcalloc((size_t)argc + 1, sizeof *pos);
	const char *config_path = NULL;
	int nflags = 0, np = 0, rc = SB_ECONFIG, only_pos = 0;

	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i];

		if (only_pos || arg[0] != '-' || strcmp(arg, "-") == 0) {
			pos[np++] = argv[i];
		} else if (strcmp(arg, "--") == 0) {
			only_pos = 1;
		} else if (arg[1] != '-') {
			int first = nflags;
			if (parse_short(cfg, argc, argv, &i, flags, &nflags) < 0)
				goto fail;
			for (int k = first; k < nflags; k++)
				if (strcmp(flags[k].entry->key->name, CONFIG_FILE_KEY) == 0)
					config_path = flags[k].value;
		} else {
			if (parse_flag(cfg, argc, argv, &i, &flags[nflags]) < 0)
				goto fail;
			if (strcmp(flags[nflags].entry->key->name, CONFIG_FILE_KEY) == 0)
				config_path = flags[nflags].value;
			nflags++;
		}
	}
	if (np > 0 && !positional) {
		config_error(cfg, "unexpected argument '%s'", pos[0]);
		goto fail;
	}
	if (load_config_file(cfg, config_path) < 0)
		goto fail;
	config_load_env(cfg);
	for (int i = 0; i < nflags; i++)
		entry_set(flags[i].entry, flags[i].value, CONFIG_FLAG);
	rc = 0;
	if (positional) {
		*positional = pos;
		pos = NULL;
	}
	if (npos)
		*npos = np;
	goto out;
fail:
	if (positional)
		*positional = NULL;
	if (npos)
		*npos = 0;
out:
	free(pos);
	free(flags);
	return rc;
}
