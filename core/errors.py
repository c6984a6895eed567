"""Error types with messages meant for users (one line, says what and why)."""


class RetRegError(Exception):
    """Base class of every error RetReg reports to a user."""


class ImageReadError(RetRegError):
    """An image cannot be used: unreadable, empty, too small, too large or of an odd type."""


class AnnotationError(RetRegError):
    """An annotation file is malformed or inconsistent."""


class DatasetError(RetRegError):
    """A dataset folder is missing files or is laid out wrongly."""


class ModelLoadError(RetRegError):
    """Weights cannot be loaded (missing, wrong format, wrong architecture)."""


class ModeError(RetRegError, ValueError):
    """The registration mode is unknown or cannot be told from the inputs."""
