/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A fake v5 kernel for the iommufd transport's syscall seam. Runs in: tests. */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fake-tsm-kernel.h"
#include "harness.h"
#include "iommufd-transport.h"
#include "macro.h"

static struct {
        pthread_mutex_t lock;
        pthread_cond_t changed;
        uint32_t held_vdevice;
        bool hold;
        unsigned n_inside;
        size_t n_calls;
        FakeKernelCall calls[FAKE_KERNEL_CALLS_MAX];
        size_t n_bound;
        uint32_t bound[FAKE_KERNEL_BOUND_MAX];
} fake = { .lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER };

static int fake_open(void *userdata, const char *path, int flags) {
        int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

        return fd < 0 ? -errno : fd;
}

static int fake_close(void *userdata, int fd) {
        return close(fd) < 0 ? -errno : 0;
}

/* Under fake.lock. */
static bool is_bound(void *userdata, uint32_t vdevice) {
        for (size_t i = 0; i < fake.n_bound; i++)
                if (fake.bound[i] == vdevice)
                        return true;
        return false;
}

/* Under fake.lock. */
static void set_bound(void *userdata, uint32_t vdevice, bool bound) {
        for (size_t i = 0; i < fake.n_bound; i++)
                if (fake.bound[i] == vdevice) {
                        if (!bound)
                                fake.bound[i] = fake.bound[--fake.n_bound];
                        return;
                }
        if (!bound)
                return;
        ASSERT_TRUE(fake.n_bound < FAKE_KERNEL_BOUND_MAX);
        fake.bound[fake.n_bound++] = vdevice;
}

static const FakeKernelState fake_state = { .is_bound = is_bound, .set_bound = set_bound };

static int fake_ioctl(void *userdata, int fd, unsigned long request, void *arg) {
        FakeKernelCall call;
        int r, probe_answer;

        r = fake_kernel_v5_decode(request, arg, &call, &probe_answer);
        if (r == 0)
                return probe_answer;
        if (r < 0)
                TEST_FAIL("the transport made an ioctl a v5 kernel refuses (%#lx): %s", request, strerror(-r));

        pthread_mutex_lock(&fake.lock);
        if (fake.n_calls < FAKE_KERNEL_CALLS_MAX)
                fake.calls[fake.n_calls] = call;
        fake.n_calls++;
        /* Refused before the TSM works: nothing to hold. */
        r = fake_kernel_v5_check(&call, &fake_state);
        if (r < 0) {
                pthread_mutex_unlock(&fake.lock);
                return r;
        }
        fake.n_inside++;
        pthread_cond_broadcast(&fake.changed);
        while (call.vdevice == fake.held_vdevice && fake.hold)
                pthread_cond_wait(&fake.changed, &fake.lock);
        fake.n_inside--;
        pthread_cond_broadcast(&fake.changed);
        r = fake_kernel_v5_answer(request, arg, &call, &fake_state);
        pthread_mutex_unlock(&fake.lock);

        ASSERT_TRUE(r != -ENOSPC);
        return r;
}

static const IommufdSyscalls fake_syscalls = { fake_open, fake_ioctl, fake_close, NULL };

void fake_kernel_install(uint32_t held_vdevice) {
        pthread_mutex_lock(&fake.lock);
        fake.held_vdevice = held_vdevice;
        fake.hold = false;
        fake.n_calls = 0;
        fake.n_bound = 0;
        pthread_mutex_unlock(&fake.lock);
        iommufd_set_syscalls(&fake_syscalls);
}

void fake_kernel_uninstall(void) {
        iommufd_set_syscalls(NULL);
}

void fake_kernel_set_bound(uint32_t vdevice) {
        pthread_mutex_lock(&fake.lock);
        set_bound(NULL, vdevice, true);
        pthread_mutex_unlock(&fake.lock);
}

void fake_kernel_hold(bool hold) {
        pthread_mutex_lock(&fake.lock);
        fake.hold = hold;
        pthread_cond_broadcast(&fake.changed);
        pthread_mutex_unlock(&fake.lock);
}

unsigned fake_kernel_n_inside(void) {
        unsigned n;

        pthread_mutex_lock(&fake.lock);
        n = fake.n_inside;
        pthread_mutex_unlock(&fake.lock);
        return n;
}

void fake_kernel_wait_inside(unsigned n) {
        struct timespec until;
        int r = 0;

        ASSERT_OK(clock_gettime(CLOCK_REALTIME, &until));
        until.tv_sec += 5;
        pthread_mutex_lock(&fake.lock);
        while (fake.n_inside != n && r == 0)
                r = pthread_cond_timedwait(&fake.changed, &fake.lock, &until);
        pthread_mutex_unlock(&fake.lock);
        if (r != 0)
                TEST_FAIL("%u calls inside the fake kernel, not %u", fake_kernel_n_inside(), n);
}

size_t fake_kernel_calls(FakeKernelCall *ret, size_t max) {
        size_t n;

        pthread_mutex_lock(&fake.lock);
        n = fake.n_calls;
        memcpy(ret, fake.calls, MIN(MIN(n, max), (size_t) FAKE_KERNEL_CALLS_MAX) * sizeof(*ret));
        pthread_mutex_unlock(&fake.lock);
        return n;
}
