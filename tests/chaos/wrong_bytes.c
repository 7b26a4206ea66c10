/* LD_PRELOAD shim for the chaos suite: a peer that sends wrong bytes. An
 * agent without encryption hands block payloads to the socket with
 * sendfile(2); under this shim every CHAOS_WRONG_EVERY-th sendfile (1: all)
 * sends the file's bytes with one byte flipped, at CHAOS_WRONG_AT modulo the
 * length. The file on disk is never changed: the node holds good blocks and
 * serves bad ones, as a node with a bad NIC, bad RAM or bad intent would.
 * Each corrupted call is counted in the file CHAOS_WRONG_LOG (one line).
 * Build: cc -shared -fPIC -o wrong_bytes.so THIS. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/types.h>
#include <unistd.h>

static atomic_ulong calls;

static unsigned long env_ul(const char *name, unsigned long def)
{
	const char *v = getenv(name);
	return v && *v ? strtoul(v, NULL, 10) : def;
}

static void note(void)
{
	const char *p = getenv("CHAOS_WRONG_LOG");
	if (!p)
		return;
	int fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0) {
		(void)!write(fd, "wrong\n", 6);
		close(fd);
	}
}

ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
	static char buf[1 << 16];
	unsigned long every = env_ul("CHAOS_WRONG_EVERY", 1);
	unsigned long n = atomic_fetch_add(&calls, 1);
	off_t at = offset ? *offset : lseek(in_fd, 0, SEEK_CUR);
	if (at < 0)
		return -1;
	if (count > sizeof buf)
		count = sizeof buf;
	/* Concurrent calls would share buf: one at a time. */
	static atomic_flag busy = ATOMIC_FLAG_INIT;
	while (atomic_flag_test_and_set(&busy))
		;
	ssize_t r = pread(in_fd, buf, count, at);
	if (r <= 0) {
		atomic_flag_clear(&busy);
		return r;
	}
	size_t flip = env_ul("CHAOS_WRONG_AT", 0) % (size_t)r;
	int corrupt = every && n % every == 0;
	if (corrupt)
		buf[flip] ^= 0x5a;
	ssize_t w = write(out_fd, buf, (size_t)r);
	int err = errno;
	atomic_flag_clear(&busy);
	if (w < 0) {
		errno = err;
		return -1;
	}
	if (corrupt && (size_t)w > flip)
		note();
	if (offset)
		*offset = at + w;
	else
		lseek(in_fd, at + w, SEEK_SET);
	return w;
}

ssize_t sendfile64(int out_fd, int in_fd, off_t *offset, size_t count)
    __attribute__((alias("sendfile")));
