#include "cli/admin_call.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "common/net/wire.h"

static void call_ready(struct conn *c, int status)
{
	struct call *k = conn_data(c);
	if (status < 0)
		return; /* on_close says why */
	int rc = conn_send(c, SYNCBIT__MSG_TYPE__MSG_ADMIN, k->body.ptr, k->body.len, NULL, 0, NULL,
			   NULL);
	if (rc < 0)
		conn_close(c, rc);
}

static int call_frame(struct conn *c, uint32_t type, const uint8_t *body, size_t len,
		      uint8_t *payload, size_t plen)
{
	struct call *k = conn_data(c);
	free(payload);
	if (type == SYNCBIT__MSG_TYPE__MSG_ERROR) {
		Syncbit__ErrorMsg *m = syncbit__error_msg__unpack(NULL, len, body);
		free(k->error);
		k->error = xstrdup(m && m->message ? m->message : "refused");
		syncbit__error_msg__free_unpacked(m, NULL);
		return m ? m->code : SB_EPROTO;
	}
	if (type != SYNCBIT__MSG_TYPE__MSG_ADMIN_REPLY || k->reply)
		return SB_EPROTO;
	k->reply = syncbit__admin_reply__unpack(NULL, len, body);
	if (!k->reply)
		return SB_EPROTO;
	conn_close(c, 0);
	return 0;
}

static void call_closed(struct conn *c, int status)
{
	struct call *k = conn_data(c);
	if (!k->reply && !k->error) {
		k->status = status ? status : SB_EPROTO;
		const char *e = conn_error(c);
		k->error = xstrdup(e && e[0] ? e
				   : status  ? sb_strerror(status)
					     : "the scheduler closed the connection");
	} else if (!k->reply) {
		k->status = status ? status : SB_EPROTO;
	}
	uv_close((uv_handle_t *)&k->timer, NULL);
	uv_close((uv_handle_t *)&k->stop, NULL);
}

static void call_timeout(uv_timer_t *t)
{
	conn_close(t->data, -ETIMEDOUT);
}

/* A stop asked for by a signal (status --watch, dataset wait) ends the
 * call without waiting for its timeout. */
static void call_check_stop(uv_timer_t *t)
{
	if (cli_stop_requested())
		conn_close(t->data, SB_ECANCELED);
}

/* Send a with the token and wait up to timeout_ms for the reply: 0 with
 * k->reply, or a negative code with k->error saying why. */
static int call_exchange(struct call *k, const struct secure_token *tok, int encrypt,
			 uint64_t timeout_ms, const Syncbit__Admin *a)
{
	size_t n = syncbit__admin__get_packed_size(a);
	buf_reserve(&k->body, n);
	k->body.len = syncbit__admin__pack(a, k->body.ptr);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct conn_config cc = {.token = tok,
				 .purpose = HANDSHAKE_ADMIN, /* a fresh key: no identity */
				 .node = "cli",
				 .encrypt = encrypt,
				 .body_max = ADMIN_REPLY_MAX,
				 .payload_max = 1};
	static const struct conn_callbacks cbs = {
	    .on_ready = call_ready, .on_frame = call_frame, .on_close = call_closed};
	struct conn *c;
	int rc = conn_dial(&loop, k->addr, &cc, &cbs, k, &c);
	if (rc == 0) {
		uv_timer_init(&loop, &k->timer);
		k->timer.data = c;
		uv_timer_start(&k->timer, call_timeout, timeout_ms, 0);
		uv_timer_init(&loop, &k->stop);
		k->stop.data = c;
		uv_timer_start(&k->stop, call_check_stop, CALL_STOP_CHECK_MS, CALL_STOP_CHECK_MS);
		uv_run(&loop, UV_RUN_DEFAULT);
	} else {
		k->status = rc;
		k->dial_failed = 1;
		k->error = xstrdup("expected HOST:PORT");
	}
	uv_loop_close(&loop);
	if (k->status < 0 || !k->reply)
		return k->status < 0 ? k->status : SB_EPROTO;
	return 0;
}

static int is_standby(const Syncbit__AdminReply *r)
{
	if (r->code == SB_ESTANDBY)
		return 1;
	json_t *j = r->json && r->json[0] ? json_loads(r->json, 0, NULL) : NULL;
	int st = j && json_is_string(json_object_get(j, "role")) &&
		 !strcmp(json_string_value(json_object_get(j, "role")), "standby");
	json_decref(j);
	return st;
}

static void call_reset(struct call *k)
{
	buf_reset(&k->body);
	free(k->error);
	k->error = NULL;
	syncbit__admin_reply__free_unpacked(k->reply, NULL);
	k->reply = NULL;
	k->status = k->dial_failed = 0;
}

/* call_exchange() with the schedulers of --scheduler A,B,C in turn until
 * one that leads answers: a standby's answer is kept only when no leader
 * answers. k->addr names the one whose answer (or failure) is kept. */
