/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for libtsm, the library a VMM links, against a tsmd that answers anything: a
 * compromised worker is another user than the VMM, and libtsm's reply parsing (Varlink framing,
 * JSON, every reply's fields, error names and parameters, fds attached to replies, the event
 * stream) is what stands between them. The peer is a socket the fuzzer writes replies into
 * before each call; libtsm's sources are compiled into the fuzzer for coverage feedback.
 * Checks what must hold, not only the absence of crashes:
 *   - no fd is left open once the client is freed, whatever came attached to what;
 *   - every destroy function runs exactly once, every registered callback before it;
 *   - what a call hands out is what it promises: a valid fd, a response no longer than asked
 *     for, scopes that can be found by their names, events with their strings;
 *   - an error message is short and has no control characters;
 *   - everything libtsm sends is a JSON object naming a method.
 *
 * Input: records of an op byte, a u16 length (little-endian) and that many bytes, a message
 * from "tsmd" (its terminating NUL added; none if empty). Op bits 0-3 choose the call made after the message
 * is written (see run_op()); bit 4 attaches an fd to the message; bit 5 leaves the NUL off;
 * bit 6 only writes the message (several replies for one call); bit 7 makes the next callback
 * free the client, and for 9 and 11, which run none themselves, chooses DescribeConnection's
 * call instead (OP_DESCRIBE: asynchronous, blocking). Its reply echoes the call's nonce, which libtsm
 * takes from getrandom(): here the fuzzer's, FUZZ_NONCE while an input runs, so that a reply
 * written before the call can answer it (seeds: corpus/libtsm/describe-*). For 5 and 7 (blocking
 * calls, as 3, 6 and 8 are) it chooses the calls that take back guest requests not sent yet
 * instead (OP_CANCEL: 5 a vDevice's, the first cancelled callback freeing the client; 7 all,
 * none freeing it), so that a message taken back whole or not at all is held to what libtsm
 * sends (seeds: corpus/libtsm/cancel-*). For 3, 4, 6, 8 and 12 it chooses the asynchronous
 * device calls (OP_ASYNC: detach, or the context's close after a message of odd length, attach
 * with an fd, bind, unbind, get state; a callback run
 * within the same record frees the client), for 1 the window of calls in flight
 * (OP_WINDOW: 1 + the message's length % 16), so that held calls released mid-stream are
 * fuzzed too (seeds: corpus/libtsm/device-async-*).
 * Runs in: tests (fuzzing builds only).
 */

#include <dirent.h>
#include <endian.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "escape.h"
#include "fuzz.h"
#include "libtsm-internal.h"

#define INPUT_MAX (64U * 1024U)
#define OP_FD (1U << 4)
#define OP_NO_NUL (1U << 5)
#define OP_WRITE_ONLY (1U << 6)
#define OP_FREE_IN_CALLBACK (1U << 7)
#define OP_DESCRIBE OP_FREE_IN_CALLBACK
#define OP_CANCEL OP_FREE_IN_CALLBACK
#define OP_ASYNC OP_FREE_IN_CALLBACK
#define OP_WINDOW OP_FREE_IN_CALLBACK
#define FUZZ_NONCE 4242U
#define RESPONSE_SIZE 256U
#define TOKEN "0123456789abcdef0123456789abcdef"

typedef struct Fuzz {
        TsmClient *client; /* NULL once freed */
        int listen_fd, server_fd;
        bool free_in_callback;
        unsigned registered, destroyed;
        uint64_t context; /* the last one a call handed out */
        char *sent;       /* what libtsm sent, not yet a whole message */
        size_t n_sent;
} Fuzz;

static char socket_path[sizeof(((struct sockaddr_un *) NULL)->sun_path)];
static bool running_input;

/* libtsm's nonce source, DescribeConnection's (tsm-describe.c nonce_new()): known while an input
 * runs. libFuzzer's own seeding, before, gets the kernel's randomness. */
ssize_t getrandom(void *buf, size_t len, unsigned flags) {
        uint64_t n = FUZZ_NONCE;

        if (!running_input)
                return syscall(SYS_getrandom, buf, len, flags);
        for (size_t i = 0; i < len; i += sizeof(n))
                memcpy((uint8_t *) buf + i, &n, MIN(len - i, sizeof(n)));
        return (ssize_t) len;
}

/* Open fds, the listing's own not counted. */
static unsigned count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        unsigned n = 0;

        CHECK(d);
        while (readdir(d))
                n++;
        CHECK(closedir(d) == 0);
        return n;
}

