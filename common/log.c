#include "common/io.h"
#include "common/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/uri.h"

/* A message longer than this is cut and marked; logging must not allocate,
 * since the allocator's failure path (fatal) logs. */
#define LOG_MSG_MAX 4096
/* Worst case a byte becomes "\u00XX" (6 bytes) in JSON; fields come with
 * their keys and quotes. */
#define LOG_LINE_MAX	   ((LOG_MSG_MAX + LOG_FIELDS_MAX * (LOG_FIELD_MAX + 40)) * 6 + 512)
#define LOG_TRUNC_MARK	   "..."
#define LOG_NAME_MAX	   64 /* component, module and process field keys */
#define LOG_PROCESS_FIELDS 2

/* Written once by log_setup before other threads start, then only read. */
static enum log_level log_level = LOG_WARN;
static enum log_format log_format = LOG_FORMAT_TEXT;
static char log_component[LOG_NAME_MAX] = "syncbit";
static struct {
	char key[LOG_NAME_MAX];
	char value[LOG_FIELD_MAX];
} process_fields[LOG_PROCESS_FIELDS];

static const char *const level_names[] = {
    [LOG_DEBUG] = "debug",
    [LOG_INFO] = "info",
    [LOG_WARN] = "warn",
    [LOG_ERROR] = "error",
};

struct line {
	char *p;
	size_t len;
	size_t cap;
	int full;
};

void log_setup(enum log_level level, enum log_format format)
{
	log_level = level;
	log_format = format;
}

enum log_level log_get_level(void)
{
	return log_level;
}

enum log_format log_get_format(void)
{
	return log_format;
}

void log_set_component(const char *component)
{
	snprintf(log_component, sizeof log_component, "%s", component ? component : "syncbit");
}

void log_set_field(const char *key, const char *value)
{
	int free_slot = -1;
	for (int i = 0; i < LOG_PROCESS_FIELDS; i++) {
		if (process_fields[i].key[0] && !strcmp(process_fields[i].key, key)) {
			free_slot = i;
			break;
		}
		if (!process_fields[i].key[0] && free_slot < 0)
			free_slot = i;
	}
	if (free_slot < 0)
		fatal("log: more than %d process fields", LOG_PROCESS_FIELDS);
	if (!value) {
		process_fields[free_slot].key[0] = '\0';
		return;
	}
	snprintf(process_fields[free_slot].key, LOG_NAME_MAX, "%s", key);
	snprintf(process_fields[free_slot].value, LOG_FIELD_MAX, "%s", value);
}

int log_parse_level(const char *s, enum log_level *out)
{
	size_t n = sizeof level_names / sizeof level_names[0];

	for (size_t i = 0; i < n; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (strcmp(s, "warning") == 0) {
		*out = LOG_WARN;
		return 0;
	}
	return SB_ECONFIG;
}

int log_parse_format(const char *s, enum log_format *out)
{
	if (strcmp(s, "text") == 0)
		*out = LOG_FORMAT_TEXT;
	else if (strcmp(s, "json") == 0)
		*out = LOG_FORMAT_JSON;
	else
		return SB_ECONFIG;
	return 0;
}

/* Reserve room for the truncation mark and newline so a cut line still
 * ends properly. */
static int line_room(struct line *l, size_t n)
{
	if (l->full)
		return 0;
	if (l->len + n + sizeof LOG_TRUNC_MARK + 2 > l->cap) {
		size_t mark = sizeof LOG_TRUNC_MARK - 1;

		memcpy(l->p + l->len, LOG_TRUNC_MARK, mark);
		l->len += mark;
		l->full = 1;
		return 0;
	}
	return 1;
}

static void line_put(struct line *l, const char *s, size_t n)
{
	if (!line_room(l, n))
		return;
	memcpy(l->p + l->len, s, n);
	l->len += n;
}

static void line_puts(struct line *l, const char *s)
{
	line_put(l, s, strlen(s));
}

/* Length of the well-formed UTF-8 sequence at s (at most n bytes), or 0 if
 * the bytes there are not valid UTF-8 (overlong, surrogate, > U+10FFFF). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (len > n)
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

static const char *json_short_escape(unsigned c)
{
	switch (c) {
	case '"':
		return "\\\"";
	case '\\':
		return "\\\\";
	case '\n':
		return "\\n";
	case '\r':
		return "\\r";
	case '\t':
		return "\\t";
	case '\b':
		return "\\b";
	case '\f':
		return "\\f";
	default:
		return NULL;
	}
}

/* JSON string body: invalid UTF-8 becomes U+FFFD so the line always parses. */
static void put_json_escaped(struct line *l, const char *msg, size_t n)
{
	const unsigned char *s = (const unsigned char *)msg;
	char esc[8];

	for (size_t i = 0; i < n && !l->full;) {
		unsigned c = s[i];
		const char *short_esc = json_short_escape(c);
		size_t k;

		if (short_esc) {
			line_puts(l, short_esc);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof esc, "\\u%04x", c);
			line_puts(l, esc);
			i++;
		} else if ((k = utf8_len(s + i, n - i)) == 0) {
			line_puts(l, "\\ufffd");
			i++;
		} else {
			line_put(l, (const char *)s + i, k);
			i += k;
		}
	}
}

