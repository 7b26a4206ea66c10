#include "common/io.h"
#include "common/secure.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/noise.h"

#define SECRET_BYTES   32 /* a token or a private key */
#define SECRET_HEX_LEN (2 * SECRET_BYTES)
#define TOKEN_WHAT     "join token file"
#define KEY_WHAT       "key file"
#define REKEY_LABEL    "syncbit rekey"
#define MAC_LABEL      "syncbit frame mac"
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

/* ---- secret files: the token and private keys ---- */

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* 64 lowercase hex digits and at most one trailing newline. */
static int secret_parse(const char *s, size_t n, uint8_t out[SECRET_BYTES])
{
	if (n == SECRET_HEX_LEN + 1 && s[SECRET_HEX_LEN] == '\n')
		n--;
	if (n != SECRET_HEX_LEN)
		return SB_ECONFIG;
	for (size_t i = 0; i < SECRET_BYTES; i++) {
		int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			sodium_memzero(out, SECRET_BYTES);
			return SB_ECONFIG;
		}
		out[i] = (uint8_t)(hi << 4 | lo);
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

/* Read the secret in the file at path; what names the file in *detail. */
static int secret_load(const char *what, const char *path, uint8_t out[SECRET_BYTES], char **detail)
{
	char text[SECRET_HEX_LEN + 2];
	struct stat st;
	size_t n;
	int rc;

	*detail = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		*detail = xasprintf("%s %s: %s", what, path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		*detail = xasprintf("%s %s: %s", what, path, strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		*detail = xasprintf("%s %s is not a regular file", what, path);
	} else if (st.st_mode & 077) {
		rc = SB_EDENIED;
		*detail = xasprintf("%s %s is accessible by group or others "
				    "(mode %04o); chmod 600 it",
				    what, path, (unsigned)(st.st_mode & 07777));
	} else if ((rc = read_small(fd, text, sizeof text, &n)) != 0) {
		*detail = xasprintf("%s %s: %s", what, path, sb_strerror(rc));
	} else if ((rc = secret_parse(text, n, out)) != 0) {
		*detail = xasprintf("%s %s: expected 64 lowercase hex digits", what, path);
	}
	sodium_memzero(text, sizeof text);
	close(fd);
	return rc;
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

/* Write a fresh secret to a private temp file, then link it into place: a
 * file another process created meanwhile is never replaced (link fails
 * with EEXIST and that one is loaded). Filesystems without hard links
 * fall back to rename. */
static int secret_create(const char *what, const char *path, uint8_t out[SECRET_BYTES],
			 char **detail)
{
	char text[SECRET_HEX_LEN + 1];
	char *tmp = xasprintf("%s.tmp-%08x", path, (unsigned)randombytes_random());
	int rc = 0;

	randombytes_buf(out, SECRET_BYTES);
	for (size_t i = 0; i < SECRET_BYTES; i++) {
		text[2 * i] = "0123456789abcdef"[out[i] >> 4];
		text[2 * i + 1] = "0123456789abcdef"[out[i] & 15];
	}
	text[SECRET_HEX_LEN] = '\n';

	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = -errno;
	} else {
		if (fchmod(fd, 0600) != 0 || (rc = io_write_full(fd, text, sizeof text)) != 0 ||
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
		sodium_memzero(out, SECRET_BYTES);
		return secret_load(what, path, out, detail);
	}
	if (rc == 0)
		rc = fsync_parent(path);
	if (rc < 0) {
		sodium_memzero(out, SECRET_BYTES);
		*detail = xasprintf("cannot create %s %s: %s", what, path, sb_strerror(rc));
	}
	return rc;
}

/* Load, or create when missing; *created says which. */
static int secret_init(const char *what, const char *path, uint8_t out[SECRET_BYTES], int *created,
		       char **detail)
{
	sodium_ready();
	*created = 0;
	int rc = secret_load(what, path, out, detail);
	if (rc != -ENOENT)
		return rc;
	free(*detail);
	*detail = NULL;
	*created = 1;
	return secret_create(what, path, out, detail);
}

int secure_token_load(const char *path, struct secure_token *tok, char **detail)
{
	return secret_load(TOKEN_WHAT, path, tok->key, detail);
}

int secure_token_init(const char *path, struct secure_token *tok, char **detail)
{
	int created;
	return secret_init(TOKEN_WHAT, path, tok->key, &created, detail);
}

/* ---- static keys ---- */

int secure_keypair_init(const char *path, struct secure_keypair *kp, int *created, char **detail)
{
	int c;
	int rc = secret_init(KEY_WHAT, path, kp->priv, &c, detail);
	if (created)
		*created = c;
	if (rc == 0)
		noise_public_key(kp->priv, kp->pub);
	return rc;
}

void secure_keypair_new(struct secure_keypair *kp)
{
	noise_keypair(kp->priv, kp->pub);
}

void secure_keypair_close(struct secure_keypair *kp)
{
	sodium_memzero(kp->priv, sizeof kp->priv);
}

void secure_key_fingerprint(const uint8_t pub[SECURE_KEY_BYTES], char out[SECURE_FINGERPRINT_LEN])
{
	sodium_bin2hex(out, SECURE_FINGERPRINT_LEN, pub, SECURE_FINGERPRINT_BYTES);
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

/* ---- sessions ---- */

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

/* A plain session's MAC key of a direction, from its handshake key. */
static void mac_key(struct secure_dir *d, const uint8_t k[SECURE_KEY_BYTES])
{
	crypto_generichash(d->key, sizeof d->key, (const uint8_t *)MAC_LABEL, strlen(MAC_LABEL), k,
			   SECURE_KEY_BYTES);
}

void secure_session_init(struct secure_session *s, enum secure_cipher c,
			 const uint8_t tx[SECURE_KEY_BYTES], const uint8_t rx[SECURE_KEY_BYTES])
{
	sodium_ready();
	memset(s, 0, sizeof *s);
	s->cipher = c;
	if (c == SECURE_PLAIN) {
		mac_key(&s->tx, tx);
		mac_key(&s->rx, rx);
		return;
	}
	memcpy(s->tx.key, tx, SECURE_KEY_BYTES);
	memcpy(s->rx.key, rx, SECURE_KEY_BYTES);
	dir_setup(c, &s->rx, 0);
	dir_setup(c, &s->tx, 1);
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

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

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

/* ---- frame MACs ---- */

static int frame_tag(struct secure_dir *d, const uint8_t *hdr, size_t hdr_len, const uint8_t *body,
		     size_t len, uint8_t tag[SECURE_MAC_BYTES])
{
	crypto_generichash_state st;
	uint8_t seq[8];

	if (d->seq == UINT64_MAX)
		return SB_EPROTO;
	for (int i = 0; i < 8; i++)
		seq[i] = (uint8_t)(d->seq >> (8 * i));
	d->seq++;
	crypto_generichash_init(&st, d->key, sizeof d->key, SECURE_MAC_BYTES);
	crypto_generichash_update(&st, seq, sizeof seq);
	crypto_generichash_update(&st, hdr, hdr_len);
	crypto_generichash_update(&st, body, len);
	crypto_generichash_final(&st, tag, SECURE_MAC_BYTES);
	return 0;
}

int secure_mac(struct secure_session *s, const uint8_t *hdr, size_t hdr_len, const uint8_t *body,
	       size_t len, uint8_t tag[SECURE_MAC_BYTES])
{
	if (s->cipher != SECURE_PLAIN)
		return SB_EPROTO;
	return frame_tag(&s->tx, hdr, hdr_len, body, len, tag);
}

int secure_mac_check(struct secure_session *s, const uint8_t *hdr, size_t hdr_len,
		     const uint8_t *body, size_t len, const uint8_t tag[SECURE_MAC_BYTES])
{
	uint8_t want[SECURE_MAC_BYTES];

	if (s->cipher != SECURE_PLAIN)
		return SB_EPROTO;
	int rc = frame_tag(&s->rx, hdr, hdr_len, body, len, want);
	if (rc == 0 && crypto_verify_16(want, tag) != 0)
		rc = SB_EAUTH;
	return rc;
}

void secure_session_close(struct secure_session *s)
{
	EVP_CIPHER_CTX_free(s->rx.aes); /* clears the expanded keys */
	EVP_CIPHER_CTX_free(s->tx.aes);
	sodium_memzero(s, sizeof *s);
}
