// The sessrec HTML report. Reads the session from the JSON element, never
// from the network, and inserts text with textContent only. Lanes, tree rows
// and list rows are virtual: only what is in view is drawn or in the DOM, and
// markers are aggregated per pixel, so a million events stay interactive.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("sessrec-data").textContent);
  const S = D.strings;
  const ROW = 22;
  const EINPROGRESS = 115;
  // Type names and numbers, failure verdicts and exit texts come from sessrec
  // (replay/html.py): the page shows them, it does not decide them.
  const TYPE_NAME = D.type_names;
  const TYPE = {};
  TYPE_NAME.forEach((name, t) => { if (name) TYPE[name] = t; });
  const TYPE_ORDER = ["exec", "open", "connect", "chdir", "fork", "exit", "cgroup"];
  const css = getComputedStyle(document.documentElement);
  const COLOR = {};
  for (const n of TYPE_ORDER) COLOR[n] = css.getPropertyValue("--" + n).trim();
  const FAIL = css.getPropertyValue("--fail").trim();
  const $ = (id) => document.getElementById(id);

  // --- events: parallel typed arrays -----------------------------------------------
  const E = D.ev;
  const N = E.t.length;
  const evT = Uint8Array.from(E.t);
  const evTs = new Float64Array(N); // microseconds since the session clock
  {
    let acc = 0;
    const dt = E.dt;
    for (let i = 0; i < N; i++) { acc += dt[i]; evTs[i] = acc; }
  }
  const evP = Int32Array.from(E.p);
  const evS = Int32Array.from(E.s);
  const evC = Int32Array.from(E.c);
  const evR = Float64Array.from(E.r);
  const evX = Float64Array.from(E.x);
  const evFail = Uint8Array.from(E.f);
  E.t = E.dt = E.p = E.s = E.c = E.r = E.x = E.f = null; // let the arrays go

  // --- processes, in tree order ------------------------------------------------------
  const PR = D.procs;
  const P = PR.pid.length;
  const depth = PR.depth, parent = PR.parent;
  const nChildren = new Int32Array(P);
  for (let i = 0; i < P; i++) if (parent[i] >= 0) nChildren[parent[i]]++;
  // Each process's events, in time order: laneEv[laneOff[p] .. laneOff[p + 1]).
  const laneOff = new Int32Array(P + 1);
  for (let i = 0; i < N; i++) laneOff[evP[i] + 1]++;
  for (let p = 0; p < P; p++) laneOff[p + 1] += laneOff[p];
  const laneEv = new Int32Array(N);
  {
    const fill = laneOff.slice(0, P);
    for (let i = 0; i < N; i++) laneEv[fill[evP[i]]++] = i;
    for (let p = 0; p < P; p++) {
      const a = laneOff[p], b = laneOff[p + 1];
      for (let k = a + 1; k < b; k++) {
        if (evTs[laneEv[k]] < evTs[laneEv[k - 1]]) {
          laneEv.subarray(a, b).sort((x, y) => evTs[x] - evTs[y] || x - y);
          break;
        }
      }
    }
  }
  const procLabel = new Array(P);
  const procChain = new Array(P);
  for (let p = 0; p < P; p++) {
    const ok = PR.execs[p].filter((e) => e[1] === 0);
    procChain[p] = ok.map((e) => S[e[2]]).join("  \u2192  ");
    procLabel[p] = ok.length ? S[ok[ok.length - 1][2]] : "[" + S[PR.comm[p]] + "]";
  }
  let tsMin = 0, tsMax = D.end_us;
  for (let p = 0; p < P; p++) tsMin = Math.min(tsMin, PR.start[p]);
  if (N) { tsMin = Math.min(tsMin, evTs[0]); }
  for (let i = 0; i < N; i++) if (evTs[i] > tsMax) tsMax = evTs[i];

  // --- formatting ------------------------------------------------------------------------
  function errnoName(n) { return D.errno[n] || "E" + n; }
  function result(r) { return r < 0 ? r + " " + errnoName(-r) : String(r); }
  function pad(n, w) { let s = String(n); while (s.length < w) s = "0" + s; return s; }
  function rel(us) {
    const sign = us < 0 ? "-" : "+";
    const a = Math.abs(Math.round(us));
    return sign + Math.floor(a / 1e6) + "." + pad(a % 1e6, 6);
  }
  const wallUs = Math.round(D.wall_ms * 1000);
  function absTime(us) {
    const total = wallUs + Math.round(us);
    const ms = Math.floor(total / 1000);
    if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) return "?";
    const iso = new Date(ms).toISOString();
    return iso.slice(0, 19) + "." + pad(((total % 1e6) + 1e6) % 1e6, 6) + "Z";
  }
  function dur(us) {
    if (us < 1000) return Math.round(us) + " \u00b5s";
    if (us < 1e6) return (us / 1000).toFixed(us < 1e4 ? 2 : 1) + " ms";
    const s = us / 1e6;
    if (s < 60) return s.toFixed(s < 10 ? 3 : 2) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + "m" + pad(Math.floor(s % 60), 2) + "s";
    return Math.floor(m / 60) + "h" + pad(m % 60, 2) + "m";
  }
  function detailText(i) {
    const t = evT[i], s = evS[i], r = evR[i], x = evX[i];
    switch (t) {
      case TYPE.exec: {
        let text = S[s];
        const exe = S[x];
        if (exe && text.split(" ", 1)[0] !== exe) text += "  (" + exe + ")";
        return r < 0 ? text + "  = " + result(r) : text;
      }
      case TYPE.open: return S[s] + "  " + S[x] + "  = " + result(r);
      case TYPE.connect: return S[s] + "  = " + result(r);
      case TYPE.chdir: return r < 0 ? S[s] + "  = " + result(r) : S[s];
      case TYPE.fork: return "child " + x;
      case TYPE.exit: return S[s];
      case TYPE.cgroup: return S[s];
    }
    return "";
  }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // --- header, banner, footer ----------------------------------------------------------------
  const sm = D.summary;
  document.title = "sessrec: " + sm.user + "@" + sm.hostname + " " + sm.command.join(" ");
  $("title").textContent = sm.command.join(" ") || "(no command)";
  $("subtitle").textContent = "session " + sm.session_id + "  \u00b7  " + sm.file +
    "  \u00b7  format " + sm.format_version + "  \u00b7  kernel " + sm.kernel;
  {
    const ids = ["uid " + sm.uid];
    if (sm.login_uid !== null) ids.push("login uid " + sm.login_uid);
    if (sm.audit_session_id !== null) ids.push("audit session " + sm.audit_session_id);
    const lost = Object.values(sm.lost).reduce((a, b) => a + b, 0);
    const items = [
      ["user", sm.user + " (" + ids.join(", ") + ")"],
      ["host", sm.hostname],
      ["started", sm.started_at],
      ["duration", (sm.duration_ns === null ? "unknown" : dur(sm.duration_ns / 1000)) +
        (sm.complete ? "" : " (" + sm.status + ")"), !sm.complete],
      ["exit status", sm.exit_status === null ? "unknown" : sm.exit_status, sm.exit_status !== 0],
      ["processes", P],
      ["events", N.toLocaleString("en-US")],
      ["lost", lost.toLocaleString("en-US"), lost > 0],
    ];
    const dl = $("summary");
    for (const [k, v, bad] of items) {
      const d = el("div");
      d.append(el("dt", null, k), el("dd", bad ? "bad" : null, v));
      dl.append(d);
    }
  }
  if (D.warnings.length) {
    const b = $("banner");
    for (const w of D.warnings) b.append(el("p", null, w));
    b.hidden = false;
  }
  $("foot").textContent = "Generated by " + D.generator + " at " + D.generated_at +
    ". Times are UTC; relative times are seconds since the recording started. This page loads nothing from the network.";

  // --- filters --------------------------------------------------------------------------------
  const typeOn = new Uint8Array(TYPE_NAME.length).fill(1);
  let failedOnly = false;
  let query = "";
  let lower = null; // lower-cased strings, made on the first search
  const mask = new Uint8Array(N);
  const procKeep = new Uint8Array(P);
  const procHits = new Int32Array(P);
  let listIdx = new Int32Array(0);
  let rows = new Int32Array(0);
  const collapsed = new Uint8Array(P);
  const typeCount = new Int32Array(TYPE_NAME.length);
  for (let i = 0; i < N; i++) typeCount[evT[i]]++;

  function applyFilter() {
    const q = query;
    let strHit = null;
    const procMatch = new Uint8Array(P);
    if (q) {
      if (!lower) lower = S.map((s) => s.toLowerCase());
      strHit = new Uint8Array(S.length);
      for (let k = 0; k < lower.length; k++) if (lower[k].includes(q)) strHit[k] = 1;
      for (let p = 0; p < P; p++) {
        if (String(PR.pid[p]) === q || strHit[PR.comm[p]]) { procMatch[p] = 1; continue; }
        for (const e of PR.execs[p]) if (strHit[e[2]] || strHit[e[3]]) { procMatch[p] = 1; break; }
      }
    }
    procHits.fill(0);
    let n = 0;
    for (let i = 0; i < N; i++) {
      const t = evT[i];
      let ok = typeOn[t] && (!failedOnly || evFail[i]);
      if (ok && strHit) {
        const s = evS[i];
        ok = (s >= 0 && strHit[s]) || (t === TYPE.exec && strHit[evX[i]]) ||
          strHit[evC[i]] || procMatch[evP[i]];
      }
      mask[i] = ok ? 1 : 0;
      if (ok) { n++; procHits[evP[i]]++; }
    }
    listIdx = new Int32Array(n);
    for (let i = 0, k = 0; i < N; i++) if (mask[i]) listIdx[k++] = i;
    procKeep.fill(q || failedOnly ? 0 : 1);
    if (q || failedOnly) {
      for (let p = 0; p < P; p++) {
        if (procHits[p] || (q && procMatch[p])) {
          for (let a = p; a >= 0 && !procKeep[a]; a = parent[a]) procKeep[a] = 1;
        }
      }
    }
    computeRows();
    const m = $("matchCount");
    m.textContent = n === N ? N.toLocaleString("en-US") + " events"
      : n.toLocaleString("en-US") + " of " + N.toLocaleString("en-US") + " events";
    listBox.setCount(listIdx.length);
    scheduleList();
  }

  function computeRows() {
    const out = new Int32Array(P);
    let n = 0, skip = -1;
    for (let p = 0; p < P; p++) {
      if (skip >= 0) { if (depth[p] > skip) continue; skip = -1; }
      if (!procKeep[p]) continue;
      out[n++] = p;
      if (collapsed[p] && nChildren[p]) skip = depth[p];
    }
    rows = out.slice(0, n);
    let shown = 0;
    for (let p = 0; p < P; p++) if (procKeep[p]) shown++;
    $("procCount").textContent = shown === P ? P + " processes" : shown + " of " + P + " processes";
    treeBox.setCount(rows.length);
    lanesBox.setCount(rows.length);
    schedule();
  }

  // --- virtual scrolling -------------------------------------------------------------------------
  // Browsers cap element heights (about 33 million px in Chromium): past a
  // limit the spacer is shorter than the rows and scrolling is scaled.
  const MAX_PX = 15e6;
  function VBox(box, spacer, onScroll) {
    this.box = box; this.spacer = spacer; this.count = 0; this.k = 1;
    box.addEventListener("scroll", onScroll, { passive: true });
  }
  VBox.prototype.setCount = function (n) {
    this.count = n;
    const want = n * ROW;
    this.spacer.style.height = Math.min(want, MAX_PX) + "px";
    const h = this.box.clientHeight;
    const real = Math.min(want, MAX_PX);
    this.k = want > MAX_PX && real > h ? (want - h) / (real - h) : 1;
  };
  // The virtual offset (px) of the top of the view.
  VBox.prototype.top = function () { return this.box.scrollTop * this.k; };
  // Where row i goes, in the box's content coordinates.
  VBox.prototype.rowTop = function (i) { return this.box.scrollTop + (i * ROW - this.top()); };
  VBox.prototype.scrollToRow = function (i) {
    const h = this.box.clientHeight;
    const y = i * ROW;
    const top = this.top();
    if (y < top || y + ROW > top + h) this.box.scrollTop = (y - h / 3) / this.k;
  };

  let syncing = false;
  const treeBox = new VBox($("tree"), $("treeSpacer"), () => {
    if (!syncing && lanesBox.box.scrollTop !== treeBox.box.scrollTop) {
      syncing = true; lanesBox.box.scrollTop = treeBox.box.scrollTop; syncing = false;
    }
    schedule();
  });
  const lanesBox = new VBox($("lanesScroll"), $("lanesSpacer"), () => {
    if (!syncing && treeBox.box.scrollTop !== lanesBox.box.scrollTop) {
      syncing = true; treeBox.box.scrollTop = lanesBox.box.scrollTop; syncing = false;
    }
    schedule();
  });
  const listBox = new VBox($("events"), $("eventsSpacer"), () => scheduleList());

  // --- selection ----------------------------------------------------------------------------------
  let selProc = -1, selEv = -1;
  function selectProc(p, reveal) {
    selProc = p; selEv = -1;
    showProc(p);
    if (reveal) revealProc(p);
    schedule(); scheduleList();
  }
  function selectEvent(i, reveal) {
    selEv = i; selProc = evP[i];
    showEvent(i);
    if (reveal) {
      revealProc(selProc);
      const ts = evTs[i];
      if (ts < v0 || ts > v1) { const w = v1 - v0; v0 = ts - w / 2; v1 = ts + w / 2; }
    }
    schedule(); scheduleList();
  }
  function revealProc(p) {
    let r = rows.indexOf(p);
    if (r < 0) {
      for (let a = parent[p]; a >= 0; a = parent[a]) collapsed[a] = 0;
      for (let a = p; a >= 0; a = parent[a]) procKeep[a] = 1;
      computeRows();
      r = rows.indexOf(p);
    }
    if (r >= 0) lanesBox.scrollToRow(r);
  }

  // --- details pane --------------------------------------------------------------------------------
  const body = $("detailsBody");
  function dl(pairs) {
    const d = el("dl");
    for (const [k, v, cls] of pairs) {
      if (v === undefined || v === null) continue;
      d.append(el("dt", null, k));
      const dd = el("dd", cls || null);
      if (v instanceof Node) dd.append(v); else dd.textContent = String(v);
      d.append(dd);
    }
    return d;
  }
  function procLink(p) {
    const a = el("a", null, PR.pid[p] + "  " + procLabel[p]);
    a.addEventListener("click", () => selectProc(p, true));
    return a;
  }
  function showProc(p) {
    $("detailsTitle").textContent = "Process";
    body.replaceChildren();
    body.append(el("h2", null, procLabel[p]));
    const end = PR.end[p];
    const ex = PR.exit[p];
    const pairs = [
      ["pid", PR.pid[p]],
      ["parent", parent[p] >= 0 ? procLink(parent[p]) : "ppid " + PR.ppid[p] + " (outside the session)"],
      ["comm", S[PR.comm[p]]],
      ["started", rel(PR.start[p]) + " s  (" + absTime(PR.start[p]).slice(11) + ")"],
      ["ended", end >= 0 ? rel(end) + " s  (" + absTime(end).slice(11) + ")"
        : "still running when the recording ended"],
      ["duration", end >= 0 ? dur(end - PR.start[p]) : null],
      ["exit", ex === null ? "unknown" : S[PR.exit_text[p]], ex ? "bad" : null],
      ["events", PR.events[p]],
      ["failures", PR.failed[p] || null, PR.failed[p] ? "bad" : null],
      ["threads", PR.threads[p] || null],
      ["orphaned", PR.orphaned[p] ? "yes: its parent exited first" : null],
    ];
    body.append(dl(pairs));
    const execs = PR.execs[p];
    if (execs.length) {
      body.append(el("h3", null, "Programs (exec chain)"));
      const ol = el("ol");
      for (const e of execs) {
        const li = el("li", e[1] < 0 ? "bad" : null);
        li.append(el("span", "when", rel(e[0]) + "  "), S[e[2]]);
        if (S[e[3]] !== S[e[2]].split(" ", 1)[0]) li.append("  (" + S[e[3]] + ")");
        if (e[1] < 0) li.append("  = " + result(e[1]));
        ol.append(li);
      }
      body.append(ol);
    }
    const kids = [];
    for (let c = p + 1; c < P && depth[c] > depth[p]; c++) if (parent[c] === p) kids.push(c);
    if (kids.length) {
      body.append(el("h3", null, "Children (" + kids.length + ")"));
      const ul = el("ul");
      for (const c of kids.slice(0, 100)) { const li = el("li"); li.append(procLink(c)); ul.append(li); }
      if (kids.length > 100) ul.append(el("li", null, "\u2026 " + (kids.length - 100) + " more"));
      body.append(ul);
    }
    const files = new Map(), conns = new Map();
    for (let k = laneOff[p]; k < laneOff[p + 1]; k++) {
      const i = laneEv[k], t = evT[i];
      const m = t === TYPE.open ? files : t === TYPE.connect ? conns : null;
      if (!m) continue;
      const key = evS[i];
      const v = m.get(key) || [0, 0];
      v[0]++; if (evFail[i]) v[1]++;
      m.set(key, v);
    }
    for (const [title, m] of [["Files", files], ["Connections", conns]]) {
      if (!m.size) continue;
      body.append(el("h3", null, title + " (" + m.size + ")"));
      const ul = el("ul");
      let shown = 0;
      for (const [key, [n, bad]] of m) {
        if (shown++ >= 200) { ul.append(el("li", null, "\u2026 " + (m.size - 200) + " more")); break; }
        const li = el("li", bad === n ? "bad" : null, S[key]);
        if (n > 1) li.append(el("span", "when", "  \u00d7" + n));
        if (bad) li.append(el("span", "when", "  (" + bad + " failed)"));
        ul.append(li);
      }
      body.append(ul);
    }
  }
  function showEvent(i) {
    const t = evT[i], p = evP[i], r = evR[i], x = evX[i], s = evS[i];
    $("detailsTitle").textContent = "Event";
    body.replaceChildren();
    const h = el("h2");
    h.append(el("span", "tag t-" + TYPE_NAME[t], TYPE_NAME[t]), " ", detailText(i));
    body.append(h);
    const pairs = [
      ["time", absTime(evTs[i])],
      ["relative", rel(evTs[i]) + " s"],
      ["process", procLink(p)],
      ["comm", S[evC[i]]],
    ];
    if (t === TYPE.exec) {
      pairs.push(["argv", S[s]], ["executable", S[x]], ["result", result(r), r < 0 ? "bad" : null]);
    } else if (t === TYPE.open) {
      pairs.push(["path", S[s]], ["flags", S[x]], ["result", result(r), r < 0 ? "bad" : null]);
    } else if (t === TYPE.connect) {
      pairs.push(["destination", S[s]], ["result", result(r) +
        (r === -EINPROGRESS ? " (non-blocking: the connection was in progress)" : ""),
        evFail[i] ? "bad" : null]);
    } else if (t === TYPE.chdir) {
      pairs.push(["directory", S[s]], ["result", result(r), r < 0 ? "bad" : null]);
    } else if (t === TYPE.fork) {
      pairs.push(["child pid", x]);
    } else if (t === TYPE.exit) {
      pairs.push(["status", S[s], x ? "bad" : null]);
    }
    body.append(dl(pairs));
  }

  // --- tree rows ----------------------------------------------------------------------------------
  const treeEl = $("tree");
  const treePool = [];
  function treeRow() {
    const r = el("div", "trow");
    r.append(el("span", "tog"), el("span", "pid"), el("span", "name"), el("span", "fill"),
      el("span", "badge"), el("span", "badge"));
    r.addEventListener("click", (ev) => {
      const p = Number(r.dataset.p);
      if (ev.target === r.firstChild && nChildren[p]) {
        collapsed[p] ^= 1; computeRows();
      } else {
        selectProc(p, false);
        const [a, b] = span(p, false);
        if (b < v0 || a > v1) { const w = v1 - v0; v0 = (a + b) / 2 - w / 2; v1 = v0 + w; }
      }
    });
    // Double-click: zoom the timeline to the process and its descendants.
    r.addEventListener("dblclick", (ev) => {
      if (ev.target === r.firstChild) return;
      const [a, b] = span(Number(r.dataset.p), true);
      const pad = Math.max((b - a) * 0.05, 10);
      v0 = a - pad; v1 = b + pad; schedule();
    });
    treeEl.append(r);
    return r;
  }
  // [start, end] of process p (and of its descendants with deep).
  function span(p, deep) {
    let a = PR.start[p], b = PR.end[p] >= 0 ? PR.end[p] : Math.max(PR.last[p], a);
    if (deep) {
      for (let c = p + 1; c < P && depth[c] > depth[p]; c++) {
        a = Math.min(a, PR.start[c]);
        b = Math.max(b, PR.end[c] >= 0 ? PR.end[c] : PR.last[c]);
      }
    }
    return [a, Math.max(b, a + 1)];
  }
  // The rows of a virtual list that are in view: the first one and how many,
  // with the pool of row elements grown to fit them.
  function inView(box, viewEl, count, pool, make) {
    const first = Math.max(0, Math.floor(box.top() / ROW));
    const n = Math.max(0, Math.min(count - first, Math.ceil(viewEl.clientHeight / ROW) + 1));
    while (pool.length < n) pool.push(make());
    return [first, n];
  }
  function drawTree() {
    const [first, n] = inView(treeBox, treeEl, rows.length, treePool, treeRow);
    const filtering = query || failedOnly;
    for (let k = 0; k < treePool.length; k++) {
      const r = treePool[k];
      if (k >= n) { r.style.display = "none"; continue; }
      const row = first + k, p = rows[row];
      r.style.display = "";
      r.style.top = treeBox.rowTop(row) + "px";
      r.dataset.p = p;
      r.className = "trow" + (p === selProc ? " sel" : "") + (filtering && !procHits[p] ? " dim" : "");
      r.style.paddingLeft = 4 + Math.min(depth[p], 24) * 12 + "px";
      const [tog, pid, name, , b1, b2] = r.children;
      tog.textContent = nChildren[p] ? (collapsed[p] ? "\u25b8" : "\u25be") : "";
      pid.textContent = PR.pid[p];
      name.textContent = procLabel[p];
      r.title = procChain[p] || "[" + S[PR.comm[p]] + "]";
      const ex = PR.exit[p];
      b1.textContent = ex === null ? (PR.end[p] < 0 ? "running" : "") : ex ? S[PR.exit_short[p]] : "";
      b1.className = ex ? "badge bad" : "badge";
      b1.style.display = b1.textContent ? "" : "none";
      if (PR.orphaned[p]) { b2.textContent = "orphan"; b2.className = "badge orphan"; b2.style.display = ""; }
      else if (filtering) { b2.textContent = procHits[p]; b2.className = "badge"; b2.style.display = procHits[p] ? "" : "none"; }
      else { b2.textContent = PR.events[p]; b2.className = "badge"; b2.style.display = ""; }
    }
  }

  // --- timeline -----------------------------------------------------------------------------------
  const lanesCv = $("lanes"), axisCv = $("axis");
  const lctx = lanesCv.getContext("2d"), actx = axisCv.getContext("2d");
  let W = 1, H = 1, dpr = 1;
  let v0 = 0, v1 = 1;
  let bits = new Uint8Array(1), fails = new Uint8Array(1);
  let markersDrawn = 0;
  function fit() {
    const span = Math.max(tsMax - tsMin, 1000);
    v0 = tsMin - span * 0.01; v1 = tsMax + span * 0.01;
  }
  function resize() {
    dpr = window.devicePixelRatio || 1;
    const box = lanesBox.box;
    W = Math.max(1, box.clientWidth); H = Math.max(1, box.clientHeight);
    for (const [cv, w, h] of [[lanesCv, W, H], [axisCv, W, 26]]) {
      cv.width = Math.round(w * dpr); cv.height = Math.round(h * dpr);
      cv.style.width = w + "px"; cv.style.height = h + "px";
    }
    bits = new Uint8Array(W + 2); fails = new Uint8Array(W + 2);
    treeBox.setCount(rows.length); lanesBox.setCount(rows.length); listBox.setCount(listIdx.length);
    schedule(); scheduleList();
  }
  const NICE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5,
    1e6, 2e6, 5e6, 1e7, 2e7, 3e7, 6e7, 1.2e8, 3e8, 6e8, 1.2e9, 1.8e9, 3.6e9, 7.2e9, 1.44e10, 2.88e10, 8.64e10];
  function tickLabel(us, step) {
    if (step >= 6e7) {
      const s = Math.round(us / 1e6), sign = s < 0 ? "-" : "+", a = Math.abs(s);
      const h = Math.floor(a / 3600), m = Math.floor((a % 3600) / 60);
      return sign + (h ? h + "h" + pad(m, 2) + "m" : m + "m" + pad(a % 60, 2) + "s");
    }
    const dec = Math.max(0, Math.min(6, Math.ceil(-Math.log10(step / 1e6) - 1e-9)));
    return (us >= 0 ? "+" : "") + (us / 1e6).toFixed(dec) + "s";
  }
  function drawAxis() {
    actx.setTransform(dpr, 0, 0, dpr, 0, 0);
    actx.clearRect(0, 0, W, 26);
    actx.fillStyle = "#fafbfc"; actx.fillRect(0, 0, W, 26);
    const per = (v1 - v0) / W;
    let step = NICE[NICE.length - 1];
    for (const s of NICE) if (s / per >= 90) { step = s; break; }
    while (step / per < 90) step *= 10; // spans beyond a day
    actx.font = "11px " + css.getPropertyValue("--mono");
    actx.textBaseline = "middle";
    for (let t = Math.ceil(v0 / step) * step; t <= v1; t += step) {
      const x = Math.round((t - v0) / per) + 0.5;
      actx.fillStyle = "#c5cad3"; actx.fillRect(x, 16, 1, 10);
      actx.fillStyle = "#5b6470"; actx.fillText(tickLabel(t, step), x + 4, 12);
    }
  }
  // Marker shapes: [type, y offset, height], drawn in this order.
  const SHAPES = [[TYPE.open, 6, 10], [TYPE.chdir, 7, 8], [TYPE.fork, 8, 6],
    [TYPE.connect, 4, 14], [TYPE.exec, 2, 18], [TYPE.exit, 3, 16]];
  function lowerBound(a, b, ts) {
    while (a < b) { const m = (a + b) >> 1; if (evTs[laneEv[m]] < ts) a = m + 1; else b = m; }
    return a;
  }
  function drawLanes() {
    const ctx = lctx;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    const per = (v1 - v0) / W;
    const top = lanesBox.top();
    const first = Math.max(0, Math.floor(top / ROW));
    const last = Math.min(rows.length - 1, Math.floor((top + H) / ROW));
    markersDrawn = 0;
    for (let r = first; r <= last; r++) {
      const p = rows[r];
      const y = r * ROW - top;
      if (p === selProc) { ctx.fillStyle = "#fff4c2"; ctx.fillRect(0, y, W, ROW); }
      else if (r & 1) { ctx.fillStyle = "#fafbfc"; ctx.fillRect(0, y, W, ROW); }
      const end = PR.end[p] >= 0 ? PR.end[p] : D.end_us;
      const x0 = Math.max(-1, (PR.start[p] - v0) / per), x1 = Math.min(W + 1, (end - v0) / per);
      if (x1 >= 0 && x0 <= W) {
        ctx.fillStyle = PR.end[p] >= 0 ? "#dfe4ec" : "#e9edf3";
        ctx.fillRect(x0, y + 8, Math.max(1, x1 - x0), 6);
        if (PR.end[p] < 0 && x1 < W) { ctx.fillStyle = "#c3cad5"; ctx.fillRect(x1 - 1, y + 6, 1, 10); }
      }
      // Aggregate the lane's events in view into one bit mask per pixel.
      const a = lowerBound(laneOff[p], laneOff[p + 1], v0 - per);
      const b = laneOff[p + 1];
      let lo = W, hi = -1;
      for (let k = a; k < b; k++) {
        const i = laneEv[k];
        const ts = evTs[i];
        if (ts > v1 + per) break;
        if (!mask[i]) continue;
        const px = Math.floor((ts - v0) / per);
        if (px < 0 || px >= W) continue;
        bits[px] |= 1 << evT[i];
        if (evFail[i]) fails[px] = 1;
        if (px < lo) lo = px;
        if (px > hi) hi = px;
      }
      for (const [t, dy, h] of SHAPES) {
        const bit = 1 << t;
        ctx.fillStyle = COLOR[TYPE_NAME[t]];
        for (let px = lo; px <= hi; px++) {
          if (!(bits[px] & bit)) continue;
          let e = px;
          while (e + 1 <= hi && bits[e + 1] & bit) e++;
          ctx.fillRect(px, y + dy, e - px + 2, h);
          markersDrawn++;
          px = e;
        }
      }
      ctx.fillStyle = FAIL;
      for (let px = lo; px <= hi; px++) {
        if (!fails[px]) continue;
        ctx.fillRect(px - 1, y + 1, 4, 3);
        ctx.fillRect(px - 1, y + ROW - 4, 4, 3);
      }
      if (hi >= lo) { bits.fill(0, lo, hi + 1); fails.fill(0, lo, hi + 1); }
    }
    if (selEv >= 0) {
      const x = (evTs[selEv] - v0) / per;
      ctx.fillStyle = "rgba(47, 95, 208, .45)";
      ctx.fillRect(Math.round(x), 0, 1, H);
      const r = rows.indexOf(evP[selEv]);
      if (r >= 0) {
        ctx.strokeStyle = "#1d2433"; ctx.lineWidth = 2;
        ctx.strokeRect(Math.round(x) - 4, r * ROW - top + 1, 9, ROW - 2);
      }
    }
  }

  // --- the event list -------------------------------------------------------------------------------
  const listEl = $("events");
  const listPool = [];
  function listRow() {
    const r = el("div", "row");
    r.append(el("span", "c-time"), el("span", "c-pid"), el("span", "c-comm"), el("span", "c-type"),
      el("span", "c-detail"));
    r.children[3].append(el("span", "tag"));
    r.addEventListener("click", () => selectEvent(Number(r.dataset.i), true));
    listEl.append(r);
    return r;
  }
  function drawList() {
    const [first, n] = inView(listBox, listEl, listIdx.length, listPool, listRow);
    for (let k = 0; k < listPool.length; k++) {
      const r = listPool[k];
      if (k >= n) { r.style.display = "none"; continue; }
      const row = first + k, i = listIdx[row];
      r.style.display = "";
      r.style.top = listBox.rowTop(row) + "px";
      r.dataset.i = i;
      r.className = "row" + (evFail[i] ? " fail" : "") + (i === selEv ? " sel" : "");
      const c = r.children;
      c[0].textContent = rel(evTs[i]);
      c[1].textContent = PR.pid[evP[i]];
      c[2].textContent = S[evC[i]];
      const tag = c[3].firstChild;
      tag.className = "tag t-" + TYPE_NAME[evT[i]];
      tag.textContent = TYPE_NAME[evT[i]];
      c[4].textContent = detailText(i);
    }
  }

  // --- scheduling ---------------------------------------------------------------------------------------
  let pending = false, pendingList = false;
  function frame() {
    if (pending) { pending = false; drawAxis(); drawLanes(); drawTree(); }
    if (pendingList) { pendingList = false; drawList(); }
  }
  function schedule() { if (!pending) { pending = true; requestAnimationFrame(frame); } }
  function scheduleList() { if (!pendingList) { pendingList = true; requestAnimationFrame(frame); } }

  // --- interaction ----------------------------------------------------------------------------------------
  function zoomAt(factor, x) {
    const per = (v1 - v0) / W;
    const t = v0 + x * per;
    const span = Math.min(Math.max((v1 - v0) * factor, 20), (tsMax - tsMin + 1) * 20 + 1e6);
    v0 = t - (x / W) * span; v1 = v0 + span;
    schedule();
  }
  function pan(dx) { const d = dx * (v1 - v0) / W; v0 += d; v1 += d; schedule(); }
  const lanesScroll = lanesBox.box;
  lanesScroll.addEventListener("wheel", (e) => {
    const x = e.clientX - lanesScroll.getBoundingClientRect().left;
    if (e.ctrlKey || e.metaKey) { e.preventDefault(); zoomAt(Math.exp(e.deltaY * 0.002), x); }
    else if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
      e.preventDefault(); pan(e.shiftKey ? e.deltaY : e.deltaX);
    }
  }, { passive: false });
  let drag = null;
  lanesScroll.addEventListener("mousedown", (e) => {
    if (e.button !== 0 || e.offsetX > lanesScroll.clientWidth) return;
    drag = { x: e.clientX, moved: false };
  });
  window.addEventListener("mousemove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x;
    if (!drag.moved && Math.abs(dx) < 4) return;
    drag.moved = true; lanesScroll.classList.add("dragging");
    pan(-dx); drag.x = e.clientX;
  });
  window.addEventListener("mouseup", (e) => {
    if (!drag) return;
    const moved = drag.moved;
    drag = null; lanesScroll.classList.remove("dragging");
    if (!moved) hit(e);
  });
  lanesScroll.addEventListener("dblclick", (e) => {
    zoomAt(0.5, e.clientX - lanesScroll.getBoundingClientRect().left);
  });
  function hit(e) {
    const rect = lanesScroll.getBoundingClientRect();
    const x = e.clientX - rect.left, y = e.clientY - rect.top;
    if (x < 0 || x > W || y < 0 || y > H) return;
    const r = Math.floor((y + lanesBox.top()) / ROW);
    if (r < 0 || r >= rows.length) return;
    const p = rows[r];
    const per = (v1 - v0) / W;
    const t = v0 + x * per;
    let best = -1, bestD = 6 * per;
    for (let k = lowerBound(laneOff[p], laneOff[p + 1], t - bestD); k < laneOff[p + 1]; k++) {
      const i = laneEv[k];
      const d = Math.abs(evTs[i] - t);
      if (evTs[i] > t + 6 * per) break;
      if (mask[i] && d <= bestD) { best = i; bestD = d; }
    }
    if (best >= 0) selectEvent(best, false); else selectProc(p, false);
  }
  $("zoomIn").addEventListener("click", () => zoomAt(0.5, W / 2));
  $("zoomOut").addEventListener("click", () => zoomAt(2, W / 2));
  $("zoomFit").addEventListener("click", () => { fit(); schedule(); });

  const typesEl = $("types");
  for (const name of TYPE_ORDER) {
    const b = el("button", "chip");
    b.type = "button";
    b.dataset.type = name;
    b.setAttribute("aria-pressed", "true");
    const sw = el("span", "sw"); sw.style.background = COLOR[name];
    b.append(sw, el("span", null, name), el("span", "n", typeCount[TYPE[name]].toLocaleString("en-US")));
    b.addEventListener("click", () => {
      const t = TYPE[name];
      typeOn[t] ^= 1;
      b.setAttribute("aria-pressed", typeOn[t] ? "true" : "false");
      applyFilter();
    });
    typesEl.append(b);
  }
  $("failedOnly").addEventListener("change", (e) => { failedOnly = e.target.checked; applyFilter(); });
  let searchTimer = 0;
  const search = $("search");
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { query = search.value.trim().toLowerCase(); applyFilter(); }, 120);
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "/" && document.activeElement !== search) { e.preventDefault(); search.focus(); }
    else if (e.key === "Escape" && search.value) {
      clearTimeout(searchTimer); search.value = ""; query = ""; applyFilter();
    }
  });
  new ResizeObserver(() => resize()).observe($("lanesWrap"));
  window.addEventListener("resize", resize);

  // --- start ------------------------------------------------------------------------------------------------
  fit();
  applyFilter();
  resize();
  frame();
  window.__sessrec = {
    ready_ms: performance.now(),
    events: N,
    processes: P,
    // Where event i's marker is drawn, in client coordinates (for tests).
    point: (i) => {
      const r = rows.indexOf(evP[i]);
      const rect = lanesBox.box.getBoundingClientRect();
      return r < 0 ? null : [rect.left + (evTs[i] - v0) / ((v1 - v0) / W) + 0.5,
        rect.top + r * ROW - lanesBox.top() + ROW / 2];
    },
    state: () => ({
      rows: rows.length, listed: listIdx.length, markers: markersDrawn,
      view: [v0, v1], selected_process: selProc, selected_event: selEv,
    }),
  };
  document.documentElement.dataset.ready = "1";
})();
