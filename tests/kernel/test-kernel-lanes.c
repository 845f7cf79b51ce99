/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Kernel TSM calls on per-device lanes (daemon/kernel-lanes.h), against a fake kernel in the
 * transport's syscall seam whose ioctl can be held inside "the kernel" like a device whose
 * firmware takes its time: the loop and the other devices go on meanwhile, one device's calls
 * (requests, binds and unbinds) keep their order, an abandoned call never calls back (and never reaches the kernel if it had
 * not started), an abandoned bind the kernel did after all is unbound again ahead of whatever
 * came after it, late answers are logged at a bounded rate, the VMM may close its iommufd while
 * the call runs, a kept answer given up on before delivery is reported late at once, freeing
 * waits for a call in the kernel, a sysfs write (connect) opens and
 * writes its file on the lane, and no thread, fd or allocation is left behind. Runs in: tests.
 */

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "iommufd-transport.h"
#include "iommufd-uapi.h"
#include "kernel-lanes.h"
#include "log-capture.h"

#define DEV_A "0000:01:00.0"
#define DEV_B "0000:02:00.0"
#define VDEV_SLOW 7 /* the fake kernel holds calls for this vDevice (and VDEV_REFUSED) until released */
#define VDEV_SILENT 9 /* its requests succeed without a byte written (a TSM that writes less) */
#define VDEV_REFUSED 11 /* its binds fail */
#define VDEV_MAX 16
#define LINGER_USEC 20000ULL
#define ORDER_MAX 64

/* The fake kernel. Its ioctl runs on lane threads, hence the lock. */
static struct {
        pthread_mutex_t lock;
        pthread_cond_t changed;
        bool hold_slow;       /* VDEV_SLOW's and VDEV_REFUSED's calls wait in the kernel while set */
        unsigned n_inside;    /* calls in the kernel now */
        unsigned n_calls;
        uint32_t order[ORDER_MAX]; /* first request byte of each call, in kernel order */
        int original_fd;      /* the VMM's fd: the kernel must be given a duplicate */
        bool fd_was_valid;
        bool bound[VDEV_MAX]; /* what the kernel's binds and unbinds left */
} fake = { .lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER };

/* In the kernel's order of calls: a bind or unbind is ORDER_OP | its v5 type. */
#define ORDER_OP 0x100u

/* v5 IOMMU_VDEVICE_TSM_REQ answers the request bytes reversed, and the residue; v5
 * IOMMU_VDEVICE_TSM_OP (bind, unbind) succeeds, but for a bind of VDEV_REFUSED. */
static int fake_ioctl(void *userdata, int fd, unsigned long request, void *arg) {
        struct tsmd_iommu_vdevice_tsm_req_v5 cmd = {};
        const uint8_t *req = NULL;
        uint8_t *resp = NULL;
        uint32_t vdevice, req_len = 0, resp_len = 0, order;
        size_t n = 0;

        if (request == TSMD_IOMMU_VDEVICE_TSM_OP_V5) {
                struct tsmd_iommu_vdevice_tsm_op_v5 op;

                memcpy(&op, arg, sizeof(op));
                ASSERT_TRUE(op.type == TSMD_IOMMU_VDEVICE_TSM_BIND_V5 || op.type == TSMD_IOMMU_VDEVICE_TSM_UNBIND_V5);
                vdevice = op.vdevice_id;
                order = ORDER_OP | op.type;
        } else {
                ASSERT_EQ(request, TSMD_IOMMU_VDEVICE_TSM_REQ_V5);
                memcpy(&cmd, arg, sizeof(cmd));
                vdevice = cmd.vdevice_id;
                req_len = cmd.req_len;
                resp_len = cmd.resp_len;
                req = (const uint8_t *) (uintptr_t) cmd.req_uptr;
                resp = (uint8_t *) (uintptr_t) cmd.resp_uptr;
                n = MIN(req_len, resp_len);
                order = req_len > 0 ? req[0] : 0;
        }

        pthread_mutex_lock(&fake.lock);
        fake.fd_was_valid = fd != fake.original_fd && fcntl(fd, F_GETFD) >= 0;
        if (fake.n_calls < ORDER_MAX)
                fake.order[fake.n_calls] = order;
        fake.n_calls++;
        fake.n_inside++;
        pthread_cond_broadcast(&fake.changed);
        while ((vdevice == VDEV_SLOW || vdevice == VDEV_REFUSED) && fake.hold_slow)
                pthread_cond_wait(&fake.changed, &fake.lock);
        fake.n_inside--;
        pthread_cond_broadcast(&fake.changed);
        pthread_mutex_unlock(&fake.lock);

        if (order == (ORDER_OP | TSMD_IOMMU_VDEVICE_TSM_BIND_V5) && vdevice == VDEV_REFUSED)
                return -EBUSY;
        if (order & ORDER_OP) {
                ASSERT_TRUE(vdevice < VDEV_MAX);
                pthread_mutex_lock(&fake.lock);
                fake.bound[vdevice] = order == (ORDER_OP | TSMD_IOMMU_VDEVICE_TSM_BIND_V5);
                pthread_mutex_unlock(&fake.lock);
        }
        if (vdevice == VDEV_SILENT && request == TSMD_IOMMU_VDEVICE_TSM_REQ_V5)
                return 0;
        for (size_t i = 0; i < n; i++)
                resp[i] = req[req_len - 1 - i];
        return (int) (resp_len - n);
}

