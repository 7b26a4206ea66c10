/* Why inotify and not fanotify: fanotify sees a whole filesystem at once
 * but needs CAP_SYS_ADMIN for that (the agent runs as any user), and its
 * unprivileged inode marks are what inotify gives on every kernel. An
 * inotify watch belongs to the inode, not to a name, so one watch per
 * object sees writes made through any of its hardlinks: the published
 * file in TARGET as well as objects/ab/<id>. The mask is IN_MODIFY and
 * IN_CLOSE_WRITE: IN_ATTRIB also fires for every link publishing makes,
 * and a metadata change that matters (mtime, size) is caught by the
 * periodic check against the index. What inotify cannot see (writes while
 * the agent was down, through mmap, with no watch left, or lost in a queue
 * overflow) the periodic check finds by size, mtime and inode against the
 * index and by ctime against the last check; content that changes with no
 * metadata at all (a failing disk) is found when a peer reports a bad
 * block or by `syncbit verify`. */
#include "agent/watch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/io.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/path.h"

#define WATCH_MASK	 (IN_MODIFY | IN_CLOSE_WRITE)
#define WATCH_READ_CHUNK (1u << 20) /* bytes hashed per read */
#define WATCH_REPORTS	 64	    /* peer reports waiting at most; more are dropped */

struct wset {
	char *name;
	char *root;	     /* TARGET/NAME as recorded with the dataset */
	Manifest *m;	     /* its published version */
	struct hash_id *ids; /* per file: its object (zero: not a regular file of its own) */
	char *damage;
	struct hash_id *bad; /* objects of its files found changed since it was published */
	size_t nbad;
};

struct wobj {
	struct hash_id id;
	struct wset *set; /* a dataset with a file of this object */
	size_t file;	  /* that file, in set->m */
	int wd;		  /* inotify watch, -1 without */
	struct timespec ctime;
	int have_ctime;
	int queued, bad;
	uint64_t reported_ms;
	uint64_t gen; /* new with each new copy of it: older results do not apply */
};

enum job_kind { JOB_OBJECT, JOB_BLOCK, JOB_SCAN };

struct qent {
	enum job_kind kind;
	struct hash_id id; /* object id, or the reported block's hash */
};

struct job {
	struct watch *w;
	uv_work_t work;
	enum job_kind kind;
	struct hash_id id;
	uint64_t gen; /* JOB_OBJECT: of the object */
	char path[4096];
	/* JOB_OBJECT: the file as the manifest has it */
	uint64_t size;
	uint32_t block_size, format;
	uint8_t *hashes;
	/* JOB_BLOCK: where the index has the block */
	uint64_t offset;
	uint32_t len;
	/* results: 0 matches, 1 does not (bad_block, found_size), < 0 error */
	int rc, intact;
	uint64_t bad_block, found_size;
	struct timespec ctime;
	/* JOB_SCAN: every object's metadata, inotify watches added */
	size_t n;
	struct hash_id *ids;
	uint64_t *gens;
	int *wd;
	struct timespec *ctimes;
	uint8_t *have_ctime, *changed;
	int overflow, nospace, ifd;
};

struct watch {
	uv_loop_t *loop;
	struct cache *c;
	struct watch_hooks hooks;
	struct wset **sets;
	size_t nsets;
	struct wobj *objs; /* sorted by id */
	size_t nobjs;
	struct hash_id *by_wd; /* inotify wd -> object id */
	size_t nwd;
	uint64_t gen;
	int ifd;
	uv_poll_t poll;
	uv_timer_t timer;
	struct buf queue; /* struct qent, FIFO */
	size_t qhead, nreports;
	int busy, scanning, scan_again;
	int overflow; /* events may have been missed since the last scan */
	int nospace;  /* said once: no inotify watches left */
	int pending;  /* pool jobs */
	int handles;  /* open libuv handles */
	int closing;
};

static int cmp_obj(const void *a, const void *b)
{
	return memcmp(((const struct wobj *)a)->id.b, ((const struct wobj *)b)->id.b, HASH_LEN);
}

