/* List files for sync: the plain form (one repo id, URI or path a line) and
 * the JSON form with platform, organization and model/dataset name. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/sync.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/path.h"
#include "common/uri.h"

#define REPO_PART_MAX 96

struct builder {
	struct sync_list *l;
	size_t cap;
	const char *dst;
	const struct sync_list_options *o;
};

/* One component of a hub repo id: letters, digits, '-', '_', '.'. */
static int repo_part_ok(const char *s, size_t n)
{
	if (n == 0 || n > REPO_PART_MAX || s[0] == '.' || s[0] == '-')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("-_.", s[i]))
			return 0;
	return !memmem(s, n, "..", 2) && !memmem(s, n, "--", 2);
}

static const char *last_component(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

static void item_free(struct sync_item *it)
{
	free(it->source);
	free(it->target);
	free(it->name);
	free(it->repo);
}

/* Add an item unless its target is taken; takes ownership of it. */
static void add(struct builder *b, struct sync_item *it)
{
	struct sync_list *l = b->l;
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->items[i].target, it->target) &&
		    !strcmp(l->items[i].source, it->source)) {
			log_warn("list line %u repeats line %u (%s); synced once", it->line,
				 l->items[i].line, it->source);
			item_free(it);
			return;
		}
	if (l->n == b->cap) {
		b->cap = b->cap ? 2 * b->cap : 16;
		l->items = xrealloc(l->items, b->cap * sizeof *l->items);
	}
	l->items[l->n++] = *it;
}

/* An item from a parsed source URI (hub repos keep org/name). */
static int add_uri(struct builder *b, const char *text, unsigned line, char **error)
{
	struct source_uri u;
	int rc = uri_parse(text, &u);
	if (rc < 0) {
		*error = xasprintf("line %u: '%s': %s", line, text, sb_strerror(rc));
		return SB_ECONFIG;
	}
	struct sync_item it = {.source = xstrdup(text), .line = line};
	const char *name;
	if ((u.kind == URI_HF || u.kind == URI_MS) && u.repo) {
		it.repo = xstrdup(u.repo);
		it.dataset = u.is_dataset;
		name = last_component(u.repo);
		it.target = b->o->flat ? xstrdup(b->dst) : path_join(b->dst, u.repo);
	} else {
		const char *p = u.kind == URI_FILE	       ? u.path
				: u.kind == URI_S3 && u.prefix ? u.prefix
				: u.url			       ? u.url
							       : u.canonical;
		char *trimmed = xstrdup(p);
		size_t n = strlen(trimmed);
		while (n > 1 && trimmed[n - 1] == '/')
			trimmed[--n] = '\0';
		name = last_component(trimmed);
		if (!*name || !strcmp(name, "/") || path_check_relative(name) < 0)
			name = u.kind == URI_S3 && u.bucket ? u.bucket : "item";
		it.name = xstrdup(name);
		free(trimmed);
		it.target = b->o->flat ? xstrdup(b->dst) : path_join(b->dst, it.name);
	}
	if (!it.name)
		it.name = xstrdup(name);
	uri_close(&u);
	add(b, &it);
	return 0;
}

/* "org/name[@rev]" of the platform given (hf:// or ms://). */
static int add_repo(struct builder *b, enum sync_platform platform, int dataset, const char *org,
		    const char *name, const char *rev, unsigned line, char **error)
{
	const char *what = !org ? "name" : !repo_part_ok(org, strlen(org)) ? "organization" : NULL;
	if (!what && !repo_part_ok(name, strlen(name)))
		what = "name";
	if (what) {
		*error = xasprintf("line %u: '%s%s%s' is not a repo id (bad %s)", line,
				   org ? org : "", org ? "/" : "", name ? name : "", what);
		return SB_ECONFIG;
	}
	if (rev && (!*rev || strchr(rev, '@') || strpbrk(rev, " \t"))) {
		*error = xasprintf("line %u: '%s' is not a revision", line, rev);
		return SB_ECONFIG;
	}
	char *uri =
	    xasprintf("%s://%s%s/%s%s%s", platform == SYNC_MODELSCOPE ? "ms" : "hf",
		      dataset ? "datasets/" : "", org, name, rev ? "@" : "", rev ? rev : "");
	int rc = add_uri(b, uri, line, error);
	free(uri);
	return rc;
}

static int parse_plain_line(struct builder *b, char *s, unsigned line, char **error)
{
	if (strstr(s, "://") || !strncmp(s, "file:", 5) || s[0] == '/')
		return add_uri(b, s, line, error);
	char *rev = strchr(s, '@');
	if (rev)
		*rev++ = '\0';
	char *slash = strchr(s, '/');
	if (!slash || strchr(slash + 1, '/')) {
		*error = xasprintf(
		    "line %u: '%s' is not ORG/NAME, a source URI or an absolute path", line, s);
		return SB_ECONFIG;
	}
	*slash = '\0';
	return add_repo(b, b->o->platform, b->o->datasets, s, slash + 1, rev, line, error);
}

