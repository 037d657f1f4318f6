/* Pods of this node: a network namespace routed from the node through a
 * veth (/32 routes, proxy ARP), and the Execution Agent as PID 1 of new
 * PID, mount, UTS and IPC namespaces. */
#include "node.h"

#include "cluster.h"
#include "cmd.h"
#include "netns.h"
#include "nlroute.h"
#include "log.h"
#include "util.h"

#include <dirent.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

struct pod *pod_find(struct node *n, long id)
{
	for (struct pod *p = n->pods; p; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

char *pod_agent_sock(long id)
{
	_cleanup_free_ char *dir = myce_pod_dir(id);
	return xasprintf("%s/agent.sock", dir);
}

cJSON *pod_to_json(const struct pod *p)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "id", (double)p->id);
	cJSON_AddStringToObject(o, "app", p->app);
	cJSON_AddStringToObject(o, "addr", p->addr);
	cJSON_AddItemToObject(o, "carried", cJSON_Duplicate(p->carried, true));
	cJSON_AddNumberToObject(o, "agent_pid", p->agent_pid);
	cJSON_AddBoolToObject(o, "running", p->agent_pid > 0);
	if (p->k8s_pod) {
		cJSON_AddStringToObject(o, "k8s_pod", p->k8s_pod);
		cJSON_AddStringToObject(o, "k8s_uid", p->k8s_uid ? p->k8s_uid : "");
	}
	return o;
}

static void pod_free(struct pod *p)
{
	if (!p)
		return;
	free(p->app);
	free(p->addr);
	free(p->k8s_pod);
	free(p->k8s_uid);
	cJSON_Delete(p->carried);
	free(p);
}

static int write_sysctl(const char *path, const char *val)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return myce_write_full(fd, val, strlen(val));
}

struct pod_net_args {
	const char *addr;
};

/* Inside the pod's namespace: lo, eth0 with the pod's /32, default route
 * through the node's link-local gateway (answered by proxy ARP). */
static int pod_net_inside(void *arg, struct myce_error **err)
{
	struct pod_net_args *a = arg;
	if (MYCE_CMD(err, "ip", "link", "set", "lo", "up") < 0 ||
	    MYCE_CMD(err, "ip", "link", "set", "eth0", "up") < 0)
		return -1;
	_cleanup_free_ char *cidr = xasprintf("%s/32", a->addr);
	if (myce_nl_addr_add("eth0", cidr, err) < 0 ||
	    myce_nl_route_replace(MYCE_POD_GW "/32", NULL, "eth0", err) < 0 ||
	    myce_nl_route_replace("0.0.0.0/0", MYCE_POD_GW, "eth0", err) < 0)
		return -1;
	write_sysctl("/proc/sys/net/ipv4/conf/all/rp_filter", "0");
	write_sysctl("/proc/sys/net/ipv4/conf/eth0/rp_filter", "0");
	return 0;
}

static int pod_network(struct pod *p, struct myce_error **err)
{
	_cleanup_free_ char *ns = myce_pod_netns(p->id);
	_cleanup_free_ char *veth = myce_pod_veth(p->id);
	if (myce_netns_create(ns, err) < 0)
		return -1;
	if (MYCE_CMD(err, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns) < 0 ||
	    MYCE_CMD(err, "ip", "link", "set", veth, "up") < 0)
		return -1;
	_cleanup_free_ char *pa = xasprintf("/proc/sys/net/ipv4/conf/%s/proxy_arp", veth);
	_cleanup_free_ char *rp = xasprintf("/proc/sys/net/ipv4/conf/%s/rp_filter", veth);
	write_sysctl(pa, "1");
	write_sysctl(rp, "0");
	_cleanup_close_ int nsfd = myce_netns_open(ns, err);
	if (nsfd < 0)
		return -1;
	struct pod_net_args a = {.addr = p->addr};
	if (myce_netns_run(nsfd, pod_net_inside, &a, err) < 0)
		return -1;
	_cleanup_free_ char *cidr = xasprintf("%s/32", p->addr);
	return myce_nl_route_replace(cidr, NULL, veth, err);
}