static struct wobj *find_obj(const struct watch *w, const struct hash_id *id)
{
	struct wobj key = {.id = *id};
	if (!w->nobjs) /* objs is NULL then: no bsearch (a peer's report may come first) */
		return NULL;
	return bsearch(&key, w->objs, w->nobjs, sizeof *w->objs, cmp_obj);
}

static struct wset *find_set(const struct watch *w, const char *name)
{
	for (size_t i = 0; i < w->nsets; i++)
		if (!strcmp(w->sets[i]->name, name))
			return w->sets[i];
	return NULL;
}

static void free_set(struct wset *s)
{
	free(s->name);
	free(s->root);
	manifest_free(s->m);
	free(s->ids);
	free(s->damage);
	free(s->bad);
	free(s);
}

static void maybe_free(struct watch *w)
{
	if (!w->closing || w->pending || w->handles)
		return;
	for (size_t i = 0; i < w->nsets; i++)
		free_set(w->sets[i]);
	free(w->sets);
	free(w->objs);
	free(w->by_wd);
	buf_close(&w->queue);
	if (w->ifd >= 0)
		close(w->ifd);
	free(w);
}

static void unwatch(struct watch *w, struct wobj *o)
{
	if (o->wd < 0)
		return;
	if ((size_t)o->wd < w->nwd)
		memset(&w->by_wd[o->wd], 0, sizeof *w->by_wd);
	inotify_rm_watch(w->ifd, o->wd);
	o->wd = -1;
}

static void set_wd(struct watch *w, struct wobj *o, int wd)
{
	if ((size_t)wd >= w->nwd) {
		size_t n = (size_t)wd * 2 + 16;
		w->by_wd = xrealloc(w->by_wd, n * sizeof *w->by_wd);
		memset(w->by_wd + w->nwd, 0, (n - w->nwd) * sizeof *w->by_wd);
		w->nwd = n;
	}
	w->by_wd[wd] = o->id;
	o->wd = wd;
}

/* The objects of every dataset, once each, keeping what was known of those
 * already watched (except from a dataset published afresh: fresh). */
static void rebuild(struct watch *w, struct wset *fresh)
{
	size_t n = 0;
	for (size_t i = 0; i < w->nsets; i++)
		n += w->sets[i]->m->n_files;
	struct wobj *objs = xcalloc(n + 1, sizeof *objs);
	size_t k = 0;
	for (size_t i = 0; i < w->nsets; i++)
		for (size_t f = 0; f < w->sets[i]->m->n_files; f++) {
			if (hash_is_zero(&w->sets[i]->ids[f]))
				continue;
			objs[k] = (struct wobj){.id = w->sets[i]->ids[f],
						.set = w->sets[i],
						.file = f,
						.wd = -1,
						.gen = ++w->gen};
			k++;
		}
	qsort(objs, k, sizeof *objs, cmp_obj);
	size_t u = 0;
	for (size_t i = 0; i < k; i++) {
		if (u && !memcmp(objs[u - 1].id.b, objs[i].id.b, HASH_LEN)) {
			if (objs[i].set == fresh) { /* messages name the newest */
				objs[u - 1].set = fresh;
				objs[u - 1].file = objs[i].file;
			}
			continue;
		}
		objs[u++] = objs[i];
	}
	for (size_t i = 0; i < w->nobjs; i++) {
		struct wobj *old = &w->objs[i];
		struct wobj *now = bsearch(old, objs, u, sizeof *objs, cmp_obj);
		if (!now || old->bad) {
			unwatch(w, old);
			continue;
		}
		struct wset *s = now->set;
		size_t f = now->file;
		*now = *old;
		now->set = s;
		now->file = f;
	}
	free(w->objs);
	w->objs = objs;
	w->nobjs = u;
}

/* ---- hashing and checking, on the pool ---- */

