/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Peer identity of a Varlink client: SO_PEERCRED, SO_PEERGROUPS (those the caller asks about:
 * a peer may be in 65536), and the systemd unit of the peer read by pid but verified through a
 * pidfd, so that a pid reused by another process while it is read can never lend its unit to
 * the client (before Linux 6.5, one reused before the accept can: see get_peer_pidfd()).
 * Runs in: worker.
 */

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <systemd/sd-login.h>

#include "log.h"
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

bool gid_set_contains(const GidSet *s, gid_t gid) {
        size_t lo = 0, hi = s ? s->n : 0;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (s->gids[mid] == gid)
                        return true;
                if (s->gids[mid] < gid)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return false;
}

bool gid_set_is_subset(const GidSet *a, const GidSet *b) {
        size_t j = 0;

        for (size_t i = 0; a && i < a->n; i++) {
                while (b && j < b->n && b->gids[j] < a->gids[i])
                        j++;
                if (!b || j >= b->n || b->gids[j] != a->gids[i])
                        return false;
        }
        return true;
}

/* Writes to kept (where non-NULL) the gids of the sorted groups[] that are in interest, each
 * once, and returns how many there are: at most interest's, whatever copies the peer has. */
static size_t groups_intersect_sorted(const gid_t *groups, size_t n, const GidSet *interest, gid_t *kept) {
        size_t k = 0, j = 0;

        for (size_t i = 0; i < n && j < interest->n; i++) {
                while (j < interest->n && interest->gids[j] < groups[i])
                        j++;
                if (j < interest->n && interest->gids[j] == groups[i]) {
                        if (kept)
                                kept[k] = groups[i];
                        k++;
                        j++; /* a copy of groups[i] finds interest past it */
                }
        }
        return k;
}

