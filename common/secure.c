#include "common/secure.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "proto/wire.pb-c.h"

#define TOKEN_HEX_LEN  (2 * SECURE_TOKEN_BYTES)
#define AUTH_CONTEXT   "syncbit-auth-v1"
#define MAC_LABEL_RESP "syncbit resp"
#define MAC_LABEL_INIT "syncbit init"
#define REKEY_LABEL    "syncbit rekey"
#define NONCE_MAX      crypto_aead_xchacha20poly1305_ietf_NPUBBYTES

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void sodium_setup(void)
{
	if (sodium_init() < 0)
		fatal("libsodium failed to initialise");
}

static void sodium_ready(void)
{
	pthread_once(&sodium_once, sodium_setup);
}

/* ---- token ---- */

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* 64 lowercase hex digits and at most one trailing newline. */
static int token_parse(const char *s, size_t n, struct secure_token *tok)
{
	if (n == TOKEN_HEX_LEN + 1 && s[TOKEN_HEX_LEN] == '\n')
		n--;
	if (n != TOKEN_HEX_LEN)
		return SB_ECONFIG;
	for (size_t i = 0; i < SECURE_TOKEN_BYTES; i++) {
		int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			sodium_memzero(tok, sizeof *tok);
			return SB_ECONFIG;
		}
		tok->key[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static int read_small(int fd, char *out, size_t cap, size_t *n)
{
	*n = 0;
	while (*n < cap) {
		ssize_t r = read(fd, out + *n, cap - *n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		*n += (size_t)r;
	}
	return 0;
}

int secure_token_load(const char *path, struct secure_token *tok, char **detail)
{
	char text[TOKEN_HEX_LEN + 2];
	struct stat st;
	size_t n;
	int rc;

	*detail = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		*detail = xasprintf("join token file %s: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		*detail = xasprintf("join token file %s: %s", path, strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		*detail = xasprintf("join token file %s is not a regular file", path);
	} else if (st.st_mode & 077) {
		rc = SB_EDENIED;
		*detail = xasprintf("join token file %s is accessible by group or others "
				    "(mode %04o); chmod 600 it",
				    path, (unsigned)(st.st_mode & 07777));
	} else if ((rc = read_small(fd, text, sizeof text, &n)) != 0) {
		*detail = xasprintf("join token file %s: %s", path, sb_strerror(rc));
	} else if ((rc = token_parse(text, n, tok)) != 0) {
		*detail = xasprintf("join token file %s: expected 64 lowercase hex digits", path);
	}
	sodium_memzero(text, sizeof text);
	close(fd);
	return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int fsync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir =
	    slash ? xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : xstrdup(".");
	int rc = 0, fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	free(dir);
	return rc;
}

/* Write a fresh token to a private temp file, then link it into place: a
 * token another process created meanwhile is never replaced (link fails
 * with EEXIST and that token is loaded). Filesystems without hard links
 * fall back to rename. */
static int token_create(const char *path, struct secure_token *tok, char **detail)
{
	char text[TOKEN_HEX_LEN + 1];
	char *tmp = xasprintf("%s.tmp-%08x", path, (unsigned)randombytes_random());
	int rc = 0;

	randombytes_buf(tok->key, sizeof tok->key);
	for (size_t i = 0; i < SECURE_TOKEN_BYTES; i++) {
		text[2 * i] = "0123456789abcdef"[tok->key[i] >> 4];
		text[2 * i + 1] = "0123456789abcdef"[tok->key[i] & 15];
	}
	text[TOKEN_HEX_LEN] = '\n';

	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = -errno;
	} else {
		if (fchmod(fd, 0600) != 0 || (rc = write_all(fd, text, sizeof text)) != 0 ||
		    fsync(fd) != 0)
			rc = rc ? rc : -errno;
		if (close(fd) != 0 && rc == 0)
			rc = -errno;
	}
	sodium_memzero(text, sizeof text);
	if (rc == 0 && link(tmp, path) != 0) {
		if (errno == EEXIST)
			rc = 1;
		else if ((errno == EPERM || errno == EOPNOTSUPP) && rename(tmp, path) == 0)
			rc = 0;
		else
			rc = -errno;
	}
	if (fd >= 0)
		unlink(tmp);
	free(tmp);
	if (rc == 1) {
		sodium_memzero(tok, sizeof *tok);
		return secure_token_load(path, tok, detail);
	}
	if (rc == 0)
		rc = fsync_parent(path);
	if (rc < 0) {
		sodium_memzero(tok, sizeof *tok);
		*detail = xasprintf("cannot create join token file %s: %s", path, sb_strerror(rc));
	}
	return rc;
}

int secure_token_init(const char *path, struct secure_token *tok, char **detail)
{
	sodium_ready();
	int rc = secure_token_load(path, tok, detail);
	if (rc != -ENOENT)
		return rc;
	free(*detail);
	*detail = NULL;
	return token_create(path, tok, detail);
}

/* ---- handshake ---- */

static int hs_fail(struct secure_handshake *hs, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int hs_fail(struct secure_handshake *hs, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(hs->error, sizeof hs->error, fmt, ap);
	va_end(ap);
	hs->state = SECURE_HS_FAILED;
	return rc;
}

int secure_node_valid(const char *s)
{
	size_t n = strlen(s);
	if (n > SECURE_NODE_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return 0;
	return 1;
}

int secure_handshake_init(struct secure_handshake *hs, const struct secure_token *tok,
			  int initiator, const char *node, int encrypt)
{
	sodium_ready();
	memset(hs, 0, sizeof *hs);
	if (!node)
		node = "";
	if (!secure_node_valid(node))
		return -EINVAL;
	snprintf(hs->node, sizeof hs->node, "%s", node);
	hs->initiator = initiator;
	hs->encrypt = encrypt != 0;
	hs->aes_gcm = crypto_aead_aes256gcm_is_available();
	crypto_generichash(hs->auth_key, sizeof hs->auth_key, (const uint8_t *)AUTH_CONTEXT,
			   strlen(AUTH_CONTEXT), tok->key, sizeof tok->key);
	crypto_kx_keypair(hs->pk, hs->sk);
	randombytes_buf(hs->nonce, sizeof hs->nonce);
	return 0;
}

/* Pack a Hello with our own fields (mac may be NULL) onto out. */
static void hello_pack(const Syncbit__Hello *h, struct buf *out)
{
	size_t n = syncbit__hello__get_packed_size(h);
	buf_reserve(out, n);
	if (syncbit__hello__pack(h, out->ptr + out->len) != n)
		fatal("hello pack size mismatch");
	out->len += n;
}

static void hello_own(const struct secure_handshake *hs, Syncbit__Hello *h)
{
	syncbit__hello__init(h);
	h->version = SECURE_VERSION;
	h->ephemeral_pk.data = (uint8_t *)hs->pk;
	h->ephemeral_pk.len = sizeof hs->pk;
	h->nonce.data = (uint8_t *)hs->nonce;
	h->nonce.len = sizeof hs->nonce;
	h->node = (char *)hs->node;
	h->encrypt = hs->encrypt;
	h->aes_gcm = hs->aes_gcm;
}

/* Unpack and check a peer's Hello; on success the peer's fields are copied
 * into hs and *out must be freed by the caller. */
static int hello_parse(struct secure_handshake *hs, const uint8_t *in, size_t len, int want_mac,
		       Syncbit__Hello **out)
{
	*out = NULL;
	if (len > SECURE_HELLO_MAX)
		return hs_fail(hs, SB_ETOOBIG, "hello of %zu bytes exceeds %d", len,
			       SECURE_HELLO_MAX);
	Syncbit__Hello *h = syncbit__hello__unpack(NULL, len, in);
	if (!h)
		return hs_fail(hs, SB_EPROTO, "malformed hello");
	int rc = 0;
	if (h->version != SECURE_VERSION)
		rc = hs_fail(hs, SB_EPROTO,
			     "protocol version %u not supported (this side speaks %d)", h->version,
			     SECURE_VERSION);
	else if (h->ephemeral_pk.len != SECURE_PK_BYTES || h->nonce.len != SECURE_NONCE_BYTES)
		rc = hs_fail(hs, SB_EPROTO, "hello key or nonce has the wrong length");
	else if (h->mac.len != (want_mac ? SECURE_MAC_BYTES : 0))
		rc = hs_fail(hs, SB_EPROTO, "hello mac has the wrong length");
	else if (!secure_node_valid(h->node))
		rc = hs_fail(hs, SB_EPROTO, "hello node name is too long or not printable");
	else if (sodium_memcmp(h->ephemeral_pk.data, hs->pk, SECURE_PK_BYTES) == 0)
		rc = hs_fail(hs, SB_EPROTO, "peer sent our own key back");
	if (rc) {
		syncbit__hello__free_unpacked(h, NULL);
		return rc;
	}
	memcpy(hs->peer_pk, h->ephemeral_pk.data, SECURE_PK_BYTES);
	snprintf(hs->peer_node, sizeof hs->peer_node, "%s", h->node);
	hs->peer_encrypt = h->encrypt != 0;
	hs->peer_aes_gcm = h->aes_gcm != 0;
	*out = h;
	return 0;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* T over the initiator's Hello as sent and the responder's without mac. */
static void transcript(struct secure_handshake *hs, const struct buf *b0)
{
	crypto_generichash_state st;
	uint8_t len[4];

	crypto_generichash_init(&st, NULL, 0, sizeof hs->transcript);
	put_be32(len, (uint32_t)hs->first_len);
	crypto_generichash_update(&st, len, sizeof len);
	crypto_generichash_update(&st, hs->first, hs->first_len);
	put_be32(len, (uint32_t)b0->len);
	crypto_generichash_update(&st, len, sizeof len);
	crypto_generichash_update(&st, b0->ptr, b0->len);
	crypto_generichash_final(&st, hs->transcript, sizeof hs->transcript);
}

static void hs_mac(const struct secure_handshake *hs, const char *label,
		   uint8_t out[SECURE_MAC_BYTES])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, hs->auth_key, sizeof hs->auth_key, SECURE_MAC_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
	crypto_generichash_update(&st, hs->transcript, sizeof hs->transcript);
	crypto_generichash_final(&st, out, SECURE_MAC_BYTES);
}

int secure_handshake_hello(struct secure_handshake *hs, struct buf *out)
{
	Syncbit__Hello h;
	struct buf a = BUF_INIT;

	if (!hs->initiator || hs->state != SECURE_HS_START)
		return hs_fail(hs, SB_EPROTO, "hello out of order");
	hello_own(hs, &h);
	hello_pack(&h, &a);
	if (a.len > sizeof hs->first)
		fatal("own hello of %zu bytes exceeds the limit", a.len);
	memcpy(hs->first, a.ptr, a.len);
	hs->first_len = a.len;
	buf_append(out, a.ptr, a.len);
	buf_close(&a);
	hs->state = SECURE_HS_HELLO;
	return 0;
}

int secure_handshake_respond(struct secure_handshake *hs, const uint8_t *in, size_t len,
			     struct buf *out)
{
	Syncbit__Hello *peer, own;
	struct buf b0 = BUF_INIT;
	uint8_t mac[SECURE_MAC_BYTES];

	if (hs->initiator || hs->state != SECURE_HS_START)
		return hs_fail(hs, SB_EPROTO, "hello out of order");
	int rc = hello_parse(hs, in, len, 0, &peer);
	if (rc)
		return rc;
	syncbit__hello__free_unpacked(peer, NULL);
	memcpy(hs->first, in, len);
	hs->first_len = len;

	hello_own(hs, &own);
	hello_pack(&own, &b0);
	transcript(hs, &b0);
	hs_mac(hs, MAC_LABEL_RESP, mac);
	own.mac.data = mac;
	own.mac.len = sizeof mac;
	hello_pack(&own, out);
	buf_close(&b0);
	hs->state = SECURE_HS_WAIT_AUTH;
	return 0;
}

/* AES-256-GCM runs through OpenSSL's EVP (AES-NI, PCLMUL and, where the
 * CPU has them, VAES: 2-3x libsodium's speed on large records). */
static void aes_key(struct secure_dir *d, int encrypt)
{
	if (!d->aes && !(d->aes = EVP_CIPHER_CTX_new()))
		fatal("out of memory creating a cipher context");
	int ok = encrypt ? EVP_EncryptInit_ex(d->aes, EVP_aes_256_gcm(), NULL, d->key, NULL)
			 : EVP_DecryptInit_ex(d->aes, EVP_aes_256_gcm(), NULL, d->key, NULL);
	if (ok != 1)
		fatal("AES-256-GCM key setup failed");
}

static void dir_setup(enum secure_cipher c, struct secure_dir *d, int encrypt)
{
	d->seq = 0;
	if (c == SECURE_AES256GCM)
		aes_key(d, encrypt);
}

/* Session keys: the crypto_kx pair of the ephemeral keys, each hashed with
 * K over (key || T), so the traffic needs both the DH secret and the token. */
static int session_setup(struct secure_handshake *hs, struct secure_session *s)
{
	uint8_t rx[crypto_kx_SESSIONKEYBYTES], tx[crypto_kx_SESSIONKEYBYTES];
	int rc = hs->initiator ? crypto_kx_client_session_keys(rx, tx, hs->pk, hs->sk, hs->peer_pk)
			       : crypto_kx_server_session_keys(rx, tx, hs->pk, hs->sk, hs->peer_pk);
	if (rc != 0)
		return hs_fail(hs, SB_EPROTO, "peer's ephemeral key is unusable");

	memset(s, 0, sizeof *s);
	for (int i = 0; i < 2; i++) {
		crypto_generichash_state st;
		struct secure_dir *d = i ? &s->tx : &s->rx;
		crypto_generichash_init(&st, hs->auth_key, sizeof hs->auth_key, sizeof d->key);
		crypto_generichash_update(&st, i ? tx : rx, sizeof rx);
		crypto_generichash_update(&st, hs->transcript, sizeof hs->transcript);
		crypto_generichash_final(&st, d->key, sizeof d->key);
	}
	sodium_memzero(rx, sizeof rx);
	sodium_memzero(tx, sizeof tx);
	if (!hs->encrypt && !hs->peer_encrypt)
		s->cipher = SECURE_PLAIN;
	else if (hs->aes_gcm && hs->peer_aes_gcm)
		s->cipher = SECURE_AES256GCM;
	else
		s->cipher = SECURE_XCHACHA20POLY1305;
	dir_setup(s->cipher, &s->rx, 0);
	dir_setup(s->cipher, &s->tx, 1);
	hs->state = SECURE_HS_DONE;
	return 0;
}

int secure_handshake_finish(struct secure_handshake *hs, const uint8_t *in, size_t len,
			    struct buf *out, struct secure_session *s)
{
	Syncbit__Hello *peer, b0msg;
	Syncbit__Auth auth;
	struct buf b0 = BUF_INIT;
	uint8_t want[SECURE_MAC_BYTES], mac[SECURE_MAC_BYTES];

	if (!hs->initiator || hs->state != SECURE_HS_HELLO)
		return hs_fail(hs, SB_EPROTO, "hello out of order");
	int rc = hello_parse(hs, in, len, 1, &peer);
	if (rc)
		return rc;
	/* B0: the responder's fields as it packed them, without the mac. */
	b0msg = *peer;
	b0msg.base.n_unknown_fields = 0;
	b0msg.base.unknown_fields = NULL;
	b0msg.mac.data = NULL;
	b0msg.mac.len = 0;
	hello_pack(&b0msg, &b0);
	transcript(hs, &b0);
	buf_close(&b0);
	hs_mac(hs, MAC_LABEL_RESP, want);
	rc = crypto_verify_32(want, peer->mac.data);
	syncbit__hello__free_unpacked(peer, NULL);
	if (rc != 0)
		return hs_fail(hs, SB_EAUTH, "peer does not hold this cluster's join token");

	if ((rc = session_setup(hs, s)) != 0)
		return rc;
	hs_mac(hs, MAC_LABEL_INIT, mac);
	syncbit__auth__init(&auth);
	auth.mac.data = mac;
	auth.mac.len = sizeof mac;
	size_t n = syncbit__auth__get_packed_size(&auth);
	buf_reserve(out, n);
	out->len += syncbit__auth__pack(&auth, out->ptr + out->len);
	return 0;
}

int secure_handshake_verify(struct secure_handshake *hs, const uint8_t *in, size_t len,
			    struct secure_session *s)
{
	uint8_t want[SECURE_MAC_BYTES];

	if (hs->initiator || hs->state != SECURE_HS_WAIT_AUTH)
		return hs_fail(hs, SB_EPROTO, "auth out of order");
	if (len > SECURE_HELLO_MAX)
		return hs_fail(hs, SB_ETOOBIG, "auth of %zu bytes exceeds %d", len,
			       SECURE_HELLO_MAX);
	Syncbit__Auth *a = syncbit__auth__unpack(NULL, len, in);
	if (!a)
		return hs_fail(hs, SB_EPROTO, "malformed auth");
	if (a->mac.len != SECURE_MAC_BYTES) {
		syncbit__auth__free_unpacked(a, NULL);
		return hs_fail(hs, SB_EPROTO, "auth mac has the wrong length");
	}
	hs_mac(hs, MAC_LABEL_INIT, want);
	int rc = crypto_verify_32(want, a->mac.data);
	syncbit__auth__free_unpacked(a, NULL);
	if (rc != 0)
		return hs_fail(hs, SB_EAUTH, "peer does not hold this cluster's join token");
	return session_setup(hs, s);
}

void secure_handshake_close(struct secure_handshake *hs)
{
	sodium_memzero(hs->auth_key, sizeof hs->auth_key);
	sodium_memzero(hs->sk, sizeof hs->sk);
	sodium_memzero(hs->transcript, sizeof hs->transcript);
}

const char *secure_cipher_name(enum secure_cipher c)
{
	switch (c) {
	case SECURE_AES256GCM:
		return "aes256gcm";
	case SECURE_XCHACHA20POLY1305:
		return "xchacha20poly1305";
	case SECURE_PLAIN:
		break;
	}
	return "none";
}

/* ---- records ---- */

/* The nonce of the direction's next record; replaces the key every
 * SECURE_REKEY_RECORDS records. */
static int dir_next(enum secure_cipher c, struct secure_dir *d, uint8_t nonce[NONCE_MAX],
		    int encrypt)
{
	if (d->seq == UINT64_MAX)
		return SB_EPROTO;
	if (d->seq != 0 && d->seq % SECURE_REKEY_RECORDS == 0) {
		uint8_t next[SECURE_KEY_BYTES];
		crypto_generichash(next, sizeof next, (const uint8_t *)REKEY_LABEL,
				   strlen(REKEY_LABEL), d->key, sizeof d->key);
		memcpy(d->key, next, sizeof next);
		sodium_memzero(next, sizeof next);
		if (c == SECURE_AES256GCM)
			aes_key(d, encrypt);
	}
	memset(nonce, 0, NONCE_MAX);
	for (int i = 0; i < 8; i++)
		nonce[i] = (uint8_t)(d->seq >> (8 * i));
	d->seq++;
	return 0;
}

int secure_seal(struct secure_session *s, const uint8_t *in, size_t len, uint8_t *out)
{
	uint8_t nonce[NONCE_MAX];
	unsigned long long clen;

	if (len > SECURE_RECORD_MAX || s->cipher == SECURE_PLAIN)
		return SB_EPROTO;
	int rc = dir_next(s->cipher, &s->tx, nonce, 1);
	if (rc)
		return rc;
	put_be32(out, (uint32_t)(len + SECURE_TAG_BYTES));
	if (s->cipher == SECURE_AES256GCM) {
		EVP_CIPHER_CTX *x = s->tx.aes;
		int n1 = 0, n2 = 0, n3 = 0;
		uint8_t *ct = out + SECURE_RECORD_HEADER;
		if (EVP_EncryptInit_ex(x, NULL, NULL, NULL, nonce) != 1 ||
		    EVP_EncryptUpdate(x, NULL, &n1, out, SECURE_RECORD_HEADER) != 1 ||
		    EVP_EncryptUpdate(x, ct, &n2, in, (int)len) != 1 ||
		    EVP_EncryptFinal_ex(x, ct + n2, &n3) != 1 ||
		    EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, SECURE_TAG_BYTES, ct + len) != 1)
			fatal("AES-256-GCM encryption failed");
	} else
		crypto_aead_xchacha20poly1305_ietf_encrypt(out + SECURE_RECORD_HEADER, &clen, in,
							   len, out, SECURE_RECORD_HEADER, NULL,
							   nonce, s->tx.key);
	return 0;
}

int secure_record_len(const uint8_t hdr[SECURE_RECORD_HEADER], size_t *ct_len)
{
	uint32_t n =
	    (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	*ct_len = n;
	if (n > SECURE_RECORD_MAX + SECURE_TAG_BYTES)
		return SB_ETOOBIG;
	if (n < SECURE_TAG_BYTES)
		return SB_EPROTO;
	return 0;
}

int secure_open(struct secure_session *s, const uint8_t hdr[SECURE_RECORD_HEADER],
		const uint8_t *ct, size_t ct_len, uint8_t *out)
{
	uint8_t nonce[NONCE_MAX];
	unsigned long long mlen;
	size_t want;
	int rc;

	if (s->cipher == SECURE_PLAIN)
		return SB_EPROTO;
	if ((rc = secure_record_len(hdr, &want)) != 0)
		return rc;
	if (want != ct_len)
		return SB_EPROTO;
	if ((rc = dir_next(s->cipher, &s->rx, nonce, 0)) != 0)
		return rc;
	if (s->cipher == SECURE_AES256GCM) {
		EVP_CIPHER_CTX *x = s->rx.aes;
		int n1 = 0, n2 = 0, n3 = 0, mlen_i = (int)(ct_len - SECURE_TAG_BYTES);
		rc = EVP_DecryptInit_ex(x, NULL, NULL, NULL, nonce) != 1 ||
		     EVP_DecryptUpdate(x, NULL, &n1, hdr, SECURE_RECORD_HEADER) != 1 ||
		     EVP_DecryptUpdate(x, out, &n2, ct, mlen_i) != 1 ||
		     EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, SECURE_TAG_BYTES,
					 (void *)(ct + mlen_i)) != 1 ||
		     EVP_DecryptFinal_ex(x, out + n2, &n3) != 1;
		(void)mlen;
	} else
		rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
		    out, &mlen, NULL, ct, ct_len, hdr, SECURE_RECORD_HEADER, nonce, s->rx.key);
	return rc == 0 ? 0 : SB_EAUTH;
}

void secure_session_close(struct secure_session *s)
{
	EVP_CIPHER_CTX_free(s->rx.aes); /* clears the expanded keys */
	EVP_CIPHER_CTX_free(s->tx.aes);
	sodium_memzero(s, sizeof *s);
}