static int fake_open(void *userdata, const char *path, int flags) {
        return -ENOENT;
}

static int fake_close(void *userdata, int fd) {
        return 0;
}

static const IommufdSyscalls fake_syscalls = { fake_open, fake_ioctl, fake_close, NULL };

static void fake_set_hold(bool hold) {
        pthread_mutex_lock(&fake.lock);
        fake.hold_slow = hold;
        pthread_cond_broadcast(&fake.changed);
        pthread_mutex_unlock(&fake.lock);
}

static void fake_wait_inside(unsigned n) {
        pthread_mutex_lock(&fake.lock);
        while (fake.n_inside != n)
                pthread_cond_wait(&fake.changed, &fake.lock);
        pthread_mutex_unlock(&fake.lock);
}

static unsigned fake_n_calls(void) {
        unsigned n;

        pthread_mutex_lock(&fake.lock);
        n = fake.n_calls;
        pthread_mutex_unlock(&fake.lock);
        return n;
}

static size_t count_entries(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        size_t n = 0;

        ASSERT_NOT_NULL(d);
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

typedef struct Done {
        unsigned n;
        int result;
        uint8_t response[16];
        size_t response_len;
        uint8_t first_byte[ORDER_MAX]; /* of each completed call's response, in callback order */
} Done;

static void on_done(KernelCall *c, int result, void *userdata) {
        Done *d = userdata;
        _cleanup_free_ uint8_t *resp = NULL;
        size_t len;

        resp = kernel_call_take_response(c, &len);
        ASSERT_NOT_NULL(resp);
        ASSERT_LE(len, sizeof(d->response));
        memcpy(d->response, resp, len);
        d->response_len = len;
        d->result = result;
        if (d->n < ORDER_MAX)
                d->first_byte[d->n] = len > 0 ? resp[0] : 0;
        d->n++;
}

typedef struct Lanes {
        struct event_base *base;
        KernelLanes *lanes;
        int iommufd; /* stands for the VMM's iommufd */
        size_t fds_before, threads_before;
} Lanes;

static void lanes_setup(Lanes *t) {
        memset(&fake.order, 0, sizeof(fake.order));
        memset(&fake.bound, 0, sizeof(fake.bound));
        fake.n_calls = 0;
        fake.hold_slow = false;
        iommufd_set_syscalls(&fake_syscalls);

        t->fds_before = count_entries("/proc/self/fd");
        t->threads_before = count_entries("/proc/self/task");
        ASSERT_NOT_NULL(t->base = event_base_new());
        ASSERT_OK(kernel_lanes_new(t->base, LINGER_USEC, &t->lanes));
        ASSERT_OK(t->iommufd = open("/dev/null", O_RDWR | O_CLOEXEC));
        fake.original_fd = t->iommufd;
}

static void lanes_teardown(Lanes *t) {
        safe_close(t->iommufd);
        kernel_lanes_free(t->lanes);
        event_base_free(t->base);
        ASSERT_EQ(count_entries("/proc/self/fd"), t->fds_before);
        /* Detached threads are gone from /proc a moment after they signalled their end. */
        for (int i = 0; i < 1000 && count_entries("/proc/self/task") != t->threads_before; i++)
                usleep(1000);
        ASSERT_EQ(count_entries("/proc/self/task"), t->threads_before);
        iommufd_set_syscalls(NULL);
}

static KernelCall *submit_op(Lanes *t, const char *lane, KernelOp op, uint32_t vdevice, Done *d) {
        KernelCallArgs a = { .op = op, .iommufd = t->iommufd, .version = TSM_UAPI_V5, .vdevice_id = vdevice };
        KernelCall *c = NULL;

        ASSERT_OK(kernel_lanes_submit(t->lanes, lane, &a, on_done, d, &c));
        ASSERT_NOT_NULL(c);
        return c;
}

static KernelCall *submit(Lanes *t, const char *lane, uint32_t vdevice, const char *payload, Done *d) {
        KernelCallArgs a = {
                .op = KERNEL_OP_REQUEST,
                .iommufd = t->iommufd,
                .version = TSM_UAPI_V5,
                .vdevice_id = vdevice,
                .scope_number = 0,
                .request = payload,
                .request_len = strlen(payload),
                .response_size = 16,
        };
        KernelCall *c = NULL;

        ASSERT_OK(kernel_lanes_submit(t->lanes, lane, &a, on_done, d, &c));
        ASSERT_NOT_NULL(c);
        return c;
}

/* Runs the loop for about usec without waiting for anything in particular. */
static void run_for(Lanes *t, uint64_t usec) {
        struct timeval tv = { .tv_sec = 0, .tv_usec = (suseconds_t) usec };

        ASSERT_OK(event_base_loopexit(t->base, &tv));
        ASSERT_OK(event_base_dispatch(t->base));
}

/* Runs the loop until done->n reaches n; fails after 10 s. */
static void run_until(Lanes *t, Done *done, unsigned n) {
        for (unsigned ms = 0; done->n < n; ms += 10) {
                ASSERT_LE(ms, 10000u);
                run_for(t, 10000);
        }
}

/* Runs the loop until every lane's thread has ended, then once more: every answer is delivered. */
static void run_until_idle(Lanes *t) {
        for (unsigned ms = 0; kernel_lanes_n_threads(t->lanes) > 0; ms++) {
                ASSERT_LE(ms, 10000u);
                run_for(t, 1000);
        }
        run_for(t, 10000);
}

/* Waits, without running the loop, until every lane's thread has ended: their answers wait to
 * be delivered. */
static void wait_lanes_ended(Lanes *t) {
        for (unsigned ms = 0; kernel_lanes_n_threads(t->lanes) > 0; ms++) {
                ASSERT_LE(ms, 10000u);
                usleep(1000);
        }
}

/* n requests to DEV_B, one after the other, each answered (while DEV_A's lane is held). */
static void serve_other_device(Lanes *t, unsigned n) {
        Done d = {};

        for (unsigned i = 1; i <= n; i++) {
                submit(t, DEV_B, 1, "f", &d);
                run_until(t, &d, i);
                ASSERT_EQ(d.result, 0);
        }
}

TEST(request_answered_on_the_loop) {
        Lanes t;
        Done d = {};

        lanes_setup(&t);
        submit(&t, DEV_A, 1, "abc", &d);
        ASSERT_EQ(d.n, 0u); /* never from inside the submit */
        run_until(&t, &d, 1);
        ASSERT_EQ(d.result, 0);
        ASSERT_EQ(d.response_len, 3u);
        ASSERT_MEMEQ(d.response, "cba", 3);
        ASSERT_TRUE(fake.fd_was_valid);
        lanes_teardown(&t);
}

/* A TSM that claims the whole buffer but writes less hands back zeros, never what the monitor's
 * memory held before: that is often another VM's response of the same size. */
TEST(unwritten_response_bytes_are_zero) {
        Lanes t;
        Done d = {};

        lanes_setup(&t);
        submit(&t, DEV_A, 1, "SSSSSSSSSSSSSSSS", &d);
        run_until(&t, &d, 1);
        ASSERT_EQ(d.response_len, 16u);
        ASSERT_MEMEQ(d.response, "SSSSSSSSSSSSSSSS", 16);
        for (unsigned i = 0; i < 8; i++) {
                submit(&t, DEV_B, VDEV_SILENT, "?", &d);
                run_until(&t, &d, 2 + i);
                ASSERT_EQ(d.result, 0);
                ASSERT_EQ(d.response_len, 16u);
                for (size_t b = 0; b < d.response_len; b++)
                        ASSERT_EQ(d.response[b], 0);
        }
        lanes_teardown(&t);
}

TEST(slow_device_holds_only_its_own_lane) {
        Lanes t;
        Done slow = {};

        lanes_setup(&t);
        fake_set_hold(true);
        submit(&t, DEV_A, VDEV_SLOW, "s", &slow);
        fake_wait_inside(1);

        /* Another device's requests come and go while the first is in the kernel. */
        serve_other_device(&t, 5);
        ASSERT_EQ(slow.n, 0u);

        fake_set_hold(false);
        run_until(&t, &slow, 1);
        ASSERT_EQ(slow.result, 0);
        ASSERT_MEMEQ(slow.response, "s", 1);
        lanes_teardown(&t);
}

TEST(one_device_keeps_its_order) {
        Lanes t;
        Done d = {};
        char p[2] = {};

        lanes_setup(&t);
        fake_set_hold(true);
        submit(&t, DEV_A, VDEV_SLOW, "A", &d);
        fake_wait_inside(1);
        /* Queued behind the held call on the same lane: none may overtake it. */
        for (char ch = 'B'; ch <= 'H'; ch++) {
                p[0] = ch;
                submit(&t, DEV_A, 1, p, &d);
        }
        run_for(&t, 50000);
        ASSERT_EQ(d.n, 0u);
        ASSERT_EQ(fake_n_calls(), 1u);

        fake_set_hold(false);
        run_until(&t, &d, 8);
        for (unsigned i = 0; i < 8; i++) {
                ASSERT_EQ(fake.order[i], (uint32_t) ('A' + i));
                ASSERT_EQ(d.first_byte[i], (uint8_t) ('A' + i));
        }
        lanes_teardown(&t);
}

/* A bind is an SPDM exchange like a request: it waits its turn on its device's lane, a request
 * after it finds the TDI locked, and a device that hangs in bind holds no other device. */
TEST(bind_and_unbind_take_their_turn_on_the_lane) {
        Lanes t;
        Done a = {};

        lanes_setup(&t);
        fake_set_hold(true);
        submit_op(&t, DEV_A, KERNEL_OP_BIND, VDEV_SLOW, &a);
        fake_wait_inside(1);
        submit(&t, DEV_A, VDEV_SLOW, "R", &a);
        submit_op(&t, DEV_A, KERNEL_OP_UNBIND, VDEV_SLOW, &a);

        serve_other_device(&t, 3);
        ASSERT_EQ(a.n, 0u);

        fake_set_hold(false);
        run_until(&t, &a, 3);
        ASSERT_EQ(a.result, 0);
        ASSERT_EQ(fake.order[0], ORDER_OP | TSMD_IOMMU_VDEVICE_TSM_BIND_V5);
        ASSERT_EQ(fake.order[1], (uint32_t) 'f');
        ASSERT_EQ(fake.order[4], (uint32_t) 'R');
        ASSERT_EQ(fake.order[5], ORDER_OP | TSMD_IOMMU_VDEVICE_TSM_UNBIND_V5);
        /* Answered in the same order: the bind (no response), the request, the unbind. */
        ASSERT_EQ(a.first_byte[0], 0);
        ASSERT_EQ(a.first_byte[1], (uint8_t) 'R');
        ASSERT_EQ(a.first_byte[2], 0);
        lanes_teardown(&t);
}

TEST(refuses_an_unknown_op) {
        Lanes t;
        Done d = {};
        KernelCallArgs a = { .op = _KERNEL_OP_MAX, .iommufd = 0, .version = TSM_UAPI_V5, .vdevice_id = 1 };
        KernelCall *c = NULL;

        lanes_setup(&t);
        a.iommufd = t.iommufd;
        ASSERT_ERRNO(kernel_lanes_submit(t.lanes, DEV_A, &a, on_done, &d, &c), EINVAL);
        ASSERT_NULL(c);
        lanes_teardown(&t);
}

static KernelCall *submit_write(Lanes *t, const char *lane, const char *path, const char *value, Done *d) {
        KernelCallArgs a = { .op = KERNEL_OP_WRITE, .iommufd = -EBADF, .request = value,
                             .request_len = strlen(value), .path = path };
        KernelCall *c = NULL;

        ASSERT_OK(kernel_lanes_submit(t->lanes, lane, &a, on_done, d, &c));
        ASSERT_NOT_NULL(c);
        return c;
}

/* A PCI TSM sysfs write (tsm/connect: the kernel connects inside it) runs on its device's lane,
 * opening included: a FIFO's open waits for a reader there, while another device's calls are
 * answered. The file is opened without following a link, and the errors are the open's or the
 * write's. */
TEST(writes_a_file_on_its_lane) {
        char dir[] = "/tmp/tsmd-lanes-XXXXXX", path[64], fifo[64], link[64], none[64], buf[16] = "";
        _cleanup_close_ int rd = -EBADF;
        KernelCallArgs bad = { .op = KERNEL_OP_WRITE, .iommufd = -EBADF, .request = "x", .request_len = 1 };
        Done w = {}, d = {};
        KernelCall *c = NULL;
        Lanes t;

        lanes_setup(&t);
        ASSERT_NOT_NULL(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/connect", dir);
        snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
        snprintf(link, sizeof(link), "%s/link", dir);
        snprintf(none, sizeof(none), "%s/none/connect", dir);
        ASSERT_OK(mkfifo(fifo, 0600));
        ASSERT_OK(symlink(path, link));
        safe_close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)); /* the kernel's attribute */

        ASSERT_ERRNO(kernel_lanes_submit(t.lanes, DEV_A, &bad, on_done, &w, &c), EINVAL); /* no path */
        ASSERT_NULL(c);
        submit_write(&t, DEV_A, path, "tsm1", &w);
        run_until(&t, &w, 1);
        ASSERT_OK(w.result);
        {
                _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
                ASSERT_OK(fd);
                ASSERT_EQ(read(fd, buf, sizeof(buf) - 1), 4);
                ASSERT_STREQ(buf, "tsm1");
        }
        submit_write(&t, DEV_A, link, "tsm1", &w);
        run_until(&t, &w, 2);
        ASSERT_EQ(w.result, -ELOOP);
        submit_write(&t, DEV_A, none, "tsm1", &w);
        run_until(&t, &w, 3);
        ASSERT_EQ(w.result, -ENOENT);

        /* Its open waits for a reader; another device is served meanwhile. */
        submit_write(&t, DEV_A, fifo, "tsm1", &w);
        submit(&t, DEV_B, 1, "b", &d);
        run_until(&t, &d, 1);
        run_for(&t, 20000);
        ASSERT_EQ(w.n, 3u);
        ASSERT_OK(rd = open(fifo, O_RDONLY | O_CLOEXEC));
        run_until(&t, &w, 4);
        ASSERT_OK(w.result);
        memset(buf, 0, sizeof(buf));
        ASSERT_EQ(read(rd, buf, sizeof(buf) - 1), 4);
        ASSERT_STREQ(buf, "tsm1");

        rd = safe_close(rd);
        ASSERT_OK(unlink(path));
        ASSERT_OK(unlink(fifo));
        ASSERT_OK(unlink(link));
        ASSERT_OK(rmdir(dir));
        lanes_teardown(&t);
}

