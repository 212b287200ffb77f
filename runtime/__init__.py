"""A small runtime that honours the Dassl trainer/dataset contract.

Dassl.pytorch is not on PyPI and its last release no longer runs on current PyTorch, so the
project carries this runtime. Trainers and datasets never import it directly: they import
``toolbox``, which resolves to this package or to the real Dassl.
"""
