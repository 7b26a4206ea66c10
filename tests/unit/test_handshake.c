/* The handshake between two parties in memory: sessions that work, a wrong
 * join token, a static key that is not the one expected, messages replayed
 * on another purpose or twice, tampering, versions and bounds. */
#include "tests/unit/testutil.h"

#include "common/buf.h"
#include "common/err.h"
#include "common/net/handshake.h"
#include "proto/wire.pb-c.h"

#define ALL_PURPOSES                                                                        \
	(HANDSHAKE_PURPOSE_BIT(HANDSHAKE_CONTROL) | HANDSHAKE_PURPOSE_BIT(HANDSHAKE_PEER) | \
	 HANDSHAKE_PURPOSE_BIT(HANDSHAKE_ADMIN))

/* One side: its config, keys and what its verify saw. */
struct side {
	struct secure_token tok;
	struct secure_keypair key;
	struct handshake_config cfg;
	struct handshake hs;
	struct secure_session s;
	const uint8_t *expect; /* the peer key verify accepts; NULL: any */
	char seen_node[SECURE_NODE_MAX + 1];
	int verified;
};

struct pair {
	struct side i, r;
	struct handshake_replay replay;
	struct buf m1, m2, m3;
};

static const char *verify(void *arg, const char *node, const uint8_t key[SECURE_KEY_BYTES])
{
	struct side *s = arg;
	s->verified++;
	snprintf(s->seen_node, sizeof s->seen_node, "%s", node);
	if (s->expect && memcmp(s->expect, key, SECURE_KEY_BYTES))
		return "its key is not the one registered";
	return NULL;
}

static void side_init(struct side *s, uint8_t token, const char *node, int encrypt)
{
	memset(s, 0, sizeof *s);
	memset(s->tok.key, token, sizeof s->tok.key);
	secure_keypair_new(&s->key);
	s->cfg.token = &s->tok;
	s->cfg.key = &s->key;
	s->cfg.node = node;
	s->cfg.encrypt = encrypt;
	s->cfg.aes_gcm = 1;
	s->cfg.purpose = HANDSHAKE_CONTROL;
	s->cfg.purposes = HANDSHAKE_PURPOSE_BIT(HANDSHAKE_CONTROL);
	s->cfg.verify = verify;
	s->cfg.verify_arg = s;
}

static void pair_init(struct pair *p, uint8_t tok_i, uint8_t tok_r, int enc_i, int enc_r)
{
	memset(p, 0, sizeof *p);
	side_init(&p->i, tok_i, "node-i", enc_i);
	side_init(&p->r, tok_r, "scheduler", enc_r);
	p->r.cfg.replay = &p->replay;
}

static void pair_start(struct pair *p)
{
	assert_int_equal(handshake_init(&p->i.hs, &p->i.cfg, 1), 0);
	assert_int_equal(handshake_init(&p->r.hs, &p->r.cfg, 0), 0);
}

static void pair_close(struct pair *p)
{
	handshake_close(&p->i.hs);
	handshake_close(&p->r.hs);
	secure_session_close(&p->i.s);
	secure_session_close(&p->r.s);
	buf_close(&p->m1);
	buf_close(&p->m2);
	buf_close(&p->m3);
}

/* The three messages; the first error. */
static int pair_run(struct pair *p)
{
	int rc;
	pair_start(p);
	if ((rc = handshake_start(&p->i.hs, &p->m1)) != 0)
		return rc;
	if ((rc = handshake_respond(&p->r.hs, p->m1.ptr, p->m1.len, &p->m2)) != 0)
		return rc;
	if ((rc = handshake_finish(&p->i.hs, p->m2.ptr, p->m2.len, &p->m3, &p->i.s)) != 0)
		return rc;
	return handshake_accept(&p->r.hs, p->m3.ptr, p->m3.len, &p->r.s);
}

