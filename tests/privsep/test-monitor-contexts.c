/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The monitor's context table: ids, ownership of fds on every path, vDevices, orphaning,
 * restoring from fd-store names, and what the service manager's fd store is told (through a
 * notification socket this test plays). Runs in: tests.
 */

#include <dlfcn.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "emu-platform.h"
#include "harness.h"
#include "monitor-contexts.h"
#include "tsm-platform.h"

#define ID_A "0123456789abcdef0123456789abcdef"
#define ID_B "fedcba9876543210fedcba9876543210"
#define ID_C "00000000000000000000000000000000"
/* Reclaim tokens, as a tsmd before reclaim ids named fd store entries by, and their ids. */
#define TOKEN_L "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
#define ID_L "8b4ed76aac5ba5c555bbf28f7295c6b8" /* SHA-256(TOKEN_L), its first 128 bits */
#define TOKEN_M "11111111111111111111111111111111"
#define ID_M "8a83665f3798727f14f92ad0e6c99fda" /* SHA-256(TOKEN_M), its first 128 bits */

/* A pipe whose write end stands in for an iommufd: closing it shows as EOF at the read end. */
typedef struct Probe {
        int r, w;
} Probe;

static Probe probe_new(void) {
        int p[2];

        ASSERT_OK(pipe2(p, O_CLOEXEC | O_NONBLOCK));
        return (Probe){ .r = p[0], .w = p[1] };
}

static bool probe_closed(Probe *p) {
        char c;

        return read(p->r, &c, 1) == 0;
}

static TsmPlatform *emulated_platform(struct event_base *base) {
        TsmPlatformConfig config = {
                .mode = TSM_PLATFORM_EMULATED,
                .iommu_device = (char *) "/nonexistent/tsmd-test-iommu",
        };
        TsmPlatform *p;

        ASSERT_OK(tsm_platform_new(base, &config, &p));
        return p;
}

TEST(ids_and_lookup) {
        _cleanup_(monitor_contexts_free_preservep) MonitorContexts *c = NULL;
        struct event_base *base = event_base_new();
        TsmPlatform *p = emulated_platform(base);
        MonitorContext *ctx;
        uint32_t a, b, id;
        size_t n = 0;
        Probe pa = probe_new(), pb = probe_new(), pc = probe_new();

        unsetenv("NOTIFY_SOCKET");
        ASSERT_OK(monitor_contexts_new(&c));
        ASSERT_EQ(monitor_contexts_size(c), 0);
        ASSERT_NULL(monitor_contexts_next(c, NULL));

        ASSERT_OK(monitor_contexts_add(c, pa.w, 5, 1000, ID_A, &a));
        ASSERT_OK(monitor_contexts_add(c, pb.w, 6, 1001, ID_B, &b));
        ASSERT_EQ(a, 1);
        ASSERT_EQ(b, 2);
        ASSERT_EQ(monitor_contexts_size(c), 2);

        ctx = monitor_contexts_get(c, a);
        ASSERT_NOT_NULL(ctx);
        ASSERT_EQ(ctx->fd, pa.w);
        ASSERT_EQ(ctx->slot, 5);
        ASSERT_EQ(ctx->uid, 1000);
        ASSERT_STREQ(ctx->reclaim_id, ID_A);
        ASSERT_FALSE(ctx->stored); /* no service manager */
        ASSERT_TRUE(monitor_contexts_find_reclaim_id(c, ID_B) == monitor_contexts_get(c, b));
        ASSERT_NULL(monitor_contexts_find_reclaim_id(c, ID_C));
        ASSERT_NULL(monitor_contexts_get(c, 0));
        ASSERT_NULL(monitor_contexts_get(c, 3));

        /* Iteration in id order. */
        MONITOR_CONTEXTS_FOREACH(ctx, c)
                ASSERT_EQ(ctx->id, ++n);
        ASSERT_EQ(n, 2);

        /* Ids are never reused. */
        ASSERT_FALSE(probe_closed(&pa));
        ASSERT_OK(monitor_contexts_remove(c, p, a));
        ASSERT_TRUE(probe_closed(&pa));
        ASSERT_NULL(monitor_contexts_get(c, a));
        ASSERT_ERRNO(monitor_contexts_remove(c, p, a), ENOENT);
        ASSERT_OK(monitor_contexts_add(c, pc.w, 7, 1002, ID_A, &id));
        ASSERT_EQ(id, 3);

        /* The worker died: nobody holds anything. */
        monitor_contexts_orphan_all(c);
        MONITOR_CONTEXTS_FOREACH(ctx, c)
                ASSERT_EQ(ctx->slot, TSM_PRIV_SLOT_WORKER);

        c = monitor_contexts_free(c, false);
        ASSERT_TRUE(probe_closed(&pb));
        ASSERT_TRUE(probe_closed(&pc));
        tsm_platform_free(p);
        event_base_free(base);
        close(pa.r);
        close(pb.r);
        close(pc.r);
}

TEST(add_refused_closes_fd) {
        _cleanup_(monitor_contexts_free_preservep) MonitorContexts *c = NULL;
        static const char *const bad[] = {
                "",
                "0123456789abcdef0123456789abcde",   /* 31 */
                "0123456789abcdef0123456789abcdef0", /* 33 */
                "0123456789ABCDEF0123456789abcdef",  /* upper case */
                "0123456789abcdef0123456789abcdeg",
                "0123456789abcdef 123456789abcdef",
        };

        unsetenv("NOTIFY_SOCKET");
        ASSERT_OK(monitor_contexts_new(&c));

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                Probe p = probe_new();

                ASSERT_ERRNO(monitor_contexts_add(c, p.w, 1, 1000, bad[i], NULL), EINVAL);
                ASSERT_TRUE(probe_closed(&p));
                close(p.r);
        }

        Probe p = probe_new(), q = probe_new(), u = probe_new();
        ASSERT_ERRNO(monitor_contexts_add(c, u.w, 1, (uid_t) -1, ID_A, NULL), EINVAL);
        ASSERT_TRUE(probe_closed(&u));
        ASSERT_OK(monitor_contexts_add(c, p.w, 1, 1000, ID_A, NULL));
        ASSERT_ERRNO(monitor_contexts_add(c, q.w, 2, 1001, ID_A, NULL), EEXIST);
        ASSERT_TRUE(probe_closed(&q));
        ASSERT_FALSE(probe_closed(&p));
        ASSERT_EQ(monitor_contexts_size(c), 1);

        c = monitor_contexts_free(c, false);
        ASSERT_TRUE(probe_closed(&p));
        close(p.r);
        close(q.r);
        close(u.r);
}

