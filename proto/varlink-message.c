/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Varlink call/reply encoding and strict decoding. Runs in: worker, clients. */

#include <ctype.h>

#include "json-util.h"
#include "varlink-message.h"
#include "varlink-stream.h"

/* The name grammar in ASCII, whatever the locale. */
static bool ascii_upper(char c) {
        return c >= 'A' && c <= 'Z';
}

static bool ascii_alpha(char c) {
        return ascii_upper(c) || (c >= 'a' && c <= 'z');
}

static bool ascii_alnum(char c) {
        return ascii_alpha(c) || (c >= '0' && c <= '9');
}

/* [A-Za-z]([-]*[A-Za-z0-9])*(\.[A-Za-z0-9]([-]*[A-Za-z0-9])*)+
 * varlink.org allows uppercase since 2021 (varlink.github.io#19), as deployed by systemd
 * ("io.systemd.UserDatabase"); the older text said [a-z] only. */
bool varlink_interface_name_valid(const char *s, size_t n) {
        size_t labels = 0;

        if (n == 0 || !ascii_alpha(s[0]))
                return false;

        for (size_t k = 0; k < n;) {
                /* One label: [A-Za-z0-9]([-]*[A-Za-z0-9])* */
                if (!ascii_alnum(s[k]))
                        return false;
                k++;

                while (k < n && s[k] != '.') {
                        while (k < n && s[k] == '-')
                                k++;
                        if (k >= n || !ascii_alnum(s[k]))
                                return false;
                        k++;
                }

                labels++;

                if (k < n) {
                        k++; /* the '.' */
                        if (k >= n)
                                return false;
                }
        }

        return labels >= 2;
}

/* [A-Z][A-Za-z0-9]* */
bool varlink_symbol_name_valid(const char *s, size_t n) {
        if (n == 0 || !ascii_upper(s[0]))
                return false;

        for (size_t k = 1; k < n; k++)
                if (!ascii_alnum(s[k]))
                        return false;

        return true;
}

bool varlink_error_name_valid(const char *error) {
        const char *dot;
        size_t n;

        if (!error)
                return false;
        n = strnlen(error, VARLINK_METHOD_NAME_MAX + 1);
        if (n > VARLINK_METHOD_NAME_MAX)
                return false;
        dot = strrchr(error, '.');
        return dot && varlink_interface_name_valid(error, (size_t) (dot - error)) &&
               varlink_symbol_name_valid(dot + 1, n - (size_t) (dot + 1 - error));
}

bool varlink_method_name_valid(const char *method, const char **ret_dot) {
        const char *dot;

        /* Bounded, as error replies echo it: an answer must never outgrow a message. */
        if (!method || strnlen(method, VARLINK_METHOD_NAME_MAX + 1) > VARLINK_METHOD_NAME_MAX)
                return false;
        dot = strrchr(method, '.');
        if (!dot || dot == method || !isupper((unsigned char) dot[1]))
                return false;
        for (const char *p = dot + 1; *p; p++)
                if (!isalnum((unsigned char) *p))
                        return false;
        /* The interface part is checked against registered names; keep it to the characters
         * of interface names (upper case included, as systemd's "io.systemd.Resolve"). */
        for (const char *p = method; p < dot; p++)
                if (!isalnum((unsigned char) *p) && *p != '.' && *p != '-')
                        return false;
        if (ret_dot)
                *ret_dot = dot;
        return true;
}

/* Whether the JSON string s holds no NUL (an escaped one, "\u0000"), which C string functions
 * would take for its end. */
static bool string_has_no_nul(json_object *s) {
        return (size_t) json_object_get_string_len(s) == strlen(json_object_get_string(s));
}

static json_object *empty_object(void) {
        /* A shared immutable {} would be nicer; json-c objects are refcounted, not const. */
        return json_object_new_object();
}

