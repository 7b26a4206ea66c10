#include "common/registry.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "common/log.h"

#define ERROR_KEEP     4096	   /* error body kept for the message */
#define ERROR_BODY_MAX (64u << 10) /* error body drained before hanging up */
#define TOKEN_SLACK_MS 5000
#define AUTH_TRIES     2
#define RANGE_SPEC_MAX 48

enum req_state { ST_IDLE, ST_RUNNING, ST_WAITING, ST_AUTH, ST_DONE };

struct registry {
	uv_loop_t *loop;
	struct http_multi *multi;
	uv_timer_t wake;
	int closing;
	char *repo;
	char *userpwd;
	char *insecure;
	int retries;
	unsigned connect_seconds;
	uint64_t stall_ms;
	uint64_t *bytes_read;
	uint64_t rng;
	/* Auth. */
	char *token;
	unsigned token_gen;
	uint64_t token_until;
	struct oci_challenge chal;
	int have_chal, basic;
	struct registry_req *token_req;
	struct registry_req_list auth_wait;
	struct registry_req_list active, done;
};

static void start_attempt(struct registry_req *r);
static void on_wake(uv_timer_t *t);
static void token_fetch(struct registry *reg);

/* Lists. */

static void list_push(struct registry_req_list *l, struct registry_req *r)
{
	r->on = l;
	r->next = NULL;
	r->prev = l->tail;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
}

static void list_del(struct registry_req *r)
{
	struct registry_req_list *l = r->on;
	if (!l)
		return;
	if (r->prev)
		r->prev->next = r->next;
	else
		l->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		l->tail = r->prev;
	r->prev = r->next = NULL;
	r->on = NULL;
}

/* Requests. */

static struct registry_req *req_new(struct registry *reg, enum registry_req_kind kind)
{
	struct registry_req *r = xcalloc(1, sizeof *r);
	r->reg = reg;
	r->kind = kind;
	http_resp_reset(&r->resp);
	return r;
}

static void req_drop_easy(struct registry_req *r)
{
	if (!r->easy)
		return;
	http_multi_remove(r->reg->multi, r->easy);
	curl_easy_cleanup(r->easy);
	r->easy = NULL;
}

static void req_free(struct registry_req *r)
{
	list_del(r);
	req_drop_easy(r);
	curl_slist_free_all(r->hdrs);
	buf_close(&r->body);
	free(r->url);
	free(r->detail);
	free(r);
}

static void set_detail(struct registry_req *r, const char *fmt, va_list ap)
{
	struct buf b = BUF_INIT;
	if (r->url)
		buf_printf(&b, "GET %s: ", r->url);
	buf_vprintf(&b, fmt, ap);
	free(r->detail);
	r->detail = buf_steal(&b);
}

static int watched(const struct registry *reg, const struct registry_req *r)
{
	return reg->stall_ms && r->state == ST_RUNNING && r->easy;
}

static void wake_arm(struct registry *reg)
{
	if (reg->closing)
		return;
	uint64_t now = uv_now(reg->loop), delay = UINT64_MAX;
	if (reg->done.head) {
		delay = 0;
	} else {
		for (struct registry_req *r = reg->active.head; r; r = r->next) {
			uint64_t at;
			if (r->state == ST_WAITING)
				at = r->due;
			else if (watched(reg, r))
				at = r->last_io + reg->stall_ms;
			else
				continue;
			uint64_t d = at > now ? at - now : 0;
			if (d < delay)
				delay = d;
		}
	}
	if (delay == UINT64_MAX)
		uv_timer_stop(&reg->wake);
	else
		uv_timer_start(&reg->wake, on_wake, delay, 0);
}

/* The request ends with status; its callback runs from the loop. */
static void finish(struct registry_req *r, int status)
{
	struct registry *reg = r->reg;
	r->status = status;
	r->http_status = r->resp.status;
	req_drop_easy(r);
	list_del(r);
	r->state = ST_DONE;
	list_push(&reg->done, r);
	wake_arm(reg);
}

