/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl: global options, verb lookup, shared helpers. Runs in: the admin's shell. */

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "config.h"
#include "json-util.h"
#include "tsmctl.h"
#include "varlink-errors.h"

static const TsmctlVerb *const verbs[] = {
        &verb_status,
        &verb_backends,
        &verb_devices,
        &verb_connect,
        &verb_disconnect,
        &verb_clients,
        &verb_audit,
        &verb_monitor,
        &verb_metrics,
        &verb_reload,
        &verb_info,
        &verb_introspect,
        &verb_call,
};

int tsmctl_exit_code_for_error(const char *error) {
        if (streq(error, VARLINK_ERROR_PERMISSION_DENIED))
                return EXIT_PERMISSION;
        if (streq(error, VARLINK_ERROR_INVALID_PARAMETER))
                return EXIT_USAGE;
        if (streq(error, VARLINK_ERROR_METHOD_NOT_FOUND) || streq(error, VARLINK_ERROR_INTERFACE_NOT_FOUND) ||
            streq(error, VARLINK_ERROR_METHOD_NOT_IMPLEMENTED))
                return EXIT_UNIMPLEMENTED;
        return EXIT_GENERIC;
}

unsigned long long tsmctl_error_number(const char *message, const char *key) {
        size_t len = strlen(key);

        for (const char *p = message; p; p = strchr(p, ' '), p = p ? p + 1 : NULL)
                if (strneq(p, key, len) && p[len] == '=')
                        return strtoull(p + len + 1, NULL, 10);
        return 0;
}

bool tsmctl_is_connection_error(int r) {
        /* libtsm's errnos for a connection that broke or timed out. Not their error names:
         * tsmd (or whatever answers at the socket) may send those too, and no error it sends
         * maps to these (tsm.h). Not -EPROTO either: what answered is there, and broke the
         * protocol (tsmctl_protocol_error()). */
        return r == -ECONNRESET || r == -ENOTCONN || r == -ETIMEDOUT;
}

int tsmctl_protocol_error(const char *what) {
        /* Something answers at the socket, so it is reachable; what it said is no Varlink, a
         * failure (exit 1) that waiting or starting tsmd does not mend. */
        fprintf(stderr, "%s: the answer broke the Varlink protocol (%s), connection closed.\n", what,
                strerror(EPROTO));
        return EXIT_GENERIC;
}

/* .ci/start's tsmd, named in the hint only where it runs. */
#define QUICKSTART_ADMIN_SOCKET "/run/tsmd-quickstart/io.tsmd.Admin"

/* Where tsmctl_connect() connected, for what a call's error says of it. */
static const char *connected_socket = NULL;

int tsmctl_connect(const TsmctlOptions *o, TsmClient **ret) {
        int r = tsm_client_connect(o->socket, ret);

        if (r < 0) {
                fprintf(stderr, "Failed to connect to tsmd at %s: %s\n", o->socket, strerror(-r));
                /* Nobody said where tsmd is, and it is not at the default: it may run elsewhere
                 * (the quick start's, a test's), which tsmctl cannot guess. */
                if (o->socket_default && (r == -ENOENT || r == -ECONNREFUSED))
                        fprintf(stderr, "Is tsmd running? If it listens elsewhere, give its admin socket with "
                                "--socket=PATH or TSMD_SOCKET=PATH%s.\n",
                                access(QUICKSTART_ADMIN_SOCKET, F_OK) >= 0 ?
                                " (the quick start's is " QUICKSTART_ADMIN_SOCKET ")" : "");
                /* The socket's mode or owner keeps us out: tsmd may well be running. */
                if (r == -EACCES || r == -EPERM)
                        return EXIT_PERMISSION;
                /* Not an address libtsm takes. */
                if (r == -EINVAL) {
                        fprintf(stderr, "Give the socket as an absolute path (/run/tsmd/io.tsmd.Admin), ./NAME for "
                                "one in this directory, @NAME for an abstract socket, or unix:PATH.\n");
                        return EXIT_USAGE;
                }
                return EXIT_NOT_RUNNING;
        }
        (void) tsm_client_set_timeout(*ret, o->timeout_usec);
        connected_socket = o->socket;
        return 0;
}

