/* AWS credentials and settings: the shared files' INI form (profiles,
 * [profile x] in the config file, comments, sub-settings, malformed lines),
 * the order environment > web identity > credentials file > config file,
 * region and endpoint_url from the config file, and AssumeRoleWithWebIdentity
 * answers as the STS API reference documents them. */
#include "testutil.h"

#include <errno.h>

#include "common/source/aws_creds.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/source/s3_api.h"

static const char *const aws_vars[] = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
};

static char *dir;

static void write_file(const char *name, const char *text)
{
	char *p = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	free(p);
}

static void set_path(const char *var, const char *name)
{
	char *p = xasprintf("%s/%s", dir, name);
	setenv(var, p, 1);
	free(p);
}

static int setup(void **state)
{
	for (size_t i = 0; i < sizeof aws_vars / sizeof *aws_vars; i++)
		unsetenv(aws_vars[i]);
	dir = testutil_mkdtemp();
	setenv("HOME", dir, 1); /* no ~/.aws of the machine's */
	return dir ? 0 : -1;
}

static int teardown(void **state)
{
	testutil_rmtree(dir);
	dir = NULL;
	return 0;
}

static char *ini(const char *text, int config, const char *profile, const char *key, int *has)
{
	char *out = NULL, *error = NULL;
	assert_int_equal(aws_ini_get(text, config, profile, key, &out, has, &error), 0);
	assert_null(error);
	return out;
}

static void test_ini_credentials_file(void **state)
{
	const char *t = "# comment\n"
			"; another\n"
			"[default]\n"
			"aws_access_key_id = AKDEFAULT\n"
			"aws_secret_access_key=SKDEFAULT  \n"
			"\n"
			"[ prod ]  # trailing comment\n"
			"AWS_ACCESS_KEY_ID = AKPROD\n"
			"aws_secret_access_key = a=b=c\n"
			"[profile prod]\n"
			"aws_access_key_id = NOT-IN-A-CREDENTIALS-FILE\n";
	int has = 0;
	char *v = ini(t, 0, "default", "aws_access_key_id", &has);
	assert_string_equal(v, "AKDEFAULT");
	assert_true(has);
	free(v);
	v = ini(t, 0, "default", "aws_secret_access_key", NULL);
	assert_string_equal(v, "SKDEFAULT");
	free(v);
	v = ini(t, 0, "prod", "aws_access_key_id", NULL);
	assert_string_equal(v, "AKPROD"); /* keys in any case */
	free(v);
	v = ini(t, 0, "prod", "aws_secret_access_key", NULL);
	assert_string_equal(v, "a=b=c"); /* the first '=' splits */
	free(v);
	assert_null(ini(t, 0, "prod", "aws_session_token", NULL));
	assert_null(ini(t, 0, "staging", "aws_access_key_id", &has));
	assert_false(has);
}

static void test_ini_config_file(void **state)
{
	const char *t = "[default]\n"
			"region = eu-west-1\n"
			"[profile ci]\n"
			"region = us-west-2\n"
			"s3 =\n"
			"  region = not-a-top-level-key\n"
			"  endpoint_url = http://nested\n"
			"endpoint_url = http://minio:9000\n"
			"[ci]\n"
			"region = bare-names-are-other-sections\n"
			"[sso-session ci]\n"
			"region = neither\n"
			"[profile empty]\n"
			"region =\n";
	char *v = ini(t, 1, "default", "region", NULL);
	assert_string_equal(v, "eu-west-1");
	free(v);
	v = ini(t, 1, "ci", "region", NULL);
	assert_string_equal(v, "us-west-2");
	free(v);
	v = ini(t, 1, "ci", "endpoint_url", NULL);
	assert_string_equal(v, "http://minio:9000");
	free(v);
	int has = 0;
	assert_null(ini(t, 1, "empty", "region", &has)); /* an empty value is unset */
	assert_true(has);
	v = ini("[profile default]\nregion = ap-south-1\n", 1, "default", "region", NULL);
	assert_string_equal(v, "ap-south-1");
	free(v);
}

