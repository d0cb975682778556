"""llmkit.agents: tools from typed functions, function calling, ReAct, memory, built-in tools.

    from llmkit.agents import Agent, EngineChat, tool
    @tool
    def add(a: int, b: int) -> int:
        '''Add two integers.'''
        return a + b
    Agent(EngineChat.load("smollm2"), [add], tool_choice="first").run("What is 2 + 40?").answer
"""

from llmkit.agents.errors import AgentError, ToolCallError, ToolDefinitionError
from llmkit.agents.hooks import Guard, NoGuard
from llmkit.agents.llm import ChatModel, EngineChat, Reply, ScriptedChat
from llmkit.agents.loop import Agent, AgentResult, Limits
from llmkit.agents.memory import BufferMemory, SummaryMemory
from llmkit.agents.tools import Tool, ToolRegistry, ToolResult, tool, tool_message
from llmkit.agents.trace import Trace

__all__ = ["Agent", "AgentError", "AgentResult", "BufferMemory", "ChatModel", "EngineChat", "Guard", "Limits",
           "NoGuard", "Reply", "ScriptedChat", "SummaryMemory", "Tool", "ToolCallError", "ToolDefinitionError",
           "ToolRegistry", "ToolResult", "Trace", "tool", "tool_message"]
