"""Every route the README promises for a staged Hub folder, run as a user would run it; writes one JSON report.

    python scripts/hub_routes.py STAGE_DIR '[["query", "passage"], ...]' REPORT.json

Meant to run in a fresh process of any environment (transformers 4.46 – 5.x, with or without this repository):
it imports only torch, transformers, sentence-transformers and the stage's own handler.py, never this checkout.
Each route's raw scores (logits) for the pairs are reported, or the error it raised; routes that apply a sigmoid by
default (CrossEncoder.predict, the text-classification pipeline) are reported both ways.
"""

import importlib.util
import json
import sys
import traceback


def route(report, name, run):
    try:
        report[name] = run()
    except Exception as error:  # the report names the failing route and why; the caller decides
        report[name] = {
            "error": f"{type(error).__name__}: {error}"[:2000],
            "traceback": traceback.format_exc()[-3000:],
        }


def main(stage, pairs):
    import torch
    import transformers

    report = {"versions": {"transformers": transformers.__version__, "torch": torch.__version__}}
    queries, passages = [q for q, _ in pairs], [d for _, d in pairs]
    query = queries[0]
    same_query = [d for q, d in pairs if q == query]

    def auto_config():
        config = transformers.AutoConfig.from_pretrained(stage, trust_remote_code=True)
        return {"model_type": config.model_type, "scorer": config.scorer, "module": type(config).__module__}

    def tokenizer_as_is():  # AutoTokenizer without trust_remote_code: does it ask before running custom code?
        import builtins

        asked = []

        def no_answer(prompt=""):
            asked.append(prompt)
            raise EOFError  # as if the user typed nothing: transformers then loads without custom code

        builtins.input, real_input = no_answer, builtins.input
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(stage)
        finally:
            builtins.input = real_input
        return {"class": type(tokenizer).__name__, "ids": tokenizer(query)["input_ids"], "prompted": bool(asked)}

    def tokenizer_without_remote_code():
        tokenizer = transformers.AutoTokenizer.from_pretrained(stage, trust_remote_code=False)
        return {"class": type(tokenizer).__name__, "ids": tokenizer(query)["input_ids"]}

    def auto_model():
        model = transformers.AutoModel.from_pretrained(stage, trust_remote_code=True)
        ranked = model.rerank(query, same_query)
        return {
            "module": type(model).__module__,
            "compute_score": model.compute_score(pairs),
            "rerank": [[r["index"], r["score"]] for r in ranked],
        }

    def sequence_classification():
        model = transformers.AutoModelForSequenceClassification.from_pretrained(stage, trust_remote_code=True).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(stage, trust_remote_code=False)
        with torch.no_grad():
            logits = model(**tokenizer(queries, passages, padding=True, truncation=True, return_tensors="pt")).logits
        return {"shape": list(logits.shape), "logits": logits.squeeze(-1).tolist()}

    def cross_encoder():
        import sentence_transformers
        from sentence_transformers import CrossEncoder

        model = CrossEncoder(stage, trust_remote_code=True)
        ranked = model.rank(query, same_query)
        return {
            "version": sentence_transformers.__version__,
            "predict_default": [float(x) for x in model.predict(pairs)],
            "rank": [[r["corpus_id"], float(r["score"])] for r in ranked],
        }

    def pipeline():
        pipe = transformers.pipeline("text-classification", model=stage, trust_remote_code=True)
        inputs = [{"text": q, "text_pair": d} for q, d in pairs]
        return {
            "default": [r["score"] for r in pipe(inputs)],
            "raw": [r["score"] for r in pipe(inputs, function_to_apply="none")],
        }

    def handler():
        spec = importlib.util.spec_from_file_location("stage_handler", f"{stage}/handler.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        endpoint = module.EndpointHandler(stage)
        ranked = endpoint({"inputs": {"query": query, "texts": same_query, "return_documents": True}})
        return {
            "pairs": endpoint({"inputs": pairs})["scores"],
            "ranked": [[r["index"], r["score"], r["text"] == same_query[r["index"]]] for r in ranked],
        }

    for name, run in [
        ("AutoConfig", auto_config),
        ("AutoTokenizer", tokenizer_as_is),
        ("AutoTokenizer (trust_remote_code=False)", tokenizer_without_remote_code),
        ("AutoModel", auto_model),
        ("AutoModelForSequenceClassification", sequence_classification),
        ("CrossEncoder", cross_encoder),
        ("pipeline", pipeline),
        ("handler", handler),
    ]:
        route(report, name, run)
    return report


if __name__ == "__main__":
    with open(sys.argv[3], "w", encoding="utf-8") as out:
        json.dump(main(sys.argv[1], json.loads(sys.argv[2])), out)
