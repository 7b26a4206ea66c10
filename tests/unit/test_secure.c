#include "tests/unit/testutil.h"

#include <errno.h>
#include <sys/stat.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/net/secure.h"

#define HEX64 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

/* ---- token files ---- */

static char *write_file(const char *dir, const char *name, const char *text, mode_t mode)
{
	char *path = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

static void test_token_load(void **state)
{
	char *dir = testutil_mkdtemp();
	struct secure_token tok;
	char *detail = (char *)1;

	char *p = write_file(dir, "a", HEX64 "\n", 0600);
	assert_int_equal(secure_token_load(p, &tok, &detail), 0);
	assert_null(detail);
	assert_int_equal(tok.key[0], 0x00);
	assert_int_equal(tok.key[1], 0x11);
	assert_int_equal(tok.key[31], 0xff);
	free(p);

	p = write_file(dir, "b", HEX64, 0400);
	assert_int_equal(secure_token_load(p, &tok, &detail), 0);
	assert_int_equal(tok.key[15], 0xff);
	free(p);
	testutil_rmtree(dir);
}

static void test_token_permissions(void **state)
{
	char *dir = testutil_mkdtemp();
	struct secure_token tok;
	char *detail;
	const mode_t modes[] = {0644, 0640, 0604, 0660, 0601};

	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
		char *p = write_file(dir, "t", HEX64 "\n", modes[i]);
		assert_int_equal(secure_token_load(p, &tok, &detail), SB_EDENIED);
		assert_non_null(detail);
		assert_non_null(strstr(detail, p));
		assert_non_null(strstr(detail, "chmod 600"));
		assert_null(strchr(detail, '\n'));
		free(detail);
		unlink(p);
		free(p);
	}
	testutil_rmtree(dir);
}

static void test_token_malformed(void **state)
{
	static const char *const bad[] = {
	    "",
	    "\n",
	    HEX64 "\n\n",
	    HEX64 "0",
	    HEX64 " ",
	    HEX64 "\r\n",
	    " " HEX64,
	    "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff",
	    "0011223344556677889gaabbccddeeff00112233445566778899aabbccddeeff",
	    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeef",
	    "00112233445566778899aabbccddeeff00112233445566778899aabbccddee\n",
	};
	char *dir = testutil_mkdtemp();
	struct secure_token tok;
	char *detail;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char *p = write_file(dir, "t", bad[i], 0600);
		if (secure_token_load(p, &tok, &detail) != SB_ECONFIG)
			fail_msg("token '%s' accepted", bad[i]);
		assert_non_null(strstr(detail, "64 lowercase hex digits"));
		free(detail);
		unlink(p);
		free(p);
	}

	char *missing = xasprintf("%s/none", dir);
	assert_int_equal(secure_token_load(missing, &tok, &detail), -ENOENT);
	assert_non_null(strstr(detail, missing));
	free(detail);
	free(missing);

	assert_int_equal(secure_token_load(dir, &tok, &detail), -EINVAL);
	free(detail);
	testutil_rmtree(dir);
}

static void test_token_init(void **state)
{
	char *dir = testutil_mkdtemp();
	char *path = xasprintf("%s/join-token", dir);
	struct secure_token a, b, c;
	struct stat st;
	char *detail = (char *)1;

	assert_int_equal(secure_token_init(path, &a, &detail), 0);
	assert_null(detail);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, 65);
	/* the file reads back as the same token, and init loads it again */
	assert_int_equal(secure_token_load(path, &b, &detail), 0);
	assert_memory_equal(&a, &b, sizeof a);
	assert_int_equal(secure_token_init(path, &c, &detail), 0);
	assert_memory_equal(&a, &c, sizeof a);

	/* no temp file is left behind */
	char *cmd = xasprintf("test $(ls -A '%s' | wc -l) -eq 1", dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);

	/* an existing bad file is refused, not replaced */
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(secure_token_init(path, &c, &detail), SB_EDENIED);
	free(detail);

	char *nodir = xasprintf("%s/missing/join-token", dir);
	assert_int_equal(secure_token_init(nodir, &c, &detail), -ENOENT);
	assert_non_null(detail);
	free(detail);
	free(nodir);
	free(path);
	testutil_rmtree(dir);
}

/* ---- static keys ---- */

