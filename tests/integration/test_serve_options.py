"""How `recoverlink serve` listens: each gunicorn worker on its own SO_REUSEPORT socket for a TCP
address, so the kernel spreads connections over the workers, and a taken address is refused first."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from recoverlink import server
from recoverlink.server import ListenAddressUnavailable, ensure_address_free, gunicorn_options
from tests.conftest import make_settings
from tests.support.processes import LOOPBACK, free_port


def test_on_a_tcp_port_every_worker_listens_itself_so_the_kernel_spreads_connections(
    tmp_path: Path,
) -> None:
    settings = dataclasses.replace(make_settings(tmp_path), listen=f"{LOOPBACK}:9471")
    options = gunicorn_options(settings, workers=2, threads=4)
    assert options["reuse_port"] is True
    assert (options["bind"], options["workers"], options["threads"]) == (f"{LOOPBACK}:9471", 2, 4)
    assert options["worker_class"] == "gthread"


@pytest.mark.parametrize(
    ("listen", "environ", "spreads"),
    [
        ("127.0.0.1:9471", {}, True),
        ("[::1]:9471", {}, True),
        ("unix:/run/recoverlink.sock", {}, False),
        ("127.0.0.1:0", {}, False),  # every worker would get a port of its own
        ("127.0.0.1:9471", {"LISTEN_FDS": "1"}, False),  # systemd passed the socket in
        ("127.0.0.1:port", {}, False),  # gunicorn reports it
    ],
)
def test_only_a_fixed_tcp_port_gunicorn_binds_itself_is_shared_by_the_workers(
    listen: str, environ: dict[str, str], spreads: bool
) -> None:
    assert server.spreads_connections(listen, environ) is spreads


@pytest.fixture(params=[False, True], ids=["plain", "reuse-port"])
def taken_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A port something listens on: a plain server, or another recoverlink (SO_REUSEPORT)."""
    with socket.socket() as other:
        if request.param:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind((LOOPBACK, 0))
        other.listen()
        yield other.getsockname()[1]


def test_an_address_another_server_listens_on_is_refused_before_anything_starts(
    tmp_path: Path, taken_port: int
) -> None:
    settings = dataclasses.replace(make_settings(tmp_path), listen=f"{LOOPBACK}:{taken_port}")
    with pytest.raises(ListenAddressUnavailable, match=f"cannot listen on {LOOPBACK}:{taken_port}: "):
        server.serve(settings, workers=2, threads=2, on_hup=lambda: None)


def test_a_free_address_or_a_unix_socket_passes_the_check() -> None:
    ensure_address_free(f"{LOOPBACK}:{free_port()}")
    ensure_address_free("unix:/run/recoverlink.sock")
