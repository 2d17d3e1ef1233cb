"""Tiny CLAP models written to disk offline, and the tiny dataset's fan manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

MACHINE = "fan"


@pytest.fixture(scope="session")
def tiny_clap_dir(tmp_path_factory) -> Path:
    """A random transformers ClapModel + ClapProcessor in from_pretrained layout (seed 0)."""
    from asdflow.prompts.clap import save_tiny_clap

    return save_tiny_clap(tmp_path_factory.mktemp("tiny_clap"), seed=0)


@pytest.fixture(scope="session")
def tiny_roberta_dir(tmp_path_factory) -> Path:
    """What laion_clap loads as "roberta-base", built offline: RoBERTa-shaped (hidden 768, which laion's
    text projection expects), one layer, a byte-level tokenizer."""
    import torch
    from transformers import RobertaConfig, RobertaModel

    from asdflow.prompts.clap import tiny_byte_tokenizer

    directory = tmp_path_factory.mktemp("roberta") / "tiny-roberta"
    tokenizer = tiny_byte_tokenizer(model_max_length=77)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=768, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=80, pad_token_id=1)
    RobertaModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def fan_manifest(tiny_manifest):
    return tiny_manifest.select(machine_type=MACHINE)


@pytest.fixture(scope="session")
def tiny_speech_model_dir(tmp_path_factory) -> Path:
    """A random Wav2Vec2 CTC model + processor, built offline: a real `automatic-speech-recognition`
    pipeline for the captioner hook (its "captions" are random letters; the wiring is what is tested)."""
    import json

    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    directory = tmp_path_factory.mktemp("speech") / "tiny-wav2vec2"
    directory.mkdir()
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(directory / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                                     word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True)
    torch.manual_seed(0)
    config = Wav2Vec2Config(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8),
                            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, pad_token_id=0)
    Wav2Vec2ForCTC(config).save_pretrained(directory)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(directory)
    return directory
