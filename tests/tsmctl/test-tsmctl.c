/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tsmctl against a live tsmd on the emulated platform: every verb's --json output parses and
 * matches the reply type the IDL declares for the method behind it (checked with the IDL
 * validator itself), every table has its header and one row per item, and exit codes mean
 * what the README says. Admin verbs are refused for a non-admin uid, and that is audited.
 */

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-login.h>

#include "config.h"
#include "harness.h"
#include "json-util.h"
#include "guest-calls.h"
#include "tsmd-fixture.h"
#include "varlink-idl.h"
#include "varlink-service.h"

static const char *tsmctl_json(Tsmd *t, const char *verb, char **ret_out) {
        const char *argv[] = { TSMCTL_PATH, "--json", "--socket", t->socket, verb, NULL };
        int status = run_capture(argv, ret_out, NULL, 10 * 1000000ULL);

        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                TEST_FAIL("tsmctl --json %s: %s", verb, *ret_out);
        return *ret_out;
}

/* The reply of method, as tsmctl printed it, must be valid per the IDL. */
static void assert_matches_idl(const char *interface, const char *method, const char *text) {
        _cleanup_(varlink_interface_freep) VarlinkInterface *i = NULL;
        _cleanup_(json_object_putp) json_object *o = json_tokener_parse(text);
        _cleanup_free_ char *bad = NULL;

        ASSERT_NOT_NULL(o);
        ASSERT_OK(varlink_interface_parse(varlink_builtin_idl_find(interface), &i, NULL, NULL));
        if (varlink_method_validate_output(varlink_interface_find_method(i, method), o, &bad) < 0)
                TEST_FAIL("%s.%s output does not match the IDL at '%s': %s", interface, method, bad, text);
}

/* The sum of the values of the lines of text that start with series (a metric's name and "{"). */
static long long metric_sum(const char *text, const char *series) {
        long long sum = 0;
        unsigned n = 0;

        for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
                const char *end;

                if (strncmp(p, series, strlen(series)) != 0)
                        continue;
                end = strchr(p, '\n');
                ASSERT_NOT_NULL(end);
                while (end > p && end[-1] != ' ')
                        end--;
                sum += strtoll(end, NULL, 10);
                n++;
        }
        ASSERT_TRUE(n > 0);
        return sum;
}

static unsigned count_lines(const char *s) {
        unsigned n = 0;

        for (; s && *s; s++)
                n += *s == '\n';
        return n;
}

static void guest_activity(Tsmd *t) {
        const char *argv[] = { VMM_EXAMPLE_PATH, NULL, "0000:01:00.0", NULL };
        _cleanup_free_ char *out = NULL, *sock = strdup(t->guest_socket), *arg = NULL;
        int status;

        ASSERT_TRUE(asprintf(&arg, "--socket=%s", sock) > 0);
        argv[1] = arg;
        status = run_capture(argv, &out, NULL, 10 * 1000000ULL);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                TEST_FAIL("vmm-example failed: %s", out);
        /* The guest accepted the device after the bind: its START, which the TSM completed. */
        if (!strstr(out, "accepted: TDI state run\n"))
                TEST_FAIL("vmm-example did not start the device: %s", out);
}

TEST(json_output_matches_idl) {
        static const struct {
                const char *verb, *interface, *method;
        } verbs[] = {
                { "status", "io.tsmd.Service", "GetStatus" },
                { "backends", "io.tsmd.Admin", "ListBackends" },
                { "devices", "io.tsmd.Admin", "ListDevices" },
                { "clients", "io.tsmd.Admin", "ListClients" },
                { "audit", "io.tsmd.Admin", "QueryAudit" },
                { "metrics", "io.tsmd.Admin", "GetCounters" },
                { "info", "org.varlink.service", "GetInfo" },
        };
        Tsmd t = {};

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        guest_activity(&t);
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                _cleanup_free_ char *out = NULL;

                assert_matches_idl(verbs[i].interface, verbs[i].method, tsmctl_json(&t, verbs[i].verb, &out));
        }
        tsmd_teardown(&t);
}

/* text parsed as JSON: exactly one document, nothing but white space after it. */
static json_object *parse_one_document(const char *text) {
        json_tokener *tok = json_tokener_new();
        json_object *o;
        size_t end;

        ASSERT_NOT_NULL(tok);
        o = json_tokener_parse_ex(tok, text, (int) strlen(text));
        if (!o || json_tokener_get_error(tok) != json_tokener_success)
                TEST_FAIL("not JSON: %s", text);
        end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);
        if (text[end + strspn(text + end, " \t\n")])
                TEST_FAIL("more than one JSON document: %s", text);
        return o;
}

/* Each entry of introspect's list: {"interface": name, "description": its IDL}. */
static void assert_introspected(json_object *entry, const char *name) {
        _cleanup_free_ char *declares = NULL;
        const char *idl = json_get_string(entry, "description");

        ASSERT_STREQ(json_get_string(entry, "interface"), name);
        ASSERT_NOT_NULL(idl);
        ASSERT_TRUE(asprintf(&declares, "interface %s\n", name) > 0);
        if (!strstr(idl, declares))
                TEST_FAIL("%s: description does not declare it: %s", name, idl);
}

/* introspect --json, of every interface or of those named, is one JSON document: the
 * descriptions listed under "interfaces", in order, as the list verbs' output is shaped. */
