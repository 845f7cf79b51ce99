/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The backend registry: every backend names the kernel's four scopes, numbers come per UAPI
 * version from the asked backend's own table only, unknown names and unavailable versions are
 * refused, and overlapping numbers of two backends can never be confused.
 *
 * Runs in: tests (no privileges needed).
 */

#include "backend.h"
#include "harness.h"
#include "inventory.h"
#include "macro.h"

static const char *const scope_names[] = {
        TSM_SCOPE_INFO,
        TSM_SCOPE_STATE_CHANGE,
        TSM_SCOPE_DEBUG_READ,
        TSM_SCOPE_DEBUG_WRITE,
};

/* Names that must never resolve: case variants, kernel enum spellings, bare numbers. */
static const char *const bogus_names[] = {
        "", "INFO", "Info", "state_change", "PCI_TSM_REQ_INFO", "debug", "0", "1", "info ",
        " info", "debug-read\n", "all",
};

static bool is_debug(const char *name) {
        return streq(name, TSM_SCOPE_DEBUG_READ) || streq(name, TSM_SCOPE_DEBUG_WRITE);
}

TEST(every_backend_has_a_valid_descriptor) {
        for (TsmBackendType t = 0; t < _TSM_BACKEND_TYPE_MAX; t++) {
                const TsmBackendDesc *b = tsm_backend_desc(t);

                ASSERT_NOT_NULL(b);
                ASSERT_EQ(b->type, t);
                ASSERT_NOT_NULL(tsm_backend_type_to_string(t));
                ASSERT_OK(tsm_backend_desc_verify(b));
        }
        ASSERT_NULL(tsm_backend_desc(_TSM_BACKEND_TYPE_INVALID));
        ASSERT_NULL(tsm_backend_desc(_TSM_BACKEND_TYPE_MAX));
}

TEST(every_backend_has_exactly_the_four_kernel_scopes) {
        for (TsmBackendType t = 0; t < _TSM_BACKEND_TYPE_MAX; t++) {
                const TsmBackendDesc *b = tsm_backend_desc(t);

                ASSERT_EQ(b->n_scopes, ELEMENTSOF(scope_names));
                for (size_t i = 0; i < ELEMENTSOF(scope_names); i++) {
                        const TsmScopeDesc *s = tsm_backend_find_scope(b, scope_names[i]);

                        ASSERT_NOT_NULL(s);
                        ASSERT_STREQ(s->name, scope_names[i]);
                        ASSERT_TRUE(s->max_request > 0);
                        ASSERT_TRUE(s->max_response > 0);
                        /* Debug scopes leave the TDISP model: never on by default. */
                        ASSERT_EQ(s->default_allowed, !is_debug(s->name));
                }
        }
}

TEST(v5_numbers_are_the_global_iommufd_values) {
        /* IOMMU_VDEVICE_TSM_REQ_PCI_{INFO,STATE_CHANGE,DEBUG_READ,DEBUG_WRITE} = 0..3 */
        for (TsmBackendType t = 0; t < _TSM_BACKEND_TYPE_MAX; t++)
                for (size_t i = 0; i < ELEMENTSOF(scope_names); i++) {
                        uint32_t n = UINT32_MAX;

                        ASSERT_OK(tsm_backend_scope_number(tsm_backend_desc(t), scope_names[i],
                                                           TSM_UAPI_V5, &n));
                        ASSERT_EQ(n, i);
                }
}

