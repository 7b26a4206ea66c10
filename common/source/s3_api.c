#include "common/source/s3_api.h"

#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/source/aws_creds.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/source/sigv4.h"

/* ---- configuration ---- */

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
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
	if (!aws_region_valid(region)) {
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
		if (xml_parse_time(text, &o->mtime_ns) < 0)
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

/* EncodingType=url: percent-decoded, '+' is a space (as S3 writes it). */
static int url_decode(char *s)
{
	char *o = s;
	for (char *p = s; *p; p++) {
		if (*p == '%') {
			int hi = hash_hexval((unsigned char)p[1]),
			    lo = hi < 0 ? -1 : hash_hexval((unsigned char)p[2]);
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
	if (!aws_region_valid(out->region))
		out->region[0] = '\0';
	return 0;
}
