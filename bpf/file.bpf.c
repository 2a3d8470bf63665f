/* file.bpf.c - files opened by session processes: open, openat, openat2 and
 * creat, with flags, mode, the path exactly as passed, and the result.
 *
 * Tracepoints: syscalls:sys_exit_{open,openat,openat2,creat}.
 * Needs: BPF ring buffer (5.8), bpf_task_pt_regs (5.15); openat2 exists
 *   from 5.6: without its tracepoint the loader sets SR_NO_OPENAT2 and the
 *   session header says so. x86-64 (arguments come from saved registers).
 *
 * One program per syscall, at exit: the result is known there, and the
 * arguments are read from the saved registers; the path is read from the
 * caller's buffer then.
 */
#include "common.bpf.h"

#define SR_O_CREAT 0100
#define SR_O_WRONLY 01
#define SR_O_TRUNC 01000

static __always_inline int open_exit(u16 sys, long ret)
{
	u64 cg = current_session();
	if (!cg)
		return 0;
	u64 a[4];
	syscall_args(a);
	/* dirfd, path, flags, mode: as each syscall takes them. */
	s32 dirfd = SR_AT_FDCWD;
	u64 path = a[0], flags = a[1], mode = a[2];
	if (sys == SR_SYS_OPENAT) {
		dirfd = (s32)a[0];
		path = a[1];
		flags = a[2];
		mode = a[3];
	} else if (sys == SR_SYS_OPENAT2) {
		/* struct open_how { u64 flags; u64 mode; u64 resolve; } is UAPI. */
		u64 how[2] = {};
		bpf_probe_read_user(how, sizeof(how), (void *)a[2]);
		dirfd = (s32)a[0];
		path = a[1];
		flags = how[0];
		mode = how[1];
	} else if (sys == SR_SYS_CREAT) {
		flags = SR_O_CREAT | SR_O_WRONLY | SR_O_TRUNC;
		mode = a[1];
	}
	struct open_event *e = scratch_area();
	if (!e)
		return 0;
	fill_header(&e->h, SR_EVENT_OPEN, cg);
	e->ret = (s32)ret;
	e->dirfd = dirfd;
	e->flags = flags;
	e->mode = (u32)mode;
	e->syscall = sys;
	long n = bpf_probe_read_user_str(e->path, SR_PATH_MAX + 1, (void *)path);
	u32 plen = clamp_path_len(&e->h, n);
	e->path_len = plen;
	u64 size = sizeof(*e) + plen;
	e->h.size = size;
	submit(e, size, SR_EVENT_OPEN);
	return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_open)
{
	return open_exit(SR_SYS_OPEN, args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_openat)
{
	return open_exit(SR_SYS_OPENAT, args->ret);
}

#ifndef SR_NO_OPENAT2
TRACEPOINT_PROBE(syscalls, sys_exit_openat2)
{
	return open_exit(SR_SYS_OPENAT2, args->ret);
}
#endif

TRACEPOINT_PROBE(syscalls, sys_exit_creat)
{
	return open_exit(SR_SYS_CREAT, args->ret);
}
