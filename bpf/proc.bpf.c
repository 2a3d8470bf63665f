/* proc.bpf.c - process life cycle of session processes: fork, exec (also
 * failed ones), exit, chdir/fchdir, and moves to other cgroups; and which
 * processes are in a session (the members map of common.bpf.h).
 *
 * Tracepoints: sched:sched_process_{fork,exec,exit},
 *   syscalls:sys_exit_{execve,execveat,chdir,fchdir}, cgroup:cgroup_attach_task;
 *   without bpf_task_pt_regs (SR_SAVE_ARGS) also syscalls:sys_enter_ of
 *   those four and of clone, clone3, fork and vfork.
 * Needs: BPF ring buffer (5.8), bpf_get_current_ancestor_cgroup_id in
 *   tracepoint programs or SR_NO_ANCESTOR_CGROUP (a walk of BTF offsets),
 *   bpf_task_pt_regs (5.15) or SR_SAVE_ARGS, BTF for struct offsets (see
 *   common.bpf.h), x86-64.
 *
 * exec: a successful exec is reported at sched_process_exec, where argv is
 * one contiguous block in the new mm (arg_start..arg_end), copied exactly:
 * the first SR_ARGV_MAX bytes in the exec record, the rest (up to what the
 * kernel accepted) in SR_EVENT_ARGV parts sent before it; argc is the word
 * at start_stack.
 * A failed exec never reaches that tracepoint, so sys_exit_execve reports it,
 * reading argv pointer by pointer from the caller, which is still intact.
 *
 * Built with SR_MEMBERSHIP_ONLY (a daemon configured without command
 * events), fork and exit only keep the members map, and cgroup moves are
 * still recorded: membership does not depend on which events are wanted.
 *
 * fork: sched_process_fork also fires for new threads and does not say which
 * it is; it runs inside the parent's clone, so the clone flags are read from
 * the parent's saved registers (or saved arguments), and threads are dropped.
 */
#include "common.bpf.h"
#include "kpath.bpf.h"

/* ---- fork ---------------------------------------------------------------- */

/* x86-64 syscall numbers of the calls that create tasks. */
#define SR_NR_CLONE 56
#define SR_NR_CLONE3 435

