#include "common/source/aws_creds.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/source/xml.h"

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

/* ---- the shared files ---- */

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* Whether a section header's inside ("profile x", "x", "default") names
 * profile in this kind of file. */
static int section_is(const char *inside, int config_file, const char *profile)
{
	char name[256];
	if (config_file && !strncmp(inside, "profile", 7) &&
	    (inside[7] == ' ' || inside[7] == '\t')) {
		snprintf(name, sizeof name, "%s", inside + 8);
		return !strcmp(trim(name), profile);
	}
	/* A config file names the default profile [default]; any other bare
	 * name there is another kind of section (sso-session, services). */
	if (config_file && strcmp(inside, "default") != 0)
		return 0;
	return !strcmp(inside, profile);
}

int aws_ini_get(const char *text, int config_file, const char *profile, const char *key, char **out,
		int *has_profile, char **error)
{
	char *copy = xstrdup(text);
	int in = 0, lineno = 0, rc = 0;
	*out = NULL;
	if (has_profile)
		*has_profile = 0;
	for (char *line = copy, *next; line && rc == 0; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		int indented = *line == ' ' || *line == '\t';
		char *s = trim(line);
		if (!*s || *s == '#' || *s == ';' || (indented && !(*s == '[')))
			continue; /* blank, comment, or a sub-setting of the key above */
		if (*s == '[') {
			char *end = strchr(s, ']');
			char *rest = end ? trim(end + 1) : NULL;
			if (!end || (*rest && *rest != '#' && *rest != ';')) {
				*error = xasprintf("line %d: malformed section header", lineno);
				rc = SB_ECONFIG;
				break;
			}
			*end = '\0';
			in = section_is(trim(s + 1), config_file, profile);
			if (in && has_profile)
				*has_profile = 1;
			continue;
		}
		char *eq = strchr(s, '=');
		if (!eq) {
			*error = xasprintf("line %d: expected key = value", lineno);
			rc = SB_ECONFIG;
			break;
		}
		*eq = '\0';
		if (in && !strcasecmp(trim(s), key)) {
			free(*out);
			*out = xstrdup(trim(eq + 1));
		}
	}
	free(copy);
	if (rc < 0 || (*out && !**out)) { /* an empty value is no value */
		free(*out);
		*out = NULL;
	}
	return rc;
}

static const char *profile_name(void)
{
	const char *p = env("AWS_PROFILE");
	return p ? p : "default";
}

/* $VAR, else ~/.aws/NAME; NULL without a home. Heap. */
static char *file_path(const char *var, const char *name)
{
	const char *v = env(var), *home = env("HOME");
	if (v)
		return xstrdup(v);
	return home ? xasprintf("%s/.aws/%s", home, name) : NULL;
}

/* One key of the active profile in one shared file. A missing file is
 * empty. */
static int file_get(const char *var, const char *name, int config_file, const char *key, char **out,
		    int *has_profile, char **error)
{
	char *path = file_path(var, name);
	struct buf b = BUF_INIT;
	*out = NULL;
	if (has_profile)
		*has_profile = 0;
	if (!path)
		return 0;
	int rc = buf_read_file(path, AWS_FILE_MAX, &b);
	if (rc == -ENOENT) {
		rc = 0;
	} else if (rc < 0) {
		*error = xasprintf("AWS %s file %s: %s", config_file ? "config" : "credentials",
				   path, sb_strerror(rc));
	} else {
		char *why = NULL;
		rc = aws_ini_get(buf_cstr(&b), config_file, profile_name(), key, out, has_profile,
				 &why);
		if (rc < 0)
			*error = xasprintf("AWS %s file %s: %s",
					   config_file ? "config" : "credentials", path, why);
		free(why);
	}
	buf_close(&b);
	free(path);
	return rc;
}

int aws_config_get(const char *key, char **out, char **error)
{
	return file_get("AWS_CONFIG_FILE", "config", 1, key, out, NULL, error);
}

/* ---- web identity ---- */

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct aws_creds cache;
static char *cache_key; /* role ARN and token file the cache was fetched for */

static void creds_copy(struct aws_creds *dst, const struct aws_creds *src)
{
	dst->access_key = src->access_key ? xstrdup(src->access_key) : NULL;
	dst->secret_key = src->secret_key ? xstrdup(src->secret_key) : NULL;
	dst->session_token = src->session_token ? xstrdup(src->session_token) : NULL;
	dst->expires = src->expires;
	dst->origin = src->origin ? xstrdup(src->origin) : NULL;
}

void aws_creds_close(struct aws_creds *c)
{
	if (c->secret_key)
		memset(c->secret_key, 0, strlen(c->secret_key));
	if (c->session_token)
		memset(c->session_token, 0, strlen(c->session_token));
	free(c->access_key);
	free(c->secret_key);
	free(c->session_token);
	free(c->origin);
	memset(c, 0, sizeof *c);
}

