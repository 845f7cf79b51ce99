/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libtsm's blocking API against a live tsmd on the emulated platform: the whole guest flow,
 * adopting an iommufd, the mapping of named errors to errno values and error state, and the
 * argument checks of every entry point. Also run under valgrind (libtsm-sync-valgrind).
 * Runs in: tests.
 */

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "libtsm-test-util.h"
#include "tdisp.h"
#include "tsmd-instance.h"

static TsmClient *connect_to(TsmdInstance *t) {
        TsmClient *c = NULL;

        ASSERT_OK(tsm_client_connect(t->guest_socket, &c));
        ASSERT_NOT_NULL(c);
        return c;
}

static bool is_emulated_iommufd(int fd) {
        char path[64], target[256];
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/self/fd/%i", fd);
        n = readlink(path, target, sizeof(target) - 1);
        if (n < 0)
                return false;
        target[n] = 0;
        return strncmp(target, "/memfd:tsmd-emulated-iommufd", 28) == 0;
}

TEST(guest_flow) {
        TsmdInstance t;
        TsmClient *c;
        TsmDeviceInfo *info = NULL;
        const TsmScope *s;
        TsmTdiState state;
        uint8_t req[64], resp[4096];
        size_t len, resp_len = 0;
        uint64_t ctx = 0;
        int fd = -1, flags;
        bool bound = true;

        tsmd_instance_start(&t, NULL);
        c = connect_to(&t);

        ASSERT_OK(tsm_context_open(c, &ctx, &fd));
        ASSERT_GE(ctx, 1);
        ASSERT_GE(fd, 0);
        ASSERT_TRUE(is_emulated_iommufd(fd));
        flags = fcntl(fd, F_GETFD);
        ASSERT_TRUE(flags >= 0 && (flags & FD_CLOEXEC));
        ASSERT_NO_ERROR_NAME(c);

        ASSERT_OK(tsm_device_attach(c, ctx, 1, DEV0, -1, &info));
        ASSERT_STREQ(tsm_device_info_get_backend(info), "emulated");
        ASSERT_STREQ(tsm_device_info_get_tsm(info), "emu0");
        ASSERT_STREQ(tsm_device_info_get_uapi(info), "emulated");
        /* info and state-change: the emulated TSM serves no debug scope here (EmulatedDebugScopes=no). */
        ASSERT_EQ(tsm_device_info_get_n_scopes(info), 2);
        ASSERT_STREQ(tsm_scope_get_name(tsm_device_info_get_scope(info, 0)), "info");
        ASSERT_NULL(tsm_device_info_get_scope(info, 2));
        s = tsm_device_info_find_scope(info, "info");
        ASSERT_NOT_NULL(s);
        ASSERT_TRUE(tsm_scope_is_allowed(s));
        ASSERT_EQ(tsm_scope_get_number(s), 0);
        ASSERT_GE(tsm_scope_get_max_request_size(s), 16);
        ASSERT_GE(tsm_scope_get_max_response_size(s), 16);
        ASSERT_NOT_NULL(tsm_scope_get_description(s));
        ASSERT_NULL(tsm_device_info_find_scope(info, "debug-read"));
        ASSERT_NULL(tsm_device_info_find_scope(info, "no-such-scope"));
        info = tsm_device_info_free(info);
        ASSERT_NULL(info);

        /* Not bound yet: the TSM refuses the guest's request, the emulated one as the kernel's
         * (BackendError DeviceNotBound, its errno passed through). */
        len = tdisp_request(DEV0, TDISP_MSG_GET_VERSION, NULL, 0, req, sizeof(req));
        ASSERT_ERRNO(tsm_guest_request(c, ctx, 1, "info", req, len, resp, sizeof(resp), &resp_len), ENXIO);
        ASSERT_ERROR_NAME(c, "io.tsmd.Guest.BackendError");
        ASSERT_STREQ(tsm_client_get_error_message(c), "name=DeviceNotBound, errno=6");

        ASSERT_OK(tsm_device_get_state(c, ctx, 1, &state, &bound));
        ASSERT_EQ(state, TSM_TDI_STATE_CONFIG_UNLOCKED);
        ASSERT_FALSE(bound);

        ASSERT_OK(tsm_device_bind(c, ctx, 1, &state));
        ASSERT_EQ(state, TSM_TDI_STATE_CONFIG_LOCKED);
        ASSERT_OK(tsm_device_get_state(c, ctx, 1, &state, &bound));
        ASSERT_EQ(state, TSM_TDI_STATE_CONFIG_LOCKED);
        ASSERT_TRUE(bound);
        ASSERT_OK(tsm_device_get_state(c, ctx, 1, NULL, NULL));

        /* GET_TDISP_VERSION in scope "info" is answered with TDISP_VERSION. */
        ASSERT_OK(tsm_guest_request(c, ctx, 1, "info", req, len, resp, sizeof(resp), &resp_len));
        ASSERT_EQ(tdisp_response_type(resp, resp_len), TDISP_MSG_VERSION);
        ASSERT_EQ(resp[0], TDISP_VERSION_1_0);

        len = tdisp_request(DEV0, TDISP_MSG_GET_DEVICE_INTERFACE_STATE, NULL, 0, req, sizeof(req));
        ASSERT_OK(tsm_guest_request(c, ctx, 1, "info", req, len, resp, sizeof(resp), NULL));

        ASSERT_OK(tsm_device_unbind(c, ctx, 1, &state));
        ASSERT_EQ(state, TSM_TDI_STATE_CONFIG_UNLOCKED);
        ASSERT_OK(tsm_device_detach(c, ctx, 1));
        ASSERT_OK(tsm_context_close(c, ctx));
        ASSERT_NO_ERROR_NAME(c);
        ASSERT_NULL(tsm_client_get_error_message(c));

        /* The iommufd stays the caller's after the context is gone. */
        ASSERT_TRUE(fcntl(fd, F_GETFD) >= 0);
        close(fd);

        /* Without the iommufd: tsm_context_open() closes it. */
        ASSERT_OK(tsm_context_open(c, &ctx, NULL));
        ASSERT_OK(tsm_device_attach(c, ctx, 5, DEV1, -1, NULL));

        ASSERT_NULL(tsm_client_free(c));
        tsmd_instance_done(&t);
}

