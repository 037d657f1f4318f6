/* myce-podinit: the root of the process tree of a pod with several
 * containers.
 *
 * CRIU dumps one process tree per call.  So that every container of a pod
 * is frozen at the same moment (one freeze, one consistent cut: a request
 * in flight between two containers over localhost is either wholly before
 * the cut or wholly after it) and restored together, the agent starts this
 * small program at MYCE_APP_PID_BASE, where a single-container pod has its
 * application, and this program starts every container as its child.  The
 * agent's one `criu dump` of MYCE_APP_PID_BASE then covers them all, and one
 * `criu restore` brings the whole tree back.
 *
 * It is part of the checkpoint, so it holds no descriptor beyond the
 * /dev/null stdio the agent gave it (a descriptor to anything outside the
 * pod would make the dump fail or the restore depend on the source node),
 * talks to the agent only with signals, and keeps no state but its
 * children's PIDs.  It is a child subreaper, so that a container that
 * daemonizes stays inside the dumped tree instead of being reparented to
 * the agent.
 *
 *   SIGTERM/SIGINT       passed on to every container; exits 0 once they ended
 *   a container ends     the pod ends: MYCE_PODINIT_SIG to PID 1 with
 *                        (index, exit code), SIGTERM to the others, SIGKILL
 *                        MYCE_PODINIT_KILL_S later, exit with that code
 *
 * Usage (built by the agent, not typed by hand):
 *   myce-podinit N { NAME WORKDIR NARGS NENV ARG... ENV... } x N
 * WORKDIR "" = inherited; ENV entries "NAME=value" are added to (and
 * override) the inherited environment.
 *
 * Plain libc on purpose: its pages are in every checkpoint. */
#include "podinit.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct ctr {
	const char *name, *workdir;
	char **argv; /* NULL-terminated */
	char **envp; /* NULL-terminated */
	pid_t pid;   /* 0 once ended */
};

extern char **environ;

static int count(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	return *s && !*end && v >= 0 && v < 100000 ? (int)v : -1;
}

static size_t name_len(const char *kv)
{
	const char *eq = strchr(kv, '=');
	return eq ? (size_t)(eq - kv) : strlen(kv);
}

/* The inherited environment with the container's own entries on top. */
static char **merge_env(char **add, int nadd)
{
	size_t nbase = 0;
	while (environ[nbase])
		nbase++;
	char **v = calloc(nbase + (size_t)nadd + 1, sizeof(char *));
	if (!v)
		abort();
	size_t k = 0;
	for (size_t i = 0; i < nbase; i++) {
		bool overridden = false;
		for (int j = 0; j < nadd && !overridden; j++)
			overridden = name_len(add[j]) == name_len(environ[i]) &&
				     !strncmp(add[j], environ[i], name_len(environ[i]));
		if (!overridden)
			v[k++] = environ[i];
	}
	for (int j = 0; j < nadd; j++)
		v[k++] = add[j];
	return v;
}

static int parse(int argc, char **argv, struct ctr **out)
{
	int n = argc > 1 ? count(argv[1]) : -1;
	if (n < 1)
		return -1;
	struct ctr *c = calloc((size_t)n, sizeof(*c));
	if (!c)
		abort();
	int i = 2;
	for (int k = 0; k < n; k++) {
		if (i + 4 > argc)
			return -1;
		c[k].name = argv[i];
		c[k].workdir = argv[i + 1];
		int nargs = count(argv[i + 2]), nenv = count(argv[i + 3]);
		i += 4;
		if (nargs < 1 || nenv < 0 || i + nargs + nenv > argc)
			return -1;
		/* argv[i + nargs] is overwritten by a NULL: the environment
		 * entries are copied out first. */
		char **env = calloc((size_t)nenv + 1, sizeof(char *));
		if (!env)
			abort();
		memcpy(env, argv + i + nargs, sizeof(char *) * (size_t)nenv);
		c[k].envp = merge_env(env, nenv);
		free(env);
		c[k].argv = calloc((size_t)nargs + 1, sizeof(char *));
		if (!c[k].argv)
			abort();
		memcpy(c[k].argv, argv + i, sizeof(char *) * (size_t)nargs);
		i += nargs + nenv;
	}
	if (i != argc)
		return -1;
	*out = c;
	return n;
}

static pid_t start(const struct ctr *c)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Each container leads its own session, as the single application
	 * of a one-container pod does (CRIU wants sessions led inside the
	 * tree). */
	setsid();
	if (*c->workdir && chdir(c->workdir) < 0)
		_exit(126);
	environ = c->envp;
	execvp(c->argv[0], c->argv);
	_exit(127);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Tells the agent, and only the agent: run by hand outside a pod, PID 1
 * would be the machine's init (for systemd, SIGRTMIN+2 means rescue mode). */
static void report(int index, int code)
{
	char comm[32] = "";
	FILE *f = fopen("/proc/1/comm", "re");
	if (f) {
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = '\0';
		fclose(f);
	}
	if (strcmp(comm, "myce-agent\n") != 0)
		return;
	sigqueue(1, MYCE_PODINIT_SIG, (union sigval){.sival_int = MYCE_PODINIT_VALUE(index, code)});
}

static void signal_all(struct ctr *c, int n, int sig)
{
	for (int k = 0; k < n; k++)
		if (c[k].pid > 0)
			kill(c[k].pid, sig);
}

int main(int argc, char **argv)
{
	struct ctr *c = NULL;
	int n = parse(argc, argv, &c);
	if (n < 1) {
		fprintf(stderr, "usage: myce-podinit N { NAME WORKDIR NARGS NENV ARG... ENV... } x N\n");
		return 2;
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	for (int k = 0; k < n; k++) {
		c[k].pid = start(&c[k]);
		if (c[k].pid < 0)
			c[k].pid = 0; /* reported as ended below */
	}
	bool ending = false;
	int exit_code = 0;
	double kill_at = 0;
	for (int k = 0; k < n; k++) {
		if (c[k].pid == 0 && !ending) {
			ending = true;
			exit_code = 126;
			report(k, exit_code);
			signal_all(c, n, SIGTERM);
			kill_at = now_s() + MYCE_PODINIT_KILL_S;
		}
	}
	for (;;) {
		int st;
		pid_t p;
		while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
			for (int k = 0; k < n; k++) {
				if (c[k].pid != p)
					continue;
				c[k].pid = 0;
				if (ending)
					break;
				/* The first container to end ends the pod. */
				ending = true;
				exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
				report(k, exit_code);
				signal_all(c, n, SIGTERM);
				kill_at = now_s() + MYCE_PODINIT_KILL_S;
			}
		}
		bool any = false;
		for (int k = 0; k < n; k++)
			any |= c[k].pid > 0;
		if (!any)
			return exit_code;
		if (kill_at > 0 && now_s() >= kill_at) {
			signal_all(c, n, SIGKILL);
			kill_at = 0;
		}
		struct timespec ts = {.tv_sec = 1};
		int sig = sigtimedwait(&set, NULL, &ts);
		if ((sig == SIGTERM || sig == SIGINT) && !ending) {
			/* Stopped by the agent: not an exit to report. */
			ending = true;
			signal_all(c, n, SIGTERM);
		}
	}
}
