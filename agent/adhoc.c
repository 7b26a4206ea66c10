#include "agent/adhoc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/daemon.h"
#include "agent/fetch.h"
#include "agent/publish.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/jsonfmt.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/path.h"
#include "common/progress.h"
#include "common/uri.h"
#include "proto/wire.pb-c.h"

enum adhoc_state {
	ADHOC_OPENING,	  /* the target is opened and checked on the pool */
	ADHOC_ASKING,	  /* the scheduler lists the source */
	ADHOC_FETCHING,	  /* the dataset is fetched into the cache */
	ADHOC_PUBLISHING, /* and published into the target on the pool */
	ADHOC_DROPPING,	  /* an rm: the scheduler takes this node off the dataset */
};

static const char *const state_names[] = {"opening", "listing", "fetching", "publishing",
					  "dropping"};

struct adhoc {
	uv_loop_t *loop;
	struct daemon *d;
	struct cache *c;
	struct adhoc_pull *pulls;
	uint64_t next_id;
};

struct adhoc_pull {
	struct adhoc *a; /* NULL once the daemon dropped it with a job in flight */
	struct adhoc_pull *next;
	uint64_t id;
	enum adhoc_state state;
	char *source, *target, *dataset;
	uint32_t block_size;
	uid_t uid;
	gid_t gid;
	int dir_fd; /* the target, once opened */
	struct cache *c;
	adhoc_cb cb;
	void *arg;
	int busy; /* a pool job is in flight */
	uint64_t start_ns;
	/* The fetch this pull reads its counters from, and their values when
	 * the pull found it (a version fetched before counts as reused). */
	const struct fetch *seen;
	struct fetch_stats base, got;
	uint64_t files;
	struct hash_id manifest_id;
	uv_work_t work;
	int rc;	      /* the pool job's outcome */
	char *detail; /* and its one line */
	/* The publish's index updates, for the loop thread to apply. */
	struct cache_updates updates;
	int purge; /* an rm's --purge */
};

struct adhoc *adhoc_new(uv_loop_t *loop, struct daemon *d, struct cache *c)
{
	struct adhoc *a = xcalloc(1, sizeof *a);
	a->loop = loop;
	a->d = d;
	a->c = c;
	return a;
}

static void pull_free(struct adhoc_pull *p)
{
	if (p->a)
		for (struct adhoc_pull **q = &p->a->pulls; *q; q = &(*q)->next)
			if (*q == p) {
				*q = p->next;
				break;
			}
	if (p->dir_fd >= 0)
		close(p->dir_fd);
	free(p->source);
	free(p->target);
	free(p->dataset);
	free(p->detail);
	cache_updates_close(&p->updates);
	free(p);
}

void adhoc_free(struct adhoc *a)
{
	if (!a)
		return;
	while (a->pulls) {
		struct adhoc_pull *p = a->pulls;
		a->pulls = p->next;
		p->a = NULL;
		p->cb = NULL;
		if (!p->busy)
			pull_free(p);
	}
	free(a);
}

void adhoc_cancel(struct adhoc_pull *p)
{
	p->cb = NULL;
	if (!p->busy)
		pull_free(p);
}

static void finish(struct adhoc_pull *p, json_t *msg)
{
	if (p->cb)
		p->cb(p->arg, p, msg, 1);
	else
		json_decref(msg);
	pull_free(p);
}

static void fail(struct adhoc_pull *p, int code, const char *why)
{
	char *shown = uri_redact(why ? why : sb_strerror(code));
	if (p->state == ADHOC_DROPPING)
		log_limited(LOG_WARN, "rm %s: %s", p->dataset, shown);
	else
		log_limited(LOG_WARN, "pull %s: %s", p->source, shown);
	finish(p, json_pack("{s:s, s:i}", "error", shown, "code", code));
	free(shown);
}

json_t *adhoc_progress_json(const struct adhoc_pull *p)
{
	struct fetch_stats st = {0};
	if (p->state == ADHOC_DROPPING)
		return NULL;
	if (p->a && p->dataset && p->state == ADHOC_FETCHING) {
		const struct fetch *f = daemon_fetch(p->a->d, p->dataset);
		if (f)
			fetch_stats(f, &st);
	} else if (p->state == ADHOC_PUBLISHING) {
		st.bytes = st.bytes_have = p->got.bytes;
	}
	return json_pack("{s:b, s:s, s:I, s:I}", "progress", 1, "state", state_names[p->state],
			 "bytes", (json_int_t)st.bytes, "bytes_have", (json_int_t)st.bytes_have);
}

