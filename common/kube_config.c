/* Where the Kubernetes API server is and who we are: a kubeconfig file
 * (current-context → cluster + user; inline data or files relative to the
 * kubeconfig), or the pod's service account (in-cluster). */
#include "common/kube.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/err.h"

#define KUBE_YAML_DEPTH 32
/* JSON values aliases may add to a document's own. libyaml keeps an alias
 * as a second reference to its anchor's node, which the conversion copies:
 * a few hundred bytes of nested aliases would otherwise expand to billions
 * of values. */
#define KUBE_YAML_ALIAS_VALUES_MAX 65536

/* ---- YAML to JSON ---- */

struct yaml_walk {
	yaml_document_t *doc;
	size_t left; /* values still allowed */
};

static json_t *node_to_json(struct yaml_walk *w, yaml_node_t *n, int depth)
{
	yaml_document_t *doc = w->doc;
	if (!n || depth > KUBE_YAML_DEPTH || w->left == 0)
		return NULL;
	w->left--;
	if (n->type == YAML_SCALAR_NODE)
		return json_stringn((const char *)n->data.scalar.value, n->data.scalar.length);
	if (n->type == YAML_SEQUENCE_NODE) {
		json_t *a = json_array();
		for (yaml_node_item_t *i = n->data.sequence.items.start;
		     i < n->data.sequence.items.top; i++) {
			json_t *v = node_to_json(w, yaml_document_get_node(doc, *i), depth + 1);
			if (!v) {
				json_decref(a);
				return NULL;
			}
			json_array_append_new(a, v);
		}
		return a;
	}
	if (n->type != YAML_MAPPING_NODE)
		return NULL;
	json_t *o = json_object();
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);
		json_t *v = node_to_json(w, yaml_document_get_node(doc, p->value), depth + 1);
		if (!k || k->type != YAML_SCALAR_NODE || !v) {
			json_decref(v);
			json_decref(o);
			return NULL;
		}
		char *key = xstrndup((const char *)k->data.scalar.value, k->data.scalar.length);
		json_object_set_new(o, key, v);
		free(key);
	}
	return o;
}

json_t *kube_yaml_to_json(const char *text, size_t len, char **detail)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	json_t *out = NULL;
	*detail = NULL;
	if (!yaml_parser_initialize(&parser)) {
		*detail = xstrdup("out of memory");
		return NULL;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		*detail = xasprintf("line %zu: %s", parser.problem_mark.line + 1,
				    parser.problem ? parser.problem : "malformed YAML");
		yaml_parser_delete(&parser);
		return NULL;
	}
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	size_t nodes = (size_t)(doc.nodes.top - doc.nodes.start);
	struct yaml_walk w = {&doc, nodes + KUBE_YAML_ALIAS_VALUES_MAX};
	out = root ? node_to_json(&w, root, 0) : json_object();
	if (!out && w.left == 0)
		*detail = xasprintf("aliases are expanded to more than %u values",
				    KUBE_YAML_ALIAS_VALUES_MAX);
	else if (!out)
		*detail = xstrdup("nested too deeply, or a key that is not a string");
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return out;
}

/* ---- kubeconfig ---- */

