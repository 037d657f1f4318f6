/* One pod's worker: runs the pod with the embedded runtime (pod_create),
 * watches its application, restarts it as the restart policy says, reports
 * its status through pods/status, and on deletion runs the preStop hook,
 * stops the pod within its grace period and finalizes the API object. */
#include "kubelet.h"

#include "agentctl.h"
#include "cluster.h"
#include "log.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

/* What the worker knows between two passes of its loop. */
struct kl_run {
	bool ready;
	int64_t ready_changed_us;
	bool exited;       /* the application ended and is not restarted (yet) */
	int exit_code;
	int64_t exit_us;
	int64_t restart_at_us; /* monotonic; 0 = none pending */
	int backoff_ms;
	char *error;       /* why the pod cannot run (status message) */
	char *ended;       /* the container whose exit ended the pod's last run
			      (pods of several containers), or NULL */
	int64_t seen_us;   /* when this worker first saw the pod (startTime until it runs) */
	char *last_status; /* the status last sent, to send only changes */
	int64_t carried_warned_us; /* last warning that the coordinator did not answer */
};

static pthread_mutex_t *nlock(struct kubelet *k)
{
	return &k->n->lock;
}

static bool addr_taken(struct kubelet *k, const cJSON *reserved, const char *addr)
{
	const cJSON *r;
	cJSON_ArrayForEach(r, reserved)
		if (cJSON_IsString(r) && !strcmp(r->valuestring, addr))
			return true;
	for (struct pod *p = k->n->pods; p; p = p->next) {
		if (!strcmp(p->addr, addr))
			return true;
		const cJSON *c;
		cJSON_ArrayForEach(c, p->carried)
			if (cJSON_IsString(c) && !strcmp(c->valuestring, addr))
				return true;
	}
	for (struct kl_worker *w = k->workers; w; w = w->next)
		if (w->local.addr && !strcmp(w->local.addr, addr))
			return true;
	return false;
}

static bool id_taken(struct kubelet *k, long id)
{
	if (pod_find(k->n, id))
		return true;
	for (struct kl_worker *w = k->workers; w; w = w->next)
		if (w->local.id == id)
			return true;
	_cleanup_free_ char *dir = myce_pod_dir(id);
	return access(dir, F_OK) == 0;
}

/* A local pod id (from this node's own range, so that ids never collide
 * with other nodes' or the coordinator's) and an address of the node's
 * pod range that no pod here uses and no migrated pod carries (reserved:
 * the coordinator's list). */
static int alloc_local(struct kl_worker *w, const cJSON *reserved, struct myce_error **err)
{
	struct kubelet *k = w->k;
	int rc = 0;
	pthread_mutex_lock(&k->lock);
	pthread_mutex_lock(nlock(k));
	long base = (long)k->n->idx * 100000;
	long id = -1;
	for (long i = 1; i < 100000 && id < 0; i++)
		if (!id_taken(k, base + i))
			id = base + i;
	char *addr = NULL;
	for (int h = 2; h < 255 && !addr; h++) {
		_cleanup_free_ char *a = xasprintf("10.78.%d.%d", k->n->idx, h);
		if (!addr_taken(k, reserved, a))
			addr = steal_pointer(&a);
	}
	if (id < 0 || !addr) {
		free(addr);
		rc = myce_error_set(err, ENOSPC, "no free pod %s on %s", id < 0 ? "id" : "address", k->n->name);
	} else {
		w->local.id = id;
		w->local.addr = addr;
	}
	pthread_mutex_unlock(nlock(k));
	pthread_mutex_unlock(&k->lock);
	return rc;
}

/* The container's variables, then how the application or a hook finds the
 * pod's agent (e.g. a preStop that asks it to checkpoint). */
