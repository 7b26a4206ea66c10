/* Shared by the http(s) source tests (test_source_http*.c): running the
 * loop until callbacks arrive, opening, listing and reading the source, and
 * the fault fixture's record of the requests it saw. */
#ifndef SYNCBIT_SOURCE_HTTP_FIXTURE_H
#define SYNCBIT_SOURCE_HTTP_FIXTURE_H

#include "source_http_servers.h"

/* Loop helpers. */

struct wait {
	int n;
	int status;
	int inline_calls;
	int in_call;
};

static inline void on_done(struct source *src, int status, void *arg)
{
	struct wait *w = arg;
	uv_stop(src->loop); /* let run_until look at the count again */
	if (w->in_call)
		w->inline_calls++;
	w->n++;
	w->status = status;
}

static inline void on_watchdog(uv_timer_t *t)
{
	*(int *)t->data = 1;
	uv_stop(t->loop);
}

/* Run the loop until *count reaches want; fail after ms. */
static inline void run_until(uv_loop_t *loop, const int *count, int want, unsigned ms)
{
	uv_timer_t dog;
	int fired = 0;
	uv_timer_init(loop, &dog);
	dog.data = &fired;
	uv_timer_start(&dog, on_watchdog, ms, 0);
	while (*count < want && !fired)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&dog, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	assert_false(fired);
}

static inline void run_for(uv_loop_t *loop, unsigned ms)
{
	uv_timer_t dog;
	int fired = 0;
	uv_timer_init(loop, &dog);
	dog.data = &fired;
	uv_timer_start(&dog, on_watchdog, ms, 0);
	while (!fired)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&dog, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

static inline struct source *src_open(uv_loop_t *loop, const char *url, int retries, unsigned stall)
{
	struct source_uri u;
	struct source_options o;
	struct source *s = NULL;
	assert_int_equal(uv_loop_init(loop), 0);
	assert_int_equal(uri_parse(url, &u), 0);
	source_options_default(&o);
	o.retries = retries;
	o.stall_seconds = stall;
	o.connect_seconds = 2;
	assert_int_equal(source_new(loop, &u, &o, &s), 0);
	uri_close(&u);
	return s;
}

/* Free the source and check that every handle it had closes. */
static inline void src_close(uv_loop_t *loop, struct source *s)
{
	source_free(s);
	for (int i = 0; i < 200 && uv_loop_alive(loop); i++)
		uv_run(loop, UV_RUN_NOWAIT);
	assert_int_equal(uv_loop_close(loop), 0);
}

static inline char *url_of(int port, const char *path)
{
	static char u[512];
	snprintf(u, sizeof u, "http://127.0.0.1:%d/%s", port, path);
	return u;
}

/* List as the pull and the scheduler do: through source_list(), which
 * holds the listing to the source's limits. */
static inline int do_list(uv_loop_t *loop, struct source *s)
{
	struct wait w = {0};
	w.in_call = 1;
	int rc = source_list(s, on_done, &w);
	w.in_call = 0;
	if (rc < 0)
		return rc;
	assert_int_equal(w.n, 0);
	run_until(loop, &w.n, 1, WAIT_MS);
	assert_int_equal(w.inline_calls, 0);
	return w.status;
}

struct reader {
	struct source *src;
	uint8_t *out;
	uint64_t size, next;
	size_t block;
	int inflight, max_inflight, finished, status, inline_calls, in_call;
};

static void reader_cb(struct source *src, int status, void *arg);

static inline void reader_issue(struct reader *rd)
{
	uint64_t off = rd->next;
	size_t len = rd->size - off < rd->block ? (size_t)(rd->size - off) : rd->block;
	rd->next += len;
	rd->inflight++;
	if (rd->inflight > rd->max_inflight)
		rd->max_inflight = rd->inflight;
	rd->in_call = 1;
	int rc = rd->src->ops->read(rd->src, 0, off, len, rd->out + off, reader_cb, rd);
	rd->in_call = 0;
	if (rc < 0) {
		rd->inflight--;
		rd->status = rc;
		rd->finished = rd->inflight == 0;
	}
}

static inline void reader_cb(struct source *src, int status, void *arg)
{
	struct reader *rd = arg;
	uv_stop(src->loop);
	if (rd->in_call)
		rd->inline_calls++;
	rd->inflight--;
	if (status < 0 && rd->status == 0)
		rd->status = status;
	if (rd->status == 0 && rd->next < rd->size)
		reader_issue(rd);
	if (rd->inflight == 0)
		rd->finished = 1;
}

/* Read the whole listed file in blocks, parallel at once; 0 or the first
 * error. The bytes are compared with what the file holds. */
static inline int read_all(uv_loop_t *loop, struct source *s, const struct file *f, size_t block,
			   int parallel)
{
	struct reader rd = {.src = s, .size = f->size, .block = block};
	rd.out = malloc(f->size ? f->size : 1);
	memset(rd.out, 0xee, f->size);
	for (int i = 0; i < parallel && rd.next < rd.size && rd.status == 0; i++)
		reader_issue(&rd);
	if (rd.inflight)
		run_until(loop, &rd.finished, 1, WAIT_MS);
	assert_int_equal(rd.inline_calls, 0);
	if (rd.status == 0)
		assert_memory_equal(rd.out, f->data, f->size);
	free(rd.out);
	return rd.status;
}

/* /__stats of the fault server. */

static inline size_t stats_write(char *p, size_t sz, size_t n, void *arg)
{
	struct buf *b = arg;
	buf_append(b, p, sz * n);
	return sz * n;
}

static inline json_t *stats(const char *id)
{
	struct buf b = BUF_INIT;
	char u[256];
	snprintf(u, sizeof u, "http://127.0.0.1:%d/__stats?id=%s", fx.faulty_port, id);
	CURL *e = curl_easy_init();
	curl_easy_setopt(e, CURLOPT_URL, u);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, stats_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)&b);
	assert_int_equal(curl_easy_perform(e), CURLE_OK);
	curl_easy_cleanup(e);
	json_t *j = json_loads(buf_cstr(&b), 0, NULL);
	buf_close(&b);
	assert_non_null(j);
	return j;
}

/* The method's requests of id, in order; the caller json_decref()s. */
static inline json_t *requests(const char *id, const char *method)
{
	json_t *all = stats(id), *out = json_array(), *r;
	size_t i;
	json_array_foreach(json_object_get(all, "requests"), i,
			   r) if (!strcmp(json_string_value(json_object_get(r, "method")), method))
	    json_array_append(out, r);
	json_decref(all);
	return out;
}

static inline long req_status(json_t *reqs, size_t i)
{
	return (long)json_integer_value(json_object_get(json_array_get(reqs, i), "status"));
}

static inline const char *req_range(json_t *reqs, size_t i)
{
	const char *s = json_string_value(json_object_get(json_array_get(reqs, i), "range"));
	return s ? s : "";
}

static inline char *faulty_url(const char *mode, const char *file)
{
	static char u[512];
	snprintf(u, sizeof u, "http://127.0.0.1:%d/m/%s/%s", fx.faulty_port, mode, file);
	return u;
}

#endif
