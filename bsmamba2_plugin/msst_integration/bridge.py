"""Everything the plugin changes inside msst, in one place. Written for msst 0.1.0.

msst 0.1.0 has no plugin mechanism (docs/msst_integration.md). These patches give it
one, fix its CPU training bug, and add the BSMamba2 recipe, without editing msst:

| module | name | change |
|---|---|---|
| msst.utils.settings | build_model_from_config | model types from `plugins` (entry points), honouring `training.model_type`; unknown types list what is installed |
| msst.utils.settings | load_config | plugin types: an unknown top-level section is an error with "did you mean" (msst ignores it); for any type, the keys of the plugin's own sections are checked; errors name the config file |
| msst.utils.settings | optional_dependency_error | msst's "'bs_mamba2' model requires ... 'mamba_ssm'" error gains a note that `bsmamba2` is the portable type (same type and fields otherwise) |
| msst._training, msst._train_accelerate | parse_args_train | remember the user's `--seed` (msst seeds DDP and accelerate runs with seed + time) for the paper recipe's draws |
| msst.utils.model_utils, msst._training | initialize_model_and_device | return `torch.device('cpu')`, not the string 'cpu' msst returns (it crashes training at `device.type`) |
| msst._training, msst._train_accelerate | compute_training_loss | plugin types: optional on-device batch augmentation, bf16/fp16 autocast by `training.autocast_dtype`, the paper loss when the config has `loss_bsmamba2:` (unless `--use_standard_loss`) |
| msst.utils.dataset, msst._train_accelerate | MSSDataset | `dataset.BSMamba2Dataset`: every model type: stem files at another sample rate, of mixed channel counts or cut short are refused at the start, listed; the paper's stem sampling when the config has `augmentations_bsmamba2:` |
| msst._training | log_epoch_history | plugin types: stems that validation did not score are left out of `training_history.jsonl` (msst averaged their empty lists: RuntimeWarnings and NaN) |
| msst._training, _validation, _valid_ddp, _inference, _train_accelerate, utils.model_utils | torch | a `safe_load.TorchView`: `torch.load` of checkpoints is weights-only (or .safetensors, or a pickle the user trusts by path) and `torch.save` is atomic and refuses NaN weights, for plugin types (msst's own: with BSMAMBA2_SAFE_CHECKPOINTS_ALL=1) |
| msst.preflight | check | the same weights-only loading for `msst-check` (it imports torch locally) |
| msst.utils.model_utils, _validation, _inference, _valid_ddp, _train_accelerate | load_start_checkpoint | plugin types: one message for a checkpoint that does not fit the config (valid/inference); a full resume from a `last_<type>.ckpt` with a resume block (training); training refuses to resume from a file of EMA weights (it would train the average as raw weights) and names the raw file |
| msst._training | train_one_epoch, compute_training_loss, save_last_weights | plugin types: RNG state saved in `last_<type>.ckpt` and restored per epoch; NaN/Inf losses skipped and counted, `training.max_nonfinite_steps` in a row stop training |
| msst.utils.model_utils, msst._validation, msst._train_accelerate | demix | plugin types: `streaming.demix_streaming`, msst's algorithm without full-length copies and without zeroed chunk edges; every model type (but htdemucs) with `inference.num_overlap: 1`: the paper's non-overlapping protocol (msst's fade window wrote 0 at every chunk boundary) |
| msst.utils.model_utils, msst._inference | bigshifts_wrapper | plugin types, `--bigshifts 1`: straight to the streamed demix (msst copies input and output) |
| msst._inference | separate_audio | plugin types without TTA or `inference.normalize`: no copies of the input (long files, issue 12) |
| msst._training | train_one_epoch, compute_epoch_metrics, valid_multi_gpu, save_last_weights | with `training.ema_momentum` and `training.use_ema_weights` (default: on for plugin types, off for msst's own): validate and select checkpoints on the EMA weights (msst updates its EMA but never uses it), write `last_<type>_ema.ckpt`, restore the EMA on resume; write `best_<type>.ckpt` (the validation-selected weights) whenever the metric improves; tell the dataset the epoch |
| msst._training | compute_training_loss, train_one_epoch | every model type (`training_clock`): step times logged per epoch and appended to `<results>/train_timing.jsonl`; `training.time_budget_seconds` stops training after that much step time (equal-time comparisons): the epochs left in msst's loop are empty (its train_one_epoch, save_last_weights, valid_multi_gpu and compute_epoch_metrics return at once) |
| msst._train_accelerate | valid | the accelerate launcher has no train_one_epoch: advance the dataset's epoch after each validation |

Patches are idempotent and applied when each module is first imported (`hook`,
loaded from a .pth file, so stock `msst-*` commands, the Python API, DataLoader workers
and DDP ranks all get them) or by `install()` for modules already imported; the modules
are `import_hooks.PATCHED_MODULES`, the one list the hook and this table share. Each
factory is called as `make(original, run)` with the process's `run_state.RunState`, the
only state the patches share. Before
patching, each function's parameters are compared with those of msst 0.1.0; a function
whose shape changed is left alone with an `MsstCompatibilityWarning` naming it, and
another msst version is warned about once. Built-in msst model types keep msst's
behaviour everywhere except the CPU device fix, the step timing (and the time budget
when a config sets one), `num_overlap: 1` without zeroed chunk edges, the check of the
training files, and the EMA use they opt into with
`training.use_ema_weights: true` (the BS-RoFormer baseline configs do, for a fair
comparison).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import inspect
import sys
import warnings
from collections.abc import Callable
from typing import Any

from . import (
    ema,
    import_hooks,
    plugins,
    run_safety,
    run_state,
    safe_load,
    streaming,
    training_clock,
)
from .common import (
    DATASET_MODULE,
    cfg_get,
    ensure_console,
    first_rank,
    is_plugin_type,
    logger,
)
from .config_checks import MSST_SECTIONS, PLUGIN_SECTIONS, check_config_sections, make_load_config
from .run_state import RunState

__all__ = ["MSST_SECTIONS", "MSST_VERSION", "PATCHES", "PLUGIN_SECTIONS", "TARGET_MODULES",
           "MsstCompatibilityWarning", "check_config_sections", "doctor_rows", "hook_problem",
           "install", "patch_module", "patch_report"]


MSST_VERSION = "0.1.0"
_MARK = "__bsmamba2_original__"


class MsstCompatibilityWarning(UserWarning):
    """msst differs from the version the plugin's patches were written for."""


