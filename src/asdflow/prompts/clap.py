"""CLAP audio-text similarity: one `ClapScorer` interface over laion_clap and transformers.

Backends (one `ClapCheckpointConfig` each; a caption's score is the cosine
similarity averaged over every configured checkpoint):

- `laion_clap`: `laion_clap.CLAP_Module(enable_fusion, amodel)` + `load_ckpt(path)`
  (630k-best.pt, 630k-audioset-best.pt), audio at 48 kHz. Offline care:
  `CLAP_Module` builds its text branch and tokenizer with
  `from_pretrained("roberta-base")`, a name it hard-codes; with no network that
  needs the Hugging Face cache, or `prompts.clap.roberta_dir`, a local copy
  that we expose under that name while the module is built. The checkpoint's
  own text weights replace RoBERTa's, so only its config and tokenizer matter.
  `load_ckpt` deletes `text_branch.embeddings.position_ids` from the file's
  state dict (the released checkpoints carry it): a file without it is refused.
- `transformers`: `ClapModel` + `ClapProcessor` from a local directory or a hub id
  (offline: only a local directory or a cached id).
- `random`: `tiny_clap(seed)`, a tiny randomly initialised `ClapModel` built offline
  (tests, the CPU demo): the same code path, scores without meaning.

Audio is resampled to the model's rate and cut to `max_seconds` from the start
(both CLAP front ends would otherwise crop longer clips at random).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from asdflow.data.audio import resample
from asdflow.errors import AudioError, ConfigError, one_line
from asdflow.prompts.config import ClapCheckpointConfig, ClapScoringConfig, PromptConfig

log = logging.getLogger(__name__)

LAION_SAMPLE_RATE = 48000
LAION_CLIP_SAMPLES = 480000  # 10 s at 48 kHz: what laion_clap's HTSAT sees at once
LAION_TEXT_MODEL = "roberta-base"  # the name laion_clap's CLAP and CLAP_Module load (hard-coded)


@runtime_checkable
class ClapScorer(Protocol):
    name: str
    sample_rate: int  # the rate the model hears; inputs are resampled to it

    def embed_audio(self, waveforms: list[np.ndarray], sample_rate: int) -> np.ndarray:
        """(n, d), each row L2-normalised."""
        ...

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """(n, d), each row L2-normalised."""
        ...

    def similarity(self, waveforms: list[np.ndarray], sample_rate: int, texts: list[str]) -> np.ndarray:
        """(n,): cosine similarity of waveform i with text i."""
        ...


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _features(output: Any) -> Any:
    """transformers 5 returns a ModelOutput whose pooler_output holds the projected features; 4.x a tensor."""
    return getattr(output, "pooler_output", output)


class _BatchedScorer:
    """Batching, resampling, cutting and the no-grad/thread scope shared by the backends."""

    name: str
    sample_rate: int
    max_samples: int
    batch_size: int
    num_threads: int | None

    def _audio_batch(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _text_batch(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        import torch

        from asdflow.torch_threads import torch_threads

        with torch_threads(self.num_threads), torch.inference_mode():
            yield

    def prepare(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        wav = np.asarray(waveform, dtype=np.float32)
        if wav.ndim != 1 or wav.size == 0:
            raise AudioError(f"CLAP {self.name}: expected a non-empty mono waveform, got shape {wav.shape}")
        return resample(wav, sample_rate, self.sample_rate)[: self.max_samples]

    def embed_audio(self, waveforms: list[np.ndarray], sample_rate: int) -> np.ndarray:
        prepared = [self.prepare(w, sample_rate) for w in waveforms]
        with self._inference():
            parts = [self._audio_batch(prepared[i : i + self.batch_size]) for i in range(0, len(prepared), self.batch_size)]
        return l2_normalise(np.concatenate(parts)) if parts else np.zeros((0, 0), np.float32)

    def embed_text(self, texts: list[str]) -> np.ndarray:
        with self._inference():
            parts = [self._text_batch(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        return l2_normalise(np.concatenate(parts)) if parts else np.zeros((0, 0), np.float32)

    def similarity(self, waveforms: list[np.ndarray], sample_rate: int, texts: list[str]) -> np.ndarray:
        if len(waveforms) != len(texts):
            raise ValueError(f"{self.name}: {len(waveforms)} waveforms but {len(texts)} texts")
        return np.sum(self.embed_audio(waveforms, sample_rate) * self.embed_text(texts), axis=1)


class TransformersClapScorer(_BatchedScorer):
    """`transformers.ClapModel` + `ClapProcessor`."""

    def __init__(self, model: Any, processor: Any, name: str = "clap", device: str = "cpu", batch_size: int = 8,
                 max_seconds: float = 10.0, num_threads: int | None = 1):
        self.name = name
        self.device = device
        self.model = model.to(device).eval()
        self.processor = processor
        extractor = processor.feature_extractor
        self.sample_rate = int(extractor.sampling_rate)
        self.max_samples = min(int(max_seconds * self.sample_rate), int(extractor.nb_max_samples))
        self.batch_size = batch_size
        self.num_threads = num_threads

    @classmethod
    def from_pretrained(cls, path: str, name: str = "clap", **kwargs: Any) -> TransformersClapScorer:
        from transformers import ClapModel, ClapProcessor

        try:
            model = ClapModel.from_pretrained(path)
            processor = ClapProcessor.from_pretrained(path)
        except (OSError, ValueError) as err:
            raise ConfigError(f"CLAP checkpoint {name!r}: cannot load a transformers ClapModel from {path!r} "
                              f"({one_line(err)})") from None
        return cls(model, processor, name=name, **kwargs)

    def _audio_batch(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        inputs = self.processor.feature_extractor(list(waveforms), sampling_rate=self.sample_rate, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        return _features(self.model.get_audio_features(**inputs)).float().cpu().numpy()

    def _text_batch(self, texts: Sequence[str]) -> np.ndarray:
        inputs = self.processor.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        return _features(self.model.get_text_features(**inputs)).float().cpu().numpy()


_CWD_LOCK = threading.Lock()


@contextlib.contextmanager
def text_encoder_as_roberta_base(roberta_dir: str | Path | None) -> Iterator[None]:
    """While building a laion_clap module, make `from_pretrained("roberta-base")` read `roberta_dir`.

    transformers resolves a name that is an existing directory of the working
    directory before the hub, so we work from a scratch folder where
    `roberta-base` links to `roberta_dir` (the process's cwd is restored, under a lock).
    """
    if roberta_dir is None:
        yield
        return
    source = Path(roberta_dir).expanduser().resolve()
    if not source.is_dir():
        raise ConfigError(f"prompts.clap.roberta_dir: {source} is not a directory (a RoBERTa model + tokenizer)")
    with _CWD_LOCK, tempfile.TemporaryDirectory(prefix="asdflow-roberta-") as scratch:
        os.symlink(source, Path(scratch) / LAION_TEXT_MODEL, target_is_directory=True)
        previous = os.getcwd()
        os.chdir(scratch)
        try:
            yield
        finally:
            os.chdir(previous)


class LaionClapScorer(_BatchedScorer):
    """`laion_clap.CLAP_Module` with a checkpoint loaded by `load_ckpt`."""

    sample_rate = LAION_SAMPLE_RATE

    def __init__(self, module: Any, name: str = "laion_clap", batch_size: int = 8, max_seconds: float = 10.0,
                 num_threads: int | None = 1):
        self.module = module.eval()
        self.name = name
        self.max_samples = min(int(max_seconds * LAION_SAMPLE_RATE), LAION_CLIP_SAMPLES)
        self.batch_size = batch_size
        self.num_threads = num_threads

    @staticmethod
    def build_module(amodel: str = "HTSAT-tiny", enable_fusion: bool = False, device: str = "cpu",
                     roberta_dir: str | Path | None = None, num_threads: int | None = 1) -> Any:
        """A `CLAP_Module` with random audio weights (RoBERTa's text weights), before any checkpoint."""
        import laion_clap  # lazy: heavy, and patched for offline import by scripts/fix_vendor_installs.py

        from asdflow.torch_threads import torch_threads

        try:
            with (torch_threads(num_threads), text_encoder_as_roberta_base(roberta_dir),
                  contextlib.redirect_stdout(io.StringIO())):
                return laion_clap.CLAP_Module(enable_fusion=enable_fusion, amodel=amodel, device=device)
        except OSError as err:
            raise ConfigError(
                f"laion_clap needs the RoBERTa text encoder {LAION_TEXT_MODEL!r} (model + tokenizer), which is neither "
                f"in the Hugging Face cache nor reachable: set prompts.clap.roberta_dir to a local copy "
                f"({one_line(err)})") from None
        except RuntimeError as err:  # an unknown amodel
            raise ConfigError(f"laion_clap cannot build audio model {amodel!r}: {one_line(err)}") from None

    @classmethod
    def from_checkpoint(cls, path: str | Path, name: str = "laion_clap", amodel: str = "HTSAT-tiny",
                        enable_fusion: bool = False, device: str = "cpu", roberta_dir: str | Path | None = None,
                        num_threads: int | None = 1, **kwargs: Any) -> LaionClapScorer:
        path = Path(path).expanduser()
        if not path.is_file():
            raise ConfigError(f"CLAP checkpoint {name!r} not found: {path}")
        module = cls.build_module(amodel, enable_fusion, device, roberta_dir, num_threads)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # load_ckpt prints, even with verbose=False
                module.load_ckpt(str(path), verbose=False)
        except KeyError as err:
            raise ConfigError(f"CLAP checkpoint {name!r} ({path}): not a laion_clap checkpoint (no {err} entry)") from None
        except RuntimeError as err:  # shapes or keys of another amodel / fusion setting
            raise ConfigError(f"CLAP checkpoint {name!r} ({path}) does not fit amodel={amodel!r} "
                              f"enable_fusion={enable_fusion}: {one_line(err)}") from None
        return cls(module, name=name, num_threads=num_threads, **kwargs)

    def _audio_batch(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(self.module.get_audio_embedding_from_data(list(waveforms), use_tensor=False))

    def _text_batch(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.module.get_text_embedding(list(texts), use_tensor=False))


# -- tiny random model (tests, CPU demo) ------------------------------------------------


def tiny_byte_tokenizer(model_max_length: int = 64) -> Any:
    """A byte-level RoBERTa tokenizer built offline: one token per byte, no merges."""
    from transformers import RobertaTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for char in bytes_to_unicode().values():
        vocab.setdefault(char, len(vocab))
    return RobertaTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def tiny_clap_model(seed: int = 0) -> tuple[Any, Any]:
    """(ClapModel, ClapProcessor): a few thousand random weights, 16 kHz, 2 s windows, built offline."""
    import torch
    from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, ClapTextConfig

    tokenizer = tiny_byte_tokenizer(model_max_length=64)
    audio = ClapAudioConfig(spec_size=64, window_size=4, num_mel_bins=16, patch_size=4, patch_stride=(4, 4),
                            patch_embeds_hidden_size=8, hidden_size=16, depths=[1, 1], num_attention_heads=[1, 2],
                            projection_dim=8)
    text = ClapTextConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32, max_position_embeddings=70, projection_dim=8)
    config = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=8)
    extractor = ClapFeatureExtractor(feature_size=16, sampling_rate=16000, hop_length=160, fft_window_size=512,
                                     max_length_s=2, frequency_max=8000, truncation="rand_trunc")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ClapModel(config).eval()
    return model, ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer)


