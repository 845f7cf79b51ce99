/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl audit [--from=SEQ] [--to=SEQ] [--uid=USER] [--device=PCI] [--scope=S] [--result=R]
 *              [--event=NAME] [--since=TIME] [--until=TIME] [--limit=N] */

#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>

#include "audit-event.h"
#include "audit-result.h"
#include "json-util.h"
#include "time-parse.h"
#include "tsmctl.h"
#include "varlink-errors.h"
#include "varlink-idl.h"

/* The most records tsmctl shows at once (--limit=, and its default). tsmd answers a call at
 * most its [Audit] MaxQueryRecords= (default 10000), and nextSeq where more match: each call
 * asks for no more than this and one, so that what libtsm takes of a reply
 * (TSM_REPLY_JSON_VALUES_MAX) fits however high tsmd's most is set. */
#define QUERY_LIMIT_MAX 10000

static const struct option options[] = {
        { "from", required_argument, NULL, 'f' },  { "to", required_argument, NULL, 't' },
        { "uid", required_argument, NULL, 'u' },   { "device", required_argument, NULL, 'd' },
        { "scope", required_argument, NULL, 's' }, { "result", required_argument, NULL, 'r' },
        { "event", required_argument, NULL, 'e' }, { "since", required_argument, NULL, 'S' },
        { "until", required_argument, NULL, 'U' }, { "limit", required_argument, NULL, 'l' },
        { "list-events", no_argument, NULL, 'L' }, /* for shell completion */
        {},
};

#define TIME_FORMS "YYYY-MM-DD [HH:MM[:SS]] (local time), @SECONDS, now, today, yesterday, or -N/+N with a unit " \
                   "(s, min, h, d, w: -15min, -2h)"

/* --result=: "ok", an error's full name, an errno's, or the short name of an error tsmd's
 * interfaces declare ("Denied"), which records never carry (they have the full name): without
 * this, a short one matched nothing, silently. Prints why and returns EXIT_USAGE for a short
 * name no interface declares, or several do; a full name tsmd knows no record of, it refuses
 * (explain_invalid()). */
static int resolve_result(const char *value, char **ret) {
        char **names = NULL, *match = NULL;
        int n;

        if (streq(value, "ok") || strchr(value, '.') || audit_result_is_errno(value)) {
                match = strdup(value);
                if (!match) {
                        fprintf(stderr, "Out of memory.\n");
                        return EXIT_GENERIC;
                }
                *ret = match;
                return 0;
        }
        n = audit_result_expand(value, &names);
        if (n < 0) {
                fprintf(stderr, "Out of memory.\n");
                return EXIT_GENERIC;
        }
        if (n == 1)
                match = TAKE_PTR(names[0]);
        else if (n == 0)
                fprintf(stderr,
                        "Unknown result '%s': give ok, an error's full name (io.tsmd.Guest.Denied), the "
                        "short name of one tsmd's interfaces declare (Denied), or the errno of a kernel's late "
                        "answer as tsmd records it (EIO, errno-N).\n",
                        value);
        else
                fprintf(stderr, "--result=%s is ambiguous: %s or %s? Give the full name.\n", value, names[0],
                        names[1]);
        for (int i = 0; i < n; i++)
                free(names[i]);
        free(names);
        if (!match)
                return EXIT_USAGE;
        *ret = match;
        return 0;
}

/* The filters as given, for what is said of them. */
typedef struct AuditArgs {
        const char *device, *scope, *since, *until, *uid, *result, *to;
} AuditArgs;

static void say_bad_device(const char *device) {
        fprintf(stderr, "--device=%s: not a PCI address as sysfs spells it (DDDD:BB:DD.F, lowercase hex), "
                "which is how records name devices.\n", device);
}

/* The lowercase hex digits at *s, min to max of them; moves *s past them. */
static bool hex_run(const char **s, size_t min, size_t max) {
        size_t n = strspn(*s, "0123456789abcdef");

        *s += n;
        return n >= min && n <= max;
}