TEST(restore) {
        _cleanup_(monitor_contexts_free_preservep) MonitorContexts *c = NULL;
        static const char *const bad[] = {
                NULL,
                "",
                "ctxid.",
                "ctxid.1000",
                "ctxid.1000." ID_A "0",
                "ctxid.1000." "0123456789ABCDEF0123456789abcdef",
                "ctxid.-1." ID_A,
                "ctxid.4294967295." ID_A,
                "ctxid.x." ID_A,
                "xyz.1000." ID_A,
                "ctxid1000." ID_A,
                /* Carriers of a rename (fdstore.h): the new id, then the old. */
                "ctxid.1000." ID_A ".",
                "ctxid.1000." ID_A "." ID_B "0",
                "ctxid.1000." ID_A "." "0123456789ABCDEF0123456789abcdef",
                "ctxid.1000." ID_A "x" ID_B,
                "ctxid.1000." ID_A "." ID_B "." ID_C,
                /* Shared contexts' carriers (fdstore.h): the id, and one it was renamed from. */
                "ctxid.1000.shared",
                "ctxid.1000..shared",
                "ctxid.1000." ID_A "shared",
                "ctxid.1000." ID_A ".Shared",
                "ctxid.1000." ID_A ".shared.",
                "ctxid.1000." ID_A "..shared",
                "ctxid.1000." ID_A "0.shared",
                "ctxid.1000." "0123456789ABCDEF0123456789abcdef.shared",
                "ctxid.1000." ID_A "." "0123456789ABCDEF0123456789abcdef.shared",
                "ctxid.1000." ID_A "x" ID_B ".shared",
                "ctxid.1000." ID_A "." ID_B "0.shared",
                "ctxid.1000." ID_A "." ID_B "." ID_C ".shared",
                "ctxid.4294967295." ID_A ".shared",
                "ctx.1000." ID_A ".shared",
                /* The names a tsmd before this one gave, with the token in the id's place. */
                "ctx.",
                "ctx.1000",
                "ctx.1000." ID_A "0",
                "ctx.1000." "0123456789ABCDEF0123456789abcdef",
                "ctx.-1." ID_A,
                "ctx. 1." ID_A,
                "ctx.4294967295." ID_A,
                "ctx.1000." ID_A "." ID_B,
                "varlink",
        };
        MonitorContext *ctx;
        uint32_t id;

        unsetenv("NOTIFY_SOCKET");
        ASSERT_OK(monitor_contexts_new(&c));

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                Probe p = probe_new();

                if (monitor_contexts_restore(c, p.w, bad[i], NULL) != -EINVAL)
                        TEST_FAIL("'%s' restored", strna(bad[i]));
                ASSERT_TRUE(probe_closed(&p));
                close(p.r);
        }

        Probe p = probe_new(), q = probe_new();
        ASSERT_OK(monitor_contexts_restore(c, p.w, "ctxid.1000." ID_A, &id));
        ASSERT_EQ(id, 1);
        ctx = monitor_contexts_get(c, id);
        ASSERT_NOT_NULL(ctx);
        ASSERT_EQ(ctx->slot, TSM_PRIV_SLOT_WORKER);
        ASSERT_EQ(ctx->uid, 1000);
        ASSERT_STREQ(ctx->reclaim_id, ID_A);
        ASSERT_TRUE(ctx->stored);
        ASSERT_EQ(ctx->n_vdevices, 0);
        ASSERT_ERRNO(monitor_contexts_restore(c, q.w, "ctxid.1001." ID_A, NULL), EEXIST);
        ASSERT_TRUE(probe_closed(&q));

        /* An old-style name: the context is known by its token's reclaim id, never the token. */
        Probe l = probe_new(), l2 = probe_new();
        ASSERT_OK(monitor_contexts_restore(c, l.w, "ctx.1002." TOKEN_L, &id));
        ctx = monitor_contexts_get(c, id);
        ASSERT_NOT_NULL(ctx);
        ASSERT_EQ(ctx->uid, 1002);
        ASSERT_STREQ(ctx->reclaim_id, ID_L);
        ASSERT_TRUE(monitor_contexts_find_reclaim_id(c, ID_L) == ctx);
        ASSERT_NULL(monitor_contexts_find_reclaim_id(c, TOKEN_L));
        /* One name, old or new, is one context. */
        ASSERT_ERRNO(monitor_contexts_restore(c, l2.w, "ctxid.1002." ID_L, NULL), EEXIST);
        ASSERT_TRUE(probe_closed(&l2));

        c = monitor_contexts_free(c, true);
        ASSERT_TRUE(probe_closed(&p));
        ASSERT_TRUE(probe_closed(&l));
        close(p.r);
        close(q.r);
        close(l.r);
        close(l2.r);
}

/* SECURITY: the cap leaves the monitor its reserve, whatever RLIMIT_NOFILE is. */
TEST(max_for_nofile) {
        ASSERT_EQ(monitor_contexts_max_for_nofile(65536, 4096), 4096);
        ASSERT_EQ(monitor_contexts_max_for_nofile(RLIM_INFINITY, 4096), 4096);
        ASSERT_EQ(monitor_contexts_max_for_nofile(4096 + MONITOR_FDS_RESERVED, 4096), 4096);
        ASSERT_EQ(monitor_contexts_max_for_nofile(4095 + MONITOR_FDS_RESERVED, 4096), 4095);
        ASSERT_EQ(monitor_contexts_max_for_nofile(1024, 4096), 1024 - MONITOR_FDS_RESERVED);
        ASSERT_EQ(monitor_contexts_max_for_nofile(MONITOR_FDS_RESERVED + 1, 4096), 1);
        ASSERT_EQ(monitor_contexts_max_for_nofile(MONITOR_FDS_RESERVED, 4096), 0);
        ASSERT_EQ(monitor_contexts_max_for_nofile(0, 4096), 0);
        /* What the reserve is made of, at the least. */
        ASSERT_GE(MONITOR_FDS_RESERVED, TSM_PRIV_REQUESTS_MAX + TSM_PRIV_BATCH_MAX);
}

TEST(max_contexts) {
        _cleanup_(monitor_contexts_free_preservep) MonitorContexts *c = NULL;
        struct event_base *base = event_base_new();
        TsmPlatform *p = emulated_platform(base);
        Probe pa = probe_new(), pb = probe_new(), pc = probe_new(), pr = probe_new(), pd = probe_new();
        uint32_t a, id;

        unsetenv("NOTIFY_SOCKET");
        ASSERT_OK(monitor_contexts_new(&c));
        ASSERT_EQ(monitor_contexts_get_max(c), SIZE_MAX);
        monitor_contexts_set_max(c, 2);
        ASSERT_EQ(monitor_contexts_get_max(c), 2);

        ASSERT_OK(monitor_contexts_add(c, pa.w, 1, 1000, ID_A, &a));
        ASSERT_FALSE(monitor_contexts_is_full(c));
        ASSERT_OK(monitor_contexts_add(c, pb.w, 2, 1001, ID_B, NULL));
        ASSERT_TRUE(monitor_contexts_is_full(c));

        /* Full: refused, and the fd is not kept. A taken token is still told apart. */
        ASSERT_ERRNO(monitor_contexts_add(c, pc.w, 3, 1002, ID_C, NULL), EMFILE);
        ASSERT_TRUE(probe_closed(&pc));
        ASSERT_ERRNO(monitor_contexts_restore(c, pr.w, "ctxid.1002." ID_C, NULL), EMFILE);
        ASSERT_TRUE(probe_closed(&pr));
        ASSERT_EQ(monitor_contexts_size(c), 2);

        /* A context gone makes room. */
        ASSERT_OK(monitor_contexts_remove(c, p, a));
        ASSERT_OK(monitor_contexts_add(c, pd.w, 3, 1002, ID_C, &id));
        ASSERT_EQ(id, 3);

        /* Lowered below what it holds: none ends, none more comes. */
        monitor_contexts_set_max(c, 1);
        ASSERT_EQ(monitor_contexts_size(c), 2);
        ASSERT_TRUE(monitor_contexts_is_full(c));

        c = monitor_contexts_free(c, false);
        ASSERT_TRUE(probe_closed(&pb));
        ASSERT_TRUE(probe_closed(&pd));
        tsm_platform_free(p);
        event_base_free(base);
        close(pa.r);
        close(pb.r);
        close(pc.r);
        close(pr.r);
        close(pd.r);
}

