#include "tests/unit/testutil.h"

#include <errno.h>
#include <sys/stat.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/secure.h"
#include "proto/wire.pb-c.h"

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

/* ---- handshake ---- */

struct pair {
	struct secure_handshake i, r;
	struct secure_session si, sr;
	struct buf a, b, auth;
};

static void token_fill(struct secure_token *t, uint8_t v)
{
	memset(t->key, v, sizeof t->key);
}

static void pair_init(struct pair *p, const struct secure_token *ti, const struct secure_token *tr,
		      int enc_i, int enc_r)
{
	memset(p, 0, sizeof *p);
	assert_int_equal(secure_handshake_init(&p->i, ti, 1, "node-i", enc_i), 0);
	assert_int_equal(secure_handshake_init(&p->r, tr, 0, "node-r", enc_r), 0);
}

static void pair_close(struct pair *p)
{
	secure_handshake_close(&p->i);
	secure_handshake_close(&p->r);
	secure_session_close(&p->si);
	secure_session_close(&p->sr);
	buf_close(&p->a);
	buf_close(&p->b);
	buf_close(&p->auth);
}

/* Run the three messages; returns the first error. */
static int pair_run(struct pair *p)
{
	int rc;
	if ((rc = secure_handshake_hello(&p->i, &p->a)) != 0)
		return rc;
	if ((rc = secure_handshake_respond(&p->r, p->a.ptr, p->a.len, &p->b)) != 0)
		return rc;
	if ((rc = secure_handshake_finish(&p->i, p->b.ptr, p->b.len, &p->auth, &p->si)) != 0)
		return rc;
	return secure_handshake_verify(&p->r, p->auth.ptr, p->auth.len, &p->sr);
}

/* One record each way must open on the other side. */
static void check_sessions(struct secure_session *x, struct secure_session *y)
{
	const uint8_t msg[] = "a block of model weights";
	uint8_t rec[sizeof msg + SECURE_RECORD_OVERHEAD], out[sizeof msg];
	size_t ct_len;

	assert_int_equal(x->cipher, y->cipher);
	for (int dir = 0; dir < 2; dir++) {
		struct secure_session *from = dir ? y : x, *to = dir ? x : y;
		assert_int_equal(secure_seal(from, msg, sizeof msg, rec), 0);
		assert_int_equal(secure_record_len(rec, &ct_len), 0);
		assert_int_equal(ct_len, sizeof msg + SECURE_TAG_BYTES);
		assert_int_equal(secure_open(to, rec, rec + SECURE_RECORD_HEADER, ct_len, out), 0);
		assert_memory_equal(out, msg, sizeof msg);
		if (from->cipher != SECURE_PLAIN)
			assert_memory_not_equal(rec + SECURE_RECORD_HEADER, msg, sizeof msg);
	}
}

static void test_handshake_ok(void **state)
{
	struct secure_token t;
	struct pair p;
	const int modes[][2] = {{1, 1}, {1, 0}, {0, 1}};

	token_fill(&t, 7);
	for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
		pair_init(&p, &t, &t, modes[m][0], modes[m][1]);
		assert_int_equal(pair_run(&p), 0);
		assert_int_equal(p.i.state, SECURE_HS_DONE);
		assert_int_equal(p.r.state, SECURE_HS_DONE);
		assert_string_equal(p.i.peer_node, "node-r");
		assert_string_equal(p.r.peer_node, "node-i");
		assert_int_not_equal(p.si.cipher, SECURE_PLAIN);
		assert_int_equal(p.si.cipher, crypto_aead_aes256gcm_is_available()
						  ? SECURE_AES256GCM
						  : SECURE_XCHACHA20POLY1305);
		check_sessions(&p.si, &p.sr);
		assert_true(p.a.len <= SECURE_HELLO_MAX && p.b.len <= SECURE_HELLO_MAX);
		pair_close(&p);
	}
}