def tiny_clap(seed: int = 0, name: str | None = None, **kwargs: Any) -> TransformersClapScorer:
    model, processor = tiny_clap_model(seed)
    return TransformersClapScorer(model, processor, name=name or f"tiny-random-{seed}", **kwargs)


def save_tiny_clap(directory: str | Path, seed: int = 0) -> Path:
    """Write the tiny model in `from_pretrained` layout (config, safetensors, processor, tokenizer)."""
    directory = Path(directory)
    model, processor = tiny_clap_model(seed)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


# -- from config ------------------------------------------------------------------------


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _looks_local(path: str) -> bool:
    """A path, not a hub id ("org/name"): it exists, or starts like a path ("/", ".", "~")."""
    return Path(path).expanduser().exists() or path.startswith(("/", ".", "~"))


def check_clap_checkpoints(clap: ClapScoringConfig) -> None:
    """Refuse, before any audio is read, a checkpoint whose local file or folder is missing."""
    for i, ckpt in enumerate(clap.checkpoints):
        where = f"prompts.clap.checkpoints[{i}] ({ckpt.name})"
        if ckpt.backend == "laion_clap" and not Path(ckpt.path).expanduser().is_file():
            raise ConfigError(f"CLAP checkpoint not found: {ckpt.path or '(no path)'} ({where}, laion_clap needs the .pt file)")
        if ckpt.backend == "transformers":
            if not ckpt.path:
                raise ConfigError(f"{where}: a transformers CLAP needs a path (a local directory or a hub id)")
            if _looks_local(ckpt.path) and not Path(ckpt.path).expanduser().is_dir():
                raise ConfigError(f"CLAP checkpoint not found: {ckpt.path} ({where}, a ClapModel directory)")