#ifdef SR_SAVE_ARGS
TRACEPOINT_PROBE(syscalls, sys_enter_clone)
{
	return member_saves_args(args->__syscall_nr, args->clone_flags, 0, 0, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_clone3)
{
	return member_saves_args(args->__syscall_nr, (u64)args->uargs, 0, 0, 0);
}

/* fork and vfork save their number only, replacing what an earlier clone
 * that failed may have left. */
TRACEPOINT_PROBE(syscalls, sys_enter_fork)
{
	return member_saves_args(args->__syscall_nr, 0, 0, 0, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_vfork)
{
	return member_saves_args(args->__syscall_nr, 0, 0, 0, 0);
}
#endif

TRACEPOINT_PROBE(sched, sched_process_fork)
{
	u64 cg = current_session();
	if (!cg)
		return 0;
	/* clone(flags, ...) or clone3(&clone_args: flags first); fork and vfork
	 * always make processes (and so does a call whose arguments were not
	 * saved: SR_SAVE_ARGS). */
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
	/* The child is in its parent's session, wherever it goes. This runs
	 * before the child is first woken, so it cannot act unrecorded. */
	u32 child = args->child_pid;
	if (members.update(&child, &cg) != 0)
		member_lost(cg);
#ifdef SR_MEMBERSHIP_ONLY
	return 0;
#endif
	struct fork_event e = {};
	fill_header(&e.h, SR_EVENT_FORK, cg);
	e.h.size = sizeof(e);
	e.child_pid = args->child_pid;
	submit(&e, sizeof(e), SR_EVENT_FORK);
	return 0;
}

#ifndef SR_MEMBERSHIP_ONLY /* command events: exec */
/* ---- exec ---------------------------------------------------------------- */

/* argv beyond the exec record's SR_ARGV_MAX bytes, in SR_EVENT_ARGV records
 * of SR_ARGV_PART bytes, submitted before the exec record (the reader joins
 * them to the exec that follows). Built in the second half of the scratch
 * area, clear of the exec record in the first. Returns the parts sent;
 * flags the exec truncated past SR_ARGV_PARTS_MAX parts, and read-failed
 * when a part could not be read (it is then sent empty, and counted). */
#define SR_ARGV_PARTS_MAX 192 /* 6 MiB + 32 KiB: the kernel takes 6 MiB at most */
static __always_inline u32 argv_parts(struct event_header *eh, u64 start, u64 total, u64 cg)
{
	struct argv_event *p = (struct argv_event *)((char *)eh + SR_DATA_MASK + 1);
	/* The loop's state is kept in the map, not in registers: the verifier
	 * then sees every path through an iteration end in the same state and
	 * prunes them (lengths kept in registers are a different range on each
	 * path, and the states multiply). */
	u64 *st = (u64 *)((char *)eh + SR_SCRATCH_SIZE - 16); /* total, start */
	st[0] = total;
	st[1] = start;
	fill_header(&p->h, SR_EVENT_ARGV, cg);
	p->_pad = 0;
	u32 i;
#pragma clang loop unroll(disable)
	for (i = 0; i < SR_ARGV_PARTS_MAX; i++) {
		u64 off = SR_ARGV_MAX + (u64)i * SR_ARGV_PART;
		u64 left = *(volatile u64 *)&st[0] - off;
		if ((s64)left <= 0)
			break;
		p->len = left > SR_ARGV_PART ? SR_ARGV_PART : left;
		u32 len = *(volatile u32 *)&p->len & (2 * SR_ARGV_PART - 1);
		p->offset = off;
		p->index = i;
		p->h.flags = 0;
		u64 from = *(volatile u64 *)&st[1] + off;
		if (bpf_probe_read_user(p->data, len, (void *)from) != 0) {
			p->len = 0;
			p->h.flags = SR_FLAG_READ_FAILED;
			eh->flags |= SR_FLAG_READ_FAILED;
		}
		u32 size = sizeof(*p) + (*(volatile u32 *)&p->len & (2 * SR_ARGV_PART - 1));
		p->h.size = size;
		submit_within(p, size, SR_EVENT_ARGV, SR_SCRATCH_SIZE - SR_DATA_MASK - 1);
	}
	if (i == SR_ARGV_PARTS_MAX && SR_ARGV_MAX + (u64)i * SR_ARGV_PART < total)
		eh->flags |= SR_FLAG_ARGV_TRUNCATED;
	return i;
}

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

	u64 total = end > start ? end - start : 0;
	u64 alen = total;
	if (alen > SR_ARGV_MAX)
		alen = SR_ARGV_MAX;
	alen &= SR_DATA_MASK;
	if (alen > 0 && bpf_probe_read_user(e->data + flen, alen, (void *)start) != 0) {
		alen = 0;
		e->h.flags |= SR_FLAG_READ_FAILED;
	}
	e->argv_len = alen;
	e->argv_total = total;
	e->argv_parts = 0;
	if (total > SR_ARGV_MAX)
		e->argv_parts = argv_parts(&e->h, start, total, cg);

	/* The executable the kernel runs: the new mm's exe_file (the
	 * filename above is the kernel's copy of the caller's string). */
	u64 kd = 0, km = 0;
	file_path(read_kptr(mm, SR_OFF_MM_EXE_FILE), &kd, &km);
	kpath_submit(args, &e->h, sizeof(*e) + flen + alen, SR_EVENT_EXEC, &e->k, kd, km,
		     SR_KPATH_FILE, NULL, 0);
	return 0;
}

/* Only failed execs are reported here; successful ones were reported by
 * sched_process_exec (and their caller's memory is gone by now). */
static __always_inline int exec_exit(void *ctx, u16 sys, long ret)
{
	if (ret == 0) {
		drop_args();
		return 0;
	}
	u64 cg = current_session();
	if (!cg)
		return 0;
	/* execve(filename, argv, envp); execveat(dirfd, filename, argv, ...) */
	u64 a[4];
	if (!syscall_args(a)) {
		count_lost(cg, SR_EVENT_EXEC);
		return 0;
	}
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
	e->argv_total = off; /* what was read: the caller's argv has no total */
	e->argv_parts = 0;

	/* What the kernel resolved the filename from. */
	u64 kd = 0, km = 0;
	s32 dirfd = sys == SR_SYS_EXECVEAT ? (s32)a[0] : SR_AT_FDCWD;
	u16 src = request_base(e->data, flen, dirfd, &kd, &km);
	kpath_submit(ctx, &e->h, sizeof(*e) + flen + off, SR_EVENT_EXEC, &e->k, kd, km, src, NULL,
		     0);
	return 0;
}

#ifdef SR_SAVE_ARGS
TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
	return member_saves_args(args->__syscall_nr, (u64)args->filename, (u64)args->argv,
				 (u64)args->envp, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_execveat)
{
	return member_saves_args(args->__syscall_nr, args->fd, (u64)args->filename,
				 (u64)args->argv, (u64)args->envp);
}
#endif

TRACEPOINT_PROBE(syscalls, sys_exit_execve)
{
	return exec_exit(args, SR_SYS_EXECVE, args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_execveat)
{
	return exec_exit(args, SR_SYS_EXECVEAT, args->ret);
}

#endif /* SR_MEMBERSHIP_ONLY */

/* ---- exit ---------------------------------------------------------------- */

TRACEPOINT_PROBE(sched, sched_process_exit)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	u64 cg = current_session();
	if (!cg)
		return 0;
	drop_args(); /* what a thread ending in a syscall saved */
#ifdef SR_HAVE_GROUP_DEAD
	if (!args->group_dead)
		return 0;
#else
	if (tid != (u32)(bpf_get_current_pid_tgid() >> 32))
		return 0;
#endif
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
#ifndef SR_MEMBERSHIP_ONLY
	struct exit_event e = {};
	fill_header(&e.h, SR_EVENT_EXIT, cg);
	e.h.size = sizeof(e);
	void *task = (void *)bpf_get_current_task();
	e.exit_code = read_ku32(task, SR_OFF_TASK_EXIT_CODE);
	submit(&e, sizeof(e), SR_EVENT_EXIT);
#endif
	members.delete(&tgid);
	return 0;
}

/* ---- cgroup moves -------------------------------------------------------- */

#define SR_CGROUP2_ROOT 0 /* the hierarchy id of cgroup2 (cgrp_dfl_root) */

/* A login's own systemd-logind scope (session cgroup id -> the scope's path
 * from the cgroup2 root), set by the daemon for a PAM login where logind
 * runs: pam_systemd has systemd move the login there right after the hook,
 * and the daemon links the scope to the session, so that move is not an
 * attempt to leave. The path is the kernel's, from the root, whatever the
 * mover's cgroup namespace. */
BPF_HASH(login_scopes, u64, struct login_scope, SR_MAX_SESSIONS);

/* Whether path (len bytes, no NUL) is the session's login scope. The path
 * is copied into a zeroed buffer (tmp, 256 bytes of scratch past the
 * record), like the scope's own zero-padded value, and the two compared a
 * word at a time with no branch: a loop with an exit per byte was refused
 * by 5.10's verifier (too many pending branches: "The sequence of 8193
 * jumps is too complex"). */
static __always_inline int is_login_scope(u64 cg, const char *path, u32 len, u64 *tmp)
{
	struct login_scope *s = login_scopes.lookup(&cg);
	if (!s || s->len != len)
		return 0;
	SR_OPAQUE(len);
	if (len > SR_SCOPE_PATH_MAX)
		return 0;
	u64 diff = 0;
	__builtin_memset(tmp, 0, SR_SCOPE_PATH_MAX);
	bpf_probe_read_kernel(tmp, len, path);
	const u64 *want = (const u64 *)s->path;
#pragma unroll
	for (int w = 0; w < SR_SCOPE_PATH_MAX / 8; w++)
		diff |= tmp[w] ^ want[w];
	return diff == 0;
}

#ifdef SR_NO_ANCESTOR_CGROUP
/* bpf_get_current_ancestor_cgroup_id(level), where tracepoint programs may
 * not call it (5.10): as the helper does, the current task's cgroup2 cgroup
 * (css_set.dfl_cgrp) walked up through its parents to level; a cgroup's id
 * is its kernfs node's. Probe reads at BTF offsets; 0 when not found. */
#define SR_CGROUP_DEPTH_MAX 32
static __always_inline u64 ancestor_cgroup_id(int level)
{
	char *task = (char *)bpf_get_current_task();
	char *cset = (char *)read_kptr(task, SR_OFF_TASK_CGROUPS);
	char *cgrp = cset ? (char *)read_kptr(cset, SR_OFF_CSS_SET_DFL_CGRP) : NULL;
	for (int i = 0; i < SR_CGROUP_DEPTH_MAX && cgrp; i++) {
		int at = (int)read_ku32(cgrp, SR_OFF_CGROUP_LEVEL);
		if (at < level)
			return 0;
		if (at == level) {
			char *kn = (char *)read_kptr(cgrp, SR_OFF_CGROUP_KN);
			return kn ? read_kptr(kn, SR_OFF_KERNFS_NODE_ID) : 0;
		}
		char *parent = (char *)read_kptr(cgrp, SR_OFF_CGROUP_SELF_PARENT);
		cgrp = parent ? parent - SR_OFF_CGROUP_SELF : NULL;
	}
	return 0;
}
#else
#define ancestor_cgroup_id(level) bpf_get_current_ancestor_cgroup_id(level)
#endif

/* Fires for every task moved to a cgroup on the host, in the mover's
 * context after the move: `pid` is the task moved (a thread id; a whole
 * process moves through its leader, whose thread id is its pid). */
TRACEPOINT_PROBE(cgroup, cgroup_attach_task)
{
	u32 pid = args->pid;
	u64 *m = members.lookup(&pid);
	if (!m) {
		/* A process moved into a session's cgroup joins the session:
		 * how the recorded command, and a login, enter theirs. */
		u64 dst = args->dst_id;
		if (args->dst_root != SR_CGROUP2_ROOT || !sessions.lookup(&dst))
			return 0;
		if (members.update(&pid, &dst) != 0)
			member_lost(dst);
		return 0;
	}
	u64 cg = *m;
	struct cgroup_event *e = scratch_area();
	if (!e)
		return 0;
	fill_header(&e->h, SR_EVENT_CGROUP, cg);
	e->dst_id = args->dst_id;
	e->dst_root = args->dst_root;
	e->dst_level = args->dst_level;
	e->pid = pid;
	e->_pad = 0;
	/* A move within the session's own cgroup2 subtree, or into its login's
	 * logind scope, keeps the process where the session put it; any other
	 * is an attempt to leave it. The
	 * subtree is known only for a task moving itself (the move is done, so
	 * its ancestors are the destination's). */
	u32 self = (u32)bpf_get_current_pid_tgid();
	int inside = args->dst_root == SR_CGROUP2_ROOT &&
		     (args->dst_id == cg ||
		      (self == pid && args->dst_level > SR_SESSION_LEVEL &&
		       ancestor_cgroup_id(SR_SESSION_LEVEL) == cg));
	u32 loc = args->data_loc_dst_path & 0xFFFF;
	long n = bpf_probe_read_kernel_str(e->path, SR_PATH_MAX + 1, (char *)args + loc);
	u32 plen = clamp_path_len(&e->h, n);
	e->path_len = plen;
	if (!inside && !(args->dst_root == SR_CGROUP2_ROOT && n > 0 &&
			 is_login_scope(cg, e->path, plen,
					(u64 *)((char *)e + SR_DATA_MASK + 1))))
		e->h.flags |= SR_FLAG_TAMPERED;
	u64 size = sizeof(*e) + plen;
	e->h.size = size;
	submit(e, size, SR_EVENT_CGROUP);
	return 0;
}

#ifndef SR_MEMBERSHIP_ONLY /* command events: chdir */
/* ---- chdir / fchdir ------------------------------------------------------ */

/* chdir(path) with fd = -1, or fchdir(fd) with is_fchdir set. */
static __always_inline int chdir_exit(void *ctx, int is_fchdir, long ret)
{
	u64 cg = current_session();
	if (!cg)
		return 0;
	u64 a[4];
	if (!syscall_args(a)) {
		count_lost(cg, SR_EVENT_CHDIR);
		return 0;
	}
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
	kpath_submit(ctx, &e->h, sizeof(*e) + plen, SR_EVENT_CHDIR, &e->k, kd, km, src, NULL, 0);
	return 0;
}

#ifdef SR_SAVE_ARGS
TRACEPOINT_PROBE(syscalls, sys_enter_chdir)
{
	return member_saves_args(args->__syscall_nr, (u64)args->filename, 0, 0, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_fchdir)
{
	return member_saves_args(args->__syscall_nr, args->fd, 0, 0, 0);
}
#endif

TRACEPOINT_PROBE(syscalls, sys_exit_chdir)
{
	return chdir_exit(args, 0, args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_fchdir)
{
	return chdir_exit(args, 1, args->ret);
}
#endif /* SR_MEMBERSHIP_ONLY */
