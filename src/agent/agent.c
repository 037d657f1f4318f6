/* myce-agent: the Execution Agent, PID 1 of a pod.
 *
 * It prepares the pod's mount namespace (own /proc, private /dev/shm), calls
 * the coordinator's `register`, and then either starts the application or —
 * when it is the target of a migration — waits for the checkpoint and
 * restores it.  The node daemon talks to it over agent.sock in the pod's
 * directory: checkpoint, restore, status. */
#include "agent_env.h"
#include "agentctl.h"
#include "checkpoint.h"
#include "criustats.h"
#include "cluster.h"
#include "http.h"
#include "log.h"
#include "memread.h"
#include "nft.h"
#include "synhold.h"
#include "podinit.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

enum app_state { APP_NONE, APP_RUNNING, APP_CHECKPOINTED, APP_EXITED };

struct agent {
	long pod_id;
	const char *app, *node, *dir, *coord, *role;
	const char *ca_file; /* CA of an https coordinator, or NULL */
	const char *k8s_pod; /* "namespace/name" in Kubernetes mode, else NULL */
	const char *workdir; /* the application's working directory, or NULL */
	const char *hostname; /* the pod's host name (default: the app's name) */
	bool env_form; /* a real cluster's container entrypoint (agent_env.h) */
	char *token;
	char **cmd;
	/* A pod of several containers (--containers): cmd runs myce-podinit,
	 * which parents them all (podinit.c); names in the pod's order. */
	cJSON *containers;
	char **podinit_argv;
	int ended_container; /* index pod-init reported, -1 = none */
	int app_pid;
	enum app_state state;
	int exit_status;
	sigset_t sigs;
};

static int pod_mounts(const char *hostname, struct myce_error **err)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return myce_error_errno(err, "make / private");
	/* Copies of other namespaces' bind mounts would keep them alive. */
	umount2("/run/netns", MNT_DETACH);
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return myce_error_errno(err, "mount /proc");
	if (mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=256m") < 0)
		return myce_error_errno(err, "mount /dev/shm");
	if (sethostname(hostname, strlen(hostname)) < 0)
		return myce_error_errno(err, "sethostname");
	return 0;
}

static int do_register(struct agent *a, struct myce_error **err)
{
	_cleanup_free_ char *url = xasprintf("%s/v1/register", a->coord);
	_cleanup_json_ cJSON *body = cJSON_CreateObject();
	/* A pod of the Kubernetes API is known to the coordinator by its name,
	 * not by a pod id the coordinator gave it. */
	if (a->k8s_pod) {
		cJSON_AddStringToObject(body, "pod", a->k8s_pod);
		/* The node's local pod id: what the coordinator asks the node for. */
		if (a->pod_id >= 0)
			cJSON_AddNumberToObject(body, "local_id", (double)a->pod_id);
	} else
		cJSON_AddNumberToObject(body, "pod_id", (double)a->pod_id);
	cJSON_AddStringToObject(body, "container", a->app);
	cJSON_AddStringToObject(body, "node", a->node);
	cJSON_AddNumberToObject(body, "agent_pid", (double)getpid());
	for (int attempt = 0;; attempt++) {
		_cleanup_json_ cJSON *out = NULL;
		_cleanup_error_ struct myce_error *e = NULL;
		int st = myce_http_call_ca("POST", url, a->token, a->ca_file, body, 10000, &out, &e);
		if (st == 200) {
			const char *role = myce_json_str(out, "role");
			a->role = xstrdup(role ? role : "start");
			if (cJSON_GetObjectItem(out, "migration_id"))
				log_info("pod %ld: target of migration %.0f", a->pod_id, myce_json_num(out, "migration_id", -1));
			return 0;
		}
		if (st >= 400 || attempt >= 100)
			return myce_error_set(err, EPROTO, "register: %s", myce_error_msg(e));
		usleep(100 * 1000);
	}
}

