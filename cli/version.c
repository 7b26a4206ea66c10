/* syncbit version: the program's version, the git commit it was built
 * from, and the versions of the libraries as they report themselves at
 * run time (which may differ from the headers it was built with). */
#include <curl/curl.h>
#include <http_parser.h>
#include <jansson.h>
#include <lmdb.h>
#include <openssl/crypto.h>
#include <protobuf-c/protobuf-c.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>
#include <xxhash.h>
#include <yaml.h>

#include "cli/cli.h"
#include "common/version.h"

void cli_print_version(FILE *f, int libraries)
{
	fprintf(f, "syncbit %s (%s)\n", SYNCBIT_VERSION, syncbit_commit());
	if (!libraries)
		return;
	unsigned xxh = XXH_versionNumber();
	unsigned long hp = http_parser_version();
	const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
	fprintf(f, "libuv %s\n", uv_version_string());
	fprintf(f, "lmdb %s\n", mdb_version(NULL, NULL, NULL));
	fprintf(f, "libcurl %s (%s)\n", cv->version, cv->ssl_version ? cv->ssl_version : "no TLS");
	fprintf(f, "openssl %s\n", OpenSSL_version(OPENSSL_VERSION));
	fprintf(f, "libsodium %s\n", sodium_version_string());
	fprintf(f, "jansson %s\n", jansson_version_str());
	fprintf(f, "libyaml %s\n", yaml_get_version_string());
	fprintf(f, "protobuf-c %s\n", protobuf_c_version());
	fprintf(f, "xxhash %u.%u.%u\n", xxh / 10000, xxh / 100 % 100, xxh % 100);
	fprintf(f, "http-parser %lu.%lu.%lu\n", hp >> 16 & 255, hp >> 8 & 255, hp & 255);
}

int cmd_version(int argc, char **argv)
{
	struct config cfg;
	char **pos = NULL;
	int npos = 0, rc = cli_parse(&cfg, "version", argc, argv, &pos, &npos);
	if (rc == 0 && npos) {
		cli_error("version takes no arguments");
		rc = EXIT_USAGE;
	} else if (rc == 0) {
		cli_print_version(stdout, 1);
	}
	free(pos);
	config_close(&cfg);
	return rc;
}
