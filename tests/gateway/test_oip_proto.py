"""The committed V2 gRPC stubs are what the pinned grpcio-tools makes of the .proto."""

from tools.proto import stale


def test_grpc_stubs_are_generated_from_the_proto():
    assert stale() == [], "run `make proto`"
