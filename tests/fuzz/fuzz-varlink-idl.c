/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for proto/varlink-idl.c: parses arbitrary text as Varlink IDL and, when it
 * parses, validates a few fixed JSON objects against every method's input and output and every
 * error it can look up. Looks for crashes, leaks, unbounded recursion and sanitizer reports.
 */

#include <stdint.h>
#include <stdio.h>

#include "varlink-idl.h"

/* Larger inputs only make each run slower without reaching new code. */
#define INPUT_MAX (64U * 1024U)

static const char *const json_samples[] = {
        "{}",
        "null",
        "[]",
        "{\"a\": 1, \"b\": \"x\", \"c\": true, \"d\": 1.5, \"e\": null}",
        "{\"a\": [1, 2, {\"x\": [null]}], \"b\": {\"k\": {}, \"l\": {\"m\": \"n\"}}}",
        "{\"value\": 9223372036854775808, \"name\": \"a\\u0000b\", \"list\": [[[[[[]]]]]]}",
        "{\"x\": {\"x\": {\"x\": {\"x\": {\"x\": {\"x\": {\"x\": {\"x\": {}}}}}}}}}",
};

static json_object *samples[sizeof(json_samples) / sizeof(json_samples[0])];

/* The contract: a path exactly on -EINVAL, and no other error for a well-formed symbol. */
static void check_result(int r, char *field) {
        if ((r == -EINVAL) != (field != NULL) || (r < 0 && r != -EINVAL && r != -ENOMEM))
                abort();
        free(field);
}

static void validate_all(const VarlinkSymbol *s, bool method) {
        for (size_t k = 0; k < ELEMENTSOF(samples); k++) {
                char *field = NULL;
                int r;

                if (method) {
                        r = varlink_method_validate_input(s, samples[k], &field);
                        check_result(r, field);
                        field = NULL;
                        r = varlink_method_validate_output(s, samples[k], &field);
                } else
                        r = varlink_error_validate(s, samples[k], &field);
                check_result(r, field);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(varlink_interface_freep) VarlinkInterface *i = NULL;
        _cleanup_free_ char *text = NULL;
        unsigned line = 0, column = 0;
        int r;

        if (size > INPUT_MAX)
                return 0;

        if (!samples[0])
                for (size_t k = 0; k < ELEMENTSOF(samples); k++)
                        samples[k] = json_tokener_parse(json_samples[k]); /* kept for the process */

        /* The parser takes a C string: NUL-terminate a copy (an embedded NUL ends the text). */
        text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;

        r = varlink_interface_parse(text, &i, &line, &column);
        if (r == -EBADMSG) {
                if (line == 0 || column == 0)
                        abort(); /* positions are 1-based */
                return 0;
        }
        if (r < 0)
                return 0;

        if (strcmp(varlink_interface_get_text(i), text) != 0)
                abort();

        for (size_t k = 0; k < varlink_interface_get_n_methods(i); k++) {
                const VarlinkSymbol *m = varlink_interface_get_method_by_index(i, k);

                if (varlink_interface_find_method(i, varlink_symbol_get_name(m)) != m)
                        abort();
                (void) varlink_method_requires_more(m);
                validate_all(m, true);
        }

        /* Errors can only be looked up by name: try the names the seed corpus uses. */
        for (const char *const *name = (const char *const[]) { "Failed", "NotFound", "E", "InvalidParameter",
                                                               "Denied", "BackendError", "ReloadFailed",
                                                               "System", "NoSuchDevice", NULL };
             *name; name++) {
                const VarlinkSymbol *e = varlink_interface_find_error(i, *name);

                if (e)
                        validate_all(e, false);
        }

        return 0;
}
