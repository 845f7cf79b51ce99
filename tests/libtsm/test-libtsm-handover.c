/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Handing a connection to tsmd on, as a VMM's live update does (QEMU's cpr-transfer: the fd
 * passed to a new process over a Unix socket, the old one exiting; cpr-exec: the fd kept across
 * exec()), against a live tsmd on the emulated platform: tsm_client_detach_fd(),
 * tsm_client_new_from_fd(), io.tsmd.Guest.DescribeConnection, and that tsmd released nothing
 * meanwhile (the device stays bound, its guest requests go on, no "release" in the audit log).
 * Events are per process: what a watch of the new process hears. Runs in: tests.
 */

#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "libtsm-test-util.h"
#include "tdisp.h"
#include "tsmd-instance.h"

#define WAIT_USEC (20ULL * 1000000ULL)

static void send_fds(int sock, const int *fds, size_t n) {
        char buf[CMSG_SPACE(sizeof(int) * 4)] = {};
        struct iovec iov = { .iov_base = (char[]){ 'x' }, .iov_len = 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = buf,
                             .msg_controllen = CMSG_SPACE(sizeof(int) * n) };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

        ASSERT_TRUE(n <= 4);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
        ASSERT_EQ(sendmsg(sock, &mh, MSG_NOSIGNAL), 1);
}

static size_t recv_fds(int sock, int *fds, size_t max) {
        char buf[CMSG_SPACE(sizeof(int) * 4)] = {}, byte;
        struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = buf, .msg_controllen = sizeof(buf) };
        struct cmsghdr *cm;
        size_t n;

        ASSERT_EQ(recvmsg(sock, &mh, MSG_CMSG_CLOEXEC), 1);
        cm = CMSG_FIRSTHDR(&mh);
        ASSERT_NOT_NULL(cm);
        ASSERT_EQ(cm->cmsg_type, SCM_RIGHTS);
        n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        ASSERT_TRUE(n <= max);
        memcpy(fds, CMSG_DATA(cm), sizeof(int) * n);
        return n;
}

/* The records of event in tsmd's audit log, through its admin socket. */
static unsigned audit_count(TsmdInstance *t, const char *event) {
        _cleanup_free_ char *reply = NULL, *params = NULL;
        TsmClient *a = NULL;
        unsigned n = 0;

        ASSERT_TRUE(asprintf(&params, "{\"event\":\"%s\"}", event) > 0);
        ASSERT_OK(tsm_client_connect(t->admin_socket, &a));
        ASSERT_OK(tsm_client_call_json(a, "io.tsmd.Admin.QueryAudit", params, &reply));
        for (const char *p = reply; (p = strstr(p, "\"seq\"")); p++)
                n++;
        tsm_client_free(a);
        return n;
}

/* The old VMM: opens a context, attaches DEV0 as vDevice 3 and binds it, detaches the
 * connection (and, with watch_too, one more of its own for the new process to watch on) and
 * passes it on over sock; then exits. Runs in a child: exit status 0 if all went well. */
static void old_vmm(TsmdInstance *t, int sock, bool watch_too) {
        TsmClient *c = NULL, *w = NULL;
        uint64_t ctx;
        int fds[2], iommufd;

        ASSERT_OK(tsm_client_connect(t->guest_socket, &c));
        ctx = setup_device(c, DEV0, 3, &iommufd);
        ASSERT_EQ(ctx, 1);
        ASSERT_OK(tsm_client_detach_fd(c, &fds[0]));
        if (watch_too) {
                ASSERT_OK(tsm_client_connect(t->guest_socket, &w));
                ASSERT_OK(tsm_client_detach_fd(w, &fds[1]));
        }
        /* The iommufd is the VM's, passed on as QEMU passes it (not needed here). */
        close(iommufd);
        send_fds(sock, fds, watch_too ? 2 : 1);
        _exit(0);
}

/* Runs old_vmm() in a child and returns the fds it handed on, once it exited. */
static size_t hand_over(TsmdInstance *t, bool watch_too, int *fds) {
        int pair[2], status;
        pid_t pid;
        size_t n;

        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair));
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                close(pair[0]);
                old_vmm(t, pair[1], watch_too);
        }
        close(pair[1]);
        n = recv_fds(pair[0], fds, 2);
        close(pair[0]);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_EQ(n, watch_too ? 2U : 1U);
        return n;
}

