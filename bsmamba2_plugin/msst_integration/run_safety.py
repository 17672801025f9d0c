"""Resume, checkpoint fit and non-finite-loss handling for plugin model types (issue 12).

Used by the bridge's patches; see its table for where each piece hooks in.

- `check_fit`: before msst's strict `load_state_dict` in `msst-valid` / `msst-inference`,
  compare the file's tensors with the model the config builds and raise one
  `CheckpointError` saying what the file holds, what the config builds, and the fix
  (instead of msst's multi-page `load_state_dict` traceback).
- Resume: msst's `--start_check_point` restores only the weights unless `--load_optimizer
  --load_scheduler --load_epoch --load_best_metric --load_all_metrics --load_all_losses`
  are all given, and it never saves or restores random-number state. For plugin types
  the guarded save (`safe_load.TorchView.save`) adds a `bsmamba2_resume` block (torch /
  numpy / python RNG states and our dataset's generator, captured at the end of each
  training epoch) to the run's `last_<type>.ckpt` (`with_resume_block`); starting from a
  checkpoint with that block turns those msst flags on and restores the RNG state before
  the next epoch, so a killed run continues as if never stopped. The same
  state is restored at the start of every epoch in an uninterrupted run, which makes
  validation (between epochs) leave the training RNG stream untouched; both runs then
  draw identical batches.
- `check_loss`: a NaN/Inf training loss skips the step (no gradient reaches the
  weights) and is logged with a count; `training.max_nonfinite_steps` (default 10) in a
  row stops training with `NonFiniteLossError`. On CUDA with msst's GradScaler (which
  skips such steps itself) the check waits for the next step or the epoch's end
  (`settle_losses`), when msst's own `loss.item()` has synchronised: reading the loss at
  once would make the CPU wait for the forward pass before it could queue the backward.

The RNG state and the counts live in the process's `run_state.RunState` (`rng`,
`last_checkpoint`, `nonfinite`); the functions here are given it.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from typing import Any

from .run_state import NonFiniteCounts, RunState

__all__ = [
    "RESUME_KEY",
    "NonFiniteLossError",
    "capture_rng",
    "check_fit",
    "check_loss",
    "settle_losses",
    "fit_problem",
    "restore_rng",
    "start_resume",
    "with_resume_block",
]

logger = logging.getLogger("bsmamba2_plugin")

RESUME_KEY = "bsmamba2_resume"
DEFAULT_MAX_NONFINITE_STEPS = 10
_RESUME_FLAGS = ("load_optimizer", "load_scheduler", "load_epoch", "load_best_metric",
                 "load_all_metrics", "load_all_losses")


def _checkpoint_error(message: str) -> Exception:
    from msst.errors import CheckpointError

    return CheckpointError(message)


# ----------------------------------------------------------------- fit check
def _weights_of(checkpoint: Any) -> Mapping[str, Any] | None:
    """The state dict msst's load_start_checkpoint would load, or None."""
    from .checkpoints import unwrap_state_dict

    state, _ = unwrap_state_dict(checkpoint)
    return state if isinstance(state, Mapping) else None


