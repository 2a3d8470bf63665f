/* kpath.bpf.h - the path of a kernel `struct path` (a dentry and its mount),
 * built by walking dentries and mounts, as the kernel's d_path() does.
 *
 * Why: a path read from the caller's memory can be rewritten by another
 * thread while the kernel uses it (TOCTOU), and says nothing of symlinks,
 * `..` or mounts. The kernel's objects say which file was opened.
 *
 * No bpf_d_path (needs fentry/LSM, refused here) and no bpf_loop (BCC 0.26
 * does not relocate its callback): a bounded loop of plain probe reads, with
 * every offset from BTF (SR_OFF_* flags, recorder/loader.py). What is
 * reachable from the task through BTF-typed pointers (its fs root, its file
 * table) is loaded directly (SR_KLOAD), as in fill_header(); a helper call
 * costs more than the field. A struct file taken from the fd array, its
 * dentries and mounts are plain addresses to the verifier, so they are
 * probe-read, a block of adjacent fields at a time (SR_*_BLK flags).
 *
 * The walk goes up to the root of the task's mount namespace, not only to
 * the task's root: in a chroot the whole host path is kept, and root_len
 * says how many leading bytes lie outside the task's root (the path the
 * process itself sees is the rest). A path never reaching the task's root
 * (opened before a chroot, a pseudo filesystem, a detached mount) is flagged
 * unreachable. Components are written right to left into a per-CPU buffer
 * (a short name from the dentry's block, see put_inline_name);
 * a path longer than PATH_MAX - 1 bytes, or deeper than SR_WALK_MAX steps, is
 * flagged truncated and emitted empty: never a wrong path.
 */
#ifndef SR_KPATH_BPF_H
#define SR_KPATH_BPF_H

#include "common.bpf.h"

/* Steps of the walk: one per component or mount crossed. A path of
 * PATH_MAX bytes has at most PATH_MAX / 2 components ("/a"). */
#ifndef SR_WALK_MAX
#define SR_WALK_MAX 512
#endif
#define SR_NAME_MAX 255
#define SR_WALK_MASK (2 * SR_PATH_MAX - 1)

/* The walk's state lives in this map value, not in registers: the verifier
 * does not track what a map holds, so every iteration of the loop looks the
 * same to it and its states are pruned; a position kept in a register would
 * be a different range on every path and multiply the states. */
struct walk_buf {
	u32 pos;      /* the path so far is buf[pos .. SR_PATH_MAX) */
	u32 root_pos; /* pos where the task's root was passed, or 0 */
	u32 done;
	/* Handed to the walk's program by kpath_submit(): */
	u16 src;      /* enum sr_kpath_src */
	u16 type;     /* the event's type */
	u64 dentry;
	u64 vfsmnt;
	u32 k_off;    /* offset of the event's struct sr_kpath in scratch */
	u32 out_off;  /* where its path goes in scratch */
	u32 req_off;  /* an open's string as read at exit, in scratch, or 0 */
	u32 req_len;
	u32 i;        /* a word loop's position (request_changed, kpath) */
	u32 _pad2;
	char buf[2 * SR_PATH_MAX + SR_NAME_MAX + 1];
};
BPF_PERCPU_ARRAY(walkbuf, struct walk_buf, 1);

/* d_hash.pprev, d_parent and d_name (struct qstr: hash_len, then name) of
 * a dentry, read as one block, and mnt_parent, mnt_mountpoint and
 * mnt.mnt_root of a struct mount as another: the loader checks that each
 * fits in SR_*_BLK_LEN bytes from SR_*_BLK_OFF. */
struct dentry_blk {
	u64 w[SR_DENTRY_BLK_LEN / 8];
};
#define SR_BLK_U64(b, off) ((b).w[((off) - SR_DENTRY_BLK_OFF) / 8])
struct mount_blk {
	u64 w[SR_MOUNT_BLK_LEN / 8];
};
#define SR_MBLK_U64(b, off) ((b).w[((off) - SR_MOUNT_BLK_OFF) / 8])

