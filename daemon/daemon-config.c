/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Configuration defaults, tsmd.conf parsing and dumping. Runs in: monitor and worker. */

#include <inttypes.h>

#include "config.h"
#include "daemon-config.h"
#include "audit-defaults.h"
#include "audit-sync-mode.h"
#include "emu-config.h"
#include "guest-limits.h"
#include "ini.h"
#include "iommufd-transport.h"
#include "log.h"

int parse_size(const char *s, uint64_t *ret) {
        static const struct {
                char suffix;
                uint64_t factor;
        } units[] = { { 'K', 1ULL << 10 }, { 'M', 1ULL << 20 }, { 'G', 1ULL << 30 } };
        uint64_t v, factor = 1;
        bool overflow;
        char *end;

        /* strtoull() skips white space (\v and \f too, which strstrip() leaves) and takes a
         * sign, negating what follows: a size begins with its first digit. */
        if (!(*s >= '0' && *s <= '9'))
                return -EINVAL;

        errno = 0;
        v = strtoull(s, &end, 10);
        overflow = errno == ERANGE;
        if ((errno != 0 && !overflow) || end == s)
                return -EINVAL;
        if (*end) {
                size_t i;

                for (i = 0; i < ELEMENTSOF(units); i++)
                        if (*end == units[i].suffix)
                                break;
                if (i == ELEMENTSOF(units) || end[1] != 0)
                        return -EINVAL;
                factor = units[i].factor;
        }
        /* A size, only too large for 64 bits: -ERANGE, not a wrapped value. */
        if (overflow || v > UINT64_MAX / factor)
                return -ERANGE;

        *ret = v * factor;
        return 0;
}

typedef enum ConfigType {
        CONFIG_UNSIGNED, /* unsigned */
        CONFIG_SIZE_T,   /* size_t, with K/M/G suffixes */
        CONFIG_SIZE,     /* uint64_t, with K/M/G suffixes */
        CONFIG_UINT64,   /* uint64_t */
        CONFIG_STRING,   /* char *, "" means unset */
        CONFIG_PATH,     /* char *, "" means the item's default_path */
        CONFIG_PLATFORM_MODE,
        CONFIG_DEVICE_LIST, /* char *, emulated devices (emu-config.h syntax) */
        CONFIG_BOOL,
        CONFIG_SYNC_MODE,
} ConfigType;

typedef struct ConfigItem {
        const char *section;
        const char *key;
        ConfigType type;
        size_t offset;
        uint64_t min, max;
        const char *default_path;
        bool at_start; /* read when tsmd starts, kept by every worker it starts; a reload does not apply it */
        /* With daemon_config_set_check_host(): why what the value names on this host is refused,
         * or NULL. */
        const char *(*host_refuses)(const char *value);
} ConfigItem;

#define ITEM(section_, key_, type_, field_, min_, max_)                                            \
        { section_, key_, type_, offsetof(DaemonConfig, field_), min_, max_, NULL, false, NULL }
#define START_ITEM(section_, key_, type_, field_, min_, max_)                                      \
        { section_, key_, type_, offsetof(DaemonConfig, field_), min_, max_, NULL, true, NULL }
/* A path has no "none" (what would the worker audit into?): an empty value resets it to its
 * default, as an empty assignment does in systemd. */
#define PATH_ITEM(section_, key_, field_, default_, at_start_)                                     \
        { section_, key_, CONFIG_PATH, offsetof(DaemonConfig, field_), 0, 0, default_, at_start_, NULL }
#define CHECKED_PATH_ITEM(section_, key_, field_, default_, at_start_, host_refuses_)               \
        { section_, key_, CONFIG_PATH, offsetof(DaemonConfig, field_), 0, 0, default_, at_start_, host_refuses_ }

static bool check_host = false;

void daemon_config_set_check_host(bool b) {
        check_host = b;
}

/* What the monitor's open refuses whenever a VMM asks (iommufd_open(), the same check): something
 * there that is not the IOMMU's device. Nothing there is no error at load: the emulated platform
 * hands out a stand-in then, and /dev/iommu may appear later (its module loaded); the monitor
 * says so at the first OpenContext. Nor is what this user cannot look at (--check-config run
 * without root): that is for the open to tell. */
static const char *iommu_device_refuses(const char *path) {
        if (iommufd_device_check(path) != -ENODEV)
                return NULL;
        return "not the IOMMU's character device (nor /dev/null or /dev/zero), which tsmd opens for VMMs";
}

