"""Everything the plugin changes inside msst, in one place. Written for msst 0.1.0.

msst 0.1.0 has no plugin mechanism (MSST.md sections 1 and 5). These patches give it
one, fix its CPU training bug, and add the BSMamba2 recipe, without editing msst:

| module | name | change |
|---|---|---|
| msst.utils.settings | build_model_from_config | model types from `plugins` (entry points), honouring `training.model_type`; unknown types list what is installed |
| msst.utils.settings | load_config | plugin types: an unknown top-level section is an error with "did you mean" (msst ignores it); for any type, the keys of the plugin's own sections are checked; errors name the config file |
| msst._training, msst._train_accelerate | parse_args_train | remember the user's `--seed` (msst seeds DDP and accelerate runs with seed + time) for the paper recipe's draws |
| msst.utils.model_utils, msst._train_accelerate | load_start_checkpoint | training refuses to resume from a file of EMA weights (it would train the average as raw weights) and names the raw file |
| msst.utils.model_utils, msst._training | initialize_model_and_device | return `torch.device('cpu')`, not the string 'cpu' msst returns (it crashes training at `device.type`) |
| msst._training, msst._train_accelerate | compute_training_loss | plugin types: optional on-device batch augmentation, bf16/fp16 autocast by `training.autocast_dtype`, the paper loss when the config has `loss_bsmamba2:` (unless `--use_standard_loss`) |
| msst.utils.dataset, msst._train_accelerate | MSSDataset | `msst_dataset.BSMamba2Dataset`: the paper's stem sampling when the config has `augmentations_bsmamba2:` |
| msst._training | train_one_epoch, compute_epoch_metrics, valid_multi_gpu, save_last_weights | with `training.ema_momentum` and `training.use_ema_weights` (default: on for plugin types, off for msst's own): validate and select checkpoints on the EMA weights (msst updates its EMA but never uses it), write `last_<type>_ema.ckpt`, restore the EMA on resume; write `best_<type>.ckpt` (the validation-selected weights) whenever the metric improves; tell the dataset the epoch |
| msst._train_accelerate | valid | the accelerate launcher has no train_one_epoch: advance the dataset's epoch after each validation |

Patches are idempotent and applied when each module is first imported (`_msst_hook`,
loaded from a .pth file, so stock `msst-*` commands, the Python API, DataLoader workers
and DDP ranks all get them) or by `install()` for modules already imported. Before
patching, each function's parameters are compared with those of msst 0.1.0; a function
whose shape changed is left alone with an `MsstCompatibilityWarning` naming it, and
another msst version is warned about once. Built-in msst model types keep msst's
behaviour everywhere except the CPU device fix, and the EMA use they opt into with
`training.use_ema_weights: true` (the BS-RoFormer baseline configs do, for a fair
comparison).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.metadata
import inspect
import logging
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from . import plugins

__all__ = ["MSST_SECTIONS", "MSST_VERSION", "PATCHES", "PLUGIN_SECTIONS",
           "MsstCompatibilityWarning", "check_config_sections", "install", "patch_module",
           "patch_report", "training_seed"]

logger = logging.getLogger("bsmamba2_plugin")

MSST_VERSION = "0.1.0"
_MARK = "__bsmamba2_original__"

# Top-level config sections msst 0.1.0 reads (grep of its code: settings, dataset, losses,
# model_utils, _validation), and the ones this bridge adds for plugin types.
MSST_SECTIONS = ("audio", "model", "training", "augmentations", "inference", "optimizer",
                 "loss_multistft", "lora", "reverb", "stft", "kwargs")
PLUGIN_SECTIONS = ("loss_bsmamba2", "augmentations_bsmamba2")


class MsstCompatibilityWarning(UserWarning):
    """msst differs from the version the plugin's patches were written for."""


@dataclasses.dataclass(frozen=True)
class Patch:
    module: str
    name: str
    parameters: tuple[str, ...]  # parameter names of the msst 0.1.0 original (class: ())
    make: Callable[[Any], Any]  # original -> replacement
    why: str


# ----------------------------------------------------------------- helpers
def _is_plugin_type(model_type: str | None) -> bool:
    return bool(model_type) and model_type in plugins.available()


def _cfg_get(section: Any, key: str, default: Any = None) -> Any:
    try:
        return section[key] if key in section else default
    except TypeError:
        return getattr(section, key, default)