TEST(vdevices) {
        _cleanup_(monitor_contexts_free_preservep) MonitorContexts *c = NULL;
        struct event_base *base = event_base_new();
        TsmPlatform *p = emulated_platform(base);
        EmuDevice *dev = emu_platform_find_device(tsm_platform_get_emulated(p), "0000:01:00.0");
        MonitorContext *ctx, *holder = NULL;
        MonitorVDevice *v, *w;
        Probe pa = probe_new();
        uint32_t id;

        unsetenv("NOTIFY_SOCKET");
        ASSERT_NOT_NULL(dev);
        ASSERT_OK(monitor_contexts_new(&c));
        ASSERT_OK(monitor_contexts_add(c, pa.w, 1, 1000, ID_A, &id));
        ctx = monitor_contexts_get(c, id);

        ASSERT_ERRNO(monitor_context_add_vdevice(ctx, 0, "0000:01:00.0", NULL), EINVAL);
        ASSERT_ERRNO(monitor_context_add_vdevice(ctx, 1, "0000:01:00.0.0000000", NULL), EINVAL);
        ASSERT_OK(monitor_context_add_vdevice(ctx, 7, "0000:01:00.0", &v));
        ASSERT_EQ(v->id, 7);
        ASSERT_FALSE(v->bound);
        ASSERT_ERRNO(monitor_context_add_vdevice(ctx, 7, "0000:02:00.0", NULL), EEXIST);
        ASSERT_OK(monitor_context_add_vdevice(ctx, 8, "0000:02:00.0", NULL));
        ASSERT_EQ(ctx->n_vdevices, 2);
        ASSERT_NULL(monitor_context_find_vdevice(ctx, 9));

        w = monitor_contexts_find_device(c, "0000:02:00.0", &holder);
        ASSERT_NOT_NULL(w);
        ASSERT_EQ(w->id, 8);
        ASSERT_TRUE(holder == ctx);
        ASSERT_NULL(monitor_contexts_find_device(c, "0000:03:00.0", NULL));

        /* A vDevice whose device went away holds it no longer, and is not bound. */
        w->bound = true;
        monitor_contexts_device_gone(c, "0000:02:00.0");
        ASSERT_TRUE(w->gone);
        ASSERT_FALSE(w->bound);
        ASSERT_FALSE(monitor_context_find_vdevice(ctx, 7)->gone);
        ASSERT_NULL(monitor_contexts_find_device(c, "0000:02:00.0", NULL));
        ASSERT_OK(monitor_context_add_vdevice(ctx, 9, "0000:02:00.0", NULL));
        ASSERT_EQ(monitor_contexts_find_device(c, "0000:02:00.0", NULL)->id, 9);
        monitor_context_remove_vdevice(ctx, p, monitor_context_find_vdevice(ctx, 9));

        /* Detaching an unbound vDevice touches nothing else. */
        monitor_context_remove_vdevice(ctx, p, monitor_context_find_vdevice(ctx, 8));
        ASSERT_EQ(ctx->n_vdevices, 1);
        ASSERT_NULL(monitor_contexts_find_device(c, "0000:02:00.0", NULL));

        /* Removing a context unbinds what is still bound. */
        v = monitor_context_find_vdevice(ctx, 7);
        ASSERT_OK(emu_device_bind(dev, NULL));
        v->bound = true;
        ASSERT_EQ(emu_device_get_state(dev), TDISP_STATE_CONFIG_LOCKED);
        ASSERT_OK(monitor_contexts_remove(c, p, id));
        ASSERT_EQ(emu_device_get_state(dev), TDISP_STATE_CONFIG_LOCKED); /* the device's turn comes */
        ASSERT_OK(event_base_loop(base, EVLOOP_NONBLOCK));
        ASSERT_EQ(emu_device_get_state(dev), TDISP_STATE_CONFIG_UNLOCKED);
        ASSERT_TRUE(probe_closed(&pa));

        c = monitor_contexts_free(c, false);
        tsm_platform_free(p);
        event_base_free(base);
        close(pa.r);
}

/* ---- the fd store, with this test as the service manager ---------------------------------- */

typedef struct Notify {
        char dir[64];
        int fd;
} Notify;

static void notify_setup(Notify *n) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        snprintf(n->dir, sizeof(n->dir), "/tmp/tsmd-test-notify-XXXXXX");
        ASSERT_NOT_NULL(mkdtemp(n->dir));
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", n->dir);
        n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        ASSERT_OK(n->fd);
        ASSERT_OK(bind(n->fd, (struct sockaddr *) &sa, sizeof(sa)));
        ASSERT_OK(setenv("NOTIFY_SOCKET", sa.sun_path, 1));
}

static void notify_done(Notify *n) {
        char path[128];

        snprintf(path, sizeof(path), "%s/notify", n->dir);
        unlink(path);
        rmdir(n->dir);
        close(n->fd);
        unsetenv("NOTIFY_SOCKET");
}

/* The next notification, or "" if none is waiting; *ret_fd gets its fd (or -1). */
static const char *notify_next(Notify *n, char *text, size_t size, int *ret_fd) {
        union {
                struct cmsghdr cmsg;
                uint8_t b[CMSG_SPACE(sizeof(int) * 4) + CMSG_SPACE(sizeof(struct ucred))];
        } control;
        struct iovec iov = { .iov_base = text, .iov_len = size - 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof(control) };
        ssize_t k;

        *ret_fd = -1;
        k = recvmsg(n->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (k < 0) {
                ASSERT_EQ(errno, EAGAIN);
                text[0] = 0;
                return text;
        }
        text[k] = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                        ASSERT_EQ(c->cmsg_len, CMSG_LEN(sizeof(int)));
                        memcpy(ret_fd, CMSG_DATA(c), sizeof(int));
                }
        return text;
}

/* carrier is a carrier (a rename's, a shared context's: fdstore.h) of the fd whose pipe's other end is other: a
 * datagram socket with that fd in flight, which a peek leaves there. Closes carrier. */
static void expect_carrier_of(int carrier, int other) {
        struct stat st_fd, st_other;
        int fd, again;

        ASSERT_GE(carrier, 0);
        ASSERT_OK(fdstore_carried_fd(carrier, &fd));
        ASSERT_OK(fstat(fd, &st_fd));
        ASSERT_OK(fstat(other, &st_other));
        ASSERT_EQ(st_fd.st_ino, st_other.st_ino);
        close(fd);
        ASSERT_OK(fdstore_carried_fd(carrier, &again));
        close(again);
        close(carrier);
}

/* A carrier of fd, as a rename stores one (not taken); of nothing if fd is negative. */
static int carrier_of(int fd) {
        union {
                struct cmsghdr cmsg;
                uint8_t buf[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct iovec iov = { .iov_base = (char[]) { 'c' }, .iov_len = 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof(control.buf) };
        int sv[2];

        ASSERT_OK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv));
        if (fd >= 0) {
                control.cmsg.cmsg_level = SOL_SOCKET;
                control.cmsg.cmsg_type = SCM_RIGHTS;
                control.cmsg.cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(&control.cmsg), &fd, sizeof(int));
        } else {
                mh.msg_control = NULL;
                mh.msg_controllen = 0;
        }
        ASSERT_EQ(sendmsg(sv[0], &mh, 0), 1);
        close(sv[0]);
        return sv[1];
}

/*
 * The service manager refusing to take an old-style name out of its store: this test's
 * sd_notifyf() stands in for libsystemd's (fdstore.c removes through it, and the test binary's
 * definition comes first), failing every FDSTOREREMOVE of a "ctx." name while set, and
 * passing everything else on.
 */
static bool fail_legacy_remove, fail_remove, fail_put;
static unsigned n_failed_removes;

