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

#define SESSREC_ABI_VERSION 2

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
/* The destination the kernel keeps in a socket: sockaddr_in6 at most. */
#define SR_KADDR_MAX 28
/* Bytes of argv in one SR_EVENT_ARGV record. */
#define SR_ARGV_PART 32768

enum sr_event_type {
	SR_EVENT_NONE = 0,
	SR_EVENT_FORK = 1,
	SR_EVENT_EXEC = 2,
	SR_EVENT_EXIT = 3,
	SR_EVENT_OPEN = 4,
	SR_EVENT_CONNECT = 5,
	SR_EVENT_CHDIR = 6,
	SR_EVENT_ARGV = 7,   /* ABI 2: the continuation of an exec's argv */
	SR_EVENT_CGROUP = 8, /* ABI 2: a session process moved to a cgroup */
	SR_EVENT_TYPE_MAX = 9, /* keep last; append new types above it */
};

enum sr_event_flags {
	SR_FLAG_PATH_TRUNCATED = 1 << 0, /* path hit SR_PATH_MAX */
	SR_FLAG_ARGV_TRUNCATED = 1 << 1, /* argv hit SR_ARGV_MAX or arg count */
	SR_FLAG_READ_FAILED = 1 << 2,    /* a user-memory read failed */
	/* The kernel's path (kpath, ABI 2): */
	SR_FLAG_KPATH_TRUNCATED = 1 << 3,   /* longer than the walk holds: emitted empty */
	SR_FLAG_KPATH_DELETED = 1 << 4,     /* the file was unlinked */
	SR_FLAG_KPATH_UNREACHABLE = 1 << 5, /* outside the task's root */
	SR_FLAG_KPATH_NONE = 1 << 6,        /* no kernel object to take it from */
	/* The caller's memory and the kernel's object disagree beyond what
	 * resolution explains (both are kept: this is evidence), or a session
	 * process moved out of its session's cgroup. */
	SR_FLAG_TAMPERED = 1 << 7,
};

/* Where a connect event's kernel address (kaddr) was taken from. */
enum sr_addr_src {
	SR_ADDR_NONE = 0,   /* nowhere: the caller's sockaddr is all there is */
	SR_ADDR_SOCK = 1,   /* the socket's destination (struct sock) */
};

/* What the kernel path (kpath) of an event is the path of. */
enum sr_kpath_src {
	SR_KPATH_NONE = 0,  /* none was taken */
	SR_KPATH_FILE = 1,  /* the object itself: the opened file, the new
			     * executable, the new working directory */
	SR_KPATH_CWD = 2,   /* the task's cwd: the request is relative to it */
	SR_KPATH_DIRFD = 3, /* the dirfd's file: the request is relative to it */
	SR_KPATH_ROOT = 4,  /* the task's root: the request is absolute */
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

/* The kernel's path of an event's object (ABI 2): kpath_len bytes after the
 * event's other variable data, of what src says, its first root_len bytes
 * outside the task's root (a chroot). */
struct sr_kpath {
	__u16 len;
	__u16 src;          /* enum sr_kpath_src */
	__u16 root_len;
	__u16 _pad;
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
	/* ABI 2: the kernel's path of the executable (success: mm->exe_file),
	 * after argv. */
	struct sr_kpath k;
	/* ABI 2: argv in the new mm is argv_total bytes; the first argv_len
	 * are here, the rest follows in argv_parts SR_EVENT_ARGV records. */
	__u32 argv_total;
	__u32 argv_parts;
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
	__u16 path_len;     /* the caller's string (requested_path) */
	/* ABI 2: the kernel's path (enum sr_kpath_src), after the string. */
	struct sr_kpath k;
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
	/* ABI 2: the destination the kernel stored in the socket, as a
	 * sockaddr (AF_INET/AF_INET6), and where it was taken from. */
	__u16 kaddr_src;    /* enum sr_addr_src */
	__u16 kaddr_len;
	__u8 kaddr[SR_KADDR_MAX];
};

/* chdir (fd = -1, path follows) or fchdir (fd set, no path), at sys_exit. */
struct chdir_event {
	struct event_header h;
	__s32 ret;
	__s32 fd;
	__u32 path_len;     /* the caller's string (chdir) */
	__u32 _pad;
	/* ABI 2: the kernel's path of the new cwd, after the string. */
	struct sr_kpath k;
	char path[];
};

/* ABI 2: part of a successful exec's argv beyond the exec record's, sent
 * in records of their own so that no ring reservation is huge. The parts
 * come first, in order, then their exec record (header pid/tid as the
 * exec's), which says how many there were: the reader joins them to it. A
 * part that could not be read is flagged SR_FLAG_READ_FAILED and is empty. */
struct argv_event {
	struct event_header h;
	__u32 offset;       /* of this part in argv */
	__u32 len;          /* bytes of data */
	__u32 index;        /* 0, 1, ... of argv_parts */
	__u32 _pad;
	char data[];
};

/* ABI 2: cgroup:cgroup_attach_task of a session process: the header is the
 * task that moved it (it may be itself), pid the task moved. A session
 * process stays in its session wherever it moves; a move out of the
 * session's cgroup is flagged SR_FLAG_TAMPERED. */
struct cgroup_event {
	struct event_header h;
	__u64 dst_id;       /* the destination cgroup's id */
	__s32 dst_root;     /* hierarchy id (0: cgroup2) */
	__s32 dst_level;
	__u32 pid;          /* the task moved (a thread id) */
	__u16 path_len;
	__u16 _pad;
	char path[];        /* the destination cgroup's path */
};

/* The value of proc.bpf.c's login_scopes map, which user space fills:
 * a PAM login's systemd-logind scope, as the cgroup:cgroup_attach_task
 * tracepoint gives paths (from the cgroup2 root, no NUL). */
#define SR_SCOPE_PATH_MAX 256
struct login_scope {
	__u32 len;
	__u32 _pad;
	char path[SR_SCOPE_PATH_MAX];
};

#endif /* SESSREC_H */