/* Bounds keep every knob in the range the code is written and tested for. */
static const ConfigItem config_items[] = {
        ITEM("Varlink", "MaxMessageSize", CONFIG_SIZE_T, limits.max_message_size, VARLINK_MAX_MESSAGE_SIZE_MIN,
             256ULL << 20),
        ITEM("Varlink", "MaxOutputSize", CONFIG_SIZE_T, limits.max_output_size, 64, 1ULL << 30),
        ITEM("Varlink", "MaxJsonDepth", CONFIG_UNSIGNED, limits.max_depth, 2, 4096),
        ITEM("Varlink", "MaxJsonValues", CONFIG_UNSIGNED, limits.max_json_values, 16, 1U << 24),
        ITEM("Varlink", "MaxFdsPerMessage", CONFIG_UNSIGNED, limits.max_fds_per_message, 0, VARLINK_FDS_PER_MESSAGE_MAX),
        ITEM("Varlink", "MaxPendingCalls", CONFIG_UNSIGNED, limits.max_pending_calls, 1, 65536),
        ITEM("Varlink", "MaxConnections", CONFIG_UNSIGNED, limits.max_connections, 1, 1U << 20),
        ITEM("Varlink", "MaxConnectionsPerUid", CONFIG_UNSIGNED, limits.max_connections_per_uid, 1, 1U << 20),
        ITEM("Varlink", "MaxUnnamedConnections", CONFIG_UNSIGNED, limits.max_unnamed_connections, 0, 1U << 20),
        ITEM("Varlink", "MaxAdminConnections", CONFIG_UNSIGNED, limits.max_admin_connections, 1, 1U << 16),
        ITEM("Varlink", "MaxAdminConnectionsPerUid", CONFIG_UNSIGNED, limits.max_admin_connections_per_uid, 1, 1U << 16),
        ITEM("Varlink", "MaxBufferedPerUid", CONFIG_SIZE_T, limits.max_buffered_per_uid, 64, 1ULL << 34),
        ITEM("Varlink", "MaxBuffered", CONFIG_SIZE_T, limits.max_buffered, 64, 1ULL << 36),
        ITEM("Varlink", "MaxFdsPerUid", CONFIG_UNSIGNED, limits.max_fds_per_uid, 0, 1U << 20),
        ITEM("Varlink", "MaxFds", CONFIG_UNSIGNED, limits.max_fds, 0, 1U << 24),
        ITEM("Varlink", "MessageTimeoutSec", CONFIG_UNSIGNED, limits.message_timeout_sec, 0, 3600),
        ITEM("Varlink", "IdleTimeoutSec", CONFIG_UNSIGNED, limits.idle_timeout_sec, 0, 86400),
        START_ITEM("Platform", "Mode", CONFIG_PLATFORM_MODE, platform.mode, 0, 0),
        CHECKED_PATH_ITEM("Platform", "IommuDevice", platform.iommu_device, "/dev/iommu", true, iommu_device_refuses),
        ITEM("Platform", "EmulatedDevices", CONFIG_DEVICE_LIST, platform.emulated_devices, 0, 0),
        START_ITEM("Platform", "EmulatedLatencyUSec", CONFIG_UINT64, platform.emulated_latency_usec, 0, 60000000),
        START_ITEM("Platform", "EmulatedDebugScopes", CONFIG_BOOL, platform.emulated_debug_scopes, 0, 0),
        START_ITEM("Platform", "RequestTimeoutUSec", CONFIG_UINT64, platform.request_timeout_usec, 1000, 600000000),
        ITEM("Guest", "MaxContextsPerClient", CONFIG_UNSIGNED, max_contexts_per_client, 1, GUEST_CONTEXTS_PER_CLIENT_MAX),
        START_ITEM("Guest", "MaxContexts", CONFIG_UNSIGNED, max_contexts, 1, 1U << 20),
        ITEM("Guest", "MaxContextsPerUid", CONFIG_UNSIGNED, max_contexts_per_uid, 1, 1U << 20),
        ITEM("Guest", "MaxVDevicesPerClient", CONFIG_UNSIGNED, max_vdevices_per_client, 1,
             GUEST_VDEVICES_PER_CLIENT_MAX),
        ITEM("Guest", "MaxRequestSize", CONFIG_SIZE_T, max_request_size, 0, 16ULL << 20),
        ITEM("Guest", "MaxResponseSize", CONFIG_SIZE_T, max_response_size, 0, 16ULL << 20),
        PATH_ITEM("Guest", "ContextStateDirectory", context_state_dir, RUNSTATEDIR "/tsmd/contexts", true),
        START_ITEM("Guest", "ReclaimTimeoutSec", CONFIG_UINT64, reclaim_timeout_sec, 1, 86400),
        ITEM("Guest", "RequireVfioFileDescriptor", CONFIG_BOOL, require_vfio_fd, 0, 0),
        PATH_ITEM("Policy", "File", policy_file, SYSCONFDIR "/tsmd/policy.conf", false),
        PATH_ITEM("Policy", "DropInDirectory", policy_dropin_dir, SYSCONFDIR "/tsmd/policy.d", false),
        PATH_ITEM("Audit", "Directory", audit_dir, LOCALSTATEDIR "/log/tsmd", true),
        START_ITEM("Audit", "MaxFileSize", CONFIG_SIZE, audit_max_file_size, 16384, 1ULL << 40),
        START_ITEM("Audit", "Files", CONFIG_UNSIGNED, audit_files, 2, 100),
        START_ITEM("Audit", "SyncMode", CONFIG_SYNC_MODE, audit_sync_mode, 0, 0),
        START_ITEM("Audit", "Journal", CONFIG_BOOL, audit_journal, 0, 0),
        START_ITEM("Audit", "MaxJournalBacklog", CONFIG_UNSIGNED, audit_journal_backlog, 1, 65536),
        START_ITEM("Audit", "MaxRecordsInFlight", CONFIG_UNSIGNED, audit_max_in_flight, 1, 1U << 20),
        START_ITEM("Audit", "MaxRecordsInFlightPerUid", CONFIG_UNSIGNED, audit_max_in_flight_per_uid, 1, 1U << 20),
        START_ITEM("Audit", "MaxRecordsInFlightUnnamed", CONFIG_UNSIGNED, audit_max_in_flight_unnamed, 1, 1U << 20),
        START_ITEM("Audit", "RefusalRecordsPerUid", CONFIG_UNSIGNED, audit_refusals_per_uid, 0, 1U << 20),
        START_ITEM("Audit", "RefusalIntervalSec", CONFIG_UNSIGNED, audit_refusal_interval_sec, 1, 86400),
        START_ITEM("Audit", "RefusalSharePercent", CONFIG_UNSIGNED, audit_refusal_share_percent, 1, 100),
        START_ITEM("Audit", "MaxQueries", CONFIG_UNSIGNED, audit_max_queries, 1, 64),
        ITEM("Audit", "MaxFollowers", CONFIG_UNSIGNED, audit_max_followers, 1, 4096),
        ITEM("Audit", "MaxQueryScanSize", CONFIG_SIZE, audit_max_query_scan, 65536, 1ULL << 40),
        ITEM("Audit", "MaxQueryRecords", CONFIG_UNSIGNED, audit_max_query_records, 1, 1000000),
        /* Read at start by the monitor, which runs the timers, and kept by each worker (its beat,
         * its drain). A stop at its longest stays below tsmd.service's TimeoutStopSec=. */
        START_ITEM("Worker", "StartTimeoutSec", CONFIG_UNSIGNED, worker_start_timeout_sec, 1,
                   WORKER_START_TIMEOUT_SEC_MAX),
        START_ITEM("Worker", "WatchdogSec", CONFIG_UNSIGNED, worker_watchdog_sec, 1, 600),
        START_ITEM("Worker", "StopTimeoutSec", CONFIG_UNSIGNED, worker_stop_timeout_sec, 1,
                   WORKER_STOP_TIMEOUT_SEC_MAX),
        START_ITEM("Worker", "KillTimeoutSec", CONFIG_UNSIGNED, worker_kill_timeout_sec, 1,
                   WORKER_KILL_TIMEOUT_SEC_MAX),
        START_ITEM("Worker", "DrainTimeoutSec", CONFIG_UNSIGNED, worker_drain_timeout_sec, 1,
                   WORKER_STOP_TIMEOUT_SEC_MAX - WORKER_STOP_SPARE_SEC),
};