/* The same for storing: while fail_put is set, a context's entry under its own name (not a
 * carrier, which is not polled) is refused, as a service manager whose FileDescriptorStoreMax=
 * is reached refuses it. */
int sd_pid_notify_with_fds(pid_t pid, int unset_environment, const char *state, const int *fds, unsigned n_fds) {
        static int (*real)(pid_t, int, const char *, const int *, unsigned);

        if (fail_put && strncmp(state, "FDSTORE=1\nFDNAME=", strlen("FDSTORE=1\nFDNAME=")) == 0)
                return -ENOBUFS;
        if (!real)
                real = dlsym(RTLD_NEXT, "sd_pid_notify_with_fds");
        ASSERT_NOT_NULL(real);
        return real(pid, unset_environment, state, fds, n_fds);
}

int sd_notifyf(int unset_environment, const char *format, ...) {
        _cleanup_free_ char *text = NULL;
        va_list ap;
        int r;

        va_start(ap, format);
        r = vasprintf(&text, format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        if ((fail_legacy_remove && strstr(text, "FDSTOREREMOVE=1\nFDNAME=" FDSTORE_PREFIX_LEGACY)) ||
            (fail_remove && strstr(text, "FDSTOREREMOVE=1"))) {
                n_failed_removes++;
                return -EIO;
        }
        return sd_notify(unset_environment, text);
}

TEST(fdstore) {
        _cleanup_(monitor_contexts_free_preservep) MonitorContexts *c = NULL;
        struct event_base *base = event_base_new();
        TsmPlatform *p = emulated_platform(base);
        Probe pa = probe_new(), pb = probe_new(), pr = probe_new();
        char text[256];
        uint32_t a, b, r;
        Notify n;
        int fd;

        notify_setup(&n);
        ASSERT_TRUE(fdstore_available());
        ASSERT_OK(monitor_contexts_new(&c));

        /* A new context goes to the store under its owner and reclaim id. */
        ASSERT_OK(monitor_contexts_add(c, pa.w, 1, 1000, ID_A, &a));
        ASSERT_TRUE(monitor_contexts_get(c, a)->stored);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDNAME=ctxid.1000." ID_A);
        ASSERT_GE(fd, 0);
        close(fd); /* the store's copy */
        ASSERT_OK(monitor_contexts_add(c, pb.w, 2, 1001, ID_B, &b));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDNAME=ctxid.1001." ID_B);
        close(fd);

        /* A restored one is in the store already. */
        ASSERT_OK(monitor_contexts_restore(c, pr.w, "ctxid.1002." ID_C, &r));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");

        /* One a tsmd before this one stored under its token goes under its reclaim id, and the
         * old name out of the store: first, as systemd drops a second copy of an fd it has. */
        Probe pl = probe_new();
        uint32_t l;
        ASSERT_OK(monitor_contexts_restore(c, pl.w, "ctx.1004." TOKEN_L, &l));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctx.1004." TOKEN_L);
        ASSERT_EQ(fd, -1);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDNAME=ctxid.1004." ID_L);
        ASSERT_GE(fd, 0);
        {
                struct stat st_fd, st_pipe;

                /* The same pipe: the context's fd, not another. */
                ASSERT_OK(fstat(fd, &st_fd));
                ASSERT_OK(fstat(pl.r, &st_pipe));
                ASSERT_EQ(st_fd.st_ino, st_pipe.st_ino);
        }
        close(fd);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        ASSERT_TRUE(monitor_contexts_get(c, l)->stored);

        /* Closing a context takes it out. */
        ASSERT_OK(monitor_contexts_remove(c, p, a));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_A);
        ASSERT_EQ(fd, -1);

        /* Restored past the maximum: dropped, and out of the store, or it would come back at
         * every start. */
        Probe po = probe_new();
        monitor_contexts_set_max(c, monitor_contexts_size(c));
        ASSERT_ERRNO(monitor_contexts_restore(c, po.w, "ctxid.1003." ID_A, NULL), EMFILE);
        ASSERT_TRUE(probe_closed(&po));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1003." ID_A);
        ASSERT_EQ(fd, -1);
        close(po.r);
        /* One under its token: out of the store by that name, and stored under none. */
        po = probe_new();
        ASSERT_ERRNO(monitor_contexts_restore(c, po.w, "ctx.1005." TOKEN_M, NULL), EMFILE);
        ASSERT_TRUE(probe_closed(&po));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctx.1005." TOKEN_M);
        ASSERT_EQ(fd, -1);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        close(po.r);

        /* Stopping to be restarted: the store keeps the rest. */
        c = monitor_contexts_free(c, true);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        ASSERT_TRUE(probe_closed(&pb));
        ASSERT_TRUE(probe_closed(&pr));
        ASSERT_TRUE(probe_closed(&pl));

        /* Stopping for good: out of the store, restored ones too. */
        Probe pb2 = probe_new(), pr2 = probe_new();
        ASSERT_OK(monitor_contexts_new(&c));
        ASSERT_OK(monitor_contexts_restore(c, pb2.w, "ctxid.1001." ID_B, NULL));
        ASSERT_OK(monitor_contexts_restore(c, pr2.w, "ctxid.1002." ID_C, NULL));
        c = monitor_contexts_free(c, false);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1001." ID_B);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1002." ID_C);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");

        notify_done(&n);
        tsm_platform_free(p);
        event_base_free(base);
        close(pa.r);
        close(pb.r);
        close(pr.r);
        close(pl.r);
        close(pb2.r);
        close(pr2.r);
}

/* A reclaim renews the token: the context leaves the store under its old name, then goes in
 * under the new one (systemd drops a second copy of an fd it has), and is taken out under that
 * when it ends. One whose old name cannot be taken out keeps it, and its name. */
