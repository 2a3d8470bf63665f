/* proc.bpf.c - process life cycle of session processes: fork, exec (also
 * failed ones), exit, and chdir/fchdir so user space can resolve relative
 * paths.
 *
 * Tracepoints: sched:sched_process_{fork,exec,exit},
 *   syscalls:sys_exit_{execve,execveat,chdir,fchdir}.
 * Needs: BPF ring buffer (5.8), bpf_get_current_ancestor_cgroup_id (5.7),
 *   bpf_task_pt_regs (5.15), BTF for struct offsets (see common.bpf.h), x86-64.
 *
 * exec: a successful exec is reported at sched_process_exec, where argv is
 * one contiguous block in the new mm (arg_start..arg_end) and is copied in a
 * single read, exactly, up to SR_ARGV_MAX; argc is the word at start_stack.
 * A failed exec never reaches that tracepoint, so sys_exit_execve reports it,
 * reading argv pointer by pointer from the caller, which is still intact.
 *
 * fork: sched_process_fork also fires for new threads and does not say which
 * it is; it runs inside the parent's clone, so the clone flags are read from
 * the parent's saved registers, and threads are dropped.
 */
#include "common.bpf.h"
#include "kpath.bpf.h"

/* ---- fork ---------------------------------------------------------------- */

/* x86-64 syscall numbers of the calls that create tasks. */
#define SR_NR_CLONE 56
#define SR_NR_CLONE3 435

TRACEPOINT_PROBE(sched, sched_process_fork)
{
	u64 cg = current_session();
	if (!cg)
		return 0;
	/* clone(flags, ...) or clone3(&clone_args: flags first); fork and vfork
	 * always make processes. */
	u64 nr = syscall_nr();
	u64 a[4];
	u64 flags = 0;
	syscall_args(a);
	if (nr == SR_NR_CLONE)
		flags = a[0];
	else if (nr == SR_NR_CLONE3)
		bpf_probe_read_user(&flags, sizeof(flags), (void *)a[0]);
	if (flags & SR_CLONE_THREAD)
		return 0;
	struct fork_event e = {};
	fill_header(&e.h, SR_EVENT_FORK, cg);
	e.h.size = sizeof(e);
	e.child_pid = args->child_pid;
	submit(&e, sizeof(e), SR_EVENT_FORK);
	return 0;
}

/* ---- exec ---------------------------------------------------------------- */

TRACEPOINT_PROBE(sched, sched_process_exec)
{
	u64 cg = current_session();
	if (!cg)
		return 0;
	struct exec_event *e = scratch_area();
	if (!e)
		return 0;
	fill_header(&e->h, SR_EVENT_EXEC, cg);
	e->ret = 0;
	e->old_pid = args->old_pid;
	e->syscall = 0;
	e->_pad = 0;

	/* filename is a __data_loc string: low 16 bits are its offset. */
	u32 loc = args->data_loc_filename & 0xFFFF;
	long n = bpf_probe_read_kernel_str(e->data, SR_PATH_MAX + 1, (char *)args + loc);
	u32 flen = clamp_path_len(&e->h, n);
	e->filename_len = flen;

	void *task = (void *)bpf_get_current_task();
	void *mm = (void *)read_kptr(task, SR_OFF_TASK_MM);
	u64 start = read_kptr(mm, SR_OFF_MM_ARG_START);
	u64 end = read_kptr(mm, SR_OFF_MM_ARG_END);
	u64 stack = read_kptr(mm, SR_OFF_MM_START_STACK);
	u64 argc = 0;
	bpf_probe_read_user(&argc, sizeof(argc), (void *)stack);
	e->argc = (u32)argc;

	u64 alen = end > start ? end - start : 0;
	if (alen > SR_ARGV_MAX) {
		alen = SR_ARGV_MAX;
		e->h.flags |= SR_FLAG_ARGV_TRUNCATED;
	}
	alen &= SR_DATA_MASK;
	if (alen > 0 && bpf_probe_read_user(e->data + flen, alen, (void *)start) != 0) {
		alen = 0;
		e->h.flags |= SR_FLAG_READ_FAILED;
	}
	e->argv_len = alen;

	/* The executable the kernel runs: the new mm's exe_file (the
	 * filename above is the kernel's copy of the caller's string). */
	u64 kd = 0, km = 0;
	file_path(read_kptr(mm, SR_OFF_MM_EXE_FILE), &kd, &km);
	kpath_submit(args, &e->h, sizeof(*e) + flen + alen, SR_EVENT_EXEC, &e->k, kd, km,
		     SR_KPATH_FILE);
	return 0;
}

/* Only failed execs are reported here; successful ones were reported by
 * sched_process_exec (and their caller's memory is gone by now). */
