#include "common/source/s3_api.h"

#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/source/aws_creds.h"
#include "common/err.h"
#include "common/source/sigv4.h"

/* ---- configuration ---- */

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

int s3_valid_region(const char *r)
{
	size_t n = strlen(r);
	if (n == 0 || n >= S3_REGION_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!(r[i] >= 'a' && r[i] <= 'z') && !(r[i] >= '0' && r[i] <= '9') && r[i] != '-')
			return 0;
	return 1;
}

/* scheme://host[:port][/base]: no credentials, query or fragment. */
static int parse_endpoint(struct s3_config *c, const char *url, char **detail)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *x = NULL;
	int rc = SB_ECONFIG;
	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host ||
	    (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		*detail = xasprintf("S3 endpoint %s: not an http(s)://host[:port] URL", url);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_USER, &x, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_QUERY, &x, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_FRAGMENT, &x, 0) == CURLUE_OK) {
		*detail =
		    xasprintf("S3 endpoint %s: credentials, query or fragment not allowed", url);
		goto out;
	}
	curl_url_get(u, CURLUPART_PATH, &path, 0);
	c->scheme = xstrdup(scheme);
	/* The Host header carries the port only when it is not the default;
	 * libcurl does the same, and what is signed must be what is sent. */
	if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK &&
	    strcmp(port, !strcmp(scheme, "https") ? "443" : "80") != 0)
		c->host = xasprintf("%s:%s", host, port);
	else
		c->host = xstrdup(host);
	for (char *h = c->host; *h; h++)
		*h = (char)tolower((unsigned char)*h);
	size_t n = path ? strlen(path) : 0;
	while (n && path[n - 1] == '/')
		n--;
	c->base = xstrndup(path ? path : "", n);
	rc = 0;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(x);
	curl_url_cleanup(u);
	return rc;
}

/* Credentials by the AWS chain into c, replacing what it held. */
static int load_credentials(struct s3_config *c, char **detail)
{
	struct aws_creds cr;
	int rc = aws_creds_get(&cr, detail);
	if (rc < 0)
		return rc;
	free(c->access_key);
	if (c->secret_key)
		memset(c->secret_key, 0, strlen(c->secret_key));
	free(c->secret_key);
	free(c->session_token);
	free(c->credentials_from);
	c->access_key = cr.access_key;
	c->secret_key = cr.secret_key;
	c->session_token = cr.session_token;
	c->credentials_from = cr.origin;
	c->expires = cr.expires;
	return 0;
}

int s3_config_init(struct s3_config *c, const char *bucket, const char *endpoint,
		   const char *region, int path_style, char **detail)
{
	char *cfg_region = NULL, *cfg_endpoint = NULL;
	int rc = 0;
	memset(c, 0, sizeof *c);
	*detail = NULL;
	if (!region)
		region = env("AWS_REGION");
	if (!region)
		region = env("AWS_DEFAULT_REGION");
	if (!region && (rc = aws_config_get("region", &cfg_region, detail)) < 0)
		return rc;
	if (!region)
		region = cfg_region ? cfg_region : S3_DEFAULT_REGION;
	if (!s3_valid_region(region)) {
		*detail = xasprintf("S3 region \"%s\": only a-z, 0-9 and '-' allowed", region);
		free(cfg_region);
		return SB_ECONFIG;
	}
	if (!endpoint)
		endpoint = env("AWS_ENDPOINT_URL_S3");
	if (!endpoint)
		endpoint = env("AWS_ENDPOINT_URL");
	if (!endpoint && (rc = aws_config_get("endpoint_url", &cfg_endpoint, detail)) < 0) {
		free(cfg_region);
		return rc;
	}
	if (!endpoint)
		endpoint = cfg_endpoint;
	if (endpoint) {
		c->custom = 1;
		rc = parse_endpoint(c, endpoint, detail);
	} else {
		char *aws = xasprintf("https://s3.%s.amazonaws.com%s", region,
				      !strncmp(region, "cn-", 3) ? ".cn" : "");
		rc = parse_endpoint(c, aws, detail);
		free(aws);
	}
	free(cfg_endpoint);
	if (rc < 0) {
		free(cfg_region);
		s3_config_close(c);
		return rc;
	}
	c->region = xstrdup(region);
	free(cfg_region);
	/* A dotted bucket name does not match the endpoint's wildcard
	 * certificate as a host name. */
	if (path_style >= 0)
		c->path_style = path_style != 0;
	else
		c->path_style = c->custom || (strchr(bucket, '.') && !strcmp(c->scheme, "https"));
	if ((rc = load_credentials(c, detail)) < 0)
		s3_config_close(c);
	return rc;
}

