"""Built-in tools: calculator, sandboxed Python, SQL over SQLite, a retriever over a RAG collection."""
