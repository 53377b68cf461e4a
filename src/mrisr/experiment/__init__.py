"""Helpers of the experiment scripts (``experiments/``), above the application layer: provenance records, scale
files and step-budget training through the one training path (:mod:`~mrisr.experiment.helpers`), held-out volumes
and learning curves (:mod:`~mrisr.experiment.held_out`, :mod:`~mrisr.experiment.learning_curve`), the PRETTIER
held-out experiment (:mod:`~mrisr.experiment.prettier`), QC pages of scored outputs (:mod:`~mrisr.experiment.qc`)."""