/* A frame each way through the sessions, sealed or MACed. */
static void check_sessions(struct secure_session *x, struct secure_session *y)
{
	const uint8_t msg[] = "a block of model weights";
	uint8_t rec[sizeof msg + SECURE_RECORD_OVERHEAD], out[sizeof msg], tag[SECURE_MAC_BYTES];
	size_t ct_len;

	assert_int_equal(x->cipher, y->cipher);
	for (int dir = 0; dir < 2; dir++) {
		struct secure_session *from = dir ? y : x, *to = dir ? x : y;
		if (from->cipher == SECURE_PLAIN) {
			assert_int_equal(secure_mac(from, msg, 4, msg + 4, sizeof msg - 4, tag), 0);
			assert_int_equal(secure_mac_check(to, msg, 4, msg + 4, sizeof msg - 4, tag),
					 0);
			continue;
		}
		assert_int_equal(secure_seal(from, msg, sizeof msg, rec), 0);
		assert_int_equal(secure_record_len(rec, &ct_len), 0);
		assert_int_equal(secure_open(to, rec, rec + SECURE_RECORD_HEADER, ct_len, out), 0);
		assert_memory_equal(out, msg, sizeof msg);
		assert_memory_not_equal(rec + SECURE_RECORD_HEADER, msg, sizeof msg);
	}
}

static void test_handshake_ok(void **state)
{
	const int modes[][4] = {/* enc_i, enc_r, aes_i, aes_r, */
				{1, 1, 1, 1}, {1, 0, 1, 1}, {0, 1, 1, 1},
				{1, 1, 0, 1}, {1, 1, 1, 0}, {0, 0, 1, 1}};
	const enum secure_cipher want[] = {SECURE_AES256GCM,	     SECURE_AES256GCM,
					   SECURE_AES256GCM,	     SECURE_XCHACHA20POLY1305,
					   SECURE_XCHACHA20POLY1305, SECURE_PLAIN};

	for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
		struct pair p;
		pair_init(&p, 7, 7, modes[m][0], modes[m][1]);
		p.i.cfg.aes_gcm = modes[m][2];
		p.r.cfg.aes_gcm = modes[m][3];
		assert_int_equal(pair_run(&p), 0);
		assert_int_equal(p.i.hs.state, HANDSHAKE_CONFIRM);
		assert_int_equal(p.r.hs.state, HANDSHAKE_DONE);
		/* each knows who the other is */
		assert_string_equal(p.i.hs.peer_node, "scheduler");
		assert_string_equal(p.r.hs.peer_node, "node-i");
		assert_memory_equal(p.i.hs.peer_key, p.r.key.pub, SECURE_KEY_BYTES);
		assert_memory_equal(p.r.hs.peer_key, p.i.key.pub, SECURE_KEY_BYTES);
		assert_int_equal(p.i.verified, 1);
		assert_int_equal(p.r.verified, 1);
		assert_int_equal(p.r.hs.purpose, HANDSHAKE_CONTROL);
		assert_int_equal(p.i.s.cipher, want[m]);
		check_sessions(&p.i.s, &p.r.s);
		assert_true(p.m1.len <= HANDSHAKE_HELLO_MAX && p.m2.len <= HANDSHAKE_HELLO_MAX &&
			    p.m3.len <= HANDSHAKE_HELLO_MAX);
		pair_close(&p);
	}
}

/* A refusal Hello in out: its text and code. */
static int refusal(const struct buf *b, char *why, size_t cap)
{
	Syncbit__Hello *h = syncbit__hello__unpack(NULL, b->len, b->ptr);
	assert_non_null(h);
	assert_int_equal(h->version, HANDSHAKE_VERSION);
	assert_int_equal(h->noise.len, 0);
	snprintf(why, cap, "%s", h->refused);
	int code = h->refused_code;
	syncbit__hello__free_unpacked(h, NULL);
	return code;
}

