// pic2 passwd: the strength meter, a progressive enhancement. The pages work without it;
// with it, the server's own policy check answers as the user types (nothing is kept).
(function () {
  "use strict";
  var box = document.getElementById("strength");
  var input = document.getElementById("new");
  var form = document.getElementById("password-form");
  if (!box || !input || !form || !window.fetch) { return; }
  var meter = document.getElementById("strength-meter");
  var label = document.getElementById("strength-label");
  var reasons = document.getElementById("strength-reasons");
  var levels = (box.getAttribute("data-levels") || "").split("|");
  var csrf = form.querySelector("input[name=csrf]");
  var account = form.querySelector("input[name=account]");
  var timer = null, seq = 0;
  box.hidden = false;
  function show(score, list) {
    meter.value = score;
    label.textContent = levels[score] || "";
    reasons.textContent = "";
    list.forEach(function (r) {
      var li = document.createElement("li");
      li.textContent = r;
      reasons.appendChild(li);
    });
  }
  function check() {
    var mine = ++seq;
    if (!input.value) { show(0, []); return; }
    var body = new URLSearchParams();
    body.set("csrf", csrf ? csrf.value : "");
    body.set("account", account ? account.value : "");
    body.set("password", input.value);
    fetch("/strength", { method: "POST", body: body, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) { if (j && mine === seq) { show(j.score, j.reasons); } })
      .catch(function () {});
  }
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(check, 250);
  });
})();
