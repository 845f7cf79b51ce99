/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The audit trail end to end: the real tsmd on its emulated platform, driven over its socket,
 * and what it wrote to <dir>/audit/audit.log read back line by line. One record per
 * io.tsmd.Guest call, in call order, with contiguous sequence numbers and the right fields;
 * the right identity per client; a record for a call whose client died mid-request and for
 * the unbind done on its behalf; no acknowledged record lost when tsmd is killed under load,
 * and the sequence continuing after a restart; fail closed on a full disk.
 *
 * Runs in: tests. Parts that need a second uid or a mount namespace SKIP without root.
 */

#include <endian.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "emu-config.h"
#include "emu-device.h"
#include "tdisp.h"
#include "guest-calls.h"
#include "json-util.h"
#include "tsmd-fixture.h"
#include "varlink-errors.h"

#define G "io.tsmd.Guest."
#define E_GUEST(name) "io.tsmd.Guest." name

#define DEV1 "0000:01:00.0"
#define DEV2 "0000:02:00.0"
#define DEV3 "0000:03:00.0"

#define NOBODY 65534

#define CONF_EMU(devices, extra)                                                                   \
        "[Platform]\nMode=emulated\nIommuDevice=/dev/zero\nEmulatedDevices=" devices "\n" extra
#define CONF_ZERO(extra) CONF_EMU(DEV1 "," DEV2, extra)

/* The fixture's default policy (root and 65534, every device, info and state-change), plus the
 * test's own uid when it is neither, so the parts that need no second uid run unprivileged. */
static void start(Tsmd *t, const char *config, const char *log_level) {
        static char policy[256];
        const TsmdFile file = { "policy.conf", policy };
        uid_t uid = getuid();

        snprintf(policy, sizeof(policy), "[Client:tests]\nUsers=root 65534%s\nDevices=*\nScopes=info state-change\n",
                 uid != 0 && uid != NOBODY ? strf(" %u", (unsigned) uid) : "");
        tsmd_start(t, &(TsmdOptions) { .config = config, .files = &file, .n_files = 1, .log_level = log_level });
}

/* tsmd as start() gives it (CONF_ZERO(), logging at info), and a client with DEV1 attached as
 * vDevice 1 of a new context. */
static VarlinkClient *start_with_dev1(Tsmd *t, int64_t *ret_ctx) {
        VarlinkClient *c;

        start(t, CONF_ZERO(), "info");
        c = tsmd_connect(t);
        *ret_ctx = guest_open_context(c);
        CALL_OK(c, G "AttachDevice", guest_attach_params(*ret_ctx, 1, DEV1));
        return c;
}

/* ---- calls -------------------------------------------------------------------------------- */

typedef struct Msg {
        uint8_t buf[2048];
        size_t len;
} Msg;

static Msg tdisp_msg(uint8_t type, const char *address, const void *body, size_t body_len) {
        Msg m = {};

        ASSERT_OK(tdisp_build_request(type, guest_function_id(address), body, body_len, m.buf, sizeof(m.buf), &m.len));
        return m;
}

static Msg debug_read_msg(const char *address) {
        Msg m = {};

        ASSERT_OK(emu_debug_build_request(guest_function_id(address), EMU_VENDOR_ID_DEFAULT, EMU_DEBUG_OP_READ, 8, 0,
                                          m.buf, sizeof(m.buf), &m.len));
        return m;
}

static const char *request_params(int64_t ctx, int64_t vdev, const char *scope, const Msg *m) {
        _cleanup_free_ char *enc = b64(m->buf, m->len);

        return strf("{\"context\":%" PRIi64 ",\"vdeviceId\":%" PRIi64 ",\"scope\":\"%s\",\"request\":\"%s\","
                    "\"maxResponseSize\":4096}",
                    ctx, vdev, scope, enc);
}

/* A GuestRequest that must succeed: returns the response length and the auditSequence. */
static size_t guest_ok(VarlinkClient *c, int64_t ctx, int64_t vdev, const char *scope, const Msg *m,
                       int64_t *ret_seq) {
        json_object *r = CALL_OK(c, G "GuestRequest", request_params(ctx, vdev, scope, m));
        _cleanup_free_ void *resp = NULL;
        size_t len;

        resp = unb64(JSTR(r, "response"), &len);
        *ret_seq = JINT(r, "auditSequence");
        ASSERT_TRUE(*ret_seq > 0);
        return len;
}

/* ---- the audit log ------------------------------------------------------------------------ */

typedef struct AuditLines {
        json_object **rec; /* owned */
        size_t n;
        bool torn; /* bytes after the last '\n' */
} AuditLines;

static void audit_lines_done(AuditLines *l) {
        for (size_t i = 0; i < l->n; i++)
                json_object_put(l->rec[i]);
        free(l->rec);
        *l = (AuditLines) {};
}

/* Every complete line of audit.log, parsed; each must be a JSON object. */
static void audit_read(Tsmd *t, AuditLines *ret) {
        _cleanup_free_ char *text = read_file(strf("%s/audit/audit.log", t->dir));
        AuditLines l = {};
        size_t allocated = 0;
        char *p = text, *nl;

        if (!text)
                TEST_FAIL("%s/audit/audit.log does not exist", t->dir);
        while ((nl = strchr(p, '\n'))) {
                json_object *o;

                *nl = 0;
                o = json_tokener_parse(p);
                if (!o || !json_object_is_type(o, json_type_object))
                        TEST_FAIL("audit.log line %zu is not a JSON object: %s", l.n + 1, p);
                if (l.n == allocated) {
                        allocated = allocated ? allocated * 2 : 64;
                        l.rec = realloc(l.rec, allocated * sizeof(*l.rec));
                        ASSERT_NOT_NULL(l.rec);
                }
                l.rec[l.n++] = o;
                p = nl + 1;
        }
        l.torn = *p != 0;
        *ret = l;
}

/* Waits (bounded) until audit.log holds at least n complete records. */
static void audit_wait(Tsmd *t, size_t n, AuditLines *ret) {
        uint64_t deadline = now_usec() + TSMD_WAIT_USEC;

        for (;;) {
                audit_read(t, ret);
                if (ret->n >= n)
                        return;
                if (now_usec() > deadline)
                        TEST_FAIL("audit.log holds %zu records after %llu ms, expected %zu", ret->n,
                                  (unsigned long long) (TSMD_WAIT_USEC / USEC_PER_MSEC), n);
                audit_lines_done(ret);
                sleep_usec(5 * USEC_PER_MSEC);
        }
}

static const char *rec_text(json_object *o) {
        return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* The line (from 1) of the first record of event at index from or later; 0 if there is none.
 * For records whose order the test does not fix. */
static size_t line_of(const AuditLines *l, size_t from, const char *event) {
        for (size_t i = from; i < l->n; i++)
                if (streq(JSTR(l->rec[i], "event"), event))
                        return i + 1;
        return 0;
}

/* The line (from 1) of the first record of event with a seq after seq; 0 if there is none. */
static size_t line_after_seq(const AuditLines *l, int64_t seq, const char *event) {
        for (size_t i = 0; i < l->n; i++)
                if (JINT(l->rec[i], "seq") > seq && streq(JSTR(l->rec[i], "event"), event))
                        return i + 1;
        return 0;
}

/* Sequence numbers 1..n, in file order, no gap, no repeat. */
static void expect_contiguous(const AuditLines *l) {
        for (size_t i = 0; i < l->n; i++)
                if (JINT(l->rec[i], "seq") != (int64_t) i + 1)
                        TEST_FAIL("audit.log line %zu has seq %" PRIi64 ", expected %zu: %s", i + 1,
                                  JINT(l->rec[i], "seq"), i + 1, rec_text(l->rec[i]));
}

/* What one record must say. Integers: NUL_I for JSON null, ANY_I to skip the field. Strings:
 * NULL for JSON null, ANY_S to skip. */
#define NUL_I INT64_MIN
#define ANY_I (INT64_MIN + 1)
static const char ANY_S[] = "<any>";

typedef struct Want {
        int64_t seq;
        const char *event, *result;
        int64_t uid, gid, pid;
        int64_t ctx, vdev;
        const char *pci, *backend, *scope;
        int64_t scope_number, request_size, response_size;
} Want;

/* A record naming nothing but who and the outcome; the rest is added by on_dev()/in_scope(). */
static Want want(const char *event, const char *result, int64_t uid, int64_t gid, int64_t pid) {
        return (Want){ .seq = ANY_I, .event = event, .result = result, .uid = uid, .gid = gid, .pid = pid,
                       .ctx = NUL_I, .vdev = NUL_I, .pci = NULL, .backend = NULL, .scope = NULL,
                       .scope_number = NUL_I, .request_size = NUL_I, .response_size = NUL_I };
}

static Want on_dev(Want w, int64_t ctx, int64_t vdev, const char *pci) {
        w.ctx = ctx;
        w.vdev = vdev;
        w.pci = pci;
        w.backend = "emulated";
        return w;
}

static void in_scope(Want *w, const char *scope, int64_t number, int64_t request_size, int64_t response_size) {
        w->scope = scope;
        w->scope_number = number;
        w->request_size = request_size;
        w->response_size = response_size;
}

static void expect_int(json_object *rec, const char *key, int64_t want, size_t line) {
        json_object *v;

        if (want == ANY_I)
                return;
        if (!json_object_object_get_ex(rec, key, &v))
                TEST_FAIL("audit record %zu lacks '%s': %s", line, key, rec_text(rec));
        if (want == NUL_I) {
                if (v)
                        TEST_FAIL("audit record %zu: '%s' should be null: %s", line, key, rec_text(rec));
                return;
        }
        if (!v || !json_object_is_type(v, json_type_int) || json_object_get_int64(v) != want)
                TEST_FAIL("audit record %zu: '%s' should be %" PRIi64 ": %s", line, key, want, rec_text(rec));
}

static void expect_str(json_object *rec, const char *key, const char *want, size_t line) {
        json_object *v;

        if (want == ANY_S)
                return;
        if (!json_object_object_get_ex(rec, key, &v))
                TEST_FAIL("audit record %zu lacks '%s': %s", line, key, rec_text(rec));
        if (!want) {
                if (v)
                        TEST_FAIL("audit record %zu: '%s' should be null: %s", line, key, rec_text(rec));
                return;
        }
        if (!v || !json_object_is_type(v, json_type_string) || !streq(json_object_get_string(v), want))
                TEST_FAIL("audit record %zu: '%s' should be \"%s\": %s", line, key, want, rec_text(rec));
}

static void expect_record(json_object *rec, const Want *w, size_t line) {
        json_object *v;

        expect_int(rec, "seq", w->seq, line);
        expect_str(rec, "event", w->event, line);
        expect_str(rec, "result", w->result, line);
        expect_int(rec, "uid", w->uid, line);
        expect_int(rec, "gid", w->gid, line);
        expect_int(rec, "pid", w->pid, line);
        expect_int(rec, "contextId", w->ctx, line);
        expect_int(rec, "vdeviceId", w->vdev, line);
        expect_str(rec, "pci", w->pci, line);
        expect_str(rec, "backend", w->backend, line);
        expect_str(rec, "scope", w->scope, line);
        expect_int(rec, "scopeNumber", w->scope_number, line);
        expect_int(rec, "requestSize", w->request_size, line);
        expect_int(rec, "responseSize", w->response_size, line);

        /* Always there: a UTC timestamp with microseconds; for a call, its latency. */
        const char *time = JSTR(rec, "time");
        if (strlen(time) != 27 || time[10] != 'T' || time[26] != 'Z')
                TEST_FAIL("audit record %zu: bad time \"%s\"", line, time);
        if (streq(w->event, "release"))
                return; /* done on a client's behalf, not a call: no latency */
        if (!json_object_object_get_ex(rec, "latencyUsec", &v) || !json_object_is_type(v, json_type_int) ||
            json_object_get_int64(v) < 0)
                TEST_FAIL("audit record %zu: latencyUsec should be a non-negative integer: %s", line, rec_text(rec));
}

/* SIGKILL and reap (bounded). */
static void tsmd_sigkill(Tsmd *t) {
        uint64_t deadline = now_usec() + TSMD_WAIT_USEC;

        tsmd_kill(t, SIGKILL);
        while (tsmd_is_running(t)) {
                if (now_usec() > deadline)
                        TEST_FAIL("tsmd did not die of SIGKILL");
                sleep_usec(1 * USEC_PER_MSEC);
        }
        ASSERT_TRUE(WIFSIGNALED(t->exit_status) && WTERMSIG(t->exit_status) == SIGKILL);
}

/* ---- one record per call ------------------------------------------------------------------ */

/* 100 bytes, recorded as 50 and the marker: 64 bytes. */
#define LONG_SCOPE                                                                                 \
        "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
#define LONG_SCOPE_CUT "01234567890123456789012345678901234567890123456789...(truncated)"

TEST(one_record_per_call_in_call_order) {
        Tsmd t;
        VarlinkClient *c, *other;
        Want w[32];
        size_t n = 0;
        int64_t ctx, seq[32];
        size_t n_seq = 0;
        int64_t pid = getpid(), uid = getuid(), gid = getgid();
        AuditLines l;
        Msg m;
        size_t resp_len;

        start(&t, CONF_ZERO(), NULL);
        c = tsmd_connect(&t);
        other = tsmd_connect(&t);

#define WANT(ev, res) (w[n++] = want(ev, res, uid, gid, pid))
#define WANT_DEV1(ev, res) (w[n++] = on_dev(want(ev, res, uid, gid, pid), ctx, 1, DEV1))

        ctx = guest_open_context(c);
        /* Which context it created is not asked here (see open_context_record_names_its_context). */
        WANT("open-context", "ok");
        w[n - 1].ctx = ANY_I;
        CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
        WANT_DEV1("attach", "ok");
        CALL_OK(c, G "Bind", guest_vdev_params(ctx, 1));
        WANT_DEV1("bind", "ok");

        /* Guest requests in both granted scopes, each with its sizes and its sequence number. */
        static const struct {
                uint8_t type;
                const char *scope;
                int64_t number;
        } reqs[] = {
                { TDISP_MSG_GET_VERSION, "info", 0 },
                { TDISP_MSG_GET_DEVICE_INTERFACE_STATE, "info", 0 },
                { TDISP_MSG_START_INTERFACE_REQ, "state-change", 1 }, /* no nonce: the device's ERROR */
                { TDISP_MSG_START_INTERFACE_REQ, "state-change", 1 }, /* with: RUN */
                { TDISP_MSG_GET_VERSION, "info", 0 },
                { TDISP_MSG_GET_DEVICE_INTERFACE_STATE, "info", 0 },
        };
        uint8_t nonce[TDISP_NONCE_SIZE] = {};
        for (size_t i = 0; i < ELEMENTSOF(reqs); i++) {
                if (reqs[i].type == TDISP_MSG_START_INTERFACE_REQ && i == 3)
                        m = tdisp_msg(reqs[i].type, DEV1, nonce, sizeof(nonce));
                else
                        m = tdisp_msg(reqs[i].type, DEV1, NULL, 0);
                resp_len = guest_ok(c, ctx, 1, reqs[i].scope, &m, &seq[n_seq]);
                WANT_DEV1("guest-request", "ok");
                in_scope(&w[n - 1], reqs[i].scope, reqs[i].number, (int64_t) m.len, (int64_t) resp_len);
                w[n - 1].seq = seq[n_seq];
                n_seq++;
        }

        /* A debug scope the policy does not grant: refused before the request is looked at. */
        m = debug_read_msg(DEV1);
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 1, "debug-read", &m), E_GUEST("Denied"),
                   "{\"reason\":\"scope 'debug-read' not granted\"}");
        WANT_DEV1("guest-request", E_GUEST("Denied"));
        /* Its size, as its text claims it (not decoded), recorded all the same. */
        in_scope(&w[n - 1], "debug-read", 2, (int64_t) m.len, NUL_I);
        /* A message of the wrong scope: refused by the backend (EINVAL, as a kernel TSM's), after
         * decoding. */
        m = tdisp_msg(TDISP_MSG_GET_VERSION, DEV1, NULL, 0);
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 1, "state-change", &m), E_GUEST("BackendError"),
                   "{\"name\":\"InvalidScopeOrArgument\",\"errno\":22}");
        WANT_DEV1("guest-request", E_GUEST("BackendError"));
        in_scope(&w[n - 1], "state-change", 1, (int64_t) m.len, NUL_I);

        /* Refused before the scope is resolved, or because it names none the backend declares:
         * the record names the scope as asked for, an unknown one as the client's text (escaped
         * in the line as any string, and cut as an unknown method's name). */
        m = tdisp_msg(TDISP_MSG_GET_VERSION, DEV1, NULL, 0);
        CALL_ERROR(c, G "GuestRequest",
                   strf("{\"context\":%" PRIi64 ",\"vdeviceId\":1,\"scope\":\"info\",\"request\":\"AA==\","
                        "\"maxResponseSize\":-1}", ctx),
                   "org.varlink.service.InvalidParameter", NULL);
        WANT_DEV1("guest-request", "org.varlink.service.InvalidParameter");
        w[n - 1].scope = "info";
        CALL_ERROR(c, G "GuestRequest",
                   strf("{\"context\":%" PRIi64 ",\"vdeviceId\":1,\"scope\":\"no\\u001bsuch\",\"request\":\"AA==\","
                        "\"maxResponseSize\":-1}", ctx),
                   "org.varlink.service.InvalidParameter", NULL);
        WANT_DEV1("guest-request", "org.varlink.service.InvalidParameter");
        w[n - 1].scope = "no\x1bsuch";
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 1, "bogus", &m), E_GUEST("NoSuchScope"), NULL);
        WANT_DEV1("guest-request", E_GUEST("NoSuchScope"));
        w[n - 1].scope = "bogus";
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 1, LONG_SCOPE, &m), E_GUEST("NoSuchScope"), NULL);
        WANT_DEV1("guest-request", E_GUEST("NoSuchScope"));
        w[n - 1].scope = LONG_SCOPE_CUT;

        /* Another connection's handle names nothing on this one; the record says what it asked. */
        CALL_ERROR(other, G "Bind", guest_vdev_params(ctx, 1), E_GUEST("NoSuchContext"),
                   strf("{\"context\":%" PRIi64 "}", ctx));
        WANT("bind", E_GUEST("NoSuchContext"));
        w[n - 1].ctx = ctx;

        CALL_OK(c, G "Unbind", guest_vdev_params(ctx, 1));
        WANT_DEV1("unbind", "ok");
        CALL_OK(c, G "DetachDevice", guest_vdev_params(ctx, 1));
        WANT_DEV1("detach", "ok");
        CALL_OK(c, G "CloseContext", strf("{\"context\":%" PRIi64 "}", ctx));
        WANT("close-context", "ok");
        w[n - 1].ctx = ctx;
#undef WANT
#undef WANT_DEV1

        /* Everything answered was recorded before the answer: the file is complete now. */
        audit_read(&t, &l);
        ASSERT_FALSE(l.torn);
        if (l.n != n)
                TEST_FAIL("audit.log holds %zu records for %zu calls", l.n, n);
        expect_contiguous(&l);
        for (size_t i = 0; i < n; i++)
                expect_record(l.rec[i], &w[i], i + 1);
        /* Sequence numbers in the replies are those of the records, increasing with the calls. */
        for (size_t i = 1; i < n_seq; i++)
                ASSERT_EQ(seq[i], seq[i - 1] + 1);
        audit_lines_done(&l);

        /* Nothing more arrives later (no record is written twice, or late). */
        sleep_usec(200 * USEC_PER_MSEC);
        audit_read(&t, &l);
        ASSERT_EQ(l.n, n);
        audit_lines_done(&l);

        /* The metrics' scopes are the backends' (the unknown ones count as none): a client's
         * text is no key of them. */
        json_object *counters = json_get_array(CALL_OK(c, "io.tsmd.Admin.GetCounters", NULL), "counters");
        ASSERT_NOT_NULL(counters);
        for (size_t i = 0; i < json_object_array_length(counters); i++) {
                json_object *k = json_object_array_get_idx(counters, i);
                const char *key = JSTR(k, "key");

                if (streq(JSTR(k, "dimension"), "scope") && !streq(key, "info") && !streq(key, "state-change") &&
                    !streq(key, "debug-read") && !streq(key, "none"))
                        TEST_FAIL("scope key '%s' in the metrics", key);
        }

        varlink_client_free(c);
        varlink_client_free(other);
        tsmd_teardown(&t);
}

/* A scope a client made up, with a C1 control (U+009B CSI, U+0085 NEL) and a right-to-left
 * override (U+202E), as it sends it, as the file must have it (what `tail -f` shows as text), and
 * the é that stays as it is. */
#define TERMINAL_SCOPE "gnp\xe2\x80\xae.exe\xc2\x9b" "2J\xc2\x85\xc3\xa9"
#define TERMINAL_SCOPE_IN_FILE "\"scope\":\"gnp\\u202e.exe\\u009b2J\\u0085\xc3\xa9\""

/* Such a record is safe in the file, and every reader of tsmd's gets the client's string from it:
 * FollowAudit as it is written, QueryAudit from the file, a restarted tsmd's resume scan (its seq
 * goes on after it). */
