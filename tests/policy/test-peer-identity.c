/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Peer identity over socketpairs and over a real listening socket: uid, gid, pid and
 * supplementary groups of ourselves and of a child that dropped to another uid/gid/groups, of
 * which an identity keeps those it is asked about (read again, narrowed), a peer in 65536 groups
 * costing no more;
 * the pidfd liveness gate (an exited or reaped peer, a pid that now names someone else, pid
 * 0; a seccomp filter refusing the signal; no fdinfo); which peers are, or may be, one process;
 * the unit and cgroup of a peer, both where we run inside a unit and, as root, in cgroups
 * made for the test. Each case runs with SO_PEERPIDFD and with the pidfd_open() fallback.
 * A getsockopt() of the test's own stands in for the kernel's where a test asks it to: groups
 * out of order, an ERANGE that makes no progress, SO_PEERPIDFD failing with other than
 * ENOPROTOOPT (which must never fall back to the pid).
 *
 * Runs in: tests. Cases that change uid or create cgroups need root and SKIP without it.
 */

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <linux/filter.h>
#include <linux/magic.h>
#include <linux/seccomp.h>
#include <malloc.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <systemd/sd-login.h>

#include "harness.h"
#include "macro.h"
#include "peer-identity.h"
#include "policy.h"

#define OTHER_UID 1500
#define OTHER_GID 1500
static gid_t other_groups[] = { 2001, 2002, 2003 }; /* sorted: also the set to read them with */
static const GidSet other_set = { other_groups, ELEMENTSOF(other_groups) };

static const PeerIdentityFlags flag_variants[] = { 0, PEER_IDENTITY_NO_PEERPIDFD };

/* FIXME: remove once the build headers are Linux >= 6.5 (as peer-identity.c). */
#ifndef SO_PEERPIDFD
#if defined(__sparc__)
#define SO_PEERPIDFD 0x0056
#elif defined(__hppa__)
#define SO_PEERPIDFD 0x404B
#else
#define SO_PEERPIDFD 77
#endif
#endif

/* What getsockopt() says for one option instead of the kernel, where a test sets it: a failure
 * with error (len left as it was, so ERANGE makes no progress), or, for SO_PEERGROUPS, the
 * groups in this order, ERANGE and the size they need where len is short. */
static struct {
        int option; /* 0: none faked */
        int error;
        const gid_t *groups;
        size_t n_groups;
        unsigned calls;
} fake_sockopt;

#define FAKE_SOCKOPT_CALLS_MAX 1000U

/* The library is linked in statically, so its calls reach this definition rather than libc's. */
int getsockopt(int fd, int level, int name, void *restrict value, socklen_t *restrict len) {
        if (level != SOL_SOCKET || fake_sockopt.option == 0 || name != fake_sockopt.option)
                return (int) syscall(SYS_getsockopt, fd, level, name, value, len);

        /* A caller that retries forever ends with an error of its own instead of hanging. */
        if (++fake_sockopt.calls > FAKE_SOCKOPT_CALLS_MAX) {
                errno = ELOOP;
                return -1;
        }
        if (fake_sockopt.error != 0) {
                errno = fake_sockopt.error;
                return -1;
        }
        if (*len < fake_sockopt.n_groups * sizeof(gid_t)) {
                *len = (socklen_t) (fake_sockopt.n_groups * sizeof(gid_t));
                errno = ERANGE;
                return -1;
        }
        memcpy(value, fake_sockopt.groups, fake_sockopt.n_groups * sizeof(gid_t));
        *len = (socklen_t) (fake_sockopt.n_groups * sizeof(gid_t));
        return 0;
}

static void fake_sockopt_set(int option, int error, const gid_t *groups, size_t n_groups) {
        fake_sockopt.option = option;
        fake_sockopt.error = error;
        fake_sockopt.groups = groups;
        fake_sockopt.n_groups = n_groups;
        fake_sockopt.calls = 0;
}

static void fake_sockopt_off(bool *armed) {
        if (*armed)
                fake_sockopt_set(0, 0, NULL, 0);
}
#define FAKE_SOCKOPT_GUARD _cleanup_(fake_sockopt_off) _unused_ bool _fake_sockopt_armed_ = true

static void identity_done(PeerIdentity *id) {
        peer_identity_done(id);
}

/* Can this system prove liveness through a pidfd? Not before Linux 5.3, under a seccomp
 * filter, or under valgrind 3.19, which knows neither pidfd_open() nor pidfd_send_signal(). */
static bool pidfd_works(void) {
        int fd = pidfd_open(getpid(), 0);
        bool ok = fd >= 0 && pidfd_send_signal(fd, 0, NULL, 0) >= 0;

        safe_close(fd);
        return ok;
}

/* What peer_identity_*() should report as our own unit or cgroup: the truth where it can be
 * verified, NULL (fail closed) where it cannot. */
static char *self_lookup(int (*func)(pid_t, char **)) {
        char *s = NULL;

        if (!pidfd_works() || func(getpid(), &s) < 0)
                return mfree(s);
        return s;
}

static bool streq_null(const char *a, const char *b) {
        return (!a && !b) || (a && b && streq(a, b));
}

/* Our supplementary groups, as a set to read our identity with (sorted, each once). */
static gid_t own_gids[256];
static GidSet own_groups(void) {
        int n = getgroups(ELEMENTSOF(own_gids), own_gids);
        size_t k = 0;

        ASSERT_GE(n, 0);
        qsort(own_gids, n, sizeof(gid_t), cmp_gid);
        for (int i = 0; i < n; i++)
                if (k == 0 || own_gids[k - 1] != own_gids[i])
                        own_gids[k++] = own_gids[i];
        return (GidSet){ own_gids, k };
}

/* id, read with own_groups(). */
static void check_is_self(const PeerIdentity *id) {
        _cleanup_free_ char *unit = self_lookup(sd_pid_get_unit);
        _cleanup_free_ char *cgroup = self_lookup(sd_pid_get_cgroup);
        GidSet groups = own_groups();

        ASSERT_EQ(id->uid, geteuid());
        ASSERT_EQ(id->gid, getegid());
        ASSERT_EQ(id->pid, getpid());

        ASSERT_EQ(id->n_groups, groups.n);
        for (size_t i = 0; i < groups.n; i++)
                ASSERT_TRUE(peer_identity_in_group(id, groups.gids[i]));

        /* Inside a unit we must find it; outside any unit (a container, a CI job without
         * systemd) it must be NULL, not some guess. */
        if (!streq_null(id->unit, unit))
                TEST_FAIL("unit '%s', expected '%s'", strna(id->unit), strna(unit));
        if (!streq_null(id->cgroup, cgroup))
                TEST_FAIL("cgroup '%s', expected '%s'", strna(id->cgroup), strna(cgroup));
}

TEST(socketpair_self) {
        for (size_t v = 0; v < ELEMENTSOF(flag_variants); v++) {
                _cleanup_(identity_done) PeerIdentity a = PEER_IDENTITY_NULL, b = PEER_IDENTITY_NULL;
                GidSet groups = own_groups();
                int fds[2];

                ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
                ASSERT_OK(peer_identity_from_socket_full(fds[0], flag_variants[v], &groups, &a));
                ASSERT_OK(peer_identity_from_socket_full(fds[1], flag_variants[v], &groups, &b));
                check_is_self(&a);
                check_is_self(&b);
                close_many(fds, 2);
        }
}

static char tmpdir[] = "/tmp/test-peer-identity-XXXXXX";
static char socket_path[sizeof(tmpdir) + 16];

/* The harness ends a test with _exit(), which skips atexit(): clean up when the test's scope
 * ends instead. Declare the guard before the listening socket. */
static void tmpdir_guard(bool *armed) {
        if (*armed && !strstr(tmpdir, "XXXXXX")) {
                (void) unlink(socket_path);
                (void) rmdir(tmpdir);
        }
}
#define TMPDIR_GUARD _cleanup_(tmpdir_guard) _unused_ bool _tmpdir_armed_ = true