int s3_config_refresh(struct s3_config *c, char **detail)
{
	if (!c->expires || time(NULL) + AWS_CREDS_REFRESH_S < c->expires)
		return 0; /* long-term keys, or still fresh */
	return load_credentials(c, detail);
}

void s3_config_close(struct s3_config *c)
{
	free(c->scheme);
	free(c->host);
	free(c->base);
	free(c->region);
	free(c->access_key);
	if (c->secret_key) {
		memset(c->secret_key, 0, strlen(c->secret_key));
		free(c->secret_key);
	}
	free(c->session_token);
	free(c->credentials_from);
	memset(c, 0, sizeof *c);
}

void s3_target(const struct s3_config *c, const char *bucket, const char *key, const char *query,
	       struct buf *url, struct buf *host, struct buf *path)
{
	size_t path_start = path->len;
	if (c->path_style)
		buf_append_str(host, c->host);
	else
		buf_printf(host, "%s.%s", bucket, c->host);
	buf_append_str(path, c->base);
	if (c->path_style)
		buf_printf(path, "/%s", bucket);
	if (key) {
		buf_append_str(path, "/");
		sigv4_encode(path, key, 1);
	} else if (!c->path_style) {
		buf_append_str(path, "/");
	}
	buf_printf(url, "%s://%s%.*s", c->scheme, buf_cstr(host), (int)(path->len - path_start),
		   (const char *)path->ptr + path_start);
	if (query && *query)
		buf_printf(url, "?%s", query);
	buf_cstr(path);
}

/* ---- a bounded XML scanner ---- */

enum xml_event { XML_OPEN, XML_CLOSE };

struct xml;
/* names[0..depth-1] are the open elements, innermost last; text is the
 * decoded character data directly inside the element (XML_CLOSE). Return
 * < 0 to stop with that error, after setting the reason with xml_fail. */
typedef int (*xml_cb)(struct xml *x, enum xml_event ev, const char *text, size_t len);

struct xml {
	const char *p, *start, *end;
	char names[S3_XML_DEPTH_MAX][S3_XML_NAME_MAX + 1];
	int depth;
	int roots; /* root elements seen */
	struct buf text;
	xml_cb cb;
	void *arg;
	char *err; /* S3_ERR_MAX */
};

static int xml_fail(struct xml *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int xml_fail(struct xml *x, const char *fmt, ...)
{
	int n = snprintf(x->err, S3_ERR_MAX, "byte %zu: ", (size_t)(x->p - x->start));
	va_list ap;
	va_start(ap, fmt);
	if (n > 0 && n < S3_ERR_MAX)
		vsnprintf(x->err + n, S3_ERR_MAX - (size_t)n, fmt, ap);
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
	if (n > S3_XML_NAME_MAX)
		return xml_fail(x, "name longer than %d bytes", S3_XML_NAME_MAX);
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
		if (x->text.len > S3_XML_TEXT_MAX)
			return xml_fail(x, "text longer than %d bytes", S3_XML_TEXT_MAX);
	}
	return 0;
}

static int attributes(struct xml *x)
{
	char name[S3_XML_NAME_MAX + 1];
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
	if (x->depth == S3_XML_DEPTH_MAX)
		return xml_fail(x, "elements nested deeper than %d", S3_XML_DEPTH_MAX);
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
	char name[S3_XML_NAME_MAX + 1];
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
		if (x->text.len > S3_XML_TEXT_MAX)
			return xml_fail(x, "text longer than %d bytes", S3_XML_TEXT_MAX);
		return 0;
	}
	if (starts(x, "<!"))
		return xml_fail(x, "DTDs and declarations are not accepted");
	if (starts(x, "</"))
		return close_tag(x);
	return open_tag(x);
}

static int xml_scan(const char *doc, size_t len, xml_cb cb, void *arg, char *err)
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

/* ---- ListObjectsV2 ---- */