TEST(fdstore_rename) {
        _cleanup_(monitor_contexts_free_preservep) MonitorContexts *c = NULL;
        struct event_base *base = event_base_new();
        TsmPlatform *p = emulated_platform(base);
        Probe pa = probe_new(), pb = probe_new(), pl = probe_new();
        struct stat st_fd, st_pipe;
        MonitorContext *ctx;
        char text[256];
        uint32_t a, b, l;
        Notify n;
        int fd;

        notify_setup(&n);
        ASSERT_OK(monitor_contexts_new(&c));
        ASSERT_OK(monitor_contexts_add(c, pa.w, 1, 1000, ID_A, &a));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDNAME=ctxid.1000." ID_A);
        close(fd);
        ASSERT_OK(monitor_contexts_add(c, pb.w, 2, 1000, ID_B, &b));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDNAME=ctxid.1000." ID_B);
        close(fd);
        ctx = monitor_contexts_get(c, a);

        /* Not to a bad id, nor to one another context has (or its own): nothing changes. */
        ASSERT_ERRNO(monitor_contexts_rename(c, ctx, "0123456789ABCDEF0123456789ABCDEF"), EINVAL);
        ASSERT_ERRNO(monitor_contexts_rename(c, ctx, ID_B), EEXIST);
        ASSERT_ERRNO(monitor_contexts_rename(c, ctx, ID_A), EEXIST);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");

        ASSERT_OK(monitor_contexts_rename(c, ctx, ID_C));
        /* Its carrier first: a socket of its own, with the context's fd in it. */
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDPOLL=0\nFDNAME=ctxid.1000." ID_C "." ID_A);
        expect_carrier_of(fd, pa.r);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_A);
        ASSERT_EQ(fd, -1);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDNAME=ctxid.1000." ID_C);
        ASSERT_GE(fd, 0);
        ASSERT_OK(fstat(fd, &st_fd));
        ASSERT_OK(fstat(pa.r, &st_pipe));
        ASSERT_EQ(st_fd.st_ino, st_pipe.st_ino); /* the context's fd, not another */
        close(fd);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_C "." ID_A);
        ASSERT_EQ(fd, -1);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        ASSERT_STREQ(ctx->reclaim_id, ID_C);
        ASSERT_TRUE(ctx->stored);
        ASSERT_TRUE(monitor_contexts_find_reclaim_id(c, ID_C) == ctx);
        ASSERT_NULL(monitor_contexts_find_reclaim_id(c, ID_A));
        ASSERT_OK(monitor_contexts_remove(c, p, a));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_C);

        /* Still under an old-style name (systemd would not take it out at the start): that is
         * the name that leaves, and the context keeps none of it. */
        fail_legacy_remove = true;
        ASSERT_OK(monitor_contexts_restore(c, pl.w, "ctx.1004." TOKEN_L, &l));
        fail_legacy_remove = false;
        ctx = monitor_contexts_get(c, l);
        ASSERT_NOT_NULL(ctx->legacy_name);
        ASSERT_OK(monitor_contexts_rename(c, ctx, ID_A));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDPOLL=0\nFDNAME=ctxid.1004." ID_A "." ID_L);
        expect_carrier_of(fd, pl.r);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctx.1004." TOKEN_L);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDNAME=ctxid.1004." ID_A);
        close(fd);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1004." ID_A "." ID_L);
        ASSERT_NULL(ctx->legacy_name);
        ASSERT_STREQ(ctx->reclaim_id, ID_A);

        /* The old name cannot be taken out: the rename fails, and the context keeps its name
         * (the carrier's removal is tried too; here it fails as well). */
        fail_remove = true;
        ASSERT_ERRNO(monitor_contexts_rename(c, ctx, ID_M), EIO);
        fail_remove = false;
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDPOLL=0\nFDNAME=ctxid.1004." ID_M "." ID_A);
        expect_carrier_of(fd, pl.r);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        ASSERT_STREQ(ctx->reclaim_id, ID_A);
        ASSERT_TRUE(ctx->stored);

        c = monitor_contexts_free(c, false);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_B);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1004." ID_A);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");

        notify_done(&n);
        tsm_platform_free(p);
        event_base_free(base);
        close(pa.r);
        close(pb.r);
        close(pl.r);
}

/*
 * tsmd died inside a rename, and the fd store hands back the carrier with what the rename had
 * got to: the old name still there (the carrier goes, the context keeps its old name), the new
 * one there already (the carrier goes), or the carrier alone (the context comes back under the
 * new name, stored under it, then the carrier goes). The store then holds the fd under one name.
 * The carrier may come before or after the context's own name. One holding no fd, or one past
 * the maximum, is dropped, out of the store too.
 */
/* The fd store takes the rename's carrier but not the new name: the carrier, the one entry that
 * holds the fd, stays until the context ends, and a start restores the context from it. */
TEST(fdstore_rename_new_name_refused) {
        _cleanup_(monitor_contexts_free_preservep) MonitorContexts *c = NULL;
        struct event_base *base = event_base_new();
        TsmPlatform *p = emulated_platform(base);
        Probe pa = probe_new();
        MonitorContext *ctx;
        char text[256];
        uint32_t a;
        Notify n;
        int fd;

        notify_setup(&n);
        ASSERT_OK(monitor_contexts_new(&c));
        ASSERT_OK(monitor_contexts_add(c, pa.w, 1, 1000, ID_A, &a));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDNAME=ctxid.1000." ID_A);
        close(fd);
        ctx = monitor_contexts_get(c, a);

        fail_put = true;
        ASSERT_OK(monitor_contexts_rename(c, ctx, ID_C));
        fail_put = false;
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDPOLL=0\nFDNAME=ctxid.1000." ID_C "." ID_A);
        expect_carrier_of(fd, pa.r);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_A);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), ""); /* the carrier stays */
        ASSERT_STREQ(ctx->reclaim_id, ID_C);
        ASSERT_TRUE(ctx->stored);

        /* Its end takes the carrier out, the name it is stored under. */
        ASSERT_OK(monitor_contexts_remove(c, p, a));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_C "." ID_A);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        ASSERT_TRUE(probe_closed(&pa));
        close(pa.r);

        /* A start that restores a context from its carrier, and whose put under the new name is
         * refused, keeps the carrier too. */
        Probe pc = probe_new();
        ASSERT_EQ(monitor_contexts_restore(c, carrier_of(pc.w), "ctxid.1000." ID_B "." ID_A, NULL), 1);
        close(pc.w);
        fail_put = true;
        monitor_contexts_restore_done(c);
        fail_put = false;
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        ctx = monitor_contexts_find_reclaim_id(c, ID_B);
        ASSERT_NOT_NULL(ctx);
        ASSERT_TRUE(ctx->stored);
        ASSERT_OK(monitor_contexts_remove(c, p, ctx->id));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_B "." ID_A);
        ASSERT_TRUE(probe_closed(&pc));
        close(pc.r);

        c = monitor_contexts_free(c, false);
        tsm_platform_free(p);
        event_base_free(base);
        notify_done(&n);
}

