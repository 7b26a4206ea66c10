#include "common/net/handshake.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "proto/wire.pb-c.h"

#define PATTERN	     NOISE_XXPSK3
#define PSK_LABEL    "syncbit/2 noise psk"
#define TAG_LABEL    "syncbit/2 hello tag"
#define PROLOGUE_MAX 64
#define REFUSED_MAX  160 /* a peer's refusal, as quoted in our error */

static int hs_fail(struct handshake *hs, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int hs_fail(struct handshake *hs, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(hs->error, sizeof hs->error, fmt, ap);
	va_end(ap);
	hs->state = HANDSHAKE_FAILED;
	return rc;
}

const char *handshake_purpose_name(enum handshake_purpose p)
{
	switch (p) {
	case HANDSHAKE_CONTROL:
		return "control";
	case HANDSHAKE_PEER:
		return "peer";
	case HANDSHAKE_ADMIN:
		return "admin";
	}
	return "unknown";
}

static int purpose_valid(uint32_t p)
{
	return p == HANDSHAKE_CONTROL || p == HANDSHAKE_PEER || p == HANDSHAKE_ADMIN;
}

/* "Syncbit/2 control": the protocol version and the purpose, hashed into
 * every message. */
static size_t prologue(enum handshake_purpose p, char out[PROLOGUE_MAX])
{
	return (size_t)snprintf(out, PROLOGUE_MAX, "Syncbit/%d %s", HANDSHAKE_VERSION,
				handshake_purpose_name(p));
}

/* A key for one use, derived from the join token with a label. */
static void derive(const struct secure_token *tok, const char *label, uint8_t out[32])
{
	crypto_generichash(out, 32, (const uint8_t *)label, strlen(label), tok->key,
			   sizeof tok->key);
}

int handshake_init(struct handshake *hs, const struct handshake_config *cfg, int initiator)
{
	const char *node = cfg->node ? cfg->node : "";

	memset(hs, 0, sizeof *hs);
	if (!cfg->token || !cfg->key || !secure_node_valid(node) ||
	    (initiator && !purpose_valid(cfg->purpose)))
		return -EINVAL;
	hs->initiator = initiator != 0;
	hs->purpose = initiator ? cfg->purpose : 0;
	hs->purposes = cfg->purposes;
	hs->encrypt = cfg->encrypt != 0;
	hs->aes_gcm = cfg->aes_gcm != 0;
	snprintf(hs->node, sizeof hs->node, "%s", node);
	hs->key = *cfg->key;
	hs->replay = cfg->replay;
	hs->verify = cfg->verify;
	hs->verify_arg = cfg->verify_arg;
	derive(cfg->token, PSK_LABEL, hs->psk);
	derive(cfg->token, TAG_LABEL, hs->tag_key);
	return 0;
}

static int noise_start(struct handshake *hs)
{
	char pro[PROLOGUE_MAX];
	size_t n = prologue(hs->purpose, pro);
	return noise_handshake_init(&hs->noise, PATTERN, hs->initiator, pro, n, hs->key.priv,
				    hs->key.pub, hs->psk);
}

/* The tag of message 1: keyed by the token over the prologue and the
 * initiator's ephemeral key. */
static void hello_tag(const struct handshake *hs, const uint8_t e_pub[NOISE_DH_LEN],
		      uint8_t tag[HANDSHAKE_TAG_BYTES])
{
	crypto_generichash_state st;
	char pro[PROLOGUE_MAX];
	size_t n = prologue(hs->purpose, pro);

	crypto_generichash_init(&st, hs->tag_key, sizeof hs->tag_key, HANDSHAKE_TAG_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)pro, n);
	crypto_generichash_update(&st, e_pub, NOISE_DH_LEN);
	crypto_generichash_final(&st, tag, HANDSHAKE_TAG_BYTES);
}

/* ---- the Hello envelope ---- */

static void pack_msg(const ProtobufCMessage *m, struct buf *out)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	buf_reserve(out, n);
	out->len += protobuf_c_message_pack(m, out->ptr + out->len);
}

static void hello_pack(uint32_t purpose, const struct buf *noise, const char *refused, int code,
		       struct buf *out)
{
	Syncbit__Hello h = SYNCBIT__HELLO__INIT;
	h.version = HANDSHAKE_VERSION;
	h.purpose = (Syncbit__Purpose)purpose;
	if (noise) {
		h.noise.data = noise->ptr;
		h.noise.len = noise->len;
	}
	h.refused = (char *)(refused ? refused : "");
	h.refused_code = code;
	pack_msg(&h.base, out);
}

