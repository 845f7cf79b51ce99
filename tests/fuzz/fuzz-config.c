/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for tsmd.conf: arbitrary bytes as a configuration file, loaded over the
 * defaults as tsmd (monitor and worker) and a reload do, then dumped and loaded again. Checks
 * what must hold, not only the absence of crashes: a failed load leaves the configuration in
 * force untouched, and whatever loads round-trips through --dump-config to the same dump, and
 * its settings read at start through the text a worker gets of them (HELLO) to the same ones.
 * Runs in: tests (fuzzing builds only).
 */

#include <stdio.h>
#include <sys/mman.h>

#include "daemon-config.h"
#include "fuzz.h"

/* The configuration as --dump-config writes it (malloc'd). */
static char *dump(const DaemonConfig *c, size_t *ret_len) {
        char *text = NULL;
        FILE *f = open_memstream(&text, ret_len);

        CHECK(f);
        daemon_config_dump(c, f);
        CHECK(fclose(f) == 0);
        return text;
}

/* Loads text (as a file: the parser reads files) over c. */
static int load(DaemonConfig *c, const void *text, size_t len) {
        char path[64];
        int fd, r;

        fd = memfd_create("fuzz-config", MFD_CLOEXEC);
        CHECK(fd >= 0);
        CHECK(len == 0 || write(fd, text, len) == (ssize_t) len);
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        r = daemon_config_load(c, path, NULL, NULL);
        close(fd);
        return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        DaemonConfig c, again;
        char *before, *after, *redump;
        size_t n_before, n_after, n_redump;

        if (size > DAEMON_CONFIG_FILE_MAX)
                return 0;
        CHECK(daemon_config_init(&c) >= 0);
        before = dump(&c, &n_before);

        if (load(&c, data, size) < 0) {
                /* Refused: nothing of it took effect. */
                after = dump(&c, &n_after);
                CHECK(n_after == n_before && memcmp(after, before, n_before) == 0);
        } else {
                /* Accepted: its dump loads again, to the same configuration. */
                after = dump(&c, &n_after);
                CHECK(daemon_config_init(&again) >= 0);
                CHECK(load(&again, after, n_after) >= 0);
                redump = dump(&again, &n_redump);
                CHECK(n_redump == n_after && memcmp(redump, after, n_after) == 0);
                free(redump);
                daemon_config_done(&again);

                /* Over the defaults, the settings read at start are c's again, text for text. */
                {
                        char *start = NULL, *start_again = NULL;

                        CHECK(daemon_config_format_start_only(&c, &start) >= 0);
                        CHECK(daemon_config_init(&again) >= 0);
                        CHECK(daemon_config_load_text(&again, start, NULL, NULL) >= 0);
                        CHECK(daemon_config_format_start_only(&again, &start_again) >= 0);
                        CHECK(streq(start, start_again));
                        free(start);
                        free(start_again);
                        daemon_config_done(&again);
                }
        }
        free(before);
        free(after);
        daemon_config_done(&c);
        return 0;
}
