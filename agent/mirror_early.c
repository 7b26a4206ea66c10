/* What the registry mirror serves of oci:// datasets still being fetched
 * here: each manifest or blob as soon as its file is a cache object (every
 * block verified against the version's hashes, the whole file against its
 * digest when it was sealed, durable and indexed), before the version is
 * published at TARGET/NAME. A request for a file still to come is parked
 * until the file is done, the fetch ends, or no bytes of the dataset
 * arrived for m->wait_ms (MIRROR_EARLY_WAIT_MAX_MS at most); containerd
 * then gets the blob from this node instead of asking the registry again.
 * The fetch is told what containerd reads first (agent/fetch_order.c): a
 * blob waited for goes to the front on this node, and the blobs of an
 * image manifest read here are fetched in that manifest's order.
 * Datasets pulled through the agent (kept in the cache only, never at
 * TARGET/NAME) are served the same way once complete, and a manifest no
 * dataset holds may be pulled on demand (agent/mirror_pull.c).
 *
 * Documents (index.json, image manifests) are read once from their cache
 * objects on the pool, checked against their block hashes and digests and
 * kept in memory per version; blobs go by sendfile from their cache object
 * after it is found intact in the index (the corruption watcher drops a
 * damaged object from it) and the opened file is the indexed one. Loop
 * thread only, except the *_work functions. */
#include "agent/mirror_int.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/cache.h"
#include "agent/daemon.h"
#include "agent/fetch.h"
#include "common/err.h"
#include "common/net/httpd.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/metrics.h"
#include "common/uri.h"

enum doc_state { DOC_UNREAD, DOC_READING, DOC_OK, DOC_BAD };

/* A document of a version being fetched, by digest. */
struct early_doc {
	char digest[OCI_DIGEST_MAX];
	char hint[OCI_MEDIA_TYPE_MAX]; /* index.json's media type for it, or "" */
	enum doc_state state;
	uint64_t retry_at_ms;  /* DOC_UNREAD after a failed read: not before */
	struct mirror_doc doc; /* DOC_OK: its bytes, its own media type */
};

/* One version of a dataset being fetched. */
struct early_set {
	struct early_set *next;
	char *name;
	uint8_t vid[HASH_LEN];
	char registry[OCI_NAME_HOST_MAX + 1]; /* folded (common/oci_name.h) */
	char repo[OCI_NAME_REPO_MAX + 1];
	const struct fetch *f;	/* valid until the loop runs again (refresh) */
	int listed, refs;	/* refs: the list, and jobs in flight */
	struct early_doc index; /* index.json; its digest the source's */
	struct mirror_tag *tags;
	size_t ntags;
	struct early_doc *docs;
	size_t ndocs;
	size_t doc_bytes;
	/* When bytes of the version last reached this node (or when the set
	 * was made): a request waits while the dataset it waits on makes
	 * progress. */
	uint64_t progress_ms;
};

struct mirror_early {
	struct mirror *m;
	struct early_set *sets;
	struct mreq *waiting; /* parked for files being fetched */
	size_t nwaiting;
	uv_timer_t timer;
	uint64_t served_docs, served_blobs, waits, waits_expired;
};

/* A pool job: a document read, or a blob's object opened. */
struct early_job {
	struct mjob job; /* first: mirror_job_done frees the whole */
	struct early_set *set;
	int is_index;
	struct hash_id object;
	uint64_t size;
	uint32_t block_size, format;
	uint8_t *hashes; /* the file's block hashes */
	char hint[OCI_MEDIA_TYPE_MAX];
	struct buf bytes;
	char media_type[OCI_MEDIA_TYPE_MAX];
	struct oci_manifest om; /* a document's, parsed */
};

/* ---- versions being fetched ---- */

static void set_unref(struct early_set *s)
{
	if (--s->refs > 0)
		return;
	buf_close(&s->index.doc.bytes);
	for (size_t i = 0; i < s->ndocs; i++)
		buf_close(&s->docs[i].doc.bytes);
	free(s->docs);
	free(s->tags);
	free(s->name);
	free(s);
}

