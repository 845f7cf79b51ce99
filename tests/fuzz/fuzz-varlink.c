/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the Varlink framer and message parsers: the input is fed, in small
 * chunks so reads break up, both as calls into a server connection and as replies into a
 * client waiting for a "more" call (as systemd's fuzz-varlink does).
 */

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
        "method Stream(n: int) -> (i: int)\n";

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

static void feed(int fd, struct event_base *base, VarlinkClient *client, const uint8_t *data, size_t size) {
        for (size_t off = 0; off < size;) {
                ssize_t k = send(fd, data + off, MIN((size_t) CHUNK, size - off), MSG_DONTWAIT | MSG_NOSIGNAL);
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        VarlinkLimits l = VARLINK_LIMITS_DEFAULT;
        struct event_base *base;
        VarlinkServer *server = NULL;
        VarlinkClient *client = NULL;
        int sv[2], cv[2];

        if (size > 64 * 1024)
                return 0;

        /* Small limits so the fuzzer reaches them. */
        l.max_message_size = 4096;
        l.max_output_size = 8192;
        l.max_depth = 16;
        l.max_pending_calls = 4;

        base = event_base_new();
        if (!base || varlink_server_new(base, &server) < 0 || varlink_server_set_limits(server, &l) < 0 ||
            varlink_server_add_interface(server, fuzz_idl) < 0 ||
            varlink_server_bind_method(server, "io.tsmd.Fuzz.Echo", m_echo) < 0 ||
            varlink_server_bind_method(server, "io.tsmd.Fuzz.Stream", m_stream) < 0)
                abort();

        /* Server side: the input is a stream of calls. */
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
                abort();
        if (varlink_server_add_connection(server, sv[0]) >= 0) {
                feed(sv[1], base, NULL, data, size);
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
                feed(cv[1], NULL, client, data, size);
                (void) shutdown(cv[1], SHUT_WR);
                (void) varlink_client_process(client);
        }
        varlink_client_free(client);
        close(cv[1]);

        varlink_server_free(server);
        (void) event_base_loop(base, EVLOOP_NONBLOCK);
        event_base_free(base);
        return 0;
}
