/* The source flags shared by pull, sync, scheduler, daemon and dataset add:
 * how to reach S3 and registries (a process's whole life), how much a
 * source may claim, and which part of an oci:// source a dataset is (its
 * platform and tag regex, written into the source's identity). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/source/filter.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/source/oci_doc.h"
#include "common/source/source.h"
#include "common/uri.h"

/* A credentials file is one short line. */
#define REGISTRY_USER_FILE_MAX 4096

static int s3_path_style(struct config *cfg, int *out)
{
	int on = 0;
	*out = 0;
	if (!config_get(cfg, "s3-path-style"))
		return 0;
	if (config_get_bool(cfg, "s3-path-style", &on) < 0) {
		cli_error("%s", cfg->error);
		return EXIT_USAGE;
	}
	*out = on ? 1 : 2;
	return 0;
}

/* --registry-user-file: its first line becomes --registry-user's value
 * (kept by cfg). 0 or EXIT_USAGE. */
static int registry_user_file(struct config *cfg)
{
	const char *path = config_get(cfg, "registry-user-file");
	struct buf b = BUF_INIT;
	if (!path)
		return 0;
	if (config_get(cfg, "registry-user")) {
		cli_error("--registry-user-file and --registry-user: give one");
		return EXIT_USAGE;
	}
	int rc = buf_read_file(path, REGISTRY_USER_FILE_MAX, &b);
	if (rc < 0) {
		cli_error("--registry-user-file %s: %s", path, sb_strerror(rc));
		buf_close(&b);
		return EXIT_USAGE;
	}
	const char *text = buf_cstr(&b);
	char *line = xstrndup(text, strcspn(text, "\r\n"));
	if (!strchr(line, ':')) {
		cli_error("--registry-user-file %s: expected user:password on its first line",
			  path);
		rc = EXIT_USAGE;
	} else {
		config_set(cfg, "registry-user", line, CONFIG_FLAG);
		rc = 0;
	}
	explicit_bzero(line, strlen(line));
	free(line);
	explicit_bzero(b.ptr, b.len);
	buf_close(&b);
	return rc;
}

int cli_source_access(struct config *cfg, struct source_options *o)
{
	if (config_get(cfg, "registry-user") &&
	    config_origin_of(cfg, "registry-user") == CONFIG_FLAG)
		log_warn("--registry-user is deprecated: other users see it in ps; give "
			 "--registry-user-file FILE, $REGISTRY_AUTH or an auth file "
			 "(REGISTRY_AUTH_FILE, ~/.docker/config.json)");
	if (registry_user_file(cfg))
		return EXIT_USAGE;
	const char *user = config_get(cfg, "registry-user");
	const char *endpoint = config_get(cfg, "s3-endpoint");
	if (s3_path_style(cfg, &o->s3.path_style))
		return EXIT_USAGE;
	if (endpoint && strncmp(endpoint, "http://", 7) && strncmp(endpoint, "https://", 8)) {
		cli_error("--s3-endpoint %s: expected an http:// or https:// URL", endpoint);
		return EXIT_USAGE;
	}
	if (user && !strchr(user, ':')) {
		cli_error("--registry-user: expected user:password");
		return EXIT_USAGE;
	}
	o->s3.endpoint = endpoint && endpoint[0] ? endpoint : NULL;
	o->s3.region = config_get(cfg, "s3-region");
	o->oci.insecure_registries = config_get(cfg, "insecure-registry");
	o->oci.auth = user;
	o->oci.authfile = config_get(cfg, "authfile");
	return 0;
}

int cli_source_limits(struct config *cfg, struct source_options *o)
{
	uint64_t file, dataset, files, unsized;
	if (config_get_size(cfg, "max-file-size", 1, UINT64_MAX, &file) < 0 ||
	    config_get_size(cfg, "max-dataset-size", 1, UINT64_MAX, &dataset) < 0 ||
	    config_get_u64(cfg, "max-files", 1, MANIFEST_MAX_FILES, &files) < 0 ||
	    config_get_u64(cfg, "max-unsized-seconds", 1, 30 * 86400, &unsized) < 0) {
		cli_error("%s", cfg->error);
		return EXIT_USAGE;
	}
	o->limits = (struct source_limits){file, dataset, files};
	o->unsized_seconds = (unsigned)unsized;
	return 0;
}

int cli_source_dataset(struct config *cfg, const char *source, char **with)
{
	size_t nplat = 0;
	char *const *plats = config_get_list(cfg, "platform", &nplat, NULL);
	const char *tag_regex = config_get(cfg, "tag-regex");
	struct oci_platforms pf;
	*with = NULL;
	if (!nplat && !tag_regex)
		return 0;
	if (!source) {
		cli_error("--platform and --tag-regex do not go with --list: give them in an "
			  "item's URI as ?platform=OS/ARCH&tag-regex=ERE");
		return EXIT_USAGE;
	}
	if (strncasecmp(source, "oci://", 6) != 0) {
		cli_error("--platform and --tag-regex apply to oci:// sources only");
		return EXIT_USAGE;
	}
	/* --platform again (or with commas) names several. */
	struct buf joined = BUF_INIT;
	for (size_t i = 0; i < nplat; i++)
		buf_printf(&joined, "%s%s", i ? "," : "", plats[i]);
	char *platform = nplat ? buf_steal(&joined) : NULL;
	buf_close(&joined);
	if (platform && oci_platforms_parse(platform, &pf) < 0) {
		cli_error("--platform %s: expected os/arch[/variant] (e.g. linux/arm64), given at "
			  "most %d times, none twice, or all",
			  platform, OCI_PLATFORMS_MAX);
		free(platform);
		return EXIT_USAGE;
	}
	const char *repo = strchr(source + strlen("oci://"), '/');
	if (tag_regex && repo && strpbrk(repo, ":@")) {
		cli_error("--tag-regex takes oci://registry/repo without a :tag or @digest");
		free(platform);
		return EXIT_USAGE;
	}
	*with = oci_source_with(source, platform, tag_regex);
	free(platform);
	return 0;
}

int cli_check_source(const char *what, const char *source)
{
	struct source_uri u;
	int rc = uri_parse(source, &u);
	if (rc == SB_EURI) {
		cli_error("%s: '%s' is not a source: expected %s", what, source, uri_form(source));
		return EXIT_USAGE;
	}
	if (rc == 0)
		uri_close(&u);
	return 0;
}

int cli_source_filter(struct config *cfg, const char *source, struct filter *f)
{
	size_t ni = 0, ne = 0, i = 0, e = 0;
	const unsigned *ri = NULL, *re = NULL;
	char *const *inc = config_get_list(cfg, "include", &ni, &ri);
	char *const *exc = config_get_list(cfg, "exclude", &ne, &re);
	memset(f, 0, sizeof *f);
	if (!ni && !ne)
		return 0;
	if (source && !strncasecmp(source, "oci://", 6)) {
		cli_error("--include/--exclude do not apply to oci:// sources: --tag-regex picks "
			  "the tags");
		return EXIT_USAGE;
	}
	/* One ordered list of rules out of two: by the rank each item got
	 * when it was given. */
	while (i < ni || e < ne) {
		int take_inc = e == ne || (i < ni && ri[i] < re[e]);
		char *error = NULL;
		if (filter_add(f, take_inc, take_inc ? inc[i++] : exc[e++], &error) < 0) {
			cli_error("%s", error);
			free(error);
			filter_close(f);
			return EXIT_USAGE;
		}
	}
	return 0;
}
