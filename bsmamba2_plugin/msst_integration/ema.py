"""EMA weights and checkpoint selection for msst training runs (patches of `bridge`).

msst 0.1.0 updates an EMA of the weights (`training.ema_momentum`) but never validates or
saves it. For plugin types (and msst types that opt in with `training.use_ema_weights`)
these patches validate and select checkpoints on the EMA weights, write
`last_<type>_ema.ckpt` and `best_<type>.ckpt`, restore the EMA on resume and refuse to
resume training from a file of EMA weights. For plugin types they also keep the RNG state
for an exact resume and count non-finite losses per epoch (`run_safety`). Once the time
budget is spent (`training_clock`), the epochs left in msst's loop are empty: these
wrappers of the loop's four calls return at once.

What they share (msst's EMA model, the clock, the RNG state) is the process's
`run_state.RunState`, which the bridge passes to each factory here.
"""

from __future__ import annotations

import functools
import inspect
import os
import warnings
from collections.abc import Mapping
from typing import Any

from . import run_safety, safe_load, training_clock
from .common import cfg_get, ensure_console, first_rank, is_plugin_type, logger
from .run_state import RunState

# ---------------------------------------------------------------------- EMA

def _ema_path(results_path: str, model_type: str) -> str:
    return os.path.join(results_path, f"last_{model_type}_ema.ckpt")


def _restore_ema(ema, args) -> None:
    """On resume, load `<start>_ema.ckpt` beside the start checkpoint into the EMA."""
    import torch

    start = getattr(args, "start_check_point", None)
    if not start:
        return
    root, ext = os.path.splitext(start)
    path = f"{root}_ema{ext}"
    if not os.path.isfile(path):
        warnings.warn(f"bsmamba2: no EMA weights beside {start} ({path}); the EMA restarts "
                      f"from the loaded weights.", stacklevel=2)
        return
    state = torch.load(path, map_location="cpu", weights_only=True)
    ema.module.load_state_dict(state["model_state_dict"])
    ema.n_averaged.fill_(max(1, int(state.get("n_averaged", 1))))
    logger.info("bsmamba2: EMA weights restored from %s", path)


def uses_ema_weights(config: Any, model_type: str) -> bool:
    """`training.use_ema_weights`: default on for plugin model types, off for msst's own."""
    return bool(cfg_get(config.training, "use_ema_weights", is_plugin_type(model_type)))


def make_train_one_epoch(original, run: RunState):
    signature = inspect.signature(original)

    @functools.wraps(original)
    def train_one_epoch(model, config, args, *rest, **kwargs):
        if training_clock.end_of_training(run.clock, args):
            return None  # the time budget ran out in an earlier epoch: this one is empty
        ensure_console()
        ema = kwargs.get("ema_model")
        if ema is not None and run.ema is not ema and uses_ema_weights(config, args.model_type):
            run.ema = ema
            _restore_ema(ema, args)
        bound = signature.bind(model, config, args, *rest, **kwargs).arguments
        # before msst iterates the loader, so its (re)started workers get the epoch
        dataset = getattr(bound.get("train_loader"), "dataset", None)
        if hasattr(dataset, "bsmamba2_set_epoch"):
            dataset.bsmamba2_set_epoch(int(bound["epoch"]))
        plugin = is_plugin_type(args.model_type)
        if plugin:  # count non-finite losses per epoch; RNG state for an exact resume
            run.nonfinite.new_epoch(int(bound["epoch"]))
            run_safety.epoch_started(run, args, dataset)
        training_clock.epoch_started(run.clock)
        result = None
        try:
            result = original(model, config, args, *rest, **kwargs)
        except training_clock.BudgetReached:
            pass  # msst goes on to save and validate; the next epoch is empty
        if plugin:  # the last step's deferred loss check, before msst saves anything
            run_safety.settle_losses(run.nonfinite)
        training_clock.epoch_ended(run.clock, config, args, int(bound["epoch"]),
                                   bound.get("world_size"))
        if plugin:
            run_safety.epoch_ended(run, dataset)
        return result

    return train_one_epoch


def make_accelerate_valid(original, run: RunState):
    @functools.wraps(original)
    def valid(model, valid_loader, args, config, device, verbose=False):
        result = original(model, valid_loader, args, config, device, verbose)
        # the accelerate launcher validates once per epoch and has no train_one_epoch
        for dataset in list(run.datasets):
            dataset.bsmamba2_set_epoch(dataset.epoch + 1)
        return result

    return valid


def _ema_for(run: RunState, device_ids) -> Any:
    ema = run.ema
    if ema is None:
        return None
    import torch.distributed as dist

    wrapped = dist.is_initialized() or (device_ids is not None and len(device_ids) > 1)
    return ema if wrapped else ema.module  # msst reads .module where it expects a wrapper