static void fail(struct registry_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct registry_req *r, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_detail(r, fmt, ap);
	va_end(ap);
	finish(r, code);
}

static int refuse(struct registry_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(struct registry_req *r, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_detail(r, fmt, ap);
	va_end(ap);
	r->verdict = code;
	return -1;
}

static void retry_or_fail(struct registry_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void retry_or_fail(struct registry_req *r, int code, const char *fmt, ...)
{
	struct registry *reg = r->reg;
	struct buf what = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&what, fmt, ap);
	va_end(ap);
	int retries = reg->retries > 0 ? reg->retries : 0;
	if (r->kind == REGISTRY_RANGE && r->count > 0)
		r->failures = 0; /* progress forgives earlier failures */
	r->failures++;
	if (r->failures > (unsigned)retries) {
		fail(r, code, "%s (gave up after %u attempts)", buf_cstr(&what), r->failures);
	} else {
		uint64_t delay = http_backoff_ms(r->failures, r->resp.retry_after, &reg->rng);
		log_info("GET %s: %s; retry %u of %d in %" PRIu64 " ms", r->url, buf_cstr(&what),
			 r->failures, retries, delay);
		req_drop_easy(r);
		r->state = ST_WAITING;
		r->due = uv_now(reg->loop) + delay;
		wake_arm(reg);
	}
	buf_close(&what);
}

static void park_for_token(struct registry_req *r)
{
	struct registry *reg = r->reg;
	req_drop_easy(r);
	list_del(r);
	r->state = ST_AUTH;
	list_push(&reg->auth_wait, r);
	token_fetch(reg);
}

static void auth_needed(struct registry_req *r)
{
	struct registry *reg = r->reg;
	struct oci_challenge c;
	if (!r->www_auth[0] || oci_challenge_parse(r->www_auth, &c) < 0) {
		fail(r, SB_EDENIED, "HTTP 401 without a Bearer or Basic challenge");
		return;
	}
	if (r->auth_tries >= AUTH_TRIES) {
		fail(r, SB_EDENIED, "HTTP 401 Unauthorized with %s; check the credentials%s",
		     reg->token ? "a fresh token" : "the credentials given",
		     reg->userpwd ? "" : " (REGISTRY_AUTH=user:password or --registry-user)");
		return;
	}
	r->auth_tries++;
	if (!c.bearer) {
		if (!reg->userpwd) {
			fail(r, SB_EAUTH,
			     "the registry asks for credentials: set REGISTRY_AUTH=user:password "
			     "or --registry-user");
			return;
		}
		reg->basic = 1;
		start_attempt(r);
		return;
	}
	reg->chal = c;
	reg->have_chal = 1;
	if (reg->token && r->token_gen == reg->token_gen) {
		free(reg->token); /* refused or expired */
		reg->token = NULL;
	}
	if (reg->token)
		start_attempt(r); /* a newer token came meanwhile */
	else
		park_for_token(r);
}

static void status_failed(struct registry_req *r)
{
	long st = r->resp.status;
	char reg[256];
	if (st == 401 && r->kind != REGISTRY_TOKEN) {
		auth_needed(r);
		return;
	}
	oci_error_summary(r->body.ptr, r->body.len, reg, sizeof reg);
	if (http_status_retryable(st))
		retry_or_fail(r, http_status_error(st), "HTTP %ld %s%s", st,
			      http_resp_reason(&r->resp), reg);
	else
		fail(r, http_status_error(st), "HTTP %ld %s%s", st, http_resp_reason(&r->resp),
		     reg);
}

static void transport_failed(struct registry_req *r, CURLcode rc)
{
	const char *why = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
	int code = rc == CURLE_OPERATION_TIMEDOUT ? SB_ESTALL : SB_EHTTP;
	if (http_curl_retryable(rc))
		retry_or_fail(r, code, "%s", why);
	else
		fail(r, code, "%s", why);
}

/* Headers and bodies. */

static void copy_value(char *dst, size_t cap, const char *line, size_t n, size_t name_len)
{
	const char *v = line + name_len;
	size_t k = n - name_len;
	while (k && (*v == ' ' || *v == '\t'))
		v++, k--;
	while (k && (v[k - 1] == '\r' || v[k - 1] == '\n' || v[k - 1] == ' '))
		k--;
	if (k >= cap)
		k = cap - 1;
	memcpy(dst, v, k);
	dst[k] = '\0';
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct registry_req *r = arg;
	size_t n = size * nmemb;
	r->last_io = uv_now(r->reg->loop);
	http_resp_header(&r->resp, data, n);
	if (n >= 5 && !strncmp(data, "HTTP/", 5)) {
		r->content_type[0] = r->docker_digest[0] = r->www_auth[0] = r->link[0] = '\0';
	} else if (n > 13 && !strncasecmp(data, "content-type:", 13)) {
		copy_value(r->content_type, sizeof r->content_type, data, n, 13);
	} else if (n > 22 && !strncasecmp(data, "docker-content-digest:", 22)) {
		copy_value(r->docker_digest, sizeof r->docker_digest, data, n, 22);
	} else if (n > 17 && !strncasecmp(data, "www-authenticate:", 17)) {
		copy_value(r->www_auth, sizeof r->www_auth, data, n, 17);
	} else if (n > 5 && !strncasecmp(data, "link:", 5)) {
		copy_value(r->link, sizeof r->link, data, n, 5);
	}
	return n;
}

static int blob_check(struct registry_req *r)
{
	const struct http_resp *p = &r->resp;
	uint64_t first = r->off + r->got, last = r->off + r->len - 1;
	if (p->status == 200) {
		if (p->content_length >= 0 && (uint64_t)p->content_length != r->total)
			return refuse(r, SB_ECORRUPT,
				      "blob is %" PRId64 " bytes, its descriptor says %" PRIu64,
				      p->content_length, r->total);
		r->skip = first;
		return 0;
	}
	if (p->status != 206)
		return refuse(r, SB_EPROTO, "unexpected HTTP %ld %s", p->status,
			      http_resp_reason(p));
	if (!p->has_range || p->range_unsatisfied)
		return refuse(r, SB_EPROTO, "206 without a usable Content-Range");
	if (p->range_total >= 0 && (uint64_t)p->range_total != r->total)
		return refuse(r, SB_ECORRUPT,
			      "blob is %" PRId64 " bytes, its descriptor says %" PRIu64,
			      p->range_total, r->total);
	if (p->range_first != first || p->range_last > last)
		return refuse(r, SB_EPROTO,
			      "asked for bytes %" PRIu64 "-%" PRIu64 ", got %" PRIu64 "-%" PRIu64,
			      first, last, p->range_first, p->range_last);
	return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct registry_req *r = arg;
	size_t n = size * nmemb;
	r->last_io = uv_now(r->reg->loop);
	if (!r->checked) {
		r->checked = 1;
		long st = r->resp.status;
		if (st < 200 || st >= 300)
			r->discard = 1;
		else if (r->kind == REGISTRY_RANGE && blob_check(r) < 0)
			return 0;
	}
	if (r->discard) {
		if (r->body.len < ERROR_KEEP)
			buf_append(&r->body, data, n < ERROR_KEEP ? n : ERROR_KEEP);
		r->discarded += n;
		return r->discarded > ERROR_BODY_MAX ? 0 : n;
	}
	if (r->kind != REGISTRY_RANGE) {
		if (r->body.len + n > r->body_max) {
			refuse(r, SB_ETOOBIG, "answer larger than %zu bytes", r->body_max);
			return 0;
		}
		buf_append(&r->body, data, n);
		return n;
	}
	const char *p = data;
	size_t k = r->skip < n ? (size_t)r->skip : n;
	r->skip -= k;
	p += k;
	size_t take = n - k;
	if (take > r->len - r->got)
		take = r->len - r->got; /* a whole body past our range: done */
	memcpy(r->buf + r->got, p, take);
	r->got += take;
	r->count += take;
	if (r->reg->bytes_read)
		*r->reg->bytes_read += take;
	if (r->got == r->len && take < n - k)
		return 0;
	return n;
}

static void on_done(CURL *easy, CURLcode rc, void *arg)
{
	struct registry_req *r = arg;
	long st = r->resp.status;
	curl_easy_cleanup(easy);
	r->easy = NULL;
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;
	if (r->kind == REGISTRY_RANGE && rc == CURLE_WRITE_ERROR && r->verdict == 0 &&
	    r->got == r->len)
		rc = CURLE_OK; /* we hung up on the rest of a whole body */
	if (r->verdict < 0) {
		finish(r, r->verdict);
		return;
	}
	if ((rc == CURLE_OK || rc == CURLE_WRITE_ERROR) && (st < 200 || st >= 300)) {
		status_failed(r);
		return;
	}
	if (rc != CURLE_OK) {
		transport_failed(r, rc);
		return;
	}
	if (r->kind != REGISTRY_RANGE) {
		finish(r, 0);
		return;
	}
	if (r->got == r->len)
		finish(r, 0);
	else if (r->count > 0)
		start_attempt(r); /* a clean but short answer: ask for the rest */
	else
		retry_or_fail(r, SB_EHTTP, "response ended %zu bytes short", r->len - r->got);
}

static void add_header(struct registry_req *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_header(struct registry_req *r, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	struct curl_slist *l = curl_slist_append(r->hdrs, buf_cstr(&b));
	buf_close(&b);
	if (!l)
		fatal("out of memory");
	r->hdrs = l;
}

/* The credentials an attempt carries. curl drops a custom Authorization
 * header and its own Basic auth when a redirect leaves the host, so blob
 * storage never sees either. */
static void set_auth(struct registry_req *r, CURL *e)
{
	struct registry *reg = r->reg;
	if (r->kind == REGISTRY_TOKEN) {
		if (reg->userpwd) {
			curl_easy_setopt(e, CURLOPT_USERPWD, reg->userpwd);
			curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		}
	} else if (reg->token) {
		add_header(r, "Authorization: Bearer %s", reg->token);
		r->token_gen = reg->token_gen;
	} else if (reg->basic && reg->userpwd) {
		curl_easy_setopt(e, CURLOPT_USERPWD, reg->userpwd);
		curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
	}
}

static void start_attempt(struct registry_req *r)
{
	struct registry *reg = r->reg;
	char range[RANGE_SPEC_MAX];
	if (r->kind != REGISTRY_TOKEN && reg->token && uv_now(reg->loop) >= reg->token_until &&
	    reg->have_chal) {
		free(reg->token);
		reg->token = NULL;
		park_for_token(r);
		return;
	}
	CURL *e = curl_easy_init();
	if (!e) {
		fail(r, -ENOMEM, "cannot create a transfer");
		return;
	}
	http_easy_defaults(e, reg->connect_seconds, (unsigned)(reg->stall_ms / 1000));
	curl_easy_setopt(e, CURLOPT_URL, r->url);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)r);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)r);
	r->errbuf[0] = '\0';
	http_resp_reset(&r->resp);
	r->checked = r->discard = r->verdict = 0;
	r->discarded = 0;
	r->count = 0;
	r->skip = 0;
	buf_reset(&r->body);
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;
	if (r->kind == REGISTRY_DOC)
		add_header(r, "Accept: %s", OCI_ACCEPT);
	if (r->kind == REGISTRY_RANGE) {
		snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, r->off + r->got,
			 r->off + r->len - 1);
		curl_easy_setopt(e, CURLOPT_RANGE, range);
	}
	set_auth(r, e);
	if (r->hdrs)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	r->easy = e;
	r->state = ST_RUNNING;
	r->last_io = uv_now(reg->loop);
	if (r->on != &reg->active) {
		list_del(r);
		list_push(&reg->active, r);
	}
	int rc = http_multi_add(reg->multi, e, on_done, r);
	if (rc < 0) {
		curl_easy_cleanup(e);
		r->easy = NULL;
		fail(r, rc, "cannot start the transfer");
		return;
	}
	wake_arm(reg);
}

