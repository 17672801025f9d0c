"""Config checks the bridge adds to msst's `load_config` (see `bridge`'s patch table),
and the YAML reading of our own commands.

msst ignores top-level sections it does not know, so a misspelt `loss_bsmamba2:` would
train silently with msst's default loss; these checks turn such mistakes into one-line
errors that name the file, the section or key, the closest valid name and the fix.
`bsmamba2 summary --config` runs the same section check (`unknown_section`), and every
`bsmamba2` command reads YAML through `load_msst_yaml`, whose syntax errors are one line.
"""

from __future__ import annotations

import difflib
import functools
import os
from typing import Any

from ..errors import UserFileNotFoundError, UserValueError
from . import plugins, training_clock

__all__ = ["MSST_SECTIONS", "PLUGIN_SECTIONS", "check_config_sections", "load_msst_yaml",
           "make_load_config", "unknown_section"]

# Top-level config sections msst 0.1.0 reads (grep of its code: settings, dataset, losses,
# model_utils, _validation), and the ones this bridge adds for plugin types.
MSST_SECTIONS = ("audio", "model", "training", "augmentations", "inference", "optimizer",
                 "loss_multistft", "lora", "reverb", "stft", "kwargs")
PLUGIN_SECTIONS = ("loss_bsmamba2", "augmentations_bsmamba2")


def load_msst_yaml(path: str | os.PathLike, flag: str = "--config", *,
                   require_model: bool = True) -> dict:
    """An msst YAML as a dict, read as msst reads it (FullLoader: `!!python/tuple` allowed).

    Raises:
        FileNotFoundError: no such file (the message names `flag`).
        ValueError: not valid YAML (the line and column), or not a mapping (with a `model:`
            mapping unless `require_model` is false: msst's htdemucs configs have none).
    """
    import yaml

    if not os.path.isfile(path):
        raise UserFileNotFoundError(f"{flag}: no such file: {os.fspath(path)}")
    try:
        with open(path, encoding="utf-8") as handle:
            config = yaml.load(handle, Loader=yaml.FullLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UserValueError(f"{os.fspath(path)}: not valid YAML ({where}{problem}). Fix: "
                             f"correct the file there (an unclosed bracket or quote, a missing "
                             f"colon, a tab instead of spaces).") from error
    except UnicodeDecodeError as error:
        raise UserValueError(f"{os.fspath(path)}: not a text file ({error.reason}). Fix: pass "
                             f"the msst YAML config, e.g. configs/config_tiny_bsmamba2.yaml."
                             ) from error
    if not isinstance(config, dict) or (require_model and not isinstance(config.get("model"),
                                                                          dict)):
        raise UserValueError(f"{os.fspath(path)}: expected an msst config with a 'model:' "
                             f"mapping. Fix: point {flag} at a YAML such as "
                             f"configs/config_tiny_bsmamba2.yaml.")
    return config


def unknown_section(config: Any, model_type: str, source: str) -> str | None:
    """The message for a top-level section msst would silently ignore in a config for a
    plugin model type (`training.model_type` overrides `model_type`, as in msst), or None."""
    training = config["training"] if "training" in config else None
    effective = training["model_type"] if training is not None and "model_type" in training \
        else model_type
    if not (effective and effective in plugins.available()):
        return None
    known = MSST_SECTIONS + PLUGIN_SECTIONS
    for name in config.keys():
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            return (f"{source}: unknown top-level section {name!r} for model_type "
                    f"{effective!r}.{hint} Known sections: {', '.join(known)}. Fix: rename or "
                    f"remove it (msst ignores unknown sections, so it would train without it).")
    return None


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

    from ..training.augment import AugmentConfig
    from ..training.losses import PaperLossConfig

    problem = unknown_section(config, model_type, source)
    if problem:
        raise ConfigurationError(problem)
    training = config["training"] if "training" in config else None
    if training is not None and training_clock.BUDGET_KEY in training:
        try:
            training_clock.check_budget_value(training[training_clock.BUDGET_KEY], source)
        except ValueError as error:
            raise ConfigurationError(str(error)) from error
    parsers = {"loss_bsmamba2": PaperLossConfig, "augmentations_bsmamba2": AugmentConfig}
    for name, parser in parsers.items():
        if name in config:
            try:
                parser.from_mapping(config[name], path=name)
            except (KeyError, TypeError, ValueError) as error:
                detail = error.args[0] if isinstance(error, KeyError) and error.args \
                    else str(error)
                raise ConfigurationError(f"{source}: {detail}") from error


def make_load_config(original, run):
    @functools.wraps(original)
    def load_config(model_type, config_path):
        config = original(model_type, config_path)
        check_config_sections(config, model_type, str(config_path))
        return config

    return load_config
