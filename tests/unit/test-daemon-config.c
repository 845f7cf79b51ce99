/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tsmd.conf loading when memory runs out (daemon/daemon-config.c): the defaults are all there or
 * none is, and a load that fails frees all it allocated and leaves the configuration in force as
 * it was. strdup() is replaced
 * here, for the code linked into this binary, by one that fails at a chosen call.
 * And [Worker]'s limits: their defaults, what each takes and what is refused, by name; [Varlink]'s
 * bounds, as tsmd.conf(5) documents them; and [Platform] EmulatedDebugScopes=.
 * Runs in: tests.
 */

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon-config.h"
#include "harness.h"
#include "macro.h"
#include "without-tcache.h"

#ifdef HAVE_ASAN /* harness.h */
#include <sanitizer/allocator_interface.h>
#endif

static unsigned strdup_calls, strdup_fail_at; /* 0: never fail */

char *strdup(const char *s) {
        size_t n = strlen(s) + 1;
        char *d;

        if (strdup_fail_at > 0 && ++strdup_calls == strdup_fail_at) {
                errno = ENOMEM;
                return NULL;
        }
        d = malloc(n);
        return d ? memcpy(d, s, n) : NULL;
}

/* Bytes the allocator has handed out and not got back. */
static size_t allocated_bytes(void) {
#ifdef HAVE_ASAN
        return __sanitizer_get_current_allocated_bytes();
#else
        return mallinfo2().uordblks;
#endif
}

/* A free must show in allocated_bytes(), or a leak would not. */
TEST(allocated_bytes_sees_a_free) {
        size_t before = allocated_bytes();
        char *p = strdup("a string of some length");

        ASSERT_NOT_NULL(p);
        /* The compiler may not drop an allocation it could prove unused. */
        __asm__ volatile("" : : "r"(p) : "memory");
        ASSERT_TRUE(allocated_bytes() > before);
        free(p);
        ASSERT_EQ(allocated_bytes(), before);
}

/* The defaults' paths are copies: one that cannot be made fails the whole, with nothing left
 * allocated, never a configuration with a path missing (it would name no file). */
TEST(init_out_of_memory_fails_whole) {
        unsigned failures = 0;

        for (unsigned k = 1;; k++) {
                DaemonConfig c;
                size_t before = allocated_bytes();
                int r;

                strdup_calls = 0;
                strdup_fail_at = k;
                r = daemon_config_init(&c);
                strdup_fail_at = 0;
                if (r >= 0) {
                        /* k is past the last strdup() of the defaults: all failures seen. */
                        ASSERT_NOT_NULL(c.context_state_dir);
                        ASSERT_NOT_NULL(c.policy_file);
                        ASSERT_NOT_NULL(c.policy_dropin_dir);
                        ASSERT_NOT_NULL(c.audit_dir);
                        ASSERT_NOT_NULL(c.platform.iommu_device);
                        daemon_config_done(&c);
                        break;
                }
                ASSERT_ERRNO(r, ENOMEM);
                if (allocated_bytes() != before)
                        TEST_FAIL("strdup() #%u failing leaked %zd bytes", k, (ssize_t) (allocated_bytes() - before));
                daemon_config_done(&c); /* harmless after a failure */
                failures++;
        }
        ASSERT_EQ(failures, 5u); /* one per default path */
}

