"""MCP tools: stdio MCP servers run by Ray actors (cluster/mcp_process.py) and
reached from the ingress through `MCPGateway` (gateway.py)."""
