// A form generated from a tool's JSON Schema, and the value read back from it.
// Covers what tool schemas use: string / number / integer / boolean, enum (a select), nested
// objects (a fieldset), arrays (rows added and removed; items by their own schema), required
// fields (marked, checked before the call) and descriptions as hints. Anything else (oneOf,
// free-form objects) becomes a JSON text field: the call still works, the gateway validates.

let seq = 0;
const uid = (p) => `${p}-${++seq}`;

export function buildForm(container, schema, onSubmit) {
  container.replaceChildren();
  container.noValidate = true; // our checks name the field; the browser's would block the submit silently
  const root = field("arguments", resolve(schema, schema), true, schema, true);
  container.append(root.el);
  const actions = document.createElement("div");
  actions.className = "row";
  const call = document.createElement("button");
  call.type = "submit";
  call.textContent = "Call";
  actions.append(call);
  container.append(actions);
  container.onsubmit = (ev) => {
    ev.preventDefault();
    let value;
    try {
      value = root.read();
    } catch (err) {
      onSubmit(null, err.message);
      return;
    }
    onSubmit(value ?? {}, null);
  };
}

function resolve(s, root) {
  // Optional fields come as anyOf [X, null] from pydantic: the form shows X and leaves it unset.
  const alts = s && (s.anyOf || s.oneOf);
  if (Array.isArray(alts)) {
    const real = alts.filter((a) => a.type !== "null");
    if (real.length === 1) return resolve({ ...s, anyOf: undefined, oneOf: undefined, ...resolve(real[0], root) }, root);
  }
  if (s && typeof s.$ref === "string" && s.$ref.startsWith("#/")) {
    let node = root;
    for (const part of s.$ref.slice(2).split("/")) node = node?.[part];
    return { ...(node || {}), ...s, $ref: undefined };
  }
  return s || {};
}

function typeOf(s) {
  if (Array.isArray(s.enum)) return "enum";
  let t = s.type;
  if (Array.isArray(t)) t = t.find((x) => x !== "null") || "string";
  if (!t && s.properties) t = "object";
  return t || "json";
}

function labelled(name, s, required, control) {
  const wrap = document.createElement("div");
  wrap.className = "field";
  const label = document.createElement("label");
  label.htmlFor = control.id;
  label.textContent = name + (required ? " *" : "");
  wrap.append(label, control);
  if (s.description) {
    const hint = document.createElement("span");
    hint.className = "hint";
    hint.id = uid("hint");
    hint.textContent = s.description;
    control.setAttribute("aria-describedby", hint.id);
    wrap.append(hint);
  }
  if (required) control.setAttribute("aria-required", "true");
  return wrap;
}

function field(name, s, required, root, isRoot = false) {
  const t = typeOf(s);
  if (t === "object" && (s.properties || isRoot)) return objectField(name, s, required, root, isRoot);
  if (t === "array" && s.items && typeOf(resolve(s.items, root)) !== "json") return arrayField(name, s, required, root);
  const id = uid("f");
  let control;
  if (t === "enum") {
    control = document.createElement("select");
    if (!required) control.append(new Option("(not set)", ""));
    for (const v of s.enum) control.append(new Option(String(v), JSON.stringify(v)));
  } else if (t === "boolean") {
    control = document.createElement("select");
    if (!required) control.append(new Option("(not set)", ""));
    control.append(new Option("true", "true"), new Option("false", "false"));
    if (s.default !== undefined) control.value = String(s.default);
  } else if (t === "json" || t === "object" || t === "array") {
    control = document.createElement("textarea");
    control.rows = 3;
    control.placeholder = "JSON";
  } else {
    control = document.createElement("input");
    control.type = t === "number" || t === "integer" ? "number" : "text";
    if (t === "integer") control.step = "1";
    if (s.default !== undefined) control.placeholder = String(s.default);
  }
  control.id = id;
  control.name = name;
  const el = labelled(name, s, required, control);
  const read = () => {
    const raw = control.value;
    if (raw === "") {
      if (required && s.default === undefined) throw new Error(`${name} is required`);
      return undefined;
    }
    if (t === "enum") return JSON.parse(raw);
    if (t === "boolean") return raw === "true";
    if (t === "number" || t === "integer") {
      const n = Number(raw);
      if (!Number.isFinite(n) || (t === "integer" && !Number.isInteger(n))) throw new Error(`${name} must be ${t === "integer" ? "an integer" : "a number"}`);
      return n;
    }
    if (t === "json" || t === "object" || t === "array") {
      try { return JSON.parse(raw); } catch { throw new Error(`${name} is not valid JSON`); }
    }
    return raw;
  };
  return { el, read };
}

function objectField(name, s, required, root, isRoot) {
  const el = document.createElement(isRoot ? "div" : "fieldset");
  if (!isRoot) {
    const legend = document.createElement("legend");
    legend.textContent = name + (required ? " *" : "");
    el.append(legend);
  }
  const req = new Set(s.required || []);
  const children = Object.entries(s.properties || {}).map(([k, sub]) => [k, field(k, resolve(sub, root), req.has(k), root)]);
  for (const [, c] of children) el.append(c.el);
  if (isRoot && children.length === 0) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "This tool takes no arguments.";
    el.append(p);
  }
  const read = () => {
    const out = {};
    for (const [k, c] of children) {
      const v = c.read();
      if (v !== undefined) out[k] = v;
    }
    if (!isRoot && !required && Object.keys(out).length === 0) return undefined;
    return out;
  };
  return { el, read };
}

function arrayField(name, s, required, root) {
  const el = document.createElement("fieldset");
  const legend = document.createElement("legend");
  legend.textContent = `${name}${required ? " *" : ""} (list)`;
  const rows = document.createElement("div");
  const add = document.createElement("button");
  add.type = "button";
  add.textContent = `Add ${name} item`;
  const items = [];
  add.onclick = () => {
    const item = field(`${name}[${items.length}]`, resolve(s.items, root), true, root);
    const row = document.createElement("div");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Remove";
    remove.onclick = () => { row.remove(); items.splice(items.indexOf(item), 1); };
    row.append(item.el, remove);
    rows.append(row);
    items.push(item);
  };
  el.append(legend, rows, add);
  const read = () => {
    if (items.length === 0) {
      if (required) throw new Error(`${name} needs at least one item`);
      return undefined;
    }
    return items.map((i) => i.read());
  };
  return { el, read };
}
