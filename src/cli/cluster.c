/* mycectl cluster up|down: the embedded local edge cluster.
 * Nodes are network namespaces behind a bridge in the host namespace (the
 * client site); links are shaped with tc; one node daemon per node and the
 * coordinator are started as daemons; everything created is recorded in
 * MYCE_RUN_DIR/cluster.json so that `down` removes exactly that. */
#include "cli.h"

#include "checkpoint.h"
#include "cluster.h"
#include "cmd.h"
#include "netns.h"
#include "tlsgen.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define CLUSTER_FILE MYCE_RUN_DIR "/cluster.json"

static int write_str(const char *path, const char *val)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return myce_write_full(fd, val, strlen(val));
}

static char *read_trim(const char *path)
{
	char *s = myce_read_file(path, NULL);
	if (s)
		s[strcspn(s, "\n")] = '\0';
	return s;
}

/* Starts a daemon detached from us (own session, output to a log file),
 * optionally inside a network namespace.  Returns its PID. */
/* The coordinator's program: Kubernetes mode is its own build (no libcurl in
 * the embedded one, see src/coordinator/k8s_off.c). */
static const char *coord_exe(const char *kubeconfig)
{
	return kubeconfig ? "myce-coordinator-k8s" : "myce-coordinator";
}

static pid_t start_daemon(char *const argv[], const char *netns, const char *log, struct myce_error **err)
{
	_cleanup_close_ int nsfd = netns ? myce_netns_open(netns, err) : -1;
	if (netns && nsfd < 0)
		return -1;
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return myce_error_errno(err, "pipe");
	pid_t mid = fork();
	if (mid < 0)
		return myce_error_errno(err, "fork");
	if (mid == 0) {
		if (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) < 0)
			_exit(1);
		setsid();
		pid_t d = fork();
		if (d == 0) {
			int nul = open("/dev/null", O_RDONLY);
			int lf = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
			dup2(nul, 0);
			dup2(lf, 1);
			dup2(lf, 2);
			close_range(3, ~0U, 0);
			execv(argv[0], argv);
			_exit(127);
		}
		(void)!write(pfd[1], &d, sizeof(d));
		_exit(0);
	}
	close(pfd[1]);
	pid_t d = -1;
	(void)!read(pfd[0], &d, sizeof(d));
	close(pfd[0]);
	waitpid(mid, NULL, 0);
	if (d <= 0)
		return myce_error_set(err, EIO, "could not start %s", argv[0]);
	return d;
}

static void stop_pid(pid_t pid, const char *exe_name, int grace_ms)
{
	if (pid <= 0 || !myce_pid_runs(pid, exe_name))
		return;
	kill(pid, SIGTERM);
	for (int i = 0; i < grace_ms / 20 && myce_pid_runs(pid, exe_name); i++)
		usleep(20 * 1000);
	if (myce_pid_runs(pid, exe_name))
		kill(pid, SIGKILL);
}

/* A running coordinator's program, whichever of the two it is (see
 * coord_exe()): stopping and repairing find it under either name. */
static const char *coordinator_exe(pid_t pid)
{
	return myce_pid_runs(pid, "myce-coordinator-k8s") ? "myce-coordinator-k8s" : "myce-coordinator";
}

/* SIGKILLs every process whose network namespace is the one bound at
 * /run/netns/NAME: what is left of pods and node daemons we started. */
static void kill_in_netns(const char *name)
{
	_cleanup_free_ char *path = xasprintf("/run/netns/%s", name);
	struct stat ns;
	if (stat(path, &ns) < 0)
		return;
	DIR *d = opendir("/proc");
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 1)
			continue;
		_cleanup_free_ char *p = xasprintf("/proc/%ld/ns/net", pid);
		struct stat st;
		if (stat(p, &st) == 0 && st.st_ino == ns.st_ino && st.st_dev == ns.st_dev)
			kill((pid_t)pid, SIGKILL);
	}
	closedir(d);
}