static void test_keypair_init(void **state)
{
	char *dir = testutil_mkdtemp();
	char *path = xasprintf("%s/node.key", dir);
	struct secure_keypair a, b;
	struct stat st;
	char *detail = (char *)1;
	int created = -1;

	assert_int_equal(secure_keypair_init(path, &a, &created, &detail), 0);
	assert_null(detail);
	assert_int_equal(created, 1);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, 65);
	/* the public key is the private key's */
	uint8_t pub[SECURE_KEY_BYTES];
	assert_int_equal(crypto_scalarmult_base(pub, a.priv), 0);
	assert_memory_equal(pub, a.pub, sizeof pub);
	/* loaded again on the next start, not replaced */
	assert_int_equal(secure_keypair_init(path, &b, &created, &detail), 0);
	assert_int_equal(created, 0);
	assert_memory_equal(&a, &b, sizeof a);
	char *cmd = xasprintf("test $(ls -A '%s' | wc -l) -eq 1", dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);

	/* a file others can read is refused, not replaced */
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(secure_keypair_init(path, &b, NULL, &detail), SB_EDENIED);
	assert_non_null(strstr(detail, "key file"));
	assert_non_null(strstr(detail, "chmod 600"));
	free(detail);
	char *bad = write_file(dir, "bad.key", "not a key\n", 0600);
	assert_int_equal(secure_keypair_init(bad, &b, NULL, &detail), SB_ECONFIG);
	assert_non_null(strstr(detail, "64 lowercase hex digits"));
	free(detail);
	free(bad);

	/* fingerprints name the public key, not the private one */
	char fp[SECURE_FINGERPRINT_LEN], priv[SECURE_FINGERPRINT_LEN];
	secure_key_fingerprint(a.pub, fp);
	secure_key_fingerprint(a.priv, priv);
	assert_int_equal(strlen(fp), 2 * SECURE_FINGERPRINT_BYTES);
	assert_string_not_equal(fp, priv);
	struct secure_keypair c, d;
	secure_keypair_new(&c);
	secure_keypair_new(&d);
	assert_memory_not_equal(c.pub, d.pub, SECURE_KEY_BYTES);
	secure_keypair_close(&c);
	uint8_t zero[SECURE_KEY_BYTES] = {0};
	assert_memory_equal(c.priv, zero, sizeof zero);
	free(path);
	testutil_rmtree(dir);
}

static void test_node_names(void **state)
{
	char node[SECURE_NODE_MAX + 2];
	memset(node, 'n', sizeof node);
	node[SECURE_NODE_MAX] = '\0';
	assert_int_equal(secure_node_valid(node), 1);
	node[SECURE_NODE_MAX] = 'n';
	node[SECURE_NODE_MAX + 1] = '\0';
	assert_int_equal(secure_node_valid(node), 0);
	assert_int_equal(secure_node_valid("agent-7.rack2"), 1);
	assert_int_equal(secure_node_valid(""), 1);
	assert_int_equal(secure_node_valid("a\nb"), 0);
	assert_int_equal(secure_node_valid("caf\xc3\xa9"), 0);
}

/* ---- sessions ---- */

struct pair {
	struct secure_session si, sr;
};

/* Two ends of a session as the handshake sets them up: the initiator
 * sends with k1, the responder with k2. */
static void sessions_of(struct pair *p, enum secure_cipher c)
{
	uint8_t k1[SECURE_KEY_BYTES], k2[SECURE_KEY_BYTES];
	randombytes_buf(k1, sizeof k1);
	randombytes_buf(k2, sizeof k2);
	secure_session_init(&p->si, c, k1, k2);
	secure_session_init(&p->sr, c, k2, k1);
}

static void pair_close(struct pair *p)
{
	secure_session_close(&p->si);
	secure_session_close(&p->sr);
}

/* ---- records ---- */

static void sessions(struct pair *p, int aes)
{
	sessions_of(p, aes ? SECURE_AES256GCM : SECURE_XCHACHA20POLY1305);
}

static void test_records(void **state)
{
	static uint8_t msg[SECURE_RECORD_MAX], out[SECURE_RECORD_MAX];
	static uint8_t rec[SECURE_RECORD_MAX + SECURE_RECORD_OVERHEAD];
	const size_t lens[] = {0, 1, 15, 16, 17, 4096, SECURE_RECORD_MAX - 1, SECURE_RECORD_MAX};
	size_t ct_len;

	for (size_t i = 0; i < sizeof msg; i++)
		msg[i] = (uint8_t)(i * 7);
	for (int aes = 0; aes < 2; aes++) {
		struct pair p;
		if (aes && !crypto_aead_aes256gcm_is_available())
			continue;
		sessions(&p, aes);
		for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
			assert_int_equal(secure_seal(&p.si, msg, lens[i], rec), 0);
			assert_int_equal(secure_record_len(rec, &ct_len), 0);
			assert_int_equal(ct_len, lens[i] + SECURE_TAG_BYTES);
			assert_int_equal(
			    secure_open(&p.sr, rec, rec + SECURE_RECORD_HEADER, ct_len, out), 0);
			assert_memory_equal(out, msg, lens[i]);
		}
		assert_int_equal(secure_seal(&p.si, msg, SECURE_RECORD_MAX + 1, rec), SB_EPROTO);
		pair_close(&p);
	}
}

