"""Read official BSMamba2 and msst `bs_mamba2` checkpoints; write msst `bsmamba2` ones.

Understood inputs (all loaded with `torch.load(weights_only=True)`):
- the official Lightning `.ckpt` (EuiYeonKim/BSMamba2): `state_dict` with keys
  `model.<name>` plus featurizer buffers (dropped); its EMA weights, when the EMA
  optimizer wrapper was used, are a tuple `optimizer_states[0]["ema"]` in the order of
  the model's parameters, which is the order of the `model.*` entries of `state_dict`;
- msst checkpoints (`model_state_dict`, `state_dict` or `state`) and bare state dicts,
  e.g. msst's `bs_mamba2_vocals.ckpt`.

Every command of this package that loads weights finds them with `unwrap_state_dict`, in
the key order msst's own loader uses, so that a file means the same to all of them.

Output: `{"model_state_dict": ..., "meta": {...}}` as msst writes it, with
`meta.model_type = "bsmamba2"` and `meta.weights` saying raw or EMA (carried over from
a source that records it), so `msst-valid`/`msst-inference --model_type bsmamba2`
load it (msst checks that type). The weights are checked by loading them strictly into
a `BSMamba2` built from the given model config before anything is written.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import (UserFileExistsError, UserFileNotFoundError, UserRuntimeError,
                      UserValueError)
from ..network.config import BSMamba2Config
from .registry import MODEL_TYPE

__all__ = ["STATE_DICT_KEYS", "convert_checkpoint", "extract_state_dict",
           "load_checkpoint_file", "unwrap_state_dict"]

_MSST_FORMAT_VERSION = 1
_MSST_VERSION = "0.1.0"


def load_checkpoint_file(path: str | os.PathLike, *, trust: bool = False) -> Any:
    """torch.load on CPU with weights_only=True unless `trust` is given.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds Python objects that weights-only loading refuses
            (the message names them and the `--trust-pickle` way out).
    """
    path = Path(path)
    if not path.is_file():
        raise UserFileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as error:
        raise UserValueError(
            f"{path}: weights-only loading refused this file ({str(error).splitlines()[0]}). "
            f"It holds pickled Python objects besides tensors (Lightning stores its "
            f"hyper-parameters that way). Fix: if you trust where the file comes from, "
            f"pass --trust-pickle (torch.load with weights_only=False).") from error


#: Where checkpoint files keep the model's weights, in the order msst 0.1.0's
#: `load_start_checkpoint` looks for them: `state` (htdemucs), then `state_dict` (apollo),
#: then `model_state_dict` (what msst-train and convert-checkpoint write), descending into
#: each one present. `unwrap_state_dict` follows it, so that our commands, the fit check and
#: msst-valid / msst-inference load the same tensors from the same file.
STATE_DICT_KEYS = ("state", "state_dict", "model_state_dict")


def unwrap_state_dict(checkpoint: Any) -> tuple[Any, str]:
    """The weights in a loaded checkpoint, found as msst's loader finds them.

    Descends into each key of `STATE_DICT_KEYS` that the mapping at hand holds, in that
    order (msst's). Nothing is checked: the caller decides what to do with a result that is
    no state dict (the official Lightning layout, with `model.` prefixes, is
    `extract_state_dict`'s to recognise).

    Returns:
        (what is under those keys: `checkpoint` itself for a bare state dict, the keys
        descended into joined by "/", "" when none).
    """
    state, path = checkpoint, []
    for key in STATE_DICT_KEYS:
        if isinstance(state, Mapping) and key in state:
            state = state[key]
            path.append(key)
    return state, "/".join(path)


def _looks_like_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())


def extract_state_dict(checkpoint: Any, *, weights: str = "raw", source: str = "checkpoint"
                       ) -> tuple[dict[str, torch.Tensor], str]:
    """The model weights in a loaded checkpoint and what kind of file it was.

    Args:
        checkpoint: what `load_checkpoint_file` returned.
        weights: "raw" (the trained weights) or "ema" (the EMA copy; official Lightning
            checkpoints only, or an msst checkpoint written with `ema_state_dict`).
        source: file name for messages.

    Returns:
        (state dict with official / msst key names, a short description of the format).

    Raises:
        ValueError: unknown layout, or the requested EMA weights are not in the file.
    """
    if weights not in ("raw", "ema"):
        raise ValueError(f"weights: expected 'raw' or 'ema', got {weights!r}.")
    if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint and any(
            str(k).startswith("model.") for k in checkpoint["state_dict"]):
        full = checkpoint["state_dict"]
        names = [k for k in full if k.startswith("model.")]
        raw = {k[len("model."):]: full[k] for k in names}
        if weights == "raw":
            return raw, "official Lightning checkpoint (raw weights)"
        states = checkpoint.get("optimizer_states") or []
        ema = states[0].get("ema") if states and isinstance(states[0], Mapping) else None
        if ema is None:
            raise UserValueError(f"{source}: --weights ema was asked for, but this Lightning "
                                 f"checkpoint has no optimizer_states[0]['ema'] (trained without "
                                 f"the EMA callback?). Fix: use --weights raw.")
        if len(ema) != len(names):
            raise UserValueError(f"{source}: the EMA holds {len(ema)} tensors but the model has "
                                 f"{len(names)} parameters; cannot pair them by order.")
        out = {}
        for name, tensor in zip(names, ema):
            if tuple(tensor.shape) != tuple(full[name].shape):
                raise UserValueError(f"{source}: EMA tensor for {name} has shape "
                                     f"{tuple(tensor.shape)}, the weight has "
                                     f"{tuple(full[name].shape)}.")
            out[name[len("model."):]] = tensor
        return out, "official Lightning checkpoint (EMA weights)"
    if isinstance(checkpoint, Mapping):
        if weights == "ema":
            if _looks_like_state_dict(checkpoint.get("ema_state_dict")):
                return dict(checkpoint["ema_state_dict"]), "msst checkpoint (EMA weights)"
            raise UserValueError(f"{source}: --weights ema was asked for, but the file has no EMA "
                                 f"weights. Fix: use --weights raw.")
        state, keys = unwrap_state_dict(checkpoint)
        if _looks_like_state_dict(state):
            return dict(state), f"msst checkpoint ({keys})" if keys else "bare state dict"
    raise UserValueError(f"{source}: not a BSMamba2 checkpoint this tool knows (expected a "
                         f"Lightning 'state_dict' with 'model.' keys, an msst checkpoint with "
                         f"'model_state_dict', or a bare state dict).")


def _stored_weights(checkpoint: Any, weights: str | None, source: str) -> tuple[str, str]:
    """(which weights to extract, the label the output's meta.weights gets).

    A file with `meta.weights` (written by msst training with this plugin, or by this
    converter) says what its `model_state_dict` holds; that wins. An explicit `weights`
    that contradicts it is an error, except "ema" for a file that also has an
    `ema_state_dict`. Other files: `weights`, default "raw".
    """
    meta = checkpoint.get("meta") if isinstance(checkpoint, Mapping) else None
    recorded = meta.get("weights") if isinstance(meta, Mapping) else None
    if recorded not in ("raw", "ema"):
        chosen = weights or "raw"
        return chosen, chosen
    if weights is None or weights == recorded:
        return "raw", recorded  # "raw": take model_state_dict as stored
    if weights == "ema" and _looks_like_state_dict(checkpoint.get("ema_state_dict")):
        return "ema", "ema"
    model_type = meta.get("model_type") or MODEL_TYPE
    where = (f"last_{model_type}.ckpt of the same run" if weights == "raw" else
             f"best_{model_type}.ckpt or last_{model_type}_ema.ckpt of the same run")
    raise UserValueError(
        f"{source}: its meta.weights says it holds {recorded} weights, but --weights "
        f"{weights} was asked for. Fix: drop --weights (the file's meta.weights is carried "
        f"over), or convert {where} for {weights} weights.")


def convert_checkpoint(source: str | os.PathLike, target: str | os.PathLike, *,
                       model: Mapping[str, Any] | None = None, weights: str | None = None,
                       instruments: list[str] | None = None,
                       target_instrument: str | None = None, trust: bool = False,
                       overwrite: bool = False) -> dict[str, Any]:
    """Convert `source` into an msst `bsmamba2` checkpoint at `target`.

    Args:
        source, target: file paths; `target` is never overwritten unless `overwrite`.
        model: the msst `model:` section the weights belong to (None: the paper's model,
            with `num_stems` and `depth` taken from the weights).
        weights: "raw" or "ema" (see `extract_state_dict`); None: the source's
            `meta.weights` when it has one, else "raw". A value that contradicts the
            source's `meta.weights` is an error; the output's `meta.weights` is the truth.
        instruments, target_instrument: recorded in the metadata as msst does.
        trust: load with weights_only=False (only for files you trust).
        overwrite: replace an existing `target`.

    Returns:
        the metadata written.

    Raises:
        FileExistsError, FileNotFoundError, ValueError, KeyError, RuntimeError (the weights
            do not fit the model config; the message lists the differences).
    """
    from ..network.model import BSMamba2

    target = Path(target)
    if target.exists() and not overwrite:
        raise UserFileExistsError(f"{target} exists; pass --overwrite to replace it.")
    checkpoint = load_checkpoint_file(source, trust=trust)
    extract, weights = _stored_weights(checkpoint, weights, str(source))
    state, kind = extract_state_dict(checkpoint, weights=extract, source=str(source))
    if model is None:
        depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("layers."))
        stems = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("mask_estimators."))
        config = BSMamba2Config.paper(depth=depth, num_stems=stems)
    else:
        config = BSMamba2Config.from_mapping(model)
    net = BSMamba2(config)
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    problems = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    for label, keys in (("missing", missing), ("unexpected", unexpected),
                        ("wrong shape", wrong)):
        if keys:
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            problems.append(f"{len(keys)} {label} ({shown})")
    if wrong:
        k = wrong[0]
        problems.append(f"e.g. {k} is {tuple(state[k].shape)} in the file, {expected[k]} in "
                        f"the model")
    if problems:
        raise UserRuntimeError(f"{source} ({kind}) does not fit the model config: "
                               f"{'; '.join(problems)}. Fix: pass --config with the model: section "
                               f"the checkpoint was trained with.")
    net.load_state_dict(state, strict=True)
    n_stems = config.num_stems
    meta: dict[str, Any] = {
        "format_version": _MSST_FORMAT_VERSION,
        "msst_version": _MSST_VERSION,
        "model_type": MODEL_TYPE,
        "target_stem_count": 1 if target_instrument else n_stems,
        "weights": weights,
        "converted_from": f"{Path(source).name} ({kind})",
    }
    if target_instrument:
        meta["target_instrument"] = target_instrument
    if instruments:
        meta["instruments"] = list(instruments)
    payload = {"model_state_dict": {k: v.detach().clone().contiguous()
                                    for k, v in net.state_dict().items()},
               "meta": meta, "bsmamba2_config": config.to_dict()}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    try:  # a full disk or a kill leaves no half-written OUT (and no .tmp behind)
        torch.save(payload, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return meta