/* --timeout=: whole seconds, or "infinity" (0). Bounded so that the microseconds fit. */
static int parse_timeout(const char *s, uint64_t *ret) {
        unsigned long long sec;
        char *end;

        if (streq(s, "infinity")) {
                *ret = 0;
                return 0;
        }
        if (!isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        sec = strtoull(s, &end, 10);
        if (errno != 0 || *end || sec > UINT64_MAX / 1000000ULL)
                return -EINVAL;
        *ret = sec * 1000000ULL;
        return 0;
}

/* The JSON depth the Varlink layer reads messages to by default (varlink-stream.h), which is
 * what libtsm took this reply to; json_tokener_parse() stops at 32. */
#define REPLY_DEPTH_MAX 64

static json_object *parse_reply(const char *text) {
        struct json_tokener *tok = json_tokener_new_ex(REPLY_DEPTH_MAX);
        json_object *o;

        if (!tok)
                return NULL;
        o = json_tokener_parse_ex(tok, text, -1);
        if (json_tokener_get_error(tok) != json_tokener_success) {
                json_object_put(o);
                o = NULL;
        }
        json_tokener_free(tok);
        return o;
}

/* The methods only administrators may call (io.tsmd.Admin.varlink, io.tsmd.Service.varlink). */
static bool is_admin_method(const char *method) {
        return strneq(method, "io.tsmd.Admin.", strlen("io.tsmd.Admin.")) ||
               streq(method, "io.tsmd.Service.Reload") || streq(method, "io.tsmd.Service.SetLogLevel");
}

/* The reply of the last call; a verb looks at one reply at a time (json_object_get() keeps one). */
static json_object *last_reply = NULL;

/* The socket answered that it serves no io.tsmd.Admin: tsmd's other socket, most likely. */
static void explain_no_admin_interface(TsmClient *c, const char *method) {
        const char *message = tsm_client_get_error_message(c);

        if (!message || !strstr(message, "interface=io.tsmd.Admin") || !strneq(method, "io.tsmd.Admin.", 14))
                return;
        fprintf(stderr, "%s serves no io.tsmd.Admin: probably tsmd's io.tsmd.Guest socket, the one for VMMs. "
                "Give its admin socket (io.tsmd.Admin) with --socket=PATH or TSMD_SOCKET=PATH.\n",
                connected_socket ?: "The socket");
}

void tsmctl_explain_access(TsmClient *c, const char *method, const char *error) {
        /* Whoever reached the admin socket got past its mode (0660 root:tsm-admin): an
         * administrator's method refused is the policy's doing, which the error, bare as
         * org.varlink.service defines it, does not say. */
        if (streq(error, VARLINK_ERROR_PERMISSION_DENIED) && is_admin_method(method))
                fprintf(stderr, "Not an administrator of tsmd: its policy's [Admin] section names neither "
                        "you (Users=) nor a group of yours (Groups=); being let into the admin socket "
                        "(group tsm-admin) is not enough. See tsmd-policy.conf(5).\n");
        if (streq(error, VARLINK_ERROR_INTERFACE_NOT_FOUND))
                explain_no_admin_interface(c, method);
}

static int call_explained(TsmClient *c, const char *method, json_object *params, TsmctlExplainFunc explain,
                          void *userdata, json_object **ret) {
        _cleanup_(tsmctl_escapes_done) TsmctlEscapes e = {};
        _cleanup_free_ char *reply = NULL;
        const char *error;
        int r;

        r = tsm_client_call_json(c, method,
                                 params ? json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN) : NULL,
                                 &reply);
        json_object_put(params);
        if (r < 0) {
                error = tsm_client_get_error_name(c);
                if (r == -ETIMEDOUT) {
                        fprintf(stderr, "tsmd did not answer %s in time (--timeout= waits longer).\n", method);
                        return EXIT_NOT_RUNNING;
                }
                if (r == -EPROTO)
                        return tsmctl_protocol_error(method);
                if (tsmctl_is_connection_error(r)) {
                        fprintf(stderr, "Failed to call %s: %s\n", method, strerror(-r));
                        return EXIT_NOT_RUNNING;
                }
                if (!error) {
                        fprintf(stderr, "Failed to call %s: %s\n", method, strerror(-r));
                        return EXIT_GENERIC;
                }
                if (explain && explain(c, userdata))
                        return tsmctl_exit_code_for_error(error);
                /* The error and its parameters are tsmd's (or whoever answered), the method ours. */
                fprintf(stderr, "%s failed: %s %s\n", method, tsmctl_esc(&e, error),
                        strempty(tsmctl_esc(&e, tsm_client_get_error_message(c))));
                tsmctl_explain_access(c, method, error);
                return tsmctl_exit_code_for_error(error);
        }

        json_object_put(last_reply);
        last_reply = parse_reply(reply);
        if (!last_reply) {
                fprintf(stderr, "%s: tsmd's reply is not JSON.\n", method);
                return EXIT_GENERIC;
        }
        *ret = last_reply;
        return 0;
}

