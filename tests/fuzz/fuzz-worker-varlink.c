/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the worker's real Varlink methods: io.tsmd.Guest, io.tsmd.Service,
 * io.tsmd.Admin and org.varlink.service, as tsmd-worker serves them. The worker is the real one,
 * in process: manager_new() on a channel whose other end is the real monitor's request table
 * (monitor_dispatch_*(), daemon/monitor/) over the emulated platform, run by a thread of its own
 * as tsmd runs it in its own process; the worker reads its configuration and policy from a
 * scratch directory, audits there and serves two sockets there (one for everything, one for
 * guests), as tsmd passes them. Each input is one client's connection, its bytes (NUL-separated
 * calls) written as the worker takes them; the worker's loop runs until it has nothing left to
 * say, then the client hangs up and what it owned goes (its contexts closed, its vDevices
 * unbound, through the monitor). Checks more than the absence of crashes: every message the
 * worker sends the client is JSON, and the monitor never finds the worker breaking a rule of
 * the channel (a violation kills a real worker). Runs in: tests (fuzzing builds only).
 *
 * Input: a flags byte, then the client's bytes. Flags:
 *   bit 0  connect to the guests' socket (io.tsmd.Guest, io.tsmd.Service) rather than the one
 *          serving everything
 *   bit 1  attach an emulated iommufd (a memfd as the monitor makes one) to the first byte,
 *          for AdoptContext's "fileDescriptor": 0
 *   bit 2  send all at once, the calls pipelined; else a message (up to its NUL) at a time,
 *          each once the worker is quiet after the one before
 *
 * State a run keeps from input to input, as a long-lived worker does: the audit log (bounded:
 * rotated over two small files), the emulated devices' states and connections, the log level
 * (set back to LOG_CRIT after each input: SetLogLevel may raise it).
 *
 * Not reached here: contexts restored after a restart (the worker starts with none, so
 * ReclaimContext finds no orphan), the kernel's TSMs (the emulated platform only), late answers
 * (only a kernel call is given up on: fuzz-priv-worker feeds them), a reload the monitor carries
 * out (its hook is unset: Reload is refused, -EOPNOTSUPP), several clients at once, a VFIO fd.
 */

#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "daemon-config.h"
#include "fuzz.h"
#include "idle-flush.h"
#include "log.h"
#include "manager.h"
#include "monitor-dispatch.h"
#include "tsm-platform.h"


/* The worker's loop runs in rounds of this long (a guest request goes to the monitor's thread
 * and back); an input ends after this many rounds without a byte for the client, or at most. */
#define ROUND_USEC 500
#define QUIET_ROUNDS 2U
#define MAX_ROUNDS 300U
#define OUTPUT_MAX (1U << 20)

typedef struct MonitorSide {
        struct event_base *base;
        TsmPlatform *platform;
        MonitorContexts *contexts;
        MonitorDispatch *dispatch;
        struct event *ev_channel, *ev_again;
        DaemonConfig config;
} MonitorSide;

/* In memory where there is some: the audit log syncs its records. */
static char dir[] = "/dev/shm/tsmd-fuzz-worker-XXXXXX";
static char admin_socket[sizeof(dir) + 16], guest_socket[sizeof(dir) + 16];
static MonitorSide monitor;
static Manager *worker;

static bool granted_scope(const char *pci_address, TsmBackendType backend, const char *scope, void *userdata) {
        /* The monitor's own bound is not what is fuzzed: the worker's policy is. */
        return true;
}

static bool listed_device(const char *pci_address, TsmBackendType backend, void *userdata) {
        return true;
}

static void on_monitor_channel(evutil_socket_t fd, short what, void *userdata) {
        MonitorSide *s = userdata;
        const char *reason = NULL;
        int r;

        r = monitor_dispatch_process(s->dispatch, &reason);
        /* SECURITY: whatever its clients send, the real worker never breaks a rule of the
         * channel: tsmd would kill it as compromised. */
        if (reason)
                fprintf(stderr, "The worker broke a rule of the channel: %s: %s\n",
                        monitor_dispatch_get_violation_type(s->dispatch), reason);
        CHECK(r >= 0);
        if (r > 0)
                CHECK(event_add(s->ev_again, &(struct timeval) {}) >= 0);
}

static void *monitor_thread(void *userdata) {
        MonitorSide *s = userdata;

        (void) event_base_dispatch(s->base);
        return NULL;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        (void) remove(path);
        return 0;
}

/* At exit, with the worker still running: nothing it writes then is looked at. */
static void dir_remove(void) {
        (void) nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *name, const char *text) {
        char path[sizeof(dir) + 64];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "we");
        CHECK(f);
        CHECK(fputs(text, f) >= 0);
        CHECK(fclose(f) == 0);
}

