#include "agent/mirror.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/cache.h"
#include "agent/daemon.h"
#include "agent/mirror_int.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/net/httpd.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/progress.h"
#include "common/path.h"
#include "common/uri.h"

/* ---- answers ---- */

static void answer(struct mreq *mr, struct httpd_response *resp, enum mirror_result r)
{
	mr->m->count[r]++;
	buf_append_str(&resp->headers, MIRROR_API_VERSION);
	httpd_respond(mr->req, resp);
	free(mr);
}

/* 404 (or status) with an OCI error body, counted as r. */
void mirror_answer_error(struct mreq *mr, int status, const char *code, const char *message,
			 enum mirror_result r)
{
	struct httpd_response resp;
	httpd_response_init(&resp);
	resp.status = status;
	resp.content_type = MIRROR_ERROR_TYPE;
	json_t *e = json_pack("{s:[{s:s,s:s}]}", "errors", "code", code, "message", message);
	char *s = json_dumps(e, JSON_COMPACT);
	buf_append_str(&resp.body, s ? s : "{}");
	free(s);
	json_decref(e);
	log_debug("mirror: %s %s: %d %s", httpd_request_head(mr->req) ? "HEAD" : "GET",
		  httpd_request_path(mr->req), status, code);
	answer(mr, &resp, r);
}

void mirror_not_found(struct mreq *mr)
{
	switch (mr->p.route) {
	case OCI_ROUTE_MANIFEST:
		mirror_answer_error(mr, 404, "MANIFEST_UNKNOWN", "manifest unknown to this mirror",
				    MIRROR_NOT_FOUND);
		break;
	case OCI_ROUTE_BLOB:
		mirror_answer_error(mr, 404, "BLOB_UNKNOWN", "blob unknown to this mirror",
				    MIRROR_NOT_FOUND);
		break;
	default:
		mirror_answer_error(mr, 404, "NAME_UNKNOWN",
				    "repository name not known to this mirror", MIRROR_NOT_FOUND);
	}
}

void mirror_stopping(struct mreq *mr)
{
	mirror_answer_error(mr, 503, "UNAVAILABLE", "the mirror is stopping", MIRROR_UNAVAILABLE);
}

/* Range over a body of size bytes into resp (status, Content-Range);
 * 0, or -1 after answering 416. */
static int apply_range(struct mreq *mr, struct httpd_response *resp, uint64_t size, uint64_t *off,
		       uint64_t *len)
{
	*off = 0;
	*len = size;
	int r = httpd_parse_range(httpd_request_range(mr->req), size, off, len);
	if (r < 0) {
		resp->status = 416;
		buf_printf(&resp->headers, "Content-Range: bytes */%" PRIu64 "\r\n", size);
		answer(mr, resp, MIRROR_NOT_FOUND);
		return -1;
	}
	if (r > 0) {
		resp->status = 206;
		buf_printf(&resp->headers,
			   "Content-Range: bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64 "\r\n", *off,
			   *off + *len - 1, size);
	}
	return 0;
}

static void blob_headers(struct httpd_response *resp, const char *digest)
{
	resp->content_type = MIRROR_BLOB_TYPE;
	buf_printf(&resp->headers,
		   "Docker-Content-Digest: %s\r\nAccept-Ranges: bytes\r\nETag: \"%s\"\r\n", digest,
		   digest);
}

/* A manifest from memory: as a manifest, or through the blobs API. */
void mirror_answer_doc(struct mreq *mr, const struct mirror_doc *doc)
{
	struct httpd_response resp;
	uint64_t off = 0, len = doc->bytes.len;
	httpd_response_init(&resp);
	if (mr->p.route == OCI_ROUTE_BLOB) {
		blob_headers(&resp, doc->digest);
		if (apply_range(mr, &resp, doc->bytes.len, &off, &len) < 0)
			return;
	} else {
		resp.content_type = doc->media_type;
		buf_printf(&resp.headers, "Docker-Content-Digest: %s\r\n", doc->digest);
	}
	buf_append(&resp.body, doc->bytes.ptr + off, (size_t)len);
	answer(mr, &resp, MIRROR_MANIFEST);
}

