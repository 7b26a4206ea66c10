#include "common/source/oci_client.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "common/log.h"

#define ERROR_KEEP     4096 /* error body kept for the message */
#define TOKEN_SLACK_MS 5000
#define AUTH_TRIES     2
#define LOCATION_MAX   8192 /* upload URLs carry the registry's state */

struct oci_client {
	struct http_client http; /* first: its close callback frees the registry */
	char *repo;
	char *userpwd;
	char *insecure;
	int push;
	/* Auth. */
	char *token;
	unsigned token_gen;
	uint64_t token_until;
	struct oci_challenge chal;
	int have_chal, basic;
	struct oci_client_req *token_req;
	struct http_req_list auth_wait;
};

static void token_fetch(struct oci_client *reg);

/* Requests. */

static struct oci_client_req *to_req(struct http_req *b)
{
	return (struct oci_client_req *)((char *)b - offsetof(struct oci_client_req, base));
}

static struct oci_client_req *req_new(struct oci_client *reg, enum oci_client_req_kind kind)
{
	struct oci_client_req *r = xcalloc(1, sizeof *r);
	http_req_init(&r->base, &reg->http);
	r->reg = reg;
	r->kind = kind;
	if (kind == OCI_CLIENT_RANGE)
		r->base.progress_reset = 1; /* progress forgives earlier failures */
	return r;
}

static void req_free(struct oci_client_req *r)
{
	http_req_close(&r->base);
	buf_close(&r->body);
	free(r->location);
	free(r->url);
	free(r->detail);
	free(r);
}

/* The client's hooks. */

static void describe(const struct http_req *b, struct buf *out)
{
	const struct oci_client_req *r = to_req((struct http_req *)b);
	if (r->kind == OCI_CLIENT_CALL && r->url) {
		/* An upload URL's query carries the registry's state: not shown. */
		char *shown = http_url_for_messages(r->url);
		buf_printf(out, "%s %s: ", r->call.method, shown ? shown : "(unparsable URL)");
		free(shown);
	} else if (r->url) {
		buf_printf(out, "GET %s: ", r->url);
	}
}

/* The outcome moves to the fields the caller reads. */
static void deliver(struct http_req *b)
{
	struct oci_client_req *r = to_req(b);
	r->status = b->status;
	r->http_status = b->resp.status;
	r->length = b->resp.content_length;
	free(r->detail);
	r->detail = b->detail;
	b->detail = NULL;
	r->cb(r);
}

static void free_hook(struct http_req *b)
{
	req_free(to_req(b));
}

static void park_for_token(struct oci_client_req *r)
{
	struct oci_client *reg = r->reg;
	http_req_drop_easy(&r->base);
	http_req_unlink(&r->base);
	r->base.state = HTTP_REQ_PARKED;
	http_req_push(&reg->auth_wait, &r->base);
	token_fetch(reg);
}

/* An expired token is renewed before a request goes out with it. */
static int hold(struct http_req *b)
{
	struct oci_client_req *r = to_req(b);
	struct oci_client *reg = r->reg;
	if (r->kind != OCI_CLIENT_TOKEN && reg->token &&
	    uv_now(reg->http.loop) >= reg->token_until && reg->have_chal) {
		free(reg->token);
		reg->token = NULL;
		park_for_token(r);
		return 1;
	}
	return 0;
}

static void auth_needed(struct oci_client_req *r)
{
	struct oci_client *reg = r->reg;
	struct oci_challenge c;
	if (!r->www_auth[0] || oci_challenge_parse(r->www_auth, &c) < 0) {
		http_req_fail(&r->base, SB_EDENIED, "HTTP 401 without a Bearer or Basic challenge");
		return;
	}
	if (r->auth_tries >= AUTH_TRIES) {
		http_req_fail(
		    &r->base, SB_EDENIED, "HTTP 401 Unauthorized with %s; check the credentials%s",
		    reg->token ? "a fresh token" : "the credentials given",
		    reg->userpwd ? "" : " (--registry-user-file, REGISTRY_AUTH or an auth file)");
		return;
	}
	r->auth_tries++;
	if (!c.bearer) {
		if (!reg->userpwd) {
			http_req_fail(
			    &r->base, SB_EAUTH,
			    "the registry asks for credentials: give --registry-user-file FILE, "
			    "REGISTRY_AUTH=user:password or an auth file (REGISTRY_AUTH_FILE, "
			    "~/.docker/config.json)");
			return;
		}
		reg->basic = 1;
		http_req_start(&r->base);
		return;
	}
	reg->chal = c;
	reg->have_chal = 1;
	if (reg->token && r->token_gen == reg->token_gen) {
		free(reg->token); /* refused or expired */
		reg->token = NULL;
	}
	if (reg->token)
		http_req_start(&r->base); /* a newer token came meanwhile */
	else
		park_for_token(r);
}

