#include "cmd.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

static int spawn_wait(const char *const argv[], char *errbuf, size_t errlen)
{
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
	/* Daemons block their signals for signalfd; the child gets a clean mask. */
	posix_spawnattr_t at;
	posix_spawnattr_init(&at);
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
	pid_t pid;
	int r = posix_spawnp(&pid, argv[0], &fa, &at, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(pipefd[1]);
	if (r != 0) {
		close(pipefd[0]);
		return -r;
	}
	size_t got = 0;
	for (;;) {
		char tmp[512];
		ssize_t n = read(pipefd[0], tmp, sizeof(tmp));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		size_t take = (size_t)n < errlen - 1 - got ? (size_t)n : errlen - 1 - got;
		memcpy(errbuf + got, tmp, take);
		got += take;
	}
	errbuf[got] = '\0';
	while (got > 0 && errbuf[got - 1] == '\n')
		errbuf[--got] = '\0';
	close(pipefd[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + WTERMSIG(st);
}

int myce_cmd_run(const char *const argv[], struct myce_error **err)
{
	char errbuf[1024];
	int r = spawn_wait(argv, errbuf, sizeof(errbuf));
	if (r == 0)
		return 0;
	char cmdline[512] = "";
	for (int i = 0; argv[i]; i++) {
		strncat(cmdline, argv[i], sizeof(cmdline) - strlen(cmdline) - 2);
		if (argv[i + 1])
			strncat(cmdline, " ", sizeof(cmdline) - strlen(cmdline) - 1);
	}
	if (r < 0)
		return myce_error_set(err, -r, "%s: %s", cmdline, strerror(-r));
	return myce_error_set(err, EIO, "%s: exit %d%s%s", cmdline, r, *errbuf ? ": " : "", errbuf);
}

int myce_cmd_try(const char *const argv[])
{
	char errbuf[256];
	return spawn_wait(argv, errbuf, sizeof(errbuf));
}
