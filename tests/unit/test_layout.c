#include "tests/unit/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "agent/cache.h"
#include "agent/layout.h"
#include "agent/pull.h"
#include "common/err.h"
#include "common/manifest.h"
#include "common/path.h"

#define BS     (64u << 10)
#define COMMIT "0123456789abcdef0123456789abcdef01234567"
#define OTHER  "89abcdef0123456789abcdef0123456789abcdef"
#define SHA_W  "aa00000000000000000000000000000000000000000000000000000000000001"
#define GIT_C  "bb00000000000000000000000000000000000002"
#define GIT_R  "cc00000000000000000000000000000000000003"

struct fx {
	char *root, *src, *dst;
	struct cache *c;
	Manifest *m;
	/* what the manifest held before a test changed it */
	char *source, *version, **digests;
};

static void write_file(const char *dir, const char *rel, const char *data, size_t len)
{
	char *p = path_join(dir, rel);
	char *slash = strrchr(p, '/');
	*slash = '\0';
	assert_int_equal(path_mkdirs(p, 0755), 0);
	*slash = '/';
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	free(p);
}

static char *read_all(const char *path)
{
	static char b[1 << 20];
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	ssize_t n = read(fd, b, sizeof b - 1);
	close(fd);
	b[n < 0 ? 0 : n] = '\0';
	return b;
}

/* dir/rel, freed at teardown. */
static char *made[512];
static size_t nmade;

static char *at(const char *dir, const char *rel)
{
	assert_true(nmade < sizeof made / sizeof made[0]);
	return made[nmade++] = path_join(dir, rel);
}

/* Pull fx->src into the cache (no target) and load its manifest. */
static void pull_manifest(struct fx *f)
{
	struct pull_options o = {.source = f->src, .block_size = BS, .name = "unit"};
	struct pull_result r;
	source_options_default(&o.src);
	o.src.block_size = BS;
	if (pull_run(f->c, &o, &r) != 0)
		fail_msg("pull: %s", r.error ? r.error : "?");
	uint8_t *data;
	size_t len;
	assert_int_equal(cache_manifest_get(f->c, &r.manifest_id, &data, &len), 1);
	assert_int_equal(manifest_decode(data, len, &f->m), 0);
	free(data);
	pull_result_close(&r);
	f->source = f->m->source;
	f->version = f->m->source_version;
	f->digests = calloc(f->m->n_files + 1, sizeof *f->digests);
	for (size_t i = 0; i < f->m->n_files; i++)
		f->digests[i] = f->m->files[i]->source_digest;
}

/* Restore what the tests pointed elsewhere, so manifest_free frees its own. */
static void drop_manifest(struct fx *f)
{
	if (!f->m)
		return;
	f->m->source = f->source;
	f->m->source_version = f->version;
	for (size_t i = 0; i < f->m->n_files; i++)
		f->m->files[i]->source_digest = f->digests[i];
	manifest_free(f->m);
	free(f->digests);
	f->m = NULL;
}

static FileEntry *entry(const Manifest *m, const char *path)
{
	for (size_t i = 0; i < m->n_files; i++)
		if (!strcmp(m->files[i]->path, path))
			return m->files[i];
	fail_msg("no entry %s", path);
	return NULL;
}

static char weights[3 * BS + 100];

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	f->root = testutil_mkdtemp();
	f->src = path_join(f->root, "src");
	f->dst = path_join(f->root, "dst");
	for (size_t i = 0; i < sizeof weights; i++)
		weights[i] = (char)(i * 7 + 3);
	write_file(f->src, "model.safetensors", weights, sizeof weights);
	write_file(f->src, "config.json", "{\"a\": 1}\n", 9);
	write_file(f->src, "tok/readme.md", "read me\n", 8);
	char *data = path_join(f->root, "data");
	assert_int_equal(cache_open(data, 0, &f->c), 0);
	free(data);
	pull_manifest(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	while (nmade)
		free(made[--nmade]);
	drop_manifest(f);
	cache_free(f->c);
	free(f->src);
	free(f->dst);
	testutil_rmtree(f->root);
	free(f);
	return 0;
}