/* A PCI address as sysfs spells it, which is all records have: a domain of 4 to 8 lowercase hex
 * digits (the kernel prints an int), then :BB:DD.F. tsmd checks it again, by its own limits. */
static bool pci_address_is_plausible(const char *s) {
        return hex_run(&s, 4, 8) && *s++ == ':' && hex_run(&s, 2, 2) && *s++ == ':' && hex_run(&s, 2, 2) &&
               *s++ == '.' && *s >= '0' && *s <= '7' && s[1] == 0;
}

/* tsmd answers as many records as fit in the connection's MaxMessageSize=, and one at least: a
 * record larger than that is answered ReplyTooLarge, which alone says nothing of what to do. */
static void explain_too_large(const char *message) {
        fprintf(stderr, "The answer of the next matching record takes %llu bytes, more than tsmd's MaxMessageSize=%llu "
                "([Varlink] in tsmd.conf) lets one answer have: raise it.\n",
                tsmctl_error_number(message, "size"), tsmctl_error_number(message, "maxMessageSize"));
}

/* tsmd refused a filter (InvalidParameter): which option, and why, in the command's words,
 * instead of the error (true), or nothing (false). */
static bool explain_invalid(TsmClient *c, void *userdata) {
        const AuditArgs *a = userdata;
        const char *error = tsm_client_get_error_name(c), *message = tsm_client_get_error_message(c);

        if (error && message && streq(error, VARLINK_ERROR_REPLY_TOO_LARGE)) {
                explain_too_large(message);
                return true;
        }
        if (!error || !message || !streq(error, VARLINK_ERROR_INVALID_PARAMETER))
                return false;
        if (a->device && streq(message, "parameter=pciAddress"))
                say_bad_device(a->device);
        else if (a->scope && streq(message, "parameter=scope"))
                fprintf(stderr, "--scope=%s: no TSM backend has a scope of that name (info, state-change, "
                        "debug-read, ...). A refused request's unknown scope is found with "
                        "--result=NoSuchScope.\n", a->scope);
        else if (a->until && streq(message, "parameter=untilUsec"))
                fprintf(stderr, "--until=%s is before --since=%s: no record can be in that window.\n", a->until,
                        strna(a->since));
        else if (a->result && streq(message, "parameter=result"))
                fprintf(stderr, "--result=%s: no record has that result: give ok, an error's name (io.tsmd.Guest.Denied, "
                        "or Denied), or an errno's as the kernel gave it (EIO).\n", a->result);
        else if (a->to && streq(message, "parameter=toSeq"))
                fprintf(stderr, "--to=%s: no record can be in that window (sequence numbers start at 1).\n", a->to);
        else if (a->uid && streq(message, "parameter=uid"))
                fprintf(stderr, "--uid=%s: not a uid tsmd records (0 to 4294967294).\n", a->uid);
        else
                return false;
        return true;
}

/* --uid=: a number, or a user name looked up here (records have the number). */
static int parse_uid(const char *value, long long *ret) {
        struct passwd *pw;
        char *end;
        long long v;

        errno = 0;
        v = strtoll(value, &end, 10);
        if (end != value && *end == 0) {
                if (errno != 0 || v < 0 || v >= (long long) UINT32_MAX) {
                        fprintf(stderr, "--uid=%s: not a uid (0 to 4294967294).\n", value);
                        return EXIT_USAGE;
                }
                *ret = v;
                return 0;
        }
        errno = 0;
        pw = getpwnam(value);
        if (!pw) {
                fprintf(stderr, "--uid=%s: no user of that name here%s%s (give the uid).\n", value,
                        errno != 0 ? ": " : "", errno != 0 ? strerror(errno) : "");
                return EXIT_USAGE;
        }
        *ret = (long long) pw->pw_uid;
        return 0;
}

/* With --from=SEQ: whether the log still begins at or before SEQ. Rotation drops the oldest file
 * whole; the first record at or after SEQ, whatever the filters, says where the log begins now.
 * Said on stderr, after the records; a failure to ask says nothing (the records stand). */
