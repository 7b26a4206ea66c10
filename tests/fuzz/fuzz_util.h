/* What the libFuzzer targets share: the entry points, a check that aborts
 * (libFuzzer then keeps the input as a crash), and small helpers to turn
 * the input into C strings and parts. Header-only: each target is one
 * file. */
#ifndef SYNCBIT_FUZZ_UTIL_H
#define SYNCBIT_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define fuzz_check(ok, what) fuzz_check_at((ok), (what), __FILE__, __LINE__)

static inline void fuzz_check_at(int ok, const char *what, const char *file, int line)
{
	if (!ok) {
		fprintf(stderr, "%s:%d: %s\n", file, line, what);
		abort();
	}
}

/* The bytes as a heap C string (they may hold NULs: the string ends at the
 * first). */
static inline char *fuzz_cstr(const uint8_t *d, size_t n)
{
	char *s = malloc(n + 1);
	if (!s)
		abort();
	if (n)
		memcpy(s, d, n);
	s[n] = '\0';
	return s;
}

/* 1 when s holds no line break: what goes into one line of a message. */
static inline int fuzz_one_line(const char *s)
{
	return !s || !strpbrk(s, "\r\n");
}

/* 1 when s holds no control byte (below 0x20, or 0x7f). */
static inline int fuzz_no_control(const char *s)
{
	for (; s && *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

/* The next part of *d (up to the separator sep, which is dropped) as a
 * heap C string; NULL when nothing is left. */
static inline char *fuzz_part(const uint8_t **d, size_t *n, const char *sep)
{
	if (*n == 0)
		return NULL;
	size_t k = strlen(sep), len = *n, skip = 0;
	for (size_t i = 0; k && i + k <= *n; i++)
		if (!memcmp(*d + i, sep, k)) {
			len = i;
			skip = k;
			break;
		}
	char *s = fuzz_cstr(*d, len);
	*d += len + skip;
	*n -= len + skip;
	return s;
}

/* A new temp directory for files a target must hand over by path (heap;
 * the caller removes it): in /dev/shm when there is one, where writing a
 * file per input costs microseconds instead of a journal commit. */
static inline char *fuzz_tempdir(const char *name)
{
	static const char *const bases[] = {"/dev/shm", NULL, "/tmp"};
	const char *env = getenv("TMPDIR");
	for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
		const char *base = bases[i] ? bases[i] : env;
		char *dir;
		if (!base || !*base || asprintf(&dir, "%s/syncbit-fuzz-%s.XXXXXX", base, name) < 0)
			continue;
		if (mkdtemp(dir))
			return dir;
		free(dir);
	}
	abort();
}

#endif
