"""The ``inversion-audit`` command line."""
