"""Chat templates render like transformers, and the SFT mask covers assistant turns exactly."""

from __future__ import annotations

import datetime

import pytest

from llmkit.core.errors import TemplateError
from llmkit.tokenizer import ChatTemplate, Tokenizer

SYSTEM = {"role": "system", "content": "You are terse."}
CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [SYSTEM, {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
    [{"role": "user", "content": "Name a fruit"}, {"role": "assistant", "content": "Apple."},
     {"role": "user", "content": "Another, with accents: café ☕"},
     {"role": "assistant", "content": "Pêche 🍑 — 12 of them.\n  def f():\n    return 1"}],
    [SYSTEM, {"role": "user", "content": "empty?"}, {"role": "assistant", "content": ""}],
]
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def mask_runs(tok: Tokenizer, ids: list[int], mask: list[int]) -> list[str]:
    """Decoded text of each maximal run of mask == 1."""
    runs, current = [], []
    for i, m in zip(ids, mask):
        if m:
            current.append(i)
        elif current:
            runs.append(tok.decode(current))
            current = []
    if current:
        runs.append(tok.decode(current))
    return runs


def assistant_contents(messages) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "assistant"]


@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_smollm_template_matches_transformers(smol, hf_smol_gguf, conversation, add_generation_prompt):
    template = ChatTemplate.from_tokenizer(smol)
    ours = template.render_text(conversation, add_generation_prompt=add_generation_prompt)
    theirs = hf_smol_gguf.apply_chat_template(conversation, tokenize=False,
                                              add_generation_prompt=add_generation_prompt)
    assert ours == theirs
    if conversation[0]["role"] != "system":
        assert "You are a helpful AI assistant named SmolLM" in ours  # the template's default system turn


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_smollm_mask_is_assistant_content_plus_im_end(smol, conversation):
    template = ChatTemplate.from_tokenizer(smol)
    ids, mask = template.render(smol, conversation)
    assert ids == smol.encode(template.render_text(conversation), allowed_special="all")
    assert len(mask) == len(ids)
    runs = mask_runs(smol, ids, mask)
    expected = [c + "<|im_end|>" for c in assistant_contents(conversation)]
    # A run may start one token early when the header's "\n" and the content's
    # leading spaces share a token; content that starts with \S is exact.
    assert len(runs) == len(expected)
    for run, want in zip(runs, expected):
        assert run == want or (run.endswith(want) and run[:-len(want)].isspace()), (run, want)
    im_end = smol.special_tokens["<|im_end|>"]
    masked_ends = sum(1 for i, m in zip(ids, mask) if m and i == im_end)
    assert masked_ends == len(expected) and ids.count(im_end) > masked_ends  # user turns stay unmasked


def test_generation_prompt_is_not_masked(smol):
    ids, mask = ChatTemplate.from_tokenizer(smol).render(smol, CONVERSATIONS[1] + [
        {"role": "user", "content": "And 3+3?"}], add_generation_prompt=True)
    assert smol.decode(ids).endswith("<|im_start|>assistant\n")
    assert mask_runs(smol, ids, mask) == ["4<|im_end|>"] and mask[-3:] == [0, 0, 0]


def test_mask_stays_aligned_when_bytes_are_dropped(smol):
    # SmolLM2 has no token for 0x04: the encoder drops it, the mask must not shift.
    conversation = [{"role": "user", "content": "x\x04y"}, {"role": "assistant", "content": "a.\x04.b"}]
    ids, mask = ChatTemplate.builtin("chatml").render(smol, conversation)
    assert mask_runs(smol, ids, mask) == ["a..b<|im_end|>"]


@pytest.fixture(scope="module")
def llama_tok(smol_fields) -> Tokenizer:
    """SmolLM2's vocab plus Llama-3's chat specials, enough to exercise the llama3 template."""
    specials = {s: 49152 + i for i, s in enumerate(LLAMA3_SPECIALS)}
    return Tokenizer.from_vocab(smol_fields["tokens"], smol_fields["merges"], pre="smollm",
                                special_tokens=specials, bos_id=49152, eos_id=49155)


def test_builtin_llama3_renders_and_masks(llama_tok):
    template = ChatTemplate.builtin("llama3")
    conversation = CONVERSATIONS[2]
    text = template.render_text(conversation, bos_token="<|begin_of_text|>", add_generation_prompt=True)
    assert text.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nName a fruit<|eot_id|>")
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    ids, mask = template.render(llama_tok, conversation)
    assert ids[0] == llama_tok.bos_id  # bos_token comes from the tokenizer
    # The template trims content; the mask follows the trimmed text.
    assert mask_runs(llama_tok, ids, mask) == [c.strip() + "<|eot_id|>" for c in assistant_contents(conversation)]


def test_builtin_chatml_and_alpaca(smol):
    conversation = CONVERSATIONS[1]
    chatml = ChatTemplate.builtin("chatml").render_text(conversation, add_generation_prompt=False)
    assert chatml == ("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
                      "<|im_start|>assistant\n4<|im_end|>\n")
    alpaca = ChatTemplate.builtin("alpaca")
    assert alpaca.render_text(conversation, eos_token="</s>") == \
        "You are terse.\n\n### Instruction:\nWhat is 2+2?\n\n### Response:\n4</s>\n\n"
    assert alpaca.render_text(conversation[1:2], add_generation_prompt=True).startswith("Below is an instruction")
    ids, mask = alpaca.render(smol, CONVERSATIONS[2])  # eos_token = SmolLM2's <|im_end|>
    assert mask_runs(smol, ids, mask) == [c + "<|im_end|>" for c in assistant_contents(CONVERSATIONS[2])]


@pytest.mark.parametrize("messages, named", [
    ([{"content": "hi"}], "no 'role'"),
    ([{"role": "robot", "content": "hi"}], "'robot'"),
    ([{"role": "user", "content": ["hi"]}], "list"),
    ([{"role": "user"}], "NoneType"),
    ({"role": "user", "content": "hi"}, "list of dicts"),
    (["hi"], "str"),
])
def test_bad_messages_raise(messages, named):
    with pytest.raises(TemplateError, match=named):
        ChatTemplate.builtin("chatml").render_text(messages)


def test_template_errors_are_typed():
    with pytest.raises(TemplateError, match=r"vicuna.*alpaca.*chatml.*llama3"):
        ChatTemplate.builtin("vicuna")
    with pytest.raises(TemplateError, match="line 1"):
        ChatTemplate("{% for m in messages %}")
    with pytest.raises(TemplateError, match="no tool role"):
        ChatTemplate.builtin("alpaca").render_text([{"role": "tool", "content": "42"}])
    with pytest.raises(TemplateError):  # the sandbox blocks attribute escapes
        ChatTemplate("{{ messages.__class__.__mro__ }}").render_text([])
    with pytest.raises(TemplateError, match="no chat_template"):
        ChatTemplate.from_tokenizer(Tokenizer.from_vocab([chr(c) for c in range(33, 127)], []))


def test_hf_template_helpers():
    template = ChatTemplate(
        "{{ messages | tojson }}|{{ strftime_now('%Y') }}|{% generation %}{{ tools[0].name }}{% endgeneration %}"
        "{% for m in messages %}{% if loop.index > 0 %}{% break %}{% endif %}{% endfor %}")
    out = template.render_text([{"role": "user", "content": "café"}], tools=[{"name": "calc"}])
    assert out == f'[{{"role": "user", "content": "café"}}]|{datetime.datetime.now().year}|calc'