/* The adopted connection holds the old process's context 1 with DEV0 as vDevice 3, bound. */
static void assert_holds_bound_dev0(const TsmConnectionInfo *info) {
        const TsmHeldVDevice *v;

        ASSERT_EQ(tsm_connection_info_get_n_contexts(info), 1);
        ASSERT_EQ(tsm_connection_info_get_context(info, 0), 1);
        ASSERT_EQ(tsm_connection_info_get_n_vdevices(info), 1);
        v = tsm_connection_info_get_vdevice(info, 0);
        ASSERT_NOT_NULL(v);
        ASSERT_EQ(tsm_held_vdevice_get_context(v), 1);
        ASSERT_EQ(tsm_held_vdevice_get_id(v), 3);
        ASSERT_STREQ(tsm_held_vdevice_get_pci_address(v), DEV0);
        ASSERT_TRUE(tsm_held_vdevice_is_bound(v));
        ASSERT_FALSE(tsm_held_vdevice_is_changing(v));
        ASSERT_FALSE(tsm_held_vdevice_is_gone(v));
        ASSERT_NULL(tsm_connection_info_get_vdevice(info, 1));
}

/* A guest request on the adopted vDevice, as the guest's would go on after the update. */
static void assert_guest_request_works(TsmClient *c) {
        uint8_t req[64], resp[4096];
        size_t len, resp_len = 0;

        len = tdisp_request(DEV0, TDISP_MSG_GET_VERSION, NULL, 0, req, sizeof(req));
        ASSERT_OK(tsm_guest_request(c, 1, 3, "info", req, len, resp, sizeof(resp), &resp_len));
        ASSERT_EQ(tdisp_response_type(resp, resp_len), TDISP_MSG_VERSION);
}

static void count_response(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        unsigned *n = userdata;

        ASSERT_OK(error);
        (*n)++;
}

typedef struct Described {
        unsigned n;
        int error;
        bool holds_bound_dev0;
} Described;

static void on_described(TsmClient *c, int error, const TsmConnectionInfo *info, void *userdata) {
        Described *d = userdata;

        d->n++;
        d->error = error;
        if (info) {
                assert_holds_bound_dev0(info);
                d->holds_bound_dev0 = true;
        }
}

/* cpr-transfer: the old process hands its connection to this one and exits; tsmd keeps the
 * context, its vDevice bound, and releases it only when the new owner closes it. */
TEST(handover_to_another_process) {
        TsmConnectionInfo *info = NULL;
        TsmdInstance t;
        TsmClient *c = NULL;
        TsmTdiState state;
        bool bound = false;
        int fd;

        tsmd_instance_start(&t, NULL);
        hand_over(&t, false, &fd);

        /* The old process is gone, the connection open here: nothing was released. */
        ASSERT_OK(tsm_client_new_from_fd(fd, &info, &c));
        ASSERT_NO_ERROR_NAME(c);
        ASSERT_EQ(tsm_client_get_fd(c), fd); /* taken: the client's socket is fd itself */
        assert_holds_bound_dev0(info);
        info = tsm_connection_info_free(info);

        ASSERT_OK(tsm_device_get_state(c, 1, 3, &state, &bound));
        ASSERT_TRUE(bound);
        ASSERT_EQ(state, TSM_TDI_STATE_CONFIG_LOCKED);
        assert_guest_request_works(c);
        ASSERT_EQ(audit_count(&t, "release"), 0);
        ASSERT_EQ(audit_count(&t, "release-context"), 0);
        ASSERT_EQ(audit_count(&t, "describe-connection"), 1);

        /* Asked again on the adopted client: the same, blocking and from the event loop (tsmd
         * echoing the nonce of each call; a guest request before it answered first). */
        ASSERT_OK(tsm_client_describe(c, &info));
        assert_holds_bound_dev0(info);
        info = tsm_connection_info_free(info);
        {
                uint8_t req[64];
                size_t len = tdisp_request(DEV0, TDISP_MSG_GET_VERSION, NULL, 0, req, sizeof(req));
                unsigned n_requests = 0;
                Described d = {};

                ASSERT_OK(tsm_guest_request_async(c, 1, 3, "info", req, len, 4096, count_response, &n_requests, NULL));
                ASSERT_OK(tsm_client_describe_async(c, on_described, &d, NULL));
                ASSERT_TRUE(pump_until(c, &d.n, 1, WAIT_USEC, NULL));
                ASSERT_EQ(n_requests, 1U);
                ASSERT_EQ(d.error, 0);
                ASSERT_TRUE(d.holds_bound_dev0);
                ASSERT_EQ(audit_count(&t, "describe-connection"), 3);
        }

        /* The new owner's close releases it, as any close of the last copy of the socket. */
        tsm_client_free(c);
        ASSERT_TRUE(fcntl(fd, F_GETFD) < 0); /* closed with the client */
        for (uint64_t deadline = test_now_usec() + WAIT_USEC; audit_count(&t, "release") == 0;) {
                ASSERT_TRUE(test_now_usec() < deadline);
                usleep(50000);
        }
        tsmd_instance_done(&t);
}

