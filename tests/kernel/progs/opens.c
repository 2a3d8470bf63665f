/* opens DIR: every way the open tests exercise, each through the raw system
 * call so that the recorded syscall, flags and mode are exactly these.
 * DIR must contain a directory "sub". Built static: no loader opens. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

struct how { uint64_t flags, mode, resolve; };
#define RESOLVE_NO_SYMLINKS 0x04

int main(int argc, char **argv)
{
	if (argc != 2 || chdir(argv[1]) != 0)
		return 100;
	syscall(SYS_open, "rel.txt", O_WRONLY | O_CREAT | O_TRUNC, 0640);         /* 3 */
	int dfd = syscall(SYS_openat, AT_FDCWD, "sub", O_RDONLY | O_DIRECTORY, 0);  /* 4 */
	syscall(SYS_openat, dfd, "in_sub.txt", O_WRONLY | O_CREAT | O_EXCL, 0600); /* 5 */
	syscall(SYS_openat, dfd, "../rel.txt", O_RDONLY, 0);                       /* 6 */
	syscall(SYS_openat, AT_FDCWD, "sub/../sub/./in_sub.txt", O_RDONLY | O_CLOEXEC, 0); /* 7 */
	struct how how;
	memset(&how, 0, sizeof(how));
	how.flags = O_WRONLY | O_CREAT | O_APPEND;
	how.mode = 0644;
	how.resolve = RESOLVE_NO_SYMLINKS;
	syscall(SYS_openat2, AT_FDCWD, "sub/o2.txt", &how, sizeof(how));          /* 8 */
	syscall(SYS_creat, "created.txt", 0600);                                  /* 9 */
	syscall(SYS_openat, AT_FDCWD, "missing/nope.txt", O_RDONLY, 0);           /* -ENOENT */
	syscall(SYS_openat, AT_FDCWD, "sub", O_WRONLY, 0);                        /* -EISDIR */

	/* A relative chdir, "..", and fchdir. */
	syscall(SYS_chdir, "sub");
	syscall(SYS_open, "../rel.txt", O_RDONLY, 0);                             /* 10 */
	int up = syscall(SYS_openat, AT_FDCWD, "..", O_RDONLY | O_DIRECTORY, 0);  /* 11 */
	syscall(SYS_fchdir, up);
	syscall(SYS_openat, AT_FDCWD, "created.txt", O_RDONLY, 0);                /* 12 */

	/* The longest path the kernel takes (4095 bytes and the NUL: ENOENT
	 * here), then one byte more (ENAMETOOLONG). */
	static char path[4097];
	for (int i = 0; i < 4092; i += 2)
		memcpy(path + i, "./", 2);
	memcpy(path + 4092, "zzz", 4);
	syscall(SYS_openat, AT_FDCWD, path, O_RDONLY, 0);                         /* -ENOENT */
	memcpy(path + 4092, "zzzz", 5);
	syscall(SYS_openat, AT_FDCWD, path, O_RDONLY, 0);                         /* -ENAMETOOLONG */
	return 0;
}