TEST(adopt_context) {
        TsmdInstance t;
        TsmClient *a, *b;
        uint64_t ctx_a, ctx_b;
        int fd, pipefd[2];

        tsmd_instance_start(&t, NULL);
        a = connect_to(&t);
        b = connect_to(&t);

        /* An iommufd tsmd handed out is one tsmd takes back (the emulated stand-in here). */
        ASSERT_OK(tsm_context_open(a, &ctx_a, &fd));
        ASSERT_OK(tsm_context_adopt(b, fd, &ctx_b));
        ASSERT_TRUE(fcntl(fd, F_GETFD) >= 0); /* still ours */
        ASSERT_OK(tsm_device_attach(b, ctx_b, 3, DEV0, -1, NULL));
        ASSERT_OK(tsm_context_close(b, ctx_b));

        /* Anything else is refused by tsmd... */
        ASSERT_OK(pipe2(pipefd, O_CLOEXEC));
        ASSERT_ERRNO(tsm_context_adopt(b, pipefd[0], &ctx_b), EBADF);
        ASSERT_ERROR_NAME(b, "io.tsmd.Guest.BadFileDescriptor");
        ASSERT_NOT_NULL(strstr(tsm_client_get_error_message(b), "field=fileDescriptor"));
        ASSERT_TRUE(fcntl(pipefd[0], F_GETFD) >= 0);
        close(pipefd[0]);
        close(pipefd[1]);

        /* ... and what is not an fd at all by libtsm. */
        ASSERT_ERRNO(tsm_context_adopt(b, -1, &ctx_b), EBADF);
        ASSERT_ERRNO(tsm_context_adopt(b, pipefd[0], &ctx_b), EBADF);

        /* The connection is fine after all that. */
        ASSERT_OK(tsm_context_open(b, &ctx_b, NULL));

        close(fd);
        tsm_client_free(a);
        tsm_client_free(b);
        tsmd_instance_done(&t);
}

static int raw_guest_connect(TsmdInstance *t) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ASSERT_TRUE(fd >= 0);
        ASSERT_TRUE(strlen(t->guest_socket) < sizeof(sa.sun_path));
        memcpy(sa.sun_path, t->guest_socket, strlen(t->guest_socket) + 1);
        ASSERT_OK(connect(fd, (struct sockaddr *) &sa, sizeof(sa)));
        return fd;
}

static unsigned count_fds_of(pid_t pid) {
        char path[64];
        unsigned n = 0;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int) pid);
        d = opendir(path);
        ASSERT_NOT_NULL(d);
        while (readdir(d))
                n++;
        closedir(d);
        return n - 2; /* . and .. */
}