static void test_wrong_token(void **state)
{
	struct pair p;
	char why[256];

	pair_init(&p, 1, 2, 1, 1);
	pair_start(&p);
	assert_int_equal(handshake_start(&p.i.hs, &p.m1), 0);
	/* The responder refuses at the first message, before any DH ... */
	assert_int_equal(handshake_respond(&p.r.hs, p.m1.ptr, p.m1.len, &p.m2), SB_EAUTH);
	assert_int_equal(p.r.hs.state, HANDSHAKE_FAILED);
	assert_non_null(strstr(p.r.hs.error, "join token"));
	assert_int_equal(p.r.hs.noise.has_e, 0);
	assert_int_equal(refusal(&p.m2, why, sizeof why), SB_EAUTH);
	assert_non_null(strstr(why, "join token"));
	/* ... and the initiator hears why. */
	assert_int_equal(handshake_finish(&p.i.hs, p.m2.ptr, p.m2.len, &p.m3, &p.i.s), SB_EAUTH);
	assert_non_null(strstr(p.i.hs.error, "refused by the peer: the join tokens differ"));
	assert_int_equal(p.m3.len, 0);
	pair_close(&p);

	/* A responder without the token that skips the tag check still cannot
	 * read message 3 (the psk enters there), nor confirm: the initiator
	 * waits for a confirmation that never comes. */
	pair_init(&p, 1, 2, 1, 1);
	pair_start(&p);
	assert_int_equal(handshake_start(&p.i.hs, &p.m1), 0);
	memcpy(p.r.hs.tag_key, p.i.hs.tag_key, sizeof p.r.hs.tag_key);
	assert_int_equal(handshake_respond(&p.r.hs, p.m1.ptr, p.m1.len, &p.m2), 0);
	assert_int_equal(handshake_finish(&p.i.hs, p.m2.ptr, p.m2.len, &p.m3, &p.i.s), 0);
	assert_int_equal(p.i.hs.state, HANDSHAKE_CONFIRM);
	assert_int_equal(handshake_accept(&p.r.hs, p.m3.ptr, p.m3.len, &p.r.s), SB_EAUTH);
	pair_close(&p);
}

/* The peer's static key is not the one expected for its name. */
static void test_wrong_static_key(void **state)
{
	struct pair p;
	struct secure_keypair other;

	secure_keypair_new(&other);
	/* the initiator expects another key: it sends nothing of its own */
	pair_init(&p, 3, 3, 1, 1);
	p.i.expect = other.pub;
	assert_int_equal(pair_run(&p), SB_EDENIED);
	assert_int_equal(p.i.hs.state, HANDSHAKE_FAILED);
	assert_string_equal(p.i.hs.error, "its key is not the one registered");
	assert_string_equal(p.i.seen_node, "scheduler");
	assert_int_equal(p.m3.len, 0);
	pair_close(&p);

	/* the responder expects another: refused, with a session to say so */
	pair_init(&p, 3, 3, 0, 0);
	p.r.expect = other.pub;
	assert_int_equal(pair_run(&p), SB_EDENIED);
	assert_string_equal(p.r.seen_node, "node-i");
	assert_string_equal(p.r.hs.error, "its key is not the one registered");
	check_sessions(&p.i.s, &p.r.s);
	pair_close(&p);

	/* a node posing as another: the name it claims, its own key */
	pair_init(&p, 3, 3, 1, 1);
	p.r.expect = other.pub; /* "node-i" is registered with `other` */
	p.i.cfg.node = "node-i";
	assert_int_equal(pair_run(&p), SB_EDENIED);
	pair_close(&p);
	secure_keypair_close(&other);
}

/* Message 1 of one connection, sent again: on another purpose, to the same
 * responder, or to a fresh one that cannot be finished. */
