/* sieve report: renders the JSON blob of index.html. Offline, no dependencies.
 * All data (concept text above all) is untrusted: the DOM is built with createElement + textContent only,
 * never innerHTML. The neuron table is paged and cards exist only for the rows on screen. */
(function () {
  "use strict";

  var DATA = JSON.parse(document.getElementById("sieve-data").textContent);
  var PAGE_SIZE = 50;
  var METHOD_NAMES = { sieve: "SIEVE", clip_dissect: "CLIP-Dissect" };
  var state = { run: 0, query: "", filter: "all", sortKey: "id", sortDir: 1, page: 0 };

  // ------------------------------------------------------------------ DOM helpers (text only, never HTML)
  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === "text") node.textContent = String(v);
        else if (k === "class") node.className = v;
        else if (k === "onclick" || k === "oninput" || k === "onchange") node.addEventListener(k.slice(2), v);
        else node.setAttribute(k, String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }
  function append(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function num(v) { return v === "inf" ? Infinity : v === "-inf" ? -Infinity : (typeof v === "number" ? v : null); }
  function fmt(v, digits) {
    if (v === null || v === undefined || v === "") return "–";
    if (v === "inf") return "∞";
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v === "number") {
      if (Number.isInteger(v)) return String(v);
      return v.toFixed(digits === undefined ? 3 : digits).replace(/0+$/, "").replace(/\.$/, "");
    }
    return String(v);
  }
  function pct(v) { return v === null || v === undefined ? "–" : Math.round(v * 100) + "%"; }
  function methodName(m) { return METHOD_NAMES[m] || m; }
  // A card's id is its link: "{model}/{probe}/{concept set}/n{neuron}", names URL-escaped (made in build.py), so a
  // link names its section and survives adding a model to the config.
  function cardId(run, neuron) {
    var card = DATA.runs[run].cards[neuron];
    return card && card.anchor ? card.anchor : "n-" + run + "-" + neuron;
  }
  function fileLinks(files, label) {
    if (!files || !files.length) return null;
    return el("p", { class: "files" }, el("span", { class: "muted", text: label + " " }), files.map(function (f, i) {
      return [i ? " · " : "", el("a", { href: f[1], text: f[0] })];
    }));
  }

  function table(t, cls) {
    var head = el("tr", null, t.columns.map(function (c) { return el("th", { text: c, scope: "col" }); }));
    var body = el("tbody", null, t.rows.map(function (r) {
      return el("tr", null, r.map(function (v) {
        return el("td", { text: fmt(v), class: typeof v === "number" ? "num" : null });
      }));
    }));
    return el("div", { class: "table-wrap" }, el("table", { class: cls || "data" }, el("thead", null, head), body));
  }
  function tableBlock(t, plain, expanded) {
    var body = [table(t), t.note ? el("p", { class: "note", text: t.note }) : null,
      t.source ? el("p", { class: "note" }, "from ", el("a", { href: t.source, text: decodeURIComponent(t.source.split("/").pop()) })) : null];
    if (plain) return el("div", { class: "block" }, el("h3", { text: t.title }), body);
    return el("details", { class: "block", open: expanded ? "" : null }, el("summary", { text: t.title }), body);
  }

  // -------------------------------------------------------------------------------------------- overview
  function renderOverview() {
    var root = clear(document.getElementById("overview"));
    append(root, el("h2", { text: "Run summary" }));
    append(root, el("div", { class: "settings" }, DATA.settings.map(function (t) { return tableBlock(t, false, true); })));
    if (DATA.comparison.rows.length) append(root, tableBlock(DATA.comparison, true));
    if ((DATA.paper || []).length) {
      append(root, el("h2", { text: "The paper's tables" }));
      DATA.paper.forEach(function (t) { append(root, tableBlock(t, true)); });
    }
    append(root, fileLinks(DATA.files, "Files of this report:"));
    if (DATA.timing.rows.length) {
      var t = DATA.timing;
      t.note = "total " + fmt(t.total_s, 1) + " s over " + t.rows.reduce(function (a, r) { return a + r[1]; }, 0) + " jobs";
      append(root, tableBlock(t, false));
    }
    if (DATA.cost) append(root, tableBlock(DATA.cost, false));  // sieve.report.cost_table
    var nav = clear(document.getElementById("runs"));
    DATA.runs.forEach(function (r, i) {
      append(nav, el("button", {
        text: r.key, class: "run-tab", "aria-pressed": String(i === state.run), "data-run": i,
        onclick: function () { selectRun(i); history.replaceState(null, "", "#" + r.anchor); },
      }));
    });
  }

  function selectRun(i) {
    state.run = i; state.page = 0; state.query = ""; state.filter = "all";
    Array.prototype.forEach.call(document.querySelectorAll(".run-tab"), function (b) {
      b.setAttribute("aria-pressed", String(Number(b.getAttribute("data-run")) === i));
    });
    renderRun();
  }

  // ------------------------------------------------------------------------------------------ a run
  function arSvg(ar, label) {
    // Plot area below a band that holds the mean labels (never over the bars); a y axis of hypothesis counts.
    var NS = "http://www.w3.org/2000/svg", W = 340, H = 190, B = 20;
    var left = 40, right = 12, top = 34, bottom = 34, pw = W - left - right, ph = H - top - bottom;
    var counts = new Array(B).fill(0);
    ar.values.forEach(function (v) { counts[Math.max(0, Math.min(B - 1, Math.floor(v * B)))] += 1; });
    var max = Math.max.apply(null, counts.concat([1]));
    var step = Math.max(1, Math.ceil(max / 4)), ymax = step * Math.ceil(max / step);
    function s(tag, attrs) {
      var n = document.createElementNS(NS, tag);
      Object.keys(attrs).forEach(function (k) { if (k === "text") n.textContent = attrs[k]; else n.setAttribute(k, attrs[k]); });
      return n;
    }
    var svg = s("svg", { viewBox: "0 0 " + W + " " + H, class: "ar-hist", role: "img" });
    svg.appendChild(s("title", { text: "Activation Rate distribution (" + label + ")" }));
    var bw = pw / B;
    function y(c) { return top + ph - ph * c / ymax; }
    for (var t = 0; t <= ymax; t += step) {
      svg.appendChild(s("line", { x1: left, x2: left + pw, y1: y(t), y2: y(t), class: t ? "grid" : "axis" }));
      svg.appendChild(s("text", { x: left - 5, y: y(t) + 3, class: "tick", "text-anchor": "end", text: String(t) }));
    }
    counts.forEach(function (c, i) {
      if (!c) return;
      var bar = s("rect", { x: left + i * bw + 1, y: y(c), width: bw - 2, height: top + ph - y(c), class: "bar" });
      bar.appendChild(s("title", { text: c + " hypotheses with AR in [" + (i / B) + ", " + ((i + 1) / B) + ")" }));
      svg.appendChild(bar);
    });
    svg.appendChild(s("line", { x1: left, x2: left, y1: top, y2: top + ph, class: "axis" }));
    svg.appendChild(s("text", { x: 11, y: top + ph / 2, class: "tick", "text-anchor": "middle",
      transform: "rotate(-90 11 " + (top + ph / 2) + ")", text: "hypotheses" }));
    var band = 0;
    function vline(x, cls, text) {
      var px = left + Math.max(0, Math.min(1, x)) * pw, ty = 11 + 11 * band;
      band += 1;
      svg.appendChild(s("line", { x1: px, x2: px, y1: ty + 2, y2: top + ph, class: cls }));
      var rightSide = px > left + pw - 80;  // keep the label inside the figure
      svg.appendChild(s("text", { x: rightSide ? px - 3 : px + 3, y: ty, class: cls, "text-anchor": rightSide ? "end" : "start", text: text }));
    }
    if (ar.mean_initial !== null) vline(ar.mean_initial, "mean-initial", "mean initial " + pct(ar.mean_initial));
    if (ar.mean_kept !== null) vline(ar.mean_kept, "mean-kept", "mean kept " + pct(ar.mean_kept));
    [0, 0.25, 0.5, 0.75, 1].forEach(function (t) {
      svg.appendChild(s("text", { x: left + t * pw, y: top + ph + 13, class: "tick", "text-anchor": "middle", text: String(t) }));
    });
    svg.appendChild(s("text", { x: left + pw / 2, y: H - 4, class: "tick", "text-anchor": "middle", text: "Activation Rate" }));
    return svg;
  }

  // AR (y) against the control rate (x), one dot per hypothesis: the paper's rule keeps those on or above the
  // initial mean AR (dashed horizontal), the specificity filter those also left of its cap (dashed vertical).
  function controlSvg(panel, label) {
    var NS = "http://www.w3.org/2000/svg", W = 340, H = 220;
    var left = 48, right = 12, top = 34, bottom = 34, pw = W - left - right, ph = H - top - bottom;
    function s(tag, attrs) {
      var n = document.createElementNS(NS, tag);
      Object.keys(attrs).forEach(function (k) { if (k === "text") n.textContent = attrs[k]; else n.setAttribute(k, attrs[k]); });
      return n;
    }
    function x(v) { return left + Math.max(0, Math.min(1, v)) * pw; }
    function y(v) { return top + ph - Math.max(0, Math.min(1, v)) * ph; }
    var svg = s("svg", { viewBox: "0 0 " + W + " " + H, class: "ar-hist ar-control", role: "img" });
    svg.appendChild(s("title", { text: "Activation Rate against control rate (" + label + ")" }));
    [0, 0.25, 0.5, 0.75, 1].forEach(function (t) {
      svg.appendChild(s("line", { x1: left, x2: left + pw, y1: y(t), y2: y(t), class: t ? "grid" : "axis" }));
      svg.appendChild(s("text", { x: left - 5, y: y(t) + 3, class: "tick", "text-anchor": "end", text: String(t) }));
      svg.appendChild(s("text", { x: x(t), y: top + ph + 13, class: "tick", "text-anchor": "middle", text: String(t) }));
    });
    svg.appendChild(s("line", { x1: left, x2: left, y1: top, y2: top + ph, class: "axis" }));
    if (panel.mean_initial !== null) {
      svg.appendChild(s("line", { x1: left, x2: left + pw, y1: y(panel.mean_initial), y2: y(panel.mean_initial), class: "mean-initial" }));
      svg.appendChild(s("text", { x: left + pw - 3, y: y(panel.mean_initial) - 3, class: "mean-initial", "text-anchor": "end", text: "mean AR initial " + pct(panel.mean_initial) }));
    }
    if (panel.max_control_rate !== null) {
      svg.appendChild(s("line", { x1: x(panel.max_control_rate), x2: x(panel.max_control_rate), y1: top - 12, y2: top + ph, class: "mean-kept" }));
      svg.appendChild(s("text", { x: x(panel.max_control_rate) + 3, y: top - 14, class: "mean-kept", text: "max control rate " + pct(panel.max_control_rate) }));
    }
    panel.points.forEach(function (p) {
      var dot = s("circle", { cx: x(p[1]), cy: y(p[0]), r: 3.5, class: "point" + (p[2] ? " kept" : "") });
      dot.appendChild(s("title", { text: "neuron " + p[3] + ": " + p[4] + " — AR " + pct(p[0]) + ", control rate " + pct(p[1]) + (p[2] ? " (kept)" : " (rejected)") }));
      svg.appendChild(dot);
    });
    svg.appendChild(s("text", { x: 10, y: top + ph / 2, class: "tick", "text-anchor": "middle",
      transform: "rotate(-90 10 " + (top + ph / 2) + ")", text: "Activation Rate" }));
    svg.appendChild(s("text", { x: left + pw / 2, y: H - 4, class: "tick", "text-anchor": "middle", text: "control rate (share of control images firing)" }));
    return svg;
  }

  function renderRun() {
    var run = DATA.runs[state.run];
    var root = clear(document.getElementById("run"));
    if (!run) return;
    append(root, el("h2", { id: run.anchor, text: run.key }));
    (run.warnings || []).forEach(function (w) { append(root, el("p", { class: "warn", text: w })); });
    append(root, el("dl", { class: "facts" }, run.facts.map(function (f) {
      return el("div", null, el("dt", { text: f[0] }), el("dd", { text: fmt(f[1]) }));
    })));
    var figs = el("div", { class: "figures" });
    if (run.histogram) {
      append(figs, el("figure", null, el("img", { src: run.histogram, alt: "Histogram of log10(p99 / median) with tau", class: "plot" }),
        el("figcaption", { text: "Selectivity ratio p99 / median per neuron; neurons right of the dashed line (tau = " + fmt(run.tau) + ") were selected." })));
    }
    Object.keys(run.ar).forEach(function (m) {
      append(figs, el("figure", null, arSvg(run.ar[m], methodName(m)),
        el("figcaption", { text: "Activation Rate of every hypothesis (" + methodName(m) + "); hypotheses below the initial mean are rejected." })));
    });
    Object.keys(run.control || {}).forEach(function (m) {
      var panel = run.control[m];
      append(figs, el("figure", null, controlSvg(panel, methodName(m)),
        el("figcaption", { text: "Activation Rate against control rate, one dot per hypothesis (" + methodName(m) + "); filled: kept by the active filter (" +
          panel.filter + "). The paper's rule keeps AR at or above the initial mean; the specificity filter also needs the control rate at or below its cap." })));
    });
    append(root, figs);
    run.tables.forEach(function (t) { append(root, tableBlock(t, true)); });
    append(root, fileLinks(run.files, "Built from:"));

    var search = el("input", { type: "search", id: "search", placeholder: "Search neuron id or concept…", "aria-label": "Search neurons",
      oninput: function (e) { state.query = e.target.value; state.page = 0; renderTable(); } });
    var filter = el("select", { id: "filter", "aria-label": "Show", onchange: function (e) { state.filter = e.target.value; state.page = 0; renderTable(); } },
      [["all", "all neurons"], ["selected", "selected"], ["verified", "verified"], ["unverified", "selected, unverified"], ["rejected", "rejected by Select"]]
        .map(function (o) { return el("option", { value: o[0], text: o[1] }); }));
    append(root, el("h3", { text: "Neurons" }));
    append(root, el("div", { class: "controls" }, search, filter, el("span", { id: "count", class: "count" }), el("span", { class: "pager", id: "pager" })));
    append(root, el("div", { class: "table-wrap" }, el("table", { id: "neurons", class: "data neurons" }, el("thead"), el("tbody"))));
    append(root, el("h3", { text: "Neuron cards" }));
    append(root, el("p", { class: "note", text: "One card per selected neuron among the table rows shown." }));
    append(root, el("div", { id: "cards" }));
    renderTable();
  }

  // ------------------------------------------------------------------------------------- neuron table
  function columns(run) {
    var cols = [
      { key: "id", label: "Neuron", sort: function (r) { return Number(r.id); } },
      { key: "ratio", label: "Ratio", sort: function (r) { return num(r.ratio); } },
      { key: "status", label: "Status", sort: function (r) { return r.status; } },
      { key: "k", label: "Clusters", sort: function (r) { return r.k; } },
      { key: "verified", label: "Verified concepts", sort: function (r) { return r.verified.length; } },
      { key: "best_ar", label: "Best AR", sort: function (r) { return r.best_ar; } },
    ];
    if (run.has_truth) cols.push({ key: "truth", label: "Planted", sort: function (r) { return r.truth || ""; } });
    run.baselines.forEach(function (b) {
      cols.push({ key: "b:" + b, label: methodName(b) + " verified", sort: function (r) { return (r.baselines[b] || []).length; } });
    });
    return cols;
  }

  function searchText(run, r) {
    if (r._search !== undefined) return r._search;
    var parts = r.verified.map(function (v) { return v[0]; });
    if (r.truth) parts.push(r.truth);
    var card = run.cards[r.id];
    if (card) card.clusters.forEach(function (c) { c.concepts.forEach(function (h) { parts.push(h.text); }); });
    Object.keys(r.baselines || {}).forEach(function (b) { r.baselines[b].forEach(function (v) { parts.push(v[0]); }); });
    r._search = parts.join("\n").toLowerCase();
    return r._search;
  }

  function visibleRows(run) {
    var q = state.query.trim().toLowerCase();
    var rows = run.neurons.filter(function (r) {
      if (state.filter === "selected" && !r.selected) return false;
      if (state.filter === "verified" && r.status !== "verified") return false;
      if (state.filter === "unverified" && r.status !== "unverified") return false;
      if (state.filter === "rejected" && r.selected) return false;
      if (!q) return true;
      var idq = q.charAt(0) === "#" ? q.slice(1) : q;
      if (/^\d+$/.test(idq) && r.id === idq) return true;
      return q.charAt(0) !== "#" && searchText(run, r).indexOf(q) >= 0;
    });
    var col = columns(run).filter(function (c) { return c.key === state.sortKey; })[0] || columns(run)[0];
    var dir = state.sortDir;
    return rows.map(function (r, i) { return [col.sort(r), i, r]; }).sort(function (a, b) {
      var x = a[0], y = b[0];
      if (x === null || x === undefined) return (y === null || y === undefined) ? a[1] - b[1] : 1;
      if (y === null || y === undefined) return -1;
      if (x < y) return -dir;
      if (x > y) return dir;
      return a[1] - b[1];
    }).map(function (t) { return t[2]; });
  }

  function conceptList(list) {
    if (!list || !list.length) return "";
    return el("span", null, list.map(function (v, i) {
      return [i ? ", " : "", el("span", { class: "concept", text: v[0] }), el("span", { class: "ar", text: " " + pct(v[1]) })];
    }));
  }

  function renderTable() {
    var run = DATA.runs[state.run];
    var cols = columns(run);
    var rows = visibleRows(run);
    var pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
    state.page = Math.min(state.page, pages - 1);
    var start = state.page * PAGE_SIZE, shown = rows.slice(start, start + PAGE_SIZE);
    var tbl = document.getElementById("neurons");
    var thead = clear(tbl.tHead);
    append(thead, el("tr", null, cols.map(function (c) {
      var sorted = c.key === state.sortKey;
      return el("th", { scope: "col", "aria-sort": sorted ? (state.sortDir > 0 ? "ascending" : "descending") : "none" },
        el("button", { class: "sort", text: c.label + (sorted ? (state.sortDir > 0 ? " ▲" : " ▼") : ""), onclick: function () {
          if (state.sortKey === c.key) state.sortDir = -state.sortDir;
          else { state.sortKey = c.key; state.sortDir = (c.key === "id" || c.key === "truth") ? 1 : -1; }
          state.page = 0; renderTable();
        } }));
    })));
    var tbody = clear(tbl.tBodies[0]);
    shown.forEach(function (r) {
      var idCell = run.cards[r.id] ? el("a", { href: "#" + cardId(state.run, r.id), text: r.id }) : r.id;
      var tr = el("tr", { "data-neuron": r.id, class: "status-" + r.status },
        el("td", { class: "num" }, idCell),
        el("td", { class: "num", text: fmt(r.ratio, 2) }),
        el("td", null, el("span", { class: "badge " + r.status, text: r.status })),
        el("td", { class: "num", text: fmt(r.k) }),
        el("td", null, conceptList(r.verified)),
        el("td", { class: "num", text: r.best_ar === null ? "–" : pct(r.best_ar) }));
      if (run.has_truth) append(tr, el("td", { text: r.truth || "" }));
      run.baselines.forEach(function (b) { append(tr, el("td", null, conceptList((r.baselines || {})[b]))); });
      append(tbody, tr);
    });
    document.getElementById("count").textContent = rows.length
      ? "rows " + (start + 1) + "–" + (start + shown.length) + " of " + rows.length + (rows.length !== run.neurons.length ? " (filtered from " + run.neurons.length + ")" : "")
      : "no neuron matches";
    var pager = clear(document.getElementById("pager"));
    append(pager, [
      el("button", { text: "‹ prev", id: "prev", disabled: state.page === 0, onclick: function () { state.page -= 1; renderTable(); } }),
      el("span", { text: " page " + (state.page + 1) + " / " + pages + " " }),
      el("button", { text: "next ›", id: "next", disabled: state.page >= pages - 1, onclick: function () { state.page += 1; renderTable(); } }),
    ]);
    renderCards(run, shown);
  }

  // --------------------------------------------------------------------------------------------- cards
  function arBar(h) {
    if (h.ar === undefined || h.ar === null) return el("span", { class: "muted", text: "not verified" });
    var fill = el("span", { class: "fill" + (h.kept ? " kept" : "") });
    fill.style.width = Math.max(0, Math.min(100, h.ar * 100)) + "%";
    var track = el("span", { class: "track" }, fill);
    var interval = null, control = null;
    if (h.ar_low !== undefined && h.ar_high !== undefined) {  // the Wilson 95% interval, a whisker over the bar
      var ci = el("span", { class: "ci" });
      ci.style.left = Math.max(0, Math.min(100, h.ar_low * 100)) + "%";
      ci.style.width = Math.max(0, Math.min(100, (h.ar_high - h.ar_low) * 100)) + "%";
      append(track, ci);
      interval = el("span", { class: "muted ci-text", text: " 95% " + pct(h.ar_low) + "–" + pct(h.ar_high) });
    }
    if (h.control_rate !== undefined) {
      control = el("span", { class: "control", title: "share of the control images on which the neuron fires (same threshold)" +
        (h.auc !== undefined ? "; ROC AUC " + fmt(h.auc, 2) : "") + (h.f1 !== undefined ? "; F1 " + fmt(h.f1, 2) : ""),
        text: " · control " + pct(h.control_rate) });
    }
    return el("span", { class: "arbar", title: fmt(h.n_active) + " of " + fmt(h.n_images) + " generated images fire the neuron" },
      track, el("span", { class: "arval", text: pct(h.ar) }),
      el("span", { class: "muted", text: " (" + fmt(h.n_active) + "/" + fmt(h.n_images) + ")" }), interval, control);
  }
  function verdict(h) {
    if (h.ar === undefined || h.ar === null) return el("span", { class: "badge", text: "–" });
    return el("span", { class: "badge " + (h.kept ? "verified" : "rejected"), text: h.kept ? "kept" : "rejected" });
  }
  // The generated images of a hypothesis: each shown thumbnail with the neuron's activation on it, marked fired
  // (above the neuron's threshold, as the AR counts it) or not, then one dot per generated image (all of them).
  function genStrip(h, threshold) {
    var strip = el("div", { class: "strip" }, (h.generated || []).map(function (src, i) {
      var v = h.gen_acts ? h.gen_acts[i] : null, fired = h.gen_fired ? h.gen_fired[i] : null;
      var cls = "gen-cell" + (fired === 1 ? " fired" : fired === 0 ? " quiet" : "");
      return el("figure", { class: cls, title: v === null || v === undefined ? null :
          "activation " + fmt(v, 4) + (fired ? " > " : " ≤ ") + "threshold " + fmt(threshold, 4) },
        el("img", { src: src, loading: "lazy", class: "gen", alt: "generated image " + (i + 1) + " of the concept " + h.text }),
        v === null || v === undefined ? null : el("figcaption", { class: "gen-val", text: (fired ? "✓ " : "✗ ") + fmt(v, 3) }));
    }));
    if (!h.acts || !h.acts.length) return strip;
    var dots = el("div", { class: "dots", title: "each generated image: filled = fired (activation above " + fmt(threshold, 4) + ")" },
      h.acts.map(function (v, i) {
        return el("span", { class: "dot" + (h.fired[i] ? " on" : ""), title: "image " + (i + 1) + ": " + fmt(v, 4) });
      }));
    return el("div", null, strip, dots);
  }
  function hypotheses(concepts, threshold) {
    if (!concepts.length) return el("p", { class: "muted", text: "no hypotheses" });
    return el("table", { class: "hyp" },
      el("thead", null, el("tr", null, ["concept", "score", "Activation Rate", "verdict", "generated images"].map(function (c) { return el("th", { text: c }); }))),
      el("tbody", null, concepts.map(function (h) {
        return el("tr", null, el("td", { class: "concept", text: h.text }), el("td", { class: "num", text: fmt(h.score) }),
          el("td", null, arBar(h)), el("td", null, verdict(h)),
          el("td", null, genStrip(h, threshold)));
      })));
  }
  function clusterBlock(c, card) {
    var top = card.top || [];
    var members = c.members && c.members.length ? c.members.length + " top images (rank: activation " + c.members.map(function (r) {
      return "#" + r + (top[r] !== null && top[r] !== undefined ? " " + fmt(top[r], 3) : "");
    }).join(", ") + ")" : "";
    return el("div", { class: "cluster" }, el("h4", null, "Cluster " + c.id + " ", el("span", { class: "muted", text: members })),
      hypotheses(c.concepts, card.threshold));
  }

  function renderCard(run, r, card) {
    var node = el("article", { class: "card", id: cardId(state.run, r.id), "data-neuron": r.id });
    append(node, el("h3", null, "Neuron " + r.id + " ", el("span", { class: "badge " + r.status, text: r.status })));
    append(node, el("p", { class: "meta", text: "ratio " + fmt(r.ratio, 2) + " · p99 " + fmt(card.p99) + " · median " + fmt(card.median) +
      " · AR threshold (probe p99) " + fmt(card.threshold, 4) + (card.clusters.length ? " · " + card.clusters.length + " cluster(s)" : "") +
      (card.silhouette && Object.keys(card.silhouette).length ? " · silhouette by k: " + Object.keys(card.silhouette).map(function (k) { return k + ": " + fmt(card.silhouette[k], 2); }).join(", ") : "") }));
    if (card.truth) {
      append(node, el("dl", { class: "truth" }, el("div", null, el("dt", { text: "planted truth" })),
        card.truth.map(function (kv) { return el("div", null, el("dt", { text: kv[0] }), el("dd", { text: kv[1] })); })));
    }
    var body = el("div", { class: "card-body" });
    if (card.grid) {
      append(body, el("figure", { class: "grid" },
        el("a", { href: card.grid, target: "_blank", title: "open full size" },
          el("img", { src: card.grid, loading: "lazy", class: "topimgs", alt: "top images of neuron " + r.id + " with crop boxes, grouped by cluster" })),
        el("figcaption", { text: "Top probe images, one block per cluster: each image with the crop of highest activation boxed, below it the neuron's activation map (dark: quiet, yellow: strongest), then its rank and activation." })));
    } else {
      append(body, el("p", { class: "muted", text: "no top-image grid" }));
    }
    var methods = el("div", { class: "methods" });
    var sieveCol = el("div", { class: "method" }, run.baselines.length ? el("h4", { class: "mname", text: "SIEVE" }) : null,
      card.clusters.length ? card.clusters.map(function (c) { return clusterBlock(c, card); }) : el("p", { class: "muted", text: "no clusters" }));
    if (card.dropped && card.dropped.length) {
      append(sieveCol, el("p", { class: "note", text: "dropped (smaller than the minimum cluster size): " + card.dropped.map(function (d) {
        return typeof d === "object" && d !== null ? "cluster " + fmt(d.cluster) + " (" + fmt(d.size !== undefined ? d.size : (d.members || []).length) + " images)" : fmt(d);
      }).join(", ") }));
    }
    append(methods, sieveCol);
    run.baselines.forEach(function (b) {
      var cl = (card.baselines || {})[b] || [];
      append(methods, el("div", { class: "method baseline" }, el("h4", { class: "mname", text: methodName(b) + " (baseline)" }),
        cl.length ? cl.map(function (c) { return hypotheses(c.concepts, card.threshold); }) : el("p", { class: "muted", text: "no label" })));
    });
    append(body, methods);
    if (card.ablation) {
      append(body, el("figure", { class: "ablation" }, el("img", { src: card.ablation, loading: "lazy", class: "plot", alt: "accuracy drop per class when neuron " + r.id + " is zeroed" }),
        el("figcaption", { text: "Neuron ablation: the classes whose accuracy drops most when this neuron is set to 0." })));
    }
    append(node, body);
    append(node, fileLinks(card.files, "Files:"));
    return node;
  }

  function renderCards(run, shown) {
    var root = clear(document.getElementById("cards"));
    var n = 0;
    shown.forEach(function (r) {
      var card = run.cards[r.id];
      if (!card) return;
      append(root, renderCard(run, r, card));
      n += 1;
    });
    if (!n) append(root, el("p", { class: "muted", text: "No selected neuron among the rows shown." }));
  }

  // -------------------------------------------- deep links (#{model}/{probe}/{concept set}[/n{neuron}])
  // Older links (#n-{run index}-{neuron}, #run-{index}) still work.
  function parseHash(hash) {
    var frag = hash.replace(/^#/, ""), legacy = /^n-(\d+)-(.+)$/.exec(frag), legacyRun = /^run-(\d+)$/.exec(frag);
    if (legacyRun && DATA.runs[Number(legacyRun[1])]) return { run: Number(legacyRun[1]), neuron: null };
    if (legacy && DATA.runs[Number(legacy[1])]) return { run: Number(legacy[1]), neuron: decodeURIComponent(legacy[2]) };
    for (var i = 0; i < DATA.runs.length; i++) {
      var a = DATA.runs[i].anchor;
      if (frag === a) return { run: i, neuron: null };
      if (frag.indexOf(a + "/n") === 0) return { run: i, neuron: decodeURIComponent(frag.slice(a.length + 2)) };
    }
    return null;
  }
  function followHash() {
    var where = parseHash(location.hash);
    if (!where) return;
    var i = where.run, id = where.neuron;
    if (i !== state.run || id === null) selectRun(i);
    if (id === null) { document.getElementById(DATA.runs[i].anchor).scrollIntoView(); return; }
    if (!DATA.runs[i].cards[id]) return;
    var target = document.getElementById(cardId(i, id));
    if (!target) {
      state.query = ""; state.filter = "all";
      var idx = visibleRows(DATA.runs[i]).map(function (x) { return x.id; }).indexOf(id);
      if (idx < 0) return;
      state.page = Math.floor(idx / PAGE_SIZE);
      var s = document.getElementById("search"); if (s) s.value = "";
      var f = document.getElementById("filter"); if (f) f.value = "all";
      renderTable();
      target = document.getElementById(cardId(i, id));
    }
    if (target) target.scrollIntoView();
  }

  renderOverview();
  if (DATA.runs.length) {
    renderRun();
    followHash();
    window.addEventListener("hashchange", followHash);
  } else {
    append(document.getElementById("run"), el("p", { class: "warn", text: "No results." }));
  }
})();