/* Sends text (no NUL: a message that goes on) with n fds of /dev/null. */
static void send_dev_null_fds(int sock, const char *text, unsigned n) {
        char control[CMSG_SPACE(sizeof(int) * 16)] = {};
        struct iovec iov = { .iov_base = (void *) text, .iov_len = strlen(text) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                             .msg_controllen = CMSG_SPACE(sizeof(int) * n) };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        int fds[16];

        ASSERT_TRUE(n <= 16);
        for (unsigned i = 0; i < n; i++) {
                fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
                ASSERT_TRUE(fds[i] >= 0);
        }
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
        ASSERT_EQ(sendmsg(sock, &mh, MSG_NOSIGNAL), (ssize_t) iov.iov_len);
        for (unsigned i = 0; i < n; i++)
                close(fds[i]);
}

#define WORKER_NOFILE 512U

/* Whether a child of ours may lower its hard RLIMIT_NOFILE (valgrind, which the -valgrind run
 * puts us under, refuses any change of it). */
static bool can_lower_nofile(void) {
        int status = 0;
        pid_t pid = fork();

        ASSERT_TRUE(pid >= 0);
        if (pid == 0)
                _exit(setrlimit(RLIMIT_NOFILE, &(struct rlimit) { .rlim_cur = WORKER_NOFILE,
                                                                  .rlim_max = WORKER_NOFILE }) < 0);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* An iommufd the worker has no room to receive (every fd its RLIMIT_NOFILE allows is taken) is
 * tsmd's failure: io.tsmd.System EMFILE, -EMFILE, not BadFileDescriptor. Once it has fds again,
 * the same call works. */
TEST(fd_lost_in_a_full_worker) {
        static const char ping[] = "{\"method\":\"io.tsmd.Service.Ping\"}";
        int fill[WORKER_NOFILE], parker, iommufd, r = 0;
        uint64_t ctx, ctx2, deadline, stable_since = 0;
        unsigned n, last = 0;
        struct rlimit ours;
        TsmdInstance t;
        TsmClient *c;
        char buf[64];
        pid_t worker;

        ASSERT_OK(getrlimit(RLIMIT_NOFILE, &ours));
        if (ours.rlim_cur < 2 * WORKER_NOFILE)
                SKIP("our RLIMIT_NOFILE of %llu cannot hold the connections that fill the worker's",
                     (unsigned long long) ours.rlim_cur);
        if (!can_lower_nofile())
                SKIP("cannot give tsmd a hard RLIMIT_NOFILE of its own here (under valgrind?)");
        tsmd_instance_start_nofile(&t, NULL, WORKER_NOFILE);
        c = connect_to(&t);
        ASSERT_OK(tsm_context_open(c, &ctx, &iommufd));
        parker = raw_guest_connect(&t);
        ASSERT_EQ(send(parker, ping, sizeof(ping), MSG_NOSIGNAL), (ssize_t) sizeof(ping));
        ASSERT_TRUE(recv(parker, buf, sizeof(buf), 0) > 0); /* accepted and identified */
        worker = tsmd_instance_worker_pid(&t);
        ASSERT_TRUE(worker > 0);

        /* More connections than it has fds: it keeps what it can, and refuses the rest. */
        for (unsigned i = 0; i < WORKER_NOFILE; i++)
                fill[i] = raw_guest_connect(&t);
        deadline = test_now_usec() + 5000000U;
        for (;;) {
                n = count_fds_of(worker);
                if (n != last || n + 4 < WORKER_NOFILE)
                        stable_since = test_now_usec();
                else if (test_now_usec() - stable_since > 300000U)
                        break;
                last = n;
                if (test_now_usec() > deadline)
                        TEST_FAIL("the worker holds %u fds of %u", n, WORKER_NOFILE);
                usleep(10000);
        }
        /* The last free ones go to fds parked on a message that does not end: more than fit. */
        send_dev_null_fds(parker, "{\"method\":\"io.tsmd.Service.Ping\"", 8);
        deadline = test_now_usec() + 5000000U;
        while ((n = count_fds_of(worker)) < WORKER_NOFILE) {
                if (test_now_usec() > deadline)
                        TEST_FAIL("the worker holds %u fds of %u", n, WORKER_NOFILE);
                usleep(10000);
        }

        ASSERT_ERRNO(tsm_context_adopt(c, iommufd, &ctx2), EMFILE);
        ASSERT_ERROR_NAME(c, "io.tsmd.System");
        ASSERT_NOT_NULL(strstr(tsm_client_get_error_message(c), "EMFILE"));

        close(parker);
        for (unsigned i = 0; i < WORKER_NOFILE; i++)
                close(fill[i]);
        deadline = test_now_usec() + 5000000U;
        while ((r = tsm_context_adopt(c, iommufd, &ctx2)) == -EMFILE && test_now_usec() < deadline)
                usleep(20000);
        ASSERT_OK(r);
        close(iommufd);
        tsm_client_free(c);
        tsmd_instance_done(&t);
}

/* A message the scope it was sent in does not carry, as the emulated TSM refuses it: the kernel's
 * TSMs' EINVAL, BackendError InvalidScopeOrArgument. */
#define SCOPE_REFUSED_ERRNO EINVAL
#define SCOPE_REFUSED_NAME "io.tsmd.Guest.BackendError"

TEST(named_errors) {
        TsmdInstance t;
        TsmClient *a, *b;
        TsmDeviceInfo *info;
        uint8_t req[64], resp[4096], *big;
        size_t len, max_request;
        uint64_t ctx_a, ctx_a2;

        tsmd_instance_start(&t, NULL);
        a = connect_to(&t);
        b = connect_to(&t);
        ASSERT_OK(tsm_context_open(a, &ctx_a, NULL));
        ASSERT_OK(tsm_device_attach(a, ctx_a, 1, DEV0, -1, &info));
        ASSERT_OK(tsm_device_bind(a, ctx_a, 1, NULL));
        max_request = (size_t) tsm_scope_get_max_request_size(tsm_device_info_find_scope(info, "info"));
        tsm_device_info_free(info);
        len = tdisp_request(DEV0, TDISP_MSG_GET_VERSION, NULL, 0, req, sizeof(req));

        /* Unknown scope. */
        ASSERT_ERRNO(tsm_guest_request(a, ctx_a, 1, "no-such-scope", req, len, resp, sizeof(resp), NULL), EOPNOTSUPP);
        ASSERT_ERROR_NAME(a, "io.tsmd.Guest.NoSuchScope");
        ASSERT_STREQ(tsm_client_get_error_message(a), "scope=no-such-scope, backend=emulated");

        /* A successful call clears the error state. */
        ASSERT_OK(tsm_guest_request(a, ctx_a, 1, "info", req, len, resp, sizeof(resp), NULL));
        ASSERT_NO_ERROR_NAME(a);

        /* Debug scopes are not granted. */
        ASSERT_ERRNO(tsm_guest_request(a, ctx_a, 1, "debug-read", req, len, resp, sizeof(resp), NULL), EACCES);
        ASSERT_ERROR_NAME(a, "io.tsmd.Guest.Denied");
        ASSERT_TRUE(strncmp(tsm_client_get_error_message(a), "reason=", 7) == 0);

        /* Another connection's context handle does not exist for this one. */
        ASSERT_ERRNO(tsm_device_attach(b, ctx_a, 1, DEV1, -1, NULL), ENOENT);
        ASSERT_ERROR_NAME(b, "io.tsmd.Guest.NoSuchContext");
        ASSERT_ERRNO(tsm_guest_request(b, ctx_a, 1, "info", req, len, resp, sizeof(resp), NULL), ENOENT);
        ASSERT_ERROR_NAME(b, "io.tsmd.Guest.NoSuchContext");
        ASSERT_ERRNO(tsm_context_close(b, ctx_a), ENOENT);

        /* Unknown vDevice, unknown device, vDevice id taken, device taken. */
        ASSERT_ERRNO(tsm_device_bind(a, ctx_a, 99, NULL), ENOENT);
        ASSERT_ERROR_NAME(a, "io.tsmd.Guest.NoSuchVDevice");
        ASSERT_STREQ(tsm_client_get_error_message(a), "context=1, vdeviceId=99");
        ASSERT_ERRNO(tsm_device_attach(a, ctx_a, 2, "0000:7f:1f.7", -1, NULL), ENOENT);
        ASSERT_ERROR_NAME(a, "io.tsmd.Guest.NoSuchDevice");
        ASSERT_ERRNO(tsm_device_attach(a, ctx_a, 1, DEV1, -1, NULL), EEXIST);
        ASSERT_ERROR_NAME(a, "io.tsmd.Guest.VDeviceExists");
        ASSERT_OK(tsm_context_open(a, &ctx_a2, NULL));
        ASSERT_ERRNO(tsm_device_attach(a, ctx_a2, 1, DEV0, -1, NULL), EBUSY);
        ASSERT_ERROR_NAME(a, "io.tsmd.Guest.DeviceBusy");

        /* A guest cannot STOP the TDI the bind above locked (the host's, as on a kernel TSM),
         * and a Bind of it, bound already, answers as the kernel's pci_tsm_bind() does: 0. */
        {
                uint8_t lreq[64];
                size_t llen = tdisp_request(DEV0, TDISP_MSG_STOP_INTERFACE_REQ, NULL, 0, lreq, sizeof(lreq));

                ASSERT_ERRNO(tsm_guest_request(a, ctx_a, 1, "state-change", lreq, llen, resp, sizeof(resp), NULL),
                             SCOPE_REFUSED_ERRNO);
                ASSERT_ERROR_NAME(a, SCOPE_REFUSED_NAME);
        }
        ASSERT_OK(tsm_device_bind(a, ctx_a, 1, NULL));

        /* A request over the scope's limit. */
        big = calloc(1, max_request + 1);
        ASSERT_NOT_NULL(big);
        memcpy(big, req, len);
        ASSERT_ERRNO(tsm_guest_request(a, ctx_a, 1, "info", big, max_request + 1, resp, sizeof(resp), NULL), E2BIG);
        ASSERT_ERROR_NAME(a, "io.tsmd.Guest.PayloadTooLarge");
        free(big);

        /* A response buffer too small for the response: tsmd offers the backend no more room,
         * so it is PayloadTooLarge, not libtsm's -ENOBUFS (tsm.h); none at all as well. */
        ASSERT_ERRNO(tsm_guest_request(a, ctx_a, 1, "info", req, len, resp, 4, NULL), E2BIG);
        ASSERT_ERROR_NAME(a, "io.tsmd.Guest.PayloadTooLarge");
        ASSERT_STREQ(tsm_client_get_error_message(a), "field=maxResponseSize, limit=4");
        ASSERT_ERRNO(tsm_guest_request(a, ctx_a, 1, "info", req, len, NULL, 0, NULL), E2BIG);
        ASSERT_STREQ(tsm_client_get_error_message(a), "field=maxResponseSize, limit=0");

        /* Local argument errors leave no Varlink error behind. */
        ASSERT_ERRNO(tsm_device_bind(a, ctx_a, 0, NULL), EINVAL);

        tsm_client_free(a);
        tsm_client_free(b);
        tsmd_instance_done(&t);
}

TEST(limit_reached) {
        TsmdInstance t;
        TsmClient *c;
        uint64_t ctx;

        tsmd_instance_start(&t, "[Guest]\nMaxContextsPerClient=2\n");
        c = connect_to(&t);
        ASSERT_OK(tsm_context_open(c, &ctx, NULL));
        ASSERT_OK(tsm_context_open(c, &ctx, NULL));
        ASSERT_ERRNO(tsm_context_open(c, &ctx, NULL), EUSERS);
        ASSERT_ERROR_NAME(c, "io.tsmd.Guest.LimitReached");
        ASSERT_STREQ(tsm_client_get_error_message(c), "limit=contexts, max=2");
        tsm_client_free(c);
        tsmd_instance_done(&t);
}

/* Whether tsmd hung up on fd within 10 s (nothing is read). */
static bool hung_up(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLRDHUP };

        return poll(&p, 1, 10000) == 1 && (p.revents & (POLLRDHUP | POLLHUP));
}

