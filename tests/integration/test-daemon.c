/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The tsmd daemon as an administrator meets it: --check-config and --dump-config, SIGHUP
 * with good and broken files, socket activation through systemd-socket-activate, and tsmctl
 * against a live tsmd (output and exit codes).
 *
 * Runs in: tests. The socket-activation test SKIPs without systemd-socket-activate, and
 * reload_applies_what_the_monitor_read without fanotify permission events (root, and a kernel
 * with CONFIG_FANOTIFY_ACCESS_PERMISSIONS).
 */

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "config.h"
#include "daemon-config.h"
#include "guest-calls.h"
#include "ini.h"
#include "json-util.h"
#include "tsmd-fixture.h"
#include "varlink-errors.h"

#ifndef TSMCTL_PATH
#error "TSMCTL_PATH must be defined (the tsmctl executable)"
#endif

#define RUN_TIMEOUT_USEC (10 * USEC_PER_SEC)

/* A path in a scratch directory (static storage: strf()'s buffers are reused). */
static const char *scratch_path(const char *dir, const char *name) {
        static char paths[4][300];
        static unsigned next;
        char *p = paths[next++ % ELEMENTSOF(paths)];

        snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
        return p;
}

/* tsmd with the given arguments; returns the wait status, output in *out and *err. */
static int tsmd_run(const char *config_path, const char *option, char **out, char **err) {
        const char *argv[] = { TSMD_PATH, strf("--config=%s", config_path), option, NULL };

        return run_capture(argv, out, err, RUN_TIMEOUT_USEC);
}

static bool exited_with(int status, int code) {
        return WIFEXITED(status) && WEXITSTATUS(status) == code;
}

/* ---- --check-config and --dump-config ---------------------------------------------------- */

static const char good_config[] =
        "# Every knob, none at its default.\n"
        "[Varlink]\n"
        "MaxMessageSize=1M\n"
        "MaxOutputSize=4M\n"
        "MaxJsonDepth=32\n"
        "MaxJsonValues=256\n"
        "MaxFdsPerMessage=8\n"
        "MaxPendingCalls=16\n"
        "MaxConnections=100\n"
        "MaxConnectionsPerUid=10\n"
        "MaxUnnamedConnections=20\n"
        "MaxAdminConnections=5\n"
        "MaxAdminConnectionsPerUid=2\n"
        "MaxBuffered=128M\n"
        "MaxFdsPerUid=64\n"
        "MaxFds=512\n"
        "MessageTimeoutSec=30\n"
        "IdleTimeoutSec=600\n"
        "\n"
        "[Platform]\n"
        "Mode=emulated\n"
        "IommuDevice=/dev/zero\n"
        "EmulatedDevices=0000:01:00.0,0000:02:00.0:ranges=3\n"
        "EmulatedLatencyUSec=1000\n"
        "EmulatedDebugScopes=yes\n"
        "RequestTimeoutUSec=2000000\n"
        "\n"
        "[Guest]\n"
        "MaxContextsPerClient=3\n"
        "MaxContexts=100\n"
        "MaxVDevicesPerClient=5\n"
        "\n"
        "[Audit]\n"
        "MaxRecordsInFlight=512\n"
        "MaxRecordsInFlightPerUid=100\n"
        "MaxRecordsInFlightUnnamed=8\n"
        "RefusalRecordsPerUid=4\n"
        "RefusalIntervalSec=60\n";

/* tsmd --check-config accepts the file (and the policy it names). */
static void expect_config_ok(const char *path) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        int status;

        status = tsmd_run(path, "--check-config", &out, &err);
        if (!exited_with(status, 0))
                TEST_FAIL("--check-config on %s: status 0x%x, stderr: %s", path, status, err);
        ASSERT_STREQ(out, "configuration OK\n");
}

TEST(check_config_good) {
        const char *dir = scratch_dir(), *path = scratch_path(dir, "tsmd.conf");

        write_file(path, good_config);
        expect_config_ok(path);

        /* An empty file is the built-in defaults, also fine. */
        write_file(path, "");
        expect_config_ok(path);
}

/* tsmd --check-config refuses text (written to path), its stderr saying want. */
static void expect_check_config_refuses(const char *path, const char *text, const char *want) {
        _cleanup_free_ char *err = NULL;

        write_file(path, text);
        ASSERT_FALSE(exited_with(tsmd_run(path, "--check-config", NULL, &err), 0));
        if (!strstr(err, want))
                TEST_FAIL("stderr does not say '%s': %s", want, err);
}

TEST(check_config_bad_names_file_and_line) {
        static const struct {
                const char *text;
                unsigned line;
                const char *reason;
        } bad[] = {
                { "[Varlink]\nMaxJsonDepth=1\n", 2, "value out of range for MaxJsonDepth= (2 to 4096)" },
                { "[Varlink]\nMaxMessageSize=255\n", 2, "value out of range for MaxMessageSize= (256 to 256M)" },
                { "[Varlink]\nMaxBufferedPerUid=17G\n", 2, "value out of range for MaxBufferedPerUid= (64 to 16G)" },
                { "[Varlink]\nMaxJsonValues=8\n", 2, "value out of range for MaxJsonValues= (16 to 16777216)" },
                { "[Audit]\nMaxFileSize=100\n", 2, "value out of range for MaxFileSize= (16K to 1024G)" },
                { "[Varlink]\nMaxMessageSize=12Q\n", 2, "invalid value for MaxMessageSize=: not a size" },
                { "[Varlink]\nMaxConnections=-1\n", 2, "invalid value for MaxConnections=: not a non-negative integer" },
                /* Named, with the keys the section has: which one was meant is the admin's guess to make. */
                { "[Varlink]\n\n# comment\nNoSuchKey=1\n", 4,
                  "unknown key 'NoSuchKey' in [Varlink] (valid: MaxMessageSize, MaxOutputSize, MaxJsonDepth, " },
                { "[Audit]\nDirectroy=/x\n", 2,
                  "unknown key 'Directroy' in [Audit] (valid: Directory, MaxFileSize, Files, SyncMode, Journal, MaxJournalBacklog, "
                  "MaxRecordsInFlight, MaxRecordsInFlightPerUid, MaxRecordsInFlightUnnamed, RefusalRecordsPerUid, "
                  "RefusalIntervalSec, RefusalSharePercent, MaxQueries, MaxFollowers, MaxQueryScanSize, MaxQueryRecords)." },
                { "[NoSuchSection]\nMode=emulated\n", 1,
                  "unknown section [NoSuchSection] (valid: [Varlink], [Platform], [Guest], [Policy], [Audit], [Worker])." },
                /* tsmd.conf(5): an unknown section is an error, keys or not. */
                { "[Varlink]\nMaxJsonDepth=8\n[Gest]\n#MaxContextsPerClient=4\n", 3, "unknown section [Gest] (valid: [Varlink]," },
                /* "Plain non-negative integers": no sign, as sizes take none. */
                { "[Varlink]\nMaxConnections=+5\n", 2, "not a non-negative integer" },
                /* A relative path would depend on the working directory: the policy checked
                 * here need not be the one tsmd loads (in /), and a missing one is empty. */
                { "[Policy]\nFile=policy.conf\n", 2, "invalid value for File=: not an absolute path" },
                /* A trailing comment is no comment: a path that names nothing (an empty
                 * policy; with DropInDirectory=, the drop-ins that take grants away unread). */
                { "[Policy]\nDropInDirectory=/etc/tsmd/policy.d # local overrides\n", 2,
                  "invalid value for DropInDirectory=: comments must be on a line of their own" },
                { "[Policy]\nFile=/etc/tsmd/policy.conf\t;main\n", 2, "comments must be on a line of their own" },
                { "[Guest]\nMaxContextsPerClient=4 # per VMM\n", 2, "comments must be on a line of their own" },
                { "[Audit]\nDirectory=#/var/log/tsmd\n", 2, "comments must be on a line of their own" },
                { "[Policy]\nDropInDirectory=./policy.d\n", 2, "not an absolute path" },
                { "[Audit]\nDirectory=log\n", 2, "not an absolute path" },
                { "[Guest]\nContextStateDirectory=contexts\n", 2, "not an absolute path" },
                { "[Platform]\nIommuDevice=dev/iommu\n", 2, "not an absolute path" },
                /* What the monitor opens read-write as root for every VMM: checked as its open
                 * checks it (a missing one is not refused: the emulated stand-in, a later module). */
                { "[Platform]\nIommuDevice=/dev/full\n", 2,
                  "invalid value for IommuDevice=: not the IOMMU's character device (nor /dev/null or /dev/zero)" },
                { "[Platform]\nMode=emulated\nIommuDevice=/etc/passwd\n", 3, "not the IOMMU's character device" },
                { "[Platform]\nIommuDevice=/dev\n", 2, "not the IOMMU's character device" },
                { "[Audit]\nMaxFileSize=+16384\n", 2, "invalid value for MaxFileSize=: not a size" },
                { "[Audit]\nMaxFileSize=8Q\n", 2, "invalid value for MaxFileSize=: not a size" },
                { "[Varlink]\nMaxMessageSize=+1M\n", 2, "not a size" },
                { "[Platform]\nMode=fast\n", 2, "invalid value for Mode=: not one of auto, kernel, emulated" },
                { "[Audit]\nJournal=maybe\n", 2, "invalid value for Journal=: not a boolean (yes/no)" },
                { "[Platform]\nEmulatedDebugScopes=maybe\n", 2,
                  "invalid value for EmulatedDebugScopes=: not a boolean (yes/no)" },
                { "[Audit]\nSyncMode=never\n", 2, "invalid value for SyncMode=: not a sync mode (group, per-record)" },
                { "[Platform]\nEmulatedDevices=0000:1:00.0\n", 2, "invalid value for EmulatedDevices=: not a valid device list" },
                { "[Guest]\nMaxContextsPerClient=0\n", 2, "value out of range for MaxContextsPerClient= (1 to 4096)" },
                { "[Guest]\nMaxContexts=0\n", 2, "value out of range for MaxContexts= (1 to 1048576)" },
                { "[Guest]\nMaxContexts=1048577\n", 2, "value out of range for MaxContexts= (1 to 1048576)" },
                { "[Guest]\nMaxContexts=-1\n", 2, "invalid value for MaxContexts=: not a non-negative integer" },
                /* strtoull() skips \v and \f (which the line's stripping leaves) and negates. */
                { "[Guest]\nMaxContextsPerClient=\v-18446744073709551615\n", 2, "not a non-negative integer" },
                { "[Guest]\nMaxRequestSize=\f-18446744073709551614\n", 2, "not a size" },
                { "[Platform]\nEmulatedLatencyUSec=60000001\n", 2, "value out of range for EmulatedLatencyUSec= (0 to 60000000)" },
                { "[Platform]\nRequestTimeoutUSec=999\n", 2, "value out of range for RequestTimeoutUSec= (1000 to 600000000)" },
                { "[Varlink]\nMessageTimeoutSec=3601\n", 2, "value out of range for MessageTimeoutSec= (0 to 3600)" },
                { "[Audit]\nMaxRecordsInFlightPerUid=0\n", 2, "value out of range for MaxRecordsInFlightPerUid= (1 to 1048576)" },
                { "[Audit]\nMaxRecordsInFlightUnnamed=0\n", 2, "value out of range for MaxRecordsInFlightUnnamed= (1 to 1048576)" },
                { "[Audit]\nRefusalRecordsPerUid=1048577\n", 2, "value out of range for RefusalRecordsPerUid= (0 to 1048576)" },
                { "[Audit]\nRefusalIntervalSec=0\n", 2, "value out of range for RefusalIntervalSec= (1 to 86400)" },
                { "[Worker]\nStartTimeoutSec=0\n", 2, "value out of range for StartTimeoutSec= (1 to 80)" },
                { "[Worker]\nStopTimeoutSec=61\n", 2, "value out of range for StopTimeoutSec= (1 to 60)" },
                /* A key given twice: which value counts is left to no one's guess. */
                { "[Varlink]\nMaxConnections=10\n# more\nMaxConnections=1000\n", 4,
                  "MaxConnections= is already set on line 2 of this file" },
                /* Also across two occurrences of its section. */
                { "[Guest]\nMaxContextsPerClient=4\n[Audit]\nFiles=4\n[Guest]\nMaxContextsPerClient=4\n", 6,
                  "MaxContextsPerClient= is already set on line 2 of this file" },
                { "[Policy]\nFile=/etc/tsmd/policy.conf\nFile=\n", 3, "File= is already set on line 2 of this file" },
                { "[Varlink\nMaxJsonDepth=8\n", 1, NULL },
                { "[Varlink]\njust some words\n", 2, NULL },
        };
        const char *dir = scratch_dir(), *path = scratch_path(dir, "tsmd.conf");

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *out = NULL, *err = NULL;
                const char *where = strf("%s:%u:", path, bad[i].line);
                int status;

                write_file(path, bad[i].text);
                status = tsmd_run(path, "--check-config", &out, &err);
                if (exited_with(status, 0) || !WIFEXITED(status))
                        TEST_FAIL("case %zu: --check-config accepted or crashed (0x%x) on:\n%s", i, status, bad[i].text);
                if (!strstr(err, where))
                        TEST_FAIL("case %zu: stderr does not name %s: %s", i, where, err);
                if (bad[i].reason && !strstr(err, bad[i].reason))
                        TEST_FAIL("case %zu: stderr does not say '%s': %s", i, bad[i].reason, err);
                ASSERT_NULL(strstr(out, "configuration OK"));
        }

        /* Nothing there, or the stand-ins for the IOMMU's device: accepted (the emulated
         * platform's stand-in; a host whose iommufd module loads later). */
        write_file(path, "[Platform]\nIommuDevice=/nonexistent/tsmd-test/iommu\n");
        ASSERT_TRUE(exited_with(tsmd_run(path, "--check-config", NULL, NULL), 0));
        write_file(path, "[Platform]\nIommuDevice=/dev/null\n");
        ASSERT_TRUE(exited_with(tsmd_run(path, "--check-config", NULL, NULL), 0));

        /* A line past INI_LINE_MAX is named so, not as a syntax error (a comment may be longer). */
        {
                _cleanup_free_ char *text = malloc(2 * INI_LINE_MAX + 64);

                ASSERT_NOT_NULL(text);
                snprintf(text, 2 * INI_LINE_MAX + 64, "[Platform]\n# %0*u\nEmulatedDevices=%0*u\n", (int) INI_LINE_MAX, 0U,
                         (int) INI_LINE_MAX - 15, 0U);
                expect_check_config_refuses(path, text,
                                            strf("%s:3: line too long (more than %u bytes)", path, INI_LINE_MAX));
        }

        /* A rule between keys is named at the line of the last of them the file sets. */
        expect_check_config_refuses(path, "[Varlink]\nMaxMessageSize=1M\nMaxOutputSize=64K\n",
                                    strf("%s:3: MaxOutputSize must not be smaller than MaxMessageSize", path));
        expect_check_config_refuses(path, "[Varlink]\nMaxOutputSize=64K\n\nMaxMessageSize=1M\n",
                                    strf("%s:4: MaxOutputSize must not be smaller than MaxMessageSize", path));
        expect_check_config_refuses(path, "[Worker]\nStopTimeoutSec=11\n",
                                    strf("%s:2: [Worker] DrainTimeoutSec=10 (the default) must be at most", path));
        expect_check_config_refuses(path, "[Varlink]\nMaxBufferedPerUid=8M\n" /* MaxOutputSize is 16M */,
                                    "MaxBufferedPerUid");
        expect_check_config_refuses(path, "[Varlink]\nMaxBuffered=8M\n" /* MaxOutputSize is 16M */, "MaxBuffered must");
        expect_check_config_refuses(path, "[Varlink]\nMaxFdsPerUid=100\n" /* MaxFdsPerMessage is 253 */, "MaxFdsPerUid");
        /* Budgets that one client within MaxMessageSize=, MaxOutputSize= and MaxFdsPerMessage=
         * could go past: its input up to MaxMessageSize while its replies wait, and the fds of
         * a complete message and of the next one's start. */
        expect_check_config_refuses(path, "[Varlink]\nMaxMessageSize=64K\nMaxOutputSize=64K\nMaxBufferedPerUid=64K\n",
                                    "MaxBufferedPerUid must not be smaller than MaxMessageSize + MaxOutputSize");
        expect_check_config_refuses(path, "[Varlink]\nMaxMessageSize=64K\nMaxOutputSize=64K\nMaxBuffered=127K\n",
                                    "MaxBuffered must not be smaller than MaxMessageSize + MaxOutputSize");
        write_file(path, "[Varlink]\nMaxMessageSize=64K\nMaxOutputSize=64K\nMaxBuffered=128K\nMaxBufferedPerUid=128K\n");
        ASSERT_TRUE(exited_with(tsmd_run(path, "--check-config", NULL, NULL), 0));
        expect_check_config_refuses(path, "[Varlink]\nMaxFdsPerMessage=8\nMaxFdsPerUid=15\n",
                                    "MaxFdsPerUid and MaxFds (unless 0) must be at least twice MaxFdsPerMessage");
        expect_check_config_refuses(path, "[Varlink]\nMaxFdsPerMessage=8\nMaxFds=15\n", "MaxFds (unless 0)");
        write_file(path, "[Varlink]\nMaxFdsPerMessage=8\nMaxFdsPerUid=16\nMaxFds=16\n");
        ASSERT_TRUE(exited_with(tsmd_run(path, "--check-config", NULL, NULL), 0));
        /* A drain must leave 2 s of the stop's time: the last unbinds, the audit log's close. */
        expect_check_config_refuses(path, "[Worker]\nStopTimeoutSec=5\nDrainTimeoutSec=4\n",
                                    "[Worker] DrainTimeoutSec=4 must be at most StopTimeoutSec=5 less 2 s");
        expect_check_config_refuses(path, "[Worker]\nStopTimeoutSec=11\n",
                                    "DrainTimeoutSec=10 (the default) must be at most StopTimeoutSec=11 less 2 s");
        write_file(path, "[Worker]\nStopTimeoutSec=5\nDrainTimeoutSec=3\n");
        ASSERT_TRUE(exited_with(tsmd_run(path, "--check-config", NULL, NULL), 0));
        /* One directory for the audit log and the contexts' state, however spelled. */
        expect_check_config_refuses(path, "[Audit]\nDirectory=/var/lib//tsmd\n[Guest]\nContextStateDirectory=/var/lib/tsmd/\n",
                                    "[Audit] Directory and [Guest] ContextStateDirectory must differ");
        expect_check_config_refuses(path, "[Audit]\nDirectory=/var/lib/tsmd/\n[Guest]\nContextStateDirectory=/var/lib/tsmd\n",
                                    "[Audit] Directory and [Guest] ContextStateDirectory must differ");
        write_file(path, "[Audit]\nDirectory=/var/lib/tsmd\n[Guest]\nContextStateDirectory=/var/lib/tsmd2\n");
        ASSERT_TRUE(exited_with(tsmd_run(path, "--check-config", NULL, NULL), 0));
        /* A missing file given explicitly is an error too. */
        {
                _cleanup_free_ char *err = NULL;
                ASSERT_FALSE(exited_with(tsmd_run(scratch_path(dir, "missing.conf"), "--check-config", NULL, &err), 0));
                ASSERT_NOT_NULL(strstr(err, "missing.conf"));
        }
}

