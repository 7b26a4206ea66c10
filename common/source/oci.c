/* The oci:// source: one image of a registry repository (by tag or digest),
 * or every tag matching ?tag-regex=, presented as an OCI image layout:
 * oci-layout, index.json (one entry per tag, named by
 * org.opencontainers.image.ref.name) and blobs/sha256/<hex> for each image
 * manifest, config and layer. The small generated files are served from
 * memory; config and layer blobs are read with ranged GETs, in parallel,
 * through one curl multi on the loop. An image index resolves to the
 * manifests of the platforms ?platform= names (linux/amd64 unless it says
 * otherwise; "all" for every one), each an index.json entry with its
 * platform. A Docker schema 2 manifest is kept with OCI media types (its
 * blobs as they are), since layout readers take only those, unless
 * oci.as_served asks for the registry's bytes. The registry's own
 * documents stay in the layout byte for byte under their digests: the
 * index a tag or digest named, and a Docker manifest retyped; an entry
 * taken from one names it (OCI_REGISTRY_DIGEST), so the registry mirror
 * answers with the registry's digests. The listing's version is the
 * digest of the registry's document when there is one.
 *
 * Every manifest is checked against its digest before use, and every blob
 * read from start to end in this run is hashed in order on the thread pool
 * and checked against its digest; a read completes only once its bytes are
 * hashed, so the read that ends a blob with the wrong digest fails with
 * SB_ECORRUPT. A blob read with gaps (a resumed pull, or an agent that gets
 * the other blocks from peers) cannot be hashed here and is not checked.
 *
 * Requests, auth and retries are common/source/oci_client.c's; credentials come from
 * --registry-user or REGISTRY_AUTH. Registries on a loopback address, or
 * named by --insecure-registry, are spoken to over plain HTTP; any other
 * over HTTPS. Callbacks run from the registry's timer or a pool job's
 * completion, never from the call that started the operation.
 *
 * Here: reads, their verification, cancel, free and setup; list() is in
 * oci_list.c. */
#include "common/source/oci_int.h"

#include <errno.h>
#include <inttypes.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/source/filter.h"
#include "common/source/oci_auth.h"
#include "common/source/oci_name.h"

/* Reads, and verification of blobs in order on the pool. */

static void read_deliver(struct oci_read *rd)
{
	struct oci_source *os = rd->os;
	struct source *src = os->src;
	source_done_cb cb = rd->cb;
	void *arg = rd->arg;
	int status = rd->canceled ? SB_ECANCELED : rd->status;
	if (status < 0 && status != SB_ECANCELED && rd->detail)
		source_set_error(src, "%s", rd->detail);
	free(rd->detail);
	free(rd);
	os->reads--;
	cb(src, status, arg);
}

static void read_deferred(struct oci_client_req *r)
{
	struct oci_read *rd = r->arg;
	if (r->status < 0 && !rd->status)
		rd->status = r->status;
	oci_client_req_free(r);
	read_deliver(rd);
}

/* Deliver rd from the loop: never from inside read() or cancel(). */
static void read_defer(struct oci_read *rd)
{
	oci_client_defer(rd->os->reg, 0, NULL, read_deferred, rd);
}

static void hash_work(uv_work_t *w)
{
	struct ofile *f = w->data;
	sha256_update(&f->ctx, f->job->buf, f->job->len);
}

static void pump_hash(struct ofile *f);

static void unverify(struct ofile *f, const char *why)
{
	if (f->unverified || f->verified)
		return;
	f->unverified = 1;
	log_info("%s: %s not checked against its digest in this run (%s)", f->os->shown, f->digest,
		 why);
	while (f->held) {
		struct oci_read *rd = f->held;
		f->held = rd->next;
		read_defer(rd);
	}
	if (f->ctx_open && !f->hashing) {
		sha256_close(&f->ctx);
		f->ctx_open = 0;
	}
}

