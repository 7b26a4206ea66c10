/* libFuzzer target for what every connection reads from the network: the
 * frame reader (fed in chunks the input chooses, payloads sometimes filled
 * straight into its room, frames with or without a MAC), the handshake
 * messages (a Hello to a responder, then as its message 3; a Hello to an
 * initiator) and sealed records. Whatever the bytes: no crash, leak or
 * out-of-bounds access, no length over its limit accepted, no forged MAC,
 * handshake message or record accepted. The first input byte picks the
 * reader, the rest is what it reads.
 *
 * Built with -DFUZZ_SEED_MAIN instead, this file is a small program that
 * writes a seed corpus into the directory argv[1]. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/net/frame.h"
#include "common/net/handshake.h"
#include "common/net/secure.h"

enum { MODE_FRAMES, MODE_RESPONDER, MODE_INITIATOR, MODE_RECORDS, MODES };

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_frame: %s\n", what);
		abort();
	}
}

static const struct secure_token fuzz_token = {{1, 2, 3, 4, 5, 6, 7, 8, 9}};
/* Fixed keys, so seeds stay valid across runs. */
static const struct secure_keypair *fuzz_key(int which)
{
	static struct secure_keypair k[2];
	static int ready;
	if (!ready) {
		for (int i = 0; i < 2; i++) {
			memset(k[i].priv, 0x31 + i, sizeof k[i].priv);
			noise_public_key(k[i].priv, k[i].pub);
		}
		ready = 1;
	}
	return &k[which];
}

static void fuzz_config(struct handshake_config *c, int initiator)
{
	memset(c, 0, sizeof *c);
	c->token = &fuzz_token;
	c->key = fuzz_key(initiator);
	c->node = initiator ? "initiator" : "responder";
	c->encrypt = 1;
	c->aes_gcm = 1;
	c->purpose = HANDSHAKE_PEER;
	c->purposes = HANDSHAKE_PURPOSE_BIT(HANDSHAKE_PEER);
}

static struct secure_session pair_i, pair_r, plain_i, plain_r;

/* Session pairs as a handshake leaves them, made once per process. */
static void sessions(void)
{
	static int ready;
	uint8_t k1[SECURE_KEY_BYTES], k2[SECURE_KEY_BYTES];

	if (ready)
		return;
	memset(k1, 0x51, sizeof k1);
	memset(k2, 0x52, sizeof k2);
	secure_session_init(&pair_i, SECURE_XCHACHA20POLY1305, k1, k2);
	secure_session_init(&pair_r, SECURE_XCHACHA20POLY1305, k2, k1);
	secure_session_init(&plain_i, SECURE_PLAIN, k1, k2);
	secure_session_init(&plain_r, SECURE_PLAIN, k2, k1);
	ready = 1;
}

/* The reader's check in MAC mode: the receiving plain session's. */
static unsigned macs_ok;

static int mac_check(void *arg, const uint8_t *hdr, const uint8_t *body, size_t len,
		     const uint8_t *tag)
{
	struct secure_session *s = arg;
	int rc = secure_mac_check(s, hdr, FRAME_HEADER_LEN, body, len, tag);
	check(rc == 0 || rc == SB_EAUTH, "MAC check error");
	macs_ok += rc == 0;
	return rc;
}

/* Read every byte, so the sanitizer sees any that is out of bounds. */
static unsigned touch(const uint8_t *p, size_t n)
{
	unsigned sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += p[i];
	return sum;
}

/* Per-type limits, as a protocol's dispatch table gives them. */
static const struct frame_handler fuzz_table[] = {
    {1, 0, 0, NULL},
    {2, 64, 0, NULL},
    {3, 16, 4096, NULL},
    {4, 1u << 20, 1u << 20, NULL},
};

static void check_frame(const struct frame_reader *r, const struct frame *f)
{
	uint32_t body_max, payload_max;
	check(frame_reader_limits(r, f->type, &body_max, &payload_max) == 0, "type passed");
	check(f->body_len <= body_max && f->payload_len <= payload_max, "limit passed");
	check((f->payload == NULL) == (f->payload_len == 0), "payload pointer");
	check(f->body_len == 0 || f->body != NULL, "body pointer");
	touch(f->body, f->body_len);
	touch(f->payload, f->payload_len);
	free(f->payload);
}

/* Header: body limit / 16 (odd: the per-type limits of fuzz_table apply
 * too), payload limit / 64 (odd: frames carry a MAC, none of which may
 * verify), chunk size (odd: fill payloads through the reader's room); then
 * the stream. */
