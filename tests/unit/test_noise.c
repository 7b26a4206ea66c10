/* The Noise module against the published test vectors (tests/unit/vectors,
 * from cacophony and snow): every handshake message, the handshake hash and
 * the transport messages after Split(), byte for byte; then what must fail. */
#include "tests/unit/testutil.h"

#include <jansson.h>
#include <sodium.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/net/noise.h"

#define VECTORS "tests/unit/vectors/noise.json"

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;
	assert_int_equal(sodium_hex2bin(out, cap, s, strlen(s), NULL, &n, NULL), 0);
	return n;
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	assert_non_null(s);
	return s;
}

/* The private key k of the vector, 32 bytes. */
static void key_of(json_t *v, const char *k, uint8_t out[NOISE_DH_LEN])
{
	assert_int_equal(unhex(jstr(v, k), out, NOISE_DH_LEN), NOISE_DH_LEN);
}

static void party(json_t *v, const char *who, struct noise_handshake *hs, enum noise_pattern p)
{
	char k[32];
	uint8_t prologue[256], s[NOISE_DH_LEN], e[NOISE_DH_LEN], psk[NOISE_KEY_LEN];
	int initiator = !strcmp(who, "init");

	snprintf(k, sizeof k, "%s_prologue", who);
	size_t plen = unhex(jstr(v, k), prologue, sizeof prologue);
	snprintf(k, sizeof k, "%s_static", who);
	key_of(v, k, s);
	snprintf(k, sizeof k, "%s_ephemeral", who);
	key_of(v, k, e);
	snprintf(k, sizeof k, "%s_psks", who);
	json_t *psks = json_object_get(v, k);
	const uint8_t *pskp = NULL;
	if (json_array_size(psks)) {
		assert_int_equal(json_array_size(psks), 1);
		assert_int_equal(unhex(json_string_value(json_array_get(psks, 0)), psk, sizeof psk),
				 NOISE_KEY_LEN);
		pskp = psk;
	}
	uint8_t pub[NOISE_DH_LEN];
	noise_public_key(s, pub);
	assert_int_equal(noise_handshake_init(hs, p, initiator, prologue, plen, s, pub, pskp), 0);
	noise_handshake_set_ephemeral(hs, e);
}

static void replay_vector(json_t *v)
{
	const char *name = jstr(v, "protocol_name");
	enum noise_pattern p = strstr(name, "psk3") ? NOISE_XXPSK3 : NOISE_XX;
	struct noise_handshake hs[2];
	struct noise_cipher c[2][2]; /* [party][c1, c2] */
	uint8_t want[1024], pay[1024], out[1024];
	json_t *msgs = json_object_get(v, "messages");

	assert_string_equal(noise_protocol_name(p), name);
	party(v, "init", &hs[0], p);
	party(v, "resp", &hs[1], p);
	assert_true(json_array_size(msgs) > 3);
	for (size_t i = 0; i < json_array_size(msgs); i++) {
		json_t *m = json_array_get(msgs, i);
		size_t plen = unhex(jstr(m, "payload"), pay, sizeof pay);
		size_t clen = unhex(jstr(m, "ciphertext"), want, sizeof want);
		int from = i % 2; /* 0: the initiator sends */
		if (i < 3) {
			struct buf wire = BUF_INIT, got = BUF_INIT;
			assert_int_equal(noise_handshake_writes(&hs[from]), 1);
			assert_int_equal(noise_handshake_write(&hs[from], pay, plen, &wire), 0);
			if (wire.len != clen || memcmp(wire.ptr, want, clen))
				fail_msg("%s (%s): handshake message %zu differs", name,
					 jstr(v, "source"), i);
			assert_int_equal(noise_handshake_read(&hs[!from], wire.ptr, wire.len, &got),
					 0);
			assert_int_equal(got.len, plen);
			assert_memory_equal(got.ptr, pay, plen);
			buf_close(&wire);
			buf_close(&got);
			if (i == 2) {
				for (int k = 0; k < 2; k++) {
					assert_true(noise_handshake_done(&hs[k]));
					assert_int_equal(
					    noise_handshake_split(&hs[k], &c[k][0], &c[k][1]), 0);
				}
				assert_memory_equal(noise_handshake_hash(&hs[0]),
						    noise_handshake_hash(&hs[1]), NOISE_HASH_LEN);
				if (json_object_get(v, "handshake_hash")) {
					uint8_t h[NOISE_HASH_LEN];
					assert_int_equal(
					    unhex(jstr(v, "handshake_hash"), h, sizeof h),
					    NOISE_HASH_LEN);
					assert_memory_equal(noise_handshake_hash(&hs[0]), h,
							    NOISE_HASH_LEN);
				}
				/* Each side knows the other's static key. */
				assert_memory_equal(noise_handshake_remote_static(&hs[0]),
						    hs[1].s_pub, NOISE_DH_LEN);
				assert_memory_equal(noise_handshake_remote_static(&hs[1]),
						    hs[0].s_pub, NOISE_DH_LEN);
			}
			continue;
		}
		/* Transport: the initiator sends with c1, the responder with c2. */
		assert_int_equal(clen, plen + NOISE_TAG_LEN);
		assert_int_equal(noise_cipher_encrypt(&c[from][from], NULL, 0, pay, plen, out), 0);
		if (memcmp(out, want, clen))
			fail_msg("%s (%s): transport message %zu differs", name, jstr(v, "source"),
				 i);
		uint8_t back[1024];
		assert_int_equal(noise_cipher_decrypt(&c[!from][from], NULL, 0, out, clen, back),
				 0);
		assert_memory_equal(back, pay, plen);
	}
	noise_handshake_close(&hs[0]);
	noise_handshake_close(&hs[1]);
}

