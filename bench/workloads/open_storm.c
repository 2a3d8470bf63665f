/* open_storm: N open+close calls of one existing file. Prints the count, the
 * wall time of the loop and its own CPU time (ns), so the bench times the
 * workload itself and can tell the recorder's CPU from the workload's. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static long long tv_ns(struct timeval t)
{
	return t.tv_sec * 1000000000LL + t.tv_usec * 1000LL;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	const char *path = argc > 2 ? argv[2] : "/etc/hostname";
	struct timespec a, b;
	struct rusage ru;
	long ok = 0;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++) {
		int fd = open(path, O_RDONLY);
		if (fd >= 0) {
			ok++;
			close(fd);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	getrusage(RUSAGE_SELF, &ru);
	long long ns = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
	printf("opens=%ld ok=%ld ns=%lld cpu_ns=%lld\n", n, ok, ns,
	       tv_ns(ru.ru_utime) + tv_ns(ru.ru_stime));
	return ok == n ? 0 : 1;
}
