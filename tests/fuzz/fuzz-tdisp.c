/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the emulated TDISP platform: arbitrary bytes as a sequence of TDISP
 * requests in every scope (interleaved with host bind/unbind, fault injection and TDI errors)
 * to one device, or as a platform config string. Checks the invariants every answer must
 * keep, not just the absence of crashes. Runs in: tests (fuzzing builds only).
 *
 * Input: byte 0 selects the mode. Odd: the rest is a config string. Even: the rest is a list
 * of records, each an op byte (bits 0-1 scope, bits 2-4 action) and its operands:
 *   action 0, 1  request: u16 length (little-endian), then that many bytes
 *   action 2     the same, but a 48-byte START_INTERFACE_REQUEST gets the last nonce
 *                the device handed out (a fuzzer cannot guess it)
 *   action 3     the same, preceded by one byte: the response buffer size
 *   action 4     bind            action 5  unbind
 *   action 6     inject fault: one byte (bits 0-1 fault, bits 2-7 count), and for a TDISP
 *                error fault a u16 error code
 *   action 7     scope bit 0: trigger a TDI error, else clear the fault
 */

#include <endian.h>

#include "emu-config.h"
#include "emu-device.h"
#include "emu-platform.h"
#include "fuzz.h"
#include "tdisp.h"


typedef struct Input {
        const uint8_t *data;
        size_t size;
} Input;

static bool take(Input *in, size_t n, const uint8_t **ret) {
        if (in->size < n)
                return false;
        *ret = in->data;
        in->data += n;
        in->size -= n;
        return true;
}

static void fuzz_config(const uint8_t *data, size_t size) {
        _cleanup_(emu_platform_freep) EmuPlatform *p = NULL;
        _cleanup_free_ EmuDeviceConfig *devices = NULL;
        _cleanup_free_ char *s = NULL;
        EmuDeviceConfig c;
        EmuPciAddress a;
        size_t n;
        int r;

        s = malloc(size + 1);
        if (!s)
                return;
        memcpy(s, data, size);
        s[size] = '\0';

        r = emu_config_parse(s, &devices, &n);
        CHECK(r == 0 || r == -EINVAL || r == -ENOMEM);
        if (r == 0) {
                CHECK(n <= EMU_DEVICES_MAX);
                CHECK((n == 0) == !devices);
                for (size_t i = 0; i < n; i++) {
                        CHECK(devices[i].address.domain <= 0xff);
                        CHECK(devices[i].address.device <= 0x1f && devices[i].address.function <= 7);
                        CHECK(devices[i].n_mmio_ranges <= EMU_MMIO_RANGES_MAX);
                        CHECK(devices[i].vendor_id != 0xffff);
                }
        }

        /* The platform accepts exactly what the parser accepts. */
        r = emu_platform_new_from_config(s, &p);
        CHECK(r == 0 || r == -EINVAL || r == -ENOMEM);
        if (r == 0 && devices)
                CHECK(emu_platform_get_n_devices(p) == n);

        /* Every listed address formats back to something that finds the same device. */
        for (size_t i = 0; i < emu_platform_get_n_devices(p); i++) {
                EmuDevice *d = emu_platform_get_device(p, i);
                CHECK(emu_platform_find_device(p, emu_device_get_address(d)) == d);
        }

        r = emu_device_config_parse(s, &c);
        CHECK(r == 0 || r == -EINVAL);
        r = emu_pci_address_parse(s, &a);
        CHECK(r == 0 || r == -EINVAL);
        if (r == 0) {
                char buf[EMU_PCI_ADDRESS_STRLEN + 1];
                EmuPciAddress b;

                CHECK(emu_pci_address_parse(emu_pci_address_format(&a, buf), &b) == 0);
                CHECK(emu_pci_address_equal(&a, &b));
        }
}

/* req/req_len: what was asked, whose version byte every answer carries (1.0 if it has none). */
static void check_response(const EmuDevice *d, const uint8_t *req, size_t req_len, const uint8_t *resp,
                           size_t len, size_t size, uint8_t nonce[static TDISP_NONCE_SIZE]) {
        TdispHeader h;

        CHECK(len <= size);
        CHECK(tdisp_header_decode(resp, len, &h) == 0);
        CHECK(h.version == (req_len > 0 ? req[0] : TDISP_VERSION_1_0));
        CHECK(h.version == TDISP_VERSION_1_0 || h.message_type == TDISP_MSG_ERROR);
        CHECK(h.reserved[0] == 0 && h.reserved[1] == 0 && h.interface_id.reserved == 0);
        CHECK(h.message_type < 0x80); /* a response, never a request */

        switch (h.message_type) {
        case TDISP_MSG_ERROR:
                CHECK(len == sizeof(TdispErrorResponse));
                break;
        case TDISP_MSG_LOCK_INTERFACE_RSP:
                CHECK(len == sizeof(TdispLockInterfaceResponse));
                CHECK(emu_device_get_state(d) == TDISP_STATE_CONFIG_LOCKED);
                memcpy(nonce, resp + sizeof(TdispHeader), TDISP_NONCE_SIZE);
                break;
        case TDISP_MSG_START_INTERFACE_RSP:
                CHECK(len == sizeof(TdispHeader));
                CHECK(emu_device_get_state(d) == TDISP_STATE_RUN);
                break;
        case TDISP_MSG_STOP_INTERFACE_RSP:
                CHECK(len == sizeof(TdispHeader));
                CHECK(emu_device_get_state(d) == TDISP_STATE_CONFIG_UNLOCKED);
                break;
        case TDISP_MSG_DEVICE_INTERFACE_STATE:
                CHECK(len == sizeof(TdispDeviceInterfaceStateResponse));
                CHECK(resp[sizeof(TdispHeader)] == emu_device_get_state(d));
                break;
        case TDISP_MSG_DEVICE_INTERFACE_REPORT: {
                uint16_t portion;

                CHECK(len >= sizeof(TdispDeviceInterfaceReportResponse));
                memcpy(&portion, resp + sizeof(TdispHeader), sizeof(portion));
                CHECK(len == sizeof(TdispDeviceInterfaceReportResponse) + le16toh(portion));
                CHECK(portion > 0 && le16toh(portion) <= EMU_REPORT_PORTION_MAX);
                break;
        }
        case TDISP_MSG_VERSION:
        case TDISP_MSG_CAPABILITIES:
        case TDISP_MSG_VDM_RSP:
                break;
        default:
                CHECK(false);
        }
}