/* What an hf:// listing at COMMIT carries: LFS sha256, git blob ids. */
static void as_hub_listing(struct fx *f, const char *source, const char *commit)
{
	f->m->source = (char *)source;
	f->m->source_version = (char *)commit;
	entry(f->m, "model.safetensors")->source_digest = "sha256:" SHA_W;
	entry(f->m, "config.json")->source_digest = "git:" GIT_C;
	entry(f->m, "tok/readme.md")->source_digest = "git:" GIT_R;
}

static void publish_ok(struct fx *f, struct layout *l)
{
	char *detail = NULL;
	if (layout_publish(f->c, f->m, l, f->dst, NULL, &detail) != 0)
		fail_msg("publish: %s", detail ? detail : "?");
	assert_null(detail);
}

static void expect_link(const char *path, const char *target)
{
	char b[4096];
	ssize_t n = readlink(path, b, sizeof b - 1);
	if (n < 0)
		fail_msg("%s: not a symlink", path);
	b[n] = '\0';
	if (strcmp(b, target))
		fail_msg("%s -> %s, want %s", path, b, target);
}

static void test_hf_cache_tree(void **state)
{
	struct fx *f = *state;
	struct layout l = {.kind = LAYOUT_HF_CACHE};
	as_hub_listing(f, "hf://acme/llm", COMMIT);
	publish_ok(f, &l);
	const char *repo = at(f->dst, "models--acme--llm");
	char snap[4096];
	snprintf(snap, sizeof snap, "%s/snapshots/" COMMIT, repo);
	assert_string_equal(l.path, snap);
	/* refs/main is the commit, with no newline */
	assert_string_equal(read_all(at(repo, "refs/main")), COMMIT);
	expect_link(at(snap, "model.safetensors"), "../../blobs/" SHA_W);
	expect_link(at(snap, "config.json"), "../../blobs/" GIT_C);
	expect_link(at(snap, "tok/readme.md"), "../../../blobs/" GIT_R);
	assert_string_equal(read_all(at(snap, "tok/readme.md")), "read me\n");
	assert_int_equal(memcmp(read_all(at(snap, "model.safetensors")), weights, 1000), 0);
	/* blobs are the cache's objects (hardlinks), one disk copy */
	struct stat b, o;
	struct hash_id id;
	char obj[4096];
	const FileEntry *w = entry(f->m, "model.safetensors");
	manifest_file_object_id(w->size, f->m->block_size, w->block_hashes.data,
				w->block_hashes.len / HASH_LEN, &id);
	cache_object_path(f->c, &id, obj, sizeof obj);
	assert_int_equal(stat(at(repo, "blobs/" SHA_W), &b), 0);
	assert_int_equal(stat(obj, &o), 0);
	assert_int_equal(b.st_ino, o.st_ino);
	assert_int_equal(l.linked, 3);
	/* nothing of the build is left behind */
	assert_int_equal(access(at(repo, ".syncbit-snapshot." COMMIT), F_OK), -1);

	/* the same commit again changes nothing and repairs a damaged entry */
	unlink(at(snap, "config.json"));
	write_file(snap, "stray.txt", "x", 1);
	layout_close(&l);
	publish_ok(f, &l);
	assert_int_equal(l.unchanged, 3);
	expect_link(at(snap, "config.json"), "../../blobs/" GIT_C);
	assert_int_equal(access(at(snap, "stray.txt"), F_OK), -1);
	layout_close(&l);
}