static void test_vectors(void **state)
{
	json_error_t err;
	json_t *doc = json_load_file(VECTORS, 0, &err);
	if (!doc)
		fail_msg("%s: %s", VECTORS, err.text);
	json_t *vs = json_object_get(doc, "vectors");
	size_t psk3 = 0;
	for (size_t i = 0; i < json_array_size(vs); i++) {
		json_t *v = json_array_get(vs, i);
		replay_vector(v);
		psk3 += !strcmp(jstr(v, "protocol_name"), "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b");
	}
	assert_int_equal(json_array_size(vs), 3);
	assert_int_equal(psk3, 1);
	json_decref(doc);
}

/* ---- what must fail ---- */

struct pair {
	struct noise_handshake i, r;
	struct buf m1, m2, m3, pay;
};

static void pair_init(struct pair *p, const char *pro_i, const char *pro_r, uint8_t psk_i,
		      uint8_t psk_r)
{
	uint8_t si[NOISE_DH_LEN], sr[NOISE_DH_LEN], pi[NOISE_DH_LEN], pr[NOISE_DH_LEN],
	    ki[NOISE_KEY_LEN], kr[NOISE_KEY_LEN];
	memset(p, 0, sizeof *p);
	noise_keypair(si, pi);
	noise_keypair(sr, pr);
	memset(ki, psk_i, sizeof ki);
	memset(kr, psk_r, sizeof kr);
	assert_int_equal(
	    noise_handshake_init(&p->i, NOISE_XXPSK3, 1, pro_i, strlen(pro_i), si, pi, ki), 0);
	assert_int_equal(
	    noise_handshake_init(&p->r, NOISE_XXPSK3, 0, pro_r, strlen(pro_r), sr, pr, kr), 0);
}

static void pair_close(struct pair *p)
{
	noise_handshake_close(&p->i);
	noise_handshake_close(&p->r);
	buf_close(&p->m1);
	buf_close(&p->m2);
	buf_close(&p->m3);
	buf_close(&p->pay);
}

static void test_wrong_psk(void **state)
{
	struct pair p;
	pair_init(&p, "x", "x", 1, 2);
	assert_int_equal(noise_handshake_write(&p.i, NULL, 0, &p.m1), 0);
	assert_int_equal(noise_handshake_read(&p.r, p.m1.ptr, p.m1.len, &p.pay), 0);
	assert_int_equal(noise_handshake_write(&p.r, NULL, 0, &p.m2), 0);
	assert_int_equal(noise_handshake_read(&p.i, p.m2.ptr, p.m2.len, &p.pay), 0);
	assert_int_equal(noise_handshake_write(&p.i, (const uint8_t *)"hi", 2, &p.m3), 0);
	/* The psk enters at the end of message 3: that is where it fails. */
	assert_int_equal(noise_handshake_read(&p.r, p.m3.ptr, p.m3.len, &p.pay), SB_EAUTH);
	pair_close(&p);
}

static void test_wrong_prologue(void **state)
{
	struct pair p;
	/* With a psk the first payload is sealed under a key mixed from the
	 * ephemeral key, with h (and so the prologue) as associated data: a
	 * first message fails on another prologue before any DH. */
	pair_init(&p, "syncbit control", "syncbit peer", 1, 1);
	assert_int_equal(noise_handshake_write(&p.i, NULL, 0, &p.m1), 0);
	assert_int_equal(p.m1.len, NOISE_DH_LEN + NOISE_TAG_LEN);
	assert_int_equal(noise_handshake_read(&p.r, p.m1.ptr, p.m1.len, &p.pay), SB_EAUTH);
	pair_close(&p);
}

