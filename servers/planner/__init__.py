"""The planner server (VSM System 3): durable plans of tool calls and the agent collaboration protocol."""