static cJSON *pod_env(const struct kl_worker *w, const cJSON *container_env)
{
	cJSON *env = container_env ? cJSON_Duplicate(container_env, true) : cJSON_CreateArray();
	_cleanup_free_ char *idvar = xasprintf("MYCE_POD_ID=%ld", w->local.id);
	_cleanup_free_ char *sock = pod_agent_sock(w->local.id);
	_cleanup_free_ char *sockvar = xasprintf("MYCE_AGENT_SOCK=%s", sock);
	cJSON_AddItemToArray(env, cJSON_CreateString(idvar));
	cJSON_AddItemToArray(env, cJSON_CreateString(sockvar));
	return env;
}

static int start_pod(struct kl_worker *w, const struct myce_kpod *kp, const cJSON *obj, struct myce_error **err)
{
	_cleanup_json_ cJSON *spec = cJSON_CreateObject();
	cJSON_AddNumberToObject(spec, "id", (double)w->local.id);
	cJSON_AddStringToObject(spec, "app", kp->container);
	cJSON_AddStringToObject(spec, "addr", w->local.addr);
	cJSON_AddItemToObject(spec, "cmd", cJSON_Duplicate(kp->command, true));
	/* Several containers: one process tree under myce-podinit, each with
	 * its own command, env and workdir (the agent's environment stays the
	 * daemon's); one container: the agent runs it directly, as before. */
	cJSON *containers = myce_kpod_containers_spec(kp);
	if (containers) {
		cJSON *c;
		cJSON_ArrayForEach(c, containers)
			cJSON_ReplaceItemInObject(c, "env", pod_env(w, cJSON_GetObjectItem(c, "env")));
		cJSON_AddItemToObject(spec, "containers", containers);
	} else {
		cJSON_AddItemToObject(spec, "env", pod_env(w, kp->env));
	}
	/* Kubernetes' default host name of a pod: its name (a DNS label, at most 63). */
	char host[64];
	snprintf(host, sizeof(host), "%s", kp->name);
	cJSON_AddStringToObject(spec, "hostname", host);
	_cleanup_free_ char *podname = xasprintf("%s/%s", kp->ns, kp->name);
	cJSON_AddStringToObject(spec, "k8s_pod", podname);
	cJSON_AddStringToObject(spec, "k8s_uid", w->uid);
	if (kp->workdir && !containers)
		cJSON_AddStringToObject(spec, "workdir", kp->workdir);
	/* A migration's target: waits for the checkpoint, carries the source's addresses. */
	cJSON *carried = kl_target_carried(obj);
	if (carried) {
		cJSON_AddItemToObject(spec, "carried", carried);
		cJSON_AddBoolToObject(spec, "target", true);
	}
	struct pod *p;
	if (pod_create(w->k->n, spec, &p, err) < 0)
		return -1;
	int64_t now = myce_wall_us();
	if (!w->local.start_us)
		w->local.start_us = now;
	w->local.started_us = now;
	kl_local_save(w);
	for (int i = 0; i < kp->ncontainers; i++) {
		const struct myce_kpod_container *c = &kp->containers[i];
		const char *prog = cJSON_GetArrayItem(c->command, 0)->valuestring;
		log_info("pod %s/%s: container %s running as local pod %ld at %s (%s)", kp->ns, kp->name, c->name,
			 w->local.id, w->local.addr, prog);
		kl_event(w, "Normal", "Started", "Started container %s (%s) as local pod %ld at %s, no image pulled",
			 c->name, prog, w->local.id, w->local.addr);
	}
	return 0;
}

/* The agent's PID, 0 once it has exited (reaped here if the main thread has
 * not yet done it; an adopted agent is not our child). */
static pid_t agent_pid(struct kl_worker *w)
{
	struct node *n = w->k->n;
	pthread_mutex_lock(&n->lock);
	struct pod *p = pod_find(n, w->local.id);
	pid_t pid = p ? p->agent_pid : 0;
	pthread_mutex_unlock(&n->lock);
	if (pid <= 0)
		return 0;
	int st;
	pid_t r = waitpid(pid, &st, WNOHANG);
	/* An adopted agent is reaped by whoever inherited it, maybe late: a
	 * zombie no longer runs myce-agent. */
	if (r == pid || (r < 0 && errno == ECHILD && !myce_pid_runs(pid, "myce-agent"))) {
		pod_reaped(n, pid);
		return 0;
	}
	return pid;
}

