/* connect_race N: the same race on a connect's sockaddr. Two listeners on
 * 127.0.0.1 (ports chosen by the kernel, printed first as "PORTS p1 p2");
 * a second thread keeps rewriting the port of a sockaddr between them while
 * the main thread connects N times; after each connect, the port the kernel
 * connected to (getpeername) is printed, one line per connect, in order.
 * Built static. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in target;
static in_port_t ports[2];
static atomic_int stop;

static void *flipper(void *unused)
{
	(void)unused;
	volatile in_port_t *p = &target.sin_port;
	for (unsigned i = 0; !atomic_load_explicit(&stop, memory_order_relaxed); i++)
		*p = ports[i & 1];
	return NULL;
}

static int listener(in_port_t *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t l = sizeof(a);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s, 4096) != 0 ||
	    getsockname(s, (struct sockaddr *)&a, &l) != 0)
		exit(100);
	*port = a.sin_port;
	return s;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 100;
	setvbuf(stdout, NULL, _IOFBF, 1 << 20);
	int n = atoi(argv[1]);
	int ls[2] = {listener(&ports[0]), listener(&ports[1])};
	printf("PORTS %d %d\n", ntohs(ports[0]), ntohs(ports[1]));
	target.sin_family = AF_INET;
	target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	target.sin_port = ports[0];
	pthread_t t;
	if (pthread_create(&t, NULL, flipper, NULL) != 0)
		return 101;
	/* Both threads real-time (root, best effort) for the few seconds of the
	 * run: on a loaded machine they then run at once, which the race needs. */
	struct sched_param sp = {.sched_priority = 1};
	pthread_setschedparam(t, SCHED_FIFO, &sp);
	pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
	for (int i = 0; i < n; i++) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in peer;
		socklen_t l = sizeof(peer);
		int port = -1;
		if (connect(s, (struct sockaddr *)&target, sizeof(target)) == 0 &&
		    getpeername(s, (struct sockaddr *)&peer, &l) == 0) {
			port = ntohs(peer.sin_port);
			int c = accept(ls[peer.sin_port == ports[1]], NULL, NULL);
			if (c >= 0)
				close(c);
		}
		close(s);
		printf("%d\n", port);
	}
	atomic_store(&stop, 1);
	pthread_join(t, NULL);
	return 0;
}