static void note_rotated_out(TsmClient *c, long long from) {
        _cleanup_free_ char *text = NULL, *reply_text = NULL;
        _cleanup_(json_object_putp) json_object *reply = NULL;
        json_object *records, *first;
        long long seq;

        if (asprintf(&text, "{\"fromSeq\":%lld,\"limit\":1}", from) < 0 ||
            tsm_client_call_json(c, "io.tsmd.Admin.QueryAudit", text, &reply_text) < 0)
                return;
        reply = json_tokener_parse(reply_text);
        records = json_get_array(reply, "records");
        first = records && json_object_array_length(records) > 0 ? json_object_array_get_idx(records, 0) : NULL;
        if (!first || !json_object_is_type(json_object_object_get(first, "seq"), json_type_int))
                return;
        seq = (long long) json_object_get_int64(json_object_object_get(first, "seq"));
        /* Sequence numbers start at 1: --from=0 asks for nothing rotated out. */
        if (seq > MAX(from, 1LL)) {
                fflush(stdout);
                fprintf(stderr,
                        "Note: the log begins at seq %lld: the records from %lld to %lld are no longer in it (rotated out; "
                        "[Audit] Files= and MaxFileSize= in tsmd.conf keep more).\n",
                        seq, MAX(from, 1LL), seq - 1);
        }
}

/* The reply's "damaged": lines tsmd passed over, records that may be missing from the answer,
 * which would look whole without this. Said on stderr, after the records. */
static void warn_damaged(json_object *reply) {
        json_object *v = json_object_object_get(reply, "damaged");
        int64_t n;

        if (!v || !json_object_is_type(v, json_type_int) || (n = json_object_get_int64(v)) <= 0)
                return;
        fflush(stdout);
        fprintf(stderr,
                "Warning: the audit log is damaged: tsmd passed over %" PRIi64 " line%s it read that %s no record "
                "it can trust; records may be missing above (tsmd's log says so too).\n",
                n, n == 1 ? "" : "s", n == 1 ? "is" : "are");
}

/* tsmd reads so much of the log per call (MaxQueryScanSize=), and answers so many records
 * (MaxQueryRecords=), and answers nextSeq where it stopped short of the range's end or of what
 * was asked: the same query from there goes on, until there are want records or the range is read. Their records are appended to list (reply's), their damaged
 * counts added to reply's; reply keeps no nextSeq (this command says itself where to go on). */
static int query_on(const TsmctlOptions *o, TsmClient **c, json_object *params, AuditArgs *args, json_object *reply,
                    json_object *list, size_t want) {
        int64_t from = json_object_get_int64(json_object_object_get(params, "fromSeq")), damaged = 0;
        json_object *next, *v;
        int r;

        v = json_object_object_get(reply, "damaged");
        if (json_object_is_type(v, json_type_int))
                damaged = json_object_get_int64(v);
        while ((next = json_object_object_get(reply, "nextSeq")) && json_object_array_length(list) < want) {
                json_object *more, *records; /* more: tsmctl's until the next call */

                /* Not trusted to be what the IDL says: it must go on, or this would not end. */
                if (!json_object_is_type(next, json_type_int) || json_object_get_int64(next) <= from) {
                        fprintf(stderr, "io.tsmd.Admin.QueryAudit: tsmd's reply's nextSeq does not go on from %" PRIi64
                                ".\n", from);
                        return EXIT_GENERIC;
                }
                from = json_object_get_int64(next);
                if (json_object_add(params, "fromSeq", json_object_new_int64(from)) < 0 ||
                    json_object_add(params, "limit",
                                    json_object_new_int64((int64_t) (want - json_object_array_length(list)))) < 0) {
                        fprintf(stderr, "Out of memory.\n");
                        return EXIT_GENERIC;
                }
                r = tsmctl_fetch_explained(o, c, "io.tsmd.Admin.QueryAudit", json_object_get(params), explain_invalid,
                                           args, &more);
                if (r > 0)
                        return r;
                r = tsmctl_reply_array(more, "io.tsmd.Admin.QueryAudit", "records", &records);
                if (r > 0)
                        return r;
                for (size_t i = 0; i < json_object_array_length(records); i++)
                        if (json_array_append(list, json_object_get(json_object_array_get_idx(records, i))) < 0) {
                                fprintf(stderr, "Out of memory.\n");
                                return EXIT_GENERIC;
                        }
                v = json_object_object_get(more, "damaged");
                if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) > 0)
                        damaged += json_object_get_int64(v);
                /* The last call's says whether to go on. */
                next = json_object_object_get(more, "nextSeq");
                if (!next)
                        json_object_object_del(reply, "nextSeq");
                else if (json_object_add(reply, "nextSeq", json_object_get(next)) < 0) {
                        fprintf(stderr, "Out of memory.\n");
                        return EXIT_GENERIC;
                }
        }
        json_object_object_del(reply, "nextSeq");
        if (damaged > 0 && json_object_add(reply, "damaged", json_object_new_int64(damaged)) < 0) {
                fprintf(stderr, "Out of memory.\n");
                return EXIT_GENERIC;
        }
        return 0;
}

