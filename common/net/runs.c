/* Block maps as runs (common/net/runs.h). */
#include "common/net/runs.h"

#include <stdlib.h>

#include "common/buf.h"
#include "common/err.h"

static int bit(const uint8_t *m, uint32_t b)
{
	return m[b / 8] >> (b % 8) & 1;
}

/* 1 when block b is set in bits and not in base. */
static int wanted(const uint8_t *bits, const uint8_t *base, uint32_t b)
{
	return bit(bits, b) && !(base && bit(base, b));
}

size_t runs_encode(const uint8_t *bits, const uint8_t *base, uint32_t n, uint32_t **out)
{
	uint32_t *r = NULL;
	size_t count = 0, cap = 0;
	uint32_t end = 0; /* where the last run ended */
	for (uint32_t b = 0; b < n;) {
		/* Whole bytes with nothing wanted go at once. */
		if (b % 8 == 0 && b + 8 <= n &&
		    (bits[b / 8] & (uint8_t) ~(base ? base[b / 8] : 0)) == 0) {
			b += 8;
			continue;
		}
		if (!wanted(bits, base, b)) {
			b++;
			continue;
		}
		uint32_t first = b;
		while (b < n && wanted(bits, base, b))
			b++;
		if (count + 2 > cap) {
			cap = cap ? 2 * cap : 16;
			r = xrealloc(r, cap * sizeof *r);
		}
		r[count++] = first - end;
		r[count++] = b - first;
		end = b;
	}
	*out = r;
	return count;
}

size_t runs_wire_bytes(const uint32_t *runs, size_t count)
{
	size_t bytes = 0;
	for (size_t i = 0; i < count; i++) {
		uint32_t v = runs[i];
		do {
			bytes++;
			v >>= 7;
		} while (v);
	}
	return bytes;
}

int runs_apply(const uint32_t *runs, size_t count, uint8_t *bits, uint32_t n)
{
	uint64_t at = 0;
	if (count % 2)
		return SB_EPROTO;
	for (size_t i = 0; i < count; i += 2) {
		at += runs[i];
		if (runs[i + 1] == 0 || at + runs[i + 1] > n)
			return SB_EPROTO;
		at += runs[i + 1];
	}
	at = 0;
	for (size_t i = 0; i < count; i += 2) {
		at += runs[i];
		for (uint32_t k = 0; k < runs[i + 1]; k++, at++)
			bits[at / 8] |= (uint8_t)(1u << (at % 8));
	}
	return 0;
}