static __always_inline void read_dentry_blk(struct dentry_blk *b, u64 dentry)
{
	bpf_probe_read_kernel(b, sizeof(*b), (char *)dentry + SR_DENTRY_BLK_OFF);
}

/* The block of the struct mount whose vfsmount is vfsmnt. */
static __always_inline void read_mount_blk(struct mount_blk *m, u64 vfsmnt)
{
	bpf_probe_read_kernel(m, sizeof(*m), (char *)vfsmnt - SR_OFF_MOUNT_MNT + SR_MOUNT_BLK_OFF);
}

#ifdef SR_OFF_DENTRY_INAME
/* A short name is kept in the dentry itself (d_shortname, d_iname), inside
 * the block already read: its words are stored at `at` whole, and the bytes
 * they overwrite past the name's len (the path's next components, already
 * written) are put back. The buffer has SR_NAME_MAX spare bytes past
 * SR_WALK_MASK for the overhang. */
#define SR_INAME_WORDS (SR_DENTRY_INAME_LEN / 8)
static __always_inline void put_inline_name(struct walk_buf *wb, u32 at, u32 len,
					    struct dentry_blk *b)
{
	char *dst = wb->buf + (at & SR_WALK_MASK);
	char *after = wb->buf + ((at + len) & SR_WALK_MASK);
	u64 keep[SR_INAME_WORDS];
	int w;
#pragma unroll
	for (w = 0; w < SR_INAME_WORDS; w++)
		keep[w] = *(u64 *)(after + 8 * w);
#pragma unroll
	for (w = 0; w < SR_INAME_WORDS; w++)
		*(u64 *)(dst + 8 * w) = SR_BLK_U64(*b, SR_OFF_DENTRY_INAME + 8 * w);
#pragma unroll
	for (w = 0; w < SR_INAME_WORDS; w++)
		*(u64 *)(after + 8 * w) = keep[w];
}
#endif

/* The task's root (fs->root) or working directory (fs->pwd): loads through
 * the task's BTF-typed pointers. */
static __always_inline void task_fs_path(u32 which, u64 *dentry, u64 *vfsmnt)
{
	char *task = SR_TASK();
	char *fs = SR_KLOAD(char *, task, SR_OFF_TASK_FS);
	*dentry = 0;
	*vfsmnt = 0;
	if (!fs)
		return;
	*vfsmnt = SR_KLOAD(u64, fs, which + SR_OFF_PATH_MNT);
	*dentry = SR_KLOAD(u64, fs, which + SR_OFF_PATH_DENTRY);
}

/* f_path of a struct file: { mnt, dentry } in one read. */
_Static_assert(SR_OFF_PATH_MNT + SR_OFF_PATH_DENTRY == 8 &&
	       (SR_OFF_PATH_MNT == 0 || SR_OFF_PATH_DENTRY == 0),
	       "struct path is not { mnt, dentry } or { dentry, mnt }");
static __always_inline void file_path(u64 file, u64 *dentry, u64 *vfsmnt)
{
	u64 p[2] = {};
	if (file)
		bpf_probe_read_kernel(p, sizeof(p), (char *)file + SR_OFF_FILE_F_PATH);
	*vfsmnt = p[SR_OFF_PATH_MNT / 8];
	*dentry = p[SR_OFF_PATH_DENTRY / 8];
}

/* The struct file of the current task's descriptor fd, or 0: the file
 * table is reached through BTF-typed loads; the array of file pointers is
 * not typed for the verifier, so the entry is probe-read. */