TEST(introspect_json_is_one_document) {
        const char *named[] = { TSMCTL_PATH, "--json", "--socket", NULL, "introspect", "org.varlink.service",
                                "io.tsmd.Guest", NULL };
        _cleanup_free_ char *info_out = NULL, *all_out = NULL, *named_out = NULL;
        _cleanup_(json_object_putp) json_object *info = NULL, *all = NULL, *two = NULL;
        json_object *names, *list;
        Tsmd t = {};
        int status;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        info = parse_one_document(tsmctl_json(&t, "info", &info_out));
        ASSERT_NOT_NULL(names = json_get_array(info, "interfaces"));
        ASSERT_TRUE(json_object_array_length(names) >= 2);

        all = parse_one_document(tsmctl_json(&t, "introspect", &all_out));
        ASSERT_NOT_NULL(list = json_get_array(all, "interfaces"));
        ASSERT_EQ(json_object_array_length(list), json_object_array_length(names));
        for (size_t i = 0; i < json_object_array_length(names); i++)
                assert_introspected(json_object_array_get_idx(list, i),
                                    json_object_get_string(json_object_array_get_idx(names, i)));

        named[3] = t.socket;
        status = run_capture(named, &named_out, NULL, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        two = parse_one_document(named_out);
        ASSERT_NOT_NULL(list = json_get_array(two, "interfaces"));
        ASSERT_EQ(json_object_array_length(list), 2u);
        assert_introspected(json_object_array_get_idx(list, 0), "org.varlink.service");
        assert_introspected(json_object_array_get_idx(list, 1), "io.tsmd.Guest");
        tsmd_teardown(&t);
}

TEST(tables) {
        _cleanup_free_ char *out = NULL;
        const char *argv[] = { TSMCTL_PATH, "--socket", NULL, NULL, NULL, NULL };
        Tsmd t = {};
        int status;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\nEmulatedDevices=0000:01:00.0,0000:02:00.0,0000:03:00.0\n");
        guest_activity(&t);
        argv[2] = t.socket;

        argv[3] = "devices";
        status = run_capture(argv, &out, NULL, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_TRUE(strneq(out, "DEVICE ", 7));
        ASSERT_EQ(count_lines(out), 1 + 3);
        ASSERT_NOT_NULL(strstr(out, "0000:03:00.0   -              emu0   emulated       config_unlocked  -\n"));
        out = mfree(out);

        argv[3] = "backends";
        status = run_capture(argv, &out, NULL, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_NOT_NULL(strstr(out, "Platform: emulated\n"));
        ASSERT_NOT_NULL(strstr(out, "emu0     emulated       -                emulated  3\n"));
        out = mfree(out);

        /* vmm-example made open-context, attach, 2 requests, bind, the guest's accept (report,
         * START), state, request, unbind: the first 7 records. */
        argv[3] = "audit";
        argv[4] = "--to=7";
        status = run_capture(argv, &out, NULL, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_TRUE(strneq(out, "SEQ ", 4));
        ASSERT_EQ(count_lines(out), 1 + 7);
        ASSERT_NOT_NULL(strstr(out, " open-context "));
        ASSERT_NOT_NULL(strstr(out, " guest-request "));
        out = mfree(out);

        argv[3] = "reload";
        argv[4] = NULL;
        status = run_capture(argv, &out, NULL, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_STREQ(out, "Configuration and policy reloaded.\n");
        out = mfree(out);

        argv[3] = "metrics";
        status = run_capture(argv, &out, NULL, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        /* One metric per dimension, one label each: a sum over any counts each call once. */
        ASSERT_NULL(strstr(out, "tsmd_calls_total"));
        ASSERT_NULL(strstr(out, "tsmd_call_errors_total"));
        ASSERT_NOT_NULL(strstr(out, "# TYPE tsmd_calls_by_scope_total counter\n"));
        ASSERT_NOT_NULL(strstr(out, "tsmd_calls_by_scope_total{scope=\"info\"} 4\n"));
        ASSERT_NOT_NULL(strstr(out, "tsmd_call_latency_seconds_count{scope=\"info\"} 4\n"));
        ASSERT_NOT_NULL(strstr(out, "tsmd_calls_by_scope_total{scope=\"state-change\"} 1\n"));
        ASSERT_NOT_NULL(strstr(out, "# TYPE tsmd_calls_by_uid_total counter\n"));
        ASSERT_NOT_NULL(strstr(out, "# TYPE tsmd_calls_by_backend_total counter\n"));
        ASSERT_NOT_NULL(strstr(out, "# TYPE tsmd_calls_by_result_total counter\n"));
        ASSERT_NOT_NULL(strstr(out, "# TYPE tsmd_call_errors_by_result_total counter\n"));
        ASSERT_EQ(metric_sum(out, "tsmd_calls_by_uid_total{"), metric_sum(out, "tsmd_calls_by_result_total{"));
        ASSERT_EQ(metric_sum(out, "tsmd_calls_by_uid_total{"), metric_sum(out, "tsmd_calls_by_backend_total{"));
        ASSERT_EQ(metric_sum(out, "tsmd_call_errors_by_uid_total{"), metric_sum(out, "tsmd_call_errors_by_scope_total{"));
        tsmd_teardown(&t);
}

/* Echoes text as TAP comments: a line of its own on stdout would be one of TAP's. */
static void print_comment(const char *text) {
        for (const char *l = text; *l;) {
                size_t n = strcspn(l, "\n");

                printf("# %.*s\n", (int) n, l);
                l += n + (l[n] == '\n');
        }
}

/* tsmctl verb's output (it must succeed), echoed as TAP comments. */
static char *tsmctl_out(Tsmd *t, const char *verb) {
        const char *argv[] = { TSMCTL_PATH, "--socket", t->socket, verb, NULL };
        char *out = NULL;
        int status = run_capture(argv, &out, NULL, 10 * 1000000ULL);

        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                TEST_FAIL("tsmctl %s: %s", verb, out);
        print_comment(out);
        return out;
}

static char *tsmctl_status(Tsmd *t) {
        return tsmctl_out(t, "status");
}

static char *tsmctl_metrics(Tsmd *t) {
        return tsmctl_out(t, "metrics");
}

/* tsmctl status says plainly whether tsmd serves the files on disk, and when it does not, since
 * when and why; its --json matches the IDL either way. */
TEST(status_says_whether_the_files_on_disk_are_in_force) {
        static const char config[] = "[Platform]\nMode=emulated\n";
        _cleanup_free_ char *out = NULL, *json = NULL;
        Tsmd t = {};

        tsmd_start_config(&t, config);
        out = tsmctl_status(&t);
        ASSERT_NOT_NULL(strstr(out, "\nConfiguration: files on disk, loaded 20"));
        ASSERT_NOT_NULL(strstr(out, strf("\n               from %s, policy ", t.config_path)));
        ASSERT_NULL(strstr(out, "last good"));
        ASSERT_NOT_NULL(strstr(out, "\nUnsaved state: 0 contexts\n")); /* to an administrator */
        ASSERT_NOT_NULL(strstr(out, "\n  Fds closing: 0\n"));
        out = mfree(out);

        ASSERT_FALSE(tsmd_reload(&t, "[Varlink\n"));
        out = tsmctl_status(&t);
        ASSERT_NOT_NULL(strstr(out, "\nConfiguration: last good (files on disk do not load since 20"));
        ASSERT_NOT_NULL(strstr(out, strf(": %s:1: ", t.config_path)));
        ASSERT_NOT_NULL(strstr(out, ")\n               in force since 20"));
        assert_matches_idl("io.tsmd.Service", "GetStatus", tsmctl_json(&t, "status", &json));
        ASSERT_NOT_NULL(strstr(json, "\"source\": \"last_good\""));
        out = mfree(out);
        /* What monitoring alerts on. */
        json = mfree(json);
        assert_matches_idl("io.tsmd.Admin", "GetCounters", tsmctl_json(&t, "metrics", &json));
        out = tsmctl_metrics(&t);
        ASSERT_NOT_NULL(strstr(out, "\n# TYPE tsmd_configuration_stale gauge\ntsmd_configuration_stale 1\n"));
        out = mfree(out);

        ASSERT_TRUE(tsmd_reload(&t, config));
        out = tsmctl_status(&t);
        ASSERT_NOT_NULL(strstr(out, "\nConfiguration: files on disk, loaded 20"));
        out = mfree(out);
        out = tsmctl_metrics(&t);
        ASSERT_NOT_NULL(strstr(out, "\ntsmd_configuration_stale 0\n"));
        tsmd_teardown(&t);
}

/* tsmctl reload and status name the settings a reload did not apply, read only as tsmd starts
 * (before, tsmd's log alone did); the status says the audit log takes records. */
TEST(reload_and_status_name_the_settings_waiting_for_a_restart) {
        static const char config[] = "[Platform]\nMode=emulated\n";
        const char *argv[] = { TSMCTL_PATH, "--socket", NULL, "reload", NULL };
        _cleanup_free_ char *out = NULL, *json = NULL;
        Tsmd t = {};
        int status;

        tsmd_start_config(&t, config);
        argv[2] = t.socket;
        out = tsmctl_status(&t);
        ASSERT_NOT_NULL(strstr(out, "\n    Audit log: ok\n"));
        ASSERT_NULL(strstr(out, "restarts"));
        out = mfree(out);

        tsmd_write_config(&t, "[Platform]\nMode=emulated\n[Audit]\nSyncMode=per-record\nMaxQueries=8\n");
        status = run_capture(argv, &out, NULL, 10 * 1000000ULL);
        print_comment(out);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_STREQ(out, "Configuration and policy reloaded.\n"
                          "Not applied by this reload, taking effect when tsmd restarts: [Audit] SyncMode=, "
                          "[Audit] MaxQueries=\n");
        out = mfree(out);
        out = tsmctl_status(&t);
        ASSERT_NOT_NULL(strstr(out, "\n               not applied until tsmd restarts: [Audit] SyncMode=, "
                                    "[Audit] MaxQueries=\n"));
        assert_matches_idl("io.tsmd.Service", "GetStatus", tsmctl_json(&t, "status", &json));
        json = mfree(json);
        assert_matches_idl("io.tsmd.Service", "Reload", tsmctl_json(&t, "reload", &json));
        ASSERT_NOT_NULL(strstr(json, "\"Audit.SyncMode\""));
        tsmd_teardown(&t);
}

/* When the audit log takes no records (here its directory is a full file system), tsmctl status
 * says so first, with since when, why and what brings it back, and metrics has it as a gauge
 * (before, tsmd's log alone said it, rate limited). */
TEST(status_and_metrics_say_when_the_audit_log_takes_no_records) {
        static const char config[] = "[Platform]\nMode=emulated\n";
        _cleanup_free_ char *out = NULL, *json = NULL;
        struct passwd *worker = getpwnam(TSMD_WORKER_USER);
        const char *audit;
        Tsmd t = {};

        tsmd_private_mount_namespace("mounting a full file system over tsmd's audit directory");
        if (!worker)
                SKIP("no user " TSMD_WORKER_USER);
        tsmd_start_config(&t, config);
        audit = strf("%s/audit", t.dir);
        if (mount("tsmd-test-audit", audit, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=0750") < 0)
                TEST_FAIL("mounting a tmpfs on %s: %s", audit, strerror(errno));
        ASSERT_OK(chown(audit, worker->pw_uid, worker->pw_gid));
        {
                _cleanup_close_ int fd = open(strf("%s/filler", audit), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
                char block[4096] = {};

                ASSERT_OK(fd);
                while (write(fd, block, sizeof(block)) > 0)
                        ;
                ASSERT_EQ(errno, ENOSPC);
        }
        ASSERT_TRUE(tsmd_reload(&t, config));

        out = tsmctl_status(&t);
        ASSERT_TRUE(strneq(out, "    Audit log: FULL since 20", strlen("    Audit log: FULL since 20")));
        ASSERT_NOT_NULL(strstr(out, ": No space left on device (errno 28)\n"
                                    "               calls that need a record are refused (AuditFailed) until its "
                                    "file system has room\n      Version: "));
        out = mfree(out);
        assert_matches_idl("io.tsmd.Service", "GetStatus", tsmctl_json(&t, "status", &json));
        json = mfree(json);
        assert_matches_idl("io.tsmd.Admin", "GetCounters", tsmctl_json(&t, "metrics", &json));
        out = tsmctl_metrics(&t);
        ASSERT_NOT_NULL(strstr(out, "\n# TYPE tsmd_audit_writable gauge\ntsmd_audit_writable 0\n"));
        ASSERT_NOT_NULL(strstr(out, "\n# TYPE tsmd_audit_refused_calls_total counter\n"
                                    "tsmd_audit_refused_calls_total 0\n"));
        ASSERT_NOT_NULL(strstr(out, "\n# TYPE tsmd_audit_journal_dropped_total counter\n"
                                    "tsmd_audit_journal_dropped_total 0\n"));

        tsmd_stop(&t);
        (void) umount2(audit, MNT_DETACH);
        tsmd_teardown(&t);
}

/* A reload that fails quotes the file, which may not be UTF-8 (a Latin-1 name) or be longer than
 * a message quotes: the answers that quote it (ReloadFailed, GetStatus's error) are still valid
 * JSON strings, each bad byte a '?' (a drop-in's name too), a long value cut between two
 * characters, and tsmctl shows them. */
TEST(reload_quotes_a_file_that_is_not_utf8) {
        static const char config[] = "[Platform]\nMode=emulated\n";
        const char *argv[] = { TSMCTL_PATH, "--socket", NULL, "reload", NULL };
        _cleanup_free_ char *out = NULL, *err = NULL, *json = NULL;
        char long_name[1 + 50 * 2 + 1] = "x";
        Tsmd t = {};
        int status;

        tsmd_start_config(&t, config);
        argv[2] = t.socket;

        tsmd_write_file(&t, "policy.conf", "[Admin]\nUsers=jos\xe9\n");
        status = run_capture(argv, &out, &err, 10 * 1000000ULL);
        print_comment(err);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        ASSERT_NOT_NULL(strstr(err, "'jos?' is not a valid user name"));
        ASSERT_NULL(strstr(err, "protocol"));
        out = mfree(out);
        err = mfree(err);
        out = tsmctl_status(&t);
        ASSERT_NOT_NULL(strstr(out, "'jos?' is not a valid user name"));
        out = mfree(out);
        assert_matches_idl("io.tsmd.Service", "GetStatus", tsmctl_json(&t, "status", &json));
        json = mfree(json);

        /* 'x' and 50 "é": the message quotes at most 80 bytes, which would end inside one. */
        for (size_t i = 0; i < 50; i++)
                strcat(long_name, "\xc3\xa9");
        tsmd_write_file(&t, "policy.conf", strf("[Admin]\nUsers=%s\n", long_name));
        status = run_capture(argv, &out, &err, 10 * 1000000ULL);
        print_comment(err);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        ASSERT_NOT_NULL(strstr(err, strf("'%.79s' is not a valid user name", long_name))); /* 'x' and 39 "é" */
        ASSERT_NULL(strstr(err, "protocol"));
        out = mfree(out);
        err = mfree(err);
        out = tsmctl_status(&t);
        ASSERT_NOT_NULL(strstr(out, strf("'%.79s' is not a valid user name", long_name)));
        out = mfree(out);
        json = mfree(json);

        /* A drop-in whose name is not UTF-8. */
        tsmd_write_file(&t, "policy.conf", "[Client:tests]\nUsers=root 65534\nDevices=*\n");
        ASSERT_OK(mkdir(strf("%s/policy.d", t.dir), 0755));
        write_file(strf("%s/policy.d/jos\xe9.conf", t.dir), "[Bogus]\n");
        status = run_capture(argv, &out, &err, 10 * 1000000ULL);
        print_comment(err);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        ASSERT_NOT_NULL(strstr(err, strf("%s/policy.d/jos?.conf:1: ", t.dir)));
        out = mfree(out);
        out = tsmctl_status(&t);
        ASSERT_NOT_NULL(strstr(out, strf("%s/policy.d/jos?.conf:1: ", t.dir)));
        assert_matches_idl("io.tsmd.Service", "GetStatus", tsmctl_json(&t, "status", &json));
        tsmd_teardown(&t);
}

/* tsmd.conf may name a policy file whose name is not UTF-8: GetStatus shows its bad bytes as
 * '?', and tsmctl status works. */
TEST(status_shows_a_path_that_is_not_utf8) {
        _cleanup_free_ char *out = NULL, *json = NULL;
        Tsmd t = {};

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        tsmd_write_file(&t, "policy-jos\xe9.conf", "[Client:tests]\nUsers=root 65534\nDevices=*\n");
        ASSERT_TRUE(tsmd_reload(&t, strf("[Platform]\nMode=emulated\n[Policy]\nFile=%s/policy-jos\xe9.conf\n", t.dir)));
        out = tsmctl_status(&t);
        ASSERT_NOT_NULL(strstr(out, strf(", policy %s/policy-jos?.conf, ", t.dir)));
        assert_matches_idl("io.tsmd.Service", "GetStatus", tsmctl_json(&t, "status", &json));
        tsmd_teardown(&t);
}

/* A bind the device has not answered yet shows as its owner's "changing", then as "bound". */
TEST(devices_shows_a_bind_on_its_way) {
        _cleanup_free_ char *out = NULL;
        const char *argv[] = { TSMCTL_PATH, "--socket", NULL, "devices", NULL };
        AsyncCall bind = {};
        VarlinkClient *c;
        Tsmd t = {};
        int64_t ctx;
        int status;

        /* Each exchange with the device takes a second: the bind's answer with it. */
        tsmd_start_config(&t, "[Platform]\nMode=emulated\nEmulatedDevices=0000:01:00.0\nEmulatedLatencyUSec=1000000\n");
        argv[2] = t.socket;
        c = tsmd_connect(&t);
        ctx = guest_open_context(c);
        CALL_OK(c, "io.tsmd.Guest.AttachDevice", guest_attach_params(ctx, 1, "0000:01:00.0"));
        tsmd_call_async(c, "io.tsmd.Guest.Bind", guest_vdev_params(ctx, 1), 0, &bind);
        tsmd_pump(c, 100 * 1000ULL);
        ASSERT_EQ(bind.n, 0u);

        status = run_capture(argv, &out, NULL, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (!strstr(out, " vdev 1 changing\n"))
                TEST_FAIL("no bind on its way in:\n%s", out);
        out = mfree(out);
        assert_matches_idl("io.tsmd.Admin", "ListDevices", tsmctl_json(&t, "devices", &out));
        {
                _cleanup_(json_object_putp) json_object *o = json_tokener_parse(out);
                json_object *d = json_object_array_get_idx(json_object_object_get(o, "devices"), 0);

                ASSERT_TRUE(json_object_get_boolean(json_object_object_get(json_object_object_get(d, "owner"),
                                                                           "changing")));
        }
        out = mfree(out);

        ASSERT_TRUE(tsmd_async_wait(c, &bind, 1, TSMD_WAIT_USEC));
        ASSERT_NULL(bind.errors[0]);
        status = run_capture(argv, &out, NULL, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (!strstr(out, " vdev 1 bound\n"))
                TEST_FAIL("not bound after the answer:\n%s", out);

        async_call_done(&bind);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* Reads fd into buf (NUL-terminated, *len bytes so far) until it holds every one of needles,
 * bounded by TSMD_WAIT_USEC. */
static void read_until(int fd, char *buf, size_t size, size_t *len, const char *const *needles) {
        uint64_t deadline = now_monotonic_usec() + TSMD_WAIT_USEC;

        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                bool all = true;
                ssize_t n;

                buf[*len] = 0;
                for (size_t i = 0; needles[i]; i++)
                        all = all && strstr(buf, needles[i]);
                if (all)
                        return;
                if (now_monotonic_usec() > deadline)
                        TEST_FAIL("waiting for %s in: %s", needles[0], buf);
                if (poll(&p, 1, 100) != 1)
                        continue;
                n = read(fd, buf + *len, size - 1 - *len);
                if (n <= 0)
                        TEST_FAIL("the output ended (%zd) waiting for %s in: %s", n, needles[0], buf);
                *len += (size_t) n;
        }
}

TEST(clients_and_monitor) {
        _cleanup_free_ char *out = NULL;
        const char *argv[] = { TSMCTL_PATH, "--socket", NULL, "clients", NULL };
        VarlinkClient *held;
        Tsmd t = {};
        int status, pipefd[2];
        pid_t pid;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        argv[2] = t.socket;

        /* A connected client holding a context shows up with it. */
        held = tsmd_connect_guest(&t);
        ASSERT_TRUE(guest_open_context(held) > 0);
        status = run_capture(argv, &out, NULL, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        {
                static const char header[] = "UID      GID      PID      CONTEXTS  VDEVICES  CALLS    UNIT\n";
                if (!strneq(out, header, strlen(header)))
                        TEST_FAIL("clients table: %s", out);
        }
        {
                /* The held client, in our unit: none outside systemd, a session's scope in a
                 * login shell, the unit of a CI job. */
                _cleanup_free_ char *unit = NULL;

                if (sd_pid_get_unit(getpid(), &unit) < 0)
                        unit = mfree(unit);
                ASSERT_NOT_NULL(strstr(out, strf("1         0         1        %s\n", unit ?: "-")));
        }
        varlink_client_free(held);

        /* monitor: the header, then every record as it is committed. */
        ASSERT_OK(pipe2(pipefd, O_CLOEXEC));
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                const char *m[] = { TSMCTL_PATH, "--socket", t.socket, "monitor", NULL };
                dup2(pipefd[1], STDOUT_FILENO);
                execv(m[0], (char **) m);
                _exit(127);
        }
        close(pipefd[1]);
        {
                static char buf[8192];
                size_t len = 0;

                /* The header comes out with the first record, the FollowAudit call's own: tsmd
                 * follows by then, and every record the activity commits comes next. */
                read_until(pipefd[0], buf, sizeof(buf), &len, (const char *[]) { "\n", NULL });
                ASSERT_TRUE(strneq(buf, "SEQ ", 4));
                guest_activity(&t);
                read_until(pipefd[0], buf, sizeof(buf), &len, (const char *[]) { " open-context ", " unbind ", NULL });
        }
        kill(pid, SIGTERM);
        (void) waitpid(pid, &status, 0);
        close(pipefd[0]);
        tsmd_teardown(&t);
}

/* What a memfd holds, as a string. */
static char *memfd_text(int fd) {
        char buf[8192];
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        char *text;

        ASSERT_TRUE(n >= 0);
        buf[n] = 0;
        text = strdup(buf);
        ASSERT_NOT_NULL(text);
        return text;
}

/* Runs tsmctl VERB as uid 65534 on SOCKET; its exit status, its stdout in *ret_out and its
 * stderr in *ret_err (each if not NULL). */
static int tsmctl_as_nobody_capture(const char *socket, const char *verb, char **ret_out, char **ret_err) {
        _cleanup_close_ int out_fd = memfd_create("tsmctl-stdout", MFD_CLOEXEC);
        _cleanup_close_ int err_fd = memfd_create("tsmctl-stderr", MFD_CLOEXEC);
        int status;
        pid_t pid;

        ASSERT_TRUE(out_fd >= 0 && err_fd >= 0);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                if ((ret_out && dup2(out_fd, STDOUT_FILENO) < 0) || (ret_err && dup2(err_fd, STDERR_FILENO) < 0))
                        _exit(96);
                const char *argv[] = { TSMCTL_PATH, "--socket", socket, verb, NULL };
                /* Opened as root: a checkout in root's 0700 home is no path for uid 65534. */
                int binary = open(TSMCTL_PATH, O_PATH | O_CLOEXEC);

                if (binary < 0)
                        _exit(97);
                if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
                        _exit(99);
                (void) fexecve(binary, (char **) argv, environ);
                _exit(98);
        }
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status));
        if (ret_out)
                *ret_out = memfd_text(out_fd);
        if (ret_err)
                *ret_err = memfd_text(err_fd);
        return WEXITSTATUS(status);
}

static int tsmctl_as_nobody_err(Tsmd *t, const char *verb, char **ret_err) {
        return tsmctl_as_nobody_capture(t->socket, verb, NULL, ret_err);
}

static int tsmctl_as_nobody(Tsmd *t, const char *verb) {
        return tsmctl_as_nobody_err(t, verb, NULL);
}

/* Whether a line of text has a, and b after its start (they may share a space). */
static bool has_line_with(const char *text, const char *a, const char *b) {
        for (const char *p = text; (p = strstr(p, a)); p += strlen(a)) {
                const char *end = strchrnul(p, '\n'), *q = strstr(p + 1, b);

                if (q && q < end)
                        return true;
        }
        return false;
}

/* tsmd whose admin socket (0660 root:root) lets uid 65534 in, to be refused by tsmd's policy. */
static void tsmd_start_open_to_nobody(Tsmd *t) {
        if (geteuid() != 0)
                SKIP("needs root to run tsmctl as another uid");

        tsmd_start_config(t, "[Platform]\nMode=emulated\n");
        ASSERT_OK(chmod(t->socket, 0666));
}

TEST(admin_refused_for_others_and_audited) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        Tsmd t = {};
        int status;

        tsmd_start_open_to_nobody(&t);
        ASSERT_EQ(tsmctl_as_nobody_err(&t, "devices", &err), 4); /* permission denied */
        /* Let in by the socket, refused by the policy: the refusal says which of the two. */
        ASSERT_NOT_NULL(strstr(err, "org.varlink.service.PermissionDenied"));
        ASSERT_NOT_NULL(strstr(err, "Not an administrator of tsmd: its policy's [Admin] section names neither "
                                    "you (Users=) nor a group of yours (Groups=)"));
        err = mfree(err);
        ASSERT_EQ(tsmctl_as_nobody_err(&t, "reload", &err), 4);
        ASSERT_NOT_NULL(strstr(err, "its policy's [Admin] section"));
        err = mfree(err);

        /* Each refusal was answered once its record was on disk. */
        {
                const char *argv[] = { TSMCTL_PATH, "--socket", t.socket, "audit", "--result=org.varlink.service.PermissionDenied", NULL };

                status = run_capture(argv, &out, &err, 10 * 1000000ULL);
                ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        ASSERT_TRUE(has_line_with(out, " io.tsmd.Admin.ListDevices ", " 65534 "));
        ASSERT_TRUE(has_line_with(out, " io.tsmd.Service.Reload ", " 65534 "));

        /* The error's short name finds the same records: the records have the full one. */
        {
                _cleanup_free_ char *out2 = NULL, *err2 = NULL;
                const char *argv[] = { TSMCTL_PATH, "--socket", t.socket, "audit", "--result=PermissionDenied", NULL };

                status = run_capture(argv, &out2, &err2, 10 * 1000000ULL);
                ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                ASSERT_STREQ(out2, out);
        }
        tsmd_teardown(&t);
}

/* monitor refused as any other verb is: the explanation, and no table begun before it. */
TEST(monitor_refused_for_others_says_why_and_prints_no_table) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        Tsmd t = {};
        int status;

        tsmd_start_open_to_nobody(&t);
        ASSERT_EQ(tsmctl_as_nobody_capture(t.socket, "monitor", &out, &err), 4);
        print_comment(err);
        ASSERT_NOT_NULL(strstr(err, "org.varlink.service.PermissionDenied"));
        ASSERT_NOT_NULL(strstr(err, "Not an administrator of tsmd: its policy's [Admin] section names neither"));
        ASSERT_STREQ(out, "");

        /* The guest socket: which socket it probably is. */
        out = mfree(out);
        err = mfree(err);
        {
                const char *argv[] = { TSMCTL_PATH, "--socket", t.guest_socket, "monitor", NULL };

                status = run_capture(argv, &out, &err, 10 * 1000000ULL);
        }
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 3);
        ASSERT_NOT_NULL(strstr(err, strf("%s serves no io.tsmd.Admin: probably tsmd's io.tsmd.Guest socket",
                                         t.guest_socket)));
        ASSERT_STREQ(out, "");
        tsmd_teardown(&t);
}

/* tsmctl status until it shows what (the monitor checks a moment after a change). */
static char *await_status_with(Tsmd *t, const char *what) {
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC;; sleep_usec(50 * 1000ULL)) {
                char *out = tsmctl_status(t);

                if (strstr(out, what))
                        return out;
                free(out);
                if (now_usec() > deadline)
                        TEST_FAIL("tsmctl status never showed '%s'", what);
        }
}

/* As systemctl says a unit file changed on disk: tsmctl status names, to administrators, the
 * files edited since the load in force, with what applies them; --json has them as the IDL says;
 * after tsmctl reload they are gone. Anyone else is not told. */
TEST(status_names_the_files_changed_on_disk) {
        static const char config[] = "[Platform]\nMode=emulated\n";
        const char *reload[] = { TSMCTL_PATH, "--socket", NULL, "reload", NULL };
        _cleanup_free_ char *out = NULL, *json = NULL, *changed = NULL;
        Tsmd t = {};
        int status;

        tsmd_start_config(&t, config);
        reload[2] = t.socket;
        out = tsmctl_status(&t);
        ASSERT_NULL(strstr(out, "Changed:"));
        out = mfree(out);

        tsmd_write_config(&t, "[Platform]\nMode=emulated\n# edited, not reloaded\n");
        changed = strdup(strf("\n      Changed: on disk since the load, not in force until 'tsmctl reload':\n"
                              "               %s\n", t.config_path));
        ASSERT_NOT_NULL(changed);
        out = await_status_with(&t, changed);
        out = mfree(out);
        assert_matches_idl("io.tsmd.Service", "GetStatus", tsmctl_json(&t, "status", &json));
        ASSERT_NOT_NULL(strstr(json, strf("\"changedOnDisk\": [\n      \"%s\"\n    ],\n    \"changedOnDiskCount\": 1",
                                          t.config_path)));
        json = mfree(json);
        if (geteuid() == 0) {
                ASSERT_EQ(tsmctl_as_nobody_capture(t.guest_socket, "status", &out, NULL), 0);
                print_comment(out);
                ASSERT_NOT_NULL(strstr(out, "\nConfiguration: files on disk"));
                ASSERT_NULL(strstr(out, "Changed:"));
                ASSERT_NULL(strstr(out, t.config_path));
                out = mfree(out);
        }

        status = run_capture(reload, &out, NULL, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        out = mfree(out);
        out = tsmctl_status(&t);
        ASSERT_NULL(strstr(out, "Changed:"));
        out = mfree(out);
        assert_matches_idl("io.tsmd.Service", "GetStatus", tsmctl_json(&t, "status", &json));
        {
                _cleanup_(json_object_putp) json_object *o = json_tokener_parse(json);
                json_object *cfg = json_object_object_get(o, "configuration");

                ASSERT_EQ(json_object_array_length(json_object_object_get(cfg, "changedOnDisk")), 0);
                ASSERT_EQ(json_object_get_int64(json_object_object_get(cfg, "changedOnDiskCount")), 0);
        }
        tsmd_teardown(&t);
}

/* tsmctl status of one who is no administrator, on the guest socket: what tsmd tells it, and
 * not the counts it tells administrators only (it printed them as 0 connections, 0 unsaved). */
TEST(status_of_a_non_administrator_leaves_out_what_it_is_not_told) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        Tsmd t = {};

        if (geteuid() != 0)
                SKIP("needs root to run tsmctl as another uid");

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        ASSERT_EQ(tsmctl_as_nobody_capture(t.guest_socket, "status", &out, &err), 0);
        print_comment(out);
        ASSERT_NOT_NULL(strstr(out, "Version: "));
        ASSERT_NOT_NULL(strstr(out, "\nConfiguration: files on disk"));
        ASSERT_NOT_NULL(strstr(out, "\n    Audit log: ok\n"));
        ASSERT_NULL(strstr(out, "Connections:"));
        ASSERT_NULL(strstr(out, "Unsaved state:"));
        ASSERT_NULL(strstr(out, "Fds closing:"));
        tsmd_teardown(&t);
}

/* tsmctl connect ADDRESS emu0 on a device `tsmctl devices` lists, on the emulated platform: not
 * NoSuchDevice (there is one), but EmulatedDevice, which says there is no connect step; the
 * same for a disconnect. An address no device has is NoSuchDevice still. */
TEST(connect_of_an_emulated_device_says_so) {
        static const struct {
                const char *args[3];
                const char *error;
        } cases[] = {
                { { "connect", "0000:01:00.0", "emu0" }, "io.tsmd.Admin.EmulatedDevice pciAddress=0000:01:00.0" },
                { { "disconnect", "0000:01:00.0" }, "io.tsmd.Admin.EmulatedDevice" },
                { { "connect", "0000:09:00.0", "emu0" }, "io.tsmd.Admin.NoSuchDevice" },
        };
        Tsmd t = {};

        tsmd_start_config(&t, "[Platform]\nMode=emulated\nEmulatedDevices=0000:01:00.0\n");
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *out = NULL, *err = NULL;
                const char *argv[] = { TSMCTL_PATH,       "--socket",        t.socket, cases[i].args[0],
                                       cases[i].args[1], cases[i].args[2], NULL };
                int status = run_capture(argv, &out, &err, 10 * 1000000ULL);

                ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1);
                if (!strstr(err, cases[i].error))
                        TEST_FAIL("tsmctl %s %s: stderr does not say '%s': %s", cases[i].args[0], cases[i].args[1],
                                  cases[i].error, err);
                if (i == 0)
                        ASSERT_NOT_NULL(strstr(err, "0000:01:00.0 is a device of the emulated platform: it is "
                                                    "connected to its TSM, emu0, from the start, and has no "
                                                    "connect step."));
                if (i == 1)
                        ASSERT_NOT_NULL(strstr(err, "0000:01:00.0 is a device of the emulated platform: it stays "
                                                    "connected to its TSM, emu0, and has no disconnect step."));
        }
        tsmd_teardown(&t);
}

/* A reload refused because its answer might not fit MaxMessageSize= says how to reload anyway. */
TEST(reload_refused_for_its_answer_says_how_else) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        Tsmd t = {};
        int status;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n[Varlink]\nMaxMessageSize=512\n");
        {
                const char *argv[] = { TSMCTL_PATH, "--socket", t.socket, "reload", NULL };

                status = run_capture(argv, &out, &err, 10 * 1000000ULL);
        }
        print_comment(err);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        ASSERT_NOT_NULL(strstr(err, "io.tsmd.ReplyMayNotFit"));
        ASSERT_NOT_NULL(strstr(err, "tsmd did not reload: its answer might not fit the admin socket's "
                                    "MaxMessageSize= ([Varlink] in tsmd.conf). Raise it, or reload without an "
                                    "answer: systemctl kill --signal=SIGHUP --kill-whom=main tsmd"));
        tsmd_teardown(&t);
}

/* A socket the caller may not connect to is "permission denied" (4), not "not running" (7). */
TEST(connect_refused_by_socket_mode) {
        Tsmd t = {};

        if (geteuid() != 0)
                SKIP("needs root to run tsmctl as another uid");

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        ASSERT_OK(chmod(t.socket, 0600));
        ASSERT_EQ(tsmctl_as_nobody(&t, "devices"), 4);
        tsmd_teardown(&t);
}

/* Past MaxAdminConnections=, tsmd refuses tsmctl's connection by name, and tsmctl says so: not
 * a lost connection, not "not running". */
TEST(connection_refused_past_the_limit_is_named) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        VarlinkClient *held;
        Tsmd t = {};
        int status;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n[Varlink]\nMaxAdminConnections=1\n");
        held = tsmd_connect(&t);
        CALL_OK(held, "io.tsmd.Service.Ping", NULL);
        {
                const char *argv[] = { TSMCTL_PATH, "--socket", t.socket, "status", NULL };
                status = run_capture(argv, &out, &err, 10 * 1000000ULL);
        }
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 1);
        ASSERT_NOT_NULL(strstr(err, " failed: io.tsmd.TooManyConnections tsmd refused the connection: it has all "
                                    "it takes open (MaxConnections=, MaxAdminConnections=); it is closed\n"));
        varlink_client_free(held);
        tsmd_teardown(&t);
}

