// castbridge settings page: HighLevel handshake, in-memory session, and the few interactive bits.
// Plain JavaScript, no build step, no third-party code (the page must work offline).
(function () {
  "use strict";
  var HANDSHAKE_MS = 8000;
  var POLL_MS = 1500;
  var POLL_LIMIT_MS = 120000;
  var token = null; // castbridge's own session token: memory only, never storage
  var statusEl = document.getElementById("status");
  var content = document.getElementById("content");
  var who = document.getElementById("who");

  function say(text, kind) {
    statusEl.textContent = text;
    statusEl.className = "notice" + (kind ? " " + kind : "");
    statusEl.hidden = !text;
  }

  function askHighLevel() {
    return new Promise(function (resolve, reject) {
      if (window.parent === window) {
        reject(new Error("not-framed"));
        return;
      }
      var timer = null;
      function onMessage(event) {
        var data = event.data;
        if (event.source !== window.parent || !data || data.message !== "REQUEST_USER_DATA_RESPONSE") {
          return;
        }
        window.removeEventListener("message", onMessage);
        clearTimeout(timer);
        resolve(data.payload);
      }
      window.addEventListener("message", onMessage);
      timer = setTimeout(function () {
        window.removeEventListener("message", onMessage);
        reject(new Error("timeout"));
      }, HANDSHAKE_MS);
      window.parent.postMessage({ message: "REQUEST_USER_DATA" }, "*");
    });
  }

  var NO_ANSWER =
    "castbridge could not get your HighLevel user details. Open this page from the castbridge " +
    "menu inside HighLevel. If you are setting up the app, generate its Shared Secret " +
    "(Advanced Settings → Auth) and give it to castbridge.";

  function post(path, body, auth) {
    var headers = { "Content-Type": "application/json" };
    if (auth && token) headers.Authorization = "Bearer " + token;
    return fetch(path, {
      method: "POST",
      headers: headers,
      body: JSON.stringify(body || {}),
      credentials: "same-origin",
    }).then(function (r) {
      return r.json().then(
        function (j) { return { status: r.status, body: j }; },
        function () { return { status: r.status, body: {} }; }
      );
    });
  }

  function handshake() {
    say("Connecting to HighLevel…");
    return askHighLevel().then(
      function (payload) {
        return post("/app/session", { encryptedData: payload }, false).then(function (answer) {
          if (answer.status !== 200) {
            token = null;
            throw new Error(answer.body.error || "castbridge refused the session");
          }
          token = answer.body.token;
          return answer.body.session;
        });
      },
      function () { throw new Error(NO_ANSWER); }
    );
  }

  // Every API call carries the bearer token; on 401 the handshake runs once more.
  function api(method, path, body, retried) {
    var options = { method: method, headers: { Authorization: "Bearer " + token }, credentials: "same-origin" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(path, options).then(function (r) {
      if (r.status === 401 && !retried) {
        return handshake().then(function () { return api(method, path, body, true); });
      }
      return r.json().then(
        function (j) { return { status: r.status, body: j }; },
        function () { return { status: r.status, body: {} }; }
      );
    });
  }

  function showSession(session) {
    who.textContent = (session.userName ? session.userName + " · " : "") +
      (session.role === "admin" ? "admin" : "user (read-only)");
  }

  function load() {
    say("Loading…");
    return api("GET", "/app/api/view").then(function (answer) {
      if (answer.status !== 200) {
        say(answer.body.error || "castbridge could not load the settings.", "error");
        return;
      }
      showSession(answer.body.session);
      content.innerHTML = answer.body.html; // rendered and escaped by castbridge's templates
      say("");
      bind();
    });
  }

  function value(id) {
    var el = document.getElementById(id);
    return el ? el.value.trim() : "";
  }

  function syncChannels() {
    var gateway = document.getElementById("gateway");
    var channel = document.getElementById("channel");
    if (!gateway || !channel) return;
    var option = gateway.options[gateway.selectedIndex];
    var wanted = channel.value || channel.getAttribute("data-current");
    channel.innerHTML = "";
    option.getAttribute("data-channels").split(",").forEach(function (c) {
      var o = document.createElement("option");
      o.value = c;
      o.textContent = c;
      if (c === wanted) o.selected = true;
      channel.appendChild(o);
    });
    var country = document.getElementById("country");
    if (country && !country.value) country.placeholder = option.getAttribute("data-country");
  }

  function bind() {
    var gateway = document.getElementById("gateway");
    if (gateway) {
      gateway.addEventListener("change", syncChannels);
      syncChannels();
    }
    var form = document.getElementById("config-form");
    if (form) form.addEventListener("submit", saveConfig);
    var test = document.getElementById("test-form");
    if (test) test.addEventListener("submit", sendTest);
    var resume = document.getElementById("resume");
    if (resume) resume.addEventListener("click", function () {
      api("POST", "/app/api/resume", {}).then(function (a) {
        say(a.body.message || a.body.error, a.status === 200 ? "ok" : "error");
        if (a.status === 200) load();
      });
    });
    Array.prototype.forEach.call(document.querySelectorAll(".open-location"), function (button) {
      button.addEventListener("click", function () {
        api("POST", "/app/api/open", { location_id: button.getAttribute("data-location") }).then(function (a) {
          if (a.status !== 200) { say(a.body.error, "error"); return; }
          token = a.body.token;
          load();
        });
      });
    });
    var back = document.getElementById("back-to-agency");
    if (back) back.addEventListener("click", function () { start(); });
  }

  function saveConfig(event) {
    event.preventDefault();
    var result = document.getElementById("config-result");
    var body = {
      gateway: value("gateway"),
      sender_id: value("sender_id"),
      channel: value("channel"),
      country: value("country"),
    };
    var key = value("api_key");
    if (key) body.api_key = key;
    result.textContent = key ? "Checking the key with the gateway…" : "Saving…";
    result.className = "";
    api("POST", "/app/api/config", body).then(function (a) {
      if (a.status !== 200) {
        result.textContent = a.body.error || "Not saved.";
        result.className = "error";
        return;
      }
      document.getElementById("api_key").value = "";
      load().then(function () {
        var again = document.getElementById("config-result");
        again.textContent = a.body.message;
        again.className = "ok";
      });
    });
  }

  function sendTest(event) {
    event.preventDefault();
    var out = document.getElementById("test-status");
    out.className = "";
    out.textContent = "Test SMS: queued";
    api("POST", "/app/api/test-sms", { to: value("test-number") }).then(function (a) {
      if (a.status !== 200) {
        out.textContent = "Test SMS: " + (a.body.error || "not sent");
        out.className = "error";
        return;
      }
      show(out, a.body);
      if (a.body.handle && a.body.status === "accepted") follow(out, a.body.handle, Date.now());
    });
  }

  function show(out, answer) {
    out.textContent = "Test SMS: " + answer.status + (answer.reason ? " (" + answer.reason + ")" : "");
    out.className = answer.status === "delivered" ? "ok" : answer.status === "failed" ? "error" : "";
    out.setAttribute("data-status", answer.status);
  }

  function follow(out, handle, started) {
    setTimeout(function () {
      api("POST", "/app/api/test-sms/status", { handle: handle }).then(function (a) {
        if (a.status !== 200) { out.textContent = "Test SMS: " + (a.body.error || "status unknown"); return; }
        show(out, a.body);
        if (!a.body.final && Date.now() - started < POLL_LIMIT_MS) follow(out, handle, started);
      });
    }, POLL_MS);
  }

  function start() {
    token = null;
    content.innerHTML = "";
    handshake().then(
      function (session) { showSession(session); return load(); },
      function (error) { say(error.message, "error"); }
    );
  }

  start();
})();
