"""This process's own TCP connections, found in ``/proc/self/fd`` (Linux), for tests that watch sockets."""
from __future__ import annotations

import os
import socket
from typing import Dict


def connections_to(port: int) -> Dict[int, int]:
    """This process's TCP sockets connected to 127.0.0.1:``port``, as ``{fd: local port}``."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink("/proc/self/fd/%d" % fd).startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(fd))  # family and type as the kernel has them
        except OSError:
            continue
        try:
            if sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM and sock.getpeername()[1] == port:
                found[fd] = sock.getsockname()[1]
        except OSError:
            pass
        finally:
            sock.close()
    return found