/* The gids of groups[] that are in interest, in an array of just their number (NULL for none). */
static int groups_intersect(gid_t *groups, size_t n, const GidSet *interest, gid_t **ret, size_t *ret_n) {
        gid_t *kept = NULL;
        size_t k;

        /* The kernel's are sorted, but for how a user namespace maps them. */
        for (size_t i = 1; i < n; i++)
                if (groups[i - 1] > groups[i]) {
                        qsort(groups, n, sizeof(gid_t), cmp_gid);
                        break;
                }

        k = groups_intersect_sorted(groups, n, interest, NULL);
        if (k > 0) {
                kept = new(gid_t, k);
                if (!kept)
                        return -ENOMEM;
                (void) groups_intersect_sorted(groups, n, interest, kept);
        }
        *ret = kept;
        *ret_n = k;
        return 0;
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

static int read_groups_of_interest(int fd, const GidSet *interest, gid_t **ret, size_t *ret_n) {
        _cleanup_free_ gid_t *groups = NULL;
        size_t n;
        int r;

        /* Nothing asks about a group: no need to read them (up to 256 KiB) at all. */
        if (!interest || interest->n == 0) {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }

        r = get_peer_groups(fd, &groups, &n);
        if (r < 0)
                return r;
        return groups_intersect(groups, n, interest, ret, ret_n);
}

int peer_identity_reread_groups(PeerIdentity *id, int fd, const GidSet *groups_of_interest) {
        gid_t *groups;
        size_t n;
        int r;

        assert_return(id, -EINVAL);
        if (fd < 0)
                return -EBADF;

        r = read_groups_of_interest(fd, groups_of_interest, &groups, &n);
        if (r < 0)
                return r;
        free(id->groups);
        id->groups = groups;
        id->n_groups = n;
        return 0;
}

void peer_identity_narrow_groups(PeerIdentity *id, const GidSet *groups_of_interest) {
        gid_t *shrunk;
        size_t k = 0;

        if (!id)
                return;
        for (size_t i = 0; i < id->n_groups; i++)
                if (gid_set_contains(groups_of_interest, id->groups[i]))
                        id->groups[k++] = id->groups[i];
        if (k == id->n_groups)
                return;

        id->n_groups = k;
        if (k == 0) {
                id->groups = mfree(id->groups);
                return;
        }
        /* What is left is in place already; giving the rest back may fail, which costs only that. */
        shrunk = realloc(id->groups, k * sizeof(gid_t));
        if (shrunk)
                id->groups = shrunk;
}

/* Whether the effective uid of pid (the real one, if real), as its /proc/<pid>/status says (which
 * anyone may read), is uid: 1 or 0; -errno if that cannot be read. */
static int pid_has_uid(pid_t pid, uid_t uid, bool real) {
        char path[sizeof("/proc//status") + 11], line[256];
        int r = -ENODATA;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%i/status", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return negative_errno();
        while (fgets(line, sizeof(line), f)) {
                unsigned long ruid, euid;

                if (strncmp(line, "Uid:", 4) != 0)
                        continue;
                r = sscanf(line + 4, "%lu %lu", &ruid, &euid) == 2 ? (real ? ruid : euid) == (unsigned long) uid : -EIO;
                break;
        }
        if (r == -ENODATA && ferror(f))
                r = -EIO;
        fclose(f);
        return r;
}

/*
 * A pidfd for the peer, or -ESRCH when the peer's process is gone (or was never visible).
 * SO_PEERPIDFD refers to exactly the process that connected. Where the kernel lacks it,
 * pidfd_open(pid) is the best there is, and it is not proof: a client that exits between its
 * connect() and this call (tsmd's accept, which a flood of connections can hold back for as
 * long as it lasts) frees its pid, and the process that takes it next, of another unit, lends
 * this connection its unit. Nothing closes that window on those kernels: no interface tells
 * when the connection was made (to compare with the start time of the pidfd's process,
 * /proc/<pid>/stat's field 22), nor the process SO_PEERCRED's pid stood for then, and a start
 * time before the accept is what the pid's next holder may have too. What can be checked
 * narrows it: the process found must run as the uid the peer connected as, so that only a
 * process of the client's own uid lends it a unit. A rule that trusts Units= alone is still
 * unsafe there (policy_unit_only_rules(), warned of at each load); one with Users= or Groups=
 * too admits no uid or group it does not name, whichever unit a reuse lends.
 */
static int get_peer_pidfd(int fd, pid_t pid, uid_t uid, PeerIdentityFlags flags) {
        int pidfd, r;

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
        /* SECURITY: a process of another uid holds the pid: not the peer, whose uid SO_PEERCRED
         * gave, unless it changed uid since its connect(), which then costs it its unit. Read
         * after pidfd_open(): peer_identity_read_unit()'s liveness check, later, proves that it
         * was the pidfd's process. */
        r = pid_has_uid(pid, uid, false);
        if (r <= 0) {
                safe_close(pidfd);
                return r == -ENOMEM || r == -EMFILE || r == -ENFILE ? r : -ESRCH;
        }
        return pidfd;
}

int peer_identity_kernel_has_peerpidfd(void) {
        _cleanup_close_ int a = -EBADF, b = -EBADF, pidfd = -EBADF;
        socklen_t len = sizeof(pidfd);
        int pair[2];

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
                return negative_errno();
        a = pair[0];
        b = pair[1];
        if (getsockopt(a, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) >= 0)
                return 1;
        return errno == ENOPROTOOPT ? 0 : negative_errno();
}

int pidfd_fdinfo_get_pid(int pidfd, pid_t *ret) {
        char path[sizeof("/proc/self/fdinfo/") + 11], buf[4096];
        _cleanup_close_ int fd = -EBADF;
        bool have_pid = false, have_nspid = false;
        long long pid = 0;
        size_t n = 0;

        if (pidfd < 0)
                return -EBADF;
        snprintf(path, sizeof(path), "/proc/self/fdinfo/%i", pidfd);
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return errno == ENOENT ? -EOPNOTSUPP : negative_errno(); /* no /proc */
        for (;;) {
                ssize_t k = read(fd, buf + n, sizeof(buf) - 1 - n);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return negative_errno();
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n == sizeof(buf) - 1) /* a pidfd's is a few lines: not one */
                        return -EIO;
        }
        buf[n] = 0;

        for (const char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
                if (strncmp(line, "NSpid:", 6) == 0)
                        have_nspid = true;
                else if (strncmp(line, "Pid:", 4) == 0) {
                        char *end;

                        errno = 0;
                        pid = strtoll(line + 4, &end, 10);
                        if (errno != 0 || end == line + 4 || (*end != '\n' && *end != 0) || pid < -1 ||
                            pid > INT_MAX)
                                return -EIO;
                        have_pid = true;
                }
        }
        /* Not a pidfd; or Linux < 5.5, which went on showing a reaped process's old pid. The
         * "-1" for a reaped process came in the release that brought NSpid (with
         * CONFIG_PID_NS, which every distribution sets): without NSpid, Pid proves nothing. */
        if (!have_pid || !have_nspid)
                return -EOPNOTSUPP;
        *ret = (pid_t) pid;
        return 0;
}

