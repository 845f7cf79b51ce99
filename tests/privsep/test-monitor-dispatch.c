/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The monitor's request table, in process: an emulated platform, the monitor's context table
 * and its dispatch over a SOCK_SEQPACKET socketpair, with this test playing the worker. The
 * whole life of a context (open, attach, bind, a real TDISP exchange with the emulated
 * device, unbind, detach, close), adoption, a worker restart with reclaim, binds still on
 * their way, the answers that are errors but not violations, and every class of violation.
 * Some cases run on the kernel's TSMs instead: the two-TSM fixture sysfs and a fake kernel
 * (root; SKIPs otherwise); one in auto mode, where a TSM appears after the start. Runs in:
 * tests.
 */

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "backend.h"
#include "counting-allocator.h"
#include "emu-platform.h"
#include "fake-tsm-kernel.h"
#include "fd-closer.h"
#include "fuse-hold.h"
#include "harness.h"
#include "iommufd-uapi.h"
#include "lingering-tcp.h"
#include "log-capture.h"
#include "monitor-dispatch.h"
#include "platform-test-util.h"
#include "priv-reader.h"
#include "sysfs-fixture.h"
#include "tdisp.h"
#include "tsm-platform.h"
#include "tsm-priv-batch.h"
#include "uevent-sender.h"

#define DEV_A "0000:01:00.0" /* the emulated platform's default devices */
#define DEV_B "0000:02:00.0"
#define ID_A "0123456789abcdef0123456789abcdef"
#define ID_B "fedcba9876543210fedcba9876543210"
#define ID_C "00112233445566778899aabbccddeeff"
#define SLOT 7U
#define OTHER_SLOT 8U
#define NIC "0000:01:00.0" /* the two-TSM fixture's: on tsm0 (SEV-TIO) */
#define GPU "0000:02:00.0" /* on tsm1 (TDX Connect) */
#define NIC_FN1 "0000:01:00.1" /* no tsm/: the NIC is its DSM */
#define NVME "0000:03:00.0" /* TDISP capable, on no TSM */
#define NVME_PATH "/devices/pci0000:00/0000:00:03.1/" NVME
#define NIC_PATH "/devices/pci0000:00/0000:00:01.1/" NIC
#define GPU_PATH "/devices/pci0000:00/0000:00:02.1/" GPU
#define VDEV_HELD 11U      /* the fake kernel holds its calls when told */
/* The longest the FUSE server holds a request: what the monitor would wait if it waited. */
#define SEC_USEC UINT64_C(1000000)
#define FUSE_HOLD_USEC (10 * SEC_USEC)

typedef struct Fixture {
        struct event_base *base;
        TsmPlatform *platform;
        MonitorContexts *contexts;
        MonitorDispatch *dispatch;
        int worker;  /* the test's end */
        int monitor; /* the dispatch's end */
        int listen_fd;
        uint32_t cookie;
        size_t n_fds_before; /* open before the fixture: the same number must be after */
        bool emulated;       /* at the start; else the kernel's TSMs, on a fixture sysfs with a fake kernel */
        const char *sysfs;   /* that fixture's root */
        struct tsm_priv_hello hello; /* the last worker_start()'s */
        /* The RESTORED_VDEVICE messages the last worker_start() received, of every context. */
        struct tsm_priv_restored_vdevice vdevices[8];
        size_t n_vdevices;

        unsigned n_ready, n_status, n_reload, n_commit, n_stalled;
        unsigned status_cost_usec; /* what each STATUS costs the monitor (its sd_notify()) */
        int stalled_error;
        bool debug_refused; /* the policy grants no opt-in scope */
        const char *refused_scope; /* nor this one */
        char granted_address[TSM_PRIV_PCI_ADDRESS_MAX], granted_scope[TSM_PRIV_NAME_MAX]; /* last asked */
        const char *unlisted; /* no policy rule lists this device */
        char listed_address[TSM_PRIV_PCI_ADDRESS_MAX]; /* last asked */
        TsmBackendType listed_backend;
        unsigned n_listed;
        struct tsm_priv_status status;
        int reload_result;
        int reload_fd; /* what a load hands over (borrowed: the test's) */
        const char *reload_reason; /* why a load fails (NULL: no reason) */
        bool reload_policy_failed;
        /* Kept answers (TSM_PRIV_REPLY_KEPT) are not said recorded at once, as receive() does
         * otherwise; the last one's cookie. */
        bool hold_recorded;
        uint32_t kept_cookie;

        _Alignas(8) uint8_t buf[TSM_PRIV_DATAGRAM_MAX];
        TsmPrivReader reader; /* what the monitor sent, a message at a time */
} Fixture;

typedef struct Reply {
        struct tsm_priv_reply r;
        uint8_t payload[TSM_PRIV_PAYLOAD_MAX];
        int fd;
} Reply;

static void on_ready(void *userdata) {
        Fixture *f = userdata;

        f->n_ready++;
}

static void on_status(const struct tsm_priv_status *s, void *userdata) {
        Fixture *f = userdata;

        f->n_status++;
        f->status = *s;
        if (f->status_cost_usec > 0)
                (void) usleep(f->status_cost_usec);
}

static int on_reload(void *userdata, bool commit, int *ret_fd, char **ret_reason, bool *ret_policy_failed) {
        Fixture *f = userdata;

        if (commit) {
                ASSERT_NULL(ret_fd);
                ASSERT_NULL(ret_reason);
                f->n_commit++;
                return 0;
        }
        f->n_reload++;
        if (f->reload_result >= 0) {
                *ret_fd = f->reload_fd;
                return f->reload_result;
        }
        if (f->reload_reason)
                ASSERT_NOT_NULL(*ret_reason = strdup(f->reload_reason));
        *ret_policy_failed = f->reload_policy_failed;
        return f->reload_result;
}

static void on_stalled(int error, void *userdata) {
        Fixture *f = userdata;

        f->n_stalled++;
        f->stalled_error = error;
}

static bool on_scope_granted(const char *pci_address, TsmBackendType backend, const char *scope, void *userdata) {
        Fixture *f = userdata;

        snprintf(f->granted_address, sizeof(f->granted_address), "%s", pci_address);
        snprintf(f->granted_scope, sizeof(f->granted_scope), "%s", scope);
        if (f->debug_refused && (streq(scope, TSM_SCOPE_DEBUG_READ) || streq(scope, TSM_SCOPE_DEBUG_WRITE)))
                return false;
        return !f->refused_scope || !streq(scope, f->refused_scope);
}

static bool on_device_listed(const char *pci_address, TsmBackendType backend, void *userdata) {
        Fixture *f = userdata;

        snprintf(f->listed_address, sizeof(f->listed_address), "%s", pci_address);
        f->listed_backend = backend;
        f->n_listed++;
        return !f->unlisted || !streq(pci_address, f->unlisted);
}

static const MonitorDispatchCallbacks callbacks = {
        .ready = on_ready,
        .status = on_status,
        .reload = on_reload,
        .stalled = on_stalled,
        .scope_granted = on_scope_granted,
        .device_listed = on_device_listed,
};

/* Tells the monitor the kept answers' records are durable (late false) or nobody records them. */
static void send_recorded(Fixture *f, const uint32_t *cookies, size_t n, bool late) {
        struct tsm_priv_recorded m;

        tsm_priv_init(&m, TSM_PRIV_RECORDED, 0, (uint32_t) (n * sizeof(uint32_t)));
        m.late = late;
        ASSERT_OK(tsm_priv_send(f->worker, &m, cookies, n * sizeof(uint32_t), -EBADF));
}

/* Receives one message from the monitor, which must be there already. A kept answer is said
 * recorded (RECORDED, handled with what the monitor reads next) unless hold_recorded. */
static size_t receive(Fixture *f, uint32_t type, void *ret, size_t ret_size, const void **ret_payload,
                      int *ret_fd) {
        const char *reason = NULL;
        size_t n_fds;
        int fds[1] = { -1 };
        ssize_t n;

        n = priv_reader_receive(&f->reader, f->worker, f->buf, fds, 1, &n_fds);
        if (n < 0)
                TEST_FAIL("expected a %s, got %s", tsm_priv_type_to_string(type), strerror((int) -n));
        ASSERT_GE(n, 1);
        if (tsm_priv_check(f->buf, (size_t) n, n_fds, TSM_PRIV_FROM_MONITOR, ret, ret_size, ret_payload,
                           &reason) < 0)
                TEST_FAIL("monitor sent a bad message: %s", reason);
        ASSERT_EQ(((struct tsm_priv_hdr *) ret)->type, type);
        if (type == TSM_PRIV_REPLY && (((struct tsm_priv_hdr *) ret)->flags & TSM_PRIV_REPLY_KEPT)) {
                f->kept_cookie = ((struct tsm_priv_hdr *) ret)->cookie;
                if (!f->hold_recorded)
                        send_recorded(f, &f->kept_cookie, 1, false);
        }
        if (ret_fd)
                *ret_fd = n_fds > 0 ? fds[0] : -1;
        else
                ASSERT_EQ(n_fds, 0);
        return (size_t) n;
}

static void nothing_waiting(Fixture *f) {
        size_t n_fds;
        int fds[1];

        ASSERT_ERRNO(priv_reader_receive(&f->reader, f->worker, f->buf, fds, 1, &n_fds), EAGAIN);
}

/* Starts a worker on a fresh socketpair; returns HELLO's n_restored after checking the start. */
static uint32_t worker_start(Fixture *f, struct tsm_priv_restored_context *restored, size_t n_max) {
        MonitorListenSocket sockets[] = { { f->listen_fd, TSM_PRIV_SOCKET_GUEST } };
        struct tsm_priv_listen_socket ls;
        struct tsm_priv_hello hello;
        struct stat a, b;
        int sv[2], fd;

        ASSERT_OK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv));
        f->monitor = sv[0];
        f->worker = sv[1];
        /* As the monitor makes them (monitor.c): room for the late answers kept for a worker. */
        for (unsigned i = 0; i < 2; i++) {
                int size = (int) TSM_PRIV_DATAGRAM_MAX * 4;

                ASSERT_OK(setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)));
                ASSERT_OK(setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)));
        }
        ASSERT_OK(monitor_dispatch_start(f->dispatch, f->monitor, sockets, ELEMENTSOF(sockets)));
        ASSERT_ERRNO(monitor_dispatch_start(f->dispatch, f->monitor, sockets, ELEMENTSOF(sockets)), EBUSY);

        receive(f, TSM_PRIV_HELLO, &hello, sizeof(hello), NULL, NULL);
        f->hello = hello;
        ASSERT_EQ(hello.version, TSM_PRIV_VERSION);
        ASSERT_EQ(hello.emulated, f->emulated);
        ASSERT_EQ(hello.fdstore, 0);
        /* The emulated platform probes no kernel; the fake one speaks v5. */
        ASSERT_EQ(hello.uapi, f->emulated ? -EOPNOTSUPP : TSM_UAPI_V5);
        ASSERT_EQ(hello.n_sockets, 1);

        receive(f, TSM_PRIV_LISTEN_SOCKET, &ls, sizeof(ls), NULL, &fd);
        ASSERT_EQ(ls.kind, TSM_PRIV_SOCKET_GUEST);
        ASSERT_GE(fd, 0);
        ASSERT_OK(fstat(fd, &a));
        ASSERT_OK(fstat(f->listen_fd, &b));
        ASSERT_EQ(a.st_ino, b.st_ino);
        close(fd);

        ASSERT_LE(hello.n_restored, n_max);
        f->n_vdevices = 0;
        for (uint32_t i = 0; i < hello.n_restored; i++) {
                receive(f, TSM_PRIV_RESTORED_CONTEXT, &restored[i], sizeof(restored[i]), NULL, NULL);
                ASSERT_TRUE(tsm_priv_check_string(restored[i].reclaim_id, sizeof(restored[i].reclaim_id)));
                ASSERT_LE(restored[i].partial, 1u);
                /* Each context's vDevices follow it, and name it. */
                for (uint32_t j = 0; j < restored[i].n_vdevices; j++) {
                        struct tsm_priv_restored_vdevice *rv = &f->vdevices[f->n_vdevices++];

                        ASSERT_LE(f->n_vdevices, ELEMENTSOF(f->vdevices));
                        receive(f, TSM_PRIV_RESTORED_VDEVICE, rv, sizeof(*rv), NULL, NULL);
                        ASSERT_EQ(rv->context, restored[i].context);
                        ASSERT_TRUE(tsm_priv_check_string(rv->pci_address, sizeof(rv->pci_address)));
                        ASSERT_EQ(rv->state & ~TSM_PRIV_VDEVICE_FLAGS_ALL, 0u);
                }
        }
        /* Then the late answers kept for it, if any (receive_late()). */
        if (monitor_dispatch_n_late_kept(f->dispatch) == 0 && monitor_dispatch_n_late_lost(f->dispatch) == 0)
                nothing_waiting(f);
        return hello.n_restored;
}

/* The state the last worker_start() heard of for vdevice of context, at address (TSM_PRIV_VDEVICE_*). */
static uint32_t restored_state(Fixture *f, uint32_t context, uint32_t vdevice, const char *address) {
        for (size_t i = 0; i < f->n_vdevices; i++)
                if (f->vdevices[i].context == context && f->vdevices[i].vdevice == vdevice) {
                        ASSERT_STREQ(f->vdevices[i].pci_address, address);
                        return f->vdevices[i].state;
                }
        TEST_FAIL("the worker heard of no vDevice %u of context %u", vdevice, context);
}

/* The worker died: what the process model does. */
static void worker_stop(Fixture *f) {
        monitor_dispatch_stop(f->dispatch);
        f->monitor = safe_close(f->monitor);
        f->worker = safe_close(f->worker);
}

static void setup_platform(Fixture *f, const TsmPlatformConfig *config) {
        struct tsm_priv_restored_context none[1];

        unsetenv("NOTIFY_SOCKET"); /* no service manager, no fd store */
        (void) signal(SIGPIPE, SIG_IGN); /* the monitor's code runs here, as tsmd's main() has it */
        *f = (Fixture){ .worker = -EBADF, .monitor = -EBADF, .reload_fd = -EBADF, .n_fds_before = test_count_fds(),
                        .emulated = config->mode != TSM_PLATFORM_KERNEL }; /* auto: no TSM yet */
        f->base = event_base_new();
        ASSERT_NOT_NULL(f->base);
        ASSERT_OK(tsm_platform_new(f->base, config, &f->platform));
        ASSERT_OK(monitor_contexts_new(&f->contexts));
        ASSERT_OK(monitor_dispatch_new(f->base, f->platform, f->contexts, &callbacks, f, &f->dispatch));
        f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_OK(f->listen_fd);
        ASSERT_EQ(worker_start(f, none, 0), 0);
}

static void setup(Fixture *f) {
        TsmPlatformConfig config = {
                .mode = TSM_PLATFORM_EMULATED,
                /* No IOMMU here, whatever the host has: the emulated stand-in is handed out. */
                .iommu_device = (char *) "/nonexistent/tsmd-test-iommu",
                .emulated_latency_usec = 0,
                /* Served, as mainline kernels do not: the tests' large payloads are MEM_READs. */
                .emulated_debug_scopes = true,
        };

        setup_platform(f, &config);
}

static void teardown(Fixture *f) {
        f->dispatch = monitor_dispatch_free(f->dispatch);
        f->contexts = monitor_contexts_free(f->contexts, false);
        f->platform = tsm_platform_free(f->platform);
        if (!f->emulated)
                fake_kernel_uninstall();
        event_base_free(f->base);
        safe_close(f->monitor);
        safe_close(f->worker);
        safe_close(f->listen_fd);
        /* Every fd that crossed the channel or was handed out is closed again. */
        ASSERT_EQ(test_count_fds(), f->n_fds_before);
}

static Fixture *fixture(void) {
        Fixture *f = malloc(sizeof(Fixture));

        ASSERT_NOT_NULL(f);
        setup(f);
        return f;
}

/* The kernel's TSMs: the two-TSM fixture sysfs (in a private mount namespace, as root; the
 * test SKIPs otherwise), behind a fake v5 kernel that holds VDEV_HELD's calls when told, and has
 * its TDI bound from the start (as by a tsmd before this monitor): guest requests find it bound,
 * as the kernel's pci_tsm_guest_req() needs, without a bind's call among those the case counts. */
static Fixture *kernel_fixture_timeout(uint64_t request_timeout_usec) {
        TsmPlatformConfig config = {
                .mode = TSM_PLATFORM_KERNEL,
                .iommu_device = (char *) "/dev/iommu",
                .request_timeout_usec = request_timeout_usec, /* 0: the default */
        };
        Fixture *f = malloc(sizeof(Fixture));
        const char *root;

        ASSERT_NOT_NULL(f);
        platform_test_sandbox(false);
        root = platform_test_fixture("two-tsms", NULL);
        fake_kernel_install(VDEV_HELD);
        fake_kernel_set_bound(VDEV_HELD);
        setup_platform(f, &config);
        f->sysfs = root;
        return f;
}

static Fixture *kernel_fixture(void) {
        return kernel_fixture_timeout(0);
}

/* Auto mode on a fixture sysfs with no TSM yet, so the emulated platform serves its default
 * devices; a real device, not TDISP capable yet, sits at DEV_A. Fake uevents tell of what the
 * test adds to the tree (returned in ret_sysfs): root, private mount and network namespaces
 * and a working udev monitor; SKIPs otherwise. */
static Fixture *auto_fixture(const char **ret_sysfs) {
        TsmPlatformConfig config = {
                .mode = TSM_PLATFORM_AUTO,
                .iommu_device = (char *) "/dev/null", /* answers no TSM UAPI, as the emulated platform */
        };
        Fixture *f;

        if (!platform_test_udev_monitor_possible())
                SKIP("sd-device disables udev monitors without /run/udev/control or a devtmpfs /dev");
        platform_test_sandbox(true);
        ASSERT_EQ(uevent_in_private_netns(), 1);
        *ret_sysfs = platform_test_fixture(
                NULL, "device /devices/pci0000:00\n"
                      "pci /devices/pci0000:00/0000:00:01.1 vendor=0x1022 device=0x14db class=0x060400 "
                      "driver=pcieport\n"
                      "pci /devices/pci0000:00/0000:00:01.1/" DEV_A " vendor=0x15b3 device=0x1021 class=0x020000 "
                      "driver=vfio-pci\n");
        ASSERT_NOT_NULL(f = malloc(sizeof(Fixture)));
        setup_platform(f, &config);
        ASSERT_TRUE(tsm_platform_is_emulated(f->platform));
        return f;
}

static void fixture_free(Fixture *f) {
        teardown(f);
        free(f);
}

/* ---- sending as the worker ----------------------------------------------------------------- */

static void send_raw(Fixture *f, const void *data, size_t len, int fd) {
        union {
                struct cmsghdr cmsg;
                uint8_t b[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct iovec iov = { .iov_base = (void *) data, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

        if (fd >= 0) {
                mh.msg_control = &control;
                mh.msg_controllen = sizeof(control.b);
                control.cmsg.cmsg_level = SOL_SOCKET;
                control.cmsg.cmsg_type = SCM_RIGHTS;
                control.cmsg.cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(&control.cmsg), &fd, sizeof(int));
        }
        ASSERT_EQ(sendmsg(f->worker, &mh, MSG_NOSIGNAL), (ssize_t) len);
}

static void process_ok(Fixture *f) {
        const char *reason = NULL;
        int r;

        /* Every round it takes (1: messages read and not handled yet). */
        do
                r = monitor_dispatch_process(f->dispatch, &reason);
        while (r > 0);
        if (r < 0)
                TEST_FAIL("process failed: %s: %s (%s)", strerror(-r), strna(reason),
                          monitor_dispatch_get_violation_type(f->dispatch));
}

/* Runs the monitor's loop until a reply waits (binds, unbinds and guest requests are answered
 * from there, as the device takes its time). */
static void await_reply(Fixture *f) {
        /* Up to 5 s: a kernel call's lane thread may be slow. A reply there already is taken
         * without running the loop, which could answer other calls first. */
        for (unsigned i = 0; i < 5000; i++) {
                struct pollfd p = { .fd = f->worker, .events = POLLIN };

                if (tsm_priv_reader_has_message(&f->reader) || poll(&p, 1, i == 0 ? 0 : 1) > 0)
                        return;
                ASSERT_OK(event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK));
        }
        TEST_FAIL("no reply");
}

/* Sends msg (its cookie set here) and returns the reply. */
static int call_full(Fixture *f, void *msg, const void *payload, size_t payload_len, int fd, Reply *ret) {
        struct tsm_priv_hdr *h = msg;
        const void *p;

        h->cookie = ++f->cookie;
        ASSERT_OK(tsm_priv_send(f->worker, msg, payload, payload_len, fd));
        process_ok(f);
        await_reply(f);
        receive(f, TSM_PRIV_REPLY, &ret->r, sizeof(ret->r), &p, &ret->fd);
        ASSERT_EQ(ret->r.hdr.cookie, f->cookie);
        if (ret->r.hdr.payload_len > 0)
                memcpy(ret->payload, p, ret->r.hdr.payload_len);
        nothing_waiting(f);
        return ret->r.result;
}

static int call(Fixture *f, void *msg, Reply *ret) {
        return call_full(f, msg, NULL, 0, -EBADF, ret);
}

/* The cookie of a message built to be sent raw (call() gives each its own): never 0 on one that
 * is answered. */
#define RAW_COOKIE UINT32_C(0xfffffff0)

/* Sends a message that breaks a rule: no answer, an error and a reason. */
static int expect_violation_full(Fixture *f, const void *data, size_t len, int fd, const char *type) {
        const char *reason = NULL;
        int r;

        send_raw(f, data, len, fd);
        r = monitor_dispatch_process(f->dispatch, &reason);
        if (r >= 0 || !reason)
                TEST_FAIL("violation (%s) not detected: %d", type, r);
        ASSERT_STREQ(monitor_dispatch_get_violation_type(f->dispatch), type);
        fprintf(stderr, "compromised worker: %s: %s\n", monitor_dispatch_get_violation_type(f->dispatch),
                reason);
        nothing_waiting(f);
        return r;
}

static int expect_violation(Fixture *f, const void *msg, const char *type) {
        return expect_violation_full(f, msg, ((const struct tsm_priv_hdr *) msg)->size, -EBADF, type);
}

static struct tsm_priv_new_context new_context_msg(uint32_t type, uint32_t slot, uint32_t uid,
                                                   const char *reclaim_id) {
        struct tsm_priv_new_context m;

        tsm_priv_init(&m, type, RAW_COOKIE, 0);
        m.slot = slot;
        m.uid = uid;
        strcpy(m.reclaim_id, reclaim_id);
        return m;
}

static uint32_t open_context(Fixture *f, uint32_t slot, const char *reclaim_id, int *ret_fd) {
        struct tsm_priv_new_context m = new_context_msg(TSM_PRIV_OPEN_CONTEXT, slot, 1000, reclaim_id);
        Reply rep;

        ASSERT_OK(call(f, &m, &rep));
        ASSERT_GE(rep.fd, 0);
        ASSERT_NE(rep.r.value, 0);
        if (ret_fd)
                *ret_fd = rep.fd;
        else
                close(rep.fd);
        return rep.r.value;
}

/* The reclaim id of the last reclaim_msg(): a fresh one each time, as a renewed token's is. */
static char reclaim_msg_id[TSM_PRIV_RECLAIM_ID_MAX];

static struct tsm_priv_reclaim_context reclaim_msg_id_of(uint32_t slot, uint32_t context, const char *reclaim_id) {
        struct tsm_priv_reclaim_context m;

        tsm_priv_init(&m, TSM_PRIV_RECLAIM_CONTEXT, RAW_COOKIE, 0);
        m.slot = slot;
        m.context = context;
        memset(m.reclaim_id, 0, sizeof(m.reclaim_id));
        memcpy(m.reclaim_id, reclaim_id, MIN(strlen(reclaim_id), sizeof(m.reclaim_id) - 1));
        return m;
}

static struct tsm_priv_reclaim_context reclaim_msg(uint32_t slot, uint32_t context) {
        static unsigned n;

        snprintf(reclaim_msg_id, sizeof(reclaim_msg_id), "abcd%028x", ++n);
        return reclaim_msg_id_of(slot, context, reclaim_msg_id);
}

static struct tsm_priv_context context_msg(uint32_t type, uint32_t slot, uint32_t context) {
        struct tsm_priv_context m;

        tsm_priv_init(&m, type, RAW_COOKIE, 0);
        m.slot = slot;
        m.context = context;
        return m;
}

static struct tsm_priv_attach_vdevice attach_msg(uint32_t slot, uint32_t context, uint32_t vdevice,
                                                 const char *address) {
        struct tsm_priv_attach_vdevice m;

        tsm_priv_init(&m, TSM_PRIV_ATTACH_VDEVICE, RAW_COOKIE, 0);
        m.slot = slot;
        m.context = context;
        m.vdevice = vdevice;
        strcpy(m.pci_address, address);
        return m;
}

static int attach(Fixture *f, uint32_t slot, uint32_t context, uint32_t vdevice, const char *address,
                  uint32_t *ret_value) {
        struct tsm_priv_attach_vdevice m = attach_msg(slot, context, vdevice, address);
        Reply rep;
        int r;

        r = call(f, &m, &rep);
        ASSERT_EQ(rep.fd, -1);
        if (ret_value)
                *ret_value = rep.r.value;
        return r;
}

static struct tsm_priv_vdevice vdevice_msg(uint32_t type, uint32_t slot, uint32_t context, uint32_t vdevice) {
        struct tsm_priv_vdevice m;

        tsm_priv_init(&m, type, RAW_COOKIE, 0);
        m.slot = slot;
        m.context = context;
        m.vdevice = vdevice;
        return m;
}

static int vdevice_op(Fixture *f, uint32_t type, uint32_t slot, uint32_t context, uint32_t vdevice,
                      uint32_t *ret_value) {
        struct tsm_priv_vdevice m = vdevice_msg(type, slot, context, vdevice);
        Reply rep;
        int r;

        r = call(f, &m, &rep);
        ASSERT_EQ(rep.fd, -1);
        if (ret_value)
                *ret_value = rep.r.value;
        return r;
}

/* The backend a worker names: the one serving the vDevice's device (the emulated one if there
 * is none, for the requests that must find none). */
static TsmBackendType routed_backend(Fixture *f, uint32_t context, uint32_t vdevice) {
        MonitorContext *ctx = monitor_contexts_get(f->contexts, context);
        MonitorVDevice *v = ctx ? monitor_context_find_vdevice(ctx, vdevice) : NULL;
        TsmDeviceInfo info;

        if (!v || tsm_platform_get_device(f->platform, v->pci_address, &info) < 0)
                return TSM_BACKEND_EMULATED;
        return info.backend;
}

static struct tsm_priv_guest_request guest_request_msg(Fixture *f, uint32_t slot, uint32_t context,
                                                       uint32_t vdevice, const char *scope, size_t payload_len) {
        struct tsm_priv_guest_request m;

        tsm_priv_init(&m, TSM_PRIV_GUEST_REQUEST, RAW_COOKIE, (uint32_t) payload_len);
        m.slot = slot;
        m.context = context;
        m.vdevice = vdevice;
        m.max_response = 4096;
        m.backend = routed_backend(f, context, vdevice);
        strcpy(m.scope, scope);
        return m;
}

static EmuDevice *device(Fixture *f, const char *address) {
        EmuDevice *d = emu_platform_find_device(tsm_platform_get_emulated(f->platform), address);

        ASSERT_NOT_NULL(d);
        return d;
}

/* A TDISP request to the emulated device at address, built as a guest would. */
static size_t tdisp_request(Fixture *f, const char *address, uint8_t type, void *buf, size_t size) {
        size_t len;

        ASSERT_OK(tdisp_build_request(type, emu_device_get_function_id(device(f, address)), NULL, 0, buf, size,
                                      &len));
        return len;
}

/* Sends a guest request; the answer comes from the event loop, as the device takes its time. */
static int guest_request(Fixture *f, uint32_t slot, uint32_t context, uint32_t vdevice, const char *scope,
                         const void *req, size_t req_len, Reply *ret) {
        struct tsm_priv_guest_request m = guest_request_msg(f, slot, context, vdevice, scope, req_len);
        const void *p;

        m.hdr.cookie = ++f->cookie;
        ASSERT_OK(tsm_priv_send(f->worker, &m, req, req_len, -EBADF));
        process_ok(f);
        await_reply(f);
        receive(f, TSM_PRIV_REPLY, &ret->r, sizeof(ret->r), &p, NULL);
        ASSERT_EQ(ret->r.hdr.cookie, f->cookie);
        /* A failure may be the monitor's own (the test looks at which). */
        ASSERT_TRUE(ret->r.value == 0 || (ret->r.result < 0 && ret->r.value == TSM_PRIV_REPLY_MONITOR_OWN));
        if (ret->r.hdr.payload_len > 0)
                memcpy(ret->payload, p, ret->r.hdr.payload_len);
        ret->fd = -1;
        ASSERT_EQ(monitor_dispatch_n_requests(f->dispatch), 0);
        return ret->r.result;
}

static bool same_object(int a, int b) {
        struct stat x, y;

        ASSERT_OK(fstat(a, &x));
        ASSERT_OK(fstat(b, &y));
        return x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

/* ---- the life of a context ----------------------------------------------------------------- */

TEST(lifecycle) {
        Fixture *f = fixture();
        EmuDevice *dev = device(f, DEV_A);
        MonitorContext *ctx;
        TdispDeviceInterfaceStateResponse state;
        TdispHeader h;
        uint8_t req[64];
        uint32_t id, value;
        size_t len;
        Reply rep;
        int fd;

        id = open_context(f, SLOT, ID_A, &fd);
        ASSERT_EQ(id, 1);
        ctx = monitor_contexts_get(f->contexts, id);
        ASSERT_NOT_NULL(ctx);
        ASSERT_EQ(ctx->slot, SLOT);
        ASSERT_EQ(ctx->uid, 1000);
        ASSERT_TRUE(same_object(fd, ctx->fd)); /* the worker gets the monitor's object */
        ASSERT_NE(fd, ctx->fd);
        ASSERT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        close(fd);

        ASSERT_OK(attach(f, SLOT, id, 5, DEV_A, &value));
        ASSERT_EQ(value, 0);
        ASSERT_EQ(ctx->n_vdevices, 1);

        ASSERT_OK(vdevice_op(f, TSM_PRIV_GET_VDEVICE_STATE, SLOT, id, 5, &value));
        ASSERT_EQ(value, TDISP_STATE_CONFIG_UNLOCKED);
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, id, 5, NULL));
        ASSERT_EQ(emu_device_get_state(dev), TDISP_STATE_CONFIG_LOCKED);
        ASSERT_OK(vdevice_op(f, TSM_PRIV_GET_VDEVICE_STATE, SLOT, id, 5, &value));
        ASSERT_EQ(value, TDISP_STATE_CONFIG_LOCKED);
        ASSERT_TRUE(monitor_context_find_vdevice(ctx, 5)->bound);
        /* Nothing on its way: settled at once, bound. */
        ASSERT_OK(vdevice_op(f, TSM_PRIV_SETTLE_VDEVICE, SLOT, id, 5, &value));
        ASSERT_EQ(value, 1u);
        /* Binding twice: the TSM finds it bound, as the kernel's does, and the vDevice stays so. */
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, id, 5, NULL));
        ASSERT_EQ(emu_device_get_state(dev), TDISP_STATE_CONFIG_LOCKED);
        ASSERT_TRUE(monitor_context_find_vdevice(ctx, 5)->bound);

        /* A real TDISP exchange: the device reports the state the bind put it in. */
        len = tdisp_request(f, DEV_A, TDISP_MSG_GET_DEVICE_INTERFACE_STATE, req, sizeof(req));
        ASSERT_OK(guest_request(f, SLOT, id, 5, TSM_SCOPE_INFO, req, len, &rep));
        ASSERT_EQ(rep.r.hdr.payload_len, sizeof(state));
        memcpy(&state, rep.payload, sizeof(state));
        ASSERT_EQ(state.header.message_type, TDISP_MSG_DEVICE_INTERFACE_STATE);
        ASSERT_EQ(state.tdi_state, TDISP_STATE_CONFIG_LOCKED);

        len = tdisp_request(f, DEV_A, TDISP_MSG_GET_VERSION, req, sizeof(req));
        ASSERT_OK(guest_request(f, SLOT, id, 5, TSM_SCOPE_INFO, req, len, &rep));
        ASSERT_OK(tdisp_header_decode(rep.payload, rep.r.hdr.payload_len, &h));
        ASSERT_EQ(h.message_type, TDISP_MSG_VERSION);

        /* The TSM refuses a request outside its scope (EINVAL, as a kernel TSM): an answer, not a
         * violation. */
        ASSERT_ERRNO(guest_request(f, SLOT, id, 5, TSM_SCOPE_STATE_CHANGE, req, len, &rep), EINVAL);
        ASSERT_EQ(rep.r.value, 0u); /* the TSM's refusal, not the monitor's gate */
        /* An empty request reaches the device, which has its say. */
        (void) guest_request(f, SLOT, id, 5, TSM_SCOPE_INFO, NULL, 0, &rep);

        ASSERT_OK(vdevice_op(f, TSM_PRIV_UNBIND_VDEVICE, SLOT, id, 5, NULL));
        ASSERT_EQ(emu_device_get_state(dev), TDISP_STATE_CONFIG_UNLOCKED);
        ASSERT_FALSE(monitor_context_find_vdevice(ctx, 5)->bound);
        ASSERT_OK(vdevice_op(f, TSM_PRIV_DETACH_VDEVICE, SLOT, id, 5, NULL));
        ASSERT_EQ(ctx->n_vdevices, 0);

        /* Closing unbinds what is still bound. */
        ASSERT_OK(attach(f, SLOT, id, 6, DEV_B, NULL));
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, id, 6, NULL));
        {
                struct tsm_priv_context m = context_msg(TSM_PRIV_CLOSE_CONTEXT, SLOT, id);
                ASSERT_OK(call(f, &m, &rep));
        }
        ASSERT_OK(event_base_loop(f->base, EVLOOP_NONBLOCK)); /* the device takes the unbind */
        ASSERT_EQ(emu_device_get_state(device(f, DEV_B)),
                  TDISP_STATE_CONFIG_UNLOCKED);
        ASSERT_NULL(monitor_contexts_get(f->contexts, id));

        /* Ids are not reused. */
        ASSERT_EQ(open_context(f, SLOT, ID_B, NULL), 2);
        fixture_free(f);
}

