/* The hub sources' side of struct source_ops (list, read, cancel, free),
 * the listing the kinds build, and small helpers for the kinds. The
 * transfers are in hub_http.c, the digest check in
 * hub_check.c. */
#include "common/source/hub_int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/hash.h"
#include "common/source/filter.h"
#include "common/log.h"

static struct hub_impl *impl_of(struct source *src)
{
	return ((struct hub *)src->impl)->impl;
}

/* Operations. */

static int hub_read(struct source *src, size_t index, uint64_t off, size_t len, void *buf,
		    source_done_cb cb, void *arg)
{
	struct hub_impl *hi = impl_of(src);
	if (!hi->listed || index >= hi->nfiles) {
		source_set_error(src, "%s: read before a listing", hi->pub.name);
		return -EINVAL;
	}
	const struct source_file *f = &src->listing.files[index];
	if (off > f->size || len > f->size - off) {
		source_set_error(src,
				 "%s: %s: bytes %" PRIu64 "+%zu lie past the end (%" PRIu64 ")",
				 hi->pub.name, f->path, off, len, f->size);
		return -EINVAL;
	}
	struct hub_req *r = hub_req_new(hi, REQ_RANGE);
	r->index = index;
	r->base.off = off;
	r->base.len = len;
	r->base.buf = buf;
	r->cb = cb;
	r->arg = arg;
	hub_check_asked(hi, index, off, len);
	if (len == 0) {
		hub_req_finish(r, 0, NULL);
		return 0;
	}
	http_req_start(&r->base);
	return 0;
}

static void hub_cancel(struct source *src)
{
	struct hub_impl *hi = impl_of(src);
	struct http_req *r, *next;
	for (r = hi->http.done.head; r; r = r->next)
		if (hub_req_of(r)->kind != REQ_API)
			http_req_cancel(r);
	for (r = hi->http.active.head; r; r = next) {
		next = r->next;
		if (hub_req_of(r)->kind == REQ_API)
			hub_req_free(hub_req_of(r)); /* its listing is canceled below */
		else
			http_req_cancel(r);
	}
	/* API answers not yet delivered would continue a canceled listing. */
	for (r = hi->http.done.head; r; r = next) {
		next = r->next;
		if (hub_req_of(r)->kind == REQ_API)
			hub_req_free(hub_req_of(r));
	}
	if (hi->listing && hi->listing->base.state != HTTP_REQ_DONE)
		hub_req_finish(hi->listing, SB_ECANCELED, NULL);
	hub_check_cancel(hi);
}

static void pending_close(struct hub_impl *hi)
{
	for (size_t i = 0; i < hi->npend; i++) {
		free(hi->pend[i].f.path);
		free(hi->pend[i].f.digest);
		free(hi->pend[i].x.url);
		free(hi->pend[i].x.etag);
	}
	free(hi->pend);
	hi->pend = NULL;
	hi->npend = hi->cappend = 0;
}

static void files_close(struct hub_impl *hi)
{
	hub_check_close(hi);
	for (size_t i = 0; i < hi->nfiles; i++) {
		free(hi->files[i].url);
		free(hi->files[i].etag);
	}
	free(hi->files);
	hi->files = NULL;
	hi->nfiles = 0;
	hi->listed = 0;
}

static int hub_list(struct source *src, source_done_cb cb, void *arg)
{
	struct hub_impl *hi = impl_of(src);
	if (hi->listing)
		return -EBUSY;
	if (hub_check_busy(hi))
		return -EBUSY;
	files_close(hi);
	pending_close(hi);
	source_listing_close(&src->listing);
	struct hub_req *r = hub_req_new(hi, REQ_LIST);
	r->cb = cb;
	r->arg = arg;
	r->base.state = HTTP_REQ_RUNNING;
	http_req_push(&hi->http.active, &r->base);
	hi->listing = r;
	int rc = hi->pub.ops->list(&hi->pub);
	if (rc < 0) {
		hi->listing = NULL;
		hub_req_free(r);
	}
	return rc;
}

static void hub_free(struct source *src)
{
	if (!src->impl)
		return;
	struct hub_impl *hi = impl_of(src);
	hi->http.closing = 1;
	if (hi->pub.ops->free)
		hi->pub.ops->free(&hi->pub);
	files_close(hi);
	pending_close(hi);
	free(hi->pub.endpoint);
	free(hi->pub.auth);
	hub_http_close(hi);
	src->impl = NULL;
}