TEST(client_strings_in_the_file_are_escaped_for_terminals) {
        _cleanup_free_ char *text = NULL;
        json_object *records, *rec = NULL;
        AsyncCall follow = {};
        VarlinkClient *c, *a;
        int64_t ctx, seq;
        Msg m;
        Tsmd t;

        start(&t, CONF_ZERO(), NULL);
        c = tsmd_connect(&t);
        a = tsmd_connect(&t);
        tsmd_call_async(a, "io.tsmd.Admin.FollowAudit", NULL, VARLINK_CALL_MORE, &follow);
        ASSERT_TRUE(tsmd_async_wait(a, &follow, 1, TSMD_WAIT_USEC));
        ctx = guest_open_context(c);
        CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
        m = tdisp_msg(TDISP_MSG_GET_VERSION, DEV1, NULL, 0);
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 1, TERMINAL_SCOPE, &m), E_GUEST("NoSuchScope"), NULL);

        text = read_file(strf("%s/audit/audit.log", t.dir));
        ASSERT_NOT_NULL(text);
        if (!strstr(text, TERMINAL_SCOPE_IN_FILE))
                TEST_FAIL("the scope is not escaped in the file:\n%s", text);
        ASSERT_NULL(strstr(text, "\xe2\x80\xae"));
        ASSERT_NULL(strstr(text, "\xc2\x9b"));
        ASSERT_NULL(strstr(text, "\xc2\x85"));

        /* The follower is sent the line: the same string. */
        for (size_t i = 1;; i++) {
                ASSERT_TRUE(tsmd_async_wait(a, &follow, i + 1, TSMD_WAIT_USEC));
                ASSERT_NULL(follow.errors[i]);
                rec = json_object_object_get(follow.params[i], "record");
                if (rec && streq(JSTR(rec, "result"), E_GUEST("NoSuchScope")))
                        break;
        }
        ASSERT_STREQ(JSTR(rec, "scope"), TERMINAL_SCOPE);
        seq = JINT(rec, "seq");
        async_call_done(&follow);

        records = tsmd_audit_query(&t, strf("{\"fromSeq\":%" PRIi64 ",\"toSeq\":%" PRIi64 "}", seq, seq));
        ASSERT_EQ(json_object_array_length(records), 1u);
        ASSERT_STREQ(JSTR(json_object_array_get_idx(records, 0), "scope"), TERMINAL_SCOPE);
        json_object_put(records);

        varlink_client_free(c);
        varlink_client_free(a);
        tsmd_stop(&t);
        tsmd_restart(&t, &(TsmdOptions){});
        /* The resume scan read the file with it: the sequence goes on after it. */
        ASSERT_TRUE(tsmd_audit_last_seq(&t) > seq);
        records = tsmd_audit_query(&t, strf("{\"fromSeq\":%" PRIi64 ",\"toSeq\":%" PRIi64 "}", seq, seq));
        ASSERT_EQ(json_object_array_length(records), 1u);
        ASSERT_STREQ(JSTR(json_object_array_get_idx(records, 0), "scope"), TERMINAL_SCOPE);
        json_object_put(records);
        tsmd_teardown(&t);
}

/*
 * The record of an OpenContext must say which context it created: every later record of the
 * context names it by that handle (contextId), and handles are numbered per connection, so
 * without it the trail cannot tie a context's requests and its close to the open that made it
 * (the design: "who, which VM/context ..." for every request).
 */
TEST(open_context_record_names_its_context) {
        Tsmd t;
        VarlinkClient *c;
        AuditLines l;
        int64_t ctx1, ctx2;

        start(&t, CONF_ZERO(), NULL);
        c = tsmd_connect(&t);
        ctx1 = guest_open_context(c);
        ctx2 = guest_open_context(c);
        ASSERT_NE(ctx1, ctx2);

        audit_read(&t, &l);
        ASSERT_EQ(l.n, 2);
        expect_str(l.rec[0], "event", "open-context", 1);
        expect_str(l.rec[1], "event", "open-context", 2);
        expect_int(l.rec[0], "contextId", ctx1, 1);
        expect_int(l.rec[1], "contextId", ctx2, 2);
        audit_lines_done(&l);

        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* ---- who: two clients, two uids ----------------------------------------------------------- */

TEST(records_carry_each_clients_identity) {
        Tsmd t;
        VarlinkClient *a, *b;
        int64_t ca, cb, sa, sb;
        pid_t pid_a = getpid(), pid_b;
        AuditLines l;
        Msg ma, mb;
        size_t la, lb;

        start(&t, CONF_ZERO(), NULL);
        if (!tsmd_can_switch_uid()) {
                tsmd_teardown(&t);
                SKIP("a second uid needs root");
        }
        a = tsmd_connect(&t);
        b = tsmd_connect_as(&t, NOBODY, NOBODY);
        pid_b = t.helpers[t.n_helpers - 1];

        /* Interleaved, so a record attributed to the wrong connection shows. */
        ca = guest_open_context(a);
        cb = guest_open_context(b);
        CALL_OK(b, G "AttachDevice", guest_attach_params(cb, 7, DEV2));
        CALL_OK(a, G "AttachDevice", guest_attach_params(ca, 3, DEV1));
        CALL_OK(a, G "Bind", guest_vdev_params(ca, 3));
        CALL_OK(b, G "Bind", guest_vdev_params(cb, 7));
        ma = tdisp_msg(TDISP_MSG_GET_VERSION, DEV1, NULL, 0);
        mb = tdisp_msg(TDISP_MSG_GET_DEVICE_INTERFACE_STATE, DEV2, NULL, 0);
        lb = guest_ok(b, cb, 7, "info", &mb, &sb);
        la = guest_ok(a, ca, 3, "info", &ma, &sa);
        ASSERT_EQ(sa, sb + 1);
        Msg md = debug_read_msg(DEV2);
        CALL_ERROR(b, G "GuestRequest", request_params(cb, 7, "debug-read", &md), E_GUEST("Denied"), NULL);

        audit_read(&t, &l);
        ASSERT_EQ(l.n, 9);
        expect_contiguous(&l);
        const Want want[] = {
                { .event = "open-context", .result = "ok", .uid = 0, .gid = 0, .pid = pid_a, .seq = 1,
                  .ctx = ANY_I, .vdev = NUL_I, .pci = NULL, .backend = NULL, .scope = NULL,
                  .scope_number = NUL_I, .request_size = NUL_I, .response_size = NUL_I },
                { .event = "open-context", .result = "ok", .uid = NOBODY, .gid = NOBODY, .pid = pid_b, .seq = 2,
                  .ctx = ANY_I, .vdev = NUL_I, .pci = NULL, .backend = NULL, .scope = NULL,
                  .scope_number = NUL_I, .request_size = NUL_I, .response_size = NUL_I },
                { .event = "attach", .result = "ok", .uid = NOBODY, .gid = NOBODY, .pid = pid_b, .seq = 3,
                  .ctx = cb, .vdev = 7, .pci = DEV2, .backend = "emulated", .scope = NULL,
                  .scope_number = NUL_I, .request_size = NUL_I, .response_size = NUL_I },
                { .event = "attach", .result = "ok", .uid = 0, .gid = 0, .pid = pid_a, .seq = 4,
                  .ctx = ca, .vdev = 3, .pci = DEV1, .backend = "emulated", .scope = NULL,
                  .scope_number = NUL_I, .request_size = NUL_I, .response_size = NUL_I },
                { .event = "bind", .result = "ok", .uid = 0, .gid = 0, .pid = pid_a, .seq = 5,
                  .ctx = ca, .vdev = 3, .pci = DEV1, .backend = "emulated", .scope = NULL,
                  .scope_number = NUL_I, .request_size = NUL_I, .response_size = NUL_I },
                { .event = "bind", .result = "ok", .uid = NOBODY, .gid = NOBODY, .pid = pid_b, .seq = 6,
                  .ctx = cb, .vdev = 7, .pci = DEV2, .backend = "emulated", .scope = NULL,
                  .scope_number = NUL_I, .request_size = NUL_I, .response_size = NUL_I },
                { .event = "guest-request", .result = "ok", .uid = NOBODY, .gid = NOBODY, .pid = pid_b, .seq = sb,
                  .ctx = cb, .vdev = 7, .pci = DEV2, .backend = "emulated", .scope = "info",
                  .scope_number = 0, .request_size = (int64_t) mb.len, .response_size = (int64_t) lb },
                { .event = "guest-request", .result = "ok", .uid = 0, .gid = 0, .pid = pid_a, .seq = sa,
                  .ctx = ca, .vdev = 3, .pci = DEV1, .backend = "emulated", .scope = "info",
                  .scope_number = 0, .request_size = (int64_t) ma.len, .response_size = (int64_t) la },
                { .event = "guest-request", .result = E_GUEST("Denied"), .uid = NOBODY, .gid = NOBODY,
                  .pid = pid_b, .seq = 9, .ctx = cb, .vdev = 7, .pci = DEV2, .backend = "emulated",
                  .scope = "debug-read", .scope_number = 2, .request_size = (int64_t) md.len,
                  .response_size = NUL_I },
        };
        for (size_t i = 0; i < ELEMENTSOF(want); i++)
                expect_record(l.rec[i], &want[i], i + 1);
        audit_lines_done(&l);

        /* Both leave with a bound device: each context's release and each unbind is recorded
         * under the owner's uid. */
        varlink_client_free(a);
        varlink_client_free(b);
        audit_wait(&t, 13, &l);
        ASSERT_EQ(l.n, 13);
        expect_contiguous(&l);
        bool seen_a = false, seen_b = false;
        size_t contexts_released = 0;
        for (size_t i = 9; i < 13; i++) {
                expect_str(l.rec[i], "result", "ok", i + 1);
                if (streq(JSTR(l.rec[i], "event"), "release-context")) {
                        bool is_a = JINT(l.rec[i], "uid") == 0;

                        expect_int(l.rec[i], "contextId", is_a ? ca : cb, i + 1);
                        expect_int(l.rec[i], "vdeviceId", NUL_I, i + 1);
                        contexts_released++;
                        continue;
                }
                expect_str(l.rec[i], "event", "release", i + 1);
                if (streq(JSTR(l.rec[i], "pci"), DEV1)) {
                        expect_int(l.rec[i], "uid", 0, i + 1);
                        expect_int(l.rec[i], "contextId", ca, i + 1);
                        expect_int(l.rec[i], "vdeviceId", 3, i + 1);
                        seen_a = true;
                } else {
                        expect_str(l.rec[i], "pci", DEV2, i + 1);
                        expect_int(l.rec[i], "uid", NOBODY, i + 1);
                        expect_int(l.rec[i], "contextId", cb, i + 1);
                        expect_int(l.rec[i], "vdeviceId", 7, i + 1);
                        seen_b = true;
                }
        }
        ASSERT_TRUE(seen_a && seen_b);
        ASSERT_EQ(contexts_released, 2u);
        audit_lines_done(&l);

        tsmd_teardown(&t);
}

/* The records of the calls a policy rule allowed name it ("rule": which grant was used, as
 * POLICY.md promises); a refusal by the policy names the client's rule whose grant was missing,
 * and says why ("reason", as the client is told); a call no rule is asked for has neither. */
TEST(records_name_the_rule_that_allowed_them) {
        Msg m = tdisp_msg(TDISP_MSG_GET_VERSION, DEV1, NULL, 0), md = debug_read_msg(DEV1);
        VarlinkClient *c;
        AuditLines l;
        int64_t ctx, seq;
        Tsmd t;

        c = start_with_dev1(&t, &ctx);
        CALL_OK(c, G "Bind", guest_vdev_params(ctx, 1));
        CALL_OK(c, G "GetDeviceState", guest_vdev_params(ctx, 1));
        (void) guest_ok(c, ctx, 1, "info", &m, &seq);
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 1, "debug-read", &md), E_GUEST("Denied"), NULL);

        audit_read(&t, &l);
        ASSERT_EQ(l.n, 6);
        for (size_t i = 0; i < l.n; i++) {
                const char *event = JSTR(l.rec[i], "event");
                bool denied = !streq(JSTR(l.rec[i], "result"), "ok");
                json_object *rule;

                if (streq(event, "open-context")) {
                        if (json_object_object_get_ex(l.rec[i], "rule", NULL) ||
                            json_object_object_get_ex(l.rec[i], "reason", NULL))
                                TEST_FAIL("record %zu names a rule or reason: %s", i + 1, rec_text(l.rec[i]));
                        continue;
                }
                if (!json_object_object_get_ex(l.rec[i], "rule", &rule) || !streq(json_object_get_string(rule), "tests"))
                        TEST_FAIL("record %zu does not name rule 'tests': %s", i + 1, rec_text(l.rec[i]));
                if (denied)
                        expect_str(l.rec[i], "reason", "scope 'debug-read' not granted", i + 1);
                else if (json_object_object_get_ex(l.rec[i], "reason", NULL))
                        TEST_FAIL("record %zu of an allowed call has a reason: %s", i + 1, rec_text(l.rec[i]));
        }
        audit_lines_done(&l);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* A refusal of a device the client's rule does not list says so, naming the rule; a client no
 * rule names is refused by name, with no rule to name. */
TEST(denied_device_record_says_why) {
        static const TsmdFile file = { "policy.conf", "[Client:only-dev2]\nUsers=root 65534\nDevices=" DEV2 "\n" };
        VarlinkClient *c;
        AuditLines l;
        int64_t ctx;
        size_t at;
        Tsmd t;

        if (getuid() != 0 && getuid() != NOBODY)
                SKIP("the policy names root and 65534 only");
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO(), .files = &file, .n_files = 1 });
        c = tsmd_connect(&t);
        ctx = guest_open_context(c);
        CALL_ERROR(c, G "AttachDevice", guest_attach_params(ctx, 1, DEV1), E_GUEST("Denied"),
                   "{\"reason\":\"device not in any rule matching the client\"}");
        audit_read(&t, &l);
        at = line_of(&l, 0, "attach");
        ASSERT_TRUE(at > 0);
        expect_str(l.rec[at - 1], "result", E_GUEST("Denied"), at);
        expect_str(l.rec[at - 1], "pci", DEV1, at);
        expect_str(l.rec[at - 1], "rule", "only-dev2", at);
        expect_str(l.rec[at - 1], "reason", "device not in any rule matching the client", at);
        audit_lines_done(&l);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* An AttachDevice for a device tsmd does not know records the address as sent when it is one, as
 * sysfs spells it, so that a query by device finds what was probed; any other text of the
 * client's is not recorded. */
TEST(unknown_device_record_names_a_well_formed_address) {
        static const char *const sent[] = { "0000:09:00.0", "0000:0A:00.0", "0000:01:00.0/../x", "not-a-device\\u0001" };
        static const char *const recorded[] = { "0000:09:00.0", "0000:0a:00.0", NULL, NULL };
        json_object *records;
        VarlinkClient *c;
        AuditLines l;
        int64_t ctx;
        size_t at = 0;
        Tsmd t;

        start(&t, CONF_ZERO(), NULL);
        c = tsmd_connect(&t);
        ctx = guest_open_context(c);
        for (size_t i = 0; i < ELEMENTSOF(sent); i++)
                (void) CALL_ERROR(c, G "AttachDevice",
                                  strf("{\"context\":%" PRIi64 ",\"vdeviceId\":1,\"pciAddress\":\"%s\"}", ctx, sent[i]),
                                  E_GUEST("NoSuchDevice"), NULL);
        audit_read(&t, &l);
        for (size_t i = 0; i < ELEMENTSOF(sent); i++) {
                at = line_of(&l, at, "attach");
                ASSERT_TRUE(at > 0);
                expect_str(l.rec[at - 1], "result", E_GUEST("NoSuchDevice"), at);
                expect_str(l.rec[at - 1], "pci", recorded[i], at);
        }
        audit_lines_done(&l);

        records = tsmd_audit_query(&t, "{\"pciAddress\":\"0000:09:00.0\"}");
        ASSERT_EQ(json_object_array_length(records), 1U);
        ASSERT_STREQ(JSTR(json_object_array_get_idx(records, 0), "result"), E_GUEST("NoSuchDevice"));
        json_object_put(records);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* A device change's record names its device as sysfs spells it, as QueryAudit's filter takes it:
 * an address given in capitals is found by its lower-case spelling (rv-today). */
TEST(device_change_record_spells_the_address_as_sysfs_does) {
        VarlinkClient *c;
        AuditLines l;
        size_t at;
        Tsmd t;

        start(&t, CONF_ZERO(), NULL);
        c = tsmd_connect(&t);
        (void) tsmd_call(c, "io.tsmd.Admin.ConnectDevice", "{\"pciAddress\":\"0000:0A:00.0\",\"tsm\":\"tsm0\"}", NULL);
        audit_read(&t, &l);
        at = line_of(&l, 0, "io.tsmd.Admin.ConnectDevice");
        ASSERT_TRUE(at > 0);
        expect_str(l.rec[at - 1], "pci", "0000:0a:00.0", at);
        audit_lines_done(&l);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* ---- a client killed mid-request ---------------------------------------------------------- */

/* The emulated device's answer takes this long: the kill falls well inside it, and tsmd has long
 * read the request by then, even on a loaded machine (CI's parallel tests, ASan). */
#define KILLED_REQUEST_LATENCY_USEC 2000000 /* 2 s, into tsmd.conf as it is */
#define KILLED_REQUEST_KILL_AFTER_USEC (500 * USEC_PER_MSEC)

TEST(client_killed_mid_request_is_recorded) {
        Tsmd t;
        int notify[2], status;
        struct {
                int64_t ctx;
                size_t request_len;
        } info = {};
        AuditLines l;
        pid_t pid;

        start(&t, CONF_ZERO("EmulatedLatencyUSec=" STRINGIFY(KILLED_REQUEST_LATENCY_USEC) "\n"), NULL);

        ASSERT_OK(pipe2(notify, O_CLOEXEC));
        fflush(NULL);
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0) {
                /* The victim: a VMM with a bound device and a guest request in flight. */
                Msg m = tdisp_msg(TDISP_MSG_GET_VERSION, DEV1, NULL, 0);
                VarlinkClient *c;
                AsyncCall gr;

                close(notify[0]);
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                c = tsmd_connect(&t);
                info.ctx = guest_open_context(c);
                info.request_len = m.len;
                CALL_OK(c, G "AttachDevice", guest_attach_params(info.ctx, 1, DEV1));
                CALL_OK(c, G "Bind", guest_vdev_params(info.ctx, 1));
                tsmd_call_async(c, G "GuestRequest", request_params(info.ctx, 1, "info", &m), 0, &gr);
                ASSERT_EQ(varlink_client_get_events(c) & POLLOUT, 0); /* all of it was sent */
                ASSERT_EQ(write(notify[1], &info, sizeof(info)), (ssize_t) sizeof(info));
                for (;;)
                        pause();
        }
        close(notify[1]);
        struct pollfd p = { .fd = notify[0], .events = POLLIN };
        ASSERT_EQ(poll(&p, 1, 5000), 1);
        if (read(notify[0], &info, sizeof(info)) != (ssize_t) sizeof(info)) {
                (void) kill(pid, SIGKILL);
                (void) waitpid(pid, &status, 0);
                TEST_FAIL("the victim client failed before sending its request (status 0x%x)", status);
        }
        close(notify[0]);

        /* tsmd has the request (its answer is due 2 s after it): kill the client. */
        sleep_usec(KILLED_REQUEST_KILL_AFTER_USEC);
        audit_read(&t, &l);
        ASSERT_EQ(l.n, 3); /* open, attach, bind; the request is not answered, so not recorded */
        audit_lines_done(&l);
        uint64_t killed_at = now_usec();
        ASSERT_OK(kill(pid, SIGKILL));
        ASSERT_EQ(waitpid(pid, &status, 0), pid);

        audit_wait(&t, 6, &l);
        audit_lines_done(&l);
        /* Past the moment the cancelled request would have completed: still exactly six. */
        uint64_t until = killed_at + KILLED_REQUEST_LATENCY_USEC;
        if (until > now_usec())
                sleep_usec(until - now_usec());
        ASSERT_TRUE(tsmd_is_running(&t));
        audit_read(&t, &l);
        ASSERT_FALSE(l.torn);
        ASSERT_EQ(l.n, 6);
        expect_contiguous(&l);

        expect_str(l.rec[0], "event", "open-context", 1);
        expect_str(l.rec[1], "event", "attach", 2);
        expect_str(l.rec[2], "event", "bind", 3);
        size_t gr_line = line_of(&l, 3, "guest-request"), release_line = line_of(&l, 3, "release"),
               context_line = line_of(&l, 3, "release-context");
        if (gr_line == 0 || release_line == 0 || context_line == 0)
                TEST_FAIL("expected one guest-request, one release-context and one release record after the kill: "
                          "%s / %s / %s", rec_text(l.rec[3]), rec_text(l.rec[4]), rec_text(l.rec[5]));
        expect_int(l.rec[context_line - 1], "contextId", info.ctx, context_line);
        const Want gr = { .seq = ANY_I, .event = "guest-request", .result = VARLINK_ERROR_DISCONNECTED,
                          .uid = getuid(), .gid = getgid(), .pid = pid, .ctx = info.ctx, .vdev = 1, .pci = DEV1,
                          .backend = "emulated", .scope = "info", .scope_number = 0,
                          .request_size = (int64_t) info.request_len, .response_size = NUL_I };
        expect_record(l.rec[gr_line - 1], &gr, gr_line);
        const Want rel = { .seq = ANY_I, .event = "release", .result = "ok", .uid = getuid(), .gid = ANY_I,
                           .pid = ANY_I, .ctx = info.ctx, .vdev = 1, .pci = DEV1, .backend = ANY_S,
                           .scope = NULL, .scope_number = NUL_I, .request_size = NUL_I,
                           .response_size = NUL_I };
        expect_record(l.rec[release_line - 1], &rel, release_line);
        audit_lines_done(&l);

        tsmd_teardown(&t);
}

/* A VMM that hangs up while its Bind waits for the device: the bind is recorded as
 * disconnected, and the release, which unbinds after it, once the device has answered; and what
 * the device did with the Bind, once it did, as a bind-late naming the Bind's record. */
TEST(hangup_with_a_bind_in_flight_is_released_and_recorded) {
        Tsmd t;
        VarlinkClient *c;
        AsyncCall bind = {};
        AuditLines l;
        int64_t ctx;
        size_t bind_line, release_line, late_line;

        start(&t, CONF_ZERO("EmulatedLatencyUSec=300000\n"), NULL);
        c = tsmd_connect(&t);
        ctx = guest_open_context(c);
        CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
        tsmd_call_async(c, G "Bind", guest_vdev_params(ctx, 1), 0, &bind);
        tsmd_pump(c, 50 * USEC_PER_MSEC);
        ASSERT_EQ(bind.n, 0u);
        async_call_done(&bind);
        varlink_client_free(c);

        audit_wait(&t, 6, &l);
        ASSERT_EQ(l.n, 6);
        expect_contiguous(&l);
        bind_line = line_of(&l, 2, "bind");
        release_line = line_of(&l, 2, "release");
        late_line = line_of(&l, 2, "bind-late");
        if (bind_line == 0 || release_line == 0 || late_line == 0 || line_of(&l, 2, "release-context") == 0)
                TEST_FAIL("expected a bind, a release-context, a bind-late and a release record: %s / %s / %s / %s",
                          rec_text(l.rec[2]), rec_text(l.rec[3]), rec_text(l.rec[4]), rec_text(l.rec[5]));
        expect_str(l.rec[bind_line - 1], "result", VARLINK_ERROR_DISCONNECTED, bind_line);
        ASSERT_TRUE(late_line > bind_line);
        expect_str(l.rec[late_line - 1], "result", "ok", late_line);
        expect_int(l.rec[late_line - 1], "originalSeq", JINT(l.rec[bind_line - 1], "seq"), late_line);
        expect_int(l.rec[late_line - 1], "vdeviceId", 1, late_line);
        expect_str(l.rec[late_line - 1], "pci", DEV1, late_line);
        const Want rel = { .seq = ANY_I, .event = "release", .result = "ok", .uid = getuid(), .gid = ANY_I,
                           .pid = ANY_I, .ctx = ctx, .vdev = 1, .pci = DEV1, .backend = ANY_S,
                           .scope = NULL, .scope_number = NUL_I, .request_size = NUL_I,
                           .response_size = NUL_I };
        expect_record(l.rec[release_line - 1], &rel, release_line);
        audit_lines_done(&l);
        tsmd_teardown(&t);
}

/* ---- SIGTERM: the request in flight and the releases are recorded before tsmd exits ------- */

TEST(sigterm_records_what_it_finishes) {
        Tsmd t;
        VarlinkClient *c;
        AsyncCall gr;
        AuditLines l;
        int64_t ctx;
        Msg m = tdisp_msg(TDISP_MSG_GET_VERSION, DEV1, NULL, 0);

        start(&t, CONF_ZERO("EmulatedLatencyUSec=300000\n"), NULL);
        c = tsmd_connect(&t);
        ctx = guest_open_context(c);
        CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
        CALL_OK(c, G "Bind", guest_vdev_params(ctx, 1));
        tsmd_call_async(c, G "GuestRequest", request_params(ctx, 1, "info", &m), 0, &gr);
        tsmd_pump(c, 50 * USEC_PER_MSEC);
        ASSERT_EQ(gr.n, 0);

        tsmd_kill(&t, SIGTERM);
        ASSERT_TRUE(tsmd_async_wait(c, &gr, 1, TSMD_WAIT_USEC));
        if (gr.errors[0])
                TEST_FAIL("the request in flight at SIGTERM failed: %s", gr.errors[0]);
        int64_t seq = JINT(gr.params[0], "auditSequence");
        ASSERT_EQ(seq, 4);
        tsmd_stop(&t);

        /* Its record, then the release of the context closed with the connection, and of the
         * device bound in it. */
        audit_read(&t, &l);
        ASSERT_FALSE(l.torn);
        ASSERT_EQ(l.n, 6);
        expect_contiguous(&l);
        Want w = on_dev(want("guest-request", "ok", getuid(), getgid(), getpid()), ctx, 1, DEV1);
        in_scope(&w, "info", 0, (int64_t) m.len, ANY_I);
        w.seq = seq;
        expect_record(l.rec[3], &w, 4);
        expect_str(l.rec[4], "event", "release-context", 5);
        expect_int(l.rec[4], "contextId", ctx, 5);
        w = on_dev(want("release", "ok", getuid(), ANY_I, ANY_I), ctx, 1, DEV1);
        w.backend = ANY_S;
        expect_record(l.rec[5], &w, 6);
        audit_lines_done(&l);

        async_call_done(&gr);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* ---- SIGKILL of tsmd under load ----------------------------------------------------------- */

#define LOAD_CLIENTS 3

static json_object *parse_or_null(const char *text) {
        return text ? json_tokener_parse(text) : NULL;
}

/* A load client: its own device, GuestRequests back to back; writes every acknowledged
 * auditSequence to out. Ends quietly when tsmd goes away; exit 2 on anything unexpected. */
static _noreturn_ void load_client(const char *socket, const char *address, int out) {
        VarlinkClient *c = NULL;
        json_object *r;
        const char *error;
        int64_t ctx;
        char params[512];
        Msg m;

        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (varlink_client_connect(socket, &c) < 0)
                _exit(0);
        varlink_client_set_timeout(c, 10 * USEC_PER_SEC);

#define STEP(method, p)                                                                            \
        do {                                                                                       \
                if (varlink_client_call(c, (method), parse_or_null(p), &r, &error) < 0)            \
                        _exit(0);                                                                  \
                if (error) {                                                                       \
                        if (streq(error, VARLINK_ERROR_DISCONNECTED))                              \
                                _exit(0);                                                          \
                        fprintf(stderr, "load client: %s: %s\n", (method), error);                \
                        _exit(2);                                                                  \
                }                                                                                  \
        } while (0)

        STEP(G "OpenContext", (const char *) NULL);
        ctx = json_object_get_int64(json_object_object_get(r, "context"));
        safe_close(varlink_client_take_fd(c, 0));
        snprintf(params, sizeof(params), "%s", guest_attach_params(ctx, 1, address));
        STEP(G "AttachDevice", params);
        snprintf(params, sizeof(params), "%s", guest_vdev_params(ctx, 1));
        STEP(G "Bind", params);
        m = tdisp_msg(TDISP_MSG_GET_VERSION, address, NULL, 0);
        snprintf(params, sizeof(params), "%s", request_params(ctx, 1, "info", &m));
        for (;;) {
                json_object *s;
                uint64_t seq;

                STEP(G "GuestRequest", params);
                if (!json_object_object_get_ex(r, "auditSequence", &s) || !json_object_is_type(s, json_type_int)) {
                        fprintf(stderr, "load client: a reply without auditSequence\n");
                        _exit(2);
                }
                seq = (uint64_t) json_object_get_int64(s);
                if (write(out, &seq, sizeof(seq)) != (ssize_t) sizeof(seq))
                        _exit(3);
        }
#undef STEP
}

typedef struct Acked {
        uint64_t *seq;
        size_t n, allocated;
} Acked;

static void acked_add(Acked *a, uint64_t seq) {
        if (a->n == a->allocated) {
                a->allocated = a->allocated ? a->allocated * 2 : 1024;
                a->seq = realloc(a->seq, a->allocated * sizeof(*a->seq));
                ASSERT_NOT_NULL(a->seq);
        }
        a->seq[a->n++] = seq;
}

/* Reads what is in the pipe, waiting up to timeout_ms; false at EOF (every writer gone). */
static bool acked_collect(Acked *a, int fd, int timeout_ms) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        uint64_t buf[512];
        ssize_t k;

        if (poll(&p, 1, timeout_ms) <= 0)
                return true;
        k = read(fd, buf, sizeof(buf));
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
                return true;
        ASSERT_TRUE(k >= 0);
        if (k == 0)
                return false;
        ASSERT_EQ(k % (ssize_t) sizeof(uint64_t), 0); /* writes of 8 bytes to a pipe are atomic */
        for (size_t i = 0; i < (size_t) k / sizeof(uint64_t); i++)
                acked_add(a, buf[i]);
        return true;
}

/* After a restart: a new client's first calls continue the sequence right after the last
 * record in the file. The probe adds six records (four calls, and the releases of its context
 * and device as it leaves). */
static void probe_continues_at(Tsmd *t, uint64_t last) {
        VarlinkClient *c = tsmd_connect(t);
        int64_t ctx = guest_open_context(c), seq;
        Msg m = tdisp_msg(TDISP_MSG_GET_VERSION, DEV3, NULL, 0);
        AuditLines l;

        CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 1, DEV3));
        CALL_OK(c, G "Bind", guest_vdev_params(ctx, 1));
        guest_ok(c, ctx, 1, "info", &m, &seq);
        ASSERT_EQ(seq, (int64_t) last + 4);
        audit_read(t, &l);
        ASSERT_FALSE(l.torn); /* a torn tail was repaired at start */
        ASSERT_EQ(l.n, last + 4);
        expect_contiguous(&l);
        expect_str(l.rec[last], "event", "open-context", last + 1);
        expect_int(l.rec[last], "pid", getpid(), last + 1);
        audit_lines_done(&l);
        /* Its disconnect records two releases; wait for them, so the next kill has a settled file. */
        varlink_client_free(c);
        audit_wait(t, last + 6, &l);
        audit_lines_done(&l);
}