static struct early_set *new_set(struct mirror_early *e, const char *name, const struct fetch *f)
{
	const Manifest *fm = fetch_manifest(f);
	struct source_uri u;
	if (!fm->source || strncmp(fm->source, "oci://", 6) || uri_parse(fm->source, &u) < 0)
		return NULL;
	struct early_set *s = xcalloc(1, sizeof *s);
	int ok = u.kind == URI_OCI &&
		 oci_name_registry(u.registry, s->registry, sizeof s->registry) == 0 &&
		 oci_name_repo(s->registry, u.repo, s->repo, sizeof s->repo) == 0;
	uri_close(&u);
	if (!ok) {
		free(s);
		return NULL;
	}
	s->name = xstrdup(name);
	memcpy(s->vid, fetch_version_id(f), HASH_LEN);
	s->refs = 1;
	s->next = e->sets;
	e->sets = s;
	return s;
}

/* Follow the daemon: a set per version being fetched, with its fetch. */
static void refresh(struct mirror_early *e)
{
	for (struct early_set *s = e->sets; s; s = s->next) {
		s->listed = 0;
		s->f = NULL;
	}
	const char *name;
	const struct fetch *f;
	for (size_t i = 0;; i++) {
		int rc = daemon_fetching(e->m->d, i, &name, &f);
		if (rc < 0)
			break;
		if (rc == 0)
			continue;
		struct early_set *s = e->sets;
		while (s &&
		       (strcmp(s->name, name) || memcmp(s->vid, fetch_version_id(f), HASH_LEN)))
			s = s->next;
		if (!s && !(s = new_set(e, name, f)))
			continue;
		s->listed = 1;
		s->f = f;
	}
	for (struct early_set **p = &e->sets; *p;) {
		struct early_set *s = *p;
		if (s->listed) {
			p = &s->next;
			continue;
		}
		*p = s->next;
		set_unref(s);
	}
}

/* The regular file at path in s's version, with its index, or NULL. */
static const FileEntry *find_file(const struct early_set *s, const char *path, size_t *index)
{
	const Manifest *fm = fetch_manifest(s->f);
	for (size_t i = 0; i < fm->n_files; i++) {
		const FileEntry *fe = fm->files[i];
		if (fe->type == SYNCBIT__FILE_TYPE__FILE_REGULAR && !fe->hardlink_to &&
		    !strcmp(fe->path, path)) {
			*index = i;
			return fe;
		}
	}
	return NULL;
}

static struct early_doc *find_doc(struct early_set *s, const char *digest)
{
	for (size_t i = 0; i < s->ndocs; i++)
		if (!strcmp(s->docs[i].digest, digest))
			return &s->docs[i];
	return NULL;
}

static struct early_doc *add_doc(struct early_set *s, const char *digest, const char *hint)
{
	struct early_doc *d = find_doc(s, digest);
	if (d)
		return d;
	s->docs = xrealloc(s->docs, (s->ndocs + 1) * sizeof *s->docs);
	d = &s->docs[s->ndocs++];
	memset(d, 0, sizeof *d);
	snprintf(d->digest, sizeof d->digest, "%s", digest);
	snprintf(d->hint, sizeof d->hint, "%s", hint ? hint : "");
	return d;
}

/* ---- reading documents (pool) ---- */

/* Read the object of a document whole and check it against its block
 * hashes and, when want is a digest, its digest. */
static int read_doc(struct cache *c, struct early_job *j, const char *want)
{
	char path[4096];
	cache_object_path(c, &j->object, path, sizeof path);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	buf_reserve(&j->bytes, (size_t)j->size + 1);
	size_t got = 0;
	ssize_t k = 0;
	while (got <= j->size && (k = read(fd, j->bytes.ptr + got, (size_t)j->size + 1 - got)) > 0)
		got += (size_t)k;
	int err = k < 0 ? -errno : 0;
	close(fd);
	if (err < 0)
		return err;
	j->bytes.len = got;
	if (got != j->size)
		return SB_ECORRUPT;
	uint64_t n = manifest_nblocks(j->size, j->block_size);
	for (uint64_t i = 0; i < n; i++) {
		struct hash_id h;
		block_id(j->format, j->bytes.ptr + i * j->block_size,
			 manifest_block_len(j->size, j->block_size, i), &h);
		if (memcmp(h.b, j->hashes + i * HASH_LEN, HASH_LEN))
			return SB_ECORRUPT;
	}
	char digest[OCI_DIGEST_MAX];
	oci_digest_of(j->bytes.ptr, j->bytes.len, digest);
	return want[0] && strcmp(digest, want) ? SB_ECORRUPT : 0;
}

