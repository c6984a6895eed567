"""Procedural synthetic retinal cases; ``render_case(seed, size)`` is the in-memory API."""
from retreg.training.synth.case import render_case

__all__ = ["render_case"]
