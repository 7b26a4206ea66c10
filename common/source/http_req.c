#include "common/source/http_req.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "common/progress.h"

#define RANGE_SPEC_MAX 48

/* Lists. */

void http_req_push(struct http_req_list *l, struct http_req *r)
{
	r->on = l;
	r->next = NULL;
	r->prev = l->tail;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
}

void http_req_unlink(struct http_req *r)
{
	struct http_req_list *l = r->on;
	if (!l)
		return;
	if (r->prev)
		r->prev->next = r->next;
	else
		l->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		l->tail = r->prev;
	r->prev = r->next = NULL;
	r->on = NULL;
}

/* Requests. */

void http_req_init(struct http_req *r, struct http_client *c)
{
	r->c = c;
	http_resp_reset(&r->resp);
}

void http_req_drop_easy(struct http_req *r)
{
	if (!r->easy)
		return;
	http_multi_remove(r->c->multi, r->easy);
	curl_easy_cleanup(r->easy);
	r->easy = NULL;
}

void http_req_close(struct http_req *r)
{
	http_req_unlink(r);
	http_req_drop_easy(r);
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;
	free(r->detail);
	r->detail = NULL;
}

static void set_detail(struct http_req *r, const char *fmt, va_list ap)
{
	struct buf b = BUF_INIT;
	r->c->ops->describe(r, &b);
	buf_vprintf(&b, fmt, ap);
	free(r->detail);
	r->detail = buf_steal(&b);
}

/* Deferred delivery and the stall watch. */

static void on_wake(uv_timer_t *t);

/* Stalls are timed here rather than by CURLOPT_LOW_SPEED_*, whose speed is
 * averaged over several seconds: after a burst, a dead connection would
 * look alive for up to ~5 s longer than the stall time. A transfer paused
 * by back-pressure is idle on purpose. */
static int watched(const struct http_client *c, const struct http_req *r)
{
	return c->stall_ms && r->state == HTTP_REQ_RUNNING && r->easy && !r->paused;
}

static void wake_arm(struct http_client *c)
{
	if (c->closing)
		return;
	uint64_t now = uv_now(c->loop), delay = UINT64_MAX;
	if (c->done.head) {
		delay = 0;
	} else {
		for (struct http_req *r = c->active.head; r; r = r->next) {
			uint64_t at;
			if (r->state == HTTP_REQ_WAITING)
				at = r->due;
			else if (watched(c, r))
				at = r->last_io + c->stall_ms;
			else
				continue;
			uint64_t d = at > now ? at - now : 0;
			if (d < delay)
				delay = d;
		}
	}
	if (delay == UINT64_MAX)
		uv_timer_stop(&c->wake);
	else
		uv_timer_start(&c->wake, on_wake, delay, 0);
}

static void on_wake(uv_timer_t *t)
{
	struct http_client *c = t->data;
	uint64_t now = uv_now(c->loop);
	struct http_req *r, *next;
	for (r = c->active.head; r; r = next) {
		next = r->next;
		if (r->state == HTTP_REQ_WAITING && r->due <= now) {
			http_req_start(r);
		} else if (watched(c, r) && now - r->last_io >= c->stall_ms) {
			http_req_drop_easy(r);
			http_req_retry(r, SB_ESTALL, "no data for %u s", c->stall_seconds);
		}
	}
	/* A callback may free the owner: c lives until the timer's close
	 * callback, the owner's other state does not, so stop here then. */
	while ((r = c->done.head) && !c->closing) {
		http_req_unlink(r);
		c->ops->deliver(r);
	}
	wake_arm(c);
}

void http_req_finish(struct http_req *r, int status)
{
	struct http_client *c = r->c;
	r->status = status;
	if (status < 0 && status != SB_ECANCELED && c->counters)
		__atomic_add_fetch(&c->counters->errors, 1, __ATOMIC_RELAXED);
	if (c->ops->finishing && c->ops->finishing(r))
		return;
	http_req_drop_easy(r);
	http_req_unlink(r);
	r->state = HTTP_REQ_DONE;
	http_req_push(&c->done, r);
	wake_arm(c);
}

void http_req_fail(struct http_req *r, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_detail(r, fmt, ap);
	va_end(ap);
	http_req_finish(r, code);
}

int http_req_refuse(struct http_req *r, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_detail(r, fmt, ap);
	va_end(ap);
	r->verdict = code;
	return -1;
}