def load_clap_scorer(ckpt: ClapCheckpointConfig, clap: ClapScoringConfig) -> ClapScorer:
    common = {"batch_size": clap.batch_size, "max_seconds": clap.max_seconds, "num_threads": clap.num_threads}
    device = resolve_device(clap.device)
    if ckpt.backend == "laion_clap":
        return LaionClapScorer.from_checkpoint(ckpt.path, name=ckpt.name, amodel=ckpt.amodel,
                                               enable_fusion=ckpt.enable_fusion, device=device,
                                               roberta_dir=clap.roberta_dir, **common)
    if ckpt.backend == "transformers":
        return TransformersClapScorer.from_pretrained(ckpt.path, name=ckpt.name, device=device, **common)
    return tiny_clap(ckpt.seed, name=ckpt.name, device=device, **common)


def load_clap_scorers(config: PromptConfig) -> list[ClapScorer]:
    """One scorer per configured checkpoint (every path checked before the first model loads)."""
    check_clap_checkpoints(config.clap)
    return [load_clap_scorer(ckpt, config.clap) for ckpt in config.clap.checkpoints]


def mean_similarity_matrix(scorers: Sequence[ClapScorer], waveforms: list[np.ndarray], sample_rate: int,
                           texts: list[str]) -> np.ndarray:
    """(n_waveforms, n_texts) cosine similarities averaged over the scorers."""
    total = np.zeros((len(waveforms), len(texts)), dtype=np.float64)
    for scorer in scorers:
        total += scorer.embed_audio(waveforms, sample_rate) @ scorer.embed_text(texts).T
    return total / max(len(scorers), 1)
