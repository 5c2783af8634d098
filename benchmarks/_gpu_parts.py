"""The measurements of ``gpu_check.py``, one function per part: ``part(ctx) -> dict``, ``ctx`` a
``gpu_check.PartContext`` (device, settings, deadline, timed rounds).

Models are built with random weights straight on the measuring device (``with torch.device(...)``: parameters
are allocated and initialised there, so a 7B model is ready in seconds; unlike ``to_empty`` on a meta-built
model, buffers such as the rotary frequencies and the CLIP mean / std are computed, not left as empty memory),
then cast to bfloat16. Parameters that a fresh model initialises to zero (output convolutions, attention output
projections, gates) are re-drawn from N(0, 0.02), so that outputs depend on the inputs.

Imported by ``gpu_check.py`` as ``_gpu_parts`` (the script's folder is first on ``sys.path``).
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _timing import summarize


def redraw_zero_parameters(model: torch.nn.Module, std: float = 0.02) -> None:
    """Re-draw every all-zero floating parameter (zero-initialised layers) from N(0, std)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point() and p.numel() and not p.any():
                p.normal_(0.0, std)


def build_tokenizer(size: str, device: torch.device):
    """The video tokenizer of ``size`` in bf16 (tiny: the paper's structure at small widths, no output norm)."""
    from divot.tokenizer import VideoTokenizer, tokenizer_preset

    config = tokenizer_preset(size)
    config.temporal.zero_init = False
    config.output_norm = "none"  # the released structure (the tiny preset's batch norm is a training aid)
    with torch.device(device):
        model = VideoTokenizer(config)
    redraw_zero_parameters(model)
    return model.to(torch.bfloat16).eval().requires_grad_(False)


def build_llm(size: str, device: torch.device, num_layers: int | None = None):
    """Divot-LLM of ``size`` in bf16: the preset's base LLM (Mistral-7B shapes at paper size), random weights, a
    small text tokenizer inside the base vocabulary (+ the Divot tokens)."""
    from transformers import AutoModelForCausalLM

    from divot.llm import DivotLLM
    from divot.llm.config import llm_preset
    from divot.llm.tokens import SPECIAL_TOKENS

    config = llm_preset(size)
    if num_layers:
        config.base.num_layers = num_layers
    text = build_text_tokenizer()
    vocab = max(config.base.vocab_size + len(SPECIAL_TOKENS), len(text))
    with torch.device(device):
        llm = AutoModelForCausalLM.from_config(config.base.to_hf(vocab_size=vocab), dtype=torch.bfloat16)
        model = DivotLLM(config, llm, text)
    redraw_zero_parameters(model)
    return model.to(device=device, dtype=torch.bfloat16)


def build_text_tokenizer():
    """A small sentencepiece tokenizer with the Divot tokens (the library's trainer, Mistral's kind of model) on
    this check's own texts; ``build_shapes_tokenizer`` would import the shapes world, which needs PyAV."""
    from transformers import AutoTokenizer

    from divot.llm.sequences import INST_END, INST_START
    from divot.llm.text_tokenizer import train_text_tokenizer

    texts = [QUESTION.format(i=i) for i in range(10)] + [o.format(i=i) for o in OPTIONS for i in range(10)]
    texts += [f"{INST_START} question{INST_END}answer", "A B C D E 0 1 2 3 4 5 6 7 8 9"]
    with tempfile.TemporaryDirectory() as tmp:
        train_text_tokenizer(texts, tmp, vocab_size=512)
        return AutoTokenizer.from_pretrained(tmp)  # what a saved model's tokenizer loads as


def detokenizer_config(size: str):
    """The paper de-tokenizer, or its structure at small widths (tiny U-Net + tiny VAE, 4 frames of 16 px)."""
    from divot import diffusion

    if size == "paper":
        return diffusion.detokenizer_preset("paper")
    return diffusion.DetokenizerConfig(unet=diffusion.unet_preset("tiny"), condition=diffusion.condition_preset("tiny"),
                                       vae=diffusion.vae_preset("tiny"), num_tokens=16, num_frames=4, frame_size=16)