/* A listening socket anyone may connect to, like /run/tsmd/io.tsmd. */
static int listen_socket(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        ASSERT_NOT_NULL(mkdtemp(tmpdir));
        ASSERT_OK(chmod(tmpdir, 0755));
        snprintf(socket_path, sizeof(socket_path), "%s/sock", tmpdir);
        strcpy(sa.sun_path, socket_path);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof(sa)));
        ASSERT_OK(chmod(socket_path, 0777));
        ASSERT_OK(listen(fd, 16));
        return fd;
}

static int connect_socket(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        strcpy(sa.sun_path, socket_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        return fd;
}

TEST(listening_socket_self) {
        TMPDIR_GUARD;
        _cleanup_close_ int lfd = listen_socket(), cfd = -EBADF, afd = -EBADF;

        cfd = connect_socket();
        ASSERT_OK(cfd);
        afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_OK(afd);

        for (size_t v = 0; v < ELEMENTSOF(flag_variants); v++) {
                _cleanup_(identity_done) PeerIdentity server_side = PEER_IDENTITY_NULL,
                                                      client_side = PEER_IDENTITY_NULL;
                GidSet groups = own_groups();

                ASSERT_OK(peer_identity_from_socket_full(afd, flag_variants[v], &groups, &server_side));
                check_is_self(&server_side);
                /* The client sees the listener's credentials (taken at listen()). */
                ASSERT_OK(peer_identity_from_socket_full(cfd, flag_variants[v], &groups, &client_side));
                check_is_self(&client_side);
        }
}

TEST(errors) {
        _cleanup_close_ int unconnected = -EBADF, inet = -EBADF;
        PeerIdentity id = PEER_IDENTITY_NULL;
        int pipefd[2];

        ASSERT_OK(pipe2(pipefd, O_CLOEXEC));
        ASSERT_ERRNO(peer_identity_from_socket(pipefd[0], NULL, &id), ENOTSOCK);
        close_many(pipefd, 2);

        inet = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_OK(inet);
        ASSERT_ERRNO(peer_identity_from_socket(inet, NULL, &id), EAFNOSUPPORT);

        unconnected = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_OK(unconnected);
        ASSERT_ERRNO(peer_identity_from_socket(unconnected, NULL, &id), ENOTCONN);

        ASSERT_ERRNO(peer_identity_from_socket(-1, NULL, &id), EBADF);
        /* ret untouched on failure */
        ASSERT_EQ(id.uid, UID_INVALID);
        ASSERT_NULL(id.groups);
}

TEST(in_group) {
        gid_t groups[] = { 10, 20 };
        PeerIdentity id = { .uid = 5, .gid = 7, .groups = groups, .n_groups = 2 };

        ASSERT_TRUE(peer_identity_in_group(&id, 7));
        ASSERT_TRUE(peer_identity_in_group(&id, 10));
        ASSERT_TRUE(peer_identity_in_group(&id, 20));
        ASSERT_FALSE(peer_identity_in_group(&id, 5));
        ASSERT_FALSE(peer_identity_in_group(&id, GID_INVALID));
        ASSERT_FALSE(peer_identity_in_group(NULL, 7));
}

/* ---- peers in child processes ---- */

static void send_fd(int channel, int fd) {
        char byte = 'x';
        struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof(control) };
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
        if (sendmsg(channel, &mh, MSG_NOSIGNAL) != 1)
                _exit(2);
}

static int recv_fd(int channel) {
        char byte;
        struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof(control) };
        struct cmsghdr *c;
        int fd;

        if (recvmsg(channel, &mh, MSG_CMSG_CLOEXEC) != 1)
                return -EIO;
        c = CMSG_FIRSTHDR(&mh);
        if (!c || c->cmsg_type != SCM_RIGHTS)
                return -EIO;
        memcpy(&fd, CMSG_DATA(c), sizeof(int));
        return fd;
}

typedef enum PeerHow {
        PEER_SOCKETPAIR, /* the child makes a socketpair and hands us one end */
        PEER_CONNECT,    /* the child connect()s to socket_path; we accept */
} PeerHow;

typedef struct Peer {
        pid_t pid;
        int channel; /* closing it lets the child exit */
        int fd;      /* our end of the connection to the child */
} Peer;

static void drop_to_other_user(void) {
        if (setgroups(ELEMENTSOF(other_groups), other_groups) < 0 ||
            setresgid(OTHER_GID, OTHER_GID, OTHER_GID) < 0 || setresuid(OTHER_UID, OTHER_UID, OTHER_UID) < 0)
                _exit(3);
}

static char *move_to_cgroup_path; /* for move_to_cgroup() */

static void move_to_cgroup(void) {
        char pid[32];
        int fd, n;

        n = snprintf(pid, sizeof(pid), "%d", (int) getpid());
        fd = open(move_to_cgroup_path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, pid, (size_t) n) != n)
                _exit(4);
        close(fd);
}

/* Starts a child that runs setup() and then becomes our peer, running connected() once it is,
 * before we accept. lfd: listener for PEER_CONNECT. */
static Peer spawn_peer_full(PeerHow how, int lfd, void (*setup)(void), void (*connected)(void)) {
        int channel[2];
        Peer peer;

        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, channel));
        fflush(NULL);
        peer.pid = fork();
        ASSERT_OK(peer.pid);

        if (peer.pid == 0) {
                char byte;
                int fd, pair[2];

                close(channel[0]);
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (setup)
                        setup();

                if (how == PEER_SOCKETPAIR) {
                        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
                                _exit(5);
                        send_fd(channel[1], pair[0]);
                } else {
                        fd = connect_socket();
                        if (fd < 0)
                                _exit(6);
                        if (connected)
                                connected();
                        if (write(channel[1], "c", 1) != 1)
                                _exit(7);
                }

                /* Stay alive (keeping the pid) until the parent is done. */
                while (read(channel[1], &byte, 1) > 0)
                        ;
                _exit(0);
        }

        close(channel[1]);
        peer.channel = channel[0];
        if (how == PEER_SOCKETPAIR)
                peer.fd = recv_fd(peer.channel);
        else {
                char byte;

                ASSERT_EQ(read(peer.channel, &byte, 1), 1);
                peer.fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        }
        ASSERT_OK(peer.fd);
        return peer;
}

static Peer spawn_peer(PeerHow how, int lfd, void (*setup)(void)) {
        return spawn_peer_full(how, lfd, setup, NULL);
}

