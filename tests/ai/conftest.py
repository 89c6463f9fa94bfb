"""Fixtures for the provider tests: the fake services, fresh for each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.fish import FakeFish
from tests.fakes.llm import FakeLLM

LLM_KEY = "sk-test-4f1d9c2b7a6e5d3c2b1a0f9e8d7c6b5a"


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    with FakeLLM(authorization=f"Bearer {LLM_KEY}") as fake:
        yield fake


@pytest.fixture
def fake_janitor() -> Iterator[FakeLLM]:
    # JanitorAI takes the key as it is given, without "Bearer ".
    with FakeLLM(authorization=LLM_KEY) as fake:
        yield fake


@pytest.fixture
def fake_fish() -> Iterator[FakeFish]:
    with FakeFish() as fake:
        yield fake
