"""The paper's per-backbone, per-part method hyperparameters (Tables 1, 6 and 7).

``METHOD_DEFAULTS[backbone][method][part]`` is the argument dict a spec term starts from, or
None where the method has nothing to act on in that part (UNETR's CNN decoder has no token
sequence for VPT and no LayerNorm). LoRA's alpha defaults to its rank
(scaling 1). VPT token tuples have one count per prompt stage of the part; gvpt (gated
VPT) takes VPT's.
"""
from __future__ import annotations

from typing import Dict, Optional

METHOD_DEFAULTS: Dict[str, Dict[str, Dict[str, Optional[dict]]]] = {
    "unetr": {
        "layernorm": {"encoder": {}, "decoder": None},
        "bitfit": {"encoder": {}, "decoder": {}},
        "lora": {"encoder": {"r": 4}, "decoder": {"r": 4}},
        "adapter": {"encoder": {"rf": 16}, "decoder": {"rf": 4}},
        "ssf": {"encoder": {}, "decoder": {}},
        "vpt": {"encoder": {"tokens": (50,)}, "decoder": None},
        "gvpt": {"encoder": {"tokens": (50,)}, "decoder": None},
    },
    "cvtgan": {
        "layernorm": {"encoder": {}, "decoder": {}},
        "bitfit": {"encoder": {}, "decoder": {}},
        "lora": {"encoder": {"r": 8}, "decoder": {"r": 8}},
        "adapter": {"encoder": {"rf": 8}, "decoder": {"rf": 8}},
        "ssf": {"encoder": {}, "decoder": {}},
        "vpt": {"encoder": {"tokens": (0, 8, 32)}, "decoder": {"tokens": (32, 8)}},
        "gvpt": {"encoder": {"tokens": (0, 8, 32)}, "decoder": {"tokens": (32, 8)}},
    },
}
