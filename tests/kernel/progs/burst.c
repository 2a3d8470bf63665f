/* burst N PROG: start N children at once, each execs PROG with no
 * arguments, then wait for all of them. Exits 1 if any child failed. */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
	if (argc != 3)
		return 100;
	int n = atoi(argv[1]);
	char *child_argv[] = {argv[2], NULL};
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid < 0)
			return 101;
		if (pid == 0) {
			execve(argv[2], child_argv, environ);
			_exit(127);
		}
	}
	int status, bad = 0;
	while (wait(&status) > 0)
		bad |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
	return bad;
}