static void hash_object(struct job *j)
{
	j->intact = cache_object_intact(j->w->c, &j->id);
	int fd = open(j->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		j->rc = -errno;
		if (fd >= 0)
			close(fd);
		return;
	}
	j->ctime = st.st_ctim;
	j->found_size = (uint64_t)st.st_size;
	if (j->found_size != j->size) {
		j->rc = 1;
		j->bad_block = UINT64_MAX;
		close(fd);
		return;
	}
	uint8_t *buf = xmalloc(WATCH_READ_CHUNK);
	uint64_t nb = manifest_nblocks(j->size, j->block_size);
	j->rc = 0;
	for (uint64_t b = 0; b < nb && j->rc == 0; b++) {
		uint64_t off = b * j->block_size;
		uint32_t len = manifest_block_len(j->size, j->block_size, b), got = 0;
		struct block_hasher bh;
		struct hash_id h;
		block_hasher_init(&bh, j->format);
		while (got < len && j->rc == 0) {
			size_t want = len - got < WATCH_READ_CHUNK ? len - got : WATCH_READ_CHUNK;
			int rc = io_pread_full(fd, buf, want, off + got);
			if (rc == SB_ETRUNCATED)
				j->rc = 1; /* shrank meanwhile */
			else if (rc < 0)
				j->rc = rc;
			else
				block_hasher_update(&bh, buf, want), got += (uint32_t)want;
		}
		block_hasher_final(&bh, &h);
		if (j->rc == 0 && memcmp(h.b, j->hashes + b * HASH_LEN, HASH_LEN))
			j->rc = 1;
		if (j->rc == 1)
			j->bad_block = b;
	}
	free(buf);
	close(fd);
}

/* One block where the index has it, against the hash it is filed under. */
static void hash_block(struct job *j)
{
	struct cache_block_loc loc;
	int rc = cache_block_find(j->w->c, &j->id, &loc);
	if (rc <= 0) {
		j->rc = rc < 0 ? rc : SB_ENOTFOUND;
		return;
	}
	snprintf(j->path, sizeof j->path, "%s", loc.path);
	j->offset = loc.offset;
	j->len = loc.len;
	int fd = open(loc.path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		j->rc = -errno;
		return;
	}
	uint8_t *buf = xmalloc(loc.len ? loc.len : 1);
	ssize_t got = pread(fd, buf, loc.len, (off_t)loc.offset);
	j->rc = got == (ssize_t)loc.len && block_id_matches(buf, loc.len, &j->id) ? 0 : 1;
	free(buf);
	close(fd);
}

static void scan_objects(struct job *j)
{
	for (size_t i = 0; i < j->n; i++) {
		char path[4096];
		struct stat st;
		cache_object_path(j->w->c, &j->ids[i], path, sizeof path);
		if (j->wd[i] < 0 && j->ifd >= 0) {
			/* Watch first, then look: a write after the look is an event. */
			j->wd[i] = inotify_add_watch(j->ifd, path, WATCH_MASK);
			if (j->wd[i] < 0 && errno == ENOSPC)
				j->nospace = 1;
		}
		int intact = cache_object_intact(j->w->c, &j->ids[i]);
		if (stat(path, &st) < 0) {
			j->changed[i] = 1;
			continue;
		}
		int ctime_moved = j->have_ctime[i] && (st.st_ctim.tv_sec != j->ctimes[i].tv_sec ||
						       st.st_ctim.tv_nsec != j->ctimes[i].tv_nsec);
		/* With a watch and no lost events, a new ctime is a link or a
		 * chmod: a write would have been an event. */
		j->changed[i] = !intact || (ctime_moved && (j->wd[i] < 0 || j->overflow));
		j->ctimes[i] = st.st_ctim;
		j->have_ctime[i] = 1;
	}
}

static void job_work(uv_work_t *wk)
{
	struct job *j = wk->data;
	if (j->kind == JOB_OBJECT)
		hash_object(j);
	else if (j->kind == JOB_BLOCK)
		hash_block(j);
	else
		scan_objects(j);
}

