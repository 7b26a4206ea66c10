/* The oci:// source: one image of a registry repository (by tag or digest),
 * or every tag matching ?tag-regex=, presented as an OCI image layout:
 * oci-layout, index.json (one entry per tag, named by
 * org.opencontainers.image.ref.name) and blobs/sha256/<hex> for each image
 * manifest, config and layer. The small generated files are served from
 * memory; config and layer blobs are read with ranged GETs, in parallel,
 * through one curl multi on the loop. An image index resolves to the
 * manifest of one platform (linux/amd64 unless ?platform= says otherwise).
 * A Docker schema 2 manifest is kept with OCI media types (its blobs as they
 * are), since layout readers take only those; the listing's version stays
 * the registry's manifest digest.
 *
 * Every manifest is checked against its digest before use, and every blob
 * read from start to end in this run is hashed in order on the thread pool
 * and checked against its digest; a read completes only once its bytes are
 * hashed, so the read that ends a blob with the wrong digest fails with
 * SB_ECORRUPT. A blob read with gaps (a resumed pull, or an agent that gets
 * the other blocks from peers) cannot be hashed here and is not checked.
 *
 * Auth: anonymous, then on 401 the Bearer token flow (realm, service,
 * scope; credentials from REGISTRY_AUTH or --registry-user sent to the token
 * service only), or Basic when the registry asks for it. Registries on a
 * loopback address, or named by --insecure-registry, are spoken to over
 * plain HTTP; any other over HTTPS. Callbacks run from one timer, never from
 * inside libcurl or from the call that started the operation. */
#include "common/source.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <regex.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <strings.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/http_multi.h"
#include "common/log.h"
#include "common/oci.h"

#define DEFAULT_PLATFORM "linux/amd64"
#define TAGS_PAGE	 1000
#define TAGS_MAX	 100000
#define ERROR_KEEP	 4096	     /* error body kept for the message */
#define ERROR_BODY_MAX	 (64u << 10) /* error body drained before hanging up */
#define TOKEN_SLACK_MS	 5000
#define AUTH_TRIES	 2
#define RANGE_SPEC_MAX	 48
#define HEADER_MAX	 2048
#define DOCKER_HUB	 "docker.io"
#define DOCKER_HUB_API	 "registry-1.docker.io"
#define BLOBS_DIR	 "blobs/sha256/"
#define OCI_AUTH_MAX	 1024 /* user:password */

enum req_kind {
	REQ_DOC,   /* a manifest or tag page into body */
	REQ_TOKEN, /* the token service */
	REQ_BLOB,  /* a byte range of a blob into the caller's buffer */
	REQ_MEM,   /* a range of a generated file: no transfer */
	REQ_LIST,  /* carries list()'s result to its callback */
};

enum req_state { ST_IDLE, ST_RUNNING, ST_WAITING, ST_AUTH, ST_HELD, ST_HASHING, ST_DONE };

struct oci_req;
struct req_list {
	struct oci_req *head, *tail;
};

struct oci_source;

struct oci_req {
	struct oci_req *prev, *next;
	struct req_list *on;
	struct oci_source *os;
	enum req_kind kind;
	enum req_state state;
	CURL *easy;
	struct curl_slist *hdrs;
	struct http_resp resp;
	char content_type[OCI_MEDIA_TYPE_MAX];
	char docker_digest[OCI_DIGEST_MAX];
	char www_auth[HEADER_MAX];
	char link[HEADER_MAX];
	char errbuf[CURL_ERROR_SIZE];
	char *url;
	uint64_t due, last_io;
	unsigned failures, auth_tries, token_gen;
	int checked, discard, verdict, canceled, verify;
	size_t discarded;
	struct buf body;
	size_t body_max;
	size_t file;  /* BLOB/MEM: listing index */
	uint64_t off; /* BLOB/MEM: file offset */
	size_t len, got;
	uint8_t *buf;
	uint64_t skip;	/* BLOB: leading bytes of a 200 to drop */
	uint64_t count; /* bytes this attempt */
	int status;
	char *detail;
	void (*then)(struct oci_req *r); /* internal continuation, or NULL */
	source_done_cb cb;
	void *arg;
};

struct ofile {
	char *path;
	int remote;
	uint8_t *data; /* generated files */
	size_t len;
	char digest[OCI_DIGEST_MAX];
	uint64_t size;
	/* Verification of remote blobs. */
	struct sha256_ctx ctx;
	int ctx_open, unverified, verified, hashing;
	uint64_t hashed, issued;
	struct req_list held; /* fetched, waiting for the bytes before them */
	uv_work_t work;
	struct oci_req *job;
	struct oci_source *os;
};

struct image {
	char *tag;		     /* ref.name, or NULL */
	char digest[OCI_DIGEST_MAX]; /* the registry's manifest */
	/* The manifest as the layout holds it: the registry's bytes, or a
	 * Docker schema 2 manifest retyped to OCI. */
	char layout_digest[OCI_DIGEST_MAX];
	const char *layout_type;
	struct buf manifest;
	struct oci_manifest m;
};

struct oci_source {
	struct source *src;
	uv_loop_t *loop;
	struct http_multi *multi;
	uv_timer_t wake;
	int closing;
	char *base;  /* scheme://host[:port] */
	char *repo;  /* as the registry names it (library/ added on Docker Hub) */
	char *shown; /* registry/repo for messages */
	const char *insecure;
	struct oci_platform want;
	regex_t re;
	int has_re;
	char *userpwd;
	uint64_t rng, stall_ms;
	/* Auth. */
	char *token;
	unsigned token_gen;
	uint64_t token_until;
	struct oci_challenge chal;
	int have_chal, basic;
	struct oci_req *token_req;
	struct req_list auth_wait;
	struct req_list active, done;
	/* list() */
	int listing;
	source_done_cb list_cb;
	void *list_arg;
	char **refs;
	size_t nrefs, next_ref;
	char *expect; /* digest the manifest being fetched must have, or NULL */
	struct image *images;
	size_t nimages;
	/* The listing's files, in listing order. */
	struct ofile *files;
	size_t nfiles;
};