/* A verb's options are not counted as its arguments: many of them are fine, a stray word or an
 * unknown option is not. */
TEST(verb_options_not_counted_as_arguments) {
        static const struct {
                const char *args[10];
                int status;
        } cases[] = {
                { { "--from", "1", "--to", "100", "--uid", "0", "--limit", "5" }, 0 },
                { { "--from=1", "--to=100", "--uid=0", "--device=0000:01:00.0", "--scope=info", "--result=ok", "--limit=5" }, 0 },
                { { "--from", "1", "stray" }, 2 },
                { { "stray" }, 2 },
                { { "--nosuchoption" }, 2 },
                { { "--from" }, 2 },
        };
        Tsmd t = {};

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *out = NULL, *err = NULL;
                const char *argv[16] = { TSMCTL_PATH, "--socket", t.socket, "audit" };
                size_t n = 4;
                int status;

                for (size_t k = 0; cases[i].args[k]; k++)
                        argv[n++] = cases[i].args[k];
                status = run_capture(argv, &out, &err, 10 * 1000000ULL);
                if (!WIFEXITED(status) || WEXITSTATUS(status) != cases[i].status)
                        TEST_FAIL("case %zu: exit %d, expected %d: %s", i, WEXITSTATUS(status), cases[i].status, err);
        }
        tsmd_teardown(&t);
}

/* tsmctl audit refuses, by name, a filter that could only ever match nothing (exit 2), where it
 * printed an empty table: a short error name no interface declares or several do, a device not
 * spelled as records spell it, a scope no backend has. */
TEST(audit_refuses_filters_that_match_nothing) {
        static const struct {
                const char *arg;
                const char *says;
        } cases[] = {
                { "--result=Bogus", "Unknown result 'Bogus': give ok, an error's full name" },
                { "--result=denied", "Unknown result 'denied'" },
                /* An errno tsmd never records by that name: a typo, or a number it has a name for. */
                { "--result=EIOO", "Unknown result 'EIOO'" },
                { "--result=errno-5", "Unknown result 'errno-5'" },
                { "--result=NoSuchDevice", "--result=NoSuchDevice is ambiguous: io.tsmd.Guest.NoSuchDevice or "
                                           "io.tsmd.Admin.NoSuchDevice? Give the full name." },
                { "--device=0000:1:00.0", "--device=0000:1:00.0: not a PCI address as sysfs spells it" },
                { "--device=0000:01:00.A", "--device=0000:01:00.A: not a PCI address as sysfs spells it" },
                { "--scope=bogus", "--scope=bogus: no TSM backend has a scope of that name" },
                { "--result=io.tsmd.Guest.Bogus", "--result=io.tsmd.Guest.Bogus: no record has that result" },
                { "--to=0", "--to=0: no record can be in that window" },
        };
        static const char *const good[] = { "--result=Denied", "--result=Disconnected", "--result=EIO",
                                            "--result=io.tsmd.WorkerExited", "--result=WorkerCrashed", "--result=errno-4095",
                                            "--scope=debug-read", "--device=0000:01:00.0" };
        Tsmd t = {};

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *out = NULL, *err = NULL;
                const char *argv[] = { TSMCTL_PATH, "--socket", t.socket, "audit", cases[i].arg, NULL };
                int status = run_capture(argv, &out, &err, 10 * 1000000ULL);

                if (!WIFEXITED(status) || WEXITSTATUS(status) != 2 || !strstr(err, cases[i].says))
                        TEST_FAIL("tsmctl audit %s: exit %d, stderr does not say '%s': %s", cases[i].arg,
                                  WEXITSTATUS(status), cases[i].says, err);
                /* One message, naming the option: not tsmd's raw error before it. */
                if (count_lines(err) != 1 || strstr(err, "QueryAudit failed"))
                        TEST_FAIL("tsmctl audit %s: not one line naming the option: %s", cases[i].arg, err);
                ASSERT_STREQ(out, "");
        }
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                _cleanup_free_ char *out = NULL, *err = NULL;
                const char *argv[] = { TSMCTL_PATH, "--socket", t.socket, "audit", good[i], NULL };
                int status = run_capture(argv, &out, &err, 10 * 1000000ULL);

                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        TEST_FAIL("tsmctl audit %s: exit %d: %s", good[i], WEXITSTATUS(status), err);
        }
        /* Sequence numbers start at 1: --from=0 on a log that rotated nothing notes nothing. */
        {
                _cleanup_free_ char *out = NULL, *err = NULL;
                const char *argv[] = { TSMCTL_PATH, "--socket", t.socket, "audit", "--from=0", NULL };
                int status = run_capture(argv, &out, &err, 10 * 1000000ULL);

                ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                if (strstr(err, "Note:"))
                        TEST_FAIL("tsmctl audit --from=0 notes records rotated out of a log that has them all: %s", err);
        }
        tsmd_teardown(&t);
}

/* Runs tsmctl --json audit with one or two options, expecting exit 0; returns the number of
 * records, each checked to be of event (if not NULL). */
static size_t audit_json(Tsmd *t, const char *opt1, const char *opt2, const char *event) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        const char *argv[] = { TSMCTL_PATH, "--socket", t->socket, "--json", "audit", opt1, opt2, NULL };
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *records;
        int status = run_capture(argv, &out, &err, 10 * 1000000ULL);

        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                TEST_FAIL("tsmctl audit %s %s: exit %d: %s", opt1, strempty(opt2), WEXITSTATUS(status), err);
        o = json_tokener_parse(out);
        records = json_get_array(o, "records");
        ASSERT_NOT_NULL(records);
        for (size_t i = 0; event && i < json_object_array_length(records); i++)
                ASSERT_STREQ(json_get_string(json_object_array_get_idx(records, i), "event"), event);
        return json_object_array_length(records);
}

/* tsmctl audit --event= (checked by tsmctl against the events records can have, which
 * --list-events lists for completion), and --since=/--until= in journalctl's forms, refused by
 * option name when they do not parse or make an empty window's reverse. */
TEST(audit_event_since_until) {
        static const struct {
                const char *arg1, *arg2;
                const char *says;
        } bad[] = {
                { "--event=bogus", NULL, "--event=bogus: tsmd writes no record of that event" },
                { "--event=ListBackends", NULL, "--event=ListBackends: tsmd writes no record of that event" },
                { "--since=bogus", NULL, "--since=bogus: not a time: give YYYY-MM-DD" },
                { "--until=-15", NULL, "--until=-15: not a time" },
                { "--since=2024-02-30", NULL, "--since=2024-02-30: not a time" },
                { "--until=1969-12-31", NULL, "--until=1969-12-31: out of range" },
                { "--since=+1h", "--until=-1h", "--until=-1h is before --since=+1h" },
        };
        _cleanup_free_ char *list = NULL;
        VarlinkClient *c;
        char since_sec[32];
        Tsmd t = {};

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        snprintf(since_sec, sizeof(since_sec), "--since=@%" PRIu64, now_realtime_usec() / 1000000u);
        c = tsmd_connect(&t);
        (void) CALL_OK(c, "io.tsmd.Admin.ListBackends", NULL);
        varlink_client_free(c);

        ASSERT_EQ(audit_json(&t, "--event=io.tsmd.Admin.ListBackends", NULL, "io.tsmd.Admin.ListBackends"), 1u);
        ASSERT_EQ(audit_json(&t, "--event=guest-request", NULL, NULL), 0u);
        ASSERT_EQ(audit_json(&t, "--event=io.tsmd.Admin.ListBackends", since_sec, "io.tsmd.Admin.ListBackends"), 1u);
        ASSERT_EQ(audit_json(&t, "--event=io.tsmd.Admin.ListBackends", "--since=-1h", NULL), 1u);
        ASSERT_EQ(audit_json(&t, "--event=io.tsmd.Admin.ListBackends", "--since=2024-01-01", NULL), 1u);
        ASSERT_EQ(audit_json(&t, "--event=io.tsmd.Admin.ListBackends", "--since=yesterday", NULL), 1u);
        ASSERT_EQ(audit_json(&t, "--event=io.tsmd.Admin.ListBackends", "--until=+1h", NULL), 1u);
        ASSERT_EQ(audit_json(&t, "--event=io.tsmd.Admin.ListBackends", "--until=now", NULL), 1u);
        ASSERT_GE(audit_json(&t, "--since=-1h", "--until=tomorrow", NULL), 1u);
        ASSERT_EQ(audit_json(&t, "--since=+1h", NULL, NULL), 0u);
        ASSERT_EQ(audit_json(&t, "--until=-1h", NULL, NULL), 0u);
        ASSERT_EQ(audit_json(&t, "--until=2024-01-01 00:00", NULL, NULL), 0u);
        ASSERT_EQ(audit_json(&t, "--until=@0", NULL, NULL), 0u);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *out = NULL, *err = NULL;
                const char *argv[] = { TSMCTL_PATH, "--socket", t.socket, "audit", bad[i].arg1, bad[i].arg2, NULL };
                int status = run_capture(argv, &out, &err, 10 * 1000000ULL);

                if (!WIFEXITED(status) || WEXITSTATUS(status) != 2 || !strstr(err, bad[i].says))
                        TEST_FAIL("tsmctl audit %s %s: exit %d, stderr does not say '%s': %s", bad[i].arg1,
                                  strempty(bad[i].arg2), WEXITSTATUS(status), bad[i].says, err);
                ASSERT_STREQ(out, "");
        }

        /* What completion offers: the events tsmd writes, and every declared method. */
        {
                const char *argv[] = { TSMCTL_PATH, "audit", "--list-events", NULL };
                int status = run_capture(argv, &list, NULL, 10 * 1000000ULL);

                ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                ASSERT_TRUE(strneq(list, "open-context\n", strlen("open-context\n")));
                ASSERT_NOT_NULL(strstr(list, "\nguest-request\n"));
                ASSERT_NOT_NULL(strstr(list, "\nrecords-lost\n"));
                ASSERT_NOT_NULL(strstr(list, "\nio.tsmd.Admin.QueryAudit\n"));
                ASSERT_NOT_NULL(strstr(list, "\norg.varlink.service.GetInfo\n"));
        }
        tsmd_teardown(&t);
}

/* tsmctl audit --from=1 after rotation dropped the oldest records says where the log begins now,
 * on stderr, instead of starting later silently; from a seq the log still has, nothing. */