int daemon_config_init(DaemonConfig *c) {
        *c = (DaemonConfig){
                .limits = VARLINK_LIMITS_DEFAULT,
                .platform = { .mode = TSM_PLATFORM_AUTO, .request_timeout_usec = TSM_REQUEST_TIMEOUT_USEC_DEFAULT },
                .max_contexts_per_client = 16,
                /* Each context is an fd the monitor holds: two fewer than tsmd.service's
                 * FileDescriptorStoreMax= keeps across a restart of tsmd (the files in force
                 * take one, tsmd-last-good; a rename's carrier one more for a moment, fdstore.h),
                 * far below its LimitNOFILE= (the monitor lowers it to what RLIMIT_NOFILE
                 * allows). */
                .max_contexts = 4096,
                /* A quarter of MaxContexts=, as MaxConnectionsPerUid= is of MaxConnections=: one
                 * uid cannot take the whole pool, and one that runs every VM of a host (libvirt's
                 * qemu user) still has room for hundreds of them. A fixed number, not a share of
                 * MaxContexts=: a host that lowers that to what its VMs need, all of one uid, is
                 * not cut to a quarter of it. */
                .max_contexts_per_uid = 1024,
                .max_vdevices_per_client = 64,
                .max_request_size = 1U << 20,
                .max_response_size = 1U << 20,
                .reclaim_timeout_sec = 60,
                .require_vfio_fd = true,
                .audit_max_file_size = AUDIT_MAX_FILE_SIZE_DEFAULT,
                .audit_files = AUDIT_N_FILES_DEFAULT,
                .audit_sync_mode = AUDIT_SYNC_GROUP,
                .audit_journal = true,
                .audit_journal_backlog = AUDIT_JOURNAL_BACKLOG_DEFAULT,
                .audit_max_in_flight = AUDIT_MAX_IN_FLIGHT_DEFAULT,
                .audit_max_in_flight_per_uid = AUDIT_MAX_IN_FLIGHT_PER_UID_DEFAULT,
                .audit_max_in_flight_unnamed = AUDIT_MAX_IN_FLIGHT_UNNAMED_DEFAULT,
                .audit_refusals_per_uid = AUDIT_REFUSALS_PER_UID_DEFAULT,
                .audit_refusal_interval_sec = AUDIT_REFUSAL_INTERVAL_SEC_DEFAULT,
                .audit_refusal_share_percent = AUDIT_REFUSAL_SHARE_PERCENT_DEFAULT,
                .audit_max_queries = AUDIT_MAX_QUERIES_DEFAULT,
                .audit_max_followers = AUDIT_MAX_FOLLOWERS_DEFAULT,
                .audit_max_query_scan = AUDIT_MAX_QUERY_SCAN_DEFAULT,
                .audit_max_query_records = AUDIT_MAX_QUERY_RECORDS_DEFAULT,
                .worker_start_timeout_sec = WORKER_START_TIMEOUT_SEC_DEFAULT,
                .worker_watchdog_sec = WORKER_WATCHDOG_SEC_DEFAULT,
                .worker_stop_timeout_sec = WORKER_STOP_TIMEOUT_SEC_DEFAULT,
                .worker_kill_timeout_sec = WORKER_KILL_TIMEOUT_SEC_DEFAULT,
                .worker_drain_timeout_sec = WORKER_DRAIN_TIMEOUT_SEC_DEFAULT,
        };
        /* A sixteenth of MaxConnections=, in force (manager.c's fit_unnamed_connections()). */
        c->limits.max_unnamed_connections = 0;
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++)
                if (config_items[i].type == CONFIG_PATH) {
                        char **s = (char **) (void *) ((uint8_t *) c + config_items[i].offset);

                        /* An empty path would not be the default: it names no file. */
                        *s = strdup(config_items[i].default_path);
                        if (!*s) {
                                daemon_config_done(c);
                                return -ENOMEM;
                        }
                }
        return 0;
}

