"""llmkit.quantize"""
