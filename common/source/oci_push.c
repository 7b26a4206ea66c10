#include "common/source/oci_push.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"

struct oci_push {
	uv_loop_t *loop;
	struct oci_client *reg;
	char *base, *repo;
	uint64_t chunk;
	int restarts;
	int canceled;
	void (*sent)(void *arg, uint64_t n);
	void *sent_arg;
};

/* Pure helpers. */

char *oci_push_resolve(const char *base, const char *location)
{
	CURLU *u = curl_url();
	char *s = NULL, *scheme = NULL, *out = NULL;
	if (!u)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_URL, location, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    (!strcmp(scheme, "http") || !strcmp(scheme, "https")) &&
	    curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
		out = xstrdup(s);
	/* libcurl spells some hosts one way when it resolves a Location and
	 * another when it parses the result ("https:/7%348" gives host 748,
	 * read again as 0.0.2.236): parsed again until the spelling holds, so
	 * the session URL is the one each later request resolves to. One
	 * that does not settle is refused. */
	for (int round = 0; out && round < 3; round++) {
		curl_free(s);
		s = NULL;
		if (curl_url_set(u, CURLUPART_URL, out, 0) != CURLUE_OK ||
		    curl_url_get(u, CURLUPART_URL, &s, 0) != CURLUE_OK) {
			free(out);
			out = NULL;
		} else if (!strcmp(s, out)) {
			break;
		} else {
			free(out);
			out = round < 2 ? xstrdup(s) : NULL;
		}
	}
	curl_free(scheme);
	curl_free(s);
	curl_url_cleanup(u);
	return out;
}

/* "scheme://host:port" of url (the port made explicit), or NULL. */
static char *origin_of(const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *out = NULL;
	if (!u)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK)
		out = xasprintf("%s://%s:%s", scheme, host, port);
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return out;
}

int oci_push_same_origin(const char *a, const char *b)
{
	char *x = origin_of(a), *y = origin_of(b);
	int same = x && y && !strcasecmp(x, y);
	free(x);
	free(y);
	return same;
}

char *oci_push_with_digest(const char *url, const char *digest)
{
	const char *q = strchr(url, '?');
	char sep = !q ? '?' : q[1] && url[strlen(url) - 1] != '&' ? '&' : '\0';
	if (sep)
		return xasprintf("%s%cdigest=%s", url, sep, digest);
	return xasprintf("%sdigest=%s", url, digest);
}

int oci_push_range_last(const char *range, uint64_t *last)
{
	const char *p = range;
	char *end;
	if (!strncasecmp(p, "bytes=", 6))
		p += 6;
	if (*p < '0' || *p > '9')
		return -1;
	errno = 0;
	unsigned long long first = strtoull(p, &end, 10);
	if (errno || *end != '-' || first != 0 || end[1] < '0' || end[1] > '9')
		return -1;
	unsigned long long l = strtoull(end + 1, &end, 10);
	if (errno || *end)
		return -1;
	*last = l;
	return 0;
}

void oci_push_content_range(char *out, size_t cap, uint64_t off, uint64_t len)
{
	snprintf(out, cap, "%" PRIu64 "-%" PRIu64, off, off + len - 1);
}

/* The body of an upload: a span of a file read ahead through the pool,
 * one buffer handed to curl while the next is read. A new attempt
 * rewinds; a read still in flight from before is dropped when it lands
 * (its generation is stale). The reader outlives its blob until its reads
 * are back, then closes the file. */

struct chunk {
	uv_fs_t fs;
	struct push_reader *rd;
	unsigned gen;
	size_t len;
	char data[PUSH_READ_BUF];
};

struct push_reader {
	uv_loop_t *loop;
	uv_file fd;
	int ops; /* reads in flight, current or stale */
	int closing;
	unsigned gen;
	uint64_t start, len; /* the span of the file the body is */
	uint64_t next;	     /* the next byte of the span to read */
	uint64_t given;	     /* bytes handed to curl */
	struct chunk *cur, *ready;
	size_t pos;		    /* in cur */
	int reading;		    /* a read of this generation is in flight */
	int waiting;		    /* curl paused for want of bytes */
	int error;		    /* a failed read, or SB_ECHANGED for a short file */
	struct oci_client_req *req; /* the request the body belongs to */
	struct push_blob *b;
	uv_fs_t close_req;
};

