/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fixture generator described in sysfs-fixture.h. Symlinks are relative, exactly like the
 * kernel's (devices/pci0000:00/0000:00:01.0/subsystem -> ../../../bus/pci), so the tree keeps
 * working after being bind-mounted over /sys.
 *
 * Runs in: tests only.
 */

#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "sysfs-fixture.h"

#define MAX_KEYS 16

typedef struct Entry {
        char *kind;
        char *devpath;
        char *keys[MAX_KEYS];
        char *values[MAX_KEYS];
        size_t n_keys;
} Entry;

static const char *entry_get(const Entry *e, const char *key) {
        for (size_t i = 0; i < e->n_keys; i++)
                if (streq(e->keys[i], key))
                        return e->values[i];
        return NULL;
}

static int mkdir_p(const char *path, mode_t mode) {
        char buf[PATH_MAX];
        size_t n = strlen(path);

        if (n >= sizeof(buf))
                return -ENAMETOOLONG;
        memcpy(buf, path, n + 1);

        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = 0;
                if (mkdir(buf, mode) < 0 && errno != EEXIST)
                        return negative_errno();
                *p = '/';
        }
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return negative_errno();
        return 0;
}

static int write_file_mode(const char *path, const char *content, mode_t mode) {
        int fd, r = 0;
        size_t n = strlen(content);

        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return negative_errno();
        if (n > 0 && write(fd, content, n) != (ssize_t) n)
                r = -EIO;
        if (fchmod(fd, mode) < 0 && r == 0)
                r = negative_errno();
        close(fd);
        return r;
}

static int write_filef(const char *dir, const char *name, mode_t mode, const char *fmt, ...)
        _printf_(4, 5);