static void remove_socket(void) {
        (void) unlink(socket_path);
}

static int listen_socket(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (!socket_path[0]) {
                snprintf(socket_path, sizeof(socket_path), "/tmp/fuzz-libtsm.%d.sock", (int) getpid());
                CHECK(atexit(remove_socket) == 0);
        }
        (void) unlink(socket_path);
        strcpy(sa.sun_path, socket_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0);
        CHECK(bind(fd, (struct sockaddr *) &sa, sizeof(sa)) >= 0);
        CHECK(listen(fd, 4) >= 0);
        return fd;
}

/* The peer's end of the client's newest connection (reconnect makes one). */
static void accept_connection(Fuzz *f) {
        int fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

        if (fd < 0)
                return; /* none made */
        safe_close(f->server_fd);
        f->server_fd = fd;
        f->n_sent = 0;
}

/* Whatever libtsm sent: each message a JSON object with a method. */
static void drain(Fuzz *f) {
        char buf[16384];

        if (f->server_fd < 0)
                return;
        for (;;) {
                ssize_t n = read(f->server_fd, buf, sizeof(buf));
                size_t start = 0;

                if (n <= 0)
                        return;
                f->sent = realloc(f->sent, f->n_sent + (size_t) n);
                CHECK(f->sent);
                memcpy(f->sent + f->n_sent, buf, (size_t) n);
                f->n_sent += (size_t) n;
                for (size_t i = 0; i < f->n_sent; i++) {
                        json_object *o, *method;

                        if (f->sent[i] != 0)
                                continue;
                        o = json_tokener_parse(f->sent + start);
                        CHECK(json_object_is_type(o, json_type_object));
                        CHECK(json_object_object_get_ex(o, "method", &method) &&
                              json_object_is_type(method, json_type_string));
                        json_object_put(o);
                        start = i + 1;
                }
                memmove(f->sent, f->sent + start, f->n_sent - start);
                f->n_sent -= start;
        }
}