static __always_inline u64 file_of_fd(u32 fd)
{
	char *task = SR_TASK();
	char *files = SR_KLOAD(char *, task, SR_OFF_TASK_FILES);
	if (!files)
		return 0;
	char *fdt = SR_KLOAD(char *, files, SR_OFF_FILES_FDT);
	if (!fdt)
		return 0;
	if (fd >= SR_KLOAD(u32, fdt, SR_OFF_FDTABLE_MAX_FDS))
		return 0;
	u64 fdarr = SR_KLOAD(u64, fdt, SR_OFF_FDTABLE_FD);
	if (!fdarr)
		return 0;
	return read_kptr((void *)fdarr, fd * sizeof(void *));
}

/* Writes the path of (dentry, vfsmnt) to out (at most SR_PATH_MAX - 1
 * bytes, no NUL) and returns its length; sets SR_FLAG_KPATH_* in *flags and
 * the length of the part outside the task's root in *root_len. out must
 * have room for SR_PATH_MAX bytes. */
static __always_inline u32 kpath(char *out, u64 dentry, u64 vfsmnt, u16 *flags, u32 *root_len)
{
	u32 zero = 0;
	struct walk_buf *wb = walkbuf.lookup(&zero);
	*root_len = 0;
	if (!wb || !dentry || !vfsmnt) {
		*flags |= SR_FLAG_KPATH_NONE;
		return 0;
	}
	u64 root_dentry, root_mnt;
	task_fs_path(SR_OFF_FS_ROOT, &root_dentry, &root_mnt);

	/* Deleted: unhashed and not a root (d_unlinked()). */
	struct dentry_blk b = {};
	read_dentry_blk(&b, dentry);
	if (!SR_BLK_U64(b, SR_OFF_DENTRY_D_HASH_PPREV) &&
	    SR_BLK_U64(b, SR_OFF_DENTRY_D_PARENT) != dentry)
		*flags |= SR_FLAG_KPATH_DELETED;
	struct mount_blk m = {};
	read_mount_blk(&m, vfsmnt);

	wb->pos = SR_PATH_MAX;
	wb->root_pos = 0;
	wb->done = 0;
	int i;
	/* Each step reads the next dentry's block (b) at its end, and a mount
	 * crossing the next mount's (m): one read per component or mount. */
#pragma clang loop unroll(disable)
	for (i = 0; i < SR_WALK_MAX; i++) {
		if (dentry == root_dentry && vfsmnt == root_mnt && !wb->root_pos)
			wb->root_pos = wb->pos;
		u64 parent = SR_BLK_U64(b, SR_OFF_DENTRY_D_PARENT);
		u64 mnt_root = SR_MBLK_U64(m, SR_OFF_MOUNT_MNT + SR_OFF_VFSMOUNT_MNT_ROOT);
		if (dentry == mnt_root || dentry == parent) {
			if (dentry != mnt_root) {
				/* The root of a filesystem that is not a mount's
				 * root: a dentry cut off from its tree. */
				*flags |= SR_FLAG_KPATH_UNREACHABLE;
				wb->done = 1;
				break;
			}
			u64 mnt = vfsmnt - SR_OFF_MOUNT_MNT;
			u64 mparent = SR_MBLK_U64(m, SR_OFF_MOUNT_MNT_PARENT);
			if (mparent == mnt || !mparent) {
				wb->done = 1; /* the root of the mount namespace */
				break;
			}
			dentry = SR_MBLK_U64(m, SR_OFF_MOUNT_MNT_MOUNTPOINT);
			vfsmnt = mparent + SR_OFF_MOUNT_MNT;
			read_mount_blk(&m, vfsmnt);
			read_dentry_blk(&b, dentry);
			continue;
		}
		u64 hash_len = SR_BLK_U64(b, SR_OFF_DENTRY_D_NAME + SR_OFF_QSTR_HASH_LEN);
		u64 name = SR_BLK_U64(b, SR_OFF_DENTRY_D_NAME + SR_OFF_QSTR_NAME);
		u32 len = (u32)(hash_len >> 32); /* qstr: hash, then len */
		u32 pos = wb->pos;
		if (len > SR_NAME_MAX || len + 2 > pos) {
			*flags |= SR_FLAG_KPATH_TRUNCATED;
			break;
		}
		pos -= len + 1;
#ifdef SR_OFF_DENTRY_INAME
		if (name == dentry + SR_OFF_DENTRY_INAME && len < SR_DENTRY_INAME_LEN)
			put_inline_name(wb, pos + 1, len, &b);
		else
#endif
			bpf_probe_read_kernel(wb->buf + ((pos + 1) & SR_WALK_MASK),
					      len & SR_NAME_MAX, (void *)name);
		wb->buf[pos & SR_WALK_MASK] = '/';
		wb->pos = pos;
		dentry = parent;
		read_dentry_blk(&b, dentry);
	}
	if (!wb->done) {
		*flags |= SR_FLAG_KPATH_TRUNCATED;
		return 0;
	}
	u32 pos = wb->pos;
	u32 root_pos = wb->root_pos;
	if (!root_pos && dentry == root_dentry && vfsmnt == root_mnt)
		root_pos = pos;
	if (!root_pos)
		*flags |= SR_FLAG_KPATH_UNREACHABLE;
	else
		*root_len = root_pos - pos;
	if (pos >= SR_PATH_MAX) {
		/* The namespace's root itself. */
		pos = SR_PATH_MAX - 1;
		wb->buf[pos] = '/';
	}
	u32 len = SR_PATH_MAX - pos;
	SR_OPAQUE(len);
	len &= SR_PATH_MAX - 1;
	/* Word by word: a short path costs a few loads and stores, not a helper
	 * call (about 25 ns). Up to 7 bytes past the path are copied too: the
	 * record's size leaves them out. The position lives in the map (see
	 * struct walk_buf). */
	wb->i = 0;
	int w;
#pragma clang loop unroll(disable)
	for (w = 0; w < SR_PATH_MAX / 8; w++) {
		u32 at = *(volatile u32 *)&wb->i;
		if (at >= len)
			break;
		*(u64 *)(out + (at & (SR_PATH_MAX - 8))) =
			*(u64 *)(wb->buf + ((pos + at) & SR_WALK_MASK));
		wb->i = at + 8;
	}
	return len;
}

