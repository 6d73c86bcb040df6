"""napari integration: reader, sample data and widgets.

Every napari, Qt and magicgui import of the package lives in this subpackage. Importing
it (or :mod:`.reader` / :mod:`.samples`) does not import torch or ants: heavy work is
imported inside the functions that need it.
"""

__all__: list[str] = []