int varlink_message_parse_call(json_object *msg, VarlinkCallMessage *ret, const char **ret_bad_key) {
        VarlinkCallMessage c = {};
        const char *bad = NULL;

        assert(msg);
        assert(ret);

        json_object_object_foreach(msg, key, value) {
                if (streq(key, "method")) {
                        /* An escaped NUL would cut the name short: "X.Y\u0000junk" is not X.Y. */
                        if (!json_object_is_type(value, json_type_string) || !string_has_no_nul(value)) {
                                bad = "method";
                                break;
                        }
                        c.method = json_object_get_string(value);
                } else if (streq(key, "parameters")) {
                        if (json_object_is_type(value, json_type_null))
                                continue;
                        if (!json_object_is_type(value, json_type_object)) {
                                bad = "parameters";
                                break;
                        }
                        c.parameters = value;
                } else if (streq(key, "oneway") || streq(key, "more") || streq(key, "upgrade")) {
                        unsigned f = streq(key, "oneway") ? VARLINK_CALL_ONEWAY :
                                     streq(key, "more")   ? VARLINK_CALL_MORE :
                                                            VARLINK_CALL_UPGRADE;

                        if (json_object_is_type(value, json_type_null))
                                continue;
                        if (!json_object_is_type(value, json_type_boolean)) {
                                bad = key;
                                break;
                        }
                        if (json_object_get_boolean(value))
                                c.flags |= f;
                } else {
                        bad = key;
                        break;
                }
        }

        if (!bad && !c.method)
                bad = "method";
        if (!bad && !varlink_method_name_valid(c.method, NULL))
                bad = "method";
        if (!bad && (c.flags & VARLINK_CALL_ONEWAY) && (c.flags & (VARLINK_CALL_MORE | VARLINK_CALL_UPGRADE)))
                bad = (c.flags & VARLINK_CALL_MORE) ? "more" : "upgrade";
        if (bad) {
                if (ret_bad_key)
                        *ret_bad_key = bad;
                return -EBADMSG;
        }

        if (!c.parameters) {
                /* Attach an empty object to the message so its lifetime follows the message. */
                json_object *e = empty_object();
                if (!e || json_object_add_literal(msg, "parameters", e) < 0)
                        return -ENOMEM;
                c.parameters = e;
        }

        *ret = c;
        return 0;
}

int varlink_message_parse_reply(json_object *msg, VarlinkReplyMessage *ret) {
        VarlinkReplyMessage r = {};

        assert(msg);
        assert(ret);

        json_object_object_foreach(msg, key, value) {
                if (streq(key, "parameters")) {
                        if (json_object_is_type(value, json_type_null))
                                continue;
                        if (!json_object_is_type(value, json_type_object))
                                return -EBADMSG;
                        r.parameters = value;
                } else if (streq(key, "error")) {
                        if (json_object_is_type(value, json_type_null))
                                continue;
                        /* SECURITY: a VMM reports the name (tsm_client_get_error_name(),
                         * tsmctl prints it): one that is not a Varlink error name (escape
                         * sequences, a newline) is a broken peer, not an answer. */
                        if (!json_object_is_type(value, json_type_string) || !string_has_no_nul(value) ||
                            !varlink_error_name_valid(json_object_get_string(value)))
                                return -EBADMSG;
                        r.error = json_object_get_string(value);
                } else if (streq(key, "continues")) {
                        if (json_object_is_type(value, json_type_null))
                                continue;
                        if (!json_object_is_type(value, json_type_boolean))
                                return -EBADMSG;
                        r.continues = json_object_get_boolean(value);
                } else
                        return -EBADMSG;
        }

        /* An error ends a call: an error that claims more follows is a protocol violation. */
        if (r.error && r.continues)
                return -EBADMSG;

        if (!r.parameters) {
                json_object *e = empty_object();
                if (!e || json_object_add_literal(msg, "parameters", e) < 0)
                        return -ENOMEM;
                r.parameters = e;
        }

        *ret = r;
        return 0;
}

