// AirClass status page: polls main's read-only JSON endpoints and redraws. Everything is
// inserted with textContent (room names come from LiveKit and are never HTML).
"use strict";
(function () {
  const POLL_MS = 2000;
  const ROOMS_EVERY = 3; // rooms every third poll (main: one ListRooms + LiveKit's room_node_map)
  let polls = 0;

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function hostPort(url) {
    try { return new URL(url).host; } catch (e) { return url; }
  }

  function age(ms) {
    return ms < 1000 ? "just now" : (ms / 1000).toFixed(1) + " s ago";
  }

  function bar(sysload, limit) {
    const wrap = el("span");
    const b = el("span", null, sysload >= limit ? "bar over" : "bar");
    const fill = el("i");
    const scale = Math.max(limit * 1.5, sysload, 0.01);
    fill.style.width = Math.min(100, (sysload / scale) * 100) + "%";
    const mark = el("b");
    mark.style.left = (limit / scale) * 100 + "%";
    b.append(fill, mark);
    wrap.append(b, el("span", sysload.toFixed(2) + " / " + limit.toFixed(2)));
    return wrap;
  }

  function verdict(st) {
    const problems = [];
    for (const n of st.nodes) {
      if (n.state === "suspect" || n.state === "dead") problems.push(n.name + " " + n.state);
      if ((n.state === "alive" || n.state === "suspect") && n.stats.livekit_health !== "healthy") {
        problems.push(n.name + " LiveKit " + n.stats.livekit_health);
      }
    }
    const v = document.getElementById("verdict");
    if (problems.length === 0) {
      v.className = "verdict healthy";
      v.textContent = "healthy: " + st.nodes_alive + " alive, " + st.rooms + " rooms, " +
        st.participants + " participants";
    } else {
      v.className = "verdict degraded";
      v.textContent = "degraded: " + problems.join("; ");
    }
  }

  function drawNodes(st) {
    const body = document.querySelector("#nodes tbody");
    const rows = st.nodes.map(function (n) {
      const tr = el("tr", null, n.state);
      tr.dataset.node = n.name;
      tr.dataset.state = n.state;
      tr.append(
        el("td", n.name),
        el("td", n.info.mode),
        (function () { const td = el("td"); td.append(el("span", n.state, "state " + n.state)); return td; })(),
        el("td", hostPort(n.info.api_url)),
        (function () { const td = el("td"); td.append(el("span", n.stats.livekit_health, "state " + n.stats.livekit_health)); return td; })(),
        (function () { const td = el("td"); td.append(bar(n.stats.sysload, st.sysload_limit)); return td; })(),
        el("td", n.stats.rooms, "num"),
        el("td", n.stats.participants, "num"),
        el("td", age(n.last_seen_ms), "num")
      );
      return tr;
    });
    body.replaceChildren.apply(body, rows);
  }

  function drawRooms(rooms) {
    const body = document.querySelector("#rooms tbody");
    const rows = rooms.map(function (r) {
      const tr = el("tr");
      tr.dataset.room = r.name;
      tr.append(el("td", r.name), el("td", r.node),
        el("td", r.num_participants === null ? "?" : r.num_participants, "num"));
      return tr;
    });
    body.replaceChildren.apply(body, rows);
    document.getElementById("no-rooms").hidden = rooms.length > 0;
  }

  function drawEvents(events) {
    const list = document.getElementById("events");
    const items = events.slice(-20).reverse().map(function (e) {
      const when = new Date(e.at_ms).toLocaleTimeString();
      return el("li", when + "  " + e.node + ": " + (e.from || "new") + " → " + e.to);
    });
    list.replaceChildren.apply(list, items);
  }

  async function getJson(path) {
    const r = await fetch(path, { cache: "no-store", headers: { accept: "application/json" } });
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return r.json();
  }

  async function poll() {
    try {
      const st = await getJson("/api/cluster/status");
      document.getElementById("cluster-id").textContent = st.cluster_id;
      document.getElementById("main-name").textContent = st.main_name;
      document.getElementById("limit").textContent = st.sysload_limit.toFixed(2);
      verdict(st);
      drawNodes(st);
      drawEvents(await getJson("/api/cluster/events"));
      if (polls % ROOMS_EVERY === 0) drawRooms(await getJson("/api/livekit/rooms"));
      polls += 1;
      const u = document.getElementById("updated");
      u.textContent = "updated " + new Date().toLocaleTimeString();
      document.body.dataset.updated = String(Date.now());
    } catch (e) {
      const v = document.getElementById("verdict");
      v.className = "verdict stale";
      v.textContent = "cannot reach main (" + e.message + "); showing the last answer";
    }
  }

  poll();
  setInterval(poll, POLL_MS);
})();
