"""Find the course's SwanLab runs and check the port for `audiocls dashboard`."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from ...errors import AudioclsError


def find_log_dir(search_root: str | Path = "outputs") -> Path:
    """Return the most recently written `swanlog` folder below `search_root`."""
    candidates = sorted(Path(search_root).glob("**/swanlog"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise AudioclsError(f"No SwanLab runs under {search_root}/: run `make demo` or a training "
                            "notebook first, or pass --log-dir")
    return candidates[-1]


def check_log_dir(log_dir: str | Path) -> Path:
    """Return `log_dir` if it is a folder; else raise saying which folder to pass instead."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        raise AudioclsError(f"SwanLab log folder {log_dir} does not exist: pass the swanlog folder "
                            "of your runs (e.g. outputs/demo/swanlog), or leave --log-dir out to "
                            "use the newest one under --search")
    return log_dir


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def check_port_free(host: str, port: int, server: str = "dashboard") -> None:
    """Stop unless nothing listens on `host:port`: swanlab watch would quietly take another."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed one's wait is no use
        try:
            probe.bind((host, port))
        except OSError as error:
            taken = error.errno == errno.EADDRINUSE
            why = f"is taken (another {server}?)" if taken else f"cannot be used ({error.strerror})"
            raise AudioclsError(f"--port {port} on {host} {why}: choose another, e.g. --port "
                                f"{free_port()} (free now)") from None
