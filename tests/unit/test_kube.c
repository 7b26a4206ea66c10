/* Kubernetes client pieces that need no server: kubeconfig and in-cluster
 * configuration, YAML to JSON, and the dataset keys of label keys and
 * readiness-gate condition types. */
#include "testutil.h"

#include <sys/stat.h>

#include "common/err.h"
#include "common/kube.h"

static char *dir;

static void put(const char *name, const char *text)
{
	char p[1024];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
	dir = testutil_mkdtemp();
	unsetenv("KUBECONFIG");
	unsetenv("KUBERNETES_SERVICE_HOST");
	return dir ? 0 : -1;
}

static int teardown(void **state)
{
	testutil_rmtree(dir);
	return 0;
}

static const char *kubeconfig = "apiVersion: v1\n"
				"kind: Config\n"
				"current-context: b\n"
				"clusters:\n"
				"- name: one\n"
				"  cluster:\n"
				"    server: https://10.0.0.1:6443\n"
				"- name: two\n"
				"  cluster:\n"
				"    server: https://127.0.0.1:8443/\n"
				"    certificate-authority: ca.pem\n"
				"users:\n"
				"- name: u\n"
				"  user:\n"
				"    tokenFile: tok\n"
				"- name: v\n"
				"  user:\n"
				"    client-certificate-data: aGVsbG8=\n"
				"    client-key-data: d29ybGQ=\n"
				"contexts:\n"
				"- name: a\n"
				"  context: {cluster: one, user: v}\n"
				"- name: b\n"
				"  context:\n"
				"    cluster: two\n"
				"    user: u\n"
				"    namespace: gpu\n";

static void test_kubeconfig(void **state)
{
	struct kube_config c;
	char *detail = NULL, path[1024];
	put("ca.pem", "PEM");
	put("kc", kubeconfig);
	snprintf(path, sizeof path, "%s/kc", dir);
	assert_int_equal(kube_config_load(path, &c, &detail), 1);
	assert_string_equal(c.server, "https://127.0.0.1:8443");
	assert_int_equal(c.ca.len, 3);
	assert_memory_equal(c.ca.ptr, "PEM", 3);
	char want[1100];
	snprintf(want, sizeof want, "%s/tok", dir); /* relative to the kubeconfig */
	assert_string_equal(c.token_file, want);
	assert_string_equal(c.namespace, "gpu");
	assert_null(c.token);
	kube_config_close(&c);

	/* $KUBECONFIG (its first file), and inline client certificates */
	char *text = strdup(kubeconfig), *ctx = strstr(text, "current-context: b");
	ctx[strlen("current-context: ")] = 'a';
	put("kc2", text);
	free(text);
	char env[2100];
	snprintf(env, sizeof env, "%s/kc2:%s/kc", dir, dir);
	setenv("KUBECONFIG", env, 1);
	assert_int_equal(kube_config_load(NULL, &c, &detail), 1);
	assert_string_equal(c.server, "https://10.0.0.1:6443");
	assert_int_equal(c.cert.len, 5);
	assert_memory_equal(c.cert.ptr, "hello", 5);
	assert_memory_equal(c.key.ptr, "world", 5);
	kube_config_close(&c);
	unsetenv("KUBECONFIG");
}

static void refused(const char *text, const char *why)
{
	struct kube_config c;
	char *detail = NULL, path[1024];
	put("bad", text);
	snprintf(path, sizeof path, "%s/bad", dir);
	assert_true(kube_config_load(path, &c, &detail) < 0);
	assert_non_null(detail);
	if (!strstr(detail, why))
		fail_msg("'%s' does not say '%s'", detail, why);
	free(detail);
}