/* A connection past MaxConnectionsPerUid= is refused by name, as the answer to its first call,
 * whether that was written before tsmd closed the connection or after: -EUSERS, not the
 * -ECONNRESET of a restart. Then it is gone. */
TEST(too_many_connections_per_uid) {
        TsmdInstance t;
        TsmClient *c[2], *refused;
        uint64_t ctx;

        tsmd_instance_start(&t, "[Varlink]\nMaxConnectionsPerUid=2\n");
        for (unsigned i = 0; i < 2; i++) {
                c[i] = connect_to(&t);
                ASSERT_OK(tsm_context_open(c[i], &ctx, NULL));
        }
        for (unsigned i = 0; i < 2; i++) {
                refused = connect_to(&t);
                if (i == 1)
                        ASSERT_TRUE(hung_up(tsm_client_get_fd(refused)));
                ASSERT_ERRNO(tsm_context_open(refused, &ctx, NULL), EUSERS);
                ASSERT_ERROR_NAME(refused, "io.tsmd.TooManyConnectionsPerUid");
                ASSERT_STREQ(tsm_client_get_error_message(refused),
                             "tsmd refused the connection: this uid has all it may open (MaxConnectionsPerUid=, "
                             "MaxAdminConnectionsPerUid=); it is closed");
                ASSERT_ERRNO(tsm_context_open(refused, &ctx, NULL), ECONNRESET);
                ASSERT_ERROR_NAME(refused, "io.tsmd.Disconnected");
                tsm_client_free(refused);
        }
        for (unsigned i = 0; i < 2; i++)
                tsm_client_free(c[i]);
        tsmd_instance_done(&t);
}

