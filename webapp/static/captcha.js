// Sign-up captcha refresh: ask the server for a new challenge and swap the
// picture and the audio link, without reloading the form. Without JS, the
// link's own href reloads the form with a new challenge.
(function () {
  "use strict";
  var link = document.getElementById("captcha-refresh");
  if (!link) { return; }
  link.addEventListener("click", function (event) {
    event.preventDefault();
    var tokenInput = document.querySelector('input[name="csrf_token"]');
    fetch(link.getAttribute("data-refresh-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: {"X-CSRFToken": tokenInput ? tokenInput.value : "", "Accept": "application/json"}
    }).then(function (resp) {
      if (!resp.ok) { throw new Error("refresh failed: " + resp.status); }
      return resp.json();
    }).then(function (data) {
      document.getElementById("captcha-image").src = data.image;
      document.getElementById("captcha-audio").href = data.audio;
      var input = document.querySelector("#captcha input");
      if (input) { input.value = ""; input.focus(); }
    }).catch(function () {
      window.location.href = link.href;  // fall back to reloading the form
    });
  });
}());