static int start_app(struct agent *a, struct myce_error **err)
{
	/* Start the application at a high PID (see MYCE_APP_PID_BASE) — in
	 * our own PID namespace only; a container's /proc/sys may be read-only. */
	_cleanup_free_ char *last = xasprintf("%d", MYCE_APP_PID_BASE - 1);
	_cleanup_close_ int fd = getpid() == 1 ? open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC) : -1;
	if (getpid() == 1 && (fd < 0 || myce_write_full(fd, last, strlen(last)) < 0)) {
		if (!a->env_form)
			return myce_error_errno(err, "set ns_last_pid");
		log_warn("cannot set ns_last_pid (%s): the application's PIDs may collide at a restore", strerror(errno));
	}
	pid_t pid = fork();
	if (pid < 0)
		return myce_error_errno(err, "fork application");
	if (pid == 0) {
		sigprocmask(SIG_UNBLOCK, &a->sigs, NULL);
		setsid();
		close_range(3, ~0U, 0);
		if (a->workdir && chdir(a->workdir) < 0)
			_exit(126);
		/* In a container the application's output is the container's log. */
		if (a->env_form) {
			execvp(a->cmd[0], a->cmd);
			_exit(127);
		}
		int n = open("/dev/null", O_RDWR);
		dup2(n, 0);
		dup2(n, 1);
		dup2(n, 2);
		if (n > 2)
			close(n);
		execvp(a->cmd[0], a->cmd);
		_exit(127);
	}
	a->app_pid = pid;
	a->state = APP_RUNNING;
	log_info("pod %ld: started %s as pid %d", a->pod_id, a->cmd[0], pid);
	return 0;
}

static void reap(struct agent *a)
{
	int st;
	pid_t p;
	while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
		if (p == a->app_pid && a->state == APP_RUNNING) {
			a->state = APP_EXITED;
			a->exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			log_info("pod %ld: application pid %d exited (%d)", a->pod_id, p, a->exit_status);
		}
	}
}

/* pod-init says which container ended the pod (its own exit follows). */
static void podinit_report(struct agent *a, const struct signalfd_siginfo *si)
{
	if (!a->containers || (pid_t)si->ssi_pid != a->app_pid)
		return;
	int idx = MYCE_PODINIT_INDEX(si->ssi_int), code = MYCE_PODINIT_CODE(si->ssi_int);
	const char *name = myce_json_str(cJSON_GetArrayItem(a->containers, idx), "name");
	if (!name)
		return;
	a->ended_container = idx;
	log_info("pod %ld: container %s exited (%d): the pod ends with it", a->pod_id, name, code);
}

/* --containers FILE: [{"name", "cmd": [...], "env": ["K=V"...], "workdir"}...]
 * (written by the node daemon).  Builds myce-podinit's command line
 * (podinit.c) from it, myce-podinit being next to this program. */
static int load_containers(struct agent *a, const char *file, struct myce_error **err)
{
	_cleanup_free_ char *text = myce_read_file(file, NULL);
	if (!text)
		return myce_error_errno(err, "read %s", file);
	a->containers = cJSON_Parse(text);
	int n = cJSON_GetArraySize(a->containers);
	if (!cJSON_IsArray(a->containers) || n < 1)
		return myce_error_set(err, EINVAL, "%s: not a list of containers", file);
	char self[4096];
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (len <= 0)
		return myce_error_errno(err, "readlink /proc/self/exe");
	self[len] = '\0';
	size_t cap = 3, k = 0;
	const cJSON *c;
	cJSON_ArrayForEach(c, a->containers)
		cap += 4 + (size_t)cJSON_GetArraySize(cJSON_GetObjectItem(c, "cmd")) +
		       (size_t)cJSON_GetArraySize(cJSON_GetObjectItem(c, "env"));
	char **v = xzalloc(sizeof(char *) * cap);
	v[k++] = xasprintf("%s/" MYCE_PODINIT_BINARY, dirname(self));
	v[k++] = xasprintf("%d", n);
	cJSON_ArrayForEach(c, a->containers)
	{
		const cJSON *cmd = cJSON_GetObjectItem(c, "cmd"), *env = cJSON_GetObjectItem(c, "env");
		const char *name = myce_json_str(c, "name"), *wd = myce_json_str(c, "workdir");
		if (!name || !cJSON_GetArraySize(cmd)) {
			a->podinit_argv = v;
			return myce_error_set(err, EINVAL, "%s: a container needs a name and a command", file);
		}
		v[k++] = xstrdup(name);
		v[k++] = xstrdup(wd ? wd : "");
		v[k++] = xasprintf("%d", cJSON_GetArraySize(cmd));
		v[k++] = xasprintf("%d", cJSON_GetArraySize(env));
		const cJSON *x;
		cJSON_ArrayForEach(x, cmd)
			v[k++] = xstrdup(cJSON_IsString(x) ? x->valuestring : "");
		cJSON_ArrayForEach(x, env)
			v[k++] = xstrdup(cJSON_IsString(x) ? x->valuestring : "");
	}
	a->podinit_argv = v;
	a->cmd = v;
	return 0;
}