/* Where a request that failed was resolved from: the task's root for an
 * absolute path, else the cwd or the directory fd. */
static __always_inline u16 request_base(const char *req, u32 req_len, s32 dirfd, u64 *dentry,
					u64 *vfsmnt)
{
	if (req_len > 0 && req[0] == '/') {
		task_fs_path(SR_OFF_FS_ROOT, dentry, vfsmnt);
		return SR_KPATH_ROOT;
	}
	if (dirfd == SR_AT_FDCWD) {
		task_fs_path(SR_OFF_FS_PWD, dentry, vfsmnt);
		return SR_KPATH_CWD;
	}
	file_path(file_of_fd((u32)dirfd), dentry, vfsmnt);
	return SR_KPATH_DIRFD;
}


#ifdef SR_RACE_CHECK
/* An open's path as the caller's buffer held it when the call began
 * (sys_enter), per thread: at exit it is read again, and a difference means
 * the buffer was rewritten while the kernel used it (the "phantom" race):
 * the event is flagged SR_FLAG_TAMPERED. len counts the NUL; 0: none. */
struct req_copy {
	u32 len;
	u32 _pad;
	char buf[SR_PATH_MAX];
};
BPF_TASK_STORAGE(reqs, struct req_copy);

/* The open's string read at exit (req_len bytes at base + req_off) differs
 * from the copy taken at sys_enter. Compared 8 bytes at a time; the
 * position lives in the map for the verifier (see struct walk_buf). */