static const char *str_at(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The "what" member of the entry named name in list (clusters, users,
 * contexts), or NULL. */
static json_t *named(json_t *root, const char *list, const char *name, const char *what)
{
	json_t *a = json_object_get(root, list), *e;
	size_t i;
	if (!name)
		return NULL;
	json_array_foreach(a, i, e)
	{
		const char *n = str_at(e, "name");
		if (n && !strcmp(n, name)) {
			json_t *v = json_object_get(e, what);
			return json_is_object(v) ? v : NULL;
		}
	}
	return NULL;
}

/* A file named in a kubeconfig: relative to the kubeconfig's directory. */
static char *resolve(const char *base_dir, const char *file)
{
	if (file[0] == '/' || !base_dir)
		return xstrdup(file);
	return xasprintf("%s/%s", base_dir, file);
}

/* PEM from key-data (base64) or from the file named by key; 0 when neither
 * is set (out stays empty). */
static int load_pem(json_t *o, const char *key, const char *base_dir, struct buf *out,
		    char **detail)
{
	char data_key[64];
	snprintf(data_key, sizeof data_key, "%s-data", key);
	const char *data = str_at(o, data_key), *file = str_at(o, key);
	if (data) {
		size_t len = strlen(data), n = 0;
		buf_reserve(out, len + 1);
		if (sodium_base642bin((unsigned char *)out->ptr, out->cap, data, len, "\r\n ", &n,
				      NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
			*detail = xasprintf("%s is not base64", data_key);
			return SB_ECONFIG;
		}
		out->len = n;
		return 0;
	}
	if (!file)
		return 0;
	char *path = resolve(base_dir, file);
	int rc = buf_read_file(path, KUBE_FILE_MAX, out);
	if (rc < 0)
		*detail = xasprintf("%s %s: %s", key, path, sb_strerror(rc));
	free(path);
	return rc;
}

static int check_server(struct kube_config *cfg, json_t *cluster, char **detail)
{
	const char *server = str_at(cluster, "server");
	const char *insecure = str_at(cluster, "insecure-skip-tls-verify");
	if (!server || strncmp(server, "https://", 8) != 0) {
		*detail = xasprintf("cluster server %s: an https:// URL is required",
				    server ? server : "(missing)");
		return SB_ECONFIG;
	}
	if (insecure && !strcmp(insecure, "true")) {
		*detail = xstrdup("insecure-skip-tls-verify is refused: TLS is always verified");
		return SB_ECONFIG;
	}
	size_t n = strlen(server);
	while (n > 8 && server[n - 1] == '/')
		n--;
	cfg->server = xstrndup(server, n);
	return 0;
}

static int from_kubeconfig(const char *path, struct kube_config *cfg, char **detail)
{
	struct buf text = BUF_INIT;
	char *why = NULL;
	int rc = buf_read_file(path, KUBE_FILE_MAX, &text);
	if (rc < 0) {
		*detail = xasprintf("kubeconfig %s: %s", path, sb_strerror(rc));
		buf_close(&text);
		return rc;
	}
	json_t *root = kube_yaml_to_json(text.ptr ? (const char *)text.ptr : "", text.len, &why);
	buf_close(&text);
	if (!root) {
		*detail = xasprintf("kubeconfig %s: %s", path, why);
		free(why);
		return SB_ECONFIG;
	}
	char *dir = xstrdup(path), *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	const char *ctx_name = str_at(root, "current-context");
	json_t *ctx = named(root, "contexts", ctx_name, "context");
	json_t *cluster = named(root, "clusters", str_at(ctx, "cluster"), "cluster");
	json_t *user = named(root, "users", str_at(ctx, "user"), "user");
	if (!ctx || !cluster) {
		*detail = xasprintf("current-context %s names no context or cluster",
				    ctx_name ? ctx_name : "(unset)");
		rc = SB_ECONFIG;
	}
	if (rc == 0)
		rc = check_server(cfg, cluster, detail);
	if (rc == 0)
		rc = load_pem(cluster, "certificate-authority", slash ? dir : NULL, &cfg->ca,
			      detail);
	if (rc == 0 && user)
		rc = load_pem(user, "client-certificate", slash ? dir : NULL, &cfg->cert, detail);
	if (rc == 0 && user)
		rc = load_pem(user, "client-key", slash ? dir : NULL, &cfg->key, detail);
	if (rc == 0 && user) {
		const char *t = str_at(user, "token"), *tf = str_at(user, "tokenFile");
		cfg->token = t ? xstrdup(t) : NULL;
		cfg->token_file = tf ? resolve(slash ? dir : NULL, tf) : NULL;
	}
	if (rc == 0 && str_at(ctx, "namespace"))
		cfg->namespace = xstrdup(str_at(ctx, "namespace"));
	if (rc < 0 && *detail) {
		char *d = xasprintf("kubeconfig %s: %s", path, *detail);
		free(*detail);
		*detail = d;
	}
	cfg->source = xasprintf("kubeconfig %s", path);
	free(dir);
	json_decref(root);
	return rc;
}

static int in_cluster(const char *host, struct kube_config *cfg, char **detail)
{
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	const char *dir = getenv("SYNCBIT_SERVICEACCOUNT_DIR");
	if (!dir || !*dir)
		dir = KUBE_SA_DIR;
	cfg->server = strchr(host, ':') ? xasprintf("https://[%s]:%s", host, port ? port : "443")
					: xasprintf("https://%s:%s", host, port ? port : "443");
	cfg->token_file = xasprintf("%s/token", dir);
	cfg->source = xstrdup("in-cluster");
	char *ca = xasprintf("%s/ca.crt", dir);
	int rc = buf_read_file(ca, KUBE_FILE_MAX, &cfg->ca);
	if (rc < 0)
		*detail = xasprintf("in-cluster: %s: %s", ca, sb_strerror(rc));
	free(ca);
	struct buf ns = BUF_INIT;
	char *nsf = xasprintf("%s/namespace", dir);
	if (rc == 0 && buf_read_file(nsf, 256, &ns) == 0 && ns.len) {
		while (ns.len && (ns.ptr[ns.len - 1] == '\n' || ns.ptr[ns.len - 1] == ' '))
			ns.len--;
		cfg->namespace = xstrndup((const char *)ns.ptr, ns.len);
	}
	free(nsf);
	buf_close(&ns);
	return rc;
}

int kube_config_load(const char *path, struct kube_config *cfg, char **detail)
{
	memset(cfg, 0, sizeof *cfg);
	*detail = NULL;
	char *env_path = NULL;
	if (!path || !*path) {
		const char *env = getenv("KUBECONFIG");
		if (env && *env) {
			const char *colon = strchr(env, ':');
			path = env_path =
			    colon ? xstrndup(env, (size_t)(colon - env)) : xstrdup(env);
		}
	}
	int rc;
	if (path && *path) {
		rc = from_kubeconfig(path, cfg, detail);
	} else {
		const char *host = getenv("KUBERNETES_SERVICE_HOST");
		if (!host || !*host) {
			free(env_path);
			return 0;
		}
		rc = in_cluster(host, cfg, detail);
	}
	free(env_path);
	if (rc == 0 && !cfg->token && !cfg->token_file && !cfg->cert.len) {
		*detail = xasprintf("%s: no credentials (token, tokenFile or client certificate)",
				    cfg->source);
		rc = SB_ECONFIG;
	}
	if (rc < 0) {
		kube_config_close(cfg);
		return rc;
	}
	return 1;
}

void kube_config_close(struct kube_config *cfg)
{
	free(cfg->server);
	buf_close(&cfg->ca);
	if (cfg->key.ptr)
		sodium_memzero(cfg->key.ptr, cfg->key.cap);
	buf_close(&cfg->cert);
	buf_close(&cfg->key);
	if (cfg->token)
		sodium_memzero(cfg->token, strlen(cfg->token));
	free(cfg->token);
	free(cfg->token_file);
	free(cfg->namespace);
	free(cfg->source);
	memset(cfg, 0, sizeof *cfg);
}
