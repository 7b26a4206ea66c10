/* What each node is told (assignments, unassignments, peers, origin
 * plans) and keeping it in line with the cluster model (server_reconcile). */
#include "scheduler/server.h"
#include "scheduler/server_int.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/net/wire.h"
#include "scheduler/overlay.h"

#include <xxhash.h>

static uint64_t sync_round = 1;
static uint64_t node_pass; /* server_reconcile_node() calls */

/* Peer graphs of recent member lists (every version held by the same nodes
 * shares one), with the hash of each member's peer list once asked for: a
 * join changes a hundred versions' members alike, and each list is hashed
 * once, not once per version. */
#define GRAPHS 4
static struct graph {
	struct overlay o;
	uint64_t *sig; /* per member; 0 until worked out; NULL: slot unused */
	uint64_t used;
} graphs[GRAPHS];
static uint64_t graph_clock;

void server_reconcile_close(struct sched *s)
{
	for (size_t i = 0; i < GRAPHS; i++) {
		overlay_close(&graphs[i].o);
		free(graphs[i].sig);
		graphs[i].sig = NULL;
	}
	for (size_t i = 0; i < s->cluster.nversions; i++) {
		struct cluster_version *cv = s->cluster.versions[i];
		free(cv->members);
		cv->members = NULL;
		cv->members_round = 0;
	}
}

/* The peer graph of cv's members m (members_of). */
static struct graph *graph_of(struct cluster_version *cv, struct cluster_node *const *m, size_t n)
{
	/* The key hashes every member: once per version and round. */
	if (!cv->members_key)
		cv->members_key = overlay_key(m, n);
	struct graph *g = NULL, *oldest = &graphs[0];
	for (size_t i = 0; i < GRAPHS && !g; i++) {
		if (graphs[i].sig && graphs[i].o.key == cv->members_key && graphs[i].o.n == n)
			g = &graphs[i];
		else if (graphs[i].used < oldest->used)
			oldest = &graphs[i];
	}
	if (!g) {
		g = oldest;
		overlay_close(&g->o);
		free(g->sig);
		overlay_build(&g->o, m, n);
		g->sig = xcalloc(n + 1, sizeof *g->sig);
	}
	g->used = ++graph_clock;
	return g;
}

/* Index of the member named name (members are sorted by name:
 * cluster_members), or n. */
static size_t member_find(struct cluster_node *const *m, size_t n, const char *name)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(m[mid]->name, name);
		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return n;
}

/* Index of self among the members, or n. */
static size_t member_index(struct cluster_node *const *m, size_t n, const struct cluster_node *self)
{
	size_t i = member_find(m, n, self->name);
	return i < n && m[i] == self ? i : n;
}

/* ---- what to tell the nodes ------------------------------------------------ */

static void sent_ix_put(struct sched_client *cl, size_t i)
{
	size_t mask = cl->sent_ixcap - 1;
	uint32_t *by_name = cl->sent_ix, *by_version = cl->sent_ix + cl->sent_ixcap;
	size_t h = cl->sent[i].name_hash & mask;
	while (by_name[h])
		h = (h + 1) & mask;
	by_name[h] = (uint32_t)i + 1;
	h = hash_key64(cl->sent[i].version.b) & mask;
	while (by_version[h])
		h = (h + 1) & mask;
	by_version[h] = (uint32_t)i + 1;
}

/* cl's index, rebuilt when stale. */
static void sent_ix_fresh(struct sched_client *cl)
{
	if (cl->sent_ix && !cl->sent_ix_stale)
		return;
	size_t cap = 16;
	while (cap < 2 * cl->nsent + 2)
		cap *= 2;
	free(cl->sent_ix);
	cl->sent_ix = xcalloc(2 * cap, sizeof *cl->sent_ix);
	cl->sent_ixcap = cap;
	for (size_t i = 0; i < cl->nsent; i++)
		sent_ix_put(cl, i);
	cl->sent_ix_stale = 0;
}

struct sent *server_sent_find(struct sched_client *cl, const char *dataset)
{
	if (!cl->nsent)
		return NULL;
	sent_ix_fresh(cl);
	uint64_t h = XXH64(dataset, strlen(dataset), 0);
	size_t mask = cl->sent_ixcap - 1;
	for (size_t j = h & mask; cl->sent_ix[j]; j = (j + 1) & mask) {
		struct sent *e = &cl->sent[cl->sent_ix[j] - 1];
		if (e->name_hash == h && !strcmp(e->dataset, dataset))
			return e;
	}
	return NULL;
}

