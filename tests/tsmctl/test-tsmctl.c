/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tsmctl against a live tsmd on the emulated platform: every verb's --json output parses and
 * matches the reply type the IDL declares for the method behind it (checked with the IDL
 * validator itself), every table has its header and one row per item, and exit codes mean
 * what the README says. Admin verbs are refused for a non-admin uid, and that is audited.
 */

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

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
        ASSERT_NOT_NULL(strstr(out, "0000:03:00.0   emu0   emulated       CONFIG_UNLOCKED  -\n"));
        out = mfree(out);

        argv[3] = "backends";
        status = run_capture(argv, &out, NULL, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_NOT_NULL(strstr(out, "Platform: emulated\n"));
        ASSERT_NOT_NULL(strstr(out, "emu0     emulated       -                emulated  3\n"));
        out = mfree(out);

        /* vmm-example made open-context, attach, 2 requests, bind, request, unbind: 7 records. */
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
        ASSERT_NOT_NULL(strstr(out, "# TYPE tsmd_calls_total counter\n"));
        ASSERT_NOT_NULL(strstr(out, "tsmd_calls_total{scope=\"info\"} 3\n"));
        ASSERT_NOT_NULL(strstr(out, "tsmd_call_latency_seconds_count{scope=\"info\"} 3\n"));
        tsmd_teardown(&t);
}

/* tsmctl verb's output (it must succeed), echoed as TAP comments. */
static char *tsmctl_out(Tsmd *t, const char *verb) {
        const char *argv[] = { TSMCTL_PATH, "--socket", t->socket, verb, NULL };
        char *out = NULL;
        int status = run_capture(argv, &out, NULL, 10 * 1000000ULL);

        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                TEST_FAIL("tsmctl %s: %s", verb, out);
        for (const char *l = out; *l;) {
                size_t n = strcspn(l, "\n");

                printf("# %.*s\n", (int) n, l);
                l += n + (l[n] == '\n');
        }
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
        ASSERT_NOT_NULL(strstr(out, "1         0         1        -\n")); /* the held client */
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
        usleep(300000);
        guest_activity(&t);
        usleep(300000);
        kill(pid, SIGTERM);
        (void) waitpid(pid, &status, 0);
        {
                char buf[8192];
                ssize_t n = read(pipefd[0], buf, sizeof(buf) - 1);

                ASSERT_TRUE(n > 0);
                buf[n] = 0;
                ASSERT_TRUE(strneq(buf, "SEQ ", 4));
                ASSERT_NOT_NULL(strstr(buf, " open-context "));
                ASSERT_NOT_NULL(strstr(buf, " unbind "));
        }
        close(pipefd[0]);
        tsmd_teardown(&t);
}

/* Runs tsmctl VERB as uid 65534; its exit status. */
static int tsmctl_as_nobody(Tsmd *t, const char *verb) {
        int status;
        pid_t pid = fork();

        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                const char *argv[] = { TSMCTL_PATH, "--socket", t->socket, verb, NULL };
                if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
                        _exit(99);
                execv(argv[0], (char **) argv);
                _exit(98);
        }
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status));
        return WEXITSTATUS(status);
}

TEST(admin_refused_for_others_and_audited) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        Tsmd t = {};
        int status;

        if (geteuid() != 0)
                SKIP("needs root to run tsmctl as another uid");

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        /* The admin socket is 0660 root:root: give uid 65534 a way in to be refused by tsmd. */
        ASSERT_OK(chmod(t.socket, 0666));
        ASSERT_EQ(tsmctl_as_nobody(&t, "devices"), 4); /* permission denied */
        ASSERT_EQ(tsmctl_as_nobody(&t, "reload"), 4);

        /* Each refusal was answered once its record was on disk. */
        {
                const char *argv[] = { TSMCTL_PATH, "--socket", t.socket, "audit", "--result=org.varlink.service.PermissionDenied", NULL };

                status = run_capture(argv, &out, &err, 10 * 1000000ULL);
                ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        ASSERT_NOT_NULL(strstr(out, "io.tsmd.Admin.ListDevices 65534"));
        ASSERT_NOT_NULL(strstr(out, "io.tsmd.Service.Reload 65534"));
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

/* A stand-in for tsmd at path that answers one call with reply (NUL-terminated on the wire);
 * returns its pid. */
/* A fake tsmd at path: reads one call, answers reply (NULL: never), waits for the hangup. */
static pid_t fake_tsmd(const char *path, const char *reply) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        pid_t pid;

        ASSERT_TRUE(l >= 0 && strlen(path) < sizeof(sa.sun_path));
        strcpy(sa.sun_path, path);
        ASSERT_OK(bind(l, (struct sockaddr *) &sa, sizeof(sa)));
        ASSERT_OK(listen(l, 1));
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
                size_t len = reply ? strlen(reply) + 1 : 0;
                char ch;

                while (fd >= 0 && read(fd, &ch, 1) == 1 && ch != 0)
                        ;
                for (size_t done = 0; fd >= 0 && done < len;) {
                        ssize_t k = write(fd, reply + done, len - done);
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

        ASSERT_TRUE(asprintf(&path, "%s", fake_socket_path(n == 10000 ? "fake-full" : "fake-short")) > 0);
        pid = fake_tsmd(path, reply);
        free(reply);
        argv[2] = path;
        status = run_capture(argv, &out, &err, 10 * 1000000ULL);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_EQ(count_lines(out), n + 1);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        return err;
}

/* tsmd answers QueryAudit with at most 10000 records and does not say whether more matched: a
 * reply that full gets a notice saying where to page on, one short of it none. */
TEST(audit_says_when_cut) {
        _cleanup_free_ char *full = audit_with_records(10000), *short_of_it = audit_with_records(9999);

        ASSERT_NOT_NULL(strstr(full, "--from=10001"));
        ASSERT_NULL(strstr(short_of_it, "--from="));
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
        ASSERT_NOT_NULL(strstr(err, "--from=3"));
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
static int run_against(const char *verb, const char *reply, char **ret_out) {
        _cleanup_free_ char *err = NULL;
        const char *path = fake_socket_path("fake-odd");
        const char *argv[] = { TSMCTL_PATH, "--socket", path, verb, NULL };
        pid_t pid = fake_tsmd(path, reply);
        int status;

        status = run_capture(argv, ret_out, &err, 10 * 1000000ULL);
        (void) kill(pid, SIGKILL);
        ASSERT_EQ(waitpid(pid, NULL, 0), pid);
        ASSERT_OK(unlink(path));
        fprintf(stderr, "%s", strempty(err));
        ASSERT_TRUE(WIFEXITED(status));
        return WEXITSTATUS(status);
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
        ASSERT_NOT_NULL(strstr(out2, "tsmd_calls_total{uid=\"7\"} 2\n"));
        ASSERT_NOT_NULL(strstr(out2, "tsmd_call_errors_total{uid=\"7\"} 1\n"));

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
        /* Unless a tsmd runs here, the default admin socket is not there. */
        if (WEXITSTATUS(status) != 0)
                ASSERT_NOT_NULL(strstr(err, "io.tsmd.Admin"));
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

TEST_MAIN();
