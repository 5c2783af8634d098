"""Document functions of the ``shapes_egoschema_mcppl`` lmms-eval task (shapes_egoschema.yaml).

The prompt text is the one ``divot eval egoschema --mode ll`` builds (``divot.eval.multiple_choice.mc_text``
with its default template), so both rank the same five continuations after the same prompt.
"""

from divot.eval.multiple_choice import LL_TEMPLATE, format_options


def doc_to_visual(doc):
    return [doc["video"]]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return LL_TEMPLATE.format(question=doc["question"], options=format_options(list(doc["option"])))


def doc_to_choice(doc):
    return list(doc["option"])


def process_results(doc, results):
    """``results``: the model's (loss, is_greedy) per option; the prediction is the lowest loss (first on ties,
    as ``np.argmin``)."""
    losses = [float(loss) for loss, _ in results]
    pred = min(range(len(losses)), key=losses.__getitem__)
    return {"accuracy": {"q_uid": doc["q_uid"], "pred": pred, "answer": int(doc["answer"])}}


def aggregate_accuracy(results, args=None):
    return sum(r["pred"] == r["answer"] for r in results) / len(results)
