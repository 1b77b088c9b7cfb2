"""Repository providers (plug-ins of the entry point group ``panbinder.providers``): ``git``
(providers/git.py) and ``doi`` (providers/doi.py), on the seam in providers/base.py."""

from .base import RepoProvider, get_provider_class

__all__ = ["RepoProvider", "get_provider_class"]
