/* ms://[datasets/]org/name[@rev]: a ModelScope repository at one revision
 * (default "master": ModelScope's own default picks a tag by the SDK's
 * release date, which no operator expects). Models are listed with
 * GET {E}/api/v1/models/{org}/{name}/repo/files?Revision=…&Recursive=True
 * and read from {E}/api/v1/models/{org}/{name}/repo?Revision=…&FilePath=…;
 * datasets with the paged {E}/api/v1/datasets/{org}/{name}/repo/tree and
 * {E}/api/v1/datasets/{org}/{name}/repo?Source=SDK&Revision=…&FilePath=….
 * E is $MODELSCOPE_ENDPOINT (a whole URL), else https://$MODELSCOPE_DOMAIN
 * (default www.modelscope.cn; a domain given with its scheme keeps it). The
 * token ($MODELSCOPE_API_TOKEN) travels as the cookie m_session_id.
 *
 * Listing: version = the revision; a file's digest is "sha256:<64 hex>"
 * from the API's Sha256 (checked against the bytes, as the SDK does), else
 * "ms-rev:<Revision>" when the API gives the file's revision. */
#include "common/source/hub.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "common/path.h"

#define MS_DOMAIN_DEFAULT   "www.modelscope.cn"
#define MS_REVISION_DEFAULT "master"
#define MS_PAGE_SIZE	    100
#define MS_SHA256_HEX	    64
#define MS_REVISION_MAX	    128

struct ms {
	const char *type; /* "models" or "datasets" */
	unsigned page;	  /* datasets: the page asked for, from 1 */
	size_t nfiles;
};

static const char *revision(const struct hub *h)
{
	return h->src->uri.revision ? h->src->uri.revision : MS_REVISION_DEFAULT;
}

static int is_dataset(const struct hub *h)
{
	return h->src->uri.is_dataset;
}

/* ModelScope wraps answers as {"Code": 200, "Success": true, "Message": …,
 * "Data": …}; an error may come with HTTP 200 and its own Code. */
static int envelope_error(struct hub *h, json_t *doc, const struct hub_reply *r)
{
	json_t *code = json_object_get(doc, "Code");
	json_t *ok = json_object_get(doc, "Success");
	if (!json_is_object(doc)) {
		hub_list_fail(h, SB_EPROTO, "%s: GET %s: malformed answer: not an object", h->name,
			      r->shown_url);
		return -1;
	}
	if ((!code || json_integer_value(code) == 200) && (!ok || json_is_true(ok)))
		return 0;
	struct hub_reply why = *r;
	const char *msg = json_string_value(json_object_get(doc, "Message"));
	snprintf(why.message, sizeof why.message, "%s", msg ? msg : "");
	json_int_t c = json_integer_value(code);
	why.status = c >= 400 && c < 600 ? (long)c : r->status;
	hub_list_fail_reply(h,
			    why.status == 401 || why.status == 403 ? SB_EDENIED
			    : why.status == 404			   ? SB_ENOTFOUND
								   : SB_EHTTP4XX,
			    &why);
	return -1;
}

static void ms_fail(struct hub *h, int status, const struct hub_reply *r)
{
	if (r->status == 404)
		hub_list_fail(h, SB_ENOTFOUND,
			      "%s: repository or revision %s not found (HTTP 404%s%s)", h->name,
			      revision(h), r->message[0] ? ": " : "", r->message);
	else
		hub_list_fail_reply(h, status, r);
}

static char *file_url(const struct hub *h, const char *path)
{
	struct buf b = BUF_INIT;
	if (is_dataset(h))
		buf_printf(&b, "%s/api/v1/datasets/%s/repo?Source=SDK&Revision=", h->endpoint,
			   h->src->uri.repo);
	else
		buf_printf(&b, "%s/api/v1/models/%s/repo?Revision=", h->endpoint, h->src->uri.repo);
	hub_quote(&b, revision(h), "", 1);
	buf_append_str(&b, "&FilePath=");
	hub_quote(&b, path, "", 1);
	return buf_steal(&b);
}

/* One entry of Data.Files: 1 added, 0 skipped, -1 malformed, -2 failed. */
static int add_entry(struct hub *h, json_t *e)
{
	struct ms *ms = h->kind;
	const char *type = json_string_value(json_object_get(e, "Type"));
	const char *path = json_string_value(json_object_get(e, "Path"));
	const char *name = json_string_value(json_object_get(e, "Name"));
	json_t *jsize = json_object_get(e, "Size");
	if (!type || !path)
		return -1;
	if (strcmp(type, "blob") != 0)
		return 0; /* "tree": a directory */
	if (!name) {
		const char *slash = strrchr(path, '/');
		name = slash ? slash + 1 : path;
	}
	/* What the SDK leaves out of every download. */
	if (!strcmp(name, ".gitignore") || !strcmp(name, ".gitattributes"))
		return 0;
	if (!json_is_integer(jsize) || json_integer_value(jsize) < 0)
		return -1;
	if (path_check_relative(path) < 0) {
		hub_list_fail(h, SB_ECONFINE,
			      "%s: the hub lists a file '%s' outside the repository", h->name,
			      path);
		return -2;
	}
	if (++ms->nfiles > h->src->opt.limits.files) {
		unsigned long long max = h->src->opt.limits.files;
		hub_list_fail(h, SB_ETOOBIG,
			      "%s: more files than the limit of %llu per dataset (--max-files)",
			      h->name, max);
		return -2;
	}
	const char *sha = json_string_value(json_object_get(e, "Sha256"));
	const char *rev = json_string_value(json_object_get(e, "Revision"));
	uint8_t want[32];
	char *digest = NULL;
	if (sha && *sha && !hub_is_hex(sha, MS_SHA256_HEX))
		return -1;
	if (sha && *sha) {
		digest = xasprintf("sha256:%s", sha);
		hub_hex_decode(sha, MS_SHA256_HEX, want);
	} else if (rev && *rev && strlen(rev) <= MS_REVISION_MAX) {
		digest = xasprintf("ms-rev:%s", rev);
	}
	char *url = file_url(h, path);
	hub_add_file(h, path, (uint64_t)json_integer_value(jsize), 0, digest, url, NULL,
		     sha && *sha ? HUB_CHECK_SHA256 : HUB_CHECK_NONE, want);
	free(url);
	free(digest);
	return 1;
}

