/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The authorisation policy end to end: the real tsmd reading a policy.conf (and drop-ins) of
 * the test's, clients of different uids driving it over the socket. Which client gets which
 * device and scope, with which reason when not; reloads that fail keep the policy in force
 * (and say where the error is), reloads under load switch atomically; per-client limits from
 * the rules; [Admin]; Groups= a reload adds or takes away, for clients connected before it.
 *
 * Runs in: tests. Most of it needs clients of other uids, so it SKIPs without root.
 */

#include <dirent.h>
#include <endian.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <systemd/sd-login.h>

#include "acl-xattr.h"
#include "config.h"
#include "emu-config.h"
#include "emu-device.h"
#include "tdisp.h"
#include "guest-calls.h"
#include "peer-identity.h"
#include "tsmd-fixture.h"
#include "varlink-errors.h"

#define G "io.tsmd.Guest."
#define E_GUEST(name) "io.tsmd.Guest." name

#define DEV1 "0000:01:00.0"
#define DEV2 "0000:02:00.0"
#define DEV3 "0000:03:00.0"
#define DEV4 "0000:04:00.0"
#define DEV5 "0000:05:00.0"

#define NOBODY 65534
#define OTHER_UID 4242

#define CONF_EMU(devices, extra)                                                                   \
        "[Platform]\nMode=emulated\nIommuDevice=/dev/zero\nEmulatedDevices=" devices "\n" extra
#define CONF_ZERO CONF_EMU(DEV1 "," DEV2, "")
/* The same with the emulated TSM serving the debug scopes (as mainline kernels do not), for the
 * policy to grant or refuse them. */
#define CONF_DEBUG CONF_EMU(DEV1 "," DEV2, "EmulatedDebugScopes=yes\n")

/* ---- calls -------------------------------------------------------------------------------- */

typedef struct Msg {
        uint8_t buf[2048];
        size_t len;
} Msg;

/* A message of type with no body. */
static Msg tdisp_msg(uint8_t type, const char *address) {
        Msg m = {};

        ASSERT_OK(tdisp_build_request(type, guest_function_id(address), NULL, 0, m.buf, sizeof(m.buf), &m.len));
        return m;
}

static Msg debug_msg(const char *address, uint8_t op) {
        Msg m = {};

        ASSERT_OK(emu_debug_build_request(guest_function_id(address), EMU_VENDOR_ID_DEFAULT, op, 8, op == EMU_DEBUG_OP_WRITE ? 7 : 0,
                                          m.buf, sizeof(m.buf), &m.len));
        return m;
}

static const char *request_params(int64_t ctx, int64_t vdev, const char *scope, const Msg *m) {
        _cleanup_free_ char *enc = b64(m->buf, m->len);

        return strf("{\"context\":%" PRIi64 ",\"vdeviceId\":%" PRIi64 ",\"scope\":\"%s\",\"request\":\"%s\","
                    "\"maxResponseSize\":4096}",
                    ctx, vdev, scope, enc);
}

/* The requests used below, each carried by its scope and changing nothing: GET_VERSION (info),
 * START_INTERFACE without its nonce (state-change; refused by the device with a TDISP ERROR, as
 * it is malformed), a debug READ (debug-read) and WRITE to a scratch register (debug-write). */
static Msg scope_msg(const char *scope, const char *address) {
        if (streq(scope, "info"))
                return tdisp_msg(TDISP_MSG_GET_VERSION, address);
        if (streq(scope, "state-change"))
                return tdisp_msg(TDISP_MSG_START_INTERFACE_REQ, address);
        if (streq(scope, "debug-read"))
                return debug_msg(address, EMU_DEBUG_OP_READ);
        return debug_msg(address, EMU_DEBUG_OP_WRITE);
}

/* A GuestRequest in scope; returns the error (NULL: it went through) and the reply. */
static const char *request_in(VarlinkClient *c, int64_t ctx, int64_t vdev, const char *scope, const char *address,
                              json_object **ret) {
        Msg m = scope_msg(scope, address);

        return tsmd_call(c, G "GuestRequest", request_params(ctx, vdev, scope, &m), ret);
}

static void expect_scope_ok(VarlinkClient *c, int64_t ctx, int64_t vdev, const char *scope, const char *address) {
        json_object *r = NULL;
        const char *error = request_in(c, ctx, vdev, scope, address, &r);

        if (error)
                TEST_FAIL("GuestRequest in scope %s refused: %s %s", scope, error, json_object_to_json_string(r));
        ASSERT_TRUE(strlen(JSTR(r, "response")) > 0);
}

static void expect_scope_denied(VarlinkClient *c, int64_t ctx, int64_t vdev, const char *scope, const char *address) {
        json_object *r = NULL;
        const char *error = request_in(c, ctx, vdev, scope, address, &r);
        const char *want = strf("{\"reason\":\"scope '%s' not granted\"}", scope);

        if (!error || !streq(error, E_GUEST("Denied")) || !json_matches(r, want))
                TEST_FAIL("GuestRequest in scope %s: expected Denied %s, got %s %s", scope, want, error ?: "success",
                          json_object_to_json_string(r));
}

/* The "allowed" flag AttachDevice reports for each scope. */
static void expect_allowed(json_object *attach_reply, bool info, bool state_change, bool debug_read, bool debug_write) {
        const bool want[] = { info, state_change, debug_read, debug_write };
        static const char *const names[] = { "info", "state-change", "debug-read", "debug-write" };
        json_object *scopes;

        ASSERT_TRUE(json_object_object_get_ex(attach_reply, "scopes", &scopes));
        ASSERT_EQ(json_object_array_length(scopes), ELEMENTSOF(names));
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                json_object *s = json_object_array_get_idx(scopes, i);

                ASSERT_STREQ(JSTR(s, "name"), names[i]);
                if (JBOOL(s, "allowed") != want[i])
                        TEST_FAIL("AttachDevice says scope %s is %sallowed", names[i], want[i] ? "not " : "");
        }
}

static void need_root(void) {
        if (!tsmd_can_switch_uid())
                SKIP("clients of other uids need root");
}

/* ---- reloads whose policy is refused ------------------------------------------------------ */

/*
 * SIGHUP after a broken policy: tsmd logs "...; keeping the policy in force." and nothing
 * about the configuration, so the fixture's tsmd_reload() (which waits for "Configuration
 * reloaded from" or "keeping the configuration in force") cannot be used; this waits for the
 * policy's line instead. Returns that log line (malloc'd).
 */
static char *reload_expect_policy_kept(Tsmd *t) {
        static const char kept[] = "keeping the policy in force";
        unsigned n = tsmd_log_count(t, kept), n_reloaded = tsmd_log_count(t, "Configuration reloaded from");
        _cleanup_free_ char *log = NULL;
        const char *p, *start;
        char *line;

        tsmd_kill(t, SIGHUP);
        if (!tsmd_wait_log(t, kept, n + 1, TSMD_WAIT_USEC))
                TEST_FAIL("tsmd did not log that it kept the policy within %llu ms of SIGHUP",
                          (unsigned long long) (TSMD_WAIT_USEC / USEC_PER_MSEC));
        ASSERT_TRUE(tsmd_is_running(t));
        ASSERT_EQ(tsmd_log_count(t, "Configuration reloaded from"), n_reloaded);

        log = tsmd_read_log(t);
        p = log;
        for (unsigned i = 0; i <= n; i++)
                p = strstr(p, kept) + (i < n ? strlen(kept) : 0);
        for (start = p; start > log && start[-1] != '\n'; start--)
                ;
        line = strndup(start, (size_t) (strchrnul(p, '\n') - start));
        ASSERT_NOT_NULL(line);
        return line;
}

/* ---- who gets which device and scope ------------------------------------------------------ */

static int on_followed(VarlinkClient *c, json_object *parameters, const char *error, bool continues,
                       void *userdata) {
        char *last_error = userdata;

        snprintf(last_error, 128, "%s", error ?: (continues ? "" : "(final reply)"));
        return 0;
}

/* Drives c until its stream's reply says error (bounded). */
static void follow_until(VarlinkClient *c, char *last_error, const char *error) {
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC; !streq(last_error, error);) {
                struct pollfd p = { .fd = varlink_client_get_fd(c), .events = varlink_client_get_events(c) };

                if (now_usec() > deadline)
                        TEST_FAIL("the follower got \"%s\", not \"%s\"", last_error, error);
                if (p.fd < 0)
                        TEST_FAIL("the follower's connection is gone");
                (void) poll(&p, 1, 50);
                ASSERT_OK(varlink_client_process(c));
        }
}

/* tsmd whose policy makes nobody an administrator, and two connections of nobody's to it:
 * *ret_follower follows the audit log (its replies to on_reply), answered once already (last_error
 * is on_followed()'s), and *ret_other has made an admin call. */
static void start_following_as_nobody(Tsmd *t, VarlinkReplyFunc on_reply, void *userdata, char *last_error,
                                      VarlinkClient **ret_follower, VarlinkClient **ret_other) {
        static const TsmdFile files[] = {
                { "policy.conf", "[Admin]\nUsers=65534\n[Client:vm]\nUsers=root\nDevices=" DEV1 "\n" },
        };

        tsmd_start(t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        /* The socket serving io.tsmd.Admin is for root and tsmd's group; the policy decides. */
        ASSERT_OK(chmod(t->socket, 0666));
        *ret_follower = tsmd_connect_to_as(t, t->socket, NOBODY, NOBODY);
        *ret_other = tsmd_connect_to_as(t, t->socket, NOBODY, NOBODY);
        ASSERT_OK(varlink_client_call_async(*ret_follower, "io.tsmd.Admin.FollowAudit", NULL, VARLINK_CALL_MORE,
                                            on_reply, userdata));
        follow_until(*ret_follower, last_error, "");
        CALL_OK(*ret_other, "io.tsmd.Admin.ListBackends", NULL);
}

/*
 * SECURITY: an administrator following the audit log sees every record. A reload whose policy
 * no longer names them ends the stream (PermissionDenied, as their next call is), where before
 * it kept every record coming.
 */
TEST(audit_follow_ends_with_the_admin_right) {
        char last_error[128] = "none yet";
        VarlinkClient *follower, *other;
        Tsmd t;

        need_root();
        start_following_as_nobody(&t, on_followed, last_error, last_error, &follower, &other);

        tsmd_write_file(&t, "policy.conf", "[Client:vm]\nUsers=root\nDevices=" DEV1 "\n");
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        follow_until(follower, last_error, VARLINK_ERROR_PERMISSION_DENIED);
        CALL_ERROR(other, "io.tsmd.Admin.ListBackends", NULL, VARLINK_ERROR_PERMISSION_DENIED, NULL);
        /* On record, as the refusal of a call is. */
        ASSERT_EQ(tsmd_audit_count_where(&t, 0, "\"uid\":65534", "io.tsmd.Admin.FollowAudit",
                                         VARLINK_ERROR_PERMISSION_DENIED),
                  1U);
        varlink_client_free(follower);
        varlink_client_free(other);
        tsmd_teardown(&t);
}

typedef struct Followed {
        char last_error[128];
        unsigned n_records;
} Followed;

static int on_followed_record(VarlinkClient *c, json_object *parameters, const char *error, bool continues,
                              void *userdata) {
        Followed *f = userdata;

        if (!error && json_object_object_get(parameters, "record"))
                f->n_records++;
        return on_followed(c, parameters, error, continues, f->last_error);
}

/* Drives c until it got more than n records, failing if its stream ended (bounded). */
static void follow_past(VarlinkClient *c, Followed *f, unsigned n) {
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC; f->n_records <= n;) {
                struct pollfd p = { .fd = varlink_client_get_fd(c), .events = varlink_client_get_events(c) };

                if (!streq(f->last_error, ""))
                        TEST_FAIL("the follower's stream ended: \"%s\"", f->last_error);
                if (now_usec() > deadline)
                        TEST_FAIL("the follower got no record past the %u-th", n);
                if (p.fd < 0)
                        TEST_FAIL("the follower's connection is gone");
                (void) poll(&p, 1, 50);
                ASSERT_OK(varlink_client_process(c));
        }
}

/* The other side of audit_follow_ends_with_the_admin_right: a reload whose policy still names
 * the follower an administrator (its rules for clients changed) keeps the stream going. */
TEST(audit_follow_survives_a_reload_that_keeps_the_admin_right) {
        Followed followed = { .last_error = "none yet" };
        VarlinkClient *follower, *other;
        unsigned n;
        Tsmd t;

        need_root();
        start_following_as_nobody(&t, on_followed_record, &followed, followed.last_error, &follower, &other);
        follow_past(follower, &followed, 0);

        tsmd_write_file(&t, "policy.conf", "[Admin]\nUsers=65534\n[Client:vm]\nUsers=root\nDevices=" DEV1 " " DEV2 "\n");
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        n = followed.n_records;
        CALL_OK(other, "io.tsmd.Admin.ListBackends", NULL);
        follow_past(follower, &followed, n);
        ASSERT_EQ(tsmd_audit_count_where(&t, 0, "\"uid\":65534", "io.tsmd.Admin.FollowAudit",
                                         VARLINK_ERROR_PERMISSION_DENIED),
                  0U);
        varlink_client_free(follower);
        varlink_client_free(other);
        tsmd_teardown(&t);
}

TEST(rule_grants_one_device_and_scope) {
        static const TsmdFile files[] = {
                { "policy.conf",
                  "# uid 65534 may use DEV1 in scope info; nobody else is a client\n"
                  "[Client:nobody-vm]\n"
                  "Users=65534\n"
                  "Devices=" DEV1 "\n"
                  "Scopes=info\n" },
        };
        Tsmd t;
        VarlinkClient *b, *root;
        json_object *r;
        int64_t ctx;

        need_root();
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_DEBUG, .files = files, .n_files = ELEMENTSOF(files) });
        b = tsmd_connect_as(&t, NOBODY, NOBODY);
        root = tsmd_connect(&t);

        ctx = guest_open_context(b);
        r = CALL_OK(b, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
        expect_allowed(r, true, false, false, false);
        CALL_ERROR(b, G "AttachDevice", guest_attach_params(ctx, 2, DEV2), E_GUEST("Denied"),
                   "{\"reason\":\"device not in any rule matching the client\"}");
        /* The refusal did not attach it. */
        CALL_ERROR(b, G "GetDeviceState", guest_vdev_params(ctx, 2), E_GUEST("NoSuchVDevice"), NULL);
        CALL_OK(b, G "Bind", guest_vdev_params(ctx, 1));

        expect_scope_ok(b, ctx, 1, "info", DEV1);
        expect_scope_denied(b, ctx, 1, "state-change", DEV1);
        expect_scope_denied(b, ctx, 1, "debug-read", DEV1);
        expect_scope_denied(b, ctx, 1, "debug-write", DEV1);

        /* Root matches no rule: not a client at all. */
        CALL_ERROR(root, G "OpenContext", NULL, E_GUEST("Denied"), "{\"reason\":\"no policy rule matches the client\"}");
        ASSERT_ERRNO(varlink_client_take_fd(root, 0), ENXIO); /* no iommufd came with the refusal */
        ASSERT_EQ(varlink_client_push_fd(root, open("/dev/zero", O_RDWR | O_CLOEXEC)), 0);
        CALL_ERROR(root, G "AdoptContext", "{\"fileDescriptor\":0}", E_GUEST("Denied"),
                   "{\"reason\":\"no policy rule matches the client\"}");

        /* A drop-in grants debug-read explicitly (replacing the rule's Scopes=). */
        ASSERT_OK(mkdir(strf("%s/policy.d", t.dir), 0755));
        write_file(strf("%s/policy.d/50-debug.conf", t.dir), "[Client:nobody-vm]\nScopes=info debug-read\n");
        ASSERT_TRUE(tsmd_reload(&t, CONF_DEBUG));
        expect_scope_ok(b, ctx, 1, "debug-read", DEV1);
        expect_scope_ok(b, ctx, 1, "info", DEV1);
        expect_scope_denied(b, ctx, 1, "debug-write", DEV1);
        expect_scope_denied(b, ctx, 1, "state-change", DEV1);
        /* AttachDevice reports the new grant. */
        CALL_OK(b, G "DetachDevice", guest_vdev_params(ctx, 1));
        r = CALL_OK(b, G "AttachDevice", guest_attach_params(ctx, 3, DEV1));
        expect_allowed(r, true, false, true, false);
        /* The rule still names DEV1 only, and root is still nobody. */
        CALL_ERROR(b, G "AttachDevice", guest_attach_params(ctx, 2, DEV2), E_GUEST("Denied"),
                   "{\"reason\":\"device not in any rule matching the client\"}");
        CALL_ERROR(root, G "OpenContext", NULL, E_GUEST("Denied"), "{\"reason\":\"no policy rule matches the client\"}");

        /* Masking the drop-in takes the grant away again. */
        ASSERT_OK(unlink(strf("%s/policy.d/50-debug.conf", t.dir)));
        ASSERT_OK(symlink("/dev/null", strf("%s/policy.d/50-debug.conf", t.dir)));
        ASSERT_TRUE(tsmd_reload(&t, CONF_DEBUG));
        CALL_OK(b, G "Bind", guest_vdev_params(ctx, 3));
        expect_scope_denied(b, ctx, 3, "debug-read", DEV1);
        expect_scope_ok(b, ctx, 3, "info", DEV1);

        varlink_client_free(b);
        varlink_client_free(root);
        tsmd_teardown(&t);
}