/* A call's message tsmd refuses as a whole (here, nested past its MaxJsonDepth=, which is lower
 * than libtsm's own check), and a connection that made no call in time: told by name, with the
 * limit, as the answer to the call, then the connection is gone: the next call fails as on a
 * lost connection, and a new one is served. */
TEST(refusals_that_close_the_connection) {
        TsmdInstance t;
        TsmClient *c;
        char *reply = NULL;
        uint64_t ctx;

        tsmd_instance_start(&t, "[Varlink]\nMaxJsonDepth=4\nIdleTimeoutSec=1\n");
        c = connect_to(&t);
        ASSERT_ERRNO(tsm_client_call_json(c, "io.tsmd.Service.Ping", "{\"x\":[[[1]]]}", &reply), EINVAL);
        ASSERT_NULL(reply);
        ASSERT_ERROR_NAME(c, "io.tsmd.NestingTooDeep");
        ASSERT_STREQ(tsm_client_get_error_message(c),
                     "tsmd refused the call as nested too deep (maxJsonDepth=4); it closed the connection");
        ASSERT_ERRNO(tsm_context_open(c, &ctx, NULL), ECONNRESET);
        ASSERT_ERROR_NAME(c, "io.tsmd.Disconnected");
        ASSERT_OK(tsm_client_reconnect(c));
        ASSERT_OK(tsm_context_open(c, &ctx, NULL));
        tsm_client_free(c);

        /* No call within IdleTimeoutSec=: tsmd told it, and closed it. */
        c = connect_to(&t);
        ASSERT_TRUE(hung_up(tsm_client_get_fd(c)));
        ASSERT_ERRNO(tsm_context_open(c, &ctx, NULL), ECONNABORTED);
        ASSERT_ERROR_NAME(c, "io.tsmd.IdleTimeout");
        ASSERT_STREQ(tsm_client_get_error_message(c),
                     "tsmd found the connection idle too long (idleTimeoutSec=1); it closed the connection");
        ASSERT_ERRNO(tsm_context_open(c, &ctx, NULL), ECONNRESET);
        ASSERT_OK(tsm_client_reconnect(c));
        ASSERT_OK(tsm_context_open(c, &ctx, NULL));
        tsm_client_free(c);
        tsmd_instance_done(&t);
}