static int listen_on(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        CHECK(strlen(path) < sizeof(sa.sun_path));
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        CHECK(fd >= 0);
        CHECK(bind(fd, (struct sockaddr *) &sa, sizeof(sa)) >= 0);
        CHECK(listen(fd, 64) >= 0);
        return fd;
}

static void setup(void) {
        char config_path[sizeof(dir) + 16], text[4096];
        MonitorListenSocket sockets[2];
        const MonitorDispatchCallbacks callbacks = {
                .scope_granted = granted_scope,
                .device_listed = listed_device,
        };
        const char *message = NULL;
        unsigned line = 0;
        pthread_t thread;
        int sv[2];

        /* The worker takes only root's files (manager.c, WORKER_TRUST), so ours must be. A
         * skip (meson's 77), past libFuzzer's exit handler, which would make it a failure. */
        if (geteuid() != 0) {
                fprintf(stderr, "fuzz-worker-varlink: the worker reads only root's files, skipping as uid %u.\n",
                        (unsigned) geteuid());
                _exit(77);
        }
        /* Every refusal and malformed call is logged: not what a fuzzer should print. */
        log_set_max_level(LOG_CRIT);
        /* A client hanging up must not kill the worker (tsmd-worker.c does the same). */
        (void) signal(SIGPIPE, SIG_IGN);
        if (access("/dev/shm", W_OK) < 0)
                memcpy(dir, "/tmp/////", strlen("/dev/shm/"));
        CHECK(mkdtemp(dir));
        CHECK(atexit(dir_remove) == 0);
        snprintf(text, sizeof(text),
                 "[Platform]\nMode=emulated\nIommuDevice=/nonexistent/tsmd-fuzz-iommu\nEmulatedLatencyUSec=0\n"
                 "EmulatedDebugScopes=yes\n"
                 "[Audit]\nDirectory=%1$s/audit\nJournal=no\nMaxFileSize=65536\nFiles=2\n"
                 "[Policy]\nFile=%1$s/policy.conf\nDropInDirectory=%1$s/policy.d\n"
                 "[Guest]\nContextStateDirectory=%1$s/contexts\n",
                 dir);
        write_file("tsmd.conf", text);
        snprintf(text, sizeof(text),
                 "[Client:fuzz]\nUsers=%1$u\nDevices=*\nScopes=info state-change debug-read debug-write\n"
                 "[Admin]\nUsers=%1$u\n",
                 (unsigned) geteuid());
        write_file("policy.conf", text);
        snprintf(config_path, sizeof(config_path), "%s/tsmd.conf", dir);
        snprintf(admin_socket, sizeof(admin_socket), "%s/all", dir);
        snprintf(guest_socket, sizeof(guest_socket), "%s/guest", dir);

        /* The monitor, as tsmd sets it up (monitor.c), over the same files. */
        CHECK(daemon_config_init(&monitor.config) >= 0);
        CHECK(daemon_config_load(&monitor.config, config_path, &line, &message) >= 0);
        monitor.base = event_base_new_prioritized();
        CHECK(monitor.base);
        CHECK(tsm_platform_new(monitor.base, &monitor.config.platform, &monitor.platform) >= 0);
        CHECK(monitor_contexts_new(&monitor.contexts) >= 0);
        monitor_contexts_set_max(monitor.contexts, 64);
        CHECK(monitor_dispatch_new(monitor.base, monitor.platform, monitor.contexts, &callbacks, &monitor,
                                   &monitor.dispatch) >= 0);

        /* Blocking, as tsmd makes it (monitor.c). Its start sequence waits in the worker's end
         * before the worker reads it. */
        CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) >= 0);
        sockets[0] = (MonitorListenSocket) { .fd = listen_on(admin_socket), .kind = TSM_PRIV_SOCKET_ALL };
        sockets[1] = (MonitorListenSocket) { .fd = listen_on(guest_socket), .kind = TSM_PRIV_SOCKET_GUEST };
        CHECK(monitor_dispatch_start(monitor.dispatch, sv[0], sockets, ELEMENTSOF(sockets)) >= 0);
        safe_close(sockets[0].fd);
        safe_close(sockets[1].fd);
        monitor.ev_channel = event_new(monitor.base, sv[0], EV_READ | EV_PERSIST, on_monitor_channel, &monitor);
        monitor.ev_again = evtimer_new(monitor.base, on_monitor_channel, &monitor);
        CHECK(monitor.ev_channel && monitor.ev_again && event_add(monitor.ev_channel, NULL) >= 0);
        CHECK(pthread_create(&thread, NULL, monitor_thread, &monitor) == 0);
        CHECK(pthread_detach(thread) == 0);

        /* The worker, as tsmd-worker starts it. */
        CHECK(manager_new(config_path, false, sv[1], -EBADF, &worker) >= 0);
        CHECK(manager_listen(worker) >= 0);
        CHECK(priv_send_ready(worker->channel) >= 0);
        log_set_max_level(LOG_CRIT);
}