@dataclasses.dataclass(frozen=True)
class Patch:
    module: str
    name: str
    parameters: tuple[str, ...]  # parameter names of the msst 0.1.0 original (class: ())
    make: Callable[[Any, RunState], Any]  # (original, the process's run state) -> replacement
    why: str


# --------------------------------------------------------------- model build
def _make_build_model_from_config(original, run: RunState):
    @functools.wraps(original)
    def build_model_from_config(model_type, config, *, pretrained=False):
        from msst.errors import ConfigurationError

        effective = model_type
        if hasattr(config, "training") and "model_type" in config.training:
            effective = config.training.model_type
        factory = plugins.get_factory(effective)
        run.note_model(effective, is_plugin=factory is not None)
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


# What msst's bs_mamba2 imports at module level (mamba_ssm and its own dependencies).
_MAMBA_MODULES = frozenset({"mamba_ssm", "causal_conv1d", "triton", "selective_scan_cuda"})
BS_MAMBA2_HINT = (
    "Note: msst's 'bs_mamba2' needs mamba_ssm, which needs a CUDA GPU and installs only on "
    "Linux x86_64. The bsmamba2-plugin installed here provides the model type 'bsmamba2': "
    "the same BSMamba2 in pure PyTorch, for CPU, Mac or any GPU. Fix: use --model_type "
    "bsmamba2 (Python: model_type=\"bsmamba2\"; training.model_type too where the config "
    "sets it); a bs_mamba2 config's model: keys work unchanged, and `bsmamba2 "
    "convert-checkpoint IN OUT --config YAML` converts bs_mamba2 checkpoints.")


def _make_optional_dependency_error(original, run: RunState):
    @functools.wraps(original)
    def optional_dependency_error(error, *, extra, feature):
        result = original(error, extra=extra, feature=feature)
        # msst's get_model_from_config passes extra = the effective type, '_' -> '-'
        root = (getattr(error, "name", None) or "").split(".")[0]
        if extra == "bs-mamba2" and root in _MAMBA_MODULES:
            text = str(result)
            message = f"{text}{'' if text.endswith('.') else '.'} {BS_MAMBA2_HINT}"
            result.args = (message,)
            result.msg = message  # what str() of an ImportError shows
        return result

    return optional_dependency_error


