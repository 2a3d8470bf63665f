/* connect_storm: N TCP connects to a loopback listener, the first half to
 * 127.0.0.1:PORT and the second to [::1]:PORT. Each socket is closed with
 * SO_LINGER 0 (a reset), so no TIME_WAIT piles up and the ephemeral ports
 * never run out however many rounds the bench runs. Prints
 *   connects=<N> ok=<accepted connects> v4=<N/2> v6=<N - N/2> */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int one(int family, const struct sockaddr *sa, socklen_t len)
{
	struct linger lg = {1, 0};
	int fd = socket(family, SOCK_STREAM, 0);
	if (fd < 0)
		return 0;
	int ok = connect(fd, sa, len) == 0;
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close(fd);
	return ok;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: connect_storm N PORT\n");
		return 2;
	}
	long n = atol(argv[1]);
	int port = atoi(argv[2]);
	struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons(port)};
	struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
	inet_pton(AF_INET, "127.0.0.1", &v4.sin_addr);
	inet_pton(AF_INET6, "::1", &v6.sin6_addr);
	long ok = 0, half = n / 2;
	for (long i = 0; i < half; i++)
		ok += one(AF_INET, (struct sockaddr *)&v4, sizeof v4);
	for (long i = half; i < n; i++)
		ok += one(AF_INET6, (struct sockaddr *)&v6, sizeof v6);
	printf("connects=%ld ok=%ld v4=%ld v6=%ld\n", n, ok, half, n - half);
	return ok == n ? 0 : 1;
}