def _best_path(results_path: str, model_type: str) -> str:
    return os.path.join(results_path, f"best_{model_type}.ckpt")


def _save_atomic(payload: dict[str, Any], path: str) -> None:
    import torch

    torch.save(payload, path + ".tmp")
    os.replace(path + ".tmp", path)


def make_compute_epoch_metrics(original, run: RunState):
    signature = inspect.signature(original)

    @functools.wraps(original)
    def compute_epoch_metrics(*positional, **kwargs):
        if run.clock.finished:  # an empty epoch after the time budget: the best so far
            return signature.bind(*positional, **kwargs).arguments["best_metric"]
        args = kwargs.get("args")
        if positional or args is None or "model" not in kwargs:  # msst passes keywords
            return original(*positional, **kwargs)
        ema = _ema_for(run, kwargs.get("device_ids"))
        if ema is None and not is_plugin_type(args.model_type):
            return original(**kwargs)
        meta = getattr(args, "checkpoint_meta", {})
        weights = "raw" if ema is None else "ema"
        if ema is not None:
            kwargs["model"] = ema
            args.checkpoint_meta = {**meta, "weights": "ema"}
        previous = kwargs.get("best_metric", float("-inf"))
        try:
            best = original(**kwargs)
        finally:
            args.checkpoint_meta = meta
        if best > previous and first_rank():
            # a stable name for the validation-selected weights (msst's own best files
            # carry the epoch and score in their names)
            model = run.ema.module if ema is not None else kwargs["model"]
            model = getattr(model, "module", model)  # DataParallel / DDP
            _save_atomic({"model_state_dict": model.state_dict(), "meta": {
                **meta, "weights": weights, "epoch": int(kwargs["epoch"]),
                "metric": args.metric_for_scheduler, "metric_value": float(best)}},
                _best_path(args.results_path, args.model_type))
        return best

    return compute_epoch_metrics


def make_valid_multi_gpu(original, run: RunState):
    @functools.wraps(original)
    def valid_multi_gpu(model, args, config, device_ids=None, verbose=False):
        if run.clock.finished:  # an empty epoch: what msst's ranks other than 0 return
            return None, None
        ema = _ema_for(run, device_ids)
        return original(ema if ema is not None else model, args, config, device_ids, verbose)

    return valid_multi_gpu


def make_save_last_weights(original, run: RunState):
    """Also write `last_<type>_ema.ckpt`; msst's `last_<type>.ckpt` gets its resume block
    from the guarded save (`safe_load.TorchView.save`)."""
    @functools.wraps(original)
    def save_last_weights(args, model, *rest, **kwargs):
        import torch

        if run.clock.finished:  # an empty epoch after the time budget: nothing new to save
            return None
        ema = run.ema
        if ema is not None:  # first, so that last_<type>.ckpt never names a missing EMA
            meta = {**getattr(args, "checkpoint_meta", {}), "weights": "ema"}
            safe_load.atomic_save(torch, {"model_state_dict": ema.module.state_dict(),
                                          "n_averaged": int(ema.n_averaged), "meta": meta},
                                  _ema_path(args.results_path, args.model_type))
        return original(args, model, *rest, **kwargs)

    return save_last_weights


# ------------------------------------------------------------------- resume
def _refuse_ema_start(args: Any, checkpoint: Any) -> None:
    """Training must not start from EMA weights written by training: they would be
    trained as if they were the raw weights (and paired with the raw optimizer state)."""
    from msst.errors import ConfigurationError

    meta = checkpoint.get("meta") if isinstance(checkpoint, Mapping) else None
    if not isinstance(meta, Mapping) or meta.get("weights") != "ema" \
            or "converted_from" in meta:  # a converted file is a warm start, not a resume
        return
    start = str(getattr(args, "start_check_point", ""))
    model_type = meta.get("model_type") or args.model_type
    raw = os.path.join(os.path.dirname(start) or ".", f"last_{model_type}.ckpt")
    where = "" if os.path.isfile(raw) else " (not in that folder: use the one of that run)"
    raise ConfigurationError(
        f"--start_check_point {start} holds EMA weights (meta.weights: ema), written for "
        f"validation and inference; training from it would treat the average as the raw "
        f"weights. Fix: resume from {raw}{where}, which holds the raw weights and optimizer "
        f"state; the EMA is restored from {_ema_path(os.path.dirname(raw), model_type)}.")


def make_load_start_checkpoint(original, run: RunState):
    @functools.wraps(original)
    def load_start_checkpoint(args, model, old_model, type_="train"):
        if type_ == "train":
            _refuse_ema_start(args, old_model)
        return original(args, model, old_model, type_=type_)

    return load_start_checkpoint


