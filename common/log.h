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

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* As log_msg, but a message (compared after formatting) printed less than
 * LOG_LIMIT_MS ago is held back and counted; the next time it prints, it
 * says how many times it was held back. For failures that repeat on every
 * retry: one line per distinct failure per minute at most. */
#define LOG_LIMIT_MS 60000
void log_limited(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
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
