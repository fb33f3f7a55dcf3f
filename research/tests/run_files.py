"""Hand-written TREC run files for the research tests (not lite_rerank's writer, so a reader is checked against text
made independently of the project)."""


def write_ranked_run(path, rankings: dict[str, list[str]]) -> str:
    """`rankings` {query: passages, best first} as a TREC run at `path`, scores falling with rank; returns the path."""
    path.write_text("".join(f"{q} Q0 {d} {r} {-r} t\n" for q, docs in rankings.items() for r, d in enumerate(docs, 1)))
    return str(path)
