"""Pieces of the msst bridge that need no msst installation."""

from __future__ import annotations

import argparse

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from bsmamba2_plugin import BSMamba2
from bsmamba2_plugin.msst_integration.bridge import PATCHES
from bsmamba2_plugin.msst_integration.ema import _restore_ema


def test_every_patch_names_a_reason_and_an_msst_module() -> None:
    for patch in PATCHES:
        assert patch.module.startswith("msst.") and patch.why


def test_ema_is_restored_from_the_file_beside_the_start_checkpoint(tmp_path, tiny_config) -> None:
    model = BSMamba2(tiny_config)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.999))
    saved = BSMamba2(tiny_config)  # other random weights
    torch.save({"model_state_dict": saved.state_dict(), "n_averaged": 17},
               tmp_path / "last_bsmamba2_ema.ckpt")
    args = argparse.Namespace(start_check_point=str(tmp_path / "last_bsmamba2.ckpt"))
    _restore_ema(ema, args)
    for name, tensor in saved.state_dict().items():
        assert torch.equal(ema.module.state_dict()[name], tensor)
    assert int(ema.n_averaged) == 17


def test_missing_ema_file_on_resume_is_warned_about(tmp_path, tiny_config) -> None:
    ema = AveragedModel(BSMamba2(tiny_config), multi_avg_fn=get_ema_multi_avg_fn(0.999))
    args = argparse.Namespace(start_check_point=str(tmp_path / "model.ckpt"))
    with pytest.warns(UserWarning, match="EMA restarts"):
        _restore_ema(ema, args)