static void send_result(struct adhoc_pull *p)
{
	char hex[HASH_HEX_LEN + 1];
	hash_to_hex(&p->manifest_id, hex);
	uint64_t from_source = p->got.bytes_from_origin, from_peers = p->got.bytes_from_peers;
	uint64_t fetched = from_source + from_peers;
	char *shown = uri_redact(p->source);
	json_t *r = json_object();
	json_object_set_new(r, "source", json_string(shown));
	json_object_set_new(r, "target", p->target ? json_string(p->target) : json_null());
	json_object_set_new(r, "files", json_integer((json_int_t)p->files));
	json_object_set_new(r, "bytes", json_integer((json_int_t)p->got.bytes));
	json_object_set_new(r, "bytes_from_source", json_integer((json_int_t)from_source));
	json_object_set_new(r, "bytes_from_peers", json_integer((json_int_t)from_peers));
	json_object_set_new(
	    r, "bytes_reused",
	    json_integer((json_int_t)(p->got.bytes > fetched ? p->got.bytes - fetched : 0)));
	json_object_set_new(r, "bytes_read", json_integer((json_int_t)from_source));
	json_object_set_new(r, "seconds",
			    jsonfmt_seconds((double)(progress_now_ns() - p->start_ns) / 1e9));
	json_object_set_new(r, "manifest", json_string(hex));
	json_object_set_new(r, "dataset", json_string(p->dataset));
	free(shown);
	finish(p, json_pack("{s:o}", "result", r));
}

/* ---- the target ---- */

/* Open the target without following a symlink on any component and check
 * that the client may write it: root, or the directory's owner. */
static void open_work(uv_work_t *w)
{
	struct adhoc_pull *p = w->data;
	if (!p->target)
		return;
	int root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0) {
		p->rc = -errno;
		return;
	}
	int fd = p->target[1]
		     ? path_open_beneath(root, p->target + 1, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
		     : dup(root);
	close(root);
	struct stat st;
	if (fd < 0) {
		p->rc = fd;
		p->detail = xasprintf("%s: %s%s", p->target, sb_strerror(fd),
				      fd == -ELOOP ? " (the agent follows no symlink in DIR)" : "");
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode)) {
		p->rc = -ENOTDIR;
		p->detail = xasprintf("%s: not a directory", p->target);
	} else if (p->uid != 0 && st.st_uid != p->uid) {
		p->rc = SB_EDENIED;
		p->detail = xasprintf("%s belongs to uid %u, not to uid %u who asked: the agent "
				      "publishes only into a directory its client owns (or pull "
				      "--standalone)",
				      p->target, (unsigned)st.st_uid, (unsigned)p->uid);
	}
	if (p->rc < 0)
		close(fd);
	else
		p->dir_fd = fd;
}

static void open_done(uv_work_t *w, int status)
{
	struct adhoc_pull *p = w->data;
	p->busy = 0;
	if (!p->cb) {
		pull_free(p);
		return;
	}
	if (status < 0 || p->rc < 0) {
		fail(p, status < 0 ? status : p->rc, p->detail);
		return;
	}
	Syncbit__PullRequest m = SYNCBIT__PULL_REQUEST__INIT;
	m.id = p->id;
	m.source = p->source;
	m.block_size = p->block_size;
	p->state = ADHOC_ASKING;
	if (daemon_send_control(p->a->d, SYNCBIT__MSG_TYPE__MSG_PULL, &m.base) < 0)
		fail(p, -ENOTCONN,
		     "the agent is not connected to its scheduler (see syncbit status; pull "
		     "--standalone reads the source without it)");
}