TEST(status_ready_reload) {
        Fixture *f = fixture();
        struct tsm_priv_status s;
        struct tsm_priv_ready ready;
        struct tsm_priv_reload reload;
        Reply rep;

        tsm_priv_init(&ready, TSM_PRIV_READY, 0, 0);
        ASSERT_OK(tsm_priv_send(f->worker, &ready, NULL, 0, -EBADF));
        tsm_priv_init(&s, TSM_PRIV_STATUS, 0, 0);
        s.n_clients = 3;
        s.n_pending = 2;
        s.draining = 1;
        s.audit = TSM_PRIV_AUDIT_FAILED;
        ASSERT_OK(tsm_priv_send(f->worker, &s, NULL, 0, -EBADF));
        ASSERT_OK(tsm_priv_send(f->worker, &s, NULL, 0, -EBADF));
        process_ok(f); /* all three at once */
        nothing_waiting(f); /* none answered */
        ASSERT_EQ(f->n_ready, 1);
        ASSERT_EQ(f->n_status, 2);
        ASSERT_EQ(f->status.n_clients, 3);
        ASSERT_EQ(f->status.n_pending, 2);
        ASSERT_EQ(f->status.draining, 1);
        ASSERT_EQ(f->status.audit, TSM_PRIV_AUDIT_FAILED);

        /* A load hands over the files' memfd, or the error and nothing; the commit applies. */
        tsm_priv_init(&reload, TSM_PRIV_RELOAD, 0, 0);
        f->reload_fd = memfd_create("test-reload", MFD_CLOEXEC);
        ASSERT_OK(f->reload_fd);
        f->reload_result = -EINVAL;
        ASSERT_ERRNO(call(f, &reload, &rep), EINVAL);
        ASSERT_EQ(rep.fd, -1);
        f->reload_result = 0;
        ASSERT_OK(call(f, &reload, &rep));
        ASSERT_EQ(f->n_reload, 2);
        {
                struct stat a, b;

                ASSERT_GE(rep.fd, 0);
                ASSERT_OK(fstat(rep.fd, &a));
                ASSERT_OK(fstat(f->reload_fd, &b));
                ASSERT_EQ(a.st_ino, b.st_ino);
                safe_close(rep.fd);
        }
        ASSERT_EQ(f->n_commit, 0);
        reload.commit = 1;
        ASSERT_OK(call(f, &reload, &rep));
        ASSERT_EQ(rep.fd, -1);
        ASSERT_EQ(f->n_commit, 1);
        f->reload_fd = safe_close(f->reload_fd);

        /* A new worker may say READY again. */
        worker_stop(f);
        ASSERT_EQ(worker_start(f, NULL, 0), 0);
        ASSERT_OK(tsm_priv_send(f->worker, &ready, NULL, 0, -EBADF));
        process_ok(f);
        ASSERT_EQ(f->n_ready, 2);
        fixture_free(f);
}

/* SECURITY: a commit applies only what a load handed this very worker, once: a worker cannot
 * have the monitor apply files it did not load for it (a load that failed, or one of the worker
 * before), nor apply one load twice. */
TEST(reload_commit_needs_a_load) {
        Fixture *f = fixture();
        struct tsm_priv_reload reload;
        Reply rep;

        tsm_priv_init(&reload, TSM_PRIV_RELOAD, 0, 0);
        f->reload_fd = memfd_create("test-reload", MFD_CLOEXEC);
        ASSERT_OK(f->reload_fd);

        for (unsigned i = 0; i < 6; i++) {
                struct tsm_priv_reload bad = reload;

                switch (i) {
                case 0: /* nothing loaded yet */
                        break;
                case 1: /* a load that failed */
                        f->reload_result = -ENOENT;
                        ASSERT_ERRNO(call(f, &reload, &rep), ENOENT);
                        f->reload_result = 0;
                        break;
                case 2: /* committed already */
                        ASSERT_OK(call(f, &reload, &rep));
                        safe_close(rep.fd);
                        reload.commit = 1;
                        ASSERT_OK(call(f, &reload, &rep));
                        reload.commit = 0;
                        break;
                case 3: /* the worker before's */
                        ASSERT_OK(call(f, &reload, &rep));
                        safe_close(rep.fd);
                        worker_stop(f);
                        ASSERT_EQ(worker_start(f, NULL, 0), 0);
                        break;
                case 4:
                        bad.commit = 2;
                        break;
                case 5:
                        bad.__reserved = 1;
                        break;
                }
                if (i < 4)
                        bad.commit = 1;
                expect_violation(f, &bad, "RELOAD");
                worker_stop(f);
                ASSERT_EQ(worker_start(f, NULL, 0), 0);
        }
        ASSERT_EQ(f->n_commit, 1);
        f->reload_fd = safe_close(f->reload_fd);
        fixture_free(f);
}

#define ID_D "ffeeddccbbaa99887766554433221100"

/* A load the monitor refuses goes back with its reason, for the worker to answer with (it may
 * not be able to read the files, nor make the monitor's checks), and whether the policy failed:
 * cut to TSM_PRIV_REASON_MAX characters ending in "...", control characters made '?', a reason
 * text as the worker checks it. None given, none sent. */
TEST(a_refused_load_says_why) {
        char longer[TSM_PRIV_REASON_MAX + 100];
        Fixture *f = fixture();
        struct tsm_priv_reload reload;
        Reply rep;

        tsm_priv_init(&reload, TSM_PRIV_RELOAD, 0, 0);
        f->reload_result = -EINVAL;
        f->reload_reason = "/etc/tsmd/policy.conf:3: unknown key 'Bo\x1bgus'";
        f->reload_policy_failed = true;
        ASSERT_ERRNO(call(f, &reload, &rep), EINVAL);
        ASSERT_EQ(rep.fd, -1);
        ASSERT_EQ(rep.r.value, 1u);
        ASSERT_EQ(rep.r.hdr.payload_len, sizeof("/etc/tsmd/policy.conf:3: unknown key 'Bo?gus'"));
        ASSERT_STREQ((const char *) rep.payload, "/etc/tsmd/policy.conf:3: unknown key 'Bo?gus'");
        ASSERT_TRUE(tsm_priv_check_reason(rep.payload, rep.r.hdr.payload_len));

        memset(longer, 'x', sizeof(longer) - 1);
        longer[sizeof(longer) - 1] = 0;
        f->reload_reason = longer;
        f->reload_policy_failed = false;
        f->reload_result = -EPERM;
        ASSERT_ERRNO(call(f, &reload, &rep), EPERM);
        ASSERT_EQ(rep.r.value, 0u);
        ASSERT_EQ(rep.r.hdr.payload_len, TSM_PRIV_REASON_MAX + 1);
        ASSERT_STREQ((const char *) rep.payload + TSM_PRIV_REASON_MAX - 3, "...");
        ASSERT_TRUE(tsm_priv_check_reason(rep.payload, rep.r.hdr.payload_len));

        f->reload_reason = NULL;
        ASSERT_ERRNO(call(f, &reload, &rep), EPERM);
        ASSERT_EQ(rep.r.hdr.payload_len, 0u);
        ASSERT_EQ(f->n_reload, 3);
        fixture_free(f);
}

TEST(answers_not_violations) {
        Fixture *f = fixture();
        struct tsm_priv_device dev;
        uint8_t req[64];
        uint32_t a, b, c;
        size_t len;
        Reply rep;
        int fd;

        a = open_context(f, SLOT, ID_A, NULL);
        b = open_context(f, OTHER_SLOT, ID_B, NULL);

        /* Unknown devices: hotplug races. */
        ASSERT_ERRNO(attach(f, SLOT, a, 1, "0000:7f:00.0", NULL), ENODEV);
        ASSERT_ERRNO(attach(f, SLOT, a, 1, "", NULL), ENODEV);
        ASSERT_ERRNO(attach(f, SLOT, a, 1, "nonsense", NULL), ENODEV);
        ASSERT_EQ(monitor_contexts_get(f->contexts, a)->n_vdevices, 0);
        /* One physical device, one context. */
        ASSERT_OK(attach(f, SLOT, a, 1, DEV_A, NULL));
        ASSERT_ERRNO(attach(f, OTHER_SLOT, b, 1, DEV_A, NULL), EBUSY);
        ASSERT_ERRNO(attach(f, SLOT, a, 2, DEV_A, NULL), EBUSY);
        ASSERT_OK(attach(f, OTHER_SLOT, b, 1, DEV_B, NULL));

        /* Adopting what is not an iommufd, of the kinds a worker passes on: a character device,
         * a memfd of the client's own, each opened for reading and writing or not. */
        {
                int junk[] = { open("/dev/null", O_RDWR | O_CLOEXEC), open("/dev/null", O_RDONLY | O_CLOEXEC),
                               memfd_create("test-not-iommufd", MFD_CLOEXEC | MFD_ALLOW_SEALING) };

                for (size_t i = 0; i < ELEMENTSOF(junk); i++) {
                        struct tsm_priv_new_context m = new_context_msg(TSM_PRIV_ADOPT_CONTEXT, SLOT, 1000, ID_C);

                        ASSERT_OK(junk[i]);
                        ASSERT_ERRNO(call_full(f, &m, NULL, 0, junk[i], &rep), EBADF);
                        ASSERT_EQ(rep.r.value, 0u); /* the client's doing, not the monitor's */
                        ASSERT_EQ(rep.fd, -1);
                        close(junk[i]);
                }
        }
        ASSERT_EQ(monitor_contexts_size(f->contexts), 2);

        /* Adopting what the monitor hands out (here the emulated stand-in) works. */
        c = open_context(f, SLOT, ID_C, &fd);
        {
                struct tsm_priv_context m = context_msg(TSM_PRIV_CLOSE_CONTEXT, SLOT, c);
                ASSERT_OK(call(f, &m, &rep));
        }
        {
                struct tsm_priv_new_context m = new_context_msg(TSM_PRIV_ADOPT_CONTEXT, SLOT, 1001, ID_D);
                ASSERT_OK(call_full(f, &m, NULL, 0, fd, &rep));
                ASSERT_EQ(rep.fd, -1); /* the client has it already */
                ASSERT_EQ(rep.r.value, c + 1);
                ASSERT_TRUE(same_object(fd, monitor_contexts_get(f->contexts, c + 1)->fd));
                ASSERT_EQ(monitor_contexts_get(f->contexts, c + 1)->uid, 1001);
        }
        close(fd);

        /* Device operations on devices the platform does not have. */
        tsm_priv_init(&dev, TSM_PRIV_GET_DEVICE_STATE, 0, 0);
        strcpy(dev.pci_address, DEV_A);
        ASSERT_OK(call(f, &dev, &rep));
        ASSERT_EQ(rep.r.value, TDISP_STATE_CONFIG_UNLOCKED);
        strcpy(dev.pci_address, "0000:7f:00.0");
        ASSERT_ERRNO(call(f, &dev, &rep), ENODEV);
        tsm_priv_init(&dev, TSM_PRIV_CONNECT_DEVICE, 0, 0);
        strcpy(dev.pci_address, DEV_A);
        strcpy(dev.tsm, "tsm0");
        ASSERT_ERRNO(call(f, &dev, &rep), ENODEV); /* the emulated devices need no connecting */
        tsm_priv_init(&dev, TSM_PRIV_DISCONNECT_DEVICE, 0, 0);
        strcpy(dev.pci_address, DEV_A);
        ASSERT_ERRNO(call(f, &dev, &rep), ENODEV);

        /* A request the worker routed to the backend it last saw for the device, which another
         * serves now (the worker's uevent is still on its way): an answer, not a violation,
         * even for a scope that backend does not have. */
        len = tdisp_request(f, DEV_A, TDISP_MSG_GET_VERSION, req, sizeof(req));
        for (TsmBackendType t = 0; t < _TSM_BACKEND_TYPE_MAX; t++) {
                struct tsm_priv_guest_request m = guest_request_msg(f, SLOT, a, 1, TSM_SCOPE_INFO, len);

                if (t == TSM_BACKEND_EMULATED)
                        continue;
                m.backend = t;
                ASSERT_ERRNO(call_full(f, &m, req, len, -EBADF, &rep), ENODEV);
                strcpy(m.scope, "no-such-scope");
                ASSERT_ERRNO(call_full(f, &m, req, len, -EBADF, &rep), ENODEV);
        }
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, a, 1, NULL));
        ASSERT_OK(guest_request(f, SLOT, a, 1, TSM_SCOPE_INFO, req, len, &rep));

        /* A device that went away: what uses it gets answers, and can be let go. */
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, OTHER_SLOT, b, 1, NULL));
        ASSERT_OK(tsm_platform_set_emulated_devices(f->platform, DEV_A));
        len = tdisp_request(f, DEV_A, TDISP_MSG_GET_VERSION, req, sizeof(req));
        ASSERT_ERRNO(guest_request(f, OTHER_SLOT, b, 1, TSM_SCOPE_INFO, req, len, &rep), ENODEV);
        ASSERT_ERRNO(vdevice_op(f, TSM_PRIV_GET_VDEVICE_STATE, OTHER_SLOT, b, 1, NULL), ENODEV);
        ASSERT_ERRNO(vdevice_op(f, TSM_PRIV_UNBIND_VDEVICE, OTHER_SLOT, b, 1, NULL), ENODEV);

        /* It comes back: another device under the same address, which the dead vDevice neither
         * holds nor operates. */
        ASSERT_OK(tsm_platform_set_emulated_devices(f->platform, DEV_A "," DEV_B));
        ASSERT_ERRNO(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, OTHER_SLOT, b, 1, NULL), ENODEV);
        ASSERT_ERRNO(vdevice_op(f, TSM_PRIV_GET_VDEVICE_STATE, OTHER_SLOT, b, 1, NULL), ENODEV);
        ASSERT_ERRNO(guest_request(f, OTHER_SLOT, b, 1, TSM_SCOPE_INFO, req, len, &rep), ENODEV);
        ASSERT_EQ(emu_device_get_state(device(f, DEV_B)), TDISP_STATE_CONFIG_UNLOCKED);
        ASSERT_OK(attach(f, SLOT, a, 7, DEV_B, NULL));
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, a, 7, NULL));
        ASSERT_EQ(emu_device_get_state(device(f, DEV_B)), TDISP_STATE_CONFIG_LOCKED);
        /* Letting the dead one go leaves the new owner's binding alone. */
        ASSERT_OK(vdevice_op(f, TSM_PRIV_DETACH_VDEVICE, OTHER_SLOT, b, 1, NULL));
        ASSERT_EQ(emu_device_get_state(device(f, DEV_B)), TDISP_STATE_CONFIG_LOCKED);
        {
                struct tsm_priv_context m = context_msg(TSM_PRIV_CLOSE_CONTEXT, OTHER_SLOT, b);
                ASSERT_OK(call(f, &m, &rep));
        }
        ASSERT_EQ(emu_device_get_state(device(f, DEV_B)), TDISP_STATE_CONFIG_LOCKED);

        fixture_free(f);
}

/* A device answering later than the worker lives: its answer goes nowhere. */
TEST(stop_cancels_requests) {
        Fixture *f = fixture();
        struct tsm_priv_restored_context restored[4];
        struct tsm_priv_guest_request m;
        uint8_t req[64];
        uint32_t id;
        size_t len;

        id = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, id, 1, DEV_A, NULL));
        len = tdisp_request(f, DEV_A, TDISP_MSG_GET_VERSION, req, sizeof(req));
        for (int i = 0; i < 3; i++) {
                m = guest_request_msg(f, SLOT, id, 1, TSM_SCOPE_INFO, len);
                m.hdr.cookie = 100 + i;
                ASSERT_OK(tsm_priv_send(f->worker, &m, req, len, -EBADF));
        }
        process_ok(f);
        ASSERT_EQ(monitor_dispatch_n_requests(f->dispatch), 3);

        worker_stop(f);
        ASSERT_EQ(monitor_dispatch_n_requests(f->dispatch), 0);
        ASSERT_EQ(monitor_contexts_get(f->contexts, id)->slot, TSM_PRIV_SLOT_WORKER);
        ASSERT_EQ(event_base_loop(f->base, EVLOOP_NONBLOCK), 1); /* nothing left to run */

        /* The next worker hears of the context, and nothing else. */
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
        ASSERT_EQ(restored[0].context, id);
        (void) event_base_loop(f->base, EVLOOP_NONBLOCK);
        nothing_waiting(f);
        fixture_free(f);
}

/* The worker restarts; the monitor's contexts wait for it at slot 0. */
TEST(reclaim_after_restart) {
        Fixture *f = fixture();
        struct tsm_priv_restored_context restored[4];
        struct tsm_priv_reclaim_context m;
        uint32_t a, b, value;
        Reply rep;
        int fa, fd;

        a = open_context(f, SLOT, ID_A, &fa);
        b = open_context(f, OTHER_SLOT, ID_B, NULL);
        ASSERT_OK(attach(f, SLOT, a, 3, DEV_A, NULL));
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, a, 3, NULL));

        /* Held by a slot: not to be reclaimed. */
        m = reclaim_msg(OTHER_SLOT, a);
        expect_violation(f, &m, "RECLAIM_CONTEXT");

        /* The new worker hears how the one before ended (the first heard of none). */
        ASSERT_EQ(f->hello.previous_end, TSM_PRIV_WORKER_FIRST);
        worker_stop(f);
        monitor_dispatch_set_previous_worker(f->dispatch, TSM_PRIV_WORKER_CRASHED, SIGSEGV);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 2);
        ASSERT_EQ(f->hello.previous_end, TSM_PRIV_WORKER_CRASHED);
        ASSERT_EQ(f->hello.previous_status, SIGSEGV);
        ASSERT_EQ(restored[0].context, a);
        ASSERT_EQ(restored[0].uid, 1000);
        ASSERT_STREQ(restored[0].reclaim_id, ID_A);
        ASSERT_EQ(restored[1].context, b);
        ASSERT_STREQ(restored[1].reclaim_id, ID_B);
        /* With the vDevices as the monitor has them, the bind included. */
        ASSERT_EQ(restored[0].n_vdevices, 1u);
        ASSERT_EQ(restored[0].partial, 0u);
        ASSERT_EQ(restored_state(f, a, 3, DEV_A), TSM_PRIV_VDEVICE_BOUND);
        ASSERT_EQ(restored[1].n_vdevices, 0u);

        /* Slot 0 acts on orphans. */
        ASSERT_OK(vdevice_op(f, TSM_PRIV_GET_VDEVICE_STATE, TSM_PRIV_SLOT_WORKER, a, 3, &value));
        ASSERT_EQ(value, TDISP_STATE_CONFIG_LOCKED);
        /* The old slots mean nothing now. */
        {
                struct tsm_priv_vdevice v = vdevice_msg(TSM_PRIV_GET_VDEVICE_STATE, SLOT, a, 3);
                int r;

                send_raw(f, &v, sizeof(v), -EBADF);
                r = monitor_dispatch_process(f->dispatch, &(const char *){ NULL });
                ASSERT_EQ(r, -EPERM);
                worker_stop(f);
                ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 2);
        }

        m = reclaim_msg(42, a);
        ASSERT_OK(call(f, &m, &rep));
        fd = rep.fd;
        ASSERT_GE(fd, 0);
        ASSERT_TRUE(same_object(fd, fa)); /* the same kernel object as before the restart */
        ASSERT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        ASSERT_EQ(monitor_contexts_get(f->contexts, a)->slot, 42);
        /* Named by its renewed token's reclaim id from now on; the old id names nothing. */
        ASSERT_STREQ(monitor_contexts_get(f->contexts, a)->reclaim_id, reclaim_msg_id);
        ASSERT_NULL(monitor_contexts_find_reclaim_id(f->contexts, ID_A));
        close(fd);
        close(fa);
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 2);
        ASSERT_EQ(restored[0].context, a);
        ASSERT_STREQ(restored[0].reclaim_id, reclaim_msg_id);

        /* The new worker heard of the vDevice at its start: attaching it again is no slip. */
        {
                struct tsm_priv_attach_vdevice again = attach_msg(42, a, 3, DEV_A);
                expect_violation(f, &again, "ATTACH_VDEVICE");
                worker_stop(f);
                ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 2);
                ASSERT_EQ(restored_state(f, a, 3, DEV_A), TSM_PRIV_VDEVICE_BOUND);
                m = reclaim_msg(42, a);
                ASSERT_OK(call(f, &m, &rep));
                close(rep.fd);
        }

        /* Reclaimed once: a second time is someone else's doing. */
        m = reclaim_msg(43, a);
        expect_violation(f, &m, "RECLAIM_CONTEXT");
        fixture_free(f);
}

/* A worker that could not save the state a renewed token needs names the context by its own
 * id: the context changes hands under its name, which the VMM's token still matches. */
TEST(reclaim_under_its_own_name_keeps_it) {
        Fixture *f = fixture();
        struct tsm_priv_reclaim_context m;
        Reply rep;
        uint32_t a;

        a = open_context(f, SLOT, ID_A, NULL);
        monitor_contexts_orphan_all(f->contexts);
        m = reclaim_msg_id_of(42, a, ID_A);
        ASSERT_OK(call(f, &m, &rep));
        ASSERT_TRUE(rep.fd >= 0);
        close(rep.fd);
        ASSERT_STREQ(monitor_contexts_get(f->contexts, a)->reclaim_id, ID_A);
        ASSERT_EQ(monitor_contexts_get(f->contexts, a)->slot, 42u);
        fixture_free(f);
}

/* A new worker hears of each kept context's vDevices as the monitor has them (bound, gone), so
 * it attaches none of them again, whatever a state file says. A context the fd store handed back
 * is partial (only the state file knows its vDevices) until a worker has restored it: READY. */
TEST(restart_tells_the_monitors_vdevices) {
        Fixture *f = fixture();
        struct tsm_priv_restored_context restored[4];
        struct tsm_priv_ready ready;
        struct tsm_priv_attach_vdevice again;
        uint32_t a, b;
        int p[2];

        a = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, a, 3, DEV_A, NULL));
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, a, 3, NULL));
        ASSERT_OK(attach(f, SLOT, a, 4, DEV_B, NULL));
        monitor_contexts_device_gone(f->contexts, DEV_B);
        /* As the fd store hands one back to a new tsmd: no vDevices known. */
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        ASSERT_OK(monitor_contexts_restore(f->contexts, p[1], "ctx.1000." ID_B, &b));
        close(p[0]);

        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 2);
        ASSERT_EQ(restored[0].context, a);
        ASSERT_EQ(restored[0].n_vdevices, 2u);
        ASSERT_EQ(restored[0].partial, 0u);
        ASSERT_EQ(restored_state(f, a, 3, DEV_A), TSM_PRIV_VDEVICE_BOUND);
        ASSERT_EQ(restored_state(f, a, 4, DEV_B), TSM_PRIV_VDEVICE_GONE);
        ASSERT_EQ(restored[1].context, b);
        ASSERT_EQ(restored[1].n_vdevices, 0u);
        ASSERT_EQ(restored[1].partial, 1u);

        /* The worker restores the partial one from its state file, then says it serves. */
        ASSERT_OK(attach(f, TSM_PRIV_SLOT_WORKER, b, 7, DEV_B, NULL));
        tsm_priv_init(&ready, TSM_PRIV_READY, 0, 0);
        ASSERT_OK(tsm_priv_send(f->worker, &ready, NULL, 0, -EBADF));
        process_ok(f);
        ASSERT_EQ(f->n_ready, 1u);

        /* Every vDevice the worker heard of is attached already: naming one again is no slip. */
        again = attach_msg(TSM_PRIV_SLOT_WORKER, a, 4, DEV_B);
        expect_violation(f, &again, "ATTACH_VDEVICE");
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 2);
        ASSERT_EQ(restored[1].context, b);
        ASSERT_EQ(restored[1].n_vdevices, 1u);
        ASSERT_EQ(restored[1].partial, 0u);
        ASSERT_EQ(restored_state(f, b, 7, DEV_B), 0u);
        /* Nor does a state file add to a kept context the monitor knows whole. */
        again = attach_msg(TSM_PRIV_SLOT_WORKER, b, 8, DEV_A);
        expect_violation(f, &again, "ATTACH_VDEVICE");
        fixture_free(f);
}

/* Runs the monitor's loop until cond holds (at most 5 s: lane threads may be slow). */
#define LOOP_UNTIL(f, cond)                                                                        \
        for (unsigned _i = 0; !(cond); _i++) {                                                     \
                ASSERT_LE(_i, 5000u);                                                              \
                ASSERT_OK(event_base_loop((f)->base, EVLOOP_ONCE | EVLOOP_NONBLOCK));              \
                usleep(1000);                                                                      \
        }

/* Whether the monitor sent the worker something. */
static bool worker_has_input(Fixture *f) {
        struct pollfd p = { .fd = f->worker, .events = POLLIN };

        return tsm_priv_reader_has_message(&f->reader) || poll(&p, 1, 0) > 0;
}

/* The next message, which must be a LATE of op (the loop runs until it comes), into ret; as a
 * LATE always is: no cookie, an id. */