/* --list-events: the events records can have, one a line, for shell completion: those tsmd
 * writes under a name of its own, then every method an interface built in declares. */
static int list_events(void) {
        for (AuditEvent e = 0; e < _AUDIT_EVENT_MAX; e++)
                printf("%s\n", audit_event_to_string(e));
        for (size_t i = 0; varlink_builtin_idl[i]; i++) {
                _cleanup_(varlink_interface_freep) VarlinkInterface *iface = NULL;

                if (varlink_interface_parse(varlink_builtin_idl[i], &iface, NULL, NULL) < 0) {
                        fprintf(stderr, "Out of memory.\n");
                        return EXIT_GENERIC;
                }
                for (size_t j = 0; j < varlink_interface_get_n_methods(iface); j++)
                        printf("%s.%s\n", varlink_interface_get_name(iface),
                               varlink_symbol_get_name(varlink_interface_get_method_by_index(iface, j)));
        }
        return 0;
}

/* --event=: one a record can have, or the reason why not (EXIT_USAGE). */
static int check_event(const char *value) {
        int r = audit_event_is_known(value);

        if (r < 0) {
                fprintf(stderr, "Out of memory.\n");
                return EXIT_GENERIC;
        }
        if (r == 0) {
                fprintf(stderr,
                        "--event=%s: tsmd writes no record of that event: give one of its own (guest-request, "
                        "open-context, reload, ...) or a method's full name (io.tsmd.Admin.ListDevices).\n",
                        value);
                return EXIT_USAGE;
        }
        return 0;
}

/* --since=/--until=: a time as journalctl takes it, relative to now (one now for both). */
static int parse_time_option(const char *option, const char *value, uint64_t now_usec, int64_t *ret) {
        uint64_t usec;
        int r;

        r = time_parse(value, now_usec, &usec);
        if (r == -ERANGE) {
                fprintf(stderr, "--%s=%s: out of range (before 1970, or too far ahead).\n", option, value);
                return EXIT_USAGE;
        }
        if (r < 0) {
                fprintf(stderr, "--%s=%s: not a time: give " TIME_FORMS ".\n", option, value);
                return EXIT_USAGE;
        }
        *ret = (int64_t) usec;
        return 0;
}