TEST(default_address) {
        TsmdInstance t;
        TsmClient *c;
        uint64_t ctx;

        tsmd_instance_start(&t, NULL);
        ASSERT_OK(setenv("TSMD_GUEST_SOCKET", t.guest_socket, 1));
        ASSERT_OK(tsm_client_connect(NULL, &c));
        ASSERT_OK(tsm_context_open(c, &ctx, NULL));
        tsm_client_free(c);

        /* unix: addresses work too. */
        {
                char address[PATH_MAX + 8];

                snprintf(address, sizeof(address), "unix:%s", t.guest_socket);
                ASSERT_OK(tsm_client_connect(address, &c));
                ASSERT_OK(tsm_context_open(c, &ctx, NULL));
                tsm_client_free(c);
        }
        tsmd_instance_done(&t);
}

TEST(invalid_arguments) {
        TsmClient *c = NULL;
        TsmDeviceInfo *info = NULL;
        uint64_t ctx;
        uint8_t buf[8];
        int fd;

        ASSERT_ERRNO(tsm_client_connect("/nonexistent/socket", &c), ENOENT);
        ASSERT_ERRNO(tsm_client_connect("relative/socket", &c), EINVAL);
        /* Not the default socket: only NULL asks for that. */
        ASSERT_ERRNO(tsm_client_connect("", &c), EINVAL);
        ASSERT_ERRNO(tsm_client_connect("unix:", &c), EINVAL);
        ASSERT_ERRNO(tsm_client_connect("/x", NULL), EINVAL);
        ASSERT_NULL(c);

        ASSERT_NULL(tsm_client_free(NULL));
        ASSERT_NULL(tsm_device_info_free(NULL));
        ASSERT_ERRNO(tsm_client_set_timeout(NULL, 1), EINVAL);
        ASSERT_ERRNO(tsm_client_reconnect(NULL), EINVAL);
        ASSERT_NULL(tsm_client_get_error_name(NULL));
        ASSERT_NULL(tsm_client_get_error_message(NULL));
        ASSERT_ERRNO(tsm_client_get_fd(NULL), EINVAL);
        ASSERT_ERRNO(tsm_client_get_events(NULL), EINVAL);
        ASSERT_ERRNO(tsm_client_process(NULL), EINVAL);
        ASSERT_ERRNO(tsm_context_open(NULL, &ctx, &fd), EINVAL);
        ASSERT_ERRNO(tsm_context_adopt(NULL, 0, &ctx), EINVAL);
        ASSERT_ERRNO(tsm_context_close(NULL, 1), EINVAL);
        ASSERT_ERRNO(tsm_device_attach(NULL, 1, 1, DEV0, -1, &info), EINVAL);
        ASSERT_ERRNO(tsm_device_detach(NULL, 1, 1), EINVAL);
        ASSERT_ERRNO(tsm_device_bind(NULL, 1, 1, NULL), EINVAL);
        ASSERT_ERRNO(tsm_device_unbind(NULL, 1, 1, NULL), EINVAL);
        ASSERT_ERRNO(tsm_device_get_state(NULL, 1, 1, NULL, NULL), EINVAL);
        ASSERT_ERRNO(tsm_guest_request(NULL, 1, 1, "info", buf, 1, buf, 8, NULL), EINVAL);
        ASSERT_ERRNO(tsm_guest_request_async(NULL, 1, 1, "info", buf, 1, 8, NULL, NULL, NULL), EINVAL);
        ASSERT_ERRNO(tsm_client_watch_events(NULL, NULL, NULL, NULL), EINVAL);

        ASSERT_NULL(tsm_device_info_get_backend(NULL));
        ASSERT_EQ(tsm_device_info_get_n_scopes(NULL), 0);
        ASSERT_NULL(tsm_device_info_get_scope(NULL, 0));
        ASSERT_NULL(tsm_device_info_find_scope(NULL, "info"));
        ASSERT_NULL(tsm_scope_get_name(NULL));
        ASSERT_FALSE(tsm_scope_is_allowed(NULL));
        ASSERT_NULL(tsm_event_get_pci_address(NULL));
        ASSERT_EQ(tsm_event_get_kind(NULL), _TSM_EVENT_KIND_INVALID);
        ASSERT_EQ(tsm_event_get_state(NULL), _TSM_TDI_STATE_INVALID);

        for (int i = 0; i < _TSM_TDI_STATE_MAX; i++)
                ASSERT_EQ(tsm_tdi_state_from_string(tsm_tdi_state_to_string((TsmTdiState) i)), i);
        ASSERT_NULL(tsm_tdi_state_to_string(_TSM_TDI_STATE_MAX));
        /* What Bind and GetDeviceState give on kernel TSMs: it prints, and names no state. */
        ASSERT_STREQ(tsm_tdi_state_to_string(_TSM_TDI_STATE_INVALID), "unknown");
        ASSERT_EQ(tsm_tdi_state_from_string("unknown"), _TSM_TDI_STATE_INVALID);
        ASSERT_NULL(tsm_tdi_state_to_string((TsmTdiState) -1));
        ASSERT_EQ(tsm_tdi_state_from_string("locked"), _TSM_TDI_STATE_INVALID);
        ASSERT_EQ(tsm_tdi_state_from_string(NULL), _TSM_TDI_STATE_INVALID);
        for (int i = 0; i < _TSM_EVENT_KIND_MAX; i++)
                ASSERT_EQ(tsm_event_kind_from_string(tsm_event_kind_to_string((TsmEventKind) i)), i);
        ASSERT_STREQ(tsm_event_kind_to_string(TSM_EVENT_DEVICE_REMOVED), "device-removed");
        ASSERT_EQ(tsm_event_kind_from_string("device-unbound"), TSM_EVENT_DEVICE_UNBOUND);
        ASSERT_EQ(tsm_event_kind_from_string("exploded"), _TSM_EVENT_KIND_INVALID);
}

