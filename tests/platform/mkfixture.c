/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mkfixture: writes a sysfs-like tree from a description file, or a generated one with N PCI
 * devices (for the discovery benchmark):
 *   mkfixture OUTDIR tests/platform/fixtures/two-tsms.sysfs
 *   mkfixture OUTDIR --devices 1000
 *
 * Runs in: tests only.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sysfs-fixture.h"

int main(int argc, char *argv[]) {
        int r;

        if (argc != 3 && !(argc == 4 && strcmp(argv[2], "--devices") == 0)) {
                fputs("Usage: mkfixture OUTDIR DESCRIPTION | mkfixture OUTDIR --devices N\n", stderr);
                return 2;
        }
        if (mkdir(argv[1], 0755) < 0 && errno != EEXIST) {
                perror(argv[1]);
                return 1;
        }

        if (argc == 4) {
                char *text = sysfs_fixture_generate_scaled((unsigned) strtoul(argv[3], NULL, 10));

                if (!text) {
                        fputs("Out of memory\n", stderr);
                        return 1;
                }
                r = sysfs_fixture_apply_text(argv[1], text);
                free(text);
        } else
                r = sysfs_fixture_apply_file(argv[1], argv[2]);

        if (r < 0) {
                fprintf(stderr, "Failed to build fixture: %s\n", strerror(-r));
                return 1;
        }
        return 0;
}