static void doc_work(uv_work_t *w)
{
	struct early_job *j = w->data;
	j->job.rc = read_doc(j->job.m->cache, j, j->job.digest);
	if (j->job.rc < 0 || j->is_index)
		return;
	char *why = NULL;
	j->job.rc = oci_manifest_parse(j->bytes.ptr, j->bytes.len, j->hint, &j->om, &why);
	free(why);
	if (j->job.rc == 0)
		snprintf(j->media_type, sizeof j->media_type, "%s", j->om.media_type);
	if (j->job.rc < 0)
		j->job.rc = SB_EPROTO; /* a config or layer, not a manifest */
}

/* ---- what index.json names ---- */

static void add_tag(struct early_set *s, const char *tag, const char *digest)
{
	for (size_t i = 0; i < s->ntags; i++)
		if (!strcmp(s->tags[i].tag, tag))
			return; /* the first entry of a tag wins */
	if (s->ntags >= MIRROR_TAGS_MAX)
		return;
	s->tags = xrealloc(s->tags, (s->ntags + 1) * sizeof *s->tags);
	struct mirror_tag *t = &s->tags[s->ntags++];
	snprintf(t->tag, sizeof t->tag, "%s", tag);
	snprintf(t->digest, sizeof t->digest, "%s", digest);
}

/* Loop: the tags and documents of a verified index.json. */
static int take_index(struct early_set *s, const struct buf *bytes)
{
	json_error_t jerr;
	json_t *root = json_loadb((const char *)bytes->ptr, bytes->len, 0, &jerr);
	json_t *list = json_object_get(root, "manifests");
	if (!json_is_array(list)) {
		json_decref(root);
		return SB_EPROTO;
	}
	size_t i;
	json_t *ent;
	json_array_foreach(list, i, ent)
	{
		const char *mt = json_string_value(json_object_get(ent, "mediaType"));
		const char *dg = json_string_value(json_object_get(ent, "digest"));
		const char *tag = json_string_value(
		    json_object_get(json_object_get(ent, "annotations"), OCI_REF_NAME));
		const char *top = json_string_value(
		    json_object_get(json_object_get(ent, "annotations"), OCI_REGISTRY_DIGEST));
		if (!dg || !oci_name_digest_valid(dg))
			continue;
		add_doc(s, dg, mt);
		/* The registry's document the entry came from answers for the
		 * tag (the listing keeps its file whenever it names it). */
		if (top && oci_name_digest_valid(top))
			add_doc(s, dg = top, NULL);
		if (tag && oci_name_tag_valid(tag))
			add_tag(s, tag, dg);
	}
	json_decref(root);
	return 0;
}

static void wake(struct mirror_early *e);
static void refresh(struct mirror_early *e);

/* The fetch is told the order containerd reads image manifest om's blobs
 * in: its config, then its layers as the manifest lists them (the order
 * they are unpacked in), so that they complete here one after another. */
static void order_blobs(struct mirror *m, struct early_set *s, const struct oci_manifest *om)
{
	size_t *files = xcalloc(om->nlayers + 1, sizeof *files), n = 0;
	for (size_t i = 0; i <= om->nlayers; i++) {
		const struct oci_descriptor *c = i ? &om->layers[i - 1] : &om->config;
		char path[sizeof MIRROR_BLOBS_DIR + OCI_DIGEST_MAX];
		if (!oci_name_digest_valid(c->digest))
			continue;
		snprintf(path, sizeof path, MIRROR_BLOBS_DIR "%s", c->digest + strlen("sha256:"));
		if (find_file(s, path, &files[n]))
			n++;
	}
	if (n)
		daemon_fetch_order(m->d, s->name, s->vid, files, n, 0);
	free(files);
}