/* The processes of the tree about to be dumped, pid -> comm (read before
 * the freeze: it costs nothing inside it). */
static cJSON *tree_list(pid_t root)
{
	_cleanup_free_ pid_t *tree = NULL;
	size_t n = 0;
	cJSON *list = cJSON_CreateArray();
	if (myce_memread_tree(root, &tree, &n, NULL) < 0)
		return list;
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *path = xasprintf("/proc/%d/comm", (int)tree[i]);
		_cleanup_free_ char *comm = myce_read_file(path, NULL);
		if (comm)
			comm[strcspn(comm, "\n")] = '\0';
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "pid", tree[i]);
		cJSON_AddStringToObject(o, "comm", comm ? comm : "");
		cJSON_AddItemToArray(list, o);
	}
	return list;
}

/* What CRIU's one dump covered: the processes of the tree that have a
 * core-PID.img in the images. */
static cJSON *dumped_processes(const char *imgdir, cJSON *tree)
{
	cJSON *out = cJSON_CreateArray();
	cJSON *p;
	cJSON_ArrayForEach(p, tree)
	{
		_cleanup_free_ char *core = xasprintf("%s/core-%.0f.img", imgdir, myce_json_num(p, "pid", 0));
		if (access(core, F_OK) == 0)
			cJSON_AddItemToArray(out, cJSON_Duplicate(p, true));
	}
	return out;
}

static void drop_guard(void)
{
	_cleanup_error_ struct myce_error *e = NULL;
	myce_nft_run("delete table inet " MYCE_GUARD_TABLE, &e);
}

/* Runs a CRIU operation with our signals unblocked: criu swrk inherits the
 * mask, and CRIU needs SIGCHLD. */
static void criu_window(struct agent *a, bool enter)
{
	sigprocmask(enter ? SIG_UNBLOCK : SIG_BLOCK, &a->sigs, NULL);
	if (!enter)
		reap(a);
}

/* CRIU's own account of the dump or restore, in ms, where it left one. */
static void add_criu_stats(cJSON *r, const char *imgdir, bool dump)
{
	struct myce_criu_stats st;
	if (myce_criu_stats_read(imgdir, dump, &st, NULL) < 0)
		return;
	cJSON *c = cJSON_AddObjectToObject(r, "criu");
	if (dump) {
		cJSON_AddNumberToObject(c, "freezing_ms", (double)st.freezing_us / 1000.0);
		cJSON_AddNumberToObject(c, "frozen_ms", (double)st.frozen_us / 1000.0);
		cJSON_AddNumberToObject(c, "memdump_ms", (double)st.memdump_us / 1000.0);
		cJSON_AddNumberToObject(c, "memwrite_ms", (double)st.memwrite_us / 1000.0);
		cJSON_AddNumberToObject(c, "pages_written", (double)st.pages_written);
	} else {
		cJSON_AddNumberToObject(c, "forking_ms", (double)st.forking_us / 1000.0);
		cJSON_AddNumberToObject(c, "restore_ms", (double)st.restore_us / 1000.0);
		cJSON_AddNumberToObject(c, "pages_restored", (double)st.pages_restored);
	}
}

