/* Pod object -> what the embedded runtime runs (see kpod.h). */
#include "kpod.h"

#include "http.h"
#include "util.h"

#include <errno.h>
#include <string.h>
#include <time.h>

void myce_kpod_free(struct myce_kpod *p)
{
	if (!p)
		return;
	free(p->ns);
	free(p->name);
	free(p->uid);
	free(p->node);
	for (int i = 0; i < p->ncontainers; i++) {
		struct myce_kpod_container *c = &p->containers[i];
		free(c->name);
		free(c->image);
		free(c->workdir);
		cJSON_Delete(c->command);
		cJSON_Delete(c->env);
		cJSON_Delete(c->prestop);
	}
	free(p->containers);
	free(p->container);
	free(p->image);
	free(p->workdir);
	cJSON_Delete(p->command);
	cJSON_Delete(p->env);
	cJSON_Delete(p->prestop);
	free(p);
}

const char *myce_kpod_uid(const cJSON *pod)
{
	return myce_json_str(cJSON_GetObjectItem(pod, "metadata"), "uid");
}

static const char *env_lookup(const cJSON *env, const char *name, size_t len)
{
	const cJSON *e;
	const char *found = NULL;
	/* The last definition wins, as in Kubernetes. */
	cJSON_ArrayForEach(e, env)
		if (cJSON_IsString(e) && !strncmp(e->valuestring, name, len) && e->valuestring[len] == '=')
			found = e->valuestring + len + 1;
	return found;
}

char *myce_kpod_expand(const char *s, const cJSON *env)
{
	size_t cap = strlen(s) + 1, n = 0;
	char *out = xmalloc(cap);
#define PUT(str, l)                                                                                \
	do {                                                                                       \
		size_t l_ = (l);                                                                   \
		if (n + l_ + 1 > cap) {                                                            \
			cap = (n + l_ + 1) * 2;                                                    \
			out = xrealloc(out, cap);                                                  \
		}                                                                                  \
		memcpy(out + n, (str), l_);                                                        \
		n += l_;                                                                           \
	} while (0)
	for (const char *c = s; *c;) {
		if (c[0] == '$' && c[1] == '$') {
			PUT("$", 1);
			c += 2;
			continue;
		}
		if (c[0] == '$' && c[1] == '(') {
			const char *end = strchr(c + 2, ')');
			const char *v = end && end > c + 2 ? env_lookup(env, c + 2, (size_t)(end - c - 2)) : NULL;
			if (v) {
				PUT(v, strlen(v));
				c = end + 1;
				continue;
			}
		}
		PUT(c, 1);
		c++;
	}
#undef PUT
	out[n] = '\0';
	return out;
}

static int field_ref(const cJSON *pod, const char *path, const char *pod_ip, char **out, struct myce_error **err)
{
	const cJSON *meta = cJSON_GetObjectItem(pod, "metadata");
	const char *v = NULL;
	if (!strcmp(path, "metadata.name"))
		v = myce_json_str(meta, "name");
	else if (!strcmp(path, "metadata.namespace"))
		v = myce_json_str(meta, "namespace");
	else if (!strcmp(path, "metadata.uid"))
		v = myce_json_str(meta, "uid");
	else if (!strcmp(path, "spec.nodeName"))
		v = myce_json_str(cJSON_GetObjectItem(pod, "spec"), "nodeName");
	else if (!strcmp(path, "status.podIP"))
		v = pod_ip;
	else
		return myce_error_set(err, EINVAL, "env fieldRef %s is not supported by the embedded runtime", path);
	*out = xstrdup(v ? v : "");
	return 0;
}

static int parse_env(const cJSON *pod, const cJSON *c, const char *pod_ip, cJSON *env, struct myce_error **err)
{
	const cJSON *e;
	cJSON_ArrayForEach(e, cJSON_GetObjectItem(c, "env"))
	{
		const char *name = myce_json_str(e, "name");
		if (!name || !*name || strchr(name, '='))
			return myce_error_set(err, EINVAL, "env entry without a valid name");
		const cJSON *from = cJSON_GetObjectItem(e, "valueFrom");
		_cleanup_free_ char *val = NULL;
		if (from) {
			const char *path = myce_json_str(cJSON_GetObjectItem(from, "fieldRef"), "fieldPath");
			if (!path)
				return myce_error_set(err, EINVAL,
						      "env %s: only valueFrom.fieldRef is supported by the embedded runtime",
						      name);
			if (field_ref(pod, path, pod_ip, &val, err) < 0)
				return myce_error_wrap(err, "env %s", name);
		} else {
			const char *v = myce_json_str(e, "value");
			val = myce_kpod_expand(v ? v : "", env);
		}
		_cleanup_free_ char *kv = xasprintf("%s=%s", name, val);
		cJSON_AddItemToArray(env, cJSON_CreateString(kv));
	}
	return 0;
}

