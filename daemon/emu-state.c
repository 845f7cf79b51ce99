/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The emulated devices' snapshot across restarts of tsmd. Runs in: monitor. */

#include <endian.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "emu-state.h"
#include "log.h"
#include "sha256.h"

#define EMU_STATE_MAGIC "tsmdemu1"
#define EMU_STATE_SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

#define RECORD_BOUND (1U << 0)     /* the host had bound the device */
#define RECORD_TSM_NONCE (1U << 1) /* the TSM held a nonce, in tsm_nonce */
#define RECORD_MEM (1U << 2)       /* the memory window follows the record */

typedef struct _packed_ Header {
        char magic[8];
        uint32_t version;
        uint32_t n_devices;
} Header;

typedef struct _packed_ Record {
        uint16_t domain;
        uint8_t bus, device, function;
        uint8_t state;
        uint16_t vendor_id;
        uint16_t device_id;
        uint32_t n_mmio_ranges;
        uint8_t flags;
        uint8_t reserved[3];
        uint64_t n_locks;
        uint8_t nonce[TDISP_NONCE_SIZE];
        TdispLockInterfaceParams lock;
        uint64_t regs[EMU_DEBUG_N_REGS];
        uint8_t tsm_nonce[TDISP_NONCE_SIZE];
} Record;

#define EMU_STATE_SIZE_MAX                                                                                             \
        (sizeof(Header) + (size_t) EMU_DEVICES_MAX * (sizeof(Record) + EMU_DEBUG_MEM_SIZE) + SHA256_DIGEST_SIZE)

int emu_state_salt_nonces(EmuPlatform *p) {
        uint64_t salt;
        ssize_t n;

        assert(p);

        n = getrandom(&salt, sizeof(salt), 0);
        if (n < 0)
                return negative_errno();
        if ((size_t) n != sizeof(salt))
                return -EIO;
        emu_platform_set_nonce_salt(p, salt);
        return 0;
}

/* Whether d, or its TSM for it, holds anything a fresh device would not. (A bound TDI is locked.) */
static bool device_worth_saving(const EmuTsm *t, const EmuDevice *d) {
        return !emu_device_is_clean(d) || emu_tsm_holds_nonce(t, d);
}

static int write_hashed(int fd, Sha256 *hash, const void *buf, size_t n) {
        sha256_update(hash, buf, n);
        return write_all(fd, buf, n);
}

static int write_record(int fd, Sha256 *hash, const EmuTsm *t, const EmuDevice *d, bool bound) {
        const EmuDeviceConfig *c = emu_device_get_config(d);
        EmuDeviceSaved s;
        Record rec;
        int r;

        emu_device_save(d, &s);
        rec = (Record) {
                .domain = htole16(c->address.domain),
                .bus = c->address.bus,
                .device = c->address.device,
                .function = c->address.function,
                .state = (uint8_t) s.state,
                .vendor_id = htole16(c->vendor_id),
                .device_id = htole16(c->device_id),
                .n_mmio_ranges = htole32(c->n_mmio_ranges),
                .flags = (bound ? RECORD_BOUND : 0) | (s.mem ? RECORD_MEM : 0),
                .n_locks = htole64(s.n_locks),
                .lock.flags = htole16(s.lock.flags),
                .lock.default_stream_id = s.lock.default_stream_id,
                .lock.reserved = s.lock.reserved,
                .lock.mmio_reporting_offset = htole64(s.lock.mmio_reporting_offset),
                .lock.bind_p2p_address_mask = htole64(s.lock.bind_p2p_address_mask),
        };
        memcpy(rec.nonce, s.nonce, sizeof(rec.nonce));
        for (size_t i = 0; i < EMU_DEBUG_N_REGS; i++)
                rec.regs[i] = htole64(s.regs[i]);
        if (emu_tsm_get_nonce(t, d, rec.tsm_nonce))
                rec.flags |= RECORD_TSM_NONCE;

        r = write_hashed(fd, hash, &rec, sizeof(rec));
        /* SECURITY: the nonces were in it. */
        explicit_bzero(&rec, sizeof(rec));
        explicit_bzero(s.nonce, sizeof(s.nonce));
        if (r >= 0 && s.mem)
                r = write_hashed(fd, hash, s.mem, EMU_DEBUG_MEM_SIZE);
        return r;
}

