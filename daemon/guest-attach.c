/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * io.tsmd.Guest's vDevices: AttachDevice (the proof a VFIO fd gives, one guest per device,
 * the scopes offered) and DetachDevice. Runs in: worker.
 */

#include <ctype.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "backend.h"
#include "guest-internal.h"
#include "guest-op.h"
#include "json-util.h"
#include "policy.h"
#include "priv-call.h"
#include "tsm-platform.h"

static bool device_attached_anywhere(Manager *m, const char *pci_address) {
        GuestClient *c;

        LIST_FOREACH(c, &m->guest_clients, entry)
                for (size_t i = 0; i < c->n_contexts; i++)
                        for (size_t j = 0; j < c->contexts[i]->n_vdevices; j++) {
                                const GuestVDevice *v = &c->contexts[i]->vdevices[j];

                                /* A vDevice whose device vanished no longer holds the device that
                                 * came back under the same address. */
                                if (!v->gone && streq(v->pci_address, pci_address))
                                        return true;
                        }
        return false;
}

/* The last component of a sysfs link, or NULL if it is none. */
static const char *link_name(const char *path, char *buf, size_t size) {
        const char *base;
        ssize_t n;

        n = readlink(path, buf, size - 1);
        if (n < 0)
                return NULL;
        buf[n] = 0;
        base = strrchr(buf, '/');
        return base ? base + 1 : buf;
}

/* SECURITY: a VFIO device fd proves which physical device the VMM holds: its character device
 * must be a VFIO device cdev (subsystem vfio-dev), and its sysfs node one under the vfio-dev/
 * directory of the device at pci_address. Any other character device of that function (a DRM
 * render node, say) names the function too, but proves no VFIO ownership of it; nor does an
 * O_PATH fd of the right one, which anybody who can see the node may open. Nothing here calls
 * into the fd's file system, which the client may serve (FUSE) and answer never. */
static int verify_vfio_fd(int fd, const char *pci_address, const char **ret_reason) {
        char path[128], buf[PATH_MAX], vfio_dir[PATH_MAX];
        _cleanup_free_ char *node = NULL, *device = NULL;
        const char *name, *base;
        struct stat st;
        int flags, r;

        /* What cannot be looked at proves nothing either (a FUSE mount without allow_other
         * refuses us its attributes). */
        *ret_reason = GUEST_REASON_NOT_VFIO;
        flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return negative_errno();
        if (flags & O_PATH)
                return -EBADF;
        r = fstat_cached(fd, &st);
        if (r < 0)
                return r;
        *ret_reason = NULL;
        if (!S_ISCHR(st.st_mode)) {
                *ret_reason = GUEST_REASON_NOT_CHAR;
                return -EBADF;
        }
        snprintf(path, sizeof(path), "/sys/dev/char/%u:%u", major(st.st_rdev), minor(st.st_rdev));
        node = realpath(path, NULL);
        snprintf(path, sizeof(path), "/sys/dev/char/%u:%u/subsystem", major(st.st_rdev), minor(st.st_rdev));
        name = link_name(path, buf, sizeof(buf));
        snprintf(path, sizeof(path), "/sys/dev/char/%u:%u/device", major(st.st_rdev), minor(st.st_rdev));
        device = realpath(path, NULL);
        /* node is <device>/vfio-dev/<name>, nothing deeper. */
        if (!node || !device || !name || !streq(name, "vfio-dev") ||
            (size_t) snprintf(vfio_dir, sizeof(vfio_dir), "%s/vfio-dev/", device) >= sizeof(vfio_dir) ||
            !strneq(node, vfio_dir, strlen(vfio_dir)) || !node[strlen(vfio_dir)] ||
            strchr(node + strlen(vfio_dir), '/')) {
                *ret_reason = GUEST_REASON_NOT_VFIO;
                return -EBADF;
        }
        base = strrchr(device, '/');
        if (!streq(base ? base + 1 : device, pci_address)) {
                *ret_reason = GUEST_REASON_OTHER_DEVICE;
                return -EBADF;
        }
        return 0;
}

