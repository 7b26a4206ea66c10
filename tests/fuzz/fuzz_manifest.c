/* libFuzzer target for manifest_decode, which reads manifests from peers
 * and sources: whatever the bytes, it must not crash, leak or read out of
 * bounds, and a manifest it accepts must survive encode -> decode -> encode
 * byte for byte, with the same id.
 *
 * Built with -DFUZZ_SEED_MAIN instead, this file is a small program that
 * writes a seed corpus of valid manifests into the directory argv[1]. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/manifest.h"

/* Sum block lengths only for files this small: enough to check the block
 * arithmetic without making a fuzz iteration slow. */
#define FUZZ_SUM_BLOCKS_MAX 4096

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_manifest: %s\n", what);
		abort();
	}
}

static void check_files(const Manifest *m)
{
	for (size_t i = 0; i < m->n_files; i++) {
		const FileEntry *f = m->files[i];
		if (f->type != SYNCBIT__FILE_TYPE__FILE_REGULAR)
			continue;
		uint64_t nb = manifest_nblocks(f->size, m->block_size);
		check(f->block_hashes.len == nb * HASH_LEN, "hash count");
		check(manifest_block_len(f->size, m->block_size, nb) == 0,
		      "block past the end has a length");
		if (nb > FUZZ_SUM_BLOCKS_MAX)
			continue;
		uint64_t sum = 0;
		for (uint64_t k = 0; k < nb; k++) {
			uint32_t len = manifest_block_len(f->size, m->block_size, k);
			check(len > 0 && len <= m->block_size, "block length");
			sum += len;
		}
		check(sum == f->size, "block lengths do not add up to the size");
		struct hash_id id;
		manifest_file_object_id(f->size, m->block_size, f->block_hashes.data, nb, &id);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Manifest *m = (Manifest *)1;
	int rc = manifest_decode(data, size, &m);
	if (rc < 0) {
		check(m == NULL, "output set on failure");
		check(rc == SB_EPROTO || rc == SB_ETOOBIG || rc == SB_ECONFINE,
		      "unexpected error code");
		return 0;
	}
	check(m != NULL, "no output on success");
	check(manifest_validate(m) == 0, "accepted manifest does not validate");
	check_files(m);

	struct buf e1 = BUF_INIT, e2 = BUF_INIT;
	struct hash_id id1, id2, direct;
	manifest_encode(m, &e1, &id1);
	hash_sha256(e1.ptr, e1.len, &direct);
	check(memcmp(&id1, &direct, sizeof id1) == 0, "id is not the encoding's hash");

	Manifest *m2 = NULL;
	check(manifest_decode(e1.ptr, e1.len, &m2) == 0, "re-encoding rejected");
	check(m2->n_files == m->n_files, "file count changed");
	manifest_encode(m2, &e2, &id2);
	check(e1.len == e2.len && memcmp(e1.ptr, e2.ptr, e1.len) == 0, "encoding not stable");
	check(memcmp(&id1, &id2, sizeof id1) == 0, "id not stable");

	manifest_free(m2);
	manifest_free(m);
	buf_close(&e1);
	buf_close(&e2);
	return 0;
}

#ifdef FUZZ_SEED_MAIN

#define SEED_MAX_FILES 16

struct seed {
	Manifest m;
	FileEntry e[SEED_MAX_FILES];
	FileEntry *ptrs[SEED_MAX_FILES];
	uint8_t hashes[SEED_MAX_FILES][4 * HASH_LEN];
};

static FileEntry *seed_add(struct seed *s, const char *path, int type, uint64_t size)
{
	FileEntry *f = &s->e[s->m.n_files];
	syncbit__file_entry__init(f);
	f->path = (char *)path;
	f->type = type;
	f->mode = 0644;
	f->mtime_ns = 1700000000000000000ll + (int64_t)s->m.n_files;
	if (type == SYNCBIT__FILE_TYPE__FILE_REGULAR) {
		uint64_t nb = manifest_nblocks(size, s->m.block_size);
		uint8_t *h = s->hashes[s->m.n_files];
		for (size_t k = 0; k < nb * HASH_LEN; k++)
			h[k] = (uint8_t)(k * 13 + s->m.n_files);
		f->size = size;
		f->block_hashes.data = h;
		f->block_hashes.len = nb * HASH_LEN;
		f->source_digest = (char *)"\"etag\"";
	}
	s->ptrs[s->m.n_files++] = f;
	return f;
}

static void seed_init(struct seed *s)
{
	memset(s, 0, sizeof *s);
	syncbit__manifest__init(&s->m);
	s->m.format = MANIFEST_FORMAT;
	s->m.block_size = BLOCK_SIZE_MIN;
	s->m.source = (char *)"https://example.org/data/";
	s->m.source_version = (char *)"rev-1";
	s->m.files = s->ptrs;
}

static int seed_write(const char *dir, const char *name, const Manifest *m)
{
	struct buf b = BUF_INIT;
	char path[4096];
	if (manifest_validate(m) != 0) {
		fprintf(stderr, "seed %s does not validate\n", name);
		return -1;
	}
	manifest_encode(m, &b, NULL);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *fp = fopen(path, "wb");
	int ok = fp && fwrite(b.ptr, 1, b.len, fp) == b.len;
	if (fp && fclose(fp) != 0)
		ok = 0;
	buf_close(&b);
	if (!ok)
		perror(path);
	return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
	static struct seed s;
	int rc = 0;
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	seed_init(&s);
	rc |= seed_write(argv[1], "empty", &s.m);

	seed_add(&s, "a", SYNCBIT__FILE_TYPE__FILE_DIRECTORY, 0)->mode = 0755;
	seed_add(&s, "a/data.bin", SYNCBIT__FILE_TYPE__FILE_REGULAR, 3 * BLOCK_SIZE_MIN + 5);
	seed_add(&s, "a/empty", SYNCBIT__FILE_TYPE__FILE_REGULAR, 0);
	FileEntry *h =
	    seed_add(&s, "a/hard", SYNCBIT__FILE_TYPE__FILE_REGULAR, 3 * BLOCK_SIZE_MIN + 5);
	h->hardlink_to = 2;
	h->block_hashes = s.e[1].block_hashes;
	FileEntry *l = seed_add(&s, "a/link", SYNCBIT__FILE_TYPE__FILE_SYMLINK, 0);
	l->link_target = (char *)"../b/one";
	l->mode = 0777;
	seed_add(&s, "b", SYNCBIT__FILE_TYPE__FILE_DIRECTORY, 0)->mode = 0755;
	seed_add(&s, "b/one", SYNCBIT__FILE_TYPE__FILE_REGULAR, 1);
	rc |= seed_write(argv[1], "sample", &s.m);

	seed_init(&s);
	s.m.block_size = BLOCK_SIZE_DEFAULT;
	seed_add(&s, "model.safetensors", SYNCBIT__FILE_TYPE__FILE_REGULAR,
		 2 * (uint64_t)BLOCK_SIZE_DEFAULT);
	rc |= seed_write(argv[1], "one-file", &s.m);
	return rc ? 1 : 0;
}

#endif