/* ---- a broken policy on reload -------------------------------------------------------------- */

#define POLICY_BOTH_SCOPES                                                                         \
        "[Client:tests]\n"                                                                         \
        "Users=root 65534\n"                                                                       \
        "Devices=*\n"                                                                              \
        "Scopes=info state-change\n"
#define POLICY_INFO_ONLY                                                                           \
        "[Client:tests]\n"                                                                         \
        "Users=root 65534\n"                                                                       \
        "Devices=*\n"                                                                              \
        "Scopes=info\n"
/* Would grant info only, but line 3 has an unknown key. */
#define POLICY_BROKEN                                                                              \
        "[Client:tests]\n"                                                                         \
        "Users=root 65534\n"                                                                       \
        "Bogus=yes\n"                                                                              \
        "Devices=*\n"                                                                              \
        "Scopes=info\n"

TEST(broken_policy_on_reload_keeps_the_old_one) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_BOTH_SCOPES } };
        Tsmd t;
        VarlinkClient *a;
        json_object *r = NULL;
        const char *error;
        int64_t ctx;

        need_root(); /* the client is root */
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        a = tsmd_connect(&t); /* root, on the socket serving every interface */
        ctx = guest_open_context(a);
        CALL_OK(a, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
        CALL_OK(a, G "Bind", guest_vdev_params(ctx, 1));
        expect_scope_ok(a, ctx, 1, "state-change", DEV1);

        /* SIGHUP: refused, with the place of the error in the log; tsmd goes on serving. */
        tsmd_write_file(&t, "policy.conf", POLICY_BROKEN);
        _cleanup_free_ char *line = reload_expect_policy_kept(&t);
        printf("# %s\n", line);
        if (!strstr(line, "policy.conf:3:") || !strstr(line, "Bogus"))
                TEST_FAIL("the log line does not name policy.conf:3 and the key: %s", line);
        /* The old policy is still in force: state-change still allowed, new contexts too. */
        expect_scope_ok(a, ctx, 1, "state-change", DEV1);
        expect_scope_ok(a, ctx, 1, "info", DEV1);
        int64_t ctx2 = guest_open_context(a);
        CALL_OK(a, G "AttachDevice", guest_attach_params(ctx2, 1, DEV2));

        /* io.tsmd.Service.Reload says the same to an administrator. */
        error = tsmd_call(a, "io.tsmd.Service.Reload", NULL, &r);
        ASSERT_STREQ(error, "io.tsmd.Service.ReloadFailed");
        const char *message = JSTR(r, "message");
        printf("# ReloadFailed: %s\n", message);
        if (!strstr(message, "policy.conf:3:"))
                TEST_FAIL("ReloadFailed does not name policy.conf:3: %s", message);
        expect_scope_ok(a, ctx, 1, "state-change", DEV1);

        /* Fixed, the new policy applies (through the method, then through SIGHUP). */
        tsmd_write_file(&t, "policy.conf", POLICY_INFO_ONLY);
        CALL_OK(a, "io.tsmd.Service.Reload", NULL);
        expect_scope_denied(a, ctx, 1, "state-change", DEV1);
        expect_scope_ok(a, ctx, 1, "info", DEV1);
        tsmd_write_file(&t, "policy.conf", POLICY_BOTH_SCOPES);
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        expect_scope_ok(a, ctx, 1, "state-change", DEV1);

        /* A drop-in with an error is refused the same way, naming its own file and line. */
        ASSERT_OK(mkdir(strf("%s/policy.d", t.dir), 0755));
        write_file(strf("%s/policy.d/10-bad.conf", t.dir), "[Client:tests]\n\nScopes=info bogus-scope\n");
        error = tsmd_call(a, "io.tsmd.Service.Reload", NULL, &r);
        ASSERT_STREQ(error, "io.tsmd.Service.ReloadFailed");
        message = JSTR(r, "message");
        if (!strstr(message, "10-bad.conf:3:"))
                TEST_FAIL("ReloadFailed does not name 10-bad.conf:3: %s", message);
        expect_scope_ok(a, ctx, 1, "state-change", DEV1);

        /* A reload refused for its policy changes nothing else either: not the emulated devices
         * (the monitor's and the worker's would disagree), not the limits. */
        ASSERT_FALSE(tsmd_reload(&t, CONF_EMU(DEV1, "")));
        CALL_OK(a, G "GetDeviceState", guest_vdev_params(ctx2, 1));
        ASSERT_EQ(tsmd_log_count(&t, "Device " DEV2 " is gone"), 0U);

        /* Reloading the policy is an admin action: on record, refusals by name. */
        tsmd_expect_audit(&t, 0, "io.tsmd.Service.Reload", "io.tsmd.Service.ReloadFailed", 2);
        tsmd_expect_audit(&t, 0, "io.tsmd.Service.Reload", "ok", 1);

        /* Each failed reload's record says why, as its caller was told (file:line); QueryAudit's
         * event "reload" finds them by SIGHUP ("reload") and by Reload alike, in log order. */
        static const struct {
                const char *event, *reason;
        } failed[] = {
                { "reload", "policy.conf:3:" },
                { "io.tsmd.Service.Reload", "policy.conf:3:" },
                { "io.tsmd.Service.Reload", "10-bad.conf:3:" },
                { "reload", "10-bad.conf:3:" },
        };
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC;
             tsmd_audit_count_where(&t, 0, NULL, "reload", "io.tsmd.Service.ReloadFailed") < 2;) {
                if (now_usec() > deadline)
                        TEST_FAIL("the record of the last reload by SIGHUP is not in the log");
                sleep_usec(2 * USEC_PER_MSEC);
        }
        json_object *records = tsmd_audit_query(&t, "{\"event\":\"reload\",\"result\":\"io.tsmd.Service.ReloadFailed\"}");
        ASSERT_EQ(json_object_array_length(records), ELEMENTSOF(failed));
        for (size_t i = 0; i < ELEMENTSOF(failed); i++) {
                json_object *rec = json_object_array_get_idx(records, i);

                ASSERT_STREQ(JSTR(rec, "event"), failed[i].event);
                if (!strstr(JSTR(rec, "reason"), failed[i].reason))
                        TEST_FAIL("record %zu of a failed reload does not say '%s': %s", i, failed[i].reason,
                                  json_object_to_json_string(rec));
        }
        json_object_put(records);
        records = tsmd_audit_query(&t, "{\"event\":\"reload\",\"result\":\"ok\"}");
        ASSERT_EQ(json_object_array_length(records), 2U);
        ASSERT_STREQ(JSTR(json_object_array_get_idx(records, 0), "event"), "io.tsmd.Service.Reload");
        ASSERT_STREQ(JSTR(json_object_array_get_idx(records, 1), "event"), "reload");
        for (size_t i = 0; i < 2; i++)
                ASSERT_FALSE(json_object_object_get_ex(json_object_array_get_idx(records, i), "reason", NULL));
        json_object_put(records);
        /* A method's own name finds its calls only. */
        records = tsmd_audit_query(&t, "{\"event\":\"io.tsmd.Service.Reload\"}");
        ASSERT_EQ(json_object_array_length(records), 3U);
        json_object_put(records);

        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* ---- a policy read in the middle of an edit ------------------------------------------------- */

#define POLICY_TDX_ONLY_PREFIX                                                                     \
        "[Client:tests]\n"                                                                         \
        "Users=root 65534\n"                                                                       \
        "Devices=" DEV1 "\n"                                                                       \
        "Scopes=info state-change\n"
/* The VMM's device is emulated: refused. Its prefix, without the last line, would allow it. */
#define POLICY_TDX_ONLY POLICY_TDX_ONLY_PREFIX "Backends=tdx-connect\n"
#define BACKEND_DENIED "{\"reason\":\"backend not allowed by the rules listing the device\"}"

/*
 * SECURITY: a reload that comes in the middle of an edit in place (cat >, an editor rewriting the
 * file) must not load what is written so far: without its last line, Backends=, the rule allows
 * more. The reload waits until the file has stopped changing and loads it whole.
 */
TEST(a_reload_in_the_middle_of_an_edit_waits_for_the_whole_file) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_TDX_ONLY } };
        static const char reloaded[] = "Configuration reloaded from";
        const char *path;
        _cleanup_close_ int fd = -EBADF;
        unsigned n;
        Tsmd t;
        VarlinkClient *a;
        int64_t ctx;

        need_root(); /* the client is root */
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        a = tsmd_connect(&t);
        ctx = guest_open_context(a);
        CALL_ERROR(a, G "AttachDevice", guest_attach_params(ctx, 1, DEV1), E_GUEST("Denied"), BACKEND_DENIED);

        /* The same file written again in place, in two writes with a reload between them. */
        path = strf("%s/policy.conf", t.dir);
        fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, POLICY_TDX_ONLY_PREFIX, strlen(POLICY_TDX_ONLY_PREFIX)),
                  (ssize_t) strlen(POLICY_TDX_ONLY_PREFIX));
        n = tsmd_log_count(&t, reloaded);
        tsmd_kill(&t, SIGHUP);
        /* Time for a reload that does not wait to load the half (without the fix it does). */
        (void) tsmd_wait_log(&t, reloaded, n + 1, 300 * USEC_PER_MSEC);
        ASSERT_EQ(write(fd, "Backends=tdx-connect\n", 21), 21);
        fd = safe_close(fd);
        if (!tsmd_wait_log(&t, reloaded, n + 1, TSMD_WAIT_USEC))
                TEST_FAIL("tsmd did not reload");

        /* Only the whole file loaded: the VMM is refused still. */
        CALL_ERROR(a, G "AttachDevice", guest_attach_params(ctx, 1, DEV1), E_GUEST("Denied"), BACKEND_DENIED);
        ASSERT_EQ(tsmd_log_count(&t, reloaded), n + 1);

        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* A write in place that goes on past the wait: the reload fails, saying so, and the policy in
 * force stays. A child appends a comment every 100 ms, holding the file open. */
TEST(a_reload_during_an_edit_that_does_not_end_keeps_the_policy) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_TDX_ONLY } };
        json_object *r = NULL;
        const char *error, *message;
        pid_t writer;
        int status;
        Tsmd t;
        VarlinkClient *a;
        int64_t ctx;

        need_root(); /* the client is root */
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        a = tsmd_connect(&t);

        fflush(NULL);
        writer = fork();
        ASSERT_TRUE(writer >= 0);
        if (writer == 0) {
                int fd = open(strf("%s/policy.conf", t.dir), O_WRONLY | O_TRUNC | O_CLOEXEC);

                if (fd < 0 || write(fd, POLICY_TDX_ONLY_PREFIX, strlen(POLICY_TDX_ONLY_PREFIX)) < 0)
                        _exit(1);
                for (unsigned i = 0; i < 600; i++) { /* a minute at most */
                        if (write(fd, "#\n", 2) < 0)
                                _exit(1);
                        usleep(100 * 1000);
                }
                _exit(0);
        }
        usleep(200 * 1000);
        error = tsmd_call(a, "io.tsmd.Service.Reload", NULL, &r);
        ASSERT_OK(kill(writer, SIGKILL));
        ASSERT_TRUE(waitpid(writer, &status, 0) == writer);
        ASSERT_STREQ(error, "io.tsmd.Service.ReloadFailed");
        message = JSTR(r, "message");
        printf("# ReloadFailed: %s\n", message);
        if (!strstr(message, "policy.conf") || !strstr(message, "in the middle of a write"))
                TEST_FAIL("ReloadFailed does not say the file is being written: %s", message);

        /* The policy in force is the whole file's: the VMM is refused still. */
        ctx = guest_open_context(a);
        CALL_ERROR(a, G "AttachDevice", guest_attach_params(ctx, 1, DEV1), E_GUEST("Denied"), BACKEND_DENIED);

        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* SECURITY: whoever can write the policy decides who gets the devices; files and drop-in
 * directories that others could write are refused whole, and the old policy stays. */