int guest_scope_json_new(const TsmScopeDesc *s, int64_t number, bool allowed, json_object **ret) {
        json_object *o = json_object_new_object();

        if (!o || json_object_add(o, "name", json_object_new_string(s->name)) < 0 ||
            json_object_add(o, "description", json_object_new_string(s->description)) < 0 ||
            json_object_add(o, "number", json_object_new_int64(number)) < 0 ||
            json_object_add(o, "maxRequestSize", json_object_new_int64(s->max_request)) < 0 ||
            json_object_add(o, "maxResponseSize", json_object_new_int64(s->max_response)) < 0 ||
            json_object_add(o, "allowed", json_object_new_boolean(allowed)) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        *ret = o;
        return 0;
}

int guest_attach_reply_new(const char *backend, const char *tsm, const char *uapi, json_object *scopes,
                           json_object **ret) {
        json_object *reply = json_object_new_object();

        if (!reply || json_object_add(reply, "backend", json_object_new_string(backend)) < 0 ||
            json_object_add(reply, "tsm", json_object_new_string(tsm)) < 0 ||
            json_object_add(reply, "uapi", json_object_new_string(uapi)) < 0 ||
            json_object_add(reply, "scopes", TAKE_PTR(scopes)) < 0) {
                json_object_put(scopes);
                json_object_put(reply);
                return -ENOMEM;
        }
        *ret = reply;
        return 0;
}

static int build_scopes(Manager *m, GuestClient *c, const TsmDeviceInfo *info, json_object **ret) {
        const TsmBackendDesc *b = tsm_backend_desc(info->backend);
        _cleanup_(json_object_putp) json_object *a = json_object_new_array();

        if (!a || !b)
                return -ENOMEM;
        for (size_t i = 0; i < b->n_scopes; i++) {
                const TsmScopeDesc *s = &b->scopes[i];
                json_object *o;
                uint32_t number;
                int r;

                if (tsm_platform_scope_number(m->platform, info, s->name, &number) < 0)
                        continue; /* not reachable through this UAPI: not offered */
                if (!tsm_platform_serves_scope(m->platform, info, s->name))
                        continue; /* its TSM here refuses it, whatever the policy: not offered either */
                r = guest_scope_json_new(s, number,
                                         policy_check_scope(m->policy, &c->identity, info->pci_address,
                                                            info->backend, s->name, NULL) >= 0,
                                         &o);
                if (r < 0)
                        return r;
                if (json_object_array_add(a, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
        }
        *ret = TAKE_PTR(a);
        return 0;
}

/* SECURITY: the record of an AttachDevice for a device tsmd does not know names it only when the
 * client's text is a PCI address (bounded, hex digits and separators), in the lower case sysfs
 * writes and QueryAudit's filter takes, as the admin's device calls do (admin.c): what was probed
 * is found by its address, and no other text of the client's gets into the record. */
static void set_unknown_device(VarlinkCall *call, const char *address) {
        char lower[PCI_ADDRESS_LEN_MAX + 1];
        size_t n;

        if (!address || !policy_pci_address_is_valid(address))
                return;
        n = strlen(address);
        if (n >= sizeof(lower))
                return;
        for (size_t i = 0; i <= n; i++)
                lower[i] = (char) tolower((unsigned char) address[i]);
        guest_op_set_device(call, lower, _TSM_BACKEND_TYPE_INVALID);
}

int guest_vl_attach_device(VarlinkCall *call, json_object *p, void *userdata) {
        Manager *m = userdata;
        GuestClient *c = guest_client_of(call);
        const char *address = json_get_string(p, "pciAddress"), *reason = NULL, *rule;
        _cleanup_free_ char *pci_address = NULL;
        int64_t id = guest_get_int(p, "vdeviceId", -1);
        json_object *reply = NULL, *scopes = NULL, *vfio;
        TsmDeviceInfo info;
        GuestContext *ctx;
        GuestUsage usage;
        unsigned over;
        int r;

        r = guest_lookup(call, p, &ctx, NULL);
        if (r <= 0)
                return r;
        guest_op_set_vdevice(call, (uint64_t) id);
        if (id <= 0 || id > UINT32_MAX) /* iommufd object ids start at 1 */
                return guest_reply_invalid_parameter(call, "vdeviceId");
        if (guest_find_vdevice(ctx, id)) {
                guest_op_set_refused(call);
                return varlink_call_error_kv(call, GUEST_ERROR("VDeviceExists"),
                                             "context", json_object_new_int64((int64_t) ctx->handle),
                                             "vdeviceId", json_object_new_int64(id), NULL);
        }

        r = tsm_platform_get_device(m->platform, address, &info);
        if (r < 0) {
                set_unknown_device(call, address);
                guest_op_set_refused(call);
                return varlink_call_error_kv(call, GUEST_ERROR("NoSuchDevice"),
                                             "pciAddress", json_object_new_string(address), NULL);
        }
        /* Before any refusal: the record names the device it was for. */
        guest_op_set_device(call, info.pci_address, info.backend);

        if (json_object_object_get_ex(p, "vfioFileDescriptor", &vfio) && vfio) {
                int fd = varlink_call_get_fd_parameter(call, p, "vfioFileDescriptor");

                if (fd == -EMFILE)
                        return guest_fd_lost("vfioFileDescriptor");
                if (fd < 0)
                        reason = GUEST_REASON_NO_FD;
                else
                        (void) verify_vfio_fd(fd, info.pci_address, &reason);
        } else if (!info.emulated && m->config.require_vfio_fd)
                /* SECURITY: the address is the client's word, and the device lock below is
                 * taken under it: without the proof, a VMM of a pool rule could attach a device
                 * another VMM holds, and keep it from that VMM (DeviceBusy). The emulated
                 * platform has no VFIO device to prove it with. */
                reason = GUEST_REASON_MISSING;
        if (reason) {
                guest_op_set_refused(call);
                return varlink_call_error_kv(call, GUEST_ERROR("BadFileDescriptor"),
                                             "field", json_object_new_string("vfioFileDescriptor"),
                                             "reason", json_object_new_string(reason), NULL);
        }

        r = policy_check_device_full(m->policy, &c->identity, info.pci_address, info.backend, &reason, &rule);
        guest_op_set_rule(call, m->policy, rule); /* allowed, or whose grant was missing */
        if (r < 0)
                return guest_reply_denied(call, reason);

        /* SECURITY: one physical device belongs to one guest at a time. */
        if (device_attached_anywhere(m, info.pci_address))
                return guest_reply_device_busy(call, info.pci_address);

        guest_client_usage(c, &usage);
        over = guest_usage_vdevices_over(&usage, 1);
        if (over > 0)
                return guest_reply_limit(call, "vdevices", over);

        r = build_scopes(m, c, &info, &scopes);
        if (r < 0)
                return r;

        /* Everything that can fail for want of memory comes first: once the monitor attached
         * it, a vDevice the worker cannot record would stay attached there alone. */
        pci_address = strdup(info.pci_address);
        if (!pci_address || !GREEDY_REALLOC(ctx->vdevices, ctx->allocated_vdevices, ctx->n_vdevices + 1)) {
                json_object_put(scopes);
                return -ENOMEM;
        }
        guest_op_set_forwarded(call);
        r = priv_call_attach_vdevice(m->channel, ctx->slot, ctx->id, (uint32_t) id, info.pci_address, false);
        if (r < 0) {
                json_object_put(scopes);
                if (r == -ENODEV || r == -ENXIO) /* gone since we looked */
                        return varlink_call_error_kv(call, GUEST_ERROR("NoSuchDevice"),
                                                     "pciAddress", json_object_new_string(address), NULL);
                if (r == -EPERM) /* the monitor's gate: its policy lists the device in no rule */
                        return guest_send_denied(call, GUEST_REASON_DEVICE_NOT_LISTED);
                return guest_reply_backend_error(call, r, info.pci_address);
        }
        ctx->vdevices[ctx->n_vdevices++] = (GuestVDevice){ .id = (uint32_t) id, .pci_address = TAKE_PTR(pci_address) };
        r = guest_persist_before_change(m, ctx);
        if (r < 0) {
                /* Detached again (it is not bound): the file, unchanged, says what the context
                 * has, as does the monitor. Saved first, the file could name a vDevice the
                 * monitor then refused, and the next tsmd would attach it. */
                json_object_put(scopes);
                guest_vdevice_release(m, ctx, &ctx->vdevices[--ctx->n_vdevices]);
                return guest_reply_state_not_saved(call, r);
        }

        r = guest_attach_reply_new(tsm_backend_type_to_string(info.backend), info.tsm,
                                   info.emulated ? "emulated" : tsm_uapi_version_to_string(info.uapi) ?: "none",
                                   scopes, &reply);
        if (r < 0)
                return r;
        return varlink_call_reply(call, reply);
}

int guest_vl_detach_device(VarlinkCall *call, json_object *p, void *userdata) {
        GuestContext *ctx;
        GuestVDevice *v;
        int r;

        r = guest_lookup(call, p, &ctx, &v);
        if (r <= 0)
                return r;
        if (v->changing)
                return guest_reply_device_busy(call, v->pci_address);
        guest_vdevice_release(userdata, ctx, v);
        *v = ctx->vdevices[--ctx->n_vdevices];
        /* Giving a device up must work: a save that fails is owed (guest-save.c). Until it is
         * made, a restart of tsmd would attach the vDevice again. */
        (void) guest_context_persist(userdata, ctx);
        guest_states_flush(guest_client_of(call)); /* one made before, waiting for its requests */
        return varlink_call_reply(call, NULL);
}
