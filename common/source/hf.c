/* hf://[datasets/]org/name[@rev]: a Hugging Face Hub repository at one
 * commit. The revision (default "main") is resolved to its commit with
 * GET {E}/api/{models|datasets}/{repo}/revision/{rev}; the files come from
 * the tree API at that commit (recursive, paginated by Link rel="next"); the
 * bytes from {E}/[datasets/]{repo}/resolve/{commit}/{path}, which sends LFS
 * files on to a CDN. E is $HF_ENDPOINT (default https://huggingface.co); the
 * token ($HF_TOKEN, $HUGGING_FACE_HUB_TOKEN, else the token file) goes in
 * "Authorization: Bearer", never to the CDN.
 *
 * Listing: version = the commit (40 hex); a file's digest is
 * "sha256:<64 hex>" for LFS files and "git:<40 hex>" (the git blob id)
 * otherwise; both are checked against the bytes (hub.h). */
#include "common/source/hub.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "common/log.h"
#include "common/path.h"

#define HF_ENDPOINT_DEFAULT "https://huggingface.co"
#define HF_REVISION_DEFAULT "main"
#define HF_COMMIT_HEX	    40
#define HF_SHA256_HEX	    64

struct hf {
	const char *type; /* "models" or "datasets" */
	char *commit;
	int64_t mtime_ns; /* the commit's date, given to every file */
	unsigned pages;
	size_t nfiles;
};

static const char *revision(const struct hub *h)
{
	return h->src->uri.revision ? h->src->uri.revision : HF_REVISION_DEFAULT;
}

/* "2024-04-03T10:44:29.000Z" in nanoseconds; 0 when it is not that, or
 * lies past what nanoseconds since 1970 can hold. */
static int64_t parse_iso8601(const char *s)
{
	struct tm tm = {0};
	int frac_ns = 0;
	if (!s)
		return 0;
	const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return 0;
	if (*p == '.') {
		int scale = 100000000;
		for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
			frac_ns += (*p - '0') * scale;
	}
	if (*p != 'Z' && strcmp(p, "+00:00") != 0)
		return 0;
	time_t t = timegm(&tm);
	if (t == (time_t)-1 || t < 0 || t >= INT64_MAX / 1000000000) /* past 2262 */
		return 0;
	return (int64_t)t * 1000000000 + frac_ns;
}

/* Messages for what the Hub answers with its X-Error-Code. */
static void hf_fail(struct hub *h, int status, const struct hub_reply *r)
{
	const char *code = r->error_code;
	if (!strcmp(code, "RevisionNotFound")) {
		hub_list_fail(h, SB_ENOTFOUND, "%s: revision %s not found (HTTP %ld)", h->name,
			      revision(h), r->status);
	} else if (!strcmp(code, "RepoNotFound") && r->status == 401 && !h->has_token) {
		/* The Hub answers 401 for missing, private and gated repos
		 * alike when no token comes with the request. */
		hub_list_fail(h, SB_ENOTFOUND,
			      "%s: repository not found, or private or gated: set HF_TOKEN "
			      "(HTTP 401)",
			      h->name);
	} else if (!strcmp(code, "RepoNotFound") || r->status == 404) {
		hub_list_fail(h, SB_ENOTFOUND, "%s: repository not found (HTTP %ld)", h->name,
			      r->status);
	} else if (!strcmp(code, "GatedRepo")) {
		hub_list_fail_reply(h, SB_EDENIED, r);
	} else {
		hub_list_fail_reply(h, status, r);
	}
}

static void tree_page(struct hub *h, const char *url);

static int add_entry(struct hub *h, json_t *e)
{
	struct hf *hf = h->kind;
	const char *type = json_string_value(json_object_get(e, "type"));
	const char *path = json_string_value(json_object_get(e, "path"));
	if (!type || !path)
		return -1;
	if (strcmp(type, "file") != 0)
		return 0; /* directories are implied by their files */
	json_t *jsize = json_object_get(e, "size");
	const char *oid = json_string_value(json_object_get(e, "oid"));
	json_t *lfs = json_object_get(e, "lfs");
	const char *sha = NULL;
	if (!json_is_integer(jsize) || json_integer_value(jsize) < 0 ||
	    !hub_is_hex(oid, HF_COMMIT_HEX))
		return -1;
	int64_t size = json_integer_value(jsize);
	if (json_is_object(lfs)) {
		json_t *lsize = json_object_get(lfs, "size");
		sha = json_string_value(json_object_get(lfs, "oid"));
		if (!hub_is_hex(sha, HF_SHA256_HEX) || !json_is_integer(lsize) ||
		    json_integer_value(lsize) < 0)
			return -1;
		size = json_integer_value(lsize);
	}
	if (path_check_relative(path) < 0) {
		hub_list_fail(h, SB_ECONFINE,
			      "%s: the hub lists a file '%s' outside the repository", h->name,
			      path);
		return -2;
	}
	if (++hf->nfiles > h->src->opt.limits.files) {
		unsigned long long max = h->src->opt.limits.files;
		hub_list_fail(h, SB_ETOOBIG,
			      "%s: more files than the limit of %llu per dataset (--max-files)",
			      h->name, max);
		return -2;
	}
	uint8_t want[32];
	struct buf url = BUF_INIT;
	buf_printf(&url, "%s/%s%s/resolve/%s/", h->endpoint,
		   !strcmp(hf->type, "datasets") ? "datasets/" : "", h->src->uri.repo, hf->commit);
	hub_quote(&url, path, "/", 0);
	char *digest = xasprintf("%s:%s", sha ? "sha256" : "git", sha ? sha : oid);
	hub_hex_decode(sha ? sha : oid, sha ? HF_SHA256_HEX : HF_COMMIT_HEX, want);
	hub_add_file(h, path, (uint64_t)size, hf->mtime_ns, digest, buf_cstr(&url), sha ? sha : oid,
		     sha ? HUB_CHECK_SHA256 : HUB_CHECK_GIT_BLOB, want);
	free(digest);
	buf_close(&url);
	return 0;
}