TEST(load_out_of_memory_frees_its_copy) {
        static const char text[] = "[Varlink]\nMaxConnections=5\n[Platform]\nIommuDevice=/dev/iommu\n";
        unsigned failures = 0;

        for (unsigned k = 1;; k++) {
                DaemonConfig c;
                const char *message = NULL;
                unsigned line = 0;
                size_t before;
                int r;

                ASSERT_OK(daemon_config_init(&c));
                /* Every string the copy takes: the paths have their defaults. */
                c.platform.emulated_devices = strdup("0000:01:00.0");
                free(c.platform.iommu_device); /* a path: its default's copy */
                c.platform.iommu_device = strdup("/dev/iommu0");
                ASSERT_NOT_NULL(c.platform.emulated_devices);
                ASSERT_NOT_NULL(c.platform.iommu_device);

                before = allocated_bytes();
                strdup_calls = 0;
                strdup_fail_at = k;
                r = daemon_config_load_text(&c, text, &line, &message);
                strdup_fail_at = 0;
                if (r >= 0) {
                        /* k is past the last strdup() of a load: all failures seen. */
                        ASSERT_EQ(c.limits.max_connections, 5u);
                        ASSERT_STREQ(c.platform.iommu_device, "/dev/iommu");
                        daemon_config_done(&c);
                        break;
                }
                ASSERT_ERRNO(r, ENOMEM);
                if (allocated_bytes() != before)
                        TEST_FAIL("strdup() #%u failing leaked %zd bytes", k,
                                  (ssize_t) (allocated_bytes() - before));
                /* The configuration in force is untouched. */
                ASSERT_STREQ(c.platform.emulated_devices, "0000:01:00.0");
                ASSERT_STREQ(c.platform.iommu_device, "/dev/iommu0");
                ASSERT_EQ(c.limits.max_connections, (unsigned) VARLINK_LIMITS_DEFAULT.max_connections);
                daemon_config_done(&c);
                failures++;
        }
        /* The copy's six strings and the load's own (a section name, a value). */
        ASSERT_GE(failures, 6u);
}

/* ---- [Worker] ------------------------------------------------------------------------------- */

/* Loads text over the defaults: its return, with the message in *ret_message (NULL on success). */
static int load_worker(const char *text, DaemonConfig *c, unsigned *ret_line, const char **ret_message) {
        ASSERT_OK(daemon_config_init(c));
        *ret_line = 0;
        *ret_message = NULL;
        return daemon_config_load_text(c, text, ret_line, ret_message);
}

/* Expects [Worker]'s five values in c. */
static void expect_worker(const DaemonConfig *c, unsigned start, unsigned watchdog, unsigned stop, unsigned kill,
                          unsigned drain) {
        ASSERT_EQ(c->worker_start_timeout_sec, start);
        ASSERT_EQ(c->worker_watchdog_sec, watchdog);
        ASSERT_EQ(c->worker_stop_timeout_sec, stop);
        ASSERT_EQ(c->worker_kill_timeout_sec, kill);
        ASSERT_EQ(c->worker_drain_timeout_sec, drain);
}

/* The defaults are the limits tsmd had built in before they were settings. */
TEST(worker_defaults) {
        DaemonConfig c;

        ASSERT_OK(daemon_config_init(&c));
        expect_worker(&c, 15, 15, 15, 5, 10);
        daemon_config_done(&c);
}

TEST(worker_keys_are_parsed) {
        const char *message;
        DaemonConfig c;
        unsigned line;

        ASSERT_OK(load_worker("[Worker]\nStartTimeoutSec=2\nWatchdogSec=3\nStopTimeoutSec=4\nKillTimeoutSec=1\n"
                              "DrainTimeoutSec=2\n",
                              &c, &line, &message));
        expect_worker(&c, 2, 3, 4, 1, 2);
        daemon_config_done(&c);

        /* Each at its maxima: the stop, StopTimeoutSec= plus KillTimeoutSec=, stays below
         * tsmd.service's TimeoutStopSec=90s, the first start below its TimeoutStartSec=90s. */
        ASSERT_OK(load_worker("[Worker]\nStartTimeoutSec=80\nWatchdogSec=600\nStopTimeoutSec=60\nKillTimeoutSec=20\n"
                              "DrainTimeoutSec=58\n",
                              &c, &line, &message));
        expect_worker(&c, 80, 600, 60, 20, 58);
        ASSERT_LE(c.worker_stop_timeout_sec + c.worker_kill_timeout_sec, 89u);
        ASSERT_LE(c.worker_start_timeout_sec, 89u);
        daemon_config_done(&c);

        /* Read at start: each is among the settings the monitor hands every worker it starts. */
        ASSERT_OK(load_worker("[Worker]\nStartTimeoutSec=2\nWatchdogSec=3\nStopTimeoutSec=4\nKillTimeoutSec=1\n"
                              "DrainTimeoutSec=2\n",
                              &c, &line, &message));
        {
                char *text = NULL;

                ASSERT_OK(daemon_config_format_start_only(&c, &text));
                ASSERT_NOT_NULL(strstr(text, "[Worker]\nStartTimeoutSec=2\nWatchdogSec=3\nStopTimeoutSec=4\n"
                                             "KillTimeoutSec=1\nDrainTimeoutSec=2\n"));
                free(text);
        }
        daemon_config_done(&c);
}