TEST(abandoned_while_queued_never_reaches_the_kernel) {
        Lanes t;
        Done held = {}, dropped = {};
        KernelCall *c;

        lanes_setup(&t);
        fake_set_hold(true);
        submit(&t, DEV_A, VDEV_SLOW, "h", &held);
        fake_wait_inside(1);
        c = submit(&t, DEV_A, 1, "x", &dropped);
        kernel_call_abandon(c);

        fake_set_hold(false);
        run_until(&t, &held, 1);
        run_for(&t, 50000);
        ASSERT_EQ(dropped.n, 0u);
        ASSERT_EQ(fake_n_calls(), 1u);
        lanes_teardown(&t);
}

TEST(abandoned_while_in_the_kernel_never_calls_back) {
        Lanes t;
        Done dropped = {}, after = {};
        KernelCall *c;

        lanes_setup(&t);
        fake_set_hold(true);
        c = submit(&t, DEV_A, VDEV_SLOW, "x", &dropped);
        fake_wait_inside(1);
        kernel_call_abandon(c); /* as when the deadline passes */

        fake_set_hold(false);
        fake_wait_inside(0);
        /* The late answer is delivered to nobody; the lane serves the next call. */
        submit(&t, DEV_A, 1, "y", &after);
        run_until(&t, &after, 1);
        ASSERT_EQ(dropped.n, 0u);
        ASSERT_EQ(fake_n_calls(), 2u);
        lanes_teardown(&t);
}

