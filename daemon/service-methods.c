/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* io.tsmd.Service: Ping, GetStatus (streamed), SetLogLevel, Reload. Runs in: worker. */

#include <limits.h>

#include "admin.h"
#include "config.h"
#include "fd-closer.h"
#include "guest.h"
#include "json-util.h"
#include "log.h"
#include "manager.h"
#include "reply-bound.h"
#include "varlink-errors.h"
#include "varlink-service.h"

/* ReloadFailed's message, and GetStatus's configuration error, name a file (any path) and quote
 * from it: they are cut to this many bytes, control characters and bytes that are not UTF-8 made
 * '?', so that their answers have a bound and are JSON (the log has it whole). */
#define RELOAD_MESSAGE_MAX 512

static void reload_message_shorten(char *message) {
        string_shorten_printable(message, RELOAD_MESSAGE_MAX);
}

static int add_string(json_object *o, const char *key, const char *value) {
        return value ? json_object_add(o, key, json_object_new_string(value)) : 0;
}

/* A path tsmd.conf or the command line names, which need not be UTF-8 as a JSON string must:
 * its bad bytes are shown as '?'. */
static int add_path(json_object *o, const char *key, const char *path) {
        _cleanup_free_ char *shown = NULL;

        if (!path)
                return 0;
        shown = strdup(path);
        if (!shown)
                return -ENOMEM;
        string_shorten_printable(shown, PATH_MAX);
        return add_string(o, key, shown);
}

/* The settings waiting for a restart of tsmd (pendingRestart). */
static int build_pending_restart(Manager *m, json_object **ret) {
        _cleanup_(json_object_putp) json_object *a = json_object_new_array();

        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_pending_restart; i++)
                if (json_array_append(a, json_object_new_string(m->pending_restart[i])) < 0)
                        return -ENOMEM;
        *ret = TAKE_PTR(a);
        return 0;
}

/* The files of the set in force that differ on disk, as the monitor last said (paths shown as
 * add_path() shows them). */
