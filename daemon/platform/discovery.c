/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sysfs discovery with sd-device and hotplug with sd_device_monitor, in a libevent loop.
 * libsystemd 252 does not export the monitor's socket, so the monitor is attached to a
 * private sd_event whose epoll fd libevent watches; when it is readable we let sd-event
 * dispatch with a zero timeout. Nothing here blocks.
 *
 * Runs in: monitor and worker (the worker's platform view, tsm-platform.h).
 */

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <systemd/sd-device.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "backend.h"
#include "discovery.h"
#include "event-util.h"
#include "log.h"
#include "macro.h"

/* How many uevents to handle per wakeup before yielding to other libevent users; the epoll fd
 * stays readable, so the rest is picked up on the next iteration. */
#define DISCOVERY_EVENTS_PER_WAKEUP 64

/* Room for a burst of hotplug events (a TSM arriving can be followed by many devices). The
 * kernel caps this at net.core.rmem_max for unprivileged sockets; failure is not fatal. */
#define DISCOVERY_RCVBUF (4U * 1024U * 1024U)

/* A function that may be the DSM of another: where it is, and what its tsm/ says. */
typedef struct DsmCandidate {
        char *syspath;
        bool has_tsm;
        char *connect; /* NULL when not connected */
} DsmCandidate;

struct Discovery {
        Inventory *inv;
        struct event_base *base;
        sd_event *sd_event;
        sd_device_monitor *monitor;
        struct event *sd_event_watch;
        struct event *resync_timer;
        struct event *storm_timer; /* a rescan once a uevent storm has passed */
        uint64_t resync_usec; /* 0: the default, which depends on whether uevents arrive */
        bool deaf; /* the monitor runs, but no udevd rebroadcasts uevents to it */
        bool scanned; /* a full scan completed */
        /* During a full scan: the function 0 read last as a DSM candidate. Its other functions
         * come next (sd-device lists them by path) and need not read it again. Dropped at the
         * end of the scan: a look outside one reads afresh. */
        bool scanning;
        DsmCandidate scan_dsm;
        uint64_t n_events;
};

int discovery_enter_sysfs_root(const char *root) {
        _cleanup_free_ char *resolved = NULL;
        struct stat st;

        if (!root)
                return 0;

        resolved = realpath(root, NULL);
        if (!resolved)
                return negative_errno();
        if (streq(resolved, "/sys"))
                return 0;
        /* Binding a subtree of /sys over /sys would hide the tree being bound. */
        if (strneq(resolved, "/sys/", 5))
                return -EINVAL;
        if (stat(resolved, &st) < 0)
                return negative_errno();
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;

        /* Private mount namespace first, so the bind mount never propagates to the host. */
        if (unshare(CLONE_NEWNS) < 0)
                return negative_errno();
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return negative_errno();
        if (mount(resolved, "/sys", NULL, MS_BIND | MS_REC, NULL) < 0)
                return negative_errno();

        /* sd-device refuses syspaths not backed by sysfs unless told otherwise. */
        if (setenv("SYSTEMD_DEVICE_VERIFY_SYSFS", "0", 1) < 0)
                return negative_errno();

        return 1;
}

/* sysattr that may legitimately be missing: NULL instead of -ENOENT. */
static int get_optional_sysattr(sd_device *dev, const char *attr, const char **ret) {
        const char *v;
        int r;

        r = sd_device_get_sysattr_value(dev, attr, &v);
        if (r == -ENOENT) {
                *ret = NULL;
                return 0;
        }
        if (r < 0)
                return r;

        *ret = v;
        return 0;
}

static int get_optional(int (*getter)(sd_device *, const char **), sd_device *dev,
                        const char **ret) {
        const char *v;
        int r;

        r = getter(dev, &v);
        if (r == -ENOENT) {
                *ret = NULL;
                return 0;
        }
        if (r < 0)
                return r;

        *ret = v;
        return 0;
}

/* A name the kernel gave (a driver's), if it is one: printable ASCII without spaces. What is not
 * goes nowhere (a reply must be UTF-8, a log line one line): unknown, as if absent. */
static const char *kernel_name_or_null(const char *s) {
        if (isempty(s))
                return NULL;
        for (const char *p = s; *p; p++)
                if (*p <= ' ' || *p > '~')
                        return NULL;
        return s;
}

static int read_tsm(sd_device *dev, InventoryTsm *ret) {
        const char *name, *syspath, *pci_mode;
        const char *p_syspath = NULL, *p_subsystem = NULL, *p_driver = NULL, *p_sysname = NULL;
        sd_device *parent;
        int r;

        r = sd_device_get_sysname(dev, &name);
        if (r < 0)
                return r;
        r = sd_device_get_syspath(dev, &syspath);
        if (r < 0)
                return r;

        /* The parent is the platform TSM driver's device; it tells the backend apart. The
         * reference belongs to dev. */
        r = sd_device_get_parent(dev, &parent);
        if (r >= 0) {
                r = sd_device_get_syspath(parent, &p_syspath);
                if (r < 0)
                        return r;
                r = get_optional(sd_device_get_subsystem, parent, &p_subsystem);
                if (r < 0)
                        return r;
                r = get_optional(sd_device_get_driver, parent, &p_driver);
                if (r < 0)
                        return r;
                r = sd_device_get_sysname(parent, &p_sysname);
                if (r < 0)
                        return r;
        } else if (r != -ENOENT && r != -ENODEV)
                return r;

        r = get_optional_sysattr(dev, "pci_mode", &pci_mode);
        if (r < 0)
                return r;

        /* Borrowed strings: inventory_put_tsm() copies them. */
        *ret = (InventoryTsm) {
                .name = (char *) name,
                .syspath = (char *) syspath,
                .type = tsm_backend_type_from_parent(p_subsystem, p_driver, p_sysname),
                .parent_syspath = (char *) p_syspath,
                .parent_subsystem = (char *) p_subsystem,
                .parent_driver = (char *) kernel_name_or_null(p_driver),
                .parent_sysname = (char *) p_sysname,
                .pci_mode = (char *) pci_mode,
        };
        return 0;
}

static int parse_hex(const char *s, unsigned long max, unsigned long *ret) {
        unsigned long v;
        char *end;

        if (isempty(s))
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 16); /* accepts the "0x" prefix sysfs prints */
        if (errno != 0 || *end != 0 || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* An ID the kernel prints ("0x8086"): 0 when absent or not one. A read that fails otherwise
 * (EISDIR, EMFILE, EINTR) is returned: the device is unreadable this time, not another. */
static int read_id(sd_device *dev, const char *attr, unsigned long max, unsigned long *ret) {
        const char *v;
        int r;

        *ret = 0;
        r = sd_device_get_sysattr_value(dev, attr, &v);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (parse_hex(v, max, ret) < 0)
                *ret = 0;
        return 0;
}

static int read_ids(sd_device *dev, InventoryDevice *d) {
        unsigned long vendor, device, class;
        int r;

        r = read_id(dev, "vendor", 0xffff, &vendor);
        if (r >= 0)
                r = read_id(dev, "device", 0xffff, &device);
        if (r >= 0)
                r = read_id(dev, "class", 0xffffff, &class);
        if (r < 0)
                return r;
        d->vendor_id = (uint16_t) vendor;
        d->device_id = (uint16_t) device;
        d->class_code = (uint32_t) class;
        return 0;
}

/*
 * Whether <syspath>/tsm is the PCI TSM attribute group. The name is ambiguous: a device that
 * is the *parent* of a TSM (the SEV-TIO PSP function) also has a "tsm" directory, the driver
 * core's class glue directory holding tsmN. The attribute group holds files (connect,
 * disconnect, ...); the glue directory only holds class device directories.
 */
static int has_tsm_attribute_group(const char *syspath) {
        _cleanup_free_ char *path = NULL;
        struct dirent *de;
        DIR *dir;
        int r = 0;

        if (asprintf(&path, "%s/tsm", syspath) < 0)
                return -ENOMEM;

        dir = opendir(path);
        if (!dir)
                return errno == ENOENT || errno == ENOTDIR ? 0 : negative_errno();

        while ((de = readdir(dir))) {
                struct stat st;

                if (de->d_name[0] == '.')
                        continue;
                if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISREG(st.st_mode)) {
                        r = 1;
                        break;
                }
        }

        closedir(dir);
        return r;
}

/* The first line of a small sysfs file, its newline stripped: *ret NULL if absent. */
static int read_attribute_line(const char *dir, const char *name, char **ret) {
        _cleanup_free_ char *path = NULL;
        char buf[256];
        ssize_t n;
        int fd;

        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                *ret = NULL;
                return errno == ENOENT ? 0 : negative_errno();
        }
        n = read(fd, buf, sizeof(buf) - 1);
        if (n < 0)
                n = negative_errno();
        safe_close(fd);
        if (n < 0)
                return (int) n;
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        *ret = strdup(buf);
        return *ret ? 0 : -ENOMEM;
}

