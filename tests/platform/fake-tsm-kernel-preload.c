/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fake v5 kernel (fake-tsm-kernel-v5.h) preloaded into the whole daemon (LD_PRELOAD), so
 * that a test can drive the kernel path end to end: tsmd runs with IommuDevice= naming the
 * character device in $TSMD_FAKE_KERNEL_DEVICE, and this ioctl() answers the iommufd TSM
 * ioctls made on fds of that device as a v5 kernel would; every other ioctl goes to libc.
 * The test is another process, so it steers through files in $TSMD_FAKE_KERNEL_DIR:
 *   calls      one line per call that finds its vDevice, appended as the call enters the
 *              kernel, refused ones too: "op VDEVICE TYPE" or "req VDEVICE SCOPE" (the probe on
 *              vDevice 0 is not logged)
 *   bound-ID   the kernel's: exists while vDevice ID is bound (a bind makes it, an unbind
 *              removes it); kept in files, as the kernel keeps bindings across restarts of tsmd
 *   novm-ID    while it exists, vDevice ID's vIOMMU has no KVM VM: its TSM_OP calls fail
 *              ENODEV, as for a VMM that did not add the VFIO file to its VM
 *   hold-ID    while it exists, calls for vDevice ID that pass the kernel's checks (the TDI
 *              bound, a scope the PCI TSM core takes) wait inside the kernel, as on a device
 *              whose firmware takes its time
 *   fail-ID    while it exists, those calls fail (after any hold) with the errno written in it
 *              as a decimal number, as a TSM or kernel that gives up would
 *   hold-sync  while it exists, fdatasync() waits (in either process: the worker's audit log
 *              has it), as on a disk that takes its time: what was written is in the file, and
 *              not known durable yet (the directory must be one the worker's user can reach)
 *   pass-sync  while hold-sync holds them, one fdatasync() goes through, the one that removes it
 *              (so the test makes the directory writable by the worker's user), as on a disk
 *              that finished one sync and is slow on the next
 *   fail-sync  while it exists, fdatasync() fails (after any hold) with the errno written in it,
 *              as on a disk that broke: the audit log fails
 *   fail-send  while it exists, a batch of the worker's messages to the monitor (sendmmsg())
 *              that holds a GUEST_REQUEST fails with the errno written in it, as the worker's
 *              channel does with no memory for the datagrams: tsmd's own failure, not the kernel's
 *              TSM's (only the worker sends GUEST_REQUEST; every other batch goes to libc)
 *   fail-connect while it exists, a write to a tsm/connect fails with the errno written in it, as
 *              the kernel's store() fails one (a connect it refuses, ENOMEM included)
 * Runs in: tsmd's processes, under test only.
 */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fake-tsm-kernel-v5.h"
#include "iommufd-uapi.h"
#include "tsm-priv.h"

#define HOLD_POLL_NSEC 1000000L

static int (*real_ioctl)(int fd, unsigned long request, ...);

/* An fd of $TSMD_FAKE_KERNEL_DEVICE: what IommuDevice= made tsmd open. */
static int is_fake_iommufd(int fd) {
        const char *device = getenv("TSMD_FAKE_KERNEL_DEVICE");
        struct stat st, want;

        if (!device || fstat(fd, &st) < 0 || stat(device, &want) < 0)
                return 0;
        return S_ISCHR(st.st_mode) && st.st_rdev == want.st_rdev;
}

static const char *control_path(char *buf, size_t size, const char *name) {
        const char *dir = getenv("TSMD_FAKE_KERNEL_DIR");

        if (!dir || (size_t) snprintf(buf, size, "%s/%s", dir, name) >= size)
                return NULL;
        return buf;
}

static void log_call(const FakeKernelCall *call) {
        char path[512], line[64];
        const char *p = control_path(path, sizeof(path), "calls");
        int fd, n;

        if (!p)
                return;
        n = snprintf(line, sizeof(line), "%s %u %u\n", call->op ? "op" : "req", call->vdevice, call->value);
        fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
                return;
        /* One write with O_APPEND: lines from concurrent lanes never interleave. */
        (void) !write(fd, line, (size_t) n);
        close(fd);
}

static void wait_while_exists(const char *name) {
        char path[512];
        const char *p = control_path(path, sizeof(path), name);

        while (p && access(p, F_OK) >= 0)
                nanosleep(&(struct timespec){ .tv_nsec = HOLD_POLL_NSEC }, NULL);
}

/* hold-sync, but for the one fdatasync() that takes pass-sync away. */
static void wait_while_sync_held(void) {
        char path[512], pass[512];
        const char *p = control_path(path, sizeof(path), "hold-sync"), *q = control_path(pass, sizeof(pass), "pass-sync");

        while (p && access(p, F_OK) >= 0) {
                if (q && unlink(q) >= 0)
                        return;
                nanosleep(&(struct timespec){ .tv_nsec = HOLD_POLL_NSEC }, NULL);
        }
}

static void wait_while_held(uint32_t vdevice) {
        char name[32];

        snprintf(name, sizeof(name), "hold-%u", vdevice);
        wait_while_exists(name);
}

/* The errno (negative) written in the control file name, or 0 if there is none. */
static int errno_in(const char *name) {
        char path[512], text[16] = {};
        const char *p;
        int fd, n, e;

        p = control_path(path, sizeof(path), name);
        if (!p)
                return 0;
        fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        n = (int) read(fd, text, sizeof(text) - 1);
        close(fd);
        e = n > 0 ? atoi(text) : 0;
        return e > 0 ? -e : 0;
}

/* The errno (negative) that fail-ID asks calls for vdevice to fail with, or 0. */
static int failure_of(uint32_t vdevice) {
        char name[32];

        snprintf(name, sizeof(name), "fail-%u", vdevice);
        return errno_in(name);
}

static bool exists(const char *prefix, uint32_t vdevice) {
        char name[32], path[512];
        const char *p;

        snprintf(name, sizeof(name), "%s-%u", prefix, vdevice);
        p = control_path(path, sizeof(path), name);
        return p && access(p, F_OK) >= 0;
}

static bool is_bound(void *userdata, uint32_t vdevice) {
        return exists("bound", vdevice);
}

static void set_bound(void *userdata, uint32_t vdevice, bool bound) {
        char name[32], path[512];
        const char *p;
        int fd;

        snprintf(name, sizeof(name), "bound-%u", vdevice);
        p = control_path(path, sizeof(path), name);
        if (!p)
                return;
        if (!bound) {
                (void) unlink(p);
                return;
        }
        fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0)
                close(fd);
}

static bool has_vm(void *userdata, uint32_t vdevice) {
        return !exists("novm", vdevice);
}

static const FakeKernelState state = { .is_bound = is_bound, .set_bound = set_bound, .has_vm = has_vm };

static int fake_ioctl(unsigned long request, void *arg) {
        FakeKernelCall call;
        int r, probe_answer;

        r = fake_kernel_v5_decode(request, arg, &call, &probe_answer);
        if (r == 0)
                return probe_answer;
        if (r < 0)
                return r;
        log_call(&call);
        r = fake_kernel_v5_check(&call, &state);
        if (r < 0)
                return r;
        wait_while_held(call.vdevice);
        r = failure_of(call.vdevice);
        if (r < 0)
                return r;
        return fake_kernel_v5_answer(request, arg, &call, &state);
}

/* Exported in spite of -fvisibility=hidden: this is the symbol that interposes libc's. */
__attribute__((visibility("default"))) int ioctl(int fd, unsigned long request, ...) {
        va_list ap;
        void *arg;
        int r;

        va_start(ap, request);
        arg = va_arg(ap, void *);
        va_end(ap);

        if (_IOC_TYPE(request) != TSMD_IOMMUFD_TYPE || !is_fake_iommufd(fd)) {
                if (!real_ioctl)
                        real_ioctl = (int (*)(int, unsigned long, ...)) dlsym(RTLD_NEXT, "ioctl");
                return real_ioctl(fd, request, arg);
        }
        r = fake_ioctl(request, arg);
        if (r < 0) {
                errno = -r;
                return -1;
        }
        return r;
}

__attribute__((visibility("default"))) int fdatasync(int fd) {
        static int (*real_fdatasync)(int fd);

        int e;

        wait_while_sync_held();
        e = errno_in("fail-sync");
        if (e < 0) {
                errno = -e;
                return -1;
        }
        if (!real_fdatasync)
                real_fdatasync = (int (*)(int)) dlsym(RTLD_NEXT, "fdatasync");
        return real_fdatasync(fd);
}

static bool batch_has_guest_request(const struct mmsghdr *vec, unsigned n) {
        for (unsigned i = 0; i < n; i++) {
                const struct msghdr *m = &vec[i].msg_hdr;
                struct tsm_priv_hdr h;

                if (m->msg_iovlen < 1 || m->msg_iov[0].iov_len < sizeof(h))
                        continue;
                memcpy(&h, m->msg_iov[0].iov_base, sizeof(h));
                if (h.type == TSM_PRIV_GUEST_REQUEST)
                        return true;
        }
        return false;
}

__attribute__((visibility("default"))) int sendmmsg(int fd, struct mmsghdr *vec, unsigned n, int flags) {
        static int (*real_sendmmsg)(int fd, struct mmsghdr *vec, unsigned n, int flags);
        int e = batch_has_guest_request(vec, n) ? errno_in("fail-send") : 0;

        if (e < 0) {
                errno = -e;
                return -1;
        }
        if (!real_sendmmsg)
                real_sendmmsg = (int (*)(int, struct mmsghdr *, unsigned, int)) dlsym(RTLD_NEXT, "sendmmsg");
        return real_sendmmsg(fd, vec, n, flags);
}

/* The tsm/connect this thread opened for writing (-1: none), until its write: the monitor opens
 * and writes it on the device's lane thread. Tracked by fd, so that no other write pays. */
static __thread int connect_fd = -1;

static bool is_connect_attr(const char *path) {
        size_t n = strlen(path), k = strlen("/tsm/connect");

        return n >= k && strcmp(path + n - k, "/tsm/connect") == 0;
}

/* open64(): what tsmd's open() is with _FILE_OFFSET_BITS=64 (named so: fortify declares it). */
__attribute__((visibility("default"))) int fake_open64(const char *path, int flags, ...) __asm__("open64");
int fake_open64(const char *path, int flags, ...) {
        static int (*real_open64)(const char *path, int flags, ...);
        mode_t mode = 0;
        int fd;

        if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
                va_list ap;

                va_start(ap, flags);
                mode = (mode_t) va_arg(ap, unsigned);
                va_end(ap);
        }
        if (!real_open64)
                real_open64 = (int (*)(const char *, int, ...)) dlsym(RTLD_NEXT, "open64");
        fd = real_open64(path, flags, mode);
        if (fd >= 0 && (flags & O_ACCMODE) != O_RDONLY && is_connect_attr(path))
                connect_fd = fd;
        return fd;
}

__attribute__((visibility("default"))) ssize_t write(int fd, const void *buf, size_t len) {
        static ssize_t (*real_write)(int fd, const void *buf, size_t len);

        if (fd == connect_fd) {
                int e = errno_in("fail-connect");

                connect_fd = -1;
                if (e < 0) {
                        errno = -e;
                        return -1;
                }
        }
        if (!real_write)
                real_write = (ssize_t (*)(int, const void *, size_t)) dlsym(RTLD_NEXT, "write");
        return real_write(fd, buf, len);
}