/* 0 (no limit, or an instant kill) and absurd values are refused by name and range, and the
 * configuration in force stays. */
TEST(worker_keys_out_of_range_are_refused) {
        static const struct {
                const char *text, *message;
        } bad[] = {
                { "[Worker]\nStartTimeoutSec=0\n", "value out of range for StartTimeoutSec= (1 to 80)" },
                { "[Worker]\nStartTimeoutSec=81\n", "value out of range for StartTimeoutSec= (1 to 80)" },
                { "[Worker]\nWatchdogSec=0\n", "value out of range for WatchdogSec= (1 to 600)" },
                { "[Worker]\nWatchdogSec=601\n", "value out of range for WatchdogSec= (1 to 600)" },
                { "[Worker]\nStopTimeoutSec=0\n", "value out of range for StopTimeoutSec= (1 to 60)" },
                { "[Worker]\nStopTimeoutSec=61\n", "value out of range for StopTimeoutSec= (1 to 60)" },
                { "[Worker]\nKillTimeoutSec=0\n", "value out of range for KillTimeoutSec= (1 to 20)" },
                { "[Worker]\nKillTimeoutSec=21\n", "value out of range for KillTimeoutSec= (1 to 20)" },
                { "[Worker]\nDrainTimeoutSec=0\n", "value out of range for DrainTimeoutSec= (1 to 58)" },
                { "[Worker]\nDrainTimeoutSec=59\n", "value out of range for DrainTimeoutSec= (1 to 58)" },
                { "[Worker]\nWatchdogSec=-1\n", "invalid value for WatchdogSec=: not a non-negative integer" },
                { "[Worker]\nStartTimeoutSec=2s\n", "invalid value for StartTimeoutSec=: not a non-negative integer" },
                { "[Worker]\nStopTimeoutSec=1.5\n", "invalid value for StopTimeoutSec=: not a non-negative integer" },
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                const char *message;
                DaemonConfig c;
                unsigned line;
                int r;

                r = load_worker(bad[i].text, &c, &line, &message);
                ASSERT_TRUE(r == -ERANGE || r == -EINVAL);
                ASSERT_EQ(line, 2u);
                ASSERT_STREQ(message, bad[i].message);
                expect_worker(&c, 15, 15, 15, 5, 10);
                daemon_config_done(&c);
        }
}

/* A drain that leaves less than 2 s of the stop's time would have the worker killed while it
 * waits for its last unbinds or closes its audit log: the pair is refused, also where only one
 * of them is set (the other at its default, said so), naming both with their values. */
TEST(worker_drain_must_end_before_the_stop_timeout) {
        static const struct {
                const char *text, *message;
                unsigned line; /* the later of the two keys the file sets */
        } bad[] = {
                { "[Worker]\nStopTimeoutSec=5\nDrainTimeoutSec=5\n",
                  "[Worker] DrainTimeoutSec=5 must be at most StopTimeoutSec=5 less 2 s", 3 },
                { "[Worker]\nStopTimeoutSec=5\nDrainTimeoutSec=8\n",
                  "[Worker] DrainTimeoutSec=8 must be at most StopTimeoutSec=5 less 2 s", 3 },
                { "[Worker]\nDrainTimeoutSec=4\n# the stop\nStopTimeoutSec=5\n",
                  "[Worker] DrainTimeoutSec=4 must be at most StopTimeoutSec=5 less 2 s", 4 },
                { "[Worker]\nStopTimeoutSec=11\n",
                  "[Worker] DrainTimeoutSec=10 (the default) must be at most StopTimeoutSec=11 less 2 s", 2 },
                { "[Worker]\nDrainTimeoutSec=14\n",
                  "[Worker] DrainTimeoutSec=14 must be at most StopTimeoutSec=15 (the default) less 2 s", 2 },
                /* Set to the default's value is set. */
                { "[Worker]\nStopTimeoutSec=15\nDrainTimeoutSec=14\n",
                  "[Worker] DrainTimeoutSec=14 must be at most StopTimeoutSec=15 less 2 s", 3 },
        };
        const char *message;
        DaemonConfig c;
        unsigned line;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                ASSERT_ERRNO(load_worker(bad[i].text, &c, &line, &message), EINVAL);
                ASSERT_EQ(line, bad[i].line);
                ASSERT_STREQ(message, bad[i].message);
                ASSERT_EQ(c.worker_stop_timeout_sec, 15u);
                ASSERT_EQ(c.worker_drain_timeout_sec, 10u);
                daemon_config_done(&c);
        }

        ASSERT_OK(load_worker("[Worker]\nStopTimeoutSec=3\nDrainTimeoutSec=1\n", &c, &line, &message));
        ASSERT_EQ(c.worker_stop_timeout_sec, 3u);
        ASSERT_EQ(c.worker_drain_timeout_sec, 1u);
        daemon_config_done(&c);
        ASSERT_OK(load_worker("[Worker]\nDrainTimeoutSec=13\n", &c, &line, &message));
        ASSERT_EQ(c.worker_drain_timeout_sec, 13u);
        daemon_config_done(&c);
        ASSERT_OK(load_worker("[Worker]\nStopTimeoutSec=12\n", &c, &line, &message));
        ASSERT_EQ(c.worker_stop_timeout_sec, 12u);
        daemon_config_done(&c);
}

