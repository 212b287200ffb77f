"""Dynamic Outlier Regularization (Wang, Li and Wei, ICML 2025), written once for every learner.

``vocabulary`` reads outlier labels (WordNet nouns or a label file), ``pool`` scores them
against the base classes and keeps the near-OOD pool (with an on-disk feature cache),
``sampler`` draws a new subset each epoch, and ``regularizer.DORMixin`` adds the loss to any
prompt learner. The ``TRAINER.DOR`` defaults and their sources are tabled in the README
("Using DOR") and commented in ``trainers/config.py``.
"""
