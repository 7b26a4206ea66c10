#include "common/err.h"

#include <errno.h>
#include <string.h>

const char *sb_strerror(int err)
{
	switch (err) {
#define SB_ERR_MSG_(name, msg) \
	case SB_E##name:       \
		return msg;
		SB_ERRNO_MAP(SB_ERR_MSG_)
#undef SB_ERR_MSG_
	default:
		break;
	}
	if (err < 0 && err > -4096)
		return strerror(-err);
	return "unknown error";
}

const char *sb_errname(int err)
{
	switch (err) {
#define SB_ERR_NAME_(name, msg) \
	case SB_E##name:        \
		return "E" #name;
		SB_ERRNO_MAP(SB_ERR_NAME_)
#undef SB_ERR_NAME_
	default:
		break;
	}
	if (err < 0 && err > -4096) {
		const char *n = strerrorname_np(-err);
		return n ? n : "EUNKNOWN";
	}
	return "EUNKNOWN";
}