/* Tokens. */

static void on_token(struct registry_req *r)
{
	struct registry *reg = r->reg;
	struct registry_req *w;
	char *token = NULL;
	long expires = 0;
	int rc = r->status;
	reg->token_req = NULL;
	if (rc == 0 && oci_token_parse(r->body.ptr, r->body.len, &token, &expires) < 0) {
		rc = SB_EAUTH;
		free(r->detail);
		r->detail = xasprintf("token service %s: answer has no token", reg->chal.realm);
	}
	if (rc < 0) {
		if (rc == SB_EDENIED || r->resp.status == 401) {
			rc = SB_EAUTH;
			free(r->detail);
			r->detail = xasprintf(
			    "token service %s refused %s (HTTP %ld)", reg->chal.realm,
			    reg->userpwd ? "the credentials" : "anonymous access", r->resp.status);
		}
		while ((w = reg->auth_wait.head)) {
			free(w->detail);
			w->detail = r->detail ? xstrdup(r->detail) : NULL;
			finish(w, rc);
		}
		req_free(r);
		return;
	}
	free(reg->token);
	reg->token = token;
	reg->token_gen++;
	uint64_t life = (uint64_t)expires * 1000;
	/* Renewed a little early, so a request does not carry a token that
	 * expires on its way; a short-lived one at half its life. */
	reg->token_until =
	    uv_now(reg->loop) + (life > 2 * TOKEN_SLACK_MS ? life - TOKEN_SLACK_MS : life / 2);
	req_free(r);
	while ((w = reg->auth_wait.head))
		start_attempt(w);
}