static void pod_network_delete(long id)
{
	_cleanup_free_ char *ns = myce_pod_netns(id);
	_cleanup_free_ char *veth = myce_pod_veth(id);
	MYCE_CMD_TRY("ip", "link", "del", veth);
	myce_netns_delete(ns, NULL);
}

/* Forks the agent into the pod: a child enters the pod's network namespace,
 * unshares the others and forks PID 1 of the new PID namespace, which execs
 * the agent.  The node daemon is a child subreaper, so the agent becomes its
 * child when the intermediate process exits. */
static int spawn_agent(struct node *n, struct pod *p, const cJSON *spec, pid_t *out, struct myce_error **err)
{
	const cJSON *cmd = cJSON_GetObjectItem(spec, "cmd");
	const char *k8s_pod = myce_json_str(spec, "k8s_pod");
	const char *workdir = myce_json_str(spec, "workdir");
	const char *hostname = myce_json_str(spec, "hostname");
	const cJSON *env = cJSON_GetObjectItem(spec, "env");
	_cleanup_free_ char *ns = myce_pod_netns(p->id);
	_cleanup_free_ char *dir = myce_pod_dir(p->id);
	_cleanup_free_ char *agent = xasprintf("%s/myce-agent", n->exe_dir);
	_cleanup_free_ char *logpath = xasprintf("%s/agent.log", dir);
	_cleanup_free_ char *id = xasprintf("%ld", p->id);
	_cleanup_free_ char *tokpath = myce_token_path();
	int ncmd = cJSON_GetArraySize(cmd);
	_cleanup_free_ char **argv = xzalloc(sizeof(char *) * (size_t)(ncmd + 24));
	int k = 0;
	argv[k++] = agent;
	argv[k++] = "--pod-id";
	argv[k++] = id;
	argv[k++] = "--app";
	argv[k++] = p->app;
	argv[k++] = "--node";
	argv[k++] = n->name;
	argv[k++] = "--dir";
	argv[k++] = dir;
	argv[k++] = "--coordinator";
	argv[k++] = n->coord_url;
	argv[k++] = "--token-file";
	argv[k++] = tokpath;
	if (n->ca_file) {
		argv[k++] = "--ca";
		argv[k++] = n->ca_file;
	}
	if (k8s_pod) {
		argv[k++] = "--k8s-pod";
		argv[k++] = (char *)k8s_pod;
	}
	if (workdir) {
		argv[k++] = "--workdir";
		argv[k++] = (char *)workdir;
	}
	if (hostname) {
		argv[k++] = "--hostname";
		argv[k++] = (char *)hostname;
	}
	/* Several containers: the agent runs them under myce-podinit, each
	 * with its own command, environment and working directory. */
	const cJSON *containers = cJSON_GetObjectItem(spec, "containers");
	_cleanup_free_ char *cpath = xasprintf("%s/containers.json", dir);
	if (cJSON_GetArraySize(containers) > 1) {
		_cleanup_free_ char *text = cJSON_Print(containers);
		if (myce_write_file_atomic(cpath, text, strlen(text), 0600) < 0)
			return myce_error_errno(err, "write %s", cpath);
		argv[k++] = "--containers";
		argv[k++] = cpath;
	} else {
		argv[k++] = "--";
		for (int i = 0; i < ncmd; i++)
			argv[k++] = cJSON_GetArrayItem(cmd, i)->valuestring;
	}
	argv[k] = NULL;
	/* The application inherits the agent's environment: the daemon's, plus
	 * the pod's own variables (Kubernetes mode). */
	extern char **environ;
	size_t nenv = 0, nextra = (size_t)cJSON_GetArraySize(env);
	while (environ[nenv])
		nenv++;
	_cleanup_free_ char **envp = xzalloc(sizeof(char *) * (nenv + nextra + 1));
	memcpy(envp, environ, sizeof(char *) * nenv);
	const cJSON *ev;
	cJSON_ArrayForEach(ev, env)
		if (cJSON_IsString(ev))
			envp[nenv++] = ev->valuestring;

	_cleanup_close_ int nsfd = myce_netns_open(ns, err);
	if (nsfd < 0)
		return -1;
	_cleanup_close_ int logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (logfd < 0)
		return myce_error_errno(err, "open %s", logpath);
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return myce_error_errno(err, "pipe");
	pid_t mid = fork();
	if (mid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return myce_error_errno(err, "fork");
	}
	if (mid == 0) {
		int res[2] = {0, 0};
		if (setns(nsfd, CLONE_NEWNET) < 0 ||
		    unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC) < 0) {
			res[1] = errno;
			(void)!write(pfd[1], res, sizeof(res));
			_exit(1);
		}
		pid_t g = fork();
		if (g == 0) {
			sigset_t all;
			sigemptyset(&all);
			sigprocmask(SIG_SETMASK, &all, NULL);
			setsid();
			int nul = open("/dev/null", O_RDONLY);
			dup2(nul, 0);
			dup2(logfd, 1);
			dup2(logfd, 2);
			execve(argv[0], argv, envp);
			_exit(127);
		}
		res[0] = g;
		res[1] = g < 0 ? errno : 0;
		(void)!write(pfd[1], res, sizeof(res));
		_exit(0);
	}
	close(pfd[1]);
	int res[2] = {0, EIO};
	ssize_t got = read(pfd[0], res, sizeof(res));
	close(pfd[0]);
	int st;
	while (waitpid(mid, &st, 0) < 0 && errno == EINTR)
		;
	if (got != sizeof(res) || res[0] <= 0) {
		errno = res[1] ? res[1] : EIO;
		return myce_error_errno(err, "start agent in pod %ld", p->id);
	}
	*out = res[0];
	return 0;
}