/* ---- results, on the loop ---- */

static void pump(struct watch *w);

/* The file of o no longer matches: out of the index (not served from now
 * on), every dataset with a file of it damaged, and their owner told. */
static void damage(struct watch *w, struct wobj *o, const char *what)
{
	o->bad = 1;
	unwatch(w, o);
	int rc = cache_object_remove(w->c, &o->id);
	if (rc < 0)
		log_error("cannot drop a changed object from the index in %s: %s", cache_dir(w->c),
			  sb_strerror(rc));
	for (size_t i = 0; i < w->nsets; i++) {
		struct wset *s = w->sets[i];
		for (size_t f = 0; f < s->m->n_files; f++) {
			if (memcmp(s->ids[f].b, o->id.b, HASH_LEN))
				continue;
			char *file = path_join(s->root, s->m->files[f]->path);
			log_warn("dataset %s: %s changed on disk: %s; no longer served, fetching "
				 "it again",
				 s->name, file, what);
			s->bad = xrealloc(s->bad, (s->nbad + 1) * sizeof *s->bad);
			s->bad[s->nbad++] = o->id;
			if (!s->damage)
				s->damage =
				    xasprintf("%s changed on disk (%s); repairing", file, what);
			free(file);
			if (w->hooks.damaged)
				w->hooks.damaged(w->hooks.arg, s->name);
			break;
		}
	}
}

static void object_done(struct watch *w, struct job *j)
{
	struct wobj *o = find_obj(w, &j->id);
	if (!o || o->bad || o->gen != j->gen)
		return; /* gone, or a new copy since: its own check follows */
	o->queued = 0;
	char what[96];
	if (j->rc == 0) {
		o->ctime = j->ctime;
		o->have_ctime = 1;
		if (!j->intact) { /* touched, not changed: the index takes it back */
			const FileEntry *f = o->set->m->files[o->file];
			log_info("dataset %s: %s/%s: its time changed, its content did not",
				 o->set->name, o->set->root, f->path);
			int rc = cache_object_set_mtime(w->c, &o->id, f->mtime_ns);
			if (rc < 0)
				log_warn("%s: %s", j->path, sb_strerror(rc));
		}
		return;
	}
	if (j->rc == 1 && j->bad_block == UINT64_MAX)
		snprintf(what, sizeof what, "%llu bytes, not %llu",
			 (unsigned long long)j->found_size, (unsigned long long)j->size);
	else if (j->rc == 1)
		snprintf(what, sizeof what, "block %llu does not match its hash",
			 (unsigned long long)j->bad_block);
	else
		snprintf(what, sizeof what, "cannot read its cache object: %s", sb_strerror(j->rc));
	damage(w, o, what);
}

static void block_done(struct watch *w, struct job *j)
{
	char hex[HASH_HEX_LEN + 1];
	hash_to_hex(&j->id, hex);
	if (j->rc == SB_ENOTFOUND)
		return; /* no longer held here */
	/* objects/ab/<id>: an object; anything else is a partial */
	struct hash_id id;
	const char *base = strrchr(j->path, '/');
	int object = base && hash_from_hex(base + 1, &id) == 0 && strstr(j->path, "/objects/");
	struct wobj *o = object ? find_obj(w, &id) : NULL;
	if (j->rc == 0) {
		log_info("a peer reported block %.16s bad; the copy here matches its hash", hex);
		if (o) /* a peer that says so again is not heard for a while */
			o->reported_ms = uv_now(w->loop);
		return;
	}
	if (!object) {
		log_warn("block %.16s in %s does not match its hash", hex, j->path);
		return;
	}
	if (o && !o->bad) {
		char what[96];
		uint32_t bs = o->set->m->block_size;
		snprintf(what, sizeof what, "block %llu does not match its hash, as a peer said",
			 (unsigned long long)(bs ? j->offset / bs : 0));
		damage(w, o, what);
	} else if (!o) { /* not published here: only out of the index */
		log_warn("cache object %s: block %.16s does not match its hash; dropped", base + 1,
			 hex);
		cache_object_remove(w->c, &id);
	}
}

