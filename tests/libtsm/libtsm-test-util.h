/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Helpers shared by libtsm's tests: TDISP requests for an emulated device, an event loop that
 * drives a TsmClient with poll() until a condition holds (bounded), and assertions on libtsm's
 * error state. Runs in: tests only.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "harness.h"
#include "tsm.h"

/* The emulated platform's default devices. */
#define DEV0 "0000:01:00.0"
#define DEV1 "0000:02:00.0"

/* Writes a TDISP 1.0 request of the given type (no body unless given) for the device at
 * pci_address; returns its length. */
size_t tdisp_request(const char *pci_address, uint8_t type, const void *body, size_t body_len, void *buf,
                     size_t size);
/* The message type of a TDISP response (its second byte); -1 if too short. */
int tdisp_response_type(const void *resp, size_t len);

/* Runs poll() and, when it reports the fd ready, tsm_client_process() (as an event loop would)
 * until *counter reaches n or timeout_usec passes; returns
 * true if it did. Stops early (false) if tsm_client_process() fails, storing its result in
 * *ret_process (may be NULL). */
bool pump_until(TsmClient *c, const unsigned *counter, unsigned n, uint64_t timeout_usec, int *ret_process);

/* Opens a context, attaches pci_address as vDevice vdevice_id and binds it, as guest requests
 * need; returns the context. */
uint64_t setup_device(TsmClient *c, const char *pci_address, uint32_t vdevice_id, int *ret_iommufd);

#define ASSERT_ERROR_NAME(c, name) ASSERT_STREQ(tsm_client_get_error_name(c), (name))
#define ASSERT_NO_ERROR_NAME(c) ASSERT_NULL(tsm_client_get_error_name(c))