static void doc_done(uv_work_t *w, int status)
{
	struct early_job *j = w->data;
	struct early_set *s = j->set;
	struct mirror *m = j->job.m;
	int rc = status < 0 ? status : j->job.rc;
	struct early_doc *d = j->is_index ? &s->index : find_doc(s, j->job.digest);
	if (d && rc == 0 && j->is_index) {
		rc = take_index(s, &j->bytes);
		d->state = rc == 0 ? DOC_OK : DOC_BAD;
	} else if (d && rc == 0 && (s->doc_bytes += j->bytes.len) <= MIRROR_DOCS_MAX) {
		snprintf(d->doc.digest, sizeof d->doc.digest, "%s", d->digest);
		snprintf(d->doc.media_type, sizeof d->doc.media_type, "%s", j->media_type);
		d->doc.bytes = j->bytes;
		j->bytes = (struct buf)BUF_INIT;
		d->state = DOC_OK;
	} else if (d && (rc == 0 || rc == SB_ECORRUPT || rc == SB_EPROTO)) {
		d->state = DOC_BAD; /* never served from this version */
		if (rc == SB_ECORRUPT)
			log_error("mirror: dataset %s: the cache object of %s does not match it; "
				  "not served",
				  s->name, j->is_index ? MIRROR_INDEX_FILE : d->digest);
	} else if (d) {
		d->state = DOC_UNREAD; /* gone meanwhile (evicted, damaged): later */
		d->retry_at_ms = uv_now(m->loop) + MIRROR_EARLY_RETRY_MS;
	}
	if (rc == 0 && !j->is_index && !j->om.is_index && !m->stopping) {
		refresh(m->early); /* s->f is the fetch of now, or NULL */
		if (s->f)
			order_blobs(m, s, &j->om);
	}
	/* What an image manifest names as its config and layers is no
	 * manifest: asked for as one, a 404 at once. */
	for (size_t i = 0; rc == 0 && !j->is_index && !j->om.is_index && i <= j->om.nlayers; i++) {
		const struct oci_descriptor *c = i ? &j->om.layers[i - 1] : &j->om.config;
		struct early_doc *cd =
		    oci_name_digest_valid(c->digest) ? add_doc(s, c->digest, NULL) : NULL;
		if (cd && cd->state == DOC_UNREAD)
			cd->state = DOC_BAD;
	}
	oci_manifest_close(&j->om);
	buf_close(&j->bytes);
	free(j->hashes);
	set_unref(s);
	if (!m->stopping)
		wake(m->early);
	mirror_job_done(&j->job);
}

/* 1 when file index of s's version is a cache object: *id is its id. */
static int file_ready(const struct early_set *s, size_t index, struct hash_id *id)
{
	const Manifest *fm = fetch_manifest(s->f);
	const FileEntry *fe = fm->files[index];
	if (!fetch_file_done(s->f, index))
		return 0;
	manifest_file_object_id(fe->size, fm->block_size, fe->block_hashes.data,
				fe->block_hashes.len / HASH_LEN, id);
	return 1;
}

/* Read document d (at path) of s on the pool, once its file is an object:
 * 1 while it is to come or being read, 0 when it cannot be (not held, too
 * large, or found bad). */
static int read_later(struct mirror *m, struct early_set *s, struct early_doc *d, const char *path,
		      int is_index)
{
	size_t index;
	const FileEntry *fe = find_file(s, path, &index);
	if (d->state == DOC_READING)
		return 1;
	if (d->state != DOC_UNREAD || !fe || fe->size > OCI_DOC_MAX)
		return 0;
	struct hash_id id;
	if (!file_ready(s, index, &id) || uv_now(m->loop) < d->retry_at_ms)
		return 1;
	struct early_job *j = xcalloc(1, sizeof *j);
	j->job.fd = -1;
	j->set = s;
	j->is_index = is_index;
	j->object = id;
	j->size = fe->size;
	j->block_size = fetch_manifest(s->f)->block_size;
	j->format = fetch_manifest(s->f)->format;
	j->hashes = xmalloc(fe->block_hashes.len + 1);
	memcpy(j->hashes, fe->block_hashes.data, fe->block_hashes.len);
	snprintf(j->hint, sizeof j->hint, "%s", d->hint);
	/* index.json is checked against the digest the source listed. */
	const char *want = is_index ? fe->source_digest : d->digest;
	snprintf(j->job.digest, sizeof j->job.digest, "%s",
		 want && oci_name_digest_valid(want) ? want : "");
	s->refs++;
	if (mirror_queue_job(m, &j->job, doc_work, doc_done) < 0) {
		s->refs--;
		free(j->hashes);
		free(j);
		return 0;
	}
	d->state = DOC_READING;
	return 1;
}

/* ---- blobs ---- */