/* The escape of byte c in a text line, or NULL when c stands for itself:
 * line breaks and tabs as \n \r \t, ESC, the other C0 codes and DEL as
 * \xNN. tmp holds the latter (at least 5 bytes). */
static const char *text_escape(unsigned char c, char *tmp)
{
	switch (c) {
	case '\n':
		return "\\n";
	case '\r':
		return "\\r";
	case '\t':
		return "\\t";
	default:
		if (c >= 0x20 && c != 0x7f)
			return NULL;
		snprintf(tmp, 5, "\\x%02x", c);
		return tmp;
	}
}

size_t log_escape(char *out, size_t cap, const char *s, size_t n)
{
	size_t len = 0;
	char tmp[8];
	if (cap == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		const char *e = text_escape((unsigned char)s[i], tmp);
		size_t k = e ? strlen(e) : 1;
		if (len + k >= cap)
			break;
		memcpy(out + len, e ? e : s + i, k);
		len += k;
	}
	out[len] = '\0';
	return len;
}

/* Text lines keep one record per line and keep terminal escapes from
 * untrusted names (paths, URLs) out of the operator's terminal. */
static void put_text_escaped(struct line *l, const char *msg, size_t n)
{
	char tmp[8];

	for (size_t i = 0; i < n && !l->full; i++) {
		const char *e = text_escape((unsigned char)msg[i], tmp);

		if (e)
			line_puts(l, e);
		else
			line_put(l, msg + i, 1);
	}
}

static void put_timestamp(struct line *l)
{
	struct timespec ts;
	struct tm tm;
	char date[32], out[48];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, sizeof out, "%s.%03ldZ", date, ts.tv_nsec / 1000000);
	line_puts(l, out);
}

/* "agent/peer.c" -> "peer" into out. */
static void module_of(const char *file, char *out, size_t cap)
{
	const char *base = strrchr(file, '/');
	base = base ? base + 1 : file;
	size_t n = strcspn(base, ".");
	snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), base);
}

/* ,"key":"value" with the value redacted (a field may name a source URL)
 * and cut at LOG_FIELD_MAX. Reserved and repeated keys are left out. */
static void put_json_field(struct line *l, const char *key, const char *value)
{
	char red[LOG_FIELD_MAX];
	size_t n = strlen(value);
	n = uri_redact_text(red, sizeof red, value, n < LOG_FIELD_MAX ? n : LOG_FIELD_MAX - 1);
	line_puts(l, ",\"");
	put_json_escaped(l, key, strlen(key));
	line_puts(l, "\":\"");
	put_json_escaped(l, red, n);
	line_puts(l, "\"");
}

static int key_reserved(const char *key)
{
	static const char *const reserved[] = {"ts", "level", "component", "module", "msg"};
	for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
		if (!strcmp(key, reserved[i]))
			return 1;
	return 0;
}

/* The call site's fields, then the process's that it did not set. */
static void put_json_fields(struct line *l, const struct log_field *kv)
{
	const char *seen[LOG_FIELDS_MAX] = {0};
	size_t nseen = 0;
	for (size_t i = 0; kv && kv[i].key && nseen < LOG_FIELDS_MAX; i++) {
		int dup = key_reserved(kv[i].key) || !kv[i].value;
		for (size_t k = 0; k < nseen && !dup; k++)
			dup = !strcmp(seen[k], kv[i].key);
		if (dup)
			continue;
		put_json_field(l, kv[i].key, kv[i].value);
		seen[nseen++] = kv[i].key;
	}
	for (int i = 0; i < LOG_PROCESS_FIELDS && nseen < LOG_FIELDS_MAX; i++) {
		int dup = !process_fields[i].key[0];
		for (size_t k = 0; k < nseen && !dup; k++)
			dup = !strcmp(seen[k], process_fields[i].key);
		if (dup)
			continue;
		put_json_field(l, process_fields[i].key, process_fields[i].value);
		seen[nseen++] = process_fields[i].key;
	}
}

/* One JSON object: ts, level, component, module, the fields, and msg
 * last, so that only the message can be cut. */
static void put_json_line(struct line *l, const char *level, const char *module,
			  const struct log_field *kv, const char *msg, size_t mlen, int cut)
{
	line_puts(l, "{\"ts\":\"");
	put_timestamp(l);
	line_puts(l, "\",\"level\":\"");
	line_puts(l, level);
	line_puts(l, "\",\"component\":\"");
	put_json_escaped(l, log_component, strlen(log_component));
	line_puts(l, "\",\"module\":\"");
	put_json_escaped(l, module, strlen(module));
	line_puts(l, "\"");
	put_json_fields(l, kv);
	line_puts(l, ",\"msg\":\"");
	put_json_escaped(l, msg, mlen);
	if (cut)
		line_puts(l, LOG_TRUNC_MARK);
	/* A cut line must still parse: close the object regardless. */
	l->full = 0;
	l->len = l->len + 3 <= l->cap ? l->len : l->cap - 3;
	memcpy(l->p + l->len, "\"}", 2);
	l->len += 2;
}