/* The local pod's container name (what its agent registered), or NULL. */
static char *local_app(struct kl_worker *w)
{
	struct node *n = w->k->n;
	pthread_mutex_lock(&n->lock);
	struct pod *p = w->local.id >= 0 ? pod_find(n, w->local.id) : NULL;
	char *app = p && p->app ? xstrdup(p->app) : NULL;
	pthread_mutex_unlock(&n->lock);
	return app;
}

/* app.exit: "CODE\n", or "CODE CONTAINER\n" when one container of several
 * ended the pod (*container, caller frees; else NULL). */
static int read_exit_code(long id, char **container)
{
	_cleanup_free_ char *dir = myce_pod_dir(id);
	_cleanup_free_ char *path = xasprintf("%s/app.exit", dir);
	_cleanup_free_ char *s = myce_read_file(path, NULL);
	*container = NULL;
	/* No record: the agent itself died (killed). */
	if (!s)
		return 137;
	const char *sp = strchr(s, ' ');
	if (sp) {
		*container = xstrdup(sp + 1);
		(*container)[strcspn(*container, "\n")] = '\0';
	}
	return atoi(s);
}

/* The agent's view of its application: "running", "checkpointed", ...
 * or "" when the agent does not answer. */
static void app_state(struct kl_worker *w, char *buf, size_t len)
{
	_cleanup_free_ char *sock = pod_agent_sock(w->local.id);
	_cleanup_json_ cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "op", "status");
	_cleanup_json_ cJSON *resp = NULL;
	buf[0] = 0;
	if (myce_agentctl_call(sock, req, 1000, &resp, NULL) < 0)
		return;
	const char *st = myce_json_str(resp, "state");
	snprintf(buf, len, "%s", st ? st : "");
}

/* A source pod whose application a migration checkpointed away stays
 * Ready until the coordinator's hand-over marks it (T is then Ready): so
 * the Service never has zero ready endpoints during the migration.  New
 * connections to S's address meanwhile meet the freeze (CRIU's network
 * lock, then T's guard: delayed SYNs, not rejections) and are served by T,
 * which carries the address.  The mark also tells the ReplicaSet's
 * ranking which pod to delete (with the deletion cost). */
static bool handed_over(const cJSON *obj)
{
	const cJSON *ann = cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "metadata"), "annotations");
	return myce_json_str(ann, MYCE_KL_ANN_MIGRATED_TO) != NULL;
}

/* A tcpSocket readiness probe, from the node (routes reach every pod). */
static bool tcp_ready(const char *addr, int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		return false;
	_cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return true;
	if (errno != EINPROGRESS)
		return false;
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	if (poll(&p, 1, 1000) != 1)
		return false;
	int e = 0;
	socklen_t l = sizeof(e);
	return getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) == 0 && e == 0;
}

/* Every container's tcpSocket readiness probe. */
static bool probes_ready(struct kl_worker *w, const struct myce_kpod *kp)
{
	for (int i = 0; i < kp->ncontainers; i++)
		if (kp->containers[i].ready_port && !tcp_ready(w->local.addr, kp->containers[i].ready_port))
			return false;
	return true;
}