static void open_work(uv_work_t *w)
{
	struct early_job *j = w->data;
	struct mirror *m = j->job.m;
	char path[4096];
	struct stat a, b;
	cache_object_path(m->cache, &j->object, path, sizeof path);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		j->job.rc = -errno;
		return;
	}
	/* The file opened is the object the index holds, as it was stored:
	 * not replaced, not written since (the watcher drops one that was). */
	int rc = fstat(fd, &a) < 0 ? -errno : 0;
	if (rc == 0 && (!S_ISREG(a.st_mode) || (uint64_t)a.st_size != j->size))
		rc = SB_ECORRUPT;
	if (rc == 0 && cache_object_intact(m->cache, &j->object) != 1)
		rc = SB_ECHANGED;
	if (rc == 0 &&
	    (stat(path, &b) < 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev ||
	     a.st_mtim.tv_sec != b.st_mtim.tv_sec || a.st_mtim.tv_nsec != b.st_mtim.tv_nsec))
		rc = SB_ECHANGED;
	if (rc < 0) {
		close(fd);
		j->job.rc = rc;
		return;
	}
	j->job.fd = fd;
}

static void open_done(uv_work_t *w, int status)
{
	struct early_job *j = w->data;
	struct mreq *mr = j->job.mr;
	struct mirror *m = j->job.m;
	if (status < 0 || m->stopping || j->job.fd < 0) {
		if (j->job.fd >= 0)
			close(j->job.fd);
		if (m->stopping)
			mirror_stopping(mr);
		else
			mirror_answer_error(mr, 404, "BLOB_UNKNOWN",
					    "the blob's cache object failed its checks here",
					    MIRROR_REFUSED);
	} else {
		struct mirror_blob b = {.size = j->size};
		snprintf(b.digest, sizeof b.digest, "%s", j->job.digest);
		m->early->served_blobs++;
		mirror_answer_file(mr, &b, j->job.fd);
	}
	mirror_job_done(&j->job);
}

static void open_blob(struct mreq *mr, const char *digest, const struct hash_id *id, uint64_t size)
{
	struct early_job *j = xcalloc(1, sizeof *j);
	j->job.fd = -1;
	j->job.mr = mr;
	j->object = *id;
	j->size = size;
	snprintf(j->job.digest, sizeof j->job.digest, "%.*s", OCI_DIGEST_MAX - 1, digest);
	if (mirror_queue_job(mr->m, &j->job, open_work, open_done) < 0) {
		free(j);
		mirror_answer_error(mr, 503, "UNAVAILABLE", "no room for the request",
				    MIRROR_UNAVAILABLE);
	}
}

/* ---- requests ---- */

enum look { LOOK_NONE, LOOK_WAIT, LOOK_DONE };

static void answer_doc(struct mreq *mr, const struct early_doc *d)
{
	mr->m->early->served_docs++;
	mirror_answer_doc(mr, &d->doc);
}

/* The document or blob digest in s. */
static enum look look_digest(struct mreq *mr, struct early_set *s, const char *digest)
{
	char path[sizeof MIRROR_BLOBS_DIR + OCI_DIGEST_MAX];
	size_t index;
	if (!oci_name_digest_valid(digest))
		return LOOK_NONE;
	snprintf(path, sizeof path, MIRROR_BLOBS_DIR "%s", digest + strlen("sha256:"));
	struct early_doc *d = find_doc(s, digest);
	if (d && d->state == DOC_OK) {
		answer_doc(mr, d);
		return LOOK_DONE;
	}
	const FileEntry *fe = find_file(s, path, &index);
	if (!fe)
		return LOOK_NONE;
	if (mr->p.route == OCI_ROUTE_BLOB) {
		struct hash_id id;
		if (!file_ready(s, index, &id)) {
			/* containerd waits for it: it goes first here */
			daemon_fetch_order(mr->m->d, s->name, s->vid, &index, 1, 1);
			return LOOK_WAIT;
		}
		log_debug("mirror: dataset %s: %s from its cache object while it is fetched",
			  s->name, digest);
		open_blob(mr, digest, &id, fe->size);
		return LOOK_DONE;
	}
	if (fe->size > OCI_DOC_MAX)
		return LOOK_NONE; /* a layer: never a manifest */
	d = add_doc(s, digest, NULL);
	return read_later(mr->m, s, d, path, 0) ? LOOK_WAIT : LOOK_NONE;
}

