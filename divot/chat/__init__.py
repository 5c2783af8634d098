"""The chat-style API: ``Divot`` (ask, caption, chat, generate_video, tell_story, tokens), ``Conversation``,
``Video`` and ``Story``.

    from divot import Divot
    model = Divot.from_pretrained("shapes-tiny")
    model.ask("clip.mp4", "What colour is the object?")

Modules: ``model`` (``Divot``), ``conversation`` (multi-turn prompts), ``video`` (``Video`` and every accepted
video input), ``story`` (``Story``: what ``Divot.tell_story`` returns, saved as a storyboard), ``bundled``
(models shipped in ``divot/assets``), ``generation_defaults`` (``GenerationDefaults``: a model directory's
``generation.json``, and the named sets ``PUBLISHED`` and ``LIBRARY_DEFAULTS``).

Names are imported on first use (``divot._lazy_exports``): ``generation_defaults`` and ``bundled`` need neither
torch nor transformers, so the CLI can read them while building its options.
"""

from typing import TYPE_CHECKING

from divot import _lazy_exports

__all__ = ["BUNDLED_MODELS", "Conversation", "Divot", "GenerationDefaults", "Story", "Video", "available_bundled_models",
           "bundled_model_path", "check_token_shapes"]

__getattr__, __dir__ = _lazy_exports(globals(), {
    "BUNDLED_MODELS": "divot.chat.bundled",
    "available_bundled_models": "divot.chat.bundled",
    "bundled_model_path": "divot.chat.bundled",
    "Conversation": "divot.chat.conversation",
    "GenerationDefaults": "divot.chat.generation_defaults",
    "Divot": "divot.chat.model",
    "check_token_shapes": "divot.chat.model",
    "Story": "divot.chat.story",
    "Video": "divot.chat.video",
})

if TYPE_CHECKING:
    from divot.chat.bundled import BUNDLED_MODELS, available_bundled_models, bundled_model_path
    from divot.chat.conversation import Conversation
    from divot.chat.generation_defaults import GenerationDefaults
    from divot.chat.model import Divot, check_token_shapes
    from divot.chat.story import Story
    from divot.chat.video import Video