static int call_any(struct call *k, const struct secure_token *tok, int encrypt,
		    uint64_t timeout_ms, const Syncbit__Admin *a)
{
	if (!strchr(k->addr, ','))
		return call_exchange(k, tok, encrypt, timeout_ms, a);
	k->list = xstrdup(k->addr);
	size_t n = 0;
	char *addrs[32], *save = NULL;
	for (char *t = strtok_r(k->list, ",", &save); t && n < 32; t = strtok_r(NULL, ",", &save))
		addrs[n++] = t;
	int rc = SB_EPROTO, kept = -1;
	for (size_t i = 0; i < n; i++) {
		call_reset(k);
		k->addr = addrs[i];
		rc = call_exchange(k, tok, encrypt, timeout_ms, a);
		if (rc == SB_EAUTH || (rc == 0 && !is_standby(k->reply)))
			return rc;
		if (rc == 0 && kept < 0 && k->reply->code == 0)
			kept = (int)i; /* a standby's status, if no leader answers */
	}
	if (kept >= 0 && kept != (int)n - 1) {
		call_reset(k);
		k->addr = addrs[kept];
		rc = call_exchange(k, tok, encrypt, timeout_ms, a);
	}
	return rc;
}

/* Why a call failed, as said after "scheduler ADDR: ". */
static const char *call_why(const struct call *k)
{
	return k->status == SB_EAUTH ? "authentication failed (wrong join token?)" : k->error;
}

/* Send a and wait for the reply. 0 with k->reply, or EXIT_FAIL after the
 * error line. */
int admin_call_scheduler(struct call *k, struct config *cfg, const Syncbit__Admin *a)
{
	struct secure_token tok;
	char *detail = NULL;
	uint64_t timeout;
	int enc_off = 0;
	const char *tf = config_get(cfg, "token-file");
	config_get_u64(cfg, "timeout", 1, 86400, &timeout);
	config_get_bool(cfg, "no-encrypt", &enc_off);
	int rc = secure_token_load(tf, &tok, &detail);
	if (rc < 0) {
		if (detail)
			cli_error("%s: %s", k->what, detail);
		else
			cli_error("%s: token file %s: %s", k->what, tf, sb_strerror(rc));
		free(detail);
		return EXIT_FAIL;
	}
	rc = call_any(k, &tok, !enc_off, timeout * 1000, a);
	sodium_memzero(&tok, sizeof tok);
	if (rc < 0) {
		cli_error("%s: scheduler %s: %s", k->what, k->addr, call_why(k));
		return EXIT_FAIL;
	}
	if (k->reply->code < 0) {
		cli_error("%s: %s", k->what,
			  k->reply->message && k->reply->message[0] ? k->reply->message
								    : sb_strerror(k->reply->code));
		return EXIT_FAIL;
	}
	return 0;
}

void admin_call_close(struct call *k)
{
	free(k->list);
	buf_close(&k->body);
	free(k->error);
	syncbit__admin_reply__free_unpacked(k->reply, NULL);
}

int cli_admin_status(struct config *cfg, const char *name, uint64_t timeout_ms, json_t **doc,
		     char **error, int *permanent)
{
	struct call k = {.what = "status", .addr = config_get(cfg, "scheduler")};
	Syncbit__Admin a = SYNCBIT__ADMIN__INIT;
	struct secure_token tok;
	const char *tf = config_get(cfg, "token-file");
	char *detail = NULL;
	int enc_off = 0;
	*doc = NULL;
	*error = NULL;
	*permanent = 1;
	config_get_bool(cfg, "no-encrypt", &enc_off);
	int rc = secure_token_load(tf, &tok, &detail);
	if (rc < 0) {
		*error = detail ? detail : xasprintf("token file %s: %s", tf, sb_strerror(rc));
		return rc;
	}
	a.op = SYNCBIT__ADMIN_OP__ADMIN_STATUS;
	a.name = (char *)name;
	rc = call_any(&k, &tok, !enc_off, timeout_ms, &a);
	sodium_memzero(&tok, sizeof tok);
	if (rc < 0) {
		/* A refused handshake or an address that does not parse stays so;
		 * a scheduler down or restarting may answer the next time. */
		*permanent = rc == SB_EAUTH || k.dial_failed;
		*error = xasprintf("scheduler %s: %s", k.addr, call_why(&k));
	} else if (k.reply->code < 0) {
		rc = k.reply->code;
		*error = xstrdup(k.reply->message && k.reply->message[0] ? k.reply->message
									 : sb_strerror(rc));
	} else if (!(*doc = json_loads(k.reply->json ? k.reply->json : "", 0, NULL))) {
		rc = SB_EPROTO;
		*error = xasprintf("scheduler %s: malformed reply", k.addr);
	}
	admin_call_close(&k);
	return rc;
}