# -- parts -------------------------------------------------------------------------------------------------
def part_matmul_peak(ctx) -> dict:
    """bf16 (n, n) x (n, n) products on random data: the ceiling the other parts are compared with."""
    n, inner = ctx.settings.matmul_n, ctx.settings.matmul_inner
    gen = torch.Generator(device=ctx.device).manual_seed(0)
    a = torch.randn(n, n, device=ctx.device, dtype=torch.bfloat16, generator=gen)
    b = torch.randn(n, n, device=ctx.device, dtype=torch.bfloat16, generator=gen)
    c = torch.empty(n, n, device=ctx.device, dtype=torch.bfloat16)
    ctx.mark_built()

    def block():
        for _ in range(inner):
            torch.mm(a, b, out=c)

    runs = ctx.rounds({"mm": block}, ctx.settings.matmul_rounds)["mm"]
    timing = summarize(runs)
    return {"n": n, "products_per_round": inner, "tflops": 2 * n**3 * inner / timing["median"] / 1e12,
            "tflops_best": 2 * n**3 * inner / timing["min"] / 1e12, "timing": timing}


def part_tokenizer(ctx) -> dict:
    """Tokenizer clips/s (``VideoTokenizer.encode``, bf16 autocast) and its FLOPs per clip."""
    from torch.utils.flop_counter import FlopCounterMode

    s = ctx.settings
    model = build_tokenizer(s.size, ctx.device)
    cfg = model.config
    clips = torch.rand(s.tokenizer_batch, cfg.num_frames, 3, cfg.frame_size, cfg.frame_size, device=ctx.device) * 2 - 1
    ctx.mark_built()
    with FlopCounterMode(display=False) as counter, torch.no_grad(), ctx.autocast():
        model(clips[:1])
    flop = counter.get_total_flops()
    runs = ctx.rounds({"encode": lambda: model.encode(clips, batch_size=s.tokenizer_batch, precision="bf16")},
                      s.tokenizer_rounds)["encode"]
    timing = summarize(runs)
    clips_per_s = s.tokenizer_batch / timing["median"]
    return {"batch": s.tokenizer_batch, "clips_per_s": clips_per_s, "gflop_per_clip": flop / 1e9,
            "tflops_achieved": flop * clips_per_s / 1e12, "timing": timing,
            "tokens_per_clip": [cfg.num_tokens, cfg.token_dim]}


def part_egoschema(ctx) -> dict:
    """EgoSchema-style five-way questions over the clips of one synthetic video, scored as ``divot eval
    egoschema`` does (``make_predictor`` in mode ``ll``: the prefix once, each option from its KV cache), with
    the clip tokens from a cache and decoded + tokenized from the file for every question."""
    from divot.chat import Divot
    from divot.eval.multiple_choice import LL_TEMPLATE, make_predictor, mc_text
    from divot.eval.runner import EvalConfig, EvalItem

    s = ctx.settings
    model = Divot.from_components(build_tokenizer(s.size, ctx.device), build_llm(s.size, ctx.device))
    ctx.mark_built()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = tmp / "video.mp4"
        writer = write_synthetic_video(video, s.video_seconds, s.video_fps, s.video_width, s.video_height)
        decoder, decode = pick_decoder()
        questions = tmp / "questions.json"
        questions.write_text("[]\n")  # EvalConfig checks the file exists; the items are built below
        cfg = EvalConfig(task="egoschema", questions=questions, out=tmp / "eval", videos=tmp, mode="ll",
                         ll_normalize="mean", progress=False)
        predict = make_predictor(cfg, model)
        items = [EvalItem(f"q{i}", "video", video, QUESTION.format(i=i), [o.format(i=i) for o in OPTIONS])
                 for i in range(max(s.questions_cached, s.questions_video))]
        size = model.tokenizer.config.frame_size

        def from_video(item) -> torch.Tensor:  # (clips, q, d)
            clips = decode(item.video, size, s.max_clips)
            return model.tokenizer.encode(clips, batch_size=s.max_clips, precision="bf16")

        cache = {"video": from_video(items[0])}

        def answer(subset, tokens) -> list[int]:
            with torch.no_grad():
                return [predict(item, tokens(item))["pred"] for item in subset]

        runs = ctx.rounds({
            "cached": lambda: answer(items[: s.questions_cached], lambda item: cache[item.video_id]),
            "from_video": lambda: answer(items[: s.questions_video], from_video),
        }, s.eval_rounds)
        prompt = model.builder.qa_prompt(cache["video"], mc_text(items[0], LL_TEMPLATE))
    out = {"clips_per_question": int(cache["video"].shape[0]), "options": len(OPTIONS),
           "prefix_tokens": len(prompt), "scoring": "make_predictor mode ll (prefix once, options from its KV cache)",
           "video": {"seconds": s.video_seconds, "fps": s.video_fps, "width": s.video_width,
                     "height": s.video_height, "writer": writer, "decoder": decoder}}
    for name, count in (("cached", s.questions_cached), ("from_video", s.questions_video)):
        timing = summarize(runs[name])
        out[name] = {"questions": count, "questions_per_s": count / timing["median"], "timing": timing}
    return out


