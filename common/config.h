/* Configuration: a set of known keys whose values come, in rising precedence,
 * from defaults, a YAML file (--config), the environment (SYNCBIT_<KEY>, key
 * upper-cased with '-' as '_') and command-line flags. The YAML part lives in
 * config_file.c. Not thread-safe; built on the loop thread before work
 * starts. */
#ifndef SYNCBIT_CONFIG_H
#define SYNCBIT_CONFIG_H

#include <stdint.h>

enum config_origin {
	CONFIG_DEFAULT,
	CONFIG_FILE,
	CONFIG_ENV,
	CONFIG_FLAG,
};

/* What a key takes (config_key.kind). */
enum config_kind {
	CONFIG_VALUE = 0, /* one value: --name VALUE; a later one replaces it */
	CONFIG_BOOL = 1,  /* no argument; value "true"/"false" */
	/* A list: every --name VALUE adds one item, in order; a YAML list
	 * gives several, and an environment variable one a line. Items from a
	 * higher origin replace those from lower ones. */
	CONFIG_LIST = 2,
};

struct config_key {
	const char *name;   /* flag name without "--", e.g. "block-size" */
	const char *defval; /* default value or NULL */
	int kind;	    /* enum config_kind */
	const char *help;
	const char *metavar; /* what the value is, for help ("DIR", "N"); NULL: booleans */
	char short_name;     /* a one-letter alias (-j for --jobs), or 0 */
};

struct config_entry {
	const struct config_key *key;
	char *value; /* a list's items joined by '\n' */
	enum config_origin origin;
	/* CONFIG_LIST: the items, and each one's rank among every list item
	 * cfg took (so two lists interleave as they were given). */
	char **items;
	unsigned *ranks;
	size_t nitems;
};

struct config {
	struct config_entry *entries;
	int n;
	char *error;	/* last error message, one line, owned */
	int file_error; /* the error is the config file's (no usage line needed) */
	unsigned rank;	/* list items taken so far */
	/* Keys a config file may hold that other commands read: such a key is
	 * skipped, one neither cfg nor known takes is an error. NULL: none. */
	int (*known)(const char *key);
};

/* keys is an array terminated by an entry with name == NULL; it must
 * outlive cfg. Defaults are applied. */
void config_init(struct config *cfg, const struct config_key *keys);
void config_close(struct config *cfg);

/* Load a YAML mapping of key: scalar (lists become comma-joined strings,
 * or items of a CONFIG_LIST key). Keys cfg->known takes are skipped.
 * Unknown keys, duplicate keys, the key "config" and malformed YAML give
 * SB_ECONFIG with cfg->error saying "FILE:LINE: what"; a file that cannot be
 * opened gives -errno with cfg->error "FILE: why". A null value ("key:",
 * "~") leaves the key as it was. Only overrides values whose origin is not
 * above FILE. */
int config_load_file(struct config *cfg, const char *path);
/* Apply SYNCBIT_* environment variables for every known key; an empty
 * variable counts as unset. Always 0. */
int config_load_env(struct config *cfg);
/* Set a value with the given origin; it replaces the current value unless
 * that came from a higher origin (among equals the later call wins).
 * SB_ECONFIG if the key is unknown. */
int config_set(struct config *cfg, const char *name, const char *value, enum config_origin origin);

/* Value or NULL when unset. */
const char *config_get(const struct config *cfg, const char *name);
/* The items of a CONFIG_LIST key (NULL when it has none): *n of them, and
 * with ranks their order among all list items (may be NULL). */
char *const *config_get_list(const struct config *cfg, const char *name, size_t *n,
			     const unsigned **ranks);
enum config_origin config_origin_of(const struct config *cfg, const char *name);
/* Typed readers: 0, or SB_ECONFIG with cfg->error set ("--name: why"),
 * also when the key has no value. Booleans accept true/false, yes/no,
 * on/off, 1/0 (any case). */
int config_get_bool(struct config *cfg, const char *name, int *out);
int config_get_u64(struct config *cfg, const char *name, uint64_t min, uint64_t max, uint64_t *out);
/* Sizes with optional suffix K, M, G, T (powers of 1024) or KiB/MiB/GiB/TiB,
 * KB/MB/GB/TB (powers of 1000), or B; suffixes in any case, one space
 * allowed before them. A decimal fraction is accepted when the result is a
 * whole number of bytes ("1.5GiB", not "0.1K"). Overflow is an error. */
int config_get_size(struct config *cfg, const char *name, uint64_t min, uint64_t max,
		    uint64_t *out);

/* Parse a size string as above; 0 or SB_ECONFIG. */
int config_parse_size(const char *s, uint64_t *out);

/* Parse argv for the keys of cfg: --name VALUE, --name=VALUE, boolean
 * --name / --no-name / --name=false, and a key's short alias: -j VALUE,
 * -jVALUE, -q, or booleans together (-qv); "--" ends the options and "-" is
 * a positional. Every element is parsed: argv[0] is an argument, not a program
 * name. A CONFIG_LIST flag may repeat, each adding an item. Non-option arguments are collected into
 * positional (heap array of pointers into argv, NULL-terminated, *npos entries; the caller frees
 * the array); with positional NULL they are an error. When the table has a key "config", the file
 * it names (flag, else SYNCBIT_CONFIG, else its default, which may be missing or unreadable: then
 * it is skipped) is loaded first, then env, then the flags, whatever the argument order. Returns 0,
 * or SB_ECONFIG (usage error, bad or missing config file included) with cfg->error set. */
int config_parse_args(struct config *cfg, int argc, char **argv, char ***positional, int *npos);

#endif