static void test_records_tampered(void **state)
{
	const uint8_t msg[100] = {1, 2, 3};
	uint8_t r1[sizeof msg + SECURE_RECORD_OVERHEAD], r2[sizeof r1], out[sizeof msg];
	const size_t ct = sizeof msg + SECURE_TAG_BYTES;
	struct pair p;

	for (int what = 0; what < 5; what++) {
		sessions(&p, what & 1);
		assert_int_equal(secure_seal(&p.si, msg, sizeof msg, r1), 0);
		assert_int_equal(secure_seal(&p.si, msg, sizeof msg, r2), 0);
		int want = SB_EAUTH;
		uint8_t *first = r1;
		switch (what) {
		case 0:
			r1[SECURE_RECORD_HEADER + 10] ^= 0x80; /* ciphertext */
			break;
		case 1:
			r1[sizeof r1 - 1] ^= 1; /* tag */
			break;
		case 2:
			first = r2; /* out of order */
			break;
		case 3:
			/* a header that disagrees with the ciphertext's length */
			r1[3] -= 1;
			want = SB_EPROTO;
			break;
		case 4:
			/* a record sealed in one direction does not open in the other */
			assert_int_equal(secure_open(&p.si, r1, r1 + SECURE_RECORD_HEADER, ct, out),
					 SB_EAUTH);
			break;
		}
		if (what != 4)
			assert_int_equal(
			    secure_open(&p.sr, first, first + SECURE_RECORD_HEADER, ct, out), want);
		pair_close(&p);
	}

	/* replay: the same record twice */
	sessions(&p, 1);
	assert_int_equal(secure_seal(&p.si, msg, sizeof msg, r1), 0);
	assert_int_equal(secure_open(&p.sr, r1, r1 + SECURE_RECORD_HEADER, ct, out), 0);
	assert_int_equal(secure_open(&p.sr, r1, r1 + SECURE_RECORD_HEADER, ct, out), SB_EAUTH);
	pair_close(&p);
}

static void test_record_len(void **state)
{
	uint8_t h[4];
	size_t n;

	h[0] = 0;
	h[1] = 0x04;
	h[2] = 0;
	h[3] = 0x10; /* 256 KiB + 16 */
	assert_int_equal(secure_record_len(h, &n), 0);
	assert_int_equal(n, SECURE_RECORD_MAX + SECURE_TAG_BYTES);
	h[3] = 0x11;
	assert_int_equal(secure_record_len(h, &n), SB_ETOOBIG);
	memset(h, 0xff, sizeof h);
	assert_int_equal(secure_record_len(h, &n), SB_ETOOBIG);
	memset(h, 0, sizeof h);
	h[3] = SECURE_TAG_BYTES - 1;
	assert_int_equal(secure_record_len(h, &n), SB_EPROTO);
	h[3] = SECURE_TAG_BYTES;
	assert_int_equal(secure_record_len(h, &n), 0);
}

/* Keys roll over every SECURE_REKEY_RECORDS records on both sides alike;
 * a counter at its end refuses to go on. */
static void test_records_rekey_and_exhaustion(void **state)
{
	const uint8_t msg[32] = {9};
	uint8_t rec[sizeof msg + SECURE_RECORD_OVERHEAD], out[sizeof msg];
	const size_t ct = sizeof msg + SECURE_TAG_BYTES;
	struct pair p;

	for (int aes = 0; aes < 2; aes++) {
		sessions(&p, aes);
		p.si.tx.seq = p.sr.rx.seq = SECURE_REKEY_RECORDS - 1;
		uint8_t before[SECURE_KEY_BYTES];
		memcpy(before, p.si.tx.key, sizeof before);
		for (int i = 0; i < 3; i++) {
			assert_int_equal(secure_seal(&p.si, msg, sizeof msg, rec), 0);
			assert_int_equal(
			    secure_open(&p.sr, rec, rec + SECURE_RECORD_HEADER, ct, out), 0);
		}
		assert_memory_not_equal(before, p.si.tx.key, sizeof before);
		assert_memory_equal(p.si.tx.key, p.sr.rx.key, sizeof before);

		p.si.tx.seq = UINT64_MAX;
		assert_int_equal(secure_seal(&p.si, msg, sizeof msg, rec), SB_EPROTO);
		p.sr.rx.seq = UINT64_MAX;
		assert_int_equal(secure_open(&p.sr, rec, rec + SECURE_RECORD_HEADER, ct, out),
				 SB_EPROTO);
		pair_close(&p);
	}
}

