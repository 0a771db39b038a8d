"""The fine-tuning spec: fixed, documented hyperparameters in YAML, hashed into the store."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import ParameterError
from ..specs import spec_hash
from ..yamlfiles import read_yaml_mapping

DEFAULT_SPEC_FILE = "default_spec.yaml"

#: key -> accepted Python type(s)
_TYPES: dict[str, tuple[type, ...]] = {
    "version": (int,),
    "lr": (float, int),
    "weight_decay": (float, int),
    "betas": (list, tuple),
    "warmup_frac": (float, int),
    "max_steps": (int,),
    "batch_size": (int,),
    "grad_clip": (float, int, type(None)),
    "max_length": (int,),
    "append_eos": (bool,),
    "max_train_items": (int, type(None)),
    "max_test_items": (int, type(None)),
    "eval_batch_size": (int,),
    "max_new_tokens": (int,),
    "seed": (int,),
    "seeds": (int,),
    "dtype": (str,),
}


def default_spec() -> dict[str, Any]:
    """The shipped spec (``ckpt_toolkit/finetune/default_spec.yaml``) as a dict."""
    text = resources.files("ckpt_toolkit.finetune").joinpath(DEFAULT_SPEC_FILE).read_text()
    return yaml.safe_load(text)


def load_spec(spec: str | Path | dict[str, Any] | None = None) -> dict[str, Any]:
    """The effective spec: the default, updated by a YAML file or a dict of overrides.

    Unknown keys and wrong types raise :class:`ParameterError` naming the key (and the file).
    """
    out = default_spec()
    where = "spec"
    if spec is None:
        return out
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        where = str(path)
        over = read_yaml_mapping(path, "fine-tuning spec")
    else:
        over = dict(spec)
    for key, val in over.items():
        if key not in _TYPES:
            raise ParameterError(
                f"{where}: unknown fine-tuning key {key!r}; known: {sorted(_TYPES)}"
            )
        if isinstance(val, bool) and bool not in _TYPES[key] or not isinstance(val, _TYPES[key]):
            raise ParameterError(f"{where}: {key!r} has the wrong type ({type(val).__name__})")
        out[key] = val
    for key in ("max_steps", "batch_size", "max_length", "eval_batch_size", "seeds"):
        if out[key] < 1:
            raise ParameterError(f"{where}: {key!r} must be >= 1, not {out[key]}")
    if not 0 <= out["warmup_frac"] < 1:
        raise ParameterError(f"{where}: 'warmup_frac' must be in [0, 1)")
    out["betas"] = [float(b) for b in out["betas"]]
    return out


def sft_spec_hash(spec: dict[str, Any]) -> str:
    """Hash of the effective spec (what ``provenance.sft_spec_hash`` holds)."""
    return spec_hash({"sft_spec": spec})