/* Lets the child exit and reaps it; returns its exit status. */
static int finish_peer(Peer *peer) {
        int status;

        peer->channel = safe_close(peer->channel);
        peer->fd = safe_close(peer->fd);
        ASSERT_EQ(waitpid(peer->pid, &status, 0), peer->pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void check_is_other_user(const PeerIdentity *id, pid_t pid) {
        ASSERT_EQ(id->uid, OTHER_UID);
        ASSERT_EQ(id->gid, OTHER_GID);
        ASSERT_EQ(id->pid, pid);
        ASSERT_EQ(id->n_groups, ELEMENTSOF(other_groups));
        for (size_t i = 0; i < ELEMENTSOF(other_groups); i++)
                ASSERT_TRUE(peer_identity_in_group(id, other_groups[i]));
        ASSERT_TRUE(peer_identity_in_group(id, OTHER_GID));
        ASSERT_FALSE(peer_identity_in_group(id, 0));
}

TEST(other_user_with_supplementary_groups) {
        TMPDIR_GUARD;
        _cleanup_close_ int lfd = -EBADF;
        _cleanup_free_ char *cgroup = self_lookup(sd_pid_get_cgroup);

        if (geteuid() != 0)
                SKIP("needs root to run a peer as another uid/gid with supplementary groups");

        lfd = listen_socket();

        for (PeerHow how = PEER_SOCKETPAIR; how <= PEER_CONNECT; how++)
                for (size_t v = 0; v < ELEMENTSOF(flag_variants); v++) {
                        _cleanup_(identity_done) PeerIdentity id = PEER_IDENTITY_NULL;
                        Peer peer = spawn_peer(how, lfd, drop_to_other_user);

                        ASSERT_OK(peer_identity_from_socket_full(peer.fd, flag_variants[v], &other_set, &id));
                        check_is_other_user(&id, peer.pid);
                        /* Same cgroup as ours: the child never moved. */
                        if (!streq_null(id.cgroup, cgroup))
                                TEST_FAIL("cgroup '%s', expected '%s'", strna(id.cgroup), strna(cgroup));
                        ASSERT_EQ(finish_peer(&peer), 0);
                }
}

#define DEV "0000:01:00.0"
#define EMU TSM_BACKEND_EMULATED

TEST(policy_end_to_end) {
        TMPDIR_GUARD;
        _cleanup_(policy_unrefp) Policy *p = NULL;
        _cleanup_free_ char *error = NULL;
        _cleanup_close_ int lfd = -EBADF;
        /* Matches only through a supplementary group the peer got from setgroups(). */
        const PolicySource src = {
                "e2e.conf",
                "[Client:by-group]\nUsers=1500\nGroups=2003\nDevices=0000:01:00.0\nScopes=info debug-read\n"
                "[Client:root-needs-a-rule]\nUsers=0\nGroups=2003\nDevices=*\n",
        };

        if (geteuid() != 0)
                SKIP("needs root to run a peer as another uid/gid with supplementary groups");

        ASSERT_OK(policy_load_from_text(&src, 1, &p, &error));
        lfd = listen_socket();

        for (size_t v = 0; v < ELEMENTSOF(flag_variants); v++) {
                _cleanup_(identity_done) PeerIdentity other = PEER_IDENTITY_NULL, self = PEER_IDENTITY_NULL;
                Peer peer = spawn_peer(PEER_CONNECT, lfd, drop_to_other_user);
                const char *reason = NULL;

                ASSERT_OK(peer_identity_from_socket_full(peer.fd, flag_variants[v], policy_groups_of_interest(p),
                                                         &other));
                ASSERT_OK(policy_check_scope(p, &other, DEV, EMU, "debug-read", &reason));
                ASSERT_STREQ(policy_get_rule_name(p, &other, DEV, EMU, "debug-read"), "by-group");
                ASSERT_ERRNO(policy_check_scope(p, &other, DEV, EMU, "debug-write", &reason), EPERM);
                ASSERT_STREQ(reason, "scope 'debug-write' not granted");
                ASSERT_FALSE(policy_is_admin(p, &other));
                ASSERT_EQ(finish_peer(&peer), 0);

                /* We are root, but not in group 2003: root gets no device without a rule. */
                peer = spawn_peer(PEER_CONNECT, lfd, NULL);
                ASSERT_OK(peer_identity_from_socket_full(peer.fd, flag_variants[v], policy_groups_of_interest(p),
                                                         &self));
                ASSERT_EQ(self.uid, 0);
                ASSERT_ERRNO(policy_check_device(p, &self, DEV, EMU, &reason), EPERM);
                ASSERT_STREQ(reason, "no policy rule matches the client");
                ASSERT_TRUE(policy_is_admin(p, &self));
                ASSERT_EQ(finish_peer(&peer), 0);
        }
}

TEST(gid_sets) {
        gid_t a[] = { 3, 7, 9 }, b[] = { 1, 3, 7, 9, 12 }, c[] = { 3, 8 };
        const GidSet sa = { a, ELEMENTSOF(a) }, sb = { b, ELEMENTSOF(b) }, sc = { c, ELEMENTSOF(c) }, empty = {};

        for (gid_t g = 0; g < 14; g++)
                ASSERT_EQ(gid_set_contains(&sb, g), g == 1 || g == 3 || g == 7 || g == 9 || g == 12);
        ASSERT_FALSE(gid_set_contains(&empty, 3));
        ASSERT_FALSE(gid_set_contains(NULL, 3));

        ASSERT_TRUE(gid_set_is_subset(&sa, &sb));
        ASSERT_TRUE(gid_set_is_subset(&sa, &sa));
        ASSERT_FALSE(gid_set_is_subset(&sb, &sa));
        ASSERT_FALSE(gid_set_is_subset(&sc, &sb)); /* 8 is not in sb */
        ASSERT_TRUE(gid_set_is_subset(&empty, &sa));
        ASSERT_TRUE(gid_set_is_subset(NULL, NULL));
        ASSERT_FALSE(gid_set_is_subset(&sa, NULL));
        ASSERT_FALSE(gid_set_is_subset(&sa, &empty));
}

/* A peer's supplementary groups are kept as far as something asks about them: those of the set
 * the identity is read with; read again, for another set, from the socket, which keeps those of
 * connect() time even once the peer is gone; narrowed to a subset without asking it. The primary
 * gid always counts. */
TEST(only_the_groups_of_interest_are_kept) {
        TMPDIR_GUARD;
        _cleanup_close_ int lfd = -EBADF;
        gid_t some[] = { 2002, 9999 }, others[] = { 2001, 2003 }, last[] = { 2003 };
        const GidSet some_set = { some, ELEMENTSOF(some) }, others_set = { others, ELEMENTSOF(others) },
                     last_set = { last, ELEMENTSOF(last) };

        if (geteuid() != 0)
                SKIP("needs root to run a peer as another uid/gid with supplementary groups");

        lfd = listen_socket();

        for (size_t v = 0; v < ELEMENTSOF(flag_variants); v++) {
                _cleanup_(identity_done) PeerIdentity none = PEER_IDENTITY_NULL, id = PEER_IDENTITY_NULL;
                Peer peer = spawn_peer(PEER_CONNECT, lfd, drop_to_other_user);
                int status;

                ASSERT_OK(peer_identity_from_socket_full(peer.fd, flag_variants[v], NULL, &none));
                ASSERT_EQ(none.n_groups, 0);
                ASSERT_NULL(none.groups);
                ASSERT_TRUE(peer_identity_in_group(&none, OTHER_GID));

                ASSERT_OK(peer_identity_from_socket_full(peer.fd, flag_variants[v], &some_set, &id));
                ASSERT_EQ(id.n_groups, 1);
                ASSERT_TRUE(peer_identity_in_group(&id, 2002));
                ASSERT_FALSE(peer_identity_in_group(&id, 9999));
                ASSERT_TRUE(peer_identity_in_group(&id, OTHER_GID));

                /* The peer goes; its socket keeps its groups. */
                peer.channel = safe_close(peer.channel);
                ASSERT_EQ(waitpid(peer.pid, &status, 0), peer.pid);
                ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

                ASSERT_OK(peer_identity_reread_groups(&id, peer.fd, &others_set));
                ASSERT_EQ(id.n_groups, 2);
                ASSERT_TRUE(peer_identity_in_group(&id, 2001));
                ASSERT_TRUE(peer_identity_in_group(&id, 2003));
                ASSERT_FALSE(peer_identity_in_group(&id, 2002));

                peer_identity_narrow_groups(&id, &last_set);
                ASSERT_EQ(id.n_groups, 1);
                ASSERT_TRUE(peer_identity_in_group(&id, 2003));
                ASSERT_FALSE(peer_identity_in_group(&id, 2001));
                peer_identity_narrow_groups(&id, NULL);
                ASSERT_EQ(id.n_groups, 0);
                ASSERT_NULL(id.groups);
                ASSERT_TRUE(peer_identity_in_group(&id, OTHER_GID));

                /* A failure changes nothing. */
                ASSERT_OK(peer_identity_reread_groups(&id, peer.fd, &others_set));
                ASSERT_ERRNO(peer_identity_reread_groups(&id, -EBADF, &some_set), EBADF);
                ASSERT_EQ(id.n_groups, 2);
                ASSERT_TRUE(peer_identity_in_group(&id, 2001));
                peer.fd = safe_close(peer.fd);
        }
}

#define MANY_GROUPS 65536U /* NGROUPS_MAX */
static gid_t many_groups[MANY_GROUPS];

static void drop_to_many_groups(void) {
        if (setgroups(MANY_GROUPS, many_groups) < 0 || setresgid(OTHER_GID, OTHER_GID, OTHER_GID) < 0 ||
            setresuid(OTHER_UID, OTHER_UID, OTHER_UID) < 0)
                _exit(3);
}

/* An identity costs the bytes of the groups it is asked about, which tsmd holds for as long as the
 * connection lasts: not 256 KiB for a peer in 65536 groups (as a rootless container's subordinate
 * gids make), nor for one whose 65536 are copies of one group. */
TEST(a_peer_in_65536_groups_costs_the_groups_of_interest) {
        gid_t wanted[] = { 7, 100005, 100000 + MANY_GROUPS - 1 };
        const GidSet wanted_set = { wanted, ELEMENTSOF(wanted) };

        if (geteuid() != 0)
                SKIP("needs root to run a peer in 65536 groups");
        if (sysconf(_SC_NGROUPS_MAX) < (long) MANY_GROUPS)
                SKIP("NGROUPS_MAX is %ld", sysconf(_SC_NGROUPS_MAX));

        for (int copies = 0; copies <= 1; copies++) {
                _cleanup_(identity_done) PeerIdentity id = PEER_IDENTITY_NULL;
                size_t n = copies ? 1 : 2;
                Peer peer;

                for (size_t i = 0; i < MANY_GROUPS; i++)
                        many_groups[i] = copies ? 100005 : 100000 + (gid_t) i;
                peer = spawn_peer(PEER_SOCKETPAIR, -EBADF, drop_to_many_groups);

                ASSERT_OK(peer_identity_from_socket(peer.fd, &wanted_set, &id));
                ASSERT_EQ(id.n_groups, n);
                ASSERT_LE(malloc_usable_size(id.groups), 64U);
                ASSERT_TRUE(peer_identity_in_group(&id, 100005));
                ASSERT_FALSE(peer_identity_in_group(&id, 100006));
                ASSERT_EQ(peer_identity_in_group(&id, 100000 + MANY_GROUPS - 1), !copies);

                ASSERT_OK(peer_identity_reread_groups(&id, peer.fd, &wanted_set));
                ASSERT_EQ(id.n_groups, n);
                ASSERT_LE(malloc_usable_size(id.groups), 64U);
                ASSERT_EQ(finish_peer(&peer), 0);
        }
}

/* The kernel's groups are sorted, but a user namespace's mapping may unsort them: they are sorted
 * before the groups of interest are picked from them. A list longer than the first read's room
 * (64) is read again at the size the kernel asks for. */
TEST(peer_groups_unsorted_or_long) {
        FAKE_SOCKOPT_GUARD;
        static const gid_t unsorted[] = { 2003, 5, 2001, 2002 };
        static gid_t long_list[100];

        for (size_t i = 0; i < ELEMENTSOF(long_list); i++)
                long_list[i] = 3000 - (gid_t) i; /* descending, 2901..3000: 2001..2003 added below */
        long_list[10] = 2002;
        long_list[50] = 2003;
        long_list[99] = 2001;

        for (int variant = 0; variant < 2; variant++) {
                _cleanup_(identity_done) PeerIdentity id = PEER_IDENTITY_NULL;
                int fds[2];

                ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
                if (variant == 0)
                        fake_sockopt_set(SO_PEERGROUPS, 0, unsorted, ELEMENTSOF(unsorted));
                else
                        fake_sockopt_set(SO_PEERGROUPS, 0, long_list, ELEMENTSOF(long_list));
                ASSERT_OK(peer_identity_from_socket_full(fds[0], PEER_IDENTITY_NO_PEERPIDFD, &other_set, &id));
                ASSERT_EQ(fake_sockopt.calls, variant == 0 ? 1u : 2u);
                ASSERT_EQ(id.n_groups, 3u);
                for (size_t i = 0; i < ELEMENTSOF(other_groups); i++)
                        ASSERT_TRUE(peer_identity_in_group(&id, other_groups[i]));
                ASSERT_FALSE(peer_identity_in_group(&id, 5));
                close_many(fds, 2);
        }
}

/* An ERANGE that asks for no more room than was given (or for more groups than a process can
 * have) is no answer to retry on: -EIO, after one read. */
TEST(peer_groups_erange_without_progress) {
        FAKE_SOCKOPT_GUARD;
        static gid_t too_many[65536 + 1];
        _cleanup_(identity_done) PeerIdentity id = PEER_IDENTITY_NULL;
        int fds[2];

        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
        fake_sockopt_set(SO_PEERGROUPS, ERANGE, NULL, 0);
        ASSERT_ERRNO(peer_identity_from_socket_full(fds[0], PEER_IDENTITY_NO_PEERPIDFD, &other_set, &id), EIO);
        ASSERT_EQ(fake_sockopt.calls, 1u);
        ASSERT_ERRNO(peer_identity_reread_groups(&id, fds[0], &other_set), EIO);
        ASSERT_EQ(fake_sockopt.calls, 2u);

        fake_sockopt_set(SO_PEERGROUPS, 0, too_many, ELEMENTSOF(too_many));
        ASSERT_ERRNO(peer_identity_from_socket_full(fds[0], PEER_IDENTITY_NO_PEERPIDFD, &other_set, &id), EIO);
        ASSERT_EQ(fake_sockopt.calls, 1u);
        close_many(fds, 2);
}

/* SECURITY: only ENOPROTOOPT (a kernel before 6.5) lets the pidfd come from the pid. Any other
 * failure of SO_PEERPIDFD must not: the pid may name another process by now. A shortage of fds or
 * memory fails the identity (the connection is refused, as for any other shortage); another error
 * leaves the peer without unit or cgroup. */
TEST(peerpidfd_failure_never_falls_back_to_the_pid) {
        FAKE_SOCKOPT_GUARD;
        static const struct {
                int error;
                int result;
        } cases[] = {
                { EMFILE, -EMFILE },
                { ENFILE, -ENFILE },
                { ENOMEM, -ENOMEM },
                { EPERM, 0 },      /* a filter's or an LSM's */
                { EINVAL, 0 },     /* the peer was reaped */
                { ESRCH, 0 },
                { EOPNOTSUPP, 0 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(identity_done) PeerIdentity id = PEER_IDENTITY_NULL;
                int fds[2], r;

                ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
                fake_sockopt_set(SO_PEERPIDFD, cases[i].error, NULL, 0);
                r = peer_identity_from_socket_full(fds[0], 0, NULL, &id);
                if (r != cases[i].result)
                        TEST_FAIL("SO_PEERPIDFD failing with %s: got %d, expected %d", strerror(cases[i].error), r,
                                  cases[i].result);
                ASSERT_EQ(fake_sockopt.calls, 1u);
                if (r == 0) {
                        ASSERT_EQ(id.pid, getpid());
                        ASSERT_EQ(id.pidfs_id, 0u);
                        ASSERT_NULL(id.unit);
                        ASSERT_NULL(id.user_unit);
                        ASSERT_NULL(id.cgroup);
                }
                close_many(fds, 2);
        }

        /* Unknown to the kernel: the pid it is, checked as far as it can be. */
        if (pidfd_works()) {
                _cleanup_(identity_done) PeerIdentity id = PEER_IDENTITY_NULL;
                _cleanup_free_ char *cgroup = self_lookup(sd_pid_get_cgroup);
                int fds[2];

                ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
                fake_sockopt_set(SO_PEERPIDFD, ENOPROTOOPT, NULL, 0);
                ASSERT_OK(peer_identity_from_socket_full(fds[0], 0, NULL, &id));
                if (!streq_null(id.cgroup, cgroup))
                        TEST_FAIL("cgroup '%s', expected '%s'", strna(id.cgroup), strna(cgroup));
                close_many(fds, 2);
        }
}

/* Which peers are one process (WatchEvents routes by it): the same pidfs id where both have one,
 * else the same pid where both are known, and always the same uid. Pid 0 (a peer in a PID
 * namespace we cannot see) proves nothing. */
TEST(same_process_rule) {
        static const struct {
                uid_t uid_a;
                pid_t pid_a;
                uint64_t id_a;
                uid_t uid_b;
                pid_t pid_b;
                uint64_t id_b;
                bool same;
        } cases[] = {
                { 1, 10, 0, 1, 10, 0, true },
                { 1, 10, 0, 1, 11, 0, false },
                { 1, 10, 0, 2, 10, 0, false },
                { 1, 0, 0, 1, 0, 0, false },   /* both hidden: nothing proves it */
                { 1, 0, 0, 1, 10, 0, false },
                { 1, 0, 7, 1, 0, 7, true },    /* hidden, but the same process */
                { 1, 0, 7, 1, 0, 8, false },
                { 1, 0, 7, 2, 0, 7, false },
                { 1, 10, 7, 1, 10, 8, false }, /* a pid reused by another process */
                { 1, 10, 7, 1, 10, 0, true },  /* one id not known: the pids decide */
                { 1, 0, 7, 1, 0, 0, false },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                PeerIdentity a = { .uid = cases[i].uid_a, .pid = cases[i].pid_a, .pidfs_id = cases[i].id_a },
                             b = { .uid = cases[i].uid_b, .pid = cases[i].pid_b, .pidfs_id = cases[i].id_b };

                if (peer_identity_same_process(&a, &b) != cases[i].same ||
                    peer_identity_same_process(&b, &a) != cases[i].same)
                        TEST_FAIL("case %zu: expected %s", i, cases[i].same ? "the same process" : "not the same");
        }
        ASSERT_FALSE(peer_identity_same_process(NULL, &(PeerIdentity){ .uid = 1, .pid = 1 }));
}

/* Which peers a limit counts together: every one that might be the same process. Where a peer
 * has neither a pidfs id nor a pid, that is any peer of its uid; the uid always decides. */
TEST(may_be_same_process_rule) {
        static const struct {
                uid_t uid_a;
                pid_t pid_a;
                uint64_t id_a;
                uid_t uid_b;
                pid_t pid_b;
                uint64_t id_b;
                bool may;
        } cases[] = {
                { 1, 10, 0, 1, 10, 0, true },
                { 1, 10, 0, 1, 11, 0, false },
                { 1, 10, 0, 2, 10, 0, false },
                { 1, 0, 0, 1, 0, 0, true },    /* both hidden: they may be one */
                { 1, 0, 0, 2, 0, 0, false },   /* but never across uids */
                { 1, 0, 0, 1, 10, 0, true },
                { 1, 0, 0, 1, 0, 7, true },
                { 1, 0, 0, 1, 10, 7, true },
                { 1, 0, 7, 1, 0, 7, true },
                { 1, 0, 7, 1, 0, 8, false },   /* hidden, but told apart by pidfs */
                { 1, 10, 7, 1, 10, 8, false },
                { 1, 10, 7, 1, 10, 0, true },
                { 1, 10, 7, 1, 11, 0, false },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                PeerIdentity a = { .uid = cases[i].uid_a, .pid = cases[i].pid_a, .pidfs_id = cases[i].id_a },
                             b = { .uid = cases[i].uid_b, .pid = cases[i].pid_b, .pidfs_id = cases[i].id_b };

                if (peer_identity_may_be_same_process(&a, &b) != cases[i].may ||
                    peer_identity_may_be_same_process(&b, &a) != cases[i].may)
                        TEST_FAIL("case %zu: expected %s", i, cases[i].may ? "maybe the same process" : "not the same");
                /* What is provably one process may be one. */
                if (peer_identity_same_process(&a, &b))
                        ASSERT_TRUE(peer_identity_may_be_same_process(&a, &b));
        }
        ASSERT_FALSE(peer_identity_may_be_same_process(NULL, &(PeerIdentity){ .uid = 1 }));
}

/* Whether this kernel gives pidfds a pidfs inode of their own (Linux 6.9, 64-bit). */
static bool have_pidfs(void) {
        _cleanup_close_ int fd = pidfd_open(getpid(), 0);
        struct statfs sfs;

        return sizeof(long) >= sizeof(uint64_t) && fd >= 0 && fstatfs(fd, &sfs) >= 0 && sfs.f_type == 0x50494446;
}

/* Over real connections: two of ours are one process, a child's another. */
TEST(same_process_over_sockets) {
        TMPDIR_GUARD;
        _cleanup_close_ int lfd = listen_socket(), c1 = -EBADF, c2 = -EBADF, a1 = -EBADF, a2 = -EBADF;
        bool pidfs = have_pidfs();

        c1 = connect_socket();
        ASSERT_OK(c1);
        a1 = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_OK(a1);
        c2 = connect_socket();
        ASSERT_OK(c2);
        a2 = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_OK(a2);

        for (size_t v = 0; v < ELEMENTSOF(flag_variants); v++) {
                _cleanup_(identity_done) PeerIdentity x = PEER_IDENTITY_NULL, y = PEER_IDENTITY_NULL,
                                                      z = PEER_IDENTITY_NULL;
                Peer child = spawn_peer(PEER_CONNECT, lfd, NULL);

                ASSERT_OK(peer_identity_from_socket_full(a1, flag_variants[v], NULL, &x));
                ASSERT_OK(peer_identity_from_socket_full(a2, flag_variants[v], NULL, &y));
                ASSERT_OK(peer_identity_from_socket_full(child.fd, flag_variants[v], NULL, &z));
                if (pidfs && pidfd_works()) {
                        ASSERT_TRUE(x.pidfs_id != 0);
                        ASSERT_EQ(x.pidfs_id, y.pidfs_id);
                        ASSERT_TRUE(z.pidfs_id != 0);
                        ASSERT_TRUE(z.pidfs_id != x.pidfs_id);
                } else
                        ASSERT_EQ(x.pidfs_id, 0U);
                ASSERT_TRUE(peer_identity_same_process(&x, &y));
                ASSERT_FALSE(peer_identity_same_process(&x, &z));
                ASSERT_EQ(finish_peer(&child), 0);
        }
}

TEST(exited_peer_has_no_unit_or_cgroup) {
        TMPDIR_GUARD;
        _cleanup_close_ int lfd = listen_socket();
        _cleanup_free_ char *cgroup = self_lookup(sd_pid_get_cgroup);

        for (size_t v = 0; v < ELEMENTSOF(flag_variants); v++) {
                _cleanup_(identity_done) PeerIdentity live = PEER_IDENTITY_NULL, dead = PEER_IDENTITY_NULL;
                Peer peer = spawn_peer(PEER_CONNECT, lfd, NULL);
                int fd;

                /* Alive: the cgroup is known (where the environment has one). */
                ASSERT_OK(peer_identity_from_socket_full(peer.fd, flag_variants[v], NULL, &live));
                if (!streq_null(live.cgroup, cgroup))
                        TEST_FAIL("cgroup '%s', expected '%s'", strna(live.cgroup), strna(cgroup));

                /* Exited and reaped: the credentials stay (they are the connect()-time facts),
                 * the unit and cgroup go, because the pid may belong to someone else now. */
                fd = fcntl(peer.fd, F_DUPFD_CLOEXEC, 3);
                ASSERT_OK(fd);
                ASSERT_EQ(finish_peer(&peer), 0);
                ASSERT_OK(peer_identity_from_socket_full(fd, flag_variants[v], NULL, &dead));
                ASSERT_EQ(dead.uid, live.uid);
                ASSERT_EQ(dead.gid, live.gid);
                ASSERT_EQ(dead.pid, peer.pid);
                ASSERT_NULL(dead.unit);
                ASSERT_NULL(dead.user_unit);
                ASSERT_NULL(dead.cgroup);
                safe_close(fd);
        }
        if (!cgroup)
                fprintf(stderr, "note: no cgroup here; the live/dead contrast is weaker\n");
}

/* SECURITY: without SO_PEERPIDFD the unit is read through the peer's pid when the connection is
 * accepted, and the process holding that pid by then must run as the uid the peer connected as:
 * a pid reused by a process of another uid lends no unit. Here the peer itself changes uid
 * between its connect() and our accept, which looks the same; with SO_PEERPIDFD its pidfd
 * proves it is the peer, and its cgroup is read. */
TEST(pid_held_by_another_uid_lends_no_unit) {
        TMPDIR_GUARD;
        _cleanup_close_ int lfd = -EBADF;
        _cleanup_free_ char *cgroup = self_lookup(sd_pid_get_cgroup);

        if (geteuid() != 0)
                SKIP("needs root (the peer changes uid)");
        if (!cgroup)
                SKIP("no cgroup here to tell a unit read from none");
        lfd = listen_socket();

        for (size_t v = 0; v < ELEMENTSOF(flag_variants); v++) {
                _cleanup_(identity_done) PeerIdentity id = PEER_IDENTITY_NULL;
                Peer peer = spawn_peer_full(PEER_CONNECT, lfd, NULL, drop_to_other_user);

                ASSERT_OK(peer_identity_from_socket_full(peer.fd, flag_variants[v], NULL, &id));
                ASSERT_EQ(id.uid, 0); /* as it connected */
                ASSERT_EQ(id.pid, peer.pid);
                if (flag_variants[v] & PEER_IDENTITY_NO_PEERPIDFD) {
                        ASSERT_NULL(id.unit);
                        ASSERT_NULL(id.cgroup);
                } else if (peer_identity_kernel_has_peerpidfd() > 0 && !streq_null(id.cgroup, cgroup))
                        TEST_FAIL("cgroup '%s', expected '%s'", strna(id.cgroup), strna(cgroup));
                ASSERT_EQ(finish_peer(&peer), 0);
        }
}

static pid_t fork_sleeper(void);

/* A signal's sender (peer_identity_from_signal()): the pid and uid the kernel gave, and the cgroup
 * and unit of that pid only while a process of that uid, the sender's real one, holds it (a sender
 * that exited, its pid reused by another user's process, lends none); none for pid 0, which
 * sd-login would take for ourselves. */
TEST(signal_sender_identity) {
        _cleanup_free_ char *cgroup = self_lookup(sd_pid_get_cgroup);
        pid_t sleeper = fork_sleeper(), reaped = fork_sleeper();
        int status;

        ASSERT_OK(kill(reaped, SIGKILL));
        ASSERT_EQ(waitpid(reaped, &status, 0), reaped);
        {
                _cleanup_(identity_done) PeerIdentity id = PEER_IDENTITY_NULL;

                ASSERT_OK(peer_identity_from_signal(sleeper, getuid(), &id));
                ASSERT_EQ(id.pid, sleeper);
                ASSERT_EQ(id.uid, getuid());
                ASSERT_EQ(id.gid, GID_INVALID);
                ASSERT_EQ(id.n_groups, 0U);
                if (!streq_null(id.cgroup, cgroup))
                        TEST_FAIL("cgroup '%s', expected '%s'", strna(id.cgroup), strna(cgroup));
        }
        {
                /* Not the uid that sent it: another's process holds the pid. */
                _cleanup_(identity_done) PeerIdentity id = PEER_IDENTITY_NULL;

                ASSERT_OK(peer_identity_from_signal(sleeper, getuid() + 1, &id));
                ASSERT_EQ(id.pid, sleeper);
                ASSERT_EQ(id.uid, getuid() + 1);
                ASSERT_NULL(id.unit);
                ASSERT_NULL(id.user_unit);
                ASSERT_NULL(id.cgroup);
        }
        {
                _cleanup_(identity_done) PeerIdentity id = PEER_IDENTITY_NULL;

                ASSERT_OK(peer_identity_from_signal(reaped, getuid(), &id));
                ASSERT_EQ(id.pid, reaped);
                ASSERT_NULL(id.unit);
                ASSERT_NULL(id.cgroup);
        }
        {
                /* The kernel's (no sender), or one in a PID namespace we cannot see. */
                _cleanup_(identity_done) PeerIdentity id = PEER_IDENTITY_NULL;

                ASSERT_OK(peer_identity_from_signal(0, getuid(), &id));
                ASSERT_EQ(id.pid, 0);
                ASSERT_NULL(id.unit);
                ASSERT_NULL(id.cgroup);
        }
        ASSERT_OK(kill(sleeper, SIGKILL));
        ASSERT_EQ(waitpid(sleeper, &status, 0), sleeper);
        if (!cgroup)
                fprintf(stderr, "note: no cgroup here; the contrast with another uid is weaker\n");
}

static pid_t fork_sleeper(void) {
        pid_t pid;

        fflush(NULL);
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0) {
                /* Never outlive a failed test. */
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                for (;;)
                        pause();
        }
        return pid;
}

/* Whether the kernel names peers by pidfd: SO_PEERPIDFD came in Linux 6.5 (tsmd warns of rules
 * on Units= alone without it). */
TEST(kernel_has_peerpidfd) {
        struct utsname u;
        unsigned major, minor;

        ASSERT_OK(uname(&u));
        ASSERT_EQ(sscanf(u.release, "%u.%u", &major, &minor), 2);
        ASSERT_EQ(peer_identity_kernel_has_peerpidfd(), major > 6 || (major == 6 && minor >= 5) ? 1 : 0);
}

TEST(pidfd_liveness) {
        _cleanup_close_ int pidfd = -EBADF;
        siginfo_t si = {};
        pid_t pid;

        if (!pidfd_works())
                SKIP("pidfd_open()/pidfd_send_signal() not available here");
        pid = fork_sleeper();

        pidfd = pidfd_open(pid, 0);
        ASSERT_OK(pidfd);
        ASSERT_EQ(pidfd_is_alive(pidfd), 1);

        ASSERT_OK(kill(pid, SIGKILL));
        /* A zombie still owns its pid: alive for our purpose. */
        ASSERT_OK(waitid(P_PID, (id_t) pid, &si, WEXITED | WNOWAIT));
        ASSERT_EQ(pidfd_is_alive(pidfd), 1);

        ASSERT_EQ(waitpid(pid, NULL, 0), pid);
        ASSERT_EQ(pidfd_is_alive(pidfd), 0);
        ASSERT_ERRNO(pidfd_is_alive(-1), EBADF);
}

TEST(pidfd_liveness_without_permission) {
        _cleanup_close_ int pidfd = -EBADF;
        pid_t child;
        int status;

        if (geteuid() != 0)
                SKIP("needs root to drop to another uid");
        if (!pidfd_works())
                SKIP("pidfd_open()/pidfd_send_signal() not available here");

        /* The unprivileged worker may not signal the peer: EPERM must still mean "alive". */
        pidfd = pidfd_open(getpid(), 0);
        ASSERT_OK(pidfd);
        fflush(NULL);
        child = fork();
        ASSERT_OK(child);
        if (child == 0) {
                drop_to_other_user();
                _exit(pidfd_is_alive(pidfd) == 1 ? 0 : 1);
        }
        ASSERT_EQ(waitpid(child, &status, 0), child);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A child killed and reaped: a pidfd of a process that is gone. */
static int reaped_pidfd(void) {
        pid_t pid = fork_sleeper();
        int pidfd = pidfd_open(pid, 0);

        ASSERT_OK(pidfd);
        ASSERT_OK(kill(pid, SIGKILL));
        ASSERT_EQ(waitpid(pid, NULL, 0), pid);
        return pidfd;
}

TEST(pidfd_fdinfo_pid) {
        _cleanup_close_ int pidfd = -EBADF, dead = -EBADF, null = -EBADF;
        siginfo_t si = {};
        pid_t pid, got = 0;
        int r;

        if (!pidfd_works())
                SKIP("pidfd_open()/pidfd_send_signal() not available here");
        pid = fork_sleeper();
        pidfd = pidfd_open(pid, 0);
        ASSERT_OK(pidfd);
        r = pidfd_fdinfo_get_pid(pidfd, &got);
        if (r == -EOPNOTSUPP) {
                (void) kill(pid, SIGKILL);
                (void) waitpid(pid, NULL, 0);
                SKIP("fdinfo does not tell a reaped process here (Linux < 5.5, or no /proc)");
        }
        ASSERT_OK(r);
        ASSERT_EQ(got, pid);

        ASSERT_OK(kill(pid, SIGKILL));
        ASSERT_OK(waitid(P_PID, (id_t) pid, &si, WEXITED | WNOWAIT));
        ASSERT_OK(pidfd_fdinfo_get_pid(pidfd, &got)); /* a zombie keeps its pid */
        ASSERT_EQ(got, pid);
        ASSERT_EQ(waitpid(pid, NULL, 0), pid);
        ASSERT_OK(pidfd_fdinfo_get_pid(pidfd, &got));
        ASSERT_EQ(got, -1);

        dead = reaped_pidfd();
        ASSERT_OK(pidfd_fdinfo_get_pid(dead, &got));
        ASSERT_EQ(got, -1);

        null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        ASSERT_OK(null);
        ASSERT_ERRNO(pidfd_fdinfo_get_pid(null, &got), EOPNOTSUPP);
        ASSERT_ERRNO(pidfd_fdinfo_get_pid(-1, &got), EBADF);
}

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424 /* the same number on every architecture */
#endif

/* As a unit's SystemCallFilter=~@process with SystemCallErrorNumber=EPERM would: the signal
 * fails with the kernel's own word for "exists, but not yours". */
static void refuse_pidfd_send_signal(void) {
        struct sock_filter filter[] = {
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_send_signal, 0, 1),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = { .len = ELEMENTSOF(filter), .filter = filter };

        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
                _exit(10);
}

/* SECURITY: an EPERM a filter gives is no proof that a process exists: under one, a reaped
 * process is still found dead, and a live one (a zombie too) alive. */
TEST(pidfd_liveness_under_a_seccomp_filter) {
        _cleanup_close_ int self = -EBADF, zombie = -EBADF, dead = -EBADF;
        siginfo_t si = {};
        pid_t z, child;
        int status;

        if (!pidfd_works())
                SKIP("pidfd_open()/pidfd_send_signal() not available here");
        self = pidfd_open(getpid(), 0);
        ASSERT_OK(self);
        dead = reaped_pidfd();
        z = fork_sleeper();
        zombie = pidfd_open(z, 0);
        ASSERT_OK(zombie);
        ASSERT_OK(kill(z, SIGKILL));
        ASSERT_OK(waitid(P_PID, (id_t) z, &si, WEXITED | WNOWAIT));

        fflush(NULL);
        child = fork();
        ASSERT_OK(child);
        if (child == 0) {
                char *unit = NULL, *cgroup = NULL;
                pid_t pid;

                refuse_pidfd_send_signal();
                if (pidfd_send_signal(self, 0, NULL, 0) >= 0 || errno != EPERM)
                        _exit(11); /* the filter did not take */
                if (pidfd_is_alive(dead) != 0)
                        _exit(12);
                if (pidfd_is_alive(self) != 1)
                        _exit(13);
                /* An exited process is told from a reaped one by fdinfo alone. */
                if (pidfd_fdinfo_get_pid(zombie, &pid) >= 0 && pidfd_is_alive(zombie) != 1)
                        _exit(14);
                /* What the finding was: a unit or cgroup read by a pid the dead peer's no longer is. */
                if (peer_identity_read_unit(getpid(), dead, &unit, NULL, &cgroup) < 0 || unit || cgroup)
                        _exit(15);
                _exit(0);
        }
        ASSERT_EQ(waitpid(child, &status, 0), child);
        ASSERT_EQ(waitpid(z, NULL, 0), z);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                TEST_FAIL("checker status 0x%x (10: no filter, 11: filter ineffective, 12: the reaped process "
                          "taken for alive, 13: ourselves not, 14: the zombie not, 15: a unit read by pid kept)",
                          status);
}

/* Without fdinfo (no /proc here, as before Linux 5.5), an exited process is told by the signal,
 * and a refused signal proves nothing: the zombie is not proven alive, so a unit read meanwhile
 * would be dropped. A process that has not exited needs neither. */
TEST(pidfd_liveness_without_fdinfo) {
        _cleanup_close_ int self = -EBADF, zombie = -EBADF, dead = -EBADF;
        siginfo_t si = {};
        pid_t z, child;
        int status;

        if (geteuid() != 0)
                SKIP("needs root to hide /proc in a mount namespace of its own");
        if (!pidfd_works())
                SKIP("pidfd_open()/pidfd_send_signal() not available here");
        self = pidfd_open(getpid(), 0);
        ASSERT_OK(self);
        dead = reaped_pidfd();
        z = fork_sleeper();
        zombie = pidfd_open(z, 0);
        ASSERT_OK(zombie);
        ASSERT_OK(kill(z, SIGKILL));
        ASSERT_OK(waitid(P_PID, (id_t) z, &si, WEXITED | WNOWAIT));

        fflush(NULL);
        child = fork();
        ASSERT_OK(child);
        if (child == 0) {
                pid_t pid;

                if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
                    mount("none", "/proc", "tmpfs", 0, NULL) < 0)
                        _exit(77);
                if (pidfd_fdinfo_get_pid(self, &pid) != -EOPNOTSUPP)
                        _exit(10);
                if (pidfd_is_alive(self) != 1 || pidfd_is_alive(zombie) != 1 || pidfd_is_alive(dead) != 0)
                        _exit(11);
                refuse_pidfd_send_signal();
                if (pidfd_is_alive(self) != 1)
                        _exit(12);
                if (pidfd_is_alive(zombie) != -EPERM || pidfd_is_alive(dead) != -EPERM)
                        _exit(13);
                _exit(0);
        }
        ASSERT_EQ(waitpid(child, &status, 0), child);
        ASSERT_EQ(waitpid(z, NULL, 0), z);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
                SKIP("cannot mount over /proc here");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                TEST_FAIL("checker status 0x%x (10: fdinfo still read, 11: wrong without a filter, 12: ourselves "
                          "not alive under it, 13: a refused signal taken for an answer)",
                          status);
}

TEST(read_unit_refuses_reused_pid) {
        _cleanup_free_ char *unit = NULL, *user_unit = NULL, *cgroup = NULL;
        _cleanup_free_ char *self_cgroup = self_lookup(sd_pid_get_cgroup);
        _cleanup_close_ int dead_pidfd = -EBADF, self_pidfd = -EBADF;
        pid_t pid;

        if (!pidfd_works())
                SKIP("pidfd_open()/pidfd_send_signal() not available here");
        pid = fork_sleeper();

        dead_pidfd = pidfd_open(pid, 0);
        ASSERT_OK(dead_pidfd);
        ASSERT_OK(kill(pid, SIGKILL));
        ASSERT_EQ(waitpid(pid, NULL, 0), pid);

        /* Simulates pid reuse: the pid (ours) names a live process with a cgroup, but the
         * pidfd says the peer is gone. Nothing read by pid may be reported. */
        ASSERT_OK(peer_identity_read_unit(getpid(), dead_pidfd, &unit, &user_unit, &cgroup));
        ASSERT_NULL(unit);
        ASSERT_NULL(user_unit);
        ASSERT_NULL(cgroup);

        /* The same read with a live pidfd reports what is there. */
        self_pidfd = pidfd_open(getpid(), 0);
        ASSERT_OK(self_pidfd);
        ASSERT_OK(peer_identity_read_unit(getpid(), self_pidfd, NULL, NULL, &cgroup));
        if (!streq_null(cgroup, self_cgroup))
                TEST_FAIL("cgroup '%s', expected '%s'", strna(cgroup), strna(self_cgroup));

        /* pid 0 would make libsystemd describe *us*; never. Nor without a pidfd. */
        cgroup = mfree(cgroup);
        ASSERT_OK(peer_identity_read_unit(0, self_pidfd, &unit, NULL, &cgroup));
        ASSERT_NULL(unit);
        ASSERT_NULL(cgroup);
        ASSERT_OK(peer_identity_read_unit(getpid(), -EBADF, &unit, NULL, &cgroup));
        ASSERT_NULL(unit);
        ASSERT_NULL(cgroup);
}

/* ---- units ---- */

TEST(unit_of_self_when_inside_a_unit) {
        _cleanup_free_ char *unit = self_lookup(sd_pid_get_unit);
        _cleanup_(identity_done) PeerIdentity id = PEER_IDENTITY_NULL;
        int fds[2];

        if (!unit)
                SKIP("this test process runs in no systemd unit (or its unit cannot be verified)");

        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds));
        ASSERT_OK(peer_identity_from_socket(fds[0], NULL, &id));
        ASSERT_STREQ(id.unit, unit);
        close_many(fds, 2);
}