/* What cl was assigned of version cv, or NULL. */
static struct sent *sent_of_version(struct sched_client *cl, const struct cluster_version *cv)
{
	if (!cl->nsent)
		return NULL;
	sent_ix_fresh(cl);
	size_t mask = cl->sent_ixcap - 1;
	const uint32_t *by_version = cl->sent_ix + cl->sent_ixcap;
	for (size_t j = hash_key64(cv->v->id.b) & mask; by_version[j]; j = (j + 1) & mask) {
		struct sent *e = &cl->sent[by_version[j] - 1];
		if (!memcmp(e->version.b, cv->v->id.b, HASH_LEN))
			return e;
	}
	return NULL;
}

/* A new entry: dataset was assigned version. */
static struct sent *sent_add(struct sched_client *cl, const char *dataset,
			     const struct hash_id *version)
{
	cl->sent = xrealloc(cl->sent, (cl->nsent + 1) * sizeof *cl->sent);
	struct sent *e = &cl->sent[cl->nsent++];
	memset(e, 0, sizeof *e);
	e->dataset = xstrdup(dataset);
	e->name_hash = XXH64(dataset, strlen(dataset), 0);
	e->version = *version;
	if (cl->sent_ix && !cl->sent_ix_stale && 2 * cl->nsent + 2 <= cl->sent_ixcap)
		sent_ix_put(cl, cl->nsent - 1);
	else
		cl->sent_ix_stale = 1;
	return e;
}

static void sent_drop(struct sched_client *cl, struct sent *e)
{
	free(e->dataset);
	*e = cl->sent[--cl->nsent];
	cl->sent_ix_stale = 1;
}

static void peer_info(Syncbit__PeerInfo *v, const struct cluster_node *n)
{
	syncbit__peer_info__init(v);
	v->node = n->name;
	v->addr = n->addr;
	if (n->has_key) {
		v->key.data = (uint8_t *)n->key;
		v->key.len = sizeof n->key;
	}
}

/* The hash of the names and addresses of the members of g that member me
 * is told of (me == n: not a member, told of all). */
static uint64_t peer_sig(struct graph *g, struct cluster_node *const *m, size_t n, size_t me)
{
	if (me < n && g->sig[me])
		return g->sig[me];
	const uint32_t *adj = NULL;
	size_t k = me < n ? overlay_peers(&g->o, me, &adj) : n;
	uint64_t h = 0;
	for (size_t i = 0; i < (adj ? k : n); i++) {
		size_t o = adj ? adj[i] : i;
		if (o != me)
			h = XXH64(&m[o]->ident, sizeof m[o]->ident, h);
	}
	h = h ? h : 1;
	if (me < n)
		g->sig[me] = h;
	return h;
}

/* PeerInfo for the members self is told of (scheduler/overlay.h: every
 * other member, or its peers in the graph when there are many); *sig is a
 * hash of their names and addresses (peer_sig). Free the two arrays. */
static Syncbit__PeerInfo **peer_list(struct cluster_version *cv, struct cluster_node **m, size_t n,
				     const struct cluster_node *self, Syncbit__PeerInfo **store,
				     size_t *count, uint64_t *sig)
{
	struct graph *g = graph_of(cv, m, n);
	size_t me = member_index(m, n, self);
	const uint32_t *adj = NULL;
	size_t k = me < n ? overlay_peers(&g->o, me, &adj) : n;
	Syncbit__PeerInfo *v = xcalloc(k + 1, sizeof *v);
	Syncbit__PeerInfo **p = xcalloc(k + 1, sizeof *p);
	*count = 0;
	for (size_t i = 0; i < (adj ? k : n); i++) {
		const struct cluster_node *o = adj ? m[adj[i]] : m[i];
		if (o == self)
			continue;
		peer_info(&v[*count], o);
		p[*count] = &v[*count];
		(*count)++;
	}
	*sig = peer_sig(g, m, n, me);
	*store = v;
	return p;
}

/* The hash of node n's share of cv's origin plan (0: none). */
static uint64_t origin_sig(const struct cluster_version *cv, const struct cluster_node *n)
{
	const struct assign_plan *p = cluster_plan_of(cv, n->name);
	return p && p->nranges ? XXH64(p->ranges, p->nranges * sizeof *p->ranges, 1) : 0;
}

