"""Shared fixtures: the bundled Adult schema and small, fast samples of it."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

from fedsynth.common.model.marginal_fit import MarginalFitConfig
from fedsynth.common.model.tabular import ModelConfig
from fedsynth.common.data.schema import Schema
from fedsynth.common.synthesizer import Synthesizer, TrainingConfig
from fedsynth.common.data.tables import load_table
from fedsynth.simulations.datasets import bundled_paths

# Under pytest-xdist (scripts/test.sh runs two workers) each worker gets one of the two cores.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)
warnings.filterwarnings("ignore", message="Full backward hook is firing")


@pytest.fixture(scope="session")
def adult_paths() -> tuple[Path, Path]:
    return bundled_paths("adult")


@pytest.fixture(scope="session")
def adult_schema(adult_paths) -> Schema:
    return Schema.load(adult_paths[1])


@pytest.fixture(scope="session")
def adult(adult_paths, adult_schema) -> pd.DataFrame:
    return load_table(adult_paths[0], adult_schema)


@pytest.fixture()
def adult_small(adult) -> pd.DataFrame:
    return adult.sample(3000, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, adult, adult_schema) -> Path:
    """A small trained model folder (a few seconds to fit), for tests of what reads or writes beside it.

    DP-SGD only (no marginal fit, tested in test_marginal_fit.py): calibration's tests compare
    calibrated samples with this model's own, and the fine-tune would make those a moving target."""
    synth = Synthesizer(adult_schema, epsilon=1.0, delta=1e-5, training=TrainingConfig(epochs=0.5),
                        model_config=ModelConfig(hidden=16),
                        marginal_fit=MarginalFitConfig(pairs=0)).fit(adult.sample(800, random_state=4))
    return synth.save(tmp_path_factory.mktemp("tiny") / "model")
