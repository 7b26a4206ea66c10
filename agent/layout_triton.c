/* The triton layout and the load call of Triton's repository extension. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/layout.h"
#include "agent/layout_impl.h"
#include "agent/publish.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/http_multi.h"
#include "common/path.h"

#define TRITON_CONFIG	 "config.pbtxt"
#define TRITON_BODY_MAX	 (64u << 10)
#define TRITON_TIMEOUT_S 3600L
#define TRITON_CONNECT_S 15u

static int version_ok(const char *v)
{
	return v[0] >= '1' && v[0] <= '9' && strspn(v, "0123456789") == strlen(v) &&
	       strlen(v) <= 18;
}

/* ---- triton -------------------------------------------------------------- */

/* Hardlink entries name their primary by index: keep them pointing at the
 * same file after entries are dropped, and give an entry whose primary was
 * dropped the primary's content. */
static void triton_remap(const Manifest *m, size_t skip, FileEntry *copies, size_t n,
			 const uint32_t *map)
{
	for (size_t k = 0; k < n; k++) {
		FileEntry *e = &copies[k];
		if (!e->hardlink_to)
			continue;
		const FileEntry *primary = m->files[e->hardlink_to - 1];
		if (e->hardlink_to - 1 == skip || !map[e->hardlink_to - 1]) {
			e->hardlink_to = 0;
			if (!e->block_hashes.len)
				e->block_hashes = primary->block_hashes;
		} else {
			e->hardlink_to = map[e->hardlink_to - 1];
		}
	}
}

/* NAME/config.pbtxt: the source's, else (when none is there) a minimal one
 * naming the model; Triton completes the rest for backends that can. */
static int triton_config(struct cache *c, const Manifest *m, size_t cfg, const struct layout *l,
			 const char *model_dir, struct cache_updates *updates, char **detail)
{
	if (cfg != SIZE_MAX) {
		FileEntry e = *m->files[cfg];
		FileEntry *pe = &e;
		if (e.hardlink_to) {
			if (!e.block_hashes.len)
				e.block_hashes = m->files[e.hardlink_to - 1]->block_hashes;
			e.hardlink_to = 0;
		}
		Manifest cm = *m;
		cm.n_files = 1;
		cm.files = &pe;
		struct publish_stats st;
		return publish_tree(c, &cm, model_dir, &st, updates, detail);
	}
	int fd = layout_open_dir(AT_FDCWD, model_dir, 0);
	if (fd < 0)
		return layout_fail(detail, fd, model_dir, "open");
	int rc = 0;
	if (faccessat(fd, TRITON_CONFIG, F_OK, AT_SYMLINK_NOFOLLOW) != 0) {
		char *text = xasprintf("name: \"%s\"\n", l->model);
		rc = layout_put_file(fd, TRITON_CONFIG, text);
		free(text);
		if (rc >= 0 && fsync(fd) < 0)
			rc = -errno;
	}
	close(fd);
	return rc < 0 ? layout_fail(detail, rc, model_dir, "cannot write " TRITON_CONFIG) : 0;
}

int layout_triton_publish(struct cache *c, const Manifest *m, struct layout *l, const char *target,
			  struct cache_updates *updates, char **detail)
{
	const char *version = l->version ? l->version : LAYOUT_TRITON_VERSION;
	if (!l->model || !l->model[0] || strchr(l->model, '/') ||
	    path_check_relative(l->model) < 0 || !version_ok(version))
		return layout_fail(detail, SB_ECONFIG, target, "bad triton model name or version");
	char *model_dir = path_join(target, l->model);
	size_t cfg = SIZE_MAX, n = 0;
	for (size_t i = 0; i < m->n_files; i++)
		if (!strcmp(m->files[i]->path, TRITON_CONFIG) &&
		    m->files[i]->type == SYNCBIT__FILE_TYPE__FILE_REGULAR)
			cfg = i;
	FileEntry *copies = xcalloc(m->n_files + 1, sizeof *copies);
	FileEntry **ptrs = xcalloc(m->n_files + 1, sizeof *ptrs);
	uint32_t *map = xcalloc(m->n_files + 1, sizeof *map);
	for (size_t i = 0; i < m->n_files; i++) {
		if (i == cfg)
			continue;
		copies[n] = *m->files[i];
		ptrs[n] = &copies[n];
		map[i] = (uint32_t)++n;
	}
	triton_remap(m, cfg, copies, n, map);
	Manifest vm = *m;
	vm.n_files = n;
	vm.files = ptrs;
	/* The version directory flips whole (publish_version), so Triton's
	 * poll mode never sees half of it and files the source dropped go. */
	int rc = path_mkdirs(model_dir, 0755);
	if (rc < 0)
		rc = layout_fail(detail, rc, model_dir, "cannot create");
	else if ((rc = publish_version(c, &vm, model_dir, version, updates, detail)) == 0)
		rc = triton_config(c, m, cfg, l, model_dir, updates, detail);
	if (rc == 0) {
		l->linked = n + (cfg != SIZE_MAX);
		l->path = xasprintf("%s/%s", model_dir, version);
	}
	free(copies);
	free(ptrs);
	free(map);
	free(model_dir);
	return rc;
}

