"""Widgets that observe a ``Session``: pair view, overlay view, residual table."""