TEST(unsafe_policy_files_are_refused) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_BOTH_SCOPES } };
        Tsmd t;
        VarlinkClient *a;
        json_object *r = NULL;
        const char *error, *dir;
        struct passwd *worker;
        int64_t ctx;

        need_root(); /* chown */
        worker = getpwnam(TSMD_WORKER_USER);
        ASSERT_NOT_NULL(worker);
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        a = tsmd_connect(&t);
        ctx = guest_open_context(a);
        CALL_OK(a, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
        CALL_OK(a, G "Bind", guest_vdev_params(ctx, 1));

#define EXPECT_REFUSED(what)                                                                       \
        do {                                                                                       \
                error = tsmd_call(a, "io.tsmd.Service.Reload", NULL, &r);                          \
                if (!error || !streq(error, "io.tsmd.Service.ReloadFailed") ||                     \
                    !strstr(JSTR(r, "message"), (what)))                                           \
                        TEST_FAIL("Reload: expected ReloadFailed saying '%s', got %s %s", (what),  \
                                  error ?: "success", json_object_to_json_string(r));              \
                expect_scope_ok(a, ctx, 1, "state-change", DEV1); /* the old policy */             \
        } while (0)

        /* The main file, writable by everyone (and what it says would take state-change away). */
        tsmd_write_file(&t, "policy.conf", POLICY_INFO_ONLY);
        ASSERT_OK(chmod(strf("%s/policy.conf", t.dir), 0666));
        EXPECT_REFUSED("writable by every user");
        ASSERT_OK(chmod(strf("%s/policy.conf", t.dir), 0644));
        tsmd_write_file(&t, "policy.conf", POLICY_BOTH_SCOPES);

        /* A drop-in directory writable by everyone; a drop-in of another user; a FIFO. */
        dir = strf("%s/policy.d", t.dir);
        char path[400];
        snprintf(path, sizeof(path), "%s/20-info.conf", dir);
        ASSERT_OK(mkdir(dir, 0755));
        ASSERT_OK(chmod(dir, 0777));
        write_file(path, "[Client:tests]\nScopes=info\n");
        EXPECT_REFUSED("writable by every user");
        ASSERT_OK(chmod(dir, 0755));
        ASSERT_OK(chown(path, OTHER_UID, OTHER_UID));
        EXPECT_REFUSED("owned by uid 4242");
        /* Nor one the worker could have written, which a VMM might have taken over: as its
         * owner, or through its group. */
        ASSERT_OK(chown(path, worker->pw_uid, worker->pw_gid));
        EXPECT_REFUSED(strf("owned by uid %u", (unsigned) worker->pw_uid));
        ASSERT_OK(chown(path, 0, worker->pw_gid));
        ASSERT_OK(chmod(path, 0664));
        EXPECT_REFUSED("the unprivileged worker's");
        ASSERT_OK(unlink(path));
        ASSERT_OK(mkfifo(path, 0644));
        EXPECT_REFUSED("not a regular file");
        ASSERT_OK(unlink(path));
#undef EXPECT_REFUSED

        /* Made safe, it applies. */
        write_file(path, "[Client:tests]\nScopes=info\n");
        CALL_OK(a, "io.tsmd.Service.Reload", NULL);
        expect_scope_denied(a, ctx, 1, "state-change", DEV1);

        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* A reload refused with ReloadFailed saying what, the old policy left in force. */
static void expect_reload_refused(VarlinkClient *a, int64_t ctx, const char *what) {
        json_object *r = NULL;
        const char *error = tsmd_call(a, "io.tsmd.Service.Reload", NULL, &r);

        if (!error || !streq(error, "io.tsmd.Service.ReloadFailed") || !strstr(JSTR(r, "message"), what))
                TEST_FAIL("Reload: expected ReloadFailed saying '%s', got %s %s", what, error ?: "success",
                          json_object_to_json_string(r));
        expect_scope_ok(a, ctx, 1, "state-change", DEV1);
}

/* SECURITY: a POSIX ACL can let the worker write what the mode bits say it cannot; the daemon
 * refuses such a drop-in or directory as it would a group-writable one. With an ACL, the
 * mode's group bits show only the mask: whether the owning group writes is its own entry's say. */
TEST(acl_writable_policy_files_are_refused) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_BOTH_SCOPES } };
        const char *dir, *path;
        struct passwd *worker;
        VarlinkClient *a;
        int64_t ctx;
        Tsmd t;

        need_root(); /* chown */
        tacl_need_support(getenv("TSMD_TEST_TMPDIR") ?: "/tmp"); /* where tsmd_start() puts its files */
        worker = getpwnam(TSMD_WORKER_USER);
        ASSERT_NOT_NULL(worker);
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        a = tsmd_connect(&t);
        ctx = guest_open_context(a);
        CALL_OK(a, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
        CALL_OK(a, G "Bind", guest_vdev_params(ctx, 1));

        dir = strdupa(strf("%s/policy.d", t.dir));
        path = strdupa(strf("%s/20-info.conf", dir));
        ASSERT_OK(mkdir(dir, 0755));
        write_file(path, "[Client:tests]\nScopes=info\n");

        /* The worker's group, by name: the mode says root:root 0664. */
        TACL_SET(path, TA_USER_OBJ(TACL_RW), TA_GROUP_OBJ(TACL_R), TA_GROUP(worker->pw_gid, TACL_RW),
                 TA_MASK(TACL_RW), TA_OTHER(TACL_R));
        expect_reload_refused(a, ctx,
                              strf("%s: writable by gid %u, the unprivileged worker's, through an ACL; refusing to "
                                   "use it",
                                   path, (unsigned) worker->pw_gid));
        tacl_remove(path);
        ASSERT_OK(chmod(path, 0644));

        /* The worker's user, by name, on the directory. */
        TACL_SET(dir, TA_USER_OBJ(7), TA_USER(worker->pw_uid, 7), TA_GROUP_OBJ(5), TA_MASK(7), TA_OTHER(5));
        expect_reload_refused(a, ctx, strf("%s: directory %s is writable by uid %u through an ACL; refusing to use it",
                                           dir, dir, (unsigned) worker->pw_uid));
        tacl_remove(dir);
        ASSERT_OK(chmod(dir, 0755));

        /* The drop-in directory writable by another group, by the mode: it could link root's files
         * in, or take drop-ins away, so it is held to the rules of the directories above it. */
        ASSERT_OK(chown(dir, 0, OTHER_UID));
        ASSERT_OK(chmod(dir, 0775));
        expect_reload_refused(a, ctx, strf("%s: directory %s is writable by group %u; refusing to use it", dir, dir,
                                           (unsigned) OTHER_UID));
        ASSERT_OK(chown(dir, 0, 0));
        ASSERT_OK(chmod(dir, 0755));

        /* The worker's group owns the drop-in and may write it through its own entry. */
        ASSERT_OK(chown(path, 0, worker->pw_gid));
        TACL_SET(path, TA_USER_OBJ(TACL_RW), TA_GROUP_OBJ(TACL_RW), TA_MASK(TACL_RW), TA_OTHER(TACL_R));
        expect_reload_refused(a, ctx, "the unprivileged worker's");

        /* Safe: the mode still says 0664, but the group's own entry only reads (root writes, by
         * name). It applies. */
        TACL_SET(path, TA_USER_OBJ(TACL_RW), TA_USER(0, TACL_RW), TA_GROUP_OBJ(TACL_R), TA_MASK(TACL_RW),
                 TA_OTHER(TACL_R));
        CALL_OK(a, "io.tsmd.Service.Reload", NULL);
        expect_scope_denied(a, ctx, 1, "state-change", DEV1);

        /* Another group named with write, as the owning group with chmod 664 would be: accepted. */
        TACL_SET(path, TA_USER_OBJ(TACL_RW), TA_GROUP_OBJ(TACL_R), TA_GROUP(OTHER_UID, TACL_RW), TA_MASK(TACL_RW),
                 TA_OTHER(TACL_R));
        CALL_OK(a, "io.tsmd.Service.Reload", NULL);

        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* SECURITY: a file nobody else can write proves nothing in a directory somebody else can write
 * (they rename it away and put another in its place): a reload over a policy whose directory
 * became group-writable fails, naming the directory, and the old policy stays; made safe
 * again, the files load. Any group, not only the worker's: nobody chose to let it write there. */
TEST(a_policy_in_a_group_writable_directory_is_refused) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_BOTH_SCOPES } };
        struct stat st;
        VarlinkClient *a;
        int64_t ctx;
        Tsmd t;

        need_root(); /* chown */
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        a = tsmd_connect(&t);
        ctx = guest_open_context(a);
        CALL_OK(a, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
        CALL_OK(a, G "Bind", guest_vdev_params(ctx, 1));

        /* The file itself stays root's, 0644, and what it says would take state-change away. */
        tsmd_write_file(&t, "policy.conf", POLICY_INFO_ONLY);
        ASSERT_OK(stat(t.dir, &st));
        ASSERT_OK(chown(t.dir, 0, OTHER_UID));
        ASSERT_OK(chmod(t.dir, 0775));
        /* tsmd.conf, which names the policy, lives there too and is read first. */
        expect_reload_refused(a, ctx, strf("%s/tsmd.conf: directory %s is writable by group %u; refusing to use it",
                                           t.dir, t.dir, (unsigned) OTHER_UID));
        ASSERT_OK(chmod(t.dir, st.st_mode & 07777));
        ASSERT_OK(chown(t.dir, st.st_uid, st.st_gid));

        CALL_OK(a, "io.tsmd.Service.Reload", NULL);
        expect_scope_denied(a, ctx, 1, "state-change", DEV1);

        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* SECURITY: the monitor's scope gate reads the policy files as the worker does, and never one
 * the worker could have written: a worker started (after a crash) with such a file in place
 * gets, like the gate, the policy that loaded last, not the file's. Once the file is safe
 * again, a reload takes it. */
TEST(a_new_worker_and_the_monitor_refuse_a_worker_writable_policy) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_INFO_ONLY } };
        const char *path, *refusal;
        struct passwd *worker;
        VarlinkClient *a;
        int64_t ctx;
        Tsmd t;

        need_root(); /* chown */
        worker = getpwnam(TSMD_WORKER_USER);
        ASSERT_NOT_NULL(worker);
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        path = strdupa(strf("%s/policy.conf", t.dir));
        refusal = strdupa(strf("%s: writable by group %u, the unprivileged worker's; refusing to use it", path,
                               (unsigned) worker->pw_gid));

        /* What a worker could write there (more than the policy grants) is not what the next
         * worker, nor the gate, follows. */
        tsmd_write_file(&t, "policy.conf", POLICY_BOTH_SCOPES);
        ASSERT_OK(chown(path, 0, worker->pw_gid));
        ASSERT_OK(chmod(path, 0664));
        tsmd_kill_worker(&t);
        ASSERT_TRUE(tsmd_log_contains(&t, strf("for the monitor's scope checks (%s)", refusal)));
        ASSERT_TRUE(tsmd_log_contains(&t, "serving with the last configuration and policy that loaded"));
        a = tsmd_connect(&t);
        ctx = guest_open_context(a);
        CALL_OK(a, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
        CALL_OK(a, G "Bind", guest_vdev_params(ctx, 1));
        expect_scope_ok(a, ctx, 1, "info", DEV1);
        expect_scope_denied(a, ctx, 1, "state-change", DEV1);

        /* Safe again, a reload applies it. */
        ASSERT_OK(chmod(path, 0644));
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        expect_scope_ok(a, ctx, 1, "state-change", DEV1);
        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* ---- a restarted worker and broken files ---------------------------------------------------- */

#define POLICY_DEV1                                                                                \
        "[Client:tests]\n"                                                                         \
        "Users=root\n"                                                                             \
        "Devices=" DEV1 "\n"
#define POLICY_DEV1_DEV2                                                                           \
        "[Client:tests]\n"                                                                         \
        "Users=root\n"                                                                             \
        "Devices=" DEV1 " " DEV2 "\n"
/* Would grant every device, but line 3 has an unknown key (an edit half done). */
#define POLICY_BROKEN_ALL                                                                          \
        "[Client:tests]\n"                                                                         \
        "Users=root\n"                                                                             \
        "Devices=*\n"                                                                              \
        "Bogus=\n"
#define DEVICE_DENIED "{\"reason\":\"device not in any rule matching the client\"}"

/* A new client attaches DEV1 and, if dev2_allowed, DEV2; else DEV2 is Denied. Then it lets go. */
static void expect_devices(Tsmd *t, bool dev2_allowed) {
        VarlinkClient *a = tsmd_connect(t);
        int64_t ctx = guest_open_context(a);

        CALL_OK(a, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
        if (dev2_allowed)
                CALL_OK(a, G "AttachDevice", guest_attach_params(ctx, 2, DEV2));
        else
                CALL_ERROR(a, G "AttachDevice", guest_attach_params(ctx, 2, DEV2), E_GUEST("Denied"), DEVICE_DENIED);
        /* Closed now: a context whose client hung up may be kept by a worker killed next. */
        CALL_OK(a, G "CloseContext", strf("{\"context\":%" PRIi64 "}", ctx));
        varlink_client_free(a);
}

/* A worker that dies while the policy on disk is broken comes back with the policy that loaded
 * last (at start, or at the last reload that succeeded), saying so, instead of failing until
 * the file is fixed; a reload then takes the fixed file. */
TEST(a_restarted_worker_serves_the_last_good_policy) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_DEV1 } };
        static const char last_good[] = "serving with the last configuration and policy that loaded";
        Tsmd t;

        need_root(); /* the client is root, on the socket serving every interface */
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        expect_devices(&t, false);

        tsmd_write_file(&t, "policy.conf", POLICY_BROKEN_ALL);
        tsmd_kill_worker(&t);
        ASSERT_TRUE(tsmd_log_contains(&t, "policy.conf:4:"));
        ASSERT_EQ(tsmd_log_count(&t, last_good), 1u);
        ASSERT_TRUE(tsmd_log_contains(&t, strf("%s, as tsmd read them when they did: '%s/tsmd.conf', '%s/policy.conf'.",
                                               last_good, t.dir, t.dir)));
        expect_devices(&t, false); /* the old policy: DEV1 yes, DEV2 no */

        /* Fixed, a reload takes it, and it is the last good one from then on. */
        tsmd_write_file(&t, "policy.conf", POLICY_DEV1_DEV2);
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        expect_devices(&t, true);
        tsmd_write_file(&t, "policy.conf", POLICY_BROKEN_ALL);
        ASSERT_FALSE(tsmd_reload(&t, CONF_ZERO));
        tsmd_kill_worker(&t);
        ASSERT_EQ(tsmd_log_count(&t, last_good), 2u);
        expect_devices(&t, true);

        /* With good files, a new worker takes them and says nothing of old ones. */
        tsmd_write_file(&t, "policy.conf", POLICY_DEV1);
        tsmd_kill_worker(&t);
        ASSERT_EQ(tsmd_log_count(&t, last_good), 2u);
        expect_devices(&t, false);
        tsmd_teardown(&t);
}

/* The same for tsmd.conf: the emulated devices stay those that loaded, for the monitor and the
 * new worker alike, until a reload takes the fixed file. */
TEST(a_restarted_worker_serves_the_last_good_configuration) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_DEV1_DEV2 } };
        Tsmd t;

        need_root();
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        expect_devices(&t, true);

        /* Broken at line 5, it would take DEV2 away. */
        tsmd_write_config(&t, CONF_EMU(DEV1, "Bogus=1\n"));
        tsmd_kill_worker(&t);
        ASSERT_TRUE(tsmd_log_contains(&t, "tsmd.conf:5: unknown key 'Bogus' in [Platform] (valid: Mode, IommuDevice, EmulatedDevices, EmulatedLatencyUSec, EmulatedDebugScopes, RequestTimeoutUSec)."));
        ASSERT_TRUE(tsmd_log_contains(&t, "serving with the last configuration and policy that loaded"));
        expect_devices(&t, true);
        ASSERT_EQ(tsmd_log_count(&t, "Device " DEV2 " is no longer emulated."), 0U);

        /* Fixed, a reload takes it, in the monitor and the worker. */
        ASSERT_TRUE(tsmd_reload(&t, CONF_EMU(DEV1, "")));
        ASSERT_TRUE(tsmd_wait_log(&t, "Device " DEV2 " is no longer emulated.", 2, TSMD_WAIT_USEC));
        tsmd_teardown(&t);
}

/* GetStatus's configuration, as an administrator (root) sees it; its source returned. */
static json_object *status_configuration(VarlinkClient *c) {
        json_object *r = CALL_OK(c, "io.tsmd.Service.GetStatus", NULL), *cfg;

        ASSERT_TRUE(json_object_object_get_ex(r, "configuration", &cfg));
        printf("# configuration: %s\n", json_object_to_json_string_ext(cfg, JSON_C_TO_STRING_PLAIN));
        return cfg;
}

static bool has_key(json_object *o, const char *key) {
        return json_object_object_get_ex(o, key, NULL);
}