/* 1 when s holds a byte below 0x20 or DEL. */
static int has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

int aws_sts_parse(const char *xml, size_t len, struct aws_creds *out, char **error)
{
	static const char *const paths[] = {
	    "AssumeRoleWithWebIdentityResponse/AssumeRoleWithWebIdentityResult/Credentials/"
	    "AccessKeyId",
	    "AssumeRoleWithWebIdentityResponse/AssumeRoleWithWebIdentityResult/Credentials/"
	    "SecretAccessKey",
	    "AssumeRoleWithWebIdentityResponse/AssumeRoleWithWebIdentityResult/Credentials/"
	    "SessionToken",
	    "AssumeRoleWithWebIdentityResponse/AssumeRoleWithWebIdentityResult/Credentials/"
	    "Expiration",
	};
	static const char *const names[] = {"AccessKeyId", "SecretAccessKey", "SessionToken",
					    "Expiration"};
	char *v[4], err[XML_ERR_MAX];
	int64_t ns = 0;
	memset(out, 0, sizeof *out);
	if (xml_pick(xml, len, paths, 4, v, err) < 0) {
		*error = xasprintf("malformed AssumeRoleWithWebIdentity answer: %s", err);
		return SB_EPROTO;
	}
	int rc = 0;
	for (int i = 0; i < 4 && rc == 0; i++)
		if (!v[i] || !v[i][0]) {
			*error = xasprintf("AssumeRoleWithWebIdentity answer without %s", names[i]);
			rc = SB_EPROTO;
		} else if (has_control(v[i])) {
			/* An entity such as &#10; decodes to one: the keys and the
			 * token go into request header lines, and the expiry into
			 * a message. */
			*error = xasprintf("AssumeRoleWithWebIdentity answer: %s holds a control "
					   "character",
					   names[i]);
			rc = SB_EPROTO;
		}
	if (rc == 0 && xml_parse_time(v[3], &ns) < 0) {
		*error = xasprintf("AssumeRoleWithWebIdentity answer: Expiration '%.64s' is not an "
				   "ISO 8601 UTC time",
				   v[3]);
		rc = SB_EPROTO;
	}
	if (rc == 0) {
		out->access_key = v[0];
		out->secret_key = v[1];
		out->session_token = v[2];
		out->expires = ns / 1000000000;
		v[0] = v[1] = v[2] = NULL;
	}
	for (int i = 0; i < 4; i++)
		free(v[i]);
	return rc;
}

static size_t sts_body(char *p, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	if (b->len + size * n > AWS_STS_REPLY_MAX)
		return 0; /* curl fails the transfer: too big for an STS answer */
	buf_append(b, p, size * n);
	return size * n;
}

/* STS's URL: AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, else the regional
 * endpoint (the global one without a region). Heap. */
static char *sts_endpoint(void)
{
	const char *e = env("AWS_ENDPOINT_URL_STS");
	if (!e)
		e = env("AWS_ENDPOINT_URL");
	if (e)
		return xstrdup(e);
	const char *region = env("AWS_REGION");
	if (!region)
		region = env("AWS_DEFAULT_REGION");
	char *from_config = NULL, *ignored = NULL;
	if (!region && aws_config_get("region", &from_config, &ignored) == 0 && from_config)
		region = from_config;
	free(ignored);
	char *url = region && aws_region_valid(region)
			? xasprintf("https://sts.%s.amazonaws.com%s", region,
				    !strncmp(region, "cn-", 3) ? ".cn" : "")
			: xstrdup("https://sts.amazonaws.com");
	free(from_config);
	return url;
}

static void form_add(struct buf *b, CURL *h, const char *name, const char *value)
{
	char *e = curl_easy_escape(h, value, 0);
	buf_printf(b, "%s%s=%s", b->len ? "&" : "", name, e ? e : "");
	curl_free(e);
}

/* One AssumeRoleWithWebIdentity request with the token read from its file
 * now (projected tokens rotate). */