TEST(audit_from_says_what_rotated_out) {
        _cleanup_free_ char *out = NULL, *err = NULL, *out2 = NULL, *err2 = NULL;
        VarlinkClient *c;
        int64_t first = 1;
        Tsmd t = {};
        int status;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n[Audit]\nMaxFileSize=16384\nFiles=2\n");
        c = tsmd_connect(&t);
        /* Two files of 16 KiB: a few hundred recorded calls push the first records out. */
        for (unsigned i = 0; i < 4000 && first == 1; i++) {
                (void) CALL_OK(c, "io.tsmd.Admin.ListBackends", NULL);
                if (i % 50 == 49) {
                        _cleanup_json_ json_object *records = tsmd_audit_query(&t, "{\"fromSeq\":1,\"limit\":1}");

                        ASSERT_EQ(json_object_array_length(records), 1U);
                        first = JINT(json_object_array_get_idx(records, 0), "seq");
                }
        }
        ASSERT_GE(first, 2);
        varlink_client_free(c);

        {
                const char *argv[] = { TSMCTL_PATH, "--socket", t.socket, "audit", "--from=1", "--limit=1", NULL };

                status = run_capture(argv, &out, &err, 10 * 1000000ULL);
                ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        /* Where it begins by then: the calls recorded since (tsmctl's own queries too) may have
         * rotated the log on. */
        {
                const char *note = strstr(err, "Note: the log begins at seq ");
                long long begins, to;

                if (!note || sscanf(note, "Note: the log begins at seq %lld: the records from 1 to %lld", &begins,
                                    &to) != 2 || begins < first || to != begins - 1)
                        TEST_FAIL("stderr does not say where the log begins (%" PRIi64 " or later): %s", first, err);
        }
        /* The newest record stays while a rotation drops the oldest file. */
        {
                const char *argv[] = { TSMCTL_PATH, "--socket", t.socket, "audit",
                                       strf("--from=%" PRIi64, tsmd_audit_last_seq(&t)), "--limit=1", NULL };

                status = run_capture(argv, &out2, &err2, 10 * 1000000ULL);
                ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        ASSERT_NULL(strstr(err2, "Note:"));
        tsmd_teardown(&t);
}

/* The listening socket of a fake tsmd at path (for one connection). */
static int fake_tsmd_listen(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ASSERT_TRUE(l >= 0 && strlen(path) < sizeof(sa.sun_path));
        strcpy(sa.sun_path, path);
        ASSERT_OK(bind(l, (struct sockaddr *) &sa, sizeof(sa)));
        ASSERT_OK(listen(l, 1));
        return l;
}

/* A fake tsmd at path: reads one call, answers the len bytes of replies (NUL-terminated
 * messages, one or more), waits for the hangup; returns its pid. */
static pid_t fake_tsmd_replies(const char *path, const char *replies, size_t len) {
        int l = fake_tsmd_listen(path);
        pid_t pid;

        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
                char ch;

                while (fd >= 0 && read(fd, &ch, 1) == 1 && ch != 0)
                        ;
                for (size_t done = 0; fd >= 0 && done < len;) {
                        ssize_t k = write(fd, replies + done, len - done);
                        if (k <= 0)
                                _exit(1);
                        done += (size_t) k;
                }
                while (fd >= 0 && read(fd, &ch, 1) > 0) /* until tsmctl hangs up */
                        ;
                _exit(0);
        }
        close(l);
        return pid;
}

/* A fake tsmd at path: reads one call, answers reply (NULL: never), waits for the hangup. */
static pid_t fake_tsmd(const char *path, const char *reply) {
        return fake_tsmd_replies(path, reply, reply ? strlen(reply) + 1 : 0);
}

static const char *fake_socket_path(const char *name) {
        static const char *dir = NULL;
        static char path[4][256];
        static unsigned n;

        if (!dir)
                dir = scratch_dir(); /* one per process */
        ASSERT_TRUE(n < ELEMENTSOF(path));
        snprintf(path[n], sizeof(path[n]), "%s/%s", dir, name);
        return path[n++];
}

/* tsmctl audit against a QueryAudit reply of n records (seq 1..n); its stderr. */
static char *audit_with_records(unsigned n) {
        _cleanup_free_ char *path = NULL, *out = NULL;
        char *err = NULL;
        const char *argv[] = { TSMCTL_PATH, "--socket", NULL, "audit", NULL };
        size_t size = 64 + (size_t) n * 24, pos;
        char *reply = malloc(size);
        int status;
        pid_t pid;

        ASSERT_NOT_NULL(reply);
        pos = (size_t) snprintf(reply, size, "{\"parameters\":{\"records\":[");
        for (unsigned i = 1; i <= n; i++)
                pos += (size_t) snprintf(reply + pos, size - pos, "%s{\"seq\":%u}", i > 1 ? "," : "", i);
        snprintf(reply + pos, size - pos, "]}}");

        ASSERT_TRUE(asprintf(&path, "%s", fake_socket_path("fake-full")) > 0);
        pid = fake_tsmd(path, reply);
        free(reply);
        argv[2] = path;
        status = run_capture(argv, &out, &err, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_EQ(count_lines(out), n + 1);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        return err;
}

/* tsmd says where more match (nextSeq): a reply of as many records as tsmctl shows at once
 * (10000) without it is all there is, and gets no notice (it said there may be more, from
 * before tsmd told). */
TEST(audit_says_nothing_of_a_full_page_that_is_all) {
        _cleanup_free_ char *full = audit_with_records(10000);

        ASSERT_STREQ(full, "");
}

/* The same with --limit, against tsmd. */
TEST(audit_limit_says_when_cut) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        Tsmd t = {};
        int status;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        guest_activity(&t); /* a few records */
        {
                const char *argv[] = { TSMCTL_PATH, "--socket", t.socket, "audit", "--limit=2", NULL };
                status = run_capture(argv, &out, &err, 10 * 1000000ULL);
                ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        ASSERT_EQ(count_lines(out), 3);
        ASSERT_NOT_NULL(strstr(err, "More records match than --limit=2 shows: continue with --from=3"));
        /* As many as match: nothing is cut, and nothing said (tsmctl asks for one more than
         * --limit to know). */
        {
                _cleanup_free_ char *out2 = NULL, *err2 = NULL, *lim = NULL;
                size_t n = audit_json(&t, "--to=7", NULL, NULL);
                const char *argv[] = { TSMCTL_PATH, "--socket", t.socket, "audit", "--to=7", NULL, NULL };

                ASSERT_EQ(n, 7u);
                ASSERT_TRUE(asprintf(&lim, "--limit=%zu", n) > 0);
                argv[5] = lim;
                status = run_capture(argv, &out2, &err2, 10 * 1000000ULL);
                ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                ASSERT_EQ(count_lines(out2), 1 + 7);
                ASSERT_STREQ(err2, "");
        }
        /* --json shows as many as --limit says too. */
        ASSERT_EQ(audit_json(&t, "--limit=1", NULL, NULL), 1u);
        tsmd_teardown(&t);
}

/* QueryAudit answers the records that fit MaxMessageSize= and says where to go on, which tsmctl
 * does by itself: all of them, nothing said (it was told ReplyTooLarge and asked for fewer with
 * --limit=). A record that alone does not fit is answered ReplyTooLarge, which tsmctl explains
 * (it printed the bare error). */
TEST(audit_pages_past_max_message_size_and_explains_a_record_too_large) {
        _cleanup_free_ char *out = NULL, *err = NULL, *out2 = NULL, *err2 = NULL;
        const char *argv[] = { TSMCTL_PATH, "--socket", NULL, "audit", NULL };
        VarlinkClient *a;
        Tsmd t = {};
        int status;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n[Varlink]\nMaxMessageSize=4096\n");
        a = tsmd_connect(&t);
        for (unsigned i = 0; i < 60; i++) /* some 300 bytes each: far more than 4096 */
                CALL_OK(a, "io.tsmd.Admin.ListBackends", NULL);
        varlink_client_free(a);
        argv[2] = t.socket;
        status = run_capture(argv, &out, &err, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_STREQ(err, "");
        ASSERT_TRUE(count_lines(out) >= 1 + 60);

        ASSERT_TRUE(tsmd_reload(&t, "[Platform]\nMode=emulated\n[Varlink]\nMaxMessageSize=256\n"));
        status = run_capture(argv, &out2, &err2, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        ASSERT_STREQ(out2, "");
        ASSERT_NOT_NULL(strstr(err2, "bytes, more than tsmd's MaxMessageSize=256 ([Varlink] in tsmd.conf) lets one "
                                     "answer have: raise it.\n"));
        tsmd_teardown(&t);
}

/* A record larger than MaxMessageSize= ends the follow with ReplyTooLarge, which monitor explains
 * as audit does (it printed the bare error). The FollowAudit call's own record comes first, and
 * no record fits in 256 bytes. */
TEST(monitor_record_too_large_for_max_message_size_says_which_knob) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        const char *argv[] = { TSMCTL_PATH, "--socket", NULL, "monitor", NULL };
        Tsmd t = {};
        int status;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n[Varlink]\nMaxMessageSize=256\n");
        argv[2] = t.socket;
        status = run_capture(argv, &out, &err, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1);
        ASSERT_NOT_NULL(strstr(err, "Stopped following: a record takes "));
        ASSERT_NOT_NULL(strstr(err, " bytes, more than tsmd's MaxMessageSize=256 ([Varlink] in tsmd.conf) lets one "
                                    "message have; raise it to follow on."));
        ASSERT_NULL(strstr(err, "a record takes 0 bytes"));
        tsmd_teardown(&t);
}

/* tsmd refusing FollowAudit with an error of its own is that error, not a lost connection. */
TEST(monitor_error_reply_is_not_lost_connection) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        const char *path = fake_socket_path("fake-monitor");
        const char *argv[] = { TSMCTL_PATH, "--socket", path, "monitor", NULL };
        pid_t pid = fake_tsmd(path, "{\"error\":\"io.tsmd.System\",\"parameters\":{\"errno\":5}}");
        int status;

        status = run_capture(argv, &out, &err, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 1);
        ASSERT_NOT_NULL(strstr(err, "io.tsmd.System"));
        ASSERT_NULL(strstr(err, "lost"));
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
}

/* tsmctl walks the arrays of tsmd's replies, and json-c aborts on array access to anything else:
 * whatever answers at the socket (another program, a damaged reply) gets an error or a row of
 * dashes out of tsmctl, never an abort. */
TEST(malformed_replies_are_not_fatal) {
        static const struct {
                const char *verb, *reply;
                int status;
        } cases[] = {
                { "devices", "{\"parameters\":{\"devices\":{\"a\":1}}}", 1 },
                { "devices", "{\"parameters\":{}}", 1 },
                { "devices", "{\"parameters\":{\"devices\":[1,null,\"x\",{\"owner\":[]}]}}", 0 },
                { "backends", "{\"parameters\":{\"backends\":7}}", 1 },
                { "clients", "{\"parameters\":{\"clients\":\"x\"}}", 1 },
                { "metrics", "{\"parameters\":{\"counters\":null}}", 1 },
                { "metrics", "{\"parameters\":{\"counters\":[{\"dimension\":\"scope\",\"latencyBuckets\":{}}]}}", 0 },
                { "audit", "{\"parameters\":{\"records\":{}}}", 1 },
                { "audit", "{\"parameters\":{\"records\":[null,[]]}}", 0 },
                { "info", "{\"parameters\":{\"interfaces\":\"io.tsmd.Guest\"}}", 0 },
                { "status", "{\"parameters\":{\"configuration\":\"disk\"}}", 0 },
                { "status", "{\"parameters\":{\"configuration\":{\"source\":\"last_good\",\"failedUsec\":"
                            "9223372036854775807,\"loadedUsec\":-5,\"error\":[],\"configFile\":{}}}}", 0 },
                { "introspect", "{\"parameters\":{\"interfaces\":[null,5]}}", 0 },
        };
        const char *path = fake_socket_path("fake-malformed");

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *out = NULL, *err = NULL;
                const char *argv[] = { TSMCTL_PATH, "--socket", path, cases[i].verb, NULL };
                pid_t pid = fake_tsmd(path, cases[i].reply);
                int status;

                status = run_capture(argv, &out, &err, 10 * 1000000ULL);
                if (!WIFEXITED(status) || WEXITSTATUS(status) != cases[i].status)
                        TEST_FAIL("tsmctl %s on %s: %s %d, expected exit %d: %s", cases[i].verb, cases[i].reply,
                                  WIFEXITED(status) ? "exit" : "signal",
                                  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), cases[i].status, err);
                if (cases[i].status != 0)
                        ASSERT_NOT_NULL(strstr(err, "has no array"));
                (void) kill(pid, SIGKILL); /* introspect's second call is never answered */
                ASSERT_EQ(waitpid(pid, &status, 0), pid);
                ASSERT_OK(unlink(path));
        }
}

/* Runs tsmctl verb against a fake tsmd answering reply; its exit status, its output in ret_out. */
/* tsmctl verb against a fake tsmd answering reply: its exit status, its output, and its errors
 * (into ret_err, or else on our stderr). */
static int run_against_full(const char *verb, const char *reply, char **ret_out, char **ret_err) {
        _cleanup_free_ char *err = NULL;
        const char *path = fake_socket_path("fake-odd");
        const char *argv[] = { TSMCTL_PATH, "--socket", path, verb, NULL };
        pid_t pid = fake_tsmd(path, reply);
        int status;

        status = run_capture(argv, ret_out, &err, 10 * 1000000ULL);
        (void) kill(pid, SIGKILL);
        ASSERT_EQ(waitpid(pid, NULL, 0), pid);
        ASSERT_OK(unlink(path));
        if (ret_err)
                *ret_err = TAKE_PTR(err);
        else
                fprintf(stderr, "%s", strempty(err));
        ASSERT_TRUE(WIFEXITED(status));
        return WEXITSTATUS(status);
}

static int run_against(const char *verb, const char *reply, char **ret_out) {
        return run_against_full(verb, reply, ret_out, NULL);
}

static unsigned count_lines_with(const char *text, const char *needle) {
        unsigned n = 0;

        for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

/* Replies that are valid but odd: nested deeper than json-c's default of 32 (as deep as the
 * Varlink layer reads, 64), a counter dimension that is no Prometheus label name (it would
 * have written a line of its own into the metrics), more latency buckets than a shift of 1ULL
 * can count (undefined behaviour before; now they fold into +Inf). */
TEST(odd_replies) {
        _cleanup_free_ char *deep = NULL, *out1 = NULL, *out2 = NULL, *out3 = NULL, *buckets = NULL;
        size_t len = 0;
        FILE *f;

        f = open_memstream(&deep, &len);
        ASSERT_NOT_NULL(f);
        fputs("{\"parameters\":{\"devices\":[],\"extra\":", f);
        for (unsigned i = 0; i < 40; i++)
                fputc('[', f);
        for (unsigned i = 0; i < 40; i++)
                fputc(']', f);
        fputs("}}", f);
        ASSERT_EQ(fclose(f), 0);
        ASSERT_EQ(run_against("devices", deep, &out1), 0);

        ASSERT_EQ(run_against("metrics",
                              "{\"parameters\":{\"counters\":[{\"dimension\":\"scope\\\"} 1\\nevil{x=\\\"\",\"key\":\"a\","
                              "\"calls\":1,\"errors\":0},{\"dimension\":\"uid\",\"key\":\"7\",\"calls\":2,\"errors\":1}]}}",
                              &out2),
                  0);
        ASSERT_NULL(strstr(out2, "evil"));
        ASSERT_NOT_NULL(strstr(out2, "tsmd_calls_by_uid_total{uid=\"7\"} 2\n"));
        ASSERT_NOT_NULL(strstr(out2, "tsmd_call_errors_by_uid_total{uid=\"7\"} 1\n"));

        len = 0;
        f = open_memstream(&buckets, &len);
        ASSERT_NOT_NULL(f);
        fputs("{\"parameters\":{\"counters\":[{\"dimension\":\"scope\",\"key\":\"info\",\"calls\":70,"
              "\"errors\":0,\"latencySumUsec\":1,\"latencyBuckets\":[1", f);
        for (unsigned i = 1; i < 70; i++)
                fputs(",1", f);
        fputs("]}]}}", f);
        ASSERT_EQ(fclose(f), 0);
        ASSERT_EQ(run_against("metrics", buckets, &out3), 0);
        /* 2^0 .. 2^62 µs, then everything else. */
        ASSERT_EQ(count_lines_with(out3, "tsmd_call_latency_seconds_bucket{"), 64U);
        ASSERT_EQ(count_lines_with(out3, "le=\"+Inf\"} 70\n"), 1U);
        ASSERT_EQ(count_lines_with(out3, "le=\"0.000001\""), 1U);
}

/* ---- strings others chose, printed to the admin's terminal ------------------------------ */

/* A string as JSON text, with what rewrites a terminal: OSC (set the title) ended by BEL,
 * erase the screen, cursor up (to hide the line before), CSI as C1 (U+009B), DEL, a tab, an
 * OSC 8 hyperlink ended by ESC \, a printable é that stays, a right-to-left override
 * (U+202E), after which a terminal that does bidi shows "gnp.exe" as "exe.png", and what shows
 * as nothing or breaks the line: a zero-width space (U+200B), a line separator (U+2028) and a
 * tag character (U+E0041, a surrogate pair in JSON). */
#define HOSTILE                                                                                    \
        "x\\u001b]0;pwned\\u0007\\u001b[2J\\u001b[1A\\u009b31m\\u007f\\t"                          \
        "\\u001b]8;;http://e.example/\\u001b\\\\L\\u001b]8;;\\u001b\\\\|\\u00e9\\u202egnp.exe"            \
        "\\u200bx\\u2028y\\udb40\\udc41"
/* The same, as tsmctl shows it. */
#define HOSTILE_ESCAPED                                                                            \
        "x\\x1b]0;pwned\\a\\x1b[2J\\x1b[1A\\xc2\\x9b31m\\x7f\\t"                                   \
        "\\x1b]8;;http://e.example/\\x1b\\L\\x1b]8;;\\x1b\\|\xc3\xa9\\xe2\\x80\\xaegnp.exe"          \
        "\\xe2\\x80\\x8bx\\xe2\\x80\\xa8y\\xf3\\xa0\\x81\\x81"

/* Fails unless text is valid UTF-8 with no control character but newline (no C0, DEL or C1),
 * no bidirectional formatting character and none of those below that show as nothing or break
 * a line. Decoded here on its own, not with the code under test. */
static void assert_terminal_safe(const char *what, const char *text) {
        const unsigned char *p = (const unsigned char *) text;

        for (size_t i = 0; p[i];) {
                uint32_t cp = p[i], min;
                size_t n;

                if (cp < 0x80)
                        n = 1, min = 0;
                else if ((cp & 0xe0) == 0xc0)
                        n = 2, cp &= 0x1f, min = 0x80;
                else if ((cp & 0xf0) == 0xe0)
                        n = 3, cp &= 0x0f, min = 0x800;
                else if ((cp & 0xf8) == 0xf0)
                        n = 4, cp &= 0x07, min = 0x10000;
                else
                        TEST_FAIL("%s: byte 0x%02x at %zu is no UTF-8:\n%s", what, p[i], i, text);
                for (size_t k = 1; k < n; k++) {
                        if ((p[i + k] & 0xc0) != 0x80)
                                TEST_FAIL("%s: truncated UTF-8 at %zu:\n%s", what, i, text);
                        cp = cp << 6 | (p[i + k] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        TEST_FAIL("%s: invalid UTF-8 (U+%04X) at %zu:\n%s", what, cp, i, text);
                if ((cp < 0x20 && cp != '\n') || (cp >= 0x7f && cp <= 0x9f))
                        TEST_FAIL("%s: control character U+%04X at %zu:\n%s", what, cp, i, text);
                if (cp == 0x61c || cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
                    (cp >= 0x2066 && cp <= 0x2069))
                        TEST_FAIL("%s: bidirectional formatting character U+%04X at %zu:\n%s", what, cp, i, text);
                if (cp == 0xad || (cp >= 0x200b && cp <= 0x200d) || cp == 0x2028 || cp == 0x2029 ||
                    (cp >= 0x2060 && cp <= 0x2064) || cp == 0xfeff || (cp >= 0xe0000 && cp <= 0xe0fff))
                        TEST_FAIL("%s: invisible character U+%04X at %zu:\n%s", what, cp, i, text);
                i += n;
        }
}

/* Runs tsmctl args... against a fake tsmd at path answering replies (len bytes: NUL-terminated
 * messages); its exit status, stdout and stderr, both checked to be safe for a terminal. */
static int run_fake(const char *path, const char *const *args, const char *replies, size_t len, char **ret_out,
                    char **ret_err) {
        const char *argv[16] = { TSMCTL_PATH, "--socket", path };
        size_t n = 3;
        pid_t pid = fake_tsmd_replies(path, replies, len);
        int status;

        for (size_t i = 0; args[i]; i++) {
                ASSERT_TRUE(n + 1 < ELEMENTSOF(argv));
                argv[n++] = args[i];
        }
        status = run_capture(argv, ret_out, ret_err, 10 * 1000000ULL);
        (void) kill(pid, SIGKILL);
        ASSERT_EQ(waitpid(pid, NULL, 0), pid);
        ASSERT_OK(unlink(path));
        assert_terminal_safe(strf("tsmctl %s: stdout", args[0]), *ret_out);
        assert_terminal_safe(strf("tsmctl %s: stderr", args[0]), *ret_err);
        ASSERT_TRUE(WIFEXITED(status));
        return WEXITSTATUS(status);
}

/* A fake tsmd at path that, before it answers reply to the one call, writes what
 * /proc/<pid>/status says of its peer (SO_PEERCRED) to status_path. */
static pid_t fake_tsmd_reading_peer(const char *path, const char *status_path, const char *reply) {
        int l = fake_tsmd_listen(path);
        pid_t pid;

        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                _cleanup_free_ char *status = NULL;
                struct ucred ucred;
                socklen_t len = sizeof(ucred);
                int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
                char ch;

                if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &ucred, &len) < 0)
                        _exit(1);
                /* tsmctl waits for the answer: the process read is the one that called. */
                while (read(fd, &ch, 1) == 1 && ch != 0)
                        ;
                status = read_file(strf("/proc/%d/status", (int) ucred.pid));
                if (!status)
                        _exit(2);
                write_file(status_path, status);
                if (write(fd, reply, strlen(reply) + 1) != (ssize_t) strlen(reply) + 1)
                        _exit(3);
                while (read(fd, &ch, 1) > 0)
                        ;
                _exit(0);
        }
        close(l);
        return pid;
}