static int cluster_down(bool quiet)
{
	_cleanup_json_ cJSON *state = NULL;
	_cleanup_free_ char *text = myce_read_file(CLUSTER_FILE, NULL);
	if (text)
		state = cJSON_Parse(text);
	/* Node daemons first: on SIGTERM they delete their pods. */
	const cJSON *pids = cJSON_GetObjectItem(state, "node_pids");
	const cJSON *p;
	/* Kubernetes mode: the proxy removes its service table on SIGTERM. */
	stop_pid((pid_t)myce_json_num(state, "proxy_pid", 0), "myce-proxy", 5000);
	cJSON_ArrayForEach(p, pids)
		stop_pid((pid_t)p->valuedouble, "myce-node", 10000);
	const char *kubeconfig = myce_json_str(state, "kubeconfig");
	if (kubeconfig)
		cluster_k8s_delete_nodes(kubeconfig, cJSON_GetArraySize(pids), quiet);
	pid_t coord = (pid_t)myce_json_num(state, "coordinator_pid", 0);
	stop_pid(coord, coordinator_exe(coord), 5000);
	cJSON_ArrayForEach(p, cJSON_GetObjectItem(state, "link_pids"))
		stop_pid((pid_t)p->valuedouble, "myce-link", 2000);

	/* Whatever is left in our namespaces, then the namespaces. */
	int removed = 0;
	for (int pass = 0; pass < 2; pass++) {
		DIR *d = opendir("/run/netns");
		if (!d)
			break;
		struct dirent *de;
		while ((de = readdir(d))) {
			if (strncmp(de->d_name, "myce-", 5) != 0)
				continue;
			kill_in_netns(de->d_name);
			if (pass == 1) {
				myce_netns_delete(de->d_name, NULL);
				removed++;
			}
		}
		closedir(d);
		if (pass == 0)
			usleep(100 * 1000); /* let SIGKILLed processes leave their namespaces */
	}
	for (int i = 1; i <= MYCE_MAX_NODES; i++) {
		_cleanup_free_ char *veth = myce_node_hostveth(i);
		_cleanup_free_ char *sys = xasprintf("/sys/class/net/%s", veth);
		if (access(sys, F_OK) == 0)
			MYCE_CMD_TRY("ip", "link", "del", veth);
		_cleanup_free_ char *far = xasprintf("/sys/class/net/myce-e%d", i);
		if (access(far, F_OK) == 0)
			MYCE_CMD_TRY("ip", "link", "del", far + strlen("/sys/class/net/"));
	}
	if (access("/sys/class/net/" MYCE_BRIDGE, F_OK) == 0)
		MYCE_CMD_TRY("ip", "link", "del", MYCE_BRIDGE);
	MYCE_CMD_TRY("nft", "delete", "table", "ip", MYCE_SVC_TABLE);
	if (kubeconfig)
		MYCE_CMD_TRY("nft", "delete", "table", "ip", MYCE_K8S_SVC_TABLE);
	MYCE_CMD_TRY("ip", "route", "del", "unreachable", MYCE_POD_NET);
	const char *fwd = myce_json_str(state, "ip_forward_before");
	if (fwd)
		write_str("/proc/sys/net/ipv4/ip_forward", fwd);
	myce_rm_rf(MYCE_RUN_DIR);
	if (!quiet)
		printf("cluster down (%d namespaces removed)\n", removed);
	return 0;
}

static bool coordinator_healthy(struct cli *c)
{
	_cleanup_free_ char *url = xasprintf("%s/healthz", c->coord_url);
	return myce_http_call_ca("GET", url, NULL, c->ca_file, NULL, 1000, NULL, NULL) == 200;
}

/* An address range of ours already used by an interface that is not ours. */
static int check_addresses(struct myce_error **err)
{
	_cleanup_free_ char *out = NULL;
	FILE *f = popen("ip -o -4 addr show 2>/dev/null", "r");
	if (!f)
		return 0;
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		char idx[16], ifname[64], fam[16], addr[64];
		if (sscanf(line, "%15s %63s %15s %63s", idx, ifname, fam, addr) != 4)
			continue;
		if (!strncmp(ifname, "myce", 4))
			continue;
		if (!strncmp(addr, "10.77.0.", 8) || !strncmp(addr, "10.78.", 6) || !strncmp(addr, "10.96.0.", 8)) {
			pclose(f);
			return myce_error_set(err, EADDRINUSE,
					      "address %s on %s overlaps mycedrive's ranges (%s, %s, %s)", addr, ifname,
					      MYCE_NODE_NET, MYCE_POD_NET, MYCE_SVC_NET);
		}
	}
	pclose(f);
	return 0;
}

