// One relayed item → one list entry. The envelope is the router's event: {id, topic, time, data},
// where data is what servers/relay publishes: source_id, data (the source's raw text), key_phrases,
// summary or summary_error (with summarize=true), received_at / published_at (seconds).

export interface RelayItem {
  source_id?: string;
  data?: string;
  key_phrases?: string[];
  key_phrases_error?: string;
  summary?: string;
  summary_error?: string;
  received_at?: number;
  published_at?: number;
}

interface Text {
  title: string;
  body: string;
}

/** The title and text of a source item: a JSON object's title/text/body, else the raw data. */
export function textOf(raw: string): Text {
  try {
    const obj = JSON.parse(raw);
    if (obj && typeof obj === "object" && !Array.isArray(obj)) {
      const pick = (k: string) => (typeof obj[k] === "string" ? obj[k] : "");
      const title = pick("title");
      const body = pick("text") || pick("body") || pick("summary");
      if (title || body) return { title: title || body, body: title ? body : "" };
    }
  } catch {
    // plain text
  }
  return { title: raw, body: "" };
}

/** A model's answer: {"summary": …, "entities": […]} when it followed the prompt, else its text. */
export function summaryOf(answer: string): { summary: string; entities: string[] } {
  const json = answer.match(/\{[\s\S]*\}/);
  if (json) {
    try {
      const obj = JSON.parse(json[0]);
      if (typeof obj.summary === "string") {
        const entities = Array.isArray(obj.entities) ? obj.entities.map(String) : [];
        return { summary: obj.summary, entities };
      }
    } catch {
      // not JSON after all
    }
  }
  return { summary: answer, entities: [] };
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls: string, text = ""): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text) node.textContent = text;
  return node;
}

function chips(label: string, cls: string, words: string[]): HTMLElement {
  const row = el("div", `chips-row ${cls}`);
  const caption = el("span", "chips-label", label);
  caption.setAttribute("aria-hidden", "true"); // the list's own label says it to screen readers
  const list = el("ul", "chips");
  list.setAttribute("aria-label", label);
  for (const word of words) list.append(el("li", "", word));
  row.append(caption, list);
  return row;
}

function clock(seconds: number): HTMLTimeElement {
  const when = new Date(seconds * 1000);
  const node = el("time", "", when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" }));
  node.dateTime = when.toISOString();
  return node;
}

/** The list entry of one relay item (textContent only: the source's text is never parsed as HTML). */
export function itemEntry(eventId: string, item: RelayItem): HTMLLIElement {
  const li = el("li", "item");
  li.dataset.eventId = eventId;
  const meta = el("p", "meta");
  meta.append(clock(item.received_at ?? Date.now() / 1000));
  if (item.received_at && item.published_at) {
    const ms = Math.max(0, (item.published_at - item.received_at) * 1000);
    meta.append(el("span", "lag", `processed in ${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`));
  }
  if (item.source_id) meta.append(el("span", "source-id", `source #${item.source_id}`));
  li.append(meta);

  const { title, body } = textOf(item.data ?? "");
  li.append(el("h3", "title", title));
  if (body) li.append(el("p", "body", body));
  if (item.summary) {
    const { summary, entities } = summaryOf(item.summary);
    li.append(el("p", "summary", summary));
    if (entities.length) li.append(chips("Entities", "entities", entities));
  } else if (item.summary_error) {
    li.append(el("p", "warn", `No summary: ${item.summary_error}`));
  }
  if (item.key_phrases?.length) li.append(chips("Key phrases", "phrases", item.key_phrases));
  else if (item.key_phrases_error) li.append(el("p", "warn", `No key phrases: ${item.key_phrases_error}`));
  return li;
}

/** The list entry of a relay.<stream>.error event (a dropped source, a refused address). */
export function errorEntry(eventId: string, seconds: number, error: string): HTMLLIElement {
  const li = el("li", "item problem");
  li.dataset.eventId = eventId;
  const meta = el("p", "meta");
  meta.append(clock(seconds), el("span", "", "source problem"));
  li.append(meta, el("p", "body", error));
  return li;
}
