/* common.bpf.h - maps and helpers shared by every sessrec BPF program.
 *
 * Configured by the loader (recorder/loader.py) with -D flags:
 *   SR_SESSION_LEVEL  cgroup2 depth of session cgroups (<mount>/sessrec/<id>)
 *   SR_RING_PAGES     each session's ring buffer size, in pages
 *   SR_NR_CPUS        possible CPUs (slots of the scratch map)
 *   SR_OFF_*          kernel struct member offsets taken from BTF at load
 *                     time: the installed headers do not match the running
 *                     kernel, so no kernel struct is ever read through them.
 *   SR_NO_TASK_BTF    no bpf_get_current_task_btf (before 5.11): the task's
 *                     fields are probe-read (SR_KLOAD), not loaded directly.
 *   SR_SAVE_ARGS      no bpf_task_pt_regs (before 5.15): syscall arguments
 *                     are saved at sys_enter (save_args), not read at exit.
 *
 * Every syscall is traced at its sys_exit tracepoint only, where the result
 * is known and the arguments are still in the saved registers (x86-64);
 * with SR_SAVE_ARGS its sys_enter too, for session members only.
 * Needs: BPF ring buffer (5.8), BTF; bpf_get_current_task_btf (5.11) and
 * bpf_task_pt_regs (5.15) unless built without them (kfeatures.py).
 */
#ifndef SR_COMMON_BPF_H
#define SR_COMMON_BPF_H

#include "sessrec.h"

/* The sessions being recorded: session cgroup id -> that session's own ring
 * buffer, which user space creates (recorder/loader.py) and drains. A
 * process moved into one of these cgroups joins its session (members). A ring
 * per session isolates sessions: one that floods fills its own ring and
 * loses its own events, never another's (docs/PERFORMANCE.md). ring_tmpl is
 * the template a map of maps needs (every inner ring has its size); user
 * space hands it out as the first session's ring. */
#define SR_MAX_SESSIONS 4096
BPF_RINGBUF_OUTPUT(ring_tmpl, SR_RING_PAGES);
BPF_HASH_OF_MAPS(sessions, u64, "ring_tmpl", SR_MAX_SESSIONS);

/* Events that did not fit in the ring, per session and event type, so that
 * each session's file reports its own losses. */
struct lost_key {
	u64 cgroup_id;
	u32 type;
	u32 _pad;
};
BPF_HASH(lost, struct lost_key, u64, 16384);

/* Scratch space to build large events in, one slot per CPU: per-CPU array
 * values are limited to 32 KiB, and an exec event needs more. Programs on
 * tracepoints do not migrate between CPUs while running. */
/* Variable offsets and sizes in the data area are masked with SR_DATA_MASK
 * before use, because the verifier loses bounds that LLVM checks on a copy of
 * a register; the area is sized so that any masked offset plus any masked
 * size stays inside it. */
#define SR_DATA_MASK 0xFFFF
#define SR_SCRATCH_SIZE (sizeof(struct exec_event) + 2 * (SR_DATA_MASK + 1))
struct scratch_buf {
	u8 buf[SR_SCRATCH_SIZE];
};
BPF_ARRAY(scratch, struct scratch_buf, SR_NR_CPUS);

#define SR_AT_FDCWD -100

/* Hides a value from LLVM so that a bounds check it could prove redundant is
 * kept for the verifier, which cannot prove it. */
#define SR_OPAQUE(x) asm volatile("" : "+r"(x))
#define SR_CLONE_THREAD 0x00010000

/* The session of each process recorded (thread-group id -> the session's
 * cgroup id). A process joins when it is moved into a session's cgroup
 * (cgroup:cgroup_attach_task) or forked by a member, and leaves when it
 * exits: not when it moves to another cgroup, so moving out of the session's
 * cgroup (root can write any cgroup.procs) does not end its recording. Sized
 * above the default pid_max (32768); a process that cannot be added is
 * counted in `lost` under type SR_EVENT_NONE. */
#define SR_MEMBERS_MAX 65536
BPF_HASH(members, u32, u64, SR_MEMBERS_MAX);

/* The session of the current task, or 0 when it is in none: the one map
 * lookup that every traced syscall of every process on the host pays. */
static __always_inline u64 current_session(void)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	u64 *cg = members.lookup(&tgid);
	return cg ? *cg : 0;
}

/* The current task, and a load at a BTF offset from it or from a kernel
 * pointer reached through its BTF-typed fields. With
 * bpf_get_current_task_btf() (5.11) the verifier types those pointers, so
 * a field is a plain load (a helper call costs more than the field); without
 * it (SR_NO_TASK_BTF) the task is a plain address, and each field a
 * bpf_probe_read_kernel() at the same offset. */