def _first_rank() -> bool:
    """True outside DDP and on rank 0 (msst prints only there)."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _ensure_console() -> None:
    """msst logs with print() and configures no logging; when nothing handles the
    plugin's log records, send its INFO lines to stdout so they land in msst's log."""
    if not logger.hasHandlers():
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


# ------------------------------------------------------------ config sections
def check_config_sections(config: Any, model_type: str, source: str) -> None:
    """Reject what msst would silently ignore in a config for a plugin model type.

    Args:
        config: msst's loaded config (ConfigDict).
        model_type: the type asked for; `training.model_type` overrides it, as in msst.
        source: the config file, for messages.

    Raises:
        msst.errors.ConfigurationError: an unknown top-level section (plugin types only),
            or an unknown or invalid key in `loss_bsmamba2:` / `augmentations_bsmamba2:`
            (any type: the dataset reads the latter for msst's own types too). One line
            that names the file, the section or key, the closest valid name and the fix.
    """
    from msst.errors import ConfigurationError

    from .augment import AugmentConfig
    from .losses import PaperLossConfig

    training = config["training"] if "training" in config else None
    effective = training["model_type"] if training is not None and "model_type" in training \
        else model_type
    if _is_plugin_type(effective):
        known = MSST_SECTIONS + PLUGIN_SECTIONS
        for name in config.keys():
            if name not in known:
                close = difflib.get_close_matches(str(name), known, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigurationError(
                    f"{source}: unknown top-level section {name!r} for model_type "
                    f"{effective!r}.{hint} Known sections: {', '.join(known)}. Fix: rename or "
                    f"remove it (msst ignores unknown sections, so it would train without it).")
    parsers = {"loss_bsmamba2": PaperLossConfig, "augmentations_bsmamba2": AugmentConfig}
    for name, parser in parsers.items():
        if name in config:
            try:
                parser.from_mapping(config[name], path=name)
            except (KeyError, TypeError, ValueError) as error:
                detail = error.args[0] if isinstance(error, KeyError) and error.args \
                    else str(error)
                raise ConfigurationError(f"{source}: {detail}") from error


def _make_load_config(original):
    @functools.wraps(original)
    def load_config(model_type, config_path):
        config = original(model_type, config_path)
        check_config_sections(config, model_type, str(config_path))
        return config

    return load_config


# --------------------------------------------------------------------- seed
_RUN: dict[str, Any] = {}  # process-local: the --seed msst parsed for this training run


def training_seed() -> int | None:
    """The `--seed` of the msst training run in this process (None outside one).

    msst seeds torch with seed + time under DDP and accelerate, so the dataset draws
    from this value instead (see `msst_dataset`) and runs repeat.
    """
    return _RUN.get("seed")


def _make_parse_args_train(original):
    @functools.wraps(original)
    def parse_args_train(dict_args):
        args = original(dict_args)
        _RUN["seed"] = int(args.seed)
        return args

    return parse_args_train


# --------------------------------------------------------------- model build
def _make_build_model_from_config(original):
    @functools.wraps(original)
    def build_model_from_config(model_type, config, *, pretrained=False):
        from msst.errors import ConfigurationError

        effective = model_type
        if hasattr(config, "training") and "model_type" in config.training:
            effective = config.training.model_type
        factory = plugins.get_factory(effective)
        if factory is None:
            try:
                return original(model_type, config, pretrained=pretrained)
            except ConfigurationError as error:
                if str(error).startswith("Unknown model type"):
                    raise ConfigurationError(plugins.unknown_type_message(effective)) from error
                raise
        if not hasattr(config, "training"):
            raise ConfigurationError("Configuration is missing the required 'training' section")
        if not hasattr(config, "model"):
            raise ConfigurationError(f"Configuration is missing the required 'model' section "
                                     f"for model_type={effective!r}")
        return factory(config, pretrained=pretrained)

    return build_model_from_config


def _make_initialize_model_and_device(original):
    @functools.wraps(original)
    def initialize_model_and_device(model, device_ids):
        import torch

        device, model = original(model, device_ids)
        return torch.device(device) if isinstance(device, str) else device, model

    return initialize_model_and_device


# --------------------------------------------------------------------- loss
_step_setups: dict[int, tuple[Any, tuple[Any, Any, Any]]] = {}


def _step_setup(config: Any) -> tuple[Any, Any, Any]:
    """(paper loss or None, batch augment or None, autocast dtype) for one config, built
    once per config object (msst passes the same one every step)."""
    cached = _step_setups.get(id(config))
    if cached is None or cached[0] is not config:
        cached = (config, _build_step_setup(config))
        _step_setups[id(config)] = cached
    return cached[1]


def _build_step_setup(config: Any) -> tuple[Any, Any, Any]:
    import torch

    from .augment import AugmentConfig, build_batch_augment
    from .losses import PaperLossConfig, build_loss

    loss = None
    if "loss_bsmamba2" in config:
        loss = build_loss(PaperLossConfig.from_mapping(config["loss_bsmamba2"]))
    augment = None
    if "augmentations_bsmamba2" in config:
        aug = AugmentConfig.from_mapping(config["augmentations_bsmamba2"])
        if aug.batch and _cfg_get(config.training, "target_instrument") is not None:
            raise ValueError(
                "augmentations_bsmamba2.batch augments every stem and rebuilds the mixture, "
                "so the targets must be all stems; training.target_instrument is set. Fix: "
                "remove the batch list or set training.target_instrument to null.")
        augment = build_batch_augment(aug.batch, int(_cfg_get(config.audio, "sample_rate", 44100)))
    name = str(_cfg_get(config.training, "autocast_dtype", "float16"))
    dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in dtypes:
        raise ValueError(f"training.autocast_dtype: expected float16 or bfloat16, got {name!r}.")
    return loss, augment, dtypes[name]


def _make_compute_training_loss(original):
    @functools.wraps(original)
    def compute_training_loss(model, config, args, data, device, device_ids, multi_loss,
                              use_amp):
        if not _is_plugin_type(args.model_type):
            return original(model, config, args, data, device, device_ids, multi_loss, use_amp)
        import torch
        from msst.utils.model_utils import normalize_batch

        if len(data) == 3:
            batch, mixes, active_stem_mask = data
        elif len(data) == 2:
            (batch, mixes), active_stem_mask = data, None
        else:
            raise ValueError(f"Expected a 2- or 3-item training batch, got {len(data)}")
        device = torch.device(device)
        x, y = mixes.to(device), batch.to(device)
        if isinstance(active_stem_mask, torch.Tensor):
            active_stem_mask = active_stem_mask.to(device=device, dtype=torch.bool)
        if _cfg_get(config.training, "normalize", False):
            x, y = normalize_batch(x, y)
        paper_loss, augment, amp_dtype = _step_setup(config)
        _announce_setup_once(config, args, device, use_amp, amp_dtype,
                             paper_loss is not None and not args.use_standard_loss)
        if augment is not None:
            y = augment(y)
            x = y.sum(dim=1)
        with torch.autocast(device_type=device.type, dtype=amp_dtype,
                            enabled=bool(use_amp and device.type == "cuda")):
            estimate = model(x)
            if paper_loss is None or args.use_standard_loss:
                loss = multi_loss(estimate, y, x, active_stem_mask)
        if paper_loss is not None and not args.use_standard_loss:
            loss = paper_loss(estimate, y)
        return loss, active_stem_mask

    return compute_training_loss


_announced: dict[int, Any] = {}


def _announce_setup_once(config: Any, args: Any, device: Any, use_amp: bool, amp_dtype: Any,
                         uses_paper_loss: bool) -> None:
    """State once per run, in msst's log, which loss, data recipe, EMA and precision run."""
    if _announced.get(id(config)) is config:
        return
    _announced[id(config)] = config
    if not _first_rank():
        return
    _ensure_console()
    logger.info("bsmamba2 training setup: %s", "; ".join(
        _describe_setup(config, args, device, use_amp, amp_dtype, uses_paper_loss)))


def _describe_setup(config: Any, args: Any, device: Any, use_amp: bool, amp_dtype: Any,
                    uses_paper_loss: bool) -> list[str]:
    from .augment import AugmentConfig
    from .losses import PaperLossConfig

    parts = []
    if uses_paper_loss:
        loss = PaperLossConfig.from_mapping(config["loss_bsmamba2"])
        windows = ",".join(str(w) for w in loss.window_sizes)
        parts.append(f"loss: loss_bsmamba2 = {loss.time_weight:g} x L1(time) + "
                     f"{loss.stft_weight:g} x complex STFT L1 (windows {windows}, hop "
                     f"{loss.hop_length})")
    else:
        why = "--use_standard_loss" if "loss_bsmamba2" in config else \
            "no loss_bsmamba2: section"
        parts.append(f"loss: msst's --loss {' '.join(args.loss)} ({why})")
    if "augmentations_bsmamba2" in config:
        aug = AugmentConfig.from_mapping(config["augmentations_bsmamba2"])
        source = (f"salient windows (SAD, hop {aug.sad_hop_seconds:g} s)"
                  if aug.salient_windows else "msst's window choice")
        text = (f"data: augmentations_bsmamba2, each stem from {source}, gain "
                f"U({aug.gain_min:g}, {aug.gain_max:g}), silence p {aug.silence_p:g}")
        if aug.batch:
            text += ", batch " + "+".join(str(spec["name"]) for spec in aug.batch)
    else:
        text = f"data: msst's sampling for --dataset_type {args.dataset_type} " \
               f"(no augmentations_bsmamba2: section)"
    msst_aug = config["augmentations"] if "augmentations" in config else None
    if msst_aug is not None and _cfg_get(msst_aug, "enable", False):
        text += " + msst augmentations"
    parts.append(text)
    momentum = _cfg_get(config.training, "ema_momentum", None)
    if momentum and momentum > 0 and _uses_ema_weights(config, args.model_type):
        parts.append(f"EMA: {momentum:g}, validated and kept (best_{args.model_type}.ckpt, "
                     f"last_{args.model_type}_ema.ckpt)")
    elif momentum and momentum > 0:
        parts.append(f"EMA: {momentum:g}, updated by msst but unused "
                     f"(training.use_ema_weights: false)")
    else:
        parts.append("EMA: off (no training.ema_momentum)")
    if use_amp and device.type == "cuda":
        parts.append(f"precision: autocast {str(amp_dtype).replace('torch.', '')}")
    else:
        why = "training.use_amp is false" if not use_amp else \
            f"autocast runs only on CUDA, device is {device.type}"
        parts.append(f"precision: float32 ({why})")
    return parts


# --------------------------------------------------------------------- data
def _make_dataset(original):
    ours = sys.modules.get(f"{__package__}.msst_dataset")
    if ours is not None and not hasattr(ours, "BSMamba2Dataset"):
        # msst.utils.dataset is being imported *by* msst_dataset (in a DataLoader worker,
        # unpickling our dataset): that module finishes this patch when it is complete.
        return None
    from .msst_dataset import BSMamba2Dataset

    if not issubclass(BSMamba2Dataset, original):
        raise TypeError("bsmamba2: msst.utils.dataset.MSSDataset is not the class "
                        "BSMamba2Dataset extends; was msst reloaded?")
    return BSMamba2Dataset


# ---------------------------------------------------------------------- EMA
_EMA: dict[str, Any] = {}  # process-local: the AveragedModel msst trains with


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


def _uses_ema_weights(config: Any, model_type: str) -> bool:
    """`training.use_ema_weights`: default on for plugin model types, off for msst's own."""
    return bool(_cfg_get(config.training, "use_ema_weights", _is_plugin_type(model_type)))


def _make_train_one_epoch(original):
    signature = inspect.signature(original)

    @functools.wraps(original)
    def train_one_epoch(model, config, args, *rest, **kwargs):
        _ensure_console()
        ema = kwargs.get("ema_model")
        if (ema is not None and _EMA.get("model") is not ema
                and _uses_ema_weights(config, args.model_type)):
            _EMA["model"] = ema
            _restore_ema(ema, args)
        bound = signature.bind(model, config, args, *rest, **kwargs).arguments
        # before msst iterates the loader, so its (re)started workers get the epoch
        dataset = getattr(bound.get("train_loader"), "dataset", None)
        if hasattr(dataset, "bsmamba2_set_epoch"):
            dataset.bsmamba2_set_epoch(int(bound["epoch"]))
        return original(model, config, args, *rest, **kwargs)

    return train_one_epoch


def _make_accelerate_valid(original):
    @functools.wraps(original)
    def valid(model, valid_loader, args, config, device, verbose=False):
        result = original(model, valid_loader, args, config, device, verbose)
        # the accelerate launcher validates once per epoch and has no train_one_epoch
        ours = sys.modules.get(f"{__package__}.msst_dataset")
        if ours is not None:
            ours.advance_epochs()
        return result

    return valid


def _ema_for(args, device_ids) -> Any:
    ema = _EMA.get("model")
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


def _make_compute_epoch_metrics(original):
    @functools.wraps(original)
    def compute_epoch_metrics(*positional, **kwargs):
        args = kwargs.get("args")
        if positional or args is None or "model" not in kwargs:  # msst passes keywords
            return original(*positional, **kwargs)
        ema = _ema_for(args, kwargs.get("device_ids"))
        if ema is None and not _is_plugin_type(args.model_type):
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
        if best > previous and _first_rank():
            # a stable name for the validation-selected weights (msst's own best files
            # carry the epoch and score in their names)
            model = _EMA["model"].module if ema is not None else kwargs["model"]
            model = getattr(model, "module", model)  # DataParallel / DDP
            _save_atomic({"model_state_dict": model.state_dict(), "meta": {
                **meta, "weights": weights, "epoch": int(kwargs["epoch"]),
                "metric": args.metric_for_scheduler, "metric_value": float(best)}},
                _best_path(args.results_path, args.model_type))
        return best

    return compute_epoch_metrics


def _make_valid_multi_gpu(original):
    @functools.wraps(original)
    def valid_multi_gpu(model, args, config, device_ids=None, verbose=False):
        ema = _ema_for(args, device_ids)
        return original(ema if ema is not None else model, args, config, device_ids, verbose)

    return valid_multi_gpu


def _make_save_last_weights(original):
    @functools.wraps(original)
    def save_last_weights(args, model, *rest, **kwargs):
        result = original(args, model, *rest, **kwargs)
        ema = _EMA.get("model")
        if ema is not None:
            meta = {**getattr(args, "checkpoint_meta", {}), "weights": "ema"}
            _save_atomic({"model_state_dict": ema.module.state_dict(),
                          "n_averaged": int(ema.n_averaged), "meta": meta},
                         _ema_path(args.results_path, args.model_type))
        return result

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


def _make_load_start_checkpoint(original):
    @functools.wraps(original)
    def load_start_checkpoint(args, model, old_model, type_="train"):
        if type_ == "train":
            _refuse_ema_start(args, old_model)
        return original(args, model, old_model, type_=type_)

    return load_start_checkpoint


# -------------------------------------------------------------------- table
PATCHES: tuple[Patch, ...] = (
    Patch("msst.utils.settings", "build_model_from_config",
          ("model_type", "config", "pretrained"), _make_build_model_from_config,
          "model types from entry-point plugins"),
    Patch("msst.utils.settings", "load_config", ("model_type", "config_path"),
          _make_load_config, "misspelt config sections and plugin keys are errors"),
    Patch("msst._training", "parse_args_train", ("dict_args",), _make_parse_args_train,
          "remember the user's --seed"),
    Patch("msst._train_accelerate", "parse_args_train", ("dict_args",),
          _make_parse_args_train, "by-value copy for the accelerate launcher"),
    Patch("msst.utils.model_utils", "load_start_checkpoint",
          ("args", "model", "old_model", "type_"), _make_load_start_checkpoint,
          "no resume from EMA weights"),
    Patch("msst._train_accelerate", "load_start_checkpoint",
          ("args", "model", "old_model", "type_"), _make_load_start_checkpoint,
          "by-value copy for the accelerate launcher"),
    Patch("msst._train_accelerate", "valid",
          ("model", "valid_loader", "args", "config", "device", "verbose"),
          _make_accelerate_valid, "advance the dataset epoch (accelerate launcher)"),
    Patch("msst.utils.model_utils", "initialize_model_and_device", ("model", "device_ids"),
          _make_initialize_model_and_device, "CPU device is returned as a string"),
    Patch("msst._training", "initialize_model_and_device", ("model", "device_ids"),
          _make_initialize_model_and_device, "by-value copy of the CPU device fix"),
    Patch("msst._training", "compute_training_loss",
          ("model", "config", "args", "data", "device", "device_ids", "multi_loss", "use_amp"),
          _make_compute_training_loss, "plugin loss, batch augmentation, autocast dtype"),
    Patch("msst._train_accelerate", "compute_training_loss",
          ("model", "config", "args", "data", "device", "device_ids", "multi_loss", "use_amp"),
          _make_compute_training_loss, "by-value copy for the accelerate launcher"),
    Patch("msst.utils.dataset", "MSSDataset", (), _make_dataset, "paper stem sampling"),
    Patch("msst._train_accelerate", "MSSDataset", (), _make_dataset, "by-value copy"),
    Patch("msst._training", "train_one_epoch",
          ("model", "config", "args", "optimizer", "device", "device_ids", "epoch", "use_amp",
           "scaler", "scheduler", "gradient_accumulation_steps", "train_loader", "multi_loss",
           "all_losses", "world_size", "ema_model", "safe_mode"),
          _make_train_one_epoch, "remember msst's EMA model; tell the dataset the epoch"),
    Patch("msst._training", "compute_epoch_metrics",
          ("model", "args", "config", "device", "device_ids", "best_metric", "epoch",
           "scheduler", "optimizer", "all_time_all_metrics", "all_losses", "world_size",
           "metrics_avg", "all_metrics"),
          _make_compute_epoch_metrics,
          "validate and keep the EMA weights; write best_<type>.ckpt"),
    Patch("msst._training", "valid_multi_gpu",
          ("model", "args", "config", "device_ids", "verbose"), _make_valid_multi_gpu,
          "DDP validation on the EMA weights"),
    Patch("msst._training", "save_last_weights",
          ("args", "model", "device_ids", "optimizer", "epoch", "all_time_all_metrics",
           "all_losses", "best_metric", "scheduler"),
          _make_save_last_weights, "also write last_<type>_ema.ckpt"),
)
TARGET_MODULES = frozenset(p.module for p in PATCHES)
_report: dict[tuple[str, str], str] = {}
_version_checked: list[bool] = []


def _check_version() -> None:
    if _version_checked:
        return
    _version_checked.append(True)
    try:
        found = importlib.metadata.version("msst")
    except importlib.metadata.PackageNotFoundError:
        return
    if found != MSST_VERSION:
        warnings.warn(
            f"bsmamba2-plugin patches msst {MSST_VERSION}; msst {found} is installed. Each "
            f"patched function is checked and skipped if its parameters changed; run "
            f"`bsmamba2 doctor` to see which apply.", MsstCompatibilityWarning, stacklevel=3)


def _apply(module: Any, patch: Patch) -> None:
    key = (patch.module, patch.name)
    current = getattr(module, patch.name, None)
    if current is None:
        _report[key] = "missing in this msst: not patched"
        warnings.warn(f"bsmamba2: {patch.module}.{patch.name} does not exist in this msst; "
                      f"not patched ({patch.why}).", MsstCompatibilityWarning, stacklevel=3)
        return
    if getattr(current, _MARK, None) is not None or (
            isinstance(current, type) and current.__module__ == f"{__package__}.msst_dataset"):
        _report[key] = "patched"
        return
    if patch.parameters:
        found = tuple(inspect.signature(current).parameters)
        if found != patch.parameters:
            _report[key] = f"NOT patched: parameters {found} differ from msst {MSST_VERSION}"
            warnings.warn(
                f"bsmamba2: {patch.module}.{patch.name} has parameters {found}, not those of "
                f"msst {MSST_VERSION} {patch.parameters}; it is left unpatched, so "
                f"{patch.why} is not available. Install msst=={MSST_VERSION} or a "
                f"bsmamba2-plugin release for your msst.", MsstCompatibilityWarning,
                stacklevel=3)
            return
    replacement = patch.make(current)
    if replacement is None:
        _report[key] = "deferred"
        return
    if not isinstance(replacement, type):
        setattr(replacement, _MARK, current)
    setattr(module, patch.name, replacement)
    _report[key] = "patched"


def patch_module(module: Any) -> None:
    """Apply the patches for one (just imported) msst module; idempotent."""
    patches = [p for p in PATCHES if p.module == module.__name__]
    if not patches:
        return
    _check_version()
    for patch in patches:
        _apply(module, patch)


def install() -> None:
    """Patch the msst modules already imported and hook the ones imported later."""
    from . import _msst_hook

    _msst_hook.register()
    for name in sorted(TARGET_MODULES):
        module = sys.modules.get(name)
        if module is not None:
            patch_module(module)


def patch_report() -> dict[str, str]:
    """'module.name' -> what happened, for the patches tried in this process."""
    return {f"{m}.{n}": state for (m, n), state in sorted(_report.items())}
