"""RetReg's fast structural matcher (XFeat-sized detector/descriptor on vessel maps, trained on
synthetic pairs with structural distillation; ``retreg train-fast``)."""
from .matcher import FastMatcher
from .model import FastConfig, FastNet

__all__ = ["FastConfig", "FastMatcher", "FastNet"]
