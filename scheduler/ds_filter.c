#include "scheduler/ds_filter.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"

int ds_filter_from_wire(Syncbit__FilterRule *const *rules, size_t n, struct filter *f, char **why)
{
	memset(f, 0, sizeof *f);
	if (n > FILTER_RULES_MAX) {
		*why = xasprintf("filter: %zu rules, at most %d", n, FILTER_RULES_MAX);
		return SB_EPROTO;
	}
	for (size_t i = 0; i < n; i++) {
		char *error = NULL;
		const char *p = rules[i]->pattern ? rules[i]->pattern : "";
		if (filter_add(f, rules[i]->include, p, &error) < 0) {
			*why = xasprintf("filter: %s", error);
			free(error);
			filter_close(f);
			return SB_EPROTO;
		}
	}
	return 0;
}

Syncbit__FilterRule **ds_filter_to_wire(const struct filter *f, Syncbit__FilterRule **store)
{
	*store = NULL;
	if (!f->n)
		return NULL;
	Syncbit__FilterRule **out = xcalloc(f->n, sizeof *out);
	*store = xcalloc(f->n, sizeof **store);
	for (size_t i = 0; i < f->n; i++) {
		syncbit__filter_rule__init(&(*store)[i]);
		(*store)[i].include = f->rules[i].include;
		(*store)[i].pattern = f->rules[i].given;
		out[i] = &(*store)[i];
	}
	return out;
}

void ds_filter_copy(struct filter *dst, const struct filter *src)
{
	struct filter copy = {0};
	for (size_t i = 0; src && i < src->n; i++) {
		char *error = NULL;
		/* Rules already built parse again the same way. */
		if (filter_add(&copy, src->rules[i].include, src->rules[i].given, &error) < 0)
			fatal("filter: %s", error);
	}
	filter_close(dst);
	*dst = copy;
}

int ds_filter_same(const struct filter *a, const struct filter *b)
{
	if (a->n != b->n)
		return 0;
	for (size_t i = 0; i < a->n; i++)
		if (a->rules[i].include != b->rules[i].include ||
		    strcmp(a->rules[i].given, b->rules[i].given))
			return 0;
	return 1;
}

char *ds_filter_text(const struct filter *f)
{
	struct buf b = BUF_INIT;
	for (size_t i = 0; i < f->n; i++)
		buf_printf(&b, "%s%c %s", i ? ", " : "", f->rules[i].include ? '+' : '-',
			   f->rules[i].given);
	return f->n ? buf_steal(&b) : xstrdup("(none)");
}

json_t *ds_filter_json(const struct filter *f)
{
	json_t *a = json_array();
	for (size_t i = 0; i < f->n; i++)
		json_array_append_new(a, json_pack("{s:s, s:s}", "rule",
						   f->rules[i].include ? "include" : "exclude",
						   "pattern", f->rules[i].given));
	return a;
}