TEST(v4_numbers_per_backend) {
        for (TsmBackendType t = 0; t < _TSM_BACKEND_TYPE_MAX; t++) {
                const TsmBackendDesc *b = tsm_backend_desc(t);
                uint32_t n = UINT32_MAX;

                ASSERT_OK(tsm_backend_scope_number(b, TSM_SCOPE_INFO, TSM_UAPI_V4, &n));
                ASSERT_EQ(n, 0);
                ASSERT_OK(tsm_backend_scope_number(b, TSM_SCOPE_STATE_CHANGE, TSM_UAPI_V4, &n));
                ASSERT_EQ(n, 1);

                if (t == TSM_BACKEND_EMULATED) {
                        /* No kernel in the way: the software model offers them in both. */
                        ASSERT_OK(tsm_backend_scope_number(b, TSM_SCOPE_DEBUG_READ, TSM_UAPI_V4, &n));
                        ASSERT_EQ(n, 2);
                        ASSERT_OK(tsm_backend_scope_number(b, TSM_SCOPE_DEBUG_WRITE, TSM_UAPI_V4, &n));
                        ASSERT_EQ(n, 3);
                } else {
                        /* v4-era pci_tsm_guest_req() refused anything above STATE_CHANGE. */
                        n = 12345;
                        ASSERT_ERRNO(tsm_backend_scope_number(b, TSM_SCOPE_DEBUG_READ,
                                                              TSM_UAPI_V4, &n),
                                     EOPNOTSUPP);
                        ASSERT_ERRNO(tsm_backend_scope_number(b, TSM_SCOPE_DEBUG_WRITE,
                                                              TSM_UAPI_V4, &n),
                                     EOPNOTSUPP);
                        /* Outputs are written only on success. */
                        ASSERT_EQ(n, 12345);
                }
        }
}

TEST(unknown_scope_names_are_refused) {
        for (TsmBackendType t = 0; t < _TSM_BACKEND_TYPE_MAX; t++) {
                const TsmBackendDesc *b = tsm_backend_desc(t);

                for (size_t i = 0; i < ELEMENTSOF(bogus_names); i++)
                        for (TsmUapiVersion v = 0; v < _TSM_UAPI_VERSION_MAX; v++) {
                                uint32_t n = 777;

                                ASSERT_NULL(tsm_backend_find_scope(b, bogus_names[i]));
                                ASSERT_ERRNO(tsm_backend_scope_number(b, bogus_names[i], v, &n), ENOENT);
                                ASSERT_EQ(n, 777);
                        }
        }
}

TEST(invalid_arguments) {
        const TsmBackendDesc *b = tsm_backend_desc(TSM_BACKEND_SEV_TIO);
        uint32_t n;

        ASSERT_ERRNO(tsm_backend_scope_number(NULL, TSM_SCOPE_INFO, TSM_UAPI_V5, &n), EINVAL);
        ASSERT_ERRNO(tsm_backend_scope_number(b, NULL, TSM_UAPI_V5, &n), EINVAL);
        ASSERT_ERRNO(tsm_backend_scope_number(b, TSM_SCOPE_INFO, _TSM_UAPI_VERSION_MAX, &n), EINVAL);
        ASSERT_ERRNO(tsm_backend_scope_number(b, TSM_SCOPE_INFO, _TSM_UAPI_VERSION_INVALID, &n),
                     EINVAL);
        ASSERT_NULL(tsm_backend_find_scope(NULL, TSM_SCOPE_INFO));
        ASSERT_NULL(tsm_backend_find_scope(b, NULL));
}

TEST(lookup_never_leaves_the_asked_backends_table) {
        /* For every pair of backends, every scope name and version: the descriptor and the
         * number come from A's own array, never from B's (even where the values coincide). */
        for (TsmBackendType a = 0; a < _TSM_BACKEND_TYPE_MAX; a++)
                for (TsmBackendType o = 0; o < _TSM_BACKEND_TYPE_MAX; o++) {
                        const TsmBackendDesc *A = tsm_backend_desc(a), *B = tsm_backend_desc(o);

                        if (a == o)
                                continue;
                        ASSERT_TRUE(A->scopes != B->scopes);

                        for (size_t i = 0; i < ELEMENTSOF(scope_names); i++) {
                                const TsmScopeDesc *s = tsm_backend_find_scope(A, scope_names[i]);

                                ASSERT_TRUE(s >= A->scopes && s < A->scopes + A->n_scopes);
                                ASSERT_FALSE(s >= B->scopes && s < B->scopes + B->n_scopes);

                                for (TsmUapiVersion v = 0; v < _TSM_UAPI_VERSION_MAX; v++) {
                                        uint32_t n;
                                        int r = tsm_backend_scope_number(A, scope_names[i], v, &n);

                                        if (s->number[v] < 0)
                                                ASSERT_ERRNO(r, EOPNOTSUPP);
                                        else {
                                                ASSERT_OK(r);
                                                ASSERT_EQ(n, s->number[v]);
                                        }
                                }
                        }
                }
}

