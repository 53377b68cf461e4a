"""Spinal Cord Toolbox command line as an optional external backend (docs/evaluation.md §4 backend 4).

SCT is never imported (it pins its own Python, numpy and torch): its executables are called with
:mod:`subprocess` in a temporary directory, with a timeout. The backend is usable only when the commands are on
``PATH`` (``shutil.which``); otherwise every call raises a :class:`~mrisr.core.errors.MrisrInputError` saying so.

Commands: ``sct_deepseg_sc -i img -c t2 -o seg`` (legacy DeepSeg of Gros et al. 2019, used by Dewey et al. with
SCT v6.0) or ``sct_deepseg spinalcord -i img -o seg`` (current), ``sct_detect_pmj -i img -c t2 -s seg -o pmj``,
``sct_process_segmentation -i seg -pmj pmj -pmj-distance D -pmj-extent E -o out.csv``.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np

from mrisr.core.errors import MrisrInputError
from mrisr.eval.cord import PMJ_LABEL, landmark_point
from mrisr.io.nifti import Volume, load_volume, save_volume

__all__ = ["SctSegmenter", "process_segmentation_pmj", "require_sct_command", "sct_version"]

_LOG = logging.getLogger(__name__)

_INSTALL_FIX = (
    "install the Spinal Cord Toolbox (https://spinalcordtoolbox.com) and put its bin/ directory on PATH, "
    "or choose segmenter=classical or segmenter=provided"
)


def require_sct_command(command: str) -> str:
    """Absolute path of an SCT executable.

    Raises:
        MrisrInputError: The command is not on ``PATH``.
    """
    found = shutil.which(command)
    if found is None:
        raise MrisrInputError(None, f"Spinal Cord Toolbox command '{command}' is not on PATH", _INSTALL_FIX)
    return found


def sct_version(timeout_s: float = 60.0) -> str:
    """Version string reported by ``sct_version``, or ``"unknown"`` when it cannot be run."""
    exe = shutil.which("sct_version")
    if exe is None:
        return "unknown"
    try:
        proc = subprocess.run([exe], capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    return lines[-1] if proc.returncode == 0 and lines else "unknown"


def _run(args: list[str], timeout_s: float, cwd: Path) -> None:
    _LOG.info("running %s", " ".join(args))
    try:
        proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as err:
        raise MrisrInputError(
            None, f"'{Path(args[0]).name}' did not finish within {timeout_s:g} s", "raise segmenter.timeout_s"
        ) from err
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise MrisrInputError(
            None,
            f"'{Path(args[0]).name}' failed with exit status {proc.returncode}: {' | '.join(tail)}",
            f"run it by hand to see the full log: {' '.join(args)}",
        )


def _volume_key(volume: Volume) -> str:
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(volume.data).tobytes())
    digest.update(np.ascontiguousarray(volume.affine).tobytes())
    digest.update(str(volume.data.dtype).encode())
    return digest.hexdigest()[:24]


class SctSegmenter:
    """Cord segmentation (and PMJ detection) by the Spinal Cord Toolbox command line.

    Args:
        method: ``deepseg_sc`` (legacy DeepSeg, ``sct_deepseg_sc``) or ``deepseg`` (``sct_deepseg spinalcord``).
        contrast: Contrast flag of ``sct_deepseg_sc``/``sct_detect_pmj`` (``t1``, ``t2``, ``t2s``, ``dwi``).
        timeout_s: Time limit of one command (s).
        cache_dir: Directory caching masks keyed on image content, method, contrast and SCT version; ``None``
            disables the cache.
    """

    name = "sct"

    def __init__(
        self,
        method: Literal["deepseg_sc", "deepseg"] = "deepseg_sc",
        contrast: str = "t2",
        timeout_s: float = 3600.0,
        cache_dir: str | None = None,
    ) -> None:
        if method not in ("deepseg_sc", "deepseg"):
            raise ValueError(f"method must be 'deepseg_sc' or 'deepseg', got {method!r}")
        self.method = method
        self.contrast = contrast
        self.timeout_s = float(timeout_s)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._version: str | None = None

    @property
    def command(self) -> str:
        """Name of the segmentation executable."""
        return "sct_deepseg_sc" if self.method == "deepseg_sc" else "sct_deepseg"

    @property
    def version(self) -> str:
        """SCT version (queried once)."""
        if self._version is None:
            self._version = sct_version()
        return self._version

    def _args(self, exe: str, image: Path, output: Path) -> list[str]:
        if self.method == "deepseg_sc":
            return [exe, "-i", str(image), "-c", self.contrast, "-o", str(output)]
        return [exe, "spinalcord", "-i", str(image), "-o", str(output)]

    def segment(self, volume: Volume) -> Volume:
        """Segment the cord of ``volume`` with SCT; returns a float32 0/1 mask on the volume's grid.

        Raises:
            MrisrInputError: SCT missing, the command failed or timed out, or wrote no mask.
        """
        exe = require_sct_command(self.command)
        cached = None
        if self.cache_dir is not None:
            key = f"{_volume_key(volume)}_{self.method}_{self.contrast}_{self.version}".replace("/", "_")
            cached = self.cache_dir / f"{key}.nii.gz"
            if cached.is_file():
                _LOG.info("SCT segmentation from cache %s", cached)
                return self._as_mask(load_volume(cached, allow_constant=True), volume)
        with tempfile.TemporaryDirectory(prefix="mrisr_sct_") as tmp:
            tmp_dir = Path(tmp)
            image = save_volume(volume, tmp_dir / "image.nii.gz", dtype=np.float32)
            output = tmp_dir / "image_seg.nii.gz"
            _run(self._args(exe, image, output), self.timeout_s, tmp_dir)
            if not output.is_file():
                raise MrisrInputError(output, f"'{self.command}' wrote no segmentation", "check the SCT log")
            mask = load_volume(output, allow_constant=True)
            if cached is not None:
                save_volume(mask, cached, dtype=np.uint8)
        return self._as_mask(mask, volume)

    @staticmethod
    def _as_mask(mask: Volume, volume: Volume) -> Volume:
        if mask.shape != volume.shape:
            raise MrisrInputError(
                None, f"SCT returned a mask of shape {mask.shape} for an image of shape {volume.shape}", "check SCT"
            )
        data = (np.asarray(mask.data) > 0.5).astype(np.float32)
        return Volume(data=data, affine=volume.affine, header=None, path=None)

    def detect_pmj(self, volume: Volume, mask: Volume) -> np.ndarray | None:
        """PMJ position (world mm, shape ``(3,)``) by ``sct_detect_pmj``, or ``None`` when it finds none.

        Raises:
            MrisrInputError: ``sct_detect_pmj`` missing or failed.
        """
        exe = require_sct_command("sct_detect_pmj")
        with tempfile.TemporaryDirectory(prefix="mrisr_sct_") as tmp:
            tmp_dir = Path(tmp)
            image = save_volume(volume, tmp_dir / "image.nii.gz", dtype=np.float32)
            seg = save_volume(mask, tmp_dir / "seg.nii.gz", dtype=np.uint8)
            output = tmp_dir / "pmj.nii.gz"
            args = [exe, "-i", str(image), "-c", self.contrast, "-s", str(seg), "-o", str(output)]
            _run(args, self.timeout_s, tmp_dir)
            if not output.is_file():
                return None
            labels = load_volume(output, allow_constant=True)
        try:
            return landmark_point(labels.data, labels.affine, PMJ_LABEL)
        except ValueError:
            return None


def process_segmentation_pmj(
    seg_path: Path,
    pmj_path: Path,
    distance_mm: float,
    extent_mm: float,
    timeout_s: float = 600.0,
) -> dict[str, float]:
    """PMJ-referenced MUCCA computed by ``sct_process_segmentation`` itself (parity checks).

    Args:
        seg_path: Cord mask file.
        pmj_path: PMJ label file (value 50).
        distance_mm: ``-pmj-distance`` D (mm).
        extent_mm: ``-pmj-extent`` E (mm).
        timeout_s: Time limit (s).

    Returns:
        ``{"mucca_mm2": MEAN(area), "sd_mm2": STD(area)}`` parsed from SCT's CSV (``NaN`` when absent).

    Raises:
        MrisrInputError: SCT missing or failed.
    """
    exe = require_sct_command("sct_process_segmentation")
    with tempfile.TemporaryDirectory(prefix="mrisr_sct_") as tmp:
        tmp_dir = Path(tmp)
        out = tmp_dir / "csa.csv"
        args = [exe, "-i", str(seg_path), "-pmj", str(pmj_path)]
        args += ["-pmj-distance", f"{distance_mm:g}", "-pmj-extent", f"{extent_mm:g}", "-o", str(out)]
        _run(args, timeout_s, tmp_dir)
        with out.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    if not rows:
        raise MrisrInputError(out, "sct_process_segmentation wrote no rows", "check the SCT log")

    def number(key: str) -> float:
        try:
            return float(rows[-1].get(key) or "nan")
        except ValueError:
            return float("nan")

    return {"mucca_mm2": number("MEAN(area)"), "sd_mm2": number("STD(area)")}