static void scan_done(struct watch *w, struct job *j)
{
	if (j->nospace && !w->nospace) {
		w->nospace = 1;
		log_warn("no inotify watches left (fs.inotify.max_user_watches): objects "
			 "without one are checked every %d s only",
			 WATCH_SCAN_MS / 1000);
	}
	for (size_t i = 0; i < j->n; i++) {
		struct wobj *o = find_obj(w, &j->ids[i]);
		int wd = j->wd[i];
		int fresh_wd = wd >= 0 && ((size_t)wd >= w->nwd || hash_is_zero(&w->by_wd[wd]));
		if (!o || o->bad || o->gen != j->gens[i]) {
			/* a watch on an inode no longer watched: the object was
			 * replaced meanwhile, and is looked at again */
			if (fresh_wd)
				inotify_rm_watch(w->ifd, wd);
			if (o && !o->bad)
				w->scan_again = 1;
			continue;
		}
		if (fresh_wd && o->wd < 0)
			set_wd(w, o, wd);
		o->ctime = j->ctimes[i];
		o->have_ctime = j->have_ctime[i];
		if (j->changed[i] && !o->queued) {
			o->queued = 1;
			struct qent q = {JOB_OBJECT, o->id};
			buf_append(&w->queue, &q, sizeof q);
		}
	}
}

static void free_job(struct job *j)
{
	free(j->hashes);
	free(j->ids);
	free(j->gens);
	free(j->wd);
	free(j->ctimes);
	free(j->have_ctime);
	free(j->changed);
	free(j);
}

static void job_done(uv_work_t *wk, int status)
{
	struct job *j = wk->data;
	struct watch *w = j->w;
	w->pending--;
	if (j->kind == JOB_SCAN)
		w->scanning = 0;
	else
		w->busy = 0;
	if (!w->closing && status == 0) {
		if (j->kind == JOB_OBJECT)
			object_done(w, j);
		else if (j->kind == JOB_BLOCK)
			block_done(w, j);
		else
			scan_done(w, j);
	}
	free_job(j);
	if (w->closing) {
		maybe_free(w);
		return;
	}
	if (w->scan_again && !w->scanning) {
		w->scan_again = 0;
		watch_scan(w);
	}
	pump(w);
}

static void queue_job(struct watch *w, struct job *j)
{
	j->w = w;
	j->work.data = j;
	w->pending++;
	int rc = uv_queue_work(w->loop, &j->work, job_work, job_done);
	if (rc < 0)
		fatal("uv_queue_work: %s", uv_strerror(rc));
}

/* One hash at a time: a check must not take the pool from fetching. */
static void pump(struct watch *w)
{
	while (!w->busy && !w->closing && w->qhead * sizeof(struct qent) < w->queue.len) {
		struct qent q;
		memcpy(&q, w->queue.ptr + w->qhead++ * sizeof q, sizeof q);
		struct job *j = xcalloc(1, sizeof *j);
		j->kind = q.kind;
		j->id = q.id;
		if (q.kind == JOB_BLOCK) {
			w->nreports--;
		} else {
			struct wobj *o = find_obj(w, &q.id);
			if (!o || o->bad) {
				free(j);
				continue;
			}
			const FileEntry *f = o->set->m->files[o->file];
			j->gen = o->gen;
			cache_object_path(w->c, &o->id, j->path, sizeof j->path);
			j->size = f->size;
			j->block_size = o->set->m->block_size;
			j->format = o->set->m->format;
			j->hashes = xmalloc(f->block_hashes.len + 1);
			memcpy(j->hashes, f->block_hashes.data, f->block_hashes.len);
		}
		w->busy = 1;
		queue_job(w, j);
	}
	if (w->qhead * sizeof(struct qent) == w->queue.len) {
		w->queue.len = 0;
		w->qhead = 0;
	}
}

