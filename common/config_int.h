/* What config.c and config_file.c share: errors, lookup and setting of
 * entries. Not for other modules. */
#ifndef SYNCBIT_CONFIG_INT_H
#define SYNCBIT_CONFIG_INT_H

#include <stddef.h>

#include "common/config.h"

#define CONFIG_ENV_PREFIX "SYNCBIT_"
#define CONFIG_FILE_KEY	  "config"
#define CONFIG_NAME_MAX	  64
/* Suggest a known name for a misspelt one within this edit distance. */
#define CONFIG_SUGGEST_DIST 2

void config_error(struct config *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
struct config_entry *config_find(const struct config *cfg, const char *name);
/* Set e from origin unless its value came from a higher one. A list key
 * takes value as one more item (its items from a lower origin go first). */
void config_entry_set(struct config *cfg, struct config_entry *e, const char *value,
		      enum config_origin origin);
/* Levenshtein distance of two names, SIZE_MAX past CONFIG_NAME_MAX. */
size_t config_edit_distance(const char *a, const char *b);

#endif
