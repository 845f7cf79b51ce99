/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tsmd under a service manager, played by this test: it passes a named listening socket
 * (LISTEN_FDS/LISTEN_FDNAMES, as systemd does), reads READY/STATUS/WATCHDOG/STOPPING and
 * FDSTORE notifications on its own NOTIFY_SOCKET, keeps the stored fds, kills tsmd and starts
 * it again with them, as systemd does on a crash. A reconnecting client gets its context
 * back (a VMM on libtsm too, whose reclaim libtsm abandoned before the restart); stale and
 * foreign reclaims are refused.
 */

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <sysexits.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "base64.h"
#include "config.h"
#include "emu-config.h"
#include "emu-device.h"
#include "fdstore.h"
#include "harness.h"
#include "json-util.h"
#include "platform-test-util.h"
#include "sha256.h"
#include "sysfs-fixture.h"
#include "tdisp.h"
#include "tsm.h"
#include "varlink-client.h"

typedef struct Manager {
        char dir[64];
        char guest[128], admin[128], notify[128], config[128];
        /* Kernel mode: the fixture sysfs tree and the fake kernel's directory (empty: emulated). */
        char sysfs_root[128], kernel_dir[128];
        int listen_fd, admin_fd, notify_fd;
        pid_t pid;
        /* What tsmd told us. */
        bool ready, stopping, watchdog;
        /* READY=1 or RELOADING=1 after STOPPING=1: never, as systemd would take it. */
        bool ready_after_stopping;
        unsigned n_watchdog, n_status;
        char status[256];
        /* The fd store, as systemd keeps it: one copy of a file description, under the name it
         * came with first; a name may be on several. */
        struct {
                int fd;
                char name[160];
        } store[8];
        size_t n_store;
        bool store_removed; /* an FDSTOREREMOVE=1 of anything but the configuration */
        /* notify_queue_fill()'s datagrams: sent, and read back (each clears watchdog: a ping
         * read after the last was sent after the queue had room again). */
        unsigned n_filled, n_fill_read;
        char removed_name[160]; /* the last FDSTOREREMOVE's FDNAME naming a context (no carrier) */
        /* tsmd's stderr, appended across its starts (empty: the test's own stderr). */
        char log[160];
        /* worker-proxy's control file, with the proxy in the worker's seat (empty: tsmd's own
         * worker). */
        char control[160];
        /* notify-crash-preload.c's count-down file, with it preloaded (empty: not). */
        char crash[160];
        /* WATCHDOG_USEC= (empty: 2 s, pinged once a second). Unlike systemd, the tests read
         * notifications only while they wait for one: under a short one, the monitor's
         * pings would fill the socket's queue (and be dropped, monitor-notify.h), and the
         * notifications that wait for room (READY=1, the fd store's) would block it. */
        char watchdog_usec[24];
        /* signal-at-reset-preload.c's signal, with it preloaded (0: not). */
        int signal_at_reset;
        /* Signals tsmd is started with blocked (none: as systemd starts it). */
        sigset_t blocked_at_start;
        /* Uncaptured, tsmd's stderr passes through a copy of this test's into <dir>/stderr.log
         * (stderr_tee()): these copy it. */
        pid_t tees[16];
        size_t n_tees;
} Manager;

static int unix_socket(int type, const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0), one = 1;

        ASSERT_TRUE(fd >= 0);
        strcpy(sa.sun_path, path);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof(sa)));
        if (type == SOCK_STREAM)
                ASSERT_OK(listen(fd, 16));
        else
                ASSERT_OK(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)));
        return fd;
}

/* Emulated, or kernel mode with the fake kernel's IommuDevice= (manager_init_kernel()). */
static void manager_init_mode(Manager *m, bool kernel) {
        char path[256];
        FILE *f;

        *m = (Manager){};
        ASSERT_OK(sigemptyset(&m->blocked_at_start));
        strcpy(m->dir, "/tmp/test-restart-XXXXXX");
        ASSERT_NOT_NULL(mkdtemp(m->dir));
        test_remove_at_end(m->dir);
        ASSERT_OK(chmod(m->dir, 0755));
        snprintf(m->guest, sizeof(m->guest), "%s/guest", m->dir);
        snprintf(m->notify, sizeof(m->notify), "%s/notify", m->dir);
        snprintf(m->config, sizeof(m->config), "%s/tsmd.conf", m->dir);
        snprintf(m->admin, sizeof(m->admin), "%s/admin", m->dir);
        m->listen_fd = unix_socket(SOCK_STREAM, m->guest);
        ASSERT_OK(chmod(m->guest, 0666));
        m->admin_fd = unix_socket(SOCK_STREAM, m->admin);
        m->notify_fd = unix_socket(SOCK_DGRAM, m->notify);

        f = fopen(m->config, "w");
        ASSERT_NOT_NULL(f);
        if (kernel) /* about restarts: devices attached without their VFIO fds (test-kernel.c has those) */
                fprintf(f, "[Platform]\nMode=kernel\nIommuDevice=/dev/null\n[Guest]\nRequireVfioFileDescriptor=no\n");
        else
                fprintf(f, "[Platform]\nMode=emulated\nIommuDevice=%s/no-iommu\n", m->dir);
        fprintf(f, "[Guest]\nContextStateDirectory=%s/state\nReclaimTimeoutSec=30\n"
                   "[Audit]\nDirectory=%s/audit\nJournal=no\n"
                   "[Policy]\nFile=%s/policy.conf\nDropInDirectory=%s/policy.d\n",
                   m->dir, m->dir, m->dir, m->dir);
        fclose(f);
        snprintf(path, sizeof(path), "%s/policy.conf", m->dir);
        f = fopen(path, "w");
        ASSERT_NOT_NULL(f);
        fprintf(f, "[Client:tests]\nUsers=root 65534\nDevices=*\n");
        fclose(f);
}

static void manager_init(Manager *m) {
        manager_init_mode(m, false);
}

/* Kernel mode on the two-TSM fixture, in a mount namespace of this test's own, with the fake
 * v5 kernel (tests/platform/fake-tsm-kernel-preload.c) answering on IommuDevice=/dev/null. */
static void manager_init_kernel(Manager *m) {
        int r;

        manager_init_mode(m, true);
        snprintf(m->sysfs_root, sizeof(m->sysfs_root), "%s/sysfs", m->dir);
        snprintf(m->kernel_dir, sizeof(m->kernel_dir), "%s/kernel", m->dir);
        ASSERT_OK(mkdir(m->sysfs_root, 0755));
        ASSERT_OK(mkdir(m->kernel_dir, 0755));
        platform_test_sandbox(false);
        ASSERT_OK(mount("tmpfs", m->sysfs_root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"));
        r = sysfs_fixture_apply_file(m->sysfs_root, PLATFORM_FIXTURE_DIR "/two-tsms.sysfs");
        if (r < 0)
                TEST_FAIL("building fixture two-tsms: %s", strerror(-r));
}

static char *read_text(Manager *m, const char *name);

/* A pipe for tsmd's stderr whose other end a child of ours copies to our stderr and to
 * <dir>/stderr.log, where expect_no_sanitizer_report() reads it: the worker's exit status,
 * where LeakSanitizer reports, is the monitor's to see, not ours. Returns the write end. */
static int stderr_tee(Manager *m) {
        int p[2];
        pid_t pid;

        /* The copies of earlier starts that are done. */
        for (size_t i = 0; i < m->n_tees;)
                if (waitpid(m->tees[i], NULL, WNOHANG) == m->tees[i])
                        m->tees[i] = m->tees[--m->n_tees];
                else
                        i++;
        ASSERT_TRUE(m->n_tees < ELEMENTSOF(m->tees));
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        fflush(NULL);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                char path[PATH_MAX], buf[4096];
                ssize_t k;
                int fd;

                /* Nothing of the test's (sockets, stored fds) kept open here: only the pipe. */
                if (dup2(p[0], 3) != 3)
                        _exit(1);
                (void) syscall(SYS_close_range, 4U, ~0U, 0U);
                snprintf(path, sizeof(path), "%s/stderr.log", m->dir);
                fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                while ((k = read(3, buf, sizeof(buf))) > 0) {
                        (void) !write(STDERR_FILENO, buf, k);
                        if (fd >= 0)
                                (void) !write(fd, buf, k);
                }
                _exit(0);
        }
        close(p[0]);
        m->tees[m->n_tees++] = pid;
        return p[1];
}

/* Once tsmd exited: fails the test if a sanitizer reported in tsmd or its workers (UBSan
 * reports and goes on; a worker's leaks are reported at its exit, which the monitor sees). */
static void expect_no_sanitizer_report(Manager *m) {
        static const char *const reports[] = { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:" };
        char *log;

        /* Their copies end when the last of tsmd's processes has closed its stderr. */
        for (size_t i = 0; i < m->n_tees; i++)
                (void) waitpid(m->tees[i], NULL, 0);
        m->n_tees = 0;
        log = read_text(m, m->log[0] ? "tsmd.log" : "stderr.log");
        for (size_t i = 0; i < ELEMENTSOF(reports); i++)
                if (strstr(log, reports[i]))
                        TEST_FAIL("a sanitizer reported an error in tsmd (see its log above or in %s): %s", m->dir,
                                  reports[i]);
        free(log);
}

/* Starts tsmd the way systemd would: the socket at fd 3, stored fds after it. */
static void manager_start(Manager *m) {
        int tee = m->log[0] ? -EBADF : stderr_tee(m);

        m->ready = false;
        m->pid = fork();
        ASSERT_TRUE(m->pid >= 0);
        if (m->pid == 0) {
                char pid[16], names[1024], n[8];
                int nfds;

                /* A failing test must not leave a daemon behind. */
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                /* As systemd starts a service: every signal at its default action and none
                 * blocked, whatever this test was started with (nohup(1) leaves SIGHUP ignored,
                 * a shell's background job SIGINT), which execv() would pass on to tsmd. */
                sigset_t none;

                for (int sig = 1; sig < NSIG; sig++)
                        (void) signal(sig, SIG_DFL);
                ASSERT_OK(sigemptyset(&none));
                ASSERT_OK(sigprocmask(SIG_SETMASK, &none, NULL));
                ASSERT_OK(sigprocmask(SIG_BLOCK, &m->blocked_at_start, NULL));
                /* Move them all out of the way first: any may already sit at 3 or after. */
                int l = fcntl(m->listen_fd, F_DUPFD, 100), a = fcntl(m->admin_fd, F_DUPFD, 100), s[8];

                for (size_t i = 0; i < m->n_store; i++)
                        s[i] = fcntl(m->store[i].fd, F_DUPFD, 100);

                if (m->log[0]) {
                        int fd = open(m->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

                        ASSERT_TRUE(fd >= 0 && dup2(fd, STDERR_FILENO) == STDERR_FILENO);
                } else
                        ASSERT_TRUE(dup2(tee, STDERR_FILENO) == STDERR_FILENO);
                /* The two sockets of tsmd.socket and tsmd-admin.socket, named as there. */
                ASSERT_TRUE(dup2(l, 3) == 3);
                ASSERT_TRUE(dup2(a, 4) == 4);
                nfds = 2;
                snprintf(names, sizeof(names), "io.tsmd.Guest:io.tsmd.Admin");
                for (size_t i = 0; i < m->n_store; i++) {
                        ASSERT_TRUE(dup2(s[i], 5 + (int) i) == 5 + (int) i);
                        nfds++;
                        ASSERT_TRUE(strlen(names) + 1 + strlen(m->store[i].name) < sizeof(names));
                        strcat(names, ":");
                        strcat(names, m->store[i].name);
                }
                snprintf(pid, sizeof(pid), "%i", getpid());
                snprintf(n, sizeof(n), "%i", nfds);
                setenv("LISTEN_PID", pid, 1);
                setenv("LISTEN_FDS", n, 1);
                setenv("LISTEN_FDNAMES", names, 1);
                setenv("NOTIFY_SOCKET", m->notify, 1);
                setenv("WATCHDOG_PID", pid, 1);
                setenv("WATCHDOG_USEC", m->watchdog_usec[0] ? m->watchdog_usec : "2000000", 1);
                char *argv[8] = { (char *) "tsmd", (char *) "--config", m->config };
                size_t n_args = 3;
                char sysfs_arg[160];

                if (m->sysfs_root[0] || m->crash[0] || m->signal_at_reset > 0) {
                        char preload[768] = "", asan[512], sig[16];

                        if (m->sysfs_root[0])
                                strcat(preload, FAKE_KERNEL_PRELOAD);
                        if (m->crash[0])
                                strcat(strcat(preload, preload[0] ? ":" : ""), NOTIFY_CRASH_PRELOAD);
                        if (m->signal_at_reset > 0) {
                                strcat(strcat(preload, preload[0] ? ":" : ""), SIGNAL_AT_RESET_PRELOAD);
                                snprintf(sig, sizeof(sig), "%d", m->signal_at_reset);
                                setenv("TSMD_TEST_SIGNAL_AT_RESET", sig, 1);
                        }
                        setenv("LD_PRELOAD", preload, 1);
                        /* Under ASan the preloaded library comes before the sanitizer's runtime. */
                        snprintf(asan, sizeof(asan), "%s%sverify_asan_link_order=0", getenv("ASAN_OPTIONS") ?: "",
                                 getenv("ASAN_OPTIONS") ? ":" : "");
                        setenv("ASAN_OPTIONS", asan, 1);
                }
#ifdef HAVE_ASAN
                /* LeakSanitizer's symbolizer is a program, which the worker's seccomp filter kills
                 * (SIGSYS) before the report is out (it symbolizes to match suppressions): raw
                 * addresses, and the report is in the log. */
                char asan_symbolize[512];
                snprintf(asan_symbolize, sizeof(asan_symbolize), "%s%ssymbolize=0", getenv("ASAN_OPTIONS") ?: "",
                         getenv("ASAN_OPTIONS") ? ":" : "");
                setenv("ASAN_OPTIONS", asan_symbolize, 1);
#endif
                if (m->crash[0])
                        setenv("TSMD_TEST_CRASH_FILE", m->crash, 1);
                if (m->sysfs_root[0]) {
                        setenv("TSMD_FAKE_KERNEL_DEVICE", "/dev/null", 1);
                        setenv("TSMD_FAKE_KERNEL_DIR", m->kernel_dir, 1);
                        snprintf(sysfs_arg, sizeof(sysfs_arg), "--sysfs-root=%s", m->sysfs_root);
                        argv[n_args++] = sysfs_arg;
                }
                if (m->control[0]) {
                        char worker[160];

                        /* The proxy runs as the worker's user, and starts the real worker by its
                         * path: a copy in our directory (manager_use_proxy()). */
                        snprintf(worker, sizeof(worker), "%s/tsmd-worker", m->dir);
                        setenv("TSMD_PROXY_WORKER", worker, 1);
                        setenv("TSMD_PROXY_CONTROL", m->control, 1);
                        argv[n_args++] = (char *) "--worker=" WORKER_PROXY_PATH;
                }
                argv[n_args] = NULL;
                execv(TSMD_PATH, argv);
                _exit(127);
        }
        safe_close(tee);
}

/* Whether a and b are one file description, as systemd tells (same_fd(): kcmp(), else the
 * inode). */
static bool same_file(int a, int b) {
        struct stat sa, sb;
        long r = syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, a, b);

        if (r >= 0)
                return r == 0;
        ASSERT_OK(fstat(a, &sa));
        ASSERT_OK(fstat(b, &sb));
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* FDSTORE=1 of fd (taken) under name, as systemd does it: a file description it has already
 * stays under the name it has. */
static void store_put(Manager *m, int fd, const char *name) {
        for (size_t i = 0; i < m->n_store; i++)
                if (same_file(m->store[i].fd, fd)) {
                        close(fd);
                        return;
                }
        ASSERT_TRUE(m->n_store < ELEMENTSOF(m->store));
        m->store[m->n_store].fd = fd;
        snprintf(m->store[m->n_store].name, sizeof(m->store[m->n_store].name), "%s", name);
        m->n_store++;
}

/* FDSTOREREMOVE=1 of name: every fd stored under it leaves the store. */
static void store_remove(Manager *m, const char *name) {
        for (size_t i = 0; i < m->n_store;)
                if (streq(m->store[i].name, name)) {
                        close(m->store[i].fd);
                        m->store[i] = m->store[--m->n_store];
                } else
                        i++;
}

/* A rename's carrier's name (fdstore.h): "ctxid.<uid>.<new id>.<old id>". */
static bool is_carrier_name(const char *name) {
        const char *id = strneq(name, "ctxid.", 6) ? strchr(name + 6, '.') : NULL;

        return id && strlen(id) == 1 + 32 + 1 + 32;
}

/* The fd stored under a context's own name, not a carrier's, and its name (NULL if not
 * wanted); -1 if none. There is one at most. */
static int stored_context(Manager *m, const char **ret_name) {
        int fd = -1;

        for (size_t i = 0; i < m->n_store; i++) {
                if (is_carrier_name(m->store[i].name) || streq(m->store[i].name, FDSTORE_EMU_STATE_NAME) ||
                    streq(m->store[i].name, FDSTORE_LAST_GOOD_NAME))
                        continue;
                ASSERT_TRUE(fd < 0);
                fd = m->store[i].fd;
                if (ret_name)
                        *ret_name = m->store[i].name;
        }
        return fd;
}

/* The fd store's entries but the configuration tsmd keeps there (FDSTORE_LAST_GOOD_NAME). */
static size_t stored_but_last_good(Manager *m) {
        size_t n = 0;

        for (size_t i = 0; i < m->n_store; i++)
                n += !streq(m->store[i].name, FDSTORE_LAST_GOOD_NAME);
        return n;
}

/* The fd tsmd keeps its configuration under, -1 if none. */
static int stored_last_good(Manager *m) {
        for (size_t i = 0; i < m->n_store; i++)
                if (streq(m->store[i].name, FDSTORE_LAST_GOOD_NAME))
                        return m->store[i].fd;
        return -1;
}

/* Reads notifications for up to timeout_ms, or until pred is true. */
static void manager_wait(Manager *m, bool (*pred)(Manager *m), int timeout_ms) {
        /* Bounded by the clock: a flood of notifications has poll() return at once. */
        uint64_t deadline = now_monotonic_usec() + (uint64_t) timeout_ms * 1000;

        while (now_monotonic_usec() < deadline && !(pred && pred(m))) {
                char buf[4096], control[CMSG_SPACE(sizeof(int) * 8) + CMSG_SPACE(sizeof(struct ucred))];
                struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) - 1 };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                                     .msg_controllen = sizeof(control) };
                struct pollfd p = { .fd = m->notify_fd, .events = POLLIN };
                bool remove = false;
                int fd = -1;
                ssize_t k;

                if (poll(&p, 1, 10) <= 0)
                        continue;
                k = recvmsg(m->notify_fd, &mh, MSG_CMSG_CLOEXEC);
                ASSERT_TRUE(k >= 0);
                buf[k] = 0;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                                memcpy(&fd, CMSG_DATA(c), sizeof(int));

                for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
                        if (streq(line, "READY=1") || streq(line, "RELOADING=1")) {
                                m->ready = m->ready || streq(line, "READY=1");
                                m->ready_after_stopping = m->ready_after_stopping || m->stopping;
                        }
                        else if (streq(line, "STOPPING=1"))
                                m->stopping = true;
                        else if (streq(line, "WATCHDOG=1")) {
                                m->watchdog = true;
                                m->n_watchdog++;
                        }
                        else if (streq(line, "X_TEST=1")) {
                                m->n_fill_read++;
                                m->watchdog = false;
                        } else if (strneq(line, "STATUS=", 7)) {
                                snprintf(m->status, sizeof(m->status), "%s", line + 7);
                                m->n_status++;
                        }
                        else if (strneq(line, "FDNAME=", 7) && fd >= 0) {
                                /* The service manager keeps it; we keep one, as it would. */
                                store_put(m, fd, line + 7);
                                fd = -1;
                        } else if (strneq(line, "FDNAME=", 7) && remove) {
                                if (!is_carrier_name(line + 7) && !streq(line + 7, FDSTORE_EMU_STATE_NAME) &&
                                    !streq(line + 7, FDSTORE_LAST_GOOD_NAME))
                                        snprintf(m->removed_name, sizeof(m->removed_name), "%s", line + 7);
                                /* The configuration's replacement is not a context's removal. */
                                if (!streq(line + 7, FDSTORE_LAST_GOOD_NAME))
                                        m->store_removed = true;
                                store_remove(m, line + 7);
                        } else if (streq(line, "FDSTOREREMOVE=1"))
                                remove = true;
                }
                if (fd >= 0)
                        close(fd);
        }
}

static bool is_ready(Manager *m) {
        return m->ready;
}

static const char *removed_wanted;

static bool removed_is_wanted(Manager *m) {
        return streq(m->removed_name, removed_wanted);
}

/* Waits (bounded) for the monitor to take name out of the fd store (a rename's second step). */
static void wait_removed(Manager *m, const char *name) {
        removed_wanted = name;
        manager_wait(m, removed_is_wanted, 5000);
        ASSERT_STREQ(m->removed_name, name);
}

/* Starts tsmd and waits (bounded) for its READY=1. */
static void manager_start_ready(Manager *m) {
        manager_start(m);
        manager_wait(m, is_ready, 10000);
        ASSERT_TRUE(m->ready);
}

static bool is_stopping(Manager *m) {
        return m->stopping;
}

static bool has_stored(Manager *m) {
        return stored_context(m, NULL) >= 0;
}

static bool has_watchdog(Manager *m) {
        return m->watchdog;
}

static bool store_removed(Manager *m) {
        return m->store_removed;
}

static VarlinkClient *connect_client(Manager *m) {
        VarlinkClient *c;

        ASSERT_OK(varlink_client_connect(m->guest, &c));
        varlink_client_set_timeout(c, 10 * 1000000ULL);
        return c;
}

static json_object *call_ok(VarlinkClient *c, const char *method, const char *params) {
        json_object *reply = NULL;
        const char *error = NULL;

        ASSERT_OK(varlink_client_call(c, method, params ? json_tokener_parse(params) : NULL, &reply, &error));
        if (error)
                TEST_FAIL("%s: %s %s", method, error, json_object_to_json_string(reply));
        return reply;
}

static const char *call_error(VarlinkClient *c, const char *method, const char *params) {
        json_object *reply = NULL;
        const char *error = NULL;

        ASSERT_OK(varlink_client_call(c, method, params ? json_tokener_parse(params) : NULL, &reply, &error));
        ASSERT_NOT_NULL(error);
        return error;
}

static void manager_wait(Manager *m, bool (*pred)(Manager *m), int timeout_ms);

/* Waits (bounded) for tsmd to exit, reading its notifications meanwhile as systemd does: a stop
 * sends some that block while the queue is full (the emulated devices' state into the fd store). */
static int manager_exit_status(Manager *m) {
        int status;

        for (uint64_t deadline = now_monotonic_usec() + 10 * 1000000ULL; now_monotonic_usec() < deadline;) {
                pid_t r = waitpid(m->pid, &status, WNOHANG);
                if (r == m->pid)
                        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                manager_wait(m, NULL, 10);
        }
        kill(m->pid, SIGKILL);
        waitpid(m->pid, &status, 0);
        return -1;
}

static ino_t inode_of(int fd) {
        struct stat st;

        ASSERT_OK(fstat(fd, &st));
        return st.st_ino;
}

static void manager_drain(Manager *m);

/* The name a context is kept under (fdstore.h): the first 128 bits of SHA-256 over its
 * reclaim token's text, in hex. Written out here, not taken from tsmd, to pin it down. */
static void reclaim_id_of(const char *token, char ret[static 33]) {
        uint8_t d[SHA256_DIGEST_SIZE];

        sha256(token, strlen(token), d);
        for (size_t i = 0; i < 16; i++)
                snprintf(ret + 2 * i, 3, "%02x", d[i]);
}

/* Neither the fd store nor the state directory names a context by its token, nor does any state
 * file or tsmd's log (where captured) hold it; the context's state is under its reclaim id. */
static void expect_token_hidden(Manager *m, const char *token) {
        _cleanup_free_ char *log = NULL;
        const char *stored_name = NULL;
        char id[33], path[PATH_MAX], want[128];
        bool found = false;
        struct dirent *de;
        DIR *d;

        manager_drain(m);
        reclaim_id_of(token, id);
        if (stored_context(m, &stored_name) >= 0) {
                snprintf(want, sizeof(want), "ctxid.%u.%s", (unsigned) getuid(), id);
                ASSERT_STREQ(stored_name, want);
        }
        for (size_t i = 0; i < m->n_store; i++)
                ASSERT_NULL(strstr(m->store[i].name, token));

        snprintf(path, sizeof(path), "%s/state", m->dir);
        d = opendir(path);
        ASSERT_NOT_NULL(d);
        while ((de = readdir(d))) {
                _cleanup_free_ char *text = NULL;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (strstr(de->d_name, token))
                        TEST_FAIL("state file '%s' is named by the token", de->d_name);
                snprintf(path, sizeof(path), "state/%s", de->d_name);
                text = read_text(m, path);
                ASSERT_NULL(strstr(text, token));
                snprintf(want, sizeof(want), "%s.state", id);
                found = found || streq(de->d_name, want);
        }
        closedir(d);
        ASSERT_TRUE(found);
        if (m->log[0]) {
                log = read_text(m, "tsmd.log");
                ASSERT_NULL(strstr(log, token));
        }
}

TEST(notify_and_watchdog) {
        Manager m;

        manager_init(&m);
        manager_start_ready(&m);
        manager_wait(&m, has_watchdog, 2000);
        ASSERT_TRUE(m.watchdog); /* WATCHDOG_USEC=2s: a ping every second */
        ASSERT_NOT_NULL(strstr(m.status, "clients")); /* STATUS= follows READY=1 */

        /* The Guest socket serves VMMs only; the admin socket everything. */
        {
                VarlinkClient *g, *a;
                json_object *reply;
                const char *error = NULL;

                ASSERT_OK(varlink_client_connect(m.guest, &g));
                ASSERT_OK(varlink_client_connect(m.admin, &a));
                ASSERT_OK(varlink_client_call(g, "io.tsmd.Admin.ListDevices", NULL, &reply, &error));
                ASSERT_STREQ(error, "org.varlink.service.InterfaceNotFound");
                ASSERT_OK(varlink_client_call(g, "io.tsmd.Guest.OpenContext", NULL, &reply, &error));
                ASSERT_NULL(error);
                ASSERT_OK(varlink_client_call(a, "io.tsmd.Admin.ListDevices", NULL, &reply, &error));
                ASSERT_NULL(error);
                varlink_client_free(g);
                varlink_client_free(a);
        }

        /* SIGTERM: STOPPING=1, then a clean exit. */
        kill(m.pid, SIGTERM);
        ASSERT_EQ(manager_exit_status(&m), 0);
        expect_no_sanitizer_report(&m);
        manager_wait(&m, NULL, 100);
        ASSERT_TRUE(m.stopping);
}

static bool status_says_no_clients(Manager *m) {
        return strneq(m->status, "0 clients", 9);
}

static bool status_says_one_client(Manager *m) {
        return strneq(m->status, "1 clients", 9);
}

static unsigned status_baseline;

static bool status_arrived(Manager *m) {
        return m->n_status > status_baseline;
}

/* Every connect and disconnect makes the worker report its numbers; a client connecting in a
 * loop must not have the service manager parse and announce a STATUS= each (PID 1's time, a
 * D-Bus signal each): one a second at most goes out, and the last state still arrives. With a
 * short watchdog, whose pings come ten times a second, as the monitor's tick. */
