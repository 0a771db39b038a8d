"""The one loader: a causal LM and its tokenizer from a :class:`CheckpointRef` or a path.

Safe by default: weights come from safetensors; pickled weights (``.bin``/``.pt``) are refused
unless ``allow_pickle=True``, and then read with ``torch.load(weights_only=True)``;
``trust_remote_code`` is off unless asked for. Files are checked before loading, so a missing
config, a truncated safetensors file or a tokenizer that does not fit the model each get their
own error naming the file.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import CheckpointError, TokenizerMismatchError, UnsafeWeightsError
from .files import has_tokenizer, pickle_files, read_safetensors_header, safetensors_files
from .ref import CheckpointRef
from .resolve import resolve_source

DTYPES = ("float32", "float16", "bfloat16", "auto")


class LoadedCheckpoint(NamedTuple):
    """``model, tokenizer = load_checkpoint(...)``."""

    model: Any
    tokenizer: Any


def local_folder(ref: CheckpointRef) -> Path:
    """The local folder holding a checkpoint's files (downloading hub refs when possible)."""
    if ref.is_hub:
        from .hub import download

        return download(ref.path, ref.revision)  # type: ignore[return-value]
    return Path(ref.path)


def _as_ref(ref_or_path: CheckpointRef | str | Path) -> CheckpointRef:
    if isinstance(ref_or_path, CheckpointRef):
        return ref_or_path
    refs = resolve_source(ref_or_path)
    if len(refs) != 1:
        raise CheckpointError(
            f"{ref_or_path} holds {len(refs)} checkpoints; pass one of them "
            f"(e.g. {refs[0].path}) or a CheckpointRef"
        )
    return refs[0]


def _torch_dtype(dtype: str):
    import torch

    if dtype not in DTYPES:
        raise CheckpointError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return "auto" if dtype == "auto" else getattr(torch, dtype)


def _load_pickled_model(folder: Path, files: list[Path], dtype, trust_remote_code: bool):
    """Build the model from its config and load pickled weights with weights_only=True."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(
        str(folder), trust_remote_code=trust_remote_code, local_files_only=True
    )
    model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    state: dict = {}
    for f in files:
        if f.name.endswith(".json"):
            continue
        try:
            state.update(torch.load(str(f), map_location="cpu", weights_only=True))
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"cannot read pickled weights {f}: {exc}") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("lm_head.weight")]
    if missing:
        raise CheckpointError(
            f"weights in {folder} lack {len(missing)} tensors, e.g. {missing[:3]}"
        )
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    if dtype != "auto":
        model = model.to(dtype)
    return model


def load_checkpoint(
    ref_or_path: CheckpointRef | str | Path,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> LoadedCheckpoint:
    """Load a causal LM and its tokenizer, in eval mode on ``device``.

    Raises :class:`CheckpointError` (missing config, no/corrupt weights, missing tokenizer),
    :class:`UnsafeWeightsError` (pickled weights without ``allow_pickle``) or
    :class:`TokenizerMismatchError` (tokenizer ids beyond the embedding).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per sweep is ours; not one per tensor file
    ref = _as_ref(ref_or_path)
    folder = local_folder(ref)
    torch_dtype = _torch_dtype(dtype)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {folder} ({ref.name})")
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"missing config.json in {folder} ({ref.name})")
    if not trust_remote_code:
        try:
            cfg = json.loads((folder / "config.json").read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(
                f"config.json in {folder} is not valid JSON ({exc.msg})"
            ) from None
        if cfg.get("auto_map"):
            raise CheckpointError(
                f"{folder} needs custom code (config.json has auto_map: "
                f"{sorted(cfg['auto_map'])}); trust_remote_code is off unless you pass "
                "trust_remote_code=True (--trust-remote-code)"
            )
    safe = safetensors_files(folder)
    for f in safe:
        read_safetensors_header(f)  # raises on truncation/corruption, naming the file
    if not has_tokenizer(folder):
        raise CheckpointError(f"no tokenizer files in {folder} ({ref.name})")
    try:
        if safe:
            model = AutoModelForCausalLM.from_pretrained(
                str(folder),
                dtype=torch_dtype,
                use_safetensors=True,
                trust_remote_code=trust_remote_code,
                local_files_only=True,
            )
        else:
            pickled = pickle_files(folder)
            if not pickled:
                raise CheckpointError(f"no weight files (*.safetensors) in {folder} ({ref.name})")
            if not allow_pickle:
                raise UnsafeWeightsError(
                    f"{folder} holds only pickled weights ({', '.join(p.name for p in pickled)}). "
                    "Unpickling can run arbitrary code, so it is refused by default: convert the "
                    "checkpoint to safetensors, or opt in with allow_pickle=True (--allow-pickle), "
                    "which loads with torch.load(weights_only=True)."
                )
            model = _load_pickled_model(folder, pickled, torch_dtype, trust_remote_code)
    except CheckpointError:
        raise
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise CheckpointError(
                f"{folder} needs custom code (trust_remote_code); it is off unless you pass "
                "trust_remote_code=True (--trust-remote-code)"
            ) from None
        raise CheckpointError(f"cannot load model from {folder}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - safetensors/transformers errors become one type
        raise CheckpointError(
            f"cannot load model from {folder}: {type(exc).__name__}: {exc}"
        ) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(folder), trust_remote_code=trust_remote_code, local_files_only=True
        )
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"cannot load tokenizer from {folder}: {exc}") from None
    n_embed = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > n_embed:
        raise TokenizerMismatchError(
            f"tokenizer in {folder} has {len(tokenizer)} tokens but the model's embedding has "
            f"{n_embed} rows: they do not belong together"
        )
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    model.eval()
    return LoadedCheckpoint(model, tokenizer)


def unload(model: Any) -> None:
    """Free a model's memory (CPU and, where used, GPU)."""
    del model
    gc.collect()
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


@contextlib.contextmanager
def opened_checkpoint(
    ref_or_path: CheckpointRef | str | Path, **kwargs: Any
) -> Iterator[LoadedCheckpoint]:
    """``with opened_checkpoint(ref) as (model, tok): ...`` — memory is freed on exit."""
    loaded = load_checkpoint(ref_or_path, **kwargs)
    try:
        yield loaded
    finally:
        model = loaded.model
        del loaded
        unload(model)