static void reader_closed(uv_fs_t *req)
{
	uv_fs_req_cleanup(req);
	free(req->data);
}

static void reader_release(struct push_reader *rd)
{
	free(rd->cur);
	free(rd->ready);
	rd->cur = rd->ready = NULL;
	if (rd->ops)
		return; /* the last read back releases it */
	rd->close_req.data = rd;
	if (rd->fd < 0 || uv_fs_close(rd->loop, &rd->close_req, rd->fd, reader_closed) < 0)
		free(rd);
}

static void reader_close(struct push_reader *rd)
{
	if (!rd)
		return;
	rd->closing = 1;
	reader_release(rd);
}

static void reader_fill(struct push_reader *rd);

static void chunk_read(uv_fs_t *fs)
{
	struct chunk *ch = fs->data;
	struct push_reader *rd = ch->rd;
	ssize_t n = fs->result;
	uv_fs_req_cleanup(fs);
	rd->ops--;
	if (rd->closing || ch->gen != rd->gen) {
		free(ch);
		if (rd->closing && !rd->ops)
			reader_release(rd);
		return;
	}
	rd->reading = 0;
	if (n <= 0) {
		rd->error = n < 0 ? (int)n : SB_ECHANGED;
		free(ch);
	} else {
		ch->len = (size_t)n;
		rd->next += (uint64_t)n;
		rd->ready = ch;
	}
	if (rd->waiting && rd->req) {
		rd->waiting = 0;
		oci_client_req_resume(rd->req);
	}
	reader_fill(rd);
}

/* Read ahead: one buffer ready, one in flight at most. */
static void reader_fill(struct push_reader *rd)
{
	if (rd->reading || rd->ready || rd->error || rd->closing || rd->next >= rd->len)
		return;
	struct chunk *ch = xmalloc(sizeof *ch);
	uint64_t left = rd->len - rd->next;
	uv_buf_t b = uv_buf_init(ch->data, left < PUSH_READ_BUF ? (unsigned)left : PUSH_READ_BUF);
	ch->rd = rd;
	ch->gen = rd->gen;
	ch->fs.data = ch;
	int rc = uv_fs_read(rd->loop, &ch->fs, rd->fd, &b, 1, (int64_t)(rd->start + rd->next),
			    chunk_read);
	if (rc < 0) {
		free(ch);
		rd->error = rc;
		return;
	}
	rd->reading = 1;
	rd->ops++;
}

static void reader_rewind(void *arg)
{
	struct push_reader *rd = arg;
	rd->gen++;
	free(rd->cur);
	free(rd->ready);
	rd->cur = rd->ready = NULL;
	rd->reading = rd->waiting = rd->error = 0;
	rd->next = rd->given = 0;
	reader_fill(rd);
}

static size_t reader_read(void *arg, char *buf, size_t n)
{
	struct push_reader *rd = arg;
	if (rd->error)
		return CURL_READFUNC_ABORT;
	if (rd->given >= rd->len)
		return 0;
	if (!rd->cur) {
		if (!rd->ready) {
			reader_fill(rd);
			rd->waiting = 1;
			return CURL_READFUNC_PAUSE;
		}
		rd->cur = rd->ready;
		rd->ready = NULL;
		rd->pos = 0;
		reader_fill(rd);
	}
	size_t k = rd->cur->len - rd->pos;
	if (k > n)
		k = n;
	memcpy(buf, rd->cur->data + rd->pos, k);
	rd->pos += k;
	rd->given += k;
	if (rd->pos == rd->cur->len) {
		free(rd->cur);
		rd->cur = NULL;
		reader_fill(rd);
	}
	struct oci_push *p = rd->b->p;
	rd->b->sent += k;
	if (p->sent)
		p->sent(p->sent_arg, k);
	return k;
}

/* Blobs. */

static void blob_post(struct push_blob *b, int mount);

static void blob_finish(struct push_blob *b, int status, enum push_blob_how how)
{
	b->status = status;
	b->how = how;
	reader_close(b->reader);
	b->reader = NULL;
	free(b->session);
	b->session = NULL;
	b->cb(b);
}

static void blob_fail(struct push_blob *b, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void blob_fail(struct push_blob *b, int status, const char *fmt, ...)
{
	struct buf m = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&m, fmt, ap);
	va_end(ap);
	free(b->detail);
	b->detail = buf_steal(&m);
	blob_finish(b, status, PUSH_BLOB_UPLOADED);
}

