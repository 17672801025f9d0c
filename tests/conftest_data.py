"""A tiny MUSDB18HQ-layout dataset for integration tests (written with soundfile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

STEMS = ("vocals", "drums", "bass", "other")


def write_tiny_dataset(root: Path, *, train_tracks: int = 3, valid_tracks: int = 1,
                       seconds: float = 4.0, sample_rate: int = 44100, seed: int = 0) -> Path:
    """root/train/<track>/{stems,mixture}.wav and root/valid/...; vocals stop and start."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    for split, count in (("train", train_tracks), ("valid", valid_tracks)):
        for index in range(count):
            folder = root / split / f"{split} {index:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            f0 = rng.uniform(180, 400)
            gate = (np.sin(2 * np.pi * rng.uniform(0.3, 0.7) * t) > -0.2).astype(float)
            stems = {
                "vocals": 0.3 * np.sin(2 * np.pi * f0 * t) * gate,
                "drums": 0.2 * rng.standard_normal(n) * (np.sin(2 * np.pi * 4 * t) > 0.8),
                "bass": 0.3 * np.sin(2 * np.pi * rng.uniform(40, 80) * t),
                "other": 0.1 * np.sin(2 * np.pi * rng.uniform(300, 600) * t),
            }
            mixture = np.zeros((n, 2), dtype=np.float32)
            for name, mono in stems.items():
                stereo = np.stack([mono, 0.8 * mono], axis=1).astype(np.float32)
                sf.write(folder / f"{name}.wav", stereo, sample_rate, subtype="FLOAT")
                mixture += stereo
            sf.write(folder / "mixture.wav", mixture, sample_rate, subtype="FLOAT")
    return root