static int sts_assume(const char *role, const char *token_file, const char *session,
		      struct aws_creds *out, char **error)
{
	struct buf token = BUF_INIT, form = BUF_INIT, reply = BUF_INIT;
	char *url = sts_endpoint();
	int rc = buf_read_file(token_file, AWS_FILE_MAX, &token);
	CURL *h = NULL;
	if (rc < 0) {
		*error = xasprintf("web identity token file %s: %s", token_file, sb_strerror(rc));
		goto out;
	}
	char *tok = trim((char *)buf_cstr(&token));
	if (!*tok) {
		*error = xasprintf("web identity token file %s is empty", token_file);
		rc = SB_ECONFIG;
		goto out;
	}
	h = curl_easy_init();
	if (!h)
		fatal("curl_easy_init");
	form_add(&form, h, "Action", "AssumeRoleWithWebIdentity");
	form_add(&form, h, "RoleArn", role);
	form_add(&form, h, "RoleSessionName", session);
	form_add(&form, h, "Version", AWS_STS_VERSION);
	form_add(&form, h, "WebIdentityToken", tok);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, buf_cstr(&form));
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sts_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &reply);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)AWS_STS_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	CURLcode cc = curl_easy_perform(h);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (cc != CURLE_OK) {
		*error = xasprintf("STS %s: %s", url, curl_easy_strerror(cc));
		rc = SB_EHTTP;
	} else if (status != 200) {
		static const char *const paths[] = {"ErrorResponse/Error/Code",
						    "ErrorResponse/Error/Message"};
		char *v[2] = {NULL, NULL}, err[XML_ERR_MAX];
		xml_pick((const char *)reply.ptr, reply.len, paths, 2, v, err);
		*error = xasprintf("STS %s: AssumeRoleWithWebIdentity for %s: HTTP %ld%s%s%s%s",
				   url, role, status, v[0] ? " " : "", v[0] ? v[0] : "",
				   v[1] ? ": " : "", v[1] ? v[1] : "");
		free(v[0]);
		free(v[1]);
		rc = status >= 500 ? SB_EHTTP5XX : SB_EDENIED;
	} else {
		char *why = NULL;
		rc = aws_sts_parse((const char *)reply.ptr, reply.len, out, &why);
		if (rc < 0)
			*error = xasprintf("STS %s: %s", url, why);
		free(why);
	}
	if (rc == 0)
		out->origin = xasprintf("web identity (%s)", role);
out:
	if (h)
		curl_easy_cleanup(h);
	if (token.ptr)
		sodium_memzero(token.ptr, token.cap);
	buf_close(&token);
	buf_close(&form);
	buf_close(&reply);
	free(url);
	return rc;
}

/* A renewal of the cached web identity credentials in the background. */
struct renewal {
	char *key, *role, *file, *session;
};
static int renewing; /* under cache_lock */

static void renewal_free(struct renewal *r)
{
	free(r->key);
	free(r->role);
	free(r->file);
	free(r->session);
	free(r);
}

static void *renew_run(void *arg)
{
	struct renewal *r = arg;
	struct aws_creds fresh = {0};
	char *error = NULL;
	int rc = sts_assume(r->role, r->file, r->session, &fresh, &error);
	pthread_mutex_lock(&cache_lock);
	if (rc == 0 && cache_key && !strcmp(cache_key, r->key)) {
		aws_creds_close(&cache);
		creds_copy(&cache, &fresh);
		log_info("aws: credentials from %s renewed, valid until %lld", fresh.origin,
			 (long long)fresh.expires);
	} else if (rc < 0) {
		log_warn("aws: renewing credentials failed (%s); the current ones stay until "
			 "shortly before they expire",
			 error ? error : "unknown error");
	}
	renewing = 0;
	pthread_mutex_unlock(&cache_lock);
	aws_creds_close(&fresh);
	free(error);
	renewal_free(r);
	return NULL;
}

/* Under cache_lock: start renewing in the background unless that runs. */
static void renew_soon(const char *key, const char *role, const char *file, const char *session)
{
	if (renewing)
		return;
	struct renewal *r = xcalloc(1, sizeof *r);
	r->key = xstrdup(key);
	r->role = xstrdup(role);
	r->file = xstrdup(file);
	r->session = xstrdup(session);
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	renewing = pthread_create(&t, &attr, renew_run, r) == 0;
	pthread_attr_destroy(&attr);
	if (!renewing) /* the next request tries again */
		renewal_free(r);
}

/* Web identity from the environment, else from the profile's role_arn and
 * web_identity_token_file. 0 with *found 0 when neither names one. */