/* The section's keys are listed to an admin who misspelt one, and the section among the others. */
TEST(worker_section_is_known) {
        const char *message;
        DaemonConfig c;
        unsigned line;

        ASSERT_ERRNO(load_worker("[Worker]\nStartTimeout=20\n", &c, &line, &message), EINVAL);
        ASSERT_STREQ(message, "unknown key 'StartTimeout' in [Worker] (valid: StartTimeoutSec, WatchdogSec, "
                              "StopTimeoutSec, KillTimeoutSec, DrainTimeoutSec)");
        daemon_config_done(&c);
        ASSERT_ERRNO(load_worker("[Workers]\n", &c, &line, &message), EINVAL);
        ASSERT_STREQ(message, "unknown section [Workers] (valid: [Varlink], [Platform], [Guest], [Policy], [Audit], "
                              "[Worker])");
        daemon_config_done(&c);
}

/* ---- [Platform] EmulatedDebugScopes= --------------------------------------------------------- */

/* Off unless set, as mainline kernels refuse the debug scopes; a boolean, anything else refused by
 * name with the configuration in force kept; read at start, so among the settings every worker
 * gets from the monitor. */
TEST(emulated_debug_scopes_is_a_boolean_read_at_start) {
        static const char *const bad[] = { "maybe", "2", "yes please", "" };
        _cleanup_free_ char *text = NULL;
        const char *message;
        DaemonConfig c;
        unsigned line;

        ASSERT_OK(daemon_config_init(&c));
        ASSERT_FALSE(c.platform.emulated_debug_scopes);
        ASSERT_OK(daemon_config_format_start_only(&c, &text));
        ASSERT_NOT_NULL(strstr(text, "\nEmulatedDebugScopes=no\n"));
        daemon_config_done(&c);
        text = mfree(text);

        ASSERT_OK(load_worker("[Platform]\nEmulatedDebugScopes=yes\n", &c, &line, &message));
        ASSERT_TRUE(c.platform.emulated_debug_scopes);
        ASSERT_OK(daemon_config_format_start_only(&c, &text));
        ASSERT_NOT_NULL(strstr(text, "[Platform]\n"));
        ASSERT_NOT_NULL(strstr(text, "\nEmulatedDebugScopes=yes\n"));
        ASSERT_ERRNO(daemon_config_load_text(&c, "[Platform]\nEmulatedDebugScopes=nope\n", &line, &message), EINVAL);
        ASSERT_TRUE(c.platform.emulated_debug_scopes); /* kept */
        ASSERT_OK(daemon_config_load_text(&c, "[Platform]\nEmulatedDebugScopes=off\n", &line, &message));
        ASSERT_FALSE(c.platform.emulated_debug_scopes);
        daemon_config_done(&c);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char conf[64];

                snprintf(conf, sizeof(conf), "[Platform]\nEmulatedDebugScopes=%s\n", bad[i]);
                ASSERT_ERRNO(load_worker(conf, &c, &line, &message), EINVAL);
                ASSERT_EQ(line, 2u);
                ASSERT_STREQ(message, "invalid value for EmulatedDebugScopes=: not a boolean (yes/no)");
                ASSERT_FALSE(c.platform.emulated_debug_scopes);
                daemon_config_done(&c);
        }
}

