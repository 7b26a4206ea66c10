/* The hf:// and ms:// sources against tests/fixtures/hub_server.py on
 * 127.0.0.1 (a stand-in for the documented Hub and ModelScope APIs), which
 * runs as a child in its own process group and dies with this process:
 * listing conventions, parallel reads with the whole-file digest check,
 * corruption, reads that skip bytes, change detection, errors, cancel. */
#include "testutil.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <uv.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/source/source.h"
#include "common/source/hub.h"
#include "common/uri.h"

#define MIB	(1024u * 1024u)
#define FIXTURE "tests/fixtures/hub_server.py"
#define WAIT_MS 20000
#define TOKEN	"sekret"

struct file {
	const char *path; /* under the fixture root */
	size_t size;
	uint8_t *data;
};

static struct file files[] = {
    {"models/acme/llm/config.json", 25, NULL},
    {"models/acme/llm/weights/model.safetensors", 5 * MIB + 4321, NULL},
    {"models/acme/llm/weights/nested/notes.txt", 1000, NULL},
    {"models/acme/llm/a b%c.txt", 10, NULL},
    {"models/acme/llm/empty.txt", 0, NULL},
    {"models/acme/gated/model.safetensors", 300000, NULL},
    {"models/acme/ms/.gitattributes", 20, NULL},
    {"models/acme/ms/model.bin", 2 * MIB + 1, NULL},
    {"datasets/acme/set/train.csv", 77, NULL},
};
#define NFILES (sizeof files / sizeof files[0])

static struct {
	char *dir;
	pid_t hub;
	int port;
	char endpoint[64];
} fx;

static char dir_for_signal[PATH_MAX];

static const struct file *file_named(const char *path)
{
	for (size_t i = 0; i < NFILES; i++)
		if (!strcmp(files[i].path, path))
			return &files[i];
	fail_msg("no test file %s", path);
	return NULL;
}

/* The fixture. */

static void reap(void)
{
	if (fx.hub <= 0)
		return;
	kill(-fx.hub, SIGTERM);
	for (int i = 0; i < 300; i++) {
		if (waitpid(fx.hub, NULL, WNOHANG) == fx.hub) {
			kill(-fx.hub, SIGKILL);
			fx.hub = 0;
			return;
		}
		usleep(10000);
	}
	kill(-fx.hub, SIGKILL);
	waitpid(fx.hub, NULL, 0);
	fx.hub = 0;
}

/* Killed from outside: stop the fixture and remove the temp dir with
 * async-signal-safe calls only. */