static void queue_object(struct watch *w, struct wobj *o)
{
	if (o->queued || o->bad)
		return;
	o->queued = 1;
	struct qent q = {JOB_OBJECT, o->id};
	buf_append(&w->queue, &q, sizeof q);
	pump(w);
}

void watch_scan(struct watch *w)
{
	if (w->closing)
		return;
	if (w->scanning) {
		w->scan_again = 1;
		return;
	}
	struct job *j = xcalloc(1, sizeof *j);
	j->kind = JOB_SCAN;
	j->n = w->nobjs;
	j->ids = xcalloc(j->n + 1, sizeof *j->ids);
	j->gens = xcalloc(j->n + 1, sizeof *j->gens);
	j->wd = xcalloc(j->n + 1, sizeof *j->wd);
	j->ctimes = xcalloc(j->n + 1, sizeof *j->ctimes);
	j->have_ctime = xcalloc(j->n + 1, 1);
	j->changed = xcalloc(j->n + 1, 1);
	for (size_t i = 0; i < j->n; i++) {
		j->ids[i] = w->objs[i].id;
		j->gens[i] = w->objs[i].gen;
		j->wd[i] = w->objs[i].wd;
		j->ctimes[i] = w->objs[i].ctime;
		j->have_ctime[i] = (uint8_t)w->objs[i].have_ctime;
	}
	j->overflow = w->overflow;
	j->ifd = w->ifd;
	w->overflow = 0;
	w->scanning = 1;
	queue_job(w, j);
}

static void on_timer(uv_timer_t *t)
{
	watch_scan(t->data);
}

static void on_events(uv_poll_t *p, int status, int events)
{
	struct watch *w = p->data;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	for (;;) {
		ssize_t n = read(w->ifd, buf, sizeof buf);
		if (n <= 0)
			break;
		for (char *e = buf; e < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)e;
			e += sizeof *ev + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				w->overflow = 1;
				continue;
			}
			struct wobj *o = NULL;
			if (ev->wd >= 0 && (size_t)ev->wd < w->nwd &&
			    !hash_is_zero(&w->by_wd[ev->wd]))
				o = find_obj(w, &w->by_wd[ev->wd]);
			if (ev->mask & IN_IGNORED) { /* the watch is gone with its inode */
				if (o && o->wd == ev->wd)
					o->wd = -1;
				if ((size_t)ev->wd < w->nwd)
					memset(&w->by_wd[ev->wd], 0, sizeof *w->by_wd);
			} else if (o) {
				queue_object(w, o);
			} else {
				w->overflow = 1; /* a watch the loop does not know yet */
			}
		}
	}
}

static void handle_closed(uv_handle_t *h)
{
	struct watch *w = h->data;
	w->handles--;
	maybe_free(w);
}

/* ---- the interface ---- */

int watch_new(uv_loop_t *loop, struct cache *c, const struct watch_hooks *hooks, struct watch **out)
{
	struct watch *w = xcalloc(1, sizeof *w);
	w->loop = loop;
	w->c = c;
	w->hooks = *hooks;
	buf_init(&w->queue);
	w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->ifd < 0) {
		log_warn("inotify: %s; cache objects are checked every %d s only", strerror(errno),
			 WATCH_SCAN_MS / 1000);
	} else {
		uv_poll_init(loop, &w->poll, w->ifd);
		w->poll.data = w;
		w->handles++;
		uv_poll_start(&w->poll, UV_READABLE, on_events);
	}
	uv_timer_init(loop, &w->timer);
	w->timer.data = w;
	w->handles++;
	uv_timer_start(&w->timer, on_timer, WATCH_SCAN_MS, WATCH_SCAN_MS);
	*out = w;
	return 0;
}

void watch_free(struct watch *w)
{
	if (!w || w->closing)
		return;
	w->closing = 1;
	if (w->ifd >= 0)
		uv_close((uv_handle_t *)&w->poll, handle_closed);
	uv_close((uv_handle_t *)&w->timer, handle_closed);
}