static const struct source_ops hub_source_ops = {
    .name = "hub",
    .list = hub_list,
    .read = hub_read,
    .pread = NULL,
    .cancel = hub_cancel,
    .free = hub_free,
};

int hub_init(struct source *src, const struct hub_ops *ops, const char *endpoint,
	     const char *auth_header, void *kind, struct hub **out)
{
	struct hub_impl *hi = xcalloc(1, sizeof *hi);
	int rc = hub_http_init(hi, src);
	if (rc < 0) {
		free(hi);
		return rc;
	}
	struct hub *h = &hi->pub;
	h->src = src;
	h->ops = ops;
	h->impl = hi;
	h->kind = kind;
	h->name = src->uri.canonical;
	size_t n = strlen(endpoint);
	while (n > 0 && endpoint[n - 1] == '/')
		n--;
	h->endpoint = xstrndup(endpoint, n);
	h->auth = auth_header ? xstrdup(auth_header) : NULL;
	h->has_token = auth_header != NULL;
	src->ops = &hub_source_ops;
	src->impl = h;
	src->max_parallel = src->opt.jobs > 0 ? src->opt.jobs : 1;
	src->sequential = 0;
	*out = h;
	return 0;
}

/* Building the listing. */

void hub_add_file(struct hub *h, const char *path, uint64_t size, int64_t mtime_ns,
		  const char *digest, const char *url, const char *etag, enum hub_check check,
		  const uint8_t *want)
{
	struct hub_impl *hi = h->impl;
	if (hi->npend == hi->cappend) {
		hi->cappend = hi->cappend ? 2 * hi->cappend : 64;
		hi->pend = xrealloc(hi->pend, hi->cappend * sizeof *hi->pend);
	}
	struct hub_pending_file *p = &hi->pend[hi->npend++];
	memset(p, 0, sizeof *p);
	p->f.path = xstrdup(path);
	p->f.type = SRC_REGULAR;
	p->f.size = size;
	p->f.mode = 0644;
	p->f.mtime_ns = mtime_ns;
	p->f.digest = digest ? xstrdup(digest) : NULL;
	p->x.url = xstrdup(url);
	p->x.etag = etag ? xstrdup(etag) : NULL;
	p->x.check = check;
	if (check != HUB_CHECK_NONE)
		memcpy(p->x.want, want, hub_check_len(check));
}

static int cmp_pending(const void *a, const void *b)
{
	return strcmp(((const struct hub_pending_file *)a)->f.path,
		      ((const struct hub_pending_file *)b)->f.path);
}

/* Drop what --include/--exclude leave out here, where each file's URL
 * still travels with it (source_list would find nothing more to drop). */
static void pending_filter(struct hub_impl *hi, const struct filter *f)
{
	size_t j = 0;
	if (!f || !f->n)
		return;
	for (size_t i = 0; i < hi->npend; i++) {
		struct hub_pending_file *p = &hi->pend[i];
		if (filter_excludes(f, p->f.path, 0)) {
			free(p->f.path);
			free(p->f.digest);
			free(p->x.url);
			free(p->x.etag);
			continue;
		}
		hi->pend[j++] = *p;
	}
	hi->npend = j;
}

void hub_list_done(struct hub *h, const char *version)
{
	struct hub_impl *hi = h->impl;
	struct source *src = h->src;
	if (!hi->listing)
		return;
	pending_filter(hi, src->opt.filter);
	if (hi->npend) /* an empty repository has no array to sort */
		qsort(hi->pend, hi->npend, sizeof *hi->pend, cmp_pending);
	for (size_t i = 0; i < hi->npend; i++) {
		const struct hub_pending_file *p = &hi->pend[i];
		if (i > 0 && strcmp(hi->pend[i - 1].f.path, p->f.path) == 0) {
			hub_list_fail(h, SB_EPROTO, "%s: the hub lists %s twice", h->name,
				      p->f.path);
			return;
		}
		if (p->f.size == 0 && p->x.check != HUB_CHECK_NONE && !hub_check_empty(&p->x)) {
			hub_list_fail(h, SB_ECORRUPT, "%s: %s is empty but its %s says otherwise",
				      h->name, p->f.path, hub_check_name(p->x.check));
			return;
		}
	}
	source_listing_close(&src->listing);
	src->listing.nfiles = hi->npend;
	src->listing.files = xcalloc(hi->npend + 1, sizeof *src->listing.files);
	hi->files = xcalloc(hi->npend + 1, sizeof *hi->files);
	hi->checks = xcalloc(hi->npend + 1, sizeof *hi->checks);
	hi->nfiles = hi->npend;
	for (size_t i = 0; i < hi->npend; i++) {
		src->listing.files[i] = hi->pend[i].f;
		hi->files[i] = hi->pend[i].x;
	}
	free(hi->pend);
	hi->pend = NULL;
	hi->npend = hi->cappend = 0;
	src->listing.version = version ? xstrdup(version) : NULL;
	hi->listed = 1;
	hub_req_finish(hi->listing, 0, NULL);
}

