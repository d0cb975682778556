"""L3: model merging — linear, SLERP, task arithmetic, TIES, DARE, passthrough, frankenMoE, lineage.

    from llmkit.merge import merge_models
    merge_models("merge.yaml", "runs/merged")   # mergekit-style YAML in, llmkit checkpoint out

The math lives in ``methods`` as pure tensor functions; ``run`` plans and streams
a merge; ``lineage`` draws the family tree from meta.json.
"""

from llmkit.merge.config import MergeConfig, MergeError, load_config, parse_config
from llmkit.merge.run import MergeResult, merge_models

__all__ = ["MergeConfig", "MergeError", "MergeResult", "load_config", "merge_models", "parse_config"]