/* Anyone but an administrator learns only whether the files on disk are in force. */
static void expect_public_configuration(VarlinkClient *c, const char *source) {
        json_object *cfg = status_configuration(c);

        ASSERT_STREQ(JSTR(cfg, "source"), source);
        ASSERT_EQ(json_object_object_length(cfg), 1);
}

/*
 * An administrator can tell from GetStatus that tsmd serves an older configuration than the
 * files on disk, since when and why: after a reload that failed (the old set still in force),
 * and after a worker restarted over the broken files (the last good set, the reason as a
 * reload reads it); a reload of fixed files clears it. Anyone else sees whether, not why.
 */
TEST(status_tells_whether_the_files_on_disk_are_in_force) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_DEV1 } };
        uint64_t started = now_realtime_usec(), broken, loaded;
        VarlinkClient *root, *other;
        json_object *cfg, *r = NULL;
        _cleanup_free_ char *reload_error = NULL;
        Tsmd t;

        need_root();
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        root = tsmd_connect(&t);
        other = tsmd_connect_as(&t, NOBODY, NOBODY);

        /* (1) A fresh start: the files on disk, when they loaded, which they are. */
        cfg = status_configuration(root);
        ASSERT_STREQ(JSTR(cfg, "source"), "disk");
        ASSERT_STREQ(JSTR(cfg, "configFile"), strf("%s/tsmd.conf", t.dir));
        ASSERT_STREQ(JSTR(cfg, "policyFile"), strf("%s/policy.conf", t.dir));
        loaded = (uint64_t) JINT(cfg, "loadedUsec");
        ASSERT_TRUE(loaded >= started && loaded <= now_realtime_usec());
        ASSERT_FALSE(has_key(cfg, "error"));
        ASSERT_FALSE(has_key(cfg, "failedUsec"));
        expect_public_configuration(other, "disk");

        /* (2) A reload of a broken policy is refused, the old set stays, and GetStatus says so
         * afterwards with ReloadFailed's reason. */
        sleep_usec(2 * USEC_PER_MSEC);
        broken = now_realtime_usec();
        tsmd_write_file(&t, "policy.conf", POLICY_BROKEN_ALL);
        ASSERT_STREQ(tsmd_call(root, "io.tsmd.Service.Reload", NULL, &r), "io.tsmd.Service.ReloadFailed");
        reload_error = strdup(JSTR(r, "message"));
        ASSERT_NOT_NULL(reload_error);
        cfg = status_configuration(root);
        ASSERT_STREQ(JSTR(cfg, "source"), "last_good");
        ASSERT_STREQ(JSTR(cfg, "error"), reload_error);
        ASSERT_NOT_NULL(strstr(reload_error, "policy.conf:4:"));
        ASSERT_TRUE((uint64_t) JINT(cfg, "failedUsec") >= broken);
        ASSERT_EQ((uint64_t) JINT(cfg, "loadedUsec"), loaded);
        ASSERT_STREQ(JSTR(cfg, "policyFile"), strf("%s/policy.conf", t.dir));
        expect_devices(&t, false); /* still the old policy: DEV1 yes, DEV2 no */
        /* (5) The reason quotes the policy: an administrator's only. */
        expect_public_configuration(other, "last_good");

        /* (3) A worker restarted over the broken files serves the last good set, as the monitor
         * loaded it before they broke, and says why. */
        varlink_client_free(root);
        varlink_client_free(other);
        tsmd_kill_worker(&t);
        root = tsmd_connect(&t);
        other = tsmd_connect_as(&t, NOBODY, NOBODY);
        cfg = status_configuration(root);
        ASSERT_STREQ(JSTR(cfg, "source"), "last_good");
        /* As the monitor logged it, and as the failed reload said. */
        ASSERT_STREQ(JSTR(cfg, "error"), reload_error);
        ASSERT_TRUE(tsmd_log_contains(&t, strf("tsmd: Failed to load the policy for the monitor's scope checks (%s)",
                                               reload_error)));
        ASSERT_TRUE((uint64_t) JINT(cfg, "failedUsec") >= broken);
        ASSERT_TRUE((uint64_t) JINT(cfg, "loadedUsec") >= started);
        ASSERT_TRUE((uint64_t) JINT(cfg, "loadedUsec") < broken);
        expect_devices(&t, false);
        expect_public_configuration(other, "last_good");
        /* The journal says it too, as before. */
        ASSERT_TRUE(tsmd_log_contains(&t, "serving with the last configuration and policy that loaded"));

        /* (4) Fixed and reloaded: the files on disk again, no error. */
        tsmd_write_file(&t, "policy.conf", POLICY_DEV1_DEV2);
        CALL_OK(root, "io.tsmd.Service.Reload", NULL);
        cfg = status_configuration(root);
        ASSERT_STREQ(JSTR(cfg, "source"), "disk");
        ASSERT_FALSE(has_key(cfg, "error"));
        ASSERT_FALSE(has_key(cfg, "failedUsec"));
        ASSERT_TRUE((uint64_t) JINT(cfg, "loadedUsec") > broken);
        expect_devices(&t, true);
        expect_public_configuration(other, "disk");

        varlink_client_free(root);
        varlink_client_free(other);
        tsmd_teardown(&t);
}

/* GetStatus's configuration.changedOnDisk as JSON text, and its count. */
static const char *changed_on_disk(VarlinkClient *c, int64_t *ret_count) {
        json_object *cfg = status_configuration(c), *a;

        ASSERT_TRUE(json_object_object_get_ex(cfg, "changedOnDisk", &a));
        if (ret_count)
                *ret_count = JINT(cfg, "changedOnDiskCount");
        return strf("%s", json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* Waits until changedOnDisk is expected (the monitor checks a moment after a change). */
static void await_changed_on_disk(VarlinkClient *c, const char *expected) {
        _cleanup_free_ char *want = strdup(expected); /* strf()'s ring turns over meanwhile */

        ASSERT_NOT_NULL(want);
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC;; sleep_usec(20 * USEC_PER_MSEC)) {
                if (streq(changed_on_disk(c, NULL), want))
                        return;
                if (now_usec() > deadline)
                        TEST_FAIL("changedOnDisk is not %s", want);
        }
}

/* A drop-in written whole (renamed into place under a name the loader ignores while written). */
static void write_dropin(Tsmd *t, const char *name, const char *text) {
        const char *tmp = strf("%s/policy.d/.%s.tmp", t->dir, name);

        write_file(tmp, text);
        ASSERT_OK(rename(tmp, strf("%s/policy.d/%s", t->dir, name)));
}

/*
 * As systemd says a unit file changed on disk: GetStatus names, to administrators, the files of
 * the set in force whose contents differ from what its load read (an edit not reloaded yet), in
 * the order tsmd reads them, drop-ins added and removed since included; a touch, or the same
 * bytes written again, is no change. A reload clears it at once (its answer comes after the
 * monitor's new list), and anyone else sees source alone.
 */
TEST(status_names_the_files_changed_on_disk_until_a_reload) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_DEV1 } };
        const char *conf, *policy, *dropin, *added, *masked;
        VarlinkClient *root, *other;
        int64_t count;
        Tsmd t;

        need_root();
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        ASSERT_OK(mkdir(strf("%s/policy.d", t.dir), 0755));
        write_dropin(&t, "10-a.conf", "[Client:a]\nUsers=4242\nDevices=" DEV2 "\n");
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        conf = strdupa(strf("%s/tsmd.conf", t.dir));
        policy = strdupa(strf("%s/policy.conf", t.dir));
        dropin = strdupa(strf("%s/policy.d/10-a.conf", t.dir));
        added = strdupa(strf("%s/policy.d/20-b.conf", t.dir));
        masked = strdupa(strf("%s/policy.d/30-masked.conf", t.dir));
        root = tsmd_connect(&t);
        other = tsmd_connect_as(&t, NOBODY, NOBODY);

        ASSERT_STREQ(changed_on_disk(root, &count), "[]");
        ASSERT_EQ(count, 0);

        /* A touch, the same bytes renamed over it, and a masked drop-in: no change. The edit of
         * the drop-in after them says when the monitor looked. */
        ASSERT_OK(utimensat(AT_FDCWD, policy, NULL, 0));
        tsmd_write_file(&t, "policy.conf", POLICY_DEV1);
        ASSERT_OK(symlink("/dev/null", masked));
        write_dropin(&t, "10-a.conf", "[Client:a]\nUsers=4242\nDevices=" DEV1 "\n");
        await_changed_on_disk(root, strf("[\"%s\"]", dropin));
        expect_public_configuration(other, "disk");

        /* The policy file edited too: named first, as tsmd reads it; a new drop-in last. */
        tsmd_write_file(&t, "policy.conf", POLICY_DEV1_DEV2);
        write_dropin(&t, "20-b.conf", "[Client:b]\nUsers=4243\nDevices=" DEV2 "\n");
        await_changed_on_disk(root, strf("[\"%s\",\"%s\",\"%s\"]", policy, dropin, added));
        ASSERT_STREQ(changed_on_disk(root, &count), strf("[\"%s\",\"%s\",\"%s\"]", policy, dropin, added));
        ASSERT_EQ(count, 3);
        expect_public_configuration(other, "disk");

        /* Reloaded: nothing differs, from the answer on. */
        CALL_OK(root, "io.tsmd.Service.Reload", NULL);
        ASSERT_STREQ(changed_on_disk(root, &count), "[]");
        ASSERT_EQ(count, 0);
        expect_devices(&t, true);

        /* A drop-in removed, and tsmd.conf edited (a comment is a change of its bytes). */
        ASSERT_OK(unlink(added));
        await_changed_on_disk(root, strf("[\"%s\"]", added));
        tsmd_write_config(&t, CONF_ZERO "# edited\n");
        await_changed_on_disk(root, strf("[\"%s\",\"%s\"]", conf, added));

        /* A broken edit that a reload refuses stays named, with source last_good. */
        tsmd_write_file(&t, "policy.conf", POLICY_BROKEN_ALL);
        await_changed_on_disk(root, strf("[\"%s\",\"%s\",\"%s\"]", conf, policy, added));
        ASSERT_STREQ(tsmd_call(root, "io.tsmd.Service.Reload", NULL, NULL), "io.tsmd.Service.ReloadFailed");
        ASSERT_STREQ(changed_on_disk(root, NULL), strf("[\"%s\",\"%s\",\"%s\"]", conf, policy, added));
        expect_public_configuration(other, "last_good");

        /* A worker restarted over them is told too. */
        varlink_client_free(root);
        varlink_client_free(other);
        tsmd_kill_worker(&t);
        root = tsmd_connect(&t);
        other = tsmd_connect_as(&t, NOBODY, NOBODY);
        await_changed_on_disk(root, strf("[\"%s\",\"%s\",\"%s\"]", conf, policy, added));
        expect_public_configuration(other, "last_good");

        /* Put back as loaded: nothing differs, no reload needed. */
        tsmd_write_file(&t, "policy.conf", POLICY_DEV1_DEV2);
        write_dropin(&t, "20-b.conf", "[Client:b]\nUsers=4243\nDevices=" DEV2 "\n");
        await_changed_on_disk(root, strf("[\"%s\"]", conf));

        varlink_client_free(root);
        varlink_client_free(other);
        tsmd_teardown(&t);
}

/*
 * A policy file that is a symlink into another directory (as /etc/tsmd/policy.conf kept in a
 * directory of its own) is edited there, not where the link is: the edit is told as soon as one
 * of a plain file (the target's directory is watched too), with the path tsmd reads, whether
 * written in place or renamed over, and a reload clears it. At log level info, so that no log
 * line (tsmd.log is in the directory of tsmd.conf, watched) starts a check after the edit:
 * only the edit may, and the checks the reload's lines started are over before it.
 */
TEST(status_names_a_symlinked_file_edited_in_its_targets_directory) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_DEV1 } };
        const char *policy, *target, *tmp;
        VarlinkClient *root;
        Tsmd t;

        need_root();
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files),
                                        .log_level = "info" });
        policy = strdupa(strf("%s/policy.conf", t.dir));
        target = strdupa(strf("%s/elsewhere/policy.conf", t.dir));
        tmp = strdupa(strf("%s/elsewhere/.policy.conf.tmp", t.dir));
        ASSERT_OK(mkdir(strf("%s/elsewhere", t.dir), 0755));
        write_file(target, POLICY_DEV1);
        ASSERT_OK(unlink(policy));
        ASSERT_OK(symlink("elsewhere/policy.conf", policy));
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        root = tsmd_connect(&t);
        ASSERT_STREQ(changed_on_disk(root, NULL), "[]");
        sleep_usec(500 * USEC_PER_MSEC);

        /* Renamed over, as editors write. */
        write_file(tmp, POLICY_DEV1_DEV2);
        ASSERT_OK(rename(tmp, target));
        await_changed_on_disk(root, strf("[\"%s\"]", policy));
        CALL_OK(root, "io.tsmd.Service.Reload", NULL);
        ASSERT_STREQ(changed_on_disk(root, NULL), "[]");
        expect_devices(&t, true);
        sleep_usec(500 * USEC_PER_MSEC);

        /* Written in place. */
        write_file(target, POLICY_DEV1);
        await_changed_on_disk(root, strf("[\"%s\"]", policy));

        varlink_client_free(root);
        tsmd_teardown(&t);
}

/* The configuration of the latest status a GetStatus subscription got once it says source. */
static json_object *await_source(VarlinkClient *c, AsyncCall *st, const char *source) {
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC;;
             (void) tsmd_async_wait(c, st, st->n + 1, 50 * USEC_PER_MSEC)) {
                json_object *cfg;

                if (st->n > 0 && !st->errors[st->n - 1] &&
                    json_object_object_get_ex(st->params[st->n - 1], "configuration", &cfg) &&
                    streq(JSTR(cfg, "source"), source))
                        return cfg;
                if (now_usec() > deadline || st->n == ASYNC_MAX_REPLIES || st->done)
                        TEST_FAIL("no status with source %s came to the subscriber", source);
        }
}

/* tsmd on POLICY_DEV1, root's connection, and two GetStatus subscriptions, an administrator's
 * (root's) and another user's (nobody's), each with its first status. */
typedef struct StatusWatchers {
        Tsmd t;
        VarlinkClient *root, *admin_watch, *other_watch;
        AsyncCall a, o;
} StatusWatchers;

static void status_watchers_start(StatusWatchers *w) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_DEV1 } };

        need_root();
        *w = (StatusWatchers) {};
        tsmd_start(&w->t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        w->root = tsmd_connect(&w->t);
        w->admin_watch = tsmd_connect(&w->t);
        w->other_watch = tsmd_connect_as(&w->t, NOBODY, NOBODY);
        tsmd_call_async(w->admin_watch, "io.tsmd.Service.GetStatus", NULL, VARLINK_CALL_MORE, &w->a);
        tsmd_call_async(w->other_watch, "io.tsmd.Service.GetStatus", NULL, VARLINK_CALL_MORE, &w->o);
        await_source(w->admin_watch, &w->a, "disk");
        await_source(w->other_watch, &w->o, "disk");
}

static void status_watchers_stop(StatusWatchers *w) {
        async_call_done(&w->a);
        async_call_done(&w->o);
        varlink_client_free(w->root);
        varlink_client_free(w->admin_watch);
        varlink_client_free(w->other_watch);
        tsmd_teardown(&w->t);
}