/* BlockRange list of a node's share of the plan; free the two arrays. */
static Syncbit__BlockRange **origin_list(const struct cluster_version *cv,
					 const struct cluster_node *n, Syncbit__BlockRange **store,
					 size_t *count, uint64_t *sig)
{
	const struct assign_plan *p = cluster_plan_of(cv, n->name);
	size_t k = p ? p->nranges : 0;
	*sig = origin_sig(cv, n);
	Syncbit__BlockRange *v = xcalloc(k + 1, sizeof *v);
	Syncbit__BlockRange **ptrs = xcalloc(k + 1, sizeof *ptrs);
	for (size_t i = 0; i < k; i++) {
		syncbit__block_range__init(&v[i]);
		v[i].first = p->ranges[i].first;
		v[i].count = p->ranges[i].count;
		ptrs[i] = &v[i];
	}
	*store = v;
	*count = k;
	return ptrs;
}

/* The members of cv (cluster_members), worked out once a round. */
static struct cluster_node **members_of(struct sched *s, struct cluster_version *cv, size_t *n)
{
	if (cv->members_round != sync_round || !cv->members) {
		free(cv->members);
		cv->members = cluster_members(&s->cluster, cv, &cv->nmembers);
		cv->members_round = sync_round;
		cv->members_key = 0;
	}
	*n = cv->nmembers;
	return cv->members;
}

/* ASSIGN d to cl; *peers_sig and *origin_sig say what it was told. */
static void send_assign(struct sched *s, struct sched_client *cl, struct cluster_dataset *d,
			uint64_t *peers_sig, uint64_t *origin_sig)
{
	struct cluster_version *cv = d->current;
	Syncbit__Assign m = SYNCBIT__ASSIGN__INIT;
	Syncbit__PeerInfo *pstore;
	Syncbit__BlockRange *rstore;
	size_t nm;
	struct cluster_node **members = members_of(s, cv, &nm);
	m.dataset = d->name;
	m.version_id.data = cv->v->id.b;
	m.version_id.len = HASH_LEN;
	m.manifest = cv->v->m;
	m.peers = peer_list(cv, members, nm, cl->node, &pstore, &m.n_peers, peers_sig);
	m.origin = origin_list(cv, cl->node, &rstore, &m.n_origin, origin_sig);
	m.reason = cv->reason;
	m.pulled = d->pulled;
	size_t size = syncbit__assign__get_packed_size(&m);
	if (size > SERVER_ASSIGN_MAX)
		log_with(LOG_ERROR, LOG_KV({"dataset", d->name}),
			 "dataset %s: its manifest is too large to send", d->name);
	else
		server_pace_send(s, cl, SYNCBIT__MSG_TYPE__MSG_ASSIGN, &m.base, size);
	free(m.peers);
	free(pstore);
	free(m.origin);
	free(rstore);
}

void server_send_unassign(struct sched_client *cl, const char *dataset)
{
	Syncbit__Unassign m = SYNCBIT__UNASSIGN__INIT;
	m.dataset = (char *)dataset;
	log_with(LOG_INFO, LOG_KV({"node", cl->node->name}, {"dataset", dataset}),
		 "node %s: dataset %s is no longer assigned to it", cl->node->name, dataset);
	server_send_msg(cl, SYNCBIT__MSG_TYPE__MSG_UNASSIGN, &m.base);
}

/* PEERS and ORIGIN of cv to cl (e: what it was assigned of cv; its node
 * is member me), each only when it differs from what cl was last told. */
