/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What a GuestRequest's protocol messages cost in allocations, the most frequent call of all:
 * its call parsed as a connection parses one, and its reply built as the worker builds it. The
 * member names of the protocol are json-c's without a copy each (json-build.c's known keys,
 * json_object_add_literal()). Counted by counting-allocator.h, not under AddressSanitizer.
 * Runs in: tests.
 */

#include <ctype.h>
#include <string.h>

#include "counting-allocator.h"
#include "harness.h"
#include "json-escape.h"
#include "json-util.h"
#include "json-write.h"
#include "varlink-idl.h"
#include "varlink-message.h"

/* A 4 KiB request as libtsm sends it (base64: 5464 characters). */
static char *guest_request_call(void) {
        static const char head[] =
                "{\"method\":\"io.tsmd.Guest.GuestRequest\",\"parameters\":{\"context\":1,\"vdeviceId\":1,"
                "\"scope\":\"info\",\"request\":\"";
        static const char tail[] = "\",\"maxResponseSize\":4096}}";
        size_t n = 5464;
        char *text = malloc(strlen(head) + n + strlen(tail) + 1), *p;

        ASSERT_NOT_NULL(text);
        p = stpcpy(text, head);
        memset(p, 'A', n);
        strcpy(p + n, tail);
        return text;
}

TEST(guest_request_call_parsed) {
#ifdef HAVE_ASAN
        SKIP("AddressSanitizer owns malloc()");
#endif
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_free_ char *text = guest_request_call();
        _cleanup_json_ json_object *o = NULL;
        VarlinkCallMessage call;
        unsigned n;

        ASSERT_OK(json_tokener_new_strict(64, &tok));
        alloc_calls = 0;
        ASSERT_OK(json_parse_strict(tok, 64, SIZE_MAX, text, strlen(text), &o));
        ASSERT_OK(varlink_message_parse_call(o, &call, NULL));
        n = alloc_calls;

        ASSERT_STREQ(call.method, "io.tsmd.Guest.GuestRequest");
        ASSERT_EQ(strlen(json_get_string(call.parameters, "request")), 5464u);
        /* Two objects of three each (json-c's object, its table, the table's entries), three
         * strings and three integers of one each: none for the seven member names, none for
         * reading them or the numbers. */
        ASSERT_LE(n, 2 * 3 + 3 + 3);
}

TEST(guest_request_reply_built) {
#ifdef HAVE_ASAN
        SKIP("AddressSanitizer owns malloc()");
#endif
        static const char response[] = "QUJD";
        _cleanup_json_ json_object *m = NULL;
        json_object *reply, *params;
        unsigned n;

        /* As the worker's on_request_done() and, once the record is durable, its
         * on_record_committed() (daemon/guest.c, guest-op.c). */
        alloc_calls = 0;
        reply = json_object_new_object();
        ASSERT_NOT_NULL(reply);
        ASSERT_OK(json_object_add_literal(reply, "response", json_object_new_string_fast(response, strlen(response))));
        ASSERT_OK(json_object_add_literal(reply, "scopeNumber", json_object_new_int64(0)));
        ASSERT_OK(varlink_message_new_reply(reply, false, &m));
        ASSERT_TRUE(json_object_object_get_ex(m, "parameters", &params));
        ASSERT_OK(json_object_add_literal(params, "auditSequence", json_object_new_int64(1)));
        n = alloc_calls;

        ASSERT_STREQ(json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN),
                     "{\"parameters\":{\"response\":\"QUJD\",\"scopeNumber\":0,\"auditSequence\":1}}");
        /* Two objects of three each and three values of one each: none for the member names. */
        ASSERT_LE(n, 2 * 3 + 3);
}

/* The reply written into the buffer the server keeps: nothing allocated once it is large enough
 * (json-c's serializer makes each message a print buffer and grows it a doubling at a time). */
TEST(guest_request_reply_written) {
#ifdef HAVE_ASAN
        SKIP("AddressSanitizer owns malloc()");
#endif
        _cleanup_(json_text_done) JsonText t = {};
        _cleanup_json_ json_object *m = NULL;
        json_object *reply;

        reply = json_object_new_object();
        ASSERT_NOT_NULL(reply);
        ASSERT_OK(json_object_add_literal(reply, "response", json_object_new_string_fast("QUJD", 4)));
        ASSERT_OK(json_object_add_literal(reply, "scopeNumber", json_object_new_int64(0)));
        ASSERT_OK(varlink_message_new_reply(reply, false, &m));
        ASSERT_OK(json_write(m, &t));

        alloc_calls = 0;
        ASSERT_OK(json_write(m, &t));
        ASSERT_EQ(alloc_calls, 0U);
        ASSERT_STREQ(t.data, "{\"parameters\":{\"response\":\"QUJD\",\"scopeNumber\":0}}");
}