/* The dataset's version from the index: its manifest and object ids. */
static struct wset *load_set(struct watch *w, const char *name)
{
	struct cache_dataset ds;
	uint8_t *data = NULL;
	size_t len = 0;
	Manifest *m = NULL;
	if (cache_dataset_get(w->c, name, &ds) != 1)
		return NULL;
	int ok = cache_manifest_get(w->c, &ds.manifest_id, &data, &len) == 1 &&
		 manifest_decode(data, len, &m) == 0;
	free(data);
	struct wset *s = NULL;
	if (ok) {
		s = xcalloc(1, sizeof *s);
		s->name = xstrdup(name);
		s->root = xstrdup(ds.target);
		s->m = m;
		s->ids = xcalloc(m->n_files + 1, sizeof *s->ids);
		for (size_t f = 0; f < m->n_files; f++) {
			const FileEntry *e = m->files[f];
			if (e->type == SYNCBIT__FILE_TYPE__FILE_REGULAR && !e->hardlink_to)
				manifest_file_object_id(e->size, m->block_size,
							e->block_hashes.data,
							e->block_hashes.len / HASH_LEN, &s->ids[f]);
		}
	} else {
		log_warn("dataset %s: its manifest cannot be read from %s; its files are not "
			 "watched",
			 name, cache_dir(w->c));
	}
	cache_dataset_close(&ds);
	return s;
}

static void drop_set(struct watch *w, const char *name)
{
	for (size_t i = 0; i < w->nsets; i++)
		if (!strcmp(w->sets[i]->name, name)) {
			/* objects name the set: rebuild() runs before anyone looks */
			free_set(w->sets[i]);
			w->sets[i] = w->sets[--w->nsets];
			return;
		}
}

void watch_dataset(struct watch *w, const char *name)
{
	struct wset *s = load_set(w, name);
	drop_set(w, name);
	if (s) {
		w->sets = xrealloc(w->sets, (w->nsets + 1) * sizeof *w->sets);
		w->sets[w->nsets++] = s;
	}
	rebuild(w, s);
	watch_scan(w); /* watches for the new objects, and a first look */
}

void watch_forget(struct watch *w, const char *name)
{
	drop_set(w, name);
	rebuild(w, NULL);
}

void watch_block_reported(struct watch *w, const struct hash_id *h)
{
	if (w->nreports >= WATCH_REPORTS)
		return;
	/* A node with the token could report without end: once a report
	 * about an object proved wrong, the next WATCH_REPORT_MS go unheard. */
	struct cache_block_loc loc;
	struct hash_id id;
	const char *base;
	if (cache_block_find(w->c, h, &loc) == 1 && (base = strrchr(loc.path, '/')) &&
	    hash_from_hex(base + 1, &id) == 0) {
		struct wobj *o = find_obj(w, &id);
		uint64_t now = uv_now(w->loop);
		if (o && (o->bad || (o->reported_ms && now - o->reported_ms < WATCH_REPORT_MS)))
			return;
	}
	w->nreports++;
	struct qent q = {JOB_BLOCK, *h};
	buf_append(&w->queue, &q, sizeof q);
	pump(w);
}

const char *watch_damage(const struct watch *w, const char *name)
{
	const struct wset *s = w ? find_set(w, name) : NULL;
	return s ? s->damage : NULL;
}

int watch_file_damaged(const struct watch *w, const char *name, const struct hash_id *id)
{
	const struct wset *s = w ? find_set(w, name) : NULL;
	for (size_t i = 0; s && i < s->nbad; i++)
		if (!memcmp(s->bad[i].b, id->b, HASH_LEN))
			return 1;
	return 0;
}

void watch_status(const struct watch *w, const char *name, json_t *o)
{
	const char *damage = watch_damage(w, name);
	json_object_set_new(o, "damage", damage ? json_string(damage) : json_null());
	if (damage)
		json_object_set_new(o, "state", json_string("repairing"));
}