/* "containers" (optional): [{"name", "cmd": [strings], "env": ["K=V"...],
 * "workdir"}...], run together under one process tree (podinit.c). */
static int pod_check_containers(const cJSON *containers, struct myce_error **err)
{
	if (!containers)
		return 0;
	if (!cJSON_IsArray(containers) || cJSON_GetArraySize(containers) < 1)
		return myce_error_set(err, EINVAL, "pod containers must be a non-empty array");
	const cJSON *c;
	cJSON_ArrayForEach(c, containers)
	{
		const cJSON *cmd = cJSON_GetObjectItem(c, "cmd"), *env = cJSON_GetObjectItem(c, "env"), *x;
		if (!myce_json_str(c, "name") || !cJSON_IsArray(cmd) || cJSON_GetArraySize(cmd) < 1)
			return myce_error_set(err, EINVAL, "pod containers need a name and a non-empty cmd");
		cJSON_ArrayForEach(x, cmd)
			if (!cJSON_IsString(x))
				return myce_error_set(err, EINVAL, "container cmd must be an array of strings");
		if (env && !cJSON_IsArray(env))
			return myce_error_set(err, EINVAL, "container env must be an array of \"NAME=value\" strings");
		cJSON_ArrayForEach(x, env)
			if (!cJSON_IsString(x) || !strchr(x->valuestring, '='))
				return myce_error_set(err, EINVAL, "container env must be an array of \"NAME=value\" strings");
		const cJSON *wd = cJSON_GetObjectItem(c, "workdir");
		if (wd && !cJSON_IsString(wd))
			return myce_error_set(err, EINVAL, "container workdir must be a string");
	}
	return 0;
}