/* A blob file, checked: its bytes go by sendfile. */
void mirror_answer_file(struct mreq *mr, const struct mirror_blob *b, int fd)
{
	struct httpd_response resp;
	uint64_t off, len;
	httpd_response_init(&resp);
	blob_headers(&resp, b->digest);
	if (apply_range(mr, &resp, b->size, &off, &len) < 0) {
		close(fd);
		return;
	}
	resp.fd = fd;
	resp.file_off = off;
	resp.file_len = len;
	if (!httpd_request_head(mr->req))
		mr->m->blob_bytes += len;
	answer(mr, &resp, MIRROR_BLOB);
}

static void answer_tags(struct mreq *mr, struct mirror_cat **cands, size_t n)
{
	json_t *tags = json_array();
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < cands[i]->ntags; k++) {
			int dup = 0;
			for (size_t j = 0; j < i && !dup; j++)
				dup = mirror_cat_tag(cands[j], cands[i]->tags[k].tag) != NULL;
			if (!dup)
				json_array_append_new(tags, json_string(cands[i]->tags[k].tag));
		}
	json_t *o = json_pack("{s:s,s:o}", "name", mr->p.name, "tags", tags);
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	struct httpd_response resp;
	httpd_response_init(&resp);
	resp.content_type = MIRROR_ERROR_TYPE;
	buf_append_str(&resp.body, s);
	free(s);
	answer(mr, &resp, MIRROR_MANIFEST);
}

/* ---- catalogs ---- */

static void cat_unref(struct mirror_cat *cat)
{
	if (--cat->refs > 0)
		return;
	mirror_cat_close(cat);
	free(cat->name);
	free(cat->dir);
	free(cat);
}

static void unlist(struct mirror *m, struct mirror_cat *cat)
{
	for (struct mirror_cat **p = &m->cats; *p; p = &(*p)->next)
		if (*p == cat) {
			*p = cat->next;
			break;
		}
	cat->listed = 0;
	cat_unref(cat);
}

/* Requests that waited for a catalog try again. */
static void wake(struct mirror *m)
{
	struct mreq *w = m->waiting;
	m->waiting = NULL;
	while (w) {
		struct mreq *next = w->next;
		w->next = NULL;
		if (m->stopping)
			mirror_stopping(w);
		else
			mirror_dispatch(w);
		w = next;
	}
}

void mirror_job_done(struct mjob *j)
{
	struct mirror *m = j->m;
	if (j->cat)
		cat_unref(j->cat);
	free(j->manifest);
	free(j);
	m->jobs--;
	mirror_release(m);
}

int mirror_queue_job(struct mirror *m, struct mjob *j, uv_work_cb work, uv_after_work_cb after)
{
	j->m = m;
	j->work.data = j;
	if (j->cat)
		j->cat->refs++;
	int rc = uv_queue_work(m->loop, &j->work, work, after);
	if (rc < 0) {
		if (j->cat)
			j->cat->refs--;
		return rc;
	}
	m->jobs++;
	return 0;
}

static void load_work(uv_work_t *w)
{
	struct mjob *j = w->data;
	j->rc = mirror_cat_load(j->cat, j->manifest, j->manifest_len);
}