static __always_inline int request_changed(struct walk_buf *wb, char *base)
{
	struct req_copy *r = reqs.task_storage_get(bpf_get_current_task_btf(), 0, 0);
	if (!r || r->len == 0)
		return 0; /* no copy: the call began before the session did */
	u32 len = r->len - 1;
	r->len = 0;
	if (len != wb->req_len)
		return 1;
	u32 off = wb->req_off;
	wb->i = 0;
	int i;
#pragma clang loop unroll(disable)
	for (i = 0; i < SR_PATH_MAX / 8; i++) {
		u32 at = *(volatile u32 *)&wb->i;
		if (at >= len)
			break;
		u64 a = *(u64 *)(r->buf + (at & (SR_PATH_MAX - 8)));
		u64 b = *(u64 *)(base + ((off + at) & SR_DATA_MASK));
		u32 left = len - at;
		if (left < 8) {
			u64 keep = (1ULL << (8 * (left & 7))) - 1;
			a &= keep;
			b &= keep;
		}
		if (a != b)
			return 1;
		wb->i = at + 8;
	}
	return 0;
}
#endif /* SR_RACE_CHECK */

/* The walk runs in a program of its own, reached by a tail call: verified
 * once rather than inlined into every program with a kernel path (each
 * copy costs the verifier the whole loop, and next to the failed exec's
 * argv loop it is more than the verifier takes). */
BPF_PROG_ARRAY(kpath_prog, 1);

/* Finishes the event in scratch (e, of type `type`, size bytes so far)
 * with the kernel path of (dentry, vfsmnt), whose struct sr_kpath is k:
 * the walk's program appends the path, sets k and the size, and submits.
 * Does not return unless the tail call fails; then the event is submitted
 * without a kernel path. */
static __always_inline void kpath_submit(void *ctx, struct event_header *e, u64 size, u16 type,
					 struct sr_kpath *k, u64 dentry, u64 vfsmnt, u16 src,
					 char *req, u32 req_len)
{
	u32 zero = 0;
	struct walk_buf *wb = walkbuf.lookup(&zero);
	k->len = 0;
	k->src = SR_KPATH_NONE;
	k->root_len = 0;
	k->_pad = 0;
	if (wb) {
		wb->src = src;
		wb->type = type;
		wb->dentry = dentry;
		wb->vfsmnt = vfsmnt;
		wb->k_off = (char *)k - (char *)e;
		wb->out_off = size;
		wb->req_off = req ? req - (char *)e : 0;
		wb->req_len = req_len;
		kpath_prog.call(ctx, 0);
	}
	e->flags |= SR_FLAG_KPATH_NONE;
	e->size = size;
	submit(e, size, type);
}

/* The tail call's target (loaded by recorder/loader.py, not attached). */
int sr_kpath_walk(void *ctx)
{
	u32 zero = 0;
	struct walk_buf *wb = walkbuf.lookup(&zero);
	char *base = scratch_area();
	if (!wb || !base)
		return 0;
	struct event_header *h = (struct event_header *)base;
	u32 out_off = wb->out_off;
	SR_OPAQUE(out_off);
	out_off &= SR_DATA_MASK;
	u32 k_off = wb->k_off & 0xFF;
	struct sr_kpath *k = (struct sr_kpath *)(base + k_off);
	u16 type = wb->type;
	u16 src = wb->src;
#ifdef SR_RACE_CHECK
	if (wb->req_off && request_changed(wb, base))
		h->flags |= SR_FLAG_TAMPERED;
#endif
	u32 root_len = 0;
	u32 len = kpath(base + out_off, wb->dentry, wb->vfsmnt, &h->flags, &root_len);
	k->len = len;
	k->src = h->flags & (SR_FLAG_KPATH_NONE | SR_FLAG_KPATH_TRUNCATED) ? SR_KPATH_NONE : src;
	k->root_len = root_len;
	k->_pad = 0;
	u64 size = (u64)out_off + len;
	h->size = size;
	submit(base, size, type);
	return 0;
}

#endif /* SR_KPATH_BPF_H */