struct adhoc_pull *adhoc_start(struct adhoc *a, const struct adhoc_request *rq, adhoc_cb cb,
			       void *arg)
{
	struct adhoc_pull *p = xcalloc(1, sizeof *p);
	p->a = a;
	p->id = ++a->next_id;
	p->source = xstrdup(rq->source);
	p->target = rq->target ? xstrdup(rq->target) : NULL;
	p->block_size = rq->block_size;
	p->uid = rq->uid;
	p->gid = rq->gid;
	p->dir_fd = -1;
	p->c = a->c;
	p->cb = cb;
	p->arg = arg;
	p->start_ns = progress_now_ns();
	p->next = a->pulls;
	a->pulls = p;
	p->busy = 1;
	p->work.data = p;
	uv_queue_work(a->loop, &p->work, open_work, open_done);
	return p;
}

/* ---- publishing ---- */

/* The directories the publish made in the target belong to the agent's
 * user; they go to the client's, so it can remove what it pulled. Each is
 * opened beneath the target without following a symlink. */
static void give_directories(const Manifest *m, int dir_fd, uid_t uid, gid_t gid)
{
	char *last = NULL;
	for (size_t i = 0; i < m->n_files; i++) {
		const FileEntry *e = m->files[i];
		char *dir = xstrdup(e->path);
		char *slash =
		    e->type == SYNCBIT__FILE_TYPE__FILE_DIRECTORY ? NULL : strrchr(dir, '/');
		if (slash)
			*slash = '\0';
		if ((e->type != SYNCBIT__FILE_TYPE__FILE_DIRECTORY && !slash) ||
		    (last && !strcmp(last, dir))) {
			free(dir);
			continue;
		}
		/* Every component up to dir: the manifest may not list parents. */
		for (char *s = dir;; s++) {
			if (*s && *s != '/')
				continue;
			char c = *s;
			*s = '\0';
			int fd = path_open_beneath(dir_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			struct stat st;
			if (fd >= 0 && fstat(fd, &st) == 0 && st.st_uid != uid &&
			    fchown(fd, uid, gid) < 0)
				log_warn("cannot give %s to uid %u: %s", dir, (unsigned)uid,
					 strerror(errno));
			if (fd >= 0)
				close(fd);
			*s = c;
			if (!c)
				break;
		}
		free(last);
		last = dir;
	}
	free(last);
}

static void publish_work(uv_work_t *w)
{
	struct adhoc_pull *p = w->data;
	uint8_t *enc = NULL;
	size_t len = 0;
	Manifest *m = NULL;
	struct publish_stats st;
	char root[64], *detail = NULL;
	p->rc = cache_manifest_get(p->c, &p->manifest_id, &enc, &len);
	if (p->rc == 0)
		p->rc = SB_ENOTFOUND;
	else if (p->rc > 0)
		p->rc = manifest_decode(enc, len, &m);
	free(enc);
	if (p->rc < 0) {
		p->detail =
		    xasprintf("dataset %s: its manifest: %s", p->dataset, sb_strerror(p->rc));
		return;
	}
	/* Into the directory opened and checked before, by its descriptor. */
	snprintf(root, sizeof root, "/proc/self/fd/%d", p->dir_fd);
	p->rc = publish_tree(p->c, m, root, &st, &p->updates, &detail);
	if (p->rc < 0) {
		const char *tail =
		    detail && !strncmp(detail, root, strlen(root)) ? detail + strlen(root) : NULL;
		p->detail = tail ? xasprintf("%s%s", p->target, tail)
				 : xstrdup(detail ? detail : sb_strerror(p->rc));
	} else if (p->uid != 0) {
		give_directories(m, p->dir_fd, p->uid, p->gid);
	}
	free(detail);
	manifest_free(m);
}

static void publish_done(uv_work_t *w, int status)
{
	struct adhoc_pull *p = w->data;
	p->busy = 0;
	/* Only the loop thread writes the cache index (agent/cache.h); once
	 * the daemon dropped the pull its cache may be gone. */
	int urc = p->a ? cache_updates_apply(p->c, &p->updates) : 0;
	if (urc < 0)
		log_warn("dataset %s: cannot record the published objects in the cache index: %s",
			 p->dataset, sb_strerror(urc));
	cache_updates_close(&p->updates);
	if (!p->cb) {
		pull_free(p);
		return;
	}
	if (status < 0 || p->rc < 0)
		fail(p, status < 0 ? status : p->rc, p->detail);
	else
		send_result(p);
}

/* Regular files of m, as a standalone pull counts them. */
static uint64_t count_files(const Manifest *m)
{
	uint64_t n = 0;
	for (size_t i = 0; i < m->n_files; i++)
		n += m->files[i]->type == SYNCBIT__FILE_TYPE__FILE_REGULAR;
	return n;
}

/* The fetch is complete and recorded: publish into the target, or answer
 * at once for a pull into the cache only. */
static void complete(struct adhoc_pull *p, const struct fetch *f)
{
	struct cache_dataset ds;
	struct fetch_stats now;
	fetch_stats(f, &now);
	p->got = now;
	p->got.bytes_from_origin -= p->base.bytes_from_origin;
	p->got.bytes_from_peers -= p->base.bytes_from_peers;
	p->files = count_files(fetch_manifest(f));
	int rc = cache_dataset_get(p->a->c, p->dataset, &ds);
	if (rc != 1) {
		fail(p, rc < 0 ? rc : SB_ENOTFOUND, "the cache lost the dataset's record");
		return;
	}
	p->manifest_id = ds.manifest_id;
	cache_dataset_close(&ds);
	if (!p->target) {
		send_result(p);
		return;
	}
	p->state = ADHOC_PUBLISHING;
	p->busy = 1;
	uv_queue_work(p->a->loop, &p->work, publish_work, publish_done);
}

/* Where the dataset of p stands on this node. */
static void check(struct adhoc_pull *p)
{
	const struct fetch *f = daemon_fetch(p->a->d, p->dataset);
	uint64_t bytes, have;
	int published;
	const char *error = NULL;
	int assigned = daemon_progress(p->a->d, p->dataset, &bytes, &have, &published, &error) == 0;
	if (!assigned) {
		char *why =
		    xasprintf("dataset %s is not assigned to this node (any more)", p->dataset);
		fail(p, SB_ENOTFOUND, why);
		free(why);
		return;
	}
	if (f && f != p->seen) {
		/* A version published before this pull asked is reused whole;
		 * otherwise every byte this fetch moves counts for the pull. */
		memset(&p->base, 0, sizeof p->base);
		if (!p->seen && fetch_published(f))
			fetch_stats(f, &p->base);
		p->seen = f;
	}
	if (error || (f && fetch_error(f))) {
		fail(p, SB_EHTTP, error ? error : fetch_error(f));
		return;
	}
	if (f && fetch_published(f))
		complete(p, f);
}

/* ---- rm ---- */

static json_t *rm_result(const char *name, const char *source, const char *target, uint64_t objects,
			 uint64_t bytes)
{
	char *shown = uri_redact(source ? source : "");
	json_t *r = json_pack("{s:s, s:s, s:s, s:I, s:I}", "name", name, "source", shown, "target",
			      target ? target : "", "evicted_objects", (json_int_t)objects,
			      "evicted_bytes", (json_int_t)bytes);
	free(shown);
	return json_pack("{s:o}", "result", r);
}

static json_t *rm_error(int code, char *why)
{
	json_t *o = json_pack("{s:s, s:i}", "error", why, "code", code);
	free(why);
	return o;
}

/* The scheduler's answer to a drop: the dataset leaves this node. */
static void dropped(struct adhoc_pull *p, const Syncbit__PullReply *m)
{
	if (m->code < 0) {
		fail(p, m->code, m->message && m->message[0] ? m->message : NULL);
		return;
	}
	uint64_t n = 0, bytes = 0;
	int rc = 0;
	/* Purged before the set goes, which unpins by removing the same
	 * record: the purge needs it to know the dataset's objects. */
	if (p->purge && (rc = cache_dataset_purge(p->c, p->dataset, &n, &bytes)) < 0 &&
	    rc != SB_ENOTFOUND) {
		char *why = xasprintf("%s: cache: %s", p->dataset, sb_strerror(rc));
		fail(p, rc, why);
		free(why);
		daemon_unassign(p->a->d, p->dataset);
		return;
	}
	daemon_unassign(p->a->d, p->dataset);
	log_info("dataset %s: unpinned on request (syncbit rm)%s", p->dataset,
		 p->purge ? " and purged" : "");
	finish(p, rm_result(p->dataset, p->source, NULL, n, bytes));
}

struct adhoc_pull *adhoc_rm(struct adhoc *a, const char *name, const char *path, int purge,
			    adhoc_cb cb, void *arg, json_t **now)
{
	struct cache_dataset ds = {0};
	*now = NULL;
	int found = cache_dataset_get(a->c, name, &ds);
	if (found <= 0 && path)
		found = cache_dataset_find_target(a->c, path, &ds);
	/* A pulled dataset being fetched has no record until complete. */
	const char *dname = found > 0 ? ds.name : name;
	int kind = daemon_pulled(a->d, dname);
	if (kind == 1) {
		struct adhoc_pull *p = xcalloc(1, sizeof *p);
		p->a = a;
		p->id = ++a->next_id;
		p->state = ADHOC_DROPPING;
		p->dataset = xstrdup(dname);
		p->source = xstrdup(found > 0 && ds.source ? ds.source : "");
		p->dir_fd = -1;
		p->c = a->c;
		p->purge = purge;
		p->cb = cb;
		p->arg = arg;
		p->next = a->pulls;
		a->pulls = p;
		cache_dataset_close(&ds);
		Syncbit__PullRequest m = SYNCBIT__PULL_REQUEST__INIT;
		m.id = p->id;
		m.drop = p->dataset;
		if (daemon_send_control(a->d, SYNCBIT__MSG_TYPE__MSG_PULL, &m.base) < 0) {
			pull_free(p);
			*now = rm_error(
			    -ENOTCONN, xasprintf("%s: the agent is not connected to its scheduler, "
						 "which takes this node off the dataset; try again "
						 "once it is (syncbit status)",
						 dname));
			return NULL;
		}
		return p;
	}
	if (kind == 0) {
		*now =
		    rm_error(SB_EDENIED,
			     xasprintf("dataset %s is assigned to this node by its selector, not "
				       "pulled here: `syncbit dataset rm %s` removes it from the "
				       "cluster",
				       dname, dname));
	} else if (found < 0) {
		*now = rm_error(found, xasprintf("rm %s: cache: %s", name, sb_strerror(found)));
	} else if (found == 0) {
		*now = rm_error(SB_ENOTFOUND,
				xasprintf("rm: %s: no pull of that name or into that directory "
					  "here (see 'syncbit cache ls')",
					  name));
	} else {
		uint64_t n = 0, bytes = 0;
		int rc = purge ? cache_dataset_purge(a->c, ds.name, &n, &bytes)
			       : cache_dataset_remove(a->c, ds.name);
		if (rc < 0)
			*now =
			    rm_error(rc, xasprintf("rm %s: cache: %s", ds.name, sb_strerror(rc)));
		else
			*now = rm_result(ds.name, ds.source, ds.target, n, bytes);
	}
	cache_dataset_close(&ds);
	return NULL;
}

/* ---- from the daemon ---- */

int adhoc_reply(struct adhoc *a, const Syncbit__PullReply *m)
{
	struct adhoc_pull *p = a->pulls;
	while (p && (p->id != m->id || (p->state != ADHOC_ASKING && p->state != ADHOC_DROPPING)))
		p = p->next;
	if (p && p->state == ADHOC_DROPPING) {
		dropped(p, m);
	} else if (p && m->code < 0) {
		fail(p, m->code, m->message && m->message[0] ? m->message : NULL);
	} else if (p && (!m->dataset || !m->dataset[0])) {
		fail(p, SB_EPROTO, "the scheduler named no dataset");
	} else if (p) {
		p->dataset = xstrdup(m->dataset);
		p->state = ADHOC_FETCHING;
		log_info("pull %s: as dataset %s", p->source, p->dataset);
		check(p);
	}
	return 0;
}

void adhoc_notify(struct adhoc *a, const char *dataset)
{
	if (!a)
		return;
	for (struct adhoc_pull *p = a->pulls, *next; p; p = next) {
		next = p->next;
		if (p->state == ADHOC_FETCHING && !strcmp(p->dataset, dataset))
			check(p);
	}
}

void adhoc_sched_lost(struct adhoc *a)
{
	if (!a)
		return;
	for (struct adhoc_pull *p = a->pulls, *next; p; p = next) {
		next = p->next;
		if (p->state == ADHOC_ASKING || p->state == ADHOC_DROPPING)
			fail(p, -ECONNRESET,
			     "the agent lost its scheduler before it answered; try again");
	}
}
