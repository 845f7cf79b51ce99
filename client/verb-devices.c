/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl devices: devices with their TSM, TDISP state and owner. */

#include <stdio.h>

#include "json-util.h"
#include "tsmctl.h"

/* Display columns of DEVICE, DSM, TSM, BACKEND and STATE, with the space after each; OWNER last. */
static const size_t widths[] = { 15, 15, 7, 15, 17 };

static void print_row(const char *device, const char *dsm, const char *tsm, const char *backend, const char *state,
                      const char *owner) {
        const char *cells[] = { device, dsm, tsm, backend, state };

        for (size_t i = 0; i < ELEMENTSOF(cells); i++)
                tsmctl_print_padded(stdout, cells[i], widths[i]);
        printf("%s\n", owner);
}

static int run(const TsmctlOptions *o, int argc, char *argv[]) {
        _cleanup_(tsm_client_freep) TsmClient *c = NULL;
        json_object *reply, *list;
        int r;

        r = tsmctl_fetch(o, &c, "io.tsmd.Admin.ListDevices", NULL, &reply);
        if (r > 0)
                return r;
        if (o->json) {
                tsmctl_print_json(reply);
                return 0;
        }

        r = tsmctl_reply_array(reply, "io.tsmd.Admin.ListDevices", "devices", &list);
        if (r > 0)
                return r;
        print_row("DEVICE", "DSM", "TSM", "BACKEND", "STATE", "OWNER");
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                _cleanup_(tsmctl_escapes_done) TsmctlEscapes e = {};
                json_object *d = json_object_array_get_idx(list, i), *owner = json_object_object_get(d, "owner");
                char who[160] = "-", held[64] = "to be reclaimed";

                /* The IDL's ints are 64-bit: a vDevice id or uid may not fit an int. */
#define I(k) ((long long) json_object_get_int64(json_object_object_get(owner, k)))
                if (owner) {
                        if (!json_object_get_boolean(json_object_object_get(owner, "reclaimable")))
                                snprintf(held, sizeof(held), "pid %lld ctx %lld", I("pid"), I("context"));
                        snprintf(who, sizeof(who), "uid %lld %s vdev %lld%s%s", I("uid"), held, I("vdeviceId"),
                                 json_object_get_boolean(json_object_object_get(owner, "bound")) ? " bound" : "",
                                 json_object_get_boolean(json_object_object_get(owner, "changing")) ? " changing" : "");
                }
#undef I
                /* DSM "-": the device is its own DSM. */
                print_row(strna(tsmctl_esc_cell(&e, json_get_string(d, "pciAddress"))),
                          tsmctl_esc_cell(&e, json_get_string(d, "dsm")) ?: "-",
                          tsmctl_esc_cell(&e, json_get_string(d, "tsm")) ?: "-",
                          tsmctl_esc_cell(&e, json_get_string(d, "backend")) ?: "-",
                          tsmctl_esc_cell(&e, json_get_string(d, "state")) ?: "-", who);
        }
        return 0;
}

const TsmctlVerb verb_devices = {
        .name = "devices",
        .usage = "",
        .summary = "List devices: DSM, TSM, TDISP state, owner",
        .max_args = 0,
        .run = run,
};
