"""napari-inversion-audit: model inversion audits of 3D segmentation networks.

The core (everything but :mod:`inversion_audit.gui`) never imports napari or Qt.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