def part_detokenizer(ctx) -> dict:
    """Seconds per clip of ``Detokenizer.decode`` (batch 1, guidance 7.5, rescale 0.7; bf16 weights, the U-Net
    and condition resampler under bf16 autocast, the VAE in bf16) with the reference DDIM sampler and a fast
    diffusers sampler, from the same noise and tokens."""
    from divot.diffusion import Detokenizer

    s = ctx.settings
    torch.manual_seed(0)
    with torch.device(ctx.device):
        model = Detokenizer(detokenizer_config(s.size))
    redraw_zero_parameters(model)
    model = model.to(torch.bfloat16).eval()
    # Autocast around the networks only: decode's own float64 / float16 sampler tables must stay outside it.
    for net in (model.unet, model.condition):
        net.forward = torch.autocast(ctx.device.type, dtype=torch.bfloat16)(net.forward)
    cfg = model.config
    gen = torch.Generator(device=ctx.device).manual_seed(0)
    tokens = torch.randn(1, cfg.num_tokens, cfg.token_dim, device=ctx.device, generator=gen)
    x_T = torch.randn(1, cfg.latent_channels, cfg.num_frames, cfg.latent_size, cfg.latent_size, device=ctx.device,
                      generator=gen)
    ctx.mark_built()

    def decode(sampler: str, steps: int, eta: float):
        return lambda: model.decode(tokens, num_steps=steps, guidance_scale=7.5, guidance_rescale=0.7,
                                    sampler=sampler, eta=eta, generator=gen, x_T=x_T, progress=False)

    out = {"frames": [cfg.num_frames, 3, cfg.frame_size, cfg.frame_size], "guidance": 7.5, "rescale": 0.7}
    errors = []
    for name, (sampler, steps, eta) in {"reference": ("reference", s.detok_reference_steps, 1.0),
                                        "fast": (*s.detok_fast, 0.0)}.items():
        out[name] = {"sampler": sampler, "steps": steps, "eta": eta}
        try:  # each sampler on its own: one that fails still leaves the other's time
            timing = summarize(ctx.rounds({name: decode(sampler, steps, eta)}, s.detok_rounds)[name])
            out[name].update(s_per_clip=timing["median"], timing=timing)
        except Exception as err:
            if ctx.timed_out(err):
                raise
            out[name]["error"] = f"{type(err).__name__}: {err}"[:2000]
            errors.append(f"{sampler}: {out[name]['error']}")
    if len(errors) == 2:
        raise RuntimeError("; ".join(errors))
    if not errors:
        out["speedup_fast_over_reference"] = out["reference"]["s_per_clip"] / out["fast"]["s_per_clip"]
    return out


LLM_CHOICE = ("full fine-tuning of every parameter with weights, gradients and AdamW moments all in bf16 (8 bytes "
              "a parameter; torch AdamW through divot.training.engine.TorchEngine, clipping 1.0, no fp32 master "
              "copy), bf16 autocast, gradient checkpointing on every decoder layer. The project's trainer keeps "
              "fp32 weights, gradients and moments under bf16 autocast: 16 bytes a parameter, 118 GB for 7.36B "
              "before activations and AdamW's temporaries, too close to the card's 141 GB")


