/* SigV4 (common/source/sigv4.c) against AWS's published test vectors: the
 * aws-sig-v4-test-suite "get-vanilla" family and the S3 API reference's
 * examples, then the encoding rules and refusals. */
#include "testutil.h"

#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/source/sigv4.h"

#define AKID	  "AKIDEXAMPLE"
#define SECRET	  "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_DAY "20150830T123600Z"
/* The S3 API reference's examples use another key and day. */
#define S3_AKID	  "AKIAIOSFODNN7EXAMPLE"
#define S3_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define S3_DAY	  "20130524T000000Z"

static struct sigv4_request suite_request(const char *path, const char *query,
					  const struct sigv4_header *h, size_t nh)
{
	return (struct sigv4_request){
	    .method = "GET",
	    .path = path,
	    .query = query,
	    .headers = h,
	    .nheaders = nh,
	    .payload_hash = SIGV4_EMPTY_SHA256,
	    .amz_date = SUITE_DAY,
	    .region = "us-east-1",
	    .service = "service",
	    .access_key = AKID,
	    .secret_key = SECRET,
	};
}

static void expect_signature(const struct sigv4_request *rq, const char *want)
{
	char sig[65];
	assert_int_equal(sigv4_signature(rq, sig), 0);
	assert_string_equal(sig, want);
}

static void test_sigv4_get_vanilla(void **state)
{
	struct sigv4_header h[] = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", SUITE_DAY}};
	struct sigv4_request rq = suite_request("/", "", h, 2);
	struct buf b = BUF_INIT;
	sigv4_canonical_request(&rq, &b);
	assert_string_equal(buf_cstr(&b), "GET\n/\n\nhost:example.amazonaws.com\n"
					  "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
					  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b"
					  "7852b855");
	buf_reset(&b);
	sigv4_string_to_sign(&rq, &b);
	assert_string_equal(buf_cstr(&b),
			    "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
			    "aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c"
			    "25292927e63");
	buf_reset(&b);
	assert_int_equal(sigv4_authorization(&rq, &b), 0);
	assert_string_equal(
	    buf_cstr(&b), "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
			  "aws4_request, SignedHeaders=host;x-amz-date, "
			  "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fb"
			  "f31");
	buf_close(&b);
}

