/* A Kubernetes API client for the agent and the scheduler: where the API
 * server is and who we are (a kubeconfig file, or in-cluster from the
 * service account), one-shot calls, and list+watch of a collection with
 * resourceVersion, bookmarks, re-list on 410 Gone and reconnects with
 * backoff. Everything goes through one libcurl multi on the caller's libuv
 * loop; TLS is always verified. Loop thread only; callbacks never run from
 * inside the call that started the operation. */
#ifndef SYNCBIT_KUBE_H
#define SYNCBIT_KUBE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"

#define KUBE_SA_DIR	     "/var/run/secrets/kubernetes.io/serviceaccount"
#define KUBE_BODY_MAX	     (16u << 20) /* one response, or one watch event */
#define KUBE_FILE_MAX	     (1u << 20)	 /* kubeconfig, token, certificate files */
#define KUBE_WATCH_TIMEOUT_S 300	 /* asked of the server per watch request */
#define KUBE_BACKOFF_MIN_MS  500
#define KUBE_BACKOFF_MAX_MS  30000
#define KUBE_CALL_TIMEOUT_S  30

/* Where the API server is and how to prove who we are. */
struct kube_config {
	char *server;	  /* https://host:port, no trailing slash */
	struct buf ca;	  /* PEM trust anchors; empty = the system's */
	struct buf cert;  /* PEM client certificate, or empty */
	struct buf key;	  /* PEM client key, or empty */
	char *token;	  /* bearer token given inline, or NULL */
	char *token_file; /* re-read when it changes and after a 401, or NULL */
	char *namespace;  /* the context's or the service account's, or NULL */
	char *source;	  /* "kubeconfig PATH" or "in-cluster", for messages */
};

/* Load the configuration: path (--kubeconfig), else $KUBECONFIG (its first
 * file), else in-cluster when $KUBERNETES_SERVICE_HOST is set (the service
 * account directory is KUBE_SA_DIR, or $SYNCBIT_SERVICEACCOUNT_DIR). 1 when
 * loaded, 0 when nothing asks for Kubernetes, negative with *detail (one
 * heap line) when a configuration is given but unusable: a missing file, an
 * unknown context, insecure-skip-tls-verify, a plain http:// server. */
int kube_config_load(const char *path, struct kube_config *cfg, char **detail);
void kube_config_close(struct kube_config *cfg);

/* YAML text to JSON (maps, sequences, scalars as strings); NULL with
 * *detail on a syntax error. For kubeconfig files. */
json_t *kube_yaml_to_json(const char *text, size_t len, char **detail);

struct kube;
struct kube_call;
struct kube_watch;

/* A client on loop for cfg (copied). 0 or SB_EHTTP. */
int kube_new(uv_loop_t *loop, const struct kube_config *cfg, struct kube **out);
/* Stop every call and watch (no callbacks) and release the client once its
 * handles closed (the loop must run once more). NULL is a no-op. */
void kube_free(struct kube *k);
/* The namespace of the configuration, or NULL. */
const char *kube_namespace(const struct kube *k);

/* A call ended. status 0 when the server answered 2xx, else a negative
 * error; code is the HTTP status (0: no answer); body the parsed JSON answer
 * (a Status object on errors) or NULL, borrowed; detail one line. */
typedef void (*kube_call_cb)(int status, long code, json_t *body, const char *detail, void *arg);

/* method GET/POST/PUT/PATCH/DELETE on path ("/api/v1/nodes/x"), body
 * sent as content_type (NULL: application/json) when not NULL. A 401 makes
 * the client read its token file again and try once more; otherwise one
 * attempt: callers reconcile. The call may be ignored with kube_call_cancel
 * until cb runs. */
struct kube_call *kube_call(struct kube *k, const char *method, const char *path,
			    const char *content_type, const char *body, kube_call_cb cb, void *arg);
void kube_call_cancel(struct kube_call *c);

enum kube_event { KUBE_RESET, KUBE_ADDED, KUBE_MODIFIED, KUBE_DELETED, KUBE_SYNCED };

struct kube_watch_ops {
	/* KUBE_RESET (obj NULL): a (re-)list starts; forget what was known.
	 * KUBE_ADDED/MODIFIED/DELETED: obj borrowed for the call.
	 * KUBE_SYNCED (obj NULL): the list is complete; the watch follows. */
	void (*event)(struct kube_watch *w, enum kube_event ev, json_t *obj, void *arg);
	/* Optional: the list or the watch failed with code (401 after the
	 * token was read again, 403, 404 …); the watch retries with backoff.
	 * Called once per streak of identical failures. */
	void (*error)(struct kube_watch *w, long code, const char *detail, void *arg);
};

/* List then watch the collection at path ("/api/v1/pods"), query the
 * selectors ("fieldSelector=spec.nodeName%3Dn1", or NULL). Runs until
 * kube_watch_stop. */
struct kube_watch *kube_watch_start(struct kube *k, const char *path, const char *query,
				    const struct kube_watch_ops *ops, void *arg);
/* Stop; no callback runs afterwards. Safe from inside a callback. */
void kube_watch_stop(struct kube_watch *w);
/* Counters for /metrics and tests: lists and watch requests started. */
uint64_t kube_watch_lists(const struct kube_watch *w);

/* The name part of label keys and condition types for dataset name
 * ("syncbit.io/<KEY>"): the name itself when it is a valid label name (1-63
 * characters of A-Z a-z 0-9 - _ ., alphanumeric at both ends) and does not
 * end in "." and 12 hex digits; otherwise its first 50 usable characters,
 * "." and the first 12 hex digits of the name's SHA-256, so two datasets
 * never share a key. Heap string. */
char *kube_dataset_key(const char *name);
/* 1 when s is a valid label name (the part after the prefix). */
int kube_label_name_ok(const char *s);

/* Percent-encode s for a query value into b. */
void kube_query_escape(struct buf *b, const char *s);
/* Format now as RFC 3339 UTC ("2026-12-06T21:59:21Z") into out[32]. */
void kube_time_now(char out[32]);

#endif