def _make_initialize_model_and_device(original, run: RunState):
    @functools.wraps(original)
    def initialize_model_and_device(model, device_ids):
        import torch

        device, model = original(model, device_ids)
        return torch.device(device) if isinstance(device, str) else device, model

    return initialize_model_and_device


def _make_parse_args_train(original, run: RunState):
    @functools.wraps(original)
    def parse_args_train(dict_args):
        args = original(dict_args)
        run.seed = int(args.seed)  # the dataset's draws use it (see dataset.py)
        return args

    return parse_args_train


# --------------------------------------------------------------------- loss
def _build_step_setup(config: Any) -> tuple[Any, Any, Any]:
    """(paper loss or None, batch augment or None, autocast dtype) for one config; the
    loss wrapper builds it once per config object (`RunState.per_config`)."""
    import torch

    from ..training.augment import AugmentConfig, build_batch_augment
    from ..training.losses import PaperLossConfig, build_loss

    loss = None
    if "loss_bsmamba2" in config:
        loss = build_loss(PaperLossConfig.from_mapping(config["loss_bsmamba2"]))
    augment = None
    if "augmentations_bsmamba2" in config:
        aug = AugmentConfig.from_mapping(config["augmentations_bsmamba2"])
        if aug.batch and cfg_get(config.training, "target_instrument") is not None:
            raise ValueError(
                "augmentations_bsmamba2.batch augments every stem and rebuilds the mixture, "
                "so the targets must be all stems; training.target_instrument is set. Fix: "
                "remove the batch list or set training.target_instrument to null.")
        augment = build_batch_augment(aug.batch, int(cfg_get(config.audio, "sample_rate", 44100)))
    name = str(cfg_get(config.training, "autocast_dtype", "float16"))
    dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in dtypes:
        raise ValueError(f"training.autocast_dtype: expected float16 or bfloat16, got {name!r}.")
    return loss, augment, dtypes[name]


def _make_compute_training_loss(original, run: RunState):
    @functools.wraps(original)
    def compute_training_loss(model, config, args, data, device, device_ids, multi_loss,
                              use_amp):
        training_clock.tick(run.clock, config, device)  # timing and budget, every type
        if not is_plugin_type(args.model_type):
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
        if cfg_get(config.training, "normalize", False):
            x, y = normalize_batch(x, y)
        paper_loss, augment, amp_dtype = run.per_config(run.step_setups, config,
                                                        _build_step_setup)
        run.per_config(run.announced, config, lambda _: _announce_setup(
            config, args, device, use_amp, amp_dtype,
            paper_loss is not None and not args.use_standard_loss))
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
        limit = int(cfg_get(config.training, "max_nonfinite_steps",
                             run_safety.DEFAULT_MAX_NONFINITE_STEPS))
        # msst's enabled GradScaler (use_amp on CUDA) skips a NaN step itself: there the
        # check waits until msst has read the loss (no stall between forward and backward),
        # under msst's train_one_epoch, whose wrapper settles the last one (clock.managed)
        scaler_skips = bool(use_amp and device.type == "cuda")
        if not run_safety.check_loss(run.nonfinite, loss, limit,
                                     deferred=scaler_skips and run.clock.managed):
            # skip the step: a loss with no path to the weights leaves their .grad None,
            # which the optimizer skips
            loss = torch.zeros((), device=device, requires_grad=True) * 1.0
        return loss, active_stem_mask

    return compute_training_loss


def _announce_setup(config: Any, args: Any, device: Any, use_amp: bool, amp_dtype: Any,
                    uses_paper_loss: bool) -> None:
    """State in msst's log (once per run: the loss wrapper calls this once per config) which
    loss, data recipe, EMA and precision run."""
    if not first_rank():
        return
    ensure_console()
    logger.info("bsmamba2 training setup: %s", "; ".join(
        _describe_setup(config, args, device, use_amp, amp_dtype, uses_paper_loss)))


def _describe_setup(config: Any, args: Any, device: Any, use_amp: bool, amp_dtype: Any,
                    uses_paper_loss: bool) -> list[str]:
    from ..training.augment import AugmentConfig
    from ..training.losses import PaperLossConfig

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
        losses = " ".join(getattr(args, "loss", None) or ["(msst's default)"])
        parts.append(f"loss: msst's --loss {losses} ({why})")
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
    if msst_aug is not None and cfg_get(msst_aug, "enable", False):
        text += " + msst augmentations"
    parts.append(text)
    momentum = cfg_get(config.training, "ema_momentum", None)
    if momentum and momentum > 0 and ema.uses_ema_weights(config, args.model_type):
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


