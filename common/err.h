/* Error codes. Functions that can fail return 0 or a negative code: either
 * -errno or one of the SB_E* codes below. sb_strerror() reads either back.
 * Thread-safe. */
#ifndef SYNCBIT_ERR_H
#define SYNCBIT_ERR_H

#include <errno.h>

#define SB_ERRNO_MAP(X)                                  \
	X(PROTO, "protocol error")                       \
	X(TOOBIG, "length exceeds limit")                \
	X(TRUNCATED, "truncated input")                  \
	X(CORRUPT, "data does not match its hash")       \
	X(CONFINE, "path escapes the dataset directory") \
	X(URI, "malformed source URI")                   \
	X(SCHEME, "unsupported source scheme")           \
	X(CONFIG, "malformed configuration")             \
	X(HTTP, "HTTP request failed")                   \
	X(HTTP4XX, "HTTP client error")                  \
	X(HTTP5XX, "HTTP server error")                  \
	X(NOTFOUND, "not found")                         \
	X(DENIED, "access denied")                       \
	X(STALL, "transfer stalled")                     \
	X(CHANGED, "source changed during transfer")     \
	X(CACHE, "cache index error")                    \
	X(CANCELED, "operation canceled")                \
	X(AUTH, "authentication failed")                 \
	X(STANDBY, "not the leader")

enum sb_err {
	SB_ERR_BASE_ = -10000,
#define SB_ERR_ENUM_(name, msg) SB_E##name,
	SB_ERRNO_MAP(SB_ERR_ENUM_)
#undef SB_ERR_ENUM_
	    SB_ERR_END_
};

/* 1 when err says the disk (or the user's quota on it) is full. */
static inline int sb_no_space(int err)
{
	return err == -ENOSPC || err == -EDQUOT;
}

/* Message for a negative error code (SB_E* or -errno). Never NULL. */
const char *sb_strerror(int err);
/* Short symbolic name ("EPROTO", "ENOENT"...). Never NULL. */
const char *sb_errname(int err);

#endif
