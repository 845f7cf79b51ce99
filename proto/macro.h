/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Scope-based cleanup, ownership transfer and small helpers, in the manner of systemd's
 * macro.h. Used by every process; depends on libc only, so the privileged side may include
 * it. Cleanup helpers for library objects (json-c, libevent, libcap) live next to the code
 * that links those libraries: see json-util.h, event-util.h and daemon/capability.h.
 */
#pragma once

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _sentinel_ __attribute__((sentinel))
#define _noreturn_ __attribute__((noreturn))
#define _pure_ __attribute__((pure))
#define _const_ __attribute__((const))
#define _likely_(x) (__builtin_expect(!!(x), 1))
#define _unlikely_(x) (__builtin_expect(!!(x), 0))
#define _packed_ __attribute__((packed))
#define _public_ __attribute__((visibility("default")))
#define _hidden_ __attribute__((visibility("hidden")))
#define _fallthrough_ __attribute__((fallthrough))
#define _warn_unused_result_ __attribute__((warn_unused_result))

#define ELEMENTSOF(x)                                                                              \
        (__builtin_choose_expr(                                                                    \
                !__builtin_types_compatible_p(typeof(x), typeof(&*(x))),                           \
                sizeof(x) / sizeof((x)[0]),                                                        \
                (void) 0))

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define CLAMP(x, lo, hi) MIN(MAX((x), (lo)), (hi))

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

#define streq(a, b) (strcmp((a), (b)) == 0)
#define strneq(a, b, n) (strncmp((a), (b), (n)) == 0)
#define isempty(s) (!(s) || !(s)[0])

static inline const char *strna(const char *s) {
        return s ?: "n/a";
}

static inline const char *strempty(const char *s) {
        return s ?: "";
}

/* Takes ownership of a pointer/fd out of a cleanup-managed variable. */
#define TAKE_GENERIC(var, type, nullvalue)                                                         \
        ({                                                                                         \
                type *_pvar_ = &(var);                                                             \
                type _var_ = *_pvar_;                                                              \
                type _nullvalue_ = nullvalue;                                                      \
                *_pvar_ = _nullvalue_;                                                             \
                _var_;                                                                             \
        })
#define TAKE_PTR_TYPE(ptr, type) TAKE_GENERIC(ptr, type, NULL)
#define TAKE_PTR(ptr) TAKE_PTR_TYPE(ptr, typeof(ptr))
#define TAKE_FD(fd) TAKE_GENERIC(fd, int, -EBADF)

/* Converts a libc-style return (-1 + errno) into a negative errno. */
static inline int negative_errno(void) {
        /* errno should never be zero after a failure; if it is, report EIO rather than "success". */
        return errno > 0 ? -errno : -EIO;
}
#define RET_NERRNO(expr)                                                                           \
        ({                                                                                         \
                typeof(expr) _r_ = (expr);                                                         \
                _r_ < 0 ? negative_errno() : _r_;                                                  \
        })

#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                    \
        static inline void func##p(type *p) {                                                      \
                if (*p)                                                                            \
                        *p = func(*p);                                                             \
        }

/* For destructors that return something other than the "null" value (int, void). */
#define DEFINE_TRIVIAL_CLEANUP_FUNC_FULL(type, func, empty)                                        \
        static inline void func##p(type *p) {                                                      \
                if (*p != (empty)) {                                                               \
                        (void) func(*p);                                                           \
                        *p = (empty);                                                              \
                }                                                                                  \
        }

static inline void freep(void *p) {
        free(*(void **) p);
        *(void **) p = NULL;
}
#define _cleanup_free_ _cleanup_(freep)

static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

