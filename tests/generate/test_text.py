from llmkit.generate.text import TextStream, held_suffix

VOCAB = {0: b"Hel", 1: b"lo", 2: b" wor", 3: b"ld", 4: b"\n", 5: b"\n", 6: "é".encode()[:1], 7: "é".encode()[1:],
         8: b"<special>"}


def _run(ids, stops=(), skip=()):
    ts = TextStream(VOCAB.__getitem__, list(stops), set(skip))
    pieces = []
    for i in ids:
        text, stopped = ts.push(i)
        pieces.append(text)
        if stopped:
            break
    pieces.append(ts.flush())
    return pieces, ts


def test_multibyte_split_across_tokens():
    pieces, ts = _run([0, 6, 7, 1])
    assert "".join(pieces) == "Helélo" and all("\ufffd" not in p for p in pieces)


def test_stop_string_is_never_emitted():
    pieces, ts = _run([0, 1, 4, 5, 2, 3], stops=["\n\n"])
    assert "".join(pieces) == "Hello" and ts.stopped


def test_stop_string_across_tokens_and_held_back():
    pieces, ts = _run([0, 1, 2, 3], stops=["lo wo"])
    assert "".join(pieces) == "Hel" and ts.stopped
    assert pieces[0] == "He"  # the trailing "l" could start "lo wo": held back until known
    assert held_suffix("Hel", ["lo wo"]) == 1


def test_skipped_special_ids():
    pieces, _ = _run([0, 8, 1], skip=[8])
    assert "".join(pieces) == "Hello"