static int build_changed_on_disk(const ConfigState *cs, json_object **ret) {
        _cleanup_(json_object_putp) json_object *a = json_object_new_array();

        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < cs->changed_on_disk_size;) {
                _cleanup_free_ char *shown = strdup(cs->changed_on_disk + i);

                if (!shown)
                        return -ENOMEM;
                i += strlen(shown) + 1;
                string_shorten_printable(shown, PATH_MAX);
                if (json_array_append(a, json_object_new_string(shown)) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(a);
        return 0;
}

/*
 * SECURITY: GetStatus is anyone's who may connect, the VMMs on the guest socket included. The
 * error quotes the files (the policy's names of clients and their uids), and the paths and
 * times say how tsmd is run, and which files changed on disk says when an administrator edits
 * them: an administrator's; anyone else learns only whether tsmd serves what the files on disk
 * said when it last read them (source). So are the contexts owing a save (build_status()): the host's
 * disk trouble, and whether other VMs' changes are saved.
 */
static int build_configuration(Manager *m, bool admin, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        const ConfigState *cs = &m->config_state;
        _cleanup_(json_object_putp) json_object *pending = NULL, *changed = NULL;
        _cleanup_free_ char *error = NULL;

        if (!o || json_object_add(o, "source", json_object_new_string(cs->stale ? "last_good" : "disk")) < 0)
                return -ENOMEM;
        if (admin) {
                if (cs->stale && cs->error) {
                        error = strdup(cs->error);
                        if (!error)
                                return -ENOMEM;
                        reload_message_shorten(error);
                }
                if (build_pending_restart(m, &pending) < 0 || build_changed_on_disk(cs, &changed) < 0)
                        return -ENOMEM;
                if (add_path(o, "configFile", m->config_path) < 0 ||
                    add_path(o, "policyFile", cs->policy_file) < 0 ||
                    add_path(o, "policyDropInDirectory", cs->policy_dropin_dir) < 0 ||
                    json_object_add(o, "loadedUsec", json_object_new_int64((int64_t) cs->loaded_usec)) < 0 ||
                    (cs->stale &&
                     json_object_add(o, "failedUsec", json_object_new_int64((int64_t) cs->failed_usec)) < 0) ||
                    add_string(o, "error", error) < 0 ||
                    json_object_add(o, "pendingRestart", TAKE_PTR(pending)) < 0 ||
                    json_object_add(o, "changedOnDisk", TAKE_PTR(changed)) < 0 ||
                    json_object_add(o, "changedOnDiskCount", json_object_new_int64(cs->n_changed_on_disk)) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(o);
        return 0;
}

/* SECURITY: whether the log takes records is anyone's to know (a VMM's next call would tell it);
 * since when and why, as the configuration's details, an administrator's. */
static int build_audit(Manager *m, bool admin, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        AuditLogStatus st;
        int r;

        if (!o)
                return -ENOMEM;
        r = audit_log_get_status(m->audit, &st);
        if (r < 0)
                return r;
        if (json_object_add(o, "state", json_object_new_string(audit_health_state_to_string(st.health.state))) < 0)
                return -ENOMEM;
        if (admin) {
                if ((st.health.error < 0 ? json_object_add(o, "errno", json_object_new_int(-st.health.error))
                                         : json_object_add_null(o, "errno")) < 0 ||
                    json_object_add(o, "sinceUsec", json_object_new_int64((int64_t) st.health.since_usec)) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(o);
        return 0;
}

static int build_status(Manager *m, bool admin, json_object **ret) {
        _cleanup_(json_object_putp) json_object *s = NULL, *l = NULL, *cfg = NULL, *audit = NULL;
        const VarlinkLimits *lim = varlink_server_get_limits(m->server);
        int r;

        l = json_object_new_object();
        if (!l || json_object_add(l, "maxMessageSize", json_object_new_int64((int64_t) lim->max_message_size)) < 0 ||
            json_object_add(l, "maxOutputSize", json_object_new_int64((int64_t) lim->max_output_size)) < 0 ||
            json_object_add(l, "maxDepth", json_object_new_int64(lim->max_depth)) < 0 ||
            json_object_add(l, "maxJsonValues", json_object_new_int64(lim->max_json_values)) < 0 ||
            json_object_add(l, "maxFdsPerMessage", json_object_new_int64(lim->max_fds_per_message)) < 0 ||
            json_object_add(l, "maxPendingCalls", json_object_new_int64(lim->max_pending_calls)) < 0 ||
            json_object_add(l, "maxConnections", json_object_new_int64(lim->max_connections)) < 0 ||
            json_object_add(l, "maxConnectionsPerUid", json_object_new_int64(lim->max_connections_per_uid)) < 0 ||
            json_object_add(l, "maxUnnamedConnections", json_object_new_int64(lim->max_unnamed_connections)) < 0 ||
            json_object_add(l, "maxAdminConnections", json_object_new_int64(lim->max_admin_connections)) < 0 ||
            json_object_add(l, "maxAdminConnectionsPerUid", json_object_new_int64(lim->max_admin_connections_per_uid)) < 0 ||
            json_object_add(l, "maxBufferedPerUid", json_object_new_int64((int64_t) lim->max_buffered_per_uid)) < 0 ||
            json_object_add(l, "maxBuffered", json_object_new_int64((int64_t) lim->max_buffered)) < 0 ||
            json_object_add(l, "maxFdsPerUid", json_object_new_int64(lim->max_fds_per_uid)) < 0 ||
            json_object_add(l, "maxFds", json_object_new_int64((int64_t) varlink_server_get_fd_budget(m->server))) < 0 ||
            json_object_add(l, "messageTimeoutSec", json_object_new_int64(lim->message_timeout_sec)) < 0 ||
            json_object_add(l, "idleTimeoutSec", json_object_new_int64(lim->idle_timeout_sec)) < 0)
                return -ENOMEM;

        r = build_configuration(m, admin, &cfg);
        if (r < 0)
                return r;
        r = build_audit(m, admin, &audit);
        if (r < 0)
                return r;

        s = json_object_new_object();
        if (!s || json_object_add(s, "version", json_object_new_string(PACKAGE_VERSION)) < 0 ||
            json_object_add(s, "uptimeUsec", json_object_new_int64((int64_t) (now_monotonic_usec() - m->start_usec))) < 0 ||
            /* SECURITY: administrators only: anyone else could watch another tenant's VMMs
             * come and go. */
            (admin ? json_object_add(s, "connections", json_object_new_int64(varlink_server_get_n_connections(m->server)))
                   : json_object_add_null(s, "connections")) < 0 ||
            json_object_add(s, "limits", TAKE_PTR(l)) < 0 ||
            json_object_add(s, "configuration", TAKE_PTR(cfg)) < 0 ||
            (admin && json_object_add(s, "contextsOwingSave",
                                      json_object_new_int64((int64_t) guest_n_contexts_owing_save(m))) < 0) ||
            (admin && json_object_add(s, "fdsClosing", json_object_new_int64((int64_t) fd_closer_n_waiting_all())) < 0) ||
            json_object_add(s, "audit", TAKE_PTR(audit)) < 0)
                return -ENOMEM;

        *ret = TAKE_PTR(s);
        return 0;
}

static int vl_method_ping(VarlinkCall *call, json_object *parameters, void *userdata) {
        return varlink_call_reply(call, NULL);
}

static int vl_method_get_status(VarlinkCall *call, json_object *parameters, void *userdata) {
        Manager *m = userdata;
        json_object *status;
        int r;

        r = build_status(m, manager_is_admin(m, varlink_call_get_conn(call)), &status);
        if (r < 0)
                return r;

        if (!(varlink_call_get_flags(call) & VARLINK_CALL_MORE))
                return varlink_call_reply(call, status);

        /* First the current state, then changes: the race-free monitor pattern. */
        r = varlink_call_notify(call, status);
        if (r < 0)
                return r;
        if (!GREEDY_REALLOC(m->status_subscribers, m->allocated_status_subscribers,
                            m->n_status_subscribers + 1))
                return -ENOMEM;
        m->status_subscribers[m->n_status_subscribers++] = varlink_call_ref(call);
        return 0;
}

static void on_status_notify(evutil_socket_t fd, short what, void *userdata) {
        Manager *m = userdata;
        _cleanup_(json_object_putp) json_object *for_all = NULL, *for_admins = NULL;
        bool changed_for_all = TAKE_GENERIC(m->status_changed_for_all, bool, false);

        /* A subscription that cannot take it any more (its call ended) is dropped. Who is an
         * administrator is asked at each change: a reload may have made or unmade one. */
        for (size_t i = 0; i < m->n_status_subscribers;) {
                bool admin = manager_is_admin(m, varlink_call_get_conn(m->status_subscribers[i]));
                json_object **status = admin ? &for_admins : &for_all;

                /* Not even when: a change only administrators see is none of anyone else's. */
                if (!admin && !changed_for_all) {
                        i++;
                        continue;
                }

                /* One that would miss a change is told instead: its call ends. */
                if ((!*status && build_status(m, admin, status) < 0) ||
                    varlink_call_notify(m->status_subscribers[i], json_object_get(*status)) < 0) {
                        (void) varlink_call_error_errno(m->status_subscribers[i], -ENOMEM);
                        varlink_call_unref(m->status_subscribers[i]);
                        m->status_subscribers[i] = m->status_subscribers[--m->n_status_subscribers];
                } else
                        i++;
        }
}

/* SECURITY: any local user may subscribe, up to its connection limit, and make connections
 * come and go: a notification of every subscriber at every change would be its to multiply.
 * Changes within STATUS_NOTIFY_USEC are told once, the same status to all. */
#define STATUS_NOTIFY_USEC 100000

void service_status_changed_for_admins(Manager *m) {
        static const struct timeval delay = { .tv_usec = STATUS_NOTIFY_USEC };

        if (m->n_status_subscribers == 0)
                return;
        if (!m->status_notify) {
                m->status_notify = evtimer_new(m->base, on_status_notify, m);
                if (!m->status_notify) {
                        log_oom();
                        return;
                }
        }
        if (!evtimer_pending(m->status_notify, NULL))
                (void) evtimer_add(m->status_notify, &delay);
}

void service_status_changed(Manager *m) {
        if (m->n_status_subscribers == 0)
                return;
        m->status_changed_for_all = true;
        service_status_changed_for_admins(m);
}

void service_forget_connection(Manager *m, VarlinkConn *c) {
        size_t j = 0;

        for (size_t i = 0; i < m->n_status_subscribers; i++) {
                VarlinkCall *call = m->status_subscribers[i];

                if (varlink_call_get_conn(call) == c)
                        varlink_call_unref(call);
                else
                        m->status_subscribers[j++] = call;
        }
        m->n_status_subscribers = j;
}

static bool is_admin(Manager *m, VarlinkCall *call) {
        return manager_is_admin(m, varlink_call_get_conn(call));
}

static int vl_method_set_log_level(VarlinkCall *call, json_object *parameters, void *userdata) {
        const struct ucred *peer = varlink_conn_get_peer(varlink_call_get_conn(call));
        const char *level = json_get_string(parameters, "level");
        int l;

        admin_audit_answer(userdata, call);
        if (!is_admin(userdata, call))
                return varlink_call_error(call, VARLINK_ERROR_PERMISSION_DENIED, NULL);

        l = log_parse_level(level);
        if (l < 0)
                return varlink_call_error_invalid_parameter(call, "level");

        log_set_max_level(l);
        log_info("Log level set to %s by pid %i.", level, peer->pid);
        return varlink_call_reply(call, NULL);
}

/* Answered when the reload is over, the audit log's reopen included, as before the log's
 * disk was left to its sync thread: what the caller sees after the answer is the reloaded
 * daemon, and the call's record lands in the reopened log. */
static void on_reloaded(Manager *m, int error, const char *message, void *userdata) {
        _cleanup_(varlink_call_unrefp) VarlinkCall *call = userdata;
        _cleanup_(json_object_putp) json_object *pending = NULL;
        _cleanup_free_ char *shortened = NULL;
        json_object *p = NULL;

        if (error >= 0) {
                /* What it did not apply, for the administrator who asked (not only tsmd's log). */
                if (build_pending_restart(m, &pending) < 0 || !(p = json_object_new_object()) ||
                    json_object_add(p, "pendingRestart", TAKE_PTR(pending)) < 0) {
                        json_object_put(p);
                        (void) varlink_call_error_errno(call, -ENOMEM);
                        return;
                }
                (void) varlink_call_reply(call, p);
                return;
        }
        if (error == -ESHUTDOWN) {
                (void) varlink_call_error(call, "io.tsmd.Service.Stopping", NULL);
                return;
        }
        shortened = strdup(message ?: strerror(-error));
        if (shortened)
                reload_message_shorten(shortened);
        p = json_object_new_object();
        if (!shortened || !p || json_object_add(p, "message", json_object_new_string(shortened)) < 0) {
                json_object_put(p);
                (void) varlink_call_error_errno(call, -ENOMEM);
                return;
        }
        (void) varlink_call_error(call, "io.tsmd.Service.ReloadFailed", p);
}

/* A draining worker waits for a Reload's answer, as for a guest call's: it goes out once its
 * record is durable, which may be after the reload (the log's reopen) is over. */
static void on_reload_answer_sent(int result, void *userdata) {
        Manager *m = userdata;

        m->n_pending_requests--;
        manager_request_finished(m);
}

static int vl_method_reload(VarlinkCall *call, json_object *parameters, void *userdata) {
        Manager *m = userdata;
        int r;

        admin_audit_answer(userdata, call);
        if (!is_admin(userdata, call))
                return varlink_call_error(call, VARLINK_ERROR_PERMISSION_DENIED, NULL);

        m->n_pending_requests++;
        varlink_call_set_sent_callback(call, on_reload_answer_sent, m);

        r = manager_reload(userdata, on_reloaded, varlink_call_ref(call));
        if (r < 0)
                varlink_call_unref(call);
        return r;
}

static int add_setting_name(const char *section, const char *key, void *userdata) {
        _cleanup_free_ char *name = NULL;

        if (asprintf(&name, "%s.%s", section, key) < 0)
                return -ENOMEM;
        return json_array_append(userdata, json_object_new_string(name));
}

/* Reload's answer at its longest: every setting read at start waits for a restart. */
static int reply_bound_reload(size_t *max) {
        _cleanup_(json_object_putp) json_object *p = json_object_new_object(), *all = json_object_new_array();
        int r;

        if (!p || !all)
                return -ENOMEM;
        r = daemon_config_foreach_start_only(NULL, NULL, add_setting_name, all);
        if (r < 0)
                return r;
        if (json_object_add(p, "pendingRestart", TAKE_PTR(all)) < 0)
                return -ENOMEM;
        return reply_bound_reply(TAKE_PTR(p), max);
}

/* Reload and SetLogLevel act. A message of RELOAD_MESSAGE_MAX characters that each need
 * escaping ('"') is the longest ReloadFailed. */
static int reply_bound(const char *method, size_t *ret) {
        size_t max = 0;
        int r;

        r = reply_bound_reply(NULL, &max);
        if (r >= 0 && streq(method, "io.tsmd.Service.Reload"))
                r = reply_bound_reload(&max);
        if (r >= 0)
                r = reply_bound_common(&max);
        if (r >= 0 && streq(method, "io.tsmd.Service.SetLogLevel"))
                r = reply_bound_error(VARLINK_ERROR_INVALID_PARAMETER, "parameter", json_object_new_string("level"),
                                      NULL, NULL, &max);
        if (r >= 0 && streq(method, "io.tsmd.Service.Reload"))
                r = reply_bound_error("io.tsmd.Service.ReloadFailed", "message",
                                      reply_bound_string_of(RELOAD_MESSAGE_MAX, '"'), NULL, NULL, &max);
        if (r < 0)
                return r;
        *ret = max;
        return 0;
}

int service_methods_register(Manager *m) {
        static const struct {
                const char *name;
                VarlinkMethodFunc func;
                bool acts;
        } methods[] = {
                { "io.tsmd.Service.Ping", vl_method_ping },
                { "io.tsmd.Service.GetStatus", vl_method_get_status },
                { "io.tsmd.Service.SetLogLevel", vl_method_set_log_level, true },
                { "io.tsmd.Service.Reload", vl_method_reload, true },
        };
        int r;

        r = varlink_server_add_interface(m->server, varlink_builtin_idl_find("io.tsmd.Service"));
        if (r < 0)
                return r;

        for (size_t i = 0; i < ELEMENTSOF(methods); i++) {
                size_t size;

                r = varlink_server_bind_method(m->server, methods[i].name, methods[i].func);
                if (r >= 0 && methods[i].acts) {
                        r = reply_bound(methods[i].name, &size);
                        if (r >= 0)
                                r = varlink_server_set_reply_bound(m->server, methods[i].name, size, 0);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}
