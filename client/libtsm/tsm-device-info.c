/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * TsmDeviceInfo and TsmScope: what io.tsmd.Guest.AttachDevice says about a device (backend,
 * TSM, UAPI, named request scopes), copied out of the reply so it outlives it. Runs in: the
 * VMM process.
 */

#include "libtsm-internal.h"

/* tsm_device_info_free(): see tsm.h. */
_public_ TsmDeviceInfo *tsm_device_info_free(TsmDeviceInfo *info) {
        if (!info)
                return NULL;
        for (size_t i = 0; i < info->n_scopes; i++) {
                free(info->scopes[i].name);
                free(info->scopes[i].description);
        }
        free(info->scopes);
        free(info->backend);
        free(info->tsm);
        free(info->uapi);
        return mfree(info);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(TsmDeviceInfo *, tsm_device_info_free);

static int dup_string(json_object *o, const char *key, char **ret) {
        const char *s;
        int r;

        r = ltsm_reply_get_string(o, key, &s);
        if (r < 0)
                return r;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static int scope_from_json(json_object *o, TsmScope *s) {
        int64_t number, max_request, max_response;
        int r;

        r = ltsm_reply_get_int(o, "number", 0, UINT32_MAX, &number);
        if (r >= 0)
                r = ltsm_reply_get_int(o, "maxRequestSize", 0, INT64_MAX, &max_request);
        if (r >= 0)
                r = ltsm_reply_get_int(o, "maxResponseSize", 0, INT64_MAX, &max_response);
        if (r >= 0)
                r = ltsm_reply_get_bool(o, "allowed", &s->allowed);
        if (r >= 0)
                r = dup_string(o, "name", &s->name);
        if (r >= 0)
                r = dup_string(o, "description", &s->description);
        if (r < 0)
                return r;
        s->number = (uint32_t) number;
        s->max_request_size = (uint64_t) max_request;
        s->max_response_size = (uint64_t) max_response;
        return 0;
}

int ltsm_device_info_from_reply(json_object *reply, TsmDeviceInfo **ret) {
        _cleanup_(tsm_device_info_freep) TsmDeviceInfo *info = NULL;
        json_object *scopes;
        size_t n;
        int r;

        info = new0(TsmDeviceInfo, 1);
        if (!info)
                return -ENOMEM;
        r = dup_string(reply, "backend", &info->backend);
        if (r >= 0)
                r = dup_string(reply, "tsm", &info->tsm);
        if (r >= 0)
                r = dup_string(reply, "uapi", &info->uapi);
        if (r < 0)
                return r;

        if (!json_object_object_get_ex(reply, "scopes", &scopes) || !json_object_is_type(scopes, json_type_array))
                return -EBADMSG;
        n = json_object_array_length(scopes);
        info->scopes = new0(TsmScope, n);
        if (!info->scopes)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                /* Counted as it goes, so the cleanup frees what was filled in. */
                info->n_scopes = i + 1;
                r = scope_from_json(json_object_array_get_idx(scopes, i), &info->scopes[i]);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(info);
        return 0;
}

/* tsm_device_info_get_backend(): see tsm.h. */
_public_ const char *tsm_device_info_get_backend(const TsmDeviceInfo *info) {
        return info ? info->backend : NULL;
}

/* tsm_device_info_get_tsm(): see tsm.h. */
_public_ const char *tsm_device_info_get_tsm(const TsmDeviceInfo *info) {
        return info ? info->tsm : NULL;
}

/* tsm_device_info_get_uapi(): see tsm.h. */
_public_ const char *tsm_device_info_get_uapi(const TsmDeviceInfo *info) {
        return info ? info->uapi : NULL;
}

/* tsm_device_info_get_n_scopes(): see tsm.h. */
_public_ size_t tsm_device_info_get_n_scopes(const TsmDeviceInfo *info) {
        return info ? info->n_scopes : 0;
}

/* tsm_device_info_get_scope(): see tsm.h. */
_public_ const TsmScope *tsm_device_info_get_scope(const TsmDeviceInfo *info, size_t index) {
        return info && index < info->n_scopes ? &info->scopes[index] : NULL;
}

/* tsm_device_info_find_scope(): see tsm.h. */
_public_ const TsmScope *tsm_device_info_find_scope(const TsmDeviceInfo *info, const char *name) {
        if (!info || !name)
                return NULL;
        for (size_t i = 0; i < info->n_scopes; i++)
                if (streq(info->scopes[i].name, name))
                        return &info->scopes[i];
        return NULL;
}

/* tsm_scope_get_name(): see tsm.h. */
_public_ const char *tsm_scope_get_name(const TsmScope *s) {
        return s ? s->name : NULL;
}

/* tsm_scope_get_description(): see tsm.h. */
_public_ const char *tsm_scope_get_description(const TsmScope *s) {
        return s ? s->description : NULL;
}

/* tsm_scope_get_number(): see tsm.h. */
_public_ uint32_t tsm_scope_get_number(const TsmScope *s) {
        return s ? s->number : 0;
}

/* tsm_scope_get_max_request_size(): see tsm.h. */
_public_ uint64_t tsm_scope_get_max_request_size(const TsmScope *s) {
        return s ? s->max_request_size : 0;
}

/* tsm_scope_get_max_response_size(): see tsm.h. */
_public_ uint64_t tsm_scope_get_max_response_size(const TsmScope *s) {
        return s ? s->max_response_size : 0;
}

/* tsm_scope_is_allowed(): see tsm.h. */
_public_ bool tsm_scope_is_allowed(const TsmScope *s) {
        return s && s->allowed;
}
