/* The fetch engine's blocks from the cache and from peers: hashes learnt,
 * blocks received (verified and stored, or held until their hash comes),
 * and what peers offer and are asked for. Loop thread only. */
#include <stdlib.h>
#include <string.h>

#include "agent/fetch_int.h"
#include "common/log.h"

void fetch_try_local(struct fetch *f, uint32_t b)
{
	struct cache_block_loc loc;
	if (f->state[b] != FETCH_NEED)
		return;
	if (cache_block_find(f->c, (const struct hash_id *)fetch_hash_ptr(f, b), &loc) == 1)
		fetch_start_store(f, JOB_LOCAL, b, NULL, NULL, 0);
}

/* The held bytes of block b, unlinked, or NULL. */
static struct held *unhold(struct fetch *f, uint32_t b)
{
	for (struct held **hp = &f->held; *hp; hp = &(*hp)->next)
		if ((*hp)->b == b) {
			struct held *h = *hp;
			*hp = h->next;
			f->peer_storing -= fetch_len(f, b);
			return h;
		}
	return NULL;
}

static void held_free(struct held *h)
{
	free(h->buf);
	free(h->peer);
	free(h);
}

int fetch_block_held(const struct fetch *f, uint32_t b)
{
	for (const struct held *h = f->held; h; h = h->next)
		if (h->b == b)
			return 1;
	return 0;
}

void fetch_add_hashes(struct fetch *f, const uint32_t *blocks, const uint8_t *hashes, size_t n)
{
	int woke = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t b = blocks[i];
		if (b >= f->nblocks || fetch_known(f, b))
			continue;
		memcpy(fetch_hash_ptr(f, b), hashes + i * HASH_LEN, HASH_LEN);
		struct held *h = unhold(f, b);
		if (h && f->state[b] <= FETCH_PEER) {
			/* its bytes came before its hash: checked now */
			fetch_start_store(f, JOB_PEER, b, h->buf, h->peer, 0);
			h->buf = NULL;
			woke = 1;
		} else if (f->state[b] == FETCH_UNKNOWN) {
			/* a request for it may be under way (streamed by its reader) */
			f->state[b] = f->asks[b] ? FETCH_PEER : FETCH_NEED;
			fetch_try_local(f, b);
			woke = 1;
		}
		if (h)
			held_free(h);
	}
	if (woke && f->hooks.wake)
		f->hooks.wake(f->hooks.arg, f);
}

void fetch_block_received(struct fetch *f, uint32_t b, uint8_t *payload, size_t len,
			  const char *peer, int verified)
{
	if (f->dead || f->rc < 0 || b >= f->nblocks || len != fetch_len(f, b) ||
	    (f->state[b] != FETCH_NEED && f->state[b] != FETCH_PEER &&
	     f->state[b] != FETCH_UNKNOWN) ||
	    (!fetch_known(f, b) && (verified || fetch_block_held(f, b)))) {
		free(payload);
		return;
	}
	f->arrived_ms = uv_now(f->loop);
	if (!fetch_known(f, b)) { /* streamed by its reader: wait for the hash */
		struct held *h = xcalloc(1, sizeof *h);
		h->b = b;
		h->buf = payload;
		h->peer = xstrdup(peer);
		h->since_ms = f->arrived_ms;
		h->next = f->held;
		f->held = h;
		f->peer_storing += len;
		return;
	}
	fetch_start_store(f, JOB_PEER, b, payload, peer, verified);
}

void fetch_block_bad(struct fetch *f, uint32_t b, const char *peer, const char *what)
{
	if (f->dead || b >= f->nblocks)
		return;
	f->st.bad_blocks++;
	log_with(LOG_WARN, LOG_KV({"dataset", f->name}, {"peer", peer}),
		 "dataset %s: %s %u from %s does not match its hash; asking elsewhere", f->name,
		 what, b, peer);
	f->tainted[b] = 1; /* once no other peer holds it: the origin, at once */
	if (f->hooks.bad_peer)
		f->hooks.bad_peer(f->hooks.arg, f, peer, b);
}

void fetch_avail_add(struct fetch *f, uint32_t b, int delta)
{
	if (b >= f->nblocks)
		return;
	int v = (int)f->avail[b] + delta;
	f->avail[b] = (uint16_t)(v < 0 ? 0 : v > UINT16_MAX ? UINT16_MAX : v);
	if (f->avail[b])
		f->lonely_ms[b] = 0;
}

uint32_t fetch_avail(const struct fetch *f, uint32_t b)
{
	return b < f->nblocks ? f->avail[b] : 0;
}

void fetch_block_asked(struct fetch *f, uint32_t b)
{
	if (f->asks[b] < UINT8_MAX)
		f->asks[b]++;
	if (f->state[b] == FETCH_NEED)
		f->state[b] = FETCH_PEER;
}

void fetch_block_unasked(struct fetch *f, uint32_t b)
{
	if (f->asks[b])
		f->asks[b]--;
	if (!f->asks[b] && f->state[b] == FETCH_PEER)
		f->state[b] = FETCH_NEED;
}

uint32_t fetch_block_asks(const struct fetch *f, uint32_t b)
{
	return f->asks[b];
}

uint64_t fetch_peer_storing(const struct fetch *f)
{
	return f->peer_storing;
}

void fetch_held_sweep(struct fetch *f, uint64_t now)
{
	for (struct held **hp = &f->held; *hp;) {
		struct held *h = *hp;
		if (now - h->since_ms < FETCH_HELD_MS) {
			hp = &h->next;
			continue;
		}
		*hp = h->next; /* its hash never came: its read failed */
		f->peer_storing -= fetch_len(f, h->b);
		held_free(h);
		if (f->hooks.wake)
			f->hooks.wake(f->hooks.arg, f);
	}
}

void fetch_held_free(struct fetch *f)
{
	while (f->held) {
		struct held *h = f->held;
		f->held = h->next;
		held_free(h);
	}
}
