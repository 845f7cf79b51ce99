/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Builds the message systemd's device_monitor_send_device() sends (sd-device-monitor.c,
 * systemd 252): struct monitor_netlink_header with prefix "libudev", magic 0xfeedcafe in
 * network order, the subsystem's MurmurHash2 for the receivers' BPF filter, then the
 * properties as NUL-separated KEY=VALUE strings. The receiver checks SCM_CREDENTIALS uid 0,
 * which the kernel fills in from our own credentials.
 *
 * Runs in: tests only.
 */

#define _GNU_SOURCE 1
#include <endian.h>
#include <errno.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "macro.h"
#include "uevent-sender.h"

#define UDEV_MONITOR_MAGIC 0xfeedcafeU
#define MONITOR_GROUP_UDEV 2U

/* Layout must match systemd's monitor_netlink_header byte for byte. */
typedef struct MonitorNetlinkHeader {
        char prefix[8];
        unsigned magic;
        unsigned header_size;
        unsigned properties_off;
        unsigned properties_len;
        unsigned filter_subsystem_hash;
        unsigned filter_devtype_hash;
        unsigned filter_tag_bloom_hi;
        unsigned filter_tag_bloom_lo;
} MonitorNetlinkHeader;
_Static_assert(sizeof(MonitorNetlinkHeader) == 40, "monitor_netlink_header is 40 bytes");

uint32_t uevent_murmur_hash2(const void *key, size_t len, uint32_t seed) {
        /* Austin Appleby's MurmurHash2, as in systemd's src/basic/MurmurHash2.c (native
         * byte order reads, like systemd, so the hashes agree on any host). */
        const uint32_t m = 0x5bd1e995;
        const int r = 24;
        const unsigned char *data = key;
        uint32_t h = seed ^ (uint32_t) len;

        while (len >= 4) {
                uint32_t k;

                memcpy(&k, data, 4);
                k *= m;
                k ^= k >> r;
                k *= m;
                h *= m;
                h ^= k;
                data += 4;
                len -= 4;
        }

        switch (len) {
        case 3:
                h ^= (uint32_t) data[2] << 16;
                __attribute__((fallthrough));
        case 2:
                h ^= (uint32_t) data[1] << 8;
                __attribute__((fallthrough));
        case 1:
                h ^= data[0];
                h *= m;
        }

        h ^= h >> 13;
        h *= m;
        h ^= h >> 15;
        return h;
}

static int only_loopback(void) {
        struct if_nameindex *ifs;
        int r = 1;

        ifs = if_nameindex();
        if (!ifs)
                return negative_errno();
        for (struct if_nameindex *i = ifs; i->if_index != 0; i++)
                if (!streq(i->if_name, "lo"))
                        r = 0;
        if_freenameindex(ifs);
        return r;
}

int uevent_in_private_netns(void) {
        struct stat a, b;

        if (stat("/proc/self/ns/net", &a) < 0)
                return negative_errno();
        if (stat("/proc/1/ns/net", &b) >= 0)
                return a.st_dev != b.st_dev || a.st_ino != b.st_ino;
        if (errno != EACCES && errno != EPERM)
                return negative_errno();

        /* PID 1's namespace can be unreadable (containers, LSMs). A namespace made by
         * "unshare -n" has nothing but lo; the host's has real interfaces. */
        return only_loopback();
}

/* Appends "<key><value>\0": properties are NUL-separated KEY=VALUE strings. */
static int append(char **buf, size_t *len, const char *key, const char *value) {
        size_t k = strlen(key), v = strlen(value);
        char *n;

        n = realloc(*buf, *len + k + v + 1);
        if (!n)
                return -ENOMEM;
        memcpy(n + *len, key, k);
        memcpy(n + *len + k, value, v);
        n[*len + k + v] = 0;
        *buf = n;
        *len += k + v + 1;
        return 0;
}

int uevent_send(const char *action, const char *devpath, const char *subsystem,
                char *const *extra, uint64_t seqnum) {
        _cleanup_free_ char *props = NULL;
        _cleanup_close_ int fd = -EBADF;
        char seq[32];
        size_t len = 0;
        ssize_t n;
        int r;

        if (!action || !devpath || !subsystem || seqnum == 0)
                return -EINVAL;

        snprintf(seq, sizeof(seq), "%llu", (unsigned long long) seqnum);
        if (append(&props, &len, "ACTION=", action) < 0 ||
            append(&props, &len, "DEVPATH=", devpath) < 0 ||
            append(&props, &len, "SUBSYSTEM=", subsystem) < 0 ||
            append(&props, &len, "SEQNUM=", seq) < 0)
                return -ENOMEM;
        for (char *const *e = extra; e && *e; e++) {
                r = append(&props, &len, *e, "");
                if (r < 0)
                        return r;
        }

        MonitorNetlinkHeader h = {
                .prefix = "libudev",
                .magic = htobe32(UDEV_MONITOR_MAGIC),
                .header_size = sizeof(h),
                .properties_off = sizeof(h),
                .properties_len = (unsigned) len,
                .filter_subsystem_hash = htobe32(uevent_murmur_hash2(subsystem, strlen(subsystem), 0)),
        };
        struct iovec iov[2] = {
                { .iov_base = &h, .iov_len = sizeof(h) },
                { .iov_base = props, .iov_len = len },
        };
        struct sockaddr_nl dest = {
                .nl_family = AF_NETLINK,
                .nl_groups = MONITOR_GROUP_UDEV,
        };
        struct msghdr msg = {
                .msg_name = &dest,
                .msg_namelen = sizeof(dest),
                .msg_iov = iov,
                .msg_iovlen = 2,
        };

        fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
        if (fd < 0)
                return negative_errno();

        n = sendmsg(fd, &msg, 0);
        /* Like systemd: a multicast send with no listener reports ECONNREFUSED. */
        if (n < 0 && errno == ECONNREFUSED)
                return 0;
        if (n < 0)
                return negative_errno();
        return (int) n;
}
