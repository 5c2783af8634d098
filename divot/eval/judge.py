"""LLM judges for open-ended video QA, with the Video-ChatGPT prompt (yes/no + a 0-5 score).

The prompt (``judge_messages``) is Video-ChatGPT's ``evaluate_activitynet_qa.py`` one, as also used by
lmms-eval's ActivityNet-QA task: a system message describing the task and a user message with the question,
the correct and the predicted answer, asking for a Python dict string ``{'pred': 'yes', 'score': 4}``.

Two ways to serve it:
- ``HFJudge``: a local Hugging Face causal LM directory (``AutoModelForCausalLM`` + ``AutoTokenizer``; the chat
  template when the tokenizer has one), greedy, ``max_new_tokens`` 64;
- ``HTTPJudge``: an OpenAI-compatible endpoint given by URL (``.../v1`` or ``.../v1/chat/completions``), with
  ``urllib`` (no extra dependency); temperature 0. An API key is read from an environment variable (never
  written anywhere).

``make_judge(spec)`` picks one: a URL (http:// or https://) or a directory. Every judge has ``identity``
(kind, model path or URL + model name, and what the server reported as its model), which the summary records.
A reply that is not a dict with 'pred' and 'score' is parsed leniently (a yes / no word, a number); when that
fails too the item is counted as ``judge_unparseable`` and scored as "no", 0.
"""

from __future__ import annotations

import ast
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from divot.openai_chat import ChatClient

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are an intelligent chatbot designed for evaluating the correctness of generative outputs for "
    "question-answer pairs. Your task is to compare the predicted answer with the correct answer and determine "
    "if they match meaningfully. Here's how you can accomplish the task:------##INSTRUCTIONS: "
    "- Focus on the meaningful match between the predicted answer and the correct answer.\n"
    "- Consider synonyms or paraphrases as valid matches.\n"
    "- Evaluate the correctness of the prediction compared to the answer."
)
USER_PROMPT = (
    "Please evaluate the following video-based question-answer pair:\n\n"
    "Question: {question}\nCorrect Answer: {answer}\nPredicted Answer: {pred}\n\n"
    "Provide your evaluation only as a yes/no and score where the score is an integer value between 0 and 5, "
    "with 5 indicating the highest meaningful match. Please generate the response in the form of a Python "
    "dictionary string with keys 'pred' and 'score', where value of 'pred' is  a string of 'yes' or 'no' and "
    "value of 'score' is in INTEGER, not STRING.DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR EXPLANATION. Only "
    "provide the Python dictionary string. For example, your response should look like this: "
    "{{'pred': 'yes', 'score': 4.8}}."
)
JUDGE_MAX_NEW_TOKENS = 64


@dataclass
class JudgeResult:
    correct: bool  # the judge said "yes"
    score: float  # 0..5
    raw: str  # the judge's reply as it came
    parsed: bool  # False: the reply could not be read (scored as no, 0)


def judge_messages(question: str, answer: str, prediction: str) -> list[dict]:
    """The Video-ChatGPT judge conversation (OpenAI chat format)."""
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_PROMPT.format(question=question, answer=answer, pred=prediction)}]


def parse_judge_reply(reply: str) -> JudgeResult:
    """``{'pred': 'yes', 'score': 4}`` -> JudgeResult(True, 4.0); lenient about extra text around the dict."""
    text = reply.strip()
    m = re.search(r"\{.*?\}", text, re.DOTALL)
    if m:
        try:
            d = ast.literal_eval(m.group(0))
            pred, score = str(d["pred"]).strip().lower(), float(d["score"])
            if pred in ("yes", "no"):
                return JudgeResult(pred == "yes", min(max(score, 0.0), 5.0), reply, True)
        except (ValueError, SyntaxError, KeyError, TypeError):
            pass
    word = re.search(r"\b(yes|no)\b", text, re.IGNORECASE)
    number = re.search(r"\b([0-5](?:\.\d+)?)\b", text)
    if word and number:
        return JudgeResult(word.group(1).lower() == "yes", float(number.group(1)), reply, True)
    return JudgeResult(False, 0.0, reply, False)


class HTTPJudge(ChatClient):
    """An OpenAI-compatible chat-completions endpoint (``divot.openai_chat.ChatClient``: retries on 429 / 5xx,
    the server's model and fingerprint recorded). ``url``: the API base (``http://host:8000/v1``) or the full
    ``.../chat/completions`` URL; ``model``: the model name sent in each request (``--judge-model``)."""

    what = "judge endpoint"

    def __init__(self, url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY", timeout: float = 60.0,
                 max_tokens: int = JUDGE_MAX_NEW_TOKENS, retries: int = 2):
        super().__init__(url, model, api_key_env=api_key_env, timeout=timeout, max_tokens=max_tokens,
                         retries=retries)

    @property
    def identity(self) -> dict:
        return {**super().identity, "prompt": "video-chatgpt"}

    def __call__(self, question: str, answer: str, prediction: str) -> JudgeResult:
        return parse_judge_reply(self.complete(judge_messages(question, answer, prediction)))


class HFJudge:
    """A local Hugging Face causal LM (a directory with config.json, weights and a tokenizer), greedy."""

    def __init__(self, path: str | Path, device=None, max_new_tokens: int = JUDGE_MAX_NEW_TOKENS):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(f"judge model directory {self.path} has no config.json")
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModelForCausalLM.from_pretrained(self.path).eval()
        if device is not None:
            self.model.to(device)
        self.max_new_tokens = max_new_tokens

    @property
    def identity(self) -> dict:
        config = self.model.config
        return {"kind": "huggingface-local", "path": str(self.path.resolve()),
                "name": getattr(config, "_name_or_path", None), "model_type": config.model_type,
                "transformers_version": getattr(config, "transformers_version", None),
                "greedy": True, "max_new_tokens": self.max_new_tokens, "prompt": "video-chatgpt"}

    def complete(self, messages: list[dict]) -> str:
        import torch

        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)["input_ids"]
        else:
            text = "\n\n".join(m["content"] for m in messages) + "\n"
            ids = tok(text, return_tensors="pt").input_ids
        ids = ids.to(self.model.device)
        with torch.no_grad():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                      max_new_tokens=self.max_new_tokens,
                                      pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
        return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    def __call__(self, question: str, answer: str, prediction: str) -> JudgeResult:
        return parse_judge_reply(self.complete(judge_messages(question, answer, prediction)))


def make_judge(spec: str, model_name: str | None = None, api_key_env: str | None = "OPENAI_API_KEY", device=None):
    """A judge from ``spec``: an http(s) URL (OpenAI-compatible; needs ``model_name``) or a local HF directory."""
    if re.match(r"^https?://", spec):
        return HTTPJudge(spec, model_name or "", api_key_env=api_key_env)
    path = Path(spec)
    if not path.is_dir():
        raise FileNotFoundError(f"judge {spec!r} is neither an http(s) URL nor a model directory")
    return HFJudge(path, device=device)
