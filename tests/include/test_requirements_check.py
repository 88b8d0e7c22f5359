"""pins_checked_cheaply: MLflow's requirement check gives the same answers, without its package scan."""

from __future__ import annotations

import logging

import numpy as np
from mlflow.utils import requirements_utils

from include.recommender.requirements_check import installed_version, pins_checked_cheaply
from include.recommender.training import pip_requirements


def test_exact_pins_of_this_interpreter_pass_without_mapping_every_package(monkeypatch):
    # As in a fresh process: MLflow has not mapped the installed distributions yet.
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    monkeypatch.setattr(requirements_utils, "_PACKAGES_TO_MODULES", None)
    with pins_checked_cheaply():
        answers = [requirements_utils._check_requirement_satisfied(pin) for pin in pip_requirements()]
    assert answers == [None] * len(pip_requirements())
    assert requirements_utils._MODULES_TO_PACKAGES is None


def test_a_mismatched_pin_still_gets_mlflows_warning(caplog):
    wrong = "numpy==0.0.1"
    with pins_checked_cheaply(), caplog.at_level(logging.WARNING, logger="mlflow"):
        mismatch = requirements_utils._check_requirement_satisfied(wrong)
        requirements_utils.warn_dependency_requirement_mismatches([wrong])
    assert mismatch is not None
    assert (mismatch.package_name, mismatch.installed_version) == ("numpy", np.__version__)
    assert "numpy (current: " in caplog.text and "required: numpy==0.0.1" in caplog.text


def test_other_requirements_go_to_mlflows_check():
    with pins_checked_cheaply():
        assert requirements_utils._check_requirement_satisfied("not-a-package-anywhere==1.0").installed_version is None
        assert requirements_utils._check_requirement_satisfied(f"numpy>={np.__version__}") is None
        assert requirements_utils._check_requirement_satisfied("numpy<1").package_name == "numpy"


def test_the_original_check_is_back_after_the_block_even_on_error():
    original = requirements_utils._check_requirement_satisfied
    try:
        with pins_checked_cheaply(), pins_checked_cheaply():
            assert requirements_utils._check_requirement_satisfied is not original
            raise RuntimeError("inside the block")
    except RuntimeError:
        pass
    assert requirements_utils._check_requirement_satisfied is original


def test_installed_version_drops_the_local_label_and_knows_missing_names():
    assert installed_version("numpy") == np.__version__.split("+")[0]
    assert installed_version("not-a-package-anywhere") is None
    assert installed_version("mlflow[gateway]") is None