int tsmctl_call(TsmClient *c, const char *method, json_object *params, json_object **ret) {
        return call_explained(c, method, params, NULL, NULL, ret);
}

int tsmctl_fetch_explained(const TsmctlOptions *o, TsmClient **c, const char *method, json_object *params,
                           TsmctlExplainFunc explain, void *userdata, json_object **ret) {
        int r = *c ? 0 : tsmctl_connect(o, c);

        if (r > 0) {
                json_object_put(params);
                return r;
        }
        return call_explained(*c, method, params, explain, userdata, ret);
}

int tsmctl_fetch(const TsmctlOptions *o, TsmClient **c, const char *method, json_object *params,
                 json_object **ret) {
        return tsmctl_fetch_explained(o, c, method, params, NULL, NULL, ret);
}

int tsmctl_reply_array(json_object *reply, const char *method, const char *key, json_object **ret) {
        /* Not trusted to be what the IDL says: a hostile socket at the path, a different tsmd. */
        *ret = json_get_array(reply, key);
        if (!*ret) {
                fprintf(stderr, "%s: tsmd's reply has no array \"%s\".\n", method, key);
                return EXIT_GENERIC;
        }
        return 0;
}

/* The verb's positional arguments: its options and their values are not counted. -EINVAL
 * for an unknown option or one missing its value. */
static int count_args(const TsmctlVerb *verb, int argc, char *argv[]) {
        int opt;

        if (!verb->options)
                return argc;
        /* As run() will parse them: argv[-1] is the verb, in getopt's place of the program. */
        optind = 0;
        while ((opt = getopt_long(argc + 1, argv - 1, "", verb->options, NULL)) >= 0)
                if (opt == '?')
                        return -EINVAL;
        return argc + 1 - optind;
}

/* The width of the help's usage column. */
#define USAGE_COLUMNS 28

static void help(void) {
        printf("Usage: tsmctl [OPTIONS] COMMAND [ARGS...]\n\n"
               "Administer tsmd, the TSM broker.\n\nCommands:\n");
        /* A usage that does not fit its column ("audit"'s options) is the command's --help's. */
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                printf("  %-12s %-28s %s\n", verbs[i]->name,
                       strlen(verbs[i]->usage) <= USAGE_COLUMNS ? verbs[i]->usage : "[OPTIONS...]",
                       verbs[i]->summary);
        printf("\nOptions:\n"
               "  -h --help          Show this help\n"
               "     --version       Show the version\n"
               "     --socket=PATH   Talk to tsmd at PATH (default: $TSMD_SOCKET or " TSMD_SOCKET_DEFAULT ")\n"
               "     --json          Print JSON instead of tables\n"
               "     --timeout=SEC   Wait at most SEC seconds for each answer (default: 45;\n"
               "                     0 or infinity: no limit)\n"
               "\nSee 'tsmctl COMMAND --help' for a command's options.\n");
}