static void receive_late(Fixture *f, uint32_t op, struct tsm_priv_late *ret) {
        LOOP_UNTIL(f, worker_has_input(f));
        receive(f, TSM_PRIV_LATE, ret, sizeof(*ret), NULL, NULL);
        ASSERT_EQ(ret->op, op);
        ASSERT_EQ(ret->hdr.cookie, 0u);
        ASSERT_NE(ret->id, 0u);
}

/* Acknowledges LATE id as the worker does (LATE_ACK): being recorded under seq, or recorded. */
static void ack_late(Fixture *f, uint64_t id, uint64_t seq, bool durable) {
        struct tsm_priv_late_ack a;

        tsm_priv_init(&a, TSM_PRIV_LATE_ACK, 0, 0);
        a.id = id;
        a.seq = seq;
        a.durable = durable;
        ASSERT_OK(tsm_priv_send(f->worker, &a, NULL, 0, -EBADF));
        process_ok(f);
}

/* Binds and unbinds are answered from the loop (a kernel one runs on the device's lane), so the
 * monitor's record follows the TSM's answer, not the message: a detach that comes while a bind
 * is on its way undoes it, and a bind whose worker died still counts, unanswered. */
TEST(bind_in_flight) {
        Fixture *f = fixture();
        struct tsm_priv_vdevice bind = vdevice_msg(TSM_PRIV_BIND_VDEVICE, SLOT, 0, 3);
        struct tsm_priv_vdevice detach = vdevice_msg(TSM_PRIV_DETACH_VDEVICE, SLOT, 0, 3);
        MonitorContext *ctx;
        uint32_t a, value;
        Reply rep;

        a = open_context(f, SLOT, ID_A, NULL);
        ctx = monitor_contexts_get(f->contexts, a);
        ASSERT_OK(attach(f, SLOT, a, 3, DEV_A, NULL));

        /* Bind, then detach, in one batch: the release unbinds after the bind. */
        bind.context = detach.context = a;
        bind.hdr.cookie = ++f->cookie;
        detach.hdr.cookie = ++f->cookie;
        ASSERT_OK(tsm_priv_send(f->worker, &bind, NULL, 0, -EBADF));
        ASSERT_OK(tsm_priv_send(f->worker, &detach, NULL, 0, -EBADF));
        process_ok(f);
        receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL); /* the detach, at once */
        ASSERT_EQ(rep.r.hdr.cookie, detach.hdr.cookie);
        ASSERT_OK(rep.r.result);
        await_reply(f);
        receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL); /* the bind, from the loop */
        ASSERT_EQ(rep.r.hdr.cookie, bind.hdr.cookie);
        ASSERT_OK(rep.r.result);
        ASSERT_OK(event_base_loop(f->base, EVLOOP_NONBLOCK)); /* the release's unbind answers */
        ASSERT_EQ(emu_device_get_state(device(f, DEV_A)), TDISP_STATE_CONFIG_UNLOCKED);
        ASSERT_EQ(ctx->n_vdevices, 0);

        /* A bind whose worker dies before the answer: the record follows the TSM all the same,
         * and the next worker hears how it ended, for its audit log (with no cookie of its own:
         * the call was the other worker's). */
        ASSERT_OK(attach(f, SLOT, a, 4, DEV_A, NULL));
        bind.vdevice = 4;
        bind.hdr.cookie = ++f->cookie;
        ASSERT_OK(tsm_priv_send(f->worker, &bind, NULL, 0, -EBADF));
        process_ok(f);
        ASSERT_EQ(monitor_context_find_vdevice(ctx, 4)->n_changes, 1u);
        worker_stop(f);
        ASSERT_EQ(worker_start(f, (struct tsm_priv_restored_context[1]){}, 1), 1);
        ASSERT_EQ(restored_state(f, a, 4, DEV_A), TSM_PRIV_VDEVICE_CHANGING);
        {
                struct tsm_priv_late late;

                receive_late(f, TSM_PRIV_LATE_BIND, &late);
                ASSERT_EQ(late.request_cookie, 0u);
                ASSERT_EQ(late.context, a);
                ASSERT_EQ(late.vdevice, 4u);
                ASSERT_EQ(late.uid, 1000u);
                ASSERT_EQ(late.backend, (uint32_t) TSM_BACKEND_EMULATED);
                ASSERT_EQ(late.result, 0);
                ASSERT_STREQ(late.pci_address, DEV_A);
                ack_late(f, late.id, 0, true);
        }
        nothing_waiting(f);
        ASSERT_TRUE(monitor_context_find_vdevice(ctx, 4)->bound);
        ASSERT_EQ(monitor_context_find_vdevice(ctx, 4)->n_changes, 0u);
        ASSERT_OK(vdevice_op(f, TSM_PRIV_SETTLE_VDEVICE, TSM_PRIV_SLOT_WORKER, a, 4, &value));
        ASSERT_EQ(value, 1u);
        fixture_free(f);
}

/* The answer of a call the device ran is kept until the worker says its record is durable
 * (RECORDED): a worker that ends first (killed between the answer and its record) leaves it to
 * the next one as a LATE, whose record tells what the device did. Said recorded, it is
 * forgotten: the normal path keeps nothing. */
TEST(kept_answer_goes_late_to_the_next_worker) {
        Fixture *f = fixture();
        struct tsm_priv_late late;
        uint8_t req[64];
        uint32_t a, unbind_cookie, request_cookie;
        size_t len;
        Reply rep;

        a = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, a, 1, DEV_A, NULL));
        len = tdisp_request(f, DEV_A, TDISP_MSG_GET_VERSION, req, sizeof(req));
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, a, 1, NULL));

        /* Said recorded: nothing stays, however many. */
        for (unsigned i = 0; i < 64; i++) {
                ASSERT_OK(guest_request(f, SLOT, a, 1, TSM_SCOPE_INFO, req, len, &rep));
                ASSERT_TRUE(rep.r.hdr.flags & TSM_PRIV_REPLY_KEPT);
        }
        process_ok(f);
        ASSERT_EQ(monitor_dispatch_n_answers_kept(f->dispatch), 0u);

        /* Answered, the worker ends before its records are durable. */
        f->hold_recorded = true;
        ASSERT_OK(guest_request(f, SLOT, a, 1, TSM_SCOPE_INFO, req, len, &rep));
        request_cookie = f->kept_cookie;
        ASSERT_EQ(request_cookie, f->cookie);
        ASSERT_OK(vdevice_op(f, TSM_PRIV_UNBIND_VDEVICE, SLOT, a, 1, NULL));
        unbind_cookie = f->kept_cookie;
        ASSERT_EQ(unbind_cookie, f->cookie);
        ASSERT_EQ(monitor_dispatch_n_answers_kept(f->dispatch), 2u);
        /* A cookie not kept for it, and one named twice, are violations. */
        {
                uint8_t raw[sizeof(struct tsm_priv_recorded) + 2 * sizeof(uint32_t)];
                struct tsm_priv_recorded m;
                uint32_t cookies[2] = { request_cookie, request_cookie + 1000 };

                tsm_priv_init(&m, TSM_PRIV_RECORDED, 0, sizeof(cookies));
                memcpy(raw, &m, sizeof(m));
                memcpy(raw + sizeof(m), cookies, sizeof(cookies));
                /* Checked before the monitor forgets any: a violation ends the worker anyway. */
                ASSERT_ERRNO(expect_violation_full(f, raw, sizeof(raw), -EBADF, "RECORDED"), EPERM);
        }
        worker_stop(f);
        ASSERT_EQ(monitor_dispatch_n_answers_kept(f->dispatch), 0u);
        ASSERT_EQ(worker_start(f, (struct tsm_priv_restored_context[1]){}, 1), 1);
        /* The violating message forgot nothing: both go late. */
        receive_late(f, TSM_PRIV_LATE_GUEST_REQUEST, &late);
        ASSERT_EQ(late.request_cookie, 0u);
        ASSERT_EQ(late.context, a);
        ASSERT_EQ(late.vdevice, 1u);
        ASSERT_EQ(late.uid, 1000u);
        ASSERT_EQ(late.result, 0);
        ASSERT_EQ(late.response_size, rep.r.hdr.payload_len);
        ASSERT_STREQ(late.scope, TSM_SCOPE_INFO);
        ASSERT_STREQ(late.pci_address, DEV_A);
        ack_late(f, late.id, 0, true);
        receive_late(f, TSM_PRIV_LATE_UNBIND, &late);
        ASSERT_EQ(late.request_cookie, 0u);
        ASSERT_EQ(late.result, 0);
        ASSERT_EQ(late.backend, (uint32_t) TSM_BACKEND_EMULATED);
        ack_late(f, late.id, 0, true);
        nothing_waiting(f);
        ASSERT_EQ(monitor_dispatch_n_late_kept(f->dispatch), 0u);

        /* Said unrecorded (its caller left): a LATE at once, naming this worker's cookie. Said
         * recorded in a RECORDED the ending worker sent and the monitor did not read yet: not
         * again. */
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, TSM_PRIV_SLOT_WORKER, a, 1, NULL));
        send_recorded(f, &f->kept_cookie, 1, true);
        process_ok(f);
        receive_late(f, TSM_PRIV_LATE_BIND, &late);
        ASSERT_EQ(late.request_cookie, f->kept_cookie);
        ASSERT_EQ(late.result, 0);
        ack_late(f, late.id, 0, true);
        ASSERT_OK(guest_request(f, TSM_PRIV_SLOT_WORKER, a, 1, TSM_SCOPE_INFO, req, len, &rep));
        ASSERT_EQ(monitor_dispatch_n_answers_kept(f->dispatch), 1u);
        send_recorded(f, &f->kept_cookie, 1, false);
        worker_stop(f);
        ASSERT_EQ(monitor_dispatch_n_answers_kept(f->dispatch), 0u);
        ASSERT_EQ(monitor_dispatch_n_late_kept(f->dispatch), 0u);
        fixture_free(f);
}

/* Sends m (a bind or unbind) with a fresh cookie; returns once the fake kernel holds it. */
/* Sends a BIND_VDEVICE or UNBIND_VDEVICE, then a guest request (GET_VERSION, scope info) of
 * vDevice 1 of context a in one batch, without waiting for the first: their answers, in the
 * order the device took them (the change's, then the request's). */
static int change_then_request(Fixture *f, uint32_t type, uint32_t a, Reply *ret) {
        struct tsm_priv_vdevice change = vdevice_msg(type, SLOT, a, 1);
        struct tsm_priv_guest_request m;
        uint8_t req[64];
        size_t len = tdisp_request(f, DEV_A, TDISP_MSG_GET_VERSION, req, sizeof(req));
        Reply rep;

        m = guest_request_msg(f, SLOT, a, 1, TSM_SCOPE_INFO, len);
        change.hdr.cookie = ++f->cookie;
        m.hdr.cookie = ++f->cookie;
        ASSERT_OK(tsm_priv_send(f->worker, &change, NULL, 0, -EBADF));
        ASSERT_OK(tsm_priv_send(f->worker, &m, req, len, -EBADF));
        process_ok(f);
        await_reply(f);
        receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
        ASSERT_EQ(rep.r.hdr.cookie, change.hdr.cookie);
        ASSERT_OK(rep.r.result);
        await_reply(f);
        receive(f, TSM_PRIV_REPLY, &ret->r, sizeof(ret->r), NULL, NULL);
        ASSERT_EQ(ret->r.hdr.cookie, m.hdr.cookie);
        ASSERT_EQ(monitor_dispatch_n_requests(f->dispatch), 0);
        return ret->r.result;
}

/* As the kernel's pci_tsm_guest_req() refuses a guest request for a TDI not bound (ENXIO), the
 * emulated TSM refuses one for a vDevice never bound or unbound: the TSM's answer, not the
 * monitor's own, and nothing reaches the device. A bind sent before the request counts, though
 * not answered yet when the request comes, as on a kernel device's lane; an unbind likewise. */
TEST(guest_requests_need_the_tdi_bound) {
        Fixture *f = fixture();
        uint8_t req[64];
        uint32_t a;
        size_t len;
        Reply rep;

        a = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, a, 1, DEV_A, NULL));
        len = tdisp_request(f, DEV_A, TDISP_MSG_LOCK_INTERFACE_REQ, req, sizeof(req));
        ASSERT_ERRNO(guest_request(f, SLOT, a, 1, TSM_SCOPE_STATE_CHANGE, req, len, &rep), ENXIO);
        ASSERT_EQ(rep.r.value, 0u); /* the TSM's answer */
        ASSERT_EQ(rep.r.hdr.payload_len, 0u);
        ASSERT_EQ(emu_device_get_state(device(f, DEV_A)), TDISP_STATE_CONFIG_UNLOCKED);

        ASSERT_OK(change_then_request(f, TSM_PRIV_BIND_VDEVICE, a, &rep));
        ASSERT_GE(rep.r.hdr.payload_len, sizeof(TdispHeader)); /* the VERSION */
        ASSERT_ERRNO(change_then_request(f, TSM_PRIV_UNBIND_VDEVICE, a, &rep), ENXIO);
        ASSERT_EQ(rep.r.value, 0u);
        fixture_free(f);
}

static void send_into_held_kernel(Fixture *f, struct tsm_priv_vdevice *m) {
        m->hdr.cookie = ++f->cookie;
        ASSERT_OK(tsm_priv_send(f->worker, m, NULL, 0, -EBADF));
        process_ok(f);
        fake_kernel_wait_inside(1);
}


/* On the kernel's TSMs a bind is an ioctl that may take seconds: it runs on the device's lane,
 * the monitor answers everything else meanwhile, a detach of the vDevice queues its unbind
 * behind the bind, and a bind whose worker died is recorded when the kernel answers. */
TEST(kernel_bind_runs_on_the_devices_lane) {
        Fixture *f = kernel_fixture();
        struct tsm_priv_vdevice bind = vdevice_msg(TSM_PRIV_BIND_VDEVICE, SLOT, 0, VDEV_HELD);
        struct tsm_priv_restored_context restored[1];
        FakeKernelCall calls[4];
        MonitorContext *ctx;
        uint32_t a;
        Reply rep;

        a = open_context(f, SLOT, ID_A, NULL);
        ctx = monitor_contexts_get(f->contexts, a);
        ASSERT_OK(attach(f, SLOT, a, VDEV_HELD, NIC, NULL));
        ASSERT_OK(attach(f, SLOT, a, 22, GPU, NULL));
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, a, 22, NULL)); /* its requests need it */

        fake_kernel_hold(true);
        bind.context = a;
        send_into_held_kernel(f, &bind);

        /* The other device is served meanwhile, and the vDevice being bound is detached. */
        ASSERT_OK(guest_request(f, SLOT, a, 22, TSM_SCOPE_INFO, "ping", 4, &rep));
        ASSERT_EQ(rep.r.hdr.payload_len, strlen(FAKE_KERNEL_RESPONSE));
        ASSERT_MEMEQ(rep.payload, FAKE_KERNEL_RESPONSE, strlen(FAKE_KERNEL_RESPONSE));
        ASSERT_OK(vdevice_op(f, TSM_PRIV_DETACH_VDEVICE, SLOT, a, VDEV_HELD, NULL));
        ASSERT_EQ(fake_kernel_n_inside(), 1u);
        /* Busy for the next guest until the release is done. */
        ASSERT_ERRNO(attach(f, SLOT, a, 33, NIC, NULL), EBUSY);

        fake_kernel_hold(false);
        await_reply(f);
        receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
        ASSERT_EQ(rep.r.hdr.cookie, bind.hdr.cookie);
        ASSERT_OK(rep.r.result);
        LOOP_UNTIL(f, fake_kernel_calls(calls, 0) >= 4);
        ASSERT_EQ(fake_kernel_calls(calls, ELEMENTSOF(calls)), 4u);
        ASSERT_TRUE(calls[0].op && calls[0].vdevice == 22 && calls[0].value == TSMD_IOMMU_VDEVICE_TSM_BIND_V5);
        ASSERT_TRUE(calls[1].op && calls[1].vdevice == VDEV_HELD && calls[1].value == TSMD_IOMMU_VDEVICE_TSM_BIND_V5);
        ASSERT_TRUE(!calls[2].op && calls[2].vdevice == 22);
        ASSERT_TRUE(calls[3].op && calls[3].vdevice == VDEV_HELD && calls[3].value == TSMD_IOMMU_VDEVICE_TSM_UNBIND_V5);
        nothing_waiting(f); /* the release's unbind is the monitor's own */
        LOOP_UNTIL(f, !tsm_platform_is_changing(f->platform, NIC));

        /* The worker dies while the kernel holds a bind: the next one hears how it ended. */
        ASSERT_OK(attach(f, SLOT, a, VDEV_HELD, NIC, NULL));
        fake_kernel_hold(true);
        send_into_held_kernel(f, &bind);
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
        fake_kernel_hold(false);
        LOOP_UNTIL(f, monitor_context_find_vdevice(ctx, VDEV_HELD)->n_changes == 0);
        ASSERT_TRUE(monitor_context_find_vdevice(ctx, VDEV_HELD)->bound);
        {
                struct tsm_priv_late late;

                receive_late(f, TSM_PRIV_LATE_BIND, &late);
                ASSERT_EQ(late.request_cookie, 0u);
                ASSERT_EQ(late.vdevice, VDEV_HELD);
                ASSERT_EQ(late.backend, (uint32_t) TSM_BACKEND_SEV_TIO);
                ASSERT_EQ(late.result, 0);
                ASSERT_STREQ(late.pci_address, NIC);
        }
        nothing_waiting(f);
        fixture_free(f);
}

/* After a restart of tsmd the kernel still has a vDevice bound that the fd store's context had:
 * the worker's restore says so, and the monitor records it bound, so that the next worker hears
 * it is (RESTORED_VDEVICE) and its release unbinds it. Before, it was recorded unbound, and
 * nobody unbound it. */
/* A context the fd store handed back, and a new worker restoring vdevice on address in it, the
 * state file saying it is bound. Returns the context's id. */
static uint32_t restore_bound_vdevice(Fixture *f, uint32_t vdevice, const char *address) {
        struct tsm_priv_restored_context restored[2];
        struct tsm_priv_attach_vdevice m;
        uint32_t kept;
        Reply rep;
        int p[2];

        ASSERT_OK(pipe2(p, O_CLOEXEC));
        ASSERT_OK(monitor_contexts_restore(f->contexts, p[1], "ctx.1000." ID_A, &kept));
        close(p[0]);
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
        m = attach_msg(TSM_PRIV_SLOT_WORKER, kept, vdevice, address);
        m.state = TSM_PRIV_VDEVICE_BOUND;
        ASSERT_OK(call(f, &m, &rep));
        return kept;
}

TEST(kernel_restore_attaches_bound) {
        Fixture *f = kernel_fixture();
        struct tsm_priv_restored_context restored[2];
        FakeKernelCall calls[4];
        uint32_t kept;
        Reply rep;

        kept = restore_bound_vdevice(f, 22, GPU);
        ASSERT_TRUE(monitor_context_find_vdevice(monitor_contexts_get(f->contexts, kept), 22)->bound);
        /* Restoring it touched no device. */
        ASSERT_EQ(fake_kernel_calls(calls, ELEMENTSOF(calls)), 0u);

        /* The next worker hears it is bound; when it lets the context go, the TDI is unbound. */
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
        ASSERT_EQ(restored_state(f, kept, 22, GPU), TSM_PRIV_VDEVICE_BOUND);
        {
                struct tsm_priv_context close_msg = context_msg(TSM_PRIV_CLOSE_CONTEXT, TSM_PRIV_SLOT_WORKER, kept);

                ASSERT_OK(call(f, &close_msg, &rep));
        }
        LOOP_UNTIL(f, fake_kernel_calls(calls, 0) >= 1);
        ASSERT_EQ(fake_kernel_calls(calls, ELEMENTSOF(calls)), 1u);
        ASSERT_TRUE(calls[0].op && calls[0].vdevice == 22 && calls[0].value == TSMD_IOMMU_VDEVICE_TSM_UNBIND_V5);
        LOOP_UNTIL(f, !tsm_platform_is_changing(f->platform, GPU));
        fixture_free(f);
}

/* An emulated TSM lives in the monitor: a restore's word that its device is bound is not taken
 * (the new TSM bound nothing; the worker binds it again). */
TEST(emulated_restore_attaches_unbound) {
        Fixture *f = fixture();
        uint32_t kept = restore_bound_vdevice(f, 5, DEV_A);

        ASSERT_FALSE(monitor_context_find_vdevice(monitor_contexts_get(f->contexts, kept), 5)->bound);
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, TSM_PRIV_SLOT_WORKER, kept, 5, NULL));
        ASSERT_EQ(emu_device_get_state(device(f, DEV_A)), TDISP_STATE_CONFIG_LOCKED);
        fixture_free(f);
}

/* Sends a SETTLE_VDEVICE for vdevice of context a (slot 0: restored), answered later. */
static uint32_t send_settle(Fixture *f, uint32_t a, uint32_t vdevice) {
        struct tsm_priv_vdevice settle = vdevice_msg(TSM_PRIV_SETTLE_VDEVICE, TSM_PRIV_SLOT_WORKER, a, vdevice);

        settle.hdr.cookie = ++f->cookie;
        ASSERT_OK(tsm_priv_send(f->worker, &settle, NULL, 0, -EBADF));
        process_ok(f);
        nothing_waiting(f);
        return settle.hdr.cookie;
}

/* A new worker restores a vDevice whose bind its predecessor did not see answered: the monitor
 * says a change is on its way, and SETTLE_VDEVICE is answered once the kernel is done (with
 * where it ended, or ENODEV if the vDevice was detached meanwhile); nothing reaches a worker
 * that stopped waiting. */
TEST(settle_follows_a_change_the_worker_did_not_see) {
        Fixture *f = kernel_fixture();
        struct tsm_priv_vdevice bind = vdevice_msg(TSM_PRIV_BIND_VDEVICE, SLOT, 0, VDEV_HELD);
        struct tsm_priv_vdevice unbind = vdevice_msg(TSM_PRIV_UNBIND_VDEVICE, TSM_PRIV_SLOT_WORKER, 0, VDEV_HELD);
        struct tsm_priv_restored_context restored[1];
        struct tsm_priv_reclaim_context reclaim;
        uint32_t a, cookie;
        MonitorContext *ctx;
        Reply rep;

        a = open_context(f, SLOT, ID_A, NULL);
        ctx = monitor_contexts_get(f->contexts, a);
        ASSERT_OK(attach(f, SLOT, a, VDEV_HELD, NIC, NULL));
        fake_kernel_hold(true);
        bind.context = a;
        send_into_held_kernel(f, &bind);
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);

        ASSERT_EQ(restored_state(f, a, VDEV_HELD, NIC), TSM_PRIV_VDEVICE_CHANGING);
        cookie = send_settle(f, a, VDEV_HELD);
        fake_kernel_hold(false);
        {
                /* How the bind ended, for the audit log, before the settle's answer. */
                struct tsm_priv_late late;

                receive_late(f, TSM_PRIV_LATE_BIND, &late);
                ASSERT_EQ(late.result, 0);
                ack_late(f, late.id, 0, true);
        }
        receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
        ASSERT_EQ(rep.r.hdr.cookie, cookie);
        ASSERT_OK(rep.r.result);
        ASSERT_EQ(rep.r.value, 1u);
        ASSERT_TRUE(monitor_context_find_vdevice(ctx, VDEV_HELD)->bound);

        /* Detached while it waits: the change ends, the vDevice is not there to say. */
        fake_kernel_hold(true);
        unbind.context = a;
        send_into_held_kernel(f, &unbind);
        cookie = send_settle(f, a, VDEV_HELD);
        ASSERT_OK(vdevice_op(f, TSM_PRIV_DETACH_VDEVICE, TSM_PRIV_SLOT_WORKER, a, VDEV_HELD, NULL));
        fake_kernel_hold(false);
        await_reply(f);
        receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
        ASSERT_EQ(rep.r.hdr.cookie, unbind.hdr.cookie);
        ASSERT_OK(rep.r.result);
        receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
        ASSERT_EQ(rep.r.hdr.cookie, cookie);
        ASSERT_EQ(rep.r.result, -ENODEV);
        LOOP_UNTIL(f, !tsm_platform_is_changing(f->platform, NIC));

        /* A worker that stops while its settle waits: the next one hears nothing of it, only
         * how the bind ended. (Its VMM took the context back first: a kept context gains no
         * vDevices.) */
        reclaim = reclaim_msg(SLOT, a);
        ASSERT_OK(call(f, &reclaim, &rep));
        safe_close(rep.fd);
        ASSERT_OK(attach(f, SLOT, a, VDEV_HELD, NIC, NULL));
        fake_kernel_hold(true);
        bind.vdevice = VDEV_HELD;
        send_into_held_kernel(f, &bind);
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
        (void) send_settle(f, a, VDEV_HELD);
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
        fake_kernel_hold(false);
        LOOP_UNTIL(f, monitor_context_find_vdevice(ctx, VDEV_HELD)->n_changes == 0);
        {
                struct tsm_priv_late late;

                receive_late(f, TSM_PRIV_LATE_BIND, &late);
                ASSERT_EQ(late.result, 0);
        }
        nothing_waiting(f);
        ASSERT_TRUE(monitor_context_find_vdevice(ctx, VDEV_HELD)->bound);
        fixture_free(f);
}

static int disconnect(Fixture *f, const char *address) {
        struct tsm_priv_device dev;
        Reply rep;

        tsm_priv_init(&dev, TSM_PRIV_DISCONNECT_DEVICE, 0, 0);
        strcpy(dev.pci_address, address);
        return call(f, &dev, &rep);
}

/* The kernel connects a device to its TSM inside the write to tsm/connect (an SPDM session and
 * IDE key setup: seconds). Here the write waits in a full pipe, tsm/connect being a FIFO: it
 * runs on the device's lane, the monitor answers everything else meanwhile, and another change
 * of the device's connection is -EBUSY. The worker that asked dies: neither it nor the next one
 * hears the answer, but the monitor sees the device connected once the write is done. */
TEST(connect_runs_on_the_devices_lane) {
        Fixture *f = kernel_fixture();
        struct tsm_priv_restored_context restored[1];
        struct tsm_priv_device dev, off;
        static char filler[4096];
        char path[PATH_MAX], tmp[PATH_MAX + 8], buf[4096];
        TsmDeviceInfo info;
        int rd, wr;
        Reply rep;

        snprintf(path, sizeof(path), "%s" NVME_PATH "/tsm/connect", f->sysfs);
        ASSERT_OK(unlink(path));
        ASSERT_OK(mkfifo(path, 0600));
        ASSERT_OK(rd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC));
        ASSERT_OK(wr = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC));
        while (write(wr, filler, sizeof(filler)) > 0)
                ;
        ASSERT_EQ(errno, EAGAIN);

        tsm_priv_init(&dev, TSM_PRIV_CONNECT_DEVICE, 0, 0);
        strcpy(dev.pci_address, NVME);
        strcpy(dev.tsm, "tsm1");
        dev.hdr.cookie = ++f->cookie;
        ASSERT_OK(tsm_priv_send(f->worker, &dev, NULL, 0, -EBADF));
        process_ok(f);
        ASSERT_TRUE(tsm_platform_is_changing(f->platform, NVME));
        ASSERT_ERRNO(call(f, &dev, &rep), EBUSY);
        tsm_priv_init(&off, TSM_PRIV_DISCONNECT_DEVICE, 0, 0);
        strcpy(off.pci_address, NVME);
        ASSERT_ERRNO(call(f, &off, &rep), EBUSY);
        ASSERT_OK(disconnect(f, GPU)); /* another device's lane */

        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 0);
        /* The kernel is done: tsm/connect names the TSM, and the write completes. */
        snprintf(tmp, sizeof(tmp), "%s.new", path);
        ASSERT_OK(sysfs_fixture_write_attr(f->sysfs, NVME_PATH, "tsm/connect.new", "tsm1"));
        ASSERT_OK(rename(tmp, path));
        safe_close(wr);
        for (;;) {
                struct pollfd p = { .fd = rd, .events = POLLIN };
                ssize_t n;

                ASSERT_EQ(poll(&p, 1, 5000), 1);
                n = read(rd, buf, sizeof(buf));
                if (n == 0)
                        break; /* the monitor closed it: written */
                ASSERT_TRUE(n > 0 || errno == EAGAIN);
        }
        safe_close(rd);
        LOOP_UNTIL(f, !tsm_platform_is_changing(f->platform, NVME) &&
                              tsm_platform_get_device(f->platform, NVME, &info) >= 0);
        ASSERT_STREQ(info.tsm, "tsm1");
        ASSERT_EQ(info.backend, TSM_BACKEND_TDX_CONNECT);
        {
                /* The answer was the dead worker's: the new one hears how it ended, for its
                 * audit log, with no cookie of its own. */
                struct tsm_priv_late late;

                LOOP_UNTIL(f, worker_has_input(f));
                receive(f, TSM_PRIV_LATE, &late, sizeof(late), NULL, NULL);
                ASSERT_EQ(late.op, TSM_PRIV_LATE_CONNECT);
                ASSERT_EQ(late.request_cookie, 0u);
                ASSERT_EQ(late.result, 0);
                ASSERT_STREQ(late.pci_address, NVME);
                ASSERT_STREQ(late.tsm, "tsm1");
        }
        nothing_waiting(f);
        ASSERT_OK(call(f, &dev, &rep)); /* connected already */
        fixture_free(f);
}

/* The NIC is not disconnected from its TSM while a guest holds held (the NIC, or a function it
 * is the DSM of): not while its VMM holds the context, nor after a restart while the context
 * waits to be reclaimed (which only the monitor knows of when the worker is new). */
