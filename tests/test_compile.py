"""torch.compile sees the model as one graph: the execution plan's backend choice is a
constant of the graph (it used to be traced, and its log call split the model into 5
graphs in training and 6 in eval). Eval keeps one break, at the input's finiteness check,
before any work. (Reference backend on the CPU; the kernel path is measured on a GPU by
`bsmamba2 bench --models bsmamba2-selective+compile`.)"""

from __future__ import annotations

import pytest
import torch

from bsmamba2_plugin.network.model import BSMamba2


def _explain(model, mixture):
    import torch._dynamo as dynamo

    dynamo.reset()
    return dynamo.explain(model)(mixture)


@pytest.mark.parametrize("checkpointing", [False, "selective"])
def test_training_forward_compiles_to_one_graph(checkpointing) -> None:
    model = BSMamba2(dim=16, depth=1, stereo=True, num_stems=1, stft_hop_length=441,
                     gradient_checkpointing=checkpointing).train()
    report = _explain(model, torch.randn(1, 2, 22050))
    assert report.graph_break_count == 0, [str(b.reason)[:200] for b in report.break_reasons]
    assert report.graph_count == 1


def test_inference_breaks_only_at_the_input_check() -> None:
    model = BSMamba2(dim=16, depth=1, stereo=True, num_stems=1, stft_hop_length=441).eval()
    with torch.no_grad():
        report = _explain(model, torch.randn(1, 2, 22050))
    places = [(frame.name, frame.filename.rsplit("/", 1)[-1])
              for b in report.break_reasons for frame in b.user_stack[-1:]]
    assert places == [("_check_input", "model.py")]
    assert report.graph_count == 2


def test_the_backend_choice_still_runs_once_and_is_logged_outside_compile(caplog) -> None:
    """assume_constant_result changes nothing in eager mode: the answer and its log line."""
    from bsmamba2_plugin.network import ssd

    ssd._decided.cache_clear()
    with caplog.at_level("INFO", logger=ssd.logger.name):
        assert ssd.resolve_backend("auto", "cpu") == "reference"
        assert ssd.resolve_backend("auto", torch.device("cpu")) == "reference"
    assert [r.getMessage() for r in caplog.records].count(
        "bsmamba2: using the reference Mamba2 backend (tensors are on 'cpu'; the mamba_ssm "
        "kernels need CUDA).") == 1
