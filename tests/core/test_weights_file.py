"""The one home of network configs on disk: a config read back from JSON equals the one saved,
and unknown keys are named."""
import json

import pytest

from retreg.core.fusion_net import FusionNetConfig
from retreg.core.matchers.fast.model import FastConfig
from retreg.core.matchers.loftr.model import LoftrConfig
from retreg.core.matchers.superretina.model import SuperRetinaConfig


@pytest.mark.parametrize("cls", [LoftrConfig, FastConfig, SuperRetinaConfig, FusionNetConfig])
def test_a_config_read_back_from_json_equals_the_one_saved(cls):
    saved = cls()
    assert cls.from_dict(json.loads(json.dumps(saved.to_dict()))) == saved


@pytest.mark.parametrize("cls, what", [(LoftrConfig, "LoFTR"), (FastConfig, "fast matcher"),
                                       (SuperRetinaConfig, "superretina"),
                                       (FusionNetConfig, "fusion net")])
def test_unknown_config_keys_are_named(cls, what):
    with pytest.raises(ValueError, match=rf"unknown {what} config keys: \['colour'\]"):
        cls.from_dict({**cls().to_dict(), "colour": 3})
