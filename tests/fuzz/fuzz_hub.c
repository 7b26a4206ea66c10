/* libFuzzer target for what the model hubs answer while a repository is
 * listed: Hugging Face's revision and tree pages (paginated by the Link
 * header) and ModelScope's file lists and dataset tree pages, each read by
 * the real source (common/source/hf.c, ms.c, hub*.c) through
 * source_list on a libuv loop, with the API calls answered from the input
 * by hub_answer_from instead of the network. The first input byte picks
 * the repository (hf model, hf dataset, ms model, ms dataset), a token and
 * a small file limit; the rest is the answers, in order, separated by a
 * line "=====". An answer that starts with "HTTP/" is header blocks (one,
 * or several as after redirects, each ending in a blank line) and a body;
 * otherwise it is a 200 JSON body. Past the last answer, calls get 404.
 *
 * Whatever the bytes: no crash, leak or out-of-bounds access; the listing
 * always ends; every call stays on the hub's own host; a listing accepted
 * is sorted, without duplicates, with confined paths, digests of the
 * documented forms, the version the kind gives and no more files than the
 * limit; a refusal comes with a one-line message. */
#include "tests/fuzz/fuzz_util.h"

#include <uv.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/path.h"
#include "common/source/oci_push.h"
#include "common/source/source.h"
#include "common/source/hub.h"
#include "common/uri.h"

#define SEP	  "\n=====\n"
#define CALLS_MAX 64
#define SMALL_MAX 3 /* files, with the limit bit */

static const char *const repos[] = {"hf://acme/llm", "hf://datasets/acme/set@v1.0", "ms://acme/llm",
				    "ms://datasets/acme/set"};
static const char *const origins[] = {"https://huggingface.co/", "https://huggingface.co/",
				      "https://www.modelscope.cn/", "https://www.modelscope.cn/"};

static uv_loop_t loop;

struct feed {
	const uint8_t *d;
	size_t n;
	int calls;
	const char *origin;
	int done, status;
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const unset[] = {"HF_TOKEN",
					    "HUGGING_FACE_HUB_TOKEN",
					    "HF_ENDPOINT",
					    "HF_HOME",
					    "MODELSCOPE_ENDPOINT",
					    "MODELSCOPE_DOMAIN",
					    "MODELSCOPE_API_TOKEN"};
	for (size_t i = 0; i < sizeof unset / sizeof unset[0]; i++)
		unsetenv(unset[i]);
	setenv("HF_TOKEN_PATH", "/nonexistent/syncbit-fuzz-token", 1);
	log_setup(LOG_ERROR, LOG_FORMAT_TEXT);
	uv_loop_init(&loop);
	return 0;
}

static void answer(void *arg, const char *url, struct buf *head, struct buf *body)
{
	struct feed *f = arg;
	/* Compared by oci_push's own reading of URLs: scheme, host in
	 * any case, and port. */
	fuzz_check(oci_push_same_origin(url, f->origin), "a call left the hub's host");
	if (f->n == 0 || ++f->calls > CALLS_MAX) {
		buf_append_str(head, "HTTP/1.1 404 Not Found\r\n\r\n");
		buf_append_str(body, "{\"error\":\"Entry not found\"}");
		return;
	}
	const uint8_t *sep = memmem(f->d, f->n, SEP, strlen(SEP));
	size_t len = sep ? (size_t)(sep - f->d) : f->n;
	const uint8_t *p = f->d;
	f->d += sep ? len + strlen(SEP) : len;
	f->n -= sep ? len + strlen(SEP) : len;
	if (len < 5 || memcmp(p, "HTTP/", 5) != 0) {
		buf_append_str(head, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n");
		buf_append(body, p, len);
		return;
	}
	/* Header blocks, as long as another status line follows a blank line. */
	size_t hlen = 0;
	while (hlen + 5 <= len && !memcmp(p + hlen, "HTTP/", 5)) {
		const uint8_t *blank = memmem(p + hlen, len - hlen, "\r\n\r\n", 4);
		hlen = blank ? (size_t)(blank - p) + 4 : len;
	}
	buf_append(head, p, hlen);
	buf_append(body, p + hlen, len - hlen);
}

static void listed(struct source *src, int status, void *arg)
{
	struct feed *f = arg;
	fuzz_check(!f->done, "listing ended twice");
	f->done = 1;
	f->status = status;
}

static int digest_ok(const char *d)
{
	return !d || (!strncmp(d, "sha256:", 7) && strlen(d) == 7 + 64) ||
	       (!strncmp(d, "git:", 4) && strlen(d) == 4 + 40) || !strncmp(d, "ms-rev:", 7);
}

static void check_listing(const struct source *src, int kind, int small)
{
	const struct source_listing *l = &src->listing;
	fuzz_check(l->version != NULL, "no version");
	if (kind < 2)
		fuzz_check(strlen(l->version) == 40, "hf version is not a commit");
	fuzz_check(!small || l->nfiles <= SMALL_MAX, "more files than the limit");
	for (size_t i = 0; i < l->nfiles; i++) {
		const struct source_file *e = &l->files[i];
		fuzz_check(path_check_relative(e->path) == 0, "path not confined");
		fuzz_check(i == 0 || strcmp(l->files[i - 1].path, e->path) < 0,
			   "not sorted, or a path twice");
		fuzz_check(e->type == SRC_REGULAR, "not a regular file");
		fuzz_check(digest_ok(e->digest), "digest of an unknown form");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int kind = data[0] & 3, small = (data[0] >> 2) & 1;
	if ((data[0] >> 3) & 1) {
		setenv("HF_TOKEN", "hf_fuzz", 1);
		setenv("MODELSCOPE_API_TOKEN", "ms_fuzz", 1);
	} else {
		unsetenv("HF_TOKEN");
		unsetenv("MODELSCOPE_API_TOKEN");
	}
	struct source_uri uri;
	struct source_options opt;
	struct source *src;
	struct feed f = {data + 1, size - 1, 0, origins[kind], 0, 0};
	fuzz_check(uri_parse(repos[kind], &uri) == 0, "uri");
	source_options_default(&opt);
	if (small)
		opt.limits.files = SMALL_MAX;
	fuzz_check(source_new(&loop, &uri, &opt, &src) == 0, "source_new");
	uri_close(&uri);
	fuzz_check(hub_answer_from(src, answer, &f) == 0, "hub_answer_from");
	int rc = source_list(src, listed, &f);
	if (rc == 0) {
		uv_run(&loop, UV_RUN_DEFAULT);
		fuzz_check(f.done, "the listing never ended");
		if (getenv("FUZZ_VERBOSE")) /* to see what a seed does */
			fprintf(stderr, "%s: status %d, %zu files, %d calls: %s\n", repos[kind],
				f.status, src->listing.nfiles, f.calls,
				src->error_detail ? src->error_detail : "");
		if (f.status == 0) {
			check_listing(src, kind, small);
		} else {
			fuzz_check(src->error_detail && src->error_detail[0],
				   "failure without a message");
			fuzz_check(fuzz_one_line(src->error_detail), "message spans lines");
		}
	}
	source_free(src);
	uv_run(&loop, UV_RUN_DEFAULT); /* the closing handles */
	return 0;
}
