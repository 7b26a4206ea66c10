/* libFuzzer target for kubeconfig files (common/kube_config.c): the first
 * input byte picks kube_yaml_to_json on the rest, or kube_config_load on a
 * file holding it, in a temp dir that also holds the certificate, key and
 * token files a kubeconfig may name relative to itself. Inputs that could
 * name special files elsewhere (/dev, /proc, /sys, "..") are only
 * converted, never loaded. Whatever the bytes: no crash, leak,
 * out-of-bounds access or runaway expansion; a document converts to JSON
 * or fails with a reason; a configuration loaded has an https:// server
 * without a trailing '/' and some credentials; a refusal says why. */
#include "tests/fuzz/fuzz_util.h"

#include <unistd.h>

#include "common/err.h"
#include "common/kube.h"

static char *dir, path[4096];
static const char *const files[] = {"ca.crt", "client.crt", "client.key", "token"};

static void put(const char *name, const void *d, size_t n)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	FILE *f = fopen(p, "wb");
	if (!f || fwrite(d, 1, n, f) != n || fclose(f) != 0)
		abort();
}

static void cleanup(void)
{
	char p[4096];
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		snprintf(p, sizeof p, "%s/%s", dir, files[i]);
		unlink(p);
	}
	unlink(path);
	rmdir(dir);
	free(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char pem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
	dir = fuzz_tempdir("kube");
	snprintf(path, sizeof path, "%s/config", dir);
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
		put(files[i], pem, sizeof pem - 1);
	atexit(cleanup);
	unsetenv("KUBECONFIG");
	unsetenv("KUBERNETES_SERVICE_HOST");
	return 0;
}

static void to_json(const uint8_t *d, size_t n)
{
	char *detail = NULL;
	json_t *j = kube_yaml_to_json((const char *)d, n, &detail);
	if (j) {
		fuzz_check(detail == NULL, "detail set on success");
		json_decref(j);
	} else {
		fuzz_check(detail && detail[0], "failure without a reason");
		free(detail);
	}
}

static void load(const uint8_t *d, size_t n)
{
	if (memmem(d, n, "dev/", 4) || memmem(d, n, "proc/", 5) || memmem(d, n, "sys/", 4) ||
	    memmem(d, n, "..", 2))
		return;
	put("config", d, n);
	struct kube_config cfg;
	char *detail = NULL;
	int rc = kube_config_load(path, &cfg, &detail);
	if (rc == 1) {
		fuzz_check(detail == NULL, "detail set on success");
		fuzz_check(cfg.server && !strncmp(cfg.server, "https://", 8), "server not https");
		size_t len = strlen(cfg.server);
		fuzz_check(len == 8 || cfg.server[len - 1] != '/', "server with a trailing '/'");
		fuzz_check(cfg.token || cfg.token_file || cfg.cert.len, "no credentials");
		kube_config_close(&cfg);
	} else {
		fuzz_check(rc < 0 && detail && detail[0], "failure without a reason");
		fuzz_check(!cfg.server && !cfg.token && !cfg.source, "config left on failure");
		free(detail);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 1)
		load(data + 1, size - 1);
	else
		to_json(data + 1, size - 1);
	return 0;
}