static void tree_done(struct hub *h, int status, json_t *doc, const struct hub_reply *r, void *arg)
{
	struct hf *hf = h->kind;
	if (status < 0) {
		hf_fail(h, status, r);
		return;
	}
	if (!json_is_array(doc)) {
		hub_list_fail(h, SB_EPROTO, "%s: GET %s: malformed answer: not a list of entries",
			      h->name, r->shown_url);
		return;
	}
	size_t i;
	json_t *e;
	json_array_foreach(doc, i, e)
	{
		int rc = json_is_object(e) ? add_entry(h, e) : -1;
		if (rc == -2)
			return;
		if (rc < 0) {
			hub_list_fail(h, SB_EPROTO,
				      "%s: GET %s: malformed answer: entry %zu is not a file or "
				      "directory as documented",
				      h->name, r->shown_url, i);
			return;
		}
	}
	if (!r->next_url) {
		hub_list_done(h, hf->commit);
		return;
	}
	if (!hub_same_origin(h, r->next_url)) {
		hub_list_fail(h, SB_EPROTO, "%s: GET %s: the next page lies on another host",
			      h->name, r->shown_url);
		return;
	}
	if (++hf->pages > HUB_PAGES_MAX) {
		hub_list_fail(h, SB_ETOOBIG, "%s: more than %u pages of files", h->name,
			      HUB_PAGES_MAX);
		return;
	}
	tree_page(h, r->next_url);
}

static void tree_page(struct hub *h, const char *url)
{
	int rc = hub_get_json(h, url, tree_done, NULL);
	if (rc < 0)
		hub_list_fail(h, rc, "%s: cannot list the files: %s", h->name, sb_strerror(rc));
}

static void revision_done(struct hub *h, int status, json_t *doc, const struct hub_reply *r,
			  void *arg)
{
	struct hf *hf = h->kind;
	if (status < 0) {
		hf_fail(h, status, r);
		return;
	}
	const char *sha = json_string_value(json_object_get(doc, "sha"));
	if (!hub_is_hex(sha, HF_COMMIT_HEX)) {
		hub_list_fail(h, SB_EPROTO, "%s: GET %s: malformed answer: no commit \"sha\"",
			      h->name, r->shown_url);
		return;
	}
	free(hf->commit);
	hf->commit = xstrdup(sha);
	hf->mtime_ns = parse_iso8601(json_string_value(json_object_get(doc, "lastModified")));
	if (strcmp(sha, revision(h)) != 0)
		log_info("%s: revision %s is commit %s", h->name, revision(h), sha);
	char *url = xasprintf("%s/api/%s/%s/tree/%s?recursive=true", h->endpoint, hf->type,
			      h->src->uri.repo, hf->commit);
	tree_page(h, url);
	free(url);
}

static int hf_list(struct hub *h)
{
	struct hf *hf = h->kind;
	struct buf url = BUF_INIT;
	hf->pages = 0;
	hf->nfiles = 0;
	buf_printf(&url, "%s/api/%s/%s/revision/", h->endpoint, hf->type, h->src->uri.repo);
	hub_quote(&url, revision(h), "", 0);
	int rc = hub_get_json(h, buf_cstr(&url), revision_done, NULL);
	buf_close(&url);
	return rc;
}

static void hf_free(struct hub *h)
{
	struct hf *hf = h->kind;
	free(hf->commit);
	free(hf);
}

static const struct hub_ops hf_ops = {
    .token_env = "HF_TOKEN",
    .list = hf_list,
    .free = hf_free,
};

/* $HF_TOKEN_PATH, else $HF_HOME/token, with huggingface_hub's defaults. */
static char *token_from_file(void)
{
	const char *path = getenv("HF_TOKEN_PATH");
	char *own = NULL, *token;
	if (!path || !*path) {
		const char *home = getenv("HF_HOME"), *xdg = getenv("XDG_CACHE_HOME"),
			   *user = getenv("HOME");
		if (home && *home)
			own = xasprintf("%s/token", home);
		else if (xdg && *xdg)
			own = xasprintf("%s/huggingface/token", xdg);
		else if (user && *user)
			own = xasprintf("%s/.cache/huggingface/token", user);
		path = own;
	}
	token = path ? hub_read_token_file(path) : NULL;
	free(own);
	return token;
}

int source_hf_new(struct source *src)
{
	static const char *const endpoint_env[] = {"HF_ENDPOINT", NULL};
	static const char *const token_env[] = {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", NULL};
	if (!src->uri.repo)
		return SB_EURI;
	const char *endpoint = hub_getenv(endpoint_env);
	const char *env_token = hub_getenv(token_env);
	char *token = env_token ? xstrdup(env_token) : token_from_file();
	char *auth = token ? xasprintf("Authorization: Bearer %s", token) : NULL;
	if (auth && strpbrk(auth, "\r\n")) {
		source_set_error(src, "%s: HF_TOKEN holds a line break", src->uri.canonical);
		free(token);
		free(auth);
		return SB_ECONFIG;
	}
	struct hf *hf = xcalloc(1, sizeof *hf);
	hf->type = src->uri.is_dataset ? "datasets" : "models";
	struct hub *h;
	int rc = hub_init(src, &hf_ops, endpoint ? endpoint : HF_ENDPOINT_DEFAULT, auth, hf, &h);
	free(token);
	free(auth);
	if (rc < 0)
		free(hf);
	return rc;
}