static void test_hf_cache_revisions(void **state)
{
	struct fx *f = *state;
	struct layout l = {.kind = LAYOUT_HF_CACHE};
	/* a dataset at a tag */
	as_hub_listing(f, "hf://datasets/acme/corpus@v1.0", COMMIT);
	publish_ok(f, &l);
	assert_string_equal(read_all(at(f->dst, "datasets--acme--corpus/refs/v1.0")), COMMIT);
	assert_int_equal(access(at(f->dst, "datasets--acme--corpus/refs/main"), F_OK), -1);
	layout_close(&l);
	/* a PR ref nests */
	as_hub_listing(f, "hf://acme/llm@refs/pr/1", COMMIT);
	publish_ok(f, &l);
	assert_string_equal(read_all(at(f->dst, "models--acme--llm/refs/refs/pr/1")), COMMIT);
	layout_close(&l);
	/* a commit revision writes no ref */
	as_hub_listing(f, "hf://acme/pinned@" COMMIT, COMMIT);
	publish_ok(f, &l);
	assert_int_equal(access(at(f->dst, "models--acme--pinned/refs"), F_OK), -1);
	assert_int_equal(access(at(f->dst, "models--acme--pinned/snapshots/" COMMIT), F_OK), 0);
	layout_close(&l);
	/* ms:// repos take the same shape */
	as_hub_listing(f, "ms://acme/qwen", COMMIT);
	publish_ok(f, &l);
	assert_int_equal(access(at(f->dst, "models--acme--qwen/snapshots/" COMMIT), F_OK), 0);
	layout_close(&l);
}

/* A local mirror of a hub repo: repo given, commit made from the version. */
static void test_hf_cache_local_source(void **state)
{
	struct fx *f = *state;
	struct layout l = {.kind = LAYOUT_HF_CACHE, .repo = "acme/mirror"};
	char *error = NULL;
	publish_ok(f, &l);
	char *refs = read_all(at(f->dst, "models--acme--mirror/refs/main"));
	assert_int_equal(strlen(refs), 40);
	char commit[41];
	memcpy(commit, refs, 41);
	char *snap = xasprintf("%s/models--acme--mirror/snapshots/%s", f->dst, commit);
	assert_string_equal(l.path, snap);
	/* blobs named by the object id, content intact */
	assert_string_equal(read_all(at(snap, "config.json")), "{\"a\": 1}\n");
	free(snap);
	layout_close(&l);
	/* without --repo a file source cannot be placed */
	l.repo = NULL;
	assert_int_equal(layout_check(&l, f->src, &error), SB_ECONFIG);
	assert_non_null(strstr(error, "--repo"));
	free(error);
	l.repo = "acme/../x";
	assert_int_equal(layout_check(&l, f->src, &error), SB_ECONFIG);
	free(error);
	l.repo = "a--b/c";
	assert_int_equal(layout_check(&l, f->src, &error), SB_ECONFIG);
	free(error);
	l.repo = NULL;
	assert_int_equal(layout_check(&l, "hf://acme/llm@main", &error), 0);
	assert_null(error);
}

static void test_hf_cache_prune(void **state)
{
	struct fx *f = *state;
	struct layout l = {.kind = LAYOUT_HF_CACHE};
	const char *repo = at(f->dst, "models--acme--llm");
	as_hub_listing(f, "hf://acme/llm", COMMIT);
	publish_ok(f, &l);
	layout_close(&l);
	/* a tag keeps COMMIT alive */
	as_hub_listing(f, "hf://acme/llm@v1", COMMIT);
	publish_ok(f, &l);
	layout_close(&l);
	/* main moves to OTHER where config.json changed */
	as_hub_listing(f, "hf://acme/llm", OTHER);
	entry(f->m, "config.json")->source_digest = "git:dd00000000000000000000000000000000000004";
	l.prune = 1;
	publish_ok(f, &l);
	assert_int_equal(l.removed, 0); /* v1 still names COMMIT */
	assert_int_equal(access(at(repo, "snapshots/" COMMIT), F_OK), 0);
	assert_int_equal(access(at(repo, "blobs/" GIT_C), F_OK), 0);
	layout_close(&l);
	/* once no ref names it, COMMIT and its own blob go */
	char *v1 = xasprintf("%s/refs/v1", repo);
	unlink(v1);
	free(v1);
	publish_ok(f, &l);
	assert_true(l.removed >= 2);
	assert_int_equal(access(at(repo, "snapshots/" COMMIT), F_OK), -1);
	assert_int_equal(access(at(repo, "blobs/" GIT_C), F_OK), -1);
	assert_int_equal(access(at(repo, "blobs/" SHA_W), F_OK), 0);
	assert_string_equal(read_all(at(repo, "refs/main")), OTHER);
	layout_close(&l);
}

/* A version with no files, published with --delete: its snapshot links no
 * blob, so every blob goes (and an empty set of names is never sorted). */
