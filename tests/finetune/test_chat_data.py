"""Fine-tuning data: format detection, masks on assistant tokens only, padding, resumable loader, bad input."""

import json

import pytest
import torch

from llmkit.data.batching import IGNORE, ExampleLoader, collate_pairs, collate_sft, collate_unpaired
from llmkit.data.chat_data import (encode_completion, encode_conversation, load_conversations, load_preferences,
                                   load_unpaired, template_for)
from llmkit.data.errors import DataError


def _write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


SAME = [{"role": "user", "content": "What is 2+3?"}, {"role": "assistant", "content": "5"}]


@pytest.mark.parametrize("record", [
    {"messages": SAME},
    {"conversations": [{"from": "human", "value": "What is 2+3?"}, {"from": "gpt", "value": "5"}]},
    {"instruction": "What is 2+3?", "input": "", "output": "5"},
])
def test_three_formats_give_the_same_messages(tmp_path, record):
    assert load_conversations(_write(tmp_path / "d.jsonl", [record, record])) == [SAME, SAME]


def test_alpaca_input_and_system(tmp_path):
    rec = {"instruction": "Add", "input": "2 and 3", "output": "5", "system": "Be brief."}
    msgs = load_conversations(_write(tmp_path / "a.jsonl", [rec]))[0]
    assert msgs == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add\n\n2 and 3"},
                    {"role": "assistant", "content": "5"}]


def test_mask_covers_only_assistant_tokens(smol_tok):
    template = template_for(smol_tok)
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello there"}, {"role": "user", "content": "bye"},
            {"role": "assistant", "content": "Goodbye"}]
    ids, mask = encode_conversation(smol_tok, template, msgs, 512)
    trained = smol_tok.decode([t for t, m in zip(ids, mask) if m])
    assert trained == "Hello there<|im_end|>Goodbye<|im_end|>"
    x, y = collate_sft([(ids, mask), (ids[:10] + ids[-6:], mask[:10] + mask[-6:])], smol_tok.pad_id)
    assert x.shape == y.shape == (2, len(ids) - 1)
    assert smol_tok.decode([int(t) for t in y[0] if t != IGNORE]) == trained
    assert torch.all(y[1, 15:] == IGNORE)  # padding never carries loss


def test_completion_split_and_pairs(smol_tok):
    template = template_for(smol_tok)
    prompt = [{"role": "user", "content": "2+3?"}]
    c = encode_completion(smol_tok, template, prompt, "5", 64)
    r = encode_completion(smol_tok, template, prompt, "six", 64)
    assert smol_tok.decode(c.prompt).endswith("<|im_start|>assistant\n")
    assert smol_tok.decode([t for t, m in zip(c.answer, c.mask) if m]) == "5<|im_end|>"
    x, y = collate_pairs([(c, r), (r, c)], smol_tok.pad_id)
    assert x.shape[0] == 4
    assert smol_tok.decode([int(t) for t in y[1] if t != IGNORE]) == "six<|im_end|>"
    assert smol_tok.decode([int(t) for t in y[2] if t != IGNORE]) == "six<|im_end|>"  # rejected of pair 0
    x, y, d = collate_unpaired([(c, True), (r, False)], smol_tok.pad_id)
    assert x.shape[0] == 4 and d.tolist() == [True, False]
    assert smol_tok.decode([int(t) for t in y[2] if t != IGNORE]) == "six<|im_end|>"  # prompt 0 + answer 1
    assert encode_completion(smol_tok, template, prompt, "5", 8) is None  # the prompt alone fills max_len


def test_loader_resumes_exactly_and_shards():
    data = list(range(10))
    a = ExampleLoader(data, 3, list, seed=4)
    seen = [next(a) for _ in range(5)]  # crosses an epoch (3 batches of 3 per epoch)
    b = ExampleLoader(data, 3, list, seed=4)
    for _ in range(2):
        next(b)
    c = ExampleLoader(data, 3, list, seed=4)
    c.load_state_dict(b.state_dict())
    assert [next(c) for _ in range(3)] == seen[2:]
    r0, r1 = ExampleLoader(data, 2, list, seed=4, rank=0, world_size=2), ExampleLoader(data, 2, list, seed=4,
                                                                                      rank=1, world_size=2)
    whole = ExampleLoader(data, 4, list, seed=4)
    assert next(r0) + next(r1) == next(whole)
    with pytest.raises(DataError, match="trained on 10 examples"):
        ExampleLoader(list(range(11)), 3, list).load_state_dict(a.state_dict())


def test_preference_and_unpaired_files(tmp_path):
    pref = load_preferences(_write(tmp_path / "p.jsonl", [
        {"prompt": "2+3?", "chosen": "5", "rejected": "6"},
        {"prompt": [{"role": "user", "content": "1+1?"}], "chosen": [{"role": "assistant", "content": "2"}],
         "rejected": "3"}]))
    assert pref[1] == ([{"role": "user", "content": "1+1?"}], "2", "3")
    kto = load_unpaired(_write(tmp_path / "k.jsonl", [{"prompt": "a", "completion": "b", "label": True},
                                                      {"prompt": "a", "completion": "c", "label": False}]))
    assert [k[2] for k in kto] == [True, False]


@pytest.mark.parametrize("lines, needle", [
    ([json.dumps({"messages": SAME}), '{"messages": [1, 2'], "line 2 is not valid JSON"),
    (['', '[1, 2]'], "line 2 is a JSON list"),
    (['{"text": "hello"}'], "cannot tell the conversation format of d.jsonl line 1"),
    ([json.dumps({"messages": SAME}), json.dumps({"messages": SAME[:1]})], "line 2 has no assistant turn"),
    ([json.dumps({"conversations": [{"from": "robot", "value": "x"}]})], "unknown ShareGPT speaker"),
    ([], "holds no records"),
])
def test_bad_conversation_files(tmp_path, lines, needle):
    with pytest.raises(DataError, match=needle):
        load_conversations(_write(tmp_path / "d.jsonl", lines))


def test_bad_preference_files(tmp_path):
    with pytest.raises(DataError, match="line 1 lacks \\['rejected'\\]"):
        load_preferences(_write(tmp_path / "p.jsonl", [{"prompt": "a", "chosen": "b"}]))
    with pytest.raises(DataError, match="'label' must be true or false"):
        load_unpaired(_write(tmp_path / "k.jsonl", [{"prompt": "a", "completion": "b", "label": "yes"}]))
    with pytest.raises(DataError, match="needs both labels"):
        load_unpaired(_write(tmp_path / "k.jsonl", [{"prompt": "a", "completion": "b", "label": True}]))
    with pytest.raises(DataError, match="not found"):
        load_preferences(tmp_path / "missing.jsonl")
