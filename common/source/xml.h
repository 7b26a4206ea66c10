/* A small bounded XML scanner for the answers of AWS-style APIs (S3's
 * ListObjectsV2 and Error documents, STS's AssumeRoleWithWebIdentity): it
 * walks a document once, calling back at each element's start and end with
 * the names of the open elements and the decoded text directly inside; it
 * refuses DTDs, entities other than the five predefined ones and character
 * references, and anything nested, named or sized past the limits below.
 * Pure functions on bytes from the wire; thread-safe. */
#ifndef SYNCBIT_SOURCE_XML_H
#define SYNCBIT_SOURCE_XML_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define XML_DEPTH_MAX 16   /* nesting of elements */
#define XML_NAME_MAX  64   /* bytes of an element name */
#define XML_TEXT_MAX  8192 /* decoded text of one element */
#define XML_ERR_MAX   160  /* one-line reason of a parse error */

enum xml_event { XML_OPEN, XML_CLOSE };

struct xml;
/* names[0..depth-1] are the open elements, innermost last; text is the
 * decoded character data directly inside the element (XML_CLOSE). Return
 * < 0 to stop with that error, after setting the reason with xml_fail. */
typedef int (*xml_cb)(struct xml *x, enum xml_event ev, const char *text, size_t len);

/* The scanner's state, read by callbacks (names, depth, arg). */
struct xml {
	const char *p, *start, *end;
	char names[XML_DEPTH_MAX][XML_NAME_MAX + 1];
	int depth;
	int roots; /* root elements seen */
	struct buf text;
	xml_cb cb;
	void *arg;
	char *err; /* XML_ERR_MAX */
};

/* Scan doc, calling cb(arg in x->arg) for every element. 0, or the first
 * error cb returned, or SB_EPROTO with a one-line reason ("byte N: what")
 * in err[XML_ERR_MAX]. */
int xml_scan(const char *doc, size_t len, xml_cb cb, void *arg, char *err);

/* Set the reason of a failure at the scanner's position; returns
 * SB_EPROTO, for a callback to return. */
int xml_fail(struct xml *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The text of the first element at each of paths ("Root/Child/Leaf", from
 * the root) of a document: out[i] (heap) or NULL when absent. 0, or
 * SB_EPROTO with the reason in err[XML_ERR_MAX] and every out[i] NULL. */
int xml_pick(const char *doc, size_t len, const char *const *paths, size_t n, char **out,
	     char *err);

/* An xsd:dateTime in UTC as AWS writes it ("2009-10-12T17:50:30.000Z") as
 * nanoseconds since the epoch; 0 or SB_EPROTO. */
int xml_parse_time(const char *s, int64_t *out);

#endif
