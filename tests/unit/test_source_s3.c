/* The s3:// source: the bounded XML scanner on good and malformed
 * ListObjectsV2 pages (SigV4 has tests/unit/test_sigv4.c), endpoint and addressing rules, and the
 * source itself against tests/fixtures/s3_fixture.py, which checks every signature strictly. The
 * fixture runs as a child in its own process group and dies with this
 * process. */
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
#include "common/source/s3_api.h"
#include "common/source/source.h"
#include "common/uri.h"

#define FIXTURE "tests/fixtures/s3_fixture.py"
#define WAIT_MS 20000
#define AKID	"AKIDEXAMPLE"
#define SECRET	"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

/* ---- XML ---- */

#define PAGE_HEAD                                      \
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" \
	"<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n"
#define PAGE_TAIL "</ListBucketResult>\n"

static void test_xml_page(void **state)
{
	const char *doc = PAGE_HEAD
	    "  <Name>b</Name><Prefix>p/</Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>\n"
	    "  <IsTruncated>true</IsTruncated>\n"
	    "  <!-- a comment --><?pi here?>\n"
	    "  <Contents><Key>p/a &amp; b.bin</Key>"
	    "<LastModified>2009-10-12T17:50:30.250Z</LastModified>"
	    "<ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag><Size>434234</Size>"
	    "<StorageClass>STANDARD</StorageClass><Owner><ID>x</ID></Owner></Contents>\n"
	    "  <Contents><Key>p/&#x41;&#66;/c\xc3\xa9</Key><Size>0</Size>"
	    "<ETag>\"d41d8cd98f00b204e9800998ecf8427e-2\"</ETag>"
	    "<LastModified>1970-01-01T00:00:01Z</LastModified></Contents>\n"
	    "  <Contents><Key><![CDATA[p/<raw>]]></Key><Size>18446744073</Size><ETag/></Contents>\n"
	    "  <CommonPrefixes><Prefix>p/x/</Prefix></CommonPrefixes>\n"
	    "  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="
	    "</NextContinuationToken>\n" PAGE_TAIL;
	struct s3_list_page p;
	char err[S3_ERR_MAX];
	assert_int_equal(s3_list_parse(doc, strlen(doc), &p, err), 0);
	assert_int_equal(p.n, 3);
	assert_true(p.truncated);
	assert_string_equal(p.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
	assert_string_equal(p.objects[0].key, "p/a & b.bin");
	assert_int_equal(p.objects[0].size, 434234);
	assert_string_equal(p.objects[0].etag, "fba9dede5f27731c9771645a39863328");
	assert_int_equal(p.objects[0].mtime_ns, 1255369830250000000LL);
	assert_string_equal(p.objects[1].key, "p/AB/c\xc3\xa9");
	assert_string_equal(p.objects[1].etag, "d41d8cd98f00b204e9800998ecf8427e-2");
	assert_int_equal(p.objects[1].mtime_ns, 1000000000LL);
	assert_string_equal(p.objects[2].key, "p/<raw>");
	assert_int_equal(p.objects[2].size, 18446744073ULL);
	assert_null(p.objects[2].etag);
	assert_false(p.url_encoded);
	s3_list_page_close(&p);
}

static void test_xml_url_encoding(void **state)
{
	const char *doc =
	    PAGE_HEAD "<IsTruncated>false</IsTruncated>"
		      "<Contents><Key>p/a+b%2Bc%20d%E2%82%AC</Key><Size>1</Size></Contents>"
		      "<EncodingType>url</EncodingType>" PAGE_TAIL;
	struct s3_list_page p;
	char err[S3_ERR_MAX];
	assert_int_equal(s3_list_parse(doc, strlen(doc), &p, err), 0);
	assert_true(p.url_encoded);
	assert_false(p.truncated);
	assert_string_equal(p.objects[0].key, "p/a b+c d\xe2\x82\xac");
	s3_list_page_close(&p);
	const char *nul = PAGE_HEAD "<Contents><Key>p/a%00</Key><Size>1</Size></Contents>"
				    "<EncodingType>url</EncodingType>" PAGE_TAIL;
	assert_int_equal(s3_list_parse(nul, strlen(nul), &p, err), SB_EPROTO);
	const char *other = PAGE_HEAD "<EncodingType>base64</EncodingType>" PAGE_TAIL;
	assert_int_equal(s3_list_parse(other, strlen(other), &p, err), SB_EPROTO);
	assert_non_null(strstr(err, "EncodingType"));
}

static void expect_malformed(const char *doc, size_t len, const char *why)
{
	struct s3_list_page p;
	char err[S3_ERR_MAX];
	int rc = s3_list_parse(doc, len, &p, err);
	if (rc != SB_EPROTO || !strstr(err, why))
		fail_msg("%s: rc %d, err \"%s\", wanted \"%s\"", doc, rc, err, why);
	assert_int_equal(p.n, 0);
	assert_null(p.objects);
	assert_null(strchr(err, '\n'));
}

static void test_xml_malformed(void **state)
{
	const char *cut = PAGE_HEAD "<IsTruncated>false</IsTruncated><Contents><Key>p/a</Key><Si";
	expect_malformed(cut, strlen(cut), "unterminated tag");
	const char *open = PAGE_HEAD "<Contents><Key>p/a</Key><Size>1</Size></Contents>";
	expect_malformed(open, strlen(open), "ends inside <ListBucketResult>");
	expect_malformed("", 0, "no root element");
	expect_malformed("<a>", 3, "<ListBucketResult> was expected");
	expect_malformed("<html><body>proxy</body></html>", 31, "<ListBucketResult> was expected");
	const char *mismatch = PAGE_HEAD "<Contents><Key>p/a</Size></Contents>" PAGE_TAIL;
	expect_malformed(mismatch, strlen(mismatch), "</Size> does not close <Key>");
	const char *dtd = "<!DOCTYPE x [<!ENTITY a \"aaaa\">]>" PAGE_HEAD PAGE_TAIL;
	expect_malformed(dtd, strlen(dtd), "DTDs");
	const char *outside = "junk" PAGE_HEAD PAGE_TAIL;
	expect_malformed(outside, strlen(outside), "outside the root");
	const char *two = PAGE_HEAD PAGE_TAIL PAGE_HEAD PAGE_TAIL;
	expect_malformed(two, strlen(two), "second root");
	const char *ent = PAGE_HEAD "<Contents><Key>&nbsp;</Key></Contents>" PAGE_TAIL;
	expect_malformed(ent, strlen(ent), "unknown entity");
	const char *amp = PAGE_HEAD "<Contents><Key>a & b</Key></Contents>" PAGE_TAIL;
	expect_malformed(amp, strlen(amp), "'&'");
	const char *ref = PAGE_HEAD "<Contents><Key>&#0;</Key></Contents>" PAGE_TAIL;
	expect_malformed(ref, strlen(ref), "U+0000");
	const char *big = PAGE_HEAD "<Contents><Key>&#x110000;</Key></Contents>" PAGE_TAIL;
	expect_malformed(big, strlen(big), "out of range");
	const char *nosize = PAGE_HEAD "<Contents><Key>p/a</Key></Contents>" PAGE_TAIL;
	expect_malformed(nosize, strlen(nosize), "without <Key> and <Size>");
	const char *badsize =
	    PAGE_HEAD "<Contents><Key>p/a</Key><Size>-1</Size></Contents>" PAGE_TAIL;
	expect_malformed(badsize, strlen(badsize), "<Size>");
	const char *huge = PAGE_HEAD "<Contents><Key>p/a</Key><Size>99999999999999999999</Size>"
				     "</Contents>" PAGE_TAIL;
	expect_malformed(huge, strlen(huge), "<Size>");
	const char *twokeys =
	    PAGE_HEAD "<Contents><Key>a</Key><Key>b</Key><Size>1</Size></Contents>" PAGE_TAIL;
	expect_malformed(twokeys, strlen(twokeys), "two <Key>");
	const char *trunc = PAGE_HEAD "<IsTruncated>yes</IsTruncated>" PAGE_TAIL;
	expect_malformed(trunc, strlen(trunc), "neither true nor false");
	const char *notoken = PAGE_HEAD "<IsTruncated>true</IsTruncated>" PAGE_TAIL;
	expect_malformed(notoken, strlen(notoken), "without <NextContinuationToken>");
	const char *when =
	    PAGE_HEAD "<Contents><Key>a</Key><Size>1</Size>"
		      "<LastModified>yesterday\nnoon</LastModified></Contents>" PAGE_TAIL;
	expect_malformed(when, strlen(when), "ISO 8601");
	const char *attr = PAGE_HEAD "<Contents a=b><Key>a</Key></Contents>" PAGE_TAIL;
	expect_malformed(attr, strlen(attr), "not quoted");
	const char nul[] = PAGE_HEAD "<Contents><Key>a\0b</Key><Size>1</Size></Contents>" PAGE_TAIL;
	expect_malformed(nul, sizeof nul - 1, "NUL");
	const char *comment = PAGE_HEAD "<!-- never closed " PAGE_TAIL;
	expect_malformed(comment, strlen(comment), "unterminated comment");
	/* Depth and text are bounded. */
	struct buf deep = BUF_INIT;
	buf_append_str(&deep, "<ListBucketResult>");
	for (int i = 0; i < XML_DEPTH_MAX; i++)
		buf_append_str(&deep, "<a>");
	expect_malformed(buf_cstr(&deep), deep.len, "nested deeper");
	buf_reset(&deep);
	buf_append_str(&deep, "<ListBucketResult><Contents><Key>");
	for (int i = 0; i <= XML_TEXT_MAX; i++)
		buf_append_str(&deep, "&amp;");
	buf_append_str(&deep, "</Key></Contents></ListBucketResult>");
	expect_malformed(buf_cstr(&deep), deep.len, "text longer");
	buf_reset(&deep);
	buf_append_str(&deep, "<ListBucketResult><");
	for (int i = 0; i <= XML_NAME_MAX; i++)
		buf_append_str(&deep, "n");
	buf_append_str(&deep, "/></ListBucketResult>");
	expect_malformed(buf_cstr(&deep), deep.len, "name longer");
	buf_close(&deep);
}

static void test_xml_error_document(void **state)
{
	const char *doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>"
			  "<Code>AuthorizationHeaderMalformed</Code><Message>the region "
			  "'us-east-1' is wrong;\nexpecting 'eu-west-1'</Message>"
			  "<Region>eu-west-1</Region><RequestId>x</RequestId></Error>";
	struct s3_error e;
	assert_int_equal(s3_error_parse(doc, strlen(doc), &e), 0);
	assert_string_equal(e.code, "AuthorizationHeaderMalformed");
	assert_string_equal(e.message, "the region 'us-east-1' is wrong; expecting 'eu-west-1'");
	assert_string_equal(e.region, "eu-west-1");
	assert_int_equal(s3_error_parse("<Error></Error>", 15, &e), SB_EPROTO);
	assert_int_equal(s3_error_parse("<html/>", 7, &e), SB_EPROTO);
	assert_int_equal(s3_error_parse("", 0, &e), SB_EPROTO);
	const char *bad = "<Error><Code>X</Code><Region>../evil</Region></Error>";
	assert_int_equal(s3_error_parse(bad, strlen(bad), &e), 0);
	assert_string_equal(e.region, "");
}

static void test_parse_time(void **state)
{
	int64_t t;
	assert_int_equal(xml_parse_time("2009-10-12T17:50:30.000Z", &t), 0);
	assert_int_equal(t, 1255369830000000000LL);
	assert_int_equal(xml_parse_time("2009-10-12T17:50:30.123456789Z", &t), 0);
	assert_int_equal(t, 1255369830123456789LL);
	assert_int_equal(xml_parse_time("2009-10-12T17:50:30Z", &t), 0);
	assert_int_equal(xml_parse_time("2009-10-12T17:50:30", &t), SB_EPROTO);
	assert_int_equal(xml_parse_time("2009-13-12T17:50:30Z", &t), SB_EPROTO);
	assert_int_equal(xml_parse_time("2009-10-12T17:50:30+01:00", &t), SB_EPROTO);
	assert_int_equal(xml_parse_time("2009-10-12 17:50:30Z", &t), SB_EPROTO);
	assert_int_equal(xml_parse_time("2009-10-12T17:50:30.Z", &t), SB_EPROTO);
	assert_int_equal(xml_parse_time("9999-12-31T23:59:59Z", &t), SB_EPROTO);
	assert_int_equal(xml_parse_time("2262-01-01T00:00:00Z", &t), 0);
	/* every field is all digits: no sign or space in one */
	assert_int_equal(xml_parse_time("2009-+1-12T17:50:30Z", &t), SB_EPROTO);
	assert_int_equal(xml_parse_time("2009- 1-12T17:50:30Z", &t), SB_EPROTO);
	assert_int_equal(xml_parse_time("2009-10-12T17:50:+3Z", &t), SB_EPROTO);
	assert_int_equal(xml_parse_time("2009-10-12T-1:50:30Z", &t), SB_EPROTO);
	assert_int_equal(xml_parse_time("2009-10-1", &t), SB_EPROTO);
	assert_int_equal(xml_parse_time("", &t), SB_EPROTO);
}

/* ---- configuration and addressing ---- */

static void clear_env(void)
{
	static const char *const vars[] = {
	    "AWS_ENDPOINT_URL",	 "AWS_ENDPOINT_URL_S3",	  "AWS_REGION",	       "AWS_DEFAULT_REGION",
	    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	};
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
		unsetenv(vars[i]);
}

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

/* ---- the source against the fixture ---- */

static struct {
	char *dir;
	pid_t pid;
	int port;
	char endpoint[64];
	uint8_t *big;
} fx;

#define BIG_SIZE (5u * 1024 * 1024 + 77)

static void reap(void)
{
	if (fx.pid <= 0)
		return;
	kill(-fx.pid, SIGTERM);
	for (int i = 0; i < 300 && waitpid(fx.pid, NULL, WNOHANG) != fx.pid; i++)
		usleep(10000);
	kill(-fx.pid, SIGKILL);
	waitpid(fx.pid, NULL, WNOHANG);
	fx.pid = 0;
}

static void on_signal(int sig)
{
	if (fx.pid > 0)
		kill(-fx.pid, SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

static int write_file(const char *rel, const void *data, size_t n)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/root/%s", fx.dir, rel);
	*strrchr(path, '/') = '\0';
	if (path_mkdirs(path, 0755) < 0)
		return -1;
	snprintf(path, sizeof path, "%s/root/%s", fx.dir, rel);
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t w = fwrite(data, 1, n, f);
	return fclose(f) == 0 && w == n ? 0 : -1;
}

static int start_fixture(void)
{
	char root[PATH_MAX], line[32] = {0};
	int p[2];
	if (access(FIXTURE, R_OK) != 0 || pipe(p) < 0)
		return -1;
	snprintf(root, sizeof root, "%s/root", fx.dir);
	fx.pid = fork();
	if (fx.pid == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		execlp("python3", "python3", FIXTURE, "--root", root, "--access-key", AKID,
		       "--secret-key", SECRET, "--page", "2", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	if (fx.pid < 0) {
		close(p[0]);
		return -1;
	}
	setpgid(fx.pid, fx.pid);
	struct pollfd pfd = {.fd = p[0], .events = POLLIN};
	size_t n = 0;
	while (n < sizeof line - 1 && !strchr(line, '\n') && poll(&pfd, 1, 10000) > 0) {
		ssize_t k = read(p[0], line + n, sizeof line - 1 - n);
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	close(p[0]);
	char *end;
	long port = strtol(line, &end, 10);
	fx.port = end != line && port > 0 && port < 65536 ? (int)port : -1;
	snprintf(fx.endpoint, sizeof fx.endpoint, "http://127.0.0.1:%d", fx.port);
	return fx.port > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	reap();
	free(fx.big);
	fx.big = NULL;
	testutil_rmtree(fx.dir);
	fx.dir = NULL;
	return 0;
}

static int group_setup(void **state)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	fx.dir = testutil_mkdtemp();
	fx.big = malloc(BIG_SIZE);
	if (!fx.dir || !fx.big) {
		group_teardown(state);
		return -1;
	}
	for (size_t i = 0; i < BIG_SIZE; i++)
		fx.big[i] = (uint8_t)(i * 2654435761u >> 13);
	if (write_file("bkt/m/big.bin", fx.big, BIG_SIZE) < 0 ||
	    write_file("bkt/m/empty", "", 0) < 0 ||
	    write_file("bkt/m/sub/a b+c.txt", "abc", 3) < 0 ||
	    write_file("bkt/m/sub/deep/x", "x", 1) < 0 || write_file("bkt/m-old/y", "y", 1) < 0 ||
	    write_file("bkt/one.bin", "one", 3) < 0 || write_file("bad/m/a", "a", 1) < 0 ||
	    write_file("slow/m/a", "a", 1) < 0 || write_file("moved/m/a", "a", 1) < 0 ||
	    write_file("moving/m/big.bin", fx.big, BIG_SIZE) < 0 ||
	    write_file("huge/m/a", "a", 1) < 0 || write_file("huge/m/b", "b", 1) < 0 ||
	    write_file("idle/m/a", "a", 1) < 0 || start_fixture() < 0) {
		fprintf(stderr, "test_source_s3: cannot set up the fixture\n");
		group_teardown(state); /* cmocka skips it when setup fails */
		return -1;
	}
	return 0;
}

static void fault(const char *spec)
{
	char cmd[256];
	snprintf(cmd, sizeof cmd, "curl -sf -X POST '%s/__fault?%s' >/dev/null", fx.endpoint, spec);
	assert_int_equal(system(cmd), 0);
}

struct wait {
	int n, status;
};

static void on_done(struct source *src, int status, void *arg)
{
	struct wait *w = arg;
	w->n++;
	w->status = status;
	uv_stop(src->loop);
}

static void run_until(uv_loop_t *loop, struct wait *w, int n)
{
	uint64_t start = uv_now(loop);
	while (w->n < n && uv_now(loop) - start < WAIT_MS) {
		uv_run(loop, UV_RUN_ONCE);
		uv_update_time(loop);
	}
	assert_int_equal(w->n, n);
}

struct session {
	uv_loop_t loop;
	struct source *src;
};

static void open_source(struct session *s, const char *uri_s, const char *secret)
{
	struct source_uri uri;
	struct source_options o;
	clear_env();
	setenv("AWS_ACCESS_KEY_ID", AKID, 1);
	setenv("AWS_SECRET_ACCESS_KEY", secret, 1);
	source_options_default(&o);
	o.s3.endpoint = fx.endpoint;
	o.retries = 2;
	o.stall_seconds = 2;
	uv_loop_init(&s->loop);
	assert_int_equal(uri_parse(uri_s, &uri), 0);
	assert_int_equal(source_new(&s->loop, &uri, &o, &s->src), 0);
	uri_close(&uri);
	clear_env(); /* read once, when the source is made */
}

/* As the pull and the scheduler list: held to the source's limits. */
static int list(struct session *s)
{
	struct wait w = {0};
	assert_int_equal(source_list(s->src, on_done, &w), 0);
	run_until(&s->loop, &w, 1);
	return w.status;
}

static int read_at(struct session *s, size_t index, uint64_t off, size_t len, void *buf)
{
	struct wait w = {0};
	assert_int_equal(s->src->ops->read(s->src, index, off, len, buf, on_done, &w), 0);
	run_until(&s->loop, &w, 1);
	return w.status;
}

static void close_source(struct session *s)
{
	source_free(s->src);
	uv_run(&s->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&s->loop), 0);
}

static void test_source_list_and_read(void **state)
{
	struct session s;
	open_source(&s, "s3://bkt/m", SECRET);
	assert_int_equal(list(&s), 0);
	struct source_listing *l = &s.src->listing;
	/* "m" lists "m/", so m-old/ stays out; pages of 2 keys were joined. */
	assert_int_equal(l->nfiles, 4);
	assert_string_equal(l->files[0].path, "big.bin");
	assert_string_equal(l->files[1].path, "empty");
	assert_string_equal(l->files[2].path, "sub/a b+c.txt");
	assert_string_equal(l->files[3].path, "sub/deep/x");
	assert_int_equal(l->files[0].size, BIG_SIZE);
	assert_int_equal(l->files[1].size, 0);
	assert_true(l->files[0].mtime_ns > 0);
	assert_non_null(strstr(l->files[2].digest, "etag:"));
	uint8_t *buf = malloc(BIG_SIZE);
	assert_int_equal(read_at(&s, 0, 0, BIG_SIZE, buf), 0);
	assert_memory_equal(buf, fx.big, BIG_SIZE);
	assert_int_equal(read_at(&s, 0, 4096, 100, buf), 0);
	assert_memory_equal(buf, fx.big + 4096, 100);
	assert_int_equal(read_at(&s, 2, 1, 2, buf), 0);
	assert_memory_equal(buf, "bc", 2);
	assert_int_equal(read_at(&s, 1, 0, 0, buf), 0);
	assert_int_equal(s.src->ops->read(s.src, 2, 2, 5, buf, on_done, NULL), -EINVAL);
	free(buf);
	close_source(&s);
}

static void test_source_single_and_empty(void **state)
{
	struct session s;
	open_source(&s, "s3://bkt/one.bin", SECRET);
	assert_int_equal(list(&s), 0);
	assert_int_equal(s.src->listing.nfiles, 1);
	assert_string_equal(s.src->listing.files[0].path, "one.bin");
	char b[3];
	assert_int_equal(read_at(&s, 0, 0, 3, b), 0);
	assert_memory_equal(b, "one", 3);
	close_source(&s);
	open_source(&s, "s3://bkt/none/", SECRET);
	assert_int_equal(list(&s), SB_ENOTFOUND);
	assert_non_null(strstr(s.src->error_detail, "no objects under s3://bkt/none/"));
	close_source(&s);
	open_source(&s, "s3://nobucket/m/", SECRET);
	assert_int_equal(list(&s), SB_ENOTFOUND);
	assert_non_null(strstr(s.src->error_detail, "NoSuchBucket"));
	close_source(&s);
}

static void test_source_auth(void **state)
{
	struct session s;
	open_source(&s, "s3://bkt/m/", "wrong-secret");
	assert_int_equal(list(&s), SB_EAUTH);
	assert_non_null(strstr(s.src->error_detail, "SignatureDoesNotMatch"));
	assert_null(strchr(s.src->error_detail, '\n'));
	close_source(&s);
	/* S3's answer to a request in the wrong region: a 301 whose only
	 * hint is the x-amz-bucket-region header. */
	fault("bucket=moved&moved=eu-west-1");
	open_source(&s, "s3://moved/m/", SECRET);
	assert_int_equal(list(&s), SB_EHTTP4XX);
	assert_non_null(strstr(s.src->error_detail, "PermanentRedirect: the bucket is in region "
						    "eu-west-1, not us-east-1"));
	close_source(&s);
}

static void test_source_malformed_and_confined(void **state)
{
	struct session s;
	fault("bucket=bad&list=badxml");
	open_source(&s, "s3://bad/m/", SECRET);
	assert_int_equal(list(&s), SB_EPROTO);
	assert_non_null(strstr(s.src->error_detail, "malformed ListObjectsV2"));
	close_source(&s);
	fault("bucket=bad&list=dotdot");
	open_source(&s, "s3://bad/m/", SECRET);
	assert_int_equal(list(&s), SB_ECONFINE);
	assert_non_null(strstr(s.src->error_detail, "m/../evil"));
	close_source(&s);
}

static void test_source_retry_and_change(void **state)
{
	struct session s;
	fault("bucket=slow&r429=2&ra=1");
	open_source(&s, "s3://slow/m/", SECRET);
	uint64_t t0 = uv_hrtime();
	assert_int_equal(list(&s), 0);
	assert_true(uv_hrtime() - t0 >= 1900000000ull); /* two Retry-After: 1 */
	close_source(&s);
	fault("bucket=moving&etag_change=2");
	open_source(&s, "s3://moving/m/", SECRET);
	assert_int_equal(list(&s), 0);
	uint8_t *buf = malloc(BIG_SIZE);
	assert_int_equal(read_at(&s, 0, 0, 1000, buf), 0);
	assert_int_equal(read_at(&s, 0, 1000, 1000, buf), 0);
	assert_int_equal(read_at(&s, 0, 2000, 1000, buf), SB_ECHANGED);
	assert_non_null(strstr(s.src->error_detail, "changed after it was listed"));
	free(buf);
	close_source(&s);
}

/* A listing is bounded before anything is sized from it: sizes claimed in
 * <Size>, the number of keys, and pages that never end. */
static void test_source_limits(void **state)
{
	struct session s;
	fault("bucket=huge&size=4611686018427387904");
	open_source(&s, "s3://huge/m/", SECRET);
	assert_int_equal(list(&s), SB_ETOOBIG);
	assert_string_equal(s.src->error_detail,
			    "s3://huge/m/: a claims 4611686018427387904 bytes (4.0 EiB), over the "
			    "limit of 4.0 TiB per file (--max-file-size)");
	close_source(&s);
	fault("bucket=huge&size=3298534883328"); /* 3 TiB each: 6 TiB together */
	open_source(&s, "s3://huge/m/", SECRET);
	s.src->opt.limits.dataset_bytes = 5ull << 40;
	assert_int_equal(list(&s), SB_ETOOBIG);
	assert_non_null(strstr(s.src->error_detail, "2 files claim 6597069766656 bytes (6.0 TiB), "
						    "over the limit of 5.0 TiB per dataset"));
	close_source(&s);
	/* Pages of two keys: the third key is one too many. */
	open_source(&s, "s3://bkt/m/", SECRET);
	s.src->opt.limits.files = 2;
	assert_int_equal(list(&s), SB_ETOOBIG);
	assert_non_null(strstr(s.src->error_detail,
			       "more objects than the limit of 2 per dataset (--max-files)"));
	close_source(&s);
	fault("bucket=idle&list=idle");
	open_source(&s, "s3://idle/m/", SECRET);
	assert_int_equal(list(&s), SB_EPROTO);
	assert_non_null(strstr(s.src->error_detail, "100 truncated pages in a row"));
	close_source(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_xml_page),
	    cmocka_unit_test(test_xml_url_encoding),
	    cmocka_unit_test(test_xml_malformed),
	    cmocka_unit_test(test_xml_error_document),
	    cmocka_unit_test(test_parse_time),
	    cmocka_unit_test(test_config_aws),
	    cmocka_unit_test(test_config_endpoint),
	    cmocka_unit_test(test_config_credentials),
	    cmocka_unit_test(test_source_list_and_read),
	    cmocka_unit_test(test_source_single_and_empty),
	    cmocka_unit_test(test_source_auth),
	    cmocka_unit_test(test_source_malformed_and_confined),
	    cmocka_unit_test(test_source_retry_and_change),
	    cmocka_unit_test(test_source_limits),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