static void fuzz_frames(const uint8_t *d, size_t n)
{
	struct frame_reader r;
	struct frame f;
	struct secure_session rx;
	unsigned delivered = 0;

	if (n < 3)
		return;
	macs_ok = 0;
	frame_reader_init(&r, d[0] * 16u, d[1] * 64u);
	if (d[0] & 1) {
		r.table = fuzz_table;
		r.table_len = sizeof fuzz_table / sizeof fuzz_table[0];
	}
	if (d[1] & 1) {
		sessions();
		rx = plain_r;
		r.tag_len = SECURE_MAC_BYTES;
		r.check = mac_check;
		r.check_arg = &rx;
	}
	size_t chunk = d[2] ? d[2] : n;
	int direct = d[2] & 1;
	d += 3;
	n -= 3;
	while (n > 0) {
		uint8_t *room;
		size_t want = frame_reader_payload_room(&r, &room), k = n < chunk ? n : chunk, used;
		if (direct && want) {
			k = k < want ? k : want;
			memcpy(room, d, k);
			if (frame_reader_payload_filled(&r, k, &f)) {
				check_frame(&r, &f);
				check(!r.tag_len || ++delivered <= macs_ok,
				      "frame without its MAC");
			}
			d += k;
			n -= k;
			continue;
		}
		int rc = frame_reader_feed(&r, d, k, &used, &f);
		check(used <= k, "used more than given");
		d += used;
		n -= used;
		if (rc < 0) {
			uint32_t body_max, payload_max;
			int known = frame_reader_limits(&r, r.h.type, &body_max, &payload_max);
			check(rc == SB_ETOOBIG || (r.tag_len && rc == SB_EAUTH) ||
				  (r.table && rc == SB_EPROTO),
			      "unexpected error");
			check(rc == SB_EAUTH || (rc == SB_EPROTO && known == SB_EPROTO) ||
				  (rc == SB_ETOOBIG &&
				   (r.h.body_len > body_max || r.h.payload_len > payload_max)),
			      "refused within the limits");
			/* nothing of a frame refused at its header was allocated */
			check(rc == SB_EAUTH || (!r.payload && !frame_reader_partial(&r)),
			      "allocated before refusing");
			break;
		}
		if (rc == 1) {
			check_frame(&r, &f);
			check(!r.tag_len || ++delivered <= macs_ok, "frame without its MAC");
		} else
			check(used == k, "stopped early without a frame");
	}
	frame_reader_close(&r);
}

static void check_error(int rc, const struct handshake *hs)
{
	check(rc == SB_EPROTO || rc == SB_ETOOBIG || rc == SB_EAUTH || rc == SB_EDENIED,
	      "unexpected error");
	check(hs->state == HANDSHAKE_FAILED && hs->error[0], "failure not recorded");
}

/* A Hello to a responder; then the same bytes as its message 3. */
static void fuzz_responder(const uint8_t *d, size_t n)
{
	struct handshake hs;
	struct handshake_config cfg;
	struct secure_session s;
	struct buf out = BUF_INIT;

	fuzz_config(&cfg, 0);
	check(handshake_init(&hs, &cfg, 0) == 0, "init");
	int rc = handshake_respond(&hs, d, n, &out);
	if (rc) {
		check_error(rc, &hs);
		check(out.len <= HANDSHAKE_HELLO_MAX, "refusal length");
		check(out.len == 0 || hs.noise.has_e == 0, "DH before the token was proven");
	} else {
		check(out.len > 0 && out.len <= HANDSHAKE_HELLO_MAX, "reply length");
		check(hs.state == HANDSHAKE_REPLIED, "state after the reply");
		rc = handshake_accept(&hs, d, n, &s);
		check(rc != 0 && rc != SB_EDENIED, "forged message 3 accepted");
		check_error(rc, &hs);
	}
	handshake_close(&hs);
	buf_close(&out);
}

/* A responder's Hello to an initiator. */
static void fuzz_initiator(const uint8_t *d, size_t n)
{
	struct handshake hs;
	struct handshake_config cfg;
	struct secure_session s;
	struct buf hello = BUF_INIT, out = BUF_INIT;

	fuzz_config(&cfg, 1);
	check(handshake_init(&hs, &cfg, 1) == 0, "init");
	check(handshake_start(&hs, &hello) == 0, "hello");
	int rc = handshake_finish(&hs, d, n, &out, &s);
	check(rc != 0, "forged responder accepted");
	check_error(rc, &hs);
	check(out.len == 0, "message 3 sent after an error");
	handshake_close(&hs);
	buf_close(&hello);
	buf_close(&out);
}

/* The input as records from the network (none may open), then as a
 * plaintext sealed and opened again, then with a byte flipped. */