static void hash_done(uv_work_t *w, int status)
{
	struct ofile *f = w->data;
	struct oci_read *rd = f->job;
	f->hashing = 0;
	f->job = NULL;
	f->hashed += rd->len;
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
			rd->status = SB_ECORRUPT;
			rd->detail = xasprintf("%s: blob %s arrived with digest %s: corrupt in the "
					       "registry or on the way",
					       f->os->shown, f->digest, got);
		}
	}
	pump_hash(f);
	read_deliver(rd);
}

static void pump_hash(struct ofile *f)
{
	struct oci_read *rd = f->held;
	if (f->hashing || !rd || rd->off != f->hashed || f->unverified)
		return;
	if (!f->ctx_open) {
		sha256_init(&f->ctx);
		f->ctx_open = 1;
	}
	f->held = rd->next;
	f->hashing = 1;
	f->job = rd;
	f->work.data = f;
	int rc = uv_queue_work(f->os->loop, &f->work, hash_work, hash_done);
	if (rc < 0)
		fatal("uv_queue_work: %s", uv_strerror(rc));
}

/* A range arrived. Bytes to check wait for those before them, so the read
 * that ends a blob is the one that learns its digest. */
static void blob_fetched(struct oci_client_req *r)
{
	struct oci_read *rd = r->arg;
	struct ofile *f = &rd->os->files[rd->file];
	rd->status = r->status;
	rd->detail = r->detail;
	r->detail = NULL;
	oci_client_req_free(r);
	if (rd->status < 0 || !rd->verify || f->unverified || rd->canceled) {
		if (rd->verify && !f->unverified)
			unverify(f, rd->status < 0 ? "a read failed" : "canceled");
		read_deliver(rd);
		return;
	}
	struct oci_read **at = &f->held;
	while (*at && (*at)->off < rd->off)
		at = &(*at)->next;
	rd->next = *at;
	*at = rd;
	pump_hash(f);
}

/* Operations. */

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
	struct oci_read *rd = xcalloc(1, sizeof *rd);
	rd->os = os;
	rd->file = index;
	rd->off = off;
	rd->len = len;
	rd->buf = buf;
	rd->cb = cb;
	rd->arg = arg;
	os->reads++;
	if (!f->remote || len == 0) {
		if (len)
			memcpy(buf, f->data + off, len);
		read_defer(rd);
		return 0;
	}
	if (!f->verified && !f->unverified) {
		if (off == f->issued) {
			rd->verify = 1;
			f->issued = off + len;
		} else {
			unverify(f, "its reads skip bytes");
		}
	}
	oci_client_get_range(os->reg, xasprintf("%s/v2/%s/blobs/%s", os->base, os->repo, f->digest),
			     f->size, off, len, buf, blob_fetched, rd);
	return 0;
}

static void oci_cancel(struct source *src)
{
	struct oci_source *os = src->impl;
	/* Reads in flight and list()'s request end with SB_ECANCELED through
	 * their callbacks; reads held for hashing are delivered canceled. */
	oci_client_cancel(os->reg);
	for (size_t i = 0; i < os->nfiles; i++) {
		struct ofile *f = &os->files[i];
		for (struct oci_read *rd = f->held; rd; rd = rd->next)
			rd->canceled = 1;
		if (f->job)
			f->job->canceled = 1;
		unverify(f, "canceled");
	}
}

/* What setup made; os itself too. */
static void release(struct oci_source *os)
{
	if (os->has_re)
		regfree(&os->re);
	free(os->base);
	free(os->repo);
	free(os->shown);
	free(os->userpwd);
	free(os->setup_error);
	free(os);
}

static void oci_free(struct source *src)
{
	struct oci_source *os = src->impl;
	if (!os)
		return;
	oci_client_free(os->reg);
	for (size_t i = 0; i < os->nfiles; i++)
		while (os->files[i].held) {
			struct oci_read *rd = os->files[i].held;
			os->files[i].held = rd->next;
			free(rd->detail);
			free(rd);
		}
	source_oci_listing_reset(os);
	release(os);
	src->impl = NULL;
}