static void report(struct kl_worker *w, const struct myce_kpod *kp, struct kl_run *r, pid_t pid)
{
	struct kubelet *k = w->k;
	_cleanup_free_ char *cid = w->local.id >= 0 ? xasprintf("myce://%ld", w->local.id) : NULL;
	_cleanup_free_ char *host_ip = xstrdup(k->n->ip);
	struct myce_kpod_state st = {
		.phase = "Pending",
		.message = r->error,
		.reason = r->error ? "UnsupportedPod" : NULL,
		.pod_ip = w->local.id >= 0 ? w->local.addr : NULL,
		.host_ip = host_ip,
		.start_us = w->local.start_us ? w->local.start_us : r->seen_us,
		.cstate = MYCE_KPOD_WAITING,
		.waiting_reason = r->error ? "CreateContainerError" : r->restart_at_us ? "CrashLoopBackOff" : NULL,
		.started_us = w->local.started_us,
		.ready = r->ready,
		.ready_changed_us = r->ready_changed_us,
		.restart_count = w->local.restart_count,
		.last_exit_code = w->local.last_exit_code,
		.last_started_us = w->local.last_started_us,
		.last_exit_us = w->local.last_exit_us,
		.container_id = cid,
		.ended_container = r->ended,
	};
	if (r->error && !w->local.start_us)
		st.phase = "Failed";
	if (pid > 0) {
		st.phase = "Running";
		st.cstate = MYCE_KPOD_RUNNING;
	} else if (r->exited) {
		st.phase = r->exit_code == 0 ? "Succeeded" : "Failed";
		st.cstate = MYCE_KPOD_TERMINATED;
		st.exit_code = r->exit_code;
		st.finished_us = r->exit_us;
	} else if (r->restart_at_us) {
		st.phase = "Running";
	}
	_cleanup_json_ cJSON *status = myce_kpod_status(kp, &st);
	/* A merge patch keeps fields it does not name: clear them explicitly. */
	if (!st.reason)
		cJSON_AddNullToObject(status, "reason");
	if (!st.message)
		cJSON_AddNullToObject(status, "message");
	_cleanup_free_ char *text = cJSON_PrintUnformatted(status);
	if (r->last_status && !strcmp(text, r->last_status))
		return;
	_cleanup_json_ cJSON *patch = cJSON_CreateObject();
	/* The UID in the patch is a precondition: never the status of a
	 * namesake pod created after this one was deleted. */
	cJSON_AddStringToObject(cJSON_AddObjectToObject(patch, "metadata"), "uid", w->uid);
	cJSON_AddItemToObject(patch, "status", steal_pointer(&status));
	_cleanup_free_ char *ns = myce_k8s_escape(w->ns);
	_cleanup_free_ char *name = myce_k8s_escape(w->name);
	_cleanup_free_ char *path = xasprintf("/api/v1/namespaces/%s/pods/%s/status", ns, name);
	_cleanup_json_ cJSON *out = NULL;
	_cleanup_error_ struct myce_error *e = NULL;
	kl_api_enter(k);
	int rc = myce_k8s_patch(k->api, path, MYCE_K8S_PATCH_MERGE, patch, &out, &e);
	kl_api_leave(k);
	if (rc >= 200 && rc < 300) {
		free(r->last_status);
		r->last_status = steal_pointer(&text);
		log_info("pod %s/%s: status %s%s", w->ns, w->name, st.phase, st.ready ? ", ready" : "");
		return;
	}
	if (rc > 0)
		myce_k8s_status_error(rc, out, "patch status", &e);
	log_warn("pod %s/%s: %s", w->ns, w->name, myce_error_msg(e));
}

/* Ends the local pod: SIGTERM to the agent (which stops the application),
 * SIGKILL at the deadline, then the pod's namespaces and directory. */
static void stop_pod(struct kl_worker *w, int64_t deadline_us)
{
	if (w->local.id < 0)
		return;
	pid_t pid = agent_pid(w);
	if (pid > 0) {
		kill(pid, SIGTERM);
		while (myce_now_us() < deadline_us && agent_pid(w) > 0)
			usleep(20 * 1000);
		if (agent_pid(w) > 0) {
			log_info("pod %s/%s: grace period over, killing it", w->ns, w->name);
			kill(pid, SIGKILL);
			for (int i = 0; i < 250 && agent_pid(w) > 0; i++)
				usleep(20 * 1000);
		}
	}
	_cleanup_error_ struct myce_error *e = NULL;
	if (pod_delete(w->k->n, w->local.id, &e) < 0 && e->code != ENOENT)
		log_warn("pod %s/%s: %s", w->ns, w->name, myce_error_msg(e));
}