static bool config_type_is_string(ConfigType t) {
        return t == CONFIG_STRING || t == CONFIG_PATH || t == CONFIG_DEVICE_LIST;
}

void daemon_config_done(DaemonConfig *c) {
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++)
                if (config_type_is_string(config_items[i].type)) {
                        char **s = (char **) (void *) ((uint8_t *) c + config_items[i].offset);
                        *s = mfree(*s);
                }
}

typedef struct LoadState {
        DaemonConfig *config;
        const char *message;
        unsigned set_on_line[ELEMENTSOF(config_items)]; /* 0: not set in this file */
} LoadState;

/* A message naming the key (and its range, first line or the keys of its section):
 * daemon_config_load() hands out static strings. */
static _Thread_local char range_message[512];

static bool config_type_is_size(ConfigType t) {
        return t == CONFIG_SIZE_T || t == CONFIG_SIZE;
}

/* Every value refused names its key: "not a size" alone leaves the admin to find the line. */
static int value_error(LoadState *st, const ConfigItem *it, const char *reason) {
        snprintf(range_message, sizeof(range_message), "invalid value for %s=: %s", it->key, reason);
        st->message = range_message;
        return -EINVAL;
}

/* A bound as the key takes it: a size with the largest unit that divides it. */
static const char *format_bound(const ConfigItem *it, uint64_t v, char buf[static 32]) {
        static const char units[] = "GMK";

        for (int i = 0; config_type_is_size(it->type) && v > 0 && units[i]; i++) {
                uint64_t factor = 1ULL << (10 * (3 - i));

                if (v % factor == 0) {
                        snprintf(buf, 32, "%" PRIu64 "%c", v / factor, units[i]);
                        return buf;
                }
        }
        snprintf(buf, 32, "%" PRIu64, v);
        return buf;
}

static int parse_number(LoadState *st, const ConfigItem *it, const char *value, uint64_t *ret) {
        uint64_t v, max;
        bool overflow;
        char *end;

        /* A number beyond 64 bits is out of range like any other above the maximum. */
        if (config_type_is_size(it->type)) {
                int r = parse_size(value, &v);

                overflow = r == -ERANGE;
                if (r < 0 && !overflow)
                        return value_error(st, it, "not a size (use a number with an optional K, M or G)");
        } else {
                errno = 0;
                v = strtoull(value, &end, 10);
                overflow = errno == ERANGE;
                /* strtoull() also skips white space and takes a sign; "plain non-negative
                 * integers" begin with their first digit. */
                if (!(*value >= '0' && *value <= '9') || *end || (errno != 0 && !overflow))
                        return value_error(st, it, "not a non-negative integer");
        }
        /* A size_t of 32 bits holds less than some maxima (MaxBuffered=64G). */
        max = it->type == CONFIG_SIZE_T ? MIN(it->max, (uint64_t) SIZE_MAX) : it->max;
        if (overflow || v < it->min || v > max) {
                char lo[32], hi[32];

                snprintf(range_message, sizeof(range_message), "value out of range for %s= (%s to %s)", it->key,
                         format_bound(it, it->min, lo), format_bound(it, max, hi));
                st->message = range_message;
                return -ERANGE;
        }
        *ret = v;
        return 0;
}