struct list_state {
	struct s3_list_page *page;
	struct s3_object cur;
	int have_key, have_size;
	char *encoding;
};

static int parse_u64(const char *s, uint64_t *out)
{
	if (!isdigit((unsigned char)*s))
		return SB_EPROTO;
	errno = 0;
	char *e;
	unsigned long long v = strtoull(s, &e, 10);
	if (*e || errno == ERANGE || v > INT64_MAX)
		return SB_EPROTO;
	*out = v;
	return 0;
}

int s3_parse_time(const char *s, int64_t *out)
{
	struct tm tm = {0};
	int n = 0;
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
		   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 ||
	    n != 19)
		return SB_EPROTO;
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

static void object_close(struct s3_object *o)
{
	free(o->key);
	free(o->etag);
	memset(o, 0, sizeof *o);
}

static char *strip_etag(const char *v, size_t n)
{
	if (n >= 2 && v[0] == 'W' && v[1] == '/') {
		v += 2;
		n -= 2;
	}
	if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
		v++;
		n -= 2;
	}
	return n ? xstrndup(v, n) : NULL;
}

static int contents_field(struct xml *x, struct list_state *st, const char *name, const char *text,
			  size_t len)
{
	struct s3_object *o = &st->cur;
	if (!strcmp(name, "Key")) {
		if (st->have_key)
			return xml_fail(x, "<Contents> with two <Key>");
		if (len == 0 || strlen(text) != len)
			return xml_fail(x, "empty <Key> or one with a NUL byte");
		o->key = xstrndup(text, len);
		st->have_key = 1;
	} else if (!strcmp(name, "Size")) {
		if (st->have_size || parse_u64(text, &o->size) < 0)
			return xml_fail(x, "<Size> \"%.40s\" is not one decimal size", text);
		st->have_size = 1;
	} else if (!strcmp(name, "ETag")) {
		free(o->etag);
		o->etag = strip_etag(text, len);
	} else if (!strcmp(name, "ChecksumAlgorithm")) {
		o->sha256 |= len == 6 && !strcmp(text, "SHA256");
	} else if (!strcmp(name, "ChecksumType")) {
		o->composite = !strcmp(text, "COMPOSITE");
	} else if (!strcmp(name, "LastModified")) {
		if (s3_parse_time(text, &o->mtime_ns) < 0)
			return xml_fail(x, "<LastModified> \"%.40s\" is not an ISO 8601 time",
					text);
	}
	return 0;
}

static void page_push(struct s3_list_page *p, struct s3_object *o)
{
	if (p->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 64;
		p->objects = xrealloc(p->objects, p->cap * sizeof *p->objects);
	}
	p->objects[p->n++] = *o;
	memset(o, 0, sizeof *o);
}

static int list_cb(struct xml *x, enum xml_event ev, const char *text, size_t len)
{
	struct list_state *st = x->arg;
	const char *name = x->names[x->depth - 1];
	if (ev == XML_OPEN) {
		if (x->depth == 1 && strcmp(name, "ListBucketResult") != 0)
			return xml_fail(x, "<%s> where <ListBucketResult> was expected", name);
		if (x->depth == 2 && !strcmp(name, "Contents")) {
			object_close(&st->cur);
			st->have_key = st->have_size = 0;
		}
		return 0;
	}
	if (x->depth == 3 && !strcmp(x->names[1], "Contents"))
		return contents_field(x, st, name, text, len);
	if (x->depth != 2)
		return 0;
	if (!strcmp(name, "Contents")) {
		if (!st->have_key || !st->have_size)
			return xml_fail(x, "<Contents> without <Key> and <Size>");
		page_push(st->page, &st->cur);
	} else if (!strcmp(name, "IsTruncated")) {
		if (strcmp(text, "true") && strcmp(text, "false"))
			return xml_fail(x, "<IsTruncated> \"%.20s\" is neither true nor false",
					text);
		st->page->truncated = !strcmp(text, "true");
	} else if (!strcmp(name, "NextContinuationToken")) {
		free(st->page->next_token);
		st->page->next_token = len ? xstrndup(text, len) : NULL;
	} else if (!strcmp(name, "EncodingType")) {
		free(st->encoding);
		st->encoding = xstrndup(text, len);
	}
	return 0;
}

