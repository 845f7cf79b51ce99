/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Who is on the other end of an AF_UNIX socket: uid, gid and pid as the kernel recorded them
 * at connect() time (SO_PEERCRED), those of its supplementary groups (SO_PEERGROUPS) that the
 * caller asks about, and the systemd unit and cgroup of that process. The unit is read by pid,
 * which is only meaningful while the pid still names the process that connected, so it is read
 * through a pidfd and dropped whenever that cannot be proven (see peer_identity_read_unit()).
 *
 * Runs in: worker (unprivileged; no capability is needed for any of this).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifndef UID_INVALID
#define UID_INVALID ((uid_t) -1)
#endif
#ifndef GID_INVALID
#define GID_INVALID ((gid_t) -1)
#endif

/* gids in ascending order, without duplicates: the groups a PeerIdentity is asked about (the
 * policy's Groups=, policy_groups_of_interest()). A peer may be in 65536 groups, 256 KiB kept for
 * as long as its connection lasts; an identity keeps those of this set only. */
typedef struct GidSet {
        gid_t *gids;
        size_t n;
} GidSet;

bool gid_set_contains(const GidSet *s, gid_t gid);
/* Whether every gid of a is in b (a NULL set is empty). */
bool gid_set_is_subset(const GidSet *a, const GidSet *b);

typedef struct PeerIdentity {
        uid_t uid;        /* effective uid at connect() time */
        gid_t gid;        /* effective gid at connect() time */
        pid_t pid;        /* 0 if the peer lives in a PID namespace we cannot see */
        uint64_t pidfs_id; /* the process's inode number on pidfs: unique for the boot and known
                            * whatever the PID namespace; 0 if not known (no pidfs, kernel
                            * < 6.9, or a 32-bit kernel, whose numbers wrap) */
        gid_t *groups;    /* supplementary groups at connect() time, of those in the GidSet the
                           * identity was read with (peer_identity_from_socket()): no others */
        size_t n_groups;
        char *unit;       /* system unit ("vm-web1.service", "machine-qemu\x2d1.scope"), or NULL
                           * when the process is in no unit or its unit could not be verified */
        char *user_unit;  /* unit inside a per-user manager, or NULL. Informational (audit)
                           * only: its name is chosen by the unprivileged user, so the policy
                           * never matches on it. */
        char *cgroup;     /* cgroup path, or NULL when unknown/unverified */
} PeerIdentity;

#define PEER_IDENTITY_NULL                                                                         \
        ((PeerIdentity){ .uid = UID_INVALID, .gid = GID_INVALID, .pid = 0 })

/*
 * Fills *ret with the identity of the peer of the connected AF_UNIX socket fd, keeping of its
 * supplementary groups those in groups_of_interest (NULL: none).
 *
 * Returns 0 on success; *ret must be released with peer_identity_done(). Errors:
 *   -EBADF, -ENOTSOCK   fd is not a socket;
 *   -EAFNOSUPPORT       not an AF_UNIX socket;
 *   -ENOTCONN           no peer credentials (socket not connected);
 *   -ENOMEM, -EMFILE    resource shortage.
 * A peer whose unit cannot be determined is not an error: unit/cgroup are NULL.
 */
int peer_identity_from_socket(int fd, const GidSet *groups_of_interest, PeerIdentity *ret);

/*
 * The identity of a signal's sender, as the kernel reported it (signal-source.h): pid and real
 * uid, and the unit and cgroup of that pid, read only while a pidfd shows the pid was not reused
 * meanwhile and only from a process running as uid (which the sender may no longer be, having
 * exited: then none). gid is GID_INVALID (a signal does not say it), no groups. pid 0 or uid
 * UID_INVALID: no process is looked at. Returns 0 (*ret to release with peer_identity_done()),
 * or -ENOMEM/-EMFILE/-ENFILE.
 */
int peer_identity_from_signal(pid_t pid, uid_t uid, PeerIdentity *ret);

/* peer_identity_from_signal() for a SIGHUP, with the line the monitor and the worker log of its
 * sender ("Received SIGHUP from pid ..." and then tail: "." or why it does nothing); a failed
 * look-up is logged and leaves *ret with pid and uid alone. Always fills *ret. */