/* The value of field (as "CapEff:") in a /proc/<pid>/status text; aborts the test without it. */
static const char *status_field(const char *status, const char *field) {
        static char value[64];
        const char *p = strstr(status, field);
        size_t n;

        if (!p)
                TEST_FAIL("no %s in:\n%s", field, status);
        p += strlen(field);
        p += strspn(p, " \t");
        n = strcspn(p, "\n");
        ASSERT_TRUE(n < sizeof(value));
        memcpy(value, p, n);
        value[n] = 0;
        return value;
}

/* tsmd.service's ExecReload= runs tsmctl as root with the unit's capabilities, and tsmctl parses
 * what the worker answers: it keeps no capability for that (none in any set, the bounding set
 * too, no-new-privileges), as its peer sees it while it waits for the answer, and its uid,
 * which the policy names administrators by. */
TEST(tsmctl_drops_every_capability) {
        _cleanup_free_ char *out = NULL, *err = NULL, *status = NULL, *mine = NULL;
        const char *path = fake_socket_path("fake-caps");
        _cleanup_free_ char *status_path = strdup(strf("%s.status", path));
        const char *argv[] = { TSMCTL_PATH, "--socket", path, "reload", NULL };
        pid_t pid;
        int st;

        if (geteuid() != 0)
                SKIP("needs root (a process with capabilities to drop)");
        /* Otherwise the test proves nothing: tsmctl starts with what this process has. */
        mine = read_file("/proc/self/status");
        ASSERT_NOT_NULL(mine);
        if (streq(status_field(mine, "CapBnd:"), "0000000000000000"))
                SKIP("this process has an empty bounding set");

        ASSERT_NOT_NULL(status_path);
        pid = fake_tsmd_reading_peer(path, status_path, "{\"parameters\":{}}");
        st = run_capture(argv, &out, &err, 10 * 1000000ULL);
        ASSERT_EQ(waitpid(pid, NULL, 0), pid);
        ASSERT_OK(unlink(path));
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                TEST_FAIL("tsmctl reload: %s %d: %s", WIFEXITED(st) ? "exit" : "signal",
                          WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), err);
        status = read_file(status_path);
        ASSERT_NOT_NULL(status);
        ASSERT_OK(unlink(status_path));

        ASSERT_STREQ(status_field(status, "CapInh:"), "0000000000000000");
        ASSERT_STREQ(status_field(status, "CapPrm:"), "0000000000000000");
        ASSERT_STREQ(status_field(status, "CapEff:"), "0000000000000000");
        ASSERT_STREQ(status_field(status, "CapBnd:"), "0000000000000000");
        ASSERT_STREQ(status_field(status, "CapAmb:"), "0000000000000000");
        ASSERT_STREQ(status_field(status, "NoNewPrivs:"), "1");
        ASSERT_TRUE(strneq(status_field(status, "Uid:"), "0\t0\t0\t0", 7));
}

/* The value of the JSON string HOSTILE. */
static json_object *hostile_value(void) {
        json_object *v = json_tokener_parse("\"" HOSTILE "\"");

        ASSERT_TRUE(json_object_is_type(v, json_type_string));
        return v;
}

/* Every table and text verb shows the strings of tsmd's reply escaped (whoever chose them: a
 * VMM, a file, sysfs, a compromised worker, whatever answers at the socket), errors too; none
 * reaches the terminal as it is. */
TEST(hostile_strings_are_escaped) {
#define S "\"" HOSTILE "\""
        static const struct {
                const char *args[4], *reply;
                unsigned n_escaped; /* how many times HOSTILE_ESCAPED is printed */
                int status;
                const char *shown; /* printed too, if not NULL */
        } cases[] = {
                { { "status" },
                  "{\"parameters\":{\"version\":" S ",\"configuration\":{\"source\":\"last_good\",\"failedUsec\":"
                  "1000000,\"loadedUsec\":1000000,\"error\":" S ",\"configFile\":" S ",\"policyFile\":" S
                  ",\"policyDropInDirectory\":" S "}}}",
                  5, 0 },
                { { "status" }, "{\"parameters\":{\"configuration\":{\"source\":" S "}}}", 1, 0 },
                { { "backends" },
                  "{\"parameters\":{\"platform\":" S ",\"backends\":[{\"tsm\":" S ",\"type\":" S
                  ",\"parentDriver\":" S ",\"uapi\":" S ",\"devices\":1}]}}",
                  5, 0 },
                { { "devices" },
                  "{\"parameters\":{\"devices\":[{\"pciAddress\":" S ",\"dsm\":" S ",\"tsm\":" S ",\"backend\":" S
                  ",\"state\":" S ",\"owner\":{\"uid\":1,\"pid\":2,\"unit\":" S ",\"context\":3,\"vdeviceId\":4,"
                  "\"bound\":true,\"changing\":false,\"reclaimable\":false}}]}}",
                  5, 0 },
                { { "clients" },
                  "{\"parameters\":{\"clients\":[{\"uid\":1,\"gid\":1,\"pid\":1,\"unit\":" S
                  ",\"contexts\":0,\"vdevices\":0,\"calls\":0}]}}",
                  1, 0 },
                { { "audit" },
                  "{\"parameters\":{\"records\":[{\"seq\":1,\"time\":" S ",\"event\":" S ",\"uid\":1,\"unit\":" S
                  ",\"pci\":" S ",\"scope\":" S ",\"result\":" S ",\"method\":" S "}]}}",
                  5, 0 },
                { { "info" },
                  "{\"parameters\":{\"vendor\":" S ",\"product\":" S ",\"version\":" S ",\"url\":" S
                  ",\"interfaces\":[" S "]}}",
                  5, 0 },
                { { "introspect", "io.x" }, "{\"parameters\":{\"description\":\"interface io.x\\n" HOSTILE "\\n\"}}",
                  1, 0 },
                /* Errors: libtsm's message of the parameters has '?' for each control
                 * character already; a name that is no Varlink error name is a protocol
                 * violation (libtsm), never printed. */
                { { "devices" }, "{\"error\":\"io.tsmd.Evil\",\"parameters\":{\"why\":" S "}}", 0, 1,
                  "io.tsmd.Evil why=x?]0;pwned??[2J?[1A?31m??" },
                { { "monitor" }, "{\"error\":\"io.tsmd.Evil\",\"parameters\":{\"why\":" S "}}", 0, 1,
                  "io.tsmd.Evil why=x?]0;pwned??[2J?[1A?31m??" },
                { { "devices" }, "{\"error\":\"io.tsmd.Evil" HOSTILE "\",\"parameters\":{\"why\":" S "}}", 0, 1,
                  "broke the Varlink protocol" },
                { { "monitor" }, "{\"error\":\"io.tsmd.Evil" HOSTILE "\",\"parameters\":{\"why\":" S "}}", 0, 1,
                  "broke the Varlink protocol" },
        };
#undef S
        const char *path = fake_socket_path("fake-hostile");

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *out = NULL, *err = NULL, *both = NULL;
                int status = run_fake(path, cases[i].args, cases[i].reply, strlen(cases[i].reply) + 1, &out, &err);

                ASSERT_TRUE(asprintf(&both, "%s%s", out, err) > 0);
                printf("# tsmctl %s:\n", cases[i].args[0]);
                print_comment(both);
                if (status != cases[i].status || count_lines_with(both, HOSTILE_ESCAPED) != cases[i].n_escaped)
                        TEST_FAIL("case %zu, tsmctl %s: exit %d, %u escaped strings, expected exit %d and %u:\n%s", i,
                                  cases[i].args[0], status, count_lines_with(both, HOSTILE_ESCAPED), cases[i].status,
                                  cases[i].n_escaped, both);
                if (cases[i].shown && !strstr(both, cases[i].shown))
                        TEST_FAIL("case %zu, tsmctl %s: \"%s\" not shown:\n%s", i, cases[i].args[0], cases[i].shown,
                                  both);
                if (streq(cases[i].args[0], "introspect"))
                        ASSERT_TRUE(strneq(out, "interface io.x\n", 15)); /* the IDL's own newlines stay */
        }
}

/* monitor prints each record as it comes, escaped as audit does. */
TEST(monitor_escapes_records) {
        static const char replies[] =
                "{\"parameters\":{},\"continues\":true}\0"
                "{\"parameters\":{\"record\":{\"seq\":7,\"time\":\"" HOSTILE "\",\"event\":\"" HOSTILE
                "\",\"uid\":1,\"pci\":\"" HOSTILE "\",\"scope\":\"" HOSTILE "\",\"result\":\"" HOSTILE "\"}}}";
        const char *args[] = { "monitor", NULL };
        _cleanup_free_ char *out = NULL, *err = NULL;

        ASSERT_EQ(run_fake(fake_socket_path("fake-monitor-hostile"), args, replies, sizeof(replies), &out, &err), 0);
        ASSERT_TRUE(strneq(out, "SEQ ", 4));
        ASSERT_EQ(count_lines_with(out, HOSTILE_ESCAPED), 5U);
}

/* The files changed on disk are paths, escaped as every path tsmctl prints; past those tsmd
 * names (their paths too long together), their count says how many more. */
TEST(status_changed_on_disk_is_escaped_and_counted) {
        static const char reply[] = "{\"parameters\":{\"version\":\"1\",\"uptimeUsec\":1,\"limits\":{},"
                                    "\"configuration\":{\"source\":\"disk\",\"changedOnDisk\":[\"/etc/tsmd/" HOSTILE
                                    ".conf\",\"/etc/tsmd/policy.conf\"],\"changedOnDiskCount\":5},"
                                    "\"audit\":{\"state\":\"ok\"}}}";
        const char *args[] = { "status", NULL };
        _cleanup_free_ char *out = NULL, *err = NULL;

        ASSERT_EQ(run_fake(fake_socket_path("fake-status-changed"), args, reply, sizeof(reply), &out, &err), 0);
        print_comment(out);
        ASSERT_NOT_NULL(strstr(out, "\n      Changed: on disk since the load, not in force until 'tsmctl reload':\n"
                                    "               /etc/tsmd/" HOSTILE_ESCAPED ".conf\n"
                                    "               /etc/tsmd/policy.conf\n"
                                    "               and 3 more\n"));
        assert_terminal_safe("tsmctl status", out);
}

/* A record of nobody's (a worker's restart, a reload by a SIGHUP the kernel sent) has a null uid: "-", not root's
 * 0, in audit and in monitor alike. */
TEST(audit_record_of_no_uid_shows_none) {
        static const char audit[] = "{\"parameters\":{\"records\":[{\"seq\":1,\"event\":\"reload\",\"uid\":null},"
                                    "{\"seq\":2,\"event\":\"ping\",\"uid\":0}]}}",
                          monitor[] = "{\"parameters\":{},\"continues\":true}\0"
                                      "{\"parameters\":{\"record\":{\"seq\":1,\"event\":\"reload\",\"uid\":null}}}";
        const char *audit_args[] = { "audit", NULL }, *monitor_args[] = { "monitor", NULL };
        _cleanup_free_ char *out = NULL, *err = NULL, *out2 = NULL, *err2 = NULL;
        char seq[16], time[16], event[16], uid[16];

        ASSERT_EQ(run_fake(fake_socket_path("fake-no-uid"), audit_args, audit, sizeof(audit), &out, &err), 0);
        ASSERT_EQ(sscanf(strchr(out, '\n') + 1, "%15s %15s %15s %15s", seq, time, event, uid), 4);
        ASSERT_STREQ(event, "reload");
        ASSERT_STREQ(uid, "-");
        ASSERT_EQ(sscanf(strchr(strchr(out, '\n') + 1, '\n') + 1, "%15s %15s %15s %15s", seq, time, event, uid), 4);
        ASSERT_STREQ(uid, "0");

        ASSERT_EQ(run_fake(fake_socket_path("fake-monitor-no-uid"), monitor_args, monitor, sizeof(monitor), &out2,
                           &err2), 0);
        ASSERT_EQ(sscanf(strchr(out2, '\n') + 1, "%15s %15s %15s %15s", seq, time, event, uid), 4);
        ASSERT_STREQ(uid, "-");
}

/* A reply that says tsmd passed over damaged lines of the log is not shown as if whole: a warning
 * on stderr (the exit stays 0: the records shown are the log's), and --json keeps the count. */
TEST(audit_warns_of_damage) {
        static const char reply[] = "{\"parameters\":{\"records\":[{\"seq\":1,\"event\":\"reload\"},"
                                    "{\"seq\":3,\"event\":\"reload\"}],\"damaged\":2}}",
                          whole[] = "{\"parameters\":{\"records\":[{\"seq\":1,\"event\":\"reload\"}]}}";
        const char *args[] = { "audit", NULL }, *json_args[] = { "audit", "--json", NULL };
        _cleanup_free_ char *out = NULL, *err = NULL, *out2 = NULL, *err2 = NULL, *out3 = NULL, *err3 = NULL;
        _cleanup_(json_object_putp) json_object *o = NULL;

        ASSERT_EQ(run_fake(fake_socket_path("fake-damaged"), args, reply, sizeof(reply), &out, &err), 0);
        ASSERT_EQ(count_lines(out), 3U);
        ASSERT_NOT_NULL(strstr(err, "damaged"));
        ASSERT_NOT_NULL(strstr(err, "passed over 2 lines"));

        ASSERT_EQ(run_fake(fake_socket_path("fake-damaged-json"), json_args, reply, sizeof(reply), &out2, &err2), 0);
        o = json_tokener_parse(out2);
        ASSERT_NOT_NULL(o);
        ASSERT_EQ(json_object_get_int64(json_object_object_get(o, "damaged")), 2);
        ASSERT_NOT_NULL(strstr(err2, "passed over 2 lines"));

        ASSERT_EQ(run_fake(fake_socket_path("fake-whole"), args, whole, sizeof(whole), &out3, &err3), 0);
        ASSERT_NULL(strstr(err3, "damaged"));
}

/* A summary record stands for count calls: its row says so at the end of RESULT ("x2968"), in
 * audit and in monitor alike, where 33 rows looked like 33 calls; a record without a count has
 * none. --json keeps the record as it is. */