static bool have_netem(void)
{
	if (MYCE_CMD_TRY("ip", "link", "add", "myce-probe0", "type", "dummy") != 0)
		return false;
	bool ok = MYCE_CMD_TRY("tc", "qdisc", "add", "dev", "myce-probe0", "root", "netem", "delay", "1ms") == 0;
	MYCE_CMD_TRY("ip", "link", "del", "myce-probe0");
	return ok;
}

/* Shapes one direction of a link: rate (tbf) and, where the kernel has
 * netem, one-way delay.  ns NULL = host namespace. */
static int shape(const char *ns, const char *dev, double mbit, int delay_ms, bool netem, struct myce_error **err)
{
	_cleanup_free_ char *rate = xasprintf("%.3fmbit", mbit);
	long burst = (long)(mbit * 1e6 / 8 / 50);
	if (burst < 16384)
		burst = 16384;
	_cleanup_free_ char *bs = xasprintf("%ld", burst);
	_cleanup_free_ char *delay = xasprintf("%dms", delay_ms);
	const char *argv[24];
	int k = 0;
	argv[k++] = "tc";
	if (ns) {
		argv[k++] = "-n";
		argv[k++] = ns;
	}
	const char *base[] = {"qdisc", "add", "dev", dev, "root"};
	for (size_t i = 0; i < ARRAY_SIZE(base); i++)
		argv[k++] = base[i];
	if (netem && delay_ms > 0) {
		argv[k++] = "netem";
		argv[k++] = "delay";
		argv[k++] = delay;
		if (mbit > 0) {
			argv[k++] = "rate";
			argv[k++] = rate;
		}
	} else if (mbit > 0) {
		const char *tbf[] = {"tbf", "rate", rate, "burst", bs, "latency", "100ms"};
		for (size_t i = 0; i < ARRAY_SIZE(tbf); i++)
			argv[k++] = tbf[i];
	} else {
		return 0;
	}
	argv[k] = NULL;
	return myce_cmd_run(argv, err);
}

/* Without netem, a site link with delay is a pair of TAP devices joined by
 * myce-link, a userspace wire with one-way delay and rate (docs/link.md):
 * the host-side TAP joins the bridge, the other becomes the node's eth0. */
static int link_up(int i, double mbit, int delay_ms, pid_t *pid, struct myce_error **err)
{
	_cleanup_free_ char *host = myce_node_hostveth(i);
	_cleanup_free_ char *far = xasprintf("myce-e%d", i);
	_cleanup_free_ char *ns = myce_node_netns(i);
	_cleanup_free_ char *dir = myce_exe_dir();
	_cleanup_free_ char *bin = xasprintf("%s/myce-link", dir);
	_cleanup_free_ char *ready = xasprintf(MYCE_RUN_DIR "/link-node%d.ready", i);
	_cleanup_free_ char *log = xasprintf(MYCE_RUN_DIR "/logs/link-node%d.log", i);
	_cleanup_free_ char *d = xasprintf("%d", delay_ms);
	_cleanup_free_ char *r = xasprintf("%.3f", mbit);
	if (MYCE_CMD(err, "ip", "tuntap", "add", "dev", host, "mode", "tap") < 0 ||
	    MYCE_CMD(err, "ip", "tuntap", "add", "dev", far, "mode", "tap") < 0)
		return -1;
	char *argv[] = {bin, "--a", host, "--b", far, "--delay-ms", d, "--rate-mbit", r, "--ready-file", ready, NULL};
	*pid = start_daemon(argv, NULL, log, err);
	if (*pid < 0)
		return -1;
	for (int t = 0; t < 250 && access(ready, F_OK) < 0; t++)
		usleep(20 * 1000);
	if (access(ready, F_OK) < 0)
		return myce_error_set(err, EIO, "myce-link for node%d did not attach (see %s)", i, log);
	return MYCE_CMD(err, "ip", "link", "set", far, "netns", ns, "name", "eth0");
}

