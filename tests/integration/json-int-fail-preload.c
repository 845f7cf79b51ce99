/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Preloaded into tsmd by test-integration-guest, and into tsmctl by test-tsmctl (LD_PRELOAD):
 * json-c's json_object_object_add_ex() fails (as out of memory) every second time it is to add
 * the number $TSMD_TEST_FAIL_INT64 to an object, and json_object_new_int64() every second time it
 * is to make $TSMD_TEST_FAIL_NEW_INT64. tsmd's parser adds (and makes) it reading a client's call
 * that carries it; what the worker then builds of it (an error reply naming it) runs out of
 * memory. And json_tokener_parse() fails once for a text holding $TSMD_TEST_FAIL_PARSE_MATCH (an
 * audit record's line, for its followers), json_object_new_string() every second time it is to
 * make $TSMD_TEST_FAIL_NEW_STRING. Only the main thread's calls count and fail: tsmd's loop, where
 * calls are read and answers built, and all of tsmctl. Runs in: tsmd's processes and tsmctl, under
 * test only.
 */

#include <dlfcn.h>
#include <stdbool.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* json-c's, interposed: exported in spite of -fvisibility=hidden; the real one is the next
 * definition (RTLD_NEXT). json-c's other functions are looked up too, as the monitor, which
 * never adds to an object, does not link json-c. */
__attribute__((visibility("default"))) int json_object_object_add_ex(struct json_object *obj, const char *key,
                                                                     struct json_object *value, unsigned opts);
__attribute__((visibility("default"))) struct json_object *json_object_new_int64(int64_t i);
__attribute__((visibility("default"))) struct json_object *json_tokener_parse(const char *str);
__attribute__((visibility("default"))) struct json_object *json_object_new_string(const char *s);

/* The other threads make and add the same numbers at times of their own, which would move which
 * of the loop's fails: the audit thread reads the last records of its log again when a reload
 * reopens it (a test's vDevice id with them), in the middle of what the loop tells of the
 * reload. Nor do the counters need a lock so. */
static bool on_main_thread(void) {
        return gettid() == getpid();
}

int json_object_object_add_ex(struct json_object *obj, const char *key, struct json_object *value, unsigned opts) {
        static int (*real)(struct json_object *, const char *, struct json_object *, unsigned);
        static int (*is_type)(const struct json_object *, enum json_type);
        static int64_t (*get_int64)(const struct json_object *);
        static unsigned seen = 0;
        const char *fail = getenv("TSMD_TEST_FAIL_INT64");

        if (!real) {
                real = dlsym(RTLD_NEXT, "json_object_object_add_ex");
                is_type = dlsym(RTLD_NEXT, "json_object_is_type");
                get_int64 = dlsym(RTLD_NEXT, "json_object_get_int64");
        }
        if (!real || !is_type || !get_int64)
                abort();
        if (fail && value && on_main_thread() && is_type(value, json_type_int) &&
            get_int64(value) == strtoll(fail, NULL, 10) && seen++ % 2 == 1)
                return -1;
        return real(obj, key, value, opts);
}

struct json_object *json_object_new_int64(int64_t i) {
        static struct json_object *(*real)(int64_t);
        static unsigned seen = 0;
        const char *fail = getenv("TSMD_TEST_FAIL_NEW_INT64");

        if (!real)
                real = dlsym(RTLD_NEXT, "json_object_new_int64");
        if (!real)
                abort();
        if (fail && i == strtoll(fail, NULL, 10) && on_main_thread() && seen++ % 2 == 1)
                return NULL;
        return real(i);
}

/* The first json_tokener_parse() of a text holding $TSMD_TEST_FAIL_PARSE_MATCH fails. */
struct json_object *json_tokener_parse(const char *str) {
        static struct json_object *(*real)(const char *);
        static bool done = false;
        const char *match = getenv("TSMD_TEST_FAIL_PARSE_MATCH");

        if (!real)
                real = dlsym(RTLD_NEXT, "json_tokener_parse");
        if (!real)
                abort();
        if (match && !done && str && on_main_thread() && strstr(str, match)) {
                done = true;
                return NULL;
        }
        return real(str);
}

struct json_object *json_object_new_string(const char *s) {
        static struct json_object *(*real)(const char *);
        static unsigned seen = 0;
        const char *fail = getenv("TSMD_TEST_FAIL_NEW_STRING");

        if (!real)
                real = dlsym(RTLD_NEXT, "json_object_new_string");
        if (!real)
                abort();
        if (fail && s && on_main_thread() && strcmp(s, fail) == 0 && seen++ % 2 == 1)
                return NULL;
        return real(s);
}
