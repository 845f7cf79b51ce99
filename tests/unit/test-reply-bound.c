/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The bounds io.tsmd.Guest's methods that act declare to the server (daemon/guest-reply-bound.c):
 * AttachDevice's is its longest reply, built by the handler's own code for every backend, UAPI
 * and TSM name; every answer a method that acts can give, replies and errors at their longest,
 * fits its method's bound; OpenContext and ReclaimContext need an fd, AdoptContext none; the
 * methods that only read have none; and README.md states the bounds there are.
 */

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest-internal.h"
#include "guest-limits.h"
#include "harness.h"
#include "iommufd-transport.h"
#include "policy.h"
#include "tsm-types.h"
#include "varlink-errors.h"
#include "varlink-idl.h"
#include "varlink-message.h"
#include "varlink-service.h"

static const char *const acting[] = {
        "OpenContext", "AdoptContext", "ReclaimContext", "CloseContext", "AttachDevice",
        "DetachDevice", "Bind", "Unbind", "GuestRequest",
};

static size_t bound_of(const char *method, unsigned *ret_fds) {
        char name[128];
        size_t size = 0;
        unsigned fds;

        snprintf(name, sizeof(name), "io.tsmd.Guest.%s", method);
        ASSERT_OK(guest_reply_bound(name, &size, &fds));
        if (ret_fds)
                *ret_fds = fds;
        return size;
}

/* As the server measures a message: the plain JSON and its NUL. */
static size_t measure(json_object *m) {
        size_t len;

        ASSERT_NOT_NULL(
                json_object_to_json_string_length(m, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len));
        json_object_put(m);
        return len + 1;
}

static size_t reply_size(json_object *params) {
        json_object *m;

        ASSERT_OK(varlink_message_new_reply(params, false, &m));
        return measure(m);
}

static size_t error_size(const char *error, const char *k1, json_object *v1, const char *k2, json_object *v2) {
        json_object *p = json_object_new_object(), *m;

        ASSERT_NOT_NULL(p);
        if (k1)
                ASSERT_OK(json_object_add(p, k1, v1));
        if (k2)
                ASSERT_OK(json_object_add(p, k2, v2));
        ASSERT_OK(varlink_message_new_error(error, p, &m));
        return measure(m);
}

static size_t attach_reply_size(TsmBackendType b, const char *tsm, const char *uapi, int64_t number, bool allowed) {
        const TsmBackendDesc *d = tsm_backend_desc(b);
        json_object *scopes = json_object_new_array(), *reply;

        ASSERT_NOT_NULL(d);
        ASSERT_NOT_NULL(scopes);
        for (size_t i = 0; i < d->n_scopes; i++) {
                json_object *o;

                ASSERT_OK(guest_scope_json_new(&d->scopes[i], number, allowed, &o));
                ASSERT_OK(json_object_array_add(scopes, o));
        }
        ASSERT_OK(guest_attach_reply_new(tsm_backend_type_to_string(b), tsm, uapi, scopes, &reply));
        return reply_size(reply);
}

TEST(attach_device_bound_is_its_longest_reply) {
        const char *uapis[] = { "emulated", "none", tsm_uapi_version_to_string(TSM_UAPI_V4),
                                tsm_uapi_version_to_string(TSM_UAPI_V5) };
        size_t bound = bound_of("AttachDevice", NULL), longest = 0;
        char tsm[NAME_MAX + 1];

        memset(tsm, 't', NAME_MAX);
        tsm[NAME_MAX] = 0;
        for (TsmBackendType b = 0; b < _TSM_BACKEND_TYPE_MAX; b++)
                for (size_t u = 0; u < ELEMENTSOF(uapis); u++) {
                        ASSERT_LE(attach_reply_size(b, "tsm0", uapis[u], UINT32_MAX, true), bound);
                        ASSERT_LE(attach_reply_size(b, EMULATED_TSM_NAME, uapis[u], 0, false), bound);
                        /* A TSM of the longest name sysfs has, every scope numbered at the
                         * longest: the reply the bound is. */
                        longest = MAX(longest, attach_reply_size(b, tsm, uapis[u], INT64_MIN, false));
                }
        ASSERT_EQ(longest, bound);
        fprintf(stderr, "# AttachDevice answers at most %zu bytes\n", bound);
}

