"""Peak RSS of msst-inference (its proc_folder) or `bsmamba2 evaluate` on a long file.

    python benchmarks/rss_long_files.py msst MINUTES WORKDIR
    python benchmarks/rss_long_files.py eval MINUTES WORKDIR

(TINY_CKPT: a state dict of configs/config_tiny_bsmamba2.yaml's model; default: one with
random weights written to WORKDIR/tiny.ckpt. The msst mode also leaves WORKDIR/in/song.wav,
the input the stock `msst-inference` command is timed on, see rss_long_files.md.)

STAND_IN=1 (default) replaces BSMamba2.forward by 0.5 * x: the model sees one batch of
chunks at a time, so its memory does not grow with the file, and the run takes minutes
instead of real time on a 2-core CPU. STAND_IN=0 runs the real model.
Issue 12; results in benchmarks/results/rss_long_files.md.
"""
import json
import os
import resource
import sys

import numpy as np
import soundfile as sf

mode, minutes, work = sys.argv[1], float(sys.argv[2]), sys.argv[3]
stand_in = os.environ.get("STAND_IN", "1") == "1"
if stand_in:
    from bsmamba2_plugin.network.model import BSMamba2
    BSMamba2.forward = lambda self, x: 0.5 * x.unsqueeze(1)
cfg = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "config_tiny_bsmamba2.yaml")
os.makedirs(f"{work}/in/track", exist_ok=True)
def write(path, subtype, seed):
    rng = np.random.default_rng(seed)
    if os.path.exists(path): return
    with sf.SoundFile(path, "w", 44100, 2, subtype) as h:
        for _ in range(int(minutes * 60)):
            block = rng.standard_normal((44100, 2)) * 0.1
            h.write((block * 32767).astype(np.int16) if subtype == "PCM_16" else block.astype(np.float32))
if mode == "msst":
    write(f"{work}/in/song.wav", "PCM_16", 0)
    checkpoint = os.environ.get("TINY_CKPT") or f"{work}/tiny.ckpt"
    if not os.path.exists(checkpoint):
        import torch
        import yaml

        from bsmamba2_plugin.msst_integration.registry import build_model
        torch.save(build_model(yaml.safe_load(open(cfg))["model"]).state_dict(), checkpoint)
    import msst._inference
    msst._inference.proc_folder({"model_type": "bsmamba2", "config_path": cfg,
        "start_check_point": checkpoint, "input_folder": f"{work}/in",
        "store_dir": f"{work}/out", "force_cpu": True, "extract_instrumental": True,
        "disable_detailed_pbar": True})
else:
    write(f"{work}/in/track/mixture.wav", "FLOAT", 0)
    write(f"{work}/in/track/vocals.wav", "FLOAT", 1)
    import torch
    import yaml

    from bsmamba2_plugin.msst_integration.registry import build_model
    if not os.path.exists(f"{work}/ev.ckpt"):
        m = build_model(yaml.safe_load(open(cfg))["model"])
        torch.save({"state_dict": m.state_dict(), "meta": {"model_type": "bsmamba2"}}, f"{work}/ev.ckpt")
    from bsmamba2_plugin.cli import main
    rc = main(["evaluate", "--config", cfg, "--checkpoint", f"{work}/ev.ckpt", "--data", f"{work}/in",
               "--chunk-seconds", "1", "--out", f"{work}/report_{os.getpid()}", "--no-mixture"])
    assert rc == 0
print(json.dumps({"mode": mode, "minutes": minutes, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
