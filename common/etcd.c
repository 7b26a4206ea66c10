#include "common/etcd.h"

#include <curl/curl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/err.h"
#include "common/http_multi.h"
#include "common/log.h"

struct etcd {
	CURL *easy;
	char *ep[ETCD_ENDPOINTS_MAX];
	size_t nep, cur; /* the endpoint that answered last */
	char *cacert, *cert, *key, *user, *password;
	char *token; /* from /v3/auth/authenticate, or NULL */
	char error[512];
	int unreachable;
	uint64_t down_until; /* uv_hrtime() in ms */
	struct buf resp;
};

static uint64_t now_ms(void)
{
	return uv_hrtime() / 1000000;
}

static size_t on_write(char *p, size_t size, size_t n, void *arg)
{
	struct etcd *e = arg;
	if (e->resp.len + size * n > ETCD_RESPONSE_MAX)
		return 0;
	buf_append(&e->resp, p, size * n);
	return size * n;
}

/* One POST to one endpoint: the HTTP status, or a negative error when it
 * did not answer (curl's message in e->error). */
static long post(struct etcd *e, size_t ep, const char *path, const char *body)
{
	char *url = xasprintf("%s%s", e->ep[ep], path);
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	char *auth = e->token ? xasprintf("Authorization: %s", e->token) : NULL;
	if (auth)
		h = curl_slist_append(h, auth);
	CURL *c = e->easy;
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, HTTP_USER_AGENT);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)ETCD_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)ETCD_CONNECT_MS);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, e);
	if (e->cacert)
		curl_easy_setopt(c, CURLOPT_CAINFO, e->cacert);
	if (e->cert) {
		curl_easy_setopt(c, CURLOPT_SSLCERT, e->cert);
		curl_easy_setopt(c, CURLOPT_SSLKEY, e->key);
	}
	buf_reset(&e->resp);
	CURLcode rc = curl_easy_perform(c);
	long status = -1;
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	else
		snprintf(e->error, sizeof e->error, "%s: %s", e->ep[ep], curl_easy_strerror(rc));
	e->error[sizeof e->error - 1] = 0;
	curl_slist_free_all(h);
	free(auth);
	free(url);
	return status;
}

/* The error of an answer that is not 200: its "error"/"message" field. */
static void answer_error(struct etcd *e, long status)
{
	json_t *j = json_loadb(buf_cstr(&e->resp), e->resp.len, 0, NULL);
	const char *m = json_string_value(json_object_get(j, "error"));
	if (!m)
		m = json_string_value(json_object_get(j, "message"));
	snprintf(e->error, sizeof e->error, "etcd answered %ld: %s", status,
		 m ? m : "(no message)");
	json_decref(j);
}

/* POST body to the endpoints in turn from the last one that answered: the
 * HTTP status of the first answer, or -1 when none answered. */
static long post_any(struct etcd *e, const char *path, const char *body)
{
	if (e->unreachable && now_ms() < e->down_until)
		return -1;
	for (size_t i = 0; i < e->nep; i++) {
		size_t ep = (e->cur + i) % e->nep;
		long st = post(e, ep, path, body);
		/* A member without quorum or stopping answers 503: try another. */
		if (st < 0 || (st == 503 && i + 1 < e->nep))
			continue;
		e->cur = ep;
		e->unreachable = 0;
		return st;
	}
	if (!e->unreachable || strncmp(e->error, "etcd unreachable", 16)) {
		char last[sizeof e->error];
		memcpy(last, e->error, sizeof last);
		snprintf(e->error, sizeof e->error, "etcd unreachable (%.400s)", last);
	}
	e->unreachable = 1;
	e->down_until = now_ms() + ETCD_BACKOFF_MS;
	return -1;
}

static int authenticate(struct etcd *e)
{
	free(e->token);
	e->token = NULL;
	json_t *req = json_pack("{s:s, s:s}", "name", e->user, "password", e->password);
	char *body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	long st = post_any(e, "/v3/auth/authenticate", body);
	sodium_memzero(body, strlen(body));
	free(body);
	if (st < 0)
		return SB_EHTTP;
	if (st != 200) {
		answer_error(e, st);
		return SB_EAUTH;
	}
	json_t *j = json_loadb(buf_cstr(&e->resp), e->resp.len, 0, NULL);
	const char *t = json_string_value(json_object_get(j, "token"));
	if (t)
		e->token = xstrdup(t);
	json_decref(j);
	if (!e->token) {
		snprintf(e->error, sizeof e->error, "etcd: authentication answered no token");
		return SB_EAUTH;
	}
	return 0;
}

