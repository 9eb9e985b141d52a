/* The tracker's optional first-party script: sends a page's data-event clicks, outbound-link
 * clicks and file downloads to the same-origin endpoint (POST /t/event) with
 * navigator.sendBeacon, which survives the page being left. No dependency, no cookie of its own:
 * the server counts the event for the visitor of the session cookie the browser sends anyway.
 *
 *   <button data-event="signup click" data-event-plan="pro">  ->  {name, props: {plan: "pro"}}
 *   <a href="https://elsewhere.example/">                      ->  "Outbound Link: Click" {host}
 *   <a href="/files/report.pdf">                               ->  "File Download" {file}
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var endpoint = (script && script.getAttribute("data-endpoint")) || "/t/event";
  var DOWNLOAD = /\.(7z|apk|avi|bz2|csv|deb|dmg|docx?|epub|exe|gz|iso|jar|key|mkv|mov|mp3|mp4|msi|odp|ods|odt|pdf|pkg|pptx?|rar|rpm|rtf|tar|tgz|txt|wav|xlsx?|xz|zip)$/i;
  var PROP_PREFIX = "event"; // data-event-<key>="value" -> dataset.event<Key>

  function send(name, props) {
    var body = JSON.stringify({ name: name, props: props, path: location.pathname });
    // A string body goes as text/plain: a "simple" request, no preflight; the server checks
    // that it came from one of its own pages (Sec-Fetch-Site / Origin).
    if (navigator.sendBeacon && navigator.sendBeacon(endpoint, body)) {
      return;
    }
    if (window.fetch) {
      fetch(endpoint, { method: "POST", body: body, keepalive: true, credentials: "same-origin" })
        .catch(function () {});
    }
  }

  function taggedProps(element) {
    var props = {};
    Object.keys(element.dataset).forEach(function (key) {
      if (key.length > PROP_PREFIX.length && key.indexOf(PROP_PREFIX) === 0) {
        var prop = key.slice(PROP_PREFIX.length);
        props[prop.charAt(0).toLowerCase() + prop.slice(1)] = element.dataset[key];
      }
    });
    return props;
  }

  function onClick(event) {
    if (!(event.target instanceof Element)) {
      return;
    }
    if (event.type === "auxclick" && event.button !== 1) {
      return; // a middle click opens a link too; other buttons do not
    }
    var tagged = event.target.closest("[data-event]");
    if (tagged) {
      send(tagged.getAttribute("data-event"), taggedProps(tagged));
      return;
    }
    var link = event.target.closest("a[href]");
    if (!link) {
      return;
    }
    var url;
    try {
      url = new URL(link.href, location.href);
    } catch (error) {
      return;
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      return;
    }
    if (url.host !== location.host) {
      // The host only: a full URL's path or query could carry what is nobody's business.
      send("Outbound Link: Click", { host: url.hostname.slice(0, 100) });
    } else if (DOWNLOAD.test(url.pathname)) {
      var file = url.pathname.split("/").pop();
      send("File Download", { file: decodeURIComponent(file).slice(-100) });
    }
  }

  document.addEventListener("click", onClick, true);
  document.addEventListener("auxclick", onClick, true);
})();
