/* Block maps as runs (VersionState.have_runs, have_added): (gap, length)
 * pairs of uint32, each run of held blocks starting gap blocks after the
 * end of the run before (the first: after block 0). A map in mid-fetch is
 * a few stripes and a few hundred runs, where its bits would be nblocks / 8
 * bytes; the blocks added since the last heartbeat are fewer still. Pure. */
#ifndef SYNCBIT_RUNS_H
#define SYNCBIT_RUNS_H

#include <stddef.h>
#include <stdint.h>

/* The blocks set in bits and not in base (NULL: every set block) of a map
 * of n blocks, as runs in *out (malloc'd, freed by the caller; NULL when
 * there are none). Returns the number of uint32 (twice the runs). */
size_t runs_encode(const uint8_t *bits, const uint8_t *base, uint32_t n, uint32_t **out);

/* Bytes the runs take packed on the wire (varints). */
size_t runs_wire_bytes(const uint32_t *runs, size_t count);

/* Set in bits (a map of n blocks) the blocks the runs name. 0, or SB_EPROTO
 * when the count is odd, a length is 0 or a run passes block n; bits is
 * left as it was then. */
int runs_apply(const uint32_t *runs, size_t count, uint8_t *bits, uint32_t n);

#endif
