"""`posefleet up`'s V2 gRPC port: the one asked for, else 8081, else a free one."""

import contextlib
import socket

import pytest

from services.cli.local import DEFAULT_GRPC_PORT, choose_grpc_port


def test_an_explicit_port_must_be_free_and_zero_means_none():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        with pytest.raises(RuntimeError, match="--grpc-port N or GRPC_PORT=N"):
            choose_grpc_port("127.0.0.1", busy)
    assert choose_grpc_port("127.0.0.1", 0) == 0


def test_the_default_moves_to_a_free_port_when_8081_is_taken():
    with socket.socket() as held:
        with contextlib.suppress(OSError):  # someone else holding it is the same situation
            held.bind(("127.0.0.1", DEFAULT_GRPC_PORT))
        port = choose_grpc_port("127.0.0.1", None)
    assert port != DEFAULT_GRPC_PORT
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # and it is free