/* The tag's digest in s (*digest), once its index.json is read. */
static enum look look_tag(struct mreq *mr, struct early_set *s, const char **digest)
{
	if (s->index.state != DOC_OK)
		return read_later(mr->m, s, &s->index, MIRROR_INDEX_FILE, 1) ? LOOK_WAIT
									     : LOOK_NONE;
	for (size_t i = 0; i < s->ntags; i++)
		if (!strcmp(s->tags[i].tag, mr->p.ref)) {
			*digest = s->tags[i].digest;
			return LOOK_DONE;
		}
	return LOOK_NONE;
}

/* 1 when s was pulled for digest (its source names it): a pull of it again
 * would bring nothing s lacks. */
static int pulled_for(const struct early_set *s, const char *digest)
{
	const char *src = fetch_manifest(s->f)->source;
	const char *at = src ? strstr(src, digest) : NULL;
	return at && at > src && at[-1] == '@';
}

static void tick(uv_timer_t *t);

/* When a dataset of mr's repository being fetched here last grew (0:
 * none is). */
static uint64_t repo_progress_ms(const struct mirror_early *e, const struct mreq *mr)
{
	uint64_t last = 0;
	for (const struct early_set *s = e->sets; s; s = s->next)
		if (s->f && !strcmp(s->repo, mr->p.name) &&
		    (!mr->has_ns || !strcmp(s->registry, mr->ns)) && s->progress_ms > last)
			last = s->progress_ms;
	return last;
}

/* mr waits for a file still being fetched, until wait_ms pass with no
 * progress of the datasets it may come from (a large image takes longer
 * than that to spread; a 404 would send containerd to the registry), and
 * at most MIRROR_EARLY_WAIT_MAX_MS in all. */
static void park(struct mreq *mr)
{
	struct mirror *m = mr->m;
	struct mirror_early *e = m->early;
	uint64_t now = uv_now(m->loop);
	if (!mr->deadline_ms) {
		if (!m->wait_ms || e->nwaiting >= MIRROR_EARLY_WAITERS_MAX) {
			mirror_not_found(mr);
			return;
		}
		mr->parked_ms = now;
		mr->deadline_ms = now + m->wait_ms;
		e->waits++;
		httpd_request_extend(mr->req, m->wait_ms + MIRROR_EARLY_TICK_MS + HTTPD_TIMEOUT_MS);
		log_debug("mirror: %s waits for the dataset being fetched",
			  httpd_request_path(mr->req));
	} else if (now - mr->parked_ms >= MIRROR_EARLY_WAIT_MAX_MS) {
		e->waits_expired++;
		log_info("mirror: %s: waited %u s, the most a request waits for a file being "
			 "fetched; 404",
			 httpd_request_path(mr->req), MIRROR_EARLY_WAIT_MAX_MS / 1000);
		mirror_not_found(mr);
		return;
	} else if (now >= mr->deadline_ms && now - repo_progress_ms(e, mr) >= m->wait_ms) {
		e->waits_expired++;
		log_info("mirror: %s: the datasets being fetched made no progress for %llu s; 404",
			 httpd_request_path(mr->req), (unsigned long long)(m->wait_ms / 1000));
		mirror_not_found(mr);
		return;
	} else if (now >= mr->deadline_ms) { /* still coming */
		mr->deadline_ms = repo_progress_ms(e, mr) + m->wait_ms;
		httpd_request_extend(mr->req, m->wait_ms + MIRROR_EARLY_TICK_MS + HTTPD_TIMEOUT_MS);
	}
	mr->next = e->waiting;
	e->waiting = mr;
	e->nwaiting++;
	if (!uv_is_active((uv_handle_t *)&e->timer))
		uv_timer_start(&e->timer, tick, MIRROR_EARLY_TICK_MS, MIRROR_EARLY_TICK_MS);
}