static void disconnect_refused_while_holding(const char *held) {
        Fixture *f = kernel_fixture();
        struct tsm_priv_restored_context restored[1];
        uint32_t a;

        a = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, a, 3, held, NULL));
        ASSERT_ERRNO(disconnect(f, NIC), EBUSY);
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
        ASSERT_ERRNO(disconnect(f, NIC), EBUSY);
        ASSERT_OK(vdevice_op(f, TSM_PRIV_DETACH_VDEVICE, TSM_PRIV_SLOT_WORKER, a, 3, NULL));
        ASSERT_OK(disconnect(f, NIC));
        ASSERT_OK(disconnect(f, GPU)); /* never assigned */
        fixture_free(f);
}

TEST(disconnect_refused_while_assigned) {
        disconnect_refused_while_holding(NIC);
}

/* A function without tsm/ of its own: disconnecting its DSM would take the function's link down
 * with it. The monitor refuses it whatever the worker checked. */
TEST(disconnect_refused_while_a_function_of_the_dsm_is_assigned) {
        disconnect_refused_while_holding(NIC_FN1);
}

/* Auto mode: a TSM appears after the start (its driver loaded late) and the real device at an
 * emulated device's address connects to it. The host sees no emulated TDI state there from
 * then on (the emulated device was released, but it no longer serves the address), only where
 * the emulator still serves. */
TEST(device_state_only_where_emulated_serves) {
        const char *sysfs;
        Fixture *f = auto_fixture(&sysfs);
        struct tsm_priv_device dev;
        TsmDeviceInfo info;
        MonitorContext *ctx;
        uint32_t a;
        Reply rep;

        a = open_context(f, SLOT, ID_A, NULL);
        ctx = monitor_contexts_get(f->contexts, a);
        ASSERT_OK(attach(f, SLOT, a, 1, DEV_A, NULL));
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, a, 1, NULL));
        tsm_priv_init(&dev, TSM_PRIV_GET_DEVICE_STATE, 0, 0);
        strcpy(dev.pci_address, DEV_A);
        ASSERT_OK(call(f, &dev, &rep));
        ASSERT_EQ(rep.r.value, TDISP_STATE_CONFIG_LOCKED);

        /* The SEV-TIO module loads: the PSP with tsm0, and the device connects to it. */
        ASSERT_OK(sysfs_fixture_apply_text(sysfs, "pci /devices/pci0000:00/0000:00:18.2 vendor=0x1022 "
                                                  "device=0x14ca class=0x108000 driver=ccp\n"
                                                  "tsm /devices/pci0000:00/0000:00:18.2/tsm/tsm0\n"));
        ASSERT_OK(sysfs_fixture_write_attr(sysfs, "/devices/pci0000:00/0000:00:01.1/" DEV_A, "tsm/connect", "tsm0"));
        ASSERT_OK(uevent_send("add", "/devices/pci0000:00/0000:00:18.2/tsm/tsm0", "tsm", NULL, 1));
        LOOP_UNTIL(f, tsm_platform_get_device(f->platform, DEV_A, &info) >= 0 && !info.emulated);
        ASSERT_TRUE(monitor_context_find_vdevice(ctx, 1)->gone);

        ASSERT_ERRNO(call(f, &dev, &rep), ENODEV);
        strcpy(dev.pci_address, DEV_B);
        ASSERT_OK(call(f, &dev, &rep));
        ASSERT_EQ(rep.r.value, TDISP_STATE_CONFIG_UNLOCKED);
        fixture_free(f);
}

/* A worker's datagram may carry several messages (tsm-priv.h): each is answered, in order, as if
 * it had come alone; and one that breaks a rule, or bytes between them that are not zeros, is
 * the violation of the message it belongs to. */
TEST(messages_packed_in_one_datagram) {
        static const char *const devices[] = { DEV_A, DEV_B, DEV_A };
        _Alignas(8) uint8_t raw[4 * 64] = {};
        struct tsm_priv_device dev;
        const char *reason = NULL;
        size_t len = 0;
        Fixture *f;

        f = fixture();
        for (size_t i = 0; i < ELEMENTSOF(devices); i++) {
                tsm_priv_init(&dev, TSM_PRIV_GET_DEVICE_STATE, 101 + (uint32_t) i, 0);
                strcpy(dev.pci_address, devices[i]);
                /* The first one longer, zero-extended: the next starts at the next multiple of 8. */
                if (i == 0)
                        dev.hdr.size += 4;
                memcpy(raw + len, &dev, sizeof(dev));
                len = DIV_ROUND_UP(len + dev.hdr.size, 8) * 8;
        }
        ASSERT_EQ(len, 64u + 2 * sizeof(dev));
        send_raw(f, raw, len, -EBADF);
        process_ok(f);
        for (size_t i = 0; i < ELEMENTSOF(devices); i++) {
                Reply rep;

                await_reply(f);
                receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
                ASSERT_EQ(rep.r.hdr.cookie, 101 + (uint32_t) i);
                ASSERT_EQ(rep.r.result, 0);
                ASSERT_EQ(rep.r.value, TDISP_STATE_CONFIG_UNLOCKED);
        }
        nothing_waiting(f);

        /* A byte that is not zero between the first and the second: the first is all of it. */
        raw[sizeof(dev) + 5] = 1;
        send_raw(f, raw, len, -EBADF);
        ASSERT_TRUE(monitor_dispatch_process(f->dispatch, &reason) < 0);
        ASSERT_NOT_NULL(reason);
        ASSERT_STREQ(monitor_dispatch_get_violation_type(f->dispatch), "GET_DEVICE_STATE");
        fixture_free(f);

        /* The third breaks a rule: the two before it are answered, it is the violation. */
        f = fixture();
        raw[sizeof(dev) + 5] = 0;
        memcpy(&dev, raw + 64 + sizeof(dev), sizeof(dev));
        dev.hdr.flags = 1;
        memcpy(raw + 64 + sizeof(dev), &dev, sizeof(dev));
        send_raw(f, raw, len, -EBADF);
        ASSERT_TRUE(monitor_dispatch_process(f->dispatch, &reason) < 0);
        ASSERT_NOT_NULL(reason);
        ASSERT_STREQ(monitor_dispatch_get_violation_type(f->dispatch), "GET_DEVICE_STATE");
        fixture_free(f);
}

/* Context a with vDevice VDEV_HELD on the NIC, and two guest requests of it: the first held
 * inside the kernel, the second waiting on the device's lane behind it. */
static uint32_t two_requests_the_first_inside_the_kernel(Fixture *f, uint32_t cookies[static 2]) {
        struct tsm_priv_guest_request m;
        uint32_t a;

        a = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, a, VDEV_HELD, NIC, NULL));
        fake_kernel_hold(true);
        for (unsigned i = 0; i < 2; i++) {
                m = guest_request_msg(f, SLOT, a, VDEV_HELD, TSM_SCOPE_INFO, 4);
                m.hdr.cookie = cookies[i] = ++f->cookie;
                ASSERT_OK(tsm_priv_send(f->worker, &m, "ping", 4, -EBADF));
                process_ok(f);
                if (i == 0)
                        fake_kernel_wait_inside(1);
        }
        return a;
}

/* A detached vDevice's guest requests are answered DeviceGone at once: the one the kernel runs
 * finishes unanswered, the one still waiting never reaches the device. */
TEST(detach_fails_requests_in_flight) {
        Fixture *f = kernel_fixture();
        uint32_t a, cookies[2];
        bool answered[2] = {};
        FakeKernelCall calls[4];
        Reply rep;

        a = two_requests_the_first_inside_the_kernel(f, cookies);
        ASSERT_EQ(monitor_dispatch_n_requests(f->dispatch), 2u);

        {
                struct tsm_priv_vdevice detach = vdevice_msg(TSM_PRIV_DETACH_VDEVICE, SLOT, a, VDEV_HELD);

                detach.hdr.cookie = ++f->cookie;
                ASSERT_OK(tsm_priv_send(f->worker, &detach, NULL, 0, -EBADF));
                process_ok(f);
        }
        for (unsigned i = 0; i < 2; i++) {
                receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
                ASSERT_EQ(rep.r.result, -ENODEV);
                for (unsigned j = 0; j < 2; j++)
                        if (rep.r.hdr.cookie == cookies[j]) {
                                ASSERT_FALSE(answered[j]);
                                answered[j] = true;
                        }
        }
        ASSERT_TRUE(answered[0] && answered[1]);
        receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
        ASSERT_EQ(rep.r.hdr.cookie, f->cookie); /* the detach */
        ASSERT_OK(rep.r.result);
        ASSERT_EQ(monitor_dispatch_n_requests(f->dispatch), 0u);

        fake_kernel_hold(false);
        fake_kernel_wait_inside(0);
        for (unsigned i = 0; i < 50; i++) { /* the late answer goes to the audit log; nothing else runs */
                ASSERT_OK(event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK));
                usleep(1000);
        }
        ASSERT_EQ(fake_kernel_calls(calls, ELEMENTSOF(calls)), 1u);
        {
                /* The request in the kernel: who it was for, and what the kernel did. */
                struct tsm_priv_late late;

                LOOP_UNTIL(f, worker_has_input(f));
                receive(f, TSM_PRIV_LATE, &late, sizeof(late), NULL, NULL);
                ASSERT_EQ(late.op, TSM_PRIV_LATE_GUEST_REQUEST);
                ASSERT_EQ(late.request_cookie, cookies[0]);
                ASSERT_EQ(late.context, a);
                ASSERT_EQ(late.vdevice, VDEV_HELD);
                ASSERT_EQ(late.uid, 1000u);
                ASSERT_EQ(late.backend, (uint32_t) TSM_BACKEND_SEV_TIO);
                ASSERT_STREQ(late.scope, "info");
                ASSERT_EQ(late.result, 0);
                ASSERT_STREQ(late.pci_address, NIC);
        }
        nothing_waiting(f);
        fixture_free(f);
}

static void loop_a_while(Fixture *f);

static struct tsm_priv_cancel_request cancel_msg(uint32_t slot, uint32_t request_cookie) {
        struct tsm_priv_cancel_request m;

        tsm_priv_init(&m, TSM_PRIV_CANCEL_REQUEST, 0, 0);
        m.slot = slot;
        m.request_cookie = request_cookie;
        return m;
}

static void send_cancel(Fixture *f, uint32_t slot, uint32_t request_cookie) {
        struct tsm_priv_cancel_request m = cancel_msg(slot, request_cookie);

        ASSERT_OK(tsm_priv_send(f->worker, &m, NULL, 0, -EBADF));
        process_ok(f);
}

/*
 * A cancelled guest request (a reload took the client's grant away) that waits on its device's
 * kernel lane never reaches the kernel: answered -ECANCELED, the monitor's own, at once and
 * once. The one the kernel runs is not stopped: it is answered as it ends. A cancel naming
 * another slot's request, or one answered already, changes nothing.
 */
TEST(cancel_drops_a_kernel_request_not_started) {
        Fixture *f = kernel_fixture();
        FakeKernelCall calls[4];
        uint32_t cookies[2];
        Reply rep;

        (void) two_requests_the_first_inside_the_kernel(f, cookies);

        /* Not the asker's slot: nothing. The one inside the kernel: nothing either. */
        send_cancel(f, OTHER_SLOT, cookies[1]);
        send_cancel(f, SLOT, cookies[0]);
        nothing_waiting(f);
        ASSERT_EQ(monitor_dispatch_n_requests(f->dispatch), 2u);

        send_cancel(f, SLOT, cookies[1]);
        await_reply(f);
        receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
        ASSERT_EQ(rep.r.hdr.cookie, cookies[1]);
        ASSERT_EQ(rep.r.result, -ECANCELED);
        ASSERT_EQ(rep.r.value, TSM_PRIV_REPLY_MONITOR_OWN);
        ASSERT_EQ(monitor_dispatch_n_requests(f->dispatch), 1u);
        /* Once: a second cancel finds nothing. */
        send_cancel(f, SLOT, cookies[1]);
        nothing_waiting(f);

        fake_kernel_hold(false);
        await_reply(f);
        receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
        ASSERT_EQ(rep.r.hdr.cookie, cookies[0]);
        ASSERT_OK(rep.r.result);
        ASSERT_EQ(monitor_dispatch_n_requests(f->dispatch), 0u);
        /* Answered: a cancel now crosses its reply, and finds nothing. */
        send_cancel(f, SLOT, cookies[0]);
        loop_a_while(f);
        nothing_waiting(f);
        /* The cancelled one never reached the kernel. */
        ASSERT_EQ(fake_kernel_calls(calls, ELEMENTSOF(calls)), 1u);
        fixture_free(f);
}

/* The emulated platform, each exchange taking 200 ms (time to queue behind one), and context
 * *ret_context with vDevice 1 attached on DEV_A. */
static Fixture *slow_emulated_fixture(uint32_t *ret_context) {
        TsmPlatformConfig config = {
                .mode = TSM_PLATFORM_EMULATED,
                .iommu_device = (char *) "/nonexistent/tsmd-test-iommu",
                .emulated_latency_usec = 200 * 1000,
        };
        Fixture *f = malloc(sizeof(Fixture));

        ASSERT_NOT_NULL(f);
        setup_platform(f, &config);
        *ret_context = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, *ret_context, 1, DEV_A, NULL));
        return f;
}

/* The same on the emulated platform: a request waiting for the device's mailbox (busy with the
 * one before) is dropped and answered -ECANCELED; the device answers the one it works on. */
TEST(cancel_drops_an_emulated_request_waiting_its_turn) {
        Fixture *f;
        uint32_t a, cookies[3];
        uint8_t req[64];
        size_t len;
        Reply rep;

        f = slow_emulated_fixture(&a);
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, a, 1, NULL));
        len = tdisp_request(f, DEV_A, TDISP_MSG_GET_VERSION, req, sizeof(req));
        for (unsigned i = 0; i < 3; i++) {
                struct tsm_priv_guest_request m = guest_request_msg(f, SLOT, a, 1, TSM_SCOPE_INFO, len);

                m.hdr.cookie = cookies[i] = ++f->cookie;
                ASSERT_OK(tsm_priv_send(f->worker, &m, req, len, -EBADF));
                process_ok(f);
        }
        ASSERT_EQ(monitor_dispatch_n_requests(f->dispatch), 3u);

        send_cancel(f, SLOT, cookies[2]);
        send_cancel(f, SLOT, cookies[0]); /* the device's now: runs on */
        await_reply(f);
        receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
        ASSERT_EQ(rep.r.hdr.cookie, cookies[2]);
        ASSERT_EQ(rep.r.result, -ECANCELED);
        ASSERT_EQ(rep.r.value, TSM_PRIV_REPLY_MONITOR_OWN);
        nothing_waiting(f);

        for (unsigned i = 0; i < 2; i++) {
                await_reply(f);
                receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
                ASSERT_EQ(rep.r.hdr.cookie, cookies[i]);
                ASSERT_OK(rep.r.result);
                ASSERT_GE(rep.r.hdr.payload_len, sizeof(TdispHeader));
        }
        ASSERT_EQ(monitor_dispatch_n_requests(f->dispatch), 0u);
        nothing_waiting(f);
        fixture_free(f);
}

/* A bind waiting for the emulated device's mailbox is dropped the same way, and the vDevice ends
 * as the changes before it leave it; one the device works on runs to its end. Another slot's
 * cancel finds none. */
TEST(cancel_drops_a_bind_waiting_its_turn) {
        static const uint32_t types[3] = { TSM_PRIV_BIND_VDEVICE, TSM_PRIV_UNBIND_VDEVICE, TSM_PRIV_BIND_VDEVICE };
        Fixture *f;
        uint32_t a, cookies[3];
        Reply rep;

        f = slow_emulated_fixture(&a);
        for (unsigned i = 0; i < 3; i++) {
                struct tsm_priv_vdevice m = vdevice_msg(types[i], SLOT, a, 1);

                m.hdr.cookie = cookies[i] = ++f->cookie;
                ASSERT_OK(tsm_priv_send(f->worker, &m, NULL, 0, -EBADF));
                process_ok(f);
        }

        send_cancel(f, OTHER_SLOT, cookies[2]);
        send_cancel(f, SLOT, cookies[0]); /* the device's now: runs on */
        loop_a_while(f);
        nothing_waiting(f);
        send_cancel(f, SLOT, cookies[2]);
        await_reply(f);
        receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
        ASSERT_EQ(rep.r.hdr.cookie, cookies[2]);
        ASSERT_EQ(rep.r.result, -ECANCELED);
        ASSERT_EQ(rep.r.value, TSM_PRIV_REPLY_MONITOR_OWN);

        for (unsigned i = 0; i < 2; i++) {
                await_reply(f);
                receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
                ASSERT_EQ(rep.r.hdr.cookie, cookies[i]);
                ASSERT_OK(rep.r.result);
        }
        loop_a_while(f);
        nothing_waiting(f);
        /* Unbound, as the unbind left it: the cancelled bind never reached the device. */
        ASSERT_EQ(emu_device_get_state(device(f, DEV_A)), TDISP_STATE_CONFIG_UNLOCKED);
        {
                uint32_t bound = 1;

                ASSERT_OK(vdevice_op(f, TSM_PRIV_SETTLE_VDEVICE, SLOT, a, 1, &bound));
                ASSERT_EQ(bound, 0u);
        }
        fixture_free(f);
}

/* Context a's vDevice VDEV_HELD on the NIC, bound; then an UNBIND held inside the kernel and a
 * BIND waiting behind it (the messages sent, for their cookies). */
static uint32_t bind_behind_an_unbind_in_the_kernel(Fixture *f, struct tsm_priv_vdevice *ret_unbind,
                                                    struct tsm_priv_vdevice *ret_bind, MonitorVDevice **ret_v) {
        struct tsm_priv_vdevice unbind = vdevice_msg(TSM_PRIV_UNBIND_VDEVICE, SLOT, 0, VDEV_HELD);
        struct tsm_priv_vdevice bind = vdevice_msg(TSM_PRIV_BIND_VDEVICE, SLOT, 0, VDEV_HELD);
        MonitorVDevice *v;
        uint32_t a;

        a = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, a, VDEV_HELD, NIC, NULL));
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, a, VDEV_HELD, NULL));
        v = monitor_context_find_vdevice(monitor_contexts_get(f->contexts, a), VDEV_HELD);

        fake_kernel_hold(true);
        unbind.context = bind.context = a;
        send_into_held_kernel(f, &unbind);
        bind.hdr.cookie = ++f->cookie;
        ASSERT_OK(tsm_priv_send(f->worker, &bind, NULL, 0, -EBADF));
        process_ok(f);
        *ret_unbind = unbind;
        *ret_bind = bind;
        *ret_v = v;
        return a;
}

/* A bind cancelled behind an unbind the kernel runs: the vDevice ends as the unbind leaves it,
 * so closing the context meanwhile queues no release, and only the unbind reaches the kernel. */
TEST(cancel_of_a_bind_behind_an_unbind_leaves_it_unbound) {
        Fixture *f = kernel_fixture();
        struct tsm_priv_vdevice unbind, bind;
        FakeKernelCall calls[4];
        MonitorVDevice *v;
        uint32_t a;
        Reply rep;

        a = bind_behind_an_unbind_in_the_kernel(f, &unbind, &bind, &v);
        ASSERT_TRUE(monitor_vdevice_bound_eventually(v));
        send_cancel(f, SLOT, bind.hdr.cookie);
        await_reply(f);
        receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
        ASSERT_EQ(rep.r.hdr.cookie, bind.hdr.cookie);
        ASSERT_EQ(rep.r.result, -ECANCELED);
        ASSERT_EQ(v->n_changes, 1u);
        ASSERT_FALSE(monitor_vdevice_bound_eventually(v));

        {
                struct tsm_priv_context close_msg = context_msg(TSM_PRIV_CLOSE_CONTEXT, SLOT, a);

                ASSERT_OK(call(f, &close_msg, &rep));
        }
        fake_kernel_hold(false);
        await_reply(f);
        receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
        ASSERT_EQ(rep.r.hdr.cookie, unbind.hdr.cookie);
        ASSERT_OK(rep.r.result);
        LOOP_UNTIL(f, !tsm_platform_is_changing(f->platform, NIC));
        loop_a_while(f);
        ASSERT_EQ(fake_kernel_calls(calls, ELEMENTSOF(calls)), 2u);
        ASSERT_TRUE(calls[0].op && calls[0].vdevice == VDEV_HELD && calls[0].value == TSMD_IOMMU_VDEVICE_TSM_BIND_V5);
        ASSERT_TRUE(calls[1].op && calls[1].vdevice == VDEV_HELD && calls[1].value == TSMD_IOMMU_VDEVICE_TSM_UNBIND_V5);
        nothing_waiting(f);
        fixture_free(f);
}

/* The end of a binding told while tsmd's own changes of the vDevice are on their way is theirs
 * to say (what the scan saw may be the unbind's doing): the bind after it leaves it bound, and
 * its guest requests reach the kernel. */
TEST(unbound_outside_skips_a_vdevice_with_a_change_on_its_way) {
        Fixture *f = kernel_fixture();
        struct tsm_priv_vdevice unbind, bind;
        MonitorVDevice *v;
        uint32_t a;
        Reply rep;

        a = bind_behind_an_unbind_in_the_kernel(f, &unbind, &bind, &v);
        monitor_contexts_device_unbound(f->contexts, NIC);
        ASSERT_TRUE(v->bound);
        ASSERT_TRUE(monitor_vdevice_bound_eventually(v));

        fake_kernel_hold(false);
        for (unsigned i = 0; i < 2; i++) {
                await_reply(f);
                receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
                ASSERT_EQ(rep.r.hdr.cookie, i == 0 ? unbind.hdr.cookie : bind.hdr.cookie);
                ASSERT_OK(rep.r.result);
        }
        LOOP_UNTIL(f, !tsm_platform_is_changing(f->platform, NIC));
        ASSERT_TRUE(v->bound);
        ASSERT_OK(guest_request(f, SLOT, a, VDEV_HELD, TSM_SCOPE_INFO, "ping", 4, &rep));
        ASSERT_EQ(rep.r.hdr.payload_len, strlen(FAKE_KERNEL_RESPONSE));
        ASSERT_MEMEQ(rep.payload, FAKE_KERNEL_RESPONSE, strlen(FAKE_KERNEL_RESPONSE));
        fixture_free(f);
}

/* A cancel is not answered (cookie 0), names a request (its cookie, never 0), and its reserved
 * fields are zero: anything else is a compromised worker's. */
TEST(violation_cancel_request) {
        struct tsm_priv_cancel_request m;
        Fixture *f;

        f = fixture();
        m = cancel_msg(SLOT, 0);
        expect_violation(f, &m, "CANCEL_REQUEST");
        fixture_free(f);

        f = fixture();
        m = cancel_msg(SLOT, 5);
        m.hdr.cookie = RAW_COOKIE;
        expect_violation(f, &m, "CANCEL_REQUEST");
        fixture_free(f);

        f = fixture();
        m = cancel_msg(SLOT, 5);
        m.__reserved[1] = 1;
        expect_violation(f, &m, "CANCEL_REQUEST");
        fixture_free(f);

        /* A cookie nothing has: nothing to cancel, and no answer. */
        f = fixture();
        send_cancel(f, SLOT, 5);
        nothing_waiting(f);
        fixture_free(f);
}

static void loop_a_while(Fixture *f);

/* A detach that comes when the kernel has answered a request, before the answer's turn on the
 * loop: the request is answered DeviceGone as any in flight, and what the kernel did reaches the
 * audit log all the same (a LATE naming the request), as for one the kernel still runs. */
TEST(detach_after_the_kernel_answered_tells_the_answer_late) {
        Fixture *f = kernel_fixture();
        struct tsm_priv_guest_request m;
        struct tsm_priv_vdevice detach;
        struct tsm_priv_late late;
        FakeKernelCall calls[4];
        uint32_t a, cookie;
        Reply rep;

        a = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, a, VDEV_HELD, NIC, NULL));
        m = guest_request_msg(f, SLOT, a, VDEV_HELD, TSM_SCOPE_STATE_CHANGE, 4);
        m.hdr.cookie = cookie = ++f->cookie;
        fake_kernel_hold(true);
        ASSERT_OK(tsm_priv_send(f->worker, &m, "ping", 4, -EBADF));
        process_ok(f);
        fake_kernel_wait_inside(1);
        /* Nothing else is due on the loop (what the submission left to do runs now)... */
        for (unsigned i = 0; i < 10; i++)
                ASSERT_OK(event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK));
        fake_kernel_hold(false);
        fake_kernel_wait_inside(0);
        /* ...so the one round that waits is the lane's handing the answer over (however long
         * its thread takes on a loaded machine): taken in, not yet handed on. */
        ASSERT_OK(event_base_loop(f->base, EVLOOP_ONCE));
        ASSERT_EQ(fake_kernel_calls(calls, ELEMENTSOF(calls)), 1u);
        ASSERT_FALSE(worker_has_input(f));

        detach = vdevice_msg(TSM_PRIV_DETACH_VDEVICE, SLOT, a, VDEV_HELD);
        detach.hdr.cookie = ++f->cookie;
        ASSERT_OK(tsm_priv_send(f->worker, &detach, NULL, 0, -EBADF));
        process_ok(f);
        receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
        ASSERT_EQ(rep.r.hdr.cookie, cookie);
        ASSERT_EQ(rep.r.result, -ENODEV);
        receive(f, TSM_PRIV_LATE, &late, sizeof(late), NULL, NULL);
        ASSERT_EQ(late.op, TSM_PRIV_LATE_GUEST_REQUEST);
        ASSERT_EQ(late.request_cookie, cookie);
        ASSERT_EQ(late.context, a);
        ASSERT_EQ(late.vdevice, VDEV_HELD);
        ASSERT_STREQ(late.scope, "state-change");
        ASSERT_EQ(late.result, 0);
        ASSERT_EQ(late.response_size, 4u);
        ASSERT_STREQ(late.pci_address, NIC);
        receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
        ASSERT_EQ(rep.r.hdr.cookie, detach.hdr.cookie);
        ASSERT_OK(rep.r.result);
        loop_a_while(f);
        nothing_waiting(f);
        fixture_free(f);
}

/* A guest request of len bytes at req, with room for max_response, that the fake kernel holds
 * past its deadline (the fixture's is short), answered Timeout; then the kernel answers it,
 * late. Returns the request's cookie. */
static uint32_t late_guest_request_full(Fixture *f, uint32_t context, const void *req, size_t len,
                                        uint32_t max_response) {
        struct tsm_priv_guest_request m = guest_request_msg(f, SLOT, context, VDEV_HELD, TSM_SCOPE_INFO, len);
        Reply rep;

        fake_kernel_hold(true);
        m.hdr.cookie = ++f->cookie;
        m.max_response = max_response;
        ASSERT_OK(tsm_priv_send(f->worker, &m, req, len, -EBADF));
        process_ok(f);
        fake_kernel_wait_inside(1);
        await_reply(f);
        receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
        ASSERT_EQ(rep.r.hdr.cookie, m.hdr.cookie);
        ASSERT_EQ(rep.r.result, -ETIMEDOUT);
        fake_kernel_hold(false);
        fake_kernel_wait_inside(0);
        return m.hdr.cookie;
}

static uint32_t late_guest_request(Fixture *f, uint32_t context) {
        return late_guest_request_full(f, context, "ping", 4, 4096);
}

/* Runs the monitor's loop for a while: what would come, has. */
static void loop_a_while(Fixture *f) {
        for (unsigned i = 0; i < 50; i++) {
                ASSERT_OK(event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK));
                usleep(1000);
        }
}

/* The files changed on disk go to the worker as paths that the worker takes: as many whole ones
 * as fit in a payload, a path too long for the channel not named (a drop-in's name after a long
 * directory), the count whole all the same; none differ, no payload. */
TEST(files_changed_name_the_paths_that_fit) {
        static char paths[40 * 2001 + 8];
        struct tsm_priv_files_changed m;
        const void *payload = NULL;
        Fixture *f = fixture();
        size_t n = 0;

        memcpy(paths, "/a", 3);
        n = 3;
        memset(paths + n, 'x', TSM_PRIV_PATH_MAX);
        n += TSM_PRIV_PATH_MAX + 1;
        memcpy(paths + n, "/b", 3);
        n += 3;
        ASSERT_OK(monitor_dispatch_files_changed(f->dispatch, 3, paths, n));
        loop_a_while(f);
        receive(f, TSM_PRIV_FILES_CHANGED, &m, sizeof(m), &payload, NULL);
        ASSERT_EQ(m.n_changed, 3u);
        ASSERT_EQ(m.hdr.payload_len, 6u);
        ASSERT_MEMEQ(payload, "/a\0/b", 6);

        /* 40 of 2000 bytes: the first 32 fill 64 KiB. */
        for (unsigned i = 0; i < 40; i++) {
                memset(paths + i * 2001, 'a' + i % 26, 2000);
                paths[i * 2001 + 2000] = 0;
        }
        ASSERT_OK(monitor_dispatch_files_changed(f->dispatch, 40, paths, 40 * 2001));
        loop_a_while(f);
        receive(f, TSM_PRIV_FILES_CHANGED, &m, sizeof(m), &payload, NULL);
        ASSERT_EQ(m.n_changed, 40u);
        ASSERT_EQ(m.hdr.payload_len, 32u * 2001);

        ASSERT_OK(monitor_dispatch_files_changed(f->dispatch, 0, NULL, 0));
        loop_a_while(f);
        receive(f, TSM_PRIV_FILES_CHANGED, &m, sizeof(m), &payload, NULL);
        ASSERT_EQ(m.n_changed, 0u);
        ASSERT_EQ(m.hdr.payload_len, 0u);
        nothing_waiting(f);
        fixture_free(f);
}

/* A late answer is the monitor's until a worker says it recorded it: one that ends with it
 * unread goes to the next worker, with no cookie of its own; one that ends while writing its
 * record tells the next under which seq (so that it is written once); one recorded is forgotten,
 * also when its worker ended before the monitor read that. A worker acknowledges only what it
 * was sent, once. */