/* Events are per process, fixed at connect: after cpr-transfer a watch of the new process's
 * own connections hears nothing of the adopted contexts; one on a connection the old process
 * made and handed on does. */
typedef struct Heard {
        unsigned n_subscribed, n_events;
        char pci_address[32];
} Heard;

static void on_event(TsmClient *c, int error, const TsmEvent *event, void *userdata) {
        Heard *h = userdata;

        if (error < 0)
                return;
        if (!event) {
                h->n_subscribed++;
                return;
        }
        h->n_events++;
        snprintf(h->pci_address, sizeof(h->pci_address), "%s", tsm_event_get_pci_address(event));
}

TEST(handover_events_per_process) {
        TsmdInstance t;
        TsmClient *c = NULL, *adopted_watch = NULL, *own_watch = NULL;
        Heard adopted = {}, own = {};
        int fds[2];

        tsmd_instance_start(&t, "EmulatedDevices=" DEV0 "," DEV1 "\n");
        hand_over(&t, true, fds);
        ASSERT_OK(tsm_client_new_from_fd(fds[0], NULL, &c));
        ASSERT_OK(tsm_client_new_from_fd(fds[1], NULL, &adopted_watch));
        ASSERT_OK(tsm_client_connect(t.guest_socket, &own_watch));
        ASSERT_OK(tsm_client_watch_events(adopted_watch, on_event, &adopted, NULL));
        ASSERT_OK(tsm_client_watch_events(own_watch, on_event, &own, NULL));
        ASSERT_TRUE(pump_until(adopted_watch, &adopted.n_subscribed, 1, WAIT_USEC, NULL));
        ASSERT_TRUE(pump_until(own_watch, &own.n_subscribed, 1, WAIT_USEC, NULL));

        /* A watching client is not handed on: its stream never ends. */
        {
                int fd = -1;

                ASSERT_ERRNO(tsm_client_detach_fd(own_watch, &fd), EBUSY);
                ASSERT_EQ(fd, -1);
        }

        tsmd_instance_reload(&t, "EmulatedDevices=" DEV1 "\n");
        ASSERT_TRUE(pump_until(adopted_watch, &adopted.n_events, 1, WAIT_USEC, NULL));
        ASSERT_STREQ(adopted.pci_address, DEV0);
        /* By then tsmd sent all it would: the new process's own watch heard nothing. */
        (void) pump_until(own_watch, &own.n_events, 1, 500000, NULL);
        ASSERT_EQ(own.n_events, 0);

        tsm_client_free(own_watch);
        tsm_client_free(adopted_watch);
        tsm_client_free(c);
        tsmd_instance_done(&t);
}

