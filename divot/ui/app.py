"""The ``divot ui`` page: one ``gr.Blocks`` with three tabs over a ``Divot`` (Chat, Generate, Story).

Callbacks here only move values between the page and ``divot.ui.handlers``, and turn what goes wrong into a
readable message: the tab's status line says it, and a ``gr.Error`` pops up; never a traceback (unexpected
errors are logged with theirs). Every control has a stable ``elem_id`` (``ELEM_IDS``, docs/ui.md). Model calls
share one queue slot (``concurrency_id="model"``): one generation at a time, as the streaming API requires.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from divot.diffusion.config import SAMPLERS
from divot.ui import handlers
from divot.ui.examples import write_example_clips
from divot.ui.storyboard import board_html

logger = logging.getLogger(__name__)

# elem_id -> what it is; the browser test and docs/ui.md use these names.
ELEM_IDS = {
    "model-info": "the model's name and device (Markdown)",
    "tab-chat": "the Chat tab", "tab-generate": "the Generate tab", "tab-story": "the Story tab",
    "chat-video": "video to talk about (upload, or filled by an example)",
    "chat-examples": "example shapes clips (click one to load it)",
    "chat-seed": "sampling seed of the answers",
    "chat-history": "the conversation (question / answer messages)",
    "chat-question": "question box (Enter asks)", "chat-ask": "Ask button", "chat-clear": "Clear button",
    "chat-status": "status line (what is being talked about, errors)",
    "gen-notice": "why the tab is off (a model without de-tokenizer); empty otherwise",
    "gen-prompt": "what to show", "gen-sampler": "de-tokenizer sampler", "gen-steps": "sampling steps",
    "gen-guidance": "classifier-free guidance scale (1: off)", "gen-seed": "seed", "gen-clips": "2-second clips",
    "gen-run": "Generate button", "gen-video": "the generated video (mp4)",
    "gen-status": "status line (what was made and how, errors)",
    "story-notice": "why the tab is off (a model without de-tokenizer); empty otherwise",
    "story-instruction": "what the story is about", "story-segments": "number of segments (text + clip)",
    "story-steps": "sampling steps per clip", "story-seed": "seed", "story-run": "Tell button",
    "story-board": "the storyboard (segments: story-segment-N)", "story-status": "status line (progress, errors)",
}
STYLE = "#chat-history {min-height: 320px}"
# gradio reads a callback's progress tracker from its default argument; track_tqdm shows the de-tokenizer's bar
PROGRESS = gr.Progress(track_tqdm=True)


def _message(err: Exception) -> str:
    """The page's words for ``err``: a ``UIError``'s message as is; anything else named, details in the log."""
    if isinstance(err, handlers.UIError):
        return str(err)
    logger.error("the page's request failed", exc_info=err)
    return f"Something went wrong ({type(err).__name__}: {err}). The server log has the details."


def _failure(err: Exception, count: int, status_at: int):
    """Updates for ``count`` outputs that only write the error into the status line at ``status_at``, and the
    ``gr.Error`` to raise after them."""
    message = _message(err)
    updates = [gr.skip()] * count
    updates[status_at] = f"**Error:** {message}"
    return tuple(updates), gr.Error(message, print_exception=False)


def build_app(model, work_dir: str | Path, model_name: str = "") -> gr.Blocks:
    """The page for ``model`` (a ``divot.chat.Divot``). ``work_dir``: a folder for the example clips and the
    generated videos (the caller removes it); serve it with ``launch`` (which allows gradio to read it)."""
    work_dir = Path(work_dir)
    outputs = work_dir / "generated"
    outputs.mkdir(parents=True, exist_ok=True)
    examples = write_example_clips(work_dir / "examples")
    defaults = model.generation_defaults
    notice = handlers.rendering_notice(model)
    renders = notice is None

    with gr.Blocks(title="Divot", analytics_enabled=False) as app:
        gr.Markdown(f"## Divot\nModel **{model_name or 'Divot'}** on `{model.device}`.", elem_id="model-info")
        with gr.Tab("Chat", elem_id="tab-chat"):
            chat_state = gr.State(None)
            with gr.Row():
                with gr.Column(scale=1):
                    video = gr.Video(label="Video", sources=["upload"], elem_id="chat-video", height=260)
                    gr.Examples([[str(path)] for path, _ in examples], inputs=[video], label="Example clips",
                                example_labels=[caption for _, caption in examples], elem_id="chat-examples")
                    chat_seed = gr.Number(0, label="Seed", precision=0, minimum=0, elem_id="chat-seed")
                with gr.Column(scale=2):
                    chat = gr.Chatbot(label="Conversation", elem_id="chat-history", height=360,
                                      buttons=["copy", "copy_all"])
                    question = gr.Textbox(label="Question", placeholder="What colour is the object?",
                                          elem_id="chat-question")
                    with gr.Row():
                        ask = gr.Button("Ask", variant="primary", elem_id="chat-ask")
                        clear = gr.Button("Clear", elem_id="chat-clear")
                    chat_status = gr.Markdown(handlers.ChatState().status(), elem_id="chat-status")
        with gr.Tab("Generate", elem_id="tab-generate"):
            gr.Markdown(notice or "", elem_id="gen-notice")
            with gr.Row():
                with gr.Column():
                    prompt = gr.Textbox(label="Prompt", placeholder="a red circle moves left", elem_id="gen-prompt",
                                        interactive=renders)
                    sampler = gr.Dropdown(list(SAMPLERS), value=defaults.sampler, label="Sampler",
                                          elem_id="gen-sampler", interactive=renders)
                    steps = gr.Slider(1, 100, value=defaults.num_steps, step=1, label="Steps", elem_id="gen-steps",
                                      interactive=renders)
                    guidance = gr.Slider(1, 15, value=defaults.guidance_scale, step=0.5, label="Guidance scale",
                                         elem_id="gen-guidance", interactive=renders)
                    with gr.Row():
                        gen_seed = gr.Number(0, label="Seed", precision=0, minimum=0, elem_id="gen-seed",
                                             interactive=renders)
                        clips = gr.Slider(1, 4, value=1, step=1, label="Clips (2 s each)", elem_id="gen-clips",
                                          interactive=renders)
                    run = gr.Button("Generate", variant="primary", elem_id="gen-run", interactive=renders)
                with gr.Column():
                    generated = gr.Video(label="Generated video", elem_id="gen-video", interactive=False,
                                         autoplay=True, loop=True, height=300)
                    gen_status = gr.Markdown("", elem_id="gen-status")
        with gr.Tab("Story", elem_id="tab-story"):
            gr.Markdown(notice or "", elem_id="story-notice")
            with gr.Row():
                instruction = gr.Textbox(label="Instruction", placeholder="Generate a story about a red circle.",
                                         elem_id="story-instruction", scale=3, interactive=renders)
                segments = gr.Slider(1, 6, value=3, step=1, label="Segments", elem_id="story-segments",
                                     interactive=renders)
            with gr.Row():
                story_steps = gr.Slider(1, 100, value=defaults.num_steps, step=1, label="Steps per clip",
                                        elem_id="story-steps", interactive=renders)
                story_seed = gr.Number(0, label="Seed", precision=0, minimum=0, elem_id="story-seed",
                                       interactive=renders)
                tell = gr.Button("Tell", variant="primary", elem_id="story-run", interactive=renders)
            story_status = gr.Markdown("", elem_id="story-status")
            board = gr.HTML(board_html([], []), elem_id="story-board")

        def on_video(state, path):
            state = handlers.ChatState()
            return state, [], "New video: ask a question." if path else state.status()

        def on_ask(state, path, text, seed):
            try:
                for new_state, messages, status in handlers.chat_answer(model, state, path, text, seed):
                    yield new_state, messages, status, gr.skip()
                yield gr.skip(), gr.skip(), gr.skip(), ""  # the question box empties once answered
            except Exception as err:  # noqa: BLE001 (every failure becomes a message on the page)
                updates, error = _failure(err, 4, status_at=2)
                yield updates
                raise error from None

        def on_clear(state):
            return handlers.chat_clear(state)

        def on_generate(text, sampler_name, num_steps, scale, seed, num_clips, progress=PROGRESS):
            try:
                yield None, "Writing the clip tokens, then rendering them …"
                progress(0, desc="writing the clip tokens")
                path, status = handlers.generate_clip(model, text, sampler_name, num_steps, scale, seed, num_clips,
                                                      out_dir=outputs)
                yield str(path), status
            except Exception as err:  # noqa: BLE001
                updates, error = _failure(err, 2, status_at=1)
                yield updates
                raise error from None

        def on_tell(text, count, num_steps, seed):
            try:
                yield from handlers.story_board(model, text, count, seed, num_steps)
            except Exception as err:  # noqa: BLE001
                updates, error = _failure(err, 2, status_at=1)
                yield updates
                raise error from None

        model_slot = {"concurrency_id": "model", "concurrency_limit": 1}
        video.change(on_video, [chat_state, video], [chat_state, chat, chat_status], queue=False)
        asking = {"fn": on_ask, "inputs": [chat_state, video, question, chat_seed],
                  "outputs": [chat_state, chat, chat_status, question], "show_progress": "minimal", **model_slot}
        ask.click(**asking)
        question.submit(**asking)
        clear.click(on_clear, [chat_state], [chat_state, chat, chat_status], queue=False)
        chat.clear(on_clear, [chat_state], [chat_state, chat, chat_status], queue=False)  # its trash icon
        run.click(on_generate, [prompt, sampler, steps, guidance, gen_seed, clips], [generated, gen_status],
                  **model_slot)
        tell.click(on_tell, [instruction, segments, story_steps, story_seed], [board, story_status],
                   show_progress="minimal", **model_slot)
    return app


def theme():
    """The default theme with the system's fonts (nothing is fetched from a font service)."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def launch(app: gr.Blocks, work_dir: str | Path, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           block: bool = True):
    """Serve ``app`` on ``host:port`` (``share``: also through a public gradio.live link). ``block=False``
    returns at once (the server runs in a thread; ``app.close()`` stops it)."""
    app.queue(default_concurrency_limit=1)
    return app.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block, quiet=True,
                      show_error=True, allowed_paths=[str(work_dir)], ssr_mode=False, theme=theme(), css=STYLE)
