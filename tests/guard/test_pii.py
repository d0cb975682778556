"""PII redaction: checksums as known-value tests, and near-misses that must stay readable."""

import pytest

from llmkit.guard.pii import find_pii, iban_ok, looks_random, luhn_ok, redact, shannon_entropy


@pytest.mark.parametrize("digits,ok", [("4111111111111111", True), ("4111111111111112", False),
                                       ("79927398713", True), ("79927398710", False),
                                       ("378282246310005", True), ("0", False), ("12a4", False)])
def test_luhn_known_values(digits, ok):
    assert luhn_ok(digits) is ok


@pytest.mark.parametrize("iban,ok", [("GB82 WEST 1234 5698 7654 32", True), ("GB82WEST12345698765433", False),
                                     ("DE89370400440532013000", True), ("DE8937040044053201300", False),
                                     ("FR1420041010050500013M02606", True), ("XX00", False)])
def test_iban_mod97_known_values(iban, ok):
    assert iban_ok(iban) is ok


def test_entropy_known_values():
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)
    assert not looks_random("internationalization_of_everything")
    assert looks_random("9f8Ks2LmQ7xZp4Rt6Vb1Nc3Hd5Jg0WeY")


@pytest.mark.parametrize("text,expected", [
    ("write to bob.smith+tag@mail.example.co.uk today", "write to [EMAIL] today"),
    ("card 4111 1111 1111 1111 exp 12/29", "card [CARD] exp 12/29"),
    ("amex 3782-822463-10005", "amex [CARD]"),
    ("call +1 (415) 555-2671 now", "call [PHONE] now"),
    ("UK office 020 7946 0958", "UK office [PHONE]"),
    ("pay GB82 WEST 1234 5698 7654 32 please", "pay [IBAN] please"),
    ("aws AKIAIOSFODNN7EXAMPLE", "aws [AWS_KEY]"),
    ("gh ghp_" + "a1B2" * 9, "gh [GITHUB_TOKEN]"),
    ("OPENAI_API_KEY=sk-proj-Ab3dEf9hIjK2mNoP5qRsT7uV", "OPENAI_API_KEY=[OPENAI_KEY]"),
    ("Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
     "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "Bearer [JWT]"),
    ("token: 9f8Ks2LmQ7xZp4Rt6Vb1Nc3Hd5Jg0WeY", "token: [SECRET]"),
])
def test_redacts_known_values(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112 fails Luhn",  # one digit off
    "order number 1234567890123",  # a bare id, no phone structure, not a card
    "IBAN typo GB82 WEST 1234 5698 7654 33",  # fails mod-97: neither IBAN nor phone
    "released 2024-01-15 and 15.01.2024 from 192.168.1.10",  # dates and an IPv4 address
    "isbn 978-3-16-148410-0, version 1.2.3.4",
    "pip install sk-learn-extension-package",  # sk- but a word, not a key
    "internationalization_is_a_long_word_here",  # long but low entropy
    "see https://docs.python.org/3/library/functions.html",  # a URL is not a secret
    "email me at bob at example dot com",  # obfuscated in words: not an address
    "sha a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",  # a sha1 hex digest: kept (hashes fill logs)
])
def test_near_misses_are_not_redacted(text):
    assert redact(text) == text, find_pii(text)


def test_kinds_filter_and_findings():
    text = "bob@example.com 4111111111111111"
    assert redact(text, kinds=["email"]) == "[EMAIL] 4111111111111111"
    assert [f.kind for f in find_pii(text)] == ["email", "card"]