static int append_strings(cJSON *argv, const cJSON *list, const cJSON *env, const char *what,
			  struct myce_error **err)
{
	if (!list)
		return 0;
	if (!cJSON_IsArray(list))
		return myce_error_set(err, EINVAL, "%s must be a list of strings", what);
	const cJSON *s;
	cJSON_ArrayForEach(s, list)
	{
		if (!cJSON_IsString(s))
			return myce_error_set(err, EINVAL, "%s must be a list of strings", what);
		_cleanup_free_ char *x = myce_kpod_expand(s->valuestring, env);
		cJSON_AddItemToArray(argv, cJSON_CreateString(x));
	}
	return 0;
}

/* A tcpSocket readiness probe's port: a number or the name of a container port. */
static int probe_port(const cJSON *c, int *port, struct myce_error **err)
{
	const cJSON *tcp = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "readinessProbe"), "tcpSocket");
	*port = 0;
	if (!tcp)
		return 0;
	const cJSON *pj = cJSON_GetObjectItem(tcp, "port");
	if (cJSON_IsNumber(pj))
		*port = pj->valueint;
	else if (cJSON_IsString(pj)) {
		const cJSON *cp;
		cJSON_ArrayForEach(cp, cJSON_GetObjectItem(c, "ports"))
			if (myce_json_str(cp, "name") && !strcmp(myce_json_str(cp, "name"), pj->valuestring))
				*port = (int)myce_json_num(cp, "containerPort", 0);
		if (!*port)
			return myce_error_set(err, EINVAL, "readinessProbe: no container port named %s", pj->valuestring);
	}
	if (*port < 1 || *port > 65535)
		return myce_error_set(err, EINVAL, "readinessProbe: tcpSocket port must be 1..65535");
	return 0;
}

static int parse_container(const cJSON *pod, const cJSON *c, const char *pod_ip, struct myce_kpod_container *out,
			   struct myce_error **err)
{
	const char *cname = myce_json_str(c, "name");
	out->name = xstrdup(cname);
	out->image = xstrdup(myce_json_str(c, "image"));
	const char *wd = myce_json_str(c, "workingDir");
	out->workdir = wd && *wd ? xstrdup(wd) : NULL;
	out->env = cJSON_CreateArray();
	if (parse_env(pod, c, pod_ip, out->env, err) < 0)
		return myce_error_wrap(err, "container %s", cname);
	out->command = cJSON_CreateArray();
	if (!cJSON_GetArraySize(cJSON_GetObjectItem(c, "command")))
		return myce_error_set(err, EINVAL,
				      "container %s has no command (the embedded runtime runs the command on "
				      "the node and does not read the image's entrypoint)",
				      cname);
	if (append_strings(out->command, cJSON_GetObjectItem(c, "command"), out->env, "command", err) < 0 ||
	    append_strings(out->command, cJSON_GetObjectItem(c, "args"), out->env, "args", err) < 0 ||
	    probe_port(c, &out->ready_port, err) < 0)
		return myce_error_wrap(err, "container %s", cname);
	const cJSON *pre = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "lifecycle"), "preStop");
	if (pre) {
		const cJSON *cmd = cJSON_GetObjectItem(cJSON_GetObjectItem(pre, "exec"), "command");
		if (!cJSON_GetArraySize(cmd))
			return myce_error_set(err, EINVAL, "container %s: only exec preStop hooks are supported", cname);
		out->prestop = cJSON_CreateArray();
		if (append_strings(out->prestop, cmd, out->env, "preStop command", err) < 0)
			return myce_error_wrap(err, "container %s", cname);
	}
	return 0;
}

cJSON *myce_kpod_containers_spec(const struct myce_kpod *p)
{
	if (p->ncontainers < 2)
		return NULL;
	cJSON *list = cJSON_CreateArray();
	for (int i = 0; i < p->ncontainers; i++) {
		const struct myce_kpod_container *c = &p->containers[i];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", c->name);
		cJSON_AddItemToObject(o, "cmd", cJSON_Duplicate(c->command, true));
		cJSON_AddItemToObject(o, "env", cJSON_Duplicate(c->env, true));
		if (c->workdir)
			cJSON_AddStringToObject(o, "workdir", c->workdir);
		cJSON_AddItemToArray(list, o);
	}
	return list;
}

