"""Shared fixtures."""

import pytest
from hypera_fakes import FakeKnobs


@pytest.fixture
def fake_knobs():
    return FakeKnobs()
