/* The agent's registry mirror (`daemon --registry-mirror HOST:PORT`): the
 * read side of the OCI distribution API -- GET /v2/, HEAD and GET of
 * manifests by tag or digest and of blobs (with Range) -- answered from the
 * oci:// datasets published on this node, so that containerd, pointed here
 * by hosts.toml (agent/containerd_hosts.h), pulls images without the
 * registry. The `ns` query parameter containerd adds picks the datasets
 * whose source registry it names.
 *
 * The published version of a dataset is served: manifests from memory
 * after checking them against the version's block hashes and their
 * digests; blobs by sendfile from TARGET/NAME/blobs/sha256/<hex> when the
 * file has the size the manifests declare and the mtime the daemon gave it
 * (a file whose mtime moved is refused and hashed in full once on the pool;
 * it is served again only if it matches its digest; a file the agent found
 * changed is refused until it is put back). While a dataset is being
 * fetched, its manifests and blobs are served as soon as their files are
 * verified cache objects (agent/mirror_early.c), and a request for one
 * still to come waits for it until no bytes of its dataset arrived for
 * wait_ms (an hour at most), its file fetched first on this node. With
 * pull on, a manifest of an image no dataset here holds is fetched
 * through the cluster as an on-demand pull (agent/mirror_pull.c) and
 * served as it arrives. Anything else is a 404 with an OCI error body, at
 * once, so containerd asks its next host.
 * Loop thread only; files are opened and hashed on the pool. */
#ifndef SYNCBIT_MIRROR_H
#define SYNCBIT_MIRROR_H

#include <uv.h>

#include "common/buf.h"

struct daemon;
struct cache;
struct mirror;

struct mirror_config {
	const char *listen; /* host:port */
	const char *target; /* datasets are published at target/NAME */
	struct daemon *d;   /* daemon_published() says what is there */
	struct cache *cache;
	/* A manifest or blob of a dataset being fetched here that is not a
	 * verified cache object yet is waited for until no bytes of its
	 * dataset arrived for this long (0: a 404 at once), and at most
	 * MIRROR_EARLY_WAIT_MAX_MS. */
	uint64_t wait_ms;
	/* A manifest of an image no dataset here holds is pulled through the
	 * cluster on demand (agent/mirror_pull.c) when pull is 1: from the
	 * registries in pull_from (comma-separated host[:port]; NULL or "":
	 * any), for pull_platform (os/arch[/variant]; NULL: this node's),
	 * waiting at most pull_wait_ms for the manifest. */
	int pull;
	const char *pull_from;
	const char *pull_platform;
	uint64_t pull_wait_ms;
};

/* 0, or SB_EURI with *detail (heap) when list (comma-separated registry
 * host[:port], as cfg->pull_from) names something else. */
int mirror_pull_check_from(const char *list, char **detail);
/* 1 when on-demand pulls may read registry ns (folded, as the request's
 * ns parameter is): every registry when list is NULL or empty, else one it
 * names (folded alike; a host without a port stands for all its ports). */
int mirror_pull_allows(const char *list, const char *ns);
/* Listen and serve. 0, or a negative error with *detail (heap). */
int mirror_new(uv_loop_t *loop, const struct mirror_config *cfg, struct mirror **out,
	       char **detail);
/* Stop listening; requests still waiting get 503. The memory goes once
 * the pool jobs in flight are back. NULL is a no-op. */
void mirror_free(struct mirror *m);
/* The bound port. */
int mirror_port(const struct mirror *m);
/* Prometheus text: syncbit_mirror_requests_total{result=...},
 * syncbit_mirror_blob_bytes_total, syncbit_mirror_early_total{kind=...},
 * syncbit_mirror_waits_total and syncbit_mirror_wait_expired_total, and
 * with pulls syncbit_mirror_pulls_total{result=...} and
 * syncbit_mirror_pull_wait_expired_total. NULL adds nothing. */
void mirror_metrics(const struct mirror *m, struct buf *out);
/* Files of dataset name became cache objects, or its fetch ended:
 * requests waiting for them look again. NULL is a no-op. */
void mirror_dataset_changed(struct mirror *m, const char *name);

#endif