/* A request of b failed: b fails with its line. */
static void blob_fail_req(struct push_blob *b, struct oci_client_req *r)
{
	blob_fail(b, r->status, "%s", r->detail ? r->detail : sb_strerror(r->status));
}

static char *blob_url(struct push_blob *b, const char *tail)
{
	return xasprintf("%s/v2/%s/blobs/%s", b->p->base, b->p->repo, tail);
}

/* A failed upload step worth a new session: the registry lost or refused
 * the session's state (404, 416), or the network or server failed. */
static int worth_restart(const struct oci_client_req *r)
{
	long st = r->http_status;
	if (r->status == SB_ECANCELED || r->status == SB_EAUTH || r->status == SB_EDENIED)
		return 0;
	return st == 0 || st == 404 || st == 408 || st == 416 || st == 429 || st >= 500;
}

static void upload_failed(struct push_blob *b, struct oci_client_req *r)
{
	const char *file_error =
	    b->reader && b->reader->error ? sb_strerror(b->reader->error) : NULL;
	if (file_error) {
		blob_fail(b, b->reader->error, "%s: reading %s: %s", b->digest, b->path,
			  file_error);
	} else if (worth_restart(r) && b->restarts < b->p->restarts && !b->p->canceled) {
		b->restarts++;
		log_info("%s/%s: upload of %s: %s; starting over (%d of %d)", b->p->base,
			 b->p->repo, b->digest, r->detail ? r->detail : sb_strerror(r->status),
			 b->restarts, b->p->restarts);
		blob_post(b, 0);
	} else {
		blob_fail_req(b, r);
	}
}

static void upload_next(struct push_blob *b);

static void blob_call(struct push_blob *b, const char *method, char *url, const char *range,
		      oci_client_done_cb cb)
{
	struct oci_client_call c = {
	    .method = method,
	    .content_type = PUSH_BLOB_TYPE,
	    .content_range = range,
	    .body = b->span ? &b->body : NULL,
	    .once = 1,
	    .anonymous = !oci_push_same_origin(b->p->base, url),
	};
	b->body.len = b->span;
	if (b->reader) {
		b->reader->start = b->off;
		b->reader->len = b->span;
	}
	struct oci_client_req *r = oci_client_call(b->p->reg, url, &c, cb, b);
	if (b->reader)
		b->reader->req = r;
}

static void on_put(struct oci_client_req *r)
{
	struct push_blob *b = r->arg;
	if (b->reader)
		b->reader->req = NULL;
	if (r->status < 0) {
		upload_failed(b, r);
	} else if (r->http_status != 201 && r->http_status != 204) {
		blob_fail(b, SB_EPROTO, "PUT of blob %s: HTTP %ld, not 201", b->digest,
			  r->http_status);
	} else if (r->docker_digest[0] && strcmp(r->docker_digest, b->digest)) {
		blob_fail(b, SB_ECORRUPT, "%s/%s: blob %s was stored as %s", b->p->base, b->p->repo,
			  b->digest, r->docker_digest);
	} else {
		blob_finish(b, 0, PUSH_BLOB_UPLOADED);
	}
	oci_client_req_free(r);
}

/* The Range a PATCH answer carries must end where the chunk did; the next
 * chunk goes to its Location. */
static void on_patch(struct oci_client_req *r)
{
	struct push_blob *b = r->arg;
	uint64_t last;
	if (b->reader)
		b->reader->req = NULL;
	if (r->status < 0) {
		upload_failed(b, r);
		oci_client_req_free(r);
		return;
	}
	if (r->range[0] &&
	    (oci_push_range_last(r->range, &last) < 0 || last != b->off + b->span - 1)) {
		blob_fail(b, SB_EPROTO,
			  "PATCH of blob %s: the registry holds bytes %s, not 0-%" PRIu64,
			  b->digest, r->range, b->off + b->span - 1);
		oci_client_req_free(r);
		return;
	}
	if (r->location) {
		char *next = oci_push_resolve(b->session, r->location);
		if (!next) {
			blob_fail(b, SB_EPROTO, "PATCH of blob %s: unusable Location %s", b->digest,
				  r->location);
			oci_client_req_free(r);
			return;
		}
		free(b->session);
		b->session = next;
	}
	b->off += b->span;
	oci_client_req_free(r);
	upload_next(b);
}

