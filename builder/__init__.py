"""Repository -> container image, with repo2docker used as a library."""

from .base import Builder, BuildRequest
from .providers import RepoProvider, get_provider_class

__all__ = ["BuildRequest", "Builder", "RepoProvider", "get_provider_class"]