static void test_replay(void **state)
{
	struct pair p, q;
	char why[256];
	Syncbit__Hello *h;

	pair_init(&p, 5, 5, 1, 1);
	assert_int_equal(pair_run(&p), 0);

	/* the same bytes with the purpose changed to admin */
	pair_init(&q, 5, 5, 1, 1);
	q.r.cfg.purposes = ALL_PURPOSES;
	pair_start(&q);
	h = syncbit__hello__unpack(NULL, p.m1.len, p.m1.ptr);
	assert_int_equal(h->purpose, HANDSHAKE_CONTROL);
	h->purpose = SYNCBIT__PURPOSE__PURPOSE_ADMIN;
	struct buf m = BUF_INIT;
	buf_reserve(&m, syncbit__hello__get_packed_size(h));
	m.len = syncbit__hello__pack(h, m.ptr);
	syncbit__hello__free_unpacked(h, NULL);
	assert_int_equal(handshake_respond(&q.r.hs, m.ptr, m.len, &q.m2), SB_EAUTH);
	assert_non_null(strstr(q.r.hs.error, "does not authenticate for admin connections"));
	assert_int_equal(refusal(&q.m2, why, sizeof why), SB_EAUTH);
	assert_int_equal(q.r.hs.noise.has_e, 0); /* no DH was done */
	buf_close(&m);
	pair_close(&q);

	/* the same bytes to the responder that took them */
	struct handshake again;
	assert_int_equal(handshake_init(&again, &p.r.cfg, 0), 0);
	q.m2.len = 0;
	assert_int_equal(handshake_respond(&again, p.m1.ptr, p.m1.len, &q.m2), SB_EAUTH);
	assert_non_null(strstr(again.error, "seen before"));
	assert_int_equal(again.noise.has_e, 0);
	handshake_close(&again);
	buf_close(&q.m2);

	/* to a fresh responder: it answers, but message 3 of the old
	 * connection does not finish the new one */
	pair_init(&q, 5, 5, 1, 1);
	pair_start(&q);
	assert_int_equal(handshake_respond(&q.r.hs, p.m1.ptr, p.m1.len, &q.m2), 0);
	assert_int_equal(handshake_accept(&q.r.hs, p.m3.ptr, p.m3.len, &q.r.s), SB_EAUTH);
	pair_close(&q);
	pair_close(&p);
}

/* The responder's message with a byte flipped, anywhere: refused. */
static void test_tampered(void **state)
{
	for (size_t at = 0;; at += 3) {
		struct pair p;
		pair_init(&p, 9, 9, 0, 1);
		pair_start(&p);
		assert_int_equal(handshake_start(&p.i.hs, &p.m1), 0);
		assert_int_equal(handshake_respond(&p.r.hs, p.m1.ptr, p.m1.len, &p.m2), 0);
		if (at >= p.m2.len) {
			pair_close(&p);
			break;
		}
		p.m2.ptr[at] ^= 0x04;
		int rc = handshake_finish(&p.i.hs, p.m2.ptr, p.m2.len, &p.m3, &p.i.s);
		if (rc == 0)
			fail_msg("a flipped bit at %zu of %zu was accepted", at, p.m2.len);
		pair_close(&p);
	}
	/* the initiator's message 3 too */
	struct pair p;
	pair_init(&p, 9, 9, 1, 1);
	pair_start(&p);
	assert_int_equal(handshake_start(&p.i.hs, &p.m1), 0);
	assert_int_equal(handshake_respond(&p.r.hs, p.m1.ptr, p.m1.len, &p.m2), 0);
	assert_int_equal(handshake_finish(&p.i.hs, p.m2.ptr, p.m2.len, &p.m3, &p.i.s), 0);
	p.m3.ptr[p.m3.len - 3] ^= 1;
	assert_int_equal(handshake_accept(&p.r.hs, p.m3.ptr, p.m3.len, &p.r.s), SB_EAUTH);
	pair_close(&p);
}

/* A version 1 Hello, as an older Syncbit sends it. */
static void hello_v1(struct buf *out)
{
	uint8_t v1[] = {0x08, 0x01, 0x12, 0x20}; /* version 1, ephemeral_pk of 32 bytes */
	buf_append(out, v1, sizeof v1);
	for (int i = 0; i < 32; i++)
		buf_append(out, "\x42", 1);
}

