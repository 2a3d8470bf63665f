/* exec_storm: N short processes, P at a time: each is a fork of this driver
 * that execs PROG (default /bin/true). Prints what it did, so the bench knows
 * the true number of fork, exec and exit events:
 *   forks=<N> execs=<N> ok=<children that exited 0> */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 20000;
	int par = argc > 2 ? atoi(argv[2]) : 8;
	char *prog = argc > 3 ? argv[3] : "/bin/true";
	char *child_argv[] = {prog, NULL};
	long started = 0, ok = 0, running = 0;
	int status;
	while (started < n || running > 0) {
		while (started < n && running < par) {
			pid_t pid = fork();
			if (pid < 0) {
				perror("exec_storm: fork");
				return 1;
			}
			if (pid == 0) {
				execv(prog, child_argv);
				_exit(127);
			}
			started++;
			running++;
		}
		if (wait(&status) < 0) {
			perror("exec_storm: wait");
			return 1;
		}
		running--;
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
			ok++;
	}
	printf("forks=%ld execs=%ld ok=%ld\n", n, n, ok);
	return ok == n ? 0 : 1;
}
