"""RAG eval math (recall@k, MRR, passage dedupe, answer containment) and the SQuAD / NQ-open readers."""

import pytest

from llmkit.core.errors import ConfigError
from llmkit.rag.evaluate import (QA, answer_ceiling, contains_answer, first_relevant, nq_items, passage_ranking,
                                 rank_of, retrieval_metrics, squad_items)
from llmkit.rag.splitters import Chunk
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


def test_contains_answer_matches_whole_normalised_tokens():
    assert contains_answer("The tower opened in 1889, in Paris.", ["1889"])
    assert contains_answer("Played by Justin  Timberlake!", ["justin timberlake"])  # case, spaces, punctuation
    assert contains_answer("It was the Beatles.", ["The Beatles"])  # articles dropped on both sides
    assert not contains_answer("In 18890 BC", ["1889"])  # not a token
    assert not contains_answer("anything", ["", "the"])  # an answer that normalises to nothing never matches


def test_first_relevant_without_gold_uses_answers_and_passages():
    item = QA("who?", ["Ada Lovelace"], None)
    hits = [Hit("c1", "Charles Babbage designed it.", {"passage": "p1"}, 1),
            Hit("c2", "A note on engines.", {"passage": "p2"}, 1),
            Hit("c3", "Ada Lovelace wrote the first program.", {"passage": "p1"}, 1),  # a later chunk of p1
            Hit("c4", "Ada Lovelace again.", {"passage": "p3"}, 1)]
    assert first_relevant(item, hits, 10) == 1  # p1 is relevant through its second chunk
    assert first_relevant(item, hits[1:2] + hits[3:], 1) is None  # p3 is outside the first passage
    assert first_relevant(QA("q", ["x"], "p2"), hits, 10) == 2  # with a gold passage: by id


def test_answer_ceiling():
    corpus = [Chunk("a", "Paris is in France.", {}), Chunk("b", "Rome is in Italy.", {})]
    items = [QA("q", ["Paris"], None), QA("q", ["Madrid", "Italy"], None), QA("q", ["Berlin"], None)]
    assert answer_ceiling(corpus, items) == pytest.approx(2 / 3)


def test_nq_open_items_and_the_packaged_wikipedia_corpus():
    passages, items = nq_items(20)
    assert len(items) == 20 and all(it.gold is None and it.answers for it in items)
    assert len(passages) > 9000 and len({p.id for p in passages}) == len(passages)
    assert any(p.metadata["title"] == "Albert Einstein" for p in passages)
    assert 0.2 < answer_ceiling(passages, items) <= 1.0


def test_rag_eval_rejects_an_unknown_dataset():
    from llmkit.rag.api import rag_eval

    with pytest.raises(ConfigError, match="'trivia'.*squad or nq_open"):
        rag_eval("trivia")


@pytest.mark.slow
def test_rag_eval_end_to_end_on_both_datasets(tmp_path):
    from llmkit.rag.api import rag_eval

    squad = rag_eval("squad", limit=200, db=str(tmp_path / "e.sqlite"))
    r = squad["retrieval"]
    assert squad["questions"] == 200 and set(r) == {"dense", "bm25", "hybrid"}
    assert r["hybrid"]["recall@5"] >= max(r["dense"]["recall@5"], r["bm25"]["recall@5"]) - 0.01
    assert r["hybrid"]["recall@10"] > 0.95
    nq = rag_eval("nq_open", limit=100, db=str(tmp_path / "e.sqlite"))
    assert nq["passages"] > 9000 and 0.2 < nq["answer_in_corpus"] < 0.7
    assert 0.05 < nq["retrieval"]["dense"]["recall@10"] <= nq["answer_in_corpus"]
