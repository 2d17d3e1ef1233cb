"""CLAP backends: a tiny transformers ClapModel written and loaded offline, and laion_clap for real
(CLAP_Module with a RoBERTa built offline, load_ckpt on a checkpoint written from its own weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from asdflow.errors import ConfigError
from asdflow.prompts.clap import (
    ClapScorer,
    LaionClapScorer,
    TransformersClapScorer,
    load_clap_scorers,
    mean_similarity_matrix,
    tiny_clap,
)
from asdflow.prompts.config import PromptConfig

TEXTS = ["The normal condition machine sound of fan.", "A loud, high-pitched pump.", "x"]


def waves(sr: int, n: int = 3, seconds: float = 1.0) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(sr * seconds)) / sr
    return [(0.3 * np.sin(2 * np.pi * (200 + 300 * i) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
            for i in range(n)]


def test_tiny_transformers_clap_loads_from_disk_through_the_product_loader(tiny_clap_dir):
    config = PromptConfig(clap={"checkpoints": [{"name": "disk", "backend": "transformers", "path": str(tiny_clap_dir)}],
                                "batch_size": 2})
    [loaded] = load_clap_scorers(config)
    memory = tiny_clap(seed=0)
    assert isinstance(loaded, TransformersClapScorer) and isinstance(loaded, ClapScorer) and loaded.name == "disk"
    audio = loaded.embed_audio(waves(16000), 16000)
    text = loaded.embed_text(TEXTS)
    assert audio.shape == (3, 8) and text.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(audio, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, rtol=1e-5)
    # the same seed in memory: the same weights, so the same embeddings (batching does not change them)
    np.testing.assert_allclose(memory.embed_audio(waves(16000), 16000), audio, atol=1e-5)
    np.testing.assert_allclose(memory.embed_text(TEXTS), text, atol=1e-5)
    sims = loaded.similarity(waves(16000), 16000, TEXTS)
    np.testing.assert_allclose(sims, np.sum(audio * text, axis=1), atol=1e-5)
    assert not np.allclose(tiny_clap(seed=1).embed_text(TEXTS), text), "another seed, other weights"


def test_audio_is_resampled_to_the_models_rate_and_cut_at_max_seconds():
    scorer = tiny_clap(seed=0, max_seconds=1.0)
    at_16k = waves(16000, n=1)
    at_8k = [w[::2].copy() for w in at_16k]
    assert scorer.prepare(at_8k[0], 8000).shape == (16000,)
    long = np.concatenate([at_16k[0], np.random.default_rng(1).standard_normal(16000).astype(np.float32)])
    np.testing.assert_allclose(scorer.embed_audio([long], 16000), scorer.embed_audio(at_16k, 16000), atol=1e-6)


def test_mean_similarity_averages_over_checkpoints():
    scorers = [tiny_clap(seed=0), tiny_clap(seed=1)]
    audio = waves(16000, n=2)
    each = [s.embed_audio(audio, 16000) @ s.embed_text(TEXTS).T for s in scorers]
    np.testing.assert_allclose(mean_similarity_matrix(scorers, audio, 16000, TEXTS), (each[0] + each[1]) / 2,
                               atol=1e-6)


def test_missing_checkpoints_are_refused_with_their_path(tmp_path):
    missing = tmp_path / "630k-best.pt"
    with pytest.raises(ConfigError, match=r"CLAP checkpoint not found: .*630k-best\.pt .*checkpoints\[0\]"):
        load_clap_scorers(PromptConfig())  # the defaults point at models/clap/*.pt, absent here
    with pytest.raises(ConfigError, match="630k-best.pt"):
        load_clap_scorers(PromptConfig(clap={"checkpoints": [{"name": "a", "path": str(missing)}]}))
    with pytest.raises(ConfigError, match="not found: ./no-such-dir"):
        load_clap_scorers(PromptConfig(clap={"checkpoints": [{"name": "t", "backend": "transformers",
                                                               "path": "./no-such-dir"}]}))


def released_layout_checkpoint(module, path: Path) -> Path:
    """A checkpoint shaped like 630k-best.pt: {"state_dict": {"module.<key>": ...}} with the text position ids
    that laion_clap's loader deletes (transformers >= 4.31 no longer keeps them)."""
    state = {f"module.{k}": v.clone() for k, v in module.model.state_dict().items()}
    state["module.text_branch.embeddings.position_ids"] = torch.arange(80).unsqueeze(0)
    torch.save({"epoch": 45, "state_dict": state}, path)
    return path


def test_laion_clap_module_loads_a_checkpoint_and_embeds(tiny_roberta_dir, tmp_path):
    torch.manual_seed(1)
    original = LaionClapScorer(LaionClapScorer.build_module("HTSAT-tiny", roberta_dir=tiny_roberta_dir), name="orig")
    ckpt = released_layout_checkpoint(original.module, tmp_path / "630k-best.pt")
    config = PromptConfig(clap={"checkpoints": [{"name": "630k-best", "backend": "laion_clap", "path": str(ckpt)}],
                                "roberta_dir": str(tiny_roberta_dir), "batch_size": 2})
    torch.manual_seed(2)  # other random weights before load_ckpt: equal embeddings prove the file was loaded
    [loaded] = load_clap_scorers(config)
    assert isinstance(loaded, LaionClapScorer) and loaded.sample_rate == 48000
    audio = waves(16000, n=2)
    emb = loaded.embed_audio(audio, 16000)
    assert emb.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(emb, original.embed_audio(audio, 16000), atol=1e-5)
    text = loaded.embed_text(TEXTS)
    assert text.shape == (3, 512)
    np.testing.assert_allclose(text, original.embed_text(TEXTS), atol=1e-5)
    assert not np.allclose(emb[0], emb[1]) and not np.allclose(text[0], text[1]), "different inputs, embeddings"

    bare = tmp_path / "bare.pt"  # a state dict without the position ids is not a released checkpoint
    torch.save({k.removeprefix("module."): v for k, v in torch.load(ckpt)["state_dict"].items()
                if not k.endswith("position_ids")}, bare)
    with pytest.raises(ConfigError, match="not a laion_clap checkpoint"):
        LaionClapScorer.from_checkpoint(bare, roberta_dir=tiny_roberta_dir)


def test_laion_clap_without_roberta_offline_says_what_to_set(monkeypatch, tmp_path):
    import huggingface_hub.constants

    if (Path(huggingface_hub.constants.HF_HUB_CACHE) / "models--roberta-base").exists():
        pytest.skip("roberta-base is in the Hugging Face cache here")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="roberta_dir"):
        LaionClapScorer.build_module("HTSAT-tiny")
