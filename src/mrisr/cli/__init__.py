"""Small command-line tools: ``python -m mrisr.cli.<tool> key=value ...`` (Hydra overrides on conf/<tool>.yaml)."""
