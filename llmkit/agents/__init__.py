"""llmkit.agents"""
