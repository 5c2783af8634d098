import pytest
import torch

from divot.config import ConfigError, config_from_dict, config_to_dict
from divot.llm import DivotLLMConfig, llm_preset
from tests.llm.conftest import build_tiny


def test_paper_preset_sizes():
    cfg = llm_preset("paper")
    assert cfg.out_dim == 8208  # 2 * 16 * 256 + 16
    assert cfg.input_widths == (256, 4096, 4096) and cfg.output_widths == (4096, 8208, 8208)
    hf = cfg.base.to_hf(vocab_size=32000)
    assert (hf.model_type, hf.hidden_size, hf.num_hidden_layers, hf.num_key_value_heads) == ("mistral", 4096, 32, 8)


def test_tiny_preset_and_round_trip():
    cfg = llm_preset("tiny")
    assert (cfg.hidden_size, cfg.num_queries, cfg.token_dim, cfg.gmm_components) == (128, 16, 32, 4)
    data = config_to_dict(cfg)
    assert "out_dim" not in data  # derived, never stored
    assert config_from_dict(DivotLLMConfig, data) == cfg
    with pytest.raises(ConfigError, match="unknown config key"):
        config_from_dict(DivotLLMConfig, {**data, "out_dim": 260})


def test_validation():
    with pytest.raises(ValueError, match="num_queries must be >= 1"):
        DivotLLMConfig(num_queries=0)
    with pytest.raises(ValueError, match="base.hidden_size"):
        cfg = llm_preset("tiny")
        DivotLLMConfig(hidden_size=64, base=cfg.base)


@pytest.mark.parametrize("model_type", ["mistral", "llama", "qwen2"])
def test_last_hidden_state_is_after_final_norm(tokenizer, model_type):
    """The GMM head reads ``hidden_states[-1]``: in transformers 5 that is the normed decoder output."""
    model = build_tiny(tokenizer, model_type)
    ids = torch.tensor([[1, 5, 6, 7, 8]])
    with torch.no_grad():
        out = model.llm(input_ids=ids, output_hidden_states=True)
        decoder = model.llm.get_decoder()(input_ids=ids).last_hidden_state
    assert torch.allclose(out.hidden_states[-1], decoder, atol=1e-6)