static void fuzz_requests(const uint8_t *data, size_t size) {
        _cleanup_(emu_device_unrefp) EmuDevice *d = NULL;
        uint8_t nonce[TDISP_NONCE_SIZE] = {}, resp[EMU_RESPONSE_MAX];
        Input in = { data, size };
        EmuDeviceConfig c;
        const uint8_t *op;

        CHECK(emu_device_config_parse("0000:01:00.0:ranges=5", &c) == 0);
        CHECK(emu_device_new(&c, &d) == 0);

        while (take(&in, 1, &op)) {
                EmuScope scope = (EmuScope) (*op & 3);
                unsigned action = (*op >> 2) & 7;
                TdispState before = emu_device_get_state(d);
                const uint8_t *p, *body;
                int r;

                switch (action) {
                case 0 ... 3: {
                        _cleanup_free_ uint8_t *req = NULL;
                        size_t resp_size = sizeof(resp), len = SIZE_MAX, n;

                        if (action == 3) {
                                if (!take(&in, 1, &p))
                                        return;
                                resp_size = *p;
                        }
                        if (!take(&in, 2, &p))
                                return;
                        n = MIN((size_t) (p[0] | p[1] << 8), in.size);
                        if (!take(&in, n, &body))
                                return;

                        /* An exact-size heap copy, so that any overread is caught. */
                        req = malloc(n ?: 1);
                        if (!req)
                                return;
                        memcpy(req, body, n);
                        if (action == 2 && n == sizeof(TdispStartInterfaceRequest))
                                memcpy(req + sizeof(TdispHeader), nonce, TDISP_NONCE_SIZE);

                        r = emu_device_request(d, scope, req, n, resp, resp_size, &len);
                        CHECK(r == 0 || r == -EPERM || r == -EBUSY || r == -ETIMEDOUT ||
                              r == -ENODEV || r == -ENOBUFS);
                        if (r == 0)
                                check_response(d, req, n, resp, len, resp_size, nonce);
                        else {
                                CHECK(len == SIZE_MAX);
                                /* Only a device dropping off the bus changes state on failure. */
                                if (r != -ENODEV)
                                        CHECK(emu_device_get_state(d) == before);
                        }
                        break;
                }
                case 4:
                        r = emu_device_bind(d, nonce);
                        CHECK(r == 0 || r == -EALREADY || r == -EBUSY || r == -ETIMEDOUT ||
                              r == -ENODEV || r == -EIO);
                        if (r == 0)
                                CHECK(emu_device_get_state(d) == TDISP_STATE_CONFIG_LOCKED);
                        break;
                case 5:
                        r = emu_device_unbind(d);
                        CHECK(r == 0 || r == -EBUSY || r == -ETIMEDOUT || r == -ENODEV || r == -EIO);
                        if (r == 0)
                                CHECK(emu_device_get_state(d) == TDISP_STATE_CONFIG_UNLOCKED);
                        break;
                case 6: {
                        EmuFault fault;
                        unsigned count;

                        if (!take(&in, 1, &p))
                                return;
                        fault = (EmuFault) (*p & 3);
                        count = *p >> 2;
                        if (fault == EMU_FAULT_TDISP_ERROR) {
                                if (!take(&in, 2, &p))
                                        return;
                                r = emu_device_inject_tdisp_error(d, (uint32_t) (p[0] | p[1] << 8), count);
                                CHECK(r == 0 || r == -EINVAL);
                        } else
                                CHECK(emu_device_inject_fault(d, fault, count) == 0);
                        break;
                }
                case 7:
                        if (scope & 1) {
                                r = emu_device_trigger_tdi_error(d);
                                CHECK(r >= 0 && r <= 1);
                                CHECK(r == 0 || emu_device_get_state(d) == TDISP_STATE_ERROR);
                        } else
                                emu_device_clear_fault(d);
                        break;
                }

                CHECK(emu_device_get_state(d) >= 0 && emu_device_get_state(d) < _TDISP_STATE_MAX);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* Nothing legitimate is longer; bigger inputs only slow the fuzzer down. */
        if (size < 1 || size > 65536)
                return 0;

        if (data[0] & 1)
                fuzz_config(data + 1, size - 1);
        else
                fuzz_requests(data + 1, size - 1);
        return 0;
}