static cJSON *op_checkpoint(struct agent *a, const cJSON *req)
{
	cJSON *r = cJSON_CreateObject();
	if (a->state != APP_RUNNING) {
		cJSON_AddBoolToObject(r, "ok", false);
		cJSON_AddStringToObject(r, "error", "no running application to checkpoint");
		return r;
	}
	const char *dir = myce_json_str(req, "dir");
	_cleanup_free_ char *imgdir = dir ? xstrdup(dir) : xasprintf("%s/images", a->dir);
	myce_rm_rf(imgdir);
	struct myce_ckpt_result res;
	_cleanup_error_ struct myce_error *e = NULL;
	_cleanup_json_ cJSON *tree = tree_list(a->app_pid);
	/* Connections in their handshake or in a listen backlog are not
	 * dumped (their clients would get a reset after the restore): hold new
	 * SYNs off and let the application accept what is queued, briefly. */
	_cleanup_error_ struct myce_error *he = NULL;
	int pending = -1;
	if (myce_synhold_begin(&he) == 0)
		pending = myce_synhold_drain(100);
	else
		log_warn("pod %ld: holding new connections: %s", a->pod_id, myce_error_msg(he));
	if (pending > 0)
		log_warn("pod %ld: %d connection(s) still in their handshake at the dump", a->pod_id, pending);
	criu_window(a, true);
	int rc = myce_ckpt_dump(a->app_pid, imgdir, &res, &e);
	criu_window(a, false);
	/* Success: CRIU's network lock holds everything until the pod is
	 * gone.  Failure: the application runs on and takes connections. */
	myce_synhold_end();
	cJSON_AddNumberToObject(r, "in_flight_at_dump", pending);
	cJSON_AddBoolToObject(r, "ok", rc == 0);
	cJSON_AddNumberToObject(r, "start_wall_us", (double)res.start_wall_us);
	cJSON_AddNumberToObject(r, "end_wall_us", (double)res.end_wall_us);
	cJSON_AddNumberToObject(r, "dump_ms", res.ms);
	if (rc < 0) {
		/* A failed dump leaves the tree running (CRIU resumes it). */
		myce_nft_delete_tables_prefix("CRIU-", NULL);
		cJSON_AddStringToObject(r, "error", myce_error_msg(e));
		log_error("pod %ld: %s", a->pod_id, myce_error_msg(e));
	} else {
		a->state = APP_CHECKPOINTED;
		cJSON *procs = dumped_processes(imgdir, tree);
		add_criu_stats(r, imgdir, true);
		log_info("pod %ld: checkpointed pid %d in %.1f ms, %d process(es) in one dump", a->pod_id, a->app_pid,
			 res.ms, cJSON_GetArraySize(procs));
		/* Every process of every container, frozen and dumped together. */
		cJSON_AddItemToObject(r, "processes", procs);
	}
	return r;
}

static cJSON *op_restore(struct agent *a, const cJSON *req)
{
	cJSON *r = cJSON_CreateObject();
	if (a->state == APP_RUNNING) {
		/* Idempotent: a repeated rollback finds the application back. */
		cJSON_AddBoolToObject(r, "ok", true);
		cJSON_AddBoolToObject(r, "already_running", true);
		return r;
	}
	const char *dir = myce_json_str(req, "dir");
	_cleanup_free_ char *imgdir = dir ? xstrdup(dir) : xasprintf("%s/images", a->dir);
	bool guard = myce_json_bool(req, "guard", false);
	bool tcp_close = myce_json_bool(req, "tcp_close", false);
	struct myce_ckpt_result res;
	_cleanup_error_ struct myce_error *e = NULL;
	criu_window(a, true);
	int rc = myce_ckpt_restore(imgdir, tcp_close, guard ? drop_guard : NULL, &res, &e);
	criu_window(a, false);
	/* On failure the guard stays: until the coordinator has routed the
	 * addresses back and deleted this pod, packets must not meet RSTs. */
	/* The network lock a dump left in this namespace (rollback case). */
	myce_nft_delete_tables_prefix("CRIU-", NULL);
	cJSON_AddBoolToObject(r, "ok", rc == 0);
	cJSON_AddNumberToObject(r, "start_wall_us", (double)res.start_wall_us);
	cJSON_AddNumberToObject(r, "end_wall_us", (double)res.end_wall_us);
	cJSON_AddNumberToObject(r, "restore_ms", res.ms);
	if (rc < 0) {
		cJSON_AddStringToObject(r, "error", myce_error_msg(e));
		log_error("pod %ld: %s", a->pod_id, myce_error_msg(e));
	} else {
		a->app_pid = res.pid;
		a->state = APP_RUNNING;
		add_criu_stats(r, imgdir, false);
		cJSON_AddNumberToObject(r, "pid", res.pid);
		log_info("pod %ld: restored pid %d in %.1f ms", a->pod_id, res.pid, res.ms);
	}
	return r;
}

static cJSON *op_status(struct agent *a)
{
	static const char *names[] = {"none", "running", "checkpointed", "exited"};
	cJSON *r = cJSON_CreateObject();
	cJSON_AddBoolToObject(r, "ok", true);
	cJSON_AddStringToObject(r, "state", names[a->state]);
	cJSON_AddNumberToObject(r, "app_pid", a->app_pid);
	cJSON_AddStringToObject(r, "role", a->role ? a->role : "");
	cJSON_AddNumberToObject(r, "containers", a->containers ? cJSON_GetArraySize(a->containers) : 1);
	return r;
}

