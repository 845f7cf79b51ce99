/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What a device lane (daemon/kernel-lanes.h) adds to a kernel TSM guest request: the call goes
 * to the device's thread and its answer comes back to the event loop. Measured against a fake
 * kernel that answers at once (the transport's syscall seam), one request at a time, and
 * printed as ratios against baselines from the same run:
 *   direct  iommufd_tsm_request() on the loop's thread (tsmd before lanes: the ioctl blocked
 *           the monitor's loop);
 *   raw     a round trip of the same bytes over an AF_UNIX socketpair to an echoing thread.
 * "warm" keeps the lane's thread between calls (as in tsmd, calls less than 2 s apart), "cold"
 * starts a thread for every call (a device's first call after a pause). A real TSM call takes
 * milliseconds to seconds of firmware and SPDM, so what matters is that the lane's share stays
 * in the order of a socket round trip.
 * Then throughput with DEVICES devices whose calls each take DEVICE_USEC in the kernel, every
 * device with one request in flight: on the loop (calls one after the other, as before lanes)
 * against lanes (the devices in parallel). Never asserts a time.
 * Usage: bench-kernel-lanes [--quick]. Runs in: tests (benchmark).
 */

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"
#include "iommufd-transport.h"
#include "iommufd-uapi.h"
#include "kernel-lanes.h"
#include "log.h"

#define DEVICE "0000:01:00.0"
#define PAYLOAD 64
#define DEVICES 8
#define DEVICE_USEC 1000

static unsigned n_rounds = 20000;
static uint64_t phase_usec = 2000000;
static uint64_t kernel_delay_usec; /* how long the fake TSM takes per call */

static void die(const char *what, int r) {
        fprintf(stderr, "bench-kernel-lanes: %s: %s\n", what, strerror(r < 0 ? -r : r));
        exit(EXIT_FAILURE);
}

/* A TSM that answers at once: the request's bytes, and the residue. */
static int instant_ioctl(void *userdata, int fd, unsigned long request, void *arg) {
        struct tsmd_iommu_vdevice_tsm_req_v5 cmd;
        size_t n;

        if (kernel_delay_usec > 0) {
                struct timespec ts = { .tv_nsec = (long) (kernel_delay_usec * 1000) };
                nanosleep(&ts, NULL);
        }
        memcpy(&cmd, arg, sizeof(cmd));
        n = MIN(cmd.req_len, cmd.resp_len);
        memcpy((void *) (uintptr_t) cmd.resp_uptr, (const void *) (uintptr_t) cmd.req_uptr, n);
        return (int) (cmd.resp_len - n);
}

static int no_open(void *userdata, const char *path, int flags) {
        return -ENOENT;
}

static int no_close(void *userdata, int fd) {
        return 0;
}

static const IommufdSyscalls instant_kernel = { no_open, instant_ioctl, no_close, NULL };

static Stats run_direct(int iommufd, uint64_t *ns) {
        uint8_t req[PAYLOAD] = { 1 }, resp[PAYLOAD];

        for (unsigned i = 0; i < n_rounds; i++) {
                uint64_t t0 = now_nsec();
                size_t len;
                int r = iommufd_tsm_request(iommufd, TSM_UAPI_V5, 1, 0, req, sizeof(req), resp, sizeof(resp),
                                            &len, NULL);

                if (r < 0)
                        die("direct request", r);
                ns[i] = now_nsec() - t0;
        }
        return stats_of(ns, n_rounds);
}

static void on_done(KernelCall *c, int result, void *userdata) {
        bool *done = userdata;

        if (result < 0)
                die("lane request", result);
        free(kernel_call_take_response(c, NULL));
        *done = true;
}

static Stats run_lane(int iommufd, uint64_t linger_usec, uint64_t *ns) {
        struct event_base *base = event_base_new();
        uint8_t req[PAYLOAD] = { 1 };
        KernelCallArgs a = {
                .iommufd = iommufd,
                .version = TSM_UAPI_V5,
                .vdevice_id = 1,
                .request = req,
                .request_len = sizeof(req),
                .response_size = PAYLOAD,
        };
        KernelLanes *l;
        int r;

        if (!base)
                die("event base", -ENOMEM);
        r = kernel_lanes_new(base, linger_usec, &l);
        if (r < 0)
                die("lanes", r);
        for (unsigned i = 0; i < n_rounds; i++) {
                uint64_t t0 = now_nsec();
                bool done = false;

                r = kernel_lanes_submit(l, DEVICE, &a, on_done, &done, NULL);
                if (r < 0)
                        die("lane request", r);
                while (!done)
                        if (event_base_loop(base, EVLOOP_ONCE) < 0)
                                die("event loop", -EIO);
                ns[i] = now_nsec() - t0;
                /* Cold: wait for the thread to end, so the next call starts one. */
                while (linger_usec == 0 && kernel_lanes_n_threads(l) > 0)
                        sched_yield();
        }
        kernel_lanes_free(l);
        event_base_free(base);
        return stats_of(ns, n_rounds);
}

/* Every device gets its next request when the last one is answered, as a VMM per device would. */
static double run_devices_direct(int iommufd) {
        uint8_t req[PAYLOAD] = { 1 }, resp[PAYLOAD];
        uint64_t start = now_nsec(), end = start + phase_usec * 1000ULL, n = 0;

        while (now_nsec() < end)
                for (unsigned d = 0; d < DEVICES; d++, n++) {
                        int r = iommufd_tsm_request(iommufd, TSM_UAPI_V5, d + 1, 0, req, sizeof(req), resp,
                                                    sizeof(resp), NULL, NULL);
                        if (r < 0)
                                die("direct request", r);
                }
        return (double) n * 1e9 / (double) (now_nsec() - start);
}

typedef struct Devices {
        KernelLanes *lanes;
        KernelCallArgs args[DEVICES];
        char names[DEVICES][16];
        uint64_t end, n_done;
        unsigned n_in_flight;
} Devices;

static void on_device_done(KernelCall *c, int result, void *userdata);

static void device_submit(Devices *t, unsigned d) {
        int r = kernel_lanes_submit(t->lanes, t->names[d], &t->args[d], on_device_done, t, NULL);

        if (r < 0)
                die("lane request", r);
        t->n_in_flight++;
}

static void on_device_done(KernelCall *c, int result, void *userdata) {
        Devices *t = userdata;
        uint8_t *resp;

        if (result < 0)
                die("lane request", result);
        resp = kernel_call_take_response(c, NULL);
        t->n_in_flight--;
        t->n_done++;
        if (now_nsec() < t->end)
                device_submit(t, resp[0]); /* the first byte names the device */
        free(resp);
}

static double run_devices_lanes(int iommufd) {
        struct event_base *base = event_base_new();
        uint8_t req[DEVICES][PAYLOAD];
        uint64_t start;
        Devices t = {};
        int r;

        if (!base)
                die("event base", -ENOMEM);
        r = kernel_lanes_new(base, KERNEL_LANE_LINGER_USEC, &t.lanes);
        if (r < 0)
                die("lanes", r);
        start = now_nsec();
        t.end = start + phase_usec * 1000ULL;
        for (unsigned d = 0; d < DEVICES; d++) {
                memset(req[d], (int) d, sizeof(req[d]));
                snprintf(t.names[d], sizeof(t.names[d]), "0000:%02x:00.0", d + 1);
                t.args[d] = (KernelCallArgs){
                        .iommufd = iommufd,
                        .version = TSM_UAPI_V5,
                        .vdevice_id = d + 1,
                        .request = req[d],
                        .request_len = PAYLOAD,
                        .response_size = PAYLOAD,
                };
                device_submit(&t, d);
        }
        while (t.n_in_flight > 0)
                if (event_base_loop(base, EVLOOP_ONCE) < 0)
                        die("event loop", -EIO);
        kernel_lanes_free(t.lanes);
        event_base_free(base);
        return (double) t.n_done * 1e9 / (double) (now_nsec() - start);
}

static void *echo_thread(void *userdata) {
        int fd = *(int *) userdata;
        uint8_t b[PAYLOAD];
        ssize_t k;

        while ((k = read(fd, b, sizeof(b))) > 0)
                if (write(fd, b, (size_t) k) != k)
                        break;
        return NULL;
}

static Stats run_raw(uint64_t *ns) {
        uint8_t b[PAYLOAD] = { 1 };
        pthread_t echo;
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                die("socketpair", -errno);
        if (pthread_create(&echo, NULL, echo_thread, &sv[1]) != 0)
                die("echo thread", -EAGAIN);
        for (unsigned i = 0; i < n_rounds; i++) {
                uint64_t t0 = now_nsec();
                size_t got = 0;

                if (write(sv[0], b, sizeof(b)) != (ssize_t) sizeof(b))
                        die("raw write", -errno);
                while (got < sizeof(b)) {
                        ssize_t k = read(sv[0], b + got, sizeof(b) - got);
                        if (k <= 0)
                                die("raw read", k < 0 ? -errno : -EPIPE);
                        got += (size_t) k;
                }
                ns[i] = now_nsec() - t0;
        }
        shutdown(sv[0], SHUT_RDWR);
        pthread_join(echo, NULL);
        close(sv[0]);
        close(sv[1]);
        return stats_of(ns, n_rounds);
}

int main(int argc, char *argv[]) {
        Stats direct, raw, warm, cold;
        double devices_direct, devices_lanes;
        uint64_t *ns;
        int iommufd;

        if (argc > 1 && streq(argv[1], "--quick")) {
                n_rounds = 500;
                phase_usec = 200000;
        }
        else if (argc > 1) {
                fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
                return EXIT_FAILURE;
        }
        log_set_max_level(LOG_WARNING);
        ns = new0(uint64_t, n_rounds);
        iommufd = open("/dev/null", O_RDWR | O_CLOEXEC); /* the lane duplicates a real fd */
        if (!ns || iommufd < 0)
                die("set-up", -ENOMEM);
        iommufd_set_syscalls(&instant_kernel);

        raw = run_raw(ns);
        direct = run_direct(iommufd, ns);
        warm = run_lane(iommufd, KERNEL_LANE_LINGER_USEC, ns);
        cold = run_lane(iommufd, 0, ns);
        kernel_delay_usec = DEVICE_USEC;
        devices_direct = run_devices_direct(iommufd);
        devices_lanes = run_devices_lanes(iommufd);

        printf("# bench-kernel-lanes: one kernel TSM request (%d B each way) at a time, %u rounds,\n"
               "# against a fake kernel that answers at once. CPUs online: %ld.\n",
               PAYLOAD, n_rounds, sysconf(_SC_NPROCESSORS_ONLN));
        printf("%-34s %10s %10s %12s\n", "", "p50 us", "p99 us", "p50 / raw");
        printf("%-34s %10.2f %10.2f %11.2fx\n", "raw AF_UNIX round trip (thread)", raw.p50_us, raw.p99_us, 1.0);
        printf("%-34s %10.2f %10.2f %11.2fx\n", "direct ioctl on the loop", direct.p50_us, direct.p99_us,
               direct.p50_us / raw.p50_us);
        printf("%-34s %10.2f %10.2f %11.2fx\n", "lane, warm thread", warm.p50_us, warm.p99_us, warm.p50_us / raw.p50_us);
        printf("%-34s %10.2f %10.2f %11.2fx\n", "lane, thread started per call", cold.p50_us, cold.p99_us,
               cold.p50_us / raw.p50_us);
        printf("\n# %d devices, each call %d us in the kernel, each device one request in flight, %.1f s:\n",
               DEVICES, DEVICE_USEC, (double) phase_usec / 1e6);
        printf("%-34s %10s %12s\n", "", "req/s", "/ on the loop");
        printf("%-34s %10.0f %11.2fx\n", "on the loop, one after the other", devices_direct, 1.0);
        printf("%-34s %10.0f %11.2fx\n", "on lanes, devices in parallel", devices_lanes, devices_lanes / devices_direct);

        iommufd_set_syscalls(NULL);
        close(iommufd);
        free(ns);
        return EXIT_SUCCESS;
}