int etcd_call(struct etcd *e, const char *path, json_t *req, json_t **resp)
{
	char *body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	*resp = NULL;
	long st = post_any(e, path, body);
	/* A token expires (etcd's --auth-token-ttl) or another member does
	 * not know it: authenticate again once. */
	if (e->user && (st == 401 || (st >= 400 && strstr(buf_cstr(&e->resp), "auth token")))) {
		int rc = authenticate(e);
		if (rc < 0) {
			free(body);
			return rc;
		}
		st = post_any(e, path, body);
	}
	free(body);
	if (st < 0)
		return SB_EHTTP;
	if (st != 200) {
		answer_error(e, st);
		return st == 401 ? SB_EAUTH : st >= 500 ? SB_EHTTP5XX : SB_EHTTP4XX;
	}
	*resp = json_loadb(buf_cstr(&e->resp), e->resp.len, 0, NULL);
	if (!json_is_object(*resp)) {
		json_decref(*resp);
		*resp = NULL;
		snprintf(e->error, sizeof e->error, "etcd: malformed answer");
		return SB_EPROTO;
	}
	return 0;
}

const char *etcd_error(const struct etcd *e)
{
	return e->error;
}

int etcd_unreachable(const struct etcd *e)
{
	return e->unreachable;
}

static char *opt_dup(const char *s)
{
	return s && s[0] ? xstrdup(s) : NULL;
}

int etcd_open(const struct etcd_config *cfg, struct etcd **out, char **detail)
{
	struct etcd *e = xcalloc(1, sizeof *e);
	*out = NULL;
	*detail = NULL;
	char *list = xstrdup(cfg->endpoints ? cfg->endpoints : ""), *save = NULL;
	for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		size_t n = strlen(t);
		while (n && t[n - 1] == '/')
			t[--n] = 0;
		if (!n)
			continue;
		if (e->nep == ETCD_ENDPOINTS_MAX || strchr(t, ' ') ||
		    (strncmp(t, "http://", 7) && strncmp(t, "https://", 8))) {
			*detail =
			    xasprintf("--etcd: expected http[s]://HOST:PORT[,...] (at most %d), "
				      "not %s",
				      ETCD_ENDPOINTS_MAX, t);
			break;
		}
		e->ep[e->nep++] = xstrdup(t);
	}
	free(list);
	if (!*detail && !e->nep)
		*detail = xstrdup("--etcd: no endpoint");
	if (!*detail && (!cfg->cert) != (!cfg->key))
		*detail = xstrdup("--etcd-cert and --etcd-key go together");
	if (!*detail && cfg->user && !cfg->password)
		*detail = xstrdup("--etcd-user needs a password");
	if (*detail) {
		etcd_free(e);
		return SB_ECONFIG;
	}
	e->cacert = opt_dup(cfg->cacert);
	e->cert = opt_dup(cfg->cert);
	e->key = opt_dup(cfg->key);
	e->user = opt_dup(cfg->user);
	e->password = opt_dup(cfg->password);
	e->easy = curl_easy_init();
	if (e->user) {
		int rc = authenticate(e);
		if (rc < 0) {
			*detail = xasprintf("etcd authentication as %s: %s", e->user, e->error);
			etcd_free(e);
			return rc;
		}
	}
	*out = e;
	return 0;
}

void etcd_free(struct etcd *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->nep; i++)
		free(e->ep[i]);
	if (e->easy)
		curl_easy_cleanup(e->easy);
	if (e->password)
		sodium_memzero(e->password, strlen(e->password));
	free(e->password);
	free(e->cacert);
	free(e->cert);
	free(e->key);
	free(e->user);
	free(e->token);
	buf_close(&e->resp);
	free(e);
}

json_t *etcd_b64(const void *p, size_t n)
{
	size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
	char *s = xmalloc(cap);
	sodium_bin2base64(s, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
	json_t *j = json_string(s);
	free(s);
	return j;
}

int etcd_unb64(const json_t *s, struct buf *b)
{
	if (!s)
		return 0;
	const char *t = json_string_value(s);
	if (!t)
		return SB_EPROTO;
	size_t n = strlen(t), got = 0;
	buf_reserve(b, n / 4 * 3 + 3);
	if (sodium_base642bin((unsigned char *)b->ptr + b->len, n / 4 * 3 + 3, t, n, NULL, &got,
			      NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
		return SB_EPROTO;
	b->len += got;
	return 0;
}

int64_t etcd_int(const json_t *v)
{
	if (json_is_integer(v))
		return json_integer_value(v);
	const char *s = json_string_value(v);
	return s ? strtoll(s, NULL, 10) : 0;
}

void etcd_prefix_end(const void *prefix, size_t n, struct buf *b)
{
	const uint8_t *p = prefix;
	while (n && p[n - 1] == 0xff)
		n--;
	if (!n) {
		buf_append(b, "", 1); /* "\0": every key */
		return;
	}
	size_t at = b->len;
	buf_append(b, p, n);
	((uint8_t *)b->ptr)[at + n - 1]++;
}