static void test_versions_and_purposes(void **state)
{
	struct pair p;
	char why[256];

	/* an older peer hears our version, in the field it reads first */
	pair_init(&p, 4, 4, 1, 1);
	pair_start(&p);
	hello_v1(&p.m1);
	assert_int_equal(handshake_respond(&p.r.hs, p.m1.ptr, p.m1.len, &p.m2), SB_EPROTO);
	assert_string_equal(p.r.hs.error, "peer speaks protocol v1; this side speaks v2");
	assert_int_equal(refusal(&p.m2, why, sizeof why), SB_EPROTO);
	assert_string_equal(why, "the responder speaks protocol v2");
	pair_close(&p);

	/* an initiator hears of a newer one the same way */
	pair_init(&p, 4, 4, 1, 1);
	pair_start(&p);
	assert_int_equal(handshake_start(&p.i.hs, &p.m1), 0);
	Syncbit__Hello h = SYNCBIT__HELLO__INIT;
	h.version = 3;
	buf_reserve(&p.m2, syncbit__hello__get_packed_size(&h));
	p.m2.len = syncbit__hello__pack(&h, p.m2.ptr);
	assert_int_equal(handshake_finish(&p.i.hs, p.m2.ptr, p.m2.len, &p.m3, &p.i.s), SB_EPROTO);
	assert_string_equal(p.i.hs.error, "peer speaks protocol v3; this side speaks v2");
	pair_close(&p);

	/* a peer connection to a port that takes control and admin ones */
	pair_init(&p, 4, 4, 1, 1);
	p.i.cfg.purpose = HANDSHAKE_PEER;
	p.r.cfg.purposes =
	    HANDSHAKE_PURPOSE_BIT(HANDSHAKE_CONTROL) | HANDSHAKE_PURPOSE_BIT(HANDSHAKE_ADMIN);
	assert_int_equal(pair_run(&p), SB_EPROTO);
	assert_string_equal(p.r.hs.error, "this port does not take peer connections");
	pair_close(&p);
	pair_init(&p, 4, 4, 1, 1);
	p.i.cfg.purpose = HANDSHAKE_ADMIN;
	p.r.cfg.purposes = ALL_PURPOSES;
	assert_int_equal(pair_run(&p), 0);
	assert_int_equal(p.r.hs.purpose, HANDSHAKE_ADMIN);
	pair_close(&p);
}

static void test_bounds_and_order(void **state)
{
	struct pair p;
	uint8_t junk[HANDSHAKE_HELLO_MAX + 1];
	struct buf out = BUF_INIT;

	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	pair_init(&p, 4, 4, 1, 1);
	pair_start(&p);
	assert_int_equal(handshake_respond(&p.r.hs, junk, sizeof junk, &out), SB_ETOOBIG);
	assert_int_equal(out.len, 0);
	handshake_close(&p.r.hs);
	assert_int_equal(handshake_init(&p.r.hs, &p.r.cfg, 0), 0);
	assert_int_equal(handshake_respond(&p.r.hs, junk, 100, &out), SB_EPROTO);
	assert_int_equal(out.len, 0);
	/* out of order */
	assert_int_equal(handshake_start(&p.r.hs, &out), SB_EPROTO);
	assert_int_equal(handshake_finish(&p.r.hs, junk, 10, &out, &p.r.s), SB_EPROTO);
	assert_int_equal(handshake_respond(&p.i.hs, junk, 10, &out), SB_EPROTO);
	pair_close(&p);
	buf_close(&out);

	/* configurations that cannot work */
	struct side s;
	struct handshake hs;
	side_init(&s, 1, "tab\there", 1);
	assert_int_equal(handshake_init(&hs, &s.cfg, 1), -EINVAL);
	s.cfg.node = NULL;
	assert_int_equal(handshake_init(&hs, &s.cfg, 1), 0);
	s.cfg.purpose = 0;
	assert_int_equal(handshake_init(&hs, &s.cfg, 1), -EINVAL);
	assert_int_equal(handshake_init(&hs, &s.cfg, 0), 0);
	s.cfg.key = NULL;
	assert_int_equal(handshake_init(&hs, &s.cfg, 0), -EINVAL);
	handshake_close(&hs);
	assert_string_equal(handshake_purpose_name(HANDSHAKE_PEER), "peer");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_handshake_ok),     cmocka_unit_test(test_wrong_token),
	    cmocka_unit_test(test_wrong_static_key), cmocka_unit_test(test_replay),
	    cmocka_unit_test(test_tampered),	     cmocka_unit_test(test_versions_and_purposes),
	    cmocka_unit_test(test_bounds_and_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
