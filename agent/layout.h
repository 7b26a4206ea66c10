/* Layouts: how a pulled version is laid out in the target directory for the
 * program that reads it. plain is the source tree as is (publish.c);
 * hf-cache is the Hugging Face hub cache (models--org--name/{blobs,
 * snapshots,refs}) that transformers and vLLM read offline; triton is a
 * Triton model repository (NAME/config.pbtxt, NAME/VERSION/...). Every file
 * appears by rename and blobs are hardlinks to cache objects. Blocking: call
 * from a CLI command or a pool thread. */
#ifndef SYNCBIT_LAYOUT_H
#define SYNCBIT_LAYOUT_H

#include <stdint.h>

#include "agent/cache.h"
#include "common/manifest.h"

struct filter;

enum layout_kind { LAYOUT_PLAIN, LAYOUT_HF_CACHE, LAYOUT_TRITON };

struct layout {
	enum layout_kind kind;
	/* hf-cache: repo id "org/name" and whether it is a dataset; NULL takes
	 * both from an hf:// or ms:// source. */
	const char *repo;
	int dataset;
	/* hf-cache: the ref written (refs/REVISION); NULL takes the source's
	 * revision, else "main". No ref is written for a commit revision. */
	const char *revision;
	const char *model;   /* triton: model name (one path component) */
	const char *version; /* triton: version directory, digits not starting with 0 */
	int prune;	     /* remove what the version no longer has (see layout_prune) */
	/* --include/--exclude: what it excludes is kept by prune, as rsync's
	 * --delete keeps excluded files (NULL: nothing is kept) */
	const struct filter *filter;

	/* Filled by layout_publish. */
	uint64_t linked, copied, unchanged, removed;
	char *path; /* heap: the directory a consumer opens (snapshot, model) */
};

/* "plain" | "hf-cache" | "triton"; 0 or SB_ECONFIG. */
int layout_parse_kind(const char *s, enum layout_kind *out);
const char *layout_kind_name(enum layout_kind k);

/* Check l against the source it will be used with (repo derivable, names
 * confined, version numeric). 0, or SB_ECONFIG with *error (heap, one
 * line). */
int layout_check(const struct layout *l, const char *source, char **error);

/* The cache dataset name for source published into target with l: a
 * distinct one per repo folder or model version, so their histories do not
 * mix; NULL for plain (pull's default). Heap string. */
char *layout_dataset_name(const struct layout *l, const char *source, const char *target);

/* Publish m into target in l's layout, filling l's counters and l->path
 * (the caller frees it with layout_close). On failure *detail (heap, one
 * line) says where. */
int layout_publish(struct cache *c, const Manifest *m, struct layout *l, const char *target,
		   char **detail);
void layout_close(struct layout *l);

/* Remove every entry under target that m does not name (a directory m
 * does not name goes whole), except what keep excludes (it and everything
 * under it stay; keep may be NULL). Symlinks are removed, never followed;
 * nothing outside target is touched. *removed counts entries removed. */
int layout_prune(const Manifest *m, const char *target, const struct filter *keep,
		 uint64_t *removed, char **detail);

/* The hf-cache folder name of a repo: "models--org--name" or
 * "datasets--org--name". Heap string. */
char *layout_hf_folder(const char *repo, int dataset);

/* POST url/v2/repository/models/model/load (Triton's repository extension).
 * 0 on HTTP 200; otherwise SB_EHTTP4XX/SB_EHTTP5XX/SB_EHTTP with *detail
 * saying the status and the server's error message. */
int layout_triton_load(const char *url, const char *model, char **detail);
/* What Triton's answer of status and body to that POST says: 0 for 200,
 * else the code above with *detail (heap, one line) "HTTP <status>: " and
 * the body's {"error": …}, the body itself or "(no body)". */
int layout_triton_reply(long status, const void *body, size_t len, char **detail);

#endif