TEST(fdstore_rename_cut_off) {
        _cleanup_(monitor_contexts_free_preservep) MonitorContexts *c = NULL;
        MonitorContext *ctx;
        char text[256];
        uint32_t id;
        Notify n;
        int fd;

        notify_setup(&n);
        for (unsigned order = 0; order < 2; order++) {
                /* The old name there: the rename had not taken it out. */
                Probe p = probe_new();
                int carrier = carrier_of(p.w);

                ASSERT_OK(monitor_contexts_new(&c));
                if (order == 0)
                        ASSERT_OK(monitor_contexts_restore(c, fcntl(p.w, F_DUPFD_CLOEXEC, 3), "ctxid.1000." ID_A, NULL));
                ASSERT_EQ(monitor_contexts_restore(c, carrier, "ctxid.1000." ID_C "." ID_A, &id), 1);
                ASSERT_EQ(id, 0u);
                if (order == 1)
                        ASSERT_OK(monitor_contexts_restore(c, fcntl(p.w, F_DUPFD_CLOEXEC, 3), "ctxid.1000." ID_A, NULL));
                close(p.w);
                ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
                monitor_contexts_restore_done(c);
                ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_C "." ID_A);
                ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
                ASSERT_EQ(monitor_contexts_size(c), 1u);
                ASSERT_NOT_NULL(monitor_contexts_find_reclaim_id(c, ID_A));
                c = monitor_contexts_free(c, true);
                ASSERT_TRUE(probe_closed(&p)); /* the carrier's copy too */
                close(p.r);

                /* The new name there already. */
                p = probe_new();
                carrier = carrier_of(p.w);
                ASSERT_OK(monitor_contexts_new(&c));
                if (order == 0)
                        ASSERT_OK(monitor_contexts_restore(c, fcntl(p.w, F_DUPFD_CLOEXEC, 3), "ctxid.1000." ID_C, NULL));
                ASSERT_EQ(monitor_contexts_restore(c, carrier, "ctxid.1000." ID_C "." ID_A, NULL), 1);
                if (order == 1)
                        ASSERT_OK(monitor_contexts_restore(c, fcntl(p.w, F_DUPFD_CLOEXEC, 3), "ctxid.1000." ID_C, NULL));
                close(p.w);
                monitor_contexts_restore_done(c);
                ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_C "." ID_A);
                ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
                ASSERT_EQ(monitor_contexts_size(c), 1u);
                ASSERT_NOT_NULL(monitor_contexts_find_reclaim_id(c, ID_C));
                c = monitor_contexts_free(c, true);
                ASSERT_TRUE(probe_closed(&p));
                close(p.r);
        }

        /* The carrier alone: the context comes back under the new name, from the carrier's fd. */
        Probe p = probe_new();
        ASSERT_OK(monitor_contexts_new(&c));
        ASSERT_EQ(monitor_contexts_restore(c, carrier_of(p.w), "ctxid.1000." ID_C "." ID_A, NULL), 1);
        close(p.w);
        ASSERT_EQ(monitor_contexts_size(c), 0u);
        monitor_contexts_restore_done(c);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDNAME=ctxid.1000." ID_C);
        {
                struct stat st_fd, st_pipe;

                ASSERT_GE(fd, 0);
                ASSERT_OK(fstat(fd, &st_fd));
                ASSERT_OK(fstat(p.r, &st_pipe));
                ASSERT_EQ(st_fd.st_ino, st_pipe.st_ino);
                close(fd);
        }
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_C "." ID_A);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        ASSERT_EQ(monitor_contexts_size(c), 1u);
        ctx = monitor_contexts_find_reclaim_id(c, ID_C);
        ASSERT_NOT_NULL(ctx);
        ASSERT_EQ(ctx->uid, 1000u);
        ASSERT_EQ(ctx->slot, TSM_PRIV_SLOT_WORKER);
        ASSERT_TRUE(ctx->partial);
        ASSERT_TRUE(ctx->stored);
        ASSERT_NULL(monitor_contexts_find_reclaim_id(c, ID_A));
        /* Ended for good: out of the store under the new name, and the fd closed, the carrier's
         * copy too. */
        c = monitor_contexts_free(c, false);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_C);
        ASSERT_TRUE(probe_closed(&p));
        close(p.r);

        /* A carrier left behind by a rename done long ago (its removal failed), the context
         * renamed again since: the fd is known, under another name. Dropped: it would be a second
         * context of the fd, under an id whose token is void. */
        p = probe_new();
        ASSERT_OK(monitor_contexts_new(&c));
        ASSERT_EQ(monitor_contexts_restore(c, carrier_of(p.w), "ctxid.1000." ID_C "." ID_A, NULL), 1);
        ASSERT_OK(monitor_contexts_restore(c, fcntl(p.w, F_DUPFD_CLOEXEC, 3), "ctxid.1000." ID_B, NULL));
        close(p.w);
        monitor_contexts_restore_done(c);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_C "." ID_A);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        ASSERT_EQ(monitor_contexts_size(c), 1u);
        ASSERT_NOT_NULL(monitor_contexts_find_reclaim_id(c, ID_B));
        ASSERT_NULL(monitor_contexts_find_reclaim_id(c, ID_C));
        c = monitor_contexts_free(c, true);
        ASSERT_TRUE(probe_closed(&p));
        close(p.r);

        /* A carrier of nothing, one past the maximum, and one never settled: dropped. */
        p = probe_new();
        ASSERT_OK(monitor_contexts_new(&c));
        monitor_contexts_set_max(c, 0);
        ASSERT_EQ(monitor_contexts_restore(c, carrier_of(-1), "ctxid.1000." ID_C "." ID_A, NULL), 1);
        ASSERT_EQ(monitor_contexts_restore(c, carrier_of(p.w), "ctxid.1001." ID_B "." ID_A, NULL), 1);
        close(p.w);
        monitor_contexts_restore_done(c);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_C "." ID_A);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1001." ID_B "." ID_A);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        ASSERT_EQ(monitor_contexts_size(c), 0u);
        ASSERT_TRUE(probe_closed(&p));
        close(p.r);
        p = probe_new();
        ASSERT_EQ(monitor_contexts_restore(c, carrier_of(p.w), "ctxid.1000." ID_C "." ID_A, NULL), 1);
        close(p.w);
        c = monitor_contexts_free(c, true);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        ASSERT_TRUE(probe_closed(&p));
        close(p.r);

        notify_done(&n);
}

/* Whether a and b are one file description, as the kernel tells. */
static bool same_file(int a, int b) {
        long r = syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, a, b);

        ASSERT_GE(r, 0);
        return r == 0;
}

/*
 * Two contexts of one file description (an AdoptContext of the iommufd another context has):
 * systemd keeps one copy of a file description, so the second goes in a carrier of its own, and
 * each is taken out under its own name when it ends, whichever ends first.
 */
TEST(fdstore_shared) {
        _cleanup_(monitor_contexts_free_preservep) MonitorContexts *c = NULL;
        struct event_base *base = event_base_new();
        TsmPlatform *p = emulated_platform(base);
        Probe pa = probe_new(), pb = probe_new();
        MonitorContext *ctx;
        char text[256];
        uint32_t a, a2, a3, b, b2;
        Notify n;
        int fd;

        notify_setup(&n);
        ASSERT_OK(monitor_contexts_new(&c));
        for (unsigned order = 0; order < 2; order++) {
                ASSERT_OK(monitor_contexts_add(c, fcntl(pa.w, F_DUPFD_CLOEXEC, 3), 1, 1000, ID_A, &a));
                ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDNAME=ctxid.1000." ID_A);
                close(fd);
                ctx = monitor_contexts_get(c, a);
                ASSERT_TRUE(ctx->stored);
                ASSERT_FALSE(ctx->shared);
                /* Another file: under its name, as any. */
                ASSERT_OK(monitor_contexts_add(c, fcntl(pb.w, F_DUPFD_CLOEXEC, 3), 1, 1000, ID_B, &b));
                ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDNAME=ctxid.1000." ID_B);
                close(fd);
                ASSERT_FALSE(monitor_contexts_get(c, b)->shared);
                /* The same file description again, on another slot. */
                ASSERT_OK(monitor_contexts_add(c, fcntl(pa.w, F_DUPFD_CLOEXEC, 3), 2, 1000, ID_C, &a2));
                ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd),
                             "FDSTORE=1\nFDPOLL=0\nFDNAME=ctxid.1000." ID_C ".shared");
                expect_carrier_of(fd, pa.r);
                ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
                ctx = monitor_contexts_get(c, a2);
                ASSERT_TRUE(ctx->stored);
                ASSERT_TRUE(ctx->shared);
                ASSERT_STREQ(ctx->shared_from, "");

                /* Each out under its own name, whichever ends first. */
                const char *removed_a = "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_A,
                           *removed_a2 = "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_C ".shared";
                ASSERT_OK(monitor_contexts_remove(c, p, order == 0 ? a : a2));
                ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), order == 0 ? removed_a : removed_a2);
                ASSERT_OK(monitor_contexts_remove(c, p, order == 0 ? a2 : a));
                ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), order == 0 ? removed_a2 : removed_a);
                ASSERT_OK(monitor_contexts_remove(c, p, b));
                ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_B);
                ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        }

        /* Renamed, one of two (either): the new entry in first, a carrier naming the old id, then
         * the old name out. */
        ASSERT_OK(monitor_contexts_add(c, fcntl(pa.w, F_DUPFD_CLOEXEC, 3), 1, 1000, ID_A, &a));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDNAME=ctxid.1000." ID_A);
        close(fd);
        ASSERT_OK(monitor_contexts_add(c, fcntl(pa.w, F_DUPFD_CLOEXEC, 3), 2, 1000, ID_B, &a2));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDPOLL=0\nFDNAME=ctxid.1000." ID_B ".shared");
        close(fd);
        ctx = monitor_contexts_get(c, a);
        ASSERT_OK(monitor_contexts_rename(c, ctx, ID_C));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd),
                     "FDSTORE=1\nFDPOLL=0\nFDNAME=ctxid.1000." ID_C "." ID_A ".shared");
        expect_carrier_of(fd, pa.r);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_A);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        ASSERT_TRUE(ctx->stored);
        ASSERT_TRUE(ctx->shared);
        ASSERT_STREQ(ctx->shared_from, ID_A);
        ASSERT_STREQ(ctx->reclaim_id, ID_C);
        ctx = monitor_contexts_get(c, a2);
        ASSERT_OK(monitor_contexts_rename(c, ctx, ID_L));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd),
                     "FDSTORE=1\nFDPOLL=0\nFDNAME=ctxid.1000." ID_L "." ID_B ".shared");
        expect_carrier_of(fd, pa.r);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_B ".shared");
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        ASSERT_STREQ(ctx->shared_from, ID_B);

        /* Its old name cannot be taken out: the new entry goes again, and it keeps its name. */
        fail_remove = true;
        ASSERT_ERRNO(monitor_contexts_rename(c, ctx, ID_M), EIO);
        fail_remove = false;
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd),
                     "FDSTORE=1\nFDPOLL=0\nFDNAME=ctxid.1000." ID_M "." ID_L ".shared");
        close(fd);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        ASSERT_STREQ(ctx->reclaim_id, ID_L);
        ASSERT_STREQ(ctx->shared_from, ID_B);
        ASSERT_TRUE(ctx->stored);

        /* The other ends: renamed now, the one left is the only one of its file, and goes the way
         * any goes, through a rename's carrier, under its name. */
        ASSERT_OK(monitor_contexts_remove(c, p, a));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_C "." ID_A ".shared");
        ASSERT_OK(monitor_contexts_rename(c, ctx, ID_A));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDPOLL=0\nFDNAME=ctxid.1000." ID_A "." ID_L);
        close(fd);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_L "." ID_B ".shared");
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDNAME=ctxid.1000." ID_A);
        ASSERT_GE(fd, 0);
        ASSERT_TRUE(same_file(fd, pa.w));
        close(fd);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_A "." ID_L);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        ASSERT_FALSE(ctx->shared);
        ASSERT_STREQ(ctx->shared_from, "");

        /* Another of its file: in a carrier again; another file's under its name. */
        ASSERT_OK(monitor_contexts_add(c, fcntl(pa.w, F_DUPFD_CLOEXEC, 3), 3, 1000, ID_C, &a3));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDPOLL=0\nFDNAME=ctxid.1000." ID_C ".shared");
        close(fd);
        ASSERT_OK(monitor_contexts_add(c, fcntl(pb.w, F_DUPFD_CLOEXEC, 3), 3, 1000, ID_B, &b2));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDNAME=ctxid.1000." ID_B);
        close(fd);

        /* Stopping for good: each out under its own name. */
        c = monitor_contexts_free(c, false);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_A);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_C ".shared");
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_B);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        close(pa.w);
        close(pb.w);
        ASSERT_TRUE(probe_closed(&pa));
        ASSERT_TRUE(probe_closed(&pb));

        notify_done(&n);
        tsm_platform_free(p);
        event_base_free(base);
        close(pa.r);
        close(pb.r);
}

