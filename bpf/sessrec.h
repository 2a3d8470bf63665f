/* sessrec.h - the kernel/user boundary, and the only place it is defined.
 *
 * Every record that crosses the ring buffer starts with struct event_header,
 * then a fixed body per type, then (for some types) variable-length bytes.
 * sessrec/records.py mirrors these layouts with struct formats; the test
 * tests/unit/test_abi_layout.py compiles this header and checks every offset
 * and size against it, so the two cannot drift.
 *
 * Rules: enum values and struct fields are append-only; any layout change
 * bumps SESSREC_ABI_VERSION, and sessrec/records.py gets a table for the new
 * version next to the old ones (files of every version are read forever).
 * A field appended to a struct goes before its flexible array member, with
 * explicit padding (docs/FORMAT.md, "BPF ABI versions").
 */
#ifndef SESSREC_H
#define SESSREC_H

#define SESSREC_ABI_VERSION 1

#define SR_COMM_LEN 16
/* Paths are captured up to PATH_MAX, the kernel's own limit. */
#define SR_PATH_MAX 4096
/* argv is captured exactly up to this many bytes (NUL-separated). */
#define SR_ARGV_MAX 32768
/* A failed exec has no new mm to copy argv from, so argv is read pointer by
 * pointer from the caller: the first SR_FAILED_EXEC_MAX_ARGS arguments, within
 * SR_ARGV_MAX. Bounded to keep the verifier's work small. When there are more,
 * the event is flagged truncated and its argc counts the arguments read. */
#define SR_FAILED_EXEC_MAX_ARGS 64
/* Large enough for sockaddr_in6 and sockaddr_un (110 bytes). */
#define SR_SOCKADDR_MAX 112

enum sr_event_type {
	SR_EVENT_NONE = 0,
	SR_EVENT_FORK = 1,
	SR_EVENT_EXEC = 2,
	SR_EVENT_EXIT = 3,
	SR_EVENT_OPEN = 4,
	SR_EVENT_CONNECT = 5,
	SR_EVENT_CHDIR = 6,
	SR_EVENT_TYPE_MAX = 7, /* keep last; append new types above it */
};

enum sr_event_flags {
	SR_FLAG_PATH_TRUNCATED = 1 << 0, /* path hit SR_PATH_MAX */
	SR_FLAG_ARGV_TRUNCATED = 1 << 1, /* argv hit SR_ARGV_MAX or arg count */
	SR_FLAG_READ_FAILED = 1 << 2,    /* a user-memory read failed */
};

/* Which syscall produced an open event. */
enum sr_open_syscall {
	SR_SYS_OPEN = 0,
	SR_SYS_OPENAT = 1,
	SR_SYS_OPENAT2 = 2,
	SR_SYS_CREAT = 3,
};

/* Which syscall produced an exec event. */
enum sr_exec_syscall {
	SR_SYS_EXECVE = 0,
	SR_SYS_EXECVEAT = 1,
};

struct event_header {
	__u16 type;       /* enum sr_event_type */
	__u16 flags;      /* enum sr_event_flags */
	__u32 size;       /* bytes of the whole record, header included */
	__u64 ts_ns;      /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 cgroup_id;  /* the session's cgroup id */
	__u32 pid;        /* thread-group id */
	__u32 tid;
	__u32 ppid;       /* real_parent's thread-group id */
	__u32 uid;
	char comm[SR_COMM_LEN];
};

/* sched_process_fork of a new process (threads are not reported). */
struct fork_event {
	struct event_header h;
	__u32 child_pid;
	__u32 _pad;
};

/* A successful exec (sched_process_exec) or a failed one (sys_exit_exec*).
 * Followed by filename_len bytes of filename, then argv_len bytes of
 * NUL-separated argv. */
struct exec_event {
	struct event_header h;
	__s32 ret;          /* 0, or -errno */
	__u32 argc;         /* the original argc, also when argv is truncated
			     * (a failed exec past SR_FAILED_EXEC_MAX_ARGS: those read) */
	__u32 filename_len;
	__u32 argv_len;
	__u32 old_pid;      /* tid that called exec (differs after de_thread) */
	__u16 syscall;      /* enum sr_exec_syscall; failed execs only */
	__u16 _pad;
	char data[];
};

/* sched_process_exit of the last thread of a process. */
struct exit_event {
	struct event_header h;
	__u32 exit_code;    /* task->exit_code: (status << 8) | signal | 0x80 core */
	__u32 _pad;
};

/* open/openat/openat2/creat, at sys_exit. Followed by path_len bytes. */
struct open_event {
	struct event_header h;
	__s32 ret;          /* fd, or -errno */
	__s32 dirfd;        /* AT_FDCWD (-100) for open and creat */
	__u64 flags;        /* open flags (openat2: how.flags) */
	__u32 mode;
	__u16 syscall;      /* enum sr_open_syscall */
	__u16 path_len;
	char path[];
};

/* connect, at sys_exit, with the raw sockaddr the caller passed. */
struct connect_event {
	struct event_header h;
	__s32 ret;          /* 0, or -errno (-EINPROGRESS for non-blocking) */
	__s32 fd;
	__u16 sock_type;    /* SOCK_STREAM, SOCK_DGRAM, ... (0 if unknown) */
	__u16 protocol;     /* sk->sk_protocol (0 if unknown) */
	__u16 addr_len;     /* bytes of addr captured */
	__u16 _pad;
	__u8 addr[SR_SOCKADDR_MAX];
};

/* chdir (fd = -1, path follows) or fchdir (fd set, no path), at sys_exit. */
struct chdir_event {
	struct event_header h;
	__s32 ret;
	__s32 fd;
	__u32 path_len;
	__u32 _pad;
	char path[];
};

#endif /* SESSREC_H */