static void test_ini_malformed(void **state)
{
	static const char *const bad[] = {
	    "[default]\nno equals sign here\n",
	    "[default\nregion = x\n",
	    "[default] junk\nregion = x\n",
	};
	static const int line[] = {2, 1, 1};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char *out = NULL, *error = NULL;
		assert_int_equal(aws_ini_get(bad[i], 1, "default", "region", &out, NULL, &error),
				 SB_ECONFIG);
		assert_null(out);
		char want[32];
		snprintf(want, sizeof want, "line %d: ", line[i]);
		assert_non_null(strstr(error, want));
		free(error);
	}
}

static void get(struct aws_creds *c, int want_rc, char **error)
{
	*error = NULL;
	assert_int_equal(aws_creds_get(c, error), want_rc);
	if (want_rc == 0)
		assert_null(*error);
	else
		assert_non_null(*error);
}

static void test_precedence(void **state)
{
	struct aws_creds c;
	char *error;
	write_file("credentials", "[default]\naws_access_key_id = AKFILE\n"
				  "aws_secret_access_key = SKFILE\naws_session_token = TFILE\n"
				  "[only-config]\n");
	write_file("config", "[default]\naws_access_key_id = AKCONFIG\n"
			     "aws_secret_access_key = SKCONFIG\n"
			     "[profile only-config]\naws_access_key_id = AKC2\n"
			     "aws_secret_access_key = SKC2\n");
	set_path("AWS_SHARED_CREDENTIALS_FILE", "credentials");
	set_path("AWS_CONFIG_FILE", "config");

	/* Nothing set in the environment: the credentials file. */
	get(&c, 0, &error);
	assert_string_equal(c.access_key, "AKFILE");
	assert_string_equal(c.session_token, "TFILE");
	assert_int_equal(c.expires, 0);
	assert_non_null(strstr(c.origin, "profile default"));
	aws_creds_close(&c);

	/* A profile only the config file holds keys for. */
	setenv("AWS_PROFILE", "only-config", 1);
	get(&c, 0, &error);
	assert_string_equal(c.access_key, "AKC2");
	aws_creds_close(&c);

	/* A profile in neither file. */
	setenv("AWS_PROFILE", "nope", 1);
	get(&c, SB_ECONFIG, &error);
	assert_non_null(strstr(error, "AWS_PROFILE nope"));
	free(error);
	unsetenv("AWS_PROFILE");

	/* Web identity comes before the files: a token file that cannot be
	 * read fails rather than falling through to the file's keys. */
	setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/r", 1);
	set_path("AWS_WEB_IDENTITY_TOKEN_FILE", "no-token");
	get(&c, -ENOENT, &error);
	assert_non_null(strstr(error, "web identity token file"));
	free(error);
	/* An STS that cannot be reached is one line naming it. */
	write_file("token", "jwt\n");
	set_path("AWS_WEB_IDENTITY_TOKEN_FILE", "token");
	setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:1", 1);
	get(&c, SB_EHTTP, &error);
	assert_non_null(strstr(error, "STS http://127.0.0.1:1"));
	free(error);
	unsetenv("AWS_WEB_IDENTITY_TOKEN_FILE");
	get(&c, SB_ECONFIG, &error); /* the role without its token */
	assert_non_null(strstr(error, "AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE"));
	free(error);

	/* The environment's keys come first of all. */
	setenv("AWS_ACCESS_KEY_ID", "AKENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "SKENV", 1);
	get(&c, 0, &error);
	assert_string_equal(c.access_key, "AKENV");
	assert_string_equal(c.secret_key, "SKENV");
	assert_null(c.session_token);
	aws_creds_close(&c);
	unsetenv("AWS_SECRET_ACCESS_KEY");
	get(&c, SB_ECONFIG, &error); /* half a pair */
	assert_non_null(strstr(error, "AWS_SECRET_ACCESS_KEY is not"));
	free(error);
}

static void test_half_pair_in_file_and_anonymous(void **state)
{
	struct aws_creds c;
	char *error;
	write_file("credentials", "[default]\naws_access_key_id = AKONLY\n");
	set_path("AWS_SHARED_CREDENTIALS_FILE", "credentials");
	get(&c, SB_ECONFIG, &error);
	assert_non_null(strstr(error, "has aws_access_key_id but not aws_secret_access_key"));
	free(error);
	/* No files at all (HOME has no .aws): anonymous. */
	unsetenv("AWS_SHARED_CREDENTIALS_FILE");
	get(&c, 0, &error);
	assert_null(c.access_key);
	aws_creds_close(&c);
}

static void test_config_region_and_endpoint(void **state)
{
	struct s3_config c;
	char *detail = NULL;
	write_file("config", "[profile minio]\nregion = eu-central-1\n"
			     "endpoint_url = http://minio.local:9000\n");
	set_path("AWS_CONFIG_FILE", "config");
	setenv("AWS_PROFILE", "minio", 1);
	assert_int_equal(s3_config_init(&c, "b", NULL, NULL, -1, &detail), 0);
	assert_string_equal(c.region, "eu-central-1");
	assert_string_equal(c.host, "minio.local:9000");
	assert_true(c.path_style);
	s3_config_close(&c);
	/* The environment and flags win over the file. */
	setenv("AWS_REGION", "us-west-1", 1);
	assert_int_equal(s3_config_init(&c, "b", "http://flag:1", NULL, -1, &detail), 0);
	assert_string_equal(c.region, "us-west-1");
	assert_string_equal(c.host, "flag:1");
	s3_config_close(&c);
}

static const char sts_ok[] =
    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
    "  <AssumeRoleWithWebIdentityResult>\n"
    "    <SubjectFromWebIdentityToken>sub</SubjectFromWebIdentityToken>\n"
    "    <AssumedRoleUser><Arn>arn</Arn><AssumedRoleId>id</AssumedRoleId></AssumedRoleUser>\n"
    "    <Credentials>\n"
    "      <SessionToken>AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE</SessionToken>\n"
    "      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>\n"
    "      <Expiration>2014-10-24T23:00:23Z</Expiration>\n"
    "      <AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>\n"
    "    </Credentials>\n"
    "    <Provider>www.amazon.com</Provider>\n"
    "  </AssumeRoleWithWebIdentityResult>\n"
    "  <ResponseMetadata><RequestId>ad4156e9</RequestId></ResponseMetadata>\n"
    "</AssumeRoleWithWebIdentityResponse>\n";

static void test_sts_parse(void **state)
{
	struct aws_creds c;
	char *error = NULL;
	assert_int_equal(aws_sts_parse(sts_ok, strlen(sts_ok), &c, &error), 0);
	assert_string_equal(c.access_key, "ASgeIAIOSFODNN7EXAMPLE");
	assert_string_equal(c.secret_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY");
	assert_string_equal(c.session_token, "AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE");
	assert_int_equal(c.expires, 1414191623);
	aws_creds_close(&c);

	struct {
		const char *from, *to, *why;
	} bad[] = {
	    {"<AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>", "", "without AccessKeyId"},
	    {"2014-10-24T23:00:23Z", "tomorrow", "Expiration 'tomorrow'"},
	    {"</Credentials>", "</Credential>", "malformed AssumeRoleWithWebIdentity answer"},
	    {"<SessionToken>", "<!DOCTYPE x><SessionToken>", "malformed"},
	    /* Found by tests/fuzz/fuzz_sts: a decoded line break would go into
	     * a request header line, or split the message. */
	    {"ASgeIAIOSFODNN7EXAMPLE", "ASge&#13;&#10;X-Evil: 1", "AccessKeyId holds a control"},
	    {"+IEXAMPLE", "&#9;", "SessionToken holds a control"},
	    {"2014-10-24T23:00:23Z", "2014&#10;", "Expiration holds a control"},
	    {"<SessionToken>", "<SessionToken>&bad\n;", "unknown entity &bad?;"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct buf b = BUF_INIT;
		const char *at = strstr(sts_ok, bad[i].from);
		buf_append(&b, sts_ok, (size_t)(at - sts_ok));
		buf_append_str(&b, bad[i].to);
		buf_append_str(&b, at + strlen(bad[i].from));
		error = NULL;
		assert_int_equal(aws_sts_parse((const char *)b.ptr, b.len, &c, &error), SB_EPROTO);
		assert_null(c.access_key);
		assert_non_null(strstr(error, bad[i].why));
		assert_null(strpbrk(error, "\r\n"));
		free(error);
		buf_close(&b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ini_credentials_file),
	    cmocka_unit_test(test_ini_config_file),
	    cmocka_unit_test(test_ini_malformed),
	    cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_half_pair_in_file_and_anonymous, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_config_region_and_endpoint, setup, teardown),
	    cmocka_unit_test(test_sts_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