/* Longest key or section name quoted back: ini.c takes names as long as a line. */
#define NAME_QUOTED_MAX 64

/* "Directroy=" or "[Gest]" named, with what the admin may have meant: the keys of its section,
 * or the sections there are (key NULL: the section is unknown). As the policy's loader does. */
static int unknown_name(LoadState *st, const char *section, const char *key) {
        bool known = false, listed = false;
        size_t n;
        int k;

        for (size_t i = 0; i < ELEMENTSOF(config_items) && !known; i++)
                known = streq(config_items[i].section, section);
        if (key && known)
                k = snprintf(range_message, sizeof(range_message), "unknown key '%.*s' in [%s] (valid:",
                             NAME_QUOTED_MAX, key, section);
        else
                k = snprintf(range_message, sizeof(range_message), "unknown section [%.*s] (valid:",
                             NAME_QUOTED_MAX, section);
        n = (size_t) MAX(k, 0);
        for (size_t i = 0; i < ELEMENTSOF(config_items) && n < sizeof(range_message); i++) {
                const ConfigItem *it = &config_items[i];
                const char *name = key && known ? it->key : it->section;

                if (key && known ? !streq(it->section, section) :
                                   i > 0 && streq(config_items[i - 1].section, it->section))
                        continue; /* another section's key; a section listed already */
                k = snprintf(range_message + n, sizeof(range_message) - n, key && known ? "%s %s" : "%s [%s]",
                             listed ? "," : "", name);
                n += (size_t) MAX(k, 0);
                listed = true;
        }
        if (n < sizeof(range_message))
                snprintf(range_message + n, sizeof(range_message) - n, ")");
        st->message = range_message;
        return -EINVAL;
}

/* A word of the value that starts with '#' or ';': a comment the admin meant, as in the policy. */
static bool value_has_comment(const char *value) {
        for (size_t i = 0; value[i]; i++)
                if ((value[i] == '#' || value[i] == ';') && (i == 0 || strchr(" \t", value[i - 1])))
                        return true;
        return false;
}

static int on_assignment(const char *section, const char *key, const char *value, unsigned line,
                         void *userdata) {
        LoadState *st = userdata;

        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                const ConfigItem *it = &config_items[i];
                void *field = (void *) ((uint8_t *) st->config + it->offset);
                uint64_t v;
                int r;

                if (!streq(it->section, section) || !streq(it->key, key))
                        continue;

                /* Which of two values counts is no question the admin should have to ask:
                 * an error, as in the policy (each key appears once in --dump-config). */
                if (st->set_on_line[i] > 0) {
                        snprintf(range_message, sizeof(range_message),
                                 "%s= is already set on line %u of this file; remove one of them", key,
                                 st->set_on_line[i]);
                        st->message = range_message;
                        return -EINVAL;
                }
                st->set_on_line[i] = line;

                /* "File=/etc/tsmd/policy.conf # main" named no file that exists: an empty
                 * policy, or with DropInDirectory= no drop-ins, those that take grants away
                 * included, and --check-config said OK. */
                if (value_has_comment(value))
                        return value_error(st, it, "comments must be on a line of their own");

                switch (it->type) {
                case CONFIG_DEVICE_LIST: {
                        _cleanup_free_ EmuDeviceConfig *devices = NULL;
                        size_t n;

                        if (!isempty(value) && emu_config_parse(value, &devices, &n) < 0)
                                return value_error(st, it, "not a valid device list (DDDD:BB:DD.F[:ranges=N][:vendor=HHHH][:device=HHHH][:fault=NAME],...)");
                }
                        _fallthrough_;
                case CONFIG_PATH:
                case CONFIG_STRING: {
                        char *s;

                        /* A relative path would mean what the working directory says: the
                         * policy --check-config loads in one is not the one tsmd (in /)
                         * loads, a missing one being an empty policy. */
                        if (it->type == CONFIG_PATH && !isempty(value) && value[0] != '/')
                                return value_error(st, it, "not an absolute path");

                        if (isempty(value) && it->default_path)
                                value = it->default_path;
                        if (check_host && it->host_refuses) {
                                const char *why = it->host_refuses(value);

                                if (why)
                                        return value_error(st, it, why);
                        }
                        s = isempty(value) ? NULL : strdup(value);
                        if (!isempty(value) && !s)
                                return -ENOMEM;
                        free(*(char **) field);
                        *(char **) field = s;
                        return 0;
                }
                case CONFIG_BOOL: {
                        bool b;
                        if (streq(value, "yes") || streq(value, "true") || streq(value, "1") || streq(value, "on"))
                                b = true;
                        else if (streq(value, "no") || streq(value, "false") || streq(value, "0") || streq(value, "off"))
                                b = false;
                        else
                                return value_error(st, it, "not a boolean (yes/no)");
                        *(bool *) field = b;
                        return 0;
                }
                case CONFIG_SYNC_MODE: {
                        AuditSyncMode m = audit_sync_mode_from_string(value);
                        if (m < 0)
                                return value_error(st, it, "not a sync mode (group, per-record)");
                        *(AuditSyncMode *) field = m;
                        return 0;
                }
                case CONFIG_PLATFORM_MODE: {
                        TsmPlatformMode m = tsm_platform_mode_from_string(value);
                        if (m < 0)
                                return value_error(st, it, "not one of auto, kernel, emulated");
                        *(TsmPlatformMode *) field = m;
                        return 0;
                }
                default:
                        r = parse_number(st, it, value, &v);
                        if (r < 0)
                                return r;
                        if (it->type == CONFIG_UNSIGNED)
                                *(unsigned *) field = (unsigned) v;
                        else if (it->type == CONFIG_SIZE_T)
                                *(size_t *) field = (size_t) v;
                        else
                                *(uint64_t *) field = v;
                        return 0;
                }
        }

        return unknown_name(st, section, key);
}

