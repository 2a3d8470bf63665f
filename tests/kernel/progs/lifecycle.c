/* lifecycle OPENS DIR PORT: every call whose arguments the programs read,
 * for tests/kernel/test_fallbacks.py: a thread (clone with CLONE_THREAD: no
 * fork event), vfork, clone3 and fork (processes), a failed execve with its
 * argv, a connect to 127.0.0.1:PORT, and in the forked child an exec of
 * OPENS DIR (every kind of open, chdir and fchdir: progs/opens.c). Built
 * static: no loader opens. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif

extern char **environ;

/* struct clone_args up to exit_signal: the kernel takes this size (v0 is
 * 64 bytes). */
struct clone_args_v0 {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

static void *thread(void *arg)
{
	return arg;
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 100;
	pthread_t t;
	if (pthread_create(&t, NULL, thread, NULL) != 0 || pthread_join(t, NULL) != 0)
		return 101;

	pid_t v = vfork();
	if (v == 0)
		_exit(0);
	waitpid(v, NULL, 0);

	struct clone_args_v0 ca;
	memset(&ca, 0, sizeof(ca));
	ca.exit_signal = SIGCHLD;
	long c = syscall(SYS_clone3, &ca, sizeof(ca));
	if (c == 0)
		_exit(0);
	if (c > 0)
		waitpid((pid_t)c, NULL, 0);

	char *bad[] = {"nope", "an argument", NULL};
	execve("/nonexistent/nope", bad, environ);

	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)atoi(argv[3]));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	connect(s, (struct sockaddr *)&sa, sizeof(sa));
	close(s);

	pid_t f = fork();
	if (f == 0) {
		char *av[] = {argv[1], argv[2], NULL};
		execve(argv[1], av, environ);
		_exit(127);
	}
	int status = 0;
	waitpid(f, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 102;
}