void http_req_retry(struct http_req *r, int code, const char *fmt, ...)
{
	struct http_client *c = r->c;
	struct buf what = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&what, fmt, ap);
	va_end(ap);
	/* A long transfer on a flaky link may fail now and then; only failures
	 * in a row without real progress should use up the retries. */
	if (r->progress_reset && r->count >= r->progress_reset)
		r->failures = 0;
	r->failures++;
	if (r->once) {
		http_req_fail(r, code, "%s", buf_cstr(&what));
	} else if (r->failures > (unsigned)c->retries) {
		http_req_fail(r, code, "%s (gave up after %u %s)", buf_cstr(&what), r->failures,
			      progress_noun(r->failures, "attempt", "attempts"));
	} else {
		uint64_t delay = http_backoff_ms(r->failures, r->resp.retry_after, &c->rng);
		struct buf about = BUF_INIT;
		if (c->counters)
			__atomic_add_fetch(&c->counters->retries, 1, __ATOMIC_RELAXED);
		c->ops->describe(r, &about);
		log_info("%s%s; retry %u of %d in %" PRIu64 " ms", buf_cstr(&about),
			 buf_cstr(&what), r->failures, c->retries, delay);
		buf_close(&about);
		http_req_drop_easy(r);
		r->state = HTTP_REQ_WAITING;
		r->due = uv_now(c->loop) + delay;
		wake_arm(c);
	}
	buf_close(&what);
}

void http_req_cancel(struct http_req *r)
{
	free(r->detail);
	r->detail = NULL;
	if (r->state == HTTP_REQ_DONE)
		r->status = SB_ECANCELED;
	else
		http_req_finish(r, SB_ECANCELED);
}

/* Failed attempts. */

void http_req_status_failed(struct http_req *r, const char *why, int retry)
{
	long st = r->resp.status;
	if (retry || http_status_retryable(st))
		http_req_retry(r, http_status_error(st), "HTTP %ld %s", st, why);
	else
		http_req_fail(r, http_status_error(st), "HTTP %ld %s", st, why);
}

void http_req_transport_failed(struct http_req *r, CURLcode rc)
{
	const char *why = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
	int code = rc == CURLE_OPERATION_TIMEDOUT ? SB_ESTALL : SB_EHTTP;
	if (http_curl_retryable(rc))
		http_req_retry(r, code, "%s", why);
	else
		http_req_fail(r, code, "%s", why);
}

int http_req_attempt_failed(struct http_req *r, CURLcode rc)
{
	long st = r->resp.status;
	if (r->verdict < 0) {
		http_req_finish(r, r->verdict);
		return 1;
	}
	if ((rc == CURLE_OK || rc == CURLE_WRITE_ERROR) && (st < 200 || st >= 300)) {
		if (r->c->ops->status_failed)
			r->c->ops->status_failed(r);
		else
			http_req_status_failed(r, http_resp_reason(&r->resp), 0);
		return 1;
	}
	if (rc != CURLE_OK) {
		http_req_transport_failed(r, rc);
		return 1;
	}
	return 0;
}

/* Attempts. */

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	struct http_req *r = arg;
	size_t n = size * nmemb;
	r->last_io = uv_now(r->c->loop);
	http_resp_header(&r->resp, data, n);
	if (r->c->ops->header)
		r->c->ops->header(r, data, n);
	return n;
}

static void on_done(CURL *easy, CURLcode rc, void *arg)
{
	struct http_req *r = arg;
	curl_easy_cleanup(easy);
	r->easy = NULL;
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;
	r->c->ops->done(r, rc);
}

void http_req_start(struct http_req *r)
{
	struct http_client *c = r->c;
	if (c->ops->hold && c->ops->hold(r))
		return;
	if (r->on != &c->active) {
		http_req_unlink(r);
		http_req_push(&c->active, r);
	}
	CURL *e = curl_easy_init();
	if (!e) {
		http_req_fail(r, -ENOMEM, "cannot create a transfer");
		return;
	}
	http_easy_defaults(e, c->connect_seconds, c->stall_seconds);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)r);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)r);
	r->errbuf[0] = '\0';
	http_resp_reset(&r->resp);
	r->checked = r->discard = r->verdict = r->paused = 0;
	r->discarded = 0;
	r->count = 0;
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;
	c->ops->setup(r, e);
	if (r->hdrs)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	r->easy = e;
	r->state = HTTP_REQ_RUNNING;
	r->last_io = uv_now(c->loop);
	int rc = http_multi_add(c->multi, e, on_done, r);
	if (rc < 0) {
		curl_easy_cleanup(e);
		r->easy = NULL;
		http_req_fail(r, rc, "cannot start the transfer");
		return;
	}
	wake_arm(c); /* the stall deadline */
}

/* Helpers for the owners' setup and write functions. */

void http_req_add_header(struct http_req *r, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	struct curl_slist *l = curl_slist_append(r->hdrs, buf_cstr(&b));
	buf_close(&b);
	if (!l)
		fatal("out of memory");
	r->hdrs = l;
}

void http_req_set_range(struct http_req *r, CURL *easy)
{
	char range[RANGE_SPEC_MAX];
	snprintf(range, sizeof range, "%" PRIu64 "-%" PRIu64, r->off + r->got, r->off + r->len - 1);
	curl_easy_setopt(easy, CURLOPT_RANGE, range);
}

size_t http_req_drain(struct http_req *r, size_t n)
{
	r->discarded += n;
	return r->discarded > HTTP_ERROR_BODY_MAX ? 0 : n;
}