/* A section without keys must be one we know too: "[Gest]" with its keys commented out is a
 * typo the admin should hear of, as tsmd.conf(5) promises. */
static int on_section(const char *section, unsigned line, void *userdata) {
        LoadState *st = userdata;

        for (size_t i = 0; i < ELEMENTSOF(config_items); i++)
                if (streq(config_items[i].section, section))
                        return 0;
        return unknown_name(st, section, NULL);
}

/* On failure dst holds nothing to free. */
static int config_copy(DaemonConfig *dst, const DaemonConfig *src) {
        DaemonConfig copy = *src;

        /* No string shared with src first, so that daemon_config_done() may free whatever
         * the copy got before it ran out of memory. */
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++)
                if (config_type_is_string(config_items[i].type))
                        *(char **) (void *) ((uint8_t *) &copy + config_items[i].offset) = NULL;

        for (size_t i = 0; i < ELEMENTSOF(config_items); i++)
                if (config_type_is_string(config_items[i].type)) {
                        size_t o = config_items[i].offset;
                        const char *s = *(char *const *) (const void *) ((const uint8_t *) src + o);
                        char **d = (char **) (void *) ((uint8_t *) &copy + o);

                        if (s && !(*d = strdup(s))) {
                                daemon_config_done(&copy);
                                return -ENOMEM;
                        }
                }
        *dst = copy;
        return 0;
}

/* Parses text (or, with text NULL, reads path first) over a copy of c. */
/* Whether two absolute paths name the same one as spelled, "/a//b/" as "/a/b" (not through
 * links: the monitor compares what it opens). */
static bool same_path(const char *a, const char *b) {
        if (!a || !b)
                return false;
        for (;;) {
                while (*a == '/' && a[1] == '/')
                        a++;
                while (*b == '/' && b[1] == '/')
                        b++;
                if ((*a == 0 || (*a == '/' && a[1] == 0)) && (*b == 0 || (*b == '/' && b[1] == 0)))
                        return true;
                if (*a != *b)
                        return false;
                a++;
                b++;
        }
}

/* " (the default)" for a value this file did not set that is the built-in one, "" otherwise. */
static const char *default_here(const LoadState *st, size_t offset, bool is_default) {
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++)
                if (config_items[i].offset == offset)
                        return st->set_on_line[i] == 0 && is_default ? " (the default)" : "";
        return "";
}

/* A rule between keys is refused at the line of the last of them this file sets (0: none, the
 * values came from before it): the line where, reading down, the pair goes wrong. */
static unsigned last_line_of(const LoadState *st, const size_t *offsets, size_t n) {
        unsigned line = 0;

        for (size_t i = 0; i < ELEMENTSOF(config_items); i++)
                for (size_t j = 0; j < n; j++)
                        if (config_items[i].offset == offsets[j])
                                line = MAX(line, st->set_on_line[i]);
        return line;
}
#define LAST_LINE_OF(st, ...)                                                                      \
        last_line_of(st, (const size_t[]){ __VA_ARGS__ }, ELEMENTSOF(((const size_t[]){ __VA_ARGS__ })))
#define OFF(field) offsetof(DaemonConfig, field)