static void test_hf_cache_prune_empty(void **state)
{
	struct fx *f = *state;
	struct layout l = {.kind = LAYOUT_HF_CACHE};
	const char *repo = at(f->dst, "models--acme--llm");
	as_hub_listing(f, "hf://acme/llm", COMMIT);
	publish_ok(f, &l);
	layout_close(&l);
	as_hub_listing(f, "hf://acme/llm", OTHER);
	size_t n = f->m->n_files;
	f->m->n_files = 0;
	l.prune = 1;
	publish_ok(f, &l);
	f->m->n_files = n;
	assert_int_equal(access(at(repo, "snapshots/" COMMIT), F_OK), -1);
	assert_int_equal(access(at(repo, "snapshots/" OTHER), F_OK), 0);
	assert_int_equal(access(at(repo, "blobs/" SHA_W), F_OK), -1);
	assert_int_equal(access(at(repo, "blobs/" GIT_C), F_OK), -1);
	assert_string_equal(read_all(at(repo, "refs/main")), OTHER);
	layout_close(&l);
}

static void test_triton(void **state)
{
	struct fx *f = *state;
	struct layout l = {.kind = LAYOUT_TRITON, .model = "llm", .version = "3"};
	char *error = NULL;
	publish_ok(f, &l);
	assert_string_equal(l.path, at(f->dst, "llm/3"));
	/* no config.pbtxt in the source: a minimal one names the model */
	assert_string_equal(read_all(at(f->dst, "llm/config.pbtxt")), "name: \"llm\"\n");
	assert_string_equal(read_all(at(f->dst, "llm/3/config.json")), "{\"a\": 1}\n");
	assert_string_equal(read_all(at(f->dst, "llm/3/tok/readme.md")), "read me\n");
	layout_close(&l);
	/* an operator's config is kept when the source has none */
	write_file(f->dst, "llm/config.pbtxt", "name: \"llm\"\nbackend: \"python\"\n", 31);
	publish_ok(f, &l);
	assert_non_null(strstr(read_all(at(f->dst, "llm/config.pbtxt")), "python"));
	layout_close(&l);

	/* the source's config.pbtxt goes to the model directory */
	write_file(f->src, "config.pbtxt", "name: \"llm\"\nbackend: \"onnxruntime\"\n", 35);
	unlink(at(f->src, "tok/readme.md"));
	rmdir(at(f->src, "tok"));
	drop_manifest(f);
	pull_manifest(f);
	publish_ok(f, &l);
	assert_non_null(strstr(read_all(at(f->dst, "llm/config.pbtxt")), "onnxruntime"));
	assert_int_equal(access(at(f->dst, "llm/3/config.pbtxt"), F_OK), -1);
	/* the version flips whole: a file the source dropped is gone */
	assert_int_equal(access(at(f->dst, "llm/3/tok/readme.md"), F_OK), -1);
	assert_int_equal(access(at(f->dst, "llm/3/model.safetensors"), F_OK), 0);
	layout_close(&l);

	struct layout bad = {.kind = LAYOUT_TRITON};
	assert_int_equal(layout_check(&bad, f->src, &error), SB_ECONFIG);
	assert_non_null(strstr(error, "--model"));
	free(error);
	bad.model = "a/b";
	assert_int_equal(layout_check(&bad, f->src, &error), SB_ECONFIG);
	free(error);
	bad.model = "m";
	bad.version = "01";
	assert_int_equal(layout_check(&bad, f->src, &error), SB_ECONFIG);
	assert_non_null(strstr(error, "--model-version"));
	free(error);
	bad.version = "12";
	assert_int_equal(layout_check(&bad, f->src, &error), 0);
}