/* Deletion with a grace period, as the kubelet does it: preStop, then
 * SIGTERM, SIGKILL when the grace period ends; then the API object is
 * finalized (deleted at once, on condition that it is still this pod). */
static void terminate(struct kl_worker *w, const struct myce_kpod *kp)
{
	struct kubelet *k = w->k;
	int64_t t0 = myce_now_us();
	int64_t deadline = t0 + (int64_t)kp->grace_s * 1000000;
	log_info("pod %s/%s: deleting (grace period %d s)", w->ns, w->name, kp->grace_s);
	pid_t pid = w->local.id >= 0 ? agent_pid(w) : 0;
	bool hooks = false;
	for (int i = 0; i < kp->ncontainers; i++)
		hooks |= kp->containers[i].prestop != NULL;
	/* Each container's hook in turn, all within the one grace period. */
	bool run_hooks = pid > 0 && hooks && !kl_migrated_away(w, kp->container);
	for (int i = 0; run_hooks && i < kp->ncontainers; i++) {
		const struct myce_kpod_container *c = &kp->containers[i];
		if (!c->prestop)
			continue;
		_cleanup_free_ char *dir = myce_pod_dir(w->local.id);
		_cleanup_free_ char *logpath = xasprintf("%s/agent.log", dir);
		int status = -1;
		_cleanup_error_ struct myce_error *e = NULL;
		_cleanup_json_ cJSON *env = pod_env(w, c->env);
		if (kl_exec_in_pod(pid, c->prestop, env, logpath, deadline, &status, &e) < 0) {
			log_warn("pod %s/%s: preStop hook: %s", w->ns, w->name, myce_error_msg(e));
			kl_event(w, "Warning", "FailedPreStopHook", "PreStopHook failed: %s", myce_error_msg(e));
		} else {
			log_info("pod %s/%s: preStop hook exited %d after %.0f ms", w->ns, w->name, status,
				 (double)(myce_now_us() - t0) / 1000);
			if (status != 0)
				kl_event(w, "Warning", "FailedPreStopHook", "PreStopHook exited %d", status);
		}
	}
	for (int i = 0; pid > 0 && i < (kp->ncontainers > 0 ? kp->ncontainers : 1); i++) {
		const char *cname = kp->ncontainers > 0 ? kp->containers[i].name : kp->container;
		kl_event(w, "Normal", "Killing", "Stopping container %s", cname ? cname : "");
	}
	stop_pod(w, deadline);
	_cleanup_json_ cJSON *opts = cJSON_CreateObject();
	cJSON_AddNumberToObject(opts, "gracePeriodSeconds", 0);
	cJSON_AddStringToObject(cJSON_AddObjectToObject(opts, "preconditions"), "uid", w->uid);
	_cleanup_free_ char *ns = myce_k8s_escape(w->ns);
	_cleanup_free_ char *name = myce_k8s_escape(w->name);
	_cleanup_free_ char *path = xasprintf("/api/v1/namespaces/%s/pods/%s", ns, name);
	for (int attempt = 0; attempt < 10; attempt++) {
		_cleanup_json_ cJSON *out = NULL;
		_cleanup_error_ struct myce_error *e = NULL;
		kl_api_enter(k);
		int rc = myce_k8s_delete(k->api, path, opts, &out, &e);
		kl_api_leave(k);
		/* 404: already gone; 409: the name now belongs to another pod. */
		if ((rc >= 200 && rc < 300) || rc == 404 || rc == 409) {
			log_info("pod %s/%s: deleted after %.0f ms", w->ns, w->name, (double)(myce_now_us() - t0) / 1000);
			return;
		}
		if (rc > 0)
			myce_k8s_status_error(rc, out, "delete", &e);
		log_warn("pod %s/%s: %s", w->ns, w->name, myce_error_msg(e));
		usleep(500 * 1000);
	}
}

/* The application ended: as the restart policy says, schedule a restart
 * (with back-off, as CrashLoopBackOff) or keep the pod terminated. */
