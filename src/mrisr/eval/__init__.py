"""Evaluation metrics: image similarity on the HR grid (docs/evaluation.md §1).

Public API: :func:`normalize_intensity`, :func:`psnr`, :func:`ssim`, :func:`image_metrics`.
"""

from __future__ import annotations

from mrisr.eval.image import image_metrics, normalize_intensity, psnr, ssim

__all__ = ["image_metrics", "normalize_intensity", "psnr", "ssim"]