/* Ends tsmctl with r, or with EXIT_GENERIC if what it printed did not all reach stdout (a full
 * disk, a closed pipe): a script must not take a truncated answer for the whole of it. */
static int flush_stdout(int r) {
        int k = fflush(stdout);

        if (k == 0 && !ferror(stdout))
                return r;
        fprintf(stderr, "Failed to write the output: %s\n", strerror(k != 0 && errno > 0 ? errno : EIO));
        return r == 0 ? EXIT_GENERIC : r;
}

enum { ARG_VERSION = 0x100, ARG_SOCKET, ARG_JSON, ARG_TIMEOUT, ARG_VERBS };

/* --socket=, --json, --timeout=: before the verb or after it. EXIT_USAGE (said why) or 0. */
static int global_option(TsmctlOptions *o, int c, const char *value) {
        switch (c) {
        case ARG_SOCKET:
                if (isempty(value)) {
                        fprintf(stderr, "--socket= needs a path.\n");
                        return EXIT_USAGE;
                }
                o->socket = value;
                o->socket_default = false;
                return 0;
        case ARG_JSON:
                o->json = true;
                return 0;
        case ARG_TIMEOUT:
                if (parse_timeout(value, &o->timeout_usec) < 0) {
                        fprintf(stderr, "--timeout= needs whole seconds or \"infinity\": %s\n", value);
                        return EXIT_USAGE;
                }
                return 0;
        }
        return EXIT_USAGE;
}

/* Takes the global options out of a verb's arguments (up to a "--"), as systemctl reads them
 * anywhere: "tsmctl monitor --json" is "tsmctl --json monitor". Returns the arguments left, or
 * -EXIT_USAGE. */
static int take_global_options(TsmctlOptions *o, int argc, char *argv[]) {
        static const struct {
                const char *name;
                int c;
                bool has_value;
        } globals[] = {
                { "--socket", ARG_SOCKET, true },
                { "--json", ARG_JSON, false },
                { "--timeout", ARG_TIMEOUT, true },
        };
        int n = 0, i;

        for (i = 0; i < argc && !streq(argv[i], "--"); i++) {
                size_t j, len = 0;

                for (j = 0; j < ELEMENTSOF(globals); j++) {
                        len = strlen(globals[j].name);
                        if (strneq(argv[i], globals[j].name, len) &&
                            (argv[i][len] == 0 || (globals[j].has_value && argv[i][len] == '=')))
                                break;
                }
                if (j == ELEMENTSOF(globals)) {
                        argv[n++] = argv[i];
                        continue;
                }
                const char *value = argv[i][len] == '=' ? argv[i] + len + 1 : NULL;
                if (globals[j].has_value && !value) {
                        if (i + 1 >= argc) {
                                fprintf(stderr, "%s needs a value.\n", globals[j].name);
                                return -EXIT_USAGE;
                        }
                        value = argv[++i];
                }
                if (global_option(o, globals[j].c, value) != 0)
                        return -EXIT_USAGE;
        }
        for (; i < argc; i++)
                argv[n++] = argv[i];
        return n;
}

DEFINE_TRIVIAL_CLEANUP_FUNC_FULL(cap_t, cap_free, NULL);

