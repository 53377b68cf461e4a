"""The leaf of the package: user-facing errors and atomic file writing. Imports nothing else from mrisr.

* :mod:`mrisr.core.errors` — :class:`~mrisr.core.errors.MrisrInputError` (file, problem, fix);
* :mod:`mrisr.core.atomic` — temporary file + fsync + rename writers for every output.
"""