static void app_exited(struct kl_worker *w, const struct myce_kpod *kp, struct kl_run *r)
{
	free(r->ended);
	int code = read_exit_code(w->local.id, &r->ended);
	int64_t now = myce_wall_us();
	if (r->ended)
		log_info("pod %s/%s: container %s exited (%d), and the pod with it", w->ns, w->name, r->ended, code);
	else
		log_info("pod %s/%s: application exited (%d)", w->ns, w->name, code);
	r->ready = false;
	r->ready_changed_us = now;
	bool restart = kp->restart == MYCE_KPOD_RESTART_ALWAYS || (kp->restart == MYCE_KPOD_RESTART_ON_FAILURE && code != 0);
	if (!restart) {
		r->exited = true;
		r->exit_code = code;
		r->exit_us = now;
		return;
	}
	w->local.last_exit_code = code;
	w->local.last_started_us = w->local.started_us;
	w->local.last_exit_us = now;
	/* A run that lasted 10 s resets the back-off. */
	if (now - w->local.started_us > 10 * 1000000LL)
		r->backoff_ms = 0;
	r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : 1000;
	if (r->backoff_ms > 30000)
		r->backoff_ms = 30000;
	r->restart_at_us = myce_now_us() + (int64_t)r->backoff_ms * 1000;
	kl_local_save(w);
	kl_event(w, "Warning", "BackOff", "Back-off %d ms restarting failed container %s (exit code %d)%s", r->backoff_ms,
		 r->ended ? r->ended : kp->container, code,
		 kp->ncontainers > 1 ? ": the pod's containers restart together" : "");
}

/* One pass: bring the local pod in line with the API object. */
static void sync_pod(struct kl_worker *w, const struct myce_kpod *kp, const cJSON *obj, struct kl_run *r)
{
	const char *api_phase = myce_json_str(cJSON_GetObjectItem(obj, "status"), "phase");
	bool api_done = api_phase && (!strcmp(api_phase, "Succeeded") || !strcmp(api_phase, "Failed"));
	pid_t pid = w->local.id >= 0 ? agent_pid(w) : 0;
	if (r->restart_at_us && myce_now_us() >= r->restart_at_us) {
		stop_pod(w, myce_now_us());
		w->local.restart_count++;
		r->restart_at_us = 0;
		_cleanup_error_ struct myce_error *e = NULL;
		if (start_pod(w, kp, obj, &e) < 0) {
			log_error("pod %s/%s: restart: %s", w->ns, w->name, myce_error_msg(e));
			r->restart_at_us = myce_now_us() + 5000000;
		}
		pid = agent_pid(w);
	} else if (w->local.id < 0 && !api_done && !r->exited && !r->error) {
		_cleanup_error_ struct myce_error *e = NULL;
		_cleanup_kpod_ struct myce_kpod *kp2 = NULL;
		/* Without the coordinator's list of carried addresses no address
		 * is known to be free: wait for it (the pod's agent could not
		 * register without the coordinator anyway). */
		_cleanup_json_ cJSON *reserved = kl_carried_fetch(w->k, &e);
		if (!reserved) {
			if (myce_now_us() - r->carried_warned_us > 10 * 1000000LL) {
				log_warn("pod %s/%s: waiting for the coordinator's carried addresses: %s", w->ns, w->name,
					 myce_error_msg(e));
				r->carried_warned_us = myce_now_us();
			}
			return;
		}
		/* With its address known, the pod's env (status.podIP) is complete. */
		if (alloc_local(w, reserved, &e) < 0 || myce_kpod_parse(obj, w->local.addr, &kp2, &e) < 0 ||
		    start_pod(w, kp2, obj, &e) < 0) {
			log_error("pod %s/%s: %s", w->ns, w->name, myce_error_msg(e));
			r->error = xstrdup(myce_error_msg(e));
			kl_event(w, "Warning", "Failed", "%s", r->error);
			pthread_mutex_lock(&w->k->lock);
			w->local.id = -1;
			free(w->local.addr);
			w->local.addr = NULL;
			pthread_mutex_unlock(&w->k->lock);
		}
		pid = w->local.id >= 0 ? agent_pid(w) : 0;
	} else if (w->local.id >= 0 && pid == 0 && !r->exited && !r->restart_at_us) {
		app_exited(w, kp, r);
	}
	char state[32] = "";
	if (pid > 0)
		app_state(w, state, sizeof(state));
	bool ready;
	if (!strcmp(state, "checkpointed") && !handed_over(obj))
		ready = r->ready; /* S's address now leads to T: no probe */
	else
		ready = !strcmp(state, "running") && probes_ready(w, kp);
	if (ready != r->ready) {
		r->ready = ready;
		r->ready_changed_us = myce_wall_us();
	}
	if (w->local.id >= 0 || r->error)
		report(w, kp, r, pid);
}

