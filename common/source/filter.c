#include "common/source/filter.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"

/* Results of one match attempt. The two aborts cut the search short: a
 * '*' cannot get past a '/' and a text that ran out matches no later
 * start either, so a pattern with many stars costs a bounded walk. */
enum { GLOB_MATCH, GLOB_NOMATCH, GLOB_ABORT_ALL, GLOB_ABORT_TO_STARSTAR };

/* The class at *p ("[...]", *p at '[') against c; *p is left on its ']'.
 * 1 match, 0 not. The class was checked closed when the rule was added. */
static int class_match(const char **p, char c)
{
	const char *s = *p + 1;
	int negate = *s == '!' || *s == '^', hit = 0;
	if (negate)
		s++;
	for (int first = 1; *s && (first || *s != ']'); first = 0, s++) {
		char lo = *s;
		if (lo == '\\' && s[1])
			lo = *++s;
		if (s[1] == '-' && s[2] && s[2] != ']') {
			char hi = s[2] == '\\' && s[3] ? s[3] : s[2];
			s += s[2] == '\\' && s[3] ? 3 : 2;
			if (c >= lo && c <= hi)
				hit = 1;
		} else if (c == lo) {
			hit = 1;
		}
	}
	*p = s;
	return c != '/' && hit != negate;
}

static int glob(const char *p, const char *t)
{
	for (; *p; p++, t++) {
		if (!*t && *p != '*')
			return GLOB_ABORT_ALL;
		switch (*p) {
		case '\\':
			if (p[1])
				p++;
			if (*t != *p)
				return GLOB_NOMATCH;
			break;
		case '?':
			if (*t == '/')
				return GLOB_NOMATCH;
			break;
		case '[':
			if (!class_match(&p, *t))
				return GLOB_NOMATCH;
			break;
		case '*': {
			int any = p[1] == '*';
			while (p[1] == '*')
				p++;
			p++;
			if (!*p)
				return any || !strchr(t, '/') ? GLOB_MATCH : GLOB_ABORT_TO_STARSTAR;
			for (; *t; t++) {
				int r = glob(p, t);
				if (r != GLOB_NOMATCH) {
					if (!any || r != GLOB_ABORT_TO_STARSTAR)
						return r;
				} else if (!any && *t == '/') {
					return GLOB_ABORT_TO_STARSTAR;
				}
			}
			return GLOB_ABORT_ALL;
		}
		default:
			if (*t != *p)
				return GLOB_NOMATCH;
		}
	}
	return *t ? GLOB_NOMATCH : GLOB_MATCH;
}

int filter_glob(const char *pattern, const char *text)
{
	return glob(pattern, text) == GLOB_MATCH;
}

/* 1 when every '[' of p is closed. */
static int classes_closed(const char *p)
{
	for (; *p; p++) {
		if (*p == '\\' && p[1]) {
			p++;
		} else if (*p == '[') {
			const char *s = p + 1;
			if (*s == '!' || *s == '^')
				s++;
			if (*s == ']')
				s++;
			while (*s && *s != ']')
				s += *s == '\\' && s[1] ? 2 : 1;
			if (!*s)
				return 0;
			p = s;
		}
	}
	return 1;
}

static int rule_error(char **error, const char *pattern, const char *why)
{
	*error = xasprintf("--%s: %s", pattern, why);
	return SB_ECONFIG;
}

int filter_add(struct filter *f, int include, const char *pattern, char **error)
{
	const char *flag = include ? "include" : "exclude";
	size_t len = strlen(pattern);
	*error = NULL;
	if (f->n >= FILTER_RULES_MAX)
		return rule_error(error, flag, "more than 256 rules");
	if (len > FILTER_PATTERN_MAX)
		return rule_error(error, flag, "pattern longer than 1024 bytes");
	if (strpbrk(pattern, "\n\r")) {
		*error = xasprintf("--%s: a pattern is one line", flag);
		return SB_ECONFIG;
	}
	struct filter_rule r = {.include = include};
	const char *s = pattern;
	if (*s == '/') {
		r.anchored = 1;
		s++;
		len--;
	}
	if (len >= 4 && !strcmp(s + len - 4, "/***")) {
		r.with_contents = r.dir_only = 1;
		len -= 4;
	} else if (len >= 1 && s[len - 1] == '/') {
		r.dir_only = 1;
		len--;
	}
	if (!len || !classes_closed(s)) {
		*error = xasprintf("--%s '%s': %s", flag, pattern,
				   len ? "a '[' is not closed" : "matches nothing");
		return SB_ECONFIG;
	}
	r.pattern = xstrndup(s, len);
	r.given = xstrdup(pattern);
	r.whole_path = strchr(r.pattern, '/') || strstr(r.pattern, "**");
	f->rules = xrealloc(f->rules, (f->n + 1) * sizeof *f->rules);
	f->rules[f->n++] = r;
	return 0;
}

void filter_close(struct filter *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->rules[i].pattern);
		free(f->rules[i].given);
	}
	free(f->rules);
	f->rules = NULL;
	f->n = 0;
}

/* The rule against path itself (not its parents). */
static int rule_matches_one(const struct filter_rule *r, const char *path, int is_dir)
{
	if (r->dir_only && !is_dir)
		return 0;
	if (r->anchored)
		return filter_glob(r->pattern, path);
	if (!r->whole_path) {
		const char *base = strrchr(path, '/');
		return filter_glob(r->pattern, base ? base + 1 : path);
	}
	for (const char *s = path;; s++) {
		if (filter_glob(r->pattern, s))
			return 1;
		if (!(s = strchr(s, '/')))
			return 0;
	}
}

/* path is under a directory the '/\***' rule names: a parent matches. */
static int rule_matches_contents(const struct filter_rule *r, char *path)
{
	for (char *slash = strchr(path, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		int hit = rule_matches_one(r, path, 1);
		*slash = '/';
		if (hit)
			return 1;
	}
	return 0;
}

/* The first rule deciding path (a parent, or the entry itself): 1 when it
 * excludes, 0 when it includes or none matches. path is writable. */
static int decide(const struct filter *f, char *path, int is_dir)
{
	for (size_t i = 0; i < f->n; i++) {
		const struct filter_rule *r = &f->rules[i];
		if (rule_matches_one(r, path, is_dir) ||
		    (r->with_contents && rule_matches_contents(r, path)))
			return !r->include;
	}
	return 0;
}

int filter_excludes(const struct filter *f, const char *path, int is_dir)
{
	if (!f || !f->n || !*path)
		return 0;
	char *p = xstrdup(path);
	int out = 0;
	/* Each parent directory first, from the root, as rsync walks them. */
	for (char *slash = strchr(p, '/'); slash && !out; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		out = decide(f, p, 1);
		*slash = '/';
	}
	if (!out)
		out = decide(f, p, is_dir);
	free(p);
	return out;
}