static void fuzz_records(const uint8_t *d, size_t n)
{
	struct secure_session tx, rx;
	static uint8_t out[SECURE_RECORD_MAX + SECURE_RECORD_OVERHEAD];
	size_t off = 0, ct_len;

	sessions();
	tx = pair_i;
	rx = pair_r;
	while (n - off >= SECURE_RECORD_HEADER) {
		int rc = secure_record_len(d + off, &ct_len);
		if (rc) {
			check(rc == SB_ETOOBIG || rc == SB_EPROTO, "record length error");
			check(ct_len > SECURE_RECORD_MAX + SECURE_TAG_BYTES ||
				  ct_len < SECURE_TAG_BYTES,
			      "length refused within the limits");
			break;
		}
		if (n - off - SECURE_RECORD_HEADER < ct_len)
			break;
		rc = secure_open(&rx, d + off, d + off + SECURE_RECORD_HEADER, ct_len, out);
		check(rc == SB_EAUTH, "forged record accepted");
		off += SECURE_RECORD_HEADER + ct_len;
	}

	static uint8_t rec[SECURE_RECORD_MAX + SECURE_RECORD_OVERHEAD];
	size_t len = n < SECURE_RECORD_MAX ? n : SECURE_RECORD_MAX;
	tx = pair_i;
	rx = pair_r;
	check(secure_seal(&tx, d, len, rec) == 0, "seal");
	check(secure_record_len(rec, &ct_len) == 0 && ct_len == len + SECURE_TAG_BYTES,
	      "sealed length");
	check(secure_open(&rx, rec, rec + SECURE_RECORD_HEADER, ct_len, out) == 0, "open");
	check(len == 0 || memcmp(out, d, len) == 0, "round trip");
	if (n > 0) {
		rx = pair_r;
		rec[SECURE_RECORD_HEADER + d[0] % ct_len] ^= 1;
		check(secure_open(&rx, rec, rec + SECURE_RECORD_HEADER, ct_len, out) == SB_EAUTH,
		      "altered record accepted");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t *d = data + 1;
	size_t n = size - 1;
	switch (data[0] % MODES) {
	case MODE_FRAMES:
		fuzz_frames(d, n);
		break;
	case MODE_RESPONDER:
		fuzz_responder(d, n);
		break;
	case MODE_INITIATOR:
		fuzz_initiator(d, n);
		break;
	default:
		fuzz_records(d, n);
		break;
	}
	return 0;
}

#ifdef FUZZ_SEED_MAIN

static int seed_write(const char *dir, const char *name, uint8_t mode, const struct buf *b)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *fp = fopen(path, "wb");
	int ok = fp && fputc(mode, fp) != EOF && fwrite(b->ptr, 1, b->len, fp) == b->len;
	if (fp && fclose(fp) != 0)
		ok = 0;
	if (!ok)
		perror(path);
	return ok ? 0 : -1;
}

static void frame_add(struct buf *b, uint32_t type, size_t body_len, size_t plen)
{
	struct frame_header h = {(uint32_t)body_len, type, (uint32_t)plen};
	uint8_t hdr[FRAME_HEADER_LEN];
	frame_header_encode(&h, hdr);
	buf_append(b, hdr, sizeof hdr);
	for (size_t i = 0; i < body_len + plen; i++) {
		uint8_t v = (uint8_t)(i * 7);
		buf_append(b, &v, 1);
	}
}

int main(int argc, char **argv)
{
	struct buf b = BUF_INIT;
	struct handshake i, r;
	struct handshake_config ci, cr;
	int rc = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	const uint8_t limits[3] = {64, 64, 0}; /* 1 KiB bodies, 4 KiB payloads */
	for (int chunk = 0; chunk < 2; chunk++) {
		b.len = 0;
		buf_append(&b, limits, 2);
		uint8_t c = chunk ? 7 : 0;
		buf_append(&b, &c, 1);
		frame_add(&b, 1, 100, 0);
		frame_add(&b, 13, 40, 3000);
		frame_add(&b, 2, 0, 0);
		frame_add(&b, 11, 0, 10);
		rc |= seed_write(argv[1], chunk ? "frames-chunked" : "frames", MODE_FRAMES, &b);
	}
	/* frames with MACs, one of them genuine */
	b.len = 0;
	const uint8_t mac_limits[3] = {64, 65, 0};
	buf_append(&b, mac_limits, 3);
	sessions();
	struct secure_session tx = plain_i;
	size_t at = b.len;
	frame_add(&b, 21, 30, 0);
	uint8_t tag[SECURE_MAC_BYTES];
	secure_mac(&tx, b.ptr + at, FRAME_HEADER_LEN, b.ptr + at + FRAME_HEADER_LEN, 30, tag);
	buf_append(&b, tag, sizeof tag);
	frame_add(&b, 13, 20, 100);
	rc |= seed_write(argv[1], "frames-mac", MODE_FRAMES, &b);

	b.len = 0;
	fuzz_config(&ci, 1);
	fuzz_config(&cr, 0);
	handshake_init(&i, &ci, 1);
	handshake_start(&i, &b);
	rc |= seed_write(argv[1], "hello", MODE_RESPONDER, &b);
	handshake_init(&r, &cr, 0);
	struct buf reply = BUF_INIT;
	handshake_respond(&r, b.ptr, b.len, &reply);
	rc |= seed_write(argv[1], "reply", MODE_INITIATOR, &reply);
	handshake_close(&i);
	handshake_close(&r);
	buf_close(&reply);

	b.len = 0;
	buf_append(&b, "\x00\x00\x00\x20", 4);
	for (int k = 0; k < 32; k++)
		buf_append(&b, "r", 1);
	rc |= seed_write(argv[1], "record", MODE_RECORDS, &b);
	buf_close(&b);
	return rc ? 1 : 0;
}

#endif