def _examples(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def check_fit(model: Any, checkpoint: Any, *, path: str, model_type: str) -> None:
    """Raise one clear CheckpointError when `checkpoint` does not load strictly into `model`.

    Raises:
        CheckpointError: missing, unexpected or differently shaped tensors.
    """
    problem = fit_problem(model, checkpoint, path=path, model_type=model_type)
    if problem:
        raise _checkpoint_error(problem)


def fit_problem(model: Any, checkpoint: Any, *, path: str, model_type: str,
                config_flag: str = "--config_path", type_flag: str | None = "--model_type"
                ) -> str | None:
    """Why `checkpoint` does not load strictly into `model`, in one line, or None.

    `config_flag` and `type_flag` name the options of the command that reads it (msst's
    by default; `bsmamba2 separate` and `evaluate` pass their own; None: the command has
    no model-type option).
    """
    import torch

    state = _weights_of(checkpoint)
    meta = checkpoint.get("meta") if isinstance(checkpoint, Mapping) else None
    declared = meta.get("model_type") if isinstance(meta, Mapping) else None
    if state is None:
        return (f"Checkpoint {path} holds a {type(checkpoint).__name__}, not a state dict or "
                f"an msst checkpoint (a dict with model_state_dict). Fix: pass a checkpoint "
                f"written by msst-train or `bsmamba2 convert-checkpoint`.")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items()
              if k in state and torch.is_tensor(state[k]) and state[k].shape != v.shape]
    if not (missing or unexpected or shapes):
        return None
    holds = f"{len(state)} tensors" + (f" of model_type {declared!r}" if declared else
                                       " (no meta.model_type)")
    parts = [f"{len(missing)} missing (e.g. {_examples(missing)})" if missing else "",
             f"{len(unexpected)} unexpected (e.g. {_examples(unexpected)})" if unexpected
             else "",
             f"{len(shapes)} with other shapes (e.g. {_examples(shapes)})" if shapes else ""]
    return (f"Checkpoint {path} does not fit the model the config builds. The file holds "
            f"{holds}; the config builds model_type {model_type!r} ({type(model).__name__}, "
            f"{len(expected)} tensors): {'; '.join(p for p in parts if p)}. Fix: pass the "
            f"{config_flag} this checkpoint was trained with (same model: section: dim, "
            f"depth, freqs_per_bands, stft_n_fft, num_stems)"
            f"{f', or the {type_flag} it was trained as' if type_flag else ''}; `bsmamba2 "
            f"convert-checkpoint` converts official BSMamba2 and msst bs_mamba2 checkpoints.")


# -------------------------------------------------------------------- resume
def capture_rng(dataset: Any = None) -> dict[str, Any]:
    """The RNG state of this process (weights-only loadable: tensors, ints, strings)."""
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                  float(gauss)),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    generator = getattr(dataset, "_rng", None)
    if isinstance(generator, np.random.Generator):  # BSMamba2Dataset without workers
        state["dataset"] = _plain(generator.bit_generator.state)
    return state