static void log_emit(const char *level, const char *module, const struct log_field *kv,
		     const char *fmt, va_list ap)
{
	char msg[LOG_MSG_MAX];
	static _Thread_local char buf[LOG_LINE_MAX];
	struct line l = {buf, 0, sizeof buf, 0};
	char red[LOG_MSG_MAX];
	int saved_errno = errno;
	int n = vsnprintf(msg, sizeof msg, fmt, ap);
	size_t mlen;

	if (n < 0)
		n = 0;
	mlen = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
	/* Source URLs may carry presigned credentials: never in a log. */
	int cut = (size_t)n > mlen;
	mlen = uri_redact_text(red, sizeof red, msg, mlen);
	cut |= mlen + 1 >= sizeof red;
	memcpy(msg, red, mlen + 1);

	if (log_format == LOG_FORMAT_JSON) {
		put_json_line(&l, level, module, kv, msg, mlen, cut);
	} else {
		/* An interactive user reading warnings wants them short; a log
		 * file or a debugging session wants to know when. */
		if (log_level == LOG_DEBUG || !isatty(STDERR_FILENO)) {
			put_timestamp(&l);
			line_puts(&l, " ");
		}
		line_puts(&l, "syncbit: ");
		line_puts(&l, level);
		line_puts(&l, ": ");
		put_text_escaped(&l, msg, mlen);
		if (cut)
			line_puts(&l, LOG_TRUNC_MARK);
	}
	l.p[l.len++] = '\n';
	(void)io_write_full(STDERR_FILENO, l.p, l.len);
	errno = saved_errno;
}

void log_at(enum log_level level, const char *file, const struct log_field *kv, const char *fmt,
	    ...)
{
	char module[LOG_NAME_MAX];
	va_list ap;

	if (level < log_level || level > LOG_ERROR)
		return;
	module_of(file, module, sizeof module);
	va_start(ap, fmt);
	log_emit(level_names[level], module, kv, fmt, ap);
	va_end(ap);
}

void log_print(enum log_level level, const char *module, const struct log_field *kv,
	       const char *fmt, ...)
{
	va_list ap;

	if (level > LOG_ERROR)
		return;
	va_start(ap, fmt);
	log_emit(level_names[level], module, kv, fmt, ap);
	va_end(ap);
}

/* ---- rate-limited lines ---- */

/* Distinct messages remembered; the oldest is forgotten first. */
#define LOG_LIMIT_SLOTS 64

struct limit_slot {
	uint64_t hash; /* FNV-1a of the message; 0: free */
	uint64_t last_ms;
	unsigned held;
};

static pthread_mutex_t limit_lock = PTHREAD_MUTEX_INITIALIZER;
static struct limit_slot limit_slots[LOG_LIMIT_SLOTS];
static uint64_t limit_clock_ms;

void log_limit_set_clock(uint64_t now_ms)
{
	limit_clock_ms = now_ms;
}

static uint64_t limit_now_ms(void)
{
	struct timespec ts;
	if (limit_clock_ms)
		return limit_clock_ms;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + 1;
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h ? h : 1;
}

/* The number of lines held back since msg last printed, or -1 when it must
 * be held back now. */
static long limit_check(const char *msg)
{
	uint64_t h = fnv1a(msg), now = limit_now_ms();
	struct limit_slot *slot = NULL, *oldest = &limit_slots[0];
	long held = 0;
	pthread_mutex_lock(&limit_lock);
	for (int i = 0; i < LOG_LIMIT_SLOTS && !slot; i++) {
		if (limit_slots[i].hash == h)
			slot = &limit_slots[i];
		else if (limit_slots[i].last_ms < oldest->last_ms)
			oldest = &limit_slots[i];
	}
	if (slot && now - slot->last_ms < LOG_LIMIT_MS) {
		slot->held++;
		held = -1;
	} else {
		if (!slot) {
			slot = oldest;
			slot->hash = h;
			slot->held = 0;
		}
		held = slot->held;
		slot->held = 0;
		slot->last_ms = now;
	}
	pthread_mutex_unlock(&limit_lock);
	return held;
}

void log_limited_at(enum log_level level, const char *file, const struct log_field *kv,
		    const char *fmt, ...)
{
	char msg[LOG_MSG_MAX];
	va_list ap;

	if (level < log_level || level > LOG_ERROR)
		return;
	int saved_errno = errno;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	long held = limit_check(msg);
	if (held > 0)
		log_at(level, file, kv, "%s (repeated %ld time%s since it was last logged)", msg,
		       held, held == 1 ? "" : "s");
	else if (held == 0)
		log_at(level, file, kv, "%s", msg);
	errno = saved_errno;
}

void fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit("fatal", "fatal", NULL, fmt, ap);
	va_end(ap);
	abort();
}
