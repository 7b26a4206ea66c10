/* The s3:// source's configuration: AWS regions and endpoints, custom
 * endpoints and addressing styles, and where credentials come from. */
#include "testutil.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <uv.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/path.h"
#include "common/s3.h"
#include "common/sigv4.h"
#include "common/source.h"
#include "common/uri.h"
#include "s3_env.h"

/* ---- configuration and addressing ---- */

static void target(const struct s3_config *c, const char *bucket, const char *key,
		   const char *query, const char *want_url, const char *want_host,
		   const char *want_path)
{
	struct buf url = BUF_INIT, host = BUF_INIT, path = BUF_INIT;
	s3_target(c, bucket, key, query, &url, &host, &path);
	assert_string_equal(buf_cstr(&url), want_url);
	assert_string_equal(buf_cstr(&host), want_host);
	assert_string_equal(buf_cstr(&path), want_path);
	buf_close(&url);
	buf_close(&host);
	buf_close(&path);
}

static void test_config_aws(void **state)
{
	struct s3_config c;
	char *detail;
	clear_env();
	assert_int_equal(s3_config_init(&c, "bkt", NULL, NULL, -1, &detail), 0);
	assert_string_equal(c.region, "us-east-1");
	assert_false(c.path_style);
	assert_null(c.access_key);
	target(&c, "bkt", "m/a b+c.bin", "",
	       "https://bkt.s3.us-east-1.amazonaws.com/m/a%20b%2Bc.bin",
	       "bkt.s3.us-east-1.amazonaws.com", "/m/a%20b%2Bc.bin");
	target(&c, "bkt", NULL, "list-type=2&prefix=m%2F",
	       "https://bkt.s3.us-east-1.amazonaws.com/?list-type=2&prefix=m%2F",
	       "bkt.s3.us-east-1.amazonaws.com", "/");
	s3_config_close(&c);
	/* Region from the environment; a dotted bucket goes path-style on
	 * https; the China partition has its own domain. */
	setenv("AWS_DEFAULT_REGION", "eu-west-1", 1);
	assert_int_equal(s3_config_init(&c, "my.bucket", NULL, NULL, -1, &detail), 0);
	assert_true(c.path_style);
	target(&c, "my.bucket", "k", "", "https://s3.eu-west-1.amazonaws.com/my.bucket/k",
	       "s3.eu-west-1.amazonaws.com", "/my.bucket/k");
	s3_config_close(&c);
	setenv("AWS_REGION", "cn-north-1", 1);
	assert_int_equal(s3_config_init(&c, "b", NULL, NULL, -1, &detail), 0);
	assert_string_equal(c.host, "s3.cn-north-1.amazonaws.com.cn");
	s3_config_close(&c);
	/* Flags win over the environment. */
	assert_int_equal(s3_config_init(&c, "b", NULL, "ap-south-1", 1, &detail), 0);
	assert_string_equal(c.region, "ap-south-1");
	assert_true(c.path_style);
	s3_config_close(&c);
	assert_int_equal(s3_config_init(&c, "b", NULL, "Bad_Region", -1, &detail), SB_ECONFIG);
	assert_non_null(strstr(detail, "Bad_Region"));
	free(detail);
	clear_env();
}

static void test_config_endpoint(void **state)
{
	struct s3_config c;
	char *detail;
	clear_env();
	setenv("AWS_ENDPOINT_URL", "http://other:1", 1);
	setenv("AWS_ENDPOINT_URL_S3", "HTTP://MinIO.local:9000/", 1);
	assert_int_equal(s3_config_init(&c, "bkt", NULL, NULL, -1, &detail), 0);
	assert_true(c.custom);
	assert_true(c.path_style);
	target(&c, "bkt", "a/b", "", "http://minio.local:9000/bkt/a/b", "minio.local:9000",
	       "/bkt/a/b");
	target(&c, "bkt", NULL, "x=1", "http://minio.local:9000/bkt?x=1", "minio.local:9000",
	       "/bkt");
	s3_config_close(&c);
	/* The flag wins; a default port is left out; a base path is kept;
	 * virtual-hosted on request. */
	assert_int_equal(s3_config_init(&c, "bkt", "https://gw.example:443/s3/", NULL, 0, &detail),
			 0);
	assert_false(c.path_style);
	target(&c, "bkt", "k", "", "https://bkt.gw.example/s3/k", "bkt.gw.example", "/s3/k");
	s3_config_close(&c);
	assert_int_equal(s3_config_init(&c, "bkt", "http://[::1]:4568", NULL, -1, &detail), 0);
	target(&c, "bkt", "k", "", "http://[::1]:4568/bkt/k", "[::1]:4568", "/bkt/k");
	s3_config_close(&c);
	static const char *const bad[] = {"ftp://h/", "not a url", "http://u:p@h/", "http://h/?q=1",
					  "http://h/#f"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(s3_config_init(&c, "bkt", bad[i], NULL, -1, &detail), SB_ECONFIG);
		assert_non_null(detail);
		free(detail);
	}
	clear_env();
}

static void test_config_credentials(void **state)
{
	struct s3_config c;
	char *detail;
	clear_env();
	setenv("AWS_ACCESS_KEY_ID", "AK", 1);
	assert_int_equal(s3_config_init(&c, "bkt", NULL, NULL, -1, &detail), SB_ECONFIG);
	assert_non_null(strstr(detail, "AWS_SECRET_ACCESS_KEY is not"));
	free(detail);
	setenv("AWS_SECRET_ACCESS_KEY", "SK", 1);
	setenv("AWS_SESSION_TOKEN", "TOK", 1);
	assert_int_equal(s3_config_init(&c, "bkt", NULL, NULL, -1, &detail), 0);
	assert_string_equal(c.access_key, "AK");
	assert_string_equal(c.secret_key, "SK");
	assert_string_equal(c.session_token, "TOK");
	s3_config_close(&c);
	/* Empty variables count as unset. */
	setenv("AWS_ACCESS_KEY_ID", "", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "", 1);
	assert_int_equal(s3_config_init(&c, "bkt", NULL, NULL, -1, &detail), 0);
	assert_null(c.access_key);
	s3_config_close(&c);
	clear_env();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_config_aws),
	    cmocka_unit_test(test_config_endpoint),
	    cmocka_unit_test(test_config_credentials),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
