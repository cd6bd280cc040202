"""The simulated world the experiment and shadow tests draw their logs from."""

import pytest

from app.sim import load_world


@pytest.fixture(scope="module")
def world():
    return load_world("steady")