int pod_create(struct node *n, const cJSON *spec, struct pod **out, struct myce_error **err)
{
	long id = (long)myce_json_num(spec, "id", -1);
	const char *app = myce_json_str(spec, "app");
	const char *addr = myce_json_str(spec, "addr");
	const cJSON *cmd = cJSON_GetObjectItem(spec, "cmd");
	if (id < 0 || !app || !addr || !cJSON_IsArray(cmd) || cJSON_GetArraySize(cmd) < 1)
		return myce_error_set(err, EINVAL, "pod spec needs id, app, addr and a non-empty cmd");
	for (int i = 0; i < cJSON_GetArraySize(cmd); i++)
		if (!cJSON_IsString(cJSON_GetArrayItem(cmd, i)))
			return myce_error_set(err, EINVAL, "pod cmd must be an array of strings");
	const cJSON *env = cJSON_GetObjectItem(spec, "env");
	if (env && !cJSON_IsArray(env))
		return myce_error_set(err, EINVAL, "pod env must be an array of \"NAME=value\" strings");
	if (pod_check_containers(cJSON_GetObjectItem(spec, "containers"), err) < 0)
		return -1;
	pthread_mutex_lock(&n->lock);
	bool exists = pod_find(n, id) != NULL;
	pthread_mutex_unlock(&n->lock);
	if (exists)
		return myce_error_set(err, EEXIST, "pod %ld already exists on %s", id, n->name);

	struct pod *p = xzalloc(sizeof(*p));
	p->id = id;
	p->app = xstrdup(app);
	p->addr = xstrdup(addr);
	const cJSON *carried = cJSON_GetObjectItem(spec, "carried");
	p->carried = cJSON_IsArray(carried) ? cJSON_Duplicate(carried, true) : cJSON_CreateArray();
	p->target = myce_json_bool(spec, "target", false);
	if (myce_json_str(spec, "k8s_pod")) {
		p->k8s_pod = xstrdup(myce_json_str(spec, "k8s_pod"));
		p->k8s_uid = xstrdup(myce_json_str(spec, "k8s_uid"));
	}

	_cleanup_free_ char *dir = myce_pod_dir(id);
	myce_rm_rf(dir);
	if (myce_mkdir_p(dir, 0700) < 0) {
		myce_error_errno(err, "mkdir %s", dir);
		goto fail;
	}
	if (pod_network(p, err) < 0)
		goto fail;
	/* Insert before the agent runs: it may be asked for work at once. */
	pthread_mutex_lock(&n->lock);
	p->next = n->pods;
	n->pods = p;
	pthread_mutex_unlock(&n->lock);
	pid_t pid;
	if (spawn_agent(n, p, spec, &pid, err) < 0) {
		pod_delete(n, id, NULL);
		return myce_error_wrap(err, "pod %ld", id);
	}
	pthread_mutex_lock(&n->lock);
	p->agent_pid = pid;
	if (!p->target)
		p->active_since_us = myce_now_us();
	pod_save(n, p);
	pthread_mutex_unlock(&n->lock);
	*out = p;
	return 0;
fail:
	pod_network_delete(id);
	myce_rm_rf(dir);
	pod_free(p);
	return myce_error_wrap(err, "create pod %ld", id);
}

void pod_reaped(struct node *n, pid_t pid)
{
	pthread_mutex_lock(&n->lock);
	for (struct pod *p = n->pods; p; p = p->next)
		if (p->agent_pid == pid)
			p->agent_pid = 0;
	pthread_mutex_unlock(&n->lock);
}

void pods_reap(struct node *n)
{
	pid_t pids[256];
	int k = 0;
	pthread_mutex_lock(&n->lock);
	for (struct pod *p = n->pods; p && k < 256; p = p->next)
		if (p->agent_pid > 0)
			pids[k++] = p->agent_pid;
	pthread_mutex_unlock(&n->lock);
	for (int i = 0; i < k; i++) {
		int st;
		pid_t r = waitpid(pids[i], &st, WNOHANG);
		/* Agents adopted after a restart of this daemon are not our children. */
		if (r == pids[i] || (r < 0 && errno == ECHILD && kill(pids[i], 0) < 0 && errno == ESRCH))
			pod_reaped(n, pids[i]);
	}
}

static bool agent_gone(struct node *n, long id, pid_t pid)
{
	int st;
	pid_t r = waitpid(pid, &st, WNOHANG);
	if (r == pid || (r < 0 && errno == ECHILD && kill(pid, 0) < 0 && errno == ESRCH))
		pod_reaped(n, pid);
	pthread_mutex_lock(&n->lock);
	struct pod *p = pod_find(n, id);
	bool gone = !p || p->agent_pid == 0;
	pthread_mutex_unlock(&n->lock);
	return gone;
}