#ifdef SR_NO_TASK_BTF
#define SR_TASK() ((char *)bpf_get_current_task())
#define SR_KLOAD(type, base, off)                                                    \
	({                                                                           \
		type v_ = 0;                                                         \
		bpf_probe_read_kernel(&v_, sizeof(v_), (const char *)(base) + (off)); \
		v_;                                                                  \
	})
#else
#define SR_TASK() ((char *)bpf_get_current_task_btf())
#define SR_KLOAD(type, base, off) (*(type *)((char *)(base) + (off)))
#endif

static __always_inline u64 read_kptr(const void *base, u32 off)
{
	u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + off);
	return v;
}

static __always_inline u32 read_ku32(const void *base, u32 off)
{
	u32 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + off);
	return v;
}

static __always_inline u16 read_ku16(const void *base, u32 off)
{
	u16 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + off);
	return v;
}

static __always_inline void fill_header(struct event_header *h, u16 type, u64 cg)
{
	/* Every field but the time is a load through the BTF-typed task
	 * pointer (the verifier checks each against the running kernel's BTF;
	 * the offsets are BTF's): a helper call costs more than the field. The
	 * values are those bpf_get_current_{pid_tgid,uid_gid,comm} return (the
	 * kernel pads comm with NULs); the parent alone cost 130 ns through
	 * bpf_probe_read_kernel, and comm 60 ns through its helper. */
	char *task = SR_TASK();
	char *parent = SR_KLOAD(char *, task, SR_OFF_TASK_REAL_PARENT);
	char *cred = SR_KLOAD(char *, task, SR_OFF_TASK_CRED);
	u64 *comm = (u64 *)h->comm;

	h->type = type;
	h->flags = 0;
	h->ts_ns = bpf_ktime_get_ns();
	h->cgroup_id = cg;
	h->pid = SR_KLOAD(u32, task, SR_OFF_TASK_TGID);
	h->tid = SR_KLOAD(u32, task, SR_OFF_TASK_PID);
	h->ppid = parent ? SR_KLOAD(u32, parent, SR_OFF_TASK_TGID) : 0;
	h->uid = cred ? SR_KLOAD(u32, cred, SR_OFF_CRED_UID) : 0;
	comm[0] = SR_KLOAD(u64, task, SR_OFF_TASK_COMM);
	comm[1] = SR_KLOAD(u64, task, SR_OFF_TASK_COMM + 8);
}

/* The length of a path read with a limit of SR_PATH_MAX + 1 (one byte more
 * than the longest path the kernel takes, 4095 bytes and the NUL, to tell a
 * path of 4095 bytes from a longer one cut there), flagging what happened. */
static __always_inline u32 clamp_path_len(struct event_header *h, long n)
{
	u32 len = n > 0 ? (u32)n - 1 : 0;
	if (n < 0)
		h->flags |= SR_FLAG_READ_FAILED;
	if (len > SR_PATH_MAX - 1) {
		h->flags |= SR_FLAG_PATH_TRUNCATED;
		len = SR_PATH_MAX - 1;
	}
	SR_OPAQUE(len);
	return len & (SR_PATH_MAX - 1);
}

static __always_inline void *scratch_area(void)
{
	u32 cpu = bpf_get_smp_processor_id();
	struct scratch_buf *s = scratch.lookup(&cpu);
	return s ? s->buf : NULL;
}

/* One more record of the session's that the kernel could not keep. */
static __always_inline void count_lost(u64 cg, u32 type)
{
	struct lost_key k = {};
	u64 zero = 0;
	k.cgroup_id = cg;
	k.type = type;
	u64 *n = lost.lookup_or_try_init(&k, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
}

/* Copy a finished record into its session's ring, if it is at most limit
 * bytes (the room the verifier must see behind rec). No wake-up, but for a
 * ring more than half full: a wake-up per event costs more than the event,
 * so user space drains busy rings on a short timer and looks at quiet ones
 * rarely; a quiet ring that fills up wakes it (epoll on the ring) while the
 * other half still has room. */
#define SR_RING_BYTES ((u64)SR_RING_PAGES * 4096)
static __always_inline void submit_within(void *rec, u64 size, u16 type, u64 limit)
{
	u64 cg = ((struct event_header *)rec)->cgroup_id;
	u64 flags = BPF_RB_NO_WAKEUP;
	void *ring;

	SR_OPAQUE(size);
	if (size > limit)
		return;
	ring = sessions.lookup(&cg);
	if (ring != NULL && bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) > SR_RING_BYTES / 2)
		flags = BPF_RB_FORCE_WAKEUP;
	if (ring == NULL || bpf_ringbuf_output(ring, rec, size, flags) != 0)
		count_lost(cg, type);
}

