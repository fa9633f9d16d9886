import httpx
import pytest


@pytest.fixture
def api(stack):
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        yield client
