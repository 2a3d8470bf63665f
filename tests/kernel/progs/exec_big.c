/* exec_big PROG BYTES: execs PROG with an argv of exactly BYTES bytes
 * (NULs included), argv[0] = PROG, then arguments of at most 128 KiB - 1
 * (MAX_ARG_STRLEN) made of a repeating pattern that names their place, and
 * an empty environment. Exits 100 + errno's value if the exec fails. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARG_MAX_LEN (128 * 1024 - 1)

int main(int argc, char **argv)
{
	if (argc != 3)
		return 99;
	long total = atol(argv[2]);
	long left = total - (long)strlen(argv[1]) - 1;
	long nargs = 1 + (left + ARG_MAX_LEN) / (ARG_MAX_LEN + 1) + 1;
	char **av = calloc(nargs + 1, sizeof(char *));
	int k = 0;
	av[k++] = argv[1];
	for (long i = 0; left > 0; i++) {
		long len = left - 1 > ARG_MAX_LEN ? ARG_MAX_LEN : left - 1;
		char *a = malloc(len + 1);
		for (long j = 0; j < len; j++)
			a[j] = 'a' + (char)((i * 7 + j / 4096) % 26);
		a[len] = 0;
		av[k++] = a;
		left -= len + 1;
	}
	char *env[] = {NULL};
	execve(argv[1], av, env);
	return 100 + errno;
}