/* The whole blob in one PUT, or the next PATCH chunk, or the closing PUT. */
static void upload_next(struct push_blob *b)
{
	if (b->p->canceled) {
		blob_fail(b, SB_ECANCELED, "canceled");
		return;
	}
	if (b->size <= b->p->chunk) {
		b->off = 0;
		b->span = b->size;
		blob_call(b, "PUT", oci_push_with_digest(b->session, b->digest), NULL, on_put);
	} else if (b->off < b->size) {
		uint64_t left = b->size - b->off;
		b->span = left < b->p->chunk ? left : b->p->chunk;
		oci_push_content_range(b->range, sizeof b->range, b->off, b->span);
		blob_call(b, "PATCH", xstrdup(b->session), b->range, on_patch);
	} else {
		b->span = 0;
		blob_call(b, "PUT", oci_push_with_digest(b->session, b->digest), NULL, on_put);
	}
}

static void on_open(uv_fs_t *fs)
{
	struct push_blob *b = fs->data;
	ssize_t fd = fs->result;
	uv_fs_req_cleanup(fs);
	free(fs);
	if (fd < 0) {
		blob_fail(b, (int)fd, "%s: cannot open %s: %s", b->digest, b->path,
			  sb_strerror((int)fd));
		return;
	}
	struct push_reader *rd = xcalloc(1, sizeof *rd);
	rd->loop = b->p->loop;
	rd->fd = (uv_file)fd;
	rd->b = b;
	b->reader = rd;
	b->body = (struct oci_client_body){.read = reader_read, .rewind = reader_rewind, .arg = rd};
	upload_next(b);
}

/* The session is open: the file too, then the bytes. */
static void upload_start(struct push_blob *b)
{
	b->off = 0;
	if (b->reader || b->size == 0) {
		upload_next(b);
		return;
	}
	uv_fs_t *fs = xcalloc(1, sizeof *fs);
	fs->data = b;
	int rc = uv_fs_open(b->p->loop, fs, b->path, O_RDONLY | O_CLOEXEC, 0, on_open);
	if (rc < 0) {
		free(fs);
		blob_fail(b, rc, "%s: cannot open %s: %s", b->digest, b->path, sb_strerror(rc));
	}
}

static void on_post(struct oci_client_req *r)
{
	struct push_blob *b = r->arg;
	int mount = strstr(r->url, "?mount=") != NULL;
	if (r->status < 0) {
		blob_fail_req(b, r);
	} else if (r->http_status == 201 && mount) {
		blob_finish(b, 0, PUSH_BLOB_MOUNTED);
	} else if (r->http_status != 202 || !r->location) {
		blob_fail(b, SB_EPROTO, "POST %s/v2/%s/blobs/uploads/: HTTP %ld%s", b->p->base,
			  b->p->repo, r->http_status, r->location ? "" : " without a Location");
	} else if (!(b->session = oci_push_resolve(r->url, r->location))) {
		blob_fail(b, SB_EPROTO, "POST %s/v2/%s/blobs/uploads/: unusable Location %s",
			  b->p->base, b->p->repo, r->location);
	} else {
		if (mount)
			log_info("%s/%s: %s not mounted from %s; uploading it", b->p->base,
				 b->p->repo, b->digest, b->mount_from);
		upload_start(b);
	}
	oci_client_req_free(r);
}

static void blob_post(struct push_blob *b, int mount)
{
	struct oci_client_call c = {.method = "POST"};
	char *url = mount ? xasprintf("%s/v2/%s/blobs/uploads/?mount=%s&from=%s", b->p->base,
				      b->p->repo, b->digest, b->mount_from)
			  : blob_url(b, "uploads/");
	free(b->session);
	b->session = NULL;
	b->span = 0;
	oci_client_call(b->p->reg, url, &c, on_post, b);
}

static void on_head(struct oci_client_req *r)
{
	struct push_blob *b = r->arg;
	if (r->status == 0 && r->length >= 0 && (uint64_t)r->length != b->size)
		blob_fail(b, SB_ECORRUPT,
			  "%s/%s: the registry holds %s with %" PRId64 " bytes, not %" PRIu64,
			  b->p->base, b->p->repo, b->digest, r->length, b->size);
	else if (r->status == 0)
		blob_finish(b, 0, PUSH_BLOB_PRESENT);
	else if (r->status == SB_ENOTFOUND)
		blob_post(b, b->mount_from != NULL);
	else
		blob_fail_req(b, r);
	oci_client_req_free(r);
}

