/* The version of Syncbit, reported by `syncbit version`, in startup log
 * lines and in Register. */
#ifndef SYNCBIT_VERSION_H
#define SYNCBIT_VERSION_H

#define SYNCBIT_VERSION "0.2.0"

/* The git commit the binary was built from (`git describe --always
 * --dirty`, set by the Makefile), or "unknown" outside a git checkout. */
const char *syncbit_commit(void);

#endif
