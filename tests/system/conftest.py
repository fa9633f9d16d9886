import httpx
import pytest

from tests.system.stack import local_stack


@pytest.fixture(scope="session")
def stack(model_root):
    """One `posefleet up` for every whole-system test."""
    with local_stack(model_root) as running:
        yield running


@pytest.fixture
def api(stack):
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        yield client
