/* Publishing: make a manifest's files appear in a target directory. Every
 * regular file is a hardlink to its cache object (1x disk) or, across
 * filesystems or where modes differ, a reflink or copy; each appears by
 * rename, so a consumer never sees a partial file. Paths are confined to the
 * target and no symlink inside it is ever followed. Blocking: run on a pool
 * thread or in a CLI command before the loop matters. What publishing
 * changes in the cache index (objects given the manifest's mtime, LFRU
 * accesses) is noted in a struct cache_updates for the loop thread to apply
 * (cache_updates_apply): only that thread writes the index. */
#ifndef SYNCBIT_PUBLISH_H
#define SYNCBIT_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#include "agent/cache.h"
#include "common/manifest.h"

struct publish_stats {
	uint64_t linked;    /* files hardlinked to their object */
	uint64_t copied;    /* files reflinked or copied */
	uint64_t unchanged; /* already in place */
};

/* Publish m into target (created if missing). Files in target that m does
 * not name are left alone. Index updates go to *updates, also on failure
 * (some objects may have been given a new mtime already); NULL applies them
 * before returning, which only the loop thread may do. On failure *detail
 * (heap, one line) says where. */
int publish_tree(struct cache *c, const Manifest *m, const char *target, struct publish_stats *st,
		 struct cache_updates *updates, char **detail);

/* Publish m as the dataset directory root/name, flipping the whole version
 * at once: the tree is built beside it (hardlinks, cheap), then exchanged
 * with the current one by renameat2(RENAME_EXCHANGE) and the old tree is
 * removed. A consumer sees the old version or the new one, never a mix.
 * updates as for publish_tree. */
int publish_version(struct cache *c, const Manifest *m, const char *root, const char *name,
		    struct cache_updates *updates, char **detail);

/* group[i] = the first index j with ids[j] == ids[i] (i itself when none
 * before it), in O(n log n): which files share an object. Exposed for
 * tests. */
void publish_share_groups(const struct hash_id *ids, size_t n, size_t *group);

/* Copy (reflink when the filesystem can) src_fd into dst_fd; 0 or -errno. */
int publish_copy_fd(int src_fd, int dst_fd, uint64_t size);

#endif
