"""What msst (and anyone else) touches: the model type name and its factory.

`build_model` is the single place where an msst `model:` section is parsed; below
it, code only sees a `BSMamba2Config`. The model module is imported lazily.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import UserKeyError, UserValueError

if TYPE_CHECKING:  # pragma: no cover
    from ..network.model import BSMamba2

__all__ = ["MODEL_TYPE", "build_model", "build_msst_model", "msst_model_loader"]

MODEL_TYPE = "bsmamba2"


def build_model(model_cfg: Mapping[str, Any], path: str = "model") -> BSMamba2:
    """Build a `BSMamba2` from an msst `model:` section (dict or ConfigDict).

    Raises:
        KeyError, ValueError, TypeError: see `BSMamba2Config.from_mapping`; messages
            name the key as `<path>.<key>`.
    """
    from ..network.config import BSMamba2Config
    from ..network.model import BSMamba2

    return BSMamba2(BSMamba2Config.from_mapping(model_cfg, path=path))


def build_msst_model(config: Any, *, pretrained: bool = False) -> BSMamba2:
    """The msst entry point (`msst.models` group): build from a whole msst config.

    Args:
        config: msst's loaded config; its `model:` section is parsed.
        pretrained: msst asks for external base weights when no start checkpoint is
            given; BSMamba2 has none, so this changes nothing.
    """
    del pretrained
    if not hasattr(config, "model"):
        raise UserKeyError("model: the config has no 'model:' section; bsmamba2 reads its keys "
                           "there (see configs/config_tiny_bsmamba2.yaml).")
    model = build_model(config.model, path="model")
    training = getattr(config, "training", None)
    instruments = list(getattr(training, "instruments", None) or [])
    if instruments:
        target = training.get("target_instrument") if hasattr(training, "get") else None
        wanted = 1 if target else len(instruments)
        if model.config.num_stems != wanted:
            because = (f"training.target_instrument is {target!r}" if target else
                       f"training.target_instrument is null and training.instruments lists "
                       f"{len(instruments)} stems")
            raise UserValueError(
                f"model.num_stems is {model.config.num_stems}, but {because}, so msst trains "
                f"and scores {wanted} stem(s). Fix: set model.num_stems: {wanted}, or change "
                f"training.target_instrument.")
    return model


def msst_model_loader() -> Any:
    """msst's `get_model_from_config(model_type, config_path) -> (model, config)`.

    It builds any msst model type, msst's own (bs_roformer, ...) or a plugin's, from an
    msst YAML; `evaluation` uses it so that only this subpackage imports msst.

    Raises:
        ModuleNotFoundError: msst is not installed.
    """
    from msst.utils.settings import get_model_from_config

    return get_model_from_config