TEST(status_is_sent_about_once_a_second) {
        uint64_t start, elapsed_usec;
        VarlinkClient *last;
        Manager m;

        manager_init(&m);
        snprintf(m.watchdog_usec, sizeof(m.watchdog_usec), "200000");
        manager_start_ready(&m);
        manager_wait(&m, status_says_no_clients, 3000);
        ASSERT_TRUE(status_says_no_clients(&m));

        m.n_status = 0;
        start = now_monotonic_usec();
        for (unsigned i = 0; i < 150; i++) {
                VarlinkClient *c = connect_client(&m);

                /* A round trip: the worker has seen the connection before it goes. */
                call_ok(c, "org.varlink.service.GetInfo", NULL);
                varlink_client_free(c);
                /* Reading as the service manager does, so that none is lost to a full queue
                 * (net.unix.max_dgram_qlen may be 10): one datagram a call, 10 ms at most. */
                manager_wait(&m, NULL, 10);
                manager_wait(&m, NULL, 10);
        }
        /* Right after a STATUS= went out, a state that differs from every second one of the
         * loop's: it has to wait for its turn, and still arrive. */
        status_baseline = m.n_status;
        manager_wait(&m, status_arrived, 3000);
        ASSERT_TRUE(status_arrived(&m));
        last = connect_client(&m);
        call_ok(last, "org.varlink.service.GetInfo", NULL);
        m.status[0] = 0;
        manager_wait(&m, status_says_one_client, 3000);
        ASSERT_TRUE(status_says_one_client(&m));
        elapsed_usec = now_monotonic_usec() - start;
        /* One a second, one more for the start and one that may have been queued before the
         * count began; without the limit, one for each of the 300 connects and disconnects. */
        ASSERT_LE(m.n_status, (unsigned) (elapsed_usec / 1000000) + 3);

        varlink_client_free(last);
        kill(m.pid, SIGTERM);
        ASSERT_EQ(manager_exit_status(&m), 0);
}

static bool status_says_audit_full(Manager *m) {
        return strneq(m->status, "Audit log full, ", 16);
}

/* An audit disk full is in STATUS= (systemctl status), where an administrator looks first, for
 * as long as it lasts: tsmd refuses what it cannot record meanwhile. */
TEST(status_says_while_the_audit_log_takes_no_records) {
        const struct passwd *pw = getpwnam(TSMD_WORKER_USER);
        char audit[256], filler[300], block[4096];
        VarlinkClient *c;
        int fd;
        Manager m;

        if (geteuid() != 0 || !pw)
                SKIP("needs root and the worker's user, to give the worker a full audit file system");
        platform_test_sandbox(false);
        manager_init(&m);
        snprintf(audit, sizeof(audit), "%s/audit", m.dir);
        snprintf(filler, sizeof(filler), "%s/filler", audit);
        ASSERT_OK(mkdir(audit, 0750));
        ASSERT_OK(mount("tsmd-test-audit", audit, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=0750"));
        ASSERT_OK(chown(audit, pw->pw_uid, pw->pw_gid));
        manager_start_ready(&m);
        manager_wait(&m, status_says_no_clients, 3000);
        ASSERT_TRUE(status_says_no_clients(&m));

        fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ASSERT_OK(fd);
        memset(block, 'x', sizeof(block));
        while (write(fd, block, sizeof(block)) > 0)
                ;
        ASSERT_EQ(errno, ENOSPC);
        safe_close(fd);
        /* Contexts opened and closed until their records are past the page the log's file had. */
        c = connect_client(&m);
        for (unsigned i = 0;; i++) {
                json_object *reply = NULL;
                const char *error = NULL;
                char params[64];

                ASSERT_TRUE(i < 100);
                ASSERT_OK(varlink_client_call(c, "io.tsmd.Guest.OpenContext", NULL, &reply, &error));
                if (!error) {
                        snprintf(params, sizeof(params), "{\"context\":%d}",
                                 json_object_get_int(json_object_object_get(reply, "context")));
                        ASSERT_OK(varlink_client_call(c, "io.tsmd.Guest.CloseContext", json_tokener_parse(params),
                                                      &reply, &error));
                }
                if (error) {
                        ASSERT_STREQ(error, "io.tsmd.Guest.AuditFailed");
                        break;
                }
        }
        manager_wait(&m, status_says_audit_full, 3000);
        if (!status_says_audit_full(&m))
                TEST_FAIL("STATUS=%s", m.status);
        ASSERT_NOT_NULL(strstr(m.status, "1 clients"));

        /* Room again: the log says so by itself within a second, and STATUS= with it. */
        ASSERT_OK(truncate(filler, 0));
        manager_wait(&m, status_says_one_client, 4000);
        ASSERT_TRUE(status_says_one_client(&m));
        call_ok(c, "io.tsmd.Guest.OpenContext", NULL);

        varlink_client_free(c);
        kill(m.pid, SIGTERM);
        ASSERT_EQ(manager_exit_status(&m), 0);
        expect_no_sanitizer_report(&m);
        (void) umount2(audit, MNT_DETACH);
}

/* The service manager kills a service that misses WATCHDOG_USEC: pings come at half of it
 * (sd_watchdog_enabled(3)) when that is under the monitor's one-second tick. */
TEST(watchdog_pings_within_a_short_interval) {
        Manager m;

        manager_init(&m);
        snprintf(m.watchdog_usec, sizeof(m.watchdog_usec), "200000");
        manager_start_ready(&m);
        manager_wait(&m, has_watchdog, 2000);
        m.n_watchdog = 0;
        manager_wait(&m, NULL, 1000);
        if (m.n_watchdog < 5)
                TEST_FAIL("%u watchdog pings in 1 s with WATCHDOG_USEC=200ms", m.n_watchdog);
        kill(m.pid, SIGTERM);
        manager_wait(&m, is_stopping, 2000); /* read on: it pings until it is gone */
        ASSERT_EQ(manager_exit_status(&m), 0);
        expect_no_sanitizer_report(&m);
}

/* READY=1 means the worker serves. A first worker that cannot start (here: its audit log is a
 * directory) leaves nobody served: a SIGHUP the monitor then handles alone (no worker runs between
 * two restarts) reloads its own part, but says neither RELOADING=1 nor READY=1, which would tell
 * the service manager the start is done. Once the worker can start, the next worker's READY is. */
TEST(no_ready_before_a_worker_serves) {
        const struct passwd *pw = getpwnam(TSMD_WORKER_USER);
        char audit[256], log[300];
        Manager m;

        if (geteuid() != 0 || !pw)
                SKIP("needs root and the worker's user, to give the worker its audit directory");
        manager_init(&m);
        snprintf(audit, sizeof(audit), "%s/audit", m.dir);
        snprintf(log, sizeof(log), "%s/audit.log", audit);
        ASSERT_OK(mkdir(audit, 0750));
        ASSERT_OK(chown(audit, pw->pw_uid, pw->pw_gid));
        ASSERT_OK(mkdir(log, 0700));
        manager_start(&m);
        /* Workers exit at once, restarted after 100, 200, 400, 800 ms...: SIGHUPs a while
         * apart find the monitor without one. */
        manager_wait(&m, NULL, 1500);
        for (int i = 0; i < 10; i++) {
                ASSERT_OK(kill(m.pid, SIGHUP));
                manager_wait(&m, NULL, 150);
        }
        ASSERT_FALSE(m.ready);
        ASSERT_EQ(waitpid(m.pid, NULL, WNOHANG), 0);

        ASSERT_OK(rmdir(log));
        /* The next worker starts: at most one backoff (3.2 s, then 6.4 s) away. */
        manager_wait(&m, is_ready, 20000);
        ASSERT_TRUE(m.ready);
        kill(m.pid, SIGTERM);
        ASSERT_EQ(manager_exit_status(&m), 0);
        expect_no_sanitizer_report(&m);
}

/* A field of /proc/<pid>/status, read in base (16 for capability sets, 10 for ids). */
static uint64_t status_field(pid_t pid, const char *field, int base) {
        char path[64], line[256];
        uint64_t v = UINT64_MAX;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%i/status", pid);
        f = fopen(path, "re");
        ASSERT_NOT_NULL(f);
        while (fgets(line, sizeof(line), f))
                if (strneq(line, field, strlen(field)))
                        v = strtoull(line + strlen(field), NULL, base);
        fclose(f);
        return v;
}

static uint64_t status_hex(pid_t pid, const char *field) {
        return status_field(pid, field, 16);
}

/* The monitor's only child: its worker. */
static pid_t worker_of(pid_t monitor) {
        char path[96], buf[64] = "";
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%i/task/%i/children", monitor, monitor);
        f = fopen(path, "re");
        ASSERT_NOT_NULL(f);
        ASSERT_NOT_NULL(fgets(buf, sizeof(buf), f));
        fclose(f);
        return (pid_t) strtol(buf, NULL, 10);
}

/* Waits (bounded) until the monitor runs a worker other than worker, which ended. */
static void worker_replaced(Manager *m, pid_t worker) {
        char path[96];

        snprintf(path, sizeof(path), "/proc/%i/task/%i/children", m->pid, m->pid);
        for (unsigned i = 0; i < 1000; i++) {
                char buf[64] = "";
                FILE *f = fopen(path, "re");
                pid_t now;

                ASSERT_NOT_NULL(f);
                now = fgets(buf, sizeof(buf), f) ? (pid_t) strtol(buf, NULL, 10) : 0;
                fclose(f);
                if (now > 0 && now != worker)
                        return;
                usleep(10000);
        }
        TEST_FAIL("worker %i was not replaced", (int) worker);
}

TEST(capabilities_are_the_documented_minimum) {
        /* The monitor: CAP_KILL (5), CAP_SETGID (6), CAP_SETUID (7), CAP_SETPCAP (8),
         * CAP_SYS_RAWIO (17) and CAP_SYS_RESOURCE (24), where the environment has them. */
        uint64_t minimum = (UINT64_C(1) << 5) | (UINT64_C(1) << 6) | (UINT64_C(1) << 7) | (UINT64_C(1) << 8) |
                           (UINT64_C(1) << 17) | (UINT64_C(1) << 24), ours;
        struct passwd *pw;
        pid_t worker;
        Manager m;

        if (geteuid() != 0)
                SKIP("tsmd drops capabilities only when it has them");
        ours = status_hex(getpid(), "CapBnd:");
        manager_init(&m);
        manager_start_ready(&m);
        ASSERT_EQ(status_hex(m.pid, "CapEff:"), minimum & ours);
        ASSERT_EQ(status_hex(m.pid, "CapPrm:"), minimum & ours);
        ASSERT_EQ(status_hex(m.pid, "CapBnd:"), minimum & ours);
        ASSERT_EQ(status_hex(m.pid, "CapInh:"), 0);
        ASSERT_EQ(status_hex(m.pid, "CapAmb:"), 0);

        /* The worker, which parses what VMMs send: nothing at all, for good, as its own user. */
        worker = worker_of(m.pid);
        ASSERT_TRUE(worker > 0);
        pw = getpwnam(TSMD_WORKER_USER);
        ASSERT_NOT_NULL(pw);
        ASSERT_EQ(status_hex(worker, "CapEff:"), 0);
        ASSERT_EQ(status_hex(worker, "CapPrm:"), 0);
        ASSERT_EQ(status_hex(worker, "CapBnd:"), 0);
        ASSERT_EQ(status_hex(worker, "CapInh:"), 0);
        ASSERT_EQ(status_hex(worker, "CapAmb:"), 0);
        ASSERT_EQ(status_field(worker, "NoNewPrivs:", 10), 1);
        ASSERT_EQ(status_field(worker, "Uid:", 10), pw->pw_uid); /* the real uid; all four are checked below */
        {
                char path[64], line[256];
                unsigned r_, e_, s_, f_;
                FILE *f;

                snprintf(path, sizeof(path), "/proc/%i/status", worker);
                f = fopen(path, "re");
                ASSERT_NOT_NULL(f);
                while (fgets(line, sizeof(line), f))
                        if (sscanf(line, "Uid: %u %u %u %u", &r_, &e_, &s_, &f_) == 4 ||
                            sscanf(line, "Gid: %u %u %u %u", &r_, &e_, &s_, &f_) == 4) {
                                unsigned want = strneq(line, "Uid:", 4) ? (unsigned) pw->pw_uid : (unsigned) pw->pw_gid;
                                ASSERT_TRUE(r_ == want && e_ == want && s_ == want && f_ == want);
                        }
                fclose(f);
        }
        kill(m.pid, SIGTERM);
        ASSERT_EQ(manager_exit_status(&m), 0);
        expect_no_sanitizer_report(&m);
}

/* The last record of event (with result, if not NULL) in the current audit file (a new
 * reference), or NULL. */
static json_object *last_audit_record_with(Manager *m, const char *event, const char *result) {
        char path[PATH_MAX], line[4096];
        json_object *found = NULL;
        FILE *f;

        snprintf(path, sizeof(path), "%s/audit/audit.log", m->dir);
        f = fopen(path, "re");
        ASSERT_NOT_NULL(f);
        while (fgets(line, sizeof(line), f)) {
                json_object *rec = json_tokener_parse(line);

                if (rec && streq(strempty(json_get_string(rec, "event")), event) &&
                    (!result || streq(strempty(json_get_string(rec, "result")), result))) {
                        json_object_put(found);
                        found = rec;
                } else
                        json_object_put(rec);
        }
        fclose(f);
        return found;
}

static json_object *last_audit_record(Manager *m, const char *event) {
        return last_audit_record_with(m, event, NULL);
}

/* Waits (bounded) for the last record of event with result (NULL: any). */
static json_object *wait_audit_record(Manager *m, const char *event, const char *result) {
        json_object *rec = NULL;

        for (unsigned i = 0; i < 500 && !(rec = last_audit_record_with(m, event, result)); i++)
                usleep(10000);
        if (!rec)
                TEST_FAIL("no %s record with result %s", event, result ?: "(any)");
        return rec;
}

/* A number field of a record: there, and not null (which json-c would read as 0). */
static int64_t record_int(json_object *rec, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(rec, key, &v) || !json_object_is_type(v, json_type_int))
                TEST_FAIL("record without a number '%s': %s", key, json_object_to_json_string(rec));
        return json_object_get_int64(v);
}

TEST(context_survives_restart) {
        VarlinkClient *c;
        json_object *reply;
        char token[64], params[256];
        ino_t ino;
        int fd, status;
        pid_t pid;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to try a reclaim as another uid");

        manager_init(&m);
        manager_start_ready(&m);

        c = connect_client(&m);
        reply = call_ok(c, "io.tsmd.Guest.OpenContext", NULL);
        snprintf(token, sizeof(token), "%s", json_get_string(reply, "reclaimToken"));
        ASSERT_EQ(strlen(token), 32);
        fd = varlink_client_take_fd(c, (size_t) json_object_get_int(json_object_object_get(reply, "fileDescriptor")));
        ASSERT_TRUE(fd >= 0);
        ino = inode_of(fd);
        call_ok(c, "io.tsmd.Guest.AttachDevice", "{\"context\":1,\"vdeviceId\":5,\"pciAddress\":\"0000:01:00.0\"}");
        call_ok(c, "io.tsmd.Guest.Bind", "{\"context\":1,\"vdeviceId\":5}");

        /* The iommufd went to the fd store under a name saying whose it is. */
        manager_wait(&m, has_stored, 5000);
        ASSERT_TRUE(stored_context(&m, NULL) >= 0);
        ASSERT_EQ(inode_of(stored_context(&m, NULL)), ino);
        expect_token_hidden(&m, token);

        /* tsmd crashes; the client notices; the service manager restarts tsmd with the fds. */
        kill(m.pid, SIGKILL);
        ASSERT_EQ(manager_exit_status(&m), 128 + SIGKILL);
        ASSERT_ERRNO(varlink_client_call(c, "io.tsmd.Service.Ping", NULL, &reply, NULL), ECONNRESET);
        varlink_client_free(c);
        manager_start_ready(&m);

        c = connect_client(&m);
        /* Handles belong to connections: the new one has none yet. */
        ASSERT_STREQ(call_error(c, "io.tsmd.Guest.GetDeviceState", "{\"context\":1,\"vdeviceId\":5}"),
                     "io.tsmd.Guest.NoSuchContext");
        /* A stale token is refused. */
        ASSERT_STREQ(call_error(c, "io.tsmd.Guest.ReclaimContext", "{\"reclaimToken\":\"00000000000000000000000000000000\"}"),
                     "io.tsmd.Guest.ReclaimRefused");

        /* Another user with the right token is refused too. */
        snprintf(params, sizeof(params), "{\"reclaimToken\":\"%s\"}", token);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                VarlinkClient *other;
                if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
                        _exit(2);
                other = connect_client(&m);
                _exit(streq(call_error(other, "io.tsmd.Guest.ReclaimContext", params), "io.tsmd.Guest.ReclaimRefused") ? 0 : 1);
        }
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        /* The owner gets it back: the same iommufd, its vDevice still attached and bound. */
        reply = call_ok(c, "io.tsmd.Guest.ReclaimContext", params);
        {
                int64_t ctx = json_object_get_int64(json_object_object_get(reply, "context"));
                int back = varlink_client_take_fd(c, (size_t) json_object_get_int(json_object_object_get(reply, "fileDescriptor")));
                char q[128];

                ASSERT_TRUE(back >= 0);
                ASSERT_EQ(inode_of(back), ino);
                close(back);
                snprintf(q, sizeof(q), "{\"context\":%lld,\"vdeviceId\":5}", (long long) ctx);
                reply = call_ok(c, "io.tsmd.Guest.GetDeviceState", q);
                ASSERT_TRUE(json_object_get_boolean(json_object_object_get(reply, "bound")));
                ASSERT_STREQ(json_get_string(reply, "state"), "config_locked");
        }
        /* Only once. */
        ASSERT_STREQ(call_error(c, "io.tsmd.Guest.ReclaimContext", params), "io.tsmd.Guest.ReclaimRefused");

        /* Closing it for good takes it out of the store. */
        call_ok(c, "io.tsmd.Guest.CloseContext", "{\"context\":1}");
        manager_wait(&m, store_removed, 5000);
        ASSERT_TRUE(m.store_removed);

        /* The unbind on closing was done for the process that reclaimed it, and says so (once
         * the TSM has answered it: the record follows the CloseContext reply). */
        {
                _cleanup_(json_object_putp) json_object *rec = NULL;

                rec = wait_audit_record(&m, "release", NULL);
                ASSERT_EQ(json_object_get_int64(json_object_object_get(rec, "pid")), (int64_t) getpid());
                ASSERT_EQ(json_object_get_int64(json_object_object_get(rec, "gid")), (int64_t) getgid());
                ASSERT_EQ(json_object_get_int64(json_object_object_get(rec, "vdeviceId")), 5);
        }

        varlink_client_free(c);
        close(fd);
        kill(m.pid, SIGTERM);
        ASSERT_EQ(manager_exit_status(&m), 0);
        expect_no_sanitizer_report(&m);
}

/* ---- the fake kernel's side (manager_init_kernel()) ------------------------------------------- */

/* The calls the kernel saw ("op VDEVICE TYPE" lines), into calls. */
static void kernel_calls(Manager *m, char *calls, size_t size) {
        char path[PATH_MAX];
        _cleanup_close_ int fd = -EBADF;
        ssize_t k;

        snprintf(path, sizeof(path), "%s/calls", m->kernel_dir);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        k = fd >= 0 ? read(fd, calls, size - 1) : 0;
        calls[MAX(k, (ssize_t) 0)] = 0;
}

/* The calls the kernel saw are one of two sequences. */
static void expect_kernel_calls_either(Manager *m, const char *want, const char *or_want) {
        char calls[4096];

        kernel_calls(m, calls, sizeof(calls));
        if (!streq(calls, want) && !streq(calls, or_want))
                TEST_FAIL("the kernel saw\n%swhere it should have seen\n%sor\n%s", calls, want, or_want);
}

/* Waits (bounded) until the calls the kernel saw are exactly want ("op VDEVICE TYPE" lines). */
static void expect_kernel_calls(Manager *m, const char *want) {
        char calls[4096];

        for (int i = 0; i < 1000; i++) {
                kernel_calls(m, calls, sizeof(calls));
                if (streq(calls, want))
                        return;
                usleep(10000);
        }
        TEST_FAIL("the kernel saw\n%swhere it should have seen\n%s", calls, want);
}

/* While it exists, the kernel holds calls for that vDevice, as on a device taking its time. */
static void kernel_hold(Manager *m, uint32_t vdevice, bool on) {
        char path[PATH_MAX];

        snprintf(path, sizeof(path), "%s/hold-%u", m->kernel_dir, vdevice);
        if (on)
                safe_close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        else
                ASSERT_OK(unlink(path));
}

/*
 * tsmd dies, monitor and all, while the kernel holds a VMM's Bind. The iommufd outlives it in
 * the fd store, but whether the bind happened nobody can tell: the next tsmd unbinds the vDevice
 * (and records that) before its VMM reclaims the context, which then shows it unbound, as it
 * is, and binds it again.
 */
TEST(bind_cut_off_by_a_restart_is_undone) {
        static const char bind[] = "{\"method\":\"io.tsmd.Guest.Bind\",\"parameters\":{\"context\":1,\"vdeviceId\":11}}";
        _cleanup_(json_object_putp) json_object *rec = NULL;
        VarlinkClient *c;
        json_object *reply;
        char token[64], params[128];
        int64_t ctx;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root (a mount namespace, a fixture bound over /sys)");
        manager_init_kernel(&m);
        manager_start_ready(&m);

        c = connect_client(&m);
        reply = call_ok(c, "io.tsmd.Guest.OpenContext", NULL);
        snprintf(token, sizeof(token), "%s", json_get_string(reply, "reclaimToken"));
        call_ok(c, "io.tsmd.Guest.AttachDevice", "{\"context\":1,\"vdeviceId\":11,\"pciAddress\":\"0000:01:00.0\"}");
        manager_wait(&m, has_stored, 5000);
        ASSERT_TRUE(stored_context(&m, NULL) >= 0);

        /* The Bind, written onto the VMM's connection, reaches the kernel and stays there. */
        kernel_hold(&m, 11, true);
        ASSERT_EQ(send(varlink_client_get_fd(c), bind, sizeof(bind), MSG_NOSIGNAL), (ssize_t) sizeof(bind));
        expect_kernel_calls(&m, "op 11 1\n");
        kill(m.pid, SIGKILL);
        ASSERT_EQ(manager_exit_status(&m), 128 + SIGKILL);
        varlink_client_free(c);
        kernel_hold(&m, 11, false);

        manager_start_ready(&m);
        expect_kernel_calls(&m, "op 11 1\nop 11 2\n");
        rec = wait_audit_record(&m, "restore-unbind", NULL);
        ASSERT_STREQ(json_get_string(rec, "result"), "ok");
        ASSERT_STREQ(json_get_string(rec, "pci"), "0000:01:00.0");
        ASSERT_STREQ(json_get_string(rec, "backend"), "sev-tio");
        ASSERT_EQ(json_object_get_int64(json_object_object_get(rec, "vdeviceId")), 11);
        /* On behalf of the VMM that had the context, as it was when it opened it. */
        ASSERT_EQ(record_int(rec, "uid"), (int64_t) getuid());
        ASSERT_EQ(record_int(rec, "gid"), (int64_t) getgid());
        ASSERT_EQ(record_int(rec, "pid"), (int64_t) getpid());

        c = connect_client(&m);
        snprintf(params, sizeof(params), "{\"reclaimToken\":\"%s\"}", token);
        reply = call_ok(c, "io.tsmd.Guest.ReclaimContext", params);
        ctx = json_object_get_int64(json_object_object_get(reply, "context"));
        safe_close(varlink_client_take_fd(c, (size_t) json_object_get_int(json_object_object_get(reply, "fileDescriptor"))));
        snprintf(params, sizeof(params), "{\"context\":%lld,\"vdeviceId\":11}", (long long) ctx);
        reply = call_ok(c, "io.tsmd.Guest.GetDeviceState", params);
        ASSERT_FALSE(json_object_get_boolean(json_object_object_get(reply, "bound")));
        call_ok(c, "io.tsmd.Guest.Bind", params);
        expect_kernel_calls(&m, "op 11 1\nop 11 2\nop 11 1\n");
        reply = call_ok(c, "io.tsmd.Guest.GetDeviceState", params);
        ASSERT_TRUE(json_object_get_boolean(json_object_object_get(reply, "bound")));

        varlink_client_free(c);
        kill(m.pid, SIGTERM);
        ASSERT_EQ(manager_exit_status(&m), 0);
        expect_no_sanitizer_report(&m);
        (void) umount2(m.sysfs_root, MNT_DETACH);
}

/* ---- contexts across a crash ------------------------------------------------------------------ */

/* Sets key in tsmd.conf for the next start: a key may be set only once in the file, so an
 * earlier assignment of it goes (each key name is in one section only). */
static void config_set(Manager *m, const char *section, const char *key, const char *value) {
        char *text = NULL, *line = NULL;
        size_t size = 0, allocated = 0, n = strlen(key);
        FILE *in = fopen(m->config, "re"), *out = open_memstream(&text, &size);

        ASSERT_NOT_NULL(in);
        ASSERT_NOT_NULL(out);
        while (getline(&line, &allocated, in) > 0)
                if (!(strncmp(line, key, n) == 0 && line[n] == '='))
                        fputs(line, out);
        fprintf(out, "[%s]\n%s=%s\n", section, key, value);
        fclose(in);
        ASSERT_OK(fclose(out));
        free(line);

        out = fopen(m->config, "we");
        ASSERT_NOT_NULL(out);
        fputs(text, out);
        ASSERT_OK(fclose(out));
        free(text);
}

/* Opens a context (its reclaim token into token) with the vDevices attach names ("ID ADDRESS"
 * pairs), waits until the fd store has it, and kills tsmd: a crash the context must survive. */
static void crash_with_context(Manager *m, const char *const *attach, size_t n, char token[static 64]) {
        VarlinkClient *c = connect_client(m);
        json_object *reply = call_ok(c, "io.tsmd.Guest.OpenContext", NULL);
        char params[128], address[32];
        unsigned id;

        snprintf(token, 64, "%s", json_get_string(reply, "reclaimToken"));
        safe_close(varlink_client_take_fd(c, (size_t) json_object_get_int(json_object_object_get(reply, "fileDescriptor"))));
        for (size_t i = 0; i < n; i++) {
                ASSERT_EQ(sscanf(attach[i], "%u %31s", &id, address), 2);
                snprintf(params, sizeof(params), "{\"context\":1,\"vdeviceId\":%u,\"pciAddress\":\"%s\"}", id, address);
                call_ok(c, "io.tsmd.Guest.AttachDevice", params);
        }
        manager_wait(m, has_stored, 5000);
        ASSERT_TRUE(stored_context(m, NULL) >= 0);
        kill(m->pid, SIGKILL);
        ASSERT_EQ(manager_exit_status(m), 128 + SIGKILL);
        varlink_client_free(c);
}

/* Reclaims the context under token on c, and keeps the renewed token the answer carries in its
 * place (a new one, 32 hex digits); returns its handle (its fd is closed). */
static int64_t reclaim(VarlinkClient *c, char token[static 64]) {
        char params[96];
        const char *renewed;
        json_object *reply;

        snprintf(params, sizeof(params), "{\"reclaimToken\":\"%s\"}", token);
        reply = call_ok(c, "io.tsmd.Guest.ReclaimContext", params);
        safe_close(varlink_client_take_fd(c, (size_t) json_object_get_int(json_object_object_get(reply, "fileDescriptor"))));
        renewed = json_get_string(reply, "reclaimToken");
        ASSERT_NOT_NULL(renewed);
        ASSERT_EQ(strlen(renewed), 32u);
        ASSERT_EQ(strspn(renewed, "0123456789abcdef"), 32u);
        ASSERT_FALSE(streq(renewed, token));
        snprintf(token, 64, "%s", renewed);
        return json_object_get_int64(json_object_object_get(reply, "context"));
}

/* reclaim(), and the parameters that name vDevice vdevice in the context it gives back. */
static int64_t reclaim_vdevice(VarlinkClient *c, char token[static 64], unsigned vdevice, char *params, size_t size) {
        int64_t ctx = reclaim(c, token);

        snprintf(params, size, "{\"context\":%lld,\"vdeviceId\":%u}", (long long) ctx, vdevice);
        return ctx;
}