TEST(vmm_may_close_its_iommufd_meanwhile) {
        Lanes t;
        Done d = {};

        lanes_setup(&t);
        fake_set_hold(true);
        submit(&t, DEV_A, VDEV_SLOW, "q", &d);
        fake_wait_inside(1);
        t.iommufd = safe_close(t.iommufd);
        fake_set_hold(false);
        run_until(&t, &d, 1);
        ASSERT_EQ(d.result, 0);
        ASSERT_TRUE(fake.fd_was_valid);
        lanes_teardown(&t);
}

TEST(refuses_a_closed_iommufd) {
        Lanes t;
        Done d = {};
        KernelCallArgs a = { .iommufd = 1000, .version = TSM_UAPI_V5 };
        KernelCall *c = NULL;

        lanes_setup(&t);
        ASSERT_ERRNO(kernel_lanes_submit(t.lanes, DEV_A, &a, on_done, &d, &c), EBADF);
        ASSERT_NULL(c);
        ASSERT_EQ(kernel_lanes_n_threads(t.lanes), 0u);
        lanes_teardown(&t);
}

TEST(idle_lanes_end_their_threads) {
        Lanes t;
        Done d = {};

        lanes_setup(&t);
        submit(&t, DEV_A, 1, "a", &d);
        submit(&t, DEV_B, 1, "b", &d);
        ASSERT_EQ(kernel_lanes_n_threads(t.lanes), 2u);
        run_until(&t, &d, 2);
        for (int i = 0; i < 1000 && kernel_lanes_n_threads(t.lanes) > 0; i++)
                run_for(&t, 1000);
        ASSERT_EQ(kernel_lanes_n_threads(t.lanes), 0u);

        /* And a lane comes back with the next call. */
        submit(&t, DEV_A, 1, "c", &d);
        run_until(&t, &d, 3);
        lanes_teardown(&t);
}

