/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The org.varlink.service interface every Varlink service offers. Runs in: worker. */

#include "json-util.h"
#include "varlink-errors.h"
#include "varlink-idl.h"
#include "varlink-service.h"

const char *varlink_builtin_idl_find(const char *interface) {
        for (const char *const *idl = varlink_builtin_idl; *idl; idl++) {
                _cleanup_(varlink_interface_freep) VarlinkInterface *i = NULL;

                if (varlink_interface_parse(*idl, &i, NULL, NULL) < 0)
                        continue;
                if (streq(varlink_interface_get_name(i), interface))
                        return *idl;
        }
        return NULL;
}

int varlink_builtin_interface_of(const char *name, VarlinkInterface **ret, const char **ret_member) {
        _cleanup_free_ char *interface = NULL;
        const char *dot, *idl;
        int r;

        *ret = NULL;
        dot = strrchr(name, '.');
        if (!dot)
                return 0;
        interface = strndup(name, (size_t) (dot - name));
        if (!interface)
                return -ENOMEM;
        idl = varlink_builtin_idl_find(interface);
        if (!idl)
                return 0;
        /* Compiled in: it parses, memory permitting. */
        r = varlink_interface_parse(idl, ret, NULL, NULL);
        if (r < 0)
                return r;
        *ret_member = dot + 1;
        return 1;
}

static int vl_method_get_info(VarlinkCall *call, json_object *parameters, void *userdata) {
        VarlinkServer *s = varlink_conn_get_server(varlink_call_get_conn(call));
        _cleanup_(json_object_putp) json_object *reply = NULL, *interfaces = NULL;
        const char *vendor, *product, *version, *url;

        varlink_server_get_info(s, &vendor, &product, &version, &url);

        interfaces = json_object_new_array();
        if (!interfaces)
                return -ENOMEM;
        for (size_t i = 0; i < varlink_server_get_n_interfaces(s); i++) {
                const VarlinkInterface *iface = varlink_server_get_interface(s, i);

                if (!varlink_conn_allows_interface(varlink_call_get_conn(call), varlink_interface_get_name(iface)))
                        continue;
                if (json_array_append(interfaces, json_object_new_string(varlink_interface_get_name(iface))) < 0)
                        return -ENOMEM;
        }

        reply = json_object_new_object();
        if (!reply || json_object_add(reply, "vendor", json_object_new_string(vendor)) < 0 ||
            json_object_add(reply, "product", json_object_new_string(product)) < 0 ||
            json_object_add(reply, "version", json_object_new_string(version)) < 0 ||
            json_object_add(reply, "url", json_object_new_string(url)) < 0 ||
            json_object_add(reply, "interfaces", TAKE_PTR(interfaces)) < 0)
                return -ENOMEM;

        return varlink_call_reply(call, TAKE_PTR(reply));
}

static int vl_method_get_interface_description(VarlinkCall *call, json_object *parameters,
                                               void *userdata) {
        VarlinkServer *s = varlink_conn_get_server(varlink_call_get_conn(call));
        _cleanup_(json_object_putp) json_object *reply = NULL;
        const VarlinkInterface *iface;
        const char *name;

        name = json_get_string(parameters, "interface");
        iface = name ? varlink_server_find_interface(s, name) : NULL;
        if (iface && !varlink_conn_allows_interface(varlink_call_get_conn(call), name))
                iface = NULL;
        if (!iface) {
                json_object *p = json_object_new_object();
                if (!p || json_object_add(p, "interface", json_object_new_string(strna(name))) < 0) {
                        json_object_put(p);
                        return -ENOMEM;
                }
                return varlink_call_error(call, VARLINK_ERROR_INTERFACE_NOT_FOUND, p);
        }

        reply = json_object_new_object();
        if (!reply || json_object_add(reply, "description",
                                      json_object_new_string(varlink_interface_get_text(iface))) < 0)
                return -ENOMEM;
        return varlink_call_reply(call, TAKE_PTR(reply));
}

int varlink_service_register(VarlinkServer *s) {
        static const char *const base[] = { "org.varlink.service", "io.tsmd" };
        int r;

        for (size_t i = 0; i < ELEMENTSOF(base); i++) {
                const char *idl = varlink_builtin_idl_find(base[i]);
                if (!idl)
                        return -ENOENT;
                r = varlink_server_add_interface(s, idl);
                if (r < 0)
                        return r;
        }

        r = varlink_server_bind_method(s, "org.varlink.service.GetInfo", vl_method_get_info);
        if (r < 0)
                return r;
        return varlink_server_bind_method(s, "org.varlink.service.GetInterfaceDescription",
                                          vl_method_get_interface_description);
}