/* Subscribers hear of it when it happens, each as much as it may know. */
TEST(status_subscribers_hear_of_a_failed_reload) {
        StatusWatchers w;
        json_object *cfg;

        status_watchers_start(&w);
        tsmd_write_file(&w.t, "policy.conf", POLICY_BROKEN_ALL);
        ASSERT_STREQ(tsmd_call(w.root, "io.tsmd.Service.Reload", NULL, NULL), "io.tsmd.Service.ReloadFailed");
        cfg = await_source(w.admin_watch, &w.a, "last_good");
        ASSERT_NOT_NULL(strstr(JSTR(cfg, "error"), "policy.conf:4:"));
        cfg = await_source(w.other_watch, &w.o, "last_good");
        ASSERT_EQ(json_object_object_length(cfg), 1);

        tsmd_write_file(&w.t, "policy.conf", POLICY_DEV1);
        CALL_OK(w.root, "io.tsmd.Service.Reload", NULL);
        cfg = await_source(w.admin_watch, &w.a, "disk");
        ASSERT_FALSE(has_key(cfg, "error"));
        await_source(w.other_watch, &w.o, "disk");
        status_watchers_stop(&w);
}

/* Until the latest status a GetStatus subscription got names n files changed on disk. */
static json_object *await_changed_count(VarlinkClient *c, AsyncCall *st, int64_t n) {
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC;;
             (void) tsmd_async_wait(c, st, st->n + 1, 50 * USEC_PER_MSEC)) {
                json_object *cfg;

                if (st->n > 0 && !st->errors[st->n - 1] &&
                    json_object_object_get_ex(st->params[st->n - 1], "configuration", &cfg) &&
                    has_key(cfg, "changedOnDiskCount") && JINT(cfg, "changedOnDiskCount") == n)
                        return cfg;
                if (now_usec() > deadline || st->n == ASYNC_MAX_REPLIES || st->done)
                        TEST_FAIL("no status with %" PRIi64 " files changed on disk came to the subscriber", n);
        }
}

/* A file edited on disk is told to a subscriber who administers, with the path, and again once a
 * reload applied it; anyone else's subscription is not told (when an administrator edits the
 * policy is none of its business). */
TEST(status_subscribers_who_administer_hear_of_files_changed_on_disk) {
        StatusWatchers w;
        json_object *cfg;
        size_t told;

        status_watchers_start(&w);
        told = w.o.n;
        tsmd_write_file(&w.t, "policy.conf", POLICY_DEV1_DEV2);
        cfg = await_changed_count(w.admin_watch, &w.a, 1);
        ASSERT_STREQ(json_object_get_string(json_object_array_get_idx(json_object_object_get(cfg, "changedOnDisk"), 0)),
                     strf("%s/policy.conf", w.t.dir));
        tsmd_pump(w.other_watch, 300 * USEC_PER_MSEC);
        ASSERT_EQ(w.o.n, told);

        CALL_OK(w.root, "io.tsmd.Service.Reload", NULL);
        await_changed_count(w.admin_watch, &w.a, 0);
        status_watchers_stop(&w);
}

/* Until the latest status a GetStatus subscription got says n connections. */
static void await_connections(VarlinkClient *c, AsyncCall *st, int64_t n) {
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC;;
             (void) tsmd_async_wait(c, st, st->n + 1, 50 * USEC_PER_MSEC)) {
                if (st->n > 0 && !st->errors[st->n - 1] && JINT(st->params[st->n - 1], "connections") == n)
                        return;
                if (now_usec() > deadline || st->n == ASYNC_MAX_REPLIES || st->done)
                        TEST_FAIL("no status with %" PRIi64 " connections came to the subscriber", n);
        }
}

/* How many connections tsmd has is told to administrators only, and so is a change of it:
 * anyone else could watch another tenant's VMMs come and go (subscriber or not). */
TEST(status_connections_are_told_to_administrators_only) {
        VarlinkClient *comer;
        StatusWatchers w;
        json_object *v;
        size_t told;

        status_watchers_start(&w);
        await_connections(w.admin_watch, &w.a, 3);
        ASSERT_TRUE(json_object_object_get_ex(w.o.params[w.o.n - 1], "connections", &v));
        ASSERT_NULL(v);
        told = w.o.n;

        /* Another user's VMM comes and goes: the administrator hears of each, with the count... */
        comer = tsmd_connect_as(&w.t, NOBODY, NOBODY);
        CALL_OK(comer, "io.tsmd.Service.Ping", NULL);
        await_connections(w.admin_watch, &w.a, 4);
        varlink_client_free(comer);
        await_connections(w.admin_watch, &w.a, 3);
        /* ...and the other subscriber not even of when (it would be, in the same pass). */
        tsmd_pump(w.other_watch, 300 * USEC_PER_MSEC);
        ASSERT_EQ(w.o.n, told);

        /* What it may know, it hears of. */
        tsmd_write_file(&w.t, "policy.conf", POLICY_BROKEN_ALL);
        ASSERT_STREQ(tsmd_call(w.root, "io.tsmd.Service.Reload", NULL, NULL), "io.tsmd.Service.ReloadFailed");
        await_source(w.other_watch, &w.o, "last_good");
        ASSERT_TRUE(json_object_object_get_ex(w.o.params[w.o.n - 1], "connections", &v));
        ASSERT_NULL(v);
        status_watchers_stop(&w);
}

/* The error quotes the file: it is cut as ReloadFailed's message is, to 512 bytes (a drop-in
 * of a long name, a rule of a long name and an unknown key make it longer). */
TEST(status_error_is_cut_as_reload_failed_is) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_DEV1 } };
        char name[241], rule[129], key[101];
        _cleanup_free_ char *message = NULL;
        VarlinkClient *root;
        json_object *cfg, *r = NULL;
        Tsmd t;

        need_root();
        memset(name, 'd', sizeof(name) - 1);
        name[sizeof(name) - 1] = 0;
        memset(rule, 'r', sizeof(rule) - 1);
        rule[sizeof(rule) - 1] = 0;
        memset(key, 'K', sizeof(key) - 1);
        key[sizeof(key) - 1] = 0;
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        root = tsmd_connect(&t);
        ASSERT_OK(mkdir(strf("%s/policy.d", t.dir), 0755));
        write_file(strf("%s/policy.d/%s.conf", t.dir, name), strf("[Client:%s]\n%s=1\n", rule, key));
        ASSERT_STREQ(tsmd_call(root, "io.tsmd.Service.Reload", NULL, &r), "io.tsmd.Service.ReloadFailed");
        message = strdup(JSTR(r, "message"));
        ASSERT_NOT_NULL(message);
        ASSERT_EQ(strlen(message), 512u);
        ASSERT_STREQ(message + 509, "...");
        cfg = status_configuration(root);
        ASSERT_STREQ(JSTR(cfg, "error"), message);
        /* The log has it whole. */
        ASSERT_TRUE(tsmd_log_contains(&t, strf("%s.conf:2: unknown key '", name)));
        ASSERT_TRUE(tsmd_log_contains(&t, strf(" in [Client:%s] (valid: ", rule)));
        varlink_client_free(root);
        tsmd_teardown(&t);
}

/* A broken tsmd.conf, the same: its file and line, until a reload of the fixed file. */
TEST(status_names_a_broken_configuration_file) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_DEV1_DEV2 } };
        VarlinkClient *root;
        json_object *cfg;
        Tsmd t;

        need_root();
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        tsmd_write_config(&t, CONF_EMU(DEV1, "Bogus=1\n"));
        tsmd_kill_worker(&t);
        root = tsmd_connect(&t);
        cfg = status_configuration(root);
        ASSERT_STREQ(JSTR(cfg, "source"), "last_good");
        ASSERT_STREQ(JSTR(cfg, "error"), strf("%s/tsmd.conf:5: unknown key 'Bogus' in [Platform] (valid: Mode, IommuDevice, EmulatedDevices, EmulatedLatencyUSec, EmulatedDebugScopes, RequestTimeoutUSec)", t.dir));
        expect_devices(&t, true);

        ASSERT_TRUE(tsmd_reload(&t, CONF_EMU(DEV1, "")));
        cfg = status_configuration(root);
        ASSERT_STREQ(JSTR(cfg, "source"), "disk");
        ASSERT_FALSE(has_key(cfg, "error"));
        varlink_client_free(root);
        tsmd_teardown(&t);
}

/* The reload that fails (the files have an error, and are root's only) answers with the
 * monitor's reason, naming file and line, which GetStatus then says; the worker logs it. */
static char *expect_refused_for(Tsmd *t, VarlinkClient *root, const char *why, const char *kept) {
        json_object *cfg, *r = NULL;
        char *message;

        ASSERT_STREQ(tsmd_call(root, "io.tsmd.Service.Reload", NULL, &r), "io.tsmd.Service.ReloadFailed");
        message = strdup(JSTR(r, "message"));
        ASSERT_NOT_NULL(message);
        printf("# ReloadFailed: %s\n", message);
        if (!strstr(message, why))
                TEST_FAIL("ReloadFailed does not give the monitor's reason '%s': %s", why, message);
        cfg = status_configuration(root);
        ASSERT_STREQ(JSTR(cfg, "source"), "last_good");
        ASSERT_STREQ(JSTR(cfg, "error"), message);
        ASSERT_TRUE(tsmd_log_contains(t, strf("tsmd-worker: %s", why)));
        ASSERT_TRUE(tsmd_log_contains(t, kept));
        return message;
}

/*
 * The monitor (root) refuses files the worker cannot read: a policy file, then a tsmd.conf,
 * only root may read, each with an error. Only the monitor can say where the error is, and it
 * does: ReloadFailed, GetStatus (after the reload, and for a worker restarted over the files)
 * and the worker's log give its reason, naming the file and line. A worker reading the files
 * itself to explain the refusal could only say that it may not read them.
 */
TEST(a_refusal_says_what_only_the_monitor_could_read) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_DEV1 } };
        _cleanup_free_ char *message = NULL;
        const char *policy_why, *config_why;
        VarlinkClient *root;
        json_object *cfg;
        Tsmd t;

        need_root(); /* the worker must run as another user than the files' owner */
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        root = tsmd_connect(&t);
        policy_why = strdupa(strf("%s/policy.conf:4: unknown key 'Bogus'", t.dir));
        config_why = strdupa(strf("%s/tsmd.conf:5: unknown key 'Bogus' in [Platform] (valid: Mode, IommuDevice, EmulatedDevices, EmulatedLatencyUSec, EmulatedDebugScopes, RequestTimeoutUSec)", t.dir));

        tsmd_write_file(&t, "policy.conf", POLICY_BROKEN_ALL);
        ASSERT_OK(chmod(strf("%s/policy.conf", t.dir), 0600));
        message = expect_refused_for(&t, root, policy_why, "keeping the policy in force.");
        expect_devices(&t, false);

        /* A worker started over them says the same, as the monitor gave it. */
        varlink_client_free(root);
        tsmd_kill_worker(&t);
        root = tsmd_connect(&t);
        cfg = status_configuration(root);
        ASSERT_STREQ(JSTR(cfg, "source"), "last_good");
        ASSERT_STREQ(JSTR(cfg, "error"), message);
        expect_devices(&t, false);

        /* tsmd.conf the same. */
        tsmd_write_file(&t, "policy.conf", POLICY_DEV1_DEV2);
        tsmd_write_config(&t, CONF_EMU(DEV1 "," DEV2, "Bogus=1\n"));
        ASSERT_OK(chmod(t.config_path, 0600));
        message = mfree(message);
        message = expect_refused_for(&t, root, config_why, "keeping the configuration in force.");
        ASSERT_STREQ(message, config_why);
        expect_devices(&t, false);

        /* Fixed, though root's only still, it loads. */
        tsmd_write_config(&t, CONF_ZERO);
        ASSERT_OK(chmod(t.config_path, 0600));
        CALL_OK(root, "io.tsmd.Service.Reload", NULL);
        expect_devices(&t, true);
        varlink_client_free(root);
        tsmd_teardown(&t);
}

/* The monitor's copies of the files that loaded last in process pid; with try_writes, fails the
 * test unless every write to one fails. */
static unsigned last_good_fds(pid_t pid, bool try_writes) {
        unsigned n = 0;
        struct dirent *de;
        DIR *d;

        d = opendir(strf("/proc/%d/fd", (int) pid));
        ASSERT_NOT_NULL(d);
        while ((de = readdir(d))) {
                _cleanup_close_ int fd = -EBADF;
                char target[256];
                ssize_t k;

                k = readlinkat(dirfd(d), de->d_name, target, sizeof(target) - 1);
                if (k < 0)
                        continue;
                target[k] = 0;
                if (!strstr(target, "memfd:tsmd-last-good"))
                        continue;
                n++;
                if (!try_writes)
                        continue;
                fd = open(strf("/proc/%d/fd/%s", (int) pid, de->d_name), O_RDWR | O_CLOEXEC);
                ASSERT_TRUE(fd >= 0);
                ASSERT_EQ(write(fd, "[Client:x]\nUsers=0\nDevices=*\n", 30), -1);
                ASSERT_EQ(errno, EPERM);
                ASSERT_EQ(ftruncate(fd, 0), -1);
                ASSERT_EQ(errno, EPERM);
                ASSERT_EQ(fcntl(fd, F_GET_SEALS) & (F_SEAL_SEAL | F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK),
                          F_SEAL_SEAL | F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK);
        }
        closedir(d);
        return n;
}

/* SECURITY: what a new worker starts from is the monitor's sealed copy: nobody with the fd, a
 * worker (which gets one at start) or even root through /proc, can change a byte of it. */
TEST(the_last_good_files_cannot_be_changed) {
        Tsmd t;

        if (geteuid() != 0)
                SKIP("reading another process's fds needs root");
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO });
        ASSERT_EQ(last_good_fds(t.pid, true), 1u);
        /* The worker keeps none: it has what it parsed. */
        ASSERT_EQ(last_good_fds(tsmd_worker_pid(&t), false), 0u);
        tsmd_teardown(&t);
}

/* A reload that takes a grant away applies to devices already attached, not only to new ones. */
TEST(revoked_grants_apply_to_attached_devices) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_BOTH_SCOPES } };
        Tsmd t;
        VarlinkClient *b;
        int64_t ctx;

        need_root();
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        b = tsmd_connect_as(&t, NOBODY, NOBODY);
        ctx = guest_open_context(b);
        CALL_OK(b, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
        CALL_OK(b, G "Bind", guest_vdev_params(ctx, 1));
        expect_scope_ok(b, ctx, 1, "info", DEV1);

        /* The rule no longer lists the device. */
        tsmd_write_file(&t, "policy.conf", "[Client:tests]\nUsers=root 65534\nDevices=" DEV2 "\n");
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        Msg m = scope_msg("info", DEV1);
        CALL_ERROR(b, G "GuestRequest", request_params(ctx, 1, "info", &m), E_GUEST("Denied"),
                   "{\"reason\":\"device not in any rule matching the client\"}");
        /* No rule for the client at all. */
        tsmd_write_file(&t, "policy.conf", "[Client:tests]\nUsers=root\nDevices=*\n");
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        CALL_ERROR(b, G "GuestRequest", request_params(ctx, 1, "info", &m), E_GUEST("Denied"),
                   "{\"reason\":\"no policy rule matches the client\"}");
        CALL_ERROR(b, G "OpenContext", NULL, E_GUEST("Denied"), "{\"reason\":\"no policy rule matches the client\"}");
        /* Granted again. */
        tsmd_write_file(&t, "policy.conf", POLICY_BOTH_SCOPES);
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        expect_scope_ok(b, ctx, 1, "info", DEV1);

        varlink_client_free(b);
        tsmd_teardown(&t);
}

