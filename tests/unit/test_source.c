/* What every source shares (common/source/source.c): the limits a listing is held
 * to before anything proportional to its claims is allocated, on listings
 * built in memory and through source_list() on a local tree. */
#include "tests/unit/testutil.h"

#include <uv.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/manifest.h"
#include "common/path.h"
#include "common/source/source.h"
#include "common/uri.h"

#define TIB  (1ull << 40)
#define HUGE (1ull << 62)

static void add(struct source_listing *l, const char *path, enum source_file_type type,
		uint64_t size, uint32_t hardlink_to)
{
	l->files = xrealloc(l->files, (l->nfiles + 1) * sizeof *l->files);
	struct source_file *f = &l->files[l->nfiles++];
	memset(f, 0, sizeof *f);
	f->path = xstrdup(path);
	f->type = type;
	f->size = size;
	f->hardlink_to = hardlink_to;
}

static const struct source_limits defaults = {SOURCE_MAX_FILE_BYTES, SOURCE_MAX_DATASET_BYTES,
					      SOURCE_MAX_FILES};

/* The check's verdict, with its detail kept in *detail for the caller. */
static int check(const struct source_listing *l, const struct source_limits *lim, uint64_t bs,
		 char **detail)
{
	free(*detail);
	return source_listing_check(l, lim, bs, "s3://b/p/", detail);
}

static void test_file_size(void **state)
{
	struct source_listing l = {0};
	char *d = NULL;
	add(&l, "big.bin", SRC_REGULAR, HUGE, 0);
	assert_int_equal(check(&l, &defaults, 4u << 20, &d), SB_ETOOBIG);
	assert_string_equal(d, "s3://b/p/: big.bin claims 4611686018427387904 bytes (4.0 EiB), "
			       "over the limit of 4.0 TiB per file (--max-file-size)");
	/* Exactly at the limit is allowed (with blocks large enough). */
	l.files[0].size = SOURCE_MAX_FILE_BYTES;
	assert_int_equal(check(&l, &defaults, 4u << 20, &d), 0);
	assert_null(d);
	struct source_limits small = {10, 100, 10};
	l.files[0].size = 11;
	assert_int_equal(check(&l, &small, BLOCK_SIZE_MIN, &d), SB_ETOOBIG);
	assert_non_null(strstr(d, "big.bin claims 11 bytes (11 B), over the limit of 10 B"));
	free(d);
	source_listing_close(&l);
}

static void test_dataset_size(void **state)
{
	struct source_listing l = {0};
	char *d = NULL;
	add(&l, "a", SRC_REGULAR, 3 * TIB, 0);
	add(&l, "b", SRC_REGULAR, 3 * TIB, 0);
	add(&l, "c", SRC_REGULAR, 3 * TIB, 1); /* a hardlink to a: no bytes of its own */
	struct source_limits lim = {4 * TIB, 6 * TIB, 10};
	assert_int_equal(check(&l, &lim, 4u << 20, &d), 0);
	lim.dataset_bytes = 6 * TIB - 1;
	assert_int_equal(check(&l, &lim, 4u << 20, &d), SB_ETOOBIG);
	assert_string_equal(d, "s3://b/p/: 2 files claim 6597069766656 bytes (6.0 TiB), over the "
			       "limit of 6.0 TiB per dataset (--max-dataset-size)");
	/* Sizes that would wrap a 64-bit sum. */
	lim = (struct source_limits){UINT64_MAX, UINT64_MAX - 1, 10};
	l.files[0].size = l.files[1].size = UINT64_MAX / 2 + 1;
	assert_int_equal(check(&l, &lim, BLOCK_SIZE_MAX, &d), SB_ETOOBIG);
	assert_non_null(strstr(d, "--max-dataset-size"));
	free(d);
	source_listing_close(&l);
}

static void test_entries(void **state)
{
	struct source_listing l = {0};
	char *d = NULL;
	add(&l, "d", SRC_DIRECTORY, 0, 0);
	add(&l, "d/x", SRC_REGULAR, 1, 0);
	add(&l, "d/y", SRC_SYMLINK, 0, 0);
	struct source_limits lim = {TIB, TIB, 3};
	assert_int_equal(check(&l, &lim, 4u << 20, &d), 0);
	lim.files = 2;
	assert_int_equal(check(&l, &lim, 4u << 20, &d), SB_ETOOBIG);
	assert_string_equal(d, "s3://b/p/: 3 entries, over the limit of 2 per dataset "
			       "(--max-files)");
	free(d);
	source_listing_close(&l);
}