int emu_state_save(EmuPlatform *p, const EmuTsm *t, EmuStateHeld held, void *userdata, int *ret_fd,
                   size_t *ret_n) {
        _cleanup_close_ int fd = -EBADF;
        uint8_t digest[SHA256_DIGEST_SIZE];
        Header h = { .version = htole32(EMU_STATE_VERSION) };
        size_t n = 0;
        Sha256 hash;
        bool bound;
        int r;

        assert(p);
        assert(held);
        assert(ret_fd);

        for (size_t i = 0; i < emu_platform_get_n_devices(p); i++) {
                EmuDevice *d = emu_platform_get_device(p, i);

                if (held(emu_device_get_address(d), &bound, userdata) && device_worth_saving(t, d))
                        n++;
        }
        if (ret_n)
                *ret_n = n;
        if (n == 0) {
                *ret_fd = -EBADF;
                return 0;
        }

        fd = memfd_create("tsmd-emu-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return negative_errno();
        sha256_init(&hash);
        memcpy(h.magic, EMU_STATE_MAGIC, sizeof(h.magic));
        h.n_devices = htole32((uint32_t) n);
        r = write_hashed(fd, &hash, &h, sizeof(h));
        for (size_t i = 0; r >= 0 && i < emu_platform_get_n_devices(p); i++) {
                EmuDevice *d = emu_platform_get_device(p, i);

                if (held(emu_device_get_address(d), &bound, userdata) && device_worth_saving(t, d))
                        r = write_record(fd, &hash, t, d, bound);
        }
        if (r < 0)
                return r;
        sha256_finish(&hash, digest);
        r = write_all(fd, digest, sizeof(digest));
        if (r < 0)
                return r;
        if (fcntl(fd, F_ADD_SEALS, EMU_STATE_SEALS) < 0)
                return negative_errno();
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Moves *offset past the record there (size bytes at buf); -EBADMSG if it does not fit. */
static int skip_record(const uint8_t *buf, size_t size, size_t *offset) {
        size_t n = sizeof(Record);

        if (size - *offset < n)
                return -EBADMSG;
        if (buf[*offset + offsetof(Record, flags)] & RECORD_MEM)
                n += EMU_DEBUG_MEM_SIZE;
        if (size - *offset < n)
                return -EBADMSG;
        *offset += n;
        return 0;
}

/* One record at *offset of the snapshot (size bytes at buf, checked): loaded into the device
 * p has there if it is the same, else left alone with a log line. Moves *offset past it;
 * -EBADMSG if it does not fit. */
static int load_record(EmuPlatform *p, EmuTsm *t, const uint8_t *buf, size_t size, size_t *offset, bool *ret_loaded) {
        char address[EMU_PCI_ADDRESS_STRLEN + 1];
        const EmuDeviceConfig *c;
        EmuPciAddress a;
        EmuDeviceSaved s;
        EmuDevice *d;
        Record rec;
        int r;

        *ret_loaded = false;
        if (size - *offset < sizeof(rec))
                return -EBADMSG;
        memcpy(&rec, buf + *offset, sizeof(rec));
        *offset += sizeof(rec);
        s = (EmuDeviceSaved) {
                .state = rec.state,
                .n_locks = le64toh(rec.n_locks),
                .lock.flags = le16toh(rec.lock.flags),
                .lock.default_stream_id = rec.lock.default_stream_id,
                .lock.reserved = rec.lock.reserved,
                .lock.mmio_reporting_offset = le64toh(rec.lock.mmio_reporting_offset),
                .lock.bind_p2p_address_mask = le64toh(rec.lock.bind_p2p_address_mask),
        };
        memcpy(s.nonce, rec.nonce, sizeof(s.nonce));
        for (size_t i = 0; i < EMU_DEBUG_N_REGS; i++)
                s.regs[i] = le64toh(rec.regs[i]);
        if (rec.flags & RECORD_MEM) {
                if (size - *offset < EMU_DEBUG_MEM_SIZE) {
                        r = -EBADMSG;
                        goto finish;
                }
                s.mem = buf + *offset;
                *offset += EMU_DEBUG_MEM_SIZE;
        }

        a = (EmuPciAddress) { .domain = le16toh(rec.domain), .bus = rec.bus, .device = rec.device,
                              .function = rec.function };
        if (a.device > 0x1f || a.function > 7 || (rec.flags & ~(RECORD_BOUND | RECORD_TSM_NONCE | RECORD_MEM))) {
                log_warning("Ignoring a malformed emulated device in the saved state.");
                r = 0;
                goto finish;
        }
        emu_pci_address_format(&a, address);
        d = emu_platform_find_device(p, address);
        c = d ? emu_device_get_config(d) : NULL;
        if (!d) {
                log_notice("Emulated device %s had state before the restart, but is not emulated any more; "
                           "dropping its state.", address);
                r = 0;
                goto finish;
        }
        if (c->vendor_id != le16toh(rec.vendor_id) || c->device_id != le16toh(rec.device_id) ||
            c->n_mmio_ranges != le32toh(rec.n_mmio_ranges)) {
                log_notice("Emulated device %s is configured as another device than before the restart; "
                           "it starts fresh.", address);
                r = 0;
                goto finish;
        }
        r = emu_device_load(d, &s);
        if (r == -EINVAL) {
                log_warning("Emulated device %s: its saved state is not one the device can be in; it starts fresh.",
                            address);
                r = 0;
                goto finish;
        }
        if (r >= 0)
                r = emu_tsm_restore(t, d, rec.flags & RECORD_TSM_NONCE ? rec.tsm_nonce : NULL,
                                    rec.flags & RECORD_BOUND);
        if (r < 0)
                log_warning_errno(r, "Emulated device %s: failed to restore its state: %m", address);
        else {
                log_info("Emulated device %s restored in state %s.", address,
                         tdisp_state_to_string(emu_device_get_state(d)));
                *ret_loaded = true;
        }
        r = 0;
finish:
        /* SECURITY: the nonces were in them. */
        explicit_bzero(&rec, sizeof(rec));
        explicit_bzero(s.nonce, sizeof(s.nonce));
        return r;
}

int emu_state_load(EmuPlatform *p, EmuTsm *t, int fd, size_t *ret_n) {
        uint8_t digest[SHA256_DIGEST_SIZE];
        size_t size, offset = sizeof(Header), n = 0;
        const uint8_t *buf;
        struct stat st;
        Header h;
        int seals, r = 0;

        assert(p);
        assert(t);

        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode) || st.st_size < (off_t) (sizeof(Header) + SHA256_DIGEST_SIZE))
                return -EBADMSG;
        if ((uint64_t) st.st_size > EMU_STATE_SIZE_MAX)
                return -EFBIG;
        /* SECURITY: sealed against writes, so what is checked is what is read, and against
         * shrinking, so that no page of the mapping goes away under the reads (SIGBUS). */
        seals = fcntl(fd, F_GET_SEALS);
        if (seals < 0 || (seals & (F_SEAL_WRITE | F_SEAL_SHRINK)) != (F_SEAL_WRITE | F_SEAL_SHRINK))
                return -EBADMSG;
        size = (size_t) st.st_size;
        buf = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (buf == MAP_FAILED)
                return negative_errno();

        sha256(buf, size - SHA256_DIGEST_SIZE, digest);
        memcpy(&h, buf, sizeof(h));
        if (memcmp(digest, buf + size - SHA256_DIGEST_SIZE, SHA256_DIGEST_SIZE) != 0 ||
            memcmp(h.magic, EMU_STATE_MAGIC, sizeof(h.magic)) != 0)
                r = -EBADMSG;
        else if (le32toh(h.version) != EMU_STATE_VERSION)
                r = -EPROTONOSUPPORT;
        else if (le32toh(h.n_devices) > EMU_DEVICES_MAX)
                r = -EBADMSG;
        size -= SHA256_DIGEST_SIZE;
        /* Every record fits, and nothing follows the last: checked before any is loaded, so
         * that a damaged snapshot loads none. */
        for (uint32_t i = 0; r >= 0 && i < le32toh(h.n_devices); i++)
                r = skip_record(buf, size, &offset);
        if (r >= 0 && offset != size)
                r = -EBADMSG;
        offset = sizeof(Header);
        for (uint32_t i = 0; r >= 0 && i < le32toh(h.n_devices); i++) {
                bool loaded;

                r = load_record(p, t, buf, size, &offset, &loaded);
                n += loaded;
        }
        assert(r < 0 || offset == size);
        (void) munmap((void *) buf, size + SHA256_DIGEST_SIZE);
        if (ret_n)
                *ret_n = n;
        return r;
}
