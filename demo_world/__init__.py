"""A small synthetic vision–language world for CPU demos of prompt tuning and DOR.

``world``: the lexicon, the attributes of an object, captions and image drawing.
``pretrain``: contrastive pretraining of a tiny open_clip model on the world, cached on disk.
``build``: downstream datasets drawn from the world in CoOp's on-disk format.
"""