/* ---- [Audit] -------------------------------------------------------------------------------- */

/* MaxQueryRecords=: QueryAudit's most records a call, 10000 by default as it was built in; 1 to
 * 1000000, a reload applies it (not among the settings read at start); beyond, or not a number,
 * refused by name and range, the value in force kept. */
TEST(max_query_records_takes_its_bounds) {
        static const struct {
                const char *text, *message;
        } bad[] = {
                { "[Audit]\nMaxQueryRecords=0\n", "value out of range for MaxQueryRecords= (1 to 1000000)" },
                { "[Audit]\nMaxQueryRecords=1000001\n", "value out of range for MaxQueryRecords= (1 to 1000000)" },
                { "[Audit]\nMaxQueryRecords=-1\n", "invalid value for MaxQueryRecords=: not a non-negative integer" },
                { "[Audit]\nMaxQueryRecords=10K\n", "invalid value for MaxQueryRecords=: not a non-negative integer" },
                { "[Audit]\nMaxQueryRecords=\n", "invalid value for MaxQueryRecords=: not a non-negative integer" },
        };
        static const struct {
                const char *text;
                unsigned value;
        } good[] = {
                { "[Audit]\nMaxQueryRecords=1\n", 1 },
                { "[Audit]\nMaxQueryRecords=3\n", 3 },
                { "[Audit]\nMaxQueryRecords=1000000\n", 1000000 },
        };
        const char *message;
        DaemonConfig c;
        unsigned line;

        ASSERT_OK(daemon_config_init(&c));
        ASSERT_EQ(c.audit_max_query_records, 10000u);
        daemon_config_done(&c);

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                _cleanup_free_ char *text = NULL;

                ASSERT_OK(load_worker(good[i].text, &c, &line, &message));
                ASSERT_EQ(c.audit_max_query_records, good[i].value);
                ASSERT_OK(daemon_config_format_start_only(&c, &text));
                ASSERT_NULL(strstr(text, "MaxQueryRecords="));
                daemon_config_done(&c);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = load_worker(bad[i].text, &c, &line, &message);

                if ((r != -ERANGE && r != -EINVAL) || line != 2 || !message || !streq(message, bad[i].message))
                        TEST_FAIL("%s: %d at line %u: %s", bad[i].text, r, line, strna(message));
                ASSERT_EQ(c.audit_max_query_records, 10000u);
                daemon_config_done(&c);
        }
}

/* ---- [Varlink] ------------------------------------------------------------------------------ */

#define LIMIT(f) offsetof(VarlinkLimits, f), sizeof(((VarlinkLimits *) NULL)->f)

/* Each [Varlink] key's range as tsmd.conf(5) documents it (not as the code's table has it: a
 * bound moved there must fail here). lo_extra/hi_extra: other keys a bound needs to be a valid
 * configuration; lo_refused: where none makes the lower bound one (MaxOutputSize= and the
 * buffers are at least MaxMessageSize=, which is at least 256), the refusal of the whole, not of
 * the value, that it gets. */
