"""napari integration: reader, sample data and widgets.

Every napari, Qt and magicgui import of the package lives in this subpackage. Importing
it (or :mod:`.reader` / :mod:`.samples`) does not import torch or ants: heavy work is
imported inside the functions that need it.
"""

import sys

# The CUDA builds of torch ship triton, whose native library segfaults on import once Qt's
# OpenGL has loaded Mesa's LLVM (torch imports it lazily, e.g. through monai -> torchvision).
# Nothing here uses torch.compile, so in the napari process triton is marked unavailable:
# torch then reports "no triton" instead of killing the viewer.
if "triton" not in sys.modules:
    sys.modules["triton"] = None  # type: ignore[assignment]

__all__: list[str] = []