static void *release_later(void *userdata) {
        usleep(100000);
        fake_set_hold(false);
        return NULL;
}

TEST(free_waits_for_a_call_in_the_kernel) {
        Lanes t;
        Done held = {}, queued = {};
        pthread_t releaser;

        lanes_setup(&t);
        fake_set_hold(true);
        submit(&t, DEV_A, VDEV_SLOW, "h", &held);
        submit(&t, DEV_A, 1, "q", &queued);
        fake_wait_inside(1);

        ASSERT_OK(-pthread_create(&releaser, NULL, release_later, NULL));
        /* Returns once the kernel lets go; the queued call is dropped, nobody is called. */
        lanes_teardown(&t);
        ASSERT_OK(-pthread_join(releaser, NULL));
        ASSERT_EQ(held.n, 0u);
        ASSERT_EQ(queued.n, 0u);
        ASSERT_EQ(fake_n_calls(), 1u);
}

#define BIND (ORDER_OP | TSMD_IOMMU_VDEVICE_TSM_BIND_V5)
#define UNBIND (ORDER_OP | TSMD_IOMMU_VDEVICE_TSM_UNBIND_V5)

/* The kernel saw the abandoned bind, its undo, then the bind submitted after the abandonment. */
static void expect_undone_before_the_next_bind(unsigned undone, unsigned bound) {
        ASSERT_EQ(fake_n_calls(), 3u);
        ASSERT_EQ(fake.order[0], BIND);
        ASSERT_EQ(fake.order[1], UNBIND);
        ASSERT_EQ(fake.order[2], BIND);
        ASSERT_FALSE(fake.bound[undone]);
        ASSERT_TRUE(fake.bound[bound]);
}

