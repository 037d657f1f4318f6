/* Where a Kubernetes client finds its server and credentials: a kubeconfig
 * file (YAML, read with libyaml into a document tree), the in-cluster service
 * account, or the choice between them (myce_k8s_new). */
#include "http.h"
#include "k8s_internal.h"
#include "util.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

struct myce_k8s *myce_k8s_alloc(void)
{
	struct myce_k8s *c = xzalloc(sizeof(*c));
	c->ns = xstrdup("default");
	c->timeout_ms = 30000;
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

void myce_k8s_free(struct myce_k8s *c)
{
	if (!c)
		return;
	for (int i = 0; i < c->npool; i++)
		curl_easy_cleanup(c->pool[i]);
	pthread_mutex_destroy(&c->lock);
	free(c->server);
	free(c->ns);
	free(c->ca.data);
	free(c->cert.data);
	if (c->key.data) /* a private key: do not leave it in freed memory */
		explicit_bzero(c->key.data, c->key.len);
	free(c->key.data);
	free(c->token_file);
	if (c->token)
		explicit_bzero(c->token, strlen(c->token));
	free(c->token);
	free(c);
}

const char *myce_k8s_namespace(const struct myce_k8s *c)
{
	return c->ns;
}

const char *myce_k8s_server(const struct myce_k8s *c)
{
	return c->server;
}

void myce_k8s_set_timeout(struct myce_k8s *c, long timeout_ms)
{
	c->timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
}

/* ---- base64 ------------------------------------------------------------- */

static int b64_value(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

char *myce_k8s_base64_decode(const char *in, size_t *len_out)
{
	size_t n = strlen(in);
	char *out = xmalloc(n / 4 * 3 + 4);
	size_t o = 0;
	unsigned acc = 0;
	int bits = 0, pad = 0, digits = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		if (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
			continue;
		if (*p == '=') {
			pad++;
			continue;
		}
		int v = b64_value(*p);
		if (v < 0 || pad) /* a stray character, or data after padding */
			goto bad;
		digits++;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	if (digits % 4 == 1 || pad > 2 || (pad && (digits + pad) % 4))
		goto bad;
	out[o] = '\0';
	if (len_out)
		*len_out = o;
	return out;
bad:
	free(out);
	return NULL;
}

/* ---- the YAML document ------------------------------------------------- */

struct kubeconfig {
	yaml_document_t doc;
	bool loaded;
	const char *path;
	char *dir; /* directory of the file: base of relative paths */
};

static void kubeconfig_clear(struct kubeconfig *k)
{
	if (k->loaded)
		yaml_document_delete(&k->doc);
	free(k->dir);
}

static yaml_node_t *node(struct kubeconfig *k, yaml_node_item_t i)
{
	return yaml_document_get_node(&k->doc, i);
}

/* The value under key in a mapping, or NULL. */
static yaml_node_t *map_get(struct kubeconfig *k, yaml_node_t *map, const char *key)
{
	if (!map || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = node(k, p->key);
		if (kn && kn->type == YAML_SCALAR_NODE && !strcmp((const char *)kn->data.scalar.value, key))
			return node(k, p->value);
	}
	return NULL;
}

/* *out = the scalar under key, NULL when absent or null; error when the
 * value is a list or a map. */
static int map_str(struct kubeconfig *k, yaml_node_t *map, const char *key, const char *where, const char **out,
		   struct myce_error **err)
{
	*out = NULL;
	yaml_node_t *v = map_get(k, map, key);
	if (!v)
		return 0;
	if (v->type != YAML_SCALAR_NODE)
		return myce_error_set(err, EINVAL, "%s: %s: %s: expected a string", k->path, where, key);
	const char *s = (const char *)v->data.scalar.value;
	bool plain = v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	if (plain && (!*s || !strcmp(s, "~") || !strcmp(s, "null")))
		return 0;
	*out = s;
	return 0;
}

static int map_bool(struct kubeconfig *k, yaml_node_t *map, const char *key, const char *where, bool *out,
		    struct myce_error **err)
{
	const char *s;
	int r = map_str(k, map, key, where, &s, err);
	if (r < 0)
		return r;
	if (!s)
		return 0;
	if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on"))
		*out = true;
	else if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off"))
		*out = false;
	else
		return myce_error_set(err, EINVAL, "%s: %s: %s: expected true or false, not \"%s\"", k->path, where,
				      key, s);
	return 0;
}

/* In the list under list_key ("clusters"), the entry whose name is `name`;
 * returns its inner mapping (under inner_key, "cluster"). */
static int named_entry(struct kubeconfig *k, yaml_node_t *root, const char *list_key, const char *inner_key,
		       const char *name, yaml_node_t **out, struct myce_error **err)
{
	yaml_node_t *seq = map_get(k, root, list_key);
	if (seq && seq->type != YAML_SEQUENCE_NODE && !(seq->type == YAML_SCALAR_NODE && !*seq->data.scalar.value))
		return myce_error_set(err, EINVAL, "%s: %s: expected a list", k->path, list_key);
	if (seq && seq->type == YAML_SEQUENCE_NODE) {
		for (yaml_node_item_t *i = seq->data.sequence.items.start; i < seq->data.sequence.items.top; i++) {
			yaml_node_t *e = node(k, *i);
			const char *n;
			if (map_str(k, e, "name", list_key, &n, err) < 0)
				return -EINVAL;
			if (!n || strcmp(n, name))
				continue;
			yaml_node_t *inner = map_get(k, e, inner_key);
			if (!inner || inner->type != YAML_MAPPING_NODE)
				return myce_error_set(err, EINVAL, "%s: %s \"%s\": no %s mapping", k->path, list_key,
						      name, inner_key);
			*out = inner;
			return 0;
		}
	}
	return myce_error_set(err, ENOENT, "%s: %s \"%s\" not found", k->path, inner_key, name);
}

/* A path from the kubeconfig: relative paths are relative to its directory. */
static char *resolve(struct kubeconfig *k, const char *p)
{
	if (p[0] == '/')
		return xstrdup(p);
	if (p[0] == '~' && p[1] == '/' && getenv("HOME"))
		return xasprintf("%s/%s", getenv("HOME"), p + 2);
	return xasprintf("%s/%s", k->dir, p);
}

static int read_blob(const char *path, struct myce_k8s_blob *b, struct myce_error **err)
{
	size_t n;
	char *d = myce_read_file(path, &n);
	if (!d)
		return myce_error_errno(err, "read %s", path);
	b->data = d;
	b->len = n;
	return 0;
}

/* A PEM from `<key>-data` (base64) or from the file named by `<key>`. */
static int load_blob(struct kubeconfig *k, yaml_node_t *map, const char *key, const char *where,
		     struct myce_k8s_blob *b, struct myce_error **err)
{
	_cleanup_free_ char *data_key = xasprintf("%s-data", key);
	const char *data, *file;
	if (map_str(k, map, data_key, where, &data, err) < 0 || map_str(k, map, key, where, &file, err) < 0)
		return -EINVAL;
	if (data) {
		size_t n;
		char *d = myce_k8s_base64_decode(data, &n);
		if (!d || !n) {
			free(d);
			return myce_error_set(err, EINVAL, "%s: %s: %s is not valid base64", k->path, where, data_key);
		}
		b->data = d;
		b->len = n;
		return 0;
	}
	if (file) {
		_cleanup_free_ char *p = resolve(k, file);
		if (read_blob(p, b, err) < 0)
			return myce_error_wrap(err, "%s: %s: %s", k->path, where, key);
	}
	return 0;
}

static int load_document(struct kubeconfig *k, const char *path, struct myce_error **err)
{
	k->path = path;
	_cleanup_free_ char *copy = xstrdup(path);
	k->dir = xstrdup(dirname(copy));
	_cleanup_fclose_ FILE *f = fopen(path, "r");
	if (!f)
		return myce_error_errno(err, "kubeconfig %s", path);
	yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser))
		return myce_error_set(err, ENOMEM, "kubeconfig %s: yaml parser", path);
	yaml_parser_set_input_file(&parser, f);
	int ok = yaml_parser_load(&parser, &k->doc);
	int ret = 0;
	if (!ok) {
		ret = myce_error_set(err, EINVAL, "kubeconfig %s: line %zu: %s", path, parser.problem_mark.line + 1,
				     parser.problem ? parser.problem : "invalid YAML");
	} else {
		k->loaded = true;
		yaml_node_t *root = yaml_document_get_root_node(&k->doc);
		if (!root || root->type != YAML_MAPPING_NODE)
			ret = myce_error_set(err, EINVAL, "kubeconfig %s: not a YAML mapping (empty file?)", path);
	}
	yaml_parser_delete(&parser);
	return ret;
}

static int load_cluster(struct kubeconfig *k, yaml_node_t *cl, const char *name, struct myce_k8s *c,
			struct myce_error **err)
{
	_cleanup_free_ char *where = xasprintf("cluster \"%s\"", name);
	const char *server;
	if (map_str(k, cl, "server", where, &server, err) < 0)
		return -EINVAL;
	if (!server)
		return myce_error_set(err, EINVAL, "%s: %s: server is missing", k->path, where);
	if (strncmp(server, "https://", 8) && strncmp(server, "http://", 7))
		return myce_error_set(err, EINVAL, "%s: %s: server \"%s\" is not an http(s):// URL", k->path,
				      where, server);
	c->server = xstrdup(server);
	size_t n = strlen(c->server);
	while (n > 0 && c->server[n - 1] == '/')
		c->server[--n] = '\0';
	if (map_bool(k, cl, "insecure-skip-tls-verify", where, &c->insecure, err) < 0)
		return -EINVAL;
	if (load_blob(k, cl, "certificate-authority", where, &c->ca, err) < 0)
		return -EINVAL;
	if (c->insecure && c->ca.data)
		return myce_error_set(err, EINVAL,
				      "%s: %s: certificate-authority and insecure-skip-tls-verify together (choose one)",
				      k->path, where);
	return 0;
}

static int load_user(struct kubeconfig *k, yaml_node_t *u, const char *name, struct myce_k8s *c,
		     struct myce_error **err)
{
	_cleanup_free_ char *where = xasprintf("user \"%s\"", name);
	static const char *const unsupported[] = {"exec", "auth-provider", "username", "password"};
	for (size_t i = 0; i < ARRAY_SIZE(unsupported); i++)
		if (map_get(k, u, unsupported[i]))
			return myce_error_set(err, ENOTSUP,
					      "%s: %s: %s authentication is not supported (use a token, tokenFile or "
					      "a client certificate)",
					      k->path, where, unsupported[i]);
	const char *token, *token_file;
	if (map_str(k, u, "token", where, &token, err) < 0 || map_str(k, u, "tokenFile", where, &token_file, err) < 0)
		return -EINVAL;
	if (token) {
		c->token = xstrdup(token);
	} else if (token_file) {
		c->token_file = resolve(k, token_file);
		c->token = myce_token_load(c->token_file, err);
		if (!c->token)
			return myce_error_wrap(err, "%s: %s: tokenFile", k->path, where);
		c->token_read_us = myce_now_us();
	}
	if (load_blob(k, u, "client-certificate", where, &c->cert, err) < 0 ||
	    load_blob(k, u, "client-key", where, &c->key, err) < 0)
		return -EINVAL;
	if (!c->cert.data != !c->key.data)
		return myce_error_set(err, EINVAL, "%s: %s: %s without %s", k->path, where,
				      c->cert.data ? "client-certificate" : "client-key",
				      c->cert.data ? "client-key" : "client-certificate");
	return 0;
}

int myce_k8s_from_kubeconfig(const char *path, const char *context, struct myce_k8s **out, struct myce_error **err)
{
	*out = NULL;
	struct kubeconfig k = {0};
	struct myce_k8s *c = NULL;
	_cleanup_free_ char *where = NULL; /* before the first goto: cleanup runs at done */
	int r = load_document(&k, path, err);
	if (r < 0)
		goto done;
	yaml_node_t *root = yaml_document_get_root_node(&k.doc);
	const char *ctx_name = context;
	if (!ctx_name || !*ctx_name) {
		if ((r = map_str(&k, root, "current-context", "top level", &ctx_name, err)) < 0)
			goto done;
		if (!ctx_name) {
			r = myce_error_set(err, EINVAL, "kubeconfig %s: no current-context and no context given", path);
			goto done;
		}
	}
	yaml_node_t *ctx, *cl, *user = NULL;
	if ((r = named_entry(&k, root, "contexts", "context", ctx_name, &ctx, err)) < 0)
		goto done;
	where = xasprintf("context \"%s\"", ctx_name);
	const char *cl_name, *user_name, *ns;
	if ((r = map_str(&k, ctx, "cluster", where, &cl_name, err)) < 0 ||
	    (r = map_str(&k, ctx, "user", where, &user_name, err)) < 0 ||
	    (r = map_str(&k, ctx, "namespace", where, &ns, err)) < 0)
		goto done;
	if (!cl_name) {
		r = myce_error_set(err, EINVAL, "%s: %s: cluster is missing", path, where);
		goto done;
	}
	if ((r = named_entry(&k, root, "clusters", "cluster", cl_name, &cl, err)) < 0)
		goto done;
	if (user_name && (r = named_entry(&k, root, "users", "user", user_name, &user, err)) < 0)
		goto done;
	c = myce_k8s_alloc();
	if (ns) {
		free(c->ns);
		c->ns = xstrdup(ns);
	}
	if ((r = load_cluster(&k, cl, cl_name, c, err)) < 0)
		goto done;
	if (user && (r = load_user(&k, user, user_name, c, err)) < 0)
		goto done;
	*out = steal_pointer(&c);
done:
	myce_k8s_free(c);
	kubeconfig_clear(&k);
	return r < 0 ? r : 0;
}

/* ---- in-cluster -------------------------------------------------------- */

int myce_k8s_in_cluster_at(const char *server, const char *sa_dir, struct myce_k8s **out, struct myce_error **err)
{
	*out = NULL;
	if (!sa_dir)
		sa_dir = MYCE_K8S_SA_DIR;
	if (!server || (strncmp(server, "https://", 8) && strncmp(server, "http://", 7)))
		return myce_error_set(err, EINVAL, "in-cluster: server \"%s\" is not an http(s):// URL",
				      server ? server : "");
	_cleanup_k8s_ struct myce_k8s *c = myce_k8s_alloc();
	c->server = xstrdup(server);
	c->token_file = xasprintf("%s/token", sa_dir);
	c->token = myce_token_load(c->token_file, err);
	if (!c->token)
		return myce_error_wrap(err, "in-cluster service account");
	c->token_read_us = myce_now_us();
	_cleanup_free_ char *ca = xasprintf("%s/ca.crt", sa_dir);
	if (read_blob(ca, &c->ca, err) < 0)
		return myce_error_wrap(err, "in-cluster service account");
	_cleanup_free_ char *nsp = xasprintf("%s/namespace", sa_dir);
	char *ns = myce_read_file(nsp, NULL);
	if (ns) {
		ns[strcspn(ns, " \r\n")] = '\0';
		if (*ns) {
			free(c->ns);
			c->ns = steal_pointer(&ns);
		}
		free(ns);
	}
	*out = steal_pointer(&c);
	return 0;
}

int myce_k8s_in_cluster(struct myce_k8s **out, struct myce_error **err)
{
	*out = NULL;
	const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
	if (!host || !*host || !port || !*port)
		return myce_error_set(err, ENOENT,
				      "in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set "
				      "(not running in a pod?)");
	_cleanup_free_ char *server = strchr(host, ':') ? xasprintf("https://[%s]:%s", host, port)
							 : xasprintf("https://%s:%s", host, port);
	const char *dir = getenv("MYCE_K8S_SA_DIR");
	return myce_k8s_in_cluster_at(server, dir && *dir ? dir : NULL, out, err);
}

int myce_k8s_new(const char *kubeconfig, struct myce_k8s **out, struct myce_error **err)
{
	*out = NULL;
	if (kubeconfig && *kubeconfig)
		return myce_k8s_from_kubeconfig(kubeconfig, NULL, out, err);
	const char *env = getenv("KUBECONFIG");
	if (env && *env) {
		_cleanup_free_ char *first = xasprintf("%.*s", (int)strcspn(env, ":"), env);
		return myce_k8s_from_kubeconfig(first, NULL, out, err);
	}
	if (getenv("KUBERNETES_SERVICE_HOST"))
		return myce_k8s_in_cluster(out, err);
	const char *home = getenv("HOME");
	if (!home || !*home)
		return myce_error_set(err, ENOENT, "no kubeconfig: none given, KUBECONFIG unset, not in a cluster, "
						   "HOME unset");
	_cleanup_free_ char *def = xasprintf("%s/.kube/config", home);
	if (access(def, F_OK) < 0)
		return myce_error_set(err, ENOENT,
				      "no kubeconfig: none given, KUBECONFIG unset, not in a cluster, no %s", def);
	return myce_k8s_from_kubeconfig(def, NULL, out, err);
}