static int config_load(DaemonConfig *c, const char *path, const char *text, unsigned *ret_line,
                       const char **ret_message) {
        _cleanup_free_ char *buf = NULL;
        DaemonConfig copy;
        LoadState st = { .config = &copy };
        unsigned line = 0;
        int r;

        /* Work on a copy so a bad file leaves the configuration in force untouched. */
        r = config_copy(&copy, c);
        if (r < 0)
                return r;

        r = text ? 0 : ini_read_file(path, DAEMON_CONFIG_FILE_MAX, &buf);
        if (r >= 0)
                r = ini_parse_full(text ?: buf, on_section, on_assignment, &st, &line);
        if (r == -EBADMSG && !st.message && line > 0 && ini_line_length(text ?: buf, line) > INI_LINE_MAX) {
                snprintf(range_message, sizeof(range_message), "line too long (more than %u bytes)", INI_LINE_MAX);
                st.message = range_message;
        }
        if (r == -EBADMSG && !st.message)
                st.message = "syntax error";
        if (r == -EISDIR || r == -EBADFD)
                st.message = "not a regular file";
        if (r >= 0 && copy.limits.max_output_size < copy.limits.max_message_size) {
                /* The output queue must hold at least one maximum-size message. */
                line = LAST_LINE_OF(&st, OFF(limits.max_output_size), OFF(limits.max_message_size));
                st.message = "MaxOutputSize must not be smaller than MaxMessageSize";
                r = -EINVAL;
        }
        if (r >= 0 && copy.limits.max_buffered_per_uid < copy.limits.max_message_size + copy.limits.max_output_size) {
                /* A uid's budget must hold what one of its connections may: a connection's
                 * input never exceeds MaxMessageSize (varlink_stream_read()), its queued
                 * replies MaxOutputSize. */
                line = LAST_LINE_OF(&st, OFF(limits.max_buffered_per_uid), OFF(limits.max_message_size),
                                    OFF(limits.max_output_size));
                st.message = "MaxBufferedPerUid must not be smaller than MaxMessageSize + MaxOutputSize";
                r = -EINVAL;
        }
        if (r >= 0 && copy.limits.max_buffered < copy.limits.max_message_size + copy.limits.max_output_size) {
                /* All clients' budget must hold at least what one connection may. */
                line = LAST_LINE_OF(&st, OFF(limits.max_buffered), OFF(limits.max_message_size),
                                    OFF(limits.max_output_size));
                st.message = "MaxBuffered must not be smaller than MaxMessageSize + MaxOutputSize";
                r = -EINVAL;
        }
        if (r >= 0 && (copy.limits.max_fds_per_uid < 2 * copy.limits.max_fds_per_message ||
                       (copy.limits.max_fds > 0 && copy.limits.max_fds < 2 * copy.limits.max_fds_per_message))) {
                /* A connection may park the fds of two messages: one complete, waiting for its
                 * turn, and the start of the next, read with its end. */
                line = LAST_LINE_OF(&st, OFF(limits.max_fds_per_uid), OFF(limits.max_fds),
                                    OFF(limits.max_fds_per_message));
                st.message = "MaxFdsPerUid and MaxFds (unless 0) must be at least twice MaxFdsPerMessage";
                r = -EINVAL;
        }
        if (r >= 0 && same_path(copy.audit_dir, copy.context_state_dir)) {
                /* Each is the worker's alone, locked by whoever uses it (the monitor, the audit
                 * log): one for both is refused as another tsmd's would be. */
                line = LAST_LINE_OF(&st, OFF(audit_dir), OFF(context_state_dir));
                st.message = "[Audit] Directory and [Guest] ContextStateDirectory must differ";
                r = -EINVAL;
        }
        if (r >= 0 && copy.worker_drain_timeout_sec + WORKER_STOP_SPARE_SEC > copy.worker_stop_timeout_sec) {
                /* A worker still draining when its stop time is up is killed: its requests in
                 * flight go unrecorded. After the drain it waits for its last unbinds, and
                 * closes the audit log in the last second (manager.c). */
                line = LAST_LINE_OF(&st, OFF(worker_drain_timeout_sec), OFF(worker_stop_timeout_sec));
                snprintf(range_message, sizeof(range_message),
                         "[Worker] DrainTimeoutSec=%u%s must be at most StopTimeoutSec=%u%s less %u s",
                         copy.worker_drain_timeout_sec,
                         default_here(&st, offsetof(DaemonConfig, worker_drain_timeout_sec),
                                      copy.worker_drain_timeout_sec == WORKER_DRAIN_TIMEOUT_SEC_DEFAULT),
                         copy.worker_stop_timeout_sec,
                         default_here(&st, offsetof(DaemonConfig, worker_stop_timeout_sec),
                                      copy.worker_stop_timeout_sec == WORKER_STOP_TIMEOUT_SEC_DEFAULT),
                         WORKER_STOP_SPARE_SEC);
                st.message = range_message;
                r = -EINVAL;
        }
        if (r < 0) {
                daemon_config_done(&copy);
                if (ret_line)
                        *ret_line = line;
                if (ret_message)
                        *ret_message = st.message ?: "cannot read file";
                return r;
        }

        daemon_config_done(c);
        *c = copy;
        return 0;
}