/* Records after seq of event with result for DEV1, made by uid 65534. */
static size_t nobody_dev1_records(Tsmd *t, int64_t after, const char *event, const char *result) {
        return tsmd_audit_count_where(t, after, strf("\"uid\":%u,\"pciAddress\":\"" DEV1 "\"", NOBODY), event, result);
}

/*
 * A reload that takes a device out of a client's rule: Bind and GetDeviceState on the vDevice it
 * attached before are Denied (and recorded so), as AttachDevice would be; Unbind, DetachDevice
 * and CloseContext give the device up and stay allowed, so that the client can let go of it.
 */
TEST(revoked_device_can_be_given_up_not_used) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_BOTH_SCOPES } };
        static const char denied[] = "{\"reason\":\"device not in any rule matching the client\"}";
        Tsmd t;
        VarlinkClient *b;
        int64_t ctx, seq;

        need_root();
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        b = tsmd_connect_as(&t, NOBODY, NOBODY);
        ctx = guest_open_context(b);
        CALL_OK(b, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
        CALL_OK(b, G "AttachDevice", guest_attach_params(ctx, 2, DEV2));
        CALL_OK(b, G "Bind", guest_vdev_params(ctx, 1));

        /* The rule lists DEV2 only now. */
        tsmd_write_file(&t, "policy.conf", "[Client:tests]\nUsers=root 65534\nDevices=" DEV2 "\n");
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        seq = tsmd_audit_last_seq(&t);
        CALL_ERROR(b, G "GetDeviceState", guest_vdev_params(ctx, 1), E_GUEST("Denied"), denied);
        CALL_ERROR(b, G "Bind", guest_vdev_params(ctx, 1), E_GUEST("Denied"), denied);
        /* The device the rule still lists is served as before. */
        ASSERT_FALSE(JBOOL(CALL_OK(b, G "GetDeviceState", guest_vdev_params(ctx, 2)), "bound"));
        CALL_OK(b, G "Bind", guest_vdev_params(ctx, 2));

        /* Giving it up needs no grant. */
        CALL_OK(b, G "Unbind", guest_vdev_params(ctx, 1));
        CALL_ERROR(b, G "Bind", guest_vdev_params(ctx, 1), E_GUEST("Denied"), denied);
        CALL_OK(b, G "DetachDevice", guest_vdev_params(ctx, 1));
        CALL_ERROR(b, G "GetDeviceState", guest_vdev_params(ctx, 1), E_GUEST("NoSuchVDevice"), NULL);
        CALL_ERROR(b, G "AttachDevice", guest_attach_params(ctx, 3, DEV1), E_GUEST("Denied"), denied);

        /* Each refusal is recorded as AttachDevice's is, naming the device; the rest went through. */
        ASSERT_EQ(nobody_dev1_records(&t, seq, "get-state", E_GUEST("Denied")), 1u);
        ASSERT_EQ(nobody_dev1_records(&t, seq, "bind", E_GUEST("Denied")), 2u);
        ASSERT_EQ(nobody_dev1_records(&t, seq, "attach", E_GUEST("Denied")), 1u);
        ASSERT_EQ(nobody_dev1_records(&t, seq, "unbind", "ok"), 1u);
        ASSERT_EQ(nobody_dev1_records(&t, seq, "detach", "ok"), 1u);

        /* No rule for the client at all: it can still unbind and close what it has. */
        tsmd_write_file(&t, "policy.conf", "[Client:tests]\nUsers=root\nDevices=*\n");
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        CALL_ERROR(b, G "GetDeviceState", guest_vdev_params(ctx, 2), E_GUEST("Denied"),
                   "{\"reason\":\"no policy rule matches the client\"}");
        CALL_OK(b, G "Unbind", guest_vdev_params(ctx, 2));
        CALL_OK(b, G "CloseContext", strf("{\"context\":%" PRIi64 "}", ctx));

        varlink_client_free(b);
        tsmd_teardown(&t);
}

#define POLICY_VMM                                                                                 \
        "[Client:vmm]\n"                                                                           \
        "Users=root\n"                                                                             \
        "Devices=*\n"                                                                              \
        "Scopes=info state-change\n"
#define REVOKE_LATENCY "EmulatedLatencyUSec=200000\n"
/* More than the monitor takes of one client at once (an eighth of TSM_PRIV_REQUESTS_MAX): the
 * rest wait in the worker. */
#define REVOKE_REQUESTS_MAX 40

/* The guest-request records after seq with result; those naming a rule in *ret_with_rule. */
static size_t request_records(Tsmd *t, int64_t after, const char *result, size_t *ret_with_rule) {
        VarlinkClient *a = tsmd_connect(t);
        json_object *r = CALL_OK(a, "io.tsmd.Admin.QueryAudit",
                                 strf("{\"fromSeq\":%" PRIi64 ",\"event\":\"guest-request\"}", after + 1)),
                    *records;
        size_t n = 0, with_rule = 0;

        ASSERT_TRUE(json_object_object_get_ex(r, "records", &records));
        for (size_t i = 0; i < json_object_array_length(records); i++) {
                json_object *rec = json_object_array_get_idx(records, i);

                if (!streq(JSTR(rec, "result"), result))
                        continue;
                n++;
                with_rule += json_object_object_get_ex(rec, "rule", NULL);
        }
        varlink_client_free(a);
        *ret_with_rule = with_rule;
        return n;
}

/*
 * A reload that takes a client's grant away stops what it asked for before and is not carried
 * out yet: n GuestRequests waiting for the emulated device (the monitor's) or, past the client's
 * share of the monitor, for their turn in the worker, and a Bind behind them (in the worker
 * behind those waiting there, else at the device), are Denied with the new policy's reason, and
 * recorded so, naming no rule; only those the device answered or had started run, recorded
 * with the rule they ran under. The vDevice stays usable once the grant is back.
 */
/* tsmd under POLICY_VMM whose emulated devices take REVOKE_LATENCY, and a client of it (*ret)
 * with DEV1 bound as vDevice 1 of the context returned. */
static int64_t start_with_dev1_bound(Tsmd *t, VarlinkClient **ret) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_VMM } };
        int64_t ctx;

        tsmd_start(t, &(TsmdOptions) { .config = CONF_EMU(DEV1 "," DEV2, REVOKE_LATENCY), .files = files,
                                       .n_files = ELEMENTSOF(files) });
        *ret = tsmd_connect_guest(t);
        ctx = guest_open_context(*ret);
        CALL_OK(*ret, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
        CALL_OK(*ret, G "Bind", guest_vdev_params(ctx, 1));
        return ctx;
}

static void run_revoked_grant(unsigned n) {
        static const char denied[] = "{\"reason\":\"no policy rule matches the client\"}";
        AsyncCall calls[REVOKE_REQUESTS_MAX + 1] = {};
        Msg m = scope_msg("info", DEV1);
        size_t ok, n_denied, with_rule;
        VarlinkClient *c;
        int64_t ctx, seq;
        Tsmd t;

        ctx = start_with_dev1_bound(&t, &c);
        seq = tsmd_audit_last_seq(&t);

        for (size_t i = 0; i < n; i++)
                tsmd_call_async(c, G "GuestRequest", request_params(ctx, 1, "info", &m), 0, &calls[i]);
        /* Bound already: the device would take it all the same, had it the chance. */
        tsmd_call_async(c, G "Bind", guest_vdev_params(ctx, 1), 0, &calls[n]);
        tsmd_pump(c, 300 * USEC_PER_MSEC);

        tsmd_write_file(&t, "policy.conf", "[Client:other]\nUsers=65534\nDevices=*\n");
        ASSERT_TRUE(tsmd_reload(&t, CONF_EMU(DEV1 "," DEV2, REVOKE_LATENCY)));
        for (size_t i = 0; i <= n; i++)
                ASSERT_TRUE(tsmd_async_wait(c, &calls[i], 1, TSMD_WAIT_USEC));

        /* Answered in call order: those carried out first, then the rest Denied. */
        for (ok = 0; ok < n && !calls[ok].errors[0]; ok++)
                ;
        printf("# %zu of %u requests carried out before the reload\n", ok, n);
        ASSERT_TRUE(ok >= 1 && ok <= MAX(n / 4, 2u));
        for (size_t i = ok; i <= n; i++) {
                if (!calls[i].errors[0] || !streq(calls[i].errors[0], E_GUEST("Denied")) ||
                    !json_matches(calls[i].params[0], denied))
                        TEST_FAIL("call %zu: expected Denied %s, got %s %s", i + 1, denied,
                                  calls[i].errors[0] ?: "success", json_object_to_json_string(calls[i].params[0]));
        }

        ASSERT_EQ(request_records(&t, seq, "ok", &with_rule), ok);
        ASSERT_EQ(with_rule, ok);
        n_denied = request_records(&t, seq, E_GUEST("Denied"), &with_rule);
        ASSERT_EQ(n_denied, n - ok);
        ASSERT_EQ(with_rule, 0u);
        ASSERT_EQ(tsmd_audit_count_where(&t, seq, NULL, "bind", E_GUEST("Denied")), 1u);

        /* The Bind stopped leaves the vDevice as it was, bound and not in a change: granted
         * again, the client can unbind, bind and detach it (not DeviceBusy). */
        tsmd_write_file(&t, "policy.conf", POLICY_VMM);
        ASSERT_TRUE(tsmd_reload(&t, CONF_EMU(DEV1 "," DEV2, REVOKE_LATENCY)));
        ASSERT_TRUE(JBOOL(CALL_OK(c, G "GetDeviceState", guest_vdev_params(ctx, 1)), "bound"));
        CALL_OK(c, G "Unbind", guest_vdev_params(ctx, 1));
        CALL_OK(c, G "Bind", guest_vdev_params(ctx, 1));
        CALL_OK(c, G "DetachDevice", guest_vdev_params(ctx, 1));

        for (size_t i = 0; i <= n; i++)
                async_call_done(&calls[i]);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

TEST(a_reload_stops_calls_waiting_in_the_worker) {
        run_revoked_grant(REVOKE_REQUESTS_MAX);
}

TEST(a_reload_stops_calls_waiting_for_the_device) {
        run_revoked_grant(4);
}

/* An Unbind gives the device up, which needs no grant: one waiting in the worker behind requests
 * (more than the monitor takes of one client) when a reload takes the grant away runs all the
 * same (the requests not started are Denied), and leaves the vDevice unbound, for the client to
 * detach. */
TEST(a_reload_does_not_stop_an_unbind_waiting_in_the_worker) {
        static AsyncCall calls[REVOKE_REQUESTS_MAX + 1];
        Msg m = scope_msg("info", DEV1);
        VarlinkClient *c;
        int64_t ctx;
        Tsmd t;

        ctx = start_with_dev1_bound(&t, &c);
        for (size_t i = 0; i < REVOKE_REQUESTS_MAX; i++)
                tsmd_call_async(c, G "GuestRequest", request_params(ctx, 1, "info", &m), 0, &calls[i]);
        tsmd_call_async(c, G "Unbind", guest_vdev_params(ctx, 1), 0, &calls[REVOKE_REQUESTS_MAX]);
        tsmd_pump(c, 300 * USEC_PER_MSEC);

        /* Still a client, which may call (and detach), but of DEV2 alone. */
        tsmd_write_file(&t, "policy.conf", "[Client:vmm]\nUsers=root\nDevices=" DEV2 "\nScopes=info\n");
        ASSERT_TRUE(tsmd_reload(&t, CONF_EMU(DEV1 "," DEV2, REVOKE_LATENCY)));
        for (size_t i = 0; i < ELEMENTSOF(calls); i++)
                ASSERT_TRUE(tsmd_async_wait(c, &calls[i], 1, TSMD_WAIT_USEC));
        /* Not all of the requests ran: the reload came while some waited. */
        ASSERT_NOT_NULL(calls[REVOKE_REQUESTS_MAX - 1].errors[0]);
        ASSERT_STREQ(calls[REVOKE_REQUESTS_MAX - 1].errors[0], E_GUEST("Denied"));
        if (calls[REVOKE_REQUESTS_MAX].errors[0])
                TEST_FAIL("Unbind after the grant went: %s %s", calls[REVOKE_REQUESTS_MAX].errors[0],
                          json_object_to_json_string(calls[REVOKE_REQUESTS_MAX].params[0]));
        ASSERT_STREQ(JSTR(calls[REVOKE_REQUESTS_MAX].params[0], "state"), "config_unlocked");
        CALL_OK(c, G "DetachDevice", guest_vdev_params(ctx, 1)); /* no change in flight */

        for (size_t i = 0; i < ELEMENTSOF(calls); i++)
                async_call_done(&calls[i]);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* ---- reloads under load --------------------------------------------------------------------- */

typedef struct LoadResult {
        unsigned ok[2], denied[2], other;
        char other_error[128];
} LoadResult;

static const char *const load_scopes[2] = { "info", "state-change" };

/* A client (uid given) sending GuestRequests in both scopes until stop is readable. */
static _noreturn_ void load_client(Tsmd *t, uid_t uid, const char *address, int ready, int stop, int out) {
        VarlinkClient *c;
        LoadResult res = {};
        char params[2][512];
        int64_t ctx;

        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (uid != 0 && (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0))
                _exit(2);
        c = tsmd_connect_guest(t);
        ctx = guest_open_context(c);
        CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 1, address));
        CALL_OK(c, G "Bind", guest_vdev_params(ctx, 1));
        for (size_t i = 0; i < 2; i++) {
                Msg m = scope_msg(load_scopes[i], address);
                snprintf(params[i], sizeof(params[i]), "%s", request_params(ctx, 1, load_scopes[i], &m));
        }
        if (write(ready, "R", 1) != 1)
                _exit(3);

        for (unsigned n = 0;; n++) {
                struct pollfd p = { .fd = stop, .events = POLLIN };
                json_object *r = NULL;
                const char *error;
                size_t i = n % 2;

                if (poll(&p, 1, 0) != 0)
                        break;
                error = tsmd_call(c, G "GuestRequest", params[i], &r);
                if (!error)
                        res.ok[i]++;
                else if (streq(error, E_GUEST("Denied")))
                        res.denied[i]++;
                else if (res.other++ == 0)
                        snprintf(res.other_error, sizeof(res.other_error), "%s %s", error,
                                 json_object_to_json_string(r));
        }
        varlink_client_free(c);
        if (write(out, &res, sizeof(res)) != (ssize_t) sizeof(res))
                _exit(3);
        _exit(0);
}