void peer_identity_of_sighup_sender(pid_t pid, uid_t uid, const char *tail, PeerIdentity *ret);

/* For other groups of interest (a reload's policy names others): reads the connect()-time groups
 * again from fd, the socket id was read from, which keeps them, and keeps those in
 * groups_of_interest. Returns 0, or -errno with *id unchanged. */
int peer_identity_reread_groups(PeerIdentity *id, int fd, const GidSet *groups_of_interest);

/* Keeps only the groups in groups_of_interest, which must be a subset of the set the identity
 * was read with (gid_set_is_subset()): what it keeps is there already, so the socket need not be
 * asked again. Cannot fail. */
void peer_identity_narrow_groups(PeerIdentity *id, const GidSet *groups_of_interest);

/* Frees the strings and the group array and resets *id to PEER_IDENTITY_NULL. NULL-safe. */
void peer_identity_done(PeerIdentity *id);

/* True if both identities are provably the same process (of the same uid): the same pidfs id
 * where both are known, else the same pid where both are known. A pid of 0 proves nothing (a
 * peer in a PID namespace we cannot see), so two such peers are never the same process. */
bool peer_identity_same_process(const PeerIdentity *a, const PeerIdentity *b);

/* True unless both identities are provably different processes: the same process, or, where
 * either has neither a pidfs id nor a pid (a peer in a PID namespace we cannot see, on a kernel
 * without pidfs), any process of the same uid. What counts a process's share errs this way: too
 * many counted is a limit reached early, too few a limit anyone passes. */
bool peer_identity_may_be_same_process(const PeerIdentity *a, const PeerIdentity *b);

/* True if gid is the peer's primary gid or one of its supplementary groups. For a gid outside
 * the groups of interest the identity was read with, only the primary gid counts. */
bool peer_identity_in_group(const PeerIdentity *id, gid_t gid);

/* Whether this kernel names a socket's peer by pidfd (SO_PEERPIDFD, Linux 6.5): 1, 0 if it does
 * not (a peer's unit is then read by pid, which a pid reuse may make another's: see
 * get_peer_pidfd()), or -errno if that cannot be told. */
int peer_identity_kernel_has_peerpidfd(void);

/* ---- lower-level pieces, exposed so the tests can drive each path on any kernel ---- */

typedef enum PeerIdentityFlags {
        /* Do not ask for SO_PEERPIDFD; behave as on kernels before 6.5 (pidfd_open(pid)). */
        PEER_IDENTITY_NO_PEERPIDFD = 1 << 0,
} PeerIdentityFlags;

int peer_identity_from_socket_full(int fd, PeerIdentityFlags flags, const GidSet *groups_of_interest,
                                   PeerIdentity *ret);

/*
 * Reads unit, user unit and cgroup of pid, then proves that pidfd still refers to a process
 * that has not been reaped (so pid cannot have been reused while we read). If that proof
 * fails, or pid/pidfd are invalid, all three results are NULL. Each ret_* may be NULL.
 * Returns 0, or -ENOMEM.
 */
int peer_identity_read_unit(pid_t pid, int pidfd, char **ret_unit, char **ret_user_unit,
                            char **ret_cgroup);

/* 1 if the process behind pidfd has not been reaped, 0 if it has, < 0 if that cannot be shown
 * (as on a kernel without fdinfo's word, when a seccomp filter or an LSM refuses the signal). */
int pidfd_is_alive(int pidfd);

/* The "Pid:" of /proc/self/fdinfo/<pidfd>: -1 once the process was reaped, 0 if it lives in a PID
 * namespace we cannot see. -EOPNOTSUPP where it does not tell a reaped process (Linux < 5.5,
 * which showed the old pid) or there is none (no /proc, not a pidfd). */
int pidfd_fdinfo_get_pid(int pidfd, pid_t *ret);

/* The pidfs id of the process behind pidfd (see PeerIdentity.pidfs_id), 0 if not known. */
uint64_t pidfd_get_pidfs_id(int pidfd);