static void send_peers_origin(struct sched *s, struct sched_client *cl, struct sent *e,
			      struct cluster_version *cv, struct cluster_node **members, size_t nm,
			      size_t me)
{
	uint64_t psig = peer_sig(graph_of(cv, members, nm), members, nm, me);
	uint64_t osig = origin_sig(cv, cl->node);
	if (e->peers_sig != psig && cl->peers_shared) {
		/* One Peers at the end of the round for every version with
		 * this list (send_peers_due). */
		cl->peers_due =
		    xrealloc(cl->peers_due, (cl->npeers_due + 1) * sizeof *cl->peers_due);
		cl->peers_due[cl->npeers_due++] = (struct peers_due){cv, psig};
	} else if (e->peers_sig != psig) {
		Syncbit__Peers p = SYNCBIT__PEERS__INIT;
		Syncbit__PeerInfo *pstore;
		p.version_id.data = cv->v->id.b;
		p.version_id.len = HASH_LEN;
		p.peers = peer_list(cv, members, nm, cl->node, &pstore, &p.n_peers, &psig);
		server_send_msg(cl, SYNCBIT__MSG_TYPE__MSG_PEERS, &p.base);
		free(p.peers);
		free(pstore);
	}
	if (e->origin_sig != osig) {
		Syncbit__Origin o = SYNCBIT__ORIGIN__INIT;
		Syncbit__BlockRange *rstore;
		o.version_id.data = cv->v->id.b;
		o.version_id.len = HASH_LEN;
		o.blocks = origin_list(cv, cl->node, &rstore, &o.n_blocks, &osig);
		o.reason = cv->reason;
		server_send_msg(cl, SYNCBIT__MSG_TYPE__MSG_ORIGIN, &o.base);
		free(o.blocks);
		free(rstore);
	}
	e->peers_sig = psig;
	e->origin_sig = osig;
}

static void send_origin(struct sched_client *cl, struct cluster_version *cv)
{
	Syncbit__Origin o = SYNCBIT__ORIGIN__INIT;
	Syncbit__BlockRange *rstore;
	struct sent *e = sent_of_version(cl, cv);
	uint64_t osig;
	if (!e)
		return; /* its Assign waits for room and will carry it */
	o.version_id.data = cv->v->id.b;
	o.version_id.len = HASH_LEN;
	o.blocks = origin_list(cv, cl->node, &rstore, &o.n_blocks, &osig);
	o.reason = cv->reason;
	server_send_msg(cl, SYNCBIT__MSG_TYPE__MSG_ORIGIN, &o.base);
	e->origin_sig = osig;
	free(o.blocks);
	free(rstore);
}

/* cl's node read its whole share and took `moved` unknown blocks over from
 * donor's: both hear their new shares. */
void server_send_share_moved(struct sched *s, struct cluster_version *cv, struct sched_client *cl,
			     const char *donor, uint32_t moved)
{
	snprintf(cv->reason, sizeof cv->reason,
		 "node %s read its share; %u block%s of node %s's share moved to it",
		 cl->node->name, moved, moved > 1 ? "s" : "", donor);
	log_info("%s: origin plan: %s", cv->v->m->source, cv->reason);
	send_origin(cl, cv);
	struct cluster_node *n = cluster_node_find(&s->cluster, donor);
	struct sched_client *o = n ? server_client_of(n) : NULL;
	if (o && o->conn)
		send_origin(o, cv);
}

/* The Peers cl's versions wait for: one message per distinct list, the
 * other versions with that list in its `also`. */
static void send_peers_due(struct sched *s, struct sched_client *cl)
{
	struct peers_due *due = cl->peers_due;
	size_t n = cl->node ? cl->npeers_due : 0; /* none: it registered again elsewhere */
	ProtobufCBinaryData *also = xcalloc(n + 1, sizeof *also);
	for (size_t i = 0; i < n; i++) {
		if (!due[i].cv)
			continue;
		Syncbit__Peers p = SYNCBIT__PEERS__INIT;
		Syncbit__PeerInfo *pstore;
		struct cluster_version *cv = due[i].cv;
		size_t nm, nalso = 0;
		uint64_t sig;
		struct cluster_node **members = members_of(s, cv, &nm);
		p.version_id.data = cv->v->id.b;
		p.version_id.len = HASH_LEN;
		p.peers = peer_list(cv, members, nm, cl->node, &pstore, &p.n_peers, &sig);
		for (size_t j = i + 1; j < n; j++) {
			if (!due[j].cv || due[j].sig != due[i].sig)
				continue;
			also[nalso].data = due[j].cv->v->id.b;
			also[nalso++].len = HASH_LEN;
			due[j].cv = NULL;
		}
		p.also = also;
		p.n_also = nalso;
		server_send_msg(cl, SYNCBIT__MSG_TYPE__MSG_PEERS, &p.base);
		free(p.peers);
		free(pstore);
	}
	free(also);
	free(cl->peers_due);
	cl->peers_due = NULL;
	cl->npeers_due = 0;
}

/* ---- reconcile -------------------------------------------------------------- */

