/* file.bpf.c - files opened by session processes: open, openat, openat2 and
 * creat, with flags, mode, the path exactly as passed, the result, and the
 * kernel's path (kpath.bpf.h): of the opened file, or for a failed open of
 * the directory the request was relative to.
 *
 * Tracepoints: syscalls:sys_exit_{open,openat,openat2,creat}, and with
 *   race_check on (SR_RACE_CHECK) or without bpf_task_pt_regs
 *   (SR_SAVE_ARGS) syscalls:sys_enter_* of the same four.
 * Needs: BPF ring buffer (5.8); bpf_task_pt_regs (5.15) or SR_SAVE_ARGS;
 *   race_check needs task storage and bpf_get_current_task_btf (5.11);
 *   openat2 exists from 5.6: without its tracepoint the loader sets
 *   SR_NO_OPENAT2 and the session header says so. x86-64 (arguments come
 *   from saved registers).
 *
 * One program per syscall, at exit: the result is known there, and the
 * arguments are read from the saved registers; the path is read from the
 * caller's buffer then; the kernel's path does not depend on that buffer.
 */
#include "common.bpf.h"
#include "kpath.bpf.h"

#define SR_O_CREAT 0100
#define SR_O_WRONLY 01
#define SR_O_TRUNC 01000

static __always_inline int open_exit(void *ctx, u16 sys, long ret)
{
	u64 cg = current_session();
	if (!cg)
		return 0;
	u64 a[4];
	if (!syscall_args(a)) {
		count_lost(cg, SR_EVENT_OPEN);
		return 0;
	}
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

	/* The kernel's path: of the file opened, or of what the request was
	 * relative to when the open failed. */
	u64 kd = 0, km = 0;
	u16 src = SR_KPATH_FILE;
	if (ret >= 0)
		file_path(file_of_fd((u32)ret), &kd, &km);
	else
		src = request_base(e->path, plen, dirfd, &kd, &km);
	kpath_submit(ctx, &e->h, sizeof(*e) + plen, SR_EVENT_OPEN, &e->k, kd, km, src, e->path,
		     plen);
	return 0;
}

#if defined(SR_RACE_CHECK) || defined(SR_SAVE_ARGS)
/* At the call's start, for session members: its arguments, without
 * bpf_task_pt_regs (SR_SAVE_ARGS, common.bpf.h); and with race_check, the
 * caller's path, kept to compare with the same buffer at exit (kpath.bpf.h,
 * request_changed). Only when one of them is wanted: a sys_enter tracepoint
 * costs every open on the host, recorded or not (docs/PERFORMANCE.md), and
 * `path` is the kernel's either way. */
static __always_inline int open_enter(u64 nr, const char *path, u64 a0, u64 a1, u64 a2, u64 a3)
{
	if (!current_session())
		return 0;
#ifdef SR_SAVE_ARGS
	save_args(nr, a0, a1, a2, a3);
#endif
#ifdef SR_RACE_CHECK
	struct req_copy *r = reqs.task_storage_get(bpf_get_current_task_btf(), 0,
						   BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!r)
		return 0;
	long n = bpf_probe_read_user_str(r->buf, SR_PATH_MAX, path);
	r->len = n > 0 ? n : 0;
#endif
	return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_open)
{
	return open_enter(args->__syscall_nr, args->filename, (u64)args->filename, args->flags,
			  args->mode, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat)
{
	return open_enter(args->__syscall_nr, args->filename, args->dfd, (u64)args->filename,
			  args->flags, args->mode);
}

#ifndef SR_NO_OPENAT2
TRACEPOINT_PROBE(syscalls, sys_enter_openat2)
{
	return open_enter(args->__syscall_nr, args->filename, args->dfd, (u64)args->filename,
			  (u64)args->how, args->usize);
}
#endif

TRACEPOINT_PROBE(syscalls, sys_enter_creat)
{
	return open_enter(args->__syscall_nr, args->pathname, (u64)args->pathname, args->mode, 0,
			  0);
}
#endif /* SR_RACE_CHECK || SR_SAVE_ARGS */

TRACEPOINT_PROBE(syscalls, sys_exit_open)
{
	return open_exit(args, SR_SYS_OPEN, args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_openat)
{
	return open_exit(args, SR_SYS_OPENAT, args->ret);
}

#ifndef SR_NO_OPENAT2
TRACEPOINT_PROBE(syscalls, sys_exit_openat2)
{
	return open_exit(args, SR_SYS_OPENAT2, args->ret);
}
#endif

TRACEPOINT_PROBE(syscalls, sys_exit_creat)
{
	return open_exit(args, SR_SYS_CREAT, args->ret);
}