/* tsmd records an abandoned bind as not done (its device gone, its VMM told it failed): one the
 * kernel did after all is unbound again, and that unbind comes before anything asked of the
 * device after the abandonment, such as a VMM binding it anew. */
TEST(abandoned_bind_done_in_the_kernel_is_undone) {
        _cleanup_free_ char *log = NULL;
        Lanes t;
        Done dropped = {}, again = {};
        KernelCall *c;
        int saved;

        lanes_setup(&t);
        fake_set_hold(true);
        c = submit_op(&t, DEV_A, KERNEL_OP_BIND, VDEV_SLOW, &dropped);
        fake_wait_inside(1);
        kernel_call_abandon(c); /* as when its device is reported gone */
        kernel_call_abandon(c); /* and again: still one undo */
        submit_op(&t, DEV_A, KERNEL_OP_BIND, 1, &again);

        saved = log_capture_begin();
        fake_set_hold(false);
        run_until(&t, &again, 1);
        run_until_idle(&t);
        log = log_capture_end(saved);

        ASSERT_EQ(again.result, 0);
        ASSERT_EQ(dropped.n, 0u);
        expect_undone_before_the_next_bind(VDEV_SLOW, 1);
        /* Said once, and what was done about it. */
        ASSERT_EQ(count_occurrences(log, "unbound it again"), 1u);
        ASSERT_EQ(count_occurrences(log, "after its requester gave up"), 1u);
        lanes_teardown(&t);
}

/* What the late callback was told. */
typedef struct Late {
        unsigned n;
        KernelLate last[4];
        char tags[4][16];
} Late;

static void on_late(const KernelLate *late, void *userdata) {
        Late *l = userdata;

        ASSERT_TRUE(l->n < ELEMENTSOF(l->last));
        l->last[l->n] = *late;
        l->last[l->n].lane = NULL; /* valid during the call only */
        ASSERT_LE(late->tag_size, sizeof(l->tags[0]));
        if (late->tag)
                memcpy(l->tags[l->n], late->tag, late->tag_size);
        l->last[l->n].tag = NULL;
        l->n++;
}

/* An abandoned call the kernel answers after all is reported with its abandoner's tag, and so is
 * the undo of an abandoned bind; a call abandoned before it started is not (the kernel never saw
 * it), nor is one answered in time. */
