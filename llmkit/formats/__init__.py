"""llmkit.formats"""