TEST(audit_shows_a_summary_count) {
        static const char audit[] = "{\"parameters\":{\"records\":[{\"seq\":1,\"event\":\"refusal\",\"uid\":7,"
                                    "\"result\":\"io.tsmd.Guest.Denied\",\"count\":2968},"
                                    "{\"seq\":2,\"event\":\"refusal\",\"uid\":7,\"result\":\"io.tsmd.Guest.Denied\"}]}}",
                          monitor[] = "{\"parameters\":{},\"continues\":true}\0"
                                      "{\"parameters\":{\"record\":{\"seq\":1,\"event\":\"refusal\",\"uid\":7,"
                                      "\"result\":\"io.tsmd.Guest.Denied\",\"count\":2968}}}";
        const char *audit_args[] = { "audit", NULL }, *monitor_args[] = { "monitor", NULL },
                   *json_args[] = { "audit", "--json", NULL };
        _cleanup_free_ char *out = NULL, *err = NULL, *out2 = NULL, *err2 = NULL, *out3 = NULL, *err3 = NULL;
        const char *row1, *row2;

        ASSERT_EQ(run_fake(fake_socket_path("fake-summary"), audit_args, audit, sizeof(audit), &out, &err), 0);
        row1 = strchr(out, '\n') + 1;
        row2 = strchr(row1, '\n') + 1;
        ASSERT_TRUE(strneq(strchr(row1, '\n') - strlen("io.tsmd.Guest.Denied x2968"), "io.tsmd.Guest.Denied x2968",
                           strlen("io.tsmd.Guest.Denied x2968")));
        ASSERT_TRUE(strneq(strchr(row2, '\n') - strlen(" io.tsmd.Guest.Denied"), " io.tsmd.Guest.Denied",
                           strlen(" io.tsmd.Guest.Denied")));
        ASSERT_EQ(count_lines_with(out, " x"), 1U);

        ASSERT_EQ(run_fake(fake_socket_path("fake-summary-monitor"), monitor_args, monitor, sizeof(monitor), &out2,
                           &err2), 0);
        ASSERT_NOT_NULL(strstr(out2, "io.tsmd.Guest.Denied x2968\n"));

        ASSERT_EQ(run_fake(fake_socket_path("fake-summary-json"), json_args, audit, sizeof(audit), &out3, &err3), 0);
        ASSERT_NULL(strstr(out3, "x2968"));
        ASSERT_NOT_NULL(strstr(out3, "2968"));
}

/* A scope a VMM sent, recorded as sent, may hold spaces: a table shows them escaped (\x20, and
 * a no-break space as \xc2\xa0), so that every row has its columns, where "debug read" looked
 * like a scope "debug" and a latency "read"; --json shows the value as it is. */
TEST(audit_escapes_spaces_in_cells) {
        static const char audit[] = "{\"parameters\":{\"records\":[{\"seq\":1,\"time\":\"2024-05-06T07:08:09.123456Z\","
                                    "\"event\":\"guest-request\",\"uid\":7,\"pci\":\"0000:01:00.0\","
                                    "\"scope\":\"debug read\\u00a0x\",\"latencyUsec\":5,"
                                    "\"result\":\"io.tsmd.Guest.NoSuchScope\"}]}}",
                          monitor[] = "{\"parameters\":{},\"continues\":true}\0"
                                      "{\"parameters\":{\"record\":{\"seq\":1,\"event\":\"guest-request\",\"uid\":7,"
                                      "\"scope\":\"a b\",\"result\":\"ok\"}}}";
        const char *audit_args[] = { "audit", NULL }, *monitor_args[] = { "monitor", NULL },
                   *json_args[] = { "audit", "--json", NULL };
        _cleanup_free_ char *out = NULL, *err = NULL, *out2 = NULL, *err2 = NULL, *out3 = NULL, *err3 = NULL;
        const char *path = fake_socket_path("fake-spaces");
        char cells[9][64];

        ASSERT_EQ(run_fake(path, audit_args, audit, sizeof(audit), &out, &err), 0);
        ASSERT_EQ(sscanf(strchr(out, '\n') + 1, "%63s %63s %63s %63s %63s %63s %63s %63s %63s", cells[0], cells[1],
                         cells[2], cells[3], cells[4], cells[5], cells[6], cells[7], cells[8]),
                  8);
        ASSERT_STREQ(cells[5], "debug\\x20read\\xc2\\xa0x");
        ASSERT_STREQ(cells[6], "5us");
        ASSERT_STREQ(cells[7], "io.tsmd.Guest.NoSuchScope");

        ASSERT_EQ(run_fake(path, monitor_args, monitor, sizeof(monitor), &out2,
                           &err2), 0);
        ASSERT_NOT_NULL(strstr(out2, " a\\x20b "));

        ASSERT_EQ(run_fake(path, json_args, audit, sizeof(audit), &out3, &err3), 0);
        ASSERT_NOT_NULL(strstr(out3, "\"debug read\xc2\xa0x\""));

        /* The other tables' cells alike: a client's unit, a device's TSM. */
        {
                static const char clients[] = "{\"parameters\":{\"clients\":[{\"uid\":1,\"gid\":1,\"pid\":1,"
                                              "\"unit\":\"a b.service\",\"contexts\":0,\"vdevices\":0,\"calls\":0}]}}",
                                  devices[] = "{\"parameters\":{\"devices\":[{\"pciAddress\":\"0000:01:00.0\","
                                              "\"tsm\":\"tsm 0\",\"backend\":\"emulated\",\"state\":\"run\"}]}}";
                const char *clients_args[] = { "clients", NULL }, *devices_args[] = { "devices", NULL };
                _cleanup_free_ char *out4 = NULL, *err4 = NULL, *out5 = NULL, *err5 = NULL;

                ASSERT_EQ(run_fake(path, clients_args, clients, sizeof(clients),
                                   &out4, &err4), 0);
                ASSERT_NOT_NULL(strstr(out4, " a\\x20b.service\n"));
                ASSERT_EQ(run_fake(path, devices_args, devices, sizeof(devices),
                                   &out5, &err5), 0);
                ASSERT_NOT_NULL(strstr(out5, " tsm\\x200 "));
        }
}

/* The global options also after the verb, as systemctl reads them: "tsmctl audit --json" is
 * "tsmctl --json audit"; after a "--" they are the verb's. */
TEST(global_options_after_the_verb) {
        static const char reply[] = "{\"parameters\":{\"records\":[{\"seq\":1,\"event\":\"reload\"}]}}";
        const char *json_after[] = { "audit", "--json", "--timeout", "5", NULL },
                   *no_value[] = { "audit", "--timeout", NULL }, *after_dashes[] = { "audit", "--", "--json", NULL };
        _cleanup_free_ char *out = NULL, *err = NULL, *out2 = NULL, *err2 = NULL, *out3 = NULL, *err3 = NULL;
        _cleanup_(json_object_putp) json_object *parsed = NULL;

        ASSERT_EQ(run_fake(fake_socket_path("fake-json-after"), json_after, reply, sizeof(reply), &out, &err), 0);
        parsed = json_tokener_parse(out);
        ASSERT_NOT_NULL(parsed);
        ASSERT_EQ(json_object_array_length(json_get_array(parsed, "records")), 1U);

        ASSERT_EQ(run_fake(fake_socket_path("fake-no-value"), no_value, reply, sizeof(reply), &out2, &err2), 2); /* usage */
        ASSERT_NOT_NULL(strstr(err2, "--timeout needs a value"));
        /* audit takes no argument: "--json" after "--" is one. */
        ASSERT_EQ(run_fake(fake_socket_path("fake-dashes"), after_dashes, reply, sizeof(reply), &out3, &err3), 2);
}

/* Label values in the metrics: Prometheus's escapes (backslash, quote, newline) after the
 * terminal's, so the text stays valid for a scraper too. */
TEST(metrics_labels_escaped) {
        static const char reply[] = "{\"parameters\":{\"counters\":[{\"dimension\":\"scope\",\"key\":\"" HOSTILE
                                    "\\\"\\n\",\"calls\":1,\"errors\":0,\"latencySumUsec\":1,"
                                    "\"latencyBuckets\":[1]}]}}";
        const char *args[] = { "metrics", NULL };
        _cleanup_free_ char *out = NULL, *err = NULL, *label = NULL;
        size_t n = 0;

        ASSERT_EQ(run_fake(fake_socket_path("fake-metrics-hostile"), args, reply, sizeof(reply), &out, &err), 0);
        /* HOSTILE_ESCAPED with its backslashes doubled, then the quote and newline. */
        label = malloc(2 * sizeof(HOSTILE_ESCAPED) + 8);
        ASSERT_NOT_NULL(label);
        for (const char *p = HOSTILE_ESCAPED; *p; p++) {
                if (*p == '\\')
                        label[n++] = '\\';
                label[n++] = *p;
        }
        strcpy(label + n, "\\\"\\n\"");
        ASSERT_EQ(count_lines_with(out, label), 5U); /* calls, errors, +Inf bucket, sum, count */
}

/* The display column at which p starts in its line: a column per code point, but two for the
 * CJK ideographs (U+4E00..U+9FFF) and none for the combining diacritics (U+0300..U+036F), the
 * only wide and zero-width characters the cases below use. */
static size_t display_column(const char *line, const char *p) {
        size_t col = 0;

        for (const unsigned char *c = (const unsigned char *) line; c < (const unsigned char *) p; c++) {
                if ((*c & 0xc0) == 0x80)
                        continue; /* a continuation byte */
                if (*c >= 0xe4 && *c <= 0xe9)
                        col += 2; /* U+4000..U+9FFF: the cases use ideographs only there */
                else if (*c == 0xcc || (*c == 0xcd && c[1] <= 0xaf))
                        col += 0; /* U+0300..U+036F */
                else
                        col++;
        }
        return col;
}

/* Table columns line up by what the terminal shows, not by bytes or code points: multibyte
 * UTF-8 (é, ü), wide characters (中, two columns), combining marks (e + U+0301, one column
 * for both) and escaped values in one column leave the next one where the header has it.
 * Each case: the cells of the header and the rows, in order; every cell starts at its
 * header's column. */
TEST(table_columns_align_by_display_width) {
#define MAX_CELLS 9
        static const struct {
                const char *verb, *reply;
                const char *rows[4][MAX_CELLS];
        } cases[] = {
                { "devices",
                  "{\"parameters\":{\"devices\":[{\"pciAddress\":\"0000:01:00.0\",\"tsm\":\"em\\u00fc\","
                  "\"backend\":\"tdx-\\u00fc\\u00fc\",\"state\":\"CONFIG_LOCKED\"},{\"pciAddress\":\"d\\u00e9v\","
                  "\"dsm\":\"d\\u00e9\\u001b\",\"tsm\":\"e\\u001b\",\"backend\":\"b\\u001b[1m\\u00e9\",\"state\":\"RUN\"},"
                  "{\"pciAddress\":\"0000:03:00.1\",\"dsm\":\"0000:03:00.0\",\"tsm\":\"x\",\"backend\":\"plain\","
                  "\"state\":\"ERROR\"}]}}",
                  { { "DEVICE", "DSM", "TSM", "BACKEND", "STATE", "OWNER" },
                    { "0000:01:00.0", "-", "em\xc3\xbc", "tdx-\xc3\xbc\xc3\xbc", "CONFIG_LOCKED", "-" },
                    { "d\xc3\xa9v", "d\xc3\xa9\\x1b", "e\\x1b", "b\\x1b[1m\xc3\xa9", "RUN", "-" },
                    { "0000:03:00.1", "0000:03:00.0", "x", "plain", "ERROR", "-" } } },
                { "devices",
                  "{\"parameters\":{\"devices\":[{\"pciAddress\":\"0000:01:00.0\",\"tsm\":\"\\u4e2d\\u6587\","
                  "\"backend\":\"te\\u0301st\",\"state\":\"RUN\"},{\"pciAddress\":\"0000:02:00.0\",\"tsm\":\"ab\","
                  "\"backend\":\"b\",\"state\":\"ERROR\"}]}}",
                  { { "DEVICE", "DSM", "TSM", "BACKEND", "STATE", "OWNER" },
                    { "0000:01:00.0", "-", "\xe4\xb8\xad\xe6\x96\x87", "te\xcc\x81st", "RUN", "-" },
                    { "0000:02:00.0", "-", "ab", "b", "ERROR", "-" } } },
                { "backends",
                  "{\"parameters\":{\"platform\":\"p\",\"backends\":[{\"tsm\":\"em\\u00fc\",\"type\":"
                  "\"t\\u0007\\u00e9\",\"parentDriver\":\"dr\\u00fc\",\"uapi\":\"1.\\u00e9\",\"devices\":1},"
                  "{\"tsm\":\"e\",\"type\":\"plain\",\"parentDriver\":\"d\",\"uapi\":\"2\",\"devices\":2}]}}",
                  { { "TSM", "TYPE", "DRIVER", "UAPI", "DEVICES" },
                    { "em\xc3\xbc", "t\\a\xc3\xa9", "dr\xc3\xbc", "1.\xc3\xa9", "1" },
                    { "e", "plain", "d", "2", "2" } } },
                { "audit",
                  "{\"parameters\":{\"records\":[{\"seq\":1,\"time\":\"2025-01-01 00:00:00\",\"event\":"
                  "\"\\u00e9v\\u00e9nt\\u0007\",\"uid\":0,\"pci\":\"0000:0\\u00fc:00.0\",\"scope\":\"s\\u00e7ope\","
                  "\"latencyUsec\":12,\"result\":\"ok\"},{\"seq\":22,\"time\":\"t\\u00e9\",\"event\":\"open\","
                  "\"uid\":1000,\"pci\":\"-\",\"scope\":\"tsm\",\"result\":\"denied\"},{\"seq\":333,\"event\":"
                  "\"io.tsmd.Admin.ListBackends\",\"uid\":0,\"result\":\"ok\"}]}}",
                  { { "SEQ", "TIME", "EVENT", "UID", "DEVICE", "SCOPE", "LATENCY", "RESULT" },
                    /* A time not of tsmd's form is shown as it came, its space escaped as a cell's. */
                    { "1", "2025-01-01\\x2000:00:00", "\xc3\xa9v\xc3\xa9nt\\a", "0", "0000:0\xc3\xbc:00.0", "s\xc3\xa7ope",
                      "12us", "ok" },
                    { "22", "t\xc3\xa9", "open", "1000", "-", "tsm", "-", "denied" },
                    /* An administrator's call: the longest event, which sizes its column. */
                    { "333", "-", "io.tsmd.Admin.ListBackends", "0", "-", "-", "-", "ok" } } },
        };
        const char *path = fake_socket_path("fake-columns");

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *out = NULL, *err = NULL;
                const char *args[] = { cases[i].verb, NULL };
                size_t header[MAX_CELLS] = {};
                const char *line;

                ASSERT_EQ(run_fake(path, args, cases[i].reply, strlen(cases[i].reply) + 1, &out, &err), 0);
                printf("# tsmctl %s:\n", cases[i].verb);
                print_comment(out);
                line = strstr(out, cases[i].rows[0][0]); /* the header, after what comes before it */
                ASSERT_NOT_NULL(line);
                for (size_t r = 0; r < ELEMENTSOF(cases[i].rows) && cases[i].rows[r][0]; r++) {
                        const char *end = strchrnul(line, '\n'), *p = line;

                        for (size_t c = 0; c < MAX_CELLS && cases[i].rows[r][c]; c++) {
                                p = strstr(p, cases[i].rows[r][c]);
                                if (!p || p >= end)
                                        TEST_FAIL("tsmctl %s: row %zu has no '%s' after its cell %zu:\n%s", cases[i].verb,
                                                  r, cases[i].rows[r][c], c, out);
                                if (r == 0)
                                        header[c] = display_column(line, p);
                                else if (display_column(line, p) != header[c])
                                        TEST_FAIL("tsmctl %s: row %zu's '%s' starts at column %zu, its header at %zu:\n%s",
                                                  cases[i].verb, r, cases[i].rows[r][c], display_column(line, p),
                                                  header[c], out);
                                p += strlen(cases[i].rows[r][c]);
                        }
                        ASSERT_EQ(*end, '\n');
                        line = end + 1;
                }
                ASSERT_EQ(*line, '\0'); /* one line per row, no more */
        }
#undef MAX_CELLS
}

/* A reply that is not UTF-8 never gets as far as tsmctl's output: libtsm's strict parser
 * refuses it (a protocol error: a failure, exit 1, not "not reachable": something answered). */
TEST(reply_not_utf8_refused) {
        static const char reply[] = "{\"parameters\":{\"devices\":[{\"pciAddress\":\"\x9b" "31m\xff\xc3\"}]}}";
        const char *args[] = { "devices", NULL };
        _cleanup_free_ char *out = NULL, *err = NULL;

        ASSERT_EQ(run_fake(fake_socket_path("fake-not-utf8"), args, reply, sizeof(reply), &out, &err), 1);
        ASSERT_NOT_NULL(strstr(err, "broke the Varlink protocol (Protocol error)"));
}

/* Whatever breaks the protocol (libtsm's -EPROTO: no JSON, a reply to no call, a reply that is
 * no object) is exit 1, for a call and for monitor's stream alike: exit 7 says nobody answered,
 * which a script may mend by starting tsmd or waiting, and a broken answer is no such thing. */
TEST(protocol_errors_are_failures_not_unreachable) {
#define R(text) text, sizeof(text) /* NUL-terminated, one reply after another */
        static const struct {
                const char *args[2], *replies;
                size_t len;
        } cases[] = {
                { { "devices" }, R("not json at all") },
                { { "status" }, R("[1,2,3]") },
                { { "monitor" }, R("{\"parameters\":{},\"continues\":true}\0{\"bogus\":") },
                { { "monitor" }, R("{\"parameters\":{},\"continues\":true}\0\"a string\"") },
        };
#undef R

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *out = NULL, *err = NULL;
                int status = run_fake(fake_socket_path("fake-proto"), cases[i].args, cases[i].replies, cases[i].len,
                                      &out, &err);

                if (status != 1 || !strstr(strempty(err), "broke the Varlink protocol"))
                        TEST_FAIL("tsmctl %s, case %zu: exit %d, expected 1: %s", cases[i].args[0], i, status,
                                  strempty(err));
        }
}

