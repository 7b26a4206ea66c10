#include "agent/cron.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"
#include "common/err.h"

#define CRON_FIELDS 5

struct field_spec {
	const char *name;
	int min, max; /* max accepted on input (7 for day-of-week) */
	const char *const *names;
	int names_base; /* value of names[0] */
};

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
					  "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const dow_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const struct field_spec fields[CRON_FIELDS] = {
    {"minute", 0, 59, NULL, 0},		 {"hour", 0, 23, NULL, 0},
    {"day-of-month", 1, 31, NULL, 0},	 {"month", 1, 12, month_names, 1},
    {"day-of-week", 0, 7, dow_names, 0},
};

static const struct {
	const char *name;
	const char *expr; /* NULL: @reboot */
} macros[] = {
    {"@reboot", NULL},		{"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"},
    {"@monthly", "0 0 1 * *"},	{"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},
    {"@midnight", "0 0 * * *"}, {"@hourly", "0 * * * *"},
};

static int field_error(char **error, const struct field_spec *f, const char *tok, size_t len,
		       const char *why)
{
	*error = xasprintf("%s field '%.*s': %s", f->name, (int)len, tok, why);
	return SB_ECONFIG;
}

/* A number or a name at *s; advances *s. */
static int parse_value(const char **s, const char *end, const struct field_spec *f, int *out)
{
	const char *p = *s;
	if (p < end && isdigit((unsigned char)*p)) {
		long v = 0;
		for (; p < end && isdigit((unsigned char)*p); p++)
			v = v < 100000 ? v * 10 + (*p - '0') : v;
		*out = (int)v;
		*s = p;
		return 0;
	}
	if (!f->names)
		return -1;
	const char *w = p;
	while (p < end && isalpha((unsigned char)*p))
		p++;
	if (p - w != 3)
		return -1;
	for (int i = 0; f->names[i]; i++)
		if (!strncasecmp(w, f->names[i], 3)) {
			*out = f->names_base + i;
			*s = p;
			return 0;
		}
	return -1;
}

/* One comma-separated element: "*", "N", "N-M", each with an optional
 * "/STEP"; "N/STEP" runs from N to the field's end. */
static int parse_element(const char *tok, const char *end, const struct field_spec *f,
			 uint64_t *bits, char **error)
{
	const char *s = tok;
	int lo, hi, step = 1;
	size_t len = (size_t)(end - tok);
	if (s < end && *s == '*') {
		lo = f->min;
		hi = f->max == 7 ? 6 : f->max;
		s++;
	} else {
		if (parse_value(&s, end, f, &lo) < 0)
			return field_error(error, f, tok, len,
					   f->names ? "expected a number or a name"
						    : "expected a number");
		hi = lo;
		if (s < end && *s == '-') {
			s++;
			if (parse_value(&s, end, f, &hi) < 0)
				return field_error(error, f, tok, len, "range without an end");
		} else if (s < end && *s == '/') {
			hi = f->max == 7 ? 6 : f->max;
		}
	}
	if (s < end && *s == '/') {
		s++;
		if (s == end || !isdigit((unsigned char)*s))
			return field_error(error, f, tok, len, "step must be a number");
		if (parse_value(&s, end, &fields[0], &step) < 0 || step < 1)
			return field_error(error, f, tok, len, "step must be at least 1");
		if (step > f->max)
			return field_error(error, f, tok, len, "step is larger than the field");
	}
	if (s != end)
		return field_error(error, f, tok, len, "unexpected characters");
	if (lo < f->min || lo > f->max || hi < f->min || hi > f->max) {
		char why[64];
		snprintf(why, sizeof why, "%d is outside %d-%d",
			 lo < f->min || lo > f->max ? lo : hi, f->min, f->max);
		return field_error(error, f, tok, len, why);
	}
	if (lo > hi)
		return field_error(error, f, tok, len, "range start is after its end");
	for (int v = lo; v <= hi; v += step)
		*bits |= 1ull << (f->max == 7 && v == 7 ? 0 : v);
	return 0;
}

static int parse_field(const char *tok, size_t len, const struct field_spec *f, uint64_t *bits,
		       char **error)
{
	const char *end = tok + len, *s = tok;
	*bits = 0;
	while (s <= end) {
		const char *comma = memchr(s, ',', (size_t)(end - s));
		const char *e = comma ? comma : end;
		if (e == s)
			return field_error(error, f, tok, len, "empty list element");
		int rc = parse_element(s, e, f, bits, error);
		if (rc < 0)
			return rc;
		s = e + 1;
	}
	return 0;
}

static const char *skip_space(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* A macro or five fields at the start of line; *rest points after them. */
static int parse_schedule(const char *line, struct cron *out, const char **rest, char **error)
{
	const char *s = skip_space(line);
	memset(out, 0, sizeof *out);
	if (*s == '@') {
		size_t n = strcspn(s, " \t\r\n");
		for (size_t i = 0; i < sizeof macros / sizeof macros[0]; i++) {
			if (strlen(macros[i].name) != n || strncasecmp(s, macros[i].name, n))
				continue;
			*rest = skip_space(s + n);
			if (!macros[i].expr) {
				out->reboot = 1;
				return 0;
			}
			const char *unused;
			return parse_schedule(macros[i].expr, out, &unused, error);
		}
		*error = xasprintf("unknown macro '%.*s' (known: @reboot @yearly @annually "
				   "@monthly @weekly @daily @midnight @hourly)",
				   (int)n, s);
		return SB_ECONFIG;
	}
	uint64_t bits[CRON_FIELDS];
	for (int i = 0; i < CRON_FIELDS; i++) {
		size_t n = strcspn(s, " \t\r\n");
		if (n == 0) {
			*error = xasprintf("expected 5 fields (minute hour day-of-month month "
					   "day-of-week), got %d",
					   i);
			return SB_ECONFIG;
		}
		int rc = parse_field(s, n, &fields[i], &bits[i], error);
		if (rc < 0)
			return rc;
		if (i == 2)
			out->dom_star = *s == '*';
		if (i == 4)
			out->dow_star = *s == '*';
		s = skip_space(s + n);
	}
	out->minute = bits[0];
	out->hour = (uint32_t)bits[1];
	out->dom = (uint32_t)bits[2];
	out->month = (uint16_t)bits[3];
	out->dow = (uint8_t)bits[4];
	*rest = s;
	return 0;
}

int cron_parse(const char *expr, struct cron *out, char **error)
{
	const char *rest;
	*error = NULL;
	int rc = parse_schedule(expr, out, &rest, error);
	if (rc < 0)
		return rc;
	rest += strspn(rest, " \t\r\n");
	if (*rest) {
		*error =
		    xasprintf("'%s' follows the schedule: this takes the 5 schedule fields (or "
			      "one macro) of a crontab line, not its command",
			      rest);
		return SB_ECONFIG;
	}
	return 0;
}

static int leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
	static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	return m == 2 && leap(y) ? 29 : d[m - 1];
}

/* Sunday = 0 (Sakamoto's method). */
static int weekday(int y, int m, int d)
{
	static const int t[] = {0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4};
	if (m < 3)
		y -= 1;
	return (y + y / 4 - y / 100 + y / 400 + t[m - 1] + d) % 7;
}

static int day_matches(const struct cron *c, int y, int m, int d)
{
	int dom = (c->dom >> d) & 1;
	int dow = (c->dow >> weekday(y, m, d)) & 1;
	if (c->dom_star || c->dow_star)
		return dom && dow;
	return dom || dow;
}

int cron_next(const struct cron *c, time_t after, time_t *next)
{
	struct tm tm;
	if (c->reboot || !localtime_r(&after, &tm))
		return -ENOENT;
	int y = tm.tm_year + 1900, mo = tm.tm_mon + 1, d = tm.tm_mday, h = tm.tm_hour;
	int mi = tm.tm_min + 1;
	int last_year = y + CRON_HORIZON_YEARS;
	/* Walk civil time field by field, largest first, so each step skips
	 * everything a mismatch rules out. */
	while (y <= last_year) {
		if (mi > 59)
			mi = 0, h++;
		if (h > 23)
			h = 0, d++;
		if (mo > 12)
			mo = 1, y++;
		if (d > days_in_month(y, mo)) {
			d = 1, mo++;
			if (mo > 12)
				mo = 1, y++;
		}
		if (!((c->month >> mo) & 1)) {
			mo++, d = 1, h = 0, mi = 0;
			continue;
		}
		if (!day_matches(c, y, mo, d)) {
			d++, h = 0, mi = 0;
			continue;
		}
		if (!((c->hour >> h) & 1)) {
			h++, mi = 0;
			continue;
		}
		if (!((c->minute >> mi) & 1)) {
			mi++;
			continue;
		}
		struct tm t = {.tm_year = y - 1900,
			       .tm_mon = mo - 1,
			       .tm_mday = d,
			       .tm_hour = h,
			       .tm_min = mi,
			       .tm_isdst = -1};
		time_t v = mktime(&t);
		/* A time in a DST gap lands after it; one in a repeated hour
		 * may lie before `after`: then look on. */
		if (v != (time_t)-1 && v > after) {
			*next = v;
			return 0;
		}
		mi++;
	}
	return -ENOENT;
}

int cron_next_of(const struct cron *c, size_t n, time_t after, time_t *next)
{
	int found = 0;
	for (size_t i = 0; i < n; i++) {
		time_t t;
		if (cron_next(&c[i], after, &t) == 0 && (!found || t < *next)) {
			*next = t;
			found = 1;
		}
	}
	return found ? 0 : -ENOENT;
}

static int is_assignment(const char *s)
{
	if (!isalpha((unsigned char)*s) && *s != '_')
		return 0;
	while (isalnum((unsigned char)*s) || *s == '_')
		s++;
	s = skip_space(s);
	return *s == '=';
}

int cron_parse_crontab(const char *text, struct cron **out, size_t *n, char **error)
{
	size_t cap = 0, line_no = 0;
	*out = NULL;
	*n = 0;
	*error = NULL;
	for (const char *line = text; line && *line;) {
		const char *nl = strchr(line, '\n');
		char *l = nl ? xstrndup(line, (size_t)(nl - line)) : xstrdup(line);
		line = nl ? nl + 1 : NULL;
		line_no++;
		const char *s = skip_space(l);
		int rc = 0;
		if (*s && *s != '#' && *s != '\r' && !is_assignment(s)) {
			const char *rest;
			struct cron c;
			char *why = NULL;
			rc = parse_schedule(s, &c, &rest, &why);
			if (rc < 0) {
				*error = xasprintf("line %zu: %s", line_no, why);
				free(why);
			} else {
				if (*n == cap) {
					cap = cap ? 2 * cap : 4;
					*out = xrealloc(*out, cap * sizeof **out);
				}
				(*out)[(*n)++] = c;
			}
		}
		free(l);
		if (rc < 0) {
			free(*out);
			*out = NULL;
			*n = 0;
			return rc;
		}
	}
	if (*n == 0) {
		*error = xstrdup("no job line (a schedule and a command)");
		return SB_ECONFIG;
	}
	return 0;
}

char *cron_crontab_commands(const char *text, size_t *n)
{
	struct buf b = BUF_INIT;
	size_t line_no = 0;
	*n = 0;
	for (const char *line = text; line && *line;) {
		const char *nl = strchr(line, '\n');
		char *l = nl ? xstrndup(line, (size_t)(nl - line)) : xstrdup(line);
		line = nl ? nl + 1 : NULL;
		line_no++;
		const char *s = skip_space(l), *rest;
		struct cron c;
		char *why = NULL;
		if (*s && *s != '#' && *s != '\r' && !is_assignment(s) &&
		    parse_schedule(s, &c, &rest, &why) == 0) {
			rest = skip_space(rest);
			size_t len = strcspn(rest, "\r");
			if (len && (*n)++ == 0)
				buf_printf(&b, "line %zu: %.*s", line_no, (int)len, rest);
		}
		free(why);
		free(l);
	}
	return *n ? buf_steal(&b) : (buf_close(&b), NULL);
}