/* ---- re-plan ---------------------------------------------------------------- */

#define LATE_MARK " late" /* ends the line of a late holder */

/* What changed between the holders of the last plan and the members now:
 * who left (heap copies: they may be forgotten), joined or turned late
 * (the members' names), how many were heard again. */
struct holders_change {
	char **gone;
	const char **joined, **late;
	size_t ngone, njoined, nlate, back;
	uint32_t moved, moved_late, orphans;
};

#define PUSH(arr, n, item)                                          \
	do {                                                        \
		(arr) = xrealloc((arr), ((n) + 1) * sizeof *(arr)); \
		(arr)[(n)++] = (item);                              \
	} while (0)

/* One line of old ("name addr[ failing][ late]"): its name, and whether late. */
struct holder {
	char *name;
	int late;
};

static int holder_cmp(const void *a, const void *b)
{
	return strcmp(((const struct holder *)a)->name, ((const struct holder *)b)->name);
}

/* The holders old names, sorted by name as the members are (they were
 * written from a member list; sorted again should they not be). */
static struct holder *holders_parse(const char *old, size_t *count)
{
	struct holder *out = NULL;
	size_t cap = 0, ml = strlen(LATE_MARK);
	int sorted = 1;
	*count = 0;
	for (const char *p = old; p && *p;) {
		const char *sp = strchr(p, ' '), *nl = strchr(p, '\n');
		if (!sp || !nl)
			break;
		if (*count == cap) {
			cap = cap ? 2 * cap : 64;
			out = xrealloc(out, cap * sizeof *out);
		}
		struct holder *h = &out[(*count)++];
		h->name = xstrndup(p, (size_t)(sp - p));
		h->late = (size_t)(nl - p) > ml && !memcmp(nl - ml, LATE_MARK, ml);
		if (*count > 1 && strcmp(out[*count - 2].name, h->name) >= 0)
			sorted = 0;
		p = nl + 1;
	}
	if (!sorted)
		qsort(out, *count, sizeof *out, holder_cmp);
	return out;
}

/* Walk the old holders h and the members m, both sorted by name, once. */
static void holders_diff(const struct holder *h, size_t nh, int had_holders,
			 struct cluster_node **m, size_t n, struct holders_change *ch)
{
	size_t i = 0, j = 0;
	memset(ch, 0, sizeof *ch);
	while (i < nh || j < n) {
		int c = i == nh ? 1 : j == n ? -1 : strcmp(h[i].name, m[j]->name);
		if (c < 0) {
			PUSH(ch->gone, ch->ngone, xstrdup(h[i++].name));
		} else if (c > 0) {
			if (had_holders)
				PUSH(ch->joined, ch->njoined, m[j]->name);
			j++;
		} else {
			if (m[j]->late && !h[i].late)
				PUSH(ch->late, ch->nlate, m[j]->name);
			else if (!m[j]->late && h[i].late)
				ch->back++;
			i++;
			j++;
		}
	}
}

/* Unknown blocks the named nodes' old shares held. */
static uint32_t moved_blocks(const struct cluster_version *cv, const char *const *names, size_t n)
{
	uint32_t moved = 0;
	for (size_t g = 0; g < n; g++) {
		const struct assign_plan *p = cluster_plan_of(cv, names[g]);
		for (size_t r = 0; p && r < p->nranges; r++)
			for (uint32_t b = 0; b < p->ranges[r].count; b++)
				moved += !assign_bit(cv->v->known, p->ranges[r].first + b);
	}
	return moved;
}

static void join_names(struct buf *out, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n && out->len < CLUSTER_REASON_MAX; i++)
		buf_printf(out, "%s%s", i ? ", " : "", names[i]);
}

/* "node a left; its 12 blocks reassigned; 3 blocks only it held come from
 * the origin again; node c is late (no heartbeat for 1.5 intervals): its 9
 * blocks reassigned; node b joined; 40 unknown blocks over 3 nodes". */