/* Fail with rc and put a refusal for the peer in out (it carries the
 * version so a version 1 peer prints what it lacks). */
static int refuse(struct handshake *hs, int rc, struct buf *out, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int refuse(struct handshake *hs, int rc, struct buf *out, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(hs->error, sizeof hs->error, fmt, ap);
	va_end(ap);
	hs->state = HANDSHAKE_FAILED;
	out->len = 0;
	hello_pack(0, NULL, hs->error, rc, out);
	return rc;
}

/* The peer's Hello (the caller frees it), *rc 0; NULL, with *rc the error
 * (hs failed), when it is too long, malformed or of another version. */
static Syncbit__Hello *hello_parse(struct handshake *hs, const uint8_t *in, size_t len, int *rc)
{
	if (len > HANDSHAKE_HELLO_MAX) {
		*rc = hs_fail(hs, SB_ETOOBIG, "hello of %zu bytes exceeds %d", len,
			      HANDSHAKE_HELLO_MAX);
		return NULL;
	}
	Syncbit__Hello *h = syncbit__hello__unpack(NULL, len, in);
	if (!h) {
		*rc = hs_fail(hs, SB_EPROTO, "malformed hello");
		return NULL;
	}
	if (h->version != HANDSHAKE_VERSION) {
		*rc = hs_fail(hs, SB_EPROTO, "peer speaks protocol v%u; this side speaks v%d",
			      h->version, HANDSHAKE_VERSION);
		syncbit__hello__free_unpacked(h, NULL);
		return NULL;
	}
	*rc = 0;
	return h;
}

/* The refusal a responder sent, quoted printable and short. */
static int refused_by_peer(struct handshake *hs, const Syncbit__Hello *h)
{
	char why[REFUSED_MAX];
	size_t n = 0;
	for (const char *p = h->refused; *p && n < sizeof why - 1; p++)
		why[n++] = *p >= 0x20 && *p <= 0x7e ? *p : '?';
	why[n] = '\0';
	int rc = h->refused_code;
	if (rc != SB_EAUTH && rc != SB_EDENIED)
		rc = SB_EPROTO;
	return hs_fail(hs, rc, "refused by the peer: %s", why);
}

/* ---- payloads ---- */

static void payload_pack(const struct handshake *hs, const uint8_t *tag, struct buf *out)
{
	Syncbit__HandshakePayload p = SYNCBIT__HANDSHAKE_PAYLOAD__INIT;
	if (tag) {
		p.tag.data = (uint8_t *)tag;
		p.tag.len = HANDSHAKE_TAG_BYTES;
	} else {
		p.node = (char *)hs->node;
		p.encrypt = hs->encrypt;
		p.aes_gcm = hs->aes_gcm;
	}
	pack_msg(&p.base, out);
}

/* Message 2 or 3's payload: the sender's node name and wishes. */
static int payload_peer(struct handshake *hs, const struct buf *in)
{
	Syncbit__HandshakePayload *p = syncbit__handshake_payload__unpack(NULL, in->len, in->ptr);
	if (!p)
		return hs_fail(hs, SB_EPROTO, "malformed handshake payload");
	int rc = 0;
	if (!secure_node_valid(p->node))
		rc = hs_fail(hs, SB_EPROTO, "peer's node name is too long or not printable");
	snprintf(hs->peer_node, sizeof hs->peer_node, "%s", rc ? "" : p->node);
	hs->peer_encrypt = p->encrypt != 0;
	hs->peer_aes_gcm = p->aes_gcm != 0;
	syncbit__handshake_payload__free_unpacked(p, NULL);
	if (rc == 0)
		memcpy(hs->peer_key, noise_handshake_remote_static(&hs->noise), SECURE_KEY_BYTES);
	return rc;
}

static const char *verify_peer(struct handshake *hs)
{
	return hs->verify ? hs->verify(hs->verify_arg, hs->peer_node, hs->peer_key) : NULL;
}

/* Split() into the session: the initiator sends with c1, the responder
 * with c2. Encryption is on when either side wants it; AES-256-GCM when
 * both CPUs have it. */
static int session_setup(struct handshake *hs, struct secure_session *s)
{
	struct noise_cipher c1, c2;
	enum secure_cipher c;

	if (noise_handshake_split(&hs->noise, &c1, &c2) != 0)
		return hs_fail(hs, SB_EPROTO, "handshake not finished");
	if (!hs->encrypt && !hs->peer_encrypt)
		c = SECURE_PLAIN;
	else if (hs->aes_gcm && hs->peer_aes_gcm)
		c = SECURE_AES256GCM;
	else
		c = SECURE_XCHACHA20POLY1305;
	if (hs->initiator)
		secure_session_init(s, c, c1.k, c2.k);
	else
		secure_session_init(s, c, c2.k, c1.k);
	sodium_memzero(&c1, sizeof c1);
	sodium_memzero(&c2, sizeof c2);
	return 0;
}

/* ---- the messages ---- */

int handshake_start(struct handshake *hs, struct buf *out)
{
	uint8_t e[NOISE_DH_LEN], e_pub[NOISE_DH_LEN], tag[HANDSHAKE_TAG_BYTES];
	struct buf pay = BUF_INIT, msg = BUF_INIT;

	if (!hs->initiator || hs->state != HANDSHAKE_START)
		return hs_fail(hs, SB_EPROTO, "hello out of order");
	if (noise_start(hs) != 0)
		return hs_fail(hs, SB_EPROTO, "cannot start the handshake");
	noise_keypair(e, e_pub);
	noise_handshake_set_ephemeral(&hs->noise, e);
	sodium_memzero(e, sizeof e);
	hello_tag(hs, e_pub, tag);
	payload_pack(hs, tag, &pay);
	int rc = noise_handshake_write(&hs->noise, pay.ptr, pay.len, &msg);
	if (rc == 0)
		hello_pack(hs->purpose, &msg, NULL, 0, out);
	buf_close(&pay);
	buf_close(&msg);
	if (rc)
		return hs_fail(hs, rc, "cannot write the first message: %s", sb_strerror(rc));
	hs->state = HANDSHAKE_SENT;
	return 0;
}

/* 1 when a first message with this ephemeral key was taken before;
 * remembers it otherwise. */
static int replayed(struct handshake_replay *r, const uint8_t e_pub[NOISE_DH_LEN])
{
	uint64_t fp;
	memcpy(&fp, e_pub, sizeof fp);
	for (size_t i = 0; i < r->count; i++)
		if (r->seen[i] == fp)
			return 1;
	r->seen[r->next] = fp;
	r->next = (r->next + 1) % HANDSHAKE_REPLAY_MAX;
	if (r->count < HANDSHAKE_REPLAY_MAX)
		r->count++;
	return 0;
}

/* Message 1's payload: the tag, checked before anything costs a DH. */
static int check_first(struct handshake *hs, const struct buf *pay, struct buf *out)
{
	uint8_t want[HANDSHAKE_TAG_BYTES];
	Syncbit__HandshakePayload *p = syncbit__handshake_payload__unpack(NULL, pay->len, pay->ptr);
	if (!p)
		return hs_fail(hs, SB_EPROTO, "malformed handshake payload");
	hello_tag(hs, hs->noise.re, want);
	int ok = p->tag.len == HANDSHAKE_TAG_BYTES && crypto_verify_32(want, p->tag.data) == 0;
	syncbit__handshake_payload__free_unpacked(p, NULL);
	if (!ok) {
		refuse(hs, SB_EAUTH, out, "the join tokens differ");
		return hs_fail(hs, SB_EAUTH, "peer does not hold this cluster's join token");
	}
	if (hs->replay && replayed(hs->replay, hs->noise.re))
		return refuse(hs, SB_EAUTH, out, "a first message seen before (a replay)");
	return 0;
}

int handshake_respond(struct handshake *hs, const uint8_t *in, size_t len, struct buf *out)
{
	Syncbit__Hello *h;
	struct buf pay = BUF_INIT, msg = BUF_INIT;

	if (hs->initiator || hs->state != HANDSHAKE_START)
		return hs_fail(hs, SB_EPROTO, "hello out of order");
	int rc;
	h = hello_parse(hs, in, len, &rc);
	if (rc == SB_EPROTO && strstr(hs->error, "peer speaks")) {
		/* Ours says what the peer speaks; the refusal what we do. */
		char ours[HANDSHAKE_ERROR_MAX];
		snprintf(ours, sizeof ours, "%s", hs->error);
		refuse(hs, rc, out, "the responder speaks protocol v%d", HANDSHAKE_VERSION);
		snprintf(hs->error, sizeof hs->error, "%s", ours);
		return rc;
	}
	if (!h)
		return rc;
	if (!purpose_valid(h->purpose) || !(hs->purposes & HANDSHAKE_PURPOSE_BIT(h->purpose))) {
		rc = refuse(hs, SB_EPROTO, out, "this port does not take %s connections",
			    handshake_purpose_name((enum handshake_purpose)h->purpose));
		goto done;
	}
	hs->purpose = (enum handshake_purpose)h->purpose;
	if (noise_start(hs) != 0) {
		rc = hs_fail(hs, SB_EPROTO, "cannot start the handshake");
		goto done;
	}
	rc = noise_handshake_read(&hs->noise, h->noise.data, h->noise.len, &pay);
	if (rc == SB_EAUTH) { /* its prologue is not ours: another purpose or version */
		rc = refuse(hs, rc, out,
			    "the first message does not authenticate for %s connections",
			    handshake_purpose_name(hs->purpose));
		goto done;
	} else if (rc) {
		rc = hs_fail(hs, rc == SB_ETOOBIG ? rc : SB_EPROTO, "malformed first message");
		goto done;
	}
	if ((rc = check_first(hs, &pay, out)) != 0)
		goto done;
	pay.len = 0;
	payload_pack(hs, NULL, &pay);
	if ((rc = noise_handshake_write(&hs->noise, pay.ptr, pay.len, &msg)) != 0) {
		rc = hs_fail(hs, rc, "peer's ephemeral key is unusable");
		goto done;
	}
	hello_pack(0, &msg, NULL, 0, out);
	hs->state = HANDSHAKE_REPLIED;
done:
	syncbit__hello__free_unpacked(h, NULL);
	buf_close(&pay);
	buf_close(&msg);
	return rc;
}

int handshake_finish(struct handshake *hs, const uint8_t *in, size_t len, struct buf *out,
		     struct secure_session *s)
{
	Syncbit__Hello *h;
	struct buf pay = BUF_INIT, msg = BUF_INIT;
	const char *why;

	if (!hs->initiator || hs->state != HANDSHAKE_SENT)
		return hs_fail(hs, SB_EPROTO, "hello out of order");
	int rc;
	h = hello_parse(hs, in, len, &rc);
	if (!h)
		return rc;
	if (h->refused[0]) {
		rc = refused_by_peer(hs, h);
	} else if ((rc = noise_handshake_read(&hs->noise, h->noise.data, h->noise.len, &pay)) !=
		   0) {
		rc = hs_fail(hs, rc == SB_EAUTH ? rc : SB_EPROTO, "the responder's message %s",
			     rc == SB_EAUTH ? "does not decrypt" : "is malformed");
	} else if ((rc = payload_peer(hs, &pay)) != 0) {
	} else if ((why = verify_peer(hs)) != NULL) {
		rc = hs_fail(hs, SB_EDENIED, "%s", why);
	} else {
		pay.len = 0;
		payload_pack(hs, NULL, &pay);
		rc = noise_handshake_write(&hs->noise, pay.ptr, pay.len, &msg);
		if (rc)
			rc = hs_fail(hs, rc, "cannot write the last message: %s", sb_strerror(rc));
		else if ((rc = session_setup(hs, s)) == 0)
			hello_pack(0, &msg, NULL, 0, out);
	}
	if (rc == 0)
		hs->state = HANDSHAKE_CONFIRM;
	syncbit__hello__free_unpacked(h, NULL);
	buf_close(&pay);
	buf_close(&msg);
	return rc;
}

int handshake_accept(struct handshake *hs, const uint8_t *in, size_t len, struct secure_session *s)
{
	Syncbit__Hello *h;
	struct buf pay = BUF_INIT;
	const char *why;

	if (hs->initiator || hs->state != HANDSHAKE_REPLIED)
		return hs_fail(hs, SB_EPROTO, "hello out of order");
	int rc;
	h = hello_parse(hs, in, len, &rc);
	if (!h)
		return rc;
	rc = noise_handshake_read(&hs->noise, h->noise.data, h->noise.len, &pay);
	syncbit__hello__free_unpacked(h, NULL);
	if (rc == SB_EAUTH)
		rc = hs_fail(hs, rc, "the initiator's last message does not decrypt");
	else if (rc)
		rc = hs_fail(hs, rc == SB_ETOOBIG ? rc : SB_EPROTO, "malformed last message");
	else if ((rc = payload_peer(hs, &pay)) == 0 && (rc = session_setup(hs, s)) == 0) {
		hs->state = HANDSHAKE_DONE;
		if ((why = verify_peer(hs)) != NULL)
			rc = hs_fail(hs, SB_EDENIED, "%s", why);
	}
	buf_close(&pay);
	return rc;
}

void handshake_close(struct handshake *hs)
{
	noise_handshake_close(&hs->noise);
	secure_keypair_close(&hs->key);
	sodium_memzero(hs->psk, sizeof hs->psk);
	sodium_memzero(hs->tag_key, sizeof hs->tag_key);
}
