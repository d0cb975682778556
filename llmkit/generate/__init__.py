"""L2: decoding. Sampling as pure functions, the batched engine, beam search, chat sessions."""

from llmkit.generate.beam import Beam, beam_search
from llmkit.generate.engine import Completion, Delta, Engine, end_of_turn_ids
from llmkit.generate.sampling import SamplingParams

__all__ = ["Beam", "Completion", "Delta", "Engine", "SamplingParams", "beam_search", "end_of_turn_ids"]