TEST(sigkill_under_load_loses_no_acknowledged_record) {
        static const char *const devices[LOAD_CLIENTS] = { DEV1, DEV2, "0000:04:00.0" };
        Tsmd t;
        Acked acked = {};
        uint64_t last = 0;
        unsigned seed = (unsigned) (now_usec() ^ (uint64_t) getpid());

        printf("# seed %u\n", seed);
        srand(seed);
        start(&t, CONF_EMU(DEV1 "," DEV2 "," DEV3 ",0000:04:00.0", ""), "info");

        for (unsigned iteration = 0; iteration < 4; iteration++) {
                pid_t pids[LOAD_CLIENTS];
                int out[2], status;
                size_t first = acked.n, want = 20 + (size_t) (rand() % 400);
                uint64_t deadline;
                AuditLines l;

                ASSERT_OK(pipe2(out, O_CLOEXEC));
                for (size_t i = 0; i < LOAD_CLIENTS; i++) {
                        fflush(NULL);
                        pids[i] = fork();
                        ASSERT_OK(pids[i]);
                        if (pids[i] == 0) {
                                close(out[0]);
                                load_client(t.socket, devices[i], out[1]);
                        }
                }
                close(out[1]);

                /* Kill at a random point: after a random number of acknowledgements, plus a
                 * random delay of up to 5 ms. */
                deadline = now_usec() + 10 * USEC_PER_SEC;
                while (acked.n - first < want) {
                        if (now_usec() > deadline)
                                TEST_FAIL("only %zu requests acknowledged in 10 s", acked.n - first);
                        if (!acked_collect(&acked, out[0], 100))
                                TEST_FAIL("every load client ended before tsmd was killed");
                }
                sleep_usec((uint64_t) (rand() % 5000));
                tsmd_sigkill(&t);

                /* The clients notice and end; whatever they were told before is in the pipe. */
                deadline = now_usec() + 10 * USEC_PER_SEC;
                while (acked_collect(&acked, out[0], 100))
                        if (now_usec() > deadline)
                                TEST_FAIL("the load clients did not end after tsmd was killed");
                close(out[0]);
                for (size_t i = 0; i < LOAD_CLIENTS; i++) {
                        ASSERT_EQ(waitpid(pids[i], &status, 0), pids[i]);
                        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                                TEST_FAIL("load client %zu failed (status 0x%x)", i, status);
                }

                /* Every acknowledged record is in the file, once, and the file has no gap. */
                audit_read(&t, &l);
                expect_contiguous(&l);
                ASSERT_TRUE(l.n >= last);
                for (size_t i = 0; i < acked.n; i++) {
                        uint64_t s = acked.seq[i];

                        if (s == 0 || s > l.n)
                                TEST_FAIL("acknowledged seq %" PRIu64 " is not in audit.log (%zu records)", s, l.n);
                        expect_str(l.rec[s - 1], "event", "guest-request", s);
                        expect_str(l.rec[s - 1], "result", "ok", s);
                        if (i >= first)
                                ASSERT_TRUE(s > last);
                }
                printf("# kill %u: %zu acknowledged, log ends at seq %zu%s\n", iteration, acked.n - first, l.n,
                       l.torn ? " (torn tail)" : "");
                last = l.n;
                audit_lines_done(&l);

                /* Same directory: the new tsmd continues at last + 1. */
                tsmd_restart(&t, &(TsmdOptions) { .log_level = "info" });
                probe_continues_at(&t, last);
                last += 6;
        }

        /* No sequence number was acknowledged twice. */
        for (size_t i = 0; i < acked.n; i++)
                for (size_t j = i + 1; j < acked.n; j++)
                        if (acked.seq[i] == acked.seq[j])
                                TEST_FAIL("seq %" PRIu64 " acknowledged twice", acked.seq[i]);
        free(acked.seq);
        tsmd_teardown(&t);
}

/* ---- fail closed on a full disk ----------------------------------------------------------- */

typedef struct Expected {
        const char *event[4096];
        const char *result[4096];
        size_t n;
} Expected;

static void expect_call(Expected *e, const char *event, const char *result) {
        ASSERT_TRUE(e->n < ELEMENTSOF(e->event));
        e->event[e->n] = event;
        e->result[e->n++] = result;
}

/* The file holds exactly the calls in e, in order (all made by this process). */
static void expect_log_is(Tsmd *t, const Expected *e) {
        AuditLines l;

        audit_read(t, &l);
        ASSERT_FALSE(l.torn);
        expect_contiguous(&l);
        for (size_t i = 0; i < l.n && i < e->n; i++) {
                expect_str(l.rec[i], "event", e->event[i], i + 1);
                expect_str(l.rec[i], "result", e->result[i], i + 1);
                /* A reload by signal is its sender's: ours too (tsmd_kill()), sent to the monitor. */
                expect_int(l.rec[i], "pid", getpid(), i + 1);
                if (streq(e->event[i], "reload"))
                        expect_str(l.rec[i], "signalled", "tsmd", i + 1);
        }
        if (l.n != e->n)
                TEST_FAIL("audit.log holds %zu records, %zu calls were answered with a record", l.n, e->n);
        audit_lines_done(&l);
}

TEST(full_disk_fails_closed) {
        static Expected e;
        Tsmd t;
        VarlinkClient *c, *d;
        char audit[300], filler[320];
        int64_t ctx, seq, last_seq = 0;
        json_object *r;
        const char *error;
        Msg m;
        size_t answered = 0;

        if (geteuid() != 0)
                SKIP("a tmpfs in a mount namespace needs root");
        if (unshare(CLONE_NEWNS) < 0)
                SKIP("unshare(CLONE_NEWNS): %s", strerror(errno));
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                SKIP("making / private: %s", strerror(errno));

        /* tsmd opens its audit directory at start: start once to get the directory, then
         * put a tiny tmpfs there (in this test's mount namespace, which tsmd inherits) and
         * start again on it. A filler file takes part of it, to be freed later. */
        start(&t, CONF_ZERO(), "info");
        tsmd_stop(&t);
        snprintf(audit, sizeof(audit), "%s/audit", t.dir);
        snprintf(filler, sizeof(filler), "%s/filler", audit);
        if (mount("tsmd-test-audit", audit, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=0750") < 0)
                TEST_FAIL("mounting a tmpfs on %s: %s", audit, strerror(errno));
        {
                char block[16384];
                memset(block, 'x', sizeof(block));
                _cleanup_close_ int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                ASSERT_OK(fd);
                ASSERT_EQ(write(fd, block, sizeof(block)), (ssize_t) sizeof(block));
        }
        /* The worker's, as tsmd.tmpfiles would leave it: tsmd takes no directory of somebody
         * else's that holds anything. */
        {
                struct passwd *worker = getpwnam(TSMD_WORKER_USER);

                ASSERT_NOT_NULL(worker);
                ASSERT_OK(chown(audit, worker->pw_uid, worker->pw_gid));
                ASSERT_OK(chown(filler, worker->pw_uid, worker->pw_gid));
        }
        tsmd_restart(&t, &(TsmdOptions) { .log_level = "info" });

        c = tsmd_connect(&t);
        ctx = guest_open_context(c);
        expect_call(&e, "open-context", "ok");
        CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 1, DEV1)); /* stays unbound */
        expect_call(&e, "attach", "ok");
        CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 2, DEV2));
        expect_call(&e, "attach", "ok");
        CALL_OK(c, G "Bind", guest_vdev_params(ctx, 2));
        expect_call(&e, "bind", "ok");

        /* Fill it: requests until they are refused for good. A refusal alone does not mean
         * full: once no block is free, a reserve whose preallocated tail is short is refused
         * (statvfs sees nothing free), and the sync thread, asked for room, then finds it in
         * the blocks the file already has, so the next call goes through: refused and accepted
         * alternate until that slack is used up. That errs on the safe side; so go on until
         * five refusals in a row, each after giving the thread time to settle. */
        m = tdisp_msg(TDISP_MSG_GET_VERSION, DEV2, NULL, 0);
        unsigned flaps = 0;
        for (unsigned refused = 0, attempts = 0; refused < 5;) {
                if (++attempts > 3000)
                        TEST_FAIL("3000 requests did not fill a 64 KiB file system");
                error = tsmd_call(c, G "GuestRequest", request_params(ctx, 2, "info", &m), &r);
                if (error) {
                        ASSERT_STREQ(error, E_GUEST("AuditFailed"));
                        ASSERT_TRUE(json_matches(r, "{\"errno\":28}")); /* ENOSPC */
                        refused++;
                        sleep_usec(20 * USEC_PER_MSEC);
                        continue;
                }
                flaps += refused > 0;
                refused = 0;
                seq = JINT(r, "auditSequence");
                ASSERT_TRUE(seq > last_seq);
                last_seq = seq;
                expect_call(&e, "guest-request", "ok");
                answered++;
        }
        printf("# %zu requests answered before the disk was full; %u times a refusal was followed by "
               "an accepted request\n", answered, flaps);
        ASSERT_TRUE(answered > 0);

        /* Full: every call is refused the same way, and none of them runs. */
        CALL_ERROR(c, G "Bind", guest_vdev_params(ctx, 1), E_GUEST("AuditFailed"), "{\"errno\":28}");
        CALL_ERROR(c, G "GetDeviceState", guest_vdev_params(ctx, 1), E_GUEST("AuditFailed"), "{\"errno\":28}");
        CALL_ERROR(c, G "GuestRequest", request_params(ctx, 2, "info", &m), E_GUEST("AuditFailed"), "{\"errno\":28}");
        CALL_ERROR(c, G "OpenContext", NULL, E_GUEST("AuditFailed"), "{\"errno\":28}");
        ASSERT_ERRNO(varlink_client_take_fd(c, 0), ENXIO); /* no iommufd came with the refusal */
        d = tsmd_connect(&t);
        CALL_ERROR(d, G "OpenContext", NULL, E_GUEST("AuditFailed"), "{\"errno\":28}");
        CALL_OK(d, "io.tsmd.Service.Ping", NULL); /* not a guest call: not audited, still served */

        /* Every call answered before has its record; the refused ones have none. */
        expect_log_is(&t, &e);

        /* Room again, and a reload (which reopens a failed log), on record in it. */
        write_file(filler, "");
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO()));
        expect_call(&e, "reload", "ok");

        /* The refused Bind did not happen. */
        r = CALL_OK(c, G "GetDeviceState", guest_vdev_params(ctx, 1));
        expect_call(&e, "get-state", "ok");
        ASSERT_STREQ(JSTR(r, "state"), "config_unlocked");
        ASSERT_FALSE(JBOOL(r, "bound"));
        guest_ok(c, ctx, 2, "info", &m, &seq);
        expect_call(&e, "guest-request", "ok");
        ASSERT_TRUE(seq > last_seq);
        /* A fresh client gets the device as it was: attachable, unlocked, bindable. */
        CALL_OK(c, G "DetachDevice", guest_vdev_params(ctx, 1));
        expect_call(&e, "detach", "ok");
        int64_t cd = guest_open_context(d);
        expect_call(&e, "open-context", "ok");
        CALL_OK(d, G "AttachDevice", guest_attach_params(cd, 1, DEV1));
        expect_call(&e, "attach", "ok");
        r = CALL_OK(d, G "GetDeviceState", guest_vdev_params(cd, 1));
        expect_call(&e, "get-state", "ok");
        ASSERT_STREQ(JSTR(r, "state"), "config_unlocked");
        ASSERT_FALSE(JBOOL(r, "bound"));
        r = CALL_OK(d, G "Bind", guest_vdev_params(cd, 1));
        expect_call(&e, "bind", "ok");
        ASSERT_STREQ(JSTR(r, "state"), "config_locked");

        expect_log_is(&t, &e);

        varlink_client_free(c);
        varlink_client_free(d);
        tsmd_stop(&t);
        (void) umount2(audit, MNT_DETACH);
        tsmd_teardown(&t);
}

/*
 * The other way a record can fail: the reservation succeeded (the space is preallocated), the
 * call ran, and then writing its record failed. Here the write fails with EFBIG: tsmd's
 * RLIMIT_FSIZE is lowered to the file's current size (a stand-in for an I/O error). As
 * io.tsmd.Guest.AuditFailed documents it: the answer is withheld, the record of what ran goes
 * to the journal (tsmd's log here) at critical priority, and the log refuses everything until
 * it is repaired and reloaded.
 */
TEST(record_failing_after_the_call_ran) {
        Tsmd t;
        VarlinkClient *c;
        json_object *r = NULL;
        const char *error;
        struct stat st;
        int64_t ctx;

        c = start_with_dev1(&t, &ctx);

        /* Every answered record is on disk: no write may grow the file any more (the worker
         * writes it). */
        ASSERT_OK(stat(strf("%s/audit/audit.log", t.dir), &st));
        ASSERT_TRUE(st.st_size > 0);
        tsmd_set_worker_fsize(&t, (rlim_t) st.st_size);

        error = tsmd_call(c, G "Bind", guest_vdev_params(ctx, 1), &r);
        ASSERT_STREQ(error, E_GUEST("AuditFailed"));
        ASSERT_TRUE(json_matches(r, "{\"errno\":27}")); /* EFBIG: not a refusal before the call */
        /* The log is failed now: every call is refused until it is reopened. */
        CALL_ERROR(c, G "GetDeviceState", guest_vdev_params(ctx, 1), E_GUEST("AuditFailed"), NULL);

        tsmd_set_worker_fsize(&t, RLIM_INFINITY);
        /* (The critical log line with the unrecorded record cannot be checked here: tsmd's own
         * log is a file under the same size limit in this test; under systemd it is a stream to
         * the journal.) */
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO()));

        /* The bind did happen, and the repaired log serves (and records) calls again. */
        r = CALL_OK(c, G "GetDeviceState", guest_vdev_params(ctx, 1));
        ASSERT_TRUE(JBOOL(r, "bound"));

        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* As above, and the AuditFailed answer cannot be built either (json-int-fail-preload.c makes the
 * second 27, EFBIG, tsmd adds to an object fail: a first goes by in a call of no method): the
 * connection goes, where its client waited for an answer that never came. */
