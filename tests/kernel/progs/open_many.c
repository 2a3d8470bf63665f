/* open_many N PATH: N x (open PATH read-only, close). */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3)
		return 100;
	long n = atol(argv[1]);
	for (long i = 0; i < n; i++) {
		int fd = open(argv[2], O_RDONLY);
		if (fd < 0)
			return 1;
		close(fd);
	}
	return 0;
}