TEST(context_replies_fit) {
        char token[RECLAIM_TOKEN_LEN + 1];
        json_object *reply;
        unsigned fds;

        memset(token, 'f', RECLAIM_TOKEN_LEN);
        token[RECLAIM_TOKEN_LEN] = 0;
        ASSERT_OK(guest_context_reply_new(INT64_MAX, VARLINK_FDS_PER_MESSAGE_MAX - 1, token, &reply));
        ASSERT_LE(reply_size(reply), bound_of("OpenContext", &fds));
        ASSERT_EQ(fds, 1u);
        ASSERT_OK(guest_context_reply_new(INT64_MAX, -1, token, &reply));
        ASSERT_LE(reply_size(reply), bound_of("AdoptContext", &fds));
        ASSERT_EQ(fds, 0u);
        ASSERT_OK(guest_context_reply_new(INT64_MAX, VARLINK_FDS_PER_MESSAGE_MAX - 1, token, &reply));
        ASSERT_LE(reply_size(reply), bound_of("ReclaimContext", &fds));
        ASSERT_EQ(fds, 1u);
        for (size_t i = 0; i < ELEMENTSOF(acting); i++)
                if (!streq(acting[i], "OpenContext") && !streq(acting[i], "ReclaimContext")) {
                        (void) bound_of(acting[i], &fds);
                        ASSERT_EQ(fds, 0u);
                }
}

/* The errors, each at its longest as the handlers make them, fit the bound of every method that
 * acts: the smallest of those bounds is checked. */
TEST(errors_fit_every_bound) {
        size_t smallest = SIZE_MAX;
        char reason[GUEST_RECLAIM_REASON_MAX + 1], address[] = "fffffff:ff:1f.7";
        json_object *reply;

        for (size_t i = 0; i < ELEMENTSOF(acting); i++)
                smallest = MIN(smallest, bound_of(acting[i], NULL));
        fprintf(stderr, "# the smallest bound of a Guest method that acts: %zu bytes\n", smallest);
        ASSERT_EQ(strlen(address), POLICY_PCI_ADDRESS_MAX);
        ASSERT_TRUE(policy_pci_address_is_valid(address));

        for (int e = 1; e < 4096; e++) {
                ASSERT_LE(error_size(GUEST_ERROR("BackendError"), "name",
                                     json_object_new_string(iommufd_tsm_error_name(-e)), "errno", json_object_new_int(e)),
                          smallest);
                ASSERT_LE(error_size(VARLINK_ERROR_SYSTEM, "errno", json_object_new_int(e), "errnoName",
                                     json_object_new_string(errno_to_name(e) ?: "")),
                          smallest);
        }
        /* ReclaimRefused naming the device it refuses, as guest-restore.c writes it, cut. */
        (void) snprintf(reason, sizeof(reason), "%s (vDevice %" PRIu32 "): %0*d", address, UINT32_MAX,
                        (int) policy_reason_max_length(), 0);
        ASSERT_LE(error_size(GUEST_ERROR("ReclaimRefused"), "reason", json_object_new_string(reason), NULL, NULL),
                  smallest);
        ASSERT_LE(error_size(GUEST_ERROR("Denied"), "reason", json_object_new_string(GUEST_REASON_DEVICE_NOT_LISTED),
                             NULL, NULL),
                  smallest);
        ASSERT_LE(error_size(GUEST_ERROR("LimitReached"), "limit", json_object_new_string("contexts-total"), "max",
                             json_object_new_int64(UINT_MAX)),
                  smallest);
        ASSERT_LE(error_size(GUEST_ERROR("BadFileDescriptor"), "field", json_object_new_string("vfioFileDescriptor"),
                             "reason", json_object_new_string(GUEST_REASON_OTHER_DEVICE)),
                  smallest);
        ASSERT_LE(error_size(GUEST_ERROR("NoSuchVDevice"), "context", json_object_new_int64(INT64_MIN), "vdeviceId",
                             json_object_new_int64(INT64_MIN)),
                  smallest);
        for (const char *const *s = guest_tdi_states(); *s; s++)
                ASSERT_LE(error_size(GUEST_ERROR("InvalidState"), "state", json_object_new_string(*s), NULL, NULL),
                          smallest);
        ASSERT_LE(error_size(GUEST_ERROR("DeviceBusy"), "pciAddress", json_object_new_string(address), NULL, NULL),
                  smallest);
        ASSERT_LE(error_size(GUEST_ERROR("AuditFailed"), "errno", json_object_new_int(INT_MAX), NULL, NULL), smallest);

        /* And Bind's and Unbind's replies. */
        for (const char *const *s = guest_tdi_states(); *s; s++) {
                reply = json_object_new_object();
                ASSERT_OK(json_object_add(reply, "state", json_object_new_string(*s)));
                ASSERT_LE(reply_size(reply), bound_of("Bind", NULL));
        }
}

TEST(reads_have_no_bound) {
        size_t size;
        unsigned fds;

        ASSERT_ERRNO(guest_reply_bound("io.tsmd.Guest.GetDeviceState", &size, &fds), ENOENT);
        ASSERT_ERRNO(guest_reply_bound("io.tsmd.Guest.WatchEvents", &size, &fds), ENOENT);
        ASSERT_ERRNO(guest_reply_bound("io.tsmd.Guest.DescribeConnection", &size, &fds), ENOENT);
        ASSERT_ERRNO(guest_reply_bound("io.tsmd.Admin.ListDevices", &size, &fds), ENOENT);
}