/*
 * Two backends whose v4 numbers overlap with different meanings: A's debug-read is 2, and 2
 * is B's info; B's debug-read is 0, which is A's info. This is exactly the situation the v4
 * review warned about. The test proves the registry's lookup is bound to the table it is
 * given, so a request for a device behind A can never be encoded with B's number.
 */
#define SCOPE(n, v4, v5, allowed)                                                                  \
        {                                                                                          \
                .name = (n), .number = { [TSM_UAPI_V4] = (v4), [TSM_UAPI_V5] = (v5) },             \
                .max_request = 1, .max_response = 1, .default_allowed = (allowed),                 \
                .description = "",                                                                 \
        }

static const TsmScopeDesc scopes_a[] = {
        SCOPE(TSM_SCOPE_INFO, 0, 0, true),
        SCOPE(TSM_SCOPE_STATE_CHANGE, 1, 1, true),
        SCOPE(TSM_SCOPE_DEBUG_READ, 2, 2, false),
        SCOPE(TSM_SCOPE_DEBUG_WRITE, 3, 3, false),
};
static const TsmScopeDesc scopes_b[] = {
        SCOPE(TSM_SCOPE_INFO, 2, 0, true),
        SCOPE(TSM_SCOPE_STATE_CHANGE, 3, 1, true),
        SCOPE(TSM_SCOPE_DEBUG_READ, 0, 2, false),
        SCOPE(TSM_SCOPE_DEBUG_WRITE, 1, 3, false),
};
static const TsmBackendDesc backend_a = {
        .type = TSM_BACKEND_SEV_TIO, .description = "A", .scopes = scopes_a, .n_scopes = 4,
};
static const TsmBackendDesc backend_b = {
        .type = TSM_BACKEND_TDX_CONNECT, .description = "B", .scopes = scopes_b, .n_scopes = 4,
};

TEST(overlapping_v4_numbers_never_cross_backends) {
        const TsmBackendDesc *pair[2][2] = { { &backend_a, &backend_b }, { &backend_b, &backend_a } };
        uint32_t n;

        ASSERT_OK(tsm_backend_desc_verify(&backend_a));
        ASSERT_OK(tsm_backend_desc_verify(&backend_b));

        /* The headline case. */
        ASSERT_OK(tsm_backend_scope_number(&backend_a, TSM_SCOPE_DEBUG_READ, TSM_UAPI_V4, &n));
        ASSERT_EQ(n, 2);
        ASSERT_OK(tsm_backend_scope_number(&backend_b, TSM_SCOPE_DEBUG_READ, TSM_UAPI_V4, &n));
        ASSERT_EQ(n, 0);

        for (size_t p = 0; p < 2; p++) {
                const TsmBackendDesc *self = pair[p][0], *other = pair[p][1];

                for (size_t i = 0; i < ELEMENTSOF(scope_names); i++) {
                        const TsmScopeDesc *mine = tsm_backend_find_scope(self, scope_names[i]);
                        const TsmScopeDesc *theirs = tsm_backend_find_scope(other, scope_names[i]);

                        ASSERT_OK(tsm_backend_scope_number(self, scope_names[i], TSM_UAPI_V4, &n));
                        ASSERT_EQ(n, mine->number[TSM_UAPI_V4]);
                        ASSERT_NE(n, theirs->number[TSM_UAPI_V4]);

                        /* And the number this backend produced means this scope here, but a
                         * different scope on the other backend: reusing it would be wrong. */
                        for (size_t j = 0; j < other->n_scopes; j++)
                                if (other->scopes[j].number[TSM_UAPI_V4] == (int64_t) n)
                                        ASSERT_FALSE(streq(other->scopes[j].name, scope_names[i]));
                }
        }
}