/* --json (and call, and monitor --json) stays JSON with the same values: json-c escapes the C0
 * controls, tsmctl the DEL, C1 and bidirectional ones json-c writes as they are. */
TEST(json_output_keeps_values_and_is_terminal_safe) {
        static const char devices[] = "{\"parameters\":{\"devices\":[{\"pciAddress\":\"" HOSTILE "\"}]}}";
        static const char followed[] = "{\"parameters\":{},\"continues\":true}\0"
                                       "{\"parameters\":{\"record\":{\"seq\":1,\"pci\":\"" HOSTILE "\"}}}";
        static const struct {
                const char *args[4], *replies;
                size_t len;
                bool record;
        } cases[] = {
                { { "--json", "devices" }, devices, sizeof(devices), false },
                { { "call", "io.tsmd.Admin.ListDevices" }, devices, sizeof(devices), false },
                { { "--json", "monitor" }, followed, sizeof(followed), true },
        };
        _cleanup_(json_object_putp) json_object *want = hostile_value();
        const char *path = fake_socket_path("fake-json-hostile");

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *out = NULL, *err = NULL;
                _cleanup_(json_object_putp) json_object *o = NULL;
                json_object *item;

                ASSERT_EQ(run_fake(path, cases[i].args, cases[i].replies, cases[i].len, &out, &err), 0);
                o = json_tokener_parse(out);
                if (!o)
                        TEST_FAIL("tsmctl %s: not JSON: %s", cases[i].args[0], out);
                item = cases[i].record ? o
                                       : json_object_array_get_idx(json_get_array(o, "devices"), 0);
                if (!json_object_equal(json_object_object_get(item, cases[i].record ? "pci" : "pciAddress"), want))
                        TEST_FAIL("tsmctl %s: %s", cases[i].args[0], out);
                ASSERT_NOT_NULL(strstr(out, "\\u001b]0;pwned\\u0007"));
                ASSERT_NOT_NULL(strstr(out, "\\u009b31m\\u007f"));
                ASSERT_NOT_NULL(strstr(out, "\\u202egnp.exe\\u200bx\\u2028y\\udb40\\udc41"));
        }
}

/* End to end: records in tsmd's audit log are the worker's word, and a compromised worker (the
 * unprivileged user tsmd, whose files they are) can write any; a later tsmd serves them back.
 * tsmctl audit shows such a record escaped, --json as the same values. */
TEST(audit_record_in_the_log_shown_escaped) {
        _cleanup_free_ char *text = NULL, *out = NULL, *err = NULL, *json = NULL;
        _cleanup_(json_object_putp) json_object *want = hostile_value(), *last = NULL, *parsed = NULL;
        const char *line, *from;
        int64_t seq;
        Tsmd t = {};
        FILE *f;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        guest_activity(&t);
        tsmd_stop(&t);

        text = read_file(strf("%s/audit/audit.log", t.dir));
        ASSERT_NOT_NULL(text);
        ASSERT_TRUE(strlen(text) > 1 && text[strlen(text) - 1] == '\n');
        text[strlen(text) - 1] = 0;
        line = strrchr(text, '\n') ? strrchr(text, '\n') + 1 : text;
        last = json_tokener_parse(line);
        ASSERT_NOT_NULL(last);
        seq = json_object_get_int64(json_object_object_get(last, "seq")) + 1;
        f = fopen(strf("%s/audit/audit.log", t.dir), "ae");
        ASSERT_NOT_NULL(f);
        fprintf(f,
                "{\"seq\":%" PRIi64 ",\"time\":\"2026-01-01T00:00:00.000000Z\",\"monotonicUsec\":1,\"event\":\"%s\","
                "\"uid\":0,\"gid\":0,\"pid\":1,\"unit\":\"%s\",\"contextId\":null,\"vdeviceId\":null,\"pci\":\"%s\","
                "\"backend\":null,\"scope\":\"%s\",\"scopeNumber\":null,\"requestSize\":null,\"responseSize\":null,"
                "\"result\":\"%s\",\"latencyUsec\":1}\n",
                seq, HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE);
        ASSERT_EQ(fclose(f), 0);
        tsmd_restart(&t, &(TsmdOptions){});

        from = strf("--from=%" PRIi64, seq);
        {
                const char *argv[] = { TSMCTL_PATH, "--socket", t.socket, "audit", from, "--limit=1", NULL };
                ASSERT_EQ(run_capture(argv, &out, &err, 10 * 1000000ULL), 0);
        }
        print_comment(out);
        assert_terminal_safe("tsmctl audit", out);
        ASSERT_EQ(count_lines(out), 2U);
        ASSERT_EQ(count_lines_with(out, HOSTILE_ESCAPED), 4U); /* event, pci, scope, result */

        {
                const char *argv[] = { TSMCTL_PATH, "--json", "--socket", t.socket, "audit", from, "--limit=1", NULL };
                ASSERT_EQ(run_capture(argv, &json, NULL, 10 * 1000000ULL), 0);
        }
        assert_terminal_safe("tsmctl --json audit", json);
        parsed = json_tokener_parse(json);
        ASSERT_NOT_NULL(parsed);
        ASSERT_TRUE(json_object_equal(
                json_object_object_get(json_object_array_get_idx(json_get_array(parsed, "records"), 0), "event"),
                want));
        tsmd_teardown(&t);
}

/* An empty TSMD_SOCKET is unset (not libtsm's Guest socket); an empty --socket= is refused. */
TEST(empty_socket_settings) {
        _cleanup_free_ char *out = NULL, *err = NULL, *out2 = NULL, *err2 = NULL;
        int status;

        ASSERT_OK(setenv("TSMD_SOCKET", "", 1));
        {
                const char *argv[] = { TSMCTL_PATH, "devices", NULL };
                status = run_capture(argv, &out, &err, 10 * 1000000ULL);
        }
        ASSERT_TRUE(WIFEXITED(status));
        /* Unless a tsmd runs here, the default admin socket is not there: where one listens
         * elsewhere, how to name it. */
        if (WEXITSTATUS(status) != 0)
                ASSERT_NOT_NULL(strstr(err, "io.tsmd.Admin"));
        if (WEXITSTATUS(status) == 7)
                ASSERT_NOT_NULL(strstr(err, "give its admin socket with --socket=PATH or TSMD_SOCKET=PATH"));
        ASSERT_NULL(strstr(err, "io.tsmd.Guest"));
        {
                const char *argv[] = { TSMCTL_PATH, "--socket=", "devices", NULL };
                status = run_capture(argv, &out2, &err2, 10 * 1000000ULL);
        }
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 2);
}

/* --timeout= bounds the wait for an answer (a query of a large log may take longer than the
 * default 45 s); a tsmd that does not answer is "not reachable", exit 7. */
TEST(timeout_option) {
        const char *path = fake_socket_path("fake-silent");
        const char *argv[] = { TSMCTL_PATH, "--socket", path, "--timeout=1", "devices", NULL };
        _cleanup_free_ char *out = NULL, *err = NULL;
        uint64_t start;
        int status;
        pid_t pid;

        pid = fake_tsmd(path, NULL);
        start = now_usec();
        status = run_capture(argv, &out, &err, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 7);
        ASSERT_GE(now_usec() - start, 900000ULL);
        ASSERT_LE(now_usec() - start, 5000000ULL);
        ASSERT_NOT_NULL(strstr(err, "did not answer io.tsmd.Admin.ListDevices in time"));
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_OK(unlink(path));

        static const char *const bad[] = { "--timeout=", "--timeout=-1", "--timeout=1.5", "--timeout=x",
                                           "--timeout=18446744073710" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                const char *argv_bad[] = { TSMCTL_PATH, "--socket", path, bad[i], "devices", NULL };

                out = mfree(out);
                err = mfree(err);
                status = run_capture(argv_bad, &out, &err, 10 * 1000000ULL);
                ASSERT_TRUE(WIFEXITED(status));
                if (WEXITSTATUS(status) != 2)
                        TEST_FAIL("tsmctl %s: exit %d, expected 2", bad[i], WEXITSTATUS(status));
        }
}

TEST(exit_codes) {
        _cleanup_free_ char *out = NULL;
        Tsmd t = {};
        int status;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        {
                const char *argv[] = { TSMCTL_PATH, "--socket", t.socket, "nosuchverb", NULL };
                status = run_capture(argv, &out, NULL, 10 * 1000000ULL);
                ASSERT_EQ(WEXITSTATUS(status), 2);
        }
        out = mfree(out);
        {
                const char *argv[] = { TSMCTL_PATH, "--socket", t.socket, "audit", "--from=x", NULL };
                status = run_capture(argv, &out, NULL, 10 * 1000000ULL);
                ASSERT_EQ(WEXITSTATUS(status), 2);
        }
        out = mfree(out);
        {
                const char *argv[] = { TSMCTL_PATH, "--socket", "/nonexistent/socket", "devices", NULL };
                status = run_capture(argv, &out, NULL, 10 * 1000000ULL);
                ASSERT_EQ(WEXITSTATUS(status), 7);
        }
        tsmd_teardown(&t);
}

/* Runs argv with stdout on /dev/full (a full disk) and stderr in a file; its exit status
 * (bounded: a tsmctl that writes on into nothing is killed and fails the test), stderr (through
 * the file err_path) in ret_err. */
static int run_to_full(const char *const *argv, const char *err_path, char **ret_err) {
        uint64_t deadline = now_usec() + 10 * 1000000ULL;
        int status;
        pid_t pid;

        fflush(NULL);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
                int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

                if (full < 0 || err < 0 || dup2(full, 1) < 0 || dup2(err, 2) < 0)
                        _exit(127);
                execv(argv[0], (char **) argv);
                _exit(127);
        }
        while (waitpid(pid, &status, WNOHANG) == 0) {
                if (now_usec() >= deadline) {
                        (void) kill(pid, SIGKILL);
                        (void) waitpid(pid, NULL, 0);
                        TEST_FAIL("%s did not finish writing to a full disk within 10 s", argv[0]);
                }
                sleep_usec(10000);
        }
        *ret_err = read_file(err_path);
        ASSERT_TRUE(WIFEXITED(status));
        return WEXITSTATUS(status);
}

/* Output that could not be written is a failure (exit 1), not a truncated table and 0 that a
 * script takes for the whole answer; and monitor stops rather than follow into nothing. */
TEST(output_write_error_is_failure) {
        static const char monitor_replies[] = "{\"continues\":true,\"parameters\":{}}\0"
                                              "{\"continues\":true,\"parameters\":{\"record\":{\"seq\":1}}}";
        const char *path = fake_socket_path("fake-full-disk"), *err_path = fake_socket_path("stderr-full");

        /* The table, then --json. */
        for (size_t i = 0; i < 2; i++) {
                _cleanup_free_ char *err = NULL;
                const char *argv[] = { TSMCTL_PATH, "--socket", path, "devices", NULL, NULL };
                pid_t pid = fake_tsmd(path, "{\"parameters\":{\"devices\":[{\"pciAddress\":\"0000:01:00.0\"}]}}");

                if (i == 1) {
                        argv[3] = "--json";
                        argv[4] = "devices";
                }
                ASSERT_EQ(run_to_full(argv, err_path, &err), 1);
                ASSERT_NOT_NULL(strstr(err, "No space left on device"));
                (void) kill(pid, SIGKILL);
                ASSERT_EQ(waitpid(pid, NULL, 0), pid);
                ASSERT_OK(unlink(path));
        }
        {
                _cleanup_free_ char *err = NULL;
                const char *argv[] = { TSMCTL_PATH, "--socket", path, "monitor", NULL };
                pid_t pid = fake_tsmd_replies(path, monitor_replies, sizeof(monitor_replies));

                ASSERT_EQ(run_to_full(argv, err_path, &err), 1);
                ASSERT_NOT_NULL(strstr(err, "No space left on device"));
                (void) kill(pid, SIGKILL);
                ASSERT_EQ(waitpid(pid, NULL, 0), pid);
                ASSERT_OK(unlink(path));
        }
        {
                _cleanup_free_ char *err = NULL;
                const char *argv[] = { TSMCTL_PATH, "--help", NULL };

                ASSERT_EQ(run_to_full(argv, err_path, &err), 1);
        }
}

/* libtsm's names for a lost connection are anyone's to send (tsm.h maps them to -EBADR when
 * they come from tsmd): an answer that names one is that answer, exit 1, not "tsmd not
 * reachable" (exit 7), which only libtsm's own errno says. */
TEST(peer_sent_connection_error_names_are_answers) {
        static const struct {
                const char *verb, *reply;
        } cases[] = {
                { "devices", "{\"error\":\"io.tsmd.TimedOut\",\"parameters\":{}}" },
                { "devices", "{\"error\":\"io.tsmd.Disconnected\",\"parameters\":{}}" },
                { "status", "{\"error\":\"io.tsmd.Protocol\",\"parameters\":{}}" },
                { "monitor", "{\"error\":\"io.tsmd.Disconnected\",\"parameters\":{}}" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *out = NULL, *err = NULL;
                int status = run_against_full(cases[i].verb, cases[i].reply, &out, &err);

                if (status != 1 || !strstr(strempty(err), " failed: io.tsmd."))
                        TEST_FAIL("tsmctl %s on %s: exit %d, expected 1: %s", cases[i].verb, cases[i].reply,
                                  status, strempty(err));
        }
}

/* A --socket= libtsm cannot take as an address is an invalid argument (exit 2), not a tsmd
 * that is not running (exit 7), and tsmctl says what it takes. */
TEST(malformed_socket_address_is_usage_error) {
        static const char *const bad[] = { "--socket=relative/path", "--socket=unix:", "--socket=io.tsmd.Admin" };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *out = NULL, *err = NULL;
                const char *argv[] = { TSMCTL_PATH, bad[i], "devices", NULL };
                int status = run_capture(argv, &out, &err, 10 * 1000000ULL);

                ASSERT_TRUE(WIFEXITED(status));
                if (WEXITSTATUS(status) != 2)
                        TEST_FAIL("tsmctl %s: exit %d, expected 2: %s", bad[i], WEXITSTATUS(status), err);
                if (!strstr(err, "Give the socket as an absolute path (/run/tsmd/io.tsmd.Admin), ./NAME for one "
                                 "in this directory, @NAME for an abstract socket, or unix:PATH."))
                        TEST_FAIL("tsmctl %s does not say what it takes: %s", bad[i], err);
        }
}

/* The IDL's ints are 64-bit: a vDevice id (1..UINT32_MAX, as IOMMU_VDEVICE_ALLOC gives it) or
 * a uid past INT32_MAX is shown as it is, not clamped to 2147483647. */
TEST(devices_shows_large_ids) {
        _cleanup_free_ char *out = NULL;

        ASSERT_EQ(run_against("devices",
                              "{\"parameters\":{\"devices\":[{\"pciAddress\":\"0000:01:00.0\",\"owner\":{\"uid\":"
                              "3000000000,\"pid\":4000000,\"unit\":null,\"context\":5000000000,\"vdeviceId\":"
                              "4294967295,\"bound\":false,\"changing\":false,\"reclaimable\":false}}]}}",
                              &out),
                  0);
        if (!strstr(out, "uid 3000000000 pid 4000000 ctx 5000000000 vdev 4294967295"))
                TEST_FAIL("tsmctl devices:\n%s", out);
}

/* A number audit's filters cannot hold is an invalid argument (exit 2), not LLONG_MAX sent
 * in its place as if the admin had asked for that. */
TEST(audit_number_out_of_range_is_usage_error) {
        static const char *const bad[] = { "--from=99999999999999999999", "--limit=18446744073709551616",
                                           "--uid=-1", "--to=1x" };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *out = NULL, *err = NULL;
                const char *argv[] = { TSMCTL_PATH, "--socket", "/nonexistent/socket", "audit", bad[i], NULL };
                int status = run_capture(argv, &out, &err, 10 * 1000000ULL);

                ASSERT_TRUE(WIFEXITED(status));
                if (WEXITSTATUS(status) != 2)
                        TEST_FAIL("tsmctl audit %s: exit %d, expected 2: %s", bad[i], WEXITSTATUS(status), err);
        }
}

/* tsmctl call reads the parameters and the method name as tsmd will: what tsmd would hang up
 * on is a usage error, and no call is made (a Ping would have run). */
