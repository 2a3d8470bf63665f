/* path_race A B N: the "phantom" race on an open's path. A second thread
 * keeps rewriting a path buffer between A and B (same length) while the
 * main thread opens it N times; after each open, the file the kernel opened
 * (readlink /proc/self/fd/N) is printed, one line per open, in order.
 * Built static: the only opens are the N of the buffer. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char buf[4096];
static const char *paths[2];
static size_t len;
static atomic_int stop;

static void *flipper(void *unused)
{
	(void)unused;
	for (unsigned i = 0; !atomic_load_explicit(&stop, memory_order_relaxed); i++)
		memcpy(buf, paths[i & 1], len);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 4 || strlen(argv[1]) != strlen(argv[2]))
		return 100;
	paths[0] = argv[1];
	paths[1] = argv[2];
	len = strlen(argv[1]);
	int n = atoi(argv[3]);
	memcpy(buf, paths[0], len);
	pthread_t t;
	if (pthread_create(&t, NULL, flipper, NULL) != 0)
		return 101;
	/* Both threads real-time (root, best effort) for the few seconds of the
	 * run: on a loaded machine they then run at once, which the race needs. */
	struct sched_param sp = {.sched_priority = 1};
	pthread_setschedparam(t, SCHED_FIFO, &sp);
	pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
	char link[64], truth[4096];
	for (int i = 0; i < n; i++) {
		int fd = open(buf, O_RDONLY);
		ssize_t m = -1;
		if (fd >= 0) {
			snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
			m = readlink(link, truth, sizeof(truth) - 1);
			close(fd);
		}
		if (m < 0)
			strcpy(truth, "-");
		else
			truth[m] = 0;
		printf("%s\n", truth);
	}
	atomic_store(&stop, 1);
	pthread_join(t, NULL);
	return 0;
}