static int write_filef(const char *dir, const char *name, mode_t mode, const char *fmt, ...) {
        _cleanup_free_ char *path = NULL, *content = NULL;
        va_list ap;
        int r;

        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        va_start(ap, fmt);
        r = vasprintf(&content, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        return write_file_mode(path, content, mode);
}

/* Number of components in a devpath: "/devices/a/b" -> 3. */
static unsigned path_depth(const char *devpath) {
        unsigned n = 0;

        for (const char *p = devpath; *p; p++)
                if (*p == '/' && p[1] && p[1] != '/')
                        n++;
        return n;
}

static char *updirs(unsigned n) {
        char *s = malloc(3 * n + 1);

        if (!s)
                return NULL;
        for (unsigned i = 0; i < n; i++)
                memcpy(s + 3 * i, "../", 3);
        s[3 * n] = 0;
        return s;
}

static const char *basename_of(const char *p) {
        const char *s = strrchr(p, '/');
        return s ? s + 1 : p;
}

/* Creates (or replaces) symlink <at> -> <target>. */
static int symlink_force(const char *target, const char *at) {
        if (symlink(target, at) >= 0)
                return 0;
        if (errno != EEXIST)
                return negative_errno();
        if (unlink(at) < 0)
                return negative_errno();
        return RET_NERRNO(symlink(target, at));
}

/* <dir>/<name> -> ("../" * depth(devpath)) + rel */
static int link_up(const char *dir, const char *name, const char *devpath, const char *rel) {
        _cleanup_free_ char *up = NULL, *target = NULL, *at = NULL;

        up = updirs(path_depth(devpath));
        if (!up)
                return -ENOMEM;
        if (asprintf(&target, "%s%s", up, rel) < 0 || asprintf(&at, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        return symlink_force(target, at);
}

/* Registration link: <root>/<regdir>/<name> -> relative path to the device directory. */
static int link_register(const char *root, const char *regdir, const char *devpath) {
        _cleanup_free_ char *dir = NULL, *up = NULL, *target = NULL, *at = NULL;
        int r;

        if (asprintf(&dir, "%s/%s", root, regdir) < 0)
                return -ENOMEM;
        r = mkdir_p(dir, 0755);
        if (r < 0)
                return r;

        up = updirs(path_depth(regdir));
        if (!up)
                return -ENOMEM;
        if (asprintf(&target, "%s%s", up, devpath + 1) < 0 ||
            asprintf(&at, "%s/%s", dir, basename_of(devpath)) < 0)
                return -ENOMEM;
        return symlink_force(target, at);
}

static int make_bus_driver(const char *root, const char *bus, const char *driver) {
        _cleanup_free_ char *dir = NULL;

        if (asprintf(&dir, "%s/bus/%s/drivers/%s", root, bus, driver) < 0)
                return -ENOMEM;
        return mkdir_p(dir, 0755);
}

/* Subsystem link, driver link and bus registration for a bus device. */
static int make_bus_device(const char *root, const char *dir, const char *devpath,
                           const char *bus, const char *driver) {
        _cleanup_free_ char *rel = NULL, *regdir = NULL;
        int r;

        if (asprintf(&rel, "bus/%s", bus) < 0)
                return -ENOMEM;
        r = link_up(dir, "subsystem", devpath, rel);
        if (r < 0)
                return r;

        if (driver) {
                _cleanup_free_ char *drel = NULL;

                r = make_bus_driver(root, bus, driver);
                if (r < 0)
                        return r;
                if (asprintf(&drel, "bus/%s/drivers/%s", bus, driver) < 0)
                        return -ENOMEM;
                r = link_up(dir, "driver", devpath, drel);
                if (r < 0)
                        return r;
        }

        if (asprintf(&regdir, "/bus/%s/devices", bus) < 0)
                return -ENOMEM;
        return link_register(root, regdir, devpath);
}

static unsigned long get_hex(const Entry *e, const char *key, unsigned long def) {
        const char *v = entry_get(e, key);

        return v ? strtoul(v, NULL, 16) : def;
}

static int make_pci(const char *root, const char *dir, const Entry *e) {
        const char *addr = basename_of(e->devpath), *driver = entry_get(e, "driver");
        const char *tsm = entry_get(e, "tsm"), *auth = entry_get(e, "auth"), *physfn = entry_get(e, "physfn");
        const char *dsm = entry_get(e, "dsm"), *bound = entry_get(e, "bound");
        unsigned long vendor = get_hex(e, "vendor", 0x8086), device = get_hex(e, "device", 0xffff);
        unsigned long class = get_hex(e, "class", 0xff0000);
        unsigned long svendor = get_hex(e, "subsys_vendor", vendor);
        unsigned long sdevice = get_hex(e, "subsys_device", device);
        _cleanup_free_ char *drv_line = NULL;
        int r;

        /* The keys the kernel's pci_uevent() adds, as seen on a real device on this VM. */
        if (asprintf(&drv_line, "DRIVER=%s\n", driver) < 0)
                return -ENOMEM;
        r = write_filef(dir, "uevent", 0644,
                        "%sPCI_CLASS=%lX\nPCI_ID=%04lX:%04lX\nPCI_SUBSYS_ID=%04lX:%04lX\n"
                        "PCI_SLOT_NAME=%s\nMODALIAS=pci:v%08lXd%08lXsv%08lXsd%08lXbc%02lXsc%02lXi%02lX\n",
                        driver ? drv_line : "", class, vendor, device, svendor, sdevice, addr,
                        vendor, device, svendor, sdevice, (class >> 16) & 0xff, (class >> 8) & 0xff,
                        class & 0xff);
        if (r < 0)
                return r;

        r = write_filef(dir, "vendor", 0444, "0x%04lx\n", vendor);
        if (r < 0)
                return r;
        r = write_filef(dir, "device", 0444, "0x%04lx\n", device);
        if (r < 0)
                return r;
        r = write_filef(dir, "class", 0444, "0x%06lx\n", class);
        if (r < 0)
                return r;
        r = write_filef(dir, "subsystem_vendor", 0444, "0x%04lx\n", svendor);
        if (r < 0)
                return r;
        r = write_filef(dir, "subsystem_device", 0444, "0x%04lx\n", sdevice);
        if (r < 0)
                return r;

        if (tsm || dsm || bound) {
                _cleanup_free_ char *tsmdir = NULL;

                if (asprintf(&tsmdir, "%s/tsm", dir) < 0)
                        return -ENOMEM;
                r = mkdir_p(tsmdir, 0755);
                if (r < 0)
                        return r;
                /* Only a DSM has connect and disconnect; a function it manages has dsm and bound. */
                if (tsm) {
                        r = write_filef(tsmdir, "connect", 0644, "%s\n", tsm);
                        if (r < 0)
                                return r;
                        r = write_filef(tsmdir, "disconnect", 0200, "%s", "");
                        if (r < 0)
                                return r;
                        if (!auth)
                                auth = tsm;
                }
                if (dsm) {
                        r = write_filef(tsmdir, "dsm", 0444, "%s\n", dsm);
                        if (r < 0)
                                return r;
                }
                if (bound) {
                        r = write_filef(tsmdir, "bound", 0444, "%s\n", bound);
                        if (r < 0)
                                return r;
                }
        }
        if (auth) {
                r = write_filef(dir, "authenticated", 0444, "%s\n", auth);
                if (r < 0)
                        return r;
        }
        if (physfn) {
                if (!strneq(physfn, "/devices/", 9))
                        return -EINVAL;
                r = link_up(dir, "physfn", e->devpath, physfn + 1);
                if (r < 0)
                        return r;
        }

        return make_bus_device(root, dir, e->devpath, "pci", driver);
}

static int make_tsm(const char *root, const char *dir, const Entry *e) {
        const char *pci_mode = entry_get(e, "pci_mode");
        int r;

        /* Class devices without devt carry no uevent keys. */
        r = write_filef(dir, "uevent", 0644, "%s", "");
        if (r < 0)
                return r;
        if (pci_mode) {
                r = write_filef(dir, "pci_mode", 0444, "%s\n", pci_mode);
                if (r < 0)
                        return r;
        }
        r = link_up(dir, "subsystem", e->devpath, "class/tsm");
        if (r < 0)
                return r;
        return link_register(root, "/class/tsm", e->devpath);
}

static int apply_entry(const char *root, const Entry *e) {
        _cleanup_free_ char *dir = NULL;
        int r;

        if (streq(e->kind, "class")) {
                if (asprintf(&dir, "%s/class/%s", root, e->devpath) < 0)
                        return -ENOMEM;
                return mkdir_p(dir, 0755);
        }

        if (!strneq(e->devpath, "/devices/", 9))
                return -EINVAL;
        if (asprintf(&dir, "%s%s", root, e->devpath) < 0)
                return -ENOMEM;
        r = mkdir_p(dir, 0755);
        if (r < 0)
                return r;

        if (streq(e->kind, "device"))
                return write_filef(dir, "uevent", 0644, "%s", "");

        if (streq(e->kind, "pci"))
                return make_pci(root, dir, e);

        if (streq(e->kind, "faux")) {
                r = write_filef(dir, "uevent", 0644, "DRIVER=faux_driver\n");
                if (r < 0)
                        return r;
                return make_bus_device(root, dir, e->devpath, "faux", "faux_driver");
        }

        if (streq(e->kind, "busdev")) {
                const char *bus = entry_get(e, "bus"), *driver = entry_get(e, "driver");

                if (!bus)
                        return -EINVAL;
                r = driver ? write_filef(dir, "uevent", 0644, "DRIVER=%s\n", driver) :
                             write_filef(dir, "uevent", 0644, "%s", "");
                if (r < 0)
                        return r;
                return make_bus_device(root, dir, e->devpath, bus, driver);
        }

        if (streq(e->kind, "tsm"))
                return make_tsm(root, dir, e);

        return -EINVAL;
}

static void entry_done(Entry *e) {
        free(e->kind);
        free(e->devpath);
        for (size_t i = 0; i < e->n_keys; i++) {
                free(e->keys[i]);
                free(e->values[i]);
        }
        *e = (Entry) {};
}

static int parse_line(const char *line, Entry *ret) {
        _cleanup_free_ char *copy = NULL;
        Entry e = {};
        char *save = NULL, *tok;
        size_t n = 0;

        copy = strdup(line);
        if (!copy)
                return -ENOMEM;
        /* Strip comments. */
        tok = strchr(copy, '#');
        if (tok)
                *tok = 0;

        for (tok = strtok_r(copy, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save), n++) {
                if (n == 0)
                        e.kind = strdup(tok);
                else if (n == 1)
                        e.devpath = strdup(tok);
                else {
                        char *eq = strchr(tok, '=');

                        if (!eq || e.n_keys >= MAX_KEYS) {
                                entry_done(&e);
                                return -EINVAL;
                        }
                        e.keys[e.n_keys] = strndup(tok, eq - tok);
                        e.values[e.n_keys] = strdup(eq + 1);
                        if (!e.keys[e.n_keys] || !e.values[e.n_keys]) {
                                e.n_keys++;
                                entry_done(&e);
                                return -ENOMEM;
                        }
                        e.n_keys++;
                        continue;
                }
                if ((n == 0 && !e.kind) || (n == 1 && !e.devpath)) {
                        entry_done(&e);
                        return -ENOMEM;
                }
        }

        if (n == 0)
                return 0; /* blank or comment */
        if (n == 1) {
                entry_done(&e);
                return -EINVAL;
        }

        *ret = e;
        return 1;
}

int sysfs_fixture_apply_line(const char *root, const char *line) {
        Entry e;
        int r;

        r = parse_line(line, &e);
        if (r <= 0)
                return r;
        r = apply_entry(root, &e);
        entry_done(&e);
        return r;
}

int sysfs_fixture_apply_text(const char *root, const char *text) {
        const char *p = text;
        int r;

        while (*p) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t) (nl - p) : strlen(p);
                _cleanup_free_ char *line = strndup(p, len);

                if (!line)
                        return -ENOMEM;
                r = sysfs_fixture_apply_line(root, line);
                if (r < 0)
                        return r;
                p += len;
                if (*p == '\n')
                        p++;
        }
        return 0;
}

int sysfs_fixture_apply_file(const char *root, const char *path) {
        _cleanup_free_ char *line = NULL;
        size_t allocated = 0;
        FILE *f;
        int r = 0;

        f = fopen(path, "re");
        if (!f)
                return negative_errno();
        while (getline(&line, &allocated, f) >= 0) {
                r = sysfs_fixture_apply_line(root, line);
                if (r < 0)
                        break;
        }
        fclose(f);
        return r;
}

/* nftw has no userdata; removal is single-threaded test code. */
static const char *remove_root;

static int unregister_if_device(const char *path) {
        char target[PATH_MAX], link[PATH_MAX];
        ssize_t n;

        if ((size_t) snprintf(link, sizeof(link), "%s/subsystem", path) >= sizeof(link))
                return -ENAMETOOLONG;
        n = readlink(link, target, sizeof(target) - 1);
        if (n < 0)
                return 0; /* not a device directory */
        target[n] = 0;

        /* ".../class/tsm" -> class/tsm/<name>; ".../bus/pci" -> bus/pci/devices/<name> */
        const char *cls = strstr(target, "class/"), *bus = strstr(target, "bus/");
        char reg[PATH_MAX];

        if (cls)
                snprintf(reg, sizeof(reg), "%s/%s/%s", remove_root, cls, basename_of(path));
        else if (bus)
                snprintf(reg, sizeof(reg), "%s/%s/devices/%s", remove_root, bus, basename_of(path));
        else
                return 0;
        if (unlink(reg) < 0 && errno != ENOENT)
                return negative_errno();
        return 0;
}

/* Pre-order pass: drop the class/bus links while the subsystem links can still be read. */
static int unregister_cb(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        if (type == FTW_D && unregister_if_device(path) < 0)
                return -1;
        return 0;
}

static int remove_cb(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        if (type == FTW_DP)
                return rmdir(path) < 0 ? -1 : 0;
        return unlink(path) < 0 ? -1 : 0;
}

int sysfs_fixture_remove(const char *root, const char *devpath) {
        _cleanup_free_ char *dir = NULL;

        if (!strneq(devpath, "/devices/", 9))
                return -EINVAL;
        if (asprintf(&dir, "%s%s", root, devpath) < 0)
                return -ENOMEM;

        remove_root = root;
        if (nftw(dir, unregister_cb, 16, FTW_PHYS) < 0)
                return negative_errno();
        if (nftw(dir, remove_cb, 16, FTW_DEPTH | FTW_PHYS) < 0)
                return negative_errno();
        return 0;
}

int sysfs_fixture_write_attr(const char *root, const char *devpath, const char *attr,
                             const char *value) {
        _cleanup_free_ char *path = NULL, *dir = NULL;
        char *slash;
        int r;

        if (asprintf(&path, "%s%s/%s", root, devpath, attr) < 0)
                return -ENOMEM;
        dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        *slash = 0;
        r = mkdir_p(dir, 0755);
        if (r < 0)
                return r;

        return write_filef(dir, slash + 1, 0644, "%s\n", value);
}

/* 30 root ports x 8 functions per emulated domain keeps every slot number below 32. */
#define SCALED_PER_DOMAIN 240U

void sysfs_fixture_scaled_counts(unsigned n_devices, SysfsFixtureCounts *ret) {
        unsigned n_ports = 0, n_connected = 0;

        for (unsigned i = 0; i < n_devices; i++) {
                unsigned j = i % SCALED_PER_DOMAIN;

                if (j % 8 == 0)
                        n_ports++;
                /* Whether its function 0 is connected: i / 8 is the same for all 8 functions. */
                if ((i / 8) % 3 == 0)
                        n_connected++;
        }
        *ret = (SysfsFixtureCounts) {
                .n_pci = n_devices + n_ports + 1 /* PSP */,
                .n_dsm = n_ports,
                .n_tdisp = n_devices,
                .n_connected = n_connected,
        };
}

char *sysfs_fixture_generate_scaled(unsigned n_devices) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f;

        f = open_memstream(&buf, &size);
        if (!f)
                return NULL;

        fputs("# generated: two TSMs and scaled PCI endpoints\n"
              "device /devices/pci0000:00\n"
              "pci /devices/pci0000:00/0000:00:18.2 vendor=0x1022 device=0x14ca class=0x108000 driver=ccp\n"
              "tsm /devices/pci0000:00/0000:00:18.2/tsm/tsm0\n"
              "device /devices/faux\n"
              "faux /devices/faux/tdx_host\n"
              "tsm /devices/faux/tdx_host/tsm/tsm1\n",
              f);

        for (unsigned i = 0; i < n_devices; i++) {
                unsigned domain = 0x10 + i / SCALED_PER_DOMAIN, j = i % SCALED_PER_DOMAIN;
                unsigned slot = 1 + j / 8, fn = j % 8;
                char rp[128];

                snprintf(rp, sizeof(rp), "/devices/pci%04x:00/%04x:00:%02x.0", domain, domain, slot);
                if (j == 0)
                        fprintf(f, "device /devices/pci%04x:00\n", domain);
                if (fn == 0)
                        fprintf(f, "pci %s vendor=0x8086 device=0x7075 class=0x060400 driver=pcieport\n",
                                rp);

                /* Function 0 is the DSM with tsm/; every third one is connected. */
                fprintf(f, "pci %s/%04x:%02x:00.%u vendor=0x15b3 device=0x%s class=0x020000 driver=vfio-pci",
                        rp, domain, slot, fn, fn == 0 ? "1021" : "101e");
                if (fn == 0)
                        fprintf(f, " tsm=%s",
                                (i / 8) % 3 != 0 ? "" : (i / 8) % 2 == 0 ? "tsm0" : "tsm1");
                fputc('\n', f);
        }

        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}