static void status_failed(struct http_req *b)
{
	struct oci_client_req *r = to_req(b);
	long st = b->resp.status;
	char reg[256];
	if (st == 401 && r->kind != OCI_CLIENT_TOKEN) {
		auth_needed(r);
		return;
	}
	oci_error_summary(r->body.ptr, r->body.len, reg, sizeof reg);
	char *why = xasprintf("%s%s", http_resp_reason(&b->resp), reg);
	http_req_status_failed(b, why, 0);
	free(why);
}

/* Headers and bodies. */

static void on_header(struct http_req *b, const char *data, size_t n)
{
	struct oci_client_req *r = to_req(b);
	struct http_header h;
	if (n >= 5 && !strncmp(data, "HTTP/", 5)) {
		r->content_type[0] = r->docker_digest[0] = r->www_auth[0] = r->link[0] = '\0';
		r->range[0] = '\0';
		free(r->location);
		r->location = NULL;
	} else if (!http_header_split(data, n, &h)) {
		return;
	} else if (http_header_is(&h, "location") && h.value_len < LOCATION_MAX) {
		free(r->location); /* a second Location in one answer: the last counts */
		r->location = xmalloc(h.value_len + 1);
		http_header_value(&h, r->location, h.value_len + 1);
	} else if (http_header_is(&h, "range")) {
		http_header_value(&h, r->range, sizeof r->range);
	} else if (http_header_is(&h, "content-type")) {
		http_header_value(&h, r->content_type, sizeof r->content_type);
	} else if (http_header_is(&h, "docker-content-digest")) {
		http_header_value(&h, r->docker_digest, sizeof r->docker_digest);
	} else if (http_header_is(&h, "www-authenticate")) {
		http_header_value(&h, r->www_auth, sizeof r->www_auth);
	} else if (http_header_is(&h, "link")) {
		http_header_value(&h, r->link, sizeof r->link);
	}
}

