/* net.bpf.c - connections made by session processes: connect, with the
 * destination sockaddr as passed, the destination the kernel stored in the
 * socket (struct sock: the caller's memory can be rewritten by another
 * thread while connect runs), the socket type and protocol, and the result
 * (-EINPROGRESS for a non-blocking connect).
 *
 * Tracepoints: syscalls:sys_exit_connect (arguments from the saved registers),
 *   and without bpf_task_pt_regs (SR_SAVE_ARGS) syscalls:sys_enter_connect.
 * Needs: BPF ring buffer (5.8), bpf_task_pt_regs (5.15) or SR_SAVE_ARGS,
 *   x86-64; BTF
 *   offsets of task_struct.files,
 *   files_struct.fdt, fdtable.{fd,max_fds}, file.private_data,
 *   socket.{type,sk}, sock.sk_protocol and sock_common.skc_{family,dport,
 *   daddr,v6_daddr} to find the socket behind the fd and its destination.
 */
#include "common.bpf.h"
#include "kpath.bpf.h"

#define SR_EBADF 9
#define SR_ENOTSOCK 88

/* file_of_fd(fd)->private_data is the struct socket of a socket fd. */
static __always_inline void *socket_of_fd(u32 fd)
{
	u64 file = file_of_fd(fd);
	return file ? (void *)read_kptr((void *)file, SR_OFF_FILE_PRIVATE_DATA) : NULL;
}

#define SR_AF_INET 2
#define SR_AF_INET6 10

/* The destination the kernel stored in the socket (sk->__sk_common), as a
 * sockaddr_in or sockaddr_in6, if it stored one: the port is set by every
 * connect that got as far as choosing a route. A connect that failed before
 * (or a family without one) keeps kaddr_src SR_ADDR_NONE: the caller's
 * sockaddr is then all there is. */
static __always_inline void kernel_dest(struct connect_event *e, void *sk)
{
	u16 family = read_ku16(sk, SR_OFF_SKC_FAMILY);
	u16 port = read_ku16(sk, SR_OFF_SKC_DPORT); /* network order, as in sockaddr */
	if (port == 0)
		return;
	if (family == SR_AF_INET) {
		/* struct sockaddr_in: family, port, address. */
		*(u16 *)&e->kaddr[0] = family;
		*(u16 *)&e->kaddr[2] = port;
		*(u32 *)&e->kaddr[4] = read_ku32(sk, SR_OFF_SKC_DADDR);
		e->kaddr_len = 16;
	} else if (family == SR_AF_INET6) {
		/* struct sockaddr_in6: family, port, flowinfo, address, scope. */
		*(u16 *)&e->kaddr[0] = family;
		*(u16 *)&e->kaddr[2] = port;
		bpf_probe_read_kernel(&e->kaddr[8], 16, (char *)sk + SR_OFF_SKC_V6_DADDR);
		e->kaddr_len = 28;
	} else {
		return;
	}
	e->kaddr_src = SR_ADDR_SOCK;
}

/* The caller's sockaddr (read at exit, when another thread may have
 * rewritten it) names another destination than the kernel connected to:
 * another family or port, or another address unless the caller's was the
 * unspecified one (which the kernel turns into loopback). */
static __always_inline int dest_differs(struct connect_event *e)
{
	if (*(u16 *)&e->addr[0] != *(u16 *)&e->kaddr[0] ||
	    *(u16 *)&e->addr[2] != *(u16 *)&e->kaddr[2])
		return 1;
	if (*(u16 *)&e->kaddr[0] == SR_AF_INET) {
		u32 a = *(u32 *)&e->addr[4];
		return a != 0 && a != *(u32 *)&e->kaddr[4];
	}
	if (e->addr_len < 24)
		return 1;
	u64 a0 = *(u64 *)&e->addr[8], a1 = *(u64 *)&e->addr[16];
	return (a0 | a1) != 0 &&
	       (a0 != *(u64 *)&e->kaddr[8] || a1 != *(u64 *)&e->kaddr[16]);
}

#ifdef SR_SAVE_ARGS
TRACEPOINT_PROBE(syscalls, sys_enter_connect)
{
	return member_saves_args(args->__syscall_nr, args->fd, (u64)args->uservaddr,
				 args->addrlen, 0);
}
#endif

TRACEPOINT_PROBE(syscalls, sys_exit_connect)
{
	u64 cg = current_session();
	if (!cg)
		return 0;
	u64 f[4]; /* fd, sockaddr, addrlen */
	if (!syscall_args(f)) {
		count_lost(cg, SR_EVENT_CONNECT);
		return 0;
	}
	struct connect_event *e = scratch_area();
	if (!e)
		return 0;
	fill_header(&e->h, SR_EVENT_CONNECT, cg);
	e->h.size = sizeof(*e);
	e->ret = (s32)args->ret;
	e->fd = (s32)f[0];
	e->sock_type = 0;
	e->protocol = 0;
	e->_pad = 0;
	e->kaddr_src = SR_ADDR_NONE;
	e->kaddr_len = 0;
	__builtin_memset(e->kaddr, 0, SR_KADDR_MAX);
	if (args->ret != -SR_EBADF && args->ret != -SR_ENOTSOCK) {
		void *sock = socket_of_fd((u32)f[0]);
		if (sock) {
			e->sock_type = read_ku16(sock, SR_OFF_SOCKET_TYPE);
			void *sk = (void *)read_kptr(sock, SR_OFF_SOCKET_SK);
			if (sk) {
				e->protocol = read_ku16(sk, SR_OFF_SOCK_SK_PROTOCOL);
				kernel_dest(e, sk);
			}
		}
	}
	u64 alen = (u32)f[2];
	if (alen > SR_SOCKADDR_MAX)
		alen = SR_SOCKADDR_MAX;
	__builtin_memset(e->addr, 0, SR_SOCKADDR_MAX);
	if (bpf_probe_read_user(e->addr, alen, (void *)f[1]) != 0) {
		alen = 0;
		e->h.flags |= SR_FLAG_READ_FAILED;
	}
	e->addr_len = alen;
	if (e->kaddr_src == SR_ADDR_SOCK && alen >= 8 && dest_differs(e))
		e->h.flags |= SR_FLAG_TAMPERED;
	submit(e, sizeof(*e), SR_EVENT_CONNECT);
	return 0;
}