def part_llm_train(ctx) -> dict:
    """Divot-LLM training steps (forward + backward + AdamW) on synthetic caption + generation sequences:
    tokens/s and model FLOP utilisation (6N + 12 L d s per token, recomputation not counted)."""
    from divot.llm import LLMCollator
    from divot.training.engine import TorchEngine
    from divot.training.optim import OptimConfig

    s = ctx.settings
    torch.manual_seed(0)
    model = build_llm(s.size, ctx.device, s.llm_layers).train()
    model.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    engine = TorchEngine(model, named, OptimConfig(lr=1e-5, warmup_steps=0, max_steps=10**6), zero_unused_grads=True)
    cfg, hf = model.config, model.llm.config
    collate = LLMCollator(model.token_ids.pad, cfg.num_queries)
    batch = {k: v.to(ctx.device) for k, v in collate([llm_sample(model, s.llm_seq_len, s.llm_clips, i)
                                                      for i in range(s.llm_batch)]).items()}
    ctx.mark_built()

    losses = []

    def step():
        with ctx.autocast():
            loss = engine(batch)["loss"]
        engine.backward(loss)
        engine.step()
        losses.append(loss.detach())

    for _ in range(s.llm_warmup_steps):  # the first step also allocates the AdamW moments
        step()
    runs = ctx.rounds({"step": step}, s.llm_steps)["step"]
    timing = summarize(runs)
    tokens = int(batch["attention_mask"].sum())
    n_llm = sum(p.numel() for p in model.llm.parameters()) - model.llm.get_input_embeddings().weight.numel()
    n_in = sum(p.numel() for p in model.input_proj.parameters())
    n_head = sum(p.numel() for p in model.gmm_head.parameters())
    layers, width = hf.num_hidden_layers, hf.hidden_size
    flop = (6 * n_llm * tokens + 12 * layers * width * s.llm_seq_len * tokens
            + 6 * n_in * int(batch["cmp_mask"].sum()) + 6 * n_head * int(batch["gen_mask"].sum()))
    params = sum(p.numel() for p in model.parameters())
    return {"choice": LLM_CHOICE, "layers": layers, "params": params, "state_gb": 8 * params / 1e9,
            "batch": s.llm_batch, "seq_len": s.llm_seq_len, "tokens_per_step": tokens,
            "clips_per_sample": {"comprehension": s.llm_clips, "generation": 1},
            "tokens_per_s": tokens / timing["median"], "s_per_step": timing["median"],
            "tflop_per_step": flop / 1e12, "tflops_achieved": flop / timing["median"] / 1e12,
            "last_loss": float(losses[-1].float()), "timing": timing}


PARTS: dict[str, Callable] = {
    "matmul_peak": part_matmul_peak,
    "tokenizer": part_tokenizer,
    "egoschema": part_egoschema,
    "detokenizer": part_detokenizer,
    "llm_train": part_llm_train,
}


# -- data ---------------------------------------------------------------------------------------------------
QUESTION = "Question {i}: taking the whole video into account, what is the main thing the person does and why?"
OPTIONS = ["the red circle moves left and then stops near the wall {i}",
           "the blue square moves right twice before it leaves the frame",
           "the green triangle stays still while the camera turns slowly",
           "a yellow circle moves up, turns around and comes back down",
           "nothing moves at all during the whole video clip"]


def llm_sample(model, seq_len: int, num_clips: int, seed: int):
    """One synthetic training sequence of exactly ``seq_len`` tokens: ``<s> <vid> clips </vid>`` text (the
    targets) ``<vid> <frame> queries </frame> </vid> </s>``; random clip tokens and GMM targets."""
    from divot.constants import IGNORE_INDEX
    from divot.llm.sequences import LLMSample

    ids, q, d = model.token_ids, model.config.num_queries, model.config.token_dim
    prefix = [ids.bos, ids.vid_start, *(ids.clip(q) * num_clips), ids.vid_end]
    suffix = [ids.vid_start, *ids.clip(q), ids.vid_end, ids.eos]
    num_text = seq_len - len(prefix) - len(suffix)
    if num_text < 1:
        raise ValueError(f"seq_len {seq_len} leaves no room for text after {num_clips} clips of {q} tokens")
    gen = torch.Generator().manual_seed(seed)
    text = torch.randint(3, len(model.tokenizer) - len(ids.frames) - 6, (num_text,), generator=gen).tolist()
    input_ids = torch.tensor(prefix + text + suffix)
    frames = torch.isin(input_ids, torch.tensor(ids.frames))
    cmp_mask = frames.clone()
    cmp_mask[len(prefix):] = False
    gen_mask = frames & ~cmp_mask
    labels = input_ids.clone()
    labels[: len(prefix)] = IGNORE_INDEX
    labels[gen_mask] = IGNORE_INDEX
    return LLMSample(input_ids, labels, cmp_mask, gen_mask, torch.randn(num_clips, q, d, generator=gen),
                     torch.randn(1, q, d, generator=gen))