/* ---- frame MACs ---- */

static void test_frame_macs(void **state)
{
	struct pair p;
	const uint8_t hdr[12] = {0, 0, 0, 5, 0, 0, 0, 21, 0, 0, 0, 0}, body[5] = "beat";
	uint8_t t1[SECURE_MAC_BYTES], t2[SECURE_MAC_BYTES], h2[sizeof hdr], b2[sizeof body];

	sessions_of(&p, SECURE_PLAIN);
	assert_string_equal(secure_cipher_name(p.si.cipher), "none");
	/* in order, each way */
	assert_int_equal(secure_mac(&p.si, hdr, sizeof hdr, body, sizeof body, t1), 0);
	assert_int_equal(secure_mac_check(&p.sr, hdr, sizeof hdr, body, sizeof body, t1), 0);
	assert_int_equal(secure_mac(&p.sr, hdr, sizeof hdr, body, sizeof body, t2), 0);
	assert_int_equal(secure_mac_check(&p.si, hdr, sizeof hdr, body, sizeof body, t2), 0);
	/* the same frame twice has two tags: the counter is in it */
	assert_int_equal(secure_mac(&p.si, hdr, sizeof hdr, body, sizeof body, t2), 0);
	assert_memory_not_equal(t1, t2, sizeof t1);
	/* a replayed tag, an altered header or body, a sealed direction's
	 * tag: all refused */
	assert_int_equal(secure_mac_check(&p.sr, hdr, sizeof hdr, body, sizeof body, t1), SB_EAUTH);
	pair_close(&p);
	for (int what = 0; what < 4; what++) {
		sessions_of(&p, SECURE_PLAIN);
		memcpy(h2, hdr, sizeof hdr);
		memcpy(b2, body, sizeof body);
		assert_int_equal(secure_mac(&p.si, hdr, sizeof hdr, body, sizeof body, t1), 0);
		if (what == 0)
			h2[11] = 1; /* a payload length appears */
		else if (what == 1)
			b2[0] ^= 0x20;
		else if (what == 2)
			t1[15] ^= 1;
		else /* the other direction's key */
			assert_int_equal(
			    secure_mac_check(&p.si, hdr, sizeof hdr, body, sizeof body, t1),
			    SB_EAUTH);
		if (what < 3)
			assert_int_equal(secure_mac_check(&p.sr, h2, sizeof h2, b2, sizeof b2, t1),
					 SB_EAUTH);
		pair_close(&p);
	}
	/* a dropped frame: the next one fails too */
	sessions_of(&p, SECURE_PLAIN);
	assert_int_equal(secure_mac(&p.si, hdr, sizeof hdr, body, sizeof body, t1), 0);
	assert_int_equal(secure_mac(&p.si, hdr, sizeof hdr, body, sizeof body, t2), 0);
	assert_int_equal(secure_mac_check(&p.sr, hdr, sizeof hdr, body, sizeof body, t2), SB_EAUTH);
	/* MACs are for plain sessions, records for the others */
	uint8_t rec[64];
	assert_int_equal(secure_seal(&p.si, body, sizeof body, rec), SB_EPROTO);
	p.si.tx.seq = UINT64_MAX;
	assert_int_equal(secure_mac(&p.si, hdr, sizeof hdr, body, sizeof body, t1), SB_EPROTO);
	pair_close(&p);
	sessions_of(&p, SECURE_XCHACHA20POLY1305);
	assert_int_equal(secure_mac(&p.si, hdr, sizeof hdr, body, sizeof body, t1), SB_EPROTO);
	pair_close(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_token_load),
	    cmocka_unit_test(test_token_permissions),
	    cmocka_unit_test(test_token_malformed),
	    cmocka_unit_test(test_token_init),
	    cmocka_unit_test(test_keypair_init),
	    cmocka_unit_test(test_node_names),
	    cmocka_unit_test(test_records),
	    cmocka_unit_test(test_records_tampered),
	    cmocka_unit_test(test_record_len),
	    cmocka_unit_test(test_records_rekey_and_exhaustion),
	    cmocka_unit_test(test_frame_macs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
