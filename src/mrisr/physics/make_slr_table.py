"""Generate the shipped SLR slice-profile table ``physics/data/slr_tb16.npy`` (docs/physics.md §2.1).

Usage::

    python -m mrisr.physics.make_slr_table [--tb 16] [--n-samples 4097] [--out PATH]

The table is a float64 array of shape (2, n_samples): row 0 holds the positions x ∈ [−2·tb, 2·tb]
(pulse position units), row 1 the normalised |M_xy| profile of the SLR 90° excitation pulse
simulated with sigpy (see :func:`mrisr.physics.profiles.compute_slr_profile`). Needs sigpy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mrisr.physics.profiles import SLR_TABLE_SAMPLES, compute_slr_profile

DEFAULT_OUT: Path = Path(__file__).parent / "data" / "slr_tb16.npy"


def make_slr_table(tb: float = 16.0, n_samples: int = SLR_TABLE_SAMPLES, out: Path = DEFAULT_OUT) -> Path:
    """Simulate the SLR profile and save it as a (2, n_samples) float64 ``.npy`` table.

    Args:
        tb: time-bandwidth product.
        n_samples: number of positions over x ∈ [−2·tb, 2·tb].
        out: output path.

    Returns:
        The path written.
    """
    x, profile = compute_slr_profile(tb, n_samples)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, np.stack([x, profile]).astype(np.float64))
    return out


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tb", type=float, default=16.0, help="time-bandwidth product (default 16)")
    parser.add_argument("--n-samples", type=int, default=SLR_TABLE_SAMPLES, help="number of table samples")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .npy path")
    args = parser.parse_args(argv)
    path = make_slr_table(args.tb, args.n_samples, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
