/* The version of Syncbit, reported by `syncbit version` and in Register. */
#ifndef SYNCBIT_VERSION_H
#define SYNCBIT_VERSION_H

#define SYNCBIT_VERSION "0.2.0"

#endif
