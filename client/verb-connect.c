/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl connect PCI-ADDRESS TSM: connect a device to a TSM (SPDM, IDE) via the kernel. */

#include <stdio.h>

#include "json-util.h"
#include "tsmctl.h"

static int run(const TsmctlOptions *o, int argc, char *argv[]) {
        _cleanup_(tsm_client_freep) TsmClient *c = NULL;
        json_object *params = json_object_new_object(), *reply;
        int r;

        if (!params || json_object_add(params, "pciAddress", json_object_new_string(argv[0])) < 0 ||
            json_object_add(params, "tsm", json_object_new_string(argv[1])) < 0) {
                json_object_put(params);
                fprintf(stderr, "Out of memory.\n");
                return EXIT_GENERIC;
        }
        r = tsmctl_fetch(o, &c, "io.tsmd.Admin.ConnectDevice", params, &reply);
        if (r > 0) {
                const char *error = c ? tsm_client_get_error_name(c) : NULL;

                /* The error's name alone reads like a fault: say that nothing is wrong. */
                if (error && streq(error, "io.tsmd.Admin.EmulatedDevice"))
                        fprintf(stderr, "%s is a device of the emulated platform: it is connected to its TSM, emu0, "
                                "from the start, and has no connect step.\n", argv[0]);
                /* Not a fault either: the policy's choice, and how to change it. */
                if (error && streq(error, "io.tsmd.Admin.DeviceNotListed"))
                        fprintf(stderr, "No rule of tsmd's policy lists %s for the backend of %s, so tsmd leaves "
                                "the device alone. To have tsmd connect it, add it to a rule's Devices= (see "
                                "tsmd-policy.conf(5)) and run tsmctl reload.\n", argv[0], argv[1]);
                return r;
        }
        if (o->json)
                tsmctl_print_json(reply);
        return 0;
}

const TsmctlVerb verb_connect = {
        .name = "connect",
        .usage = "PCI-ADDRESS TSM",
        .summary = "Connect a device to a TSM (kernel TSMs)",
        .min_args = 2,
        .max_args = 2,
        .run = run,
};