TEST(record_failing_after_the_call_ran_and_its_answer_out_of_memory) {
        const char *env[] = {
                "LD_PRELOAD=" JSON_INT_FAIL_PRELOAD,
                "TSMD_TEST_FAIL_INT64=27",
                tsmd_preload_asan_env(),
                NULL,
        };
        const TsmdFile file = { "policy.conf", "[Client:tests]\nUsers=root\nDevices=*\nScopes=info state-change\n" };
        json_object *reply = NULL;
        const char *error = NULL;
        VarlinkClient *c;
        struct stat st;
        int64_t ctx;
        Tsmd t;

        if (tsmd_under_valgrind())
                SKIP("valgrind and a preloaded library");
        if (getuid() != 0)
                SKIP("the policy names root");
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO(), .files = &file, .n_files = 1, .env = env });
        c = tsmd_connect(&t);
        ctx = guest_open_context(c);
        CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
        CALL_ERROR(c, G "NoSuchMethod", "{\"n\":27}", VARLINK_ERROR_METHOD_NOT_FOUND, NULL);

        ASSERT_OK(stat(strf("%s/audit/audit.log", t.dir), &st));
        tsmd_set_worker_fsize(&t, (rlim_t) st.st_size);
        ASSERT_ERRNO(varlink_client_call(c, G "Bind", json_tokener_parse(guest_vdev_params(ctx, 1)), &reply, &error),
                     ECONNRESET);
        tsmd_set_worker_fsize(&t, RLIM_INFINITY);

        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* ---- a reload that moves the log ------------------------------------------------------------ */

/* Mounts a tmpfs of size (kB) over tsmd's audit directory, the worker's as tsmd.tmpfiles leaves
 * it; full: a filler then takes every block. Returns the filler's path (static). */
static const char *mount_audit_fs(Tsmd *t, unsigned size_kib, bool full) {
        static char filler[320];
        struct passwd *worker = getpwnam(TSMD_WORKER_USER);
        const char *audit = strf("%s/audit", t->dir);

        ASSERT_NOT_NULL(worker);
        if (mount("tsmd-test-audit", audit, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  strf("size=%uk,mode=0750", size_kib)) < 0)
                TEST_FAIL("mounting a tmpfs on %s: %s", audit, strerror(errno));
        ASSERT_OK(chown(audit, worker->pw_uid, worker->pw_gid));
        snprintf(filler, sizeof(filler), "%s/filler", audit);
        if (full) {
                _cleanup_close_ int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                char block[4096];

                ASSERT_OK(fd);
                memset(block, 'x', sizeof(block));
                while (write(fd, block, sizeof(block)) > 0)
                        ;
                ASSERT_EQ(errno, ENOSPC);
                ASSERT_OK(fchown(fd, worker->pw_uid, worker->pw_gid));
        }
        return filler;
}

/* Waits (bounded) until pid's /proc status line key says what has(value) is true of. */
static void wait_proc_status(pid_t pid, const char *key, bool (*has)(const char *value, int arg), int arg) {
        uint64_t deadline = now_usec() + TSMD_WAIT_USEC;

        for (;;) {
                _cleanup_free_ char *status = read_file(strf("/proc/%d/status", (int) pid));
                const char *p = status ? strstr(status, strf("\n%s:", key)) : NULL;

                if (p && has(p + strlen(key) + 2, arg))
                        return;
                if (now_usec() > deadline)
                        TEST_FAIL("process %d: %s never became what the test waits for", (int) pid, key);
                sleep_usec(2 * USEC_PER_MSEC);
        }
}

static bool is_stopped(const char *state, int arg) {
        return state[strspn(state, " \t")] == 'T';
}

static bool has_pending(const char *mask, int sig) {
        return strtoull(mask, NULL, 16) & (1ULL << (sig - 1));
}

/* Holds tsmd's worker (SIGSTOP) until worker_release(): what is sent meanwhile, it takes in
 * one round of its loop. Returns its pid. */
static pid_t worker_hold(Tsmd *t) {
        pid_t worker = tsmd_worker_pid(t);

        ASSERT_TRUE(worker > 0);
        ASSERT_OK(kill(worker, SIGSTOP));
        wait_proc_status(worker, "State", is_stopped, 0);
        return worker;
}

static void worker_release(pid_t worker) {
        ASSERT_OK(kill(worker, SIGCONT));
}

/* Sends io.tsmd.Service.Reload and method right behind it on c's connection, in one write, so
 * that method is dispatched while the reopen the reload starts is pending, and then (unless
 * NULL) then_method, which must succeed; returns the error name of method's answer (NULL: a
 * reply), its parameters in *ret and then_method's in *ret_then (new references). */
static const char *reload_then_calls(VarlinkClient *c, const char *method, const char *params,
                                     const char *then_method, const char *then_params, json_object **ret,
                                     json_object **ret_then) {
        static char error[128];
        _cleanup_free_ char *out = NULL;
        char in[3][4096];
        int fd = varlink_client_get_fd(c), n;
        unsigned n_in = then_method ? 3 : 2;
        json_object *reply, *e, *p;

        ASSERT_OK(fd);
        if (then_method)
                n = asprintf(&out, "{\"method\":\"io.tsmd.Service.Reload\"}%c{\"method\":\"%s\",\"parameters\":%s}%c"
                             "{\"method\":\"%s\",\"parameters\":%s}%c", 0, method, params, 0, then_method,
                             then_params, 0);
        else
                n = asprintf(&out, "{\"method\":\"io.tsmd.Service.Reload\"}%c{\"method\":\"%s\",\"parameters\":%s}%c",
                             0, method, params, 0);
        ASSERT_TRUE(n > 0);
        ASSERT_EQ(send(fd, out, (size_t) n, MSG_NOSIGNAL), (ssize_t) n);
        /* Byte by byte: nothing past the answers may be taken from c. */
        for (unsigned i = 0; i < n_in; i++)
                for (size_t k = 0;; k++) {
                        struct pollfd pfd = { .fd = fd, .events = POLLIN };

                        ASSERT_TRUE(k < sizeof(in[i]));
                        ASSERT_EQ(poll(&pfd, 1, 30000), 1);
                        ASSERT_EQ(read(fd, &in[i][k], 1), 1);
                        if (in[i][k] == 0)
                                break;
                }
        reply = json_tokener_parse(in[0]);
        ASSERT_NOT_NULL(reply);
        if (json_object_object_get_ex(reply, "error", &e))
                TEST_FAIL("Reload answered %s", in[0]);
        json_object_put(reply);

        if (then_method) {
                reply = json_tokener_parse(in[2]);
                ASSERT_NOT_NULL(reply);
                if (json_object_object_get_ex(reply, "error", &e))
                        TEST_FAIL("%s answered %s", then_method, in[2]);
                ASSERT_TRUE(json_object_object_get_ex(reply, "parameters", &p));
                *ret_then = json_object_get(p);
                json_object_put(reply);
        }

        reply = json_tokener_parse(in[1]);
        ASSERT_NOT_NULL(reply);
        *ret = json_object_object_get_ex(reply, "parameters", &p) ? json_object_get(p) : NULL;
        if (!json_object_object_get_ex(reply, "error", &e)) {
                json_object_put(reply);
                return NULL;
        }
        snprintf(error, sizeof(error), "%s", json_object_get_string(e));
        json_object_put(reply);
        return error;
}

static const char *reload_then_call(VarlinkClient *c, const char *method, const char *params, json_object **ret) {
        return reload_then_calls(c, method, params, NULL, NULL, ret, NULL);
}

/* An admin record of this process's call, ended with result. */
static void expect_caller(json_object *rec, const char *result, size_t line) {
        expect_str(rec, "result", result, line);
        expect_int(rec, "uid", getuid(), line);
        expect_int(rec, "gid", getgid(), line);
        expect_int(rec, "pid", getpid(), line);
}

/* An administrator mounts another file system over the audit directory and reloads, while a VMM
 * calls. A call that acts and arrives while the reopen is pending waits for it and runs only
 * once its record has room in the new files: into a file system with room, a Bind right behind
 * the Reload is made and recorded there; into a full one, an Unbind so sent is refused
 * AuditFailed (ENOSPC) and not made (before, it was made, then its record failed), and so is an
 * administrator's DisconnectDevice. */
TEST(calls_that_act_wait_for_a_reload_that_moves_the_log) {
        json_object *r = NULL;
        const char *error, *filler;
        VarlinkClient *c;
        AuditLines l;
        int64_t ctx;
        size_t i;
        Tsmd t;

        tsmd_private_mount_namespace("mounting file systems over tsmd's audit directory");
        c = start_with_dev1(&t, &ctx);

        /* Room: the Bind waits for the reopen, no longer, and its record is in the new files. */
        mount_audit_fs(&t, 1024, false);
        error = reload_then_call(c, G "Bind", guest_vdev_params(ctx, 1), &r);
        ASSERT_NULL(error);
        ASSERT_STREQ(JSTR(r, "state"), "config_locked");
        json_object_put(r);
        audit_wait(&t, 2, &l); /* the Reload's and the Bind's, in either order */
        ASSERT_EQ(l.n, 2u);
        i = streq(json_object_get_string(json_object_object_get(l.rec[0], "event")), "bind") ? 0 : 1;
        expect_str(l.rec[i], "event", "bind", i + 1);
        expect_str(l.rec[i], "result", "ok", i + 1);
        expect_str(l.rec[1 - i], "event", "io.tsmd.Service.Reload", 2 - i);
        audit_lines_done(&l);

        /* No room: the Unbind is refused before it is made. */
        filler = mount_audit_fs(&t, 64, true);
        error = reload_then_call(c, G "Unbind", guest_vdev_params(ctx, 1), &r);
        ASSERT_STREQ(error, E_GUEST("AuditFailed"));
        ASSERT_TRUE(json_matches(r, "{\"errno\":28}")); /* ENOSPC */
        json_object_put(r);
        /* An administrator's device change the same. */
        error = reload_then_call(c, "io.tsmd.Admin.DisconnectDevice", "{\"pciAddress\":\"" DEV2 "\"}", &r);
        ASSERT_STREQ(error, "io.tsmd.Admin.AuditFailed");
        ASSERT_TRUE(json_matches(r, "{\"errno\":28}"));
        json_object_put(r);

        /* Room again: the device is still bound. */
        ASSERT_OK(truncate(filler, 0));
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO()));
        r = CALL_OK(c, G "GetDeviceState", guest_vdev_params(ctx, 1));
        ASSERT_TRUE(JBOOL(r, "bound"));
        ASSERT_STREQ(JSTR(r, "state"), "config_locked");

        /* What a VMM pipelines behind a call that waits for the reopen runs after it, as sent:
         * the GetDeviceState of the vDevice it attaches finds it (before, it ran first, and
         * failed NoSuchVDevice). */
        {
                json_object *state = NULL;

                error = reload_then_calls(c, G "AttachDevice", guest_attach_params(ctx, 2, DEV2), G "GetDeviceState",
                                          guest_vdev_params(ctx, 2), &r, &state);
                ASSERT_NULL(error);
                json_object_put(r);
                ASSERT_FALSE(JBOOL(state, "bound"));
                json_object_put(state);
                CALL_OK(c, G "DetachDevice", guest_vdev_params(ctx, 2));
        }

        /* An administrator that leaves while its device change waits: the change is not made,
         * and it is recorded as the caller leaving, as who it was (before: as a refusal,
         * PermissionDenied, of no gid nor pid, in the refusal budget); so is its Reload, which
         * was made. The worker is held while both calls and the hang-up reach it. */
        {
                static const char calls[] = "{\"method\":\"io.tsmd.Service.Reload\"}\0"
                                            "{\"method\":\"io.tsmd.Admin.DisconnectDevice\",\"parameters\":"
                                            "{\"pciAddress\":\"" DEV2 "\"}}";
                _cleanup_free_ char *before = strdup(rec_text(CALL_OK(c, "io.tsmd.Admin.ListDevices", NULL)));
                VarlinkClient *d = tsmd_connect(&t);
                int64_t from = tsmd_audit_last_seq(&t);
                unsigned reloads = tsmd_log_count(&t, "Configuration reloaded");
                size_t at;
                pid_t worker;

                worker = worker_hold(&t);
                ASSERT_EQ(send(varlink_client_get_fd(d), calls, sizeof(calls), MSG_NOSIGNAL), (ssize_t) sizeof(calls));
                varlink_client_free(d);
                worker_release(worker);

                ASSERT_TRUE(tsmd_wait_log(&t, "Configuration reloaded", reloads + 1, TSMD_WAIT_USEC));
                for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC;;) {
                        audit_read(&t, &l);
                        at = line_after_seq(&l, from, "io.tsmd.Admin.DisconnectDevice");
                        if (at > 0 && line_after_seq(&l, from, "io.tsmd.Service.Reload") > 0)
                                break;
                        if (now_usec() > deadline)
                                TEST_FAIL("no record of the DisconnectDevice and Reload of a caller that left");
                        audit_lines_done(&l);
                        sleep_usec(5 * USEC_PER_MSEC);
                }
                expect_caller(l.rec[at - 1], VARLINK_ERROR_DISCONNECTED, at);
                at = line_after_seq(&l, from, "io.tsmd.Service.Reload");
                expect_caller(l.rec[at - 1], "ok", at);
                audit_lines_done(&l);
                ASSERT_STREQ(rec_text(CALL_OK(c, "io.tsmd.Admin.ListDevices", NULL)), before);
        }

        varlink_client_free(c);
        tsmd_stop(&t);
        /* Both file systems, the full one mounted over the other. */
        (void) umount2(strf("%s/audit", t.dir), MNT_DETACH);
        (void) umount2(strf("%s/audit", t.dir), MNT_DETACH);
        tsmd_teardown(&t);
}

/* A call that waited for a reload's reopen leaves its connection as it found it: the copy of the
 * socket that watched for a hang-up while reading was paused goes once reading resumes. Before,
 * it stayed for the connection's life, one fd more for every VMM whose call once waited (the
 * hostile suites' fd counts saw it as a leak when their good client's call met a reload). */
TEST(a_call_that_waited_for_a_reload_leaves_no_fd_behind) {
        json_object *r = NULL;
        VarlinkClient *c;
        unsigned fds0, fds;
        int64_t ctx;
        Tsmd t;

        c = start_with_dev1(&t, &ctx);
        fds0 = tsmd_settled_fds(&t, 1);
        ASSERT_NULL(reload_then_call(c, G "Bind", guest_vdev_params(ctx, 1), &r));
        ASSERT_STREQ(JSTR(r, "state"), "config_locked");
        json_object_put(r);
        fds = tsmd_wait_fds(&t, fds0, TSMD_WAIT_USEC);
        if (fds != fds0) {
                tsmd_print_fds(&t);
                TEST_FAIL("tsmd holds %u fds after a call that waited for a reload, %u before", fds, fds0);
        }
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* ---- what tsmd does on its own while the log cannot take records --------------------------- */

/* A record owed while the log could not take it, written later: it says when it was owed
 * ("owedSince"), no later than when it was written ("time", which follows the sequence). */
static void expect_owed(json_object *rec, size_t line) {
        json_object *since, *time;

        if (!json_object_object_get_ex(rec, "owedSince", &since) || !json_object_is_type(since, json_type_string) ||
            !json_object_object_get_ex(rec, "time", &time))
                TEST_FAIL("audit record %zu lacks its owedSince: %s", line, rec_text(rec));
        if (strcmp(json_object_get_string(since), json_object_get_string(time)) > 0)
                TEST_FAIL("audit record %zu was owed after it was written: %s", line, rec_text(rec));
}

/* Waits (bounded) for a record of event after seq `after` in audit.log; returns its line. */
static size_t audit_wait_event(Tsmd *t, int64_t after, const char *event, AuditLines *ret) {
        uint64_t deadline = now_usec() + TSMD_WAIT_USEC;

        for (;;) {
                size_t at;

                audit_read(t, ret);
                at = line_after_seq(ret, after, event);
                if (at > 0)
                        return at;
                if (now_usec() > deadline)
                        TEST_FAIL("no %s record in audit.log after seq %" PRIi64 " within %llu ms", event, after,
                                  (unsigned long long) (TSMD_WAIT_USEC / USEC_PER_MSEC));
                audit_lines_done(ret);
                sleep_usec(5 * USEC_PER_MSEC);
        }
}

/* Moves the log, by a reload, to a full file system over the audit directory: returns the file
 * that fills it. */
static const char *reload_onto_full_audit_fs(Tsmd *t) {
        const char *filler = mount_audit_fs(t, 64, true);

        ASSERT_TRUE(tsmd_reload(t, CONF_ZERO()));
        return filler;
}

/* Room again: the record of event, owed, is written without any call; its line, of those in *ret. */
static size_t owed_record_once_there_is_room(Tsmd *t, const char *filler, const char *event, AuditLines *ret) {
        size_t at;

        ASSERT_OK(truncate(filler, 0));
        at = audit_wait_event(t, 0, event, ret);
        expect_owed(ret->rec[at - 1], at);
        return at;
}

/* Hangs c up, stops tsmd and takes the full file system off its audit directory. */
static void stop_and_unmount_full_audit_fs(Tsmd *t, VarlinkClient *c) {
        varlink_client_free(c);
        tsmd_stop(t);
        (void) umount2(strf("%s/audit", t->dir), MNT_DETACH);
        tsmd_teardown(t);
}

/* The audit state as GetStatus says it. */
static json_object *status_audit(json_object *status) {
        json_object *a = NULL;

        ASSERT_TRUE(json_object_object_get_ex(status, "audit", &a));
        ASSERT_NOT_NULL(a);
        return a;
}

/* Waits (bounded) for a subscriber's next status that says the audit log is in state. */
static json_object *wait_status_audit(VarlinkClient *s, AsyncCall *st, const char *state) {
        for (size_t n = st->n + 1; n <= ASYNC_MAX_REPLIES; n++) {
                json_object *a;

                if (!tsmd_async_wait(s, st, n, 3 * TSMD_WAIT_USEC))
                        TEST_FAIL("no status with the audit log %s came", state);
                ASSERT_NULL(st->errors[n - 1]);
                a = status_audit(st->params[n - 1]);
                if (streq(JSTR(a, "state"), state))
                        return a;
        }
        TEST_FAIL("no status with the audit log %s came in %u", state, ASYNC_MAX_REPLIES);
}

/* An administrator sees whether the audit log takes records: GetStatus's audit state (its
 * subscribers told of each change), GetCounters' gauge, and the number of calls refused for it,
 * which no record has. Before, only tsmd's own log said so, rate limited. And a log moved by a
 * reload to another file system is no loss of records: a notice, not an error. */
TEST(status_and_counters_say_whether_the_log_takes_records) {
        VarlinkClient *c, *s;
        AsyncCall st = {};
        const char *filler;
        json_object *r, *a;
        uint64_t full_since;
        int64_t ctx;
        Tsmd t;

        tsmd_private_mount_namespace("mounting a full file system over tsmd's audit directory");
        c = start_with_dev1(&t, &ctx);
        s = tsmd_connect(&t);
        tsmd_call_async(s, "io.tsmd.Service.GetStatus", NULL, VARLINK_CALL_MORE, &st);
        ASSERT_TRUE(tsmd_async_wait(s, &st, 1, TSMD_WAIT_USEC));
        a = status_audit(st.params[0]);
        ASSERT_TRUE(json_matches(a, "{\"state\":\"ok\",\"errno\":null}"));
        ASSERT_TRUE(JINT(a, "sinceUsec") > 0);
        r = CALL_OK(c, "io.tsmd.Admin.GetCounters", NULL);
        ASSERT_TRUE(json_matches(r, "{\"auditWritable\":true,\"auditRefusedCalls\":0,\"auditJournalDropped\":0}"));

        /* The repair the docs describe, onto a file system that is full: records up to seq 2 were
         * acknowledged, the new one has none, and that is no loss. */
        filler = reload_onto_full_audit_fs(&t);
        ASSERT_TRUE(tsmd_log_contains(&t, "is another directory now"));
        ASSERT_TRUE(tsmd_log_contains(&t, "are in the one it replaced. Continuing at seq "));
        ASSERT_FALSE(tsmd_log_contains(&t, "records were lost outside tsmd"));

        CALL_ERROR(c, G "GetDeviceState", guest_vdev_params(ctx, 1), E_GUEST("AuditFailed"), "{\"errno\":28}");
        CALL_ERROR(c, G "OpenContext", NULL, E_GUEST("AuditFailed"), "{\"errno\":28}");
        a = wait_status_audit(s, &st, "full");
        ASSERT_TRUE(json_matches(a, "{\"errno\":28}"));
        full_since = (uint64_t) JINT(a, "sinceUsec");
        r = CALL_OK(c, "io.tsmd.Service.GetStatus", NULL);
        ASSERT_TRUE(json_matches(status_audit(r), "{\"state\":\"full\",\"errno\":28}"));
        r = CALL_OK(c, "io.tsmd.Admin.GetCounters", NULL);
        ASSERT_TRUE(json_matches(r, "{\"auditWritable\":false,\"auditRefusedCalls\":2}"));

        /* Room again: it says so by itself, no call or reload needed; the count stays. */
        ASSERT_OK(truncate(filler, 0));
        a = wait_status_audit(s, &st, "ok");
        ASSERT_TRUE(json_matches(a, "{\"errno\":null}"));
        ASSERT_TRUE((uint64_t) JINT(a, "sinceUsec") >= full_since);
        r = CALL_OK(c, "io.tsmd.Admin.GetCounters", NULL);
        ASSERT_TRUE(json_matches(r, "{\"auditWritable\":true,\"auditRefusedCalls\":2}"));
        CALL_OK(c, G "GetDeviceState", guest_vdev_params(ctx, 1));

        async_call_done(&st);
        varlink_client_free(s);
        stop_and_unmount_full_audit_fs(&t, c);
}

/* A VMM hangs up while the audit file system is full: its device is unbound all the same (it is
 * released), and the record of that, which the log cannot take, is kept and written once there is
 * room again, with no call or reload needed, saying when it happened (before, it was dropped, and
 * the log showed the device bound to a VM that had it no more). Calls are refused meanwhile. */
TEST(release_while_the_log_is_full_is_recorded_once_there_is_room) {
        const char *filler;
        VarlinkClient *c, *d;
        json_object *r;
        AuditLines l;
        int64_t ctx, cd;
        size_t at;
        Tsmd t;

        tsmd_private_mount_namespace("mounting a full file system over tsmd's audit directory");
        c = start_with_dev1(&t, &ctx);
        CALL_OK(c, G "Bind", guest_vdev_params(ctx, 1));

        /* The log moves to a full file system: calls are refused. */
        filler = reload_onto_full_audit_fs(&t);
        CALL_ERROR(c, G "GetDeviceState", guest_vdev_params(ctx, 1), E_GUEST("AuditFailed"), "{\"errno\":28}");

        /* The VMM goes: its device is released, its record kept. */
        varlink_client_free(c);
        ASSERT_TRUE(tsmd_wait_log(&t, "cannot take the record of release now", 1, TSMD_WAIT_USEC));
        ASSERT_FALSE(tsmd_log_contains(&t, "Audit record of a release failed"));

        /* Room again: it is written without any call. */
        at = owed_record_once_there_is_room(&t, filler, "release", &l);
        const Want rel = { .seq = ANY_I, .event = "release", .result = "ok", .uid = getuid(), .gid = ANY_I,
                           .pid = ANY_I, .ctx = ctx, .vdev = 1, .pci = DEV1, .backend = ANY_S,
                           .scope = NULL, .scope_number = NUL_I, .request_size = NUL_I,
                           .response_size = NUL_I };
        expect_record(l.rec[at - 1], &rel, at);
        audit_lines_done(&l);

        /* And it is true: the device is unbound, a new VMM binds it. */
        d = tsmd_connect(&t);
        cd = guest_open_context(d);
        CALL_OK(d, G "AttachDevice", guest_attach_params(cd, 1, DEV1));
        r = CALL_OK(d, G "GetDeviceState", guest_vdev_params(cd, 1));
        ASSERT_FALSE(JBOOL(r, "bound"));
        CALL_OK(d, G "Bind", guest_vdev_params(cd, 1));

        stop_and_unmount_full_audit_fs(&t, d);
}

/* A VMM that leaves without CloseContext, holding a vDevice it never bound: its context's end is
 * recorded (event release-context, as the owner), so each open-context has its end in the trail
 * (before, only a bound vDevice's unbind was: the context and its attach had none). */
TEST(hangup_without_close_records_the_contexts_release) {
        Tsmd t;
        VarlinkClient *c;
        AuditLines l;
        int64_t ctx;
        size_t at;

        c = start_with_dev1(&t, &ctx);
        varlink_client_free(c);

        at = audit_wait_event(&t, 0, "release-context", &l);
        expect_str(l.rec[at - 1], "result", "ok", at);
        expect_int(l.rec[at - 1], "uid", getuid(), at);
        expect_int(l.rec[at - 1], "contextId", ctx, at);
        ASSERT_EQ(line_of(&l, 0, "release"), 0u); /* nothing was bound: nothing to unbind */
        audit_lines_done(&l);
        tsmd_teardown(&t);
}

/* A reload by SIGHUP, which has no caller to answer (only a sender to name), moves the log to a
 * full file system (or comes while it is full): it is made, and its record, which the log cannot
 * take, is kept and written once there is room again, before the records of the calls after it
 * (before, it was dropped: a policy change with no trace). */
TEST(reload_by_signal_while_the_log_is_full_is_recorded_once_there_is_room) {
        const char *filler;
        VarlinkClient *c;
        AuditLines l;
        size_t at, open_at;
        Tsmd t;

        tsmd_private_mount_namespace("mounting a full file system over tsmd's audit directory");
        start(&t, CONF_ZERO(), "info");
        filler = reload_onto_full_audit_fs(&t);
        ASSERT_TRUE(tsmd_wait_log(&t, "cannot take the record of reload now", 1, TSMD_WAIT_USEC));
        ASSERT_FALSE(tsmd_log_contains(&t, "Audit record of a reload by signal failed"));
        c = tsmd_connect(&t);
        CALL_ERROR(c, G "OpenContext", NULL, E_GUEST("AuditFailed"), "{\"errno\":28}");

        at = owed_record_once_there_is_room(&t, filler, "reload", &l);
        expect_str(l.rec[at - 1], "result", "ok", at);
        /* Its sender's, as the kernel named it: ours (tsmd_kill()). */
        expect_int(l.rec[at - 1], "uid", getuid(), at);
        expect_int(l.rec[at - 1], "pid", getpid(), at);
        expect_str(l.rec[at - 1], "signalled", "tsmd", at);
        audit_lines_done(&l);

        /* Calls are taken again, after it. */
        (void) guest_open_context(c);
        open_at = audit_wait_event(&t, 0, "open-context", &l);
        ASSERT_TRUE(open_at > line_of(&l, 0, "reload"));
        audit_lines_done(&l);

        stop_and_unmount_full_audit_fs(&t, c);
}

/* An administrator's call while the audit file system is full: answered at once (the admin is who
 * repairs the log), and its record, which the log cannot take, kept and written once there is
 * room again (before, it was dropped: README's "every admin call is audited" did not hold). */
TEST(admin_call_while_the_log_is_full_is_answered_and_recorded_once_there_is_room) {
        const char *filler;
        VarlinkClient *c;
        AuditLines l;
        size_t at;
        Tsmd t;

        tsmd_private_mount_namespace("mounting a full file system over tsmd's audit directory");
        start(&t, CONF_ZERO(), "info");
        filler = reload_onto_full_audit_fs(&t);
        c = tsmd_connect(&t);
        CALL_OK(c, "io.tsmd.Admin.ListDevices", NULL);
        ASSERT_TRUE(tsmd_wait_log(&t, "cannot take the record of io.tsmd.Admin.ListDevices now", 1, TSMD_WAIT_USEC));
        ASSERT_FALSE(tsmd_log_contains(&t, "Audit record of io.tsmd.Admin.ListDevices failed"));

        at = owed_record_once_there_is_room(&t, filler, "io.tsmd.Admin.ListDevices", &l);
        expect_str(l.rec[at - 1], "result", "ok", at);
        expect_int(l.rec[at - 1], "uid", getuid(), at);
        audit_lines_done(&l);

        stop_and_unmount_full_audit_fs(&t, c);
}

/* At most 64 administrators' records are kept at a time: an admin's polling while the disk is
 * full must not take the room the records of what tsmd did on its own need (rv-today). Past
 * that, a call is answered all the same and its record lost, logged. */
TEST(admin_records_kept_are_bounded) {
        const char *filler;
        VarlinkClient *c;
        AuditLines l;
        size_t n = 0;
        Tsmd t;

        tsmd_private_mount_namespace("mounting a full file system over tsmd's audit directory");
        start(&t, CONF_ZERO(), "info");
        filler = reload_onto_full_audit_fs(&t);
        c = tsmd_connect(&t);
        for (unsigned i = 0; i < 80; i++)
                CALL_OK(c, "io.tsmd.Admin.ListDevices", NULL);
        ASSERT_TRUE(tsmd_wait_log(&t, "Audit record of io.tsmd.Admin.ListDevices failed", 1, TSMD_WAIT_USEC));

        (void) owed_record_once_there_is_room(&t, filler, "io.tsmd.Admin.ListDevices", &l);
        audit_lines_done(&l);
        /* Written once there is room, in one go; the reload's own record may hold one of the 64. */
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC; n < 63 && now_usec() < deadline;) {
                sleep_usec(20 * USEC_PER_MSEC);
                audit_read(&t, &l);
                n = 0;
                for (size_t i = 0; i < l.n; i++)
                        if (streq(JSTR(l.rec[i], "event"), "io.tsmd.Admin.ListDevices"))
                                n++;
                audit_lines_done(&l);
        }
        if (n < 63 || n > 64)
                TEST_FAIL("%zu ListDevices records kept, not 63 or 64 of the 80", n);
        stop_and_unmount_full_audit_fs(&t, c);
}

