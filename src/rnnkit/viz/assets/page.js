"use strict";
// rnnkit's viewer: reads the JSON block #data and draws the page. Text is only ever set with textContent.
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svg(tag, attrs, parent) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function fmt(x, d) { return x === null || x === undefined ? "–" : Number(x).toFixed(d); }
  function shown(ch) {
    if (ch === "\n") return "↵ (line break)";
    if (ch === " ") return "· (space)";
    if (ch === "\t") return "⇥ (tab)";
    return ch;
  }
  function modelLine(m) {
    const parts = [];
    if (m.layers && m.hidden) parts.push(m.layers + "×" + m.hidden + " " + (m.bidirectional ? "bidirectional " : "") + m.cell);
    if (m.pooling) parts.push(m.pooling + " pooling");
    parts.push("run " + m.run + " (" + m.weights + " weights)");
    return parts.join(" · ");
  }
  function header(title, bits) {
    const h = el("header");
    h.appendChild(el("h1", "", title));
    const meta = el("div", "meta");
    for (const [label, value] of bits) {
      if (meta.childNodes.length) meta.appendChild(document.createTextNode(" · "));
      meta.appendChild(document.createTextNode(label));
      meta.appendChild(el("b", "", value));
    }
    h.appendChild(meta);
    document.body.appendChild(h);
  }
  function hoverPanel(side, title, hint) {   // the side panel that shows what the pointer is on
    const panel = el("div", "panel");
    panel.id = "hover";
    panel.appendChild(el("h2", "", title));
    const body = el("div", "", hint);
    panel.appendChild(body);
    side.appendChild(panel);
    return body;
  }
  function heat(v) {                      // surprisal in bits -> background; 0 clear, 6+ deep red
    const a = Math.min(Math.max(v, 0), 6) / 6;
    return "rgba(214, 39, 40, " + (0.85 * a).toFixed(3) + ")";
  }
  function diverging(v) {                 // [-1, 1] -> blue ... clear ... red
    const a = Math.min(Math.abs(v), 1) * 0.85;
    return v >= 0 ? "rgba(214, 39, 40, " + a.toFixed(3) + ")" : "rgba(31, 100, 190, " + a.toFixed(3) + ")";
  }

  // ------------------------------------------------------------------ language model
  function lmPage() {
    const chars = Array.from(D.text);                 // code points, as Python indexes the text
    const pos = D.positions || chars.map((_, i) => i);
    const streamAt = new Array(chars.length).fill(-1);
    pos.forEach((p, j) => { streamAt[p] = j; });
    const bits = D.bits;
    const cum = [];                                   // running bits/char up to each stream character
    let sum = 0, n = 0;
    for (let j = 0; j < bits.length; j++) { if (bits[j] !== null) { sum += bits[j]; n++; } cum.push(n ? sum / n : null); }
    header("Surprisal and cell activations", [
      ["", modelLine(D.model)], ["text: ", D.source + " (" + chars.length.toLocaleString() + " characters)"],
      ["bits/char: ", fmt(D.bpc, 4)], ["scored: ", D.scored.toLocaleString()],
      ["not in the vocabulary (left out): ", String(D.unknown)]]);

    const controls = el("div", "controls");
    const mode = { value: "surprisal" };
    const radios = {};
    for (const [value, label] of [["surprisal", "surprisal (bits)"], ["unit", "unit activation (" + D.activation + ")"]]) {
      const l = el("label");
      const r = el("input");
      r.type = "radio"; r.name = "mode"; r.value = value; r.id = "mode-" + value;
      r.checked = value === "surprisal";
      if (value === "unit" && !D.units.length) r.disabled = true;
      r.addEventListener("change", () => { mode.value = value; paint(); });
      radios[value] = r;
      l.appendChild(r); l.appendChild(document.createTextNode(" " + label));
      controls.appendChild(l);
    }
    const pick = el("select");
    pick.id = "unit";
    D.units.forEach((u, i) => {
      const o = el("option", "", "unit " + u.name + (u.feature ? " · " + u.feature + " r=" + (u.r > 0 ? "+" : "") + fmt(u.r, 2) : ""));
      o.value = String(i);
      pick.appendChild(o);
    });
    pick.addEventListener("change", () => { radios.unit.checked = true; mode.value = "unit"; paint(); });
    const pl = el("label", "", "layer:unit ");
    pl.appendChild(pick);
    controls.appendChild(pl);
    const legend = el("div", "legend");
    const ramp = el("div", "ramp");
    const lo = el("span"), hi = el("span");
    legend.appendChild(lo); legend.appendChild(ramp); legend.appendChild(hi);
    controls.appendChild(legend);
    document.body.appendChild(controls);

    const main = el("main");
    const textBox = el("div");
    textBox.id = "text";
    const side = el("div");
    side.id = "side";
    main.appendChild(textBox); main.appendChild(side);
    document.body.appendChild(main);

    // text, one row per line with the line's bits/char in the gutter
    const spans = [];
    let line = null, lineChars = null, lineBits = [];
    function closeLine() {
      if (!line) return;
      const s = lineBits.filter(b => b !== null);
      const g = line.firstChild;
      g.textContent = s.length ? (s.reduce((a, b) => a + b, 0) / s.length).toFixed(2) : "";
      g.title = s.length ? "bits/char of this line (" + s.length + " scored)" : "";
    }
    function openLine() {
      closeLine();
      line = el("div", "line"); line.appendChild(el("span", "gutter"));
      lineChars = el("span", "chars"); line.appendChild(lineChars);
      textBox.appendChild(line); lineBits = [];
    }
    openLine();
    chars.forEach((ch, i) => {
      const j = streamAt[i];
      const s = el("span", "c" + (ch === "\n" ? " nl" : "") + (j < 0 ? " unk" : ""), ch === "\n" ? "↵" : ch);
      s.dataset.i = String(i);
      if (j < 0) s.title = "not in the model's vocabulary: left out of the stream";
      lineChars.appendChild(s);
      spans.push(s);
      if (j >= 0) lineBits.push(bits[j]);
      if (ch === "\n") openLine();
    });
    closeLine();

    // side: the character under the pointer, the best unit per feature
    const hoverBody = hoverPanel(side, "character", "Point at a character.");
    if (D.features.length) {
      const f = el("div", "panel");
      f.appendChild(el("h2", "", "units that follow the text"));
      f.appendChild(el("div", "note", "The unit most correlated with each feature (Pearson r over this text):"));
      for (const name of D.features) {
        const b = D.best[name];
        const k = D.units.findIndex(u => u.name === b.unit);
        const chip = el("span", "chip", name + ": " + b.unit + " (r=" + fmt(b.r, 2) + ")");
        if (k >= 0) chip.addEventListener("click", () => { pick.value = String(k); pick.dispatchEvent(new Event("change")); });
        else chip.title = "not among the units on this page (--units " + b.unit + " adds it)";
        f.appendChild(chip);
      }
      side.appendChild(f);
    }

    function paint() {
      const u = mode.value === "unit" ? D.units[Number(pick.value)] : null;
      if (u) {
        lo.textContent = "−1"; hi.textContent = "+1 (" + D.activation + " of unit " + u.name + ")";
        ramp.style.background = "linear-gradient(90deg, rgba(31,100,190,.85), #fff, rgba(214,39,40,.85))";
      } else {
        lo.textContent = "0 bits"; hi.textContent = "6+ bits (surprisal)";
        ramp.style.background = "linear-gradient(90deg, #fff, rgba(214,39,40,.85))";
      }
      for (let i = 0; i < spans.length; i++) {
        const j = streamAt[i];
        let c = "";
        if (j >= 0) {
          if (u) c = diverging(u.values[j]);
          else if (bits[j] !== null) c = heat(bits[j]);
        }
        spans[i].style.backgroundColor = c;
      }
    }
    let hot = null;
    textBox.addEventListener("mouseover", ev => {
      const s = ev.target.closest ? ev.target.closest(".c") : null;
      if (!s) return;
      if (hot) hot.classList.remove("hot");
      hot = s; s.classList.add("hot");
      show(Number(s.dataset.i));
    });
    function show(i) {
      const j = streamAt[i];
      hoverBody.textContent = "";
      hoverBody.appendChild(el("div", "big", shown(chars[i])));
      if (j < 0) { hoverBody.appendChild(el("div", "note", "not in the model's vocabulary: left out, as evaluation leaves it out")); return; }
      if (bits[j] === null) { hoverBody.appendChild(el("div", "note", "the first character: nothing before it to predict it from")); }
      else {
        hoverBody.appendChild(el("div", "", "surprisal " + fmt(bits[j], 2) + " bits (p = " + Math.pow(2, -bits[j]).toFixed(3) + ")"));
        hoverBody.appendChild(el("div", "note", "bits/char so far: " + fmt(cum[j], 3)));
        hoverBody.appendChild(el("div", "note", "the model's top predictions here:"));
        const actual = D.vocab.indexOf(chars[i]);
        D.top[j].forEach((id, r) => {
          if (id < 0) return;
          const row = el("div", "row" + (id === actual ? " hit" : ""));
          row.appendChild(el("span", "k", D.vocab[id] === "\n" ? "↵" : D.vocab[id] === " " ? "·" : D.vocab[id]));
          const bar = el("span", "bar");
          bar.style.width = Math.max(1, Math.round(150 * D.topp[j][r])) + "px";
          row.appendChild(bar);
          row.appendChild(el("span", "", fmt(D.topp[j][r], 3)));
          hoverBody.appendChild(row);
        });
      }
      if (mode.value === "unit" && D.units.length) {
        const u = D.units[Number(pick.value)];
        hoverBody.appendChild(el("div", "", "unit " + u.name + ": " + fmt(u.values[j], 2)));
      }
    }
    paint();
    gates();
  }

  function gates() {
    const layers = Object.keys(D.gates);
    if (!layers.length) return;
    const sec = el("section", "gates");
    sec.appendChild(el("h2", "", "Gate saturation"));
    sec.appendChild(el("div", "note", "Each dot is one unit's gate: the fraction of this text's steps it spent below " +
      D.saturated[0] + " (left-saturated, vertical) and above " + D.saturated[1] + " (right-saturated, horizontal)."));
    const box = el("div", "scatters");
    const colours = { i: "#1f77b4", f: "#2ca02c", o: "#d62728", r: "#9467bd", z: "#ff7f0e" };
    for (const k of layers) {
      const fig = el("figure");
      const W = 260, P = 40;
      const s = svg("svg", { width: W + P + 10, height: W + 50, viewBox: "0 0 " + (W + P + 10) + " " + (W + 50) });
      s.classList.add("scatter");
      svg("rect", { x: P, y: 10, width: W, height: W, fill: "#fff", stroke: "#ccc" }, s);
      svg("line", { x1: P, y1: 10, x2: P + W, y2: 10 + W, stroke: "#ddd" }, s);       // x + y = 1
      for (const t of [0, 0.5, 1]) {
        const tx = svg("text", { x: P + t * W, y: W + 26, "font-size": 10, "text-anchor": "middle", fill: "#666" }, s);
        tx.textContent = String(t);
        const ty = svg("text", { x: P - 5, y: 10 + (1 - t) * W + 3, "font-size": 10, "text-anchor": "end", fill: "#666" }, s);
        ty.textContent = String(t);
      }
      for (const g in D.gates[k]) {
        for (const [left, right] of D.gates[k][g]) {
          svg("circle", { cx: P + right * W, cy: 10 + (1 - left) * W, r: 2.2, fill: colours[g] || "#555", "fill-opacity": 0.55 }, s);
        }
      }
      const xt = svg("text", { x: P + W / 2, y: W + 40, "font-size": 11, "text-anchor": "middle", fill: "#444" }, s);
      xt.textContent = "fraction right-saturated (> " + D.saturated[1] + ")";
      const yt = svg("text", { x: 10, y: 10 + W / 2, "font-size": 11, "text-anchor": "middle", fill: "#444",
                               transform: "rotate(-90 10 " + (10 + W / 2) + ")" }, s);
      yt.textContent = "fraction left-saturated (< " + D.saturated[0] + ")";
      fig.appendChild(s);
      fig.appendChild(el("figcaption", "", "layer " + k));
      box.appendChild(fig);
    }
    const key = el("div", "legend");
    for (const g of Object.keys(D.gates[layers[0]])) {
      const dot = el("span", "", "● " + g);
      dot.style.color = colours[g] || "#555";
      key.appendChild(dot);
    }
    sec.appendChild(key);
    sec.appendChild(box);
    document.body.appendChild(sec);
  }

  // ------------------------------------------------------------------ classifier
  function classifierPage() {
    const L = D.label, name = D.labels[L];
    const p = D.probs.map(r => r[L]);
    const last = p.length ? p[p.length - 1] : D.start[L];
    header("How the classifier reads a text", [
      ["", modelLine(D.model)], ["prediction: ", name + " (p = " + fmt(last, 3) + ")"],
      ["words: ", String(D.words.length)]]);
    const controls = el("div", "controls");
    const legend = el("div", "legend");
    const ramp = el("div", "ramp");
    ramp.style.background = "linear-gradient(90deg, rgba(31,100,190,.85), #fff, rgba(44,160,44,.85))";
    legend.appendChild(el("span", "", "away from " + name));
    legend.appendChild(ramp);
    legend.appendChild(el("span", "", "towards " + name + " (the change in p(" + name + ") each word makes)"));
    controls.appendChild(legend);
    document.body.appendChild(controls);
    const main = el("main");
    const textBox = el("div");
    textBox.id = "text";
    textBox.style.whiteSpace = "pre-wrap";
    textBox.style.fontFamily = "inherit";
    textBox.style.fontSize = "16px";
    const side = el("div");
    side.id = "side";
    main.appendChild(textBox); main.appendChild(side);
    document.body.appendChild(main);
    const moved = p.map((v, i) => v - (i ? p[i - 1] : D.start[L]));
    const scale = Math.max(1e-6, ...moved.map(Math.abs));
    const text = Array.from(D.text);
    let at = 0;
    const words = [];
    D.spans.forEach(([a, b], i) => {
      if (a > at) textBox.appendChild(document.createTextNode(text.slice(at, a).join("")));
      const w = el("span", "w" + (D.known[i] ? "" : " unk"), text.slice(a, b).join(""));
      const m = moved[i] / scale;
      w.style.backgroundColor = m >= 0 ? "rgba(44, 160, 44, " + (0.8 * m).toFixed(3) + ")" : "rgba(31, 100, 190, " + (-0.8 * m).toFixed(3) + ")";
      w.dataset.i = String(i);
      textBox.appendChild(w);
      words.push(w);
      at = b;
    });
    if (at < text.length) textBox.appendChild(document.createTextNode(text.slice(at).join("")));

    const chartBox = el("div", "panel");
    chartBox.appendChild(el("h2", "", "p(" + name + ") after each word"));
    const W = 276, H = 140;
    const s = svg("svg", { width: W, height: H + 16, id: "chart" });
    svg("rect", { x: 0, y: 0, width: W, height: H, fill: "#fff", stroke: "#ddd" }, s);
    svg("line", { x1: 0, y1: H / 2, x2: W, y2: H / 2, stroke: "#ccc", "stroke-dasharray": "3 3" }, s);
    const xs = i => p.length > 1 ? (i / (p.length - 1)) * (W - 8) + 4 : W / 2;
    const ys = v => (1 - v) * (H - 8) + 4;
    svg("polyline", { points: p.map((v, i) => xs(i).toFixed(1) + "," + ys(v).toFixed(1)).join(" "),
                      fill: "none", stroke: "#2ca02c", "stroke-width": 1.6 }, s);
    for (const v of [0, 0.5, 1]) {
      const t = svg("text", { x: 3, y: ys(v) + (v === 1 ? 10 : v === 0 ? -3 : -3), "font-size": 10, fill: "#999" }, s);
      t.textContent = String(v);
    }
    const dot = svg("circle", { cx: -10, cy: -10, r: 4, fill: "#1d1d1f" }, s);
    const cap = svg("text", { x: 2, y: H + 13, "font-size": 11, fill: "#666" }, s);
    cap.textContent = "0.5 dashed · " + p.length + " words";
    chartBox.appendChild(s);
    side.appendChild(chartBox);
    const body = hoverPanel(side, "word", "Point at a word.");
    const all = el("div", "panel");
    all.appendChild(el("h2", "", "whole text"));
    D.labels.forEach((lab, k) => {
      const row = el("div", "row" + (k === L ? " hit" : ""));
      row.appendChild(el("span", "", lab));
      const bar = el("span", "bar");
      bar.style.width = Math.round(150 * D.probs[D.probs.length - 1][k]) + "px";
      row.appendChild(bar);
      row.appendChild(el("span", "", fmt(D.probs[D.probs.length - 1][k], 3)));
      all.appendChild(row);
    });
    side.appendChild(all);
    textBox.addEventListener("mouseover", ev => {
      const w = ev.target.closest ? ev.target.closest(".w") : null;
      if (!w) return;
      const i = Number(w.dataset.i);
      body.textContent = "";
      body.appendChild(el("div", "big", D.words[i]));
      if (!D.known[i]) body.appendChild(el("div", "note", "not in the vocabulary: read as <unk>"));
      body.appendChild(el("div", "", "p(" + name + ") after it: " + fmt(p[i], 3)));
      body.appendChild(el("div", "", "change: " + (moved[i] >= 0 ? "+" : "") + fmt(moved[i], 3)));
      dot.setAttribute("cx", xs(i)); dot.setAttribute("cy", ys(p[i]));
    });
  }

  if (D.kind === "lm") lmPage(); else classifierPage();
  document.body.dataset.ready = "1";
})();