static void plan_reason(const struct cluster_version *cv, size_t n, const struct holders_change *ch,
			struct buf *out)
{
	int many = ch->ngone > 1;
	if (ch->ngone) {
		buf_printf(out, "%s ", many ? "nodes" : "node");
		join_names(out, (const char *const *)ch->gone, ch->ngone);
		buf_printf(out, " left; %s %u %s reassigned; ", many ? "their" : "its", ch->moved,
			   ch->moved == 1 ? "block" : "blocks");
	}
	if (ch->orphans)
		buf_printf(out, "%u block%s only %s held come%s from the origin again; ",
			   ch->orphans, ch->orphans > 1 ? "s" : "", many ? "they" : "it",
			   ch->orphans > 1 ? "" : "s");
	if (ch->nlate) {
		buf_printf(out, "%s ", ch->nlate > 1 ? "nodes" : "node");
		join_names(out, ch->late, ch->nlate);
		buf_printf(out, " %s late (no heartbeat for 1.5 intervals): %s %u %s reassigned; ",
			   ch->nlate > 1 ? "are" : "is", ch->nlate > 1 ? "their" : "its",
			   ch->moved_late, ch->moved_late == 1 ? "block" : "blocks");
	}
	if (ch->back)
		buf_printf(out, "%zu late node%s heard again; ", ch->back, ch->back > 1 ? "s" : "");
	if (ch->njoined) {
		buf_printf(out, "node ");
		join_names(out, ch->joined, ch->njoined);
		buf_printf(out, " joined; ");
	}
	uint32_t unknown = cv->v->nblocks - cv->v->nknown;
	if (n == 0)
		buf_printf(out, "no node holds it");
	else if (unknown == 0)
		buf_printf(out, "%s %u block %s known: blocks come from peers",
			   cv->v->nblocks == 1 ? "the" : "all", cv->v->nblocks,
			   cv->v->nblocks == 1 ? "hash" : "hashes");
	else
		buf_printf(out, "%u unknown %s over %zu node%s", unknown,
			   unknown == 1 ? "block" : "blocks", n, n > 1 ? "s" : "");
	if (cv->stripe > 1)
		buf_printf(out, " (stripe %u)", cv->stripe);
}

/* The holders' text: "name addr[ failing][ late]" lines, in member order. */
static void holders_text(const struct cluster_version *cv, struct cluster_node **m, size_t n,
			 struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		buf_append_str(out, m[i]->name);
		buf_append(out, " ", 1);
		buf_append_str(out, m[i]->addr);
		if (cluster_node_failing(m[i], cv))
			buf_append_str(out, " failing");
		if (m[i]->late)
			buf_append_str(out, LATE_MARK);
		buf_append(out, "\n", 1);
	}
}

/* Re-plan cv when its holders changed since they were last told. */
static void replan_if_changed(struct sched *s, struct cluster_version *cv)
{
	size_t n;
	struct cluster_node **m = members_of(s, cv, &n);
	/* Every round and version: a hash first, the text only on a change. */
	uint64_t sig = n;
	for (size_t i = 0; i < n; i++) {
		uint64_t x[2] = {m[i]->ident, (uint64_t)cluster_node_failing(m[i], cv) |
						  (uint64_t)m[i]->late << 1};
		sig = XXH64(x, sizeof x, sig);
	}
	int hold = cv->nplans && s->plan_hold_until && uv_now(&s->loop) < s->plan_hold_until;
	if (hold || (cv->holders && cv->holders_sig == sig))
		return;
	struct buf now = BUF_INIT, reason = BUF_INIT;
	holders_text(cv, m, n, &now);
	size_t nh;
	struct holder *h = holders_parse(cv->holders, &nh);
	struct holders_change ch;
	holders_diff(h, nh, cv->holders != NULL, m, n, &ch);
	ch.moved = moved_blocks(cv, (const char *const *)ch.gone, ch.ngone);
	ch.moved_late = moved_blocks(cv, ch.late, ch.nlate);
	ch.orphans = cluster_plan(&s->cluster, cv, ch.gone, ch.ngone);
	plan_reason(cv, n, &ch, &reason);
	for (size_t i = 0; i < nh; i++)
		free(h[i].name);
	free(h);
	snprintf(cv->reason, sizeof cv->reason, "%s", buf_cstr(&reason));
	log_info("%s: origin plan: %s", cv->v->m->source, cv->reason);
	free(cv->holders);
	cv->holders = xstrdup(now.len ? buf_cstr(&now) : "");
	cv->holders_sig = sig;
	cv->changed = 1;
	for (size_t i = 0; i < ch.ngone; i++)
		free(ch.gone[i]);
	free(ch.gone);
	free(ch.joined);
	free(ch.late);
	buf_close(&now);
	buf_close(&reason);
}