def _make_log_epoch_history(original, run: RunState):
    """Plugin types: leave the stems validation did not score (those other than
    `training.target_instrument`: msst lists them with no values) out of the epoch record,
    instead of numpy's mean of an empty list (five RuntimeWarnings, NaN rows)."""
    @functools.wraps(original)
    def log_epoch_history(args, epoch, optimizer, scheduler, best_metric, metrics_avg,
                          all_metrics, all_losses):
        if is_plugin_type(args.model_type) and isinstance(all_metrics, dict):
            all_metrics = {metric: {stem: values for stem, values in stems.items()
                                    if not hasattr(values, "__len__") or len(values)}
                           if isinstance(stems, dict) else stems
                           for metric, stems in all_metrics.items()}
        return original(args, epoch, optimizer, scheduler, best_metric, metrics_avg,
                        all_metrics, all_losses)

    return log_epoch_history


# --------------------------------------------------------------------- data
def _make_dataset(original, run: RunState):
    ours = sys.modules.get(DATASET_MODULE)
    if ours is not None and not hasattr(ours, "BSMamba2Dataset"):
        # msst.utils.dataset is being imported *by* dataset.py (in a DataLoader worker,
        # unpickling our dataset): dataset.py runs this when it is complete.
        run.defer(DATASET_MODULE, _finish_dataset_patch)
        return None
    from .dataset import BSMamba2Dataset

    if not issubclass(BSMamba2Dataset, original):
        raise TypeError("bsmamba2: msst.utils.dataset.MSSDataset is not the class "
                        "BSMamba2Dataset extends; was msst reloaded?")
    return BSMamba2Dataset


def _finish_dataset_patch() -> None:
    """Complete the MSSDataset patch deferred while dataset.py was loading.

    Only msst.utils.dataset can be waiting: by-value copies elsewhere (the accelerate
    launcher) are made when those modules import it, and the startup hook patches them.
    """
    patch_module(sys.modules["msst.utils.dataset"])


# -------------------------------------------------------------------- table
_DEMIX = ("config", "model", "mix", "device", "model_type", "pbar")
PATCHES: tuple[Patch, ...] = (
    Patch("msst.utils.settings", "build_model_from_config",
          ("model_type", "config", "pretrained"), _make_build_model_from_config,
          "model types from entry-point plugins"),
    Patch("msst.utils.settings", "optional_dependency_error", ("error", "extra", "feature"),
          _make_optional_dependency_error, "bs_mamba2 without mamba_ssm: point to bsmamba2"),
    Patch("msst.utils.settings", "load_config", ("model_type", "config_path"),
          make_load_config, "misspelt config sections and plugin keys are errors"),
    Patch("msst._training", "parse_args_train", ("dict_args",), _make_parse_args_train,
          "remember the user's --seed"),
    Patch("msst._train_accelerate", "parse_args_train", ("dict_args",),
          _make_parse_args_train, "by-value copy for the accelerate launcher"),
    Patch("msst._train_accelerate", "valid",
          ("model", "valid_loader", "args", "config", "device", "verbose"),
          ema.make_accelerate_valid, "advance the dataset epoch (accelerate launcher)"),
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
    Patch("msst._training", "log_epoch_history",
          ("args", "epoch", "optimizer", "scheduler", "best_metric", "metrics_avg",
           "all_metrics", "all_losses"), _make_log_epoch_history,
          "no empty per-stem lists in training_history.jsonl"),
    Patch("msst.utils.dataset", "MSSDataset", (), _make_dataset, "paper stem sampling"),
    Patch("msst._train_accelerate", "MSSDataset", (), _make_dataset, "by-value copy"),
    Patch("msst._training", "train_one_epoch",
          ("model", "config", "args", "optimizer", "device", "device_ids", "epoch", "use_amp",
           "scaler", "scheduler", "gradient_accumulation_steps", "train_loader", "multi_loss",
           "all_losses", "world_size", "ema_model", "safe_mode"),
          ema.make_train_one_epoch, "remember msst's EMA model; tell the dataset the epoch"),
    Patch("msst._training", "compute_epoch_metrics",
          ("model", "args", "config", "device", "device_ids", "best_metric", "epoch",
           "scheduler", "optimizer", "all_time_all_metrics", "all_losses", "world_size",
           "metrics_avg", "all_metrics"),
          ema.make_compute_epoch_metrics,
          "validate and keep the EMA weights; write best_<type>.ckpt"),
    Patch("msst._training", "valid_multi_gpu",
          ("model", "args", "config", "device_ids", "verbose"), ema.make_valid_multi_gpu,
          "DDP validation on the EMA weights"),
    Patch("msst._training", "save_last_weights",
          ("args", "model", "device_ids", "optimizer", "epoch", "all_time_all_metrics",
           "all_losses", "best_metric", "scheduler"),
          ema.make_save_last_weights, "also write last_<type>_ema.ckpt"),
    *(Patch(module, "demix", _DEMIX, streaming.make_demix, "streamed demix for plugin types")
      for module in ("msst.utils.model_utils", "msst._validation", "msst._train_accelerate")),
    *(Patch(module, "bigshifts_wrapper", _DEMIX + ("bigshifts",),
            streaming.make_bigshifts_wrapper, "no copies with --bigshifts 1")
      for module in ("msst.utils.model_utils", "msst._inference")),
    Patch("msst._inference", "separate_audio",
          ("model", "args", "config", "device", "mix", "detailed_progress"),
          streaming.make_separate_audio, "no input copies for plugin types"),
)
# issue 12: every msst module that torch.load()s a --start_check_point or torch.save()s a
# checkpoint sees a guarded `torch` (safe_load.TorchView); the loaders check fit and resume
_TORCH_USERS = ("msst._training", "msst._validation", "msst._valid_ddp", "msst._inference",
                "msst._train_accelerate", "msst.utils.model_utils")
