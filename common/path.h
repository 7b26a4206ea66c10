/* Path confinement: every path from a manifest or the wire is checked here
 * before it is joined to a dataset directory. Pure functions; thread-safe. */
#ifndef SYNCBIT_PATH_H
#define SYNCBIT_PATH_H

#include <stddef.h>
#include <stdint.h>

#define PATH_REL_MAX 4096

/* 0 if rel is a confined relative path: non-empty, not absolute, no empty
 * "", "." or ".." components, no NUL, no backslash-free tricks, length below
 * PATH_REL_MAX, each component at most 255 bytes. SB_ECONFINE otherwise. */
int path_check_relative(const char *rel);

/* 0 if a symlink stored at relative path link_rel with the given target stays
 * inside the dataset root after lexical resolution (absolute targets and
 * targets climbing above the root are refused with SB_ECONFINE). ".." may
 * only lead the target ("../x/y", not "x/../y"): after a descending
 * component it could pass through another link, which a lexical check
 * cannot see. */
int path_check_symlink(const char *link_rel, const char *target);

/* Lexically normalize an absolute path (collapse //, ., ..; no trailing
 * '/' except for "/"); heap string, NULL if abs is not absolute. */
char *path_normalize_abs(const char *abs);

/* Join dir and rel with one '/'; heap string. */
char *path_join(const char *dir, const char *rel);

/* Create every directory of rel's parent under the directory fd root, never
 * following a symlink (O_NOFOLLOW on every component). mode applies to new
 * directories. Returns an fd of the parent directory (caller closes) or a
 * negative error (-ELOOP / -ENOTDIR when a component is not a directory,
 * SB_ECONFINE when rel fails path_check_relative). *basename_out points
 * into rel; the basename itself is not looked at. */
int path_open_parent(int root_fd, const char *rel, unsigned mode, const char **basename_out);

/* Open rel below the directory fd root_fd with open(2) flags (O_CREAT is
 * refused), never leaving it and never following a symlink on any
 * component, the last included: openat2(2) with RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS where the kernel has it, else path_open_beneath_walk.
 * Returns an fd (caller closes) or a negative error: SB_ECONFINE when rel
 * fails path_check_relative, -ELOOP/-ENOTDIR/-EXDEV when a component is a
 * symlink or not a directory, other -errno. Blocking; thread-safe. */
int path_open_beneath(int root_fd, const char *rel, int flags);

/* The same, one openat(O_NOFOLLOW) per component (kernels before 5.6);
 * exported so the fallback is tested on every kernel. */
int path_open_beneath_walk(int root_fd, const char *rel, int flags);

/* mkdir -p of an absolute or relative path; 0 or -errno. */
int path_mkdirs(const char *path, unsigned mode);

/* rm -rf of path, never following symlinks (they are removed, not
 * entered). 0 (also when path does not exist) or -errno. Blocking. */
int path_remove_tree(const char *path);

/* fsync a directory by path; 0 or -errno. */
int path_fsync_dir(const char *path);

#endif
