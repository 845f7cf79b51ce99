/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Peer identity of a Varlink client: SO_PEERCRED, SO_PEERGROUPS, and the systemd unit of the
 * peer read by pid but verified through a pidfd, so that a pid reused by another process can
 * never lend its unit to the client. Runs in: the worker.
 */

#include <signal.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <systemd/sd-login.h>

#include "macro.h"
#include "peer-identity.h"

/* FIXME: remove once the build headers are Linux >= 6.5 (Debian 12 ships 6.1 headers). */
#ifndef SO_PEERPIDFD
#if defined(__sparc__)
#define SO_PEERPIDFD 0x0056
#elif defined(__hppa__)
#define SO_PEERPIDFD 0x404B
#else
#define SO_PEERPIDFD 77 /* asm-generic, also alpha, mips, powerpc */
#endif
#endif

/* FIXME: remove once the build headers are Linux >= 6.9. */
#ifndef PID_FS_MAGIC
#define PID_FS_MAGIC 0x50494446
#endif

/* SO_PEERGROUPS can report at most NGROUPS_MAX (65536) groups; do not grow beyond. */
#define PEER_GROUPS_MAX 65536U

void peer_identity_done(PeerIdentity *id) {
        if (!id)
                return;

        free(id->groups);
        free(id->unit);
        free(id->user_unit);
        free(id->cgroup);
        *id = PEER_IDENTITY_NULL;
}

bool peer_identity_in_group(const PeerIdentity *id, gid_t gid) {
        if (!id || gid == GID_INVALID)
                return false;
        if (id->gid == gid)
                return true;
        for (size_t i = 0; i < id->n_groups; i++)
                if (id->groups[i] == gid)
                        return true;
        return false;
}

static int get_peer_groups(int fd, gid_t **ret, size_t *ret_n) {
        socklen_t want = 64 * sizeof(gid_t);

        for (;;) {
                _cleanup_free_ gid_t *groups = NULL;
                socklen_t len = want;

                groups = malloc(want);
                if (!groups)
                        return -ENOMEM;

                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) >= 0) {
                        if (len % sizeof(gid_t) != 0)
                                return -EIO;
                        *ret_n = len / sizeof(gid_t);
                        *ret = *ret_n > 0 ? TAKE_PTR(groups) : NULL;
                        return 0;
                }
                if (errno == ENOPROTOOPT) {
                        /* FIXME: remove once kernel 4.13 is baseline. Without the list, Groups=
                         * can only match the primary gid: a denial, never a false grant. */
                        *ret = NULL;
                        *ret_n = 0;
                        return 0;
                }
                if (errno != ERANGE)
                        return negative_errno();

                /* The kernel wrote the size it needs into len. Insist on progress. */
                if (len <= want || len > PEER_GROUPS_MAX * sizeof(gid_t))
                        return -EIO;
                want = len;
        }
}

/*
 * A pidfd for the peer, or -ESRCH when the peer's process is gone (or was never visible).
 * SO_PEERPIDFD refers to exactly the process that connected. Where the kernel lacks it,
 * pidfd_open(pid) is the best there is: it is only racy against a pid reuse between the
 * peer's exit and this call, which needs the whole pid space to wrap in that window.
 */
static int get_peer_pidfd(int fd, pid_t pid, PeerIdentityFlags flags) {
        int pidfd;

        if (!(flags & PEER_IDENTITY_NO_PEERPIDFD)) {
                socklen_t len = sizeof(pidfd);

                pidfd = -EBADF;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) >= 0) {
                        if (len != sizeof(pidfd) || pidfd < 0) {
                                if (pidfd >= 0)
                                        safe_close(pidfd);
                                return -EIO;
                        }
                        return pidfd;
                }
                /* SECURITY: only "option unknown" may fall back to the pid. Any other error
                 * (EINVAL/ESRCH: the peer was reaped) means the pid may already name someone
                 * else, so there must be no second attempt by pid. */
                if (errno == EINVAL || errno == ESRCH || errno == ENODATA)
                        return -ESRCH;
                if (errno != ENOPROTOOPT)
                        return negative_errno();
        }

        /* FIXME: remove the pidfd_open() fallback once kernel 6.5 is baseline. */
        if (pid <= 0)
                return -ESRCH;
        pidfd = pidfd_open(pid, 0);
        if (pidfd < 0) {
                if (errno == ESRCH)
                        return -ESRCH;
                /* ENOSYS (kernel < 5.3) or a seccomp filter: nothing to verify with. */
                if (errno == ENOSYS || errno == EPERM)
                        return -EOPNOTSUPP;
                return negative_errno();
        }
        return pidfd;
}

int pidfd_is_alive(int pidfd) {
        if (pidfd < 0)
                return -EBADF;

        /* Signal 0 checks existence (and permission) without sending anything. The kernel looks
         * the process up before it checks permission, so EPERM still proves it exists: the
         * unprivileged worker gets EPERM for every peer of another uid. A zombie counts as
         * alive, correctly: its pid cannot be reused before it is reaped. */
        if (pidfd_send_signal(pidfd, 0, NULL, 0) >= 0)
                return 1;
        if (errno == EPERM)
                return 1;
        if (errno == ESRCH)
                return 0;
        return negative_errno();
}

