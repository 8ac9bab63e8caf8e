"""NVIDIA_REQUIRE_CUDA as the NVIDIA Container Toolkit reads it (space = OR, comma = AND), on
real values from nvidia/cuda images (tests/unit/data/nvidia_require_cuda.json, with sources)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher._require import (
    Condition,
    HostFacts,
    RequirementError,
    check_requirements,
    image_requirements,
    parse_requirement,
)

# NVIDIA_REQUIRE_CUDA by CUDA version (also read by test_gpu_preflight and test_up_gpu_checks)
REAL = {i["cuda"]: i["NVIDIA_REQUIRE_CUDA"] for i in json.loads(
    (Path(__file__).parent / "data/nvidia_require_cuda.json").read_text())["images"]}


def test_real_strings_parse_into_cuda_or_brand_driver_branches() -> None:
    terms = parse_requirement(REAL["12.8"])
    assert terms[0] == (Condition("cuda", ">=", "12.8"),)
    assert terms[1] == (Condition("brand", "=", "unknown"), Condition("driver", ">=", "470"),
                        Condition("driver", "<", "471"))
    assert len(terms) == 1 + 5 * 12  # five driver branches, twelve brands each
    assert {t[0].value for t in terms[1:]} >= {"tesla", "nvidia", "grid"}
    assert "geforce" not in {t[0].value for t in terms[1:]}  # no forward compat for GeForce


# (id, CUDA of the image, driver, driver CUDA, brand, satisfied)
CHECKS = [
    ("12.8-on-570", "12.8", "570.124.06", "12.8", "geforcertx", True),
    ("12.8-on-580-newer-cuda", "12.8", "580.65.06", "13.0", "geforce", True),
    ("12.8-on-550-geforce", "12.8", "550.54.15", "12.4", "geforce", False),
    ("12.8-on-550-tesla-forward-compat", "12.8", "550.54.15", "12.4", "tesla", True),
    ("12.8-on-550-brand-unknown-to-nvml", "12.8", "550.54.15", "12.4", None, False),
    ("12.8-on-555-tesla-no-branch", "12.8", "555.42.06", "12.5", "tesla", False),
    ("12.6-on-535-nvidia-brand", "12.6", "535.104.05", "12.2", "nvidia", True),
    ("12.6-on-535-geforce", "12.6", "535.104.05", "12.2", "geforce", False),
    ("13.0-on-580", "13.0", "580.65.06", "13.0", "geforce", True),
    ("13.0-on-575-geforce", "13.0", "575.57.08", "12.9", "geforce", False),
    ("13.0-on-575-tesla-forward-compat", "13.0", "575.57.08", "12.9", "tesla", True),
    ("13.0-on-470-tesla-not-listed", "13.0", "470.256.02", "11.4", "tesla", False),
    ("13.0-driver-unknown", "13.0", None, None, "tesla", False),
]


@pytest.mark.parametrize("cuda, driver, driver_cuda, brand, ok", [c[1:] for c in CHECKS],
                         ids=[c[0] for c in CHECKS])
def test_check_real_requirements(cuda: str, driver: str | None, driver_cuda: str | None,
                                 brand: str | None, ok: bool) -> None:
    why = check_requirements({"NVIDIA_REQUIRE_CUDA": REAL[cuda]},
                             HostFacts(driver, driver_cuda, "9.0", brand))
    assert (why is None) is ok, why


def test_refusal_names_the_variable_the_driver_and_the_cuda_term() -> None:
    why = check_requirements({"NVIDIA_REQUIRE_CUDA": REAL["13.0"]},
                             HostFacts("575.57.08", "12.9", "12.0", "geforcertx"))
    assert why == ("NVIDIA_REQUIRE_CUDA: driver 575.57.08 (CUDA 12.9), brand geforcertx "
                   "satisfies neither cuda>=13.0 nor any of its 60 other alternatives")
    assert check_requirements({"NVIDIA_REQUIRE_CUDA": "cuda>=12.8"},
                              HostFacts("550.54.15", "12.4")) == (
        "NVIDIA_REQUIRE_CUDA: driver 550.54.15 (CUDA 12.4) does not satisfy cuda>=12.8")


@pytest.mark.parametrize("requirements, host, ok", [
    ({"NVIDIA_REQUIRE_CUDA": "cuda>=12.0", "NVIDIA_REQUIRE_ARCH": "arch>=8.0"},
     HostFacts("580.65.06", "13.0", "7.0"), False),
    ({"NVIDIA_REQUIRE_CUDA": "cuda>=12.0", "NVIDIA_REQUIRE_ARCH": "arch>=8.0"},
     HostFacts("580.65.06", "13.0", "9.0"), True),
    ({"NVIDIA_REQUIRE_CUDA": "cuda>=12.0,foo>=1 bar=2"}, HostFacts("580.65.06", "13.0"), True),
    ({"NVIDIA_REQUIRE_CUDA": ""}, HostFacts(None, None), True),
    ({"NVIDIA_REQUIRE_CUDA": "driver!=550.54.15"}, HostFacts("550.54.15", "12.4"), False),
    ({"NVIDIA_REQUIRE_CUDA": "cuda==12.4"}, HostFacts("550.54.15", "12.4"), True),
], ids=["every-variable-must-hold", "arch-holds", "unknown-properties-skipped", "empty",
        "not-equal", "equal"])
def test_check_rules(requirements: dict[str, str], host: HostFacts, ok: bool) -> None:
    assert (check_requirements(requirements, host) is None) is ok


@pytest.mark.parametrize("text, message", [
    ("cuda12.8", "NVIDIA_REQUIRE_CUDA: invalid constraint 'cuda12.8': no operator"),
    ("cuda>=twelve", ("NVIDIA_REQUIRE_CUDA: invalid value 'twelve' in 'cuda>=twelve': expected "
                      "a version")),
], ids=["no-operator", "not-a-version"])
def test_malformed_requirements_are_errors(text: str, message: str) -> None:
    with pytest.raises(RequirementError) as info:
        parse_requirement(text)
    assert str(info.value) == message


@pytest.mark.parametrize("env, expected", [
    (["PATH=/usr/bin", "NVIDIA_REQUIRE_CUDA=cuda>=12.8 brand=tesla,driver>=535,driver<536"],
     {"NVIDIA_REQUIRE_CUDA": "cuda>=12.8 brand=tesla,driver>=535,driver<536"}),
    (["NVIDIA_REQUIRE_CUDA=cuda>=12.8", "NVIDIA_DISABLE_REQUIRE=1"], None),
    (["PATH=/usr/bin"], {}),
], ids=["from-env", "disabled", "none"])
def test_image_requirements(env: list[str], expected: dict[str, str] | None) -> None:
    assert image_requirements(env) == expected
