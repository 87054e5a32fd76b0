"""The environment a local Ray is started with: its processes find its own State API."""

from __future__ import annotations

import os
import socket

from raymlops._internal import ray_runtime
from raymlops._internal.ray_runtime import API_SERVER_VARIABLE, pinned_state_api


def test_the_variable_names_the_new_dashboard_only_while_ray_starts(monkeypatch):
    monkeypatch.delenv(API_SERVER_VARIABLE, raising=False)
    with pinned_state_api(4321) as port:
        assert port == 4321
        assert os.environ[API_SERVER_VARIABLE] == "http://127.0.0.1:4321"
    assert API_SERVER_VARIABLE not in os.environ  # the driver names its cluster itself


def test_a_value_of_the_users_is_put_back_and_never_given_to_the_new_ray(monkeypatch):
    monkeypatch.setenv(API_SERVER_VARIABLE, "http://elsewhere:8265")
    with pinned_state_api(4321):
        assert os.environ[API_SERVER_VARIABLE] == "http://127.0.0.1:4321"
    assert os.environ[API_SERVER_VARIABLE] == "http://elsewhere:8265"


def test_the_dashboard_keeps_rays_default_port_when_it_is_free():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = int(probe.getsockname()[1])
    assert ray_runtime._dashboard_port(first=free, tries=1) == free
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free))
        other = ray_runtime._dashboard_port(first=free, tries=1)
        assert other not in (free, 0)
