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
#include "common/config_int.h"
#include "common/err.h"
#include "common/log.h"

/* Digits after the decimal point a size may carry ("1.5GiB"). */
#define CONFIG_SIZE_FRAC_MAX 9

void config_error(struct config *cfg, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	free(cfg->error);
	cfg->error = buf_steal(&b);
}

struct config_entry *config_find(const struct config *cfg, const char *name)
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
	cfg->file_error = 0;
	cfg->rank = 0;
	cfg->known = NULL;
	for (int i = 0; i < n; i++) {
		cfg->entries[i].key = &keys[i];
		cfg->entries[i].value = keys[i].defval ? xstrdup(keys[i].defval) : NULL;
		cfg->entries[i].origin = CONFIG_DEFAULT;
	}
}

static void list_clear(struct config_entry *e)
{
	for (size_t i = 0; i < e->nitems; i++)
		free(e->items[i]);
	free(e->items);
	free(e->ranks);
	e->items = NULL;
	e->ranks = NULL;
	e->nitems = 0;
}

void config_close(struct config *cfg)
{
	for (int i = 0; i < cfg->n; i++) {
		free(cfg->entries[i].value);
		list_clear(&cfg->entries[i]);
	}
	free(cfg->entries);
	free(cfg->error);
	cfg->entries = NULL;
	cfg->n = 0;
	cfg->error = NULL;
}

/* One more item of a list; the value shows them one a line. */
static void list_add(struct config *cfg, struct config_entry *e, const char *value,
		     enum config_origin origin)
{
	if (origin > e->origin || !value)
		list_clear(e);
	e->origin = origin;
	free(e->value);
	e->value = NULL;
	if (value) {
		e->items = xrealloc(e->items, (e->nitems + 1) * sizeof *e->items);
		e->ranks = xrealloc(e->ranks, (e->nitems + 1) * sizeof *e->ranks);
		e->items[e->nitems] = xstrdup(value);
		e->ranks[e->nitems++] = cfg->rank++;
	}
	if (e->nitems) {
		struct buf b = BUF_INIT;
		for (size_t i = 0; i < e->nitems; i++)
			buf_printf(&b, "%s%s", i ? "\n" : "", e->items[i]);
		e->value = buf_steal(&b);
	}
}

void config_entry_set(struct config *cfg, struct config_entry *e, const char *value,
		      enum config_origin origin)
{
	/* A later source of the same rank wins: the last of repeated flags. */
	if (origin < e->origin)
		return;
	if (e->key->kind == CONFIG_LIST) {
		list_add(cfg, e, value, origin);
		return;
	}
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
	config_entry_set(cfg, e, value, origin);
	return 0;
}

const char *config_get(const struct config *cfg, const char *name)
{
	const struct config_entry *e = config_find(cfg, name);

	return e ? e->value : NULL;
}

char *const *config_get_list(const struct config *cfg, const char *name, size_t *n,
			     const unsigned **ranks)
{
	const struct config_entry *e = config_find(cfg, name);

	*n = e ? e->nitems : 0;
	if (ranks)
		*ranks = e ? e->ranks : NULL;
	return e && e->nitems ? e->items : NULL;
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
		if (!v || !*v)
			continue;
		if (cfg->entries[i].key->kind != CONFIG_LIST) {
			config_entry_set(cfg, &cfg->entries[i], v, CONFIG_ENV);
			continue;
		}
		/* A list: one item a line (a pod spec's "value: |"). */
		for (const char *p = v; *p;) {
			size_t len = strcspn(p, "\n");
			if (len) {
				char *item = xstrndup(p, len);
				config_entry_set(cfg, &cfg->entries[i], item, CONFIG_ENV);
				free(item);
			}
			p += len + (p[len] == '\n');
		}
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

/* ---- command line ---- */

size_t config_edit_distance(const char *a, const char *b)
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
		size_t d = config_edit_distance(name + 2, cfg->entries[i].key->name);

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
		if (e->key->kind != CONFIG_BOOL)
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
	if (e->key->kind == CONFIG_BOOL) {
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
		if (e->key->kind == CONFIG_BOOL) {
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
	/* The node-wide default is there for whoever may read it. */
	if (is_default && (rc == -ENOENT || rc == -ENOTDIR || rc == -EACCES)) {
		free(cfg->error);
		cfg->error = NULL;
		return 0;
	}
	if (rc < 0)
		cfg->file_error = 1;
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
		config_entry_set(cfg, flags[i].entry, flags[i].value, CONFIG_FLAG);
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