static const struct {
        const char *key;
        uint64_t lo, hi;
        const char *range; /* "Range: ..." of the manual */
        bool size;         /* a size (K, M, G), not a count */
        size_t offset, width;
        const char *lo_extra, *hi_extra, *lo_refused;
} varlink_keys[] = {
        { "MaxMessageSize", 256, 256ULL << 20, "256 to 256M", true, LIMIT(max_message_size), "",
          "MaxOutputSize=256M\nMaxBufferedPerUid=1G\nMaxBuffered=1G\n", NULL },
        { "MaxOutputSize", 64, 1ULL << 30, "64 to 1G", true, LIMIT(max_output_size), "",
          "MaxBufferedPerUid=2G\nMaxBuffered=2G\n", "MaxOutputSize must not be smaller than MaxMessageSize" },
        { "MaxJsonDepth", 2, 4096, "2 to 4096", false, LIMIT(max_depth), "", "", NULL },
        { "MaxJsonValues", 16, 16777216, "16 to 16777216", false, LIMIT(max_json_values), "", "", NULL },
        { "MaxFdsPerMessage", 0, 253, "0 to 253", false, LIMIT(max_fds_per_message), "", "", NULL },
        { "MaxPendingCalls", 1, 65536, "1 to 65536", false, LIMIT(max_pending_calls), "", "", NULL },
        { "MaxConnections", 1, 1048576, "1 to 1048576", false, LIMIT(max_connections), "", "", NULL },
        { "MaxConnectionsPerUid", 1, 1048576, "1 to 1048576", false, LIMIT(max_connections_per_uid), "", "",
          NULL },
        { "MaxUnnamedConnections", 0, 1048576, "0 to 1048576", false, LIMIT(max_unnamed_connections), "", "",
          NULL },
        { "MaxAdminConnections", 1, 65536, "1 to 65536", false, LIMIT(max_admin_connections), "", "", NULL },
        { "MaxAdminConnectionsPerUid", 1, 65536, "1 to 65536", false, LIMIT(max_admin_connections_per_uid), "", "",
          NULL },
        { "MaxBufferedPerUid", 64, 16ULL << 30, "64 to 16G", true, LIMIT(max_buffered_per_uid), "", "",
          "MaxBufferedPerUid must not be smaller than MaxMessageSize + MaxOutputSize" },
        { "MaxBuffered", 64, 64ULL << 30, "64 to 64G", true, LIMIT(max_buffered), "", "",
          "MaxBuffered must not be smaller than MaxMessageSize + MaxOutputSize" },
        { "MaxFdsPerUid", 0, 1048576, "0 to 1048576", false, LIMIT(max_fds_per_uid), "MaxFdsPerMessage=0\n", "",
          NULL },
        { "MaxFds", 0, 16777216, "0 to 16777216", false, LIMIT(max_fds), "", "", NULL },
        { "MessageTimeoutSec", 0, 3600, "0 to 3600", false, LIMIT(message_timeout_sec), "", "", NULL },
        { "IdleTimeoutSec", 0, 86400, "0 to 86400", false, LIMIT(idle_timeout_sec), "", "", NULL },
};

static uint64_t limit_value(const DaemonConfig *c, size_t i) {
        const uint8_t *p = (const uint8_t *) &c->limits + varlink_keys[i].offset;
        size_t z;
        unsigned u;

        if (varlink_keys[i].width == sizeof(size_t)) {
                memcpy(&z, p, sizeof(z));
                return z;
        }
        ASSERT_EQ(varlink_keys[i].width, sizeof(unsigned));
        memcpy(&u, p, sizeof(u));
        return u;
}

/* Loads "[Varlink]\n<key>=<v>\n<extra>" over the defaults. */
static int load_varlink(size_t i, const char *v, const char *extra, DaemonConfig *c, unsigned *ret_line,
                        const char **ret_message) {
        char text[256];

        snprintf(text, sizeof(text), "[Varlink]\n%s=%s\n%s", varlink_keys[i].key, v, extra);
        return load_worker(text, c, ret_line, ret_message);
}

/* Both bounds taken, with what the manual says they need. */
TEST(varlink_keys_take_their_bounds) {
        for (size_t i = 0; i < ELEMENTSOF(varlink_keys); i++)
                for (int hi = 0; hi < 2; hi++) {
                        uint64_t v = hi ? varlink_keys[i].hi : varlink_keys[i].lo;
                        const char *refused = hi ? NULL : varlink_keys[i].lo_refused;
                        const char *message;
                        DaemonConfig c;
                        unsigned line;
                        char value[32];
                        int r;

                        snprintf(value, sizeof(value), "%" PRIu64, v);
                        r = load_varlink(i, value, hi ? varlink_keys[i].hi_extra : varlink_keys[i].lo_extra, &c,
                                         &line, &message);
                        /* Refused at the line of the one key the file sets, as a rule between keys is
                         * at the last of them. */
                        if (refused ? r != -EINVAL || line != 2 || !(message && streq(message, refused)) : r < 0)
                                TEST_FAIL("%s=%s: %d at line %u: %s", varlink_keys[i].key, value, r, line,
                                          strna(message));
                        if (!refused)
                                ASSERT_EQ(limit_value(&c, i), v);
                        daemon_config_done(&c);
                }
}

/* One past either bound is refused by name and the manual's range, and the defaults stay. Below
 * 0 is no number. */
