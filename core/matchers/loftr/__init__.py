"""RetReg's learned cross-modal matcher (LoFTR-style, trained on synthetic pairs)."""
from .matcher import LoftrMatcher
from .model import LoftrConfig, RetRegLoFTR

__all__ = ["LoftrConfig", "LoftrMatcher", "RetRegLoFTR"]
