/* Whole reads and writes on a descriptor: the loops that retry EINTR and
 * short transfers until every byte moved, in one place. Blocking (pool
 * threads, or descriptors known not to block); thread-safe. */
#ifndef SYNCBIT_IO_H
#define SYNCBIT_IO_H

#include <stddef.h>
#include <stdint.h>

/* pread exactly n bytes at off into p: 0, SB_ETRUNCATED when the file ends
 * first (p then holds what was there), or -errno. */
int io_pread_full(int fd, void *p, size_t n, uint64_t off);

/* pwrite all n bytes of p at off: 0 or -errno. A full disk first shows as
 * a short write; a write that then makes no progress is -ENOSPC, never a
 * vague EIO. */
int io_pwrite_full(int fd, const void *p, size_t n, uint64_t off);

/* write all n bytes of p (a pipe, a socket, a terminal): 0 or -errno. */
int io_write_full(int fd, const void *p, size_t n);

#endif
