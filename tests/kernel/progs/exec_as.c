/* exec_as PATH ARGV0 [ARG...]: execve(PATH, {ARGV0, ARG..., NULL}); if that
 * fails, exit with the errno. Built static: no loader opens. */
#include <errno.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
	if (argc < 3)
		return 100;
	execve(argv[1], argv + 2, environ);
	return errno;
}