TEST(check_config_validates_emulated_devices) {
        const char *dir = scratch_dir(), *path = scratch_path(dir, "tsmd.conf");
        _cleanup_free_ char *out = NULL, *err = NULL;
        int status;

        /* tsmd refuses to start with this list ("Invalid emulated device list"), so the check
         * must refuse it as well. */
        write_file(path, "[Platform]\nMode=emulated\nEmulatedDevices=0000:zz:00.0\n");
        status = tsmd_run(path, "--check-config", &out, &err);
        /* EmulatedDevices= is parsed when the file is checked, not when tsmd starts: a bad
         * list fails --check-config naming its line. */
        if (exited_with(status, 0))
                TEST_FAIL("--check-config accepted an invalid EmulatedDevices= list (stdout: %s)", out);
        ASSERT_NOT_NULL(strstr(err, strf("%s:3:", path)));
}

/* tsmd.conf(5): every size takes K, M or G, MaxFileSize= too; --dump-config writes bytes. */
TEST(max_file_size_takes_a_size_suffix) {
        const char *dir = scratch_dir(), *path = scratch_path(dir, "tsmd.conf");
        _cleanup_free_ char *dump = NULL;

        write_file(path, "[Audit]\nMaxFileSize=8M\n");
        expect_config_ok(path);
        ASSERT_TRUE(exited_with(tsmd_run(path, "--dump-config", &dump, NULL), 0));
        ASSERT_NOT_NULL(strstr(dump, "\nMaxFileSize=8388608\n"));
        /* The range, in the units the key takes. */
        expect_check_config_refuses(path, "[Audit]\nMaxFileSize=2048G\n",
                                    "value out of range for MaxFileSize= (16K to 1024G)");
        write_file(path, "[Audit]\nMaxFileSize=1024G\n");
        expect_config_ok(path);
}

TEST(dump_config_round_trips) {
        const char *dir = scratch_dir(), *path = scratch_path(dir, "tsmd.conf"), *dump_path = scratch_path(dir, "dump.conf");
        _cleanup_free_ char *dump1 = NULL, *dump2 = NULL;

        write_file(path, good_config);
        ASSERT_TRUE(exited_with(tsmd_run(path, "--dump-config", &dump1, NULL), 0));
        /* The effective values, in config-file syntax. */
        ASSERT_NOT_NULL(strstr(dump1, "[Varlink]\n"));
        ASSERT_NOT_NULL(strstr(dump1, "MaxMessageSize=1048576\n"));
        ASSERT_NOT_NULL(strstr(dump1, "MaxJsonDepth=32\n"));
        ASSERT_NOT_NULL(strstr(dump1, "MaxJsonValues=256\n"));
        ASSERT_NOT_NULL(strstr(dump1, "MaxBuffered=134217728\n"));
        ASSERT_NOT_NULL(strstr(dump1, "MaxFdsPerUid=64\n"));
        ASSERT_NOT_NULL(strstr(dump1, "MaxFds=512\n"));
        ASSERT_NOT_NULL(strstr(dump1, "MaxAdminConnectionsPerUid=2\n"));
        ASSERT_NOT_NULL(strstr(dump1, "MaxUnnamedConnections=20\n"));
        ASSERT_NOT_NULL(strstr(dump1, "[Platform]\n"));
        ASSERT_NOT_NULL(strstr(dump1, "Mode=emulated\n"));
        ASSERT_NOT_NULL(strstr(dump1, "EmulatedDevices=0000:01:00.0,0000:02:00.0:ranges=3\n"));
        ASSERT_NOT_NULL(strstr(dump1, "EmulatedDebugScopes=yes\n"));
        ASSERT_NOT_NULL(strstr(dump1, "[Guest]\n"));
        ASSERT_NOT_NULL(strstr(dump1, "MaxContextsPerClient=3\n"));
        ASSERT_NOT_NULL(strstr(dump1, "MaxContexts=100\n"));
        ASSERT_NOT_NULL(strstr(dump1, "MaxVDevicesPerClient=5\n"));
        ASSERT_NOT_NULL(strstr(dump1, "MaxRecordsInFlightPerUid=100\n"));
        ASSERT_NOT_NULL(strstr(dump1, "MaxRecordsInFlightUnnamed=8\n"));
        ASSERT_NOT_NULL(strstr(dump1, "RefusalRecordsPerUid=4\n"));
        ASSERT_NOT_NULL(strstr(dump1, "RefusalIntervalSec=60\n"));

        /* The dump is itself a valid configuration that dumps identically. */
        write_file(dump_path, dump1);
        expect_config_ok(dump_path);
        ASSERT_TRUE(exited_with(tsmd_run(dump_path, "--dump-config", &dump2, NULL), 0));
        ASSERT_STREQ(dump2, dump1);

        /* The same holds for the built-in defaults (an empty file). */
        free(dump1);
        free(dump2);
        dump1 = dump2 = NULL;
        write_file(path, "");
        ASSERT_TRUE(exited_with(tsmd_run(path, "--dump-config", &dump1, NULL), 0));
        ASSERT_NOT_NULL(strstr(dump1, "Mode=auto\n"));
        /* Limits a client could otherwise take without bound (connections that never call,
         * values, fds and bytes over all clients) have one by default. */
        ASSERT_NOT_NULL(strstr(dump1, "IdleTimeoutSec=60\n"));
        ASSERT_NOT_NULL(strstr(dump1, "MaxJsonValues=4096\n"));
        ASSERT_NOT_NULL(strstr(dump1, "MaxBuffered=536870912\n"));
        ASSERT_NOT_NULL(strstr(dump1, "MaxFdsPerUid=1024\n"));
        ASSERT_NOT_NULL(strstr(dump1, "MaxContexts=4096\n"));
        write_file(dump_path, dump1);
        ASSERT_TRUE(exited_with(tsmd_run(dump_path, "--dump-config", &dump2, NULL), 0));
        ASSERT_STREQ(dump2, dump1);
}

/* tsmd(8): the output of --dump-config is a valid tsmd.conf, whatever policy it carries: each of
 * the policy's lines, as long as a line may be, goes out as a comment two bytes longer. */
TEST(dump_config_of_a_longest_policy_line_is_a_valid_configuration) {
        const char *dir = scratch_dir(), *path = scratch_path(dir, "tsmd.conf"),
                   *policy = scratch_path(dir, "policy.conf"), *dump_path = scratch_path(dir, "dump.conf");
        _cleanup_free_ char *text = NULL, *dump = NULL;
        const char users[] = "Users=0";
        size_t n = INI_LINE_MAX - (sizeof(users) - 1) - 1;

        /* A line of the longest length: the ids as written, spaces kept, go into a comment. */
        ASSERT_NOT_NULL(text = malloc(INI_LINE_MAX + 64));
        snprintf(text, INI_LINE_MAX + 64, "[Admin]\n%s%*s0\n", users, (int) n, "");
        ASSERT_EQ(strlen(text), strlen("[Admin]\n") + INI_LINE_MAX + 1);
        write_file(policy, text);
        write_file(path, strf("[Policy]\nFile=%s\nDropInDirectory=\n", policy));
        expect_config_ok(path);

        ASSERT_TRUE(exited_with(tsmd_run(path, "--dump-config", &dump, NULL), 0));
        ASSERT_NOT_NULL(strstr(dump, "\n# Users=0\n"));
        write_file(dump_path, dump);
        expect_config_ok(dump_path);
}

