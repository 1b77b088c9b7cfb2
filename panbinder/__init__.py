"""panbinder: reproducible notebooks for photon and neutron research facilities."""

from ._version import __version__

__all__ = ["__version__"]