static int node_up(int i, double mbit, int delay_ms, bool netem, pid_t *link_pid, struct myce_error **err)
{
	_cleanup_free_ char *ns = myce_node_netns(i);
	_cleanup_free_ char *veth = myce_node_hostveth(i);
	_cleanup_free_ char *ip = myce_node_ip(i);
	_cleanup_free_ char *cidr = xasprintf("%s/24", ip);
	_cleanup_free_ char *podnet = myce_node_podnet(i);
	bool userspace_link = delay_ms > 0 && !netem;
	*link_pid = 0;
	if (myce_netns_create(ns, err) < 0)
		return -1;
	if (userspace_link ? link_up(i, mbit, delay_ms, link_pid, err) < 0
			   : MYCE_CMD(err, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns) < 0)
		return myce_error_wrap(err, "node%d: link", i);
	if (MYCE_CMD(err, "ip", "link", "set", veth, "master", MYCE_BRIDGE, "up") < 0 ||
	    MYCE_CMD(err, "ip", "-n", ns, "link", "set", "lo", "up") < 0 ||
	    MYCE_CMD(err, "ip", "-n", ns, "addr", "add", cidr, "dev", "eth0") < 0 ||
	    MYCE_CMD(err, "ip", "-n", ns, "link", "set", "eth0", "up") < 0 ||
	    MYCE_CMD(err, "ip", "-n", ns, "route", "add", "default", "via", MYCE_BRIDGE_IP) < 0 ||
	    /* Addresses of this node's range that no pod holds are unreachable
	     * (ICMP): a client of a deleted pod fails at once, not after a timeout. */
	    MYCE_CMD(err, "ip", "-n", ns, "route", "add", "unreachable", podnet) < 0 ||
	    /* The checkpoint stream's connection is opened (and warmed up)
	     * before the freeze; it must not fall back to slow start while
	     * the dump runs. */
	    MYCE_CMD(err, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.tcp_slow_start_after_idle=0") < 0 ||
	    MYCE_CMD(err, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
		     "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
		     "net.ipv4.conf.eth0.rp_filter=0") < 0 ||
	    MYCE_CMD(err, "ip", "route", "replace", podnet, "via", ip) < 0)
		return myce_error_wrap(err, "node%d", i);
	/* Both directions of the site's link (myce-link shapes its own). */
	if (!userspace_link &&
	    (shape(NULL, veth, mbit, delay_ms, netem, err) < 0 || shape(ns, "eth0", mbit, delay_ms, netem, err) < 0))
		return myce_error_wrap(err, "node%d: shaping", i);
	return 0;
}

static bool node_healthy(int i)
{
	_cleanup_free_ char *ip = myce_node_ip(i);
	_cleanup_free_ char *url = xasprintf("http://%s:%d/healthz", ip, MYCE_NODE_PORT);
	return myce_http_call("GET", url, NULL, NULL, 1000, NULL, NULL) == 200;
}

static int wait_nodes(struct cli *c, int n, struct myce_error **err)
{
	for (int t = 0; t < 300; t++) {
		_cleanup_json_ cJSON *out = NULL;
		bool ok = cli_call(c, "GET", "/v1/nodes", NULL, 2000, &out, NULL) == 200 && cJSON_GetArraySize(out) >= n;
		for (int i = 1; ok && i <= n; i++)
			ok = node_healthy(i);
		if (ok)
			return 0;
		usleep(50 * 1000);
	}
	return myce_error_set(err, ETIMEDOUT, "node daemons did not come up within 15 s (see %s/logs)", MYCE_RUN_DIR);
}

/* Kubernetes mode (kubeconfig not NULL): the coordinator migrates pods of
 * the API by name through the real controllers. */
static pid_t start_coordinator(double mbit, const char *kubeconfig, struct myce_error **err)
{
	_cleanup_free_ char *dir = myce_exe_dir();
	_cleanup_free_ char *bin = xasprintf("%s/%s", dir, coord_exe(kubeconfig));
	_cleanup_free_ char *tokpath = myce_token_path();
	_cleanup_free_ char *listen = xasprintf("%s:%d", MYCE_BRIDGE_IP, MYCE_COORD_PORT);
	/* Fast links: storing beats compressing; slow links: compress. */
	_cleanup_free_ char *level = xasprintf("%d", mbit <= 0 ? 0 : mbit >= 100 ? 1 : 3);
	char *argv[] = {bin, "--listen", listen, "--token-file", tokpath, "--db", MYCE_RUN_DIR "/coordinator.db",
			"--zstd-level", level, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
	int k = 9;
	if (access(MYCE_TLS_CERT, R_OK) == 0) {
		argv[k++] = "--tls-cert";
		argv[k++] = MYCE_TLS_CERT;
		argv[k++] = "--tls-key";
		argv[k++] = MYCE_TLS_KEY;
	}
	if (kubeconfig) {
		argv[k++] = "--kubeconfig";
		argv[k++] = (char *)kubeconfig;
	}
	return start_daemon(argv, NULL, MYCE_RUN_DIR "/logs/coordinator.log", err);
}

static int wait_coordinator(struct cli *c, struct myce_error **err)
{
	for (int t = 0; t < 200 && !coordinator_healthy(c); t++)
		usleep(25 * 1000);
	if (!coordinator_healthy(c))
		return myce_error_set(err, EIO, "coordinator did not start (see %s/logs/coordinator.log)", MYCE_RUN_DIR);
	return 0;
}

/* Kubernetes mode: the daemon starts in the host's namespace, where the API
 * server is reachable, and moves itself into its node's (--netns). */
static pid_t start_node(struct cli *c, int i, const char *kubeconfig, struct myce_error **err)
{
	_cleanup_free_ char *dir = myce_exe_dir();
	_cleanup_free_ char *bin = xasprintf("%s/myce-node", dir);
	_cleanup_free_ char *tokpath = myce_token_path();
	_cleanup_free_ char *name = myce_node_name(i);
	_cleanup_free_ char *ns = myce_node_netns(i);
	_cleanup_free_ char *log = xasprintf(MYCE_RUN_DIR "/logs/%s.log", name);
	char *argv[16] = {bin, "--name", name, "--coordinator", c->coord_url, "--token-file", tokpath};
	int k = 7;
	if (c->ca_file) {
		argv[k++] = "--ca";
		argv[k++] = c->ca_file;
	}
	if (kubeconfig) {
		argv[k++] = "--kubeconfig";
		argv[k++] = (char *)kubeconfig;
		argv[k++] = "--netns";
		argv[k++] = ns;
	}
	return start_daemon(argv, kubeconfig ? NULL : ns, log, err);
}

static pid_t start_proxy(const char *kubeconfig, struct myce_error **err)
{
	_cleanup_free_ char *dir = myce_exe_dir();
	_cleanup_free_ char *bin = xasprintf("%s/myce-proxy", dir);
	char *argv[] = {bin, "--kubeconfig", (char *)kubeconfig, "--table", MYCE_K8S_SVC_TABLE, NULL};
	return start_daemon(argv, NULL, MYCE_RUN_DIR "/logs/proxy.log", err);
}

/* The cluster exists: restart whichever daemon is not running (a crashed or
 * killed coordinator or node daemon) and keep everything else. */
static int cluster_repair(struct cli *c, cJSON *state, struct myce_error **err)
{
	int restarted = 0;
	const char *kubeconfig = myce_json_str(state, "kubeconfig");
	pid_t coord = (pid_t)myce_json_num(state, "coordinator_pid", 0);
	if (!myce_pid_runs(coord, coordinator_exe(coord))) {
		pid_t p = start_coordinator(myce_json_num(state, "rate_mbit", 0), kubeconfig, err);
		if (p < 0 || wait_coordinator(c, err) < 0)
			return -1;
		cJSON_ReplaceItemInObject(state, "coordinator_pid", cJSON_CreateNumber(p));
		printf("cluster up: restarted the coordinator (pid %d)\n", (int)p);
		restarted++;
	}
	cJSON *np = cJSON_GetObjectItem(state, "node_pids");
	for (int i = 1; i <= cJSON_GetArraySize(np); i++) {
		cJSON *pj = cJSON_GetArrayItem(np, i - 1);
		if (myce_pid_runs((pid_t)pj->valuedouble, "myce-node"))
			continue;
		pid_t p = start_node(c, i, kubeconfig, err);
		if (p < 0)
			return -1;
		cJSON_SetNumberValue(pj, p);
		printf("cluster up: restarted the node daemon of node%d (pid %d)\n", i, (int)p);
		restarted++;
	}
	if (kubeconfig && !myce_pid_runs((pid_t)myce_json_num(state, "proxy_pid", 0), "myce-proxy")) {
		pid_t p = start_proxy(kubeconfig, err);
		if (p < 0)
			return -1;
		cJSON_DeleteItemFromObject(state, "proxy_pid");
		cJSON_AddNumberToObject(state, "proxy_pid", p);
		printf("cluster up: restarted the service proxy (pid %d)\n", (int)p);
		restarted++;
	}
	_cleanup_free_ char *text = cJSON_Print(state);
	myce_write_file_atomic(CLUSTER_FILE, text, strlen(text), 0600);
	if (restarted && wait_nodes(c, cJSON_GetArraySize(np), err) < 0)
		return -1;
	if (!restarted)
		printf("cluster already up (mycectl cluster down first to change it)\n");
	return 0;
}

static int cluster_create(struct cli *c, int nodes, double mbit, int delay_ms, bool tls, const char *kubeconfig,
			  struct myce_error **err)
{
	bool netem = delay_ms > 0 && have_netem();
	if (myce_mkdir_p(MYCE_RUN_DIR "/logs", 0700) < 0 || myce_mkdir_p(MYCE_RUN_DIR "/pods", 0700) < 0)
		return myce_error_errno(err, "create %s", MYCE_RUN_DIR);

	/* Token: 32 random bytes, hex. */
	unsigned char rnd[32];
	_cleanup_close_ int ur = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (ur < 0 || myce_read_full(ur, rnd, sizeof(rnd)) < 0)
		return myce_error_errno(err, "no randomness for the token");
	char hex[65];
	for (size_t i = 0; i < sizeof(rnd); i++)
		sprintf(hex + 2 * i, "%02x", rnd[i]);
	_cleanup_free_ char *tokpath = myce_token_path();
	_cleanup_free_ char *tokline = xasprintf("%s\n", hex);
	if (myce_write_file_atomic(tokpath, tokline, strlen(tokline), 0600) < 0)
		return myce_error_errno(err, "write token");
	/* TLS: a CA of this cluster's own (its key is not kept) and a
	 * certificate for the coordinator's address; clients trust the CA. */
	unlink(MYCE_CA_FILE);
	unlink(MYCE_TLS_CERT);
	unlink(MYCE_TLS_KEY);
	if (tls && myce_tls_make_certs(MYCE_RUN_DIR, MYCE_BRIDGE_IP, 365, err) < 0)
		return myce_error_wrap(err, "coordinator certificate");
	cli_pick_coordinator(c, NULL);

	_cleanup_json_ cJSON *state = cJSON_CreateObject();
	_cleanup_free_ char *fwd = read_trim("/proc/sys/net/ipv4/ip_forward");
	cJSON_AddStringToObject(state, "ip_forward_before", fwd ? fwd : "0");
	cJSON_AddNumberToObject(state, "nodes", nodes);
	cJSON_AddNumberToObject(state, "rate_mbit", mbit);
	cJSON_AddNumberToObject(state, "delay_ms", delay_ms);
	cJSON_AddBoolToObject(state, "tls", tls);
	if (kubeconfig)
		cJSON_AddStringToObject(state, "kubeconfig", kubeconfig);
	cJSON_AddBoolToObject(state, "delay_emulated", true); /* netem or myce-link */
	cJSON_AddStringToObject(state, "delay_emulation",
				delay_ms == 0 ? "none" : netem ? "netem" : "myce-link (userspace, no netem in this kernel)");
	_cleanup_free_ char *st0 = cJSON_Print(state);
	myce_write_file_atomic(CLUSTER_FILE, st0, strlen(st0), 0600);

	if (write_str("/proc/sys/net/ipv4/ip_forward", "1") < 0 ||
	    MYCE_CMD(err, "ip", "link", "add", MYCE_BRIDGE, "type", "bridge") < 0 ||
	    MYCE_CMD(err, "ip", "addr", "add", MYCE_BRIDGE_IP "/24", "dev", MYCE_BRIDGE) < 0 ||
	    MYCE_CMD(err, "ip", "link", "set", MYCE_BRIDGE, "up") < 0)
		return -1;
	/* Our ranges never leave the machine: pod addresses without a node are
	 * unreachable, and service addresses (DNAT'ed in the output hook, after
	 * a first route lookup) point at the bridge, where nobody answers. */
	if (MYCE_CMD(err, "ip", "route", "add", "unreachable", MYCE_POD_NET) < 0 ||
	    MYCE_CMD(err, "ip", "route", "add", MYCE_SVC_NET, "dev", MYCE_BRIDGE) < 0)
		return -1;
	write_str("/proc/sys/net/ipv4/conf/" MYCE_BRIDGE "/rp_filter", "0");
	write_str("/proc/sys/net/ipv4/conf/" MYCE_BRIDGE "/send_redirects", "0");
	cJSON *lp = cJSON_AddArrayToObject(state, "link_pids");
	for (int i = 1; i <= nodes; i++) {
		pid_t link_pid;
		int r = node_up(i, mbit, delay_ms, netem, &link_pid, err);
		if (link_pid > 0) {
			cJSON_AddItemToArray(lp, cJSON_CreateNumber(link_pid));
			_cleanup_free_ char *text = cJSON_Print(state);
			myce_write_file_atomic(CLUSTER_FILE, text, strlen(text), 0600);
		}
		if (r < 0)
			return -1;
		/* Kubernetes mode: a pod reaching a service whose endpoint is on
		 * its own node.  With br_netfilter loaded, the host's DNAT of a
		 * frame that arrived on the bridge happens at bridge level, and
		 * the translated frame is bridged back out of the port it came
		 * in by (hairpin), which a bridge port refuses by default. */
		_cleanup_free_ char *port = myce_node_hostveth(i);
		if (kubeconfig && MYCE_CMD(err, "ip", "link", "set", "dev", port, "type", "bridge_slave", "hairpin", "on") < 0)
			return myce_error_wrap(err, "node%d: hairpin", i);
	}

	pid_t cp = start_coordinator(mbit, kubeconfig, err);
	if (cp < 0)
		return -1;
	cJSON_AddNumberToObject(state, "coordinator_pid", cp);
	cJSON *np = cJSON_AddArrayToObject(state, "node_pids");
	_cleanup_free_ char *st1 = cJSON_Print(state);
	myce_write_file_atomic(CLUSTER_FILE, st1, strlen(st1), 0600);
	if (wait_coordinator(c, err) < 0)
		return -1;
	for (int i = 1; i <= nodes; i++) {
		pid_t p = start_node(c, i, kubeconfig, err);
		if (p < 0)
			return -1;
		cJSON_AddItemToArray(np, cJSON_CreateNumber(p));
	}
	if (kubeconfig) {
		pid_t p = start_proxy(kubeconfig, err);
		if (p < 0)
			return -1;
		cJSON_AddNumberToObject(state, "proxy_pid", p);
	}
	_cleanup_free_ char *st2 = cJSON_Print(state);
	myce_write_file_atomic(CLUSTER_FILE, st2, strlen(st2), 0600);
	if (wait_nodes(c, nodes, err) < 0)
		return -1;
	if (kubeconfig && cluster_k8s_wait_nodes(kubeconfig, nodes, err) < 0)
		return -1;
	if (c->json) {
		cli_print_json(state);
	} else {
		printf("cluster up: %d nodes (10.77.0.11-%d), links ", nodes, 10 + nodes);
		if (mbit > 0)
			printf("%.0f Mbit/s", mbit);
		else
			printf("unshaped");
		if (delay_ms > 0)
			printf(netem ? ", %d ms one-way delay (netem)" : ", %d ms one-way delay (myce-link: no netem in this kernel)",
			       delay_ms);
		printf("; coordinator %s", c->coord_url);
		if (kubeconfig)
			printf("; Kubernetes mode (%d Ready nodes, service proxy)", nodes);
		printf("\n");
	}
	return 0;
}


static int cluster_up(struct cli *c, int nodes, double mbit, int delay_ms, bool tls, const char *kubeconfig_arg)
{
	if (geteuid() != 0)
		return cli_fail("cluster up: must run as root (network namespaces, nftables, CRIU)");
	_cleanup_error_ struct myce_error *e = NULL;
	if (access(myce_ckpt_binary(), X_OK) < 0)
		return cli_fail("cluster up: CRIU not found at %s (run: make setup)", myce_ckpt_binary());
	if (myce_ckpt_check(&e) < 0)
		return cli_fail("cluster up: %s", myce_error_msg(e));
	/* Bad input changes nothing: the API must answer before we build. */
	_cleanup_free_ char *kubeconfig = NULL;
	if (kubeconfig_arg && cluster_k8s_check(kubeconfig_arg, &kubeconfig, &e) < 0)
		return cli_fail("cluster up: %s", myce_error_msg(e));
	_cleanup_free_ char *text = myce_read_file(CLUSTER_FILE, NULL);
	_cleanup_json_ cJSON *state = text ? cJSON_Parse(text) : NULL;
	if (state && cJSON_GetObjectItem(state, "node_pids") && access("/sys/class/net/" MYCE_BRIDGE, F_OK) == 0) {
		if (cluster_repair(c, state, &e) < 0)
			return cli_fail("cluster up: %s", myce_error_msg(e));
		return 0;
	}
	if (state)
		cluster_down(true);
	if (access("/sys/class/net/" MYCE_BRIDGE, F_OK) == 0 || access("/run/netns/myce-node1", F_OK) == 0)
		cluster_down(true);
	if (check_addresses(&e) < 0)
		return cli_fail("cluster up: %s", myce_error_msg(e));
	if (cluster_create(c, nodes, mbit, delay_ms, tls, kubeconfig, &e) < 0) {
		cli_fail("cluster up: %s", myce_error_msg(e));
		cluster_down(true);
		return 1;
	}
	return 0;
}

int cmd_cluster(struct cli *c, int argc, char **argv)
{
	if (argc < 2)
		return cli_fail("usage: mycectl cluster up [--nodes N] [--rate MBIT] [--delay MS] [--no-tls] [--kubeconfig FILE]"
				" | cluster down");
	if (!strcmp(argv[1], "down")) {
		if (geteuid() != 0)
			return cli_fail("cluster down: must run as root");
		return cluster_down(false);
	}
	if (strcmp(argv[1], "up") != 0)
		return cli_fail("cluster: unknown action %s (up or down)", argv[1]);
	int nodes = 3, delay = 10;
	double mbit = 10;
	bool tls = true;
	const char *kubeconfig = NULL;
	for (int i = 2; i < argc; i++) {
		char *end = NULL;
		if (!strcmp(argv[i], "--nodes") && i + 1 < argc) {
			nodes = (int)strtol(argv[++i], &end, 10);
			if (*end || nodes < 1 || nodes > MYCE_MAX_NODES)
				return cli_fail("cluster up: --nodes must be 1..%d", MYCE_MAX_NODES);
		} else if (!strcmp(argv[i], "--rate") && i + 1 < argc) {
			mbit = strtod(argv[++i], &end);
			if (*end || mbit < 0)
				return cli_fail("cluster up: --rate is in Mbit/s, 0 for unshaped");
		} else if (!strcmp(argv[i], "--delay") && i + 1 < argc) {
			delay = (int)strtol(argv[++i], &end, 10);
			if (*end || delay < 0 || delay > 10000)
				return cli_fail("cluster up: --delay is the one-way delay in ms");
		} else if (!strcmp(argv[i], "--no-tls")) {
			tls = false;
		} else if (!strcmp(argv[i], "--kubeconfig") && i + 1 < argc) {
			kubeconfig = argv[++i];
		} else {
			return cli_fail("cluster up: unexpected argument %s", argv[i]);
		}
	}
	return cluster_up(c, nodes, mbit, delay, tls, kubeconfig);
}
