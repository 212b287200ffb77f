"""Prompt learners for CLIP and their DOR variants; importing this package registers them."""
from . import coop, zsclip  # noqa: F401
