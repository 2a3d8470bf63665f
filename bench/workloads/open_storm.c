/* open_storm: N open+close calls of one existing file. Prints the count, the
 * wall time of the loop and its own CPU time (ns), so the bench times the
 * workload itself and can tell the recorder's CPU from the workload's.
 *
 *   open_storm [N [PATH [RATE]]]
 *   open_storm -b [PATH]
 *
 * RATE > 0 paces the loop at RATE opens per second (it sleeps whenever it is
 * ahead), so the bench can look for the highest rate recorded without loss.
 * -b (bursts, bench/paired_storm.py): for each line N on stdin, N open+close
 * calls, then the loop's wall time in ns on a line of its own. */
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

static int bursts(const char *path)
{
	char line[64];
	while (fgets(line, sizeof(line), stdin)) {
		long n = atol(line), ok = 0;
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		for (long i = 0; i < n; i++) {
			int fd = open(path, O_RDONLY);
			if (fd >= 0) {
				ok++;
				close(fd);
			}
		}
		clock_gettime(CLOCK_MONOTONIC, &b);
		if (ok != n)
			return 1;
		printf("%lld\n", (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
		fflush(stdout);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && argv[1][0] == '-' && argv[1][1] == 'b')
		return bursts(argc > 2 ? argv[2] : "/etc/hostname");
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	const char *path = argc > 2 ? argv[2] : "/etc/hostname";
	double rate = argc > 3 ? atof(argv[3]) : 0;
	struct timespec a, b;
	struct rusage ru;
	long ok = 0;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++) {
		if (rate > 0 && (i & 255) == 0) {
			/* Where the loop should be at this rate, against where it is. */
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			double ahead = i / rate - ((now.tv_sec - a.tv_sec) + (now.tv_nsec - a.tv_nsec) / 1e9);
			if (ahead > 0) {
				struct timespec d = {(time_t)ahead, (long)((ahead - (time_t)ahead) * 1e9)};
				nanosleep(&d, NULL);
			}
		}
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