int pod_delete(struct node *n, long id, struct myce_error **err)
{
	pthread_mutex_lock(&n->lock);
	struct pod *p = pod_find(n, id);
	pid_t pid = p ? p->agent_pid : 0;
	pthread_mutex_unlock(&n->lock);
	if (!p)
		return myce_error_set(err, ENOENT, "no pod %ld on %s", id, n->name);
	if (pid > 0) {
		kill(pid, SIGTERM);
		for (int i = 0; i < 100 && !agent_gone(n, id, pid); i++)
			usleep(50 * 1000);
		if (!agent_gone(n, id, pid)) {
			kill(pid, SIGKILL);
			for (int i = 0; i < 100 && !agent_gone(n, id, pid); i++)
				usleep(20 * 1000);
		}
	}
	pod_network_delete(id);
	_cleanup_free_ char *dir = myce_pod_dir(id);
	myce_rm_rf(dir);
	pthread_mutex_lock(&n->lock);
	for (struct pod **pp = &n->pods; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	pthread_mutex_unlock(&n->lock);
	pod_free(p);
	return 0;
}

void pod_save(struct node *n, const struct pod *p)
{
	_cleanup_json_ cJSON *j = pod_to_json(p);
	cJSON_AddStringToObject(j, "node", n->name);
	cJSON_AddBoolToObject(j, "target", p->target);
	_cleanup_free_ char *text = cJSON_Print(j);
	_cleanup_free_ char *dir = myce_pod_dir(p->id);
	_cleanup_free_ char *path = xasprintf("%s/pod.json", dir);
	myce_write_file_atomic(path, text, strlen(text), 0600);
}

/* After a restart of this daemon: adopt the pods the coordinator still
 * knows on this node, remove every other trace of earlier pods (e.g. a
 * migration target left behind when this daemon died mid-transfer). */
void pods_reconcile(struct node *n, const cJSON *live)
{
	DIR *d = opendir(MYCE_RUN_DIR "/pods");
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		char *end;
		long id = strtol(de->d_name, &end, 10);
		if (*end || end == de->d_name)
			continue;
		_cleanup_free_ char *path = xasprintf(MYCE_RUN_DIR "/pods/%ld/pod.json", id);
		_cleanup_free_ char *kpath = xasprintf(MYCE_RUN_DIR "/pods/%ld/" MYCE_KUBELET_FILE, id);
		if (access(kpath, F_OK) == 0)
			continue; /* a Kubernetes pod: the kubelet adopts or removes it */
		_cleanup_free_ char *text = myce_read_file(path, NULL);
		_cleanup_json_ cJSON *j = text ? cJSON_Parse(text) : NULL;
		const char *node = myce_json_str(j, "node");
		if (!node || strcmp(node, n->name) != 0)
			continue;
		pid_t pid = (pid_t)myce_json_num(j, "agent_pid", 0);
		const cJSON *known = NULL, *x;
		cJSON_ArrayForEach(x, live)
			if ((long)myce_json_num(x, "id", -1) == id && !strcmp(myce_json_str(x, "node"), n->name))
				known = x;
		if (known && pid > 0 && myce_pid_runs(pid, "myce-agent")) {
			struct pod *p = xzalloc(sizeof(*p));
			p->id = id;
			p->app = xstrdup(myce_json_str(j, "app"));
			p->addr = xstrdup(myce_json_str(j, "addr"));
			_cleanup_json_ cJSON *carried = cJSON_Parse(myce_json_str(known, "carried") ? myce_json_str(known, "carried") : "[]");
			p->carried = carried ? steal_pointer(&carried) : cJSON_CreateArray();
			p->target = myce_json_bool(j, "target", false);
			p->agent_pid = pid;
			p->active_since_us = myce_now_us();
			pthread_mutex_lock(&n->lock);
			p->next = n->pods;
			n->pods = p;
			pthread_mutex_unlock(&n->lock);
			log_info("pod %ld: adopted (agent pid %d)", id, (int)pid);
			continue;
		}
		if (pid > 0 && myce_pid_runs(pid, "myce-agent"))
			kill(pid, SIGKILL);
		pod_network_delete(id);
		_cleanup_free_ char *dir = myce_pod_dir(id);
		myce_rm_rf(dir);
		log_info("pod %ld: removed what an earlier run of this daemon left behind", id);
	}
	closedir(d);
}

void pods_delete_all(struct node *n)
{
	for (;;) {
		pthread_mutex_lock(&n->lock);
		long id = n->pods ? n->pods->id : -1;
		pthread_mutex_unlock(&n->lock);
		if (id < 0)
			return;
		pod_delete(n, id, NULL);
	}
}