static int blob_check(struct oci_client_req *r)
{
	const struct http_resp *p = &r->base.resp;
	uint64_t first = r->base.off + r->base.got;
	if (p->status == 200) {
		if (p->content_length >= 0 && (uint64_t)p->content_length != r->total)
			return http_req_refuse(&r->base, SB_ECORRUPT,
					       "blob is %" PRId64
					       " bytes, its descriptor says %" PRIu64,
					       p->content_length, r->total);
		r->skip = first;
		return 0;
	}
	if (p->status != 206)
		return http_req_refuse(&r->base, SB_EPROTO, "unexpected HTTP %ld %s", p->status,
				       http_resp_reason(p));
	if (!p->has_range || p->range_unsatisfied)
		return http_req_refuse(&r->base, SB_EPROTO, "206 without a usable Content-Range");
	if (p->range_total >= 0 && (uint64_t)p->range_total != r->total)
		return http_req_refuse(&r->base, SB_ECORRUPT,
				       "blob is %" PRId64 " bytes, its descriptor says %" PRIu64,
				       p->range_total, r->total);
	return http_req_check_span(&r->base);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct oci_client_req *r = to_req(arg); /* the client passes &r->base */
	size_t n = size * nmemb;
	r->base.last_io = uv_now(r->reg->http.loop);
	if (!r->base.checked) {
		r->base.checked = 1;
		long st = r->base.resp.status;
		if (st < 200 || st >= 300)
			r->base.discard = 1;
		else if (r->kind == OCI_CLIENT_RANGE && blob_check(r) < 0)
			return 0;
	}
	if (r->base.discard) {
		if (r->body.len < ERROR_KEEP)
			buf_append(&r->body, data, n < ERROR_KEEP ? n : ERROR_KEEP);
		return http_req_drain(&r->base, n);
	}
	if (r->kind == OCI_CLIENT_CALL)
		return n; /* nothing in a 2xx answer to a call is needed */
	if (r->kind != OCI_CLIENT_RANGE) {
		if (r->body.len + n > r->body_max) {
			http_req_refuse(&r->base, SB_ETOOBIG, "answer larger than %zu bytes",
					r->body_max);
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
	if (take > r->base.len - r->base.got)
		take = r->base.len - r->base.got; /* a whole body past our range: done */
	memcpy(r->base.buf + r->base.got, p, take);
	r->base.got += take;
	r->base.count += take;
	if (r->reg->http.bytes_read)
		*r->reg->http.bytes_read += take;
	if (r->base.got == r->base.len && take < n - k)
		return 0;
	return n;
}

static void done(struct http_req *b, CURLcode rc)
{
	struct oci_client_req *r = to_req(b);
	if (r->kind == OCI_CLIENT_RANGE && rc == CURLE_WRITE_ERROR && b->verdict == 0 &&
	    b->got == b->len)
		rc = CURLE_OK; /* we hung up on the rest of a whole body */
	if (http_req_attempt_failed(b, rc))
		return;
	if (r->kind != OCI_CLIENT_RANGE || b->got == b->len)
		http_req_finish(b, 0);
	else
		http_req_ask_rest(b);
}

/* The credentials an attempt carries. curl drops a custom Authorization
 * header and its own Basic auth when a redirect leaves the host, so blob
 * storage never sees either. */
static void set_auth(struct oci_client_req *r, CURL *e)
{
	struct oci_client *reg = r->reg;
	if (r->kind == OCI_CLIENT_CALL && r->call.anonymous)
		return;
	if (r->kind == OCI_CLIENT_TOKEN) {
		if (reg->userpwd) {
			curl_easy_setopt(e, CURLOPT_USERPWD, reg->userpwd);
			curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		}
	} else if (reg->token) {
		http_req_add_header(&r->base, "Authorization: Bearer %s", reg->token);
		r->token_gen = reg->token_gen;
	} else if (reg->basic && reg->userpwd) {
		curl_easy_setopt(e, CURLOPT_USERPWD, reg->userpwd);
		curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
	}
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *arg)
{
	struct oci_client_req *r = to_req(arg);
	size_t n = r->call.body->read(r->call.body->arg, buf, size * nitems);
	if (n == CURL_READFUNC_PAUSE)
		r->base.paused = 1; /* waiting for the disk, not the network */
	else
		r->base.last_io = uv_now(r->reg->http.loop);
	return n;
}

/* The method, headers and body of a call. */
static void setup_call(struct oci_client_req *r, CURL *e)
{
	const struct oci_client_call *c = &r->call;
	if (!strcmp(c->method, "HEAD")) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (c->body) {
		c->body->rewind(c->body->arg);
		curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(e, CURLOPT_READDATA, (void *)&r->base);
		curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)c->body->len);
		if (strcmp(c->method, "PUT"))
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c->method);
	} else {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->data ? (const char *)c->data : "");
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)(c->data ? c->len : 0));
		if (strcmp(c->method, "POST"))
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c->method);
	}
	if (c->content_type)
		http_req_add_header(&r->base, "Content-Type: %s", c->content_type);
	if (c->content_range)
		http_req_add_header(&r->base, "Content-Range: %s", c->content_range);
	if (c->accept)
		http_req_add_header(&r->base, "Accept: %s", c->accept);
}

