"""L2 data: corpus sources, tokenized pretraining shards, and the packing loader.

    sources ─► prepare (tokenize, split, shard) ─► data dir ─► TokenLoader (x, y batches)

Imports llmkit.core, llmkit.tokenizer and llmkit.formats only: data never sees the model.
The ``prepare()`` function lives in ``llmkit.data.prepare`` and is not re-exported here, so
that name keeps meaning the module; ``prepare_data()`` (the CLI's function) is.
"""

from llmkit.data.errors import DataError
from llmkit.data.loader import TokenLoader, TokenStream, val_batches
from llmkit.data.prepare import prepare_data
from llmkit.data.shards import read_index, token_dtype, tokenizer_fingerprint
from llmkit.data.sources import (Directory, JsonlFile, ParquetFile, Source, StdlibSource, TextFile, iter_documents,
                                 source_for)
from llmkit.data.tokenizer_spec import resolve_tokenizer

__all__ = ["DataError", "Directory", "JsonlFile", "ParquetFile", "Source", "StdlibSource", "TextFile", "TokenLoader",
           "TokenStream", "iter_documents", "prepare_data", "read_index", "resolve_tokenizer",
           "source_for", "token_dtype", "tokenizer_fingerprint", "val_batches"]