TEST(reload_under_load) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_BOTH_SCOPES } };
        static const char *const policies[2] = { POLICY_INFO_ONLY, POLICY_BOTH_SCOPES };
        Tsmd t;
        int ready[2], stop[2], out[2];
        pid_t pids[2];
        LoadResult total = {};
        unsigned baseline;

        need_root();
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files),
                                        .log_level = "info" });
        baseline = tsmd_idle_fds(&t);

        ASSERT_OK(pipe2(ready, O_CLOEXEC));
        ASSERT_OK(pipe2(stop, O_CLOEXEC));
        ASSERT_OK(pipe2(out, O_CLOEXEC));
        for (size_t i = 0; i < 2; i++) {
                fflush(NULL);
                pids[i] = fork();
                ASSERT_OK(pids[i]);
                if (pids[i] == 0) {
                        close(ready[0]);
                        close(stop[1]);
                        close(out[0]);
                        load_client(&t, i == 0 ? 0 : NOBODY, i == 0 ? DEV1 : DEV2, ready[1], stop[0], out[1]);
                }
        }
        close(ready[1]);
        close(stop[0]);
        close(out[1]);
        for (size_t i = 0; i < 2; i++) {
                struct pollfd p = { .fd = ready[0], .events = POLLIN };
                char byte;
                ASSERT_EQ(poll(&p, 1, 5000), 1);
                ASSERT_EQ(read(ready[0], &byte, 1), 1);
        }

        for (unsigned i = 0; i < 20; i++) {
                tsmd_write_file(&t, "policy.conf", policies[i % 2]);
                ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
                sleep_usec(10 * USEC_PER_MSEC);
        }
        close(stop[1]);

        for (size_t i = 0; i < 2; i++) {
                struct pollfd p = { .fd = out[0], .events = POLLIN };
                LoadResult res;

                ASSERT_EQ(poll(&p, 1, 10000), 1);
                ASSERT_EQ(read(out[0], &res, sizeof(res)), (ssize_t) sizeof(res));
                printf("# client: info %u ok / %u denied, state-change %u ok / %u denied, %u other\n", res.ok[0],
                       res.denied[0], res.ok[1], res.denied[1], res.other);
                if (res.other > 0)
                        TEST_FAIL("%u requests failed otherwise than Denied, first: %s", res.other, res.other_error);
                for (size_t k = 0; k < 2; k++) {
                        total.ok[k] += res.ok[k];
                        total.denied[k] += res.denied[k];
                }
        }
        for (size_t i = 0; i < 2; i++) {
                int status;
                ASSERT_EQ(waitpid(pids[i], &status, 0), pids[i]);
                ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        close(out[0]);
        close(ready[0]);

        /* Both policies grant info: never a moment without a policy. Both were seen in force. */
        ASSERT_EQ(total.denied[0], 0);
        ASSERT_TRUE(total.ok[0] > 0);
        ASSERT_TRUE(total.ok[1] > 0);
        ASSERT_TRUE(total.denied[1] > 0);

        ASSERT_TRUE(tsmd_is_running(&t));
        ASSERT_EQ(tsmd_wait_fds(&t, baseline, TSMD_WAIT_USEC), baseline);
        tsmd_teardown(&t);
}

/* ---- limits from the rules ------------------------------------------------------------------ */

TEST(rule_limits_lower_the_configured_ones) {
        static const TsmdFile files[] = {
                { "policy.conf",
                  "[Defaults]\n"
                  "MaxContexts=3\n"
                  "MaxVDevices=3\n"
                  "[Client:small]\n"
                  "Users=65534\n"
                  "Devices=*\n"
                  "MaxContexts=2\n"
                  "MaxVDevices=1\n"
                  "[Client:root]\n"
                  "Users=root\n"
                  "Devices=*\n"
                  "MaxContexts=100\n" },
        };
        Tsmd t;
        VarlinkClient *a, *b;
        int64_t ca[8], cb[2];

        need_root();
        tsmd_start(&t, &(TsmdOptions) {
                .config = CONF_EMU(DEV1 "," DEV2 "," DEV3 "," DEV4 "," DEV5,
                                   "[Guest]\nMaxContextsPerClient=5\nMaxVDevicesPerClient=8\n"),
                .files = files, .n_files = ELEMENTSOF(files) });
        a = tsmd_connect(&t);
        b = tsmd_connect_as(&t, NOBODY, NOBODY);

        /* The rule's limits are below the configured ones: they apply. */
        cb[0] = guest_open_context(b);
        cb[1] = guest_open_context(b);
        CALL_ERROR(b, G "OpenContext", NULL, E_GUEST("LimitReached"), "{\"limit\":\"contexts\",\"max\":2}");
        CALL_OK(b, G "AttachDevice", guest_attach_params(cb[0], 1, DEV1));
        CALL_ERROR(b, G "AttachDevice", guest_attach_params(cb[1], 1, DEV2), E_GUEST("LimitReached"),
                   "{\"limit\":\"vdevices\",\"max\":1}");

        /* Root's rule allows more contexts than configured: the configuration wins (5); its
         * vDevices come from [Defaults] (3), below the configured 8. */
        for (size_t i = 0; i < 5; i++)
                ca[i] = guest_open_context(a);
        CALL_ERROR(a, G "OpenContext", NULL, E_GUEST("LimitReached"), "{\"limit\":\"contexts\",\"max\":5}");
        CALL_OK(a, G "AttachDevice", guest_attach_params(ca[0], 1, DEV2));
        CALL_OK(a, G "AttachDevice", guest_attach_params(ca[1], 1, DEV3));
        CALL_OK(a, G "AttachDevice", guest_attach_params(ca[2], 1, DEV4));
        CALL_ERROR(a, G "AttachDevice", guest_attach_params(ca[3], 1, DEV5), E_GUEST("LimitReached"),
                   "{\"limit\":\"vdevices\",\"max\":3}");

        /* Room made, room used. */
        CALL_OK(b, G "CloseContext", strf("{\"context\":%" PRIi64 "}", cb[1]));
        guest_open_context(b);
        CALL_OK(a, G "DetachDevice", guest_vdev_params(ca[2], 1));
        CALL_OK(a, G "AttachDevice", guest_attach_params(ca[3], 1, DEV5));

        varlink_client_free(a);
        varlink_client_free(b);
        tsmd_teardown(&t);
}

#define POLICY_SMALL_VM                                                                            \
        "[Client:vm]\n"                                                                            \
        "Users=root\n"                                                                             \
        "Devices=*\n"                                                                              \
        "MaxContexts=2\n"                                                                          \
        "MaxVDevices=1\n"
#define CONF_FIVE CONF_EMU(DEV1 "," DEV2 "," DEV3 "," DEV4 "," DEV5, "")

/* A rule bounds a VMM, not one of its connections: the test's own (tsmd_connect()) are of one
 * process, and a second one is no room for more. Another process of the uid (a helper's
 * connection) is another VMM, with limits of its own. */
TEST(rule_limits_count_every_connection_of_the_process) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_SMALL_VM } };
        VarlinkClient *a, *b, *other;
        int64_t ca, cb, co[2];
        Tsmd t;

        need_root();
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_FIVE, .files = files, .n_files = ELEMENTSOF(files) });
        a = tsmd_connect(&t);
        b = tsmd_connect(&t);
        other = tsmd_connect_as(&t, 0, 0);

        ca = guest_open_context(a);
        cb = guest_open_context(b);
        CALL_ERROR(b, G "OpenContext", NULL, E_GUEST("LimitReached"), "{\"limit\":\"contexts\",\"max\":2}");
        CALL_ERROR(a, G "OpenContext", NULL, E_GUEST("LimitReached"), "{\"limit\":\"contexts\",\"max\":2}");
        CALL_OK(a, G "AttachDevice", guest_attach_params(ca, 1, DEV1));
        CALL_ERROR(b, G "AttachDevice", guest_attach_params(cb, 1, DEV2), E_GUEST("LimitReached"),
                   "{\"limit\":\"vdevices\",\"max\":1}");

        /* Another process of the same uid counts its own. */
        co[0] = guest_open_context(other);
        co[1] = guest_open_context(other);
        CALL_ERROR(other, G "OpenContext", NULL, E_GUEST("LimitReached"), "{\"limit\":\"contexts\",\"max\":2}");
        CALL_OK(other, G "AttachDevice", guest_attach_params(co[1], 1, DEV2));
        CALL_ERROR(other, G "AttachDevice", guest_attach_params(co[0], 1, DEV3), E_GUEST("LimitReached"),
                   "{\"limit\":\"vdevices\",\"max\":1}");

        /* Room one connection makes is the other's: the process's. */
        CALL_OK(a, G "DetachDevice", guest_vdev_params(ca, 1));
        CALL_OK(b, G "AttachDevice", guest_attach_params(cb, 1, DEV1));
        CALL_OK(a, G "CloseContext", strf("{\"context\":%" PRIi64 "}", ca));
        guest_open_context(b);
        CALL_ERROR(a, G "OpenContext", NULL, E_GUEST("LimitReached"), "{\"limit\":\"contexts\",\"max\":2}");
        /* Refused, and on record as such, as ever. */
        tsmd_expect_audit(&t, 0, "open-context", E_GUEST("LimitReached"), 4);
        tsmd_expect_audit(&t, 0, "attach", E_GUEST("LimitReached"), 2);

        varlink_client_free(a);
        varlink_client_free(b);
        varlink_client_free(other);
        tsmd_teardown(&t);
}

static int64_t open_for_reclaim(VarlinkClient *c, char token[static 64]) {
        json_object *r = CALL_OK(c, G "OpenContext", NULL);

        snprintf(token, 64, "%s", JSTR(r, "reclaimToken"));
        safe_close(varlink_client_take_fd(c, (size_t) JINT(r, "fileDescriptor")));
        return JINT(r, "context");
}

static const char *reclaim_params(const char *token) {
        return strf("{\"reclaimToken\":\"%s\"}", token);
}

static void reclaim(VarlinkClient *c, const char *token) {
        json_object *r = CALL_OK(c, G "ReclaimContext", reclaim_params(token));

        safe_close(varlink_client_take_fd(c, (size_t) JINT(r, "fileDescriptor")));
}

/* Taking a context back after a restart is taking one: counted over the process's connections
 * as OpenContext and AttachDevice are. */
TEST(rule_limits_count_reclaims_over_the_process) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_SMALL_VM } };
        char with_vdevice[64], without[64];
        VarlinkClient *a, *b1, *b2;
        int64_t c1, c3;
        Tsmd t;

        need_root();
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_FIVE, .files = files, .n_files = ELEMENTSOF(files) });
        a = tsmd_connect(&t);
        c1 = open_for_reclaim(a, with_vdevice);
        CALL_OK(a, G "AttachDevice", guest_attach_params(c1, 1, DEV1));
        open_for_reclaim(a, without);
        tsmd_kill_worker(&t);
        varlink_client_free(a);

        b1 = tsmd_connect(&t);
        b2 = tsmd_connect(&t);
        c3 = guest_open_context(b1);
        CALL_OK(b1, G "AttachDevice", guest_attach_params(c3, 1, DEV2));
        /* Two contexts would do; two vDevices would not. */
        CALL_ERROR(b2, G "ReclaimContext", reclaim_params(with_vdevice), E_GUEST("LimitReached"),
                   "{\"limit\":\"vdevices\",\"max\":1}");
        CALL_OK(b1, G "DetachDevice", guest_vdev_params(c3, 1));
        reclaim(b2, with_vdevice);
        /* Three contexts would not. */
        CALL_ERROR(b1, G "ReclaimContext", reclaim_params(without), E_GUEST("LimitReached"),
                   "{\"limit\":\"contexts\",\"max\":2}");
        CALL_OK(b1, G "CloseContext", strf("{\"context\":%" PRIi64 "}", c3));
        reclaim(b1, without);
        tsmd_expect_audit(&t, 0, "reclaim-context", E_GUEST("LimitReached"), 2);

        varlink_client_free(b1);
        varlink_client_free(b2);
        tsmd_teardown(&t);
}

/* ---- [Admin] ---------------------------------------------------------------------------------- */

TEST(admin_users_may_administer) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_BOTH_SCOPES } };
        Tsmd t;
        VarlinkClient *b, *o;

        need_root();
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        b = tsmd_connect_as(&t, NOBODY, NOBODY);
        o = tsmd_connect_as(&t, OTHER_UID, OTHER_UID);

        /* Without [Admin], only root administers. */
        CALL_ERROR(b, "io.tsmd.Service.SetLogLevel", "{\"level\":\"debug\"}", VARLINK_ERROR_PERMISSION_DENIED, NULL);
        CALL_ERROR(b, "io.tsmd.Service.Reload", NULL, VARLINK_ERROR_PERMISSION_DENIED, NULL);

        tsmd_write_file(&t, "policy.conf", POLICY_BOTH_SCOPES "[Admin]\nUsers=65534\n");
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));

        /* The same connection, now an administrator; the other uid still is not. */
        CALL_OK(b, "io.tsmd.Service.SetLogLevel", "{\"level\":\"info\"}");
        ASSERT_TRUE(tsmd_wait_log(&t, "Log level set to info", 1, TSMD_WAIT_USEC));
        CALL_OK(b, "io.tsmd.Service.Reload", NULL);
        CALL_ERROR(o, "io.tsmd.Service.SetLogLevel", "{\"level\":\"debug\"}", VARLINK_ERROR_PERMISSION_DENIED, NULL);
        CALL_ERROR(o, "io.tsmd.Service.Reload", NULL, VARLINK_ERROR_PERMISSION_DENIED, NULL);
        /* Administering does not make a client: uid 4242 has no rule. */
        CALL_ERROR(o, G "OpenContext", NULL, E_GUEST("Denied"), "{\"reason\":\"no policy rule matches the client\"}");

        varlink_client_free(b);
        varlink_client_free(o);
        tsmd_teardown(&t);
}

/* What a client of the groups 5001-5003 (OTHER_UID, see below) may do: open a context and
 * attach DEV1; administer. */
static void expect_group_rights(VarlinkClient *c, bool client, bool admin) {
        if (client) {
                int64_t ctx = guest_open_context(c);

                CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
                CALL_OK(c, G "CloseContext", strf("{\"context\":%" PRIi64 "}", ctx));
        } else
                CALL_ERROR(c, G "OpenContext", NULL, E_GUEST("Denied"),
                           "{\"reason\":\"no policy rule matches the client\"}");
        if (admin)
                CALL_OK(c, "io.tsmd.Service.SetLogLevel", "{\"level\":\"info\"}");
        else
                CALL_ERROR(c, "io.tsmd.Service.SetLogLevel", "{\"level\":\"info\"}", VARLINK_ERROR_PERMISSION_DENIED,
                           NULL);
}

/*
 * SECURITY: tsmd keeps of a client's supplementary groups those the policy in force names (a
 * client may be in 65536, 256 KiB for as long as it stays connected). A reload that names others
 * reads them again from the client's socket, so that a connection made before it matches the
 * rules and [Admin] by group as one made after it does: Groups= the reload adds match it, ones it
 * takes away stop matching, ones added back match again. Nobody gains a group it is not in.
 */
TEST(a_reload_matches_the_groups_it_names_on_existing_connections) {
        static const gid_t groups[] = { 5001, 5002, 5003 };
        static const char no_groups[] = "[Client:root]\nUsers=root\nDevices=" DEV1 "\n";
        static const char by_group[] = "[Client:root]\nUsers=root\nDevices=" DEV1 "\n"
                                       "[Client:by-group]\nGroups=5002\nDevices=" DEV1 "\n"
                                       "[Admin]\nGroups=5003\n";
        static const TsmdFile files[] = { { "policy.conf", no_groups } };
        VarlinkClient *member, *other;
        Tsmd t;

        need_root();
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        member = tsmd_connect_to_as_groups(&t, t.guest_socket, OTHER_UID, OTHER_UID, groups, ELEMENTSOF(groups));
        other = tsmd_connect_to_as_groups(&t, t.guest_socket, OTHER_UID, OTHER_UID, groups, 1); /* 5001 only */
        expect_group_rights(member, false, false);

        /* Groups= it is in: the same connection is a client and an administrator by them. */
        tsmd_write_file(&t, "policy.conf", by_group);
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        expect_group_rights(member, true, true);
        expect_group_rights(other, false, false);

        /* Taken away, and added back. */
        tsmd_write_file(&t, "policy.conf", no_groups);
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        expect_group_rights(member, false, false);
        tsmd_write_file(&t, "policy.conf", by_group);
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        expect_group_rights(member, true, true);
        expect_group_rights(other, false, false);

        varlink_client_free(member);
        varlink_client_free(other);
        tsmd_teardown(&t);
}

