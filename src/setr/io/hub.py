"""The Hugging Face Hub side of pretrained folders, in the low layer every model class may use:

* :func:`resolve_file`: a file of a local folder, or of a Hub repo through ``huggingface_hub``'s cache
  (``HF_HUB_CACHE`` / ``cache_dir``; ``HF_HUB_OFFLINE=1`` or ``local_files_only=True`` never touch the network);
* :func:`upload_folder`: a folder to a Hub repo (created if missing);
* :class:`HubMixin`: ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` on a model class, as
  ``huggingface_hub.ModelHubMixin`` gives them. What a folder holds depends on the kind of model, which a higher
  layer knows (``setr.hub`` registers each kind with :func:`register_kind` when ``setr`` is imported), so no
  model module imports upward.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..errors import SetrError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
HUB_KWARGS = ("revision", "cache_dir", "force_download", "token", "local_files_only")

# kind -> (save(obj, folder, **kwargs) -> Path, load(cls, name_or_path, **kwargs) -> obj)
_KINDS: dict[str, tuple[Callable[..., Path], Callable[..., Any]]] = {}


def register_kind(kind: str, save: Callable[..., Path], load: Callable[..., Any]) -> None:
    """How a ``HubMixin`` class of ``kind`` is written to and read from a pretrained folder."""
    _KINDS[kind] = (save, load)


def _kind(kind: str):
    if kind not in _KINDS:  # setr/__init__ imports setr.hub, which registers every kind
        raise SetrError(f"no pretrained-folder format registered for {kind!r} models (import setr first)")
    return _KINDS[kind]


class HubMixin:
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for a model class; ``_hub_kind`` names the
    registered folder format."""

    _hub_kind: str = ""

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> Path:
        """Write the pretrained folder (``config.json``, ``model.safetensors``, ``README.md``);
        ``push_to_hub=True, repo_id="org/name"`` uploads it too."""
        return _kind(self._hub_kind)[0](self, save_directory, **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any):
        """From a pretrained folder or a Hugging Face Hub repo id (``revision``, ``cache_dir``, ``token``,
        ``local_files_only``, ``force_download`` go to the download)."""
        return _kind(cls._hub_kind)[1](cls, name_or_path, **kwargs)

    def push_to_hub(self, repo_id: str, *, token: str | None = None, private: bool | None = None,
                    commit_message: str | None = None, revision: str | None = None, **save_kwargs: Any) -> str:
        """Save to a temporary folder and upload it to ``repo_id`` (created if missing); returns the commit URL."""
        with tempfile.TemporaryDirectory(prefix="setr-push-") as tmp:
            self.save_pretrained(tmp, repo_id=repo_id, **save_kwargs)
            return upload_folder(tmp, repo_id, token=token, private=private, commit_message=commit_message,
                                 revision=revision)


def check_hub_kwargs(kwargs: dict) -> None:
    unknown = set(kwargs) - set(HUB_KWARGS)
    if unknown:
        raise TypeError(f"unexpected arguments {sorted(unknown)}")


def resolve_file(name_or_path: str | os.PathLike, filename: str, *, revision: str | None = None,
                 cache_dir: str | os.PathLike | None = None, force_download: bool = False,
                 token: str | bool | None = None, local_files_only: bool = False) -> Path:
    """``filename`` of a local pretrained folder, or of a Hub repo (through huggingface_hub's cache)."""
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        path = local / filename
        if not path.is_file():
            raise SetrError(f"{local}: no {filename} in this folder (not a pretrained folder?)")
        return path
    if local.exists():
        raise SetrError(f"{local}: expected a pretrained folder (with {CONFIG_NAME} and {WEIGHTS_NAME}) or a "
                        "Hugging Face Hub repo id, got a file")
    from huggingface_hub import hf_hub_download

    from .._version import __version__

    try:
        return Path(hf_hub_download(repo_id=str(name_or_path), filename=filename, revision=revision,
                                    cache_dir=None if cache_dir is None else str(cache_dir),
                                    force_download=force_download, token=token, local_files_only=local_files_only,
                                    library_name="setr", library_version=__version__))
    except Exception as exc:  # noqa: BLE001 - hub errors: offline, missing repo/file/revision, invalid id
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise SetrError(f"{name_or_path}: not a local folder, and {filename} could not be had from the Hugging Face "
                        f"Hub or its cache ({type(exc).__name__}: {first})") from None


def upload_folder(folder: str | os.PathLike, repo_id: str, *, token: str | None = None,
                  private: bool | None = None, commit_message: str | None = None,
                  revision: str | None = None) -> str:
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    # private=None is "the account's default"; huggingface_hub < 0.27 would send it as null, so leave it out
    api.create_repo(repo_id, exist_ok=True, **({} if private is None else {"private": private}))
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                             commit_message=commit_message or "Upload setr pretrained model")
    return str(getattr(info, "commit_url", info))


def save_safetensors(tensors: dict, path: Path, meta: dict[str, str]) -> None:
    """Write ``tensors`` atomically; tensors that share memory are stored as independent copies."""
    from safetensors.torch import save_file

    from .atomic import atomic_write

    try:
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    except RuntimeError as exc:
        if "share memory" not in str(exc):
            raise
        tensors = {k: v.clone() for k, v in tensors.items()}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