TEST(late_answers_are_kept_until_acknowledged) {
        Fixture *f = kernel_fixture_timeout(2000);
        struct tsm_priv_restored_context restored[1];
        struct tsm_priv_reclaim_context reclaim;
        struct tsm_priv_late late, again;
        struct tsm_priv_late_ack ack;
        uint32_t a, cookie;
        Reply rep;

        a = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, a, VDEV_HELD, NIC, NULL));
        (void) late_guest_request(f, a);
        /* In the worker's channel, unread, as the worker ends. */
        LOOP_UNTIL(f, worker_has_input(f));
        ASSERT_EQ(monitor_dispatch_n_late_kept(f->dispatch), 1u);
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
        receive_late(f, TSM_PRIV_LATE_GUEST_REQUEST, &late);
        ASSERT_EQ(late.request_cookie, 0u); /* the worker before asked */
        ASSERT_EQ(late.context, a);
        ASSERT_EQ(late.vdevice, VDEV_HELD);
        ASSERT_EQ(late.result, 0);
        ASSERT_EQ(late.recorded_seq, 0u);
        ASSERT_STREQ(late.pci_address, NIC);
        nothing_waiting(f);

        /* Its record on its way to the disk as this worker ends: the next hears the seq. */
        ack_late(f, late.id, 41, false);
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
        receive_late(f, TSM_PRIV_LATE_GUEST_REQUEST, &again);
        ASSERT_EQ(again.id, late.id);
        ASSERT_EQ(again.recorded_seq, 41u);
        ASSERT_EQ(again.result, 0);

        /* Recorded: forgotten. */
        ack_late(f, late.id, 41, true);
        ASSERT_EQ(monitor_dispatch_n_late_kept(f->dispatch), 0u);
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
        loop_a_while(f);
        nothing_waiting(f);

        /* Acknowledged just before the worker ended, unread by the monitor while it lived: that
         * counts all the same. Its own call's LATE names its cookie. */
        reclaim = reclaim_msg(SLOT, a);
        ASSERT_OK(call(f, &reclaim, &rep));
        safe_close(rep.fd);
        cookie = late_guest_request(f, a);
        receive_late(f, TSM_PRIV_LATE_GUEST_REQUEST, &late);
        ASSERT_EQ(late.request_cookie, cookie);
        tsm_priv_init(&ack, TSM_PRIV_LATE_ACK, 0, 0);
        ack.id = late.id;
        ack.durable = 1;
        ASSERT_OK(tsm_priv_send(f->worker, &ack, NULL, 0, -EBADF));
        worker_stop(f);
        ASSERT_EQ(monitor_dispatch_n_late_kept(f->dispatch), 0u);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
        loop_a_while(f);
        nothing_waiting(f);

        /* SECURITY: only what went to this worker, and not yet acknowledged. */
        expect_violation(f, &ack, "LATE_ACK");
        fixture_free(f);
}

/* A late answer says what its TSM left of the request, as an answer on time does in its reply's
 * value: offered no response buffer, the fake kernel's TSM consumes FAKE_KERNEL_CONSUMED bytes,
 * and its residue is the rest; offered one, the residue counts the response's bytes, and none of
 * the request's is said. */
TEST(late_answers_say_what_the_tsm_left_of_the_request) {
        Fixture *f = kernel_fixture_timeout(2000);
        struct tsm_priv_late late;
        uint8_t req[FAKE_KERNEL_CONSUMED + 5] = {};
        uint32_t a, cookie;

        a = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, a, VDEV_HELD, NIC, NULL));

        cookie = late_guest_request_full(f, a, req, sizeof(req), 0);
        receive_late(f, TSM_PRIV_LATE_GUEST_REQUEST, &late);
        ASSERT_EQ(late.request_cookie, cookie);
        ASSERT_EQ(late.result, 0);
        ASSERT_EQ(late.response_size, 0u);
        ASSERT_EQ(late.request_unconsumed, 5u);
        ack_late(f, late.id, 0, true);

        cookie = late_guest_request_full(f, a, req, sizeof(req), 4096);
        receive_late(f, TSM_PRIV_LATE_GUEST_REQUEST, &late);
        ASSERT_EQ(late.request_cookie, cookie);
        ASSERT_EQ(late.response_size, strlen(FAKE_KERNEL_RESPONSE));
        ASSERT_EQ(late.request_unconsumed, 0u);
        ack_late(f, late.id, 0, true);
        nothing_waiting(f);
        fixture_free(f);
}

/* Malformed acknowledgements are violations like any; the LATE goes to the next worker. */
TEST(late_acks_are_checked) {
        Fixture *f = kernel_fixture_timeout(2000);
        struct tsm_priv_restored_context restored[1];
        struct tsm_priv_late_ack ack;
        struct tsm_priv_late late;
        uint32_t a;

        a = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, a, VDEV_HELD, NIC, NULL));
        (void) late_guest_request(f, a);
        for (unsigned i = 0; i < 3; i++) {
                receive_late(f, TSM_PRIV_LATE_GUEST_REQUEST, &late);
                tsm_priv_init(&ack, TSM_PRIV_LATE_ACK, 0, 0);
                ack.id = late.id;
                switch (i) {
                case 0: ack.durable = 2; break;
                case 1: ack.__reserved = 1; ack.durable = 1; break;
                case 2: break; /* being recorded under no seq */
                }
                expect_violation(f, &ack, "LATE_ACK");
                worker_stop(f);
                ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
        }
        receive_late(f, TSM_PRIV_LATE_GUEST_REQUEST, &late);
        fixture_free(f);
}

/* SECURITY: cookie 0 marks a call whose worker ended, whose outcome becomes a late answer: a
 * worker sending a call that is answered with cookie 0 breaks a rule (else it could fill the late
 * answers kept with its own, for its successor to record), and so does one naming a reply on a
 * LATE_ACK. Nothing is done for it, no late answer made. */
TEST(answered_calls_need_a_cookie) {
        Fixture *f = kernel_fixture_timeout(2000);
        struct tsm_priv_restored_context restored[1];
        struct tsm_priv_late_ack ack;
        struct tsm_priv_late late;
        struct tsm_priv_device dev;
        FakeKernelCall calls[64];
        size_t n_calls;
        uint32_t a;

        a = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, a, VDEV_HELD, NIC, NULL));

        /* A LATE_ACK is not answered: a cookie on it is a violation, and the LATE stays kept. */
        (void) late_guest_request(f, a);
        receive_late(f, TSM_PRIV_LATE_GUEST_REQUEST, &late);
        tsm_priv_init(&ack, TSM_PRIV_LATE_ACK, 7, 0);
        ack.id = late.id;
        ack.durable = 1;
        expect_violation(f, &ack, "LATE_ACK");
        worker_stop(f);
        ASSERT_EQ(monitor_dispatch_n_late_kept(f->dispatch), 1u);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
        receive_late(f, TSM_PRIV_LATE_GUEST_REQUEST, &late);
        ack_late(f, late.id, 0, true);
        ASSERT_EQ(monitor_dispatch_n_late_kept(f->dispatch), 0u);

        n_calls = fake_kernel_calls(calls, ELEMENTSOF(calls));
        for (unsigned i = 0; i < 4; i++) {
                struct tsm_priv_vdevice v = vdevice_msg(i == 0 ? TSM_PRIV_BIND_VDEVICE : TSM_PRIV_UNBIND_VDEVICE,
                                                        TSM_PRIV_SLOT_WORKER, a, VDEV_HELD);

                if (i < 2) {
                        v.hdr.cookie = 0;
                        expect_violation(f, &v, i == 0 ? "BIND_VDEVICE" : "UNBIND_VDEVICE");
                } else {
                        tsm_priv_init(&dev, i == 2 ? TSM_PRIV_CONNECT_DEVICE : TSM_PRIV_DISCONNECT_DEVICE, 0, 0);
                        strcpy(dev.pci_address, NIC);
                        if (i == 2)
                                strcpy(dev.tsm, "tsm0");
                        expect_violation(f, &dev, i == 2 ? "CONNECT_DEVICE" : "DISCONNECT_DEVICE");
                }
                worker_stop(f);
                ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
                loop_a_while(f);
                ASSERT_EQ(monitor_dispatch_n_late_kept(f->dispatch), 0u);
                nothing_waiting(f);
        }
        ASSERT_EQ(fake_kernel_calls(calls, ELEMENTSOF(calls)), n_calls); /* none reached the kernel */
        fixture_free(f);
}

/* A worker that is gone as the monitor reads its batch (here: it shut its reading side, so a
 * reply cannot reach it, which is no violation) still acknowledged the LATEs it acknowledged
 * after that message: the monitor applies them, and the next worker gets none of them. */
TEST(late_acks_after_a_failed_reply_count) {
        Fixture *f = kernel_fixture_timeout(2000);
        struct tsm_priv_restored_context restored[1];
        struct tsm_priv_reclaim_context reclaim;
        struct tsm_priv_late_ack ack;
        struct tsm_priv_late late;
        const char *reason = NULL;
        uint32_t a;

        a = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, a, VDEV_HELD, NIC, NULL));
        (void) late_guest_request(f, a);
        receive_late(f, TSM_PRIV_LATE_GUEST_REQUEST, &late);
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
        receive_late(f, TSM_PRIV_LATE_GUEST_REQUEST, &late);
        ASSERT_EQ(monitor_dispatch_n_late_kept(f->dispatch), 1u);

        /* One batch: a reclaim (answered with an fd, sent at once), then the acknowledgement. */
        reclaim = reclaim_msg(SLOT, a);
        reclaim.hdr.cookie = ++f->cookie;
        ASSERT_OK(tsm_priv_send(f->worker, &reclaim, NULL, 0, -EBADF));
        tsm_priv_init(&ack, TSM_PRIV_LATE_ACK, 0, 0);
        ack.id = late.id;
        ack.durable = 1;
        ASSERT_OK(tsm_priv_send(f->worker, &ack, NULL, 0, -EBADF));
        ASSERT_OK(shutdown(f->worker, SHUT_RD));
        ASSERT_ERRNO(monitor_dispatch_process(f->dispatch, &reason), EPIPE);
        ASSERT_NULL(reason);
        ASSERT_EQ(monitor_dispatch_n_late_kept(f->dispatch), 0u);
        worker_stop(f);
        ASSERT_EQ(monitor_dispatch_n_late_kept(f->dispatch), 0u);
        fixture_free(f);
}

/* A worker that ends with more read than a round handles: the LATE_ACKs among the rest, not
 * handled yet, count all the same, and the next worker does not record again what this one did. */
TEST(late_acks_past_a_rounds_share_count_at_the_end) {
        Fixture *f = kernel_fixture_timeout(2000);
        struct tsm_priv_restored_context restored[1];
        _Alignas(8) uint8_t datagram[TSM_PRIV_PACK_MAX * sizeof(struct tsm_priv_status)];
        struct tsm_priv_late_ack ack;
        struct tsm_priv_late late;
        const char *reason = NULL;
        uint32_t a;

        _Static_assert(sizeof(struct tsm_priv_status) % TSM_PRIV_PACK_ALIGN == 0, "packed without padding");
        _Static_assert(MONITOR_MESSAGES_PER_WAKEUP % TSM_PRIV_PACK_MAX == 0, "a round's share in full datagrams");
        a = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, a, VDEV_HELD, NIC, NULL));
        (void) late_guest_request(f, a);
        receive_late(f, TSM_PRIV_LATE_GUEST_REQUEST, &late);

        /* A round's share of STATUS, packed, then a STATUS and the acknowledgement in one more. */
        for (size_t i = 0; i < TSM_PRIV_PACK_MAX; i++)
                tsm_priv_init(datagram + i * sizeof(struct tsm_priv_status), TSM_PRIV_STATUS, 0, 0);
        for (unsigned i = 0; i < MONITOR_MESSAGES_PER_WAKEUP / TSM_PRIV_PACK_MAX; i++)
                send_raw(f, datagram, sizeof(datagram), -EBADF);
        tsm_priv_init(&ack, TSM_PRIV_LATE_ACK, 0, 0);
        ack.id = late.id;
        ack.durable = 1;
        memcpy(datagram + sizeof(struct tsm_priv_status), &ack, sizeof(ack));
        send_raw(f, datagram, sizeof(struct tsm_priv_status) + sizeof(ack), -EBADF);

        /* One round: its share handled, the rest (the acknowledgement among it) read, waiting. */
        ASSERT_EQ(monitor_dispatch_process(f->dispatch, &reason), 1);
        ASSERT_EQ(f->n_status, MONITOR_MESSAGES_PER_WAKEUP);
        ASSERT_EQ(monitor_dispatch_n_late_kept(f->dispatch), 1u);

        /* The worker ends before the next round. */
        worker_stop(f);
        ASSERT_EQ(monitor_dispatch_n_late_kept(f->dispatch), 0u);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
        loop_a_while(f);
        nothing_waiting(f);
        ASSERT_EQ(f->n_status, MONITOR_MESSAGES_PER_WAKEUP);
        fixture_free(f);
}

/* The monitor keeps MONITOR_LATE_KEPT_MAX late answers no worker acknowledged: past that, the
 * newest are dropped (the oldest may be in the audit log already) and their count goes to the
 * worker as a LOST, itself kept until acknowledged, and the count of those dropped meanwhile
 * after it. One that comes while no worker runs is kept for the next, which gets every one kept,
 * oldest first, then the LOST. */
TEST(late_answers_kept_are_bounded) {
        Fixture *f = kernel_fixture_timeout(2000);
        struct tsm_priv_restored_context restored[1];
        struct tsm_priv_guest_request m;
        struct tsm_priv_late late, lost, lost2;
        uint64_t first = 0, last = 0;
        uint32_t a;

        a = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, a, VDEV_HELD, NIC, NULL));
        for (unsigned i = 0; i < MONITOR_LATE_KEPT_MAX; i++) {
                (void) late_guest_request(f, a);
                receive_late(f, TSM_PRIV_LATE_GUEST_REQUEST, &late);
                if (i == 0)
                        first = late.id;
        }
        ASSERT_EQ(monitor_dispatch_n_late_kept(f->dispatch), (size_t) MONITOR_LATE_KEPT_MAX);

        (void) late_guest_request(f, a);
        receive_late(f, TSM_PRIV_LATE_LOST, &lost);
        ASSERT_EQ(lost.count, 1u);
        ASSERT_EQ(lost.request_cookie, 0u);
        ASSERT_EQ(lost.uid, TSM_PRIV_LATE_NONE);
        ASSERT_STREQ(lost.pci_address, "");
        (void) late_guest_request(f, a);
        LOOP_UNTIL(f, monitor_dispatch_n_late_lost(f->dispatch) == 2);
        nothing_waiting(f); /* counted, for the LOST after this one */
        ASSERT_EQ(monitor_dispatch_n_late_kept(f->dispatch), (size_t) MONITOR_LATE_KEPT_MAX);

        /* Room for one; the count recorded, so the next goes out. */
        ack_late(f, first, 0, true);
        ack_late(f, lost.id, 3, true);
        receive_late(f, TSM_PRIV_LATE_LOST, &lost2);
        ASSERT_EQ(lost2.count, 1u);
        ASSERT_NE(lost2.id, lost.id);

        /* The worker ends while the kernel has a request: its answer comes while none runs. */
        fake_kernel_hold(true);
        m = guest_request_msg(f, SLOT, a, VDEV_HELD, TSM_SCOPE_INFO, 4);
        m.hdr.cookie = ++f->cookie;
        ASSERT_OK(tsm_priv_send(f->worker, &m, "ping", 4, -EBADF));
        process_ok(f);
        fake_kernel_wait_inside(1);
        worker_stop(f);
        fake_kernel_hold(false);
        LOOP_UNTIL(f, monitor_dispatch_n_late_kept(f->dispatch) == MONITOR_LATE_KEPT_MAX);

        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
        for (unsigned i = 0; i < MONITOR_LATE_KEPT_MAX; i++) {
                receive_late(f, TSM_PRIV_LATE_GUEST_REQUEST, &late);
                ASSERT_EQ(late.request_cookie, 0u);
                ASSERT_TRUE(late.id > last); /* oldest first */
                ASSERT_NE(late.id, first);
                last = late.id;
        }
        ASSERT_TRUE(last > lost2.id); /* the one that came while no worker ran */
        ASSERT_EQ(late.context, a);
        receive_late(f, TSM_PRIV_LATE_LOST, &lost);
        ASSERT_EQ(lost.id, lost2.id);
        ASSERT_EQ(lost.count, 1u);
        nothing_waiting(f);
        fixture_free(f);
}

/* A connect, and a bind, whose worker ended and whose device then went: the kernel's own answer
 * is the one late answer of each (the call was given up on in the kernel), not also the -ENODEV
 * the monitor got when the device went. */
/* How many fds of this process are open on the file at path: the lanes run in this process,
 * so a lane's write to a FIFO shows as one more. */
static unsigned fds_open_on(const char *path) {
        DIR *d = opendir("/proc/self/fd");
        struct stat want, st;
        struct dirent *de;
        unsigned n = 0;

        ASSERT_NOT_NULL(d);
        ASSERT_OK(stat(path, &want));
        while ((de = readdir(d)))
                if (fstatat(dirfd(d), de->d_name, &st, 0) >= 0 && st.st_dev == want.st_dev &&
                    st.st_ino == want.st_ino)
                        n++;
        closedir(d);
        return n;
}

TEST(calls_whose_worker_ended_and_device_went_answer_late_once) {
        Fixture *f = kernel_fixture();
        struct tsm_priv_vdevice bind = vdevice_msg(TSM_PRIV_BIND_VDEVICE, SLOT, 0, VDEV_HELD);
        struct tsm_priv_restored_context restored[1];
        struct tsm_priv_late late;
        struct tsm_priv_device dev;
        static char filler[4096];
        char path[PATH_MAX], buf[4096];
        uint32_t a;
        int rd, wr;

        /* A connect the kernel takes its time over (tsm/connect is a full FIFO). */
        snprintf(path, sizeof(path), "%s" NVME_PATH "/tsm/connect", f->sysfs);
        ASSERT_OK(unlink(path));
        ASSERT_OK(mkfifo(path, 0600));
        ASSERT_OK(rd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC));
        ASSERT_OK(wr = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC));
        while (write(wr, filler, sizeof(filler)) > 0)
                ;
        ASSERT_EQ(errno, EAGAIN);
        tsm_priv_init(&dev, TSM_PRIV_CONNECT_DEVICE, 0, 0);
        strcpy(dev.pci_address, NVME);
        strcpy(dev.tsm, "tsm1");
        dev.hdr.cookie = ++f->cookie;
        ASSERT_OK(tsm_priv_send(f->worker, &dev, NULL, 0, -EBADF));
        process_ok(f);
        /* In the kernel: its lane opened tsm/connect (before, the device going would fail the
         * open, a call never made, not one answered late). */
        LOOP_UNTIL(f, fds_open_on(path) == 3);
        /* And a bind the kernel holds. */
        a = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, a, VDEV_HELD, NIC, NULL));
        fake_kernel_hold(true);
        bind.context = a;
        send_into_held_kernel(f, &bind);

        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
        /* Both devices go (hot-unplug), while the kernel still has their calls. */
        ASSERT_OK(sysfs_fixture_remove(f->sysfs, NVME_PATH));
        ASSERT_OK(tsm_platform_refresh_device(f->platform, NVME));
        ASSERT_OK(sysfs_fixture_remove(f->sysfs, NIC_PATH));
        ASSERT_OK(tsm_platform_refresh_device(f->platform, NIC));
        LOOP_UNTIL(f, !tsm_platform_is_changing(f->platform, NVME) && !tsm_platform_is_changing(f->platform, NIC));
        loop_a_while(f);
        nothing_waiting(f); /* the kernel has not answered either */

        /* The kernel is done with both. */
        safe_close(wr);
        for (;;) {
                struct pollfd p = { .fd = rd, .events = POLLIN };
                ssize_t n;

                ASSERT_EQ(poll(&p, 1, 5000), 1);
                n = read(rd, buf, sizeof(buf));
                if (n == 0)
                        break; /* the monitor closed it: written */
                ASSERT_TRUE(n > 0 || errno == EAGAIN);
        }
        safe_close(rd);
        receive_late(f, TSM_PRIV_LATE_CONNECT, &late);
        ASSERT_EQ(late.result, 0);
        ASSERT_STREQ(late.pci_address, NVME);
        ASSERT_STREQ(late.tsm, "tsm1");
        ack_late(f, late.id, 0, true);
        fake_kernel_hold(false);
        receive_late(f, TSM_PRIV_LATE_BIND, &late); /* done, then undone */
        ASSERT_EQ(late.result, 0);
        ASSERT_EQ(late.vdevice, VDEV_HELD);
        ack_late(f, late.id, 0, true);
        receive_late(f, TSM_PRIV_LATE_BIND_UNDO, &late);
        ASSERT_EQ(late.result, 0);
        ack_late(f, late.id, 0, true);
        loop_a_while(f);
        nothing_waiting(f);
        fixture_free(f);
}

/* A worker that stops reading while large replies are due (64 KiB debug reads, sent at once,
 * not batched) must not hold the monitor: the first send that times out ends it, the replies
 * after it are not even tried, and the loop runs on. A fresh worker is served again. */
TEST(worker_not_reading_is_stalled) {
        Fixture *f = fixture();
        _cleanup_free_ uint8_t *req = malloc(EMU_DEBUG_MSG_MAX);
        struct tsm_priv_guest_request m;
        struct tsm_priv_restored_context restored[1];
        const char *reason = NULL;
        uint64_t start, took;
        uint32_t id;
        size_t len;
        Reply rep;

        ASSERT_NOT_NULL(req);
        id = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, id, 1, DEV_A, NULL));
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, id, 1, NULL));
        ASSERT_OK(emu_debug_build_mem_request(emu_device_get_function_id(device(f, DEV_A)), EMU_VENDOR_ID_DEFAULT,
                                              EMU_DEBUG_OP_MEM_READ, 0, EMU_DEBUG_MEM_XFER_MAX, NULL, req,
                                              EMU_DEBUG_MSG_MAX, &len));

        /* Far more than the socket holds (the buffer takes a few). */
        for (unsigned i = 0; i < 16; i++) {
                m = guest_request_msg(f, SLOT, id, 1, TSM_SCOPE_DEBUG_READ, len);
                m.max_response = TSM_PRIV_PAYLOAD_MAX;
                m.hdr.cookie = ++f->cookie;
                ASSERT_OK(tsm_priv_send(f->worker, &m, req, len, -EBADF));
        }
        process_ok(f);
        ASSERT_EQ(monitor_dispatch_n_requests(f->dispatch), 16u);

        start = now_monotonic_usec();
        while (monitor_dispatch_n_requests(f->dispatch) > 0) {
                ASSERT_OK(event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK));
                if (now_monotonic_usec() - start > MONITOR_SEND_TIMEOUT_USEC + 5 * 1000 * 1000ULL)
                        TEST_FAIL("the monitor's loop is still sending to a worker that does not read");
        }
        took = now_monotonic_usec() - start;
        fprintf(stderr, "# worker declared stalled after %.1f s\n", (double) took / 1e6);
        ASSERT_EQ(f->n_stalled, 1u);
        ASSERT_EQ(f->stalled_error, -EAGAIN);
        /* One timeout, not one per reply. */
        ASSERT_LE(took, MONITOR_SEND_TIMEOUT_USEC + 2 * 1000 * 1000ULL);

        /* Nothing more is read from it, nor answered. */
        m = guest_request_msg(f, SLOT, id, 1, TSM_SCOPE_INFO, 4);
        ASSERT_OK(tsm_priv_send(f->worker, &m, "ping", 4, -EBADF));
        ASSERT_ERRNO(monitor_dispatch_process(f->dispatch, &reason), EPIPE);
        ASSERT_NULL(reason);
        ASSERT_EQ(monitor_dispatch_n_requests(f->dispatch), 0u);

        /* The next worker is served as usual, and records what the device did for the one killed
         * (its answers read or not, none said recorded). */
        worker_stop(f);
        ASSERT_EQ(monitor_dispatch_n_answers_kept(f->dispatch), 0u);
        ASSERT_EQ(monitor_dispatch_n_late_kept(f->dispatch), 16u);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
        for (unsigned i = 0; i < 16; i++) {
                struct tsm_priv_late late;

                receive_late(f, TSM_PRIV_LATE_GUEST_REQUEST, &late);
                ASSERT_EQ(late.request_cookie, 0u);
                ASSERT_EQ(late.context, id);
                ASSERT_EQ(late.vdevice, 1u);
                ASSERT_EQ(late.result, 0);
                ASSERT_EQ(late.response_size, (uint32_t) EMU_DEBUG_MSG_MAX);
                ASSERT_STREQ(late.scope, TSM_SCOPE_DEBUG_READ);
                ack_late(f, late.id, 0, true);
        }
        ASSERT_EQ(monitor_dispatch_n_late_kept(f->dispatch), 0u);
        ASSERT_OK(vdevice_op(f, TSM_PRIV_GET_VDEVICE_STATE, TSM_PRIV_SLOT_WORKER, id, 1, NULL));
        m = guest_request_msg(f, TSM_PRIV_SLOT_WORKER, id, 1, TSM_SCOPE_DEBUG_READ, len);
        m.max_response = TSM_PRIV_PAYLOAD_MAX;
        ASSERT_OK(call_full(f, &m, req, len, -EBADF, &rep));
        ASSERT_EQ(rep.r.hdr.payload_len, EMU_DEBUG_MSG_MAX);
        ASSERT_EQ(f->n_stalled, 1u);
        fixture_free(f);
}

/* A reply of a round that cannot be sent (the worker leaves its channel full) ends the round
 * there: the worker is being killed, so nothing more of what it sent starts (no guest request
 * reaches a device, no STATUS counts), and no second flush blocks on it for as long again. */
TEST(a_failed_reply_ends_the_round) {
        Fixture *f = fixture();
        struct tsm_priv_restored_context restored[1];
        struct tsm_priv_guest_request m;
        struct tsm_priv_status status;
        static const uint8_t junk[4096];
        /* The monitor's MONITOR_SEND_TIMEOUT_USEC, shortened: the send fails as it would. */
        struct timeval timeout = { .tv_usec = 20 * 1000 };
        const char *reason = NULL;
        uint8_t req[64];
        uint32_t id;
        size_t len;

        id = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, id, 1, DEV_A, NULL));
        len = tdisp_request(f, DEV_A, TDISP_MSG_GET_VERSION, req, sizeof(req));

        /* The worker reads nothing more: what the monitor sends it stays in the channel, full. */
        while (send(f->monitor, junk, sizeof(junk), MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
                ;
        ASSERT_EQ(errno, EAGAIN);
        ASSERT_OK(setsockopt(f->monitor, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout)));

        /* One more answer than the outbox holds: adding the last flushes it, which fails. Then
         * a guest request and a STATUS, read in the same round. */
        for (unsigned i = 0; i <= TSM_PRIV_BATCH_MAX; i++) {
                struct tsm_priv_vdevice v = vdevice_msg(TSM_PRIV_GET_VDEVICE_STATE, SLOT, id, 1);

                v.hdr.cookie = ++f->cookie;
                ASSERT_OK(tsm_priv_send(f->worker, &v, NULL, 0, -EBADF));
        }
        m = guest_request_msg(f, SLOT, id, 1, TSM_SCOPE_INFO, len);
        m.hdr.cookie = ++f->cookie;
        ASSERT_OK(tsm_priv_send(f->worker, &m, req, len, -EBADF));
        tsm_priv_init(&status, TSM_PRIV_STATUS, 0, 0);
        ASSERT_OK(tsm_priv_send(f->worker, &status, NULL, 0, -EBADF));

        ASSERT_ERRNO(monitor_dispatch_process(f->dispatch, &reason), EPIPE);
        ASSERT_NULL(reason);
        ASSERT_EQ(f->n_stalled, 1u);
        ASSERT_EQ(f->stalled_error, -EAGAIN);
        ASSERT_EQ(monitor_dispatch_n_requests(f->dispatch), 0u);
        ASSERT_EQ(f->n_status, 0u);

        /* The next worker is served as usual. */
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 1);
        ASSERT_OK(vdevice_op(f, TSM_PRIV_GET_VDEVICE_STATE, TSM_PRIV_SLOT_WORKER, id, 1, NULL));
        fixture_free(f);
}

/* A compromised worker keeping the channel full: threads sending STATUS, no reply each, but an
 * sd_notify() for the monitor (here a sleep of about its cost); one at a time, or packed as many
 * as a datagram carries. */
typedef struct Flood {
        int channel; /* non-blocking */
        bool packed;
        uint64_t until; /* it stops by itself then, held loop or not */
        bool stop; /* __atomic: the test's thread sets it, the flood's reads it */
        unsigned long n_sent;
} Flood;

static void *flood_run(void *userdata) {
        Flood *fl = userdata;
        _Alignas(8) uint8_t datagram[TSM_PRIV_PACK_MAX * sizeof(struct tsm_priv_status)];
        size_t per_datagram = fl->packed ? TSM_PRIV_PACK_MAX : 1;
        unsigned long n = 0;

        _Static_assert(sizeof(struct tsm_priv_status) % TSM_PRIV_PACK_ALIGN == 0, "packed without padding");
        for (size_t i = 0; i < per_datagram; i++)
                tsm_priv_init(datagram + i * sizeof(struct tsm_priv_status), TSM_PRIV_STATUS, 0, 0);
        while (!__atomic_load_n(&fl->stop, __ATOMIC_RELAXED) && now_monotonic_usec() < fl->until) {
                ssize_t k = send(fl->channel, datagram, per_datagram * sizeof(struct tsm_priv_status), MSG_NOSIGNAL);

                if (k < 0 && errno == EAGAIN) {
                        struct pollfd p = { .fd = fl->channel, .events = POLLOUT };
                        (void) poll(&p, 1, 10);
                } else if (k < 0)
                        break;
                else
                        n += per_datagram;
        }
        __atomic_add_fetch(&fl->n_sent, n, __ATOMIC_RELAXED);
        return NULL;
}

