/* Running a command inside a pod, as `kubectl exec` and exec hooks do: a
 * child process enters the namespaces of the pod's agent (PID 1 of the
 * pod) and forks the command, which so becomes a process of the pod's PID
 * namespace, sees the pod's /proc and /dev/shm and its network.  The
 * command dies with that child (PR_SET_PDEATHSIG), so a hook past its
 * deadline is ended by killing the child. */
#include "kubelet.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>

static const char *const ns_names[] = {"ipc", "uts", "net", "pid", "mnt"};

static int run_in_ns(const int *fds, char **argv, char **envp, int logfd, int report_fd)
{
	for (size_t i = 0; i < ARRAY_SIZE(ns_names); i++)
		if (setns(fds[i], 0) < 0)
			return 126;
	if (chdir("/") < 0)
		return 126;
	pid_t g = fork();
	if (g < 0)
		return 126;
	if (g == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* Our parent is outside the pod's PID namespace: getppid() is 0
		 * while it lives, the pod's PID 1 once it died. */
		if (getppid() != 0)
			_exit(126);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setsid();
		int nul = open("/dev/null", O_RDONLY);
		dup2(nul, 0);
		dup2(logfd, 1);
		dup2(logfd, 2);
		close_range(3, ~0U, 0);
		execvpe(argv[0], argv, envp);
		_exit(127);
	}
	/* The command's PID (in our namespace, the node's) for the deadline. */
	(void)!write(report_fd, &g, sizeof(g));
	int st;
	while (waitpid(g, &st, 0) < 0)
		if (errno != EINTR)
			return 126;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int kl_exec_in_pod(pid_t agent_pid, const cJSON *argv, const cJSON *env, const char *logpath, int64_t deadline_us,
		   int *status, struct myce_error **err)
{
	int n = cJSON_GetArraySize(argv);
	if (n < 1)
		return myce_error_set(err, EINVAL, "exec: empty command");
	_cleanup_free_ char **av = xzalloc(sizeof(char *) * (size_t)(n + 1));
	for (int i = 0; i < n; i++) {
		const cJSON *a = cJSON_GetArrayItem(argv, i);
		if (!cJSON_IsString(a))
			return myce_error_set(err, EINVAL, "exec: command must be strings");
		av[i] = a->valuestring;
	}
	extern char **environ;
	size_t ne = 0;
	while (environ[ne])
		ne++;
	_cleanup_free_ char **envp = xzalloc(sizeof(char *) * (ne + (size_t)cJSON_GetArraySize(env) + 1));
	memcpy(envp, environ, sizeof(char *) * ne);
	const cJSON *e;
	cJSON_ArrayForEach(e, env)
		if (cJSON_IsString(e))
			envp[ne++] = e->valuestring;

	int fds[ARRAY_SIZE(ns_names)];
	for (size_t i = 0; i < ARRAY_SIZE(ns_names); i++)
		fds[i] = -1;
	int rc = 0;
	for (size_t i = 0; i < ARRAY_SIZE(ns_names) && rc == 0; i++) {
		_cleanup_free_ char *p = xasprintf("/proc/%d/ns/%s", (int)agent_pid, ns_names[i]);
		fds[i] = open(p, O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0)
			rc = myce_error_errno(err, "exec: open %s", p);
	}
	_cleanup_close_ int logfd = rc == 0 ? open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
	if (rc == 0 && logfd < 0)
		rc = myce_error_errno(err, "exec: open %s", logpath);
	int pfd[2] = {-1, -1};
	if (rc == 0 && pipe2(pfd, O_CLOEXEC | O_NONBLOCK) < 0)
		rc = myce_error_errno(err, "exec: pipe");
	pid_t c = rc == 0 ? fork() : -1;
	if (rc == 0 && c < 0)
		rc = myce_error_errno(err, "exec: fork");
	if (c == 0)
		_exit(run_in_ns(fds, av, envp, logfd, pfd[1]));
	for (size_t i = 0; i < ARRAY_SIZE(ns_names); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (pfd[1] >= 0)
		close(pfd[1]);
	_cleanup_close_ int report = pfd[0];
	if (rc < 0)
		return rc;
	pid_t cmd_pid = 0;
	int st;
	for (;;) {
		pid_t r = waitpid(c, &st, WNOHANG);
		if (r == c)
			break;
		if (r < 0 && errno != EINTR)
			return myce_error_errno(err, "exec: wait");
		if (cmd_pid <= 0 && read(report, &cmd_pid, sizeof(cmd_pid)) != sizeof(cmd_pid))
			cmd_pid = 0;
		if (myce_now_us() >= deadline_us) {
			/* The command first, so that its parent reaps it: killed
			 * with its parent, it would be handed to this daemon (a
			 * subreaper) and hold the pod's PID namespace open. */
			bool reaped = false;
			if (cmd_pid > 0) {
				kill(cmd_pid, SIGKILL);
				for (int i = 0; i < 100 && !reaped; i++) {
					reaped = waitpid(c, &st, WNOHANG) == c;
					if (!reaped)
						usleep(10 * 1000);
				}
			}
			if (!reaped) {
				kill(c, SIGKILL);
				while (waitpid(c, &st, 0) < 0 && errno == EINTR)
					;
			}
			return myce_error_set(err, ETIMEDOUT, "exec %s: still running at the end of the grace period, killed",
					      av[0]);
		}
		usleep(10 * 1000);
	}
	*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	if (*status == 126)
		return myce_error_set(err, EIO, "exec %s: could not enter the pod's namespaces", av[0]);
	if (*status == 127)
		return myce_error_set(err, ENOENT, "exec %s: command not found", av[0]);
	return 0;
}