static void stop(Manager *m) {
        manager_wait(m, NULL, 200); /* what it notified meanwhile: it blocks on a full queue */
        kill(m->pid, SIGTERM);
        ASSERT_EQ(manager_exit_status(m), 0);
        expect_no_sanitizer_report(m);
}

/*
 * A device gone while tsmd was down: its vDevice comes back gone, and its VMM can detach it.
 * The new monitor never knew it (the worker could not attach it), and a detach of an unknown
 * vDevice is a violation: the worker used to be killed for it, dropping every client (and, left
 * to the reclaim timeout, again after each restart while the context's state file stayed).
 */
TEST(device_missing_at_restart) {
        static const char *const attach[] = { "7 0000:02:00.0" };
        VarlinkClient *c, *bystander;
        char token[64], params[128];
        pid_t worker;
        int64_t ctx;
        Manager m;

        manager_init(&m);
        config_set(&m, "Platform", "EmulatedDevices", "0000:01:00.0,0000:02:00.0");
        manager_start_ready(&m);
        crash_with_context(&m, attach, ELEMENTSOF(attach), token);

        /* Restarted without the device (the last [Platform] section wins). */
        config_set(&m, "Platform", "EmulatedDevices", "0000:01:00.0");
        manager_start_ready(&m);
        worker = worker_of(m.pid);
        bystander = connect_client(&m);
        call_ok(bystander, "io.tsmd.Guest.OpenContext", NULL);

        c = connect_client(&m);
        ctx = reclaim_vdevice(c, token, 7, params, sizeof(params));
        ASSERT_STREQ(call_error(c, "io.tsmd.Guest.GetDeviceState", params), "io.tsmd.Guest.DeviceGone");
        call_ok(c, "io.tsmd.Guest.DetachDevice", params);
        snprintf(params, sizeof(params), "{\"context\":%lld}", (long long) ctx);
        call_ok(c, "io.tsmd.Guest.CloseContext", params);

        /* The same worker serves on; the bystander never lost its connection. */
        call_ok(bystander, "io.tsmd.Service.Ping", NULL);
        ASSERT_EQ(worker_of(m.pid), worker);
        varlink_client_free(c);
        varlink_client_free(bystander);
        stop(&m);
}

/* Connects under gid (SO_PEERCRED takes the effective ids at connect()). */
static VarlinkClient *connect_client_as(Manager *m, gid_t gid) {
        VarlinkClient *c;

        ASSERT_OK(setegid(gid));
        c = connect_client(m);
        ASSERT_OK(setegid(getgid()));
        return c;
}

/* Opens a context with vDevice 5 bound (its reclaim token into token) on c. */
static void open_bound_context(VarlinkClient *c, char token[static 64]) {
        json_object *reply = call_ok(c, "io.tsmd.Guest.OpenContext", NULL);

        snprintf(token, 64, "%s", json_get_string(reply, "reclaimToken"));
        safe_close(varlink_client_take_fd(c, (size_t) json_object_get_int(json_object_object_get(reply, "fileDescriptor"))));
        call_ok(c, "io.tsmd.Guest.AttachDevice", "{\"context\":1,\"vdeviceId\":5,\"pciAddress\":\"0000:01:00.0\"}");
        call_ok(c, "io.tsmd.Guest.Bind", "{\"context\":1,\"vdeviceId\":5}");
}

/* What tsmd notified up to now, taken in: systemd reads a service's notifications before it
 * sees the service die. */
static void manager_drain(Manager *m) {
        manager_wait(m, NULL, 200);
}

/* tsmd crashes with the contexts in the fd store, and is started again with them. */
static void crash_and_restart(Manager *m) {
        manager_drain(m);
        manager_wait(m, has_stored, 5000);
        ASSERT_TRUE(stored_context(m, NULL) >= 0);
        kill(m->pid, SIGKILL);
        ASSERT_EQ(manager_exit_status(m), 128 + SIGKILL);
        manager_start_ready(m);
}

/* The record of the release at the reclaim timeout (bounded wait); tsmd is stopped then. */
static json_object *release_at_timeout(Manager *m) {
        json_object *rec = NULL;

        rec = wait_audit_record(m, "release", NULL);
        stop(m);
        return rec;
}

/* Opens a context under owner_gid with a bound vDevice 5, kills the worker (whole_tsmd false:
 * the monitor starts another) or all of tsmd (restarted with the fd store), and returns the
 * record of the release at the reclaim timeout, nobody having reclaimed the context. */
static json_object *release_of_unreclaimed(bool whole_tsmd, gid_t owner_gid) {
        VarlinkClient *c;
        char token[64];
        pid_t worker;
        Manager m;

        manager_init(&m);
        config_set(&m, "Guest", "ReclaimTimeoutSec", "1");
        manager_start_ready(&m);
        c = connect_client_as(&m, owner_gid);
        open_bound_context(c, token);
        if (whole_tsmd)
                crash_and_restart(&m);
        else {
                worker = worker_of(m.pid);
                ASSERT_TRUE(worker > 0);
                ASSERT_OK(kill(worker, SIGKILL));
        }
        varlink_client_free(c);
        return release_at_timeout(&m);
}

/*
 * A context nobody reclaims after a restart of the worker or of tsmd is released at the
 * reclaim timeout, on behalf of the VMM that had it: the release record names its uid, gid
 * and pid as they were when it opened the context (kept in the context's state file across
 * the restart; the process may have gone meanwhile), as a release made while it was
 * connected would.
 */
TEST(an_unreclaimed_context_is_released_on_behalf_of_its_owner) {
        const gid_t owner_gid = 4242; /* not the test's own: a gid of 0 would look like a default */

        if (geteuid() != 0)
                SKIP("needs root to connect under another gid");
        for (int whole_tsmd = 0; whole_tsmd <= 1; whole_tsmd++) {
                _cleanup_(json_object_putp) json_object *rec = release_of_unreclaimed(whole_tsmd, owner_gid);
                json_object *context = NULL;

                ASSERT_STREQ(json_get_string(rec, "result"), "ok");
                ASSERT_EQ(record_int(rec, "vdeviceId"), 5);
                ASSERT_EQ(record_int(rec, "uid"), (int64_t) geteuid());
                ASSERT_EQ(record_int(rec, "gid"), (int64_t) owner_gid);
                ASSERT_EQ(record_int(rec, "pid"), (int64_t) getpid());
                /* No handle: a restored context gets one when it is reclaimed. */
                ASSERT_TRUE(json_object_object_get_ex(rec, "contextId", &context) && !context);
        }
}

/* A context reclaimed after a restart is released on behalf of the VMM that took it back, also
 * when nothing about it changed before the next restart. */
TEST(a_reclaimed_context_is_released_on_behalf_of_who_took_it_back) {
        _cleanup_(json_object_putp) json_object *rec = NULL;
        VarlinkClient *c;
        char token[64];
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to connect under another gid");
        manager_init(&m);
        manager_start_ready(&m);
        c = connect_client_as(&m, 4242);
        open_bound_context(c, token);
        crash_and_restart(&m);
        varlink_client_free(c);

        c = connect_client_as(&m, 4343);
        (void) reclaim(c, token);
        config_set(&m, "Guest", "ReclaimTimeoutSec", "1"); /* for the next start */
        crash_and_restart(&m);
        varlink_client_free(c);

        rec = release_at_timeout(&m);
        ASSERT_EQ(record_int(rec, "vdeviceId"), 5);
        ASSERT_EQ(record_int(rec, "gid"), 4343);
        ASSERT_EQ(record_int(rec, "pid"), (int64_t) getpid());
}

/*
 * A kernel vDevice bound before a restart of tsmd stays bound in the kernel, with the iommufd in
 * the fd store; the next tsmd attaches it again from the state file, and its monitor must know
 * it is bound: after a restart of the worker alone the next worker takes the monitor's word for
 * it, and when its VMM then lets it go it is unbound, and the release recorded. Before, the
 * monitor recorded it unbound, the worker after it believed that, and neither unbound it: the
 * TDI stayed locked, unrecorded, until the VMM closed its iommufd.
 */
TEST(a_kernel_vdevice_bound_before_a_restart_is_unbound_at_its_release) {
        _cleanup_(json_object_putp) json_object *rec = NULL;
        VarlinkClient *c;
        char token[64], params[128];
        pid_t worker;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root (a mount namespace, a fixture bound over /sys)");
        manager_init_kernel(&m);
        manager_start_ready(&m);
        c = connect_client(&m);
        open_bound_context(c, token);
        expect_kernel_calls(&m, "op 5 1\n");
        crash_and_restart(&m);
        varlink_client_free(c);

        /* The kernel kept the binding: the new tsmd neither binds nor unbinds it. */
        expect_kernel_calls(&m, "op 5 1\n");
        worker = worker_of(m.pid);
        ASSERT_TRUE(worker > 0);
        ASSERT_OK(kill(worker, SIGKILL));
        worker_replaced(&m, worker);

        c = connect_client(&m);
        (void) reclaim_vdevice(c, token, 5, params, sizeof(params));
        ASSERT_TRUE(json_object_get_boolean(json_object_object_get(call_ok(c, "io.tsmd.Guest.GetDeviceState", params),
                                                                   "bound")));
        /* The VMM hangs up: its context is released, the vDevice unbound. */
        varlink_client_free(c);
        expect_kernel_calls(&m, "op 5 1\nop 5 2\n");
        rec = wait_audit_record(&m, "release", NULL);
        ASSERT_STREQ(json_get_string(rec, "result"), "ok");
        ASSERT_EQ(record_int(rec, "vdeviceId"), 5);
        ASSERT_STREQ(json_get_string(rec, "pci"), "0000:01:00.0");
        stop(&m);
        (void) umount2(m.sysfs_root, MNT_DETACH);
}


/* A call refused for want of its state saved: StateNotSaved, with the save's errno. */
static void expect_state_not_saved_errno(VarlinkClient *c, const char *method, const char *params, int error_number) {
        json_object *reply = NULL;
        const char *error = NULL;

        ASSERT_OK(varlink_client_call(c, method, json_tokener_parse(params), &reply, &error));
        ASSERT_STREQ(error, "io.tsmd.Guest.StateNotSaved");
        ASSERT_EQ(record_int(reply, "errno"), error_number);
}

/* The same where the worker may not write its state directory. */
static void expect_state_not_saved(VarlinkClient *c, const char *method, const char *params) {
        expect_state_not_saved_errno(c, method, params, EACCES);
}

/*
 * SECURITY: the state file is all a restarted tsmd knows of a context's vDevices. A Bind or
 * Unbind whose "changing" cannot be saved (a full /run: here a directory the worker may not
 * write) is refused before the TSM hears of it, and recorded so. Before, the Bind went to the
 * kernel unsaved: after a crash the next tsmd had the vDevice unbound, and when its VMM let it
 * go nobody unbound the TDI, and no release was recorded.
 */
TEST(a_bind_or_unbind_whose_state_cannot_be_saved_is_refused) {
        static const char params[] = "{\"context\":1,\"vdeviceId\":5}";
        _cleanup_(json_object_putp) json_object *refused = NULL, *rec = NULL;
        char token[64], dir[PATH_MAX], reclaimed[128];
        VarlinkClient *c;
        json_object *reply;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root (a mount namespace, a fixture bound over /sys)");
        manager_init_kernel(&m);
        manager_start_ready(&m);
        c = connect_client(&m);
        reply = call_ok(c, "io.tsmd.Guest.OpenContext", NULL);
        snprintf(token, sizeof(token), "%s", json_get_string(reply, "reclaimToken"));
        safe_close(varlink_client_take_fd(c, (size_t) json_object_get_int(json_object_object_get(reply, "fileDescriptor"))));
        call_ok(c, "io.tsmd.Guest.AttachDevice", "{\"context\":1,\"vdeviceId\":5,\"pciAddress\":\"0000:01:00.0\"}");

        snprintf(dir, sizeof(dir), "%s/state", m.dir);
        ASSERT_OK(chmod(dir, 0500)); /* its owner, the worker, may not replace the file */
        expect_state_not_saved(c, "io.tsmd.Guest.Bind", params);
        refused = wait_audit_record(&m, "bind", "io.tsmd.Guest.StateNotSaved");
        ASSERT_EQ(record_int(refused, "vdeviceId"), 5);
        ASSERT_FALSE(json_object_get_boolean(json_object_object_get(call_ok(c, "io.tsmd.Guest.GetDeviceState", params),
                                                                    "bound")));
        ASSERT_OK(chmod(dir, 0700));
        call_ok(c, "io.tsmd.Guest.Bind", params);
        expect_kernel_calls(&m, "op 5 1\n");

        ASSERT_OK(chmod(dir, 0500));
        expect_state_not_saved(c, "io.tsmd.Guest.Unbind", params);
        ASSERT_TRUE(json_object_get_boolean(json_object_object_get(call_ok(c, "io.tsmd.Guest.GetDeviceState", params),
                                                                   "bound")));
        ASSERT_OK(chmod(dir, 0700));

        /* The kernel saw the one Bind that was saved; the next tsmd knows of it. */
        crash_and_restart(&m);
        varlink_client_free(c);
        expect_kernel_calls(&m, "op 5 1\n");
        c = connect_client(&m);
        (void) reclaim_vdevice(c, token, 5, reclaimed, sizeof(reclaimed));
        ASSERT_TRUE(json_object_get_boolean(json_object_object_get(call_ok(c, "io.tsmd.Guest.GetDeviceState", reclaimed),
                                                                   "bound")));
        varlink_client_free(c);
        expect_kernel_calls(&m, "op 5 1\nop 5 2\n");
        rec = wait_audit_record(&m, "release", NULL);
        ASSERT_STREQ(json_get_string(rec, "result"), "ok");
        ASSERT_EQ(record_int(rec, "vdeviceId"), 5);
        stop(&m);
        (void) umount2(m.sysfs_root, MNT_DETACH);
}


/* The kernel refuses a release's unbind with EPERM: a failure of the TSM (BackendError), not a
 * refusal of tsmd's (Denied is the monitor's gate refusing a restore-bind). */
TEST(a_release_the_kernel_refuses_with_eperm_is_a_backend_error) {
        _cleanup_(json_object_putp) json_object *rec = NULL;
        char token[64], path[PATH_MAX];
        VarlinkClient *c;
        Manager m;
        FILE *f;

        if (geteuid() != 0)
                SKIP("needs root (a mount namespace, a fixture bound over /sys)");
        manager_init_kernel(&m);
        manager_start_ready(&m);
        c = connect_client(&m);
        open_bound_context(c, token);
        snprintf(path, sizeof(path), "%s/fail-5", m.kernel_dir);
        f = fopen(path, "we");
        ASSERT_NOT_NULL(f);
        fprintf(f, "%d\n", EPERM);
        ASSERT_OK(fclose(f));

        varlink_client_free(c);
        rec = wait_audit_record(&m, "release", "io.tsmd.Guest.BackendError");
        /* The bind, the worker's unbind; the monitor may try once more as the context closes. */
        expect_kernel_calls_either(&m, "op 5 1\nop 5 2\n", "op 5 1\nop 5 2\nop 5 2\n");
        ASSERT_EQ(record_int(rec, "vdeviceId"), 5);
        stop(&m);
        (void) umount2(m.sysfs_root, MNT_DETACH);
}

static void expect_bound(VarlinkClient *c, const char *params, bool bound, const char *state) {
        json_object *reply = call_ok(c, "io.tsmd.Guest.GetDeviceState", params);

        ASSERT_EQ(json_object_get_boolean(json_object_object_get(reply, "bound")), bound);
        ASSERT_STREQ(json_get_string(reply, "state"), state);
}

/*
 * An emulated TSM lives in tsmd: a restarted tsmd binds again what the VMM had bound, on its
 * behalf. That bind is recorded ("restore-bind", for the context's owner), the vDevice is busy
 * until it is answered, and bound only if it succeeded: one the device refuses (busy after the
 * restart) leaves it unbound, as the new TSM has it, and recorded so.
 */
TEST(a_rebind_after_a_restart_is_recorded) {
        _cleanup_(json_object_putp) json_object *rec = NULL;
        VarlinkClient *c;
        char token[64], params[128];
        Manager m;

        /* The device binds again, slowly (1.5 s an exchange). */
        manager_init(&m);
        config_set(&m, "Platform", "EmulatedDevices", "0000:01:00.0,0000:02:00.0");
        manager_start_ready(&m);
        c = connect_client(&m);
        open_bound_context(c, token);
        config_set(&m, "Platform", "EmulatedLatencyUSec", "1500000");
        crash_and_restart(&m);
        varlink_client_free(c);

        c = connect_client(&m);
        (void) reclaim_vdevice(c, token, 5, params, sizeof(params));
        ASSERT_STREQ(call_error(c, "io.tsmd.Guest.DetachDevice", params), "io.tsmd.Guest.DeviceBusy");
        ASSERT_STREQ(call_error(c, "io.tsmd.Guest.Bind", params), "io.tsmd.Guest.DeviceBusy");
        ASSERT_NULL(last_audit_record(&m, "restore-bind"));
        expect_bound(c, params, false, "config_unlocked");

        rec = wait_audit_record(&m, "restore-bind", "ok");
        ASSERT_EQ(record_int(rec, "vdeviceId"), 5);
        ASSERT_STREQ(json_get_string(rec, "pci"), "0000:01:00.0");
        ASSERT_STREQ(json_get_string(rec, "backend"), "emulated");
        ASSERT_EQ(record_int(rec, "uid"), (int64_t) getuid());
        ASSERT_EQ(record_int(rec, "pid"), (int64_t) getpid());
        expect_bound(c, params, true, "config_locked");
        call_ok(c, "io.tsmd.Guest.DetachDevice", params);
        varlink_client_free(c);
        stop(&m);

        /* The device refuses the bind after the restart. */
        manager_init(&m);
        config_set(&m, "Platform", "EmulatedDevices", "0000:01:00.0,0000:02:00.0");
        manager_start_ready(&m);
        c = connect_client(&m);
        open_bound_context(c, token);
        config_set(&m, "Platform", "EmulatedDevices", "0000:01:00.0:fault=busy,0000:02:00.0");
        crash_and_restart(&m);
        varlink_client_free(c);

        json_object_put(TAKE_PTR(rec));
        rec = wait_audit_record(&m, "restore-bind", "io.tsmd.Guest.BackendError");
        ASSERT_EQ(record_int(rec, "vdeviceId"), 5);
        c = connect_client(&m);
        (void) reclaim_vdevice(c, token, 5, params, sizeof(params));
        expect_bound(c, params, false, "config_unlocked");
        call_ok(c, "io.tsmd.Guest.DetachDevice", params);
        varlink_client_free(c);
        stop(&m);
}

/* Taking a context back is taking one: the limits of today apply, vDevices and contexts per
 * client included, and a refused context stays reclaimable (here after a reload that raises the
 * vDevices' limit, and once the client's other context is closed). */
TEST(reclaim_obeys_todays_limits) {
        static const char *const attach[] = { "5 0000:01:00.0", "6 0000:02:00.0" };
        VarlinkClient *c;
        json_object *reply;
        char token[64], params[128];
        bool contexts = false;
        Manager m;

        manager_init(&m);
        manager_start_ready(&m);
        crash_with_context(&m, attach, ELEMENTSOF(attach), token);

        config_set(&m, "Guest", "MaxVDevicesPerClient", "1");
        manager_start_ready(&m);
        c = connect_client(&m);
        snprintf(params, sizeof(params), "{\"reclaimToken\":\"%s\"}", token);
        ASSERT_STREQ(call_error(c, "io.tsmd.Guest.ReclaimContext", params), "io.tsmd.Guest.LimitReached");

        /* A context of its own (handle 1), then at most one per client: the reclaim would be
         * its second, however many vDevices it may have now. */
        reply = call_ok(c, "io.tsmd.Guest.OpenContext", NULL);
        safe_close(varlink_client_take_fd(c, (size_t) json_object_get_int(json_object_object_get(reply, "fileDescriptor"))));
        config_set(&m, "Guest", "MaxVDevicesPerClient", "2");
        config_set(&m, "Guest", "MaxContextsPerClient", "1");
        ASSERT_OK(kill(m.pid, SIGHUP));
        for (unsigned i = 0; !contexts; i++) {
                const char *error = NULL, *limit;

                ASSERT_OK(varlink_client_call(c, "io.tsmd.Guest.ReclaimContext", json_tokener_parse(params), &reply,
                                              &error));
                ASSERT_STREQ(error, "io.tsmd.Guest.LimitReached");
                limit = json_object_get_string(json_object_object_get(reply, "limit"));
                ASSERT_NOT_NULL(limit);
                contexts = streq(limit, "contexts");
                ASSERT_TRUE(contexts || i < 200); /* the reload takes effect */
                /* What it notifies meanwhile: it blocks on a full queue. */
                manager_wait(&m, NULL, contexts ? 0 : 10);
        }

        call_ok(c, "io.tsmd.Guest.CloseContext", "{\"context\":1}");
        manager_drain(&m);
        reply = call_ok(c, "io.tsmd.Guest.ReclaimContext", params);
        safe_close(varlink_client_take_fd(c, (size_t) json_object_get_int(json_object_object_get(reply, "fileDescriptor"))));
        snprintf(params, sizeof(params), "{\"context\":%i,\"vdeviceId\":6}",
                 json_object_get_int(json_object_object_get(reply, "context")));
        call_ok(c, "io.tsmd.Guest.DetachDevice", params);
        varlink_client_free(c);
        stop(&m);
}

/* ---- the state file against the monitor's record, after a restart of the worker ------------- */

/* tsmd's stderr goes to <dir>/tsmd.log from its next start on. */
static void manager_capture_log(Manager *m) {
        snprintf(m->log, sizeof(m->log), "%s/tsmd.log", m->dir);
}