def synthetic_frames(seconds: float, fps: float, width: int, height: int) -> np.ndarray:
    """uint8 (t, height, width, 3): a square crossing a colour gradient, a new colour every 10 seconds."""
    t = max(1, round(seconds * fps))
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1),
                           np.full_like(xx, 64)], -1).astype(np.uint8)  # (h, w, 3)
    frames = np.repeat(background[None], t, axis=0)
    side = max(2, min(width, height) // 5)
    for i in range(t):
        x = int((width - side) * (0.5 + 0.5 * np.sin(i / fps)))
        y = int((height - side) * (0.5 + 0.5 * np.cos(0.7 * i / fps)))
        frames[i, y:y + side, x:x + side] = ((i // int(10 * fps)) * 70 % 256, 200, 255 - (i * 3) % 256)
    return frames


def write_synthetic_video(path: Path, seconds: float, fps: float, width: int, height: int) -> str:
    """Write the synthetic video; returns the writer used: the library's (PyAV, H.264) where PyAV is
    installed, else OpenCV (MPEG-4 part 2)."""
    frames = synthetic_frames(seconds, fps, width, height)
    if importlib.util.find_spec("av") is not None:
        from divot.data.writers import write_video

        write_video(frames, path, fps=fps)
        return "divot.data.writers (PyAV, libx264)"
    import cv2

    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not out.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for frame in frames:
        out.write(frame[..., ::-1])  # RGB -> BGR
    out.release()
    return "OpenCV (mp4v)"


def pick_decoder() -> tuple[str, Callable]:
    """``(name, decode(path, size, max_clips) -> (clips, 5, 3, size, size))``: the library's loader (the backend
    ``divot.data.decoders`` picks: decord, torchcodec or PyAV) where PyAV is installed, else OpenCV with the
    library's clip sampling and transform."""
    if importlib.util.find_spec("av") is not None:
        from divot.data.decoders import available_backends
        from divot.data.loading import load_sparse_clips

        return f"divot.data.loading (first of {available_backends()})", (
            lambda path, size, max_clips: load_sparse_clips(path, size=size, max_clips=max_clips))
    if importlib.util.find_spec("cv2") is None:
        raise RuntimeError("no video decoder: needs PyAV (the library's) or OpenCV (cv2)")
    return "OpenCV (cv2), the library's clip sampling and transform", decode_sparse_clips_cv2


def decode_sparse_clips_cv2(path: Path, size: int, max_clips: int) -> torch.Tensor:
    """``load_sparse_clips`` with OpenCV as the decoder: the same clip policy (``sample_clip_indices``,
    ``sparse_indices``) and transform (``frames_to_tensor``); frames are read in order, the unused ones skipped."""
    import cv2

    from divot.data.sampling import sample_clip_indices, sparse_indices
    from divot.data.transforms import frames_to_tensor

    capture = cv2.VideoCapture(str(path))
    try:
        count, fps = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), capture.get(cv2.CAP_PROP_FPS)
        indices = sparse_indices(np.stack(sample_clip_indices(count, fps, max_clips=max_clips)))  # (clips, 5)
        unique, inverse = np.unique(indices, return_inverse=True)
        wanted, frames = set(unique.tolist()), {}
        for i in range(int(unique[-1]) + 1):
            if not capture.grab():
                raise ValueError(f"{path}: OpenCV read {i} of {count} frames")
            if i in wanted:
                frames[i] = cv2.cvtColor(capture.retrieve()[1], cv2.COLOR_BGR2RGB)
    finally:
        capture.release()
    pixels = frames_to_tensor(np.stack([frames[i] for i in unique.tolist()]), size)  # (u, 3, size, size)
    return pixels[torch.from_numpy(inverse.reshape(indices.shape))]  # (clips, 5, 3, size, size)
