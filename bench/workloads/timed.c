/* timed: runs a workload and measures it, the same way under every bench
 * configuration.
 *
 *   timed [-j K] [-g FIFO] [-a] -- CMD [ARGS...]
 *
 * -a  start a new audit session first (root writes /proc/self/loginuid, and
 *     the kernel gives the process a fresh session id), so the auditd
 *     configuration can select the workload with `-F ses=N`;
 * -g  wait until the bench writes a byte into FIFO: the bench opens it only
 *     when the configuration is ready (recorder started, audit rule added),
 *     so start-up costs are never part of the measured time;
 * -j  run K copies of CMD in parallel (the open-storm rate ladder).
 *
 * Prints one line on stderr after the workload has ended:
 *   timed: ns=<wall time> cpu_ns=<CPU of the workload's reaped processes> status=<s>
 * and exits with the status of the last copy that failed (or 0). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long tv_ns(struct timeval t)
{
	return t.tv_sec * 1000000000LL + t.tv_usec * 1000LL;
}

static void die(const char *what)
{
	fprintf(stderr, "timed: %s: %s\n", what, strerror(errno));
	exit(125);
}

static void new_audit_session(void)
{
	int fd = open("/proc/self/loginuid", O_WRONLY);
	if (fd < 0)
		die("open /proc/self/loginuid");
	if (write(fd, "0", 1) != 1)
		die("write /proc/self/loginuid");
	close(fd);
}

static void wait_gate(const char *path)
{
	char c;
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open gate");
	if (read(fd, &c, 1) != 1)
		die("read gate");
	close(fd);
}

int main(int argc, char **argv)
{
	int copies = 1, audit = 0, opt;
	const char *gate = NULL;
	while ((opt = getopt(argc, argv, "+j:g:a")) != -1) {
		switch (opt) {
		case 'j': copies = atoi(optarg); break;
		case 'g': gate = optarg; break;
		case 'a': audit = 1; break;
		default: return 125;
		}
	}
	if (optind >= argc || copies < 1) {
		fprintf(stderr, "usage: timed [-j K] [-g FIFO] [-a] -- CMD [ARGS...]\n");
		return 125;
	}
	if (audit)
		new_audit_session();
	if (gate)
		wait_gate(gate);

	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < copies; i++) {
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			execv(argv[optind], &argv[optind]);
			_exit(127);
		}
	}
	int result = 0, status;
	for (int i = 0; i < copies; i++) {
		if (wait(&status) < 0)
			die("wait");
		int s = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		if (s)
			result = s;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	struct rusage ru;
	getrusage(RUSAGE_CHILDREN, &ru);
	long long ns = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
	fprintf(stderr, "timed: ns=%lld cpu_ns=%lld status=%d\n", ns,
		tv_ns(ru.ru_utime) + tv_ns(ru.ru_stime), result);
	return result;
}