/* cpr-exec: the fd kept across exec() (FD_CLOEXEC cleared), adopted by the new program. */
TEST(handover_across_exec) {
        char fd_arg[16];
        TsmdInstance t;
        TsmClient *c = NULL;
        int fd, status;
        pid_t pid;

        tsmd_instance_start(&t, NULL);
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ASSERT_EQ(setup_device(c, DEV0, 3, NULL), 1);

        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                /* The child is the VMM that execs its new binary: the parent's copy of the
                 * socket is closed first, so that only the exec'd program holds it. */
                ASSERT_OK(tsm_client_detach_fd(c, &fd));
                ASSERT_OK(fcntl(fd, F_SETFD, 0));
                snprintf(fd_arg, sizeof(fd_arg), "%d", fd);
                execl(ADOPT_HELPER_PATH, ADOPT_HELPER_PATH, fd_arg, DEV0, (char *) NULL);
                _exit(127);
        }
        /* Not tsm_client_free(): this process's copy goes without a word to tsmd (tsm.h). */
        ASSERT_OK(tsm_client_detach_fd(c, &fd));
        close(fd);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 0);
        tsmd_instance_done(&t);
}

/* cpr-exec keeps the process: a watch the exec'd program makes on a connection of its own hears
 * of the contexts of the connection it adopted (tsmd tells processes by pidfs inode or pid,
 * which exec keeps). */
TEST(handover_across_exec_keeps_events) {
        char fd_arg[16], line[64] = {};
        int fd, status, out[2];
        TsmdInstance t;
        TsmClient *c = NULL;
        FILE *f;
        pid_t pid;

        tsmd_instance_start(&t, "EmulatedDevices=" DEV0 "," DEV1 "\n");
        ASSERT_OK(pipe2(out, O_CLOEXEC));
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                /* The VMM before its cpr-exec: its own connection, context and binding. */
                ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
                ASSERT_EQ(setup_device(c, DEV0, 3, NULL), 1);
                ASSERT_OK(tsm_client_detach_fd(c, &fd));
                ASSERT_OK(fcntl(fd, F_SETFD, 0));
                ASSERT_TRUE(dup2(out[1], STDOUT_FILENO) == STDOUT_FILENO);
                ASSERT_OK(setenv("TSMD_GUEST_SOCKET", t.guest_socket, 1));
                snprintf(fd_arg, sizeof(fd_arg), "%d", fd);
                execl(ADOPT_HELPER_PATH, ADOPT_HELPER_PATH, fd_arg, DEV0, "watch", (char *) NULL);
                _exit(127);
        }
        close(out[1]);
        f = fdopen(out[0], "r");
        ASSERT_NOT_NULL(f);
        ASSERT_NOT_NULL(fgets(line, sizeof(line), f));
        ASSERT_STREQ(line, "subscribed\n");
        tsmd_instance_reload(&t, "EmulatedDevices=" DEV1 "\n");
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 0);
        fclose(f);
        tsmd_instance_done(&t);
}

/* Nothing under way may be handed on: a guest request awaiting its reply makes the detach
 * -EBUSY, the client as it was; once answered, the detach succeeds and the adopter goes on. */
static void on_response(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        unsigned *n = userdata;

        ASSERT_OK(error);
        (*n)++;
}

TEST(detach_refused_while_call_pending) {
        uint8_t req[64];
        TsmdInstance t;
        TsmClient *c = NULL, *d = NULL;
        unsigned answered = 0;
        size_t len;
        int fd = -1;

        tsmd_instance_start(&t, "EmulatedLatencyUSec=200000\n");
        ASSERT_OK(tsm_client_connect(t.guest_socket, &c));
        ASSERT_EQ(setup_device(c, DEV0, 3, NULL), 1);
        len = tdisp_request(DEV0, TDISP_MSG_GET_VERSION, NULL, 0, req, sizeof(req));
        ASSERT_OK(tsm_guest_request_async(c, 1, 3, "info", req, len, 4096, on_response, &answered, NULL));

        ASSERT_ERRNO(tsm_client_detach_fd(c, &fd), EBUSY);
        ASSERT_EQ(fd, -1);
        ASSERT_TRUE(pump_until(c, &answered, 1, WAIT_USEC, NULL));
        assert_guest_request_works(c); /* the client is as it was */

        ASSERT_OK(tsm_client_detach_fd(c, &fd));
        ASSERT_OK(tsm_client_new_from_fd(fd, NULL, &d));
        assert_guest_request_works(d);
        tsm_client_free(d);
        tsmd_instance_done(&t);
}

TEST_MAIN();
