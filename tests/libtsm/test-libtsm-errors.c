/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libtsm's error table and error messages, without a daemon: every Varlink error name tsm.h
 * documents maps to its errno, errno-carrying errors use their parameter, and the parameters
 * are rendered as a short, single-line string. Links the static libtsm to reach the internal
 * functions. Runs in: tests.
 */

#include "json-util.h"
#include "libtsm-internal.h"
#include "harness.h"

static const struct {
        const char *name;
        int error;
} table[] = {
        { "io.tsmd.Guest.NoSuchContext", ENOENT },
        { "io.tsmd.Guest.NoSuchVDevice", ENOENT },
        { "io.tsmd.Guest.NoSuchDevice", ENOENT },
        { "io.tsmd.Guest.VDeviceExists", EEXIST },
        { "io.tsmd.Guest.NoSuchScope", EOPNOTSUPP },
        { "io.tsmd.Guest.ScopeUnavailable", EOPNOTSUPP },
        { "io.tsmd.Guest.Denied", EACCES },
        { "org.varlink.service.PermissionDenied", EACCES },
        { "io.tsmd.Guest.BadFileDescriptor", EBADF },
        { "io.tsmd.Guest.PayloadTooLarge", E2BIG },
        { "io.tsmd.Guest.DeviceGone", ENODEV },
        { "io.tsmd.Guest.DeviceBusy", EBUSY },
        { "io.tsmd.Guest.Timeout", ETIME },
        { "io.tsmd.Guest.InvalidState", EBADFD },
        { "io.tsmd.Guest.AuditFailed", EIO },
        { "io.tsmd.Guest.StateNotSaved", EIO },
        { "io.tsmd.Guest.LimitReached", EUSERS },
        { "io.tsmd.Guest.ReclaimRefused", ENOENT },
        { "org.varlink.service.InvalidParameter", EINVAL },
        { "org.varlink.service.InterfaceNotFound", EOPNOTSUPP },
        { "org.varlink.service.MethodNotFound", EOPNOTSUPP },
        { "org.varlink.service.MethodNotImplemented", EOPNOTSUPP },
        { "org.varlink.service.ExpectedMore", EBADE },
        { "io.tsmd.ReplyTooLarge", EMSGSIZE },
        { "io.tsmd.ReplyMayNotFit", E2BIG },
        { "io.tsmd.TooManyConnections", EUSERS },
        { "io.tsmd.TooManyConnectionsPerUid", EUSERS },
        { "io.tsmd.MalformedMessage", EINVAL },
        { "io.tsmd.NestingTooDeep", EINVAL },
        { "io.tsmd.TooManyJsonValues", EINVAL },
        { "io.tsmd.MessageTooLarge", E2BIG },
        { "io.tsmd.FileDescriptorsRefused", E2BIG },
        { "io.tsmd.MessageTimeout", ECONNABORTED },
        { "io.tsmd.IdleTimeout", ECONNABORTED },
        /* The names of local failures, when tsmd sends them, are just other names. */
        { "io.tsmd.Disconnected", EBADR },
        { "io.tsmd.TimedOut", EBADR },
        { "io.tsmd.Protocol", EBADR },
        { "io.tsmd.Guest.SomethingNew", EBADR },
        { "com.example.Other", EBADR },
};

TEST(error_table) {
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                int e = ltsm_error_to_errno(table[i].name, NULL);

                if (e != table[i].error)
                        TEST_FAIL("%s -> %d, expected %d", table[i].name, e, table[i].error);
        }
        ASSERT_EQ(ltsm_error_to_errno(NULL, NULL), 0);
}

static json_object *parse(const char *text) {
        json_object *o = json_tokener_parse(text);

        ASSERT_NOT_NULL(o);
        return o;
}

