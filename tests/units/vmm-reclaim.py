#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# A VMM across a restart of tsmd.service, on the raw Varlink protocol (stdlib only: it runs in
# the booted container from the host's /usr).
#   vmm-reclaim.py hold SOCKET TOKEN-FILE  opens a context, attaches vDevice 1 = 0000:01:00.0 and
#                                          binds it, writes the reclaim token, and holds the
#                                          connection until tsmd closes it (exit 0 then)
#   vmm-reclaim.py hold-shared SOCKET TOKEN-FILE
#                                          as hold, with the context's iommufd adopted on a
#                                          second connection (AdoptContext), vDevice 1 in that
#                                          one: its token in TOKEN-FILE, the first's in
#                                          TOKEN-FILE.open
#   vmm-reclaim.py reclaim SOCKET TOKEN    takes the context back: vDevice 1 still bound
#   vmm-reclaim.py reclaim-empty SOCKET TOKEN
#                                          takes back a context without vDevices
import json
import os
import socket
import sys

DEVICE = "0000:01:00.0"


class Varlink:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""
        self.fds = []

    def recv(self):
        while b"\0" not in self.buf:
            data, fds, _, _ = socket.recv_fds(self.sock, 65536, 16)
            self.fds += fds
            if not data:
                raise EOFError("tsmd closed the connection")
            self.buf += data
        msg, _, self.buf = self.buf.partition(b"\0")
        return json.loads(msg)

    def call(self, method, fds=(), **params):
        socket.send_fds(self.sock, [json.dumps({"method": method, "parameters": params}).encode() + b"\0"], fds)
        reply = self.recv()
        if "error" in reply:
            sys.exit(f"{method}: {reply['error']} {reply.get('parameters')}")
        return reply.get("parameters", {})


def write_token(token_file, token):
    with open(token_file + ".new", "w") as f:
        f.write(token)
    os.rename(token_file + ".new", token_file)


def hold(path, token_file, shared=False):
    v = opener = Varlink(path)
    ctx = v.call("io.tsmd.Guest.OpenContext")
    if not v.fds:
        sys.exit("OpenContext: no iommufd came with the reply")
    if shared:
        # The VM's one iommufd on a second connection, as a way around the first one's queue.
        write_token(token_file + ".open", ctx["reclaimToken"])
        v = Varlink(path)
        ctx = v.call("io.tsmd.Guest.AdoptContext", fds=[opener.fds[0]], fileDescriptor=0)
    v.call("io.tsmd.Guest.AttachDevice", context=ctx["context"], vdeviceId=1, pciAddress=DEVICE)
    v.call("io.tsmd.Guest.Bind", context=ctx["context"], vdeviceId=1)
    write_token(token_file, ctx["reclaimToken"])
    # The restart ends the connection; the context stays, for us to reclaim.
    v.sock.settimeout(30)
    try:
        data = v.sock.recv(1)
    except ConnectionResetError:
        data = b""
    if data:
        sys.exit("tsmd sent something unasked for")


def reclaim(path, token, vdevice=True):
    # The restarted tsmd is ready when its sockets are (they stay listening), but a call may
    # wait for it to start.
    v = Varlink(path)
    ctx = v.call("io.tsmd.Guest.ReclaimContext", reclaimToken=token)
    if not v.fds:
        sys.exit("ReclaimContext: no iommufd came with the reply")
    # The token is renewed: the one reclaimed with is void now.
    if len(ctx.get("reclaimToken") or "") != 32 or ctx["reclaimToken"] == token:
        sys.exit(f"ReclaimContext: no renewed reclaim token in {ctx}")
    if not vdevice:
        v.call("io.tsmd.Guest.CloseContext", context=ctx["context"])
        print(f"reclaimed context {ctx['context']}")
        return
    state = v.call("io.tsmd.Guest.GetDeviceState", context=ctx["context"], vdeviceId=1)
    if not state.get("bound"):
        sys.exit(f"vDevice 1 is not bound after the reclaim: {state}")
    v.call("io.tsmd.Guest.Unbind", context=ctx["context"], vdeviceId=1)
    v.call("io.tsmd.Guest.CloseContext", context=ctx["context"])
    print(f"reclaimed context {ctx['context']}, vDevice 1 was bound")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] in ("hold", "hold-shared"):
        hold(sys.argv[2], sys.argv[3], shared=sys.argv[1] == "hold-shared")
    elif len(sys.argv) == 4 and sys.argv[1] in ("reclaim", "reclaim-empty"):
        reclaim(sys.argv[2], sys.argv[3], vdevice=sys.argv[1] == "reclaim")
    else:
        sys.exit("usage: vmm-reclaim.py hold|hold-shared SOCKET TOKEN-FILE | reclaim|reclaim-empty SOCKET TOKEN")
