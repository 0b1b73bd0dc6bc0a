"use strict";
// rnnkit's playground: talks to this server's /v1/ API only. Text is only ever set with textContent.
(function () {
  const $ = id => document.getElementById(id);
  const state = { models: [], controller: null, classifyTimer: null, classifySeq: 0 };

  function headers() {
    const h = { "Content-Type": "application/json" };
    const key = $("key").value;
    if (key) h["Authorization"] = "Bearer " + key;
    return h;
  }
  async function api(path, body) {
    const r = await fetch(path, { method: body ? "POST" : "GET", headers: headers(), body: body ? JSON.stringify(body) : undefined });
    const data = await r.json().catch(() => ({ error: { message: "the server's answer was not JSON (" + r.status + ")" } }));
    if (!r.ok) throw new Error((data.error && data.error.message) || ("HTTP " + r.status));
    return data;
  }
  function status(text) { $("status").textContent = text; }
  function current() { return state.models.find(m => m.id === $("model").value); }

  for (const id of ["temperature", "top_k", "top_p", "length"]) {
    const input = $(id), out = document.querySelector("output[for=" + id + "]");
    const show = () => { out.textContent = id === "top_k" && input.value === "0" ? "off" : input.value; };
    input.addEventListener("input", show);
    show();
  }

  async function loadModels() {
    try {
      state.models = (await api("/v1/models")).data;
    } catch (e) {
      if (/API key/.test(e.message)) { $("keybox").hidden = false; status("this server wants an API key"); return; }
      status("cannot list the models: " + e.message); return;
    }
    const pick = $("model");
    pick.textContent = "";
    for (const m of state.models) {
      const o = document.createElement("option");
      o.value = m.id; o.textContent = m.id + " (" + (m.task === "charlm" ? "language model" : "classifier") + ")";
      pick.appendChild(o);
    }
    switchModel();
  }
  function switchModel() {
    const m = current();
    if (!m) return;
    $("about").textContent = m.layers + "×" + m.hidden_size + " " + m.cell + ", " + m.parameters.toLocaleString() + " parameters";
    $("lm").hidden = m.task !== "charlm";
    $("clf").hidden = m.task !== "classifier";
    if (m.task === "classifier") classifyNow();
  }
  $("model").addEventListener("change", switchModel);
  $("key").addEventListener("change", loadModels);

  // ------------------------------------------------------------------ generation, streamed
  async function generate() {
    const m = current();
    const body = { model: m.id, prompt: $("prompt").value, max_tokens: Number($("length").value),
                   temperature: Number($("temperature").value), stream: true };
    if ($("seed").value !== "") body.seed = Number($("seed").value);
    if ($("top_k").value !== "0") body.top_k = Number($("top_k").value);
    if ($("top_p").value !== "1") body.top_p = Number($("top_p").value);
    const out = $("out");
    out.textContent = "";
    const p = document.createElement("span");
    p.className = "p"; p.textContent = body.prompt;
    out.appendChild(p);
    const text = document.createTextNode("");
    out.appendChild(text);
    state.controller = new AbortController();
    $("go").disabled = true; $("stop").disabled = false;
    status("generating…");
    let chunks = 0, chars = 0;
    const t0 = performance.now();
    try {
      const r = await fetch("/v1/completions", { method: "POST", headers: headers(), body: JSON.stringify(body),
                                                  signal: state.controller.signal });
      if (!r.ok) {
        const data = await r.json().catch(() => ({}));
        throw new Error((data.error && data.error.message) || ("HTTP " + r.status));
      }
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          if (!event.startsWith("data: ")) continue;
          const data = event.slice(6);
          if (data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          for (const c of chunk.choices) { text.appendData(c.text); chars += c.text.length; }
          chunks++;
          out.dataset.chunks = String(chunks);
        }
      }
      status(chars + " characters in " + ((performance.now() - t0) / 1000).toFixed(1) + " s");
    } catch (e) {
      status(e.name === "AbortError" ? "stopped after " + chars + " characters" : "error: " + e.message);
    } finally {
      $("go").disabled = false; $("stop").disabled = true;
      out.dataset.done = "1";
    }
  }
  $("go").addEventListener("click", () => { $("out").dataset.done = ""; generate(); });
  $("stop").addEventListener("click", () => { if (state.controller) state.controller.abort(); });

  // ------------------------------------------------------------------ scoring: surprisal colours
  function heat(bits) {
    const a = Math.min(Math.max(bits, 0), 6) / 6 * 0.85;
    return "rgba(214, 39, 40, " + a.toFixed(3) + ")";
  }
  async function score() {
    const m = current();
    const out = $("out");
    const generated = out.textContent;
    const text = $("mode-score").checked || !generated ? $("prompt").value : generated;
    out.dataset.done = "";
    try {
      const r = await api("/v1/score", { model: m.id, text: text });
      out.textContent = "";
      for (const c of r.surprisal) {
        const s = document.createElement("span");
        s.className = "s";
        s.textContent = c.char;
        if (c.bits !== null) { s.style.backgroundColor = heat(c.bits); s.dataset.bits = c.bits.toFixed(2); }
        else if (c.unknown) s.dataset.bits = "not in the vocabulary";
        out.appendChild(s);
      }
      status(r.bits_per_char === null ? "too short to score" :
             r.bits_per_char.toFixed(4) + " bits/char over " + r.chars + " characters (perplexity " + r.perplexity.toFixed(3) + ")" +
             (r.unknown ? ", " + r.unknown + " unknown characters left out" : ""));
    } catch (e) { status("error: " + e.message); }
    out.dataset.done = "1";
  }
  $("score").addEventListener("click", score);
  document.getElementsByName("mode").forEach(r => r.id = "mode-" + r.value);
  document.getElementsByName("mode").forEach(r => r.addEventListener("change", () => {
    const scoring = $("mode-score").checked;
    $("go").hidden = scoring; $("stop").hidden = scoring;
    for (const id of ["temperature", "top_k", "top_p", "length", "seed"]) $(id).closest("label").hidden = scoring;
  }));
  $("out").addEventListener("mouseover", ev => {
    const b = ev.target.dataset && ev.target.dataset.bits;
    if (b) $("hover").textContent = JSON.stringify(ev.target.textContent) + ": " + b + (isNaN(Number(b)) ? "" : " bits");
  });

  // ------------------------------------------------------------------ classification as one types
  async function classifyNow() {
    const m = current();
    const text = $("review").value;
    const seq = ++state.classifySeq;
    if (!text.trim()) { $("label").textContent = "type a text"; $("bars").textContent = ""; return; }
    try {
      const r = await api("/v1/classify", { model: m.id, text: text });
      if (seq !== state.classifySeq) return;              // an older answer: a newer one is on its way
      const p = r.data[0];
      $("label").textContent = p.label + " (" + p.probability.toFixed(3) + ")";
      const bars = $("bars");
      bars.textContent = "";
      for (const [label, prob] of Object.entries(p.probabilities)) {
        const row = document.createElement("div");
        row.className = "bar";
        const name = document.createElement("span"); name.textContent = label;
        const fill = document.createElement("span"); fill.className = "fill"; fill.style.width = Math.round(prob * 300) + "px";
        const val = document.createElement("span"); val.textContent = prob.toFixed(3);
        row.append(name, fill, val);
        bars.appendChild(row);
      }
    } catch (e) { $("label").textContent = "error: " + e.message; }
  }
  $("review").addEventListener("input", () => {
    clearTimeout(state.classifyTimer);
    state.classifyTimer = setTimeout(classifyNow, 150);
  });

  loadModels();
  document.body.dataset.ready = "1";
})();
