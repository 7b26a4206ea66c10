/* libFuzzer target for what an S3 endpoint answers: ListObjectsV2 pages and
 * Error documents, read by common/source/s3_api.c with the bounded
 * XML scanner of common/source/xml.c. Whatever
 * the bytes: no crash, leak or out-of-bounds access; a page either parses
 * into keys that are non-empty C strings without NUL, with a one-line
 * reason left empty, or fails with SB_EPROTO, a one-line reason and an
 * empty page.
 *
 * Built with -DFUZZ_SEED_MAIN instead, this file is a small program that
 * writes a seed corpus into the directory argv[1]. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/source/s3_api.h"

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_s3_list: %s\n", what);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct s3_list_page p;
	char err[S3_ERR_MAX];
	int rc = s3_list_parse((const char *)data, size, &p, err);
	if (rc == 0) {
		for (size_t i = 0; i < p.n; i++)
			check(p.objects[i].key && p.objects[i].key[0], "empty key accepted");
		check(!p.truncated || p.next_token, "truncated page without a token");
		s3_list_page_close(&p);
	} else {
		check(rc == SB_EPROTO, "unexpected error code");
		check(p.n == 0 && !p.objects && !p.next_token, "a failed page holds objects");
		check(strlen(err) < S3_ERR_MAX && !strchr(err, '\n'), "reason not one line");
	}
	struct s3_error e;
	if (s3_error_parse((const char *)data, size, &e) == 0)
		check(e.code[0] && !strchr(e.message, '\n'), "error document without a code");
	return 0;
}

#ifdef FUZZ_SEED_MAIN

static const char *const seeds[] = {
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult "
    "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name><Prefix>p/</Prefix>"
    "<KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>"
    "<Contents><Key>p/a &amp; b</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>"
    "<ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag><Size>434234</Size>"
    "<StorageClass>STANDARD</StorageClass></Contents><Contents><Key>p/&#x41;</Key>"
    "<Size>0</Size><ETag/></Contents><NextContinuationToken>1ueGcxLPRx1Tr=</NextContinuationToken>"
    "</ListBucketResult>",
    "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>p/a+b%2Bc</Key>"
    "<Size>1</Size></Contents><EncodingType>url</EncodingType></ListBucketResult>",
    "<ListBucketResult><!-- c --><?pi x?><Contents><Key><![CDATA[p/<x>]]></Key><Size>7</Size>"
    "</Contents></ListBucketResult>",
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchBucket</Code>"
    "<Message>The specified bucket does not exist</Message><BucketName>b</BucketName>"
    "<Region>eu-west-1</Region></Error>",
};

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/seed-%zu", argv[1], i);
		FILE *f = fopen(path, "wb");
		if (!f || fwrite(seeds[i], 1, strlen(seeds[i]), f) != strlen(seeds[i])) {
			perror(path);
			return 1;
		}
		fclose(f);
	}
	return 0;
}

#endif