_LOADER_COPIES = ("msst.utils.model_utils", "msst._validation", "msst._inference",
                  "msst._valid_ddp", "msst._train_accelerate")
PATCHES += tuple(Patch(m, "torch", (), safe_load.torch_view_for(m),
                       "weights-only --start_check_point, atomic checkpoint writes")
                 for m in _TORCH_USERS)
_TRAIN_LOADERS = ("msst.utils.model_utils", "msst._train_accelerate")  # used by msst-train


def _make_load_start_checkpoint(original, run: RunState):
    """Fit message and full resume (`run_safety`); where training loads, first the refusal
    of EMA weights as a start checkpoint (`ema`)."""
    return run_safety.make_load_start_checkpoint(original, run)


def _make_train_load_start_checkpoint(original, run: RunState):
    return ema.make_load_start_checkpoint(run_safety.make_load_start_checkpoint(original, run),
                                          run)


PATCHES += tuple(Patch(m, "load_start_checkpoint", ("args", "model", "old_model", "type_"),
                       _make_train_load_start_checkpoint if m in _TRAIN_LOADERS
                       else _make_load_start_checkpoint,
                       "checkpoint fit message; full resume from last_<type>.ckpt; "
                       "no resume from EMA weights")
                 for m in _LOADER_COPIES)
PATCHES += (Patch("msst.preflight", "check",
                  ("config_path", "data_path", "results_path", "valid_path", "model_type",
                   "checkpoint_path", "device_ids", "dataset_type", "mode", "memory_headroom",
                   "options"), safe_load.make_scoped_check,
                  "msst-check: weights-only checkpoint loading (it imports torch locally)"),)
TARGET_MODULES = import_hooks.PATCHED_MODULES  # = the modules in PATCHES (a test checks)


def _check_version(run: RunState) -> None:
    if run.msst_version_checked:
        return
    run.msst_version_checked = True
    try:
        found = importlib.metadata.version("msst")
    except importlib.metadata.PackageNotFoundError:
        return
    if found != MSST_VERSION:
        warnings.warn(
            f"bsmamba2-plugin patches msst {MSST_VERSION}; msst {found} is installed. Each "
            f"patched function is checked and skipped if its parameters changed; run "
            f"`bsmamba2 doctor` to see which apply.", MsstCompatibilityWarning, stacklevel=3)


