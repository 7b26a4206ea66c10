/* Config files: a YAML mapping of flag names to values (config.h). Keys
 * other commands read (cfg->known) are skipped, so one node-wide file serves
 * every command; any other unknown key is an error naming the file, line and
 * key. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "common/buf.h"
#include "common/config_int.h"
#include "common/err.h"
#include "common/log.h"

/* Nesting a skipped value may have (it is not read, only walked over). */
#define CONFIG_SKIP_DEPTH 64

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
	y->cfg->file_error = 1;
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

/* Reads a sequence of scalars after SEQUENCE_START: the items of a list
 * key, or for any other key one comma-joined value in *out. */
static int yaml_read_list(struct yaml_load *y, struct config_entry *e, char **out)
{
	struct buf b = BUF_INIT;
	int rc;

	while ((rc = yaml_next(y)) == 0) {
		if (y->ev.type == YAML_SEQUENCE_END_EVENT) {
			*out = e->key->kind == CONFIG_LIST ? NULL : buf_steal(&b);
			buf_close(&b);
			return 0;
		}
		if (y->ev.type != YAML_SCALAR_EVENT) {
			rc = yaml_fail(y, &y->ev.start_mark,
				       "key '%s': list items must be plain values", e->key->name);
			break;
		}
		if (e->key->kind == CONFIG_LIST) {
			config_entry_set(y->cfg, e, yaml_scalar(&y->ev), CONFIG_FILE);
			continue;
		}
		if (b.len)
			buf_append_str(&b, ",");
		buf_append_str(&b, yaml_scalar(&y->ev));
	}
	buf_close(&b);
	return rc;
}

/* Walks over the value after a key other commands read. */
static int yaml_skip_value(struct yaml_load *y)
{
	int depth = 0, rc;

	do {
		if ((rc = yaml_next(y)) < 0)
			return rc;
		switch (y->ev.type) {
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if (++depth > CONFIG_SKIP_DEPTH)
				return yaml_fail(y, &y->ev.start_mark, "nested too deeply");
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			depth--;
			break;
		default:
			break;
		}
	} while (depth > 0);
	return 0;
}

/* "unknown key 'k'", with the closest key of cfg when one is near. */
static int yaml_unknown(struct yaml_load *y, const yaml_mark_t *mark, const char *key)
{
	const char *best = NULL;
	size_t best_dist = CONFIG_SUGGEST_DIST + 1;

	for (int i = 0; i < y->cfg->n; i++) {
		size_t d = config_edit_distance(key, y->cfg->entries[i].key->name);

		if (d < best_dist) {
			best_dist = d;
			best = y->cfg->entries[i].key->name;
		}
	}
	if (best)
		return yaml_fail(y, mark, "unknown key '%s' (did you mean '%s'?)", key, best);
	return yaml_fail(y, mark, "unknown key '%s'", key);
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
	if (!e && y->cfg->known && y->cfg->known(key)) {
		rc = yaml_skip_value(y); /* another command's key */
		goto out;
	}
	if (!e) {
		rc = yaml_unknown(y, &key_mark, key);
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
		if ((rc = yaml_read_list(y, e, &value)) < 0)
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
		config_entry_set(y->cfg, e, value, CONFIG_FILE);
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