/* An administrator's call that comes while a reload moves the log to a full file system: its
 * record is held for the reopen, which then cannot take it, and kept; the answer goes at once all
 * the same (rv-today: it waited, held, until the log took records again). */
TEST(admin_call_during_a_reopen_onto_a_full_disk_is_answered) {
        VarlinkClient *a, *b;
        AsyncCall reload = {}, list = {};
        Tsmd t;

        tsmd_private_mount_namespace("mounting a full file system over tsmd's audit directory");
        start(&t, CONF_ZERO(), "info");
        a = tsmd_connect(&t);
        b = tsmd_connect(&t);
        (void) mount_audit_fs(&t, 64, true);
        for (unsigned i = 0; i < 8; i++) {
                tsmd_call_async(a, "io.tsmd.Service.Reload", NULL, 0, &reload);
                tsmd_call_async(b, "io.tsmd.Admin.ListDevices", NULL, 0, &list);
                if (!tsmd_async_wait(b, &list, 1, 3 * USEC_PER_SEC))
                        TEST_FAIL("round %u: ListDevices not answered within 3 s of a reload onto a full disk", i);
                if (list.errors[0])
                        TEST_FAIL("round %u: ListDevices failed: %s", i, list.errors[0]);
                ASSERT_TRUE(tsmd_async_wait(a, &reload, 1, TSMD_WAIT_USEC));
                async_call_done(&reload);
                async_call_done(&list);
                reload = list = (AsyncCall) {};
        }
        stop_and_unmount_full_audit_fs(&t, a);
        varlink_client_free(b);
}

/* A worker killed while the audit file system is full: the next one records how it ended, once
 * there is room again (before, it dropped that record at its start, for good). */
TEST(worker_killed_while_the_log_is_full_is_recorded_once_there_is_room) {
        const char *filler;
        VarlinkClient *c;
        AuditLines l;
        size_t at;
        Tsmd t;

        tsmd_private_mount_namespace("mounting a full file system over tsmd's audit directory");
        start(&t, CONF_ZERO(), "info");
        filler = reload_onto_full_audit_fs(&t);
        tsmd_kill_worker(&t);
        ASSERT_TRUE(tsmd_wait_log(&t, "cannot take the record of worker-restart now", 1, TSMD_WAIT_USEC));
        ASSERT_FALSE(tsmd_log_contains(&t, "Audit record of the previous worker's end failed"));
        c = tsmd_connect(&t);
        CALL_ERROR(c, G "OpenContext", NULL, E_GUEST("AuditFailed"), "{\"errno\":28}");

        at = owed_record_once_there_is_room(&t, filler, "worker-restart", &l);
        expect_str(l.rec[at - 1], "result", "io.tsmd.WorkerCrashed", at);
        audit_lines_done(&l);

        stop_and_unmount_full_audit_fs(&t, c);
}

/* systemctl reload tsmd; systemctl stop tsmd, in quick succession (or with a slow disk): the
 * worker stops while the reopen of the audit log the reload started is pending. The worker is
 * held while a Reload and the SIGTERM reach it, so that it takes both in one round. It
 * exits cleanly (before, the Reload's answer came from inside the log's free, went through
 * freed interfaces and refusal budget, and killed it), and every record stays: the guest calls
 * answered before, and the Reload's, written after the reopen. */
TEST(a_stop_right_after_a_reload_loses_no_record) {
        static const char reload[] = "{\"method\":\"io.tsmd.Service.Reload\"}";
        Tsmd t;

        start(&t, CONF_ZERO(), "info");
        for (unsigned i = 0; i < 6; i++) {
                VarlinkClient *c = tsmd_connect(&t);
                pid_t worker;
                Msg m = tdisp_msg(TDISP_MSG_GET_VERSION, DEV1, NULL, 0);
                int64_t ctx, seq;
                AuditLines l;
                size_t at;

                ctx = guest_open_context(c);
                CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
                CALL_OK(c, G "Bind", guest_vdev_params(ctx, 1));
                (void) guest_ok(c, ctx, 1, "info", &m, &seq);

                worker = worker_hold(&t);
                ASSERT_EQ(send(varlink_client_get_fd(c), reload, sizeof(reload), MSG_NOSIGNAL), (ssize_t) sizeof(reload));
                /* The monitor passes it on. */
                tsmd_kill(&t, SIGTERM);
                wait_proc_status(worker, "ShdPnd", has_pending, SIGTERM);
                worker_release(worker);
                tsmd_expect_clean_exit(&t);
                varlink_client_free(c);

                audit_read(&t, &l);
                ASSERT_FALSE(l.torn);
                expect_contiguous(&l);
                ASSERT_TRUE((size_t) seq <= l.n);
                expect_str(l.rec[seq - 1], "event", "guest-request", (size_t) seq);
                expect_str(l.rec[seq - 1], "result", "ok", (size_t) seq);
                at = line_of(&l, (size_t) seq, "io.tsmd.Service.Reload");
                if (at == 0)
                        TEST_FAIL("stop %u: the Reload sent before it has no record (log ends at seq %zu)", i, l.n);
                expect_int(l.rec[at - 1], "pid", getpid(), at);
                audit_lines_done(&l);
                tsmd_restart(&t, &(TsmdOptions) { .log_level = "info" });
        }
        tsmd_teardown(&t);
}

/* ---- admission: what a caller the policy does not name can make tsmd write ------------------ */

/* Neither root nor 65534: the policy names no rule for it. */
#define UNNAMED (NOBODY - 1)
#define FLOOD_DEPTH 32
#define FLOOD_MAX_CONNS 8
#define LONG_METHOD                                                                                \
        G "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX" \
          "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX" \
          "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"

/* Calls on n connections of uid, pipelined FLOOD_DEPTH at a time, each answer read, from a
 * child process per connection (so that the test goes on meanwhile). */
typedef struct Flood {
        int report[2]; /* each child writes how many calls it made */
        VarlinkClient *conns[FLOOD_MAX_CONNS];
        pid_t pids[FLOOD_MAX_CONNS]; /* 0 once reaped, its status in status[] */
        int status[FLOOD_MAX_CONNS];
        unsigned n;
        atomic_bool *stop; /* shared with the children: flood_stop() ends them early */
} Flood;

static void flood_one(int fd, int report, const char *message, unsigned n_calls, uint64_t until,
                      const atomic_bool *stop) {
        size_t len = strlen(message) + 1, size = len * FLOOD_DEPTH;
        char *batch = malloc(size), buf[65536];
        uint64_t sent = 0;

        if (!batch || fcntl(fd, F_SETFL, 0) < 0)
                _exit(2);
        for (unsigned i = 0; i < FLOOD_DEPTH; i++)
                memcpy(batch + i * len, message, len);
        for (; sent < n_calls && (until == 0 || now_usec() < until) && !atomic_load(stop); sent += FLOOD_DEPTH) {
                unsigned replies = 0;

                for (size_t off = 0; off < size;) {
                        ssize_t k = send(fd, batch + off, size - off, MSG_NOSIGNAL);
                        if (k <= 0)
                                _exit(3);
                        off += (size_t) k;
                }
                while (replies < FLOOD_DEPTH) {
                        ssize_t k = recv(fd, buf, sizeof(buf), 0);
                        if (k <= 0)
                                _exit(4);
                        for (ssize_t i = 0; i < k; i++)
                                replies += buf[i] == 0;
                }
        }
        if (write(report, &sent, sizeof(sent)) != sizeof(sent))
                _exit(5);
        _exit(0);
}

/* n connections of uid, each sending n_calls (a multiple of FLOOD_DEPTH) calls of method with
 * parameters params, or as many as it can for duration_usec (if not 0) or until flood_stop(). */
