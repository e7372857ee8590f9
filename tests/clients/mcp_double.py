"""An MCP server over streamable HTTP (the official Python SDK, `mcp`), for agents'
MCP executors: `get_weather(city)` answers from a table and records each call;
`station_status()` always fails (an MCP tool error, `isError: true`). Served by
uvicorn on a free loopback port in a thread; `url` is its `/mcp` endpoint."""
from __future__ import annotations

import socket
import threading
import time

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class McpDouble:
    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        server = MCPServer("weather-double")

        @server.tool(description="The current weather in a city")
        def get_weather(city: str, unit: str = "C") -> str:
            self.calls.append(("get_weather", {"city": city, "unit": unit}))
            return f"Sunny and 21 {unit} in {city}"

        @server.tool(description="Whether the weather station works")
        def station_status() -> str:
            self.calls.append(("station_status", {}))
            raise ToolError("the weather station is offline")

        port = _free_port()
        self.url = f"http://127.0.0.1:{port}/mcp"
        config = uvicorn.Config(server.streamable_http_app(), host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("the MCP double did not start")
            time.sleep(0.05)

    def reset(self):
        self.calls.clear()

    def close(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)