static void test_tampered_and_truncated(void **state)
{
	for (size_t at = 0; at < 32 + 48 + 16; at += 5) {
		struct pair p;
		pair_init(&p, "x", "x", 3, 3);
		assert_int_equal(noise_handshake_write(&p.i, NULL, 0, &p.m1), 0);
		assert_int_equal(noise_handshake_read(&p.r, p.m1.ptr, p.m1.len, &p.pay), 0);
		assert_int_equal(noise_handshake_write(&p.r, NULL, 0, &p.m2), 0);
		assert_int_equal(p.m2.len, 32 + 48 + 16);
		p.m2.ptr[at] ^= 0x20;
		int rc = noise_handshake_read(&p.i, p.m2.ptr, p.m2.len, &p.pay);
		if (rc != SB_EAUTH && rc != SB_EPROTO)
			fail_msg("a flipped bit at %zu was accepted (%d)", at, rc);
		pair_close(&p);
	}
	struct pair p;
	pair_init(&p, "x", "x", 3, 3);
	assert_int_equal(noise_handshake_write(&p.i, NULL, 0, &p.m1), 0);
	assert_int_equal(noise_handshake_read(&p.r, p.m1.ptr, 31, &p.pay), SB_EPROTO);
	pair_close(&p);
	pair_init(&p, "x", "x", 3, 3);
	assert_int_equal(noise_handshake_write(&p.i, NULL, 0, &p.m1), 0);
	assert_int_equal(noise_handshake_read(&p.r, p.m1.ptr, p.m1.len, &p.pay), 0);
	assert_int_equal(noise_handshake_write(&p.r, NULL, 0, &p.m2), 0);
	assert_int_equal(noise_handshake_read(&p.i, p.m2.ptr, 32 + 40, &p.pay), SB_EPROTO);
	pair_close(&p);
}

/* An all-zero ephemeral key makes every DH output zero: refused. */
static void test_low_order_key(void **state)
{
	struct pair p;
	uint8_t zero[NOISE_DH_LEN + NOISE_TAG_LEN] = {0};
	pair_init(&p, "x", "x", 3, 3);
	assert_int_equal(noise_handshake_write(&p.i, NULL, 0, &p.m1), 0);
	memcpy(p.m1.ptr, zero, NOISE_DH_LEN);
	/* The first payload is sealed with a key mixed from the ephemeral key:
	 * reseal it for the zero key, as an attacker would. */
	struct noise_handshake fake;
	uint8_t s[NOISE_DH_LEN], k[NOISE_KEY_LEN];
	memset(s, 1, sizeof s);
	memset(k, 3, sizeof k);
	assert_int_equal(noise_handshake_init(&fake, NOISE_XXPSK3, 1, "x", 1, s, s, k), 0);
	memcpy(fake.e_pub, zero, NOISE_DH_LEN);
	fake.has_e = 1;
	struct buf m = BUF_INIT;
	assert_int_equal(noise_handshake_write(&fake, NULL, 0, &m), 0);
	assert_int_equal(noise_handshake_read(&p.r, m.ptr, m.len, &p.pay), 0);
	assert_int_equal(noise_handshake_write(&p.r, NULL, 0, &p.m2), SB_EPROTO);
	assert_int_equal(p.m2.len, 0);
	noise_handshake_close(&fake);
	buf_close(&m);
	pair_close(&p);
}

static void test_turns_and_limits(void **state)
{
	struct pair p;
	pair_init(&p, "x", "x", 3, 3);
	assert_int_equal(noise_handshake_writes(&p.i), 1);
	assert_int_equal(noise_handshake_writes(&p.r), 0);
	assert_int_equal(noise_handshake_write(&p.r, NULL, 0, &p.m2), SB_EPROTO);
	assert_int_equal(noise_handshake_read(&p.i, (const uint8_t *)"x", 1, &p.pay), SB_EPROTO);
	static uint8_t big[NOISE_MSG_MAX];
	assert_int_equal(noise_handshake_write(&p.i, big, sizeof big - 32, &p.m1), SB_ETOOBIG);
	assert_int_equal(p.m1.len, 0);
	struct noise_cipher c1, c2;
	assert_int_equal(noise_handshake_split(&p.i, &c1, &c2), SB_EPROTO);
	uint8_t s[NOISE_DH_LEN] = {1};
	assert_int_equal(noise_handshake_init(&p.r, NOISE_XXPSK3, 0, "x", 1, s, s, NULL), -EINVAL);
	assert_int_equal(noise_handshake_init(&p.r, NOISE_XX, 0, "x", 1, s, s, s), -EINVAL);
	pair_close(&p);

	struct noise_cipher c = {.has_key = 1, .n = UINT64_MAX};
	uint8_t out[NOISE_TAG_LEN];
	assert_int_equal(noise_cipher_encrypt(&c, NULL, 0, NULL, 0, out), SB_EPROTO);
	c.n = 0;
	assert_int_equal(noise_cipher_decrypt(&c, NULL, 0, out, 3, out), SB_EPROTO);
	assert_int_equal(noise_cipher_encrypt(&c, NULL, 0, NULL, 0, out), 0);
	out[0] ^= 1;
	c.n = 0;
	assert_int_equal(noise_cipher_decrypt(&c, NULL, 0, out, sizeof out, out), SB_EAUTH);
	assert_int_equal(c.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vectors),	   cmocka_unit_test(test_wrong_psk),
	    cmocka_unit_test(test_wrong_prologue), cmocka_unit_test(test_tampered_and_truncated),
	    cmocka_unit_test(test_low_order_key),  cmocka_unit_test(test_turns_and_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
