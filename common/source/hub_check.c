/* The whole-file digest check of the hub sources (see hub.h): the
 * SHA-256 of the content, or git's blob id (SHA-1 of "blob <size>\0" and the
 * content), computed on the libuv pool as a file's bytes arrive in order.
 * A read whose bytes land before the bytes ahead of them waits on the
 * file's held list, sorted by offset, so the digest sees the file in order
 * without a copy; one job per file hashes the run of held reads that
 * continues the hashed prefix, then their callbacks run. */
#include "common/source/hub_int.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"

enum check_state {
	CHECK_ACTIVE, /* hashing as the bytes come */
	CHECK_OFF,    /* the reads skip bytes: not checked here */
	CHECK_OK,
	CHECK_BAD,
};

struct hub_check_state {
	enum check_state state;
	EVP_MD_CTX *ctx;
	uint64_t hashed; /* bytes [0, hashed) are in ctx */
	uint64_t asked;	 /* reads asked for cover [0, asked) */
	struct http_req_list held;
	struct http_req_list batch; /* being hashed on the pool */
	uv_work_t work;
	size_t index;
	struct hub_impl *hi;
};

size_t hub_check_len(enum hub_check c)
{
	return c == HUB_CHECK_SHA256 ? 32 : 20;
}

const char *hub_check_name(enum hub_check c)
{
	return c == HUB_CHECK_SHA256 ? "SHA-256" : "git blob id";
}