int myce_kpod_parse(const cJSON *pod, const char *pod_ip, struct myce_kpod **out, struct myce_error **err)
{
	const cJSON *meta = cJSON_GetObjectItem(pod, "metadata");
	const cJSON *spec = cJSON_GetObjectItem(pod, "spec");
	const char *ns = myce_json_str(meta, "namespace"), *name = myce_json_str(meta, "name");
	const char *uid = myce_json_str(meta, "uid");
	if (!ns || !name || !uid || !cJSON_IsObject(spec))
		return myce_error_set(err, EINVAL, "not a Pod: needs metadata.namespace, name, uid and spec");
	const cJSON *containers = cJSON_GetObjectItem(spec, "containers");
	int n = cJSON_GetArraySize(containers);
	if (!cJSON_IsArray(containers) || n < 1)
		return myce_error_set(err, EINVAL, "pod %s/%s: spec.containers must list at least one container", ns, name);
	if (n > MYCE_KPOD_MAX_CONTAINERS)
		return myce_error_set(err, EINVAL, "pod %s/%s: at most %d containers per pod", ns, name,
				      MYCE_KPOD_MAX_CONTAINERS);
	if (cJSON_GetArraySize(cJSON_GetObjectItem(spec, "initContainers")) > 0)
		return myce_error_set(err, EINVAL, "pod %s/%s: init containers are not supported by the embedded runtime",
				      ns, name);
	if (myce_json_bool(spec, "hostNetwork", false))
		return myce_error_set(err, EINVAL, "pod %s/%s: hostNetwork is not supported by the embedded runtime",
				      ns, name);

	struct myce_kpod *p = xzalloc(sizeof(*p));
	_cleanup_kpod_ struct myce_kpod *guard = p;
	p->ns = xstrdup(ns);
	p->name = xstrdup(name);
	p->uid = xstrdup(uid);
	p->node = xstrdup(myce_json_str(spec, "nodeName"));
	p->containers = xzalloc(sizeof(*p->containers) * (size_t)n);
	for (int i = 0; i < n; i++) {
		const cJSON *c = cJSON_GetArrayItem(containers, i);
		const char *cname = myce_json_str(c, "name");
		if (!cname || !*cname)
			return myce_error_set(err, EINVAL, "pod %s/%s: container without a name", ns, name);
		for (int j = 0; j < i; j++)
			if (!strcmp(p->containers[j].name, cname))
				return myce_error_set(err, EINVAL, "pod %s/%s: two containers named %s", ns, name, cname);
		p->ncontainers = i + 1;
		if (parse_container(pod, c, pod_ip, &p->containers[i], err) < 0)
			return myce_error_wrap(err, "pod %s/%s", ns, name);
	}
	const struct myce_kpod_container *c0 = &p->containers[0];
	p->container = xstrdup(c0->name);
	p->image = xstrdup(c0->image);
	p->workdir = c0->workdir ? xstrdup(c0->workdir) : NULL;
	p->env = cJSON_Duplicate(c0->env, true);
	p->command = cJSON_Duplicate(c0->command, true);
	p->ready_port = c0->ready_port;
	p->prestop = c0->prestop ? cJSON_Duplicate(c0->prestop, true) : NULL;
	const char *rp = myce_json_str(spec, "restartPolicy");
	p->restart = !rp || !strcmp(rp, "Always") ? MYCE_KPOD_RESTART_ALWAYS
		     : !strcmp(rp, "OnFailure")   ? MYCE_KPOD_RESTART_ON_FAILURE
						  : MYCE_KPOD_RESTART_NEVER;
	p->deleting = myce_json_str(meta, "deletionTimestamp") != NULL;
	double grace = myce_json_num(spec, "terminationGracePeriodSeconds", 30);
	if (p->deleting)
		grace = myce_json_num(meta, "deletionGracePeriodSeconds", grace);
	p->grace_s = grace < 0 ? 0 : (int)grace;
	const char *ct = myce_json_str(meta, "creationTimestamp");
	p->created_us = ct ? myce_k8s_time_parse(ct) : -1;
	*out = steal_pointer(&guard);
	return 0;
}

char *myce_k8s_time(int64_t wall_us)
{
	time_t t = (time_t)(wall_us / 1000000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char buf[64];
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return xstrdup(buf);
}

char *myce_k8s_microtime(int64_t wall_us)
{
	time_t t = (time_t)(wall_us / 1000000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char buf[64];
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	return xasprintf("%s.%06dZ", buf, (int)(wall_us % 1000000));
}

int64_t myce_k8s_time_parse(const char *s)
{
	struct tm tm = {0};
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end)
		return -1;
	if (*end == '.')
		for (end++; *end >= '0' && *end <= '9'; end++)
			;
	if (strcmp(end, "Z") != 0)
		return -1;
	return (int64_t)timegm(&tm) * 1000000;
}
