"""The chat-style API: ``Divot`` (ask, caption, chat, generate_video, tell_story, tokens), ``Conversation``,
``Video`` and ``Story``.

    from divot import Divot
    model = Divot.from_pretrained("shapes-tiny")
    model.ask("clip.mp4", "What colour is the object?")

Modules: ``model`` (``Divot``), ``conversation`` (multi-turn prompts), ``video`` (``Video`` and every accepted
video input), ``story`` (``Story``: what ``Divot.tell_story`` returns, saved as a storyboard), ``bundled``
(models shipped in ``divot/assets``), ``generation_defaults`` (``GenerationDefaults``: a model directory's
``generation.json``, and the named sets ``PUBLISHED`` and ``LIBRARY_DEFAULTS``).
"""

from divot.chat.bundled import BUNDLED_MODELS, available_bundled_models, bundled_model_path
from divot.chat.generation_defaults import GenerationDefaults
from divot.chat.model import Divot, check_token_shapes
from divot.chat.story import Story
from divot.chat.video import Video

__all__ = ["BUNDLED_MODELS", "Conversation", "Divot", "GenerationDefaults", "Story", "Video", "available_bundled_models",
           "bundled_model_path", "check_token_shapes"]


def __getattr__(name: str):
    # Conversation imports the LLM's sequence builder (and so transformers): loaded on first use.
    if name == "Conversation":
        from divot.chat.conversation import Conversation

        return Conversation
    raise AttributeError(f"module 'divot.chat' has no attribute {name!r}")
