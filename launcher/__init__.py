"""Image -> running Jupyter server, through JupyterHub's REST API."""

from .base import LaunchRequest, LaunchResult, Launcher

__all__ = ["LaunchRequest", "LaunchResult", "Launcher"]
