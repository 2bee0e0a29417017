"""Text dreaming: language models (registry, taps on MLP neurons), objectives, EPO search, corpus baselines.

torch is the only heavy import here; transformers is imported when a model is loaded.
"""

from .dreaming import DreamedText, TextDream, build_text_objective, dream_text
from .objectives import Direction, LayerEnergy, Neuron, NextToken, TextObjective
from .registry import DEFAULT_MODEL, LanguageModel, list_language_models, load_language_model
from .settings import TextSettings

__all__ = [
    "DEFAULT_MODEL",
    "Direction",
    "DreamedText",
    "LanguageModel",
    "LayerEnergy",
    "Neuron",
    "NextToken",
    "TextDream",
    "TextObjective",
    "TextSettings",
    "build_text_objective",
    "dream_text",
    "list_language_models",
    "load_language_model",
]
