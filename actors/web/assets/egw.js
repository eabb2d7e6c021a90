// egw's local page: fills the server-rendered sections from the REST API and the live feed.
// No framework, no build step, nothing from outside the gateway. Data goes into the DOM as
// text only (never innerHTML), so a device name or an error message cannot inject markup.
"use strict";
(function () {
  const PAGE = document.body.dataset.page;
  const $ = (sel) => document.querySelector(sel);
  let signedIn = false;

  // ------------------------------------------------------------------ helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }
  function cookie(name) {
    const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
    return found ? decodeURIComponent(found.slice(name.length + 1)) : null;
  }
  // Every call goes to the same REST endpoints the OpenAPI document describes. The session
  // cookie travels by itself; a write carries the CSRF value from the egw_csrf cookie.
  async function api(method, path, body, extraHeaders) {
    const headers = Object.assign({ Accept: "application/json" }, extraHeaders || {});
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && cookie("egw_csrf")) headers["X-CSRF-Token"] = cookie("egw_csrf");
    let response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
    } catch (err) {
      return { status: 0, ok: false, data: { error: "network", message: "the gateway did not answer (" + err.message + ")" } };
    }
    let data = null;
    try { data = await response.json(); } catch (err) { data = null; }
    return { status: response.status, ok: response.ok, data };
  }
  function problem(res) {
    const d = res.data || {};
    if (res.status === 401) return "sign in first: " + (d.message || "this needs the API token");
    return (d.field ? d.field + ": " : "") + (d.message || "failed with HTTP " + res.status);
  }
  function say(node, text, kind) {
    if (!node) return;
    node.textContent = text;
    node.className = "result " + (kind || "");
  }
  function watts(w) {
    if (w === null || w === undefined || Number.isNaN(w)) return "–";
    return Math.abs(w) >= 1000 ? (w / 1000).toFixed(2) + " kW" : Math.round(w) + " W";
  }
  function energy(wh) {
    if (wh === null || wh === undefined) return "–";
    return Math.abs(wh) >= 1000 ? (wh / 1000).toFixed(2) + " kWh" : Math.round(wh) + " Wh";
  }
  function age(iso) {
    if (!iso) return "never";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    return s < 90 ? Math.round(s) + " s ago" : s < 5400 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago";
  }
  function duration(iso) {
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return (h ? h + " h " : "") + (h || m ? m + " min " : "") + (s % 60) + " s";
  }
  function when(iso) { return iso ? new Date(iso).toLocaleString() : "–"; }
  // Replace a section's content only when it changed, so a button is not swapped away under the user's finger.
  function fill(node, ...children) {
    if (!node) return;
    const next = children.flat(Infinity).filter((c) => c !== null && c !== undefined);
    const html = next.map((c) => (c instanceof Node ? (c.outerHTML !== undefined ? c.outerHTML : c.textContent) : String(c))).join("");
    if (node.dataset.rendered === html) return;
    node.dataset.rendered = html;
    node.replaceChildren(...next);
  }
  function every(ms, fn) { fn(); return setInterval(fn, ms); }

  // ------------------------------------------------------------ sign-in, health
  function showSignedIn() {
    $("#signin-form").hidden = signedIn;
    $("#signed-in").hidden = !signedIn;
    document.body.classList.toggle("signed-in", signedIn);
  }
  async function checkSession() {
    signedIn = cookie("egw_csrf") !== null && (await api("GET", "/api/session")).ok;
    showSignedIn();
  }
  $("#signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = $("#signin-token").value.trim();
    const res = await api("POST", "/api/session", undefined, { Authorization: "Bearer " + token });
    $("#signin-token").value = "";
    if (!res.ok) { say($("#signin-result"), res.status === 401 ? "not this gateway's token (see `egw token`)" : problem(res), "error"); return; }
    say($("#signin-result"), "", "");
    location.reload();
  });
  $("#signout").addEventListener("click", async () => {
    await api("DELETE", "/api/session");
    location.reload();
  });
  async function health() {
    const res = await api("GET", "/api/health");
    const node = $("#health");
    if (!res.ok || !res.data) { node.textContent = "health: unknown (" + problem(res) + ")"; node.className = "health degraded"; return; }
    const reasons = (res.data.reasons || []).map((r) => (typeof r === "string" ? r : r.reason || r.message || JSON.stringify(r)));
    node.textContent = res.data.status === "ok" ? "health: ok" : "health: " + res.data.status + " — " + reasons.join("; ");
    node.className = "health " + (res.data.status === "ok" ? "ok" : "degraded");
  }

  // ------------------------------------------------------------------ live feed
  // One websocket carries every topic (SSE is one topic per stream, and a browser opens at
  // most six HTTP/1.1 connections to a host). It opens with the session cookie; without a
  // sign-in the page polls the REST endpoints instead.
  const live = { socket: null, topics: new Set(), handlers: [], open: false };
  function liveSubscribe(topic) {
    if (live.topics.has(topic)) return;
    live.topics.add(topic);
    if (live.open) live.socket.send(JSON.stringify({ op: "subscribe", topic }));
  }
  // A session's topic is dropped once it is no longer running: a subscriber may hold only 32 topics.
  function liveRetainSessions(chargers, sessions) {
    // a page left open for days sees hundreds of sessions: keep the topics and figures of running ones only
    const running = new Set();
    for (const c of chargers) for (const conn of c.connectors || []) if (conn.transaction_id) running.add("transaction/" + conn.transaction_id);
    for (const topic of [...live.topics]) {
      if (!topic.startsWith("transaction/") || running.has(topic)) continue;
      live.topics.delete(topic);
      if (live.open) live.socket.send(JSON.stringify({ op: "unsubscribe", topic }));
    }
    for (const id of Object.keys(sessions)) if (!running.has("transaction/" + id)) delete sessions[id];
  }
  function liveStart(onEvent) {
    if (!signedIn || !("WebSocket" in window)) { $("#live-state").textContent = "updates every 2 s · sign in for the live feed"; return false; }
    live.handlers.push(onEvent);
    const connect = () => {
      const socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/api/live");
      live.socket = socket;
      socket.onopen = () => {
        live.open = true;
        $("#live-state").textContent = "live";
        for (const topic of live.topics) socket.send(JSON.stringify({ op: "subscribe", topic }));
      };
      socket.onmessage = (msg) => {
        let m;
        try { m = JSON.parse(msg.data); } catch (err) { return; }
        if (m.type === "event") for (const h of live.handlers) h(m);
      };
      socket.onclose = () => {
        live.open = false;
        $("#live-state").textContent = "live feed reconnecting…";
        setTimeout(connect, 2000);
      };
    };
    connect();
    return true;
  }

  // ------------------------------------------------------------------ overview
  function pvPower(d) {
    const v = d.values || {};
    return typeof v.pv_power_w === "number" ? v.pv_power_w : typeof v.ac_power_w === "number" ? v.ac_power_w : null;
  }
  async function overview() {
    const state = { devices: {}, pv: [], grid: null, chargers: [], sessions: {} };
    const render = () => {
      const devices = Object.values(state.devices);
      const pvs = state.pv.map((id) => state.devices[id]).filter(Boolean).map(pvPower).filter((w) => w !== null);
      const pv = pvs.length ? pvs.reduce((a, b) => a + b, 0) : null;
      const gridDevice = state.grid ? state.devices[state.grid] : null;
      const grid = gridDevice && typeof (gridDevice.values || {}).meter_power_w === "number" ? gridDevice.values.meter_power_w : null;
      let charging = 0;
      const tiles = [];
      for (const c of state.chargers) {
        for (const conn of c.connectors || []) {
          if (!conn.id) continue;
          const s = conn.transaction_id ? state.sessions[conn.transaction_id] : null;
          const power = s && typeof s.power_w === "number" && conn.status === "Charging" ? s.power_w : conn.status === "Charging" ? null : 0;
          if (typeof power === "number") charging += power;
          tiles.push(el("div", { class: "tile", "data-charger": c.id + "/" + conn.id },
            el("h3", {}, c.id + (c.connectors.length > 2 ? " #" + conn.id : "")),
            el("p", { class: "big" }, power === null ? (signedIn ? "…" : "charging") : watts(power)),
            el("p", { class: "sub state-" + conn.status }, conn.status + (s && typeof s.soc_percent === "number" ? " · car " + Math.round(s.soc_percent) + " %" : "")
              + (conn.status === "Charging" && !signedIn ? " · sign in for power" : ""))));
        }
      }
      $("#flow-pv").textContent = watts(pv);
      $("#flow-pv-sub").textContent = state.pv.length ? state.pv.join(", ") : "no inverter";
      $("#flow-grid").textContent = grid === null ? "–" : watts(Math.abs(grid));
      $("#flow-grid-sub").textContent = grid === null ? "no meter" : (grid >= 0 ? "import" : "export") + " · " + state.grid;
      const house = pv !== null || grid !== null ? (pv || 0) + (grid || 0) - charging : null;
      $("#flow-house").textContent = watts(house);
      $("#flow-house-sub").textContent = house !== null && house < 0 ? "the readings do not add up" : "PV + grid − chargers";
      const battery = devices.map((d) => (d.values || {}).battery_soc_pct).find((v) => typeof v === "number");
      $("#flow-battery").textContent = typeof battery === "number" ? Math.round(battery) + " %" : "–";
      $("#flow-battery-sub").textContent = typeof battery === "number" ? "state of charge" : "no battery";
      fill($("#flow-chargers"), tiles.length ? tiles : [el("p", { class: "muted" }, "no chargers")]);
      const latest = devices.map((d) => d.last_poll || "").sort().pop();
      if (latest) $("#flow-updated").textContent = "latest reading " + new Date(latest).toLocaleTimeString() + (live.open ? " · live" : "");
    };
    const refresh = async () => {
      const [devices, today, chargers] = await Promise.all([api("GET", "/api/devices"), api("GET", "/api/energy/today"), api("GET", "/api/chargers")]);
      if (devices.ok) for (const d of devices.data.devices) {
        const known = state.devices[d.id];
        if (!known || !live.open || (d.last_poll || "") > (known.last_poll || "")) state.devices[d.id] = d;
        liveSubscribe("device/" + d.id);
      }
      if (today.ok) {
        const t = today.data;
        state.pv = t.pv_devices; state.grid = t.grid_device;
        $("#today-pv").textContent = energy(t.pv_wh);
        $("#today-import").textContent = energy(t.grid_import_wh);
        $("#today-export").textContent = energy(t.grid_export_wh);
        $("#today-since").textContent = t.since ? "since " + new Date(t.since).toLocaleTimeString() + " (" + t.date + ")" : "";
      }
      if (chargers.ok) {
        state.chargers = chargers.data.chargers;
        liveRetainSessions(state.chargers, state.sessions);
        for (const c of state.chargers) {
          liveSubscribe("charger/" + c.id);
          for (const conn of c.connectors || []) {
            if (!conn.transaction_id || !signedIn) continue;
            liveSubscribe("transaction/" + conn.transaction_id);
            if (!state.sessions[conn.transaction_id]) {
              const t = await api("GET", "/api/transactions/" + conn.transaction_id);
              if (t.ok) state.sessions[conn.transaction_id] = { power_w: t.data.power_w, soc_percent: null };
            }
          }
        }
      }
      render();
    };
    const isLive = liveStart((m) => {
      if (m.kind === "reading" && m.topic.startsWith("device/")) {
        const id = m.topic.slice(7);
        const d = state.devices[id] || { id, values: {} };
        d.values = Object.assign({}, d.values, m.data.values);
        d.last_poll = new Date(m.time * 1000).toISOString();
        state.devices[id] = d;
        render();
      } else if (m.kind === "meter_values") {
        state.sessions[m.data.transaction_id] = m.data;
        render();
      } else if (m.topic.startsWith("charger/")) {
        refresh();
      }
    });
    every(isLive ? 10000 : 2000, refresh);
  }

  // ------------------------------------------------------------------ devices
  function keyValues(v) {
    const parts = [];
    if (typeof v.pv_power_w === "number") parts.push("PV " + watts(v.pv_power_w));
    if (typeof v.ac_power_w === "number") parts.push("AC " + watts(v.ac_power_w));
    if (typeof v.meter_power_w === "number") parts.push("meter " + watts(v.meter_power_w));
    if (typeof v.energy_total_wh === "number") parts.push("total " + energy(v.energy_total_wh));
    if (typeof v.meter_import_wh === "number") parts.push("import " + energy(v.meter_import_wh));
    if (typeof v.meter_export_wh === "number") parts.push("export " + energy(v.meter_export_wh));
    if (typeof v.battery_soc_pct === "number") parts.push("battery " + Math.round(v.battery_soc_pct) + " %");
    return parts.join(" · ") || "–";
  }
  async function devices() {
    const result = $("#add-device-result");
    const removing = new Set();
    const refresh = async () => {
      const res = await api("GET", "/api/devices");
      if (!res.ok) { fill($("#devices tbody"), el("tr", {}, el("td", { colspan: 7, class: "bad" }, problem(res)))); return; }
      const rows = res.data.devices.map((d) => el("tr", { "data-device": d.id },
        el("td", {}, el("strong", {}, d.id), el("br"), el("span", { class: "sub" }, (d.profile || "") + (d.model ? " · " + d.model : ""))),
        el("td", { class: "state-" + d.state }, d.state),
        el("td", {}, age(d.last_poll)),
        el("td", {}, keyValues(d.values || {})),
        el("td", { class: d.errors ? "bad" : "" }, (d.errors || 0) + " errors", d.last_error ? el("br") : null, d.last_error ? el("span", { class: "sub" }, d.last_error) : null),
        el("td", { class: d.gaps ? "warn" : "" }, (d.gaps || 0) + " gaps"),
        el("td", {}, el("button", { type: "button", class: "secondary", "data-remove": d.id, onclick: (e) => remove(d.id, e.target) },
          removing.has(d.id) ? "Confirm remove" : "Remove"))));
      fill($("#devices tbody"), rows.length ? rows : [el("tr", {}, el("td", { colspan: 7, class: "muted" }, "no devices"))]);
    };
    const remove = async (id, button) => {
      if (!removing.has(id)) { removing.add(id); button.textContent = "Confirm remove"; return; }
      removing.delete(id);
      const res = await api("DELETE", "/api/devices/" + encodeURIComponent(id));
      say(result, res.ok ? "removed " + id : problem(res), res.ok ? "done" : "error");
      refresh();
    };
    $("#add-device").addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = {};
      for (const [name, value] of new FormData(event.target).entries()) {
        const text = String(value).trim();
        if (!text) continue;
        body[name] = ["port", "unit_id", "poll_interval"].includes(name) && /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text;
      }
      say(result, "adding…", "");
      const res = await api("POST", "/api/devices", body);
      if (res.ok) { say(result, "added " + body.id, "done"); event.target.reset(); } else say(result, problem(res), "error");
      refresh();
    });
    every(3000, refresh);
  }

  // ------------------------------------------------------------------ chargers and loadpoints
  const MODES = ["off", "now", "minpv", "pv"];
  // The energy manager's decision (GET /api/loadpoints: LoadpointDecision) in one line.
  function decisionText(lp) {
    const d = lp.decision;
    if (d === undefined || d === null) return lp.state === "running" ? "no decision yet" : "energy manager " + (lp.state || "not running");
    const parts = [d.reason || ""];
    if (typeof d.limit_a === "number") parts.push(d.enabled === false || d.limit_a === 0 ? "paused" : "limit " + d.limit_a + " A × " + (d.phases || "?") + " phases");
    if (typeof d.surplus_w === "number") parts.push("surplus " + watts(d.surplus_w));
    if (lp.accepted === false) parts.push("the charger has not accepted the limit");
    return parts.filter(Boolean).join(" · ");
  }
  async function chargers() {
    const sessions = {};
    const refresh = async () => {
      const res = await api("GET", "/api/chargers");
      if (!res.ok) { fill($("#chargers"), el("p", { class: "bad" }, problem(res))); return; }
      liveRetainSessions(res.data.chargers, sessions);
      const cards = [];
      for (const c of res.data.chargers) {
        const rows = [];
        for (const conn of c.connectors || []) {
          let session = "–";
          if (conn.transaction_id) {
            if (signedIn) {
              liveSubscribe("transaction/" + conn.transaction_id);
              if (!sessions[conn.transaction_id]) {
                const t = await api("GET", "/api/transactions/" + conn.transaction_id);
                if (t.ok) sessions[conn.transaction_id] = { start: t.data.start, session_energy_wh: t.data.energy_wh, power_w: t.data.power_w, soc_percent: null };
              }
              const s = sessions[conn.transaction_id];
              session = s ? [energy(s.session_energy_wh), watts(s.power_w), typeof s.soc_percent === "number" ? "car " + Math.round(s.soc_percent) + " %" : "SoC not reported",
                s.start ? duration(s.start) : ""].join(" · ") : "session " + conn.transaction_id;
            } else session = "session " + conn.transaction_id + " (sign in for details)";
          }
          rows.push(el("tr", {}, el("td", {}, String(conn.id)), el("td", { class: "state-" + conn.status }, conn.status + (conn.override ? " (override)" : "")),
            el("td", {}, conn.error_code && conn.error_code !== "NoError" ? conn.error_code : ""), el("td", { "data-session": conn.transaction_id || "" }, session)));
        }
        cards.push(el("div", { class: "card", "data-charger": c.id },
          el("strong", {}, c.id), " ", el("span", { class: "sub" }, [c.vendor, c.model].filter(Boolean).join(" ") + " · " + (c.connected ? "connected" : "offline") + " · " + (c.registration || "")),
          el("div", { class: "scroll" }, el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Connector"), el("th", {}, "Status"), el("th", {}, "Error"), el("th", {}, "Session"))), el("tbody", {}, rows)))));
        liveSubscribe("charger/" + c.id);
      }
      fill($("#chargers"), cards.length ? cards : [el("p", { class: "muted" }, "no chargers")]);
      if (!signedIn) fill($("#sessions"), el("p", { class: "muted" }, "sign in to see sessions: they carry drivers' idTags"));
      else {
        const t = await api("GET", "/api/transactions?limit=10");
        if (!t.ok) fill($("#sessions"), el("p", { class: "bad" }, problem(t)));
        else fill($("#sessions"), t.data.transactions.length ? el("div", { class: "scroll" }, el("table", {}, el("thead", {}, el("tr", {}, ["Session", "Charger", "idTag", "Start", "Stop", "Energy", "State"].map((h) => el("th", {}, h)))),
          el("tbody", {}, t.data.transactions.map((x) => el("tr", {}, el("td", {}, String(x.id)), el("td", {}, x.charger + " #" + x.connector), el("td", {}, x.id_tag || ""),
            el("td", {}, when(x.start)), el("td", {}, when(x.stop)), el("td", {}, energy(x.energy_wh)), el("td", {}, x.state || "")))))) : el("p", { class: "muted" }, "no sessions yet"));
      }
    };
    const loadpoints = async () => {
      const res = await api("GET", "/api/loadpoints");
      const list = res.ok && res.data ? (Array.isArray(res.data) ? res.data : res.data.loadpoints || []) : [];
      if (!list.length) { fill($("#loadpoints"), el("p", { class: "muted", id: "no-loadpoints" }, res.ok || res.status === 404 ? "no loadpoints" : problem(res))); return; }
      fill($("#loadpoints"), list.map((lp) => el("div", { class: "card", "data-loadpoint": lp.id },
        el("strong", {}, lp.name || lp.id), " ", el("span", { class: "sub" }, lp.charger ? "charger " + lp.charger + (lp.connector ? " #" + lp.connector : "") : ""),
        el("div", { class: "modes", role: "group", "aria-label": "mode" }, MODES.map((m) => el("button", { type: "button", "data-mode": m, "aria-pressed": String(lp.mode === m),
          onclick: async () => {
            const r = await api("PUT", "/api/loadpoints/" + encodeURIComponent(lp.id) + "/mode", { mode: m });
            say($("#loadpoint-result"), r.ok ? (lp.name || lp.id) + ": mode " + m : problem(r), r.ok ? "done" : "error");
            loadpoints();
          } }, m))),
        el("p", { class: "sub", "data-decision": "" }, "controller: " + decisionText(lp)))));
    };
    liveStart((m) => {
      if (m.kind === "meter_values") {
        sessions[m.data.transaction_id] = Object.assign(sessions[m.data.transaction_id] || {}, m.data);
        refresh();
      } else if (m.topic.startsWith("charger/")) refresh();
    });
    every(5000, refresh);
    every(3000, loadpoints);
  }

  // ------------------------------------------------------------------ uploads
  async function uploads() {
    const refresh = async () => {
      const [outbox, dead] = await Promise.all([api("GET", "/api/outbox"), api("GET", "/api/outbox/dead-letters")]);
      if (!outbox.ok) { fill($("#outbox"), el("dt", { class: "bad" }, problem(outbox))); return; }
      const o = outbox.data;
      const facts = [["Backlog", o.pending_items + " items · " + energyBytes(o.bytes)], ["Oldest unsent", o.oldest_pending ? when(o.oldest_pending) + " (" + age(o.oldest_pending) + ")" : "nothing waiting"],
        ["Uploaded", o.acknowledged_items + " items acknowledged"], ["Gaps", String(o.gaps)], ["Budget", Math.round((o.budget_used || 0) * 100) + " % of " + energyBytes(o.budget_bytes)],
        ["Dead letters", o.dead_letters === undefined || o.dead_letters === null ? "–" : String(o.dead_letters)]];
      if (o.disk_full) facts.push(["Disk", "full: readings are being dropped"]);
      fill($("#outbox"), facts.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
      fill($("#transports tbody"), (o.transports || []).map((t) => el("tr", { "data-transport": t.name }, el("td", {}, el("strong", {}, t.name), el("br"), el("span", { class: "sub" }, t.url || "")),
        el("td", { class: "state-" + t.state }, t.state + (t.backoff_s ? " · retry in " + Math.round(t.backoff_s) + " s" : "")), el("td", {}, t.last_success ? when(t.last_success) + " (" + age(t.last_success) + ")" : "never"),
        el("td", {}, (t.pending === undefined || t.pending === null ? "?" : t.pending) + " pending"), el("td", { class: "bad" }, t.last_error || ""))));
      const letters = dead.ok ? dead.data.dead_letters : [];
      if (!letters.length) { fill($("#dead-letters"), el("p", { class: "muted" }, dead.ok ? "none: every batch was accepted" : problem(dead))); return; }
      const byTransport = [...new Set(letters.map((d) => d.transport))];
      fill($("#dead-letters"), el("div", { class: "scroll" }, el("table", {}, el("thead", {}, el("tr", {}, ["Id", "Transport", "Parked", "Items", "Reason"].map((h) => el("th", {}, h)))),
        el("tbody", {}, letters.map((d) => el("tr", { "data-dead-letter": d.id }, el("td", {}, String(d.id)), el("td", {}, d.transport), el("td", {}, when(d.parked_at)),
          el("td", {}, String(d.items)), el("td", {}, (d.error || (d.http_status ? "HTTP " + d.http_status : "")) + (d.queued_to_resend ? " · queued to send again" : ""))))))),
        byTransport.map((name) => el("button", { type: "button", "data-resend": name, onclick: async () => {
          const r = await api("POST", "/api/transports/" + encodeURIComponent(name) + "/dead-letters/resend", {});
          say($("#resend-result"), r.ok ? name + ": " + r.data.queued + " queued again" : problem(r), r.ok ? "done" : "error");
          refresh();
        } }, "Re-send " + name)));
    };
    every(5000, refresh);
  }
  function energyBytes(n) { return n >= 1048576 ? (n / 1048576).toFixed(1) + " MiB" : n >= 1024 ? (n / 1024).toFixed(1) + " KiB" : (n || 0) + " B"; }

  // ------------------------------------------------------------------ system
  async function system() {
    const branch = (records) => el("ul", { class: "tree" }, records.map((r) => el("li", { "data-actor": r.path },
      el("strong", {}, r.name), " ", el("span", { class: "state-" + r.state }, r.state), " · ", r.kind, r.pid ? " · pid " + r.pid : "",
      " · restarts " + (r.restarts || 0), r.last_error ? el("div", { class: "sub bad" }, "last error: " + r.last_error) : null,
      r.children && r.children.length ? branch(r.children) : null)));
    const refresh = async () => {
      const [tree, warnings] = await Promise.all([api("GET", "/api/actors"), api("GET", "/api/warnings?limit=50")]);
      fill($("#tree"), tree.ok ? branch(tree.data.actors) : el("p", { class: "bad" }, problem(tree)));
      if (!warnings.ok) { fill($("#warnings"), el("p", { class: "bad" }, problem(warnings))); return; }
      const list = warnings.data.warnings;
      fill($("#warnings"), list.length ? el("ul", {}, list.map((w) => el("li", { class: w.kind === "error" ? "bad" : "warn", "data-warning": w.kind },
        (w.time ? new Date(w.time).toLocaleString() + " · " : "") + w.message)))
        : el("p", { class: "muted" }, "none since " + new Date(warnings.data.since).toLocaleString()));
    };
    liveSubscribe("gateway");
    liveStart((m) => { if (m.topic === "gateway") refresh(); });  // signed in: at once; else within 5 s
    every(5000, refresh);
  }

  // ------------------------------------------------------------------ start
  (async () => {
    await checkSession();
    every(10000, health);
    ({ overview, devices, chargers, uploads, system })[PAGE]();
  })();
})();