int daemon_config_load(DaemonConfig *c, const char *path, unsigned *ret_line, const char **ret_message) {
        assert(path);
        return config_load(c, path, NULL, ret_line, ret_message);
}

int daemon_config_load_text(DaemonConfig *c, const char *text, unsigned *ret_line, const char **ret_message) {
        assert(text);
        return config_load(c, NULL, text, ret_line, ret_message);
}

/* The value as the file would spell it. Returns buf. */
static const char *format_value(const ConfigItem *it, const DaemonConfig *c, char *buf, size_t size) {
        const void *field = (const void *) ((const uint8_t *) c + it->offset);

        switch (it->type) {
        case CONFIG_STRING:
        case CONFIG_PATH:
        case CONFIG_DEVICE_LIST:
                return *(char *const *) field ?: "";
        case CONFIG_PLATFORM_MODE:
                return tsm_platform_mode_to_string(*(const TsmPlatformMode *) field);
        case CONFIG_BOOL:
                return *(const bool *) field ? "yes" : "no";
        case CONFIG_SYNC_MODE:
                return audit_sync_mode_to_string(*(const AuditSyncMode *) field);
        case CONFIG_UNSIGNED:
                snprintf(buf, size, "%u", *(const unsigned *) field);
                return buf;
        case CONFIG_SIZE_T:
                snprintf(buf, size, "%zu", *(const size_t *) field);
                return buf;
        case CONFIG_SIZE:
        case CONFIG_UINT64:
                snprintf(buf, size, "%" PRIu64, *(const uint64_t *) field);
                return buf;
        }
        return "";
}

static void config_dump_items(const DaemonConfig *c, bool start_only, FILE *f) {
        const char *section = NULL;

        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                const ConfigItem *it = &config_items[i];
                char buf[32];

                if (start_only && !it->at_start)
                        continue;
                if (!section || !streq(section, it->section)) {
                        fprintf(f, "%s[%s]\n", section ? "\n" : "", it->section);
                        section = it->section;
                }
                fprintf(f, "%s=%s\n", it->key, format_value(it, c, buf, sizeof(buf)));
        }
}

void daemon_config_dump(const DaemonConfig *c, FILE *f) {
        config_dump_items(c, /* start_only= */ false, f);
}

int daemon_config_format_start_only(const DaemonConfig *c, char **ret) {
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        FILE *f;

        assert(c);
        assert(ret);

        f = open_memstream(&text, &size);
        if (!f)
                return -ENOMEM;
        config_dump_items(c, /* start_only= */ true, f);
        if (fclose(f) != 0 || !text)
                return -ENOMEM;
        *ret = TAKE_PTR(text);
        return 0;
}

int daemon_config_foreach_start_only(const DaemonConfig *running, const DaemonConfig *new,
                                     DaemonConfigSettingCallback cb, void *userdata) {
        int n = 0, r;

        assert(!running || new);
        assert(cb);

        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                const ConfigItem *it = &config_items[i];
                char a[32], b[32];

                if (!it->at_start || (running && streq(format_value(it, running, a, sizeof(a)),
                                                       format_value(it, new, b, sizeof(b)))))
                        continue;
                r = cb(it->section, it->key, userdata);
                if (r < 0)
                        return r;
                n++;
        }
        return n;
}

int daemon_config_log_load_error(const char *path, int error, unsigned line, const char *message) {
        if (line > 0)
                return log_error_errno(error, "%s:%u: %s.", path, line, message);
        if (error == -EISDIR || error == -EBADFD)
                return log_error_errno(error, "Failed to load '%s': %s.", path, message);
        return log_error_errno(error, "Failed to load '%s': %s: %m", path, message);
}

int daemon_config_format_load_error(const char *path, int error, unsigned line, const char *message, char **ret) {
        char *s;
        int k;

        assert(path);
        assert(ret);

        if (line > 0)
                k = asprintf(&s, "%s:%u: %s", path, line, strna(message));
        else if (error == -EISDIR || error == -EBADFD || error == -EBADMSG)
                k = asprintf(&s, "%s: %s", path, strna(message));
        else
                k = asprintf(&s, "%s: %s: %s", path, strna(message), strerror(-error));
        if (k < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int daemon_config_load_logged(DaemonConfig *c, const char *path, bool optional) {
        const char *message = NULL;
        unsigned line = 0;
        int r;

        r = daemon_config_load(c, path, &line, &message);
        if (r == -ENOENT && optional)
                return 0; /* built-in defaults (a reload picks up a file that appears later) */
        if (r < 0)
                return daemon_config_log_load_error(path, r, line, message);
        return 0;
}