void *kl_worker_run(void *arg)
{
	struct kl_worker *w = arg;
	struct kubelet *k = w->k;
	/* Created by the informer's thread, in the API's namespace. */
	kl_api_leave(k);
	struct kl_run r = {.seen_us = myce_wall_us()};
	if (w->adopted && w->local.id >= 0 && agent_pid(w) == 0 && !w->local.start_us)
		w->local.start_us = myce_wall_us();
	for (;;) {
		pthread_mutex_lock(&k->lock);
		bool stopping = k->stopping, gone = w->gone;
		_cleanup_json_ cJSON *obj = w->obj ? cJSON_Duplicate(w->obj, true) : NULL;
		pthread_mutex_unlock(&k->lock);
		if (stopping)
			break;
		if (gone) {
			/* Deleted without us (forced) or while this daemon was down. */
			_cleanup_free_ char *app = local_app(w);
			stop_pod(w, myce_now_us() + 2000000);
			kl_remove(w, obj, app);
			break;
		}
		_cleanup_kpod_ struct myce_kpod *kp = NULL;
		_cleanup_error_ struct myce_error *e = NULL;
		if (myce_kpod_parse(obj, w->local.addr, &kp, &e) < 0) {
			if (!r.error) {
				log_error("%s", myce_error_msg(e));
				r.error = xstrdup(myce_error_msg(e));
				kl_event(w, "Warning", "Failed", "%s", r.error);
				/* Report it with what can be read of the pod. */
				const cJSON *c = cJSON_GetArrayItem(
					cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "spec"), "containers"), 0);
				struct myce_kpod stub = {.ns = w->ns, .name = w->name, .uid = w->uid,
							 .container = (char *)(myce_json_str(c, "name") ? myce_json_str(c, "name") : "app"),
							 .image = (char *)(myce_json_str(c, "image") ? myce_json_str(c, "image") : "")};
				report(w, &stub, &r, 0);
			}
			if (myce_json_str(cJSON_GetObjectItem(obj, "metadata"), "deletionTimestamp")) {
				struct myce_kpod stub = {.grace_s = 0};
				terminate(w, &stub);
				kl_remove(w, obj, NULL);
				break;
			}
		} else if (kp->deleting) {
			terminate(w, kp);
			/* Gone for good: its registrations too. */
			kl_remove(w, obj, NULL);
			break;
		} else {
			sync_pod(w, kp, obj, &r);
		}
		/* Poll while something is expected to change on our side. */
		long wait_ms = r.ready || r.exited || r.error ? 1000 : 100;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (wait_ms % 1000) * 1000000;
		ts.tv_sec += wait_ms / 1000 + ts.tv_nsec / 1000000000;
		ts.tv_nsec %= 1000000000;
		pthread_mutex_lock(&k->lock);
		if (!k->stopping && !w->gone)
			pthread_cond_timedwait(&k->cond, &k->lock, &ts);
		pthread_mutex_unlock(&k->lock);
	}
	free(r.error);
	free(r.ended);
	free(r.last_status);
	pthread_mutex_lock(&k->lock);
	w->done = true;
	pthread_mutex_unlock(&k->lock);
	return NULL;
}
