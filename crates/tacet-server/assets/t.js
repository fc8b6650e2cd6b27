/*! Tacet tracker. No cookies, no dependencies. <script src=".../t.js" data-key="INGEST KEY"> */
(function (w, d) {
  var s = d.currentScript, n = w.navigator, l = w.location, h = w.history;
  function a(k) { return s && s.getAttribute("data-" + k); }
  var key = a("key");
  if (!key || w.tacet) return;
  var api = a("api") || new URL(s.src).origin + "/v1/events";
  var url = api + (api.indexOf("?") < 0 ? "?" : "&") + "key=" + encodeURIComponent(key);
  var gpc = n.globalPrivacyControl === true, dnt = n.doNotTrack == "1" || w.doNotTrack == "1";
  var block = a("signals") == "block" && (gpc || dnt);
  var needConsent = a("consent") == "required", consent = null, user, release = a("release");
  var q = [], timer = 0, last = null, viewed = null, first = 1, errors = 0, seen = {};

  function send() {
    timer = 0;
    if (!q.length) return;
    var body = JSON.stringify(q);
    q = [];
    try { if (n.sendBeacon && n.sendBeacon(url, body)) return; } catch (e) {}
    try { fetch(url, { method: "POST", body: body, keepalive: true, headers: { "Content-Type": "text/plain" } }); } catch (e) {}
  }
  function push(e) {
    if (block || (needConsent && !consent)) return;
    e.url = e.url || l.href;
    e.ts = Date.now();
    if (user) e.user_id = user;
    if (consent) e.consent = true;
    if (gpc) e.gpc = true;
    if (dnt) e.dnt = true;
    if (release) e.release = release;
    q.push(e);
    if (!timer) timer = setTimeout(send, 0);
  }
  function safe(f) {
    return function () { try { return f.apply(this, arguments); } catch (e) {} };
  }
  function page() {
    var u = a("hash") == "true" ? l.href : l.href.split("#")[0];
    if (u == last) return;
    var e = { kind: "pageview" }, on = !block && !(needConsent && !consent);
    if (first && d.referrer) e.referrer = d.referrer;
    last = u;
    push(e);
    if (on) viewed = u, first = 0;
    try {
      if (!viewed || w.sessionStorage.getItem("tacet_s")) return;
      w.sessionStorage.setItem("tacet_s", "1");
      push({ kind: "event", name: "session_start" });
    } catch (x) {}
  }
  function crash(err, msg, file, line, col, type) {
    if (errors >= 10) return;
    var t = (err && err.name) || type || "Error";
    var m = String((err && err.message) || msg || "").slice(0, 2000);
    var st = err && typeof err.stack == "string" ? err.stack.split("\n") : [];
    if (st.length && st[0].indexOf(m) >= 0) st.shift();
    if (!st.length && file) st = ["at " + file + ":" + line + ":" + col];
    var k = t + m + (st[0] || "");
    if (seen[k]) return;
    seen[k] = 1;
    errors++;
    push({ kind: "crash", error_type: t, message: m, stack: st.slice(0, 50) });
  }

  ["pushState", "replaceState"].forEach(function (m) {
    var o = h[m];
    h[m] = function () { var r = o.apply(this, arguments); safe(page)(); return r; };
  });
  w.addEventListener("popstate", safe(page));
  if (a("hash") == "true") w.addEventListener("hashchange", safe(page));
  w.addEventListener("error", safe(function (ev) {
    if (ev.error || ev.message) crash(ev.error, ev.message, ev.filename, ev.lineno, ev.colno);
  }));
  w.addEventListener("unhandledrejection", safe(function (ev) {
    var r = ev.reason;
    crash(r instanceof Error ? r : null, r instanceof Error ? "" : String(r), 0, 0, 0, "UnhandledRejection");
  }));
  if (a("outbound") == "true") d.addEventListener("click", safe(function (ev) {
    var t = ev.target && ev.target.closest && ev.target.closest("a[href]");
    if (t && t.host && t.host != l.host) {
      push({ kind: "event", name: "outbound", props: { url: t.protocol + "//" + t.host + t.pathname } });
      send();
    }
  }), true);
  d.addEventListener("visibilitychange", safe(function () { if (d.visibilityState == "hidden") send(); }));
  w.addEventListener("pagehide", safe(send));

  w.tacet = {
    track: safe(function (name, props) { push({ kind: "event", name: String(name), props: props || undefined }); }),
    identify: safe(function (id) { user = id ? String(id) : undefined; }),
    consent: safe(function (on) {
      consent = !!on;
      if (consent && viewed == null) { last = null; page(); }
    }),
    pageview: safe(function () { last = null; page(); })
  };
  safe(page)();
})(window, document);
