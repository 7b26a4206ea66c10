#include "agent/sync_oci.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent/sync_oci_int.h"
#include "common/err.h"
#include "common/source/oci_auth.h"
#include "common/log.h"
#include "common/progress.h"
#include "common/source/oci_client.h"
#include "common/source/oci_push.h"
#include "common/uri.h"

#define DOCKER_HUB_API "registry-1.docker.io"

/* Destinations. */

int sync_oci_is_dest(const char *s)
{
	return s && !strncasecmp(s, "oci://", 6);
}

static int dest_fail(char **why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int dest_fail(char **why, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	*why = buf_steal(&b);
	return SB_EURI;
}

/* repo[:tag] after the host: a repository name holds no ':', so one
 * starts the tag. */
static int dest_path(const char *s, const char *path, struct sync_oci_dest *d, char **why)
{
	const char *colon = strchr(path, ':');
	if (strchr(path, '@'))
		return dest_fail(why, "%s: a destination takes a tag, not a digest", s);
	if (strchr(path, '?'))
		return dest_fail(why, "%s: a destination takes no ?options", s);
	if (colon && !oci_name_tag_valid(colon + 1))
		return dest_fail(why, "%s: tag '%s' is not a valid tag", s, colon + 1);
	if (colon)
		snprintf(d->tag, sizeof d->tag, "%s", colon + 1);
	char *repo = colon ? xstrndup(path, (size_t)(colon - path)) : xstrdup(path);
	int rc = oci_name_repo(d->registry, repo, d->repo, sizeof d->repo);
	if (rc < 0)
		dest_fail(why, "%s: '%s' is not a valid repository name", s, repo);
	free(repo);
	return rc < 0 ? SB_EURI : 0;
}

int sync_oci_dest_parse(const char *s, const char *insecure, struct sync_oci_dest *d, char **why)
{
	char host[OCI_NAME_HOST_MAX + 1];
	memset(d, 0, sizeof *d);
	*why = NULL;
	if (!sync_oci_is_dest(s))
		return dest_fail(why, "%s: not an oci:// destination", s);
	const char *h = s + strlen("oci://"), *slash = strchr(h, '/');
	if (!slash || slash == h || !slash[1])
		return dest_fail(why, "%s: expected oci://registry/repository[:tag]", s);
	if ((size_t)(slash - h) > OCI_NAME_HOST_MAX)
		return dest_fail(why, "%s: the registry name is too long", s);
	snprintf(host, sizeof host, "%.*s", (int)(slash - h), h);
	if (oci_name_registry(host, d->registry, sizeof d->registry) < 0)
		return dest_fail(why, "%s: '%s' is not a registry host[:port]", s, host);
	int rc = dest_path(s, slash + 1, d, why);
	if (rc < 0)
		return rc;
	const char *api = !strcmp(d->registry, OCI_NAME_DOCKER) ? DOCKER_HUB_API : d->registry;
	int plain = oci_host_is_loopback(d->registry) || oci_host_listed(d->registry, insecure);
	d->base = xasprintf("%s://%s", plain ? "http" : "https", api);
	d->canonical = xasprintf("oci://%s/%s", d->registry, d->repo);
	return 0;
}

void sync_oci_dest_close(struct sync_oci_dest *d)
{
	free(d->base);
	free(d->canonical);
	d->base = d->canonical = NULL;
}

/* The push. */

struct run {
	uv_loop_t loop;
	const struct pull_options *po;
	struct sync_oci_dest *dest;
	struct sync_oci_plan *plan;
	struct sync_oci_result *r;
	struct oci_client *reg;
	struct oci_push *push;
	struct progress prog;
	size_t image; /* the image being pushed */
	size_t next;  /* its next blob to start */
	size_t child; /* its next manifest to put by digest (an index's) */
	struct sync_oci_tag cur;
	struct push_manifest mop;
	int inflight, jobs, rc, ended;
};

static int stopping(const struct run *x)
{
	return x->po->stop && *x->po->stop;
}

static void run_fail(struct run *x, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void run_fail(struct run *x, int rc, const char *fmt, ...)
{
	if (x->rc < 0)
		return;
	struct buf b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	x->rc = rc;
	x->r->error = buf_steal(&b);
	if (x->inflight)
		oci_push_cancel(x->push); /* the others end soon, canceled */
}

/* Nothing in flight: release the registry, so the loop runs dry. */
static void run_end(struct run *x)
{
	if (x->ended)
		return;
	x->ended = 1;
	progress_close(&x->prog);
	oci_push_free(x->push);
	oci_client_free(x->reg);
	x->push = NULL;
	x->reg = NULL;
}

static const char *ref_of(const struct sync_oci_image *im)
{
	return im->tag ? im->tag : im->digest;
}

static void next_image(struct run *x);

static void image_done(struct run *x, int copied)
{
	struct sync_oci_result *r = x->r;
	struct sync_oci_tag *t = &x->cur;
	t->copied = copied;
	copied ? r->copied++ : r->up_to_date++;
	r->uploaded += t->uploaded;
	r->mounted += t->mounted;
	r->present += t->present;
	r->bytes += t->bytes;
	log_info("%s:%s: %s (blobs uploaded %llu, mounted %llu, present %llu)", x->dest->canonical,
		 ref_of(&x->plan->images[x->image]), copied ? "copied" : "up to date",
		 (unsigned long long)t->uploaded, (unsigned long long)t->mounted,
		 (unsigned long long)t->present);
	r->tags = xrealloc(r->tags, (r->ntags + 1) * sizeof *r->tags);
	r->tags[r->ntags++] = *t;
	memset(t, 0, sizeof *t);
	x->image++;
	next_image(x);
}

static void on_manifest_put(struct push_manifest *m)
{
	struct run *x = m->arg;
	if (m->status < 0) {
		run_fail(x, m->status, "%s:%s: %s", x->dest->canonical, m->ref, m->detail);
		run_end(x);
		return;
	}
	oci_push_manifest_close(m);
	image_done(x, 1);
}

static void put_manifest(struct run *x);

/* A manifest of the index went in: the next, or the index. */
static void on_child_put(struct push_manifest *m)
{
	struct run *x = m->arg;
	if (m->status < 0) {
		run_fail(x, m->status, "%s@%s: %s", x->dest->canonical, m->ref, m->detail);
		run_end(x);
		return;
	}
	put_manifest(x);
}

/* The image's manifests by digest first (an index's), then its own
 * under its reference. */
static void put_manifest(struct run *x)
{
	const struct sync_oci_image *im = &x->plan->images[x->image];
	oci_push_manifest_close(&x->mop);
	if (x->child < im->nchildren) {
		const struct sync_oci_doc *c = &im->children[x->child++];
		x->mop = (struct push_manifest){
		    .ref = c->digest,
		    .media_type = c->media_type,
		    .data = c->bytes.ptr,
		    .len = c->bytes.len,
		    .arg = x,
		};
		oci_push_manifest_put(x->push, &x->mop, on_child_put);
		return;
	}
	x->mop = (struct push_manifest){
	    .ref = ref_of(im),
	    .media_type = im->media_type,
	    .data = im->bytes.ptr,
	    .len = im->bytes.len,
	    .arg = x,
	};
	oci_push_manifest_put(x->push, &x->mop, on_manifest_put);
}

static void on_blob(struct push_blob *op);

/* Start the image's blobs, a few at a time; once all are there, its
 * manifest. */
static void pump(struct run *x)
{
	const struct sync_oci_image *im = &x->plan->images[x->image];
	while (x->rc == 0 && x->inflight < x->jobs && x->next < im->nblobs) {
		struct sync_oci_blob *b = &x->plan->blobs[im->blobs[x->next]];
		if (b->state == BLOB_DONE) { /* an earlier image's */
			x->cur.present++;
			x->next++;
			continue;
		}
		if (stopping(x)) {
			run_fail(x, SB_ECANCELED, "%s: stopped before every blob was pushed",
				 x->dest->canonical);
			break;
		}
		x->next++;
		b->state = BLOB_RUNNING;
		snprintf(b->op.digest, sizeof b->op.digest, "%s", b->digest);
		b->op.size = b->size;
		b->op.path = b->path;
		b->op.mount_from = b->mount_from;
		b->op.arg = x;
		x->inflight++;
		oci_push_blob(x->push, &b->op, on_blob);
	}
	if (x->inflight)
		return;
	if (x->rc < 0)
		run_end(x);
	else if (x->next == im->nblobs)
		put_manifest(x);
}

static void on_blob(struct push_blob *op)
{
	struct run *x = op->arg;
	struct sync_oci_blob *b =
	    (struct sync_oci_blob *)((char *)op - offsetof(struct sync_oci_blob, op));
	x->inflight--;
	x->cur.bytes += op->sent;
	if (op->status < 0) {
		b->state = BLOB_WAITING;
		if (op->status != SB_ECANCELED || x->rc == 0)
			run_fail(x, op->status, "%s: blob %s: %s", x->dest->canonical, b->digest,
				 op->detail ? op->detail : sb_strerror(op->status));
	} else {
		b->state = BLOB_DONE;
		if (op->how == PUSH_BLOB_UPLOADED)
			x->cur.uploaded++;
		else
			progress_add(&x->prog, b->size);
		if (op->how == PUSH_BLOB_MOUNTED)
			x->cur.mounted++;
		else if (op->how == PUSH_BLOB_PRESENT)
			x->cur.present++;
	}
	pump(x);
}

/* The destination already has this manifest under the tag: every blob
 * it names is there too (a registry takes no manifest without them). */
static void on_manifest_head(struct push_manifest *m)
{
	struct run *x = m->arg;
	const struct sync_oci_image *im = &x->plan->images[x->image];
	if (m->status < 0) {
		run_fail(x, m->status, "%s:%s: %s", x->dest->canonical, m->ref, m->detail);
		run_end(x);
		return;
	}
	if (!strcmp(m->remote, m->digest)) {
		for (size_t i = 0; i < im->nblobs; i++) {
			struct sync_oci_blob *b = &x->plan->blobs[im->blobs[i]];
			if (b->state != BLOB_DONE)
				progress_add(&x->prog, b->size);
			b->state = BLOB_DONE;
		}
		x->cur.present = im->nblobs;
		image_done(x, 0);
		return;
	}
	x->next = 0;
	x->child = 0;
	pump(x);
}

static void next_image(struct run *x)
{
	if (x->rc == 0 && x->image < x->plan->nimages && stopping(x))
		run_fail(x, SB_ECANCELED, "%s: stopped before every image was pushed",
			 x->dest->canonical);
	if (x->rc < 0 || x->image >= x->plan->nimages) {
		run_end(x);
		return;
	}
	const struct sync_oci_image *im = &x->plan->images[x->image];
	x->cur.tag = im->tag ? xstrdup(im->tag) : NULL;
	snprintf(x->cur.digest, sizeof x->cur.digest, "%s", im->digest);
	oci_push_manifest_close(&x->mop);
	x->mop = (struct push_manifest){
	    .ref = ref_of(im),
	    .media_type = im->media_type,
	    .data = im->bytes.ptr,
	    .len = im->bytes.len,
	    .arg = x,
	};
	oci_push_manifest_head(x->push, &x->mop, on_manifest_head);
}

static void on_sent(void *arg, uint64_t n)
{
	struct run *x = arg;
	progress_add(&x->prog, n);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* user:password for the destination: its own (--dest-registry-user,
 * $DEST_REGISTRY_AUTH), else an auth file's entry for it
 * (common/source/oci_auth.h), else the source's. 0 with *userpwd (heap, or
 * NULL: anonymous), or SB_ECONFIG with x->r->error set. */
static int dest_credentials(struct run *x, const struct sync_oci_options *o, char **userpwd)
{
	const struct pull_options *po = x->po;
	const char *auth = o->dest_auth;
	char *from = NULL;
	*userpwd = NULL;
	if (!auth || !*auth) {
		int rc = oci_auth_lookup(x->dest->registry, x->dest->repo, po->src.oci.authfile,
					 userpwd, &from);
		if (rc < 0) {
			x->r->error =
			    xasprintf("%s: registry credentials: %s", x->dest->canonical, from);
			free(from);
			return rc;
		}
		if (rc == 1) {
			log_debug("%s: credentials from %s", x->dest->canonical, from);
			free(from);
			return 0;
		}
		auth = po->src.oci.auth;
	}
	if (!auth || !*auth)
		auth = getenv("REGISTRY_AUTH");
	if (!auth || !*auth)
		return 0;
	*userpwd = oci_credentials(auth);
	if (!*userpwd)
		log_warn("registry credentials are neither user:password nor its base64; "
			 "pushing without");
	return 0;
}

static int push_all(struct run *x, const struct sync_oci_options *o, const char *insecure)
{
	const struct pull_options *po = x->po;
	char *userpwd = NULL;
	int crc = dest_credentials(x, o, &userpwd);
	if (crc < 0)
		return crc;
	struct oci_client_options ro = {
	    .repo = x->dest->repo,
	    .userpwd = userpwd,
	    .insecure = insecure,
	    .retries = po->src.retries,
	    .connect_seconds = po->src.connect_seconds,
	    .stall_seconds = po->src.stall_seconds,
	    .push = 1,
	};
	uv_loop_init(&x->loop);
	int rc = oci_client_new(&x->loop, &ro, &x->reg);
	free(userpwd);
	if (rc < 0) {
		uv_loop_close(&x->loop);
		x->r->error = xasprintf("%s: %s", x->dest->canonical, sb_strerror(rc));
		return rc;
	}
	struct oci_push_options pushopt = {
	    .base = x->dest->base,
	    .repo = x->dest->repo,
	    .chunk = o->chunk,
	    .restarts = po->src.retries,
	    .sent = on_sent,
	    .sent_arg = x,
	};
	x->push = oci_push_new(&x->loop, x->reg, &pushopt);
	x->jobs = po->src.jobs < 1		      ? 1
		  : po->src.jobs > SYNC_OCI_PUSH_JOBS ? SYNC_OCI_PUSH_JOBS
						      : po->src.jobs;
	progress_init(&x->prog, "push", x->plan->bytes, po->progress);
	next_image(x);
	uv_run(&x->loop, UV_RUN_DEFAULT);
	if (!x->ended) { /* cannot happen: the loop ran dry with work left */
		run_fail(x, SB_ECANCELED, "%s: the push ended early", x->dest->canonical);
		run_end(x);
	}
	uv_walk(&x->loop, close_walk, NULL);
	uv_run(&x->loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&x->loop) != 0)
		log_warn("sync: event loop still had handles at exit");
	free(x->cur.tag);
	oci_push_manifest_close(&x->mop);
	return x->rc;
}

/* The source's repository when it lives on the destination's registry:
 * the blobs can be mounted from it. Into out, or "" otherwise. */
static void same_registry_repo(const char *source, const struct sync_oci_dest *d, char *out,
			       size_t cap)
{
	struct source_uri u;
	char reg[OCI_NAME_HOST_MAX + 1];
	out[0] = '\0';
	if (uri_parse(source, &u) < 0)
		return;
	if (u.kind == URI_OCI && oci_name_registry(u.registry, reg, sizeof reg) == 0 &&
	    !strcmp(reg, d->registry) && oci_name_repo(reg, u.repo, out, cap) < 0)
		out[0] = '\0';
	uri_close(&u);
}

/* What the destination holds now, for later syncs to other repositories
 * of its registry to mount from. */
static void remember(struct cache *c, const char *pulled, const struct sync_oci_dest *d)
{
	struct cache_dataset ds;
	uint8_t *data = NULL;
	size_t len = 0;
	if (cache_dataset_get(c, pulled, &ds) != 1)
		return;
	char *name = xasprintf(SYNC_OCI_DEST_PREFIX "%s", d->canonical);
	if (cache_manifest_get(c, &ds.manifest_id, &data, &len) != 1 ||
	    cache_dataset_set(c, name, ds.source, "", &ds.manifest_id, data, len) < 0)
		log_warn("%s: cannot record what it holds in the cache", d->canonical);
	free(name);
	free(data);
	cache_dataset_close(&ds);
}

static int load_plan(struct cache *c, const struct pull_options *po, const char *pulled, int all,
		     struct run *x)
{
	char *why = NULL;
	char src_repo[OCI_NAME_REPO_MAX + 1];
	int rc = sync_oci_plan_load(c, pulled, all, x->plan, &why);
	if (rc < 0) {
		x->r->error = xasprintf("%s: the cached images: %s", po->source, why);
		free(why);
		return rc;
	}
	if (x->dest->tag[0] && x->plan->nimages != 1) {
		x->r->error = xasprintf("%s names a tag, but %s has %zu images", x->dest->canonical,
					po->source, x->plan->nimages);
		return SB_EURI;
	}
	if (x->dest->tag[0]) {
		free(x->plan->images[0].tag);
		x->plan->images[0].tag = xstrdup(x->dest->tag);
	}
	same_registry_repo(po->source, x->dest, src_repo, sizeof src_repo);
	sync_oci_plan_mounts(c, x->dest, src_repo[0] ? src_repo : NULL, x->plan);
	return 0;
}

int sync_oci_run(struct cache *c, const struct pull_options *po, const struct sync_oci_options *o,
		 struct pull_result *pr, struct sync_oci_result *r)
{
	struct sync_oci_dest dest;
	struct sync_oci_plan plan = {0};
	struct run x = {.po = po, .dest = &dest, .plan = &plan, .r = r};
	const char *insecure = po->src.oci.insecure_registries;
	char *why = NULL;
	memset(r, 0, sizeof *r);
	memset(pr, 0, sizeof *pr);
	if (!insecure || !*insecure)
		insecure = getenv("SYNCBIT_INSECURE_REGISTRY");
	int rc = sync_oci_dest_parse(o->dest, insecure, &dest, &why);
	if (rc < 0) {
		r->error = why;
		return rc;
	}
	uint64_t start = progress_now_ns();
	r->dest = xstrdup(dest.canonical);
	struct pull_options p = *po;
	char *name = po->name ? NULL : xasprintf(SYNC_OCI_SRC_PREFIX "%s", dest.canonical);
	p.target = NULL;
	p.layout = NULL;
	p.name = po->name ? po->name : name;
	p.src.oci.as_served = 1;
	rc = pull_run(c, &p, pr);
	if (rc < 0)
		r->error = xstrdup(pr->error ? pr->error : sb_strerror(rc));
	else if ((rc = load_plan(c, po, p.name, o->all, &x)) == 0 &&
		 (rc = push_all(&x, o, insecure)) == 0)
		remember(c, p.name, &dest);
	sync_oci_plan_close(&plan);
	sync_oci_dest_close(&dest);
	free(name);
	r->seconds = (double)(progress_now_ns() - start) / 1e9;
	return rc;
}

void sync_oci_result_close(struct sync_oci_result *r)
{
	for (size_t i = 0; i < r->ntags; i++)
		free(r->tags[i].tag);
	free(r->tags);
	free(r->dest);
	free(r->error);
	memset(r, 0, sizeof *r);
}
