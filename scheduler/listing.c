#include "scheduler/listing.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/uri.h"
#include "scheduler/ds_filter.h"

struct listing {
	struct sched *s;
	struct listing *next, **prev; /* in s->listings while in flight */
	struct source *src;
	uint32_t block_size, format;
	struct filter filter; /* the source's options point at it */
	listing_done_cb cb;
	void *arg;
	uv_timer_t reap; /* frees the source outside its own callback */
};

static void reap_closed(uv_handle_t *h)
{
	free(h->data);
}

static void reap(uv_timer_t *t)
{
	struct listing *l = t->data;
	source_free(l->src);
	filter_close(&l->filter);
	uv_close((uv_handle_t *)&l->reap, reap_closed);
}

/* "source http://h/p: HTTP 404 Not Found": the kind's detail without the
 * request method, or the error's message. */
static char *failure(struct source *src, const char *raw, int status)
{
	const char *d = src->error_detail;
	if (!d)
		return xasprintf("source %s: %s", raw, sb_strerror(status));
	if (!strncmp(d, "HEAD ", 5))
		d += 5;
	else if (!strncmp(d, "GET ", 4))
		d += 4;
	return xasprintf("source %s", d);
}

static void listed(struct source *src, int status, void *arg)
{
	struct listing *l = arg;
	struct sched_version *v = NULL;
	char *detail = NULL;
	*l->prev = l->next;
	if (l->next)
		l->next->prev = l->prev;
	if (status < 0) {
		detail = failure(src, src->uri.raw, status);
	} else {
		char *why = NULL;
		status = version_from_listing(&src->listing, src->uri.canonical, l->block_size,
					      l->format, &v, &why);
		if (status < 0)
			detail = xasprintf("source %s: %s", src->uri.raw, why);
		free(why);
	}
	l->cb(l->s, status, detail, v, l->arg);
	free(detail);
	uv_timer_start(&l->reap, reap, 0, 0);
}

int listing_start(struct sched *s, const char *source, uint32_t block_size, uint32_t format,
		  const struct filter *filter, listing_done_cb cb, void *arg, char **canonical,
		  char **detail)
{
	struct source_uri uri;
	struct source *src;
	struct source_options so = s->o->src;
	int rc = uri_parse(source, &uri);
	*detail = NULL;
	if (canonical)
		*canonical = NULL;
	if (rc < 0) {
		*detail = xasprintf("source %s: %s", source, sb_strerror(rc));
		return rc;
	}
	so.block_size = block_size;
	struct listing *l = xcalloc(1, sizeof *l);
	ds_filter_copy(&l->filter, filter);
	so.filter = l->filter.n ? &l->filter : NULL;
	rc = source_new(&s->loop, &uri, &so, &src);
	if (rc < 0) {
		*detail = xasprintf("source %s: %s", source, sb_strerror(rc));
		filter_close(&l->filter);
		free(l);
		uri_close(&uri);
		return rc;
	}
	l->s = s;
	l->src = src;
	l->block_size = block_size;
	l->format = format;
	l->cb = cb;
	l->arg = arg;
	uv_timer_init(&s->loop, &l->reap);
	l->reap.data = l;
	if ((rc = source_list(src, listed, l)) < 0) {
		*detail = failure(src, source, rc);
		l->src = NULL;
		source_free(src);
		filter_close(&l->filter);
		uv_close((uv_handle_t *)&l->reap, reap_closed);
		uri_close(&uri);
		return rc;
	}
	l->next = s->listings;
	l->prev = &s->listings;
	if (s->listings)
		s->listings->prev = &l->next;
	s->listings = l;
	if (canonical)
		*canonical = xstrdup(uri.canonical);
	uri_close(&uri);
	return 0;
}

void listing_cancel_all(struct sched *s)
{
	/* Cancelling runs the callbacks, which unlink their listing. */
	while (s->listings) {
		struct listing *l = s->listings;
		if (l->src->ops->cancel)
			l->src->ops->cancel(l->src);
		if (s->listings == l) { /* the kind finishes later: detach it now */
			*l->prev = l->next;
			if (l->next)
				l->next->prev = l->prev;
			l->next = NULL;
			l->prev = &l->next;
		}
	}
}
