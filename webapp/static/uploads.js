/* Live status of uploads: polls GET /uploads/<id> (Accept: application/json) for
   every element with data-status-url until the upload is done or failed, then
   shows the derivatives. No inline script: the pages only carry data attributes. */
(function () {
  "use strict";

  var ACTIVE = { pending: true, processing: true };

  function fmtBytes(n) {
    var units = ["bytes", "KiB", "MiB", "GiB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return i === 0 ? n + " bytes" : n.toFixed(1) + " " + units[i];
  }

  function saved(original, size) {
    if (original > 0 && size < original) {
      return fmtBytes(original - size) + " (" + Math.round((original - size) * 100 / original) + " %)";
    }
    return "none";
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  /* Same markup as templates/uploads/_macros.html (results). */
  function renderResults(box, data) {
    var d = data.derivatives || {};
    box.textContent = "";
    if (d.display) {
      var figure = el("figure", { "class": "upload-preview" });
      var picture = el("picture");
      if (d.display_webp) { picture.appendChild(el("source", { srcset: d.display_webp.url, type: "image/webp" })); }
      picture.appendChild(el("img", { src: d.display.url, width: d.display.width, height: d.display.height,
                                      alt: "Your photo", "data-testid": "display-img" }));
      figure.appendChild(picture);
      box.appendChild(figure);
    }
    var table = el("table", { "class": "list", "data-testid": "derivatives" });
    var head = el("tr");
    ["Version", "Format", "Size", "Bytes", "Saved"].forEach(function (h) { head.appendChild(el("th", {}, h)); });
    table.appendChild(el("thead")).appendChild(head);
    var body = table.appendChild(el("tbody"));
    Object.keys(d).forEach(function (name) {
      var v = d[name];
      var row = el("tr", { "data-name": name });
      var link = el("a", { href: v.url }, name);
      row.appendChild(el("td")).appendChild(link);
      row.appendChild(el("td", {}, String(v.format).toUpperCase()));
      row.appendChild(el("td", {}, v.width + "\u00d7" + v.height + " px"));
      row.appendChild(el("td", {}, fmtBytes(v.bytes)));
      row.appendChild(el("td", {}, saved(data.original.bytes, v.bytes)));
      body.appendChild(row);
    });
    box.appendChild(table);
  }

  function render(root, data) {
    root.setAttribute("data-status", data.status);
    var status = root.querySelector("[data-field=status]");
    if (status) { status.textContent = data.status; }
    var hint = root.querySelector("[data-field=hint]");
    if (hint && !ACTIVE[data.status]) { hint.textContent = ""; }
    var error = root.querySelector("[data-field=error]");
    if (error) {
      error.textContent = data.error || "";
      error.hidden = !data.error;
    }
    var box = root.querySelector("[data-field=results]");
    if (box && data.status === "done") { renderResults(box, data); }
    /* The avatar form (templates/uploads/_avatar.html): show the new avatar. */
    var section = root.closest("#avatar");
    if (section && data.status === "done" && data.derivatives.avatar) {
      var avatar = section.querySelector("[data-testid=avatar-img]");
      if (!avatar) {
        avatar = el("img", { width: 128, height: 128, alt: "Your avatar", "data-testid": "avatar-img" });
        var none = section.querySelector("[data-testid=no-avatar]");
        if (none) { none.replaceWith(avatar); } else { section.insertBefore(avatar, root); }
      }
      avatar.src = data.derivatives.avatar.url;
    }
  }

  function watch(root) {
    var url = root.getAttribute("data-status-url");
    var delay = 500;
    function poll() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" })
        .then(function (resp) {
          if (!resp.ok) { throw new Error("HTTP " + resp.status); }
          return resp.json();
        })
        .then(function (data) {
          render(root, data);
          if (ACTIVE[data.status]) { delay = Math.min(delay * 1.5, 5000); window.setTimeout(poll, delay); }
        })
        .catch(function () {
          delay = Math.min(delay * 2, 30000);  /* network hiccup: back off, keep trying */
          window.setTimeout(poll, delay);
        });
    }
    if (ACTIVE[root.getAttribute("data-status")]) { window.setTimeout(poll, delay); }
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-status-url]"), watch);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
