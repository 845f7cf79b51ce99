/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The Varlink protocol at the byte level against the real tsmd: bytes no client library would
 * send (our own would hide a server's mistake behind its encoder), each case in a table with
 * the exact answer it must get (or a hang-up without one), and tsmd serving a good call on a new
 * connection after each. What is checked, and why that answer (varlink.org's spec, sd-varlink's
 * behaviour, README.md "Protocol behaviour worth knowing"):
 *  - org.varlink.service.GetInterfaceDescription on each socket returns the IDL file tsmd
 *    embedded, byte for byte, for each interface that socket serves, and InterfaceNotFound for
 *    any other; GetInfo lists exactly that set;
 *  - an int is a JSON number without fraction or exponent that fits int64 (1.0, 1e3 and 2^64
 *    are numbers, but no int: InvalidParameter naming the field, the connection kept);
 *    what is not JSON (0x10, 01, NaN) is a malformed message: io.tsmd.MalformedMessage, then a
 *    hang-up;
 *  - a well-formed object that is no valid call: InvalidParameter naming its key, then a
 *    hang-up; framing (split, batched, surrounding whitespace) changes nothing;
 *  - a message refused as a whole (malformed, nested too deep, too many values, too large, too
 *    slow) is told by name, with the limit it broke, before the hang-up; one left unfinished
 *    at the end of the stream gets a bare hang-up.
 * Runs in: tests.
 */

#include <poll.h>
#include <sys/socket.h>

#include "tsmd-fixture.h"
#include "varlink-errors.h"
#include "varlink-idl.h"

#define G "io.tsmd.Guest."
#define INVALID(p) "{\"error\":\"org.varlink.service.InvalidParameter\",\"parameters\":{\"parameter\":\"" p "\"}}"
#define NO_CONTEXT(n) "{\"error\":\"io.tsmd.Guest.NoSuchContext\",\"parameters\":{\"context\":" n "}}"
/* What ends a connection for its message (README.md), told before the hang-up. */
#define TOLD(name, params) "{\"error\":\"io.tsmd." name "\",\"parameters\":" params "}"
#define MALFORMED TOLD("MalformedMessage", "{}")
#define NOT_FOUND(i) "{\"error\":\"org.varlink.service.InterfaceNotFound\",\"parameters\":{\"interface\":\"" i "\"}}"
#define CALL(method, params) "{\"method\":\"" method "\",\"parameters\":" params "}"
#define CLOSE(ctx) CALL(G "CloseContext", "{\"context\":" ctx "}")
#define GOOD_CALL CLOSE("987654321")
#define GOOD_REPLY NO_CONTEXT("987654321")

typedef enum Socket {
        SOCKET_GUEST, /* io.tsmd.Guest and io.tsmd.Service */
        SOCKET_ALL,   /* every interface, io.tsmd.Admin among them */
} Socket;

typedef enum After {
        AFTER_ALIVE,  /* the connection serves the next call */
        AFTER_CLOSED, /* tsmd hangs up after its answer */
} After;

typedef struct RawCase {
        const char *what;
        Socket socket;
        const char *bytes; /* sent with its terminating NUL */
        const char *reply; /* the exact answer */
        After after;
} RawCase;

static int raw_open(Tsmd *t, Socket s) {
        const char *path = s == SOCKET_GUEST ? t->guest_socket : t->socket;
        int fd = tsmd_raw_connect(path);

        if (fd < 0)
                TEST_FAIL("connecting to %s: %s", path, strerror(-fd));
        return fd;
}

static void raw_send(int fd, const void *p, size_t n) {
        if (!tsmd_raw_send(fd, p, n))
                TEST_FAIL("send: tsmd hung up");
}

static void expect_reply(int fd, const char *what, const char *want) {
        _cleanup_free_ char *m = tsmd_raw_recv(fd, TSMD_WAIT_USEC);

        if (!m)
                TEST_FAIL("%s: tsmd hung up instead of answering %s", what, want);
        if (!streq(m, want))
                TEST_FAIL("%s: expected %s, got %.400s", what, want, m);
}

static void expect_hangup(int fd, const char *what) {
        _cleanup_free_ char *m = tsmd_raw_recv(fd, TSMD_WAIT_USEC);

        if (m)
                TEST_FAIL("%s: expected a hang-up, got %s", what, m);
}

static void expect_alive(int fd, const char *what) {
        raw_send(fd, GOOD_CALL, sizeof(GOOD_CALL));
        expect_reply(fd, what, GOOD_REPLY);
}

/* bytes[0..len) on a new connection, then what the case expects, then a good call on a new
 * connection to the same socket. */
static void run_bytes(Tsmd *t, Socket s, const char *what, const void *bytes, size_t len, const char *reply,
                      After after) {
        int fd = raw_open(t, s);

        raw_send(fd, bytes, len);
        expect_reply(fd, what, reply);
        if (after == AFTER_CLOSED)
                expect_hangup(fd, what);
        else
                expect_alive(fd, what);
        close(fd);

        fd = raw_open(t, s);
        expect_alive(fd, strf("%s (then a new connection)", what));
        close(fd);
}

static void run_cases(Tsmd *t, const RawCase *cases, size_t n) {
        for (size_t i = 0; i < n; i++) {
                const RawCase *c = cases + i;

                run_bytes(t, c->socket, c->what, c->bytes, strlen(c->bytes) + 1, c->reply, c->after);
        }
}

static char *read_text(const char *path) {
        FILE *f = fopen(path, "re");
        char *text = NULL;
        size_t size = 0;
        ssize_t n;

        if (!f)
                TEST_FAIL("%s: %s", path, strerror(errno));
        n = getdelim(&text, &size, '\0', f);
        if (n < 0)
                TEST_FAIL("reading %s: %s", path, strerror(errno));
        fclose(f);
        ASSERT_EQ(strlen(text), (size_t) n); /* no NUL in an IDL file */
        return text;
}

/* ---- introspection ----------------------------------------------------------------------- */

static const char *const all_interfaces[] = {
        "org.varlink.service", "io.tsmd", "io.tsmd.Guest", "io.tsmd.Service", "io.tsmd.Admin",
};

static bool socket_serves(Socket s, const char *interface) {
        return s == SOCKET_ALL || !streq(interface, "io.tsmd.Admin");
}

static json_object *raw_call_ok(Tsmd *t, Socket s, const char *call) {
        _cleanup_free_ char *m = NULL;
        json_object *o, *p;
        int fd = raw_open(t, s);

        raw_send(fd, call, strlen(call) + 1);
        m = tsmd_raw_recv(fd, TSMD_WAIT_USEC);
        close(fd);
        if (!m)
                TEST_FAIL("%s: tsmd hung up", call);
        o = json_tokener_parse(m);
        ASSERT_NOT_NULL(o);
        /* A reply to a call without "more" is exactly {"parameters": {...}}. */
        if (json_object_object_length(o) != 1 || !json_object_object_get_ex(o, "parameters", &p) ||
            !json_object_is_type(p, json_type_object))
                TEST_FAIL("%s: not a plain reply: %s", call, m);
        json_object_get(p);
        json_object_put(o);
        return p;
}

TEST(get_interface_description_per_socket) {
        Tsmd t;

        tsmd_start_config(&t, "");
        for (Socket s = SOCKET_GUEST; s <= SOCKET_ALL; s++) {
                const char *sock = s == SOCKET_GUEST ? "guest socket" : "socket";
                json_object *info, *list;
                size_t n_served = 0;

                for (size_t i = 0; i < ELEMENTSOF(all_interfaces); i++) {
                        const char *name = all_interfaces[i];
                        const char *call = strf(CALL("org.varlink.service.GetInterfaceDescription",
                                                     "{\"interface\":\"%s\"}"), name);

                        if (!socket_serves(s, name)) {
                                run_bytes(&t, s, strf("%s on the %s", name, sock), call, strlen(call) + 1,
                                          strf(NOT_FOUND("%s"), name), AFTER_ALIVE);
                                continue;
                        }
                        n_served++;

                        /* Exactly the file in proto/ (what tsmd embedded), and an interface by
                         * that name as the IDL parser reads it. */
                        _cleanup_free_ char *file = read_text(strf("%s/%s.varlink", PROTO_SOURCE_DIR, name));
                        _cleanup_(varlink_interface_freep) VarlinkInterface *iface = NULL;
                        json_object *reply = raw_call_ok(&t, s, call);
                        const char *text = JSTR(reply, "description");

                        ASSERT_EQ(json_object_object_length(reply), 1);
                        if (!streq(text, file))
                                TEST_FAIL("%s on the %s: the description is not %s.varlink", name, sock, name);
                        ASSERT_OK(varlink_interface_parse(text, &iface, NULL, NULL));
                        ASSERT_STREQ(varlink_interface_get_name(iface), name);
                        json_object_put(reply);
                }

                /* GetInfo names the same set, each once. */
                info = raw_call_ok(&t, s, CALL("org.varlink.service.GetInfo", "{}"));
                ASSERT_TRUE(json_object_object_get_ex(info, "interfaces", &list));
                ASSERT_EQ(json_object_array_length(list), n_served);
                for (size_t i = 0; i < ELEMENTSOF(all_interfaces); i++) {
                        size_t seen = 0;

                        for (size_t k = 0; k < json_object_array_length(list); k++)
                                if (streq(json_object_get_string(json_object_array_get_idx(list, k)),
                                          all_interfaces[i]))
                                        seen++;
                        ASSERT_EQ(seen, socket_serves(s, all_interfaces[i]) ? 1u : 0u);
                }
                json_object_put(info);
        }
        tsmd_teardown(&t);
}

#define GID "org.varlink.service.GetInterfaceDescription"

static const RawCase introspection_cases[] = {
        { "unknown interface", SOCKET_ALL, CALL(GID, "{\"interface\":\"com.example.nothing\"}"),
          NOT_FOUND("com.example.nothing"), AFTER_ALIVE },
        { "upper-case name", SOCKET_ALL, CALL(GID, "{\"interface\":\"IO.TSMD.GUEST\"}"), NOT_FOUND("IO.TSMD.GUEST"),
          AFTER_ALIVE },
        { "lower-case last label", SOCKET_GUEST, CALL(GID, "{\"interface\":\"io.tsmd.guest\"}"),
          NOT_FOUND("io.tsmd.guest"), AFTER_ALIVE },
        { "prefix of a name", SOCKET_ALL, CALL(GID, "{\"interface\":\"io.tsmd.Gues\"}"), NOT_FOUND("io.tsmd.Gues"),
          AFTER_ALIVE },
        { "name with a trailing dot", SOCKET_ALL, CALL(GID, "{\"interface\":\"io.tsmd.\"}"), NOT_FOUND("io.tsmd."),
          AFTER_ALIVE },
        { "empty name", SOCKET_ALL, CALL(GID, "{\"interface\":\"\"}"), NOT_FOUND(""), AFTER_ALIVE },
        { "missing interface", SOCKET_ALL, CALL(GID, "{}"), INVALID("interface"), AFTER_ALIVE },
        { "no parameters", SOCKET_ALL, "{\"method\":\"" GID "\"}", INVALID("interface"), AFTER_ALIVE },
        { "null interface", SOCKET_ALL, CALL(GID, "{\"interface\":null}"), INVALID("interface"), AFTER_ALIVE },
        { "number interface", SOCKET_ALL, CALL(GID, "{\"interface\":1}"), INVALID("interface"), AFTER_ALIVE },
        { "bool interface", SOCKET_GUEST, CALL(GID, "{\"interface\":true}"), INVALID("interface"), AFTER_ALIVE },
        { "array interface", SOCKET_ALL, CALL(GID, "{\"interface\":[\"io.tsmd\"]}"), INVALID("interface"),
          AFTER_ALIVE },
        { "object interface", SOCKET_ALL, CALL(GID, "{\"interface\":{}}"), INVALID("interface"), AFTER_ALIVE },
        { "escaped NUL in the name", SOCKET_ALL, CALL(GID, "{\"interface\":\"io.tsmd\\u0000x\"}"),
          INVALID("interface"), AFTER_ALIVE },
        { "extra parameter", SOCKET_ALL, CALL(GID, "{\"interface\":\"io.tsmd\",\"x\":1}"), INVALID("x"),
          AFTER_ALIVE },
        { "GetInfo with a parameter", SOCKET_GUEST, CALL("org.varlink.service.GetInfo", "{\"x\":1}"), INVALID("x"),
          AFTER_ALIVE },
        { "admin method on the guest socket", SOCKET_GUEST, CALL("io.tsmd.Admin.ListClients", "{}"),
          NOT_FOUND("io.tsmd.Admin"), AFTER_ALIVE },
};

TEST(introspection_errors) {
        Tsmd t;

        tsmd_start_config(&t, "");
        run_cases(&t, introspection_cases, ELEMENTSOF(introspection_cases));
        tsmd_teardown(&t);
}

/* ---- numbers in int fields --------------------------------------------------------------- */

/* JSON that is no int64 (numbers with a fraction or an exponent, or out of range, and other
 * types): InvalidParameter naming the field, the connection kept. */
static const char *const not_int[] = {
        "1.0", "1.5", "-0.0", "0.0", "1e3", "1E3", "1e0", "1e+0", "10e-1", "0e0", "-1.0",
        "9223372036854775808",  /* 2^63 */
        "18446744073709551615", /* 2^64 - 1 */
        "18446744073709551616", /* 2^64 */
        "-9223372036854775809", /* -2^63 - 1 */
        "-18446744073709551616",
        "1e400", "-1e400", "1e-400",
        "\"1\"", "true", "[1]", "{}",
};

/* Not JSON: a malformed message, told before the hang-up. */
static const char *const not_json[] = {
        "0x10", "01", "-01", "00", "NaN", "Infinity", "-Infinity", "+1", ".5", "1.", "1e", "1e+", "-", "--1",
        "1_000", "1 2", "0b1", "\"1\"\"",
};

static char *digits(size_t n, bool negative) {
        char *s = malloc(n + 2), *p = s;

        ASSERT_NOT_NULL(s);
        if (negative)
                *p++ = '-';
        *p++ = '4';
        memset(p, '2', n - 1);
        p[n - 1] = 0;
        return s;
}

typedef struct IntField {
        Socket socket;
        const char *method;
        const char *before, *after; /* the parameters around the field's value */
        const char *field;
        bool nullable;
} IntField;

static const IntField int_fields[] = {
        { SOCKET_GUEST, G "CloseContext", "{\"context\":", "}", "context" },
        { SOCKET_GUEST, G "GetDeviceState", "{\"context\":987654321,\"vdeviceId\":", "}", "vdeviceId" },
        { SOCKET_GUEST, G "DetachDevice", "{\"context\":", ",\"vdeviceId\":1}", "context" },
        /* Refused before it runs, so no bound vDevice is needed. */
        { SOCKET_GUEST, G "GuestRequest",
          "{\"context\":987654321,\"vdeviceId\":1,\"scope\":\"info\",\"request\":\"\",\"maxResponseSize\":", "}",
          "maxResponseSize" },
        { SOCKET_ALL, "io.tsmd.Admin.QueryAudit", "{\"limit\":", "}", "limit", .nullable = true },
        { SOCKET_ALL, "io.tsmd.Admin.QueryAudit", "{\"fromSeq\":", "}", "fromSeq", .nullable = true },
};

static void run_int(Tsmd *t, const IntField *f, const char *value, const char *reply, After after) {
        _cleanup_free_ char *call = NULL;

        ASSERT_TRUE(asprintf(&call, "{\"method\":\"%s\",\"parameters\":%s%s%s}", f->method, f->before, value,
                             f->after) >= 0);
        run_bytes(t, f->socket, strf("%s %s=%.40s", f->method, f->field, value), call, strlen(call) + 1, reply, after);
}

TEST(numbers_in_int_fields) {
        Tsmd t;

        tsmd_start_config(&t, "");
        for (size_t i = 0; i < ELEMENTSOF(int_fields); i++) {
                const IntField *f = int_fields + i;
                char invalid[128];

                snprintf(invalid, sizeof(invalid), INVALID("%s"), f->field);

                for (size_t k = 0; k < ELEMENTSOF(not_int); k++)
                        run_int(&t, f, not_int[k], invalid, AFTER_ALIVE);
                if (!f->nullable)
                        run_int(&t, f, "null", invalid, AFTER_ALIVE);
                for (size_t k = 0; k < ELEMENTSOF(not_json); k++)
                        run_int(&t, f, not_json[k], MALFORMED, AFTER_CLOSED);
                /* Huge digit strings: numbers still, beyond any double as well. */
                for (size_t n = 20; n <= 400; n += 380)
                        for (int neg = 0; neg <= 1; neg++) {
                                _cleanup_free_ char *d = digits(n, neg);
                                run_int(&t, f, d, invalid, AFTER_ALIVE);
                        }
        }

        /* What is an int reaches the method, as the number it is (-0 is 0). */
        static const struct {
                const char *value, *context;
        } ints[] = {
                { "0", "0" },
                { "-0", "0" },
                { "-1", "-1" },
                { "9223372036854775807", "9223372036854775807" },
                { "-9223372036854775808", "-9223372036854775808" },
        };
        for (size_t k = 0; k < ELEMENTSOF(ints); k++)
                run_int(&t, &int_fields[0], ints[k].value, strf(NO_CONTEXT("%s"), ints[k].context), AFTER_ALIVE);
        tsmd_teardown(&t);
}

/* ---- the call object --------------------------------------------------------------------- */

static const RawCase envelope_cases[] = {
        /* "parameters": an object, or absent/null for {}. */
        { "parameters an array", SOCKET_GUEST, CALL(G "CloseContext", "[]"), INVALID("parameters"), AFTER_CLOSED },
        { "parameters a string", SOCKET_GUEST, CALL(G "CloseContext", "\"{}\""), INVALID("parameters"), AFTER_CLOSED },
        { "parameters a number", SOCKET_GUEST, CALL(G "CloseContext", "1"), INVALID("parameters"), AFTER_CLOSED },
        { "parameters false", SOCKET_GUEST, CALL(G "CloseContext", "false"), INVALID("parameters"), AFTER_CLOSED },
        { "parameters null", SOCKET_GUEST, CALL(G "CloseContext", "null"), INVALID("context"), AFTER_ALIVE },
        { "parameters absent", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\"}", INVALID("context"), AFTER_ALIVE },
        { "GetInfo, parameters null", SOCKET_GUEST, CALL("org.varlink.service.GetInfo", "null"), NULL, AFTER_ALIVE },

        /* "method": a string naming interface.Method. */
        { "method absent", SOCKET_GUEST, "{\"parameters\":{}}", INVALID("method"), AFTER_CLOSED },
        { "method a number", SOCKET_GUEST, "{\"method\":1,\"parameters\":{}}", INVALID("method"), AFTER_CLOSED },
        { "method null", SOCKET_GUEST, "{\"method\":null,\"parameters\":{}}", INVALID("method"), AFTER_CLOSED },
        { "method an array", SOCKET_GUEST, "{\"method\":[\"" G "CloseContext\"]}", INVALID("method"), AFTER_CLOSED },
        { "method an object", SOCKET_GUEST, "{\"method\":{}}", INVALID("method"), AFTER_CLOSED },
        { "method true", SOCKET_GUEST, "{\"method\":true}", INVALID("method"), AFTER_CLOSED },
        { "method empty", SOCKET_GUEST, "{\"method\":\"\"}", INVALID("method"), AFTER_CLOSED },
        { "method without a dot", SOCKET_GUEST, "{\"method\":\"CloseContext\"}", INVALID("method"), AFTER_CLOSED },
        { "method with a trailing dot", SOCKET_GUEST, "{\"method\":\"io.tsmd.Guest.\"}", INVALID("method"),
          AFTER_CLOSED },
        { "method with a leading dot", SOCKET_GUEST, "{\"method\":\".CloseContext\"}", INVALID("method"),
          AFTER_CLOSED },
        { "method name in lower case", SOCKET_GUEST, "{\"method\":\"io.tsmd.Guest.closeContext\"}", INVALID("method"),
          AFTER_CLOSED },
        { "method name with a space", SOCKET_GUEST, "{\"method\":\"io.tsmd.Guest.Close Context\"}",
          INVALID("method"), AFTER_CLOSED },
        { "method with an escaped NUL", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\\u0000\",\"parameters\":{}}",
          INVALID("method"), AFTER_CLOSED },
        { "unknown interface", SOCKET_GUEST, "{\"method\":\"com.example.Foo.Bar\"}", NOT_FOUND("com.example.Foo"),
          AFTER_ALIVE },
        { "interface of one label", SOCKET_GUEST, "{\"method\":\"io.Bar\"}", NOT_FOUND("io"), AFTER_ALIVE },
        { "interface in the wrong case", SOCKET_GUEST, CALL("io.tsmd.guest.CloseContext", "{\"context\":1}"),
          NOT_FOUND("io.tsmd.guest"), AFTER_ALIVE },
        { "unknown method", SOCKET_GUEST, CALL(G "Nope", "{}"),
          "{\"error\":\"org.varlink.service.MethodNotFound\",\"parameters\":{\"method\":\"" G "Nope\"}}",
          AFTER_ALIVE },

        /* Unknown top-level keys: sd-varlink hangs up; tsmd names the key, then hangs up. A
         * vendor extension (an object named in reverse-domain notation) is no exception: tsmd
         * knows none, and cannot honour what it asks. */
        { "unknown key", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\",\"parameters\":{\"context\":1},\"bogus\":1}",
          INVALID("bogus"), AFTER_CLOSED },
        { "vendor extension", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\",\"parameters\":{\"context\":1},"
          "\"com.example\":{}}", INVALID("com.example"), AFTER_CLOSED },
        { "reply key in a call", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\",\"parameters\":{\"context\":1},"
          "\"continues\":true}", INVALID("continues"), AFTER_CLOSED },

        /* The flags: booleans or null (absent). */
        { "oneway a string", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\",\"parameters\":{\"context\":1},\"oneway\":\"true\"}",
          INVALID("oneway"), AFTER_CLOSED },
        { "oneway a number", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\",\"parameters\":{\"context\":1},\"oneway\":1}",
          INVALID("oneway"), AFTER_CLOSED },
        { "more a number", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\",\"parameters\":{\"context\":1},\"more\":0}",
          INVALID("more"), AFTER_CLOSED },
        { "more an object", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\",\"parameters\":{\"context\":1},\"more\":{}}",
          INVALID("more"), AFTER_CLOSED },
        { "upgrade a string", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\",\"parameters\":{\"context\":1},\"upgrade\":\"yes\"}",
          INVALID("upgrade"), AFTER_CLOSED },
        { "oneway null", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\",\"parameters\":{\"context\":1},\"oneway\":null}",
          NO_CONTEXT("1"), AFTER_ALIVE },
        { "oneway false", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\",\"parameters\":{\"context\":1},\"oneway\":false}",
          NO_CONTEXT("1"), AFTER_ALIVE },
        { "oneway and more", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\",\"parameters\":{\"context\":1},\"oneway\":true,\"more\":true}",
          INVALID("more"), AFTER_CLOSED },
        { "oneway and upgrade", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\",\"parameters\":{\"context\":1},\"oneway\":true,\"upgrade\":true}",
          INVALID("upgrade"), AFTER_CLOSED },
        /* No tsmd method takes the connection over: refused by name, the connection kept. */
        { "upgrade", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\",\"parameters\":{\"context\":1},\"upgrade\":true}",
          INVALID("upgrade"), AFTER_ALIVE },
        { "upgrade and more", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\",\"parameters\":{\"context\":1},\"more\":true,\"upgrade\":true}",
          INVALID("upgrade"), AFTER_ALIVE },
        { "upgrade false", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\",\"parameters\":{\"context\":1},\"upgrade\":false}",
          NO_CONTEXT("1"), AFTER_ALIVE },
        /* "more" on a method that does not stream: a plain reply, no "continues". */
        { "more on a plain method", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\",\"parameters\":{\"context\":1},\"more\":true}",
          NO_CONTEXT("1"), AFTER_ALIVE },
        { "more on ListClients", SOCKET_ALL, "{\"method\":\"io.tsmd.Admin.ListClients\",\"more\":true}",
          NULL, AFTER_ALIVE },
        /* A method marked [Requires 'more' flag] without it. */
        { "WatchEvents without more", SOCKET_GUEST, CALL(G "WatchEvents", "{}"),
          "{\"error\":\"org.varlink.service.ExpectedMore\",\"parameters\":{}}", AFTER_ALIVE },

        /* Framing. */
        { "whitespace around the object", SOCKET_GUEST, " \t\r\n" CLOSE("1") " \n\t\r", NO_CONTEXT("1"), AFTER_ALIVE },
        { "whitespace inside", SOCKET_GUEST, "{ \"method\" :\n\"" G "CloseContext\" ,\r\"parameters\"\t: { \"context\" : 1 } }",
          NO_CONTEXT("1"), AFTER_ALIVE },
        { "UTF-8 byte order mark", SOCKET_GUEST, "\xef\xbb\xbf" CLOSE("1"), MALFORMED, AFTER_CLOSED },
        { "empty message", SOCKET_GUEST, "", MALFORMED, AFTER_CLOSED },
        { "whitespace only", SOCKET_GUEST, " \n", MALFORMED, AFTER_CLOSED },
        { "not an object", SOCKET_GUEST, "[" CLOSE("1") "]", MALFORMED, AFTER_CLOSED },
        { "a string", SOCKET_GUEST, "\"" G "CloseContext\"", MALFORMED, AFTER_CLOSED },
        { "null", SOCKET_GUEST, "null", MALFORMED, AFTER_CLOSED },
        { "two objects in one message", SOCKET_GUEST, CLOSE("1") CLOSE("2"), MALFORMED, AFTER_CLOSED },
        { "duplicate method key", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\",\"method\":\"" G "CloseContext\",\"parameters\":{\"context\":1}}",
          MALFORMED, AFTER_CLOSED },
        { "duplicate parameters key", SOCKET_GUEST, "{\"method\":\"" G "CloseContext\",\"parameters\":{\"context\":1},\"parameters\":{\"context\":1}}",
          MALFORMED, AFTER_CLOSED },
};

TEST(call_objects) {
        Tsmd t;

        tsmd_start_config(&t, "");
        for (size_t i = 0; i < ELEMENTSOF(envelope_cases); i++) {
                const RawCase *c = envelope_cases + i;

                /* A successful reply is checked for its shape only: no "continues", no error. */
                if (!c->reply) {
                        json_object *p = raw_call_ok(&t, c->socket, c->bytes);
                        json_object_put(p);
                        continue;
                }
                run_bytes(&t, c->socket, c->what, c->bytes, strlen(c->bytes) + 1, c->reply, c->after);
        }
        tsmd_teardown(&t);
}

/* ---- NULs and framing -------------------------------------------------------------------- */

TEST(nul_bytes_and_framing) {
        static const char call[] = CLOSE("1");
        static const char raw_nul[] = "{\"method\":\"" G "CloseContext\",\"parameters\":{\"x\":\"a\0b\"}}";
        char batch[3 * sizeof(call)];
        Tsmd t;
        int fd;

        tsmd_start_config(&t, "");

        /* A raw NUL inside a string ends the message there: what came before is no JSON. */
        run_bytes(&t, SOCKET_GUEST, "raw NUL in a string", raw_nul, sizeof(raw_nul), MALFORMED, AFTER_CLOSED);
        /* An escaped one is data: the field is refused by name (C would cut it short). */
        run_bytes(&t, SOCKET_GUEST, "escaped NUL in a string",
                  CALL(G "CloseContext", "{\"context\":1,\"x\":\"a\\u0000b\"}"),
                  sizeof(CALL(G "CloseContext", "{\"context\":1,\"x\":\"a\\u0000b\"}")), INVALID("x"), AFTER_ALIVE);
        /* A message without its NUL, then the end of the stream: nothing to answer. */
        fd = raw_open(&t, SOCKET_GUEST);
        raw_send(fd, call, sizeof(call) - 1);
        ASSERT_OK(shutdown(fd, SHUT_WR));
        expect_hangup(fd, "no terminating NUL");
        close(fd);

        /* Split in two writes at every byte, on one connection: each answered once. */
        fd = raw_open(&t, SOCKET_GUEST);
        for (size_t k = 1; k < sizeof(call); k++) {
                raw_send(fd, call, k);
                if (k % 8 == 0)
                        usleep(2000); /* so that tsmd really reads a part */
                raw_send(fd, call + k, sizeof(call) - k);
                expect_reply(fd, strf("split at byte %zu", k), NO_CONTEXT("1"));
        }
        /* A byte a write. */
        for (size_t k = 0; k < sizeof(call); k++) {
                raw_send(fd, call + k, 1);
                if (k % 16 == 0)
                        usleep(1000);
        }
        expect_reply(fd, "a byte a write", NO_CONTEXT("1"));

        /* Several in one write, answered in order; the last split across this write and the next. */
        memcpy(batch, call, sizeof(call));
        memcpy(batch + sizeof(call), GOOD_CALL, sizeof(GOOD_CALL));
        memcpy(batch + sizeof(call) + sizeof(GOOD_CALL), call, 10);
        raw_send(fd, batch, sizeof(call) + sizeof(GOOD_CALL) + 10);
        expect_reply(fd, "first of a batch", NO_CONTEXT("1"));
        expect_reply(fd, "second of a batch", GOOD_REPLY);
        raw_send(fd, call + 10, sizeof(call) - 10);
        expect_reply(fd, "third of a batch", NO_CONTEXT("1"));

        /* A oneway call gets no answer; the call after it gets its own. */
        {
                static const char oneway[] = "{\"method\":\"" G "CloseContext\",\"parameters\":{\"context\":1},\"oneway\":true}";
                raw_send(fd, oneway, sizeof(oneway));
                expect_alive(fd, "after a oneway call");
        }
        /* A good message and a malformed one in one write: the first is answered, then the
         * second refused, then a hang-up. */
        {
                static const char pair[] = CLOSE("1") "\0{\"method\":01}";
                raw_send(fd, pair, sizeof(pair));
                expect_reply(fd, "good call before a malformed one", NO_CONTEXT("1"));
                expect_reply(fd, "malformed call after a good one", MALFORMED);
                expect_hangup(fd, "malformed call after a good one");
        }
        close(fd);

        fd = raw_open(&t, SOCKET_GUEST);
        expect_alive(fd, "a new connection at the end");
        close(fd);
        tsmd_teardown(&t);
}

/* ---- messages refused as a whole ------------------------------------------------------------ */

#define PING_X "{\"method\":\"io.tsmd.Service.Ping\",\"parameters\":{\"x\":"
#define SMALL_LIMITS "[Varlink]\nMaxJsonDepth=8\nMaxJsonValues=100\nMaxMessageSize=4096\n"

/* head, n times unit, tail (n times closing, if given), malloc'd; pad_to > 0: unit repeated
 * so that the whole message, with its NUL, is pad_to bytes. */
static char *build(const char *head, const char *unit, const char *closing, size_t n, const char *tail,
                   size_t pad_to) {
        size_t h = strlen(head), t = strlen(tail);
        char *s, *p;

        if (pad_to > 0)
                n = pad_to - 1 - h - t;
        s = p = malloc(h + 2 * n + t + 1);
        ASSERT_NOT_NULL(s);
        p = mempcpy(p, head, h);
        for (size_t i = 0; i < n; i++)
                *p++ = *unit;
        if (closing)
                for (size_t i = 0; i < n; i++)
                        *p++ = *closing;
        memcpy(p, tail, t + 1);
        return s;
}

/* What the stream refuses as a whole is told by name, with the limit it broke (the default,
 * and as configured), before tsmd hangs up; the audit record names it as before. */
TEST(refusals_are_told_by_name) {
        static const struct {
                const char *config, *what;
                const char *head, *unit, *closing;
                size_t n;
                const char *tail;
                size_t pad_to;
                const char *refusal, *reply;
        } cases[] = {
                /* The call, its parameters and 63 arrays. */
                { "", "nested 65 deep", PING_X, "[", "]", 63, "}}", 0, VARLINK_REFUSED_NESTING_TOO_DEEP,
                  TOLD("NestingTooDeep", "{\"maxJsonDepth\":64}") },
                /* The call, its method, parameters, the array and 5000 zeros. */
                { "", "5004 values", PING_X "[0", ",0", NULL, 4999, "]}}", 0, VARLINK_REFUSED_TOO_MANY_JSON_VALUES,
                  TOLD("TooManyJsonValues", "{\"maxJsonValues\":4096}") },
                { "", "a duplicate key", "{\"method\":\"io.tsmd.Service.Ping\",\"method\":\"io.tsmd.Service.Ping\"}", "",
                  NULL, 0, "", 0, VARLINK_REFUSED_MALFORMED_MESSAGE, MALFORMED },
                { "", "an escaped NUL in a key", CALL(G "CloseContext", "{\"cont\\u0000ext\":1}"), "", NULL, 0, "", 0,
                  VARLINK_REFUSED_MALFORMED_MESSAGE, MALFORMED },
                { "", "invalid UTF-8", PING_X "\"\xff\"}}", "", NULL, 0, "", 0, VARLINK_REFUSED_MALFORMED_MESSAGE,
                  MALFORMED },
                { SMALL_LIMITS, "nested 9 deep", PING_X, "[", "]", 7, "}}", 0, VARLINK_REFUSED_NESTING_TOO_DEEP,
                  TOLD("NestingTooDeep", "{\"maxJsonDepth\":8}") },
                { SMALL_LIMITS, "101 values", PING_X "[0", ",0", NULL, 96, "]}}", 0, VARLINK_REFUSED_TOO_MANY_JSON_VALUES,
                  TOLD("TooManyJsonValues", "{\"maxJsonValues\":100}") },
                { SMALL_LIMITS, "4097 bytes", PING_X "\"", "a", NULL, 0, "\"}}", 4097, VARLINK_REFUSED_MESSAGE_TOO_LARGE,
                  TOLD("MessageTooLarge", "{\"maxMessageSize\":4096}") },
        };
        const char *config = NULL;
        Tsmd t;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *msg = NULL;
                int64_t seq;

                if (!config || !streq(config, cases[i].config)) {
                        if (config)
                                tsmd_teardown(&t);
                        config = cases[i].config;
                        tsmd_start_config(&t, config);
                }
                seq = tsmd_audit_last_seq(&t);
                if (streq(cases[i].unit, ",0")) {
                        /* Two bytes a value. */
                        size_t h = strlen(cases[i].head), n = cases[i].n;
                        msg = malloc(h + 2 * n + strlen(cases[i].tail) + 1);
                        ASSERT_NOT_NULL(msg);
                        memcpy(msg, cases[i].head, h);
                        for (size_t k = 0; k < n; k++)
                                memcpy(msg + h + 2 * k, ",0", 2);
                        strcpy(msg + h + 2 * n, cases[i].tail);
                } else
                        msg = build(cases[i].head, cases[i].unit, cases[i].closing, cases[i].n, cases[i].tail,
                                    cases[i].pad_to);
                if (cases[i].pad_to > 0)
                        ASSERT_EQ(strlen(msg) + 1, cases[i].pad_to);
                run_bytes(&t, SOCKET_GUEST, cases[i].what, msg, strlen(msg) + 1, cases[i].reply, AFTER_CLOSED);
                tsmd_expect_audit(&t, seq, "connection", cases[i].refusal, 1);
        }
        tsmd_teardown(&t);
}

TEST_MAIN();
