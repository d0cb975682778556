import pytest

from llmkit.core.errors import ConfigError
from llmkit.train.plan import chinchilla, parse_count, plan


def test_parse_count():
    assert parse_count("135M") == 135e6 and parse_count("2B") == 2e9 and parse_count("1e18") == 1e18
    with pytest.raises(ConfigError):
        parse_count("lots")


def test_chinchilla_known_values():
    n, d, c = chinchilla(params=70e9)  # Chinchilla itself: 70B params, 1.4T tokens
    assert d == pytest.approx(1.4e12) and c == pytest.approx(6 * 70e9 * 1.4e12)
    n2, d2, c2 = chinchilla(flops=c)
    assert n2 == pytest.approx(70e9) and d2 == pytest.approx(1.4e12)
    assert chinchilla(tokens=2e9)[0] == pytest.approx(1e8)


def test_plan_time_from_given_throughput():
    p = plan(params="100M", tflops=1.0, mfu=0.5, device="cpu")
    assert p.flops == pytest.approx(1.2e18) and p.hours == pytest.approx(1.2e18 / 0.5e12 / 3600)
    assert p.train_memory_gb == pytest.approx(1.6)
    with pytest.raises(ConfigError):
        plan()