static void start_attempt(struct oci_req *r);
static void on_wake(uv_timer_t *t);

/* Lists. */

static void list_push(struct req_list *l, struct oci_req *r)
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

static void list_del(struct oci_req *r)
{
	struct req_list *l = r->on;
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

static struct oci_req *req_new(struct oci_source *os, enum req_kind kind)
{
	struct oci_req *r = xcalloc(1, sizeof *r);
	r->os = os;
	r->kind = kind;
	http_resp_reset(&r->resp);
	return r;
}

static void req_drop_easy(struct oci_req *r)
{
	if (!r->easy)
		return;
	http_multi_remove(r->os->multi, r->easy);
	curl_easy_cleanup(r->easy);
	r->easy = NULL;
}

static void req_free(struct oci_req *r)
{
	list_del(r);
	req_drop_easy(r);
	curl_slist_free_all(r->hdrs);
	buf_close(&r->body);
	free(r->url);
	free(r->detail);
	free(r);
}

static void set_detail(struct oci_req *r, const char *fmt, va_list ap)
{
	struct buf b = BUF_INIT;
	if (r->url)
		buf_printf(&b, "GET %s: ", r->url);
	buf_vprintf(&b, fmt, ap);
	free(r->detail);
	r->detail = buf_steal(&b);
}

static int watched(const struct oci_source *os, const struct oci_req *r)
{
	return os->stall_ms && r->state == ST_RUNNING && r->easy;
}

static void wake_arm(struct oci_source *os)
{
	if (os->closing)
		return;
	uint64_t now = uv_now(os->loop), delay = UINT64_MAX;
	if (os->done.head) {
		delay = 0;
	} else {
		for (struct oci_req *r = os->active.head; r; r = r->next) {
			uint64_t at;
			if (r->state == ST_WAITING)
				at = r->due;
			else if (watched(os, r))
				at = r->last_io + os->stall_ms;
			else
				continue;
			uint64_t d = at > now ? at - now : 0;
			if (d < delay)
				delay = d;
		}
	}
	if (delay == UINT64_MAX)
		uv_timer_stop(&os->wake);
	else
		uv_timer_start(&os->wake, on_wake, delay, 0);
}

/* The request ends with status; its continuation or callback runs from the
 * loop. */
static void finish(struct oci_req *r, int status)
{
	struct oci_source *os = r->os;
	r->status = status;
	req_drop_easy(r);
	list_del(r);
	r->state = ST_DONE;
	list_push(&os->done, r);
	wake_arm(os);
}

static void fail(struct oci_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct oci_req *r, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_detail(r, fmt, ap);
	va_end(ap);
	finish(r, code);
}

static int refuse(struct oci_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(struct oci_req *r, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_detail(r, fmt, ap);
	va_end(ap);
	r->verdict = code;
	return -1;
}

static void retry_or_fail(struct oci_req *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void retry_or_fail(struct oci_req *r, int code, const char *fmt, ...)
{
	struct oci_source *os = r->os;
	struct buf what = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&what, fmt, ap);
	va_end(ap);
	int retries = os->src->opt.retries > 0 ? os->src->opt.retries : 0;
	if (r->kind == REQ_BLOB && r->count > 0)
		r->failures = 0; /* progress forgives earlier failures */
	r->failures++;
	if (r->failures > (unsigned)retries) {
		fail(r, code, "%s (gave up after %u attempts)", buf_cstr(&what), r->failures);
	} else {
		uint64_t delay = http_backoff_ms(r->failures, r->resp.retry_after, &os->rng);
		log_info("GET %s: %s; retry %u of %d in %" PRIu64 " ms", r->url, buf_cstr(&what),
			 r->failures, retries, delay);
		req_drop_easy(r);
		r->state = ST_WAITING;
		r->due = uv_now(os->loop) + delay;
		wake_arm(os);
	}
	buf_close(&what);
}

static void token_fetch(struct oci_source *os);

static void park_for_token(struct oci_req *r)
{
	struct oci_source *os = r->os;
	req_drop_easy(r);
	list_del(r);
	r->state = ST_AUTH;
	list_push(&os->auth_wait, r);
	token_fetch(os);
}

static void auth_needed(struct oci_req *r)
{
	struct oci_source *os = r->os;
	struct oci_challenge c;
	if (!r->www_auth[0] || oci_challenge_parse(r->www_auth, &c) < 0) {
		fail(r, SB_EDENIED, "HTTP 401 without a Bearer or Basic challenge");
		return;
	}
	if (r->auth_tries >= AUTH_TRIES) {
		fail(r, SB_EDENIED, "HTTP 401 Unauthorized with %s; check the credentials%s",
		     os->token ? "a fresh token" : "the credentials given",
		     os->userpwd ? "" : " (REGISTRY_AUTH=user:password or --registry-user)");
		return;
	}
	r->auth_tries++;
	if (!c.bearer) {
		if (!os->userpwd) {
			fail(r, SB_EAUTH,
			     "the registry asks for credentials: set REGISTRY_AUTH=user:password "
			     "or --registry-user");
			return;
		}
		os->basic = 1;
		start_attempt(r);
		return;
	}
	os->chal = c;
	os->have_chal = 1;
	if (os->token && r->token_gen == os->token_gen) {
		free(os->token); /* refused or expired */
		os->token = NULL;
	}
	if (os->token)
		start_attempt(r); /* a newer token came meanwhile */
	else
		park_for_token(r);
}

static void status_failed(struct oci_req *r)
{
	long st = r->resp.status;
	char reg[256];
	if (st == 401 && r->kind != REQ_TOKEN) {
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

static void transport_failed(struct oci_req *r, CURLcode rc)
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
	struct oci_req *r = arg;
	size_t n = size * nmemb;
	r->last_io = uv_now(r->os->loop);
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

static int blob_check(struct oci_req *r)
{
	const struct http_resp *p = &r->resp;
	const struct ofile *f = &r->os->files[r->file];
	uint64_t first = r->off + r->got, last = r->off + r->len - 1;
	if (p->status == 200) {
		if (p->content_length >= 0 && (uint64_t)p->content_length != f->size)
			return refuse(r, SB_ECORRUPT,
				      "blob is %" PRId64 " bytes, its descriptor says %" PRIu64,
				      p->content_length, f->size);
		r->skip = first;
		return 0;
	}
	if (p->status != 206)
		return refuse(r, SB_EPROTO, "unexpected HTTP %ld %s", p->status,
			      http_resp_reason(p));
	if (!p->has_range || p->range_unsatisfied)
		return refuse(r, SB_EPROTO, "206 without a usable Content-Range");
	if (p->range_total >= 0 && (uint64_t)p->range_total != f->size)
		return refuse(r, SB_ECORRUPT,
			      "blob is %" PRId64 " bytes, its descriptor says %" PRIu64,
			      p->range_total, f->size);
	if (p->range_first != first || p->range_last > last)
		return refuse(r, SB_EPROTO,
			      "asked for bytes %" PRIu64 "-%" PRIu64 ", got %" PRIu64 "-%" PRIu64,
			      first, last, p->range_first, p->range_last);
	return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct oci_req *r = arg;
	size_t n = size * nmemb;
	r->last_io = uv_now(r->os->loop);
	if (!r->checked) {
		r->checked = 1;
		long st = r->resp.status;
		if (st < 200 || st >= 300)
			r->discard = 1;
		else if (r->kind == REQ_BLOB && blob_check(r) < 0)
			return 0;
	}
	if (r->discard) {
		if (r->body.len < ERROR_KEEP)
			buf_append(&r->body, data, n < ERROR_KEEP ? n : ERROR_KEEP);
		r->discarded += n;
		return r->discarded > ERROR_BODY_MAX ? 0 : n;
	}
	if (r->kind != REQ_BLOB) {
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
	r->os->src->bytes_read += take;
	if (r->got == r->len && take < n - k)
		return 0;
	return n;
}

static void blob_fetched(struct oci_req *r);

static void on_done(CURL *easy, CURLcode rc, void *arg)
{
	struct oci_req *r = arg;
	long st = r->resp.status;
	curl_easy_cleanup(easy);
	r->easy = NULL;
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;
	if (r->kind == REQ_BLOB && rc == CURLE_WRITE_ERROR && r->verdict == 0 && r->got == r->len)
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
	if (r->kind != REQ_BLOB) {
		finish(r, 0);
		return;
	}
	if (r->got == r->len)
		blob_fetched(r);
	else if (r->count > 0)
		start_attempt(r); /* a clean but short answer: ask for the rest */
	else
		retry_or_fail(r, SB_EHTTP, "response ended %zu bytes short", r->len - r->got);
}

static void add_header(struct oci_req *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_header(struct oci_req *r, const char *fmt, ...)
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

static void start_attempt(struct oci_req *r)
{
	struct oci_source *os = r->os;
	char range[RANGE_SPEC_MAX];
	if (r->kind != REQ_TOKEN && os->token && uv_now(os->loop) >= os->token_until &&
	    os->have_chal) {
		free(os->token);
		os->token = NULL;
		park_for_token(r);
		return;
	}
	CURL *e = curl_easy_init();
	if (!e) {
		fail(r, -ENOMEM, "cannot create a transfer");
		return;
	}
	http_easy_defaults(e, os->src->opt.connect_seconds, os->src->opt.stall_seconds);
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
	if (r->kind == REQ_DOC)
		add_header(r, "Accept: %s", OCI_ACCEPT);
	if (r->kind == REQ_BLOB) {
		snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, r->off + r->got,
			 r->off + r->len - 1);
		curl_easy_setopt(e, CURLOPT_RANGE, range);
	}
	/* curl drops a custom Authorization header and its own Basic auth when
	 * a redirect leaves the host, so blob storage never sees either. */
	if (r->kind == REQ_TOKEN) {
		if (os->userpwd) {
			curl_easy_setopt(e, CURLOPT_USERPWD, os->userpwd);
			curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		}
	} else if (os->token) {
		add_header(r, "Authorization: Bearer %s", os->token);
		r->token_gen = os->token_gen;
	} else if (os->basic && os->userpwd) {
		curl_easy_setopt(e, CURLOPT_USERPWD, os->userpwd);
		curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
	}
	if (r->hdrs)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	r->easy = e;
	r->state = ST_RUNNING;
	r->last_io = uv_now(os->loop);
	if (r->on != &os->active) {
		list_del(r);
		list_push(&os->active, r);
	}
	int rc = http_multi_add(os->multi, e, on_done, r);
	if (rc < 0) {
		curl_easy_cleanup(e);
		r->easy = NULL;
		fail(r, rc, "cannot start the transfer");
		return;
	}
	wake_arm(os);
}

/* Tokens. */

static void on_token(struct oci_req *r)
{
	struct oci_source *os = r->os;
	struct oci_req *w;
	char *token = NULL;
	long expires = 0;
	int rc = r->status;
	os->token_req = NULL;
	if (rc == 0 && oci_token_parse(r->body.ptr, r->body.len, &token, &expires) < 0) {
		rc = SB_EAUTH;
		free(r->detail);
		r->detail = xasprintf("token service %s: answer has no token", os->chal.realm);
	}
	if (rc < 0) {
		if (rc == SB_EDENIED || r->resp.status == 401) {
			rc = SB_EAUTH;
			free(r->detail);
			r->detail = xasprintf(
			    "token service %s refused %s (HTTP %ld)", os->chal.realm,
			    os->userpwd ? "the credentials" : "anonymous access", r->resp.status);
		}
		while ((w = os->auth_wait.head)) {
			free(w->detail);
			w->detail = r->detail ? xstrdup(r->detail) : NULL;
			finish(w, rc);
		}
		req_free(r);
		return;
	}
	free(os->token);
	os->token = token;
	os->token_gen++;
	uint64_t life = (uint64_t)expires * 1000;
	os->token_until =
	    uv_now(os->loop) + (life > 2 * TOKEN_SLACK_MS ? life - TOKEN_SLACK_MS : life);
	req_free(r);
	while ((w = os->auth_wait.head))
		start_attempt(w);
}

/* A realm over plain HTTP would carry the credentials in clear: only as
 * far as the registry itself may be spoken to that way. */
static int realm_allowed(struct oci_source *os, const char *realm)
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
			ok = oci_host_is_loopback(hp) || oci_host_listed(hp, os->insecure);
			free(hp);
		}
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return ok;
}

static void token_fetch(struct oci_source *os)
{
	struct oci_req *w;
	if (os->token_req)
		return;
	if (!realm_allowed(os, os->chal.realm)) {
		while ((w = os->auth_wait.head))
			fail(w, SB_EAUTH,
			     "token realm %s is not HTTPS (allowed only for loopback hosts and "
			     "--insecure-registry)",
			     os->chal.realm);
		return;
	}
	struct buf url = BUF_INIT;
	struct oci_req *r = req_new(os, REQ_TOKEN);
	buf_printf(&url, "%s%c", os->chal.realm, strchr(os->chal.realm, '?') ? '&' : '?');
	if (os->chal.service[0]) {
		buf_append_str(&url, "service=");
		oci_append_escaped(&url, os->chal.service);
		buf_append_str(&url, "&");
	}
	buf_append_str(&url, "scope=");
	if (os->chal.scope[0]) {
		oci_append_escaped(&url, os->chal.scope);
	} else {
		struct buf scope = BUF_INIT;
		buf_printf(&scope, "repository:%s:pull", os->repo);
		oci_append_escaped(&url, buf_cstr(&scope));
		buf_close(&scope);
	}
	r->url = buf_steal(&url);
	r->body_max = OCI_TOKEN_MAX;
	r->then = on_token;
	os->token_req = r;
	start_attempt(r);
}

/* list(): tags, manifests, then the layout. */

static void fetch_doc(struct oci_source *os, char *url, void (*then)(struct oci_req *))
{
	struct oci_req *r = req_new(os, REQ_DOC);
	r->url = url;
	r->body_max = OCI_DOC_MAX;
	r->then = then;
	start_attempt(r);
}

static void list_finish(struct oci_source *os, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void list_finish(struct oci_source *os, int status, const char *fmt, ...)
{
	struct oci_req *r = req_new(os, REQ_LIST);
	r->cb = os->list_cb;
	r->arg = os->list_arg;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		set_detail(r, fmt, ap);
		va_end(ap);
	}
	os->listing = 0;
	finish(r, status);
}

/* An internal request failed: list() fails with its detail. */
static void list_fail_req(struct oci_req *r, const char *what)
{
	struct oci_source *os = r->os;
	list_finish(os, r->status, "%s: %s: %s", os->shown, what,
		    r->detail ? r->detail : sb_strerror(r->status));
}

static void next_ref(struct oci_source *os);
static void build_listing(struct oci_source *os);

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void tags_done(struct oci_source *os, size_t total)
{
	size_t n = 0;
	for (size_t i = 0; i < os->nrefs; i++) {
		if (regexec(&os->re, os->refs[i], 0, NULL, 0) == 0)
			os->refs[n++] = os->refs[i];
		else
			free(os->refs[i]);
	}
	os->nrefs = n;
	if (n == 0) {
		list_finish(os, SB_ENOTFOUND, "%s: none of its %zu tags matches /%s/", os->shown,
			    total, os->src->uri.tag_regex);
		return;
	}
	qsort(os->refs, n, sizeof *os->refs, cmp_str);
	log_info("%s: %zu of %zu tags match /%s/", os->shown, n, total, os->src->uri.tag_regex);
	next_ref(os);
}

static void on_tags(struct oci_req *r)
{
	struct oci_source *os = r->os;
	if (!os->listing) {
		req_free(r);
		return;
	}
	if (r->status < 0) {
		list_fail_req(r, "cannot list tags");
		req_free(r);
		return;
	}
	int rc = oci_tags_parse(r->body.ptr, r->body.len, &os->refs, &os->nrefs, TAGS_MAX);
	if (rc < 0) {
		list_finish(os, rc, "%s: malformed tag list from %s", os->shown, r->url);
		req_free(r);
		return;
	}
	char *next = r->link[0] ? oci_link_next(r->link) : NULL;
	req_free(r);
	if (!next) {
		tags_done(os, os->nrefs);
		return;
	}
	char *url = next[0] == '/' ? xasprintf("%s%s", os->base, next) : NULL;
	if (!url && !strncmp(next, os->base, strlen(os->base)) && next[strlen(os->base)] == '/')
		url = xstrdup(next);
	if (!url) {
		list_finish(os, SB_EPROTO, "%s: tag list continues at another host (%s)", os->shown,
			    next);
		free(next);
		return;
	}
	free(next);
	fetch_doc(os, url, on_tags);
}

static void on_manifest(struct oci_req *r);

static void fetch_manifest(struct oci_source *os, const char *ref, const char *expect)
{
	free(os->expect);
	os->expect = expect ? xstrdup(expect) : NULL;
	fetch_doc(os, xasprintf("%s/v2/%s/manifests/%s", os->base, os->repo, ref), on_manifest);
}

static void next_ref(struct oci_source *os)
{
	if (os->next_ref >= os->nrefs) {
		build_listing(os);
		return;
	}
	const char *ref = os->refs[os->next_ref];
	fetch_manifest(os, ref, oci_digest_valid(ref) ? ref : NULL);
}

/* The tag this reference publishes under, or NULL for a bare digest. */
static const char *ref_tag(struct oci_source *os)
{
	const char *ref = os->refs[os->next_ref];
	if (!oci_digest_valid(ref))
		return ref;
	return os->src->uri.revision; /* repo:tag@digest keeps its tag */
}

static int manifest_verified(struct oci_req *r, char *digest)
{
	struct oci_source *os = r->os;
	oci_digest_of(r->body.ptr, r->body.len, digest);
	const char *want = os->expect;
	if (!want && oci_digest_valid(r->docker_digest))
		want = r->docker_digest;
	if (want && strcmp(want, digest) != 0) {
		list_finish(os, SB_ECORRUPT, "%s: manifest %s has digest %s, not %s", os->shown,
			    r->url, digest, want);
		return 0;
	}
	return 1;
}

static void choose_platform(struct oci_source *os, struct oci_manifest *idx)
{
	char want[3 * OCI_PLATFORM_PART], have[256] = "";
	int i = oci_index_choose(idx, &os->want);
	if (i >= 0) {
		if (!strcmp(idx->manifests[i].media_type, OCI_MT_INDEX) ||
		    !strcmp(idx->manifests[i].media_type, OCI_MT_DOCKER_LIST)) {
			list_finish(os, SB_EPROTO, "%s: an index inside an index is not supported",
				    os->shown);
			return;
		}
		fetch_manifest(os, idx->manifests[i].digest, idx->manifests[i].digest);
		return;
	}
	oci_platform_format(&os->want, want, sizeof want);
	for (size_t k = 0; k < idx->nmanifests && strlen(have) < sizeof have - 40; k++) {
		char p[3 * OCI_PLATFORM_PART];
		if (!idx->manifests[k].has_platform)
			continue;
		oci_platform_format(&idx->manifests[k].platform, p, sizeof p);
		snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s",
			 have[0] ? ", " : "", p);
	}
	if (os->has_re) {
		log_warn("%s:%s has no %s image (it has %s); tag skipped", os->shown,
			 os->refs[os->next_ref], want, have[0] ? have : "none");
		os->next_ref++;
		next_ref(os);
		return;
	}
	list_finish(os, SB_ENOTFOUND,
		    "%s: no %s image in the index (it has %s); choose one "
		    "with --platform",
		    os->shown, want, have[0] ? have : "none");
}

static void on_manifest(struct oci_req *r)
{
	struct oci_source *os = r->os;
	char digest[OCI_DIGEST_MAX], *why = NULL;
	struct oci_manifest m;
	if (!os->listing)
		goto out;
	if (r->status < 0) {
		const char *ref = os->refs[os->next_ref];
		if (r->status == SB_ENOTFOUND)
			list_finish(os, r->status, "%s: %s %s not found: %s", os->shown,
				    oci_digest_valid(ref) ? "manifest" : "tag", ref,
				    r->detail ? r->detail : "");
		else
			list_fail_req(r, "cannot get the manifest");
		goto out;
	}
	if (!manifest_verified(r, digest))
		goto out;
	int rc = oci_manifest_parse(r->body.ptr, r->body.len, r->content_type, &m, &why);
	if (rc < 0) {
		list_finish(os, rc, "%s: manifest %s: %s", os->shown, digest, why);
		free(why);
		goto out;
	}
	if (m.is_index) {
		choose_platform(os, &m);
		oci_manifest_close(&m);
		goto out;
	}
	os->images = xrealloc(os->images, (os->nimages + 1) * sizeof *os->images);
	struct image *im = &os->images[os->nimages++];
	memset(im, 0, sizeof *im);
	const char *tag = ref_tag(os);
	im->tag = tag ? xstrdup(tag) : NULL;
	snprintf(im->digest, sizeof im->digest, "%s", digest);
	snprintf(im->layout_digest, sizeof im->layout_digest, "%s", digest);
	im->layout_type = OCI_MT_MANIFEST;
	im->m = m;
	char *oci;
	size_t len;
	if (!strcmp(m.media_type, OCI_MT_DOCKER_V2) &&
	    oci_manifest_to_oci(r->body.ptr, r->body.len, &oci, &len) == 0) {
		/* OCI layout readers take only OCI media types. */
		buf_append(&im->manifest, oci, len);
		oci_digest_of(oci, len, im->layout_digest);
		free(oci);
	} else {
		im->manifest = r->body;
		memset(&r->body, 0, sizeof r->body);
	}
	os->next_ref++;
	next_ref(os);
out:
	req_free(r);
}

/* The layout. */

static struct ofile *add_file(struct ofile **files, size_t *n, const char *digest)
{
	*files = xrealloc(*files, (*n + 1) * sizeof **files);
	struct ofile *f = &(*files)[(*n)++];
	memset(f, 0, sizeof *f);
	snprintf(f->digest, sizeof f->digest, "%s", digest);
	f->path = xasprintf(BLOBS_DIR "%s", digest + strlen("sha256:"));
	return f;
}

static void add_mem(struct ofile **files, size_t *n, const char *path, const void *data, size_t len)
{
	char digest[OCI_DIGEST_MAX];
	oci_digest_of(data, len, digest);
	struct ofile *f = add_file(files, n, digest);
	if (path) {
		free(f->path);
		f->path = xstrdup(path);
	}
	f->data = xmalloc(len + 1);
	memcpy(f->data, data, len);
	f->len = len;
	f->size = len;
}

static void add_blob(struct ofile **files, size_t *n, const struct oci_descriptor *d)
{
	struct ofile *f = add_file(files, n, d->digest);
	f->remote = 1;
	f->size = d->size;
}

static int cmp_file(const void *a, const void *b)
{
	return strcmp(((const struct ofile *)a)->path, ((const struct ofile *)b)->path);
}

static void ofile_close(struct ofile *f)
{
	if (f->ctx_open && !f->hashing)
		sha256_close(&f->ctx);
	free(f->path);
	free(f->data);
}

/* Sort by path and fold blobs named twice (layers shared between tags). */
static int fold_files(struct oci_source *os, struct ofile *files, size_t *n)
{
	size_t k = 0;
	qsort(files, *n, sizeof *files, cmp_file);
	for (size_t i = 0; i < *n; i++) {
		if (k && !strcmp(files[k - 1].path, files[i].path)) {
			if (files[k - 1].size != files[i].size) {
				source_set_error(
				    os->src,
				    "%s: blob %s is named with sizes %" PRIu64 " and %" PRIu64,
				    os->shown, files[i].digest, files[k - 1].size, files[i].size);
				return SB_EPROTO;
			}
			ofile_close(&files[i]);
			continue;
		}
		files[k++] = files[i];
	}
	*n = k;
	return 0;
}

static const char empty_digest[] =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

static void build_listing(struct oci_source *os)
{
	struct oci_layout_ref *refs = xcalloc(os->nimages + 1, sizeof *refs);
	struct ofile *files = NULL;
	size_t n = 0;
	for (size_t i = 0; i < os->nimages; i++) {
		struct image *im = &os->images[i];
		refs[i] = (struct oci_layout_ref){im->layout_type, im->layout_digest,
						  im->manifest.len, im->tag};
		add_mem(&files, &n, NULL, im->manifest.ptr, im->manifest.len);
		add_blob(&files, &n, &im->m.config);
		for (size_t j = 0; j < im->m.nlayers; j++)
			add_blob(&files, &n, &im->m.layers[j]);
	}
	char *index = oci_layout_index(refs, os->nimages);
	free(refs);
	add_mem(&files, &n, "index.json", index, strlen(index));
	add_mem(&files, &n, "oci-layout", OCI_LAYOUT_FILE, strlen(OCI_LAYOUT_FILE));
	int rc = fold_files(os, files, &n);
	for (size_t i = 0; rc == 0 && i < n; i++)
		if (files[i].remote && files[i].size == 0 &&
		    strcmp(files[i].digest, empty_digest)) {
			source_set_error(os->src, "%s: empty blob %s cannot have that digest",
					 os->shown, files[i].digest);
			rc = SB_ECORRUPT;
		}
	if (rc < 0) {
		for (size_t i = 0; i < n; i++)
			ofile_close(&files[i]);
		free(files);
		free(index);
		os->listing = 0;
		struct oci_req *r = req_new(os, REQ_LIST);
		r->cb = os->list_cb;
		r->arg = os->list_arg;
		r->detail = xstrdup(os->src->error_detail);
		finish(r, rc);
		return;
	}
	struct source_listing *l = &os->src->listing;
	source_listing_close(l);
	l->files = xcalloc(n + 1, sizeof *l->files);
	l->nfiles = n;
	for (size_t i = 0; i < n; i++) {
		files[i].os = os;
		l->files[i].path = xstrdup(files[i].path);
		l->files[i].type = SRC_REGULAR;
		l->files[i].size = files[i].size;
		l->files[i].mode = 0644;
		l->files[i].digest = xstrdup(files[i].digest);
	}
	/* One image: its manifest digest, as a registry client would name it;
	 * several: the digest of the index.json that lists them. */
	if (os->nimages == 1) {
		l->version = xstrdup(os->images[0].digest);
	} else {
		char d[OCI_DIGEST_MAX];
		oci_digest_of(index, strlen(index), d);
		l->version = xstrdup(d);
	}
	free(index);
	os->files = files;
	os->nfiles = n;
	list_finish(os, 0, NULL);
}

/* Verification of blobs, in order, on the pool. */

static void hash_work(uv_work_t *w)
{
	struct ofile *f = w->data;
	sha256_update(&f->ctx, f->job->buf, f->job->len);
}

static void pump_hash(struct ofile *f);

static void unverify(struct ofile *f, const char *why)
{
	struct oci_req *r;
	if (f->unverified || f->verified)
		return;
	f->unverified = 1;
	log_info("%s: %s not checked against its digest in this run (%s)", f->os->shown, f->digest,
		 why);
	while ((r = f->held.head))
		finish(r, r->canceled ? SB_ECANCELED : 0);
	if (f->ctx_open && !f->hashing) {
		sha256_close(&f->ctx);
		f->ctx_open = 0;
	}
}

static void hash_done(uv_work_t *w, int status)
{
	struct ofile *f = w->data;
	struct oci_req *r = f->job;
	int rc = r->canceled ? SB_ECANCELED : 0;
	f->hashing = 0;
	f->job = NULL;
	f->hashed += r->len;
	if (f->unverified) {
		sha256_close(&f->ctx);
		f->ctx_open = 0;
	} else if (f->hashed == f->size) {
		struct hash_id h;
		char got[OCI_DIGEST_MAX], hex[HASH_HEX_LEN + 1];
		sha256_final(&f->ctx, &h);
		f->ctx_open = 0;
		f->verified = 1;
		hash_to_hex(&h, hex);
		snprintf(got, sizeof got, "sha256:%s", hex);
		if (strcmp(got, f->digest) != 0) {
			rc = SB_ECORRUPT;
			free(r->detail);
			r->detail = xasprintf("%s: blob %s arrived with digest %s: corrupt in the "
					      "registry or on the way",
					      f->os->shown, f->digest, got);
		}
	}
	finish(r, rc);
	pump_hash(f);
}

static void pump_hash(struct ofile *f)
{
	struct oci_req *r = f->held.head;
	if (f->hashing || !r || r->off != f->hashed || f->unverified)
		return;
	if (!f->ctx_open) {
		sha256_init(&f->ctx);
		f->ctx_open = 1;
	}
	list_del(r);
	r->state = ST_HASHING;
	f->hashing = 1;
	f->job = r;
	f->work.data = f;
	int rc = uv_queue_work(f->os->loop, &f->work, hash_work, hash_done);
	if (rc < 0)
		fatal("uv_queue_work: %s", uv_strerror(rc));
}

static void blob_fetched(struct oci_req *r)
{
	struct ofile *f = &r->os->files[r->file];
	if (!r->verify || f->unverified) {
		finish(r, 0);
		return;
	}
	req_drop_easy(r);
	list_del(r);
	r->state = ST_HELD;
	struct oci_req *at = f->held.head;
	while (at && at->off < r->off)
		at = at->next;
	if (!at) {
		list_push(&f->held, r);
	} else {
		r->on = &f->held;
		r->next = at;
		r->prev = at->prev;
		if (at->prev)
			at->prev->next = r;
		else
			f->held.head = r;
		at->prev = r;
	}
	pump_hash(f);
}

/* Deferred delivery. */

static void on_wake(uv_timer_t *t)
{
	struct oci_source *os = t->data;
	uint64_t now = uv_now(os->loop);
	struct oci_req *r, *next;
	for (r = os->active.head; r; r = next) {
		next = r->next;
		if (r->state == ST_WAITING && r->due <= now) {
			start_attempt(r);
		} else if (watched(os, r) && now - r->last_io >= os->stall_ms) {
			req_drop_easy(r);
			retry_or_fail(r, SB_ESTALL, "no data for %u s", os->src->opt.stall_seconds);
		}
	}
	/* A callback may free the source: os lives until the wake timer's
	 * close callback, src does not, so stop touching src then. */
	while ((r = os->done.head) && !os->closing) {
		if (r->then) {
			list_del(r);
			r->then(r);
			continue;
		}
		struct source *src = os->src;
		source_done_cb cb = r->cb;
		void *arg = r->arg;
		int status = r->status;
		if (status < 0 && r->detail)
			source_set_error(src, "%s", r->detail);
		req_free(r);
		cb(src, status, arg);
	}
	wake_arm(os);
}

/* Operations. */

static void reset_listing(struct oci_source *os)
{
	for (size_t i = 0; i < os->nfiles; i++)
		ofile_close(&os->files[i]);
	free(os->files);
	os->files = NULL;
	os->nfiles = 0;
	for (size_t i = 0; i < os->nimages; i++) {
		free(os->images[i].tag);
		buf_close(&os->images[i].manifest);
		oci_manifest_close(&os->images[i].m);
	}
	free(os->images);
	os->images = NULL;
	os->nimages = 0;
	for (size_t i = 0; i < os->nrefs; i++)
		free(os->refs[i]);
	free(os->refs);
	os->refs = NULL;
	os->nrefs = os->next_ref = 0;
	free(os->expect);
	os->expect = NULL;
}

static int busy(const struct oci_source *os)
{
	if (os->listing || os->active.head || os->auth_wait.head)
		return 1;
	for (size_t i = 0; i < os->nfiles; i++)
		if (os->files[i].hashing || os->files[i].held.head)
			return 1;
	return 0;
}

static int oci_list(struct source *src, source_done_cb cb, void *arg)
{
	struct oci_source *os = src->impl;
	if (busy(os))
		return -EBUSY;
	reset_listing(os);
	os->listing = 1;
	os->list_cb = cb;
	os->list_arg = arg;
	if (os->has_re) {
		fetch_doc(os, xasprintf("%s/v2/%s/tags/list?n=%d", os->base, os->repo, TAGS_PAGE),
			  on_tags);
		return 0;
	}
	os->refs = xcalloc(2, sizeof *os->refs);
	os->refs[0] = xstrdup(src->uri.digest ? src->uri.digest : src->uri.revision);
	os->nrefs = 1;
	next_ref(os);
	return 0;
}

static int oci_read(struct source *src, size_t index, uint64_t off, size_t len, void *buf,
		    source_done_cb cb, void *arg)
{
	struct oci_source *os = src->impl;
	if (index >= os->nfiles) {
		source_set_error(src, "%s: read before a listing", os->shown);
		return -EINVAL;
	}
	struct ofile *f = &os->files[index];
	if (off > f->size || len > f->size - off) {
		source_set_error(src,
				 "%s: bytes %" PRIu64 "+%zu lie past the end of %s (%" PRIu64 ")",
				 os->shown, off, len, f->path, f->size);
		return -EINVAL;
	}
	struct oci_req *r = req_new(os, f->remote && len ? REQ_BLOB : REQ_MEM);
	r->file = index;
	r->off = off;
	r->len = len;
	r->buf = buf;
	r->cb = cb;
	r->arg = arg;
	if (r->kind == REQ_MEM) {
		if (len)
			memcpy(buf, f->data + off, len);
		finish(r, 0);
		return 0;
	}
	if (!f->verified && !f->unverified) {
		if (off == f->issued) {
			r->verify = 1;
			f->issued = off + len;
		} else {
			unverify(f, "its reads skip bytes");
		}
	}
	r->url = xasprintf("%s/v2/%s/blobs/%s", os->base, os->repo, f->digest);
	start_attempt(r);
	return 0;
}

static void oci_cancel(struct source *src)
{
	struct oci_source *os = src->impl;
	struct oci_req *r, *next;
	for (r = os->done.head; r; r = r->next) {
		if (r->then)
			continue; /* internal: sees listing == 0 below */
		r->status = SB_ECANCELED;
		free(r->detail);
		r->detail = NULL;
	}
	for (size_t i = 0; i < os->nfiles; i++) {
		struct ofile *f = &os->files[i];
		for (r = f->held.head; r; r = r->next)
			r->canceled = 1;
		if (f->job)
			f->job->canceled = 1;
		unverify(f, "canceled");
	}
	for (r = os->auth_wait.head; r; r = next) {
		next = r->next;
		finish(r, SB_ECANCELED);
	}
	for (r = os->active.head; r; r = next) {
		next = r->next;
		free(r->detail);
		r->detail = NULL;
		finish(r, SB_ECANCELED);
	}
	os->token_req = NULL;
	if (os->listing)
		list_finish(os, SB_ECANCELED, NULL);
}

static void wake_closed(uv_handle_t *h)
{
	free(h->data);
}

static void oci_free(struct source *src)
{
	struct oci_source *os = src->impl;
	if (!os)
		return;
	os->closing = 1;
	while (os->active.head)
		req_free(os->active.head);
	while (os->auth_wait.head)
		req_free(os->auth_wait.head);
	while (os->done.head)
		req_free(os->done.head);
	for (size_t i = 0; i < os->nfiles; i++)
		while (os->files[i].held.head)
			req_free(os->files[i].held.head);
	reset_listing(os);
	if (os->has_re)
		regfree(&os->re);
	free(os->base);
	free(os->repo);
	free(os->shown);
	free(os->userpwd);
	free(os->token);
	http_multi_free(os->multi);
	uv_close((uv_handle_t *)&os->wake, wake_closed);
	src->impl = NULL;
}

static const struct source_ops oci_ops = {
    .name = "oci",
    .list = oci_list,
    .read = oci_read,
    .pread = NULL,
    .cancel = oci_cancel,
    .free = oci_free,
};

/* Setup. */

static int setup_names(struct source *src, struct oci_source *os)
{
	const struct source_uri *u = &src->uri;
	const char *host = u->registry;
	int plain = oci_host_is_loopback(host) || oci_host_listed(host, os->insecure);
	if (!strcmp(host, DOCKER_HUB) || !strcmp(host, "index." DOCKER_HUB))
		host = DOCKER_HUB_API;
	os->base = xasprintf("%s://%s", plain ? "http" : "https", host);
	if (!strcmp(host, DOCKER_HUB_API) && !strchr(u->repo, '/'))
		os->repo = xasprintf("library/%s", u->repo);
	else
		os->repo = xstrdup(u->repo);
	os->shown = xasprintf("%s/%s", u->registry, u->repo);
	const char *pf = u->platform ? u->platform : DEFAULT_PLATFORM;
	if (oci_platform_parse(pf, &os->want) < 0) {
		source_set_error(src, "%s: platform \"%s\" is not os/arch[/variant]", os->shown,
				 pf);
		return SB_EURI;
	}
	if (u->tag_regex) {
		int rc = regcomp(&os->re, u->tag_regex, REG_EXTENDED | REG_NOSUB);
		if (rc != 0) {
			char why[128];
			regerror(rc, &os->re, why, sizeof why);
			source_set_error(src, "%s: tag regex /%s/: %s", os->shown, u->tag_regex,
					 why);
			return SB_EURI;
		}
		os->has_re = 1;
	}
	return 0;
}

/* user:password, or Docker's base64 of it (the "auth" of config.json). */
static char *credentials(const char *auth)
{
	unsigned char raw[OCI_AUTH_MAX + 1];
	size_t n = 0;
	if (strchr(auth, ':'))
		return xstrdup(auth);
	if (sodium_base642bin(raw, OCI_AUTH_MAX, auth, strlen(auth), "\n\r ", &n, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    !memchr(raw, ':', n) || memchr(raw, '\0', n))
		return NULL;
	return xstrndup((const char *)raw, n);
}

static int setup_credentials(struct source *src, struct oci_source *os)
{
	const char *auth = src->opt.registry_auth;
	if (!auth || !*auth)
		auth = getenv("REGISTRY_AUTH");
	if (!auth || !*auth)
		return 0;
	os->userpwd = strlen(auth) <= OCI_AUTH_MAX ? credentials(auth) : NULL;
	if (!os->userpwd)
		log_warn("%s: registry credentials are neither user:password nor its base64; "
			 "going without",
			 os->shown);
	return 0;
}

int source_oci_new(struct source *src)
{
	if (!src->uri.registry || !src->uri.repo)
		return SB_EURI;
	struct oci_source *os = xcalloc(1, sizeof *os);
	os->src = src;
	os->loop = src->loop;
	os->stall_ms = (uint64_t)src->opt.stall_seconds * 1000;
	os->insecure = src->opt.insecure_registries;
	if (!os->insecure || !*os->insecure)
		os->insecure = getenv("SYNCBIT_INSECURE_REGISTRY");
	int rc = setup_names(src, os);
	if (rc == 0)
		rc = setup_credentials(src, os);
	if (rc == 0)
		rc = http_multi_new(src->loop, &os->multi);
	if (rc < 0) {
		if (os->has_re)
			regfree(&os->re);
		free(os->base);
		free(os->repo);
		free(os->shown);
		free(os->userpwd);
		free(os);
		return rc;
	}
	uv_timer_init(src->loop, &os->wake);
	os->wake.data = os;
	os->rng = (uv_hrtime() ^ (uint64_t)(uintptr_t)os) | 1;
	src->ops = &oci_ops;
	src->impl = os;
	src->max_parallel = src->opt.jobs > 0 ? src->opt.jobs : 1;
	src->sequential = 0;
	return 0;
}
