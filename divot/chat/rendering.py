"""What ``Divot`` renders: videos from prompts (``generate_video``), clips from tokens (``render``) and
stories (``tell_story``). A mixin of ``divot.chat.model.Divot``: it uses the model's ``llm``, ``builder``,
``detokenizer``, ``story_llm`` and ``generation_defaults``."""

from __future__ import annotations

import dataclasses
import logging

import torch

from divot.chat.checks import check_decoding, seeded
from divot.chat.video import Video

logger = logging.getLogger(__name__)


class RenderingMethods:
    """``generate_video``, ``render`` and ``tell_story`` of ``Divot`` (see its docstring)."""

    def generate_video(self, prompt: str, *, num_clips: int = 1, seed: int = 0, num_steps: int | None = None,
                       guidance_scale: float | None = None, guidance_rescale: float | None = None,
                       eta: float | None = None, sampler: str | None = None, var_scale: float | None = None,
                       mode: str = "sample", template: str | None = "default", prompt_format: str | None = None,
                       open_video: str | None = None, progress: bool = False) -> Video:
        """A video for a text prompt: LLM -> GMM -> ``num_clips`` clips of tokens -> de-tokenizer.

        Every setting left as None (and ``template`` left as "default") comes from ``generation_defaults``: the
        model directory's ``generation.json``, else the library defaults (DPM-Solver++ 20 steps, guidance 7.5,
        rescale 0.7, the instruction prompt, ``<vid>`` forced). Explicit arguments override it.

        Args:
            prompt: what to show, e.g. "a red circle moves left".
            num_clips: 2-second clips, rendered one after another.
            seed: seeds the text (``open_video="sample"``), the GMM sampling and the diffusion noise (same seed,
                same video).
            num_steps, sampler, guidance_scale, guidance_rescale, eta: the de-tokenizer's sampling
                (``Detokenizer.decode``; "reference" is the published DDIM).
            var_scale: GMM variance scale (default: the LLM config's, 0.1); ``mode``: "sample", "mean" or "top".
            prompt_format: "instruct" (``<s>[INST] {template} prompt [/INST]\\n``, the instruction-tuned weights)
                or "pretrain" (``<s> prompt``: what ``Divot_pretrain`` was trained on; no instruction, no template).
            open_video: "force" (``<vid>`` appended after the prompt at once) or "sample" (text is sampled until the
                model opens ``<vid>`` itself, as the reference does; a model that ends without one gets ``<vid>``
                appended, and a line is logged). The text written before the video is kept in
                ``video.settings["text"]``.
            template: the instruction before the prompt in the instruct format; "default" is the model's
                (``generation_defaults.template``, "Generate a video of" unless its generation.json says otherwise),
                None sends the prompt alone inside [INST] ... [/INST].
        Returns:
            a ``Video`` of num_clips x frames-per-clip float frames (t, 3, H, W) in [-1, 1] at frames / 2 s fps;
            ``video.settings`` records the settings used, the seed and the text before ``<vid>``.

        Example::

            model.generate_video("a blue square moves up", seed=1).save("square.mp4")
            model.generate_video("a blue square moves up", sampler="reference", num_steps=50)  # the published DDIM
            model.generate_video("a blue square moves up", prompt_format="pretrain", open_video="sample")
        """
        if self.detokenizer is None:
            raise ValueError("generate_video needs a de-tokenizer: this model has none (load a directory with "
                             "detokenizer/, or pass one to Divot.from_components / from_parts)")
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        settings = self.generation_defaults.replace(
            sampler=sampler, num_steps=num_steps, guidance_scale=guidance_scale, guidance_rescale=guidance_rescale,
            eta=eta, prompt_format=prompt_format, open_video=open_video)
        if template != "default":
            settings = dataclasses.replace(settings, template=template)
        if settings.prompt_format == "pretrain":
            sample = self.builder.generation_prompt(prompt, instruct=False)  # <s> prompt
        else:
            sample = self.builder.generation_prompt(prompt, template=settings.template)
        llm_gen = torch.Generator(device=self.device).manual_seed(seed)
        with seeded(seed, self.device):
            out = self.llm.generate_video(sample, num_clips=num_clips, mode=mode, var_scale=var_scale,
                                          generator=llm_gen, force_video=settings.open_video == "force")
        if settings.open_video == "sample":
            logger.info("text before the video: %r", out.text)
        clips = self.render(out.tokens, seed=seed, progress=progress, **settings.render_kwargs())
        record = {"seed": seed, **settings.to_dict(), "mode": mode,
                  "var_scale": self.llm.config.var_scale if var_scale is None else var_scale, "text": out.text}
        return Video(torch.cat([c.frames for c in clips]), fps=clips[0].fps, settings=record)

    def render(self, tokens: torch.Tensor, *, seed: int = 0, num_steps: int | None = None,
               guidance_scale: float | None = None, guidance_rescale: float | None = None, sampler: str | None = None,
               eta: float | None = None, progress: bool = False) -> list[Video]:
        """De-tokenize clip tokens (clips, q, d): one ``Video`` per clip (the diffusion noise seeded by ``seed``).
        Settings left as None come from ``generation_defaults`` (see ``generate_video``)."""
        from divot.constants import CLIP_SECONDS

        if self.detokenizer is None:
            raise ValueError("rendering clips needs a de-tokenizer: this model has none (load a directory with "
                             "detokenizer/, or pass one to Divot.from_components / from_parts)")
        settings = self.generation_defaults.replace(sampler=sampler, num_steps=num_steps, guidance_scale=guidance_scale,
                                                    guidance_rescale=guidance_rescale, eta=eta)
        detok_device = self.detokenizer.uncond_tokens.device
        noise_gen = torch.Generator(device=detok_device).manual_seed(seed)
        frames = self.detokenizer.decode(tokens.to(detok_device), generator=noise_gen, progress=progress,
                                         **settings.render_kwargs())  # (clips, f, 3, H, W)
        return [Video(clip.float().cpu(), fps=clip.shape[0] / CLIP_SECONDS) for clip in frames]

    def tell_story(self, instruction: str, num_segments: int = 3, *, seed: int = 0, num_steps: int | None = None,
                   guidance_scale: float | None = None, guidance_rescale: float | None = None,
                   eta: float | None = None, var_scale: float | None = None, sampler: str | None = None,
                   mode: str = "sample", max_new_tokens: int = 64, progress: bool = False, stream: bool = False,
                   **decoding):
        """A story: text, a clip, text, a clip ... (``num_segments`` of each), each clip rendered as a video.

        The story LLM (``story_llm``: the story fine-tuned model when the directory has ``story_llm/``) writes
        each segment's text until it opens a video, then its query pass gives the clip's tokens (GMM ``mode``,
        ``var_scale``), and the story continues with that clip in context (``divot.llm.story``). ``decoding``:
        ``greedy``, ``temperature``, ``top_p`` (reference 0.7 / 0.5); ``seed`` fixes the text, the tokens and the
        diffusion noise. Rendering: ``num_steps``, ``sampler``, ``guidance_scale``, ``guidance_rescale``, ``eta``;
        those left as None come from ``generation_defaults`` (see ``generate_video``).

        ``stream=True`` returns an iterator instead of a ``Story``: each segment's text (``str``) as soon as it is
        written, then its clip (``Video``) once rendered, and so on (``divot.chat.story.stream_story``). The texts
        and tokens equal the ``Story``'s for the same seed; each clip is rendered on its own (noise seeded by
        ``seed``), so its pixels can differ from the batched rendering's.

        Example::

            story = model.tell_story("Generate a story about a red circle.", num_segments=3, seed=0)
            story.texts                       # ['a red circle moves left.', 'then it moves up.', ...]
            story.save("outputs/story")       # storyboard.html + one GIF and MP4 per segment
        """
        from divot.chat.story import Story

        check_decoding({**decoding, "max_new_tokens": max_new_tokens})
        if self.detokenizer is None:
            raise ValueError("tell_story needs a de-tokenizer to render the clips: this model has none")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
        rendering = self.generation_defaults.replace(
            sampler=sampler, num_steps=num_steps, guidance_scale=guidance_scale, guidance_rescale=guidance_rescale,
            eta=eta).render_kwargs()  # checked before the story is written
        from divot.llm.sequences import SequenceBuilder

        llm = self.story_llm
        builder = self.builder if llm is self.llm else SequenceBuilder.from_config(llm.tokenizer, llm.config)
        prompt = builder.story_prompt(instruction.strip())
        gen = torch.Generator(device=llm.device).manual_seed(seed)
        if stream:
            from divot.chat.story import stream_story
            from divot.llm.story import story_segments

            segments = story_segments(llm, prompt, num_segments, mode=mode, var_scale=var_scale, generator=gen,
                                      max_new_tokens=max_new_tokens, **decoding)
            return stream_story(self, segments, seed=seed, progress=progress, **rendering)
        out = llm.generate_story(prompt, num_segments, mode=mode, var_scale=var_scale, generator=gen,
                                 max_new_tokens=max_new_tokens, **decoding)
        videos = self.render(out.tokens, seed=seed, progress=progress, **rendering)
        settings = {"seed": seed, **rendering, "mode": mode,
                    "var_scale": llm.config.var_scale if var_scale is None else var_scale,
                    "story_llm": self._story_llm is not None, **decoding}
        if any(out.forced_video):
            settings["forced_video"] = out.forced_video
        return Story(instruction.strip(), out.texts, videos, out.tokens, settings)