TEST(call_refuses_what_tsmd_would_hang_up_on) {
        /* One level and one value past the default limits, said without the parameters echoed. */
        static char deep[16 + 2 * 64], many[16 + 2 * 4096];
        const struct {
                const char *method, *parameters, *message;
        } bad[] = {
                { "io.tsmd.Service.Ping", deep, "Parameters nest deeper than a call may with tsmd's default "
                                                "MaxJsonDepth=: at most 63 levels.\n" },
                { "io.tsmd.Service.Ping", many, "Parameters hold more JSON values than a call may with tsmd's "
                                                "default MaxJsonValues=: at most 4093.\n" },
                { "io.tsmd.Service.Ping", "{} trailing garbage", "Parameters must be a JSON object" },
                { "io.tsmd.Service.Ping", "{/*c*/}", "Parameters must be a JSON object" },
                { "io.tsmd.Service.Ping", "{\"x\":NaN}", "Parameters must be a JSON object" },
                { "io.tsmd.Service.Ping", "{\"x\":\"\xff\"}", "Parameters must be a JSON object (strict JSON): {\"x\":\"\\xff\"}" },
                { "io.tsmd.Service.Ping", "{\"x\":1,\"x\":2}", "Parameters must be a JSON object" },
                { "io.tsmd.Service.Ping\xff", NULL, "Not a Varlink method name (interface.Method): io.tsmd.Service.Ping\\xff" },
                { "io.tsmd.Service.ping", NULL, "Not a Varlink method name" },
        };
        Tsmd t = {};
        char *p;

        /* {"a":[[...]]}: the parameters and 63 arrays nested in them are 64 levels. */
        p = stpcpy(deep, "{\"a\":");
        for (unsigned i = 0; i < 63; i++)
                *p++ = '[';
        for (unsigned i = 0; i < 63; i++)
                *p++ = ']';
        strcpy(p, "}");
        /* {"a":[0,...]}: the parameters, the array and 4092 zeros are 4094 values. */
        p = stpcpy(many, "{\"a\":[0");
        for (unsigned i = 1; i < 4092; i++)
                p = stpcpy(p, ",0");
        strcpy(p, "]}");

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        for (size_t i = 0; i < ELEMENTSOF(bad) + 1; i++) {
                const char *argv[] = { TSMCTL_PATH, "--socket", t.socket, "call", NULL, NULL, NULL };
                _cleanup_free_ char *out = NULL, *err = NULL;
                int status;

                if (i < ELEMENTSOF(bad)) {
                        argv[4] = bad[i].method;
                        argv[5] = bad[i].parameters;
                } else {
                        argv[4] = "io.tsmd.Service.Ping";
                        argv[5] = " { }\n";
                }
                status = run_capture(argv, &out, &err, 10 * 1000000ULL);
                print_comment(err);
                ASSERT_TRUE(WIFEXITED(status));
                if (i == ELEMENTSOF(bad)) {
                        ASSERT_EQ(WEXITSTATUS(status), 0);
                        break;
                }
                ASSERT_EQ(WEXITSTATUS(status), 2);
                ASSERT_NOT_NULL(strstr(err, bad[i].message));
                ASSERT_STREQ(out, "");
        }
        tsmd_teardown(&t);
}

/* A parameter tsmctl cannot make (json-int-fail-preload.c fails the second json_object_new_int64()
 * of 5): out of memory, exit 1, and no call without it. */
TEST(a_parameter_out_of_memory_is_no_call) {
        const char *argv[] = { TSMCTL_PATH, "--socket", "/nonexistent/tsmd.sock", "audit", "--from=5", "--from=5",
                               NULL };
        _cleanup_free_ char *out = NULL, *err = NULL, *asan = NULL, *asan_was = NULL;
        int status;

        if (tsmd_under_valgrind())
                SKIP("valgrind and a preloaded library");
        /* Under ASan the preloaded library comes before the sanitizer's runtime: allowed. */
        asan_was = getenv("ASAN_OPTIONS") ? strdup(getenv("ASAN_OPTIONS")) : NULL;
        ASSERT_TRUE(asprintf(&asan, "%s%sverify_asan_link_order=0", getenv("ASAN_OPTIONS") ?: "",
                             getenv("ASAN_OPTIONS") ? ":" : "") > 0);
        ASSERT_OK(setenv("ASAN_OPTIONS", asan, 1));
        ASSERT_OK(setenv("LD_PRELOAD", JSON_INT_FAIL_PRELOAD, 1));
        ASSERT_OK(setenv("TSMD_TEST_FAIL_NEW_INT64", "5", 1));
        status = run_capture(argv, &out, &err, 10 * USEC_PER_SEC);
        ASSERT_OK(unsetenv("LD_PRELOAD"));
        ASSERT_OK(unsetenv("TSMD_TEST_FAIL_NEW_INT64"));
        ASSERT_OK(asan_was ? setenv("ASAN_OPTIONS", asan_was, 1) : unsetenv("ASAN_OPTIONS"));
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 1 || !strstr(err, "Out of memory."))
                TEST_FAIL("tsmctl audit: status %d: %s", status, err);
}

/* tsmctl audit's options are checked here where they can be, each refusal one line naming the
 * option (exit 2, no call made: the socket is not there); --uid= takes a user name too. */
TEST(audit_options_refused_by_name) {
        static const struct {
                const char *arg1, *arg2;
                const char *says;
        } bad[] = {
                { "--uid=no-such-user-here", NULL, "--uid=no-such-user-here: no user of that name here" },
                { "--uid=4294967295", NULL, "--uid=4294967295: not a uid (0 to 4294967294)" },
                { "--from=x", NULL, "--from=x: not a number" },
                { "--to=-3", NULL, "--to=-3: not a number" },
                { "--from=5", "--to=3", "--to=3 is before --from=5: no record can be in that window" },
                { "--since=+1h", "--until=-1h", "--until=-1h is before --since=+1h" },
                { "--limit=0", NULL, "--limit=0: give 1 to 10000" },
                { "--limit=10001", NULL, "--limit=10001: give 1 to 10000" },
                { "--limit=abc", NULL, "--limit=abc: give 1 to 10000" },
                { "--from=9223372036854775808", NULL, "--from=9223372036854775808: too large (a sequence number is "
                                                      "at most 9223372036854775807)" },
                { "--device=0000:01:00.A", NULL, "--device=0000:01:00.A: not a PCI address" },
                { "--device=01:00.0", NULL, "--device=01:00.0: not a PCI address" },
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *out = NULL, *err = NULL;
                const char *argv[] = { TSMCTL_PATH, "--socket", "/nonexistent/socket", "audit", bad[i].arg1, bad[i].arg2,
                                       NULL };
                int status = run_capture(argv, &out, &err, 10 * 1000000ULL);

                if (!WIFEXITED(status) || WEXITSTATUS(status) != 2 || !strneq(err, bad[i].says, strlen(bad[i].says)) ||
                    count_lines(err) != 1)
                        TEST_FAIL("tsmctl audit %s %s: exit %d, stderr is not one line saying '%s': %s", bad[i].arg1,
                                  strempty(bad[i].arg2), WEXITSTATUS(status), bad[i].says, err);
                ASSERT_STREQ(out, "");
        }
}

/* --uid=root is uid 0, looked up here; a window of one seq is no mistake. */
TEST(audit_uid_by_name) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        Tsmd t = {};

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        guest_activity(&t);
        {
                _cleanup_(json_object_putp) json_object *o = NULL;
                const char *argv[] = { TSMCTL_PATH, "--socket", t.socket, "--json", "audit", "--uid=root", NULL };
                json_object *records;
                int status = run_capture(argv, &out, &err, 10 * 1000000ULL);

                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        TEST_FAIL("tsmctl audit --uid=root: exit %d: %s", WEXITSTATUS(status), err);
                o = json_tokener_parse(out);
                records = json_get_array(o, "records");
                ASSERT_NOT_NULL(records);
                ASSERT_GE(json_object_array_length(records), 1u);
                for (size_t i = 0; i < json_object_array_length(records); i++)
                        ASSERT_EQ(JINT(json_object_array_get_idx(records, i), "uid"), 0);
        }
        ASSERT_EQ(audit_json(&t, "--from=3", "--to=3", NULL), 1u);
        tsmd_teardown(&t);
}

/* tsmctl at the wrong socket says what it probably is and how to name the right one: the
 * Guest socket (io.tsmd.Admin is not there), or none at the default path. */
TEST(wrong_socket_hints) {
        _cleanup_free_ char *out = NULL, *err = NULL, *out2 = NULL, *err2 = NULL;
        Tsmd t = {};
        int status;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        {
                const char *argv[] = { TSMCTL_PATH, "--socket", t.guest_socket, "devices", NULL };

                status = run_capture(argv, &out, &err, 10 * 1000000ULL);
        }
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 3);
        print_comment(err);
        ASSERT_NOT_NULL(strstr(err, strf("%s serves no io.tsmd.Admin: probably tsmd's io.tsmd.Guest socket",
                                         t.guest_socket)));
        ASSERT_NOT_NULL(strstr(err, "--socket=PATH or TSMD_SOCKET=PATH"));
        tsmd_teardown(&t);

        /* A socket named is where tsmd should be: no guessing then. */
        {
                const char *argv[] = { TSMCTL_PATH, "--socket", "/nonexistent/socket", "devices", NULL };

                status = run_capture(argv, &out2, &err2, 10 * 1000000ULL);
        }
        ASSERT_EQ(WEXITSTATUS(status), 7);
        ASSERT_NULL(strstr(err2, "TSMD_SOCKET"));
}

/* The help's commands, each summary in one column: audit's usage (its options) does not push
 * its summary off; tsmctl audit --help has them. */
TEST(help_columns) {
        _cleanup_free_ char *out = NULL, *out2 = NULL;
        const char *argv[] = { TSMCTL_PATH, "--help", NULL }, *argv2[] = { TSMCTL_PATH, "audit", "--help", NULL };
        size_t column = 0;
        bool commands = false;

        ASSERT_EQ(WEXITSTATUS(run_capture(argv, &out, NULL, 10 * 1000000ULL)), 0);
        for (const char *l = out; *l; l = strchrnul(l, '\n') + (strchrnul(l, '\n')[0] != 0)) {
                size_t n = strcspn(l, "\n");
                const char *summary;

                if (strneq(l, "Commands:", 9)) {
                        commands = true;
                        continue;
                }
                if (!commands)
                        continue;
                if (n == 0)
                        break; /* the end of the commands */
                /* The summary: after the last run of two spaces or more. */
                summary = NULL;
                for (const char *p = l + 2; p + 1 < l + n; p++)
                        if (p[0] == ' ' && p[1] == ' ' && p[2] != ' ')
                                summary = p + 2;
                ASSERT_NOT_NULL(summary);
                if (column == 0)
                        column = (size_t) (summary - l);
                if ((size_t) (summary - l) != column)
                        TEST_FAIL("tsmctl --help: '%.*s' has its summary at column %zu, not %zu", (int) n, l,
                                  (size_t) (summary - l), column);
        }
        ASSERT_EQ(column, 2u + 12 + 1 + 28 + 1);
        ASSERT_NOT_NULL(strstr(out, "\n  audit        [OPTIONS...]"));
        ASSERT_EQ(WEXITSTATUS(run_capture(argv2, &out2, NULL, 10 * 1000000ULL)), 0);
        ASSERT_NOT_NULL(strstr(out2, "[--uid=USER]"));
}

/* tsmctl status's labels end in one column ("Configuration:" and "Unsaved state:" too), and
 * the lines that go on a label's value start after it. */
TEST(status_labels_line_up) {
        _cleanup_free_ char *out = NULL;
        Tsmd t = {};
        size_t colon = 0;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        out = tsmctl_status(&t);
        for (const char *l = out; *l;) {
                size_t n = strcspn(l, "\n"), lead = strspn(l, " ");
                const char *c = memchr(l, ':', n);

                if (l[lead] >= 'A' && l[lead] <= 'Z') {
                        /* A label ("Audit log: "); what goes on after one starts in lowercase or
                         * with a number. */
                        ASSERT_NOT_NULL(c);
                        if (colon == 0)
                                colon = (size_t) (c - l);
                        if ((size_t) (c - l) != colon)
                                TEST_FAIL("tsmctl status: '%.*s' has its colon at column %zu, not %zu:\n%s", (int) n, l,
                                          (size_t) (c - l), colon, out);
                } else if (lead != colon + 2)
                        TEST_FAIL("tsmctl status: '%.*s' goes on at column %zu, not %zu:\n%s", (int) n, l, lead,
                                  colon + 2, out);
                l += n + (l[n] == '\n');
        }
        tsmd_teardown(&t);
}

/* The audit table shows a record's time (UTC, as tsmd writes it) in local time, with its offset
 * from UTC, to the second: what --since=/--until= take (less the offset). */
TEST(audit_time_is_local) {
        static const char reply[] = "{\"parameters\":{\"records\":[{\"seq\":1,\"time\":\"2025-01-01T00:00:00.654321Z\","
                                    "\"event\":\"reload\"}]}}";
        static const struct {
                const char *tz, *shows;
        } cases[] = {
                { "UTC0", "2025-01-01T00:00:00+00:00" },
                { "CET-1", "2025-01-01T01:00:00+01:00" },
                { "<-0330>3:30", "2024-12-31T20:30:00-03:30" },
        };
        const char *args[] = { "audit", NULL };
        const char *tz = getenv("TZ");
        _cleanup_free_ char *saved = tz ? strdup(tz) : NULL;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *out = NULL, *err = NULL;

                ASSERT_OK(setenv("TZ", cases[i].tz, 1));
                ASSERT_EQ(run_fake(fake_socket_path(strf("fake-tz%zu", i)), args, reply, sizeof(reply), &out, &err), 0);
                if (!strstr(out, strf("\n1   %s reload ", cases[i].shows)))
                        TEST_FAIL("TZ=%s tsmctl audit does not show %s:\n%s", cases[i].tz, cases[i].shows, out);
        }
        if (saved)
                ASSERT_OK(setenv("TZ", saved, 1));
        else
                ASSERT_OK(unsetenv("TZ"));
}

/* tsmctl monitor's rows come one at a time: its columns are as wide as any event tsmd can
 * record (an administrator's call, a method of org.varlink.service), not overrun by one. */
TEST(monitor_columns_fit_every_event) {
        static const char monitor[] = "{\"parameters\":{},\"continues\":true}\0"
                                      "{\"parameters\":{\"record\":{\"seq\":1,\"event\":\"org.varlink.service."
                                      "GetInterfaceDescription\",\"uid\":0,\"result\":\"ok\"}},\"continues\":true}\0"
                                      "{\"parameters\":{\"record\":{\"seq\":2,\"event\":\"guest-request\",\"uid\":7,"
                                      "\"result\":\"ok\"}}}";
        const char *args[] = { "monitor", NULL };
        _cleanup_free_ char *out = NULL, *err = NULL;
        const char *header, *row1, *row2;

        ASSERT_EQ(run_fake(fake_socket_path("fake-monitor-wide"), args, monitor, sizeof(monitor), &out, &err), 0);
        print_comment(out);
        header = strstr(out, "SEQ ");
        ASSERT_NOT_NULL(header);
        row1 = strchr(header, '\n') + 1;
        row2 = strchr(row1, '\n') + 1;
        ASSERT_EQ(strstr(row1, " 0 ") + 1 - row1, strstr(header, "UID") - header);
        ASSERT_EQ(strstr(row2, " 7 ") + 1 - row2, strstr(header, "UID") - header);
}

/* The example VMMs where the policy does not grant state-change: vmm-example shows the error a
 * VMM gets for the guest's START (the named error and its reason) and finishes its flow;
 * vmm-libtsm says that it leaves the accept out. Both take --help. */
TEST(example_vmms_without_state_change) {
        const char *example_help[] = { VMM_EXAMPLE_PATH, "--help", NULL },
                   *example_bad[] = { VMM_EXAMPLE_PATH, "--bogus", NULL },
                   *libtsm_help[] = { VMM_LIBTSM_PATH, "--help", NULL };
        _cleanup_free_ char *out = NULL, *err = NULL, *out2 = NULL, *err2 = NULL, *help = NULL, *help2 = NULL,
                            *bad = NULL, *bad_err = NULL, *sock = NULL;
        Tsmd t = {};
        int status;

        status = run_capture(example_help, &help, NULL, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_TRUE(strneq(help, "Usage: vmm-example [--socket=PATH] [--vfio=PATH] [PCI-ADDRESS]\n", 63));
        ASSERT_NOT_NULL(strstr(help, "(default 0000:01:00.0)"));
        status = run_capture(example_bad, &bad, &bad_err, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1);
        ASSERT_NOT_NULL(strstr(bad_err, "Unknown option '--bogus'"));
        status = run_capture(libtsm_help, &help2, NULL, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_TRUE(strneq(help2, "Usage: vmm-libtsm ", 18));

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        tsmd_write_file(&t, "policy.conf", "[Admin]\nUsers=root\n[Client:vmm]\nUsers=root\nDevices=*\nScopes=info\n");
        ASSERT_TRUE(tsmd_reload(&t, "[Platform]\nMode=emulated\n"));
        ASSERT_TRUE(asprintf(&sock, "--socket=%s", t.guest_socket) > 0);
        {
                const char *argv[] = { VMM_EXAMPLE_PATH, sock, "0000:01:00.0", NULL };

                status = run_capture(argv, &out, &err, 10 * 1000000ULL);
        }
        print_comment(out);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                TEST_FAIL("vmm-example: exit %d: %s", WEXITSTATUS(status), err);
        ASSERT_NOT_NULL(strstr(out, "  scope state-change  number "));
        ASSERT_NOT_NULL(strstr(out, "not granted\n"));
        ASSERT_TRUE(has_line_with(out, "state-change  START_INTERFACE", "-> io.tsmd.Guest.Denied "));
        ASSERT_NOT_NULL(strstr(out, "scope 'state-change' not granted"));
        ASSERT_NOT_NULL(strstr(out, "the guest cannot accept the device"));
        ASSERT_NULL(strstr(out, "accepted:"));
        ASSERT_NOT_NULL(strstr(out, "unbound: TDI state"));
        {
                const char *argv[] = { VMM_LIBTSM_PATH, sock, "0000:01:00.0", NULL };

                status = run_capture(argv, &out2, &err2, 10 * 1000000ULL);
        }
        print_comment(out2);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                TEST_FAIL("vmm-libtsm: exit %d: %s", WEXITSTATUS(status), err2);
        ASSERT_NOT_NULL(strstr(out2, "the policy does not grant scope state-change: the guest cannot accept the "
                                     "device, START left out"));
        tsmd_teardown(&t);
}

TEST_MAIN();
