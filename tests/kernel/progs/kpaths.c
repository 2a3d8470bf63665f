/* kpaths CMD...: opens and directory changes for the kernel-path tests, each
 * printing what the kernel says it opened. Commands, run in order:
 *   open:PATH     open PATH read-only; prints "PATH<TAB>FD<TAB>readlink"
 *   chdir:DIR     chdir(DIR)
 *   chroot:DIR    chroot(DIR) then chdir("/")
 *   unlink:PATH   unlink(PATH)
 *   reopen:FD     open /proc/self/fd/FD (the file itself, even if deleted)
 * readlink of /proc/self/fd/N is the truth the test compares with ("-" when
 * /proc is not there, as in a chroot). Built static: no loader opens. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void report(const char *what, int fd)
{
	char link[64], truth[4096];
	ssize_t n = -1;
	if (fd >= 0) {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		n = readlink(link, truth, sizeof(truth) - 1);
	}
	if (n < 0)
		strcpy(truth, "-");
	else
		truth[n] = 0;
	printf("%s\t%d\t%s\n", what, fd, truth);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		char *arg = argv[i], *val = strchr(arg, ':');
		if (!val)
			return 100;
		*val++ = 0;
		if (!strcmp(arg, "open")) {
			report(val, open(val, O_RDONLY));
		} else if (!strcmp(arg, "chdir")) {
			if (chdir(val) != 0)
				return 101;
		} else if (!strcmp(arg, "chroot")) {
			if (chroot(val) != 0 || chdir("/") != 0)
				return 102;
		} else if (!strcmp(arg, "unlink")) {
			if (unlink(val) != 0)
				return 103;
		} else if (!strcmp(arg, "reopen")) {
			char p[64];
			snprintf(p, sizeof(p), "/proc/self/fd/%s", val);
			report(p, open(p, O_RDONLY));
		} else {
			return 104;
		}
	}
	return 0;
}