TEST(errno_parameter) {
        static const char *const names[] = { "io.tsmd.Guest.BackendError", "io.tsmd.System" };

        for (size_t i = 0; i < 2; i++) {
                json_object *p;

                p = parse("{\"name\": \"EALREADY\", \"errno\": 114}");
                ASSERT_EQ(ltsm_error_to_errno(names[i], p), EALREADY);
                json_object_put(p);
                p = parse("{\"errno\": 0}");
                ASSERT_EQ(ltsm_error_to_errno(names[i], p), EIO);
                json_object_put(p);
                p = parse("{\"errno\": 4096}");
                ASSERT_EQ(ltsm_error_to_errno(names[i], p), EIO);
                json_object_put(p);
                p = parse("{\"errno\": -5}");
                ASSERT_EQ(ltsm_error_to_errno(names[i], p), EIO);
                json_object_put(p);
                p = parse("{\"errno\": \"5\"}");
                ASSERT_EQ(ltsm_error_to_errno(names[i], p), EIO);
                json_object_put(p);
                ASSERT_EQ(ltsm_error_to_errno(names[i], NULL), EIO);
                /* tsmd out of fds for one the call passed: the caller may retry later. */
                p = parse("{\"errno\": 24, \"errnoName\": \"EMFILE\"}");
                ASSERT_EQ(ltsm_error_to_errno(names[i], p), EMFILE);
                json_object_put(p);
                p = parse("{\"errno\": 23, \"errnoName\": \"ENFILE\"}");
                ASSERT_EQ(ltsm_error_to_errno(names[i], p), ENFILE);
                json_object_put(p);

                /* What libtsm reserves for its own failures is EIO from tsmd. */
                static const int reserved[] = { ECONNRESET, ENOTCONN, ETIMEDOUT, EPROTO, ECANCELED, EDEADLK, EINPROGRESS };
                for (size_t j = 0; j < sizeof(reserved) / sizeof(reserved[0]); j++) {
                        p = json_object_new_object();
                        ASSERT_OK(json_object_add(p, "errno", json_object_new_int64(reserved[j])));
                        ASSERT_EQ(ltsm_error_to_errno(names[i], p), EIO);
                        json_object_put(p);
                }
        }
}

static void client_done(TsmClient *c) {
        ltsm_error_clear(c);
}

