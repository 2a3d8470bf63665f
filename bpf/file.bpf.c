/* file.bpf.c - files opened by session processes: open, openat, openat2 and
 * creat, with flags, mode, the path exactly as passed, and the result.
 *
 * Tracepoints: syscalls:sys_{enter,exit}_{open,openat,openat2,creat}.
 * Needs: BPF ring buffer (5.8); openat2 exists from 5.6.
 *
 * The arguments are stashed at enter and the event is built at exit, when
 * the result is known; the path is read from the caller's buffer then.
 */
#include "common.bpf.h"

#define SR_O_CREAT 0100
#define SR_O_WRONLY 01
#define SR_O_TRUNC 01000

TRACEPOINT_PROBE(syscalls, sys_enter_open)
{
	u64 cg = current_session();
	if (cg)
		stash(SR_INFLIGHT_OPEN, SR_SYS_OPEN, cg, (u64)SR_AT_FDCWD, (u64)args->filename,
		      (u64)args->flags, (u64)args->mode);
	return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat)
{
	u64 cg = current_session();
	if (cg)
		stash(SR_INFLIGHT_OPEN, SR_SYS_OPENAT, cg, (u64)args->dfd, (u64)args->filename,
		      (u64)args->flags, (u64)args->mode);
	return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat2)
{
	u64 cg = current_session();
	if (cg) {
		/* struct open_how { u64 flags; u64 mode; u64 resolve; } is UAPI. */
		u64 how[2] = {};
		bpf_probe_read_user(how, sizeof(how), (void *)args->how);
		stash(SR_INFLIGHT_OPEN, SR_SYS_OPENAT2, cg, (u64)args->dfd, (u64)args->filename,
		      how[0], how[1]);
	}
	return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_creat)
{
	u64 cg = current_session();
	if (cg)
		stash(SR_INFLIGHT_OPEN, SR_SYS_CREAT, cg, (u64)SR_AT_FDCWD, (u64)args->pathname,
		      SR_O_CREAT | SR_O_WRONLY | SR_O_TRUNC, (u64)args->mode);
	return 0;
}

static __always_inline int open_exit(long ret)
{
	struct inflight f = {};
	if (!unstash(SR_INFLIGHT_OPEN, &f))
		return 0;
	struct open_event *e = scratch_area();
	if (!e)
		return 0;
	fill_header(&e->h, SR_EVENT_OPEN, f.cgroup_id);
	e->ret = (s32)ret;
	e->dirfd = (s32)f.arg[0];
	e->flags = f.arg[2];
	e->mode = (u32)f.arg[3];
	e->syscall = f.sub;
	/* One byte more than the longest path the kernel takes (4095 bytes and
	 * the NUL), to tell a path of 4095 bytes from a longer one cut there. */
	long n = bpf_probe_read_user_str(e->path, SR_PATH_MAX + 1, (void *)f.arg[1]);
	u32 plen = clamp_path_len(&e->h, n);
	e->path_len = plen;
	u64 size = sizeof(*e) + plen;
	e->h.size = size;
	submit(e, size, SR_EVENT_OPEN);
	return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_open)
{
	return open_exit(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_openat)
{
	return open_exit(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_openat2)
{
	return open_exit(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_creat)
{
	return open_exit(args->ret);
}