def _plain(value: Any) -> Any:
    """numpy's bit-generator state as str/int-only dicts (128-bit ints as strings)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _unplain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _unplain(v) for k, v in value.items()}
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def restore_rng(state: Mapping[str, Any], dataset: Any = None) -> None:
    """Set this process's RNGs (and `dataset`'s generator, when saved) to `state`."""
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "dataset" in state and hasattr(dataset, "_rng"):
        generator = np.random.default_rng()
        generator.bit_generator.state = _unplain(state["dataset"])
        dataset._rng = generator
        dataset._rng_owner = (os.getpid(), None)


def epoch_started(run: RunState, args: Any, dataset: Any) -> None:
    """Start the epoch from the saved RNG state (resume, or end of the previous epoch);
    name the file that carries that state (`with_resume_block`)."""
    results = getattr(args, "results_path", None)
    run.last_checkpoint = None if results is None else os.path.abspath(
        os.path.join(results, f"last_{args.model_type}.ckpt"))
    state, run.rng = run.rng, None
    if state is not None:
        restore_rng(state, dataset)


def epoch_ended(run: RunState, dataset: Any) -> None:
    run.rng = capture_rng(dataset)


def with_resume_block(run: RunState, obj: Any, path: str) -> Any:
    """`obj` as the guarded save writes it to `path`: msst's `last_<type>.ckpt` of this
    run gets RESUME_KEY (the RNG state the next epoch starts from); anything else, and
    anything before the first epoch ends, is written as it is."""
    if run.rng is None or not isinstance(obj, dict) or run.last_checkpoint is None \
            or os.path.abspath(path) != run.last_checkpoint:
        return obj
    return {**obj, RESUME_KEY: {"rng": run.rng}}


def start_resume(run: RunState, args: Any, checkpoint: Any) -> None:
    """msst-train from a checkpoint with a resume block: restore everything msst can."""
    if not (isinstance(checkpoint, Mapping) and isinstance(checkpoint.get(RESUME_KEY),
                                                           Mapping)):
        return
    for flag in _RESUME_FLAGS:
        setattr(args, flag, True)
    run.rng = checkpoint[RESUME_KEY]["rng"]
    logger.warning("bsmamba2: resuming from %s at epoch %s (optimizer, scheduler, epoch, "
                   "metrics, losses, EMA and random state restored)", args.start_check_point,
                   int(checkpoint.get("epoch", -1)) + 1)


# ---------------------------------------------------------------- non-finite
class NonFiniteLossError(RuntimeError):
    """Too many training steps in a row had a NaN or Inf loss."""


def check_loss(counts: NonFiniteCounts, loss: Any, limit: int, *,
               deferred: bool = False) -> bool:
    """True if `loss` is finite; else log, count, and raise after `limit` in a row.

    deferred: judge this loss later (`settle_losses`: at the next call or the epoch's
    end) and return True now. For steps whose skipping is not ours to do (msst's enabled
    GradScaler skips a NaN/Inf step itself), so that reading the loss does not stall the
    GPU between forward and backward.

    Raises:
        NonFiniteLossError: `limit` non-finite losses in a row (a deferred one's at the
            next call or `settle_losses`, naming its own epoch and step).
    """
    settle_losses(counts)
    counts.step += 1
    if deferred:
        counts.pending = (loss.detach(), limit, counts.epoch, counts.step)
        return True
    return _judge(counts, loss.detach(), limit, counts.epoch, counts.step)


def settle_losses(counts: NonFiniteCounts) -> None:
    """Judge the loss `check_loss(deferred=True)` left, if any (raises as it would)."""
    if counts.pending is not None:
        loss, limit, epoch, step = counts.pending
        counts.pending = None
        _judge(counts, loss, limit, epoch, step)


def _judge(counts: NonFiniteCounts, loss: Any, limit: int, epoch: int, step: int) -> bool:
    import torch

    if bool(torch.isfinite(loss).all()):
        counts.in_a_row = 0
        return True
    counts.in_a_row += 1
    counts.total += 1
    logger.warning("bsmamba2: epoch %d step %d: training loss is %s; step skipped "
                   "(%d in a row, %d skipped in this run; training.max_nonfinite_steps"
                   "=%d)", epoch, step, float(loss.float().sum()),
                   counts.in_a_row, counts.total, limit)
    if counts.in_a_row >= limit:
        raise NonFiniteLossError(
            f"Training stopped at epoch {epoch} step {step}: the loss was NaN "
            f"or Inf for {counts.in_a_row} steps in a row (training.max_nonfinite_steps="
            f"{limit}; {counts.total} skipped in this run). No weights with NaN were "
            f"saved; last_<type>.ckpt holds the last good epoch. Likely causes: learning "
            f"rate too high (training.lr), fp16 overflow (use training.autocast_dtype: "
            f"bfloat16 or use_amp: false), NaN or Inf samples in the data, or "
            f"training.grad_clip disabled. Fix the cause and resume with "
            f"--start_check_point last_<type>.ckpt.")
    return False


# ------------------------------------------------------------------ the patch
def make_load_start_checkpoint(original, run: RunState):
    """Bridge patch of msst's load_start_checkpoint (model_utils and its by-value copies).

    Plugin types: in msst-valid / msst-inference (type_ != "train"), `check_fit` first;
    in training, `start_resume` (a no-op for checkpoints without a resume block).
    """
    import functools

    from . import plugins

    @functools.wraps(original)
    def load_start_checkpoint(args, model, old_model, type_="train"):
        if args.model_type in plugins.available():
            if type_ == "train":
                start_resume(run, args, old_model)
            else:
                check_fit(model, old_model, path=str(args.start_check_point),
                          model_type=args.model_type)
        return original(args, model, old_model, type_)

    return load_start_checkpoint