static void no_request_callback(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        TEST_FAIL("callback of a refused registration ran");
}

TEST(invalid_arguments_connected) {
        TsmdInstance t;
        TsmClient *c;
        uint64_t ctx;
        uint8_t buf[8] = {};

        tsmd_instance_start(&t, NULL);
        c = connect_to(&t);
        ctx = setup_device(c, DEV0, 1, NULL);

        ASSERT_ERRNO(tsm_context_open(c, NULL, NULL), EINVAL);
        ASSERT_ERRNO(tsm_context_adopt(c, 0, NULL), EINVAL);
        ASSERT_ERRNO(tsm_context_close(c, UINT64_MAX), EINVAL);
        ASSERT_ERRNO(tsm_device_attach(c, ctx, 0, DEV1, -1, NULL), EINVAL);
        ASSERT_ERRNO(tsm_device_attach(c, ctx, 2, NULL, -1, NULL), EINVAL);
        ASSERT_ERRNO(tsm_device_attach(c, ctx, 2, DEV1, -2, NULL), EINVAL);
        ASSERT_ERRNO(tsm_device_attach(c, ctx, 2, DEV1, 1000, NULL), EBADF);
        ASSERT_ERRNO(tsm_device_detach(c, ctx, 0), EINVAL);
        ASSERT_ERRNO(tsm_guest_request(c, ctx, 1, NULL, buf, 1, buf, sizeof(buf), NULL), EINVAL);
        ASSERT_ERRNO(tsm_guest_request(c, ctx, 1, "info", NULL, 1, buf, sizeof(buf), NULL), EINVAL);
        ASSERT_ERRNO(tsm_guest_request(c, ctx, 1, "info", buf, 1, NULL, 8, NULL), EINVAL);
        ASSERT_ERRNO(tsm_guest_request(c, UINT64_MAX, 1, "info", buf, 1, buf, 8, NULL), EINVAL);
        ASSERT_ERRNO(tsm_guest_request_async(c, ctx, 1, "info", buf, 1, 8, NULL, NULL, NULL), EINVAL);
        ASSERT_ERRNO(tsm_guest_request_async(c, ctx, 0, "info", buf, 1, 8, no_request_callback, NULL, NULL), EINVAL);
        ASSERT_ERRNO(tsm_client_watch_events(c, NULL, NULL, NULL), EINVAL);
        ASSERT_ERRNO(tsm_client_set_timeout(c, 0), 0);

        /* None of that disturbed the connection. */
        ASSERT_OK(tsm_device_get_state(c, ctx, 1, NULL, NULL));
        ASSERT_EQ(tsm_client_get_events(c), 0);
        ASSERT_EQ(tsm_client_process(c), 0);

        tsm_client_free(c);
        tsmd_instance_done(&t);
}