/*
 * A shared context's carrier handed back: the context it carries comes back, shared still, and
 * stored (nothing is stored again). One holding nothing, or past the maximum, is dropped, out of
 * the store too. A rename cut off before the old name went out (both come back) keeps the old
 * name, the one the VMM's token has: the new entry goes, whichever came first.
 */
TEST(fdstore_shared_restore) {
        _cleanup_(monitor_contexts_free_preservep) MonitorContexts *c = NULL;
        Probe pa = probe_new(), pn = probe_new(), po = probe_new();
        MonitorContext *ctx;
        char text[256];
        uint32_t id;
        Notify n;
        int fd;

        notify_setup(&n);
        ASSERT_OK(monitor_contexts_new(&c));
        ASSERT_OK(monitor_contexts_restore(c, fcntl(pa.w, F_DUPFD_CLOEXEC, 3), "ctxid.1000." ID_A, NULL));
        ASSERT_OK(monitor_contexts_restore(c, carrier_of(pa.w), "ctxid.1000." ID_B ".shared", &id));
        ASSERT_OK(monitor_contexts_restore(c, carrier_of(pa.w), "ctxid.1000." ID_C "." ID_M ".shared", NULL));
        ctx = monitor_contexts_get(c, id);
        ASSERT_NOT_NULL(ctx);
        ASSERT_STREQ(ctx->reclaim_id, ID_B);
        ASSERT_EQ(ctx->uid, 1000u);
        ASSERT_EQ(ctx->slot, TSM_PRIV_SLOT_WORKER);
        ASSERT_TRUE(ctx->partial);
        ASSERT_TRUE(ctx->stored);
        ASSERT_TRUE(ctx->shared);
        ASSERT_STREQ(ctx->shared_from, "");
        ASSERT_TRUE(same_file(ctx->fd, pa.w));
        ctx = monitor_contexts_find_reclaim_id(c, ID_C);
        ASSERT_NOT_NULL(ctx);
        ASSERT_STREQ(ctx->shared_from, ID_M);
        /* ID_M is not here: nothing to settle. */
        monitor_contexts_restore_done(c);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        ASSERT_EQ(monitor_contexts_size(c), 3u);
        /* A renamed one ended: out under the name that says where it came from. */
        c = monitor_contexts_free(c, false);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_A);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_B ".shared");
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd),
                     "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_C "." ID_M ".shared");
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");

        /* A carrier of nothing, and one past the maximum. */
        ASSERT_OK(monitor_contexts_new(&c));
        ASSERT_ERRNO(monitor_contexts_restore(c, carrier_of(-1), "ctxid.1000." ID_A ".shared", NULL), EBADMSG);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_A ".shared");
        monitor_contexts_set_max(c, 0);
        ASSERT_ERRNO(monitor_contexts_restore(c, carrier_of(po.w), "ctxid.1000." ID_B "." ID_A ".shared", NULL),
                     EMFILE);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd),
                     "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_B "." ID_A ".shared");
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        close(po.w);
        ASSERT_TRUE(probe_closed(&po));
        c = monitor_contexts_free(c, true);

        /* A rename cut off: the old name (direct, or shared) and the new entry, either first. */
        for (unsigned order = 0; order < 4; order++) {
                const char *old = order < 2 ? "ctxid.1000." ID_A : "ctxid.1000." ID_A ".shared";
                int old_fd = order < 2 ? fcntl(pn.w, F_DUPFD_CLOEXEC, 3) : carrier_of(pn.w);

                ASSERT_OK(monitor_contexts_new(&c));
                if (order % 2 == 0)
                        ASSERT_OK(monitor_contexts_restore(c, old_fd, old, NULL));
                ASSERT_OK(monitor_contexts_restore(c, carrier_of(pn.w), "ctxid.1000." ID_C "." ID_A ".shared", NULL));
                if (order % 2 == 1)
                        ASSERT_OK(monitor_contexts_restore(c, old_fd, old, NULL));
                /* Another uid's, renamed from an id like it: not the same context. */
                ASSERT_OK(monitor_contexts_restore(c, carrier_of(pn.w), "ctxid.1001." ID_B "." ID_A ".shared", NULL));
                ASSERT_EQ(monitor_contexts_size(c), 3u);
                monitor_contexts_restore_done(c);
                ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd),
                             "FDSTOREREMOVE=1\nFDNAME=ctxid.1000." ID_C "." ID_A ".shared");
                ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
                ASSERT_EQ(monitor_contexts_size(c), 2u);
                ctx = monitor_contexts_find_reclaim_id(c, ID_A);
                ASSERT_NOT_NULL(ctx);
                ASSERT_EQ(ctx->shared, order >= 2);
                ASSERT_NULL(monitor_contexts_find_reclaim_id(c, ID_C));
                ASSERT_NOT_NULL(monitor_contexts_find_reclaim_id(c, ID_B));
                c = monitor_contexts_free(c, true);
                ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        }

        close(pa.w);
        close(pn.w);
        ASSERT_TRUE(probe_closed(&pa));
        ASSERT_TRUE(probe_closed(&pn));
        notify_done(&n);
        close(pa.r);
        close(pn.r);
        close(po.r);
}