/* A member that could not be added (the members map is full): counted. */
static __always_inline void member_lost(u64 cg)
{
	count_lost(cg, SR_EVENT_NONE);
}

/* submit_within() for a record at the start of the scratch area. */
static __always_inline void submit(void *rec, u64 size, u16 type)
{
	submit_within(rec, size, type, SR_SCRATCH_SIZE);
}

#ifndef SR_SAVE_ARGS
/* The saved user registers of the current syscall, at its sys_exit
 * tracepoint: the arguments are still there (x86-64: di, si, dx, r10; only
 * ax is overwritten, with the result), and orig_ax is the syscall number.
 * Reading them at exit means one program per syscall, not an enter program
 * and a stash to carry the arguments. Direct loads through the BTF-typed
 * pt_regs pointer, as in fill_header(). */
#define SR_REG(regs, off) (*(u64 *)((regs) + (off)))

/* The first four arguments of the current syscall; 1: they are known. */
static __always_inline int syscall_args(u64 a[4])
{
	char *regs = (char *)bpf_task_pt_regs(bpf_get_current_task_btf());
	a[0] = SR_REG(regs, SR_OFF_PT_REGS_DI);
	a[1] = SR_REG(regs, SR_OFF_PT_REGS_SI);
	a[2] = SR_REG(regs, SR_OFF_PT_REGS_DX);
	a[3] = SR_REG(regs, SR_OFF_PT_REGS_R10);
	return 1;
}

/* The number of the syscall the current task is in. */
static __always_inline u64 syscall_nr(void)
{
	char *regs = (char *)bpf_task_pt_regs(bpf_get_current_task_btf());
	return SR_REG(regs, SR_OFF_PT_REGS_ORIG_AX);
}

/* Saved arguments are dropped: none are saved. */
static __always_inline void drop_args(void)
{
}
#else
/* Without bpf_task_pt_regs (before 5.15), a session member's syscall saves
 * its number and first four arguments at sys_enter (save_args, in each
 * program file next to the exit program), per thread, and the exit takes
 * them. A call that began before its process joined the session has none:
 * its event is counted lost (syscall_args returns 0). An LRU map, so that
 * entries a thread could leave (a clone that failed before
 * sched_process_fork, a thread ending in a syscall) never fill it. */
struct sr_args {
	u64 nr;
	u64 a[4];
};
BPF_TABLE("lru_hash", u64, struct sr_args, sys_args, SR_MEMBERS_MAX);

/* Saves the current syscall's arguments: for session members only (the
 * caller checked). */
static __always_inline void save_args(u64 nr, u64 a0, u64 a1, u64 a2, u64 a3)
{
	struct sr_args s = {};
	u64 id = bpf_get_current_pid_tgid();
	s.nr = nr;
	s.a[0] = a0;
	s.a[1] = a1;
	s.a[2] = a2;
	s.a[3] = a3;
	sys_args.update(&id, &s);
}

/* A sys_enter program that saves the arguments of a session member's call. */
static __always_inline int member_saves_args(u64 nr, u64 a0, u64 a1, u64 a2, u64 a3)
{
	if (current_session())
		save_args(nr, a0, a1, a2, a3);
	return 0;
}

/* The first four arguments of the current thread's saved syscall, taken
 * from the map; 0: none were saved (they are then 0). */
static __always_inline int syscall_args(u64 a[4])
{
	u64 id = bpf_get_current_pid_tgid();
	struct sr_args *s = sys_args.lookup(&id);
	if (!s) {
		a[0] = a[1] = a[2] = a[3] = 0;
		return 0;
	}
	a[0] = s->a[0];
	a[1] = s->a[1];
	a[2] = s->a[2];
	a[3] = s->a[3];
	sys_args.delete(&id);
	return 1;
}

/* The number of the current thread's saved syscall (still saved), or -1
 * when none was saved. */
static __always_inline u64 syscall_nr(void)
{
	u64 id = bpf_get_current_pid_tgid();
	struct sr_args *s = sys_args.lookup(&id);
	return s ? s->nr : (u64)-1;
}

/* The current thread's saved arguments, not wanted (a successful exec, an
 * exit). */
static __always_inline void drop_args(void)
{
	u64 id = bpf_get_current_pid_tgid();
	sys_args.delete(&id);
}
#endif /* SR_SAVE_ARGS */

#endif /* SR_COMMON_BPF_H */
