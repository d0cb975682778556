"""llmkit.cli"""
