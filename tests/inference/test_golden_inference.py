"""Every inference path reproduces its frozen golden output (tests/golden/cases.py) to 1e-6 of the output range."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.golden.cases import CASES, DATA, build, run


@pytest.mark.parametrize("case", list(CASES))
def test_inference_path_reproduces_its_golden_output(case: str) -> None:
    stored = torch.load(DATA / f"{case}.pt", weights_only=True)
    sr = run(build(case, stored["weights"]))
    expected = stored["sr"].numpy()
    np.testing.assert_array_equal(sr.affine, stored["affine"].numpy())
    assert sr.shape == expected.shape
    scale = float(np.abs(expected).max())
    assert float(np.abs(sr.data - expected).max()) <= 1e-6 * scale, case