/*
 * SECURITY: a connection whose groups cannot be read again for a reload that names others (out of
 * memory, say: here the preload fails SO_PEERGROUPS for one uid) is closed, as one that cannot be
 * identified at connect is refused: it is never judged by groups the policy did not ask about.
 * The others' are read, and match.
 */
TEST(a_reload_that_cannot_read_a_clients_groups_again_disconnects_it) {
        static const gid_t groups[] = { 5002, 5003 };
        static const char no_groups[] = "[Client:root]\nUsers=root\nDevices=" DEV1 "\n";
        static const char by_group[] = "[Client:root]\nUsers=root\nDevices=" DEV1 "\n"
                                       "[Client:by-group]\nGroups=5002\nDevices=" DEV1 "\n"
                                       "[Admin]\nGroups=5003\n";
        static const TsmdFile files[] = { { "policy.conf", no_groups } };
        static const char *const env[] = { "LD_PRELOAD=" PEERGROUPS_FAIL_PRELOAD,
                                           "TSMD_TEST_PEERGROUPS_FAIL_UID=" STRINGIFY(OTHER_UID), NULL };
        VarlinkClient *unreadable, *readable;
        Tsmd t;

        need_root();
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files),
                                        .env = env });
        /* No Groups= yet: their groups were not read at connect. */
        unreadable = tsmd_connect_to_as_groups(&t, t.guest_socket, OTHER_UID, OTHER_UID, groups, ELEMENTSOF(groups));
        readable = tsmd_connect_to_as_groups(&t, t.guest_socket, NOBODY, NOBODY, groups, ELEMENTSOF(groups));
        expect_group_rights(unreadable, false, false);
        expect_group_rights(readable, false, false);

        tsmd_write_file(&t, "policy.conf", by_group);
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        ASSERT_TRUE(tsmd_wait_hangup(unreadable, TSMD_WAIT_USEC));
        ASSERT_TRUE(tsmd_log_contains(&t, "Cannot read the groups of a client of uid " STRINGIFY(OTHER_UID)));
        expect_group_rights(readable, true, true);

        varlink_client_free(unreadable);
        varlink_client_free(readable);
        tsmd_teardown(&t);
}

/*
 * SECURITY: without SO_PEERPIDFD (Linux < 6.5; here the preload makes this kernel one) a client's
 * unit is read by its pid, which a client that exits before its accept leaves to the next
 * process to take it: the worker names the rules that match on Units= alone, at start and at
 * each reload, and not those with Users= or Groups= too. A kernel with it hears of none.
 */
#define UNITS_ALONE_WARNING "Client rules that match on Units= alone, with neither Users= nor Groups=: "
TEST(rules_on_units_alone_named_without_so_peerpidfd) {
        static const TsmdFile files[] = { { "policy.conf",
                "[Client:by-unit]\nUnits=vm-a.service\nDevices=" DEV1 "\n"
                "[Client:by-unit-and-user]\nUsers=root\nUnits=vm-*.service\nDevices=" DEV1 "\n"
                "[Client:by-unit-and-group]\nGroups=0\nUnits=vm-*.service\nDevices=" DEV1 "\n"
                "[Client:by-user]\nUsers=root\nDevices=" DEV2 "\n"
                "[Client:also-by-unit]\nUnits=qemu-a.scope\nDevices=" DEV2 "\n" } };
        const char *const env[] = { "LD_PRELOAD=" NO_PEERPIDFD_PRELOAD, tsmd_preload_asan_env(), NULL };
        const char *warning = UNITS_ALONE_WARNING "by-unit, also-by-unit. Pair them with Users=";
        Tsmd t;

        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files),
                                        .env = env });
        ASSERT_TRUE(tsmd_wait_log(&t, warning, 1, TSMD_WAIT_USEC));
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        ASSERT_TRUE(tsmd_wait_log(&t, warning, 2, TSMD_WAIT_USEC));
        ASSERT_EQ(tsmd_log_count(&t, UNITS_ALONE_WARNING), 2U);
        /* And --check-config, before a start or reload shows it. */
        {
                const char *argv[] = { TSMD_PATH, strf("--config=%s", t.config_path), "--check-config", NULL };
                _cleanup_free_ char *out = NULL, *err = NULL;

                ASSERT_OK(setenv("LD_PRELOAD", NO_PEERPIDFD_PRELOAD, 1));
                ASSERT_OK(putenv((char *) tsmd_preload_asan_env()));
                ASSERT_EQ(run_capture(argv, &out, &err, 10 * USEC_PER_SEC), 0);
                ASSERT_STREQ(out, "configuration OK\n");
                if (!strstr(err, warning))
                        TEST_FAIL("no warning from --check-config: %s", err);
                ASSERT_OK(unsetenv("LD_PRELOAD"));
        }
        tsmd_teardown(&t);

        /* Users= on each: nothing to name. */
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .env = env, .files = (const TsmdFile[]) { {
                "policy.conf", "[Client:by-unit-and-user]\nUsers=root\nUnits=vm-*.service\nDevices=" DEV1 "\n" } },
                .n_files = 1 });
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        ASSERT_EQ(tsmd_log_count(&t, UNITS_ALONE_WARNING), 0U);
        tsmd_teardown(&t);

        /* This kernel as it is, if it has SO_PEERPIDFD. */
        if (peer_identity_kernel_has_peerpidfd() <= 0) {
                printf("# this kernel has no SO_PEERPIDFD: no run without the preload\n");
                return;
        }
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        ASSERT_EQ(tsmd_log_count(&t, UNITS_ALONE_WARNING), 0U);
        tsmd_teardown(&t);
}

/*
 * An administrator's Reload whose new policy no longer names them ran as theirs: it is on record
 * as an administrator's call (by itself, durable before the answer, with who asked), not as
 * a refusal, which past the uid's refusal budget is only a count in a summary written when
 * the interval ends. Their next call is a refusal.
 */
TEST(a_reload_that_ends_the_callers_admin_right_is_on_record_as_theirs) {
        static const TsmdFile files[] = { { "policy.conf", POLICY_BOTH_SCOPES "[Admin]\nUsers=65534\n" } };
        /* Every refusal of a uid goes into a summary: one by one, none. */
        static const char conf[] = CONF_EMU(DEV1 "," DEV2, "[Audit]\nRefusalRecordsPerUid=0\n");
        json_object *records;
        VarlinkClient *b;
        int64_t seq;
        Tsmd t;

        need_root();
        tsmd_start(&t, &(TsmdOptions) { .config = conf, .files = files, .n_files = ELEMENTSOF(files) });
        b = tsmd_connect_as(&t, NOBODY, NOBODY);
        CALL_OK(b, "io.tsmd.Service.Reload", NULL);
        seq = tsmd_audit_last_seq(&t);

        tsmd_write_file(&t, "policy.conf", POLICY_BOTH_SCOPES);
        CALL_OK(b, "io.tsmd.Service.Reload", NULL);
        /* Answered once its own record was durable: there at once, naming the caller. */
        records = tsmd_audit_query(&t, strf("{\"fromSeq\":%" PRIi64 ",\"uid\":65534}", seq + 1));
        ASSERT_EQ(json_object_array_length(records), 1U);
        ASSERT_STREQ(JSTR(json_object_array_get_idx(records, 0), "event"), "io.tsmd.Service.Reload");
        ASSERT_STREQ(JSTR(json_object_array_get_idx(records, 0), "result"), "ok");
        ASSERT_TRUE(JINT(json_object_array_get_idx(records, 0), "pid") > 0);
        json_object_put(records);

        CALL_ERROR(b, "io.tsmd.Service.Reload", NULL, VARLINK_ERROR_PERMISSION_DENIED, NULL);

        varlink_client_free(b);
        tsmd_teardown(&t);
}

/* Waits (bounded) for n records of event "reload" (by SIGHUP) with result after seq `after`. */
static void expect_signalled_reloads(Tsmd *t, int64_t after, const char *result, size_t n) {
        size_t have;

        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC;; sleep_usec(5 * USEC_PER_MSEC)) {
                have = tsmd_audit_count_where(t, after, NULL, "reload", result);
                if (have >= n || now_usec() > deadline)
                        break;
        }
        if (have != n)
                TEST_FAIL("%zu records of a reload by signal -> %s, expected %zu", have, result, n);
}

/* A child of ours sends sig to target, as uid (UID_INVALID: ours), then waits to be released: its
 * pid stays its own meanwhile, and its unit can be read. Returns its pid once it sent. */
static pid_t signal_from_child(pid_t target, int sig, uid_t uid, int *ret_release) {
        int sent[2], release[2];
        char c;
        pid_t pid;

        ASSERT_OK(pipe2(sent, O_CLOEXEC));
        ASSERT_OK(pipe2(release, O_CLOEXEC));
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0) {
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                safe_close(sent[0]);
                safe_close(release[1]);
                if (uid != UID_INVALID && setresuid(uid, uid, uid) < 0)
                        _exit(1);
                if (kill(target, sig) < 0 || write(sent[1], "s", 1) != 1)
                        _exit(2);
                while (read(release[0], &c, 1) < 0 && errno == EINTR)
                        ;
                _exit(0);
        }
        safe_close(sent[1]);
        safe_close(release[0]);
        if (read(sent[0], &c, 1) != 1)
                TEST_FAIL("the child of pid %d did not send signal %d to %d", (int) pid, sig, (int) target);
        safe_close(sent[0]);
        *ret_release = release[1];
        return pid;
}

static void release_child(pid_t pid, int release) {
        int status;

        safe_close(release);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Waits (bounded) for the record of a reload by SIGHUP after seq `after` that names sender pid, and
 * checks it: sent to `signalled` by uid, with the unit sd-login gives for that pid (none: none). */
static void expect_reload_by(Tsmd *t, int64_t after, pid_t pid, uid_t uid, const char *signalled) {
        _cleanup_free_ char *unit = NULL;
        json_object *records, *rec = NULL, *u;

        (void) sd_pid_get_unit(pid, &unit);
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC; !rec; sleep_usec(5 * USEC_PER_MSEC)) {
                records = tsmd_audit_query(t, strf("{\"fromSeq\":%" PRIi64 ",\"event\":\"reload\"}", after + 1));
                for (size_t i = 0; i < json_object_array_length(records); i++) {
                        json_object *r = json_object_array_get_idx(records, i), *p;

                        if (json_object_object_get_ex(r, "pid", &p) && json_object_get_int64(p) == pid &&
                            streq(JSTR(r, "event"), "reload"))
                                rec = json_object_get(r);
                }
                json_object_put(records);
                if (!rec && now_usec() > deadline)
                        TEST_FAIL("no record of a reload by SIGHUP from pid %d", (int) pid);
        }
        printf("# %s\n", json_object_to_json_string(rec));
        ASSERT_EQ(JINT(rec, "uid"), (int64_t) uid);
        ASSERT_STREQ(JSTR(rec, "signalled"), signalled);
        ASSERT_STREQ(JSTR(rec, "result"), "ok");
        /* A signal does not say the sender's group. */
        ASSERT_TRUE(json_object_object_get_ex(rec, "gid", &u) && !u);
        if (unit)
                ASSERT_STREQ(JSTR(rec, "unit"), unit);
        else
                ASSERT_TRUE(json_object_object_get_ex(rec, "unit", &u) && !u);
        json_object_put(rec);
}

/*
 * SECURITY: a reload changes who gets which device. io.tsmd.Service.Reload is on record as its
 * caller's call; a SIGHUP (kill -HUP, or the monitor's own) was not on record at all, whether it
 * granted devices or failed. Then it was, with no caller: now as its sender's, as the kernel named
 * it to the process it was sent to (siginfo), the monitor or the worker.
 */
TEST(a_reload_by_signal_names_its_sender) {
        static const TsmdFile files[] = { { "policy.conf", "[Client:vm]\nUsers=root\nDevices=" DEV1 "\n" } };
        uid_t worker_uid = UID_INVALID;
        struct stat st;
        int64_t seq;
        pid_t child;
        int release;
        Tsmd t;

        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });

        /* To tsmd, the monitor: passed on to the worker, which records it. */
        seq = tsmd_audit_last_seq(&t);
        tsmd_write_file(&t, "policy.conf", "[Client:vm]\nUsers=root\nDevices=" DEV1 " " DEV2 "\n");
        child = signal_from_child(t.pid, SIGHUP, UID_INVALID, &release);
        expect_reload_by(&t, seq, child, getuid(), "tsmd");
        release_child(child, release);
        ASSERT_EQ(tsmd_audit_count_where(&t, seq, NULL, "reload", "ok"), 1U);

        /* To the worker itself: what its own kernel says, from a process of its own user where we
         * can be one (only root, or the worker's user, may signal it). */
        ASSERT_OK(stat(strf("/proc/%d", (int) tsmd_worker_pid(&t)), &st));
        if (geteuid() == 0)
                worker_uid = st.st_uid;
        seq = tsmd_audit_last_seq(&t);
        tsmd_write_file(&t, "policy.conf", "[Client:vm]\nUsers=root\nDevices=" DEV1 "\n");
        child = signal_from_child(tsmd_worker_pid(&t), SIGHUP, worker_uid, &release);
        expect_reload_by(&t, seq, child, worker_uid != UID_INVALID ? worker_uid : getuid(), "tsmd-worker");
        release_child(child, release);
        ASSERT_EQ(tsmd_audit_count_where(&t, seq, NULL, "reload", "ok"), 1U);
        tsmd_teardown(&t);
}

/*
 * SECURITY: a reload changes who gets which device. io.tsmd.Service.Reload is on record as its
 * caller's call; a SIGHUP (kill -HUP, or the monitor's own) was not on record at all, whether it
 * granted devices or failed.
 */
TEST(a_reload_by_signal_is_on_record) {
        static const TsmdFile files[] = { { "policy.conf", "[Client:vm]\nUsers=root\nDevices=" DEV1 "\n" } };
        int64_t seq;
        char *line;
        Tsmd t;

        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO, .files = files, .n_files = ELEMENTSOF(files) });
        seq = tsmd_audit_last_seq(&t);

        tsmd_write_file(&t, "policy.conf", "[Client:vm]\nUsers=root\nDevices=" DEV1 " " DEV2 "\n");
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO));
        expect_signalled_reloads(&t, seq, "ok", 1);

        tsmd_write_file(&t, "policy.conf", "[Client:vm]\nUsers=root\nDevices=*\nBogus=1\n");
        line = reload_expect_policy_kept(&t);
        free(line);
        expect_signalled_reloads(&t, seq, "io.tsmd.Service.ReloadFailed", 1);
        expect_signalled_reloads(&t, seq, "ok", 1);

        /* A Reload call is its caller's record, not one more of these. */
        {
                VarlinkClient *c = tsmd_connect(&t);

                tsmd_write_file(&t, "policy.conf", "[Client:vm]\nUsers=root\nDevices=" DEV1 "\n");
                CALL_OK(c, "io.tsmd.Service.Reload", NULL);
                ASSERT_EQ(tsmd_audit_count(&t, seq, "io.tsmd.Service.Reload", "ok"), 1U);
                expect_signalled_reloads(&t, seq, "ok", 1);
                varlink_client_free(c);
        }
        tsmd_teardown(&t);
}

TEST_MAIN();
