/* The bounded XML scanner (xml.h): one pass over the document, the open
 * elements on a fixed stack, the text of the innermost one in a buffer
 * bounded by XML_TEXT_MAX. */
#include "common/source/xml.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
int xml_fail(struct xml *x, const char *fmt, ...)
{
	int n = snprintf(x->err, XML_ERR_MAX, "byte %zu: ", (size_t)(x->p - x->start));
	va_list ap;
	va_start(ap, fmt);
	if (n > 0 && n < XML_ERR_MAX)
		vsnprintf(x->err + n, XML_ERR_MAX - (size_t)n, fmt, ap);
	va_end(ap);
	for (char *c = x->err; *c; c++) /* quoted bytes of the document stay on one line */
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	return SB_EPROTO;
}

static int starts(const struct xml *x, const char *s)
{
	size_t n = strlen(s);
	return (size_t)(x->end - x->p) >= n && memcmp(x->p, s, n) == 0;
}

/* Skip past the terminator of a construct opened at x->p. */
static int skip_past(struct xml *x, const char *term, const char *what)
{
	size_t n = strlen(term);
	const char *q = memmem(x->p, (size_t)(x->end - x->p), term, n);
	if (!q)
		return xml_fail(x, "unterminated %s", what);
	x->p = q + n;
	return 0;
}

static int is_name_start(unsigned char c)
{
	return isalpha(c) || c == '_' || c == ':' || c >= 0x80;
}

static int is_name_char(unsigned char c)
{
	return is_name_start(c) || isdigit(c) || c == '-' || c == '.';
}

static int is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void skip_space(struct xml *x)
{
	while (x->p < x->end && is_space((unsigned char)*x->p))
		x->p++;
}

static int read_name(struct xml *x, char *out)
{
	const char *s = x->p;
	if (x->p >= x->end || !is_name_start((unsigned char)*x->p))
		return xml_fail(x, "expected a name");
	while (x->p < x->end && is_name_char((unsigned char)*x->p))
		x->p++;
	size_t n = (size_t)(x->p - s);
	if (n > XML_NAME_MAX)
		return xml_fail(x, "name longer than %d bytes", XML_NAME_MAX);
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

static void put_utf8(struct buf *b, uint32_t cp)
{
	uint8_t u[4];
	size_t n;
	if (cp < 0x80) {
		u[0] = (uint8_t)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (uint8_t)(0xc0 | cp >> 6);
		u[1] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (uint8_t)(0xe0 | cp >> 12);
		u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (uint8_t)(0xf0 | cp >> 18);
		u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 4;
	}
	buf_append(b, u, n);
}

static int entity(struct xml *x)
{
	static const struct {
		const char *name;
		char c;
	} named[] = {{"lt", '<'}, {"gt", '>'}, {"amp", '&'}, {"quot", '"'}, {"apos", '\''}};
	const char *s = x->p + 1;
	const char *semi = memchr(s, ';', (size_t)(x->end - s) < 12 ? (size_t)(x->end - s) : 12);
	if (!semi)
		return xml_fail(x, "'&' that starts no entity");
	size_t n = (size_t)(semi - s);
	if (n >= 2 && s[0] == '#') {
		int hex = s[1] == 'x';
		const char *d = s + 1 + hex;
		uint32_t cp = 0;
		if (d == semi)
			return xml_fail(x, "empty character reference");
		for (; d < semi; d++) {
			int v = isdigit((unsigned char)*d)	     ? *d - '0'
				: hex && isxdigit((unsigned char)*d) ? tolower(*d) - 'a' + 10
								     : -1;
			if (v < 0)
				return xml_fail(x, "bad character reference");
			cp = cp * (hex ? 16 : 10) + (uint32_t)v;
			if (cp > 0x10ffff)
				return xml_fail(x, "character reference out of range");
		}
		if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff))
			return xml_fail(x, "character reference to U+%04" PRIX32, cp);
		put_utf8(&x->text, cp);
	} else {
		size_t i;
		for (i = 0; i < sizeof named / sizeof named[0]; i++)
			if (strlen(named[i].name) == n && !memcmp(s, named[i].name, n))
				break;
		if (i == sizeof named / sizeof named[0])
			return xml_fail(x, "unknown entity &%.*s;", (int)n, s);
		buf_append(&x->text, &named[i].c, 1);
	}
	x->p = semi + 1;
	return 0;
}

