/* Kubernetes mode: the pod informer, one worker per pod, adoption of the
 * pods an earlier run of this daemon left running (see kubelet.h). */
#include "kubelet.h"

#include "cluster.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>

void kl_api_enter(struct kubelet *k)
{
	if (k->api_ns >= 0 && setns(k->api_ns, CLONE_NEWNET) < 0)
		log_error("enter the API server's network namespace: %s", strerror(errno));
}

void kl_api_leave(struct kubelet *k)
{
	if (k->node_ns >= 0 && setns(k->node_ns, CLONE_NEWNET) < 0)
		log_error("return to the node's network namespace: %s", strerror(errno));
}

void kl_event(struct kl_worker *w, const char *type, const char *reason, const char *fmt, ...)
{
	struct kubelet *k = w->k;
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	_cleanup_json_ cJSON *ev = myce_kpod_event(w->ns, w->name, w->uid, k->n->name, type, reason, msg, myce_wall_us());
	_cleanup_free_ char *ns = myce_k8s_escape(w->ns);
	_cleanup_free_ char *path = xasprintf("/api/v1/namespaces/%s/events", ns);
	_cleanup_json_ cJSON *out = NULL;
	_cleanup_error_ struct myce_error *e = NULL;
	kl_api_enter(k);
	int rc = myce_k8s_create(k->api, path, ev, &out, &e);
	kl_api_leave(k);
	if (rc > 0 && rc >= 300)
		myce_k8s_status_error(rc, out, "event", &e);
	if (rc < 0 || rc >= 300)
		log_warn("pod %s/%s: event %s: %s", w->ns, w->name, reason, myce_error_msg(e));
}

void kl_local_save(struct kl_worker *w)
{
	const struct kl_local *l = &w->local;
	if (l->id < 0)
		return;
	_cleanup_json_ cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "uid", w->uid);
	cJSON_AddStringToObject(j, "namespace", w->ns);
	cJSON_AddStringToObject(j, "name", w->name);
	cJSON_AddStringToObject(j, "node", w->k->n->name);
	cJSON_AddNumberToObject(j, "id", (double)l->id);
	cJSON_AddStringToObject(j, "addr", l->addr);
	cJSON_AddNumberToObject(j, "restart_count", l->restart_count);
	cJSON_AddNumberToObject(j, "start_us", (double)l->start_us);
	cJSON_AddNumberToObject(j, "started_us", (double)l->started_us);
	cJSON_AddNumberToObject(j, "last_exit_code", l->last_exit_code);
	cJSON_AddNumberToObject(j, "last_started_us", (double)l->last_started_us);
	cJSON_AddNumberToObject(j, "last_exit_us", (double)l->last_exit_us);
	_cleanup_free_ char *text = cJSON_Print(j);
	_cleanup_free_ char *dir = myce_pod_dir(l->id);
	_cleanup_free_ char *path = xasprintf("%s/" MYCE_KUBELET_FILE, dir);
	if (myce_write_file_atomic(path, text, strlen(text), 0600) < 0)
		log_error("pod %s/%s: cannot write %s", w->ns, w->name, path);
}

static void worker_free(struct kl_worker *w)
{
	if (!w)
		return;
	free(w->uid);
	free(w->ns);
	free(w->name);
	free(w->local.addr);
	cJSON_Delete(w->obj);
	free(w);
}

static struct kl_worker *worker_find(struct kl_worker *list, const char *uid)
{
	for (struct kl_worker *w = list; w; w = w->next)
		if (!strcmp(w->uid, uid))
			return w;
	return NULL;
}

static void worker_start(struct kubelet *k, struct kl_worker *w)
{
	w->k = k;
	w->next = k->workers;
	k->workers = w;
	if (pthread_create(&w->thread, NULL, kl_worker_run, w) != 0) {
		log_error("pod %s/%s: cannot start its worker thread", w->ns, w->name);
		w->done = true;
		w->thread = 0;
	}
}

/* Joins and frees the workers whose pod is finished with (lock held). */
static void workers_sweep(struct kubelet *k)
{
	for (struct kl_worker **pp = &k->workers; *pp;) {
		struct kl_worker *w = *pp;
		if (w->done && w->gone) {
			*pp = w->next;
			if (w->thread)
				pthread_join(w->thread, NULL);
			worker_free(w);
			continue;
		}
		pp = &w->next;
	}
}

