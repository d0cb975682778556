"""llmkit.merge"""