static const char *cgroup2_root(void) {
        static const char *const candidates[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/unified" };
        struct statfs fs;

        for (size_t i = 0; i < ELEMENTSOF(candidates); i++)
                if (statfs(candidates[i], &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC)
                        return candidates[i];
        return NULL;
}

typedef struct CgroupCase {
        const char *path; /* relative to the cgroup2 root; "%d" = our pid */
        const char *unit;
        const char *user_unit;
} CgroupCase;

static const CgroupCase cgroup_cases[] = {
        /* A plain cgroup that is no unit: "no unit", but the cgroup is known. */
        { "tsmd-test-%d", NULL, NULL },
        { "tsmd-test-%d.slice/vm-web1-%d.service", "vm-web1-%d.service", NULL },
        { "machine.slice/machine-qemu\\x2d%d\\x2dvm.scope", "machine-qemu\\x2d%d\\x2dvm.scope", NULL },
        /* Inside a user manager the system unit is user@UID.service; the unit the user named
         * is only the user unit, which the policy never matches on. */
        { "tsmd-test-%d.slice/user@4242.service/app.slice/vm-web1.service", "user@4242.service",
          "vm-web1.service" },
};

/* Replaces every "%d" with our pid. */
static char *format_pid(const char *format) {
        char pid[32], *s = NULL;
        size_t size = 0;
        FILE *f;

        if (!format)
                return NULL;
        snprintf(pid, sizeof(pid), "%d", (int) getpid());
        f = open_memstream(&s, &size);
        ASSERT_NOT_NULL(f);
        for (const char *p = format; *p; p++) {
                if (p[0] == '%' && p[1] == 'd') {
                        fputs(pid, f);
                        p++;
                } else
                        fputc(*p, f);
        }
        ASSERT_EQ(fclose(f), 0);
        return s;
}

/* mkdir -p under root; returns how many directories were created (to remove them again). */
static int mkdir_chain(const char *root, const char *rel, char created[][512], int max) {
        char path[512];
        int n = 0;

        for (const char *p = rel;; p++) {
                if (*p == '/' || *p == 0) {
                        snprintf(path, sizeof(path), "%s/%.*s", root, (int) (p - rel), rel);
                        if (mkdir(path, 0755) == 0) {
                                if (n < max)
                                        snprintf(created[n++], 512, "%s", path);
                        } else if (errno != EEXIST) {
                                int r = -errno;

                                while (n > 0)
                                        (void) rmdir(created[--n]);
                                return r;
                        }
                }
                if (*p == 0)
                        return n;
        }
}

TEST(unit_detection_in_test_cgroups) {
        const char *root = cgroup2_root();
        _cleanup_free_ char *self = self_lookup(sd_pid_get_cgroup);

        if (geteuid() != 0)
                SKIP("needs root to create cgroups");
        if (!pidfd_works())
                SKIP("pidfd_open()/pidfd_send_signal() not available: units are never reported");
        if (!root)
                SKIP("no cgroup2 hierarchy mounted");
        /* Under a real systemd we would be writing into its tree; only do this where nobody
         * manages cgroups (we sit in the root cgroup). Inside a unit, the test above covers it. */
        if (!self || !streq(self, "/"))
                SKIP("not in the root cgroup (%s); not touching a managed hierarchy", strna(self));

        for (size_t i = 0; i < ELEMENTSOF(cgroup_cases); i++) {
                _cleanup_free_ char *rel = format_pid(cgroup_cases[i].path);
                _cleanup_free_ char *unit = format_pid(cgroup_cases[i].unit);
                _cleanup_free_ char *user_unit = format_pid(cgroup_cases[i].user_unit);
                _cleanup_free_ char *procs = NULL, *expected_cgroup = NULL;
                char created[8][512];
                int n;

                n = mkdir_chain(root, rel, created, ELEMENTSOF(created));
                if (n < 0)
                        SKIP("cannot create cgroup %s/%s: %s", root, rel, strerror(-n));
                ASSERT_TRUE(asprintf(&procs, "%s/%s/cgroup.procs", root, rel) > 0);
                ASSERT_TRUE(asprintf(&expected_cgroup, "/%s", rel) > 0);
                move_to_cgroup_path = procs;

                PeerIdentity ids[ELEMENTSOF(flag_variants)];
                int rs[ELEMENTSOF(flag_variants)], statuses[ELEMENTSOF(flag_variants)];

                for (size_t v = 0; v < ELEMENTSOF(flag_variants); v++) {
                        Peer peer = spawn_peer(PEER_SOCKETPAIR, -EBADF, move_to_cgroup);

                        ids[v] = PEER_IDENTITY_NULL;
                        rs[v] = peer_identity_from_socket_full(peer.fd, flag_variants[v], NULL, &ids[v]);
                        statuses[v] = finish_peer(&peer);
                }

                /* Remove the cgroups before asserting anything, so a failure leaves no litter. */
                for (int k = n - 1; k >= 0; k--)
                        (void) rmdir(created[k]);

                for (size_t v = 0; v < ELEMENTSOF(flag_variants); v++) {
                        _cleanup_(identity_done) PeerIdentity id = ids[v];

                        ASSERT_EQ(statuses[v], 0);
                        ASSERT_OK(rs[v]);
                        if (!id.cgroup || !streq(id.cgroup, expected_cgroup)) {
                                if (i == 0 && id.cgroup && streq(id.cgroup, "/"))
                                        SKIP("libsystemd reads another hierarchy than %s", root);
                                TEST_FAIL("case %zu: cgroup '%s', expected '%s'", i, strna(id.cgroup),
                                          expected_cgroup);
                        }
                        if (!streq_null(id.unit, unit))
                                TEST_FAIL("case %zu: unit '%s', expected '%s'", i, strna(id.unit),
                                          strna(unit));
                        if (!streq_null(id.user_unit, user_unit))
                                TEST_FAIL("case %zu: user unit '%s', expected '%s'", i, strna(id.user_unit),
                                          strna(user_unit));
                }
        }
}

TEST_MAIN();
