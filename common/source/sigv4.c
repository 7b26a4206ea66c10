#include "common/source/sigv4.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/hash.h"

#define SIGV4_ALGORITHM	  "AWS4-HMAC-SHA256"
#define SIGV4_TERMINATOR  "aws4_request"
#define SIGV4_HEADERS_MAX 32

static int unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

void sigv4_encode(struct buf *out, const char *s, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (unreserved(*p) || (keep_slash && *p == '/')) {
			buf_append(out, p, 1);
		} else {
			char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
			buf_append(out, e, 3);
		}
	}
	buf_cstr(out);
}

struct enc_param {
	char *name, *value;
};

static int cmp_param(const void *a, const void *b)
{
	const struct enc_param *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : strcmp(x->value, y->value);
}

void sigv4_query(struct buf *out, const struct sigv4_param *p, size_t n)
{
	struct enc_param *e = xcalloc(n + 1, sizeof *e);
	for (size_t i = 0; i < n; i++) {
		struct buf b = BUF_INIT;
		sigv4_encode(&b, p[i].name, 0);
		e[i].name = buf_steal(&b);
		sigv4_encode(&b, p[i].value ? p[i].value : "", 0);
		e[i].value = buf_steal(&b);
	}
	qsort(e, n, sizeof *e, cmp_param);
	for (size_t i = 0; i < n; i++) {
		buf_printf(out, "%s%s=%s", i ? "&" : "", e[i].name, e[i].value);
		free(e[i].name);
		free(e[i].value);
	}
	free(e);
	buf_cstr(out);
}

void sigv4_date(time_t t, char *out)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, SIGV4_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm);
}

/* Headers: lower-case names, sorted; values trimmed with inner runs of
 * spaces folded to one. */
struct canon_header {
	char *name, *value;
};

static int cmp_header(const void *a, const void *b)
{
	return strcmp(((const struct canon_header *)a)->name,
		      ((const struct canon_header *)b)->name);
}

static char *canon_value(const char *v)
{
	size_t n = strlen(v), j = 0;
	char *out = xmalloc(n + 1);
	while (*v == ' ' || *v == '\t')
		v++;
	for (; *v; v++) {
		int space = *v == ' ' || *v == '\t';
		if (space && (j == 0 || out[j - 1] == ' '))
			continue;
		out[j++] = space ? ' ' : *v;
	}
	while (j && out[j - 1] == ' ')
		j--;
	out[j] = '\0';
	return out;
}

static size_t canon_headers(const struct sigv4_request *rq, struct canon_header *h)
{
	size_t n = rq->nheaders < SIGV4_HEADERS_MAX ? rq->nheaders : SIGV4_HEADERS_MAX;
	for (size_t i = 0; i < n; i++) {
		h[i].name = xstrdup(rq->headers[i].name);
		for (char *c = h[i].name; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		h[i].value = canon_value(rq->headers[i].value);
	}
	qsort(h, n, sizeof *h, cmp_header);
	return n;
}

static void signed_headers(struct canon_header *h, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++)
		buf_printf(out, "%s%s", i ? ";" : "", h[i].name);
}

static void free_headers(struct canon_header *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(h[i].name);
		free(h[i].value);
	}
}

void sigv4_canonical_request(const struct sigv4_request *rq, struct buf *out)
{
	struct canon_header h[SIGV4_HEADERS_MAX] = {0};
	size_t n = canon_headers(rq, h);
	buf_printf(out, "%s\n%s\n%s\n", rq->method, rq->path && *rq->path ? rq->path : "/",
		   rq->query ? rq->query : "");
	for (size_t i = 0; i < n; i++)
		buf_printf(out, "%s:%s\n", h[i].name, h[i].value);
	buf_append_str(out, "\n");
	signed_headers(h, n, out);
	buf_printf(out, "\n%s", rq->payload_hash);
	free_headers(h, n);
}

static void sha256_hex(const void *data, size_t len, char *hex)
{
	struct hash_id id;
	hash_sha256(data, len, &id);
	hash_to_hex(&id, hex);
}

static int valid_date(const char *d)
{
	if (!d || strlen(d) != SIGV4_DATE_LEN || d[8] != 'T' || d[15] != 'Z')
		return 0;
	for (int i = 0; i < 15; i++)
		if (i != 8 && !isdigit((unsigned char)d[i]))
			return 0;
	return 1;
}

static void scope(const struct sigv4_request *rq, struct buf *out)
{
	buf_printf(out, "%.8s/%s/%s/%s", rq->amz_date, rq->region, rq->service, SIGV4_TERMINATOR);
}

void sigv4_string_to_sign(const struct sigv4_request *rq, struct buf *out)
{
	struct buf creq = BUF_INIT;
	char hex[HASH_HEX_LEN + 1];
	sigv4_canonical_request(rq, &creq);
	sha256_hex(creq.ptr, creq.len, hex);
	buf_close(&creq);
	buf_printf(out, "%s\n%s\n", SIGV4_ALGORITHM, rq->amz_date);
	scope(rq, out);
	buf_printf(out, "\n%s", hex);
}

static void hmac(const void *key, size_t klen, const void *msg, size_t mlen, uint8_t *out)
{
	unsigned int len = HASH_LEN;
	if (!HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &len) || len != HASH_LEN)
		abort(); /* OpenSSL without SHA-256: nothing can be signed */
}

static int complete(const struct sigv4_request *rq)
{
	return rq->method && rq->payload_hash && rq->region && *rq->region && rq->service &&
	       rq->access_key && *rq->access_key && rq->secret_key && valid_date(rq->amz_date);
}

int sigv4_signature(const struct sigv4_request *rq, char *out)
{
	if (!complete(rq))
		return SB_EPROTO;
	uint8_t k1[HASH_LEN], k2[HASH_LEN];
	struct buf b = BUF_INIT;
	buf_printf(&b, "AWS4%s", rq->secret_key);
	hmac(b.ptr, b.len, rq->amz_date, 8, k1);
	hmac(k1, HASH_LEN, rq->region, strlen(rq->region), k2);
	hmac(k2, HASH_LEN, rq->service, strlen(rq->service), k1);
	hmac(k1, HASH_LEN, SIGV4_TERMINATOR, strlen(SIGV4_TERMINATOR), k2);
	OPENSSL_cleanse(b.ptr, b.len);
	buf_reset(&b);
	sigv4_string_to_sign(rq, &b);
	struct hash_id sig;
	hmac(k2, HASH_LEN, b.ptr, b.len, sig.b);
	OPENSSL_cleanse(k1, sizeof k1);
	OPENSSL_cleanse(k2, sizeof k2);
	hash_to_hex(&sig, out);
	buf_close(&b);
	return 0;
}

int sigv4_authorization(const struct sigv4_request *rq, struct buf *out)
{
	char sig[HASH_HEX_LEN + 1];
	int rc = sigv4_signature(rq, sig);
	if (rc < 0)
		return rc;
	struct canon_header h[SIGV4_HEADERS_MAX] = {0};
	size_t n = canon_headers(rq, h);
	buf_printf(out, "%s Credential=%s/", SIGV4_ALGORITHM, rq->access_key);
	scope(rq, out);
	buf_append_str(out, ", SignedHeaders=");
	signed_headers(h, n, out);
	buf_printf(out, ", Signature=%s", sig);
	free_headers(h, n);
	return 0;
}