static int web_identity(struct aws_creds *out, int *found, char **error)
{
	const char *role = env("AWS_ROLE_ARN"), *file = env("AWS_WEB_IDENTITY_TOKEN_FILE");
	char *prole = NULL, *pfile = NULL, *psession = NULL;
	int rc = 0;
	*found = 0;
	if (!role != !file) {
		*error = xasprintf("%s is set but %s is not; set both for web identity",
				   role ? "AWS_ROLE_ARN" : "AWS_WEB_IDENTITY_TOKEN_FILE",
				   role ? "AWS_WEB_IDENTITY_TOKEN_FILE" : "AWS_ROLE_ARN");
		return SB_ECONFIG;
	}
	if (!role) {
		if ((rc = aws_config_get("role_arn", &prole, error)) < 0 ||
		    (rc = aws_config_get("web_identity_token_file", &pfile, error)) < 0 ||
		    (rc = aws_config_get("role_session_name", &psession, error)) < 0 || !prole ||
		    !pfile)
			goto out;
		role = prole;
		file = pfile;
	}
	*found = 1;
	char *key = xasprintf("%s\n%s", role, file);
	time_t now = time(NULL);
	const char *session = env("AWS_ROLE_SESSION_NAME");
	char *made = session || psession ? NULL : xasprintf("syncbit-%lld", (long long)now);
	const char *use = session ? session : psession ? psession : made;
	pthread_mutex_lock(&cache_lock);
	int cached = cache_key && !strcmp(cache_key, key);
	if (cached && now + AWS_CREDS_REFRESH_S < cache.expires) {
		creds_copy(out, &cache);
	} else if (cached && now + AWS_CREDS_URGENT_S < cache.expires) {
		/* Still good for a while: callers go on with them, new ones
		 * are fetched beside (a slow STS holds nobody up). */
		creds_copy(out, &cache);
		renew_soon(key, role, file, use);
	} else {
		rc = sts_assume(role, file, use, out, error);
		if (rc == 0) {
			aws_creds_close(&cache);
			creds_copy(&cache, out);
			free(cache_key);
			cache_key = key;
			key = NULL;
			log_info("aws: credentials from %s, valid until %lld", out->origin,
				 (long long)out->expires);
		}
	}
	pthread_mutex_unlock(&cache_lock);
	free(key);
	free(made);
out:
	free(prole);
	free(pfile);
	free(psession);
	return rc;
}

/* ---- the chain ---- */

/* aws_access_key_id and its partners from one shared file's profile. */
static int file_keys(int config_file, struct aws_creds *out, int *has_profile, char **error)
{
	const char *var = config_file ? "AWS_CONFIG_FILE" : "AWS_SHARED_CREDENTIALS_FILE";
	const char *name = config_file ? "config" : "credentials";
	char *id = NULL, *secret = NULL, *token = NULL;
	int rc;
	if ((rc = file_get(var, name, config_file, "aws_access_key_id", &id, has_profile, error)) <
		0 ||
	    (rc = file_get(var, name, config_file, "aws_secret_access_key", &secret, NULL, error)) <
		0 ||
	    (rc = file_get(var, name, config_file, "aws_session_token", &token, NULL, error)) < 0)
		goto out;
	if (!id != !secret) {
		char *path = file_path(var, name);
		*error =
		    xasprintf("AWS %s file %s: profile %s has %s but not %s", name, path,
			      profile_name(), id ? "aws_access_key_id" : "aws_secret_access_key",
			      id ? "aws_secret_access_key" : "aws_access_key_id");
		free(path);
		rc = SB_ECONFIG;
		goto out;
	}
	if (id) {
		char *path = file_path(var, name);
		out->access_key = id;
		out->secret_key = secret;
		out->session_token = token;
		out->origin = xasprintf("%s, profile %s", path, profile_name());
		free(path);
		id = secret = token = NULL;
	}
out:
	free(id);
	free(secret);
	free(token);
	return rc;
}

int aws_creds_get(struct aws_creds *out, char **error)
{
	const char *id = env("AWS_ACCESS_KEY_ID"), *secret = env("AWS_SECRET_ACCESS_KEY");
	int found = 0, in_creds = 0, in_config = 0, rc;
	memset(out, 0, sizeof *out);
	*error = NULL;
	if (!id != !secret) {
		*error = xasprintf("%s is set but %s is not; set both, or neither for "
				   "anonymous access",
				   id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
				   id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
		return SB_ECONFIG;
	}
	if (id) {
		const char *token = env("AWS_SESSION_TOKEN");
		out->access_key = xstrdup(id);
		out->secret_key = xstrdup(secret);
		out->session_token = token ? xstrdup(token) : NULL;
		out->origin = xstrdup("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
		return 0;
	}
	if ((rc = web_identity(out, &found, error)) < 0 || found)
		return rc;
	if ((rc = file_keys(0, out, &in_creds, error)) < 0 || out->access_key)
		return rc;
	if ((rc = file_keys(1, out, &in_config, error)) < 0 || out->access_key)
		return rc;
	if (env("AWS_PROFILE") && !in_creds && !in_config) {
		char *c = file_path("AWS_SHARED_CREDENTIALS_FILE", "credentials");
		char *f = file_path("AWS_CONFIG_FILE", "config");
		*error = xasprintf("AWS_PROFILE %s: no [%s] in %s nor [profile %s] in %s",
				   profile_name(), profile_name(), c ? c : "~/.aws/credentials",
				   profile_name(), f ? f : "~/.aws/config");
		free(c);
		free(f);
		return SB_ECONFIG;
	}
	return 0;
}

int aws_region_valid(const char *r)
{
	size_t n = strlen(r);
	if (n == 0 || n >= AWS_REGION_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!(r[i] >= 'a' && r[i] <= 'z') && !(r[i] >= '0' && r[i] <= '9') && r[i] != '-')
			return 0;
	return 1;
}
