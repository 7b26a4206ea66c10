/* Configuration: a set of known keys whose values come, in rising precedence,
 * from defaults, a YAML file (--config), the environment (SYNCBIT_<KEY>, key
 * upper-cased with '-' as '_') and command-line flags. Not thread-safe; built
 * on the loop thread before work starts. */
#ifndef SYNCBIT_CONFIG_H
#define SYNCBIT_CONFIG_H

#include <stdint.h>

enum config_origin {
	CONFIG_DEFAULT,
	CONFIG_FILE,
	CONFIG_ENV,
	CONFIG_FLAG,
};

struct config_key {
	const char *name;   /* flag name without "--", e.g. "block-size" */
	const char *defval; /* default value or NULL */
	int is_bool;        /* flag takes no argument; value "true"/"false" */
	const char *help;
};

struct config_entry {
	const struct config_key *key;
	char *value;
	enum config_origin origin;
};

struct config {
	struct config_entry *entries;
	int n;
	char *error; /* last error message, one line, owned */
};

/* keys is an array terminated by an entry with name == NULL; it must
 * outlive cfg. Defaults are applied. */
void config_init(struct config *cfg, const struct config_key *keys);
void config_close(struct config *cfg);

/* Load a YAML mapping of key: scalar (lists become comma-joined strings).
 * Unknown keys and malformed YAML give SB_ECONFIG with cfg->error saying
 * "FILE:LINE: what". Only overrides values whose origin is below FILE. */
int config_load_file(struct config *cfg, const char *path);
/* Apply SYNCBIT_* environment variables for every known key. */
int config_load_env(struct config *cfg);
/* Set a value from a flag (highest precedence). SB_ECONFIG if unknown. */
int config_set(struct config *cfg, const char *name, const char *value,
	       enum config_origin origin);

/* Value or NULL when unset. */
const char *config_get(const struct config *cfg, const char *name);
enum config_origin config_origin_of(const struct config *cfg, const char *name);
/* Typed readers: 0, or SB_ECONFIG with cfg->error set ("--name: why"). */
int config_get_bool(struct config *cfg, const char *name, int *out);
int config_get_u64(struct config *cfg, const char *name, uint64_t min,
		   uint64_t max, uint64_t *out);
/* Sizes with optional suffix K, M, G, T (powers of 1024) or KiB/MiB/GiB/TiB,
 * KB/MB/GB/TB (powers of 1000). */
int config_get_size(struct config *cfg, const char *name, uint64_t min,
		    uint64_t max, uint64_t *out);

/* Parse a size string as above; 0 or SB_ECONFIG. */
int config_parse_size(const char *s, uint64_t *out);

/* Parse argv for the keys of cfg: --name VALUE, --name=VALUE, boolean
 * --name / --no-name. Non-option arguments are collected into positional
 * (heap array of pointers into argv, *npos entries). A --config FILE flag,
 * when present, is loaded before env and flags, keeping the precedence.
 * Returns 0, or SB_ECONFIG (usage error) with cfg->error set. */
int config_parse_args(struct config *cfg, int argc, char **argv,
		      char ***positional, int *npos);

#endif