static void test_sigv4_suite_queries(void **state)
{
	struct sigv4_header h[] = {{"host", "example.amazonaws.com"}, {"x-amz-date", SUITE_DAY}};
	struct buf q = BUF_INIT;
	/* get-vanilla-query-order-key-case: sent as Param2, Param1. */
	struct sigv4_param order[] = {{"Param2", "value2"}, {"Param1", "value1"}};
	sigv4_query(&q, order, 2);
	assert_string_equal(buf_cstr(&q), "Param1=value1&Param2=value2");
	struct sigv4_request rq = suite_request("/", buf_cstr(&q), h, 2);
	expect_signature(&rq, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
	/* get-vanilla-empty-query-key */
	buf_reset(&q);
	struct sigv4_param one[] = {{"Param1", "value1"}};
	sigv4_query(&q, one, 1);
	rq.query = buf_cstr(&q);
	expect_signature(&rq, "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb");
	/* get-vanilla-query-unreserved: nothing of these is encoded. */
	const char *unres = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	buf_reset(&q);
	struct sigv4_param u[] = {{unres, unres}};
	sigv4_query(&q, u, 1);
	rq.query = buf_cstr(&q);
	expect_signature(&rq, "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197");
	buf_close(&q);
}

static void test_sigv4_suite_paths(void **state)
{
	struct sigv4_header h[] = {{"host", "example.amazonaws.com"}, {"x-amz-date", SUITE_DAY}};
	struct buf p = BUF_INIT;
	/* get-utf8: "/ሴ" */
	sigv4_encode(&p, "/\xe1\x88\xb4", 1);
	assert_string_equal(buf_cstr(&p), "/%E1%88%B4");
	struct sigv4_request rq = suite_request(buf_cstr(&p), "", h, 2);
	expect_signature(&rq, "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85");
	/* get-space-unnormalized: "/example space/" */
	buf_reset(&p);
	sigv4_encode(&p, "/example space/", 1);
	assert_string_equal(buf_cstr(&p), "/example%20space/");
	rq.path = buf_cstr(&p);
	expect_signature(&rq, "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741");
	buf_close(&p);
}

static void test_sigv4_session_token(void **state)
{
	/* get-vanilla-with-session-token */
	struct sigv4_header h[] = {
	    {"host", "example.amazonaws.com"},
	    {"x-amz-date", SUITE_DAY},
	    {"x-amz-security-token",
	     "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"},
	};
	struct sigv4_request rq = suite_request("/", "", h, 3);
	struct buf b = BUF_INIT;
	assert_int_equal(sigv4_authorization(&rq, &b), 0);
	assert_non_null(strstr(buf_cstr(&b), "SignedHeaders=host;x-amz-date;x-amz-security-token, "
					     "Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042"
					     "d4a97044c66dd9f74e7f8"));
	buf_close(&b);
}

static struct sigv4_request s3_example(const char *path, const char *query,
				       const struct sigv4_header *h, size_t nh)
{
	struct sigv4_request rq = suite_request(path, query, h, nh);
	rq.amz_date = S3_DAY;
	rq.service = "s3";
	rq.access_key = S3_AKID;
	rq.secret_key = S3_SECRET;
	return rq;
}

static void test_sigv4_s3_examples(void **state)
{
	/* "GET Object" with a Range header. */
	struct sigv4_header get[] = {
	    {"Host", "examplebucket.s3.amazonaws.com"},
	    {"Range", "bytes=0-9"},
	    {"x-amz-content-sha256", SIGV4_EMPTY_SHA256},
	    {"x-amz-date", S3_DAY},
	};
	struct sigv4_request rq = s3_example("/test.txt", "", get, 4);
	expect_signature(&rq, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
	/* "GET Bucket (List Objects)": max-keys=2&prefix=J, sent in any order. */
	struct sigv4_header list[] = {
	    {"host", "examplebucket.s3.amazonaws.com"},
	    {"x-amz-content-sha256", SIGV4_EMPTY_SHA256},
	    {"x-amz-date", S3_DAY},
	};
	struct buf q = BUF_INIT;
	struct sigv4_param p[] = {{"prefix", "J"}, {"max-keys", "2"}};
	sigv4_query(&q, p, 2);
	assert_string_equal(buf_cstr(&q), "max-keys=2&prefix=J");
	rq = s3_example("/", buf_cstr(&q), list, 3);
	expect_signature(&rq, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
	/* "GET Bucket Lifecycle": a parameter without a value. */
	buf_reset(&q);
	struct sigv4_param lc[] = {{"lifecycle", NULL}};
	sigv4_query(&q, lc, 1);
	assert_string_equal(buf_cstr(&q), "lifecycle=");
	rq.query = buf_cstr(&q);
	expect_signature(&rq, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
	buf_close(&q);
}

static void test_sigv4_encoding_and_errors(void **state)
{
	struct buf b = BUF_INIT;
	sigv4_encode(&b, "a b+c/d=e&f%~", 0);
	assert_string_equal(buf_cstr(&b), "a%20b%2Bc%2Fd%3De%26f%25~");
	buf_reset(&b);
	struct sigv4_param p[] = {
	    {"prefix", "llama/7b x"}, {"list-type", "2"}, {"a", "2"}, {"a", "1"}};
	sigv4_query(&b, p, 4);
	assert_string_equal(buf_cstr(&b), "a=1&a=2&list-type=2&prefix=llama%2F7b%20x");
	char d[SIGV4_DATE_LEN + 1];
	sigv4_date(1440938160, d);
	assert_string_equal(d, SUITE_DAY);
	struct sigv4_header h[] = {{"host", "x"}, {"x-amz-date", "2015-08-30"}};
	struct sigv4_request rq = suite_request("/", "", h, 2);
	rq.amz_date = "2015-08-30";
	char sig[65];
	assert_int_equal(sigv4_signature(&rq, sig), SB_EPROTO);
	rq.amz_date = SUITE_DAY;
	rq.secret_key = NULL;
	assert_int_equal(sigv4_signature(&rq, sig), SB_EPROTO);
	/* Header values are trimmed and inner runs of spaces folded. */
	struct sigv4_header ws[] = {{"My-Header1", "  value1  with   spaces "}, {"host", "x"}};
	rq = suite_request("/", "", ws, 2);
	buf_reset(&b);
	sigv4_canonical_request(&rq, &b);
	assert_non_null(strstr(buf_cstr(&b), "\nhost:x\nmy-header1:value1 with spaces\n\n"));
	buf_close(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sigv4_get_vanilla),
	    cmocka_unit_test(test_sigv4_suite_queries),
	    cmocka_unit_test(test_sigv4_suite_paths),
	    cmocka_unit_test(test_sigv4_session_token),
	    cmocka_unit_test(test_sigv4_s3_examples),
	    cmocka_unit_test(test_sigv4_encoding_and_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