TEST(varlink_keys_out_of_range_are_refused) {
        DaemonConfig defaults;

        ASSERT_OK(daemon_config_init(&defaults));
        for (size_t i = 0; i < ELEMENTSOF(varlink_keys); i++)
                for (int hi = 0; hi < 2; hi++) {
                        char value[32], expected[128];
                        const char *message;
                        DaemonConfig c;
                        unsigned line;
                        int r;

                        if (hi || varlink_keys[i].lo > 0) {
                                snprintf(value, sizeof(value), "%" PRIu64,
                                         hi ? varlink_keys[i].hi + 1 : varlink_keys[i].lo - 1);
                                snprintf(expected, sizeof(expected), "value out of range for %s= (%s)",
                                         varlink_keys[i].key, varlink_keys[i].range);
                        } else {
                                strcpy(value, "-1");
                                snprintf(expected, sizeof(expected), "invalid value for %s=: %s",
                                         varlink_keys[i].key,
                                         varlink_keys[i].size ? "not a size (use a number with an optional K, M or G)"
                                                              : "not a non-negative integer");
                        }
                        r = load_varlink(i, value, "", &c, &line, &message);
                        if (r != (hi || varlink_keys[i].lo > 0 ? -ERANGE : -EINVAL) || line != 2 ||
                            !(message && streq(message, expected)))
                                TEST_FAIL("%s=%s: %d at line %u: %s, expected %s", varlink_keys[i].key, value, r,
                                          line, strna(message), expected);
                        ASSERT_EQ(limit_value(&c, i), limit_value(&defaults, i));
                        daemon_config_done(&c);
                }
        daemon_config_done(&defaults);
}

/* A size or count beyond 64 bits is out of range like any other above the maximum, never what
 * it wraps to (17179869185G is 2^64 + 1G), and the defaults stay. */
TEST(values_beyond_64_bits_are_out_of_range) {
        static const struct {
                const char *text, *message;
        } bad[] = {
                { "[Varlink]\nMaxBuffered=17179869185G\n", "value out of range for MaxBuffered= (64 to " },
                { "[Varlink]\nMaxBuffered=16777216T\n", "invalid value for MaxBuffered=: not a size" },
                { "[Varlink]\nMaxBuffered=18446744073709551616\n", "value out of range for MaxBuffered= (64 to " },
                { "[Audit]\nMaxFileSize=18014398509481985K\n", "value out of range for MaxFileSize= (16K to 1024G)" },
                { "[Audit]\nMaxFileSize=99999999999999999999\n", "value out of range for MaxFileSize= (16K to 1024G)" },
                { "[Audit]\nMaxFileSize=99999999999999999999Q\n", "invalid value for MaxFileSize=: not a size" },
                { "[Guest]\nReclaimTimeoutSec=18446744073709551617\n",
                  "value out of range for ReclaimTimeoutSec= (1 to 86400)" },
                { "[Guest]\nReclaimTimeoutSec=18446744073709551617s\n",
                  "invalid value for ReclaimTimeoutSec=: not a non-negative integer" },
        };
        DaemonConfig defaults;
        uint64_t v;

        ASSERT_OK(daemon_config_init(&defaults));
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                bool range = strncmp(bad[i].message, "value out of range", 18) == 0;
                const char *message;
                DaemonConfig c;
                unsigned line;
                int r;

                r = load_worker(bad[i].text, &c, &line, &message);
                if (r != (range ? -ERANGE : -EINVAL) || line != 2 || !message ||
                    strncmp(message, bad[i].message, strlen(bad[i].message)) != 0)
                        TEST_FAIL("%s: %d at line %u: %s", bad[i].text, r, line, strna(message));
                ASSERT_EQ(c.limits.max_buffered, defaults.limits.max_buffered);
                ASSERT_EQ(c.audit_max_file_size, defaults.audit_max_file_size);
                ASSERT_EQ(c.reclaim_timeout_sec, defaults.reclaim_timeout_sec);
                daemon_config_done(&c);
        }
        daemon_config_done(&defaults);

        /* The edges, as parse_size() has them. */
        ASSERT_OK(parse_size("18446744073709551615", &v));
        ASSERT_EQ(v, UINT64_MAX);
        ASSERT_OK(parse_size("17179869183G", &v));
        ASSERT_EQ(v, UINT64_MAX - (1ULL << 30) + 1);
        ASSERT_ERRNO(parse_size("17179869184G", &v), ERANGE);
        ASSERT_ERRNO(parse_size("18014398509481984K", &v), ERANGE);
        ASSERT_ERRNO(parse_size("18446744073709551616", &v), ERANGE);
        ASSERT_ERRNO(parse_size("18446744073709551616X", &v), EINVAL);
        ASSERT_EQ(v, UINT64_MAX - (1ULL << 30) + 1); /* untouched by failures */
}

