"""Make the pinned third-party installs import cleanly on a CPU machine with no network.

Run by `make` after every install (idempotent). Measured traps (ARCHITECTURE.md):
1. torchaudio 2.11's only wheel is a CUDA build whose compiled extension does not
   load beside torch 2.13 CPU, and a torchaudio that fails to import breaks
   `import transformers` and `peft`. Without the compiled libraries torchaudio
   runs in its pure-Python mode (MelSpectrogram, resample, ConvTasNet work), so
   we move them aside.
2. laion-clap 1.1.7 imports torchvision without declaring it, and torchvision's
   only wheels are CUDA builds that break imports here. Its audio path needs one
   torchvision class (FrozenBatchNorm2d, a four-buffer module) and image
   transforms it never calls for audio; we guard those imports with a local
   fallback.
3. laion-clap loads three Hugging Face tokenizers when `laion_clap.training.data`
   is imported, which fails with no network; we defer that to first use.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

MARK = "# asdflow-vendor-fix"


def site_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def torchaudio_pure_python() -> str:
    root = site_dir("torchaudio")
    if root is None:
        return "torchaudio: not installed"
    lib = root / "lib"
    aside = root / "lib_disabled_by_asdflow"
    libs = sorted(lib.glob("*.so"))
    if not libs:
        return "torchaudio: already pure-Python"
    aside.mkdir(exist_ok=True)
    for so in libs:
        shutil.move(str(so), aside / so.name)
    return f"torchaudio: moved {len(libs)} compiled libraries to {aside.name}/ (pure-Python mode)"


FROZEN_BN = '''
try:  {mark}
    from torchvision.ops.misc import FrozenBatchNorm2d
except Exception:  # torchvision absent or broken: the same module, locally
    class FrozenBatchNorm2d(torch.nn.Module):
        def __init__(self, num_features, eps=1e-5):
            super().__init__()
            self.eps = eps
            self.register_buffer("weight", torch.ones(num_features))
            self.register_buffer("bias", torch.zeros(num_features))
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))

        def forward(self, x):
            w = self.weight.reshape(1, -1, 1, 1)
            b = self.bias.reshape(1, -1, 1, 1)
            rv = self.running_var.reshape(1, -1, 1, 1)
            rm = self.running_mean.reshape(1, -1, 1, 1)
            scale = w * (rv + self.eps).rsqrt()
            return x * scale + (b - rm * scale)
'''.format(mark=MARK)

TRANSFORMS = '''try:  {mark}
    from torchvision.transforms import Normalize, Compose, RandomResizedCrop, InterpolationMode, ToTensor, Resize, \\
        CenterCrop
except Exception:  # image transforms only; the audio path never uses them
    Normalize = Compose = RandomResizedCrop = InterpolationMode = ToTensor = Resize = CenterCrop = None
'''.format(mark=MARK)

DATA_TV = '''try:  {mark}
    import torchvision.datasets as datasets
    import torchvision.transforms
except Exception:  # only the fusion path resizes mels with it; see _resize_mel below
    datasets = None
    torchvision = None
'''.format(mark=MARK)

DATA_TOKENIZERS = '''def _lazy_tokenizer(cls, name):  {mark}
    # Loaded at first use, not at import: importing must work with no network.
    cache = {{}}

    def load(*args, **kwargs):
        if "tok" not in cache:
            cache["tok"] = cls.from_pretrained(name)
        return cache["tok"](*args, **kwargs)

    return load


bert_tokenizer = _lazy_tokenizer(BertTokenizer, "bert-base-uncased")
roberta_tokenizer = _lazy_tokenizer(RobertaTokenizer, "roberta-base")
bart_tokenizer = _lazy_tokenizer(BartTokenizer, "facebook/bart-base")
'''.format(mark=MARK)

RESIZE_OLD = "mel_shrink = torchvision.transforms.Resize(size=[chunk_frames, audio_cfg['mel_bins']])(mel[None])[0]"
RESIZE_NEW = (
    "mel_shrink = F.interpolate(mel[None, None], size=[chunk_frames, audio_cfg['mel_bins']], "
    "mode='bilinear', align_corners=False, antialias=True)[0, 0]  " + MARK
)


def patch(path: Path, old: str, new: str) -> bool:
    text = path.read_text()
    if old not in text:
        return False
    path.write_text(text.replace(old, new))
    return True


def laion_clap_offline() -> str:
    root = site_dir("laion_clap")
    if root is None:
        return "laion_clap: not installed"
    utils = root / "clap_module" / "utils.py"
    transform = root / "clap_module" / "transform.py"
    data = root / "training" / "data.py"
    if MARK in utils.read_text() and MARK in data.read_text():
        return "laion_clap: already patched"
    done = [
        patch(utils, "from torchvision.ops.misc import FrozenBatchNorm2d\n", FROZEN_BN),
        patch(
            transform,
            "from torchvision.transforms import Normalize, Compose, RandomResizedCrop, InterpolationMode, "
            "ToTensor, Resize, \\\n    CenterCrop\n",
            TRANSFORMS,
        ),
        patch(data, "import torchvision.datasets as datasets\nimport torchvision.transforms\n", DATA_TV),
        patch(
            data,
            'bert_tokenizer = BertTokenizer.from_pretrained("bert-base-uncased")\n'
            'roberta_tokenizer = RobertaTokenizer.from_pretrained("roberta-base")\n'
            'bart_tokenizer = BartTokenizer.from_pretrained("facebook/bart-base")\n',
            DATA_TOKENIZERS,
        ),
        patch(data, RESIZE_OLD, RESIZE_NEW),
    ]
    if not all(done):
        raise SystemExit(f"laion_clap: unexpected source layout, patches applied: {done}")
    for cache in root.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    return "laion_clap: torchvision imports guarded, tokenizers loaded lazily"


def main() -> int:
    for line in (torchaudio_pure_python(), laion_clap_offline()):
        print(f"fix_vendor_installs: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