/* A realm over plain HTTP would carry the credentials in clear: only as
 * far as the registry itself may be spoken to that way. */
static int realm_allowed(struct registry *reg, const char *realm)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL;
	int ok = 0;
	if (!u)
		return 0;
	if (curl_url_set(u, CURLUPART_URL, realm, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
		if (!strcmp(scheme, "https")) {
			ok = 1;
		} else if (!strcmp(scheme, "http")) {
			char *hp = curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK
				       ? xasprintf("%s:%s", host, port)
				       : xstrdup(host);
			ok = oci_host_is_loopback(hp) || oci_host_listed(hp, reg->insecure);
			free(hp);
		}
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return ok;
}

static void token_fetch(struct registry *reg)
{
	struct registry_req *w;
	if (reg->token_req)
		return;
	if (!realm_allowed(reg, reg->chal.realm)) {
		while ((w = reg->auth_wait.head))
			fail(w, SB_EAUTH,
			     "token realm %s is not HTTPS (allowed only for loopback hosts and "
			     "--insecure-registry)",
			     reg->chal.realm);
		return;
	}
	struct buf url = BUF_INIT;
	struct registry_req *r = req_new(reg, REGISTRY_TOKEN);
	buf_printf(&url, "%s%c", reg->chal.realm, strchr(reg->chal.realm, '?') ? '&' : '?');
	if (reg->chal.service[0]) {
		buf_append_str(&url, "service=");
		oci_append_escaped(&url, reg->chal.service);
		buf_append_str(&url, "&");
	}
	buf_append_str(&url, "scope=");
	if (reg->chal.scope[0]) {
		oci_append_escaped(&url, reg->chal.scope);
	} else {
		struct buf scope = BUF_INIT;
		buf_printf(&scope, "repository:%s:pull", reg->repo);
		oci_append_escaped(&url, buf_cstr(&scope));
		buf_close(&scope);
	}
	r->url = buf_steal(&url);
	r->body_max = OCI_TOKEN_MAX;
	r->cb = on_token;
	reg->token_req = r;
	start_attempt(r);
}

/* Deferred delivery. */

static void on_wake(uv_timer_t *t)
{
	struct registry *reg = t->data;
	uint64_t now = uv_now(reg->loop);
	struct registry_req *r, *next;
	for (r = reg->active.head; r; r = next) {
		next = r->next;
		if (r->state == ST_WAITING && r->due <= now) {
			start_attempt(r);
		} else if (watched(reg, r) && now - r->last_io >= reg->stall_ms) {
			req_drop_easy(r);
			retry_or_fail(r, SB_ESTALL, "no data for %" PRIu64 " s",
				      reg->stall_ms / 1000);
		}
	}
	/* A callback may free the registry: reg lives until the wake timer's
	 * close callback, so the loop only stops here. */
	while ((r = reg->done.head) && !reg->closing) {
		list_del(r);
		r->cb(r);
	}
	wake_arm(reg);
}

/* The interface. */

int registry_new(uv_loop_t *loop, const struct registry_options *o, struct registry **out)
{
	struct registry *reg = xcalloc(1, sizeof *reg);
	int rc = http_multi_new(loop, &reg->multi);
	if (rc < 0) {
		free(reg);
		return rc;
	}
	reg->loop = loop;
	reg->repo = xstrdup(o->repo ? o->repo : "");
	reg->userpwd = o->userpwd ? xstrdup(o->userpwd) : NULL;
	reg->insecure = o->insecure ? xstrdup(o->insecure) : NULL;
	reg->retries = o->retries;
	reg->connect_seconds = o->connect_seconds;
	reg->stall_ms = (uint64_t)o->stall_seconds * 1000;
	reg->bytes_read = o->bytes_read;
	reg->rng = (uv_hrtime() ^ (uint64_t)(uintptr_t)reg) | 1;
	uv_timer_init(loop, &reg->wake);
	reg->wake.data = reg;
	*out = reg;
	return 0;
}

static void wake_closed(uv_handle_t *h)
{
	free(h->data);
}

void registry_free(struct registry *reg)
{
	if (!reg || reg->closing)
		return;
	reg->closing = 1;
	while (reg->active.head)
		req_free(reg->active.head);
	while (reg->auth_wait.head)
		req_free(reg->auth_wait.head);
	while (reg->done.head)
		req_free(reg->done.head);
	reg->token_req = NULL;
	free(reg->repo);
	free(reg->userpwd);
	free(reg->insecure);
	free(reg->token);
	http_multi_free(reg->multi);
	uv_close((uv_handle_t *)&reg->wake, wake_closed);
}

void registry_get_doc(struct registry *reg, char *url, size_t max, registry_done_cb cb, void *arg)
{
	struct registry_req *r = req_new(reg, REGISTRY_DOC);
	r->url = url;
	r->body_max = max;
	r->cb = cb;
	r->arg = arg;
	start_attempt(r);
}

void registry_get_range(struct registry *reg, char *url, uint64_t total, uint64_t off, size_t len,
			void *buf, registry_done_cb cb, void *arg)
{
	struct registry_req *r = req_new(reg, REGISTRY_RANGE);
	r->url = url;
	r->total = total;
	r->off = off;
	r->len = len;
	r->buf = buf;
	r->cb = cb;
	r->arg = arg;
	start_attempt(r);
}

void registry_defer(struct registry *reg, int status, char *detail, registry_done_cb cb, void *arg)
{
	struct registry_req *r = req_new(reg, REGISTRY_DEFER);
	r->detail = detail;
	r->cb = cb;
	r->arg = arg;
	finish(r, status);
}

void registry_cancel(struct registry *reg)
{
	struct registry_req *r, *next;
	for (r = reg->done.head; r; r = r->next) {
		if (r->kind == REGISTRY_TOKEN)
			continue;
		r->status = SB_ECANCELED;
		free(r->detail);
		r->detail = NULL;
	}
	for (r = reg->auth_wait.head; r; r = next) {
		next = r->next;
		finish(r, SB_ECANCELED);
	}
	for (r = reg->active.head; r; r = next) {
		next = r->next;
		free(r->detail);
		r->detail = NULL;
		finish(r, SB_ECANCELED);
	}
}

int registry_busy(const struct registry *reg)
{
	return reg->active.head || reg->auth_wait.head || reg->done.head;
}

void registry_req_free(struct registry_req *r)
{
	if (r)
		req_free(r);
}
