"""Checkpoint reading and writing inside msst's commands, made safe (issue 12).

msst 0.1.0 reads `--start_check_point` with `torch.load(..., weights_only=False)` in
`_training`, `_validation`, `_valid_ddp`, `_inference`, `_train_accelerate`, `preflight`
and `utils.model_utils`. That unpickles arbitrary Python: a file whose pickle calls
`os.system` runs it before msst looks at the content. It also writes its checkpoints with
a plain `torch.save(obj, path)`, so a process killed mid-save leaves a half-written file
in place of the last good one.

Each of those modules calls `torch.load` / `torch.save` through its own global `torch`.
The bridge replaces that global, in those modules only, by a `TorchView`: a module object
that forwards every attribute to the real torch except `load` and `save`. Nothing else in
the process (user code, other libraries, torch itself) is affected.

`TorchView.load`, when the guard is on:
- `.safetensors` files are read with `safetensors.torch.load_file` (optional dependency:
  without it the message says `pip install safetensors`); msst takes the flat state dict;
- everything else is read with `torch.load(weights_only=True)` plus the numpy scalar types
  msst's metric history holds (data only, no code). A file that needs more is refused with
  a `CheckpointError` that names the file, the object it wanted, and the safe routes; its
  code never runs. A truncated or non-checkpoint file gets one message that says so;
- a trusted legacy pickle loads as msst would only when the environment variable
  `BSMAMBA2_TRUST_PICKLE` holds that file's path (several paths: separated by
  `os.pathsep`). An environment variable and not a flag because msst's stock commands are
  argparse programs the plugin cannot add options to; it is a security opt-in at msst's
  command-line boundary, not model behaviour (docs/style.md), and it names one file, so it
  cannot silently widen to others.

`TorchView.save`, when the guard is on, writes `<path>.tmp-<pid>`, flushes it to disk and
`os.replace`s it over `path` (atomic on POSIX and Windows), and refuses to write a
`model_state_dict` holding NaN or Inf. It adds the resume block to the training run's
`last_<type>.ckpt` itself (`run_safety.with_resume_block`).

The guard is on for plugin model types (the last model the bridge built in this process
was a plugin type, as the process's `run_state.RunState` records it; msst builds the model
before it loads a checkpoint in every command) and, for msst's own types, only when
`BSMAMBA2_SAFE_CHECKPOINTS_ALL=1` (off by default so msst's own types keep msst's
behaviour).
"""

from __future__ import annotations

import glob
import logging
import os
import pickle
import re
import types
from collections.abc import Mapping
from typing import Any

from .run_safety import with_resume_block
from .run_state import RunState

__all__ = ["ALL_ENV", "TRUST_ENV", "TorchView", "atomic_save", "guard_on", "load_weights_only",
           "safe_torch_load", "torch_view_for"]

logger = logging.getLogger("bsmamba2_plugin")

TRUST_ENV = "BSMAMBA2_TRUST_PICKLE"
ALL_ENV = "BSMAMBA2_SAFE_CHECKPOINTS_ALL"


def guard_on(run: RunState) -> bool:
    """Whether checkpoint loads and saves in msst's modules are guarded now."""
    return run.model_is_plugin or os.environ.get(ALL_ENV, "") == "1"


def _checkpoint_error(message: str) -> Exception:
    try:
        from msst.errors import CheckpointError
    except ImportError:  # msst absent: the functions here still work on their own
        return RuntimeError(message)
    return CheckpointError(message)


def _as_path(f: Any) -> str | None:
    return os.fspath(f) if isinstance(f, (str, os.PathLike)) else None


def _trusted(path: str) -> bool:
    listed = [p for p in os.environ.get(TRUST_ENV, "").split(os.pathsep) if p]
    real = os.path.realpath(path)
    return any(os.path.realpath(p) == real for p in listed)


