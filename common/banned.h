/* Unsafe libc calls made unusable (included into every translation unit by the
 * Makefile). Use snprintf, the buf helpers and strtoull with range checks. */
#ifndef SYNCBIT_BANNED_H
#define SYNCBIT_BANNED_H
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#define BANNED(fn) sorry_##fn##_is_banned
#undef strcpy
#define strcpy(a, b) BANNED(strcpy)
#undef strcat
#define strcat(a, b) BANNED(strcat)
#undef sprintf
#define sprintf(...) BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) BANNED(vsprintf)
#undef gets
#define gets(a) BANNED(gets)
#undef strtok
#define strtok(a, b) BANNED(strtok)
#undef atoi
#define atoi(a) BANNED(atoi)
#endif
