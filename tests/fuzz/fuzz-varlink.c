/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the Varlink framer and message parsers: the input is fed, in small
 * chunks so reads break up, both as calls into a server connection and as replies into a
 * client waiting for a "more" call (as systemd's fuzz-varlink does). Some chunks carry fds
 * (SCM_RIGHTS; the chunk's first byte says how many), as a VMM's calls do, so that fds parked
 * on unfinished messages, batches split across reads, the per-message and per-uid limits and
 * the fds of calls and replies are fuzzed too: every run must end with the fds it began with.
 */

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>

#include "json-util.h"
#include "varlink-client.h"
#include "varlink-idl.h"
#include "varlink-server.h"

#define CHUNK 143

static const char fuzz_idl[] =
        "interface io.tsmd.Fuzz\n"
        "type Inner (a: ?int, b: ?[]string, c: ?[string]float)\n"
        "method Echo(text: string, inner: ?Inner, kind: ?(x, y)) -> (text: string)\n"
        "# [Requires 'more' flag]\n"
        "method Stream(n: int) -> (i: int)\n"
        "method Pass(fileDescriptor: ?int) -> (n: int, fileDescriptor: ?int)\n";

static VarlinkInterface *fuzz_interface;

/* The server only logs a reply its IDL does not declare, once per call: one from the harness
 * itself would fill the run's output with those and hide a real one. It stops the run here. */
static json_object *checked(const char *method, json_object *o) {
        const VarlinkSymbol *m;

        if (!fuzz_interface && varlink_interface_parse(fuzz_idl, &fuzz_interface, NULL, NULL) < 0)
                abort();
        m = varlink_interface_find_method(fuzz_interface, method);
        if (!o || !m || varlink_method_validate_output(m, o, NULL) < 0)
                abort();
        return o;
}

static int m_echo(VarlinkCall *call, json_object *p, void *userdata) {
        json_object *o = json_object_new_object();

        json_object_add(o, "text", json_object_get(json_object_object_get(p, "text")));
        return varlink_call_reply(call, checked("Echo", o));
}

static int m_stream(VarlinkCall *call, json_object *p, void *userdata) {
        int64_t n = json_object_get_int64(json_object_object_get(p, "n"));
        json_object *o;

        for (int64_t i = 0; i < MIN(n, (int64_t) 3); i++) {
                o = json_object_new_object();
                json_object_add(o, "i", json_object_new_int64(i));
                (void) varlink_call_notify(call, checked("Stream", o));
        }
        o = json_object_new_object();
        json_object_add(o, "i", json_object_new_int64(n));
        return varlink_call_reply(call, checked("Stream", o));
}

/* The call's fds counted; the one it names, if any, sent back with the reply. */
static int m_pass(VarlinkCall *call, json_object *p, void *userdata) {
        json_object *o = json_object_new_object();
        int fd;

        json_object_add(o, "n", json_object_new_int64((int64_t) varlink_call_get_n_fds(call)));
        if (json_object_object_get(p, "fileDescriptor")) {
                fd = varlink_call_get_fd_parameter(call, p, "fileDescriptor");
                if (fd < 0) {
                        json_object_put(o);
                        return varlink_call_error_invalid_parameter(call, "fileDescriptor");
                }
                fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (fd >= 0)
                        json_object_add(o, "fileDescriptor", json_object_new_int(varlink_call_push_fd(call, fd)));
        }
        return varlink_call_reply(call, checked("Pass", o));
}

/* Sends len bytes of data with n fds (dups of fd_source), as one sendmsg(). */
static ssize_t send_with_fds(int fd, const uint8_t *data, size_t len, int fd_source, unsigned n) {
        char control[CMSG_SPACE(8 * sizeof(int))] = {};
        struct iovec iov = { .iov_base = (void *) data, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        int fds[8];

        if (n > 0 && fd_source >= 0) {
                struct cmsghdr *cm;

                for (unsigned i = 0; i < n; i++)
                        fds[i] = fd_source;
                mh.msg_control = control;
                mh.msg_controllen = CMSG_SPACE(n * sizeof(int));
                cm = CMSG_FIRSTHDR(&mh);
                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(n * sizeof(int));
                memcpy(CMSG_DATA(cm), fds, n * sizeof(int));
        }
        return sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void feed(int fd, struct event_base *base, VarlinkClient *client, const uint8_t *data, size_t size,
                 int fd_source) {
        for (size_t off = 0; off < size;) {
                /* A chunk that begins a message ('{') carries an fd, as a VMM's call may; one
                 * whose first byte has its low five bits set carries (its top three bits + 1). */
                unsigned n_fds = data[off] == '{' ? 1 : (data[off] & 0x1f) == 0x1f ? (data[off] >> 5) + 1 : 0;
                ssize_t k = send_with_fds(fd, data + off, MIN((size_t) CHUNK, size - off), fd_source, n_fds);
                if (k < 0 && errno != EAGAIN)
                        return;
                if (k > 0)
                        off += (size_t) k;
                if (base)
                        (void) event_base_loop(base, EVLOOP_NONBLOCK);
                if (client && varlink_client_process(client) < 0)
                        return;
                if (k < 0 && !base && !client)
                        return;
        }
}

static int on_reply(VarlinkClient *c, json_object *p, const char *error, bool continues, void *userdata) {
        return 0;
}

static unsigned count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        unsigned n = 0;

        if (!d)
                abort();
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        struct event_base *base;
        VarlinkServer *server = NULL;
        VarlinkClient *client = NULL;
        int sv[2], cv[2], fd_source;
        unsigned n_fds_before;

        if (size > 64 * 1024)
                return 0;
        n_fds_before = count_fds();

        /* Small limits so the fuzzer reaches them. */
        l.max_message_size = 4096;
        l.max_output_size = 8192;
        l.max_depth = 16;
        l.max_pending_calls = 4;
        l.max_fds_per_message = 4;
        l.max_fds_per_uid = 12;

        base = event_base_new();
        if (!base || varlink_server_new(base, &server) < 0 || varlink_server_set_limits(server, &l) < 0 ||
            varlink_server_add_interface(server, fuzz_idl) < 0 ||
            varlink_server_bind_method(server, "io.tsmd.Fuzz.Echo", m_echo) < 0 ||
            varlink_server_bind_method(server, "io.tsmd.Fuzz.Stream", m_stream) < 0 ||
            varlink_server_bind_method(server, "io.tsmd.Fuzz.Pass", m_pass) < 0)
                abort();
        fd_source = open("/dev/null", O_RDONLY | O_CLOEXEC);

        /* Server side: the input is a stream of calls. */
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
                abort();
        if (varlink_server_add_connection(server, sv[0]) >= 0) {
                feed(sv[1], base, NULL, data, size, fd_source);
                (void) shutdown(sv[1], SHUT_WR);
                for (int i = 0; i < 8; i++) {
                        char buf[4096];
                        (void) event_base_loop(base, EVLOOP_NONBLOCK);
                        while (recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT) > 0)
                                ;
                }
        }
        close(sv[1]);

        /* Client side: the input is the reply stream to a "more" call. */
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, cv) < 0)
                abort();
        if (varlink_client_new_from_fd(cv[0], &client) >= 0 && varlink_client_set_limits(client, &l) >= 0 &&
            varlink_client_call_async(client, "io.tsmd.Fuzz.Stream", NULL, VARLINK_CALL_MORE, on_reply, NULL) >= 0) {
                feed(cv[1], NULL, client, data, size, fd_source);
                (void) shutdown(cv[1], SHUT_WR);
                (void) varlink_client_process(client);
        }
        varlink_client_free(client);
        close(cv[1]);

        varlink_server_free(server);
        (void) event_base_loop(base, EVLOOP_NONBLOCK);
        event_base_free(base);
        if (fd_source >= 0)
                close(fd_source);
        if (count_fds() != n_fds_before)
                abort(); /* an fd a client sent, or the harness's, left open */
        return 0;
}
