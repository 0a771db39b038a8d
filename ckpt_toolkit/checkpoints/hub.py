"""Checkpoints on the Hugging Face hub: one repo at several revisions (``step1000``,
``ckpt_010``) or one repo per checkpoint. Real huggingface_hub calls; offline they fail with a
message naming the repo and revision. Downloads use the local cache first."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import HubUnavailableError
from .ref import CheckpointRef

HUB_PREFIXES = ("hf://", "hub://", "hf:")
WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "tokenizer*"]
STEP_PATTERNS = (
    r"(?:^|[_\-/])step[_\-]?(\d+)",
    r"ckpt[_\-]?(\d+)",
    r"checkpoint[_\-](\d+)",
    r"global_step(\d+)",
    r"iter[_\-]?(\d+)",
)


def is_hub_spec(source: str) -> bool:
    return isinstance(source, str) and source.startswith(HUB_PREFIXES)


def step_from_name(name: str) -> int | None:
    """The training step encoded in a revision or folder name, if any."""
    for pat in STEP_PATTERNS:
        m = re.search(pat, name)
        if m:
            return int(m.group(1))
    return None


def parse_hub_spec(source: str) -> tuple[str, list[str | None]]:
    """``hf://org/repo@rev1,rev2`` → (``org/repo``, [rev1, rev2]); no ``@`` → [None]."""
    body = source
    for p in HUB_PREFIXES:
        if body.startswith(p):
            body = body[len(p) :]
            break
    repo, _, revs = body.partition("@")
    if not re.fullmatch(r"[\w.\-]+(/[\w.\-]+)?", repo):
        raise HubUnavailableError(f"not a hub repo id: {repo!r} (expected org/name)")
    return repo, ([r for r in revs.split(",") if r] if revs else [None])


def _offline_error(repo: str, revision: str | None, exc: Exception) -> HubUnavailableError:
    rev = revision or "main"
    return HubUnavailableError(
        f"cannot reach hub checkpoint {repo} at revision {rev}: {type(exc).__name__}: {exc}. "
        "The network is unavailable (or HF_HUB_OFFLINE=1) and it is not in the local cache; "
        "download it where there is a network, or point at a local folder."
    )


def list_revisions(repo: str) -> list[str]:
    """Branches and tags of a hub repo that encode a step (network)."""
    from huggingface_hub import list_repo_refs

    try:
        refs = list_repo_refs(repo)
    except Exception as exc:  # noqa: BLE001 - offline, missing repo, auth: all reported the same way
        raise _offline_error(repo, None, exc) from None
    names = [r.name for r in refs.branches] + [t.name for t in refs.tags]
    return sorted((n for n in names if step_from_name(n) is not None), key=step_from_name)


def resolve_hub(source: str, run: str | None = None) -> list[CheckpointRef]:
    """Refs for a hub spec. Revisions named in the spec need no network to resolve."""
    repo, revisions = parse_hub_spec(source)
    if revisions == [None] and run is None and "@" not in source and source.endswith("*"):
        revisions = list_revisions(repo.rstrip("*"))
    refs = []
    for rev in revisions:
        step = step_from_name(rev) if rev else None
        refs.append(
            CheckpointRef(
                path=repo,
                run=run or repo.split("/")[-1],
                step=step,
                revision=rev,
                kind="hub",
                name=""
                if step is not None or rev is None
                else f"{run or repo.split('/')[-1]}@{rev}",
            )
        )
    return refs


def hub_commit_sha(repo: str, revision: str | None) -> str:
    """Commit SHA of a hub revision: from the local cache if present, else from the hub."""
    local = download(repo, revision, local_only=True)
    if local is not None:
        return local.name  # snapshots/<sha>
    from huggingface_hub import HfApi

    try:
        return HfApi().model_info(repo, revision=revision).sha or ""
    except Exception as exc:  # noqa: BLE001
        raise _offline_error(repo, revision, exc) from None


def download(repo: str, revision: str | None, local_only: bool = False) -> Path | None:
    """Snapshot folder of a hub checkpoint (weights, config, tokenizer only)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                repo, revision=revision, allow_patterns=WEIGHT_PATTERNS, local_files_only=local_only
            )
        )
    except Exception as exc:  # noqa: BLE001
        if local_only:
            return None
        raise _offline_error(repo, revision, exc) from None