size_t http_req_take(struct http_req *r, const char *data, size_t n)
{
	if (n > r->len - r->got) {
		http_req_refuse(r, SB_EPROTO, "server sent more than the %zu bytes asked for",
				r->len);
		return 0;
	}
	memcpy(r->buf + r->got, data, n);
	r->got += n;
	r->count += n;
	if (r->c->bytes_read)
		*r->c->bytes_read += n;
	if (r->c->took)
		r->c->took(r->c->took_arg, r->buf, r->got);
	return n;
}

int http_req_range_judge(struct http_req *r)
{
	if (r->checked)
		return 0;
	r->checked = 1;
	return r->c->ops->range_check(r);
}

void http_req_ask_rest(struct http_req *r)
{
	if (r->count > 0)
		http_req_start(r);
	else
		http_req_retry(r, SB_EHTTP, "response ended %zu bytes short", r->len - r->got);
}

void http_req_range_end(struct http_req *r)
{
	if (http_req_range_judge(r) < 0)
		http_req_finish(r, r->verdict);
	else if (r->got == r->len)
		http_req_finish(r, 0);
	else
		http_req_ask_rest(r);
}

size_t http_req_range_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct http_req *r = arg;
	size_t n = size * nmemb;
	r->last_io = uv_now(r->c->loop);
	if (http_req_range_judge(r) < 0)
		return 0;
	if (r->discard)
		return r->c->ops->error_body ? r->c->ops->error_body(r, data, n)
					     : http_req_drain(r, n);
	return http_req_take(r, data, n);
}

int http_req_check_span(struct http_req *r)
{
	const struct http_resp *p = &r->resp;
	uint64_t first = r->off + r->got, last = r->off + r->len - 1;
	if (p->range_first != first || p->range_last > last)
		return http_req_refuse(r, SB_EPROTO,
				       "asked for bytes %" PRIu64 "-%" PRIu64 ", got %" PRIu64
				       "-%" PRIu64,
				       first, last, p->range_first, p->range_last);
	return 0;
}

int http_req_check_range(struct http_req *r, uint64_t size)
{
	const struct http_resp *p = &r->resp;
	uint64_t first = r->off + r->got, last = r->off + r->len - 1;
	if (p->status == 200) {
		if (first == 0 && r->len == size &&
		    (p->content_length < 0 || (uint64_t)p->content_length == size))
			return 0;
		return http_req_refuse(r, SB_EHTTP,
				       "server ignored the range bytes=%" PRIu64 "-%" PRIu64
				       " (HTTP 200)",
				       first, last);
	}
	if (p->status != 206)
		return http_req_refuse(r, SB_EHTTP, "unexpected HTTP %ld %s", p->status,
				       http_resp_reason(p));
	if (!p->has_range || p->range_unsatisfied)
		return http_req_refuse(r, SB_EPROTO, "HTTP 206 without a Content-Range");
	if (p->range_total >= 0 && (uint64_t)p->range_total != size)
		return HTTP_RANGE_RESIZED;
	return http_req_check_span(r);
}

char *http_url_for_messages(const char *url)
{
	CURLU *u = curl_url();
	char *s = NULL, *out = NULL;
	if (!u)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
		curl_url_set(u, CURLUPART_USER, NULL, 0);
		curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
		curl_url_set(u, CURLUPART_QUERY, NULL, 0);
		curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
		if (curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
			out = xstrdup(s);
	}
	curl_free(s);
	curl_url_cleanup(u);
	return out;
}

/* The client. */

int http_client_init(struct http_client *c, uv_loop_t *loop, const struct http_req_ops *ops,
		     const struct http_client_options *o)
{
	int rc = http_multi_new(loop, &c->multi);
	if (rc < 0)
		return rc;
	c->loop = loop;
	c->ops = ops;
	c->retries = o->retries > 0 ? o->retries : 0;
	c->connect_seconds = o->connect_seconds;
	c->stall_seconds = o->stall_seconds;
	c->stall_ms = (uint64_t)o->stall_seconds * 1000;
	c->bytes_read = o->bytes_read;
	c->took = o->took;
	c->took_arg = o->took_arg;
	c->counters = o->counters;
	c->rng = (uv_hrtime() ^ (uint64_t)(uintptr_t)c) | 1;
	uv_timer_init(loop, &c->wake);
	c->wake.data = c;
	return 0;
}

static void wake_closed(uv_handle_t *h)
{
	struct http_client *c = h->data;
	if (c->closed)
		c->closed(c);
}

void http_client_close(struct http_client *c, void (*closed)(struct http_client *c))
{
	c->closing = 1;
	while (c->active.head)
		c->ops->free(c->active.head);
	while (c->done.head)
		c->ops->free(c->done.head);
	http_multi_free(c->multi);
	c->multi = NULL;
	c->closed = closed;
	uv_close((uv_handle_t *)&c->wake, wake_closed);
}
