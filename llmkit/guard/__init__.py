"""llmkit.guard"""