static void write_message(Fuzz *f, const uint8_t *msg, size_t len, bool nul, bool with_fd) {
        union {
                struct cmsghdr cmsg;
                uint8_t b[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct iovec iov[2] = { { .iov_base = (void *) msg, .iov_len = len },
                                { .iov_base = (void *) "", .iov_len = nul } };
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
        int fd = -EBADF;

        if (f->server_fd < 0 || len == 0)
                return;
        if (with_fd) {
                fd = open("/dev/null", O_RDWR | O_CLOEXEC);
                CHECK(fd >= 0);
                mh.msg_control = &control;
                mh.msg_controllen = sizeof(control);
                control.cmsg.cmsg_level = SOL_SOCKET;
                control.cmsg.cmsg_type = SCM_RIGHTS;
                control.cmsg.cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(&control.cmsg), &fd, sizeof(int));
        }
        /* Non-blocking: a reply the client does not read may fill the socket. */
        (void) sendmsg(f->server_fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        safe_close(fd);
}

static void check_error_state(Fuzz *f) {
        const char *name, *message;

        if (!f->client)
                return;
        name = tsm_client_get_error_name(f->client);
        message = tsm_client_get_error_message(f->client);
        CHECK(!name == !message);
        if (!message)
                return;
        CHECK(strlen(message) < TSM_ERROR_MESSAGE_MAX);
        /* Safe for a terminal: valid UTF-8, no C0, DEL or C1 control. */
        for (const unsigned char *p = (const unsigned char *) message; *p;) {
                size_t n = utf8_sequence_len(p);

                CHECK(n > 0 && *p >= 0x20 && *p != 0x7f && !(n == 2 && p[0] == 0xc2 && p[1] <= 0x9f));
                p += n;
        }
}

/* ---- callbacks ------------------------------------------------------------------------- */

static void check_device_info(TsmDeviceInfo *info);

static void maybe_free(Fuzz *f, TsmClient *c) {
        CHECK(c == f->client);
        if (f->free_in_callback) {
                f->free_in_callback = false;
                tsm_client_free(c);
                f->client = NULL;
        }
}

static void on_response(TsmClient *c, int error, const void *response, size_t len, void *userdata) {
        Fuzz *f = userdata;

        CHECK(error <= 0);
        CHECK(error < 0 || (response && len <= RESPONSE_SIZE));
        CHECK(error == 0 || (!response && len == 0));
        maybe_free(f, c);
}

static void on_event(TsmClient *c, int error, const TsmEvent *event, void *userdata) {
        Fuzz *f = userdata;

        CHECK(error <= 0);
        CHECK(!(error < 0 && event));
        if (event) {
                CHECK(tsm_event_get_kind_string(event) && tsm_event_get_pci_address(event));
                CHECK(tsm_event_get_context(event) <= (uint64_t) INT64_MAX);
                (void) tsm_event_get_kind(event);
                (void) tsm_event_get_state(event);
        }
        maybe_free(f, c);
}

static void on_destroy(void *userdata) {
        Fuzz *f = userdata;

        f->destroyed++;
        CHECK(f->destroyed <= f->registered);
}

/* What a DescribeConnection answered: every vDevice follows the contexts in order, under the
 * handle of one of them. */
static void check_connection_info(const TsmConnectionInfo *info) {
        size_t n = tsm_connection_info_get_n_contexts(info), nv = tsm_connection_info_get_n_vdevices(info), k = 0;

        for (size_t i = 0; i < nv; i++) {
                const TsmHeldVDevice *v = tsm_connection_info_get_vdevice(info, i);

                CHECK(v && tsm_held_vdevice_get_pci_address(v));
                while (k < n && tsm_connection_info_get_context(info, k) != tsm_held_vdevice_get_context(v))
                        k++;
                CHECK(k < n);
                CHECK(tsm_held_vdevice_get_context(v) <= (uint64_t) INT64_MAX);
                (void) tsm_held_vdevice_get_id(v);
                (void) tsm_held_vdevice_is_bound(v);
                (void) tsm_held_vdevice_is_changing(v);
                (void) tsm_held_vdevice_is_gone(v);
        }
        CHECK(!tsm_connection_info_get_vdevice(info, nv));
        CHECK(tsm_connection_info_get_context(info, n) == 0);
}

static void on_describe(TsmClient *c, int error, const TsmConnectionInfo *info, void *userdata) {
        Fuzz *f = userdata;

        CHECK(error <= 0);
        CHECK(!info == (error < 0));
        if (info)
                check_connection_info(info);
        maybe_free(f, c);
}

static void on_attached(TsmClient *c, int error, TsmDeviceInfo *info, void *userdata) {
        Fuzz *f = userdata;

        CHECK(error <= 0);
        CHECK(!info == (error < 0));
        if (info)
                check_device_info(info); /* the callback's: freed there */
        maybe_free(f, c);
}

static void on_done(TsmClient *c, int error, void *userdata) {
        Fuzz *f = userdata;

        CHECK(error <= 0);
        maybe_free(f, c);
}

static void on_state(TsmClient *c, int error, TsmTdiState state, bool bound, void *userdata) {
        Fuzz *f = userdata;

        CHECK(error <= 0);
        CHECK(error == 0 || (state == _TSM_TDI_STATE_INVALID && !bound));
        CHECK(state == _TSM_TDI_STATE_INVALID || tsm_tdi_state_to_string(state));
        maybe_free(f, c);
}

static int on_json_reply(TsmClient *c, const char *reply, bool continues, void *userdata) {
        Fuzz *f = userdata;
        json_object *o = json_tokener_parse(reply);

        CHECK(json_object_is_type(o, json_type_object));
        json_object_put(o);
        maybe_free(f, c);
        return 0;
}

/* ---- calls ----------------------------------------------------------------------------- */

static void check_fd(int r, int fd) {
        if (r < 0)
                return;
        CHECK(fd >= 0 && fcntl(fd, F_GETFD) >= 0);
        safe_close(fd);
}

static void check_device_info(TsmDeviceInfo *info) {
        size_t n = tsm_device_info_get_n_scopes(info);

        CHECK(tsm_device_info_get_backend(info) && tsm_device_info_get_tsm(info) && tsm_device_info_get_uapi(info));
        for (size_t i = 0; i < n; i++) {
                const TsmScope *s = tsm_device_info_get_scope(info, i), *found;

                CHECK(s && tsm_scope_get_name(s) && tsm_scope_get_description(s));
                found = tsm_device_info_find_scope(info, tsm_scope_get_name(s));
                CHECK(found && streq(tsm_scope_get_name(found), tsm_scope_get_name(s)));
                (void) tsm_scope_get_number(s);
                (void) tsm_scope_get_max_request_size(s);
                (void) tsm_scope_get_max_response_size(s);
                (void) tsm_scope_is_allowed(s);
        }
        CHECK(!tsm_device_info_get_scope(info, n));
        tsm_device_info_free(info);
}

/* An asynchronous registration: counted when it took. */
static int registered(Fuzz *f, int r) {
        if (r >= 0)
                f->registered++;
        return r;
}

static int run_op(Fuzz *f, unsigned op, size_t len_written) {
        TsmClient *c = f->client;
        uint8_t resp[RESPONSE_SIZE];
        TsmDeviceInfo *info = NULL;
        TsmConnectionInfo *held = NULL;
        TsmTdiState state;
        char *text = NULL;
        size_t len = 0;
        bool bound;
        int r, fd = -EBADF;

        /* 9 and 11 run no callback: the bit that would free the client in one chooses another call;
         * so it does for 5 and 7, blocking calls as others are, for 3, 4, 6, 8 and 12 (their
         * asynchronous forms) and 1. */
        switch (op & (0xf | OP_FREE_IN_CALLBACK)) {
        case 0:
        case 0 | OP_FREE_IN_CALLBACK:
                r = tsm_context_open(c, &f->context, &fd);
                check_fd(r, fd);
                return r;
        case 1:
                fd = open("/dev/null", O_RDWR | O_CLOEXEC);
                CHECK(fd >= 0);
                r = tsm_context_adopt(c, fd, &f->context);
                safe_close(fd);
                return r;
        case 2:
        case 2 | OP_FREE_IN_CALLBACK:
                r = tsm_context_reclaim(c, TOKEN, &f->context, &fd);
                check_fd(r, fd);
                return r;
        case 3:
                return tsm_context_close(c, f->context & INT64_MAX);
        case 4:
                r = tsm_device_attach(c, f->context & INT64_MAX, 1, "0000:01:00.0", -1, &info);
                if (r >= 0)
                        check_device_info(info);
                return r;
        case 5:
                return tsm_device_detach(c, f->context & INT64_MAX, 1);
        case 6:
                return tsm_device_bind(c, f->context & INT64_MAX, 1, &state);
        case 7:
                return tsm_device_get_state(c, f->context & INT64_MAX, 1, &state, &bound);
        case 8:
                r = tsm_guest_request(c, f->context & INT64_MAX, 1, "info", "x", 1, resp, sizeof(resp), &len);
                CHECK(r < 0 || len <= sizeof(resp));
                return r;
        case 5 | OP_CANCEL:
                r = tsm_device_cancel_requests(c, f->context & INT64_MAX, 1);
                return MIN(r, 1);
        case 7 | OP_CANCEL:
                f->free_in_callback = false;
                r = tsm_client_cancel_requests(c);
                return MIN(r, 1);
        case 9 | OP_DESCRIBE:
                return registered(f, tsm_client_describe_async(c, on_describe, f, on_destroy));
        case 3 | OP_ASYNC:
                if (len_written % 2)
                        return registered(f, tsm_context_close_async(c, f->context & INT64_MAX, on_done, f, on_destroy));
                return registered(f, tsm_device_detach_async(c, f->context & INT64_MAX, 1, on_done, f, on_destroy));
        case 4 | OP_ASYNC:
                fd = open("/dev/null", O_RDWR | O_CLOEXEC);
                CHECK(fd >= 0);
                r = tsm_device_attach_async(c, f->context & INT64_MAX, 1, "0000:01:00.0", fd, on_attached, f,
                                            on_destroy);
                safe_close(fd); /* a duplicate went with the call */
                return registered(f, r);
        case 6 | OP_ASYNC:
                return registered(f, tsm_device_bind_async(c, f->context & INT64_MAX, 1, on_state, f, on_destroy));
        case 8 | OP_ASYNC:
                return registered(f, tsm_device_unbind_async(c, f->context & INT64_MAX, 1, on_state, f, on_destroy));
        case 12 | OP_ASYNC:
                return registered(f,
                                  tsm_device_get_state_async(c, f->context & INT64_MAX, 1, on_state, f, on_destroy));
        case 1 | OP_WINDOW:
                f->free_in_callback = false;
                CHECK(tsm_client_set_max_calls_in_flight(c, 1 + (unsigned) (len_written % 16)) == 0);
                return 0;
        case 11 | OP_DESCRIBE:
                r = tsm_client_describe(c, &held);
                if (r >= 0) {
                        check_connection_info(held);
                        tsm_connection_info_free(held);
                }
                return r;
        case 9:
                r = tsm_guest_request_async(c, f->context & INT64_MAX, 1, "info", "x", 1, sizeof(resp), on_response, f,
                                            on_destroy);
                if (r >= 0)
                        f->registered++;
                return r;
        case 10:
        case 10 | OP_FREE_IN_CALLBACK:
                r = tsm_client_watch_events(c, on_event, f, on_destroy);
                if (r >= 0)
                        f->registered++;
                return r;
        case 11:
                r = tsm_context_get_reclaim_token(c, f->context, &text);
                CHECK(r < 0 || text);
                free(text);
                return r;
        case 12:
                r = tsm_client_call_json(c, "io.tsmd.Guest.GetDeviceState", "{\"context\":1,\"vdeviceId\":1}", &text);
                CHECK(r < 0 || text);
                free(text);
                return r;
        case 13:
        case 13 | OP_FREE_IN_CALLBACK:
                return tsm_client_call_more_json(c, "io.tsmd.Admin.FollowAudit", NULL, on_json_reply, f);
        case 14:
        case 14 | OP_FREE_IN_CALLBACK:
                r = tsm_client_reconnect(c);
                accept_connection(f);
                return r;
        default: /* 15, with or without the bit */
                return tsm_client_process(c);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Fuzz f = { .listen_fd = -EBADF, .server_fd = -EBADF };
        unsigned baseline;

        if (size > INPUT_MAX)
                return 0;
        running_input = true;
        baseline = count_fds();

        f.listen_fd = listen_socket();
        CHECK(tsm_client_connect(socket_path, &f.client) >= 0);
        /* Blocking calls whose reply never comes give up soon. */
        CHECK(tsm_client_set_timeout(f.client, 2000) >= 0);
        accept_connection(&f);
        CHECK(f.server_fd >= 0);

        for (size_t pos = 0; pos + 3 <= size && f.client;) {
                uint8_t op = data[pos];
                uint16_t len;
                int r;

                memcpy(&len, data + pos + 1, sizeof(len));
                len = le16toh(len);
                pos += 3;
                len = (uint16_t) MIN((size_t) len, size - pos);

                write_message(&f, data + pos, len, !(op & OP_NO_NUL), op & OP_FD);
                pos += len;
                if (op & OP_WRITE_ONLY)
                        continue;
                f.free_in_callback = op & OP_FREE_IN_CALLBACK;
                r = run_op(&f, op, len);
                CHECK(r <= 1);
                /* Gone exactly when a callback freed it. */
                CHECK((r == -ECANCELED || (r == 1 && (op & 0xf) == 15)) || f.client);
                check_error_state(&f);
                drain(&f);
        }

        f.client = tsm_client_free(f.client);
        CHECK(f.destroyed == f.registered);
        safe_close(f.server_fd);
        safe_close(f.listen_fd);
        free(f.sent);
        CHECK(count_fds() == baseline);
        running_input = false;
        return 0;
}
