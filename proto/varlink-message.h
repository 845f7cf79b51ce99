/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Varlink call and reply objects: strict decoding of what arrives and construction of what
 * leaves. Runs in: worker, clients.
 */
#pragma once

#include <json-c/json.h>

#include "macro.h"

typedef enum VarlinkCallFlags {
        VARLINK_CALL_ONEWAY = 1 << 0,
        VARLINK_CALL_MORE = 1 << 1,
        VARLINK_CALL_UPGRADE = 1 << 2,
} VarlinkCallFlags;

typedef struct VarlinkCallMessage {
        const char *method;     /* borrowed from the message object */
        json_object *parameters; /* borrowed; never NULL: missing or null becomes {} */
        unsigned flags;         /* VarlinkCallFlags */
} VarlinkCallMessage;

typedef struct VarlinkReplyMessage {
        json_object *parameters; /* borrowed; never NULL */
        const char *error;       /* borrowed; NULL for a successful reply */
        bool continues;
} VarlinkReplyMessage;

/* Decodes a call. Unknown top-level keys, wrong types, a malformed method name (one with an
 * escaped NUL too, which would cut it short) or both oneway and more are -EBADMSG, with the
 * offending key in *ret_bad_key (a static string or a string owned by msg). */
int varlink_message_parse_call(json_object *msg, VarlinkCallMessage *ret, const char **ret_bad_key);

/* Decodes a reply, as strictly as sd-varlink: only parameters, continues, error; an error
 * name that is not one (varlink_error_name_valid(), or with an escaped NUL) is -EBADMSG. */
int varlink_message_parse_reply(json_object *msg, VarlinkReplyMessage *ret);

/* Parses text, a call's parameters as a program or a user wrote them, as strictly as a peer
 * reads the call (json_parse_strict(), the call around them within the default depth and
 * values limits): one JSON object and nothing else. -ELOOP deeper than those limits let it be,
 * -E2BIG with more values, -EINVAL for anything else, -ENOMEM. */
int varlink_parameters_parse(const char *text, json_object **ret);

/* Builders. They take ownership of `parameters` (which may be NULL for {}). */
int varlink_message_new_call(const char *method, json_object *parameters, unsigned flags,
                             json_object **ret);
int varlink_message_new_reply(json_object *parameters, bool continues, json_object **ret);
int varlink_message_new_error(const char *error, json_object *parameters, json_object **ret);
/* An error whose one parameter is {"errno": |errnum|} (AuditFailed, ConnectFailed, ...). */
int varlink_message_new_error_errno(const char *error, int errnum, json_object **ret);

/* Interface names are reverse-domain names (at most 253 bytes as DNS has them); with a dot
 * and a method name, 255 holds any real one. */
#define VARLINK_METHOD_NAME_MAX 255U
/* True for a syntactically valid "interface.Method" name of at most VARLINK_METHOD_NAME_MAX
 * bytes; *ret_dot points at the dot. */
bool varlink_method_name_valid(const char *method, const char **ret_dot);
/* The Varlink name grammar, over n bytes of s: an interface name (two or more labels of
 * [A-Za-z0-9] and inner '-', the first starting with a letter), and a type, method or error
 * name ([A-Z][A-Za-z0-9]*). */
bool varlink_interface_name_valid(const char *s, size_t n);
bool varlink_symbol_name_valid(const char *s, size_t n);
/* True for "interface.Error" by that grammar, of at most VARLINK_METHOD_NAME_MAX bytes. */
bool varlink_error_name_valid(const char *error);