static void flood_start_params(Tsmd *t, Flood *f, uid_t uid, unsigned n, unsigned n_calls, uint64_t duration_usec,
                               const char *method, const char *params) {
        const char *message = strf("{\"method\":\"%s\",\"parameters\":%s}", method, params);
        uint64_t until = duration_usec > 0 ? now_usec() + duration_usec : 0;

        ASSERT_LE(n, (unsigned) FLOOD_MAX_CONNS);
        ASSERT_EQ(n_calls % FLOOD_DEPTH, 0U);
        *f = (Flood){ .n = n };
        f->stop = mmap(NULL, sizeof(*f->stop), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        ASSERT_TRUE(f->stop != MAP_FAILED);
        atomic_init(f->stop, false);
        ASSERT_OK(pipe2(f->report, O_CLOEXEC));
        for (unsigned i = 0; i < n; i++)
                f->conns[i] = tsmd_connect_as(t, uid, uid);
        fflush(NULL);
        for (unsigned i = 0; i < n; i++) {
                f->pids[i] = fork();
                ASSERT_TRUE(f->pids[i] >= 0);
                if (f->pids[i] == 0)
                        flood_one(varlink_client_get_fd(f->conns[i]), f->report[1], message, n_calls, until, f->stop);
        }
        close(f->report[1]);
}

static void flood_start(Tsmd *t, Flood *f, uid_t uid, unsigned n, unsigned n_calls, uint64_t duration_usec,
                        const char *method) {
        flood_start_params(t, f, uid, n, n_calls, duration_usec, method, "{}");
}

static bool flood_running(Flood *f) {
        bool running = false;

        for (unsigned i = 0; i < f->n; i++)
                if (f->pids[i] > 0) {
                        if (waitpid(f->pids[i], &f->status[i], WNOHANG) == f->pids[i])
                                f->pids[i] = 0;
                        else
                                running = true;
                }
        return running;
}

/* Each connection stops after the calls it has sent are answered. */
static void flood_stop(Flood *f) {
        atomic_store(f->stop, true);
}

/* Waits for every connection to have had all its answers; returns the calls made. */
static uint64_t flood_finish(Flood *f) {
        uint64_t total = 0;

        for (unsigned i = 0; i < f->n; i++) {
                uint64_t sent;

                ASSERT_EQ(read(f->report[0], &sent, sizeof(sent)), (ssize_t) sizeof(sent));
                total += sent;
        }
        close(f->report[0]);
        for (unsigned i = 0; i < f->n; i++) {
                int status = f->status[i];

                if (f->pids[i] > 0)
                        ASSERT_EQ(waitpid(f->pids[i], &status, 0), f->pids[i]);
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        TEST_FAIL("flooding connection %u did not get all its answers (status %d)", i, status);
                varlink_client_free(f->conns[i]);
        }
        ASSERT_OK(munmap(f->stop, sizeof(*f->stop)));
        return total;
}

/* Waits (up to a refusal interval and more) until uid's records of event and result, summaries
 * counted as the calls they stand for, reach n; fails unless exactly n. */
static void expect_accounted(Tsmd *t, uid_t uid, const char *event, const char *result, size_t n, uint64_t timeout_usec) {
        uint64_t deadline = now_usec() + timeout_usec;
        size_t have;

        while ((have = tsmd_audit_count_where(t, 0, strf("\"uid\":%u", (unsigned) uid), event, result)) < n &&
               now_usec() < deadline)
                sleep_usec(100 * USEC_PER_MSEC);
        if (have != n)
                TEST_FAIL("%zu calls of uid %u accounted as %s -> %s, expected %zu", have, (unsigned) uid, event, result, n);
}

/* The seq of root's first record of event. */
static int64_t first_record_of_root(Tsmd *t, const char *event) {
        _cleanup_json_ json_object *records = tsmd_audit_query(t, "{\"uid\":0}");

        for (size_t i = 0; i < json_object_array_length(records); i++) {
                json_object *rec = json_object_array_get_idx(records, i);

                if (streq(JSTR(rec, "event"), event))
                        return JINT(rec, "seq");
        }
        TEST_FAIL("no %s record of root", event);
}

/* tsmd on a log small enough for a flood to rotate away (two files of 16 KiB), with a refusal
 * budget of 8 records a uid each second, and a context opened and closed first: the seq of its
 * open-context record in *ret_first, the connection it was made on returned. */
static VarlinkClient *start_with_a_first_record(Tsmd *t, int64_t *ret_first) {
        VarlinkClient *c;
        int64_t ctx;

        start(t, CONF_ZERO("[Audit]\nMaxFileSize=16384\nFiles=2\nRefusalRecordsPerUid=8\nRefusalIntervalSec=1\n"), "info");
        c = tsmd_connect(t);
        ctx = guest_open_context(c);
        CALL_OK(c, G "CloseContext", strf("{\"context\":%" PRIi64 "}", ctx));
        *ret_first = first_record_of_root(t, "open-context");
        return c;
}

/*
 * Any local user may connect to the Guest socket and have calls refused: a uid the policy does not
 * name, sending 230-byte method names by the thousand, Reloads and OpenContexts, must not write
 * records until rotation deletes an authorised client's (two files of 16 KiB here: the flood is
 * a hundred times that when recorded call by call). Its refusals stay accounted for: a few by
 * themselves, the rest in summary records counting them by uid, event and result, so every call
 * is on record; an unknown method under a fixed event with its name cut short.
 */
#define REFUSAL_FLOOD_CALLS 1024
#define REFUSAL_FLOOD_SMALL 128

TEST(refusal_flood_keeps_history_and_is_summarized) {
        Flood unknown, reload, open;
        Tsmd t;
        VarlinkClient *c;
        int64_t mine;
        size_t n_summaries = 0;

        if (!tsmd_can_switch_uid())
                SKIP("needs root to connect as a uid the policy does not name");
        c = start_with_a_first_record(&t, &mine);

        flood_start(&t, &unknown, UNNAMED, 4, REFUSAL_FLOOD_CALLS, 0, LONG_METHOD);
        flood_start(&t, &reload, UNNAMED, 1, REFUSAL_FLOOD_SMALL, 0, "io.tsmd.Service.Reload");
        flood_start(&t, &open, UNNAMED, 1, REFUSAL_FLOOD_SMALL, 0, G "OpenContext");
        ASSERT_EQ(flood_finish(&unknown), 4U * REFUSAL_FLOOD_CALLS);
        ASSERT_EQ(flood_finish(&reload), (uint64_t) REFUSAL_FLOOD_SMALL);
        ASSERT_EQ(flood_finish(&open), (uint64_t) REFUSAL_FLOOD_SMALL);

        /* The authorised client's first record is still there. */
        {
                _cleanup_json_ json_object *records = tsmd_audit_query(&t, strf("{\"fromSeq\":%" PRIi64 ",\"toSeq\":%" PRIi64 "}",
                                                                                 mine, mine));

                ASSERT_EQ(json_object_array_length(records), 1U);
                ASSERT_STREQ(JSTR(json_object_array_get_idx(records, 0), "event"), "open-context");
                ASSERT_EQ(JINT(json_object_array_get_idx(records, 0), "uid"), 0);
        }

        /* Every call accounted for, under its uid: one by one or counted in a summary. */
        expect_accounted(&t, UNNAMED, "unknown-method", VARLINK_ERROR_METHOD_NOT_FOUND, 4 * REFUSAL_FLOOD_CALLS,
                         3 * USEC_PER_SEC);
        expect_accounted(&t, UNNAMED, "io.tsmd.Service.Reload", VARLINK_ERROR_PERMISSION_DENIED, REFUSAL_FLOOD_SMALL,
                         3 * USEC_PER_SEC);
        /* Recorded by itself, an OpenContext ran and was denied; past the budget, it was refused
         * before it ran. */
        ASSERT_EQ(tsmd_audit_count_where(&t, 0, strf("\"uid\":%u", UNNAMED), "open-context", E_GUEST("Denied")) +
                          tsmd_audit_count_where(&t, 0, strf("\"uid\":%u", UNNAMED), "open-context", E_GUEST("AuditFailed")),
                  (size_t) REFUSAL_FLOOD_SMALL);
        {
                _cleanup_json_ json_object *records = tsmd_audit_query(&t, strf("{\"uid\":%u}", UNNAMED));

                for (size_t i = 0; i < json_object_array_length(records); i++) {
                        json_object *rec = json_object_array_get_idx(records, i), *v;

                        /* No client string makes a record long. */
                        ASSERT_LE(strlen(JSTR(rec, "event")), 64U);
                        if (json_object_object_get_ex(rec, "method", &v)) {
                                ASSERT_LE(strlen(json_object_get_string(v)), 64U);
                                ASSERT_TRUE(strncmp(json_object_get_string(v), LONG_METHOD, 32) == 0);
                        }
                        if (json_object_object_get_ex(rec, "count", &v)) {
                                ASSERT_GE(json_object_get_int64(v), 1);
                                ASSERT_FALSE(json_object_object_get_ex(rec, "method", NULL));
                                n_summaries++;
                        }
                }
                ASSERT_GE(n_summaries, 1U);
        }

        varlink_client_free(c);
        tsmd_teardown(&t);
}

/*
 * Nor by a flood kept up over many intervals: the budget bounds the rate of refusal records and
 * summaries, not what they come to, and the files are a ring. Each file's share of refusals
 * (RefusalSharePercent=, half by default) does: a uid the policy does not name, sending 64-byte
 * unknown methods for 6 s (32 of them a second recorded by themselves, 1 s intervals: many times
 * the two files of 16 KiB), leaves the VMM's records from before it in the log, and once the
 * share is used its calls are only counted. Their counts wait for records of what was done to
 * start a new file, and are then written in summaries: every call of the flood accounted for.
 */
TEST(sustained_refusal_flood_keeps_history) {
        Tsmd t;
        VarlinkClient *c;
        json_object *r;
        int64_t mine, ctx, end;
        uint64_t sent, deadline;
        size_t before, have;
        Flood f;

        if (!tsmd_can_switch_uid())
                SKIP("needs root to connect as a uid the policy does not name");
        start(&t, CONF_ZERO("[Audit]\nMaxFileSize=16384\nFiles=2\nRefusalRecordsPerUid=32\nRefusalIntervalSec=1\n"),
              "info");
        c = tsmd_connect(&t);
        ctx = guest_open_context(c);
        CALL_OK(c, G "CloseContext", strf("{\"context\":%" PRIi64 "}", ctx));
        mine = first_record_of_root(&t, "open-context");

        flood_start(&t, &f, UNNAMED, 1, FLOOD_DEPTH * 1000000u, 6 * USEC_PER_SEC, LONG_METHOD);
        sent = flood_finish(&f);
        ASSERT_GE(sent, 32U * 6U * 4U); /* many times what is recorded by itself */

        /* The VMM's records are all still there. */
        {
                _cleanup_json_ json_object *records = tsmd_audit_query(&t, strf("{\"fromSeq\":%" PRIi64 ",\"toSeq\":%" PRIi64 "}",
                                                                                 mine, mine + 1));

                ASSERT_EQ(json_object_array_length(records), 2U);
                ASSERT_STREQ(JSTR(json_object_array_get_idx(records, 0), "event"), "open-context");
                ASSERT_STREQ(JSTR(json_object_array_get_idx(records, 1), "event"), "close-context");
                ASSERT_EQ(JINT(json_object_array_get_idx(records, 1), "uid"), 0);
        }
        /* The share is used: the rest of the flood is counted, not written yet. */
        r = CALL_OK(c, "io.tsmd.Admin.GetCounters", NULL);
        ASSERT_TRUE(json_matches(r, "{\"auditRefusalShareFull\":true}"));
        ASSERT_GE(JINT(r, "auditRefusalsUnwritten"), 1);
        before = tsmd_audit_count_where(&t, 0, strf("\"uid\":%u", UNNAMED), "unknown-method",
                                        VARLINK_ERROR_METHOD_NOT_FOUND);
        ASSERT_TRUE(before < (size_t) sent);
        end = tsmd_audit_last_seq(&t);

        /* What the VMM does fills the files; the counts come out in a summary in the new one's
         * share (watched for after each call, before the VMM's records rotate it away too). */
        deadline = now_usec() + 60 * USEC_PER_SEC;
        while ((have = tsmd_audit_count_where(&t, end, strf("\"uid\":%u", UNNAMED), "unknown-method",
                                              VARLINK_ERROR_METHOD_NOT_FOUND)) < (size_t) sent - before &&
               now_usec() < deadline) {
                ctx = guest_open_context(c);
                CALL_OK(c, G "CloseContext", strf("{\"context\":%" PRIi64 "}", ctx));
                sleep_usec(20 * USEC_PER_MSEC);
        }
        ASSERT_EQ(before + have, (size_t) sent);
        r = CALL_OK(c, "io.tsmd.Admin.GetCounters", NULL);
        ASSERT_EQ(JINT(r, "auditRefusalsUnwritten"), 0);

        varlink_client_free(c);
        tsmd_teardown(&t);
}

/*
 * Nor may a client the policy names: a CloseContext of a context that does not exist changes
 * nothing, and it can make them as fast as tsmd answers (4096 here, on processes of its own: two
 * files of 16 KiB are a small part of their records). Past its uid's refusal budget, what tsmd's
 * own checks refused before anything was done is answered as before and counted in summaries,
 * so the history stays; what acts, and what succeeds, is recorded one by one, even then.
 */
TEST(a_named_clients_failing_calls_keep_history_and_are_summarized) {
        const char *gone = "{\"context\":424242}";
        Tsmd t;
        VarlinkClient *c;
        int64_t mine, ctx, seq;
        size_t n_summaries = 0;
        Flood f;

        if (!tsmd_can_switch_uid())
                SKIP("needs root to flood from processes of the test's uid");
        c = start_with_a_first_record(&t, &mine);

        flood_start_params(&t, &f, getuid(), 4, REFUSAL_FLOOD_CALLS, 0, G "CloseContext", gone);
        /* Answered as ever, during the flood too. */
        CALL_ERROR(c, G "CloseContext", gone, E_GUEST("NoSuchContext"), gone);
        ASSERT_EQ(flood_finish(&f), 4U * REFUSAL_FLOOD_CALLS);

        /* The history is still there. */
        {
                _cleanup_json_ json_object *records = tsmd_audit_query(&t, strf("{\"fromSeq\":%" PRIi64 ",\"toSeq\":%" PRIi64 "}",
                                                                                 mine, mine));

                ASSERT_EQ(json_object_array_length(records), 1U);
                ASSERT_STREQ(JSTR(json_object_array_get_idx(records, 0), "event"), "open-context");
                ASSERT_EQ(JINT(json_object_array_get_idx(records, 0), "uid"), (int64_t) getuid());
        }

        /* Every call accounted for: one by one, or in a summary of the uid's. */
        expect_accounted(&t, getuid(), "close-context", E_GUEST("NoSuchContext"), 4 * REFUSAL_FLOOD_CALLS + 1,
                         3 * USEC_PER_SEC);
        {
                _cleanup_json_ json_object *records = tsmd_audit_query(&t, strf("{\"uid\":%u,\"event\":\"close-context\"}",
                                                                                 (unsigned) getuid()));

                for (size_t i = 0; i < json_object_array_length(records); i++) {
                        json_object *rec = json_object_array_get_idx(records, i), *v;

                        if (json_object_object_get_ex(rec, "count", &v)) {
                                ASSERT_STREQ(JSTR(rec, "result"), E_GUEST("NoSuchContext"));
                                n_summaries++;
                        }
                }
                ASSERT_GE(n_summaries, 1U);
        }

        /* The budget spent (RefusalIntervalSec= is 1 s: spent again at once), what acts and
         * succeeds is still on record by itself. */
        flood_start_params(&t, &f, getuid(), 1, FLOOD_DEPTH, 0, G "CloseContext", gone);
        ASSERT_EQ(flood_finish(&f), (uint64_t) FLOOD_DEPTH);
        seq = tsmd_audit_last_seq(&t);
        ctx = guest_open_context(c);
        CALL_OK(c, G "CloseContext", strf("{\"context\":%" PRIi64 "}", ctx));
        tsmd_expect_audit(&t, seq, "open-context", "ok", 1);
        tsmd_expect_audit(&t, seq, "close-context", "ok", 1);

        varlink_client_free(c);
        tsmd_teardown(&t);
}

/*
 * The room for records in flight (MaxRecordsInFlight=, 16 here) is not one uid's to take: a uid
 * the policy does not name, flooding refused calls on many connections (unknown methods, then
 * Reloads, whose refusal was once owed a record past every bound), never makes an authorised
 * client's OpenContext or GuestRequest fail AuditFailed, and every refused call is accounted for.
 */
#define ROOM_FLOOD_CONNS 8
#define ROOM_FLOOD_USEC (2 * USEC_PER_SEC)
/* Rounds of the authorised client's calls the flood lasts for at least, however slow a loaded
 * machine (ASan, a shared disk) makes them; and at most how long it waits for them. */
#define ROOM_FLOOD_ROUNDS 5U
#define ROOM_FLOOD_MAX_USEC (120 * USEC_PER_SEC)

/* A call of the authorised client: true if it succeeded, false (counted in *failed) if it was
 * refused AuditFailed, the only error allowed. */
static bool root_call(VarlinkClient *c, const char *method, const char *params, unsigned *failed, json_object **ret) {
        const char *e = tsmd_call(c, method, params, ret);

        if (!e)
                return true;
        ASSERT_STREQ(e, E_GUEST("AuditFailed"));
        (*failed)++;
        return false;
}

static void room_flood(Tsmd *t, const char *method, const char *event, const char *result) {
        VarlinkClient *c = tsmd_connect(t);
        unsigned rounds = 0, failed = 0, during = 0;
        uint64_t n_flood, start = now_usec();
        Flood f;

        flood_start(t, &f, UNNAMED, ROOM_FLOOD_CONNS, UINT_MAX - UINT_MAX % FLOOD_DEPTH, ROOM_FLOOD_MAX_USEC, method);
        while (rounds < 10 || flood_running(&f)) {
                Msg m = tdisp_msg(TDISP_MSG_GET_VERSION, DEV1, NULL, 0);
                json_object *r = NULL;
                int64_t ctx;

                rounds++;
                if (!root_call(c, G "OpenContext", NULL, &failed, &r))
                        continue;
                ctx = JINT(r, "context");
                close(varlink_client_take_fd(c, (size_t) JINT(r, "fileDescriptor")));
                /* Bound for the request, unbound after it: the device is left clean, for the
                 * next round to attach at once. */
                if (root_call(c, G "AttachDevice", guest_attach_params(ctx, 1, DEV1), &failed, &r) &&
                    root_call(c, G "Bind", guest_vdev_params(ctx, 1), &failed, &r)) {
                        (void) root_call(c, G "GuestRequest", request_params(ctx, 1, "info", &m), &failed, &r);
                        (void) root_call(c, G "Unbind", guest_vdev_params(ctx, 1), &failed, &r);
                }
                /* Closed in the end, or the next round could not attach. */
                for (unsigned i = 0; !root_call(c, G "CloseContext", strf("{\"context\":%" PRIi64 "}", ctx), &failed, &r); i++)
                        if (i > 1000)
                                TEST_FAIL("the context could not be closed");
                during += flood_running(&f);
                if (during >= ROOM_FLOOD_ROUNDS && now_usec() - start >= ROOM_FLOOD_USEC)
                        flood_stop(&f);
        }
        n_flood = flood_finish(&f);
        fprintf(stderr, "# %s flood of %" PRIu64 " calls: %u of root's calls in %u rounds (%u during the flood) refused AuditFailed\n",
                method, n_flood, failed, rounds, during);
        ASSERT_EQ(failed, 0U);
        ASSERT_GE(during, ROOM_FLOOD_ROUNDS);
        varlink_client_free(c);
        /* Past the budget, counted in summaries written when the refusal interval (10 s) ends. */
        expect_accounted(t, UNNAMED, event, result, n_flood, 15 * USEC_PER_SEC);
}

TEST(a_uid_flooding_refusals_leaves_room_in_flight_for_others) {
        Tsmd t;

        if (!tsmd_can_switch_uid())
                SKIP("needs root to connect as a uid the policy does not name");
        start(&t, CONF_ZERO("[Audit]\nMaxRecordsInFlight=16\n"), "info");
        room_flood(&t, G "Nope", "unknown-method", VARLINK_ERROR_METHOD_NOT_FOUND);
        tsmd_teardown(&t);
}

TEST(a_uid_flooding_reloads_leaves_room_in_flight_for_others) {
        Tsmd t;

        if (!tsmd_can_switch_uid())
                SKIP("needs root to connect as a uid the policy does not name");
        start(&t, CONF_ZERO("[Audit]\nMaxRecordsInFlight=16\n"), "info");
        room_flood(&t, "io.tsmd.Service.Reload", "io.tsmd.Service.Reload", VARLINK_ERROR_PERMISSION_DENIED);
        tsmd_teardown(&t);
}

/*
 * An administrator is named by the policy even where no client rule names it: its refused Guest
 * calls run (and are denied by name), from the named callers' room, not from the unnamed pool,
 * and are never refused before they ran. Here the refusal budget is 0 and the unnamed pool holds
 * one record: the unnamed uid's call is refused AuditFailed and counted in a summary, the
 * administrator's are answered Denied and, refusals of tsmd's own checks as any named caller's
 * (root's too), counted in its uid's summary.
 */
#define ADMIN_DENIED_CALLS 5U

TEST(an_admins_refused_calls_run_and_are_accounted) {
        static char policy[128];
        const TsmdFile file = { "policy.conf", policy };
        VarlinkClient *a;
        Tsmd t;

        snprintf(policy, sizeof(policy), "[Admin]\nUsers=%u\n[Client:others]\nUsers=%u\nDevices=*\n",
                 (unsigned) getuid(), (unsigned) getuid() == 4242 ? 4243 : 4242);
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO("[Audit]\nRefusalRecordsPerUid=0\nRefusalIntervalSec=1\n"
                                                                "MaxRecordsInFlightUnnamed=1\n"),
                                        .files = &file, .n_files = 1, .log_level = "info" });
        a = tsmd_connect(&t);
        CALL_OK(a, "io.tsmd.Admin.ListBackends", NULL);
        for (unsigned i = 0; i < ADMIN_DENIED_CALLS; i++)
                CALL_ERROR(a, G "OpenContext", NULL, E_GUEST("Denied"), NULL);
        tsmd_expect_audit(&t, 0, "open-context", E_GUEST("Denied"), ADMIN_DENIED_CALLS);
        ASSERT_EQ(tsmd_audit_count(&t, 0, "open-context", E_GUEST("AuditFailed")), 0U);

        /* Whom the policy does not name at all: past its budget (none) at once. */
        if (tsmd_can_switch_uid()) {
                VarlinkClient *n = tsmd_connect_as(&t, NOBODY, NOBODY);

                CALL_ERROR(n, G "OpenContext", NULL, E_GUEST("AuditFailed"), NULL);
                expect_accounted(&t, NOBODY, "open-context", E_GUEST("AuditFailed"), 1, 3 * USEC_PER_SEC);
                varlink_client_free(n);
        }
        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* ---- queries ------------------------------------------------------------------------------ */

/* Stops tsmd and puts a log of n records of about 300 bytes (seq 1..n) in audit.log.1 in place of
 * its own, owned as the worker owns its files; starts it again there. */
static void restart_with_large_log(Tsmd *t, uint64_t n) {
        char audit[512], path[600];
        struct stat st;
        FILE *f;

        tsmd_stop(t);
        snprintf(audit, sizeof(audit), "%s/audit", t->dir);
        ASSERT_TRUE(stat(audit, &st) >= 0);
        snprintf(path, sizeof(path), "%s/audit.log", audit);
        (void) unlink(path);
        for (unsigned i = 1; i < 5; i++) {
                snprintf(path, sizeof(path), "%s/audit.log.%u", audit, i);
                (void) unlink(path);
        }
        snprintf(path, sizeof(path), "%s/audit.log.1", audit);
        f = fopen(path, "we");
        ASSERT_NOT_NULL(f);
        for (uint64_t seq = 1; seq <= n; seq++)
                fprintf(f,
                        "{\"seq\":%" PRIu64 ",\"realtimeUsec\":1700000000000000,\"monotonicUsec\":%" PRIu64
                        ",\"event\":\"guest-request\",\"uid\":107,\"gid\":107,\"pid\":4242,"
                        "\"unit\":\"machine-qemu\\\\x2d%" PRIu64 ".scope\",\"contextId\":7,\"vdeviceId\":1,"
                        "\"pci\":\"0000:01:00.0\",\"backend\":\"emulated\",\"scope\":\"info\","
                        "\"scopeNumber\":0,\"requestSize\":16,\"responseSize\":64,\"result\":\"ok\","
                        "\"latencyUsec\":12}\n",
                        seq, seq, seq % 64);
        ASSERT_EQ(fclose(f), 0);
        ASSERT_TRUE(chown(path, st.st_uid, st.st_gid) >= 0);
        tsmd_restart(t, &(TsmdOptions) { .log_level = "info" });
}

#define LARGE_LOG_RECORDS 150000 /* ~45 MB: a third of a second to read, even on a fast machine */

/* A query over a large log runs beside the loop: a Ping sent while it runs is answered at once,
 * not after it (the loop used to read the whole log before anything else; at 2.5 GB the
 * monitor killed the worker as unresponsive). */
TEST(query_does_not_hold_up_other_calls) {
        AsyncCall query = {}, ping = {};
        VarlinkClient *a, *b;
        uint64_t sent, ping_usec, query_usec;
        Tsmd t;

        start(&t, CONF_ZERO("[Audit]\nFiles=3\nMaxFileSize=1073741824\n"), "info");
        restart_with_large_log(&t, LARGE_LOG_RECORDS);
        a = tsmd_connect(&t);
        b = tsmd_connect(&t);
        CALL_OK(b, "io.tsmd.Service.Ping", NULL);

        sent = now_usec();
        tsmd_call_async(a, "io.tsmd.Admin.QueryAudit", "{\"uid\":12345}", 0, &query);
        sleep_usec(30 * USEC_PER_MSEC); /* under way */
        tsmd_call_async(b, "io.tsmd.Service.Ping", NULL, 0, &ping);
        ASSERT_TRUE(tsmd_async_wait(b, &ping, 1, 60 * USEC_PER_SEC));
        ping_usec = now_usec() - sent;
        ASSERT_TRUE(tsmd_async_wait(a, &query, 1, 60 * USEC_PER_SEC));
        query_usec = now_usec() - sent;
        ASSERT_NULL(ping.errors[0]);
        ASSERT_NULL(query.errors[0]);
        ASSERT_EQ(json_object_array_length(json_object_object_get(query.params[0], "records")), 0);
        /* The query took its time; the Ping did not wait for it. */
        fprintf(stderr, "# QueryAudit took %" PRIu64 " ms, the Ping sent after it %" PRIu64 " ms\n",
                query_usec / USEC_PER_MSEC, ping_usec / USEC_PER_MSEC);
        ASSERT_GE(query_usec, 150 * USEC_PER_MSEC);
        ASSERT_LE(ping_usec * 3, query_usec);

        /* fromSeq near the end is quick: the start is found by bisection. */
        {
                json_object *records = tsmd_audit_query(&t, strf("{\"fromSeq\":%d}", LARGE_LOG_RECORDS - 2));

                ASSERT_GE(json_object_array_length(records), 3);
                json_object_put(records);
        }
        async_call_done(&query);
        async_call_done(&ping);
        varlink_client_free(a);
        varlink_client_free(b);
        tsmd_teardown(&t);
}

/* MaxQueries= (4, the default) QueryAudit calls at once on c[0..4), each from its own seq, of
 * limit records each; returns the size of their records' text. */
static size_t four_queries_at_once(VarlinkClient **c, uint64_t from, unsigned limit) {
        AsyncCall q[4] = {};
        size_t bytes = 0;

        for (unsigned i = 0; i < 4; i++)
                tsmd_call_async(c[i], "io.tsmd.Admin.QueryAudit",
                                strf("{\"fromSeq\":%" PRIu64 ",\"limit\":%u}", from + i * 20000, limit), 0, &q[i]);
        for (unsigned i = 0; i < 4; i++) {
                json_object *records;

                ASSERT_TRUE(tsmd_async_wait(c[i], &q[i], 1, 60 * USEC_PER_SEC));
                ASSERT_NULL(q[i].errors[0]);
                records = json_object_object_get(q[i].params[0], "records");
                ASSERT_EQ(json_object_array_length(records), limit);
                ASSERT_EQ(json_object_get_int64(json_object_object_get(json_object_array_get_idx(records, 0), "seq")),
                          (int64_t) (from + i * 20000));
                bytes += strlen(json_object_to_json_string_ext(records, JSON_C_TO_STRING_PLAIN));
                async_call_done(&q[i]);
        }
        return bytes;
}

/* Large answers to QueryAudit cost about what their text does, at most a few times over while
 * they are built and sent, and leave nothing behind: the records used to be held as json-c
 * trees, ten times their text, in the query threads' malloc arenas, which kept most of it (four
 * queries at once took the worker from 4 MB to 144 MB, and it stayed at 137 MB). */
