// Live pages: the server says when the journal has news for this page (Server-Sent Events);
// the page fetches itself and swaps its <main>. Without JavaScript the page reads the same.
(function () {
  "use strict";
  var main = document.querySelector("main[data-live]");
  if (!main || !window.EventSource || !window.fetch) return;
  var scope = JSON.parse(main.getAttribute("data-live") || "{}");
  var query = new URLSearchParams(scope);
  query.set("after", main.getAttribute("data-last") || "");
  var source = new EventSource("/live?" + query.toString());
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
        if (!fresh) return;
        main.innerHTML = fresh.innerHTML;
        main.setAttribute("data-last", fresh.getAttribute("data-last") || "");
        document.dispatchEvent(new CustomEvent("releaser:updated", { detail: main.getAttribute("data-last") }));
      })
      .finally(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }
  source.onmessage = refresh;
})();
