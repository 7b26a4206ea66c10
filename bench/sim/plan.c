/* The scheduler's side of the model: the real cluster state
 * (scheduler/cluster.c over a temporary LMDB directory), origin plans
 * (cluster_plan, cluster_rebalance), hash ingestion (cluster_ingest),
 * heartbeats (cluster_node_report) and the peer overlay (overlay_build),
 * called as scheduler/server.c and server_reconcile.c call them. What the
 * protocol side would send is handed to the nodes directly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/sim/sim.h"
#include "bench/sim/swarm.h"
#include "common/buf.h"
#include "common/path.h"
#include "scheduler/version.h"

/* A 1-file listing of cfg.size bytes, as a source listing gives it. */
static struct sched_version *make_version(const struct sim *s)
{
	struct source_listing l;
	memset(&l, 0, sizeof l);
	l.files = xcalloc(1, sizeof *l.files);
	l.nfiles = 1;
	l.files[0].path = xstrdup("data.bin");
	l.files[0].type = SRC_REGULAR;
	l.files[0].size = s->cfg.size;
	l.files[0].mode = 0644;
	l.files[0].mtime_ns = 1000;
	l.files[0].digest = xasprintf("sim-%llu", (unsigned long long)s->cfg.seed);
	l.version = xstrdup("v1");
	struct sched_version *v = NULL;
	char *detail = NULL;
	int rc = version_from_listing(&l, "file:///sim/data.bin", s->cfg.block, MANIFEST_FORMAT, &v,
				      &detail);
	source_listing_close(&l);
	if (rc < 0) {
		fprintf(stderr, "sim: cannot make the version: %s\n", detail ? detail : "error");
		free(detail);
		return NULL;
	}
	return v;
}

int plan_open(struct sim *s)
{
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp)
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	s->state_dir = xasprintf("%s/syncbit-sim.XXXXXX", tmp);
	if (!mkdtemp(s->state_dir)) {
		fprintf(stderr, "sim: cannot make a directory in %s\n", tmp);
		free(s->state_dir);
		s->state_dir = NULL;
		return -1;
	}
	if (cluster_open(&s->cluster, s->state_dir) < 0) {
		fprintf(stderr, "sim: cannot open the scheduler state in %s\n", s->state_dir);
		return -1;
	}
	struct sched_version *v = make_version(s);
	if (!v)
		return -1;
	if (v->nblocks != s->nb) {
		fprintf(stderr, "sim: the version has %u blocks, the model %u\n", v->nblocks,
			s->nb);
		version_free(v);
		return -1;
	}
	s->cv = cluster_version_add(&s->cluster, v);
	cluster_dataset_set(&s->cluster, "sim", "file:///sim/data.bin", NULL, 0, s->cfg.block,
			    s->cv);
	s->known_batch = xcalloc(s->nb, sizeof *s->known_batch);
	s->batch_start = xcalloc(2, sizeof *s->batch_start);
	s->batch_blocks = xcalloc(s->nb + 1, sizeof *s->batch_blocks);
	return 0;
}

void plan_close(struct sim *s)
{
	if (s->state_dir) {
		if (s->cv)
			cluster_close(&s->cluster);
		path_remove_tree(s->state_dir);
		free(s->state_dir);
	}
	overlay_close(&s->ov);
	free(s->known_batch);
	free(s->batch_start);
	free(s->batch_blocks);
	free(s->fresh);
}

static uint64_t now_ms(const struct sim *s)
{
	return (uint64_t)(s->now * 1000.0) + 1;
}

void plan_node_up(struct sim *s, struct sim_node *n)
{
	Syncbit__Register reg = SYNCBIT__REGISTER__INIT;
	uint8_t key[SECURE_KEY_BYTES];
	for (size_t i = 0; i < sizeof key; i++)
		key[i] = (uint8_t)sim_rand(s);
	char addr[48];
	snprintf(addr, sizeof addr, "10.0.%u.%u:7001", (unsigned)(n - s->nodes) / 250,
		 (unsigned)(n - s->nodes) % 250 + 1);
	reg.node = n->name;
	reg.peer_addr = addr;
	reg.agent_version = (char *)"sim";
	n->cn = cluster_node_register(&s->cluster, n->name, &reg, key, now_ms(s));
	n->cn->conn = n; /* connected: a member */
}

void plan_node_down(struct sim *s, struct sim_node *n)
{
	if (!n->cn)
		return;
	cluster_node_flush(&s->cluster, n->cn);
	n->cn->conn = NULL;
}

