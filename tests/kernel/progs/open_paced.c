/* open_paced N RATE PATH: N x (open PATH read-only, close), paced at RATE
 * opens per second, so the recorder is never the bottleneck. */
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 100;
	long n = atol(argv[1]);
	double rate = atof(argv[2]);
	double start = now();
	for (long i = 0; i < n; i++) {
		int fd = open(argv[3], O_RDONLY);
		if (fd < 0)
			return 1;
		close(fd);
		if (i % 1000 == 999) {
			double ahead = (i + 1) / rate - (now() - start);
			if (ahead > 0)
				usleep((useconds_t)(ahead * 1e6));
		}
	}
	return 0;
}
