"""The ingest flow's parameter encoding: JSON scalars as Prefect's encoder would record them,
anything else through Prefect's encoder."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from prefect import Flow

from flows.ingest import ingest
from flows.scalar_params import ScalarParamsFlow



@pytest.mark.parametrize("params", [
    {"feed_path": "/feeds/news", "workspace": "ws", "config_path": None, "lock_wait_s": 2.5, "n": 3, "flag": True},
    {"path": Path("/tmp/x"), "when": datetime.date(2026, 11, 27), "nested": {"a": [1, "b", None]}},
    {},
])
def test_parameters_are_recorded_as_prefects_encoder_records_them(params):
    assert isinstance(ingest, ScalarParamsFlow)
    assert ingest.serialize_parameters(params) == Flow.serialize_parameters(ingest, params)
