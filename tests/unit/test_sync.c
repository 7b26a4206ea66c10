#include "tests/unit/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>

#include "agent/sync.h"
#include "common/err.h"

static const struct sync_list_options hf = {.platform = SYNC_HUGGINGFACE};

static struct sync_list parse_ok(const char *text, const struct sync_list_options *o)
{
	struct sync_list l;
	char *err = NULL;
	if (sync_list_parse(text, strlen(text), "/models", o, &l, &err) != 0)
		fail_msg("rejected: %s", err ? err : "?");
	assert_null(err);
	return l;
}

static void expect_error(const char *text, const char *needle)
{
	struct sync_list l;
	char *err = NULL;
	int rc = sync_list_parse(text, strlen(text), "/models", &hf, &l, &err);
	if (rc != SB_ECONFIG)
		fail_msg("accepted: %s", text);
	assert_non_null(err);
	if (!strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
	assert_null(strchr(err, '\n'));
	assert_int_equal(l.n, 0);
	assert_null(l.items);
	free(err);
}

static void expect_item(const struct sync_list *l, size_t i, const char *source, const char *target,
			const char *name, unsigned line)
{
	assert_true(i < l->n);
	assert_string_equal(l->items[i].source, source);
	assert_string_equal(l->items[i].target, target);
	assert_string_equal(l->items[i].name, name);
	assert_int_equal(l->items[i].line, line);
}

static void test_plain(void **state)
{
	const char *text = "# models to keep on the nodes\n"
			   "\n"
			   "Qwen/Qwen2.5-7B-Instruct\n"
			   "  meta-llama/Llama-3.1-8B   # the 8B one\n"
			   "deepseek-ai/DeepSeek-R1@v1.0\r\n"
			   "hf://datasets/acme/corpus\n"
			   "ms://qwen/Qwen2-VL\n"
			   "/srv/models/local-model/\n"
			   "file:///srv/other\n"
			   "s3://bucket/models/bert/\n"
			   "Qwen/Qwen2.5-7B-Instruct\n"; /* repeated: synced once */
	struct sync_list l = parse_ok(text, &hf);
	assert_int_equal(l.n, 8);
	expect_item(&l, 0, "hf://Qwen/Qwen2.5-7B-Instruct", "/models/Qwen/Qwen2.5-7B-Instruct",
		    "Qwen2.5-7B-Instruct", 3);
	assert_string_equal(l.items[0].repo, "Qwen/Qwen2.5-7B-Instruct");
	assert_false(l.items[0].dataset);
	expect_item(&l, 1, "hf://meta-llama/Llama-3.1-8B", "/models/meta-llama/Llama-3.1-8B",
		    "Llama-3.1-8B", 4);
	expect_item(&l, 2, "hf://deepseek-ai/DeepSeek-R1@v1.0", "/models/deepseek-ai/DeepSeek-R1",
		    "DeepSeek-R1", 5);
	expect_item(&l, 3, "hf://datasets/acme/corpus", "/models/acme/corpus", "corpus", 6);
	assert_true(l.items[3].dataset);
	expect_item(&l, 4, "ms://qwen/Qwen2-VL", "/models/qwen/Qwen2-VL", "Qwen2-VL", 7);
	expect_item(&l, 5, "/srv/models/local-model/", "/models/local-model", "local-model", 8);
	assert_null(l.items[5].repo);
	expect_item(&l, 6, "file:///srv/other", "/models/other", "other", 9);
	expect_item(&l, 7, "s3://bucket/models/bert/", "/models/bert", "bert", 10);
	sync_list_close(&l);
}

static void test_plain_options(void **state)
{
	struct sync_list_options ms = {.platform = SYNC_MODELSCOPE, .datasets = 1};
	struct sync_list l = parse_ok("acme/corpus\nacme/other@master\n", &ms);
	assert_int_equal(l.n, 2);
	expect_item(&l, 0, "ms://datasets/acme/corpus", "/models/acme/corpus", "corpus", 1);
	expect_item(&l, 1, "ms://datasets/acme/other@master", "/models/acme/other", "other", 2);
	sync_list_close(&l);
	/* flat: every item into DST itself (hf-cache and triton place them) */
	struct sync_list_options flat = {.flat = 1};
	l = parse_ok("acme/a\n/srv/b\n", &flat);
	expect_item(&l, 0, "hf://acme/a", "/models", "a", 1);
	expect_item(&l, 1, "/srv/b", "/models", "b", 2);
	sync_list_close(&l);
	/* empty lists are fine: nothing to sync */
	l = parse_ok("# nothing yet\n\n", &hf);
	assert_int_equal(l.n, 0);
	sync_list_close(&l);
}

static void test_json(void **state)
{
	const char *text = "[\n"
			   "  {\"platform\": \"modelscope\", \"organization\": \"qwen\",\n"
			   "   \"model_name\": \"Qwen2-7B\"},\n"
			   "  {\"platform\": \"huggingface\", \"organization\": \"acme\",\n"
			   "   \"dataset_name\": \"corpus\", \"revision\": \"v2\"},\n"
			   "  {\"platform\": \"HuggingFace\", \"organization\": \"acme\",\n"
			   "   \"model_name\": \"llm\", \"note\": \"extra keys are ignored\"}\n"
			   "]\n";
	struct sync_list l = parse_ok(text, &hf);
	assert_int_equal(l.n, 3);
	expect_item(&l, 0, "ms://qwen/Qwen2-7B", "/models/qwen/Qwen2-7B", "Qwen2-7B", 1);
	expect_item(&l, 1, "hf://datasets/acme/corpus@v2", "/models/acme/corpus", "corpus", 2);
	assert_true(l.items[1].dataset);
	assert_string_equal(l.items[1].repo, "acme/corpus");
	expect_item(&l, 2, "hf://acme/llm", "/models/acme/llm", "llm", 3);
	sync_list_close(&l);
	l = parse_ok("  []", &hf);
	assert_int_equal(l.n, 0);
	sync_list_close(&l);
}

static void test_errors(void **state)
{
	expect_error("acme/llm\nnot a repo\n", "line 2:");
	expect_error("just-a-name\n", "line 1: 'just-a-name' is not ORG/NAME");
	expect_error("a/b/c\n", "is not ORG/NAME");
	expect_error("acme/../etc\n", "is not ORG/NAME");
	expect_error("acme/..\n", "not a repo id (bad name)");
	expect_error("../x\n", "not a repo id (bad organization)");
	expect_error("acme/.hidden\n", "not a repo id");
	expect_error("acme/a--b\n", "not a repo id");
	expect_error("acme/l!m\n", "not a repo id");
	expect_error("acme/llm@\n", "not a revision");
	expect_error("gopher://x/y\n", "line 1:");
	expect_error("[{\"platform\": \"github\", \"organization\": \"a\", \"model_name\": \"b\"}]",
		     "item 1: platform 'github'");
	expect_error("[{\"organization\": \"a\", \"model_name\": \"b\"}]", "no \"platform\"");
	expect_error("[{\"platform\": \"huggingface\", \"model_name\": \"b\"}]",
		     "no \"organization\"");
	expect_error("[{\"platform\": \"huggingface\", \"organization\": \"a\"}]",
		     "one of \"model_name\" and \"dataset_name\"");
	expect_error("[{\"platform\": \"huggingface\", \"organization\": \"a\", \"model_name\": "
		     "\"b\", \"dataset_name\": \"c\"}]",
		     "one of");
	expect_error("[{}, 3]", "item 1");
	expect_error("[{\"platform\": \"huggingface\", \"organization\": \"a\", \"model_name\": "
		     "\"b\"}, 3]",
		     "item 2: not an object");
	expect_error("[{\"platform\": \"huggingface\", \"organization\": \"a/b\", \"model_name\": "
		     "\"c\"}]",
		     "item 1: 'a/b/c' is not a repo id");
	expect_error("[1, 2", "malformed JSON");
	expect_error("{\"platform\": \"huggingface\"}", "line 1");
	struct sync_list l;
	char *err = NULL;
	assert_int_equal(sync_list_parse("a/b\0c", 5, "/m", &hf, &l, &err), SB_ECONFIG);
	assert_non_null(strstr(err, "NUL"));
	free(err);
}

static void test_load(void **state)
{
	char *dir = testutil_mkdtemp();
	char path[512];
	struct sync_list l;
	char *err = NULL;
	snprintf(path, sizeof path, "%s/models.ini", dir);
	FILE *f = fopen(path, "w");
	fputs("acme/one\nacme/two", f); /* no final newline */
	fclose(f);
	assert_int_equal(sync_list_load(path, "/d", &hf, &l, &err), 0);
	assert_int_equal(l.n, 2);
	expect_item(&l, 1, "hf://acme/two", "/d/acme/two", "two", 2);
	sync_list_close(&l);
	f = fopen(path, "w");
	fputs("acme/one\nbad line\n", f);
	fclose(f);
	assert_int_equal(sync_list_load(path, "/d", &hf, &l, &err), SB_ECONFIG);
	assert_non_null(strstr(err, "models.ini: line 2:"));
	free(err);
	snprintf(path, sizeof path, "%s/missing.json", dir);
	assert_int_equal(sync_list_load(path, "/d", &hf, &l, &err), -ENOENT);
	assert_non_null(strstr(err, "missing.json"));
	free(err);
	testutil_rmtree(dir);
}

static void test_lock(void **state)
{
	char *dir = testutil_mkdtemp();
	char *path = sync_lock_path(dir, "/raid/models");
	char *again = sync_lock_path(dir, "/raid/models");
	char *other = sync_lock_path(dir, "/raid/other");
	volatile sig_atomic_t stop = 0;
	int a, b;
	assert_string_equal(path, again);
	assert_string_not_equal(path, other);
	assert_non_null(strstr(path, "/locks/sync-"));
	assert_int_equal(sync_lock(path, 0, &stop, &a), 1);
	/* flock is per open file: a second open conflicts, as another
	 * process would */
	assert_int_equal(sync_lock(path, 0, &stop, &b), 0);
	assert_int_equal(b, -1);
	stop = 1;
	assert_int_equal(sync_lock(path, 1, &stop, &b), SB_ECANCELED);
	stop = 0;
	assert_int_equal(sync_lock(other, 0, &stop, &b), 1);
	sync_unlock(b);
	sync_unlock(a);
	assert_int_equal(sync_lock(path, 0, &stop, &b), 1);
	sync_unlock(b);
	free(path);
	free(again);
	free(other);
	testutil_rmtree(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plain), cmocka_unit_test(test_plain_options),
	    cmocka_unit_test(test_json),  cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_load),  cmocka_unit_test(test_lock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