/* The contents of a file under tsmd's directory (malloc'd, NUL-terminated; "" if missing). */
static char *read_text(Manager *m, const char *name) {
        char path[PATH_MAX], *buf = calloc(1, 1 << 20);
        _cleanup_close_ int fd = -EBADF;
        ssize_t k;

        ASSERT_NOT_NULL(buf);
        snprintf(path, sizeof(path), "%s/%s", m->dir, name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return buf;
        k = read(fd, buf, (1 << 20) - 1);
        ASSERT_TRUE(k >= 0);
        return buf;
}

static bool log_contains(Manager *m, const char *needle) {
        _cleanup_free_ char *text = read_text(m, "tsmd.log");

        return strstr(text, needle);
}

/* The monitor's worker, or 0 while there is none. */
static pid_t worker_or_none(pid_t monitor) {
        char path[96], buf[64] = "";
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%i/task/%i/children", monitor, monitor);
        f = fopen(path, "re");
        ASSERT_NOT_NULL(f);
        if (!fgets(buf, sizeof(buf), f))
                buf[0] = 0;
        fclose(f);
        return (pid_t) strtol(buf, NULL, 10);
}

/* Returns the worker after old once it serves (bounded). */
static pid_t wait_worker_replaced(Manager *m, pid_t old) {
        /* Reading what tsmd notifies meanwhile, as a service manager does: it blocks on a full
         * queue (net.unix.max_dgram_qlen may be as low as 10). */
        for (unsigned i = 0; i < 1000; i++, manager_wait(m, NULL, 10)) {
                pid_t w = worker_or_none(m->pid);
                char serving[64];

                snprintf(serving, sizeof(serving), "Worker %d serving again.", (int) w);
                if (w > 0 && w != old && log_contains(m, serving))
                        return w;
        }
        TEST_FAIL("no new worker serves after %d (log: %s/tsmd.log)", (int) old, m->dir);
}

/* Kills the worker as a crash would; returns the next one once it serves (bounded). */
static pid_t crash_worker(Manager *m) {
        pid_t old = worker_of(m->pid);

        ASSERT_OK(kill(old, SIGKILL));
        return wait_worker_replaced(m, old);
}

/* The owner Admin.ListDevices names for the device at address (a new reference), or NULL. */
static json_object *device_owner(Manager *m, const char *address) {
        _cleanup_(json_object_putp) json_object *reply = NULL;
        json_object *devices, *owner = NULL;
        const char *error = NULL;
        VarlinkClient *a;

        ASSERT_OK(varlink_client_connect(m->admin, &a));
        varlink_client_set_timeout(a, 10 * 1000000ULL);
        ASSERT_OK(varlink_client_call(a, "io.tsmd.Admin.ListDevices", NULL, &reply, &error));
        ASSERT_NULL(error);
        json_object_get(reply); /* the client's reference goes with it */
        varlink_client_free(a);
        ASSERT_TRUE(json_object_object_get_ex(reply, "devices", &devices));
        for (size_t i = 0; i < json_object_array_length(devices); i++) {
                json_object *d = json_object_array_get_idx(devices, i);

                if (streq(json_get_string(d, "pciAddress"), address) && json_object_object_get_ex(d, "owner", &owner))
                        return owner ? json_object_get(owner) : NULL;
        }
        TEST_FAIL("ListDevices has no %s", address);
}

/* vDevice id of the reclaimed context ctx is the device at address, as the monitor has it, and
 * nobody holds other. */
static void expect_vdevice_at(Manager *m, VarlinkClient *c, int64_t ctx, int64_t id, const char *address,
                              const char *other) {
        _cleanup_(json_object_putp) json_object *owner = device_owner(m, address), *none = device_owner(m, other);

        ASSERT_NOT_NULL(owner);
        ASSERT_EQ(json_object_get_int64(json_object_object_get(owner, "vdeviceId")), id);
        ASSERT_EQ(json_object_get_int64(json_object_object_get(owner, "context")), ctx);
        ASSERT_FALSE(json_object_get_boolean(json_object_object_get(owner, "reclaimable")));
        ASSERT_NULL(none);
        (void) c;
}

/*
 * A worker taken over rewrites a kept context's state file: vDevice 5 on another device than
 * the one the monitor attached it to, and one the monitor never had. The worker that follows
 * takes the monitor's record, not the file's: it is not killed for what the file says (before,
 * it re-attached the file's vDevices, the monitor took the other address for a violation, and
 * so every later worker, as long as the file stayed), it serves, the VMM reclaims its context
 * with vDevice 5 where the monitor has it, and the file says so again for the next worker.
 */
/* tsmd started with its log captured, and a client holding a context with vDevice 5 on
 * 0000:01:00.0, bound; its token in token. */
static VarlinkClient *start_with_bound_context(Manager *m, char token[static 64]) {
        VarlinkClient *c;

        manager_init(m);
        manager_capture_log(m);
        manager_start_ready(m);
        c = connect_client(m);
        open_bound_context(c, token);
        return c;
}

/* The same, with the context's reclaim id, which names its state file and its fd store entry. */
static VarlinkClient *start_with_bound_context_id(Manager *m, char token[static 64], char ret_id[static 33]) {
        VarlinkClient *c = start_with_bound_context(m, token);

        reclaim_id_of(token, ret_id);
        return c;
}

/* Writes text to <dir>/state/name, as root. */
static void plant_state_file(Manager *m, const char *name, const char *text) {
        char path[PATH_MAX];
        FILE *f;

        snprintf(path, sizeof(path), "%s/state/%s", m->dir, name);
        f = fopen(path, "we");
        ASSERT_NOT_NULL(f);
        fputs(text, f);
        ASSERT_EQ(fclose(f), 0);
}

/* Puts text in the state file of the context id, crashes its worker and only then hangs c up
 * (hanging up first would release the context). */
static void forge_state_file_and_crash(Manager *m, VarlinkClient *c, const char *id, const char *text) {
        char name[64];

        snprintf(name, sizeof(name), "%s.state", id);
        plant_state_file(m, name, text);
        (void) crash_worker(m);
        varlink_client_free(c);
}

/* Closes the reclaimed context ctx, hangs up and stops tsmd: no worker was called compromised. */
static void close_context_and_stop(Manager *m, VarlinkClient *c, int64_t ctx) {
        char params[64];

        snprintf(params, sizeof(params), "{\"context\":%lld}", (long long) ctx);
        call_ok(c, "io.tsmd.Guest.CloseContext", params);
        varlink_client_free(c);
        ASSERT_FALSE(log_contains(m, "Compromised worker"));
        stop(m);
}

TEST(a_forged_state_file_trips_no_worker) {
        _cleanup_free_ char *state = NULL;
        char token[64], id[33], path[PATH_MAX], params[128], text[128];
        VarlinkClient *c;
        json_object *reply;
        int64_t ctx;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to write the worker's state file");
        c = start_with_bound_context_id(&m, token, id);

        snprintf(text, sizeof(text), "[Context]\nUid=%u\nVDevice=5 0000:02:00.0 bound\nVDevice=9 0000:02:00.0 unbound\n",
                 (unsigned) getuid());
        forge_state_file_and_crash(&m, c, id, text);
        ASSERT_TRUE(log_contains(&m, "keeping the monitor's"));
        ASSERT_TRUE(log_contains(&m, "which the monitor does not have; dropping it"));

        /* The file is right again before anyone reclaims: a later worker finds nothing stale. */
        snprintf(path, sizeof(path), "state/%s.state", id);
        state = read_text(&m, path);
        ASSERT_NOT_NULL(strstr(state, "VDevice=5 0000:01:00.0 bound\n"));
        ASSERT_NULL(strstr(state, "0000:02:00.0"));
        (void) crash_worker(&m);

        c = connect_client(&m);
        ctx = reclaim_vdevice(c, token, 5, params, sizeof(params));
        reply = call_ok(c, "io.tsmd.Guest.GetDeviceState", params);
        ASSERT_TRUE(json_object_get_boolean(json_object_object_get(reply, "bound")));
        ASSERT_STREQ(json_get_string(reply, "state"), "config_locked");
        expect_vdevice_at(&m, c, ctx, 5, "0000:01:00.0", "0000:02:00.0");
        snprintf(params, sizeof(params), "{\"context\":%lld,\"vdeviceId\":9}", (long long) ctx);
        ASSERT_STREQ(call_error(c, "io.tsmd.Guest.GetDeviceState", params), "io.tsmd.Guest.NoSuchVDevice");
        call_ok(c, "io.tsmd.Service.Ping", NULL);
        close_context_and_stop(&m, c, ctx);
}

/*
 * SECURITY: a state file that names another uid than the monitor's name of the context's fd does
 * not belong to that context: nothing of it is taken (not its group, pid or vDevices), and it is
 * written anew from what the monitor kept. The owner reclaims its context, bound, as before.
 */
TEST(a_state_file_naming_another_uid_is_not_taken) {
        _cleanup_free_ char *state = NULL;
        char token[64], id[33], path[PATH_MAX], params[128], line[128];
        VarlinkClient *c;
        json_object *reply;
        int64_t ctx;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to write the worker's state file");
        c = start_with_bound_context_id(&m, token, id);

        forge_state_file_and_crash(&m, c, id, "[Context]\nUid=4242\nGid=4242\nPid=4242\nVDevice=5 0000:01:00.0 bound\n"
                                               "VDevice=9 0000:02:00.0 unbound\n");
        snprintf(line, sizeof(line), "Stored context state names uid 4242, the fd uid %u; dropping it.",
                 (unsigned) getuid());
        ASSERT_TRUE(log_contains(&m, line));

        snprintf(path, sizeof(path), "state/%s.state", id);
        state = read_text(&m, path);
        snprintf(line, sizeof(line), "Uid=%u\n", (unsigned) getuid());
        ASSERT_NOT_NULL(strstr(state, line));
        ASSERT_NULL(strstr(state, "4242"));
        ASSERT_NULL(strstr(state, "0000:02:00.0"));

        c = connect_client(&m);
        ctx = reclaim_vdevice(c, token, 5, params, sizeof(params));
        reply = call_ok(c, "io.tsmd.Guest.GetDeviceState", params);
        ASSERT_TRUE(json_object_get_boolean(json_object_object_get(reply, "bound")));
        snprintf(params, sizeof(params), "{\"context\":%lld,\"vdeviceId\":9}", (long long) ctx);
        ASSERT_STREQ(call_error(c, "io.tsmd.Guest.GetDeviceState", params), "io.tsmd.Guest.NoSuchVDevice");
        close_context_and_stop(&m, c, ctx);
}

/*
 * A state directory the worker keeps no state in (someone else's, not empty: the monitor does
 * not give it): the fd store would bring its contexts back after a restart of tsmd without
 * their vDevices, bound ones included, that nobody would unbind then. So no vDevice is
 * attached (StateNotSaved, EPERM), and the log says so.
 */
TEST(a_worker_that_keeps_no_state_attaches_nothing_the_fd_store_keeps) {
        _cleanup_(json_object_putp) json_object *none = NULL;
        char path[PATH_MAX];
        VarlinkClient *c;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to give the state directory to another user");
        manager_init(&m);
        manager_capture_log(&m);
        snprintf(path, sizeof(path), "%s/state", m.dir);
        ASSERT_OK(mkdir(path, 0700));
        snprintf(path, sizeof(path), "%s/state/somebody-elses", m.dir);
        safe_close(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
        manager_start_ready(&m);
        ASSERT_TRUE(log_contains(&m, "AttachDevice, Bind and Unbind are refused (StateNotSaved)"));

        c = connect_client(&m);
        call_ok(c, "io.tsmd.Guest.OpenContext", NULL);
        expect_state_not_saved_errno(c, "io.tsmd.Guest.AttachDevice",
                                     "{\"context\":1,\"vdeviceId\":5,\"pciAddress\":\"0000:01:00.0\"}", EPERM);
        none = device_owner(&m, "0000:01:00.0");
        ASSERT_NULL(none);
        varlink_client_free(c);
        stop(&m);
}

/*
 * The benign way to a stale file: the VMM detaches vDevice 5 while the state cannot be saved (a
 * full /run: here a directory the worker may not write), and the worker dies before the save it
 * owes is made. Its successor takes the monitor's record, which has no vDevice 5. Attaching id 5 to
 * another device meanwhile is refused (StateNotSaved) and undone in the monitor: saved late, or
 * not at all, the file would name the vDevice at its old device, where a restart of tsmd would
 * attach it again, and the kernel has it at the new one.
 */
TEST(a_state_file_behind_a_failed_save_trips_no_worker) {
        static const char attach_other[] =
                "{\"context\":1,\"vdeviceId\":5,\"pciAddress\":\"0000:02:00.0\"}";
        _cleanup_(json_object_putp) json_object *none = NULL;
        _cleanup_free_ char *state = NULL;
        char token[64], id[33], path[PATH_MAX], params[128];
        VarlinkClient *c;
        json_object *reply;
        int64_t ctx;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to take the worker's state directory from it");
        manager_init(&m);
        manager_capture_log(&m);
        manager_start_ready(&m);
        c = connect_client(&m);
        reply = call_ok(c, "io.tsmd.Guest.OpenContext", NULL);
        snprintf(token, sizeof(token), "%s", json_get_string(reply, "reclaimToken"));
        reclaim_id_of(token, id);
        safe_close(varlink_client_take_fd(c, (size_t) json_object_get_int(json_object_object_get(reply, "fileDescriptor"))));
        call_ok(c, "io.tsmd.Guest.AttachDevice", "{\"context\":1,\"vdeviceId\":5,\"pciAddress\":\"0000:01:00.0\"}");

        snprintf(path, sizeof(path), "%s/state", m.dir);
        ASSERT_OK(chmod(path, 0500));
        call_ok(c, "io.tsmd.Guest.DetachDevice", "{\"context\":1,\"vdeviceId\":5}");
        expect_state_not_saved(c, "io.tsmd.Guest.AttachDevice", attach_other);
        ASSERT_TRUE(log_contains(&m, "Failed to save the state of a context"));
        none = device_owner(&m, "0000:02:00.0");
        ASSERT_NULL(none);
        snprintf(path, sizeof(path), "state/%s.state", id);
        state = read_text(&m, path);
        ASSERT_NOT_NULL(strstr(state, "VDevice=5 0000:01:00.0 unbound\n"));
        free(state);

        /* A crash while the save is still owed (its retries fail); the next worker, the
         * directory's owner, makes it 0700 again (the monitor cannot: it has no CAP_FOWNER). */
        (void) crash_worker(&m);
        varlink_client_free(c);
        ASSERT_TRUE(log_contains(&m, "was mode 0500, made it 0700"));
        ASSERT_TRUE(log_contains(&m, "which the monitor does not have; dropping it"));
        snprintf(path, sizeof(path), "state/%s.state", id);
        state = read_text(&m, path);
        ASSERT_NULL(strstr(state, "VDevice="));

        c = connect_client(&m);
        ctx = reclaim(c, token);
        snprintf(params, sizeof(params), "{\"context\":%lld,\"vdeviceId\":5}", (long long) ctx);
        ASSERT_STREQ(call_error(c, "io.tsmd.Guest.GetDeviceState", params), "io.tsmd.Guest.NoSuchVDevice");
        snprintf(params, sizeof(params), "{\"context\":%lld,\"vdeviceId\":5,\"pciAddress\":\"0000:02:00.0\"}",
                 (long long) ctx);
        call_ok(c, "io.tsmd.Guest.AttachDevice", params);
        expect_vdevice_at(&m, c, ctx, 5, "0000:02:00.0", "0000:01:00.0");
        snprintf(params, sizeof(params), "{\"context\":%lld,\"vdeviceId\":5}", (long long) ctx);
        call_ok(c, "io.tsmd.Guest.Bind", params);
        varlink_client_free(c);
        ASSERT_FALSE(log_contains(&m, "Compromised worker"));
        stop(&m);
}

/* ---- reclaim tokens are no names ---------------------------------------------------------------- */

/* Reclaims the context under token on c (the renewed token into token) and checks that its
 * vDevice 5 is still bound. */
static void reclaim_bound(VarlinkClient *c, char token[static 64]) {
        char params[128];
        json_object *reply;

        (void) reclaim_vdevice(c, token, 5, params, sizeof(params));
        reply = call_ok(c, "io.tsmd.Guest.GetDeviceState", params);
        ASSERT_TRUE(json_object_get_boolean(json_object_object_get(reply, "bound")));
        ASSERT_STREQ(json_get_string(reply, "state"), "config_locked");
}

/*
 * SECURITY: any local user may list a service's fd store (DumpFileDescriptorStore is
 * unprivileged from systemd 254), so a context is kept under its reclaim id, never its token:
 * the fd store name and the state file's are the id, and neither the file nor tsmd's log holds
 * the token. So it stays through restarts of the worker and of tsmd, which find the context by
 * the token's id.
 */
TEST(a_context_is_named_by_its_reclaim_id_not_its_token) {
        char token[64];
        VarlinkClient *c;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to read the worker's state directory");
        c = start_with_bound_context(&m, token);
        manager_wait(&m, has_stored, 5000);
        ASSERT_TRUE(stored_context(&m, NULL) >= 0);
        expect_token_hidden(&m, token);

        (void) crash_worker(&m);
        varlink_client_free(c); /* after the crash: hanging up would release the context */
        expect_token_hidden(&m, token);
        crash_and_restart(&m);
        expect_token_hidden(&m, token);

        c = connect_client(&m);
        reclaim_bound(c, token);
        expect_token_hidden(&m, token);
        varlink_client_free(c);
        stop(&m);
}

/*
 * An upgrade from a tsmd that named contexts by their tokens: the fd store hands the new one
 * ctx.<uid>.<token>, and the state directory has <token>.state. The monitor takes the old name
 * out of the store and stores the fd under the token's reclaim id, the worker renames the file,
 * and the VMM reclaims its context with its token as before, its vDevice (known from the file
 * alone after a restart of tsmd) bound; and again after the next restart.
 */
TEST(an_upgrade_renames_what_was_named_by_a_token) {
        char token[64], id[33], legacy[128], from[PATH_MAX], to[PATH_MAX];
        VarlinkClient *c;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to plant the worker's state file");
        c = start_with_bound_context_id(&m, token, id);
        manager_wait(&m, has_stored, 5000);
        ASSERT_TRUE(stored_context(&m, NULL) >= 0);
        kill(m.pid, SIGKILL);
        ASSERT_EQ(manager_exit_status(&m), 128 + SIGKILL);
        varlink_client_free(c);

        /* What a tsmd before reclaim ids leaves: the fd and the state file under the token. */
        snprintf(legacy, sizeof(legacy), "ctx.%u.%s", (unsigned) getuid(), token);
        ASSERT_EQ(stored_but_last_good(&m), 1u);
        for (size_t i = 0; i < m.n_store; i++)
                if (!streq(m.store[i].name, FDSTORE_LAST_GOOD_NAME))
                        snprintf(m.store[i].name, sizeof(m.store[i].name), "%s", legacy);
        snprintf(from, sizeof(from), "%s/state/%s.state", m.dir, id);
        snprintf(to, sizeof(to), "%s/state/%s.state", m.dir, token);
        ASSERT_OK(rename(from, to));
        m.store_removed = false;

        /* The old name leaves the store, and the fd comes back under the new one (in this
         * order: systemd keeps no second copy of an fd it has). */
        manager_start_ready(&m);
        ASSERT_TRUE(m.store_removed);
        ASSERT_STREQ(m.removed_name, legacy);
        ASSERT_TRUE(stored_context(&m, NULL) >= 0);
        expect_token_hidden(&m, token);
        ASSERT_TRUE(log_contains(&m, "Renamed the old-style state file"));

        c = connect_client(&m);
        reclaim_bound(c, token);
        expect_token_hidden(&m, token);

        /* The next tsmd finds it under the new names alone. */
        manager_drain(&m);
        kill(m.pid, SIGKILL);
        ASSERT_EQ(manager_exit_status(&m), 128 + SIGKILL);
        varlink_client_free(c);
        m.store_removed = false;
        manager_start_ready(&m);
        ASSERT_FALSE(m.store_removed);
        c = connect_client(&m);
        reclaim_bound(c, token);
        expect_token_hidden(&m, token);
        varlink_client_free(c);
        stop(&m);
}

static bool state_file_exists(Manager *m, const char *name) {
        char path[PATH_MAX];

        snprintf(path, sizeof(path), "%s/state/%s", m->dir, name);
        return access(path, F_OK) >= 0;
}

/*
 * State files of contexts that are gone (closed while no tsmd ran, lost with an fd store, named
 * by their token by an older tsmd that never got them back, or a failed save's leftover) are
 * removed when a worker has restored what the monitor kept, and only those: before, they stayed
 * for good, those named by tokens among them. The kept context's file stays and serves.
 */
TEST(state_of_contexts_that_are_gone_is_removed) {
        static const char *const gone[] = {
                "00112233445566778899aabbccddeeff.state",     /* a reclaim id nobody has */
                "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a.state",     /* an old-style name: a token */
                "00112233445566778899aabbccddeeff.state.tmp", /* a save cut short */
        };
        char token[64], id[33], own[64];
        VarlinkClient *c;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to plant files in the worker's state directory");
        c = start_with_bound_context_id(&m, token, id);
        snprintf(own, sizeof(own), "%s.state", id);
        manager_wait(&m, has_stored, 5000);
        for (size_t i = 0; i < ELEMENTSOF(gone); i++)
                plant_state_file(&m, gone[i], "[Context]\nUid=1000\nVDevice=7 0000:02:00.0 bound\n");
        plant_state_file(&m, "README", "not one of tsmd's\n");

        (void) crash_worker(&m);
        varlink_client_free(c);
        for (size_t i = 0; i < ELEMENTSOF(gone); i++)
                if (state_file_exists(&m, gone[i]))
                        TEST_FAIL("'%s' is still there", gone[i]);
        ASSERT_TRUE(log_contains(&m, "Removed 3 state files of contexts that are gone"));
        ASSERT_TRUE(state_file_exists(&m, own));
        ASSERT_TRUE(state_file_exists(&m, "README"));

        c = connect_client(&m);
        reclaim_bound(c, token);
        varlink_client_free(c);
        stop(&m);
}

/* ---- reclaiming under the policy in force ------------------------------------------------------ */

/* Replaces the policy (read by the next worker, or at the next reload). */
static void policy_write(Manager *m, const char *text) {
        char path[PATH_MAX];
        FILE *f;

        snprintf(path, sizeof(path), "%s/policy.conf", m->dir);
        f = fopen(path, "we");
        ASSERT_NOT_NULL(f);
        fputs(text, f);
        fclose(f);
}

#define WEB1_GID 1001
#define WEB2_GID 2002
#define NO_RULE_GID 3003

/*
 * One uid, two rules told apart by group, one device each (as POLICY.md has web1 and web2).
 * After the worker restarts, web2 holding web1's token is refused web1's context, which holds a
 * vDevice of a device web2 may not use: ReclaimRefused naming it, and recorded so. Before, the
 * uid and token were all it took, and web2 then had web1's iommufd and bound device (Unbind,
 * GetDeviceState, Bind; only GuestRequest was refused). The same uid under a group of no rule
 * is Denied. web1 takes it back as before.
 */
TEST(reclaim_needs_the_policy_to_allow_every_device) {
        _cleanup_(json_object_putp) json_object *rec = NULL;
        VarlinkClient *a, *b;
        char token[64], params[128];
        json_object *reply = NULL;
        const char *error = NULL, *reason;
        int64_t ctx;
        int status;
        pid_t pid;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to connect under other gids");
        manager_init(&m);
        manager_capture_log(&m);
        policy_write(&m, "[Client:web1]\nUsers=root\nGroups=" STRINGIFY(WEB1_GID) "\nDevices=0000:01:00.0\n"
                         "[Client:web2]\nUsers=root\nGroups=" STRINGIFY(WEB2_GID) "\nDevices=0000:02:00.0\n");
        manager_start_ready(&m);

        a = connect_client_as(&m, WEB1_GID);
        open_bound_context(a, token); /* vDevice 5 on 0000:01:00.0, bound */
        /* As itself, web2 may not have the device. */
        b = connect_client_as(&m, WEB2_GID);
        safe_close(varlink_client_take_fd(b, (size_t) json_object_get_int(json_object_object_get(
                call_ok(b, "io.tsmd.Guest.OpenContext", NULL), "fileDescriptor"))));
        ASSERT_STREQ(call_error(b, "io.tsmd.Guest.AttachDevice",
                                "{\"context\":1,\"vdeviceId\":5,\"pciAddress\":\"0000:01:00.0\"}"),
                     "io.tsmd.Guest.Denied");
        (void) crash_worker(&m);
        varlink_client_free(a); /* after the crash: hanging up would release the context */
        varlink_client_free(b);

        /* Nor by web1's token. */
        snprintf(params, sizeof(params), "{\"reclaimToken\":\"%s\"}", token);
        b = connect_client_as(&m, WEB2_GID);
        ASSERT_OK(varlink_client_call(b, "io.tsmd.Guest.ReclaimContext", json_tokener_parse(params), &reply, &error));
        ASSERT_STREQ(error, "io.tsmd.Guest.ReclaimRefused");
        reason = json_get_string(reply, "reason");
        ASSERT_NOT_NULL(reason);
        if (!strstr(reason, "0000:01:00.0 (vDevice 5): device not in any rule matching the client"))
                TEST_FAIL("ReclaimRefused does not name the device: '%s'", reason);
        ASSERT_ERRNO(varlink_client_take_fd(b, 0), ENXIO); /* no iommufd came with the refusal */
        varlink_client_free(b);

        /* The refusal is recorded, under web2's identity, naming the device. */
        rec = last_audit_record_with(&m, "reclaim-context", "io.tsmd.Guest.ReclaimRefused");
        ASSERT_NOT_NULL(rec);
        ASSERT_EQ(record_int(rec, "uid"), 0);
        ASSERT_EQ(record_int(rec, "gid"), WEB2_GID);
        ASSERT_STREQ(json_get_string(rec, "pci"), "0000:01:00.0");
        ASSERT_STREQ(json_get_string(rec, "backend"), "emulated");

        /* Another uid holding the token learns nothing of the context, its devices included:
         * the uid is checked before the token. */
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                VarlinkClient *other;

                if (setresgid(WEB1_GID, WEB1_GID, WEB1_GID) < 0 || setresuid(65534, 65534, 65534) < 0)
                        _exit(2);
                other = connect_client(&m);
                reply = NULL;
                error = NULL;
                if (varlink_client_call(other, "io.tsmd.Guest.ReclaimContext", json_tokener_parse(params), &reply,
                                        &error) < 0)
                        _exit(3);
                _exit(streq(strempty(error), "io.tsmd.Guest.ReclaimRefused") &&
                      streq(strempty(json_get_string(reply, "reason")), "no context of yours waits under this token") ?
                      0 : 1);
        }
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        /* The owner's uid under a group no rule names is no client at all: Denied, as for a new
         * context, and the context waits on. */
        b = connect_client_as(&m, NO_RULE_GID);
        reply = NULL;
        error = NULL;
        ASSERT_OK(varlink_client_call(b, "io.tsmd.Guest.ReclaimContext", json_tokener_parse(params), &reply, &error));
        ASSERT_STREQ(error, "io.tsmd.Guest.Denied");
        ASSERT_STREQ(json_get_string(reply, "reason"), "no policy rule matches the client");
        ASSERT_ERRNO(varlink_client_take_fd(b, 0), ENXIO);
        varlink_client_free(b);

        /* web1, whose rule still lists the device, gets it back, bound. */
        a = connect_client_as(&m, WEB1_GID);
        ctx = reclaim(a, token);
        snprintf(params, sizeof(params), "{\"context\":%lld,\"vdeviceId\":5}", (long long) ctx);
        reply = call_ok(a, "io.tsmd.Guest.GetDeviceState", params);
        ASSERT_TRUE(json_object_get_boolean(json_object_object_get(reply, "bound")));
        snprintf(params, sizeof(params), "{\"context\":%lld}", (long long) ctx);
        call_ok(a, "io.tsmd.Guest.CloseContext", params);
        varlink_client_free(a);
        stop(&m);
}

/*
 * The policy no longer lists a device when tsmd restarts (edited, or a reload narrowed it,
 * before): the monitor's gate refuses new attaches and binds of it, but a vDevice the kernel
 * kept bound through the restart is attached again all the same, bound, so that it is not left
 * locked with nobody to unbind it: its VMM may not reclaim it, and the release at the reclaim
 * timeout unbinds it, on record. An emulated one is not bound again.
 */
TEST(a_device_the_policy_dropped_is_restored_to_be_released) {
        _cleanup_(json_object_putp) json_object *rec = NULL;
        const char *error = NULL;
        json_object *reply = NULL;
        VarlinkClient *c;
        char token[64], params[128];
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root (a mount namespace, a fixture bound over /sys)");
        manager_init_kernel(&m);
        manager_start_ready(&m);
        c = connect_client(&m);
        open_bound_context(c, token); /* vDevice 5 on 0000:01:00.0, bound */
        expect_kernel_calls(&m, "op 5 1\n");
        policy_write(&m, "[Client:tests]\nUsers=root 65534\nDevices=0000:02:00.0\n");
        config_set(&m, "Guest", "ReclaimTimeoutSec", "2");
        crash_and_restart(&m);
        varlink_client_free(c);

        c = connect_client(&m);
        snprintf(params, sizeof(params), "{\"reclaimToken\":\"%s\"}", token);
        ASSERT_OK(varlink_client_call(c, "io.tsmd.Guest.ReclaimContext", json_tokener_parse(params), &reply, &error));
        ASSERT_STREQ(error, "io.tsmd.Guest.ReclaimRefused");
        varlink_client_free(c);
        expect_kernel_calls(&m, "op 5 1\nop 5 2\n");
        rec = release_at_timeout(&m);
        ASSERT_STREQ(json_get_string(rec, "result"), "ok");
        ASSERT_EQ(record_int(rec, "vdeviceId"), 5);
        ASSERT_STREQ(json_get_string(rec, "pci"), "0000:01:00.0");
        (void) umount2(m.sysfs_root, MNT_DETACH);

        /* Emulated: the new TSM bound nothing, and the device is not bound again: the monitor's
         * gate refuses the bind, recorded as the refusal it is, as a Bind of the VMM's would be. */
        manager_init(&m);
        manager_start_ready(&m);
        c = connect_client(&m);
        open_bound_context(c, token);
        policy_write(&m, "[Client:tests]\nUsers=root 65534\nDevices=0000:02:00.0\n");
        crash_and_restart(&m);
        varlink_client_free(c);
        json_object_put(TAKE_PTR(rec));
        rec = wait_audit_record(&m, "restore-bind", "io.tsmd.Guest.Denied");
        ASSERT_EQ(record_int(rec, "vdeviceId"), 5);
        stop(&m);
}

/* ---- reclaim tokens are renewed ------------------------------------------------------------------ */

/* The name and reason of the ReclaimRefused a new connection gets for token. */
static void reclaim_refused(Manager *m, const char *token, char ret_reason[static 256]) {
        VarlinkClient *c = connect_client(m);
        json_object *reply = NULL;
        const char *error = NULL;
        char params[96];

        snprintf(params, sizeof(params), "{\"reclaimToken\":\"%s\"}", token);
        ASSERT_OK(varlink_client_call(c, "io.tsmd.Guest.ReclaimContext", json_tokener_parse(params), &reply, &error));
        ASSERT_STREQ(error, "io.tsmd.Guest.ReclaimRefused");
        snprintf(ret_reason, 256, "%s", json_get_string(reply, "reason"));
        varlink_client_free(c);
}

/* token is refused exactly as an unknown token is: a void token tells nothing. */
static void expect_token_void(Manager *m, const char *token) {
        char reason[256], unknown[256];

        reclaim_refused(m, token, reason);
        reclaim_refused(m, "0123456789abcdef0123456789abcdef", unknown);
        ASSERT_STREQ(reason, unknown);
}

/* Waits (bounded) until the state file of token's context names no token before it: the answer
 * that gave token is entirely in its VMM's socket. */
static void wait_renewal_done(Manager *m, const char *token) {
        char id[33], name[64];

        reclaim_id_of(token, id);
        snprintf(name, sizeof(name), "state/%s.state", id);
        for (unsigned i = 0; i < 500; i++) {
                _cleanup_free_ char *text = read_text(m, name);

                if (text[0] && !strstr(text, "PreviousReclaimId="))
                        return;
                usleep(10000);
        }
        TEST_FAIL("the state file of the renewed token still names the one before (%s)", m->dir);
}

/*
 * SECURITY: a reclaim token is a bearer secret a VMM may leak (a log, a core dump of the VMM),
 * so every successful reclaim answers a new one and voids the one it took: after the next
 * restart, of the worker or of all of tsmd, the new one reclaims and the old one is refused as an
 * unknown one. The fd store name and the state file follow the new token's reclaim id, and
 * nothing is left under the old one's.
 */
TEST(each_reclaim_renews_the_token) {
        char t0[64], token[64], old_id[33], old_state[64], old_name[128];
        VarlinkClient *c;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to read the worker's state directory");
        c = start_with_bound_context(&m, t0);
        manager_wait(&m, has_stored, 5000);
        reclaim_id_of(t0, old_id);
        snprintf(old_state, sizeof(old_state), "%s.state", old_id);
        snprintf(old_name, sizeof(old_name), "ctxid.%u.%s", (unsigned) getuid(), old_id);
        (void) crash_worker(&m);
        varlink_client_free(c);

        /* A restart of the worker: the reclaim answers a new token. */
        c = connect_client(&m);
        snprintf(token, sizeof(token), "%s", t0);
        reclaim_bound(c, token);
        wait_renewal_done(&m, token);
        expect_token_hidden(&m, token);
        ASSERT_FALSE(state_file_exists(&m, old_state));
        wait_removed(&m, old_name);
        ASSERT_FALSE(log_contains(&m, t0));

        /* A restart of tsmd: the fd store has it under the new name alone. */
        crash_and_restart(&m);
        varlink_client_free(c);
        expect_token_void(&m, t0);
        c = connect_client(&m);
        snprintf(t0, sizeof(t0), "%s", token);
        reclaim_bound(c, token);
        wait_renewal_done(&m, token);
        expect_token_hidden(&m, token);

        /* And the worker again, which has the name from the monitor. */
        (void) crash_worker(&m);
        varlink_client_free(c);
        expect_token_void(&m, t0);
        c = connect_client(&m);
        reclaim_bound(c, token);
        varlink_client_free(c);
        stop(&m);
}

/* The state a renewal needs cannot be saved (the state directory is not writable): the reclaim
 * keeps the token it came with, which still reclaims after the next restart, rather than renew
 * it into a name only the monitor would know. */
TEST(a_reclaim_that_cannot_save_keeps_the_token) {
        char t0[64], params[96], dir[PATH_MAX];
        const char *answered;
        json_object *reply;
        VarlinkClient *c;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to take the worker's state directory away from it");
        c = start_with_bound_context(&m, t0);
        manager_wait(&m, has_stored, 5000);
        (void) crash_worker(&m);
        varlink_client_free(c);

        snprintf(dir, sizeof(dir), "%s/state", m.dir);
        ASSERT_OK(chmod(dir, 0500)); /* its owner, the worker, may not add a file */
        c = connect_client(&m);
        snprintf(params, sizeof(params), "{\"reclaimToken\":\"%s\"}", t0);
        reply = call_ok(c, "io.tsmd.Guest.ReclaimContext", params);
        safe_close(varlink_client_take_fd(c, (size_t) json_object_get_int(json_object_object_get(reply, "fileDescriptor"))));
        answered = json_get_string(reply, "reclaimToken");
        ASSERT_NOT_NULL(answered);
        ASSERT_STREQ(answered, t0);
        ASSERT_TRUE(log_contains(&m, "its reclaim token kept"));
        ASSERT_OK(chmod(dir, 0700));

        /* The token it has reclaims after the next restart, which renews it. */
        (void) crash_worker(&m);
        varlink_client_free(c);
        c = connect_client(&m);
        reclaim_bound(c, t0);
        varlink_client_free(c);
        stop(&m);
}

/* Calls tsmd's Guest socket without reading the answers: n large ones (the interface's
 * description), then a reclaim with token, whose answer stays queued behind them in tsmd. */
static int reclaim_behind_unread_answers(Manager *m, const char *token, unsigned n) {
        static const char describe[] =
                "{\"method\":\"org.varlink.service.GetInterfaceDescription\",\"parameters\":{\"interface\":\"io.tsmd.Guest\"}}";
        struct timeval tv = { .tv_sec = 10 };
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        char reclaim[192];

        ASSERT_TRUE(fd >= 0);
        ASSERT_TRUE(strlen(m->guest) < sizeof(sa.sun_path));
        memcpy(sa.sun_path, m->guest, strlen(m->guest) + 1);
        ASSERT_OK(connect(fd, (struct sockaddr *) &sa, sizeof(sa)));
        ASSERT_OK(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)));
        for (unsigned i = 0; i < n; i++)
                ASSERT_EQ(write(fd, describe, sizeof(describe)), (ssize_t) sizeof(describe)); /* with the NUL */
        snprintf(reclaim, sizeof(reclaim), "{\"method\":\"io.tsmd.Guest.ReclaimContext\",\"parameters\":{\"reclaimToken\":\"%s\"}}",
                 token);
        ASSERT_EQ(write(fd, reclaim, strlen(reclaim) + 1), (ssize_t) strlen(reclaim) + 1);
        return fd;
}

