/* Logging to stderr: levels, plain text or JSON lines. Thread-safe (one
 * write(2) per line). Modules log through these; only cli/ prints results. */
#ifndef SYNCBIT_LOG_H
#define SYNCBIT_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

/* Set the minimum level printed (default LOG_WARN) and the line format. */
void log_setup(enum log_level level, enum log_format format);
/* Parse "debug|info|warn|error" / "text|json"; 0 or SB_ECONFIG. */
int log_parse_level(const char *s, enum log_level *out);
int log_parse_format(const char *s, enum log_format *out);
enum log_level log_get_level(void);

/* A structured field of a line: in JSON lines a key of its own (the value
 * redacted as messages are); text lines show only the message, which names
 * the same things. LOG_KV({"dataset", name}, {"peer", node}) builds a list
 * in place. Keys are fixed words: dataset, node, peer, source, error ... */
struct log_field {
	const char *key;
	const char *value; /* NULL: the field is left out */
};
#define LOG_KV(...)    ((const struct log_field[]){__VA_ARGS__, {NULL, NULL}})
#define LOG_FIELDS_MAX 8   /* fields of one line, the process's included */
#define LOG_FIELD_MAX  512 /* bytes of one value; longer ones are cut */

/* What every JSON line of this process says it comes from: the command
 * ("daemon", "scheduler", "sync", "pull" ...), and fields that hold for
 * the whole process (the agent's node). A call site's field of the same
 * key wins. Set before other threads start. */
void log_set_component(const char *component);
void log_set_field(const char *key, const char *value);

/* The module of a line is the source file it comes from (agent/peer.c:
 * "peer"); kv may be NULL. */
void log_at(enum log_level level, const char *file, const struct log_field *kv, const char *fmt,
	    ...) __attribute__((format(printf, 4, 5)));
#define log_msg(level, ...) log_at(level, __FILE__, NULL, __VA_ARGS__)
#define log_debug(...)	    log_at(LOG_DEBUG, __FILE__, NULL, __VA_ARGS__)
#define log_info(...)	    log_at(LOG_INFO, __FILE__, NULL, __VA_ARGS__)
#define log_warn(...)	    log_at(LOG_WARN, __FILE__, NULL, __VA_ARGS__)
#define log_error(...)	    log_at(LOG_ERROR, __FILE__, NULL, __VA_ARGS__)
/* With structured fields: log_with(LOG_WARN, LOG_KV({"peer", n}), "...", ...). */
#define log_with(level, kv, ...) log_at(level, __FILE__, kv, __VA_ARGS__)

/* A line that is a command's output rather than a log message (the final
 * error, progress): printed whatever the level, in the log's format, with
 * module as given. */
void log_print(enum log_level level, const char *module, const struct log_field *kv,
	       const char *fmt, ...) __attribute__((format(printf, 4, 5)));
enum log_format log_get_format(void);

/* As log_msg, but a message (compared after formatting) printed less than
 * LOG_LIMIT_MS ago is held back and counted; the next time it prints, it
 * says how many times it was held back. For failures that repeat on every
 * retry: one line per distinct failure per minute at most. */
#define LOG_LIMIT_MS 60000
void log_limited_at(enum log_level level, const char *file, const struct log_field *kv,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define log_limited(level, ...)		 log_limited_at(level, __FILE__, NULL, __VA_ARGS__)
#define log_limited_with(level, kv, ...) log_limited_at(level, __FILE__, kv, __VA_ARGS__)
/* Clock override for tests, in milliseconds (0: the monotonic clock). */
void log_limit_set_clock(uint64_t now_ms);

/* Copy s[0..n) into out (cap bytes, NUL-terminated, cut before an escape
 * that does not fit) with every control character escaped: \n \r \t as
 * such, ESC, the other C0 codes and DEL as \xNN, so a message stays one
 * line and a name cannot drive the terminal. Text log lines go through
 * it; so do the CLI's error lines. Returns the length written; 4n + 1
 * bytes always suffice. No allocation. */
size_t log_escape(char *out, size_t cap, const char *s, size_t n);

/* A broken invariant or failed allocation: log and abort(). Never for input. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
