/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Configuration defaults, tsmd.conf parsing and dumping. Runs in: daemon. */

#include <inttypes.h>

#include "config.h"
#include "daemon-config.h"
#include "ini.h"

int parse_size(const char *s, uint64_t *ret) {
        static const struct {
                char suffix;
                uint64_t factor;
        } units[] = { { 'K', 1ULL << 10 }, { 'M', 1ULL << 20 }, { 'G', 1ULL << 30 } };
        uint64_t v, factor = 1;
        char *end;

        if (isempty(s) || *s == '-' || *s == '+')
                return -EINVAL;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || end == s)
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
        if (v > UINT64_MAX / factor)
                return -ERANGE;

        *ret = v * factor;
        return 0;
}

typedef struct ConfigItem {
        const char *section;
        const char *key;
        size_t offset;
        size_t width; /* sizeof the field: unsigned or size_t */
        uint64_t min, max;
        bool size_suffix;
} ConfigItem;

#define LIMIT(key_, field_, min_, max_, sz_)                                                       \
        {                                                                                          \
                "Varlink", key_, offsetof(DaemonConfig, limits.field_),                            \
                sizeof(((DaemonConfig *) NULL)->limits.field_), min_, max_, sz_                    \
        }

/* Bounds keep every knob in the range the code is written and tested for. */
static const ConfigItem config_items[] = {
        LIMIT("MaxMessageSize", max_message_size, 64, 256ULL << 20, true),
        LIMIT("MaxOutputSize", max_output_size, 64, 1ULL << 30, true),
        LIMIT("MaxJsonDepth", max_depth, 2, 4096, false),
        LIMIT("MaxFdsPerMessage", max_fds_per_message, 0, 253, false),
        LIMIT("MaxPendingCalls", max_pending_calls, 1, 65536, false),
        LIMIT("MaxConnections", max_connections, 1, 1U << 20, false),
        LIMIT("MaxConnectionsPerUid", max_connections_per_uid, 1, 1U << 20, false),
};

void daemon_config_init(DaemonConfig *c) {
        *c = (DaemonConfig){
                .limits = VARLINK_LIMITS_DEFAULT,
        };
}

void daemon_config_done(DaemonConfig *c) {
        (void) c;
}

typedef struct LoadState {
        DaemonConfig *config;
        const char *message;
} LoadState;

static int on_assignment(const char *section, const char *key, const char *value, unsigned line,
                         void *userdata) {
        LoadState *st = userdata;

        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                const ConfigItem *it = &config_items[i];
                uint64_t v;
                char *end;
                void *field;

                if (!streq(it->section, section) || !streq(it->key, key))
                        continue;

                if (it->size_suffix) {
                        if (parse_size(value, &v) < 0) {
                                st->message = "not a size (use a number with an optional K, M or G)";
                                return -EINVAL;
                        }
                } else {
                        errno = 0;
                        v = strtoull(value, &end, 10);
                        if (isempty(value) || *end || errno != 0 || *value == '-') {
                                st->message = "not a non-negative integer";
                                return -EINVAL;
                        }
                }
                if (v < it->min || v > it->max) {
                        st->message = "value out of range";
                        return -ERANGE;
                }

                field = (uint8_t *) st->config + it->offset;
                if (it->width == sizeof(unsigned))
                        *(unsigned *) field = (unsigned) v;
                else
                        *(size_t *) field = (size_t) v;
                return 0;
        }

        st->message = "unknown section or key";
        return -EINVAL;
}

int daemon_config_load(DaemonConfig *c, const char *path, unsigned *ret_line, const char **ret_message) {
        DaemonConfig copy = *c;
        LoadState st = { .config = &copy };
        unsigned line = 0;
        int r;

        r = ini_parse_file(path, DAEMON_CONFIG_FILE_MAX, on_assignment, &st, &line);
        if (r == -EBADMSG && !st.message)
                st.message = "syntax error";
        if (r < 0) {
                if (ret_line)
                        *ret_line = line;
                if (ret_message)
                        *ret_message = st.message ?: "cannot read file";
                return r;
        }

        /* The output queue must hold at least one maximum-size message. */
        if (copy.limits.max_output_size < copy.limits.max_message_size) {
                if (ret_line)
                        *ret_line = 0;
                if (ret_message)
                        *ret_message = "MaxOutputSize must not be smaller than MaxMessageSize";
                return -EINVAL;
        }

        *c = copy;
        return 0;
}

void daemon_config_dump(const DaemonConfig *c, FILE *f) {
        const char *section = NULL;

        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                const ConfigItem *it = &config_items[i];
                const void *field = (const uint8_t *) c + it->offset;
                uint64_t v = it->width == sizeof(unsigned) ? *(const unsigned *) field :
                                                              *(const size_t *) field;

                if (!section || !streq(section, it->section)) {
                        fprintf(f, "%s[%s]\n", section ? "\n" : "", it->section);
                        section = it->section;
                }
                fprintf(f, "%s=%" PRIu64 "\n", it->key, v);
        }
}