/* Some state file says a reclaim took the context with the token whose id is id, and the answer
 * with the renewed one has not gone out entirely. A save's temporary (.state.tmp) is no state
 * file: it is written, and synced, before it takes the name. */
static bool renewal_pending(Manager *m, const char *id) {
        char path[PATH_MAX], want[64];
        struct dirent *de;
        bool found = false;
        DIR *d;

        snprintf(path, sizeof(path), "%s/state", m->dir);
        snprintf(want, sizeof(want), "PreviousReclaimId=%s\n", id);
        d = opendir(path);
        ASSERT_NOT_NULL(d);
        while (!found && (de = readdir(d))) {
                _cleanup_free_ char *text = NULL;
                size_t n = strlen(de->d_name);

                if (de->d_name[0] == '.' || n < strlen(".state") || !streq(de->d_name + n - strlen(".state"), ".state"))
                        continue;
                snprintf(path, sizeof(path), "state/%s", de->d_name);
                text = read_text(m, path);
                found = strstr(text, want);
        }
        closedir(d);
        return found;
}

/*
 * tsmd dies after a reclaim renewed the token but before its answer was out (here it waits
 * behind megabytes of answers the VMM has not read): the VMM never learnt the new token, so the
 * one it reclaimed with still works, after a crash of the worker or of all of tsmd (the fd store
 * has the context under the new name by then). That reclaim renews it in turn, and once its
 * answer is out, the old token is void.
 */
TEST(a_crash_before_the_renewed_token_is_out_leaves_the_old_one) {
        /* 0: the worker crashes; 1: all of tsmd; 2: all of tsmd, then the next tsmd's worker
         * before the VMM comes back: the monitor keeps the previous reclaim id of a context the
         * fd store handed back (the state file's, RESTORED_PREVIOUS), and tells its next worker. */
        for (int crash = 0; crash <= 2; crash++) {
                char t0[64], token[64], id[33], old_name[128];
                VarlinkClient *c;
                Manager m;
                int fd;

                if (geteuid() != 0)
                        SKIP("needs root to read the worker's state directory");
                c = start_with_bound_context(&m, t0);
                manager_wait(&m, has_stored, 5000);
                reclaim_id_of(t0, id);
                snprintf(old_name, sizeof(old_name), "ctxid.%u.%s", (unsigned) getuid(), id);
                (void) crash_worker(&m);
                varlink_client_free(c);

                fd = reclaim_behind_unread_answers(&m, t0, 400);
                for (unsigned i = 0; i < 500 && !renewal_pending(&m, id); i++)
                        usleep(10000);
                ASSERT_TRUE(renewal_pending(&m, id));
                wait_removed(&m, old_name); /* the monitor renamed it */

                if (crash >= 1)
                        crash_and_restart(&m);
                else
                        (void) crash_worker(&m);
                safe_close(fd);
                if (crash == 2)
                        (void) crash_worker(&m);

                c = connect_client(&m);
                snprintf(token, sizeof(token), "%s", t0);
                reclaim_bound(c, token);
                wait_renewal_done(&m, token);
                expect_token_hidden(&m, token);
                (void) crash_worker(&m);
                varlink_client_free(c);
                expect_token_void(&m, t0);
                c = connect_client(&m);
                reclaim_bound(c, token);
                varlink_client_free(c);
                ASSERT_FALSE(log_contains(&m, "Compromised worker"));
                stop(&m);
        }
}

/* The next whole answer tsmd sends on fd (a raw connection) no larger than 4 KiB, parsed; larger
 * ones (the descriptions reclaim_behind_unread_answers() asked for) are skipped. The fds that
 * came with them are dropped, read without room for them. */
static json_object *read_small_answer(int fd) {
        struct timeval tv = { .tv_sec = 10 };
        static char buf[1 << 16];
        char msg[4096];
        size_t n = 0;
        bool small = true;

        ASSERT_OK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
        for (;;) {
                ssize_t k = read(fd, buf, sizeof(buf));

                ASSERT_TRUE(k > 0);
                for (ssize_t i = 0; i < k;) {
                        char *nul = memchr(buf + i, 0, (size_t) (k - i));
                        size_t len = nul ? (size_t) (nul - (buf + i)) : (size_t) (k - i);

                        if (small && n + len < sizeof(msg)) {
                                memcpy(msg + n, buf + i, len);
                                n += len;
                        } else
                                small = false;
                        i += (ssize_t) len;
                        if (!nul)
                                continue;
                        i++;
                        if (small) {
                                /* Nothing after it was asked for: the rest of buf is no answer. */
                                ASSERT_EQ(i, k);
                                msg[n] = 0;
                                return json_tokener_parse(msg);
                        }
                        n = 0;
                        small = true;
                }
        }
}

static void wait_log(Manager *m, const char *needle);

/*
 * The answer with the renewed token is out, but the state file cannot drop the token before it
 * (a full /run: here a directory the worker may not write): that one stays valid in the file
 * for a reclaim after a restart only until a save of the context succeeds. The context owes one,
 * tried again on a timer: once the directory takes files again, the file drops the token with
 * no change of the context to save. Before, it waited for the context's next change, and the
 * voided token reclaimed after any restart meanwhile (a VMM that changes nothing, for days).
 * Kept in memory until a save of its own succeeded, every later save would have written it
 * again.
 */
TEST(a_token_void_but_not_saved_is_dropped_once_the_save_can_be_made) {
        _cleanup_(json_object_putp) json_object *answer = NULL;
        char t0[64], token[64], id[33], dir[PATH_MAX];
        json_object *parameters;
        VarlinkClient *c;
        Manager m;
        int fd;

        if (geteuid() != 0)
                SKIP("needs root to take the worker's state directory away from it");
        c = start_with_bound_context(&m, t0);
        manager_wait(&m, has_stored, 5000);
        reclaim_id_of(t0, id);
        (void) crash_worker(&m);
        varlink_client_free(c);

        /* Steps 1 and 2 of the renewal are saved; the answer waits behind unread ones. */
        fd = reclaim_behind_unread_answers(&m, t0, 400);
        for (unsigned i = 0; i < 500 && !renewal_pending(&m, id); i++)
                usleep(10000);
        ASSERT_TRUE(renewal_pending(&m, id));
        snprintf(dir, sizeof(dir), "%s/state", m.dir);
        ASSERT_OK(chmod(dir, 0500));
        answer = read_small_answer(fd);
        ASSERT_TRUE(json_object_object_get_ex(answer, "parameters", &parameters));
        snprintf(token, sizeof(token), "%s", strempty(json_get_string(parameters, "reclaimToken")));
        ASSERT_EQ(strlen(token), 32u);
        ASSERT_EQ(json_object_get_int64(json_object_object_get(parameters, "context")), 1);
        wait_log(&m, "stays valid for a reclaim after a restart");
        usleep(300 * 1000); /* retries fail meanwhile */
        ASSERT_TRUE(renewal_pending(&m, id));

        /* Room again: the retry saves the file without the token before, nothing changed. */
        ASSERT_OK(chmod(dir, 0700));
        wait_renewal_done(&m, token);
        ASSERT_FALSE(renewal_pending(&m, id));
        wait_log(&m, "Saved the state of a context of uid");

        (void) crash_worker(&m);
        safe_close(fd);
        expect_token_void(&m, t0);
        c = connect_client(&m);
        (void) reclaim(c, token);
        varlink_client_free(c);
        stop(&m);
}

/* ---- saves owed ------------------------------------------------------------------------------- */

/* Waits (bounded) until the state file of the context of reclaim id id has needle (want true),
 * or has it no more (want false). */
static void wait_state_file(Manager *m, const char *id, const char *needle, bool want) {
        char name[64];

        snprintf(name, sizeof(name), "state/%s.state", id);
        for (unsigned i = 0; i < 500; i++) {
                _cleanup_free_ char *text = read_text(m, name);

                if (text[0] && !!strstr(text, needle) == want)
                        return;
                usleep(10000);
        }
        TEST_FAIL("the state file %s/%s %s '%s'", m->dir, name, want ? "lacks" : "still has", needle);
}

/* How often needle is in tsmd's log. */
static unsigned log_count(Manager *m, const char *needle) {
        _cleanup_free_ char *text = read_text(m, "tsmd.log");
        unsigned n = 0;

        for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

/* A directory where the save of the context of reclaim id id writes its new file first: every
 * save of that context fails (EISDIR), whatever the directory's mode, which a worker starting
 * would make 0700 again. */
static void block_saves(Manager *m, const char *id, bool block) {
        char path[PATH_MAX];

        snprintf(path, sizeof(path), "%s/state/%s.state.tmp", m->dir, id);
        if (block)
                ASSERT_OK(mkdir(path, 0700));
        else
                ASSERT_OK(rmdir(path));
}

/* GetStatus with 'more': the contextsOwingSave its last reply told into *userdata (an int64_t). */
static int on_status(VarlinkClient *c, json_object *parameters, const char *error, bool continues, void *userdata) {
        json_object *v;

        if (!error && json_object_object_get_ex(parameters, "contextsOwingSave", &v))
                *(int64_t *) userdata = json_object_get_int64(v);
        return 0;
}

/* Waits (bounded) until the GetStatus subscription on a tells that want contexts owe a save. */
static void wait_owing(VarlinkClient *a, const int64_t *owing, int64_t want) {
        for (uint64_t deadline = now_monotonic_usec() + 5 * 1000000ULL; now_monotonic_usec() < deadline && *owing != want;) {
                struct pollfd p = { .fd = varlink_client_get_fd(a), .events = varlink_client_get_events(a) };

                (void) poll(&p, 1, 10);
                ASSERT_TRUE(varlink_client_process(a) >= 0);
        }
        ASSERT_EQ(*owing, want);
}

#define SAVE_FAILED "Failed to save the state of a context"
#define SAVE_PAID "Saved the state of a context of uid"

/*
 * A DetachDevice succeeds whether or not its state can be saved (giving a device up must work),
 * and the context owes the save: tried again, logged once, until it is made; an administrator's
 * GetStatus counts it meanwhile. Before, the file kept the vDevice until the context's next
 * saved change: a restart of tsmd meanwhile attached it again (bound), and its device stayed
 * busy for every other guest until the context went.
 */
TEST(a_detach_whose_state_cannot_be_saved_is_saved_once_it_can) {
        _cleanup_(json_object_putp) json_object *none = NULL;
        char token[64], id[33], dir[PATH_MAX], params[128];
        VarlinkClient *c, *other, *admin;
        int64_t ctx, owing = -1;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to take the worker's state directory away from it");
        c = start_with_bound_context_id(&m, token, id);
        ASSERT_OK(varlink_client_connect(m.admin, &admin));
        ASSERT_OK(varlink_client_call_async(admin, "io.tsmd.Service.GetStatus", NULL, VARLINK_CALL_MORE, on_status,
                                            &owing));
        wait_owing(admin, &owing, 0);
        snprintf(dir, sizeof(dir), "%s/state", m.dir);
        ASSERT_OK(chmod(dir, 0500));
        call_ok(c, "io.tsmd.Guest.DetachDevice", "{\"context\":1,\"vdeviceId\":5}");
        wait_log(&m, SAVE_FAILED);
        usleep(400 * 1000); /* retries fail meanwhile */
        wait_state_file(&m, id, "VDevice=5 0000:01:00.0 bound\n", true);
        wait_owing(admin, &owing, 1);

        ASSERT_OK(chmod(dir, 0700));
        wait_state_file(&m, id, "VDevice=", false);
        wait_log(&m, SAVE_PAID);
        ASSERT_EQ(log_count(&m, SAVE_FAILED), 1u);
        ASSERT_EQ(log_count(&m, SAVE_PAID), 1u);
        wait_owing(admin, &owing, 0);
        varlink_client_free(admin);

        /* After a restart of tsmd, the context has no vDevice 5, and the device is free. */
        crash_and_restart(&m);
        varlink_client_free(c);
        c = connect_client(&m);
        ctx = reclaim(c, token);
        snprintf(params, sizeof(params), "{\"context\":%lld,\"vdeviceId\":5}", (long long) ctx);
        ASSERT_STREQ(call_error(c, "io.tsmd.Guest.GetDeviceState", params), "io.tsmd.Guest.NoSuchVDevice");
        none = device_owner(&m, "0000:01:00.0");
        ASSERT_NULL(none);
        other = connect_client(&m);
        call_ok(other, "io.tsmd.Guest.OpenContext", NULL);
        call_ok(other, "io.tsmd.Guest.AttachDevice", "{\"context\":1,\"vdeviceId\":5,\"pciAddress\":\"0000:01:00.0\"}");
        varlink_client_free(other);
        varlink_client_free(c);
        stop(&m);
}

/*
 * A restored context's state file is written anew from what the monitor kept (here: without a
 * vDevice 9 the file names and the monitor never had). Where that save fails, it is owed like
 * any other, and made once it can be, before anyone reclaims the context: before, the file kept
 * the stale vDevice until the owner came back and changed something.
 */
TEST(a_restored_context_whose_state_cannot_be_saved_is_saved_once_it_can) {
        char token[64], id[33], text[128], params[128];
        VarlinkClient *c;
        int64_t ctx;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to write the worker's state directory");
        c = start_with_bound_context_id(&m, token, id);
        block_saves(&m, id, true);
        snprintf(text, sizeof(text), "[Context]\nUid=%u\nVDevice=5 0000:01:00.0 bound\nVDevice=9 0000:02:00.0 unbound\n",
                 (unsigned) getuid());
        forge_state_file_and_crash(&m, c, id, text);
        ASSERT_TRUE(log_contains(&m, "which the monitor does not have; dropping it"));
        wait_log(&m, SAVE_FAILED);
        usleep(400 * 1000); /* retries fail meanwhile */
        wait_state_file(&m, id, "VDevice=9 0000:02:00.0", true);

        block_saves(&m, id, false);
        wait_state_file(&m, id, "VDevice=9", false);
        wait_state_file(&m, id, "VDevice=5 0000:01:00.0 bound\n", true);
        wait_log(&m, SAVE_PAID);
        ASSERT_EQ(log_count(&m, SAVE_FAILED), 1u);

        c = connect_client(&m);
        ctx = reclaim_vdevice(c, token, 5, params, sizeof(params));
        ASSERT_TRUE(json_object_get_boolean(json_object_object_get(call_ok(c, "io.tsmd.Guest.GetDeviceState", params),
                                                                   "bound")));
        close_context_and_stop(&m, c, ctx);
}

/* contextsOwingSave, as an administrator's GetStatus tells it now. */
static int64_t contexts_owing_save(Manager *m) {
        json_object *reply = NULL; /* the client's */
        const char *error = NULL;
        VarlinkClient *a;
        int64_t n;

        ASSERT_OK(varlink_client_connect(m->admin, &a));
        varlink_client_set_timeout(a, 10 * 1000000ULL);
        ASSERT_OK(varlink_client_call(a, "io.tsmd.Service.GetStatus", NULL, &reply, &error));
        ASSERT_NULL(error);
        n = record_int(reply, "contextsOwingSave");
        varlink_client_free(a);
        return n;
}

/*
 * A context released while it owes a save owes nothing: its release removes the file, and no
 * retry writes it again once saves are possible (nor touches the context, gone: the sanitizers
 * would tell).
 */
TEST(a_context_released_while_owing_a_save_leaves_no_file) {
        char token[64], id[33], name[64];
        VarlinkClient *c;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to write the worker's state directory");
        c = start_with_bound_context_id(&m, token, id);
        snprintf(name, sizeof(name), "%s.state", id);
        block_saves(&m, id, true);
        call_ok(c, "io.tsmd.Guest.DetachDevice", "{\"context\":1,\"vdeviceId\":5}");
        wait_log(&m, SAVE_FAILED);
        ASSERT_EQ(contexts_owing_save(&m), 1);

        varlink_client_free(c); /* released */
        for (unsigned i = 0; i < 500 && state_file_exists(&m, name); i++)
                usleep(10000);
        ASSERT_FALSE(state_file_exists(&m, name));
        ASSERT_EQ(contexts_owing_save(&m), 0);
        block_saves(&m, id, false);
        usleep(1000 * 1000); /* past the retries due: 0.1, 0.3, 0.7 s */
        ASSERT_FALSE(state_file_exists(&m, name));
        ASSERT_FALSE(log_contains(&m, SAVE_PAID));
        stop(&m);
}

/*
 * A save owed is paid by the next change of its context that saves, not only by the retry: once
 * that change is saved the context owes nothing, at once (here the retry's backoff, doubling,
 * had grown to seconds when saves became possible again, the next retry 3 s away).
 */
TEST(a_save_owed_is_paid_by_the_next_saved_change) {
        char token[64], id[33];
        VarlinkClient *c;
        int64_t owing = -1;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to write the worker's state directory");
        c = start_with_bound_context_id(&m, token, id);
        block_saves(&m, id, true);
        call_ok(c, "io.tsmd.Guest.DetachDevice", "{\"context\":1,\"vdeviceId\":5}");
        wait_log(&m, SAVE_FAILED);
        usleep(3200 * 1000); /* retries fail at 0.1, 0.3, 0.7, 1.5 and 3.1 s; the next at 6.3 s */
        ASSERT_EQ(contexts_owing_save(&m), 1);
        block_saves(&m, id, false);
        /* The backoff: no retry is due for 3 s (each a write while the disk takes none). */
        usleep(300 * 1000);
        ASSERT_FALSE(log_contains(&m, SAVE_PAID));

        call_ok(c, "io.tsmd.Guest.AttachDevice", "{\"context\":1,\"vdeviceId\":6,\"pciAddress\":\"0000:01:00.0\"}");
        for (unsigned i = 0; i < 100 && (owing = contexts_owing_save(&m)) != 0; i++)
                usleep(10000);
        ASSERT_EQ(owing, 0);
        wait_state_file(&m, id, "VDevice=6 0000:01:00.0", true);
        wait_log(&m, SAVE_PAID);
        ASSERT_EQ(log_count(&m, SAVE_PAID), 1u);
        varlink_client_free(c);
        stop(&m);
}

/*
 * A worker that stops (SIGTERM, the fd store keeping its contexts for the next tsmd) owing a
 * save tries it once more on its way out, rather than leave the file as it was saved last for
 * the next tsmd to take (here the retry's backoff had grown to seconds when the save became
 * possible again).
 */
TEST(a_save_owed_is_tried_once_more_as_the_worker_stops) {
        char token[64], id[33];
        VarlinkClient *c;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to write the worker's state directory");
        c = start_with_bound_context_id(&m, token, id);
        manager_wait(&m, has_stored, 5000);
        block_saves(&m, id, true);
        call_ok(c, "io.tsmd.Guest.DetachDevice", "{\"context\":1,\"vdeviceId\":5}");
        wait_log(&m, SAVE_FAILED);
        /* Tried at 0.1, 0.3, 0.7 and 1.5 s, next at 3.1 s: unblocked halfway between the two,
         * where neither a late retry nor a late wake-up of the test crosses one. */
        usleep(2300 * 1000);
        block_saves(&m, id, false);
        ASSERT_FALSE(log_contains(&m, SAVE_PAID));
        stop(&m);
        varlink_client_free(c);
        wait_state_file(&m, id, "VDevice=", false);
        ASSERT_TRUE(log_contains(&m, SAVE_PAID));
}

/* ---- saves owed by a restore's changes -------------------------------------------------------- */

#define RESTORED "Restored a context of uid"

/* The restore's own save of the context of reclaim id id made (RESTORED is logged after it), its
 * file saying want (a VDevice= line), release() has the TSM answer the change the restore made
 * on the context's behalf while saves of it fail. The save of that change is owed: the file
 * says want meanwhile, the failure is logged once, and GetStatus counts the context; once saves
 * can be made again, the retry writes then (nothing else changes the context), logged once. */
static void expect_restore_save_retried(Manager *m, const char *id, const char *want, void (*release)(Manager *m),
                                        const char *then) {
        wait_log(m, RESTORED);
        wait_state_file(m, id, want, true);
        block_saves(m, id, true);
        release(m);
        wait_log(m, SAVE_FAILED);
        usleep(400 * 1000); /* retries fail meanwhile */
        wait_state_file(m, id, want, true);
        ASSERT_EQ(contexts_owing_save(m), 1);

        block_saves(m, id, false);
        wait_state_file(m, id, then, true);
        wait_log(m, SAVE_PAID);
        ASSERT_EQ(log_count(m, SAVE_FAILED), 1u);
        ASSERT_EQ(log_count(m, SAVE_PAID), 1u);
        ASSERT_EQ(contexts_owing_save(m), 0);
}

/* The emulated TSM has answered the bind made again (slow: EmulatedLatencyUSec=). */
static void rebind_answered(Manager *m) {
        json_object_put(wait_audit_record(m, "restore-bind", "ok"));
}

/*
 * The bind a restarted tsmd makes again on an emulated vDevice's behalf (on_restore_rebound())
 * is saved once the TSM answered; where that save fails, the context owes it like any other,
 * and it is made once it can be: not made, the file would keep the vDevice changing, which the
 * next restart takes for a change cut off.
 */
TEST(a_rebind_after_a_restart_whose_state_cannot_be_saved_is_saved_once_it_can) {
        char token[64], id[33], params[128];
        VarlinkClient *c;
        int64_t ctx;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to write the worker's state directory");
        c = start_with_bound_context_id(&m, token, id);
        config_set(&m, "Platform", "EmulatedLatencyUSec", "1000000");
        crash_and_restart(&m);
        varlink_client_free(c);
        expect_restore_save_retried(&m, id, "VDevice=5 0000:01:00.0 changing\n", rebind_answered,
                                    "VDevice=5 0000:01:00.0 bound\n");

        c = connect_client(&m);
        ctx = reclaim_vdevice(c, token, 5, params, sizeof(params));
        expect_bound(c, params, true, "config_locked");
        close_context_and_stop(&m, c, ctx);
}

/* Kernel mode, tsmd's log captured: a context (token, reclaim id into id) with vDevice 11 on
 * 0000:01:00.0, whose VMM's Bind the kernel holds (until kernel_hold(m, 11, false)). Returns
 * the VMM's connection. */
static VarlinkClient *start_with_held_bind(Manager *m, char token[static 64], char id[static 33]) {
        static const char bind[] = "{\"method\":\"io.tsmd.Guest.Bind\",\"parameters\":{\"context\":1,\"vdeviceId\":11}}";
        VarlinkClient *c;
        json_object *reply;

        manager_init_kernel(m);
        manager_capture_log(m);
        manager_start_ready(m);
        c = connect_client(m);
        reply = call_ok(c, "io.tsmd.Guest.OpenContext", NULL);
        snprintf(token, 64, "%s", json_get_string(reply, "reclaimToken"));
        reclaim_id_of(token, id);
        call_ok(c, "io.tsmd.Guest.AttachDevice", "{\"context\":1,\"vdeviceId\":11,\"pciAddress\":\"0000:01:00.0\"}");
        manager_wait(m, has_stored, 5000);
        kernel_hold(m, 11, true);
        ASSERT_EQ(send(varlink_client_get_fd(c), bind, sizeof(bind), MSG_NOSIGNAL), (ssize_t) sizeof(bind));
        expect_kernel_calls(m, "op 11 1\n");
        return c;
}

static void kernel_answers(Manager *m) {
        kernel_hold(m, 11, false);
}

/* The VMM reclaims its context (token), whose vDevice 11 is bound or not. */
static void expect_reclaimed_bound(Manager *m, char token[static 64], bool bound) {
        VarlinkClient *c = connect_client(m);
        char params[128];
        json_object *reply;

        (void) reclaim_vdevice(c, token, 11, params, sizeof(params));
        reply = call_ok(c, "io.tsmd.Guest.GetDeviceState", params);
        ASSERT_EQ(json_object_get_boolean(json_object_object_get(reply, "bound")), bound);
        varlink_client_free(c);
}

/*
 * The worker dies while the kernel holds its Bind: the next one learns where the bind ended once
 * the kernel answers (on_settled()), and saves it; where that save fails, the context owes it,
 * and it is made once it can be.
 */
TEST(a_settled_bind_whose_state_cannot_be_saved_is_saved_once_it_can) {
        char token[64], id[33];
        VarlinkClient *c;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root (a mount namespace, a fixture bound over /sys)");
        c = start_with_held_bind(&m, token, id);
        (void) crash_worker(&m);
        varlink_client_free(c);
        expect_restore_save_retried(&m, id, "VDevice=11 0000:01:00.0 changing\n", kernel_answers,
                                    "VDevice=11 0000:01:00.0 bound\n");
        expect_reclaimed_bound(&m, token, true);
        stop(&m);
        (void) umount2(m.sysfs_root, MNT_DETACH);
}

/*
 * All of tsmd dies while the kernel holds a Bind: the next tsmd unbinds the vDevice, whose state
 * nobody can tell (on_restore_unbound()), and saves it unbound; where that save fails, the
 * context owes it, and it is made once it can be.
 */
TEST(a_restore_unbind_whose_state_cannot_be_saved_is_saved_once_it_can) {
        char token[64], id[33];
        VarlinkClient *c;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root (a mount namespace, a fixture bound over /sys)");
        c = start_with_held_bind(&m, token, id);
        kill(m.pid, SIGKILL);
        ASSERT_EQ(manager_exit_status(&m), 128 + SIGKILL);
        varlink_client_free(c);
        manager_start_ready(&m); /* its unbind held in the kernel too */
        expect_kernel_calls(&m, "op 11 1\nop 11 2\n");
        expect_restore_save_retried(&m, id, "VDevice=11 0000:01:00.0 changing\n", kernel_answers,
                                    "VDevice=11 0000:01:00.0 unbound\n");
        json_object_put(wait_audit_record(&m, "restore-unbind", "ok"));
        expect_reclaimed_bound(&m, token, false);
        stop(&m);
        (void) umount2(m.sysfs_root, MNT_DETACH);
}

/* ---- a renewal cut off from the monitor --------------------------------------------------------- */

/* Copies src to dst (created with mode). */
static void copy_file(const char *src, const char *dst, mode_t mode) {
        _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC), out = -EBADF;
        char b[65536];
        ssize_t n;

        ASSERT_TRUE(in >= 0);
        out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        ASSERT_TRUE(out >= 0);
        while ((n = read(in, b, sizeof(b))) > 0)
                ASSERT_EQ(write(out, b, (size_t) n), n);
        ASSERT_TRUE(n == 0);
        ASSERT_OK(fchmod(out, mode));
}