TEST(large_queries_leave_no_memory_behind) {
        unsigned long before, peak, after, text_kib = 0, bound;
        uint64_t deadline;
        VarlinkClient *c[4];
        Tsmd t;

        start(&t, CONF_ZERO("[Audit]\nFiles=3\nMaxFileSize=1073741824\n"), "info");
        restart_with_large_log(&t, LARGE_LOG_RECORDS);
        for (unsigned i = 0; i < 4; i++)
                c[i] = tsmd_connect(&t);
        /* Four small queries at once first: the threads' arenas and stacks are made. */
        (void) four_queries_at_once(c, 1, 1);
        before = tsmd_anon_kib(&t);
        for (unsigned round = 0; round < 3; round++) {
                size_t bytes = four_queries_at_once(c, 1 + round * 1000, 10000);

                text_kib = MAX(text_kib, (unsigned long) (bytes / 1024));
        }
        peak = tsmd_hwm_kib(&t);
        /* What is freed may take the loop a moment more to give back. */
        bound = before + text_kib;
        deadline = now_usec() + TSMD_WAIT_USEC;
        while ((after = tsmd_anon_kib(&t)) > bound && now_usec() < deadline)
                sleep_usec(10 * USEC_PER_MSEC);
        fprintf(stderr, "# anonymous memory %lu KiB before, %lu KiB after three rounds of four queries of %lu KiB "
                "of records at once; peak RSS %lu KiB\n", before, after, text_kib, peak);
#if TSMD_SANITIZED
        /* ASan keeps freed memory in quarantine: RSS says nothing here. */
#else
        if (!tsmd_under_valgrind()) {
                /* Four answers at once, each in a few copies on its way (found, written, queued). */
                ASSERT_LE(peak, tsmd_rss_kib(&t) - after + before + 4 * text_kib);
                /* Less than one round's answers stays (a third of them, with meson's
                 * MALLOC_PERTURB_ touching what is freed; they used to stay three times over). */
                ASSERT_LE(after, bound);
        }
#endif
        for (unsigned i = 0; i < 4; i++)
                varlink_client_free(c[i]);
        tsmd_teardown(&t);
}

/* QueryAudit's answer to params on a, which must have nextSeq (want_next) or not. */
static json_object *query_expecting_next(VarlinkClient *a, const char *params, bool want_next) {
        json_object *reply = CALL_OK(a, "io.tsmd.Admin.QueryAudit", params), *next;

        next = json_object_object_get(reply, "nextSeq");
        if (!!next != want_next)
                TEST_FAIL("QueryAudit %s: %s", params, json_object_to_json_string(reply));
        return reply;
}

/* tsmctl --json audit ARG, which must succeed: its output, parsed, and its stderr. */
static json_object *tsmctl_audit_json(Tsmd *t, const char *arg, char **ret_err) {
        _cleanup_free_ char *out = NULL;
        const char *argv[] = { TSMCTL_PATH, "--json", "--socket", t->socket, "audit", arg, NULL };
        int status = run_capture(argv, &out, ret_err, 60 * USEC_PER_SEC);
        json_object *o;

        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        o = json_tokener_parse(out);
        ASSERT_NOT_NULL(o);
        return o;
}

/* One QueryAudit call reads at most MaxQueryScanSize= of the log, and answers what it found with
 * nextSeq, where the same query goes on: a filter matching nothing over a large log no longer
 * holds its MaxQueries= slot until the end. tsmctl audit goes on by itself; a reload applies a
 * new size. */
TEST(query_reads_at_most_max_query_scan_size_a_call) {
        VarlinkClient *a;
        json_object *reply, *records;
        int64_t next, last;
        unsigned calls = 0;
        Tsmd t;

        start(&t, CONF_ZERO("[Audit]\nFiles=3\nMaxFileSize=1073741824\nMaxQueryScanSize=64K\n"), "info");
        restart_with_large_log(&t, 20000); /* ~6 MB */
        a = tsmd_connect(&t);

        /* Matching nothing: none, and where to go on, call after call, to the end. */
        next = 1;
        do {
                reply = CALL_OK(a, "io.tsmd.Admin.QueryAudit", strf("{\"uid\":12345,\"fromSeq\":%" PRIi64 "}", next));
                ASSERT_EQ(json_object_array_length(json_object_object_get(reply, "records")), 0);
                if (!json_object_object_get(reply, "nextSeq"))
                        break;
                ASSERT_GE(JINT(reply, "nextSeq"), next + 1);
                next = JINT(reply, "nextSeq");
                ASSERT_LE(++calls, 1000);
        } while (true);
        ASSERT_GE(calls, 20); /* 6 MB, 64 KiB a call */

        /* Matching all: fewer than the limit, and nextSeq after the last of them. */
        reply = query_expecting_next(a, "{}", true);
        records = json_object_object_get(reply, "records");
        ASSERT_GE(json_object_array_length(records), 1);
        ASSERT_LE(json_object_array_length(records), 9999);
        last = JINT(json_object_array_get_idx(records, json_object_array_length(records) - 1), "seq");
        ASSERT_EQ(JINT(reply, "nextSeq"), last + 1);
        /* Near the end: found by bisection, all read at once. */
        reply = query_expecting_next(a, "{\"fromSeq\":19990,\"toSeq\":20000}", false);
        ASSERT_EQ(json_object_array_length(json_object_object_get(reply, "records")), 11);

        /* tsmctl goes on by itself, to its limit, and says where the next page starts. */
        {
                _cleanup_free_ char *err = NULL;
                _cleanup_(json_object_putp) json_object *o = tsmctl_audit_json(&t, "--limit=10000", &err);

                records = json_object_object_get(o, "records");
                ASSERT_EQ(json_object_array_length(records), 10000);
                for (size_t i = 0; i < 10000; i++)
                        ASSERT_EQ(JINT(json_object_array_get_idx(records, i), "seq"), (int64_t) i + 1);
                ASSERT_NULL(json_object_object_get(o, "nextSeq"));
                ASSERT_NOT_NULL(strstr(err, "--from=10001"));
        }
        {
                _cleanup_free_ char *err = NULL;
                _cleanup_(json_object_putp) json_object *o = tsmctl_audit_json(&t, "--uid=12345", &err);

                ASSERT_EQ(json_object_array_length(json_object_object_get(o, "records")), 0);
                ASSERT_NULL(json_object_object_get(o, "nextSeq"));
                ASSERT_STREQ(err, "");
        }

        /* The default (256M) reads this log whole. */
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO("[Audit]\nFiles=3\nMaxFileSize=1073741824\n")));
        reply = query_expecting_next(a, "{\"uid\":12345}", false);
        ASSERT_EQ(json_object_array_length(json_object_object_get(reply, "records")), 0);
        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* The seqs of reply's records, in order, as text ("1 2 3"), for a message that shows them. */
static char *seqs_of(json_object *records) {
        char *text = strdup("");

        ASSERT_NOT_NULL(text);
        for (size_t i = 0; i < json_object_array_length(records); i++) {
                char *more = NULL;

                ASSERT_TRUE(asprintf(&more, "%s%s%" PRIi64, text, i > 0 ? " " : "",
                                     JINT(json_object_array_get_idx(records, i), "seq")) > 0);
                free(text);
                text = more;
        }
        return text;
}

/* QueryAudit answers at most [Audit] MaxQueryRecords= records a call (here 3), and that when no
 * limit is given; where more match than it answers and the caller asked for more (or for no
 * limit), nextSeq says where the same query goes on, and tsmctl audit goes on by itself to all of
 * them. At the caller's own limit, or where no more match, there is no nextSeq. A reload applies
 * a new value. */
TEST(query_answers_at_most_max_query_records_a_call) {
        VarlinkClient *a;
        json_object *reply;
        Tsmd t;

        start(&t, CONF_ZERO("[Audit]\nMaxQueryRecords=3\n"), "info");
        restart_with_large_log(&t, 10); /* uid 107's, seq 1..10; tsmd's own follow */
        a = tsmd_connect(&t);

        static const struct {
                const char *params, *seqs;
                int64_t next; /* 0: none */
        } calls[] = {
                { "{\"uid\":107}", "1 2 3", 4 },
                { "{\"uid\":107,\"limit\":100}", "1 2 3", 4 },
                { "{\"uid\":107,\"limit\":4}", "1 2 3", 4 },
                { "{\"uid\":107,\"limit\":3}", "1 2 3", 0 },
                { "{\"uid\":107,\"limit\":2}", "1 2", 0 },
                { "{\"uid\":107,\"fromSeq\":4}", "4 5 6", 7 },
                { "{\"uid\":107,\"fromSeq\":8}", "8 9 10", 0 },
                { "{\"uid\":107,\"fromSeq\":9,\"limit\":100}", "9 10", 0 },
                { "{\"uid\":107,\"toSeq\":3}", "1 2 3", 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(calls); i++) {
                _cleanup_free_ char *seqs = NULL;
                json_object *next;

                reply = CALL_OK(a, "io.tsmd.Admin.QueryAudit", calls[i].params);
                seqs = seqs_of(json_object_object_get(reply, "records"));
                next = json_object_object_get(reply, "nextSeq");
                if (!streq(seqs, calls[i].seqs) || (next ? json_object_get_int64(next) : 0) != calls[i].next)
                        TEST_FAIL("QueryAudit %s: %s", calls[i].params, json_object_to_json_string(reply));
        }

        /* tsmctl pages on through nextSeq: all ten, in order, and nothing said. */
        {
                _cleanup_free_ char *err = NULL, *seqs = NULL;
                _cleanup_(json_object_putp) json_object *o = tsmctl_audit_json(&t, "--uid=107", &err);

                seqs = seqs_of(json_object_object_get(o, "records"));
                ASSERT_STREQ(seqs, "1 2 3 4 5 6 7 8 9 10");
                ASSERT_NULL(json_object_object_get(o, "nextSeq"));
                ASSERT_STREQ(err, "");
        }
        /* And to its own limit, past tsmd's, knowing there are more. */
        {
                _cleanup_free_ char *out = NULL, *err = NULL, *seqs = NULL;
                _cleanup_(json_object_putp) json_object *o = NULL;
                const char *argv[] = { TSMCTL_PATH, "--json", "--socket", t.socket, "audit", "--uid=107", "--limit=5",
                                       NULL };
                int status = run_capture(argv, &out, &err, 60 * USEC_PER_SEC);

                ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                o = json_tokener_parse(out);
                ASSERT_NOT_NULL(o);
                seqs = seqs_of(json_object_object_get(o, "records"));
                ASSERT_STREQ(seqs, "1 2 3 4 5");
                ASSERT_NOT_NULL(strstr(err, "More records match than --limit=5 shows: continue with --from=6"));
        }

        /* Applied by a reload. */
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO("[Audit]\nMaxQueryRecords=4\n")));
        reply = query_expecting_next(a, "{\"uid\":107}", true);
        ASSERT_EQ(json_object_array_length(json_object_object_get(reply, "records")), 4);
        ASSERT_EQ(JINT(reply, "nextSeq"), 5);
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO("")));
        reply = query_expecting_next(a, "{\"uid\":107}", false);
        ASSERT_EQ(json_object_array_length(json_object_object_get(reply, "records")), 10);
        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* tsmctl audit shows 10000 records at most, and asks for one more to know whether more match:
 * tsmd answers its MaxQueryRecords= (10000) and nextSeq, and tsmctl goes on for the one. It says
 * more match, and where to go on, rather than that there may be more. */
TEST(tsmctl_audit_knows_when_more_match_than_it_shows) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        const char *argv[] = { TSMCTL_PATH, "--socket", NULL, "audit", "--uid=107", NULL };
        int status;
        Tsmd t;

        start(&t, CONF_ZERO(""), "info");
        restart_with_large_log(&t, 10001);
        argv[2] = t.socket;
        status = run_capture(argv, &out, &err, 60 * USEC_PER_SEC);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (!strstr(err, "More records match than the first 10000 shown") || !strstr(err, "--from=10001"))
                TEST_FAIL("tsmctl audit said: %s", err);
        ASSERT_NULL(strstr(err, "there may be more"));
        /* Exactly 10000 match: nothing more to say (it said there may be more). */
        out = mfree(out);
        err = mfree(err);
        argv[4] = "--to=10000";
        status = run_capture(argv, &out, &err, 60 * USEC_PER_SEC);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_STREQ(err, "");
        tsmd_teardown(&t);
}

static unsigned worker_threads(Tsmd *t) {
        return tsmd_threads_of(tsmd_worker_pid(t));
}

/* Sends a QueryAudit that matches nothing on c (so it reads the whole log) and waits until its
 * thread runs; returns the worker's thread count before it. */
static unsigned query_under_way(Tsmd *t, VarlinkClient *c, AsyncCall *query) {
        unsigned idle_threads = worker_threads(t);
        uint64_t deadline = now_usec() + TSMD_WAIT_USEC;

        tsmd_call_async(c, "io.tsmd.Admin.QueryAudit", "{\"uid\":12345}", 0, query);
        while (worker_threads(t) == idle_threads && now_usec() < deadline)
                sleep_usec(USEC_PER_MSEC);
        ASSERT_EQ(worker_threads(t), idle_threads + 1);
        return idle_threads;
}

/* A query whose caller hangs up is cancelled: its thread stops at once (not at the end of the
 * log), and the call is audited as ended with ECANCELED (no one hears it). */
TEST(query_cancelled_when_its_caller_hangs_up) {
        AsyncCall query = {};
        VarlinkClient *a;
        unsigned idle_threads;
        uint64_t deadline;
        int64_t after;
        Tsmd t;

        start(&t, CONF_ZERO("[Audit]\nFiles=3\nMaxFileSize=1073741824\n"), "info");
        restart_with_large_log(&t, LARGE_LOG_RECORDS);
        after = tsmd_audit_last_seq(&t);
        a = tsmd_connect(&t);
        idle_threads = query_under_way(&t, a, &query);
        varlink_client_free(a);
        async_call_done(&query);

        /* A whole scan takes a third of a second even on a fast machine. */
        deadline = now_usec() + (tsmd_under_valgrind() ? 2 * USEC_PER_SEC : 100 * USEC_PER_MSEC);
        while (worker_threads(&t) > idle_threads && now_usec() < deadline)
                sleep_usec(USEC_PER_MSEC);
        ASSERT_EQ(worker_threads(&t), idle_threads);
        tsmd_expect_audit(&t, after, "io.tsmd.Admin.QueryAudit", "io.tsmd.System", 1);
        tsmd_teardown(&t);
}

/* A uid no record can have is refused by name: uid -1 was taken for (uid_t) -1, "any uid", and
 * answered everyone's records; one past 32 bits wrapped to another uid's. */