/* One round of the worker's loop. */
static void run_round(void) {
        CHECK(event_base_loopexit(worker->base, &(struct timeval) { .tv_usec = ROUND_USEC }) >= 0);
        CHECK(event_base_loop(worker->base, 0) >= 0);
        CHECK(!priv_channel_is_gone(worker->channel));
}

/* What came for the client: NUL-terminated messages, each JSON (those longer than OUTPUT_MAX
 * unchecked). */
static bool read_output(int fd, char *out, size_t *n_out) {
        bool got = false;

        for (;;) {
                char buf[65536];
                ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

                if (n <= 0)
                        return got;
                got = true;
                for (ssize_t i = 0; i < n; i++) {
                        if (buf[i] != 0) {
                                if (*n_out <= OUTPUT_MAX)
                                        out[(*n_out)++] = buf[i];
                                continue;
                        }
                        if (*n_out <= OUTPUT_MAX) {
                                json_object *o;

                                out[*n_out] = 0;
                                o = json_tokener_parse(out);
                                CHECK(o);
                                json_object_put(o);
                        }
                        *n_out = 0;
                }
        }
}

static int client_connect(bool guest) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        strcpy(sa.sun_path, guest ? guest_socket : admin_socket);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        CHECK(fd >= 0);
        CHECK(connect(fd, (struct sockaddr *) &sa, sizeof(sa)) >= 0);
        return fd;
}

/* Sends what the socket takes now; the first send carries fd (if any). */
static size_t client_send(int fd, const uint8_t *data, size_t size, int *attach) {
        union {
                struct cmsghdr cmsg;
                uint8_t b[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct iovec iov = { .iov_base = (void *) data, .iov_len = size };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

        if (size == 0)
                return 0;
        if (*attach >= 0) {
                mh.msg_control = &control;
                mh.msg_controllen = sizeof(control.b);
                control.cmsg.cmsg_level = SOL_SOCKET;
                control.cmsg.cmsg_type = SCM_RIGHTS;
                control.cmsg.cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(&control.cmsg), attach, sizeof(int));
        }
        n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n <= 0)
                return 0;
        *attach = safe_close(*attach);
        return (size_t) n;
}

/* Runs the worker's loop until it has been quiet for QUIET_ROUNDS rounds (MAX_ROUNDS at most),
 * sending the client's bytes as the socket takes them. */
static void converse(int fd, const uint8_t *data, size_t size, int *attach, char *out, size_t *n_out) {
        unsigned quiet = 0;

        for (unsigned i = 0; i < MAX_ROUNDS && quiet < QUIET_ROUNDS; i++) {
                size_t sent = client_send(fd, data, size, attach);

                data += sent;
                size -= sent;
                run_round();
                if (read_output(fd, out, n_out) || sent > 0)
                        quiet = 0;
                else
                        quiet++;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static char *out;
        size_t n_out = 0;
        int fd, attach = -EBADF;
        uint8_t flags;

        if (size < 1 || size > 256 * 1024)
                return 0;
        if (!worker) {
                setup();
                out = malloc(OUTPUT_MAX + 2);
                CHECK(out);
        }
        flags = data[0];
        data++;
        size--;

        fd = client_connect(flags & 1);
        if (flags & 2) {
                /* What the emulated platform's monitor hands out as an iommufd (monitor-iommufd.c). */
                attach = memfd_create("tsmd-emulated-iommufd", MFD_CLOEXEC | MFD_ALLOW_SEALING);
                CHECK(attach >= 0);
        }

        if (flags & 4)
                converse(fd, data, size, &attach, out, &n_out);
        else
                /* A call at a time, each once the worker is done with the one before (its answer,
                 * or the state it left): calls that depend on each other meet their state. */
                while (size > 0) {
                        const uint8_t *nul = memchr(data, 0, size);
                        size_t len = nul ? (size_t) (nul - data) + 1 : size;

                        converse(fd, data, len, &attach, out, &n_out);
                        data += len;
                        size -= len;
                }
        safe_close(attach);

        /* The client goes, and what it owned with it. */
        safe_close(fd);
        for (unsigned i = 0; i < MAX_ROUNDS && (i < QUIET_ROUNDS || !LIST_EMPTY(&worker->guest_clients)); i++)
                run_round();
        log_set_max_level(LOG_CRIT);
        return 0;
}
