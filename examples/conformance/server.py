"""A fixture MCP server for the MCP conformance suite's server scenarios.

It implements what `npx @modelcontextprotocol/conformance@0.1.13 server` expects (tools
`test_*`, `test://` resources and templates, prompts, completion, logging, progress, sampling,
elicitation, subscriptions) with the low-level `mcp.server.lowlevel.Server`, so every wire
detail is explicit. Run it alone over HTTP or stdio:

    python -m examples.conformance.server --transport http --port 3001   # http://127.0.0.1:3001/mcp
    python -m examples.conformance.server --transport stdio

`manifest.yaml` (HTTP) and `manifest-stdio.yaml` mount it in the router.
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
import zlib
from typing import Any

import anyio
import mcp.types as t
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server

# A 1×1 PNG and a 10-sample WAV, built here rather than pasted in.
PNG = base64.b64encode(
    b"\x89PNG\r\n\x1a\n"
    + b"".join(
        struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d) & 0xFFFFFFFF)
        for k, d in (
            (b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)),
            (b"IDAT", zlib.compress(b"\x00\xff\x00\x00")),
            (b"IEND", b""),
        )
    )
).decode()
_pcm = b"\x00\x00" * 10
WAV = base64.b64encode(
    b"RIFF" + struct.pack("<I", 36 + len(_pcm)) + b"WAVEfmt "
    + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16) + b"data" + struct.pack("<I", len(_pcm)) + _pcm
).decode()

NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}


def _tool(name: str, description: str, schema: dict[str, Any] | None = None) -> t.Tool:
    return t.Tool(name=name, description=description, input_schema=schema or NO_ARGS)


TOOLS = [
    _tool("test_simple_text", "Returns a simple text response."),
    _tool("test_image_content", "Returns a 1x1 PNG image."),
    _tool("test_audio_content", "Returns a tiny WAV clip."),
    _tool("test_embedded_resource", "Returns an embedded text resource."),
    _tool("test_multiple_content_types", "Returns text, image and an embedded resource."),
    _tool("test_tool_with_logging", "Sends three info log messages while running."),
    _tool("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100."),
    _tool("test_error_handling", "Always fails with isError=true."),
    _tool(
        "test_sampling",
        "Asks the client's LLM (sampling/createMessage) and returns its answer.",
        {"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]},
    ),
    _tool(
        "test_elicitation",
        "Asks the user for a username and an email (elicitation/create).",
        {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
    ),
    _tool("test_elicitation_sep1034_defaults", "Elicitation whose schema has defaults for every primitive type."),
    _tool("test_elicitation_sep1330_enums", "Elicitation with all five enum schema variants."),
    _tool(
        "json_schema_2020_12_tool",
        "Tool with JSON Schema 2020-12 features",
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {
                "address": {
                    "type": "object",
                    "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
                }
            },
            "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
            "additionalProperties": False,
        },
    ),
]

SEP1034_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "default": "John Doe"},
        "age": {"type": "integer", "default": 30},
        "score": {"type": "number", "default": 95.5},
        "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
        "verified": {"type": "boolean", "default": True},
    },
}
SEP1330_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {
            "type": "string",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
        "titledMulti": {
            "type": "array",
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
}


def _text(s: str) -> t.TextContent:
    return t.TextContent(type="text", text=s)


async def _elicit(ctx: ServerRequestContext[Any], message: str, schema: dict[str, Any]) -> t.ElicitResult:
    return await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)  # type: ignore[arg-type]


async def call_tool(ctx: ServerRequestContext[Any], params: t.CallToolRequestParams) -> t.CallToolResult:
    name, args = params.name, params.arguments or {}
    if name == "test_simple_text":
        return t.CallToolResult(content=[_text("This is a simple text response for testing.")])
    if name == "test_image_content":
        return t.CallToolResult(content=[t.ImageContent(type="image", data=PNG, mime_type="image/png")])
    if name == "test_audio_content":
        return t.CallToolResult(content=[t.AudioContent(type="audio", data=WAV, mime_type="audio/wav")])
    if name == "test_embedded_resource":
        res = t.TextResourceContents(
            uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
        )
        return t.CallToolResult(content=[t.EmbeddedResource(type="resource", resource=res)])
    if name == "test_multiple_content_types":
        res = t.TextResourceContents(
            uri="test://mixed-content-resource",
            mime_type="application/json",
            text=json.dumps({"test": "data", "value": 123}),
        )
        return t.CallToolResult(
            content=[
                _text("Multiple content types test:"),
                t.ImageContent(type="image", data=PNG, mime_type="image/png"),
                t.EmbeddedResource(type="resource", resource=res),
            ]
        )
    if name == "test_tool_with_logging":
        for i, msg in enumerate(("Tool execution started", "Tool processing data", "Tool execution completed")):
            if i:
                await anyio.sleep(0.05)
            await ctx.session.send_log_message("info", msg, related_request_id=ctx.request_id)
        return t.CallToolResult(content=[_text("Tool with logging executed successfully")])
    if name == "test_tool_with_progress":
        token = (ctx.meta or {}).get("progress_token") or (ctx.meta or {}).get("progressToken")
        for i, value in enumerate((0, 50, 100)):
            if i:
                await anyio.sleep(0.05)
            if token is not None:
                await ctx.session.send_progress_notification(
                    token, value, 100, related_request_id=str(ctx.request_id)
                )
        return t.CallToolResult(content=[_text("Tool with progress executed successfully")])
    if name == "test_error_handling":
        return t.CallToolResult(
            is_error=True, content=[_text("This tool intentionally returns an error for testing")]
        )
    if name == "test_sampling":
        result = await ctx.session.create_message(
            [t.SamplingMessage(role="user", content=_text(str(args.get("prompt", ""))))],
            max_tokens=100,
            related_request_id=ctx.request_id,
        )
        content = result.content
        text = content.text if isinstance(content, t.TextContent) else json.dumps(content.model_dump(mode="json"))
        return t.CallToolResult(content=[_text(f"LLM response: {text}")])
    if name == "test_elicitation":
        schema = {
            "type": "object",
            "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            },
            "required": ["username", "email"],
        }
        r = await _elicit(ctx, str(args.get("message", "")), schema)
        return t.CallToolResult(content=[_text(f"User response: action={r.action}, content={json.dumps(r.content)}")])
    if name in ("test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums"):
        schema = SEP1034_SCHEMA if name.endswith("defaults") else SEP1330_SCHEMA
        r = await _elicit(ctx, "Please review and submit the form", schema)
        return t.CallToolResult(
            content=[_text(f"Elicitation completed: action={r.action}, content={json.dumps(r.content)}")]
        )
    if name == "json_schema_2020_12_tool":
        return t.CallToolResult(content=[_text(f"Received: {json.dumps(args, sort_keys=True)}")])
    return t.CallToolResult(is_error=True, content=[_text(f"Unknown tool: {name}")])


RESOURCES = [
    t.Resource(uri="test://static-text", name="static-text", description="A static text resource", mime_type="text/plain"),
    t.Resource(uri="test://static-binary", name="static-binary", description="A static PNG", mime_type="image/png"),
    t.Resource(uri="test://watched-resource", name="watched-resource", description="Subscribable", mime_type="text/plain"),
]
TEMPLATES = [
    t.ResourceTemplate(
        uri_template="test://template/{id}/data", name="template-data",
        description="Data for an id", mime_type="application/json",
    )
]


async def read_resource(_ctx: ServerRequestContext[Any], params: t.ReadResourceRequestParams) -> t.ReadResourceResult:
    uri = str(params.uri)
    if uri == "test://static-text":
        contents: list[t.TextResourceContents | t.BlobResourceContents] = [
            t.TextResourceContents(uri=uri, mime_type="text/plain", text="This is the content of the static text resource.")
        ]
    elif uri == "test://static-binary":
        contents = [t.BlobResourceContents(uri=uri, mime_type="image/png", blob=PNG)]
    elif uri == "test://watched-resource":
        contents = [t.TextResourceContents(uri=uri, mime_type="text/plain", text="Watched resource content.")]
    elif uri.startswith("test://template/") and uri.endswith("/data"):
        rid = uri.removeprefix("test://template/").removesuffix("/data")
        body = json.dumps({"id": rid, "templateTest": True, "data": f"Data for ID: {rid}"})
        contents = [t.TextResourceContents(uri=uri, mime_type="application/json", text=body)]
    else:
        from mcp.shared.exceptions import MCPError

        raise MCPError(code=-32002, message=f"Resource not found: {uri}")
    return t.ReadResourceResult(contents=contents)


PROMPTS = [
    t.Prompt(name="test_simple_prompt", description="A prompt without arguments"),
    t.Prompt(
        name="test_prompt_with_arguments",
        description="A prompt with two required arguments",
        arguments=[
            t.PromptArgument(name="arg1", description="First test argument", required=True),
            t.PromptArgument(name="arg2", description="Second test argument", required=True),
        ],
    ),
    t.Prompt(
        name="test_prompt_with_embedded_resource",
        description="A prompt embedding a resource",
        arguments=[t.PromptArgument(name="resourceUri", description="URI of the resource to embed", required=True)],
    ),
    t.Prompt(name="test_prompt_with_image", description="A prompt with an image"),
]


async def get_prompt(_ctx: ServerRequestContext[Any], params: t.GetPromptRequestParams) -> t.GetPromptResult:
    args = params.arguments or {}
    user = "user"
    if params.name == "test_simple_prompt":
        msgs = [t.PromptMessage(role=user, content=_text("This is a simple prompt for testing."))]
    elif params.name == "test_prompt_with_arguments":
        msgs = [
            t.PromptMessage(
                role=user, content=_text(f"Prompt with arguments: arg1='{args.get('arg1')}', arg2='{args.get('arg2')}'")
            )
        ]
    elif params.name == "test_prompt_with_embedded_resource":
        res = t.TextResourceContents(
            uri=str(args.get("resourceUri", "test://example-resource")),
            mime_type="text/plain",
            text="Embedded resource content for testing.",
        )
        msgs = [
            t.PromptMessage(role=user, content=t.EmbeddedResource(type="resource", resource=res)),
            t.PromptMessage(role=user, content=_text("Please process the embedded resource above.")),
        ]
    elif params.name == "test_prompt_with_image":
        msgs = [
            t.PromptMessage(role=user, content=t.ImageContent(type="image", data=PNG, mime_type="image/png")),
            t.PromptMessage(role=user, content=_text("Please analyze the image above.")),
        ]
    else:
        from mcp.shared.exceptions import MCPError

        raise MCPError(code=-32602, message=f"Unknown prompt: {params.name}")
    return t.GetPromptResult(messages=msgs)


async def complete(_ctx: ServerRequestContext[Any], params: t.CompleteRequestParams) -> t.CompleteResult:
    prefix = params.argument.value or ""
    words = ["paris", "park", "party", "test", "testValue1"]
    values = [w for w in words if w.startswith(prefix)]
    return t.CompleteResult(completion=t.Completion(values=values, total=len(values), has_more=False))


def build() -> Server[Any]:
    subscribed: set[str] = set()

    async def list_tools(_c: Any, _p: Any) -> t.ListToolsResult:
        return t.ListToolsResult(tools=TOOLS)

    async def list_resources(_c: Any, _p: Any) -> t.ListResourcesResult:
        return t.ListResourcesResult(resources=RESOURCES)

    async def list_templates(_c: Any, _p: Any) -> t.ListResourceTemplatesResult:
        return t.ListResourceTemplatesResult(resource_templates=TEMPLATES)

    async def subscribe(_c: Any, p: t.SubscribeRequestParams) -> t.EmptyResult:
        subscribed.add(str(p.uri))
        return t.EmptyResult()

    async def unsubscribe(_c: Any, p: t.UnsubscribeRequestParams) -> t.EmptyResult:
        subscribed.discard(str(p.uri))
        return t.EmptyResult()

    async def list_prompts(_c: Any, _p: Any) -> t.ListPromptsResult:
        return t.ListPromptsResult(prompts=PROMPTS)

    async def set_level(_c: Any, _p: Any) -> t.EmptyResult:
        return t.EmptyResult()

    return Server(
        "vsm-conformance-fixture",
        version="1.0.0",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_completion=complete,
        on_set_logging_level=set_level,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description="MCP conformance fixture server")
    ap.add_argument("--transport", choices=["http", "stdio"], default="http")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=3001)
    args = ap.parse_args()
    server = build()
    if args.transport == "stdio":
        from mcp.server.stdio import stdio_server

        async def run_stdio() -> None:
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())

        anyio.run(run_stdio)
        return
    import uvicorn

    app = server.streamable_http_app(host=args.host)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