static size_t collect_body(char *data, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	if (b->len + size * n <= TRITON_BODY_MAX)
		buf_append(b, data, size * n);
	return size * n;
}

int layout_triton_reply(long status, const void *body, size_t len, char **detail)
{
	*detail = NULL;
	if (status == 200)
		return 0;
	json_t *j = json_loadb(body, len, 0, NULL);
	const char *msg = j ? json_string_value(json_object_get(j, "error")) : NULL;
	char *text = len ? xstrndup(body, len) : NULL;
	*detail = xasprintf("HTTP %ld: %s", status, msg ? msg : text ? text : "(no body)");
	json_decref(j);
	free(text);
	for (char *s = *detail; *s; s++) /* the server's words stay on one line */
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
	return status >= 500 ? SB_EHTTP5XX : status >= 400 ? SB_EHTTP4XX : SB_EHTTP;
}

int layout_triton_load(const char *url, const char *model, char **detail)
{
	struct buf body = BUF_INIT;
	size_t ul = strlen(url);
	while (ul && url[ul - 1] == '/')
		ul--;
	*detail = NULL;
	CURL *easy = curl_easy_init();
	if (!easy) {
		*detail = xstrdup("cannot start libcurl");
		return SB_EHTTP;
	}
	char *esc = curl_easy_escape(easy, model, 0);
	char *full = xasprintf("%.*s/v2/repository/models/%s/load", (int)ul, url, esc);
	curl_free(esc);
	http_easy_defaults(easy, TRITON_CONNECT_S, 0);
	/* A load answers when the model is loaded, which may take minutes with
	 * nothing sent meanwhile. */
	curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 0L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT, TRITON_TIMEOUT_S);
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_URL, full);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, "");
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, 0L);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, collect_body);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &body);
	CURLcode cc = curl_easy_perform(easy);
	long status = 0;
	int rc = 0;
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	if (cc != CURLE_OK) {
		*detail = xasprintf("POST %s: %s", full, curl_easy_strerror(cc));
		rc = SB_EHTTP;
	} else if (status != 200) {
		char *why;
		rc = layout_triton_reply(status, body.ptr, body.len, &why);
		*detail = xasprintf("POST %s: %s", full, why);
		free(why);
	}
	for (char *s = *detail; s && *s; s++)
		if (*s == '\n' || *s == '\r')
			*s = ' ';
	curl_easy_cleanup(easy);
	buf_close(&body);
	free(full);
	return rc;
}

int layout_triton_check(const struct layout *l, char **error)
{
	if (!l->model || !l->model[0])
		*error = xstrdup("--layout triton needs --model NAME");
	else if (path_check_relative(l->model) < 0 || strchr(l->model, '/') || l->model[0] == '.')
		*error = xasprintf("--model: '%s' is not a directory name", l->model);
	else if (l->version && !version_ok(l->version))
		*error = xasprintf("--model-version: '%s' is not a version number (1, 2, ...; "
				   "Triton ignores names starting with 0)",
				   l->version);
	return *error ? SB_ECONFIG : 0;
}