static void test_handshake_plain(void **state)
{
	struct secure_token t;
	struct pair p;

	token_fill(&t, 7);
	pair_init(&p, &t, &t, 0, 0);
	assert_int_equal(pair_run(&p), 0);
	assert_int_equal(p.si.cipher, SECURE_PLAIN);
	assert_int_equal(p.sr.cipher, SECURE_PLAIN);
	assert_string_equal(secure_cipher_name(p.si.cipher), "none");
	pair_close(&p);
}

static void test_handshake_xchacha(void **state)
{
	struct secure_token t;
	struct pair p;

	token_fill(&t, 7);
	for (int side = 0; side < 2; side++) {
		pair_init(&p, &t, &t, 1, 1);
		if (side)
			p.r.aes_gcm = 0;
		else
			p.i.aes_gcm = 0;
		assert_int_equal(pair_run(&p), 0);
		assert_int_equal(p.si.cipher, SECURE_XCHACHA20POLY1305);
		assert_string_equal(secure_cipher_name(p.sr.cipher), "xchacha20poly1305");
		check_sessions(&p.si, &p.sr);
		pair_close(&p);
	}
}

static void test_handshake_wrong_token(void **state)
{
	struct secure_token t1, t2;
	struct pair p;

	token_fill(&t1, 1);
	token_fill(&t2, 2);
	pair_init(&p, &t1, &t2, 1, 1);
	assert_int_equal(pair_run(&p), SB_EAUTH);
	assert_int_equal(p.i.state, SECURE_HS_FAILED);
	assert_non_null(strstr(p.i.error, "join token"));
	assert_int_equal(p.auth.len, 0);
	pair_close(&p);

	/* an initiator with the wrong token cannot produce a valid Auth either */
	pair_init(&p, &t1, &t1, 1, 1);
	assert_int_equal(secure_handshake_hello(&p.i, &p.a), 0);
	assert_int_equal(secure_handshake_respond(&p.r, p.a.ptr, p.a.len, &p.b), 0);
	uint8_t fake[] = {0x0a, 32, 1, 2, 3, 4, 5, 6, 7, 8, 9,	10, 11, 12, 13, 14, 15,
			  16,	1,  2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
	assert_int_equal(secure_handshake_verify(&p.r, fake, sizeof fake, &p.sr), SB_EAUTH);
	pair_close(&p);
}

/* A Hello with every field under the test's control. */
struct hello_spec {
	uint32_t version;
	size_t pk_len, nonce_len, mac_len;
	const char *node;
	int encrypt;
};

static void hello_make(const struct hello_spec *s, struct buf *out)
{
	Syncbit__Hello h;
	uint8_t pk[64], nonce[64], mac[64];

	memset(pk, 0x42, sizeof pk);
	memset(nonce, 0x43, sizeof nonce);
	memset(mac, 0x44, sizeof mac);
	syncbit__hello__init(&h);
	h.version = s->version;
	h.ephemeral_pk.data = pk;
	h.ephemeral_pk.len = s->pk_len;
	h.nonce.data = nonce;
	h.nonce.len = s->nonce_len;
	h.mac.data = mac;
	h.mac.len = s->mac_len;
	h.node = (char *)s->node;
	h.encrypt = s->encrypt;
	out->len = 0;
	buf_reserve(out, syncbit__hello__get_packed_size(&h));
	out->len = syncbit__hello__pack(&h, out->ptr);
}

static int respond_to(const struct hello_spec *s, char *err, size_t cap)
{
	struct secure_token t;
	struct secure_handshake r;
	struct buf in = BUF_INIT, out = BUF_INIT;

	token_fill(&t, 3);
	assert_int_equal(secure_handshake_init(&r, &t, 0, "r", 1), 0);
	hello_make(s, &in);
	int rc = secure_handshake_respond(&r, in.ptr, in.len, &out);
	if (rc)
		assert_int_equal(out.len, 0);
	snprintf(err, cap, "%s", r.error);
	secure_handshake_close(&r);
	buf_close(&in);
	buf_close(&out);
	return rc;
}

static void test_hello_bounds(void **state)
{
	char err[160], node[300];
	struct hello_spec s = {1, 32, 32, 0, "ok", 1};

	assert_int_equal(respond_to(&s, err, sizeof err), 0);

	s.version = 2;
	assert_int_equal(respond_to(&s, err, sizeof err), SB_EPROTO);
	assert_non_null(strstr(err, "protocol version 2 not supported"));
	s.version = 0;
	assert_int_equal(respond_to(&s, err, sizeof err), SB_EPROTO);
	s.version = 1;

	const size_t lens[] = {0, 31, 33, 64};
	for (size_t i = 0; i < 4; i++) {
		s.pk_len = lens[i];
		assert_int_equal(respond_to(&s, err, sizeof err), SB_EPROTO);
		s.pk_len = 32;
		s.nonce_len = lens[i];
		assert_int_equal(respond_to(&s, err, sizeof err), SB_EPROTO);
		s.nonce_len = 32;
	}
	/* an initiator's Hello carries no mac */
	s.mac_len = 32;
	assert_int_equal(respond_to(&s, err, sizeof err), SB_EPROTO);
	s.mac_len = 0;

	memset(node, 'n', sizeof node);
	node[SECURE_NODE_MAX] = '\0';
	s.node = node;
	assert_int_equal(respond_to(&s, err, sizeof err), 0);
	node[SECURE_NODE_MAX] = 'n';
	node[SECURE_NODE_MAX + 1] = '\0';
	assert_int_equal(respond_to(&s, err, sizeof err), SB_EPROTO);
	s.node = "bad\x01name";
	assert_int_equal(respond_to(&s, err, sizeof err), SB_EPROTO);
	s.node = "caf\xc3\xa9";
	assert_int_equal(respond_to(&s, err, sizeof err), SB_EPROTO);
	s.node = "";
	assert_int_equal(respond_to(&s, err, sizeof err), 0);
}

static void test_hello_garbage(void **state)
{
	struct secure_token t;
	struct secure_handshake r;
	struct buf out = BUF_INIT;
	uint8_t junk[SECURE_HELLO_MAX + 1];

	token_fill(&t, 3);
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	assert_int_equal(secure_handshake_init(&r, &t, 0, "r", 1), 0);
	assert_int_equal(secure_handshake_respond(&r, junk, sizeof junk, &out), SB_ETOOBIG);
	assert_int_equal(secure_handshake_init(&r, &t, 0, "r", 1), 0);
	assert_int_equal(secure_handshake_respond(&r, junk, 100, &out), SB_EPROTO);
	assert_int_equal(secure_handshake_init(&r, &t, 0, "r", 1), 0);
	assert_int_equal(secure_handshake_respond(&r, junk, 0, &out), SB_EPROTO);
	/* an empty message decodes, but version 0 is not ours */
	assert_non_null(strstr(r.error, "version 0"));
	assert_int_equal(out.len, 0);

	/* messages out of order */
	assert_int_equal(secure_handshake_init(&r, &t, 0, "r", 1), 0);
	assert_int_equal(secure_handshake_hello(&r, &out), SB_EPROTO);
	assert_int_equal(secure_handshake_init(&r, &t, 0, "r", 1), 0);
	assert_int_equal(secure_handshake_verify(&r, junk, 10, NULL), SB_EPROTO);

	/* bad node names of our own */
	assert_int_equal(secure_handshake_init(&r, &t, 0, "tab\there", 1), -EINVAL);
	assert_int_equal(secure_handshake_init(&r, &t, 0, NULL, 1), 0);
	assert_int_equal(secure_node_valid("agent-7.rack2"), 1);
	assert_int_equal(secure_node_valid("a\nb"), 0);
	secure_handshake_close(&r);
	buf_close(&out);
}

/* The responder's Hello is re-encoded with a flag flipped but the old mac:
 * the initiator must notice (no downgrade to plain text, no node rename). */
static void test_hello_tampered(void **state)
{
	struct secure_token t;

	token_fill(&t, 9);
	for (int what = 0; what < 4; what++) {
		struct pair p;
		pair_init(&p, &t, &t, 0, 1);
		assert_int_equal(secure_handshake_hello(&p.i, &p.a), 0);
		assert_int_equal(secure_handshake_respond(&p.r, p.a.ptr, p.a.len, &p.b), 0);
		Syncbit__Hello *h = syncbit__hello__unpack(NULL, p.b.len, p.b.ptr);
		assert_non_null(h);
		char *node = h->node;
		if (what == 0)
			h->encrypt = 0;
		else if (what == 1)
			h->node = (char *)"other";
		else if (what == 2)
			h->aes_gcm = !h->aes_gcm;
		else
			h->nonce.data[0] ^= 1;
		struct buf b2 = BUF_INIT;
		buf_reserve(&b2, syncbit__hello__get_packed_size(h));
		b2.len = syncbit__hello__pack(h, b2.ptr);
		h->node = node;
		syncbit__hello__free_unpacked(h, NULL);
		assert_int_equal(secure_handshake_finish(&p.i, b2.ptr, b2.len, &p.auth, &p.si),
				 SB_EAUTH);
		buf_close(&b2);
		pair_close(&p);
	}
}

/* Messages of one session replayed into another fail. */
static void test_handshake_replay(void **state)
{
	struct secure_token t;
	struct pair p, q;

	token_fill(&t, 5);
	pair_init(&p, &t, &t, 1, 1);
	assert_int_equal(pair_run(&p), 0);

	/* the initiator's Hello and Auth, replayed to a fresh responder */
	pair_init(&q, &t, &t, 1, 1);
	assert_int_equal(secure_handshake_respond(&q.r, p.a.ptr, p.a.len, &q.b), 0);
	assert_int_equal(secure_handshake_verify(&q.r, p.auth.ptr, p.auth.len, &q.sr), SB_EAUTH);
	pair_close(&q);

	/* the responder's Hello, replayed to a fresh initiator */
	pair_init(&q, &t, &t, 1, 1);
	assert_int_equal(secure_handshake_hello(&q.i, &q.a), 0);
	assert_int_equal(secure_handshake_finish(&q.i, p.b.ptr, p.b.len, &q.auth, &q.si), SB_EAUTH);
	pair_close(&q);

	/* an initiator's own Hello reflected back is refused */
	pair_init(&q, &t, &t, 1, 1);
	assert_int_equal(secure_handshake_hello(&q.i, &q.a), 0);
	assert_int_equal(secure_handshake_finish(&q.i, q.a.ptr, q.a.len, &q.auth, &q.si),
			 SB_EPROTO);
	pair_close(&q);
	pair_close(&p);
}

/* ---- records ---- */

static void sessions(struct pair *p, int aes)
{
	struct secure_token t;

	token_fill(&t, 4);
	pair_init(p, &t, &t, 1, 1);
	if (!aes)
		p->i.aes_gcm = 0;
	assert_int_equal(pair_run(p), 0);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_token_load),
	    cmocka_unit_test(test_token_permissions),
	    cmocka_unit_test(test_token_malformed),
	    cmocka_unit_test(test_token_init),
	    cmocka_unit_test(test_handshake_ok),
	    cmocka_unit_test(test_handshake_plain),
	    cmocka_unit_test(test_handshake_xchacha),
	    cmocka_unit_test(test_handshake_wrong_token),
	    cmocka_unit_test(test_hello_bounds),
	    cmocka_unit_test(test_hello_garbage),
	    cmocka_unit_test(test_hello_tampered),
	    cmocka_unit_test(test_handshake_replay),
	    cmocka_unit_test(test_records),
	    cmocka_unit_test(test_records_tampered),
	    cmocka_unit_test(test_record_len),
	    cmocka_unit_test(test_records_rekey_and_exhaustion),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