def _numpy_safe_globals() -> list[Any]:
    """numpy scalars and dtypes (msst's metric history holds np.float64): data only."""
    try:
        import numpy as np
    except ImportError:
        return []
    found: list[Any] = [np.dtype, np.float64, np.float32, np.int64, np.int32]
    found += [type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32")]
    for where in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            module = __import__(where, fromlist=["scalar"])
        except ImportError:
            continue
        found.append(module.scalar)
        break
    return found


def _safe_routes(path: str, trust_env: bool = True) -> str:
    """`trust_env`: the reader honours TRUST_ENV (msst's commands), so name it."""
    routes = (f"Safe routes: re-save the weights as a plain state dict or .safetensors from "
              f"a trusted environment (`bsmamba2 convert-checkpoint {path} OUT.ckpt --config "
              f"YAML --trust-pickle` does this for BSMamba2 weights)")
    if not trust_env:
        return routes + ", then pass the new file."
    return (f"{routes}, or, only if you trust where this exact file comes from, set "
            f"{TRUST_ENV}={os.path.abspath(path)} to load it with pickle as msst does.")


def _load_safetensors(path: str, map_location: Any) -> dict[str, Any]:
    try:
        from safetensors.torch import load_file
    except ImportError as error:
        raise ModuleNotFoundError(
            f"{path} is a .safetensors file and the safetensors package is not installed. "
            f"Fix: pip install safetensors", name="safetensors") from error
    device = map_location if isinstance(map_location, str) else "cpu"
    return load_file(path, device=device)


def safe_torch_load(run: RunState, torch_module: Any, f: Any, *args: Any, **kwargs: Any
                    ) -> Any:
    """torch.load as msst calls it, guarded (see the module docstring).

    Args:
        run: the process's run state (whether the guard is on).
        torch_module: the real torch.
        f, args, kwargs: what msst passed to torch.load.

    Raises:
        CheckpointError: the file needs unpickling of code, or is not a complete checkpoint.
    """
    path = _as_path(f)
    if not guard_on(run) or path is None:
        return torch_module.load(f, *args, **kwargs)
    return _guarded_load(torch_module, path, f, args, kwargs)


def load_weights_only(path: str | os.PathLike) -> Any:
    """A checkpoint for our own commands: always weights-only (BSMAMBA2_TRUST_PICKLE is for
    msst's commands), with the guard's messages for a pickle that needs code and for a
    truncated file; on the CPU; `.safetensors` too."""
    import torch

    return _guarded_load(torch, os.fspath(path), os.fspath(path), (),
                         {"map_location": "cpu"}, trust_env=False)


def _guarded_load(torch_module: Any, path: str, f: Any, args: tuple, kwargs: dict, *,
                  trust_env: bool = True) -> Any:
    """`trust_env`: honour BSMAMBA2_TRUST_PICKLE (msst's commands, which have no flag)."""
    if path.endswith(".safetensors"):
        return _load_safetensors(path, kwargs.get("map_location", args[0] if args else None))
    if trust_env and _trusted(path):
        logger.warning("bsmamba2: %s loaded with pickle (weights_only=False) because %s "
                       "names it", path, TRUST_ENV)
        kwargs["weights_only"] = False
        return torch_module.load(f, *args, **kwargs)
    kwargs["weights_only"] = True
    kwargs.pop("pickle_module", None)
    try:
        with torch_module.serialization.safe_globals(_numpy_safe_globals()):
            return torch_module.load(f, *args, **kwargs)
    except pickle.UnpicklingError as error:
        raise _checkpoint_error(
            f"Refused to load checkpoint {path}: weights-only loading does not accept it "
            f"({_refusal_reason(str(error))}); unpickling it could run arbitrary code, and "
            f"nothing in it was executed. {_safe_routes(path, trust_env)}") from error
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (RuntimeError, EOFError, OSError) as error:  # OSError: a cut-off zip archive
        raise _checkpoint_error(_not_a_checkpoint(path, " ".join(str(error).split()))
                                ) from error


def _refusal_reason(detail: str) -> str:
    """Why torch's weights-only reader refused a file, in one line."""
    found = re.search(r"GLOBAL (\S+)", detail)
    if found:
        return f"it asks for the Python object {found.group(1)}"
    if "Unsupported operand" in detail:
        return "it is a plain Python pickle, not a torch.save file of tensors"
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    return lines[-2][:200] if len(lines) > 1 else (lines or ["unknown reason"])[0][:200]


def _not_a_checkpoint(path: str, detail: str) -> str:
    size = os.path.getsize(path) if os.path.exists(path) else 0
    return (f"Checkpoint {path} ({size} bytes) is not a complete PyTorch checkpoint "
            f"({detail[:200]}): it is truncated (an interrupted download, copy or save) or "
            f"not a checkpoint at all. Fix: copy or download it again; after a crash in "
            f"training, resume from the previous last_<type>.ckpt, which the plugin writes "
            f"atomically.")


def _non_finite(obj: Any) -> list[str]:
    import torch

    state = obj.get("model_state_dict") if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping):
        return []
    return [name for name, value in state.items()
            if torch.is_tensor(value) and value.is_floating_point()
            and not bool(torch.isfinite(value).all())]