void hub_list_fail(struct hub *h, int code, const char *fmt, ...)
{
	struct hub_impl *hi = h->impl;
	if (!hi->listing)
		return;
	struct buf b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	free(hi->listing->base.detail);
	hi->listing->base.detail = buf_steal(&b);
	pending_close(hi);
	hub_req_finish(hi->listing, code, NULL);
}

void hub_list_fail_reply(struct hub *h, int status, const struct hub_reply *rep)
{
	const char *msg = rep->message[0] ? rep->message : NULL;
	if (status == SB_EDENIED || rep->status == 401 || rep->status == 403) {
		if (h->has_token)
			hub_list_fail(
			    h, SB_EDENIED,
			    "%s: access denied: the %s given has no access (HTTP %ld%s%s)", h->name,
			    h->ops->token_env, rep->status, msg ? ": " : "", msg ? msg : "");
		else
			hub_list_fail(h, SB_EDENIED,
				      "%s: access denied: set %s (gated or private repository)",
				      h->name, h->ops->token_env);
		return;
	}
	if (status == SB_ENOTFOUND) {
		hub_list_fail(h, SB_ENOTFOUND, "%s: not found (HTTP %ld%s%s)", h->name, rep->status,
			      msg ? ": " : "", msg ? msg : "");
		return;
	}
	if (status == SB_EPROTO)
		hub_list_fail(h, status, "%s: GET %s: malformed answer: %s", h->name,
			      rep->shown_url, msg ? msg : "not what the API documents");
	else if (rep->status)
		hub_list_fail(h, status, "%s: GET %s: HTTP %ld%s%s", h->name, rep->shown_url,
			      rep->status, msg ? ": " : "", msg ? msg : "");
	else
		hub_list_fail(h, status, "%s: GET %s: %s", h->name, rep->shown_url,
			      msg ? msg : sb_strerror(status));
}

/* Helpers. */

void hub_quote(struct buf *b, const char *s, const char *safe, int plus)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (isalnum(*p) || strchr("-._~", *p) || (*p && strchr(safe, *p)))
			buf_append(b, p, 1);
		else if (plus && *p == ' ')
			buf_append(b, "+", 1);
		else
			buf_printf(b, "%%%02X", *p);
	}
}

int hub_is_hex(const char *s, size_t n)
{
	if (!s || strlen(s) != n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
			return 0;
	return 1;
}

void hub_hex_decode(const char *s, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n / 2; i++)
		out[i] = (uint8_t)(hash_hexval(s[2 * i]) * 16 + hash_hexval(s[2 * i + 1]));
}

static char *origin_of(const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *out = NULL;
	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
		out = xasprintf("%s://%s:%s", scheme, host, port);
		for (char *c = out; *c; c++)
			*c = (char)tolower((unsigned char)*c);
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return out;
}

int hub_same_origin(const struct hub *h, const char *url)
{
	char *a = origin_of(h->endpoint), *b = origin_of(url);
	int same = a && b && strcmp(a, b) == 0;
	free(a);
	free(b);
	return same;
}

const char *hub_getenv(const char *const *names)
{
	for (; *names; names++) {
		const char *v = getenv(*names);
		if (v && *v)
			return v;
	}
	return NULL;
}

/* Read once when the source is made, before any transfer: a small local
 * file, like the environment. */
char *hub_read_token_file(const char *path)
{
	char buf[HUB_TOKEN_MAX + 1];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	ssize_t n = read(fd, buf, sizeof buf);
	close(fd);
	if (n <= 0 || n > HUB_TOKEN_MAX)
		return NULL;
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		n--;
	buf[n] = '\0';
	for (ssize_t i = 0; i < n; i++)
		if ((unsigned char)buf[i] < 0x21 || buf[i] == 0x7f)
			return NULL; /* not a token: would break the header line */
	return n ? xstrdup(buf) : NULL;
}
