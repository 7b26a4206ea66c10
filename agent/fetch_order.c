/* The order in which a fetch asks for blocks: the one place that decides
 * it, for this node's origin share and for requests to peers.
 *
 * Every file of the version has a key; lower keys go first:
 *   1. files a consumer waits for now (fetch_want_file: the registry
 *      mirror, for a blob containerd asked for), on this node only;
 *   2. files of at most FETCH_SMALL_FIRST bytes: the documents that name
 *      the rest (an image's index.json and manifests, a model's config);
 *   3. files in the order a consumer reads them (fetch_order_files: the
 *      layers of an image in its manifest's order), first named first;
 *   4. the rest, in the manifest's order.
 * Within the wanted files, 2-4 order them, so nodes asked for the same
 * files agree on their order.
 *
 * The origin share is read in key order, block by block within a file, by
 * either policy: each node reads its stripes of one file after another.
 * Requests to peers follow the fetch's policy (enum fetch_order):
 * FETCH_ORDER_FILES asks each peer for the needed block it has in the
 * file of lowest key, the rarest of them within that file (ties from a
 * random start), so files complete one after another across the cluster
 * and a consumer can take each as it completes; FETCH_ORDER_RAREST asks
 * for the wanted files' blocks first and otherwise for the rarest block
 * of the whole version, which spreads blocks fastest when only the whole
 * version matters. Where the order is plain rarest first
 * (fetch_order_matters 0), and for the endgame, peer_request.c decides by
 * agent/pick.h, as bench/sim does. Loop thread only. */
#include <stdlib.h>
#include <string.h>

#include "agent/fetch_int.h"
#include "common/buf.h"

#define KEY_WAITED     (1ull << 63) /* set: nobody waits for the file */
#define KEY_LARGE      (1ull << 62) /* set: larger than FETCH_SMALL_FIRST */
#define KEY_RANK_SHIFT 32	    /* 30 bits: the consumer's order; all ones: not named */
#define KEY_RANK_NONE  ((1ull << 30) - 1)

static void key_file(struct fetch *f, size_t fi)
{
	const FileEntry *e = f->m->files[f->files[fi].index];
	uint64_t rank = f->frank[fi] ? f->frank[fi] - 1 : KEY_RANK_NONE;
	f->fkey[fi] = (f->fwant[fi] ? 0 : KEY_WAITED) |
		      (e->size <= FETCH_SMALL_FIRST ? 0 : KEY_LARGE) | rank << KEY_RANK_SHIFT |
		      (uint64_t)fi;
}

enum fetch_order fetch_order_of(const Manifest *m, enum fetch_order asked)
{
	if (asked != FETCH_ORDER_AUTO)
		return asked;
	return m->source && !strncmp(m->source, "oci://", 6) ? FETCH_ORDER_FILES
							     : FETCH_ORDER_RAREST;
}

void fetch_order_setup(struct fetch *f)
{
	f->order = fetch_order_of(f->m, f->o.order);
	f->fkey = xcalloc(f->nfiles + 1, sizeof *f->fkey);
	f->frank = xcalloc(f->nfiles + 1, sizeof *f->frank);
	f->fwant = xcalloc(f->nfiles + 1, 1);
	for (size_t fi = 0; fi < f->nfiles; fi++)
		key_file(f, fi);
}

void fetch_order_free(struct fetch *f)
{
	free(f->fkey);
	free(f->frank);
	free(f->fwant);
}

enum fetch_order fetch_order(const struct fetch *f)
{
	return f->order;
}

int fetch_order_matters(const struct fetch *f)
{
	return f->order == FETCH_ORDER_FILES || f->nwanted > 0;
}

static int cmp_key(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

void fetch_order_queue(struct fetch *f)
{
	const uint32_t *q = (const uint32_t *)f->origin_q.ptr;
	size_t nq = f->origin_q.len / sizeof(uint32_t);
	if (f->origin_head >= nq)
		return;
	uint8_t *queued = xcalloc(f->nblocks + 1, 1);
	for (size_t i = f->origin_head; i < nq; i++)
		queued[q[i]] = 1; /* once each, whatever the queue held */
	uint64_t *keys = xmalloc((f->nfiles + 1) * sizeof *keys);
	memcpy(keys, f->fkey, f->nfiles * sizeof *keys);
	qsort(keys, f->nfiles, sizeof *keys, cmp_key);
	struct buf out = BUF_INIT;
	for (size_t i = 0; i < f->nfiles; i++) {
		const struct ffile *ff = &f->files[keys[i] & UINT32_MAX]; /* the key ends with fi */
		for (uint32_t b = ff->first; b < ff->first + ff->nblocks; b++)
			if (queued[b])
				buf_append(&out, &b, sizeof b);
	}
	buf_close(&f->origin_q);
	f->origin_q = out;
	f->origin_head = 0;
	free(keys);
	free(queued);
}

int fetch_order_pick(const struct fetch *f, const uint8_t *has, uint32_t start, uint32_t *out)
{
	/* FETCH_ORDER_RAREST compares only whether anybody waits for the file. */
	uint64_t mask = f->order == FETCH_ORDER_FILES ? UINT64_MAX : KEY_WAITED;
	uint32_t n = f->nblocks, best = UINT32_MAX;
	uint64_t best_key = 0;
	uint16_t best_avail = 0;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t b = (uint32_t)(((uint64_t)start + k) % n);
		if (f->state[b] != FETCH_NEED || !(has[b / 8] >> (b % 8) & 1))
			continue;
		uint64_t key = f->fkey[f->bfile[b]] & mask;
		if (best == UINT32_MAX || key < best_key ||
		    (key == best_key && f->avail[b] < best_avail)) {
			best = b;
			best_key = key;
			best_avail = f->avail[b];
		}
	}
	if (best == UINT32_MAX)
		return 0;
	*out = best;
	return 1;
}

void fetch_order_files(struct fetch *f, const size_t *files, size_t n)
{
	int changed = 0;
	for (size_t i = 0; i < n; i++) {
		size_t fi = fetch_file_slot(f, files[i]);
		if (fi == f->nfiles || f->frank[fi] || f->nranked >= KEY_RANK_NONE - 1)
			continue; /* first named first: a second word does not move it */
		f->frank[fi] = ++f->nranked;
		key_file(f, fi);
		changed = 1;
	}
	if (changed)
		fetch_order_queue(f);
}

void fetch_want_file(struct fetch *f, size_t index)
{
	size_t fi = fetch_file_slot(f, index);
	if (fi == f->nfiles || f->fwant[fi] || f->files[fi].done)
		return;
	f->fwant[fi] = 1;
	f->nwanted++;
	key_file(f, fi);
	fetch_order_queue(f);
	if (f->hooks.wake) /* peers may have its blocks to offer first */
		f->hooks.wake(f->hooks.arg, f);
}

int fetch_file_wanted(const struct fetch *f, size_t index)
{
	size_t fi = fetch_file_slot(f, index);
	return fi < f->nfiles && f->fwant[fi];
}