typedef struct FloodedLoop {
        Fixture *f;
        struct event *again;
        unsigned most_per_round; /* STATUS handled by one call */
} FloodedLoop;

static void on_flooded_channel(evutil_socket_t fd, short what, void *userdata) {
        FloodedLoop *l = userdata;
        unsigned before = l->f->n_status;
        const char *reason = NULL;
        int r;

        r = monitor_dispatch_process(l->f->dispatch, &reason);
        if (r < 0)
                TEST_FAIL("process failed: %s: %s", strerror(-r), strna(reason));
        l->most_per_round = MAX(l->most_per_round, l->f->n_status - before);
        /* As the monitor does (monitor.c): what was read and not handled, after the next round. */
        if (r > 0)
                ASSERT_OK(evtimer_add(l->again, &(struct timeval) {}));
}

static void on_timer(evutil_socket_t fd, short what, void *userdata) {
        uint64_t *fired = userdata;

        *fired = now_monotonic_usec();
}

/* SECURITY: a worker that keeps the channel full does not hold the monitor's loop: each round
 * handles MONITOR_MESSAGES_PER_WAKEUP messages at most, however they are packed, and a timer
 * (the watchdog's, the silence check's, a signal) due meanwhile runs within a round's cost, not
 * when the flood ends. */
TEST(flood_does_not_hold_the_loop) {
        for (int packed = 0; packed <= 1; packed++) {
                Fixture *f = fixture();
                struct timeval tv = { .tv_usec = 50 * 1000 };
                Flood fl = { .channel = f->worker, .packed = packed,
                             .until = now_monotonic_usec() + 3 * 1000 * 1000ULL };
                FloodedLoop l = { .f = f };
                struct event *ev, *timer;
                pthread_t threads[3];
                uint64_t start, fired = 0, late;
                unsigned n_status_at_timer;

                f->status_cost_usec = 200;
                ASSERT_OK(fcntl(f->worker, F_SETFL, fcntl(f->worker, F_GETFL) | O_NONBLOCK));
                for (size_t i = 0; i < ELEMENTSOF(threads); i++)
                        ASSERT_EQ(pthread_create(&threads[i], NULL, flood_run, &fl), 0);
                /* The channel is full before the loop first looks. */
                for (unsigned i = 0; i < 1000; i++) {
                        struct pollfd p = { .fd = f->worker, .events = POLLOUT };

                        if (poll(&p, 1, 0) == 0)
                                break;
                        (void) usleep(1000);
                }

                ev = event_new(f->base, f->monitor, EV_READ | EV_PERSIST, on_flooded_channel, &l);
                l.again = evtimer_new(f->base, on_flooded_channel, &l);
                timer = evtimer_new(f->base, on_timer, &fired);
                ASSERT_NOT_NULL(ev);
                ASSERT_NOT_NULL(l.again);
                ASSERT_NOT_NULL(timer);
                ASSERT_OK(event_add(ev, NULL));
                start = now_monotonic_usec();
                ASSERT_OK(evtimer_add(timer, &tv));
                /* Without the bound the first round lasts as long as the flood (3 s). */
                while (!fired)
                        ASSERT_OK(event_base_loop(f->base, EVLOOP_ONCE));
                n_status_at_timer = f->n_status;
                __atomic_store_n(&fl.stop, true, __ATOMIC_RELAXED);
                for (size_t i = 0; i < ELEMENTSOF(threads); i++)
                        ASSERT_EQ(pthread_join(threads[i], NULL), 0);
                event_free(ev);
                event_free(l.again);
                event_free(timer);

                ASSERT_TRUE(fired > 0);
                late = fired - start - 50 * 1000;
                fprintf(stderr, "# %s: timer ran %.1f ms late, after %u STATUS of %lu sent, at most %u a round\n",
                        packed ? "packed" : "one per datagram", (double) late / 1e3, n_status_at_timer, fl.n_sent,
                        l.most_per_round);
                /* The flood was on: more came than one round takes. */
                ASSERT_TRUE(fl.n_sent > n_status_at_timer);
                ASSERT_LE(l.most_per_round, MONITOR_MESSAGES_PER_WAKEUP);
                /* A round is MONITOR_MESSAGES_PER_WAKEUP STATUS at 200 us (26 ms); a loaded
                 * machine may take a few times that, never the flood's 3 s. */
                ASSERT_LE(late, 500 * 1000ULL);
                fixture_free(f);
        }
}

/* Takes every reply waiting; each must be a refusal (-EBUSY). Returns how many. */
static unsigned drain_refusals(Fixture *f) {
        struct tsm_priv_reply rep;
        const char *reason = NULL;
        unsigned n = 0;
        size_t n_fds;
        int fds[1];
        ssize_t k;

        while ((k = priv_reader_receive(&f->reader, f->worker, f->buf, fds, 1, &n_fds)) > 0) {
                ASSERT_OK(tsm_priv_check(f->buf, (size_t) k, n_fds, TSM_PRIV_FROM_MONITOR, &rep, sizeof(rep), NULL,
                                         &reason));
                ASSERT_EQ(rep.hdr.type, TSM_PRIV_REPLY);
                ASSERT_EQ(rep.result, -EBUSY);
                n++;
        }
        ASSERT_ERRNO(k, EAGAIN);
        return n;
}

/* A flood of binds and unbinds (or settles) of one vDevice while the device takes its time:
 * what waits is bounded, the rest refused at once; what was taken is answered as usual. */
TEST(changes_are_bounded) {
        Fixture *f = fixture();
        struct tsm_priv_vdevice m;
        MonitorVDevice *v;
        unsigned n_refused = 0, n_answered = 0, n_flood = 2000;
        uint32_t a, settle_cookie;
        Reply rep;

        a = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, a, 1, DEV_A, NULL));
        v = monitor_context_find_vdevice(monitor_contexts_get(f->contexts, a), 1);

        /* The loop does not run meanwhile: the device answers none of them. */
        for (unsigned i = 0; i < n_flood; i++) {
                m = vdevice_msg(i % 2 ? TSM_PRIV_UNBIND_VDEVICE : TSM_PRIV_BIND_VDEVICE, SLOT, a, 1);
                m.hdr.cookie = ++f->cookie;
                ASSERT_OK(tsm_priv_send(f->worker, &m, NULL, 0, -EBADF));
                if (i % 16 == 15) {
                        process_ok(f);
                        n_refused += drain_refusals(f);
                }
        }
        process_ok(f);
        n_refused += drain_refusals(f);
        ASSERT_EQ(v->n_changes, MONITOR_CHANGES_PER_VDEVICE_MAX);
        ASSERT_EQ(n_refused, n_flood - MONITOR_CHANGES_PER_VDEVICE_MAX);

        /* One settle waits; another is refused. */
        m = vdevice_msg(TSM_PRIV_SETTLE_VDEVICE, SLOT, a, 1);
        m.hdr.cookie = settle_cookie = ++f->cookie;
        ASSERT_OK(tsm_priv_send(f->worker, &m, NULL, 0, -EBADF));
        process_ok(f);
        nothing_waiting(f);
        for (unsigned i = 0; i < 100; i++) {
                m.hdr.cookie = ++f->cookie;
                ASSERT_OK(tsm_priv_send(f->worker, &m, NULL, 0, -EBADF));
                process_ok(f);
                ASSERT_EQ(drain_refusals(f), 1u);
        }

        /* The four taken are answered, then the settle (unbound: an unbind came last). */
        while (n_answered < MONITOR_CHANGES_PER_VDEVICE_MAX + 1) {
                await_reply(f);
                receive(f, TSM_PRIV_REPLY, &rep.r, sizeof(rep.r), NULL, NULL);
                ASSERT_OK(rep.r.result);
                if (++n_answered == MONITOR_CHANGES_PER_VDEVICE_MAX + 1) {
                        ASSERT_EQ(rep.r.hdr.cookie, settle_cookie);
                        ASSERT_EQ(rep.r.value, 0u);
                } else
                        ASSERT_LE(rep.r.hdr.cookie, MONITOR_CHANGES_PER_VDEVICE_MAX + 2 /* open, attach */);
        }
        ASSERT_EQ(v->n_changes, 0u);
        ASSERT_FALSE(v->bound);
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, a, 1, NULL));
        ASSERT_TRUE(v->bound);
        fixture_free(f);
}

/* Debug scopes need the monitor's own word too: refused (-EPERM, not a violation: a reload may
 * reach the worker first) unless the policy opens them for the device; never asked for the
 * scopes every backend allows by default. */
TEST(opt_in_scopes_gated) {
        Fixture *f = fixture();
        uint8_t req[64], dbg[sizeof(EmuDebugMessage)];
        struct tsm_priv_guest_request m;
        size_t len, dbg_len;
        uint32_t id;
        Reply rep;

        id = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, id, 1, DEV_A, NULL));
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, id, 1, NULL));
        len = tdisp_request(f, DEV_A, TDISP_MSG_GET_VERSION, req, sizeof(req));
        ASSERT_OK(emu_debug_build_mem_request(emu_device_get_function_id(device(f, DEV_A)), EMU_VENDOR_ID_DEFAULT,
                                              EMU_DEBUG_OP_MEM_READ, 0, 16, NULL, dbg, sizeof(dbg), &dbg_len));

        f->debug_refused = true;
        for (unsigned i = 0; i < 2; i++) {
                m = guest_request_msg(f, SLOT, id, 1, i == 0 ? TSM_SCOPE_DEBUG_READ : TSM_SCOPE_DEBUG_WRITE, dbg_len);
                ASSERT_ERRNO(call_full(f, &m, dbg, dbg_len, -EBADF, &rep), EPERM);
                ASSERT_EQ(rep.r.value, TSM_PRIV_REPLY_MONITOR_OWN); /* the gate's, not the device's */
                ASSERT_EQ(rep.r.hdr.payload_len, 0u);
                ASSERT_STREQ(f->granted_address, DEV_A);
                ASSERT_STREQ(f->granted_scope, i == 0 ? TSM_SCOPE_DEBUG_READ : TSM_SCOPE_DEBUG_WRITE);
        }
        ASSERT_EQ(monitor_dispatch_n_requests(f->dispatch), 0u);
        /* Without end, they are answered every time but logged a burst's worth. */
        {
                int saved = log_capture_begin();
                _cleanup_free_ char *text = NULL;

                for (unsigned i = 0; i < 100; i++) {
                        m = guest_request_msg(f, SLOT, id, 1, TSM_SCOPE_DEBUG_READ, dbg_len);
                        ASSERT_ERRNO(call_full(f, &m, dbg, dbg_len, -EBADF, &rep), EPERM);
                }
                text = log_capture_end(saved);
                /* The two above took two of the burst. */
                ASSERT_EQ(count_occurrences(text, "Refusing a guest request"), MONITOR_LOG_RATELIMIT_BURST - 2);
        }
        /* info is granted (the defaults' scope of some rule listing the device): asked all the same. */
        f->granted_scope[0] = 0;
        ASSERT_OK(guest_request(f, SLOT, id, 1, TSM_SCOPE_INFO, req, len, &rep));
        ASSERT_STREQ(f->granted_scope, TSM_SCOPE_INFO);

        /* Granted: it reaches the device. */
        f->debug_refused = false;
        ASSERT_OK(guest_request(f, SLOT, id, 1, TSM_SCOPE_DEBUG_READ, dbg, dbg_len, &rep));
        ASSERT_EQ(rep.r.hdr.payload_len, dbg_len + 16);
        fixture_free(f);
}

/* SECURITY: a scope backends allow by default is still the policy's to grant: one no rule
 * grants for the device ([Defaults] Scopes= narrowed, a rule's own Scopes= leaving it out, no
 * rule listing the device) never reaches it, whatever the worker says. */
TEST(default_scopes_gated) {
        Fixture *f = fixture();
        uint8_t req[64];
        uint32_t id;
        size_t len;
        Reply rep;

        id = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, id, 1, DEV_A, NULL));
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, id, 1, NULL));
        /* A START: its nonce (zeros here) the TSM fills in. */
        ASSERT_OK(tdisp_build_request(TDISP_MSG_START_INTERFACE_REQ, emu_device_get_function_id(device(f, DEV_A)),
                                      (const uint8_t[TDISP_NONCE_SIZE]){}, TDISP_NONCE_SIZE, req, sizeof(req), &len));

        f->refused_scope = TSM_SCOPE_STATE_CHANGE;
        ASSERT_ERRNO(guest_request(f, SLOT, id, 1, TSM_SCOPE_STATE_CHANGE, req, len, &rep), EPERM);
        ASSERT_EQ(rep.r.value, TSM_PRIV_REPLY_MONITOR_OWN);
        ASSERT_EQ(rep.r.hdr.payload_len, 0u);
        ASSERT_STREQ(f->granted_address, DEV_A);
        ASSERT_STREQ(f->granted_scope, TSM_SCOPE_STATE_CHANGE);
        ASSERT_EQ(emu_device_get_state(device(f, DEV_A)), TDISP_STATE_CONFIG_LOCKED);
        ASSERT_EQ(monitor_dispatch_n_requests(f->dispatch), 0u);

        /* Granted: the TDI starts. */
        f->refused_scope = NULL;
        ASSERT_OK(guest_request(f, SLOT, id, 1, TSM_SCOPE_STATE_CHANGE, req, len, &rep));
        ASSERT_EQ(emu_device_get_state(device(f, DEV_A)), TDISP_STATE_RUN);
        fixture_free(f);
}

/* SECURITY: the monitor's own bound on attaching and binding, as on scopes: a device no policy
 * rule lists is neither attached to a client's context nor locked, whatever the worker says;
 * refused -EPERM (a reload may reach the worker first), not a violation, and said to be the
 * monitor's own refusal, not a TSM's (TSM_PRIV_REPLY_MONITOR_OWN). Unbinding and detaching
 * give a device up and are never refused; a restore's attach records what the kernel kept. */
TEST(attach_and_bind_gated) {
        Fixture *f = fixture();
        struct tsm_priv_restored_context restored[2];
        uint32_t id, kept, value;
        int p[2];

        id = open_context(f, SLOT, ID_A, NULL);
        f->unlisted = DEV_A;
        {
                int saved = log_capture_begin();
                _cleanup_free_ char *text = NULL;

                ASSERT_ERRNO(attach(f, SLOT, id, 1, DEV_A, &value), EPERM);
                ASSERT_EQ(value, TSM_PRIV_REPLY_MONITOR_OWN);
                text = log_capture_end(saved);
                ASSERT_NOT_NULL(strstr(text, "Refusing to attach " DEV_A ": no policy rule lists the device"));
        }
        ASSERT_STREQ(f->listed_address, DEV_A);
        ASSERT_EQ(f->listed_backend, TSM_BACKEND_EMULATED);
        ASSERT_NULL(monitor_contexts_find_device(f->contexts, DEV_A, NULL));
        ASSERT_NULL(monitor_context_find_vdevice(monitor_contexts_get(f->contexts, id), 1));
        /* Listed: attached. */
        f->unlisted = NULL;
        ASSERT_OK(attach(f, SLOT, id, 1, DEV_A, NULL));

        /* A reload took the device out of every rule: no bind (the TDI stays unlocked), ... */
        f->unlisted = DEV_A;
        f->n_listed = 0;
        ASSERT_ERRNO(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, id, 1, &value), EPERM);
        ASSERT_EQ(value, TSM_PRIV_REPLY_MONITOR_OWN);
        ASSERT_EQ(f->n_listed, 1u);
        ASSERT_EQ(emu_device_get_state(device(f, DEV_A)), TDISP_STATE_CONFIG_UNLOCKED);
        ASSERT_FALSE(monitor_context_find_vdevice(monitor_contexts_get(f->contexts, id), 1)->bound);
        /* ... but one bound before may be unbound and detached. */
        f->unlisted = NULL;
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, id, 1, NULL));
        ASSERT_EQ(emu_device_get_state(device(f, DEV_A)), TDISP_STATE_CONFIG_LOCKED);
        f->unlisted = DEV_A;
        f->n_listed = 0;
        ASSERT_OK(vdevice_op(f, TSM_PRIV_UNBIND_VDEVICE, SLOT, id, 1, NULL));
        ASSERT_EQ(emu_device_get_state(device(f, DEV_A)), TDISP_STATE_CONFIG_UNLOCKED);
        ASSERT_OK(vdevice_op(f, TSM_PRIV_DETACH_VDEVICE, SLOT, id, 1, NULL));
        ASSERT_EQ(f->n_listed, 0u);

        /* A context the fd store handed back: its vDevice is recorded from the state file even
         * where no rule lists the device now (so that its release unbinds it), but not bound
         * again. */
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        ASSERT_OK(monitor_contexts_restore(f->contexts, p[1], "ctx.1000." ID_B, &kept));
        close(p[0]);
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 2);
        ASSERT_OK(attach(f, TSM_PRIV_SLOT_WORKER, kept, 7, DEV_A, NULL));
        ASSERT_EQ(f->n_listed, 0u);
        ASSERT_NOT_NULL(monitor_contexts_find_device(f->contexts, DEV_A, NULL));
        ASSERT_ERRNO(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, TSM_PRIV_SLOT_WORKER, kept, 7, NULL), EPERM);
        ASSERT_EQ(emu_device_get_state(device(f, DEV_A)), TDISP_STATE_CONFIG_UNLOCKED);
        fixture_free(f);
}

/* What the fixture's attribute attr of the device at devpath holds (what the monitor wrote),
 * without its newline. */
static const char *written_attr(Fixture *f, const char *devpath, const char *attr) {
        static char buf[64];
        char path[PATH_MAX];
        _cleanup_close_ int fd = -EBADF;
        ssize_t n;

        snprintf(path, sizeof(path), "%s%s/%s", f->sysfs, devpath, attr);
        ASSERT_OK(fd = open(path, O_RDONLY | O_CLOEXEC));
        ASSERT_OK(n = read(fd, buf, sizeof(buf) - 1));
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        return buf;
}

/* SECURITY: the same bound on connecting and disconnecting (an SPDM session and IDE started or
 * torn down by root): a device no policy rule lists for the backend of the TSM the connection is
 * with is neither connected nor disconnected, whatever the worker says, even where no context of
 * tsmd's holds it; refused -EPERM, the monitor's own, and nothing is written to sysfs. Where the
 * platform would write nothing (no such TSM, a function), it answers as before, unasked. */
TEST(connect_and_disconnect_gated) {
        Fixture *f = kernel_fixture();
        struct tsm_priv_device dev;
        TsmDeviceInfo info;
        Reply rep;

        tsm_priv_init(&dev, TSM_PRIV_CONNECT_DEVICE, 0, 0);
        strcpy(dev.pci_address, NVME);
        strcpy(dev.tsm, "tsm1");
        f->unlisted = NVME;
        {
                int saved = log_capture_begin();
                _cleanup_free_ char *text = NULL;

                ASSERT_ERRNO(call(f, &dev, &rep), EPERM);
                text = log_capture_end(saved);
                ASSERT_NOT_NULL(strstr(text, "Refusing to connect " NVME ": no policy rule lists the device"));
        }
        ASSERT_EQ(rep.r.value, TSM_PRIV_REPLY_MONITOR_OWN);
        ASSERT_EQ(f->n_listed, 1u);
        ASSERT_STREQ(f->listed_address, NVME);
        ASSERT_EQ(f->listed_backend, TSM_BACKEND_TDX_CONNECT); /* tsm1's: the TSM named */
        ASSERT_FALSE(tsm_platform_is_changing(f->platform, NVME));
        ASSERT_STREQ(written_attr(f, NVME_PATH, "tsm/connect"), "");
        ASSERT_ERRNO(tsm_platform_get_device(f->platform, NVME, &info), ENXIO);

        /* Asked for the backend of the TSM named, not of the one the device is on now. */
        f->unlisted = NULL;
        f->n_listed = 0;
        strcpy(dev.pci_address, GPU);
        strcpy(dev.tsm, "tsm0");
        ASSERT_ERRNO(call(f, &dev, &rep), EBUSY); /* listed: the platform's answer */
        ASSERT_EQ(f->n_listed, 1u);
        ASSERT_EQ(f->listed_backend, TSM_BACKEND_SEV_TIO);

        /* Nothing to write: the platform answers, unasked. */
        f->unlisted = NVME;
        f->n_listed = 0;
        strcpy(dev.pci_address, NVME);
        strcpy(dev.tsm, "tsm9");
        ASSERT_ERRNO(call(f, &dev, &rep), ENXIO);
        strcpy(dev.pci_address, NIC_FN1);
        strcpy(dev.tsm, "tsm0");
        ASSERT_ERRNO(call(f, &dev, &rep), EXDEV);
        ASSERT_EQ(f->n_listed, 0u);

        /* Listed: connected. */
        f->unlisted = NULL;
        strcpy(dev.pci_address, NVME);
        strcpy(dev.tsm, "tsm1");
        ASSERT_OK(call(f, &dev, &rep));
        ASSERT_EQ(f->n_listed, 1u);
        ASSERT_STREQ(written_attr(f, NVME_PATH, "tsm/connect"), "tsm1");

        /* No disconnect of a device no rule lists, though no guest holds it: asked for the
         * backend of the TSM it is connected to. */
        ASSERT_OK(sysfs_fixture_write_attr(f->sysfs, GPU_PATH, "tsm/disconnect", ""));
        f->unlisted = GPU;
        f->n_listed = 0;
        ASSERT_ERRNO(disconnect(f, GPU), EPERM);
        ASSERT_EQ(f->n_listed, 1u);
        ASSERT_STREQ(f->listed_address, GPU);
        ASSERT_EQ(f->listed_backend, TSM_BACKEND_TDX_CONNECT);
        ASSERT_STREQ(written_attr(f, GPU_PATH, "tsm/disconnect"), "");
        ASSERT_OK(tsm_platform_get_device(f->platform, GPU, &info));
        ASSERT_STREQ(info.tsm, "tsm1");
        {
                struct tsm_priv_device off;

                tsm_priv_init(&off, TSM_PRIV_DISCONNECT_DEVICE, 0, 0);
                strcpy(off.pci_address, GPU);
                ASSERT_ERRNO(call(f, &off, &rep), EPERM);
                ASSERT_EQ(rep.r.value, TSM_PRIV_REPLY_MONITOR_OWN);
        }
        /* Listed: disconnected, from its TSM. */
        f->unlisted = NULL;
        ASSERT_OK(disconnect(f, GPU));
        ASSERT_STREQ(written_attr(f, GPU_PATH, "tsm/disconnect"), "tsm1");
        fixture_free(f);
}

/* The monitor out of memory as it takes a bind, an unbind or a guest request: -ENOMEM said to be
 * its own (TSM_PRIV_REPLY_MONITOR_OWN), the TSM not asked, so that the worker tells tsmd's
 * failure, not the backend's OutOfMemory. The first allocation the monitor makes for each is
 * its record of the call (new0()); the next call goes through. */
TEST(own_out_of_memory_is_said_so) {
#ifdef HAVE_ASAN
        SKIP("AddressSanitizer owns malloc()");
#endif
        static const uint32_t types[] = { TSM_PRIV_BIND_VDEVICE, TSM_PRIV_UNBIND_VDEVICE };
        Fixture *f = fixture();
        uint8_t req[64];
        uint32_t id, value;
        size_t len;
        Reply rep;

        id = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, id, 1, DEV_A, NULL));
        for (size_t i = 0; i < ELEMENTSOF(types); i++) {
                TdispState before = emu_device_get_state(device(f, DEV_A));

                alloc_calls = 0;
                alloc_fail_at = 1;
                ASSERT_ERRNO(vdevice_op(f, types[i], SLOT, id, 1, &value), ENOMEM);
                alloc_fail_at = 0;
                ASSERT_TRUE(alloc_calls >= 1);
                ASSERT_EQ(value, TSM_PRIV_REPLY_MONITOR_OWN);
                ASSERT_EQ(emu_device_get_state(device(f, DEV_A)), before);
                ASSERT_OK(vdevice_op(f, types[i], SLOT, id, 1, NULL));
                ASSERT_TRUE(emu_device_get_state(device(f, DEV_A)) != before);
        }

        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, id, 1, NULL));
        len = tdisp_request(f, DEV_A, TDISP_MSG_GET_VERSION, req, sizeof(req));
        alloc_calls = 0;
        alloc_fail_at = 1;
        ASSERT_ERRNO(guest_request(f, SLOT, id, 1, TSM_SCOPE_INFO, req, len, &rep), ENOMEM);
        alloc_fail_at = 0;
        ASSERT_EQ(rep.r.value, TSM_PRIV_REPLY_MONITOR_OWN);
        ASSERT_EQ(rep.r.hdr.payload_len, 0u);
        ASSERT_OK(guest_request(f, SLOT, id, 1, TSM_SCOPE_INFO, req, len, &rep));
        fixture_free(f);
}

/* The same for a connect and a disconnect, which a kernel's write to tsm/connect may fail
 * -ENOMEM too: the monitor's own said so, the kernel not asked (its record of the call, new0(),
 * then the platform's of the write). The next one goes through. */
TEST(own_out_of_memory_on_a_connect_is_said_so) {
#ifdef HAVE_ASAN
        SKIP("AddressSanitizer owns malloc()");
#endif
        Fixture *f = kernel_fixture();
        struct tsm_priv_device dev;
        Reply rep;

        for (unsigned i = 0; i < 2; i++) {
                bool connect = i == 0;

                tsm_priv_init(&dev, connect ? TSM_PRIV_CONNECT_DEVICE : TSM_PRIV_DISCONNECT_DEVICE, 0, 0);
                strcpy(dev.pci_address, NVME);
                if (connect)
                        strcpy(dev.tsm, "tsm1");
                for (unsigned n = 1; n <= 2; n++) {
                        alloc_calls = 0;
                        alloc_fail_at = n;
                        ASSERT_ERRNO(call(f, &dev, &rep), ENOMEM);
                        alloc_fail_at = 0;
                        ASSERT_TRUE(alloc_calls >= n);
                        ASSERT_EQ(rep.r.value, TSM_PRIV_REPLY_MONITOR_OWN);
                        ASSERT_FALSE(tsm_platform_is_changing(f->platform, NVME));
                }
                ASSERT_OK(call(f, &dev, &rep));
                ASSERT_EQ(rep.r.value, 0u);
        }
        fixture_free(f);
}

/* The worker may let an orphan go (it was not reclaimed in time). */
TEST(close_orphan) {
        Fixture *f = fixture();
        struct tsm_priv_context m;
        uint32_t a;
        Reply rep;

        a = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, a, 3, DEV_A, NULL));
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, a, 3, NULL));
        worker_stop(f);
        ASSERT_EQ(worker_start(f, (struct tsm_priv_restored_context[1]){}, 1), 1);

        m = context_msg(TSM_PRIV_CLOSE_CONTEXT, TSM_PRIV_SLOT_WORKER, a);
        ASSERT_OK(call(f, &m, &rep));
        ASSERT_EQ(monitor_contexts_size(f->contexts), 0);
        ASSERT_OK(event_base_loop(f->base, EVLOOP_NONBLOCK)); /* the device takes the unbind */
        ASSERT_EQ(emu_device_get_state(device(f, DEV_A)),
                  TDISP_STATE_CONFIG_UNLOCKED);
        fixture_free(f);
}

TEST(request_limit) {
        Fixture *f = fixture();
        struct tsm_priv_guest_request m;
        uint8_t req[64];
        uint32_t id;
        size_t len, sent = 0;
        Reply rep;

        id = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(attach(f, SLOT, id, 1, DEV_A, NULL));
        ASSERT_OK(vdevice_op(f, TSM_PRIV_BIND_VDEVICE, SLOT, id, 1, NULL));
        len = tdisp_request(f, DEV_A, TDISP_MSG_GET_VERSION, req, sizeof(req));

        /* Without the loop running, the device answers none of them. */
        while (sent < MONITOR_REQUESTS_MAX) {
                for (int i = 0; i < 32 && sent < MONITOR_REQUESTS_MAX; i++, sent++) {
                        m = guest_request_msg(f, SLOT, id, 1, TSM_SCOPE_INFO, len);
                        m.hdr.cookie = 1000 + (uint32_t) sent;
                        ASSERT_OK(tsm_priv_send(f->worker, &m, req, len, -EBADF));
                }
                process_ok(f);
        }
        nothing_waiting(f);
        ASSERT_EQ(monitor_dispatch_n_requests(f->dispatch), MONITOR_REQUESTS_MAX);

        m = guest_request_msg(f, SLOT, id, 1, TSM_SCOPE_INFO, len);
        ASSERT_ERRNO(call_full(f, &m, req, len, -EBADF, &rep), EBUSY);

        /* Once they are answered, there is room again. */
        for (size_t i = 0; i < MONITOR_REQUESTS_MAX;) {
                size_t n_fds;
                int fds[1];
                ssize_t n;

                ASSERT_OK(event_base_loop(f->base, EVLOOP_NONBLOCK));
                while ((n = priv_reader_receive(&f->reader, f->worker, f->buf, fds, 1, &n_fds)) > 0)
                        i++;
                ASSERT_ERRNO(n, EAGAIN);
        }
        ASSERT_EQ(monitor_dispatch_n_requests(f->dispatch), 0);
        ASSERT_OK(guest_request(f, SLOT, id, 1, TSM_SCOPE_INFO, req, len, &rep));
        fixture_free(f);
}

/* SECURITY: the monitor holds no more contexts than its maximum (each is an fd, and it needs
 * some to start the next worker): past it OPEN_CONTEXT and ADOPT_CONTEXT are answered -EMFILE,
 * as an honest worker may ask, with nothing opened or kept; one iommufd adopted again and again
 * under fresh reclaim ids counts each time. HELLO tells the worker the maximum. */