static int hexval(int c)
{
	return isdigit(c) ? c - '0' : isxdigit(c) ? tolower(c) - 'a' + 10 : -1;
}

/* EncodingType=url: percent-decoded, '+' is a space (as S3 writes it). */
static int url_decode(char *s)
{
	char *o = s;
	for (char *p = s; *p; p++) {
		if (*p == '%') {
			int hi = hexval((unsigned char)p[1]),
			    lo = hi < 0 ? -1 : hexval((unsigned char)p[2]);
			if (lo < 0 || (hi == 0 && lo == 0))
				return SB_EPROTO;
			*o++ = (char)(hi * 16 + lo);
			p += 2;
		} else {
			*o++ = *p == '+' ? ' ' : *p;
		}
	}
	*o = '\0';
	return 0;
}

int s3_list_parse(const char *xml, size_t len, struct s3_list_page *out, char *err)
{
	struct list_state st = {.page = out};
	memset(out, 0, sizeof *out);
	int rc = xml_scan(xml, len, list_cb, &st, err);
	object_close(&st.cur);
	if (rc == 0 && st.encoding) {
		if (strcmp(st.encoding, "url") != 0) {
			snprintf(err, S3_ERR_MAX, "unknown <EncodingType> \"%.40s\"", st.encoding);
			rc = SB_EPROTO;
		}
		for (size_t i = 0; rc == 0 && i < out->n; i++)
			if (url_decode(out->objects[i].key) < 0 || !out->objects[i].key[0]) {
				snprintf(err, S3_ERR_MAX, "key \"%.60s\" is not URL-encoded",
					 out->objects[i].key);
				rc = SB_EPROTO;
			}
		out->url_encoded = 1;
	}
	if (rc == 0 && out->truncated && !out->next_token) {
		snprintf(err, S3_ERR_MAX, "<IsTruncated> true without <NextContinuationToken>");
		rc = SB_EPROTO;
	}
	free(st.encoding);
	if (rc < 0) {
		s3_list_page_close(out);
		for (char *c = err; *c; c++) /* quoted text stays on one line */
			if ((unsigned char)*c < 0x20)
				*c = '?';
	}
	return rc;
}

void s3_list_page_close(struct s3_list_page *p)
{
	for (size_t i = 0; i < p->n; i++)
		object_close(&p->objects[i]);
	free(p->objects);
	free(p->next_token);
	memset(p, 0, sizeof *p);
}

/* ---- Error documents ---- */

static void copy_text(char *dst, size_t cap, const char *text, size_t len)
{
	size_t j = 0;
	for (size_t i = 0; i < len && j + 1 < cap; i++)
		dst[j++] = (unsigned char)text[i] < 0x20 ? ' ' : text[i]; /* one line */
	dst[j] = '\0';
}

static int error_cb(struct xml *x, enum xml_event ev, const char *text, size_t len)
{
	struct s3_error *e = x->arg;
	const char *name = x->names[x->depth - 1];
	if (ev == XML_OPEN) {
		if (x->depth == 1 && strcmp(name, "Error") != 0)
			return xml_fail(x, "not an Error document");
		return 0;
	}
	if (x->depth != 2)
		return 0;
	if (!strcmp(name, "Code"))
		copy_text(e->code, sizeof e->code, text, len);
	else if (!strcmp(name, "Message"))
		copy_text(e->message, sizeof e->message, text, len);
	else if (!strcmp(name, "Region"))
		copy_text(e->region, sizeof e->region, text, len);
	return 0;
}

int s3_error_parse(const char *xml, size_t len, struct s3_error *out)
{
	char err[S3_ERR_MAX];
	memset(out, 0, sizeof *out);
	if (xml_scan(xml, len, error_cb, out, err) < 0 || !out->code[0]) {
		memset(out, 0, sizeof *out);
		return SB_EPROTO;
	}
	if (!s3_valid_region(out->region))
		out->region[0] = '\0';
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

int s3_xml_pick(const char *xml, size_t len, const char *const *paths, size_t n, char **out,
		char *err)
{
	struct pick_state st = {paths, n, out};
	memset(out, 0, n * sizeof *out);
	int rc = xml_scan(xml, len, pick_cb, &st, err);
	if (rc < 0)
		for (size_t i = 0; i < n; i++) {
			free(out[i]);
			out[i] = NULL;
		}
	return rc;
}