/* From the next start on, worker-proxy (tests/privsep/worker-proxy.c) sits in the worker's seat,
 * relaying to the real worker; its control file, <dir>/proxy-control, is the worker user's, for
 * the proxy to empty once it acted on it. */
static void manager_use_proxy(Manager *m) {
        const struct passwd *pw = getpwnam("tsmd");
        char worker[160];
        int fd;

        if (!pw)
                SKIP("no user 'tsmd' for the worker");
        snprintf(worker, sizeof(worker), "%s/tsmd-worker", m->dir);
        copy_file(TSMD_WORKER_BUILT, worker, 0755);
        snprintf(m->control, sizeof(m->control), "%s/proxy-control", m->dir);
        fd = open(m->control, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(fchown(fd, pw->pw_uid, pw->pw_gid));
        safe_close(fd);
}

static void proxy_control(Manager *m, const char *word) {
        FILE *f = fopen(m->control, "we");

        ASSERT_NOT_NULL(f);
        fputs(word, f);
        ASSERT_EQ(fclose(f), 0);
}

/*
 * The channel to the monitor breaks in the middle of a renewal (worker-proxy hangs up on the
 * worker at RECLAIM_CONTEXT): before the monitor got it, or after it renamed the context, its
 * reply never read. The worker cannot tell which: it keeps both state files, and exits. The VMM
 * got no answer and has the token it came with only, which reclaims from the next worker (it has
 * the name the monitor has), also after a crash of tsmd; and that reclaim renews it and voids it.
 * The worker removed the new file when the monitor had renamed the context to it: the next one
 * found the name without its file, and the VMM's token was refused.
 */
TEST(a_renewal_cut_off_from_the_monitor_keeps_the_old_token) {
        static const char *const cuts[] = { "cut-reclaim-request", "cut-reclaim-reply" };

        if (geteuid() != 0)
                SKIP("the monitor starts its worker as another user: needs root");
        for (size_t i = 0; i < ELEMENTSOF(cuts); i++)
                for (int whole_tsmd = 0; whole_tsmd <= 1; whole_tsmd++) {
                        bool renamed = streq(cuts[i], "cut-reclaim-reply");
                        char t0[64], token[64], id[33], old_name[128], params[96];
                        _cleanup_free_ char *control = NULL;
                        json_object *reply = NULL;
                        const char *error = NULL;
                        VarlinkClient *c;
                        pid_t worker;
                        Manager m;
                        int r;

                        fprintf(stderr, "# %s, then a restart of %s\n", cuts[i], whole_tsmd ? "tsmd" : "the worker");
                        manager_init(&m);
                        manager_capture_log(&m);
                        manager_use_proxy(&m);
                        manager_start_ready(&m);
                        c = connect_client(&m);
                        open_bound_context(c, t0);
                        manager_wait(&m, has_stored, 5000);
                        reclaim_id_of(t0, id);
                        snprintf(old_name, sizeof(old_name), "ctxid.%u.%s", (unsigned) getuid(), id);
                        (void) crash_worker(&m);
                        varlink_client_free(c);

                        proxy_control(&m, cuts[i]);
                        worker = worker_of(m.pid);
                        c = connect_client(&m);
                        snprintf(params, sizeof(params), "{\"reclaimToken\":\"%s\"}", t0);
                        r = varlink_client_call(c, "io.tsmd.Guest.ReclaimContext", json_tokener_parse(params), &reply,
                                                &error);
                        ASSERT_TRUE(r < 0 || error); /* no answer, no new token */
                        varlink_client_free(c);
                        (void) wait_worker_replaced(&m, worker);
                        control = read_text(&m, "proxy-control");
                        ASSERT_STREQ(control, ""); /* the proxy acted on it */
                        ASSERT_TRUE(log_contains(&m, "hanging up on the worker"));
                        manager_drain(&m);
                        if (renamed)
                                wait_removed(&m, old_name);
                        else {
                                const char *name;

                                ASSERT_TRUE(stored_context(&m, &name) >= 0);
                                ASSERT_STREQ(name, old_name);
                        }

                        if (whole_tsmd)
                                crash_and_restart(&m);
                        c = connect_client(&m);
                        snprintf(token, sizeof(token), "%s", t0);
                        reclaim_bound(c, token);
                        wait_renewal_done(&m, token);
                        expect_token_hidden(&m, token);
                        (void) crash_worker(&m);
                        varlink_client_free(c);
                        expect_token_void(&m, t0);
                        c = connect_client(&m);
                        reclaim_bound(c, token);
                        varlink_client_free(c);
                        stop(&m);
                }
}

/* ---- a crash inside the fd store's rename -------------------------------------------------------- */

/*
 * tsmd is killed between two of a renewal's fd store notifications (notify-crash-preload.c kills
 * it right after the n-th), and started again with what the store holds then. The VMM, whose
 * answer never left, has only the token it came with: that one reclaims its context, vDevice
 * bound, and the store ends with the fd under one name, the renewed token's id. Before, the
 * rename took the old name out and then put the new one in: killed between the two, the store
 * held nothing, the context was lost to tsmd, and the VMM's reclaim refused.
 */
TEST(a_crash_inside_the_fd_store_rename_keeps_the_context) {
        if (geteuid() != 0)
                SKIP("needs root to read the worker's state directory");
        for (unsigned n = 1; n <= 4; n++) {
                _cleanup_free_ char *left = NULL;
                char t0[64], token[64], params[96];
                json_object *reply = NULL;
                const char *error = NULL;
                VarlinkClient *c;
                Manager m;
                FILE *f;
                int r;

                fprintf(stderr, "# killed after the rename's notification %u\n", n);
                manager_init(&m);
                manager_capture_log(&m);
                snprintf(m.crash, sizeof(m.crash), "%s/crash-after", m.dir);
                manager_start_ready(&m);
                c = connect_client(&m);
                open_bound_context(c, t0);
                manager_wait(&m, has_stored, 5000);
                (void) crash_worker(&m);
                varlink_client_free(c);
                manager_drain(&m);

                f = fopen(m.crash, "we");
                ASSERT_NOT_NULL(f);
                fprintf(f, "%u", n);
                ASSERT_EQ(fclose(f), 0);
                c = connect_client(&m);
                snprintf(params, sizeof(params), "{\"reclaimToken\":\"%s\"}", t0);
                r = varlink_client_call(c, "io.tsmd.Guest.ReclaimContext", json_tokener_parse(params), &reply, &error);
                ASSERT_TRUE(r < 0 || error); /* tsmd died on the way */
                ASSERT_EQ(manager_exit_status(&m), 128 + SIGKILL);
                varlink_client_free(c);
                left = read_text(&m, "crash-after");
                ASSERT_STREQ(left, ""); /* it was counted down to the end */
                manager_drain(&m);
                ASSERT_TRUE(stored_but_last_good(&m) >= 1);

                manager_start_ready(&m);
                c = connect_client(&m);
                snprintf(token, sizeof(token), "%s", t0);
                reclaim_bound(c, token);
                wait_renewal_done(&m, token);
                expect_token_hidden(&m, token);
                ASSERT_EQ(stored_but_last_good(&m), 1u); /* no carrier left, nor any other name */
                (void) crash_worker(&m);
                varlink_client_free(c);
                expect_token_void(&m, t0);
                c = connect_client(&m);
                reclaim_bound(c, token);
                varlink_client_free(c);
                stop(&m);
        }
}

/* Waits (bounded) until worker-proxy took the word in its control file (it empties it). */
static void proxy_took_control(Manager *m) {
        for (unsigned i = 0; i < 1000; i++, manager_wait(m, NULL, 10)) {
                struct stat st;

                ASSERT_OK(stat(m->control, &st));
                if (st.st_size == 0)
                        return;
        }
        TEST_FAIL("worker-proxy did not take '%s'", m->control);
}

/* Waits (bounded) until tsmd's log has needle, reading notifications meanwhile. */
static void wait_log(Manager *m, const char *needle) {
        for (unsigned i = 0; i < 1000; i++, manager_wait(m, NULL, 10))
                if (log_contains(m, needle))
                        return;
        TEST_FAIL("no '%s' in %s/tsmd.log", needle, m->dir);
}

/* Whether pid is in a system call that waits for events (libevent's epoll_wait()). */
static bool in_epoll_wait(pid_t pid) {
        char path[64], buf[128] = "";
        long nr;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%i/syscall", pid);
        f = fopen(path, "re");
        ASSERT_NOT_NULL(f);
        if (!fgets(buf, sizeof(buf), f))
                buf[0] = 0;
        fclose(f);
        nr = strtol(buf, NULL, 10);
        return nr == SYS_epoll_wait || nr == SYS_epoll_pwait
#ifdef SYS_epoll_pwait2
                || nr == SYS_epoll_pwait2
#endif
                ;
}

/* The state letter of pid (/proc/<pid>/stat: 'T' once stopped). */
static char process_state(pid_t pid) {
        char path[64], buf[512] = "", *p;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%i/stat", pid);
        f = fopen(path, "re");
        ASSERT_NOT_NULL(f);
        if (!fgets(buf, sizeof(buf), f))
                buf[0] = 0;
        fclose(f);
        p = strrchr(buf, ')');
        return p && p[1] == ' ' ? p[2] : 0;
}

/* Stops the monitor (SIGSTOP), waiting (bounded) until it is stopped. */
static void monitor_stop(Manager *m) {
        ASSERT_OK(kill(m->pid, SIGSTOP));
        for (unsigned i = 0; i < 1000 && process_state(m->pid) != 'T'; i++)
                usleep(1000);
        ASSERT_EQ(process_state(m->pid), 'T');
}

/* Stops the monitor (SIGSTOP) where it waits for events, not in the middle of handling one: what
 * it finds when it goes on is all new to it then. Its epoll_wait() fails with EINTR then, and
 * its timers run before it reads anything, unless an event woke it just before the stop (the
 * worker's heartbeat): that one it returns, and the monitor reads the channel first. */
static void monitor_stop_idle(Manager *m) {
        for (unsigned i = 0; i < 200; i++) {
                monitor_stop(m);
                if (in_epoll_wait(m->pid))
                        return;
                ASSERT_OK(kill(m->pid, SIGCONT));
                manager_wait(m, NULL, 10);
        }
        TEST_FAIL("the monitor was never stopped while it waited for events");
}

/* The start limit no_ready_from_a_worker_given_up_on sets ([Worker] StartTimeoutSec=; 15 s by
 * default), so as not to wait out the default: long enough that a start under load (ASan, four
 * tests on two cores) has its worker held back and the monitor stopped well within it.
 * no_ready_read_past_the_start_limit keeps the default: with 5 s, in a run of the whole suite
 * (not alone), the monitor was found running (state R, its tick late) when the test meant to
 * wake it 0.5 s before the limit, and the tick came first in four tries of five. */
#define START_TIMEOUT_SEC 5
#define START_TIMEOUT_USEC (START_TIMEOUT_SEC * 1000000ULL)
#define START_TIMEOUT_DEFAULT_SEC 15
#define START_TIMEOUT_DEFAULT_USEC (START_TIMEOUT_DEFAULT_SEC * 1000000ULL)

/* The monitor gave up on the worker (proxy) as not ready in limit_sec: it is replaced, and no
 * READY=1 goes out, neither for it nor after the stop that ends the test. */
static void expect_given_up_never_ready(Manager *m, pid_t proxy, unsigned limit_sec) {
        char given_up[64];

        snprintf(given_up, sizeof(given_up), "did not get ready in %u s", limit_sec);
        wait_log(m, given_up);
        worker_replaced(m, proxy);
        proxy_took_control(m);
        manager_drain(m);
        ASSERT_FALSE(m->ready);
        kill(m->pid, SIGTERM);
        ASSERT_EQ(manager_exit_status(m), 0);
        manager_drain(m);
        ASSERT_TRUE(m->stopping);
        ASSERT_FALSE(m->ready);
}

/* A worker that sends READY while the monitor gives up on it as unresponsive (not ready
 * StartTimeoutSec= after its start) is dead by the time the monitor reads it: no READY=1 for it, the first start
 * is not done. The monitor, stopped, mostly wakes to its overdue check, kills the worker, and
 * only then reads the READY queued meanwhile (worker-proxy's, the worker's own held back); woken
 * by the worker's heartbeat just before the stop, it reads the READY first, past the time for
 * it (no_ready_read_past_the_start_limit). */
TEST(no_ready_from_a_worker_given_up_on) {
        pid_t proxy;
        uint64_t t0;
        Manager m;

        if (geteuid() != 0)
                SKIP("the monitor starts its worker as another user: needs root");
        if (access("/proc/self/syscall", R_OK) < 0)
                SKIP("no /proc/<pid>/syscall (a kernel without CONFIG_HAVE_ARCH_TRACEHOOK): cannot tell where the "
                     "monitor waits");
        manager_init(&m);
        config_set(&m, "Worker", "StartTimeoutSec", STRINGIFY(START_TIMEOUT_SEC));
        manager_use_proxy(&m);
        manager_capture_log(&m);
        proxy_control(&m, "hold-ready");
        manager_start(&m);
        wait_log(&m, "holding the worker's READY back"); /* its signals are set up: SIGUSR1 injects */
        t0 = now_monotonic_usec();
        proxy = worker_of(m.pid);

        monitor_stop_idle(&m);
        proxy_control(&m, "ready-twice");
        ASSERT_OK(kill(proxy, SIGUSR1));
        wait_log(&m, "injecting 'ready-twice'");
        proxy_control(&m, "hold-ready"); /* the next worker's READY is held back too */
        /* Past the monitor's time for a start (StartTimeoutSec=). */
        manager_wait(&m, NULL, (int) ((t0 + START_TIMEOUT_USEC + 1000000ULL - now_monotonic_usec()) / 1000));
        ASSERT_OK(kill(m.pid, SIGCONT));

        expect_given_up_never_ready(&m, proxy, START_TIMEOUT_SEC);
}

/* Sleeps until CLOCK_MONOTONIC reads usec (manager_wait() counts its polls, which run late under
 * load); for a monitor stopped, which notifies nothing meanwhile. */
static void sleep_until(uint64_t usec) {
        struct timespec ts = { .tv_sec = (time_t) (usec / 1000000), .tv_nsec = (long) (usec % 1000000) * 1000 };

        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                ;
}

/* A READY the monitor reads past the time a worker has for it (StartTimeoutSec=, 15 s here)
 * does not count, though the once-a-second check that gives up on the worker has not run since:
 * the worker is killed all the same, no READY=1. The test places the READY between the two: a
 * monitor stopped over a second runs its overdue tick as it goes on, and the next a second
 * later (libevent's persistent timer, late, starts again from then); it goes on 14.5 s after
 * the worker's start, is stopped again after that tick, is sent READY, and goes on once the
 * 15 s are past, before its next tick. Returns false when a machine too busy let the tick come
 * first, which decides nothing (the monitor stopped again too late, or slow to read). */
static bool ready_read_past_the_start_limit(void) {
        uint64_t started;
        bool in_time;
        pid_t proxy;
        Manager m;

        manager_init(&m);
        manager_use_proxy(&m);
        manager_capture_log(&m);
        proxy_control(&m, "hold-ready");
        manager_start(&m);
        wait_log(&m, "Started worker"); /* logged as it takes the worker's start time */
        started = now_monotonic_usec();
        wait_log(&m, "holding the worker's READY back"); /* its signals are set up: SIGUSR1 injects */
        proxy = worker_of(m.pid);

        monitor_stop(&m);
        manager_drain(&m); /* the pings of before: the next is the tick as it goes on */
        sleep_until(started + START_TIMEOUT_DEFAULT_USEC - 500 * 1000ULL);
        m.watchdog = false;
        ASSERT_OK(kill(m.pid, SIGCONT));
        manager_wait(&m, has_watchdog, 5000);
        ASSERT_TRUE(m.watchdog);
        /* That tick at 14.5 s, not over 15, and the next stop before the next tick. */
        in_time = !log_contains(&m, "did not get ready in " STRINGIFY(START_TIMEOUT_DEFAULT_SEC) " s");

        monitor_stop(&m);
        if (!in_time || now_monotonic_usec() >= started + START_TIMEOUT_DEFAULT_USEC + 400 * 1000ULL) {
                /* Nothing to decide; the next worker, which nothing holds back (the proxy took
                 * "hold-ready" at its start), may well say READY: just stop. */
                fprintf(stderr, "# the monitor's tick came first (%s), %.2f s after the worker's start\n",
                        in_time ? "stopped again too late" : "it gave up on the worker",
                        (double) (now_monotonic_usec() - started) / 1e6);
                ASSERT_OK(kill(m.pid, SIGCONT));
                kill(m.pid, SIGTERM);
                ASSERT_EQ(manager_exit_status(&m), 0);
                return false;
        }
        proxy_control(&m, "ready-twice");
        ASSERT_OK(kill(proxy, SIGUSR1));
        wait_log(&m, "injecting 'ready-twice'");
        proxy_control(&m, "hold-ready"); /* the next worker's READY is held back too */
        sleep_until(started + START_TIMEOUT_DEFAULT_USEC + 50 * 1000ULL);
        ASSERT_OK(kill(m.pid, SIGCONT));

        expect_given_up_never_ready(&m, proxy, START_TIMEOUT_DEFAULT_SEC);
        return log_contains(&m, "did not get ready in " STRINGIFY(START_TIMEOUT_DEFAULT_SEC) " s (its READY came after that)");
}

TEST(no_ready_read_past_the_start_limit) {
        if (geteuid() != 0)
                SKIP("the monitor starts its worker as another user: needs root");
        for (unsigned i = 0; i < 3; i++)
                if (ready_read_past_the_start_limit())
                        return;
        TEST_FAIL("the monitor's tick came before the READY in three tries: nothing decided");
}

/* After STOPPING=1 no READY=1: a worker's READY that comes after SIGTERM (worker-proxy, stopped,
 * sends it before it passes the SIGTERM on) does not make a start that never finished done. */
TEST(no_ready_after_stopping) {
        pid_t proxy;
        Manager m;

        if (geteuid() != 0)
                SKIP("the monitor starts its worker as another user: needs root");
        manager_init(&m);
        manager_use_proxy(&m);
        manager_capture_log(&m);
        proxy_control(&m, "hold-ready");
        manager_start(&m);
        wait_log(&m, "holding the worker's READY back"); /* its signals are set up: SIGUSR1 injects */
        proxy = worker_of(m.pid);

        ASSERT_OK(kill(proxy, SIGSTOP));
        proxy_control(&m, "ready-twice");
        ASSERT_OK(kill(proxy, SIGUSR1)); /* SIGUSR1 is taken before the SIGTERM to come */
        ASSERT_OK(kill(m.pid, SIGTERM));
        manager_wait(&m, is_stopping, 5000);
        ASSERT_TRUE(m.stopping);
        ASSERT_OK(kill(proxy, SIGCONT));
        ASSERT_EQ(manager_exit_status(&m), 0);
        manager_drain(&m);
        ASSERT_TRUE(log_contains(&m, "injecting 'ready-twice'"));
        ASSERT_FALSE(m.ready);
        ASSERT_FALSE(m.ready_after_stopping);
}

static int on_reply_ignored(VarlinkClient *c, json_object *parameters, const char *error, bool continues,
                            void *userdata) {
        return 0;
}

/* A reload asked for while tsmd stops (its worker finishing a Bind in flight) is refused by name,
 * and tells the service manager nothing: RELOADING=1 and READY=1 after STOPPING=1 would have it
 * take tsmd for running again. A SIGHUP then is ignored. */
TEST(reload_while_stopping_is_refused) {
        VarlinkClient *c, *admin;
        json_object *reply;
        Manager m;

        manager_init(&m);
        config_set(&m, "Platform", "EmulatedLatencyUSec", "3000000");
        manager_capture_log(&m);
        manager_start_ready(&m);
        c = connect_client(&m);
        ASSERT_OK(varlink_client_connect(m.admin, &admin));
        varlink_client_set_timeout(admin, 10 * 1000000ULL);
        reply = call_ok(c, "io.tsmd.Guest.OpenContext", NULL);
        safe_close(varlink_client_take_fd(c, (size_t) json_object_get_int(json_object_object_get(reply, "fileDescriptor"))));
        call_ok(c, "io.tsmd.Guest.AttachDevice", "{\"context\":1,\"vdeviceId\":5,\"pciAddress\":\"0000:01:00.0\"}");
        ASSERT_OK(varlink_client_call_async(c, "io.tsmd.Guest.Bind", json_tokener_parse("{\"context\":1,\"vdeviceId\":5}"),
                                            0, on_reply_ignored, NULL));

        kill(m.pid, SIGTERM);
        wait_log(&m, "Received SIGTERM, finishing 1 requests in flight");
        ASSERT_STREQ(call_error(admin, "io.tsmd.Service.Reload", NULL), "io.tsmd.Service.Stopping");
        ASSERT_OK(kill(m.pid, SIGHUP));
        ASSERT_EQ(manager_exit_status(&m), 0);
        manager_drain(&m);
        ASSERT_TRUE(m.stopping);
        ASSERT_FALSE(m.ready_after_stopping);
        varlink_client_free(admin);
        varlink_client_free(c);
}

static bool has_status(Manager *m) {
        return m->n_status > 0;
}

/* The worker's beat is also the only STATUS= that comes unasked: at least every 5 s (the next
 * within 5 s of the last, 8 s with room for a loaded machine), not a third of a long
 * WatchdogSec= (200 s here). */
TEST(status_is_sent_at_least_every_five_seconds) {
        Manager m;

        manager_init(&m);
        config_set(&m, "Worker", "WatchdogSec", "600");
        manager_start_ready(&m);
        manager_wait(&m, status_says_no_clients, 3000);
        ASSERT_TRUE(status_says_no_clients(&m));
        m.n_status = 0;
        manager_wait(&m, has_status, 8000);
        ASSERT_GE(m.n_status, 1u);
        ASSERT_TRUE(status_says_no_clients(&m));

        kill(m.pid, SIGTERM);
        ASSERT_EQ(manager_exit_status(&m), 0);
}

/* A request in flight that never ends (here a Bind of an emulated device slower than the drain)
 * does not keep a stopping worker forever: it gives up after [Worker] DrainTimeoutSec= (2 s here,
 * 10 by default), saying how many it left, and tsmd exits with status 0, long before the
 * monitor's own stop timeout (15 s). */
TEST(stopping_gives_up_on_requests_in_flight_after_the_drain_timeout) {
        uint64_t start, deadline;
        VarlinkClient *c;
        json_object *reply;
        Manager m;

        manager_init(&m);
        config_set(&m, "Platform", "EmulatedLatencyUSec", "60000000");
        config_set(&m, "Worker", "DrainTimeoutSec", "2");
        manager_capture_log(&m);
        manager_start_ready(&m);
        c = connect_client(&m);
        reply = call_ok(c, "io.tsmd.Guest.OpenContext", NULL);
        safe_close(varlink_client_take_fd(c, (size_t) json_object_get_int(json_object_object_get(reply, "fileDescriptor"))));
        call_ok(c, "io.tsmd.Guest.AttachDevice", "{\"context\":1,\"vdeviceId\":5,\"pciAddress\":\"0000:01:00.0\"}");
        ASSERT_OK(varlink_client_call_async(c, "io.tsmd.Guest.Bind", json_tokener_parse("{\"context\":1,\"vdeviceId\":5}"),
                                            0, on_reply_ignored, NULL));

        kill(m.pid, SIGTERM);
        wait_log(&m, "Received SIGTERM, finishing 1 requests in flight");
        start = now_monotonic_usec();
        /* Its drain was under way when it logged that: a second less, at least. Well before the
         * default's 10 s: the setting is what counts. */
        for (deadline = start + 9 * 1000000ULL; !log_contains(&m, "1 requests still in flight after 2s, exiting anyway.");
             manager_wait(&m, NULL, 50))
                if (now_monotonic_usec() > deadline)
                        TEST_FAIL("the worker still waits on its request in flight after 9 s");
        ASSERT_GE(now_monotonic_usec() - start, 1 * 1000000ULL);
        ASSERT_EQ(manager_exit_status(&m), 0);
        ASSERT_FALSE(log_contains(&m, "did not stop in"));
        varlink_client_free(c);
}

/* tsmd(8)'s exit status after SIGTERM is 0, whatever signal of those tsmd handles comes while it
 * exits: also one that arrives as it frees its event for that signal, which puts back the
 * default action (ending the process, for each of these). The default action, as systemd starts
 * tsmd, even where this test runs with those signals ignored and blocked (under nohup(1), say):
 * with an ignored one inherited, the free would put back "ignored" and that moment never come.
 * SIGHUP, read from a signalfd (its sender goes on record), is blocked from the monitor's start
 * to its exit, and its default action is put back at the start, where an ignored one inherited
 * would never be read: that is when it comes here, and it is a reload, harmless too. */
TEST(signals_while_exiting_are_harmless) {
        static const int signals[] = { SIGHUP, SIGTERM, SIGINT };
        sigset_t blocked;

        ASSERT_OK(sigemptyset(&blocked));
        for (size_t i = 0; i < ELEMENTSOF(signals); i++) {
                ASSERT_TRUE(signal(signals[i], SIG_IGN) != SIG_ERR);
                ASSERT_OK(sigaddset(&blocked, signals[i]));
        }
        ASSERT_OK(sigprocmask(SIG_BLOCK, &blocked, NULL));

        for (size_t i = 0; i < ELEMENTSOF(signals); i++) {
                char raised[96];
                Manager m;

                manager_init(&m);
                manager_capture_log(&m);
                m.signal_at_reset = signals[i];
                manager_start_ready(&m);
                kill(m.pid, SIGTERM);
                ASSERT_EQ(manager_exit_status(&m), 0);
                snprintf(raised, sizeof(raised), "raising %s as its default action", sigabbrev_np(signals[i]));
                ASSERT_TRUE(log_contains(&m, raised));
        }
}

/* A tsmd started with the signals it handles blocked (by a wrapper, a shell, a test: systemd
 * blocks none) handles them all the same: SIGTERM stops it, exit status 0. */
TEST(signals_blocked_at_start_are_handled) {
        Manager m;

        manager_init(&m);
        ASSERT_OK(sigaddset(&m.blocked_at_start, SIGTERM));
        ASSERT_OK(sigaddset(&m.blocked_at_start, SIGINT));
        ASSERT_OK(sigaddset(&m.blocked_at_start, SIGHUP));
        ASSERT_OK(sigaddset(&m.blocked_at_start, SIGCHLD));
        manager_start_ready(&m);
        ASSERT_OK(kill(m.pid, SIGTERM));
        ASSERT_EQ(manager_exit_status(&m), 0);
}

typedef struct Answer {
        bool done;
        char error[128];
} Answer;

static int on_answer(VarlinkClient *c, json_object *parameters, const char *error, bool continues, void *userdata) {
        Answer *a = userdata;

        a->done = true;
        snprintf(a->error, sizeof(a->error), "%s", strempty(error));
        return 0;
}

/* The same for a reload that reaches the monitor after its STOPPING=1, before the worker takes
 * its SIGTERM: the worker, stopped while the call and then the SIGTERM came, takes the call
 * first. The monitor loads nothing and says nothing, and the call is refused all the same,
 * without a reopen of the audit log (which would make a new audit.log for the one moved away). */
TEST(a_reload_reaching_the_monitor_as_it_stops_is_refused) {
        char path[PATH_MAX], moved[PATH_MAX];
        VarlinkClient *admin;
        pid_t proxy, worker;
        Answer a = {};
        Manager m;

        if (geteuid() != 0)
                SKIP("the monitor starts its worker as another user: needs root");
        manager_init(&m);
        manager_use_proxy(&m);
        manager_capture_log(&m);
        manager_start_ready(&m);
        proxy = worker_of(m.pid);
        worker = worker_of(proxy);
        ASSERT_OK(varlink_client_connect(m.admin, &admin));
        varlink_client_set_timeout(admin, 10 * 1000000ULL);
        call_ok(admin, "io.tsmd.Service.Ping", NULL); /* accepted: the call comes on a known connection */
        snprintf(path, sizeof(path), "%s/audit/audit.log", m.dir);
        snprintf(moved, sizeof(moved), "%s/audit/moved-away", m.dir);
        ASSERT_OK(rename(path, moved));

        ASSERT_OK(kill(worker, SIGSTOP));
        ASSERT_OK(varlink_client_call_async(admin, "io.tsmd.Service.Reload", NULL, 0, on_answer, &a));
        ASSERT_OK(kill(m.pid, SIGTERM));
        manager_wait(&m, is_stopping, 5000);
        ASSERT_TRUE(m.stopping);
        ASSERT_OK(kill(worker, SIGCONT));
        for (unsigned i = 0; i < 1000 && !a.done; i++) {
                struct pollfd p = { .fd = varlink_client_get_fd(admin), .events = POLLIN };

                (void) poll(&p, 1, 10);
                if (varlink_client_process(admin) < 0)
                        break; /* tsmd is gone: what it answered before was taken */
        }
        ASSERT_TRUE(a.done);
        ASSERT_STREQ(a.error, "io.tsmd.Service.Stopping");
        ASSERT_EQ(manager_exit_status(&m), 0);
        manager_drain(&m);
        ASSERT_FALSE(m.ready_after_stopping);
        ASSERT_TRUE(access(path, F_OK) < 0 && errno == ENOENT);
        varlink_client_free(admin);
}

/* Fills the notify socket's queue, as a service manager too busy to read leaves it (systemd's is
 * every service's): datagrams of the test's own until the queue (net.unix.max_dgram_qlen) takes
 * no more. The sending socket (returned) holds them, with room enough of its own for all. */
static int notify_queue_fill(Manager *m) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), size = 64 << 20;
        unsigned n = 0;

        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)));
        strcpy(sa.sun_path, m->notify);
        while (sendto(fd, "X_TEST=1", 8, MSG_DONTWAIT, (struct sockaddr *) &sa, sizeof(sa)) >= 0)
                n++;
        ASSERT_EQ(errno, EAGAIN);
        ASSERT_TRUE(n > 0);
        m->n_filled += n;
        return fd;
}