TEST(contexts_bounded) {
        Fixture *f = fixture();
        struct tsm_priv_new_context m;
        struct tsm_priv_context c;
        size_t fds;
        uint32_t a;
        Reply rep;
        int fa;

        ASSERT_EQ(f->hello.max_contexts, UINT32_MAX); /* as many as SIZE_MAX says */
        monitor_contexts_set_max(f->contexts, 2);
        worker_stop(f);
        ASSERT_EQ(worker_start(f, NULL, 0), 0);
        ASSERT_EQ(f->hello.max_contexts, 2);

        a = open_context(f, SLOT, ID_A, &fa);
        m = new_context_msg(TSM_PRIV_ADOPT_CONTEXT, OTHER_SLOT, 1000, ID_B);
        ASSERT_OK(call_full(f, &m, NULL, 0, fa, &rep));
        fds = test_count_fds();

        for (unsigned i = 0; i < 3; i++) {
                m = new_context_msg(TSM_PRIV_OPEN_CONTEXT, SLOT, 1000, ID_C);
                ASSERT_ERRNO(call(f, &m, &rep), EMFILE);
                ASSERT_EQ(rep.fd, -1);
                m = new_context_msg(TSM_PRIV_ADOPT_CONTEXT, SLOT, 1000, ID_C);
                ASSERT_ERRNO(call_full(f, &m, NULL, 0, fa, &rep), EMFILE);
                ASSERT_EQ(rep.fd, -1);
        }
        ASSERT_EQ(test_count_fds(), fds);
        ASSERT_EQ(monitor_contexts_size(f->contexts), 2);

        /* A context closed makes room again, for the same worker. */
        c = context_msg(TSM_PRIV_CLOSE_CONTEXT, SLOT, a);
        ASSERT_OK(call(f, &c, &rep));
        open_context(f, SLOT, ID_C, NULL);
        close(fa);
        fixture_free(f);
}


/* The platform set up, a FUSE server holding this process's requests (a skip without FUSE), the
 * fd closer started as tsmd's main() does, and a file of the server's opened: its fd. */
static int setup_with_fuse(Fixture *f, const TsmPlatformConfig *config, FuseHold *h) {
        int fd, r;

        setup_platform(f, config);
        r = fuse_hold_start(h, (pid_t[]) { getpid() }, 1, true, FUSE_HOLD_USEC);
        if (r < 0)
                SKIP("no FUSE mount here: %s", strerror(-r));
        ASSERT_OK(fd_closer_start());
        fd = fuse_hold_open(h, O_RDWR);
        ASSERT_OK(fd);
        return fd;
}

/* SECURITY: an fd the worker forwards with ADOPT_CONTEXT is a client's, maybe of a FUSE file
 * system the client serves and never answers (tests/fuse-hold.h; root, SKIP otherwise). A
 * correct worker passes on no such fd (it is no character device or memfd): the monitor tells
 * without asking that file system what the fd is (fstat()'s GETATTR), ends the worker as
 * compromised, and does not close the fd itself (FLUSH), either of which would wait for as long
 * as the client likes. That comes at once and the next worker is served, with the IOMMU device a
 * character device (IommuDevice=/dev/zero) and without one (the emulated stand-in). This
 * process is the monitor: the server holds its requests too, so it closes its own copy once the
 * server is gone. */
TEST(a_fuse_fd_to_adopt_waits_on_no_server) {
        static const char *const devices[] = { "/dev/zero", "/nonexistent/tsmd-test-iommu" };

        for (size_t i = 0; i < ELEMENTSOF(devices); i++) {
                TsmPlatformConfig config = {
                        .mode = TSM_PLATFORM_EMULATED,
                        .iommu_device = (char *) devices[i],
                };
                struct tsm_priv_new_context m = new_context_msg(TSM_PRIV_ADOPT_CONTEXT, SLOT, 1000, ID_C);
                Fixture *f = malloc(sizeof(Fixture));
                int fd, ctx_fd;
                FuseHold h;
                uint64_t t;

                ASSERT_NOT_NULL(f);
                fd = setup_with_fuse(f, &config, &h);

                t = now_monotonic_usec();
                ASSERT_ERRNO(expect_violation_full(f, &m, sizeof(m), fd, "ADOPT_CONTEXT"), EBADF);
                worker_stop(f);
                ASSERT_EQ(worker_start(f, NULL, 0), 0);
                open_context(f, SLOT, ID_A, &ctx_fd);
                close(ctx_fd);
                t = now_monotonic_usec() - t;
                fprintf(stderr, "IommuDevice=%s: the violation and the next worker's context took %" PRIu64 " us\n",
                        devices[i], t);
                if (t > SEC_USEC)
                        TEST_FAIL("the monitor waited %" PRIu64 " ms on the FUSE server", t / 1000);
                ASSERT_EQ(monitor_contexts_size(f->contexts), 1);

                /* The server's death ends the close of the refused fd. */
                fuse_hold_stop(&h);
                close(fd);
                ASSERT_OK(fd_closer_wait_idle(5 * SEC_USEC));
                fd_closer_stop(5 * SEC_USEC); /* and its fd of the mount table */
                fixture_free(f);
        }
}

/* As a compromised worker: n ADOPT_CONTEXTs in a row, each with fd, then the monitor's rounds
 * on them. Returns how many were answered, each -ENOBUFS as the monitor's own failure (it took
 * no fd), or -1 if the monitor ended the worker (a violation: at the first). */
static int adopt_flood(Fixture *f, int fd, unsigned n) {
        const char *reason = NULL;
        int r;

        for (unsigned i = 0; i < n; i++) {
                struct tsm_priv_new_context m = new_context_msg(TSM_PRIV_ADOPT_CONTEXT, SLOT, 1000, ID_C);

                send_raw(f, &m, sizeof(m), fd);
        }
        do
                r = monitor_dispatch_process(f->dispatch, &reason);
        while (r > 0);
        if (r < 0) {
                ASSERT_NOT_NULL(reason);
                fprintf(stderr, "compromised worker: %s: %s\n", monitor_dispatch_get_violation_type(f->dispatch),
                        reason);
                return -1;
        }
        for (unsigned i = 0; i < n; i++) {
                struct tsm_priv_reply rep;

                receive(f, TSM_PRIV_REPLY, &rep, sizeof(rep), NULL, NULL);
                ASSERT_ERRNO(rep.result, ENOBUFS);
                ASSERT_EQ(rep.value, TSM_PRIV_REPLY_MONITOR_OWN);
        }
        nothing_waiting(f);
        return (int) n;
}

/* SECURITY: what a compromised worker leaves the monitor holding past its life is bounded. Each
 * of several workers in turn passes one FUSE fd of a client's (whose server never answers) with
 * ADOPT_CONTEXT, again and again, more than a batch. The first worker is ended at its first;
 * the fds its batch brought wait to be closed behind that one's close, which the server holds.
 * From then on the monitor takes no fd: it receives one datagram at a time and closes its fds
 * (never leaving them to the kernel to drop on its thread: an_fd_not_taken_is_released_off_the_loop).
 * An honest worker's adopt while they wait is answered -ENOBUFS as the monitor's own failure;
 * calls without fds are served as ever; a later worker's adopt of such a file ends that worker
 * at its first, the file waiting with the rest. Never more than MONITOR_WORKER_FDS_CLOSING_MAX
 * and one datagram's fds per later worker are held, where each call kept one until the fd table
 * was full, OPEN_CONTEXT failed EMFILE and every worker that adopted a context was taken for
 * compromised. Once the server answers (dies), they are closed and adopting works again. */
TEST(fds_held_for_closing_are_bounded) {
        TsmPlatformConfig config = {
                .mode = TSM_PLATFORM_EMULATED,
                .iommu_device = (char *) "/nonexistent/tsmd-test-iommu",
        };
        struct tsm_priv_new_context m;
        Fixture *f = malloc(sizeof(Fixture));
        int fuse_fd, ctx_fd, fd, r;
        size_t before;
        FuseHold h;
        Reply rep;

        ASSERT_NOT_NULL(f);
        fuse_fd = setup_with_fuse(f, &config, &h);
        /* An honest client's iommufd (the emulated stand-in), to adopt under another id. */
        open_context(f, SLOT, ID_A, &ctx_fd);
        before = test_count_fds();

        for (unsigned w = 0; w < 4; w++) {
                r = adopt_flood(f, fuse_fd, 2 * TSM_PRIV_BATCH_MAX);
                ASSERT_EQ(r, -1);
                fprintf(stderr, "worker %u: the monitor holds %zu fds more, %zu waiting to be closed\n", w,
                        test_count_fds() - before, fd_closer_n_waiting(FD_CLOSER_PEER_NONE));
                ASSERT_LE(test_count_fds() - before, (size_t) MONITOR_WORKER_FDS_CLOSING_MAX + w);
                ASSERT_LE(fd_closer_n_waiting(FD_CLOSER_PEER_NONE), (size_t) MONITOR_WORKER_FDS_CLOSING_MAX + w);
                worker_stop(f);
                ASSERT_EQ(worker_start(f, (struct tsm_priv_restored_context[1]){}, 1), 1);
        }
        ASSERT_GE(fd_closer_n_waiting(FD_CLOSER_PEER_NONE), 1u);

        /* An honest worker meanwhile: its adopt fails, not as a violation; the rest works. */
        m = new_context_msg(TSM_PRIV_ADOPT_CONTEXT, SLOT, 1000, ID_B);
        ASSERT_ERRNO(call_full(f, &m, NULL, 0, ctx_fd, &rep), ENOBUFS);
        ASSERT_EQ(rep.r.value, TSM_PRIV_REPLY_MONITOR_OWN);
        open_context(f, SLOT, ID_C, &fd);
        close(fd);
        ASSERT_EQ(monitor_contexts_size(f->contexts), 2);

        /* The server's death ends the closes: the monitor takes fds again. */
        fuse_hold_stop(&h);
        ASSERT_OK(fd_closer_wait_idle(5 * SEC_USEC));
        ASSERT_EQ(fd_closer_n_waiting(FD_CLOSER_PEER_NONE), 0u);
        m = new_context_msg(TSM_PRIV_ADOPT_CONTEXT, SLOT, 1000, ID_B);
        ASSERT_OK(call_full(f, &m, NULL, 0, ctx_fd, &rep));
        ASSERT_EQ(monitor_contexts_size(f->contexts), 3);

        close(fuse_fd);
        close(ctx_fd);
        fd_closer_stop(5 * SEC_USEC);
        fixture_free(f);
}

/* How long a test lets the monitor's loop wait on a FUSE server before it kills the server and
 * fails: what the loop never does at all. */
#define WATCH_USEC (3 * SEC_USEC)

/* A file system with the kernel's writeback cache whose server holds the pages written
 * (tests/fuse-hold.h), for fuse_hold_send_dirty(): a skip without FUSE. */
static void start_writeback(FuseHold *h) {
        int r = fuse_hold_start_writeback(h, FUSE_HOLD_USEC);

        if (r < 0)
                SKIP("no FUSE mount here: %s", strerror(-r));
}

/* A worker started after the violation is served meanwhile: the monitor's loop did not wait. */
static void expect_next_worker_served(Fixture *f) {
        int fd;

        worker_stop(f);
        ASSERT_EQ(worker_start(f, NULL, 0), 0);
        open_context(f, SLOT, ID_A, &fd);
        close(fd);
}

/* The closer's thread ends once the held server is gone, and with it the fixture. */
static void closer_drained_and_fixture_freed(Fixture *f) {
        ASSERT_OK(fd_closer_wait_idle(5 * SEC_USEC));
        fd_closer_stop(5 * SEC_USEC);
        fixture_free(f);
}

/* The monitor's round on what the worker sent, watched: the violation it must find, at once. */
static void expect_violation_unheld(Fixture *f, FuseHold *h, const char *expected) {
        const char *reason = NULL;
        FuseHoldWatch w;
        int r;

        fuse_hold_watch_start(&w, h, WATCH_USEC);
        r = monitor_dispatch_process(f->dispatch, &reason);
        if (fuse_hold_watch_end(&w))
                TEST_FAIL("the monitor's loop waited on the FUSE server until the server was killed");
        ASSERT_TRUE(r < 0);
        ASSERT_NOT_NULL(reason);
        fprintf(stderr, "compromised worker: %s\n", reason);
        ASSERT_STREQ(reason, expected);
}

/* SECURITY: the monitor's loop never waits on an fd the worker passed, not even one it does not
 * keep. A compromised worker passes two fds with an ADOPT_CONTEXT, which carries one: /dev/null
 * and a file of a FUSE file system with the kernel's writeback cache whose server holds the page
 * written to it, the last reference to that file in flight. The receive gave room for one fd:
 * the kernel dropped the second and released it on the monitor's thread as the receive
 * returned, where fuse_release() wrote the page back and waited for the server (for as long as
 * it liked: here until WATCH_USEC killed it). Now every fd that came is taken, the worker is
 * ended (more fds than any message carries) and the file goes to the closer's thread. */
TEST(an_extra_fd_is_released_off_the_loop) {
        TsmPlatformConfig config = {
                .mode = TSM_PLATFORM_EMULATED,
                .iommu_device = (char *) "/nonexistent/tsmd-test-iommu",
        };
        struct tsm_priv_new_context m = new_context_msg(TSM_PRIV_ADOPT_CONTEXT, SLOT, 1000, ID_C);
        Fixture *f = malloc(sizeof(Fixture));
        int dirty = -EBADF, dev;
        FuseHold h;

        ASSERT_NOT_NULL(f);
        setup_platform(f, &config);
        start_writeback(&h);
        ASSERT_OK(fd_closer_start());
        ASSERT_OK(dev = open("/dev/null", O_RDWR | O_CLOEXEC));
        ASSERT_OK(fuse_hold_send_dirty(&h, f->worker, &m, sizeof(m), dev, &dirty));
        close(dev);

        expect_violation_unheld(f, &h, "more file descriptors than any message carries");
        ASSERT_EQ(fd_closer_n_waiting(FD_CLOSER_PEER_NONE), 1u); /* the file, on the thread */

        expect_next_worker_served(f);

        fuse_hold_stop(&h);
        close(dirty);
        closer_drained_and_fixture_freed(f);
}

/* SECURITY: the same while the monitor takes no fd, as MONITOR_WORKER_FDS_CLOSING_MAX waiting to
 * be closed have it (a first worker's flood behind a close another server holds): a later
 * worker's ADOPT_CONTEXT with such a file. The kernel dropped it (the receive gave no room) on
 * the monitor's thread, which waited. Now the datagram is received with room, its fd not taken:
 * a correct worker passes only devices and memfds (those are closed, the call answered -ENOBUFS:
 * fds_held_for_closing_are_bounded), so one whose close may wait ends the worker, and the file
 * goes to the closer's thread. */
TEST(an_fd_not_taken_is_released_off_the_loop) {
        TsmPlatformConfig config = {
                .mode = TSM_PLATFORM_EMULATED,
                .iommu_device = (char *) "/nonexistent/tsmd-test-iommu",
        };
        struct tsm_priv_new_context m = new_context_msg(TSM_PRIV_ADOPT_CONTEXT, SLOT, 1000, ID_C);
        Fixture *f = malloc(sizeof(Fixture));
        int held_fd, dirty = -EBADF;
        FuseHold held, h;

        ASSERT_NOT_NULL(f);
        held_fd = setup_with_fuse(f, &config, &held);
        start_writeback(&h);
        ASSERT_EQ(adopt_flood(f, held_fd, 2 * TSM_PRIV_BATCH_MAX), -1);
        ASSERT_GE(fd_closer_n_waiting(FD_CLOSER_PEER_NONE), (size_t) MONITOR_WORKER_FDS_CLOSING_MAX);
        worker_stop(f);
        ASSERT_EQ(worker_start(f, NULL, 0), 0);

        ASSERT_OK(fuse_hold_send_dirty(&h, f->worker, &m, sizeof(m), -EBADF, &dirty));
        expect_violation_unheld(f, &h, "file descriptor whose close may wait on a file system");

        expect_next_worker_served(f);

        fuse_hold_stop(&h);
        fuse_hold_stop(&held);
        close(dirty);
        close(held_fd);
        closer_drained_and_fixture_freed(f);
}

/* SECURITY: the same through a socket. A compromised worker passes with ADOPT_CONTEXT an AF_UNIX
 * socket whose queue holds the last reference to such a file: the socket's release drops it, and
 * the monitor closed the refused socket on its thread, a socket's close reaching no FUSE server
 * (fd-fuse.h), where fuse_release() waited for the server. Now a Unix socket counts as what may
 * wait, and goes to the closer's thread. */
TEST(a_socket_holding_a_file_is_released_off_the_loop) {
        TsmPlatformConfig config = {
                .mode = TSM_PLATFORM_EMULATED,
                .iommu_device = (char *) "/nonexistent/tsmd-test-iommu",
        };
        struct tsm_priv_new_context m = new_context_msg(TSM_PRIV_ADOPT_CONTEXT, SLOT, 1000, ID_C);
        Fixture *f = malloc(sizeof(Fixture));
        int dirty = -EBADF, pair[2];
        FuseHold h;

        ASSERT_NOT_NULL(f);
        setup_platform(f, &config);
        start_writeback(&h);
        ASSERT_OK(fd_closer_start());
        ASSERT_OK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair));
        ASSERT_OK(fuse_hold_send_dirty(&h, pair[0], "x", 1, -EBADF, &dirty));
        send_raw(f, &m, sizeof(m), pair[1]);
        close(pair[1]); /* the one in flight is the last */

        expect_violation_unheld(f, &h, "adopted fd neither a character device nor a memfd");
        ASSERT_EQ(fd_closer_n_waiting(FD_CLOSER_PEER_NONE), 1u); /* the socket, on the thread */

        fuse_hold_stop(&h);
        close(dirty);
        close(pair[0]);
        closer_drained_and_fixture_freed(f);
}

/* SECURITY: the same with a socket that lingers (tests/lingering-tcp.h): a TCP socket with
 * unsent data to a peer that never reads, SO_LINGER 10 s, the last reference to it in flight.
 * The monitor closed the refused socket on its thread, a socket other than AF_UNIX counting as
 * what may not wait, and its close waited out the linger there (5 s and more: the reviewer's
 * measure). Now the worker is ended at once, the socket goes to the closer's thread, whose close
 * is abortive (it drops the linger), and the next worker is served. */
TEST(a_lingering_socket_to_adopt_holds_no_loop) {
        TsmPlatformConfig config = {
                .mode = TSM_PLATFORM_EMULATED,
                .iommu_device = (char *) "/nonexistent/tsmd-test-iommu",
        };
        struct tsm_priv_new_context m = new_context_msg(TSM_PRIV_ADOPT_CONTEXT, SLOT, 1000, ID_C);
        Fixture *f = malloc(sizeof(Fixture));
        int fd = -EBADF, listener = -EBADF;
        const char *reason = NULL;
        uint64_t t;
        int r;

        ASSERT_NOT_NULL(f);
        setup_platform(f, &config);
        if (lingering_tcp(10, &fd, &listener) < 0)
                SKIP("no loopback TCP here");
        ASSERT_OK(fd_closer_start());
        send_raw(f, &m, sizeof(m), fd);
        close(fd); /* the one in flight is the last */

        t = now_monotonic_usec();
        r = monitor_dispatch_process(f->dispatch, &reason);
        t = now_monotonic_usec() - t;
        fprintf(stderr, "compromised worker: %s, after %" PRIu64 " us\n", strna(reason), t);
        if (t > 5 * SEC_USEC)
                TEST_FAIL("the monitor's loop waited %" PRIu64 " ms on the socket's linger", t / 1000);
        ASSERT_ERRNO(r, EBADF);
        ASSERT_STREQ(reason, "adopted fd neither a character device nor a memfd");
        /* Closed off the loop, at once there too: the thread is not held. */
        ASSERT_OK(fd_closer_wait_idle(5 * SEC_USEC));

        expect_next_worker_served(f);

        close(listener);
        closer_drained_and_fixture_freed(f);
}

/* The monitor out of fds (RLIMIT_NOFILE) cannot take the fd that comes with an ADOPT_CONTEXT:
 * its own failure, answered -ENOBUFS as such, where it took that for a message without its fd
 * and ended an honest worker as compromised. An fd with a message that carries none stays a
 * violation: the kernel's word that one came is enough. */
TEST(own_fd_limit_is_no_violation) {
        Fixture *f = fixture();
        struct tsm_priv_new_context m;
        struct rlimit saved, low;
        int dups[256], ctx_fd, fd;
        size_t n_dups = 0;
        Reply rep;

        open_context(f, SLOT, ID_A, &ctx_fd);
        ASSERT_OK(getrlimit(RLIMIT_NOFILE, &saved));
        low = saved;
        low.rlim_cur = MIN(saved.rlim_cur, (rlim_t) ELEMENTSOF(dups));
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &low));
        while (n_dups < ELEMENTSOF(dups) && (fd = fcntl(ctx_fd, F_DUPFD_CLOEXEC, 0)) >= 0)
                dups[n_dups++] = fd;
        ASSERT_EQ(errno, EMFILE);

        m = new_context_msg(TSM_PRIV_ADOPT_CONTEXT, SLOT, 1000, ID_B);
        ASSERT_ERRNO(call_full(f, &m, NULL, 0, ctx_fd, &rep), ENOBUFS);
        ASSERT_EQ(rep.r.value, TSM_PRIV_REPLY_MONITOR_OWN);
        ASSERT_EQ(monitor_contexts_size(f->contexts), 1);

        /* With room again, the same adopt works. */
        for (size_t i = 0; i < n_dups; i++)
                close(dups[i]);
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));
        m = new_context_msg(TSM_PRIV_ADOPT_CONTEXT, SLOT, 1000, ID_B);
        ASSERT_OK(call_full(f, &m, NULL, 0, ctx_fd, &rep));
        ASSERT_EQ(monitor_contexts_size(f->contexts), 2);

        /* An fd on an OPEN_CONTEXT, at the limit or not, is the worker's doing. */
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &low));
        n_dups = 0;
        while (n_dups < ELEMENTSOF(dups) && (fd = fcntl(ctx_fd, F_DUPFD_CLOEXEC, 0)) >= 0)
                dups[n_dups++] = fd;
        ASSERT_EQ(errno, EMFILE);
        m = new_context_msg(TSM_PRIV_OPEN_CONTEXT, SLOT, 1000, ID_C);
        ASSERT_ERRNO(expect_violation_full(f, &m, sizeof(m), ctx_fd, "OPEN_CONTEXT"), EPROTO);
        for (size_t i = 0; i < n_dups; i++)
                close(dups[i]);
        ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));
        ASSERT_EQ(monitor_contexts_size(f->contexts), 2);

        close(ctx_fd);
        fixture_free(f);
}

TEST(worker_gone) {
        Fixture *f = fixture();
        const char *reason = NULL;

        ASSERT_OK(monitor_dispatch_process(f->dispatch, &reason)); /* nothing there */
        f->worker = safe_close(f->worker);
        ASSERT_ERRNO(monitor_dispatch_process(f->dispatch, &reason), EPIPE);
        ASSERT_NULL(reason);
        worker_stop(f);
        ASSERT_ERRNO(monitor_dispatch_process(f->dispatch, &reason), ENOTCONN);
        fixture_free(f);
}

/* On SOCK_SEQPACKET a read of no bytes is end of file, or an empty record: a worker that sends
 * one and stays broke a rule; one that shut its end (and may stay) is gone for the monitor. */
TEST(empty_datagram_is_no_end_of_file) {
        Fixture *f = fixture();
        const char *reason = NULL;

        send_raw(f, "", 0, -EBADF);
        ASSERT_ERRNO(monitor_dispatch_process(f->dispatch, &reason), EBADMSG);
        ASSERT_STREQ(reason, "empty datagram");
        ASSERT_STREQ(monitor_dispatch_get_violation_type(f->dispatch), "unknown");
        worker_stop(f);

        ASSERT_EQ(worker_start(f, (struct tsm_priv_restored_context[1]){}, 1), 0);
        ASSERT_OK(shutdown(f->worker, SHUT_WR));
        reason = NULL;
        ASSERT_ERRNO(monitor_dispatch_process(f->dispatch, &reason), EPIPE);
        ASSERT_NULL(reason);
        fixture_free(f);
}

/* ---- violations: each kills the worker ------------------------------------------------------ */

TEST(violation_shape) {
        static const char *const cases[] = {
                "short", "long", "reserved", "flags", "unknown", "direction", "hello", "payload", "length", "fd",
                "no-fd", "two-fds", "huge", "empty-fd",
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Fixture *f = fixture();
                _Alignas(8) uint8_t raw[TSM_PRIV_FIXED_MAX] = {};
                struct tsm_priv_new_context *n = (struct tsm_priv_new_context *) raw;
                struct tsm_priv_hdr *h = (struct tsm_priv_hdr *) raw;
                const char *c = cases[i];
                int r = 0;

                *n = new_context_msg(TSM_PRIV_OPEN_CONTEXT, SLOT, 1000, ID_A);
                if (streq(c, "short")) {
                        tsm_priv_init(raw, TSM_PRIV_READY, 0, 0);
                        h->size = sizeof(struct tsm_priv_ready) - 1;
                        /* Not even a header: no type to name. */
                        r = expect_violation_full(f, raw, sizeof(struct tsm_priv_ready) - 1, -EBADF, "unknown");
                        ASSERT_EQ(r, -EBADMSG);
                        r = expect_violation_full(f, raw, 1, -EBADF, "unknown");
                        ASSERT_EQ(r, -EBADMSG);
                        /* min_size - 1, as the header says and as it came. */
                        *n = new_context_msg(TSM_PRIV_OPEN_CONTEXT, SLOT, 1000, ID_A);
                        h->size = sizeof(*n) - 1;
                        r = expect_violation_full(f, raw, sizeof(*n) - 1, -EBADF, "OPEN_CONTEXT");
                        ASSERT_EQ(r, -EBADMSG);
                } else if (streq(c, "long")) {
                        h->size = sizeof(*n) + 8;
                        raw[sizeof(*n) + 3] = 1;
                        r = expect_violation_full(f, raw, sizeof(*n) + 8, -EBADF, "OPEN_CONTEXT");
                        ASSERT_EQ(r, -E2BIG);
                } else if (streq(c, "reserved"))  {
                        h->__reserved = 1;
                        r = expect_violation(f, raw, "OPEN_CONTEXT");
                } else if (streq(c, "flags")) {
                        h->flags = 0x80000000;
                        r = expect_violation(f, raw, "OPEN_CONTEXT");
                } else if (streq(c, "unknown")) {
                        h->type = _TSM_PRIV_TYPE_MAX;
                        r = expect_violation(f, raw, "unknown");
                        ASSERT_EQ(r, -EOPNOTSUPP);
                        h->type = 0;
                        r = expect_violation(f, raw, "unknown");
                } else if (streq(c, "direction")) {
                        tsm_priv_init(raw, TSM_PRIV_REPLY, 1, 0);
                        r = expect_violation(f, raw, "REPLY");
                        ASSERT_EQ(r, -EPROTO);
                } else if (streq(c, "hello")) {
                        tsm_priv_init(raw, TSM_PRIV_HELLO, 0, 0);
                        r = expect_violation(f, raw, "HELLO");
                } else if (streq(c, "payload")) {
                        h->payload_len = 4;
                        r = expect_violation_full(f, raw, sizeof(*n) + 4, -EBADF, "OPEN_CONTEXT");
                } else if (streq(c, "length")) {
                        r = expect_violation_full(f, raw, sizeof(*n) + 1, -EBADF, "OPEN_CONTEXT");
                } else if (streq(c, "fd")) {
                        r = expect_violation_full(f, raw, sizeof(*n), f->listen_fd, "OPEN_CONTEXT");
                } else if (streq(c, "no-fd")) {
                        h->type = TSM_PRIV_ADOPT_CONTEXT;
                        r = expect_violation(f, raw, "ADOPT_CONTEXT");
                } else if (streq(c, "two-fds")) {
                        union {
                                struct cmsghdr cmsg;
                                uint8_t b[CMSG_SPACE(2 * sizeof(int))];
                        } control = {};
                        int fds[2] = { f->listen_fd, f->listen_fd };
                        struct iovec iov = { .iov_base = raw, .iov_len = sizeof(*n) };
                        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                                             .msg_controllen = sizeof(control.b) };
                        const char *reason = NULL;

                        h->type = TSM_PRIV_ADOPT_CONTEXT;
                        control.cmsg.cmsg_level = SOL_SOCKET;
                        control.cmsg.cmsg_type = SCM_RIGHTS;
                        control.cmsg.cmsg_len = CMSG_LEN(sizeof(fds));
                        memcpy(CMSG_DATA(&control.cmsg), fds, sizeof(fds));
                        ASSERT_EQ(sendmsg(f->worker, &mh, 0), sizeof(*n));
                        r = monitor_dispatch_process(f->dispatch, &reason);
                        ASSERT_NOT_NULL(reason);
                } else if (streq(c, "empty-fd")) {
                        /* An empty datagram would read like end of file, but for its fd. */
                        int p[2];

                        ASSERT_OK(pipe2(p, O_CLOEXEC));
                        r = expect_violation_full(f, raw, 0, p[0], "unknown");
                        ASSERT_EQ(r, -EBADMSG);
                        close(p[0]);
                        ASSERT_ERRNO(write(p[1], "x", 1) < 0 ? -errno : 0, EPIPE); /* no reader left */
                        close(p[1]);
                } else if (streq(c, "huge")) {
                        _cleanup_free_ uint8_t *big = calloc(1, TSM_PRIV_DATAGRAM_MAX + 1);
                        ASSERT_NOT_NULL(big);
                        r = expect_violation_full(f, big, TSM_PRIV_DATAGRAM_MAX + 1, -EBADF, "unknown");
                        ASSERT_EQ(r, -EMSGSIZE);
                }
                ASSERT_TRUE(r < 0);
                ASSERT_EQ(monitor_contexts_size(f->contexts), 0); /* nothing happened */
                fixture_free(f);
        }
}