static void test_blocks(void **state)
{
	struct source_listing l = {0};
	char *d = NULL;
	/* 20 TiB is under the size limits but 5 Mi blocks of 4 MiB. */
	add(&l, "a", SRC_REGULAR, 4 * TIB, 0);
	add(&l, "b", SRC_REGULAR, 4 * TIB, 0);
	add(&l, "c", SRC_REGULAR, 4 * TIB, 0);
	add(&l, "d", SRC_REGULAR, 4 * TIB, 0);
	add(&l, "e", SRC_REGULAR, 4 * TIB, 0);
	add(&l, "f", SRC_REGULAR, 4 * TIB, 5); /* a hardlink: its blocks are e's */
	assert_int_equal(check(&l, &defaults, 4u << 20, &d), SB_ETOOBIG);
	assert_string_equal(d, "s3://b/p/: 5242880 blocks of 4MiB, over the limit of 4194304 "
			       "blocks per dataset (--block-size 8MiB or more fits)");
	assert_int_equal(check(&l, &defaults, 8u << 20, &d), 0);
	/* Without limits only what a manifest holds counts, and no name. */
	l.files[0].size = HUGE;
	assert_int_equal(source_listing_check(&l, NULL, 4u << 20, NULL, &d), SB_ETOOBIG);
	assert_string_equal(d, "1099515822080 blocks of 4MiB, over the limit of 4194304 blocks "
			       "per dataset at any block size");
	free(d);
	assert_int_equal(source_listing_check(&l, NULL, 3000, NULL, &d), SB_EPROTO);
	free(d);
	source_listing_close(&l);
}

/* ---- source_list() on a local tree ---- */

struct wait {
	int n, status;
};

static void on_done(struct source *src, int status, void *arg)
{
	struct wait *w = arg;
	w->n++;
	w->status = status;
}

static int list_dir(const char *dir, const struct source_limits *lim, char **detail)
{
	uv_loop_t loop;
	struct source_uri uri;
	struct source_options o;
	struct source *src;
	struct wait w = {0};
	source_options_default(&o);
	o.block_size = BLOCK_SIZE_MIN;
	if (lim)
		o.limits = *lim;
	uv_loop_init(&loop);
	assert_int_equal(uri_parse(dir, &uri), 0);
	assert_int_equal(source_new(&loop, &uri, &o, &src), 0);
	uri_close(&uri);
	assert_int_equal(source_list(src, on_done, &w), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(w.n, 1);
	*detail = src->error_detail ? xstrdup(src->error_detail) : NULL;
	source_free(src);
	assert_int_equal(uv_loop_close(&loop), 0);
	return w.status;
}

static void write_file(const char *dir, const char *name, const char *data)
{
	char *p = path_join(dir, name);
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	fputs(data, f);
	fclose(f);
	free(p);
}

static void test_source_list(void **state)
{
	char *dir = testutil_mkdtemp(), *d = NULL;
	write_file(dir, "a", "0123456789");
	write_file(dir, "b", "01234567890");
	write_file(dir, "c", "");
	assert_int_equal(list_dir(dir, NULL, &d), 0);
	assert_null(d);
	/* Zero limits are the defaults. */
	struct source_limits lim = {0, 0, 0};
	assert_int_equal(list_dir(dir, &lim, &d), 0);
	lim = (struct source_limits){10, 100, 100};
	assert_int_equal(list_dir(dir, &lim, &d), SB_ETOOBIG);
	assert_true(!strncmp(d, dir, strlen(dir)));
	assert_non_null(strstr(d, ": b claims 11 bytes (11 B), over the limit of 10 B per file"));
	free(d);
	lim = (struct source_limits){100, 20, 100};
	assert_int_equal(list_dir(dir, &lim, &d), SB_ETOOBIG);
	assert_non_null(strstr(d, "3 files claim 21 bytes"));
	free(d);
	/* The walk stops at the entry past the limit. */
	lim = (struct source_limits){100, 100, 2};
	assert_int_equal(list_dir(dir, &lim, &d), SB_ETOOBIG);
	assert_non_null(strstr(d, ": more entries than the limit of 2 per dataset (--max-files)"));
	free(d);
	testutil_rmtree(dir);
}

/* Found by tests/fuzz/fuzz_hub: a hub's error page {"error": "a\nb"}
 * went into the one-line detail as it was. */
static void test_error_one_line(void **state)
{
	struct source src;
	memset(&src, 0, sizeof src);
	source_set_error(&src, "hf://a/b: GET x: HTTP 500: %s", "In\nvalid\r\x1b[31m");
	assert_string_equal(src.error_detail, "hf://a/b: GET x: HTTP 500: In\\nvalid\\r\\x1b[31m");
	free(src.error_detail);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_file_size),	cmocka_unit_test(test_dataset_size),
	    cmocka_unit_test(test_entries),	cmocka_unit_test(test_blocks),
	    cmocka_unit_test(test_source_list), cmocka_unit_test(test_error_one_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