def _apply(module: Any, patch: Patch, run: RunState) -> None:
    key, report = (patch.module, patch.name), run.patch_report
    current = getattr(module, patch.name, None)
    if current is None:
        report[key] = "missing in this msst: not patched"
        warnings.warn(f"bsmamba2: {patch.module}.{patch.name} does not exist in this msst; "
                      f"not patched ({patch.why}).", MsstCompatibilityWarning, stacklevel=3)
        return
    if getattr(current, _MARK, None) is not None or (
            isinstance(current, type) and current.__module__ == DATASET_MODULE):
        report[key] = "patched"
        return
    if patch.parameters:
        found = tuple(inspect.signature(current).parameters)
        if found != patch.parameters:
            report[key] = f"NOT patched: parameters {found} differ from msst {MSST_VERSION}"
            warnings.warn(
                f"bsmamba2: {patch.module}.{patch.name} has parameters {found}, not those of "
                f"msst {MSST_VERSION} {patch.parameters}; it is left unpatched, so "
                f"{patch.why} is not available. Install msst=={MSST_VERSION} or a "
                f"bsmamba2-plugin release for your msst.", MsstCompatibilityWarning,
                stacklevel=3)
            return
    replacement = patch.make(current, run)
    if replacement is None:
        report[key] = "deferred"
        return
    if not isinstance(replacement, type):
        setattr(replacement, _MARK, current)
    setattr(module, patch.name, replacement)
    report[key] = "patched"


def patch_module(module: Any) -> None:
    """Apply the patches for one (just imported) msst module; idempotent."""
    patches = [p for p in PATCHES if p.module == module.__name__]
    if not patches:
        return
    run = run_state.current()
    _check_version(run)
    for patch in patches:
        _apply(module, patch, run)


def install() -> None:
    """Patch the msst modules already imported and hook the ones imported later."""
    import_hooks.register(TARGET_MODULES, patch_module)
    for name in sorted(TARGET_MODULES):
        module = sys.modules.get(name)
        if module is not None:
            patch_module(module)


def patch_report() -> dict[str, str]:
    """'module.name' -> what happened, for the patches tried in this process."""
    return {f"{m}.{n}": state
            for (m, n), state in sorted(run_state.current().patch_report.items())}


def _hook_active() -> bool:
    return any(type(f).__name__ == "MsstPatchFinder" for f in sys.meta_path)


def _hook_disabled() -> bool:
    import os

    return os.environ.get("BSMAMBA2_MSST_HOOK", "1") == "0"


def hook_problem() -> str | None:
    """Why msst's own commands would not know the plugin's model types here, with the fix;
    None when the startup hook is active or msst is not installed."""
    import importlib.util

    if _hook_active() or importlib.util.find_spec("msst") is None:
        return None
    effect = ("msst-train, msst-valid and msst-inference started from this environment "
              "answer 'Unknown model type: bsmamba2'")
    if _hook_disabled():
        return (f"the msst startup hook is off because BSMAMBA2_MSST_HOOK=0 is set, so "
                f"{effect}. Fix: unset BSMAMBA2_MSST_HOOK (from Python, or call "
                f"bsmamba2_plugin.msst_integration.bridge.install() before using msst).")
    return (f"the msst startup hook (bsmamba2_plugin_msst.pth in site-packages) was not "
            f"loaded when Python started, so {effect}. Fix: {sys.executable} -m pip install "
            f"--force-reinstall --no-deps bsmamba2-plugin (from a checkout: -e .).")


def doctor_rows() -> list[tuple[str, str]]:
    """`bsmamba2 doctor`'s msst lines: plugin types, the startup hook, each patch's state.

    Imports the msst modules the patches target (when msst is installed) and `install()`s.
    """
    import importlib
    import importlib.util

    found = ", ".join(f"{n} ({p.distribution})" for n, p in sorted(plugins.available().items()))
    rows = [("msst plugin types", found or "none")]
    for name in sorted(plugins.available()):
        try:
            plugins.get_factory(name)
        except ImportError as error:
            rows.append((f"plugin {name}", f"BROKEN: {error}"))
    hooked = _hook_active()
    rows.append(("msst startup hook", "active" if hooked else
                 "NOT active (disabled by BSMAMBA2_MSST_HOOK=0)" if _hook_disabled() else
                 "NOT active (bsmamba2_plugin_msst.pth not loaded; reinstall the package)"))
    if importlib.util.find_spec("msst") is None:
        return rows
    for name in sorted(TARGET_MODULES):
        try:
            importlib.import_module(name)
        except ImportError as error:  # e.g. msst._train_accelerate without accelerate
            rows.append((name, f"not importable here ({error.name or error}); not patched"))
        except OSError as error:  # a compiled dependency (torchaudio) that cannot load
            rows.append((name, f"not importable here ({error}); not patched"))
    install()
    rows.extend((f"patch {key}", state) for key, state in patch_report().items())
    return rows