static void test_kubeconfig_refused(void **state)
{
	refused("clusters:\n- name: c\n  cluster:\n    server: http://1.2.3.4\n"
		"users:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n"
		"  context: {cluster: c, user: u}\ncurrent-context: x\n",
		"https://");
	refused("clusters:\n- name: c\n  cluster:\n    server: https://1.2.3.4\n"
		"    insecure-skip-tls-verify: true\n"
		"users:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n"
		"  context: {cluster: c, user: u}\ncurrent-context: x\n",
		"always verified");
	refused("current-context: nope\n", "nope");
	/* Met while writing tests/fuzz/fuzz_kube_config: nine levels of ten aliases
	 * each would expand to 10^9 values. */
	struct buf bomb = BUF_INIT;
	buf_append_str(&bomb, "a: &a [x,x,x,x,x,x,x,x,x,x]\n");
	for (int i = 1; i < 10; i++) {
		buf_printf(&bomb, "l%d: &l%d [", i, i);
		for (int k = 0; k < 10; k++) {
			if (i == 1)
				buf_printf(&bomb, "%s*a", k ? "," : "");
			else
				buf_printf(&bomb, "%s*l%d", k ? "," : "", i - 1);
		}
		buf_append_str(&bomb, "]\n");
	}
	refused(buf_cstr(&bomb), "aliases are expanded");
	buf_close(&bomb);
	refused("clusters: [\n", "line");
	refused("clusters:\n- name: c\n  cluster:\n    server: https://1.2.3.4\n"
		"users:\n- name: u\n  user: {}\ncontexts:\n- name: x\n"
		"  context: {cluster: c, user: u}\ncurrent-context: x\n",
		"no credentials");
	struct kube_config c;
	char *detail = NULL;
	assert_true(kube_config_load("/nonexistent/kc", &c, &detail) < 0);
	assert_non_null(strstr(detail, "/nonexistent/kc"));
	free(detail);
}

static void test_in_cluster(void **state)
{
	struct kube_config c;
	char *detail = NULL;
	assert_int_equal(kube_config_load(NULL, &c, &detail), 0); /* nothing asks */
	put("ca.crt", "CA");
	put("token", "abc\n");
	put("namespace", "syncbit\n");
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	setenv("SYNCBIT_SERVICEACCOUNT_DIR", dir, 1);
	assert_int_equal(kube_config_load(NULL, &c, &detail), 1);
	assert_string_equal(c.server, "https://10.96.0.1:443");
	assert_string_equal(c.namespace, "syncbit");
	assert_string_equal(c.source, "in-cluster");
	assert_non_null(strstr(c.token_file, "/token"));
	kube_config_close(&c);
	setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
	assert_int_equal(kube_config_load(NULL, &c, &detail), 1);
	assert_string_equal(c.server, "https://[fd00::1]:443");
	kube_config_close(&c);
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("SYNCBIT_SERVICEACCOUNT_DIR");
}

static void test_dataset_key(void **state)
{
	char *k = kube_dataset_key("llama-3-8b");
	assert_string_equal(k, "llama-3-8b");
	free(k);
	/* too long, or not alphanumeric at the ends: mapped, still valid */
	char longname[129];
	memset(longname, 'a', 128);
	longname[128] = '\0';
	const char *odd[] = {longname, "-lead", "trail.", "_x_", "a.0123456789ab", "..."};
	char *keys[6];
	for (int i = 0; i < 6; i++) {
		keys[i] = kube_dataset_key(odd[i]);
		assert_true(kube_label_name_ok(keys[i]));
		assert_string_not_equal(keys[i], odd[i]);
		for (int j = 0; j < i; j++)
			assert_string_not_equal(keys[i], keys[j]);
	}
	/* the mapped form of a name is never another name's key as-is */
	char *again = kube_dataset_key(keys[1]);
	assert_string_not_equal(again, keys[1]);
	free(again);
	for (int i = 0; i < 6; i++)
		free(keys[i]);
	assert_false(kube_label_name_ok(""));
	assert_false(kube_label_name_ok("a b"));
	assert_true(kube_label_name_ok("A.b_c-9"));
}

static void test_query_escape(void **state)
{
	struct buf b = BUF_INIT;
	kube_query_escape(&b, "spec.nodeName=n 1/x");
	assert_string_equal(buf_cstr(&b), "spec.nodeName%3Dn%201%2Fx");
	buf_close(&b);
	char t[32];
	kube_time_now(t);
	assert_int_equal(strlen(t), 20);
	assert_int_equal(t[19], 'Z');
}

/* An anchor used again is a copy of its value; only a runaway expansion
 * is refused (test_kubeconfig_refused). */
static void test_yaml_aliases(void **state)
{
	const char *text = "user: &u {token: t}\nusers: [*u, *u]\n";
	char *detail = NULL;
	json_t *j = kube_yaml_to_json(text, strlen(text), &detail);
	assert_non_null(j);
	assert_null(detail);
	json_t *users = json_object_get(j, "users");
	assert_int_equal(json_array_size(users), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(users, 1), "token")),
			    "t");
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kubeconfig),	 cmocka_unit_test(test_kubeconfig_refused),
	    cmocka_unit_test(test_in_cluster),	 cmocka_unit_test(test_dataset_key),
	    cmocka_unit_test(test_query_escape), cmocka_unit_test(test_yaml_aliases),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