/* SO_SNDBUFFORCE wants CAP_NET_ADMIN, which root lacks in a container (nspawn, docker). */
static bool can_force_sndbuf(void) {
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        int size = 64 << 20;

        ASSERT_TRUE(fd >= 0);
        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) >= 0)
                return true;
        ASSERT_EQ(errno, EPERM);
        return false;
}

static bool has_watchdog_after_fill(Manager *m) {
        return m->n_fill_read >= m->n_filled && m->watchdog;
}

/* A service manager that does not read its notifications for a while (a full queue) does not
 * stop the monitor: the watchdog pings it cannot send then are dropped, not waited on, and the
 * monitor serves on (ListDevices asks it for every device's state); the pings go on after. */
TEST(a_full_notify_queue_does_not_block_the_monitor) {
        _cleanup_close_ int filler = -EBADF;
        VarlinkClient *admin;
        const char *error = NULL;
        json_object *reply;
        Manager m;

        if (!can_force_sndbuf())
                SKIP("needs CAP_NET_ADMIN to fill the notify socket's queue (SO_SNDBUFFORCE)");
        manager_init(&m);
        snprintf(m.watchdog_usec, sizeof(m.watchdog_usec), "200000"); /* a ping every 100 ms */
        manager_start_ready(&m);
        manager_wait(&m, has_watchdog, 3000);
        filler = notify_queue_fill(&m);
        /* The monitor's next pings find the queue full. A dropped one leaves no trace to wait
         * for: this is the time they take, three of them. */
        usleep(300 * 1000);

        ASSERT_OK(varlink_client_connect(m.admin, &admin));
        varlink_client_set_timeout(admin, 5 * 1000000ULL);
        ASSERT_OK(varlink_client_call(admin, "io.tsmd.Admin.ListDevices", NULL, &reply, &error));
        ASSERT_NULL(error);
        /* What was queued (a ping before the fill among it), then a ping sent since. */
        manager_wait(&m, has_watchdog_after_fill, 3000);
        ASSERT_EQ(m.n_fill_read, m.n_filled);
        ASSERT_TRUE(m.watchdog);
        varlink_client_free(admin);
        stop(&m);
}

/* ---- the emulated devices' state across a stop ------------------------------------------------ */

#define EMU_POLICY "[Client:tests]\nUsers=root 65534\nDevices=*\nScopes=info state-change debug-read debug-write\n"

/* EMU_POLICY, with the emulated TSM serving the debug scopes it grants (as mainline kernels do
 * not): the guest writes and reads its device's memory through them. */
static void emu_policy_write(Manager *m) {
        policy_write(m, EMU_POLICY);
        config_set(m, "Platform", "EmulatedDebugScopes", "yes");
}

/* The admin's view of the TDI state of the emulated device at address. */
static void expect_admin_state(Manager *m, const char *address, const char *state) {
        VarlinkClient *admin;
        json_object *reply, *devices;
        bool found = false;

        ASSERT_OK(varlink_client_connect(m->admin, &admin));
        reply = call_ok(admin, "io.tsmd.Admin.ListDevices", NULL);
        devices = json_object_object_get(reply, "devices");
        ASSERT_NOT_NULL(devices);
        for (size_t i = 0; i < json_object_array_length(devices); i++) {
                json_object *d = json_object_array_get_idx(devices, i);

                if (streq(json_get_string(d, "pciAddress"), address)) {
                        ASSERT_STREQ(json_get_string(d, "state"), state);
                        found = true;
                }
        }
        ASSERT_TRUE(found);
        varlink_client_free(admin);
}

/* The fd the fd store holds the emulated devices' state under, or -1. */
static int stored_emu_state(Manager *m) {
        for (size_t i = 0; i < m->n_store; i++)
                if (streq(m->store[i].name, FDSTORE_EMU_STATE_NAME))
                        return m->store[i].fd;
        return -1;
}

/* A GuestRequest of vDevice 5 of context ctx on the emulated device at address: type with body,
 * or (type 0) the debug memory request in buf; the TDISP response's bytes into resp. */
static size_t emu_request(VarlinkClient *c, int64_t ctx, const char *scope, const void *req, size_t req_len,
                          uint8_t *resp, size_t resp_size) {
        _cleanup_free_ char *enc = NULL, *params = NULL;
        _cleanup_free_ void *dec = NULL;
        json_object *reply;
        size_t len;

        ASSERT_OK(base64_encode(req, req_len, &enc));
        ASSERT_TRUE(asprintf(&params, "{\"context\":%lld,\"vdeviceId\":5,\"scope\":\"%s\",\"request\":\"%s\","
                                      "\"maxResponseSize\":%zu}", (long long) ctx, scope, enc, resp_size) > 0);
        reply = call_ok(c, "io.tsmd.Guest.GuestRequest", params);
        const char *text = json_get_string(reply, "response");
        ASSERT_OK(base64_decode(text, strlen(text), &dec, &len));
        ASSERT_TRUE(len <= resp_size);
        memcpy(resp, dec, len);
        return len;
}

static uint32_t function_id_of(const char *address) {
        unsigned domain, bus, device, function;
        uint32_t id;

        ASSERT_EQ(sscanf(address, "%x:%x:%x.%x", &domain, &bus, &device, &function), 4);
        ASSERT_OK(tdisp_function_id_from_pci(domain, bus, device << 3 | function, &id));
        return id;
}

/* The guest starts its TDI (bound: CONFIG_LOCKED, the TSM holds the nonce) and writes pattern
 * to its memory at 0x1000. */
static void emu_start_and_write(VarlinkClient *c, int64_t ctx, const char *address, const uint8_t *pattern,
                                size_t n) {
        uint8_t zero_nonce[TDISP_NONCE_SIZE] = {}, buf[8192], resp[8192];
        size_t len;

        ASSERT_OK(tdisp_build_request(TDISP_MSG_START_INTERFACE_REQ, function_id_of(address), zero_nonce,
                                      sizeof(zero_nonce), buf, sizeof(buf), &len));
        ASSERT_TRUE(emu_request(c, ctx, "state-change", buf, len, resp, sizeof(resp)) >= 2);
        ASSERT_EQ(resp[1], TDISP_MSG_START_INTERFACE_RSP);
        ASSERT_OK(emu_debug_build_mem_request(function_id_of(address), EMU_VENDOR_ID_DEFAULT, EMU_DEBUG_OP_MEM_WRITE,
                                              0x1000, (uint32_t) n, pattern, buf, sizeof(buf), &len));
        ASSERT_TRUE(emu_request(c, ctx, "debug-write", buf, len, resp, sizeof(resp)) >= 2);
        ASSERT_EQ(resp[1], TDISP_MSG_VDM_RSP);
}

/* Whether the device's memory at 0x1000 holds pattern. */
static bool emu_memory_holds(VarlinkClient *c, int64_t ctx, const char *address, const uint8_t *pattern, size_t n) {
        uint8_t buf[256], resp[8192];
        size_t len;

        ASSERT_OK(emu_debug_build_mem_request(function_id_of(address), EMU_VENDOR_ID_DEFAULT, EMU_DEBUG_OP_MEM_READ,
                                              0x1000, (uint32_t) n, NULL, buf, sizeof(buf), &len));
        len = emu_request(c, ctx, "debug-read", buf, len, resp, sizeof(resp));
        ASSERT_EQ(resp[1], TDISP_MSG_VDM_RSP);
        ASSERT_TRUE(len >= n);
        return memcmp(resp + len - n, pattern, n) == 0;
}

/* A VMM's bound device in RUN, its memory written, and tsmd stopped (SIGTERM) with the fd store
 * keeping the context: the state of the device is kept with it. */
static void stop_with_running_device(Manager *m, char token[static 64], const uint8_t *pattern, size_t n) {
        VarlinkClient *c = connect_client(m);

        open_bound_context(c, token); /* vDevice 5 on 0000:01:00.0, bound: CONFIG_LOCKED */
        emu_start_and_write(c, 1, "0000:01:00.0", pattern, n);
        expect_bound(c, "{\"context\":1,\"vdeviceId\":5}", true, "run");
        manager_wait(m, has_stored, 5000);
        stop(m);
        manager_drain(m); /* what it stored on its way out */
        varlink_client_free(c);
}

/* A tsmd of the emulated policy, started and stopped with a guest's device running. */
static void start_and_stop_with_running_device(Manager *m, char token[static 64], const uint8_t *pattern, size_t n) {
        manager_init(m);
        emu_policy_write(m);
        manager_capture_log(m);
        manager_start_ready(m);
        stop_with_running_device(m, token, pattern, n);
}

/* A real device's TDI stays in RUN, and its memory stays, while tsmd restarts; an emulated one's
 * too: after a stop and a start with the fd store the VMM reclaims its context and finds its
 * device bound and in RUN (the restore's bind finds it so), its memory as it was. The saved state
 * is read once: out of the fd store once read, and gone from the next stop that has none. */
TEST(an_emulated_device_keeps_its_state_across_a_restart) {
        _cleanup_(json_object_putp) json_object *rec = NULL;
        uint8_t pattern[4096];
        char token[64], params[128];
        VarlinkClient *c;
        int64_t ctx;
        Manager m;

        for (size_t i = 0; i < sizeof(pattern); i++)
                pattern[i] = (uint8_t) (i * 7 + 3);
        start_and_stop_with_running_device(&m, token, pattern, sizeof(pattern));
        ASSERT_TRUE(stored_emu_state(&m) >= 0);

        manager_start_ready(&m);
        wait_log(&m, "Restored the state of 1 emulated devices from before the restart.");
        ASSERT_TRUE(stored_emu_state(&m) < 0);
        rec = wait_audit_record(&m, "restore-bind", "ok");
        c = connect_client(&m);
        ctx = reclaim_vdevice(c, token, 5, params, sizeof(params));
        expect_bound(c, params, true, "run");
        ASSERT_TRUE(emu_memory_holds(c, ctx, "0000:01:00.0", pattern, sizeof(pattern)));

        /* Unbound, the device keeps nothing (bound again to look: guest requests need it), and
         * unbound at the stop, the next stop saves no state. */
        call_ok(c, "io.tsmd.Guest.Unbind", params);
        expect_bound(c, params, false, "config_unlocked");
        call_ok(c, "io.tsmd.Guest.Bind", params);
        ASSERT_FALSE(emu_memory_holds(c, ctx, "0000:01:00.0", pattern, sizeof(pattern)));
        call_ok(c, "io.tsmd.Guest.Unbind", params);
        varlink_client_free(c);
        stop(&m);
        manager_drain(&m);
        ASSERT_TRUE(stored_emu_state(&m) < 0);
}

/* A damaged saved state (one bit flipped) is ignored, with a log line: the device comes back
 * fresh and is bound again, CONFIG_LOCKED, as before there was any. */
TEST(a_damaged_emulated_state_is_ignored) {
        _cleanup_(json_object_putp) json_object *rec = NULL;
        _cleanup_free_ uint8_t *bytes = NULL;
        uint8_t pattern[512];
        char token[64], params[128];
        struct stat st;
        VarlinkClient *c;
        int64_t ctx;
        int fd, copy;
        Manager m;

        memset(pattern, 0xa5, sizeof(pattern));
        start_and_stop_with_running_device(&m, token, pattern, sizeof(pattern));

        /* Sealed: a copy with a bit flipped, in its place. */
        fd = stored_emu_state(&m);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(fstat(fd, &st));
        bytes = malloc(st.st_size);
        ASSERT_NOT_NULL(bytes);
        ASSERT_EQ(pread(fd, bytes, st.st_size, 0), st.st_size);
        bytes[st.st_size / 2] ^= 0x10;
        copy = memfd_create("damaged", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        ASSERT_TRUE(copy >= 0);
        ASSERT_EQ(write(copy, bytes, st.st_size), st.st_size);
        ASSERT_OK(fcntl(copy, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL));
        store_remove(&m, FDSTORE_EMU_STATE_NAME);
        store_put(&m, copy, FDSTORE_EMU_STATE_NAME);

        manager_start_ready(&m);
        wait_log(&m, "Ignoring the emulated devices' saved state: it is damaged.");
        ASSERT_TRUE(stored_emu_state(&m) < 0);
        rec = wait_audit_record(&m, "restore-bind", "ok");
        c = connect_client(&m);
        ctx = reclaim_vdevice(c, token, 5, params, sizeof(params));
        expect_bound(c, params, true, "config_locked");
        ASSERT_FALSE(emu_memory_holds(c, ctx, "0000:01:00.0", pattern, sizeof(pattern)));
        call_ok(c, "io.tsmd.Guest.DetachDevice", params);
        varlink_client_free(c);
        stop(&m);
}

/* A device gone from EmulatedDevices= at the start does not come back with its state when it is
 * listed again (a reload), and one configured as another device (another vendor) starts fresh. */
TEST(an_emulated_device_removed_from_the_config_is_not_resurrected) {
        _cleanup_(json_object_putp) json_object *rec = NULL;
        uint8_t pattern[256];
        char token[64], params[128];
        VarlinkClient *c;
        int64_t ctx;
        Manager m;

        memset(pattern, 0x5a, sizeof(pattern));
        manager_init(&m);
        emu_policy_write(&m);
        config_set(&m, "Platform", "EmulatedDevices", "0000:01:00.0,0000:02:00.0");
        manager_capture_log(&m);
        manager_start_ready(&m);
        c = connect_client(&m);
        open_bound_context(c, token); /* vDevice 5 on 0000:01:00.0 */
        emu_start_and_write(c, 1, "0000:01:00.0", pattern, sizeof(pattern));
        call_ok(c, "io.tsmd.Guest.AttachDevice", "{\"context\":1,\"vdeviceId\":6,\"pciAddress\":\"0000:02:00.0\"}");
        call_ok(c, "io.tsmd.Guest.Bind", "{\"context\":1,\"vdeviceId\":6}");
        manager_wait(&m, has_stored, 5000);
        stop(&m);
        manager_drain(&m);
        varlink_client_free(c);
        ASSERT_TRUE(stored_emu_state(&m) >= 0);

        config_set(&m, "Platform", "EmulatedDevices", "0000:02:00.0:vendor=8086");
        manager_start_ready(&m);
        wait_log(&m, "Emulated device 0000:01:00.0 had state before the restart, but is not emulated any more");
        wait_log(&m, "Emulated device 0000:02:00.0 is configured as another device than before the restart");
        rec = wait_audit_record(&m, "restore-bind", "ok");
        c = connect_client(&m);
        ctx = reclaim_vdevice(c, token, 5, params, sizeof(params));
        ASSERT_STREQ(call_error(c, "io.tsmd.Guest.GetDeviceState", params), "io.tsmd.Guest.DeviceGone");
        call_ok(c, "io.tsmd.Guest.DetachDevice", params);
        /* The other one, fresh, bound again by the restore. */
        snprintf(params, sizeof(params), "{\"context\":%lld,\"vdeviceId\":6}", (long long) ctx);
        expect_bound(c, params, true, "config_locked");

        /* Listed again: a new device, with nothing of the one before. */
        config_set(&m, "Platform", "EmulatedDevices", "0000:01:00.0,0000:02:00.0:vendor=8086");
        ASSERT_OK(kill(m.pid, SIGHUP));
        wait_log(&m, "Emulated device 0000:01:00.0 added.");
        expect_admin_state(&m, "0000:01:00.0", "config_unlocked");
        varlink_client_free(c);
        stop(&m);
}

/* The context did not come back (its fd left the store): its device, back in RUN with the
 * guest's memory, is held by no vDevice once the restore is done, and is released then, as the
 * end of its vDevice would have: the next VMM gets nothing of the last one's. */
TEST(an_emulated_device_nobody_holds_after_a_restart_is_released) {
        uint8_t pattern[256];
        char token[64], context_name[160];
        const char *name;
        Manager m;

        memset(pattern, 0x3c, sizeof(pattern));
        start_and_stop_with_running_device(&m, token, pattern, sizeof(pattern));
        ASSERT_TRUE(stored_emu_state(&m) >= 0);
        ASSERT_TRUE(stored_context(&m, &name) >= 0);
        snprintf(context_name, sizeof(context_name), "%s", name); /* store_remove() moves the names */
        store_remove(&m, context_name);

        manager_start_ready(&m);
        wait_log(&m, "Emulated device 0000:01:00.0 came back with its state, but no vDevice holds it any more; "
                     "releasing it.");
        expect_admin_state(&m, "0000:01:00.0", "config_unlocked");
        stop(&m);
}

/* ---- the files in force, across a restart of tsmd ----------------------------------------- */

static bool has_last_good(Manager *m) {
        return stored_last_good(m) >= 0;
}

/* GetStatus's configuration, as an administrator reads it: its source into source, and its error
 * (empty: none) into error. */
static void configuration_of(Manager *m, char source[static 32], char error[static 512]) {
        json_object *reply = NULL, *cfg; /* the client's */
        const char *e = NULL;
        VarlinkClient *a;

        ASSERT_OK(varlink_client_connect(m->admin, &a));
        varlink_client_set_timeout(a, 10 * 1000000ULL);
        ASSERT_OK(varlink_client_call(a, "io.tsmd.Service.GetStatus", NULL, &reply, &e));
        ASSERT_NULL(e);
        ASSERT_TRUE(json_object_object_get_ex(reply, "configuration", &cfg));
        snprintf(source, 32, "%s", strempty(json_get_string(cfg, "source")));
        snprintf(error, 512, "%s", strempty(json_get_string(cfg, "error")));
        varlink_client_free(a);
}

/* The kept configuration is the one in force: not one of an earlier load. */
static void expect_last_good_is(Manager *m, const char *needle) {
        int fd = stored_last_good(m);
        struct stat st;
        char *text;

        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(fstat(fd, &st));
        ASSERT_EQ(fcntl(fd, F_GET_SEALS) & (F_SEAL_SEAL | F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK),
                  F_SEAL_SEAL | F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK);
        text = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        ASSERT_TRUE(text != MAP_FAILED);
        ASSERT_NOT_NULL(memmem(text, (size_t) st.st_size, needle, strlen(needle)));
        ASSERT_OK(munmap(text, (size_t) st.st_size));
}

/*
 * A restart of tsmd (systemctl restart, a crash) with a file broken on disk in between serves
 * the set that loaded last, as a worker restarted then does, and says so: the monitor keeps it in
 * the fd store. Before, only the monitor held it: the next tsmd's workers could not start, and
 * no READY=1 came (systemctl restart hung for TimeoutStartSec=, and VMMs with it).
 */
TEST(a_restart_with_broken_files_serves_the_last_good_set) {
        char source[32], error[512], want[512];
        _cleanup_free_ char *good = NULL;
        VarlinkClient *c;
        Manager m;

        manager_init(&m);
        manager_capture_log(&m);
        manager_start_ready(&m);
        manager_wait(&m, has_last_good, 5000);
        expect_last_good_is(&m, "Users=root 65534\nDevices=*\n");

        /* The policy broken, and tsmd restarted by the book (the store outlives a restart). What the
         * monitor reads at start comes from the kept set too, not from a tsmd.conf without its
         * policy: MaxContexts=1 there is not in force. */
        good = read_text(&m, "tsmd.conf");
        config_set(&m, "Guest", "MaxContexts", "1");
        policy_write(&m, "[Client:tests]\nUsers=root 65534\nDevices=*\nBogus=1\n");
        stop(&m);
        manager_start_ready(&m);
        snprintf(want, sizeof(want), "%s/policy.conf:4: unknown key 'Bogus'", m.dir);
        ASSERT_TRUE(log_contains(&m, want));
        ASSERT_TRUE(log_contains(&m, "serving the configuration that last loaded, from before the restart"));
        configuration_of(&m, source, error);
        ASSERT_STREQ(source, "last_good");
        ASSERT_NOT_NULL(strstr(error, want));
        c = connect_client(&m);
        call_ok(c, "io.tsmd.Guest.OpenContext", NULL);
        call_ok(c, "io.tsmd.Guest.OpenContext", NULL);
        varlink_client_free(c);

        /* A crash, with tsmd.conf broken too: the same. */
        config_set(&m, "Guest", "Bogus", "1");
        kill(m.pid, SIGKILL);
        ASSERT_EQ(manager_exit_status(&m), 128 + SIGKILL);
        manager_start_ready(&m);
        snprintf(want, sizeof(want), "%s:16: unknown key 'Bogus' in [Guest] (valid: MaxContextsPerClient, MaxContexts, "
                 "MaxContextsPerUid, MaxVDevicesPerClient, MaxRequestSize, MaxResponseSize, ContextStateDirectory, "
                 "ReclaimTimeoutSec, RequireVfioFileDescriptor): "
                 "the configuration or policy is broken, serving the configuration that last loaded, from before "
                 "the restart", m.config);
        ASSERT_TRUE(log_contains(&m, want));
        configuration_of(&m, source, error);
        ASSERT_STREQ(source, "last_good");
        ASSERT_NOT_NULL(strstr(error, "tsmd.conf"));

        /* Fixed: a reload applies them, and the store keeps the new set in place of the old. */
        {
                FILE *f = fopen(m.config, "we");

                ASSERT_NOT_NULL(f);
                fputs(good, f);
                ASSERT_OK(fclose(f));
        }
        policy_write(&m, "[Client:tests]\nUsers=root 65534 4242\nDevices=*\n");
        {
                VarlinkClient *a;

                ASSERT_OK(varlink_client_connect(m.admin, &a));
                varlink_client_set_timeout(a, 10 * 1000000ULL);
                call_ok(a, "io.tsmd.Service.Reload", NULL);
                varlink_client_free(a);
        }
        configuration_of(&m, source, error);
        ASSERT_STREQ(source, "disk");
        manager_drain(&m);
        expect_last_good_is(&m, "Users=root 65534 4242\n");
        ASSERT_EQ(m.n_store - stored_but_last_good(&m), 1u); /* the new one only */
        stop(&m);
}

/* A sealed memfd of text that is no kept set, in the fd store's place of the kept one. */
static void store_damaged_last_good(Manager *m) {
        static const char text[] = "not a kept configuration\n";
        int fd = memfd_create("damaged", MFD_CLOEXEC | MFD_ALLOW_SEALING);

        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        ASSERT_OK(fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE));
        store_remove(m, FDSTORE_LAST_GOOD_NAME);
        store_put(m, fd, FDSTORE_LAST_GOOD_NAME);
}

/* The files on disk broken, and the kept set damaged too: tsmd does not start (exit status 78,
 * EX_CONFIG, which the unit does not restart on), and says that neither loads, whether tsmd.conf
 * is what is broken (read before the monitor starts) or its policy (read by the monitor). It
 * serves nothing it could not check. */
TEST(a_restart_with_broken_files_and_a_damaged_kept_set_does_not_start) {
        _cleanup_free_ char *good = NULL;
        Manager m;

        manager_init(&m);
        manager_capture_log(&m);
        manager_start_ready(&m);
        manager_wait(&m, has_last_good, 5000);
        good = read_text(&m, "tsmd.conf");
        stop(&m);
        manager_drain(&m);
        store_damaged_last_good(&m);

        config_set(&m, "Guest", "Bogus", "1");
        manager_start(&m);
        ASSERT_EQ(manager_exit_status(&m), EX_CONFIG);
        ASSERT_TRUE(log_contains(&m, "does not load, nor does the configuration kept from before the restart"));
        ASSERT_FALSE(m.ready);

        {
                FILE *f = fopen(m.config, "we");

                ASSERT_NOT_NULL(f);
                fputs(good, f);
                ASSERT_OK(fclose(f));
        }
        policy_write(&m, "[Client:tests]\nUsers=root 65534\nDevices=*\nBogus=1\n");
        manager_start(&m);
        ASSERT_EQ(manager_exit_status(&m), EX_CONFIG);
        ASSERT_TRUE(log_contains(&m, "the configuration or policy is broken, and the one kept from before the "
                                     "restart does not load either"));
        ASSERT_FALSE(m.ready);
}

