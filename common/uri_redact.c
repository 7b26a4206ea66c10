/* Credentials out of printed URLs (common/uri.h): the userinfo and the
 * values of parameters that carry signatures, keys or tokens. Pure;
 * thread-safe; no allocation in uri_redact_text, so log lines can use it. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"
#include "common/uri.h"

/* Query and fragment parameters whose values are credentials: presigned
 * S3 and GCS URLs, SAS tokens, OAuth, API keys. */
static const char *const secret_params[] = {
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
    "signature",
    "sig",
    "token",
    "access_token",
    "id_token",
    "refresh_token",
    "api_key",
    "apikey",
    "key",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "auth",
    "x-auth-token",
    "webidentitytoken",
};

struct redact_out {
	char *p;
	size_t len, cap;
	int full;
};

/* As much as fits: a cut message keeps its start. Secret values never
 * come here. */
static void put(struct redact_out *o, const char *s, size_t n)
{
	if (o->full)
		return;
	if (o->len + n >= o->cap) {
		n = o->cap - 1 - o->len;
		o->full = 1;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static int secret_param(const char *name, size_t n)
{
	for (size_t i = 0; i < sizeof secret_params / sizeof secret_params[0]; i++)
		if (strlen(secret_params[i]) == n && !strncasecmp(name, secret_params[i], n))
			return 1;
	return 0;
}

/* name=value&... up to n bytes, secret values redacted. */
static void put_params(struct redact_out *o, const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		const char *amp = memchr(s + i, '&', n - i);
		size_t end = amp ? (size_t)(amp - s) : n;
		const char *eq = memchr(s + i, '=', end - i);
		if (eq && secret_param(s + i, (size_t)(eq - s) - i)) {
			put(o, s + i, (size_t)(eq - s) - i + 1);
			put(o, URI_REDACTED, sizeof URI_REDACTED - 1);
		} else {
			put(o, s + i, end - i);
		}
		if (amp)
			put(o, "&", 1);
		i = end + (amp != NULL);
	}
}

/* One URL (scheme "://" rest, n bytes): userinfo and secret parameters
 * redacted. */
static void put_url(struct redact_out *o, const char *u, size_t n, size_t sep)
{
	size_t at = sep + 3, auth_end = at;
	put(o, u, at);
	while (auth_end < n && u[auth_end] != '/' && u[auth_end] != '?' && u[auth_end] != '#')
		auth_end++;
	const char *user = NULL;
	for (size_t i = at; i < auth_end; i++)
		if (u[i] == '@')
			user = u + i;
	if (user) {
		put(o, URI_REDACTED, sizeof URI_REDACTED - 1);
		at = (size_t)(user - u);
	}
	size_t q = auth_end;
	while (q < n && u[q] != '?' && u[q] != '#')
		q++;
	put(o, u + at, q - at);
	while (q < n) { /* '?' query, then '#' fragment: both may carry tokens */
		size_t e = q + 1;
		while (e < n && u[e] != '#')
			e++;
		put(o, u + q, 1);
		put_params(o, u + q + 1, e - q - 1);
		q = e;
	}
}

static int url_stop(unsigned char c)
{
	return c <= ' ' || c == 0x7f || c == '"' || c == '\'' || c == '<' || c == '>' || c == '`';
}

static int scheme_char(unsigned char c)
{
	return isalnum(c) || c == '+' || c == '-' || c == '.';
}

size_t uri_redact_text(char *out, size_t cap, const char *s, size_t n)
{
	struct redact_out o = {out, 0, cap, cap == 0};
	size_t i = 0;
	while (i < n && !o.full) {
		const char *sep = NULL;
		for (size_t k = i; k + 3 <= n && !sep; k++)
			if (s[k] == ':' && s[k + 1] == '/' && s[k + 2] == '/')
				sep = s + k;
		if (!sep) {
			put(&o, s + i, n - i);
			break;
		}
		size_t p = (size_t)(sep - s), st = p, e = p + 3;
		while (st > i && scheme_char((unsigned char)s[st - 1]))
			st--;
		put(&o, s + i, st - i);
		while (e < n && !url_stop((unsigned char)s[e]))
			e++;
		/* "URL: what failed", "(URL)": the punctuation after it is prose. */
		size_t end = e;
		while (end > p + 3 && strchr(":,;.)]", s[end - 1]))
			end--;
		if (st == p) {
			put(&o, s + st, e - st);
		} else {
			put_url(&o, s + st, end - st, p - st);
			put(&o, s + end, e - end);
		}
		i = e;
	}
	if (cap)
		out[o.len] = '\0';
	return o.len;
}

char *uri_redact(const char *text)
{
	size_t n = strlen(text), cap = n + 64;
	for (;;) {
		char *out = xmalloc(cap);
		if (uri_redact_text(out, cap, text, n) + 1 < cap)
			return out;
		free(out);
		cap *= 2;
	}
}