static void on_fatal_signal(int sig)
{
	if (fx.hub > 0)
		kill(-fx.hub, SIGKILL);
	if (dir_for_signal[0]) {
		pid_t pid = fork();
		if (pid == 0) {
			execl("/bin/rm", "rm", "-rf", dir_for_signal, (char *)NULL);
			_exit(127);
		}
		if (pid > 0)
			waitpid(pid, NULL, 0);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static int start_hub(void)
{
	char root[PATH_MAX], line[64] = {0};
	int p[2];
	if (access(FIXTURE, R_OK) != 0) {
		fprintf(stderr, "%s not found: run from the repository root\n", FIXTURE);
		return -1;
	}
	snprintf(root, sizeof root, "%s/root", fx.dir);
	if (pipe(p) < 0)
		return -1;
	fx.hub = fork();
	if (fx.hub == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		execlp("python3", "python3", FIXTURE, "--root", root, "--token", TOKEN,
		       "--page-size", "2", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	if (fx.hub < 0) {
		close(p[0]);
		return -1;
	}
	setpgid(fx.hub, fx.hub);
	struct pollfd pfd = {.fd = p[0], .events = POLLIN};
	size_t n = 0;
	while (n < sizeof line - 1 && !strchr(line, '\n')) {
		if (poll(&pfd, 1, 10000) <= 0)
			break;
		ssize_t k = read(p[0], line + n, sizeof line - 1 - n);
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	close(p[0]);
	char *end;
	unsigned long port = strtoul(line, &end, 10);
	if (end == line || port == 0 || port > 65535)
		return -1;
	fx.port = (int)port;
	snprintf(fx.endpoint, sizeof fx.endpoint, "http://127.0.0.1:%d", fx.port);
	return 0;
}

static int write_files(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < NFILES; i++) {
		struct file *f = &files[i];
		char path[PATH_MAX], cmd[PATH_MAX + 32];
		snprintf(path, sizeof path, "%s/root/%s", fx.dir, f->path);
		snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s')\"", path);
		if (system(cmd) != 0)
			return -1;
		f->data = malloc(f->size ? f->size : 1);
		for (size_t j = 0; j < f->size; j++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			f->data[j] = (uint8_t)(x >> 24);
		}
		FILE *out = fopen(path, "wb");
		if (!out || fwrite(f->data, 1, f->size, out) != f->size) {
			if (out)
				fclose(out);
			return -1;
		}
		fclose(out);
	}
	return 0;
}

static int group_teardown(void **state)
{
	reap();
	for (size_t i = 0; i < NFILES; i++) {
		free(files[i].data);
		files[i].data = NULL;
	}
	dir_for_signal[0] = '\0';
	testutil_rmtree(fx.dir);
	fx.dir = NULL;
	return 0;
}

static int group_setup(void **state)
{
	atexit(reap);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	fx.dir = testutil_mkdtemp();
	if (fx.dir)
		snprintf(dir_for_signal, sizeof dir_for_signal, "%s", fx.dir);
	signal(SIGTERM, on_fatal_signal);
	signal(SIGINT, on_fatal_signal);
	signal(SIGHUP, on_fatal_signal);
	if (!fx.dir || write_files() < 0 || start_hub() < 0) {
		fprintf(stderr, "test_source_hub: cannot set up the hub fixture\n");
		group_teardown(state);
		return -1;
	}
	setenv("HF_ENDPOINT", fx.endpoint, 1);
	setenv("MODELSCOPE_ENDPOINT", fx.endpoint, 1);
	setenv("HF_HOME", fx.dir, 1); /* no token file there */
	unsetenv("HF_TOKEN");
	unsetenv("HUGGING_FACE_HUB_TOKEN");
	unsetenv("HF_TOKEN_PATH");
	unsetenv("MODELSCOPE_API_TOKEN");
	return 0;
}

/* Fixture controls, through a plain blocking curl. */
static size_t sink(char *p, size_t s, size_t n, void *arg)
{
	buf_append(arg, p, s * n);
	return s * n;
}

static void control(const char *repo, const char *settings)
{
	char url[512];
	struct buf b = BUF_INIT;
	snprintf(url, sizeof url, "%s/__control?repo=%s&reset=1%s%s", fx.endpoint, repo,
		 settings[0] ? "&" : "", settings);
	CURL *e = curl_easy_init();
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
	assert_int_equal(curl_easy_perform(e), CURLE_OK);
	curl_easy_cleanup(e);
	buf_close(&b);
}

/* Loop helpers. */

struct wait {
	int n, status, in_call, inline_calls;
};

static void on_done(struct source *src, int status, void *arg)
{
	struct wait *w = arg;
	uv_stop(src->loop);
	if (w->in_call)
		w->inline_calls++;
	w->n++;
	w->status = status;
}

static void on_watchdog(uv_timer_t *t)
{
	*(int *)t->data = 1;
	uv_stop(t->loop);
}

static void run_until(uv_loop_t *loop, const int *count, int want, unsigned ms)
{
	uv_timer_t dog;
	int fired = 0;
	uv_timer_init(loop, &dog);
	dog.data = &fired;
	uv_timer_start(&dog, on_watchdog, ms, 0);
	while (*count < want && !fired)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&dog, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	assert_false(fired);
}

static struct source *src_open(uv_loop_t *loop, const char *uri, int retries)
{
	struct source_uri u;
	struct source_options o;
	struct source *s = NULL;
	assert_int_equal(uv_loop_init(loop), 0);
	assert_int_equal(uri_parse(uri, &u), 0);
	source_options_default(&o);
	o.retries = retries;
	o.stall_seconds = 5;
	o.connect_seconds = 2;
	assert_int_equal(source_new(loop, &u, &o, &s), 0);
	uri_close(&u);
	return s;
}

static void src_close(uv_loop_t *loop, struct source *s)
{
	source_free(s);
	for (int i = 0; i < 200 && uv_loop_alive(loop); i++)
		uv_run(loop, UV_RUN_NOWAIT);
	assert_int_equal(uv_loop_close(loop), 0);
}

static int do_list(uv_loop_t *loop, struct source *s)
{
	struct wait w = {0};
	w.in_call = 1;
	int rc = s->ops->list(s, on_done, &w);
	w.in_call = 0;
	if (rc < 0)
		return rc;
	run_until(loop, &w.n, 1, WAIT_MS);
	assert_int_equal(w.inline_calls, 0);
	return w.status;
}

static size_t index_of(const struct source *s, const char *path)
{
	for (size_t i = 0; i < s->listing.nfiles; i++)
		if (!strcmp(s->listing.files[i].path, path))
			return i;
	fail_msg("%s is not in the listing", path);
	return 0;
}

/* Reads of one file, `parallel` at once, each its own callback. */
struct reads {
	int done, failed, ok, inline_calls, in_call;
	int first_error;
	int statuses[64];
};

struct one_read {
	struct reads *rs;
	int slot;
};

static void read_cb(struct source *src, int status, void *arg)
{
	struct one_read *o = arg;
	uv_stop(src->loop);
	if (o->rs->in_call)
		o->rs->inline_calls++;
	o->rs->statuses[o->slot] = status;
	o->rs->done++;
	if (status < 0) {
		o->rs->failed++;
		if (!o->rs->first_error)
			o->rs->first_error = status;
	} else {
		o->rs->ok++;
	}
}

/* Read blocks [first, nblocks) of file index at once into out; the number
 * of reads issued. */
static int read_blocks(uv_loop_t *loop, struct source *s, size_t index, size_t block, size_t first,
		       uint8_t *out, struct reads *rs, struct one_read *ors)
{
	uint64_t size = s->listing.files[index].size;
	int n = 0;
	memset(rs, 0, sizeof *rs);
	for (uint64_t off = first * block; off < size; off += block, n++) {
		size_t len = size - off < block ? (size_t)(size - off) : block;
		ors[n].rs = rs;
		ors[n].slot = n;
		rs->in_call = 1;
		assert_int_equal(s->ops->read(s, index, off, len, out + off, read_cb, &ors[n]), 0);
		rs->in_call = 0;
	}
	run_until(loop, &rs->done, n, WAIT_MS);
	assert_int_equal(rs->inline_calls, 0);
	return n;
}

static void hex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void git_blob_id(const struct file *f, char *out)
{
	uint8_t d[EVP_MAX_MD_SIZE];
	unsigned n;
	char head[32];
	int k = snprintf(head, sizeof head, "blob %zu", f->size);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	EVP_DigestInit_ex(c, EVP_sha1(), NULL);
	EVP_DigestUpdate(c, head, (size_t)k + 1);
	EVP_DigestUpdate(c, f->data, f->size);
	EVP_DigestFinal_ex(c, d, &n);
	EVP_MD_CTX_free(c);
	hex(d, n, out);
}

static void sha256_hex(const struct file *f, char *out)
{
	struct hash_id h;
	hash_sha256(f->data, f->size, &h);
	hash_to_hex(&h, out);
}

/* Tests. */

static void test_helpers(void **state)
{
	struct buf b = BUF_INIT;
	hub_quote(&b, "dir/a b+c%é.txt", "/", 0);
	assert_string_equal(buf_cstr(&b), "dir/a%20b%2Bc%25%C3%A9.txt");
	buf_reset(&b);
	hub_quote(&b, "refs/pr/1 x", "", 1);
	assert_string_equal(buf_cstr(&b), "refs%2Fpr%2F1+x");
	buf_close(&b);
	assert_true(hub_is_hex("0123456789abcdef", 16));
	assert_false(hub_is_hex("0123456789ABCDEF", 16));
	assert_false(hub_is_hex("0123", 16));
	assert_false(hub_is_hex(NULL, 0));
	uint8_t out[2];
	hub_hex_decode("0aff", 4, out);
	assert_int_equal(out[0], 0x0a);
	assert_int_equal(out[1], 0xff);
	const char *const names[] = {"SYNCBIT_TEST_UNSET_A", "SYNCBIT_TEST_B", NULL};
	unsetenv("SYNCBIT_TEST_UNSET_A");
	setenv("SYNCBIT_TEST_B", "b", 1);
	assert_string_equal(hub_getenv(names), "b");
	setenv("SYNCBIT_TEST_UNSET_A", "", 1); /* empty counts as unset */
	assert_string_equal(hub_getenv(names), "b");
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/tok", fx.dir);
	FILE *f = fopen(path, "w");
	fputs("hf_abc\n\n", f);
	fclose(f);
	char *t = hub_read_token_file(path);
	assert_string_equal(t, "hf_abc");
	free(t);
	f = fopen(path, "w");
	fputs("two words\n", f);
	fclose(f);
	assert_null(hub_read_token_file(path));
	snprintf(path, sizeof path, "%s/none", fx.dir);
	assert_null(hub_read_token_file(path));
}

static void test_hf_listing(void **state)
{
	uv_loop_t loop;
	struct source *s = src_open(&loop, "hf://acme/llm", 2);
	assert_int_equal(do_list(&loop, s), 0);
	const struct source_listing *l = &s->listing;
	assert_int_equal(l->nfiles, 5); /* over 4 pages of 2 entries, directories left out */
	assert_non_null(l->version);
	assert_true(hub_is_hex(l->version, 40));
	for (size_t i = 1; i < l->nfiles; i++)
		assert_true(strcmp(l->files[i - 1].path, l->files[i].path) < 0);
	char want[80], digest[96];
	const struct file *lfs = file_named("models/acme/llm/weights/model.safetensors");
	size_t i = index_of(s, "weights/model.safetensors");
	assert_int_equal(l->files[i].size, lfs->size);
	sha256_hex(lfs, want);
	snprintf(digest, sizeof digest, "sha256:%s", want);
	assert_string_equal(l->files[i].digest, digest);
	const struct file *small = file_named("models/acme/llm/weights/nested/notes.txt");
	i = index_of(s, "weights/nested/notes.txt");
	git_blob_id(small, want);
	snprintf(digest, sizeof digest, "git:%s", want);
	assert_string_equal(l->files[i].digest, digest);
	assert_int_equal(l->files[i].type, SRC_REGULAR);
	assert_int_equal(l->files[i].mode, 0644);
	assert_true(l->files[i].mtime_ns > 0); /* the commit's date */
	index_of(s, "a b%c.txt");
	assert_int_equal(l->files[index_of(s, "empty.txt")].size, 0);
	src_close(&loop, s);
}

/* Every block at once: they land out of order, and each waits for the
 * bytes before it to be hashed. */
static void test_hf_read_parallel(void **state)
{
	uv_loop_t loop;
	struct reads rs;
	struct one_read ors[64];
	control("models/acme/llm", "");
	struct source *s = src_open(&loop, "hf://acme/llm", 2);
	assert_int_equal(do_list(&loop, s), 0);
	const char *names[] = {"weights/model.safetensors", "weights/nested/notes.txt", "a b%c.txt",
			       "config.json"};
	for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
		char full[256];
		snprintf(full, sizeof full, "models/acme/llm/%s", names[k]);
		const struct file *f = file_named(full);
		uint8_t *out = calloc(1, f->size);
		int n = read_blocks(&loop, s, index_of(s, names[k]), 512 * 1024, 0, out, &rs, ors);
		assert_int_equal(rs.failed, 0);
		assert_int_equal(rs.ok, n);
		assert_memory_equal(out, f->data, f->size);
		free(out);
	}
	assert_true(s->bytes_read > 5 * MIB);
	src_close(&loop, s);
}

static void test_hf_corrupt(void **state)
{
	uv_loop_t loop;
	struct reads rs;
	struct one_read ors[64];
	const struct file *f = file_named("models/acme/llm/weights/model.safetensors");
	control("models/acme/llm", "corrupt=weights/model.safetensors");
	struct source *s = src_open(&loop, "hf://acme/llm", 2);
	assert_int_equal(do_list(&loop, s), 0);
	size_t i = index_of(s, "weights/model.safetensors");
	uint8_t *out = calloc(1, f->size);
	int n = read_blocks(&loop, s, i, MIB, 0, out, &rs, ors);
	/* The read that completes the file carries the verdict. */
	assert_true(rs.failed >= 1);
	assert_int_equal(rs.ok + rs.failed, n);
	assert_int_equal(rs.first_error, SB_ECORRUPT);
	assert_non_null(s->error_detail);
	assert_non_null(strstr(s->error_detail, "SHA-256 of the download is"));
	assert_non_null(strstr(s->error_detail, "weights/model.safetensors"));
	/* A later read of the file fails the same way. */
	struct wait w = {0};
	assert_int_equal(s->ops->read(s, i, 0, 10, out, on_done, &w), 0);
	run_until(&loop, &w.n, 1, WAIT_MS);
	assert_int_equal(w.status, SB_ECORRUPT);
	src_close(&loop, s);

	/* Reads that skip the first block cannot check the file: they pass,
	 * and per-block hashes are what protects such a reader. */
	s = src_open(&loop, "hf://acme/llm", 2);
	assert_int_equal(do_list(&loop, s), 0);
	n = read_blocks(&loop, s, i, MIB, 1, out, &rs, ors);
	assert_int_equal(rs.failed, 0);
	assert_int_equal(rs.ok, n);
	src_close(&loop, s);
	free(out);
	control("models/acme/llm", "");
}

static void test_hf_changed(void **state)
{
	uv_loop_t loop;
	struct reads rs;
	struct one_read ors[64];
	const struct file *f = file_named("models/acme/llm/weights/model.safetensors");
	control("models/acme/llm", "change_after=1");
	struct source *s = src_open(&loop, "hf://acme/llm", 2);
	assert_int_equal(do_list(&loop, s), 0);
	uint8_t *out = calloc(1, f->size);
	read_blocks(&loop, s, index_of(s, "weights/model.safetensors"), 2 * MIB, 0, out, &rs, ors);
	assert_int_equal(rs.first_error, SB_ECHANGED);
	assert_non_null(strstr(s->error_detail, "the listing said"));
	free(out);
	src_close(&loop, s);
	control("models/acme/llm", "");
}

static void expect_list_error(const char *uri, int code, const char *text)
{
	uv_loop_t loop;
	struct source *s = src_open(&loop, uri, 1);
	assert_int_equal(do_list(&loop, s), code);
	assert_non_null(s->error_detail);
	if (!strstr(s->error_detail, text))
		fail_msg("%s: \"%s\" lacks \"%s\"", uri, s->error_detail, text);
	assert_int_equal(s->listing.nfiles, 0);
	src_close(&loop, s);
}

static void test_hf_errors(void **state)
{
	control("models/acme/gated", "gated=1");
	expect_list_error("hf://acme/gated", SB_EDENIED,
			  "hf://acme/gated: access denied: set HF_TOKEN (gated or private "
			  "repository)");
	setenv("HF_TOKEN", "nope", 1);
	expect_list_error("hf://acme/gated", SB_EDENIED, "the HF_TOKEN given has no access");
	setenv("HF_TOKEN", TOKEN, 1);
	expect_list_error("hf://acme/missing", SB_ENOTFOUND,
			  "hf://acme/missing: repository not found (HTTP 404)");
	uv_loop_t loop;
	struct source *s = src_open(&loop, "hf://acme/gated", 1);
	assert_int_equal(do_list(&loop, s), 0);
	src_close(&loop, s);
	unsetenv("HF_TOKEN");
	expect_list_error("hf://acme/missing", SB_ENOTFOUND, "set HF_TOKEN (HTTP 401)");
	expect_list_error("hf://acme/llm@nope", SB_ENOTFOUND, "revision nope not found");
	control("models/acme/llm", "malformed=1");
	expect_list_error("hf://acme/llm", SB_EPROTO, "malformed answer: malformed JSON");
	control("models/acme/llm", "r429=3&ra=0");
	expect_list_error("hf://acme/llm", SB_EHTTP4XX, "HTTP 429");
	control("models/acme/llm", "r429=1&ra=0");
	s = src_open(&loop, "hf://acme/llm", 1);
	assert_int_equal(do_list(&loop, s), 0);
	src_close(&loop, s);
	control("models/acme/llm", "");
	control("models/acme/gated", "");
}

static void test_ms(void **state)
{
	uv_loop_t loop;
	struct reads rs;
	struct one_read ors[64];
	struct source *s = src_open(&loop, "ms://acme/ms", 2);
	assert_int_equal(do_list(&loop, s), 0);
	assert_int_equal(s->listing.nfiles, 1); /* .gitattributes left out */
	assert_string_equal(s->listing.version, "master");
	const struct file *f = file_named("models/acme/ms/model.bin");
	char want[80], digest[96];
	sha256_hex(f, want);
	snprintf(digest, sizeof digest, "sha256:%s", want);
	assert_string_equal(s->listing.files[0].digest, digest);
	uint8_t *out = calloc(1, f->size);
	int n = read_blocks(&loop, s, 0, MIB, 0, out, &rs, ors);
	assert_int_equal(rs.ok, n);
	assert_memory_equal(out, f->data, f->size);
	free(out);
	src_close(&loop, s);

	s = src_open(&loop, "ms://datasets/acme/set@master", 2);
	assert_int_equal(do_list(&loop, s), 0);
	assert_int_equal(s->listing.nfiles, 1);
	assert_string_equal(s->listing.files[0].path, "train.csv");
	src_close(&loop, s);

	control("models/acme/gated", "gated=1");
	expect_list_error("ms://acme/gated", SB_EDENIED,
			  "ms://acme/gated: access denied: set MODELSCOPE_API_TOKEN");
	setenv("MODELSCOPE_API_TOKEN", TOKEN, 1);
	s = src_open(&loop, "ms://acme/gated", 1);
	assert_int_equal(do_list(&loop, s), 0);
	src_close(&loop, s);
	unsetenv("MODELSCOPE_API_TOKEN");
	control("models/acme/gated", "");
	expect_list_error("ms://acme/missing", SB_ENOTFOUND, "not found (HTTP 404");
}

/* cancel: every pending read ends with SB_ECANCELED, from the loop. */
static void test_cancel(void **state)
{
	uv_loop_t loop;
	struct reads rs = {0};
	struct one_read ors[8];
	const struct file *f = file_named("models/acme/llm/weights/model.safetensors");
	struct source *s = src_open(&loop, "hf://acme/llm", 2);
	assert_int_equal(do_list(&loop, s), 0);
	size_t i = index_of(s, "weights/model.safetensors");
	uint8_t *out = calloc(1, f->size);
	for (int k = 0; k < 5; k++) {
		ors[k].rs = &rs;
		ors[k].slot = k;
		assert_int_equal(s->ops->read(s, i, (uint64_t)k * MIB, MIB, out + (size_t)k * MIB,
					      read_cb, &ors[k]),
				 0);
	}
	uv_run(&loop, UV_RUN_NOWAIT);
	rs.in_call = 1;
	s->ops->cancel(s);
	rs.in_call = 0;
	assert_int_equal(rs.inline_calls, 0);
	run_until(&loop, &rs.done, 5, WAIT_MS);
	for (int k = 0; k < 5; k++)
		assert_true(rs.statuses[k] == SB_ECANCELED || rs.statuses[k] == 0);
	assert_true(rs.failed >= 1);
	/* A listing in flight is canceled too. */
	struct wait w = {0};
	assert_int_equal(s->ops->list(s, on_done, &w), 0);
	s->ops->cancel(s);
	run_until(&loop, &w.n, 1, WAIT_MS);
	assert_int_equal(w.status, SB_ECANCELED);
	free(out);
	src_close(&loop, s);
}

/* The source may be freed from inside a callback. */
static void free_in_cb(struct source *src, int status, void *arg)
{
	*(int *)arg = status == 0 ? 1 : -1;
	uv_stop(src->loop);
	source_free(src);
}

static void test_free_in_callback(void **state)
{
	uv_loop_t loop;
	int got = 0;
	struct source *s = src_open(&loop, "hf://acme/llm", 2);
	assert_int_equal(do_list(&loop, s), 0);
	static uint8_t out[64];
	assert_int_equal(s->ops->read(s, index_of(s, "config.json"), 0, 25, out, free_in_cb, &got),
			 0);
	run_until(&loop, &got, 1, WAIT_MS);
	for (int k = 0; k < 200 && uv_loop_alive(&loop); k++)
		uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_memory_equal(out, file_named("models/acme/llm/config.json")->data, 25);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_helpers),
	    cmocka_unit_test(test_hf_listing),
	    cmocka_unit_test(test_hf_read_parallel),
	    cmocka_unit_test(test_hf_corrupt),
	    cmocka_unit_test(test_hf_changed),
	    cmocka_unit_test(test_hf_errors),
	    cmocka_unit_test(test_ms),
	    cmocka_unit_test(test_cancel),
	    cmocka_unit_test(test_free_in_callback),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