static int text(struct xml *x)
{
	while (x->p < x->end && *x->p != '<') {
		if (*x->p == '&') {
			int rc = entity(x);
			if (rc < 0)
				return rc;
		} else {
			if (*x->p == '\0')
				return xml_fail(x, "NUL byte");
			if (x->depth == 0 && !is_space((unsigned char)*x->p))
				return xml_fail(x, "text outside the root element");
			buf_append(&x->text, x->p, 1);
			x->p++;
		}
		if (x->text.len > XML_TEXT_MAX)
			return xml_fail(x, "text longer than %d bytes", XML_TEXT_MAX);
	}
	return 0;
}

static int attributes(struct xml *x)
{
	char name[XML_NAME_MAX + 1];
	for (;;) {
		const char *before = x->p;
		skip_space(x);
		if (x->p >= x->end)
			return xml_fail(x, "unterminated tag");
		if (*x->p == '>' || *x->p == '/')
			return 0;
		if (x->p == before)
			return xml_fail(x, "expected a space before an attribute");
		int rc = read_name(x, name);
		if (rc < 0)
			return rc;
		skip_space(x);
		if (x->p >= x->end || *x->p != '=')
			return xml_fail(x, "attribute %s without a value", name);
		x->p++;
		skip_space(x);
		if (x->p >= x->end || (*x->p != '"' && *x->p != '\''))
			return xml_fail(x, "attribute %s: value not quoted", name);
		char q = *x->p++;
		const char *close = memchr(x->p, q, (size_t)(x->end - x->p));
		if (!close || memchr(x->p, '<', (size_t)(close - x->p)))
			return xml_fail(x, "attribute %s: unterminated value", name);
		x->p = close + 1;
	}
}

static int open_tag(struct xml *x)
{
	x->p++; /* '<' */
	if (x->depth == 0 && x->roots > 0)
		return xml_fail(x, "a second root element");
	if (x->depth == XML_DEPTH_MAX)
		return xml_fail(x, "elements nested deeper than %d", XML_DEPTH_MAX);
	int rc = read_name(x, x->names[x->depth]);
	if (rc < 0 || (rc = attributes(x)) < 0)
		return rc;
	x->depth++;
	if (x->depth == 1)
		x->roots++;
	buf_reset(&x->text);
	if ((rc = x->cb(x, XML_OPEN, NULL, 0)) < 0)
		return rc;
	if (*x->p == '/') {
		if (!starts(x, "/>"))
			return xml_fail(x, "expected '/>'");
		x->p += 2;
		rc = x->cb(x, XML_CLOSE, "", 0);
		x->depth--;
		return rc;
	}
	x->p++; /* '>' */
	return 0;
}

static int close_tag(struct xml *x)
{
	char name[XML_NAME_MAX + 1];
	x->p += 2; /* "</" */
	int rc = read_name(x, name);
	if (rc < 0)
		return rc;
	skip_space(x);
	if (x->p >= x->end || *x->p != '>')
		return xml_fail(x, "unterminated end tag </%s", name);
	x->p++;
	if (x->depth == 0 || strcmp(name, x->names[x->depth - 1]) != 0)
		return xml_fail(x, "</%s> does not close <%s>", name,
				x->depth ? x->names[x->depth - 1] : "(nothing)");
	buf_cstr(&x->text);
	rc = x->cb(x, XML_CLOSE, (const char *)x->text.ptr, x->text.len);
	buf_reset(&x->text);
	x->depth--;
	return rc;
}

static int markup(struct xml *x)
{
	if (starts(x, "<!--"))
		return skip_past(x, "-->", "comment");
	if (starts(x, "<?"))
		return skip_past(x, "?>", "processing instruction");
	if (starts(x, "<![CDATA[")) {
		if (x->depth == 0)
			return xml_fail(x, "CDATA outside the root element");
		const char *s = x->p + 9;
		int rc = skip_past(x, "]]>", "CDATA section");
		if (rc < 0)
			return rc;
		buf_append(&x->text, s, (size_t)(x->p - 3 - s));
		if (x->text.len > XML_TEXT_MAX)
			return xml_fail(x, "text longer than %d bytes", XML_TEXT_MAX);
		return 0;
	}
	if (starts(x, "<!"))
		return xml_fail(x, "DTDs and declarations are not accepted");
	if (starts(x, "</"))
		return close_tag(x);
	return open_tag(x);
}

