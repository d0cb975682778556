"""RAG eval math (recall@k, MRR, passage dedupe) and the SQuAD reader."""

import pytest

from llmkit.rag.evaluate import passage_ranking, rank_of, retrieval_metrics, squad_items
from llmkit.rag.store import Hit


def test_retrieval_metrics_known_values():
    m = retrieval_metrics([1, 3, None, 7], ks=(1, 5, 10))
    assert m["recall@1"] == 0.25 and m["recall@5"] == 0.5 and m["recall@10"] == 0.75
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 7) / 4)
    assert rank_of("b", ["a", "b"]) == 2 and rank_of("z", ["a"]) is None


def test_passage_ranking_dedupes_chunks():
    hits = [Hit("c1", "", {"passage": "p1"}, 1), Hit("c2", "", {"passage": "p2"}, 1),
            Hit("c3", "", {"passage": "p1"}, 1), Hit("p3", "", {}, 1)]
    assert passage_ranking(hits) == ["p1", "p2", "p3"]


def test_squad_items_have_gold_passages():
    passages, items = squad_items(50)
    ids = {p.id for p in passages}
    assert len(items) == 50 and all(it.gold in ids for it in items)
    assert all(it.question.endswith("?") or it.question for it in items) and items[0].answers
    gold = {p.id: p.text for p in passages}
    assert sum(any(a.lower() in gold[it.gold].lower() for a in it.answers) for it in items) >= 45
