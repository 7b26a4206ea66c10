/* The s3:// source's bounded XML scanner on good and malformed
 * ListObjectsV2 pages and error documents, and its time parser. */
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
	for (int i = 0; i < S3_XML_DEPTH_MAX; i++)
		buf_append_str(&deep, "<a>");
	expect_malformed(buf_cstr(&deep), deep.len, "nested deeper");
	buf_reset(&deep);
	buf_append_str(&deep, "<ListBucketResult><Contents><Key>");
	for (int i = 0; i <= S3_XML_TEXT_MAX; i++)
		buf_append_str(&deep, "&amp;");
	buf_append_str(&deep, "</Key></Contents></ListBucketResult>");
	expect_malformed(buf_cstr(&deep), deep.len, "text longer");
	buf_reset(&deep);
	buf_append_str(&deep, "<ListBucketResult><");
	for (int i = 0; i <= S3_XML_NAME_MAX; i++)
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
	assert_int_equal(s3_parse_time("2009-10-12T17:50:30.000Z", &t), 0);
	assert_int_equal(t, 1255369830000000000LL);
	assert_int_equal(s3_parse_time("2009-10-12T17:50:30.123456789Z", &t), 0);
	assert_int_equal(t, 1255369830123456789LL);
	assert_int_equal(s3_parse_time("2009-10-12T17:50:30Z", &t), 0);
	assert_int_equal(s3_parse_time("2009-10-12T17:50:30", &t), SB_EPROTO);
	assert_int_equal(s3_parse_time("2009-13-12T17:50:30Z", &t), SB_EPROTO);
	assert_int_equal(s3_parse_time("2009-10-12T17:50:30+01:00", &t), SB_EPROTO);
	assert_int_equal(s3_parse_time("2009-10-12 17:50:30Z", &t), SB_EPROTO);
	assert_int_equal(s3_parse_time("2009-10-12T17:50:30.Z", &t), SB_EPROTO);
	assert_int_equal(s3_parse_time("9999-12-31T23:59:59Z", &t), SB_EPROTO);
	assert_int_equal(s3_parse_time("2262-01-01T00:00:00Z", &t), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_xml_page),	  cmocka_unit_test(test_xml_url_encoding),
	    cmocka_unit_test(test_xml_malformed), cmocka_unit_test(test_xml_error_document),
	    cmocka_unit_test(test_parse_time),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