static void hex_encode(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static void digest_start(EVP_MD_CTX *ctx, enum hub_check c, uint64_t size)
{
	if (!EVP_DigestInit_ex(ctx, c == HUB_CHECK_SHA256 ? EVP_sha256() : EVP_sha1(), NULL))
		fatal("EVP_DigestInit_ex failed");
	if (c == HUB_CHECK_GIT_BLOB) {
		char head[40];
		int n = snprintf(head, sizeof head, "blob %" PRIu64, size);
		EVP_DigestUpdate(ctx, head, (size_t)n + 1); /* with its NUL */
	}
}

/* 1 when the digest in ctx is the one the hub lists; got gets its hex. */
static int digest_matches(EVP_MD_CTX *ctx, const struct hub_file *x, char *got)
{
	uint8_t d[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	EVP_DigestFinal_ex(ctx, d, &n);
	hex_encode(d, n, got);
	return n == hub_check_len(x->check) && memcmp(d, x->want, n) == 0;
}

int hub_check_empty(const struct hub_file *x)
{
	char got[2 * EVP_MAX_MD_SIZE + 1];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		fatal("out of memory");
	digest_start(ctx, x->check, 0);
	int ok = digest_matches(ctx, x, got);
	EVP_MD_CTX_free(ctx);
	return ok;
}

/* The check of file index, made at its first read; NULL when the listing
 * gives no digest to check. */
static struct hub_check_state *check_get(struct hub_impl *hi, size_t index)
{
	const struct hub_file *x = &hi->files[index];
	if (x->check == HUB_CHECK_NONE)
		return NULL;
	if (!hi->checks[index]) {
		struct hub_check_state *c = xcalloc(1, sizeof *c);
		c->hi = hi;
		c->index = index;
		c->ctx = EVP_MD_CTX_new();
		if (!c->ctx)
			fatal("out of memory");
		digest_start(c->ctx, x->check, hi->pub.src->listing.files[index].size);
		hi->checks[index] = c;
	}
	return hi->checks[index];
}

static void held_insert(struct http_req_list *l, struct http_req *r)
{
	struct http_req *at = l->head;
	while (at && at->off <= r->off)
		at = at->next;
	if (!at) {
		http_req_push(l, r);
		return;
	}
	r->on = l;
	r->next = at;
	r->prev = at->prev;
	if (at->prev)
		at->prev->next = r;
	else
		l->head = r;
	at->prev = r;
}

/* Finish every held read of c with status (and detail when it fails). */
static void release(struct hub_check_state *c, int status, const char *detail)
{
	while (c->held.head)
		hub_req_finish(hub_req_of(c->held.head), status, detail);
}

/* Give up checking this file; what waits goes on unchecked. */
static void check_off(struct hub_check_state *c, const char *why)
{
	if (c->state != CHECK_ACTIVE)
		return;
	c->state = CHECK_OFF;
	log_info("%s: %s: whole-file digest not checked here (%s)", c->hi->pub.name,
		 c->hi->pub.src->listing.files[c->index].path, why);
	release(c, 0, NULL);
}

static void hash_work(uv_work_t *w)
{
	struct hub_check_state *c = w->data;
	for (struct http_req *r = c->batch.head; r; r = r->next) {
		uint64_t end = r->off + r->len;
		if (end <= c->hashed)
			continue; /* a re-read of bytes already hashed */
		size_t skip = (size_t)(c->hashed - r->off);
		EVP_DigestUpdate(c->ctx, r->buf + skip, r->len - skip);
		c->hashed = end;
	}
}

static void pump(struct hub_check_state *c);

/* The file is whole: its verdict, as a message when it is wrong. */
static char *verdict(struct hub_check_state *c)
{
	struct hub_impl *hi = c->hi;
	const struct hub_file *x = &hi->files[c->index];
	char got[2 * EVP_MAX_MD_SIZE + 1], want[2 * HUB_DIGEST_MAX + 1];
	if (digest_matches(c->ctx, x, got)) {
		c->state = CHECK_OK;
		return NULL;
	}
	c->state = CHECK_BAD;
	hex_encode(x->want, hub_check_len(x->check), want);
	return xasprintf("%s: %s: %s of the download is %s, the hub lists %s", hi->pub.name,
			 hi->pub.src->listing.files[c->index].path, hub_check_name(x->check), got,
			 want);
}

static void hash_done(uv_work_t *w, int status)
{
	struct hub_check_state *c = w->data;
	struct hub_impl *hi = c->hi;
	hi->works--;
	if (hi->http.closing) { /* the source went away: only memory is left */
		if (hi->works == 0 && !hi->wake_open)
			free(hi);
		return;
	}
	char *why = NULL;
	if (c->state == CHECK_ACTIVE && c->hashed == hi->pub.src->listing.files[c->index].size)
		why = verdict(c);
	struct hub_req *r;
	while (c->batch.head) {
		r = hub_req_of(c->batch.head);
		if (r->canceled)
			hub_req_finish(r, SB_ECANCELED, NULL);
		else
			hub_req_finish(r, why ? SB_ECORRUPT : 0, why);
	}
	if (c->state == CHECK_BAD)
		release(c, SB_ECORRUPT, why);
	else
		pump(c);
	free(why);
}

/* Hash the held reads that continue the hashed prefix, on the pool. */
static void pump(struct hub_check_state *c)
{
	struct hub_impl *hi = c->hi;
	if (c->batch.head || c->state != CHECK_ACTIVE)
		return;
	uint64_t reach = c->hashed;
	struct http_req *r;
	while ((r = c->held.head) && r->off <= reach) {
		http_req_unlink(r);
		http_req_push(&c->batch, r);
		if (r->off + r->len > reach)
			reach = r->off + r->len;
	}
	if (!c->batch.head)
		return;
	c->work.data = c;
	hi->works++;
	int rc = uv_queue_work(hi->http.loop, &c->work, hash_work, hash_done);
	if (rc < 0)
		fatal("uv_queue_work: %s", uv_strerror(rc));
}

void hub_check_asked(struct hub_impl *hi, size_t index, uint64_t off, size_t len)
{
	struct hub_check_state *c = check_get(hi, index);
	if (!c || c->state != CHECK_ACTIVE)
		return;
	if (off > c->asked)
		check_off(c, "the reads skip bytes");
	else if (off + len > c->asked)
		c->asked = off + len;
}

void hub_check_landed(struct hub_req *r)
{
	struct hub_check_state *c = r->hi->checks[r->index];
	if (!c || c->state == CHECK_OFF || c->state == CHECK_OK) {
		hub_req_finish(r, 0, NULL);
		return;
	}
	if (c->state == CHECK_BAD) {
		hub_req_finish(r, SB_ECORRUPT, NULL);
		return;
	}
	http_req_unlink(&r->base);
	r->base.state = HTTP_REQ_PARKED;
	held_insert(&c->held, &r->base);
	pump(c);
}

void hub_check_failed(struct hub_impl *hi, size_t index)
{
	if (hi->checks && hi->checks[index])
		check_off(hi->checks[index], "a read failed");
}

void hub_check_cancel(struct hub_impl *hi)
{
	for (size_t i = 0; i < hi->nfiles; i++) {
		struct hub_check_state *c = hi->checks[i];
		if (!c)
			continue;
		for (struct http_req *r = c->batch.head; r; r = r->next)
			hub_req_of(r)->canceled = 1;
		release(c, SB_ECANCELED, NULL);
	}
}

int hub_check_busy(const struct hub_impl *hi)
{
	for (size_t i = 0; i < hi->nfiles; i++)
		if (hi->checks[i] && (hi->checks[i]->batch.head || hi->checks[i]->held.head))
			return 1;
	return 0;
}

void hub_check_close(struct hub_impl *hi)
{
	for (size_t i = 0; i < hi->nfiles; i++) {
		struct hub_check_state *c = hi->checks[i];
		if (!c)
			continue;
		while (c->held.head)
			hub_req_free(hub_req_of(c->held.head));
		/* A running job still reads c and the read buffers. Callers
		 * free a source only once nothing is in flight, so none should
		 * run; should one, c is left to it rather than freed under it. */
		if (c->batch.head)
			continue;
		EVP_MD_CTX_free(c->ctx);
		free(c);
	}
	free(hi->checks);
	hi->checks = NULL;
}
