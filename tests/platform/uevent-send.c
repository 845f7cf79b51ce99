/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * uevent-send: command-line front end of uevent-sender.c, for poking a running tsmd (or any
 * sd_device_monitor listener) in a test namespace:
 *   unshare -n -m sh -c '... uevent-send add /devices/faux/tdx_host/tsm/tsm1 tsm'
 * Refuses to run in the host's network namespace unless --allow-host-netns is given, because
 * real udev listeners there would act on the fake event.
 *
 * Runs in: tests only.
 */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uevent-sender.h"

static void usage(FILE *f) {
        fputs("Usage: uevent-send [--seqnum N] [--allow-host-netns] ACTION DEVPATH SUBSYSTEM [KEY=VALUE...]\n", f);
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "seqnum", required_argument, NULL, 's' },
                { "allow-host-netns", no_argument, NULL, 'H' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        unsigned long long seqnum = 1;
        int c, r, allow_host = 0;

        while ((c = getopt_long(argc, argv, "s:h", options, NULL)) >= 0)
                switch (c) {
                case 's':
                        seqnum = strtoull(optarg, NULL, 10);
                        break;
                case 'H':
                        allow_host = 1;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }

        if (argc - optind < 3) {
                usage(stderr);
                return 2;
        }

        r = uevent_in_private_netns();
        if (r < 0) {
                fprintf(stderr, "Cannot compare network namespaces: %s\n", strerror(-r));
                return 1;
        }
        if (r == 0 && !allow_host) {
                fputs("Refusing to send a fake uevent in the host network namespace "
                      "(run under 'unshare -n', or pass --allow-host-netns).\n", stderr);
                return 1;
        }

        r = uevent_send(argv[optind], argv[optind + 1], argv[optind + 2],
                        argc - optind > 3 ? argv + optind + 3 : NULL, seqnum);
        if (r < 0) {
                fprintf(stderr, "Failed to send uevent: %s\n", strerror(-r));
                return 1;
        }
        return 0;
}