TEST(late_answers_are_reported_with_their_tags) {
        Lanes t;
        Done dropped = {}, queued = {}, again = {};
        Late late = {};
        KernelCall *c, *q;

        lanes_setup(&t);
        kernel_lanes_set_late_callback(t.lanes, on_late, &late);
        fake_set_hold(true);
        c = submit_op(&t, DEV_A, KERNEL_OP_BIND, VDEV_SLOW, &dropped);
        q = submit_op(&t, DEV_A, KERNEL_OP_UNBIND, VDEV_SLOW, &queued);
        fake_wait_inside(1);
        /* The abandoner learns which of them answers late (so it need not record the end of
         * the other itself twice). */
        ASSERT_TRUE(kernel_call_abandon_tagged(c, "bind-tag", sizeof("bind-tag")));
        ASSERT_FALSE(kernel_call_abandon_tagged(q, "never", sizeof("never")));
        submit_op(&t, DEV_A, KERNEL_OP_BIND, 1, &again);

        fake_set_hold(false);
        run_until(&t, &again, 1);
        run_until_idle(&t);

        ASSERT_EQ(dropped.n + queued.n, 0u);
        ASSERT_EQ(late.n, 2u);
        ASSERT_EQ(late.last[0].op, KERNEL_OP_BIND);
        ASSERT_FALSE(late.last[0].undo);
        ASSERT_EQ(late.last[0].result, 0);
        ASSERT_EQ(late.last[0].vdevice_id, VDEV_SLOW);
        ASSERT_STREQ(late.tags[0], "bind-tag");
        ASSERT_EQ(late.last[1].op, KERNEL_OP_UNBIND);
        ASSERT_TRUE(late.last[1].undo);
        ASSERT_EQ(late.last[1].result, 0);
        ASSERT_STREQ(late.tags[1], "bind-tag");
        ASSERT_TRUE(late.last[1].latency_usec >= late.last[0].latency_usec);
        lanes_teardown(&t);
}

/* The same when the kernel had answered already and only the delivery was pending: the lane's
 * thread may even have ended meanwhile. */
TEST(abandoned_bind_answered_but_not_delivered_is_undone) {
        Lanes t;
        Done dropped = {}, again = {};
        KernelCall *c;

        lanes_setup(&t);
        c = submit_op(&t, DEV_A, KERNEL_OP_BIND, 1, &dropped);
        wait_lanes_ended(&t);
        ASSERT_TRUE(fake.bound[1]);
        kernel_call_abandon(c);
        submit_op(&t, DEV_A, KERNEL_OP_BIND, 2, &again);

        run_until(&t, &again, 1);
        run_until_idle(&t);
        ASSERT_EQ(again.result, 0);
        ASSERT_EQ(dropped.n, 0u);
        expect_undone_before_the_next_bind(1, 2);
        lanes_teardown(&t);
}

/* A bind that failed left nothing to undo, nor did one that never started. */
TEST(abandoned_bind_that_failed_is_not_undone) {
        Lanes t;
        Done dropped = {}, after = {};
        KernelCall *failed, *queued;

        lanes_setup(&t);
        fake_set_hold(true);
        failed = submit_op(&t, DEV_A, KERNEL_OP_BIND, VDEV_REFUSED, &dropped);
        fake_wait_inside(1);
        queued = submit_op(&t, DEV_A, KERNEL_OP_BIND, 1, &dropped);
        kernel_call_abandon(failed);
        kernel_call_abandon(queued);
        submit(&t, DEV_A, 1, "y", &after);

        fake_set_hold(false);
        run_until(&t, &after, 1);
        run_until_idle(&t);
        ASSERT_EQ(dropped.n, 0u);
        ASSERT_EQ(fake_n_calls(), 2u);
        ASSERT_EQ(fake.order[0], BIND);
        ASSERT_EQ(fake.order[1], (uint32_t) 'y');
        lanes_teardown(&t);
}

/* A call its callback kept (kernel_call_keep()), as tsmd keeps an answer until its requester
 * has it. */
typedef struct Kept {
        Done done;
        KernelCall *call;
        uint64_t answered_usec;
} Kept;

static void on_done_kept(KernelCall *c, int result, void *userdata) {
        Kept *k = userdata;

        k->answered_usec = now_monotonic_usec();
        on_done(c, result, &k->done);
        kernel_call_keep(c);
        k->call = c;
}

/* Answered and kept, then given up on before its requester had the answer: the lanes report it
 * late at once, with the tag as given and the kernel's latency (to its answer, not to the give
 * up, which comes a while after here), and a kept bind is not undone (its owner had the result).
 * One passed on is reported by nobody. Kept calls are freed either way (ASan). */
