/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl disconnect PCI-ADDRESS: disconnect a device from its TSM (refused while a guest holds it, or
 * where no policy rule lists it). */

#include <stdio.h>

#include "json-util.h"
#include "tsmctl.h"

static int run(const TsmctlOptions *o, int argc, char *argv[]) {
        _cleanup_(tsm_client_freep) TsmClient *c = NULL;
        json_object *params = json_object_new_object(), *reply;
        int r;

        if (!params || json_object_add(params, "pciAddress", json_object_new_string(argv[0])) < 0) {
                json_object_put(params);
                fprintf(stderr, "Out of memory.\n");
                return EXIT_GENERIC;
        }
        r = tsmctl_fetch(o, &c, "io.tsmd.Admin.DisconnectDevice", params, &reply);
        if (r > 0) {
                const char *error = c ? tsm_client_get_error_name(c) : NULL;

                /* The error's name alone reads like a fault: say that nothing is wrong. */
                if (error && streq(error, "io.tsmd.Admin.EmulatedDevice"))
                        fprintf(stderr, "%s is a device of the emulated platform: it stays connected to its TSM, "
                                "emu0, and has no disconnect step.\n", argv[0]);
                /* Not a fault: the policy's choice, and how to change it. */
                if (error && streq(error, "io.tsmd.Admin.DeviceNotListed"))
                        fprintf(stderr, "No rule of tsmd's policy lists %s for the backend of its TSM, so tsmd "
                                "leaves the device alone. To have tsmd disconnect it, add it to a rule's Devices= "
                                "(see tsmd-policy.conf(5)) and run tsmctl reload.\n", argv[0]);
                return r;
        }
        if (o->json)
                tsmctl_print_json(reply);
        return 0;
}

const TsmctlVerb verb_disconnect = {
        .name = "disconnect",
        .usage = "PCI-ADDRESS",
        .summary = "Disconnect a device from its TSM",
        .min_args = 1,
        .max_args = 1,
        .run = run,
};
