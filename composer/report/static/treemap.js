/* image-composer report: a zoomable squarified treemap of the rootfs, drawn from compact JSON.
 *
 * Data (see composer/report/data.py treemap_data): sections, groups [[section, label]], dirs,
 * and a flat list e of (group, dir, name, bytes, mark) per non-directory entry. The tree is built
 * once; only the focused node and two levels below it are drawn, and boxes too small to see are
 * folded into one "more" box, so a 100k-entry image draws a few hundred boxes.
 * Written for this project (Apache-2.0); the layout is Bruls, Huizing and van Wijk's
 * squarified treemap (2000).
 */
(function () {
  "use strict";
  var MIN_AREA = 150, MAX_BOXES = 2500, HEADER = 17, PAD = 2;

  function human(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(n < 10 ? 2 : 1) : String(n)) + " " + units[i];
  }

  function Node(name, parent, section) {
    this.n = name; this.p = parent; this.sec = section;
    this.s = 0; this.c = 0; this.x = 0; this.k = null; this.sorted = null;
  }
  Node.prototype.child = function (name) {
    if (this.k === null) this.k = new Map();
    var c = this.k.get(name);
    if (!c) { c = new Node(name, this, this.sec); this.k.set(name, c); }
    return c;
  };
  Node.prototype.kids = function () {
    if (this.sorted === null) {
      this.sorted = this.k ? Array.from(this.k.values()) : [];
      this.sorted.sort(function (a, b) { return b.s - a.s || (a.n < b.n ? -1 : 1); });
    }
    return this.sorted;
  };
  Node.prototype.path = function () {
    var parts = [], n = this;
    while (n.p) { parts.unshift(n.n); n = n.p; }
    return parts;
  };

  /* only: keep just the entries a diff marked (added, changed), each at least one byte big */
  function build(data, only) {
    var root = new Node("rootfs", null, -1), secs = [], grps = [], chains = new Map();
    data.sections.forEach(function (name, i) {
      var n = root.child(name); n.sec = i; n.fixed = true; secs.push(n);
    });
    data.groups.forEach(function (g) {
      var n = secs[g[0]].child(g[1]); n.fixed = true; grps.push(n);
    });
    var e = data.e;
    for (var i = 0; i < e.length; i += 5) {
      if (only && !e[i + 4]) continue;
      var g = e[i], d = e[i + 1], key = g * 1048576 + d, chain = chains.get(key);
      if (!chain) {
        var node = grps[g], dir = data.dirs[d];
        chain = [root, node.p, node];
        if (dir) dir.split("/").forEach(function (part) { node = node.child(part); chain.push(node); });
        chains.set(key, chain);
      }
      var leaf = chain[chain.length - 1].child(e[i + 2]), mark = e[i + 4] ? 1 : 0;
      var size = only ? Math.max(1, e[i + 3]) : e[i + 3];
      leaf.s += size; leaf.c += 1; leaf.x += mark; leaf.mark = e[i + 4];
      for (var j = 0; j < chain.length; j++) {
        chain[j].s += size; chain[j].c += 1; chain[j].x += mark;
      }
    }
    return root;
  }

  /* squarify: items (sorted, largest first) with values -> rects filling x,y,w,h */
  function squarify(items, x, y, w, h) {
    var total = 0, out = [];
    items.forEach(function (it) { total += it.s; });
    if (total <= 0 || w <= 0 || h <= 0) return out;
    var scale = w * h / total, row = [], rowSum = 0, i = 0;
    function worst(sum, min, max, side) {
      var s2 = sum * sum, side2 = side * side;
      return Math.max(side2 * max / s2, s2 / (side2 * min));
    }
    function flush() {
      var side, along = 0;
      if (w >= h) {
        side = rowSum / h;
        row.forEach(function (a) {
          var hh = a.area / side; out.push({ node: a.node, x: x, y: y + along, w: side, h: hh }); along += hh;
        });
        x += side; w -= side;
      } else {
        side = rowSum / w;
        row.forEach(function (a) {
          var ww = a.area / side; out.push({ node: a.node, x: x + along, y: y, w: ww, h: side }); along += ww;
        });
        y += side; h -= side;
      }
      row = []; rowSum = 0;
    }
    while (i < items.length) {
      var area = items[i].s * scale, side = Math.min(w, h);
      if (row.length === 0) { row.push({ node: items[i], area: area }); rowSum = area; i++; continue; }
      var min = Math.min(row[row.length - 1].area, area), max = row[0].area;
      if (worst(rowSum + area, min, max, side) <= worst(rowSum, row[row.length - 1].area, max, side)) {
        row.push({ node: items[i], area: area }); rowSum += area; i++;
      } else { flush(); }
    }
    if (row.length) flush();
    return out;
  }

  function colour(node, depth) {
    var hue = node.sec < 0 ? 0 : (node.sec * 137.508 + 200) % 360;
    var light = Math.min(88, 42 + depth * 11);
    return "hsl(" + hue.toFixed(0) + ",55%," + light + "%)";
  }

  function Treemap(el, crumbs, info, data) {
    this.el = el; this.crumbs = crumbs; this.info = info;
    var t0 = performance.now();
    this.data = data; this.root = build(data, false); this.focus = this.root; this.boxes = 0;
    el.setAttribute("data-build-ms", (performance.now() - t0).toFixed(0));
    var self = this, toggle = document.getElementById("treemap-changes");
    if (toggle) toggle.addEventListener("click", function () {
      var only = toggle.getAttribute("aria-pressed") !== "true";
      toggle.setAttribute("aria-pressed", String(only));
      toggle.textContent = only ? "show everything" : "show only what changed";
      self.root = build(data, only); self.zoom(self.root);
    });
    el.addEventListener("click", function (ev) {
      var t = ev.target.closest("[data-i]");
      if (!t) return;
      var n = self.index[+t.getAttribute("data-i")];
      if (n && n.k) self.zoom(n); else if (n && n.p) self.zoom(n.p);
    });
    var tip = document.createElement("div");
    tip.id = "treemap-tip"; tip.hidden = true;
    el.parentNode.appendChild(tip);
    el.addEventListener("mousemove", function (ev) {
      var t = ev.target.closest("[data-i]");
      if (!t) { tip.hidden = true; return; }
      var text = self.describe(self.index[+t.getAttribute("data-i")]), box = el.getBoundingClientRect();
      tip.textContent = text; tip.hidden = false;
      var x = ev.clientX - box.left + 14, y = ev.clientY - box.top + el.offsetTop + 16;
      if (x + tip.offsetWidth > el.clientWidth) x = Math.max(0, x - tip.offsetWidth - 28);
      tip.style.left = x + "px"; tip.style.top = y + "px";
    });
    el.addEventListener("mouseleave", function () { tip.hidden = true; self.describe(self.focus); });
    document.addEventListener("keydown", function (ev) {
      if ((ev.key === "Escape" || ev.key === "Backspace") && self.focus.p) { self.zoom(self.focus.p); ev.preventDefault(); }
    });
    window.addEventListener("resize", function () { self.render(); });
  }
  Treemap.prototype.describe = function (n) {
    if (!n) return "";
    var what = n.more ? n.more + " smaller items" : "/" + (n.path().join("/") || "");
    var text = what + " \u2014 " + human(n.s) + ", " + n.c.toLocaleString("en") + (n.c === 1 ? " file or link" : " files and links");
    if (n.x) text += ", " + n.x + " changed or added";
    this.info.textContent = text;
    return text;
  };
  Treemap.prototype.zoom = function (n) { this.focus = n; this.render(); };
  Treemap.prototype.crumb = function () {
    var self = this, c = this.crumbs, chain = [], n = this.focus;
    while (n) { chain.unshift(n); n = n.p; }
    c.textContent = "";
    chain.forEach(function (node, i) {
      if (i) c.appendChild(document.createTextNode(" / "));
      var a = document.createElement("button");
      a.type = "button"; a.textContent = i ? node.n : "rootfs";
      a.addEventListener("click", function () { self.zoom(node); });
      c.appendChild(a);
    });
  };
  Treemap.prototype.render = function () {
    var t0 = performance.now(), w = this.el.clientWidth, h = this.el.clientHeight;
    this.el.textContent = ""; this.index = []; this.boxes = 0;
    this.crumb();
    var frag = document.createDocumentFragment();
    this.layout(frag, this.focus, 0, 0, w, h, 0);
    this.el.appendChild(frag);
    this.el.setAttribute("data-rendered", String(this.boxes));
    this.el.setAttribute("data-render-ms", (performance.now() - t0).toFixed(0));
    this.describe(this.focus);
  };
  Treemap.prototype.layout = function (parent, node, x, y, w, h, depth) {
    var kids = node.kids().filter(function (k) { return k.s > 0; });
    var zero = node.kids().length - kids.length;
    var rects = squarify(kids, x, y, w, h), shown = [], rest = null;
    for (var i = 0; i < rects.length; i++) {
      var r = rects[i];
      if (r.w * r.h < MIN_AREA || this.boxes >= MAX_BOXES) {
        if (!rest) rest = { x0: r.x, y0: r.y, x1: r.x + r.w, y1: r.y + r.h, s: 0, c: 0, x: 0, n: 0 };
        rest.x0 = Math.min(rest.x0, r.x); rest.y0 = Math.min(rest.y0, r.y);
        rest.x1 = Math.max(rest.x1, r.x + r.w); rest.y1 = Math.max(rest.y1, r.y + r.h);
        rest.s += r.node.s; rest.c += r.node.c; rest.x += r.node.x; rest.n += 1;
      } else { shown.push(r); this.boxes++; }
    }
    var self = this;
    shown.forEach(function (r) {
      var n = r.node, name = n.n, box = document.createElement("div");
      while (!n.fixed && n.k && n.kids().length === 1 && n.kids()[0].k) { n = n.kids()[0]; name += "/" + n.n; }
      box.className = "tm-box" + (n.x ? " tm-changed" : "") + (n.k ? "" : " tm-leaf");
      box.style.cssText = "left:" + r.x.toFixed(1) + "px;top:" + r.y.toFixed(1) + "px;width:" +
        Math.max(0, r.w - 1).toFixed(1) + "px;height:" + Math.max(0, r.h - 1).toFixed(1) +
        "px;background:" + colour(n, depth);
      box.setAttribute("data-i", String(self.index.length));
      self.index.push(n);
      if (r.w > 44 && r.h > 14) {
        var label = document.createElement("span");
        label.className = "tm-label";
        label.textContent = name + " " + human(n.s);
        box.appendChild(label);
      }
      parent.appendChild(box);
      if (n.k && depth < 3 && r.w > 60 && r.h > 40) {
        self.layout(box, n, PAD, HEADER, r.w - 2 * PAD - 1, r.h - HEADER - PAD - 1, depth + 1);
      }
    });
    if (rest || zero) {
      var more = document.createElement("div"), m = rest || { x0: x, y0: y + h, x1: x, y1: y + h, s: 0, c: 0, x: 0, n: 0 };
      var fake = { n: "more", s: m.s, c: m.c, x: m.x, more: m.n + zero, path: function () { return []; } };
      more.className = "tm-box tm-more" + (m.x ? " tm-changed" : "");
      more.style.cssText = "left:" + m.x0.toFixed(1) + "px;top:" + m.y0.toFixed(1) + "px;width:" +
        Math.max(0, m.x1 - m.x0 - 1).toFixed(1) + "px;height:" + Math.max(0, m.y1 - m.y0 - 1).toFixed(1) + "px";
      more.setAttribute("data-i", String(self.index.length));
      self.index.push(fake);
      if (rest) parent.appendChild(more);
    }
  };

  function start() {
    var el = document.getElementById("treemap");
    if (!el) return;
    var data = JSON.parse(document.getElementById("treemap-data").textContent);
    var map = new Treemap(el, document.getElementById("treemap-crumbs"),
                          document.getElementById("treemap-info"), data);
    map.render();
    var toggle = document.getElementById("treemap-changes");
    if (toggle && window.location.hash === "#only-changes") toggle.click();
    window.imageComposerTreemap = map;
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