static void load_done(uv_work_t *w, int status)
{
	struct mjob *j = w->data;
	struct mirror_cat *cat = j->cat;
	struct mirror *m = j->m;
	if (status < 0 && j->rc == 0)
		j->rc = status;
	cat->state = j->rc == 0 ? MIRROR_CAT_READY : MIRROR_CAT_FAILED;
	if (j->rc == 0) {
		log_info("mirror: dataset %s serves %s/%s: %zu %s, %zu %s, %zu %s", cat->name,
			 cat->registry, cat->repo, cat->ntags,
			 progress_noun(cat->ntags, "tag", "tags"), cat->ndocs,
			 progress_noun(cat->ndocs, "manifest", "manifests"), cat->nblobs,
			 progress_noun(cat->nblobs, "blob", "blobs"));
	} else {
		cat->failed_at_ms = uv_now(m->loop);
		log_warn("mirror: dataset %s is not served: %s", cat->name,
			 cat->error ? cat->error : sb_strerror(j->rc));
		mirror_cat_close(cat);
	}
	m->jobs++; /* wake() may answer the last request of a stopping mirror */
	wake(m);
	m->jobs--;
	mirror_job_done(j);
}

/* Start loading the catalog of a version. */
static void start_load(struct mirror *m, struct mirror_cat *cat)
{
	struct mjob *j = xcalloc(1, sizeof *j);
	j->cat = cat;
	j->fd = -1;
	int rc = cache_manifest_get(m->cache, &cat->id, &j->manifest, &j->manifest_len);
	if (rc == 1)
		rc = mirror_queue_job(m, j, load_work, load_done);
	else if (rc == 0)
		rc = SB_ENOTFOUND;
	if (rc < 0) {
		cat->state = MIRROR_CAT_FAILED;
		cat->failed_at_ms = uv_now(m->loop);
		log_warn("mirror: dataset %s: its published manifest: %s", cat->name,
			 sb_strerror(rc));
		free(j->manifest);
		free(j);
	}
}

/* A catalog for a published oci:// dataset (NULL for another source). */
static struct mirror_cat *new_cat(struct mirror *m, const struct daemon_published *p)
{
	struct source_uri u;
	if (strncmp(p->source, "oci://", 6) || uri_parse(p->source, &u) < 0)
		return NULL;
	struct mirror_cat *cat = xcalloc(1, sizeof *cat);
	int ok = u.kind == URI_OCI &&
		 oci_name_registry(u.registry, cat->registry, sizeof cat->registry) == 0 &&
		 oci_name_repo(cat->registry, u.repo, cat->repo, sizeof cat->repo) == 0;
	uri_close(&u);
	if (!ok) {
		free(cat);
		return NULL;
	}
	cat->name = xstrdup(p->name);
	cat->id = p->id;
	cat->dir = path_join(m->target, p->name);
	cat->refs = 1;
	cat->listed = 1;
	struct mirror_cat **at = &m->cats; /* by dataset name */
	while (*at && strcmp((*at)->name, cat->name) < 0)
		at = &(*at)->next;
	cat->next = *at;
	*at = cat;
	start_load(m, cat);
	return cat;
}

/* Follow the daemon: a catalog per published oci:// version, none for a
 * version no longer in place, another try for one that failed a while ago. */
static void refresh(struct mirror *m)
{
	uint64_t now = uv_now(m->loop);
	for (struct mirror_cat *c = m->cats, *next; c; c = next) {
		next = c->next;
		c->listed =
		    c->state == MIRROR_CAT_FAILED && now - c->failed_at_ms >= MIRROR_RETRY_MS ? -1
											      : 0;
	}
	struct daemon_published p;
	for (size_t i = 0;; i++) {
		int rc = daemon_published(m->d, i, &p);
		if (rc < 0)
			break;
		if (rc == 0)
			continue;
		struct mirror_cat *c = m->cats;
		while (c && (strcmp(c->name, p.name) || memcmp(&c->id, &p.id, sizeof p.id) ||
			     c->listed < 0))
			c = c->next;
		if (c)
			c->listed = 1;
		else
			new_cat(m, &p);
	}
	for (struct mirror_cat *c = m->cats, *next; c; c = next) {
		next = c->next;
		if (c->listed != 1)
			unlist(m, c);
	}
}

/* ---- blobs ---- */

