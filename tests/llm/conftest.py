import pytest
import torch

from divot.llm import BaseLLMConfig, DivotLLM, SequenceBuilder, build_shapes_tokenizer, llm_preset


@pytest.fixture(scope="session")
def shapes_tokenizer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes_tokenizer")
    build_shapes_tokenizer(out)
    return out


@pytest.fixture()
def tokenizer(shapes_tokenizer_dir):
    """A fresh copy per test (tests may add tokens)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(shapes_tokenizer_dir))


def tiny_config(model_type: str = "mistral"):
    """The tiny preset, with an even smaller base LLM for speed (any decoder architecture)."""
    config = llm_preset("tiny")
    config.hidden_size = 64
    config.base = BaseLLMConfig(model_type=model_type, vocab_size=512, hidden_size=64, intermediate_size=128,
                                num_layers=2, num_heads=4, num_kv_heads=2, max_position_embeddings=512,
                                sliding_window=None)
    return config


def build_tiny(tokenizer, model_type: str = "mistral", seed: int = 0) -> DivotLLM:
    torch.manual_seed(seed)
    config = tiny_config(model_type)
    return DivotLLM.from_llm(config.base.to_hf(vocab_size=len(tokenizer)), tokenizer, config).eval()


@pytest.fixture()
def tiny_model(tokenizer):
    return build_tiny(tokenizer)


@pytest.fixture()
def builder(tiny_model):
    return SequenceBuilder.from_config(tiny_model.tokenizer, tiny_model.config)


def clips(n: int, q: int = 16, d: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, q, d, generator=torch.Generator().manual_seed(seed))
