/* Shared by the unit tests: cmocka and temp-directory helpers. */
#ifndef SYNCBIT_TESTUTIL_H
#define SYNCBIT_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef __clang_analyzer__
/* A failed cmocka assertion ends the test (cmocka jumps out of it), but its
 * header does not say so, and clang's static analyzer (make lint) would
 * follow a failed one on into paths that never run. For the analyzer only,
 * the assertions the tests use end the path where they fail; each operand
 * is evaluated once, as in cmocka. */
void _fail(const char *const file, const int line) __attribute__((analyzer_noreturn));

static inline void testutil_assert(int ok, const char *file, int line)
{
	if (!ok)
		_fail(file, line);
}

static inline void testutil_assert_int(LargestIntegralType a, LargestIntegralType b, int equal,
				       const char *file, int line)
{
	testutil_assert((a == b) == equal, file, line);
}

static inline void testutil_assert_str(const char *a, const char *b, int equal, const char *file,
				       int line)
{
	testutil_assert(a && b && (strcmp(a, b) == 0) == equal, file, line);
}

static inline void testutil_assert_mem(const void *a, const void *b, size_t n, int equal,
				       const char *file, int line)
{
	testutil_assert((memcmp(a, b, n) == 0) == equal, file, line);
}

#undef assert_true
#undef assert_false
#undef assert_non_null
#undef assert_null
#undef assert_ptr_equal
#undef assert_int_equal
#undef assert_int_not_equal
#undef assert_string_equal
#undef assert_string_not_equal
#undef assert_memory_equal
#undef assert_memory_not_equal
#define assert_true(c)	   testutil_assert(cast_to_largest_integral_type(c) != 0, __FILE__, __LINE__)
#define assert_false(c)	   testutil_assert(cast_to_largest_integral_type(c) == 0, __FILE__, __LINE__)
#define assert_non_null(c) testutil_assert((c) != NULL, __FILE__, __LINE__)
#define assert_null(c)	   testutil_assert((c) == NULL, __FILE__, __LINE__)
#define assert_ptr_equal(a, b)                                    \
	testutil_assert_int(cast_ptr_to_largest_integral_type(a), \
			    cast_ptr_to_largest_integral_type(b), 1, __FILE__, __LINE__)
#define assert_int_equal(a, b)                                                                     \
	testutil_assert_int(cast_to_largest_integral_type(a), cast_to_largest_integral_type(b), 1, \
			    __FILE__, __LINE__)
#define assert_int_not_equal(a, b)                                                                 \
	testutil_assert_int(cast_to_largest_integral_type(a), cast_to_largest_integral_type(b), 0, \
			    __FILE__, __LINE__)
#define assert_string_equal(a, b)	 testutil_assert_str((a), (b), 1, __FILE__, __LINE__)
#define assert_string_not_equal(a, b)	 testutil_assert_str((a), (b), 0, __FILE__, __LINE__)
#define assert_memory_equal(a, b, n)	 testutil_assert_mem((a), (b), (n), 1, __FILE__, __LINE__)
#define assert_memory_not_equal(a, b, n) testutil_assert_mem((a), (b), (n), 0, __FILE__, __LINE__)
#endif

/* Make a fresh temp dir (heap path); removed by testutil_rmtree. */
static inline char *testutil_mkdtemp(void)
{
	char tmpl[] = "/tmp/syncbit-unit-XXXXXX";
	char *d = mkdtemp(tmpl);
	if (!d)
		return NULL;
	char *out = malloc(strlen(d) + 1);
	memcpy(out, d, strlen(d) + 1);
	return out;
}

static inline void testutil_rmtree(char *dir)
{
	if (!dir)
		return;
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	free(dir);
}

#endif