static void dsm_candidate_done(DsmCandidate *c) {
        free(c->syspath);
        free(c->connect);
        *c = (DsmCandidate) {};
}

static int dsm_candidate_copy(const DsmCandidate *src, DsmCandidate *ret) {
        DsmCandidate c = { .has_tsm = src->has_tsm, .syspath = strdup(src->syspath),
                           .connect = src->connect ? strdup(src->connect) : NULL };

        if (!c.syspath || (src->connect && !c.connect)) {
                dsm_candidate_done(&c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

/* Takes syspath over. A candidate whose name is not a PCI address tsmd serves is not one. With
 * cache, during a scan, a function 0 read for its function before is not read again. */
static int dsm_candidate_read(Discovery *d, char *syspath, bool cache, DsmCandidate *ret) {
        DsmCandidate c = { .syspath = syspath };
        const char *name = strrchr(syspath, '/');
        int r;

        if (!name || !pci_address_is_valid(name + 1)) {
                *ret = c;
                return 0;
        }
        cache = cache && d->scanning;
        if (cache && d->scan_dsm.syspath && streq(d->scan_dsm.syspath, syspath)) {
                free(syspath);
                return dsm_candidate_copy(&d->scan_dsm, ret);
        }
        r = has_tsm_attribute_group(syspath);
        if (r > 0) {
                _cleanup_free_ char *dir = NULL;

                if (asprintf(&dir, "%s/tsm", syspath) < 0)
                        r = -ENOMEM;
                else
                        r = read_attribute_line(dir, "connect", &c.connect);
                /* Only a DSM's tsm/ has connect: a function one manages shows tsm/ too (SYSFS.md). */
                c.has_tsm = r >= 0 && c.connect;
                if (r >= 0 && isempty(c.connect))
                        c.connect = mfree(c.connect);
        }
        if (r < 0) {
                dsm_candidate_done(&c);
                return r;
        }
        if (cache) {
                dsm_candidate_done(&d->scan_dsm);
                r = dsm_candidate_copy(&c, &d->scan_dsm);
                if (r < 0) {
                        dsm_candidate_done(&c);
                        return r;
                }
        }
        *ret = c;
        return 0;
}

/*
 * The DSM of a PCI function without a tsm/ group of its own, as the kernel's find_dsm_dev()
 * finds it (SYSFS.md): function 0 of its slot (for a VF, of its PF's slot, the PF from the
 * physfn link), or else the switch upstream port two directories up, for an endpoint whose
 * switch speaks for it. The kernel takes function 0 when it is connected, else the upstream
 * port if that is; while neither is connected, the one to connect is the first with tsm/.
 * Returns 1 and the DSM's syspath and tsm/connect contents (NULL: not connected), or 0 for none.
 * Guesswork where the kernel does not say (older kernels: read_device() believes tsm/dsm).
 */
static int find_dsm(Discovery *d, const char *syspath, char **ret_syspath, char **ret_connect) {
        _cleanup_free_ char *pf = NULL, *pf0 = NULL, *uport = NULL, *link = NULL;
        DsmCandidate c[2] = {};
        const char *base;
        char *slash, *dot;
        struct stat st;
        int r, found = -1;

        /* Most functions are no VF: one lstat() says so, where realpath() takes one per level. */
        if (asprintf(&link, "%s/physfn", syspath) < 0)
                return -ENOMEM;
        if (lstat(link, &st) >= 0) {
                pf = realpath(link, NULL);
                if (!pf && errno != ENOENT && errno != ENOTDIR)
                        return negative_errno();
        } else if (errno != ENOENT && errno != ENOTDIR)
                return negative_errno();
        if (!pf) {
                pf = strdup(syspath);
                if (!pf)
                        return -ENOMEM;
        }

        /* Function 0 is the PF's sibling, named as the PF with its function number 0. */
        base = strrchr(pf, '/');
        dot = base ? strrchr(base, '.') : NULL;
        if (dot && !streq(dot, ".0")) {
                if (asprintf(&pf0, "%.*s.0", (int) (dot - pf), pf) < 0)
                        return -ENOMEM;
        } else if (!streq(pf, syspath))
                pf0 = TAKE_PTR(pf); /* a VF of a function 0 */

        /* Its parent is the downstream port it hangs off, whose parent is the upstream port. */
        uport = strdup(syspath);
        if (!uport)
                return -ENOMEM;
        for (unsigned i = 0; i < 2; i++) {
                slash = strrchr(uport, '/');
                if (!slash || slash == uport)
                        break;
                *slash = 0;
        }

        if (pf0) {
                r = dsm_candidate_read(d, TAKE_PTR(pf0), /* cache= */ true, &c[0]);
                if (r < 0)
                        goto finish;
        }
        r = dsm_candidate_read(d, TAKE_PTR(uport), /* cache= */ false, &c[1]);
        if (r < 0)
                goto finish;

        for (unsigned i = 0; i < ELEMENTSOF(c) && found < 0; i++)
                if (c[i].connect)
                        found = (int) i;
        for (unsigned i = 0; i < ELEMENTSOF(c) && found < 0; i++)
                if (c[i].has_tsm)
                        found = (int) i;
        r = 0;
        if (found >= 0) {
                *ret_syspath = TAKE_PTR(c[found].syspath);
                *ret_connect = TAKE_PTR(c[found].connect);
                r = 1;
        }
finish:
        dsm_candidate_done(&c[0]);
        dsm_candidate_done(&c[1]);
        return r;
}

/*
 * The DSM a function managed by another names in its tsm/dsm (the kernel's own answer: its
 * pci_tsm's dsm_dev), as find_dsm() returns one: 1 with its syspath and tsm/connect contents
 * (NULL: not connected) and whether it shows tsm/connect at all, 0 if it is not in sysfs.
 */
static int read_named_dsm(Discovery *d, const char *address, char **ret_syspath, char **ret_connect,
                          bool *ret_has_connect) {
        _cleanup_free_ char *link = NULL;
        DsmCandidate c;
        char *syspath;
        int r;

        /* The bus link resolves to the device wherever it sits in the topology. */
        if (asprintf(&link, "/sys/bus/pci/devices/%s", address) < 0)
                return -ENOMEM;
        syspath = realpath(link, NULL);
        if (!syspath)
                return errno == ENOENT || errno == ENOTDIR ? 0 : negative_errno();

        r = dsm_candidate_read(d, syspath, /* cache= */ true, &c);
        if (r < 0)
                return r;
        *ret_syspath = TAKE_PTR(c.syspath);
        *ret_connect = TAKE_PTR(c.connect);
        *ret_has_connect = c.has_tsm;
        return 1;
}

/* *ret owns its strings (inventory_device_done()). */
static int read_device(Discovery *disc, sd_device *dev, InventoryDevice *ret) {
        const char *address, *syspath, *driver, *connect = NULL, *auth, *bound = NULL, *dsm = NULL;
        _cleanup_free_ char *dsm_syspath = NULL, *dsm_connect = NULL;
        InventoryDevice d = { .authenticated = -1, .bound = -1 };
        bool has_tsm, dsm_has_connect = false;
        struct stat st;
        int r;

        r = sd_device_get_sysname(dev, &address);
        if (r < 0)
                return r;
        if (!pci_address_is_valid(address))
                return pci_address_is_too_long(address) ? -ENAMETOOLONG : -EINVAL;
        r = sd_device_get_syspath(dev, &syspath);
        if (r < 0)
                return r;
        r = get_optional(sd_device_get_driver, dev, &driver);
        if (r < 0)
                return r;

        r = read_ids(dev, &d);
        if (r < 0)
                return r;
        /* Which pci_dev it is: kernfs numbers each object's directory anew. */
        if (stat(syspath, &st) < 0)
                return negative_errno();
        d.instance = (uint64_t) st.st_ino;

        r = has_tsm_attribute_group(syspath);
        if (r < 0)
                return r;
        has_tsm = r > 0;
        if (has_tsm) {
                /* A DSM's tsm/ has connect; mainline shows tsm/ on every function a connected DSM
                 * manages as well, with dsm and bound but no connect (SYSFS.md). */
                r = get_optional_sysattr(dev, "tsm/connect", &connect);
                if (r < 0)
                        return r;
                r = get_optional_sysattr(dev, "tsm/bound", &bound);
                if (r < 0)
                        return r;
                if (!connect) {
                        r = get_optional_sysattr(dev, "tsm/dsm", &dsm);
                        if (r < 0)
                                return r;
                }
        }

        r = get_optional_sysattr(dev, "authenticated", &auth);
        if (r < 0)
                return r;
        if (auth)
                /* Reads like tsm/connect (the TSM name or ""); early drafts printed 0/1. */
                d.authenticated = !isempty(auth) && !streq(auth, "0");
        if (bound)
                /* The TSM name while a TDI of the function is bound, else "". */
                d.bound = !isempty(bound);

        if (connect) {
                d.tdisp_capable = true;
                /* The kernel prints "\n" when not connected; sd-device strips the newline. */
                if (isempty(connect))
                        connect = NULL;
        } else {
                /* Its DSM is another function, connected for it. */
                r = 0;
                if (!isempty(dsm)) {
                        if (pci_address_is_valid(dsm) && !streq(dsm, address))
                                r = read_named_dsm(disc, dsm, &dsm_syspath, &dsm_connect, &dsm_has_connect);
                        else
                                log_debug("PCI device %s: its tsm/dsm '%s' names no other function, ignoring.",
                                          address, dsm);
                        if (r < 0)
                                return r;
                }
                /* Older kernels name none, and show tsm/ only on a DSM: found as the kernel's
                 * find_dsm_dev() finds it. The kernel probes the functions then whatever their
                 * TEE capability says (the DSM decides): one it refused fails at bind, with the
                 * kernel's error. */
                if (r == 0) {
                        r = find_dsm(disc, syspath, &dsm_syspath, &dsm_connect);
                        if (r < 0)
                                return r;
                        dsm_has_connect = r > 0;
                }
                d.tdisp_capable = r > 0 || has_tsm;
                connect = dsm_connect;
                /* Where its DSM shows no connect (a race with its removal), the function's own
                 * authenticated names the TSM its context is with, as connect_show() does. */
                if (!dsm_has_connect && has_tsm && auth && strneq(auth, "tsm", 3))
                        connect = auth;
        }

        /* The kernel prints "tsm%d" (connect_show()); anything else names no TSM tsmd could
         * route to, nor text a reply may carry: connected to none it knows. */
        if (connect && !tsm_name_is_valid(connect)) {
                log_full(disc->scanned ? LOG_DEBUG : LOG_WARNING,
                         "PCI device %s: its TSM connection reads as no TSM name, taking it for none.", address);
                connect = NULL;
        }

        d.address = strdup(address);
        d.syspath = strdup(syspath);
        d.driver = driver ? strdup(driver) : NULL;
        d.dsm_address = dsm_syspath ? strdup(strrchr(dsm_syspath, '/') + 1) : NULL;
        d.connected_tsm = connect ? strdup(connect) : NULL;
        if (!d.address || !d.syspath || (driver && !d.driver) || (dsm_syspath && !d.dsm_address) ||
            (connect && !d.connected_tsm)) {
                inventory_device_done(&d);
                return -ENOMEM;
        }

        *ret = d;
        return 0;
}

static bool is_gone(int r) {
        /* The device went away between being listed and being read: not an error. */
        return r == -ENOENT || r == -ENODEV;
}

static int put_tsm_from_device(Discovery *d, sd_device *dev) {
        InventoryTsm t;
        int r;

        r = read_tsm(dev, &t);
        if (r < 0) {
                const char *name;

                /* As put_pci_from_device(): unreadable is not gone. */
                if (!is_gone(r) && r != -ENOMEM && sd_device_get_sysname(dev, &name) >= 0)
                        (void) inventory_keep_tsm(d->inv, name);
                return r;
        }
        if (t.type < 0)
                log_debug("TSM %s: parent %s (subsystem %s, driver %s) is not a known backend.",
                          t.name, strna(t.parent_syspath), strna(t.parent_subsystem),
                          strna(t.parent_driver));

        r = inventory_put_tsm(d->inv, &t);
        return r < 0 ? r : 0;
}

static int put_pci_from_device(Discovery *d, sd_device *dev) {
        _cleanup_(inventory_device_done) InventoryDevice dv = { .authenticated = -1, .bound = -1 };
        const char *address;
        int r;

        r = read_device(d, dev, &dv);
        if (r < 0) {
                /* Not gone, only unreadable this time (an attribute read interrupted, say): kept
                 * as it was, or a rescan would take it for removed, in this process only. */
                if (!is_gone(r) && r != -ENOMEM && sd_device_get_sysname(dev, &address) >= 0 &&
                    pci_address_is_valid(address))
                        (void) inventory_keep_device(d->inv, address);
                return r;
        }

        r = inventory_put_device(d->inv, &dv);
        return r < 0 ? r : 0;
}

/* A device sysfs lists (an entry of /sys/bus/pci/devices or /sys/class/tsm), opened. */
typedef struct ScanEntry {
        sd_device *dev;
        const char *syspath; /* dev's */
} ScanEntry;

static int scan_entry_compare(const void *a, const void *b) {
        return strcmp(((const ScanEntry *) a)->syspath, ((const ScanEntry *) b)->syspath);
}

static void strv_free_n(char **names, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

/*
 * The names in dir, sysfs's list of the devices of a bus or class: none when dir does not exist
 * (no such bus or class on this machine). Read whole before any is opened, so that opening them
 * costs no descriptor on top of the directory's. Any other error is returned: it is no proof that
 * the list is empty or shorter, which sd-device's enumerator (252) cannot tell apart, as it lists
 * nothing at all after any error, one entry that fails to open included.
 */
static int list_devices(const char *dir, char ***ret, size_t *ret_n) {
        char **names = NULL;
        size_t n = 0, allocated = 0;
        struct dirent *de;
        DIR *d;
        int r = 0;

        d = opendir(dir);
        if (!d) {
                if (errno != ENOENT)
                        return negative_errno();
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        for (;;) {
                errno = 0;
                de = readdir(d);
                if (!de) {
                        r = -errno; /* 0 at the end */
                        break;
                }
                if (de->d_name[0] == '.')
                        continue;
                /* As sd-device: a device is a directory, or a link to one. */
                if (de->d_type != DT_DIR && de->d_type != DT_LNK && de->d_type != DT_UNKNOWN)
                        continue;
                if (!GREEDY_REALLOC(names, allocated, n + 1) || !(names[n] = strdup(de->d_name))) {
                        r = -ENOMEM;
                        break;
                }
                n++;
        }
        closedir(d);
        if (r < 0) {
                strv_free_n(names, n);
                return r;
        }

        *ret = names;
        *ret_n = n;
        return 0;
}

/* An entry listed but not opened this time: not gone, so kept as it was. */
static void keep_listed(Discovery *d, const char *name, bool is_tsm) {
        if (is_tsm)
                (void) inventory_keep_tsm(d->inv, name);
        else if (pci_address_is_valid(name))
                (void) inventory_keep_device(d->inv, name);
}

/*
 * Puts every device dir lists, in syspath order (the functions of a slot one after the other, as
 * the DSM cache of a scan wants them). What is gone (ENOENT, ENODEV) is left out, and the sweep
 * that follows removes it; what fails otherwise is kept. An error is returned only when the list
 * itself could not be read, or memory ran out: then nothing may be swept.
 */
static int scan_subsystem(Discovery *d, const char *dir, bool is_tsm, int (*put)(Discovery *d, sd_device *dev)) {
        const char *subsystem = is_tsm ? "tsm" : "pci";
        ScanEntry *entries = NULL;
        char **names = NULL;
        size_t n_names = 0, n = 0;
        int r;

        r = list_devices(dir, &names, &n_names);
        if (r < 0)
                return r;
        entries = new0(ScanEntry, n_names);
        if (!entries) {
                r = -ENOMEM;
                goto finish;
        }

        for (size_t i = 0; i < n_names; i++) {
                _cleanup_free_ char *path = NULL;
                sd_device *dev;

                if (asprintf(&path, "%s/%s", dir, names[i]) < 0) {
                        r = -ENOMEM;
                        goto finish;
                }
                r = sd_device_new_from_syspath(&dev, path);
                if (r == -ENOMEM)
                        goto finish;
                if (is_gone(r)) {
                        log_debug_errno(r, "Skipping %s device %s: %m", subsystem, path);
                        continue;
                }
                if (r < 0) {
                        /* A link loop, a permission, no descriptor left: unreadable, not gone. */
                        keep_listed(d, names[i], is_tsm);
                        log_warning_errno(r, "Failed to open %s device %s, keeping it as it was: %m", subsystem,
                                          path);
                        continue;
                }
                r = sd_device_get_syspath(dev, &entries[n].syspath);
                if (r < 0) {
                        sd_device_unref(dev);
                        goto finish;
                }
                entries[n++].dev = dev;
        }
        qsort(entries, n, sizeof(ScanEntry), scan_entry_compare);

        for (size_t i = 0; i < n; i++) {
                r = put(d, entries[i].dev);
                if (r == -ENOMEM)
                        goto finish;
                if (r == -ENAMETOOLONG && !is_tsm)
                        /* Said once, at the first scan: the rescans find it again. */
                        log_full(d->scanned ? LOG_DEBUG : LOG_WARNING,
                                 "Skipping %s device %s: its address is longer than the %u characters tsmd serves "
                                 "(a PCI domain of %u hex digits at most).", subsystem, entries[i].syspath,
                                 (unsigned) PCI_ADDRESS_LEN_MAX, (unsigned) (PCI_ADDRESS_LEN_MAX - 8));
                else if (r < 0)
                        log_full_errno(is_gone(r) || r == -EINVAL ? LOG_DEBUG : LOG_WARNING, r,
                                       "Skipping %s device %s: %m", subsystem, entries[i].syspath);
        }
        r = 0;

finish:
        for (size_t i = 0; i < n; i++)
                sd_device_unref(entries[i].dev);
        free(entries);
        strv_free_n(names, n_names);
        return r;
}

int discovery_new(Inventory *inv, struct event_base *base, Discovery **ret) {
        Discovery *d;

        assert_return(inv, -EINVAL);
        assert_return(ret, -EINVAL);

        d = new0(Discovery, 1);
        if (!d)
                return -ENOMEM;

        d->inv = inv;
        d->base = base;
        *ret = d;
        return 0;
}

Discovery *discovery_free(Discovery *d) {
        if (!d)
                return NULL;

        /* Stop watching the epoll fd before sd-event closes it. */
        if (d->sd_event_watch)
                event_free(d->sd_event_watch);
        if (d->resync_timer)
                event_free(d->resync_timer);
        if (d->storm_timer)
                event_free(d->storm_timer);
        sd_device_monitor_unref(d->monitor);
        sd_event_unref(d->sd_event);

        return mfree(d);
}

/* All PCI devices, each function's DSM read once for all the functions it speaks for. */
static int scan_pci(Discovery *d) {
        int r;

        d->scanning = true;
        r = scan_subsystem(d, "/sys/bus/pci/devices", /* is_tsm= */ false, put_pci_from_device);
        d->scanning = false;
        /* What it read is stale by the next look. */
        dsm_candidate_done(&d->scan_dsm);
        return r;
}

int discovery_scan(Discovery *d) {
        int r;

        assert_return(d, -EINVAL);

        inventory_sync_begin(d->inv);

        /* A list that could not be read sweeps nothing: what was known stays until a rescan
         * reads it (the caller says the inventory may be stale). */
        r = scan_subsystem(d, "/sys/class/tsm", /* is_tsm= */ true, put_tsm_from_device);
        if (r < 0)
                return r;
        r = scan_pci(d);
        if (r < 0)
                return r;

        inventory_sync_end(d->inv, INVENTORY_SYNC_TSMS | INVENTORY_SYNC_DEVICES);
        d->scanned = true;
        return 0;
}

static int rescan_devices(Discovery *d) {
        int r;

        inventory_sync_begin(d->inv);
        r = scan_pci(d);
        if (r < 0)
                return r;
        inventory_sync_end(d->inv, INVENTORY_SYNC_DEVICES);
        return 0;
}

static int refresh_by_syspath(Discovery *d, const char *syspath, const char *sysname, bool is_tsm);

/* The device called sysname is gone from syspath. */
static int forget(Discovery *d, const char *syspath, const char *sysname, bool is_tsm) {
        _cleanup_free_ char *known = NULL;
        const InventoryTsm *t;
        const InventoryDevice *dv;
        const char *p;
        int r;

        if (is_tsm) {
                t = inventory_get_tsm(d->inv, sysname);
                p = t ? t->syspath : NULL;
        } else {
                dv = inventory_get_device(d->inv, sysname);
                p = dv ? dv->syspath : NULL;
        }

        /* udevd runs the events of unrelated devpaths side by side, so they may come out of
         * order: the name may live at another path already (a TSM id given out again, a bus
         * number behind another port), announced there first. That one is not gone: look at
         * it again instead. */
        if (p && !streq(p, syspath)) {
                known = strdup(p);
                if (!known)
                        return -ENOMEM;
                return refresh_by_syspath(d, known, sysname, is_tsm);
        }

        r = is_tsm ? inventory_remove_tsm(d->inv, sysname) : inventory_remove_device(d->inv, sysname);
        return r == -ENOENT ? 0 : r;
}

static int refresh_by_syspath(Discovery *d, const char *syspath, const char *sysname,
                              bool is_tsm) {
        _cleanup_(sd_device_unrefp) sd_device *dev = NULL;
        int r;

        /* A fresh object: the event's device carries udev's properties, not current sysfs
         * values, and sd-device caches attributes per object. */
        r = sd_device_new_from_syspath(&dev, syspath);
        if (is_gone(r))
                return forget(d, syspath, sysname, is_tsm);
        if (r < 0)
                return r;

        return is_tsm ? put_tsm_from_device(d, dev) : put_pci_from_device(d, dev);
}

/* Whether a and b are two functions of one slot: the same domain, bus and device. */
static bool same_slot(const char *a, const char *b) {
        const char *dot_a = strrchr(a, '.'), *dot_b = strrchr(b, '.');

        return dot_a && dot_b && dot_a - a == dot_b - b && strneq(a, b, (size_t) (dot_a - a)) && !streq(a, b);
}

/* The functions a DSM speaks for, and the other functions of its slot (which may have come
 * before it): the kernel tells them nothing of its connect, disconnect, arrival or departure.
 * Re-reads them. */
static int refresh_dependents(Discovery *d, const char *address) {
        _cleanup_free_ char **syspaths = NULL, **names = NULL;
        size_t n = 0, n_devices = inventory_n_devices(d->inv);
        int r = 0;

        syspaths = new0(char *, n_devices + 1);
        names = new0(char *, n_devices + 1);
        if (!syspaths || !names)
                return -ENOMEM;
        /* Copied first: re-reading changes the inventory. */
        for (size_t i = 0; i < n_devices; i++) {
                const InventoryDevice *dv = inventory_device_at(d->inv, i);

                if (!(dv->dsm_address && streq(dv->dsm_address, address)) && !same_slot(dv->address, address))
                        continue;
                syspaths[n] = strdup(dv->syspath);
                names[n] = strdup(dv->address);
                n++;
                if (!syspaths[n - 1] || !names[n - 1]) {
                        r = -ENOMEM;
                        break;
                }
        }
        for (size_t i = 0; i < n && r >= 0; i++) {
                int k = refresh_by_syspath(d, syspaths[i], names[i], /* is_tsm= */ false);

                if (k == -ENOMEM)
                        r = k;
                else if (k < 0)
                        log_debug_errno(k, "Failed to re-read %s after its DSM %s: %m", names[i], address);
        }
        for (size_t i = 0; i < n; i++) {
                free(syspaths[i]);
                free(names[i]);
        }
        return r;
}

/* A PCI device's uevent, or tsmd's own look after writing its tsm/connect: a DSM's change is its
 * dependents' as well. A new pci_dev at a known address (its predecessor's "remove" lost) is told
 * by its sysfs directory's inode, by the inventory, whatever the uevent says: an "add" replayed
 * by udevadm trigger, or read after a rescan saw the device, is only a look. */
static int refresh_pci(Discovery *d, const char *syspath, const char *sysname, bool removed) {
        bool was_dsm = inventory_device_is_dsm(inventory_get_device(d->inv, sysname));
        int r, k;

        r = removed ? forget(d, syspath, sysname, /* is_tsm= */ false)
                    : refresh_by_syspath(d, syspath, sysname, /* is_tsm= */ false);
        if (r == -ENOMEM)
                return r;
        if (!was_dsm && !inventory_device_is_dsm(inventory_get_device(d->inv, sysname)))
                return r;
        k = refresh_dependents(d, sysname);
        return r < 0 ? r : k;
}

int discovery_refresh_device(Discovery *d, const char *address) {
        _cleanup_free_ char *syspath = NULL;

        assert_return(d, -EINVAL);
        assert_return(pci_address_is_valid(address), -EINVAL);

        /* The bus link resolves to the device wherever it sits in the topology. */
        if (asprintf(&syspath, "/sys/bus/pci/devices/%s", address) < 0)
                return -ENOMEM;

        return refresh_pci(d, syspath, address, /* removed= */ false);
}

static int handle_uevent(Discovery *d, sd_device *dev) {
        const char *subsystem, *syspath, *sysname;
        sd_device_action_t action;
        int r, k;

        r = sd_device_get_action(dev, &action);
        if (r < 0)
                return r;
        r = sd_device_get_subsystem(dev, &subsystem);
        if (r < 0)
                return r;
        r = sd_device_get_syspath(dev, &syspath);
        if (r < 0)
                return r;
        r = sd_device_get_sysname(dev, &sysname);
        if (r < 0)
                return r;

        log_debug("uevent: action %d, %s %s", (int) action, subsystem, syspath);

        if (streq(subsystem, "tsm")) {
                if (action == SD_DEVICE_REMOVE)
                        r = forget(d, syspath, sysname, /* is_tsm= */ true);
                else
                        r = refresh_by_syspath(d, syspath, sysname, /* is_tsm= */ true);

                /* Registering or removing a TSM shows, hides and disconnects the tsm/
                 * directories of PCI devices without any per-device uevent: this event is the
                 * only word of it, whether or not the TSM itself could be read. */
                k = rescan_devices(d);
                return r < 0 ? r : k;
        }

        if (streq(subsystem, "pci")) {
                if (!pci_address_is_valid(sysname)) {
                        if (pci_address_is_too_long(sysname) && action == SD_DEVICE_ADD)
                                log_warning("Skipping PCI device %s: its address is longer than the %u characters "
                                            "tsmd serves.", sysname, (unsigned) PCI_ADDRESS_LEN_MAX);
                        return 0;
                }

                if (action == SD_DEVICE_MOVE)
                        /* The old name is only in DEVPATH_OLD; a rescan drops it reliably. */
                        return rescan_devices(d);

                return refresh_pci(d, syspath, sysname, action == SD_DEVICE_REMOVE);
        }

        return 0;
}

static int on_uevent(sd_device_monitor *m, sd_device *dev, void *userdata) {
        Discovery *d = userdata;
        int r;

        d->n_events++;

        r = handle_uevent(d, dev);
        if (r < 0)
                log_warning_errno(r, "Failed to apply device event, inventory may be stale: %m");

        /* Never propagate an error: sd-event would disable the monitor's event source. */
        return 0;
}

static void on_sd_event_fd(evutil_socket_t fd, short what, void *userdata) {
        static const struct timeval quiet = { .tv_sec = DISCOVERY_STORM_QUIET_USEC / 1000000,
                                              .tv_usec = DISCOVERY_STORM_QUIET_USEC % 1000000 };
        Discovery *d = userdata;

        for (unsigned i = 0; i < DISCOVERY_EVENTS_PER_WAKEUP; i++) {
                int r = sd_event_run(d->sd_event, 0);
                if (r < 0) {
                        log_error_errno(r, "Failed to dispatch device events: %m");
                        return;
                }
                if (r == 0)
                        return;
        }
        /* More waiting than a wakeup takes: a storm, which may overflow the receive buffer and
         * lose events without a word from sd-device. Rescan once it has been quiet a while
         * (each saturated wakeup pushes that back). */
        (void) evtimer_add(d->storm_timer, &quiet);
}

static void on_resync(evutil_socket_t fd, short what, void *userdata) {
        Discovery *d = userdata;
        int r;

        r = discovery_scan(d);
        if (r < 0)
                log_warning_errno(r, "Failed to rescan devices, inventory may be stale: %m");
}

uint64_t discovery_get_resync_interval(const Discovery *d) {
        if (!d || !d->resync_timer)
                return 0;
        if (d->resync_usec > 0)
                return d->resync_usec;
        return d->monitor && !d->deaf ? DISCOVERY_RESYNC_USEC : DISCOVERY_RESYNC_NO_UEVENTS_USEC;
}

/* sd-device's monitor hears udevd's rebroadcasts, not the kernel's own uevents: without udevd
 * (no control socket, as in many containers) it starts fine and hears nothing. */
static bool udevd_running(void) {
        return access("/run/udev/control", F_OK) >= 0;
}

static int arm_resync(Discovery *d) {
        struct timeval tv;
        uint64_t usec;

        if (!d->resync_timer) {
                d->resync_timer = event_new(d->base, -1, EV_PERSIST, on_resync, d);
                if (!d->resync_timer)
                        return -ENOMEM;
        }
        usec = discovery_get_resync_interval(d);
        tv = timeval_from_usec(usec);
        return event_add(d->resync_timer, &tv) < 0 ? -EIO : 0;
}

void discovery_set_resync_interval(Discovery *d, uint64_t usec) {
        assert(d);
        assert(usec > 0);

        d->resync_usec = usec;
        if (d->resync_timer)
                (void) arm_resync(d);
}

/* Subscribes to uevents; on failure leaves d as it was. */
static int start_uevents(Discovery *d) {
        _cleanup_(sd_device_monitor_unrefp) sd_device_monitor *m = NULL;
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(event_freep) struct event *storm = NULL, *watch = NULL;
        int r, fd;

        r = sd_event_new(&e);
        if (r < 0)
                return r;

        r = sd_device_monitor_new(&m);
        if (r < 0)
                return r;
        (void) sd_device_monitor_set_receive_buffer_size(m, DISCOVERY_RCVBUF);

        r = sd_device_monitor_filter_add_match_subsystem_devtype(m, "tsm", NULL);
        if (r < 0)
                return r;
        r = sd_device_monitor_filter_add_match_subsystem_devtype(m, "pci", NULL);
        if (r < 0)
                return r;

        r = sd_device_monitor_attach_event(m, e);
        if (r < 0)
                return r;
        r = sd_device_monitor_start(m, on_uevent, d);
        if (r < 0)
                return r;

        fd = sd_event_get_fd(e);
        if (fd < 0)
                return fd;

        storm = evtimer_new(d->base, on_resync, d);
        if (!storm)
                return -ENOMEM;
        watch = event_new(d->base, fd, EV_READ | EV_PERSIST, on_sd_event_fd, d);
        if (!watch)
                return -ENOMEM;
        if (event_add(watch, NULL) < 0)
                return -EIO;

        d->storm_timer = TAKE_PTR(storm);
        d->sd_event_watch = TAKE_PTR(watch);
        d->monitor = TAKE_PTR(m);
        d->sd_event = TAKE_PTR(e);
        return 0;
}

int discovery_start_monitor(Discovery *d) {
        int r, r_uevents;

        assert_return(d, -EINVAL);
        assert_return(d->base, -EINVAL);
        assert_return(!d->resync_timer, -EBUSY);

        /* Without uevents the periodic rescan is all there is, so it runs either way. */
        r_uevents = start_uevents(d);
        d->deaf = r_uevents >= 0 && !udevd_running();
        r = arm_resync(d);
        if (r < 0)
                return r;
        /* What changed since the last scan sent uevents before anybody listened: look again. */
        if (r_uevents >= 0 && d->scanned) {
                r = discovery_scan(d);
                if (r < 0)
                        log_warning_errno(r, "Failed to rescan devices, inventory may be stale: %m");
        }
        if (r_uevents < 0)
                log_warning_errno(r_uevents, "Cannot follow device hotplug through uevents, noticing device "
                                             "changes only by rescanning sysfs every %" PRIu64 " s: %m",
                                  discovery_get_resync_interval(d) / 1000000);
        else if (d->deaf)
                log_notice("udevd is not running (no /run/udev/control), so no uevents will come: noticing "
                           "device changes by rescanning sysfs every %" PRIu64 " s.",
                           discovery_get_resync_interval(d) / 1000000);
        return 0;
}

uint64_t discovery_n_events(const Discovery *d) {
        return d ? d->n_events : 0;
}
