/* Internals shared by the layout files: layout.c (kinds, plain, pruning and
 * the file helpers below), layout_hf.c (hf-cache) and layout_triton.c
 * (triton and its load call). Same threading rule as layout.h. Not for use
 * outside agent/layout*.c. */
#ifndef SYNCBIT_LAYOUT_IMPL_H
#define SYNCBIT_LAYOUT_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "agent/layout.h"

#define LAYOUT_TRITON_VERSION "1"

/* 1 when s is exactly n hex digits. */
int layout_is_hex(const char *s, size_t n);
/* Set *detail (once) to "where: what: why" and return rc. */
int layout_fail(char **detail, int rc, const char *where, const char *what);
/* strcmp for qsort/bsearch over char *. */
int layout_cmp_str(const void *a, const void *b);
/* Remove dir_fd/name, a directory with all it holds, never following a
 * symlink; counts removed entries. 0 (also when absent) or -errno. */
int layout_remove_at(int dir_fd, const char *name, uint64_t *removed);
/* Remove every entry of the directory fd (taken over) that keep (NULL: none)
 * does not keep, as layout_remove_at does. 0 or -errno. */
int layout_clear_dir(int fd, int (*keep)(const char *name, const void *arg), const void *arg,
		     uint64_t *removed);
/* Open (with create, make first) the directory dir_fd/name without
 * following a symlink; an fd or -errno. */
int layout_open_dir(int dir_fd, const char *name, int create);
/* Each appears by rename: 1 written, 0 already so (not put_object), or
 * -errno. put_file writes a small file (mode 0644), put_symlink a link,
 * put_object links (1) or copies (2) a cache object. */
int layout_put_file(int dir_fd, const char *name, const char *data);
int layout_put_symlink(int dir_fd, const char *name, const char *target);
int layout_put_object(int dir_fd, const char *name, const char *obj, const FileEntry *f);
/* The cache object id of file i (a hardlink entry: its primary's). */
void layout_object_id(const Manifest *m, size_t i, struct hash_id *id);

int layout_hf_check(const struct layout *l, const char *source, char **error);
char *layout_hf_dataset_name(const struct layout *l, const char *source, const char *target);
int layout_hf_publish(struct cache *c, const Manifest *m, struct layout *l, const char *target,
		      struct cache_updates *updates, char **detail);
int layout_triton_check(const struct layout *l, char **error);
int layout_triton_publish(struct cache *c, const Manifest *m, struct layout *l, const char *target,
			  struct cache_updates *updates, char **detail);

#endif
