// A vsm-mcp /v1/events subscription over fetch() rather than EventSource: EventSource cannot send
// an Authorization header, and a router that is not on this machine needs an API key.
// Reconnects with Last-Event-ID (the router replays what was missed) and backs off 1 s → 30 s.

export interface SseEvent {
  id: string;
  event: string;
  data: string;
}

export type Status =
  | { state: "connecting"; detail: string }
  | { state: "live"; detail: string }
  | { state: "retrying"; detail: string }
  | { state: "failed"; detail: string };

export interface Subscription {
  router: string; // base URL, e.g. http://127.0.0.1:8765
  topics: string; // e.g. relay.demo.*
  key?: string; // API key; none = anonymous (a loopback router with VSM_ANONYMOUS_SCOPES)
  onEvent: (event: SseEvent) => void;
  onStatus: (status: Status) => void;
}

/** Parse a text/event-stream body (WHATWG rules, minus `retry`). */
export async function* parseSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let id = "";
  let event = "";
  let data: string[] = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    let text = buffer + value;
    // a chunk that ends in "\r" may be half of a "\r\n": keep it for the next chunk
    const held = text.endsWith("\r") ? "\r" : "";
    if (held) text = text.slice(0, -1);
    const lines = text.split(/\r\n|\r|\n/);
    buffer = (lines.pop() ?? "") + held;
    for (const line of lines) {
      if (line === "") {
        if (data.length) yield { id, event: event || "message", data: data.join("\n") };
        event = "";
        data = [];
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "data") data.push(text);
        else if (field === "event") event = text;
        else if (field === "id" && !text.includes("\0")) id = text;
      }
    }
  }
}

async function problem(resp: Response): Promise<string> {
  try {
    const body = await resp.json();
    if (body?.error?.message) return `${resp.status}: ${body.error.message}`;
  } catch {
    // not the router's JSON error shape: the status says enough
  }
  return `HTTP ${resp.status}`;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/** Subscribe until the returned function is called. */
export function subscribe(sub: Subscription): () => void {
  const control = new AbortController();
  const { signal } = control;
  let lastId = "";
  let delay = 1000;
  (async () => {
    while (!signal.aborted) {
      sub.onStatus({ state: "connecting", detail: sub.router });
      try {
        const headers: Record<string, string> = { accept: "text/event-stream" };
        if (sub.key) headers.authorization = `Bearer ${sub.key}`;
        if (lastId) headers["last-event-id"] = lastId;
        const url = new URL("/v1/events", sub.router);
        url.searchParams.set("topics", sub.topics);
        const resp = await fetch(url, { headers, signal, cache: "no-store" });
        if (!resp.ok || !resp.body) {
          const why = await problem(resp);
          if (resp.status === 401 || resp.status === 403) {
            sub.onStatus({ state: "failed", detail: why }); // retrying cannot fix a refusal
            return;
          }
          throw new Error(why);
        }
        sub.onStatus({ state: "live", detail: sub.router });
        delay = 1000;
        for await (const event of parseSse(resp.body)) {
          if (event.id) lastId = event.id;
          sub.onEvent(event);
        }
        throw new Error("the router closed the stream");
      } catch (err) {
        if (signal.aborted) return;
        // fetch() says only "Failed to fetch" for a refused connection and for a CORS refusal alike
        const why = err instanceof TypeError
          ? `cannot reach ${sub.router} (is it running, and is ${location.origin} in its VSM_CORS_ORIGINS?)`
          : String((err as Error).message ?? err);
        sub.onStatus({ state: "retrying", detail: `${why}; retrying in ${delay / 1000} s` });
        await sleep(delay, signal);
        delay = Math.min(delay * 2, 30000);
      }
    }
  })();
  return () => control.abort();
}