def atomic_save(torch_module: Any, obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
    """torch.save to a temporary file beside `f`, fsync, then os.replace it over `f`.

    Raises:
        FloatingPointError: `obj["model_state_dict"]` holds NaN or Inf (nothing written).
    """
    path = _as_path(f)
    if path is None:
        torch_module.save(obj, f, *args, **kwargs)
        return
    bad = _non_finite(obj)
    if bad:
        raise FloatingPointError(
            f"Not writing {path}: the weights hold NaN or Inf ({len(bad)} tensors, e.g. "
            f"{bad[0]}). The previous file, if any, is kept. Likely causes: learning rate "
            f"too high, fp16 overflow (try training.autocast_dtype: bfloat16), or NaN/silent "
            f"samples in the data.")
    for stale in glob.glob(glob.escape(path) + ".tmp-*"):  # left by a killed save
        os.remove(stale)
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        with open(temporary, "wb") as handle:
            torch_module.save(obj, handle, *args, **kwargs)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


class TorchView(types.ModuleType):
    """The torch module as one msst module sees it: `load` and `save` guarded.

    Args:
        torch_module: the real torch.
        owner: name of the msst module this view replaces `torch` in (for messages).
        run: the process's run state (whether the guard is on; the resume block).
    """

    def __init__(self, torch_module: Any, owner: str, run: RunState) -> None:
        super().__init__("torch", f"torch as seen by {owner} (bsmamba2-plugin safe_load)")
        self.__dict__["_torch"] = torch_module
        self.__dict__["_owner"] = owner
        self.__dict__["_run"] = run

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_torch"], name)

    def load(self, f: Any, *args: Any, **kwargs: Any) -> Any:
        return safe_torch_load(self.__dict__["_run"], self.__dict__["_torch"], f, *args,
                               **kwargs)

    def save(self, obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        run, path = self.__dict__["_run"], _as_path(f)
        if not guard_on(run):
            self.__dict__["_torch"].save(obj, f, *args, **kwargs)
            return
        if path is not None:
            obj = with_resume_block(run, obj, path)
        atomic_save(self.__dict__["_torch"], obj, f, *args, **kwargs)


def torch_view_for(owner: str):
    """A bridge patch factory: the real torch of `owner` -> a TorchView of it."""

    def make(original: Any, run: RunState) -> TorchView:
        if isinstance(original, TorchView):
            return original
        return TorchView(original, owner, run)

    return make



def make_scoped_check(original, run: RunState):
    """Bridge patch of msst.preflight.check (`msst-check`): guarded torch.load inside it.

    preflight imports torch inside `check`, so no module global can be replaced; while
    `check` runs, `torch.load` itself is the guarded loader (msst-check is a one-shot,
    single-threaded command), and it is put back afterwards, also on errors.
    """
    import functools

    @functools.wraps(original)
    def check(*args: Any, **kwargs: Any) -> Any:
        import torch

        real = types.SimpleNamespace(load=torch.load, serialization=torch.serialization)

        def load(f: Any, *load_args: Any, **load_kwargs: Any) -> Any:
            return safe_torch_load(run, real, f, *load_args, **load_kwargs)

        torch.load = load
        try:
            return original(*args, **kwargs)
        finally:
            torch.load = real.load

    return check
