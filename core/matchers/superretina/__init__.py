"""RetReg's SuperRetina-style cross-modal keypoint matcher (full-resolution detector +
descriptor, trained in phases with progressive keypoint expansion; ``retreg train-superretina``)."""
from .matcher import SuperRetinaMatcher
from .model import SuperRetinaConfig, SuperRetinaNet

__all__ = ["SuperRetinaConfig", "SuperRetinaMatcher", "SuperRetinaNet"]
