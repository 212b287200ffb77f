"""Prompt learners for CLIP and their DOR variants; importing this package registers them."""
from . import coop, zsclip  # noqa: F401
from . import cocoop, kgcoop, tcp  # noqa: F401
from . import maple, promptsrc  # noqa: F401
from . import dor_variants  # noqa: F401
