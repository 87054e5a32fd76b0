"""The tests' own port picker (tests/conftest.py): a Ray head started by a test asks for
seven ports at once, and each must differ."""

from __future__ import annotations

import socket

from tests import conftest


def test_free_port_never_hands_out_a_port_twice_even_when_the_kernel_repeats_one(monkeypatch):
    offered = iter([41000, 41000, 41000, 41001, 41000, 41002])

    class Socket:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def bind(self, address):
            self.port = next(offered)

        def getsockname(self):
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(conftest, "_GIVEN", set())
    monkeypatch.setattr(socket, "socket", Socket)
    assert [conftest.free_port() for _ in range(3)] == [41000, 41001, 41002]