static void serve_one(struct agent *a, int lfd)
{
	_cleanup_close_ int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return;
	_cleanup_json_ cJSON *req = NULL;
	_cleanup_error_ struct myce_error *e = NULL;
	if (myce_agentctl_recv(c, &req, &e) < 0)
		return;
	const char *op = myce_json_str(req, "op");
	_cleanup_json_ cJSON *resp = NULL;
	if (op && !strcmp(op, "checkpoint"))
		resp = op_checkpoint(a, req);
	else if (op && !strcmp(op, "restore"))
		resp = op_restore(a, req);
	else if (op && !strcmp(op, "status"))
		resp = op_status(a);
	else {
		resp = cJSON_CreateObject();
		cJSON_AddBoolToObject(resp, "ok", false);
		cJSON_AddStringToObject(resp, "error", "unknown operation");
	}
	myce_agentctl_send(c, resp, NULL);
}

/* Passes SIGTERM on and waits for the application however long it takes:
 * whoever stopped the pod owns the deadline and SIGKILLs this PID 1 (and so
 * the whole pod) when it is over — the node daemon after 5 s in embedded
 * mode, at the end of the grace period in Kubernetes mode, as a kubelet
 * does with a container's PID 1. */
static void stop_app(struct agent *a)
{
	if (a->state != APP_RUNNING)
		return;
	kill(a->app_pid, SIGTERM);
	while (a->state == APP_RUNNING) {
		usleep(20 * 1000);
		reap(a);
	}
}

static int run(struct agent *a)
{
	_cleanup_error_ struct myce_error *e = NULL;
	_cleanup_free_ char *sock = xasprintf("%s/agent.sock", a->dir);
	_cleanup_close_ int lfd = myce_agentctl_listen(sock, &e);
	if (lfd < 0) {
		log_error("%s", myce_error_msg(e));
		return 1;
	}
	if (do_register(a, &e) < 0) {
		log_error("pod %ld: %s", a->pod_id, myce_error_msg(e));
		return 1;
	}
	log_info("pod %ld: registered, role %s", a->pod_id, a->role);
	if (!strcmp(a->role, "start") && start_app(a, &e) < 0) {
		log_error("pod %ld: %s", a->pod_id, myce_error_msg(e));
		return 1;
	}
	_cleanup_close_ int sfd = signalfd(-1, &a->sigs, SFD_CLOEXEC);
	int64_t target_deadline = myce_now_us() + 600LL * 1000000;
	for (;;) {
		struct pollfd p[2] = {{.fd = sfd, .events = POLLIN}, {.fd = lfd, .events = POLLIN}};
		int r = poll(p, 2, 1000);
		if (r < 0 && errno != EINTR)
			return 1;
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
					log_info("pod %ld: stopping", a->pod_id);
					stop_app(a);
					unlink(sock);
					return 0;
				}
				if ((int)si.ssi_signo == MYCE_PODINIT_SIG) {
					podinit_report(a, &si);
					continue;
				}
				break;
			}
			reap(a);
		}
		if (p[1].revents & POLLIN)
			serve_one(a, lfd);
		if (a->state == APP_EXITED) {
			/* The node daemon reads how the application ended (its
			 * Kubernetes mode reports it as the container's exit code). */
			_cleanup_free_ char *path = xasprintf("%s/app.exit", a->dir);
			/* "CODE\n", or "CODE CONTAINER\n" for the container that
			 * ended a pod of several. */
			const char *who = a->ended_container >= 0
				? myce_json_str(cJSON_GetArrayItem(a->containers, a->ended_container), "name") : NULL;
			_cleanup_free_ char *code = who ? xasprintf("%d %s\n", a->exit_status, who)
							: xasprintf("%d\n", a->exit_status);
			myce_write_file_atomic(path, code, strlen(code), 0644);
			unlink(sock);
			return a->exit_status;
		}
		if (a->state == APP_NONE && myce_now_us() > target_deadline) {
			log_error("pod %ld: no checkpoint arrived within 600 s, giving up", a->pod_id);
			return 1;
		}
	}
}

static void ignore_signal(int sig)
{
	(void)sig;
}

/* `myce-agent -- CMD...` with no embedded flags: configured from the
 * environment, registering by pod name; the container runtime already made
 * the mounts and host name. */