void oci_push_blob(struct oci_push *p, struct push_blob *b, push_blob_cb cb)
{
	struct oci_client_call c = {.method = "HEAD"};
	b->p = p;
	b->cb = cb;
	b->status = 0;
	b->sent = 0;
	b->restarts = 0;
	oci_client_call(p->reg, blob_url(b, b->digest), &c, on_head, b);
}

void oci_push_blob_close(struct push_blob *b)
{
	free(b->detail);
	b->detail = NULL;
}

/* Manifests. */

static void manifest_done(struct push_manifest *m, struct oci_client_req *r, int status)
{
	m->status = status;
	if (status < 0 && !m->detail)
		m->detail = xstrdup(r && r->detail ? r->detail : sb_strerror(status));
	oci_client_req_free(r);
	m->cb(m);
}

static void on_manifest_head(struct oci_client_req *r)
{
	struct push_manifest *m = r->arg;
	m->remote[0] = '\0';
	if (r->status == SB_ENOTFOUND) {
		manifest_done(m, r, 0);
		return;
	}
	if (r->status == 0)
		snprintf(m->remote, sizeof m->remote, "%s", r->docker_digest);
	manifest_done(m, r, r->status);
}

static char *manifest_url(struct oci_push *p, const char *ref)
{
	return xasprintf("%s/v2/%s/manifests/%s", p->base, p->repo, ref);
}

void oci_push_manifest_head(struct oci_push *p, struct push_manifest *m, push_manifest_cb cb)
{
	struct oci_client_call c = {.method = "HEAD", .accept = OCI_ACCEPT};
	m->p = p;
	m->cb = cb;
	oci_digest_of(m->data, m->len, m->digest);
	oci_client_call(p->reg, manifest_url(p, m->ref), &c, on_manifest_head, m);
}

static void on_manifest_put(struct oci_client_req *r)
{
	struct push_manifest *m = r->arg;
	struct oci_push *p = m->p;
	if (r->status < 0) {
		manifest_done(m, r, r->status);
	} else if (r->http_status != 201 && r->http_status != 200) {
		m->detail = xasprintf("PUT %s/v2/%s/manifests/%s: HTTP %ld, not 201", p->base,
				      p->repo, m->ref, r->http_status);
		manifest_done(m, r, SB_EPROTO);
	} else if (r->docker_digest[0] && strcmp(r->docker_digest, m->digest)) {
		m->detail = xasprintf("%s/%s:%s: the registry stored manifest %s as %s", p->base,
				      p->repo, m->ref, m->digest, r->docker_digest);
		manifest_done(m, r, SB_ECORRUPT);
	} else {
		manifest_done(m, r, 0);
	}
}

void oci_push_manifest_put(struct oci_push *p, struct push_manifest *m, push_manifest_cb cb)
{
	struct oci_client_call c = {
	    .method = "PUT",
	    .content_type = m->media_type,
	    .data = m->data,
	    .len = m->len,
	};
	m->p = p;
	m->cb = cb;
	oci_digest_of(m->data, m->len, m->digest);
	oci_client_call(p->reg, manifest_url(p, m->ref), &c, on_manifest_put, m);
}

void oci_push_manifest_close(struct push_manifest *m)
{
	free(m->detail);
	m->detail = NULL;
}

/* The pusher. */

struct oci_push *oci_push_new(uv_loop_t *loop, struct oci_client *reg,
			      const struct oci_push_options *o)
{
	struct oci_push *p = xcalloc(1, sizeof *p);
	p->loop = loop;
	p->reg = reg;
	p->base = xstrdup(o->base);
	p->repo = xstrdup(o->repo);
	p->chunk = o->chunk ? o->chunk : PUSH_CHUNK_DEFAULT;
	p->restarts = o->restarts;
	p->sent = o->sent;
	p->sent_arg = o->sent_arg;
	return p;
}

void oci_push_free(struct oci_push *p)
{
	if (!p)
		return;
	free(p->base);
	free(p->repo);
	free(p);
}

void oci_push_cancel(struct oci_push *p)
{
	p->canceled = 1;
	oci_client_cancel(p->reg);
}