static void test_prune_plain(void **state)
{
	struct fx *f = *state;
	struct layout l = {.kind = LAYOUT_PLAIN, .prune = 1};
	char *outside = path_join(f->root, "outside");
	write_file(outside, "keep.txt", "keep", 4);
	write_file(f->dst, "old/deep/file", "x", 1);
	write_file(f->dst, "tok/stale.md", "x", 1);
	write_file(f->dst, ".hidden", "x", 1);
	assert_int_equal(symlink(outside, at(f->dst, "link-out")), 0);
	assert_int_equal(symlink(outside, at(f->dst, "tok/inner-link")), 0);
	publish_ok(f, &l);
	assert_int_equal(l.removed, 7); /* old, old/deep, old/deep/file and four more */
	assert_int_equal(access(at(f->dst, "old"), F_OK), -1);
	assert_int_equal(access(at(f->dst, "tok/stale.md"), F_OK), -1);
	assert_int_equal(access(at(f->dst, ".hidden"), F_OK), -1);
	assert_int_equal(faccessat(AT_FDCWD, at(f->dst, "link-out"), F_OK, AT_SYMLINK_NOFOLLOW),
			 -1);
	assert_string_equal(read_all(at(outside, "keep.txt")), "keep");
	assert_string_equal(read_all(at(f->dst, "tok/readme.md")), "read me\n");
	layout_close(&l);
	/* a listing of files only (hub, S3) implies its directories */
	Manifest fm = *f->m;
	FileEntry *only[8];
	fm.n_files = 0;
	for (size_t i = 0; i < f->m->n_files; i++)
		if (f->m->files[i]->type == SYNCBIT__FILE_TYPE__FILE_REGULAR)
			only[fm.n_files++] = f->m->files[i];
	fm.files = only;
	char *why = NULL;
	uint64_t gone;
	write_file(f->dst, "tok/stale2.md", "x", 1);
	assert_int_equal(layout_prune(&fm, f->dst, NULL, &gone, &why), 0);
	assert_int_equal(gone, 1);
	assert_string_equal(read_all(at(f->dst, "tok/readme.md")), "read me\n");
	/* a pruned target that is a symlink is not entered */
	uint64_t removed;
	char *detail = NULL;
	char *ln = path_join(f->root, "dst-link");
	assert_int_equal(symlink(outside, ln), 0);
	assert_true(layout_prune(f->m, ln, NULL, &removed, &detail) < 0);
	free(detail);
	assert_string_equal(read_all(at(outside, "keep.txt")), "keep");
	detail = NULL;
	assert_true(layout_prune(f->m, "/", NULL, &removed, &detail) < 0);
	free(detail);
	free(ln);
	free(outside);
}

static void test_names(void **state)
{
	char *s = layout_hf_folder("acme/llm", 0);
	assert_string_equal(s, "models--acme--llm");
	free(s);
	s = layout_hf_folder("glue", 1);
	assert_string_equal(s, "datasets--glue");
	free(s);
	enum layout_kind k;
	assert_int_equal(layout_parse_kind("hf-cache", &k), 0);
	assert_int_equal(k, LAYOUT_HF_CACHE);
	assert_int_equal(layout_parse_kind("flat", &k), SB_ECONFIG);
	assert_string_equal(layout_kind_name(LAYOUT_TRITON), "triton");
	struct layout l = {.kind = LAYOUT_HF_CACHE};
	s = layout_dataset_name(&l, "hf://datasets/a/b@x", "/models");
	assert_string_equal(s, "pull:/models/datasets--a--b");
	free(s);
	l.kind = LAYOUT_PLAIN;
	assert_null(layout_dataset_name(&l, "/x", "/models"));
	l.kind = LAYOUT_TRITON;
	l.model = "m";
	s = layout_dataset_name(&l, "/x", "/models");
	assert_string_equal(s, "pull:/models/m/1");
	free(s);
}

static void test_triton_load_unreachable(void **state)
{
	char *detail = NULL;
	/* port 9 on loopback: nothing listens */
	int rc = layout_triton_load("http://127.0.0.1:9/", "m", &detail);
	assert_int_equal(rc, SB_EHTTP);
	assert_non_null(detail);
	assert_non_null(strstr(detail, "/v2/repository/models/m/load"));
	free(detail);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_hf_cache_tree),
	    T(test_hf_cache_revisions),
	    T(test_hf_cache_local_source),
	    T(test_hf_cache_prune),
	    T(test_hf_cache_prune_empty),
	    T(test_triton),
	    T(test_prune_plain),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_triton_load_unreachable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