/* The audit log's directory and the contexts' state directory are one directory however either
 * is spelled, a trailing "/" or a doubled one on either side; a prefix of the other is not. */
TEST(audit_and_state_directories_must_differ) {
        static const struct {
                const char *audit, *state;
                bool same;
        } cases[] = {
                { "/var/lib/tsmd", "/var/lib/tsmd", true },
                { "/var/lib/tsmd/", "/var/lib/tsmd", true },
                { "/var/lib/tsmd", "/var/lib/tsmd/", true },
                { "/var/lib/tsmd//", "/var/lib//tsmd", true },
                { "//var/lib/tsmd", "/var/lib/tsmd//", true },
                { "/var/lib/tsmd/", "/var/lib/tsmd2", false },
                { "/var/lib/tsmd2", "/var/lib/tsmd/", false },
                { "/var/lib/tsmd/x", "/var/lib/tsmd", false },
                { "/var/lib/tsmd", "/var/lib/tsmd/x", false },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const char *message;
                DaemonConfig c;
                unsigned line;
                char text[256];
                int r;

                snprintf(text, sizeof(text), "[Audit]\nDirectory=%s\n[Guest]\nContextStateDirectory=%s\n",
                         cases[i].audit, cases[i].state);
                r = load_worker(text, &c, &line, &message);
                if (cases[i].same ? r != -EINVAL || line != 4 || !message ||
                                            !streq(message, "[Audit] Directory and [Guest] ContextStateDirectory must differ")
                                  : r < 0)
                        TEST_FAIL("Directory=%s ContextStateDirectory=%s: %d at line %u: %s", cases[i].audit,
                                  cases[i].state, r, line, strna(message));
                daemon_config_done(&c);
        }
}

/* IommuDevice= names what the monitor opens read-write for VMMs: with the host checked (tsmd,
 * --check-config), what its open refuses is refused at load, by line; nothing there, /dev/null
 * and /dev/zero are not. Unchecked (the worker, whose sandbox shows another /dev), none is. */
TEST(iommu_device_is_checked_on_the_host_where_asked) {
        static const struct {
                const char *path;
                bool refused;
        } cases[] = {
                { "/dev/full", true },
                { "/etc/passwd", true },
                { "/dev", true },
                { "/dev/null", false },
                { "/dev/zero", false },
                { "/nonexistent/tsmd-test/iommu", false },
        };
        const char *message;
        DaemonConfig c;
        unsigned line;
        char text[256];
        int r;

        for (int checked = 0; checked < 2; checked++)
                for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                        snprintf(text, sizeof(text), "[Platform]\n# the device\nIommuDevice=%s\n", cases[i].path);
                        daemon_config_set_check_host(checked);
                        ASSERT_OK(daemon_config_init(&c));
                        line = 0;
                        message = NULL;
                        r = daemon_config_load_text(&c, text, &line, &message);
                        daemon_config_set_check_host(false);
                        if (checked && cases[i].refused) {
                                if (r != -EINVAL || line != 3 || !message ||
                                    !streq(message, "invalid value for IommuDevice=: not the IOMMU's character "
                                                    "device (nor /dev/null or /dev/zero), which tsmd opens for VMMs"))
                                        TEST_FAIL("%s: %d at line %u: %s", cases[i].path, r, line, strna(message));
                                ASSERT_STREQ(c.platform.iommu_device, "/dev/iommu");
                        } else {
                                if (r < 0)
                                        TEST_FAIL("%s (checked: %d): %d at line %u: %s", cases[i].path, checked, r,
                                                  line, strna(message));
                                ASSERT_STREQ(c.platform.iommu_device, cases[i].path);
                        }
                        daemon_config_done(&c);
                }
}

TEST_MAIN();