static const struct source_ops oci_ops = {
    .name = "oci",
    .list = source_oci_list,
    .read = oci_read,
    .pread = NULL,
    .cancel = oci_cancel,
    .free = oci_free,
};

/* Setup. */

static int setup_names(struct source *src, struct oci_source *os, const char *insecure)
{
	const struct source_uri *u = &src->uri;
	const char *host = u->registry;
	int plain = oci_host_is_loopback(host) || oci_host_listed(host, insecure);
	if (!strcmp(host, DOCKER_HUB) || !strcmp(host, "index." DOCKER_HUB))
		host = DOCKER_HUB_API;
	os->base = xasprintf("%s://%s", plain ? "http" : "https", host);
	if (!strcmp(host, DOCKER_HUB_API) && !strchr(u->repo, '/'))
		os->repo = xasprintf("library/%s", u->repo);
	else
		os->repo = xstrdup(u->repo);
	os->shown = xasprintf("%s/%s", u->registry, u->repo);
	const char *pf = u->platform ? u->platform : DEFAULT_PLATFORM;
	if (oci_platforms_parse(pf, &os->want) < 0) {
		source_set_error(src,
				 "%s: platform \"%s\" is not all or os/arch[/variant][,...] "
				 "(at most %d, none twice)",
				 os->shown, pf, OCI_PLATFORMS_MAX);
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

/* --registry-user (or its file), else $REGISTRY_AUTH, else the auth
 * files skopeo reads (common/source/oci_auth.h). */
static int setup_credentials(struct source *src, struct oci_source *os)
{
	const char *auth = src->opt.oci.auth;
	if (!auth || !*auth)
		auth = getenv("REGISTRY_AUTH");
	if (!auth || !*auth) {
		char reg[OCI_NAME_HOST_MAX + 1], *from = NULL;
		if (oci_name_registry(src->uri.registry, reg, sizeof reg) < 0)
			snprintf(reg, sizeof reg, "%s", src->uri.registry);
		int rc = oci_auth_lookup(reg, os->repo, src->opt.oci.authfile, &os->userpwd, &from);
		if (rc < 0)
			os->setup_error =
			    xasprintf("%s: registry credentials: %s", os->shown, from);
		else if (rc == 1)
			log_debug("%s: credentials from %s", os->shown, from);
		free(from);
		return 0;
	}
	os->userpwd = oci_credentials(auth);
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
	const char *insecure = src->opt.oci.insecure_registries;
	if (!insecure || !*insecure)
		insecure = getenv("SYNCBIT_INSECURE_REGISTRY");
	int rc = setup_names(src, os, insecure);
	if (rc == 0)
		rc = setup_credentials(src, os);
	if (rc == 0 && !os->setup_error && src->opt.filter && src->opt.filter->n)
		os->setup_error = xasprintf("%s: --include/--exclude do not apply to oci:// "
					    "sources: --tag-regex picks the tags",
					    os->shown);
	if (rc == 0) {
		struct oci_client_options ro = {
		    .repo = os->repo,
		    .userpwd = os->userpwd,
		    .insecure = insecure,
		    .retries = src->opt.retries,
		    .connect_seconds = src->opt.connect_seconds,
		    .stall_seconds = src->opt.stall_seconds,
		    .bytes_read = &src->bytes_read,
		    .counters = source_counters(URI_OCI),
		};
		rc = oci_client_new(src->loop, &ro, &os->reg);
	}
	if (rc < 0) {
		release(os);
		return rc;
	}
	src->ops = &oci_ops;
	src->impl = os;
	src->max_parallel = src->opt.jobs > 0 ? src->opt.jobs : 1;
	src->sequential = 0;
	return 0;
}
