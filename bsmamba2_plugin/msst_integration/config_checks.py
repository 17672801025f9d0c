"""Config checks the bridge adds to msst's `load_config` (see `bridge`'s patch table).

msst ignores top-level sections it does not know, so a misspelt `loss_bsmamba2:` would
train silently with msst's default loss; these checks turn such mistakes into one-line
errors that name the file, the section or key, the closest valid name and the fix.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any

from . import plugins, training_clock

__all__ = ["MSST_SECTIONS", "PLUGIN_SECTIONS", "check_config_sections", "make_load_config"]

# Top-level config sections msst 0.1.0 reads (grep of its code: settings, dataset, losses,
# model_utils, _validation), and the ones this bridge adds for plugin types.
MSST_SECTIONS = ("audio", "model", "training", "augmentations", "inference", "optimizer",
                 "loss_multistft", "lora", "reverb", "stft", "kwargs")
PLUGIN_SECTIONS = ("loss_bsmamba2", "augmentations_bsmamba2")


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

    training = config["training"] if "training" in config else None
    effective = training["model_type"] if training is not None and "model_type" in training \
        else model_type
    if effective and effective in plugins.available():
        known = MSST_SECTIONS + PLUGIN_SECTIONS
        for name in config.keys():
            if name not in known:
                close = difflib.get_close_matches(str(name), known, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigurationError(
                    f"{source}: unknown top-level section {name!r} for model_type "
                    f"{effective!r}.{hint} Known sections: {', '.join(known)}. Fix: rename or "
                    f"remove it (msst ignores unknown sections, so it would train without it).")
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


def make_load_config(original):
    @functools.wraps(original)
    def load_config(model_type, config_path):
        config = original(model_type, config_path)
        check_config_sections(config, model_type, str(config_path))
        return config

    return load_config