static void files_page(struct hub *h);

static void files_done(struct hub *h, int status, json_t *doc, const struct hub_reply *r, void *arg)
{
	struct ms *ms = h->kind;
	if (status < 0) {
		ms_fail(h, status, r);
		return;
	}
	if (envelope_error(h, doc, r) < 0)
		return;
	json_t *data = json_object_get(doc, "Data");
	json_t *files = json_object_get(data, "Files");
	if (!json_is_object(data) || (files && !json_is_null(files) && !json_is_array(files))) {
		hub_list_fail(h, SB_EPROTO, "%s: GET %s: malformed answer: no Data.Files", h->name,
			      r->shown_url);
		return;
	}
	size_t i;
	json_t *e;
	json_array_foreach(files, i, e)
	{
		int rc = json_is_object(e) ? add_entry(h, e) : -1;
		if (rc == -2)
			return;
		if (rc < 0) {
			hub_list_fail(h, SB_EPROTO,
				      "%s: GET %s: malformed answer: file %zu lacks Path, Type or "
				      "Size as documented",
				      h->name, r->shown_url, i);
			return;
		}
	}
	/* Dataset trees come in pages; a short page is the last. */
	if (is_dataset(h) && json_array_size(files) >= MS_PAGE_SIZE) {
		if (++ms->page > HUB_PAGES_MAX) {
			hub_list_fail(h, SB_ETOOBIG, "%s: more than %u pages of files", h->name,
				      HUB_PAGES_MAX);
			return;
		}
		files_page(h);
		return;
	}
	hub_list_done(h, revision(h));
}

static void files_page(struct hub *h)
{
	struct ms *ms = h->kind;
	struct buf url = BUF_INIT;
	if (is_dataset(h)) {
		buf_printf(&url, "%s/api/v1/datasets/%s/repo/tree?Revision=", h->endpoint,
			   h->src->uri.repo);
		hub_quote(&url, revision(h), "", 1);
		buf_printf(&url, "&Root=%%2F&Recursive=True&PageNumber=%u&PageSize=%u", ms->page,
			   MS_PAGE_SIZE);
	} else {
		buf_printf(&url, "%s/api/v1/models/%s/repo/files?Revision=", h->endpoint,
			   h->src->uri.repo);
		hub_quote(&url, revision(h), "", 1);
		buf_append_str(&url, "&Recursive=True");
	}
	int rc = hub_get_json(h, buf_cstr(&url), files_done, NULL);
	buf_close(&url);
	if (rc < 0)
		hub_list_fail(h, rc, "%s: cannot list the files: %s", h->name, sb_strerror(rc));
}

static int ms_list(struct hub *h)
{
	struct ms *ms = h->kind;
	ms->page = 1;
	ms->nfiles = 0;
	files_page(h);
	return 0;
}

static void ms_free(struct hub *h)
{
	free(h->kind);
}

static const struct hub_ops ms_ops = {
    .token_env = "MODELSCOPE_API_TOKEN",
    .list = ms_list,
    .free = ms_free,
};

static char *endpoint_from_env(void)
{
	static const char *const endpoint_env[] = {"MODELSCOPE_ENDPOINT", NULL};
	static const char *const domain_env[] = {"MODELSCOPE_DOMAIN", NULL};
	const char *e = hub_getenv(endpoint_env);
	if (e)
		return xstrdup(e);
	const char *d = hub_getenv(domain_env);
	if (!d)
		d = MS_DOMAIN_DEFAULT;
	return strstr(d, "://") ? xstrdup(d) : xasprintf("https://%s", d);
}

int source_ms_new(struct source *src)
{
	static const char *const token_env[] = {"MODELSCOPE_API_TOKEN", NULL};
	if (!src->uri.repo)
		return SB_EURI;
	const char *token = hub_getenv(token_env);
	char *auth = token ? xasprintf("Cookie: m_session_id=%s", token) : NULL;
	if (auth && strpbrk(auth, "\r\n;")) {
		source_set_error(src, "%s: MODELSCOPE_API_TOKEN holds a line break or ';'",
				 src->uri.canonical);
		free(auth);
		return SB_ECONFIG;
	}
	char *endpoint = endpoint_from_env();
	struct ms *ms = xcalloc(1, sizeof *ms);
	ms->type = src->uri.is_dataset ? "datasets" : "models";
	struct hub *h;
	int rc = hub_init(src, &ms_ops, endpoint, auth, ms, &h);
	free(endpoint);
	free(auth);
	if (rc < 0)
		free(ms);
	return rc;
}