int varlink_parameters_parse(const char *text, json_object **ret) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_json_ json_object *p = NULL;
        /* The call around them is one level and up to three values: itself, "method", "more". */
        unsigned depth = VARLINK_LIMITS_DEFAULT.max_depth - 1;
        size_t values = VARLINK_LIMITS_DEFAULT.max_json_values - 3;
        int r;

        assert(text);
        assert(ret);

        r = json_tokener_new_strict(depth, &tok);
        if (r < 0)
                return r;
        r = json_parse_strict(tok, depth, values, text, strlen(text), &p);
        if (r == -ENOMEM || r == -ELOOP || r == -E2BIG)
                return r;
        if (r < 0 || !json_object_is_type(p, json_type_object))
                return -EINVAL;
        *ret = TAKE_PTR(p);
        return 0;
}

int varlink_message_new_call(const char *method, json_object *parameters, unsigned flags,
                             json_object **ret) {
        _cleanup_(json_object_putp) json_object *p = parameters, *m = NULL;
        json_object *name;

        assert(method);
        assert(ret);

        m = json_object_new_object();
        if (!m)
                return -ENOMEM;
        /* json-c adds a NULL as null: a name that could not be allocated would go as none. */
        name = json_object_new_string(method);
        if (!name || json_object_add_literal(m, "method", name) < 0)
                return -ENOMEM;
        if (!p) {
                p = empty_object();
                if (!p)
                        return -ENOMEM;
        }
        if (json_object_add_literal(m, "parameters", TAKE_PTR(p)) < 0)
                return -ENOMEM;
        if ((flags & VARLINK_CALL_ONEWAY) && json_object_add_literal(m, "oneway", json_object_new_boolean(1)) < 0)
                return -ENOMEM;
        if ((flags & VARLINK_CALL_MORE) && json_object_add_literal(m, "more", json_object_new_boolean(1)) < 0)
                return -ENOMEM;
        if ((flags & VARLINK_CALL_UPGRADE) && json_object_add_literal(m, "upgrade", json_object_new_boolean(1)) < 0)
                return -ENOMEM;

        *ret = TAKE_PTR(m);
        return 0;
}

int varlink_message_new_reply(json_object *parameters, bool continues, json_object **ret) {
        _cleanup_(json_object_putp) json_object *p = parameters, *m = NULL;

        assert(ret);

        m = json_object_new_object();
        if (!m)
                return -ENOMEM;
        if (!p) {
                p = empty_object();
                if (!p)
                        return -ENOMEM;
        }
        if (json_object_add_literal(m, "parameters", TAKE_PTR(p)) < 0)
                return -ENOMEM;
        if (continues && json_object_add_literal(m, "continues", json_object_new_boolean(1)) < 0)
                return -ENOMEM;

        *ret = TAKE_PTR(m);
        return 0;
}

int varlink_message_new_error(const char *error, json_object *parameters, json_object **ret) {
        _cleanup_(json_object_putp) json_object *p = parameters, *m = NULL;
        json_object *name;

        assert(error);
        assert(ret);

        m = json_object_new_object();
        if (!m)
                return -ENOMEM;
        /* As in varlink_message_new_call(): never "error": null. */
        name = json_object_new_string(error);
        if (!name || json_object_add_literal(m, "error", name) < 0)
                return -ENOMEM;
        if (!p) {
                p = empty_object();
                if (!p)
                        return -ENOMEM;
        }
        if (json_object_add_literal(m, "parameters", TAKE_PTR(p)) < 0)
                return -ENOMEM;

        *ret = TAKE_PTR(m);
        return 0;
}

int varlink_message_new_error_errno(const char *error, int errnum, json_object **ret) {
        json_object *p = json_object_new_object();

        if (!p || json_object_add_literal(p, "errno", json_object_new_int(abs(errnum))) < 0) {
                json_object_put(p);
                return -ENOMEM;
        }
        return varlink_message_new_error(error, p, ret);
}