/* A line of the shipped tsmd.conf that shows a key: "#Key=value". */
static bool shipped_key_line(const char *l) {
        size_t n;

        if (l[0] != '#' || !(l[1] >= 'A' && l[1] <= 'Z'))
                return false;
        n = strspn(l + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
        return l[1 + n] == '=';
}

/* Whether the key line at line says "Read at start": the comment block above it, or above the
 * run of key lines it is in (a blank line, a comment or a section header ends a run), does. */
static bool shipped_says_read_at_start(char **lines, size_t line) {
        size_t i = line;

        while (i > 0 && shipped_key_line(lines[i - 1]))
                i--;
        for (; i > 0 && lines[i - 1][0] == '#' && !shipped_key_line(lines[i - 1]); i--)
                if (strstr(lines[i - 1], "Read at start"))
                        return true;
        return false;
}

static int add_start_only(const char *section, const char *key, void *userdata) {
        char ***list = userdata;
        size_t n = 0;

        while (*list && (*list)[n])
                n++;
        *list = realloc(*list, (n + 2) * sizeof(char *));
        ASSERT_NOT_NULL(*list);
        ASSERT_OK(asprintf(&(*list)[n], "[%s] %s", section, key));
        (*list)[n + 1] = NULL;
        return 0;
}

/* The shipped tsmd.conf says it shows every key: each one --dump-config knows, in its section;
 * and it marks those read at start "Read at start" (an admin who changes one and reloads must
 * know a restart applies it), and no other. */
TEST(shipped_config_shows_every_key) {
        const char *dir = scratch_dir(), *path = scratch_path(dir, "tsmd.conf");
        _cleanup_free_ char *dump = NULL, *shipped = read_file(TSMD_CONF_SHIPPED_PATH);
        _cleanup_free_ char **lines = NULL;
        char **start_only = NULL;
        char section[64] = "";
        size_t n_lines = 0;

        ASSERT_NOT_NULL(shipped);
        ASSERT_OK(daemon_config_foreach_start_only(NULL, NULL, add_start_only, &start_only));
        ASSERT_NOT_NULL(start_only);
        write_file(path, "");
        ASSERT_TRUE(exited_with(tsmd_run(path, "--dump-config", &dump, NULL), 0));

        /* The shipped file's lines, in place. */
        for (char *l = shipped; *l;) {
                size_t n = strcspn(l, "\n");

                lines = realloc(lines, (n_lines + 1) * sizeof(char *));
                ASSERT_NOT_NULL(lines);
                lines[n_lines++] = l;
                l += n;
                if (*l)
                        *l++ = 0;
        }

        for (const char *p = dump; *p;) {
                size_t n = strcspn(p, "\n"), key_len = strcspn(p, "=");

                if (p[0] == '[')
                        snprintf(section, sizeof(section), "%.*s", (int) n, p);
                else if (n > 0 && p[0] != '#') {
                        const char *name = strf("%s %.*s", section, (int) key_len, p);
                        size_t in = n_lines, key = n_lines;
                        bool at_start = false;

                        for (size_t i = 0; i < n_lines && key == n_lines; i++)
                                if (lines[i][0] == '[')
                                        in = streq(lines[i], section) ? i : n_lines;
                                else if (in < n_lines && shipped_key_line(lines[i]) &&
                                         strneq(lines[i] + 1, p, key_len + 1))
                                        key = i;
                        if (key == n_lines)
                                TEST_FAIL("systemd/tsmd.conf does not show %s=", name);
                        for (char **s = start_only; *s; s++)
                                at_start = at_start || streq(*s, name);
                        if (at_start != shipped_says_read_at_start(lines, key))
                                TEST_FAIL("systemd/tsmd.conf %s %s=: %s", at_start ? "does not mark" : "marks", name,
                                          at_start ? "it is read at start only (a reload does not apply it), the "
                                                     "comment above it must say \"Read at start\""
                                                   : "a reload applies it, the comment above it must not say "
                                                     "\"Read at start\" (give it a comment of its own)");
                }
                p += n + (p[n] == '\n');
        }
        for (char **s = start_only; *s; s++)
                free(*s);
        free(start_only);
}

/* A configuration that is not a regular file is refused at once: a FIFO must not hang the check,
 * nor a reload (the worker's loop, then the monitor's). */
TEST(config_not_a_regular_file) {
        const char *dir = scratch_dir(), *fifo = scratch_path(dir, "fifo.conf");
        const char *const paths[] = { fifo, dir };
        Tsmd t;
        VarlinkClient *c;

        ASSERT_OK(mkfifo(fifo, 0644));
        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                _cleanup_free_ char *out = NULL, *err = NULL;

                ASSERT_FALSE(exited_with(tsmd_run(paths[i], "--check-config", &out, &err), 0));
                if (!strstr(err, strf("'%s': not a regular file", paths[i])))
                        TEST_FAIL("stderr does not say '%s' is not a regular file: %s", paths[i], err);
                ASSERT_NULL(strstr(out, "configuration OK"));
        }

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        c = tsmd_connect(&t);
        ASSERT_OK(unlink(t.config_path));
        ASSERT_OK(mkfifo(t.config_path, 0644));
        tsmd_kill(&t, SIGHUP);
        ASSERT_TRUE(tsmd_wait_log(&t, "not a regular file; keeping the configuration in force.", 1, TSMD_WAIT_USEC));
        CALL_OK(c, "io.tsmd.Service.Ping", NULL);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* SECURITY: tsmd.conf names the policy files, the directories root hands the worker and the
 * IOMMU device, so it is trusted as the policy files are (POLICY.md): owned by root, written by
 * nobody else, in directories nobody else may write. Else tsmd does not start, a reload fails
 * and keeps what is in force, and a new worker starts from the last files that loaded. */
TEST(config_trusted_as_the_policy) {
        const char *dir = scratch_dir(), *sub = strdupa(scratch_path(dir, "etc")),
                   *path = strdupa(strf("%s/tsmd.conf", sub));
        const char *expected;
        json_object *r = NULL;
        const char *error;
        VarlinkClient *c;
        pid_t worker;
        Tsmd t;

        if (geteuid() != 0)
                SKIP("chown");
        ASSERT_OK(chmod(dir, 0755));
        ASSERT_OK(mkdir(sub, 0755));
        write_file(path, "[Platform]\nMode=emulated\n");
        expect_config_ok(path);

        /* Start (--check-config reads it as a start does): a directory on the way. */
        ASSERT_OK(chown(sub, 0, 4242));
        ASSERT_OK(chmod(sub, 0775));
        {
                _cleanup_free_ char *out = NULL, *err = NULL;

                ASSERT_FALSE(exited_with(tsmd_run(path, "--check-config", &out, &err), 0));
                expected = strf("%s: directory %s is writable by group 4242; refusing to use it", path, sub);
                if (!strstr(err, expected))
                        TEST_FAIL("stderr does not say '%s': %s", expected, err);
                ASSERT_NULL(strstr(out, "configuration OK"));
        }
        ASSERT_OK(chmod(sub, 0755));
        /* The file itself. */
        ASSERT_OK(chmod(path, 0646));
        {
                _cleanup_free_ char *err = NULL;

                ASSERT_FALSE(exited_with(tsmd_run(path, NULL, NULL, &err), 0));
                expected = strf("%s: writable by every user; refusing to use it", path);
                if (!strstr(err, expected))
                        TEST_FAIL("stderr does not say '%s': %s", expected, err);
        }
        ASSERT_OK(chmod(path, 0644));
        expect_config_ok(path);

        /* A reload: refused, naming the file; what is in force stays. */
        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        c = tsmd_connect(&t);
        ASSERT_OK(chown(t.config_path, 4242, 0));
        error = tsmd_call(c, "io.tsmd.Service.Reload", NULL, &r);
        expected = strf("%s: owned by uid 4242, which is neither root nor the daemon's user; refusing to use it",
                        t.config_path);
        if (!error || !streq(error, "io.tsmd.Service.ReloadFailed") || !strstr(JSTR(r, "message"), expected))
                TEST_FAIL("Reload: expected ReloadFailed saying '%s', got %s %s", expected, error ?: "success",
                          json_object_to_json_string(r));
        CALL_OK(c, "io.tsmd.Service.Ping", NULL); /* r was borrowed: gone with this call */
        varlink_client_free(c);

        /* A new worker: the monitor refuses the file too, and the worker serves the last that loaded. */
        worker = tsmd_worker_pid(&t);
        tsmd_kill_worker(&t);
        ASSERT_NE(tsmd_worker_pid(&t), worker);
        ASSERT_TRUE(tsmd_wait_log(&t, strf("%s.", expected), 1, TSMD_WAIT_USEC));
        ASSERT_TRUE(tsmd_log_contains(&t, "the new worker starts with the last configuration and policy that loaded"));
        c = tsmd_connect(&t);
        CALL_OK(c, "io.tsmd.Service.Ping", NULL);

        ASSERT_OK(chown(t.config_path, 0, 0));
        CALL_OK(c, "io.tsmd.Service.Reload", NULL);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* GetStatus's uptime is tsmd's, since the monitor started: a new worker does not restart it. */
TEST(uptime_outlives_a_worker) {
        uint64_t after_first, before_second;
        int64_t first, second;
        VarlinkClient *c;
        Tsmd t;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        c = tsmd_connect(&t);
        first = JINT(CALL_OK(c, "io.tsmd.Service.GetStatus", NULL), "uptimeUsec");
        after_first = now_usec();
        varlink_client_free(c);
        tsmd_kill_worker(&t);
        c = tsmd_connect(&t);
        before_second = now_usec();
        second = JINT(CALL_OK(c, "io.tsmd.Service.GetStatus", NULL), "uptimeUsec");
        if (second - first < (int64_t) (before_second - after_first))
                TEST_FAIL("uptime %" PRIi64 " us, then %" PRIi64 " us after a new worker, %" PRIu64 " us later", first,
                          second, before_second - after_first);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* A path has no "none": an empty one is its default, not a worker that cannot start ("Cannot
 * open the audit log in 'n/a'") and restarts forever. */
TEST(empty_path_is_the_default) {
        const char *dir = scratch_dir(), *path = scratch_path(dir, "tsmd.conf");
        _cleanup_free_ char *out = NULL, *err = NULL;
        int status;

        /* Not none: a key may be set once per file, so the default is all an empty value
         * can stand for. */
        write_file(path, "[Audit]\nDirectory=\n"
                         "[Guest]\nContextStateDirectory=\n"
                         "[Policy]\nFile=\nDropInDirectory=\n");
        status = tsmd_run(path, "--dump-config", &out, &err);
        if (!exited_with(status, 0))
                TEST_FAIL("--dump-config: status 0x%x, stderr: %s", status, err);
        ASSERT_NOT_NULL(strstr(out, "\nDirectory=" LOCALSTATEDIR "/log/tsmd\n"));
        ASSERT_NOT_NULL(strstr(out, "\nContextStateDirectory=" RUNSTATEDIR "/tsmd/contexts\n"));
        ASSERT_NOT_NULL(strstr(out, "\nFile=" SYSCONFDIR "/tsmd/policy.conf\n"));
        ASSERT_NOT_NULL(strstr(out, "\nDropInDirectory=" SYSCONFDIR "/tsmd/policy.d\n"));
}

/* SECURITY: the directories on the way to the policy are part of the check (POLICY.md), as
 * they are of every load: with one that others could write, tsmd does not start. */
TEST(check_config_refuses_a_policy_in_a_group_writable_directory) {
        const char *dir = scratch_dir(), *path = scratch_path(dir, "tsmd.conf"), *etc = scratch_path(dir, "etc"),
                   *policy = strdupa(strf("%s/policy.conf", etc));
        _cleanup_free_ char *out = NULL, *err = NULL;
        const char *expected;

        ASSERT_OK(chmod(dir, 0755));
        ASSERT_OK(mkdir(etc, 0755));
        write_file(path, strf("[Policy]\nFile=%s\nDropInDirectory=\n", policy));
        write_file(policy, "[Admin]\n");
        expect_config_ok(path);

        ASSERT_OK(chown(etc, 0, 4242));
        ASSERT_OK(chmod(etc, 0775));
        ASSERT_FALSE(exited_with(tsmd_run(path, "--check-config", &out, &err), 0));
        expected = strf("%s: directory %s is writable by group 4242; refusing to use it", policy, etc);
        if (!strstr(err, expected))
                TEST_FAIL("stderr does not say '%s': %s", expected, err);
        ASSERT_NULL(strstr(out, "configuration OK"));
}

/* SECURITY: a relative --config= is walked from the working directory up to /, as an absolute
 * one is: a directory on the way that every user may write makes it refused all the same, by
 * whichever name it is reached (a ".." included). */
TEST(check_config_trusts_a_relative_path_by_its_directories) {
        const char *dir = scratch_dir(), *in = scratch_path(dir, "in"), *expected;
        _cleanup_free_ char *out = NULL, *err = NULL;

        ASSERT_OK(chmod(dir, 0755));
        ASSERT_OK(mkdir(in, 0755));
        write_file(strf("%s/tsmd.conf", in), good_config);
        ASSERT_OK(chdir(in));
        expect_config_ok("tsmd.conf");
        expect_config_ok("../in/tsmd.conf");

        ASSERT_OK(chmod(dir, 0777));
        for (size_t i = 0; i < 2; i++) {
                const char *name = i == 0 ? "tsmd.conf" : "../in/tsmd.conf";

                free(out);
                free(err);
                ASSERT_FALSE(exited_with(tsmd_run(name, "--check-config", &out, &err), 0));
                expected = strf("%s: directory %s is writable by every user; refusing to use it", name, dir);
                if (!strstr(err, expected))
                        TEST_FAIL("stderr does not say '%s': %s", expected, err);
                ASSERT_NULL(strstr(out, "configuration OK"));
        }
        ASSERT_OK(chmod(dir, 0755));
}

/* The policy the configuration names is part of the check (POLICY.md): a bad one would keep
 * the worker from starting. */
TEST(check_config_loads_the_policy) {
        const char *dir = scratch_dir(), *path = scratch_path(dir, "tsmd.conf"),
                   *policy = scratch_path(dir, "policy.conf");
        const char *config = strf("[Policy]\nFile=%s\nDropInDirectory=%s/policy.d\n", policy, dir);
        const char *dropin = strf("%s/policy.d/50-bad.conf", dir);

        write_file(path, config);
        ASSERT_OK(mkdir(strf("%s/policy.d", dir), 0755));

        {
                _cleanup_free_ char *out = NULL, *err = NULL;

                write_file(policy, "[Client:x]\nBogus=1\n");
                ASSERT_FALSE(exited_with(tsmd_run(path, "--check-config", &out, &err), 0));
                if (!strstr(err, strf("%s:2:", policy)) || !strstr(err, "'Bogus'"))
                        TEST_FAIL("stderr does not name %s:2: and the key: %s", policy, err);
                ASSERT_NULL(strstr(out, "configuration OK"));
        }
        {
                _cleanup_free_ char *out = NULL, *err = NULL;

                ASSERT_FALSE(exited_with(tsmd_run(path, "--dump-config", &out, &err), 0));
                ASSERT_NOT_NULL(strstr(err, "'Bogus'"));
        }
        /* A drop-in is part of it too. */
        write_file(policy, "[Client:x]\nUsers=root\nDevices=*\n");
        write_file(dropin, "[Client:y]\nScopes=everything\n");
        {
                _cleanup_free_ char *err = NULL;

                ASSERT_FALSE(exited_with(tsmd_run(path, "--check-config", NULL, &err), 0));
                ASSERT_NOT_NULL(strstr(err, strf("%s:2:", dropin)));
        }
        ASSERT_OK(unlink(dropin));
        expect_config_ok(path);

        /* As the worker and the monitor, it refuses a policy the worker's group may write. */
        {
                _cleanup_free_ char *err = NULL;
                struct passwd *worker = getpwnam(TSMD_WORKER_USER);

                if (worker && geteuid() == 0) {
                        ASSERT_OK(chown(policy, 0, worker->pw_gid));
                        ASSERT_OK(chmod(policy, 0664));
                        ASSERT_FALSE(exited_with(tsmd_run(path, "--check-config", NULL, &err), 0));
                        ASSERT_NOT_NULL(strstr(err, "the unprivileged worker's; refusing to use it"));
                        ASSERT_OK(chmod(policy, 0644));
                        expect_config_ok(path);
                }
        }

        /* --dump-config shows the merged policy, as comments: the dump stays a tsmd.conf, and
         * without the "# " the policy part is a policy file with the same rules. */
        write_file(strf("%s/policy.d/10-more.conf", dir), "[Client:z]\nUsers=65534\nDevices=0000:01:00.0\n");
        {
                const char *dump_path = scratch_path(dir, "dump.conf"), *policy_copy = scratch_path(dir, "copy.conf");
                _cleanup_free_ char *dump = NULL, *copy_dump = NULL;
                char *p, *q;

                ASSERT_TRUE(exited_with(tsmd_run(path, "--dump-config", &dump, NULL), 0));
                ASSERT_NOT_NULL(strstr(dump, "\n# [Client:x]\n"));
                ASSERT_NOT_NULL(strstr(dump, "\n# [Client:z]\n"));
                ASSERT_NOT_NULL(strstr(dump, "\n# Devices=0000:01:00.0\n"));
                write_file(dump_path, dump);
                expect_config_ok(dump_path);

                p = strstr(dump, "merged:\n");
                ASSERT_NOT_NULL(p);
                p += strlen("merged:\n");
                /* Strip "# " (or a lone "#") in place. */
                for (q = p; *p;) {
                        size_t n = strcspn(p, "\n"), skip = n >= 2 && p[1] == ' ' ? 2 : 1;

                        ASSERT_EQ(p[0], '#');
                        memmove(q, p + skip, n - skip);
                        q += n - skip;
                        *q++ = '\n';
                        p += n + (p[n] == '\n');
                }
                *q = 0;
                write_file(policy_copy, strstr(dump, "merged:\n") + strlen("merged:\n"));
                write_file(path, strf("[Policy]\nFile=%s\nDropInDirectory=%s/nonexistent\n", policy_copy, dir));
                ASSERT_TRUE(exited_with(tsmd_run(path, "--dump-config", &copy_dump, NULL), 0));
                ASSERT_NOT_NULL(strstr(copy_dump, "\n# [Client:x]\n"));
                ASSERT_NOT_NULL(strstr(copy_dump, "\n# [Client:z]\n"));
        }
}

/* ---- reload ---------------------------------------------------------------------------- */

static int64_t max_depth(VarlinkClient *c) {
        json_object *r = CALL_OK(c, "io.tsmd.Service.GetStatus", NULL), *l;

        ASSERT_TRUE(json_object_object_get_ex(r, "limits", &l));
        return JINT(l, "maxDepth");
}

/* MaxUnnamedConnections= unset is a sixteenth of MaxConnections=, whatever that is, without a
 * warning: a host that lowered MaxConnections= keeps the named callers their share (a fixed 256
 * was lowered to MaxConnections - 1, a warning at every start, the named left one slot). */
TEST(unnamed_callers_share_a_sixteenth_by_default) {
        static const struct {
                const char *config;
                int64_t unnamed;
        } cases[] = {
                { "", 256 },
                { "[Varlink]\nMaxConnections=64\n", 4 },
                { "[Varlink]\nMaxConnections=8\n", 1 },
                { "[Varlink]\nMaxConnections=1\n", 0 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                json_object *r, *limits;
                VarlinkClient *c;
                Tsmd t;

                tsmd_start_config(&t, strf("[Platform]\nMode=emulated\n%s", cases[i].config));
                c = tsmd_connect(&t);
                r = CALL_OK(c, "io.tsmd.Service.GetStatus", NULL);
                ASSERT_TRUE(json_object_object_get_ex(r, "limits", &limits));
                ASSERT_EQ(JINT(limits, "maxUnnamedConnections"), cases[i].unnamed);
                ASSERT_FALSE(tsmd_log_contains(&t, "MaxUnnamedConnections="));
                varlink_client_free(c);
                tsmd_teardown(&t);
        }
}

/* GetStatus says every [Varlink] limit in force, MaxOutputSize= among them. */
TEST(status_says_the_limits_in_force) {
        Tsmd t;
        VarlinkClient *c;
        json_object *r, *l;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\nIommuDevice=/dev/zero\n"
                              "[Varlink]\nMaxMessageSize=64K\nMaxOutputSize=3M\nMaxPendingCalls=7\n");
        c = tsmd_connect(&t);
        r = CALL_OK(c, "io.tsmd.Service.GetStatus", NULL);
        ASSERT_TRUE(json_object_object_get_ex(r, "limits", &l));
        ASSERT_EQ(JINT(l, "maxMessageSize"), 64 * 1024);
        ASSERT_EQ(JINT(l, "maxOutputSize"), 3 * 1024 * 1024);
        ASSERT_EQ(JINT(l, "maxPendingCalls"), 7);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

TEST(sighup_with_broken_file_keeps_serving) {
        static const char config[] = "[Platform]\nMode=emulated\nIommuDevice=/dev/zero\n[Varlink]\nMaxJsonDepth=32\n";
        Tsmd t;
        VarlinkClient *c;
        json_object *r;

        tsmd_start_config(&t, config);
        c = tsmd_connect(&t);
        ASSERT_EQ(max_depth(c), 32);

        /* Broken: kept, and the log says where and why. */
        ASSERT_FALSE(tsmd_reload(&t, "[Platform]\nMode=emulated\n[Varlink]\nMaxJsonDepth=1\n"));
        ASSERT_TRUE(tsmd_log_contains(&t, strf("%s:4: value out of range for MaxJsonDepth= (2 to 4096); keeping the "
                                               "configuration in force.", t.config_path)));
        ASSERT_FALSE(tsmd_reload(&t, "[Varlink\n"));
        ASSERT_TRUE(tsmd_log_contains(&t, strf("%s:1:", t.config_path)));

        /* Still serving the old configuration, to old and new clients. */
        CALL_OK(c, "io.tsmd.Service.Ping", NULL);
        ASSERT_EQ(max_depth(c), 32);
        VarlinkClient *c2 = tsmd_connect(&t);
        ASSERT_EQ(max_depth(c2), 32);
        r = CALL_OK(c2, "io.tsmd.Guest.OpenContext", NULL);
        safe_close(varlink_client_take_fd(c2, (size_t) JINT(r, "fileDescriptor")));

        /* Fixed: applied. */
        ASSERT_TRUE(tsmd_reload(&t, "[Platform]\nMode=emulated\n[Varlink]\nMaxJsonDepth=48\n"));
        ASSERT_EQ(max_depth(c), 48);
        CALL_OK(c, "io.tsmd.Service.Ping", NULL);

        varlink_client_free(c);
        varlink_client_free(c2);
        tsmd_teardown(&t);
}

/* GetStatus's configuration: its source, the policy file in force, and why not the disk's. */
static void expect_configuration(VarlinkClient *c, const char *source, const char *policy_file, const char *error) {
        json_object *r = CALL_OK(c, "io.tsmd.Service.GetStatus", NULL), *cfg;

        ASSERT_TRUE(json_object_object_get_ex(r, "configuration", &cfg));
        ASSERT_STREQ(JSTR(cfg, "source"), source);
        ASSERT_STREQ(JSTR(cfg, "policyFile"), policy_file);
        if (error && !strstr(JSTR(cfg, "error"), error))
                TEST_FAIL("GetStatus's configuration error does not say '%s': %s", error, JSTR(cfg, "error"));
}

/*
 * A tsmd.conf named with --config= is required on reload as at start, by the worker as by the
 * monitor: gone, the reload fails naming it, and both keep the set in force (the same limits,
 * the same policy file, which a new worker starts from as well). Before, the worker took the
 * built-in defaults (and /etc/tsmd/policy.conf) and answered success, the monitor refused the
 * file and kept the old set, and a new worker went back to it.
 */
TEST(reload_of_a_missing_config_file_changes_nothing) {
        static const char config[] = "[Platform]\nMode=emulated\n[Varlink]\nMaxJsonDepth=32\n";
        const char *policy;
        unsigned scope_checks;
        json_object *r;
        VarlinkClient *c;
        Tsmd t;

        tsmd_start_config(&t, config);
        policy = strdupa(strf("%s/policy.conf", t.dir));
        c = tsmd_connect(&t);
        ASSERT_EQ(max_depth(c), 32);
        expect_configuration(c, "disk", policy, NULL);
        scope_checks = tsmd_log_count(&t, "Scope checks follow the policy in");

        ASSERT_OK(unlink(t.config_path));
        r = CALL_ERROR(c, "io.tsmd.Service.Reload", NULL, "io.tsmd.Service.ReloadFailed", NULL);
        if (!strstr(JSTR(r, "message"), strf("%s: cannot read file: No such file or directory", t.config_path)))
                TEST_FAIL("ReloadFailed does not name the missing file: %s", JSTR(r, "message"));
        ASSERT_EQ(max_depth(c), 32);
        expect_configuration(c, "last_good", policy, t.config_path);
        /* The monitor applied nothing either. */
        ASSERT_EQ(tsmd_log_count(&t, "Scope checks follow the policy in"), scope_checks);
        ASSERT_FALSE(tsmd_log_contains(&t, "The monitor failed"));
        varlink_client_free(c);

        /* A new worker starts from the same set, and says the files on disk do not load. */
        tsmd_kill_worker(&t);
        c = tsmd_connect(&t);
        ASSERT_EQ(max_depth(c), 32);
        expect_configuration(c, "last_good", policy, t.config_path);

        /* Back: applied, in both. */
        tsmd_write_config(&t, "[Platform]\nMode=emulated\n[Varlink]\nMaxJsonDepth=48\n");
        CALL_OK(c, "io.tsmd.Service.Reload", NULL);
        ASSERT_EQ(max_depth(c), 48);
        expect_configuration(c, "disk", policy, NULL);
        ASSERT_EQ(tsmd_log_count(&t, "Scope checks follow the policy in"), scope_checks + 1);
        varlink_client_free(c);
        tsmd_kill_worker(&t);
        c = tsmd_connect(&t);
        ASSERT_EQ(max_depth(c), 48);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/*
 * The worker applies the very bytes the monitor read, not a read of its own: tsmd.conf changes
 * the moment the monitor opens it (a fanotify permission event holds the open while the test
 * rewrites the file), and the worker serves what the monitor read, as a new worker does. Before,
 * the worker read the file first and applied it, then the monitor read the changed file: the
 * two, and the next worker, disagreed.
 */
TEST(reload_applies_what_the_monitor_read) {
        _cleanup_free_ char *text = NULL;
        _cleanup_close_ int writer = -EBADF, fan = -EBADF;
        int done[2], status;
        char *depth;
        VarlinkClient *c;
        pid_t child;
        Tsmd t;

        if (geteuid() != 0)
                SKIP("fanotify permission events need CAP_SYS_ADMIN");
        tsmd_start_config(&t, "[Platform]\nMode=emulated\n[Varlink]\nMaxJsonDepth=32\n");
        c = tsmd_connect(&t);
        ASSERT_EQ(max_depth(c), 32);

        /* On disk as the reload starts: 40; as the monitor opens it: 48 (the same length). */
        tsmd_write_config(&t, "[Platform]\nMode=emulated\n[Varlink]\nMaxJsonDepth=40\n");
        text = read_file(t.config_path);
        ASSERT_NOT_NULL(text);
        depth = strstr(text, "MaxJsonDepth=40");
        ASSERT_NOT_NULL(depth);
        memcpy(depth, "MaxJsonDepth=48", strlen("MaxJsonDepth=48"));
        writer = open(t.config_path, O_WRONLY | O_CLOEXEC);
        ASSERT_OK(writer);

        fan = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC, O_RDONLY | O_CLOEXEC);
        if (fan < 0 && (errno == EPERM || errno == ENOSYS || errno == EINVAL)) {
                tsmd_teardown(&t);
                SKIP("fanotify_init: %s", strerror(errno));
        }
        ASSERT_OK(fan);
        if (fanotify_mark(fan, FAN_MARK_ADD, FAN_OPEN_PERM, AT_FDCWD, t.config_path) < 0) {
                if (errno != EINVAL)
                        TEST_FAIL("fanotify_mark: %s", strerror(errno));
                tsmd_teardown(&t);
                SKIP("no fanotify permission events in this kernel (CONFIG_FANOTIFY_ACCESS_PERMISSIONS)");
        }

        /* Answers every open of the file until done closes; rewrites it at the monitor's first. */
        ASSERT_OK(pipe2(done, O_CLOEXEC));
        fflush(NULL);
        child = fork();
        ASSERT_OK(child);
        if (child == 0) {
                bool rewritten = false;

                close(done[1]);
                for (;;) {
                        struct pollfd p[2] = { { .fd = fan, .events = POLLIN }, { .fd = done[0], .events = POLLIN } };
                        struct fanotify_event_metadata e;
                        char buf[4096];
                        ssize_t n;

                        if (poll(p, 2, 10 * 1000) <= 0 || p[1].revents)
                                _exit(rewritten ? 0 : 1);
                        n = read(fan, buf, sizeof(buf));
                        if (n < 0)
                                _exit(2);
                        for (size_t off = 0; off + sizeof(e) <= (size_t) n; off += e.event_len) {
                                struct fanotify_response a;

                                memcpy(&e, buf + off, sizeof(e));
                                if (e.event_len < sizeof(e))
                                        _exit(2);
                                if (e.pid == t.pid && !rewritten) {
                                        if (pwrite(writer, text, strlen(text), 0) != (ssize_t) strlen(text))
                                                _exit(3);
                                        rewritten = true;
                                }
                                a = (struct fanotify_response) { .fd = e.fd, .response = FAN_ALLOW };
                                if (write(fan, &a, sizeof(a)) != sizeof(a))
                                        _exit(4);
                                close(e.fd);
                        }
                }
        }
        close(done[0]);
        fan = safe_close(fan); /* the child's alone: it answers the opens */

        CALL_OK(c, "io.tsmd.Service.Reload", NULL);
        close(done[1]);
        ASSERT_EQ(waitpid(child, &status, 0), child);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                TEST_FAIL("the monitor did not open tsmd.conf as the reload read it (status %d)", status);

        ASSERT_EQ(max_depth(c), 48);
        varlink_client_free(c);
        tsmd_kill_worker(&t);
        c = tsmd_connect(&t);
        ASSERT_EQ(max_depth(c), 48);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* SECURITY: a tsmd.conf only root may read reloads as it starts: the monitor reads it, and the
 * worker, which may not, applies the bytes it read. Before, the worker read the file itself
 * and refused a reload of what it had started from. */
TEST(reload_of_a_config_file_only_root_reads) {
        VarlinkClient *c;
        Tsmd t;

        if (geteuid() != 0)
                SKIP("the worker must run as another user than the file's owner: needs root");
        tsmd_start_config(&t, "[Platform]\nMode=emulated\n[Varlink]\nMaxJsonDepth=32\n");
        tsmd_write_config(&t, "[Platform]\nMode=emulated\n[Varlink]\nMaxJsonDepth=40\n");
        ASSERT_OK(chmod(t.config_path, 0600));
        c = tsmd_connect(&t);
        CALL_OK(c, "io.tsmd.Service.Reload", NULL);
        ASSERT_EQ(max_depth(c), 40);
        varlink_client_free(c);
        tsmd_kill_worker(&t);
        c = tsmd_connect(&t);
        ASSERT_EQ(max_depth(c), 40);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* GetStatus's configuration.pendingRestart, as JSON text. */
static const char *pending_restart(Tsmd *t) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = tsmd_connect(t);
        json_object *r = CALL_OK(c, "io.tsmd.Service.GetStatus", NULL), *cfg = NULL, *p = NULL;

        ASSERT_TRUE(json_object_object_get_ex(r, "configuration", &cfg));
        ASSERT_TRUE(json_object_object_get_ex(cfg, "pendingRestart", &p));
        return strf("%s", json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN));
}

/* A reload applies what it can at run time and names what it does not (read at start), rather
 * than seem to have applied it: in tsmd's log, in the Reload call's answer and in GetStatus (before,
 * in the log alone); and so it stays until tsmd restarts, a worker restarted since keeping what
 * tsmd started with: GetStatus still names them, and the next reload names the same. A reload
 * back to what tsmd started with names none. */
TEST(reload_names_what_it_does_not_apply) {
        static const char notice[] = "Not applied by this reload";
        static const char start[] = "[Platform]\nMode=emulated\n[Varlink]\nMaxJsonDepth=32\n",
                          config[] = "[Platform]\nMode=emulated\n[Varlink]\nMaxJsonDepth=40\n"
                                     "[Audit]\nMaxFileSize=1048576\n[Guest]\nReclaimTimeoutSec=30\nMaxContexts=10\n",
                          named[] = "Not applied by this reload, taking effect when tsmd restarts: [Guest] "
                                    "MaxContexts=, [Guest] ReclaimTimeoutSec=, [Audit] MaxFileSize=",
                          names[] = "[\"Guest.MaxContexts\",\"Guest.ReclaimTimeoutSec\",\"Audit.MaxFileSize\"]";
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        json_object *r;
        Tsmd t;

        tsmd_start_config(&t, start);
        ASSERT_STREQ(pending_restart(&t), "[]");
        ASSERT_TRUE(tsmd_reload(&t, "[Platform]\nMode=emulated\n[Varlink]\nMaxJsonDepth=48\n"));
        ASSERT_FALSE(tsmd_log_contains(&t, notice));
        ASSERT_STREQ(pending_restart(&t), "[]");

        ASSERT_TRUE(tsmd_reload(&t, config));
        ASSERT_EQ(tsmd_log_count(&t, named), 1u);
        ASSERT_STREQ(pending_restart(&t), names);
        tsmd_kill_worker(&t);
        ASSERT_STREQ(pending_restart(&t), names);
        ASSERT_TRUE(tsmd_reload(&t, config));
        ASSERT_EQ(tsmd_log_count(&t, named), 2u);

        /* The answer names them to the administrator who reloads. */
        c = tsmd_connect(&t);
        r = CALL_OK(c, "io.tsmd.Service.Reload", NULL);
        ASSERT_TRUE(json_matches(r, strf("{\"pendingRestart\":%s}", names)));
        tsmd_write_config(&t, start);
        r = CALL_OK(c, "io.tsmd.Service.Reload", NULL);
        ASSERT_TRUE(json_matches(r, "{\"pendingRestart\":[]}"));
        ASSERT_STREQ(pending_restart(&t), "[]");
        tsmd_teardown(&t);
}

/* A directory made as the worker's own, as tsmd.tmpfiles or an admin would. */
static void make_worker_dir(const char *path) {
        struct passwd *worker = getpwnam(TSMD_WORKER_USER);

        if (!worker)
                SKIP("no user " TSMD_WORKER_USER);
        ASSERT_OK(mkdir(path, 0700));
        ASSERT_OK(chown(path, worker->pw_uid, worker->pw_gid));
}

/* The records of the audit log as text, in order, after checking that they are numbered 1, 2,
 * ... without a gap. */
static char *audit_records_text(Tsmd *t, size_t *ret_n) {
        json_object *records = tsmd_audit_query(t, NULL);
        size_t n = json_object_array_length(records);
        char *text = NULL;

        for (size_t i = 0; i < n; i++)
                ASSERT_EQ(JINT(json_object_array_get_idx(records, i), "seq"), (int64_t) i + 1);
        ASSERT_NOT_NULL(text = strdup(json_object_to_json_string_ext(records, JSON_C_TO_STRING_PLAIN)));
        json_object_put(records);
        *ret_n = n;
        return text;
}

/*
 * [Audit] Directory= is read at start: a reload names it and does not apply it, and neither does
 * the next worker. Before, the worker restarted after the reload took the new directory: one
 * the monitor, past its start, could no longer give it (made, it is root's), and no worker got
 * ready again, ever; or, made as the worker's beforehand, a new log with the numbers from 1,
 * the old log's records gone from QueryAudit.
 */
static void reload_of_the_audit_directory_then_a_worker_restart(bool made) {
        _cleanup_free_ char *before = NULL, *after = NULL;
        const char *new_dir;
        size_t n_before, n_after;
        VarlinkClient *c;
        Tsmd t;

        if (geteuid() != 0)
                SKIP("the worker must run as its own user: needs root");
        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        c = tsmd_connect(&t);
        guest_open_context(c);
        varlink_client_free(c);
        new_dir = strf("%s/audit-new", t.dir);
        if (made)
                make_worker_dir(new_dir);

        ASSERT_TRUE(tsmd_reload(&t, strf("[Platform]\nMode=emulated\n[Audit]\nDirectory=%s\n", new_dir)));
        ASSERT_TRUE(tsmd_log_contains(&t, "taking effect when tsmd restarts: [Audit] Directory="));
        before = audit_records_text(&t, &n_before);
        ASSERT_TRUE(n_before > 0);
        tsmd_kill_worker(&t);

        /* The same log, its records and numbers going on. */
        after = audit_records_text(&t, &n_after);
        ASSERT_TRUE(n_after > n_before);
        ASSERT_EQ(strncmp(after, before, strlen(before) - 1), 0);
        ASSERT_EQ(tsmd_audit_count_where(&t, (int64_t) n_before, NULL, "worker-restart", "io.tsmd.WorkerCrashed"), 1u);
        ASSERT_TRUE(access(strf("%s/audit.log", new_dir), F_OK) < 0 && errno == ENOENT);
        tsmd_teardown(&t);
}

TEST(a_worker_restarted_after_a_reload_keeps_the_audit_directory) {
        reload_of_the_audit_directory_then_a_worker_restart(/* made= */ false);
}

TEST(a_worker_restarted_after_a_reload_keeps_the_audit_directory_made_for_it) {
        reload_of_the_audit_directory_then_a_worker_restart(/* made= */ true);
}

/* The number of context state files in dir. */
static unsigned state_files_in(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        unsigned n = 0;

        if (!d && errno == ENOENT)
                return 0;
        ASSERT_NOT_NULL(d);
        while ((de = readdir(d))) {
                size_t l = strlen(de->d_name);

                n += l > strlen(".state") && streq(de->d_name + l - strlen(".state"), ".state");
        }
        closedir(d);
        return n;
}

/* [Guest] ContextStateDirectory= likewise, which is locked at start (one tsmd per directory):
 * before, the worker restarted after the reload kept its contexts' state in the new directory,
 * which no lock held, and another tsmd could start on the old one and remove it. */
TEST(a_worker_restarted_after_a_reload_keeps_the_context_state_directory) {
        const char *old_dir, *new_dir;
        VarlinkClient *c;
        Tsmd t;

        if (geteuid() != 0)
                SKIP("the worker must run as its own user: needs root");
        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        old_dir = strf("%s/contexts", t.dir);
        new_dir = strf("%s/contexts-new", t.dir);
        make_worker_dir(new_dir);
        ASSERT_TRUE(tsmd_reload(&t, strf("[Platform]\nMode=emulated\n[Guest]\nContextStateDirectory=%s\n", new_dir)));
        ASSERT_TRUE(tsmd_log_contains(&t, "taking effect when tsmd restarts: [Guest] ContextStateDirectory="));
        tsmd_kill_worker(&t);

        c = tsmd_connect(&t);
        guest_open_context(c);
        ASSERT_EQ(state_files_in(old_dir), 1u);
        ASSERT_EQ(state_files_in(new_dir), 0u);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* And every other key read at start, here [Guest] MaxContexts=: lowered by a reload, it did not
 * apply, until a worker restarted. */
TEST(a_worker_restarted_after_a_reload_keeps_max_contexts) {
        VarlinkClient *c;
        Tsmd t;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n[Guest]\nMaxContexts=4\n");
        ASSERT_TRUE(tsmd_reload(&t, "[Platform]\nMode=emulated\n[Guest]\nMaxContexts=1\n"));
        tsmd_kill_worker(&t);
        c = tsmd_connect(&t);
        guest_open_context(c);
        guest_open_context(c);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* A reload asked for while a new worker starts must neither kill it (the monitor passes it on only
 * once the worker is READY, as SIGNAL_RELOAD) nor get lost, nor lose its sender: on record as ours. */
TEST(sighup_while_the_worker_starts) {
        Tsmd t;
        unsigned reloads;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        reloads = tsmd_log_count(&t, "Configuration reloaded from");
        for (int i = 0; i < 3; i++) {
                unsigned serving = tsmd_log_count(&t, "serving again.");
                pid_t old = tsmd_worker_pid(&t);
                uint64_t deadline = now_usec() + TSMD_WAIT_USEC;

                ASSERT_TRUE(old > 0);
                ASSERT_OK(kill(old, SIGKILL));
                /* SIGHUP all through the restart: the backoff, the exec, the new worker's start. */
                while (tsmd_log_count(&t, "serving again.") <= serving) {
                        if (now_usec() > deadline)
                                TEST_FAIL("no worker served again within %llu ms (round %d)",
                                          (unsigned long long) (TSMD_WAIT_USEC / USEC_PER_MSEC), i);
                        tsmd_kill(&t, SIGHUP);
                        sleep_usec(USEC_PER_MSEC);
                }
        }
        if (tsmd_log_contains(&t, "killed by signal HUP"))
                TEST_FAIL("a SIGHUP killed a starting worker");
        /* The reloads asked for happened, with the worker serving. */
        ASSERT_TRUE(tsmd_wait_log(&t, "Configuration reloaded from", reloads + 1, TSMD_WAIT_USEC));
        for (uint64_t deadline = now_usec() + TSMD_WAIT_USEC;; sleep_usec(5 * USEC_PER_MSEC)) {
                json_object *records = tsmd_audit_query(&t, strf("{\"event\":\"reload\",\"uid\":%u}",
                                                                 (unsigned) getuid()));
                bool ours = false;

                for (size_t i = 0; i < json_object_array_length(records); i++) {
                        json_object *r = json_object_array_get_idx(records, i), *pid, *to;

                        /* The event finds the Reload calls too, which have no "signalled". */
                        ours = ours || (json_object_object_get_ex(r, "pid", &pid) &&
                                        json_object_get_int64(pid) == getpid() &&
                                        json_object_object_get_ex(r, "signalled", &to) &&
                                        json_object_get_string(to) && streq(json_object_get_string(to), "tsmd"));
                }
                json_object_put(records);
                if (ours)
                        break;
                if (now_usec() > deadline)
                        TEST_FAIL("no record of a reload by our SIGHUP names us");
        }
        tsmd_teardown(&t);
}

/* A worker that ends by itself (here: it cannot open its audit log, a file where its directory
 * was) is on record with its own exit status. The monitor kills a worker that lets go of its
 * channel and lives on; a real one keeps the channel until it exits, and then no signal changes
 * how it ended. */
TEST(a_worker_that_exits_keeps_its_exit_status) {
        const char *audit, *away;
        Tsmd t;

        if (geteuid() != 0)
                SKIP("the worker must run as another user than the audit directory's: needs root");
        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        audit = strdupa(strf("%s/audit", t.dir));
        away = strdupa(strf("%s/audit.away", t.dir));
        ASSERT_OK(rename(audit, away));
        write_file(audit, "");
        ASSERT_OK(kill(tsmd_worker_pid(&t), SIGKILL));
        /* Five of them, each racing the monitor's kill at its end of file (a 50:50 race before). */
        if (!tsmd_wait_log(&t, " exited with status 1.", 5, 10 * USEC_PER_SEC))
                TEST_FAIL("workers that cannot open the audit log did not exit with status 1");
        ASSERT_EQ(tsmd_log_count(&t, " was killed by signal KILL."), 1u); /* ours */
        ASSERT_OK(unlink(audit));
        ASSERT_OK(rename(away, audit));
        ASSERT_TRUE(tsmd_wait_log(&t, "serving again.", 1, 10 * USEC_PER_SEC));
        tsmd_teardown(&t);
}

/* A worker that does not stop after SIGTERM (stuck: here stopped by SIGSTOP) does not keep tsmd
 * from exiting: after [Worker] StopTimeoutSec= (3 s here, 15 by default) the monitor kills it,
 * says so, and exits 0 (it was asked to stop). */
TEST(a_worker_that_does_not_stop_is_killed_after_the_stop_timeout) {
        uint64_t start;
        pid_t worker;
        int status;
        Tsmd t;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n[Worker]\nStopTimeoutSec=3\nDrainTimeoutSec=1\n");
        worker = tsmd_worker_pid(&t);
        ASSERT_TRUE(worker > 0);
        ASSERT_OK(kill(worker, SIGSTOP));
        start = now_usec();
        tsmd_kill(&t, SIGTERM);
        /* Well before the default's 15 s: the setting is what counts. */
        if (!tsmd_wait_log(&t, strf("Worker %d did not stop in 3s, killing it.", (int) worker), 1, 12 * USEC_PER_SEC))
                TEST_FAIL("tsmd did not give up on its stopped worker within 12 s");
        ASSERT_GE(now_usec() - start, 2 * USEC_PER_SEC);
        status = tsmd_terminate(&t);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_ERRNO(kill(worker, 0) < 0 ? -errno : 0, ESRCH); /* killed, and reaped */
        tsmd_teardown(&t);
}

/* From /proc, which root may read for the worker too (prlimit() may not: another user
 * namespace). */
static unsigned long long nofile_soft_limit_of(pid_t pid) {
        _cleanup_free_ char *limits = read_file(strf("/proc/%d/limits", (int) pid));
        const char *line = strstr(limits, "Max open files");

        if (!line)
                TEST_FAIL("no \"Max open files\" in /proc/%d/limits", (int) pid);
        return strtoull(line + strlen("Max open files"), NULL, 10);
}

/* A shell's soft RLIMIT_NOFILE (1024, here lowered further) would cap the contexts the monitor
 * keeps below MaxContexts=; tsmd takes the hard limit for itself and its worker. */
TEST(nofile_soft_limit_raised_to_the_hard_one) {
        struct rlimit saved, low;
        Tsmd t;

        ASSERT_OK(getrlimit(RLIMIT_NOFILE, &saved));
        if (saved.rlim_max <= 512)
                SKIP("the hard RLIMIT_NOFILE is %llu, nothing to raise to", (unsigned long long) saved.rlim_max);
        low = (struct rlimit){ .rlim_cur = 512, .rlim_max = saved.rlim_max };
        tsmd_start(&t, &(TsmdOptions) { .config = "[Platform]\nMode=emulated\n", .nofile = &low });

        ASSERT_EQ(nofile_soft_limit_of(t.pid), saved.rlim_max);
        ASSERT_EQ(nofile_soft_limit_of(tsmd_worker_pid(&t)), saved.rlim_max);
        ASSERT_FALSE(tsmd_log_contains(&t, "RLIMIT_NOFILE of 512"));
        tsmd_teardown(&t);
}

/* ---- without a configuration file --------------------------------------------------------- */

/* tsmd's default paths, private to this test: an empty /run and /var/log, and no default
 * tsmd.conf or policy (an empty directory over SYSCONFDIR/tsmd if the host has one). */
static void private_default_paths(void) {
        tsmd_private_mount_namespace("mounting over tsmd's default paths");
        ASSERT_OK(mount("tmpfs", RUNSTATEDIR, "tmpfs", 0, "mode=0755"));
        ASSERT_OK(mount("tmpfs", LOCALSTATEDIR "/log", "tmpfs", 0, "mode=0755"));
        if (access(SYSCONFDIR "/tsmd", F_OK) >= 0)
                ASSERT_OK(mount("tmpfs", SYSCONFDIR "/tsmd", "tmpfs", 0, "mode=0755"));
        ASSERT_TRUE(access(SYSCONFDIR "/tsmd/tsmd.conf", F_OK) < 0 && errno == ENOENT);
}

/* No default tsmd.conf means the built-in defaults, for the worker as for the monitor. */
TEST(worker_serves_without_the_default_file) {
        Tsmd t;
        VarlinkClient *c;

        private_default_paths();
        tsmd_start(&t, &(TsmdOptions) { .default_config = true });
        c = tsmd_connect(&t);
        CALL_OK(c, "io.tsmd.Service.Ping", NULL);
        ASSERT_FALSE(tsmd_log_contains(&t, "Failed to load"));
        ASSERT_EQ(tsmd_log_count(&t, "Started worker"), 1U);
        /* And on reload: still no file, still the defaults. */
        CALL_OK(c, "io.tsmd.Service.Reload", NULL);
        ASSERT_EQ(max_depth(c), 64);
        varlink_client_free(c);
        tsmd_teardown(&t);

        /* A file named on the command line stays required. */
        {
                const char *dir = scratch_dir();
                const char *argv[] = { TSMD_PATH, strf("--config=%s", scratch_path(dir, "missing.conf")),
                                       strf("--socket=%s", scratch_path(dir, "io.tsmd")), NULL };
                _cleanup_free_ char *err = NULL;

                ASSERT_FALSE(exited_with(run_capture(argv, NULL, &err, RUN_TIMEOUT_USEC), 0));
                ASSERT_NOT_NULL(strstr(err, "missing.conf"));
        }
}

/* ---- a start with broken files ----------------------------------------------------------- */

/* tsmd started on dir's tsmd.conf, as no service manager keeps anything for it; returns the wait
 * status, stderr in *err. Fails the test unless it exits well within RUN_TIMEOUT_USEC. */
static int start_in(const char *dir, char **err) {
        const char *argv[] = { TSMD_PATH, strf("--config=%s", scratch_path(dir, "tsmd.conf")),
                               strf("--socket=%s", scratch_path(dir, "io.tsmd")), NULL };

        (void) unsetenv("NOTIFY_SOCKET");
        (void) unsetenv("LISTEN_FDS");
        (void) unsetenv("LISTEN_PID");
        return run_capture(argv, NULL, err, RUN_TIMEOUT_USEC);
}

/*
 * With the files broken and no set that loaded before (a first start; a service manager would
 * have passed the last one kept), tsmd exits 78 (EX_CONFIG, which the unit does not restart
 * into the same files) at once, naming the file and line: systemctl start fails and says why. Before, a broken policy had the monitor start workers that failed
 * in a loop and never said READY=1: the start hung for TimeoutStartSec=, and VMMs with it.
 */
TEST(a_start_with_broken_files_and_nothing_kept_exits_naming_the_line) {
        const char *dir = scratch_dir();

        if (geteuid() != 0)
                SKIP("tsmd starts as root only");
        ASSERT_OK(chmod(dir, 0755));
        write_file(scratch_path(dir, "tsmd.conf"),
                   strf("[Platform]\nMode=emulated\n[Audit]\nDirectory=%s/audit\nJournal=no\n"
                        "[Guest]\nContextStateDirectory=%s/contexts\n[Policy]\nFile=%s/policy.conf\n",
                        dir, dir, dir));
        write_file(scratch_path(dir, "policy.conf"), "[Client:x]\nUsers=root\nBogus=1\n");
        {
                _cleanup_free_ char *err = NULL;
                const char *want = strf("%s/policy.conf:3: unknown key 'Bogus'", dir);

                ASSERT_TRUE(exited_with(start_in(dir, &err), EX_CONFIG));
                if (!strstr(err, want) || !strstr(err, "no configuration that loaded before is kept: not starting"))
                        TEST_FAIL("stderr does not say '%s', and that tsmd does not start: %s", want, err);
                ASSERT_NULL(strstr(err, "Started worker"));
        }

        /* tsmd.conf the same. */
        write_file(scratch_path(dir, "policy.conf"), "[Client:x]\nUsers=root\n");
        write_file(scratch_path(dir, "tsmd.conf"), "[Platform]\nMode=emulated\nBogus=1\n");
        {
                _cleanup_free_ char *err = NULL;
                const char *want = strf("%s/tsmd.conf:3: unknown key 'Bogus' in [Platform] (valid: Mode, IommuDevice, EmulatedDevices, EmulatedLatencyUSec, EmulatedDebugScopes, RequestTimeoutUSec)", dir);

                ASSERT_TRUE(exited_with(start_in(dir, &err), EX_CONFIG));
                if (!strstr(err, want) || !strstr(err, "no configuration that loaded before is kept: not starting"))
                        TEST_FAIL("stderr does not say '%s', and that tsmd does not start: %s", want, err);
        }

        /* An IommuDevice= that every OpenContext would refuse (ENODEV, io.tsmd.System): not
         * started on, rather than serving VMMs that each fail. */
        write_file(scratch_path(dir, "tsmd.conf"), "[Platform]\nMode=emulated\nIommuDevice=/dev/full\n");
        {
                _cleanup_free_ char *err = NULL;
                const char *want = strf("%s/tsmd.conf:3: invalid value for IommuDevice=: not the IOMMU's character device", dir);

                ASSERT_TRUE(exited_with(start_in(dir, &err), EX_CONFIG));
                if (!strstr(err, want) || !strstr(err, "no configuration that loaded before is kept: not starting"))
                        TEST_FAIL("stderr does not say '%s', and that tsmd does not start: %s", want, err);
        }
}

/* With no socket from the service manager, either option serves (--guest-socket= alone too):
 * without both, tsmd says it needs one of them, naming both. */
TEST(a_start_without_a_socket_names_both_options) {
        const char *dir = scratch_dir();
        _cleanup_free_ char *err = NULL;
        const char *argv[] = { TSMD_PATH, strf("--config=%s", scratch_path(dir, "tsmd.conf")), NULL };

        if (geteuid() != 0)
                SKIP("tsmd starts as root only");
        ASSERT_OK(chmod(dir, 0755));
        write_file(scratch_path(dir, "tsmd.conf"),
                   strf("[Platform]\nMode=emulated\n[Audit]\nDirectory=%s/audit\nJournal=no\n"
                        "[Guest]\nContextStateDirectory=%s/contexts\n[Policy]\nFile=%s/policy.conf\n",
                        dir, dir, dir));
        write_file(scratch_path(dir, "policy.conf"), "[Client:x]\nUsers=root\n");
        (void) unsetenv("NOTIFY_SOCKET");
        (void) unsetenv("LISTEN_FDS");
        (void) unsetenv("LISTEN_PID");
        ASSERT_FALSE(exited_with(run_capture(argv, NULL, &err, RUN_TIMEOUT_USEC), 0));
        if (!strstr(err, "No socket passed by the service manager, and neither --socket= nor --guest-socket= given."))
                TEST_FAIL("stderr does not name both options: %s", err);
}

/* ---- which worker ------------------------------------------------------------------------ */

/* A tsmd run from a build tree starts the worker built with it, not one of another version
 * installed on the host: here an installed one that exits at once, which tsmd would restart
 * until it gave up. */
TEST(a_build_tree_tsmd_starts_its_own_worker) {
        char dir[] = TSMD_WORKER_PATH, top[sizeof(dir)];
        VarlinkClient *c;
        FILE *f;
        Tsmd t;

        tsmd_private_mount_namespace("mounting over the installed worker's directory");
        /* A tmpfs over the first directory of TSMD_WORKER_PATH's that exists, the rest made in it. */
        *strrchr(dir, '/') = 0;
        strcpy(top, dir);
        while (access(top, F_OK) < 0)
                *strrchr(top, '/') = 0;
        ASSERT_OK(mount("tmpfs", top, "tmpfs", 0, "mode=0755"));
        for (char *p = dir + strlen(top) + 1; p <= dir + strlen(dir); p++)
                if (*p == '/' || *p == 0) {
                        char c0 = *p;

                        *p = 0;
                        ASSERT_TRUE(mkdir(dir, 0755) >= 0 || errno == EEXIST);
                        *p = c0;
                }
        ASSERT_NOT_NULL(f = fopen(TSMD_WORKER_PATH, "we"));
        fputs("#!/bin/sh\nexit 1\n", f);
        ASSERT_OK(fclose(f));
        ASSERT_OK(chmod(TSMD_WORKER_PATH, 0755));

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        c = tsmd_connect(&t);
        CALL_OK(c, "io.tsmd.Service.Ping", NULL);
        ASSERT_FALSE(tsmd_log_contains(&t, "Started worker " TSMD_WORKER_PATH));
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* ---- threads ----------------------------------------------------------------------------- */

/* The thread that closes fds a peer's FUSE server may hold (fd-closer.h) starts with the first
 * such fd: fds of other kinds (here /dev/null's, passed with calls that take none) are closed at
 * once, and the emulated platform's monitor stays single-threaded (a second thread, idle, costs
 * glibc's multi-threaded syscall path: BENCHMARKS.md). */
TEST(no_closer_thread_without_an_fd_that_needs_it) {
        VarlinkClient *c;
        unsigned worker_threads;
        Tsmd t;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        c = tsmd_connect(&t);
        CALL_OK(c, "io.tsmd.Service.Ping", NULL);
        worker_threads = tsmd_threads_of(tsmd_worker_pid(&t));
        for (int i = 0; i < 3; i++) {
                int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

                ASSERT_OK(fd);
                ASSERT_OK(varlink_client_push_fd(c, fd));
                CALL_OK(c, "io.tsmd.Service.Ping", NULL);
        }
        guest_open_context(c);
        ASSERT_EQ(tsmd_threads_of(t.pid), 1u);
        ASSERT_EQ(tsmd_threads_of(tsmd_worker_pid(&t)), worker_threads);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* n fds (of /dev/null) for c's next call. */
static void push_fds(VarlinkClient *c, unsigned n) {
        for (unsigned i = 0; i < n; i++) {
                int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

                ASSERT_OK(fd);
                ASSERT_OK(varlink_client_push_fd(c, fd));
        }
}

/* MaxFds=0 is a quarter of the worker's RLIMIT_NOFILE, which the configuration's check that the
 * fd budget holds two messages' fds (twice MaxFdsPerMessage=) cannot see: with an RLIMIT_NOFILE
 * of 512, 128 fds, less than the default 253 twice. MaxFdsPerMessage= is lowered to fit (64),
 * with a warning: a message with more is refused by that limit (told, its connection dropped), one
 * with as many is served. On reload too. */
TEST(fds_per_message_fit_to_the_fd_budget_of_max_fds_0) {
        const struct rlimit low = { .rlim_cur = 512, .rlim_max = 512 };
        struct rlimit ours;
        AsyncCall a = {};
        VarlinkClient *c;
        json_object *r, *l;
        Tsmd t;

        ASSERT_OK(getrlimit(RLIMIT_NOFILE, &ours));
        if (ours.rlim_max < low.rlim_max)
                SKIP("the hard RLIMIT_NOFILE is %llu, below 512", (unsigned long long) ours.rlim_max);
        tsmd_start(&t, &(TsmdOptions) { .config = "[Platform]\nMode=emulated\n", .nofile = &low });
        ASSERT_TRUE(tsmd_log_contains(&t, "The worker's fd budget of 128 (MaxFds=0; 0: a quarter of RLIMIT_NOFILE, "
                                          "at most half of it) is less than twice MaxFdsPerMessage=253: taking at "
                                          "most 64 fds per message."));
        c = tsmd_connect(&t);
        r = CALL_OK(c, "io.tsmd.Service.GetStatus", NULL);
        ASSERT_TRUE(json_object_object_get_ex(r, "limits", &l));
        ASSERT_EQ(JINT(l, "maxFds"), 128);
        ASSERT_EQ(JINT(l, "maxFdsPerMessage"), 64);
        push_fds(c, 64);
        CALL_OK(c, "io.tsmd.Service.Ping", NULL);
        push_fds(c, 65);
        tsmd_call_async(c, "io.tsmd.Service.Ping", NULL, 0, &a);
        ASSERT_TRUE(tsmd_async_wait(c, &a, 1, TSMD_WAIT_USEC));
        /* Told by name, with the limit in force, then gone. */
        ASSERT_STREQ(a.errors[0], VARLINK_REFUSED_FILE_DESCRIPTORS);
        ASSERT_TRUE(json_matches(a.params[0], "{\"maxFdsPerMessage\":64}"));
        /* The client may have read the end of the stream with the error, and closed its end. */
        ASSERT_TRUE(!varlink_client_is_connected(c) || tsmd_wait_hangup(c, TSMD_WAIT_USEC));
        ASSERT_TRUE(tsmd_wait_log(&t, "Dropping client connection (io.tsmd.FileDescriptorsRefused)", 1,
                                  TSMD_WAIT_USEC));
        async_call_done(&a);
        varlink_client_free(c);

        /* An explicit MaxFds= above half of RLIMIT_NOFILE is half of it: 256, room for 128. */
        ASSERT_TRUE(tsmd_reload(&t, "[Platform]\nMode=emulated\n[Varlink]\nMaxFds=1000\n"));
        ASSERT_TRUE(tsmd_log_contains(&t, "fd budget of 256 (MaxFds=1000;"));
        c = tsmd_connect(&t);
        r = CALL_OK(c, "io.tsmd.Service.GetStatus", NULL);
        ASSERT_TRUE(json_object_object_get_ex(r, "limits", &l));
        ASSERT_EQ(JINT(l, "maxFdsPerMessage"), 128);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* ---- a second tsmd ------------------------------------------------------------------------ */

/* A second tsmd as an admin would start one by hand; its exit status, its stderr in *err. */
static int second_tsmd(const char *config_path, const char *socket_path, char **err) {
        const char *argv[] = { TSMD_PATH, strf("--config=%s", config_path), strf("--socket=%s", socket_path),
                               "--log-level=info", NULL };

        return run_capture(argv, NULL, err, RUN_TIMEOUT_USEC);
}

/* The second tsmd's tsmd.conf at path: its audit log in audit_dir/audit, its contexts' state in
 * state_dir/contexts, first's policy. */
static void write_second_config(const char *path, const char *audit_dir, const char *state_dir, const Tsmd *first) {
        write_file(path, strf("[Platform]\nMode=emulated\n[Audit]\nDirectory=%s/audit\nJournal=no\n"
                              "[Guest]\nContextStateDirectory=%s/contexts\n[Policy]\nFile=%s/policy.conf\n"
                              "DropInDirectory=%s/policy.d\n", audit_dir, state_dir, first->dir, first->dir));
}

/* The first tsmd serves on, untouched by the second. */
static void expect_first_serves(Tsmd *t) {
        VarlinkClient *c = tsmd_connect(t);

        CALL_OK(c, "io.tsmd.Service.Ping", NULL);
        varlink_client_free(c);
        ASSERT_TRUE(tsmd_is_running(t));
}

/* A second tsmd of config on socket fails to start, its stderr saying refusal: else the test
 * fails with failure, and that stderr. */
static void expect_second_tsmd_refused(const char *config, const char *socket, const char *refusal,
                                       const char *failure) {
        _cleanup_free_ char *err = NULL;

        ASSERT_FALSE(exited_with(second_tsmd(config, socket, &err), 0));
        if (!strstr(err, refusal))
                TEST_FAIL("%s:\n%s", failure, err);
}

/* A second tsmd given a live one's socket refuses to start, naming the path, and leaves it to the
 * first: the first's clients are not taken over. */
TEST(second_tsmd_refuses_a_served_socket) {
        const char *dir = scratch_dir(), *config = scratch_path(dir, "tsmd.conf");
        Tsmd t;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        /* Directories of its own: only the socket is shared. */
        write_second_config(config, dir, dir, &t);
        expect_second_tsmd_refused(config, t.socket, strf("something serves '%s' already", t.socket),
                                   "the second tsmd did not name the socket it refused");
        expect_first_serves(&t);
        tsmd_teardown(&t);
}

/* A second tsmd on a live one's context state directory (its files: its configuration) refuses
 * to start: its worker would have removed the state of the first one's contexts. */
TEST(second_tsmd_refuses_a_state_directory_in_use) {
        const char *dir = scratch_dir(), *state;
        Tsmd t;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        /* The state of a context the first tsmd would keep: no context of the second's. */
        state = strf("%s/contexts/0123456789abcdef0123456789abcdef.state", t.dir);
        write_file(state, "");
        expect_second_tsmd_refused(t.config_path, scratch_path(dir, "io.tsmd"),
                                   strf("another tsmd uses the context state directory '%s/contexts'", t.dir),
                                   "the second tsmd did not name the directory it refused");
        ASSERT_OK(access(state, F_OK));
        expect_first_serves(&t);
        tsmd_teardown(&t);
}

/* And on a live one's audit directory: its worker could not open the log another one writes, and
 * would be restarted for ever, never ready. */
TEST(second_tsmd_refuses_an_audit_directory_in_use) {
        const char *dir = scratch_dir(), *config = scratch_path(dir, "tsmd.conf");
        Tsmd t;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        write_second_config(config, t.dir, dir, &t);
        expect_second_tsmd_refused(config, scratch_path(dir, "io.tsmd"),
                                   strf("another tsmd writes its audit log in '%s/audit'", t.dir),
                                   "the second tsmd did not name the directory it refused");
        expect_first_serves(&t);
        tsmd_teardown(&t);
}

/* The audit directory dir/audit (dir: the worker's to pass through), locked by the test as a
 * tsmd's worker would (another process than the tsmd it then starts there): the lock is held
 * while the returned fd is open. */
static int audit_directory_locked(const char *dir) {
        const char *audit = scratch_path(dir, "audit");
        int fd;

        ASSERT_OK(chmod(dir, 0755));
        ASSERT_OK(mkdir(audit, 0700));
        fd = open(audit, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_OK(fd);
        ASSERT_OK(flock(fd, LOCK_EX | LOCK_NB));
        return fd;
}

/* tsmd with its audit log in dir/audit, started (not waited for). */
static void start_on_audit_directory(Tsmd *t, const char *dir) {
        tsmd_start_nowait(t, &(TsmdOptions) {
                .config = strf("[Platform]\nMode=emulated\n[Audit]\nDirectory=%s/audit\nJournal=no\n", dir),
        });
}

/* The worker of a tsmd that was just killed may hold its audit directory's lock a little longer:
 * a tsmd started right after waits for it. Let go once tsmd said it waits (so it had to), it
 * starts. */
TEST(audit_directory_lock_released_in_time_is_taken) {
        const char *dir = scratch_dir();
        _cleanup_close_ int lock = audit_directory_locked(dir);
        Tsmd t;

        start_on_audit_directory(&t, dir);
        if (!tsmd_wait_log(&t, "is locked: waiting", 1, TSMD_START_TIMEOUT_USEC))
                TEST_FAIL("tsmd did not wait for the audit directory's lock:\n%s", tsmd_read_log(&t));
        lock = safe_close(lock);
        tsmd_wait_running(&t);
        expect_first_serves(&t);
        tsmd_teardown(&t);
}

/* Held past the wait (a second), it is another tsmd's: refused, after the wait, by name. */
TEST(audit_directory_lock_held_past_the_wait_refused) {
        const char *dir = scratch_dir();
        _cleanup_close_ int lock = audit_directory_locked(dir);
        uint64_t started = now_usec(), deadline = started + TSMD_START_TIMEOUT_USEC;
        Tsmd t;

        start_on_audit_directory(&t, dir);
        while (tsmd_is_running(&t)) {
                if (now_usec() > deadline)
                        TEST_FAIL("tsmd did not give up on a held audit directory");
                sleep_usec(5 * USEC_PER_MSEC);
        }
        ASSERT_FALSE(exited_with(t.exit_status, 0));
        if (now_usec() - started < USEC_PER_SEC)
                TEST_FAIL("tsmd gave up on the audit directory's lock within less than a second");
        ASSERT_TRUE(tsmd_log_contains(&t, "is locked: waiting"));
        if (!tsmd_log_contains(&t, strf("another tsmd writes its audit log in '%s/audit'", dir)))
                TEST_FAIL("tsmd did not name the directory it refused:\n%s", tsmd_read_log(&t));
        tsmd_teardown(&t);
        lock = safe_close(lock); /* held until tsmd gave up */
}

/* The audit directory and the context state directory one directory under two names: refused as
 * such, not as another tsmd's. */
TEST(audit_and_state_directory_the_same_refused) {
        const char *dir = scratch_dir(), *config = scratch_path(dir, "tsmd.conf");
        Tsmd t;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        /* dir/x/../both and dir/both: the configuration's check compares names as spelled, the
         * monitor what it opens. */
        ASSERT_OK(mkdir(strf("%s/x", dir), 0700));
        ASSERT_OK(mkdir(strf("%s/both", dir), 0700));
        write_file(config, strf("[Platform]\nMode=emulated\n[Audit]\nDirectory=%s/x/../both\nJournal=no\n"
                                "[Guest]\nContextStateDirectory=%s/both\n[Policy]\nFile=%s/policy.conf\n",
                                dir, dir, t.dir));
        expect_second_tsmd_refused(config, scratch_path(dir, "io.tsmd"), "is the context state directory",
                                   "tsmd did not say why it refused one directory for both");
        expect_first_serves(&t);
        tsmd_teardown(&t);
}

/* A path that is no socket is never replaced (a mistyped --socket= must not delete a file): tsmd
 * refuses to start, naming it, and the file stays as it was. */
TEST(a_path_that_is_no_socket_is_refused) {
        const char *dir = scratch_dir(), *config = scratch_path(dir, "tsmd.conf");
        const char *precious = scratch_path(dir, "precious.txt");
        _cleanup_free_ char *text = NULL;
        Tsmd t;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        write_second_config(config, dir, dir, &t);
        write_file(precious, "keep me\n");
        expect_second_tsmd_refused(config, precious, strf("'%s' exists and is not a socket", precious),
                                   "a second tsmd did not refuse a regular file as its socket");
        ASSERT_OK(ini_read_file(precious, 4096, &text));
        ASSERT_STREQ(text, "keep me\n");
        expect_first_serves(&t);
        tsmd_teardown(&t);
}

/* "@NAME" is an abstract socket to tsmctl and libtsm, which have no file permissions: tsmd
 * serves none (nor a relative path, which would read the same), and says why. */
TEST(an_abstract_or_relative_socket_is_refused) {
        static const struct {
                const char *arg, *refusal;
        } cases[] = {
                { "--socket=@tsmd-test", "--socket=@tsmd-test: abstract sockets (@NAME) are not served" },
                { "--guest-socket=@tsmd-test", "--guest-socket=@tsmd-test: abstract sockets (@NAME) are not served" },
                { "--socket=tsmd-test.sock", "--socket=tsmd-test.sock: not an absolute path" },
                { "--guest-socket=tsmd-test.sock", "--guest-socket=tsmd-test.sock: not an absolute path" },
        };
        const char *dir = scratch_dir();

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const char *argv[] = { TSMD_PATH, strf("--config=%s", scratch_path(dir, "tsmd.conf")), cases[i].arg,
                                       NULL };
                _cleanup_free_ char *err = NULL;

                ASSERT_FALSE(exited_with(run_capture(argv, NULL, &err, RUN_TIMEOUT_USEC), 0));
                if (!strstr(err, cases[i].refusal))
                        TEST_FAIL("%s: stderr does not say '%s': %s", cases[i].arg, cases[i].refusal, err);
        }
}

/* SECURITY: a socket is made with its mode, not chmod()ed by path after bind(): in a directory
 * others may write, the socket could be swapped for a symlink in between, and the guest socket's
 * 0666 land on the target. No attribute change of it is seen, and the mode is the one promised. */
TEST(sockets_are_made_with_their_mode) {
        const char *dir = scratch_dir(), *guest = scratch_path(dir, "guest.sock");
        const char *args[] = { strf("--guest-socket=%s", guest), NULL };
        _cleanup_close_ int in = -EBADF;
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        bool created = false;
        struct stat st;
        ssize_t n;
        Tsmd t;

        in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        ASSERT_TRUE(in >= 0);
        ASSERT_TRUE(inotify_add_watch(in, dir, IN_CREATE | IN_ATTRIB) >= 0);
        tsmd_start(&t, &(TsmdOptions) { .config = "[Platform]\nMode=emulated\n", .args = args });
        ASSERT_OK(lstat(guest, &st));
        ASSERT_TRUE(S_ISSOCK(st.st_mode));
        ASSERT_EQ(st.st_mode & 07777, 0666U);
        ASSERT_OK(lstat(t.socket, &st));
        ASSERT_EQ(st.st_mode & 07777, 0660U);
        while ((n = read(in, buf, sizeof(buf))) > 0)
                for (char *p = buf; p < buf + n;) {
                        const struct inotify_event *e = (const void *) p; /* buf is aligned for it */

                        if (e->len > 0 && streq(e->name, "guest.sock")) {
                                if (e->mask & IN_ATTRIB)
                                        TEST_FAIL("the guest socket's attributes were changed after it was made");
                                created = created || (e->mask & IN_CREATE);
                        }
                        p += sizeof(*e) + e->len;
                }
        ASSERT_TRUE(created);
        tsmd_teardown(&t);
}

/* The socket a tsmd that is gone left behind (it never removes it) is taken: nothing serves it. */
TEST(stale_socket_is_replaced) {
        Tsmd t;
        VarlinkClient *c;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        tsmd_stop(&t);
        ASSERT_OK(access(t.socket, F_OK));
        tsmd_restart(&t, &(TsmdOptions) { .config = "[Platform]\nMode=emulated\n" });
        c = tsmd_connect(&t);
        CALL_OK(c, "io.tsmd.Service.Ping", NULL);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* A listening socket at path whose listener exits at once, held by a process it forked until
 * *hold_fd (the test's end of a pipe) is closed: as a worker the kernel is still killing for its
 * monitor's SIGKILL holds tsmd's socket. */
static void listen_and_leave(const char *path, int *hold_fd) {
        int hold[2], status;
        pid_t listener;

        ASSERT_OK(pipe2(hold, O_CLOEXEC));
        fflush(NULL);
        listener = fork();
        ASSERT_TRUE(listener >= 0);
        if (listener == 0) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                char c;

                if (strlen(path) >= sizeof(sa.sun_path))
                        _exit(1);
                memcpy(sa.sun_path, path, strlen(path));
                (void) unlink(path);
                if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 8) < 0)
                        _exit(1);
                switch (fork()) {
                case -1:
                        _exit(1);
                case 0:
                        /* Until the test's end of the pipe is closed (it exits, or says so). */
                        close(hold[1]);
                        (void) !read(hold[0], &c, 1);
                        _exit(0);
                default:
                        _exit(0);
                }
        }
        close(hold[0]);
        ASSERT_TRUE(waitpid(listener, &status, 0) == listener);
        ASSERT_TRUE(exited_with(status, 0));
        *hold_fd = hold[1];
}

/* A socket whose listener is gone is a stale one, though a process it forked still holds it: a
 * tsmd started right after a SIGKILL of the last one takes it. */
TEST(socket_of_a_listener_that_is_gone_is_replaced) {
        VarlinkClient *c;
        int hold;
        Tsmd t;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        tsmd_stop(&t);
        listen_and_leave(t.socket, &hold);
        tsmd_restart(&t, &(TsmdOptions) { .config = "[Platform]\nMode=emulated\n" });
        c = tsmd_connect(&t);
        CALL_OK(c, "io.tsmd.Service.Ping", NULL);
        varlink_client_free(c);
        close(hold);
        tsmd_teardown(&t);
}

/* ---- socket activation ------------------------------------------------------------------- */

static const char *find_socket_activate(void) {
        static const char *const candidates[] = {
                "/usr/lib/systemd/systemd-socket-activate",
                "/lib/systemd/systemd-socket-activate",
                "/usr/bin/systemd-socket-activate",
                "/bin/systemd-socket-activate",
        };

        for (size_t i = 0; i < ELEMENTSOF(candidates); i++)
                if (access(candidates[i], X_OK) >= 0)
                        return candidates[i];
        return NULL;
}

TEST(socket_activation) {
        const char *activate = find_socket_activate();
        Tsmd t;
        VarlinkClient *c;
        json_object *r, *ifaces;
        bool guest = false;

        if (!activate)
                SKIP("systemd-socket-activate not found (package systemd)");

        const char *wrapper[] = { activate, "-l", "@SOCKET@", NULL };

        tsmd_start(&t, &(TsmdOptions) {
                .config = "[Platform]\nMode=emulated\n",
                .wrapper = wrapper,
        });
        /* tsmd runs with the passed socket only. */
        ASSERT_TRUE(tsmd_log_contains(&t, "running."));
        ASSERT_FALSE(tsmd_log_contains(&t, "Listening on unix:"));

        c = tsmd_connect(&t);
        r = CALL_OK(c, "org.varlink.service.GetInfo", NULL);
        ASSERT_STREQ(JSTR(r, "vendor"), "tsmd");
        ASSERT_STREQ(JSTR(r, "product"), "tsmd");
        ASSERT_TRUE(strlen(JSTR(r, "version")) > 0);
        ASSERT_TRUE(json_object_object_get_ex(r, "interfaces", &ifaces));
        for (size_t i = 0; i < json_object_array_length(ifaces); i++) {
                const char *iface = json_object_get_string(json_object_array_get_idx(ifaces, i));

                if (streq(iface, "io.tsmd.Guest"))
                        guest = true;
                /* Not named io.tsmd.Admin: it serves VMMs only (fails closed). */
                ASSERT_FALSE(streq(iface, "io.tsmd.Admin"));
        }
        ASSERT_TRUE(guest);
        CALL_OK(c, "io.tsmd.Service.Ping", NULL);
        CALL_ERROR(c, "io.tsmd.Admin.ListBackends", NULL, "org.varlink.service.InterfaceNotFound", NULL);
        ASSERT_TRUE(tsmd_log_contains(&t, "Serving io.tsmd.Guest only on passed socket"));
        varlink_client_free(c);
        tsmd_teardown(&t);

        /* Named as tsmd-admin.socket names it: everything. */
        {
                const char *admin_wrapper[] = { activate, "-l", "@SOCKET@", "--fdname=io.tsmd.Admin", NULL };

                tsmd_start(&t, &(TsmdOptions) {
                        .config = "[Platform]\nMode=emulated\n",
                        .wrapper = admin_wrapper,
                });
                c = tsmd_connect(&t);
                CALL_OK(c, "io.tsmd.Admin.ListBackends", NULL);
                varlink_client_free(c);
                tsmd_teardown(&t);
        }
}

/* Nulls on purpose (json_object_add_null(), json_object_add_string_or_null()) are kept apart
 * from a value that could not be made, which is no null: the emulated TSM has no parent driver,
 * and FollowAudit's first reply carries no record. */
TEST(admin_replies_keep_their_nulls) {
        AsyncCall follow = {};
        json_object *r, *backends;
        VarlinkClient *c;
        Tsmd t;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n");
        c = tsmd_connect(&t);
        r = CALL_OK(c, "io.tsmd.Admin.ListBackends", NULL);
        ASSERT_TRUE(json_object_object_get_ex(r, "backends", &backends));
        ASSERT_EQ(json_object_array_length(backends), 1u);
        ASSERT_TRUE(json_matches(json_object_array_get_idx(backends, 0), "{\"tsm\":\"emu0\",\"parentDriver\":null}"));
        tsmd_call_async(c, "io.tsmd.Admin.FollowAudit", NULL, VARLINK_CALL_MORE, &follow);
        ASSERT_TRUE(tsmd_async_wait(c, &follow, 1, TSMD_WAIT_USEC));
        ASSERT_NULL(follow.errors[0]);
        ASSERT_TRUE(json_matches(follow.params[0], "{\"record\":null}"));
        async_call_done(&follow);
        varlink_client_free(c);
        tsmd_teardown(&t);
}

/* ---- tsmctl ------------------------------------------------------------------------------ */

static int tsmctl(Tsmd *t, char **out, char **err, const char *a1, const char *a2, const char *a3) {
        const char *argv[] = { TSMCTL_PATH, strf("--socket=%s", t ? t->socket : "/nonexistent/tsmd.sock"), a1, a2, a3, NULL };

        return run_capture(argv, out, err, RUN_TIMEOUT_USEC);
}

static void expect_contains(const char *haystack, const char *needle) {
        if (!strstr(haystack, needle))
                TEST_FAIL("output lacks \"%s\":\n%s", needle, haystack);
}

TEST(tsmctl_against_live_tsmd) {
        Tsmd t;
        int status;

        tsmd_start_config(&t, "[Platform]\nMode=emulated\n[Varlink]\nMaxJsonDepth=40\nMaxConnectionsPerUid=77\n"
                              "MaxJsonValues=333\nMaxFdsPerUid=544\nMaxFds=555\nMaxAdminConnections=9\n"
                              "MaxAdminConnectionsPerUid=4\nMaxConnections=50\nMaxUnnamedConnections=60\n");

        {
                _cleanup_free_ char *out = NULL, *err = NULL;
                status = tsmctl(&t, &out, &err, "status", NULL, NULL);
                if (!exited_with(status, 0))
                        TEST_FAIL("tsmctl status: 0x%x %s", status, err);
                expect_contains(out, "Version: 0.1");
                expect_contains(out, "Uptime:");
                expect_contains(out, "Connections: 1");
                expect_contains(out, "Limits:");
                expect_contains(out, "depth 40");
                expect_contains(out, "50 connections (77 per uid,");
                /* MaxUnnamedConnections= at MaxConnections= or above leaves the named callers one. */
                expect_contains(out, "49 of callers the policy does not name)");
                expect_contains(out, "9 admin connections (4 per uid)");
                expect_contains(out, "333 JSON values");
                expect_contains(out, "555 fds on unfinished messages (544 per uid)");
        }
        {
                _cleanup_free_ char *out = NULL, *err = NULL;
                status = tsmctl(&t, &out, &err, "--json", "status", NULL);
                ASSERT_TRUE(exited_with(status, 0));
                _cleanup_(json_object_putp) json_object *o = json_tokener_parse(out);
                ASSERT_NOT_NULL(o);
                ASSERT_EQ(JINT(o, "connections"), 1);
                json_object *limits = NULL;
                ASSERT_TRUE(json_object_object_get_ex(o, "limits", &limits));
                ASSERT_EQ(JINT(limits, "maxAdminConnections"), 9);
                ASSERT_EQ(JINT(limits, "maxAdminConnectionsPerUid"), 4);
                ASSERT_EQ(JINT(limits, "maxUnnamedConnections"), 49);
                ASSERT_TRUE(tsmd_log_contains(&t, "MaxUnnamedConnections=60 is not below MaxConnections=50: taking 49."));
        }
        {
                _cleanup_free_ char *out = NULL, *err = NULL;
                status = tsmctl(&t, &out, &err, "info", NULL, NULL);
                if (!exited_with(status, 0))
                        TEST_FAIL("tsmctl info: 0x%x %s", status, err);
                expect_contains(out, "Vendor: tsmd");
                expect_contains(out, "Product: tsmd");
                expect_contains(out, "Version: ");
                expect_contains(out, "URL: ");
                expect_contains(out, "org.varlink.service");
                expect_contains(out, "io.tsmd.Service");
                expect_contains(out, "io.tsmd.Guest");
        }
        {
                _cleanup_free_ char *out = NULL, *err = NULL;
                status = tsmctl(&t, &out, &err, "introspect", "io.tsmd.Guest", NULL);
                if (!exited_with(status, 0))
                        TEST_FAIL("tsmctl introspect: 0x%x %s", status, err);
                expect_contains(out, "interface io.tsmd.Guest");
                expect_contains(out, "method OpenContext()");
                expect_contains(out, "method GuestRequest(");
                expect_contains(out, "error DeviceGone");
        }
        {
                _cleanup_free_ char *out = NULL, *err = NULL;
                status = tsmctl(&t, &out, &err, "call", "io.tsmd.Service.Ping", "{}");
                ASSERT_TRUE(exited_with(status, 0));
                expect_contains(out, "{");
        }
        /* Exit codes for failures, as tsmctl documents them. */
        {
                _cleanup_free_ char *err = NULL;
                status = tsmctl(&t, NULL, &err, "call", "io.tsmd.Guest.NoSuchMethod", "{}");
                if (!exited_with(status, 3))
                        TEST_FAIL("tsmctl call with an unknown method: status 0x%x, %s", status, err);
                expect_contains(err, VARLINK_ERROR_METHOD_NOT_FOUND);
        }
        {
                _cleanup_free_ char *err = NULL;
                status = tsmctl(&t, NULL, &err, "call", "io.tsmd.NoSuchInterface.Method", "{}");
                ASSERT_TRUE(exited_with(status, 3));
                expect_contains(err, VARLINK_ERROR_INTERFACE_NOT_FOUND);
        }
        {
                _cleanup_free_ char *err = NULL;
                status = tsmctl(&t, NULL, &err, "introspect", "io.tsmd.Nothing", NULL);
                ASSERT_TRUE(exited_with(status, 3));
        }
        {
                _cleanup_free_ char *err = NULL;
                status = tsmctl(&t, NULL, &err, "call", "io.tsmd.Service.SetLogLevel", "{\"level\":\"loud\"}");
                ASSERT_TRUE(exited_with(status, 2));
                expect_contains(err, VARLINK_ERROR_INVALID_PARAMETER);
        }
        {
                _cleanup_free_ char *err = NULL;
                status = tsmctl(&t, NULL, &err, "frobnicate", NULL, NULL);
                ASSERT_TRUE(exited_with(status, 2));
        }
        /* tsmd is still fine after all that. */
        {
                _cleanup_free_ char *out = NULL;
                ASSERT_TRUE(exited_with(tsmctl(&t, &out, NULL, "status", NULL, NULL), 0));
        }
        tsmd_teardown(&t);

        /* No tsmd at all: "not running". */
        {
                _cleanup_free_ char *err = NULL;
                status = tsmctl(NULL, NULL, &err, "status", NULL, NULL);
                if (!exited_with(status, 7))
                        TEST_FAIL("tsmctl against a missing socket: status 0x%x, %s", status, err);
                status = tsmctl(NULL, NULL, NULL, "call", "io.tsmd.Service.Ping", NULL);
                ASSERT_TRUE(exited_with(status, 7));
        }
}

/* The worker takes the audit directory by the fd the monitor names (--audit-directory-fd=): one
 * that is no number past the channel's and the binary's, not open, or no directory is refused by
 * name, and the worker does not start. */
TEST(worker_refuses_an_audit_directory_fd_that_is_none) {
        const char *worker = strf("%.*s/tsmd-worker", (int) (strrchr(TSMD_PATH, '/') - TSMD_PATH), TSMD_PATH);
        static const struct {
                const char *fd, *error;
        } cases[] = {
                { "x", "Invalid argument" },
                { "4", "Invalid argument" },
                { "99", "Bad file descriptor" },
                { "0", "Invalid argument" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const char *argv[] = { worker, strf("--audit-directory-fd=%s", cases[i].fd), NULL };
                _cleanup_free_ char *err = NULL;

                ASSERT_TRUE(exited_with(run_capture(argv, NULL, &err, RUN_TIMEOUT_USEC), 1));
                if (!strstr(err, strf("Invalid --audit-directory-fd='%s': %s", cases[i].fd, cases[i].error)))
                        TEST_FAIL("--audit-directory-fd=%s: %s", cases[i].fd, err);
        }
}

TEST_MAIN();
