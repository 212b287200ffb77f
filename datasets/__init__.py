"""CoOp-format dataset readers; importing this package registers them."""
from . import caltech101, generated, oxford_pets  # noqa: F401