static void put_tsm(Inventory *inv, const char *name, TsmBackendType type) {
        InventoryTsm t = { .name = (char *) name, .type = type };

        ASSERT_OK(inventory_put_tsm(inv, &t));
}

static void put_device(Inventory *inv, const char *address, const char *tsm) {
        InventoryDevice d = {
                .address = (char *) address,
                .connected_tsm = (char *) tsm,
                .tdisp_capable = true,
                .authenticated = tsm != NULL,
        };

        ASSERT_OK(inventory_put_device(inv, &d));
}

static int number_for(Inventory *inv, const char *address, const char *scope, TsmUapiVersion v) {
        uint32_t n;

        return inventory_device_scope_number(inv, address, scope, v, &n);
}

TEST(device_behind_a_tsm_gets_that_tsms_numbers) {
        /* End to end through the inventory with the real registry: devices connected to a
         * SEV-TIO and a TDX Connect TSM; each lookup walks device -> TSM -> backend table. */
        Inventory *inv;
        uint32_t n;

        ASSERT_OK(inventory_new(&inv));
        put_tsm(inv, "tsm0", TSM_BACKEND_SEV_TIO);
        put_tsm(inv, "tsm1", TSM_BACKEND_TDX_CONNECT);
        put_tsm(inv, "tsm2", _TSM_BACKEND_TYPE_INVALID);
        put_device(inv, "0000:01:00.0", "tsm0");
        put_device(inv, "0000:02:00.0", "tsm1");
        put_device(inv, "0000:03:00.0", NULL);
        put_device(inv, "0000:04:00.0", "tsm2"); /* TSM of unknown backend */
        put_device(inv, "0000:05:00.0", "tsm9"); /* TSM not in the inventory */

        for (size_t i = 0; i < ELEMENTSOF(scope_names); i++)
                for (TsmUapiVersion v = 0; v < _TSM_UAPI_VERSION_MAX; v++) {
                        uint32_t want;
                        int r, k;

                        r = inventory_device_scope_number(inv, "0000:01:00.0", scope_names[i], v, &n);
                        k = tsm_backend_scope_number(&tsm_backend_sev_tio, scope_names[i], v, &want);
                        ASSERT_EQ(r, k);
                        if (r >= 0)
                                ASSERT_EQ(n, want);

                        r = inventory_device_scope_number(inv, "0000:02:00.0", scope_names[i], v, &n);
                        k = tsm_backend_scope_number(&tsm_backend_tdx_connect, scope_names[i], v, &want);
                        ASSERT_EQ(r, k);
                        if (r >= 0)
                                ASSERT_EQ(n, want);
                }

        ASSERT_ERRNO(number_for(inv, "0000:09:00.0", TSM_SCOPE_INFO, TSM_UAPI_V5), ENODEV);
        ASSERT_ERRNO(number_for(inv, "0000:03:00.0", TSM_SCOPE_INFO, TSM_UAPI_V5), ENOTCONN);
        ASSERT_ERRNO(number_for(inv, "0000:04:00.0", TSM_SCOPE_INFO, TSM_UAPI_V5), ENXIO);
        ASSERT_ERRNO(number_for(inv, "0000:05:00.0", TSM_SCOPE_INFO, TSM_UAPI_V5), ENXIO);
        ASSERT_ERRNO(number_for(inv, "0000:01:00.0", "INFO", TSM_UAPI_V5), ENOENT);
        ASSERT_ERRNO(number_for(inv, "0000:01:00.0", TSM_SCOPE_DEBUG_READ, TSM_UAPI_V4), EOPNOTSUPP);

        inventory_free(inv);
}

#define FROM_PARENT(subsystem, driver, sysname) tsm_backend_type_from_parent(subsystem, driver, sysname)

