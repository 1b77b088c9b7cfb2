"""Image names, registry existence checks (and later retention and archives)."""

from .naming import ImageRef, image_ref
from .registry import Registry

__all__ = ["ImageRef", "Registry", "image_ref"]