/* The JSON values of m (containers and scalars, as Varlink counts them), which it releases. */
static size_t count_values(json_object *m) {
        size_t n = 1;

        if (json_object_is_type(m, json_type_array))
                for (size_t i = 0; i < json_object_array_length(m); i++)
                        n += count_values(json_object_get(json_object_array_get_idx(m, i)));
        else if (json_object_is_type(m, json_type_object)) {
                json_object_object_foreach(m, k, v) {
                        (void) k;
                        n += count_values(json_object_get(v));
                }
        }
        json_object_put(m);
        return n;
}

static size_t reply_values(json_object *params) {
        json_object *m;

        ASSERT_OK(varlink_message_new_reply(params, false, &m));
        return count_values(m);
}

/* The size of DescribeConnection's reply for n_contexts contexts of n_vdevices vDevices each, all
 * at their longest: the largest handle, vDevice id, PCI address and nonce, every flag false (or,
 * with values, its count of values instead). */
static size_t describe_size_full(size_t n_contexts, size_t n_vdevices, bool values) {
        GuestVDevice *v = new0(GuestVDevice, MAX(n_vdevices, (size_t) 1));
        GuestContext *ctx = new0(GuestContext, MAX(n_contexts, (size_t) 1));
        GuestContext **ctxs = new0(GuestContext *, MAX(n_contexts, (size_t) 1));
        char address[POLICY_PCI_ADDRESS_MAX + 1] = "fffffff:ff:1f.7";
        json_object *nonce = json_object_new_int64(INT64_MIN), *reply;
        GuestClient c = {};
        size_t size;

        ASSERT_TRUE(v && ctx && ctxs && nonce);
        ASSERT_EQ(strlen(address), POLICY_PCI_ADDRESS_MAX);
        for (size_t j = 0; j < n_vdevices; j++)
                v[j] = (GuestVDevice){ .id = UINT32_MAX, .pci_address = address };
        for (size_t i = 0; i < n_contexts; i++) {
                ctx[i] = (GuestContext){ .handle = INT64_MAX, .vdevices = v, .n_vdevices = n_vdevices };
                ctxs[i] = &ctx[i];
        }
        c.contexts = ctxs;
        c.n_contexts = n_contexts;
        ASSERT_OK(guest_describe_reply_new(&c, nonce, &reply));
        size = values ? reply_values(reply) : reply_size(reply);
        json_object_put(nonce);
        free(ctxs);
        free(ctx);
        free(v);
        return size;
}

static size_t describe_size(size_t n_contexts, size_t n_vdevices) {
        return describe_size_full(n_contexts, n_vdevices, false);
}

static size_t describe_values(size_t n_contexts, size_t n_vdevices) {
        return describe_size_full(n_contexts, n_vdevices, true);
}

/* SECURITY: libtsm takes a DescribeConnection reply no larger than GUEST_DESCRIBE_REPLY_MAX, and
 * one larger would cost the VMM its connection (-EPROTO) and with it the guest's devices: each
 * context's and vDevice's entry, and the envelope, fit what the bound allows for them. */
TEST(describe_reply_fits_what_libtsm_takes) {
        size_t envelope = describe_size(0, 0), one_context = describe_size(1, 0) - envelope,
               one_vdevice = describe_size(1, 1) - envelope - one_context;

        ASSERT_LE(envelope, GUEST_DESCRIBE_ENVELOPE_BYTES);
        /* A comma between entries counts with them. */
        ASSERT_LE(describe_size(2, 0) - envelope, 2 * (size_t) GUEST_DESCRIBE_CONTEXT_BYTES);
        ASSERT_LE(one_context + 1, GUEST_DESCRIBE_CONTEXT_BYTES);
        ASSERT_LE(one_vdevice + 1, GUEST_DESCRIBE_VDEVICE_BYTES);
        ASSERT_LE(describe_size(3, 5), envelope + 3 * (size_t) GUEST_DESCRIBE_CONTEXT_BYTES +
                                                15 * (size_t) GUEST_DESCRIBE_VDEVICE_BYTES);
}

/* SECURITY: nor one of more values than GUEST_DESCRIBE_REPLY_VALUES_MAX (which bounds what it
 * costs the VMM in json-c objects): each entry's and the envelope's values fit what the bound
 * allows for them, and room is left for a newer tsmd's fields. */