static void on_pod(void *ud, enum myce_k8s_event ev, const cJSON *obj)
{
	struct kubelet *k = ud;
	pthread_mutex_lock(&k->lock);
	if (ev == MYCE_K8S_SYNCED) {
		/* Local pods the API no longer has: their workers remove them. */
		while (k->orphans) {
			struct kl_worker *w = k->orphans;
			k->orphans = w->next;
			w->gone = true;
			log_info("pod %s/%s (uid %s) is gone from the API: removing local pod %ld", w->ns, w->name,
				 w->uid, w->local.id);
			worker_start(k, w);
		}
		k->synced = true;
		pthread_mutex_unlock(&k->lock);
		return;
	}
	const char *uid = myce_kpod_uid(obj);
	const cJSON *meta = cJSON_GetObjectItem(obj, "metadata");
	if (!uid || !myce_json_str(meta, "namespace") || !myce_json_str(meta, "name")) {
		pthread_mutex_unlock(&k->lock);
		return;
	}
	struct kl_worker *w = worker_find(k->workers, uid);
	if (w) {
		cJSON_Delete(w->obj);
		w->obj = cJSON_Duplicate(obj, true);
		if (ev == MYCE_K8S_DELETED)
			w->gone = true;
	} else if (ev != MYCE_K8S_DELETED) {
		/* A pod adopted at start, or a new one. */
		struct kl_worker **pp;
		for (pp = &k->orphans; *pp && strcmp((*pp)->uid, uid); pp = &(*pp)->next)
			;
		w = *pp;
		if (w) {
			*pp = w->next;
			log_info("pod %s/%s: adopted local pod %ld", w->ns, w->name, w->local.id);
		} else {
			w = xzalloc(sizeof(*w));
			w->uid = xstrdup(uid);
			w->ns = xstrdup(myce_json_str(meta, "namespace"));
			w->name = xstrdup(myce_json_str(meta, "name"));
			w->local.id = -1;
		}
		w->obj = cJSON_Duplicate(obj, true);
		worker_start(k, w);
	}
	workers_sweep(k);
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->lock);
}

/* Pods this daemon ran before it restarted: put them back into the node's
 * pod table and hold them until the informer says whether the API still
 * has them. */
static void adopt_local(struct kubelet *k)
{
	struct node *n = k->n;
	DIR *d = opendir(MYCE_RUN_DIR "/pods");
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		char *end;
		long id = strtol(de->d_name, &end, 10);
		if (*end || end == de->d_name)
			continue;
		_cleanup_free_ char *dir = myce_pod_dir(id);
		_cleanup_free_ char *kpath = xasprintf("%s/" MYCE_KUBELET_FILE, dir);
		_cleanup_free_ char *ppath = xasprintf("%s/pod.json", dir);
		_cleanup_free_ char *ktext = myce_read_file(kpath, NULL);
		_cleanup_free_ char *ptext = myce_read_file(ppath, NULL);
		_cleanup_json_ cJSON *kj = ktext ? cJSON_Parse(ktext) : NULL;
		_cleanup_json_ cJSON *pj = ptext ? cJSON_Parse(ptext) : NULL;
		const char *node = myce_json_str(kj, "node");
		if (!kj || !node || strcmp(node, n->name) != 0)
			continue;
		const char *uid = myce_json_str(kj, "uid"), *addr = myce_json_str(kj, "addr");
		pid_t pid = (pid_t)myce_json_num(pj, "agent_pid", 0);
		struct pod *p = xzalloc(sizeof(*p));
		p->id = id;
		p->app = xstrdup(myce_json_str(pj, "app") ? myce_json_str(pj, "app") : "app");
		p->addr = xstrdup(addr ? addr : "0.0.0.0");
		p->carried = cJSON_CreateArray();
		p->agent_pid = pid > 0 && myce_pid_runs(pid, "myce-agent") ? pid : 0;
		p->active_since_us = myce_now_us();
		if (uid && myce_json_str(kj, "namespace") && myce_json_str(kj, "name")) {
			p->k8s_pod = xasprintf("%s/%s", myce_json_str(kj, "namespace"), myce_json_str(kj, "name"));
			p->k8s_uid = xstrdup(uid);
		}
		pthread_mutex_lock(&n->lock);
		p->next = n->pods;
		n->pods = p;
		pthread_mutex_unlock(&n->lock);
		if (!uid || !addr || !myce_json_str(kj, "namespace") || !myce_json_str(kj, "name")) {
			log_warn("pod %ld: unreadable %s, removing the pod", id, kpath);
			pod_delete(n, id, NULL);
			continue;
		}

		struct kl_worker *w = xzalloc(sizeof(*w));
		w->uid = xstrdup(uid);
		w->ns = xstrdup(myce_json_str(kj, "namespace"));
		w->name = xstrdup(myce_json_str(kj, "name"));
		w->adopted = true;
		w->local.id = id;
		w->local.addr = xstrdup(addr);
		w->local.restart_count = (int)myce_json_num(kj, "restart_count", 0);
		w->local.start_us = (int64_t)myce_json_num(kj, "start_us", 0);
		w->local.started_us = (int64_t)myce_json_num(kj, "started_us", 0);
		w->local.last_exit_code = (int)myce_json_num(kj, "last_exit_code", 0);
		w->local.last_started_us = (int64_t)myce_json_num(kj, "last_started_us", 0);
		w->local.last_exit_us = (int64_t)myce_json_num(kj, "last_exit_us", 0);
		w->next = k->orphans;
		k->orphans = w;
		log_info("pod %ld: found local pod of %s/%s (agent %s)", id, w->ns, w->name,
			 p->agent_pid ? "running" : "gone");
	}
	closedir(d);
}

