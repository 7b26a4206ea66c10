/* Whole-file digest checks against the forms sources give: sha256:<hex>
 * and git:<blob id>; other kinds are not checks. */
#include "tests/unit/testutil.h"

#include <fcntl.h>

#include "common/err.h"
#include "common/hash.h"

static int temp_file(const char *content)
{
	char tmpl[] = "/tmp/syncbit-hash-XXXXXX";
	int fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	unlink(tmpl);
	assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	return fd;
}

static void test_digests(void **state)
{
	int fd = temp_file("hello\n");
	/* sha256sum and git hash-object of "hello\n" */
	assert_int_equal(
	    hash_check_digest_fd(
		fd, 6, "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"),
	    0);
	assert_int_equal(
	    hash_check_digest_fd(fd, 6, "git:ce013625030ba8dba906f756967f9e9ca394464a"), 0);
	assert_int_equal(
	    hash_check_digest_fd(
		fd, 6, "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be04"),
	    SB_ECORRUPT);
	assert_int_equal(
	    hash_check_digest_fd(fd, 6, "git:ce013625030ba8dba906f756967f9e9ca394464b"),
	    SB_ECORRUPT);
	/* a size past the end is a short file, not a match */
	assert_int_equal(
	    hash_check_digest_fd(fd, 7, "git:ce013625030ba8dba906f756967f9e9ca394464a"),
	    SB_ETRUNCATED);
	assert_int_equal(hash_check_digest_fd(fd, 6, "etag:abc"), 1);
	assert_int_equal(hash_check_digest_fd(fd, 6, "sha256:xyz"), 1);
	assert_int_equal(hash_check_digest_fd(fd, 6, NULL), 1);
	close(fd);
	fd = temp_file("");
	assert_int_equal(
	    hash_check_digest_fd(
		fd, 0, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
	    0);
	assert_int_equal(
	    hash_check_digest_fd(fd, 0, "git:e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"), 0);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_digests),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
