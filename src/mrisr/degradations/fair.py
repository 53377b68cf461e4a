"""Fair evaluation inputs: test-time degradations seeded per subject, recorded, optionally cached on disk.

Every model in a comparison must see bit-identical LR inputs (docs/style.md "fair benchmarks"). The seed of a subject is
a stable hash of the base seed and the subject name (independent of the order or number of subjects and of the
process), the degradation is a pure function of (volume, seed), and the parameters of every applied step are
returned as a JSON-ready record to be written next to the results. :class:`DegradedInputCache` stores the LR
volumes and their records so later runs (other models, other machines) read the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mrisr.core.atomic import write_json_atomic
from mrisr.io.nifti import Volume, load_volume, save_volume

__all__ = ["DegradedInputCache", "TestDegradation", "degrade_for_test", "subject_seed", "volume_digest"]


class TestDegradation(Protocol):
    """What a test-time degradation provides (every ``conf/degradation`` preset and :class:`ThickSlice`)."""

    __test__ = False  # not a pytest test class

    setting: str

    def __call__(self, volume: Volume, seed: int | None = None) -> Volume: ...

    def describe(self, seed: int | None = None) -> dict[str, Any]: ...


def subject_seed(base_seed: int, subject: str) -> int:
    """Stable per-subject seed in [0, 2³¹): SHA-256 of ``"<base_seed>:<subject>"``.

    Args:
        base_seed: experiment seed.
        subject: subject identifier (e.g. ``errsm_11/t2``).

    Returns:
        The seed; identical across processes, machines and subject orderings.
    """
    digest = hashlib.sha256(f"{int(base_seed)}:{subject}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def volume_digest(volume: Volume) -> str:
    """SHA-256 of the float32 C-order voxel data of ``volume`` (to check that inputs are bit-identical)."""
    return hashlib.sha256(np.ascontiguousarray(volume.data, dtype=np.float32).tobytes()).hexdigest()


def degrade_for_test(
    degradation: TestDegradation, volume: Volume, subject: str, base_seed: int = 0
) -> tuple[Volume, dict[str, Any]]:
    """Degrade one test volume with its subject seed and return the record of what was applied.

    Args:
        degradation: a preset (:class:`~mrisr.degradations.stack.DegradationStack`) or :class:`ThickSlice`.
        volume: HR test volume.
        subject: subject identifier.
        base_seed: experiment seed.

    Returns:
        ``(lr, record)``: the LR volume and a JSON-ready dict with the subject, seeds, the degradation's own record
        (every step's parameters), the LR shape, affine and data digest.
    """
    seed = subject_seed(base_seed, subject)
    lr = degradation(volume, seed=seed)
    details = getattr(degradation, "last_record", None) or degradation.describe(seed)
    record = {
        "subject": subject,
        "base_seed": int(base_seed),
        "seed": seed,
        "setting": degradation.setting,
        "degradation": details,
        "lr_shape": list(lr.shape),
        "lr_zooms": [float(z) for z in lr.zooms],
        "lr_affine": np.asarray(lr.affine).tolist(),
        "lr_sha256": volume_digest(lr),
    }
    return lr, record


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "subject"


class DegradedInputCache:
    """On-disk cache of test-time LR volumes: ``<root>/<setting>/<subject>_seed<seed>.nii.gz`` plus ``.json`` record.

    A cached entry is reused only if its record names the same setting, seed and step parameters as the
    degradation would apply now; otherwise it is regenerated. Files are written atomically.

    Args:
        root: cache directory.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def paths(self, setting: str, subject: str, seed: int) -> tuple[Path, Path]:
        """``(nifti, json)`` paths of an entry."""
        stem = f"{_safe(subject)}_seed{seed}"
        folder = self.root / _safe(setting)
        return folder / f"{stem}.nii.gz", folder / f"{stem}.json"

    def get(
        self, degradation: TestDegradation, volume: Volume, subject: str, base_seed: int = 0
    ) -> tuple[Volume, dict[str, Any]]:
        """The LR input of ``subject`` for ``degradation``: read from the cache or computed and stored.

        Returns:
            ``(lr, record)`` as :func:`degrade_for_test`; ``record["cached"]`` tells whether it was read from disk.
        """
        seed = subject_seed(base_seed, subject)
        image_path, record_path = self.paths(degradation.setting, subject, seed)
        expected = _expected_steps(degradation, volume, seed)
        if image_path.is_file() and record_path.is_file():
            record = json.loads(record_path.read_text())
            if record.get("seed") == seed and _steps_of(record) == expected:
                lr = load_volume(image_path)
                if volume_digest(lr) == record.get("lr_sha256"):
                    return lr, {**record, "cached": True}
        lr, record = degrade_for_test(degradation, volume, subject, base_seed)
        save_volume(lr, image_path, header=volume.header)
        stored = load_volume(image_path)
        record["lr_sha256"] = volume_digest(stored)
        record["lr_affine"] = np.asarray(stored.affine).tolist()
        write_json_atomic(record, record_path)
        return stored, {**record, "cached": False}


def _steps_of(record: dict[str, Any]) -> Any:
    details = record.get("degradation") or {}
    return json.loads(json.dumps(details.get("steps", details)))


def _expected_steps(degradation: TestDegradation, volume: Volume, seed: int) -> Any:
    try:
        details = degradation.describe(seed, volume=volume)  # type: ignore[call-arg]
    except TypeError:
        details = degradation.describe(seed)
    return json.loads(json.dumps(details.get("steps", details)))
