"""Repository -> container image, with repo2docker used as a library."""

from .base import Builder, BuildRequest

__all__ = ["BuildRequest", "Builder"]