/* ---- contexts sharing one iommufd ------------------------------------------------------------- */

/* The reclaim id token's context is stored under, if name is one of a context's own (a shared
 * one's carrier too, not a rename's): "ctxid.<uid>.<id>" or "ctxid.<uid>.<id>[.<from>].shared". */
static bool names_context_of(const char *name, const char *token, bool *ret_shared) {
        char id[33], prefix[64];
        const char *rest;

        reclaim_id_of(token, id);
        snprintf(prefix, sizeof(prefix), "ctxid.%u.%s", (unsigned) getuid(), id);
        if (!strneq(name, prefix, strlen(prefix)))
                return false;
        rest = name + strlen(prefix);
        *ret_shared = !isempty(rest);
        if (*ret_shared && !streq(rest, ".shared") &&
            (strlen(rest) != 1 + 32 + strlen(".shared") || !streq(rest + 33, ".shared")))
                TEST_FAIL("fd store entry '%s' is no context's", name);
        return true;
}

/* Whether the carrier (a shared context's entry: a datagram socket with an fd in flight) carries
 * fd's file description. */
static bool carries(int carrier, int fd) {
        int carried;
        bool same;

        ASSERT_OK(fdstore_carried_fd(carrier, &carried));
        same = same_file(carried, fd);
        close(carried);
        return same;
}

/* The fd store holds an entry for each of the n contexts of tokens, all of fd's file description,
 * and no other context's: the file description itself under one name at most (systemd keeps one
 * copy of it), the others each in a carrier of its own. */
static void expect_stored_contexts(Manager *m, int fd, char (*tokens)[64], size_t n) {
        size_t n_contexts = 0;

        manager_drain(m);
        for (size_t i = 0; i < m->n_store; i++) {
                const char *name = m->store[i].name;
                bool found = false, shared = false;

                if (!strneq(name, "ctxid.", 6) || is_carrier_name(name))
                        continue;
                n_contexts++;
                for (size_t t = 0; t < n && !found; t++)
                        found = names_context_of(name, tokens[t], &shared);
                if (!found)
                        TEST_FAIL("fd store entry '%s' is no open context's", name);
                ASSERT_TRUE(shared ? carries(m->store[i].fd, fd) : same_file(m->store[i].fd, fd));
        }
        ASSERT_EQ(n_contexts, n);
}

/* The vDevice of params is bound, as a kernel TSM has it (whose TDI state the host does not see). */
static void expect_kernel_bound(VarlinkClient *c, const char *params) {
        json_object *reply = call_ok(c, "io.tsmd.Guest.GetDeviceState", params);

        ASSERT_TRUE(json_object_get_boolean(json_object_object_get(reply, "bound")));
}

/* tsmd killed, and started again with the fd store as it left it. */
static void crash_keeping_store(Manager *m) {
        manager_drain(m);
        kill(m->pid, SIGKILL);
        ASSERT_EQ(manager_exit_status(m), 128 + SIGKILL);
        manager_start_ready(m);
}

/*
 * The VM's one iommufd on two connections (README: AdoptContext, as a way around one connection's
 * queue), each context with a vDevice of its own bound on a kernel TSM. systemd keeps one copy of
 * a file description, and dropped the second context's FDSTORE=1 without a word: a restart lost
 * it, and nothing unbound its vDevice at its release. Each context must come back, across every
 * restart, reclaimable with its own token whichever closes first, and its release unbind its
 * vDevice.
 */
static void contexts_of_one_iommufd(bool adopter_closes_first) {
        static const unsigned vdevice[2] = { 5, 7 };
        static const char *const address[2] = { "0000:01:00.0", "0000:02:00.0" };
        char token[2][64], closed[64], kept[64], params[2][128], calls[128], want[256];
        VarlinkClient *c[2];
        json_object *reply;
        int64_t ctx[2];
        unsigned first = adopter_closes_first ? 1 : 0, other = 1 - first;
        int fd;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root (a mount namespace, a fixture bound over /sys)");
        manager_init_kernel(&m);
        manager_start_ready(&m);

        c[0] = connect_client(&m);
        reply = call_ok(c[0], "io.tsmd.Guest.OpenContext", NULL);
        fd = varlink_client_take_fd(c[0], (size_t) json_object_get_int(json_object_object_get(reply, "fileDescriptor")));
        ASSERT_TRUE(fd >= 0);
        snprintf(token[0], sizeof(token[0]), "%s", json_get_string(reply, "reclaimToken"));
        ctx[0] = json_object_get_int64(json_object_object_get(reply, "context"));
        c[1] = connect_client(&m);
        ASSERT_OK(varlink_client_push_fd(c[1], fcntl(fd, F_DUPFD_CLOEXEC, 3)));
        reply = call_ok(c[1], "io.tsmd.Guest.AdoptContext", "{\"fileDescriptor\":0}");
        snprintf(token[1], sizeof(token[1]), "%s", json_get_string(reply, "reclaimToken"));
        ctx[1] = json_object_get_int64(json_object_object_get(reply, "context"));
        calls[0] = 0;
        for (unsigned i = 0; i < 2; i++) {
                char attach[160];

                snprintf(attach, sizeof(attach), "{\"context\":%lld,\"vdeviceId\":%u,\"pciAddress\":\"%s\"}",
                         (long long) ctx[i], vdevice[i], address[i]);
                call_ok(c[i], "io.tsmd.Guest.AttachDevice", attach);
                snprintf(params[i], sizeof(params[i]), "{\"context\":%lld,\"vdeviceId\":%u}", (long long) ctx[i],
                         vdevice[i]);
                call_ok(c[i], "io.tsmd.Guest.Bind", params[i]);
                snprintf(calls + strlen(calls), sizeof(calls) - strlen(calls), "op %u 1\n", vdevice[i]);
                expect_kernel_calls(&m, calls);
        }
        expect_stored_contexts(&m, fd, token, 2);

        /* Both come back, and each VMM reclaims its own: renewed tokens, renamed entries. */
        crash_keeping_store(&m);
        for (unsigned i = 0; i < 2; i++) {
                varlink_client_free(c[i]);
                c[i] = connect_client(&m);
                ctx[i] = reclaim_vdevice(c[i], token[i], vdevice[i], params[i], sizeof(params[i]));
                expect_kernel_bound(c[i], params[i]);
        }
        expect_kernel_calls(&m, calls); /* the kernel kept the bindings */
        expect_stored_contexts(&m, fd, token, 2);

        /* One closes: its vDevice is unbound, and the other stays in the store. */
        snprintf(want, sizeof(want), "{\"context\":%lld}", (long long) ctx[first]);
        call_ok(c[first], "io.tsmd.Guest.CloseContext", want);
        snprintf(calls + strlen(calls), sizeof(calls) - strlen(calls), "op %u 2\n", vdevice[first]);
        expect_kernel_calls(&m, calls);
        memcpy(closed, token[first], sizeof(closed));
        memcpy(kept, token[other], sizeof(kept));
        expect_stored_contexts(&m, fd, &kept, 1);

        /* Restarted again: the other reclaims, the closed one is gone. */
        crash_keeping_store(&m);
        varlink_client_free(c[first]);
        varlink_client_free(c[other]);
        c[0] = connect_client(&m);
        snprintf(want, sizeof(want), "{\"reclaimToken\":\"%s\"}", closed);
        ASSERT_STREQ(call_error(c[0], "io.tsmd.Guest.ReclaimContext", want), "io.tsmd.Guest.ReclaimRefused");
        varlink_client_free(c[0]);
        c[1] = connect_client(&m);
        (void) reclaim_vdevice(c[1], kept, vdevice[other], params[1], sizeof(params[1]));
        expect_kernel_bound(c[1], params[1]);
        expect_stored_contexts(&m, fd, &kept, 1);

        /* Its VMM hangs up: released, its vDevice unbound, and out of the store. */
        varlink_client_free(c[1]);
        snprintf(calls + strlen(calls), sizeof(calls) - strlen(calls), "op %u 2\n", vdevice[other]);
        expect_kernel_calls(&m, calls);
        manager_wait(&m, store_removed, 5000);
        expect_stored_contexts(&m, fd, token, 0);

        close(fd);
        stop(&m);
        (void) umount2(m.sysfs_root, MNT_DETACH);
}

TEST(contexts_of_one_iommufd_survive_restarts_the_opener_closing_first) {
        contexts_of_one_iommufd(false);
}

TEST(contexts_of_one_iommufd_survive_restarts_the_adopter_closing_first) {
        contexts_of_one_iommufd(true);
}

/*
 * tsmd killed inside the rename (a reclaim's renewal) of a context whose iommufd another context
 * holds: after the new entry went in, a carrier naming the old id (1), and after the old one went
 * out (2). Either way each context comes back once, reclaimable with the token its VMM has, and
 * the store then holds one entry for each: the new entry of a rename cut off before the old name
 * went out is dropped (the answer never left), not restored as a third context.
 */
TEST(a_crash_inside_a_shared_context_rename_keeps_both) {
        if (geteuid() != 0)
                SKIP("needs root to read the worker's state directory");
        for (unsigned n = 1; n <= 2; n++) {
                _cleanup_free_ char *left = NULL;
                char token[2][64], params[128];
                json_object *reply = NULL;
                const char *error = NULL;
                VarlinkClient *c[2];
                int fd, r;
                Manager m;
                FILE *f;

                fprintf(stderr, "# killed after the rename's notification %u\n", n);
                manager_init(&m);
                manager_capture_log(&m);
                snprintf(m.crash, sizeof(m.crash), "%s/crash-after", m.dir);
                manager_start_ready(&m);
                c[0] = connect_client(&m);
                reply = call_ok(c[0], "io.tsmd.Guest.OpenContext", NULL);
                fd = varlink_client_take_fd(c[0], (size_t) json_object_get_int(json_object_object_get(reply, "fileDescriptor")));
                ASSERT_TRUE(fd >= 0);
                snprintf(token[0], sizeof(token[0]), "%s", json_get_string(reply, "reclaimToken"));
                c[1] = connect_client(&m);
                ASSERT_OK(varlink_client_push_fd(c[1], fcntl(fd, F_DUPFD_CLOEXEC, 3)));
                reply = call_ok(c[1], "io.tsmd.Guest.AdoptContext", "{\"fileDescriptor\":0}");
                snprintf(token[1], sizeof(token[1]), "%s", json_get_string(reply, "reclaimToken"));
                call_ok(c[1], "io.tsmd.Guest.AttachDevice", "{\"context\":1,\"vdeviceId\":5,\"pciAddress\":\"0000:01:00.0\"}");
                call_ok(c[1], "io.tsmd.Guest.Bind", "{\"context\":1,\"vdeviceId\":5}");
                expect_stored_contexts(&m, fd, token, 2);
                (void) crash_worker(&m);
                varlink_client_free(c[0]);
                varlink_client_free(c[1]);
                manager_drain(&m);

                f = fopen(m.crash, "we");
                ASSERT_NOT_NULL(f);
                fprintf(f, "%u", n);
                ASSERT_EQ(fclose(f), 0);
                c[1] = connect_client(&m);
                snprintf(params, sizeof(params), "{\"reclaimToken\":\"%s\"}", token[1]);
                r = varlink_client_call(c[1], "io.tsmd.Guest.ReclaimContext", json_tokener_parse(params), &reply, &error);
                ASSERT_TRUE(r < 0 || error); /* tsmd died on the way */
                ASSERT_EQ(manager_exit_status(&m), 128 + SIGKILL);
                varlink_client_free(c[1]);
                left = read_text(&m, "crash-after");
                ASSERT_STREQ(left, ""); /* it was counted down to the end */

                manager_drain(&m);
                manager_start_ready(&m);
                c[0] = connect_client(&m);
                (void) reclaim(c[0], token[0]);
                c[1] = connect_client(&m);
                reclaim_bound(c[1], token[1]);
                wait_renewal_done(&m, token[1]);
                expect_stored_contexts(&m, fd, token, 2);
                varlink_client_free(c[0]);
                varlink_client_free(c[1]);
                close(fd);
                stop(&m);
        }
}

/* Opens a context on c with vDevice vdevice at address, its token into token. */
static void open_context_with(VarlinkClient *c, unsigned vdevice, const char *address, char token[static 64]) {
        json_object *reply = call_ok(c, "io.tsmd.Guest.OpenContext", NULL);
        char params[128];

        snprintf(token, 64, "%s", json_get_string(reply, "reclaimToken"));
        safe_close(varlink_client_take_fd(c, (size_t) json_object_get_int(json_object_object_get(reply, "fileDescriptor"))));
        snprintf(params, sizeof(params), "{\"context\":1,\"vdeviceId\":%u,\"pciAddress\":\"%s\"}", vdevice, address);
        call_ok(c, "io.tsmd.Guest.AttachDevice", params);
}

/*
 * SECURITY: a detach whose save failed leaves the context's state file naming the device until
 * a retry saves it (with backoff, up to 30 s). Another VM's AttachDevice of that device used to
 * go ahead meanwhile: after a crash of tsmd both files claimed it, the context restored first
 * got it, and the other's vDevice came back gone, its TDI bound and never unbound. The attach
 * makes every save owed first, and is refused while one fails.
 */
TEST(a_device_an_unsaved_detach_names_goes_to_no_other_context) {
        _cleanup_(json_object_putp) json_object *owner = NULL;
        _cleanup_free_ char *state = NULL;
        char tok_a[64], tok_b[64], id_a[33], name[64], params[128];
        VarlinkClient *a, *b;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to block the saves of the worker's state");
        manager_init(&m);
        manager_capture_log(&m);
        manager_start_ready(&m);
        a = connect_client(&m);
        open_context_with(a, 5, "0000:01:00.0", tok_a);
        reclaim_id_of(tok_a, id_a);
        snprintf(name, sizeof(name), "state/%s.state", id_a);

        /* A's saves fail: its detach is made, the save owed. */
        block_saves(&m, id_a, true);
        call_ok(a, "io.tsmd.Guest.DetachDevice", "{\"context\":1,\"vdeviceId\":5}");
        b = connect_client(&m);
        {
                json_object *reply = call_ok(b, "io.tsmd.Guest.OpenContext", NULL);

                snprintf(tok_b, sizeof(tok_b), "%s", json_get_string(reply, "reclaimToken"));
                safe_close(varlink_client_take_fd(b, (size_t) json_object_get_int(json_object_object_get(reply, "fileDescriptor"))));
        }
        expect_state_not_saved_errno(b, "io.tsmd.Guest.AttachDevice",
                                     "{\"context\":1,\"vdeviceId\":7,\"pciAddress\":\"0000:01:00.0\"}", EISDIR);
        owner = device_owner(&m, "0000:01:00.0");
        ASSERT_NULL(owner);

        /* The saves work again, between two retries (at 1.5 s, then 3.1 s): the attach makes
         * A's owed save itself, and goes ahead. */
        manager_wait(&m, NULL, 1600);
        block_saves(&m, id_a, false);
        call_ok(b, "io.tsmd.Guest.AttachDevice", "{\"context\":1,\"vdeviceId\":7,\"pciAddress\":\"0000:01:00.0\"}");
        state = read_text(&m, name);
        ASSERT_NULL(strstr(state, "VDevice="));
        call_ok(b, "io.tsmd.Guest.Bind", "{\"context\":1,\"vdeviceId\":7}");

        /* After a crash of tsmd, the device is B's, bound, and A has no vDevice. */
        manager_drain(&m);
        kill(m.pid, SIGKILL);
        ASSERT_EQ(manager_exit_status(&m), 128 + SIGKILL);
        manager_start_ready(&m);
        varlink_client_free(a);
        varlink_client_free(b);
        json_object_put(owner);
        owner = device_owner(&m, "0000:01:00.0");
        ASSERT_NOT_NULL(owner);
        ASSERT_EQ(json_object_get_int64(json_object_object_get(owner, "vdeviceId")), 7);
        b = connect_client(&m);
        (void) reclaim_vdevice(b, tok_b, 7, params, sizeof(params));
        expect_bound(b, params, true, "config_locked");
        a = connect_client(&m);
        (void) reclaim_vdevice(a, tok_a, 5, params, sizeof(params));
        ASSERT_STREQ(call_error(a, "io.tsmd.Guest.GetDeviceState", params), "io.tsmd.Guest.NoSuchVDevice");
        ASSERT_FALSE(log_contains(&m, "State files of two contexts name"));
        varlink_client_free(a);
        varlink_client_free(b);
        stop(&m);
}

/* The line of tsmd's log that holds needle ("" if none; malloc'd). */
static char *log_line(Manager *m, const char *needle) {
        _cleanup_free_ char *text = read_text(m, "tsmd.log");
        const char *p = strstr(text, needle), *start, *end;

        if (!p)
                return strdup("");
        for (start = p; start > text && start[-1] != '\n'; start--)
                ;
        end = strchrnul(p, '\n');
        return strndup(start, (size_t) (end - start));
}

/* Two state files name one device (one written by a worker made to): the restore gives it to
 * the context restored first, and says so naming both, where the other's vDevice went gone
 * without a word. */
TEST(two_state_files_naming_one_device_are_logged) {
        _cleanup_free_ char *line = NULL;
        char tok_a[64], tok_b[64], id_a[33], id_b[33], name[64], text[128];
        VarlinkClient *a, *b;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to write the worker's state directory");
        manager_init(&m);
        manager_capture_log(&m);
        manager_start_ready(&m);
        a = connect_client(&m);
        open_context_with(a, 5, "0000:01:00.0", tok_a);
        b = connect_client(&m);
        open_context_with(b, 7, "0000:02:00.0", tok_b);
        reclaim_id_of(tok_a, id_a);
        reclaim_id_of(tok_b, id_b);
        manager_drain(&m);
        kill(m.pid, SIGKILL);
        ASSERT_EQ(manager_exit_status(&m), 128 + SIGKILL);
        varlink_client_free(a);
        varlink_client_free(b);

        snprintf(name, sizeof(name), "%s.state", id_b);
        snprintf(text, sizeof(text), "[Context]\nUid=%u\nVDevice=7 0000:01:00.0 unbound\n", (unsigned) getuid());
        plant_state_file(&m, name, text);
        manager_start_ready(&m);
        line = log_line(&m, "State files of two contexts name 0000:01:00.0");
        ASSERT_NOT_NULL(strstr(line, id_a));
        ASSERT_NOT_NULL(strstr(line, id_b));
        stop(&m);
}

/*
 * A state file that does not load (cut off by a crash of the file system, or written so) is
 * renamed <reclaim id>.state.damaged, where the restore used to overwrite it at once: what it
 * said, a TDI recorded bound among it, stays for an admin, and the log names the context and
 * the file. A file of this tsmd that was cut at a line's end is damaged too: it lacks its End=.
 */
TEST(a_damaged_state_file_is_kept_aside_and_named) {
        char token[64], id[33], name[64], aside[96], text[160];
        VarlinkClient *c;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to write the worker's state directory");
        c = start_with_bound_context_id(&m, token, id);
        snprintf(name, sizeof(name), "%s.state", id);
        snprintf(aside, sizeof(aside), "state/%s.state.damaged", id);
        for (int cut_at_line_end = 0; cut_at_line_end <= 1; cut_at_line_end++) {
                _cleanup_free_ char *kept = NULL, *state = NULL, *line = NULL;
                _cleanup_(json_object_putp) json_object *owner = NULL;

                manager_drain(&m);
                manager_wait(&m, has_stored, 5000);
                kill(m.pid, SIGKILL);
                ASSERT_EQ(manager_exit_status(&m), 128 + SIGKILL);
                varlink_client_free(c);
                c = NULL;
                if (cut_at_line_end)
                        snprintf(text, sizeof(text), "[Context]\nVersion=2\nUid=%u\nVDevice=5 0000:01:00.0 bound\n",
                                 (unsigned) getuid());
                else
                        snprintf(text, sizeof(text), "[Context]\nUid=%u\nVDevice=5 0000:01:00.0 bound\n"
                                 "VDevice=6 0000:02:00.0 bou", (unsigned) getuid());
                plant_state_file(&m, name, text);
                manager_start_ready(&m);

                kept = read_text(&m, aside);
                ASSERT_STREQ(kept, text);
                line = log_line(&m, "is unreadable");
                ASSERT_NOT_NULL(strstr(line, id));
                ASSERT_NOT_NULL(strstr(line, ".state.damaged"));
                snprintf(text, sizeof(text), "state/%s", name);
                state = read_text(&m, text);
                ASSERT_NOT_NULL(strstr(state, "End=0\n"));
                owner = device_owner(&m, "0000:01:00.0");
                ASSERT_NULL(owner);
        }
        stop(&m);
}

/*
 * SECURITY: after a restart of the worker, the previous reclaim id (a reclaim's token that
 * counts while its renewed one may not have reached the VMM) is the monitor's, not whatever
 * the state file says: a PreviousReclaimId= a worker was made to write into it reclaimed the
 * context with a token its VMM never had, after any number of restarts of the worker (each
 * honest one wrote it again).
 */
TEST(a_forged_previous_reclaim_id_reclaims_nothing) {
        char token[64], id[33], forged_id[33], text[256], forged[64] = "00112233445566778899aabbccddeeff", reason[256];
        VarlinkClient *c;
        Manager m;

        if (geteuid() != 0)
                SKIP("needs root to write the worker's state directory");
        c = start_with_bound_context_id(&m, token, id);
        reclaim_id_of(forged, forged_id);
        snprintf(text, sizeof(text), "[Context]\nUid=%u\nPreviousReclaimId=%s\nVDevice=5 0000:01:00.0 bound\n",
                 (unsigned) getuid(), forged_id);
        forge_state_file_and_crash(&m, c, id, text);
        (void) crash_worker(&m);
        reclaim_refused(&m, forged, reason);
        ASSERT_TRUE(log_contains(&m, "names a previous reclaim id the monitor does not have"));
        c = connect_client(&m);
        reclaim_bound(c, token);
        varlink_client_free(c);
        ASSERT_FALSE(log_contains(&m, "Compromised worker"));
        stop(&m);
}

/* ---- libtsm across a restart ----------------------------------------------------------------- */

/* A TDISP GET_VERSION request for the emulated device at address into buf; returns its length. */
static size_t get_version_request(const char *address, uint8_t *buf, size_t size) {
        EmuPciAddress a;
        uint32_t function_id;
        size_t len;

        ASSERT_OK(emu_pci_address_parse(address, &a));
        ASSERT_OK(tdisp_function_id_from_pci(a.domain, a.bus, emu_pci_address_devfn(&a), &function_id));
        ASSERT_OK(tdisp_build_request(TDISP_MSG_GET_VERSION, function_id, NULL, 0, buf, size, &len));
        return len;
}

/*
 * A VMM's reclaim after a restart of tsmd's worker times out in libtsm (the new worker stopped
 * past the timeout), succeeds late (libtsm keeps the context it took back for the retry), and
 * then all of tsmd restarts before the VMM retried: the context goes with the connection to the
 * fd store, known to tsmd by the renewed token only, which the VMM never learnt. The VMM's
 * retry with the token it has, after a reconnect, gets the context back all the same (libtsm
 * sends the renewed token in its place): the same iommufd, its vDevice bound again, a guest
 * request served. Once: a further retry is tsmd's to refuse. The late answer was read before
 * tsmd died (read_late), or waited unread in the VMM's socket then (an idle VMM).
 */
static void reclaim_late_success_across_a_restart(bool read_late) {
        _cleanup_(json_object_putp) json_object *rec = NULL;
        _cleanup_free_ char *token = NULL, *renewed = NULL;
        uint8_t req[64], resp[256];
        size_t len = get_version_request("0000:01:00.0", req, sizeof(req)), resp_len;
        uint64_t ctx, other;
        char id[33], name[64], *pong = NULL;
        TsmTdiState state;
        bool bound = false;
        TsmClient *c;
        pid_t worker;
        int fd, fd2 = -1;
        Manager m;

        manager_init(&m);
        manager_capture_log(&m);
        manager_start_ready(&m);
        ASSERT_OK(tsm_client_connect(m.guest, &c));
        ASSERT_OK(tsm_client_set_timeout(c, 10 * 1000000ULL));
        ASSERT_OK(tsm_context_open(c, &ctx, &fd));
        ASSERT_OK(tsm_device_attach(c, ctx, 5, "0000:01:00.0", -1, NULL));
        ASSERT_OK(tsm_device_bind(c, ctx, 5, NULL));
        ASSERT_OK(tsm_context_get_reclaim_token(c, ctx, &token));
        reclaim_id_of(token, id);
        manager_wait(&m, has_stored, 5000);
        (void) crash_worker(&m);
        ASSERT_ERRNO(tsm_device_get_state(c, ctx, 5, &state, &bound), ECONNRESET);
        ASSERT_OK(tsm_client_reconnect(c));

        worker = worker_of(m.pid);
        ASSERT_OK(kill(worker, SIGSTOP));
        ASSERT_OK(tsm_client_set_timeout(c, 200 * 1000));
        ASSERT_ERRNO(tsm_context_reclaim(c, token, &ctx, &fd2), ETIMEDOUT);
        ASSERT_EQ(fd2, -1);
        ASSERT_OK(kill(worker, SIGCONT));
        ASSERT_OK(tsm_client_set_timeout(c, 10 * 1000000ULL));
        if (read_late) {
                /* Read before the Ping's answer, which follows it. */
                ASSERT_OK(tsm_client_call_json(c, "io.tsmd.Service.Ping", NULL, &pong));
                pong = mfree(pong);
        }
        /* The answer is out: the token the VMM has is void at tsmd (the old file is gone, and
         * the renewed one's names it no more), whatever restarts now. */
        snprintf(name, sizeof(name), "%s.state", id);
        for (unsigned i = 0; i < 500 && (state_file_exists(&m, name) || renewal_pending(&m, id)); i++)
                usleep(10000);
        ASSERT_FALSE(state_file_exists(&m, name));
        ASSERT_FALSE(renewal_pending(&m, id));

        /* tsmd restarts before the VMM retried; the VMM finds out, and reconnects. */
        crash_and_restart(&m);
        ASSERT_ERRNO(tsm_client_call_json(c, "io.tsmd.Service.Ping", NULL, &pong), ECONNRESET);
        ASSERT_OK(tsm_client_reconnect(c));
        expect_token_void(&m, token);

        ASSERT_OK(tsm_context_reclaim(c, token, &ctx, &fd2));
        ASSERT_NULL(tsm_client_get_error_name(c));
        ASSERT_TRUE(same_file(fd, fd2)); /* the context the VMM had */
        close(fd2);
        rec = wait_audit_record(&m, "restore-bind", "ok"); /* the emulated TSM lived in tsmd */
        ASSERT_OK(tsm_device_get_state(c, ctx, 5, &state, &bound));
        ASSERT_TRUE(bound);
        ASSERT_EQ(state, TSM_TDI_STATE_CONFIG_LOCKED);
        ASSERT_OK(tsm_guest_request(c, ctx, 5, "info", req, len, resp, sizeof(resp), &resp_len));
        ASSERT_TRUE(resp_len >= 2 && resp[1] == TDISP_MSG_VERSION);
        ASSERT_OK(tsm_context_get_reclaim_token(c, ctx, &renewed));
        ASSERT_FALSE(streq(renewed, token));

        ASSERT_ERRNO(tsm_context_reclaim(c, token, &other, NULL), ENOENT);
        ASSERT_STREQ(tsm_client_get_error_name(c), "io.tsmd.Guest.ReclaimRefused");
        ASSERT_OK(tsm_context_close(c, ctx));
        close(fd);
        tsm_client_free(c);
        stop(&m);
}

TEST(libtsm_retries_a_reclaim_that_succeeded_late_across_a_restart) {
        if (geteuid() != 0)
                SKIP("needs root to read the worker's state directory");
        reclaim_late_success_across_a_restart(true);
        reclaim_late_success_across_a_restart(false);
}

TEST_MAIN();