void server_reconcile_open_pass(struct sched *s)
{
	(void)s;
	sync_round++; /* the member lists of the last round may be stale */
}

/* ASSIGN what is new to the node, UNASSIGN what left it. Assigns wait
 * for room (scheduler/server_pace.c): the node is queued for the rest. */
void server_reconcile_node(struct sched *s, struct sched_client *cl)
{
	struct cluster *c = &s->cluster;
	uint64_t pass = ++node_pass;
	for (size_t i = 0; i < c->ndatasets; i++) {
		struct cluster_dataset *d = c->datasets[i];
		/* Entries are made in the order of the datasets: look there first. */
		struct sent *e = i < cl->nsent && !strcmp(cl->sent[i].dataset, d->name)
				     ? &cl->sent[i]
				     : server_sent_find(cl, d->name);
		if (e)
			e->seen = pass;
		int want = d->current && cluster_assigned(d, cl->node);
		if (want && (!e || memcmp(e->version.b, d->current->v->id.b, HASH_LEN))) {
			if (!server_pace_room(s, cl)) {
				server_pace_wait(s, cl);
				continue;
			}
			uint64_t psig, osig;
			send_assign(s, cl, d, &psig, &osig);
			if (!e) {
				e = sent_add(cl, d->name, &d->current->v->id);
			} else {
				e->version = d->current->v->id;
				cl->sent_ix_stale = 1;
			}
			e->seen = pass;
			e->round = sync_round;
			e->peers_sig = psig;
			e->origin_sig = osig;
		} else if (!want && e) {
			server_send_unassign(cl, d->name);
			sent_drop(cl, e);
		}
	}
	/* What is left unseen was of datasets that are gone. */
	for (size_t i = 0; i < cl->nsent;) {
		if (cl->sent[i].seen == pass) {
			i++;
			continue;
		}
		server_send_unassign(cl, cl->sent[i].dataset);
		sent_drop(cl, &cl->sent[i]);
	}
}

static void reconcile_due(uv_timer_t *t)
{
	server_reconcile(t->data);
}

void server_reconcile_soon(struct sched *s)
{
	if (s->stopping || uv_is_active((uv_handle_t *)&s->reconcile))
		return;
	if (s->reconcile_cost_ms == 0) {
		server_reconcile(s); /* a reconcile is cheap: at once, as before */
		return;
	}
	uint64_t delay = 2 * s->reconcile_cost_ms;
	delay = delay < SERVER_RECONCILE_MIN_MS ? SERVER_RECONCILE_MIN_MS : delay;
	delay = delay > SERVER_RECONCILE_MAX_MS ? SERVER_RECONCILE_MAX_MS : delay;
	uv_timer_start(&s->reconcile, reconcile_due, delay, 0);
}

void server_reconcile(struct sched *s)
{
	struct cluster *c = &s->cluster;
	if (s->stopping)
		return;
	uint64_t began = uv_hrtime();
	uv_timer_stop(&s->reconcile); /* this one covers what it waited for */
	sync_round++;
	for (size_t i = 0; i < c->nversions; i++)
		if (c->versions[i]->refs > 0)
			replan_if_changed(s, c->versions[i]);
	for (struct sched_client *cl = s->clients; cl; cl = cl->next)
		if (cl->node && cl->conn)
			server_reconcile_node(s, cl);
	for (size_t i = 0; i < c->nversions; i++) {
		struct cluster_version *cv = c->versions[i];
		if (!cv->changed)
			continue;
		cv->changed = 0;
		/* The round's member list: its overlay key is computed once,
		 * not once per member (n names hashed n times). */
		size_t n;
		struct cluster_node **m = members_of(s, cv, &n);
		for (size_t j = 0; j < n; j++) {
			struct sched_client *cl = server_client_of(m[j]);
			struct sent *e = cl ? sent_of_version(cl, cv) : NULL;
			/* none: its Assign waits for room and will carry both;
			 * sent in this round: it carried them */
			if (e && e->round != sync_round)
				send_peers_origin(s, cl, e, cv, m, n, j);
		}
	}
	for (struct sched_client *cl = s->clients; cl; cl = cl->next)
		if (cl->npeers_due && cl->conn)
			send_peers_due(s, cl);
	s->reconcile_cost_ms = (uv_hrtime() - began) / 1000000;
}
