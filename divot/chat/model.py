"""``Divot``: the video tokenizer, the Divot-LLM and the de-tokenizer behind one object.

    model = Divot.from_pretrained("shapes-tiny")          # or a directory: tokenizer/ llm/ detokenizer/
    model.ask("clip.mp4", "What colour is the object?")   # -> str
    model.caption("clip.mp4")                             # -> str
    chat = model.chat("clip.mp4"); chat.ask("What shape is it?"); chat.ask("And how does it move?")
    model.generate_video("a red circle moves left").save("circle.gif")
    model.tokens("clip.mp4")                              # (clips, q, d) float32
    model.tell_story("Generate a story about a red circle.").save("outputs/story")

Text decoding uses the reference settings (temperature 0.7, top-p 0.5; the LLM config's defaults); ``seed`` makes a
call reproducible without touching the global random state, ``greedy=True`` decodes greedily. Video generation and
rendering take their sampler, steps, guidance and prompt format from the model directory's ``generation.json``
(``model.generation_defaults``; ``divot.chat.generation_defaults``) unless the call says otherwise. The library
never picks a device: pass ``device`` to ``from_pretrained`` or call ``to``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from divot.chat.bundled import DEFAULT_MODEL, resolve_model_path
from divot.chat.checks import DECODING_KEYS, check_decoding, check_token_shapes, seeded  # noqa: F401
from divot.chat.generation_defaults import LIBRARY_DEFAULTS, GenerationDefaults
from divot.chat.rendering import RenderingMethods
from divot.chat.video import sparse_clips

logger = logging.getLogger(__name__)

PARTS = ("tokenizer", "llm", "detokenizer")  # subfolders of a Divot directory; the de-tokenizer is optional
STORY_PART = "story_llm"  # optional subfolder: the story fine-tuned Divot-LLM (train/story.py), used by tell_story


class Divot(RenderingMethods):
    """Tokenizer (video -> tokens), Divot-LLM (tokens <-> text) and an optional de-tokenizer (tokens -> video).

    Build with ``from_pretrained`` (one directory or a bundled name), ``from_parts`` (three directories) or
    ``from_components`` (models in memory). Without a de-tokenizer everything but ``generate_video`` works.
    ``generation_defaults`` (a ``GenerationDefaults``: the directory's ``generation.json``, else the library
    defaults) is what ``generate_video``, ``render`` and ``tell_story`` use for the settings a call leaves out.

    Example::

        from divot import Divot
        model = Divot.from_pretrained("shapes-tiny", device="cpu")
        model.ask("clip.mp4", "What colour is the object?", seed=0)
    """

    def __init__(self, tokenizer, llm, detokenizer=None, story_llm=None,
                 generation_defaults: GenerationDefaults | None = None):
        self._tokenizer = _as_part("tokenizer", tokenizer)
        self._detokenizer = _as_part("detokenizer", detokenizer)
        check_token_shapes(_shapes(self._tokenizer), llm, _shapes(self._detokenizer))
        if llm.tokenizer is None:
            raise ValueError("the DivotLLM has no text tokenizer: build it with one (from_pretrained / from_preset)")
        from divot.llm.sequences import SequenceBuilder

        self.llm = llm.eval()
        for part in (self._tokenizer, self._detokenizer):
            if isinstance(part, torch.nn.Module):
                part.eval()
        self.builder = SequenceBuilder.from_config(llm.tokenizer, llm.config)
        self._story_llm = story_llm  # a DivotLLM, a directory (loaded on first use) or None (use llm)
        self._llm_options = {}  # how a story_llm directory is loaded: as the LLM was
        if generation_defaults is not None and not isinstance(generation_defaults, GenerationDefaults):
            raise ValueError(f"generation_defaults must be a GenerationDefaults, got {type(generation_defaults)}")
        self.generation_defaults = generation_defaults or LIBRARY_DEFAULTS

    # -- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_components(cls, tokenizer, llm, detokenizer=None, story_llm=None,
                        generation_defaults: GenerationDefaults | None = None) -> Divot:
        """From models in memory: a ``VideoTokenizer``, a ``DivotLLM`` and optionally a ``Detokenizer``.

        Their token shapes must agree (tokenizer num_tokens x token_dim = LLM num_queries x token_dim =
        de-tokenizer num_tokens x token_dim), else a ``ValueError`` names both sides.

        Example::

            model = Divot.from_components(VideoTokenizer.from_preset("tiny"), DivotLLM.from_preset("tiny"),
                                          Detokenizer.from_preset("tiny"))

        ``story_llm``: an optional second ``DivotLLM`` fine-tuned on stories (``tell_story`` uses it).
        ``generation_defaults``: the video generation settings (default: the library's, ``LIBRARY_DEFAULTS``).
        """
        return cls(tokenizer, llm, detokenizer, story_llm, generation_defaults)

    @classmethod
    def from_parts(cls, tokenizer: str | Path, llm: str | Path, detokenizer: str | Path | None = None,
                   device=None, dtype=None, story_llm: str | Path | None = None,
                   generation_defaults: GenerationDefaults | None = None, device_map=None,
                   quantization: str | None = None, offload_detokenizer: bool = False) -> Divot:
        """From saved directories (``save_pretrained`` of each model). The LLM loads now; the video tokenizer
        and the de-tokenizer load the first time a call needs them (generating never reads the tokenizer,
        asking never reads the de-tokenizer).

        Args:
            device: one device for every part, or ``{"tokenizer": ..., "llm": ..., "detokenizer": ...}`` (e.g.
                the LLM on "cuda:0" and the de-tokenizer on "cuda:1"); None leaves a part on the CPU.
            dtype: the LLM's dtype, or ``{part: dtype}``. The tokenizer's default is "auto" (its frozen ViT's
                matrices in bf16 where bf16 is fast on its device, the rest float32); the de-tokenizer's is the
                file's (float32). bf16 / fp16 parts run under autocast.
            device_map: the LLM's ``device_map`` for accelerate ("auto", "balanced", a dict): an LLM larger
                than one device is spread over several (``device``'s LLM entry is then ignored).
            quantization: "8bit" or "4bit" loads the LLM through bitsandbytes (``pip install 'divot[quant]'``);
                its projections, GMM head and output layer stay unquantized.
            offload_detokenizer: keep the de-tokenizer on the CPU and move each of its modules to its device only
                while it runs (less GPU memory, slower rendering).
            story_llm: a story fine-tuned Divot-LLM directory, loaded as the LLM is when ``tell_story`` first
                needs it.
            generation_defaults: the video generation settings (default: the library's, ``LIBRARY_DEFAULTS``).
        """
        from divot.chat.parts import LazyPart, check_quantization, for_part, parse_dtype
        from divot.diffusion import Detokenizer
        from divot.llm import DivotLLM
        from divot.tokenizer import VideoTokenizer

        for what, path in (("tokenizer", tokenizer), ("llm", llm), ("detokenizer", detokenizer),
                           ("story_llm", story_llm)):
            if path is not None and not Path(path).is_dir():
                raise FileNotFoundError(f"{what} directory {path} does not exist")
        check_quantization(quantization)
        tok_dtype = parse_dtype(dtype.get("tokenizer", "auto") if isinstance(dtype, dict) else "auto",
                                "tokenizer dtype", allow_auto=True)
        detok_dtype = parse_dtype(dtype.get("detokenizer") if isinstance(dtype, dict) else None, "detokenizer dtype")
        llm_options = {"device": for_part(device, "llm", "device"),
                       "dtype": parse_dtype(for_part(dtype, "llm", "dtype"), "LLM dtype")}
        if device_map is not None:  # accelerate places the LLM: no single device
            llm_options["device_map"] = device_map
            llm_options.pop("device")
        if quantization is not None:
            llm_options["quantization"] = quantization
        detok = None
        if detokenizer is not None:
            detok = LazyPart("de-tokenizer", Detokenizer, detokenizer,
                             device=for_part(device, "detokenizer", "device"), dtype=detok_dtype)
            if offload_detokenizer:
                detok.options["offload"] = True
        model = cls(
            LazyPart("tokenizer", VideoTokenizer, tokenizer, device=for_part(device, "tokenizer", "device"),
                     dtype=tok_dtype),
            DivotLLM.from_pretrained(llm, **llm_options),
            detok,
            Path(story_llm) if story_llm is not None else None,
            generation_defaults,
        )
        model._llm_options = llm_options
        return model

    @classmethod
    def from_pretrained(cls, path_or_name: str | Path = DEFAULT_MODEL, device=None, dtype=None,
                        **options) -> Divot:
        """From one directory holding ``tokenizer/``, ``llm/`` and (optionally) ``detokenizer/``, ``story_llm/`` and
        ``generation.json``, or a bundled model name (``shapes-tiny``). A missing required part is a
        ``FileNotFoundError`` naming it. ``generation.json`` (``GenerationDefaults``, read strictly) sets how videos
        are generated; without it the library defaults apply (logged once at info level).

        ``device``, ``dtype`` and ``options`` (``device_map``, ``quantization``, ``offload_detokenizer``) are those
        of ``from_parts``: one device or one per part, the LLM's dtype or one per part.

        Example::

            model = Divot.from_pretrained("runs/shapes-model", device="cuda", dtype=torch.bfloat16)
            model = Divot.from_pretrained(path, device={"llm": "cuda:0", "detokenizer": "cuda:1"},
                                          dtype={"llm": torch.bfloat16, "detokenizer": torch.float16})
            model = Divot.from_pretrained(path, device="cuda", quantization="4bit")  # 24 GB: everything
        """
        root = resolve_model_path(path_or_name)
        missing = [p for p in PARTS[:2] if not (root / p).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"model directory {root} lacks {' and '.join(m + '/' for m in missing)} (a Divot model directory "
                f"holds {', '.join(p + '/' for p in PARTS)}; the de-tokenizer is optional)")
        detokenizer = root / "detokenizer"
        if not detokenizer.is_dir():
            logger.info("%s has no detokenizer/: text only, generate_video is unavailable", root)
            detokenizer = None
        generation = GenerationDefaults.from_model_dir(root)  # before the weights: a bad file fails fast
        story = root / STORY_PART
        return cls.from_parts(root / "tokenizer", root / "llm", detokenizer, device=device, dtype=dtype,
                              story_llm=story if story.is_dir() else None, generation_defaults=generation,
                              **options)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``tokenizer/``, ``llm/``, (if present) ``detokenizer/`` and ``story_llm/``, and ``generation.json``
        (``generation_defaults``) under ``directory``."""
        directory = Path(directory)
        self.tokenizer.save_pretrained(directory / "tokenizer")
        self.llm.save_pretrained(directory / "llm")
        if self._detokenizer is not None:
            self.detokenizer.save_pretrained(directory / "detokenizer")
        if self._story_llm is not None:
            self.story_llm.save_pretrained(directory / STORY_PART)
        self.generation_defaults.save_pretrained(directory)
        return directory

    def to(self, device: str | torch.device) -> Divot:
        """Move every part to ``device`` (parts not loaded yet will load there); returns self."""
        from divot.chat.parts import LazyPart

        for part in (self._tokenizer, self.llm, self._detokenizer, self._story_llm):
            if isinstance(part, torch.nn.Module):
                part.to(device)
            elif isinstance(part, LazyPart):
                part.options["device"] = device
        self._llm_options = {**self._llm_options, "device": device}
        self._llm_options.pop("device_map", None)
        return self

    @property
    def tokenizer(self):
        """The video tokenizer. A ``tokenizer/`` directory is read the first time a video is tokenized: generating
        videos and stories never reads it."""
        from divot.chat.parts import LazyPart

        if isinstance(self._tokenizer, LazyPart):
            tokenizer = self._tokenizer.load()
            check_token_shapes(tokenizer, self.llm, _shapes(self._detokenizer))
            self._tokenizer = tokenizer
        return self._tokenizer

    @property
    def has_detokenizer(self) -> bool:
        """Whether the model can render video (``generate_video``, ``tell_story``), without loading the part."""
        return self._detokenizer is not None

    @property
    def detokenizer(self):
        """The de-tokenizer, or None when the model has none. A ``detokenizer/`` directory is loaded the first
        time something renders: asking, captioning, chat and evaluation never read it (nor its 6 GB at paper
        size), and a damaged one stops only rendering, with an error naming it."""
        from divot.chat.parts import LazyPart

        if isinstance(self._detokenizer, LazyPart):
            detokenizer = self._detokenizer.load()
            check_token_shapes(_shapes(self._tokenizer), self.llm, detokenizer)
            self._detokenizer = detokenizer
        return self._detokenizer

    @property
    def story_llm(self):
        """The Divot-LLM ``tell_story`` uses: the story fine-tuned one if the model has it, else ``llm``."""
        if self._story_llm is None:
            return self.llm
        if not isinstance(self._story_llm, torch.nn.Module):
            from divot.llm import DivotLLM

            options = self._llm_options or {"device": self.device}
            story = DivotLLM.from_pretrained(self._story_llm, **options)
            check_token_shapes(_shapes(self._tokenizer), story, _shapes(self._detokenizer))
            self._story_llm = story.eval()
        return self._story_llm

    @property
    def device(self) -> torch.device:
        return self.llm.device

    # -- comprehension ------------------------------------------------------------------------------------
    def tokens(self, video, max_clips: int | None = None, progress: bool = False) -> torch.Tensor:
        """Tokens of a video (any input of ``divot.chat.video``): float32 (clips, q, d), up to ``max_clips``
        (default 20) 2-second clips."""
        from divot.constants import MAX_CLIPS

        clips = sparse_clips(video, self.tokenizer.config.frame_size, MAX_CLIPS if max_clips is None else max_clips)
        return self.tokenizer.encode(clips, progress=progress)  # (clips, q, d)

    def ask(self, video, question: str | list[str], *, seed: int | None = None, batch_size: int | None = None,
            stream: bool = False, **decoding):
        """Answer ``question`` about ``video`` (one turn). ``decoding``: ``greedy``, ``temperature``, ``top_p``,
        ``max_new_tokens``; ``seed`` makes sampling reproducible.

        Several videos and / or questions (a list of videos with one question, one video with a list of questions,
        or two lists of equal length, paired) give a list of answers, decoded together ``batch_size`` prompts at a
        time (None: all at once); greedy answers equal the one-at-a-time answers. Under ``seed`` the whole call
        draws from one generator (``divot.chat.batch``).

        ``stream=True`` (one video, one question) returns an iterator of text pieces as they are decoded; joined,
        they equal the non-streamed answer for the same seed (``divot.chat.streaming``).

        Example::

            model.ask("clip.mp4", "What colour is the object?", seed=0)   # 'red'
            pieces = model.ask("clip.mp4", "Describe the video.", stream=True)   # iterator of str
            "".join(pieces)                                                  # = the answer, same seed
            model.ask(["a.mp4", "b.mp4"], "What colour is the object?", greedy=True)   # ['red', 'blue']
            model.ask("a.mp4", ["What colour is it?", "What shape is it?"], greedy=True)
        """
        from divot.chat.batch import ask_batch, is_video_list

        if is_video_list(video) or isinstance(question, (list, tuple)):
            if stream:
                raise ValueError("stream=True takes one video and one question, not lists")
            return ask_batch(self, video, question, seed=seed, batch_size=batch_size, **decoding)
        return self.chat(video, seed=seed, **decoding).ask(question, stream=stream)

    def caption(self, video, instruction: str | None = None, *, seed: int | None = None, rerank: int = 0,
                channel_weight: float = 0.1, checks=(), check_weight: float = 0.0, batch_size: int | None = None,
                **decoding) -> str | list[str]:
        """A caption of ``video``: the pretraining caption prompt (``<s> <vid> clips </vid>``), or a QA turn
        with ``instruction`` (e.g. "Describe the video.") for instruction-tuned models. A list of videos gives a
        list of captions, decoded together as ``ask`` does (reranked captions: one video after another).

        ``rerank=N`` (> 0) captions by noisy-channel reranking instead: N beam-search captions, the best by
        log P(caption | video) + ``channel_weight`` * log p(video | caption) (``caption_candidates``);
        ``checks`` (``divot.llm.rerank.AnswerCheck``: a question and its possible answers) add ``check_weight`` *
        log P(the caption's answer | video, question).

        Example::

            model.caption("clip.mp4", greedy=True)   # 'a red circle moves left'
            model.caption("clip.mp4", rerank=16)     # the generative direction votes too
            shape = AnswerCheck("what shape is the object?", ("circle", "square", "triangle"))
            model.caption("clip.mp4", rerank=16, checks=[shape], check_weight=4.0)
        """
        from divot.chat.batch import caption_batch, is_video_list

        if is_video_list(video):
            if rerank:
                return [self.caption(v, instruction, rerank=rerank, channel_weight=channel_weight, checks=checks,
                                     check_weight=check_weight, **decoding) for v in video]
            return caption_batch(self, video, instruction, seed=seed, batch_size=batch_size, **decoding)
        if rerank:
            if instruction is not None or decoding.keys() - {"max_new_tokens"}:
                raise ValueError("rerank captions with the caption prompt and beam search: it takes no instruction "
                                 f"and no sampling options (got instruction={instruction!r}, {sorted(decoding)})")
            return self.caption_candidates(video, rerank, channel_weight, checks=checks, check_weight=check_weight,
                                           **decoding)[0].text
        if instruction is not None:
            return self.ask(video, instruction, seed=seed, **decoding)
        prompt = self.builder.caption_prompt(self.tokens(video))
        return self.generate_text(prompt, seed=seed, **decoding)

    def caption_candidates(self, video, num_candidates: int = 16, channel_weight: float = 0.1,
                           max_new_tokens: int | None = None, checks=(), check_weight: float = 0.0) -> list:
        """Noisy-channel caption candidates of ``video``, best first: ``RankedCaption`` (text, caption_logprob,
        channel_logprob, score, check_logprob) for each distinct beam-search caption (``divot.llm.rerank``;
        ``checks`` as in ``caption``). Deterministic.

        Example::

            best = model.caption_candidates("clip.mp4", num_candidates=8)[0]
            best.text, best.caption_logprob, best.channel_logprob
        """
        from divot.llm.rerank import rerank_captions

        return rerank_captions(self.llm, self.builder, self.tokens(video), num_candidates, channel_weight,
                               max_new_tokens=max_new_tokens, checks=checks, check_weight=check_weight)

    def chat(self, video=None, *, seed: int | None = None, **decoding):
        """A ``Conversation`` about ``video`` that keeps its turns for follow-up questions.

        Example::

            chat = model.chat("clip.mp4")
            chat.ask("What colour is the object?")
            chat.ask("And its shape?")          # the first question and answer are in the prompt
            chat.history                        # [(question, answer), ...]
        """
        from divot.chat.conversation import Conversation

        check_decoding(decoding)
        return Conversation(self, video, seed=seed, **decoding)

    def generate_text(self, prompt, *, seed: int | None = None, batch_size: int | None = None,
                      stream: bool = False, **decoding):
        """Text continuing an ``LLMSample`` prompt (``model.builder``'s ``qa_prompt`` ...); a list of prompts
        gives a list of texts, decoded together ``batch_size`` at a time (see ``ask``). ``stream=True`` (one
        prompt): an iterator of text pieces (``divot.chat.streaming``)."""
        if stream:
            from divot.chat.streaming import stream_text

            if isinstance(prompt, (list, tuple)):
                raise ValueError("stream=True takes one prompt, not a list")
            return stream_text(self, prompt, seed=seed, **decoding)
        if isinstance(prompt, (list, tuple)):
            from divot.chat.batch import generate_batch

            return generate_batch(self, prompt, seed=seed, batch_size=batch_size, **decoding)
        check_decoding(decoding)
        with seeded(seed, self.device):
            return self.llm.generate_text(prompt, **decoding)

def _as_part(name: str, part):
    """A module, a ``LazyPart``, None, or a directory (read on first use, on the CPU, as saved)."""
    if isinstance(part, (str, Path)):
        from divot.chat.parts import LazyPart
        from divot.diffusion import Detokenizer
        from divot.tokenizer import VideoTokenizer

        cls = VideoTokenizer if name == "tokenizer" else Detokenizer
        return LazyPart(name.replace("detok", "de-tok"), cls, part)
    return part


def _shapes(part):
    """What ``check_token_shapes`` needs of a part, loaded or not (None: no part, or an unreadable one)."""
    from divot.chat.parts import LazyPart

    return part.shapes() if isinstance(part, LazyPart) else part
