/* listener: the loopback service of the connect storm and the admin session.
 * It runs outside every recorded session. Listens on one port on both
 * 127.0.0.1 and [::1]: a connection is accepted and either closed at once (the
 * connect storm, whose client sends nothing) or, when the client sends a
 * request, answered with a small HTTP response (curl in the admin session).
 * Prints "port=<P>" once listening; runs until killed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXC 64

static int listen_on(int family, int port)
{
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0), on = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	if (family == AF_INET6) {
		struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
		inet_pton(AF_INET6, "::1", &a.sin6_addr);
		if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
			return -1;
	} else {
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
		inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
		if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
			return -1;
	}
	if (listen(fd, 4096) < 0)
		return -1;
	return fd;
}

int main(void)
{
	static const char reply[] =
		"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";
	struct pollfd p[2 + MAXC];
	int nconn = 0, port = 0, v4 = -1, v6 = -1;
	/* The kernel picks a free port for v4; v6 takes the same one. */
	for (int tries = 0; tries < 50 && v6 < 0; tries++) {
		if (v4 >= 0)
			close(v4);
		v4 = listen_on(AF_INET, 0);
		struct sockaddr_in a;
		socklen_t len = sizeof a;
		if (v4 < 0 || getsockname(v4, (struct sockaddr *)&a, &len) < 0) {
			perror("listener");
			return 1;
		}
		port = ntohs(a.sin_port);
		v6 = listen_on(AF_INET6, port);
	}
	if (v6 < 0) {
		perror("listener: [::1]");
		return 1;
	}
	printf("port=%d\n", port);
	fflush(stdout);
	p[0] = (struct pollfd){.fd = v4, .events = POLLIN};
	p[1] = (struct pollfd){.fd = v6, .events = POLLIN};
	for (;;) {
		if (poll(p, 2 + nconn, -1) < 0 && errno != EINTR)
			return 1;
		for (int i = 0; i < 2; i++) {
			if (!(p[i].revents & POLLIN))
				continue;
			int c;
			while ((c = accept4(p[i].fd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
				if (nconn < MAXC)
					p[2 + nconn++] = (struct pollfd){.fd = c, .events = POLLIN};
				else
					close(c);
			}
		}
		/* A readable connection: data means a request to answer; EOF or a
		 * reset (the storm) means it is done. Either way it is closed. */
		for (int i = 2; i < 2 + nconn;) {
			if (!p[i].revents) {
				i++;
				continue;
			}
			char buf[4096];
			if (read(p[i].fd, buf, sizeof buf) > 0)
				send(p[i].fd, reply, sizeof reply - 1, MSG_NOSIGNAL);
			close(p[i].fd);
			p[i] = p[2 + --nconn];
		}
	}
}