/* The example VMM program (client/libtsm/examples/vmm-libtsm.c) runs its flow to the end. */
TEST(example_program) {
        TsmdInstance t;
        char cmd[2 * PATH_MAX], line[512];
        bool accepted = false, unbound = false, async = false;
        FILE *f;

        tsmd_instance_start(&t, NULL);
        snprintf(cmd, sizeof(cmd), "'%s' --socket='%s' " DEV1, VMM_LIBTSM_PATH, t.guest_socket);
        f = popen(cmd, "re");
        ASSERT_NOT_NULL(f);
        while (fgets(line, sizeof(line), f)) {
                fputs(line, stderr);
                /* The guest's START after the bind, which the TSM completes with its nonce. */
                if (strstr(line, "accepted: TDI state run"))
                        accepted = true;
                if (strstr(line, "unbound: TDI state config_unlocked"))
                        unbound = true;
                if (strstr(line, "info (async)") && strstr(line, "TDISP_VERSION"))
                        async = true;
        }
        ASSERT_EQ(pclose(f), 0);
        ASSERT_TRUE(accepted);
        ASSERT_TRUE(unbound);
        ASSERT_TRUE(async);
        tsmd_instance_done(&t);
}

/* Its recovery: the worker killed while it is paused after the bind, its next guest request
 * finds the connection lost, and it reconnects and reclaims the context, still bound, to go
 * on with the guest's accept. */
TEST(example_program_reclaims) {
        TsmdInstance t;
        char sock_arg[PATH_MAX + 16], line[512];
        bool reclaimed = false, accepted = false, unbound = false;
        int in[2], out[2], status;
        FILE *from, *to;
        pid_t pid;

        tsmd_instance_start(&t, NULL);
        snprintf(sock_arg, sizeof(sock_arg), "--socket=%s", t.guest_socket);
        ASSERT_OK(pipe2(in, O_CLOEXEC));
        ASSERT_OK(pipe2(out, O_CLOEXEC));
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                if (dup2(in[0], STDIN_FILENO) < 0 || dup2(out[1], STDOUT_FILENO) < 0)
                        _exit(127);
                execl(VMM_LIBTSM_PATH, VMM_LIBTSM_PATH, sock_arg, "--pause", DEV1, (char *) NULL);
                _exit(127);
        }
        close(in[0]);
        close(out[1]);
        to = fdopen(in[1], "w");
        from = fdopen(out[0], "r");
        ASSERT_NOT_NULL(to);
        ASSERT_NOT_NULL(from);

        while (fgets(line, sizeof(line), from)) {
                fputs(line, stderr);
                if (strstr(line, "paused:")) {
                        tsmd_instance_kill_worker(&t);
                        fputs("\n", to);
                        fclose(to);
                        to = NULL;
                }
                if (strstr(line, "connection lost, context reclaimed"))
                        reclaimed = true;
                if (strstr(line, "accepted: TDI state run"))
                        accepted = true;
                if (strstr(line, "unbound: TDI state config_unlocked"))
                        unbound = true;
        }
        fclose(from);
        if (to)
                fclose(to);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_TRUE(reclaimed);
        ASSERT_TRUE(accepted);
        ASSERT_TRUE(unbound);
        tsmd_instance_done(&t);
}

TEST_MAIN();