static void setup(struct http_req *b, CURL *e)
{
	struct oci_client_req *r = to_req(b);
	curl_easy_setopt(e, CURLOPT_URL, r->url);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	r->skip = 0;
	buf_reset(&r->body);
	if (r->kind == OCI_CLIENT_CALL)
		setup_call(r, e);
	if (r->kind == OCI_CLIENT_DOC)
		http_req_add_header(b, "Accept: %s", OCI_ACCEPT);
	if (r->kind == OCI_CLIENT_RANGE)
		http_req_set_range(b, e);
	set_auth(r, e);
}

static const struct http_req_ops req_ops = {
    .setup = setup,
    .done = done,
    .deliver = deliver,
    .describe = describe,
    .free = free_hook,
    .hold = hold,
    .header = on_header,
    .status_failed = status_failed,
};

/* Tokens. */

static void on_token(struct oci_client_req *r)
{
	struct oci_client *reg = r->reg;
	struct http_req *w;
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
		if (rc == SB_EDENIED || r->base.resp.status == 401) {
			rc = SB_EAUTH;
			free(r->detail);
			r->detail =
			    xasprintf("token service %s refused %s (HTTP %ld)", reg->chal.realm,
				      reg->userpwd ? "the credentials" : "anonymous access",
				      r->base.resp.status);
		}
		while ((w = reg->auth_wait.head)) {
			free(w->detail);
			w->detail = r->detail ? xstrdup(r->detail) : NULL;
			http_req_finish(w, rc);
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
	    uv_now(reg->http.loop) + (life > 2 * TOKEN_SLACK_MS ? life - TOKEN_SLACK_MS : life / 2);
	req_free(r);
	while ((w = reg->auth_wait.head))
		http_req_start(w);
}

/* A realm over plain HTTP would carry the credentials in clear: only as
 * far as the registry itself may be spoken to that way. */
static int realm_allowed(struct oci_client *reg, const char *realm)
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

/* The scope the token asks for: the challenge's, or the repository's
 * own. A pusher always asks for pull and push on its repository (a
 * registry's challenge to a HEAD names only pull), and adds what the
 * challenge names beyond it (pull on the repository a blob is mounted
 * from), each as a scope parameter of its own. */
static void append_scopes(struct oci_client *reg, struct buf *url)
{
	struct buf own = BUF_INIT;
	buf_printf(&own, "repository:%s:%s", reg->repo, reg->push ? "pull,push" : "pull");
	buf_append_str(url, "scope=");
	if (!reg->push) {
		oci_append_escaped(url, reg->chal.scope[0] ? reg->chal.scope : buf_cstr(&own));
		buf_close(&own);
		return;
	}
	oci_append_escaped(url, buf_cstr(&own));
	struct buf mine = BUF_INIT;
	buf_printf(&mine, "repository:%s:", reg->repo);
	char *scopes = xstrdup(reg->chal.scope), *save = NULL;
	for (char *s = strtok_r(scopes, " ", &save); s; s = strtok_r(NULL, " ", &save)) {
		if (!strncmp(s, buf_cstr(&mine), mine.len))
			continue;
		buf_append_str(url, "&scope=");
		oci_append_escaped(url, s);
	}
	free(scopes);
	buf_close(&mine);
	buf_close(&own);
}

static void token_fetch(struct oci_client *reg)
{
	if (reg->token_req)
		return;
	if (!realm_allowed(reg, reg->chal.realm)) {
		while (reg->auth_wait.head)
			http_req_fail(
			    reg->auth_wait.head, SB_EAUTH,
			    "token realm %s is not HTTPS (allowed only for loopback hosts and "
			    "--insecure-registry)",
			    reg->chal.realm);
		return;
	}
	struct buf url = BUF_INIT;
	struct oci_client_req *r = req_new(reg, OCI_CLIENT_TOKEN);
	buf_printf(&url, "%s%c", reg->chal.realm, strchr(reg->chal.realm, '?') ? '&' : '?');
	if (reg->chal.service[0]) {
		buf_append_str(&url, "service=");
		oci_append_escaped(&url, reg->chal.service);
		buf_append_str(&url, "&");
	}
	append_scopes(reg, &url);
	r->url = buf_steal(&url);
	r->body_max = OCI_TOKEN_MAX;
	r->cb = on_token;
	reg->token_req = r;
	http_req_start(&r->base);
}

/* The interface. */

int oci_client_new(uv_loop_t *loop, const struct oci_client_options *o, struct oci_client **out)
{
	struct oci_client *reg = xcalloc(1, sizeof *reg);
	struct http_client_options co = {
	    .retries = o->retries,
	    .connect_seconds = o->connect_seconds,
	    .stall_seconds = o->stall_seconds,
	    .bytes_read = o->bytes_read,
	    .counters = o->counters,
	};
	int rc = http_client_init(&reg->http, loop, &req_ops, &co);
	if (rc < 0) {
		free(reg);
		return rc;
	}
	reg->repo = xstrdup(o->repo ? o->repo : "");
	reg->userpwd = o->userpwd ? xstrdup(o->userpwd) : NULL;
	reg->insecure = o->insecure ? xstrdup(o->insecure) : NULL;
	reg->push = o->push;
	*out = reg;
	return 0;
}

static void oci_client_closed(struct http_client *c)
{
	free(c); /* the first member of its registry */
}

void oci_client_free(struct oci_client *reg)
{
	if (!reg || reg->http.closing)
		return;
	struct http_req *w, *next;
	for (w = reg->auth_wait.head; w; w = next) {
		next = w->next;
		req_free(to_req(w));
	}
	reg->token_req = NULL;
	free(reg->repo);
	free(reg->userpwd);
	free(reg->insecure);
	free(reg->token);
	http_client_close(&reg->http, oci_client_closed);
}

void oci_client_get_doc(struct oci_client *reg, char *url, size_t max, oci_client_done_cb cb,
			void *arg)
{
	struct oci_client_req *r = req_new(reg, OCI_CLIENT_DOC);
	r->url = url;
	r->body_max = max;
	r->cb = cb;
	r->arg = arg;
	http_req_start(&r->base);
}

void oci_client_get_range(struct oci_client *reg, char *url, uint64_t total, uint64_t off,
			  size_t len, void *buf, oci_client_done_cb cb, void *arg)
{
	struct oci_client_req *r = req_new(reg, OCI_CLIENT_RANGE);
	r->url = url;
	r->total = total;
	r->base.off = off;
	r->base.len = len;
	r->base.buf = buf;
	r->cb = cb;
	r->arg = arg;
	http_req_start(&r->base);
}

struct oci_client_req *oci_client_call(struct oci_client *reg, char *url,
				       const struct oci_client_call *call, oci_client_done_cb cb,
				       void *arg)
{
	struct oci_client_req *r = req_new(reg, OCI_CLIENT_CALL);
	r->url = url;
	r->call = *call;
	r->base.once = call->once;
	r->cb = cb;
	r->arg = arg;
	http_req_start(&r->base);
	return r;
}

void oci_client_req_resume(struct oci_client_req *r)
{
	if (!r->base.paused || !r->base.easy)
		return;
	r->base.paused = 0;
	r->base.last_io = uv_now(r->reg->http.loop);
	curl_easy_pause(r->base.easy, CURLPAUSE_CONT);
}

void oci_client_defer(struct oci_client *reg, int status, char *detail, oci_client_done_cb cb,
		      void *arg)
{
	struct oci_client_req *r = req_new(reg, OCI_CLIENT_DEFER);
	r->base.detail = detail;
	r->cb = cb;
	r->arg = arg;
	http_req_finish(&r->base, status);
}

void oci_client_cancel(struct oci_client *reg)
{
	struct http_req *r, *next;
	for (r = reg->http.done.head; r; r = r->next)
		if (to_req(r)->kind != OCI_CLIENT_TOKEN)
			http_req_cancel(r);
	for (r = reg->auth_wait.head; r; r = next) {
		next = r->next;
		http_req_cancel(r);
	}
	for (r = reg->http.active.head; r; r = next) {
		next = r->next;
		http_req_cancel(r);
	}
}

int oci_client_busy(const struct oci_client *reg)
{
	return reg->http.active.head || reg->auth_wait.head || reg->http.done.head;
}

void oci_client_req_free(struct oci_client_req *r)
{
	if (r)
		req_free(r);
}