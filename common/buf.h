/* A growable byte buffer (ptr, len, cap). Not thread-safe; one owner.
 * Allocation failure is fatal (see log.h), so appends cannot fail. */
#ifndef SYNCBIT_BUF_H
#define SYNCBIT_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *ptr;
	size_t len;
	size_t cap;
};

#define BUF_INIT           \
	{                  \
		NULL, 0, 0 \
	}

void buf_init(struct buf *b);
void buf_close(struct buf *b);
/* Make room for at least n more bytes. */
void buf_reserve(struct buf *b, size_t n);
void buf_append(struct buf *b, const void *data, size_t n);
void buf_append_str(struct buf *b, const char *s);
/* printf-style append; the buffer stays NUL-terminated after it. */
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
void buf_reset(struct buf *b);
/* Returns the contents as a NUL-terminated string owned by b. */
const char *buf_cstr(struct buf *b);
/* Hands the allocation to the caller (NUL-terminated) and empties b. */
char *buf_steal(struct buf *b);

/* Allocation helpers that abort on out-of-memory. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Append the file at path to out (NUL-terminated after). 0, SB_ETOOBIG
 * past max bytes, or -errno. Blocking. */
int buf_read_file(const char *path, size_t max, struct buf *out);

#endif