/* --from=, --to=, --limit=: a number, or why not (EXIT_USAGE). */
static int parse_number_option(const char *option, const char *value, long long *ret) {
        char *end;
        long long v;

        errno = 0;
        v = strtoll(value, &end, 10);
        /* ERANGE: strtoll() gave LLONG_MAX, which nobody asked for. */
        if (errno != 0 || *end || end == value || v < 0) {
                if (streq(option, "limit"))
                        fprintf(stderr, "--limit=%s: give 1 to %d (the most records tsmctl shows at once; "
                                "--from= pages on).\n", value, QUERY_LIMIT_MAX);
                else if (errno == ERANGE && v > 0)
                        fprintf(stderr, "--%s=%s: too large (a sequence number is at most %lld).\n", option,
                                value, LLONG_MAX);
                else
                        fprintf(stderr, "--%s=%s: not a number (0 or more).\n", option, value);
                return EXIT_USAGE;
        }
        *ret = v;
        return 0;
}

static int run(const TsmctlOptions *o, int argc, char *argv[]) {
        _cleanup_(tsm_client_freep) TsmClient *c = NULL;
        _cleanup_(json_object_putp) json_object *kept = NULL;
        json_object *params = json_object_new_object(), *reply, *list, *last;
        AuditArgs args = {};
        long long limit = QUERY_LIMIT_MAX, from = -1, to = -1;
        int64_t since_usec = -1, until_usec = -1;
        const char *from_arg = NULL, *to_arg = NULL;
        bool limited = false, more;
        uint64_t now = now_realtime_usec();
        size_t n, want;
        int r, opt;

        if (!params) {
                fprintf(stderr, "Out of memory.\n");
                return EXIT_GENERIC;
        }
        optind = 0;
        while ((opt = getopt_long(argc + 1, argv - 1, "", options, NULL)) >= 0) {
                const char *key = opt == 'f' ? "fromSeq" : opt == 't' ? "toSeq" : opt == 'u' ? "uid" :
                                  opt == 'd' ? "pciAddress" : opt == 's' ? "scope" : opt == 'r' ? "result" :
                                  opt == 'e' ? "event" : opt == 'S' ? "sinceUsec" : opt == 'U' ? "untilUsec" :
                                  opt == 'l' ? "limit" : NULL;
                long long v;

                if (opt == 'L') {
                        json_object_put(params);
                        return list_events();
                }
                if (!key) {
                        json_object_put(params);
                        return EXIT_USAGE;
                }
                if (strchr("SU", opt)) {
                        int64_t usec;

                        r = parse_time_option(opt == 'S' ? "since" : "until", optarg, now, &usec);
                        if (r > 0) {
                                json_object_put(params);
                                return r;
                        }
                        if (opt == 'S') {
                                args.since = optarg;
                                since_usec = usec;
                        } else {
                                args.until = optarg;
                                until_usec = usec;
                        }
                        r = json_object_add(params, key, json_object_new_int64(usec));
                } else if (strchr("ftul", opt)) {
                        if (opt == 'u')
                                r = parse_uid(optarg, &v);
                        else
                                r = parse_number_option(opt == 'f' ? "from" : opt == 't' ? "to" : "limit", optarg, &v);
                        if (r > 0) {
                                json_object_put(params);
                                return r;
                        }
                        if (opt == 'l') {
                                /* No records would be no answer; more than tsmd gives, a promise
                                 * it does not keep. */
                                if (v < 1 || v > QUERY_LIMIT_MAX) {
                                        fprintf(stderr, "--limit=%s: give 1 to %d (the most records tsmctl shows "
                                                "at once; --from= pages on).\n", optarg, QUERY_LIMIT_MAX);
                                        json_object_put(params);
                                        return EXIT_USAGE;
                                }
                                limit = v;
                                limited = true;
                                continue; /* asked for below */
                        }
                        if (opt == 'f') {
                                from = v;
                                from_arg = optarg;
                        } else if (opt == 't') {
                                to = v;
                                to_arg = args.to = optarg;
                        } else
                                args.uid = optarg;
                        r = json_object_add(params, key, json_object_new_int64(v));
                } else if (opt == 'r') {
                        _cleanup_free_ char *result = NULL;

                        args.result = optarg;
                        r = resolve_result(optarg, &result);
                        if (r > 0) {
                                json_object_put(params);
                                return r;
                        }
                        r = json_object_add(params, key, json_object_new_string(result));
                } else if (opt == 'e') {
                        r = check_event(optarg);
                        if (r > 0) {
                                json_object_put(params);
                                return r;
                        }
                        r = json_object_add(params, key, json_object_new_string(optarg));
                } else {
                        if (opt == 'd') {
                                if (!pci_address_is_plausible(optarg)) {
                                        say_bad_device(optarg);
                                        json_object_put(params);
                                        return EXIT_USAGE;
                                }
                                args.device = optarg;
                        }
                        if (opt == 's')
                                args.scope = optarg;
                        r = json_object_add(params, key, json_object_new_string(optarg));
                }
                if (r < 0) {
                        json_object_put(params);
                        fprintf(stderr, "Out of memory.\n");
                        return EXIT_GENERIC;
                }
        }
        /* A window no record can be in is a mistake, refused as tsmd refuses an --until=
         * before --since= (which it is asked again, in case). */
        if (from_arg && to_arg && to < from) {
                fprintf(stderr, "--to=%s is before --from=%s: no record can be in that window.\n", to_arg, from_arg);
                json_object_put(params);
                return EXIT_USAGE;
        }
        if (args.since && args.until && until_usec < since_usec) {
                fprintf(stderr, "--until=%s is before --since=%s: no record can be in that window.\n", args.until,
                        args.since);
                json_object_put(params);
                return EXIT_USAGE;
        }
        /* One more than asked for: whether there are more is then known, not guessed. Beyond
         * tsmd's MaxQueryRecords=, it answers nextSeq and query_on() goes on. */
        want = (size_t) limit + 1;
        r = json_object_add(params, "limit", json_object_new_int64((int64_t) want));
        if (r < 0) {
                json_object_put(params);
                fprintf(stderr, "Out of memory.\n");
                return EXIT_GENERIC;
        }

        r = tsmctl_fetch_explained(o, &c, "io.tsmd.Admin.QueryAudit", json_object_get(params), explain_invalid, &args,
                                   &reply);
        if (r == 0)
                r = tsmctl_reply_array(reply, "io.tsmd.Admin.QueryAudit", "records", &list);
        if (r == 0) {
                kept = json_object_get(reply); /* tsmctl's own goes with the next call */
                r = query_on(o, &c, params, &args, reply, list, want);
        }
        json_object_put(params);
        if (r > 0)
                return r;
        n = json_object_array_length(list);
        /* More than asked for: the one past them is not shown, it only told that there are more. */
        more = (long long) n > limit;
        if (more) {
                if (json_object_array_del_idx(list, (size_t) limit, n - (size_t) limit) < 0) {
                        fprintf(stderr, "Out of memory.\n");
                        return EXIT_GENERIC;
                }
                n = (size_t) limit;
        }
        if (o->json)
                tsmctl_print_json(reply);
        else
                tsmctl_print_audit_table(list, n);

        last = n > 0 ? json_object_array_get_idx(list, n - 1) : NULL;
        if (last && more) {
                long long next = (long long) json_object_get_int64(json_object_object_get(last, "seq")) + 1;

                fflush(stdout);
                if (more && limited)
                        fprintf(stderr, "More records match than --limit=%lld shows: continue with --from=%lld "
                                "(and the same filters).\n", limit, next);
                else
                        fprintf(stderr, "More records match than the first %zu shown (the most tsmctl shows at once): "
                                "continue with --from=%lld (and the same filters).\n", n, next);
        }
        if (from >= 0)
                note_rotated_out(c, from);
        warn_damaged(reply);
        return 0;
}

const TsmctlVerb verb_audit = {
        .name = "audit",
        .usage = "[--from=SEQ] [--to=SEQ] [--uid=USER] [--device=PCI] [--scope=S] [--result=R] [--event=NAME] "
                 "[--since=TIME] [--until=TIME] [--limit=N]",
        .summary = "Query the audit log",
        .max_args = 0,
        .options = options,
        .run = run,
};