int pidfd_is_alive(int pidfd) {
        struct pollfd p = { .fd = pidfd, .events = POLLIN };
        pid_t pid;
        int r;

        if (pidfd < 0)
                return -EBADF;

        /* SECURITY: nothing here may take "not allowed" for "exists". A pidfd polls readable once
         * the process exited: until then it cannot have been reaped, and poll() asks no
         * permission over the process. A zombie counts as alive, correctly: its pid cannot be
         * reused before it is reaped. */
        r = poll(&p, 1, 0);
        if (r < 0)
                return negative_errno();
        if (r == 0)
                return 1;
        if (p.revents & POLLNVAL)
                return -EBADF;

        /* Exited: reaped or not, fdinfo tells, without permission either ("Pid: -1" once
         * reaped; 0 for a process in a PID namespace we cannot see, which still exists). */
        if (pidfd_fdinfo_get_pid(pidfd, &pid) >= 0)
                return pid >= 0;

        /* Without fdinfo's word (Linux < 5.5, no /proc): signal 0, which checks existence and
         * then permission. Only success and ESRCH prove anything: EPERM is the kernel's "not
         * yours" for a process of another uid, but just as well a seccomp filter's or an LSM's
         * refusal (the unit's SystemCallErrorNumber=EPERM), which says nothing about the
         * process. Not proven alive, the peer has no unit. */
        if (pidfd_send_signal(pidfd, 0, NULL, 0) >= 0)
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

/* What id's pid names beyond uid and gid, through pidfd (negative: none, so no unit): its pidfs
 * id, unit and cgroup. */
static int identity_read_process(PeerIdentity *id, int pidfd) {
        id->pidfs_id = pidfd_get_pidfs_id(pidfd);
        return peer_identity_read_unit(id->pid, pidfd, &id->unit, &id->user_unit, &id->cgroup);
}

int peer_identity_from_socket_full(int fd, PeerIdentityFlags flags, const GidSet *groups_of_interest,
                                   PeerIdentity *ret) {
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

        r = read_groups_of_interest(fd, groups_of_interest, &id.groups, &id.n_groups);
        if (r < 0)
                return r;

        pidfd = get_peer_pidfd(fd, id.pid, id.uid, flags);
        if (pidfd == -ENOMEM || pidfd == -EMFILE || pidfd == -ENFILE)
                return pidfd;
        /* Any other failure leaves pidfd negative, and read_unit() then reports no unit. */
        r = identity_read_process(&id, pidfd);
        if (r < 0)
                return r;

        *ret = id;
        id = PEER_IDENTITY_NULL;
        return 0;
}

int peer_identity_from_socket(int fd, const GidSet *groups_of_interest, PeerIdentity *ret) {
        return peer_identity_from_socket_full(fd, 0, groups_of_interest, ret);
}

void peer_identity_of_sighup_sender(pid_t pid, uid_t uid, const char *tail, PeerIdentity *ret) {
        int r;

        r = peer_identity_from_signal(pid, uid, ret);
        if (r < 0) {
                log_warning_errno(r, "Cannot look up the unit of SIGHUP's sender, pid %d: %m", (int) pid);
                *ret = PEER_IDENTITY_NULL;
                ret->pid = pid > 0 ? pid : 0;
                ret->uid = uid;
        }
        if (pid > 0)
                log_info("Received SIGHUP from pid %d (uid %u, unit '%s')%s", (int) pid, (unsigned) uid,
                         strna(ret->unit), tail);
        else
                log_info("Received SIGHUP from %s%s",
                         uid == UID_INVALID ? "the kernel, or a sigqueue() that names no sender the kernel vouches for"
                                            : "a process tsmd cannot see",
                         tail);
}

int peer_identity_from_signal(pid_t pid, uid_t uid, PeerIdentity *ret) {
        _cleanup_(peer_identity_done) PeerIdentity id = PEER_IDENTITY_NULL;
        _cleanup_close_ int pidfd = -EBADF;
        int r;

        assert_return(ret, -EINVAL);

        id.uid = uid;
        id.pid = pid > 0 ? pid : 0;
        if (id.pid > 0 && uid != UID_INVALID) {
                /* SECURITY: the sender may have exited as soon as it sent (kill(1) does), and its
                 * pid gone to another process since: only one running as the uid the signal came
                 * from (si_uid, the sender's real uid) may lend it its unit, and only if it is the
                 * pidfd's process all through the reads (peer_identity_read_unit()). One of that
                 * uid that took the pid can still lend its own: a hint, as the record says. */
                pidfd = pidfd_open(id.pid, 0);
                if (pidfd >= 0) {
                        r = pid_has_uid(id.pid, uid, true);
                        if (r == -ENOMEM)
                                return r;
                        if (r <= 0)
                                pidfd = safe_close(pidfd);
                } else if (errno == ENOMEM || errno == EMFILE || errno == ENFILE)
                        return negative_errno();
                r = identity_read_process(&id, pidfd);
                if (r < 0)
                        return r;
        }
        *ret = id;
        id = PEER_IDENTITY_NULL;
        return 0;
}