TEST(describe_reply_values_fit_what_libtsm_takes) {
        size_t envelope = describe_values(0, 0), one_context = describe_values(1, 0) - envelope,
               one_vdevice = describe_values(1, 1) - envelope - one_context;

        fprintf(stderr, "# DescribeConnection: %zu values for the envelope, %zu a context, %zu a vDevice\n",
                envelope, one_context, one_vdevice);
        ASSERT_LE(envelope + 1, GUEST_DESCRIBE_ENVELOPE_VALUES);
        ASSERT_LE(one_context + 1, GUEST_DESCRIBE_CONTEXT_VALUES);
        ASSERT_LE(one_vdevice + 1, GUEST_DESCRIBE_VDEVICE_VALUES);
        ASSERT_LE(describe_values(3, 5), envelope + 3 * GUEST_DESCRIBE_CONTEXT_VALUES + 15 * GUEST_DESCRIBE_VDEVICE_VALUES);
}

/* README.md's text, its white space runs made single spaces (it wraps anywhere). */
static char *readme_flat(void) {
        _cleanup_free_ char *text = NULL;
        FILE *f = fopen(README_PATH, "re");
        size_t n;
        char *out, *o;

        ASSERT_NOT_NULL(f);
        text = malloc(1 << 20);
        ASSERT_NOT_NULL(text);
        n = fread(text, 1, (1 << 20) - 1, f);
        ASSERT_EQ(ferror(f), 0);
        fclose(f);
        text[n] = 0;
        out = o = malloc(n + 1);
        ASSERT_NOT_NULL(out);
        for (const char *c = text; *c; c++) {
                bool space = strchr(" \t\n", *c);

                if (!space || (o > out && o[-1] != ' '))
                        *o++ = space ? ' ' : *c;
        }
        *o = 0;
        return out;
}

/* The number just before p in text (which starts at start), or -1. */
static long number_before(const char *start, const char *p) {
        while (p > start && p[-1] == ' ')
                p--;
        while (p > start && p[-1] >= '0' && p[-1] <= '9')
                p--;
        return *p >= '0' && *p <= '9' ? strtol(p, NULL, 10) : -1;
}

/* README.md's Limits section states the bounds an administrator sizes MaxMessageSize= by:
 * AttachDevice's, and that of the other io.tsmd.Guest calls that act, which share the one the
 * errors set. They are the bounds computed here, or this fails (they drift as scopes, reasons
 * and errors are added). */
TEST(readme_states_the_bounds) {
        _cleanup_free_ char *readme = readme_flat();
        const char *attach = "bytes for `AttachDevice`, ", *others = " for the other `io.tsmd.Guest` calls", *p, *q;
        size_t other_bound = 0;
        long a, o;

        p = strstr(readme, attach);
        if (!p)
                TEST_FAIL("README.md does not say \"N %s\"", attach);
        a = number_before(readme, p);
        q = strstr(p, others);
        if (!q)
                TEST_FAIL("README.md does not say \"N%s\" after AttachDevice's bound", others);
        o = number_before(p, q);
        for (size_t i = 0; i < ELEMENTSOF(acting); i++)
                if (!streq(acting[i], "AttachDevice")) {
                        size_t b = bound_of(acting[i], NULL);

                        /* "323 for the other calls": one number holds for all of them. */
                        if (other_bound > 0 && b != other_bound)
                                TEST_FAIL("%s's bound is %zu, another's %zu: README.md's one number for the others "
                                          "no longer holds",
                                          acting[i], b, other_bound);
                        other_bound = b;
                }
        if (a != (long) bound_of("AttachDevice", NULL) || o != (long) other_bound)
                TEST_FAIL("README.md says %ld bytes for AttachDevice and %ld for the other Guest calls; the bounds are "
                          "%zu and %zu",
                          a, o, bound_of("AttachDevice", NULL), other_bound);
}

/* The refusal the server sends is the one io.tsmd declares. */
TEST(reply_may_not_fit_is_declared) {
        _cleanup_(varlink_interface_freep) VarlinkInterface *i = NULL;
        _cleanup_(json_object_putp) json_object *p = json_object_new_object();
        _cleanup_free_ char *bad = NULL;
        const VarlinkSymbol *e;

        ASSERT_OK(varlink_interface_parse(varlink_builtin_idl_find("io.tsmd"), &i, NULL, NULL));
        e = varlink_interface_find_error(i, strrchr(VARLINK_ERROR_REPLY_MAY_NOT_FIT, '.') + 1);
        ASSERT_NOT_NULL(e);
        ASSERT_OK(json_object_add(p, "limit", json_object_new_string("MaxMessageSize")));
        ASSERT_OK(json_object_add(p, "needed", json_object_new_int64(1122)));
        ASSERT_OK(json_object_add(p, "max", json_object_new_int64(512)));
        ASSERT_OK(varlink_error_validate(e, p, &bad));
}

TEST_MAIN();