void plan_again(struct sim *s, char **gone, size_t ngone)
{
	size_t nm;
	struct cluster_node **m = cluster_members(&s->cluster, s->cv, &nm);
	s->orphans += cluster_plan(&s->cluster, s->cv, gone, ngone);
	s->replans++;
	uint64_t key = overlay_key(m, nm);
	if (!s->ov.n || s->ov.key != key || s->ov.n != nm) {
		overlay_close(&s->ov);
		overlay_build(&s->ov, m, nm);
	}
	free(m);
	swarm_set_peers(s);
	plan_hand_out(s);
}

void plan_hand_out(struct sim *s)
{
	size_t nm;
	struct cluster_node **m = cluster_members(&s->cluster, s->cv, &nm);
	for (size_t i = 0; i < nm; i++) {
		struct sim_node *n = m[i]->conn;
		/* the Assign carries the manifest: every hash known so far */
		if (n->last_batch < s->batch)
			swarm_learn(s, n, s->batch);
		swarm_set_share(s, n, cluster_plan_of(s->cv, n->name));
	}
	free(m);
}

/* The hashes learnt since the last batch go out as one (Hashes). */
void plan_send_hashes(struct sim *s)
{
	if (!s->nfresh)
		return;
	s->batch++;
	s->batch_start = xrealloc(s->batch_start, (s->batch + 2) * sizeof *s->batch_start);
	uint32_t at = s->batch_start[s->batch - 1];
	for (uint32_t i = 0; i < s->nfresh; i++) {
		s->known_batch[s->fresh[i]] = s->batch;
		s->batch_blocks[at + i] = s->fresh[i];
	}
	s->batch_start[s->batch] = at + s->nfresh;
	s->nfresh = 0;
	heap_push(&s->heap, s->now + s->cfg.latency_s, EV_DELIVER, s->batch, 0);
}

void plan_ingested(struct sim *s, struct sim_node *n, uint32_t b)
{
	Syncbit__BlockHash bh = SYNCBIT__BLOCK_HASH__INIT, *one = &bh, *fresh = NULL;
	uint8_t hash[HASH_LEN];
	memset(hash, 0, sizeof hash);
	memcpy(hash, &b, sizeof b);
	hash[HASH_LEN - 1] = 0x5b; /* never all zeros */
	bh.block = b;
	bh.hash.data = hash;
	bh.hash.len = HASH_LEN;
	int completed;
	size_t refused;
	uint32_t example;
	size_t k = cluster_ingest(&s->cluster, s->cv, &one, 1, n->name, &fresh, &completed,
				  &refused, &example);
	s->refused += refused;
	if (k) {
		s->fresh = xrealloc(s->fresh, (s->nfresh + 1) * sizeof *s->fresh);
		s->fresh[s->nfresh++] = b;
		/* the first hashes after a quiet spell go at once, later ones
		 * wait for the timer (scheduler/server.c queue_hashes) */
		if (!s->hashes_timer) {
			plan_send_hashes(s);
			s->hashes_timer = 1;
			heap_push(&s->heap, s->now + SIM_HASHES_S, EV_HASHES, 0, 0);
		}
	}
	if (s->now - s->flushed >= SIM_FLUSH_S) {
		cluster_flush(&s->cluster);
		s->flushed = s->now;
	}
	const char *donor = NULL;
	uint32_t moved = k ? cluster_rebalance(s->cv, n->name, &donor) : 0;
	if (moved) {
		s->moved += moved;
		struct sim_node *d = cluster_node_find(&s->cluster, donor)->conn;
		if (d)
			swarm_set_share(s, d, cluster_plan_of(s->cv, d->name));
		swarm_set_share(s, n, cluster_plan_of(s->cv, n->name));
	}
}

void plan_heartbeat(struct sim *s, struct sim_node *n)
{
	Syncbit__VersionState vs = SYNCBIT__VERSION_STATE__INIT, *one = &vs;
	Syncbit__Bitfield bf = SYNCBIT__BITFIELD__INIT;
	size_t bytes = (s->nb + 7) / 8;
	uint8_t *bits = xcalloc(bytes + 1, 1);
	memcpy(bits, n->have, bytes); /* LSB first, little-endian words */
	bf.bits.data = bits;
	bf.bits.len = bytes;
	bf.nblocks = s->nb;
	vs.dataset = (char *)"sim";
	vs.version_id.data = s->cv->v->id.b;
	vs.version_id.len = HASH_LEN;
	if (n->done) /* with heartbeat deltas */
		vs.have_all = 1;
	else
		vs.have = &bf;
	vs.published = n->done;
	vs.bytes_from_origin = n->from_origin;
	vs.bytes_from_peers = n->from_peers;
	cluster_node_heard(&s->cluster, n->cn, now_ms(s));
	cluster_node_report(&s->cluster, n->cn, &one, 1, now_ms(s));
	free(bits);
}
