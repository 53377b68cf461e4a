"""Training losses: pixel + perceptual content loss, vanilla GAN loss, feature extractors for the perceptual loss."""

from __future__ import annotations

from mrisr.losses.adversarial import VanillaGANLoss
from mrisr.losses.content import ContentLoss
from mrisr.losses.mri_features import MRIFeatures, train_mri_features
from mrisr.losses.perceptual import PerceptualLoss, VGG19Features

__all__ = ["ContentLoss", "MRIFeatures", "PerceptualLoss", "VGG19Features", "VanillaGANLoss", "train_mri_features"]