int kubelet_start(struct node *n, const char *kubeconfig, int api_ns, struct kubelet **out, struct myce_error **err)
{
	struct kubelet *k = xzalloc(sizeof(*k));
	k->n = n;
	k->api_ns = api_ns;
	k->node_ns = -1;
	pthread_mutex_init(&k->lock, NULL);
	pthread_cond_init(&k->cond, NULL);
	if (api_ns >= 0) {
		k->node_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		if (k->node_ns < 0) {
			myce_error_errno(err, "open the node's network namespace");
			goto fail;
		}
	}
	if (myce_k8s_new(kubeconfig, &k->api, err) < 0) {
		myce_error_wrap(err, "kubeconfig %s", kubeconfig);
		goto fail;
	}
	adopt_local(k);
	/* Threads created while in the API's namespace stay there. */
	kl_api_enter(k);
	int rc = kl_node_register(k, err);
	if (rc == 0)
		rc = kl_lease_start(k, err);
	if (rc == 0) {
		_cleanup_free_ char *sel = xasprintf("spec.nodeName=%s", n->name);
		_cleanup_free_ char *esc = myce_k8s_escape(sel);
		_cleanup_free_ char *query = xasprintf("fieldSelector=%s", esc);
		rc = myce_k8s_informer_start(k->api, "/api/v1/pods", query, on_pod, k, &k->pods, err);
	}
	kl_api_leave(k);
	if (rc < 0)
		goto fail;
	*out = k;
	return 0;
fail:
	kubelet_stop(k);
	return myce_error_wrap(err, "Kubernetes mode");
}

void kubelet_stop(struct kubelet *k)
{
	if (!k)
		return;
	pthread_mutex_lock(&k->lock);
	k->stopping = true;
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->lock);
	kl_lease_stop(k);
	/* No more events: no new workers. */
	myce_k8s_informer_stop(k->pods);
	k->pods = NULL;
	for (;;) {
		pthread_mutex_lock(&k->lock);
		struct kl_worker *w = k->workers;
		if (w)
			k->workers = w->next;
		pthread_mutex_unlock(&k->lock);
		if (!w)
			break;
		if (w->thread)
			pthread_join(w->thread, NULL);
		worker_free(w);
	}
	while (k->orphans) {
		struct kl_worker *w = k->orphans;
		k->orphans = w->next;
		worker_free(w);
	}
	myce_k8s_free(k->api);
	if (k->node_ns >= 0)
		close(k->node_ns);
	free(k->node_uid);
	pthread_cond_destroy(&k->cond);
	pthread_mutex_destroy(&k->lock);
	free(k);
}
