"""Handing a model's KV cache from one decoding step to the next, across transformers 5.x.

transformers 5.0 names the cache ``past_key_values`` (argument and output field); later 5.x releases name it
``cache`` and keep the old name only as a deprecated alias (warned about, and to be removed). The output of the
previous step says which name this transformers uses, so the next step is called with the same one.
"""

from __future__ import annotations

from typing import Any


def next_step_cache(out: Any) -> dict[str, Any]:
    """Keyword arguments that pass ``out``'s KV cache (a model output from a ``use_cache=True`` call) to the next."""
    fields = getattr(out, "__dataclass_fields__", {})
    if "cache" in fields:
        return {"cache": out["cache"]}
    return {"past_key_values": out["past_key_values"]}