/* A device message's names are fixed-size fields: one without its NUL, or with bytes after it,
 * would reach sysfs paths and the kernel's connect file as what the worker did not say; a TSM
 * name goes only with a CONNECT_DEVICE. Each is a violation, and nothing is done. */
TEST(violation_device_names) {
        static const uint32_t types[] = { TSM_PRIV_GET_DEVICE_STATE, TSM_PRIV_CONNECT_DEVICE,
                                          TSM_PRIV_DISCONNECT_DEVICE };
        static const char *const cases[] = { "address-unterminated", "address-trailing", "tsm-unterminated",
                                             "tsm-trailing", "tsm-where-none-belongs" };

        for (size_t i = 0; i < ELEMENTSOF(types); i++)
                for (size_t j = 0; j < ELEMENTSOF(cases); j++) {
                        bool with_tsm = types[i] == TSM_PRIV_CONNECT_DEVICE;
                        struct tsm_priv_device dev;
                        const char *c = cases[j];
                        Fixture *f;

                        if (streq(c, "tsm-where-none-belongs") && with_tsm)
                                continue;
                        f = fixture();
                        tsm_priv_init(&dev, types[i], RAW_COOKIE, 0);
                        strcpy(dev.pci_address, DEV_A);
                        if (with_tsm)
                                strcpy(dev.tsm, "tsm0");
                        if (streq(c, "address-unterminated"))
                                memset(dev.pci_address, '0', sizeof(dev.pci_address));
                        else if (streq(c, "address-trailing"))
                                dev.pci_address[sizeof(dev.pci_address) - 1] = '1';
                        else if (streq(c, "tsm-unterminated"))
                                memset(dev.tsm, 'x', sizeof(dev.tsm));
                        else if (streq(c, "tsm-trailing"))
                                dev.tsm[sizeof(dev.tsm) - 1] = '1';
                        else
                                strcpy(dev.tsm, "tsm0");
                        ASSERT_EQ(expect_violation(f, &dev, tsm_priv_type_to_string(types[i])), -EBADMSG);
                        ASSERT_EQ(monitor_contexts_size(f->contexts), 0);
                        fixture_free(f);
                }
}

/* SECURITY: ADOPT_CONTEXT's fd is what a correct worker passes on (fd_may_be_iommufd(),
 * guest-context.c): a character device or a memfd, whose close reaches no file system. Any other kind is
 * the worker's doing, a violation, however right the message is: a pipe, a socket, a directory,
 * an anonymous inode, a file of a file system other than shmem (procfs here; FUSE in
 * a_fuse_fd_to_adopt_waits_on_no_server), an O_PATH fd of a memfd (no seals to read). */
TEST(violation_adopt_fd_kind) {
        static const char *const cases[] = { "pipe", "socket", "directory", "eventfd", "procfs", "o-path-memfd" };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct tsm_priv_new_context m = new_context_msg(TSM_PRIV_ADOPT_CONTEXT, SLOT, 1000, ID_C);
                Fixture *f = fixture();
                const char *c = cases[i];
                int fd, p[2];

                if (streq(c, "pipe")) {
                        ASSERT_OK(pipe2(p, O_CLOEXEC));
                        close(p[1]);
                        fd = p[0];
                } else if (streq(c, "socket"))
                        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                else if (streq(c, "directory"))
                        fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                else if (streq(c, "eventfd"))
                        fd = eventfd(0, EFD_CLOEXEC);
                else if (streq(c, "procfs"))
                        fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
                else {
                        char path[64];
                        int memfd = memfd_create("test-o-path", MFD_CLOEXEC);

                        ASSERT_OK(memfd);
                        snprintf(path, sizeof(path), "/proc/self/fd/%i", memfd);
                        fd = open(path, O_PATH | O_CLOEXEC);
                        close(memfd);
                }
                ASSERT_OK(fd);
                ASSERT_ERRNO(expect_violation_full(f, &m, sizeof(m), fd, "ADOPT_CONTEXT"), EBADF);
                ASSERT_EQ(monitor_contexts_size(f->contexts), 0);
                close(fd);
                fixture_free(f);
        }
}

/* Sends an OPEN_CONTEXT or ADOPT_CONTEXT that must be refused, with an fd for ADOPT. */
static void new_context_violation(uint32_t type, uint32_t slot, uint32_t uid, const char *reclaim_id,
                                  size_t reclaim_id_len) {
        Fixture *f = fixture();
        struct tsm_priv_new_context m = new_context_msg(type, slot, uid, ID_A);
        int fd;

        memset(m.reclaim_id, 0, sizeof(m.reclaim_id));
        memcpy(m.reclaim_id, reclaim_id, reclaim_id_len);
        /* A context under ID_B, whose fd is a valid one to adopt. */
        open_context(f, SLOT, ID_B, &fd);
        expect_violation_full(f, &m, sizeof(m), type == TSM_PRIV_ADOPT_CONTEXT ? fd : -EBADF,
                              tsm_priv_type_to_string(type));
        ASSERT_EQ(monitor_contexts_size(f->contexts), 1);
        safe_close(fd);
        fixture_free(f);
}

/* LAST_GOOD: the files to start from come after the sockets, as the monitor's own fd (it keeps
 * it), saying whether they are older than the disk's; only ever from the monitor. */
TEST(last_good_follows_the_sockets) {
        MonitorListenSocket sockets[] = { { -EBADF, TSM_PRIV_SOCKET_ALL } };
        Fixture *f = fixture();
        struct tsm_priv_listen_socket ls;
        struct tsm_priv_last_good lg;
        struct tsm_priv_hello hello;
        const void *payload = NULL;
        struct stat a, b;
        int memfd, fd, sv[2];

        memfd = memfd_create("test-last-good", MFD_CLOEXEC);
        ASSERT_GE(memfd, 0);
        sockets[0].fd = f->listen_fd;
        worker_stop(f);
        monitor_dispatch_set_last_good(f->dispatch, memfd, true, "tsmd.conf:5: unknown\nkey");
        ASSERT_OK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv));
        f->monitor = sv[0];
        f->worker = sv[1];
        /* As the monitor makes them (monitor.c): room for the late answers kept for a worker. */
        for (unsigned i = 0; i < 2; i++) {
                int size = (int) TSM_PRIV_DATAGRAM_MAX * 4;

                ASSERT_OK(setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)));
                ASSERT_OK(setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)));
        }
        ASSERT_OK(monitor_dispatch_start(f->dispatch, f->monitor, sockets, ELEMENTSOF(sockets)));
        receive(f, TSM_PRIV_HELLO, &hello, sizeof(hello), NULL, NULL);
        ASSERT_EQ(hello.last_good, 1u);
        receive(f, TSM_PRIV_LISTEN_SOCKET, &ls, sizeof(ls), NULL, &fd);
        safe_close(fd);
        receive(f, TSM_PRIV_LAST_GOOD, &lg, sizeof(lg), &payload, &fd);
        ASSERT_EQ(lg.stale, 1u);
        ASSERT_EQ(lg.__reserved, 0u);
        /* Why the disk's did not load, as a reason text: no control characters. */
        ASSERT_EQ(lg.hdr.payload_len, sizeof("tsmd.conf:5: unknown?key"));
        ASSERT_TRUE(memcmp(payload, "tsmd.conf:5: unknown?key", lg.hdr.payload_len) == 0);
        ASSERT_GE(fd, 0);
        ASSERT_OK(fstat(fd, &a));
        ASSERT_OK(fstat(memfd, &b)); /* still the monitor's */
        ASSERT_EQ(a.st_ino, b.st_ino);
        safe_close(fd);
        nothing_waiting(f);

        /* From a worker, it is a violation. */
        tsm_priv_init(&lg, TSM_PRIV_LAST_GOOD, 0, 0);
        ASSERT_TRUE(expect_violation_full(f, &lg, sizeof(lg), memfd, "LAST_GOOD") < 0);

        /* None set: HELLO says none comes, and none does. */
        worker_stop(f);
        monitor_dispatch_set_last_good(f->dispatch, -EBADF, true, "why");
        safe_close(memfd);
        ASSERT_EQ(worker_start(f, NULL, 0), 0);
        ASSERT_EQ(f->hello.last_good, 0u);
        fixture_free(f);
}

/* The settings read at start go with every HELLO, whole, as its payload; none set, none does. */
TEST(hello_carries_the_settings_read_at_start) {
        static const char settings[] = "[Audit]\nDirectory=/var/log/tsmd\n";
        _cleanup_free_ char *longest = NULL;
        Fixture *f = fixture();
        struct tsm_priv_hello hello;
        const void *payload = NULL;

        ASSERT_EQ(f->hello.hdr.payload_len, 0u);
        worker_stop(f);
        ASSERT_OK(monitor_dispatch_set_start_settings(f->dispatch, settings));
        /* worker_start() takes HELLO without a payload: the start by hand up to the HELLO. */
        {
                MonitorListenSocket sockets[] = { { f->listen_fd, TSM_PRIV_SOCKET_GUEST } };
                int sv[2];

                ASSERT_OK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv));
                f->monitor = sv[0];
                f->worker = sv[1];
                ASSERT_OK(monitor_dispatch_start(f->dispatch, f->monitor, sockets, ELEMENTSOF(sockets)));
        }
        receive(f, TSM_PRIV_HELLO, &hello, sizeof(hello), &payload, NULL);
        ASSERT_EQ(hello.hdr.payload_len, sizeof(settings));
        ASSERT_TRUE(memcmp(payload, settings, sizeof(settings)) == 0);

        /* Too long for a payload: refused when set, the last set stays. */
        ASSERT_NOT_NULL(longest = malloc(TSM_PRIV_PAYLOAD_MAX + 1));
        memset(longest, 'x', TSM_PRIV_PAYLOAD_MAX);
        longest[TSM_PRIV_PAYLOAD_MAX] = 0;
        ASSERT_ERRNO(monitor_dispatch_set_start_settings(f->dispatch, longest), E2BIG);
        longest[TSM_PRIV_PAYLOAD_MAX - 1] = 0;
        ASSERT_OK(monitor_dispatch_set_start_settings(f->dispatch, longest));
        ASSERT_OK(monitor_dispatch_set_start_settings(f->dispatch, NULL));
        fixture_free(f);
}

TEST(violation_new_context) {
        static const uint32_t types[] = { TSM_PRIV_OPEN_CONTEXT, TSM_PRIV_ADOPT_CONTEXT };

        for (size_t i = 0; i < ELEMENTSOF(types); i++) {
                /* Slot 0 is the worker's own. */
                new_context_violation(types[i], TSM_PRIV_SLOT_WORKER, 1000, ID_A, 32);
                new_context_violation(types[i], SLOT, UINT32_MAX, ID_A, 32);
                /* Reclaim ids: exactly 32 lowercase hex digits, NUL-terminated, zero after. */
                new_context_violation(types[i], SLOT, 1000, "0123456789ABCDEF0123456789abcdef", 32);
                new_context_violation(types[i], SLOT, 1000, ID_A, 31);
                new_context_violation(types[i], SLOT, 1000, ID_A "0", 33);
                new_context_violation(types[i], SLOT, 1000, "0123456789abcdef0123456789abcdeg", 32);
                new_context_violation(types[i], SLOT, 1000, "", 0);
                new_context_violation(types[i], SLOT, 1000, ID_A "\0x", 34);
                new_context_violation(types[i], SLOT, 1000, ID_A "0123456789", TSM_PRIV_RECLAIM_ID_MAX);
                /* A reclaim id already in use. */
                new_context_violation(types[i], SLOT, 1000, ID_B, 32);
        }
}

/* What a worker may name: contexts and vDevices of the slot it says, as the monitor has them. */
TEST(violation_out_of_state) {
        static const char *const cases[] = {
                "other-slot", "unknown-context", "context-0", "vdevice-not-attached", "reclaim-held",
                "reclaim-to-0", "reclaim-unknown", "reclaim-bad-id", "reclaim-id-taken",
                "close-other-slot", "attach-id-0", "attach-other-address",
                "attach-again",
                "attach-address-string", "attach-state", "attach-bound", "vdevice-reserved", "unknown-scope", "scope-string",
                "scope-junk", "over-max-request", "second-ready", "status-audit", "status-draining",
                "device-tsm", "device-string", "detach-other-slot", "bind-detached", "request-orphan-slot",
                "settle-other-slot", "settle-not-attached", "backend-unknown",
                "request-reserved",
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Fixture *f = fixture();
                const char *c = cases[i];
                uint8_t req[TSM_PRIV_PAYLOAD_MAX];
                uint32_t a, b;

                a = open_context(f, SLOT, ID_A, NULL);
                b = open_context(f, OTHER_SLOT, ID_B, NULL);
                ASSERT_OK(attach(f, SLOT, a, 1, DEV_A, NULL));
                memset(req, 0, sizeof(req));

                if (streq(c, "other-slot")) {
                        struct tsm_priv_vdevice m = vdevice_msg(TSM_PRIV_BIND_VDEVICE, OTHER_SLOT, a, 1);
                        ASSERT_EQ(expect_violation(f, &m, "BIND_VDEVICE"), -EPERM);
                        ASSERT_EQ(emu_device_get_state(device(f, DEV_A)), TDISP_STATE_CONFIG_UNLOCKED);
                } else if (streq(c, "unknown-context")) {
                        struct tsm_priv_vdevice m = vdevice_msg(TSM_PRIV_GET_VDEVICE_STATE, SLOT, 99, 1);
                        expect_violation(f, &m, "GET_VDEVICE_STATE");
                } else if (streq(c, "settle-other-slot")) {
                        struct tsm_priv_vdevice m = vdevice_msg(TSM_PRIV_SETTLE_VDEVICE, OTHER_SLOT, a, 1);
                        ASSERT_EQ(expect_violation(f, &m, "SETTLE_VDEVICE"), -EPERM);
                } else if (streq(c, "settle-not-attached")) {
                        struct tsm_priv_vdevice m = vdevice_msg(TSM_PRIV_SETTLE_VDEVICE, SLOT, a, 2);
                        expect_violation(f, &m, "SETTLE_VDEVICE");
                } else if (streq(c, "context-0")) {
                        struct tsm_priv_attach_vdevice m = attach_msg(SLOT, 0, 2, DEV_B);
                        expect_violation(f, &m, "ATTACH_VDEVICE");
                } else if (streq(c, "vdevice-not-attached")) {
                        struct tsm_priv_vdevice m = vdevice_msg(TSM_PRIV_GET_VDEVICE_STATE, SLOT, a, 2);
                        expect_violation(f, &m, "GET_VDEVICE_STATE");
                } else if (streq(c, "reclaim-held")) {
                        struct tsm_priv_reclaim_context m = reclaim_msg(9, b);
                        expect_violation(f, &m, "RECLAIM_CONTEXT");
                } else if (streq(c, "reclaim-to-0")) {
                        struct tsm_priv_reclaim_context m =
                                reclaim_msg(TSM_PRIV_SLOT_WORKER, a);
                        monitor_contexts_orphan_all(f->contexts);
                        expect_violation(f, &m, "RECLAIM_CONTEXT");
                } else if (streq(c, "reclaim-bad-id")) {
                        struct tsm_priv_reclaim_context m = reclaim_msg_id_of(9, a, "0123456789ABCDEF0123456789ABCDEF");
                        monitor_contexts_orphan_all(f->contexts);
                        expect_violation(f, &m, "RECLAIM_CONTEXT");
                        ASSERT_STREQ(monitor_contexts_get(f->contexts, a)->reclaim_id, ID_A);
                } else if (streq(c, "reclaim-id-taken")) {
                        struct tsm_priv_reclaim_context m = reclaim_msg_id_of(9, a, ID_B);
                        monitor_contexts_orphan_all(f->contexts);
                        ASSERT_EQ(expect_violation(f, &m, "RECLAIM_CONTEXT"), -EPERM);
                        ASSERT_STREQ(monitor_contexts_get(f->contexts, a)->reclaim_id, ID_A);
                } else if (streq(c, "reclaim-unknown")) {
                        struct tsm_priv_reclaim_context m = reclaim_msg(9, 99);
                        expect_violation(f, &m, "RECLAIM_CONTEXT");
                } else if (streq(c, "close-other-slot")) {
                        struct tsm_priv_context m = context_msg(TSM_PRIV_CLOSE_CONTEXT, SLOT, b);
                        expect_violation(f, &m, "CLOSE_CONTEXT");
                        ASSERT_NOT_NULL(monitor_contexts_get(f->contexts, b));
                } else if (streq(c, "attach-id-0")) {
                        struct tsm_priv_attach_vdevice m = attach_msg(SLOT, a, 0, DEV_B);
                        expect_violation(f, &m, "ATTACH_VDEVICE");
                } else if (streq(c, "attach-other-address")) {
                        struct tsm_priv_attach_vdevice m = attach_msg(SLOT, a, 1, DEV_B);
                        expect_violation(f, &m, "ATTACH_VDEVICE");
                } else if (streq(c, "attach-again")) {
                        struct tsm_priv_attach_vdevice m = attach_msg(SLOT, a, 1, DEV_A);
                        expect_violation(f, &m, "ATTACH_VDEVICE");
                } else if (streq(c, "attach-address-string")) {
                        struct tsm_priv_attach_vdevice m = attach_msg(SLOT, a, 2, DEV_B);
                        memset(m.pci_address, 'a', sizeof(m.pci_address));
                        expect_violation(f, &m, "ATTACH_VDEVICE");
                } else if (streq(c, "attach-state")) {
                        struct tsm_priv_attach_vdevice m = attach_msg(SLOT, a, 2, DEV_B);
                        m.state = TSM_PRIV_VDEVICE_CHANGING;
                        expect_violation(f, &m, "ATTACH_VDEVICE");
                } else if (streq(c, "attach-bound")) {
                        /* Only a restore brings back a bound vDevice. */
                        struct tsm_priv_attach_vdevice m = attach_msg(SLOT, a, 2, DEV_B);
                        m.state = TSM_PRIV_VDEVICE_BOUND;
                        ASSERT_EQ(expect_violation(f, &m, "ATTACH_VDEVICE"), -EPERM);
                        ASSERT_NULL(monitor_contexts_find_device(f->contexts, DEV_B, NULL));
                } else if (streq(c, "vdevice-reserved")) {
                        struct tsm_priv_vdevice m = vdevice_msg(TSM_PRIV_UNBIND_VDEVICE, SLOT, a, 1);
                        m.__reserved = 0x100;
                        expect_violation(f, &m, "UNBIND_VDEVICE");
                } else if (streq(c, "unknown-scope")) {
                        struct tsm_priv_guest_request m = guest_request_msg(f, SLOT, a, 1, "bogus", 4);
                        ASSERT_OK(tsm_priv_send(f->worker, &m, req, 4, -EBADF));
                        {
                                const char *reason = NULL;
                                ASSERT_EQ(monitor_dispatch_process(f->dispatch, &reason), -EPERM);
                                ASSERT_NOT_NULL(reason);
                        }
                } else if (streq(c, "backend-unknown")) {
                        struct tsm_priv_guest_request m = guest_request_msg(f, SLOT, a, 1, TSM_SCOPE_INFO, 4);
                        m.backend = _TSM_BACKEND_TYPE_MAX;
                        ASSERT_OK(tsm_priv_send(f->worker, &m, req, 4, -EBADF));
                        {
                                const char *reason = NULL;
                                ASSERT_EQ(monitor_dispatch_process(f->dispatch, &reason), -EBADMSG);
                                ASSERT_STREQ(reason, "backend not a known type");
                        }
                } else if (streq(c, "request-reserved")) {
                        struct tsm_priv_guest_request m = guest_request_msg(f, SLOT, a, 1, TSM_SCOPE_INFO, 4);
                        m.__reserved = 1;
                        ASSERT_OK(tsm_priv_send(f->worker, &m, req, 4, -EBADF));
                        {
                                const char *reason = NULL;
                                ASSERT_EQ(monitor_dispatch_process(f->dispatch, &reason), -EBADMSG);
                                ASSERT_STREQ(reason, "reserved field not zero");
                        }
                } else if (streq(c, "scope-string") || streq(c, "scope-junk")) {
                        struct tsm_priv_guest_request m = guest_request_msg(f, SLOT, a, 1, TSM_SCOPE_INFO, 4);
                        const char *reason = NULL;
                        if (streq(c, "scope-string"))
                                memset(m.scope, 'i', sizeof(m.scope));
                        else
                                m.scope[sizeof(m.scope) - 1] = 'x';
                        ASSERT_OK(tsm_priv_send(f->worker, &m, req, 4, -EBADF));
                        ASSERT_EQ(monitor_dispatch_process(f->dispatch, &reason), -EBADMSG);
                        ASSERT_NOT_NULL(reason);
                } else if (streq(c, "over-max-request")) {
                        const TsmScopeDesc *s = tsm_backend_find_scope(tsm_backend_desc(TSM_BACKEND_EMULATED),
                                                                       TSM_SCOPE_INFO);
                        struct tsm_priv_guest_request m =
                                guest_request_msg(f, SLOT, a, 1, TSM_SCOPE_INFO, s->max_request + 1);
                        const char *reason = NULL;
                        Reply rep;

                        /* Exactly the limit is fine (the device judges the bytes). */
                        (void) guest_request(f, SLOT, a, 1, TSM_SCOPE_INFO, req, s->max_request, &rep);
                        ASSERT_OK(tsm_priv_send(f->worker, &m, req, s->max_request + 1, -EBADF));
                        ASSERT_EQ(monitor_dispatch_process(f->dispatch, &reason), -EMSGSIZE);
                        ASSERT_NOT_NULL(reason);
                } else if (streq(c, "second-ready")) {
                        struct tsm_priv_ready m;
                        tsm_priv_init(&m, TSM_PRIV_READY, 0, 0);
                        ASSERT_OK(tsm_priv_send(f->worker, &m, NULL, 0, -EBADF));
                        process_ok(f);
                        expect_violation(f, &m, "READY");
                        ASSERT_EQ(f->n_ready, 1);
                } else if (streq(c, "status-audit") || streq(c, "status-draining")) {
                        struct tsm_priv_status m;
                        tsm_priv_init(&m, TSM_PRIV_STATUS, 0, 0);
                        if (streq(c, "status-audit"))
                                m.audit = _TSM_PRIV_AUDIT_MAX;
                        else
                                m.draining = 2;
                        expect_violation(f, &m, "STATUS");
                        ASSERT_EQ(f->n_status, 0);
                } else if (streq(c, "device-tsm")) {
                        struct tsm_priv_device m;
                        tsm_priv_init(&m, TSM_PRIV_GET_DEVICE_STATE, 0, 0);
                        strcpy(m.pci_address, DEV_A);
                        strcpy(m.tsm, "emu0");
                        expect_violation(f, &m, "GET_DEVICE_STATE");
                        tsm_priv_init(&m, TSM_PRIV_DISCONNECT_DEVICE, 0, 0);
                        strcpy(m.pci_address, DEV_A);
                        m.tsm[5] = 1;
                        expect_violation(f, &m, "DISCONNECT_DEVICE");
                } else if (streq(c, "device-string")) {
                        struct tsm_priv_device m;
                        tsm_priv_init(&m, TSM_PRIV_CONNECT_DEVICE, 0, 0);
                        strcpy(m.pci_address, DEV_A);
                        memset(m.tsm, 't', sizeof(m.tsm));
                        expect_violation(f, &m, "CONNECT_DEVICE");
                        tsm_priv_init(&m, TSM_PRIV_CONNECT_DEVICE, 0, 0);
                        memset(m.pci_address, '0', sizeof(m.pci_address));
                        strcpy(m.tsm, "tsm0");
                        expect_violation(f, &m, "CONNECT_DEVICE");
                } else if (streq(c, "detach-other-slot")) {
                        struct tsm_priv_vdevice m = vdevice_msg(TSM_PRIV_DETACH_VDEVICE, OTHER_SLOT, b, 1);
                        expect_violation(f, &m, "DETACH_VDEVICE");
                        ASSERT_NOT_NULL(monitor_context_find_vdevice(monitor_contexts_get(f->contexts, a), 1));
                } else if (streq(c, "bind-detached")) {
                        struct tsm_priv_vdevice m = vdevice_msg(TSM_PRIV_BIND_VDEVICE, SLOT, a, 1);
                        ASSERT_OK(vdevice_op(f, TSM_PRIV_DETACH_VDEVICE, SLOT, a, 1, NULL));
                        expect_violation(f, &m, "BIND_VDEVICE");
                } else if (streq(c, "request-orphan-slot")) {
                        /* An orphan's vDevice, named by the slot that held it before the restart. */
                        struct tsm_priv_guest_request m = guest_request_msg(f, SLOT, a, 1, TSM_SCOPE_INFO, 4);
                        const char *reason = NULL;
                        monitor_contexts_orphan_all(f->contexts);
                        ASSERT_OK(tsm_priv_send(f->worker, &m, req, 4, -EBADF));
                        ASSERT_EQ(monitor_dispatch_process(f->dispatch, &reason), -EPERM);
                        ASSERT_NOT_NULL(reason);
                } else
                        TEST_FAIL("unknown case %s", c);

                ASSERT_EQ(monitor_dispatch_n_requests(f->dispatch), 0);
                fixture_free(f);
        }
}

static struct tsm_priv_restored_previous restored_previous_msg(uint32_t context, const char *reclaim_id) {
        struct tsm_priv_restored_previous m;

        tsm_priv_init(&m, TSM_PRIV_RESTORED_PREVIOUS, 0, 0);
        m.context = context;
        m.__reserved = 0;
        memset(m.previous_reclaim_id, 0, sizeof(m.previous_reclaim_id));
        strcpy(m.previous_reclaim_id, reclaim_id);
        return m;
}

/*
 * SECURITY: a context's previous reclaim id (the token a reclaim renewed, valid while the new one
 * may not have reached the VMM) is the monitor's: a reclaim sets it to the id it was made with,
 * which must be the context's or its previous one, and a new worker hears it (RESTORED_CONTEXT).
 * The state file's word counts for a context the fd store handed back only (RESTORED_PREVIOUS),
 * before READY: a worker cannot make up a token valid for the workers after it.
 */
TEST(the_previous_reclaim_id_is_the_monitors) {
        Fixture *f = fixture();
        struct tsm_priv_restored_context restored[4];
        struct tsm_priv_restored_previous prev;
        struct tsm_priv_reclaim_context m;
        struct tsm_priv_ready ready;
        char renamed[TSM_PRIV_RECLAIM_ID_MAX];
        Reply rep;
        uint32_t a, b;
        int p[2];

        a = open_context(f, SLOT, ID_A, NULL);
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        ASSERT_OK(monitor_contexts_restore(f->contexts, p[1], "ctxid.1000." ID_B, &b));
        close(p[0]);
        monitor_contexts_get(f->contexts, b)->stored = false; /* no service manager here to rename it in */
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 2);
        ASSERT_STREQ(restored[0].previous_reclaim_id, "");
        ASSERT_STREQ(restored[1].previous_reclaim_id, "");
        ASSERT_EQ(restored[1].partial, 1u);

        /* The partial one's state file names one: the monitor keeps it. Not a malformed one. */
        prev = restored_previous_msg(b, "0011");
        expect_violation(f, &prev, "RESTORED_PREVIOUS");
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 2);
        prev = restored_previous_msg(b, ID_C);
        ASSERT_OK(tsm_priv_send(f->worker, &prev, NULL, 0, -EBADF));
        process_ok(f);
        tsm_priv_init(&ready, TSM_PRIV_READY, 0, 0);
        ASSERT_OK(tsm_priv_send(f->worker, &ready, NULL, 0, -EBADF));
        process_ok(f);

        /* After READY, or for a context the monitor knows whole, it is a violation. */
        prev = restored_previous_msg(b, ID_D);
        expect_violation(f, &prev, "RESTORED_PREVIOUS");
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 2);
        ASSERT_STREQ(restored[1].previous_reclaim_id, ID_C);
        ASSERT_EQ(restored[1].partial, 0u);
        prev = restored_previous_msg(a, ID_D);
        expect_violation(f, &prev, "RESTORED_PREVIOUS");
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 2);

        /* A reclaim made with an id the context does not have is a violation. */
        m = reclaim_msg(42, b);
        strcpy(m.previous_reclaim_id, ID_A);
        expect_violation(f, &m, "RECLAIM_CONTEXT");
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 2);

        /* Made with the previous one: that stays the previous one, under the new name. */
        m = reclaim_msg(42, b);
        strcpy(m.previous_reclaim_id, ID_C);
        ASSERT_OK(call(f, &m, &rep));
        close(rep.fd);
        memcpy(renamed, reclaim_msg_id, sizeof(renamed));
        ASSERT_STREQ(monitor_contexts_get(f->contexts, b)->reclaim_id, renamed);
        ASSERT_STREQ(monitor_contexts_get(f->contexts, b)->previous_reclaim_id, ID_C);

        /* Made with its own ("" says so too): that one is the previous one from then on. */
        worker_stop(f);
        ASSERT_EQ(worker_start(f, restored, ELEMENTSOF(restored)), 2);
        ASSERT_STREQ(restored[1].reclaim_id, renamed);
        ASSERT_STREQ(restored[1].previous_reclaim_id, ID_C);
        m = reclaim_msg(42, b);
        ASSERT_OK(call(f, &m, &rep));
        close(rep.fd);
        ASSERT_STREQ(monitor_contexts_get(f->contexts, b)->previous_reclaim_id, renamed);
        fixture_free(f);
}

TEST_MAIN();
