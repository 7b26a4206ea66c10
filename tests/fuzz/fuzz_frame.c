/* libFuzzer target for what every connection reads from the network: the
 * frame reader (fed in chunks the input chooses, payloads sometimes filled
 * straight into its room), the handshake messages (a Hello to a responder,
 * a Hello to an initiator, an Auth) and sealed records. Whatever the bytes:
 * no crash, leak or out-of-bounds access, no length over its limit
 * accepted, no forged mac or record accepted. The first input byte picks
 * the reader, the rest is what it reads.
 *
 * Built with -DFUZZ_SEED_MAIN instead, this file is a small program that
 * writes a seed corpus into the directory argv[1]. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/frame.h"
#include "common/secure.h"

enum { MODE_FRAMES, MODE_RESPONDER, MODE_INITIATOR, MODE_RECORDS, MODES };

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_frame: %s\n", what);
		abort();
	}
}

static const struct secure_token fuzz_token = {{1, 2, 3, 4, 5, 6, 7, 8, 9}};

/* Read every byte, so the sanitizer sees any that is out of bounds. */
static unsigned touch(const uint8_t *p, size_t n)
{
	unsigned sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += p[i];
	return sum;
}

static void check_frame(const struct frame_reader *r, const struct frame *f)
{
	check(f->body_len <= r->body_max && f->payload_len <= r->payload_max, "limit passed");
	check((f->payload == NULL) == (f->payload_len == 0), "payload pointer");
	check(f->body_len == 0 || f->body != NULL, "body pointer");
	touch(f->body, f->body_len);
	touch(f->payload, f->payload_len);
	free(f->payload);
}

/* Header: body limit / 16, payload limit / 64, chunk size (odd: fill
 * payloads through the reader's room); then the stream. */
static void fuzz_frames(const uint8_t *d, size_t n)
{
	struct frame_reader r;
	struct frame f;

	if (n < 3)
		return;
	frame_reader_init(&r, d[0] * 16u, d[1] * 64u);
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
			if (frame_reader_payload_filled(&r, k, &f))
				check_frame(&r, &f);
			d += k;
			n -= k;
			continue;
		}
		int rc = frame_reader_feed(&r, d, k, &used, &f);
		check(used <= k, "used more than given");
		d += used;
		n -= used;
		if (rc < 0) {
			check(rc == SB_ETOOBIG, "unexpected error");
			check(r.h.body_len > r.body_max || r.h.payload_len > r.payload_max,
			      "refused within the limits");
			break;
		}
		if (rc == 1)
			check_frame(&r, &f);
		else
			check(used == k, "stopped early without a frame");
	}
	frame_reader_close(&r);
}

static void check_error(int rc, const struct secure_handshake *hs)
{
	check(rc == SB_EPROTO || rc == SB_ETOOBIG || rc == SB_EAUTH, "unexpected error");
	check(hs->state == SECURE_HS_FAILED && hs->error[0], "failure not recorded");
}

/* A Hello to a responder; then the same bytes as its Auth. */
static void fuzz_responder(const uint8_t *d, size_t n)
{
	struct secure_handshake hs;
	struct secure_session s;
	struct buf out = BUF_INIT;

	check(secure_handshake_init(&hs, &fuzz_token, 0, "responder", 1) == 0, "init");
	int rc = secure_handshake_respond(&hs, d, n, &out);
	if (rc) {
		check_error(rc, &hs);
		check(out.len == 0, "output after an error");
	} else {
		check(out.len > 0 && out.len <= SECURE_HELLO_MAX, "reply length");
		check(hs.state == SECURE_HS_WAIT_AUTH, "state after the reply");
		check(secure_node_valid(hs.peer_node), "peer node accepted");
		rc = secure_handshake_verify(&hs, d, n, &s);
		check(rc != 0, "forged auth accepted");
		check_error(rc, &hs);
	}
	secure_handshake_close(&hs);
	buf_close(&out);
}

/* A responder's Hello to an initiator. */
static void fuzz_initiator(const uint8_t *d, size_t n)
{
	struct secure_handshake hs;
	struct secure_session s;
	struct buf hello = BUF_INIT, out = BUF_INIT;

	check(secure_handshake_init(&hs, &fuzz_token, 1, "initiator", 0) == 0, "init");
	check(secure_handshake_hello(&hs, &hello) == 0, "hello");
	int rc = secure_handshake_finish(&hs, d, n, &out, &s);
	check(rc != 0, "forged responder accepted");
	check_error(rc, &hs);
	check(out.len == 0, "auth sent after an error");
	secure_handshake_close(&hs);
	buf_close(&hello);
	buf_close(&out);
}

static struct secure_session pair_i, pair_r;

/* A session pair from a real handshake, made once per process. */
static void sessions(void)
{
	static int ready;
	struct secure_handshake i, r;
	struct buf a = BUF_INIT, b = BUF_INIT, auth = BUF_INIT;

	if (ready)
		return;
	check(secure_handshake_init(&i, &fuzz_token, 1, "i", 1) == 0 &&
		  secure_handshake_init(&r, &fuzz_token, 0, "r", 1) == 0 &&
		  secure_handshake_hello(&i, &a) == 0 &&
		  secure_handshake_respond(&r, a.ptr, a.len, &b) == 0 &&
		  secure_handshake_finish(&i, b.ptr, b.len, &auth, &pair_i) == 0 &&
		  secure_handshake_verify(&r, auth.ptr, auth.len, &pair_r) == 0,
	      "handshake");
	secure_handshake_close(&i);
	secure_handshake_close(&r);
	buf_close(&a);
	buf_close(&b);
	buf_close(&auth);
	ready = 1;
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
	struct secure_handshake i, r;
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

	b.len = 0;
	secure_handshake_init(&i, &fuzz_token, 1, "seed-initiator", 1);
	secure_handshake_hello(&i, &b);
	rc |= seed_write(argv[1], "hello", MODE_RESPONDER, &b);
	secure_handshake_init(&r, &fuzz_token, 0, "seed-responder", 0);
	struct buf reply = BUF_INIT;
	secure_handshake_respond(&r, b.ptr, b.len, &reply);
	rc |= seed_write(argv[1], "reply", MODE_INITIATOR, &reply);
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
