/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* errno <-> Varlink error names. Runs in: worker, clients. */

#include "varlink-errors.h"

int varlink_error_to_errno(const char *error) {
        static const struct {
                const char *name;
                int error;
        } table[] = {
                { VARLINK_ERROR_INTERFACE_NOT_FOUND, EADDRNOTAVAIL },
                { VARLINK_ERROR_METHOD_NOT_FOUND, ENXIO },
                { VARLINK_ERROR_METHOD_NOT_IMPLEMENTED, ENOTTY },
                { VARLINK_ERROR_INVALID_PARAMETER, EINVAL },
                { VARLINK_ERROR_PERMISSION_DENIED, EACCES },
                { VARLINK_ERROR_EXPECTED_MORE, EBADE },
                { VARLINK_ERROR_DISCONNECTED, ECONNRESET },
                { VARLINK_ERROR_TIMEOUT, ETIMEDOUT },
                { VARLINK_ERROR_PROTOCOL, EPROTO },
        };

        if (!error)
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (streq(table[i].name, error))
                        return table[i].error;
        return EBADR;
}

#define E(x) [x] = #x
static const char *const errno_names[] = {
        E(EPERM),     E(ENOENT),     E(ESRCH),      E(EINTR),      E(EIO),
        E(ENXIO),     E(E2BIG),      E(EBADF),      E(EAGAIN),     E(ENOMEM),
        E(EACCES),    E(EFAULT),     E(EBUSY),      E(EEXIST),     E(ENODEV),
        E(EINVAL),    E(ENFILE),     E(EMFILE),     E(ENOTTY),     E(ENOSPC),
        E(EPIPE),     E(ERANGE),     E(ENOSYS),     E(ELOOP),      E(ENOMSG),
        E(EBADE),     E(EBADR),      E(EPROTO),     E(EBADMSG),    E(EOVERFLOW),
        E(EMSGSIZE),  E(EOPNOTSUPP), E(EADDRINUSE), E(ENOBUFS),    E(ECONNRESET),
        E(ETIMEDOUT), E(ENOTCONN),   E(ESTALE),     E(EDQUOT),     E(ECANCELED),
        E(EOWNERDEAD), E(ENOTRECOVERABLE), E(EUSERS), E(ENOLINK), E(ENOMEDIUM),
};
#undef E

const char *errno_to_name(int error) {
        if (error < 0)
                error = -error;
        if ((size_t) error >= ELEMENTSOF(errno_names))
                return NULL;
        return errno_names[error];
}

int errno_from_name(const char *name) {
        if (name)
                for (size_t i = 1; i < ELEMENTSOF(errno_names); i++)
                        if (errno_names[i] && streq(errno_names[i], name))
                                return (int) i;
        return -ENOENT;
}