static int env_config(struct agent *a, struct agent_env *ae, const char **token_file)
{
	_cleanup_error_ struct myce_error *e = NULL;
	if (agent_env_load(ae, &e) < 0) {
		fprintf(stderr, "myce-agent: %s\n", myce_error_msg(e));
		return -1;
	}
	a->env_form = true;
	a->coord = ae->coord;
	*token_file = ae->token_file;
	a->ca_file = ae->ca;
	a->k8s_pod = ae->k8s_pod;
	a->node = ae->node;
	a->app = ae->container;
	a->dir = ae->dir;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "prestop"))
		return agent_prestop_main(argc - 1, argv + 1);
	struct agent a = {.pod_id = -1};
	struct agent_env ae = {0};
	const char *token_file = NULL;
	static const struct option opts[] = {
		{"pod-id", required_argument, 0, 'p'}, {"app", required_argument, 0, 'a'},
		{"node", required_argument, 0, 'n'},   {"dir", required_argument, 0, 'd'},
		{"coordinator", required_argument, 0, 'c'}, {"token-file", required_argument, 0, 't'},
		{"ca", required_argument, 0, 'A'},
		{"k8s-pod", required_argument, 0, 'k'}, {"workdir", required_argument, 0, 'w'},
		{"hostname", required_argument, 0, 'H'}, {"containers", required_argument, 0, 'C'},
		{0, 0, 0, 0}};
	const char *containers = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 'p': a.pod_id = strtol(optarg, NULL, 10); break;
		case 'a': a.app = optarg; break;
		case 'n': a.node = optarg; break;
		case 'd': a.dir = optarg; break;
		case 'c': a.coord = optarg; break;
		case 't': token_file = optarg; break;
		case 'A': a.ca_file = optarg; break;
		case 'k': a.k8s_pod = optarg; break;
		case 'w': a.workdir = optarg; break;
		case 'H': a.hostname = optarg; break;
		case 'C': containers = optarg; break;
		default: return 2;
		}
	}
	bool embedded = a.pod_id >= 0 || a.app || a.node || a.dir || a.coord || token_file || containers;
	if (!embedded && optind < argc && env_config(&a, &ae, &token_file) < 0)
		return 2;
	if ((!a.env_form && a.pod_id < 0) || !a.app || !a.node || !a.dir || !a.coord || !token_file ||
	    (optind >= argc && !containers)) {
		fprintf(stderr, "usage: myce-agent --pod-id N --app NAME --node NODE --dir DIR "
				"--coordinator URL --token-file F [--ca FILE] [--k8s-pod NS/NAME] [--workdir DIR] [--hostname H]"
				" {-- CMD [ARGS...] | --containers FILE}\n"
				"       myce-agent -- CMD [ARGS...]   (a container's entrypoint: MYCE_COORDINATOR, MYCE_TOKEN_FILE,\n"
				"                   MYCE_POD_NAME, MYCE_NODE_NAME, ... from the environment)\n"
				"       myce-agent prestop            (a container's preStop hook)\n");
		return 2;
	}
	a.cmd = argv + optind;
	/* Nothing inherited may reach the application or CRIU. */
	close_range(3, ~0U, 0);
	_cleanup_free_ char *prog = a.env_form ? xasprintf("agent/%s", a.k8s_pod) : xasprintf("agent/pod%ld", a.pod_id);
	myce_log_init(prog, MYCE_LOG_INFO);
	if (!a.env_form && getpid() != 1) {
		log_error("must run as PID 1 of a new PID namespace (started by the node daemon)");
		return 2;
	}
	_cleanup_error_ struct myce_error *e = NULL;
	a.ended_container = -1;
	if (containers && load_containers(&a, containers, &e) < 0) {
		log_error("pod %ld: %s", a.pod_id, myce_error_msg(e));
		return 2;
	}
	a.token = myce_token_load(token_file, &e);
	if (!a.token) {
		log_error("%s", myce_error_msg(e));
		return 1;
	}
	sigemptyset(&a.sigs);
	sigaddset(&a.sigs, SIGCHLD);
	sigaddset(&a.sigs, SIGTERM);
	sigaddset(&a.sigs, SIGINT);
	sigaddset(&a.sigs, MYCE_PODINIT_SIG);
	/* Unblocked around CRIU calls (criu_window): must not kill us then. */
	signal(MYCE_PODINIT_SIG, ignore_signal);
	sigprocmask(SIG_BLOCK, &a.sigs, NULL);
	if (!a.env_form && pod_mounts(a.hostname ? a.hostname : a.app, &e) < 0) {
		log_error("pod %ld: %s", a.pod_id, myce_error_msg(e));
		return 1;
	}
	int rc = run(&a);
	agent_env_clear(&ae);
	return rc;
}
