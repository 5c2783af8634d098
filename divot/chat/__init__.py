"""The chat-style API: ``Divot`` (ask, caption, chat, generate_video, tokens), ``Conversation`` and ``Video``.

    from divot import Divot
    model = Divot.from_pretrained("shapes-tiny")
    model.ask("clip.mp4", "What colour is the object?")

Modules: ``model`` (``Divot``), ``conversation`` (multi-turn prompts), ``video`` (``Video`` and every accepted
video input), ``bundled`` (models shipped in ``divot/assets``). Story telling (text interleaved with generated
clips) will be a ``Divot`` method next to ``generate_video`` in ``model``.
"""

from divot.chat.bundled import BUNDLED_MODELS, available_bundled_models, bundled_model_path
from divot.chat.model import Divot, check_token_shapes
from divot.chat.video import Video

__all__ = ["BUNDLED_MODELS", "Conversation", "Divot", "Video", "available_bundled_models", "bundled_model_path",
           "check_token_shapes"]


def __getattr__(name: str):
    # Conversation imports the LLM's sequence builder (and so transformers): loaded on first use.
    if name == "Conversation":
        from divot.chat.conversation import Conversation

        return Conversation
    raise AttributeError(f"module 'divot.chat' has no attribute {name!r}")