TEST(error_messages) {
        TsmClient c = {};
        json_object *p;
        char long_value[1024];

        p = parse("{\"scope\": \"debug-x\", \"backend\": \"emulated\"}");
        ASSERT_EQ(ltsm_error_set_reply(&c, "io.tsmd.Guest.NoSuchScope", p), -EOPNOTSUPP);
        json_object_put(p);
        ASSERT_STREQ(tsm_client_get_error_name(&c), "io.tsmd.Guest.NoSuchScope");
        ASSERT_STREQ(tsm_client_get_error_message(&c), "scope=debug-x, backend=emulated");

        /* Numbers, booleans, null and nested values as JSON; control characters replaced. */
        p = parse("{\"a\": 1, \"b\": true, \"c\": null, \"d\": [1, \"x\"], \"e\": \"two\\nlines\"}");
        ASSERT_EQ(ltsm_error_set_reply(&c, "com.example.Other", p), -EBADR);
        json_object_put(p);
        ASSERT_STREQ(tsm_client_get_error_message(&c), "a=1, b=true, c=null, d=[1,\"x\"], e=two?lines");

        /* C1 controls (CSI as U+009B) too: the message is printed to terminals. */
        p = parse("{\"e\": \"\\u009b2J\\u001b[1A\\u007f\xc3\xa9\"}");
        ASSERT_EQ(ltsm_error_set_reply(&c, "com.example.Other", p), -EBADR);
        json_object_put(p);
        ASSERT_STREQ(tsm_client_get_error_message(&c), "e=?2J?[1A?\xc3\xa9");

        /* And the bidirectional formatting characters (U+202E: what follows shows reversed). */
        p = parse("{\"e\": \"\\u202egnp.exe\\u2066\\u061c\\u2010\"}");
        ASSERT_EQ(ltsm_error_set_reply(&c, "com.example.Other", p), -EBADR);
        json_object_put(p);
        ASSERT_STREQ(tsm_client_get_error_message(&c), "e=?gnp.exe??\xe2\x80\x90");

        /* And what shows as nothing or breaks the line: "info" + U+200B reads as "info". */
        p = parse("{\"e\": \"info\\u200b\\u00ad\\ufeff\\u2028\\udb40\\udc41\\u00e9\"}");
        ASSERT_EQ(ltsm_error_set_reply(&c, "com.example.Other", p), -EBADR);
        json_object_put(p);
        ASSERT_STREQ(tsm_client_get_error_message(&c), "e=info?????\xc3\xa9");

        /* No parameters: an empty message. */
        ASSERT_EQ(ltsm_error_set_reply(&c, "io.tsmd.Guest.DeviceBusy", NULL), -EBUSY);
        ASSERT_STREQ(tsm_client_get_error_message(&c), "");

        /* Long values are cut. */
        memset(long_value, 'x', sizeof(long_value) - 1);
        long_value[sizeof(long_value) - 1] = 0;
        p = json_object_new_object();
        ASSERT_OK(json_object_add(p, "reason", json_object_new_string(long_value)));
        ASSERT_EQ(ltsm_error_set_reply(&c, "io.tsmd.Guest.Denied", p), -EACCES);
        json_object_put(p);
        ASSERT_LE(strlen(tsm_client_get_error_message(&c)), TSM_ERROR_MESSAGE_MAX - 1);
        ASSERT_TRUE(strncmp(tsm_client_get_error_message(&c), "reason=xxx", 10) == 0);
        ASSERT_NOT_NULL(strstr(tsm_client_get_error_message(&c), "..."));

        /* A long value of two-byte characters is cut between them, never inside one. */
        for (size_t i = 0; i + 2 < sizeof(long_value); i += 2)
                memcpy(long_value + i, "\xc3\xa9", 2);
        long_value[sizeof(long_value) - 2] = 0;
        for (size_t shift = 0; shift < 2; shift++) {
                const char *m;

                p = json_object_new_object();
                ASSERT_OK(json_object_add(p, shift ? "reasons" : "reason", json_object_new_string(long_value)));
                ASSERT_EQ(ltsm_error_set_reply(&c, "io.tsmd.Guest.Denied", p), -EACCES);
                json_object_put(p);
                m = tsm_client_get_error_message(&c);
                ASSERT_NOT_NULL(strstr(m, "..."));
                ASSERT_EQ((strstr(m, "...") - m - strlen("reason=") - shift) % 2, 0);
        }

        /* tsmd sending the name of a local failure is not that failure. */
        ASSERT_EQ(ltsm_error_set_reply(&c, "io.tsmd.Disconnected", NULL), -EBADR);
        ASSERT_STREQ(tsm_client_get_error_name(&c), "io.tsmd.Disconnected");
        ASSERT_STREQ(tsm_client_get_error_message(&c), "");

        /* The local errors get a sentence. */
        ASSERT_EQ(ltsm_error_set_local(&c, -ECONNRESET), -ECONNRESET);
        ASSERT_STREQ(tsm_client_get_error_name(&c), "io.tsmd.Disconnected");
        ASSERT_STREQ(tsm_client_get_error_message(&c), "the connection to tsmd was lost");
        ASSERT_EQ(ltsm_error_set_local(&c, -ETIMEDOUT), -ETIMEDOUT);
        ASSERT_STREQ(tsm_client_get_error_name(&c), "io.tsmd.TimedOut");

        /* Other local failures leave no name. */
        ASSERT_EQ(ltsm_error_set_local(&c, -ENOMEM), -ENOMEM);
        ASSERT_NULL(tsm_client_get_error_name(&c));
        ASSERT_NULL(tsm_client_get_error_message(&c));

        client_done(&c);
}

/* A connection refused for the share of the callers the policy does not name says which limit,
 * with its value; TooManyConnections without it keeps its sentence. Both EUSERS. */
TEST(too_many_connections_names_the_unnamed_share) {
        TsmClient c = {};
        json_object *p;

        p = parse("{\"maxUnnamedConnections\": 256}");
        ASSERT_EQ(ltsm_error_set_reply(&c, "io.tsmd.TooManyConnections", p), -EUSERS);
        json_object_put(p);
        ASSERT_STREQ(tsm_client_get_error_message(&c),
                     "tsmd refused the connection: the callers its policy does not name have all they may open "
                     "(MaxUnnamedConnections=256); it is closed");
        p = parse("{}");
        ASSERT_EQ(ltsm_error_set_reply(&c, "io.tsmd.TooManyConnections", p), -EUSERS);
        json_object_put(p);
        ASSERT_STREQ(tsm_client_get_error_message(&c), "tsmd refused the connection: it has all it takes open "
                                                        "(MaxConnections=, MaxAdminConnections=); it is closed");
        client_done(&c);
}

TEST_MAIN();