TEST(backend_recognition_from_parent) {
        ASSERT_EQ(FROM_PARENT("pci", "ccp", "0000:00:18.2"), TSM_BACKEND_SEV_TIO);
        ASSERT_EQ(FROM_PARENT("faux", "faux_driver", "tdx_host"), TSM_BACKEND_TDX_CONNECT);
        ASSERT_EQ(FROM_PARENT("faux", "faux_driver", "devsec_link_tsm"), TSM_BACKEND_DEVSEC_SAMPLE);
        ASSERT_EQ(FROM_PARENT("faux", "faux_driver", "devsec_tsm"), TSM_BACKEND_DEVSEC_SAMPLE);
        ASSERT_EQ(FROM_PARENT("arm_smccc", "arm_cca_host", "arm-rmi-dev"), TSM_BACKEND_ARM_CCA);
        ASSERT_EQ(FROM_PARENT("auxiliary", "arm_cca_host", "arm_cca_host.arm-rmi-dev.0"),
                  TSM_BACKEND_ARM_CCA);

        /* Same sysname on another bus, or the right driver on the wrong bus: not recognised. */
        ASSERT_EQ(FROM_PARENT("platform", NULL, "tdx_host"), _TSM_BACKEND_TYPE_INVALID);
        ASSERT_EQ(FROM_PARENT("platform", "ccp", "ccp"), _TSM_BACKEND_TYPE_INVALID);
        ASSERT_EQ(FROM_PARENT("faux", "faux_driver", "something_else"), _TSM_BACKEND_TYPE_INVALID);
        ASSERT_EQ(FROM_PARENT(NULL, NULL, NULL), _TSM_BACKEND_TYPE_INVALID);

        ASSERT_EQ(tsm_backend_type_from_parent_driver("ccp"), TSM_BACKEND_SEV_TIO);
        ASSERT_EQ(tsm_backend_type_from_parent_driver("arm_cca_host"), TSM_BACKEND_ARM_CCA);
        /* Shared by several backends: refusing to guess. */
        ASSERT_EQ(tsm_backend_type_from_parent_driver("faux_driver"), _TSM_BACKEND_TYPE_INVALID);
        ASSERT_EQ(tsm_backend_type_from_parent_driver(NULL), _TSM_BACKEND_TYPE_INVALID);
        /* The emulated platform is never found in sysfs. */
        ASSERT_EQ(tsm_backend_desc(TSM_BACKEND_EMULATED)->n_parent_matches, 0);
}

TEST(verify_rejects_bad_tables) {
        TsmScopeDesc s[2] = {
                SCOPE(TSM_SCOPE_INFO, 0, 0, true),
                SCOPE(TSM_SCOPE_DEBUG_READ, TSM_SCOPE_NUMBER_NONE, 2, false),
        };
        TsmBackendDesc b = {
                .type = TSM_BACKEND_EMULATED, .description = "t", .scopes = s, .n_scopes = 2,
        };

        ASSERT_OK(tsm_backend_desc_verify(&b));

        s[1].default_allowed = true; /* debug on by default */
        ASSERT_ERRNO(tsm_backend_desc_verify(&b), EINVAL);
        s[1].default_allowed = false;

        s[1].number[TSM_UAPI_V5] = 0; /* two names for one number */
        ASSERT_ERRNO(tsm_backend_desc_verify(&b), EINVAL);
        s[1].number[TSM_UAPI_V5] = (int64_t) UINT32_MAX + 1; /* does not fit the u32 field */
        ASSERT_ERRNO(tsm_backend_desc_verify(&b), EINVAL);
        s[1].number[TSM_UAPI_V5] = 2;

        s[1].name = TSM_SCOPE_INFO; /* duplicate name */
        ASSERT_ERRNO(tsm_backend_desc_verify(&b), EINVAL);
        s[1].name = TSM_SCOPE_DEBUG_READ;

        s[0].max_response = 0;
        ASSERT_ERRNO(tsm_backend_desc_verify(&b), EINVAL);
}

TEST_MAIN();