/* Closes an fd, preserving errno, and returns -EBADF so callers can write fd = safe_close(fd). */
static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void) close(fd);
                errno = saved;
        }
        return -EBADF;
}
static inline void closep(int *fd) {
        *fd = safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

static inline void close_many(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                fds[i] = safe_close(fds[i]);
}

/* Public entry points check their arguments and return an error instead of asserting. */
#define assert_return(expr, r)                                                                     \
        do {                                                                                       \
                if (_unlikely_(!(expr)))                                                           \
                        return (r);                                                                \
        } while (false)

#define DIV_ROUND_UP(x, y) (((x) + (y) - 1) / (y))

static inline bool size_multiply_overflow(size_t size, size_t need) {
        return need != 0 && size > SIZE_MAX / need;
}

/* calloc()-style array allocation that checks for overflow. */
#define new(t, n) ((t *) (size_multiply_overflow(sizeof(t), (n)) ? NULL : malloc(sizeof(t) * (n))))
#define new0(t, n) ((t *) calloc((n) ?: 1, sizeof(t)))

/* CLOCK_MONOTONIC in microseconds: for deadlines and durations. */
uint64_t now_monotonic_usec(void);
/* CLOCK_REALTIME in microseconds: for timestamps. */
uint64_t now_realtime_usec(void);

/* A deadline usec after now, UINT64_MAX where that would wrap: a caller's timeout of "very
 * long" (UINT64_MAX) must not turn into a deadline in the past. */
static inline uint64_t usec_add(uint64_t now, uint64_t usec) {
        return now > UINT64_MAX - usec ? UINT64_MAX : now + usec;
}

/* A poll() timeout for usec, in milliseconds rounded up, at most INT_MAX (some 24 days: the
 * caller's loop polls again), so that it never wraps to a negative (forever) or 0 (a spin). */
static inline int usec_to_poll_timeout(uint64_t usec) {
        uint64_t ms = usec / 1000U + (usec % 1000U != 0);

        return ms > INT_MAX ? INT_MAX : (int) ms;
}

/* The longest uint64_t in decimal, and its NUL. */
#define DECIMAL_U64_MAX 21U

/* v in decimal, NUL-terminated, at the end of buf; returns where it starts. What snprintf() with
 * PRIu64 writes, without its ~600 instructions: the worker writes several per guest request. */
static inline char *format_u64(uint64_t v, char buf[static DECIMAL_U64_MAX]) {
        char *q = buf + DECIMAL_U64_MAX - 1;

        *q = '\0';
        do
                *--q = (char) ('0' + v % 10);
        while ((v /= 10) > 0);
        return q;
}

/* Whether the n bytes at a and b are equal, in a time that depends on n only: for comparing a
 * secret (a token, a nonce) with what a caller guessed, leaking not how much of it matched. */
bool memeq_consttime(const void *a, const void *b, size_t n);

/* Makes s (NUL-terminated, changed in place) fit to be shown and sent as a JSON string: every
 * control character and every byte that does not begin a valid UTF-8 sequence is made '?';
 * longer than max bytes (max >= 3), it is cut to at most max, ending in "..." and not inside a
 * character. For text quoted from files, to a client or the journal. */
void string_shorten_printable(char *s, size_t max);

/* fstat() of an fd a peer passed, without calling into its file system: FUSE answers
 * statx(AT_STATX_DONT_SYNC) from what it has cached, where fstat() sends GETATTR and waits on
 * the server, which may be the peer. Fills st_dev, st_ino, st_mode and st_rdev only. */
int fstat_cached(int fd, struct stat *ret);

/* chmod() of an O_PATH fd: the kernel's fchmod() wants a file opened for reading or writing,
 * which a directory without owner read permission is not to its owner. */
int fd_chmod(int fd, mode_t mode);

/* Writes all n bytes of buf, again where a signal cut a write short; -EIO for a write of none. */
int write_all(int fd, const void *buf, size_t n);

/* gid_t in ascending order, for qsort() and bsearch(). */
int cmp_gid(const void *a, const void *b);

/* Grows *p (holding *allocated elements) to at least need elements; returns NULL on OOM. */
void *greedy_realloc(void **p, size_t *allocated, size_t need, size_t size);
#define GREEDY_REALLOC(array, allocated, need)                                                     \
        greedy_realloc((void **) &(array), &(allocated), (need), sizeof((array)[0]))

/* Enum <-> string tables: one array indexed by enum value. */
#define DEFINE_STRING_TABLE_LOOKUP(name, type)                                                     \
        const char *name##_to_string(type i) {                                                     \
                if (i < 0 || (size_t) i >= ELEMENTSOF(name##_table))                               \
                        return NULL;                                                               \
                return name##_table[i];                                                            \
        }                                                                                          \
        type name##_from_string(const char *s) {                                                   \
                if (!s)                                                                            \
                        return (type) - EINVAL;                                                    \
                for (size_t i = 0; i < ELEMENTSOF(name##_table); i++)                              \
                        if (name##_table[i] && streq(name##_table[i], s))                          \
                                return (type) i;                                                   \
                return (type) - EINVAL;                                                            \
        }
