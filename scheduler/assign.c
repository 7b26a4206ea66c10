#include "scheduler/assign.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"

int assign_selector_match(const struct assign_label *sel, size_t nsel,
			  const struct assign_label *labels, size_t nlabels)
{
	for (size_t i = 0; i < nsel; i++) {
		int found = 0;
		for (size_t j = 0; j < nlabels && !found; j++)
			found = !strcmp(sel[i].key, labels[j].key) &&
				!strcmp(sel[i].value, labels[j].value);
		if (!found)
			return 0;
	}
	return 1;
}

int assign_check_label(const char *key, const char *value)
{
	size_t kl = key ? strlen(key) : 0, vl = value ? strlen(value) : 0;
	if (kl == 0 || kl > ASSIGN_LABEL_MAX || vl > ASSIGN_LABEL_MAX)
		return SB_EPROTO;
	for (const char *p = key; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr("._/-", *p)))
			return SB_EPROTO;
	for (const unsigned char *p = (const unsigned char *)value; vl && *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == ',' || *p == '=')
			return SB_EPROTO;
	return 0;
}

static size_t member_of(uint32_t b, uint32_t stripe, size_t n)
{
	return (size_t)((b / stripe) % n);
}

/* The largest number of ranges any member would get with this stripe. A
 * range ends where the next unknown block belongs to another member or is
 * not adjacent. */
static size_t max_ranges(const uint8_t *known, uint32_t nblocks, size_t n, uint32_t stripe,
			 size_t *count)
{
	size_t most = 0;
	uint64_t prev = UINT64_MAX; /* last unknown block seen */
	memset(count, 0, n * sizeof *count);
	for (uint32_t b = 0; b < nblocks; b++) {
		if (assign_bit(known, b))
			continue;
		size_t m = member_of(b, stripe, n);
		if (prev == UINT64_MAX || prev + 1 != b ||
		    member_of((uint32_t)prev, stripe, n) != m)
			if (++count[m] > most)
				most = count[m];
		prev = b;
	}
	return most;
}

static void add_block(struct assign_plan *p, uint32_t b)
{
	if (p->nranges && p->ranges[p->nranges - 1].first + p->ranges[p->nranges - 1].count == b) {
		p->ranges[p->nranges - 1].count++;
	} else {
		/* Capacity doubles at every power of two. */
		if ((p->nranges & (p->nranges - 1)) == 0)
			p->ranges = xrealloc(p->ranges, (p->nranges < 2 ? 4 : 2 * p->nranges) *
							    sizeof *p->ranges);
		p->ranges[p->nranges].first = b;
		p->ranges[p->nranges].count = 1;
		p->nranges++;
	}
	p->nblocks++;
}

uint32_t assign_origin_plan(const uint8_t *known, uint32_t nblocks, size_t n,
			    struct assign_plan *plans)
{
	uint32_t stripe = 1;
	if (n == 0)
		return stripe;
	memset(plans, 0, n * sizeof *plans);
	size_t *count = xcalloc(n, sizeof *count);
	while (stripe < nblocks && stripe < (1u << 31) &&
	       max_ranges(known, nblocks, n, stripe, count) > ASSIGN_RANGES_MAX)
		stripe *= 2;
	free(count);
	for (uint32_t b = 0; b < nblocks; b++)
		if (!assign_bit(known, b))
			add_block(&plans[member_of(b, stripe, n)], b);
	return stripe;
}

void assign_plan_close(struct assign_plan *p)
{
	free(p->ranges);
	memset(p, 0, sizeof *p);
}

uint32_t assign_plan_unknown(const struct assign_plan *p, const uint8_t *known)
{
	uint32_t n = 0;
	for (size_t r = 0; r < p->nranges; r++)
		for (uint32_t k = 0; k < p->ranges[r].count; k++)
			n += !assign_bit(known, p->ranges[r].first + k);
	return n;
}

int assign_plan_any_unknown(const struct assign_plan *p, const uint8_t *known)
{
	for (size_t r = p->nranges; r-- > 0;)
		for (uint32_t k = p->ranges[r].count; k-- > 0;)
			if (!assign_bit(known, p->ranges[r].first + k))
				return 1;
	return 0;
}

/* The blocks of p, ascending (heap; *n of them). */
static uint32_t *plan_blocks(const struct assign_plan *p, uint32_t *n)
{
	uint32_t *out = xmalloc(((size_t)p->nblocks + 1) * sizeof *out);
	*n = 0;
	for (size_t r = 0; r < p->nranges; r++)
		for (uint32_t k = 0; k < p->ranges[r].count; k++)
			out[(*n)++] = p->ranges[r].first + k;
	return out;
}

void assign_plan_add(struct assign_plan *p, const uint32_t *blocks, uint32_t n)
{
	uint32_t np, i = 0, j = 0;
	uint32_t *pb = plan_blocks(p, &np);
	struct assign_plan out = {0};
	while (i < np || j < n)
		add_block(&out, (i < np && (j >= n || pb[i] < blocks[j])) ? pb[i++] : blocks[j++]);
	assign_plan_close(p);
	*p = out;
	free(pb);
}

uint32_t assign_plan_move(struct assign_plan *from, struct assign_plan *to, const uint8_t *known,
			  uint32_t count)
{
	uint32_t nf, nt, moved = 0;
	uint32_t *fb = plan_blocks(from, &nf), *tb = plan_blocks(to, &nt);
	uint8_t *go = xcalloc((size_t)nf + 1, 1);
	for (uint32_t i = nf; i-- > 0 && moved < count;)
		if (!assign_bit(known, fb[i])) {
			go[i] = 1;
			moved++;
		}
	struct assign_plan nfrom = {0}, nto = {0};
	uint32_t i = 0, j = 0;
	while (i < nf || j < nt) {
		if (i < nf && !go[i]) {
			add_block(&nfrom, fb[i++]);
		} else if (i < nf && (j >= nt || fb[i] < tb[j])) {
			add_block(&nto, fb[i++]);
		} else {
			add_block(&nto, tb[j++]);
		}
	}
	assign_plan_close(from);
	assign_plan_close(to);
	*from = nfrom;
	*to = nto;
	free(fb);
	free(tb);
	free(go);
	return moved;
}
