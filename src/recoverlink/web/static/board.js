// Live updates for the recovery board: short polling of the cards fragment (GET /board/cards).
// The server answers 304 while nothing changed; otherwise the cards are swapped in place and the
// keyboard focus stays on the card link it was on. Without this script the board is the same page,
// updated by reloading it.
(function () {
  "use strict";
  var cards = document.getElementById("cards");
  var status = document.getElementById("live-status");
  if (!cards || !window.fetch) {
    return;
  }
  var url = cards.getAttribute("data-cards-url");
  var seconds = parseInt(cards.getAttribute("data-refresh-seconds"), 10) || 10;
  var etag = cards.getAttribute("data-etag");

  function say(text) {
    if (status) {
      status.textContent = text;
    }
  }

  function swap(html) {
    var focused = document.activeElement;
    var focusedId = focused && cards.contains(focused) ? focused.id : null;
    var parsed = new DOMParser().parseFromString("<div>" + html + "</div>", "text/html");
    cards.replaceChildren.apply(cards, Array.prototype.slice.call(parsed.body.firstChild.childNodes));
    if (focusedId && document.getElementById(focusedId)) {
      document.getElementById(focusedId).focus();
    }
  }

  function poll() {
    if (document.visibilityState === "hidden") {
      return Promise.resolve();
    }
    var headers = { Accept: "text/html" };
    if (etag) {
      headers["If-None-Match"] = '"' + etag + '"';
    }
    return fetch(url, { headers: headers, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 304) {
          return null;
        }
        if (response.status === 401) {
          window.location.reload();
          return null;
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        etag = (response.headers.get("ETag") || "").replace(/^W\//, "").replace(/"/g, "");
        var shown = response.headers.get("X-Recoveries-Shown");
        return response.text().then(function (html) {
          swap(html);
          var time = new Date().toISOString().slice(11, 16);
          say("Updated at " + time + " UTC: " + (shown === null ? "" : shown + " recoveries shown."));
        });
      })
      .catch(function () {
        say("Live updates paused: the server cannot be reached. Retrying.");
      });
  }

  function schedule() {
    window.setTimeout(function () {
      poll().then(schedule, schedule);
    }, seconds * 1000);
  }

  schedule();
})();