/* Keys kept as constants are json-c's like any other: found, replaced, deleted, copied and freed
 * with their object (AddressSanitizer would see one freed that was never allocated). */
TEST(known_keys_behave_as_copies) {
        static const char text[] = "{\"scope\":\"info\",\"unknownKey\":1,\"p\\u0061rameters\":{\"context\":2}}";
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_json_ json_object *o = NULL, *copy = NULL;
        json_object *p;

        ASSERT_OK(json_tokener_new_strict(8, &tok));
        ASSERT_OK(json_parse_strict(tok, 8, SIZE_MAX, text, strlen(text), &o));
        ASSERT_STREQ(json_get_string(o, "scope"), "info");
        ASSERT_TRUE(json_object_object_get_ex(o, "parameters", &p));
        ASSERT_EQ(json_object_get_int(json_object_object_get(p, "context")), 2);
        ASSERT_OK(json_object_deep_copy(o, &copy, NULL));
        ASSERT_TRUE(json_object_equal(o, copy));

        ASSERT_OK(json_object_add(o, "scope", json_object_new_string("debug-read")));
        ASSERT_STREQ(json_get_string(o, "scope"), "debug-read");
        json_object_object_del(o, "scope");
        json_object_object_del(copy, "parameters");
        ASSERT_FALSE(json_object_object_get_ex(o, "scope", NULL));
        ASSERT_STREQ(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
                     "{\"unknownKey\":1,\"parameters\":{\"context\":2}}");
        ASSERT_STREQ(json_object_to_json_string_ext(copy, JSON_C_TO_STRING_PLAIN),
                     "{\"scope\":\"info\",\"unknownKey\":1}");
}

/* Allocations of parsing {"name":0}. */
static unsigned allocs_of_member(json_tokener *tok, const char *name, size_t len) {
        _cleanup_json_ json_object *o = NULL;
        char text[128];
        unsigned n;

        ASSERT_TRUE(len + sizeof("{\"\":0}") <= sizeof(text));
        snprintf(text, sizeof(text), "{\"%.*s\":0}", (int) len, name);
        alloc_calls = 0;
        ASSERT_OK(json_parse_strict(tok, 8, SIZE_MAX, text, strlen(text), &o));
        n = alloc_calls;
        return n;
}

/* json-build.c's table of known keys is kept by hand: every member name io.tsmd.Guest declares
 * (a "name:" of its IDL, comments left out) and the envelope's must be in it, or that member
 * costs a copy per message again, silently. */
TEST(every_guest_member_name_is_known) {
#ifdef HAVE_ASAN
        SKIP("AddressSanitizer owns malloc()");
#endif
        static const char *const envelope[] = { "method", "parameters", "oneway", "more", "upgrade", "continues", "error" };
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        const char *idl = NULL;
        unsigned known, unknown, n_names = 0;

        ASSERT_OK(json_tokener_new_strict(8, &tok));
        known = allocs_of_member(tok, "method", strlen("method"));
        unknown = allocs_of_member(tok, "notAMemberName", strlen("notAMemberName"));
        ASSERT_GE(unknown, known + 1); /* the key copied */

        for (size_t i = 0; i < ELEMENTSOF(envelope); i++)
                if (allocs_of_member(tok, envelope[i], strlen(envelope[i])) != known)
                        TEST_FAIL("the envelope's '%s' is not among json-build.c's known keys", envelope[i]);

        for (size_t i = 0; varlink_builtin_idl[i]; i++)
                if (strstr(varlink_builtin_idl[i], "\ninterface io.tsmd.Guest\n"))
                        idl = varlink_builtin_idl[i];
        ASSERT_NOT_NULL(idl);
        for (const char *line = idl; *line; line += strcspn(line, "\n") + (line[strcspn(line, "\n")] != 0)) {
                size_t end = strcspn(line, "#\n");

                for (size_t i = 0; i < end; i++) {
                        size_t len = 0, j;

                        if (i > 0 && (isalnum((unsigned char) line[i - 1]) || line[i - 1] == '_'))
                                continue;
                        while (i + len < end && (isalnum((unsigned char) line[i + len]) || line[i + len] == '_'))
                                len++;
                        for (j = i + len; j < end && line[j] == ' '; j++)
                                ;
                        if (len == 0 || j >= end || line[j] != ':')
                                continue;
                        n_names++;
                        if (allocs_of_member(tok, line + i, len) != known)
                                TEST_FAIL("io.tsmd.Guest's member '%.*s' is not among json-build.c's known keys",
                                          (int) len, line + i);
                }
        }
        ASSERT_GE(n_names, 20u);
}

TEST_MAIN();
