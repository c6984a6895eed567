"""RetReg: multimodal retinal image registration.

One import root for the product's parts: ``retreg.core`` (the engine, no Qt),
``retreg.training`` (data and training, no Qt), ``retreg.gui`` (the Qt app), ``retreg.cli`` (the
``retreg`` command) and ``retreg.resources`` (bundled weights and samples).
"""
from importlib import metadata

try:
    __version__ = metadata.version("retreg")
except metadata.PackageNotFoundError:  # imported from a tree that was never installed
    __version__ = "0+unknown"