/* SECURITY: tsmctl talks to tsmd over a socket and does nothing else, yet parses what tsmd's
 * worker sends, as root when tsmd.service's ExecReload= runs it (with the unit's capabilities):
 * no capability is of use to it, so none is left for a worker that found a bug in that parsing.
 * Drops every one from the bounding set where it may (CAP_SETPCAP), the ambient, effective,
 * permitted and inheritable sets, and sets no-new-privileges. The uid stays: tsmd's policy
 * names administrators by it (root always). Verified: a capability left is -EPERM. */
static int drop_capabilities(void) {
        _cleanup_(cap_freep) cap_t none = cap_init(), now = NULL;
        int r = 0;

        if (!none)
                return -ENOMEM;
        /* cap_max_bits(): what the running kernel knows, which the headers may not. */
        for (cap_value_t c = 0; c < (cap_value_t) cap_max_bits(); c++)
                if (prctl(PR_CAPBSET_DROP, (unsigned long) c, 0, 0, 0) < 0 && errno != EPERM && errno != EINVAL)
                        return -errno;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                return -errno;
        /* Either may be refused (a seccomp filter) where there was nothing to drop: the checks
         * below decide. */
        if (cap_set_proc(none) < 0)
                r = -errno;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 && r == 0)
                r = -errno;

        now = cap_get_proc();
        if (!now)
                return -ENOMEM;
        if (cap_compare(now, none) != 0 || prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
                return r < 0 ? r : -EPERM;
        return 0;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "json", no_argument, NULL, ARG_JSON },
                { "timeout", required_argument, NULL, ARG_TIMEOUT },
                { "list-verbs", no_argument, NULL, ARG_VERBS }, /* for shell completion */
                {},
        };
        const char *env = getenv("TSMD_SOCKET");
        /* Empty is unset, as for other variables: libtsm refuses an empty address. */
        TsmctlOptions o = { .socket = isempty(env) ? TSMD_SOCKET_DEFAULT : env,
                            .socket_default = isempty(env),
                            .timeout_usec = TSMCTL_TIMEOUT_USEC_DEFAULT };
        const TsmctlVerb *verb = NULL;
        int c, n_args, r;

        r = drop_capabilities();
        if (r < 0) {
                fprintf(stderr, "Failed to drop capabilities: %s\n", strerror(-r));
                return EXIT_GENERIC;
        }

        /* "+": stop at the verb, so verbs may take options of their own. */
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return flush_stdout(0);
                case ARG_VERSION:
                        printf("tsmctl %s\n", PACKAGE_VERSION);
                        return flush_stdout(0);
                case ARG_SOCKET:
                case ARG_JSON:
                case ARG_TIMEOUT:
                        if (global_option(&o, c, optarg) != 0)
                                return EXIT_USAGE;
                        break;
                case ARG_VERBS:
                        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                                puts(verbs[i]->name);
                        return flush_stdout(0);
                default:
                        return EXIT_USAGE;
                }

        if (optind >= argc) {
                help();
                return EXIT_USAGE;
        }
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(verbs[i]->name, argv[optind]))
                        verb = verbs[i];
        if (!verb) {
                fprintf(stderr, "Unknown command '%s'. See tsmctl --help.\n", argv[optind]);
                return EXIT_USAGE;
        }

        argc -= optind + 1;
        argv += optind + 1;
        argc = take_global_options(&o, argc, argv);
        if (argc < 0)
                return -argc;
        argv[argc] = NULL;
        if (argc == 1 && (streq(argv[0], "--help") || streq(argv[0], "-h"))) {
                printf("Usage: tsmctl %s %s\n\n%s\n", verb->name, verb->usage, verb->summary);
                return flush_stdout(0);
        }
        n_args = count_args(verb, argc, argv);
        if (n_args < 0)
                return EXIT_USAGE; /* getopt_long() said why */
        if ((unsigned) n_args < verb->min_args || (unsigned) n_args > verb->max_args) {
                fprintf(stderr, "Usage: tsmctl %s %s\n", verb->name, verb->usage);
                return EXIT_USAGE;
        }
        return flush_stdout(verb->run(&o, argc, argv));
}
