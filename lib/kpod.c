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

int myce_kpod_parse(const cJSON *pod, const char *pod_ip, struct myce_kpod **out, struct myce_error **err)
{
	const cJSON *meta = cJSON_GetObjectItem(pod, "metadata");
	const cJSON *spec = cJSON_GetObjectItem(pod, "spec");
	const char *ns = myce_json_str(meta, "namespace"), *name = myce_json_str(meta, "name");
	const char *uid = myce_json_str(meta, "uid");
	if (!ns || !name || !uid || !cJSON_IsObject(spec))
		return myce_error_set(err, EINVAL, "not a Pod: needs metadata.namespace, name, uid and spec");
	const cJSON *containers = cJSON_GetObjectItem(spec, "containers");
	if (!cJSON_IsArray(containers) || cJSON_GetArraySize(containers) != 1)
		return myce_error_set(err, EINVAL, "pod %s/%s: the embedded runtime runs pods of exactly one container",
				      ns, name);
	if (cJSON_GetArraySize(cJSON_GetObjectItem(spec, "initContainers")) > 0)
		return myce_error_set(err, EINVAL, "pod %s/%s: init containers are not supported by the embedded runtime",
				      ns, name);
	if (myce_json_bool(spec, "hostNetwork", false))
		return myce_error_set(err, EINVAL, "pod %s/%s: hostNetwork is not supported by the embedded runtime",
				      ns, name);
	const cJSON *c = cJSON_GetArrayItem(containers, 0);
	const char *cname = myce_json_str(c, "name");
	if (!cname)
		return myce_error_set(err, EINVAL, "pod %s/%s: container without a name", ns, name);

	struct myce_kpod *p = xzalloc(sizeof(*p));
	_cleanup_kpod_ struct myce_kpod *guard = p;
	p->ns = xstrdup(ns);
	p->name = xstrdup(name);
	p->uid = xstrdup(uid);
	p->node = xstrdup(myce_json_str(spec, "nodeName"));
	p->container = xstrdup(cname);
	p->image = xstrdup(myce_json_str(c, "image"));
	const char *wd = myce_json_str(c, "workingDir");
	p->workdir = wd && *wd ? xstrdup(wd) : NULL;
	p->env = cJSON_CreateArray();
	if (parse_env(pod, c, pod_ip, p->env, err) < 0)
		return myce_error_wrap(err, "pod %s/%s", ns, name);
	p->command = cJSON_CreateArray();
	if (!cJSON_GetArraySize(cJSON_GetObjectItem(c, "command")))
		return myce_error_set(err, EINVAL,
				      "pod %s/%s: container %s has no command (the embedded runtime runs the command on "
				      "the node and does not read the image's entrypoint)",
				      ns, name, cname);
	if (append_strings(p->command, cJSON_GetObjectItem(c, "command"), p->env, "command", err) < 0 ||
	    append_strings(p->command, cJSON_GetObjectItem(c, "args"), p->env, "args", err) < 0)
		return myce_error_wrap(err, "pod %s/%s", ns, name);
	if (probe_port(c, &p->ready_port, err) < 0)
		return myce_error_wrap(err, "pod %s/%s", ns, name);
	const cJSON *pre = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "lifecycle"), "preStop");
	if (pre) {
		const cJSON *cmd = cJSON_GetObjectItem(cJSON_GetObjectItem(pre, "exec"), "command");
		if (!cJSON_GetArraySize(cmd))
			return myce_error_set(err, EINVAL, "pod %s/%s: only exec preStop hooks are supported", ns, name);
		p->prestop = cJSON_CreateArray();
		if (append_strings(p->prestop, cmd, p->env, "preStop command", err) < 0)
			return myce_error_wrap(err, "pod %s/%s", ns, name);
	}
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