uint64_t pidfd_get_pidfs_id(int pidfd) {
        struct statfs sfs;
        struct stat st;

        /* Before pidfs (6.9) every pidfd is the one anonymous inode; a 32-bit kernel's pidfs
         * inode numbers wrap (a 64-bit process runs on a 64-bit kernel only). */
        if (pidfd < 0 || sizeof(long) < sizeof(uint64_t))
                return 0;
        if (fstatfs(pidfd, &sfs) < 0 || (uint64_t) sfs.f_type != PID_FS_MAGIC)
                return 0;
        if (fstat(pidfd, &st) < 0)
                return 0;
        return (uint64_t) st.st_ino;
}

bool peer_identity_same_process(const PeerIdentity *a, const PeerIdentity *b) {
        if (!a || !b || a->uid != b->uid)
                return false;
        if (a->pidfs_id != 0 && b->pidfs_id != 0)
                return a->pidfs_id == b->pidfs_id;
        /* SECURITY: SO_PEERCRED reports pid 0 for every peer in a PID namespace we cannot see
         * (tsmd in a container): equal zeros say nothing about which process it is. */
        return a->pid > 0 && a->pid == b->pid;
}

bool peer_identity_may_be_same_process(const PeerIdentity *a, const PeerIdentity *b) {
        if (!a || !b || a->uid != b->uid)
                return false;
        /* Neither a pidfs id nor a pid: nothing tells this process from another of its uid. */
        if ((a->pidfs_id == 0 && a->pid <= 0) || (b->pidfs_id == 0 && b->pid <= 0))
                return true;
        return peer_identity_same_process(a, b);
}

/* libsystemd lookups: ENOMEM is an error, any other failure means "not known". */
static int lookup_or_null(int (*func)(pid_t, char **), pid_t pid, char **ret) {
        char *s = NULL;
        int r;

        r = func(pid, &s);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                s = mfree(s);
        *ret = s;
        return 0;
}

int peer_identity_read_unit(pid_t pid, int pidfd, char **ret_unit, char **ret_user_unit,
                            char **ret_cgroup) {
        _cleanup_free_ char *unit = NULL, *user_unit = NULL, *cgroup = NULL;
        int r;

        /* SECURITY: pid 0 means "myself" to sd_pid_get_*(): never let a peer in a foreign PID
         * namespace (SO_PEERCRED reports pid 0 for it) inherit tsmd's own unit. */
        if (pid > 0 && pidfd >= 0) {
                r = lookup_or_null(sd_pid_get_unit, pid, &unit);
                if (r < 0)
                        return r;
                r = lookup_or_null(sd_pid_get_user_unit, pid, &user_unit);
                if (r < 0)
                        return r;
                r = lookup_or_null(sd_pid_get_cgroup, pid, &cgroup);
                if (r < 0)
                        return r;

                /* SECURITY: the reads above went by pid. They describe the peer only if the
                 * pidfd's process was never reaped meanwhile, i.e. the pid was never free to be
                 * reused. If that cannot be shown, the unit is unknown, not "probably right". */
                if (pidfd_is_alive(pidfd) <= 0) {
                        unit = mfree(unit);
                        user_unit = mfree(user_unit);
                        cgroup = mfree(cgroup);
                }
        }

        if (ret_unit)
                *ret_unit = TAKE_PTR(unit);
        if (ret_user_unit)
                *ret_user_unit = TAKE_PTR(user_unit);
        if (ret_cgroup)
                *ret_cgroup = TAKE_PTR(cgroup);
        return 0;
}

int peer_identity_from_socket_full(int fd, PeerIdentityFlags flags, PeerIdentity *ret) {
        _cleanup_(peer_identity_done) PeerIdentity id = PEER_IDENTITY_NULL;
        _cleanup_close_ int pidfd = -EBADF;
        struct ucred ucred = {};
        socklen_t len;
        int domain, r;

        assert_return(fd >= 0, -EBADF);
        assert_return(ret, -EINVAL);

        len = sizeof(domain);
        if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
                return negative_errno();
        if (domain != AF_UNIX)
                return -EAFNOSUPPORT;

        len = sizeof(ucred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &ucred, &len) < 0)
                return negative_errno();
        if (len != sizeof(ucred))
                return -EIO;
        /* An unconnected socket has no peer credentials: the kernel reports uid/gid -1. */
        if (ucred.uid == UID_INVALID || ucred.gid == GID_INVALID)
                return -ENOTCONN;

        id.uid = ucred.uid;
        id.gid = ucred.gid;
        id.pid = ucred.pid > 0 ? ucred.pid : 0;

        r = get_peer_groups(fd, &id.groups, &id.n_groups);
        if (r < 0)
                return r;

        pidfd = get_peer_pidfd(fd, id.pid, flags);
        if (pidfd == -ENOMEM || pidfd == -EMFILE || pidfd == -ENFILE)
                return pidfd;
        /* Any other failure leaves pidfd negative, and read_unit() then reports no unit. */
        id.pidfs_id = pidfd_get_pidfs_id(pidfd);

        r = peer_identity_read_unit(id.pid, pidfd, &id.unit, &id.user_unit, &id.cgroup);
        if (r < 0)
                return r;

        *ret = id;
        id = PEER_IDENTITY_NULL;
        return 0;
}

int peer_identity_from_socket(int fd, PeerIdentity *ret) {
        return peer_identity_from_socket_full(fd, 0, ret);
}