static int same_state(const struct mirror_stat *a, const struct mirror_stat *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

static void hash_work(uv_work_t *w)
{
	struct mjob *j = w->data;
	struct mirror_stat after;
	int fd = mirror_blob_open(j->cat, j->digest, &j->st);
	if (fd < 0) {
		j->rc = fd;
		return;
	}
	j->rc = hash_check_digest_fd(fd, j->st.size, j->digest);
	/* A file that changed while it was hashed proves nothing. */
	close(fd);
	fd = mirror_blob_open(j->cat, j->digest, &after);
	if (fd >= 0)
		close(fd);
	if (j->rc == 0 && (fd < 0 || !same_state(&j->st, &after)))
		j->rc = SB_ECHANGED;
}

static void hash_done(uv_work_t *w, int status)
{
	struct mjob *j = w->data;
	struct mirror_blob *b = mirror_cat_blob(j->cat, j->digest);
	if (b) {
		b->hashing = 0;
		if (status == 0 && (j->rc == 0 || j->rc == SB_ECORRUPT)) {
			b->judged = 1;
			b->ok = j->rc == 0;
			b->state = j->st;
		}
		if (status == 0 && j->rc == 0)
			log_info("mirror: dataset %s: blob %s was touched but matches its digest; "
				 "served again",
				 j->cat->name, j->digest);
		else if (status == 0 && j->rc == SB_ECORRUPT)
			log_error("mirror: dataset %s: blob %s in %s does not match its digest: "
				  "not served until the agent puts it back",
				  j->cat->name, j->digest, j->cat->dir);
	}
	mirror_job_done(j);
}

/* The file of b moved since the daemon published it: hash it once. */
static void suspect(struct mirror *m, struct mirror_cat *cat, struct mirror_blob *b,
		    const struct mirror_stat *st)
{
	if (b->hashing || (b->judged && same_state(&b->state, st)))
		return;
	log_warn("mirror: dataset %s: blob %s changed on disk (size %" PRIu64 ", mtime %" PRId64
		 "; published %" PRIu64 ", %" PRId64 "): not served until it is hashed",
		 cat->name, b->digest, st->size, st->mtime_ns, b->size, b->mtime_ns);
	if (st->size != b->size) {
		b->judged = 1; /* no hash needed: it cannot be the blob */
		b->ok = 0;
		b->state = *st;
		return;
	}
	struct mjob *j = xcalloc(1, sizeof *j);
	j->cat = cat;
	j->fd = -1;
	snprintf(j->digest, sizeof j->digest, "%s", b->digest);
	if (mirror_queue_job(m, j, hash_work, hash_done) == 0)
		b->hashing = 1;
	else
		free(j);
}

/* 1 when the opened file may be served as b. */
static int blob_trusted(struct mirror *m, struct mirror_cat *cat, struct mirror_blob *b,
			const struct mirror_stat *st)
{
	if (st->size == b->size && st->mtime_ns == b->mtime_ns)
		return 1; /* as the daemon left it after verifying every block */
	if (b->judged && same_state(&b->state, st))
		return b->ok;
	suspect(m, cat, b, st);
	return 0;
}

static void open_work(uv_work_t *w)
{
	struct mjob *j = w->data;
	j->fd = mirror_blob_open(j->cat, j->digest, &j->st);
}

static void open_done(uv_work_t *w, int status)
{
	struct mjob *j = w->data;
	struct mreq *mr = j->mr;
	struct mirror_blob *b = mirror_cat_blob(j->cat, j->digest);
	if (status < 0 || j->m->stopping || j->fd < 0 || !b) {
		if (j->fd >= 0)
			close(j->fd);
		if (j->m->stopping)
			mirror_stopping(mr);
		else
			mirror_not_found(mr);
	} else if (daemon_file_damaged(j->m->d, j->cat->name, &b->object)) {
		close(j->fd); /* whatever its time says: being repaired */
		mirror_answer_error(mr, 404, "BLOB_UNKNOWN",
				    "the blob's file changed on disk here and is being repaired",
				    MIRROR_REFUSED);
	} else if (!blob_trusted(j->m, j->cat, b, &j->st)) {
		close(j->fd);
		mirror_answer_error(mr, 404, "BLOB_UNKNOWN",
				    "the blob's file failed its checks here", MIRROR_REFUSED);
	} else {
		mirror_answer_file(mr, b, j->fd);
	}
	mirror_job_done(j);
}

static void open_blob(struct mreq *mr, struct mirror_cat *cat, const struct mirror_blob *b)
{
	struct mjob *j = xcalloc(1, sizeof *j);
	j->cat = cat;
	j->mr = mr;
	j->fd = -1;
	snprintf(j->digest, sizeof j->digest, "%s", b->digest);
	if (mirror_queue_job(mr->m, j, open_work, open_done) < 0) {
		free(j);
		mirror_answer_error(mr, 503, "UNAVAILABLE", "no room for the request",
				    MIRROR_UNAVAILABLE);
	}
}

/* ---- requests ---- */

/* The catalogs that may hold the request's repository, into cands (at
 * most max); *loading when one of them is still being read. */
static size_t candidates(struct mreq *mr, struct mirror_cat **cands, size_t max, int *loading)
{
	size_t n = 0;
	*loading = 0;
	for (struct mirror_cat *c = mr->m->cats; c; c = c->next) {
		if (strcmp(c->repo, mr->p.name) || (mr->has_ns && strcmp(c->registry, mr->ns)))
			continue;
		if (c->state == MIRROR_CAT_LOADING)
			*loading = 1;
		else if (c->state == MIRROR_CAT_READY && n < max)
			cands[n++] = c;
	}
	return n;
}

static void resolve(struct mreq *mr, struct mirror_cat **cands, size_t n)
{
	const char *digest = mr->p.ref;
	if (mr->p.route == OCI_ROUTE_TAGS) {
		answer_tags(mr, cands, n);
		return;
	}
	if (mr->p.route == OCI_ROUTE_MANIFEST && !mr->p.by_digest) {
		const struct mirror_tag *t = NULL;
		for (size_t i = 0; i < n && !t; i++)
			t = mirror_cat_tag(cands[i], mr->p.ref);
		if (!t) {
			mirror_early_request(mr, 1);
			return;
		}
		digest = t->digest;
	}
	for (size_t i = 0; i < n; i++) {
		const struct mirror_doc *doc = mirror_cat_doc(cands[i], digest);
		if (doc) {
			mirror_answer_doc(mr, doc);
			return;
		}
	}
	for (size_t i = 0; i < n && mr->p.route == OCI_ROUTE_BLOB; i++) {
		const struct mirror_blob *b = mirror_cat_blob(cands[i], digest);
		if (b) {
			open_blob(mr, cands[i], b);
			return;
		}
	}
	mirror_early_request(mr, 1);
}

#define MIRROR_CANDIDATES_MAX 64

void mirror_dispatch(struct mreq *mr)
{
	struct mirror_cat *cands[MIRROR_CANDIDATES_MAX];
	int loading;
	refresh(mr->m);
	size_t n = candidates(mr, cands, MIRROR_CANDIDATES_MAX, &loading);
	if (loading) { /* the first request after a version is published */
		mr->next = mr->m->waiting;
		mr->m->waiting = mr;
		return;
	}
	if (n == 0)
		mirror_early_request(mr, 0); /* or NAME_UNKNOWN */
	else
		resolve(mr, cands, n);
}

static void on_request(void *arg, struct httpd_request *req)
{
	struct mirror *m = arg;
	struct mreq *mr = xcalloc(1, sizeof *mr);
	mr->m = m;
	mr->req = req;
	if (m->stopping) {
		mirror_stopping(mr);
		return;
	}
	int rc = oci_name_parse_path(httpd_request_path(req), &mr->p);
	if (rc == 0 && mr->p.route == OCI_ROUTE_BASE) {
		struct httpd_response resp;
		httpd_response_init(&resp);
		resp.content_type = MIRROR_ERROR_TYPE;
		buf_append_str(&resp.body, "{}");
		answer(mr, &resp, MIRROR_MANIFEST);
		return;
	}
	if (rc == 0) {
		rc = oci_name_query_ns(httpd_request_query(req), mr->ns, sizeof mr->ns);
		mr->has_ns = rc == 1;
	}
	if (rc == SB_ENOTFOUND || (rc < 0 && !oci_name_repo_valid(mr->p.name)))
		mr->p.route = OCI_ROUTE_TAGS; /* another API, or no such name: NAME_UNKNOWN */
	if (rc < 0)
		mirror_not_found(mr);
	else
		mirror_dispatch(mr);
}

/* ---- life cycle ---- */

int mirror_new(uv_loop_t *loop, const struct mirror_config *cfg, struct mirror **out, char **detail)
{
	struct mirror *m = xcalloc(1, sizeof *m);
	m->loop = loop;
	m->d = cfg->d;
	m->cache = cfg->cache;
	m->target = xstrdup(cfg->target);
	m->wait_ms = cfg->wait_ms;
	*out = NULL;
	int rc = httpd_start(loop, cfg->listen, NULL, 0, &m->http);
	if (rc < 0) {
		*detail = xasprintf("registry mirror: cannot listen on %s: %s", cfg->listen,
				    sb_strerror(rc));
		free(m->target);
		free(m);
		return rc;
	}
	m->early = mirror_early_new(m);
	if ((rc = mirror_pull_new(m, cfg, &m->pull, detail)) < 0) {
		char *why = *detail;
		*detail = xasprintf("registry mirror: on-demand pulls: %s", why);
		free(why);
		mirror_free(m);
		return rc;
	}
	httpd_route_prefix(m->http, "/v2/", on_request, m);
	log_info("registry mirror on %s (port %d)", cfg->listen, httpd_port(m->http));
	*out = m;
	return 0;
}

int mirror_port(const struct mirror *m)
{
	return httpd_port(m->http);
}

void mirror_release(struct mirror *m)
{
	if (!m->stopping || m->jobs > 0)
		return;
	free(m->target);
	free(m);
}

void mirror_free(struct mirror *m)
{
	if (!m || m->stopping)
		return;
	m->stopping = 1;
	httpd_stop(m->http);
	m->http = NULL;
	m->jobs++;
	wake(m);
	mirror_early_stop(m->early);
	mirror_pull_stop(m->pull);
	while (m->cats)
		unlist(m, m->cats);
	m->jobs--;
	mirror_release(m);
}

void mirror_metrics(const struct mirror *m, struct buf *out)
{
	static const char *const labels[] = {
#define MIRROR_LABEL_(name, label, help) label,
	    MIRROR_RESULT_MAP(MIRROR_LABEL_)
#undef MIRROR_LABEL_
	};
	if (!m)
		return;
	metrics_family(out, "syncbit_mirror_requests_total", METRICS_COUNTER,
		       "Registry mirror requests by result.");
	for (int r = 0; r < MIRROR_RESULTS; r++)
		metrics_sample(out, "syncbit_mirror_requests_total",
			       METRICS_LABELS("result", labels[r]), m->count[r]);
	metrics_single(out, "syncbit_mirror_blob_bytes_total", METRICS_COUNTER,
		       "Blob bytes the registry mirror sent.", m->blob_bytes);
	mirror_early_metrics(m->early, out);
	mirror_pull_metrics(m->pull, out);
}

void mirror_dataset_changed(struct mirror *m, const char *name)
{
	if (m && !m->stopping) {
		mirror_early_changed(m->early, name);
		mirror_pull_changed(m->pull);
	}
}