void mirror_early_request(struct mreq *mr, int name_known)
{
	struct mirror_early *e = mr->m->early;
	struct early_set *cands[64];
	size_t n = 0;
	refresh(e);
	for (struct early_set *s = e->sets; s && n < sizeof cands / sizeof *cands; s = s->next)
		if (!strcmp(s->repo, mr->p.name) && (!mr->has_ns || !strcmp(s->registry, mr->ns)) &&
		    fetch_status(s->f) == 0)
			cands[n++] = s;
	if (n == 0 && mirror_pull_request(mr))
		return;
	if (n == 0 && !name_known) {
		mirror_answer_error(mr, 404, "NAME_UNKNOWN",
				    "repository name not known to this mirror", MIRROR_NOT_FOUND);
		return;
	}
	if (n == 0 || mr->p.route == OCI_ROUTE_TAGS) {
		mirror_not_found(mr);
		return;
	}
	int wait = 0;
	const char *digest = mr->p.ref;
	if (mr->p.route == OCI_ROUTE_MANIFEST && !mr->p.by_digest) {
		enum look r = LOOK_NONE;
		for (size_t i = 0; i < n && r != LOOK_DONE; i++)
			if ((r = look_tag(mr, cands[i], &digest)) == LOOK_WAIT)
				wait = 1;
		if (r != LOOK_DONE) {
			if (wait)
				park(mr);
			else if (!mirror_pull_request(mr))
				mirror_not_found(mr);
			return;
		}
		wait = 0;
	}
	int pulled_without = 0;
	for (size_t i = 0; i < n; i++) {
		enum look r = look_digest(mr, cands[i], digest);
		if (r == LOOK_DONE)
			return;
		wait |= r == LOOK_WAIT;
		pulled_without |= r == LOOK_NONE && mr->p.by_digest && pulled_for(cands[i], digest);
	}
	if (wait)
		park(mr);
	else if (pulled_without)
		mirror_answer_error(mr, 404, "MANIFEST_UNKNOWN",
				    "the image pulled for this digest does not hold it",
				    MIRROR_NOT_FOUND);
	else if (!mirror_pull_request(mr))
		mirror_not_found(mr);
}

/* Parked requests are routed again: answered, or parked again. */
static void wake(struct mirror_early *e)
{
	struct mreq *w = e->waiting;
	e->waiting = NULL;
	e->nwaiting = 0;
	while (w) {
		struct mreq *next = w->next;
		w->next = NULL;
		if (e->m->stopping)
			mirror_stopping(w);
		else
			mirror_dispatch(w);
		w = next;
	}
}

/* Note when bytes of each dataset being fetched last arrived. */
static void note_progress(struct mirror_early *e)
{
	uint64_t now = uv_now(e->m->loop);
	for (struct early_set *s = e->sets; s; s = s->next) {
		if (!s->f)
			continue;
		uint64_t arrived = fetch_arrived_ms(s->f);
		if (!s->progress_ms)
			s->progress_ms = now;
		if (arrived > s->progress_ms)
			s->progress_ms = arrived;
	}
}

static void tick(uv_timer_t *t)
{
	struct mirror_early *e = t->data;
	refresh(e); /* the fetches of now, before their progress is read */
	note_progress(e);
	wake(e);
	if (!e->waiting)
		uv_timer_stop(&e->timer);
}

void mirror_early_changed(struct mirror_early *e, const char *name)
{
	if (e && e->waiting)
		wake(e);
}

/* ---- life cycle ---- */

struct mirror_early *mirror_early_new(struct mirror *m)
{
	struct mirror_early *e = xcalloc(1, sizeof *e);
	e->m = m;
	uv_timer_init(m->loop, &e->timer);
	e->timer.data = e;
	return e;
}

static void timer_closed(uv_handle_t *h)
{
	struct mirror_early *e = h->data;
	struct mirror *m = e->m;
	free(e);
	m->early = NULL;
	m->jobs--;
	mirror_release(m);
}

void mirror_early_stop(struct mirror_early *e)
{
	if (!e)
		return;
	wake(e); /* m->stopping: every parked request gets 503 */
	while (e->sets) {
		struct early_set *s = e->sets;
		e->sets = s->next;
		set_unref(s);
	}
	e->m->jobs++;
	uv_close((uv_handle_t *)&e->timer, timer_closed);
}

void mirror_early_metrics(const struct mirror_early *e, struct buf *out)
{
	if (!e)
		return;
	metrics_family(out, "syncbit_mirror_early_total", METRICS_COUNTER,
		       "Manifests and blobs served from datasets still being fetched.");
	metrics_sample(out, "syncbit_mirror_early_total", METRICS_LABELS("kind", "manifest"),
		       e->served_docs);
	metrics_sample(out, "syncbit_mirror_early_total", METRICS_LABELS("kind", "blob"),
		       e->served_blobs);
	metrics_single(out, "syncbit_mirror_waits_total", METRICS_COUNTER,
		       "Requests that waited for a file being fetched here.", e->waits);
	metrics_single(out, "syncbit_mirror_wait_expired_total", METRICS_COUNTER,
		       "Requests that waited in vain and got a 404.", e->waits_expired);
}