int xml_scan(const char *doc, size_t len, xml_cb cb, void *arg, char *err)
{
	struct xml x = {.p = doc, .start = doc, .end = doc + len, .cb = cb, .arg = arg, .err = err};
	int rc = 0;
	err[0] = '\0';
	if (len >= 3 && !memcmp(doc, "\xef\xbb\xbf", 3))
		x.p += 3;
	while (rc == 0 && x.p < x.end)
		rc = *x.p == '<' ? markup(&x) : text(&x);
	if (rc == 0 && x.depth > 0)
		rc = xml_fail(&x, "document ends inside <%s>", x.names[x.depth - 1]);
	if (rc == 0 && x.roots == 0)
		rc = xml_fail(&x, "no root element");
	buf_close(&x.text);
	return rc;
}

/* ---- times ---- */

/* The decimal number of the n digits at s (checked digits). */
static int digits(const char *s, int n)
{
	int v = 0;
	while (n--)
		v = v * 10 + (*s++ - '0');
	return v;
}

int xml_parse_time(const char *s, int64_t *out)
{
	/* Every field is its full width of digits: no sign, no space. */
	static const char form[] = "dddd-dd-ddTdd:dd:dd";
	const size_t n = sizeof form - 1;
	for (size_t i = 0; i < n; i++)
		if (form[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != form[i])
			return SB_EPROTO;
	struct tm tm = {.tm_year = digits(s, 4),
			.tm_mon = digits(s + 5, 2),
			.tm_mday = digits(s + 8, 2),
			.tm_hour = digits(s + 11, 2),
			.tm_min = digits(s + 14, 2),
			.tm_sec = digits(s + 17, 2)};
	if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60 || tm.tm_year < 1970)
		return SB_EPROTO;
	int64_t frac = 0, scale = 1000000000;
	s += n;
	if (*s == '.') {
		s++;
		if (!isdigit((unsigned char)*s))
			return SB_EPROTO;
		for (; isdigit((unsigned char)*s); s++) {
			scale /= 10;
			frac += (*s - '0') * scale;
		}
	}
	if (strcmp(s, "Z") != 0)
		return SB_EPROTO;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t t = timegm(&tm);
	if (t == (time_t)-1 || t > (INT64_MAX - 999999999) / 1000000000)
		return SB_EPROTO; /* past 2262: no room in nanoseconds */
	*out = (int64_t)t * 1000000000 + frac;
	return 0;
}

/* ---- picking elements by path ---- */

struct pick_state {
	const char *const *paths;
	size_t n;
	char **out;
};

/* Whether the open elements, joined by '/', are exactly path. */
static int at_path(const struct xml *x, const char *path)
{
	for (int i = 0; i < x->depth; i++) {
		size_t len = strlen(x->names[i]);
		if (strncmp(path, x->names[i], len) != 0)
			return 0;
		path += len;
		if (i + 1 < x->depth && *path++ != '/')
			return 0;
	}
	return *path == '\0';
}

static int pick_cb(struct xml *x, enum xml_event ev, const char *text, size_t len)
{
	struct pick_state *st = x->arg;
	if (ev != XML_CLOSE)
		return 0;
	for (size_t i = 0; i < st->n; i++)
		if (!st->out[i] && at_path(x, st->paths[i]))
			st->out[i] = xstrndup(text, len);
	return 0;
}

int xml_pick(const char *doc, size_t len, const char *const *paths, size_t n, char **out, char *err)
{
	struct pick_state st = {paths, n, out};
	memset(out, 0, n * sizeof *out);
	int rc = xml_scan(doc, len, pick_cb, &st, err);
	if (rc < 0)
		for (size_t i = 0; i < n; i++) {
			free(out[i]);
			out[i] = NULL;
		}
	return rc;
}
