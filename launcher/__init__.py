"""Image -> running Jupyter server, through JupyterHub's REST API."""

from .base import Launcher, LaunchRequest, LaunchResult

__all__ = ["LaunchRequest", "LaunchResult", "Launcher"]
