/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Closing the fds a peer passed without waiting on the peer. close() calls into the fd's file
 * system: FUSE sends FLUSH and waits for its server's answer, uninterruptibly (not even SIGKILL
 * ends it), so a client that passes an fd of a FUSE file system it serves holds whoever closes
 * that fd for as long as it likes. A process that runs a closer hands such fds (fd-fuse.h) to a
 * thread of its own, which closes them one after another; the event loop goes on. Every other fd
 * is closed at once, as where no closer runs (the client library, tests of one module).
 * What waits is counted by peer (a client's uid), so that one who holds the thread can make the
 * process refuse fds of its own only (fd_closer_congested()).
 * Runs in: monitor and worker (and clients, which run no closer).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Makes the closer ready, with room for as many fds as RLIMIT_NOFILE allows now, and the mount
 * table read (fd-fuse.h). Once per process, before the first fd_closer_close() that must not
 * block. Its thread starts with the first fd that needs it: a process that never gets one stays
 * single-threaded (an idle second thread costs glibc's multi-threaded syscall path, ~250
 * instructions a request: BENCHMARKS.md). One that cannot start leaves that fd open. */
int fd_closer_start(void);

/* Closes what is queued, then ends the thread, waiting at most timeout_usec for that: at a
 * clean exit, so that nothing of it is left. From then on fd_closer_close() closes at once. A
 * thread a close holds past the timeout is left running, as before. */
void fd_closer_stop(uint64_t timeout_usec);
/* What tsmd's processes give it at their exit. */
#define FD_CLOSER_STOP_USEC (1000U * 1000U)

/* Closes fd (if >= 0), which peer passed, through the closer if its close may wait on a FUSE
 * server, at once otherwise or where none runs. Returns -EBADF, as safe_close(). */
int fd_closer_close_for(int fd, uid_t peer);
void fd_closer_close_many_for(int *fds, size_t n, uid_t peer);

/* Closes fd, a socket whose receive queue may hold fds a peer sent (a worker's channel), on the
 * thread whatever it is: the socket's release drops the fds still queued, and the last
 * reference to a file of a FUSE file system may wait on its server as it goes (fuse_release()
 * writes a writeback-cached inode back first), on the thread that closed the socket. Where no
 * closer runs, at once. Returns -EBADF. */
int fd_closer_close_socket(int fd);

/* The same for a client's connection, counted under peer: shut down first (nothing more can be
 * queued, and the peer sees the hang-up at once), it closes at once if no fds are queued on it
 * (as every connection whose input was read to its end, or that holds bytes only: the kernel
 * tells how many fds, where it does, see fd-closer.c). Fds queued are received and closed as
 * fd_closer_close_for()'s, only those whose close may wait on the thread, and then the socket
 * at once; up to bounds on that work (a few hundred fds and reads: fd-closer.c), past which the
 * socket goes to the thread with the rest. Whatever peer has waiting already: closing it here
 * could hang the caller, leaving it open would leak it; the caller bounds how many such sockets
 * come (varlink-listen.c). Returns -EBADF. */
int fd_closer_close_socket_for(int fd, uid_t peer);

/* A client's connection not handed on yet, and its peer once known (FD_CLOSER_PEER_NONE until
 * then): closed as fd_closer_close_socket_for(), counted under that peer. */
typedef struct ClientSocket {
        int fd;
        uid_t peer;
} ClientSocket;
static inline void fd_closer_close_client_socketp(ClientSocket *s) {
        s->fd = fd_closer_close_socket_for(s->fd, s->peer);
}
#define _cleanup_close_client_socket_ _cleanup_(fd_closer_close_client_socketp)

/* The same for a process's one peer (the monitor's worker, the worker's monitor), or a peer
 * unknown: counted together. */
#define FD_CLOSER_PEER_NONE ((uid_t) -1)
static inline int fd_closer_close(int fd) {
        return fd_closer_close_for(fd, FD_CLOSER_PEER_NONE);
}
static inline void fd_closer_close_many(int *fds, size_t n) {
        fd_closer_close_many_for(fds, n, FD_CLOSER_PEER_NONE);
}

static inline void fd_closer_closep(int *fd) {
        *fd = fd_closer_close(*fd);
}
#define _cleanup_close_peer_ _cleanup_(fd_closer_closep)

/* Whether more than max_per_peer of peer's fds wait to be closed, or more than a quarter of what
 * the queue has room for (RLIMIT_NOFILE at the start) of everybody's: a close some file system
 * holds, with the fds behind it. Until that is over, a process should take no more fds from
 * that peer, lest they fill its fd table; other peers' fds, up to the quarter, it may. (The
 * kernel drops fds a recvmsg() has no room for without a close, so without a FLUSH; but the last
 * reference to a file of a FUSE file system with the writeback cache waits on its server as it
 * goes, on the receiving thread: tsm-priv-batch.h.) */
bool fd_closer_congested(uid_t peer, unsigned max_per_peer);

/* The first half of that: whether more than max_per_peer of peer's own wait. Where
 * fd_closer_congested() says yes and this no, it is everybody's fds together: the peer is not to
 * blame. */
bool fd_closer_peer_congested(uid_t peer, unsigned max_per_peer);

/* Everybody's share: fd_closer_congested() says yes for every peer once more than this many wait
 * (a quarter of RLIMIT_NOFILE at the start). */
size_t fd_closer_share(void);

/* How many fds of everybody's wait to be closed (queued, or in a close that has not returned). */
size_t fd_closer_n_waiting_all(void);

/* The peer with the most fds waiting, and in *ret_n how many (FD_CLOSER_PEER_NONE and 0:
 * nobody's). For logs: it walks every peer. */
uid_t fd_closer_top_peer(size_t *ret_n);

/* How many of peer's fds wait to be closed: queued, or in a close that has not returned; and every
 * fd left open because it could not be queued (no thread, no room), which never closes. A process
 * that must bound what it holds so takes no more of that peer's fds than the difference (the
 * monitor: monitor-dispatch.c). */
size_t fd_closer_n_waiting(uid_t peer);

/* Waits until every fd handed over so far is closed: 0, or -ETIMEDOUT (a close still waits on
 * its file system). For tests, which count fds. */
int fd_closer_wait_idle(uint64_t timeout_usec);