static __always_inline int exec_exit(void *ctx, u16 sys, long ret)
{
	if (ret == 0)
		return 0;
	u64 cg = current_session();
	if (!cg)
		return 0;
	/* execve(filename, argv, envp); execveat(dirfd, filename, argv, ...) */
	u64 a[4];
	syscall_args(a);
	u64 filename = sys == SR_SYS_EXECVEAT ? a[1] : a[0];
	u64 argv_ptr = sys == SR_SYS_EXECVEAT ? a[2] : a[1];
	struct exec_event *e = scratch_area();
	if (!e)
		return 0;
	fill_header(&e->h, SR_EVENT_EXEC, cg);
	e->ret = (s32)ret;
	e->old_pid = e->h.tid;
	e->syscall = sys;
	e->_pad = 0;

	long n = bpf_probe_read_user_str(e->data, SR_PATH_MAX + 1, (void *)filename);
	u32 flen = clamp_path_len(&e->h, n);
	e->filename_len = flen;

	/* argv follows the filename: data[flen ..], flen < SR_PATH_MAX. Each
	 * argument may take what is left of SR_ARGV_MAX, as on success. */
	const char *const *argv = (const char *const *)argv_ptr;
	u32 off = 0;
	u32 argc = 0;
	u32 cut = 0;
	int i;
	for (i = 0; i < SR_FAILED_EXEC_MAX_ARGS && argv; i++) {
		const char *p = NULL;
		if (bpf_probe_read_user(&p, sizeof(p), &argv[i]) != 0 || !p)
			break;
		argc++;
		if (off >= SR_ARGV_MAX) {
			cut = 1; /* keep counting: argc is the original count */
			continue;
		}
		u32 room = SR_ARGV_MAX - off;
		SR_OPAQUE(room);
		/* One byte more than the room: a string that does not fit is kept
		 * up to exactly SR_ARGV_MAX bytes of argv, like the mm copy on
		 * success, not cut one byte short for its NUL. */
		long m = bpf_probe_read_user_str(e->data + ((flen + off) & SR_DATA_MASK),
						 (room + 1) & SR_DATA_MASK, p);
		if (m <= 0) {
			e->h.flags |= SR_FLAG_READ_FAILED;
			break;
		}
		if ((u32)m > room) {
			off = SR_ARGV_MAX;
			cut = 1;
			continue;
		}
		off += (u32)m;
	}
	/* Stopped by the argument limit: truncated if another one exists. argc
	 * then counts the arguments read (a lower bound): counting the rest here
	 * is more than the verifier accepts in one program. */
	if (argv && i == SR_FAILED_EXEC_MAX_ARGS) {
		const char *p = NULL;
		if (bpf_probe_read_user(&p, sizeof(p), &argv[argc]) == 0 && p)
			cut = 1;
	}
	if (off > SR_ARGV_MAX)
		off = SR_ARGV_MAX;
	if (cut)
		e->h.flags |= SR_FLAG_ARGV_TRUNCATED;
	e->argc = argc;
	e->argv_len = off;

	/* What the kernel resolved the filename from. */
	u64 kd = 0, km = 0;
	s32 dirfd = sys == SR_SYS_EXECVEAT ? (s32)a[0] : SR_AT_FDCWD;
	u16 src = request_base(e->data, flen, dirfd, &kd, &km);
	kpath_submit(ctx, &e->h, sizeof(*e) + flen + off, SR_EVENT_EXEC, &e->k, kd, km, src);
	return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_execve)
{
	return exec_exit(args, SR_SYS_EXECVE, args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_execveat)
{
	return exec_exit(args, SR_SYS_EXECVEAT, args->ret);
}

/* ---- exit ---------------------------------------------------------------- */

TRACEPOINT_PROBE(sched, sched_process_exit)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	u64 cg = current_session();
	if (!cg)
		return 0;
#ifdef SR_HAVE_GROUP_DEAD
	if (!args->group_dead)
		return 0;
#else
	if (tid != (u32)(bpf_get_current_pid_tgid() >> 32))
		return 0;
#endif
	struct exit_event e = {};
	fill_header(&e.h, SR_EVENT_EXIT, cg);
	e.h.size = sizeof(e);
	void *task = (void *)bpf_get_current_task();
	e.exit_code = read_ku32(task, SR_OFF_TASK_EXIT_CODE);
	submit(&e, sizeof(e), SR_EVENT_EXIT);
	return 0;
}

/* ---- chdir / fchdir ------------------------------------------------------ */

/* chdir(path) with fd = -1, or fchdir(fd) with is_fchdir set. */
static __always_inline int chdir_exit(void *ctx, int is_fchdir, long ret)
{
	u64 cg = current_session();
	if (!cg)
		return 0;
	u64 a[4];
	syscall_args(a);
	struct chdir_event *e = scratch_area();
	if (!e)
		return 0;
	fill_header(&e->h, SR_EVENT_CHDIR, cg);
	e->ret = (s32)ret;
	e->_pad = 0;
	u32 plen = 0;
	if (!is_fchdir) {
		e->fd = -1;
		long n = bpf_probe_read_user_str(e->path, SR_PATH_MAX + 1, (void *)a[0]);
		plen = clamp_path_len(&e->h, n);
	} else {
		e->fd = (s32)a[0];
	}
	e->path_len = plen;

	/* The kernel's cwd after a chdir; after a failure, what the request
	 * was resolved from (fchdir: the descriptor's file). */
	u64 kd = 0, km = 0;
	u16 src = SR_KPATH_FILE;
	if (ret == 0)
		task_fs_path(SR_OFF_FS_PWD, &kd, &km);
	else if (is_fchdir)
		file_path(file_of_fd((u32)a[0]), &kd, &km);
	else
		src = request_base(e->path, plen, SR_AT_FDCWD, &kd, &km);
	kpath_submit(ctx, &e->h, sizeof(*e) + plen, SR_EVENT_CHDIR, &e->k, kd, km, src);
	return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_chdir)
{
	return chdir_exit(args, 0, args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_fchdir)
{
	return chdir_exit(args, 1, args->ret);
}