static int parse_plain(struct builder *b, const char *text, size_t len, char **error)
{
	unsigned line = 0;
	for (size_t pos = 0; pos < len;) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
		char *l = xstrndup(text + pos, n);
		pos += n + 1;
		line++;
		/* A '#' starts a comment at the start of a line or after a
		 * blank: repo ids and paths of lists never hold one. */
		for (char *h = strchr(l, '#'); h; h = strchr(h + 1, '#'))
			if (h == l || isspace((unsigned char)h[-1])) {
				*h = '\0';
				break;
			}
		char *s = l;
		while (isspace((unsigned char)*s))
			s++;
		size_t e = strlen(s);
		while (e && isspace((unsigned char)s[e - 1]))
			s[--e] = '\0';
		int rc = 0;
		if (*s && strpbrk(s, " \t"))
			*error = xasprintf("line %u: '%s': one item a line", line, s),
			rc = SB_ECONFIG;
		else if (*s)
			rc = parse_plain_line(b, s, line, error);
		free(l);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static const char *json_str(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int parse_json_item(struct builder *b, json_t *o, unsigned n, char **error)
{
	if (!json_is_object(o)) {
		*error = xasprintf("item %u: not an object", n);
		return SB_ECONFIG;
	}
	const char *platform = json_str(o, "platform");
	const char *org = json_str(o, "organization");
	const char *model = json_str(o, "model_name"), *dataset = json_str(o, "dataset_name");
	enum sync_platform p;
	if (!platform) {
		*error = xasprintf("item %u: no \"platform\" (huggingface or modelscope)", n);
		return SB_ECONFIG;
	}
	if (!strcasecmp(platform, "huggingface"))
		p = SYNC_HUGGINGFACE;
	else if (!strcasecmp(platform, "modelscope"))
		p = SYNC_MODELSCOPE;
	else {
		*error = xasprintf("item %u: platform '%s' is neither huggingface nor modelscope",
				   n, platform);
		return SB_ECONFIG;
	}
	if (!org || !*org) {
		*error = xasprintf("item %u: no \"organization\"", n);
		return SB_ECONFIG;
	}
	if (!model == !dataset) {
		*error = xasprintf("item %u: give one of \"model_name\" and \"dataset_name\"", n);
		return SB_ECONFIG;
	}
	int rc = add_repo(b, p, dataset != NULL, org, model ? model : dataset,
			  json_str(o, "revision"), n, error);
	if (rc < 0 && *error && !strncmp(*error, "line ", 5)) {
		char *e = xasprintf("item%s", *error + 4);
		free(*error);
		*error = e;
	}
	return rc;
}

static int parse_json(struct builder *b, const char *text, size_t len, char **error)
{
	json_error_t je;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		*error = xasprintf("line %d: malformed JSON: %s", je.line, je.text);
		return SB_ECONFIG;
	}
	int rc = 0;
	if (!json_is_array(root)) {
		*error = xstrdup("the JSON list must be an array of objects");
		rc = SB_ECONFIG;
	}
	for (size_t i = 0; rc == 0 && i < json_array_size(root); i++)
		rc = parse_json_item(b, json_array_get(root, i), (unsigned)i + 1, error);
	json_decref(root);
	return rc;
}

int sync_list_parse(const char *text, size_t len, const char *dst,
		    const struct sync_list_options *o, struct sync_list *out, char **error)
{
	struct builder b = {.l = out, .dst = dst, .o = o};
	size_t i = 0;
	memset(out, 0, sizeof *out);
	*error = NULL;
	if (memchr(text, '\0', len)) {
		*error = xstrdup("not a text file (NUL byte)");
		return SB_ECONFIG;
	}
	while (i < len && isspace((unsigned char)text[i]))
		i++;
	int rc = i < len && text[i] == '[' ? parse_json(&b, text, len, error)
					   : parse_plain(&b, text, len, error);
	if (rc < 0)
		sync_list_close(out);
	return rc;
}

int sync_list_load(const char *path, const char *dst, const struct sync_list_options *o,
		   struct sync_list *out, char **error)
{
	struct buf b = BUF_INIT;
	memset(out, 0, sizeof *out);
	*error = NULL;
	int rc = buf_read_file(path, SYNC_LIST_MAX_BYTES, &b);
	if (rc < 0) {
		*error = xasprintf("%s: %s", path, sb_strerror(rc));
	} else if ((rc = sync_list_parse((const char *)b.ptr, b.len, dst, o, out, error)) < 0) {
		char *e = xasprintf("%s: %s", path, *error);
		free(*error);
		*error = e;
	}
	buf_close(&b);
	return rc;
}

void sync_list_close(struct sync_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		item_free(&l->items[i]);
	free(l->items);
	memset(l, 0, sizeof *l);
}