/* A carrier whose fd the kernel cannot compare with the contexts restored (kcmp() refused, as a
 * seccomp filter or a kernel without CONFIG_KCMP does): it may be a stale one of a context here
 * under another name, so it is neither restored nor dropped, but left in the store. */
TEST(carrier_kept_when_kcmp_cannot_tell) {
        Probe p = probe_new();
        char text[256];
        Notify n;
        pid_t pid;
        int fd, status;

        notify_setup(&n);
        ASSERT_OK(pid = fork());
        if (pid == 0) {
                struct sock_filter filter[] = {
                        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_kcmp, 0, 1),
                        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
                        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
                };
                struct sock_fprog prog = { .len = ELEMENTSOF(filter), .filter = filter };
                MonitorContexts *c = NULL;

                if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0 ||
                    monitor_contexts_new(&c) < 0 ||
                    monitor_contexts_restore(c, carrier_of(p.w), "ctxid.1000." ID_C "." ID_A, NULL) != 1 ||
                    monitor_contexts_restore(c, fcntl(p.w, F_DUPFD_CLOEXEC, 3), "ctxid.1000." ID_B, NULL) < 0)
                        _exit(2);
                monitor_contexts_restore_done(c);
                _exit(monitor_contexts_size(c) == 1 && monitor_contexts_find_reclaim_id(c, ID_B) &&
                                      !monitor_contexts_find_reclaim_id(c, ID_C)
                              ? 0
                              : 3);
        }
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 0);
        /* Neither stored under the new name nor taken out. */
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        close(p.w);
        close(p.r);
        notify_done(&n);
}

/* An old-style name systemd does not take out: the context stays stored under it (a put of the
 * same fd would be dropped), and is taken out by that name when it ends. */
TEST(fdstore_legacy_remove_fails) {
        _cleanup_(monitor_contexts_free_preservep) MonitorContexts *c = NULL;
        struct event_base *base = event_base_new();
        TsmPlatform *p = emulated_platform(base);
        Probe pl = probe_new(), pm = probe_new(), pl2 = probe_new();
        MonitorContext *ctx;
        char text[256];
        uint32_t l, m;
        Notify n;
        int fd;

        notify_setup(&n);
        ASSERT_OK(monitor_contexts_new(&c));

        fail_legacy_remove = true;
        ASSERT_OK(monitor_contexts_restore(c, pl.w, "ctx.1004." TOKEN_L, &l));
        ASSERT_EQ(n_failed_removes, 1);
        /* Not put under the new name: systemd would drop it, and keep the old. */
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        ctx = monitor_contexts_get(c, l);
        ASSERT_NOT_NULL(ctx);
        ASSERT_STREQ(ctx->reclaim_id, ID_L);
        ASSERT_TRUE(ctx->stored);
        ASSERT_NOT_NULL(ctx->legacy_name);
        ASSERT_STREQ(ctx->legacy_name, "ctx.1004." TOKEN_L);
        ASSERT_OK(monitor_contexts_restore(c, pm.w, "ctx.1005." TOKEN_M, &m));
        ASSERT_EQ(n_failed_removes, 2);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        /* The same name once more (systemd may hold one name twice): the context stored under it
         * stays there. */
        ASSERT_ERRNO(monitor_contexts_restore(c, pl2.w, "ctx.1004." TOKEN_L, NULL), EEXIST);
        ASSERT_TRUE(probe_closed(&pl2));
        ASSERT_EQ(n_failed_removes, 2);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        fail_legacy_remove = false;

        /* Closed: out of the store under the name it is stored under. */
        ASSERT_OK(monitor_contexts_remove(c, p, l));
        ASSERT_TRUE(probe_closed(&pl));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctx.1004." TOKEN_L);
        ASSERT_EQ(fd, -1);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");

        /* Stopping to be restarted: kept under the old name, for the next start to rename. */
        c = monitor_contexts_free(c, true);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        ASSERT_TRUE(probe_closed(&pm));
        Probe pm2 = probe_new();
        ASSERT_OK(monitor_contexts_new(&c));
        ASSERT_OK(monitor_contexts_restore(c, pm2.w, "ctx.1005." TOKEN_M, &m));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctx.1005." TOKEN_M);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDNAME=ctxid.1005." ID_M);
        ASSERT_GE(fd, 0);
        close(fd);
        ASSERT_NULL(monitor_contexts_get(c, m)->legacy_name);
        /* Stopping for good: out under its new name. */
        c = monitor_contexts_free(c, false);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctxid.1005." ID_M);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");

        notify_done(&n);
        tsm_platform_free(p);
        event_base_free(base);
        close(pl.r);
        close(pm.r);
        close(pl2.r);
        close(pm2.r);
}

/* A context handed back under its new name and its old one too: the old one goes, or it would
 * come back, token and all, at every start. Not the other way round: the new name is the one
 * it is stored under. */
TEST(fdstore_legacy_duplicate) {
        _cleanup_(monitor_contexts_free_preservep) MonitorContexts *c = NULL;
        Probe pn = probe_new(), pl = probe_new(), pl2 = probe_new(), pn2 = probe_new(), pd = probe_new();
        char text[256];
        uint32_t id;
        Notify n;
        int fd;

        notify_setup(&n);
        ASSERT_OK(monitor_contexts_new(&c));

        ASSERT_OK(monitor_contexts_restore(c, pn.w, "ctxid.1002." ID_L, &id));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        ASSERT_ERRNO(monitor_contexts_restore(c, pl.w, "ctx.1002." TOKEN_L, NULL), EEXIST);
        ASSERT_TRUE(probe_closed(&pl));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctx.1002." TOKEN_L);
        ASSERT_EQ(fd, -1);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        ASSERT_NULL(monitor_contexts_get(c, id)->legacy_name);
        /* A duplicate under a new-style name is left alone: it is the name the other has. */
        ASSERT_ERRNO(monitor_contexts_restore(c, pd.w, "ctxid.1002." ID_L, NULL), EEXIST);
        ASSERT_TRUE(probe_closed(&pd));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        c = monitor_contexts_free(c, true);

        /* The old name first: renamed, and the new one coming after is the one it has now. */
        ASSERT_OK(monitor_contexts_new(&c));
        ASSERT_OK(monitor_contexts_restore(c, pl2.w, "ctx.1002." TOKEN_L, NULL));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTOREREMOVE=1\nFDNAME=ctx.1002." TOKEN_L);
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "FDSTORE=1\nFDNAME=ctxid.1002." ID_L);
        ASSERT_GE(fd, 0);
        close(fd);
        ASSERT_ERRNO(monitor_contexts_restore(c, pn2.w, "ctxid.1002." ID_L, NULL), EEXIST);
        ASSERT_TRUE(probe_closed(&pn2));
        ASSERT_STREQ(notify_next(&n, text, sizeof(text), &fd), "");
        c = monitor_contexts_free(c, true);

        notify_done(&n);
        close(pn.r);
        close(pl.r);
        close(pl2.r);
        close(pn2.r);
        close(pd.r);
}

TEST_MAIN();