TEST(a_kept_answer_given_up_on_is_reported_late_at_once) {
        KernelCallArgs request = { .op = KERNEL_OP_REQUEST, .iommufd = -EBADF, .version = TSM_UAPI_V5,
                                   .vdevice_id = 2, .request = "abc", .request_len = 3, .response_size = 16 };
        KernelCallArgs bind = { .op = KERNEL_OP_BIND, .iommufd = -EBADF, .version = TSM_UAPI_V5, .vdevice_id = 1 };
        Kept req = {}, bound = {}, passed_on = {};
        Late late = {};
        uint64_t submitted_usec;
        Lanes t;

        lanes_setup(&t);
        request.iommufd = bind.iommufd = t.iommufd;
        kernel_lanes_set_late_callback(t.lanes, on_late, &late);
        submitted_usec = now_monotonic_usec();
        ASSERT_OK(kernel_lanes_submit(t.lanes, DEV_A, &request, on_done_kept, &req, NULL));
        ASSERT_OK(kernel_lanes_submit(t.lanes, DEV_A, &bind, on_done_kept, &bound, NULL));
        ASSERT_OK(kernel_lanes_submit(t.lanes, DEV_A, &request, on_done_kept, &passed_on, NULL));
        run_until(&t, &passed_on.done, 1);
        ASSERT_EQ(req.done.n + bound.done.n, 2u);
        ASSERT_EQ(late.n, 0u);

        (void) usleep(50 * 1000); /* not a wait: the time between the answer and the give up */
        ASSERT_TRUE(kernel_call_abandon_tagged(req.call, "req-tag", sizeof("req-tag")));
        ASSERT_EQ(late.n, 1u);
        ASSERT_LE(late.last[0].latency_usec, req.answered_usec - submitted_usec);
        ASSERT_EQ(late.last[0].op, KERNEL_OP_REQUEST);
        ASSERT_FALSE(late.last[0].undo);
        ASSERT_EQ(late.last[0].result, 0);
        ASSERT_EQ(late.last[0].response_len, 3u);
        ASSERT_EQ(late.last[0].vdevice_id, 2u);
        ASSERT_STREQ(late.tags[0], "req-tag");

        ASSERT_TRUE(kernel_call_abandon_tagged(bound.call, "bind-tag", sizeof("bind-tag")));
        ASSERT_EQ(late.n, 2u);
        ASSERT_EQ(late.last[1].op, KERNEL_OP_BIND);
        ASSERT_FALSE(late.last[1].undo);
        ASSERT_STREQ(late.tags[1], "bind-tag");

        kernel_call_delivered(passed_on.call);
        run_until_idle(&t);
        ASSERT_EQ(late.n, 2u);
        ASSERT_EQ(fake_n_calls(), 3u); /* no unbind */
        ASSERT_TRUE(fake.bound[1]);
        lanes_teardown(&t);
}

/* Stopping, the undo of a bind still in the kernel is dropped with the other queued calls: the
 * next tsmd unbinds a vDevice whose bind was cut off (its context is stored as changing), and a
 * context not kept closes its iommufd, which unbinds. Nothing is touched after it is freed. */
TEST(free_drops_the_undo_of_a_bind_in_the_kernel) {
        Lanes t;
        Done dropped = {};
        pthread_t releaser;
        KernelCall *c;

        lanes_setup(&t);
        fake_set_hold(true);
        c = submit_op(&t, DEV_A, KERNEL_OP_BIND, VDEV_SLOW, &dropped);
        fake_wait_inside(1);
        kernel_call_abandon(c);

        ASSERT_OK(-pthread_create(&releaser, NULL, release_later, NULL));
        lanes_teardown(&t);
        ASSERT_OK(-pthread_join(releaser, NULL));
        ASSERT_EQ(dropped.n, 0u);
        ASSERT_EQ(fake_n_calls(), 1u);
}

/* A hung TSM that answers every request late must not flood the journal: each device's late
 * answer would otherwise be a line. */
TEST(late_answers_are_logged_at_a_bounded_rate) {
        _cleanup_free_ char *log = NULL;
        KernelCall *calls[3 * KERNEL_LATE_LOG_BURST];
        Lanes t;
        Done dropped = {};
        size_t n;
        int saved;

        lanes_setup(&t);
        fake_set_hold(true);
        for (unsigned i = 0; i < ELEMENTSOF(calls); i++) {
                char lane[16];

                snprintf(lane, sizeof(lane), "0000:%02x:00.0", 0x10 + i);
                calls[i] = submit(&t, lane, VDEV_SLOW, "x", &dropped);
        }
        fake_wait_inside(ELEMENTSOF(calls));
        for (unsigned i = 0; i < ELEMENTSOF(calls); i++)
                kernel_call_abandon(calls[i]); /* as when their deadlines pass */

        saved = log_capture_begin();
        fake_set_hold(false);
        run_until_idle(&t);
        log = log_capture_end(saved);

        ASSERT_EQ(dropped.n, 0u);
        ASSERT_EQ(fake_n_calls(), (unsigned) ELEMENTSOF(calls));
        n = count_occurrences(log, "after its requester gave up");
        ASSERT_GE(n, 1u);
        ASSERT_LE(n, (size_t) KERNEL_LATE_LOG_BURST);
        lanes_teardown(&t);
}

TEST_MAIN();
