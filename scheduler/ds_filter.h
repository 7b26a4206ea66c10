/* A dataset's include/exclude rules (common/source/filter.h) as the
 * scheduler keeps them: read from an admin request or a saved definition
 * (FilterRule in proto/wire.proto), copied, compared, shown. Each rule
 * keeps the pattern as given, which is what goes on the wire and to disk. */
#ifndef SYNCBIT_DS_FILTER_H
#define SYNCBIT_DS_FILTER_H

#include <jansson.h>
#include <stddef.h>

#include "common/source/filter.h"
#include "proto/wire.pb-c.h"

/* Build f (empty on entry) from the wire's rules. 0, or SB_EPROTO with
 * *why (heap, one line) for a malformed or overlong pattern or too many
 * rules; then f is left empty. */
int ds_filter_from_wire(Syncbit__FilterRule *const *rules, size_t n, struct filter *f, char **why);
/* The rules as wire messages: an array of n pointers into *store (one
 * allocation each; free both, the strings stay f's). NULL when f is empty. */
Syncbit__FilterRule **ds_filter_to_wire(const struct filter *f, Syncbit__FilterRule **store);
/* dst (empty or built) becomes a copy of src. */
void ds_filter_copy(struct filter *dst, const struct filter *src);
/* 1 when a and b hold the same rules in the same order. */
int ds_filter_same(const struct filter *a, const struct filter *b);
/* "- *.tmp, + keep/dir" (rsync's short form), or "(none)". Heap string. */
char *ds_filter_text(const struct filter *f);
/* [{"rule": "exclude"|"include", "pattern": "..."}] (new reference). */
json_t *ds_filter_json(const struct filter *f);

#endif