TEST(query_refuses_a_uid_no_record_can_have) {
        json_object *records;
        VarlinkClient *a;
        int64_t after;
        Tsmd t;

        start(&t, CONF_ZERO(), "info");
        a = tsmd_connect(&t);
        (void) guest_open_context(a);
        after = tsmd_audit_last_seq(&t);
        ASSERT_GE(after, 1);

        CALL_ERROR(a, "io.tsmd.Admin.QueryAudit", "{\"uid\":-1}", "org.varlink.service.InvalidParameter",
                   "{\"parameter\":\"uid\"}");
        CALL_ERROR(a, "io.tsmd.Admin.QueryAudit", "{\"uid\":4294967295}", "org.varlink.service.InvalidParameter",
                   "{\"parameter\":\"uid\"}");
        CALL_ERROR(a, "io.tsmd.Admin.QueryAudit", "{\"uid\":4294967296}", "org.varlink.service.InvalidParameter",
                   "{\"parameter\":\"uid\"}");
        tsmd_expect_audit(&t, after, "io.tsmd.Admin.QueryAudit", "org.varlink.service.InvalidParameter", 3);

        /* The largest uid there is, and root's records. */
        records = tsmd_audit_query(&t, "{\"uid\":4294967294}");
        ASSERT_EQ(json_object_array_length(records), 0U);
        json_object_put(records);
        records = tsmd_audit_query(&t, "{\"uid\":0}");
        ASSERT_GE(json_object_array_length(records), 1U);
        for (size_t i = 0; i < json_object_array_length(records); i++)
                ASSERT_EQ(JINT(json_object_array_get_idx(records, i), "uid"), 0);
        json_object_put(records);
        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* A record whose seq is damaged in place (a bit flipped: 2 reads as 1, the line still parses) is
 * left out, and said so: in the reply ("damaged"), and in tsmd's log. It was left out silently. */
TEST(query_says_it_passed_over_damage) {
        const char *path;
        json_object *reply, *records;
        VarlinkClient *a;
        char *text, *line;
        int fd;
        Tsmd t;

        start(&t, CONF_ZERO(), "info");
        a = tsmd_connect(&t);
        for (unsigned i = 0; i < 3; i++)
                (void) guest_open_context(a);
        ASSERT_GE(tsmd_audit_last_seq(&t), 4);
        reply = CALL_OK(a, "io.tsmd.Admin.QueryAudit", "{\"toSeq\":4}");
        ASSERT_NULL(json_object_object_get(reply, "damaged"));

        path = strf("%s/audit/audit.log", t.dir);
        text = read_file(path);
        ASSERT_NOT_NULL(text);
        line = strstr(text, "\n{\"seq\":2,");
        ASSERT_NOT_NULL(line);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(pwrite(fd, "1", 1, (off_t) (line + 1 + strlen("{\"seq\":") - text)), 1);
        close(fd);
        free(text);

        reply = CALL_OK(a, "io.tsmd.Admin.QueryAudit", "{\"toSeq\":4}");
        ASSERT_EQ(JINT(reply, "damaged"), 1);
        records = json_object_object_get(reply, "records");
        ASSERT_EQ(json_object_array_length(records), 3U);
        ASSERT_EQ(JINT(json_object_array_get_idx(records, 0), "seq"), 1);
        ASSERT_EQ(JINT(json_object_array_get_idx(records, 1), "seq"), 3);
        ASSERT_EQ(JINT(json_object_array_get_idx(records, 2), "seq"), 4);
        ASSERT_TRUE(tsmd_wait_log(&t, "passed over 1 damaged line", 1, 5 * 1000000ULL));
        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* A range, a result or a limit no record can have is refused by name: a negative toSeq or limit
 * was taken for 0, a toSeq before fromSeq, an unknown result (a typo) or a short error name
 * (records have the full one) each answered no record, as if there were none. */
TEST(query_refuses_a_range_result_or_limit_no_record_can_have) {
        static const struct {
                const char *params, *parameter;
        } bad[] = {
                { "{\"fromSeq\":-1}", "fromSeq" },
                { "{\"toSeq\":-1}", "toSeq" },
                { "{\"toSeq\":0}", "toSeq" },
                { "{\"fromSeq\":5,\"toSeq\":4}", "toSeq" },
                { "{\"limit\":0}", "limit" },
                { "{\"limit\":-3}", "limit" },
                { "{\"result\":\"Denied\"}", "result" },
                { "{\"result\":\"io.tsmd.Guest.Deniedd\"}", "result" },
                { "{\"result\":\"okay\"}", "result" },
        };
        static const char *const good[] = {
                "{\"fromSeq\":0}", "{\"fromSeq\":1,\"toSeq\":1}", "{\"limit\":1}", "{\"limit\":20000}",
                "{\"result\":\"ok\"}", "{\"result\":\"EIO\"}", "{\"result\":\"io.tsmd.Disconnected\"}",
                "{\"result\":\"io.tsmd.Guest.Denied\"}", "{\"result\":\"io.tsmd.WorkerCrashed\"}",
        };
        json_object *records;
        VarlinkClient *a;
        int64_t after;
        Tsmd t;

        start(&t, CONF_ZERO(), "info");
        a = tsmd_connect(&t);
        (void) guest_open_context(a);
        after = tsmd_audit_last_seq(&t);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                CALL_ERROR(a, "io.tsmd.Admin.QueryAudit", bad[i].params, "org.varlink.service.InvalidParameter",
                           strf("{\"parameter\":\"%s\"}", bad[i].parameter));
        tsmd_expect_audit(&t, after, "io.tsmd.Admin.QueryAudit", "org.varlink.service.InvalidParameter",
                          ELEMENTSOF(bad));
        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                (void) CALL_OK(a, "io.tsmd.Admin.QueryAudit", good[i]);

        records = tsmd_audit_query(&t, "{\"fromSeq\":1,\"toSeq\":1}");
        ASSERT_EQ(json_object_array_length(records), 1U);
        json_object_put(records);
        varlink_client_free(a);
        tsmd_teardown(&t);
}

static uint64_t realtime_usec(void) {
        struct timespec ts;

        ASSERT_OK(clock_gettime(CLOCK_REALTIME, &ts));
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

/* Runs a QueryAudit expecting records of event only (any, if NULL), at least min of them;
 * returns how many. */
static size_t query_expect(Tsmd *t, const char *params, const char *event, size_t min) {
        json_object *records = tsmd_audit_query(t, params);
        size_t n = json_object_array_length(records);

        if (n < min)
                TEST_FAIL("QueryAudit %s: %zu records, expected at least %zu", params, n, min);
        for (size_t i = 0; event && i < n; i++)
                ASSERT_STREQ(JSTR(json_object_array_get_idx(records, i), "event"), event);
        json_object_put(records);
        return n;
}

/* QueryAudit by event (one tsmd writes, or a method's full name) and by a time window; an event
 * or a scope no record can have, a negative time or an until before since is refused by name,
 * where each answered no record. */
TEST(query_by_event_and_time) {
        uint64_t before, after;
        VarlinkClient *a;
        int64_t seq;
        Tsmd t;

        start(&t, CONF_ZERO(), "info");
        a = tsmd_connect(&t);
        before = realtime_usec();
        (void) guest_open_context(a);
        after = realtime_usec();
        (void) CALL_OK(a, "io.tsmd.Admin.ListDevices", NULL);
        /* Found by event "reload" (test-policy), by no other. */
        (void) CALL_OK(a, "io.tsmd.Service.Reload", NULL);
        seq = tsmd_audit_last_seq(&t);

        ASSERT_EQ(query_expect(&t, "{\"event\":\"open-context\"}", "open-context", 1), 1u);
        (void) query_expect(&t, "{\"event\":\"io.tsmd.Admin.ListDevices\"}", "io.tsmd.Admin.ListDevices", 1);
        ASSERT_EQ(query_expect(&t, "{\"event\":\"guest-request\"}", NULL, 0), 0u);

        /* The open-context's record is in [before, after], the window since inclusive, until
         * exclusive; the ListDevices's is after it. */
        ASSERT_EQ(query_expect(&t, strf("{\"event\":\"open-context\",\"sinceUsec\":%" PRIu64
                                        ",\"untilUsec\":%" PRIu64 "}", before, after + 1), "open-context", 1), 1u);
        ASSERT_EQ(query_expect(&t, strf("{\"sinceUsec\":%" PRIu64 ",\"untilUsec\":%" PRIu64 "}", before, after + 1),
                               "open-context", 1), 1u);
        ASSERT_EQ(query_expect(&t, strf("{\"event\":\"open-context\",\"sinceUsec\":%" PRIu64 "}", after + 1),
                               NULL, 0), 0u);
        ASSERT_EQ(query_expect(&t, strf("{\"event\":\"io.tsmd.Admin.ListDevices\",\"sinceUsec\":%" PRIu64 "}",
                                        after + 1), "io.tsmd.Admin.ListDevices", 1), 1u);
        ASSERT_EQ(query_expect(&t, strf("{\"event\":\"open-context\",\"untilUsec\":%" PRIu64 "}", before), NULL, 0),
                  0u);
        ASSERT_EQ(query_expect(&t, strf("{\"sinceUsec\":%" PRIu64 ",\"untilUsec\":%" PRIu64 "}", before, before),
                               NULL, 0), 0u);

        CALL_ERROR(a, "io.tsmd.Admin.QueryAudit", "{\"event\":\"bogus\"}", "org.varlink.service.InvalidParameter",
                   "{\"parameter\":\"event\"}");
        CALL_ERROR(a, "io.tsmd.Admin.QueryAudit", "{\"event\":\"io.tsmd.Admin.Bogus\"}",
                   "org.varlink.service.InvalidParameter", "{\"parameter\":\"event\"}");
        CALL_ERROR(a, "io.tsmd.Admin.QueryAudit", "{\"sinceUsec\":-1}", "org.varlink.service.InvalidParameter",
                   "{\"parameter\":\"sinceUsec\"}");
        CALL_ERROR(a, "io.tsmd.Admin.QueryAudit", "{\"untilUsec\":-5}", "org.varlink.service.InvalidParameter",
                   "{\"parameter\":\"untilUsec\"}");
        CALL_ERROR(a, "io.tsmd.Admin.QueryAudit", "{\"sinceUsec\":2,\"untilUsec\":1}",
                   "org.varlink.service.InvalidParameter", "{\"parameter\":\"untilUsec\"}");
        CALL_ERROR(a, "io.tsmd.Admin.QueryAudit", "{\"sinceUsec\":\"yesterday\"}",
                   "org.varlink.service.InvalidParameter", "{\"parameter\":\"sinceUsec\"}");
        CALL_ERROR(a, "io.tsmd.Admin.QueryAudit", "{\"scope\":\"bogus\"}", "org.varlink.service.InvalidParameter",
                   "{\"parameter\":\"scope\"}");
        tsmd_expect_audit(&t, seq, "io.tsmd.Admin.QueryAudit", "org.varlink.service.InvalidParameter", 7);
        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* The calls GetCounters counts under key in dimension "uid" (0: no such key). */
static int64_t uid_counter_calls(VarlinkClient *admin, const char *key) {
        json_object *reply = CALL_OK(admin, "io.tsmd.Admin.GetCounters", NULL);
        json_object *counters = json_get_array(reply, "counters");

        ASSERT_NOT_NULL(counters);
        for (size_t i = 0; i < json_object_array_length(counters); i++) {
                json_object *k = json_object_array_get_idx(counters, i);

                if (streq(JSTR(k, "dimension"), "uid") && streq(JSTR(k, "key"), key))
                        return JINT(k, "calls");
        }
        return 0;
}

/* SECURITY: anyone may call on the guest socket (0666) and be refused on record, from as many
 * uids as user namespaces give: the metrics keep a key of its own for the uids the policy names
 * (by Users=, or a connection of it by Groups=), and count everyone else under "other", so that
 * callers from a thousand uids cannot push the VMMs' uids there for good. */
TEST(metrics_keep_keys_for_the_uids_the_policy_names) {
        static const TsmdFile file = { "policy.conf", "[Client:tests]\nUsers=root 65534\nDevices=*\n"
                                                      "[Client:grouped]\nGroups=100009\nDevices=*\n" };
        static const gid_t group[] = { 100009 };
        VarlinkClient *c, *admin;
        Tsmd t;

        if (!tsmd_can_switch_uid())
                SKIP("needs root to call as other uids");
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO(""), .files = &file, .n_files = 1 });
        for (uid_t uid = 65500; uid < 65504; uid++) {
                c = tsmd_connect_as(&t, uid, uid);
                CALL_ERROR(c, "io.tsmd.Service.Reload", NULL, VARLINK_ERROR_PERMISSION_DENIED, NULL);
                varlink_client_free(c);
        }
        c = tsmd_connect_as(&t, NOBODY, NOBODY);
        CALL_ERROR(c, "io.tsmd.Service.Reload", NULL, VARLINK_ERROR_PERMISSION_DENIED, NULL);
        varlink_client_free(c);
        c = tsmd_connect_to_as_groups(&t, t.guest_socket, 65499, 65499, group, ELEMENTSOF(group));
        CALL_ERROR(c, "io.tsmd.Service.Reload", NULL, VARLINK_ERROR_PERMISSION_DENIED, NULL);
        CALL_ERROR(c, "io.tsmd.Service.Reload", NULL, VARLINK_ERROR_PERMISSION_DENIED, NULL);
        varlink_client_free(c);

        admin = tsmd_connect(&t);
        ASSERT_EQ(uid_counter_calls(admin, "other"), 4);
        for (unsigned uid = 65500; uid < 65504; uid++)
                ASSERT_EQ(uid_counter_calls(admin, strf("%u", uid)), 0);
        ASSERT_EQ(uid_counter_calls(admin, "65534"), 1);
        ASSERT_EQ(uid_counter_calls(admin, "65499"), 2);
        varlink_client_free(admin);
        tsmd_teardown(&t);
}

/* A FollowAudit call refused at MaxFollowers=, by name: its only answer. */
static void expect_follow_refused(VarlinkClient *c, unsigned max) {
        AsyncCall f = {};

        tsmd_call_async(c, "io.tsmd.Admin.FollowAudit", NULL, VARLINK_CALL_MORE, &f);
        ASSERT_TRUE(tsmd_async_wait(c, &f, 1, TSMD_WAIT_USEC));
        if (!f.done)
                TEST_FAIL("a FollowAudit call beyond MaxFollowers=%u was let in", max);
        ASSERT_STREQ(f.errors[0], "io.tsmd.Admin.TooManyFollowers");
        if (!json_matches(f.params[0], strf("{\"maxFollowers\":%u}", max)))
                TEST_FAIL("refused with %s", f.params[0] ? json_object_to_json_string(f.params[0]) : "nothing");
        async_call_done(&f);
}

/* MaxFollowers= FollowAudit calls at once; the one beyond is refused by name. A follower's
 * hang-up frees its place; a reload lowering the limit ends none already following. */
TEST(follower_number_is_bounded) {
        AsyncCall fa = {}, fb = {}, fc = {};
        VarlinkClient *a, *b, *c;
        uint64_t deadline;
        size_t n;
        Tsmd t;

        start(&t, CONF_ZERO("[Audit]\nMaxFollowers=2\n"), "info");
        a = tsmd_connect(&t);
        b = tsmd_connect(&t);
        c = tsmd_connect(&t);
        tsmd_call_async(a, "io.tsmd.Admin.FollowAudit", NULL, VARLINK_CALL_MORE, &fa);
        ASSERT_TRUE(tsmd_async_wait(a, &fa, 1, TSMD_WAIT_USEC));
        tsmd_call_async(b, "io.tsmd.Admin.FollowAudit", NULL, VARLINK_CALL_MORE, &fb);
        ASSERT_TRUE(tsmd_async_wait(b, &fb, 1, TSMD_WAIT_USEC));
        ASSERT_NULL(fa.errors[0]);
        ASSERT_NULL(fb.errors[0]);
        expect_follow_refused(c, 2);

        /* a's place is c's once tsmd saw a hang up. */
        varlink_client_free(a);
        async_call_done(&fa);
        deadline = now_usec() + TSMD_WAIT_USEC;
        for (;;) {
                tsmd_call_async(c, "io.tsmd.Admin.FollowAudit", NULL, VARLINK_CALL_MORE, &fc);
                ASSERT_TRUE(tsmd_async_wait(c, &fc, 1, TSMD_WAIT_USEC));
                if (!fc.errors[0])
                        break;
                ASSERT_STREQ(fc.errors[0], "io.tsmd.Admin.TooManyFollowers");
                async_call_done(&fc);
                ASSERT_TRUE(now_usec() < deadline);
                sleep_usec(20 * USEC_PER_MSEC);
        }
        ASSERT_FALSE(fc.done);

        /* Lowered below the followers there are: they follow on (the reload's record reaches
         * both), and a newcomer is refused under the new limit. */
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO("[Audit]\nMaxFollowers=1\n")));
        a = tsmd_connect(&t);
        expect_follow_refused(a, 1);
        n = fb.n;
        ASSERT_TRUE(tsmd_async_wait(b, &fb, n + 1, TSMD_WAIT_USEC));
        ASSERT_FALSE(fb.done);
        ASSERT_NULL(fb.errors[n]);
        n = fc.n;
        ASSERT_TRUE(tsmd_async_wait(c, &fc, n + 1, TSMD_WAIT_USEC));
        ASSERT_FALSE(fc.done);
        ASSERT_NULL(fc.errors[n]);

        async_call_done(&fb);
        async_call_done(&fc);
        varlink_client_free(a);
        varlink_client_free(b);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* MaxQueries= queries at once; the one beyond is refused by name, not queued. */
TEST(query_number_is_bounded) {
        AsyncCall query = {};
        VarlinkClient *a, *b;
        uint64_t deadline;
        Tsmd t;

        start(&t, CONF_ZERO("[Audit]\nFiles=3\nMaxFileSize=1073741824\nMaxQueries=1\n"), "info");
        restart_with_large_log(&t, LARGE_LOG_RECORDS);
        a = tsmd_connect(&t);
        b = tsmd_connect(&t);

        (void) query_under_way(&t, a, &query);
        CALL_ERROR(b, "io.tsmd.Admin.QueryAudit", "{\"uid\":12345}", "io.tsmd.Admin.TooManyQueries",
                   "{\"maxQueries\":1}");

        /* The slot is free again once the first one's caller has gone and its thread stopped. */
        varlink_client_free(a);
        async_call_done(&query);
        deadline = now_usec() + TSMD_WAIT_USEC;
        while (tsmd_call(b, "io.tsmd.Admin.QueryAudit", "{\"limit\":1}", NULL)) {
                ASSERT_TRUE(now_usec() < deadline);
                sleep_usec(10 * USEC_PER_MSEC);
        }
        varlink_client_free(b);
        tsmd_teardown(&t);
}

/* A listing too large for its caller's MaxMessageSize= is recorded as the ReplyTooLarge the
 * caller got, once: it was recorded "ok", the answer never sent, beside a refusal record. */
TEST(listing_too_large_for_its_caller_is_recorded_as_such) {
        VarlinkClient *a, *others[64]; /* ~90 bytes each in the listing */
        uint64_t deadline;
        int64_t after;
        Tsmd t;

        start(&t, CONF_ZERO("[Varlink]\nMaxMessageSize=4096\n"), "info");
        a = tsmd_connect(&t);
        for (size_t i = 0; i < ELEMENTSOF(others); i++) /* each a client ListClients names */
                others[i] = tsmd_connect_guest(&t);
        for (size_t i = 0; i < ELEMENTSOF(others); i++)
                CALL_OK(others[i], "io.tsmd.Service.Ping", NULL);
        after = tsmd_audit_last_seq(&t);
        CALL_ERROR(a, "io.tsmd.Admin.ListClients", NULL, VARLINK_ERROR_REPLY_TOO_LARGE, NULL);
        deadline = now_usec() + TSMD_WAIT_USEC;
        while (tsmd_audit_count(&t, after, "io.tsmd.Admin.ListClients", VARLINK_ERROR_REPLY_TOO_LARGE) == 0 &&
               now_usec() < deadline)
                sleep_usec(5 * USEC_PER_MSEC);
        ASSERT_EQ(tsmd_audit_count(&t, after, "io.tsmd.Admin.ListClients", VARLINK_ERROR_REPLY_TOO_LARGE), 1U);
        /* Answered and recorded as the call's own: no refusal record beside it. */
        CALL_OK(a, "io.tsmd.Admin.ListBackends", NULL);
        ASSERT_EQ(tsmd_audit_count(&t, after, "connection", VARLINK_ERROR_REPLY_TOO_LARGE), 0U);
        for (size_t i = 0; i < ELEMENTSOF(others); i++)
                varlink_client_free(others[i]);
        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* A query's answer holds the records that fit its caller's MaxMessageSize= (the first whatever
 * its size), and says where to go on: paging through nextSeq gets them all, each once. It was
 * answered ReplyTooLarge, after the worker had held every record up to MaxQueryRecords=. */
TEST(query_answers_what_fits_max_message_size_and_where_to_go_on) {
        _cleanup_(json_object_putp) json_object *all = json_object_new_array();
        _cleanup_free_ char *seqs = NULL, *want = NULL;
        int64_t from = 1, pages = 0;
        VarlinkClient *a;
        Tsmd t;

        ASSERT_NOT_NULL(all);
        start(&t, CONF_ZERO("[Varlink]\nMaxMessageSize=4096\n"), "info");
        restart_with_large_log(&t, 60); /* ~300 bytes each: 18 KB */
        a = tsmd_connect(&t);
        for (;;) {
                json_object *reply = CALL_OK(a, "io.tsmd.Admin.QueryAudit",
                                             strf("{\"uid\":107,\"fromSeq\":%" PRIi64 "}", from));
                json_object *records = json_object_object_get(reply, "records"), *next;
                size_t n = json_object_array_length(records);

                ASSERT_TRUE(n >= 1);
                ASSERT_TRUE(strlen(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN)) < 4096 - 20);
                for (size_t i = 0; i < n; i++)
                        ASSERT_EQ(json_object_array_add(all, json_object_get(json_object_array_get_idx(records, i))), 0);
                pages++;
                next = json_object_object_get(reply, "nextSeq");
                if (!next)
                        break;
                ASSERT_EQ(json_object_get_int64(next), JINT(json_object_array_get_idx(records, n - 1), "seq") + 1);
                from = json_object_get_int64(next);
        }
        ASSERT_TRUE(pages >= 5);
        seqs = seqs_of(all);
        want = strdup("1");
        for (unsigned seq = 2; seq <= 60; seq++) {
                char *more = NULL;

                ASSERT_TRUE(asprintf(&more, "%s %u", want, seq) > 0);
                free(want);
                want = more;
        }
        ASSERT_STREQ(seqs, want);
        /* tsmctl pages on the same way: all sixty, nothing said. */
        {
                _cleanup_free_ char *err = NULL, *tsmctl_seqs = NULL;
                _cleanup_(json_object_putp) json_object *o = tsmctl_audit_json(&t, "--uid=107", &err);

                tsmctl_seqs = seqs_of(json_object_object_get(o, "records"));
                ASSERT_STREQ(tsmctl_seqs, want);
                ASSERT_STREQ(err, "");
        }
        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* SECURITY: a query runs in a thread and may outlast a reload; one whose caller the reload no
 * longer names an administrator is answered PermissionDenied (audited), not with the records. */
TEST(query_ended_after_the_admin_right_went_is_refused) {
        static const char admin_policy[] = "[Admin]\nUsers=65534\n[Client:tests]\nUsers=root\nDevices=*\n";
        const TsmdFile file = { "policy.conf", admin_policy };
        AsyncCall query = {};
        VarlinkClient *a;
        unsigned idle_threads;
        uint64_t deadline;
        int64_t after;
        Tsmd t;

        if (!tsmd_can_switch_uid())
                SKIP("clients of other uids need root");
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO(), .files = &file, .n_files = 1, .log_level = "info" });
        restart_with_large_log(&t, 2 * LARGE_LOG_RECORDS);
        /* The socket serving io.tsmd.Admin is for root and tsmd's group; the policy decides. */
        ASSERT_OK(chmod(t.socket, 0666));
        a = tsmd_connect_to_as(&t, t.socket, NOBODY, NOBODY);
        CALL_OK(a, "io.tsmd.Admin.ListBackends", NULL);
        after = tsmd_audit_last_seq(&t);

        idle_threads = query_under_way(&t, a, &query);
        tsmd_write_file(&t, "policy.conf", "[Client:tests]\nUsers=root\nDevices=*\n");
        ASSERT_TRUE(tsmd_reload(&t, CONF_ZERO()));
        /* Otherwise this run shows nothing: the query must end after the reload. */
        ASSERT_EQ(worker_threads(&t), idle_threads + 1);

        ASSERT_TRUE(tsmd_async_wait(a, &query, 1, 60 * USEC_PER_SEC));
        ASSERT_STREQ(query.errors[0], VARLINK_ERROR_PERMISSION_DENIED);
        ASSERT_NULL(query.params[0] ? json_object_object_get(query.params[0], "records") : NULL);
        /* On record, as the refusal of a call is (written when the call ends). */
        deadline = now_usec() + TSMD_WAIT_USEC;
        while (tsmd_audit_count_where(&t, after, "\"uid\":65534", "io.tsmd.Admin.QueryAudit",
                                      VARLINK_ERROR_PERMISSION_DENIED) == 0 &&
               now_usec() < deadline)
                sleep_usec(5 * USEC_PER_MSEC);
        ASSERT_EQ(tsmd_audit_count_where(&t, after, "\"uid\":65534", "io.tsmd.Admin.QueryAudit",
                                         VARLINK_ERROR_PERMISSION_DENIED),
                  1U);
        async_call_done(&query);
        varlink_client_free(a);
        tsmd_teardown(&t);
}

/* A FIFO, a symlink and a directory named as rotated files are left out of a query, which
 * answers from the real files (opening the FIFO blocked the worker until the monitor killed it;
 * the others failed every query). */
TEST(query_skips_what_is_not_a_regular_file) {
        char path[600];
        json_object *records;
        VarlinkClient *c;
        Tsmd t;

        start(&t, CONF_ZERO(), "info");
        c = tsmd_connect(&t);
        CALL_OK(c, "io.tsmd.Service.Ping", NULL);
        (void) guest_open_context(c);

        snprintf(path, sizeof(path), "%s/audit/audit.log.2", t.dir);
        ASSERT_TRUE(mkfifo(path, 0666) >= 0);
        records = tsmd_audit_query(&t, NULL);
        ASSERT_GE(json_object_array_length(records), 1);
        json_object_put(records);

        snprintf(path, sizeof(path), "%s/audit/audit.log.3", t.dir);
        ASSERT_TRUE(symlink("audit.log", path) >= 0);
        snprintf(path, sizeof(path), "%s/audit/audit.log.4", t.dir);
        ASSERT_TRUE(mkdir(path, 0755) >= 0);

        records = tsmd_audit_query(&t, NULL);
        ASSERT_GE(json_object_array_length(records), 1);
        json_object_put(records);
        ASSERT_TRUE(tsmd_log_contains(&t, "audit.log.2' is not a regular file"));
        ASSERT_TRUE(tsmd_log_contains(&t, "audit.log.3' is not a regular file"));
        ASSERT_TRUE(tsmd_log_contains(&t, "audit.log.4' is not a regular file"));
        CALL_OK(c, "io.tsmd.Service.Ping", NULL);
        varlink_client_free(c);
        tsmd_teardown(&t);
}


/* ---- a worker killed between the monitor's answer and its record ------------------------ */

/* The device acted (a Bind), the monitor answered, and the worker died before the record of the
 * Bind reached the file (record-crash-preload.c kills it as it writes it, as an OOM kill
 * could): the next worker records what the device did, from the answer the monitor kept. */
TEST(worker_killed_before_its_record_leaves_a_late_one) {
        const char *env[] = {
                "LD_PRELOAD=" RECORD_CRASH_PRELOAD,
                "TSMD_TEST_CRASH_AT_RECORD=\"event\":\"bind\"",
                tsmd_preload_asan_env(),
                NULL,
        };
        const TsmdFile file = { "policy.conf", "[Client:tests]\nUsers=root\nDevices=*\nScopes=info state-change\n" };
        json_object *reply = NULL;
        const char *error = NULL;
        VarlinkClient *c;
        AuditLines l;
        size_t at;
        int64_t ctx;
        Tsmd t;

        if (tsmd_under_valgrind())
                SKIP("valgrind and a preloaded library");
        if (getuid() != 0)
                SKIP("the policy names root");
        tsmd_start(&t, &(TsmdOptions) { .config = CONF_ZERO(), .files = &file, .n_files = 1, .env = env });
        c = tsmd_connect(&t);
        ctx = guest_open_context(c);
        CALL_OK(c, G "AttachDevice", guest_attach_params(ctx, 1, DEV1));
        ASSERT_ERRNO(varlink_client_call(c, G "Bind", json_tokener_parse(guest_vdev_params(ctx, 1)), &reply, &error),
                     ECONNRESET);
        varlink_client_free(c);

        at = audit_wait_event(&t, 0, "bind-late", &l);
        ASSERT_EQ(line_of(&l, 0, "bind"), 0u); /* the Bind's own never made it */
        ASSERT_TRUE(line_of(&l, 0, "worker-restart") > 0 && line_of(&l, 0, "worker-restart") < at);
        expect_str(l.rec[at - 1], "result", "ok", at);
        expect_str(l.rec[at - 1], "pci", DEV1, at);
        expect_int(l.rec[at - 1], "vdeviceId", 1, at);
        expect_int(l.rec[at - 1], "uid", (int64_t) getuid(), at);
        audit_lines_done(&l);
        tsmd_teardown(&t);
}

TEST_MAIN();
