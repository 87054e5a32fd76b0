"""The tests' own port picker (tests/conftest.py): a Ray head started by a test asks for
seven ports at once, and each must differ from the others, from the other pytest
worker's and from the ports Ray picks at random."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests import conftest


class _Sockets:
    """A stand-in for socket.socket: ``taken`` ports refuse a bind; port 0 binds to the
    next of ``kernel``."""

    def __init__(self, taken=(), kernel=()):
        self.taken, self.kernel = set(taken), iter(kernel)

    def socket(self):
        sockets = self

        class Socket:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def bind(self, address):
                port = address[1]
                if port in sockets.taken:
                    raise OSError(98, "Address already in use")
                self.port = port or next(sockets.kernel)

            def getsockname(self):
                return ("0.0.0.0", self.port)

        return Socket()


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(conftest, "_GIVEN", set())

    def use(sockets, worker):
        monkeypatch.setattr(conftest, "socket", SimpleNamespace(socket=sockets.socket))
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    return use


def test_each_worker_picks_from_its_own_block_below_the_ephemeral_range(fresh):
    fresh(_Sockets(taken={23001}), "gw0")
    assert [conftest.free_port() for _ in range(3)] == [23000, 23002, 23003]
    fresh(_Sockets(), "gw1")
    assert conftest.free_port() == 26000



def test_the_blocks_do_not_overlap_and_stay_below_the_ephemeral_range(monkeypatch):
    blocks = []
    for worker in ("", "gw0", "gw1", "gw2"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        blocks.append(conftest._block())
    # above Ray's default worker ports (10002-19999), below the kernel's ephemeral ports
    assert all(b is not None and b.start >= 20000 and b.stop <= 32768 for b in blocks)
    assert len(set().union(*map(set, blocks))) == sum(len(b) for b in blocks)


def test_past_the_blocks_the_kernel_port_is_never_handed_out_twice(fresh):
    fresh(_Sockets(kernel=[41000, 41000, 41000, 41001, 41000, 41002]), "gw9")
    assert conftest._block() is None
    assert [conftest.free_port() for _ in range(3)] == [41000, 41001, 41002]
