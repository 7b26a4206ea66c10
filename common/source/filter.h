/* Include/exclude filters on the paths of a source's listing, with rsync's
 * rules: the rules are tried in the order given and the first that matches
 * decides; a path no rule matches is included. A directory excluded takes
 * everything under it along (rsync does not descend into it), so every
 * parent of a path is tried first, as a directory, even for sources that
 * list files only (S3, the hubs). Patterns:
 *   '*' any run of characters but '/', '**' any run including '/', '?' one
 *   character but '/', '[a-z]' / '[!a-z]' a class, '\' quotes the next one;
 *   a leading '/' anchors the pattern at the source's root, otherwise it
 *   matches at the end of the path: against the last component when it has
 *   no '/' or '**', else against the path from any '/' boundary;
 *   a trailing '/' matches directories only; a trailing '/\***' matches the
 *   directory and everything under it.
 * Pure; a built filter is read-only and thread-safe. */
#ifndef SYNCBIT_SOURCE_FILTER_H
#define SYNCBIT_SOURCE_FILTER_H

#include <stddef.h>

#define FILTER_RULES_MAX   256
#define FILTER_PATTERN_MAX 1024

struct filter_rule {
	char *pattern;	   /* without the leading '/' and trailing '/' or '/\***' */
	char *given;	   /* as the user wrote it, for messages */
	int include;	   /* 1 include, 0 exclude */
	int anchored;	   /* began with '/' */
	int dir_only;	   /* ended with '/' (or '/\***') */
	int with_contents; /* ended with '/\***' */
	int whole_path;	   /* has '/' or '**': matched against more than the last component */
};

struct filter {
	struct filter_rule *rules;
	size_t n;
};

/* Append a rule. 0, or SB_ECONFIG with *error (heap, one line) for an
 * empty, overlong or malformed pattern (an unclosed '['), or past
 * FILTER_RULES_MAX rules. */
int filter_add(struct filter *f, int include, const char *pattern, char **error);
void filter_close(struct filter *f);

/* 1 when the relative path ('/'-separated, no leading '/') is excluded:
 * the first rule matching it or one of its parent directories excludes it.
 * An empty filter excludes nothing. */
int filter_excludes(const struct filter *f, const char *path, int is_dir);

/* 1 when pattern matches the whole of text with the rules above ('*' and
 * '?' stop at '/'); for tests. */
int filter_glob(const char *pattern, const char *text);

#endif
