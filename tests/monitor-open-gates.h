/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The monitor's policy gates (MonitorDispatchCallbacks) letting everything through, for the
 * programs that drive the monitor's dispatch for what lies behind them (bench-privsep measures
 * it, fuzz-priv fuzzes it). Runs in: tests.
 */
#pragma once

#include "monitor-dispatch.h"

static inline bool open_gate_scope(const char *pci_address, TsmBackendType backend, const char *scope,
                                   void *userdata) {
        return true;
}

static inline bool open_gate_device(const char *pci_address, TsmBackendType backend, void *userdata) {
        return true;
}

static const MonitorDispatchCallbacks open_gates = {
        .scope_granted = open_gate_scope,
        .device_listed = open_gate_device,
};
